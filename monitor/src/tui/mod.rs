//! The terminal UI: a front end of the [`pipeline`](crate::pipeline), and terminal hygiene.
//!
//! [`run`] starts the pipeline (live capture or a recording) with one queue front end, then
//! one `tokio::select!` loop feeds the single [`App`] from its sources, keys first: crossterm
//! input, a ~33 ms tick that redraws only when something changed, notices (reloads, warnings),
//! analysed batches from the pipeline's queue, history pages, and the pipeline's end (a
//! signal — SIGHUP too: the SSH session is gone —, `--duration`, a recording's end). The
//! pipeline runs in its own task, so drawing never holds up capture and a flood never holds
//! up a key: when the UI falls behind, its queue drops batches and counts them
//! (`display_queue_full`, in the header's loss count) while analysis, response and history go
//! on. Over a recording the same loop runs with no root and no eBPF; the probe and
//! enforcement keys say so.
//!
//! The UI's keys reach the real thing through adapters beside what they adapt: probe switches
//! and blocking in `response::ui_adapter`, the history database in `storage::ui_adapter`.
//!
//! [`run_remote`] (`remote.rs`, `--connect`) runs the same loop over a remote controller: the
//! loop's `Feed` is then the remote's stream instead of a pipeline, and the keys' adapters
//! are `remote::ui_adapter`'s.
//!
//! Terminal hygiene: [`TerminalGuard`] enters raw mode and the alternate screen and leaves
//! both on drop; a panic hook restores the terminal before the panic is printed. While the UI
//! runs it owns the terminal's notices ([`notice::Terminal::Owned`]): they go to the status
//! line instead of being written over the screen.
use std::{
    io::{self, Stdout, Write},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
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
use tokio::sync::mpsc;

use crate::{
    app::{self, App, Controls, HistorySource, NoHistory, ReplayProbes, Response, StatusKind},
    config::Config,
    event::Event as SecEvent,
    history_cli,
    losses::{Loss, Losses},
    notice,
    pipeline::{
        self, Batch, FrontEnd, OnSighup, Pipeline, PipelineError, Recycler, RunOptions, RunSummary,
        SUBSCRIBER_EVENTS, SourceSpec, StopReason, Subscriber, take_events,
    },
    response::{
        simulate::Allowlist,
        ui_adapter::{ENFORCE_OFF, EnforcingResponse, SimulatedResponse},
    },
    storage::ui_adapter::StoredHistory,
    ui::{self, Theme},
};

mod demo;
mod remote;

pub use demo::{DemoScopedResponse, LiveSteps, RecordedSteps};

pub use remote::run_remote;

/// Redraw period: at most ~30 frames a second, and only when something changed.
pub const FRAME: Duration = Duration::from_millis(33);
/// Notices waiting for the UI (more are dropped).
const NOTICES: usize = 64;
/// Analysed events waiting for the UI (more are dropped and counted as
/// `display_queue_full`): 80 ms of a flood of 100,000 events/s, far more than the UI takes to
/// store a batch. A queue of whole events is memory the UI holds beside its panes, and under
/// a flood it stays full: the default of [`SUBSCRIBER_EVENTS`] was ~25 MiB of it (issue 19),
/// for events older than those the UI then shows.
const UI_QUEUE_EVENTS: usize = SUBSCRIBER_EVENTS / 4;

/// Whether the terminal is in raw mode / the alternate screen (so restoring is idempotent).
static TERMINAL_ACTIVE: AtomicBool = AtomicBool::new(false);

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

/// Restores the terminal before the previous hook prints the panic.
fn install_panic_hook() {
    static INSTALLED: AtomicBool = AtomicBool::new(false);
    if INSTALLED.swap(true, Ordering::SeqCst) {
        return;
    }
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore_terminal();
        previous(info);
    }));
}

/// Why the loop ended.
pub(crate) enum Stop {
    Quit,
    Signal(&'static str),
    Duration,
    InputClosed(String),
    PipelineEnded,
}

impl From<StopReason> for Stop {
    fn from(reason: StopReason) -> Stop {
        match reason {
            StopReason::Signal(name) => Stop::Signal(name),
            StopReason::Deadline => Stop::Duration,
            StopReason::SourceEnded | StopReason::FrontEnd => Stop::PipelineEnded,
        }
    }
}

/// What the loop reads besides the keyboard.
struct Sources<'a> {
    /// Where the analysed events come from.
    feed: Feed<'a>,
    /// Pages of the history view's queries.
    history: mpsc::UnboundedReceiver<app::HistoryReply>,
    notices: notice::Subscription,
}

/// Where the analysed events come from: this machine's pipeline, or a remote controller's
/// stream (`--connect`, `remote.rs`).
enum Feed<'a> {
    Pipeline {
        pipeline: &'a mut Pipeline,
        /// Analysed batches (`None` once the pipeline has ended and they are all shown).
        batches: mpsc::Receiver<Batch>,
        /// Hands the events the panes let go of back to the pipeline's thread.
        recycler: Recycler,
        /// The pipeline's loop has ended (a recording is over: the operator keeps looking).
        ended: bool,
    },
    Remote(remote::RemoteFeed),
}

/// What the feed brought.
enum Arrival {
    Events(Vec<SecEvent>),
    /// Something for the status line (a recording is over).
    Status(String, StatusKind),
    Stop(Stop),
}

impl Feed<'_> {
    async fn next(&mut self) -> Arrival {
        match self {
            Feed::Pipeline {
                pipeline,
                batches,
                ended,
                ..
            } => tokio::select! {
                Some(batch) = batches.recv() => Arrival::Events(take_events(batch)),
                reason = pipeline.ended(), if !*ended => {
                    *ended = true;
                    match reason {
                        StopReason::SourceEnded if pipeline.replay_summary().is_some() => {
                            let (text, kind) = replay_finished(pipeline);
                            Arrival::Status(text, kind)
                        }
                        reason => Arrival::Stop(Stop::from(reason)),
                    }
                }
                else => std::future::pending().await,
            },
            Feed::Remote(feed) => feed.next().await,
        }
    }

    /// Takes back the events the panes let go of (the pipeline reuses their memory).
    fn give_back(&self, events: Vec<SecEvent>) {
        if let Feed::Pipeline { recycler, .. } = self {
            recycler.give_back(events);
        }
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
        Some(storage) if storage.enabled => Box::new(StoredHistory::start(
            &storage.path,
            history_cli::query_filter,
            replies,
        )),
        _ => Box::new(NoHistory(why_not.to_string())),
    }
}

/// The keys' connections: the live capture's probes and enforcer, or a replay's stand-ins.
fn controls(
    config: &Config,
    options: &RunOptions,
    pipeline: &Pipeline,
    history: mpsc::UnboundedSender<app::HistoryReply>,
    losses: Arc<Losses>,
) -> Controls {
    let rules = Box::new(pipeline.engine().clone());
    match pipeline.capture() {
        Some(capture) => Controls {
            probes: Box::new(capture),
            rules,
            response: match pipeline.enforcer() {
                Some(enforcer) => Box::new(EnforcingResponse::new(enforcer)) as Box<dyn Response>,
                // The protected set too, so that `b` shows what enforcement would really do.
                None => Box::new(SimulatedResponse::new(
                    Allowlist::system(&config.response.allowlist),
                    ENFORCE_OFF,
                )),
            },
            history: history_source(
                options,
                "the history is off: [storage] enabled = false (--db PATH turns it on)",
                history,
            ),
            losses,
        },
        None => Controls {
            probes: Box::new(ReplayProbes),
            rules,
            response: Box::new(SimulatedResponse::new(
                Allowlist::new(&config.response.allowlist),
                "replaying a recording: nothing is enforced in the kernel",
            )),
            history: history_source(
                options,
                "a replay is stored only into a database named with --db PATH",
                history,
            ),
            losses,
        },
    }
}

/// Runs the terminal UI over `source` (the live capture, or a recording: no root, no eBPF)
/// until `q`, Ctrl-C, a signal or `--duration`. `about` is the first status line (what is
/// replayed). Returns the same counts as `--json` mode, printed by the caller once the
/// terminal is back to normal.
pub async fn run(
    config: &Config,
    options: &RunOptions,
    source: SourceSpec,
    about: Option<String>,
    companions: pipeline::Companions,
) -> Result<RunSummary, PipelineError> {
    run_with(config, options, source, about, companions, None).await
}

/// [`run`], playing a classroom demo (`secmon-tui demo`): the narration pane and its keys.
/// The demo (its sandbox) is dropped before the pipeline stops, on every way out.
/// `enforce_in`: `demo --enforce`'s sandbox, whose processes alone `B` may really block.
pub async fn run_demo(
    config: &Config,
    options: &RunOptions,
    source: SourceSpec,
    companions: pipeline::Companions,
    demo: app::DemoState,
    enforce_in: Option<std::path::PathBuf>,
) -> Result<RunSummary, PipelineError> {
    let demo = DemoRun {
        state: demo,
        enforce_in,
    };
    run_with(config, options, source, None, companions, Some(demo)).await
}

/// A demo to play in [`run_with`].
struct DemoRun {
    state: app::DemoState,
    enforce_in: Option<std::path::PathBuf>,
}

async fn run_with(
    config: &Config,
    options: &RunOptions,
    source: SourceSpec,
    about: Option<String>,
    companions: pipeline::Companions,
    demo: Option<DemoRun>,
) -> Result<RunSummary, PipelineError> {
    let losses = Arc::new(Losses::new());
    let (subscriber, batches) = Subscriber::new(UI_QUEUE_EVENTS, Loss::DisplayQueueFull);
    let mut front_ends = vec![FrontEnd::Queue(subscriber)];
    let companion_batches = pipeline::companion_queues(&companions, &mut front_ends);
    let mut pipeline = Pipeline::start(
        config,
        options,
        source,
        front_ends,
        OnSighup::Stop,
        losses.clone(),
    )?;
    // Before the UI's notice subscription: the controller's URL goes to stderr, above the UI.
    let companion = pipeline::start_companions(companions, companion_batches, &pipeline).await?;
    let (history_tx, history_rx) = mpsc::unbounded_channel();
    let mut controls = controls(config, options, &pipeline, history_tx, losses.clone());
    if let Some(sandbox) = demo.as_ref().and_then(|d| d.enforce_in.as_deref()) {
        controls.response = Box::new(DemoScopedResponse::new(controls.response, sandbox));
    }
    let offset = Local::now().offset().fix();
    let mut app = App::new(controls, offset, Utc::now());
    app.presenter = options.presenter;
    if let Some(about) = about {
        app.set_status(about, StatusKind::Info);
    }
    if let Some(demo) = demo {
        app.start_demo(demo.state);
    }
    let mut sources = Sources {
        feed: Feed::Pipeline {
            recycler: pipeline.recycler(),
            pipeline: &mut pipeline,
            batches,
            ended: false,
        },
        history: history_rx,
        // Before the terminal is taken: from here on, notices are the UI's to show.
        notices: notice::subscribe(NOTICES, notice::Terminal::Owned),
    };
    let outcome = run_terminal(&mut app, &mut sources).await;
    // The terminal is back: the shutdown's reports go to stderr. The app's probe switches
    // and enforcer are references to the capture: dropped first, so the pipeline's stop
    // detaches the programs.
    let Sources { notices, .. } = sources;
    drop(notices);
    drop(companion);
    let received = app.received;
    drop(app);
    let finished = pipeline.finish().await?;
    let summary = RunSummary {
        events: received,
        records: finished.records,
        losses: finished.losses.snapshot(),
        cut_short: finished.cut_short,
    };
    report_stop(outcome?);
    Ok(summary)
}

/// Takes the terminal, runs the loop, gives the terminal back.
async fn run_terminal(app: &mut App, sources: &mut Sources<'_>) -> io::Result<Stop> {
    match TerminalGuard::enter() {
        Ok(mut guard) => {
            let stop = event_loop(&mut guard, app, sources).await;
            drop(guard);
            stop
        }
        Err(e) => Err(e),
    }
}

/// What the status line says when a recording is over.
fn replay_finished(pipeline: &Pipeline) -> (String, StatusKind) {
    let summary = pipeline.replay_summary().unwrap_or_default();
    match &summary.error {
        Some(error) => (
            format!("replay stopped after {} events: {error}", summary.events),
            StatusKind::Error,
        ),
        None => (
            format!("replay finished: {} events (q quits)", summary.events),
            StatusKind::Info,
        ),
    }
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
    sources: &mut Sources<'_>,
) -> io::Result<Stop> {
    let theme = Theme::from_env();
    let mut input = EventStream::new();
    let mut tick = tokio::time::interval(FRAME);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
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
                        guard.terminal.draw(|frame| ui::draw(frame, app, theme))?;
                    }
                    None
                }
                Some(Err(e)) => Some(Stop::InputClosed(e.to_string())),
                None => Some(Stop::InputClosed("end of input".to_string())),
            },
            _ = tick.tick() => {
                app.handle(app::Event::Tick(Utc::now()));
                if app.needs_redraw() {
                    guard.terminal.draw(|frame| ui::draw(frame, app, theme))?;
                }
                None
            }
            Some(reply) = sources.history.recv() => {
                app.handle(app::Event::History(reply));
                None
            }
            Some(notice) = sources.notices.recv() => {
                app.handle(app::Event::Notice(notice));
                None
            }
            arrival = sources.feed.next() => match arrival {
                Arrival::Events(mut events) => {
                    app.ingest(events.drain(..));
                    // The emptied batch (the pipeline's buffer) carries the evicted events
                    // back.
                    app.take_evicted(&mut events);
                    sources.feed.give_back(events);
                    None
                }
                Arrival::Status(text, kind) => {
                    app.set_status(text, kind);
                    None
                }
                Arrival::Stop(stop) => Some(stop),
            },
        };
        if let Some(stop) = stop {
            return Ok(stop);
        }
        if app.should_quit() {
            return Ok(Stop::Quit);
        }
    }
}
