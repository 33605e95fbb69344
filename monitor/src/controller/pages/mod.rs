//! The dashboard: HTML pages rendered here (maud, escaped), made live by HTMX. A page load
//! gets the whole page, an HTMX request only the fragment it swaps in. Actions post to
//! `/ui/...` and call the same functions as the JSON API ([`super::api`]).
use std::collections::BTreeMap;

use axum::{
    Extension, Form, Router,
    extract::{ConnectInfo, Path, Query, State, WebSocketUpgrade},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Redirect, Response},
    routing::{get, post},
};
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;

pub mod layout;
mod manage;

use layout::{clean, event_row, message, page, short};

use super::{
    AppState, api,
    hub::is_alert,
    live::{self, LiveFilter},
    security::{self, Caller, SESSION_COOKIE},
};
use crate::{event::Event, response::control::TargetSpec};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/", get(live_page))
        .route("/ui/live", get(live_socket))
        .route("/process/{pid}", get(process_page))
        .route("/ui/simulate", post(simulate))
        .route("/ui/block", post(block))
        .merge(manage::routes())
}

// ---- login --------------------------------------------------------------------------------

fn login_markup(problem: Option<&str>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "secmon · log in" }
                link rel="stylesheet" href="/assets/app.css";
            }
            body.login {
                main {
                    h1 { "secmon" }
                    p { "Paste the controller's access token. It is in the file named by "
                        code { "[controller] token_file" } " (by default "
                        code { (crate::config::DEFAULT_CONTROLLER_TOKEN) } "), readable by root only:" }
                    pre { "sudo cat " (crate::config::DEFAULT_CONTROLLER_TOKEN) }
                    @if let Some(problem) = problem { p.msg.err role="alert" { (problem) } }
                    form method="post" action="/login" {
                        label for="token" { "Access token" }
                        input #token type="password" name="token" autocomplete="off" required autofocus;
                        button type="submit" { "Log in" }
                    }
                }
            }
        }
    }
}

async fn login_page() -> Html<String> {
    Html(login_markup(None).into_string())
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(
    State(shared): State<AppState>,
    ConnectInfo(addr): ConnectInfo<std::net::SocketAddr>,
    Form(form): Form<LoginForm>,
) -> Response {
    if shared.auth.is_locked_out(addr.ip()) {
        return security::locked_out(&shared, addr, "/login");
    }
    if !shared.auth.token_matches(form.token.trim()) {
        let failures = shared.auth.record_failure(addr.ip());
        shared.audit.record(
            addr,
            "log in",
            "/login",
            false,
            &format!(
                "wrong token (failure {failures} of {} a minute)",
                super::auth::FAILURES_ALLOWED
            ),
        );
        let body = login_markup(Some("That is not the token."));
        return (StatusCode::UNAUTHORIZED, Html(body.into_string())).into_response();
    }
    let (id, _csrf) = match shared.auth.open_session() {
        Ok(session) => session,
        Err(e) => return security::error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    shared
        .audit
        .record(addr, "log in", "/login", true, "browser session opened");
    let secure = if shared.settings.tls.is_some() {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!("{SESSION_COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/{secure}");
    let mut response = Redirect::to("/").into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

async fn logout(State(shared): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(id) = security::cookie(&headers, SESSION_COOKIE) {
        shared.auth.close_session(id);
    }
    // HTMX follows `HX-Redirect`; anything else the 303.
    let mut response = Redirect::to("/login").into_response();
    response
        .headers_mut()
        .insert("hx-redirect", HeaderValue::from_static("/login"));
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("secmon_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    );
    response
}

// ---- live ---------------------------------------------------------------------------------

const TABS: [(&str, &str); 3] = [
    ("process", "Processes"),
    ("file", "Files"),
    ("network", "Network"),
];
/// Rows a page load starts with, per tab.
const INITIAL_ROWS: usize = 100;

fn stats_markup(shared: &AppState, lost: u64) -> Markup {
    let status = api::status_of(shared);
    html! {
        span #live-stats hx-swap-oob="true" {
            (format!("{:.0}", status.events_per_sec_1s)) " events/s · "
            (short(status.events_total)) " events · "
            (short(status.alerts_total)) " alerts · "
            span.(if status.lost_total + lost > 0 { "lost" } else { "" }) {
                (short(status.lost_total)) " lost"
            }
        }
    }
}

async fn live_page(
    State(shared): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Response {
    let recent = shared.hub.recent_events(INITIAL_ROWS * 4, |_| true);
    let mut by_tab: [Vec<&Event>; 3] = Default::default();
    for event in &recent {
        let rows = &mut by_tab[live::tab_of(event)];
        if rows.len() < INITIAL_ROWS {
            rows.push(event);
        }
    }
    let alerts = shared.hub.recent_alerts(INITIAL_ROWS);
    let body = html! {
        div.live hx-ext="ws" ws-connect="/ui/live" {
            div.toolbar {
                (stats_markup(&shared, 0))
                form #filter ws-send hx-trigger="change, keyup delay:300ms from:#filter-text" {
                    label { "min risk "
                        select name="min_risk" {
                            option value="" { "any" }
                            option value="0.3" { "≥ 0.3" }
                            option value="0.6" { "≥ 0.6" }
                            option value="0.9" { "≥ 0.9" }
                        }
                    }
                    label { "text " input #filter-text type="search" name="text" placeholder="process, path, address"; }
                }
                span.ws-state #ws-state { "connecting…" }
            }
            div.columns {
                section.events {
                    div.tabs role="tablist" {
                        @for (i, (id, name)) in TABS.iter().enumerate() {
                            button type="button" role="tab" data-tab=(id) aria-selected=(if i == 0 { "true" } else { "false" }) { (name) }
                        }
                    }
                    @for (i, (id, _)) in TABS.iter().enumerate() {
                        div.tab-panel #{"tab-" (id)} hidden[i != 0] {
                            div.rows #{"rows-" (id)} {
                                @for event in &by_tab[i] { (event_row(event)) }
                            }
                        }
                    }
                }
                aside.alerts {
                    h2 { "Alerts" }
                    div.rows #rows-alerts {
                        @for event in &alerts { (event_row(event)) }
                    }
                }
            }
        }
    };
    page(&shared, &caller, &headers, "/", "Live", body)
}

async fn live_socket(
    State(shared): State<AppState>,
    Query(filter): Query<LiveFilter>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let filter = filter.compile().unwrap_or_default();
    let Some(feed) = shared.hub.subscribe() else {
        return security::error(StatusCode::SERVICE_UNAVAILABLE, "too many live clients");
    };
    upgrade
        .max_message_size(live::MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| live::html_session(socket, feed, filter, shared))
}

/// One flush of the live stream: the new rows of each tab and the new alerts (newest first),
/// the figures, and a note when rows were skipped or lost. `None` when there is nothing new.
pub fn live_update(
    shared: &AppState,
    pending: &mut [Vec<Event>; 3],
    alerts: &mut Vec<Event>,
    skipped: u64,
    lost: Option<u64>,
) -> Option<String> {
    let nothing_new = pending.iter().all(Vec::is_empty) && alerts.is_empty() && lost.is_none();
    let markup = html! {
        @for (i, (id, _)) in TABS.iter().enumerate() {
            @if !pending[i].is_empty() {
                div #{"rows-" (id)} hx-swap-oob="afterbegin" {
                    @for event in pending[i].iter().rev() { (event_row(event)) }
                }
            }
        }
        @if !alerts.is_empty() {
            div #rows-alerts hx-swap-oob="afterbegin" {
                @for event in alerts.iter().rev() { (event_row(event)) }
            }
        }
        (stats_markup(shared, lost.unwrap_or(0)))
        span #ws-state hx-swap-oob="true" {
            @match lost {
                Some(n) => span.lost { "live · this page lost " (n) " events (too slow)" },
                None if skipped > 0 => { "live · busy: showing the newest rows" },
                None => { "live" },
            }
        }
    };
    for rows in pending.iter_mut() {
        rows.clear();
    }
    alerts.clear();
    (!nothing_new || skipped > 0).then(|| markup.into_string())
}

// ---- process view -------------------------------------------------------------------------

async fn process_page(
    State(shared): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(pid): Path<u32>,
) -> Response {
    let events = shared.hub.recent_events(200, |e| e.pid == pid);
    let rules: BTreeMap<String, String> = shared
        .controls
        .rules
        .list()
        .into_iter()
        .map(|r| (r.name, r.description))
        .collect();
    let latest = events.first();
    let body = html! {
        h1 { "Process " (pid) }
        @match latest {
            None => p { "No recent event of this process (the live view keeps the last few thousand events; the history page searches the database: "
                a href=(format!("/history?pid={pid}&last=24h")) { "its last 24 hours" } ")." },
            Some(e) => {
                dl.facts {
                    dt { "name" } dd { (clean(&e.process)) }
                    dt { "executable" } dd { (clean(&e.exe)) }
                    dt { "command line" } dd { (clean(&e.cmdline)) }
                    dt { "user" } dd { (clean(&e.user)) " (" (e.uid) ")" }
                    dt { "parent" } dd { (clean(&e.parent_process)) " (" a href=(format!("/process/{}", e.ppid)) { (e.ppid) } ")" }
                    dt { "ancestry" } dd.ancestry {
                        (clean(&e.process))
                        @for name in &e.ancestors { " ← " (clean(name)) }
                    }
                    dt { "accumulated risk" } dd { (format!("{:.2}", e.analysis.process_risk)) }
                }
                div.actions {
                    button hx-post="/ui/simulate" hx-vals=(serde_json::json!({"exec": e.exe}).to_string()) hx-target="#action-result" {
                        "Simulate blocking " (clean(&e.exe))
                    }
                    @if shared.controls.enforcer.is_some() {
                        button.danger hx-post="/ui/block" hx-vals=(serde_json::json!({"exec": e.exe}).to_string())
                            hx-target="#action-result" hx-confirm=(format!("Deny {} (killed at every further exec)?", clean(&e.exe))) {
                            "Block"
                        }
                    }
                    div #action-result {}
                }
                h2 { "Its recent events" }
                div.rows {
                    @for event in &events {
                        (event_row(event))
                        @if !event.analysis.rules.is_empty() {
                            ul.why {
                                @for rule in &event.analysis.rules {
                                    li { b { (clean(rule)) } ": " (clean(rules.get(rule).map(String::as_str).unwrap_or("(rule no longer loaded)"))) }
                                }
                                li.how { "risk " (format!("{:.2}", event.analysis.risk_score)) " from the rules' scores (" (clean(&event.analysis.detection_method)) "); the process's accumulated risk became " (format!("{:.2}", event.analysis.process_risk)) }
                            }
                        }
                    }
                }
            }
        }
    };
    page(
        &shared,
        &caller,
        &headers,
        "/",
        &format!("Process {pid}"),
        body,
    )
}

// ---- actions ------------------------------------------------------------------------------

/// `exec=PATH_OR_NAME` or `connect=ADDR` (a form, or HTMX `hx-vals`).
#[derive(Deserialize)]
pub struct TargetForm {
    exec: Option<String>,
    connect: Option<String>,
    #[serde(default)]
    ttl_secs: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

impl TargetForm {
    fn target(&self) -> Result<TargetSpec, String> {
        match (
            self.exec.as_deref().map(str::trim),
            self.connect.as_deref().map(str::trim),
        ) {
            (Some(exec), _) if !exec.is_empty() => Ok(TargetSpec::Exec(exec.to_string())),
            (_, Some(addr)) if !addr.is_empty() => Ok(TargetSpec::Connect(addr.to_string())),
            _ => Err("give a program (path or name) or a destination address".to_string()),
        }
    }
}

async fn simulate(
    State(shared): State<AppState>,
    Extension(caller): Extension<Caller>,
    Form(form): Form<TargetForm>,
) -> Response {
    let result = form
        .target()
        .map_err(|e| (StatusCode::BAD_REQUEST, e))
        .and_then(|target| api::simulate_deny(&shared, &caller, &target));
    let markup = match result {
        Ok(block) => message(true, &block.outcome),
        Err((_, why)) => message(false, &why),
    };
    Html(markup.into_string()).into_response()
}

async fn block(
    State(shared): State<AppState>,
    Extension(caller): Extension<Caller>,
    Form(form): Form<TargetForm>,
) -> Response {
    let request = form.target().map(|target| api::DenyRequest {
        target,
        ttl_secs: form.ttl_secs.as_deref().and_then(|t| t.trim().parse().ok()),
        reason: form.reason.clone().filter(|r| !r.trim().is_empty()),
    });
    let markup = match request
        .map_err(|e| (StatusCode::BAD_REQUEST, e))
        .and_then(|r| api::add_deny(&shared, &caller, r))
    {
        Ok(value) => message(
            true,
            &format!(
                "denied: {}",
                value["deny"]["target"].as_str().unwrap_or("(entry added)")
            ),
        ),
        Err((_, why)) => message(false, &why),
    };
    Html(markup.into_string()).into_response()
}

/// Whether an event is worth the alerts column (re-exported for the pages).
pub fn alert(event: &Event) -> bool {
    is_alert(event)
}
