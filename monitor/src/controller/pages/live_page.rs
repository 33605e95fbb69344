//! The live page: the newest events in three tabs (processes, files, network) and the alerts
//! beside them, kept current over a WebSocket (`/ui/live`) whose filter the page's form sets.
//! On a hub the same view shows every host's events merged, each with its host, and a host's
//! page (`/hosts/NAME`) shows that host's alone ([`LiveScope`]).
use std::sync::Arc;

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
        hub::Hub,
        live::{self, Compiled, LiveFilter},
        security::{self, Caller},
    },
    event::Event,
};

/// Whose events a live view shows.
#[derive(Clone)]
pub enum LiveScope {
    /// This controller's: its pipeline's, or on a hub every host's merged.
    Controller,
    /// One host's on a hub (its page), from its own hub of recent events.
    Host(Arc<Hub>),
}

impl LiveScope {
    fn hub<'a>(&'a self, shared: &'a AppState) -> &'a Arc<Hub> {
        match self {
            LiveScope::Controller => &shared.hub,
            LiveScope::Host(hub) => hub,
        }
    }

    /// An alert's row, with its "simulate block": asked of this controller, or on a hub of the
    /// host the alert came from (a control request).
    fn alert(&self, event: &Event) -> Markup {
        alert_row(event, ACTION_RESULT)
    }
}

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

fn stats_markup(shared: &AppState, scope: &LiveScope, lost: u64) -> Markup {
    if let LiveScope::Host(hub) = scope {
        // Its losses are those it reports (its page's state table).
        let totals = hub.totals();
        return html! {
            span #live-stats hx-swap-oob="true" {
                (format!("{:.0}", hub.rate(1))) " events/s · "
                (short(totals.events)) " events · "
                (short(totals.alerts)) " alerts"
                @if lost > 0 { " · " span.lost { (short(lost)) " lost" } }
            }
        };
    }
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
fn recent(
    shared: &AppState,
    scope: &LiveScope,
    filter: &Compiled,
) -> ([Vec<Event>; 3], Vec<Event>) {
    let hub = scope.hub(shared);
    let events = hub.recent_events(usize::MAX, |e| filter.matches(e));
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
    let alerts = hub
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
    let body = html! {
        @if let Some(narration) = super::demo::panel(&shared) { (narration) }
        (live_panel(&shared, &LiveScope::Controller, "/ui/live"))
    };
    page(&shared, &caller, &headers, "/", "Live", body)
}

/// The hosts a hub has seen, for the host filter's suggestions (`None`: not a hub).
fn hub_hosts(shared: &AppState) -> Option<Vec<String>> {
    let hosts = shared.machines.nats.get()?;
    Some(hosts.rows().into_iter().map(|row| row.host).collect())
}

/// When the filter form is sent: at once on a choice, a short pause after typing.
fn filter_trigger(host_field: bool) -> &'static str {
    if host_field {
        "submit, change, keyup changed delay:300ms from:#filter-text, \
         keyup changed delay:300ms from:#filter-host"
    } else {
        "submit, change, keyup changed delay:300ms from:#filter-text"
    }
}

/// The live view of `scope`: its figures, the filter form, the tabs and the alerts, kept
/// current by the WebSocket at `socket`.
pub fn live_panel(shared: &AppState, scope: &LiveScope, socket: &str) -> Markup {
    let (by_tab, alerts) = recent(shared, scope, &Compiled::default());
    // The host filter, on a hub's merged view (a host's own view is of that host).
    let hosts = match scope {
        LiveScope::Controller => hub_hosts(shared),
        LiveScope::Host(_) => None,
    };
    html! {
        div.live hx-ext="ws" ws-connect=(socket) {
            div.toolbar {
                (stats_markup(shared, scope, 0))
                form #filter ws-send hx-trigger=(filter_trigger(hosts.is_some())) {
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
                    @if let Some(hosts) = &hosts {
                        label { "host "
                            input #filter-host type="search" name="host" list="known-hosts" placeholder="every host" autocomplete="off";
                        }
                        datalist #known-hosts { @for host in hosts { option value=(host) {} } }
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
                        @for event in &alerts { (scope.alert(event)) }
                    }
                }
            }
        }
    }
}

pub async fn live_socket(
    State(shared): State<AppState>,
    Query(filter): Query<LiveFilter>,
    upgrade: WebSocketUpgrade,
) -> Response {
    live_upgrade(shared, LiveScope::Controller, filter, upgrade)
}

/// The live stream of `scope`, filtered by `filter` until the page sends another.
pub fn live_upgrade(
    shared: AppState,
    scope: LiveScope,
    filter: LiveFilter,
    upgrade: WebSocketUpgrade,
) -> Response {
    let described = filter.describe();
    let filter = filter.compile().unwrap_or_default();
    let Some(feed) = scope.hub(&shared).subscribe() else {
        return security::error(StatusCode::SERVICE_UNAVAILABLE, "too many live clients");
    };
    upgrade
        .max_message_size(live::MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| {
            live::html_session(socket, feed, filter, described, shared, scope)
        })
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
    scope: &LiveScope,
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
                @for event in alerts.iter().rev() { (scope.alert(event)) }
            }
        }
        (stats_markup(shared, scope, lost.unwrap_or(0)))
        (state_markup(state, filter))
    };
    for rows in pending.iter_mut() {
        rows.clear();
    }
    alerts.clear();
    Some(markup.into_string())
}

/// The page's lists redone for a new filter: the recent events and alerts that pass it.
pub fn live_reset(
    shared: &AppState,
    scope: &LiveScope,
    filter: &Compiled,
    described: &str,
) -> String {
    let (by_tab, alerts) = recent(shared, scope, filter);
    html! {
        @for (i, (id, _)) in TABS.iter().enumerate() {
            div #{"rows-" (id)} hx-swap-oob="innerHTML" {
                @for event in &by_tab[i] { (event_row(event)) }
            }
        }
        div #rows-alerts hx-swap-oob="innerHTML" {
            @for event in &alerts { (scope.alert(event)) }
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
