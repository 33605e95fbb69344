//! The taps: what happens to every event besides the front ends. The recording (`--record`)
//! takes each event as enriched, before analysis, so a replay analyses it again with the rules
//! of its day; the history (`[storage]`) takes each event once analysed and responded to. Both
//! have bounded costs: the recording and the history each have a writer thread of their own
//! behind a bounded queue, counting what it cannot take (`recording_queue_full`,
//! `history_queue_full`); a recording that cannot be written stops with a warning.
use std::io;

use super::{PipelineError, RunOptions};
use crate::{
    event::Event,
    losses::{Loss, Losses},
    notice,
    record::Recorder,
    shutdown::StopBudget,
    storage::{Coalescer, Retention, Store, StoreSummary, WriterOptions},
};

/// What happens to every event besides its output: the recording (`--record`, taken before
/// analysis) and the history (`[storage]`, after analysis and response). Used by `--json`,
/// replay and the TUI alike. Neither ever stops the monitor: a recording that fails to write
/// stops with a warning, and the history drops (and reports) what its writer cannot take.
pub struct Taps {
    recorder: Option<Recorder>,
    store: Option<Store>,
    /// The events for the history, encoded (a copy of their bytes, not a clone), identical
    /// consecutive ones counted in one row (`storage::coalesce`).
    pending: Coalescer,
}

impl Taps {
    /// Creates the recording (an error if it cannot be: it was asked for explicitly) and
    /// opens the history (if it cannot be, a warning says so and monitoring goes on).
    pub fn open(options: &RunOptions) -> Result<Taps, PipelineError> {
        let recorder = match &options.record {
            Some(path) => {
                let recorder = Recorder::create(path)?;
                notice::info(format!("recording to {}", path.display()));
                Some(recorder)
            }
            None => None,
        };
        let store = options
            .storage
            .as_ref()
            .filter(|s| s.enabled)
            .and_then(open_store);
        Ok(Taps {
            recorder,
            store,
            pending: Coalescer::new(),
        })
    }

    /// Call with each enriched event before it is analysed.
    pub fn record(&mut self, event: &Event) {
        if let Some(recorder) = &mut self.recorder
            && let Err(e) = recorder.write(event)
        {
            self.stop_recording(&e);
        }
    }

    /// Call with each event once analysed (and responded to).
    pub fn store(&mut self, event: &Event) {
        if self.store.is_some() {
            self.pending.push(event);
        }
    }

    /// Call after each batch: flushes the recording, hands the batch to the history writer.
    pub fn end_batch(&mut self) {
        if let Some(recorder) = &mut self.recorder
            && let Err(e) = recorder.flush()
        {
            self.stop_recording(&e);
        }
        self.submit_history();
    }

    /// Hands the rows ready (and the coalesced rows whose time is over) to the history writer.
    fn submit_history(&mut self) {
        if let Some(store) = &self.store {
            self.pending.expire(std::time::Instant::now());
            let rows = self.pending.take();
            if !rows.is_empty() {
                store.submit_rows(rows);
            }
        }
    }

    fn stop_recording(&mut self, error: &io::Error) {
        if let Some(recorder) = self.recorder.take() {
            notice::warn(format!(
                "recording to {} stopped after {} events: {error}",
                recorder.path().display(),
                recorder.events()
            ));
        }
    }

    /// Queues the coalesced rows whose time is over, prints new history warnings (drops,
    /// failed writes); call about once a second.
    pub fn report(&mut self) {
        self.submit_history();
        if let Some(store) = &mut self.store {
            report_history(store);
        }
    }

    /// Copies the recording's and the history's losses so far into `losses`.
    pub fn record_losses(&self, losses: &Losses) {
        if let Some(recorder) = &self.recorder {
            losses.observe(Loss::RecordingQueueFull, recorder.dropped());
        }
        if let Some(store) = &self.store {
            record_history_losses(losses, store.summary());
        }
    }

    /// Finishes the recording and lets the history writer commit what is queued; returns the
    /// history's counts (when it was on).
    pub fn close_within(
        mut self,
        budget: &mut StopBudget,
        losses: &Losses,
    ) -> Option<StoreSummary> {
        self.pending.close_all();
        self.end_batch();
        if let Some(recorder) = self.recorder.take() {
            let path = recorder.path().to_path_buf();
            let dropped = recorder.dropped();
            losses.observe(Loss::RecordingQueueFull, dropped);
            match recorder.finish() {
                Ok(n) if dropped > 0 => notice::warn(format!(
                    "recorded {n} events to {}; {dropped} not recorded (the writer was behind)",
                    path.display()
                )),
                Ok(n) => notice::info(format!("recorded {n} events to {}", path.display())),
                Err(e) => notice::warn(format!("finishing {}: {e}", path.display())),
            }
        }
        let mut store = self.store.take()?;
        report_history(&mut store);
        let path = store.path().display().to_string();
        let s = store.close_within(budget.remaining());
        if s.abandoned > 0 {
            budget.cut_short(format!(
                "the history writer ({} events not stored)",
                s.abandoned
            ));
        }
        let lost = s.dropped + s.failed + s.abandoned;
        if lost > 0 {
            notice::info(format!(
                "history: {} events stored in {path}, {lost} not stored",
                s.stored
            ));
        } else {
            notice::info(format!("history: {} events stored in {path}", s.stored));
        }
        Some(s)
    }
}

pub(crate) fn record_history_losses(losses: &Losses, history: StoreSummary) {
    losses.observe(Loss::HistoryQueueFull, history.dropped);
    losses.observe(Loss::HistoryWriteFailed, history.failed);
    losses.observe(Loss::HistoryUnwrittenAtStop, history.abandoned);
}

/// Opens the history for the monitor; on failure says so and returns `None` (monitoring goes
/// on without it).
fn open_store(settings: &crate::config::Storage) -> Option<Store> {
    let retention = Retention::from_config(settings);
    let options = WriterOptions {
        retention,
        ..WriterOptions::default()
    };
    match Store::open(&settings.path, options) {
        Ok(store) => {
            let mut kept = Vec::new();
            if settings.retention_days > 0 {
                kept.push(format!("{} days", settings.retention_days));
            }
            if settings.max_size_mb > 0 {
                kept.push(format!("{} MiB", settings.max_size_mb));
            }
            let kept = if kept.is_empty() {
                "kept forever".to_string()
            } else {
                format!("keeping at most {}", kept.join(" and "))
            };
            notice::info(format!("history: {} ({kept})", settings.path.display()));
            Some(store)
        }
        Err(e) => {
            notice::warn(format!(
                "history disabled: {e}; monitoring goes on without storing events"
            ));
            None
        }
    }
}

/// The history's new warnings (drops, failed writes), as notices.
fn report_history(store: &mut Store) {
    for line in store.take_report() {
        if let Some(warning) = line.strip_prefix("warning: ") {
            notice::warn(warning);
        } else {
            notice::info(line);
        }
    }
}
