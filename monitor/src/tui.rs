//! The terminal UI's event loop and terminal hygiene.
//!
//! [`run`] starts the capture (as `--json` mode does), then one `tokio::select!` loop feeds the
//! single [`App`] from four sources: crossterm input, batches of kernel records (enriched and
//! analysed in the loop, as `--json` mode does), a ~33 ms tick that redraws only when something
//! changed, and SIGINT/SIGTERM/SIGHUP (which quit). The ring buffer reader is its own task, so
//! drawing never holds up capture: under a flood the channel pushes back, the kernel ring fills
//! and the kernel's drop counter (shown in the header) tells of it.
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

use crate::{
    analysis::Analyzer,
    app::{self, App, Controls, SimulatedResponse, Theme},
    capture::reader,
    config::Config,
    decode::Record,
    enrich::Enricher,
    event::Event as SecEvent,
    pipeline::{self, PipelineError, RunOptions, RunSummary, Taps},
    rules::RuleEngine,
    ui,
};

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

/// Enrichment, analysis and the taps (recording, history), run inside the UI loop as
/// `--json` mode runs them inside its own: the reader task keeps a worker to itself, and every
/// event is allocated, kept and freed by one thread. (A separate analysis task, tried under
/// the same load, read fewer records and dropped more.)
struct Stages {
    enricher: Enricher,
    analyzer: Analyzer,
    taps: Taps,
    last_report: Instant,
}

impl Stages {
    /// Appends the batch's events to `analysed` (a buffer reused from batch to batch).
    fn process(&mut self, batch: &[Record], analysed: &mut Vec<SecEvent>) {
        for record in batch {
            if let Some(mut event) = self.enricher.process(record) {
                self.taps.record(&event);
                self.analyzer.analyze(&mut event);
                self.taps.store(&event);
                analysed.push(event);
            }
        }
        self.taps.end_batch();
        if self.last_report.elapsed() >= Duration::from_secs(1) {
            self.last_report = Instant::now();
            // Warnings from the history go to stderr, that is to the status line.
            self.taps.report();
        }
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

/// Runs the terminal UI until `q`, Ctrl-C, a signal or `--duration`. Returns the same counts
/// as `--json` mode, printed by the caller once the terminal is back to normal.
pub async fn run(config: &Config, options: &RunOptions) -> Result<RunSummary, PipelineError> {
    // Signal handlers first: a SIGTERM or SIGHUP during start-up must stop us cleanly.
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let taps = Taps::open(options)?;
    let (capture, ring) = pipeline::start_capture(config, options)?;
    let (record_tx, mut record_rx) = mpsc::channel::<Vec<Record>>(pipeline::CHANNEL_BATCHES);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let stats = Arc::new(reader::ReaderStats::default());
    let reader_task = tokio::spawn(reader::run(ring, record_tx, shutdown_rx, stats.clone()));

    let engine = options.rules.clone().unwrap_or_else(RuleEngine::empty);
    let mut stages = Stages {
        enricher: Enricher::new(),
        analyzer: Analyzer::new(engine.clone(), &config.threat_detection),
        taps,
        last_report: Instant::now(),
    };

    let (log_tx, mut log_rx) = mpsc::channel::<String>(LOG_LINES);
    let stderr_capture = StderrCapture::start(log_tx)?;
    // Started after the capture of stderr: its reload reports go to the status line.
    let rules_watcher = pipeline::watch_rules(&engine);

    let controls = Controls {
        probes: Box::new(capture),
        rules: Box::new(engine),
        response: Box::new(SimulatedResponse::default()),
    };
    let offset = Local::now().offset().fix();
    let mut app = App::new(controls, Theme::from_env(), offset, Utc::now());
    let outcome = match TerminalGuard::enter() {
        Ok(mut guard) => {
            let stop = event_loop(
                &mut guard,
                &mut app,
                &mut record_rx,
                &mut stages,
                &mut log_rx,
                options.duration,
                [&mut sigint, &mut sigterm, &mut sighup],
            )
            .await;
            drop(guard);
            stop
        }
        Err(e) => Err(e),
    };
    drop(rules_watcher);
    drop(stderr_capture);

    // Stop the reader (closing its channel: it can never stay blocked on a full one), then
    // let the recording and the history finish (their report goes to the restored stderr).
    let _ = shutdown_tx.send(true);
    drop(record_rx);
    let _ = tokio::time::timeout(SHUTDOWN_TIMEOUT, reader_task).await;
    stages.taps.close();

    let summary = RunSummary {
        events: app.received,
        records: stats.records.load(Ordering::Relaxed),
        kernel_drops: app.kernel_drops(),
        decode_errors: stats.decode_errors.load(Ordering::Relaxed),
    };
    // Detaches and unloads the probes.
    drop(app);
    match outcome? {
        Stop::InputClosed(why) => eprintln!("secmon: terminal input closed ({why}); stopping"),
        Stop::PipelineEnded => eprintln!("secmon: the event pipeline stopped; stopping"),
        Stop::Signal(name) => eprintln!("secmon: {name} received; stopping"),
        Stop::Quit | Stop::Duration => {}
    }
    Ok(summary)
}

#[allow(clippy::too_many_arguments)]
async fn event_loop(
    guard: &mut TerminalGuard,
    app: &mut App,
    records: &mut mpsc::Receiver<Vec<Record>>,
    stages: &mut Stages,
    logs: &mut mpsc::Receiver<String>,
    duration: Option<Duration>,
    [sigint, sigterm, sighup]: [&mut tokio::signal::unix::Signal; 3],
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
    loop {
        let stop = tokio::select! {
            input_event = input.next() => match input_event {
                Some(Ok(event)) => { app.handle(app::Event::Input(event)); None }
                Some(Err(e)) => Some(Stop::InputClosed(e.to_string())),
                None => Some(Stop::InputClosed("end of input".to_string())),
            },
            batch = records.recv() => match batch {
                Some(batch) => {
                    stages.process(&batch, &mut analysed);
                    app.ingest(analysed.drain(..));
                    None
                }
                None => Some(Stop::PipelineEnded),
            },
            line = logs.recv(), if logs_open => {
                match line {
                    Some(line) => app.handle(app::Event::Log(line)),
                    None => logs_open = false,
                }
                None
            }
            _ = tick.tick() => {
                app.handle(app::Event::Tick(Utc::now()));
                if app.needs_redraw() {
                    guard.terminal.draw(|frame| ui::draw(frame, app))?;
                }
                None
            }
            _ = sigint.recv() => Some(Stop::Signal("SIGINT")),
            _ = sigterm.recv() => Some(Stop::Signal("SIGTERM")),
            _ = sighup.recv() => Some(Stop::Signal("SIGHUP")),
            _ = &mut deadline => Some(Stop::Duration),
        };
        if let Some(stop) = stop {
            return Ok(stop);
        }
        if app.should_quit() {
            return Ok(Stop::Quit);
        }
    }
}
