//! The process view (`/process/{pid}`): who the process is (program, command line, user,
//! parent and ancestry), its recent events, its accumulated risk, and for every event a rule
//! marked, why: each rule's name, score and description, and how the scores combine.
use std::collections::{BTreeMap, BTreeSet};

use axum::{
    Extension,
    extract::{Path, State},
    http::HeaderMap,
    response::Response,
};
use maud::{Markup, html};

use super::layout::{block_vals, clean, event_row, page, severity_class};
use crate::{
    controller::{AppState, api, security::Caller},
    event::Event,
    rules::RuleInfo,
};

/// Events the view shows at most.
const EVENTS_SHOWN: usize = 200;
/// What the seed heuristic's parts add (rules/engine.rs), to explain them.
const HEURISTICS: &[(&str, f64, &str)] = &[
    (
        "heuristic:tmp_path",
        0.3,
        "the seed heuristic: the program or a path is under /tmp/",
    ),
    (
        "heuristic:shell",
        0.4,
        "the seed heuristic: the process is a shell",
    ),
];

/// Where the events came from.
enum Source {
    Live,
    History,
    Nowhere(Option<String>),
}

pub async fn process_page(
    State(shared): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(pid): Path<u32>,
) -> Response {
    let mut events = shared.hub.recent_events(EVENTS_SHOWN, |e| e.pid == pid);
    let mut source = Source::Live;
    if events.is_empty() {
        // Older than the live view's memory: the history's last day, if it is kept.
        let query = api::HistoryQuery {
            pid: Some(pid),
            last: Some("24h".to_string()),
            limit: Some(EVENTS_SHOWN),
            ..api::HistoryQuery::default()
        };
        source = match api::history_page(&shared, query).await {
            Ok(page) if !page.events.is_empty() => {
                events = page.events.into_iter().map(|row| row.event).collect();
                events.sort_by_key(|e| std::cmp::Reverse(e.timestamp));
                Source::History
            }
            Ok(_) => Source::Nowhere(None),
            Err((_, why)) => Source::Nowhere(Some(why)),
        };
    }
    let children: BTreeSet<(u32, String)> = shared
        .hub
        .recent_events(usize::MAX, |e| e.ppid == pid && e.pid != pid)
        .into_iter()
        .map(|e| (e.pid, e.process.to_string()))
        .collect();
    let rules: BTreeMap<String, RuleInfo> = shared
        .controls
        .rules
        .list()
        .into_iter()
        .map(|r| (r.name.clone(), r))
        .collect();
    let body = html! {
        h1 { "Process " (pid) }
        @match (&source, events.first()) {
            (Source::Nowhere(_), _) | (_, None) => {
                p { "No recent event of process " (pid) ". The live view keeps the last few thousand events"
                    @if let Source::Nowhere(Some(why)) = &source { "; the history could not be searched: " (clean(why)) }
                    @else { " and the history has none in the last 24 hours" }
                    ". "
                    a href=(format!("/history?pid={pid}&last=30d")) { "Search its last 30 days" } "." }
            }
            (_, Some(latest)) => {
                @if matches!(source, Source::History) {
                    p.note { "Not in the live view any more: its events of the last 24 hours, from the history." }
                }
                (facts(&events, latest, &children))
                (actions(&shared, latest))
                h2 { "Its events " small { "(newest first, at most " (EVENTS_SHOWN) ")" } }
                div.rows.process-events {
                    @for event in &events {
                        (event_row(event))
                        @if !event.analysis.rules.is_empty() { (why(event, &rules)) }
                    }
                }
            }
        }
    };
    page(
        &shared,
        &caller,
        &headers,
        "",
        &format!("Process {pid}"),
        body,
    )
}

fn facts(events: &[Event], latest: &Event, children: &BTreeSet<(u32, String)>) -> Markup {
    let highest = events
        .iter()
        .max_by(|a, b| a.analysis.risk_score.total_cmp(&b.analysis.risk_score));
    let marked = events
        .iter()
        .filter(|e| !e.analysis.rules.is_empty())
        .count();
    html! {
        dl.facts {
            dt { "name" } dd.proc-name { (clean(&latest.process)) }
            dt { "program" } dd.proc-exe { (clean(&latest.exe)) }
            dt { "command line" } dd.proc-cmdline { (clean(&latest.cmdline)) }
            dt { "user" } dd { (clean(&latest.user)) " (uid " (latest.uid) ")" }
            dt { "parent" } dd {
                (clean(&latest.parent_process)) " "
                @if latest.ppid > 0 { a href=(format!("/process/{}", latest.ppid)) { "(" (latest.ppid) ")" } }
            }
            dt { "ancestry" } dd.ancestry {
                span.self { (clean(&latest.process)) }
                @for name in &latest.ancestors { " ← " span { (clean(name)) } }
            }
            @if !children.is_empty() {
                dt { "children seen" } dd {
                    @for (i, (pid, name)) in children.iter().enumerate() {
                        @if i > 0 { ", " }
                        a href=(format!("/process/{pid}")) { (clean(name)) " (" (pid) ")" }
                    }
                }
            }
            dt { "accumulated risk" } dd.proc-risk {
                b { (format!("{:.2}", latest.analysis.process_risk)) }
                small { " the scores of every rule it matched, added up (at most 1) and halving every 10 minutes without a new match" }
            }
            dt { "highest event risk" } dd {
                @match highest {
                    Some(e) if e.analysis.risk_score > 0.0 => span.(severity_class(e.analysis.severity)) {
                        (format!("{:.2}", e.analysis.risk_score)) " (" (clean(&e.analysis.label)) ")"
                    },
                    _ => "0 (no rule matched)",
                }
            }
            dt { "events" } dd { (events.len()) " shown, " (marked) " marked by rules" }
        }
    }
}

fn actions(shared: &AppState, latest: &Event) -> Markup {
    let vals = block_vals(latest);
    html! {
        div.actions {
            @if let Some(vals) = &vals {
                button.simulate type="button" hx-post="/ui/simulate" hx-vals=(vals) hx-target="#action-result" {
                    "Simulate blocking its program"
                }
                @if shared.controls.enforcer.is_some() {
                    button.danger type="button" hx-post="/ui/block" hx-vals=(vals) hx-target="#action-result"
                        hx-confirm=(format!("Deny {} (killed at every further exec)?", clean(&latest.exe))) {
                        "Block its program"
                    }
                }
            } @else {
                span.note { "Its program has no known path: it cannot be blocked from here." }
            }
            div #action-result aria-live="polite" {}
        }
    }
}

/// Why `event` was marked: its rules with their scores and descriptions, and the
/// combination `1 − ∏(1 − sᵢ)` that gave its risk.
fn why(event: &Event, rules: &BTreeMap<String, RuleInfo>) -> Markup {
    let mut factors: Vec<f64> = Vec::new();
    let mut heuristic = 0.0;
    let rows: Vec<(String, Option<f64>, String)> = event
        .analysis
        .rules
        .iter()
        .map(|name| {
            if let Some(rule) = rules.get(name) {
                factors.push(rule.score);
                let text = if rule.description.is_empty() {
                    rule.label.clone()
                } else {
                    rule.description.clone()
                };
                (name.clone(), Some(rule.score), text)
            } else if let Some((_, score, text)) = HEURISTICS.iter().find(|(n, _, _)| n == name) {
                heuristic += score;
                (name.clone(), Some(*score), (*text).to_string())
            } else {
                (
                    name.clone(),
                    None,
                    "(no rule of this name is loaded now)".to_string(),
                )
            }
        })
        .collect();
    if heuristic > 0.0 {
        factors.push(heuristic);
    }
    let combined = 1.0 - factors.iter().map(|s| 1.0 - s).product::<f64>();
    let formula = factors
        .iter()
        .map(|s| format!("(1 − {s:.2})"))
        .collect::<Vec<_>>()
        .join("·");
    let risk = event.analysis.risk_score;
    html! {
        ul.why {
            @for (name, score, text) in &rows {
                li {
                    b.rule-name { (clean(name)) }
                    @if let Some(score) = score { " " span.score { (format!("{score:.2}")) } }
                    ": " (clean(text))
                }
            }
            li.how {
                "risk " b { (format!("{risk:.2}")) }
                @if !factors.is_empty() {
                    " = 1 − " (formula)
                    @if (combined - risk).abs() > 0.005 {
                        " (with today's scores that would be " (format!("{combined:.2}")) "; the rules changed since)"
                    }
                }
                " · " (clean(&event.analysis.label))
                " · the process's accumulated risk became " (format!("{:.2}", event.analysis.process_risk))
            }
        }
    }
}
