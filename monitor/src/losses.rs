//! Every way an event can be lost between the kernel and the outputs, counted in one place.
//!
//! [`Losses`] holds one counter per [`Loss`] reason and is shared (`Arc`) by the stages. Stages
//! that own no counter of their own add to it directly ([`Losses::add`]: the reader's decode
//! errors, the enricher's evictions, the JSON output's queue). Counters that live elsewhere —
//! the kernel's maps, the history writer's and the webhook's statistics — are cumulative
//! totals already; they are copied in ([`Losses::observe`]) once a second and at stop, so
//! there is one source of truth for each and [`Losses::snapshot`] sees them all.
//!
//! The counts are shown in the UI header (total), the `stats` records of the JSON stream
//! (by reason) and the `secmon: stopped:` line.
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Serialize, Serializer, ser::SerializeMap};

/// Why an event (or an alert, or part of what is known about a process) was lost.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Loss {
    /// The kernel's ring buffer had no room: the record was never written (`SM_DROPS`).
    RingBufferFull,
    /// The kernel's table of syscalls between entry and exit (`SM_PENDING`) was full: the
    /// call could not be followed to its exit, so its event (if it succeeded) is missing.
    PendingTableFull,
    /// A kernel record that did not decode (wrong size or kind).
    DecodeError,
    /// The process table was full and forgot a live process: its later events lack the
    /// executable, arguments or cwd unless `/proc` still has them.
    ProcessTableEviction,
    /// The open-fd table was reset (bounded): paths of files opened before are unknown to
    /// later events naming those fds.
    FdTableReset,
    /// The history writer was behind: events not stored in the database.
    HistoryQueueFull,
    /// A database write failed (or the history was disabled): events not stored.
    HistoryWriteFailed,
    /// Events the history writer had not committed when a stop's time ran out (a locked
    /// database, a slow disk): not stored.
    HistoryUnwrittenAtStop,
    /// The webhook's queue was full: alerts not sent.
    WebhookQueueFull,
    /// Kernel records read but not yet processed when a stop's deadline passed (a backlog
    /// longer than the stop may take).
    UnprocessedAtStop,
    /// The JSON output's queue was full (stdout not keeping up): events not written.
    OutputQueueFull,
    /// Events still queued for stdout when the monitor had to stop (stdout stalled).
    OutputUnwrittenAtStop,
    /// A live view (the terminal UI) was behind and its queue full: events analysed,
    /// responded to and stored, but not shown.
    DisplayQueueFull,
    /// The web controller's queue was full (its clients' own queues are counted per client
    /// and told to each): events analysed, responded to and stored, not sent to the web.
    WebQueueFull,
    /// The recording's writer (`--record`: disk, compression) was behind: events analysed
    /// and shown, not recorded.
    RecordingQueueFull,
    /// The NATS exporter's queue was full (it could neither publish nor spool fast enough):
    /// events not published.
    NatsQueueFull,
    /// The NATS server could not be reached (or did not acknowledge) and the on-disk spool
    /// was full (`spool_max_mb`) or could not be written: events not published.
    NatsSpoolFull,
    /// An event (or a spooled message) larger than the NATS server's `max_payload`: the server
    /// can never take it, so it is not published (and not retried).
    NatsTooLarge,
}

impl Loss {
    pub const ALL: [Loss; 18] = [
        Loss::RingBufferFull,
        Loss::PendingTableFull,
        Loss::DecodeError,
        Loss::ProcessTableEviction,
        Loss::FdTableReset,
        Loss::HistoryQueueFull,
        Loss::HistoryWriteFailed,
        Loss::HistoryUnwrittenAtStop,
        Loss::WebhookQueueFull,
        Loss::UnprocessedAtStop,
        Loss::OutputQueueFull,
        Loss::OutputUnwrittenAtStop,
        Loss::DisplayQueueFull,
        Loss::WebQueueFull,
        Loss::RecordingQueueFull,
        Loss::NatsQueueFull,
        Loss::NatsSpoolFull,
        Loss::NatsTooLarge,
    ];

    /// The name used in JSON `stats` records, the stopped line and the UI.
    pub fn as_str(self) -> &'static str {
        match self {
            Loss::RingBufferFull => "ring_buffer_full",
            Loss::PendingTableFull => "pending_table_full",
            Loss::DecodeError => "decode_error",
            Loss::ProcessTableEviction => "process_table_eviction",
            Loss::FdTableReset => "fd_table_reset",
            Loss::HistoryQueueFull => "history_queue_full",
            Loss::HistoryWriteFailed => "history_write_failed",
            Loss::HistoryUnwrittenAtStop => "history_unwritten_at_stop",
            Loss::WebhookQueueFull => "webhook_queue_full",
            Loss::UnprocessedAtStop => "unprocessed_at_stop",
            Loss::OutputQueueFull => "output_queue_full",
            Loss::OutputUnwrittenAtStop => "output_unwritten_at_stop",
            Loss::DisplayQueueFull => "display_queue_full",
            Loss::WebQueueFull => "web_queue_full",
            Loss::RecordingQueueFull => "recording_queue_full",
            Loss::NatsQueueFull => "nats_queue_full",
            Loss::NatsSpoolFull => "nats_spool_full",
            Loss::NatsTooLarge => "nats_too_large",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for Loss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The shared counters (see the module documentation).
#[derive(Debug, Default)]
pub struct Losses {
    counters: [AtomicU64; Loss::ALL.len()],
}

impl Losses {
    pub fn new() -> Losses {
        Losses::default()
    }

    /// `n` more losses of `reason`.
    pub fn add(&self, reason: Loss, n: u64) {
        if n > 0 {
            self.counters[reason.index()].fetch_add(n, Ordering::Relaxed);
        }
    }

    /// The source of `reason` has counted `total` since start: the counter never goes back
    /// (a source read twice, or read late, cannot undo what was shown).
    pub fn observe(&self, reason: Loss, total: u64) {
        self.counters[reason.index()].fetch_max(total, Ordering::Relaxed);
    }

    pub fn get(&self, reason: Loss) -> u64 {
        self.counters[reason.index()].load(Ordering::Relaxed)
    }

    pub fn snapshot(&self) -> LossCounts {
        let mut counts = LossCounts::default();
        for reason in Loss::ALL {
            counts.0[reason.index()] = self.get(reason);
        }
        counts
    }
}

/// The counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LossCounts([u64; Loss::ALL.len()]);

impl LossCounts {
    pub fn get(&self, reason: Loss) -> u64 {
        self.0[reason.index()]
    }

    pub fn total(&self) -> u64 {
        self.0.iter().fold(0, |sum, n| sum.saturating_add(*n))
    }

    /// The reasons with a count, in [`Loss::ALL`] order.
    pub fn nonzero(&self) -> impl Iterator<Item = (Loss, u64)> + '_ {
        Loss::ALL
            .into_iter()
            .map(|r| (r, self.get(r)))
            .filter(|(_, n)| *n > 0)
    }

    /// `none`, or `ring_buffer_full 12, output_queue_full 3`.
    pub fn describe(&self) -> String {
        let parts: Vec<String> = self
            .nonzero()
            .map(|(reason, n)| format!("{reason} {n}"))
            .collect();
        if parts.is_empty() {
            "none".to_string()
        } else {
            parts.join(", ")
        }
    }
}

/// Every reason, zero or not, so a consumer never has to guess a missing key.
impl Serialize for LossCounts {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(Loss::ALL.len()))?;
        for reason in Loss::ALL {
            map.serialize_entry(reason.as_str(), &self.get(reason))?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_its_own_counter_and_name() {
        let losses = Losses::new();
        for (i, reason) in Loss::ALL.into_iter().enumerate() {
            assert_eq!(reason.index(), i, "Loss::ALL is in declaration order");
            losses.add(reason, i as u64 + 1);
        }
        let counts = losses.snapshot();
        for (i, reason) in Loss::ALL.into_iter().enumerate() {
            assert_eq!(counts.get(reason), i as u64 + 1, "{reason}");
        }
        let names: std::collections::HashSet<&str> = Loss::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), Loss::ALL.len());
        assert_eq!(counts.total(), (1..=Loss::ALL.len() as u64).sum::<u64>());
    }

    #[test]
    fn observed_totals_never_go_back() {
        let losses = Losses::new();
        losses.observe(Loss::RingBufferFull, 10);
        losses.observe(Loss::RingBufferFull, 4);
        assert_eq!(losses.get(Loss::RingBufferFull), 10);
        losses.observe(Loss::RingBufferFull, 12);
        assert_eq!(losses.get(Loss::RingBufferFull), 12);
    }

    #[test]
    fn serialises_every_reason_and_describes_only_counted_ones() {
        let losses = Losses::new();
        assert_eq!(losses.snapshot().describe(), "none");
        losses.add(Loss::OutputQueueFull, 3);
        losses.add(Loss::RingBufferFull, 2);
        let counts = losses.snapshot();
        assert_eq!(counts.describe(), "ring_buffer_full 2, output_queue_full 3");
        let json = serde_json::to_value(counts).expect("serialise");
        let object = json.as_object().expect("an object");
        assert_eq!(object.len(), Loss::ALL.len());
        assert_eq!(json["output_queue_full"], 3);
        assert_eq!(json["pending_table_full"], 0);
    }
}
