//! Probe families, one file each. Shared helpers live here.
pub mod enforce;
pub mod file;
pub mod kernel;
pub mod net;
pub mod process;
mod regs;
pub mod syscall;

use aya_ebpf::{
    EbpfContext,
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_get_current_uid_gid, bpf_ktime_get_ns, bpf_probe_read_user,
        bpf_probe_read_user_str_bytes,
    },
    maps::ring_buf::RingBufEntry,
};
use monitor_common::{EventHeader, config, family};

use crate::maps::{SM_CONFIG, SM_DROPS, SM_EVENTS};

/// Reads a scalar field of a tracepoint record directly from the context (cheaper than a
/// helper call; the verifier checks the offset against the record size). Not for arrays: see
/// `net::tuple_of`.
#[inline(always)]
pub fn tp_field<T: Copy>(ctx: &impl EbpfContext, offset: usize) -> T {
    // SAFETY: the verifier checks every direct context read against the tracepoint record's
    // size when the program loads (a read past it fails the load, so it never runs): the
    // read stays inside the record, which the kernel keeps alive for the whole program.
    // Unaligned because tracepoint fields sit at packed offsets; callers read integers, for
    // which every bit pattern is valid.
    unsafe { core::ptr::read_unaligned((ctx.as_ptr() as *const u8).add(offset) as *const T) }
}

#[inline(always)]
pub fn current_tgid() -> u32 {
    (bpf_get_current_pid_tgid() >> 32) as u32
}

#[inline(always)]
pub fn current_tid() -> u32 {
    bpf_get_current_pid_tgid() as u32
}

/// True when `family` is switched off or the current task is the monitor itself.
#[inline(always)]
pub fn ignored(family: u32) -> bool {
    let enabled = SM_CONFIG
        .get(config::ENABLED_FAMILIES)
        .copied()
        .unwrap_or(0);
    if enabled & family::bit(family) == 0 {
        return true;
    }
    is_self(current_tgid())
}

#[inline(always)]
pub fn is_self(tgid: u32) -> bool {
    let me = SM_CONFIG.get(config::SELF_TGID).copied().unwrap_or(0);
    me != 0 && me == tgid as u64
}

/// Fills `header` with the current task's identity.
#[inline(always)]
pub fn fill_header(header: &mut EventHeader, kind: u32) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    header.kind = kind;
    header.truncated = 0;
    // SAFETY: helper without arguments or preconditions, allowed in every program type here.
    header.timestamp_ns = unsafe { bpf_ktime_get_ns() };
    header.pid = (pid_tgid >> 32) as u32;
    header.tid = pid_tgid as u32;
    header.uid = uid_gid as u32;
    header.gid = (uid_gid >> 32) as u32;
    // SAFETY: helper without arguments or preconditions, allowed in every program type here.
    header.cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    header.comm = bpf_get_current_comm().unwrap_or([0; 16]);
}

/// Reserves a record of type `T` and counts a drop for `family` when the ring buffer is full.
#[inline(always)]
pub fn reserve<T: 'static>(family: u32) -> Option<RingBufEntry<T>> {
    let entry = SM_EVENTS.reserve::<T>(0);
    if entry.is_none() {
        count_drop(family);
    }
    entry
}

/// Counts a record of `family` the full ring buffer could not take.
#[inline(always)]
pub fn count_drop(family: u32) {
    if let Some(drops) = SM_DROPS.get_ptr_mut(family) {
        // SAFETY: the pointer comes from a successful lookup of this CPU's slot of a per-CPU
        // array, which lives as long as the map; only programs on this CPU touch it, and the
        // one possible overlap (a softirq's program interrupting ours) can lose a count, not
        // corrupt memory: the slot is a plain u64.
        unsafe { *drops += 1 };
    }
}

/// Makes a record visible to userspace. Waking the reader costs an interrupt, so it is woken
/// only when the data waiting in the ring crosses `WAKEUP_BYTES` (not on every record above
/// it, which would be an interrupt per record while the reader catches up); the reader also
/// drains on a short timer, which bounds the latency of a quiet stream.
#[inline(always)]
pub fn submit<T>(entry: RingBufEntry<T>) {
    // The reservation is already counted in the available data.
    let waiting = SM_EVENTS.query(BPF_RB_AVAIL_DATA);
    entry.submit(wakeup_for(waiting, core::mem::size_of::<T>()));
}

/// The wakeup flag for a record of `len` bytes about to be written with `bpf_ringbuf_output`
/// (not yet counted in the available data).
#[inline(always)]
pub fn wakeup_flags(len: usize) -> u64 {
    let waiting = SM_EVENTS.query(BPF_RB_AVAIL_DATA) + len as u64 + 8;
    wakeup_for(waiting, len)
}

/// Wakes the reader when the data waiting, this record's `len` bytes (plus its 8-byte header)
/// included, crosses the threshold.
#[inline(always)]
fn wakeup_for(waiting: u64, len: usize) -> u64 {
    let threshold = SM_CONFIG.get(config::WAKEUP_BYTES).copied().unwrap_or(0);
    let before = waiting.saturating_sub(len as u64 + 8);
    if threshold == 0 || (before < threshold && waiting >= threshold) {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    }
}

const BPF_RB_AVAIL_DATA: u64 = 0;
const BPF_RB_NO_WAKEUP: u64 = 1;
const BPF_RB_FORCE_WAKEUP: u64 = 2;

/// Copies a NUL-terminated string from user memory into `dest`; returns true when it was cut.
/// An unreadable pointer leaves an empty string.
#[inline(always)]
pub fn read_user_str(src: u64, dest: &mut [u8]) -> bool {
    if src == 0 {
        dest[0] = 0;
        return false;
    }
    let capacity = dest.len();
    // SAFETY: the helper copies with fault handling (a bad `src` gives an error, never a
    // fault) and writes at most `dest.len()` bytes into the borrowed buffer.
    match unsafe { bpf_probe_read_user_str_bytes(src as *const u8, dest) } {
        Ok(bytes) => bytes.len() + 1 >= capacity,
        Err(_) => {
            dest[0] = 0;
            false
        }
    }
}

#[inline(always)]
pub fn read_user<T>(src: u64) -> Option<T> {
    if src == 0 {
        return None;
    }
    // SAFETY: the helper copies with fault handling (a bad `src` gives an error, never a
    // fault); callers read integers and byte arrays, for which any bytes are a valid `T`.
    unsafe { bpf_probe_read_user(src as *const T) }.ok()
}
