//! Health of the registered machines, polled in the background on the controller's runtime
//! (so at its background priority): every [`POLL_INTERVAL`], each machine's `/api/v1/status`,
//! its recent alerts and its alert counts of the last hour, at most [`POLLS_AT_ONCE`]
//! machines at a time, each request under the client's timeouts. A machine that does not
//! answer is *unreachable* with the reason; it becomes reachable again at the first poll it
//! answers.
use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::Semaphore;

use super::{client, registry::Machine};
use crate::{controller::AppState, controller::hub::AlertCounts, event::Event};

/// How often every machine is asked.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);
/// Machines asked at once.
pub const POLLS_AT_ONCE: usize = 8;
/// One machine's poll (its three requests) may take this long: a machine that hangs must not
/// hold the others' next round back for long.
pub const POLL_TIMEOUT: Duration = Duration::from_secs(5);
/// Recent alerts kept per machine for the All machines view.
pub const ALERTS_KEPT: usize = 100;

/// Longest host name or version taken from a remote.
const MAX_TEXT: usize = 255;

/// `unknown` (not asked yet), `reachable` or `unreachable`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reach {
    Unknown,
    Reachable,
    Unreachable,
}

impl Reach {
    pub fn as_str(self) -> &'static str {
        match self {
            Reach::Unknown => "unknown",
            Reach::Reachable => "reachable",
            Reach::Unreachable => "unreachable",
        }
    }
}

/// What the last polls found (the figures stay from the last answer while unreachable).
#[derive(Clone, Debug, Serialize)]
pub struct Health {
    pub state: Reach,
    /// Why the last poll failed (sanitised; never the token).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub checked: Option<DateTime<Utc>>,
    pub last_seen: Option<DateTime<Utc>>,
    pub host: Option<String>,
    pub version: Option<String>,
    pub uptime_secs: Option<u64>,
    pub events_per_sec: Option<f64>,
    pub events_total: Option<u64>,
    pub lost_total: Option<u64>,
    pub alerts_last_hour: Option<AlertCounts>,
    /// The newest alerts (newest first), for the All machines view.
    #[serde(skip)]
    pub alerts: Vec<Event>,
}

impl Default for Health {
    fn default() -> Health {
        Health {
            state: Reach::Unknown,
            error: None,
            checked: None,
            last_seen: None,
            host: None,
            version: None,
            uptime_secs: None,
            events_per_sec: None,
            events_total: None,
            lost_total: None,
            alerts_last_hour: None,
            alerts: Vec::new(),
        }
    }
}

/// Polls every registered machine until the runtime stops.
pub async fn run(shared: AppState) {
    let slots = Arc::new(Semaphore::new(POLLS_AT_ONCE));
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shared.machines.added() => {}
        }
        let machines = shared.machines.list();
        shared.machines.forget_unregistered(&machines);
        let mut polls = tokio::task::JoinSet::new();
        for machine in machines {
            let shared = shared.clone();
            let slots = slots.clone();
            polls.spawn(async move {
                let Ok(_slot) = slots.acquire().await else {
                    return;
                };
                let result = tokio::time::timeout(POLL_TIMEOUT, poll(&machine))
                    .await
                    .unwrap_or_else(|_| {
                        Err(client::RemoteError::new(format!(
                            "no answer within {POLL_TIMEOUT:?}"
                        )))
                    });
                shared.machines.record(&machine.name, result);
            });
        }
        // One round at a time: a slow machine delays the next round, never piles up polls.
        while polls.join_next().await.is_some() {}
    }
}

/// What one poll found.
pub struct Polled {
    status: serde_json::Value,
    alerts: Vec<Event>,
    counts: Option<AlertCounts>,
}

async fn poll(machine: &Machine) -> Result<Polled, client::RemoteError> {
    let status = client::get_json(machine, "/api/v1/status").await?;
    let alerts = client::get_json(machine, &format!("/api/v1/alerts?limit={ALERTS_KEPT}"))
        .await
        .map(|v| {
            v["alerts"]
                .as_array()
                .map(|alerts| {
                    alerts
                        .iter()
                        .take(ALERTS_KEPT)
                        .filter_map(|a| serde_json::from_value::<Event>(a.clone()).ok())
                        .collect()
                })
                .unwrap_or_default()
        })
        .unwrap_or_default();
    let counts = client::get_json(machine, "/api/v1/alerts/counts")
        .await
        .ok()
        .and_then(|v| serde_json::from_value(v).ok());
    Ok(Polled {
        status,
        alerts,
        counts,
    })
}

impl Health {
    /// Takes in a poll's outcome.
    pub fn update(&mut self, result: Result<Polled, client::RemoteError>) {
        let now = Utc::now();
        self.checked = Some(now);
        match result {
            Ok(polled) => {
                let status = &polled.status;
                // A remote's words, shown here: escaped, and cut to a sane length.
                let text = |key: &str| {
                    status[key].as_str().map(|s| {
                        let cut: String = s.chars().take(MAX_TEXT).collect();
                        crate::sanitize::for_terminal(&cut).into_owned()
                    })
                };
                self.state = Reach::Reachable;
                self.error = None;
                self.last_seen = Some(now);
                self.host = text("host");
                self.version = text("version");
                self.uptime_secs = status["uptime_secs"].as_u64();
                self.events_per_sec = status["events_per_sec_60s"].as_f64();
                self.events_total = status["events_total"].as_u64();
                self.lost_total = status["lost_total"].as_u64();
                self.alerts_last_hour = polled.counts;
                self.alerts = polled.alerts;
            }
            Err(why) => {
                self.state = Reach::Unreachable;
                self.error = Some(why.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(host: &str) -> Result<Polled, client::RemoteError> {
        Ok(Polled {
            status: serde_json::json!({
                "host": host, "version": "9.9.9", "uptime_secs": 42,
                "events_per_sec_60s": 1.5, "events_total": 90, "lost_total": 3,
            }),
            alerts: Vec::new(),
            counts: Some(AlertCounts {
                suspicious: 2,
                malicious: 1,
            }),
        })
    }

    #[test]
    fn a_machine_that_stops_answering_is_unreachable_with_why_and_comes_back() {
        let mut health = Health::default();
        assert_eq!(health.state, Reach::Unknown);
        health.update(answered("web-1"));
        assert_eq!(health.state, Reach::Reachable);
        assert_eq!(health.version.as_deref(), Some("9.9.9"));
        assert_eq!(health.lost_total, Some(3));
        let seen = health.last_seen;
        assert!(seen.is_some());

        health.update(Err(client::RemoteError::new(
            "cannot connect: refused\u{1b}[2J",
        )));
        assert_eq!(health.state, Reach::Unreachable);
        let why = health.error.clone().unwrap_or_default();
        assert!(
            why.contains("refused") && !why.contains('\u{1b}'),
            "{why:?}"
        );
        // What it last said stays, with when.
        assert_eq!(health.last_seen, seen);
        assert_eq!(health.host.as_deref(), Some("web-1"));

        health.update(answered("web-1\u{7}"));
        assert_eq!(health.state, Reach::Reachable);
        assert_eq!(health.error, None);
        assert!(!health.host.clone().unwrap_or_default().contains('\u{7}'));
        health.update(answered(&"h".repeat(100_000)));
        assert_eq!(health.host.map(|h| h.len()), Some(MAX_TEXT));
    }
}
