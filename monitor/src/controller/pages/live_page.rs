//! The live page: the newest events in three tabs (processes, files, network) and the alerts
//! beside them, kept current over a WebSocket (`/ui/live`) whose filter the page's form sets.
use axum::{
    Extension,
    extract::{Query, State, WebSocketUpgrade},
    http::{HeaderMap, StatusCode},
    response::Response,
};
use maud::{Markup, html};

use super::layout::{alert_row, event_row, page, short};
use crate::{
    controller::{
        AppState, api,
        live::{self, Compiled, LiveFilter},
        security::{self, Caller},
    },
    event::Event,
};

/// The tabs: (id, title).
pub const TABS: [(&str, &str); 3] = [
    ("process", "Processes"),
    ("file", "Files"),
    ("network", "Network"),
];
/// Rows a page load (or a new filter) starts with, per tab and in the alerts.
const INITIAL_ROWS: usize = 100;
/// Where the outcome of an alert row's "simulate block" goes.
const ACTION_RESULT: &str = "live-action";

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

/// The newest recent events that pass `filter`, per tab, and the newest such alerts.
fn recent(shared: &AppState, filter: &Compiled) -> ([Vec<Event>; 3], Vec<Event>) {
    let events = shared.hub.recent_events(usize::MAX, |e| filter.matches(e));
    let mut by_tab: [Vec<Event>; 3] = Default::default();
    for event in events {
        let rows = &mut by_tab[live::tab_of(&event)];
        if rows.len() < INITIAL_ROWS {
            rows.push(event);
        }
        if by_tab.iter().all(|rows| rows.len() >= INITIAL_ROWS) {
            break;
        }
    }
    let alerts = shared
        .hub
        .recent_alerts(crate::controller::hub::RECENT_ALERTS)
        .into_iter()
        .filter(|e| filter.matches(e))
        .take(INITIAL_ROWS)
        .collect();
    (by_tab, alerts)
}

pub async fn live_page(
    State(shared): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Response {
    let (by_tab, alerts) = recent(&shared, &Compiled::default());
    let body = html! {
        @if let Some(narration) = super::demo::panel(&shared) { (narration) }
        div.live hx-ext="ws" ws-connect="/ui/live" {
            div.toolbar {
                (stats_markup(&shared, 0))
                form #filter ws-send hx-trigger="submit, change, keyup changed delay:300ms from:#filter-text" {
                    label { "min risk "
                        select name="min_risk" {
                            option value="" { "any" }
                            option value="0.3" { "≥ 0.3" }
                            option value="0.6" { "≥ 0.6 (suspicious)" }
                            option value="0.85" { "≥ 0.85 (malicious)" }
                        }
                    }
                    label { "text "
                        input #filter-text type="search" name="text" placeholder="process, path, address, label" autocomplete="off";
                    }
                }
                span.ws-state #ws-state role="status" { "connecting…" }
            }
            div.action-result #(ACTION_RESULT) aria-live="polite" {}
            div.columns {
                section.events {
                    div.tabs role="tablist" {
                        @for (i, (id, name)) in TABS.iter().enumerate() {
                            button type="button" role="tab" #{"tab-button-" (id)} data-tab=(id)
                                aria-controls={"tab-" (id)} aria-selected=(if i == 0 { "true" } else { "false" }) { (name) }
                        }
                    }
                    @for (i, (id, _)) in TABS.iter().enumerate() {
                        div.tab-panel #{"tab-" (id)} role="tabpanel" hidden[i != 0] {
                            div.rows #{"rows-" (id)} {
                                @for event in &by_tab[i] { (event_row(event)) }
                            }
                        }
                    }
                }
                aside.alerts {
                    h2 { "Alerts" }
                    div.rows #rows-alerts {
                        @for event in &alerts { (alert_row(event, ACTION_RESULT)) }
                    }
                }
            }
        }
    };
    page(&shared, &caller, &headers, "/", "Live", body)
}

pub async fn live_socket(
    State(shared): State<AppState>,
    Query(filter): Query<LiveFilter>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let described = filter.describe();
    let filter = filter.compile().unwrap_or_default();
    let Some(feed) = shared.hub.subscribe() else {
        return security::error(StatusCode::SERVICE_UNAVAILABLE, "too many live clients");
    };
    upgrade
        .max_message_size(live::MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| live::html_session(socket, feed, filter, described, shared))
}

/// The connection state the page shows: live, and the filter in force.
fn state_markup(state: Markup, filter: &str) -> Markup {
    html! {
        span.ws-state #ws-state hx-swap-oob="true" role="status" {
            (state)
            @if !filter.is_empty() { " · filter: " span.filter-in-force { (filter) } }
        }
    }
}

/// One flush of the live stream: the new rows of each tab and the new alerts (newest first),
/// the figures, and a note when rows were skipped or lost. `None` when there is nothing new.
pub fn live_update(
    shared: &AppState,
    pending: &mut [Vec<Event>; 3],
    alerts: &mut Vec<Event>,
    skipped: u64,
    lost: Option<u64>,
    filter: &str,
) -> Option<String> {
    let nothing_new = pending.iter().all(Vec::is_empty) && alerts.is_empty() && lost.is_none();
    if nothing_new && skipped == 0 {
        return None;
    }
    let state = html! {
        @match lost {
            Some(n) => span.lost { "live · this page lost " (n) " events (too slow)" },
            None if skipped > 0 => { "live · busy: showing the newest rows" },
            None => { "live" },
        }
    };
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
                @for event in alerts.iter().rev() { (alert_row(event, ACTION_RESULT)) }
            }
        }
        (stats_markup(shared, lost.unwrap_or(0)))
        (state_markup(state, filter))
    };
    for rows in pending.iter_mut() {
        rows.clear();
    }
    alerts.clear();
    Some(markup.into_string())
}

/// The page's lists redone for a new filter: the recent events and alerts that pass it.
pub fn live_reset(shared: &AppState, filter: &Compiled, described: &str) -> String {
    let (by_tab, alerts) = recent(shared, filter);
    html! {
        @for (i, (id, _)) in TABS.iter().enumerate() {
            div #{"rows-" (id)} hx-swap-oob="innerHTML" {
                @for event in &by_tab[i] { (event_row(event)) }
            }
        }
        div #rows-alerts hx-swap-oob="innerHTML" {
            @for event in &alerts { (alert_row(event, ACTION_RESULT)) }
        }
        (state_markup(html! { "live" }, described))
    }
    .into_string()
}

/// The page's answer to a filter it cannot use (the previous one stays).
pub fn live_refused(why: &str, previous: &str) -> String {
    state_markup(
        html! { span.lost { "filter refused: " (super::layout::clean(why)) } },
        previous,
    )
    .into_string()
}
