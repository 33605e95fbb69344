//! The status page: rates, losses by reason, probes, rule reloads, web clients, enforcement.
//! It redraws itself every few seconds (an HTMX poll of its own fragment).
use axum::{
    Extension,
    extract::State,
    http::HeaderMap,
    response::{Html, IntoResponse, Response},
};
use maud::{Markup, html};

use super::{
    layout::{clean, is_htmx, page, short},
    manage::reloads_list,
};
use crate::{
    controller::{AppState, api, security::Caller},
    losses::Loss,
};

/// What each loss means, in a few words (docs/json-schema.md has the whole story).
fn loss_words(loss: Loss) -> &'static str {
    match loss {
        Loss::RingBufferFull => "the kernel's ring buffer was full: events never written",
        Loss::PendingTableFull => "too many syscalls in flight to follow: events missing",
        Loss::DecodeError => "kernel records that did not decode",
        Loss::ProcessTableEviction => {
            "processes forgotten by a full table: later events lack details"
        }
        Loss::FdTableReset => "open-file table reset: some paths unknown",
        Loss::HistoryQueueFull => "the history writer was behind: events not stored",
        Loss::HistoryWriteFailed => "database writes failed: events not stored",
        Loss::HistoryUnwrittenAtStop => "not stored when a stop's time ran out",
        Loss::WebhookQueueFull => "alerts not sent to the webhook",
        Loss::UnprocessedAtStop => "read but not processed when a stop's time ran out",
        Loss::OutputQueueFull => "JSON output behind: events not written",
        Loss::OutputUnwrittenAtStop => "JSON output stalled at the stop",
        Loss::DisplayQueueFull => "the terminal UI was behind: events not shown",
        Loss::WebQueueFull => "the web controller was behind: events not sent to the web",
        Loss::RecordingQueueFull => "the recording's writer was behind: events not recorded",
        Loss::NatsQueueFull => "the NATS exporter was behind: events not published",
        Loss::NatsSpoolFull => "NATS unreachable and its spool full: events not published",
        Loss::NatsTooLarge => "events over the NATS server's max_payload: not published",
    }
}

fn uptime(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h) {
        (0, 0) => format!("{m} min {s} s"),
        (0, _) => format!("{h} h {m} min"),
        _ => format!("{d} d {h} h"),
    }
}

fn status_body(shared: &AppState) -> Markup {
    let status = api::status_of(shared);
    let totals = shared.hub.totals();
    let snapshot = shared.controls.losses.snapshot();
    let reloads = shared.controls.recent_reloads();
    html! {
        div #status-body hx-get="/status" hx-trigger="every 3s" hx-swap="outerHTML" {
            div.cards {
                section.card {
                    h2 { "Monitor" }
                    dl.facts {
                        dt { "host" } dd { (clean(&status.host)) }
                        dt { "version" } dd { (status.version) }
                        dt { "up since" } dd { (shared.hub.started_at.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M:%S")) " (" (uptime(status.uptime_secs)) ")" }
                        dt { "enforcement" } dd #enforcement { b { (status.enforcement) } }
                        dt { "web clients" } dd #web-clients { (status.web_clients) " live page" @if status.web_clients != 1 { "s" } " or API streams connected" }
                        dt { "history" } dd { @match &status.history { Some(path) => code { (clean(path)) }, None => "off ([storage] enabled = false)" } }
                    }
                }
                section.card {
                    h2 { "Events" }
                    dl.facts {
                        dt { "rate" } dd #rate { (format!("{:.0}", status.events_per_sec_1s)) "/s now, " (format!("{:.1}", status.events_per_sec_60s)) "/s over a minute" }
                        dt { "since the start" } dd { (status.events_total) " events, " (status.alerts_total) " alerts" }
                        dt { "by family" } dd {
                            "process " (short(totals.by_family[0])) " · file " (short(totals.by_family[1]))
                            " · network " (short(totals.by_family[2])) " · kernel " (short(totals.by_family[3]))
                        }
                        dt { "by severity" } dd {
                            span.sev-0 { "benign " (short(totals.by_severity[0])) } " · "
                            span.sev-1 { "suspicious " (short(totals.by_severity[1])) } " · "
                            span.sev-2 { "malicious " (short(totals.by_severity[2])) }
                        }
                    }
                }
                section.card {
                    h2 { "Probes" }
                    ul.probes {
                        @for probe in &status.probes {
                            li.(probe.state) { b { (probe.family) } " " (probe.state)
                                @if let Some(why) = &probe.why_unavailable { ": " small { (clean(why)) } } }
                        }
                    }
                    p { a href="/probes" { "switch them" } }
                }
            }
            section #losses {
                h2 { "Losses " small { "(" (status.lost_total) " in all)" } }
                div.scroll {
                    table.grid.losses {
                        thead { tr { th { "reason" } th.num { "events" } th { "meaning" } } }
                        tbody {
                            @for loss in Loss::ALL {
                                @let n = snapshot.get(loss);
                                tr.(if n > 0 { "lost" } else { "none" }) {
                                    td { code { (loss.as_str()) } }
                                    td.num { (n) }
                                    td { small { (loss_words(loss)) } }
                                }
                            }
                        }
                    }
                }
            }
            section #reloads {
                h2 { "Rule reloads " small { "(" (status.rules) " rules loaded)" } }
                (reloads_list(&reloads, 10))
            }
        }
    }
}

pub async fn status_page(
    State(shared): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Response {
    if is_htmx(&headers) {
        return Html(status_body(&shared).into_string()).into_response();
    }
    let body = html! {
        h1 { "Status" }
        (status_body(&shared))
    };
    page(&shared, &caller, &headers, "/status", "Status", body)
}
