//! What a block would do: the kernel deny entry real enforcement would add for an event, or why
//! there is none. Shared by simulated blocks ("would block", nothing stopped) and real ones,
//! so the simulation shows exactly what switching `enforce` on would do.
use std::sync::Arc;

use super::protect::{Protected, comm, file_name};
use crate::capture::enforce::DenyTarget;
use crate::event::{Event, EventType};

/// Programs that are never blocked: the built-in [`Protected`] set, plus the config's
/// `[response] allowlist` (a name matches the process name or the executable's file name, an
/// entry with a `/` the executable's path). The config can add to the set, never remove.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Allowlist {
    entries: Vec<String>,
    builtin: Arc<Protected>,
}

/// Why a program is never blocked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Protection {
    /// A `[response] allowlist` entry.
    Allowlisted(String),
    /// The built-in protected set, with why.
    Builtin(String),
}

impl std::fmt::Display for Protection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Protection::Allowlisted(entry) => {
                write!(f, "{entry} is allowlisted ([response] allowlist)")
            }
            Protection::Builtin(why) => f.write_str(why),
        }
    }
}

impl Allowlist {
    /// The config's entries alone (tests, and views that stop nothing).
    pub fn new(entries: &[String]) -> Allowlist {
        Allowlist::with_protected(entries, Protected::default())
    }

    /// The config's entries on top of this system's protected programs.
    pub fn system(entries: &[String]) -> Allowlist {
        Allowlist::with_protected(entries, Protected::discover())
    }

    pub fn with_protected(entries: &[String], builtin: Protected) -> Allowlist {
        Allowlist {
            entries: entries.iter().filter(|e| !e.is_empty()).cloned().collect(),
            builtin: Arc::new(builtin),
        }
    }

    pub fn entries(&self) -> &[String] {
        &self.entries
    }

    pub fn builtin(&self) -> &Protected {
        &self.builtin
    }

    /// Every name the kernel must never kill on a file-name match: the protected programs'
    /// and the allowlisted names.
    pub fn spared_names(&self) -> Vec<String> {
        let mut names = self.builtin.names();
        names.extend(
            self.entries
                .iter()
                .map(|e| file_name(e).to_string())
                .filter(|n| !n.is_empty()),
        );
        names
    }

    /// The config entry protecting the program with this path (may be empty) and name (may
    /// be empty): a path entry equal to `path`, or a name entry equal to the name or to the
    /// path's file name (compared as the kernel keeps names: their first 15 bytes). Only the
    /// config's entries: used for who makes a connection, where the built-in set does not
    /// apply (a shell connecting out is exactly what a reverse-shell rule denies).
    pub fn protecting(&self, path: &str, name: &str) -> Option<&str> {
        let base = file_name(path);
        self.entries
            .iter()
            .find(|entry| {
                if entry.contains('/') {
                    entry.as_str() == path
                } else {
                    (!base.is_empty() && comm(entry) == comm(base))
                        || (!name.is_empty() && comm(entry) == comm(name))
                }
            })
            .map(String::as_str)
    }

    /// What protects a deny target, if anything: a config entry, or the built-in set (by
    /// path, real path, device and inode; names as the kernel keeps them). A name target
    /// also hits every allowlisted path with that file name (the kernel would kill it by
    /// name). Connect targets are addresses: never a collision.
    pub fn protecting_target(&self, target: &DenyTarget) -> Option<Protection> {
        let allowlisted = match target {
            DenyTarget::ExecPath(path) => self.protecting(path, ""),
            DenyTarget::ExecName(name) => self
                .entries
                .iter()
                .find(|entry| comm(file_name(entry)) == comm(name))
                .map(String::as_str),
            DenyTarget::Connect(..) => None,
        };
        if let Some(entry) = allowlisted {
            return Some(Protection::Allowlisted(entry.to_string()));
        }
        match target {
            DenyTarget::ExecPath(path) => self.builtin.protecting_path(path),
            DenyTarget::ExecName(name) => self.builtin.protecting_name(name),
            DenyTarget::Connect(..) => None,
        }
        .map(Protection::Builtin)
    }
}

/// Directories the system's packages own: a rule denies a program there only when the
/// config lists the rule in `[response] system_binary_rules`.
pub const SYSTEM_DIRS: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/boot", "/etc", "/snap",
    "/nix",
];

/// Whether `path` (or the file it leads to) is in one of [`SYSTEM_DIRS`].
pub fn is_system_binary(path: &str) -> bool {
    let inside = |p: &str| {
        SYSTEM_DIRS.iter().any(|dir| {
            p.strip_prefix(dir)
                .is_some_and(|rest| rest.starts_with('/'))
        })
    };
    inside(&crate::paths::normalize(path))
        || std::fs::canonicalize(path).is_ok_and(|real| inside(&real.to_string_lossy()))
}

/// Why a rule may not deny `target`, if it may not: a rule denies only what an attack
/// brought, a program outside the system directories or a destination. Never a name (any
/// process can take any name), and a system binary only when `opted_in` (the rule is listed
/// in `[response] system_binary_rules`).
pub fn rule_refusal(target: &DenyTarget, rule: &str, opted_in: bool) -> Option<String> {
    match target {
        DenyTarget::ExecName(name) => Some(format!(
            "a rule never denies by name ({name}): any program can take any name"
        )),
        DenyTarget::ExecPath(path) if !opted_in && is_system_binary(path) => Some(format!(
            "would deny system binary {path}: refused (rule {rule} is not listed in [response] \
             system_binary_rules)"
        )),
        _ => None,
    }
}

/// What blocking this event means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Add `target` to the kernel deny table; `effect` says what the kernel then does.
    Deny { target: DenyTarget, effect: String },
    /// The program is protected (allowlisted or built in): never blocked.
    Protected { target: DenyTarget, why: Protection },
    /// The kernel already stopped this one (a killed exec or a refused connect).
    Stopped {
        target: Option<DenyTarget>,
        effect: String,
    },
    /// Nothing the kernel can block for this event.
    Unsupported(String),
}

/// The deny entry blocking `event` takes, checked against the allowlist.
pub fn plan(event: &Event, allowlist: &Allowlist) -> Plan {
    let target = match target_of(event) {
        Ok(target) => target,
        Err(why) => return Plan::Unsupported(why),
    };
    if event.blocked {
        return Plan::Stopped {
            effect: stopped_effect(&target),
            target: Some(target),
        };
    }
    // Who acts: for an exec the new program (the target itself), for a connect the process
    // connecting. Either way an allowlisted program is left alone.
    let protected = match &target {
        DenyTarget::Connect(..) => allowlist
            .protecting(&event.exe, &event.process)
            .map(|e| Protection::Allowlisted(e.to_string())),
        _ => allowlist.protecting_target(&target).or_else(|| {
            allowlist
                .protecting(&event.exe, &event.process)
                .map(|e| Protection::Allowlisted(e.to_string()))
        }),
    };
    if let Some(why) = protected {
        return Plan::Protected { target, why };
    }
    Plan::Deny {
        effect: effect(&target),
        target,
    }
}

/// The deny target for an event: the program's path for an exec, the destination for a
/// connect.
pub fn target_of(event: &Event) -> Result<DenyTarget, String> {
    match event.event_type {
        EventType::ProcessExec => {
            if event.exe.starts_with('/') {
                DenyTarget::exec_path(&event.exe).map_err(|e| e.to_string())
            } else if !event.process.is_empty() && !event.process.contains('/') {
                Ok(DenyTarget::ExecName(event.process.to_string()))
            } else {
                Err("the program's path and name are unknown".to_string())
            }
        }
        EventType::NetConnect => {
            let ip = event
                .target_ip
                .ok_or_else(|| "the connection has no destination address".to_string())?;
            Ok(DenyTarget::Connect(ip, event.target_port.unwrap_or(0)))
        }
        other => Err(format!(
            "{other} events cannot be blocked (only process_exec: kill at exec, and \
             net_connect: refuse connect)"
        )),
    }
}

/// What the kernel does once `target` is denied.
pub fn effect(target: &DenyTarget) -> String {
    match target {
        DenyTarget::ExecPath(path) => {
            format!("kill {path} with SIGKILL at every further exec")
        }
        DenyTarget::ExecName(name) => {
            format!("kill programs named {name} with SIGKILL at every further exec")
        }
        DenyTarget::Connect(..) => {
            format!("refuse every further {} with EPERM", describe(target))
        }
    }
}

fn stopped_effect(target: &DenyTarget) -> String {
    match target {
        DenyTarget::Connect(..) => format!("refused by the kernel ({}: EPERM)", describe(target)),
        _ => "killed at exec by the kernel (SIGKILL)".to_string(),
    }
}

/// `connect 10.0.0.1:443`, `exec path /tmp/x`: the target as people read it.
pub fn describe(target: &DenyTarget) -> String {
    target.to_string()
}

/// The text of a simulated block.
pub fn would(plan: &Plan, enforce_on: bool) -> String {
    let why_not = if enforce_on {
        "simulate_block rule"
    } else {
        "enforce is off"
    };
    match plan {
        Plan::Deny { target, effect } => {
            format!("would block: deny {target} in the kernel, which would {effect} ({why_not})")
        }
        Plan::Protected { target, why } => format!("would not block {target}: {why}"),
        Plan::Stopped { effect, .. } => format!("already stopped: {effect}"),
        Plan::Unsupported(why) => format!("would not block: {why}"),
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;

    fn exec(exe: &str, name: &str) -> Event {
        let mut e = Event::new(EventType::ProcessExec, DateTime::UNIX_EPOCH);
        e.exe = exe.into();
        e.process = name.into();
        e
    }

    fn connect(ip: &str, port: u16, process: &str) -> Event {
        let mut e = Event::new(EventType::NetConnect, DateTime::UNIX_EPOCH);
        e.target_ip = Some(ip.parse().expect("an address"));
        e.target_port = Some(port);
        e.process = process.into();
        e.exe = format!("/usr/bin/{process}").into();
        e
    }

    #[test]
    fn allowlist_matches_names_paths_and_cut_names() {
        let list = Allowlist::new(&[
            "sshd".to_string(),
            "/usr/bin/tmux".to_string(),
            "a-very-long-program-name".to_string(),
        ]);
        assert_eq!(list.protecting("/usr/sbin/sshd", "sshd"), Some("sshd"));
        assert_eq!(list.protecting("/opt/sshd", ""), Some("sshd"));
        assert_eq!(list.protecting("", "sshd"), Some("sshd"));
        assert_eq!(
            list.protecting("/usr/bin/tmux", "tmux"),
            Some("/usr/bin/tmux")
        );
        assert_eq!(list.protecting("/opt/tmux", "tmux"), None);
        // A name-only deny of tmux would hit the allowlisted /usr/bin/tmux.
        let target = DenyTarget::ExecName("tmux".to_string());
        assert_eq!(
            list.protecting_target(&target),
            Some(Protection::Allowlisted("/usr/bin/tmux".to_string()))
        );
        assert_eq!(
            list.protecting("/x/a-very-long-program-name", "a-very-long-pro"),
            Some("a-very-long-program-name")
        );
        assert_eq!(list.protecting("/usr/bin/bash", "bash"), None);
        assert_eq!(list.protecting("/usr/bin/sshd-keygen", "sshd-keygen"), None);
        let target = DenyTarget::ExecName("sshd".to_string());
        assert_eq!(
            list.protecting_target(&target),
            Some(Protection::Allowlisted("sshd".to_string()))
        );
        let target = DenyTarget::Connect("127.0.0.1".parse().expect("ip"), 22);
        assert_eq!(list.protecting_target(&target), None);
    }

    #[test]
    fn exec_plans_deny_the_path() {
        let list = Allowlist::new(&["sshd".to_string()]);
        let plan = plan(&exec("/tmp/x", "x"), &list);
        assert_eq!(
            plan,
            Plan::Deny {
                target: DenyTarget::ExecPath("/tmp/x".to_string()),
                effect: "kill /tmp/x with SIGKILL at every further exec".to_string(),
            }
        );
        assert_eq!(
            would(&plan, false),
            "would block: deny exec path /tmp/x in the kernel, which would kill /tmp/x with \
             SIGKILL at every further exec (enforce is off)"
        );
        let sshd = super::plan(&exec("/usr/sbin/sshd", "sshd"), &list);
        assert!(
            matches!(&sshd, Plan::Protected { why: Protection::Allowlisted(entry), .. } if entry == "sshd")
        );
        assert!(would(&sshd, true).contains("sshd is allowlisted"));
    }

    #[test]
    fn connect_plans_deny_the_destination_unless_the_caller_is_allowlisted() {
        let list = Allowlist::new(&["sshd".to_string()]);
        let plan = plan(&connect("10.0.0.1", 443, "curl"), &list);
        assert_eq!(
            plan,
            Plan::Deny {
                target: DenyTarget::Connect("10.0.0.1".parse().expect("ip"), 443),
                effect: "refuse every further connect 10.0.0.1:443 with EPERM".to_string(),
            }
        );
        let from_sshd = super::plan(&connect("10.0.0.1", 443, "sshd"), &list);
        assert!(matches!(from_sshd, Plan::Protected { .. }));
        let mut blocked = connect("::1", 80, "curl");
        blocked.blocked = true;
        assert!(matches!(
            super::plan(&blocked, &list),
            Plan::Stopped { effect, .. } if effect == "refused by the kernel (connect [::1]:80: EPERM)"
        ));
    }

    #[test]
    fn the_builtin_set_protects_what_the_config_does_not_list() {
        let dir = tempfile::tempdir().expect("tempdir");
        let shell = dir.path().join("sh");
        std::fs::write(&shell, b"").expect("write");
        let mut builtin = Protected::default();
        builtin.add(
            &shell.to_string_lossy(),
            "a login shell (listed in /etc/shells)",
        );
        // An empty allowlist removes nothing.
        let list = Allowlist::with_protected(&[], builtin);
        let spelled = format!("{}/./sh", dir.path().display());
        let e = exec(&spelled, "sh");
        let plan = plan(&e, &list);
        assert!(
            matches!(&plan, Plan::Protected { why: Protection::Builtin(why), .. } if why.contains("login shell")),
            "{plan:?}"
        );
        assert!(would(&plan, true).contains("is protected: a login shell"));
        // A connect by a protected shell is still denied: the destination is what the attack
        // brought.
        let mut c = connect("10.0.0.1", 4444, "sh");
        c.exe = shell.to_string_lossy().into_owned().into();
        assert!(matches!(super::plan(&c, &list), Plan::Deny { .. }));
        assert!(list.spared_names().contains(&"sh".to_string()));
    }

    #[test]
    fn rules_deny_only_what_an_attack_brought() {
        let name = DenyTarget::ExecName("x".to_string());
        assert!(rule_refusal(&name, "r", true).is_some_and(|w| w.contains("never denies by name")));
        let curl = DenyTarget::ExecPath("/usr/bin/curl".to_string());
        let why = rule_refusal(&curl, "r", false).expect("refused");
        assert!(
            why.starts_with("would deny system binary /usr/bin/curl"),
            "{why}"
        );
        assert_eq!(rule_refusal(&curl, "r", true), None);
        let dropped = DenyTarget::ExecPath("/tmp/x".to_string());
        assert_eq!(rule_refusal(&dropped, "r", false), None);
        let ip = DenyTarget::Connect("10.0.0.1".parse().expect("ip"), 80);
        assert_eq!(rule_refusal(&ip, "r", false), None);
        assert!(is_system_binary("/bin/../usr/bin/x"));
        assert!(!is_system_binary("/usr2/x"));
        assert!(!is_system_binary("/tmp/usr/x"));
    }

    #[test]
    fn other_events_cannot_be_blocked() {
        let list = Allowlist::default();
        let e = Event::new(EventType::FileOpen, DateTime::UNIX_EPOCH);
        assert!(matches!(plan(&e, &list), Plan::Unsupported(why) if why.starts_with("file_open")));
        let e = Event::new(EventType::NetConnect, DateTime::UNIX_EPOCH);
        assert!(matches!(plan(&e, &list), Plan::Unsupported(_)));
    }
}
