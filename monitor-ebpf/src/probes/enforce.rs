//! Opt-in enforcement. Userspace fills the deny tables only when `[response] enforce = true`;
//! empty tables cost nothing (exec checks are skipped through `ENFORCE_EXEC`, and the connect
//! programs are not even attached). Never enforced on PID 1, the monitor or its parent shell.
use aya_ebpf::{
    helpers::{bpf_ktime_get_ns, bpf_probe_read_kernel_str_bytes, bpf_send_signal},
    macros::cgroup_sock_addr,
    programs::SockAddrContext,
};
use monitor_common::{
    DENY_PATH_LEN, DenyEntry, ExecDenyName, NetDenyKey, NetEvent, config, family, kind, net_flags,
};

use super::{current_tgid, fill_header, is_self, reserve, submit};
use crate::maps::{
    SM_CONFIG, SM_DENY_EXEC_NAME, SM_DENY_EXEC_PATH, SM_DENY_EXEC_SUSPECT, SM_DENY_KEY, SM_DENY_NET,
};

const SIGKILL: u32 = 9;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const IPPROTO_TCP: u16 = 6;

/// Whether the current task may never be a target.
#[inline(always)]
fn protected() -> bool {
    let tgid = current_tgid();
    let parent = SM_CONFIG.get(config::PARENT_TGID).copied().unwrap_or(0);
    tgid <= 1 || is_self(tgid) || u64::from(tgid) == parent
}

#[inline(always)]
fn live(entry: &DenyEntry) -> bool {
    // SAFETY: helper without arguments or preconditions, allowed in every program type here.
    entry.expires_ns == 0 || unsafe { bpf_ktime_get_ns() } < entry.expires_ns
}

/// Called from `sched_process_exec` in the new program, before anything else (a full ring
/// buffer or a switched-off process family must not let a denied program run): SIGKILL when
/// its name is denied, its path is denied, or its path is spelled in a way that cannot be
/// compared and its name is that of a denied path. Returns true when the signal was sent.
#[inline(always)]
pub fn kill_if_denied(filename: *const u8, comm: &[u8; 16]) -> bool {
    if SM_CONFIG.get(config::ENFORCE_EXEC).copied().unwrap_or(0) == 0 || protected() {
        return false;
    }
    let by_name = ExecDenyName { comm: *comm };
    // SAFETY: the value is read at once and never written through; a deny entry is integers
    // only, so one that userspace replaces under us (the aliasing `HashMap::get` warns of)
    // reads as another valid entry, never as undefined behaviour.
    let denied =
        unsafe { SM_DENY_EXEC_NAME.get(by_name) }.is_some_and(live) || path_denied(filename, comm);
    if denied {
        // SAFETY: takes no pointer; it signals the current task, the program that just
        // exec'd (never PID 1, the monitor or its parent: `protected` returned false).
        unsafe { bpf_send_signal(SIGKILL) };
    }
    denied
}

/// Whether the path given to execve is denied. Userspace keys are normalised absolute paths
/// (no `//`, `.` or `..` components), so a path written otherwise cannot be looked up: such an
/// exec is denied when its name (`comm`, the file name the kernel took from that path) is the
/// file name of a denied path (`SM_DENY_EXEC_SUSPECT`).
#[inline(always)]
fn path_denied(filename: *const u8, comm: &[u8; 16]) -> bool {
    let Some(key) = SM_DENY_KEY.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: a successful lookup of this CPU's slot of a per-CPU array, alive as long as the
    // map; only this function uses `SM_DENY_KEY`, from `sched_process_exec` (task context,
    // never nested on one CPU), so no other reference to the slot exists while this one does.
    let key = unsafe { &mut *key };
    // Keys are NUL-padded: clear what the previous use left behind.
    let mut i = 0;
    while i < DENY_PATH_LEN {
        key.path[i] = 0;
        i += 1;
    }
    // An unreadable name counts as an unusual spelling (len 0).
    // SAFETY: the helper copies with fault handling (an unreadable `filename` gives an error,
    // never a fault) and writes at most `key.path.len()` bytes.
    let len = match unsafe { bpf_probe_read_kernel_str_bytes(filename, &mut key.path) } {
        Ok(bytes) => bytes.len(),
        Err(_) => 0,
    };
    // By reference: a copy of the 256-byte key would take half the BPF stack.
    #[allow(clippy::needless_borrows_for_generic_args)]
    // SAFETY: the value is read at once and never written through; a deny entry is integers
    // only, so one that userspace replaces under us (the aliasing `HashMap::get` warns of)
    // reads as another valid entry, never as undefined behaviour.
    let exact = unsafe { SM_DENY_EXEC_PATH.get(&*key) };
    if exact.is_some_and(live) {
        return true;
    }
    let suspect = ExecDenyName { comm: *comm };
    // SAFETY: the value is read at once and never written through; a deny entry is integers
    // only, so one that userspace replaces under us (the aliasing `HashMap::get` warns of)
    // reads as another valid entry, never as undefined behaviour.
    unsafe { SM_DENY_EXEC_SUSPECT.get(suspect) }.is_some_and(live)
        && !plain_spelling(&key.path, len)
}

/// Whether `path` (`len` bytes, NUL-padded) is written as userspace writes deny keys: absolute,
/// no empty, `.` or `..` component, not through `/dev/fd` or `/proc`, and short enough not to
/// have been cut.
#[inline(always)]
fn plain_spelling(path: &[u8; DENY_PATH_LEN], len: usize) -> bool {
    if len == 0 || len >= DENY_PATH_LEN - 1 || path[0] != b'/' {
        return false;
    }
    if starts_with(path, b"/dev/fd/") || starts_with(path, b"/proc/") {
        return false;
    }
    let mut i = 1;
    while i < DENY_PATH_LEN - 2 {
        if i >= len {
            break;
        }
        if path[i - 1] == b'/' {
            let c = path[i];
            if c == b'/' {
                return false;
            }
            if c == b'.' {
                let next = path[i + 1];
                if next == b'/' || next == 0 {
                    return false;
                }
                if next == b'.' && (path[i + 2] == b'/' || path[i + 2] == 0) {
                    return false;
                }
            }
        }
        i += 1;
    }
    true
}

#[inline(always)]
fn starts_with<const N: usize>(path: &[u8; DENY_PATH_LEN], prefix: &[u8; N]) -> bool {
    let mut i = 0;
    while i < N {
        if path[i] != prefix[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// `cgroup/connect4`, attached to the cgroup v2 root when enforcement is on: returning 0
/// makes connect() fail with EPERM.
#[cgroup_sock_addr(connect4)]
pub fn sm_connect4(ctx: SockAddrContext) -> i32 {
    let sa = ctx.sock_addr;
    let mut addr = [0u8; 16];
    // Each field is a separate 4-byte context load, as the verifier requires.
    // SAFETY: `sa` is this program's context, a `struct bpf_sock_addr` the kernel keeps valid
    // for the whole run; `user_ip4` is a 4-byte field the verifier lets us load directly
    // (volatile, so LLVM does not merge it with other loads into one the verifier refuses).
    let ip4 = unsafe { core::ptr::read_volatile(&(*sa).user_ip4) };
    addr[..4].copy_from_slice(&ip4.to_ne_bytes());
    // SAFETY: as for `user_ip4` above.
    let port = unsafe { core::ptr::read_volatile(&(*sa).user_port) };
    verdict(AF_INET, addr, port)
}

/// `cgroup/connect6`, as `sm_connect4` for IPv6.
#[cgroup_sock_addr(connect6)]
pub fn sm_connect6(ctx: SockAddrContext) -> i32 {
    let sa = ctx.sock_addr;
    let mut addr = [0u8; 16];
    let mut i = 0;
    while i < 4 {
        // SAFETY: as in `sm_connect4`: `sa` is the context, valid for the run, and
        // `user_ip6[i]` (i < 4) a 4-byte field the verifier lets us load directly.
        let word = unsafe { core::ptr::read_volatile(&(*sa).user_ip6[i]) };
        addr[i * 4..i * 4 + 4].copy_from_slice(&word.to_ne_bytes());
        i += 1;
    }
    // SAFETY: as for `user_ip6` above.
    let port = unsafe { core::ptr::read_volatile(&(*sa).user_port) };
    verdict(AF_INET6, addr, port)
}

/// 1 lets the connect through, 0 refuses it (and reports the refusal).
#[inline(always)]
fn verdict(family_id: u16, addr: [u8; 16], user_port: u32) -> i32 {
    // user_port holds the port in network byte order in its low 16 bits.
    let port = u16::from_be(user_port as u16);
    let mut key = NetDenyKey {
        family: family_id,
        port,
        _pad: 0,
        addr,
    };
    // SAFETY: the value is read at once and never written through; a deny entry is integers
    // only, so one that userspace replaces under us (the aliasing `HashMap::get` warns of)
    // reads as another valid entry, never as undefined behaviour.
    let mut entry = unsafe { SM_DENY_NET.get(key) }.copied();
    if entry.is_none() {
        key.port = 0;
        // SAFETY: the value is read at once and never written through; a deny entry is integers
        // only, so one that userspace replaces under us (the aliasing `HashMap::get` warns of)
        // reads as another valid entry, never as undefined behaviour.
        entry = unsafe { SM_DENY_NET.get(key) }.copied();
    }
    match entry {
        Some(entry) if live(&entry) && !protected() => {
            report_blocked(family_id, addr, port);
            0
        }
        _ => 1,
    }
}

#[inline(always)]
fn report_blocked(family_id: u16, addr: [u8; 16], port: u16) {
    let Some(mut entry) = reserve::<NetEvent>(family::NETWORK) else {
        return;
    };
    // SAFETY: `entry` is a fresh ring-buffer reservation, sized and aligned for the record,
    // that nothing else touches until `submit`; the record is integers and byte arrays only,
    // so whatever bytes the ring held there already form a valid value.
    let event = unsafe { &mut *entry.as_mut_ptr() };
    fill_header(&mut event.header, kind::NET_CONNECT);
    let data = &mut event.data;
    data.family = family_id;
    data.protocol = IPPROTO_TCP;
    data.src_port = 0;
    data.dst_port = port;
    data.src_addr = [0; 16];
    data.dst_addr = addr;
    data.fd = -1;
    data.flags = net_flags::BLOCKED;
    data.bytes_sent = 0;
    data.bytes_received = 0;
    data.duration_ns = 0;
    submit(entry);
}
