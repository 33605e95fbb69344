//! Real enforcement policy, on top of the kernel deny tables (`capture::enforce`). Every
//! request, whoever makes it (a rule with `action = "block"` through the [`super::Responder`],
//! the control socket, the UI's `B` key), comes through [`Enforcer::block`], which:
//!
//! 1. refuses a target the protected set or the allowlist covers ([`super::protect`]);
//! 2. for a rule: refuses a name, a system binary (unless the config opts the rule in), and
//!    anything beyond the rate limit or the rules' share of the table (the rest is kept for the
//!    operator's own entries);
//! 3. checks the time to live (at most `MAX_DENY_TTL_SECS`, expiry computed with checked
//!    arithmetic);
//! 4. then asks the kernel, which writes its entry last.
//!
//! Every block, unblock and expiry is reported on stderr and in the alert log with who asked,
//! what is blocked and why.
use std::{
    collections::{BTreeMap, HashSet},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::alert_log::{self, SharedLog};
use super::simulate::{self, Allowlist};
use crate::capture::{
    Capture,
    enforce::{Deny, DenyTable, DenyTarget, EnforceError},
};
use crate::config::MAX_DENY_TTL_SECS;
use crate::sanitize::for_terminal;

/// The capture, shared by the pipeline (drop counters), the response layer and the control
/// socket. Locks are held only for single map updates, never across an await.
pub type SharedCapture = Arc<Mutex<Capture>>;

/// Locks the capture (a panic elsewhere must not disable unblocking).
pub fn lock_capture(capture: &SharedCapture) -> MutexGuard<'_, Capture> {
    capture.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The kernel deny tables as the policy uses them: the capture, or a stand-in in tests.
pub trait DenyTables: Send {
    fn deny(&mut self, target: DenyTarget, ttl: Option<Duration>) -> Result<Deny, EnforceError>;
    fn undeny(&mut self, id: u32) -> Result<Option<Deny>, EnforceError>;
    /// The live entries (lapsed ones dropped).
    fn denies(&mut self) -> Vec<Deny>;
    /// Names never killed on a file-name match (the protected programs').
    fn spare_names(&mut self, names: &[String]);
}

impl DenyTables for Capture {
    fn deny(&mut self, target: DenyTarget, ttl: Option<Duration>) -> Result<Deny, EnforceError> {
        Capture::deny(self, target, ttl)
    }

    fn undeny(&mut self, id: u32) -> Result<Option<Deny>, EnforceError> {
        Capture::undeny(self, id)
    }

    fn denies(&mut self) -> Vec<Deny> {
        Capture::denies(self)
    }

    fn spare_names(&mut self, names: &[String]) {
        Capture::spare_names(self, names.iter().map(String::as_str));
    }
}

pub type SharedTables = Arc<Mutex<dyn DenyTables>>;

fn lock_tables(tables: &SharedTables) -> MutexGuard<'_, dyn DenyTables + 'static> {
    tables.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Entries of each table kept for the operator (control socket, UI): rules fill at most
/// `capacity - RESERVED_FOR_OPERATOR`.
pub const RESERVED_FOR_OPERATOR: usize = 128;

/// What limits enforcement beyond the protected set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnforcePolicy {
    /// For rule-made entries and `block add` without a TTL (None: until removed).
    pub default_ttl: Option<Duration>,
    /// Rules allowed to deny programs in the system directories.
    pub system_binary_rules: HashSet<String>,
    /// Rule-made entries allowed per minute (0: none).
    pub rule_denies_per_minute: u32,
    /// Entries in each kernel table.
    pub capacity: usize,
    /// Of which rules may not use this many.
    pub reserved: usize,
}

impl Default for EnforcePolicy {
    fn default() -> Self {
        EnforcePolicy {
            default_ttl: Some(Duration::from_secs(3600)),
            system_binary_rules: HashSet::new(),
            rule_denies_per_minute: 30,
            capacity: DenyTable::CAPACITY,
            reserved: RESERVED_FOR_OPERATOR,
        }
    }
}

impl EnforcePolicy {
    pub fn from_config(config: &crate::config::Response) -> EnforcePolicy {
        EnforcePolicy {
            default_ttl: (config.deny_ttl_secs > 0)
                .then(|| Duration::from_secs(config.deny_ttl_secs)),
            system_binary_rules: config.system_binary_rules.iter().cloned().collect(),
            rule_denies_per_minute: config.rule_denies_per_minute,
            ..EnforcePolicy::default()
        }
    }
}

/// A token bucket: `per_minute` tokens, refilled continuously.
#[derive(Debug)]
struct RateLimit {
    per_minute: u32,
    tokens: f64,
    at: Instant,
}

impl RateLimit {
    fn new(per_minute: u32) -> RateLimit {
        RateLimit {
            per_minute,
            tokens: f64::from(per_minute),
            at: Instant::now(),
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        let cap = f64::from(self.per_minute);
        self.tokens = (self.tokens + elapsed * cap / 60.0).min(cap);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Refusals and limits met, for the stop summary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PolicyStats {
    /// Requests refused because the target is protected or allowlisted.
    pub protected: u64,
    /// Rule requests refused: a system binary or a name.
    pub refused_rules: u64,
    /// Rule requests over the rate limit or the rules' share of a table.
    pub limited: u64,
    /// Requests refused because a table was full.
    pub table_full: u64,
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
    #[error("{target} is not blocked: {why}")]
    Protected {
        target: String,
        why: simulate::Protection,
    },
    /// A rule asked for what rules may not deny (a system binary, a name).
    #[error("{0}")]
    RefusedForRule(String),
    #[error(
        "{target} is not blocked: rules may add at most {per_minute} deny entries a minute \
         ([response] rule_denies_per_minute)"
    )]
    RateLimited { target: String, per_minute: u32 },
    #[error(
        "{target} is not blocked: rule-made entries fill their share of the {table} deny table \
         ({share} of {capacity}; the rest is kept for the operator's own entries)"
    )]
    RuleShareFull {
        target: String,
        table: DenyTable,
        share: usize,
        capacity: usize,
    },
    #[error(
        "a time to live of {0} s is too long (at most {MAX_DENY_TTL_SECS} s, one year; 0: never \
         expires)"
    )]
    BadTtl(u64),
    #[error("no deny entry with id {0}")]
    NoSuchEntry(u32),
    #[error(transparent)]
    Enforce(#[from] EnforceError),
}

/// Checks a time to live in seconds from outside (control socket, `--ttl`): `None` when 0
/// (never expires), an error past [`MAX_DENY_TTL_SECS`].
pub fn ttl_from_secs(secs: u64) -> Result<Option<Duration>, BlockError> {
    match secs {
        0 => Ok(None),
        s if s > MAX_DENY_TTL_SECS => Err(BlockError::BadTtl(s)),
        s => Ok(Some(Duration::from_secs(s))),
    }
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
    tables: SharedTables,
    allowlist: Allowlist,
    policy: EnforcePolicy,
    audit: Option<SharedLog>,
    records: Mutex<BTreeMap<u32, (DenyTarget, DenyRecord)>>,
    state: Mutex<PolicyState>,
}

/// What the policy remembers between requests.
#[derive(Debug)]
struct PolicyState {
    rate: RateLimit,
    stats: PolicyStats,
    /// Rule refusals already reported on stderr (each once; bounded).
    reported: HashSet<String>,
    /// When the rate limit was last reported (once a minute at most).
    limit_reported: Option<Instant>,
}

/// How many distinct rule refusals are reported on stderr (then they are only counted).
const MAX_REPORTED: usize = 256;

impl Enforcer {
    /// `capture` must have enforcement enabled.
    pub fn new(
        capture: SharedCapture,
        allowlist: Allowlist,
        policy: EnforcePolicy,
        audit: Option<SharedLog>,
    ) -> Enforcer {
        Enforcer::with_tables(capture, allowlist, policy, audit)
    }

    /// Over any deny tables (tests use a stand-in for the kernel's).
    pub fn with_tables(
        tables: SharedTables,
        allowlist: Allowlist,
        policy: EnforcePolicy,
        audit: Option<SharedLog>,
    ) -> Enforcer {
        lock_tables(&tables).spare_names(&allowlist.spared_names());
        let rate = RateLimit::new(policy.rule_denies_per_minute);
        Enforcer {
            tables,
            allowlist,
            policy,
            audit,
            records: Mutex::new(BTreeMap::new()),
            state: Mutex::new(PolicyState {
                rate,
                stats: PolicyStats::default(),
                reported: HashSet::new(),
                limit_reported: None,
            }),
        }
    }

    pub fn allowlist(&self) -> &Allowlist {
        &self.allowlist
    }

    pub fn default_ttl(&self) -> Option<Duration> {
        self.policy.default_ttl
    }

    pub fn policy_stats(&self) -> PolicyStats {
        self.state().stats
    }

    fn records(&self) -> MutexGuard<'_, BTreeMap<u32, (DenyTarget, DenyRecord)>> {
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn state(&self) -> MutexGuard<'_, PolicyState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The live entry for `target`, if any.
    pub fn existing(&self, target: &DenyTarget) -> Option<DenyRecord> {
        let now = Utc::now();
        self.records()
            .values()
            .find(|(t, r)| t == target && r.expires.is_none_or(|at| at > now))
            .map(|(_, r)| r.clone())
    }

    /// Live entries in `table`.
    fn entries_in(&self, table: DenyTable) -> usize {
        let now = Utc::now();
        self.records()
            .values()
            .filter(|(t, r)| t.table() == table && r.expires.is_none_or(|at| at > now))
            .count()
    }

    /// Why `target` may not be denied at all, if it may not (the protected set, the
    /// allowlist). The UI asks before its [y/N] question.
    pub fn refusal(&self, target: &DenyTarget) -> Option<BlockError> {
        self.allowlist
            .protecting_target(target)
            .map(|why| BlockError::Protected {
                target: target.to_string(),
                why,
            })
    }

    /// Denies `target` in the kernel for `ttl` (None: until removed), after the checks in the
    /// module's description. Replaces an entry for the same target. Logged on stderr and in
    /// the alert log.
    pub fn block(
        &self,
        target: DenyTarget,
        ttl: Option<Duration>,
        origin: Origin,
    ) -> Result<DenyRecord, BlockError> {
        let result = self.admit(&target, ttl, &origin);
        if let Err(e) = &result {
            self.note_refusal(e);
        }
        result?;
        let created = Utc::now();
        let expires = match ttl {
            None => None,
            Some(ttl) => Some(
                chrono::Duration::from_std(ttl)
                    .ok()
                    .and_then(|d| created.checked_add_signed(d))
                    .ok_or(BlockError::BadTtl(ttl.as_secs()))?,
            ),
        };
        let deny = lock_tables(&self.tables).deny(target.clone(), ttl);
        let deny = match deny {
            Ok(deny) => deny,
            Err(e) => {
                let e = BlockError::from(e);
                self.note_refusal(&e);
                return Err(e);
            }
        };
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
        crate::notice::info(format!(
            "block #{}: {}; who: {}; why: {}; {expiry} (undo: secmon-tui unblock {})",
            record.id,
            for_terminal(&record.target),
            for_terminal(&record.by),
            for_terminal(&why),
            record.id
        ));
        self.audit("block", &record, None);
        Ok(record)
    }

    /// Every check before the kernel is asked; rule requests use up rate tokens only when
    /// everything else passed.
    fn admit(
        &self,
        target: &DenyTarget,
        ttl: Option<Duration>,
        origin: &Origin,
    ) -> Result<(), BlockError> {
        if let Some(refusal) = self.refusal(target) {
            return Err(refusal);
        }
        if let Some(secs) = ttl.map(|t| t.as_secs())
            && secs > MAX_DENY_TTL_SECS
        {
            return Err(BlockError::BadTtl(secs));
        }
        let replacing = self.existing(target).is_some();
        let table = target.table();
        let used = self.entries_in(table);
        let capacity = self.policy.capacity;
        if !replacing && used >= capacity {
            return Err(EnforceError::TableFull { table, capacity }.into());
        }
        let Some(rule) = &origin.rule else {
            return Ok(());
        };
        let opted_in = self.policy.system_binary_rules.contains(rule);
        if let Some(why) = simulate::rule_refusal(target, rule, opted_in) {
            return Err(BlockError::RefusedForRule(why));
        }
        let share = capacity.saturating_sub(self.policy.reserved);
        if !replacing && used >= share {
            return Err(BlockError::RuleShareFull {
                target: target.to_string(),
                table,
                share,
                capacity,
            });
        }
        if !self.state().rate.take(Instant::now()) {
            return Err(BlockError::RateLimited {
                target: target.to_string(),
                per_minute: self.policy.rule_denies_per_minute,
            });
        }
        Ok(())
    }

    /// Counts a refusal and reports it on stderr: each rule refusal once, limits at most once
    /// a minute (a flood of matches must not flood the log).
    fn note_refusal(&self, error: &BlockError) {
        let mut state = self.state();
        let report = match error {
            BlockError::Protected { .. } => {
                state.stats.protected += 1;
                false
            }
            BlockError::RefusedForRule(why) => {
                state.stats.refused_rules += 1;
                state.reported.len() < MAX_REPORTED && state.reported.insert(why.clone())
            }
            BlockError::RateLimited { .. } | BlockError::RuleShareFull { .. } => {
                state.stats.limited += 1;
                let now = Instant::now();
                let due = state
                    .limit_reported
                    .is_none_or(|at| now.saturating_duration_since(at) >= Duration::from_secs(60));
                if due {
                    state.limit_reported = Some(now);
                }
                due
            }
            BlockError::Enforce(EnforceError::TableFull { .. }) => {
                state.stats.table_full += 1;
                true
            }
            _ => false,
        };
        drop(state);
        if report {
            crate::notice::warn(format!(
                "{} (further ones are counted in the response summary)",
                for_terminal(&error.to_string())
            ));
        }
    }

    /// Removes entry `id` (`by` says who asked).
    pub fn unblock(&self, id: u32, by: &str) -> Result<DenyRecord, BlockError> {
        let removed = lock_tables(&self.tables).undeny(id)?;
        let known = self.records().remove(&id).map(|(_, r)| r);
        let Some(deny) = removed else {
            return Err(BlockError::NoSuchEntry(id));
        };
        // Our record of it, or one rebuilt from the kernel's entry when we have none.
        let record = known.unwrap_or_else(|| {
            DenyRecord::new(id, &deny.target, Utc::now(), None, Origin::default())
        });
        crate::notice::info(format!(
            "unblock #{id}: {} (removed by {})",
            for_terminal(&record.target),
            for_terminal(by)
        ));
        self.audit("unblock", &record, Some(by));
        Ok(record)
    }

    /// The live entries, oldest first. Lapsed ones are dropped (and reported) on the way.
    pub fn list(&self) -> Vec<DenyRecord> {
        let live: Vec<u32> = lock_tables(&self.tables)
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
            crate::notice::info(format!(
                "block #{} expired: {}",
                record.id,
                for_terminal(&record.target)
            ));
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
            crate::notice::warn(format!(
                "cannot write to the alert log {}: {e}",
                log.path().display()
            ));
        }
    }
}

/// A stand-in for the kernel's deny tables, for tests without root.
#[cfg(test)]
pub mod testing {
    use super::*;

    #[derive(Default)]
    pub struct FakeTables {
        pub denies: Vec<Deny>,
        pub spared: Vec<String>,
        next_id: u32,
        /// The next `deny` fails (as a refused map update would).
        pub fail_next: bool,
    }

    impl FakeTables {
        pub fn shared() -> (Arc<Mutex<FakeTables>>, SharedTables) {
            let tables = Arc::new(Mutex::new(FakeTables::default()));
            let shared: SharedTables = tables.clone();
            (tables, shared)
        }
    }

    impl DenyTables for FakeTables {
        fn deny(
            &mut self,
            target: DenyTarget,
            ttl: Option<Duration>,
        ) -> Result<Deny, EnforceError> {
            if std::mem::take(&mut self.fail_next) {
                return Err(EnforceError::Unavailable("injected failure".to_string()));
            }
            if let Some(ttl) = ttl {
                crate::capture::enforce::expiry_after(0, ttl)?;
            }
            self.next_id += 1;
            let deny = Deny {
                id: self.next_id,
                target,
                expires_ns: None,
            };
            self.denies.retain(|d| d.target != deny.target);
            self.denies.push(deny.clone());
            Ok(deny)
        }

        fn undeny(&mut self, id: u32) -> Result<Option<Deny>, EnforceError> {
            let index = self.denies.iter().position(|d| d.id == id);
            Ok(index.map(|i| self.denies.remove(i)))
        }

        fn denies(&mut self) -> Vec<Deny> {
            self.denies.clone()
        }

        fn spare_names(&mut self, names: &[String]) {
            self.spared = names.to_vec();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::FakeTables;
    use super::*;
    use crate::response::protect::Protected;

    /// An enforcer over fake tables that protects one program, `protected`.
    fn enforcer(protected: &str, policy: EnforcePolicy) -> (Arc<Mutex<FakeTables>>, Enforcer) {
        let mut set = Protected::default();
        set.add(protected, "a login shell");
        let (fake, tables) = FakeTables::shared();
        let allowlist = Allowlist::with_protected(&["sshd".to_string()], set);
        (fake, Enforcer::with_tables(tables, allowlist, policy, None))
    }

    fn rule(name: &str) -> Origin {
        Origin {
            by: "pid 1 uid 1000 (/tmp/x)".to_string(),
            rule: Some(name.to_string()),
            reason: "test".to_string(),
        }
    }

    fn operator() -> Origin {
        Origin {
            by: "control socket (pid 2, uid 0)".to_string(),
            rule: None,
            reason: "by hand".to_string(),
        }
    }

    fn path(p: &str) -> DenyTarget {
        DenyTarget::ExecPath(p.to_string())
    }

    #[test]
    fn protected_programs_are_refused_to_rules_and_operators_alike() {
        let (fake, e) = enforcer("/bin/sh", EnforcePolicy::default());
        for origin in [rule("r"), operator()] {
            let refused = e.block(path("/bin/sh"), None, origin.clone());
            assert!(
                matches!(&refused, Err(BlockError::Protected { .. })),
                "{refused:?}"
            );
            let refused = e.block(DenyTarget::ExecName("sshd".into()), None, origin);
            assert!(matches!(refused, Err(BlockError::Protected { .. })));
        }
        assert!(
            fake.lock().expect("lock").denies.is_empty(),
            "nothing reached the kernel"
        );
        assert_eq!(e.policy_stats().protected, 4);
        assert!(
            fake.lock()
                .expect("lock")
                .spared
                .contains(&"sh".to_string())
        );
    }

    #[test]
    fn rules_may_not_deny_system_binaries_unless_opted_in() {
        let mut policy = EnforcePolicy::default();
        policy.system_binary_rules.insert("opted".to_string());
        let (fake, e) = enforcer("/bin/sh", policy);
        let refused = e.block(path("/usr/bin/curl"), None, rule("plain"));
        match refused {
            Err(BlockError::RefusedForRule(why)) => {
                assert!(
                    why.starts_with("would deny system binary /usr/bin/curl"),
                    "{why}"
                )
            }
            other => panic!("{other:?}"),
        }
        let refused = e.block(DenyTarget::ExecName("curl".into()), None, rule("opted"));
        assert!(
            matches!(refused, Err(BlockError::RefusedForRule(_))),
            "never by name"
        );
        e.block(path("/usr/bin/curl"), None, rule("opted"))
            .expect("opted in");
        e.block(path("/usr/bin/wget"), None, operator())
            .expect("the operator may");
        e.block(path("/tmp/dropper"), None, rule("plain"))
            .expect("what the attack brought");
        assert_eq!(fake.lock().expect("lock").denies.len(), 3);
        assert_eq!(e.policy_stats().refused_rules, 2);
    }

    #[test]
    fn rule_denies_are_rate_limited_and_operators_are_not() {
        let policy = EnforcePolicy {
            rule_denies_per_minute: 3,
            ..EnforcePolicy::default()
        };
        let (_fake, e) = enforcer("/bin/sh", policy);
        for i in 0..3 {
            e.block(path(&format!("/tmp/r{i}")), None, rule("r"))
                .expect("within the rate");
        }
        let limited = e.block(path("/tmp/r3"), None, rule("r"));
        assert!(
            matches!(limited, Err(BlockError::RateLimited { per_minute: 3, .. })),
            "{limited:?}"
        );
        e.block(path("/tmp/op"), None, operator())
            .expect("operators are not limited");
        assert_eq!(e.policy_stats().limited, 1);
        let none = EnforcePolicy {
            rule_denies_per_minute: 0,
            ..EnforcePolicy::default()
        };
        let (_fake, e) = enforcer("/bin/sh", none);
        assert!(matches!(
            e.block(path("/tmp/x"), None, rule("r")),
            Err(BlockError::RateLimited { .. })
        ));
    }

    #[test]
    fn tables_keep_room_for_the_operator_and_refuse_when_full() {
        let policy = EnforcePolicy {
            capacity: 6,
            reserved: 2,
            rule_denies_per_minute: 600,
            ..EnforcePolicy::default()
        };
        let (fake, e) = enforcer("/bin/sh", policy);
        for i in 0..4 {
            e.block(path(&format!("/tmp/r{i}")), None, rule("r"))
                .expect("rules' share");
        }
        let share = e.block(path("/tmp/r4"), None, rule("r"));
        assert!(
            matches!(
                share,
                Err(BlockError::RuleShareFull {
                    share: 4,
                    capacity: 6,
                    ..
                })
            ),
            "{share:?}"
        );
        // Other tables are separate.
        e.block(
            DenyTarget::Connect("10.0.0.1".parse().expect("ip"), 1),
            None,
            rule("r"),
        )
        .expect("connect table");
        e.block(path("/tmp/op1"), None, operator())
            .expect("reserved room");
        e.block(path("/tmp/op2"), None, operator())
            .expect("reserved room");
        let full = e.block(path("/tmp/op3"), None, operator());
        let message = full
            .as_ref()
            .map_err(ToString::to_string)
            .expect_err("full");
        assert!(
            matches!(
                full,
                Err(BlockError::Enforce(EnforceError::TableFull {
                    capacity: 6,
                    ..
                }))
            ),
            "{message}"
        );
        assert!(
            message.contains("deny table is full (6 entries)"),
            "{message}"
        );
        // Replacing an entry that exists needs no room.
        e.block(path("/tmp/op1"), None, operator())
            .expect("replace");
        // Removing one makes room again.
        let id = e.list()[0].id;
        e.unblock(id, "test").expect("unblock");
        e.block(path("/tmp/op3"), None, operator())
            .expect("room again");
        assert_eq!(fake.lock().expect("lock").denies.len(), 7);
        let stats = e.policy_stats();
        assert_eq!((stats.limited, stats.table_full), (1, 1));
    }

    #[test]
    fn ttls_are_checked_and_a_failed_request_leaves_nothing() {
        let (fake, e) = enforcer("/bin/sh", EnforcePolicy::default());
        let too_long = Duration::from_secs(MAX_DENY_TTL_SECS + 1);
        assert!(matches!(
            e.block(path("/tmp/x"), Some(too_long), operator()),
            Err(BlockError::BadTtl(_))
        ));
        assert!(matches!(
            ttl_from_secs(u64::MAX),
            Err(BlockError::BadTtl(_))
        ));
        assert_eq!(ttl_from_secs(0).expect("never"), None);
        fake.lock().expect("lock").fail_next = true;
        assert!(e.block(path("/tmp/x"), None, operator()).is_err());
        assert!(e.list().is_empty());
        assert!(fake.lock().expect("lock").denies.is_empty());
        let record = e
            .block(path("/tmp/x"), Some(Duration::from_secs(60)), operator())
            .expect("a year or less");
        assert!(record.expires.is_some());
    }

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
