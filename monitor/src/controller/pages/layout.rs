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
    controller::{
        AppState,
        machines::{self, Machine},
        security::Caller,
    },
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
    ("/machines", "Machines"),
    ("/all-machines", "All machines"),
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

/// The request header under which a page answers with its body only, as for HTMX: sent by
/// a controller that shows this machine's page inside its own shell (the Machines page's
/// active machine, [`crate::controller::machines::proxy`]).
pub const PAGE_BODY_HEADER: &str = "x-secmon-page-body";

/// A whole page, or only `body` for an HTMX request (or a controller embedding it).
pub fn page(
    shared: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    path: &str,
    title: &str,
    body: Markup,
) -> Response {
    if is_htmx(headers) || headers.contains_key(PAGE_BODY_HEADER) {
        return Html(body.into_string()).into_response();
    }
    let active = machines::proxy::active_machine(shared, headers);
    shell(shared, caller, path, title, active.as_ref(), body)
}

/// The page around `body`: head, the header (the machine shown, the machine selector, the
/// navigation), the CSRF header HTMX sends. `remote` is the machine shown when it is not this
/// one: the header then says so in a banner no page can miss.
pub fn shell(
    shared: &AppState,
    caller: &Caller,
    path: &str,
    title: &str,
    remote: Option<&Machine>,
    body: Markup,
) -> Response {
    let csrf = serde_json::json!({ "X-CSRF-Token": caller.csrf() }).to_string();
    let registered = shared.machines.list();
    let shown_name = remote.map_or(machines::LOCAL, |m| m.name.as_str());
    let shown_host = match remote {
        Some(machine) => shared
            .machines
            .health(&machine.name)
            .host
            .unwrap_or_else(|| machine.name.clone()),
        None => clean(&shared.host).into_owned(),
    };
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="htmx-config" content=(HTMX_CONFIG);
                title { (title) " · secmon on " (shown_host) }
                link rel="stylesheet" href="/assets/app.css";
                script src="/assets/htmx.min.js" {}
                script src="/assets/htmx-ext-ws.min.js" {}
                script src="/assets/app.js" {}
            }
            body hx-headers=(csrf) data-machine=(shown_name) {
                header.top.(if remote.is_some() { "remote" } else { "local" }) {
                    span.brand { "secmon" }
                    span.host #shown-machine title="the machine these pages show and act on" {
                        @if remote.is_some() { "machine " b { (shown_name) } " · " } (shown_host)
                    }
                    @if !registered.is_empty() && !caller.csrf().is_empty() {
                        form.machine-select #machine-select hx-post="/ui/machines/select" hx-trigger="change" {
                            input type="hidden" name="back" value=(path);
                            label { "show "
                                select name="machine" aria-label="the machine to show and act on" {
                                    option value=(machines::LOCAL) selected[remote.is_none()] { "this machine" }
                                    @for machine in &registered {
                                        @let state = shared.machines.state(&machine.name);
                                        option value=(machine.name) selected[shown_name == machine.name] {
                                            (machine.name)
                                            @if state == machines::health::Reach::Unreachable { " (unreachable)" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    nav {
                        @for (href, name) in NAV {
                            a href=(href) aria-current=[(*href == path).then_some("page")] { (name) }
                        }
                    }
                    @if !caller.csrf().is_empty() {
                        button.logout type="button" hx-post="/logout" { "Log out" }
                    }
                }
                @if let Some(machine) = remote {
                    p.remote-banner role="status" {
                        "Showing and acting on " b { (machine.name) } " (" (machine.url) "), through this controller. "
                        a href="/machines" { "Machines" }
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

/// One event as a row: marker, time, the host it came from (on a hub), process (linking to its
/// view), operation, facts, risk and the label (the matched rules' names in its tooltip).
pub fn event_row(event: &Event) -> Markup {
    row(event, None)
}

/// An alert's row, with a "simulate block" button whose outcome goes to `#{result}`. On a hub,
/// the button of another host's alert asks that host (a control request), never the hub.
pub fn alert_row(event: &Event, result: &str) -> Markup {
    row(event, Some(result))
}

/// Where a "simulate block" of `event` is posted, and its form values (JSON for `hx-vals`):
/// this controller's `/ui/simulate`, or the control form of the host the event came from.
fn simulate_request(event: &Event) -> Option<(String, String)> {
    let Some(host) = &event.host else {
        return Some(("/ui/simulate".to_string(), block_vals(event)?));
    };
    let (kind, target) = block_target(event)?;
    Some((
        machines::nats_pages::host_path(host.as_str(), "/control"),
        serde_json::json!({ "action": "simulate_block", "kind": kind, "target": target })
            .to_string(),
    ))
}

fn row(event: &Event, simulate_into: Option<&str>) -> Markup {
    let (op, what) = facts(event);
    let severity = event.analysis.severity;
    let rules = event.analysis.rules.join(", ");
    let simulate = simulate_into.zip(simulate_request(event));
    html! {
        div.row.(severity_class(severity)).hosted[event.host.is_some()] data-type=(event.event_type.as_str()) data-pid=(event.pid) {
            span.marker title=(severity_name(severity)) { (marker(severity)) }
            span.time title=(event.timestamp.to_rfc3339()) { (event.timestamp.with_timezone(&chrono::Local).format("%H:%M:%S")) span.ms { (event.timestamp.format("%.3f")) } }
            @match &event.host {
                None => {
                    a.proc href=(format!("/process/{}", event.pid)) title=(clean(&event.exe)) {
                        (clean(&event.process)) " " span.pid { (event.pid) }
                    }
                }
                Some(host) => {
                    // The whole name on hover (the column cuts long ones); it leads to the
                    // host's page. The process is that host's: this controller's process view
                    // knows nothing of it, so it is not a link.
                    a.host href=(machines::nats_pages::host_page_path(host.as_str())) title=(clean(host.as_str())) { (clean(host.as_str())) }
                    span.proc title=(clean(&event.exe)) {
                        (clean(&event.process)) " " span.pid { (event.pid) }
                    }
                }
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
            @if let Some((into, (post, vals))) = simulate {
                span.act {
                    button.small.simulate type="button" hx-post=(post) hx-vals=(vals)
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

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;
    use crate::event::EventType;

    fn alert(exe: &str, host: Option<&str>) -> String {
        let mut event = Event::new(EventType::ProcessExec, DateTime::UNIX_EPOCH);
        event.exe = exe.into();
        event.process = "dropper".into();
        event.pid = 4242;
        event.host = host.map(Into::into);
        alert_row(&event, "out").into_string()
    }

    #[test]
    fn a_local_alert_is_simulated_here_and_links_to_its_process() {
        let html = alert("/tmp/dropper", None);
        assert!(html.contains(r#"hx-post="/ui/simulate""#), "{html}");
        assert!(html.contains(r#"href="/process/4242""#), "{html}");
    }

    /// On a hub, "simulate block" of a host's alert must reach that host, not the hub, and the
    /// pid is that host's: the hub's process view must not be offered for it.
    #[test]
    fn a_hosts_alert_is_simulated_on_that_host_and_its_pid_is_not_the_hubs() {
        let html = alert("/tmp/dropper", Some("web/1?x"));
        assert!(
            html.contains(r#"hx-post="/ui/hosts/web%2F1%3Fx/control""#),
            "{html}"
        );
        assert!(html.contains("simulate_block"), "{html}");
        assert!(html.contains(r#"href="/hosts/web%2F1%3Fx""#), "{html}");
        assert!(!html.contains("/process/"), "{html}");
        assert!(!html.contains("/ui/simulate"), "{html}");
    }

    #[test]
    fn nothing_to_simulate_without_a_path() {
        assert!(!alert("dropper", Some("web")).contains("simulate block"));
    }
}
