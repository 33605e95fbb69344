//! Hub mode's per-host page (`/hosts/{host}`: its state, probes, recent alerts and events, its
//! history from JetStream, and control requests) and API (`/api/v1/hosts...`). A host is
//! only ever one the hub has seen on the stream: its name came from a subject token, so a path
//! can never put a wildcard into a control request's subject. Whatever a host sent is escaped
//! (maud) and cleaned of control characters before it is shown; control requests and their
//! outcome go to the hub's audit log.
use axum::{
    Extension, Form, Json, Router,
    extract::{FromRequestParts, Path, Query, State, WebSocketUpgrade},
    http::{HeaderMap, StatusCode, request::Parts},
    response::{Html, IntoResponse, Response},
    routing::{get, post},
};
use chrono::Utc;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::json;

use super::hosts::{HostRow, HostSource, MAX_HISTORY};
use crate::{
    controller::{
        AppState,
        actions::{Action, ControlReply},
        live::LiveFilter,
        pages::{
            layout::{clean, event_row, message, page, short},
            live_page::{LiveScope, live_panel, live_upgrade},
        },
        security::{Caller, error},
    },
    event::{Event, EventType},
    response::control::TargetSpec,
};

/// `/ui/hosts/<host><rest>`, the host's name percent-encoded: a subject token may hold `/`,
/// `?`, `#` or `%`, which a path must not take as they are.
pub fn host_path(host: &str, rest: &str) -> String {
    format!("/ui/hosts/{}{rest}", path_segment(host))
}

/// `/hosts/<host>`: the host's page.
pub fn host_page_path(host: &str) -> String {
    format!("/hosts/{}", path_segment(host))
}

/// `text` as one path segment: unreserved characters as they are, every other byte `%XX`.
pub fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Recent events a host's page and `/api/v1/hosts/{host}/events` show at most.
const RECENT: usize = 200;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/hosts/{host}", get(host_page))
        .route("/ui/hosts/{host}/view", get(host_view_fragment))
        .route("/ui/hosts/{host}/live", get(host_live_socket))
        .route("/ui/hosts/{host}/history", get(history_fragment))
        .route("/ui/hosts/{host}/control", post(control_form))
}

/// Why a request about a host cannot be answered: its status and text.
type Refusal = (StatusCode, String);

/// The hub's hosts, or why there are none (not a hub).
fn hosts(shared: &AppState) -> Result<&dyn HostSource, Refusal> {
    shared
        .machines
        .nats
        .get()
        .map(AsRef::as_ref)
        .ok_or_else(|| {
            (
                StatusCode::NOT_FOUND,
                "not a hub: hosts on NATS are shown by `secmon-tui hub`".to_string(),
            )
        })
}

/// Host `host`, if the hub has seen it.
fn known(shared: &AppState, host: &str) -> Result<HostRow, Refusal> {
    hosts(shared)?.row_of(host).ok_or_else(|| {
        (
            StatusCode::NOT_FOUND,
            format!(
                "no host {:?} has published on NATS",
                crate::sanitize::for_terminal(host)
            ),
        )
    })
}

fn refused((status, why): Refusal) -> Response {
    error(status, &why)
}

/// The path's `{host}`, a host the hub has seen: a handler that takes one is only called for
/// such a host; any other request is refused (404) before it.
pub struct KnownHost(HostRow);

impl FromRequestParts<AppState> for KnownHost {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, shared: &AppState) -> Result<Self, Response> {
        let Path(host) = Path::<String>::from_request_parts(parts, shared)
            .await
            .map_err(IntoResponse::into_response)?;
        known(shared, &host).map(KnownHost).map_err(refused)
    }
}

// ---- API ------------------------------------------------------------------------------------

/// `GET /api/v1/hosts`: every host seen, with its state.
pub async fn list(State(shared): State<AppState>) -> Response {
    match hosts(&shared) {
        Ok(hosts) => {
            Json(json!({ "hosts": hosts.rows(), "feed": hosts.feed_counts() })).into_response()
        }
        Err(refusal) => refused(refusal),
    }
}

#[derive(Deserialize)]
pub struct Limit {
    #[serde(default)]
    limit: Option<usize>,
    /// Only alerts (suspicious or malicious).
    #[serde(default)]
    alerts: bool,
}

/// `GET /api/v1/hosts/{host}/events`: its most recent events as the hub received them,
/// newest first.
pub async fn events(
    State(shared): State<AppState>,
    KnownHost(row): KnownHost,
    Query(limit): Query<Limit>,
) -> Response {
    let events = recent(
        &shared,
        &row.host,
        limit.limit.unwrap_or(RECENT),
        limit.alerts,
    );
    Json(json!({ "host": row.host, "state": row.health.state, "events": events })).into_response()
}

fn recent(shared: &AppState, host: &str, limit: usize, alerts_only: bool) -> Vec<Event> {
    let Some(hub) = shared.machines.nats.get().and_then(|n| n.hub(host)) else {
        return Vec::new();
    };
    let limit = limit.min(RECENT);
    if alerts_only {
        hub.recent_alerts(limit)
    } else {
        hub.recent_events(limit, |_| true)
    }
}

#[derive(Deserialize)]
pub struct HistoryQuery {
    /// How far back, in minutes (default 60).
    #[serde(default)]
    minutes: Option<i64>,
    /// An event type, `alerts`, or `>` (everything; the default).
    #[serde(default, rename = "type")]
    what: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

impl HistoryQuery {
    fn what(&self) -> Result<&str, String> {
        let what = self.what.as_deref().unwrap_or(">");
        let known =
            what == ">" || what == "alerts" || EventType::ALL.iter().any(|t| t.as_str() == what);
        if known {
            Ok(what)
        } else {
            Err("type: an event type, alerts, or > (everything)".to_string())
        }
    }
}

/// Host `host`'s history from the JetStream stream.
async fn read_history(
    shared: &AppState,
    host: &str,
    query: &HistoryQuery,
) -> Result<Vec<Event>, (StatusCode, String)> {
    let what = query.what().map_err(|e| (StatusCode::BAD_REQUEST, e))?;
    let minutes = query.minutes.unwrap_or(60).clamp(1, 60 * 24 * 31);
    let since = Utc::now() - chrono::Duration::minutes(minutes);
    let limit = query.limit.unwrap_or(MAX_HISTORY).min(MAX_HISTORY);
    let Some(hosts) = shared.machines.nats.get() else {
        return Err((StatusCode::NOT_FOUND, "not a hub".to_string()));
    };
    hosts
        .history(host, what, since, limit)
        .await
        .map_err(|e| (StatusCode::BAD_GATEWAY, format!("JetStream: {e}")))
}

/// `GET /api/v1/hosts/{host}/history?minutes=60&type=>&limit=1000`: what the stream holds,
/// oldest first.
pub async fn history(
    State(shared): State<AppState>,
    KnownHost(row): KnownHost,
    Query(query): Query<HistoryQuery>,
) -> Response {
    match read_history(&shared, &row.host, &query).await {
        Ok(events) => Json(json!({ "host": row.host, "events": events })).into_response(),
        Err((status, why)) => error(status, &why),
    }
}

/// Sends `action` to `host` (known) and writes what came of it to the audit log.
async fn send_control(
    shared: &AppState,
    caller: &Caller,
    host: &str,
    action: Action,
) -> Result<ControlReply, String> {
    let Some(hosts) = shared.machines.nats.get() else {
        return Err("not a hub".to_string());
    };
    let target = format!("{host}: {}", action.name());
    let result = hosts.control(host, action).await;
    let (ok, outcome) = match &result {
        Ok(reply) if reply.ok => (true, reply.done.clone().unwrap_or_default()),
        Ok(reply) => (false, reply.error.clone().unwrap_or_default()),
        Err(why) => (false, why.clone()),
    };
    shared.audit.record(
        caller.addr,
        "nats control",
        &target,
        ok,
        &crate::sanitize::for_terminal(&outcome),
    );
    result
}

/// `POST /api/v1/hosts/{host}/control`: a control action (docs/fleet.md, without the token:
/// the hub adds the host's) and the host's reply.
pub async fn control(
    State(shared): State<AppState>,
    Extension(caller): Extension<Caller>,
    KnownHost(row): KnownHost,
    Json(action): Json<Action>,
) -> Response {
    match send_control(&shared, &caller, &row.host, action).await {
        Ok(reply) => Json(reply).into_response(),
        Err(why) => error(StatusCode::BAD_GATEWAY, &why),
    }
}

// ---- pages ----------------------------------------------------------------------------------

/// How often the page redraws its figures.
const REFRESH: &str = "every 2s";

fn state_table(row: &HostRow) -> Markup {
    let health = &row.health;
    html! {
        table.facts {
            tr { th { "state" } td.state { span.machine-state { (health.state.as_str()) }
                @if let Some(why) = &health.error { " " small.why { (clean(why)) } } } }
            tr { th { "version" } td { (clean(health.version.as_deref().unwrap_or("?"))) } }
            tr { th { "uptime" } td { (health.uptime_secs.map(|s| format!("{s} s")).unwrap_or_default()) } }
            tr { th { "events/s" } td { (health.events_per_sec.map(|r| format!("{r:.0}")).unwrap_or_default()) } }
            tr { th { "events" } td { (health.events_total.map(short).unwrap_or_default()) } }
            tr { th { "lost" } td { (health.lost_total.map(short).unwrap_or_default()) } }
            tr { th { "spool" } td { (short(row.spool_bytes)) " bytes" } }
            tr { th { "last status" } td { (health.last_seen.map(|t| t.to_rfc3339()).unwrap_or_else(|| "never".to_string())) } }
        }
    }
}

fn control_vals(host_action: serde_json::Value) -> String {
    host_action.to_string()
}

fn probes_table(row: &HostRow) -> Markup {
    let post = host_path(&row.host, "/control");
    html! {
        table.grid.probes {
            thead { tr { th { "probe family" } th { "state" } th {} } }
            tbody {
                @for (family, state) in &row.probes {
                    tr data-family=(clean(family)) {
                        td { (clean(family)) }
                        td.probe-state { (clean(state)) }
                        td {
                            @if state == "on" || state == "off" {
                                @let enable = state == "off";
                                // Its own swap: it would inherit the redrawn view's outerHTML, and
                                // the answer would replace the place answers go.
                                button.small type="button" hx-post=(post) hx-target="#control-result" hx-swap="innerHTML"
                                    hx-vals=(control_vals(json!({"action": "set_probe", "family": family, "enabled": enable.to_string()}))) {
                                    (if enable { "switch on" } else { "switch off" })
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The parts that are redrawn from the host's statuses: state and probes.
fn host_view(row: &HostRow) -> Markup {
    html! {
        div #host-view hx-get=(host_path(&row.host, "/view")) hx-trigger=(REFRESH) hx-swap="outerHTML" {
            (state_table(row))
            h2 { "Probes" }
            @if row.probes.is_empty() { p.note { "The host has not said its probes yet." } }
            @else { (probes_table(row)) }
        }
    }
}

/// The host's events and alerts as they arrive (the live page's view, of this host only).
fn host_live(shared: &AppState, row: &HostRow) -> Markup {
    let Some(hub) = shared.machines.nats.get().and_then(|n| n.hub(&row.host)) else {
        return html! {};
    };
    html! {
        h2 { "Events " small { "(live, newest first)" } }
        (live_panel(shared, &LiveScope::Host(hub), &host_path(&row.host, "/live")))
    }
}

fn control_forms(row: &HostRow) -> Markup {
    let post = host_path(&row.host, "/control");
    html! {
        h2 { "Act on " (row.host) }
        @if !row.control {
            p.note { "This host does not answer control requests (no controller token on it)." }
        }
        @if !row.token_here {
            p.note { "This hub has no control token for this host: put a copy of its [controller] token_file in the --host-tokens directory as "
                code { (row.host) ".token" } " (mode 600)." }
        }
        div #control-result {}
        form.inline hx-post=(post) hx-target="#control-result" {
            input type="hidden" name="action" value="set_rule";
            label { "rule " input type="text" name="rule" required autocomplete="off"; }
            select name="enabled" { option value="false" { "off" } option value="true" { "on" } }
            button type="submit" { "switch" }
        }
        form.inline hx-post=(post) hx-target="#control-result" {
            input type="hidden" name="action" value="reload_rules";
            button type="submit" { "reload its rules" }
        }
        form.inline hx-post=(post) hx-target="#control-result" {
            input type="hidden" name="action" value="simulate_block";
            select name="kind" { option value="exec" { "program" } option value="connect" { "destination" } }
            input type="text" name="target" required autocomplete="off" placeholder="/tmp/dropper or 203.0.113.7:4444";
            button type="submit" { "simulate block" }
        }
        h2 { "History " small { "(from the JetStream stream)" } }
        button.small type="button" hx-get=(host_path(&row.host, "/history")) hx-target="#host-history" { "last hour" }
        div #host-history {}
    }
}

async fn host_page(
    State(shared): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    KnownHost(row): KnownHost,
) -> Response {
    let body = html! {
        h1 { "Host " (row.host) }
        p { "A machine that publishes on NATS; its events reach this hub on "
            code { (shared.machines.nats.get().map_or("", |n| n.prefix())) "." (row.host) ".*" }
            ". Its events are shown as they arrive; its state as it last said. " a href="/machines" { "All hosts" } }
        (host_view(&row))
        (host_live(&shared, &row))
        (control_forms(&row))
    };
    page(
        &shared,
        &caller,
        &headers,
        "/machines",
        &format!("Host {}", row.host),
        body,
    )
}

async fn host_view_fragment(KnownHost(row): KnownHost) -> Html<String> {
    Html(host_view(&row).into_string())
}

/// `/ui/hosts/{host}/live`: the live page's WebSocket, with the host's own events.
async fn host_live_socket(
    State(shared): State<AppState>,
    KnownHost(row): KnownHost,
    Query(filter): Query<LiveFilter>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let Some(hub) = shared.machines.nats.get().and_then(|n| n.hub(&row.host)) else {
        return error(StatusCode::NOT_FOUND, "no such host");
    };
    live_upgrade(shared, LiveScope::Host(hub), filter, upgrade)
}

async fn history_fragment(
    State(shared): State<AppState>,
    KnownHost(row): KnownHost,
    Query(query): Query<HistoryQuery>,
) -> Response {
    let markup = match read_history(&shared, &row.host, &query).await {
        Ok(events) if events.is_empty() => {
            html! { p.note { "Nothing in the stream for that time." } }
        }
        Ok(events) => html! {
            p { (events.len()) " events, oldest first." }
            div.rows #history-rows { @for event in &events { (event_row(event)) } }
        },
        Err((_, why)) => message(false, &why),
    };
    Html(markup.into_string()).into_response()
}

/// The page's control forms: `action` and its fields.
#[derive(Deserialize)]
struct ControlForm {
    action: String,
    #[serde(default)]
    family: Option<String>,
    #[serde(default)]
    rule: Option<String>,
    #[serde(default)]
    enabled: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    target: Option<String>,
}

impl ControlForm {
    fn action(self) -> Result<Action, String> {
        let enabled = || match self.enabled.as_deref() {
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            _ => Err("enabled: true or false".to_string()),
        };
        let text = |field: &Option<String>, name: &str| {
            field
                .as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(String::from)
                .ok_or_else(|| format!("{name}: required"))
        };
        match self.action.as_str() {
            "set_probe" => Ok(Action::SetProbe {
                family: text(&self.family, "family")?,
                enabled: enabled()?,
            }),
            "set_rule" => Ok(Action::SetRule {
                rule: text(&self.rule, "rule")?,
                enabled: enabled()?,
            }),
            "reload_rules" => Ok(Action::ReloadRules),
            "simulate_block" => {
                let target = text(&self.target, "target")?;
                let target = match self.kind.as_deref() {
                    Some("connect") => TargetSpec::Connect(target),
                    _ => TargetSpec::Exec(target),
                };
                Ok(Action::SimulateBlock { target })
            }
            _ => Err("action: set_probe, set_rule, reload_rules or simulate_block".to_string()),
        }
    }
}

async fn control_form(
    State(shared): State<AppState>,
    Extension(caller): Extension<Caller>,
    KnownHost(row): KnownHost,
    Form(form): Form<ControlForm>,
) -> Response {
    let markup = match form.action() {
        Err(why) => message(false, &why),
        Ok(action) => match send_control(&shared, &caller, &row.host, action).await {
            Ok(reply) if reply.ok => message(
                true,
                &format!("{}: {}", row.host, reply.done.unwrap_or_default()),
            ),
            Ok(reply) => message(
                false,
                &format!("{}: {}", row.host, reply.error.unwrap_or_default()),
            ),
            Err(why) => message(false, &format!("{}: {why}", row.host)),
        },
    };
    Html(markup.into_string()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> ControlForm {
        let field = |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        };
        ControlForm {
            action: field("action").unwrap_or_default(),
            family: field("family"),
            rule: field("rule"),
            enabled: field("enabled"),
            kind: field("kind"),
            target: field("target"),
        }
    }

    #[test]
    fn the_pages_forms_become_control_actions() {
        assert_eq!(
            form(&[
                ("action", "set_probe"),
                ("family", "file"),
                ("enabled", "false")
            ])
            .action(),
            Ok(Action::SetProbe {
                family: "file".to_string(),
                enabled: false
            })
        );
        assert_eq!(
            form(&[
                ("action", "simulate_block"),
                ("kind", "connect"),
                ("target", "203.0.113.7:4444")
            ])
            .action(),
            Ok(Action::SimulateBlock {
                target: TargetSpec::Connect("203.0.113.7:4444".to_string())
            })
        );
        assert!(
            form(&[("action", "set_rule"), ("enabled", "true")])
                .action()
                .is_err()
        );
        assert!(
            form(&[("action", "set_probe"), ("family", "file")])
                .action()
                .is_err()
        );
        assert!(form(&[("action", "add_deny")]).action().is_err());
    }

    #[test]
    fn host_names_are_one_path_segment() {
        assert_eq!(path_segment("web-1"), "web-1");
        assert_eq!(path_segment("a/b?c#d%e f"), "a%2Fb%3Fc%23d%25e%20f");
        assert_eq!(path_segment("é"), "%C3%A9");
        assert_eq!(host_path("<x>", "/view"), "/ui/hosts/%3Cx%3E/view");
    }

    #[test]
    fn history_types_are_checked() {
        let query = |what: Option<&str>| HistoryQuery {
            minutes: None,
            what: what.map(String::from),
            limit: None,
        };
        assert_eq!(query(None).what(), Ok(">"));
        assert_eq!(query(Some("alerts")).what(), Ok("alerts"));
        assert_eq!(query(Some("file_open")).what(), Ok("file_open"));
        assert!(query(Some("*")).what().is_err());
        assert!(query(Some("x.>")).what().is_err());
    }
}
