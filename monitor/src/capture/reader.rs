//! Stage 2: the one async task that drains the ring buffer, decodes records and hands them on
//! in batches. It never blocks on anything but the ring buffer's readiness and the channel: a
//! slow consumer makes the channel push back, the kernel ring fills, and the kernel's drop
//! counter — not unbounded memory here — tells of the overload.
use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use aya::maps::{MapData, RingBuf};
use tokio::{
    io::{Interest, unix::AsyncFd},
    sync::{mpsc, watch},
};

use crate::{
    decode::{Record, decode},
    losses::{Loss, Losses},
};

/// How often the reader drains the ring without being woken: the kernel wakes it only when
/// `capture::WAKEUP_BYTES` are waiting, so this bounds the delay of a quiet event stream.
pub const DRAIN_INTERVAL: std::time::Duration = std::time::Duration::from_millis(10);

/// Largest batch handed on at once.
pub const MAX_BATCH: usize = 4096;

/// Counters the reader keeps (read by the status line and the end-of-run summary). Records
/// that do not decode are counted in `losses` ([`Loss::DecodeError`]).
#[derive(Debug, Default)]
pub struct ReaderStats {
    pub records: AtomicU64,
    pub losses: Arc<Losses>,
}

impl ReaderStats {
    pub fn new(losses: Arc<Losses>) -> ReaderStats {
        ReaderStats {
            records: AtomicU64::new(0),
            losses,
        }
    }
}

/// Reads until `shutdown` turns true, then drains what is left in the ring and returns.
pub async fn run(
    ring: RingBuf<MapData>,
    batches: mpsc::Sender<Vec<Record>>,
    mut shutdown: watch::Receiver<bool>,
    stats: Arc<ReaderStats>,
) -> std::io::Result<()> {
    // SAFETY: the RingBuf owns its map fd, which stays open and unchanged for as long as the
    // AsyncFd owns the RingBuf.
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
                drain(ring.get_mut(), &batches, &stats).await;
                return Ok(());
            }
        }
    }
}

/// Moves every record now in the ring into batches. Returns false when the consumer is gone.
async fn drain(
    ring: &mut RingBuf<MapData>,
    batches: &mpsc::Sender<Vec<Record>>,
    stats: &ReaderStats,
) -> bool {
    let mut batch = Vec::with_capacity(256);
    loop {
        let Some(item) = ring.next() else { break };
        match decode(&item) {
            Ok(record) => batch.push(record),
            Err(_) => stats.losses.add(Loss::DecodeError, 1),
        }
        drop(item);
        if batch.len() >= MAX_BATCH && !hand_over(std::mem::take(&mut batch), batches, stats).await
        {
            return false;
        }
    }
    batch.is_empty() || hand_over(batch, batches, stats).await
}

/// Sends a batch on; false when the consumer is gone (a stop cut short: the batch is counted
/// as [`Loss::UnprocessedAtStop`]).
async fn hand_over(
    batch: Vec<Record>,
    batches: &mpsc::Sender<Vec<Record>>,
    stats: &ReaderStats,
) -> bool {
    stats
        .records
        .fetch_add(batch.len() as u64, Ordering::Relaxed);
    match batches.send(batch).await {
        Ok(()) => true,
        Err(mpsc::error::SendError(batch)) => {
            stats
                .losses
                .add(Loss::UnprocessedAtStop, batch.len() as u64);
            false
        }
    }
}
