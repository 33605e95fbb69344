//! The one lifecycle every front end shares: start, run, stop.
//!
//! [`Pipeline::start`] opens the taps, starts the source (for the kernel: capture, response
//! layer, control socket, `secmon: ready`), registers the signals and spawns the driver task.
//! The driver alone owns the stages: it takes input from the source, runs it through the
//! stages and hands each analysed batch to the front ends. Once a second it does the
//! periodic work (deny-entry expiry, warnings, loss counts, the JSON `stats` record).
//!
//! A stop (SIGINT, SIGTERM, SIGHUP in the UI, `--duration`, a front end asking, the source
//! ending) has one time budget ([`StopBudget`]) from the request to exit. The loop part
//! stops the source (kernel reporting off, the reader's last bounded drain) and processes
//! what is left for at most [`LAST_EVENTS_LIMIT`]. [`Pipeline::finish`] then runs the ordered
//! shutdown: reader, control socket, response layer, kernel programs, taps. A front end that
//! owns the terminal restores it between the two, so the shutdown's reports reach stderr.
use std::{
    future::Future,
    io,
    pin::Pin,
    sync::{Arc, mpsc as std_mpsc},
    time::{Duration, Instant},
};

use tokio::{
    runtime::Handle,
    signal::unix::{Signal, SignalKind, signal},
    sync::{mpsc, oneshot},
};

use super::{
    PipelineError, RunOptions,
    front::{Batch, Closed, FrontEnd, Recycler},
    report::{LossReporter, report_new_drops, report_replay, watch_rules},
    source::{Input, Source, SourceSpec},
    stages::Stages,
    start::start_live,
    taps::{Taps, record_history_losses},
};
use crate::{
    capture::reader::MAX_BATCH,
    config::Config,
    enrich::Enricher,
    event::{Event, EventType},
    losses::{Loss, Losses},
    notice,
    output::json::JsonOutput,
    record::ReplaySummary,
    response::{
        Responder,
        control::ControlServer,
        enforce::{Enforcer, SharedCapture, lock_capture},
    },
    rules::{self, Evaluator, RuleEngine, RulesWatcher},
    shutdown::{STOP_BUDGET, StopBudget},
};

/// Why a run stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopReason {
    Signal(&'static str),
    /// `--duration` ran out.
    Deadline,
    /// The recording ended (or the kernel reader stopped).
    SourceEnded,
    /// A front end went away (stdout closed) or asked (the UI's `q`).
    FrontEnd,
}

/// What SIGHUP means: reload the rules (a daemon's convention), or stop (the TUI: the SSH
/// session that showed it is gone).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnSighup {
    ReloadRules,
    Stop,
}

/// A running pipeline (see the module documentation).
pub struct Pipeline {
    state: State,
    recycler: Recycler,
    stop: mpsc::UnboundedSender<StopReason>,
    losses: Arc<Losses>,
    capture: Option<SharedCapture>,
    enforcer: Option<Arc<Enforcer>>,
    engine: RuleEngine,
    /// Closes when the driver's thread has ended (see [`Pipeline`]'s `Drop`).
    driver_thread: std_mpsc::Receiver<()>,
}

enum State {
    /// The driver's thread hands the driver back when its loop ends.
    Running(oneshot::Receiver<Box<Driver>>),
    Ended(Box<Driver>),
    /// The driver task panicked.
    Lost,
}

/// What a finished run did.
pub struct Finished {
    /// Events analysed and handed to the front ends.
    pub events: u64,
    /// Kernel records read (a replay: events read from the recording).
    pub records: u64,
    pub losses: Arc<Losses>,
    pub cut_short: Vec<String>,
    pub reason: StopReason,
    /// The front ends, for those that finish after the pipeline (the JSON output's grace).
    pub front_ends: Vec<FrontEnd>,
    pub replay: Option<ReplaySummary>,
    /// A front end's write error (not a closed pipe).
    pub error: Option<io::Error>,
}

/// Requests a stop from another task (the UI's `q`).
#[derive(Clone)]
pub struct StopHandle(mpsc::UnboundedSender<StopReason>);

impl StopHandle {
    pub fn stop(&self, reason: StopReason) {
        let _ = self.0.send(reason);
    }
}

impl Pipeline {
    /// Starts `source` through the stages into `front_ends`. `losses` are the run's counters,
    /// shared with the front ends that count their own.
    pub fn start(
        config: &Config,
        options: &RunOptions,
        source: SourceSpec,
        mut front_ends: Vec<FrontEnd>,
        on_sighup: OnSighup,
        losses: Arc<Losses>,
    ) -> Result<Pipeline, PipelineError> {
        // Signal handlers first: a SIGTERM right after `secmon: ready` must stop us cleanly.
        let signals = Signals::new()?;
        let engine = options.rules.clone().unwrap_or_else(RuleEngine::empty);
        // Watching before `secmon: ready`: a rule file saved right after it is reloaded.
        let rules_watcher = watch_rules(&engine);
        let taps = Taps::open(options)?;
        let (source, responder, control) = match source {
            SourceSpec::Kernel => {
                let started = start_live(config, options)?;
                let source = Source::kernel(started.capture, started.ring, losses.clone());
                (source, Some(started.responder), started.control)
            }
            SourceSpec::Replay(replay) => (Source::replay(replay), None, None),
            SourceSpec::Events(events) => (Source::events(events), None, None),
        };
        let capture = match &source {
            Source::Kernel(kernel) => Some(kernel.capture.clone()),
            Source::Replay(_) => None,
        };
        let enforcer = responder.as_ref().and_then(|r| r.enforcer().cloned());
        let stages = Stages {
            enricher: Enricher::new(),
            evaluator: Evaluator::for_config(engine.clone(), &config.threat_detection),
            responder,
            taps,
            losses: losses.clone(),
        };
        let (stop, stop_rx) = mpsc::unbounded_channel();
        let (recycler, returned) = Recycler::new();
        let driver = Driver {
            returned,
            spare: Vec::new(),
            output_stopped: json_output_mut(&mut front_ends).map(|o| Box::pin(o.stopped()) as _),
            reporter: LossReporter::new(losses.clone()),
            source,
            stages,
            front_ends,
            control,
            engine: engine.clone(),
            signals,
            on_sighup,
            duration: options.duration,
            stop_rx,
            stopping: None,
            drops_reported: 0,
            events: 0,
            error: None,
            _rules_watcher: rules_watcher,
        };
        let (ended, driver_thread) = spawn_driver(driver)?;
        Ok(Pipeline {
            state: State::Running(ended),
            driver_thread,
            recycler,
            stop,
            losses,
            capture,
            enforcer,
            engine,
        })
    }

    pub fn stopper(&self) -> StopHandle {
        StopHandle(self.stop.clone())
    }

    /// Where a front end gives back the events it is done with (see [`Recycler`]).
    pub fn recycler(&self) -> Recycler {
        self.recycler.clone()
    }

    /// Shared loss counters (the UI shows them).
    pub fn losses(&self) -> Arc<Losses> {
        self.losses.clone()
    }

    /// The live capture (the UI's probe switches), `None` for a replay.
    pub fn capture(&self) -> Option<SharedCapture> {
        self.capture.clone()
    }

    /// Real enforcement, when `[response] enforce = true` (the UI's blocks go through it).
    pub fn enforcer(&self) -> Option<Arc<Enforcer>> {
        self.enforcer.clone()
    }

    pub fn engine(&self) -> &RuleEngine {
        &self.engine
    }

    /// How the replay ended, once the driver has ([`Pipeline::ended`]).
    pub fn replay_summary(&self) -> Option<ReplaySummary> {
        match &self.state {
            State::Ended(driver) => match &driver.source {
                Source::Replay(replay) => replay.summary.clone(),
                Source::Kernel(_) => None,
            },
            _ => None,
        }
    }

    /// Resolves when the driver's loop has ended, with why; then [`Pipeline::finish`].
    /// Cancel-safe: it can wait in a `select!` beside other branches.
    pub async fn ended(&mut self) -> StopReason {
        if let State::Running(driver) = &mut self.state {
            self.state = match driver.await {
                Ok(driver) => State::Ended(driver),
                Err(_) => State::Lost,
            };
        }
        match &self.state {
            State::Ended(driver) => driver.reason(),
            _ => StopReason::SourceEnded,
        }
    }

    /// Stops (if not stopped yet) and shuts down in order, within the stop's budget.
    pub async fn finish(mut self) -> Result<Finished, PipelineError> {
        // The driver's must be the last references: dropping the capture detaches it.
        self.capture = None;
        self.enforcer = None;
        let _ = self.stop.send(StopReason::FrontEnd);
        self.ended().await;
        match std::mem::replace(&mut self.state, State::Lost) {
            State::Ended(driver) => Ok(driver.shutdown().await),
            _ => Err(PipelineError::Io(io::Error::other(
                "the event pipeline's task ended abnormally",
            ))),
        }
    }
}

/// Where the stages put each analysed event: the JSON front ends write it at once, and it is
/// kept for the queue front ends' shared batch only if there are any.
struct Emit<'a> {
    front_ends: &'a mut Vec<FrontEnd>,
    /// Front ends that failed (a closed stdout), by index; they get nothing more.
    closed: Vec<(usize, Closed)>,
    keep: &'a mut Vec<Event>,
    keep_events: bool,
    count: u64,
}

impl Emit<'_> {
    /// Writes `event` to the front ends that write (`--json`), and moves it out of its slot
    /// into the batch for the queue front ends when there are any.
    fn event(&mut self, event: &mut Event) {
        self.count += 1;
        self.on_open_front_ends(|front| front.write_event(event));
        if self.keep_events {
            let blank = Event::new(EventType::ProcessExec, chrono::DateTime::UNIX_EPOCH);
            self.keep.push(std::mem::replace(event, blank));
        }
    }

    fn end_batch(&mut self) {
        self.on_open_front_ends(FrontEnd::end_batch);
    }

    /// Runs `step` on every front end that has not failed; notes those that fail now.
    fn on_open_front_ends(&mut self, mut step: impl FnMut(&mut FrontEnd) -> Result<(), Closed>) {
        for (index, front) in self.front_ends.iter_mut().enumerate() {
            if has_failed(&self.closed, index) {
                continue;
            }
            if let Err(e) = step(front) {
                self.closed.push((index, e));
            }
        }
    }
}

/// Whether the front end at `index` is among those that failed.
fn has_failed(closed: &[(usize, Closed)], index: usize) -> bool {
    closed.iter().any(|(i, _)| *i == index)
}

/// Runs the driver on a thread of its own, as the runtime's main thread ran `--json`'s loop
/// before: the reader task then has the worker threads to itself. (As a spawned task, tokio's
/// scheduler ran the driver on the reader's worker right after each batch it woke it for,
/// which cost `--json` about half as much CPU again under a flood of opens.)
///
/// The driver is handed back when its loop ends; if nobody takes it (the front end's task
/// panicked or returned early), the thread runs the ordered shutdown itself. The second
/// receiver closes when the thread has ended.
fn spawn_driver(
    driver: Driver,
) -> io::Result<(oneshot::Receiver<Box<Driver>>, std_mpsc::Receiver<()>)> {
    let runtime = Handle::current();
    let (done, ended) = oneshot::channel();
    let (alive, thread_ended) = std_mpsc::sync_channel::<()>(0);
    std::thread::Builder::new()
        .name("secmon-pipeline".into())
        .spawn(move || {
            let _alive = alive;
            let driver = runtime.block_on(driver.run());
            if let Err(driver) = done.send(driver) {
                runtime.block_on(driver.shutdown());
            }
        })?;
    Ok((ended, thread_ended))
}

/// Runs the ordered shutdown of a driver nobody will finish, on a thread of its own (a
/// `Drop` cannot wait for a future); the receiver closes when it is done.
fn shut_down_on_a_thread(driver: Box<Driver>) -> Option<std_mpsc::Receiver<()>> {
    let runtime = Handle::try_current().ok()?;
    let (alive, thread_ended) = std_mpsc::sync_channel::<()>(0);
    std::thread::Builder::new()
        .name("secmon-stop".into())
        .spawn(move || {
            let _alive = alive;
            runtime.block_on(driver.shutdown());
        })
        .ok()?;
    Some(thread_ended)
}

/// A pipeline dropped without [`Pipeline::finish`] (the UI panicked, or a front end's setup
/// failed after the start) still stops in order, and before the caller goes on to drop the
/// runtime: a driver still running when the runtime shuts down panics in its timers, and a
/// second panic message over the first, cut off at exit, left the terminal mid-escape.
impl Drop for Pipeline {
    fn drop(&mut self) {
        self.capture = None;
        self.enforcer = None;
        let _ = self.stop.send(StopReason::FrontEnd);
        let stopping_elsewhere = match std::mem::replace(&mut self.state, State::Lost) {
            State::Running(mut ended) => {
                // Closed first, so the driver is either ours now or the thread's for good.
                ended.close();
                ended.try_recv().ok().and_then(shut_down_on_a_thread)
            }
            State::Ended(driver) => shut_down_on_a_thread(driver),
            State::Lost => None,
        };
        let _ = self.driver_thread.recv_timeout(DROP_WAIT);
        if let Some(stop) = stopping_elsewhere {
            let _ = stop.recv_timeout(DROP_WAIT);
        }
    }
}

/// How long a dropped pipeline waits for its stop: the stop's own budget and a margin.
const DROP_WAIT: Duration = Duration::from_secs(STOP_BUDGET.as_secs() + 2);

/// Once stopping, the last events are processed until then, no longer (the rest is counted
/// as `unprocessed_at_stop`).
pub(super) const LAST_EVENTS_LIMIT: Duration = Duration::from_secs(1);
/// Records processed between two looks at the clock once stopping.
const STOPPING_SLICE: usize = 256;
/// Emptied batch vectors kept for reuse.
const SPARE_BATCHES: usize = 4;
/// Kept for detaching the programs when earlier steps run long.
const DETACH_RESERVE: Duration = Duration::from_millis(1500);

/// SIGINT, SIGTERM and SIGHUP, registered before anything starts.
struct Signals {
    int: Signal,
    term: Signal,
    hup: Signal,
}

impl Signals {
    fn new() -> io::Result<Signals> {
        Ok(Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        })
    }
}

/// A stop under way: its budget, and until when the last events are processed.
struct Stopping {
    reason: StopReason,
    budget: StopBudget,
    last_events_until: tokio::time::Instant,
}

/// The driver task's state: the one owner of the stages.
struct Driver {
    /// Events and batch vectors the front ends gave back, freed (and reused) here.
    returned: mpsc::Receiver<Vec<Event>>,
    /// Emptied batch vectors given back, for the next batches (a few, as a batch may start
    /// before the last one comes back).
    spare: Vec<Vec<Event>>,
    source: Source,
    stages: Stages,
    front_ends: Vec<FrontEnd>,
    control: Option<ControlServer>,
    engine: RuleEngine,
    signals: Signals,
    on_sighup: OnSighup,
    duration: Option<Duration>,
    stop_rx: mpsc::UnboundedReceiver<StopReason>,
    stopping: Option<Stopping>,
    /// Resolves when the JSON output's writer stopped on an error (stdout closed).
    output_stopped: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    reporter: LossReporter,
    drops_reported: u64,
    events: u64,
    error: Option<io::Error>,
    _rules_watcher: Option<RulesWatcher>,
}

impl Driver {
    async fn run(mut self) -> Box<Driver> {
        let duration = self.duration;
        let deadline = async move {
            match duration {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(deadline);
        let mut output_stopped = self.output_stopped.take();
        let mut every_second = tokio::time::interval(Duration::from_secs(1));
        let last_events = tokio::time::sleep(Duration::MAX);
        tokio::pin!(last_events);
        let mut analysed = Vec::with_capacity(MAX_BATCH);
        loop {
            let stopping = self.stopping.is_some();
            let stop = tokio::select! {
                // Stop requests first: under a flood a batch is always ready.
                biased;
                _ = self.signals.int.recv(), if !stopping => Some(StopReason::Signal("SIGINT")),
                _ = self.signals.term.recv(), if !stopping => Some(StopReason::Signal("SIGTERM")),
                _ = self.signals.hup.recv() => match self.on_sighup {
                    OnSighup::Stop if !stopping => Some(StopReason::Signal("SIGHUP")),
                    OnSighup::Stop => None,
                    OnSighup::ReloadRules => {
                        let _ = rules::reload_on_sighup(&self.engine);
                        None
                    }
                },
                _ = &mut deadline, if !stopping => Some(StopReason::Deadline),
                Some(reason) = self.stop_rx.recv(), if !stopping => Some(reason),
                // A backlog longer than LAST_EVENTS_LIMIT is cut short (and counted).
                _ = &mut last_events, if stopping => break,
                // stdout failed or its reader went away (`| head`): stop at once.
                _ = wait_for(&mut output_stopped) => {
                    self.begin_stop(StopReason::FrontEnd);
                    break;
                }
                _ = every_second.tick() => {
                    self.every_second();
                    None
                }
                Some(mut events) = self.returned.recv() => {
                    events.clear();
                    if self.spare.len() < SPARE_BATCHES {
                        self.spare.push(events);
                    }
                    None
                }
                input = self.source.next() => {
                    let more = match input {
                        Input::End => false,
                        input => self.process(input, &mut analysed, last_events.deadline()).await,
                    };
                    if !more {
                        self.begin_stop(StopReason::SourceEnded);
                        break;
                    }
                    None
                }
            };
            if let Some(reason) = stop {
                if self.source.is_replay() {
                    // Nothing to drain: a replay stops at once.
                    self.begin_stop(reason);
                    break;
                }
                self.begin_stop(reason);
                let until = self.stopping.as_ref().map(|s| s.last_events_until);
                if let Some(until) = until {
                    last_events.as_mut().reset(until);
                }
            }
        }
        Box::new(self)
    }

    /// Starts the stop's clock and stops the source (see [`Source::begin_stop`]).
    fn begin_stop(&mut self, reason: StopReason) {
        if self.stopping.is_some() {
            return;
        }
        let budget = StopBudget::start();
        self.source.begin_stop();
        self.stopping = Some(Stopping {
            reason,
            budget,
            last_events_until: tokio::time::Instant::now() + LAST_EVENTS_LIMIT,
        });
    }

    fn reason(&self) -> StopReason {
        self.stopping
            .as_ref()
            .map_or(StopReason::SourceEnded, |s| s.reason.clone())
    }

    /// Runs one input through the stages and hands it on. Once stopping, in slices: the last
    /// events get until `until`, no more, however slow each one is. Returns false when the
    /// output went away.
    async fn process(
        &mut self,
        input: Input,
        analysed: &mut Vec<Event>,
        until: tokio::time::Instant,
    ) -> bool {
        let mut emit = Emit {
            front_ends: &mut self.front_ends,
            closed: Vec::new(),
            keep: analysed,
            keep_events: false,
            count: 0,
        };
        emit.keep_events = emit.front_ends.iter().any(FrontEnd::is_queue);
        match input {
            Input::Records(batch) => {
                let slice = if self.stopping.is_some() {
                    STOPPING_SLICE
                } else {
                    batch.records.len().max(1)
                };
                let mut chunks = batch.records.chunks(slice);
                for chunk in chunks.by_ref() {
                    self.stages
                        .process_records(chunk, &mut |event| emit.event(event));
                    if self.stopping.is_some() && tokio::time::Instant::now() >= until {
                        break;
                    }
                }
                let left: usize = chunks.map(<[_]>::len).sum();
                self.stages.losses.add(Loss::UnprocessedAtStop, left as u64);
            }
            Input::Events(batch) => self
                .stages
                .process_events(batch, &mut |event| emit.event(event)),
            Input::End => {}
        }
        self.stages.end_batch();
        emit.end_batch();
        let Emit { closed, count, .. } = emit;
        self.events += count;
        let open = self.deliver_shared(analysed, closed).await;
        analysed.clear();
        open
    }

    /// Hands the batch to the queue front ends, sharing it (moved out of `analysed`, never
    /// copied); then drops the front ends that went away.
    async fn deliver_shared(
        &mut self,
        analysed: &mut Vec<Event>,
        mut closed: Vec<(usize, Closed)>,
    ) -> bool {
        if !analysed.is_empty() {
            let next = self.spare.pop().unwrap_or_default();
            let batch: Batch = Arc::new(std::mem::replace(analysed, next));
            let wait = self.source.is_replay();
            for (index, front) in self.front_ends.iter_mut().enumerate() {
                if has_failed(&closed, index) {
                    continue;
                }
                if let Err(e) = front
                    .deliver_shared(&batch, wait, &self.stages.losses)
                    .await
                {
                    closed.push((index, e));
                }
            }
        }
        self.remove_closed(closed)
    }

    /// Drops the front ends that went away; false when one of them was the output (stdout
    /// gone ends the run; a view closing, the UI quitting, does not: the history still gets
    /// the last events).
    fn remove_closed(&mut self, mut closed: Vec<(usize, Closed)>) -> bool {
        let mut output_closed = false;
        closed.sort_by_key(|(index, _)| std::cmp::Reverse(*index));
        for (index, Closed(error)) in closed {
            let front = self.front_ends.remove(index);
            output_closed |= !front.is_queue();
            if let Some(e) = error
                && e.kind() != io::ErrorKind::BrokenPipe
            {
                self.error.get_or_insert(e);
            }
        }
        !output_closed
    }

    fn every_second(&mut self) {
        if let Source::Kernel(kernel) = &self.source {
            self.drops_reported =
                report_new_drops(&lock_capture(&kernel.capture), self.drops_reported);
        }
        self.stages.every_second();
        self.record_kernel_losses();
        self.reporter.warn_about_output();
        let records = self.source.records();
        if let Some(output) = json_output_mut(&mut self.front_ends)
            && let Err(e) = self.reporter.write_stats(output, records, false)
        {
            self.error.get_or_insert(e);
        }
    }

    fn record_kernel_losses(&self) {
        if let Source::Kernel(kernel) = &self.source {
            lock_capture(&kernel.capture)
                .kernel_losses()
                .record(&self.stages.losses);
        }
    }

    /// The ordered shutdown: source, final counts, control socket, response layer, kernel
    /// programs, taps, each within what is left of the budget.
    async fn shutdown(mut self: Box<Self>) -> Finished {
        let reason = self.reason();
        let mut budget = match self.stopping.take() {
            Some(stopping) => stopping.budget,
            None => {
                self.source.begin_stop();
                StopBudget::start()
            }
        };
        let losses = self.stages.losses.clone();
        let mut replay = None;
        match &mut self.source {
            Source::Kernel(kernel) => kernel.finish(&mut budget, &losses).await,
            Source::Replay(source) => replay = Some(source.finish(&mut budget).await),
        }
        let unprocessed = losses.get(Loss::UnprocessedAtStop);
        if unprocessed > 0 {
            budget.cut_short(format!(
                "processing the last events ({unprocessed} records not processed)"
            ));
        }
        // The final stats record, then the output drains on its own while the rest stops.
        self.stages.record_losses();
        self.record_kernel_losses();
        let records = match &replay {
            Some(summary) => summary.events,
            None => self.source.records(),
        };
        if let Some(output) = json_output_mut(&mut self.front_ends) {
            if let Err(e) = self.reporter.write_stats(output, records, true) {
                self.error.get_or_insert(e);
            }
            output.close();
        }
        if let Some(control) = self.control.take() {
            control.stop();
        }
        if let Some(responder) = self.stages.responder.take() {
            let responded = finish_response(responder, &mut budget);
            losses.observe(Loss::WebhookQueueFull, responded.webhook.dropped);
        }
        self.record_kernel_losses();
        let Driver {
            source,
            stages,
            front_ends,
            events,
            error,
            ..
        } = *self;
        if let Source::Kernel(kernel) = source {
            // The last reference: detaches every program, deny tables included.
            detach_capture(kernel.capture, &mut budget);
        }
        if let Some(history) = stages.taps.close_within(&mut budget, &losses) {
            record_history_losses(&losses, history);
        }
        if let Some(summary) = &replay {
            report_replay(summary);
        }
        Finished {
            events,
            records,
            losses,
            cut_short: budget.into_cut_short(),
            reason,
            front_ends,
            replay,
            error,
        }
    }
}

fn json_output_mut(front_ends: &mut [FrontEnd]) -> Option<&mut JsonOutput> {
    front_ends.iter_mut().find_map(|front| match front {
        FrontEnd::Json(output) => Some(output),
        _ => None,
    })
}

/// Waits for an optional future; never resolves without one (nor once it has).
async fn wait_for(future: &mut Option<Pin<Box<dyn Future<Output = ()> + Send>>>) {
    match future {
        Some(f) => {
            f.as_mut().await;
            *future = None;
        }
        None => std::future::pending().await,
    }
}

/// Lets the response layer finish (logs, webhook) within the budget, keeping time for the
/// detach; its summary line, if any, is reported.
fn finish_response(
    responder: Responder,
    budget: &mut StopBudget,
) -> crate::response::ResponseStats {
    let grace = budget.step(Duration::from_secs(2), DETACH_RESERVE);
    let stats = responder.finish(grace);
    if let Some(line) = stats.summary() {
        notice::info(line);
    }
    stats
}

/// Drops the last reference to the capture, which detaches and unloads every program, within
/// the stop's budget (the kernel waits an RCU grace period per tracepoint, longer under load).
/// How long it took is said, so a slow stop can be told apart from a stalled output.
fn detach_capture(capture: SharedCapture, budget: &mut StopBudget) {
    let limit = budget.remaining().max(Duration::from_millis(500));
    let detaching = Instant::now();
    if crate::shutdown::drop_within(capture, "secmon-detach", limit) {
        notice::info(format!(
            "probes detached in {} ms",
            detaching.elapsed().as_millis()
        ));
    } else {
        budget.cut_short("detaching the programs (the kernel finishes it as the process exits)");
    }
}
