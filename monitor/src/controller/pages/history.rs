//! The history page: a period (the last hour, day, week or month, or from–to), filters, the
//! matching events a page at a time (newest first; "older" follows the API's `next` cursor),
//! and a chart of the period's events per time bucket by severity, drawn here as an inline SVG
//! (no script: presentation attributes and classes from app.css, which the CSP allows).
use std::fmt::Write as _;

use axum::{
    Extension,
    extract::{Query, State},
    http::HeaderMap,
    response::Response,
};
use chrono::{DateTime, Duration, Local, Utc};
use maud::{Markup, html};
use serde::Deserialize;

use super::layout::{event_row, message, page, short};
use crate::{
    controller::{AppState, api, security::Caller},
    event::{EventType, Family},
    storage::{History, TimelineRow},
};

/// The preset periods: (value, words).
const PERIODS: [(&str, &str); 4] = [
    ("1h", "last hour"),
    ("24h", "last 24 hours"),
    ("7d", "last 7 days"),
    ("30d", "last 30 days"),
];
/// Page sizes offered.
const PAGE_SIZES: [usize; 3] = [50, 100, 500];
/// The chart has at most this many bars…
const MAX_BARS: i64 = 180;
/// …each as wide as one of these (seconds).
const BUCKETS: [i64; 13] = [
    60, 120, 300, 600, 900, 1800, 3600, 7200, 10_800, 21_600, 43_200, 86_400, 604_800,
];

/// The page's query string, as its form sends it (every field text, empty when not given).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct HistoryForm {
    /// A preset (`1h`…`30d`) or `custom` (then `since`/`until`).
    #[serde(default)]
    period: Option<String>,
    /// A span, as the API takes it (links from other pages).
    #[serde(default)]
    last: Option<String>,
    #[serde(default)]
    since: Option<String>,
    #[serde(default)]
    until: Option<String>,
    #[serde(rename = "type", default)]
    types: Option<String>,
    #[serde(default)]
    process: Option<String>,
    #[serde(default)]
    pid: Option<String>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    ip: Option<String>,
    #[serde(default)]
    min_risk: Option<String>,
    #[serde(default)]
    rule: Option<String>,
    #[serde(default)]
    limit: Option<String>,
    #[serde(default)]
    before: Option<String>,
}

fn given(field: &Option<String>) -> Option<String> {
    field
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(String::from)
}

impl HistoryForm {
    /// `custom` when a start or end is given without a preset.
    fn period(&self) -> String {
        given(&self.period)
            .or_else(|| given(&self.last))
            .unwrap_or_else(|| {
                if given(&self.since).is_some() || given(&self.until).is_some() {
                    "custom".to_string()
                } else {
                    "1h".to_string()
                }
            })
    }

    fn custom(&self) -> bool {
        self.period() == "custom"
    }

    /// The API's query (without the cursor), or what is wrong with the form.
    fn query(&self) -> Result<api::HistoryQuery, String> {
        let min_risk = match given(&self.min_risk) {
            None => None,
            Some(t) => Some(
                t.parse::<f64>()
                    .map_err(|_| format!("min risk: {t:?} is not a number between 0 and 1"))?,
            ),
        };
        let pid = match given(&self.pid) {
            None => None,
            Some(t) => Some(
                t.parse::<u32>()
                    .map_err(|_| format!("pid: {t:?} is not a process id"))?,
            ),
        };
        let (last, since, until) = if self.custom() {
            if given(&self.since).is_none() {
                return Err("a custom period needs its start (since)".to_string());
            }
            (None, given(&self.since), given(&self.until))
        } else {
            (Some(self.period()), None, None)
        };
        Ok(api::HistoryQuery {
            last,
            since,
            until,
            types: given(&self.types),
            process: given(&self.process),
            pid,
            path: given(&self.path),
            ip: given(&self.ip),
            min_risk,
            rule: given(&self.rule),
            limit: Some(self.limit()),
            ..api::HistoryQuery::default()
        })
    }

    fn limit(&self) -> usize {
        given(&self.limit)
            .and_then(|l| l.parse().ok())
            .unwrap_or(100)
            .clamp(1, crate::controller::MAX_HISTORY_PAGE)
    }

    /// The query string of this search with another cursor (`None`: the newest page).
    fn href(&self, before: Option<&str>) -> String {
        let mut pairs: Vec<(&str, String)> = vec![("period", self.period())];
        let fields = [
            ("since", &self.since),
            ("until", &self.until),
            ("type", &self.types),
            ("process", &self.process),
            ("pid", &self.pid),
            ("path", &self.path),
            ("ip", &self.ip),
            ("min_risk", &self.min_risk),
            ("rule", &self.rule),
        ];
        for (name, value) in fields {
            if let Some(value) = given(value)
                && (self.custom() || !matches!(name, "since" | "until"))
            {
                pairs.push((name, value));
            }
        }
        pairs.push(("limit", self.limit().to_string()));
        if let Some(before) = before {
            pairs.push(("before", before.to_string()));
        }
        let mut href = "/history?".to_string();
        for (i, (name, value)) in pairs.iter().enumerate() {
            if i > 0 {
                href.push('&');
            }
            href.push_str(name);
            href.push('=');
            href.push_str(&percent_encode(value));
        }
        href
    }
}

/// Every byte but the unreserved ones of RFC 3986 as `%XX`.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The chart's period and bucket width (seconds), from the filter's bounds.
fn chart_span(
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
) -> (DateTime<Utc>, DateTime<Utc>, i64) {
    let end = until.unwrap_or_else(Utc::now);
    let start = since.unwrap_or(end - Duration::hours(24));
    let seconds = (end - start).num_seconds().max(60);
    let width = BUCKETS
        .iter()
        .copied()
        .find(|w| seconds / w <= MAX_BARS)
        .unwrap_or(BUCKETS[BUCKETS.len() - 1]);
    (start, end, width)
}

fn per_words(width: i64) -> String {
    match width {
        60 => "per minute".to_string(),
        w if w < 3600 => format!("per {} minutes", w / 60),
        3600 => "per hour".to_string(),
        w if w < 86_400 => format!("per {} hours", w / 3600),
        86_400 => "per day".to_string(),
        w => format!("per {} days", w / 86_400),
    }
}

/// What the chart draws.
struct Chart {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    width: i64,
    rows: Vec<TimelineRow>,
}

pub async fn history_page(
    State(shared): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Query(form): Query<HistoryForm>,
) -> Response {
    let results = match form.query() {
        Err(why) => Err(why),
        Ok(query) => search(&shared, &form, query).await,
    };
    let rules: Vec<String> = shared
        .controls
        .rules
        .list()
        .into_iter()
        .map(|r| r.name)
        .collect();
    let body = html! {
        h1 { "History" }
        (form_markup(&form, &rules))
        @match &results {
            Err(why) => (message(false, why)),
            Ok((page, chart)) => {
                @if let Some(chart) = chart { (chart_markup(chart)) }
                @let total: u64 = chart.as_ref().map_or(0, |c| c.rows.iter().map(|r| r.by_severity.iter().sum::<u64>()).sum());
                p.summary #history-summary {
                    @if chart.is_some() { (total) " events match in this period; " }
                    @if page.events.is_empty() { "none to show" }
                    @else {
                        "showing " (page.events.len())
                        @if given(&form.before).is_some() { " older ones" } @else { " newest" }
                        " (newest first)"
                    }
                }
                div.rows.history #history-rows {
                    @for row in &page.events {
                        (event_row(&row.event))
                        @if let Some(count) = row.count {
                            p.count { "× " (count) " identical events until " (row.last_timestamp.map(|t| t.to_rfc3339()).unwrap_or_default()) }
                        }
                    }
                }
                nav.pager {
                    @if given(&form.before).is_some() { a href=(form.href(None)) { "« newest" } }
                    @if let Some(next) = &page.next { a.older href=(form.href(Some(next))) rel="next" { "older »" } }
                }
            }
        }
    };
    page(&shared, &caller, &headers, "/history", "History", body)
}

/// One page of events and the period's chart.
async fn search(
    shared: &AppState,
    form: &HistoryForm,
    query: api::HistoryQuery,
) -> Result<(api::HistoryPage, Option<Chart>), String> {
    let mut filter = query.filter()?;
    let query = api::HistoryQuery {
        before: given(&form.before),
        ..query
    };
    let mut page = api::history_page(shared, query)
        .await
        .map_err(|(_, why)| why)?;
    // Newest first, whatever order the page came in.
    page.events
        .sort_by_key(|row| std::cmp::Reverse(row.event.timestamp));
    let Some(path) = shared.controls.history.clone() else {
        return Ok((page, None));
    };
    let (start, end, width) = chart_span(filter.since, filter.until);
    filter.since = Some(start);
    filter.until = Some(end);
    let offset = Local::now().offset().local_minus_utc();
    let rows = tokio::task::spawn_blocking(move || {
        History::open(&path).and_then(|history| history.timeline(&filter, width, offset))
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    Ok((
        page,
        Some(Chart {
            start,
            end,
            width,
            rows,
        }),
    ))
}

fn form_markup(form: &HistoryForm, rules: &[String]) -> Markup {
    let period = form.period();
    let types = given(&form.types).unwrap_or_default();
    let limit = form.limit();
    let text = |field: &Option<String>| given(field).unwrap_or_default();
    let filtered = [
        &form.types,
        &form.process,
        &form.pid,
        &form.path,
        &form.ip,
        &form.min_risk,
        &form.rule,
    ]
    .into_iter()
    .filter(|f| given(f).is_some())
    .count();
    html! {
        form.history #history-form method="get" action="/history" {
            fieldset.period {
                legend { "Period" }
                label { select #period name="period" {
                    @for (value, words) in PERIODS {
                        option value=(value) selected[period == value] { (words) }
                    }
                    option value="custom" selected[period == "custom"] { "from … to …" }
                } }
                label { "from " input #since type="datetime-local" name="since" step="1" value=(text(&form.since)); }
                label { "to " input #until type="datetime-local" name="until" step="1" value=(text(&form.until)); }
            }
            details.filters open[filtered > 0] {
                summary { "Filters" @if filtered > 0 { " (" (filtered) " set)" } }
                div.fields {
                label { "type " select #type name="type" {
                    option value="" { "any" }
                    optgroup label="families" {
                        @for family in Family::ALL { option value=(family.as_str()) selected[types == family.as_str()] { (family.as_str()) } }
                    }
                    optgroup label="types" {
                        @for t in EventType::ALL { option value=(t.as_str()) selected[types == t.as_str()] { (t.as_str()) } }
                    }
                } }
                label { "process " input #process type="text" name="process" placeholder="name (* wildcard)" value=(text(&form.process)) autocomplete="off"; }
                label { "pid " input #pid type="text" name="pid" inputmode="numeric" size="7" value=(text(&form.pid)) autocomplete="off"; }
                label { "path " input #path type="text" name="path" placeholder="/etc/shadow, /tmp/, *.sh" value=(text(&form.path)) autocomplete="off"; }
                label { "ip " input #ip type="text" name="ip" placeholder="203.0.113.7" value=(text(&form.ip)) autocomplete="off"; }
                label { "min risk " input #min_risk type="number" name="min_risk" min="0" max="1" step="0.05" value=(text(&form.min_risk)); }
                label { "rule " input #rule type="text" name="rule" list="rule-names" value=(text(&form.rule)) autocomplete="off"; }
                datalist #rule-names { @for name in rules { option value=(name) {} } }
                label { "per page " select name="limit" {
                    @for size in PAGE_SIZES { option value=(size) selected[limit == size] { (size) } }
                    @if !PAGE_SIZES.contains(&limit) { option value=(limit) selected { (limit) } }
                } }
                }
            }
            button type="submit" { "Search" }
        }
    }
}

/// A bar of the chart: its bucket, its x and its segments (class, y, height), bottom up.
type Bar<'a> = (&'a TimelineRow, f64, Vec<(&'static str, f64, f64)>);

/// Stacked bars (benign, suspicious, malicious) per bucket; any bucket with an alert keeps a
/// visible sliver of it however many benign events share the bucket. The SVG stretches to
/// the page's width, so its text (the scale, the times) is HTML around it.
fn chart_markup(chart: &Chart) -> Markup {
    const W: f64 = 1000.0;
    const H: f64 = 100.0;
    const TOP: f64 = 4.0;
    const SLIVER: f64 = 2.5;
    let width_ns = chart.width.saturating_mul(1_000_000_000);
    let offset_ns = i64::from(Local::now().offset().local_minus_utc()) * 1_000_000_000;
    // The axis runs from the start of the first bucket to the end of the last.
    let floor = |ns: i64| (ns + offset_ns).div_euclid(width_ns) * width_ns - offset_ns;
    let start_ns = floor(chart.start.timestamp_nanos_opt().unwrap_or(0));
    let end_ns = floor(chart.end.timestamp_nanos_opt().unwrap_or(0) - 1) + width_ns;
    let span_ns = (end_ns - start_ns).max(1) as f64;
    let highest = chart
        .rows
        .iter()
        .map(|r| r.by_severity.iter().sum::<u64>())
        .max()
        .unwrap_or(0)
        .max(1);
    let plot = H - TOP;
    // A hair narrower than the bucket, so that neighbours stay apart.
    let bar_w = (W * width_ns as f64 / span_ns * 0.9).max(0.5);
    let x_of = |t: DateTime<Utc>| {
        let ns = t.timestamp_nanos_opt().unwrap_or(0) - start_ns;
        (W * ns as f64 / span_ns).clamp(0.0, W - bar_w)
    };
    let long = chart.end - chart.start > Duration::hours(36);
    let local = |t: DateTime<Utc>| {
        let t = t.with_timezone(&Local);
        if long {
            t.format("%m-%d %H:%M").to_string()
        } else {
            t.format("%H:%M").to_string()
        }
    };
    let ticks: Vec<String> = (0..=4)
        .map(|i| {
            local(crate::storage::from_ns(
                start_ns + (end_ns - start_ns) / 4 * i,
            ))
        })
        .collect();
    // Per bar: its x and its segments (class, y, height), bottom up.
    let bars: Vec<Bar> = chart
        .rows
        .iter()
        .map(|row| {
            let scaled = |n: u64| plot * n as f64 / highest as f64;
            let total: u64 = row.by_severity.iter().sum();
            let [benign, suspicious, malicious] = row.by_severity;
            let sliver = |n: u64| if n == 0 { 0.0 } else { scaled(n).max(SLIVER) };
            let (s_h, m_h) = (sliver(suspicious), sliver(malicious));
            let b_h = if benign == 0 {
                0.0
            } else {
                (scaled(total) - s_h - m_h).max(0.8)
            };
            let mut y = H;
            let mut segments = Vec::new();
            for (class, h) in [("sev-0", b_h), ("sev-1", s_h), ("sev-2", m_h)] {
                if h > 0.0 {
                    y -= h;
                    segments.push((class, y, h));
                }
            }
            (row, x_of(row.start), segments)
        })
        .collect();
    let alerts: u64 = chart
        .rows
        .iter()
        .map(|r| r.by_severity[1] + r.by_severity[2])
        .sum();
    html! {
        figure.chart #history-chart {
            figcaption {
                "Events " (per_words(chart.width)) " by severity (highest bar: " (short(highest)) ") · "
                span.key.sev-0 { "■ benign" } " "
                span.key.sev-1 { "■ suspicious" } " "
                span.key.sev-2 { "■ malicious" }
                " · " (alerts) " alerts"
            }
            svg xmlns="http://www.w3.org/2000/svg" viewBox=(format!("0 0 {W} {H}")) preserveAspectRatio="none"
                role="img" aria-label=(format!("events {} from {} to {}", per_words(chart.width), local(chart.start), local(chart.end))) {
                @for (row, x, segments) in &bars {
                    @let total: u64 = row.by_severity.iter().sum();
                    g.bar {
                        title {
                            (local(row.start)) ": " (total) " events (" (row.by_severity[1]) " suspicious, " (row.by_severity[2]) " malicious)"
                        }
                        @for (class, y, h) in segments {
                            rect class=(class) x=(format!("{x:.2}")) y=(format!("{y:.2}")) width=(format!("{bar_w:.2}")) height=(format!("{h:.2}")) {}
                        }
                    }
                }
            }
            div.axis aria-hidden="true" { @for tick in &ticks { span { (tick) } } }
        }
    }
}
