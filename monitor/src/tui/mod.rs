//! The terminal UI's event loop and terminal hygiene.
//!
//! [`run`] starts the capture and the response layer (as `--json` mode does), then one
//! `tokio::select!` loop feeds the single [`App`] from its sources, keys first: crossterm
//! input, SIGINT/SIGTERM/SIGHUP (which quit), a ~33 ms tick that redraws only when something
//! changed, stderr lines, and batches of kernel records (enriched, analysed and responded to in
//! the loop, as `--json` mode does). The ring buffer reader is its own task, so drawing never
//! holds up capture: under a flood the channel pushes back, the kernel ring fills and the
//! kernel's drop counter (shown in the header) tells of it. [`run_replay`] runs the same loop
//! over a recording instead: no root, no eBPF, the probe and enforcement keys say so.
//!
//! [`controls`] connects the UI's keys to the real thing: probe switches, blocking through the
//! response layer's enforcer, the history database.
//!
//! Terminal hygiene: [`TerminalGuard`] enters raw mode and the alternate screen and leaves
//! both on drop; a panic hook restores the terminal before the panic is printed. While the UI
//! runs, secmon's own stderr (warnings, the rule watcher's reload reports) is captured into
//! the status line instead of being written over the screen.
use std::{
    fs::File,
    io::{self, BufRead, BufReader, Stdout, Write},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicI32, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use chrono::{Local, Offset, Utc};
use crossterm::{
    cursor::{Hide, Show},
    event::EventStream,
    execute,
    terminal::{EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode},
};
use futures::StreamExt;
use ratatui::{Terminal, backend::CrosstermBackend};
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::{mpsc, watch},
};

pub mod controls;

use crate::{
    analysis::Analyzer,
    app::{
        self, App, Controls, ENFORCE_OFF, HistorySource, NoHistory, ReplayProbes, Response,
        SimulatedResponse, StatusKind, Theme,
    },
    capture::reader,
    config::Config,
    decode::Record,
    enrich::Enricher,
    event::Event as SecEvent,
    losses::{Loss, Losses},
    pipeline::{self, PipelineError, RunOptions, RunSummary, Started, Taps},
    record::{Replay, ReplaySummary},
    response::{Responder, simulate::Allowlist},
    rules::RuleEngine,
    shutdown::StopBudget,
    ui,
};
use controls::{EnforcingResponse, StoredHistory};

/// Records enriched, analysed and stored between two looks at the keyboard (a few ms of work;
/// a whole reader batch can take tens of ms under a flood).
const SLICE: usize = 256;
/// Redraw period: at most ~30 frames a second, and only when something changed.
pub const FRAME: Duration = Duration::from_millis(33);
/// stderr lines waiting for the UI (more are dropped).
const LOG_LINES: usize = 64;
/// How long shutting down may wait for the reader task.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(3);

/// Whether the terminal is in raw mode / the alternate screen (so restoring is idempotent).
static TERMINAL_ACTIVE: AtomicBool = AtomicBool::new(false);
/// The real stderr while it is redirected to the status line (-1: not redirected).
static SAVED_STDERR: AtomicI32 = AtomicI32::new(-1);

/// Leaves the alternate screen and raw mode and shows the cursor. Safe to call more than once
/// and from a panic hook; errors are ignored (the terminal may be gone after a hang-up).
pub fn restore_terminal() {
    if TERMINAL_ACTIVE.swap(false, Ordering::SeqCst) {
        let mut out = io::stdout();
        let _ = execute!(out, LeaveAlternateScreen, Show);
        let _ = disable_raw_mode();
        let _ = out.flush();
    }
}

/// Puts the real stderr back (idempotent).
fn restore_stderr() {
    let saved = SAVED_STDERR.swap(-1, Ordering::SeqCst);
    if saved >= 0 {
        // SAFETY: `saved` is a descriptor we duplicated and own; dup2 and close have no
        // memory-safety preconditions.
        unsafe {
            libc::dup2(saved, libc::STDERR_FILENO);
            libc::close(saved);
        }
    }
}

/// Raw mode and the alternate screen for as long as it lives.
pub struct TerminalGuard {
    pub terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl TerminalGuard {
    pub fn enter() -> io::Result<TerminalGuard> {
        install_panic_hook();
        enable_raw_mode()?;
        TERMINAL_ACTIVE.store(true, Ordering::SeqCst);
        let mut out = io::stdout();
        if let Err(e) = execute!(out, EnterAlternateScreen, Hide) {
            restore_terminal();
            return Err(e);
        }
        match Terminal::new(CrosstermBackend::new(io::stdout())) {
            Ok(mut terminal) => {
                let _ = terminal.clear();
                Ok(TerminalGuard { terminal })
            }
            Err(e) => {
                restore_terminal();
                Err(e)
            }
        }
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// Restores the terminal (and stderr) before the previous hook prints the panic.
fn install_panic_hook() {
    static INSTALLED: AtomicBool = AtomicBool::new(false);
    if INSTALLED.swap(true, Ordering::SeqCst) {
        return;
    }
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore_terminal();
        restore_stderr();
        previous(info);
    }));
}

/// Sends what is written to stderr to the UI, line by line, until dropped.
struct StderrCapture;

impl StderrCapture {
    fn start(lines: mpsc::Sender<String>) -> io::Result<StderrCapture> {
        let mut fds = [0; 2];
        // SAFETY: `fds` is a valid array of two descriptors for pipe2 to fill.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded: both descriptors are open and owned by nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: F_DUPFD_CLOEXEC on stderr has no memory-safety preconditions.
        let saved = unsafe { libc::fcntl(libc::STDERR_FILENO, libc::F_DUPFD_CLOEXEC, 3) };
        if saved < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both descriptors are open.
        if unsafe { libc::dup2(write.as_raw_fd(), libc::STDERR_FILENO) } < 0 {
            let error = io::Error::last_os_error();
            // SAFETY: `saved` is ours.
            unsafe { libc::close(saved) };
            return Err(error);
        }
        SAVED_STDERR.store(saved, Ordering::SeqCst);
        drop(write);
        let spawned = thread::Builder::new()
            .name("secmon-stderr".to_string())
            .spawn(move || {
                let reader = BufReader::new(File::from(read));
                for line in reader.split(b'\n') {
                    let Ok(line) = line else { break };
                    // A full queue drops the line rather than blocking a writer.
                    let _ = lines.try_send(String::from_utf8_lossy(&line).into_owned());
                }
            });
        if let Err(e) = spawned {
            restore_stderr();
            return Err(e);
        }
        Ok(StderrCapture)
    }
}

impl Drop for StderrCapture {
    fn drop(&mut self) {
        // The reader thread sees end-of-file once fd 2 no longer points at the pipe.
        restore_stderr();
    }
}

/// Enrichment, analysis, response and the taps (recording, history), run inside the UI loop
/// as `--json` mode runs them inside its own: the reader task keeps a worker to itself, and
/// every event is allocated, kept and freed by one thread. (A separate analysis task, tried
/// under the same load, read fewer records and dropped more.)
struct Stages {
    enricher: Enricher,
    analyzer: Analyzer,
    /// The response layer (a live capture only: replays are not responded to).
    responder: Option<Responder>,
    taps: Taps,
    /// Shared with the reader and the app; the enricher's, the history's and the webhook's
    /// counts are copied in once a second.
    losses: Arc<Losses>,
    last_report: Instant,
}

impl Stages {
    fn new(
        config: &Config,
        engine: &RuleEngine,
        responder: Option<Responder>,
        taps: Taps,
        losses: Arc<Losses>,
    ) -> Stages {
        Stages {
            enricher: Enricher::new(),
            analyzer: Analyzer::new(engine.clone(), &config.threat_detection),
            responder,
            taps,
            losses,
            last_report: Instant::now(),
        }
    }

    /// Copies the losses counted by the stages themselves into the shared counters.
    fn record_losses(&self) {
        self.enricher.record_losses(&self.losses);
        self.taps.record_losses(&self.losses);
        if let Some(responder) = &self.responder {
            self.losses
                .observe(Loss::WebhookQueueFull, responder.stats().webhook.dropped);
        }
    }

    /// Appends the events of `records` (a slice of a reader batch) to `analysed` (a buffer
    /// reused from slice to slice). The caller ends the batch ([`Stages::end_batch`]).
    fn process_records(&mut self, records: &[Record], analysed: &mut Vec<SecEvent>) {
        for record in records {
            if let Some(event) = self.enricher.process(record) {
                self.analyse(event, analysed);
            }
        }
    }

    /// A replayed batch: the events are enriched already.
    fn process_events(&mut self, batch: Vec<SecEvent>, analysed: &mut Vec<SecEvent>) {
        for event in batch {
            self.analyse(event, analysed);
        }
        self.end_batch();
    }

    fn analyse(&mut self, mut event: SecEvent, analysed: &mut Vec<SecEvent>) {
        self.taps.record(&event);
        let outcome = self.analyzer.analyze(&mut event);
        if let Some(responder) = &mut self.responder {
            responder.respond_analyzed(&mut event, &outcome);
        }
        self.taps.store(&event);
        analysed.push(event);
    }

    /// Hands the batch to the history and flushes the response logs: once per reader batch,
    /// not per slice.
    fn end_batch(&mut self) {
        self.taps.end_batch();
        if let Some(responder) = &mut self.responder {
            responder.flush();
        }
    }

    /// Once a second: expiring deny entries, the webhook's and the history's warnings (to
    /// stderr, that is to the status line).
    fn every_second(&mut self) {
        if self.last_report.elapsed() < Duration::from_secs(1) {
            return;
        }
        self.last_report = Instant::now();
        if let Some(responder) = &mut self.responder {
            responder.tick();
        }
        self.taps.report();
        self.record_losses();
    }
}

/// Why the loop ended.
enum Stop {
    Quit,
    Signal(&'static str),
    Duration,
    InputClosed(String),
    PipelineEnded,
}

/// Where the events come from: the kernel (through the reader task) or a recording.
struct Sources {
    records: Option<mpsc::Receiver<Vec<Record>>>,
    replayed: Option<mpsc::Receiver<Vec<SecEvent>>>,
    /// Pages of the history view's queries.
    history: mpsc::UnboundedReceiver<app::HistoryReply>,
    /// The task feeding `replayed`, and what it said when it ended.
    replay_task: Option<tokio::task::JoinHandle<ReplaySummary>>,
    replay_summary: Option<ReplaySummary>,
}

/// The next message of an optional channel; never ready without one.
async fn recv_from<T>(rx: &mut Option<mpsc::Receiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The history view's source: a reader of the database the monitor writes (or `--db`),
/// whose pages come back on `replies`.
fn history_source(
    options: &RunOptions,
    why_not: &str,
    replies: mpsc::UnboundedSender<app::HistoryReply>,
) -> Box<dyn HistorySource> {
    match &options.storage {
        Some(storage) if storage.enabled => Box::new(StoredHistory::start(&storage.path, replies)),
        _ => Box::new(NoHistory(why_not.to_string())),
    }
}

/// Runs the terminal UI over the live capture until `q`, Ctrl-C, a signal or `--duration`.
/// Returns the same counts as `--json` mode, printed by the caller once the terminal is back
/// to normal.
pub async fn run(config: &Config, options: &RunOptions) -> Result<RunSummary, PipelineError> {
    // Signal handlers first: a SIGTERM or SIGHUP during start-up must stop us cleanly.
    let signals = Signals::new()?;
    let taps = Taps::open(options)?;
    let Started {
        capture,
        ring,
        responder,
        control,
    } = pipeline::start_with_response(config, options)?;
    let (record_tx, record_rx) = mpsc::channel::<Vec<Record>>(pipeline::CHANNEL_BATCHES);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let losses = Arc::new(Losses::new());
    let stats = Arc::new(reader::ReaderStats::new(losses.clone()));
    let ring_bytes = crate::response::enforce::lock_capture(&capture).ring_bytes();
    let reader_task = tokio::spawn(reader::run(
        ring,
        ring_bytes,
        record_tx,
        shutdown_rx,
        stats.clone(),
    ));

    let engine = options.rules.clone().unwrap_or_else(RuleEngine::empty);
    let (history_tx, history_rx) = mpsc::unbounded_channel();
    let response: Box<dyn Response> = match responder.enforcer() {
        Some(enforcer) => Box::new(EnforcingResponse::new(enforcer.clone())),
        // The protected set too, so that `b` shows what enforcement would really do.
        None => Box::new(SimulatedResponse::new(
            Allowlist::system(&config.response.allowlist),
            ENFORCE_OFF,
        )),
    };
    let mut stages = Stages::new(config, &engine, Some(responder), taps, losses.clone());
    let controls = Controls {
        probes: Box::new(capture.clone()),
        rules: Box::new(engine.clone()),
        response,
        history: history_source(
            options,
            "the history is off: [storage] enabled = false (--db PATH turns it on)",
            history_tx,
        ),
        losses: losses.clone(),
    };
    let mut sources = Sources {
        records: Some(record_rx),
        replayed: None,
        history: history_rx,
        replay_task: None,
        replay_summary: None,
    };
    let (app, outcome) = run_ui(
        controls,
        &engine,
        &mut stages,
        &mut sources,
        options,
        signals,
        None,
    )
    .await;

    // Stop the reader (its channel closed first: it can never stay blocked on a full one),
    // then let the response layer, the recording and the history finish (their reports go
    // to the restored stderr).
    let mut budget = StopBudget::start();
    crate::response::enforce::lock_capture(&capture).begin_stop();
    drop(sources);
    let _ = shutdown_tx.send(true);
    let reader_limit = budget.step(SHUTDOWN_TIMEOUT, Duration::ZERO);
    if tokio::time::timeout(reader_limit, reader_task)
        .await
        .is_err()
    {
        budget.cut_short("the ring buffer reader");
    }
    if let Some(control) = control {
        control.stop();
    }
    stages.record_losses();
    if let Some(responder) = stages.responder.take() {
        let responded = pipeline::finish_response(responder, &mut budget);
        losses.observe(Loss::WebhookQueueFull, responded.webhook.dropped);
    }
    // The kernel's counts, read while the capture is still there.
    let kernel_losses = app.losses_now();
    let received = app.received;
    // The last references: detaches and unloads every program, deny tables included.
    drop(app);
    pipeline::detach_capture(capture, &mut budget);
    if let Some(history) = stages.taps.close_within(&mut budget) {
        pipeline::record_history_losses(&losses, history);
    }
    let unprocessed = kernel_losses.get(Loss::UnprocessedAtStop);
    if unprocessed > 0 {
        budget.cut_short(format!(
            "processing the last events ({unprocessed} records not processed)"
        ));
    }
    let summary = RunSummary {
        events: received,
        records: stats.records.load(Ordering::Relaxed),
        losses: losses.snapshot(),
        cut_short: budget.into_cut_short(),
    };
    report_stop(outcome?);
    Ok(summary)
}

/// Runs the terminal UI over a recording (`--replay FILE`): no root, no eBPF; the events go
/// through the current rules. `about` is the first status line (what is replayed).
pub async fn run_replay(
    config: &Config,
    options: &RunOptions,
    replay: Replay,
    about: String,
) -> Result<RunSummary, PipelineError> {
    let signals = Signals::new()?;
    let taps = Taps::open(options)?;
    let (events_rx, feeder) = crate::record::spawn_replay(replay, pipeline::CHANNEL_BATCHES);
    let engine = options.rules.clone().unwrap_or_else(RuleEngine::empty);
    let (history_tx, history_rx) = mpsc::unbounded_channel();
    let losses = Arc::new(Losses::new());
    let mut stages = Stages::new(config, &engine, None, taps, losses.clone());
    let controls = Controls {
        probes: Box::new(ReplayProbes),
        rules: Box::new(engine.clone()),
        response: Box::new(SimulatedResponse::new(
            Allowlist::new(&config.response.allowlist),
            "replaying a recording: nothing is enforced in the kernel",
        )),
        history: history_source(
            options,
            "a replay is stored only into a database named with --db PATH",
            history_tx,
        ),
        losses,
    };
    let mut sources = Sources {
        records: None,
        replayed: Some(events_rx),
        history: history_rx,
        replay_task: Some(feeder),
        replay_summary: None,
    };
    let (app, outcome) = run_ui(
        controls,
        &engine,
        &mut stages,
        &mut sources,
        options,
        signals,
        Some(about),
    )
    .await;
    let mut budget = StopBudget::start();
    let replayed = finish_replay(&mut sources).await;
    stages.taps.close_within(&mut budget);
    if let Some(error) = replayed.error {
        eprintln!("secmon: warning: {error}");
    }
    let summary = RunSummary {
        events: app.received,
        records: replayed.events,
        cut_short: budget.into_cut_short(),
        ..RunSummary::default()
    };
    report_stop(outcome?);
    Ok(summary)
}

/// What the replay did: its end as seen by the loop, or (quit before the end) the feeder
/// stopped by closing its channel, given a moment to say how far it got.
async fn finish_replay(sources: &mut Sources) -> ReplaySummary {
    if let Some(summary) = sources.replay_summary.take() {
        return summary;
    }
    sources.replayed = None;
    let Some(mut task) = sources.replay_task.take() else {
        return ReplaySummary::default();
    };
    match tokio::time::timeout(Duration::from_secs(1), &mut task).await {
        Ok(summary) => summary.unwrap_or_default(),
        Err(_) => {
            // Waiting for a far-off event of a slow replay: it was sent nothing more anyway.
            task.abort();
            ReplaySummary::default()
        }
    }
}

/// SIGINT, SIGTERM and SIGHUP (a dropped SSH session): each stops the UI cleanly.
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
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

/// The UI proper: the stderr capture, the rule watcher, the terminal, the loop. Returns the
/// app (its counts) and why the loop ended; the terminal is restored either way.
async fn run_ui(
    controls: Controls,
    engine: &RuleEngine,
    stages: &mut Stages,
    sources: &mut Sources,
    options: &RunOptions,
    mut signals: Signals,
    about: Option<String>,
) -> (App, io::Result<Stop>) {
    let offset = Local::now().offset().fix();
    let mut app = App::new(controls, Theme::from_env(), offset, Utc::now());
    if let Some(about) = about {
        app.set_status(about, StatusKind::Info);
    }
    let (log_tx, mut log_rx) = mpsc::channel::<String>(LOG_LINES);
    let stderr_capture = match StderrCapture::start(log_tx) {
        Ok(capture) => capture,
        Err(e) => return (app, Err(e)),
    };
    // Started after the capture of stderr: its reload reports go to the status line.
    let rules_watcher = pipeline::watch_rules(engine);
    let outcome = match TerminalGuard::enter() {
        Ok(mut guard) => {
            let stop = event_loop(
                &mut guard,
                &mut app,
                sources,
                stages,
                &mut log_rx,
                options.duration,
                &mut signals,
            )
            .await;
            drop(guard);
            stop
        }
        Err(e) => Err(e),
    };
    drop(rules_watcher);
    drop(stderr_capture);
    (app, outcome)
}

/// In debug builds only: with this variable set, the first key panics, so the tests can
/// check that the panic hook restores the terminal.
const TEST_PANIC_VAR: &str = "SECMON_TEST_PANIC_ON_KEY";

fn test_panic_requested() -> bool {
    cfg!(debug_assertions) && std::env::var_os(TEST_PANIC_VAR).is_some()
}

/// Says on stderr why the UI stopped, unless the operator asked for it.
fn report_stop(stop: Stop) {
    match stop {
        Stop::InputClosed(why) => eprintln!("secmon: terminal input closed ({why}); stopping"),
        Stop::PipelineEnded => eprintln!("secmon: the event pipeline stopped; stopping"),
        Stop::Signal(name) => eprintln!("secmon: {name} received; stopping"),
        Stop::Quit | Stop::Duration => {}
    }
}

async fn event_loop(
    guard: &mut TerminalGuard,
    app: &mut App,
    sources: &mut Sources,
    stages: &mut Stages,
    logs: &mut mpsc::Receiver<String>,
    duration: Option<Duration>,
    signals: &mut Signals,
) -> io::Result<Stop> {
    let mut input = EventStream::new();
    let mut tick = tokio::time::interval(FRAME);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let deadline = async {
        match duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let mut logs_open = true;
    let mut analysed = Vec::with_capacity(reader::MAX_BATCH);
    let mut unfinished: Option<(Vec<Record>, usize)> = None;
    let panic_on_key = test_panic_requested();
    loop {
        let stop = tokio::select! {
            // Keys first: under a flood of events the operator still gets the screen.
            biased;
            input_event = input.next() => match input_event {
                Some(Ok(event)) => {
                    if panic_on_key {
                        panic!("test panic ({TEST_PANIC_VAR} is set)");
                    }
                    app.handle(app::Event::Input(event));
                    // A key's effect is drawn at once, not at the next tick: keys are rare,
                    // and this is what an operator waits for.
                    if app.needs_redraw() {
                        guard.terminal.draw(|frame| ui::draw(frame, app))?;
                    }
                    None
                }
                Some(Err(e)) => Some(Stop::InputClosed(e.to_string())),
                None => Some(Stop::InputClosed("end of input".to_string())),
            },
            _ = signals.int.recv() => Some(Stop::Signal("SIGINT")),
            _ = signals.term.recv() => Some(Stop::Signal("SIGTERM")),
            _ = signals.hup.recv() => Some(Stop::Signal("SIGHUP")),
            _ = &mut deadline => Some(Stop::Duration),
            _ = tick.tick() => {
                app.handle(app::Event::Tick(Utc::now()));
                stages.every_second();
                if app.needs_redraw() {
                    guard.terminal.draw(|frame| ui::draw(frame, app))?;
                }
                None
            }
            Some(reply) = sources.history.recv() => {
                app.handle(app::Event::History(reply));
                None
            }
            line = logs.recv(), if logs_open => {
                match line {
                    Some(line) => app.handle(app::Event::Log(line)),
                    None => logs_open = false,
                }
                None
            }
            // The rest of a batch, a slice at a time: keys get their turn between slices.
            _ = std::future::ready(()), if unfinished.is_some() => {
                if let Some((batch, done)) = &mut unfinished {
                    let end = (*done + SLICE).min(batch.len());
                    stages.process_records(&batch[*done..end], &mut analysed);
                    app.ingest(analysed.drain(..));
                    *done = end;
                    if end == batch.len() {
                        stages.end_batch();
                        unfinished = None;
                    }
                }
                None
            }
            batch = recv_from(&mut sources.records), if unfinished.is_none() => match batch {
                Some(batch) => {
                    unfinished = Some((batch, 0));
                    None
                }
                None => Some(Stop::PipelineEnded),
            },
            batch = recv_from(&mut sources.replayed) => {
                match batch {
                    Some(batch) => {
                        stages.process_events(batch, &mut analysed);
                        app.ingest(analysed.drain(..));
                    }
                    None => {
                        // The recording is over; the operator keeps looking at it.
                        sources.replayed = None;
                        let summary = match sources.replay_task.take() {
                            Some(task) => task.await.unwrap_or_default(),
                            None => ReplaySummary::default(),
                        };
                        let (text, kind) = match &summary.error {
                            Some(error) => (
                                format!("replay stopped after {} events: {error}", summary.events),
                                StatusKind::Error,
                            ),
                            None => (
                                format!("replay finished: {} events (q quits)", summary.events),
                                StatusKind::Info,
                            ),
                        };
                        app.set_status(text, kind);
                        sources.replay_summary = Some(summary);
                    }
                }
                None
            }
        };
        if let Some(stop) = stop {
            return Ok(stop);
        }
        if app.should_quit() {
            return Ok(Stop::Quit);
        }
    }
}
