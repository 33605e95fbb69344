//! The Machines page (register and remove controllers, their health, show one) and the All
//! machines view (every machine's alerts merged, newest first, and each one's counts of the
//! last hour), both kept current by HTMX polling; and the header's machine selector's action.
//! A token is a write-only field: the form posts it, nothing here ever shows it.
use axum::{
    Extension, Form, Router,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, header},
    response::{Html, IntoResponse, Redirect, Response},
    routing::{get, post},
};
use maud::{Markup, html};
use serde::Deserialize;

use super::{
    LOCAL, NewMachine,
    api::{self, HostAlert, MachineRow},
    health::Reach,
    proxy::ACTIVE_COOKIE,
};
use crate::controller::{
    AppState,
    pages::layout::{
        NAV, clean, facts, is_htmx, marker, message, page, severity_class, severity_name, short,
    },
    security::Caller,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/machines", get(machines_page))
        .route("/ui/machines/table", get(machines_table_fragment))
        .route("/ui/machines/add", post(add))
        .route("/ui/machines/{name}/remove", post(remove))
        .route("/ui/machines/select", post(select))
        .route("/all-machines", get(all_machines_page))
        .route("/ui/all-machines/alerts", get(all_alerts_fragment))
        .merge(super::nats_pages::routes())
}

/// How often the pages redraw their figures.
const REFRESH: &str = "every 2s";

fn duration(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

fn ago(time: Option<chrono::DateTime<chrono::Utc>>) -> String {
    match time {
        Some(time) => {
            let secs = (chrono::Utc::now() - time).num_seconds().max(0) as u64;
            format!("{} ago", duration(secs))
        }
        None => "never".to_string(),
    }
}

fn machine_row(row: &MachineRow, active: &str) -> Markup {
    let health = &row.health;
    let counts = health.alerts_last_hour.unwrap_or_default();
    html! {
        tr.(health.state.as_str()) data-machine=(row.name) {
            td {
                b.machine-name { (row.name) }
                @if row.local { " " small { "(this controller)" } }
                @if let Some(url) = &row.url { br; small.url { (url) } }
            }
            td.host { (health.host.as_deref().unwrap_or("?")) }
            td.state {
                span.machine-state { (health.state.as_str()) }
                @if let Some(why) = &health.error { br; small.why { (clean(why)) } }
            }
            td { (health.version.as_deref().unwrap_or("?")) }
            td.num { (health.uptime_secs.map(duration).unwrap_or_default()) }
            td.num { (health.events_per_sec.map(|r| format!("{r:.0}")).unwrap_or_default()) }
            td.num { (health.lost_total.map(short).unwrap_or_default()) }
            td.num { (counts.malicious) " / " (counts.suspicious) }
            td { (if row.local { "now".to_string() } else { ago(health.last_seen) }) }
            td.act {
                @if row.nats {
                    a.button.small href=(super::nats_pages::host_page_path(&row.name)) { "show" }
                } @else if row.name == active {
                    span.shown { "shown" }
                } @else {
                    button.small type="button" hx-post="/ui/machines/select"
                        hx-vals=(serde_json::json!({"machine": row.name, "back": "/"}).to_string()) { "show" }
                }
                @if !row.local && !row.nats {
                    " "
                    button.small.danger type="button" hx-post=(format!("/ui/machines/{}/remove", row.name))
                        hx-target="#machines-table" hx-swap="outerHTML"
                        hx-confirm=(format!("Remove machine {}? Its token is forgotten.", row.name)) { "remove" }
                }
            }
        }
    }
}

fn machines_table(shared: &AppState, active: &str, problem: Option<Markup>) -> Markup {
    let rows = api::rows(shared);
    html! {
        div #machines-table hx-get="/ui/machines/table" hx-trigger=(REFRESH) hx-swap="outerHTML" {
            @if let Some(problem) = problem { (problem) }
            div.scroll {
                table.grid.machines {
                    thead { tr {
                        th { "machine" } th { "host" } th { "state" } th { "version" } th.num { "uptime" }
                        th.num { "events/s" } th.num { "lost" } th.num title="malicious / suspicious alerts in the last hour" { "alerts 1 h" }
                        th { "last seen" } th {}
                    } }
                    tbody { @for row in &rows { (machine_row(row, active)) } }
                }
            }
        }
    }
}

fn active_name(shared: &AppState, headers: &HeaderMap) -> String {
    super::proxy::active_machine(shared, headers).map_or_else(|| LOCAL.to_string(), |m| m.name)
}

async fn machines_page(
    State(shared): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Response {
    let active = active_name(&shared, &headers);
    let body = html! {
        h1 { "Machines" }
        p { "Other machines' controllers, registered here: their tokens stay on this controller (in "
            code { (shared.machines.registry_path()) } ", root only) and are never sent to the browser. "
            "Choose the machine every page shows and acts on with " b { "show" } " or the selector in the header." }
        (machines_table(&shared, &active, None))
        h2 { "Add a machine" }
        form.add-machine #add-machine hx-post="/ui/machines/add" hx-target="#machines-table" hx-swap="outerHTML" {
            label { "name " input type="text" name="name" required placeholder="web-1" autocomplete="off" pattern="[A-Za-z0-9][A-Za-z0-9._\\-]*"; }
            label { "URL " input type="url" name="url" required placeholder="https://web-1.example:9988" autocomplete="off"; }
            label { "token " input type="password" name="token" required autocomplete="off" placeholder="its [controller] token_file"; }
            label title="PEM certificate(s) to trust for its TLS certificate; empty: the public roots" {
                "CA file " input type="text" name="ca_file" placeholder="/etc/secmon/web-1-ca.pem" autocomplete="off"; }
            button type="submit" { "Add" }
        }
    };
    page(&shared, &caller, &headers, "/machines", "Machines", body)
}

async fn machines_table_fragment(State(shared): State<AppState>, headers: HeaderMap) -> Response {
    let active = active_name(&shared, &headers);
    Html(machines_table(&shared, &active, None).into_string()).into_response()
}

/// The add form (a token field, write-only).
#[derive(Deserialize)]
struct AddForm {
    name: String,
    url: String,
    token: String,
    #[serde(default)]
    ca_file: Option<String>,
}

async fn add(
    State(shared): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Form(form): Form<AddForm>,
) -> Response {
    let new = NewMachine {
        name: form.name,
        url: form.url,
        token: form.token,
        ca_file: form.ca_file,
    };
    let outcome = match api::register(&shared, &caller, new) {
        Ok(info) => message(true, &format!("added {} ({})", info.name, info.url)),
        Err((_, why)) => message(false, &why),
    };
    let active = active_name(&shared, &headers);
    Html(machines_table(&shared, &active, Some(outcome)).into_string()).into_response()
}

async fn remove(
    State(shared): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let outcome = match api::unregister(&shared, &caller, &name) {
        Ok(info) => message(true, &format!("removed {}", info.name)),
        Err((_, why)) => message(false, &why),
    };
    let active = active_name(&shared, &headers);
    Html(machines_table(&shared, &active, Some(outcome)).into_string()).into_response()
}

/// `machine=NAME&back=PATH`.
#[derive(Deserialize)]
struct SelectForm {
    machine: String,
    #[serde(default)]
    back: Option<String>,
}

/// Sets the machine this browser shows (a cookie of this controller's, `HttpOnly` and
/// `SameSite=Strict` like the session's), then goes back to the page it came from (one of
/// the navigation's, else the live page).
async fn select(
    State(shared): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<SelectForm>,
) -> Response {
    let name = if form.machine == LOCAL || shared.machines.find(&form.machine).is_some() {
        form.machine
    } else {
        LOCAL.to_string()
    };
    let back = form
        .back
        .filter(|back| NAV.iter().any(|(href, _)| href == back))
        .unwrap_or_else(|| "/".to_string());
    let secure = if shared.settings.tls.is_some() {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!("{ACTIVE_COOKIE}={name}; HttpOnly; SameSite=Strict; Path=/{secure}");
    let mut response = if is_htmx(&headers) {
        let mut response = Html(String::new()).into_response();
        if let Ok(value) = HeaderValue::from_str(&back) {
            response.headers_mut().insert("hx-redirect", value);
        }
        response
    } else {
        Redirect::to(&back).into_response()
    };
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

// ---- All machines ---------------------------------------------------------------------------

fn alert_row(alert: &HostAlert) -> Markup {
    let event = &alert.event;
    let severity = event.analysis.severity;
    let (op, what) = facts(event);
    html! {
        div.row.(severity_class(severity)) data-machine=(alert.machine) data-type=(event.event_type.as_str()) {
            span.marker title=(severity_name(severity)) { (marker(severity)) }
            span.time title=(event.timestamp.to_rfc3339()) { (event.timestamp.with_timezone(&chrono::Local).format("%H:%M:%S")) }
            span.machine title=(alert.machine) { (clean(&alert.host)) }
            span.proc title=(clean(&event.exe)) { (clean(&event.process)) " " span.pid { (event.pid) } }
            span.op { (op) }
            span.what { (clean(&what)) }
            span.rules { (clean(&event.analysis.label)) }
        }
    }
}

fn all_machines_body(shared: &AppState) -> Markup {
    let counts = api::counts(shared);
    let alerts = api::merged_alerts(shared);
    html! {
        div #all-machines hx-get="/ui/all-machines/alerts" hx-trigger=(REFRESH) hx-swap="outerHTML" {
            div.scroll {
                table.grid.counts {
                    thead { tr { th { "machine" } th { "host" } th { "state" } th.num { "malicious" } th.num { "suspicious" } } }
                    tbody {
                        @for row in &counts {
                            @let c = row.alerts_last_hour.unwrap_or_default();
                            tr.(row.state.as_str()) data-machine=(row.machine) {
                                td { b { (row.machine) } }
                                td { (row.host.as_deref().unwrap_or("?")) }
                                td { (row.state.as_str()) }
                                td.num.malicious { @if row.state == Reach::Reachable || row.alerts_last_hour.is_some() { (c.malicious) } }
                                td.num.suspicious { @if row.state == Reach::Reachable || row.alerts_last_hour.is_some() { (c.suspicious) } }
                            }
                        }
                    }
                }
            }
            h2 { "Alerts " small { "(newest first, every machine)" } }
            @if alerts.is_empty() {
                p.note { "No alert yet." }
            } @else {
                div.rows #all-alerts { @for alert in &alerts { (alert_row(alert)) } }
            }
        }
    }
}

async fn all_machines_page(
    State(shared): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Response {
    let body = html! {
        h1 { "All machines" }
        p { "Alerts of this machine and of every registered one, merged; counts are of the last hour. Redrawn every two seconds." }
        (all_machines_body(&shared))
    };
    page(
        &shared,
        &caller,
        &headers,
        "/all-machines",
        "All machines",
        body,
    )
}

async fn all_alerts_fragment(State(shared): State<AppState>) -> Response {
    Html(all_machines_body(&shared).into_string()).into_response()
}
