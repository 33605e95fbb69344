//! The protected set: programs no deny entry may ever hit, whoever asks (a rule, the control
//! socket, a key in the UI). Without them an operator cannot log in, raise privileges, reach a
//! shell or undo a block. Built at start from what this system has:
//!
//! - PID 1's program and secmon's own;
//! - the SSH server and its helpers (`sshd`, `sshd-session`, `sshd-auth`, `sftp-server`);
//! - `login`, `su`, `sudo`, `doas`, `runuser`, the gettys;
//! - every shell listed in `/etc/shells`;
//! - the terminal multiplexers `tmux`, `screen`, `zellij`;
//! - the init system's tools (`systemctl`, `journalctl`, `loginctl`, every `systemd*` program).
//!
//! Programs are compared by their normalised path, their real path (links resolved) and their
//! device and inode, so another spelling or a hard link of a protected program is protected
//! too. Names (for name denies, which the kernel matches on the first 15 bytes) are compared
//! as the kernel keeps them. The config's `allowlist` adds to this set; nothing removes from it.
use std::{
    collections::BTreeMap,
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use crate::paths;

/// The kernel keeps the first 15 bytes of a program's file name as its name (comm).
const COMM_MAX: usize = 15;

/// Programs looked for by name in [`PROGRAM_DIRS`], with why they are protected.
const LOGIN_PROGRAMS: &[(&str, &str)] = &[
    ("sshd", "the SSH server"),
    ("sshd-session", "the SSH server's session helper"),
    ("sshd-auth", "the SSH server's authentication helper"),
    ("sftp-server", "the SSH server's file transfer helper"),
    ("login", "a login program"),
    ("su", "a login program"),
    ("sudo", "a privilege tool"),
    ("sudoedit", "a privilege tool"),
    ("doas", "a privilege tool"),
    ("runuser", "a privilege tool"),
    ("agetty", "a login program"),
    ("getty", "a login program"),
    ("tmux", "a terminal multiplexer"),
    ("screen", "a terminal multiplexer"),
    ("zellij", "a terminal multiplexer"),
    ("systemctl", "the init system's tool"),
    ("journalctl", "the init system's tool"),
    ("loginctl", "the init system's tool"),
    ("init", "the init system"),
    ("secmon-tui", "secmon (it undoes blocks)"),
];

/// Where [`LOGIN_PROGRAMS`] live on the distributions we know.
const PROGRAM_DIRS: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
    "/usr/lib/openssh",
    "/usr/libexec/openssh",
    "/usr/lib/ssh",
    "/usr/libexec",
    "/usr/libexec/sudo",
];

/// Where the init system's programs (`systemd*`) live.
const INIT_DIRS: &[&str] = &["/usr/lib/systemd", "/lib/systemd", "/usr/bin", "/bin"];

/// Names starting with this are the init system's (systemd-journald, systemd-logind, …).
const INIT_PREFIX: &str = "systemd";

/// One protected program.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Program {
    /// As found (normalised).
    path: String,
    /// With every link resolved, when it exists.
    real: Option<PathBuf>,
    /// Device and inode, when it exists.
    id: Option<(u64, u64)>,
    why: String,
}

impl Program {
    fn new(path: &str, why: &str) -> Program {
        let meta = fs::metadata(path).ok();
        Program {
            path: paths::normalize(path),
            real: fs::canonicalize(path).ok(),
            id: meta.map(|m| (m.dev(), m.ino())),
            why: why.to_string(),
        }
    }
}

/// The built-in protected set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Protected {
    programs: Vec<Program>,
    /// Name as the kernel keeps it (15 bytes) → why.
    names: BTreeMap<Vec<u8>, String>,
}

impl Protected {
    /// The protected programs of this system.
    pub fn discover() -> Protected {
        let mut set = Protected::default();
        if let Ok(init) = fs::read_link("/proc/1/exe") {
            set.add(&init.to_string_lossy(), "the init system (PID 1's program)");
        }
        if let Ok(me) = std::env::current_exe() {
            set.add(&me.to_string_lossy(), "secmon itself (it undoes blocks)");
        }
        for (name, why) in LOGIN_PROGRAMS {
            set.add_name(name, why);
            for dir in PROGRAM_DIRS {
                let path = Path::new(dir).join(name);
                if path.is_file() {
                    set.add(&path.to_string_lossy(), why);
                }
            }
        }
        for shell in shells(&fs::read_to_string("/etc/shells").unwrap_or_default()) {
            set.add(shell, "a login shell (listed in /etc/shells)");
        }
        for dir in INIT_DIRS {
            let Ok(entries) = fs::read_dir(dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                if name.to_string_lossy().starts_with(INIT_PREFIX) && entry.path().is_file() {
                    set.add(&entry.path().to_string_lossy(), "the init system's program");
                }
            }
        }
        set
    }

    /// Adds a program (by absolute path) and its name.
    pub fn add(&mut self, path: &str, why: &str) {
        let program = Program::new(path, why);
        if self.programs.iter().any(|p| p == &program) {
            return;
        }
        self.add_name(file_name(&program.path), why);
        if let Some(real) = &program.real {
            self.add_name(file_name(&real.to_string_lossy()), why);
        }
        self.programs.push(program);
    }

    fn add_name(&mut self, name: &str, why: &str) {
        if !name.is_empty() {
            self.names
                .entry(comm(name).to_vec())
                .or_insert_with(|| why.to_string());
        }
    }

    /// Why the program at `path` is protected, if it is: the same path (normalised or with
    /// links resolved) or the same file (device and inode) as a protected program.
    pub fn protecting_path(&self, path: &str) -> Option<String> {
        let spelled = paths::normalize(path);
        let real = fs::canonicalize(path).ok();
        let id = fs::metadata(path).ok().map(|m| (m.dev(), m.ino()));
        self.programs
            .iter()
            .find(|p| {
                p.path == spelled
                    || real.as_ref().is_some_and(|r| {
                        p.real.as_ref() == Some(r) || Path::new(&p.path) == r.as_path()
                    })
                    || (id.is_some() && p.id == id)
            })
            .map(|p| format!("{} is protected: {}", p.path, p.why))
    }

    /// Why programs named `name` are protected, if they are (compared as the kernel keeps
    /// names: a deny of `systemd-journal` would kill `systemd-journald`).
    pub fn protecting_name(&self, name: &str) -> Option<String> {
        let cut = comm(name);
        if let Some(why) = self.names.get(cut) {
            return Some(format!("programs named {name} are protected: {why}"));
        }
        cut.starts_with(INIT_PREFIX.as_bytes())
            .then(|| format!("programs named {name} are protected: the init system's programs"))
    }

    /// The names of every protected program (the kernel never kills an unusual spelling of
    /// these on a file-name match).
    pub fn names(&self) -> Vec<String> {
        self.names
            .keys()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect()
    }

    pub fn len(&self) -> usize {
        self.programs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.programs.is_empty()
    }
}

/// The absolute paths listed in an `/etc/shells` text.
fn shells(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(str::trim)
        .filter(|line| line.starts_with('/'))
}

pub(crate) fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// A name as the kernel stores it (at most 15 bytes, cut on a byte boundary).
pub(crate) fn comm(name: &str) -> &[u8] {
    let bytes = name.as_bytes();
    &bytes[..bytes.len().min(COMM_MAX)]
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn every_spelling_link_and_hard_link_of_a_protected_program_is_protected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let shell = dir.path().join("myshell");
        fs::write(&shell, b"#!/bin/true\n").expect("write");
        let mut set = Protected::default();
        set.add(&shell.to_string_lossy(), "a login shell");
        let d = dir.path().display();
        for spelling in [
            format!("{d}/myshell"),
            format!("{d}//myshell"),
            format!("{d}/./myshell"),
            format!("{d}/x/../myshell"),
        ] {
            assert!(
                set.protecting_path(&spelling)
                    .is_some_and(|why| why.contains("a login shell")),
                "{spelling}"
            );
        }
        let soft = dir.path().join("soft");
        symlink(&shell, &soft).expect("symlink");
        assert!(set.protecting_path(&soft.to_string_lossy()).is_some());
        let hard = dir.path().join("hard");
        fs::hard_link(&shell, &hard).expect("hard link");
        assert!(set.protecting_path(&hard.to_string_lossy()).is_some());
        let copy = dir.path().join("copy");
        fs::copy(&shell, &copy).expect("copy");
        assert_eq!(set.protecting_path(&copy.to_string_lossy()), None);
    }

    #[test]
    fn names_are_compared_as_the_kernel_keeps_them() {
        let mut set = Protected::default();
        set.add(
            "/usr/lib/openssh/sshd-session",
            "the SSH server's session helper",
        );
        set.add_name("secmon-tui", "secmon");
        assert!(set.protecting_name("sshd-session").is_some());
        assert!(set.protecting_name("secmon-tui").is_some());
        // 15 bytes: a deny of this name would kill systemd-journald.
        assert!(set.protecting_name("systemd-journal").is_some());
        assert!(set.protecting_name("systemd-anything").is_some());
        assert_eq!(set.protecting_name("nc"), None);
        assert!(set.names().contains(&"sshd-session".to_string()));
    }

    #[test]
    fn shells_are_read_from_etc_shells() {
        let text = "# /etc/shells\n/bin/sh\n  /usr/bin/bash \n\nzsh\n";
        assert_eq!(
            shells(text).collect::<Vec<_>>(),
            ["/bin/sh", "/usr/bin/bash"]
        );
    }

    #[test]
    fn this_system_protects_init_secmon_and_every_listed_shell() {
        let set = Protected::discover();
        let me = std::env::current_exe().expect("current exe");
        assert!(set.protecting_path(&me.to_string_lossy()).is_some());
        // Readable as root only.
        if let Ok(init) = fs::read_link("/proc/1/exe") {
            assert!(set.protecting_path(&init.to_string_lossy()).is_some());
        }
        for shell in shells(&fs::read_to_string("/etc/shells").unwrap_or_default()) {
            if Path::new(shell).exists() {
                assert!(set.protecting_path(shell).is_some(), "{shell}");
            }
        }
        for name in [
            "sshd",
            "sshd-session",
            "sshd-auth",
            "sudo",
            "su",
            "tmux",
            "secmon-tui",
        ] {
            assert!(set.protecting_name(name).is_some(), "{name}");
        }
    }
}
