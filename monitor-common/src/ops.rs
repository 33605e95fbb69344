//! Syscall operations the probes understand.
//!
//! Every followed syscall is reported from the raw `sys_exit` tracepoint; the few that need
//! something at entry ([`needs_sys_enter`]) also have their own `syscalls:sys_enter_<name>`
//! tracepoint. Both programs learn which syscall fired from its number. Syscall numbers differ
//! per architecture, so userspace fills the `SM_OPS` array map (syscall number → op) from
//! `libc::SYS_*` at load time and the kernel side only ever sees these stable op codes.

pub const NONE: u32 = 0;

// process family
pub const EXECVE: u32 = 1;
pub const EXECVEAT: u32 = 2;
pub const CLONE: u32 = 3;
pub const CLONE3: u32 = 4;
pub const FORK: u32 = 5;
pub const VFORK: u32 = 6;
pub const EXIT: u32 = 7;
pub const EXIT_GROUP: u32 = 8;
pub const PTRACE: u32 = 9;
pub const CHDIR: u32 = 10;
pub const FCHDIR: u32 = 11;

// privilege (reported with the process family)
pub const SETUID: u32 = 20;
pub const SETGID: u32 = 21;
pub const SETREUID: u32 = 22;
pub const SETREGID: u32 = 23;
pub const SETRESUID: u32 = 24;
pub const SETRESGID: u32 = 25;
pub const SETFSUID: u32 = 26;
pub const SETFSGID: u32 = 27;
pub const CAPSET: u32 = 28;

// file family
pub const OPEN: u32 = 40;
pub const OPENAT: u32 = 41;
pub const OPENAT2: u32 = 42;
pub const UNLINK: u32 = 43;
pub const UNLINKAT: u32 = 44;
pub const RMDIR: u32 = 45;
pub const RENAME: u32 = 46;
pub const RENAMEAT: u32 = 47;
pub const RENAMEAT2: u32 = 48;
pub const CHMOD: u32 = 49;
pub const FCHMOD: u32 = 50;
pub const FCHMODAT: u32 = 51;
pub const FCHMODAT2: u32 = 52;
pub const LINK: u32 = 53;
pub const LINKAT: u32 = 54;
pub const SYMLINK: u32 = 55;
pub const SYMLINKAT: u32 = 56;
/// Reported only when cutting a file to length 0 (how logs are wiped without O_TRUNC).
pub const TRUNCATE: u32 = 57;
pub const FTRUNCATE: u32 = 58;
/// fd duplication: not reported, keeps userspace's fd → path table right (`rm -rf` works on
/// dup'ed directory fds).
pub const DUP: u32 = 90;
pub const DUP2: u32 = 91;
pub const DUP3: u32 = 92;
/// Only F_DUPFD / F_DUPFD_CLOEXEC.
pub const FCNTL: u32 = 93;

// network family
pub const CONNECT: u32 = 60;
pub const ACCEPT: u32 = 61;
pub const ACCEPT4: u32 = 62;
pub const LISTEN: u32 = 63;
pub const SENDTO: u32 = 64;
pub const SENDMSG: u32 = 65;

// kernel family
pub const INIT_MODULE: u32 = 80;
pub const FINIT_MODULE: u32 = 81;
pub const BPF: u32 = 82;

/// Size of the `SYSCALL_OPS` array (syscall numbers on x86_64 and aarch64 stay below this).
pub const MAX_SYSCALL_NR: u32 = 512;

/// The family an op belongs to, for the run-time on/off switch.
pub const fn family_of(op: u32) -> u32 {
    match op {
        1..=39 => crate::family::PROCESS,
        40..=59 | 90..=99 => crate::family::FILE,
        60..=79 => crate::family::NETWORK,
        _ => crate::family::KERNEL,
    }
}

/// The syscalls whose `sys_enter` matters: exec (argv is gone after exec), the id changes (the
/// ids before), connect and listen (marked or read by `inet_sock_set_state` during the call),
/// clone (its flags, read by `sched_process_fork`) and exit/exit_group (the exit code). Every
/// other followed syscall is reported from `sys_exit` alone, where the saved user registers
/// still hold its arguments.
///
/// Only these get a `sys_enter` program (one `syscalls:sys_enter_<name>` tracepoint each): a
/// program on the raw `sys_enter` tracepoint would run for every syscall of every process, which
/// cost ~4 % of an open/close loop for nothing.
pub const fn needs_sys_enter(op: u32) -> bool {
    matches!(
        op,
        EXECVE | EXECVEAT | CLONE | CLONE3 | CONNECT | LISTEN | EXIT | EXIT_GROUP
    ) || (op >= SETUID && op <= CAPSET)
}

/// Of [`needs_sys_enter`], those whose arguments are kept until `sys_exit` (the others do all
/// their work at entry).
pub const fn stashed_until_exit(op: u32) -> bool {
    needs_sys_enter(op) && !matches!(op, EXIT | EXIT_GROUP)
}
