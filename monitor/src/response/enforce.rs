//! Real enforcement policy, on top of the kernel deny tables (`capture::enforce`): the
//! allowlist check, then `Capture::deny`; every block, unblock and expiry is reported on stderr
//! and in the alert log with who asked, what is blocked and why. Used by rules with
//! `action = "block"` (through the [`super::Responder`]) and by the control socket.
use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::alert_log::{self, SharedLog};
use super::simulate::Allowlist;
use crate::capture::{
    Capture,
    enforce::{DenyTarget, EnforceError},
};
use crate::sanitize::for_terminal;

/// The capture, shared by the pipeline (drop counters), the response layer and the control
/// socket. Locks are held only for single map updates, never across an await.
pub type SharedCapture = Arc<Mutex<Capture>>;

/// Locks the capture (a panic elsewhere must not disable unblocking).
pub fn lock_capture(capture: &SharedCapture) -> MutexGuard<'_, Capture> {
    capture.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Who asked for a block, and why.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Origin {
    /// The process behind the event (`pid 1234 uid 0 (/tmp/x)`) or the control client.
    pub by: String,
    /// The rule that asked for it.
    pub rule: Option<String>,
    /// Why: the rule's label, or the reason given with `block add`.
    pub reason: String,
}

/// A live deny entry and its story: what `block list` shows and the alert log records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DenyRecord {
    pub id: u32,
    /// `exec_path`, `exec_name` or `connect`.
    pub kind: String,
    /// The path, name, or `address:port` (`address` alone: every port).
    pub value: String,
    /// Both as people read them: `exec path /tmp/x`, `connect 10.0.0.1:443`.
    pub target: String,
    pub created: DateTime<Utc>,
    /// When it lapses (absent: until removed or the monitor exits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<DateTime<Utc>>,
    pub by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    pub reason: String,
}

impl DenyRecord {
    /// The record of entry `id` denying `target`, made at `created` by `origin`.
    pub fn new(
        id: u32,
        target: &DenyTarget,
        created: DateTime<Utc>,
        expires: Option<DateTime<Utc>>,
        origin: Origin,
    ) -> DenyRecord {
        let (kind, value) = target_parts(target);
        DenyRecord {
            id,
            kind: kind.to_string(),
            value,
            target: target.to_string(),
            created,
            expires,
            by: origin.by,
            rule: origin.rule,
            reason: origin.reason,
        }
    }
}

/// `(kind, value)` of a target, as the control protocol spells them.
pub fn target_parts(target: &DenyTarget) -> (&'static str, String) {
    match target {
        DenyTarget::ExecPath(path) => ("exec_path", path.clone()),
        DenyTarget::ExecName(name) => ("exec_name", name.clone()),
        DenyTarget::Connect(ip, 0) => ("connect", ip.to_string()),
        DenyTarget::Connect(std::net::IpAddr::V6(ip), port) => {
            ("connect", format!("[{ip}]:{port}"))
        }
        DenyTarget::Connect(ip, port) => ("connect", format!("{ip}:{port}")),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("{target} is not blocked: {entry} is allowlisted ([response] allowlist)")]
    Allowlisted { target: String, entry: String },
    #[error("no deny entry with id {0}")]
    NoSuchEntry(u32),
    #[error(transparent)]
    Enforce(#[from] EnforceError),
}

/// One line of the alert log about enforcement.
#[derive(Serialize)]
struct AuditLine<'a> {
    timestamp: DateTime<Utc>,
    /// `block`, `unblock` or `expired`.
    enforcement: &'a str,
    #[serde(flatten)]
    record: &'a DenyRecord,
    /// For `unblock`: who removed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    removed_by: Option<&'a str>,
}

/// The policy in front of the kernel deny tables.
pub struct Enforcer {
    capture: SharedCapture,
    allowlist: Allowlist,
    default_ttl: Option<Duration>,
    audit: Option<SharedLog>,
    records: Mutex<BTreeMap<u32, (DenyTarget, DenyRecord)>>,
}

impl Enforcer {
    /// `capture` must have enforcement enabled. `default_ttl` applies to rule-made entries
    /// and to `block add` without `--ttl`.
    pub fn new(
        capture: SharedCapture,
        allowlist: Allowlist,
        default_ttl: Option<Duration>,
        audit: Option<SharedLog>,
    ) -> Enforcer {
        Enforcer {
            capture,
            allowlist,
            default_ttl,
            audit,
            records: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn allowlist(&self) -> &Allowlist {
        &self.allowlist
    }

    pub fn default_ttl(&self) -> Option<Duration> {
        self.default_ttl
    }

    fn records(&self) -> MutexGuard<'_, BTreeMap<u32, (DenyTarget, DenyRecord)>> {
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The live entry for `target`, if any.
    pub fn existing(&self, target: &DenyTarget) -> Option<DenyRecord> {
        let now = Utc::now();
        self.records()
            .values()
            .find(|(t, r)| t == target && r.expires.is_none_or(|at| at > now))
            .map(|(_, r)| r.clone())
    }

    /// Denies `target` in the kernel for `ttl` (None: until removed), unless it is
    /// allowlisted. Replaces an entry for the same target. Logged on stderr and in the alert
    /// log.
    pub fn block(
        &self,
        target: DenyTarget,
        ttl: Option<Duration>,
        origin: Origin,
    ) -> Result<DenyRecord, BlockError> {
        if let Some(entry) = self.allowlist.protecting_target(&target) {
            return Err(BlockError::Allowlisted {
                target: target.to_string(),
                entry: entry.to_string(),
            });
        }
        let deny = lock_capture(&self.capture).deny(target.clone(), ttl)?;
        let created = Utc::now();
        let expires = ttl.and_then(|ttl| chrono::Duration::from_std(ttl).ok().map(|d| created + d));
        let record = DenyRecord::new(deny.id, &target, created, expires, origin);
        {
            let mut records = self.records();
            // The kernel table keeps one entry per target: the older id is gone.
            records.retain(|_, (t, _)| *t != target);
            records.insert(record.id, (target, record.clone()));
        }
        let expiry = match ttl {
            Some(ttl) => format!("expires in {} s", ttl.as_secs()),
            None => "until removed or secmon exits".to_string(),
        };
        let why = match &record.rule {
            Some(rule) => format!("rule {rule} ({})", record.reason),
            None => record.reason.clone(),
        };
        // Targets, names and reasons come from the monitored system: escaped, so a path
        // cannot forge lines on a terminal (or in the UI's status line, which reads stderr).
        eprintln!(
            "secmon: block #{}: {}; who: {}; why: {}; {expiry} (undo: secmon-tui unblock {})",
            record.id,
            for_terminal(&record.target),
            for_terminal(&record.by),
            for_terminal(&why),
            record.id
        );
        self.audit("block", &record, None);
        Ok(record)
    }

    /// Removes entry `id` (`by` says who asked).
    pub fn unblock(&self, id: u32, by: &str) -> Result<DenyRecord, BlockError> {
        let removed = lock_capture(&self.capture).undeny(id)?;
        let known = self.records().remove(&id).map(|(_, r)| r);
        let Some(deny) = removed else {
            return Err(BlockError::NoSuchEntry(id));
        };
        // Our record of it, or one rebuilt from the kernel's entry when we have none.
        let record = known.unwrap_or_else(|| {
            DenyRecord::new(id, &deny.target, Utc::now(), None, Origin::default())
        });
        eprintln!(
            "secmon: unblock #{id}: {} (removed by {})",
            for_terminal(&record.target),
            for_terminal(by)
        );
        self.audit("unblock", &record, Some(by));
        Ok(record)
    }

    /// The live entries, oldest first. Lapsed ones are dropped (and reported) on the way.
    pub fn list(&self) -> Vec<DenyRecord> {
        let live: Vec<u32> = lock_capture(&self.capture)
            .denies()
            .iter()
            .map(|d| d.id)
            .collect();
        let lapsed: Vec<DenyRecord> = {
            let mut records = self.records();
            let gone: Vec<u32> = records
                .keys()
                .filter(|id| !live.contains(id))
                .copied()
                .collect();
            gone.iter()
                .filter_map(|id| records.remove(id).map(|(_, r)| r))
                .collect()
        };
        for record in &lapsed {
            eprintln!(
                "secmon: block #{} expired: {}",
                record.id,
                for_terminal(&record.target)
            );
            self.audit("expired", record, None);
        }
        self.records().values().map(|(_, r)| r.clone()).collect()
    }

    /// Drops lapsed entries (called about once a second).
    pub fn expire(&self) {
        let _ = self.list();
    }

    fn audit(&self, what: &str, record: &DenyRecord, removed_by: Option<&str>) {
        let Some(log) = &self.audit else { return };
        let line = AuditLine {
            timestamp: Utc::now(),
            enforcement: what,
            record,
            removed_by,
        };
        let Ok(text) = serde_json::to_string(&line) else {
            return;
        };
        let mut log = alert_log::lock(log);
        if let Err(e) = log.append_now(&text) {
            log.errors += 1;
            eprintln!(
                "secmon: warning: cannot write to the alert log {}: {e}",
                log.path().display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_parts_spell_the_protocol_values() {
        let ip4 = "127.0.0.1".parse().expect("ip");
        let ip6 = "::1".parse().expect("ip");
        assert_eq!(
            target_parts(&DenyTarget::Connect(ip4, 80)),
            ("connect", "127.0.0.1:80".to_string())
        );
        assert_eq!(
            target_parts(&DenyTarget::Connect(ip6, 80)),
            ("connect", "[::1]:80".to_string())
        );
        assert_eq!(
            target_parts(&DenyTarget::Connect(ip6, 0)),
            ("connect", "::1".to_string())
        );
        assert_eq!(
            target_parts(&DenyTarget::ExecPath("/x".into())),
            ("exec_path", "/x".to_string())
        );
    }
}
