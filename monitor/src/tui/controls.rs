//! The UI's controls over the real thing: the shared capture's family switches, blocking
//! through the response layer's [`Enforcer`], and the SQLite history.
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use clap::Parser;
use tokio::sync::mpsc;

use crate::app::{
    BlockTarget, EnforcePlan, HistoryReply, HistoryRequest, HistorySource, ProbeState, Probes,
    Response, SimulatedResponse, deny_target,
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

    fn kernel_losses(&self) -> crate::capture::KernelLosses {
        lock_capture(self).kernel_losses()
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
/// [`Enforcer`] (protected set and allowlist checked, logged on stderr and in the alert log, removable with `D`
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
        // The same refusal the enforcer makes (the protected set), before the question.
        if let Some(refusal) = self.enforcer.refusal(&deny) {
            return Err(refusal.to_string());
        }
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

/// The history database, read by a worker thread of its own so that no query (a scan of
/// millions of rows takes seconds) ever holds up the UI's loop, and with it capture and
/// enforcement. Pages come back through `replies`; a newer query interrupts an older one
/// still running (`sqlite3_interrupt`).
pub struct StoredHistory {
    path: PathBuf,
    requests: Option<std::sync::mpsc::Sender<HistoryRequest>>,
    /// The newest generation asked for: older requests still queued are skipped.
    latest: Arc<AtomicU64>,
    /// Interrupts a query of an older generation still running.
    interrupt: SharedInterrupt,
    worker: Option<std::thread::JoinHandle<()>>,
}

impl StoredHistory {
    pub fn start(path: &Path, replies: mpsc::UnboundedSender<HistoryReply>) -> StoredHistory {
        let (tx, rx) = std::sync::mpsc::channel::<HistoryRequest>();
        let latest = Arc::new(AtomicU64::new(0));
        let interrupt = SharedInterrupt::default();
        let worker = HistoryWorker {
            path: path.to_path_buf(),
            history: None,
            latest: latest.clone(),
            interrupt: interrupt.clone(),
        };
        let worker = std::thread::Builder::new()
            .name("secmon-history-ui".to_string())
            .spawn(move || worker.run(rx, replies))
            .ok();
        StoredHistory {
            path: path.to_path_buf(),
            requests: worker.is_some().then_some(tx),
            latest,
            interrupt,
            worker,
        }
    }
}

impl Drop for StoredHistory {
    fn drop(&mut self) {
        // Closing the queue ends the worker; a query in flight is interrupted.
        self.requests = None;
        self.latest.store(u64::MAX, Ordering::Relaxed);
        if let Some(handle) = lock(&self.interrupt).as_ref() {
            handle.interrupt();
        }
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

struct HistoryWorker {
    path: PathBuf,
    /// Opened at the first query and kept (the database may not exist before).
    history: Option<History>,
    latest: Arc<AtomicU64>,
    interrupt: SharedInterrupt,
}

/// Stops the worker's running query from another thread.
type SharedInterrupt = Arc<Mutex<Option<rusqlite::InterruptHandle>>>;

fn lock(
    interrupt: &SharedInterrupt,
) -> std::sync::MutexGuard<'_, Option<rusqlite::InterruptHandle>> {
    interrupt.lock().unwrap_or_else(PoisonError::into_inner)
}

impl HistoryWorker {
    fn run(
        mut self,
        requests: std::sync::mpsc::Receiver<HistoryRequest>,
        replies: mpsc::UnboundedSender<HistoryReply>,
    ) {
        while let Ok(request) = requests.recv() {
            if request.generation < self.latest.load(Ordering::Relaxed) {
                continue;
            }
            let reply = HistoryReply {
                generation: request.generation,
                result: self.page(&request),
            };
            if replies.send(reply).is_err() {
                return;
            }
        }
    }

    fn page(&mut self, request: &HistoryRequest) -> Result<Vec<(SecEvent, Cursor)>, String> {
        let args = parse_query(&request.query)?;
        let mut filter =
            build_filter(&args, request.now, &chrono::Local).map_err(|e| e.to_string())?;
        // The view pages through everything that matches: --limit does not apply here.
        filter.limit = Some(request.limit);
        filter.before = request.before;
        let history = self.open()?;
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

    fn open(&mut self) -> Result<&History, String> {
        if self.history.is_none() {
            let history = History::open(&self.path).map_err(|e| match e {
                StorageError::Missing { .. } => format!(
                    "{}: no history yet (the monitor creates it as it stores events; r reruns)",
                    self.path.display()
                ),
                other => other.to_string(),
            })?;
            *lock(&self.interrupt) = Some(history.connection().get_interrupt_handle());
            self.history = Some(history);
        }
        self.history
            .as_ref()
            .ok_or_else(|| "the history is not open".to_string())
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
    fn request(&mut self, request: HistoryRequest) -> Option<HistoryReply> {
        let previous = self.latest.fetch_max(request.generation, Ordering::Relaxed);
        if request.generation > previous
            && let Some(handle) = lock(&self.interrupt).as_ref()
        {
            // A new query: the old one's pages are no longer wanted.
            handle.interrupt();
        }
        let generation = request.generation;
        let sent = self
            .requests
            .as_ref()
            .is_some_and(|tx| tx.send(request).is_ok());
        (!sent).then(|| HistoryReply {
            generation,
            result: Err("the history reader is not running".to_string()),
        })
    }

    fn describe(&self) -> String {
        format!("History {}", self.path.display())
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, TimeDelta, Utc};

    use super::*;
    use crate::app::BlockTarget;
    use crate::event::EventType;
    use crate::response::enforce::{EnforcePolicy, testing::FakeTables};
    use crate::response::protect::Protected;
    use crate::response::simulate::Allowlist;
    use crate::storage::{Store, WriterOptions, to_ns};

    fn exec_event(exe: &str) -> SecEvent {
        let mut e = SecEvent::new(EventType::ProcessExec, Utc::now());
        e.exe = exe.to_string();
        e.process = exe.rsplit('/').next().unwrap_or_default().to_string();
        e.pid = 77;
        e
    }

    /// The `B` key's path: a protected program is refused before the [y/N] question, and
    /// nothing reaches the kernel; another program is planned and denied.
    #[test]
    fn the_block_key_refuses_protected_programs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let shell = dir.path().join("shell");
        std::fs::write(&shell, b"").expect("write");
        let mut set = Protected::discover();
        set.add(
            &shell.to_string_lossy(),
            "a login shell (listed in /etc/shells)",
        );
        let (fake, tables) = FakeTables::shared();
        let enforcer = Enforcer::with_tables(
            tables,
            Allowlist::with_protected(&[], set),
            EnforcePolicy::default(),
            None,
        );
        let mut response = EnforcingResponse::new(Arc::new(enforcer));
        let me = std::env::current_exe().expect("current exe");
        for exe in [
            format!("{}//shell", dir.path().display()),
            me.to_string_lossy().into_owned(),
        ] {
            let event = exec_event(&exe);
            let refused = response
                .plan_enforce(&BlockTarget::Process(77), &event)
                .map(|plan| plan.question)
                .expect_err("protected");
            assert!(refused.contains("is protected"), "{exe}: {refused}");
        }
        let event = exec_event("/tmp/dropper");
        let plan = response
            .plan_enforce(&BlockTarget::Process(77), &event)
            .expect("a dropped program can be denied");
        response.enforce(&plan).expect("denied");
        let denies = &fake.lock().expect("lock").denies;
        assert_eq!(denies.len(), 1);
        assert_eq!(
            denies[0].target,
            crate::capture::enforce::DenyTarget::ExecPath("/tmp/dropper".to_string())
        );
    }

    fn request(generation: u64, before: Option<Cursor>, now: DateTime<Utc>) -> HistoryRequest {
        HistoryRequest {
            generation,
            query: "--last 1h --type file_open".to_string(),
            now,
            before,
            limit: 100,
        }
    }

    /// Pages through a real database: newest first, no event twice, none skipped, also
    /// where many events share a timestamp (the cursor carries the row id).
    #[test]
    fn pages_walk_a_real_history_newest_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("h.db");
        let now = DateTime::from_timestamp(1_800_000_000, 0).expect("time");
        let store = Store::open(&path, WriterOptions::default()).expect("store");
        let events: Vec<_> = (0..1050u32)
            .map(|i| {
                // Ten events per timestamp.
                let at = now - TimeDelta::seconds(600) + TimeDelta::milliseconds(i64::from(i / 10));
                let mut e = SecEvent::new(EventType::FileOpen, at);
                e.pid = i;
                e
            })
            .collect();
        assert!(store.submit(events));
        store.close();

        let mut worker = HistoryWorker {
            path: path.clone(),
            history: None,
            latest: Arc::new(AtomicU64::new(1)),
            interrupt: SharedInterrupt::default(),
        };
        let mut seen = Vec::new();
        let mut before = None;
        loop {
            let page = worker.page(&request(1, before, now)).expect("page");
            if page.is_empty() {
                break;
            }
            before = page.last().map(|(_, cursor)| *cursor);
            seen.extend(
                page.into_iter()
                    .map(|(e, c)| (to_ns(e.timestamp), c.id, e.pid)),
            );
        }
        assert_eq!(seen.len(), 1050, "every event once");
        assert!(
            seen.windows(2).all(|w| (w[0].0, w[0].1) > (w[1].0, w[1].1)),
            "strictly newest first"
        );
        let mut pids: Vec<u32> = seen.iter().map(|s| s.2).collect();
        pids.sort_unstable();
        pids.dedup();
        assert_eq!(pids.len(), 1050);
    }

    #[test]
    fn bad_queries_and_missing_databases_say_why() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut worker = HistoryWorker {
            path: dir.path().join("none.db"),
            history: None,
            latest: Arc::new(AtomicU64::new(1)),
            interrupt: SharedInterrupt::default(),
        };
        let now = Utc::now();
        let mut bad = request(1, None, now);
        bad.query = "--last soon".to_string();
        let error = worker.page(&bad).expect_err("bad duration");
        assert!(error.starts_with("--last: "), "{error}");
        let error = worker
            .page(&request(1, None, now))
            .expect_err("no database");
        assert!(error.contains("no history yet"), "{error}");
        assert_eq!(
            parse_query("--label 'Credential File Read' --min-risk 0.6")
                .map(|a| a.label)
                .ok()
                .flatten()
                .as_deref(),
            Some("Credential File Read")
        );
        assert!(parse_query("--stats").is_err());
        assert!(parse_query("--label 'open").is_err());
    }
}
