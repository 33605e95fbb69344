//! The shared `sys_enter` program and the lookup every `sys_exit` program starts with.
use aya_ebpf::{
    bindings::BPF_NOEXIST, helpers::bpf_get_current_uid_gid, macros::tracepoint,
    programs::TracePointContext,
};
use monitor_common::{ExitData, PendingSyscall, THREAD_EXIT_KEY, ops};

use super::{current_tgid, current_tid, ignored, read_user, tp_field};
use crate::maps::{SM_EXIT_STATUS, SM_OPS, SM_PENDING};

/// Offsets in every `syscalls:sys_enter_*` record: `int __syscall_nr` at 8, then the arguments
/// as 8-byte slots from 16. `sys_exit_*` records have `long ret` at 16.
const NR_OFFSET: usize = 8;
const ARGS_OFFSET: usize = 16;
const RET_OFFSET: usize = 16;

const BPF_PROG_LOAD: u64 = 5;

/// Attached to `syscalls:sys_enter_<name>` for every syscall a family watches, except execve
/// and execveat (see `process::sm_execve`). Saves the arguments until `sys_exit`.
#[tracepoint]
pub fn sm_sys_enter(ctx: TracePointContext) -> u32 {
    let _ = try_sys_enter(&ctx);
    0
}

fn try_sys_enter(ctx: &TracePointContext) -> Option<()> {
    let op = current_op(ctx)?;
    if ignored(ops::family_of(op)) {
        return None;
    }
    let args = syscall_args(ctx)?;
    match op {
        ops::EXIT | ops::EXIT_GROUP => {
            record_exit_code(op, args[0]);
            return None;
        }
        // Only datagrams with an explicit destination are reported: skip the rest here so a
        // busy TCP sender pays no map update per send.
        ops::SENDTO if args[4] == 0 => return None,
        ops::SENDMSG => {
            let msg_name: u64 = read_user(args[1])?;
            if msg_name == 0 {
                return None;
            }
        }
        ops::BPF if args[0] != BPF_PROG_LOAD => return None,
        _ => {}
    }
    stash(op, args)
}

/// Saves `args` for the current thread until its `sys_exit`.
#[inline(always)]
pub fn stash(op: u32, args: [u64; 6]) -> Option<()> {
    let pending = PendingSyscall {
        op,
        marks: 0,
        uid_gid: bpf_get_current_uid_gid(),
        args,
    };
    SM_PENDING.insert(current_tid(), pending, 0).ok()
}

/// The six argument slots of a `sys_enter` record. Read with a helper rather than a direct
/// context load: a direct load past a short syscall's last argument would make the kernel
/// refuse to attach the program to that tracepoint.
#[inline(always)]
pub fn syscall_args(ctx: &TracePointContext) -> Option<[u64; 6]> {
    unsafe { ctx.read_at::<[u64; 6]>(ARGS_OFFSET) }.ok()
}

/// The op code of the syscall whose tracepoint fired, from `SM_OPS`.
#[inline(always)]
pub fn current_op(ctx: &TracePointContext) -> Option<u32> {
    let nr: i32 = tp_field(ctx, NR_OFFSET);
    if nr < 0 {
        return None;
    }
    let op = *SM_OPS.get(nr as u32)?;
    (op != ops::NONE).then_some(op)
}

/// At `sys_exit`: takes the saved call of the current thread if it is the one returning.
#[inline(always)]
pub fn take_pending(ctx: &TracePointContext) -> Option<(PendingSyscall, i64)> {
    let op = current_op(ctx)?;
    let tid = current_tid();
    let pending = *unsafe { SM_PENDING.get(tid)? };
    let _ = SM_PENDING.remove(tid);
    if pending.op != op {
        return None;
    }
    let ret: i64 = tp_field(ctx, RET_OFFSET);
    Some((pending, ret))
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
