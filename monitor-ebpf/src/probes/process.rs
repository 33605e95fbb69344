//! Process family: exec, fork, exit, ptrace, chdir, and the setuid family / capset.
use aya_ebpf::{
    EbpfContext,
    bindings::BPF_NOEXIST,
    helpers::{bpf_get_current_comm, bpf_probe_read_kernel_buf, bpf_probe_read_kernel_str_bytes},
    macros::tracepoint,
    programs::TracePointContext,
};
use monitor_common::{
    AT_FDCWD, ChdirEvent, ExecArgs, ExecEvent, ExitData, ExitEvent, ForkEvent, MAX_ARGS,
    PendingSyscall, PrivilegeEvent, PtraceEvent, THREAD_EXIT_KEY, family, kind, ops,
};

use super::{
    current_tgid, current_tid, fill_header, ignored, read_user, read_user_str, reserve, submit,
    tp_field,
};
use crate::maps::{SM_EXEC_ARGS, SM_EXIT_STATUS, SM_LAST_SIGNAL, SM_PENDING, SM_SCRATCH};

const CLONE_THREAD: u64 = 0x0001_0000;

/// At `sys_enter` of execve(filename, argv, envp) / execveat(fd, filename, argv, envp,
/// flags): copies argv while the caller's memory still exists; `sm_sched_exec` attaches it to
/// the exec event.
#[inline(always)]
pub fn save_argv(op: u32, args: &[u64; 6]) -> Option<()> {
    let argv = if op == ops::EXECVEAT {
        args[2]
    } else {
        args[1]
    };
    // SAFETY: a successful lookup of this CPU's slot of a per-CPU array, alive as long as the
    // map; only `save_argv` uses `SM_SCRATCH`, at syscall entry in task context (never nested
    // on one CPU), so no other reference to the slot exists while this one does.
    let scratch = unsafe { &mut *SM_SCRATCH.get_ptr_mut(0)? };
    copy_argv(argv, scratch);
    // By reference: a copy of the 2 KiB value would not fit on the 512-byte BPF stack.
    #[allow(clippy::needless_borrows_for_generic_args)]
    SM_EXEC_ARGS.insert(current_tid(), &*scratch, 0).ok()
}

#[inline(always)]
fn copy_argv(argv: u64, out: &mut ExecArgs) {
    out.argc = 0;
    out.more = 0;
    if argv == 0 {
        return;
    }
    for i in 0..MAX_ARGS {
        let Some(arg) = read_user::<u64>(argv + (i as u64) * 8) else {
            return;
        };
        if arg == 0 {
            return;
        }
        if read_user_str(arg, &mut out.args[i]) {
            out.more |= 2;
        }
        out.argc = (i + 1) as u32;
    }
    if read_user::<u64>(argv + (MAX_ARGS as u64) * 8).unwrap_or(0) != 0 {
        out.more |= 1;
    }
}

/// `sched:sched_process_exec(filename __data_loc @8, pid @12, old_pid @16)`: fires in the new
/// program once exec can no longer fail.
#[tracepoint]
pub fn sm_sched_exec(ctx: TracePointContext) -> u32 {
    let _ = try_sched_exec(&ctx);
    0
}

fn try_sched_exec(ctx: &TracePointContext) -> Option<()> {
    let filename_loc: u32 = tp_field(ctx, 8);
    // SAFETY: the low 16 bits of a `__data_loc` field are the string's offset inside this same
    // record, so the pointer stays within it; it is only read through the fault-handling
    // `bpf_probe_read_kernel_str_bytes`.
    let filename = unsafe { (ctx.as_ptr() as *const u8).add((filename_loc & 0xffff) as usize) };
    // Enforcement first: neither a switched-off family nor a full ring buffer may let a
    // denied program run.
    let comm = bpf_get_current_comm().unwrap_or([0; 16]);
    let killed = super::enforce::kill_if_denied(filename, &comm);
    if ignored(family::PROCESS) {
        return None;
    }
    let old_pid: u32 = tp_field(ctx, 16);
    let mut entry = reserve::<ExecEvent>(family::PROCESS)?;
    // SAFETY: `entry` is a fresh ring-buffer reservation, sized and aligned for the record,
    // that nothing else touches until `submit`; the record is integers and byte arrays only,
    // so whatever bytes the ring held there already form a valid value.
    let event = unsafe { &mut *entry.as_mut_ptr() };
    fill_header(&mut event.header, kind::PROCESS_EXEC);
    event.data.old_pid = old_pid;
    event.data.killed = u32::from(killed);
    let capacity = event.data.filename.len();
    // SAFETY: the helper copies with fault handling (an unreadable `filename` gives an error,
    // never a fault) and writes at most `event.data.filename.len()` bytes.
    match unsafe { bpf_probe_read_kernel_str_bytes(filename, &mut event.data.filename) } {
        Ok(bytes) if bytes.len() + 1 >= capacity => event.header.truncated = 1,
        Ok(_) => {}
        Err(_) => event.data.filename[0] = 0,
    }
    match SM_EXEC_ARGS.get_ptr(old_pid) {
        Some(saved) => {
            // SAFETY: the slice covers exactly `event.data.argv`, borrowed mutably (and not
            // otherwise used) while the slice lives; `ExecArgs` is integers and byte arrays, so
            // any bytes written into it leave a valid value.
            let dest = unsafe {
                core::slice::from_raw_parts_mut(
                    (&mut event.data.argv as *mut ExecArgs).cast::<u8>(),
                    core::mem::size_of::<ExecArgs>(),
                )
            };
            // SAFETY: the helper copies with fault handling (an entry evicted under us gives an
            // error or another entry's bytes, never a fault) and writes exactly `dest.len()`
            // bytes, the size of the `ExecArgs` that `saved` points to.
            if unsafe { bpf_probe_read_kernel_buf(saved.cast::<u8>(), dest) }.is_err() {
                event.data.argv.argc = 0;
            }
            let _ = SM_EXEC_ARGS.remove(old_pid);
        }
        // Exec through a path we do not watch (e.g. the family was just enabled):
        // userspace falls back to /proc/<pid>/cmdline.
        None => {
            event.data.argv.argc = 0;
            event.data.argv.more = 0;
        }
    }
    if event.data.argv.more & 2 != 0 {
        event.header.truncated = 1;
    }
    submit(entry);
    Some(())
}

/// `sched:sched_process_fork(parent_comm, parent_pid @12, child_comm, child_pid @20)`, run by
/// the parent. Threads (clone with CLONE_THREAD) are not processes and are skipped.
#[tracepoint]
pub fn sm_sched_fork(ctx: TracePointContext) -> u32 {
    let _ = try_sched_fork(&ctx);
    0
}

fn try_sched_fork(ctx: &TracePointContext) -> Option<()> {
    if ignored(family::PROCESS) || creating_thread() {
        return None;
    }
    let child_pid: u32 = tp_field(ctx, 20);
    let mut entry = reserve::<ForkEvent>(family::PROCESS)?;
    // SAFETY: `entry` is a fresh ring-buffer reservation, sized and aligned for the record,
    // that nothing else touches until `submit`; the record is integers and byte arrays only,
    // so whatever bytes the ring held there already form a valid value.
    let event = unsafe { &mut *entry.as_mut_ptr() };
    fill_header(&mut event.header, kind::PROCESS_FORK);
    event.data.child_pid = child_pid;
    event.data.parent_pid = event.header.pid;
    submit(entry);
    Some(())
}

/// Whether the clone in progress on this thread creates a thread (its flags were saved by
/// `sm_sys_enter`). Kernel threads and fork/vfork have no CLONE_THREAD.
#[inline(always)]
fn creating_thread() -> bool {
    // SAFETY: `SM_PENDING` is keyed by thread id and only the current thread's own programs,
    // which never run concurrently with this one, insert or remove its entry, so the value
    // cannot be replaced while we read it (userspace never writes this map).
    let Some(pending) = (unsafe { SM_PENDING.get(current_tid()) }) else {
        return false;
    };
    let flags = match pending.op {
        ops::CLONE => pending.args[0],
        // clone3(struct clone_args *uargs, size): flags is the first u64.
        ops::CLONE3 => read_user::<u64>(pending.args[0]).unwrap_or(0),
        _ => 0,
    };
    flags & CLONE_THREAD != 0
}

/// `sched:sched_process_exit(comm, pid @24, prio @28, group_dead @32)`: reported once, when
/// the last thread of the process exits.
#[tracepoint]
pub fn sm_sched_exit(ctx: TracePointContext) -> u32 {
    let _ = try_sched_exit(&ctx);
    0
}

fn try_sched_exit(ctx: &TracePointContext) -> Option<()> {
    let group_dead: u8 = tp_field(ctx, 32);
    // A thread killed inside a syscall never reached its sys_exit.
    let _ = SM_PENDING.remove(current_tid());
    let thread_key = current_tid() | THREAD_EXIT_KEY;
    if group_dead == 0 {
        let _ = SM_EXIT_STATUS.remove(thread_key);
        return None;
    }
    let tgid = current_tgid();
    // SAFETY: the value is copied out at once; `ExitData` is integers only, so an entry that
    // another CPU evicts and reuses under us (LRU) reads as some valid `ExitData`, never as
    // undefined behaviour.
    let status = unsafe {
        SM_EXIT_STATUS
            .get(tgid)
            .or_else(|| SM_EXIT_STATUS.get(thread_key))
    }
    .copied()
    .unwrap_or(ExitData {
        exit_code: 0,
        signal: 0,
        exited: 0,
        _pad: 0,
    });
    let _ = SM_EXIT_STATUS.remove(tgid);
    let _ = SM_EXIT_STATUS.remove(thread_key);
    let _ = SM_LAST_SIGNAL.remove(tgid);
    if ignored(family::PROCESS) {
        return None;
    }
    let mut entry = reserve::<ExitEvent>(family::PROCESS)?;
    // SAFETY: `entry` is a fresh ring-buffer reservation, sized and aligned for the record,
    // that nothing else touches until `submit`; the record is integers and byte arrays only,
    // so whatever bytes the ring held there already form a valid value.
    let event = unsafe { &mut *entry.as_mut_ptr() };
    fill_header(&mut event.header, kind::PROCESS_EXIT);
    event.data = status;
    submit(entry);
    Some(())
}

/// `signal:signal_generate(sig @8, errno, code, comm, pid @36, group @40, result @44)`, in the
/// sender: remembers the signal sent to `pid`.
#[tracepoint]
pub fn sm_signal_sent(ctx: TracePointContext) -> u32 {
    let sig: i32 = tp_field(&ctx, 8);
    let target: i32 = tp_field(&ctx, 36);
    if target > 0 && sig > 0 {
        let _ = SM_LAST_SIGNAL.insert(target as u32, sig as u32, 0);
    }
    0
}

/// `signal:signal_deliver(sig @8, errno, code, sa_handler @24, sa_flags)`, in the receiving
/// task: a signal whose default action kills the process records the cause of death.
#[tracepoint]
pub fn sm_signal(ctx: TracePointContext) -> u32 {
    let mut sig: i32 = tp_field(&ctx, 8);
    let handler: u64 = tp_field(&ctx, 24);
    // SIG_DFL is 0; a handler or SIG_IGN means the process lives on.
    if handler == 0 && kills_by_default(sig) {
        if sig == SIGKILL {
            // A fatal SIGTERM, SIGHUP… arrives here as the SIGKILL the kernel sends the whole
            // group: the signal last sent to this process or thread says which it was.
            // SAFETY: the value is a u32 copied out at once: an entry evicted and reused under
            // us (LRU) reads as another signal number, never as undefined behaviour.
            let sent = unsafe {
                SM_LAST_SIGNAL
                    .get(current_tgid())
                    .or_else(|| SM_LAST_SIGNAL.get(current_tid()))
            };
            if let Some(sent) = sent.copied()
                && kills_by_default(sent as i32)
            {
                sig = sent as i32;
            }
        }
        let status = ExitData {
            exit_code: 0,
            signal: sig as u32,
            exited: 0,
            _pad: 0,
        };
        // exit_group's own status (recorded first) wins over the SIGKILL it sends to threads.
        let _ = SM_EXIT_STATUS.insert(current_tgid(), status, BPF_NOEXIST as u64);
    }
    0
}

const SIGKILL: i32 = 9;

#[inline(always)]
fn kills_by_default(sig: i32) -> bool {
    // SIGCHLD, SIGCONT, SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU, SIGURG and SIGWINCH do not kill.
    (1..=64).contains(&sig) && !(17..=23).contains(&sig) && sig != 28
}

/// `sys_exit` of execve/execveat, clone/clone3/fork/vfork, ptrace, chdir/fchdir and the
/// setuid family / capset.
#[inline(always)]
pub fn on_sys_exit(pending: &PendingSyscall, ret: i64) -> Option<()> {
    let args = pending.args;
    match pending.op {
        ops::EXECVE | ops::EXECVEAT => {
            if ret != 0 {
                let _ = SM_EXEC_ARGS.remove(current_tid());
            }
        }
        ops::PTRACE if ret >= 0 && reported_ptrace_request(args[0]) => {
            let mut entry = reserve::<PtraceEvent>(family::PROCESS)?;
            // SAFETY: `entry` is a fresh ring-buffer reservation, sized and aligned for the
            // record, that nothing else touches until `submit`; the record is integers and byte
            // arrays only, so whatever bytes the ring held there already form a valid value.
            let event = unsafe { &mut *entry.as_mut_ptr() };
            fill_header(&mut event.header, kind::PTRACE);
            event.data.request = args[0] as i64;
            event.data.target_pid = args[1] as u32;
            event.data._pad = 0;
            submit(entry);
        }
        ops::CHDIR | ops::FCHDIR if ret == 0 => {
            let mut entry = reserve::<ChdirEvent>(family::PROCESS)?;
            // SAFETY: `entry` is a fresh ring-buffer reservation, sized and aligned for the
            // record, that nothing else touches until `submit`; the record is integers and byte
            // arrays only, so whatever bytes the ring held there already form a valid value.
            let event = unsafe { &mut *entry.as_mut_ptr() };
            fill_header(&mut event.header, kind::CHDIR);
            if pending.op == ops::CHDIR {
                event.data.fd = AT_FDCWD;
                if read_user_str(args[0], &mut event.data.path) {
                    event.header.truncated = 1;
                }
            } else {
                event.data.fd = args[0] as i32;
                event.data.path[0] = 0;
            }
            submit(entry);
        }
        ops::SETUID..=ops::CAPSET => report_privilege_change(pending, ret)?,
        _ => {}
    }
    Some(())
}

/// Requests that take control of another process or change its memory or registers; the
/// PEEK/GET family that debuggers issue by the thousand is not reported.
#[inline(always)]
fn reported_ptrace_request(request: u64) -> bool {
    matches!(
        request,
        0 /* TRACEME */ | 4 | 5 | 6 /* POKE* */ | 13 | 15 /* SET*REGS */ | 16 /* ATTACH */
            | 0x4205 /* SETREGSET */ | 0x4206 /* SEIZE */
    )
}

#[inline(always)]
fn report_privilege_change(pending: &monitor_common::PendingSyscall, ret: i64) -> Option<()> {
    let args = pending.args;
    let op = pending.op;
    // setfsuid/setfsgid return the previous id and never fail; `setfsuid(-1)` only queries.
    let succeeded = match op {
        ops::SETFSUID | ops::SETFSGID => args[0] as u32 != u32::MAX && args[0] as u32 != ret as u32,
        _ => ret == 0,
    };
    if !succeeded {
        return None;
    }
    let mut entry = reserve::<PrivilegeEvent>(family::PROCESS)?;
    // SAFETY: `entry` is a fresh ring-buffer reservation, sized and aligned for the record,
    // that nothing else touches until `submit`; the record is integers and byte arrays only,
    // so whatever bytes the ring held there already form a valid value.
    let event = unsafe { &mut *entry.as_mut_ptr() };
    fill_header(&mut event.header, kind::PRIVILEGE_CHANGE);
    let data = &mut event.data;
    data.op = op;
    data.old_uid = pending.uid_gid as u32;
    data.old_gid = (pending.uid_gid >> 32) as u32;
    data.new_ids = [u32::MAX; 3];
    data.caps = [0; 3];
    data._pad = 0;
    match op {
        ops::SETUID | ops::SETGID | ops::SETFSUID | ops::SETFSGID => {
            data.new_ids[0] = args[0] as u32
        }
        ops::SETREUID | ops::SETREGID => {
            data.new_ids[0] = args[0] as u32;
            data.new_ids[1] = args[1] as u32;
        }
        ops::SETRESUID | ops::SETRESGID => {
            data.new_ids[0] = args[0] as u32;
            data.new_ids[1] = args[1] as u32;
            data.new_ids[2] = args[2] as u32;
        }
        ops::CAPSET => {
            // capset(header, data): data[0] = { effective, permitted, inheritable } (u32 each).
            if let Some(caps) = read_user::<[u32; 3]>(args[1]) {
                data.caps = caps;
            }
        }
        _ => {}
    }
    submit(entry);
    Some(())
}
