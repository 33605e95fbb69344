//! What gets attached where. Every attach point belongs to a probe *group* (exec, open,
//! connect…) of a *family* (process, file, network, kernel); a group is reported available
//! only when all its attach points attached, so an operator learns at start exactly what this
//! kernel refused. New kinds of attach point (kprobes, LSM hooks on kernels that have them)
//! slot in as further `AttachPoint` variants.
use monitor_common::ops;

use crate::event::Family;

/// One syscall the probes follow.
pub struct SyscallProbe {
    pub op: u32,
    pub name: &'static str,
    pub nr: libc::c_long,
    /// The probe group reported at start.
    pub group: &'static str,
    pub family: Family,
}

/// Every followed syscall is reported by `sm_sys_exit` on the raw tracepoint `sys_exit`; those
/// that need their entry (`ops::needs_sys_enter`) also run `sm_sys_enter` on their own
/// `syscalls:sys_enter_<name>` tracepoint. `SM_OPS` tells both which syscalls matter.
pub const SYS_ENTER: &str = "sm_sys_enter";
/// The same entry work on the raw `sys_enter` tracepoint (every syscall), for kernels without
/// per-syscall tracepoints.
pub const SYS_ENTER_RAW: &str = "sm_sys_enter_raw";
pub const SYS_EXIT: &str = "sm_sys_exit";

macro_rules! syscall {
    ($family:ident, $group:literal, $name:ident, $op:ident) => {
        SyscallProbe {
            op: ops::$op,
            name: stringify!($name),
            nr: paste_nr!($name),
            group: $group,
            family: Family::$family,
        }
    };
}

macro_rules! paste_nr {
    (execve) => {
        libc::SYS_execve
    };
    (execveat) => {
        libc::SYS_execveat
    };
    (clone) => {
        libc::SYS_clone
    };
    (clone3) => {
        libc::SYS_clone3
    };
    (fork) => {
        libc::SYS_fork
    };
    (vfork) => {
        libc::SYS_vfork
    };
    (exit) => {
        libc::SYS_exit
    };
    (exit_group) => {
        libc::SYS_exit_group
    };
    (ptrace) => {
        libc::SYS_ptrace
    };
    (chdir) => {
        libc::SYS_chdir
    };
    (fchdir) => {
        libc::SYS_fchdir
    };
    (setuid) => {
        libc::SYS_setuid
    };
    (setgid) => {
        libc::SYS_setgid
    };
    (setreuid) => {
        libc::SYS_setreuid
    };
    (setregid) => {
        libc::SYS_setregid
    };
    (setresuid) => {
        libc::SYS_setresuid
    };
    (setresgid) => {
        libc::SYS_setresgid
    };
    (setfsuid) => {
        libc::SYS_setfsuid
    };
    (setfsgid) => {
        libc::SYS_setfsgid
    };
    (capset) => {
        libc::SYS_capset
    };
    (open) => {
        libc::SYS_open
    };
    (openat) => {
        libc::SYS_openat
    };
    (openat2) => {
        libc::SYS_openat2
    };
    (unlink) => {
        libc::SYS_unlink
    };
    (unlinkat) => {
        libc::SYS_unlinkat
    };
    (rmdir) => {
        libc::SYS_rmdir
    };
    (rename) => {
        libc::SYS_rename
    };
    (renameat) => {
        libc::SYS_renameat
    };
    (renameat2) => {
        libc::SYS_renameat2
    };
    (chmod) => {
        libc::SYS_chmod
    };
    (fchmod) => {
        libc::SYS_fchmod
    };
    (fchmodat) => {
        libc::SYS_fchmodat
    };
    (fchmodat2) => {
        452
    };
    (link) => {
        libc::SYS_link
    };
    (linkat) => {
        libc::SYS_linkat
    };
    (symlink) => {
        libc::SYS_symlink
    };
    (symlinkat) => {
        libc::SYS_symlinkat
    };
    (truncate) => {
        libc::SYS_truncate
    };
    (ftruncate) => {
        libc::SYS_ftruncate
    };
    (dup) => {
        libc::SYS_dup
    };
    (dup2) => {
        libc::SYS_dup2
    };
    (dup3) => {
        libc::SYS_dup3
    };
    (fcntl) => {
        libc::SYS_fcntl
    };
    (connect) => {
        libc::SYS_connect
    };
    (accept) => {
        libc::SYS_accept
    };
    (accept4) => {
        libc::SYS_accept4
    };
    (listen) => {
        libc::SYS_listen
    };
    (sendto) => {
        libc::SYS_sendto
    };
    (sendmsg) => {
        libc::SYS_sendmsg
    };
    (init_module) => {
        libc::SYS_init_module
    };
    (finit_module) => {
        libc::SYS_finit_module
    };
    (bpf) => {
        libc::SYS_bpf
    };
}

/// Every syscall followed, numbered for the architecture built for (libc's `SYS_*`).
pub fn syscalls() -> Vec<SyscallProbe> {
    let mut all = vec![
        syscall!(Process, "exec", execve, EXECVE),
        syscall!(Process, "exec", execveat, EXECVEAT),
        syscall!(Process, "fork", clone, CLONE),
        syscall!(Process, "fork", clone3, CLONE3),
        syscall!(Process, "exit", exit, EXIT),
        syscall!(Process, "exit", exit_group, EXIT_GROUP),
        syscall!(Process, "ptrace", ptrace, PTRACE),
        syscall!(Process, "chdir", chdir, CHDIR),
        syscall!(Process, "chdir", fchdir, FCHDIR),
        syscall!(Process, "privilege", setuid, SETUID),
        syscall!(Process, "privilege", setgid, SETGID),
        syscall!(Process, "privilege", setreuid, SETREUID),
        syscall!(Process, "privilege", setregid, SETREGID),
        syscall!(Process, "privilege", setresuid, SETRESUID),
        syscall!(Process, "privilege", setresgid, SETRESGID),
        syscall!(Process, "privilege", setfsuid, SETFSUID),
        syscall!(Process, "privilege", setfsgid, SETFSGID),
        syscall!(Process, "privilege", capset, CAPSET),
        syscall!(File, "open", openat, OPENAT),
        syscall!(File, "open", openat2, OPENAT2),
        syscall!(File, "delete", unlinkat, UNLINKAT),
        syscall!(File, "rename", renameat, RENAMEAT),
        syscall!(File, "rename", renameat2, RENAMEAT2),
        syscall!(File, "chmod", fchmod, FCHMOD),
        syscall!(File, "chmod", fchmodat, FCHMODAT),
        syscall!(File, "chmod", fchmodat2, FCHMODAT2),
        syscall!(File, "link", linkat, LINKAT),
        syscall!(File, "link", symlinkat, SYMLINKAT),
        syscall!(File, "truncate", truncate, TRUNCATE),
        syscall!(File, "truncate", ftruncate, FTRUNCATE),
        syscall!(File, "open", dup, DUP),
        syscall!(File, "open", dup3, DUP3),
        syscall!(File, "open", fcntl, FCNTL),
        syscall!(Network, "connect", connect, CONNECT),
        syscall!(Network, "accept", accept, ACCEPT),
        syscall!(Network, "accept", accept4, ACCEPT4),
        syscall!(Network, "listen", listen, LISTEN),
        syscall!(Network, "udp", sendto, SENDTO),
        syscall!(Network, "udp", sendmsg, SENDMSG),
        syscall!(Kernel, "module_load", init_module, INIT_MODULE),
        syscall!(Kernel, "module_load", finit_module, FINIT_MODULE),
        syscall!(Kernel, "bpf_load", bpf, BPF),
    ];
    all.extend(legacy_syscalls());
    all
}

/// The calls an `*at` form replaced, still in x86_64's table. Architectures that started
/// after them (aarch64, riscv64: the generic syscall table) have only the `*at` forms, which
/// `syscalls()` follows everywhere.
#[cfg(target_arch = "x86_64")]
fn legacy_syscalls() -> Vec<SyscallProbe> {
    vec![
        syscall!(Process, "fork", fork, FORK),
        syscall!(Process, "fork", vfork, VFORK),
        syscall!(File, "open", open, OPEN),
        syscall!(File, "delete", unlink, UNLINK),
        syscall!(File, "delete", rmdir, RMDIR),
        syscall!(File, "rename", rename, RENAME),
        syscall!(File, "chmod", chmod, CHMOD),
        syscall!(File, "link", link, LINK),
        syscall!(File, "link", symlink, SYMLINK),
        syscall!(File, "open", dup2, DUP2),
    ]
}

#[cfg(not(target_arch = "x86_64"))]
fn legacy_syscalls() -> Vec<SyscallProbe> {
    Vec::new()
}

/// A non-syscall tracepoint, with the record fields (name, offset) the program reads: checked
/// against the running kernel's `format` file before attaching, because these layouts do
/// change between kernel versions.
pub struct TracepointProbe {
    pub family: Family,
    pub group: &'static str,
    pub program: &'static str,
    pub category: &'static str,
    pub name: &'static str,
    pub fields: &'static [(&'static str, usize)],
}

pub fn tracepoints() -> Vec<TracepointProbe> {
    vec![
        TracepointProbe {
            family: Family::Process,
            group: "exec",
            program: "sm_sched_exec",
            category: "sched",
            name: "sched_process_exec",
            fields: &[("filename", 8), ("old_pid", 16)],
        },
        TracepointProbe {
            family: Family::Process,
            group: "fork",
            program: "sm_sched_fork",
            category: "sched",
            name: "sched_process_fork",
            fields: &[("child_pid", 20)],
        },
        TracepointProbe {
            family: Family::Process,
            group: "exit",
            program: "sm_sched_exit",
            category: "sched",
            name: "sched_process_exit",
            fields: &[("group_dead", 32)],
        },
        TracepointProbe {
            family: Family::Process,
            group: "exit",
            program: "sm_signal_sent",
            category: "signal",
            name: "signal_generate",
            fields: &[("sig", 8), ("pid", 36)],
        },
        TracepointProbe {
            family: Family::Process,
            group: "exit",
            program: "sm_signal",
            category: "signal",
            name: "signal_deliver",
            fields: &[("sig", 8), ("sa_handler", 24)],
        },
        TracepointProbe {
            family: Family::Network,
            group: "tcp",
            program: "sm_sock_state",
            category: "sock",
            name: "inet_sock_set_state",
            fields: &[
                ("skaddr", 8),
                ("oldstate", 16),
                ("newstate", 20),
                ("sport", 24),
                ("dport", 26),
                ("family", 28),
                ("protocol", 30),
                ("saddr", 32),
                ("daddr", 36),
                ("saddr_v6", 40),
                ("daddr_v6", 56),
            ],
        },
        TracepointProbe {
            family: Family::Network,
            group: "tcp",
            program: "sm_sock_send",
            category: "sock",
            name: "sock_send_length",
            fields: &[("sk", 8), ("protocol", 18), ("ret", 20), ("flags", 24)],
        },
        TracepointProbe {
            family: Family::Network,
            group: "tcp",
            program: "sm_sock_recv",
            category: "sock",
            name: "sock_recv_length",
            fields: &[("sk", 8), ("protocol", 18), ("ret", 20), ("flags", 24)],
        },
    ]
}

/// Every program in the object, loaded before attaching.
pub const PROGRAMS: [&str; 11] = [
    SYS_ENTER,
    SYS_ENTER_RAW,
    SYS_EXIT,
    "sm_sched_exec",
    "sm_sched_fork",
    "sm_sched_exit",
    "sm_signal",
    "sm_signal_sent",
    "sm_sock_state",
    "sm_sock_send",
    "sm_sock_recv",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_op_is_mapped_once() {
        let probes = syscalls();
        let mut ops: Vec<u32> = probes.iter().map(|p| p.op).collect();
        ops.sort_unstable();
        ops.dedup();
        assert_eq!(ops.len(), probes.len());
        for p in &probes {
            assert!(p.nr >= 0 && (p.nr as u32) < monitor_common::ops::MAX_SYSCALL_NR);
            assert_eq!(
                monitor_common::ops::family_of(p.op),
                p.family.kernel_index(),
                "{}",
                p.name
            );
        }
    }

    #[test]
    fn only_the_syscalls_that_need_their_entry_get_a_sys_enter_program() {
        let mut names: Vec<&str> = syscalls()
            .into_iter()
            .filter(|p| ops::needs_sys_enter(p.op))
            .map(|p| p.name)
            .collect();
        names.sort_unstable();
        let expected = [
            "capset",
            "clone",
            "clone3",
            "connect",
            "execve",
            "execveat",
            "exit",
            "exit_group",
            "listen",
            "setfsgid",
            "setfsuid",
            "setgid",
            "setregid",
            "setresgid",
            "setresuid",
            "setreuid",
            "setuid",
        ];
        assert_eq!(names, expected);
    }

    #[test]
    fn programs_used_are_listed() {
        for t in tracepoints() {
            assert!(PROGRAMS.contains(&t.program));
        }
    }
}
