//! Stage 2: the one async task that drains the ring buffer, decodes records and hands them on
//! in batches. It never blocks on anything but the ring buffer's readiness and the queue: a
//! slow consumer makes the queue push back, the kernel ring fills, and the kernel's drop
//! counter — not unbounded memory here — tells of the overload.
//!
//! The queue is bounded in bytes ([`QUEUE_BYTES`]), not in batches: a batch of decoded file
//! records (a 512-byte path buffer each) weighs ten times a batch of exits, and a count bound
//! let a flood park hundreds of MiB of decoded records here.
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{Interest, unix::AsyncFd},
    sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch},
};

use super::ring::{EventRing, Read};
use crate::{
    decode::{Record, decode},
    losses::{Loss, Losses},
};

/// How often the reader drains the ring without being woken: the kernel wakes it only when
/// `capture::WAKEUP_BYTES` are waiting, so this bounds the delay of a quiet event stream.
pub const DRAIN_INTERVAL: Duration = Duration::from_millis(10);

/// Largest batch handed on at once. Every stage after the reader sizes its buffers by the
/// batch (the JSON of a batch, the history's rows, the output's spare buffers kept for reuse),
/// so this is also their size: at 4096 a batch of opens was a few MB of JSON, two of them kept
/// as spares, part of the peak under load (issue 19). 1024 costs a few hundred more hand-overs
/// a second at a million events a second.
pub const MAX_BATCH: usize = 1024;

/// Decoded records waiting for the pipeline, at most ([`Record::footprint`]). Past it the
/// reader waits and the kernel ring (16 MiB by default, holding records far more compactly)
/// absorbs the excess, so a larger queue would only hold the same events in more memory.
pub const QUEUE_BYTES: usize = 4 << 20;

/// Batches waiting for the pipeline, at most (a second bound, for batches of tiny records).
pub const QUEUE_BATCHES: usize = 64;

/// A batch of decoded records, holding its room in the reader's queue until dropped.
pub struct RecordBatch {
    pub records: Vec<Record>,
    _room: OwnedSemaphorePermit,
}

/// The reader's end of the queue to the pipeline.
pub struct RecordSender {
    batches: mpsc::Sender<RecordBatch>,
    room: Arc<Semaphore>,
}

/// The byte-bounded queue between the reader and the pipeline.
pub fn record_queue() -> (RecordSender, mpsc::Receiver<RecordBatch>) {
    let (batches, receiver) = mpsc::channel(QUEUE_BATCHES);
    let room = Arc::new(Semaphore::new(QUEUE_BYTES));
    (RecordSender { batches, room }, receiver)
}

impl RecordSender {
    /// Waits for room for `bytes`, then queues `records`; gives them back when the pipeline is
    /// gone.
    async fn send(&self, records: Vec<Record>, bytes: usize) -> Result<(), Vec<Record>> {
        // A batch larger than the whole queue waits for all of it.
        let wanted = u32::try_from(bytes.min(QUEUE_BYTES)).unwrap_or(u32::MAX);
        let Ok(room) = self.room.clone().acquire_many_owned(wanted).await else {
            return Err(records);
        };
        let batch = RecordBatch {
            records,
            _room: room,
        };
        self.batches
            .send(batch)
            .await
            .map_err(|mpsc::error::SendError(batch)| batch.records)
    }
}

/// How long the final drain may take once a stop is asked for. It normally ends far sooner:
/// it takes at most one ring's worth of records (see [`run`]).
pub const STOP_DRAIN_LIMIT: Duration = Duration::from_secs(1);

/// The kernel's header in front of every ring buffer record (`BPF_RINGBUF_HDR_SZ`); records
/// are padded to 8 bytes.
const RING_RECORD_OVERHEAD: usize = 8;

/// Counters the reader keeps (read by the status line and the end-of-run summary). Records
/// that do not decode are counted in `losses` ([`Loss::DecodeError`]).
#[derive(Debug, Default)]
pub struct ReaderStats {
    pub records: AtomicU64,
    pub losses: Arc<Losses>,
    /// The final drain ran out of time ([`STOP_DRAIN_LIMIT`]) with records still in the ring.
    pub stop_drain_cut_short: AtomicBool,
}

impl ReaderStats {
    pub fn new(losses: Arc<Losses>) -> ReaderStats {
        ReaderStats {
            records: AtomicU64::new(0),
            losses,
            stop_drain_cut_short: AtomicBool::new(false),
        }
    }
}

/// Reads until `shutdown` turns true, then drains what was in the ring at that moment and
/// returns.
///
/// The final drain is bounded twice. By size: it takes at most `ring_bytes` of records, all
/// that the ring can hold when the stop is asked for, because under a sustained flood the
/// programs refill the ring as fast as it is read and "until empty" never comes (a stop then
/// waited for the flood to end). By time: at most [`STOP_DRAIN_LIMIT`], for a consumer that
/// cannot keep up.
pub async fn run(
    ring: EventRing,
    ring_bytes: u32,
    batches: RecordSender,
    mut shutdown: watch::Receiver<bool>,
    stats: Arc<ReaderStats>,
) -> std::io::Result<()> {
    // SAFETY: the EventRing owns its map fd, which stays open and unchanged for as long as the
    // AsyncFd owns the EventRing.
    let mut ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
        .map_err(std::io::Error::from)?;
    let mut tick = tokio::time::interval(DRAIN_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if !drain(ring.get_mut(), &batches, &stats).await {
                    return Ok(());
                }
            }
            guard = ring.readable_mut() => {
                let mut guard = guard?;
                let open = drain(guard.get_inner_mut(), &batches, &stats).await;
                guard.clear_ready();
                if !open {
                    return Ok(());
                }
            }
            _ = shutdown.changed() => {
                let limit = usize::try_from(ring_bytes).unwrap_or(usize::MAX);
                let finished = tokio::time::timeout(
                    STOP_DRAIN_LIMIT,
                    drain_up_to(ring.get_mut(), &batches, &stats, limit),
                )
                .await;
                if finished.is_err() {
                    stats.stop_drain_cut_short.store(true, Ordering::Relaxed);
                }
                return Ok(());
            }
        }
    }
}

/// Moves every record now in the ring into batches. Returns false when the consumer is gone.
async fn drain(ring: &mut EventRing, batches: &RecordSender, stats: &ReaderStats) -> bool {
    drain_up_to(ring, batches, stats, usize::MAX).await
}

/// [`drain`], stopping once records totalling `max_bytes` (kernel headers included) are read.
async fn drain_up_to(
    ring: &mut EventRing,
    batches: &RecordSender,
    stats: &ReaderStats,
    max_bytes: usize,
) -> bool {
    let mut batch = Vec::with_capacity(256);
    let mut batch_bytes = 0usize;
    let mut taken = 0usize;
    while taken < max_bytes {
        let (footprint, decoded) =
            match ring.read(|bytes| (ring_footprint(bytes.len()), decode(bytes))) {
                Read::Record(read) => read,
                Read::Empty => break,
                // A header the kernel never writes: the ring skipped to the producer; stop here so
                // that even a ring gone mad costs a bounded drain.
                Read::Corrupt => {
                    stats.losses.add(Loss::DecodeError, 1);
                    break;
                }
            };
        taken = taken.saturating_add(footprint);
        match decoded {
            Ok(record) => {
                batch_bytes += record.footprint();
                batch.push(record);
            }
            Err(_) => stats.losses.add(Loss::DecodeError, 1),
        }
        if batch.len() >= MAX_BATCH {
            let full = std::mem::take(&mut batch);
            if !hand_over(full, std::mem::take(&mut batch_bytes), batches, stats).await {
                return false;
            }
        }
    }
    batch.is_empty() || hand_over(batch, batch_bytes, batches, stats).await
}

/// Sends a batch on; false when the consumer is gone (a stop cut short: the batch is counted
/// as [`Loss::UnprocessedAtStop`]).
async fn hand_over(
    batch: Vec<Record>,
    bytes: usize,
    batches: &RecordSender,
    stats: &ReaderStats,
) -> bool {
    stats
        .records
        .fetch_add(batch.len() as u64, Ordering::Relaxed);
    match batches.send(batch, bytes).await {
        Ok(()) => true,
        Err(batch) => {
            stats
                .losses
                .add(Loss::UnprocessedAtStop, batch.len() as u64);
            false
        }
    }
}

/// The room a record of `len` bytes takes in the ring.
fn ring_footprint(len: usize) -> usize {
    (len + RING_RECORD_OVERHEAD).next_multiple_of(8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn footprint_counts_the_kernel_header_and_padding() {
        assert_eq!(ring_footprint(0), 8);
        assert_eq!(ring_footprint(1), 16);
        assert_eq!(ring_footprint(8), 16);
        assert_eq!(ring_footprint(100), 112);
    }
}
