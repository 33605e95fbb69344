//! The terminal UI's ports over a remote controller (`--connect`): the keys act on the remote
//! machine through its API, and its own checks decide (its protected set, its allowlist, its
//! enforcement switch). Nothing is decided here but what cannot be asked (a process without a
//! path to block).
//!
//! What the UI reads every second (probe states, the rule count, the deny entries, the losses)
//! comes from a [`Remote`]'s poller thread, never from a call on the UI's loop. What the keys
//! do is one call each, made at once (bounded by [`super::CALL_TIMEOUT`]) and refused without
//! a call while the link is down, so a key never waits for a dead link. The remote's own
//! losses are added to the UI's [`Losses`] (the header's `lost`); what the link lost is the
//! header's `link lost`.
use std::{
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{Client, LinkShared, LinkState, RemoteError, RemoteStatus, RuleRow, path_segment};
use crate::app::{
    BlockTarget, DenyRow, EnforcePlan, HistoryCursor, HistoryReply, HistoryRequest, HistorySource,
    LinkPhase, LinkView, ProbeState, Probes, RemoteLink, Response, RuleControl,
};
use crate::capture::{KernelLosses, enforce::DenyTarget};
use crate::event::{EventType, Family};
use crate::losses::{Loss, Losses};
use crate::response::ui_adapter::deny_target;
use crate::rules::{Action, RuleDoc, RuleInfo};

/// How often the poller reads the remote's status and deny entries.
const POLL: Duration = Duration::from_secs(1);
/// The rule list is read while the UI asked for it this recently (the rules view is open).
const RULES_WANTED_FOR: Duration = Duration::from_secs(3);
/// Rules and deny entries kept from one answer at most (a real controller has dozens): the
/// remote's word, bounded like everything else it sends.
const MAX_ROWS: usize = 10_000;

/// What the poller last read.
#[derive(Default)]
struct Snapshot {
    status: Option<RemoteStatus>,
    denies: Option<Result<Vec<DenyRow>, String>>,
    rules: Option<Vec<RuleInfo>>,
    rules_wanted_at: Option<Instant>,
    /// The remote's loss counts last added to the UI's, by reason (a remote that restarts
    /// counts from zero again: its new counts are added in full).
    seen_losses: [u64; Loss::ALL.len()],
}

/// A remote controller as the UI's adapters share it.
pub struct Remote {
    client: Client,
    link: Arc<LinkShared>,
    losses: Arc<Losses>,
    snapshot: Mutex<Snapshot>,
    stop: AtomicBool,
}

/// Stops the poller when dropped.
pub struct Poller(Arc<Remote>);

impl Drop for Poller {
    fn drop(&mut self) {
        self.0.stop.store(true, Ordering::Relaxed);
    }
}

impl Remote {
    /// `status` is the one read at start (the UI shows it at once); the poller keeps it fresh.
    pub fn new(
        client: Client,
        status: RemoteStatus,
        link: Arc<LinkShared>,
        losses: Arc<Losses>,
    ) -> Arc<Remote> {
        let remote = Arc::new(Remote {
            client,
            link,
            losses,
            snapshot: Mutex::new(Snapshot::default()),
            stop: AtomicBool::new(false),
        });
        remote.take_status(status);
        remote
    }

    /// Starts the poller thread (it ends within a poll of the [`Poller`]'s drop).
    pub fn start_poller(self: &Arc<Remote>) -> std::io::Result<Poller> {
        let remote = self.clone();
        std::thread::Builder::new()
            .name("secmon-remote-poll".to_string())
            .spawn(move || remote.poll_until_stopped())?;
        Ok(Poller(self.clone()))
    }

    fn lock(&self) -> MutexGuard<'_, Snapshot> {
        self.snapshot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn poll_until_stopped(&self) {
        while !self.stop.load(Ordering::Relaxed) {
            self.poll_once();
            std::thread::sleep(POLL);
        }
    }

    fn poll_once(&self) {
        // The JSON API answers while the stream reconnects, and says when the token is
        // refused; only a link that is down for good skips the calls.
        if let Ok(status) = self.client.status() {
            self.take_status(status);
        }
        let denies = self
            .client
            .denies()
            .map(|d| d.denies.into_iter().map(deny_row).collect());
        self.lock().denies = Some(denies.map_err(|e| e.one_line()));
        let wanted = self
            .lock()
            .rules_wanted_at
            .is_some_and(|at| at.elapsed() < RULES_WANTED_FOR);
        if wanted {
            self.read_rules();
        }
    }

    fn take_status(&self, status: RemoteStatus) {
        let mut snapshot = self.lock();
        for reason in Loss::ALL {
            let now = status
                .losses
                .get(reason.as_str())
                .and_then(Value::as_u64)
                .unwrap_or(0);
            let seen = &mut snapshot.seen_losses[reason as usize];
            // Counts that went back are a restarted remote's: all of them are new.
            let new = if now >= *seen { now - *seen } else { now };
            self.losses.add(reason, new);
            *seen = now;
        }
        snapshot.status = Some(status);
    }

    fn read_rules(&self) {
        if let Ok(rules) = self.client.rules() {
            self.lock().rules = Some(rules.into_iter().take(MAX_ROWS).map(rule_info).collect());
        }
    }

    /// The remote's host name, or its address until its status said it.
    pub fn host(&self) -> String {
        match &self.lock().status {
            Some(status) if !status.host.is_empty() => status.host.clone(),
            _ => self.client.url().host().to_string(),
        }
    }

    /// Refuses at once when the stream is known to be down (a call would wait for its
    /// timeout); while it connects, the call is tried.
    fn reachable(&self) -> Result<(), String> {
        let why = match self.link.status().state {
            LinkState::Connected | LinkState::Connecting => return Ok(()),
            LinkState::Unauthorised { .. } => "it refused the token",
            LinkState::Reconnecting { .. } => "the link is down, reconnecting",
        };
        Err(format!("not connected to {}: {why}", self.host()))
    }

    fn probe_row(&self, family: Family) -> Option<super::ProbeRow> {
        let snapshot = self.lock();
        let status = snapshot.status.as_ref()?;
        status
            .probes
            .iter()
            .find(|p| p.family == family.as_str())
            .cloned()
    }

    fn enforcement(&self) -> String {
        self.lock()
            .status
            .as_ref()
            .map(|s| s.enforcement.clone())
            .unwrap_or_default()
    }
}

/// The remote's deny entry as the view lists it.
fn deny_row(entry: super::DenyEntry) -> DenyRow {
    DenyRow {
        id: entry.id,
        target: entry.target,
        created: entry.created,
        expires: entry.expires,
        by: entry.by,
        rule: entry.rule,
        reason: entry.reason,
    }
}

/// The remote's rule as the rules view lists it.
fn rule_info(row: RuleRow) -> RuleInfo {
    RuleInfo {
        name: row.name,
        label: row.label,
        description: row.description,
        doc: RuleDoc::default(),
        score: if row.score.is_finite() {
            row.score
        } else {
            0.0
        },
        action: match row.action.as_str() {
            "alert" => Action::Alert,
            "simulate_block" => Action::SimulateBlock,
            "block" => Action::Block,
            _ => Action::Log,
        },
        tags: row.tags,
        enabled: row.enabled,
        hits: row.hits,
        file: row.file.into(),
        line: row.line,
        event_types: row
            .event_types
            .iter()
            .filter_map(|t| EventType::from_name(t))
            .collect(),
    }
}

/// The probe switches of the remote machine.
pub struct RemoteProbes(pub Arc<Remote>);

impl Probes for RemoteProbes {
    fn state(&self, family: Family) -> ProbeState {
        match self.0.probe_row(family).as_ref().map(|p| p.state.as_str()) {
            Some("on") => ProbeState::On,
            Some("off") => ProbeState::Off,
            Some("replay") => ProbeState::Replay,
            _ => ProbeState::Unavailable,
        }
    }

    fn set_enabled(&mut self, family: Family, on: bool) -> Result<(), String> {
        self.0.reachable()?;
        self.0
            .client
            .set_probe(family.as_str(), on)
            .map_err(|e| e.one_line())?;
        let mut snapshot = self.0.lock();
        if let Some(row) = snapshot
            .status
            .as_mut()
            .and_then(|s| s.probes.iter_mut().find(|p| p.family == family.as_str()))
        {
            row.state = if on { "on" } else { "off" }.to_string();
        }
        Ok(())
    }

    /// The remote's kernel losses come with its other losses (its status).
    fn kernel_losses(&self) -> KernelLosses {
        KernelLosses::default()
    }

    fn unavailable_reason(&self, family: Family) -> Option<String> {
        match self.0.probe_row(family) {
            Some(row) => row.why_unavailable,
            None => Some(format!("{} has not said", self.0.host())),
        }
    }
}

/// The remote machine's rule engine.
pub struct RemoteRules(pub Arc<Remote>);

impl RuleControl for RemoteRules {
    fn count(&self) -> usize {
        self.0.lock().status.as_ref().map_or(0, |s| s.rules)
    }

    fn reload(&self) -> Result<String, String> {
        self.0.reachable()?;
        let summary = self.0.client.reload_rules().map_err(|e| e.one_line())?;
        if let Ok(status) = self.0.client.status() {
            self.0.take_status(status);
        }
        Ok(format!("{summary} (on {})", self.0.host()))
    }

    fn list(&self) -> Vec<RuleInfo> {
        let known = {
            let mut snapshot = self.0.lock();
            snapshot.rules_wanted_at = Some(Instant::now());
            snapshot.rules.clone()
        };
        match known {
            Some(rules) => rules,
            // The first time: read now, so the view does not open empty.
            None => {
                self.0.read_rules();
                self.0.lock().rules.clone().unwrap_or_default()
            }
        }
    }

    fn set_enabled(&self, name: &str, enabled: bool) -> Result<(), String> {
        self.0.reachable()?;
        self.0
            .client
            .set_rule(name, enabled)
            .map_err(|e| e.one_line())?;
        // The view lists the rules again at once: from the remote, with the change.
        self.0.read_rules();
        Ok(())
    }
}

/// Blocking on the remote machine: simulated (`b`) and real (`B`), through its API.
pub struct RemoteResponse(pub Arc<Remote>);

/// The API's `target` for a deny target.
fn target_spec(deny: &DenyTarget) -> Value {
    match deny {
        DenyTarget::ExecPath(path) => json!({ "exec": path }),
        DenyTarget::ExecName(name) => json!({ "exec": name }),
        DenyTarget::Connect(ip, 0) => json!({ "connect": ip.to_string() }),
        DenyTarget::Connect(ip, port) => {
            json!({ "connect": crate::app::endpoint(*ip, *port) })
        }
    }
}

impl Response for RemoteResponse {
    fn simulate_block(&mut self, target: &BlockTarget, event: &crate::event::Event) -> String {
        let what = target.describe(event);
        let outcome = self.0.reachable().and_then(|()| {
            let deny = deny_target(target, event)?;
            self.0
                .client
                .simulate_deny(target_spec(&deny))
                .map_err(|e| e.one_line())
        });
        match outcome {
            Ok(outcome) => format!("{} on {}: {outcome}", what, self.0.host()),
            Err(why) => format!("would block {what}: {why}"),
        }
    }

    fn plan_enforce(
        &self,
        target: &BlockTarget,
        event: &crate::event::Event,
    ) -> Result<EnforcePlan, String> {
        let host = self.0.host();
        let enforcement = self.0.enforcement();
        if enforcement != "enforce" {
            return Err(format!(
                "real enforcement is off on {host} ({enforcement}): its [response] enforce \
                 decides"
            ));
        }
        let deny = deny_target(target, event)?;
        let reason = if event.analysis.label.is_empty() {
            format!("{} selected in a remote terminal UI", event.event_type)
        } else {
            event.analysis.label.clone()
        };
        Ok(EnforcePlan {
            target: target.clone(),
            question: format!("deny {deny} on {host}"),
            deny,
            by: target.describe(event),
            reason,
        })
    }

    fn enforce(&mut self, plan: &EnforcePlan) -> Result<String, String> {
        self.0.reachable()?;
        let entry = self
            .0
            .client
            .add_deny(target_spec(&plan.deny), &plan.reason)
            .map_err(|e| e.one_line())?;
        Ok(format!(
            "denied {} on {} (entry #{}; D lists the entries)",
            entry.target,
            self.0.host(),
            entry.id
        ))
    }

    fn denies(&self) -> Result<Vec<DenyRow>, String> {
        match &self.0.lock().denies {
            Some(denies) => denies.clone(),
            None => Ok(Vec::new()),
        }
    }

    fn unblock(&mut self, id: u32) -> Result<String, String> {
        self.0.reachable()?;
        let target = self.0.client.remove_deny(id).map_err(|e| e.one_line())?;
        if let Some(Ok(rows)) = &mut self.0.lock().denies {
            rows.retain(|r| r.id != id);
        }
        // (The lock above is released: `host` takes it again.)
        Ok(format!("lifted {target} on {}", self.0.host()))
    }
}

/// The link, as the header shows it.
pub struct RemoteLinkView(pub Arc<Remote>);

impl RemoteLink for RemoteLinkView {
    fn view(&self) -> LinkView {
        let status = self.0.link.status();
        let in_secs = |at: Instant| at.saturating_duration_since(Instant::now()).as_secs() + 1;
        LinkView {
            host: self.0.host(),
            phase: match status.state {
                LinkState::Connecting => LinkPhase::Connecting,
                LinkState::Connected => LinkPhase::Connected,
                LinkState::Reconnecting { retry_at } => LinkPhase::Reconnecting {
                    in_secs: in_secs(retry_at),
                },
                LinkState::Unauthorised { retry_at } => LinkPhase::Unauthorised {
                    in_secs: in_secs(retry_at),
                },
            },
            lost: status.lost_remotely.saturating_add(status.lost_locally),
            why: status.why,
        }
    }
}

/// The remote's history (`/api/v1/history`), read by a thread of its own; the pages come
/// back through the UI's loop as the local history's do.
pub struct RemoteHistory {
    remote: Arc<Remote>,
    requests: std::sync::mpsc::Sender<HistoryRequest>,
}

impl RemoteHistory {
    pub fn start(remote: Arc<Remote>, replies: mpsc::UnboundedSender<HistoryReply>) -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<HistoryRequest>();
        let reader = remote.clone();
        // Without the thread every request is answered with the error (no reply is lost).
        let _ = std::thread::Builder::new()
            .name("secmon-remote-history".to_string())
            .spawn(move || {
                while let Ok(request) = rx.recv() {
                    let reply = HistoryReply {
                        generation: request.generation,
                        result: history_page(&reader, &request),
                    };
                    if replies.send(reply).is_err() {
                        return;
                    }
                }
            });
        RemoteHistory {
            remote,
            requests: tx,
        }
    }
}

impl HistorySource for RemoteHistory {
    fn request(&mut self, request: HistoryRequest) -> Option<HistoryReply> {
        let generation = request.generation;
        match self.requests.send(request) {
            Ok(()) => None,
            Err(_) => Some(HistoryReply {
                generation,
                result: Err("the history reader stopped".to_string()),
            }),
        }
    }

    fn describe(&self) -> String {
        format!("the history of {}", self.remote.host())
    }
}

/// One page of the remote's history for the view's query line.
fn history_page(
    remote: &Remote,
    request: &HistoryRequest,
) -> Result<Vec<(crate::event::Event, HistoryCursor)>, String> {
    let query = history_query(&request.query, request.before, request.limit)?;
    let page = remote.client.history(&query).map_err(|e| match e {
        RemoteError::Refused { status: 404, .. } => {
            format!(
                "{} keeps no history ([storage] enabled = false there)",
                remote.host()
            )
        }
        e => e.one_line(),
    })?;
    // The API gives the cursor of the page's end only: every row but the last carries one
    // that is never used (the view asks for the page after its last row).
    let next = page.next.as_deref().and_then(parse_cursor);
    let mut rows = Vec::with_capacity(page.events.len());
    for value in page.events.into_iter().take(request.limit) {
        if let Some(event) = super::event_from(value) {
            let cursor = next.unwrap_or(HistoryCursor { ts_ns: 0, id: 0 });
            rows.push((event, cursor));
        }
    }
    Ok(rows)
}

/// `ts_ns:id`, the API's `next`.
fn parse_cursor(text: &str) -> Option<HistoryCursor> {
    let (ts, id) = text.split_once(':')?;
    Some(HistoryCursor {
        ts_ns: ts.parse().ok()?,
        id: id.parse().ok()?,
    })
}

/// The API's query string for the view's query line (the options of `secmon-tui history`).
pub fn history_query(
    line: &str,
    before: Option<HistoryCursor>,
    limit: usize,
) -> Result<String, String> {
    let args = crate::history_cli::parse_query(line)?;
    let mut params: Vec<(&str, String)> = Vec::new();
    let mut put = |name: &'static str, value: Option<String>| {
        if let Some(value) = value {
            params.push((name, value));
        }
    };
    put("last", args.last);
    put("since", args.since);
    put("until", args.until);
    put(
        "type",
        (!args.types.is_empty()).then(|| args.types.join(",")),
    );
    put("process", args.process);
    put("pid", args.pid.map(|p| p.to_string()));
    put("path", args.path);
    put("ip", args.ip);
    put("min_risk", args.min_risk.map(|r| r.to_string()));
    put("label", args.label);
    put("rule", args.rule);
    put("limit", Some(limit.min(1000).to_string()));
    put("before", before.map(|c| format!("{}:{}", c.ts_ns, c.id)));
    Ok(params
        .iter()
        .map(|(name, value)| format!("{name}={}", path_segment(value)))
        .collect::<Vec<_>>()
        .join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::{RemoteUrl, Roots, Token};
    use axum::{
        Json, Router,
        http::StatusCode,
        routing::{delete, get, post, put},
    };

    /// A fake controller on loopback whose answers are hostile or refusals, served by a
    /// runtime of its own (the adapters' calls block, as on the UI's loop).
    fn fake_controller() -> (tokio::runtime::Runtime, RemoteUrl) {
        let refuse = |status: StatusCode, error: &'static str| {
            move || async move { (status, Json(json!({ "error": error }))) }
        };
        let app = Router::new()
            .route(
                "/api/v1/probes/{family}",
                put(refuse(StatusCode::CONFLICT, "no probes\nhere: \u{1b}[2J")),
            )
            .route(
                "/api/v1/rules/{name}",
                put(refuse(
                    StatusCode::FORBIDDEN,
                    "cross-origin request refused",
                )),
            )
            .route(
                "/api/v1/denies",
                post(refuse(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "exec path /bin/bash is not blocked: /bin/bash is protected",
                ))
                .get(|| async {
                    Json(json!({"enforcement": "enforce", "denies": [
                        {"id": 1, "target": "exec path /tmp/x",
                         "created": "2026-12-02T12:00:00Z", "by": "b", "reason": "r"}
                    ]}))
                }),
            )
            .route(
                "/api/v1/denies/{id}",
                delete(|| async {
                    Json(json!({"ok": true, "deny": {"target": "exec path /tmp/x"}}))
                }),
            )
            .route(
                "/api/v1/rules/reload",
                post(refuse(StatusCode::UNAUTHORIZED, "wrong bearer token")),
            )
            .route(
                "/api/v1/status",
                get(|| async { Json(json!({"host": "web1"})) }),
            );
        let runtime = tokio::runtime::Runtime::new().expect("a runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        runtime.spawn(async move { axum::serve(listener, app).await });
        let url = RemoteUrl::parse(&format!("http://127.0.0.1:{port}")).expect("a URL");
        (runtime, url)
    }

    fn remote(url: RemoteUrl, link: Arc<LinkShared>) -> (Arc<Remote>, Arc<Losses>) {
        let client = Client::new(url, Token::for_test("t"), &Roots::default());
        let losses = Arc::new(Losses::new());
        let status = RemoteStatus {
            host: "web1".to_string(),
            enforcement: "enforce".to_string(),
            probes: vec![super::super::ProbeRow {
                family: "file".to_string(),
                state: "on".to_string(),
                why_unavailable: None,
            }],
            ..RemoteStatus::default()
        };
        (Remote::new(client, status, link, losses.clone()), losses)
    }

    #[test]
    fn the_remotes_refusals_are_one_line_each_and_change_nothing() {
        let (_runtime, url) = fake_controller();
        let (remote, _) = remote(url, Arc::new(LinkShared::default()));
        let mut probes = RemoteProbes(remote.clone());
        let error = probes.set_enabled(Family::File, false).expect_err("409");
        assert!(
            error.contains("refused (409)") && error.contains("no probes here"),
            "{error}"
        );
        assert!(!error.contains('\n'), "{error:?}");
        assert_eq!(
            probes.state(Family::File),
            ProbeState::On,
            "a refusal changes nothing"
        );
        let error = RemoteRules(remote.clone())
            .set_enabled("a", false)
            .expect_err("403");
        assert!(error.contains("refused (403)"), "{error}");
        let error = RemoteRules(remote.clone()).reload().expect_err("401");
        assert!(error.contains("refused the token"), "{error}");

        let mut response = RemoteResponse(remote.clone());
        let mut event = crate::event::Event::new(EventType::ProcessExec, chrono::Utc::now());
        event.pid = 42;
        event.exe = "/bin/bash".into();
        let plan = response
            .plan_enforce(&BlockTarget::Process(42), &event)
            .expect("the remote enforces: the plan is the remote's to refuse");
        assert_eq!(plan.question, "deny exec path /bin/bash on web1");
        let error = response.enforce(&plan).expect_err("422");
        assert!(error.contains("is protected"), "{error}");
        assert_eq!(
            response.unblock(1).expect("lifted"),
            "lifted exec path /tmp/x on web1"
        );
    }

    #[test]
    fn keys_are_refused_at_once_while_the_link_is_down() {
        let (_runtime, url) = fake_controller();
        let link = Arc::new(LinkShared::default());
        let (remote, _) = remote(url, link.clone());
        link.set(
            LinkState::Reconnecting {
                retry_at: Instant::now(),
            },
            None,
        );
        let error = RemoteProbes(remote.clone())
            .set_enabled(Family::File, false)
            .expect_err("down");
        assert_eq!(
            error,
            "not connected to web1: the link is down, reconnecting"
        );
        link.set(
            LinkState::Unauthorised {
                retry_at: Instant::now(),
            },
            None,
        );
        let error = RemoteResponse(remote).unblock(1).expect_err("refused");
        assert_eq!(error, "not connected to web1: it refused the token");
    }

    #[test]
    fn the_remotes_losses_are_added_once_and_again_after_its_restart() {
        let (_runtime, url) = fake_controller();
        let (remote, losses) = remote(url, Arc::new(LinkShared::default()));
        let status = |n: u64| RemoteStatus {
            losses: json!({ "ring_buffer_full": n, "not_a_reason": 99 })
                .as_object()
                .cloned()
                .unwrap_or_default(),
            ..RemoteStatus::default()
        };
        remote.take_status(status(3));
        remote.take_status(status(3));
        assert_eq!(losses.get(Loss::RingBufferFull), 3);
        remote.take_status(status(5));
        assert_eq!(losses.get(Loss::RingBufferFull), 5);
        // The remote restarted: its counts start again from zero, and all of them are new.
        remote.take_status(status(2));
        assert_eq!(losses.get(Loss::RingBufferFull), 7);
        assert_eq!(losses.snapshot().total(), 7);
    }

    #[test]
    fn history_queries_become_api_parameters() {
        assert_eq!(
            history_query("--last 24h", None, 500).expect("parses"),
            "last=24h&limit=500"
        );
        let query = history_query(
            "--last 2h --type process_exec,file_open --process 'cu rl' --min-risk 0.6",
            Some(HistoryCursor { ts_ns: 17, id: 5 }),
            5000,
        )
        .expect("parses");
        assert_eq!(
            query,
            "last=2h&type=process_exec%2Cfile_open&process=cu%20rl&min_risk=0.6&limit=1000&before=17%3A5"
        );
        assert!(history_query("--bogus", None, 10).is_err());
        assert!(history_query("--last '2h", None, 10).is_err());
    }

    #[test]
    fn cursors_parse_or_are_ignored() {
        assert_eq!(
            parse_cursor("1796223143986302463:5521"),
            Some(HistoryCursor {
                ts_ns: 1796223143986302463,
                id: 5521
            })
        );
        for bad in ["", "1", "a:b", "1:2:3", "99999999999999999999:1"] {
            assert_eq!(parse_cursor(bad), None, "{bad}");
        }
    }

    #[test]
    fn deny_targets_become_api_targets() {
        let ip = "203.0.113.7".parse().expect("an address");
        assert_eq!(
            target_spec(&DenyTarget::Connect(ip, 4444)),
            json!({"connect": "203.0.113.7:4444"})
        );
        assert_eq!(
            target_spec(&DenyTarget::Connect("::1".parse().expect("v6"), 80)),
            json!({"connect": "[::1]:80"})
        );
        assert_eq!(
            target_spec(&DenyTarget::ExecPath("/tmp/x".to_string())),
            json!({"exec": "/tmp/x"})
        );
    }
}
