//! The controller: an HTTP/WebSocket API (`/api/v1`) and a web dashboard, served by the
//! monitor itself (`secmon-tui serve`, or `--serve` beside the terminal UI). It is one more
//! front end of the pipeline: its [`hub`] takes the analysed batches from a bounded queue of
//! its own and fans them out to WebSocket clients, each behind a bounded queue too, so neither
//! a slow browser nor a hundred of them can slow the capture.
//!
//! ```text
//! pipeline ──Subscriber──► hub ──per-client queues──► /api/v1/events (JSON), /ui/live (HTML)
//!                           └── recent events, alerts, rates ──► pages and /api/v1/status
//! requests ──► security layer (auth, CSRF, limits, headers) ──► api.rs (JSON) / pages.rs (HTML)
//!                                                        └──► probes, rules, deny entries
//! ```
//!
//! Files: [`auth`] (token, sessions, failures), [`audit`] (who changed what), [`hub`]
//! (fan-out), [`security`] (the layer every request passes), [`api`] (JSON), [`pages`]
//! (HTML, HTMX fragments, the live stream), [`assets`] (embedded CSS, JS, HTMX), [`live`]
//! (WebSocket sessions).
use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::Router;
use tokio::sync::Semaphore;

pub mod actions;
pub mod api;
pub mod assets;
pub mod audit;
pub mod auth;
pub mod hub;
pub mod live;
pub mod machines;
pub mod pages;
pub mod security;
pub mod window;

use crate::{
    config::{self, Config},
    demo::narration::NarrationBoard,
    losses::Losses,
    pipeline::{
        self, Companion, OnSighup, Pipeline, PipelineError, RunOptions, RunSummary, SourceSpec,
    },
    response::{
        enforce::{Enforcer, SharedCapture},
        simulate::Allowlist,
    },
    rules::RuleEngine,
};

/// Requests served at once (WebSocket sessions count separately, see [`hub::MAX_CLIENTS`]).
pub const MAX_REQUESTS: usize = 128;
/// Largest request body accepted (a rule file to validate is the largest expected).
pub const MAX_BODY: usize = 256 * 1024;
/// A history query returns at most this many events per page.
pub const MAX_HISTORY_PAGE: usize = 1000;
/// Simulated blocks remembered for the deny entries page.
const SIMULATED_KEPT: usize = 100;
/// Rule reloads remembered for the status page.
const RELOADS_KEPT: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error(
        "the controller would listen on {0}, which is not a loopback address, without TLS: set \
         tls_cert and tls_key in [controller], or pass --insecure-http to accept that anyone on \
         the network can read the token and the events"
    )]
    NeedsTls(SocketAddr),
    #[error("[controller] tls_cert and tls_key go together: {0} is missing")]
    HalfTls(&'static str),
    #[error("controller: {0}")]
    Token(#[from] auth::TokenError),
    #[error("controller: audit log {0}")]
    Audit(String),
    #[error("controller: {0}")]
    Machines(#[from] machines::RegistryError),
    #[error("controller: TLS: {0}")]
    Tls(String),
    #[error("controller: cannot listen on {addr}: {error}")]
    Bind {
        addr: SocketAddr,
        error: std::io::Error,
    },
}

/// How to serve, from `[controller]` and the command line.
#[derive(Clone, Debug)]
pub struct Settings {
    pub listen: SocketAddr,
    pub tls: Option<(PathBuf, PathBuf)>,
    pub insecure_http: bool,
    pub token_file: PathBuf,
    pub allowed_origins: Vec<String>,
    pub audit_log: PathBuf,
    /// The registered machines and their tokens (root only).
    pub machines_file: PathBuf,
}

impl Settings {
    pub fn from_config(controller: &config::Controller, insecure_http: bool) -> Settings {
        let tls = match (&controller.tls_cert, &controller.tls_key) {
            (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
            _ => None,
        };
        Settings {
            listen: controller.listen,
            tls,
            insecure_http,
            token_file: controller.token_file.clone(),
            allowed_origins: controller.allowed_origins.clone(),
            audit_log: controller.audit_log.clone(),
            machines_file: controller.machines_file.clone().unwrap_or_else(|| {
                controller
                    .token_file
                    .with_file_name(config::DEFAULT_MACHINES_FILE_NAME)
            }),
        }
    }

    /// Refuses what must not start: half a TLS setup, plain HTTP off loopback without
    /// `--insecure-http`.
    pub fn check(&self, controller: &config::Controller) -> Result<(), ControllerError> {
        match (&controller.tls_cert, &controller.tls_key) {
            (Some(_), None) => return Err(ControllerError::HalfTls("tls_key")),
            (None, Some(_)) => return Err(ControllerError::HalfTls("tls_cert")),
            _ => {}
        }
        if self.tls.is_none() && !self.listen.ip().is_loopback() && !self.insecure_http {
            return Err(ControllerError::NeedsTls(self.listen));
        }
        if let Some((cert, key)) = &self.tls {
            check_tls_files(cert, key)?;
        }
        Ok(())
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// The URL to open, as printed once ready.
    pub fn url(&self) -> String {
        self.url_for(self.listen)
    }

    /// The URL of the address actually bound (`listen` may ask for port 0).
    pub fn url_for(&self, addr: SocketAddr) -> String {
        format!("{}://{addr}/", self.scheme())
    }
}

/// What requests act on: the pipeline's switches, shared with the other front ends.
pub struct Controls {
    /// The live capture's probe switches (`None`: a replay).
    pub capture: Option<SharedCapture>,
    pub rules: RuleEngine,
    /// Real enforcement (`[response] enforce = true`).
    pub enforcer: Option<Arc<Enforcer>>,
    /// The protected set and the allowlist, for simulated blocks.
    pub allowlist: Allowlist,
    pub losses: Arc<Losses>,
    /// The history database, when stored.
    pub history: Option<PathBuf>,
    pub enforce_mode: &'static str,
    /// Recent simulated blocks, newest last.
    pub simulated: Mutex<std::collections::VecDeque<SimulatedBlock>>,
    /// Recent rule reloads, whoever asked (a client, the rule watcher, SIGHUP), newest last.
    pub reloads: Mutex<std::collections::VecDeque<RuleReload>>,
    /// The running demo's narration (`secmon-tui demo --serve`), empty otherwise.
    pub demo: NarrationBoard,
}

/// A rule reload and how it went, as the status page lists it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RuleReload {
    pub time: chrono::DateTime<chrono::Utc>,
    /// Who asked: a web or API client, `the rule files changed`, `SIGHUP`.
    pub by: String,
    pub ok: bool,
    /// `N rules from M files`, or the error (the previous rules then stay in force).
    pub result: String,
}

/// A simulated block, as the deny entries page lists it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SimulatedBlock {
    pub time: chrono::DateTime<chrono::Utc>,
    pub target: String,
    pub outcome: String,
    pub client: String,
}

/// Keeps `item` as the newest of at most `limit`.
fn push_bounded<T>(kept: &Mutex<std::collections::VecDeque<T>>, item: T, limit: usize) {
    let mut kept = kept
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if kept.len() >= limit {
        kept.pop_front();
    }
    kept.push_back(item);
}

impl Controls {
    pub fn remember_simulated(&self, block: SimulatedBlock) {
        push_bounded(&self.simulated, block, SIMULATED_KEPT);
    }

    /// Keeps the outcome of a reload `by` someone for the status page.
    pub fn remember_reload(&self, by: &str, result: &Result<String, String>) {
        let reload = RuleReload {
            time: chrono::Utc::now(),
            by: by.to_string(),
            ok: result.is_ok(),
            result: match result {
                Ok(summary) => summary.clone(),
                Err(why) => why.clone(),
            },
        };
        push_bounded(&self.reloads, reload, RELOADS_KEPT);
    }

    /// The kept reloads, newest first.
    pub fn recent_reloads(&self) -> Vec<RuleReload> {
        self.reloads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .rev()
            .cloned()
            .collect()
    }
}

/// Keeps the reloads the rule watcher and SIGHUP make (they are told as notices; a client's
/// reload is kept by [`api::reload_rules`]).
async fn watch_reloads(shared: AppState, mut notices: crate::notice::Subscription) {
    use crate::notice::Notice;
    let by = |on_sighup: bool| {
        if on_sighup {
            "SIGHUP"
        } else {
            "the rule files changed"
        }
    };
    while let Some(notice) = notices.recv().await {
        match notice {
            Notice::RulesReloaded { summary, on_sighup } => {
                shared.controls.remember_reload(by(on_sighup), &Ok(summary));
            }
            Notice::RulesReloadFailed {
                error,
                kept,
                on_sighup,
            } => shared.controls.remember_reload(
                by(on_sighup),
                &Err(format!("{error}; keeping the previous {kept} rules")),
            ),
            Notice::Warning(_) | Notice::Info(_) => {}
        }
    }
}

/// Everything a request handler sees.
pub struct Shared {
    pub settings: Settings,
    pub hub: Arc<hub::Hub>,
    pub auth: auth::Auth,
    pub audit: audit::AuditLog,
    pub controls: Controls,
    pub host: String,
    pub requests: Semaphore,
    /// The other machines' controllers registered here.
    pub machines: machines::Machines,
}

pub type AppState = Arc<Shared>;

/// A running controller; [`RunningController::stop`] (or dropping it) stops serving.
pub struct RunningController {
    thread: Option<std::thread::JoinHandle<()>>,
    handle: axum_server::Handle<SocketAddr>,
    local_addr: SocketAddr,
    pub shared: AppState,
}

impl RunningController {
    /// Where it listens (the port chosen when `listen` asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops serving (connections are closed) and waits for the controller's thread.
    pub fn stop(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        self.handle.shutdown();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for RunningController {
    fn drop(&mut self) {
        self.shut_down();
    }
}

// The controller's threads run at [`crate::priority::BACKGROUND_NICE`]
// (`priority::background_runtime`): the web is best effort, and under a flood the kernel reader
// and the driver (nice 0) come first. (With the controller on the runtime's two workers, twenty
// WebSocket clients reading everything made the kernel drop events: its work delayed the
// reader.)

/// How long the controller's runtime may take to end its tasks once serving stopped (a
/// history query on its blocking thread included).
const RUNTIME_STOP: Duration = Duration::from_secs(1);

/// Starts serving on a thread of its own, with a current-thread runtime at a lower priority
/// ([`crate::priority::BACKGROUND_NICE`]), and returns once it listens (or why it cannot). `batches` is the
/// controller's queue from the pipeline ([`crate::pipeline::FrontEnd::Queue`]).
pub async fn start(
    settings: Settings,
    config: &Config,
    pipeline: &Pipeline,
    history: Option<PathBuf>,
    demo: NarrationBoard,
    batches: tokio::sync::mpsc::Receiver<crate::pipeline::Batch>,
) -> Result<RunningController, ControllerError> {
    let mut controls = controls(config, pipeline, history);
    controls.demo = demo;
    let hub = Arc::new(hub::Hub::new(pipeline.recycler()));
    start_serving(settings, &config.controller, controls, hub, batches, None).await
}

/// Serves `controls` and `hub` (fed from `batches`, or by `nats` in hub mode): see [`start`].
pub async fn start_serving(
    settings: Settings,
    controller: &config::Controller,
    controls: Controls,
    hub: Arc<hub::Hub>,
    batches: tokio::sync::mpsc::Receiver<crate::pipeline::Batch>,
    nats: Option<machines::hosts::HubFeed>,
) -> Result<RunningController, ControllerError> {
    settings.check(controller)?;
    if settings.tls.is_none() && !settings.listen.ip().is_loopback() {
        crate::notice::warn(format!(
            "controller: --insecure-http: serving plain HTTP on {}; the token, the session \
             cookie and every event cross the network unencrypted",
            settings.listen
        ));
    }
    let (token, created) = auth::load_or_create_token(&settings.token_file)?;
    if created {
        crate::notice::info(format!(
            "controller: a new access token was written to {} (root only)",
            settings.token_file.display()
        ));
    }
    let audit = audit::AuditLog::open(&settings.audit_log).map_err(ControllerError::Audit)?;
    let machines = machines::Machines::load(&settings.machines_file)?;
    let feed = nats.map(|hub_feed| {
        let _ = machines.nats.set(hub_feed.hosts.clone());
        hub_feed.feed
    });
    // Subscribed before serving, so that no reload after the first page is missed.
    let notices = crate::notice::subscribe(16, crate::notice::Terminal::Shared);
    let shared = Arc::new(Shared {
        settings: settings.clone(),
        hub: hub.clone(),
        auth: auth::Auth::new(token),
        audit,
        controls,
        host: hostname(),
        requests: Semaphore::new(MAX_REQUESTS),
        machines,
    });
    let bind_error = |error| ControllerError::Bind {
        addr: settings.listen,
        error,
    };
    let listener = std::net::TcpListener::bind(settings.listen).map_err(bind_error)?;
    listener.set_nonblocking(true).map_err(bind_error)?;
    let local_addr = listener.local_addr().map_err(bind_error)?;
    let handle = axum_server::Handle::new();
    let (ready_tx, ready) = tokio::sync::oneshot::channel();
    let serving = Serving {
        shared: shared.clone(),
        handle: handle.clone(),
        listener,
        hub,
        batches,
        notices,
        feed,
    };
    let thread = std::thread::Builder::new()
        .name("secmon-web".into())
        .spawn(move || serving.run(ready_tx))
        .map_err(bind_error)?;
    let mut running = RunningController {
        thread: Some(thread),
        handle,
        local_addr,
        shared,
    };
    match ready.await {
        Ok(Ok(())) => Ok(running),
        Ok(Err(e)) => {
            running.shut_down();
            Err(e)
        }
        Err(_) => {
            running.shut_down();
            Err(ControllerError::Tls(
                "the controller's thread ended before serving".to_string(),
            ))
        }
    }
}

/// What the controller's thread runs.
struct Serving {
    shared: AppState,
    handle: axum_server::Handle<SocketAddr>,
    listener: std::net::TcpListener,
    hub: Arc<hub::Hub>,
    batches: tokio::sync::mpsc::Receiver<crate::pipeline::Batch>,
    notices: crate::notice::Subscription,
    /// Hub mode: the task that feeds the hosts.
    feed: Option<futures::future::BoxFuture<'static, ()>>,
}

impl Serving {
    fn run(self, ready: tokio::sync::oneshot::Sender<Result<(), ControllerError>>) {
        let runtime = match crate::priority::background_runtime() {
            Ok(runtime) => runtime,
            Err(e) => {
                let _ = ready.send(Err(ControllerError::Tls(format!(
                    "cannot start the controller's runtime: {e}"
                ))));
                return;
            }
        };
        runtime.block_on(self.serve(ready));
        runtime.shutdown_timeout(RUNTIME_STOP);
    }

    async fn serve(self, ready: tokio::sync::oneshot::Sender<Result<(), ControllerError>>) {
        let Serving {
            shared,
            handle,
            listener,
            hub,
            batches,
            notices,
            feed,
        } = self;
        let addr = shared.settings.listen;
        let bind_error = |error| ControllerError::Bind { addr, error };
        let service = router(shared.clone()).into_make_service_with_connect_info::<SocketAddr>();
        tokio::spawn(hub::run(hub, batches));
        tokio::spawn(watch_reloads(shared.clone(), notices));
        tokio::spawn(machines::health::run(shared.clone()));
        if let Some(feed) = feed {
            tokio::spawn(feed);
        }
        let served = match shared.settings.tls.clone() {
            Some((cert, key)) => {
                let server = match tls_config(&cert, &key).await {
                    Ok(tls) => axum_server::from_tcp_rustls(listener, tls).map_err(bind_error),
                    Err(e) => Err(e),
                };
                match server {
                    Ok(mut server) => {
                        limit_slow_clients(server.http_builder());
                        let _ = ready.send(Ok(()));
                        server.handle(handle).serve(service).await
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        return;
                    }
                }
            }
            None => match axum_server::from_tcp(listener).map_err(bind_error) {
                Ok(mut server) => {
                    limit_slow_clients(server.http_builder());
                    let _ = ready.send(Ok(()));
                    server.handle(handle).serve(service).await
                }
                Err(e) => {
                    let _ = ready.send(Err(e));
                    return;
                }
            },
        };
        if let Err(e) = served {
            crate::notice::warn(format!("controller: stopped serving: {e}"));
        }
    }
}

/// A connection that does not finish sending a request's headers within this time is closed
/// (a client holding many connections open byte by byte would otherwise keep them forever).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

fn limit_slow_clients(
    builder: &mut hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>,
) {
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
}

/// Reads the certificate chain and the key before anything starts, so that a wrong path or a
/// file that is not PEM is said at once, not after the probes are attached; a key file that
/// others may read is refused (whoever reads it can pose as this controller).
fn check_tls_files(cert: &std::path::Path, key: &std::path::Path) -> Result<(), ControllerError> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    use std::os::unix::fs::PermissionsExt;
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ControllerError::Tls(format!("tls_cert {}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(ControllerError::Tls(format!(
            "tls_cert {}: no PEM certificate in it",
            cert.display()
        )));
    }
    PrivateKeyDer::from_pem_file(key)
        .map_err(|e| ControllerError::Tls(format!("tls_key {}: {e}", key.display())))?;
    let mode = std::fs::metadata(key)
        .map(|m| m.permissions().mode())
        .map_err(|e| ControllerError::Tls(format!("tls_key {}: {e}", key.display())))?;
    if mode & 0o077 != 0 {
        return Err(ControllerError::Tls(format!(
            "tls_key {}: readable or writable by other users (mode {:o}); chmod 600 it",
            key.display(),
            mode & 0o777
        )));
    }
    Ok(())
}

async fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<axum_server::tls_rustls::RustlsConfig, ControllerError> {
    // One process-wide provider; a second install (a test starting two) is not an error.
    let _ = rustls::crypto::ring::default_provider().install_default();
    axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
        .await
        .map_err(|e| {
            ControllerError::Tls(format!(
                "cannot use {} and {}: {e}",
                cert.display(),
                key.display()
            ))
        })
}

/// What requests act on, from the running pipeline (also NATS control requests' targets).
pub(crate) fn controls(config: &Config, pipeline: &Pipeline, history: Option<PathBuf>) -> Controls {
    let capture = pipeline.capture();
    let enforcer = pipeline.enforcer();
    let enforce_mode = match (&capture, &enforcer) {
        (None, _) => "replay (nothing is enforced)",
        (Some(_), Some(_)) => "enforce",
        (Some(_), None) => "simulate (enforce = false)",
    };
    Controls {
        capture,
        rules: pipeline.engine().clone(),
        enforcer,
        allowlist: Allowlist::system(&config.response.allowlist),
        losses: pipeline.losses(),
        history,
        enforce_mode,
        simulated: Mutex::new(std::collections::VecDeque::new()),
        reloads: Mutex::new(std::collections::VecDeque::new()),
        demo: NarrationBoard::new(),
    }
}

fn router(shared: AppState) -> Router {
    Router::new()
        .merge(pages::routes())
        .nest("/api/v1", api::routes())
        .merge(assets::routes())
        // After the security layer (layers run outermost last-added first): only a request
        // this controller accepted is forwarded to the active machine.
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            machines::proxy::layer,
        ))
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            security::layer,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(shared)
}

/// The machine's name, as the dashboard and the status show it.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// The controller as a companion front end of `--json` or the terminal UI (`--serve`,
/// `[controller] enabled = true`), or the only one (`secmon-tui serve`).
pub struct ControllerCompanion {
    settings: Settings,
    config: Config,
    history: Option<PathBuf>,
    demo: NarrationBoard,
}

impl ControllerCompanion {
    pub fn new(settings: Settings, config: &Config, options: &RunOptions) -> ControllerCompanion {
        let history = options
            .storage
            .as_ref()
            .filter(|s| s.enabled)
            .map(|s| s.path.clone());
        ControllerCompanion {
            settings,
            config: config.clone(),
            history,
            demo: NarrationBoard::new(),
        }
    }

    /// Shows the demo that publishes to `board` (`secmon-tui demo --serve`).
    pub fn with_demo(mut self, board: NarrationBoard) -> ControllerCompanion {
        self.demo = board;
        self
    }
}

impl Companion for ControllerCompanion {
    fn start<'a>(
        self: Box<Self>,
        pipeline: &'a Pipeline,
        batches: tokio::sync::mpsc::Receiver<crate::pipeline::Batch>,
    ) -> pipeline::CompanionStart<'a> {
        Box::pin(async move {
            let token_file = self.settings.token_file.clone();
            let running = start(
                self.settings,
                &self.config,
                pipeline,
                self.history,
                self.demo,
                batches,
            )
            .await
            .map_err(|e| e.to_string())?;
            let url = running.shared.settings.url_for(running.local_addr());
            crate::notice::info(format!(
                "controller: serving {url} (log in with the token in {}, root only)",
                token_file.display()
            ));
            Ok(Box::new(running) as Box<dyn Send>)
        })
    }
}

/// `secmon-tui serve`: the monitor with the controller as its only front end (and `others`
/// beside it: the NATS exporter), until a signal or `--duration` (SIGHUP reloads the rules, as
/// under `--json`).
pub async fn serve(
    config: &Config,
    options: &RunOptions,
    source: SourceSpec,
    settings: Settings,
    others: pipeline::Companions,
) -> Result<RunSummary, PipelineError> {
    let started = std::time::Instant::now();
    let replay = matches!(source, SourceSpec::Replay(_) | SourceSpec::Events(_));
    let losses = Arc::new(Losses::new());
    let mut companions: pipeline::Companions = vec![Box::new(ControllerCompanion::new(
        settings, config, options,
    ))];
    companions.extend(others);
    let mut front_ends = Vec::new();
    let batches = pipeline::companion_queues(&companions, &mut front_ends);
    let mut pipeline = Pipeline::start(
        config,
        options,
        source,
        front_ends,
        OnSighup::ReloadRules,
        losses,
    )?;
    let running = pipeline::start_companions(companions, batches, &pipeline).await?;
    let reason = pipeline.ended().await;
    if replay && reason == crate::pipeline::StopReason::SourceEnded {
        // A served recording stays on view until the operator stops it.
        crate::notice::info("the recording is over; still serving it (Ctrl-C or SIGTERM stops)");
        wait_for_stop(
            options
                .duration
                .map(|d| d.saturating_sub(started.elapsed())),
        )
        .await;
    }
    drop(running);
    let finished = pipeline.finish().await?;
    Ok(RunSummary {
        events: finished.events,
        records: finished.records,
        losses: finished.losses.snapshot(),
        cut_short: finished.cut_short,
    })
}

/// Until SIGINT, SIGTERM or `left` has passed.
pub(crate) async fn wait_for_stop(left: Option<Duration>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    let deadline = async {
        match left {
            Some(left) => tokio::time::sleep(left).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
        _ = deadline => {}
    }
}
