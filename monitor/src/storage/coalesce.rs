//! Identical consecutive events become one row (docs/history.md#coalesced-events).
//!
//! A loop opening the same file makes hundreds of thousands of events a second that differ
//! only in their time; storing each as a row is what kept the writer behind. On the pipeline
//! thread, before anything is queued, each event is compared with the last one kept for its pid:
//! when every field but the time is the same (thread, type, paths, flags, every other field, the
//! process context and the verdict: their encodings are compared byte for byte), it is counted
//! in that row instead. Only events nothing was found in are coalesced: no rule matched, benign,
//! a risk of 0, no response action, not blocked. A row covers at most [`WINDOW`] from its first
//! event to its last, so its times stay meaningful; it is queued when an event of its pid
//! differs, when its window is over, or at the latest [`WINDOW`] (plus up to [`SWEEP_EVERY`])
//! after it was opened, by the wall clock, if its process goes quiet.
use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::event::{Event, Severity};

use super::row::to_ns;
use super::rows::{Rows, encode_body};

/// The longest a coalesced row lasts, from its first event to its last.
pub const WINDOW: Duration = Duration::from_secs(1);

const WINDOW_NS: i64 = WINDOW.as_nanos() as i64;

/// How often the open rows are checked for their wall-clock end.
pub const SWEEP_EVERY: Duration = Duration::from_millis(250);

/// Open rows kept at most (one per pid); beyond, all are queued.
const MAX_RUNS: usize = 4096;

/// Whether `e` may be coalesced: nothing was found in it.
pub fn coalescable(e: &Event) -> bool {
    let a = &e.analysis;
    a.rules.is_empty()
        && a.severity == Severity::Benign
        && a.risk_score <= 0.0
        && e.response.is_empty()
        && !e.blocked
}

/// The row being counted for one pid.
struct Run {
    body: Vec<u8>,
    first_ns: i64,
    last_ns: i64,
    count: u64,
    opened: Instant,
}

/// Turns analysed events into rows for the writer, coalescing identical consecutive ones.
pub struct Coalescer {
    ready: Rows,
    runs: HashMap<u32, Run>,
    scratch: Vec<u8>,
    /// The wall clock as of the last [`Coalescer::expire`] (no clock read per event).
    now: Instant,
    last_sweep: Instant,
}

impl Default for Coalescer {
    fn default() -> Self {
        Coalescer::new()
    }
}

impl Coalescer {
    pub fn new() -> Coalescer {
        let now = Instant::now();
        Coalescer {
            ready: Rows::new(),
            runs: HashMap::new(),
            scratch: Vec::new(),
            now,
            last_sweep: now,
        }
    }

    /// Takes one analysed event.
    pub fn push(&mut self, e: &Event) {
        if !coalescable(e) {
            // It ends its pid's row: the events after it are not consecutive with those before.
            if let Some(run) = self.runs.remove(&e.pid) {
                self.queue(&run);
            }
            self.ready.push(e);
            return;
        }
        let ts = to_ns(e.timestamp);
        self.scratch.clear();
        encode_body(e, &mut self.scratch);
        if let Some(run) = self.runs.get_mut(&e.pid) {
            if ts >= run.last_ns && ts - run.first_ns < WINDOW_NS && run.body == self.scratch {
                run.count += 1;
                run.last_ns = ts;
                return;
            }
            self.ready
                .push_body(run.first_ns, run.last_ns, run.count, &run.body);
            std::mem::swap(&mut run.body, &mut self.scratch);
            run.first_ns = ts;
            run.last_ns = ts;
            run.count = 1;
            run.opened = self.now;
            return;
        }
        if self.runs.len() >= MAX_RUNS {
            self.close_all();
        }
        self.runs.insert(
            e.pid,
            Run {
                body: self.scratch.clone(),
                first_ns: ts,
                last_ns: ts,
                count: 1,
                opened: self.now,
            },
        );
    }

    fn queue(&mut self, run: &Run) {
        self.ready
            .push_body(run.first_ns, run.last_ns, run.count, &run.body);
    }

    /// Queues the rows opened [`WINDOW`] or more before `now` (checked at most every
    /// [`SWEEP_EVERY`]).
    pub fn expire(&mut self, now: Instant) {
        self.now = now;
        if now.saturating_duration_since(self.last_sweep) < SWEEP_EVERY {
            return;
        }
        self.last_sweep = now;
        let ready = &mut self.ready;
        self.runs.retain(|_, run| {
            let open = now.saturating_duration_since(run.opened) < WINDOW;
            if !open {
                ready.push_body(run.first_ns, run.last_ns, run.count, &run.body);
            }
            open
        });
    }

    /// Queues every open row (at a stop).
    pub fn close_all(&mut self) {
        for (_, run) in self.runs.drain() {
            self.ready
                .push_body(run.first_ns, run.last_ns, run.count, &run.body);
        }
    }

    /// The rows ready for the writer, in the order they were closed.
    pub fn take(&mut self) -> Rows {
        std::mem::take(&mut self.ready)
    }

    /// Rows still open (counting).
    pub fn open_rows(&self) -> usize {
        self.runs.len()
    }
}
