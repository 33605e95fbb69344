//! The syscall programs: `sm_sys_exit` on the raw tracepoint `sys_exit(struct pt_regs *regs,
//! long ret)`, run for every syscall, and `sm_sys_enter` on the `syscalls:sys_enter_<name>`
//! tracepoints of the few syscalls that need their entry (`ops::needs_sys_enter`).
//!
//! A raw tracepoint rather than one `syscalls:sys_exit_<name>` perf tracepoint per followed
//! syscall: cheaper per call, the saved user registers give every argument at exit without a
//! map round trip, and detaching ~50 perf tracepoints took the kernel seconds (one RCU grace
//! period each) every time the monitor stopped. The program first maps the syscall number to an
//! op through `SM_OPS` (filled by userspace from libc::SYS_*), so a syscall we do not follow
//! costs one array lookup. Entry, needed by far fewer and rarer syscalls, uses the per-syscall
//! tracepoints so the other syscalls of the machine do not run a program at entry at all.
use aya_ebpf::{
    EbpfContext,
    bindings::BPF_NOEXIST,
    helpers::{bpf_get_current_uid_gid, bpf_probe_read_kernel},
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};
use monitor_common::{ExitData, PendingSyscall, THREAD_EXIT_KEY, family, loss, ops};

use super::{
    current_tgid, current_tid, file, ignored, kernel, net, process, read_user,
    regs::{syscall_args, syscall_id},
    tp_field,
};
use crate::maps::{SM_EXIT_STATUS, SM_LOSSES, SM_OPS, SM_PENDING};

const BPF_PROG_LOAD: u64 = 5;
const F_DUPFD: u64 = 0;
const F_DUPFD_CLOEXEC: u64 = 1030;
/// `syscalls:sys_enter_*` records: `int __syscall_nr` at 8, then one `unsigned long` per
/// argument from 16. The kernel does not fire these for 32-bit callers.
const ENTER_NR_OFFSET: usize = 8;
const ENTER_ARGS_OFFSET: usize = 16;

#[tracepoint]
pub fn sm_sys_enter(ctx: TracePointContext) -> u32 {
    let _ = try_sys_enter(&ctx);
    0
}

fn try_sys_enter(ctx: &TracePointContext) -> Option<()> {
    let nr: i32 = tp_field(ctx, ENTER_NR_OFFSET);
    let op = op_of(i64::from(nr))?;
    if !ops::needs_sys_enter(op) {
        return None;
    }
    // Six argument slots copied at once, not as context reads: the kernel refuses to attach a
    // program whose direct context reads go past the shortest record (EACCES). The slots past
    // a syscall's own arguments hold stale kernel stack; no handler reads them.
    // SAFETY: every `syscalls:sys_enter_*` record holds its argument array at offset 16, so
    // the pointer stays within the record; it is only read through `bpf_probe_read_kernel`.
    let first = unsafe { (ctx.as_ptr() as *const u8).add(ENTER_ARGS_OFFSET) } as *const [u64; 6];
    // SAFETY: the helper copies with fault handling (a short record leaves stale stack bytes
    // in the last slots, never a fault), and any bytes are a valid `[u64; 6]`.
    let args = unsafe { bpf_probe_read_kernel(first) }.ok()?;
    on_sys_enter(op, args)
}

/// The same on the raw `sys_enter(struct pt_regs *regs, long id)` tracepoint, run for every
/// syscall: attached by userspace only on kernels without per-syscall tracepoints
/// (`CONFIG_FTRACE_SYSCALLS` off), where `sm_sys_enter` cannot be.
#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn sm_sys_enter_raw(ctx: RawTracePointContext) -> u32 {
    let _ = try_sys_enter_raw(&ctx);
    0
}

fn try_sys_enter_raw(ctx: &RawTracePointContext) -> Option<()> {
    let id: i64 = ctx.arg(1);
    let op = op_of(id)?;
    if !ops::needs_sys_enter(op) {
        return None;
    }
    on_sys_enter(op, syscall_args(ctx.arg(0))?)
}

/// Entry of a syscall in `ops::needs_sys_enter`.
#[inline(always)]
fn on_sys_enter(op: u32, args: [u64; 6]) -> Option<()> {
    if ignored(ops::family_of(op)) {
        return None;
    }
    match op {
        ops::EXIT | ops::EXIT_GROUP => {
            record_exit_code(op, args[0]);
            return None;
        }
        ops::EXECVE | ops::EXECVEAT => process::save_argv(op, &args)?,
        _ => {}
    }
    stash(op, args)
}

#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn sm_sys_exit(ctx: RawTracePointContext) -> u32 {
    let _ = try_sys_exit(&ctx);
    0
}

fn try_sys_exit(ctx: &RawTracePointContext) -> Option<()> {
    let regs: *const core::ffi::c_void = ctx.arg(0);
    let op = op_of(syscall_id(regs)?)?;
    let pending = if ops::stashed_until_exit(op) {
        take_pending(op)?
    } else {
        if ignored(ops::family_of(op)) {
            return None;
        }
        let args = syscall_args(regs)?;
        if !worth_reporting(op, &args) {
            return None;
        }
        PendingSyscall {
            op,
            marks: 0,
            uid_gid: 0,
            args,
        }
    };
    let ret: i64 = ctx.arg(1);
    match ops::family_of(op) {
        family::PROCESS => process::on_sys_exit(&pending, ret),
        family::FILE => file::on_sys_exit(&pending, ret),
        family::NETWORK => net::on_sys_exit(&pending, ret),
        _ => kernel::on_sys_exit(&pending, ret),
    }
}

/// Filters calls that are never reported before any work is done for them.
#[inline(always)]
fn worth_reporting(op: u32, args: &[u64; 6]) -> bool {
    match op {
        // Only datagrams with an explicit destination are reported.
        ops::SENDTO => args[4] != 0,
        ops::SENDMSG => read_user::<u64>(args[1]).unwrap_or(0) != 0,
        ops::BPF => args[0] == BPF_PROG_LOAD,
        ops::TRUNCATE | ops::FTRUNCATE => args[1] == 0,
        ops::FCNTL => args[1] == F_DUPFD || args[1] == F_DUPFD_CLOEXEC,
        _ => true,
    }
}

/// The op of syscall `id`, or None for syscalls we do not follow.
#[inline(always)]
fn op_of(id: i64) -> Option<u32> {
    if id < 0 {
        return None;
    }
    let op = *SM_OPS.get(id as u32)?;
    (op != ops::NONE).then_some(op)
}

/// Saves `args` for the current thread until its `sys_exit` (see `ops::stashed_until_exit`).
/// A full table loses the call's event (its `sys_exit` finds nothing): counted in `SM_LOSSES`.
#[inline(always)]
fn stash(op: u32, args: [u64; 6]) -> Option<()> {
    let pending = PendingSyscall {
        op,
        marks: 0,
        uid_gid: bpf_get_current_uid_gid(),
        args,
    };
    let saved = SM_PENDING.insert(current_tid(), pending, 0);
    if saved.is_err()
        && let Some(lost) = SM_LOSSES.get_ptr_mut(loss::PENDING_TABLE_FULL)
    {
        // SAFETY: a successful lookup of this CPU's slot of a per-CPU array, alive as long as
        // the map; a program interrupting ours on this CPU can at worst lose a count of this
        // plain u64, not corrupt memory.
        unsafe { *lost += 1 };
    }
    saved.ok()
}

/// At `sys_exit`: takes the saved call of the current thread if it is the one returning.
#[inline(always)]
fn take_pending(op: u32) -> Option<PendingSyscall> {
    let tid = current_tid();
    // SAFETY: `SM_PENDING` is keyed by thread id and only the current thread's own programs,
    // which never run concurrently with this one, insert or remove its entry, so the value
    // cannot be replaced while we read it (userspace never writes this map).
    let pending = *unsafe { SM_PENDING.get(tid)? };
    let _ = SM_PENDING.remove(tid);
    (pending.op == op).then_some(pending)
}

/// `exit_group(code)` decides the process's status; `exit(code)` only the calling thread's,
/// which becomes the process's if it is the last thread (see `process::sm_sched_exit`).
#[inline(always)]
fn record_exit_code(op: u32, code: u64) {
    let status = ExitData {
        exit_code: (code & 0xff) as i32,
        signal: 0,
        exited: 1,
        _pad: 0,
    };
    if op == ops::EXIT_GROUP {
        let _ = SM_EXIT_STATUS.insert(current_tgid(), status, 0);
    } else {
        let key = current_tid() | THREAD_EXIT_KEY;
        let _ = SM_EXIT_STATUS.insert(key, status, BPF_NOEXIST as u64);
    }
}
