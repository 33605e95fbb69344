//! The syslog sink: each alert as one datagram to the local syslog socket (`/dev/log`, which
//! journald and rsyslog both serve), `<PRI>secmon[PID]: {json}`, facility `authpriv`, level
//! by severity (malicious: `alert`, suspicious: `warning`, blocks: `notice` at least).
//!
//! Never blocking: the socket is non-blocking, a full socket buffer drops the alert (counted),
//! and a vanished daemon is reconnected to at most once a second.
use std::borrow::Cow;
use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::event::{Event, Severity};

/// `LOG_AUTHPRIV`: security messages, kept from unprivileged readers by most setups.
const FACILITY_AUTHPRIV: u8 = 10;
const LOG_ALERT: u8 = 1;
const LOG_WARNING: u8 = 4;
const LOG_NOTICE: u8 = 5;
/// Longest JSON sent whole; a longer event is sent as [`summary`] (syslog daemons cut long
/// datagrams, and a cut JSON object is no JSON at all).
pub const MAX_MESSAGE: usize = 16 * 1024;
const RECONNECT_EVERY: Duration = Duration::from_secs(1);

/// Counts of what the sink did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyslogStats {
    pub sent: u64,
    /// Not sent: the socket buffer was full, or the daemon was gone.
    pub dropped: u64,
}

pub struct Syslog {
    path: PathBuf,
    socket: Option<UnixDatagram>,
    last_attempt: Instant,
    pid: u32,
    pub stats: SyslogStats,
}

fn connect(path: &Path) -> io::Result<UnixDatagram> {
    let socket = UnixDatagram::unbound()?;
    socket.connect(path)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// The priority of an alert: `authpriv` and a level from the severity.
pub fn priority(severity: Severity) -> u8 {
    let level = match severity {
        Severity::Malicious => LOG_ALERT,
        Severity::Suspicious => LOG_WARNING,
        Severity::Benign => LOG_NOTICE,
    };
    FACILITY_AUTHPRIV * 8 + level
}

/// `<PRI>secmon[PID]: message`.
pub fn format_message(priority: u8, pid: u32, message: &str) -> String {
    format!("<{priority}>secmon[{pid}]: {message}")
}

/// The fields that identify an event and its verdict, for events whose JSON is too long to
/// send whole (`"truncated": true`; the full event is in the alert log and the history).
pub fn summary(event: &Event) -> String {
    let cut = |text: &str| -> String { text.chars().take(1024).collect() };
    serde_json::json!({
        "truncated": true,
        "timestamp": event.timestamp,
        "event_type": event.event_type,
        "pid": event.pid,
        "process": cut(&event.process),
        "exe": cut(&event.exe),
        "file_path": event.file_path.as_deref().map(cut),
        "target_ip": event.target_ip,
        "target_port": event.target_port,
        "analysis": {
            "label": cut(&event.analysis.label),
            "severity": event.analysis.severity,
            "risk_score": event.analysis.risk_score,
            "rules": event.analysis.rules.iter().take(8).map(|r| cut(r)).collect::<Vec<_>>(),
        },
    })
    .to_string()
}

impl Syslog {
    /// Connects to the socket at `path`; the error says why (no daemon listening, ...).
    pub fn connect(path: &Path) -> io::Result<Syslog> {
        Ok(Syslog {
            path: path.to_path_buf(),
            socket: Some(connect(path)?),
            last_attempt: Instant::now(),
            pid: std::process::id(),
            stats: SyslogStats::default(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sends one alert (`json` is `event` serialised); false when it was dropped.
    pub fn send(&mut self, event: &Event, json: &str) -> bool {
        if self.socket.is_none() && self.last_attempt.elapsed() >= RECONNECT_EVERY {
            self.last_attempt = Instant::now();
            self.socket = connect(&self.path).ok();
        }
        let Some(socket) = &self.socket else {
            self.stats.dropped += 1;
            return false;
        };
        let message = if json.len() <= MAX_MESSAGE {
            Cow::Borrowed(json)
        } else {
            Cow::Owned(summary(event))
        };
        let line = format_message(priority(event.analysis.severity), self.pid, &message);
        match socket.send(line.as_bytes()) {
            Ok(_) => {
                self.stats.sent += 1;
                true
            }
            Err(e) => {
                if e.kind() != io::ErrorKind::WouldBlock {
                    // The daemon restarted or went away: reconnect later.
                    self.socket = None;
                    self.last_attempt = Instant::now();
                }
                self.stats.dropped += 1;
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(severity: Severity) -> Event {
        let mut event = Event::new(
            crate::event::EventType::ProcessExec,
            chrono::DateTime::UNIX_EPOCH,
        );
        event.analysis.severity = severity;
        event
    }

    #[test]
    fn priorities_and_format() {
        assert_eq!(priority(Severity::Malicious), 81);
        assert_eq!(priority(Severity::Suspicious), 84);
        assert_eq!(priority(Severity::Benign), 85);
        assert_eq!(format_message(84, 7, "{}"), "<84>secmon[7]: {}");
    }

    #[test]
    fn a_long_event_is_sent_as_valid_json() {
        let mut long = event(Severity::Malicious);
        long.cmdline = "é".repeat(MAX_MESSAGE).into();
        long.exe = "x".repeat(5000).into();
        let json = serde_json::to_string(&long).expect("json");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log.sock");
        let server = UnixDatagram::bind(&path).expect("bind");
        let mut sink = Syslog::connect(&path).expect("connect");
        assert!(sink.send(&long, &json));
        let mut buf = vec![0u8; 64 * 1024];
        let n = server.recv(&mut buf).expect("recv");
        let got = std::str::from_utf8(&buf[..n]).expect("utf8");
        let message = got.split_once("]: ").map(|(_, m)| m).expect("message");
        let value: serde_json::Value = serde_json::from_str(message).expect("valid JSON");
        assert_eq!(value["truncated"], true);
        assert_eq!(value["exe"].as_str().map(str::len), Some(1024));
        assert_eq!(value["analysis"]["severity"], "malicious");
    }

    #[test]
    fn sends_datagrams_and_counts_a_vanished_daemon() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log.sock");
        let server = UnixDatagram::bind(&path).expect("bind");
        let mut sink = Syslog::connect(&path).expect("connect");
        assert!(sink.send(&event(Severity::Malicious), "{\"x\":1}"));
        let mut buf = [0u8; 256];
        let n = server.recv(&mut buf).expect("recv");
        let got = std::str::from_utf8(&buf[..n]).expect("utf8");
        assert!(
            got.starts_with("<81>secmon[") && got.ends_with("]: {\"x\":1}"),
            "{got}"
        );
        drop(server);
        std::fs::remove_file(&path).expect("remove the socket");
        assert!(!sink.send(&event(Severity::Suspicious), "{}"));
        assert_eq!(
            sink.stats,
            SyslogStats {
                sent: 1,
                dropped: 1
            }
        );
        assert!(Syslog::connect(&path).is_err(), "nothing listens any more");
    }
}
