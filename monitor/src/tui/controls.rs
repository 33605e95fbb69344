//! The UI's controls over the real thing: the shared capture's family switches, blocking
//! through the response layer's [`Enforcer`], and the SQLite history.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::Utc;
use clap::Parser;

use crate::app::{
    BlockTarget, EnforcePlan, HistorySource, ProbeState, Probes, Response, SimulatedResponse,
    deny_target,
};
use crate::event::{Event as SecEvent, Family};
use crate::history_cli::{HistoryArgs, build_filter};
use crate::response::enforce::{DenyRecord, Enforcer, Origin, SharedCapture, lock_capture};
use crate::response::simulate;
use crate::sanitize;
use crate::storage::{Cursor, History, StorageError};

impl Probes for SharedCapture {
    fn state(&self, family: Family) -> ProbeState {
        lock_capture(self).state(family)
    }

    fn set_enabled(&mut self, family: Family, on: bool) -> Result<(), String> {
        Probes::set_enabled(&mut *lock_capture(self), family, on)
    }

    fn drops(&self) -> u64 {
        lock_capture(self).total_drops()
    }

    fn unavailable_reason(&self, family: Family) -> Option<String> {
        lock_capture(self).unavailable_reason(family)
    }
}

/// Who the audit log names for a block from the UI: the operator behind `sudo`, if any.
fn operator() -> String {
    match std::env::var("SUDO_USER") {
        Ok(user) if !user.is_empty() => format!("terminal UI (user {user} via sudo)"),
        _ => format!("terminal UI (uid {})", current_uid()),
    }
}

fn current_uid() -> u32 {
    // SAFETY: getuid cannot fail and has no preconditions.
    unsafe { libc::getuid() }
}

/// `b` simulates as [`SimulatedResponse`] does; `B` adds a deny entry through the
/// [`Enforcer`] (allowlist checked, logged on stderr and in the alert log, removable with `D`
/// then `u`, or `secmon-tui unblock ID`).
pub struct EnforcingResponse {
    simulated: SimulatedResponse,
    enforcer: Arc<Enforcer>,
}

impl EnforcingResponse {
    pub fn new(enforcer: Arc<Enforcer>) -> EnforcingResponse {
        let simulated = SimulatedResponse::new(enforcer.allowlist().clone(), "");
        EnforcingResponse {
            simulated,
            enforcer,
        }
    }
}

impl Response for EnforcingResponse {
    fn simulate_block(&mut self, target: &BlockTarget, event: &SecEvent) -> String {
        self.simulated.simulate_block(target, event)
    }

    fn plan_enforce(&self, target: &BlockTarget, event: &SecEvent) -> Result<EnforcePlan, String> {
        let deny = deny_target(target, event)?;
        self.simulated.check_allowlist(&deny, event)?;
        if let Some(existing) = self.enforcer.existing(&deny) {
            return Err(format!(
                "{deny} is already blocked (entry #{}; D lists the entries)",
                existing.id
            ));
        }
        let question = format!("deny {deny}");
        let reason = if event.analysis.label.is_empty() {
            format!("{} selected in the UI", event.event_type)
        } else {
            event.analysis.label.clone()
        };
        Ok(EnforcePlan {
            target: target.clone(),
            by: format!(
                "{}, on pid {} ({})",
                operator(),
                event.pid,
                sanitize::for_terminal(&event.process)
            ),
            deny,
            question,
            reason,
        })
    }

    fn enforce(&mut self, plan: &EnforcePlan) -> Result<String, String> {
        let origin = Origin {
            by: plan.by.clone(),
            rule: None,
            reason: plan.reason.clone(),
        };
        let record = self
            .enforcer
            .block(plan.deny.clone(), self.enforcer.default_ttl(), origin)
            .map_err(|e| e.to_string())?;
        Ok(format!(
            "blocked #{}: {}: {} (D lists the entries)",
            record.id,
            record.target,
            simulate::effect(&plan.deny)
        ))
    }

    fn denies(&self) -> Result<Vec<DenyRecord>, String> {
        Ok(self.enforcer.list())
    }

    fn unblock(&mut self, id: u32) -> Result<String, String> {
        self.enforcer
            .unblock(id, &operator())
            .map(|record| format!("unblocked #{id}: {}", record.target))
            .map_err(|e| e.to_string())
    }
}

/// The options of `secmon-tui history`, parsed from the history view's query line.
#[derive(Debug, Parser)]
#[command(name = "history", no_binary_name = true, disable_help_flag = true)]
struct QueryLine {
    #[command(flatten)]
    args: HistoryArgs,
}

/// The history database, opened read-only for each query (the writer may be creating it).
pub struct StoredHistory {
    path: PathBuf,
}

impl StoredHistory {
    pub fn new(path: &Path) -> StoredHistory {
        StoredHistory {
            path: path.to_path_buf(),
        }
    }
}

/// The query line's options, or the first problem in one line.
pub fn parse_query(query: &str) -> Result<HistoryArgs, String> {
    let words = shlex::split(query).ok_or_else(|| "unbalanced quotes in the query".to_string())?;
    let line = QueryLine::try_parse_from(words).map_err(|e| {
        let text = e.to_string();
        let first = text.lines().next().unwrap_or("bad query").trim();
        first.strip_prefix("error: ").unwrap_or(first).to_string()
    })?;
    if line.args.stats.is_some() {
        return Err("--stats is not shown here: use secmon-tui history --stats".to_string());
    }
    Ok(line.args)
}

impl HistorySource for StoredHistory {
    fn query(
        &self,
        query: &str,
        before: Option<Cursor>,
        limit: usize,
    ) -> Result<Vec<(SecEvent, Cursor)>, String> {
        let args = parse_query(query)?;
        let mut filter =
            build_filter(&args, Utc::now(), &chrono::Local).map_err(|e| e.to_string())?;
        // The view pages through everything that matches: --limit does not apply here.
        filter.limit = Some(limit);
        filter.before = before;
        let history = History::open(&self.path).map_err(|e| match e {
            StorageError::Missing { .. } => format!(
                "{}: no history yet (the monitor creates it as it stores events)",
                self.path.display()
            ),
            other => other.to_string(),
        })?;
        let rows = history.query(&filter).map_err(|e| e.to_string())?;
        // The most recent `limit` come oldest first: the view lists newest first.
        Ok(rows
            .into_iter()
            .rev()
            .map(|row| {
                let cursor = row.cursor();
                (row.event, cursor)
            })
            .collect())
    }

    fn describe(&self) -> String {
        format!("History {}", self.path.display())
    }
}
