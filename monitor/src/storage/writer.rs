//! The writer thread: owns the connection, turns queued batches into transactions, and runs
//! retention between them.
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::time::{Duration, Instant};

use chrono::Utc;
use rusqlite::{Connection, Transaction, TransactionBehavior};

use super::block::{self, BlockBuilder};
use super::row::{ContextCache, Scratch, Statements, context_id, insert};
use super::rows::Rows;
use super::summary::Tally;
use super::{Msg, StorageError, WriterOptions, WriterStats, retention};

pub(crate) struct Writer {
    conn: Connection,
    path: PathBuf,
    stats: Arc<WriterStats>,
    options: WriterOptions,
    contexts: ContextCache,
    scratch: Scratch,
    block: BlockBuilder,
    /// The id the next event gets (`None`: to be read from the database, at the start and
    /// after a failed transaction).
    next_id: Option<i64>,
    /// Events committed since the writer last checkpointed itself.
    since_checkpoint: usize,
}

/// After this many events the writer checkpoints itself. The checkpointer thread does most of
/// the copying, but under a sustained stream the WAL is never fully copied at the moment a
/// transaction starts, so it could never restart from its beginning and would grow without
/// bound; a checkpoint by the (only) writer, between its transactions, completes and lets the
/// next transaction restart it.
const SELF_CHECKPOINT_EVENTS: usize = 100_000;

/// A transaction of fewer rows than this waits up to [`WriterOptions::gather_for`] for more: at
/// a low rate, every batch of the pipeline would otherwise be a transaction and a block of its
/// own (each costs a few pages in the WAL, and a query reads each block's description).
const SMALL_TRANSACTION: usize = 1_000;

/// What the writer has taken from the queue and not written yet.
#[derive(Default)]
struct Pending {
    batches: Vec<Rows>,
    rows: usize,
    events: u64,
    /// As the queue counted them ([`Rows::bytes`]).
    bytes: usize,
    /// When they are to be written even if few: [`WriterOptions::gather_for`] after the first
    /// was taken.
    due: Option<Instant>,
}

impl Writer {
    pub(crate) fn new(
        conn: Connection,
        path: PathBuf,
        stats: Arc<WriterStats>,
        options: WriterOptions,
    ) -> Writer {
        Writer {
            conn,
            path,
            stats,
            options,
            contexts: ContextCache::default(),
            scratch: Scratch::default(),
            block: BlockBuilder::default(),
            next_id: None,
            since_checkpoint: 0,
        }
    }

    pub(crate) fn run(mut self, rx: Receiver<Msg>) {
        // When CPUs are scarce, capture, analysis and output go first; the history falls
        // behind (then drops, counted) instead of slowing them.
        crate::priority::lower_this_thread();
        let mut next_retention = Instant::now();
        let mut trimming = false;
        let mut pending = Pending::default();
        let mut acks: Vec<SyncSender<()>> = Vec::new();
        let mut open = true;
        while open {
            let mut wait = if trimming {
                Duration::ZERO
            } else {
                next_retention.saturating_duration_since(Instant::now())
            };
            if let Some(due) = pending.due {
                wait = wait.min(due.saturating_duration_since(Instant::now()));
            }
            match rx.recv_timeout(wait) {
                Ok(msg) => self.take(msg, &mut pending, &mut acks),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => open = false,
            }
            // Everything already queued joins this transaction, up to max_batch rows.
            while open && pending.rows < self.options.max_batch {
                match rx.try_recv() {
                    Ok(msg) => self.take(msg, &mut pending, &mut acks),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => open = false,
                }
                if !acks.is_empty() {
                    break;
                }
            }
            let gathering = pending.rows < SMALL_TRANSACTION
                && pending.due.is_some_and(|due| Instant::now() < due)
                && open
                && acks.is_empty();
            if !gathering {
                self.write(&mut pending);
                for ack in acks.drain(..) {
                    let _ = ack.send(());
                }
            }
            let shallow = self.stats.queued.load(Ordering::Acquire) < self.options.queue_bytes / 4;
            if open
                && (trimming || Instant::now() >= next_retention)
                && shallow
                && !self.stats.disabled.load(Ordering::Relaxed)
            {
                trimming = self.retention_step(trimming);
                if !trimming {
                    next_retention = Instant::now() + self.options.retention_interval;
                }
            }
        }
        // Final: whatever is left was taken above; leave the database tidy.
        let _ = self.conn.execute_batch("PRAGMA optimize");
    }

    fn take(&self, msg: Msg, pending: &mut Pending, acks: &mut Vec<SyncSender<()>>) {
        match msg {
            Msg::Rows(rows) => {
                let gather_for = self.options.gather_for;
                pending
                    .due
                    .get_or_insert_with(|| Instant::now() + gather_for);
                pending.rows += rows.len();
                pending.events += rows.events();
                pending.bytes += rows.bytes();
                pending.batches.push(rows);
            }
            Msg::Flush(ack) => acks.push(ack),
        }
    }

    fn write(&mut self, pending: &mut Pending) {
        if pending.batches.is_empty() {
            return;
        }
        let events = pending.events;
        if self.stats.disabled.load(Ordering::Relaxed) {
            self.stats.failed.fetch_add(events, Ordering::Relaxed);
        } else {
            match self.write_batch(&pending.batches) {
                Ok(undecodable) => {
                    self.stats
                        .stored
                        .fetch_add(events - undecodable, Ordering::Release);
                    if undecodable > 0 {
                        self.stats.failed.fetch_add(undecodable, Ordering::Relaxed);
                        self.stats
                            .set_error("a queued event could not be decoded".to_string());
                    }
                    self.stats.commits.fetch_add(1, Ordering::Relaxed);
                    self.since_checkpoint += pending.rows;
                    if self.since_checkpoint >= SELF_CHECKPOINT_EVENTS {
                        self.since_checkpoint = 0;
                        // Best effort: a failure only leaves the WAL longer for a while.
                        let _ = self
                            .conn
                            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                    }
                }
                Err(e) => {
                    // Ids handed out in the rolled-back transaction are gone.
                    self.contexts.clear();
                    self.next_id = None;
                    self.block.clear();
                    self.stats.failed.fetch_add(events, Ordering::Relaxed);
                    let error = StorageError::from_sqlite(&self.path, &e);
                    if error.is_fatal() {
                        self.stats.disabled.store(true, Ordering::Relaxed);
                    }
                    self.stats.set_error(error.to_string());
                }
            }
        }
        self.stats.queued.fetch_sub(pending.bytes, Ordering::AcqRel);
        self.stats.queued_events.fetch_sub(events, Ordering::AcqRel);
        *pending = Pending::default();
    }

    /// Writes `batches` in one transaction; returns how many events were lost to rows that
    /// did not decode. Plain rows go into blocks (block.rs), the others into `events`; both
    /// get their ids from one sequence, in the order submitted.
    fn write_batch(&mut self, batches: &[Rows]) -> rusqlite::Result<u64> {
        // In the order submitted: no index has random keys across the whole table any more
        // (schema.rs), so sorting the batch (by path, as version 2 did) no longer pays.
        let tx = Transaction::new(&mut self.conn, TransactionBehavior::Immediate)?;
        let mut next_id = match self.next_id {
            Some(id) => id,
            None => first_free_id(&tx)?,
        };
        let mut undecodable = 0;
        // The summary's counts of these rows, written once per distinct minute and key.
        let mut tally = Tally::default();
        {
            let mut statements = Statements::new(&tx)?;
            for rows in batches {
                for decoded in rows.iter() {
                    let Some(row) = decoded.row else {
                        undecodable += decoded.count;
                        continue;
                    };
                    let id = next_id;
                    next_id += 1;
                    if self.options.plain_in_blocks && block::is_plain(&row) {
                        let ctx = context_id(
                            &mut statements,
                            &mut self.contexts,
                            &mut self.scratch,
                            &row,
                        )?;
                        self.block.push(id, &row, ctx);
                        if self.block.is_full() {
                            self.block.write(&tx)?;
                        }
                    } else {
                        insert(
                            &mut statements,
                            &mut self.contexts,
                            &mut self.scratch,
                            id,
                            &row,
                        )?;
                    }
                    tally.add_row(&row);
                }
            }
        }
        self.block.write(&tx)?;
        tally.write(&tx)?;
        self.contexts.touch_used(&tx)?;
        tx.commit()?;
        self.next_id = Some(next_id);
        Ok(undecodable)
    }

    /// One retention step; returns whether more remains to be deleted.
    fn retention_step(&mut self, trimming: bool) -> bool {
        if self.options.retention.is_unlimited() {
            return false;
        }
        match retention::step(
            &mut self.conn,
            &self.options.retention,
            Utc::now(),
            trimming,
        ) {
            Ok(step) => {
                if step.contexts_deleted > 0 {
                    self.contexts.clear();
                }
                // Deleting the newest rows (a size limit smaller than one batch) frees ids.
                self.next_id = None;
                self.stats.expired.fetch_add(
                    step.deleted_by_age + step.deleted_by_size,
                    Ordering::Relaxed,
                );
                step.more
            }
            Err(e) => {
                self.contexts.clear();
                let error = StorageError::from_sqlite(&self.path, &e);
                if error.is_fatal() {
                    self.stats.disabled.store(true, Ordering::Relaxed);
                }
                self.stats.set_error(format!("retention: {error}"));
                false
            }
        }
    }
}

/// The id after every event's, in `events` and in `blocks`.
fn first_free_id(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row(
        "SELECT max(coalesce((SELECT max(id) FROM events), 0), \
                coalesce((SELECT last_id FROM blocks ORDER BY id DESC LIMIT 1), 0)) + 1",
        [],
        |r| r.get(0),
    )
}
