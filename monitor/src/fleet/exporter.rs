//! The NATS exporter: a front end of the pipeline ([`NatsCompanion`]) that publishes every
//! analysed event to JetStream.
//!
//! It reads its own bounded queue (a full queue drops and counts `nats_queue_full`) on a thread
//! of its own with a current-thread runtime at [`crate::priority::BACKGROUND_NICE`], so neither
//! a slow server nor a slow network ever slows capture. Up to `events_per_message` queued events of one
//! type go in one message (JSON lines, [`super::pack`]): the server's cost is per message. Each event is serialised once
//! ([`crate::output::event_json::write_event`], a batch's events into one buffer whose slices
//! are the payloads) and published with a `Nats-Msg-Id` ([`super::message_id`]) and a reply
//! subject of the exporter's own inbox, `<inbox>.<n>`: JetStream's acknowledgements come back
//! on one subscription and are matched to their messages by `n`, settled in publish order
//! while later messages are already on the wire (up to [`MAX_IN_FLIGHT`] and
//! [`MAX_IN_FLIGHT_BYTES`]); a message whose ack
//! has not come within [`ACK_TIMEOUT`] counts as failed. (async-nats' own JetStream publish
//! costs a request-reply per message: a one-shot channel, a timer, a boxed future and a
//! generic JSON parse each, and capped the exporter at ~26,500 messages/s under a flood.) A
//! message that cannot be sent (no
//! connection, no stream yet) or whose ack fails or times out goes to the [`Spool`], and while
//! the spool holds anything new messages queue behind it, so they are sent in order once the
//! server is back. What the spool cannot hold is counted as `nats_spool_full`.
use std::{
    collections::VecDeque,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use async_nats::{
    HeaderMap, Message, Subject, Subscriber,
    client::Client,
    connection::State,
    header::NATS_MESSAGE_ID,
    jetstream::{self, stream},
};
use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use tokio::sync::{mpsc, oneshot};

use super::{
    ALERT_ID_SUFFIX, Connection, FleetError, HostStatus, STATUS_EVERY, Subjects, control,
    message_id, pack,
    spool::{Record, Spool, SpoolError},
};
use crate::{
    app::{ProbeState, Probes},
    config::Config,
    event::Family,
    losses::{Loss, Losses},
    pipeline::{Batch, Companion, CompanionStart, Pipeline, Recycler},
    response::enforce::SharedCapture,
};

/// Messages published and not yet acknowledged, at most (beyond, the queue waits: a server
/// that acknowledges slower than events come fills it, and `nats_queue_full` counts). Below
/// the client's subscription capacity (64 Ki messages), so no ack is ever dropped there.
pub const MAX_IN_FLIGHT: usize = 32 * 1024;
/// Payload bytes published and not yet acknowledged, at most: with several events per message
/// [`MAX_IN_FLIGHT`] messages alone could hold over a GiB of events waiting for their acks.
pub const MAX_IN_FLIGHT_BYTES: usize = 32 * 1024 * 1024;
/// Events the exporter's queue holds: four times a view's ([`crate::pipeline::SUBSCRIBER_EVENTS`]),
/// about 0.65 s of a 200,000 events/s flood. The exporter needs little CPU (about 0.5 µs per
/// event, a tenth of a core at 200,000/s), but it runs at nice 10 and, on a busy machine, waits
/// for a CPU for longer than a view's queue lasts (0.16 s at that rate): measured under load,
/// it was runnable and waiting for most of the flood, and the events that came meanwhile were
/// lost as `nats_queue_full` although it drains a full queue in a few tens of milliseconds once
/// it runs (docs/benchmarks.md). The deeper queue costs memory only while it is behind.
pub const QUEUE_EVENTS: usize = 4 * crate::pipeline::SUBSCRIBER_EVENTS;
/// How long an acknowledgement may take before the message is spooled (and sent again).
const ACK_TIMEOUT: Duration = Duration::from_secs(5);
/// After a failed publish or ack, how long new messages go straight to the spool before
/// sending is tried again.
const PAUSE_AFTER_FAILURE: Duration = Duration::from_millis(500);
/// The housekeeping period: connection state, the stream, the status, the spool.
const TICK: Duration = Duration::from_millis(100);
/// How long the exporter's runtime may take to end its tasks once the loop returned.
const RUNTIME_STOP: Duration = Duration::from_millis(500);
/// JetStream's duplicate window on a stream the exporter creates: a message sent again within
/// it (after a lost ack, a restart) is stored once.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(10 * 60);

/// `[export.nats]`, resolved.
#[derive(Clone, Debug)]
pub struct ExportSettings {
    pub connection: Connection,
    pub prefix: String,
    pub stream: String,
    pub host: String,
    pub spool_dir: PathBuf,
    pub spool_max_bytes: u64,
    pub stream_max_age: Duration,
    pub stream_max_bytes: u64,
    /// At stop, how long acknowledgements and the spool's sending are waited for.
    pub stop_grace: Duration,
    /// Up to how many events of one subject go in one message ([`super::pack`]).
    pub events_per_message: usize,
}

impl ExportSettings {
    pub fn from_config(config: &Config) -> ExportSettings {
        let nats = &config.export.nats;
        ExportSettings {
            connection: Connection::from_config(nats),
            prefix: nats.subject_prefix.clone(),
            stream: nats.stream.clone(),
            host: super::host_of(nats),
            spool_dir: nats.spool_dir.clone(),
            spool_max_bytes: nats.spool_max_mb * 1024 * 1024,
            stream_max_age: Duration::from_secs(nats.stream_max_age_hours * 3600),
            stream_max_bytes: nats.stream_max_mb * 1024 * 1024,
            stop_grace: Duration::from_secs(nats.stop_grace_secs),
            events_per_message: usize::try_from(nats.events_per_message).unwrap_or(1).max(1),
        }
    }
}

/// The exporter as a companion front end of `--json`, the terminal UI or `serve`.
pub struct NatsCompanion {
    settings: ExportSettings,
    control: control::ControlSetup,
}

impl NatsCompanion {
    /// The exporter `[export.nats]` asks for (`None`: not enabled).
    pub fn from_config(config: &Config) -> Option<NatsCompanion> {
        config.export.nats.enabled.then(|| NatsCompanion {
            settings: ExportSettings::from_config(config),
            control: control::ControlSetup::from_config(config),
        })
    }
}

impl Companion for NatsCompanion {
    fn start<'a>(
        self: Box<Self>,
        pipeline: &'a Pipeline,
        batches: mpsc::Receiver<Batch>,
    ) -> CompanionStart<'a> {
        Box::pin(async move {
            let settings = self.settings;
            let spool =
                Spool::open(&settings.spool_dir, settings.spool_max_bytes).map_err(|e| {
                    format!(
                        "[export.nats] spool_dir {}: {e}",
                        settings.spool_dir.display()
                    )
                })?;
            let control = self
                .control
                .start(pipeline)
                .map_err(|e| format!("[export.nats] control: {e}"))?;
            let context = Context {
                losses: pipeline.losses(),
                capture: pipeline.capture(),
                recycler: pipeline.recycler(),
            };
            let host = settings.host.clone();
            let (stop_tx, stop) = oneshot::channel();
            let (ready_tx, ready) = oneshot::channel();
            let thread = std::thread::Builder::new()
                .name("secmon-nats".into())
                .spawn(move || {
                    run_thread(settings, spool, control, context, batches, stop, ready_tx)
                })
                .map_err(|e| format!("NATS exporter: cannot start its thread: {e}"))?;
            let running = RunningExporter {
                stop: Some(stop_tx),
                thread: Some(thread),
            };
            match ready.await {
                Ok(Ok(said)) => {
                    crate::notice::info(format!("NATS: exporting as host {host}: {said}"));
                    Ok(Box::new(running) as Box<dyn Send>)
                }
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("NATS exporter: its thread ended before starting".to_string()),
            }
        })
    }

    fn queue_loss(&self) -> Loss {
        Loss::NatsQueueFull
    }

    fn queue_events(&self) -> usize {
        QUEUE_EVENTS
    }
}

/// What the exporter reads from the running pipeline.
struct Context {
    losses: Arc<Losses>,
    capture: Option<SharedCapture>,
    recycler: Recycler,
}

/// Keeps the exporter running; dropping it stops it (acks awaited up to `stop_grace_secs`, the
/// rest spooled) and waits for its thread.
struct RunningExporter {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for RunningExporter {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run_thread(
    settings: ExportSettings,
    spool: Spool,
    control: Option<control::Responder>,
    context: Context,
    batches: mpsc::Receiver<Batch>,
    stop: oneshot::Receiver<()>,
    ready: oneshot::Sender<Result<String, FleetError>>,
) {
    let runtime = match crate::priority::background_runtime() {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = ready.send(Err(FleetError::Nats(format!(
                "cannot start the exporter's runtime: {e}"
            ))));
            return;
        }
    };
    runtime.block_on(async move {
        let client = match settings
            .connection
            .connect(&format!("secmon {}", settings.host))
            .await
        {
            Ok(client) => client,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let control = match control {
            Some(responder) => match responder.subscribe(&client, &settings).await {
                Ok(listening) => Some(listening),
                Err(e) => {
                    let _ = ready.send(Err(e));
                    return;
                }
            },
            None => None,
        };
        let inbox = client.new_inbox();
        let acks = match client.subscribe(format!("{inbox}.*")).await {
            Ok(acks) => acks,
            Err(e) => {
                let _ = ready.send(Err(FleetError::Nats(format!(
                    "cannot subscribe to the exporter's inbox: {e}"
                ))));
                return;
            }
        };
        let said = format!(
            "{} (stream {}, subjects {}.{}.*), spool {} ({} bytes waiting){}",
            crate::secrets::redact_url(&settings.connection.url),
            settings.stream,
            settings.prefix,
            settings.host,
            settings.spool_dir.display(),
            spool.bytes(),
            if control.is_some() {
                "; answering control requests"
            } else {
                ""
            }
        );
        let _ = ready.send(Ok(said));
        let exporter = Exporter::new(
            client,
            Acks::new(inbox, acks),
            settings,
            spool,
            context,
            control.is_some(),
        );
        exporter.run(batches, stop, control).await;
    });
    runtime.shutdown_timeout(RUNTIME_STOP);
}

/// A message handed to JetStream, kept until its ack says what became of it.
struct Sent {
    record: Record,
    /// It came from the spool: settling it lets the spool delete its segment.
    from_spool: bool,
    /// When it was handed to the client (its ack is due [`ACK_TIMEOUT`] later).
    at: Instant,
    /// What its ack said (`None`: not come yet).
    ok: Option<bool>,
}

/// The exporter's acknowledgements: every message is published with the reply subject
/// `<inbox>.<n>` (`n` counting up from 0), and JetStream answers there.
struct Acks {
    inbox: String,
    subscription: Subscriber,
    /// The `n` of the next message published.
    next: u64,
    /// The `n` of the oldest message not settled (`sent`'s front).
    oldest: u64,
}

impl Acks {
    fn new(inbox: String, subscription: Subscriber) -> Acks {
        Acks {
            inbox,
            subscription,
            next: 0,
            oldest: 0,
        }
    }

    /// The reply subject of the next message.
    fn reply(&self) -> Subject {
        Subject::from(format!("{}.{}", self.inbox, self.next))
    }
}

/// `n` of an ack's subject `<inbox>.<n>`, and whether it says the message was stored: a
/// JetStream publish ack (`{"stream":…,"seq":…}`, `"duplicate":true` when the server already
/// had the id), not an error (`{"error":{…}}`) nor a "no responders" status (no stream takes
/// the subject).
fn read_ack(message: &Message) -> Option<(u64, bool)> {
    let n = message.subject.rsplit('.').next()?.parse().ok()?;
    let stored = message.status.is_none_or(|status| status.is_success())
        && !message.payload.is_empty()
        && !contains(&message.payload, b"\"error\"");
    Some((n, stored))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

struct Exporter {
    client: Client,
    js: jetstream::Context,
    settings: ExportSettings,
    subjects: Subjects,
    /// `<prefix>.<host>.<event_type>`, indexed by [`crate::event::EventType`] as `usize`.
    event_subjects: Vec<Subject>,
    /// `<prefix>.<host>.alerts`.
    alerts_subject: Subject,
    /// Random per start: ids stay unique across restarts.
    run: String,
    sequence: u64,
    spool: Spool,
    acks: Acks,
    /// The messages published and not yet settled, in publish order (the front's `n` is
    /// `acks.oldest`).
    sent: VecDeque<Sent>,
    /// The payload bytes of `sent`.
    in_flight_bytes: usize,
    /// The buffer a batch's events are written to (its slices are their payloads).
    buffer: Vec<u8>,
    stream_ready: bool,
    paused_until: Option<Instant>,
    context: Context,
    connected: bool,
    spool_warned: bool,
    /// Whether a message over the server's `max_payload` was said (once a run).
    too_large_warned: bool,
    control: bool,
    stats: Stats,
}

#[derive(Default)]
struct Stats {
    events: u64,
    /// Messages acknowledged (alert copies included).
    published: u64,
    /// Events acknowledged (each once: alert copies not counted).
    events_published: u64,
    events_at_last_status: u64,
    last_status: Option<Instant>,
    started: Option<Instant>,
    started_at: String,
}

impl Exporter {
    fn new(
        client: Client,
        acks: Acks,
        settings: ExportSettings,
        spool: Spool,
        context: Context,
        control: bool,
    ) -> Exporter {
        // For the stream only: messages are published by the client itself (see [`Acks`]).
        let js = jetstream::context::ContextBuilder::new()
            .timeout(ACK_TIMEOUT)
            .build(client.clone());
        let run = crate::controller::auth::random_hex(4).unwrap_or_else(|_| {
            format!(
                "{:08x}",
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.subsec_nanos())
                    .unwrap_or(0)
            )
        });
        let subjects = Subjects::new(&settings.prefix, &settings.host);
        let mut event_subjects = vec![Subject::from(""); crate::event::EventType::ALL.len()];
        for event_type in crate::event::EventType::ALL {
            event_subjects[event_type as usize] = subjects.event(event_type.as_str()).into();
        }
        Exporter {
            event_subjects,
            alerts_subject: subjects.alerts().into(),
            subjects,
            client,
            js,
            settings,
            run,
            sequence: 0,
            spool,
            acks,
            sent: VecDeque::new(),
            in_flight_bytes: 0,
            buffer: Vec::new(),
            stream_ready: false,
            paused_until: None,
            context,
            connected: false,
            spool_warned: false,
            too_large_warned: false,
            control,
            stats: Stats {
                started: Some(Instant::now()),
                started_at: chrono::Utc::now().to_rfc3339(),
                ..Stats::default()
            },
        }
    }

    async fn run(
        mut self,
        mut batches: mpsc::Receiver<Batch>,
        mut stop: oneshot::Receiver<()>,
        mut control: Option<control::Listening>,
    ) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                // Control requests and housekeeping (the status, ack timeouts) first: under a
                // flood acks and batches are always ready, and a request or a status waiting
                // behind them would time out.
                biased;
                _ = &mut stop => break,
                request = next_request(&mut control) => match (request, &control) {
                    (Some(request), Some(listening)) => listening.answer(request).await,
                    // The subscription ended (the client is closing): no more requests.
                    _ => control = None,
                },
                _ = tick.tick() => self.housekeeping().await,
                Some(ack) = self.acks.subscription.next() => self.take_acks(ack),
                batch = batches.recv(), if self.room_in_flight() => match batch {
                    Some(batch) => self.take(batch).await,
                    None => break,
                },
            }
            self.send_spooled().await;
        }
        self.finish(batches).await;
    }

    /// Every event of `batch` (and each alert again on `.alerts`): sent, or spooled. The
    /// events of one type are packed, up to `events_per_message` and the server's
    /// `max_payload` a message ([`super::pack`]); only what the batch holds, never waiting for
    /// more.
    async fn take(&mut self, batch: Batch) {
        self.stats.events += batch.len() as u64;
        // The batch's events by type, in order within each: a type's events are written one
        // after the other, so a pack is one slice of the buffer and its events' sequences are
        // consecutive.
        let mut by_type: Vec<Vec<usize>> = vec![Vec::new(); self.event_subjects.len()];
        for (i, event) in batch.iter().enumerate() {
            by_type[event.event_type as usize].push(i);
        }
        let mut buffer = std::mem::take(&mut self.buffer);
        buffer.clear();
        // Per type: its events' (batch index, start, end without the newline).
        let mut written = Vec::with_capacity(by_type.len());
        for (event_type, indices) in by_type.into_iter().enumerate() {
            if indices.is_empty() {
                continue;
            }
            let mut spans = Vec::with_capacity(indices.len());
            for i in indices {
                let start = buffer.len();
                crate::output::event_json::write_event(&mut buffer, &batch[i]);
                spans.push((i, start, buffer.len()));
                buffer.push(b'\n');
            }
            written.push((event_type, spans));
        }
        let json = Bytes::from(buffer);
        let max_bytes = self.max_message_bytes().unwrap_or(usize::MAX);
        for (event_type, spans) in written {
            let sizes: Vec<usize> = spans.iter().map(|&(_, s, e)| e - s + 1).collect();
            for range in pack::cut(&sizes, self.settings.events_per_message, max_bytes) {
                self.take_pack(&batch, &json, event_type, &spans[range])
                    .await;
            }
        }
        // The next batch writes to a buffer of the same size (this one lives on in the
        // payloads until their acks).
        self.buffer = Vec::with_capacity(json.len());
        // Freed on the pipeline's thread when we hold the only reference.
        if let Ok(events) = Arc::try_unwrap(batch) {
            self.context.recycler.give_back(events);
        }
    }

    /// One message of `spans` (events of type `event_type`, written to `json`), and each of
    /// its alerts again on `.alerts`, one message each.
    async fn take_pack(
        &mut self,
        batch: &Batch,
        json: &Bytes,
        event_type: usize,
        spans: &[(usize, usize, usize)],
    ) {
        let (Some(&(_, first_start, first_end)), Some(&(_, _, last_end))) =
            (spans.first(), spans.last())
        else {
            return;
        };
        let first = self.sequence;
        self.sequence += spans.len() as u64;
        let first_id = message_id(&self.settings.host, &self.run, first);
        let (id, payload) = if spans.len() == 1 {
            (first_id, json.slice(first_start..first_end))
        } else {
            // Every event with its newline: JSON lines.
            (
                pack::pack_id(&first_id, spans.len()),
                json.slice(first_start..last_end + 1),
            )
        };
        let alerts: Vec<Record> = spans
            .iter()
            .zip(first..)
            .filter(|((i, _, _), _)| crate::controller::hub::is_alert(&batch[*i]))
            .map(|(&(_, start, end), sequence)| Record {
                subject: self.alerts_subject.clone(),
                id: format!(
                    "{}{ALERT_ID_SUFFIX}",
                    message_id(&self.settings.host, &self.run, sequence)
                ),
                payload: json.slice(start..end),
            })
            .collect();
        let subject = self.event_subjects[event_type].clone();
        self.accept(Record {
            subject,
            id,
            payload,
        })
        .await;
        for alert in alerts {
            self.accept(alert).await;
        }
    }

    /// Sends `record` if it can go now and nothing waits before it; else spools it.
    async fn accept(&mut self, record: Record) {
        if self.can_send() && !self.spool.has_backlog() {
            self.send(record, false).await;
        } else {
            self.spool_record(record);
        }
    }

    fn can_send(&self) -> bool {
        self.stream_ready
            && self.client.connection_state() == State::Connected
            && self
                .paused_until
                .is_none_or(|until| Instant::now() >= until)
    }

    /// The most a message's body may hold: the server's `max_payload` less room for the
    /// headers; `None` before the server has said it.
    fn max_message_bytes(&self) -> Option<usize> {
        match self.client.max_payload() {
            0 => None,
            max => Some(max.saturating_sub(pack::HEADER_ROOM).max(1)),
        }
    }

    /// Publishes `record`, cut again first if it is over the server's bound: a pack built
    /// before the server said its `max_payload` (spooled while connecting), or spooled under a
    /// larger one. A single event over it is lost: the server would refuse it every time, and
    /// spooled again it would come back forever.
    async fn send(&mut self, record: Record, from_spool: bool) {
        let Some(max) = self
            .max_message_bytes()
            .filter(|&max| record.payload.len() > max)
        else {
            return self.publish(record, from_spool).await;
        };
        let parts = pack::recut(&record.id, &record.payload, max);
        let last = parts.len().saturating_sub(1);
        for (k, (id, payload)) in parts.into_iter().enumerate() {
            let part = Record {
                subject: record.subject.clone(),
                id,
                payload,
            };
            // The spool hands out one record and waits for one settlement: the last part's.
            let settles_spool = from_spool && k == last;
            if part.payload.len() > max {
                self.lose_too_large(&part);
                if settles_spool {
                    self.spool.settled();
                }
            } else {
                self.publish(part, settles_spool).await;
            }
        }
    }

    async fn publish(&mut self, record: Record, from_spool: bool) {
        let mut headers = HeaderMap::new();
        headers.insert(NATS_MESSAGE_ID, record.id.as_str());
        let events = pack::events_in(&record.id);
        if events > 1 {
            headers.insert(pack::EVENTS_HEADER, events.to_string());
        }
        let published = self
            .client
            .publish_with_reply_and_headers(
                record.subject.clone(),
                self.acks.reply(),
                headers,
                record.payload.clone(),
            )
            .await;
        match published {
            Ok(()) => {
                self.acks.next += 1;
                self.in_flight_bytes += record.payload.len();
                self.sent.push_back(Sent {
                    record,
                    from_spool,
                    at: Instant::now(),
                    ok: None,
                });
            }
            Err(_) => {
                self.pause();
                self.spool_record(record);
                if from_spool {
                    self.spool.settled();
                }
            }
        }
    }

    /// `first` and the acks already waiting behind it; then what they settle.
    fn take_acks(&mut self, first: Message) {
        self.note_ack(&first);
        while let Some(Some(ack)) = self.acks.subscription.next().now_or_never() {
            self.note_ack(&ack);
        }
        self.settle_due();
    }

    /// Notes what an ack says on its message (an ack for a message settled already, after
    /// its timeout, is dropped).
    fn note_ack(&mut self, ack: &Message) {
        let Some((n, stored)) = read_ack(ack) else {
            return;
        };
        let Some(index) = n.checked_sub(self.acks.oldest) else {
            return;
        };
        if let Some(sent) = usize::try_from(index)
            .ok()
            .and_then(|i| self.sent.get_mut(i))
        {
            sent.ok.get_or_insert(stored);
        }
    }

    /// Settles, in publish order, the messages whose ack came or is overdue.
    fn settle_due(&mut self) {
        while let Some(front) = self.sent.front() {
            let ok = match front.ok {
                Some(ok) => ok,
                None if front.at.elapsed() >= ACK_TIMEOUT => false,
                None => break,
            };
            self.settle(ok);
        }
    }

    /// The oldest message, in publish order: a failed one spools its message again.
    fn settle(&mut self, ok: bool) {
        let Some(sent) = self.sent.pop_front() else {
            return;
        };
        self.in_flight_bytes = self
            .in_flight_bytes
            .saturating_sub(sent.record.payload.len());
        self.acks.oldest += 1;
        if ok {
            self.stats.published += 1;
            self.stats.events_published += events_of(&sent.record);
        } else {
            self.pause();
            self.spool_record(sent.record);
        }
        if sent.from_spool {
            self.spool.settled();
        }
    }

    /// Whether more may be published before acks come back ([`MAX_IN_FLIGHT`] messages,
    /// [`MAX_IN_FLIGHT_BYTES`]).
    fn room_in_flight(&self) -> bool {
        self.sent.len() < MAX_IN_FLIGHT && self.in_flight_bytes < MAX_IN_FLIGHT_BYTES
    }

    fn pause(&mut self) {
        self.paused_until = Some(Instant::now() + PAUSE_AFTER_FAILURE);
    }

    /// Counts `record` lost as larger than the server takes, and says so once.
    fn lose_too_large(&mut self, record: &Record) {
        self.context
            .losses
            .add(Loss::NatsTooLarge, events_of(record));
        if !self.too_large_warned {
            self.too_large_warned = true;
            crate::notice::warn(format!(
                "NATS: a message of {} bytes ({}) is over the server's max_payload ({} bytes): \
                 not published; such events are counted as nats_too_large",
                record.payload.len(),
                record.subject,
                self.client.max_payload()
            ));
        }
    }

    fn spool_record(&mut self, record: Record) {
        match self.spool.push(&record) {
            Ok(()) => {}
            Err(e) => {
                self.context
                    .losses
                    .add(Loss::NatsSpoolFull, events_of(&record));
                if !self.spool_warned {
                    self.spool_warned = true;
                    let why = match e {
                        SpoolError::Full(_) => format!(
                            "the spool is full ({} MiB, spool_max_mb)",
                            self.settings.spool_max_bytes / (1024 * 1024)
                        ),
                        SpoolError::Io(e) => format!("cannot write the spool: {e}"),
                    };
                    crate::notice::warn(format!(
                        "NATS: {why}; events are lost (nats_spool_full) until the server \
                         takes them again"
                    ));
                }
            }
        }
    }

    /// Hands spooled messages to the server while it takes them.
    async fn send_spooled(&mut self) {
        while self.room_in_flight() && self.spool.has_backlog() && self.can_send() {
            let Some(record) = self.spool.take_next() else {
                break;
            };
            self.send(record, true).await;
        }
    }

    async fn housekeeping(&mut self) {
        self.settle_due();
        let connected = self.client.connection_state() == State::Connected;
        if connected != self.connected {
            self.connected = connected;
            if connected {
                crate::notice::info(format!(
                    "NATS: connected to {}",
                    crate::secrets::redact_url(&self.settings.connection.url)
                ));
            } else {
                // The stream is checked again after a reconnect (the server may be another).
                self.stream_ready = false;
                crate::notice::warn(format!(
                    "NATS: {} cannot be reached; events wait in the spool {}",
                    crate::secrets::redact_url(&self.settings.connection.url),
                    self.settings.spool_dir.display()
                ));
            }
        }
        if self
            .paused_until
            .is_some_and(|until| Instant::now() >= until)
        {
            self.paused_until = None;
        }
        if connected && !self.stream_ready {
            self.ensure_stream().await;
        }
        if connected
            && self
                .stats
                .last_status
                .is_none_or(|at| at.elapsed() >= STATUS_EVERY)
        {
            self.publish_status().await;
        }
        if self.spool_warned && !self.spool.has_backlog() {
            self.spool_warned = false;
        }
    }

    /// Finds the stream, or creates it (subjects `<prefix>.>`, the configured limits).
    async fn ensure_stream(&mut self) {
        let config = stream::Config {
            name: self.settings.stream.clone(),
            subjects: super::stream_subjects(&self.settings.prefix),
            max_age: self.settings.stream_max_age,
            max_bytes: i64::try_from(self.settings.stream_max_bytes)
                .ok()
                .filter(|&n| n > 0)
                .unwrap_or(-1),
            duplicate_window: DUPLICATE_WINDOW,
            storage: stream::StorageType::File,
            ..stream::Config::default()
        };
        match tokio::time::timeout(ACK_TIMEOUT, self.js.get_or_create_stream(config)).await {
            Ok(Ok(mut stream)) => {
                self.stream_ready = true;
                if let Ok(info) = stream.info().await {
                    self.check_stream_subjects(&info.config.subjects);
                }
            }
            Ok(Err(e)) => {
                crate::notice::warn(format!(
                    "NATS: stream {}: {e}; events wait in the spool",
                    self.settings.stream
                ));
                self.pause();
            }
            Err(_) => self.pause(),
        }
    }

    /// An existing stream (made by hand, or by another tool) may not take our subjects, or may
    /// take the control subject too: then the server itself answers control requests (with a
    /// publish ack) and stores them, tokens included. Said once per connection.
    fn check_stream_subjects(&self, subjects: &[String]) {
        let takes = |subject: &str| subjects.iter().any(|p| super::subject_matches(p, subject));
        let stream = &self.settings.stream;
        if !takes(&self.subjects.event("process_exec")) || !takes(&self.subjects.alerts()) {
            crate::notice::warn(format!(
                "NATS: stream {stream} does not take {}: events are not stored (subjects: {})",
                self.subjects.all(),
                subjects.join(" ")
            ));
        }
        if takes(&self.subjects.control()) {
            crate::notice::warn(format!(
                "NATS: stream {stream} also takes {} (subjects: {}): control requests would be \
                 stored, tokens included, and answered by the server; give it the subjects of \
                 docs/fleet.md",
                self.subjects.control(),
                subjects.join(" ")
            ));
        }
    }

    async fn publish_status(&mut self) {
        let now = Instant::now();
        let interval = self
            .stats
            .last_status
            .map_or(0.0, |at| now.duration_since(at).as_secs_f64());
        let events = self.stats.events - self.stats.events_at_last_status;
        self.stats.last_status = Some(now);
        self.stats.events_at_last_status = self.stats.events;
        let losses = self.context.losses.snapshot();
        let status = HostStatus {
            host: self.settings.host.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            started: self.stats.started_at.clone(),
            uptime_secs: self.stats.started.map_or(0, |s| s.elapsed().as_secs()),
            events: self.stats.events,
            events_per_sec: if interval > 0.0 {
                events as f64 / interval
            } else {
                0.0
            },
            published: self.stats.published,
            spool_bytes: self.spool.bytes(),
            connected: true,
            losses: Loss::ALL
                .into_iter()
                .map(|reason| (reason.as_str().to_string(), losses.get(reason)))
                .collect(),
            lost_total: losses.total(),
            probes: probe_states(self.context.capture.as_ref()),
            control: self.control,
        };
        if let Ok(json) = serde_json::to_vec(&status) {
            let _ = self
                .client
                .publish(self.subjects.status(), Bytes::from(json))
                .await;
        }
    }

    /// At stop: what is queued is taken; while the server is connected, the spool is sent and
    /// acks are awaited, up to `stop_grace_secs` (a replay's events, spooled until the stream
    /// was found, get out); what is still unacknowledged then is spooled (sent again at the
    /// next start; its id makes a second copy harmless).
    async fn finish(mut self, mut batches: mpsc::Receiver<Batch>) {
        batches.close();
        while let Ok(batch) = batches.try_recv() {
            self.take(batch).await;
        }
        let deadline = tokio::time::Instant::now() + self.settings.stop_grace;
        while tokio::time::Instant::now() < deadline
            && (self.spool.has_backlog() || !self.sent.is_empty())
        {
            if self.client.connection_state() != State::Connected {
                // Not yet (a short run ends before the first connection) or not any more:
                // waited for within the grace, then what waits stays in the spool.
                tokio::time::sleep(TICK / 2).await;
                continue;
            }
            if !self.stream_ready {
                self.ensure_stream().await;
            }
            if self
                .paused_until
                .is_some_and(|until| Instant::now() >= until)
            {
                self.paused_until = None;
            }
            self.send_spooled().await;
            if self.sent.is_empty() {
                tokio::time::sleep(TICK / 2).await;
                continue;
            }
            let wait = deadline.min(tokio::time::Instant::now() + TICK);
            match tokio::time::timeout_at(wait, self.acks.subscription.next()).await {
                Ok(Some(ack)) => self.take_acks(ack),
                Ok(None) => break,
                Err(_) => self.settle_due(),
            }
        }
        while let Some(sent) = self.sent.pop_front() {
            self.in_flight_bytes = self
                .in_flight_bytes
                .saturating_sub(sent.record.payload.len());
            self.acks.oldest += 1;
            self.spool_record(sent.record);
            if sent.from_spool {
                self.spool.settled();
            }
        }
        if let Err(e) = self.spool.close() {
            crate::notice::warn(format!("NATS: closing the spool: {e}"));
        }
        // A last status (a short run, a replay, may have ended before its first one).
        if self.client.connection_state() == State::Connected {
            self.publish_status().await;
        }
        let _ = tokio::time::timeout(Duration::from_millis(500), self.client.flush()).await;
        let losses = self.context.losses.snapshot();
        crate::notice::info(format!(
            "NATS: stopped: {} events taken, {} events acknowledged, {} messages acknowledged, \
             {} bytes left in the spool {}; lost: nats_queue_full {}, nats_spool_full {}, \
             nats_too_large {}",
            self.stats.events,
            self.stats.events_published,
            self.stats.published,
            self.spool.bytes(),
            self.settings.spool_dir.display(),
            losses.get(Loss::NatsQueueFull),
            losses.get(Loss::NatsSpoolFull),
            losses.get(Loss::NatsTooLarge),
        ));
    }
}

/// The events `record` carries, as published, lost and acknowledged counts count them: a pack
/// all of its events, an alert's copy on `.alerts` none (it is the same event, counted once).
fn events_of(record: &Record) -> u64 {
    if record.id.ends_with(ALERT_ID_SUFFIX) {
        0
    } else {
        pack::events_in(&record.id)
    }
}

/// The next control request, or never when control is off.
async fn next_request(control: &mut Option<control::Listening>) -> Option<async_nats::Message> {
    match control {
        Some(listening) => listening.next().await,
        None => std::future::pending().await,
    }
}

/// Probe family → state, as the controller's status says it.
pub fn probe_states(capture: Option<&SharedCapture>) -> std::collections::BTreeMap<String, String> {
    Family::ALL
        .iter()
        .map(|&family| {
            let state = match capture {
                Some(capture) => capture.state(family),
                None => ProbeState::Replay,
            };
            let state = match state {
                ProbeState::On => "on",
                ProbeState::Off => "off",
                ProbeState::Unavailable => "unavailable",
                ProbeState::Replay => "replay",
            };
            (family.as_str().to_string(), state.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(subject: &str, payload: &str, status: Option<async_nats::StatusCode>) -> Message {
        Message {
            subject: subject.into(),
            reply: None,
            payload: Bytes::copy_from_slice(payload.as_bytes()),
            headers: None,
            status,
            description: None,
            length: payload.len(),
        }
    }

    #[test]
    fn acks_are_matched_by_their_number_and_read_as_stored_or_not() {
        let inbox = "_INBOX.abc";
        let stored = ack(
            &format!("{inbox}.7"),
            r#"{"stream":"SECMON","seq":12}"#,
            None,
        );
        assert_eq!(read_ack(&stored), Some((7, true)));
        let again = ack(
            &format!("{inbox}.8"),
            r#"{"stream":"SECMON","seq":12,"duplicate":true}"#,
            None,
        );
        assert_eq!(read_ack(&again), Some((8, true)), "a duplicate is stored");
        let refused = ack(
            &format!("{inbox}.9"),
            r#"{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"}}"#,
            None,
        );
        assert_eq!(read_ack(&refused), Some((9, false)));
        let nobody = ack(
            &format!("{inbox}.10"),
            "",
            Some(async_nats::StatusCode::NO_RESPONDERS),
        );
        assert_eq!(read_ack(&nobody), Some((10, false)), "no stream takes it");
        assert_eq!(read_ack(&ack("_INBOX.abc.x", "{}", None)), None);
    }
}
