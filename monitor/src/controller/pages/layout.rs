//! The page shell (head, navigation, the CSRF header HTMX sends) and the pieces every page
//! shares: an event row, the severity marker, numbers. maud escapes every value it is given;
//! text from the kernel is also stripped of control characters ([`clean`]).
use std::borrow::Cow;

use axum::{
    http::HeaderMap,
    response::{Html, IntoResponse, Response},
};
use maud::{DOCTYPE, Markup, html};

use crate::{
    controller::{AppState, security::Caller},
    event::{Event, Family, Severity},
    ui,
};

/// The pages, in the navigation's order: (path, title).
pub const NAV: &[(&str, &str)] = &[
    ("/", "Live"),
    ("/rules", "Rules"),
    ("/probes", "Probes"),
    ("/denies", "Deny entries"),
    ("/history", "History"),
    ("/status", "Status"),
];

/// HTMX's settings: no indicator `<style>` (the CSP allows none), no eval, no inline scripts,
/// requests to this server only.
const HTMX_CONFIG: &str = r#"{"includeIndicatorStyles":false,"allowEval":false,"allowScriptTags":false,"selfRequestsOnly":true,"historyCacheSize":0}"#;

/// Text from the kernel or a client: control and escape characters replaced.
pub fn clean(text: &str) -> Cow<'_, str> {
    crate::sanitize::for_terminal(text)
}

/// Whether the request came from HTMX (answer with a fragment, not a whole page).
pub fn is_htmx(headers: &HeaderMap) -> bool {
    headers.contains_key("hx-request") && !headers.contains_key("hx-history-restore-request")
}

/// A whole page, or only `body` for an HTMX request.
pub fn page(
    shared: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    path: &str,
    title: &str,
    body: Markup,
) -> Response {
    if is_htmx(headers) {
        return Html(body.into_string()).into_response();
    }
    let csrf = serde_json::json!({ "X-CSRF-Token": caller.csrf() }).to_string();
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="htmx-config" content=(HTMX_CONFIG);
                title { (title) " · secmon on " (clean(&shared.host)) }
                link rel="stylesheet" href="/assets/app.css";
                script src="/assets/htmx.min.js" {}
                script src="/assets/htmx-ext-ws.min.js" {}
                script src="/assets/app.js" {}
            }
            body hx-headers=(csrf) {
                header.top {
                    span.brand { "secmon" }
                    span.host title="this machine" { (clean(&shared.host)) }
                    nav {
                        @for (href, name) in NAV {
                            a href=(href) aria-current=[(*href == path).then_some("page")] { (name) }
                        }
                    }
                    @if !caller.csrf().is_empty() {
                        button.logout type="button" hx-post="/logout" { "Log out" }
                    }
                }
                main #main { (body) }
            }
        }
    };
    Html(markup.into_string()).into_response()
}

/// The severity marker, as in the terminal UI (`!!`, `!`), readable without colour.
pub fn marker(severity: Severity) -> &'static str {
    ui::theme::severity_marker(severity).trim_end()
}

/// `benign`, `suspicious`, `malicious`.
pub fn severity_name(severity: Severity) -> &'static str {
    match severity {
        Severity::Benign => "benign",
        Severity::Suspicious => "suspicious",
        Severity::Malicious => "malicious",
    }
}

pub fn severity_class(severity: Severity) -> &'static str {
    match severity {
        Severity::Benign => "sev-0",
        Severity::Suspicious => "sev-1",
        Severity::Malicious => "sev-2",
    }
}

/// What happened, in the words of the terminal UI's panes.
pub fn facts(event: &Event) -> (&'static str, String) {
    match event.family() {
        Family::Process | Family::Kernel => ui::process::facts(event),
        Family::File => ui::file::facts(event),
        Family::Network => ui::network::facts(event),
    }
}

/// What a block of the event's subject would deny: its destination for a network event,
/// its program (by path) otherwise. `(form field, value)` for `/ui/simulate` and `/ui/block`;
/// `None` when there is nothing to name (a program without a known path).
pub fn block_target(event: &Event) -> Option<(&'static str, String)> {
    if event.family() == Family::Network
        && let (Some(ip), Some(port)) = (event.target_ip, event.target_port)
    {
        return Some(("connect", std::net::SocketAddr::new(ip, port).to_string()));
    }
    event
        .exe
        .starts_with('/')
        .then(|| ("exec", event.exe.to_string()))
}

/// The `hx-vals` of a block action on `event` (JSON; maud escapes it as an attribute).
pub fn block_vals(event: &Event) -> Option<String> {
    block_target(event).map(|(field, value)| serde_json::json!({ field: value }).to_string())
}

/// One event as a row: marker, time, process (linking to its view), operation, facts, risk
/// and the label (the matched rules' names in its tooltip).
pub fn event_row(event: &Event) -> Markup {
    row(event, None)
}

/// An alert's row, with a "simulate block" button whose outcome goes to `#{result}`.
pub fn alert_row(event: &Event, result: &str) -> Markup {
    row(event, Some(result))
}

fn row(event: &Event, simulate_into: Option<&str>) -> Markup {
    let (op, what) = facts(event);
    let severity = event.analysis.severity;
    let rules = event.analysis.rules.join(", ");
    let simulate = simulate_into.zip(block_vals(event));
    html! {
        div.row.(severity_class(severity)) data-type=(event.event_type.as_str()) data-pid=(event.pid) {
            span.marker title=(severity_name(severity)) { (marker(severity)) }
            span.time title=(event.timestamp.to_rfc3339()) { (event.timestamp.with_timezone(&chrono::Local).format("%H:%M:%S")) span.ms { (event.timestamp.format("%.3f")) } }
            a.proc href=(format!("/process/{}", event.pid)) title=(clean(&event.exe)) {
                (clean(&event.process)) " " span.pid { (event.pid) }
            }
            span.op { (op) }
            span.what { (clean(&what)) }
            span.risk { @if event.analysis.risk_score > 0.0 { (format!("{:.2}", event.analysis.risk_score)) } }
            span.rules title=(clean(&rules)) {
                @if !event.analysis.label.is_empty() && severity != Severity::Benign {
                    (clean(&event.analysis.label))
                }
            }
            @if event.blocked { span.blocked { "blocked" } }
            @if let Some((into, vals)) = simulate {
                span.act {
                    button.small.simulate type="button" hx-post="/ui/simulate" hx-vals=(vals)
                        hx-target=(format!("#{into}")) { "simulate block" }
                }
            }
        }
    }
}

/// A short status message (HTMX swaps it into the page's message area).
pub fn message(ok: bool, text: &str) -> Markup {
    html! {
        p.msg.(if ok { "ok" } else { "err" }) role="status" { (clean(text)) }
    }
}

/// `1234567` → `1.2M`.
pub fn short(n: u64) -> String {
    ui::short_count(n)
}
