//! The management pages: rules, probes, deny entries, history and status.
use axum::{
    Extension, Form, Router,
    extract::{Path, Query, State},
    http::HeaderMap,
    response::{Html, IntoResponse, Response},
    routing::{get, post},
};
use maud::{Markup, html};
use serde::Deserialize;

use super::{
    TargetForm,
    layout::{clean, event_row, message, page},
};
use crate::controller::{AppState, api, security::Caller};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/rules", get(rules_page))
        .route("/ui/rules/reload", post(rules_reload))
        .route("/ui/rules/{name}", post(rule_switch))
        .route("/probes", get(probes_page))
        .route("/ui/probes/{family}", post(probe_switch))
        .route("/denies", get(denies_page))
        .route("/ui/denies/{id}/remove", post(deny_remove))
        .route("/history", get(history_page))
        .route("/status", get(status_page))
}

#[derive(Deserialize)]
struct SwitchForm {
    /// `on` or `off`.
    to: String,
}

// ---- rules --------------------------------------------------------------------------------

fn rules_table(shared: &AppState) -> Markup {
    let rules = shared.controls.rules.list();
    html! {
        table #rules-table.grid {
            thead { tr { th { "rule" } th { "hits" } th { "score" } th { "action" } th { "state" } } }
            tbody {
                @for rule in &rules {
                    tr.(if rule.enabled { "on" } else { "off" }) {
                        td { b { (clean(&rule.name)) } br; small { (clean(&rule.description)) } }
                        td.num { (rule.hits) }
                        td.num { (format!("{:.2}", rule.score)) }
                        td { (rule.action.as_str()) }
                        td {
                            button hx-post=(format!("/ui/rules/{}", rule.name))
                                hx-vals=(serde_json::json!({"to": if rule.enabled { "off" } else { "on" }}).to_string())
                                hx-target="#rules-table" hx-swap="outerHTML"
                                data-rule=(rule.name) {
                                @if rule.enabled { "enabled — disable" } @else { "disabled — enable" }
                            }
                        }
                    }
                }
            }
        }
    }
}

async fn rules_page(
    State(shared): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Response {
    let body = html! {
        h1 { "Rules" }
        div.actions {
            button hx-post="/ui/rules/reload" hx-target="#rules-msg" { "Reload the rule files" }
            div #rules-msg {}
        }
        (rules_table(&shared))
    };
    page(&shared, &caller, &headers, "/rules", "Rules", body)
}

async fn rule_switch(
    State(shared): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Form(form): Form<SwitchForm>,
) -> Response {
    let result = api::set_rule(&shared, &caller, &name, form.to == "on");
    let markup = html! {
        @if let Err((_, why)) = &result { (message(false, why)) }
        (rules_table(&shared))
    };
    Html(markup.into_string()).into_response()
}

async fn rules_reload(
    State(shared): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Response {
    let markup = match api::reload_rules(&shared, &caller) {
        Ok(summary) => message(true, &format!("reloaded: {summary}")),
        Err((_, why)) => message(
            false,
            &format!("reload failed, the previous rules stay in force: {why}"),
        ),
    };
    Html(markup.into_string()).into_response()
}

// ---- probes -------------------------------------------------------------------------------

fn probes_table(shared: &AppState) -> Markup {
    html! {
        table #probes-table.grid {
            thead { tr { th { "family" } th { "state" } th {} } }
            tbody {
                @for row in api::probe_rows(shared) {
                    tr.(row.state) {
                        td { b { (row.family) } }
                        td { (row.state) @if let Some(why) = &row.why_unavailable { br; small { (clean(why)) } } }
                        td {
                            @if row.state == "on" || row.state == "off" {
                                button hx-post=(format!("/ui/probes/{}", row.family))
                                    hx-vals=(serde_json::json!({"to": if row.state == "on" { "off" } else { "on" }}).to_string())
                                    hx-target="#probes-table" hx-swap="outerHTML" data-family=(row.family) {
                                    @if row.state == "on" { "switch off" } @else { "switch on" }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

async fn probes_page(
    State(shared): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Response {
    let body = html! {
        h1 { "Probes" }
        p { "Switching a family off stops its events in the kernel (the programs stay attached and report nothing)." }
        (probes_table(&shared))
    };
    page(&shared, &caller, &headers, "/probes", "Probes", body)
}

async fn probe_switch(
    State(shared): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(family): Path<String>,
    Form(form): Form<SwitchForm>,
) -> Response {
    let result = api::set_probe(&shared, &caller, &family, form.to == "on");
    let markup = html! {
        @if let Err((_, why)) = &result { (message(false, why)) }
        (probes_table(&shared))
    };
    Html(markup.into_string()).into_response()
}

// ---- deny entries -------------------------------------------------------------------------

fn denies_markup(shared: &AppState) -> Markup {
    let simulated = shared
        .controls
        .simulated
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .rev()
        .cloned()
        .collect::<Vec<_>>();
    html! {
        div #denies {
            p { "Enforcement: " b { (shared.controls.enforce_mode) } }
            @if let Some(enforcer) = &shared.controls.enforcer {
                table.grid {
                    thead { tr { th { "id" } th { "target" } th { "expires" } th { "by" } th { "why" } th {} } }
                    tbody {
                        @for deny in enforcer.list() {
                            tr {
                                td.num { (deny.id) }
                                td { (clean(&deny.target)) }
                                td { @match deny.expires { Some(t) => (t.format("%Y-%m-%d %H:%M:%S UTC")), None => "never" } }
                                td { (clean(&deny.by)) }
                                td { (clean(&deny.reason)) }
                                td { button hx-post=(format!("/ui/denies/{}/remove", deny.id)) hx-target="#denies" hx-swap="outerHTML" { "lift" } }
                            }
                        }
                    }
                }
            }
            h2 { "Simulated blocks" }
            ul.simulated {
                @for block in &simulated {
                    li { (block.time.format("%H:%M:%S")) " " b { (clean(&block.target)) } ": " (clean(&block.outcome)) }
                }
            }
        }
    }
}

async fn denies_page(
    State(shared): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Response {
    let body = html! {
        h1 { "Deny entries" }
        form.deny hx-post="/ui/simulate" hx-target="#deny-result" {
            label { "program (path or name) " input type="text" name="exec" placeholder="/tmp/dropper"; }
            label { "or destination " input type="text" name="connect" placeholder="10.0.0.1:443"; }
            button type="submit" { "Simulate" }
            @if shared.controls.enforcer.is_some() {
                button.danger type="submit" hx-post="/ui/block" hx-target="#deny-result" hx-confirm="Add this deny entry in the kernel?" { "Block" }
            }
        }
        div #deny-result {}
        (denies_markup(&shared))
    };
    page(&shared, &caller, &headers, "/denies", "Deny entries", body)
}

async fn deny_remove(
    State(shared): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<u32>,
) -> Response {
    let result = api::remove_deny(&shared, &caller, id);
    let markup = html! {
        @if let Err((_, why)) = &result { (message(false, why)) }
        (denies_markup(&shared))
    };
    Html(markup.into_string()).into_response()
}

/// Keeps `TargetForm` used by the deny form's fields.
#[allow(dead_code)]
fn _fields(_: TargetForm) {}

// ---- history ------------------------------------------------------------------------------

async fn history_page(
    State(shared): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Query(query): Query<api::HistoryQuery>,
) -> Response {
    let last = query.last.clone().unwrap_or_else(|| "1h".to_string());
    let query = api::HistoryQuery {
        last: (query.since.is_none()).then(|| last.clone()),
        ..query
    };
    let result = api::history_page(&shared, query).await;
    let body = html! {
        h1 { "History" }
        form.history method="get" action="/history" {
            label { "last " select name="last" {
                @for (value, name) in [("1h", "1 hour"), ("24h", "24 hours"), ("7d", "7 days"), ("30d", "30 days")] {
                    option value=(value) selected[last == value] { (name) }
                }
            } }
            button type="submit" { "Search" }
        }
        @match &result {
            Err((_, why)) => (message(false, why)),
            Ok(page) => {
                p { (page.events.len()) " events" @if page.next.is_some() { " (more: narrow the query)" } }
                div.rows { @for event in &page.events { (event_row(event)) } }
            }
        }
    };
    page(&shared, &caller, &headers, "/history", "History", body)
}

// ---- status -------------------------------------------------------------------------------

async fn status_page(
    State(shared): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Response {
    let status = api::status_of(&shared);
    let body = html! {
        h1 { "Status" }
        dl.facts {
            dt { "host" } dd { (clean(&status.host)) }
            dt { "version" } dd { (status.version) }
            dt { "up since" } dd { (status.started) " (" (status.uptime_secs) " s)" }
            dt { "events" } dd { (status.events_total) " (" (format!("{:.0}", status.events_per_sec_60s)) "/s over a minute)" }
            dt { "alerts" } dd { (status.alerts_total) }
            dt { "rules" } dd { (status.rules) }
            dt { "enforcement" } dd { (status.enforcement) }
            dt { "web clients" } dd { (status.web_clients) }
            dt { "lost events" } dd { (status.lost_total)
                @for (reason, n) in &status.losses { @if n.as_u64().unwrap_or(0) > 0 { br; small { (reason) ": " (n) } } } }
        }
    };
    page(&shared, &caller, &headers, "/status", "Status", body)
}
