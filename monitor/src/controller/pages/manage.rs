//! The management pages: rules (switch, reload, hits), probes (switch families) and deny
//! entries (list, block when enforcing, lift, simulate, the simulated blocks).
use axum::{
    Extension, Form, Router,
    extract::{Path, State},
    http::HeaderMap,
    response::{Html, IntoResponse, Response},
    routing::{get, post},
};
use maud::{Markup, html};
use serde::Deserialize;

use super::layout::{clean, message, page};
use crate::controller::{AppState, RuleReload, api, security::Caller};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/rules", get(rules_page))
        .route("/ui/rules/reload", post(rules_reload))
        .route("/ui/rules/switch", post(rule_switch))
        .route("/probes", get(probes_page))
        .route("/ui/probes/{family}", post(probe_switch))
        .route("/denies", get(denies_page))
        .route("/ui/denies/{id}/remove", post(deny_remove))
}

/// `to=on|off`.
#[derive(Deserialize)]
struct SwitchForm {
    to: String,
}

/// `name=RULE&to=on|off`.
#[derive(Deserialize)]
struct RuleSwitchForm {
    name: String,
    to: String,
}

// ---- rules --------------------------------------------------------------------------------

/// The rules with their switches (`#rules-table`; out of band after a reload).
fn rules_table(shared: &AppState, problem: Option<&str>, out_of_band: bool) -> Markup {
    let rules = shared.controls.rules.list();
    let on = rules.iter().filter(|r| r.enabled).count();
    html! {
        div #rules-table hx-swap-oob=[out_of_band.then_some("true")] {
            @if let Some(why) = problem { (message(false, why)) }
            p.count { (rules.len()) " rules, " (on) " enabled · "
                (rules.iter().map(|r| r.hits).sum::<u64>()) " hits since the monitor started" }
            div.scroll {
                table.grid.rules {
                    thead { tr { th { "rule" } th.num { "hits" } th.num { "score" } th { "action" } th { "state" } } }
                    tbody {
                        @for rule in &rules {
                            tr.(if rule.enabled { "on" } else { "off" }) data-rule=(rule.name) {
                                td {
                                    b.rule-name { (clean(&rule.name)) } " " span.label { (clean(&rule.label)) }
                                    @if !rule.description.is_empty() { br; small { (clean(&rule.description)) } }
                                }
                                td.num.hits { (rule.hits) }
                                td.num { (format!("{:.2}", rule.score)) }
                                td { (rule.action.as_str()) }
                                td {
                                    button.switch type="button" hx-post="/ui/rules/switch"
                                        hx-vals=(serde_json::json!({"name": rule.name, "to": if rule.enabled { "off" } else { "on" }}).to_string())
                                        hx-target="#rules-table" hx-swap="outerHTML"
                                        aria-pressed=(if rule.enabled { "true" } else { "false" })
                                        title=(if rule.enabled { "enabled: press to switch it off" } else { "disabled: press to switch it on" }) {
                                        @if rule.enabled { "on" } @else { "off" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The last few reloads, newest first.
pub fn reloads_list(reloads: &[RuleReload], at_most: usize) -> Markup {
    html! {
        @if reloads.is_empty() {
            p.note { "No reload since the controller started." }
        } @else {
            ul.reloads {
                @for reload in reloads.iter().take(at_most) {
                    li.(if reload.ok { "ok" } else { "err" }) {
                        (reload.time.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M:%S")) " · "
                        (clean(&reload.by)) " · "
                        @if reload.ok { "reloaded: " } @else { "FAILED: " }
                        (clean(&reload.result))
                    }
                }
            }
        }
    }
}

fn rules_body(shared: &AppState, result: Option<Markup>) -> Markup {
    html! {
        div #rules-reload {
            @if let Some(result) = result { (result) }
            h2 { "Recent reloads" }
            (reloads_list(&shared.controls.recent_reloads(), 5))
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
        p { "A rule switched off stops matching at once (until the monitor restarts). A reload re-reads the rule files; if one is broken, the previous rules stay in force." }
        div.actions {
            button type="button" hx-post="/ui/rules/reload" hx-target="#rules-reload" hx-swap="outerHTML" { "Reload the rule files" }
            label { "find " input #rule-search type="search" placeholder="name, label, description" autocomplete="off"; }
        }
        (rules_body(&shared, None))
        (rules_table(&shared, None, false))
    };
    page(&shared, &caller, &headers, "/rules", "Rules", body)
}

async fn rule_switch(
    State(shared): State<AppState>,
    Extension(caller): Extension<Caller>,
    Form(form): Form<RuleSwitchForm>,
) -> Response {
    let result = api::set_rule(&shared, &caller, &form.name, form.to == "on");
    let problem = result.err().map(|(_, why)| why);
    let markup = rules_table(&shared, problem.as_deref(), false);
    Html(markup.into_string()).into_response()
}

async fn rules_reload(
    State(shared): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Response {
    let result = match api::reload_rules(&shared, &caller) {
        Ok(summary) => message(true, &format!("reloaded: {summary}")),
        Err((_, why)) => message(
            false,
            &format!("reload failed, the previous rules stay in force: {why}"),
        ),
    };
    let markup = html! {
        (rules_body(&shared, Some(result)))
        // The table too: hit counts and switches follow the new rules.
        (rules_table(&shared, None, true))
    };
    Html(markup.into_string()).into_response()
}

// ---- probes -------------------------------------------------------------------------------

/// What each family's probes report.
fn family_covers(family: &str) -> &'static str {
    match family {
        "process" => "exec, fork, exit, ptrace, privilege changes",
        "file" => "opens, writes, renames, deletions, permission changes",
        "network" => "connects, accepts, listens",
        "kernel" => "module loads, BPF program loads",
        _ => "",
    }
}

fn probes_table(shared: &AppState, problem: Option<&str>) -> Markup {
    html! {
        div #probes-table {
            @if let Some(why) = problem { (message(false, why)) }
            div.scroll {
                table.grid.probes {
                    thead { tr { th { "family" } th { "reports" } th { "state" } th {} } }
                    tbody {
                        @for row in api::probe_rows(shared) {
                            tr.(row.state) data-family=(row.family) {
                                td { b { (row.family) } }
                                td { small { (family_covers(row.family)) } }
                                td.state {
                                    span.probe-state { (row.state) }
                                    @if let Some(why) = &row.why_unavailable { br; small.why { (clean(why)) } }
                                    @if row.state == "replay" { br; small.why { "a recording is served: there are no probes to switch" } }
                                }
                                td {
                                    @if row.state == "on" || row.state == "off" {
                                        button.switch type="button" hx-post=(format!("/ui/probes/{}", row.family))
                                            hx-vals=(serde_json::json!({"to": if row.state == "on" { "off" } else { "on" }}).to_string())
                                            hx-target="#probes-table" hx-swap="outerHTML" data-family=(row.family)
                                            aria-pressed=(if row.state == "on" { "true" } else { "false" }) {
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
    }
}

async fn probes_page(
    State(shared): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Response {
    let body = html! {
        h1 { "Probes" }
        p { "Switching a family off stops its events in the kernel: the programs stay attached and report nothing, so nothing of that family is analysed, stored or shown until it is switched on again." }
        (probes_table(&shared, None))
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
    let problem = result.err().map(|(_, why)| why);
    let markup = probes_table(&shared, problem.as_deref());
    Html(markup.into_string()).into_response()
}

// ---- deny entries -------------------------------------------------------------------------

/// The kernel's deny entries and the simulated blocks (`#denies`; out of band for a
/// simulation made from the page's form).
pub fn denies_lists(shared: &AppState, out_of_band: bool) -> Markup {
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
        div #denies hx-swap-oob=[out_of_band.then_some("true")] {
            h2 { "In the kernel" }
            @match &shared.controls.enforcer {
                None => p.note { "Real enforcement is off (" (shared.controls.enforce_mode) "): nothing is denied in the kernel. Set "
                    code { "[response] enforce = true" } " to block for real; simulations work either way." },
                Some(enforcer) => {
                    @let denies = enforcer.list();
                    @if denies.is_empty() {
                        p.note { "No deny entry." }
                    } @else {
                        div.scroll {
                            table.grid.denies {
                                thead { tr { th.num { "id" } th { "target" } th { "expires" } th { "by" } th { "why" } th {} } }
                                tbody {
                                    @for deny in denies {
                                        tr {
                                            td.num { (deny.id) }
                                            td { (clean(&deny.target)) }
                                            td { @match deny.expires { Some(t) => (t.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M:%S")), None => "never" } }
                                            td { (clean(&deny.by)) }
                                            td { (clean(&deny.reason)) }
                                            td { button type="button" hx-post=(format!("/ui/denies/{}/remove", deny.id)) hx-target="#denies" hx-swap="outerHTML"
                                                hx-confirm=(format!("Lift deny entry {}?", deny.id)) { "lift" } }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            h2 { "Simulated blocks " small { "(newest first; nothing enforced)" } }
            @if simulated.is_empty() {
                p.note { "None yet: simulate one with the form above, from an alert on the live page, or from a process's view." }
            } @else {
                ul.simulated {
                    @for block in &simulated {
                        li {
                            span.time { (block.time.with_timezone(&chrono::Local).format("%H:%M:%S")) } " "
                            b.target { (clean(&block.target)) } ": "
                            span.outcome { (clean(&block.outcome)) }
                            " " small { "(" (clean(&block.client)) ")" }
                        }
                    }
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
    let enforcing = shared.controls.enforcer.is_some();
    let body = html! {
        h1 { "Deny entries" }
        p { "Enforcement: " b.mode { (shared.controls.enforce_mode) } }
        form.deny hx-post="/ui/simulate" hx-target="#deny-result" {
            input type="hidden" name="view" value="denies";
            label { "program (absolute path or name) " input type="text" name="exec" placeholder="/tmp/dropper" autocomplete="off"; }
            label { "or destination " input type="text" name="connect" placeholder="203.0.113.7:443" autocomplete="off"; }
            @if enforcing {
                label title="empty: [response] deny_ttl_secs" { "expires after (s) " input type="number" name="ttl_secs" min="1" placeholder="default" inputmode="numeric"; }
                label { "why " input type="text" name="reason" placeholder="incident 42" autocomplete="off"; }
            }
            button type="submit" { "Simulate" }
            @if enforcing {
                button.danger type="submit" hx-post="/ui/block" hx-target="#deny-result"
                    hx-confirm="Add this deny entry in the kernel?" { "Block" }
            }
        }
        div #deny-result aria-live="polite" {}
        (denies_lists(&shared, false))
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
        (denies_lists(&shared, false))
    };
    Html(markup.into_string()).into_response()
}
