//! Hub mode, `secmon-tui hub --nats URL` (docs/fleet.md): the controller's web server, pages,
//! API and live stream with no pipeline behind them ([`run`]); their data comes from every host
//! that publishes on the fleet's NATS subjects ([`NatsHosts`], the controller's
//! [`HostSource`]). No probes, no root: nothing is captured or enforced here, and the hub's own
//! [`Controls`] have nothing to switch (acting on a host is a control request to it, answered
//! by its own checks).
//! A host appears with its first `status`
//! message, is *unreachable* once its status has not come for [`UNREACHABLE_AFTER`], and is
//! reachable again with the next one. Its events feed a [`Hub`] of its own (the host's page,
//! its recent alerts and counts for the All machines view) and the controller's own hub (the
//! live page, every host merged), through the same code as a local pipeline's batches.
//!
//! ```text
//! <prefix>.*.<event_type> ─┐  dedupe by event id      ┌─► per-host Hub (host page, All machines)
//! <prefix>.*.status ───────┴─► feed (batches) ────────┴─► the controller's hub (live page, API)
//! page or API action ─► <prefix>.<host>.control (request-reply, the host's token) ─► reply shown
//! history ─► JetStream ordered consumer on the stream
//! ```
//!
//! The hub never subscribes to `<prefix>.>`: that would take the control requests, tokens
//! included. The hosts' control tokens are files of their own in a root-only directory
//! (`--host-tokens DIR`, `DIR/<host>.token`); they go to NATS in a request to that host's
//! subject only, never to the browser.
use std::{
    collections::{BTreeMap, HashSet, VecDeque},
    hash::{BuildHasher, RandomState},
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use futures::{FutureExt, StreamExt, future::BoxFuture, stream::SelectAll};
use serde::Serialize;

use super::{
    Connection, FleetError, HostStatus,
    consumer::{Fleet, FleetMessage},
};
use crate::{
    config,
    controller::{
        ControllerError, Controls, Settings,
        actions::{Action, ControlReply},
        hub::Hub,
        machines::{
            health::{ALERTS_KEPT, Health, Reach},
            hosts::{HostRow, HostSource, HubFeed},
        },
        start_serving, wait_for_stop,
    },
    event::{Event, EventType},
    losses::Losses,
    pipeline::front::Recycler,
    response::simulate::Allowlist,
    rules::RuleEngine,
};

/// A host whose status has not come for this long is unreachable (it says it every
/// [`crate::fleet::STATUS_EVERY`]).
pub const UNREACHABLE_AFTER: Duration = Duration::from_secs(6);
/// Hosts followed at most (each keeps its recent events: see docs/scaling.md).
pub const MAX_HOSTS: usize = 256;
/// Message ids remembered to drop a message delivered twice.
pub const SEEN_IDS: usize = 200_000;
/// Messages taken into one batch at most.
const BATCH: usize = 512;
/// How long a control request waits for its host's reply.
pub const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a history read waits for one more message of the stream.
const HISTORY_IDLE: Duration = Duration::from_secs(1);
/// Messages one history read goes through at most (all hosts', reading everything).
const HISTORY_SCAN: u64 = 200_000;

/// One host seen on the stream.
struct HostFeed {
    hub: Arc<Hub>,
    status: Option<HostStatus>,
    /// When its last status came (wall clock, for the pages; monotonic, for the state).
    last_seen: Option<DateTime<Utc>>,
    last_status: Option<Instant>,
}

/// The ids of the last [`SEEN_IDS`] messages, each kept as its 64-bit hash under a key drawn
/// at start ([`RandomState`]): no string is copied or kept per event (at 100,000 events/s
/// two copies of each id were a good part of the hub's cost), and a sender cannot choose ids
/// that collide. Two different ids share a hash with a chance of about 10⁻¹⁴ per event
/// (200,000 remembered among 2⁶⁴); the later one would be dropped as a duplicate.
struct SeenIds {
    key: RandomState,
    set: HashSet<u64>,
    order: VecDeque<u64>,
}

impl Default for SeenIds {
    fn default() -> SeenIds {
        SeenIds {
            key: RandomState::new(),
            set: HashSet::with_capacity(SEEN_IDS),
            order: VecDeque::with_capacity(SEEN_IDS),
        }
    }
}

impl SeenIds {
    /// Whether `id` is new (and remembers it).
    fn first_time(&mut self, id: &str) -> bool {
        let hash = self.key.hash_one(id);
        if !self.set.insert(hash) {
            return false;
        }
        if self.order.len() >= SEEN_IDS
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        self.order.push_back(hash);
        true
    }
}

/// What the feed counted since the start.
#[derive(Default, Serialize)]
pub struct FeedCounts {
    pub events: AtomicU64,
    /// Messages delivered again (same `Nats-Msg-Id`), dropped.
    pub duplicates: AtomicU64,
    /// Messages that were not an event or a status.
    pub malformed: AtomicU64,
    /// Messages of hosts beyond [`MAX_HOSTS`].
    pub hosts_refused: AtomicU64,
}

/// The hosts that publish, fed from NATS.
pub struct NatsHosts {
    fleet: Fleet,
    prefix: String,
    host_tokens: Option<PathBuf>,
    merged: Arc<Hub>,
    recycler: Recycler,
    hosts: Mutex<BTreeMap<String, HostFeed>>,
    seen: Mutex<SeenIds>,
    pub counts: FeedCounts,
}

impl NatsHosts {
    /// `merged` is the controller's own hub (the live page shows every host).
    pub fn new(
        fleet: Fleet,
        prefix: &str,
        host_tokens: Option<PathBuf>,
        merged: Arc<Hub>,
        recycler: Recycler,
    ) -> NatsHosts {
        NatsHosts {
            fleet,
            prefix: prefix.to_string(),
            host_tokens,
            merged,
            recycler,
            hosts: Mutex::new(BTreeMap::new()),
            seen: Mutex::new(SeenIds::default()),
            counts: FeedCounts::default(),
        }
    }

    fn hosts(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, HostFeed>> {
        self.hosts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Subscribes to every event type's subject and to the statuses (not `<prefix>.>`: see
    /// the module's documentation). Returns once the subscriptions are on the server.
    pub async fn subscribe(&self) -> Result<SelectAll<FleetStream>, FleetError> {
        let mut all = SelectAll::new();
        for last in EventType::ALL.iter().map(|t| t.as_str()).chain(["status"]) {
            let stream: FleetStream = Box::pin(self.fleet.subscribe("*", last).await?);
            all.push(stream);
        }
        Ok(all)
    }

    /// Takes messages until the subscriptions end (the client closed): what is waiting is
    /// taken as one batch, so a busy stream is handed to the hubs in batches, a quiet one at
    /// once.
    pub async fn run(self: Arc<Self>, mut messages: SelectAll<FleetStream>) {
        while let Some(first) = messages.next().await {
            let mut batch = vec![first];
            while batch.len() < BATCH {
                match messages.next().now_or_never() {
                    Some(Some(message)) => batch.push(message),
                    _ => break,
                }
            }
            self.take(batch);
        }
    }

    /// Files a batch of messages: statuses to their host, events (once per id) to the hubs.
    fn take(&self, messages: Vec<FleetMessage>) {
        let mut by_host: BTreeMap<String, Vec<Event>> = BTreeMap::new();
        {
            let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
            for message in messages {
                if let Some(id) = &message.id
                    && !seen.first_time(id)
                {
                    self.counts.duplicates.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                if message.subject.ends_with(".status") {
                    self.take_status(&message);
                    continue;
                }
                match serde_json::from_slice::<Event>(&message.payload) {
                    Ok(event) => by_host.entry(message.host).or_default().push(event),
                    Err(_) => {
                        self.counts.malformed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
        let mut batches = Vec::with_capacity(by_host.len());
        for (host, mut events) in by_host {
            let Some(hub) = self.hub_of(&host) else {
                self.counts
                    .hosts_refused
                    .fetch_add(events.len() as u64, Ordering::Relaxed);
                continue;
            };
            self.counts
                .events
                .fetch_add(events.len() as u64, Ordering::Relaxed);
            // The subject names the host, whatever the event says (the live page's host
            // column and filter, the API's `host`).
            let name = crate::shared_str::SharedStr::from(host.as_str());
            for event in &mut events {
                event.host = Some(name.clone());
            }
            let batch = Arc::new(events);
            hub.publish(batch.clone());
            batches.push(batch);
        }
        self.merged.publish(merged_batch(batches));
    }

    fn take_status(&self, message: &FleetMessage) {
        let Ok(status) = serde_json::from_slice::<HostStatus>(&message.payload) else {
            self.counts.malformed.fetch_add(1, Ordering::Relaxed);
            return;
        };
        // The subject names the host; what the message says of itself is not trusted for it.
        let mut hosts = self.hosts();
        if let Some(feed) = self.feed_in(&mut hosts, &message.host) {
            feed.status = Some(status);
            feed.last_seen = Some(Utc::now());
            feed.last_status = Some(Instant::now());
        }
    }

    /// Host `host`'s feed, made at its first message (`None` beyond [`MAX_HOSTS`]).
    fn feed_in<'a>(
        &self,
        hosts: &'a mut BTreeMap<String, HostFeed>,
        host: &str,
    ) -> Option<&'a mut HostFeed> {
        if !hosts.contains_key(host) {
            if hosts.len() >= MAX_HOSTS || host.is_empty() {
                return None;
            }
            hosts.insert(
                host.to_string(),
                HostFeed {
                    hub: Arc::new(Hub::new(self.recycler.clone())),
                    status: None,
                    last_seen: None,
                    last_status: None,
                },
            );
        }
        hosts.get_mut(host)
    }

    fn hub_of(&self, host: &str) -> Option<Arc<Hub>> {
        let mut hosts = self.hosts();
        self.feed_in(&mut hosts, host).map(|feed| feed.hub.clone())
    }

    /// A known host's hub.
    pub fn hub(&self, host: &str) -> Option<Arc<Hub>> {
        self.hosts().get(host).map(|feed| feed.hub.clone())
    }

    /// Every host seen, by name, with its state.
    pub fn rows(&self) -> Vec<HostRow> {
        let hosts = self.hosts();
        hosts
            .iter()
            .map(|(host, feed)| self.row(host, feed))
            .collect()
    }

    /// Host `host`'s row.
    pub fn row_of(&self, host: &str) -> Option<HostRow> {
        let hosts = self.hosts();
        hosts.get(host).map(|feed| self.row(host, feed))
    }

    fn row(&self, host: &str, feed: &HostFeed) -> HostRow {
        let state = match feed.last_status {
            None => Reach::Unknown,
            Some(at) if at.elapsed() <= UNREACHABLE_AFTER => Reach::Reachable,
            Some(_) => Reach::Unreachable,
        };
        let error = match (state, feed.last_status) {
            (Reach::Unreachable, Some(at)) => Some(format!(
                "no status on NATS for {} s",
                at.elapsed().as_secs()
            )),
            (Reach::Unknown, _) => Some("no status received yet".to_string()),
            _ => None,
        };
        let status = feed.status.as_ref();
        let health = Health {
            state,
            error,
            checked: Some(Utc::now()),
            last_seen: feed.last_seen,
            host: Some(crate::sanitize::for_terminal(host).into_owned()),
            version: status.map(|s| crate::sanitize::for_terminal(&s.version).into_owned()),
            uptime_secs: status.map(|s| s.uptime_secs),
            events_per_sec: status.map(|s| s.events_per_sec),
            events_total: status.map(|s| s.events),
            lost_total: status.map(|s| s.lost_total),
            alerts_last_hour: Some(feed.hub.alerts_last_hour()),
            alerts: feed.hub.recent_alerts(ALERTS_KEPT),
        };
        HostRow {
            host: host.to_string(),
            health,
            probes: status.map(|s| s.probes.clone()).unwrap_or_default(),
            control: status.is_some_and(|s| s.control),
            token_here: self.token_of(host).is_ok(),
            spool_bytes: status.map_or(0, |s| s.spool_bytes),
            nats_connected: status.is_some_and(|s| s.connected),
        }
    }

    /// Host `host`'s control token: `<host-tokens>/<host>.token`, owned by this user and
    /// readable by nobody else (read at every request: a token added later is used at once).
    fn token_of(&self, host: &str) -> Result<String, String> {
        let Some(dir) = &self.host_tokens else {
            return Err("this hub has no --host-tokens directory: it cannot act on hosts".into());
        };
        if host.is_empty() || host.contains('/') || host.starts_with('.') {
            return Err("not a host name".to_string());
        }
        read_private_token(&dir.join(format!("{host}.token")))
    }

    /// Sends `action` to `host` with its token; the reply, or why there is none.
    pub async fn control(&self, host: &str, action: Action) -> Result<ControlReply, String> {
        let token = self.token_of(host)?;
        self.fleet
            .control(host, &token, action, CONTROL_TIMEOUT)
            .await
            .map_err(|e| e.to_string())
    }

    /// Host `host`'s events (`what`: an event type, `alerts`, or `>` for all) stored in the
    /// stream since `since`, oldest first, at most `limit`.
    pub async fn history(
        &self,
        host: &str,
        what: &str,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Event>, String> {
        let messages = self
            .fleet
            // Twice the limit: alert copies and statuses are read too and dropped below.
            .read_history_upto(host, what, since, HISTORY_IDLE, limit * 2, HISTORY_SCAN)
            .await
            .map_err(|e| e.to_string())?;
        let mut seen = HashSet::new();
        Ok(messages
            .iter()
            .filter(|m| !m.subject.ends_with(".status"))
            // Reading everything, an alert's copy on `.alerts` is its event again.
            .filter(|m| what != ">" || !m.subject.ends_with(".alerts"))
            .filter(|m| m.id.as_ref().is_none_or(|id| seen.insert(id.clone())))
            .filter_map(|m| serde_json::from_slice::<Event>(&m.payload).ok())
            .take(limit)
            .collect())
    }
}

impl HostSource for NatsHosts {
    fn prefix(&self) -> &str {
        &self.prefix
    }

    fn rows(&self) -> Vec<HostRow> {
        NatsHosts::rows(self)
    }

    fn row_of(&self, host: &str) -> Option<HostRow> {
        NatsHosts::row_of(self, host)
    }

    fn hub(&self, host: &str) -> Option<Arc<Hub>> {
        NatsHosts::hub(self, host)
    }

    fn feed_counts(&self) -> serde_json::Value {
        serde_json::to_value(&self.counts).unwrap_or_default()
    }

    fn control<'a>(
        &'a self,
        host: &'a str,
        action: Action,
    ) -> BoxFuture<'a, Result<ControlReply, String>> {
        Box::pin(NatsHosts::control(self, host, action))
    }

    fn history<'a>(
        &'a self,
        host: &'a str,
        what: &'a str,
        since: DateTime<Utc>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Event>, String>> {
        Box::pin(NatsHosts::history(self, host, what, since, limit))
    }
}

/// The merged live feed's batch of one take: one batch per take, whatever the number of hosts
/// in it (a live client's queue is bounded in batches, [`crate::controller::hub::CLIENT_BATCHES`]).
/// With one host, the usual case under a flood, its batch itself, shared with the host's hub
/// rather than a copy of each event; with several, their events one after the other.
fn merged_batch(mut batches: Vec<Arc<Vec<Event>>>) -> Arc<Vec<Event>> {
    if batches.len() == 1
        && let Some(only) = batches.pop()
    {
        return only;
    }
    Arc::new(
        batches
            .iter()
            .flat_map(|batch| batch.iter().cloned())
            .collect(),
    )
}

/// One subscription's messages.
pub type FleetStream = std::pin::Pin<Box<dyn futures::Stream<Item = FleetMessage> + Send>>;

/// A token file: not a symbolic link, owned by this user, mode 600 or stricter, one token.
pub fn read_private_token(path: &Path) -> Result<String, String> {
    use std::os::unix::fs::MetadataExt;
    let shown = path.display();
    let meta = std::fs::symlink_metadata(path).map_err(|e| format!("{shown}: {e}"))?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if !meta.is_file() || meta.uid() != me || meta.mode() & 0o077 != 0 {
        return Err(format!(
            "{shown}: must be a regular file of this user's with mode 600"
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{shown}: {e}"))?;
    let token = text.trim();
    if token.is_empty() || token.len() > 512 || !token.chars().all(|c| c.is_ascii_graphic()) {
        return Err(format!("{shown}: not a token"));
    }
    Ok(token.to_string())
}

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error(transparent)]
    Controller(#[from] ControllerError),
    #[error("hub: {0}")]
    Fleet(#[from] FleetError),
}

/// Where the hosts publish and how the hub acts on them.
#[derive(Clone, Debug)]
pub struct HubOptions {
    pub connection: Connection,
    pub prefix: String,
    pub stream: String,
    /// `<dir>/<host>.token`: each host's controller token, for control requests.
    pub host_tokens: Option<PathBuf>,
    pub duration: Option<Duration>,
}

/// Nothing to switch: the hub runs no probes and no rules of its own.
fn hub_controls() -> Controls {
    Controls {
        capture: None,
        rules: RuleEngine::empty(),
        enforcer: None,
        allowlist: Allowlist::system(&[]),
        losses: Arc::new(Losses::new()),
        history: None,
        enforce_mode: "hub (nothing is captured or enforced here)",
        simulated: std::sync::Mutex::new(Default::default()),
        reloads: std::sync::Mutex::new(Default::default()),
        demo: Default::default(),
    }
}

/// Connects to NATS, serves until SIGINT, SIGTERM or `--duration`.
pub async fn run(
    settings: Settings,
    controller: &config::Controller,
    options: HubOptions,
) -> Result<(), HubError> {
    settings.check(controller)?;
    let fleet = Fleet::connect(&options.connection, &options.prefix, &options.stream).await?;
    // Events are freed here (no pipeline thread to give them back to).
    let (recycler, _) = Recycler::new();
    let merged = Arc::new(Hub::new(recycler.clone()));
    let hosts = Arc::new(NatsHosts::new(
        fleet,
        &options.prefix,
        options.host_tokens.clone(),
        merged.clone(),
        recycler,
    ));
    let subscriptions = hosts.subscribe().await?;
    // No pipeline: the hub's queue is closed from the start; the hosts feed the hub directly.
    let (_, batches) = tokio::sync::mpsc::channel(1);
    let token_file = settings.token_file.clone();
    let feed = HubFeed {
        hosts: hosts.clone(),
        feed: Box::pin(hosts.run(subscriptions)),
    };
    let running = start_serving(
        settings,
        controller,
        hub_controls(),
        merged,
        batches,
        Some(feed),
    )
    .await?;
    let url = running.shared.settings.url_for(running.local_addr());
    crate::notice::info(format!(
        "hub: serving {url} for the hosts on {} (subjects {}.<host>.*; log in with the token \
         in {})",
        crate::secrets::redact_url(&options.connection.url),
        options.prefix,
        token_file.display()
    ));
    wait_for_stop(options.duration).await;
    running.stop();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_id_is_taken_once_and_the_memory_is_bounded() {
        let mut seen = SeenIds::default();
        assert!(seen.first_time("h:r:1"));
        assert!(!seen.first_time("h:r:1"));
        assert!(seen.first_time("h:r:1:alert"));
        for n in 0..SEEN_IDS as u64 + 10 {
            seen.first_time(&format!("x:{n}"));
        }
        assert_eq!(seen.set.len(), SEEN_IDS);
        assert_eq!(seen.order.len(), SEEN_IDS);
        // The oldest was forgotten.
        assert!(seen.first_time("h:r:1"));
    }

    #[test]
    fn one_merged_batch_per_take_shared_when_one_host() {
        let events = |n: usize| {
            Arc::new(
                (0..n)
                    .map(|_| Event::new(EventType::FileOpen, DateTime::UNIX_EPOCH))
                    .collect::<Vec<_>>(),
            )
        };
        let only = events(3);
        let merged = merged_batch(vec![only.clone()]);
        assert!(Arc::ptr_eq(&only, &merged), "one host: its batch, no copy");
        let merged = merged_batch(vec![events(2), events(5)]);
        assert_eq!(merged.len(), 7, "several hosts: one batch of all");
        assert!(merged_batch(Vec::new()).is_empty());
    }

    #[test]
    fn token_files_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("web-1.token");
        std::fs::write(&path, "abc123\n").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(read_private_token(&path).is_err_and(|e| e.contains("mode 600")));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert_eq!(read_private_token(&path).as_deref(), Ok("abc123"));
        std::fs::write(&path, "a b\n").expect("write");
        assert!(read_private_token(&path).is_err_and(|e| e.contains("not a token")));
        let link = dir.path().join("link.token");
        std::os::unix::fs::symlink(&path, &link).expect("symlink");
        assert!(read_private_token(&link).is_err());
    }
}
