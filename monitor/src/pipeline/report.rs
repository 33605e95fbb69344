//! What the driver tells the operator as it runs and at its end: new kernel drops and output
//! losses as warnings, the JSON stream's `stats` records, a replay's problems; and the rule
//! watcher it starts.
use std::{io, sync::Arc, time::Instant};

use crate::{
    capture::Capture,
    losses::{Loss, LossCounts, Losses},
    notice,
    output::{json::JsonOutput, stats::StatsRecord},
    record::ReplaySummary,
    rules::{self, RuleEngine, RulesWatcher},
};

/// What a replay's end has to say: a bad recording, fields cut to live limits.
pub(super) fn report_replay(summary: &ReplaySummary) {
    if let Some(error) = &summary.error {
        // The message may quote the recording's text.
        notice::warn(crate::sanitize::for_terminal(error));
    }
    if summary.clamped > 0 {
        notice::warn(format!(
            "{} replayed events had fields longer than live capture allows; they were cut and \
             marked truncated",
            summary.clamped
        ));
    }
}

/// Reloads the rules when their files change; without a watcher, SIGHUP still reloads.
pub(super) fn watch_rules(engine: &RuleEngine) -> Option<RulesWatcher> {
    if engine.dirs().is_empty() {
        return None;
    }
    rules::watch(engine.clone())
        .map_err(|e| notice::warn(format!("{e}; rules reload on SIGHUP only")))
        .ok()
}

/// Overload is visible at once, not only in the final summary.
pub(super) fn report_new_drops(capture: &Capture, already_reported: u64) -> u64 {
    let total = capture.total_drops();
    if total > already_reported {
        notice::warn(format!(
            "{} events dropped in the kernel (ring buffer full; consumer too slow or burst too \
             large, see --ring-buffer-mib)",
            total - already_reported
        ));
    }
    total
}

/// Warns about new output losses and writes the `stats` records of the JSON stream.
pub(super) struct LossReporter {
    losses: Arc<Losses>,
    started: Instant,
    /// What the last `stats` record said (events, records, losses): none is written again
    /// until something changed.
    last_written: Option<(u64, u64, LossCounts)>,
    output_reported: u64,
}

impl LossReporter {
    pub fn new(losses: Arc<Losses>) -> LossReporter {
        LossReporter {
            losses,
            started: Instant::now(),
            last_written: None,
            output_reported: 0,
        }
    }

    pub fn warn_about_output(&mut self) {
        let output = self.losses.get(Loss::OutputQueueFull);
        if output > self.output_reported {
            notice::warn(format!(
                "{} events not written (stdout is not keeping up; they were still analysed, \
                 responded to and stored)",
                output - self.output_reported
            ));
            self.output_reported = output;
        }
    }

    /// Queues a `stats` record when anything changed since the last one (always when `last`).
    pub fn write_stats(
        &mut self,
        output: &mut JsonOutput,
        records: u64,
        last: bool,
    ) -> io::Result<()> {
        let counts = self.losses.snapshot();
        let now = (output.accepted(), records, counts);
        if !last && self.last_written == Some(now) {
            return Ok(());
        }
        let record = StatsRecord::new(now.0, records, counts, self.started.elapsed(), last);
        if output.write_record(&record, last)? {
            self.last_written = Some(now);
        }
        Ok(())
    }
}
