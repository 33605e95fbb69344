//! The consumer side of the fleet stream: what a hub (and the tests) use to see the machines
//! that publish, follow their events live, read their history back from JetStream, and send
//! them control requests. Small on purpose: a thin layer over async-nats that knows secmon's
//! subjects and message formats (docs/fleet.md).
//!
//! ```no_run
//! # async fn example() -> Result<(), secmon::fleet::FleetError> {
//! use secmon::fleet::{Connection, consumer::Fleet};
//! let fleet = Fleet::connect(&Connection::plain("nats://127.0.0.1:4222"), "secmon", "SECMON").await?;
//! let hosts = fleet.hosts(std::time::Duration::from_secs(3)).await?;
//! let mut alerts = fleet.subscribe("*", "alerts").await?;
//! # Ok(()) }
//! ```
use std::{collections::BTreeMap, time::Duration};

use async_nats::{
    Client,
    jetstream::{self, consumer::DeliverPolicy},
};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};

use super::{
    Connection, FleetError, HostStatus, Subjects,
    control::{Action, ControlReply, ControlRequest},
};

/// One event (or status) from the fleet: where it was published, its id and its JSON. A
/// packed message ([`super::pack`]) is read as its events, each with its own id.
#[derive(Clone, Debug)]
pub struct FleetMessage {
    pub subject: String,
    /// The publishing host (the subject's token after the prefix).
    pub host: String,
    /// The event's id: the message's `Nats-Msg-Id`, or for an event of a packed message its
    /// own id ([`super::pack::event_id`]).
    pub id: Option<String>,
    pub payload: Bytes,
}

impl FleetMessage {
    /// The events of `message`: the message itself, or, with the [`super::pack::EVENTS_HEADER`]
    /// header, each line of its body.
    pub fn unpack(prefix: &str, message: async_nats::Message) -> Vec<FleetMessage> {
        let packed = message
            .headers
            .as_ref()
            .is_some_and(|h| h.get(super::pack::EVENTS_HEADER).is_some());
        let whole = FleetMessage::new(prefix, message);
        if !packed {
            return vec![whole];
        }
        super::pack::split_lines(&whole.payload)
            .into_iter()
            .enumerate()
            .map(|(k, payload)| FleetMessage {
                subject: whole.subject.clone(),
                host: whole.host.clone(),
                id: whole.id.as_deref().map(|id| super::pack::event_id(id, k)),
                payload,
            })
            .collect()
    }

    fn new(prefix: &str, message: async_nats::Message) -> FleetMessage {
        let subject = message.subject.to_string();
        let host = subject
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix('.'))
            .and_then(|rest| rest.split('.').next())
            .unwrap_or_default()
            .to_string();
        let id = message
            .headers
            .as_ref()
            .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
            .map(|v| v.as_str().to_string());
        FleetMessage {
            subject,
            host,
            id,
            payload: message.payload,
        }
    }

    /// The event (or status) as JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.payload).ok()
    }
}

/// A connection to the fleet's server and stream.
pub struct Fleet {
    client: Client,
    js: jetstream::Context,
    prefix: String,
    stream: String,
}

impl Fleet {
    /// Connects (waiting up to 5 s for the connection).
    pub async fn connect(
        connection: &Connection,
        prefix: &str,
        stream: &str,
    ) -> Result<Fleet, FleetError> {
        let options = connection.options("secmon fleet consumer").await?;
        // Not in the background: a consumer wants to know now that the server is there.
        let client = tokio::time::timeout(
            Duration::from_secs(5),
            async_nats::connect_with_options(connection.url.as_str(), options),
        )
        .await
        .map_err(|_| FleetError::Nats("connecting: timed out".to_string()))?
        .map_err(|e| FleetError::Nats(format!("connecting: {e}")))?;
        let mut deadline = 50;
        while client.connection_state() != async_nats::connection::State::Connected && deadline > 0
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
            deadline -= 1;
        }
        Ok(Fleet {
            js: jetstream::new(client.clone()),
            client,
            prefix: prefix.to_string(),
            stream: stream.to_string(),
        })
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The hosts whose status arrives within `listen` (a host says it every
    /// [`super::STATUS_EVERY`]), each with its latest status.
    pub async fn hosts(
        &self,
        listen: Duration,
    ) -> Result<BTreeMap<String, HostStatus>, FleetError> {
        let mut statuses = Box::pin(self.statuses().await?);
        let mut hosts = BTreeMap::new();
        let deadline = tokio::time::Instant::now() + listen;
        while let Ok(Some(status)) = tokio::time::timeout_at(deadline, statuses.next()).await {
            hosts.insert(status.host.clone(), status);
        }
        Ok(hosts)
    }

    /// Every host's status as it arrives.
    pub async fn statuses(&self) -> Result<impl Stream<Item = HostStatus> + use<>, FleetError> {
        let subject = format!("{}.*.status", self.prefix);
        let subscriber = self.subscribe_raw(subject).await?;
        Ok(subscriber.filter_map(|message| async move {
            serde_json::from_slice::<HostStatus>(&message.payload).ok()
        }))
    }

    /// Live messages of `host` (`*`: every host) on `what`: an event type (`file_open`),
    /// `alerts`, `status`, or `>` for everything.
    pub async fn subscribe(
        &self,
        host: &str,
        what: &str,
    ) -> Result<impl Stream<Item = FleetMessage> + use<>, FleetError> {
        let subject = format!("{}.{host}.{what}", self.prefix);
        let prefix = self.prefix.clone();
        let subscriber = self.subscribe_raw(subject).await?;
        Ok(subscriber
            .flat_map(move |message| futures::stream::iter(FleetMessage::unpack(&prefix, message))))
    }

    async fn subscribe_raw(&self, subject: String) -> Result<async_nats::Subscriber, FleetError> {
        let subscriber = self
            .client
            .subscribe(subject.clone())
            .await
            .map_err(|e| FleetError::Nats(format!("subscribing to {subject}: {e}")))?;
        // The subscription is on the server once this returns.
        self.client
            .flush()
            .await
            .map_err(|e| FleetError::Nats(format!("subscribing to {subject}: {e}")))?;
        Ok(subscriber)
    }

    /// The stream's messages on `host`/`what` (as [`Fleet::subscribe`]) from `since` on, in
    /// stream order, then live ones as they come (an ordered consumer: no acks, nothing left
    /// on the server when dropped).
    ///
    /// `what` is one of the stream's subjects' last token (an event type, `alerts`, `status`):
    /// the server filters. `>` (everything of `host`) reads the whole stream and keeps `host`'s
    /// messages here: before 2.10 a consumer's filter must lie within one of the stream's
    /// subjects, and the stream's subjects are per type (docs/fleet.md).
    pub async fn history(
        &self,
        host: &str,
        what: &str,
        since: DateTime<Utc>,
    ) -> Result<impl Stream<Item = FleetMessage> + use<>, FleetError> {
        let (_, messages) = self.ordered(host, what, since).await?;
        let host = host.to_string();
        Ok(messages.flat_map(futures::stream::iter).filter(move |m| {
            let keep = host == "*" || m.host == host;
            async move { keep }
        }))
    }

    /// What the stream holds for `host`/`what` since `since` (as [`Fleet::history`]), read
    /// up to the last message stored when the read began; `idle` bounds the wait for each.
    pub async fn read_history(
        &self,
        host: &str,
        what: &str,
        since: DateTime<Utc>,
        idle: Duration,
    ) -> Result<Vec<FleetMessage>, FleetError> {
        self.read_history_upto(host, what, since, idle, usize::MAX, u64::MAX)
            .await
    }

    /// [`Fleet::read_history`], stopping after `keep` events of `host` or `scan` messages
    /// read (reading everything, `>`, scans the whole stream from `since`: a hub's request
    /// must end; a packed message is one message and several events).
    pub async fn read_history_upto(
        &self,
        host: &str,
        what: &str,
        since: DateTime<Utc>,
        idle: Duration,
        keep: usize,
        scan: u64,
    ) -> Result<Vec<FleetMessage>, FleetError> {
        if !self.stream_exists().await? {
            return Ok(Vec::new());
        }
        let (stored, messages) = self.ordered(host, what, since).await?;
        let mut messages = Box::pin(messages);
        let mut read = Vec::new();
        for _ in 0..stored.min(scan) {
            if read.len() >= keep {
                break;
            }
            match tokio::time::timeout(idle, messages.next()).await {
                Ok(Some(events)) => read.extend(
                    events
                        .into_iter()
                        .filter(|event| host == "*" || event.host == host),
                ),
                _ => break,
            }
        }
        Ok(read)
    }

    /// Whether the stream exists yet. The exporters create it when they start storing, so a
    /// hub can be asked for history before any did (a host's status, which is not stored,
    /// can come first): then nothing is stored, which is an empty history, not an error.
    async fn stream_exists(&self) -> Result<bool, FleetError> {
        use async_nats::jetstream::{ErrorCode, context::GetStreamErrorKind};
        match self.js.get_stream(&self.stream).await {
            Ok(_) => Ok(true),
            Err(e) => match e.kind() {
                GetStreamErrorKind::JetStream(js)
                    if js.error_code() == ErrorCode::STREAM_NOT_FOUND =>
                {
                    Ok(false)
                }
                _ => Err(FleetError::Nats(format!("stream {}: {e}", self.stream))),
            },
        }
    }

    /// An ordered consumer on `host`/`what` from `since`, and how many messages it has to
    /// deliver at its start; each message as its events.
    async fn ordered(
        &self,
        host: &str,
        what: &str,
        since: DateTime<Utc>,
    ) -> Result<(u64, impl Stream<Item = Vec<FleetMessage>> + use<>), FleetError> {
        let stream = self
            .js
            .get_stream(&self.stream)
            .await
            .map_err(|e| FleetError::Nats(format!("stream {}: {e}", self.stream)))?;
        let filter_subject = if what == ">" {
            String::new()
        } else {
            format!("{}.{host}.{what}", self.prefix)
        };
        let consumer = stream
            .create_consumer(jetstream::consumer::pull::OrderedConfig {
                filter_subject,
                deliver_policy: DeliverPolicy::ByStartTime { start_time: since },
                ..Default::default()
            })
            .await
            .map_err(|e| FleetError::Nats(format!("stream {}: consumer: {e}", self.stream)))?;
        let stored = consumer.cached_info().num_pending;
        let messages = consumer
            .messages()
            .await
            .map_err(|e| FleetError::Nats(format!("stream {}: reading: {e}", self.stream)))?;
        let prefix = self.prefix.clone();
        Ok((
            stored,
            messages.filter_map(move |message| {
                let message = message
                    .ok()
                    .map(|m| FleetMessage::unpack(&prefix, m.message));
                async move { message }
            }),
        ))
    }

    /// Sends `action` to `host` with `token` and waits up to `timeout` for its reply.
    pub async fn control(
        &self,
        host: &str,
        token: &str,
        action: Action,
        timeout: Duration,
    ) -> Result<ControlReply, FleetError> {
        let request = ControlRequest {
            token: token.to_string(),
            action,
        };
        let payload = serde_json::to_vec(&request)
            .map_err(|e| FleetError::Nats(format!("control request: {e}")))?;
        let subject = Subjects::new(&self.prefix, host).control();
        let reply = tokio::time::timeout(
            timeout,
            self.client.request(subject.clone(), Bytes::from(payload)),
        )
        .await
        .map_err(|_| FleetError::Nats(format!("{subject}: no reply within {timeout:?}")))?
        .map_err(|e| FleetError::Nats(format!("{subject}: {e}")))?;
        serde_json::from_slice(&reply.payload)
            .map_err(|e| FleetError::Nats(format!("{subject}: not a control reply: {e}")))
    }
}
