//! The event history: every analysed event in an embedded SQLite database (docs/history.md).
//!
//! - [`Store`]: the monitor's side. [`Store::open`] creates the database (directory `0700`,
//!   file `0600`, WAL mode, schema migrations) and starts one writer thread; the pipeline hands
//!   it batches of encoded rows ([`Rows`]) with [`Store::submit_rows`], which never blocks: past
//!   [`WriterOptions::queue_bytes`] queued bytes a batch is dropped and counted
//!   ([`Store::take_report`] turns new drops and write failures into warning lines). The writer
//!   commits what it has in one transaction per round, so a burst becomes few, large
//!   transactions, and runs retention between rounds.
//! - [`Coalescer`]: the pipeline's side: turns analysed events into [`Rows`], counting
//!   identical consecutive events in one row ([`coalesce`]).
//! - [`History`]: the reading side (`secmon-tui history`, the TUI's history view):
//!   [`History::query`] with a [`Filter`], [`History::stats`].
//! - [`timespec`]: `--last 2h`, `--since "2026-05-01 14:00"`.
//!
//! Durability: WAL with `synchronous = NORMAL`. A committed batch survives the monitor being
//! killed (it is in the WAL file); after a power loss the last batches may be lost, but the
//! database stays consistent.
mod block;
pub mod coalesce;
mod query;
mod retention;
mod row;
mod rows;
mod schema;
mod summary;
pub mod timespec;
pub mod ui_adapter;
mod writer;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode, OpenFlags};

use crate::event::Event;
use crate::secure_fs;

pub use coalesce::Coalescer;
pub use query::{Bucket, Cursor, Dimension, Filter, StatsRow, TextMatch, TimelineRow};
pub use retention::{CHUNK as RETENTION_CHUNK, Retention, Step as RetentionStep, used_bytes};
pub use row::{HistoryEvent, from_ns, to_ns};
pub use rows::Rows;
pub use schema::SCHEMA_VERSION;

/// How long opening waits for a lock another connection holds before calling the database
/// locked, and how long one write waits.
pub const LOCK_WAIT: Duration = Duration::from_secs(2);

/// Why the history cannot be used. Every message names the database file.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{}: cannot create the history directory: {error}", path.display())]
    CreateDir { path: PathBuf, error: io::Error },
    #[error("{}: no history database here (the monitor creates it when it runs with [storage] enabled; --db PATH reads another)", path.display())]
    Missing { path: PathBuf },
    #[error("{}: permission denied (the history belongs to the user the monitor runs as, normally root: use sudo, or --db PATH)", path.display())]
    PermissionDenied { path: PathBuf },
    #[error("{}: the database is locked by another program (another secmon, or an open sqlite3 transaction)", path.display())]
    Locked { path: PathBuf },
    #[error("{}: not an SQLite database, or corrupted ({message}); move it aside to start a new history", path.display())]
    Corrupt { path: PathBuf, message: String },
    #[error("{}: history schema version {found} is newer than this secmon understands ({supported}); use a newer secmon or another --db", path.display())]
    TooNew {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("{}: {error}", path.display())]
    Io { path: PathBuf, error: io::Error },
    #[error("{}: {message}", path.display())]
    Sqlite { path: PathBuf, message: String },
}

impl StorageError {
    /// Classifies an SQLite error on the database at `path`.
    pub fn from_sqlite(path: &Path, error: &rusqlite::Error) -> StorageError {
        let path = path.to_path_buf();
        match error.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
                StorageError::Locked { path }
            }
            Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => StorageError::Corrupt {
                path,
                message: error.to_string(),
            },
            Some(ErrorCode::PermissionDenied | ErrorCode::ReadOnly) => {
                StorageError::PermissionDenied { path }
            }
            _ => StorageError::Sqlite {
                path,
                message: error.to_string(),
            },
        }
    }

    fn io(path: &Path, error: io::Error) -> StorageError {
        match error.kind() {
            io::ErrorKind::PermissionDenied => StorageError::PermissionDenied {
                path: path.to_path_buf(),
            },
            _ => StorageError::Io {
                path: path.to_path_buf(),
                error,
            },
        }
    }

    /// Whether writing can never succeed again (a corrupted file), as opposed to a transient
    /// failure (locked, disk full).
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            StorageError::Corrupt { .. } | StorageError::TooNew { .. }
        )
    }
}

/// Creates the database's directory (`0700`) and file (`0600`) if missing, and sets an
/// existing file's mode to `0600` on the open file. A symbolic link, a FIFO or another
/// non-regular file at `path` is refused ([`secure_fs::open_for_writing`]).
fn prepare_file(path: &Path) -> Result<(), StorageError> {
    secure_fs::create_private_parent(path).map_err(|error| StorageError::CreateDir {
        path: path.parent().unwrap_or(path).to_path_buf(),
        error,
    })?;
    secure_fs::open_for_writing(path, 0o600, secure_fs::Existing::Append)
        .map(drop)
        .map_err(|e| StorageError::io(path, e))
}

/// SQLite's page cache per reading connection (`PRAGMA cache_size`, in KiB): queries scan large
/// ranges.
const READER_CACHE_KIB: u32 = 65_536;

/// The writer's page cache, in KiB. Its inserts touch few pages (the table's and time index's
/// right edge, the current id generation of the path and pid indexes: schema.rs), so a larger
/// cache does not make it faster (measured: 4, 8 and 64 MiB alike); it is the monitor's
/// memory, and at 8 MiB it was ~10 MB of `--json`'s peak (issue 19), so 4 MiB.
const WRITER_CACHE_KIB: u32 = 4096;

/// Opens (`create`: creating if needed) and migrates the database, in WAL mode.
pub fn open_connection(path: &Path, create: bool) -> Result<Connection, StorageError> {
    if create {
        prepare_file(path)?;
    } else {
        secure_fs::refuse_symlink(path).map_err(|e| StorageError::io(path, e))?;
        match fs::metadata(path) {
            Ok(meta) if meta.is_file() => {}
            Ok(_) => {
                return Err(StorageError::Corrupt {
                    path: path.to_path_buf(),
                    message: "not a regular file".to_string(),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StorageError::Missing {
                    path: path.to_path_buf(),
                });
            }
            Err(e) => return Err(StorageError::io(path, e)),
        }
    }
    let sql_err = |e: rusqlite::Error| StorageError::from_sqlite(path, &e);
    // NOFOLLOW: the file checked above is the one SQLite opens, not a link swapped in since.
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_NOFOLLOW;
    let mut conn = Connection::open_with_flags(path, flags).map_err(|e| {
        if e.sqlite_error_code() == Some(ErrorCode::CannotOpen)
            && fs::File::open(path).is_err_and(|io| io.kind() == io::ErrorKind::PermissionDenied)
        {
            StorageError::PermissionDenied {
                path: path.to_path_buf(),
            }
        } else {
            sql_err(e)
        }
    })?;
    conn.busy_timeout(LOCK_WAIT).map_err(sql_err)?;
    // Reading the schema is what detects a file that is not a database.
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(sql_err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StorageError::Sqlite {
            path: path.to_path_buf(),
            message: format!("cannot switch to WAL mode (journal mode is {mode})"),
        });
    }
    conn.execute_batch(&format!(
        "PRAGMA synchronous = NORMAL;
         PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -{READER_CACHE_KIB};
         PRAGMA journal_size_limit = 67108864;"
    ))
    .map_err(sql_err)?;
    match schema::migrate(&mut conn, SCHEMA_VERSION).map_err(sql_err)? {
        schema::Migration::TooNew(found) => Err(StorageError::TooNew {
            path: path.to_path_buf(),
            found,
            supported: SCHEMA_VERSION,
        }),
        schema::Migration::Current | schema::Migration::Upgraded(_) => Ok(conn),
    }
}

/// Tuning of the writer.
#[derive(Clone, Debug)]
pub struct WriterOptions {
    /// Bytes of rows waiting for the writer ([`Rows::bytes`], its transaction's included);
    /// beyond this, batches are dropped (and counted).
    pub queue_bytes: usize,
    /// The most rows one transaction takes.
    pub max_batch: usize,
    pub retention: Retention,
    /// How often retention runs (it also runs at start).
    pub retention_interval: Duration,
    /// A transaction of fewer than 1,000 rows waits this long for more before it is written (a
    /// flush or closing does not wait): at a low rate, each of the pipeline's batches would
    /// otherwise be a transaction and a block of its own.
    pub gather_for: Duration,
    /// Plain events (benign, no rule, no response) are stored many to a row of `blocks`
    /// (block.rs). `false` stores every event as a row of `events`, as schema versions up to 5
    /// did: for tests that build such a database.
    pub plain_in_blocks: bool,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            // About 40,000 rows of a busy host's mix (~200 bytes each).
            queue_bytes: 8 << 20,
            max_batch: 20_000,
            retention: Retention::default(),
            retention_interval: Duration::from_secs(60),
            gather_for: Duration::from_secs(1),
            plain_in_blocks: true,
        }
    }
}

/// Counters shared by the pipeline and the writer, in events (a coalesced row counts all of
/// its events), except `queued`.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Events committed.
    pub stored: AtomicU64,
    /// Events dropped because the queue was full (or the writer was gone).
    pub dropped: AtomicU64,
    /// Events a failed write lost.
    pub failed: AtomicU64,
    /// Events deleted by retention.
    pub expired: AtomicU64,
    /// Transactions committed.
    pub commits: AtomicU64,
    /// The writer stopped writing for good (corrupted database).
    pub disabled: AtomicBool,
    /// Bytes queued for the writer or in its transaction ([`Rows::bytes`]).
    pub(crate) queued: AtomicUsize,
    /// Events queued for the writer or in its transaction.
    pub(crate) queued_events: AtomicU64,
    pub(crate) last_error: Mutex<Option<String>>,
}

impl WriterStats {
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn set_error(&self, message: String) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(message);
    }
}

/// The counts at the end ([`Store::close`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreSummary {
    pub stored: u64,
    pub dropped: u64,
    pub failed: u64,
    pub expired: u64,
    /// Events still queued when [`Store::close_within`] ran out of time: not stored.
    pub abandoned: u64,
}

/// How often the checkpointer copies committed pages from the WAL into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// Checkpoints on its own connection and thread, so the writer's commits never wait for
/// copying and `fsync` (about a fifth of the writer's time otherwise). Stops when `stop` is
/// dropped. `None` if it cannot start: the writer then checkpoints itself, as SQLite does by
/// default.
fn spawn_checkpointer(path: &Path, stop: mpsc::Receiver<()>) -> Option<JoinHandle<()>> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).ok()?;
    conn.busy_timeout(LOCK_WAIT).ok()?;
    std::thread::Builder::new()
        .name("secmon-checkpoint".to_string())
        .spawn(move || {
            crate::priority::lower_this_thread();
            while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(CHECKPOINT_EVERY) {
                // A failed checkpoint is retried next time; the WAL only grows meanwhile.
                let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
            }
        })
        .ok()
}

pub(crate) enum Msg {
    Rows(Rows),
    /// Acknowledged once everything sent before it is committed.
    Flush(mpsc::SyncSender<()>),
}

/// The history writer: a bounded queue in front of one thread that owns the connection.
pub struct Store {
    path: PathBuf,
    tx: Option<mpsc::Sender<Msg>>,
    stats: Arc<WriterStats>,
    thread: Option<JoinHandle<()>>,
    checkpointer: Option<(mpsc::Sender<()>, JoinHandle<()>)>,
    capacity: usize,
    reported: (u64, u64),
    reported_disabled: bool,
}

impl Store {
    /// Opens (creating) the database at `path` and starts the writer thread.
    pub fn open(path: &Path, options: WriterOptions) -> Result<Store, StorageError> {
        let conn = open_connection(path, true)?;
        conn.execute_batch(&format!("PRAGMA cache_size = -{WRITER_CACHE_KIB}"))
            .map_err(|e| StorageError::from_sqlite(path, &e))?;
        let (stop_tx, stop_rx) = mpsc::channel();
        let checkpointer = spawn_checkpointer(path, stop_rx).map(|thread| (stop_tx, thread));
        if checkpointer.is_some() {
            conn.execute_batch("PRAGMA wal_autocheckpoint = 0")
                .map_err(|e| StorageError::from_sqlite(path, &e))?;
        }
        let stats = Arc::new(WriterStats::default());
        let (tx, rx) = mpsc::channel();
        let capacity = options.queue_bytes.max(1);
        let writer = writer::Writer::new(conn, path.to_path_buf(), stats.clone(), options);
        let thread = std::thread::Builder::new()
            .name("secmon-history".to_string())
            .spawn(move || writer.run(rx))
            .map_err(|e| StorageError::io(path, e))?;
        Ok(Store {
            path: path.to_path_buf(),
            tx: Some(tx),
            stats,
            thread: Some(thread),
            checkpointer,
            capacity,
            reported: (0, 0),
            reported_disabled: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn stats(&self) -> &WriterStats {
        &self.stats
    }

    /// [`Store::submit_rows`] with each event a row of its own.
    pub fn submit(&self, events: Vec<Event>) -> bool {
        self.submit_rows(Rows::from_events(&events))
    }

    /// Queues a batch of analysed events (with their responses) for the writer without ever
    /// blocking. Returns `false` when the batch was dropped (queue full, or the history is
    /// disabled); the drop is counted (in events: a coalesced row counts all of its events).
    pub fn submit_rows(&self, rows: Rows) -> bool {
        if rows.is_empty() {
            return true;
        }
        let bytes = rows.bytes();
        let drop_batch = || {
            self.stats
                .dropped
                .fetch_add(rows.events(), Ordering::Relaxed);
            false
        };
        if self.stats.disabled.load(Ordering::Relaxed) {
            return drop_batch();
        }
        let before = self.stats.queued.fetch_add(bytes, Ordering::AcqRel);
        if before + bytes > self.capacity {
            self.stats.queued.fetch_sub(bytes, Ordering::AcqRel);
            return drop_batch();
        }
        let Some(tx) = &self.tx else {
            self.stats.queued.fetch_sub(bytes, Ordering::AcqRel);
            return drop_batch();
        };
        let events = rows.events();
        self.stats.queued_events.fetch_add(events, Ordering::AcqRel);
        match tx.send(Msg::Rows(rows)) {
            Ok(()) => true,
            Err(mpsc::SendError(msg)) => {
                self.stats.queued.fetch_sub(bytes, Ordering::AcqRel);
                self.stats.queued_events.fetch_sub(events, Ordering::AcqRel);
                if let Msg::Rows(rows) = msg {
                    self.stats
                        .dropped
                        .fetch_add(rows.events(), Ordering::Relaxed);
                }
                false
            }
        }
    }

    /// Waits until everything submitted so far is committed (or failed). For tests and for
    /// callers that read the database next.
    pub fn flush(&self) {
        let (ack_tx, ack_rx) = mpsc::sync_channel(1);
        if let Some(tx) = &self.tx
            && tx.send(Msg::Flush(ack_tx)).is_ok()
        {
            let _ = ack_rx.recv();
        }
    }

    /// Warning lines (without the `secmon: ` prefix) about what happened since the last call:
    /// events dropped, failed writes, the history being disabled.
    pub fn take_report(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        let dropped = self.stats.dropped.load(Ordering::Relaxed);
        let failed = self.stats.failed.load(Ordering::Relaxed);
        let disabled = self.stats.disabled.load(Ordering::Relaxed);
        if disabled && !self.reported_disabled {
            self.reported_disabled = true;
            lines.push(format!(
                "warning: history disabled: {}",
                self.stats
                    .last_error()
                    .unwrap_or_else(|| "the database cannot be written".to_string())
            ));
        } else if failed > self.reported.1 && !disabled {
            lines.push(format!(
                "warning: history: {} events could not be stored: {}",
                failed - self.reported.1,
                self.stats.last_error().unwrap_or_default()
            ));
        }
        if dropped > self.reported.0 && !disabled {
            lines.push(format!(
                "warning: history: {} events not stored (the history writer is behind; \
                 they were still analysed and shown)",
                dropped - self.reported.0
            ));
        }
        self.reported = (dropped, failed);
        lines
    }

    /// Stops the writer after it has committed everything queued, and returns the counts.
    pub fn close(mut self) -> StoreSummary {
        self.shutdown();
        self.summary()
    }

    /// [`Store::close`], but waits at most `limit` for the writer (a database locked by
    /// another process, or a slow disk, must not hold up a stop). What is still queued then
    /// is counted as `abandoned`; the writer thread is left to end with the process, and
    /// SQLite rolls its open transaction back, so the database stays consistent.
    pub fn close_within(mut self, limit: Duration) -> StoreSummary {
        let deadline = Instant::now() + limit;
        drop(self.tx.take());
        let mut abandoned = 0;
        if let Some(writer) = self.thread.take() {
            if finished_by(&writer, deadline) {
                let _ = writer.join();
            } else {
                // The handle is dropped: the thread is detached, not waited for.
                abandoned = self.stats.queued_events.load(Ordering::Acquire);
            }
        }
        if let Some((stop, checkpointer)) = self.checkpointer.take() {
            drop(stop);
            if finished_by(&checkpointer, deadline) {
                let _ = checkpointer.join();
            }
        }
        let mut summary = self.summary();
        summary.abandoned = abandoned;
        summary
    }

    /// The counts so far (stored, dropped, failed, expired).
    pub fn summary(&self) -> StoreSummary {
        StoreSummary {
            stored: self.stats.stored.load(Ordering::Relaxed),
            dropped: self.stats.dropped.load(Ordering::Relaxed),
            failed: self.stats.failed.load(Ordering::Relaxed),
            expired: self.stats.expired.load(Ordering::Relaxed),
            abandoned: 0,
        }
    }

    fn shutdown(&mut self) {
        drop(self.tx.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        if let Some((stop, thread)) = self.checkpointer.take() {
            drop(stop);
            let _ = thread.join();
        }
    }
}

/// Polls `thread` until it has finished or `deadline` passes; true if it finished.
fn finished_by(thread: &JoinHandle<()>, deadline: Instant) -> bool {
    const POLL: Duration = Duration::from_millis(5);
    loop {
        if thread.is_finished() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        std::thread::sleep(POLL.min(deadline - now));
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Read access to the history.
pub struct History {
    conn: Connection,
    path: PathBuf,
}

impl History {
    /// Opens an existing history database (migrating an older schema).
    pub fn open(path: &Path) -> Result<History, StorageError> {
        let conn = open_connection(path, false)?;
        conn.execute_batch("PRAGMA query_only = ON")
            .map_err(|e| StorageError::from_sqlite(path, &e))?;
        Ok(History {
            conn,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The events matching `filter`, oldest first; with a limit, the most recent ones.
    pub fn query(&self, filter: &Filter) -> Result<Vec<HistoryEvent>, StorageError> {
        query::select(&self.conn, filter).map_err(|e| StorageError::from_sqlite(&self.path, &e))
    }

    /// How many events match `filter` (its limit ignored).
    pub fn count(&self, filter: &Filter) -> Result<u64, StorageError> {
        query::count(&self.conn, filter).map_err(|e| StorageError::from_sqlite(&self.path, &e))
    }

    /// Counts per bucket (local time `offset_secs` east of UTC) per type, label and rule.
    pub fn stats(
        &self,
        filter: &Filter,
        bucket: Bucket,
        offset_secs: i32,
    ) -> Result<Vec<StatsRow>, StorageError> {
        query::stats(&self.conn, filter, bucket, offset_secs)
            .map_err(|e| StorageError::from_sqlite(&self.path, &e))
    }

    /// Events per bucket of `width_secs` (local time `offset_secs` east of UTC) by severity.
    pub fn timeline(
        &self,
        filter: &Filter,
        width_secs: i64,
        offset_secs: i32,
    ) -> Result<Vec<TimelineRow>, StorageError> {
        query::timeline(&self.conn, filter, width_secs, offset_secs)
            .map_err(|e| StorageError::from_sqlite(&self.path, &e))
    }
}

#[cfg(test)]
mod tests;
