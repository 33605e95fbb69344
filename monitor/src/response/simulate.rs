//! What a block would do: the kernel deny entry real enforcement would add for an event, or why
//! there is none. Shared by simulated blocks ("would block", nothing stopped) and real ones,
//! so the simulation shows exactly what switching `enforce` on would do.
use std::net::IpAddr;

use crate::capture::enforce::DenyTarget;
use crate::event::{Event, EventType};

/// The kernel keeps the first 15 bytes of a program's file name as its name (comm).
const COMM_MAX: usize = 15;

/// Programs that are never blocked (`[response] allowlist`): a name matches the process name
/// or the executable's file name, an entry with a `/` the executable's path.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Allowlist {
    entries: Vec<String>,
}

impl Allowlist {
    pub fn new(entries: &[String]) -> Allowlist {
        Allowlist {
            entries: entries.iter().filter(|e| !e.is_empty()).cloned().collect(),
        }
    }

    pub fn entries(&self) -> &[String] {
        &self.entries
    }

    /// The entry protecting the program with this path (may be empty) and name (may be
    /// empty): a path entry equal to `path`, or a name entry equal to the name or to the
    /// path's file name (compared as the kernel keeps names: their first 15 bytes).
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

    /// The entry a deny target would hit. A name target also hits every allowlisted path
    /// with that file name (the kernel would kill it by name). Connect targets are
    /// addresses: never a collision.
    pub fn protecting_target(&self, target: &DenyTarget) -> Option<&str> {
        match target {
            DenyTarget::ExecPath(path) => self.protecting(path, ""),
            DenyTarget::ExecName(name) => self
                .entries
                .iter()
                .find(|entry| comm(file_name(entry)) == comm(name))
                .map(String::as_str),
            DenyTarget::Connect(..) => None,
        }
    }
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// A name as the kernel stores it (at most 15 bytes, cut on a byte boundary).
fn comm(name: &str) -> &[u8] {
    let bytes = name.as_bytes();
    &bytes[..bytes.len().min(COMM_MAX)]
}

/// What blocking this event means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Add `target` to the kernel deny table; `effect` says what the kernel then does.
    Deny { target: DenyTarget, effect: String },
    /// The program is allowlisted: never blocked.
    Allowlisted { target: DenyTarget, entry: String },
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
        DenyTarget::Connect(..) => allowlist.protecting(&event.exe, &event.process),
        _ => allowlist
            .protecting_target(&target)
            .or_else(|| allowlist.protecting(&event.exe, &event.process)),
    };
    if let Some(entry) = protected {
        return Plan::Allowlisted {
            target,
            entry: entry.to_string(),
        };
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
                Ok(DenyTarget::ExecPath(event.exe.clone()))
            } else if !event.process.is_empty() && !event.process.contains('/') {
                Ok(DenyTarget::ExecName(event.process.clone()))
            } else {
                Err("the program's path and name are unknown".to_string())
            }
        }
        EventType::NetConnect => {
            let ip = event
                .target_ip
                .as_deref()
                .and_then(|ip| ip.parse::<IpAddr>().ok())
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
        Plan::Allowlisted { target, entry } => {
            format!("would not block {target}: {entry} is allowlisted")
        }
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
        e.exe = exe.to_string();
        e.process = name.to_string();
        e
    }

    fn connect(ip: &str, port: u16, process: &str) -> Event {
        let mut e = Event::new(EventType::NetConnect, DateTime::UNIX_EPOCH);
        e.target_ip = Some(ip.to_string());
        e.target_port = Some(port);
        e.process = process.to_string();
        e.exe = format!("/usr/bin/{process}");
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
        assert_eq!(list.protecting_target(&target), Some("/usr/bin/tmux"));
        assert_eq!(
            list.protecting("/x/a-very-long-program-name", "a-very-long-pro"),
            Some("a-very-long-program-name")
        );
        assert_eq!(list.protecting("/usr/bin/bash", "bash"), None);
        assert_eq!(list.protecting("/usr/bin/sshd-keygen", "sshd-keygen"), None);
        let target = DenyTarget::ExecName("sshd".to_string());
        assert_eq!(list.protecting_target(&target), Some("sshd"));
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
        assert!(matches!(&sshd, Plan::Allowlisted { entry, .. } if entry == "sshd"));
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
        assert!(matches!(from_sshd, Plan::Allowlisted { .. }));
        let mut blocked = connect("::1", 80, "curl");
        blocked.blocked = true;
        assert!(matches!(
            super::plan(&blocked, &list),
            Plan::Stopped { effect, .. } if effect == "refused by the kernel (connect [::1]:80: EPERM)"
        ));
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
