//! The pipeline: one driver for every front end.
//!
//! ```text
//! Source ──► stages (enrich → record tap → analyse → respond → history tap) ──► front ends
//! (kernel reader task       one driver task (driver.rs, stages.rs, taps.rs)     (front.rs: JSON output,
//!  or replay feeder)                                                              queues for the TUI and
//!  source.rs                                                                      the web controller)
//! ```
//!
//! - [`source`]: the kernel capture (started by [`start`]) or a recording.
//! - [`stages`]: what every event goes through, owned by the driver alone.
//! - [`taps`]: the recording and the history, which see every event whatever the front ends do.
//! - [`front`]: the front ends, each behind a bounded queue of its own with a loss counter.
//! - [`driver`]: the lifecycle — start, signals, deadline, the per-second work, and the
//!   ordered, bounded stop; [`report`]: its warnings, `stats` records and the rule watcher.
//!
//! Operator messages travel as typed [`crate::notice::Notice`]s, not through the pipeline.
use std::{
    future::Future,
    io::{self, Write},
    path::PathBuf,
    pin::Pin,
    sync::Arc,
    time::Duration,
};

mod driver;
pub mod front;
mod report;
mod source;
mod stages;
mod start;
mod taps;

pub use driver::{Finished, OnSighup, Pipeline, StopHandle, StopReason};
pub use front::{Batch, FrontEnd, Recycler, SUBSCRIBER_EVENTS, Subscriber, take_events};
pub use source::SourceSpec;

use crate::{
    capture::{CaptureError, enforce::EnforceError},
    losses::{Loss, LossCounts, Losses},
    notice,
    output::json::{JsonLines, JsonOutput, OutputOptions},
    record::RecordError,
    response::ResponseError,
    rules::RuleEngine,
    shutdown::cut_short_suffix,
};

/// Batches in flight between the reader and the pipeline; beyond that the reader waits and
/// the kernel ring buffer absorbs (then counts) the excess.
pub(crate) const CHANNEL_BATCHES: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// `--record FILE` cannot be created, or `--replay FILE` cannot be read.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The response layer cannot start (log file, webhook, control socket).
    #[error(transparent)]
    Response(#[from] ResponseError),
    /// `[response] enforce = true` but this kernel or system cannot enforce.
    #[error("[response] enforce = true, but real enforcement cannot start: {0}")]
    Enforce(#[from] EnforceError),
    /// A companion front end (the web controller, the NATS exporter) cannot start.
    #[error("{0}")]
    Companion(String),
}

/// What starting a [`Companion`] gives: a guard that keeps it running, or why it could not
/// start.
pub type CompanionStart<'a> = Pin<Box<dyn Future<Output = Result<Box<dyn Send>, String>> + 'a>>;

/// A front end started beside the main one once the pipeline runs (the web controller, the
/// NATS exporter): it reads its own bounded queue and may use the running pipeline's switches.
/// What `start` returns keeps it running; it is dropped (and so stopped) before the
/// pipeline's stop.
pub trait Companion: Send {
    fn start<'a>(
        self: Box<Self>,
        pipeline: &'a Pipeline,
        batches: tokio::sync::mpsc::Receiver<Batch>,
    ) -> CompanionStart<'a>;

    /// What a batch dropped on its full queue counts as (the web controller's by default).
    fn queue_loss(&self) -> Loss {
        Loss::WebQueueFull
    }

    /// How many events its queue holds ([`SUBSCRIBER_EVENTS`] by default).
    fn queue_events(&self) -> usize {
        SUBSCRIBER_EVENTS
    }
}

/// The companions of a run, each with a queue of its own.
pub type Companions = Vec<Box<dyn Companion>>;

/// One queue per companion: added to `front_ends`, the receivers kept for
/// [`start_companions`] (in the same order).
pub fn companion_queues(
    companions: &[Box<dyn Companion>],
    front_ends: &mut Vec<FrontEnd>,
) -> Vec<tokio::sync::mpsc::Receiver<Batch>> {
    companions
        .iter()
        .map(|companion| {
            let (subscriber, batches) =
                Subscriber::new(companion.queue_events(), companion.queue_loss());
            front_ends.push(FrontEnd::Queue(subscriber));
            batches
        })
        .collect()
}

/// Starts each companion on its queue; an error stops those already started (and then the
/// pipeline).
pub async fn start_companions(
    companions: Companions,
    queues: Vec<tokio::sync::mpsc::Receiver<Batch>>,
    pipeline: &Pipeline,
) -> Result<Vec<Box<dyn Send>>, PipelineError> {
    let mut running = Vec::with_capacity(companions.len());
    for (companion, batches) in companions.into_iter().zip(queues) {
        let started = companion
            .start(pipeline, batches)
            .await
            .map_err(PipelineError::Companion)?;
        running.push(started);
    }
    Ok(running)
}

#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub duration: Option<Duration>,
    pub ring_bytes: Option<u32>,
    /// The loaded rules (`None`: no rules, every event benign). Reloaded on SIGHUP and when
    /// a file in its directories changes.
    pub rules: Option<RuleEngine>,
    /// The event history (`None`, or `enabled = false`: not stored).
    pub storage: Option<crate::config::Storage>,
    /// `--record FILE`: save the enriched events (before analysis) for `--replay`.
    pub record: Option<PathBuf>,
    /// `--presenter`: the terminal UI starts in the presenter layout (`Z` toggles it).
    pub presenter: bool,
}

/// What a run did, printed to stderr at the end.
#[derive(Clone, Debug, Default)]
pub struct RunSummary {
    /// Events written (`--json`) or received (the UI).
    pub events: u64,
    pub records: u64,
    /// Everything lost, by reason.
    pub losses: LossCounts,
    /// The shutdown steps that ran out of time (see [`crate::shutdown`]).
    pub cut_short: Vec<String>,
}

impl RunSummary {
    /// The end of the `secmon: stopped:` line: `N events <verb>, M kernel records, D dropped
    /// in the kernel, E undecodable; losses: none` (or `losses: T (reason n, …)`).
    pub fn stopped_line(&self, verb: &str) -> String {
        let losses = match self.losses.total() {
            0 => "none".to_string(),
            total => format!("{total} ({})", self.losses.describe()),
        };
        format!(
            "{} events {verb}, {} kernel records, {} dropped in the kernel, {} undecodable; \
             losses: {losses}{}",
            self.events,
            self.records,
            self.losses.get(Loss::RingBufferFull),
            self.losses.get(Loss::DecodeError),
            cut_short_suffix(&self.cut_short),
        )
    }
}

/// How long the JSON output may go without progress, once the pipeline has stopped, writing
/// what is queued: a stalled stdout must not hold up the stop (what it could not take is
/// counted), a reader that keeps reading gets the backlog (up to 5 s, `output::json`).
const OUTPUT_GRACE: Duration = Duration::from_millis(250);

/// `--json`: `source` through the pipeline into JSON lines on `out`, until a signal,
/// `--duration`, the end of a recording, or `out` closing (`| head`). A live capture writes
/// through the bounded output queue (a stalled stdout loses events, counted, and holds up
/// nothing); a replay writes directly (nothing lost; with `--speed max` the output depends
/// only on the recording and the rules).
pub async fn run_json<W: Write + Send + 'static>(
    config: &crate::config::Config,
    options: &RunOptions,
    source: SourceSpec,
    out: W,
    companions: Companions,
) -> Result<RunSummary, PipelineError> {
    let losses = Arc::new(Losses::new());
    let front = match source {
        SourceSpec::Replay(_) | SourceSpec::Events(_) => {
            FrontEnd::JsonLines(JsonLines::new(Box::new(out)))
        }
        SourceSpec::Kernel => FrontEnd::Json(JsonOutput::start(
            out,
            OutputOptions::default(),
            losses.clone(),
        )?),
    };
    let mut front_ends = vec![front];
    let companion_batches = companion_queues(&companions, &mut front_ends);
    let mut pipeline = Pipeline::start(
        config,
        options,
        source,
        front_ends,
        OnSighup::ReloadRules,
        losses,
    )?;
    let running = start_companions(companions, companion_batches, &pipeline).await?;
    // Runs until a signal, `--duration`, the recording's end or stdout closing.
    pipeline.ended().await;
    drop(running);
    let finished = pipeline.finish().await?;
    let mut events = finished.events;
    let mut error = finished.error;
    for front in finished.front_ends {
        if let FrontEnd::Json(output) = front {
            let written = output.finish(OUTPUT_GRACE).await;
            if written.unwritten > 0 {
                notice::warn(format!(
                    "{} events were still queued for stdout at stop and were not written \
                     (stdout stalled)",
                    written.unwritten
                ));
            }
            events = written.written;
            if let Some(e) = written.error
                && e.kind() != io::ErrorKind::BrokenPipe
            {
                error.get_or_insert(e);
            }
        }
    }
    if let Some(e) = error {
        return Err(e.into());
    }
    Ok(RunSummary {
        events,
        records: finished.records,
        losses: finished.losses.snapshot(),
        cut_short: finished.cut_short,
    })
}
