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
    /// Program attached to `sys_enter_<name>`.
    pub enter: &'static str,
    /// Program attached to `sys_exit_<name>`, if the call returns something we report.
    pub exit: Option<&'static str>,
}

const ENTER: &str = "sm_sys_enter";

macro_rules! syscall {
    ($family:ident, $group:literal, $name:ident, $op:ident, $enter:expr, $exit:expr) => {
        SyscallProbe {
            op: ops::$op,
            name: stringify!($name),
            nr: paste_nr!($name),
            group: $group,
            family: Family::$family,
            enter: $enter,
            exit: $exit,
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

const EXIT_PROCESS: Option<&str> = Some("sm_exit_process");
const EXIT_FILE: Option<&str> = Some("sm_exit_file");
const EXIT_NET: Option<&str> = Some("sm_exit_net");
const EXIT_KERNEL: Option<&str> = Some("sm_exit_kernel");

/// Every syscall followed (x86_64 numbering via libc; the legacy calls without an `at`
/// variant exist on x86_64 only).
pub fn syscalls() -> Vec<SyscallProbe> {
    vec![
        syscall!(Process, "exec", execve, EXECVE, "sm_execve", EXIT_PROCESS),
        syscall!(
            Process,
            "exec",
            execveat,
            EXECVEAT,
            "sm_execve",
            EXIT_PROCESS
        ),
        syscall!(Process, "fork", clone, CLONE, ENTER, EXIT_PROCESS),
        syscall!(Process, "fork", clone3, CLONE3, ENTER, EXIT_PROCESS),
        syscall!(Process, "fork", fork, FORK, ENTER, EXIT_PROCESS),
        syscall!(Process, "fork", vfork, VFORK, ENTER, EXIT_PROCESS),
        syscall!(Process, "exit", exit, EXIT, ENTER, None),
        syscall!(Process, "exit", exit_group, EXIT_GROUP, ENTER, None),
        syscall!(Process, "ptrace", ptrace, PTRACE, ENTER, EXIT_PROCESS),
        syscall!(Process, "chdir", chdir, CHDIR, ENTER, EXIT_PROCESS),
        syscall!(Process, "chdir", fchdir, FCHDIR, ENTER, EXIT_PROCESS),
        syscall!(Process, "privilege", setuid, SETUID, ENTER, EXIT_PROCESS),
        syscall!(Process, "privilege", setgid, SETGID, ENTER, EXIT_PROCESS),
        syscall!(
            Process,
            "privilege",
            setreuid,
            SETREUID,
            ENTER,
            EXIT_PROCESS
        ),
        syscall!(
            Process,
            "privilege",
            setregid,
            SETREGID,
            ENTER,
            EXIT_PROCESS
        ),
        syscall!(
            Process,
            "privilege",
            setresuid,
            SETRESUID,
            ENTER,
            EXIT_PROCESS
        ),
        syscall!(
            Process,
            "privilege",
            setresgid,
            SETRESGID,
            ENTER,
            EXIT_PROCESS
        ),
        syscall!(
            Process,
            "privilege",
            setfsuid,
            SETFSUID,
            ENTER,
            EXIT_PROCESS
        ),
        syscall!(
            Process,
            "privilege",
            setfsgid,
            SETFSGID,
            ENTER,
            EXIT_PROCESS
        ),
        syscall!(Process, "privilege", capset, CAPSET, ENTER, EXIT_PROCESS),
        syscall!(File, "open", open, OPEN, ENTER, EXIT_FILE),
        syscall!(File, "open", openat, OPENAT, ENTER, EXIT_FILE),
        syscall!(File, "open", openat2, OPENAT2, ENTER, EXIT_FILE),
        syscall!(File, "delete", unlink, UNLINK, ENTER, EXIT_FILE),
        syscall!(File, "delete", unlinkat, UNLINKAT, ENTER, EXIT_FILE),
        syscall!(File, "delete", rmdir, RMDIR, ENTER, EXIT_FILE),
        syscall!(File, "rename", rename, RENAME, ENTER, EXIT_FILE),
        syscall!(File, "rename", renameat, RENAMEAT, ENTER, EXIT_FILE),
        syscall!(File, "rename", renameat2, RENAMEAT2, ENTER, EXIT_FILE),
        syscall!(File, "chmod", chmod, CHMOD, ENTER, EXIT_FILE),
        syscall!(File, "chmod", fchmod, FCHMOD, ENTER, EXIT_FILE),
        syscall!(File, "chmod", fchmodat, FCHMODAT, ENTER, EXIT_FILE),
        syscall!(File, "chmod", fchmodat2, FCHMODAT2, ENTER, EXIT_FILE),
        syscall!(File, "link", link, LINK, ENTER, EXIT_FILE),
        syscall!(File, "link", linkat, LINKAT, ENTER, EXIT_FILE),
        syscall!(File, "link", symlink, SYMLINK, ENTER, EXIT_FILE),
        syscall!(File, "link", symlinkat, SYMLINKAT, ENTER, EXIT_FILE),
        syscall!(Network, "connect", connect, CONNECT, ENTER, EXIT_NET),
        syscall!(Network, "accept", accept, ACCEPT, ENTER, EXIT_NET),
        syscall!(Network, "accept", accept4, ACCEPT4, ENTER, EXIT_NET),
        syscall!(Network, "listen", listen, LISTEN, ENTER, EXIT_NET),
        syscall!(Network, "udp", sendto, SENDTO, ENTER, EXIT_NET),
        syscall!(Network, "udp", sendmsg, SENDMSG, ENTER, EXIT_NET),
        syscall!(
            Kernel,
            "module_load",
            init_module,
            INIT_MODULE,
            ENTER,
            EXIT_KERNEL
        ),
        syscall!(
            Kernel,
            "module_load",
            finit_module,
            FINIT_MODULE,
            ENTER,
            EXIT_KERNEL
        ),
        syscall!(Kernel, "bpf_load", bpf, BPF, ENTER, EXIT_KERNEL),
    ]
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
pub const PROGRAMS: [&str; 13] = [
    "sm_sys_enter",
    "sm_execve",
    "sm_exit_process",
    "sm_exit_file",
    "sm_exit_net",
    "sm_exit_kernel",
    "sm_sched_exec",
    "sm_sched_fork",
    "sm_sched_exit",
    "sm_signal",
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
    fn programs_used_are_listed() {
        for p in syscalls() {
            assert!(PROGRAMS.contains(&p.enter));
            if let Some(exit) = p.exit {
                assert!(PROGRAMS.contains(&exit));
            }
        }
        for t in tracepoints() {
            assert!(PROGRAMS.contains(&t.program));
        }
    }
}
