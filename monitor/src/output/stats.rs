//! The `stats` record of the JSON stream: what was written and what was lost so far.
//!
//! Written about once a second when a count changed, and once more (`"final": true`) when the
//! monitor stops. Event lines have no `record` field; these have `"record": "stats"`. See
//! docs/json-schema.md.
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::losses::LossCounts;

#[derive(Clone, Debug, Serialize)]
pub struct StatsRecord {
    /// Always `"stats"`.
    pub record: &'static str,
    pub timestamp: DateTime<Utc>,
    /// Seconds since the monitor started.
    pub uptime_secs: f64,
    /// Events before this record in the stream (since start).
    pub events: u64,
    /// Records read from the kernel's ring buffer since start.
    pub kernel_records: u64,
    /// The sum of `losses`.
    pub lost: u64,
    /// Every loss reason with its count since start (zero included).
    pub losses: LossCounts,
    /// True for the last record, written when the monitor stops.
    #[serde(rename = "final")]
    pub last: bool,
}

impl StatsRecord {
    pub fn new(
        events: u64,
        kernel_records: u64,
        losses: LossCounts,
        uptime: Duration,
        last: bool,
    ) -> StatsRecord {
        StatsRecord {
            record: "stats",
            timestamp: Utc::now(),
            uptime_secs: (uptime.as_secs_f64() * 1000.0).round() / 1000.0,
            events,
            kernel_records,
            lost: losses.total(),
            losses,
            last,
        }
    }
}

/// Whether a parsed JSON line is a `stats` record rather than an event (replaying `--json`
/// output skips them).
pub fn is_stats_record(value: &serde_json::Value) -> bool {
    value.get("record").and_then(serde_json::Value::as_str) == Some("stats")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::losses::{Loss, Losses};

    #[test]
    fn serialises_as_documented() {
        let losses = Losses::new();
        losses.add(Loss::OutputQueueFull, 4);
        let record = StatsRecord::new(10, 12, losses.snapshot(), Duration::from_millis(1500), true);
        let v = serde_json::to_value(&record).expect("json");
        assert!(is_stats_record(&v));
        assert_eq!(v["events"], 10);
        assert_eq!(v["kernel_records"], 12);
        assert_eq!(v["lost"], 4);
        assert_eq!(v["losses"]["output_queue_full"], 4);
        assert_eq!(v["final"], true);
        assert_eq!(v["uptime_secs"], 1.5);
        assert!(v.get("event_type").is_none(), "never mistaken for an event");
    }
}
