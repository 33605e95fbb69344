//! The terminal UI's history port ([`crate::app::HistorySource`]) over the database: the
//! history view's pages are read here, beside the rest of the reading side ([`History`]), so
//! that `app/` stays state and transitions (`app` never imports `storage`).
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use super::{Cursor, Filter, History, StorageError};
use crate::app::{HistoryCursor, HistoryReply, HistoryRequest, HistorySource};
use crate::event::Event as SecEvent;

/// Turns the view's query line into a filter, with `--last` counted back from the time given
/// (`history_cli::query_filter`: the options of `secmon-tui history`). Passed in because the
/// query language belongs to the history command, which itself reads through `storage`.
pub type QueryFilter = fn(&str, DateTime<Utc>) -> Result<Filter, String>;

impl From<Cursor> for HistoryCursor {
    fn from(cursor: Cursor) -> HistoryCursor {
        HistoryCursor {
            ts_ns: cursor.ts_ns,
            id: cursor.id,
        }
    }
}

impl From<HistoryCursor> for Cursor {
    fn from(cursor: HistoryCursor) -> Cursor {
        Cursor {
            ts_ns: cursor.ts_ns,
            id: cursor.id,
        }
    }
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
    /// Starts the worker over the database at `path`; `query_filter` reads the query lines.
    pub fn start(
        path: &Path,
        query_filter: QueryFilter,
        replies: mpsc::UnboundedSender<HistoryReply>,
    ) -> StoredHistory {
        let (tx, rx) = std::sync::mpsc::channel::<HistoryRequest>();
        let latest = Arc::new(AtomicU64::new(0));
        let interrupt = SharedInterrupt::default();
        let worker = HistoryWorker {
            path: path.to_path_buf(),
            query_filter,
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
    query_filter: QueryFilter,
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

    fn page(&mut self, request: &HistoryRequest) -> Result<Vec<(SecEvent, HistoryCursor)>, String> {
        let mut filter = (self.query_filter)(&request.query, request.now)?;
        // The view pages through everything that matches: --limit does not apply here.
        filter.limit = Some(request.limit);
        filter.before = request.before.map(Cursor::from);
        let history = self.open()?;
        let rows = history.query(&filter).map_err(|e| e.to_string())?;
        // The most recent `limit` come oldest first: the view lists newest first.
        Ok(rows
            .into_iter()
            .rev()
            .map(|row| {
                let cursor = row.cursor().into();
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
    use crate::event::EventType;
    use crate::history_cli::query_filter;
    use crate::storage::{Store, WriterOptions, to_ns};

    fn request(
        generation: u64,
        before: Option<HistoryCursor>,
        now: DateTime<Utc>,
    ) -> HistoryRequest {
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
            query_filter,
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
            query_filter,
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
    }
}
