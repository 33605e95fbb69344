//! Where events come from: the kernel (the capture and its ring buffer reader task) or a
//! recording (`--replay`, its feeder task). The driver asks for the next input and, to stop,
//! stops the source first (no new kernel records) and then drains what it already read.
use std::{
    io,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};

use super::CHANNEL_BATCHES;
use crate::{
    capture::reader::{self, ReaderStats, RecordBatch},
    event::Event,
    losses::{Loss, Losses},
    record::{Replay, ReplaySummary},
    response::enforce::{SharedCapture, lock_capture},
    shutdown::StopBudget,
};

/// What to read, as a front end asks for it.
pub enum SourceSpec {
    /// The live capture (needs root).
    Kernel,
    /// A recording, at its own pace or as fast as possible.
    Replay(Box<Replay>),
    /// Recorded events handed in by the caller when it wants (a classroom demo without root
    /// replays a step's events when the teacher asks for the step). Ends when the sender
    /// is dropped.
    Events(mpsc::Receiver<Vec<Event>>),
}

/// The next thing a source has.
pub(super) enum Input {
    Records(RecordBatch),
    Events(Vec<Event>),
    /// Nothing more will come.
    End,
}

pub(super) enum Source {
    Kernel(KernelSource),
    Replay(ReplaySource),
}

pub(super) struct KernelSource {
    pub capture: SharedCapture,
    records: mpsc::Receiver<RecordBatch>,
    shutdown: watch::Sender<bool>,
    reader: Option<JoinHandle<io::Result<()>>>,
    pub stats: Arc<ReaderStats>,
}

pub(super) struct ReplaySource {
    events: Option<mpsc::Receiver<Vec<Event>>>,
    feeder: Option<JoinHandle<ReplaySummary>>,
    /// What the feeder said when it ended.
    pub summary: Option<ReplaySummary>,
}

impl Source {
    /// Starts the reader task on the capture's ring buffer.
    pub fn kernel(
        capture: SharedCapture,
        ring: crate::capture::EventRing,
        losses: Arc<Losses>,
    ) -> Source {
        let (records_tx, records) = reader::record_queue();
        let (shutdown, shutdown_rx) = watch::channel(false);
        let stats = Arc::new(ReaderStats::new(losses));
        let ring_bytes = lock_capture(&capture).ring_bytes();
        let reader = tokio::spawn(reader::run(
            ring,
            ring_bytes,
            records_tx,
            shutdown_rx,
            stats.clone(),
        ));
        Source::Kernel(KernelSource {
            capture,
            records,
            shutdown,
            reader: Some(reader),
            stats,
        })
    }

    /// Starts the feeder task on the recording.
    pub fn replay(replay: Box<Replay>) -> Source {
        let (events, feeder) = crate::record::spawn_replay(*replay, CHANNEL_BATCHES);
        Source::Replay(ReplaySource {
            events: Some(events),
            feeder: Some(feeder),
            summary: None,
        })
    }

    /// Reads events the caller sends (see [`SourceSpec::Events`]).
    pub fn events(events: mpsc::Receiver<Vec<Event>>) -> Source {
        Source::Replay(ReplaySource {
            events: Some(events),
            feeder: None,
            summary: None,
        })
    }

    pub fn is_replay(&self) -> bool {
        matches!(self, Source::Replay(_))
    }

    pub async fn next(&mut self) -> Input {
        match self {
            Source::Kernel(kernel) => match kernel.records.recv().await {
                Some(batch) => Input::Records(batch),
                None => Input::End,
            },
            Source::Replay(replay) => {
                let next = match &mut replay.events {
                    Some(events) => events.recv().await,
                    None => std::future::pending().await,
                };
                match next {
                    Some(batch) => Input::Events(batch),
                    None => {
                        replay.events = None;
                        if let Some(feeder) = replay.feeder.take() {
                            replay.summary = Some(feeder.await.unwrap_or_default());
                        }
                        Input::End
                    }
                }
            }
        }
    }

    /// Stops new input: the kernel side stops reporting (see `Capture::begin_stop`) and the
    /// reader makes its last, bounded drain; a replay stops reading the recording.
    pub fn begin_stop(&mut self) {
        match self {
            Source::Kernel(kernel) => {
                lock_capture(&kernel.capture).begin_stop();
                let _ = kernel.shutdown.send(true);
            }
            Source::Replay(replay) => replay.events = None,
        }
    }

    /// Kernel records read so far (a replay: events read from the recording).
    pub fn records(&self) -> u64 {
        match self {
            Source::Kernel(kernel) => kernel.stats.records.load(Ordering::Relaxed),
            Source::Replay(replay) => replay.summary.as_ref().map_or(0, |s| s.events),
        }
    }
}

impl KernelSource {
    /// Waits (within the budget) for the reader's last drain; what it read but the pipeline
    /// did not process is counted.
    pub async fn finish(&mut self, budget: &mut StopBudget, losses: &Losses) {
        let _ = self.shutdown.send(true);
        // The reader counts the batch it could not hand over once the channel is closed.
        self.records.close();
        while let Ok(batch) = self.records.try_recv() {
            losses.add(Loss::UnprocessedAtStop, batch.records.len() as u64);
        }
        if let Some(reader) = self.reader.take()
            && tokio::time::timeout(budget.remaining(), reader)
                .await
                .is_err()
        {
            budget.cut_short("the ring buffer reader");
        }
        if self.stats.stop_drain_cut_short.load(Ordering::Relaxed) {
            budget.cut_short("the last drain of the ring buffer");
        }
    }
}

impl ReplaySource {
    /// How far the replay got: its end, or (stopped before the end) the feeder, stopped by
    /// closing its channel, given a moment to say.
    pub async fn finish(&mut self, budget: &mut StopBudget) -> ReplaySummary {
        if let Some(summary) = self.summary.take() {
            return summary;
        }
        self.events = None;
        let Some(mut feeder) = self.feeder.take() else {
            return ReplaySummary::default();
        };
        let limit = budget.step(FEEDER_LIMIT, Duration::ZERO);
        match tokio::time::timeout(limit, &mut feeder).await {
            Ok(summary) => summary.unwrap_or_default(),
            Err(_) => {
                // Waiting for a far-off event of a slow replay: it was sent nothing more anyway.
                feeder.abort();
                ReplaySummary::default()
            }
        }
    }
}

/// How long a stopped replay's feeder gets to report.
const FEEDER_LIMIT: Duration = Duration::from_secs(1);
