//! WebSocket sessions: `/api/v1/events` sends API clients JSON, `/ui/live` sends the dashboard
//! HTML fragments that HTMX swaps into the page. Each session reads its own bounded queue
//! from the hub; what it could not take is reported to the client as lost, and a client that
//! stops reading for [`SEND_TIMEOUT`] is disconnected.
use std::{sync::atomic::Ordering, time::Duration};

use axum::extract::ws::{Message, Utf8Bytes, WebSocket};
use serde::Deserialize;
use serde_json::json;

use super::hub::{ClientFeed, events_messages, family_index, is_alert};
use crate::event::{AddressText, Event, EventType, Family, contains_ignore_case};

/// Largest message accepted from a client (filters only).
pub const MAX_CLIENT_MESSAGE: usize = 16 * 1024;
/// A client that takes longer than this to accept one message is disconnected.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How often an API client's losses are looked at when no batch comes to carry the news.
const LOSS_CHECK: Duration = Duration::from_secs(1);
/// The dashboard's live view is redrawn at most this often…
const HTML_FLUSH: Duration = Duration::from_millis(250);
/// …with at most this many new rows per tab and alerts (the newest; the page keeps the rest).
const HTML_ROWS_PER_FLUSH: usize = 40;

/// Server-side filters of a live stream (query string of `/api/v1/events`, or the dashboard's
/// filter form): every condition given must hold.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct LiveFilter {
    /// Comma-separated event types (`process_exec,file_open`).
    #[serde(rename = "type", default)]
    pub types: Option<String>,
    /// `process`, `file`, `network` or `kernel` (comma-separated for several).
    #[serde(default)]
    pub family: Option<String>,
    /// Only events scored at least this (0 to 1).
    #[serde(default, deserialize_with = "number_or_text")]
    pub min_risk: Option<f64>,
    /// Text that must appear (any case) in the process name, executable, command line, path,
    /// address, label or host.
    #[serde(default)]
    pub text: Option<String>,
    /// On a hub: the host(s) the events must come from, by exact name (comma-separated for
    /// several).
    #[serde(default)]
    pub host: Option<String>,
}

/// Accepts `0.5` and `"0.5"` (an HTML form sends text), and `""` as absent.
fn number_or_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Number(f64),
        Text(String),
    }
    match Option::<Either>::deserialize(d)? {
        None => Ok(None),
        Some(Either::Number(n)) => Ok(Some(n)),
        Some(Either::Text(t)) if t.trim().is_empty() => Ok(None),
        Some(Either::Text(t)) => t
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("min_risk: {t:?} is not a number"))),
    }
}

/// A checked [`LiveFilter`].
#[derive(Clone, Debug, Default)]
pub struct Compiled {
    types: Option<Vec<bool>>,
    families: Option<[bool; 4]>,
    min_risk: f64,
    text: Option<String>,
    hosts: Option<Vec<String>>,
}

impl LiveFilter {
    /// The filter in words, for the page to show (empty: everything passes).
    pub fn describe(&self) -> String {
        let given = |t: &Option<String>| {
            t.as_deref()
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(String::from)
        };
        let mut parts = Vec::new();
        if let Some(types) = given(&self.types) {
            parts.push(format!("type {types}"));
        }
        if let Some(families) = given(&self.family) {
            parts.push(format!("family {families}"));
        }
        if let Some(risk) = self.min_risk.filter(|r| *r > 0.0) {
            parts.push(format!("risk ≥ {risk}"));
        }
        if let Some(text) = given(&self.text) {
            parts.push(format!("“{text}”"));
        }
        if let Some(hosts) = given(&self.host) {
            parts.push(format!("host {hosts}"));
        }
        parts.join(", ")
    }

    pub fn compile(&self) -> Result<Compiled, String> {
        let types = match self
            .types
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            None => None,
            Some(list) => {
                let mut wanted = vec![false; EventType::ALL.len()];
                for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                    let Some(index) = EventType::ALL.iter().position(|t| t.as_str() == name) else {
                        return Err(format!("type: {name:?} is not an event type"));
                    };
                    wanted[index] = true;
                }
                Some(wanted)
            }
        };
        let families = match self
            .family
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            None => None,
            Some(list) => {
                let mut wanted = [false; 4];
                for name in list.split(',').map(str::trim) {
                    let Some(family) = Family::ALL.iter().find(|f| f.as_str() == name) else {
                        return Err(format!(
                            "family: {name:?} is not process, file, network or kernel"
                        ));
                    };
                    wanted[family_index(*family)] = true;
                }
                Some(wanted)
            }
        };
        let min_risk = self.min_risk.unwrap_or(0.0);
        if !(0.0..=1.0).contains(&min_risk) {
            return Err(format!("min_risk: {min_risk} is not between 0 and 1"));
        }
        let text = self
            .text
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            // As typed: matching ignores ASCII case, and a lowercased non-ASCII letter would
            // no longer match the same letter as written.
            .map(str::to_string);
        let hosts = self.host.as_deref().and_then(|list| {
            let names: Vec<String> = list
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(String::from)
                .collect();
            (!names.is_empty()).then_some(names)
        });
        Ok(Compiled {
            types,
            families,
            min_risk,
            text,
            hosts,
        })
    }
}

impl Compiled {
    /// No condition: every event passes.
    pub fn is_everything(&self) -> bool {
        self.types.is_none()
            && self.families.is_none()
            && self.min_risk <= 0.0
            && self.text.is_none()
            && self.hosts.is_none()
    }

    pub fn matches(&self, event: &Event) -> bool {
        if let Some(types) = &self.types
            && !types
                .get(event.event_type as usize)
                .copied()
                .unwrap_or(false)
        {
            return false;
        }
        if let Some(families) = &self.families
            && !families[family_index(event.family())]
        {
            return false;
        }
        if event.analysis.risk_score < self.min_risk {
            return false;
        }
        if let Some(hosts) = &self.hosts {
            let from = event.host.as_ref().map(|h| h.as_str());
            if !hosts.iter().any(|wanted| Some(wanted.as_str()) == from) {
                return false;
            }
        }
        match &self.text {
            None => true,
            Some(text) => mentions(event, text),
        }
    }
}

/// Whether one of the fields a person searches in (process, executable, command line, paths,
/// addresses, label, host) contains `text`, ignoring ASCII case. Without allocating: every client's
/// filter runs over every event, and a `to_lowercase` copy of eight fields per event made a
/// filtered live page fall seconds behind a busy machine (the controller runs at a low
/// priority).
fn mentions(event: &Event, text: &str) -> bool {
    let hit = |field: &str| contains_ignore_case(field, text);
    let address =
        |ip: Option<std::net::IpAddr>| ip.is_some_and(|ip| hit(AddressText::ip(ip).as_str()));
    event.names_or_paths_contain(text)
        || address(event.target_ip)
        || address(event.source_ip)
        || hit(&event.analysis.label)
        || event.host.as_deref().is_some_and(hit)
}

/// Sends `text`, or gives up after [`SEND_TIMEOUT`].
async fn send(socket: &mut WebSocket, text: String) -> bool {
    send_bytes(socket, Utf8Bytes::from(text)).await
}

async fn send_bytes(socket: &mut WebSocket, text: Utf8Bytes) -> bool {
    matches!(
        tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Text(text))).await,
        Ok(Ok(()))
    )
}

/// New losses since `reported`, as a count to tell the client.
fn new_losses(feed: &ClientFeed, reported: &mut u64) -> Option<u64> {
    let lost = feed.lost.load(Ordering::Relaxed);
    (lost > *reported).then(|| {
        let new = lost - *reported;
        *reported = lost;
        new
    })
}

/// The API's live stream: `{"type":"events","events":[…]}` per analysed batch, or per
/// part of one (at most [`super::hub::EVENTS_PER_MESSAGE`] events; only the
/// events that pass the filter), and `{"type":"lost","events":N,"total":T}` when this client's
/// queue overflowed.
pub async fn json_session(mut socket: WebSocket, mut feed: ClientFeed, filter: Compiled) {
    let mut reported = 0;
    // Losses are told before the next batch, or within a tick when none follows (a flood
    // that ended, a replay that is over).
    let mut tick = tokio::time::interval(LOSS_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            batch = feed.recv() => {
                let Some(batch) = batch else { break };
                if !tell_losses(&mut socket, &feed, &mut reported).await { break }
                let messages = if filter.is_everything() {
                    batch.all_events_json()
                } else {
                    let matched: Vec<&Event> =
                        batch.batch.iter().filter(|e| filter.matches(e)).collect();
                    events_messages(&matched)
                };
                drop(batch);
                let mut gone = false;
                for text in messages {
                    if !send_bytes(&mut socket, text).await {
                        gone = true;
                        break;
                    }
                }
                if gone { break }
            }
            _ = tick.tick() => {
                if !tell_losses(&mut socket, &feed, &mut reported).await { break }
            }
            message = socket.recv() => match message {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
}

/// Sends `{"type":"lost",…}` if the client lost events since the last report; false when the
/// client is gone.
async fn tell_losses(socket: &mut WebSocket, feed: &ClientFeed, reported: &mut u64) -> bool {
    match new_losses(feed, reported) {
        Some(lost) => {
            let text = json!({"type": "lost", "events": lost, "total": *reported}).to_string();
            send(socket, text).await
        }
        None => true,
    }
}

/// The dashboard's live stream: at most every [`HTML_FLUSH`], the newest rows of each tab and
/// the new alerts as out-of-band HTMX swaps, and the header's figures. The page's filter form
/// sends its fields (JSON, by the HTMX WebSocket extension); a new filter redoes the page's
/// lists from the recent events that pass it.
pub async fn html_session(
    mut socket: WebSocket,
    mut feed: ClientFeed,
    mut filter: Compiled,
    mut described: String,
    shared: super::AppState,
    scope: super::pages::live_page::LiveScope,
) {
    use super::pages::live_page::{live_refused, live_reset, live_update};
    let mut reported = 0;
    let mut pending: [Vec<Event>; 3] = Default::default();
    let mut alerts: Vec<Event> = Vec::new();
    let mut skipped = 0u64;
    let mut tick = tokio::time::interval(HTML_FLUSH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            batch = feed.recv() => {
                let Some(batch) = batch else { break };
                take_newest(&batch.batch, &filter, &mut pending, &mut alerts, &mut skipped);
            }
            _ = tick.tick() => {
                let lost = new_losses(&feed, &mut reported);
                let html = live_update(&shared, &scope, &mut pending, &mut alerts, skipped, lost, &described);
                skipped = 0;
                if let Some(html) = html && !send(&mut socket, html).await {
                    break;
                }
            }
            message = socket.recv() => match message {
                Some(Ok(Message::Text(text))) => {
                    let parsed = serde_json::from_str::<LiveFilter>(&text)
                        .map_err(|e| e.to_string())
                        .and_then(|new| new.compile().map(|compiled| (new.describe(), compiled)));
                    let html = match parsed {
                        Ok((words, compiled)) => {
                            filter = compiled;
                            described = words;
                            // What is queued is in the hub's recent events already.
                            while feed.try_recv().is_some() {}
                            for rows in &mut pending {
                                rows.clear();
                            }
                            alerts.clear();
                            skipped = 0;
                            live_reset(&shared, &scope, &filter, &described)
                        }
                        Err(why) => live_refused(&why, &described),
                    };
                    if !send(&mut socket, html).await {
                        break;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
}

/// The live page's tab of an event: process (and kernel), file, network.
pub fn tab_of(event: &Event) -> usize {
    match event.family() {
        Family::Process | Family::Kernel => 0,
        Family::File => 1,
        Family::Network => 2,
    }
}

/// Adds the newest rows of `batch` that pass `filter` to what waits for the next flush, at
/// most [`HTML_ROWS_PER_FLUSH`] per tab and of alerts, oldest first. Only those are copied:
/// under a flood the rest of the batch is counted in `skipped`, not cloned.
fn take_newest(
    batch: &[Event],
    filter: &Compiled,
    pending: &mut [Vec<Event>; 3],
    alerts: &mut Vec<Event>,
    skipped: &mut u64,
) {
    let mut fresh: [Vec<Event>; 3] = Default::default();
    let mut fresh_alerts = Vec::new();
    for event in batch.iter().rev().filter(|e| filter.matches(e)) {
        let rows = &mut fresh[tab_of(event)];
        if rows.len() < HTML_ROWS_PER_FLUSH {
            rows.push(event.clone());
        } else {
            *skipped += 1;
        }
        if is_alert(event) && fresh_alerts.len() < HTML_ROWS_PER_FLUSH {
            fresh_alerts.push(event.clone());
        }
    }
    for (kept, mut new) in pending.iter_mut().zip(fresh) {
        new.reverse();
        append_bounded(kept, new, skipped);
    }
    fresh_alerts.reverse();
    append_bounded(alerts, fresh_alerts, skipped);
}

fn append_bounded(kept: &mut Vec<Event>, new: Vec<Event>, skipped: &mut u64) {
    kept.extend(new);
    if kept.len() > HTML_ROWS_PER_FLUSH {
        let excess = kept.len() - HTML_ROWS_PER_FLUSH;
        kept.drain(..excess);
        *skipped += excess as u64;
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;
    use crate::event::EventType;

    #[test]
    fn filters_check_their_input_and_match() -> Result<(), String> {
        let mut event = Event::new(EventType::FileOpen, DateTime::UNIX_EPOCH);
        event.file_path = Some("/etc/Shadow".into());
        event.analysis.risk_score = 0.7;
        let filter = LiveFilter {
            types: Some("file_open,process_exec".into()),
            family: Some("file".into()),
            min_risk: Some(0.5),
            text: Some("shadow".into()),
            host: None,
        };
        assert!(filter.compile()?.matches(&event));
        let stricter = LiveFilter {
            min_risk: Some(0.8),
            ..filter.clone()
        };
        assert!(!stricter.compile()?.matches(&event));
        let bad = LiveFilter {
            types: Some("file_opn".into()),
            ..LiveFilter::default()
        };
        assert!(bad.compile().is_err());
        let from_form: LiveFilter =
            serde_json::from_str(r#"{"min_risk":"","text":"x","HEADERS":{}}"#)
                .map_err(|e| e.to_string())?;
        assert_eq!(from_form.min_risk, None);
        Ok(())
    }

    #[test]
    fn the_text_filter_searches_the_fields_a_person_reads() -> Result<(), String> {
        let text = |t: &str| {
            LiveFilter {
                text: Some(t.into()),
                ..LiveFilter::default()
            }
            .compile()
        };
        let mut event = Event::new(EventType::NetConnect, DateTime::UNIX_EPOCH);
        event.exe = "/opt/Ärger/Miner".into();
        event.target_ip = Some("10.20.30.40".parse().map_err(|e| format!("{e}"))?);
        event.analysis.label = "Reverse shell".into();
        for found in ["miner", "MINER", "Ärger", "0.30.4", "reverse SHELL"] {
            assert!(text(found)?.matches(&event), "{found:?}");
        }
        for missed in ["ärger", "10.20.30.41", "passwd"] {
            assert!(!text(missed)?.matches(&event), "{missed:?}");
        }
        Ok(())
    }

    #[test]
    fn a_host_filter_takes_the_named_hosts_only() -> Result<(), String> {
        let from = |host: Option<&str>| {
            let mut event = Event::new(EventType::FileOpen, DateTime::UNIX_EPOCH);
            event.host = host.map(Into::into);
            event
        };
        let filter = |host: &str, text: Option<&str>| LiveFilter {
            host: Some(host.into()),
            text: text.map(Into::into),
            ..LiveFilter::default()
        };
        let web = filter("web-1, db-2", None).compile()?;
        assert!(web.matches(&from(Some("web-1"))));
        assert!(web.matches(&from(Some("db-2"))));
        // By its whole name: not a part of it, not another case, not an event with no host.
        assert!(!web.matches(&from(Some("web-10"))));
        assert!(!web.matches(&from(Some("WEB-1"))));
        assert!(!web.matches(&from(None)));
        assert!(!web.is_everything());
        assert!(filter(" , ", None).compile()?.is_everything());
        assert_eq!(filter("web-1", None).describe(), "host web-1");
        // The text filter looks at the host too.
        let text = filter("", Some("WEB")).compile()?;
        assert!(text.matches(&from(Some("web-1"))));
        assert!(!text.matches(&from(Some("db-2"))));
        Ok(())
    }

    #[test]
    fn a_flush_keeps_the_newest_rows_of_each_tab_oldest_first() {
        let events: Vec<Event> = (0..100)
            .map(|i| {
                let mut e = Event::new(EventType::FileOpen, DateTime::UNIX_EPOCH);
                e.pid = i;
                e
            })
            .collect();
        let mut pending: [Vec<Event>; 3] = Default::default();
        let mut alerts = Vec::new();
        let mut skipped = 0;
        let everything = Compiled::default();
        take_newest(
            &events[..60],
            &everything,
            &mut pending,
            &mut alerts,
            &mut skipped,
        );
        take_newest(
            &events[60..],
            &everything,
            &mut pending,
            &mut alerts,
            &mut skipped,
        );
        let pids: Vec<u32> = pending[1].iter().map(|e| e.pid).collect();
        assert_eq!(pids, (60..100).collect::<Vec<u32>>());
        assert_eq!(skipped, 60);
        assert!(pending[0].is_empty() && alerts.is_empty());
    }

    #[test]
    fn a_filter_is_described_in_words() {
        assert_eq!(LiveFilter::default().describe(), "");
        let filter = LiveFilter {
            types: Some(" ".into()),
            family: Some("file".into()),
            min_risk: Some(0.6),
            text: Some(" shadow ".into()),
            host: Some("web-1".into()),
        };
        assert_eq!(
            filter.describe(),
            "family file, risk ≥ 0.6, “shadow”, host web-1"
        );
    }
}
