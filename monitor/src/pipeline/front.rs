//! The front ends: where analysed batches go. Each has a bounded queue of its own and counts
//! what it could not take, so a slow one never holds up another, the history or the kernel
//! reader.
//!
//! - [`FrontEnd::Json`]: `--json` on a live capture. The batch is serialised here and queued,
//!   bounded in bytes, for the output thread ([`JsonOutput`]); a full queue drops the batch
//!   ([`Loss::OutputQueueFull`]).
//! - [`FrontEnd::JsonLines`]: `--json` over a recording. Written directly: a replay has no
//!   kernel to protect, so it goes at the pace of stdout and loses nothing.
//! - [`FrontEnd::Queue`]: a front end with a loop of its own (the terminal UI; next the web
//!   controller's live stream) receives shared batches through a [`Subscriber`] queue.
use std::{
    collections::VecDeque,
    io::{self, Write},
    sync::Arc,
    time::Duration,
};

use tokio::sync::mpsc;

use crate::{
    event::Event,
    losses::{Loss, Losses},
    output::json::{JsonLines, JsonOutput},
};

/// One batch of analysed events, shared by the front ends that take it.
pub type Batch = Arc<Vec<Event>>;

/// Events a [`Subscriber`] queue holds by default, in as many batches as they come: a view that
/// stops reading holds at most this many (tens of MB), and one that keeps up never waits (a
/// batch is taken as soon as it is queued). Bounded in events, not batches: on a busy but not
/// flooded machine the reader's batches are small, and eight of them (the old bound) were a
/// few milliseconds of events, so a front end at a low priority that was not scheduled for that
/// long lost batches while the machine was far from a flood.
pub const SUBSCRIBER_EVENTS: usize = 32_768;
/// Batches a [`Subscriber`] queue of [`SUBSCRIBER_EVENTS`] holds at most, whatever their
/// size (a deeper queue, as many more).
const SUBSCRIBER_SLOTS: usize = 1024;

pub enum FrontEnd {
    Json(JsonOutput),
    JsonLines(JsonLines<Box<dyn Write + Send>>),
    Queue(Subscriber),
}

/// A front end that stopped taking batches and why (`None`: it went away on purpose).
pub struct Closed(pub Option<io::Error>);

impl FrontEnd {
    /// The JSON front ends serialise each event as soon as it is analysed (it is still in the
    /// cache); a queue front end takes the whole batch instead ([`FrontEnd::deliver_shared`]).
    pub(super) fn write_event(&mut self, event: &Event) -> Result<(), Closed> {
        match self {
            FrontEnd::Json(output) => output.write(event),
            FrontEnd::JsonLines(lines) => lines.write(event),
            FrontEnd::Queue(_) => Ok(()),
        }
        .map_err(|e| Closed(Some(e)))
    }

    /// The end of a batch: the JSON output queues it (or drops and counts it), the replay's
    /// JSON lines are flushed.
    pub(super) fn end_batch(&mut self) -> Result<(), Closed> {
        match self {
            FrontEnd::Json(output) => {
                output.end_batch();
                Ok(())
            }
            FrontEnd::JsonLines(lines) => lines.flush().map_err(|e| Closed(Some(e))),
            FrontEnd::Queue(_) => Ok(()),
        }
    }

    /// Hands a queue front end the shared batch. Waits only where the source allows it
    /// (`wait`: a replay) and the queue is full; otherwise drops and counts.
    pub(super) async fn deliver_shared(
        &mut self,
        batch: &Batch,
        wait: bool,
        losses: &Losses,
    ) -> Result<(), Closed> {
        match self {
            FrontEnd::Queue(subscriber) => subscriber.deliver(batch.clone(), wait, losses).await,
            FrontEnd::Json(_) | FrontEnd::JsonLines(_) => Ok(()),
        }
    }

    pub(super) fn is_queue(&self) -> bool {
        matches!(self, FrontEnd::Queue(_))
    }
}

/// The pipeline's end of a front end's queue.
pub struct Subscriber {
    tx: mpsc::Sender<Batch>,
    /// What a batch dropped on a full queue counts as.
    loss: Loss,
    max_events: usize,
    /// The lengths of the batches sent, oldest first, as far back as the queue may still hold
    /// them: the receiver takes batches in order, so the queued ones are the newest
    /// `max_capacity - capacity` of these.
    sent: VecDeque<usize>,
    sent_events: usize,
}

impl Subscriber {
    /// A queue of up to `max_events` events (a batch bigger than that still goes through an
    /// empty queue); the receiver is the front end's.
    pub fn new(max_events: usize, loss: Loss) -> (Subscriber, mpsc::Receiver<Batch>) {
        // A deeper queue (the NATS exporter's) takes as many more batches.
        let slots = SUBSCRIBER_SLOTS.max(max_events / (SUBSCRIBER_EVENTS / SUBSCRIBER_SLOTS));
        let (tx, rx) = mpsc::channel(slots);
        let subscriber = Subscriber {
            tx,
            loss,
            max_events: max_events.max(1),
            sent: VecDeque::new(),
            sent_events: 0,
        };
        (subscriber, rx)
    }

    async fn deliver(&mut self, batch: Batch, wait: bool, losses: &Losses) -> Result<(), Closed> {
        let len = batch.len();
        if wait {
            // A replay: no kernel to protect, so wait for room. The receiver does not say when
            // it takes a batch; a replay is not in a hurry, so look again a moment later.
            while !self.has_room_for(len) {
                if self.tx.is_closed() {
                    return Err(Closed(None));
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            self.tx.send(batch).await.map_err(|_| Closed(None))?;
            self.sent(len);
            return Ok(());
        }
        if !self.has_room_for(len) {
            losses.add(self.loss, len as u64);
            return Ok(());
        }
        match self.tx.try_send(batch) {
            Ok(()) => {
                self.sent(len);
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(batch)) => {
                losses.add(self.loss, batch.len() as u64);
                Ok(())
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(Closed(None)),
        }
    }

    /// Whether a batch of `len` events fits beside what the queue holds now (an empty queue
    /// takes any batch).
    fn has_room_for(&mut self, len: usize) -> bool {
        let queued_batches = self.tx.max_capacity() - self.tx.capacity();
        while self.sent.len() > queued_batches {
            if let Some(taken) = self.sent.pop_front() {
                self.sent_events -= taken;
            }
        }
        self.sent_events == 0 || self.sent_events + len <= self.max_events
    }

    fn sent(&mut self, len: usize) {
        self.sent.push_back(len);
        self.sent_events += len;
    }
}

/// Gives events back to the pipeline's thread to be freed there: memory is cheapest to free on
/// the thread that allocated it (with mimalloc, a front end freeing the pipeline's events cost
/// the UI about 80 % more CPU under a flood). A front end hands back the events it lets go of
/// and the emptied batch vectors (which the pipeline reuses).
#[derive(Clone)]
pub struct Recycler(mpsc::Sender<Vec<Event>>);

impl Recycler {
    pub(crate) fn new() -> (Recycler, mpsc::Receiver<Vec<Event>>) {
        let (tx, rx) = mpsc::channel(RECYCLE_QUEUE);
        (Recycler(tx), rx)
    }

    /// Hands `events` back; when the pipeline is behind (or gone) they are freed here.
    pub fn give_back(&self, events: Vec<Event>) {
        if events.capacity() > 0 {
            let _ = self.0.try_send(events);
        }
    }
}

/// Vectors waiting to be freed on the pipeline's thread.
const RECYCLE_QUEUE: usize = 64;

/// The events of a batch, moved out when the receiver holds the only reference (the usual
/// case: one queue front end), copied otherwise.
pub fn take_events(batch: Batch) -> Vec<Event> {
    Arc::try_unwrap(batch).unwrap_or_else(|shared| shared.as_ref().clone())
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;
    use crate::event::EventType;

    fn events(n: usize) -> Vec<Event> {
        (0..n)
            .map(|_| Event::new(EventType::FileOpen, DateTime::UNIX_EPOCH))
            .collect()
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let losses = Losses::new();
        let (subscriber, mut rx) = Subscriber::new(1, Loss::DisplayQueueFull);
        let mut front = FrontEnd::Queue(subscriber);
        for _ in 0..3 {
            let delivered = front
                .deliver_shared(&Arc::new(events(5)), false, &losses)
                .await;
            assert!(delivered.is_ok());
        }
        assert_eq!(losses.get(Loss::DisplayQueueFull), 10);
        assert_eq!(rx.try_recv().map(|b| b.len()).ok(), Some(5));
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn the_queue_is_bounded_in_events_however_small_the_batches() {
        let losses = Losses::new();
        let (subscriber, mut rx) = Subscriber::new(10, Loss::DisplayQueueFull);
        let mut front = FrontEnd::Queue(subscriber);
        let one = Arc::new(events(1));
        for _ in 0..12 {
            assert!(front.deliver_shared(&one, false, &losses).await.is_ok());
        }
        assert_eq!(
            losses.get(Loss::DisplayQueueFull),
            2,
            "ten single events fit"
        );
        for _ in 0..3 {
            assert!(rx.try_recv().is_ok());
        }
        for _ in 0..4 {
            assert!(front.deliver_shared(&one, false, &losses).await.is_ok());
        }
        assert_eq!(
            losses.get(Loss::DisplayQueueFull),
            3,
            "three taken, three more fit"
        );
        let mut left = 0;
        while rx.try_recv().is_ok() {
            left += 1;
        }
        assert_eq!(left, 10);
    }

    /// A deeper queue (the NATS exporter's) holds its events in small batches too: its
    /// bound in batches grows with it.
    #[tokio::test]
    async fn a_deeper_queue_takes_as_many_more_small_batches() {
        let losses = Losses::new();
        let deeper = 4 * SUBSCRIBER_EVENTS;
        let (subscriber, mut rx) = Subscriber::new(deeper, Loss::NatsQueueFull);
        let mut front = FrontEnd::Queue(subscriber);
        let small = Arc::new(events(SUBSCRIBER_EVENTS / SUBSCRIBER_SLOTS));
        let batches = deeper / small.len();
        assert_eq!(batches, 4 * SUBSCRIBER_SLOTS);
        for _ in 0..batches + 1 {
            assert!(front.deliver_shared(&small, false, &losses).await.is_ok());
        }
        assert_eq!(
            losses.get(Loss::NatsQueueFull),
            small.len() as u64,
            "only the batch past the bound in events is lost"
        );
        let mut queued = 0;
        while rx.try_recv().is_ok() {
            queued += 1;
        }
        assert_eq!(queued, batches);
    }

    #[tokio::test]
    async fn a_replay_waits_for_room_and_loses_nothing() {
        let losses = Losses::new();
        let (subscriber, mut rx) = Subscriber::new(1, Loss::DisplayQueueFull);
        let mut front = FrontEnd::Queue(subscriber);
        let reader = tokio::spawn(async move {
            let mut seen = 0;
            while let Some(batch) = rx.recv().await {
                seen += take_events(batch).len();
            }
            seen
        });
        for _ in 0..20 {
            let delivered = front
                .deliver_shared(&Arc::new(events(3)), true, &losses)
                .await;
            assert!(delivered.is_ok());
        }
        drop(front);
        assert_eq!(reader.await.ok(), Some(60));
        assert_eq!(losses.get(Loss::DisplayQueueFull), 0);
    }

    #[tokio::test]
    async fn a_receiver_that_went_away_closes_the_front_end() {
        let losses = Losses::new();
        let (subscriber, rx) = Subscriber::new(4, Loss::DisplayQueueFull);
        drop(rx);
        let mut front = FrontEnd::Queue(subscriber);
        let delivered = front
            .deliver_shared(&Arc::new(events(1)), false, &losses)
            .await;
        assert!(matches!(delivered, Err(Closed(None))));
    }
}
