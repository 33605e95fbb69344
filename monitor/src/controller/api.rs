//! `/api/v1`: JSON for API clients (described by `/api/v1/openapi.json`). The actions here
//! ([`set_probe`], [`set_rule`], [`reload_rules`], [`add_deny`], [`remove_deny`],
//! [`simulate_deny`]) are the only way the controller changes anything; the pages call the
//! same functions. Each is written to the audit log with the client's address, and blocks
//! go through the enforcer's own checks (the protected set, the allowlist), as from the
//! terminal UI and the control socket.
use axum::{
    Extension, Json, Router,
    extract::{Path, Query, State, WebSocketUpgrade},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::{delete, get, post, put},
};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{
    AppState, MAX_HISTORY_PAGE, SimulatedBlock,
    actions::Acting,
    assets,
    hub::{RECENT_ALERTS, family_index},
    live::{self, LiveFilter},
    machines,
    security::{Caller, error},
};
use crate::{
    app::{ProbeState, Probes, RuleControl},
    event::{EventType, Family},
    history_cli::{self, HistoryArgs},
    losses::Loss,
    response::control::TargetSpec,
    storage::{Bucket, Cursor, Filter, History},
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/openapi.json", get(openapi))
        .route("/status", get(status))
        .route("/demo", get(demo))
        .route("/events", get(events))
        .route("/alerts", get(alerts))
        .route("/history", get(history))
        .route("/history/counts", get(history_counts))
        .route("/rules", get(rules))
        .route("/rules/reload", post(rules_reload))
        .route("/rules/validate", post(rules_validate))
        .route("/rules/{name}", put(rule_put))
        .route("/probes", get(probes))
        .route("/probes/{family}", put(probe_put))
        .route("/denies", get(denies).post(deny_add))
        .route("/denies/simulate", post(deny_simulate))
        .route("/denies/{id}", delete(deny_remove))
        .route("/alerts/counts", get(machines::api::alert_counts))
        .route(
            "/machines",
            get(machines::api::list).post(machines::api::add),
        )
        .route("/machines/{name}", delete(machines::api::remove))
        .route(
            "/machines/{name}/api/{*rest}",
            get(machines::api::remote_api)
                .post(machines::api::remote_api)
                .put(machines::api::remote_api)
                .delete(machines::api::remote_api),
        )
        .route("/all-machines/alerts", get(machines::api::all_alerts))
        .route("/hosts", get(machines::nats_pages::list))
        .route("/hosts/{host}/events", get(machines::nats_pages::events))
        .route("/hosts/{host}/history", get(machines::nats_pages::history))
        .route("/hosts/{host}/control", post(machines::nats_pages::control))
        .fallback(no_such_endpoint)
        .layer(axum::middleware::map_response(json_errors))
}

async fn no_such_endpoint() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no such endpoint (the API is described at /api/v1/openapi.json)",
    )
}

/// Largest body of one of axum's own refusals read back to be wrapped (they are one line).
const REFUSAL_TEXT: usize = 4096;

/// axum's own refusals (a body that is not the JSON expected, or too large; a query that does
/// not parse; a method the endpoint does not take) come as plain text: they are sent as
/// `{"error": "..."}` like every other error of the API, with their status.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|kind| kind.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, REFUSAL_TEXT)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_string())
        .unwrap_or_default();
    let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
        format!(
            "the request body is larger than the {} KiB accepted",
            super::MAX_BODY / 1024
        )
    } else if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("refused")
            .to_lowercase()
    } else {
        text
    };
    let mut answer = error(status, &message);
    // What else the refusal said (`Allow` on a 405) goes along.
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            answer.headers_mut().append(name.clone(), value.clone());
        }
    }
    answer
}

pub use super::actions::{ActionError, DenyRequest, describe_target};

fn failed((status, message): ActionError) -> Response {
    error(status, &message)
}

async fn openapi() -> Response {
    match assets::find("openapi.json") {
        Some((kind, bytes)) => ([(header::CONTENT_TYPE, kind)], bytes).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

// ---- status -------------------------------------------------------------------------------

#[derive(Serialize)]
pub struct Status {
    pub host: String,
    pub version: &'static str,
    pub started: String,
    pub uptime_secs: u64,
    pub probes: Vec<ProbeRow>,
    pub events_total: u64,
    pub alerts_total: u64,
    pub events_per_sec_1s: f64,
    pub events_per_sec_60s: f64,
    pub losses: serde_json::Map<String, Value>,
    pub lost_total: u64,
    pub rules: usize,
    pub enforcement: &'static str,
    pub web_clients: usize,
    pub history: Option<String>,
}

pub fn status_of(shared: &AppState) -> Status {
    let totals = shared.hub.totals();
    let snapshot = shared.controls.losses.snapshot();
    let mut losses = serde_json::Map::new();
    let mut lost_total = 0;
    for (loss, count) in crate::losses::Loss::ALL
        .into_iter()
        .map(|l| (l, snapshot.get(l)))
    {
        lost_total += count;
        losses.insert(loss.as_str().to_string(), json!(count));
    }
    Status {
        host: shared.host.clone(),
        version: env!("CARGO_PKG_VERSION"),
        started: shared.hub.started_at.to_rfc3339(),
        uptime_secs: shared.hub.started.elapsed().as_secs(),
        probes: probe_rows(shared),
        events_total: totals.events,
        alerts_total: totals.alerts,
        events_per_sec_1s: shared.hub.rate(1),
        events_per_sec_60s: shared.hub.rate(60),
        losses,
        lost_total,
        rules: shared.controls.rules.count(),
        enforcement: shared.controls.enforce_mode,
        web_clients: shared.hub.clients(),
        history: shared
            .controls
            .history
            .as_ref()
            .map(|p| p.display().to_string()),
    }
}

async fn status(State(shared): State<AppState>) -> Json<Status> {
    Json(status_of(&shared))
}

/// The running demo's narration (`secmon-tui demo --serve`); 404 when no demo runs.
async fn demo(State(shared): State<AppState>) -> Response {
    match shared.controls.demo.current() {
        Some(snapshot) => Json(&*snapshot).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "no demo runs here (secmon-tui demo --serve shows one)",
        ),
    }
}

// ---- live events and alerts ---------------------------------------------------------------

async fn events(
    State(shared): State<AppState>,
    Query(filter): Query<LiveFilter>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let filter = match filter.compile() {
        Ok(filter) => filter,
        Err(why) => return error(StatusCode::BAD_REQUEST, &why),
    };
    let Some(feed) = shared.hub.subscribe() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many live clients connected; try again later",
        );
    };
    upgrade
        .max_message_size(live::MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| live::json_session(socket, feed, filter))
}

#[derive(Deserialize)]
struct Limit {
    limit: Option<usize>,
}

async fn alerts(State(shared): State<AppState>, Query(q): Query<Limit>) -> Response {
    let limit = q.limit.unwrap_or(100).min(RECENT_ALERTS);
    Json(json!({ "alerts": shared.hub.recent_alerts(limit) })).into_response()
}

// ---- history ------------------------------------------------------------------------------

/// The query string of `/api/v1/history`: the options of `secmon-tui history`, same meaning.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    pub last: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    /// Comma-separated types or families.
    #[serde(rename = "type")]
    pub types: Option<String>,
    pub process: Option<String>,
    pub pid: Option<u32>,
    pub path: Option<String>,
    pub ip: Option<String>,
    pub min_risk: Option<f64>,
    pub label: Option<String>,
    pub rule: Option<String>,
    /// Page size (at most [`MAX_HISTORY_PAGE`]).
    pub limit: Option<usize>,
    /// Events older than this one (`next` of the previous page): `TS_NS:ID`.
    pub before: Option<String>,
    /// `/history/counts`: `hour` or `day`.
    pub bucket: Option<String>,
}

impl HistoryQuery {
    fn args(&self) -> HistoryArgs {
        HistoryArgs {
            last: self.last.clone().filter(|s| !s.is_empty()),
            since: self.since.clone().filter(|s| !s.is_empty()),
            until: self.until.clone().filter(|s| !s.is_empty()),
            types: self
                .types
                .iter()
                .flat_map(|t| t.split(','))
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(String::from)
                .collect(),
            process: self.process.clone().filter(|s| !s.is_empty()),
            pid: self.pid,
            path: self.path.clone().filter(|s| !s.is_empty()),
            ip: self.ip.clone().filter(|s| !s.is_empty()),
            min_risk: self.min_risk,
            label: self.label.clone().filter(|s| !s.is_empty()),
            rule: self.rule.clone().filter(|s| !s.is_empty()),
            limit: 0,
            json: true,
            table: false,
            stats: None,
        }
    }

    /// The storage filter, or what is wrong with the query.
    pub fn filter(&self) -> Result<Filter, String> {
        if self.last.as_deref().is_some_and(|s| !s.is_empty())
            && self.since.as_deref().is_some_and(|s| !s.is_empty())
        {
            // As `secmon-tui history` refuses --last with --since.
            return Err("last and since exclude each other: give one".to_string());
        }
        let mut filter = history_cli::build_filter(&self.args(), Utc::now(), &chrono::Local)
            .map_err(|e| e.to_string())?;
        filter.limit = Some(self.limit.unwrap_or(100).clamp(1, MAX_HISTORY_PAGE));
        if let Some(before) = &self.before {
            let parsed = before
                .split_once(':')
                .and_then(|(ts, id)| Some((ts.parse().ok()?, id.parse().ok()?)));
            let Some((ts_ns, id)) = parsed else {
                return Err(format!(
                    "before: {before:?} is not a page cursor (TS_NS:ID)"
                ));
            };
            filter.before = Some(Cursor { ts_ns, id });
        }
        Ok(filter)
    }
}

/// One page of stored events, newest first, and the cursor of the next page.
#[derive(Serialize)]
pub struct HistoryPage {
    pub events: Vec<HistoryRow>,
    pub next: Option<String>,
}

/// One row of `/api/v1/history`: the event as `--json` writes it, plus `count` and
/// `last_timestamp` when the row stands for several identical consecutive events (as
/// `secmon-tui history --json` prints it; docs/history.md, "Coalesced events").
#[derive(Debug, Serialize)]
pub struct HistoryRow {
    #[serde(flatten)]
    pub event: crate::event::Event,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_timestamp: Option<chrono::DateTime<Utc>>,
}

impl From<crate::storage::HistoryEvent> for HistoryRow {
    fn from(row: crate::storage::HistoryEvent) -> HistoryRow {
        let coalesced = row.count > 1;
        HistoryRow {
            event: row.event,
            count: coalesced.then_some(row.count),
            last_timestamp: row.last_timestamp.filter(|_| coalesced),
        }
    }
}

/// Runs `query` against the history database on a blocking thread.
pub async fn history_page(
    shared: &AppState,
    query: HistoryQuery,
) -> Result<HistoryPage, ActionError> {
    let Some(path) = shared.controls.history.clone() else {
        return Err((
            StatusCode::NOT_FOUND,
            "the history is off ([storage] enabled = false)".to_string(),
        ));
    };
    let filter = query.filter().map_err(|e| (StatusCode::BAD_REQUEST, e))?;
    let limit = filter.limit.unwrap_or(MAX_HISTORY_PAGE);
    let rows = tokio::task::spawn_blocking(move || {
        History::open(&path).and_then(|history| history.query(&filter))
    })
    .await
    .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    // The next page is older than the oldest event of this one.
    let next = (rows.len() >= limit)
        .then(|| {
            rows.iter()
                .map(|r| r.cursor())
                .min_by_key(|c| (c.ts_ns, c.id))
        })
        .flatten()
        .map(|c| format!("{}:{}", c.ts_ns, c.id));
    Ok(HistoryPage {
        events: rows.into_iter().rev().map(HistoryRow::from).collect(),
        next,
    })
}

async fn history(State(shared): State<AppState>, Query(query): Query<HistoryQuery>) -> Response {
    match history_page(&shared, query).await {
        Ok(page) => Json(page).into_response(),
        Err(e) => failed(e),
    }
}

/// Counts per bucket and event type, label and rule.
pub async fn history_counts_of(
    shared: &AppState,
    query: HistoryQuery,
) -> Result<Value, ActionError> {
    let Some(path) = shared.controls.history.clone() else {
        return Err((
            StatusCode::NOT_FOUND,
            "the history is off ([storage] enabled = false)".to_string(),
        ));
    };
    let bucket = match query.bucket.as_deref().unwrap_or("hour") {
        "hour" => Bucket::Hour,
        "day" => Bucket::Day,
        other => {
            return Err((
                StatusCode::BAD_REQUEST,
                format!("bucket: {other:?} is neither hour nor day"),
            ));
        }
    };
    let mut filter = query.filter().map_err(|e| (StatusCode::BAD_REQUEST, e))?;
    filter.limit = None;
    let offset = chrono::Local::now().offset().local_minus_utc();
    let rows = tokio::task::spawn_blocking(move || {
        History::open(&path).and_then(|history| history.stats(&filter, bucket, offset))
    })
    .await
    .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    let counts: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "start": r.start.to_rfc3339(),
                "by": r.by.as_str(),
                "key": r.key,
                "count": r.count,
            })
        })
        .collect();
    Ok(json!({ "bucket": bucket.as_str(), "counts": counts }))
}

async fn history_counts(
    State(shared): State<AppState>,
    Query(query): Query<HistoryQuery>,
) -> Response {
    match history_counts_of(&shared, query).await {
        Ok(value) => Json(value).into_response(),
        Err(e) => failed(e),
    }
}

// ---- rules --------------------------------------------------------------------------------

async fn rules(State(shared): State<AppState>) -> Response {
    let rules: Vec<Value> = shared
        .controls
        .rules
        .list()
        .into_iter()
        .map(|r| {
            json!({
                "name": r.name,
                "label": r.label,
                "description": r.description,
                "score": r.score,
                "action": r.action.as_str(),
                "tags": r.tags,
                "enabled": r.enabled,
                "hits": r.hits,
                "file": r.file.display().to_string(),
                "line": r.line,
                "event_types": r.event_types.iter().map(|t| t.as_str()).collect::<Vec<_>>(),
            })
        })
        .collect();
    Json(json!({ "rules": rules })).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Switch {
    pub enabled: bool,
}

/// Switches rule `name` on or off.
pub fn set_rule(
    shared: &AppState,
    caller: &Caller,
    name: &str,
    on: bool,
) -> Result<String, ActionError> {
    acting(shared, caller).set_rule(name, on)
}

async fn rule_put(
    State(shared): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Json(switch): Json<Switch>,
) -> Response {
    match set_rule(&shared, &caller, &name, switch.enabled) {
        Ok(done) => Json(json!({ "ok": true, "done": done })).into_response(),
        Err(e) => failed(e),
    }
}

/// Re-reads the rule files; on an error the previous rules stay in force.
pub fn reload_rules(shared: &AppState, caller: &Caller) -> Result<String, ActionError> {
    acting(shared, caller).reload_rules()
}

async fn rules_reload(
    State(shared): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Response {
    match reload_rules(&shared, &caller) {
        Ok(summary) => Json(json!({ "ok": true, "summary": summary })).into_response(),
        Err(e) => failed(e),
    }
}

#[derive(Deserialize)]
struct ValidateQuery {
    /// The file's name (`x.json`): a loaded file of that name is replaced by the body.
    name: Option<String>,
}

/// Checks a rule file's text (the body) beside the loaded files, as `secmon-tui rules check`
/// would; nothing is loaded.
async fn rules_validate(
    State(shared): State<AppState>,
    Query(q): Query<ValidateQuery>,
    body: String,
) -> Response {
    let name = q.name.unwrap_or_else(|| "uploaded.json".to_string());
    if name.contains('/') || !name.ends_with(".json") {
        return error(
            StatusCode::BAD_REQUEST,
            "name: a file name ending in .json, no directory",
        );
    }
    let dirs = shared.controls.rules.dirs().to_vec();
    let checked =
        tokio::task::spawn_blocking(move || crate::rules::RuleSet::check_text(&dirs, &name, &body))
            .await;
    let checked = match checked {
        Ok(checked) => checked,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    match checked {
        Ok(summary) => Json(json!({ "ok": true, "summary": summary })).into_response(),
        Err(problem) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({ "ok": false, "error": problem })),
        )
            .into_response(),
    }
}

// ---- probes -------------------------------------------------------------------------------

#[derive(Serialize, Clone)]
pub struct ProbeRow {
    pub family: &'static str,
    /// `on`, `off`, `unavailable` or `replay`.
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why_unavailable: Option<String>,
}

pub fn probe_rows(shared: &AppState) -> Vec<ProbeRow> {
    Family::ALL
        .iter()
        .map(|&family| {
            let (state, why) = match &shared.controls.capture {
                Some(capture) => (capture.state(family), capture.unavailable_reason(family)),
                None => (ProbeState::Replay, None),
            };
            ProbeRow {
                family: family.as_str(),
                state: match state {
                    ProbeState::On => "on",
                    ProbeState::Off => "off",
                    ProbeState::Unavailable => "unavailable",
                    ProbeState::Replay => "replay",
                },
                why_unavailable: why,
            }
        })
        .collect()
}

async fn probes(State(shared): State<AppState>) -> Response {
    Json(json!({ "probes": probe_rows(&shared) })).into_response()
}

/// Switches a probe family on or off in the kernel.
pub fn set_probe(
    shared: &AppState,
    caller: &Caller,
    family: &str,
    on: bool,
) -> Result<String, ActionError> {
    acting(shared, caller).set_probe(family, on)
}

async fn probe_put(
    State(shared): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(family): Path<String>,
    Json(switch): Json<Switch>,
) -> Response {
    match set_probe(&shared, &caller, &family, switch.enabled) {
        Ok(done) => Json(json!({ "ok": true, "done": done })).into_response(),
        Err(e) => failed(e),
    }
}

// ---- deny entries -------------------------------------------------------------------------

async fn denies(State(shared): State<AppState>) -> Response {
    let simulated: Vec<SimulatedBlock> = shared
        .controls
        .simulated
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .rev()
        .cloned()
        .collect();
    match &shared.controls.enforcer {
        Some(enforcer) => Json(json!({
            "enforcement": shared.controls.enforce_mode,
            "denies": enforcer.list(),
            "simulated": simulated,
        }))
        .into_response(),
        None => Json(json!({
            "enforcement": shared.controls.enforce_mode,
            "denies": [],
            "simulated": simulated,
        }))
        .into_response(),
    }
}

/// Adds a deny entry through the enforcer (its protected set and allowlist checks apply).
pub fn add_deny(
    shared: &AppState,
    caller: &Caller,
    request: DenyRequest,
) -> Result<Value, ActionError> {
    acting(shared, caller).add_deny(request)
}

async fn deny_add(
    State(shared): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(request): Json<DenyRequest>,
) -> Response {
    match add_deny(&shared, &caller, request) {
        Ok(value) => (StatusCode::CREATED, Json(value)).into_response(),
        Err(e) => failed(e),
    }
}

/// Lifts deny entry `id`.
pub fn remove_deny(shared: &AppState, caller: &Caller, id: u32) -> Result<Value, ActionError> {
    acting(shared, caller).remove_deny(id)
}

async fn deny_remove(
    State(shared): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<u32>,
) -> Response {
    match remove_deny(&shared, &caller, id) {
        Ok(value) => Json(value).into_response(),
        Err(e) => failed(e),
    }
}

/// What a block of the target would do, without doing it (kept for the deny entries page).
pub fn simulate_deny(
    shared: &AppState,
    caller: &Caller,
    target: &TargetSpec,
) -> Result<SimulatedBlock, ActionError> {
    acting(shared, caller).simulate_deny(target)
}

async fn deny_simulate(
    State(shared): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(request): Json<DenyRequest>,
) -> Response {
    match simulate_deny(&shared, &caller, &request.target) {
        Ok(block) => Json(json!({ "ok": true, "simulated": block })).into_response(),
        Err(e) => failed(e),
    }
}

/// An API or page client acting through [`actions`].
fn acting<'a>(shared: &'a AppState, caller: &Caller) -> Acting<'a> {
    Acting {
        controls: &shared.controls,
        audit: &shared.audit,
        client: caller.addr.to_string(),
        origin: format!("web controller ({})", caller.addr),
    }
}

/// The family index of an event type name (for filters).
pub fn family_of_type(name: &str) -> Option<usize> {
    EventType::ALL
        .iter()
        .find(|t| t.as_str() == name)
        .map(|t| family_index(t.family()))
}

/// The loss reasons with a count (for pages).
pub fn loss_rows(shared: &AppState) -> Vec<(Loss, u64)> {
    shared.controls.losses.snapshot().nonzero().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, EventType};
    use crate::storage::HistoryEvent;

    fn row(count: u64) -> HistoryRow {
        let event = Event::new(EventType::FileOpen, chrono::DateTime::UNIX_EPOCH);
        let last = chrono::DateTime::UNIX_EPOCH + chrono::Duration::milliseconds(900);
        HistoryRow::from(HistoryEvent {
            id: 1,
            event,
            count,
            last_timestamp: Some(last),
        })
    }

    #[test]
    fn a_coalesced_row_carries_its_count_and_last_time_as_history_json_does() {
        let one = serde_json::to_value(row(1)).expect("json");
        assert!(one.get("count").is_none() && one.get("last_timestamp").is_none());
        assert_eq!(one["event_type"], "file_open");
        let three = serde_json::to_value(row(3)).expect("json");
        assert_eq!(three["count"], 3);
        assert_eq!(three["last_timestamp"], "1970-01-01T00:00:00.900Z");
        assert_eq!(three["event_type"], "file_open");
    }

    /// `(method, path)` of every route [`routes`] declares, read from this file's source: a
    /// route added there without a word in openapi.json fails the test below.
    fn declared_routes() -> Vec<(String, String)> {
        let source = include_str!("api.rs");
        let body = source
            .split("pub fn routes()")
            .nth(1)
            .and_then(|rest| rest.split("\n}\n").next())
            .expect("routes() in api.rs");
        // A route may span lines (rustfmt breaks the long ones): each `.route(` up to the next.
        let path = regex::Regex::new(r#"^\s*"([^"]+)""#).expect("regex");
        let method = regex::Regex::new(r"\b(get|post|put|delete|patch)\(").expect("regex");
        let mut found = Vec::new();
        for route in body.split(".route(").skip(1) {
            if let Some(caps) = path.captures(route) {
                for m in method.captures_iter(route) {
                    found.push((m[1].to_string(), format!("/api/v1{}", &caps[1])));
                }
            }
        }
        found
    }

    fn description() -> Value {
        let (_, bytes) = assets::find("openapi.json").expect("openapi.json is embedded");
        serde_json::from_slice(bytes).expect("openapi.json is JSON")
    }

    #[test]
    fn every_route_is_described_and_every_description_is_a_route() {
        let routes = declared_routes();
        assert!(
            routes.len() >= 16,
            "the routes were not all found: {routes:?}"
        );
        let doc = description();
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().expect("paths");
        for (method, path) in &routes {
            let operation = &paths
                .get(path)
                .unwrap_or_else(|| panic!("{path} is not in openapi.json"))[method];
            assert!(
                operation.is_object(),
                "{method} {path} is not in openapi.json"
            );
            assert!(
                operation["responses"]
                    .as_object()
                    .is_some_and(|r| r.keys().any(|k| k.starts_with('2') || k == "101")),
                "{method} {path}: no success response described"
            );
        }
        for (path, item) in paths {
            for method in item.as_object().expect("a path item").keys() {
                assert!(
                    routes.iter().any(|(m, p)| m == method && p == path),
                    "openapi.json describes {method} {path}, which api.rs does not serve"
                );
            }
        }
    }

    #[test]
    fn the_description_refers_only_to_what_it_defines() {
        let doc = description();
        let text = doc.to_string();
        let reference = regex::Regex::new(r##""\$ref":"#/components/([a-zA-Z]+)/([a-zA-Z]+)""##)
            .expect("regex");
        let mut checked = 0;
        for caps in reference.captures_iter(&text) {
            assert!(
                doc["components"][&caps[1]][&caps[2]].is_object(),
                "{}/{} is referred to but not defined",
                &caps[1],
                &caps[2]
            );
            checked += 1;
        }
        assert!(checked > 50, "{checked} references");
        let schemes = &doc["components"]["securitySchemes"];
        assert_eq!(schemes["bearer"]["scheme"], "bearer");
        assert_eq!(
            schemes["cookie"]["name"],
            crate::controller::security::SESSION_COOKIE
        );
        // Every error is `{"error": ...}`.
        assert_eq!(
            doc["components"]["schemas"]["Error"]["required"],
            json!(["error"])
        );
    }

    #[test]
    fn history_pages_refuse_last_with_since() {
        let query = HistoryQuery {
            last: Some("1h".into()),
            since: Some("2026-01-01".into()),
            ..HistoryQuery::default()
        };
        assert!(query.filter().is_err());
        let query = HistoryQuery {
            before: Some("12:x".into()),
            ..HistoryQuery::default()
        };
        assert!(query.filter().is_err());
    }
}
