//! Wires the stages together for headless (`--json`) mode:
//! capture → reader task → enrich → analysis → JSON lines, with clean shutdown on a signal or
//! after `--duration`, draining and flushing everything already captured.
use std::{
    io::{self, Write},
    path::PathBuf,
    sync::{Arc, Mutex, atomic::Ordering},
    time::{Duration, Instant},
};

use tokio::{
    signal::unix::{SignalKind, signal},
    sync::{mpsc, watch},
};

use crate::{
    analysis::Analyzer,
    capture::{Capture, CaptureError, CaptureOptions, enforce::EnforceError, reader},
    config::Config,
    decode::Record,
    enrich::Enricher,
    event::Event,
    losses::{Loss, LossCounts, Losses},
    output::{
        json::{JsonLines, JsonOutput, OutputOptions, OutputSummary},
        stats::StatsRecord,
    },
    record::{RecordError, Recorder, Replay},
    response::{
        Responder, ResponseError,
        control::ControlServer,
        enforce::{SharedCapture, lock_capture},
    },
    rules::{self, RuleEngine},
    shutdown::{StopBudget, cut_short_suffix},
    storage::{Retention, Store, StoreSummary, WriterOptions},
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

/// Starts the capture and prints the start-up report on stderr: unavailable probe groups, the
/// one `secmon: ready` line tests wait for, then what runs.
pub fn start_capture(
    config: &Config,
    options: &RunOptions,
) -> Result<(Capture, aya::maps::RingBuf<aya::maps::MapData>), CaptureError> {
    let (capture, ring) = open_capture(config, options)?;
    report_ready(&capture, &[]);
    Ok((capture, ring))
}

/// A started monitor: the capture (shared with the response layer and the control socket),
/// its ring buffer, the response layer, and the control socket when `enforce` is on.
pub struct Started {
    pub capture: SharedCapture,
    pub ring: aya::maps::RingBuf<aya::maps::MapData>,
    pub responder: Responder,
    pub control: Option<ControlServer>,
}

/// [`start_capture`] plus the response layer: with `[response] enforce = true` the connect
/// programs are attached and the control socket is listening before `secmon: ready`.
pub fn start_with_response(
    config: &Config,
    options: &RunOptions,
) -> Result<Started, PipelineError> {
    let (mut capture, ring) = open_capture(config, options)?;
    let enforce = config.response.enforce;
    if enforce {
        capture.enable_enforcement()?;
    }
    let capture = Arc::new(Mutex::new(capture));
    let responder = Responder::new(&config.response, enforce.then(|| capture.clone()))?;
    let control = match responder.enforcer() {
        Some(enforcer) => Some(
            ControlServer::start(&config.response.control_socket, enforcer.clone())
                .map_err(ResponseError::from)?,
        ),
        None => None,
    };
    let mut extra = vec![format!("secmon: response: {}", responder.describe())];
    if let Some(control) = &control {
        extra.push(format!(
            "secmon: control socket: {}",
            control.path().display()
        ));
    }
    report_ready(&lock_capture(&capture), &extra);
    Ok(Started {
        capture,
        ring,
        responder,
        control,
    })
}

fn open_capture(
    config: &Config,
    options: &RunOptions,
) -> Result<(Capture, aya::maps::RingBuf<aya::maps::MapData>), CaptureError> {
    let mut capture_options = CaptureOptions {
        enabled: config.monitoring.enabled_families(),
        ..CaptureOptions::default()
    };
    if let Some(bytes) = options.ring_bytes {
        capture_options.ring_bytes = bytes;
    }
    Capture::start(&capture_options)
}

/// Unavailable probe groups, `secmon: ready`, the probe summary, then `extra` lines.
fn report_ready(capture: &Capture, extra: &[String]) {
    let mut stderr = io::stderr().lock();
    for group in capture.report().unavailable() {
        let _ = writeln!(
            stderr,
            "secmon: probe family {}/{} unavailable: {}",
            group.family,
            group.group,
            group.unavailable.as_deref().unwrap_or("")
        );
    }
    if let Some(reason) = &capture.report().raw_entry_fallback {
        let _ = writeln!(
            stderr,
            "secmon: syscall entries followed on the raw sys_enter tracepoint (every syscall \
             pays for it) because per-syscall tracepoints are unavailable: {reason}"
        );
    }
    let _ = writeln!(stderr, "secmon: ready");
    for line in capture.report().summary_lines() {
        let _ = writeln!(stderr, "secmon: probes {line}");
    }
    for line in extra {
        let _ = writeln!(stderr, "{line}");
    }
}

/// How long the JSON output may take, once the pipeline has stopped, to write what is queued:
/// a stalled stdout must not hold up the stop (what it could not take is counted).
const OUTPUT_GRACE: Duration = Duration::from_millis(250);

pub async fn run_json<W: Write + Send + 'static>(
    config: &Config,
    options: &RunOptions,
    out: W,
) -> Result<RunSummary, PipelineError> {
    // Signal handlers first: a SIGTERM right after `secmon: ready` must stop us cleanly.
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let engine = options.rules.clone().unwrap_or_else(RuleEngine::empty);
    // Watching before `secmon: ready`: a rule file saved right after it is reloaded.
    let _rules_watcher = watch_rules(&engine);
    let losses = Arc::new(Losses::new());
    let mut taps = Taps::open(options)?;
    let Started {
        capture,
        ring,
        mut responder,
        control,
    } = start_with_response(config, options)?;
    let (batch_tx, mut batch_rx) = mpsc::channel::<Vec<Record>>(CHANNEL_BATCHES);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let stats = Arc::new(reader::ReaderStats::new(losses.clone()));
    let ring_bytes = lock_capture(&capture).ring_bytes();
    let reader_task = tokio::spawn(reader::run(
        ring,
        ring_bytes,
        batch_tx,
        shutdown_rx,
        stats.clone(),
    ));

    let mut enricher = Enricher::new();
    let mut analyzer = Analyzer::new(engine.clone(), &config.threat_detection);
    let mut output = JsonOutput::start(out, OutputOptions::default(), losses.clone())?;
    let mut reporter = LossReporter::new(losses.clone());
    let deadline = async {
        match options.duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let mut drop_check = tokio::time::interval(Duration::from_secs(1));
    let mut drops_reported = 0;
    // Set when a stop is asked for: the whole shutdown must fit in its budget.
    let mut budget: Option<StopBudget> = None;
    // Armed when the stop begins: the last events are processed until then, no longer.
    let drain_timer = tokio::time::sleep(Duration::MAX);
    tokio::pin!(drain_timer);
    loop {
        let stopping = budget.is_some();
        tokio::select! {
            // Stop requests first: under a flood a batch is always ready.
            biased;
            _ = sigint.recv(), if !stopping => {
                budget = Some(begin_stop(&capture, &shutdown_tx, drain_timer.as_mut()));
            }
            _ = sigterm.recv(), if !stopping => {
                budget = Some(begin_stop(&capture, &shutdown_tx, drain_timer.as_mut()));
            }
            _ = &mut deadline, if !stopping => {
                budget = Some(begin_stop(&capture, &shutdown_tx, drain_timer.as_mut()));
            }
            // A backlog longer than LAST_EVENTS_LIMIT is cut short (and counted).
            _ = &mut drain_timer, if stopping => break,
            // stdout failed or its reader went away (`| head`): stop.
            _ = output.stopped() => break,
            _ = sighup.recv() => { let _ = rules::reload_on_sighup(&engine); }
            _ = drop_check.tick() => {
                drops_reported = report_new_drops(&lock_capture(&capture), drops_reported);
                responder.tick();
                taps.report();
                reporter.gather(&LossSources {
                    capture: &lock_capture(&capture),
                    enricher: &enricher,
                    taps: &taps,
                    responder: &responder,
                });
                reporter.write_stats(&mut output, stats.records.load(Ordering::Relaxed), false)?;
            }
            batch = batch_rx.recv() => {
                let Some(batch) = batch else { break };
                // Once stopping, in slices: the last events get until the drain timer, no
                // more, however slow each one is.
                let slice = if stopping { STOPPING_SLICE } else { batch.len().max(1) };
                let mut chunks = batch.chunks(slice);
                for chunk in chunks.by_ref() {
                    let stages = Stages {
                        enricher: &mut enricher,
                        analyzer: &mut analyzer,
                        responder: &mut responder,
                    };
                    write_batch(chunk, stages, &mut output, &mut taps)?;
                    if stopping && drain_timer.is_elapsed() {
                        break;
                    }
                }
                let left: usize = chunks.map(<[Record]>::len).sum();
                if left > 0 {
                    losses.add(Loss::UnprocessedAtStop, left as u64);
                    break;
                }
            }
        }
    }
    let mut budget = budget.unwrap_or_else(|| {
        lock_capture(&capture).begin_stop();
        StopBudget::start()
    });
    let _ = shutdown_tx.send(true);
    // Records the deadline left unprocessed; the reader counts the batch it could not hand over.
    batch_rx.close();
    while let Ok(batch) = batch_rx.try_recv() {
        losses.add(Loss::UnprocessedAtStop, batch.len() as u64);
    }
    if tokio::time::timeout(budget.remaining(), reader_task)
        .await
        .is_err()
    {
        budget.cut_short("the ring buffer reader");
    }
    drop(batch_rx);
    if stats.stop_drain_cut_short.load(Ordering::Relaxed) {
        budget.cut_short("the last drain of the ring buffer");
    }
    let unprocessed = losses.get(Loss::UnprocessedAtStop);
    if unprocessed > 0 {
        budget.cut_short(format!(
            "processing the last events ({unprocessed} records not processed)"
        ));
    }
    // The final stats record, then the output drains on its own while the rest stops.
    reporter.gather(&LossSources {
        capture: &lock_capture(&capture),
        enricher: &enricher,
        taps: &taps,
        responder: &responder,
    });
    let records = stats.records.load(Ordering::Relaxed);
    reporter.write_stats(&mut output, records, true)?;
    output.close();
    if let Some(control) = control {
        control.stop();
    }
    let responded = finish_response(responder, &mut budget);
    losses.observe(Loss::WebhookQueueFull, responded.webhook.dropped);
    lock_capture(&capture).kernel_losses().record(&losses);
    // The last reference: detaches every program, deny tables included.
    detach_capture(capture, &mut budget);
    if let Some(history) = taps.close_within(&mut budget) {
        record_history_losses(&losses, history);
    }
    let written = output.finish(OUTPUT_GRACE).await;
    report_output_losses(&written);
    match written.error {
        Some(e) if e.kind() != io::ErrorKind::BrokenPipe => return Err(e.into()),
        _ => {}
    }
    Ok(RunSummary {
        events: written.written,
        records,
        losses: losses.snapshot(),
        cut_short: budget.into_cut_short(),
    })
}

/// Starts the stop's clock, stops the kernel side from reporting (see
/// [`Capture::begin_stop`]) and asks the reader for its last drain: what it hands on is
/// processed until [`LAST_EVENTS_LIMIT`], no longer.
fn begin_stop(
    capture: &SharedCapture,
    shutdown: &watch::Sender<bool>,
    drain_timer: std::pin::Pin<&mut tokio::time::Sleep>,
) -> StopBudget {
    let budget = StopBudget::start();
    lock_capture(capture).begin_stop();
    let _ = shutdown.send(true);
    drain_timer.reset(tokio::time::Instant::now() + LAST_EVENTS_LIMIT);
    budget
}

/// Records processed between two looks at the clock once stopping.
const STOPPING_SLICE: usize = 256;

/// How long a stop may spend on what was captured before it (the ring drained, its records
/// enriched, analysed and written); what a longer backlog leaves is counted
/// ([`Loss::UnprocessedAtStop`]) and named in the stopped line.
pub(crate) const LAST_EVENTS_LIMIT: Duration = Duration::from_secs(1);

/// Lets the response layer finish (the webhook's queue, the logs) within the stop's budget.
pub(crate) fn finish_response(
    responder: Responder,
    budget: &mut StopBudget,
) -> crate::response::ResponseStats {
    let grace = budget.step(Duration::from_secs(2), DETACH_RESERVE);
    let stats = responder.finish(grace);
    if let Some(line) = stats.summary() {
        eprintln!("{line}");
    }
    stats
}

/// Kept for detaching the programs when earlier steps run long.
const DETACH_RESERVE: Duration = Duration::from_millis(1500);

/// Drops the last reference to the capture, which detaches and unloads every program, within
/// the stop's budget (the kernel waits an RCU grace period per tracepoint, longer under load).
/// How long it took is said, so a slow stop can be told apart from a stalled output.
pub(crate) fn detach_capture(capture: SharedCapture, budget: &mut StopBudget) {
    let limit = budget.remaining().max(Duration::from_millis(500));
    let detaching = Instant::now();
    if crate::shutdown::drop_within(capture, "secmon-detach", limit) {
        eprintln!(
            "secmon: probes detached in {} ms",
            detaching.elapsed().as_millis()
        );
    } else {
        budget.cut_short("detaching the programs (the kernel finishes it as the process exits)");
    }
}

/// Where losses are counted besides the stages that add to [`Losses`] themselves.
pub(crate) struct LossSources<'a> {
    pub capture: &'a Capture,
    pub enricher: &'a Enricher,
    pub taps: &'a Taps,
    pub responder: &'a Responder,
}

impl LossSources<'_> {
    /// Copies every source's totals into `losses`.
    pub fn record(&self, losses: &Losses) {
        self.capture.kernel_losses().record(losses);
        self.enricher.record_losses(losses);
        self.taps.record_losses(losses);
        losses.observe(
            Loss::WebhookQueueFull,
            self.responder.stats().webhook.dropped,
        );
    }
}

/// Gathers the losses once a second, warns on stderr about new output losses, and writes the
/// `stats` records of the JSON stream.
struct LossReporter {
    losses: Arc<Losses>,
    started: Instant,
    /// What the last `stats` record said (events, records, losses): none is written again
    /// until something changed.
    last_written: Option<(u64, u64, LossCounts)>,
    output_reported: u64,
}

impl LossReporter {
    fn new(losses: Arc<Losses>) -> LossReporter {
        LossReporter {
            losses,
            started: Instant::now(),
            last_written: None,
            output_reported: 0,
        }
    }

    fn gather(&mut self, sources: &LossSources<'_>) {
        sources.record(&self.losses);
        let output = self.losses.get(Loss::OutputQueueFull);
        if output > self.output_reported {
            eprintln!(
                "secmon: warning: {} events not written (stdout is not keeping up; they were \
                 still analysed, responded to and stored)",
                output - self.output_reported
            );
            self.output_reported = output;
        }
    }

    /// Queues a `stats` record when anything changed since the last one (always when `last`).
    fn write_stats(&mut self, output: &mut JsonOutput, records: u64, last: bool) -> io::Result<()> {
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

/// Output losses at the very end (stdout stalled at stop), which no `stats` record can carry.
fn report_output_losses(output: &OutputSummary) {
    if output.unwritten > 0 {
        eprintln!(
            "secmon: warning: {} events were still queued for stdout at stop and were not \
             written (stdout stalled)",
            output.unwritten
        );
    }
}

/// Reloads the rules when their files change; without a watcher, SIGHUP still reloads.
pub(crate) fn watch_rules(engine: &RuleEngine) -> Option<rules::RulesWatcher> {
    if engine.dirs().is_empty() {
        return None;
    }
    rules::watch(engine.clone())
        .map_err(|e| eprintln!("secmon: warning: {e}; rules reload on SIGHUP only"))
        .ok()
}

/// Overload is visible at once on stderr, not only in the final summary.
fn report_new_drops(capture: &Capture, already_reported: u64) -> u64 {
    let total = capture.total_drops();
    if total > already_reported {
        eprintln!(
            "secmon: warning: {} events dropped in the kernel (ring buffer full; consumer too \
             slow or burst too large, see --ring-buffer-mib)",
            total - already_reported
        );
    }
    total
}

/// The stages an event goes through between decoding and output.
struct Stages<'a> {
    enricher: &'a mut Enricher,
    analyzer: &'a mut Analyzer,
    responder: &'a mut Responder,
}

fn write_batch(
    batch: &[Record],
    Stages {
        enricher,
        analyzer,
        responder,
    }: Stages<'_>,
    output: &mut JsonOutput,
    taps: &mut Taps,
) -> io::Result<()> {
    for record in batch {
        if let Some(mut event) = enricher.process(record) {
            taps.record(&event);
            let outcome = analyzer.analyze(&mut event);
            responder.respond_analyzed(&mut event, &outcome);
            output.write(&event)?;
            taps.store(&event);
        }
    }
    output.end_batch();
    responder.flush();
    taps.end_batch();
    Ok(())
}

/// What happens to every event besides its output: the recording (`--record`, taken before
/// analysis) and the history (`[storage]`, after analysis and response). Used by `--json`,
/// replay and the TUI alike. Neither ever stops the monitor: a recording that fails to write
/// stops with a warning, and the history drops (and reports) what its writer cannot take.
pub struct Taps {
    recorder: Option<Recorder>,
    store: Option<Store>,
    pending: Vec<Event>,
}

impl Taps {
    /// Creates the recording (an error if it cannot be: it was asked for explicitly) and
    /// opens the history (if it cannot be, a warning says so and monitoring goes on).
    pub fn open(options: &RunOptions) -> Result<Taps, PipelineError> {
        let recorder = match &options.record {
            Some(path) => {
                let recorder = Recorder::create(path)?;
                eprintln!("secmon: recording to {}", path.display());
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
            pending: Vec::new(),
        })
    }

    /// No recording, no history.
    pub fn none() -> Taps {
        Taps {
            recorder: None,
            store: None,
            pending: Vec::new(),
        }
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
            self.pending.push(event.clone());
        }
    }

    /// Call after each batch: flushes the recording, hands the batch to the history writer.
    pub fn end_batch(&mut self) {
        if let Some(recorder) = &mut self.recorder
            && let Err(e) = recorder.flush()
        {
            self.stop_recording(&e);
        }
        if let Some(store) = &self.store
            && !self.pending.is_empty()
        {
            store.submit(std::mem::take(&mut self.pending));
        }
    }

    fn stop_recording(&mut self, error: &io::Error) {
        if let Some(recorder) = self.recorder.take() {
            eprintln!(
                "secmon: warning: recording to {} stopped after {} events: {error}",
                recorder.path().display(),
                recorder.events()
            );
        }
    }

    /// Prints new history warnings (drops, failed writes); call about once a second.
    pub fn report(&mut self) {
        if let Some(store) = &mut self.store {
            for line in store.take_report() {
                eprintln!("secmon: {line}");
            }
        }
    }

    /// Copies the history's losses so far into `losses`.
    pub fn record_losses(&self, losses: &Losses) {
        if let Some(store) = &self.store {
            record_history_losses(losses, store.summary());
        }
    }

    /// Finishes the recording and lets the history writer commit what is queued; returns the
    /// history's counts (when it was on).
    pub fn close_within(mut self, budget: &mut StopBudget) -> Option<StoreSummary> {
        self.end_batch();
        if let Some(recorder) = self.recorder.take() {
            let path = recorder.path().to_path_buf();
            match recorder.finish() {
                Ok(n) => eprintln!("secmon: recorded {n} events to {}", path.display()),
                Err(e) => eprintln!("secmon: warning: finishing {}: {e}", path.display()),
            }
        }
        let mut store = self.store.take()?;
        for line in store.take_report() {
            eprintln!("secmon: {line}");
        }
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
            eprintln!(
                "secmon: history: {} events stored in {path}, {lost} not stored",
                s.stored
            );
        } else {
            eprintln!("secmon: history: {} events stored in {path}", s.stored);
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
            eprintln!("secmon: history: {} ({kept})", settings.path.display());
            Some(store)
        }
        Err(e) => {
            eprintln!(
                "secmon: warning: history disabled: {e}; monitoring goes on without storing events"
            );
            None
        }
    }
}

/// `--replay FILE --json`: the recording's events, at its pace (or `--speed max`), through the
/// current rules into JSON lines. No capture, no root. Stops at the end of the recording, on
/// SIGINT/SIGTERM, after `--duration`, or when stdout closes. With `--speed max` the output
/// depends only on the recording and the rules.
pub async fn run_replay_json<W: Write>(
    config: &Config,
    options: &RunOptions,
    replay: Replay,
    out: W,
) -> Result<RunSummary, PipelineError> {
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut taps = Taps::open(options)?;
    let engine = options.rules.clone().unwrap_or_else(RuleEngine::empty);
    let mut analyzer = Analyzer::new(engine, &config.threat_detection);
    let mut sink = JsonLines::new(out);
    let mut summary = RunSummary::default();
    let (events_tx, mut events_rx) = mpsc::channel::<Vec<Event>>(CHANNEL_BATCHES);
    let feeder = tokio::spawn(crate::record::feed(replay, events_tx));
    let deadline = async {
        match options.duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let mut report = tokio::time::interval(Duration::from_secs(1));
    let mut result = Ok(());
    loop {
        tokio::select! {
            batch = events_rx.recv() => {
                let Some(batch) = batch else { break };
                match write_events(batch, &mut analyzer, &mut sink, &mut taps) {
                    Ok(n) => summary.events += n,
                    Err(e) if e.kind() == io::ErrorKind::BrokenPipe => break,
                    Err(e) => { result = Err(e); break; }
                }
            }
            _ = report.tick() => taps.report(),
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            _ = &mut deadline => break,
        }
    }
    drop(events_rx);
    let mut budget = StopBudget::start();
    let replayed = match tokio::time::timeout(budget.remaining(), feeder).await {
        Ok(done) => done.unwrap_or_default(),
        Err(_) => {
            budget.cut_short("reading the recording");
            crate::record::ReplaySummary::default()
        }
    };
    taps.close_within(&mut budget);
    summary.cut_short = budget.into_cut_short();
    result?;
    match sink.flush() {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => return Err(e.into()),
        _ => {}
    }
    if let Some(error) = replayed.error {
        // The message may quote the recording's text.
        eprintln!("secmon: warning: {}", crate::sanitize::for_terminal(&error));
    }
    if replayed.clamped > 0 {
        eprintln!(
            "secmon: warning: {} replayed events had fields longer than live capture allows; \
             they were cut and marked truncated",
            replayed.clamped
        );
    }
    summary.records = replayed.events;
    Ok(summary)
}

/// Analyses replayed events and writes them (the replay's `write_batch`).
fn write_events<W: Write>(
    batch: Vec<Event>,
    analyzer: &mut Analyzer,
    sink: &mut JsonLines<W>,
    taps: &mut Taps,
) -> io::Result<u64> {
    let mut written = 0;
    for mut event in batch {
        taps.record(&event);
        analyzer.analyze(&mut event);
        sink.write(&event)?;
        taps.store(&event);
        written += 1;
    }
    sink.flush()?;
    taps.end_batch();
    Ok(written)
}
