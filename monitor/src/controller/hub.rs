//! The controller's end of the pipeline: one task takes the analysed batches from the
//! controller's [`Subscriber`](crate::pipeline::Subscriber) queue and publishes each on one
//! bounded broadcast ring of [`CLIENT_BATCHES`] batches that every live WebSocket client reads
//! at its own pace. A client that falls a whole ring behind skips ahead and is told how many
//! events it lost (`lost N events`); nobody waits for it, and memory is one ring however many
//! clients there are (with a queue per client, twenty slow clients pinned twenty queues of
//! batches). The hub also keeps what a page load shows: the most recent events, the recent
//! alerts, rates and counts.
use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex, OnceLock, PoisonError,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Instant,
};

use axum::extract::ws::Utf8Bytes;

use chrono::{DateTime, Utc};
use tokio::sync::{broadcast, mpsc};

use crate::{
    event::{Event, Family, Severity},
    output::event_json::{into_text, write_event},
    pipeline::{Batch, Recycler},
};

/// Batches the broadcast ring holds (a batch is at most a reader batch, 4096 events): how far
/// a client may fall behind before it loses events.
pub const CLIENT_BATCHES: usize = 8;
/// WebSocket clients served at once; more are refused with 503.
pub const MAX_CLIENTS: usize = 64;
/// Recent events kept for page loads and the process view (in whole batches).
const RECENT_EVENTS: usize = 4096;
/// Recent alerts (events the rules marked suspicious or malicious) kept.
pub const RECENT_ALERTS: usize = 500;
/// Per-second samples kept for the rate figures (a minute's worth).
const RATE_SAMPLES: usize = 60;
/// Per-minute alert counts kept for [`Hub::alerts_last_hour`] (an hour's worth).
const ALERT_MINUTES: i64 = 60;

/// A batch as the clients receive it: the events, and their JSON for the API's unfiltered
/// stream, made once by the first client that needs it and shared by the others (twenty
/// clients must not serialise every event twenty times).
pub struct Published {
    pub batch: Batch,
    /// Events published before this batch: a client that skipped ahead counts its losses
    /// from it.
    offset: u64,
    json: OnceLock<Vec<Utf8Bytes>>,
}

/// Events per WebSocket message: a message is copied whole into each client's write buffer,
/// so a reader batch (4096 events, a few MB of JSON) as one message cost every client that
/// much memory while it was being sent.
pub const EVENTS_PER_MESSAGE: usize = 256;

impl Published {
    /// `{"type":"events","events":[…]}` messages holding every event of the batch, at most
    /// [`EVENTS_PER_MESSAGE`] each.
    pub fn all_events_json(&self) -> Vec<Utf8Bytes> {
        self.json
            .get_or_init(|| {
                let events: Vec<&Event> = self.batch.iter().collect();
                events_messages(&events)
            })
            .clone()
    }
}

/// The API stream's messages for `events`, at most [`EVENTS_PER_MESSAGE`] each.
pub fn events_messages(events: &[&Event]) -> Vec<Utf8Bytes> {
    events
        .chunks(EVENTS_PER_MESSAGE)
        .map(events_message)
        .collect()
}

/// One `{"type":"events","events":[…]}` message. Written directly: through `json!` every
/// event became a tree of `Value`s (a map and a string per field) before it became text.
fn events_message(events: &[&Event]) -> Utf8Bytes {
    let mut json = Vec::with_capacity(64 + events.len() * 1024);
    json.extend_from_slice(br#"{"type":"events","events":["#);
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            json.push(b',');
        }
        write_event(&mut json, event);
    }
    json.extend_from_slice(b"]}");
    Utf8Bytes::from(into_text(json))
}

/// What a client receives: batches, and the number of events it lost so far.
pub struct ClientFeed {
    pub id: u64,
    rx: broadcast::Receiver<Arc<Published>>,
    /// Events received or lost so far, as an offset in the published stream.
    next_offset: u64,
    pub lost: Arc<AtomicU64>,
    _slot: ClientSlot,
}

impl ClientFeed {
    /// The next batch (after any this client fell too far behind to get, counted in
    /// `lost`), or `None` once the hub has stopped.
    pub async fn recv(&mut self) -> Option<Arc<Published>> {
        loop {
            match self.rx.recv().await {
                Ok(published) => return Some(self.account(published)),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// A batch already waiting, if any.
    pub fn try_recv(&mut self) -> Option<Arc<Published>> {
        loop {
            match self.rx.try_recv() {
                Ok(published) => return Some(self.account(published)),
                Err(broadcast::error::TryRecvError::Lagged(_)) => continue,
                Err(_) => return None,
            }
        }
    }

    fn account(&mut self, published: Arc<Published>) -> Arc<Published> {
        if published.offset > self.next_offset {
            self.lost
                .fetch_add(published.offset - self.next_offset, Ordering::Relaxed);
        }
        self.next_offset = published.offset + published.batch.len() as u64;
        published
    }
}

/// Holds one of the [`MAX_CLIENTS`] places while a client is connected.
struct ClientSlot(Arc<AtomicUsize>);

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The broadcast side: the ring, and how many events went through it.
struct Stream {
    tx: broadcast::Sender<Arc<Published>>,
    published: u64,
}

/// Counters since the start.
#[derive(Default, Clone, Debug, serde::Serialize)]
pub struct Totals {
    pub events: u64,
    pub alerts: u64,
    pub by_family: [u64; 4],
    pub by_severity: [u64; 3],
}

#[derive(Default)]
struct Recent {
    batches: VecDeque<Batch>,
    events: usize,
    alerts: VecDeque<Event>,
    totals: Totals,
    /// (second, events that second), newest last.
    rates: VecDeque<(i64, u64)>,
    /// (minute, suspicious and malicious alerts that minute), newest last.
    alert_minutes: VecDeque<(i64, [u64; 2])>,
}

/// Alerts by severity over the last hour (as they arrived, whatever their timestamps say: a
/// replay's events are old).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AlertCounts {
    pub suspicious: u64,
    pub malicious: u64,
}

pub struct Hub {
    stream: Mutex<Stream>,
    clients: Arc<AtomicUsize>,
    next_id: AtomicU64,
    recent: Mutex<Recent>,
    recycler: Recycler,
    pub started: Instant,
    pub started_at: DateTime<Utc>,
}

impl Hub {
    pub fn new(recycler: Recycler) -> Hub {
        let (tx, _) = broadcast::channel(CLIENT_BATCHES);
        Hub {
            stream: Mutex::new(Stream { tx, published: 0 }),
            clients: Arc::new(AtomicUsize::new(0)),
            next_id: AtomicU64::new(1),
            recent: Mutex::new(Recent::default()),
            recycler,
            started: Instant::now(),
            started_at: Utc::now(),
        }
    }

    /// A new client's feed, or `None` when [`MAX_CLIENTS`] are connected.
    pub fn subscribe(&self) -> Option<ClientFeed> {
        let taken = self.clients.fetch_add(1, Ordering::Relaxed);
        let slot = ClientSlot(self.clients.clone());
        if taken >= MAX_CLIENTS {
            return None;
        }
        let stream = self.stream.lock().unwrap_or_else(PoisonError::into_inner);
        Some(ClientFeed {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            rx: stream.tx.subscribe(),
            next_offset: stream.published,
            lost: Arc::new(AtomicU64::new(0)),
            _slot: slot,
        })
    }

    pub fn clients(&self) -> usize {
        self.clients.load(Ordering::Relaxed)
    }

    /// Takes one analysed batch: to every client (or its loss counter), then into the recent
    /// events, alerts and counts.
    pub fn publish(&self, batch: Batch) {
        if batch.is_empty() {
            return;
        }
        // Remembered before it is sent: whatever a client receives is already among the recent
        // events, which a live page redraws from when its filter changes (it then drops what
        // it had queued).
        let evicted = self.remember(batch.clone());
        {
            let mut stream = self.stream.lock().unwrap_or_else(PoisonError::into_inner);
            let published = Arc::new(Published {
                offset: stream.published,
                json: OnceLock::new(),
                batch,
            });
            stream.published += published.batch.len() as u64;
            // No receiver: nobody is watching, nothing to do.
            let _ = stream.tx.send(published);
        }
        for batch in evicted {
            if let Ok(events) = Arc::try_unwrap(batch) {
                self.recycler.give_back(events);
            }
        }
    }

    fn remember(&self, batch: Batch) -> Vec<Batch> {
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        let second = Utc::now().timestamp();
        match recent.rates.back_mut() {
            Some((s, n)) if *s == second => *n += batch.len() as u64,
            _ => {
                recent.rates.push_back((second, batch.len() as u64));
                while recent.rates.len() > RATE_SAMPLES {
                    recent.rates.pop_front();
                }
            }
        }
        for event in batch.iter() {
            recent.totals.events += 1;
            recent.totals.by_family[family_index(event.family())] += 1;
            recent.totals.by_severity[severity_index(event.analysis.severity)] += 1;
            if is_alert(event) {
                recent.totals.alerts += 1;
                count_alert_minute(
                    &mut recent.alert_minutes,
                    second / 60,
                    event.analysis.severity,
                );
                if recent.alerts.len() >= RECENT_ALERTS {
                    recent.alerts.pop_front();
                }
                recent.alerts.push_back(event.clone());
            }
        }
        recent.events += batch.len();
        recent.batches.push_back(batch);
        let mut evicted = Vec::new();
        while recent.events > RECENT_EVENTS && recent.batches.len() > 1 {
            if let Some(old) = recent.batches.pop_front() {
                recent.events -= old.len();
                evicted.push(old);
            }
        }
        evicted
    }

    /// The most recent events that pass `keep`, newest first, at most `limit`.
    pub fn recent_events(&self, limit: usize, keep: impl Fn(&Event) -> bool) -> Vec<Event> {
        let recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        recent
            .batches
            .iter()
            .rev()
            .flat_map(|batch| batch.iter().rev())
            .filter(|e| keep(e))
            .take(limit)
            .cloned()
            .collect()
    }

    /// The most recent alerts, newest first.
    pub fn recent_alerts(&self, limit: usize) -> Vec<Event> {
        let recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        recent.alerts.iter().rev().take(limit).cloned().collect()
    }

    /// Alerts that arrived in the last hour, by severity.
    pub fn alerts_last_hour(&self) -> AlertCounts {
        let recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Utc::now().timestamp() / 60;
        let mut counts = AlertCounts::default();
        for (_, [suspicious, malicious]) in recent
            .alert_minutes
            .iter()
            .filter(|(minute, _)| *minute > now - ALERT_MINUTES)
        {
            counts.suspicious += suspicious;
            counts.malicious += malicious;
        }
        counts
    }

    pub fn totals(&self) -> Totals {
        self.recent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .totals
            .clone()
    }

    /// Events per second over the last `seconds` complete seconds.
    pub fn rate(&self, seconds: i64) -> f64 {
        let recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Utc::now().timestamp();
        let sum: u64 = recent
            .rates
            .iter()
            .filter(|(s, _)| *s < now && *s >= now - seconds)
            .map(|(_, n)| n)
            .sum();
        sum as f64 / seconds.max(1) as f64
    }
}

/// Counts one alert of `severity` in `minute`, keeping [`ALERT_MINUTES`] minutes.
fn count_alert_minute(minutes: &mut VecDeque<(i64, [u64; 2])>, minute: i64, severity: Severity) {
    let slot = usize::from(severity == Severity::Malicious);
    match minutes.back_mut() {
        Some((m, counts)) if *m == minute => counts[slot] += 1,
        _ => {
            let mut counts = [0; 2];
            counts[slot] = 1;
            minutes.push_back((minute, counts));
            while minutes.len() > ALERT_MINUTES as usize {
                minutes.pop_front();
            }
        }
    }
}

/// An event the rules marked: suspicious or malicious.
pub fn is_alert(event: &Event) -> bool {
    event.analysis.severity != Severity::Benign
}

pub fn family_index(family: Family) -> usize {
    match family {
        Family::Process => 0,
        Family::File => 1,
        Family::Network => 2,
        Family::Kernel => 3,
    }
}

pub fn severity_index(severity: Severity) -> usize {
    match severity {
        Severity::Benign => 0,
        Severity::Suspicious => 1,
        Severity::Malicious => 2,
    }
}

/// Runs until the pipeline closes the queue.
pub async fn run(hub: Arc<Hub>, mut batches: mpsc::Receiver<Batch>) {
    while let Some(batch) = batches.recv().await {
        hub.publish(batch);
        // Let the clients take it before the next: after a moment without the CPU, the queue
        // holds many batches, and publishing them all in one go (the runtime has one thread)
        // would run a client [`CLIENT_BATCHES`] behind, losing events no client was too slow
        // for.
        tokio::task::yield_now().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventType;

    fn batch(n: usize) -> Batch {
        Arc::new(
            (0..n)
                .map(|_| Event::new(EventType::FileOpen, DateTime::UNIX_EPOCH))
                .collect(),
        )
    }

    #[test]
    fn event_messages_hold_what_json_made_of_them() {
        let mut events: Vec<Event> = batch(EVENTS_PER_MESSAGE + 3).to_vec();
        events[1].file_path = Some("/tmp/\"quoted\"\n".to_string());
        events[2].duration_ms = Some(f64::NAN);
        let refs: Vec<&Event> = events.iter().collect();
        let messages = events_messages(&refs);
        assert_eq!(messages.len(), 2);
        for (message, part) in messages.iter().zip(refs.chunks(EVENTS_PER_MESSAGE)) {
            let parsed: serde_json::Value = serde_json::from_str(message.as_str()).expect("json");
            assert_eq!(
                parsed,
                serde_json::json!({ "type": "events", "events": part })
            );
            assert!(
                message
                    .as_str()
                    .starts_with(r#"{"type":"events","events":[{"#)
            );
        }
    }

    #[tokio::test]
    async fn a_slow_client_loses_batches_and_others_do_not_wait() {
        let (recycler, _rx) = Recycler::new();
        let hub = Hub::new(recycler);
        let (Some(mut slow), Some(mut fast)) = (hub.subscribe(), hub.subscribe()) else {
            panic!("subscribing failed");
        };
        for _ in 0..CLIENT_BATCHES + 3 {
            hub.publish(batch(10));
            assert!(fast.try_recv().is_some());
        }
        // The slow one reads now: the three oldest batches are gone, and counted.
        let mut received = 0;
        while let Some(published) = slow.try_recv() {
            received += published.batch.len();
        }
        assert_eq!(received, CLIENT_BATCHES * 10);
        assert_eq!(slow.lost.load(Ordering::Relaxed), 30);
        assert_eq!(fast.lost.load(Ordering::Relaxed), 0);
        assert_eq!(hub.totals().events, (CLIENT_BATCHES as u64 + 3) * 10);
        assert_eq!(hub.clients(), 2);
        drop(slow);
        assert_eq!(hub.clients(), 1);
    }

    #[tokio::test]
    async fn clients_are_limited() {
        let (recycler, _rx) = Recycler::new();
        let hub = Hub::new(recycler);
        let feeds: Vec<ClientFeed> = (0..MAX_CLIENTS).filter_map(|_| hub.subscribe()).collect();
        assert_eq!(feeds.len(), MAX_CLIENTS);
        assert!(hub.subscribe().is_none());
        drop(feeds);
        assert!(hub.subscribe().is_some());
    }

    #[test]
    fn alert_minutes_keep_an_hour() {
        let mut minutes = VecDeque::new();
        for minute in 0..100 {
            count_alert_minute(&mut minutes, minute, Severity::Suspicious);
            count_alert_minute(&mut minutes, minute, Severity::Malicious);
            count_alert_minute(&mut minutes, minute, Severity::Malicious);
        }
        assert_eq!(minutes.len(), ALERT_MINUTES as usize);
        assert_eq!(minutes.back(), Some(&(99, [1, 2])));
        assert_eq!(minutes.front().map(|(m, _)| *m), Some(40));
    }

    #[tokio::test]
    async fn recent_events_are_bounded() {
        let (recycler, _rx) = Recycler::new();
        let hub = Hub::new(recycler);
        for _ in 0..100 {
            hub.publish(batch(100));
        }
        let recent = hub.recent_events(usize::MAX, |_| true);
        assert!(recent.len() <= RECENT_EVENTS, "{}", recent.len());
        assert!(recent.len() > RECENT_EVENTS - 100, "{}", recent.len());
    }
}
