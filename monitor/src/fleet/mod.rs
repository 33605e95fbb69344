//! The fleet: this machine's events on NATS JetStream, and what a hub reads back
//! (docs/fleet.md).
//!
//! ```text
//! pipeline ──Subscriber (nats_queue_full)──► exporter thread (nice 10, own runtime)
//!                                              ├─► JetStream publish, acks pipelined ─► <prefix>.<host>.<event_type>
//!                                              │                                       <prefix>.<host>.alerts
//!                                              ├─► spool/ (server away, acks failed; nats_spool_full)
//!                                              ├─► <prefix>.<host>.status every 2 s
//!                                              └─◄ <prefix>.<host>.control (request-reply, token)
//! ```
//!
//! - [`exporter`]: the front end ([`NatsCompanion`]) and its loop.
//! - [`spool`]: the bounded on-disk spool.
//! - [`control`]: control requests, applied by the controller's own actions.
//! - [`consumer`]: the other side, for a hub and for tests: hosts, live events, history,
//!   control requests.
//! - [`hub`]: hub mode, `secmon-tui hub --nats URL`: the controller's dashboard fed by
//!   [`consumer`].
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub mod consumer;
pub mod control;
pub mod exporter;
pub mod hub;
pub mod pack;
pub mod spool;

pub use exporter::NatsCompanion;

use crate::config::NatsExport;

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("[export.nats] {what} {path}: {error}")]
    File {
        what: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("[export.nats] token_file {0}: the file is empty")]
    EmptyToken(PathBuf),
    #[error("NATS: {0}")]
    Nats(String),
}

/// How to reach the server and log in (`[export.nats]`), shared by the exporter and the
/// consumer side.
#[derive(Clone, Debug, Default)]
pub struct Connection {
    pub url: String,
    pub token_file: Option<PathBuf>,
    pub credentials: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

impl Connection {
    pub fn from_config(nats: &NatsExport) -> Connection {
        Connection {
            url: nats.url.clone(),
            token_file: nats.token_file.clone(),
            credentials: nats.credentials.clone(),
            ca_file: nats.ca_file.clone(),
            client_cert: nats.cert.clone().zip(nats.key.clone()),
        }
    }

    /// A plain connection to `url`, no login (tests, a local server).
    pub fn plain(url: &str) -> Connection {
        Connection {
            url: url.to_string(),
            ..Connection::default()
        }
    }

    /// The client's options: login, TLS, and reconnecting for ever, quickly (a restarted
    /// server is found again within a second).
    pub async fn options(&self, name: &str) -> Result<async_nats::ConnectOptions, FleetError> {
        let mut options = match (&self.token_file, &self.credentials) {
            (Some(path), _) => async_nats::ConnectOptions::with_token(read_token(path)?),
            (None, Some(path)) => async_nats::ConnectOptions::with_credentials_file(path)
                .await
                .map_err(|error| FleetError::File {
                    what: "credentials",
                    path: path.clone(),
                    error,
                })?,
            (None, None) => async_nats::ConnectOptions::new(),
        };
        if let Some(ca) = &self.ca_file {
            let _ = rustls::crypto::ring::default_provider().install_default();
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        if let Some((cert, key)) = &self.client_cert {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        let said = Arc::new(Mutex::new(Said::default()));
        let url = crate::secrets::redact_url(&self.url);
        Ok(options
            .name(name)
            .event_callback(move |event| {
                let (said, url) = (said.clone(), url.clone());
                async move { tell_connection_problem(&said, &url, &event) }
            })
            .retry_on_initial_connect()
            .max_reconnects(None)
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis((100 * attempts as u64).min(1000))
            })
            .connection_timeout(Duration::from_secs(2)))
    }

    /// Connects (in the background: the client is returned at once and connects, and
    /// reconnects, by itself).
    pub async fn connect(&self, name: &str) -> Result<async_nats::Client, FleetError> {
        let options = self.options(name).await?;
        options.connect(self.url.as_str()).await.map_err(|e| {
            FleetError::Nats(format!("{}: {e}", crate::secrets::redact_url(&self.url)))
        })
    }
}

/// The last connection problem told, and when: a client retries every second, and the same
/// refusal is told again only every [`RETELL_AFTER`].
#[derive(Default)]
struct Said {
    last: Option<(String, Instant)>,
}

const RETELL_AFTER: Duration = Duration::from_secs(60);

/// Tells why the server refuses the client: a wrong token or credentials, or a TLS handshake
/// that fails (a CA that is not the server's, a client certificate the server does not take).
/// The client keeps retrying by itself, and events wait in the spool meanwhile; a server that
/// is not there is told by the exporter ("cannot be reached").
fn tell_connection_problem(said: &Mutex<Said>, url: &str, event: &async_nats::Event) {
    let why = match event {
        async_nats::Event::ClientError(async_nats::ClientError::Other(why)) => why.clone(),
        async_nats::Event::ServerError(async_nats::ServerError::AuthorizationViolation) => {
            "authorization violation".to_string()
        }
        _ => return,
    };
    let lower = why.to_lowercase();
    let hint = if lower.contains("authorization") || lower.contains("signing") {
        "the server refused the login: check the token or credentials file"
    } else if lower.contains("tls") {
        "the TLS handshake failed: check ca_file, and cert and key if the server verifies clients"
    } else {
        return;
    };
    let mut said = said.lock().unwrap_or_else(PoisonError::into_inner);
    let again = said
        .last
        .as_ref()
        .is_some_and(|(last, at)| *last == why && at.elapsed() < RETELL_AFTER);
    if again {
        return;
    }
    crate::notice::warn(format!(
        "NATS: {url}: {} ({hint}); retrying",
        crate::sanitize::for_terminal(&why)
    ));
    said.last = Some((why, Instant::now()));
}

fn read_token(path: &std::path::Path) -> Result<String, FleetError> {
    let text = std::fs::read_to_string(path).map_err(|error| FleetError::File {
        what: "token_file",
        path: path.to_path_buf(),
        error,
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(FleetError::EmptyToken(path.to_path_buf()));
    }
    Ok(token.to_string())
}

/// The subjects of one host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subjects {
    /// `<prefix>.<host>`.
    base: String,
}

impl Subjects {
    pub fn new(prefix: &str, host: &str) -> Subjects {
        Subjects {
            base: format!("{prefix}.{host}"),
        }
    }

    /// `<prefix>.<host>.<event_type>`.
    pub fn event(&self, event_type: &str) -> String {
        format!("{}.{event_type}", self.base)
    }

    /// `<prefix>.<host>.alerts`.
    pub fn alerts(&self) -> String {
        format!("{}.alerts", self.base)
    }

    /// `<prefix>.<host>.status`.
    pub fn status(&self) -> String {
        format!("{}.status", self.base)
    }

    /// `<prefix>.<host>.control`.
    pub fn control(&self) -> String {
        format!("{}.control", self.base)
    }

    /// `<prefix>.<host>.>`: everything the host publishes.
    pub fn all(&self) -> String {
        format!("{}.>", self.base)
    }
}

/// The subjects of a stream the exporter creates: `<prefix>.*.<event_type>` for every event
/// type, `<prefix>.*.alerts` and `<prefix>.*.status`. Not `<prefix>.>`: that would take
/// `<prefix>.<host>.control` too, and the server would answer control requests itself (a
/// publish ack) and store them, tokens included.
pub fn stream_subjects(prefix: &str) -> Vec<String> {
    crate::event::EventType::ALL
        .iter()
        .map(|t| t.as_str())
        .chain(["alerts", "status"])
        .map(|last| format!("{prefix}.*.{last}"))
        .collect()
}

/// Whether NATS subject pattern `pattern` (`*` one token, `>` the rest) takes `subject`.
pub fn subject_matches(pattern: &str, subject: &str) -> bool {
    let mut tokens = subject.split('.');
    for wanted in pattern.split('.') {
        if wanted == ">" {
            return tokens.next().is_some();
        }
        match tokens.next() {
            Some(token) if wanted == "*" || wanted == token => {}
            _ => return false,
        }
    }
    tokens.next().is_none()
}

/// `raw` (a hostname) as one subject token: `.`, `*`, `>`, whitespace and control characters
/// become `_`; an empty name becomes `unknown`.
pub fn host_token(raw: &str) -> String {
    let token: String = raw
        .trim()
        .chars()
        .map(|c| {
            if matches!(c, '.' | '*' | '>') || c.is_whitespace() || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    if token.is_empty() {
        "unknown".to_string()
    } else {
        token
    }
}

/// This machine's token: `[export.nats] host`, else its hostname made into a token.
pub fn host_of(nats: &NatsExport) -> String {
    nats.host
        .clone()
        .unwrap_or_else(|| host_token(&crate::controller::hostname()))
}

/// A message id: `<host>:<run>:<sequence>`, unique per event across restarts (`run` is random
/// per start); an alert's copy on `.alerts` adds `:alert`.
pub fn message_id(host: &str, run: &str, sequence: u64) -> String {
    format!("{host}:{run}:{sequence}")
}

/// The suffix of an alert copy's id.
pub const ALERT_ID_SUFFIX: &str = ":alert";

/// What a host says about itself every [`STATUS_EVERY`] on `<prefix>.<host>.status`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostStatus {
    pub host: String,
    pub version: String,
    /// When the monitor started (RFC 3339).
    pub started: String,
    pub uptime_secs: u64,
    /// Events the exporter took since start.
    pub events: u64,
    /// Over the last status interval.
    pub events_per_sec: f64,
    /// Messages acknowledged by JetStream since start.
    pub published: u64,
    /// Bytes waiting in the spool.
    pub spool_bytes: u64,
    /// Whether the exporter is connected to the server.
    pub connected: bool,
    /// Every loss reason of the monitor, by name.
    pub losses: std::collections::BTreeMap<String, u64>,
    pub lost_total: u64,
    /// Probe family → `on`, `off`, `unavailable` or `replay`.
    pub probes: std::collections::BTreeMap<String, String>,
    /// Whether the host answers control requests on `<prefix>.<host>.control`.
    pub control: bool,
}

/// How often the status is published.
pub const STATUS_EVERY: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_become_one_subject_token() {
        assert_eq!(host_token("web-1"), "web-1");
        assert_eq!(host_token("web-1.example.org"), "web-1_example_org");
        assert_eq!(host_token(" a*b>c d\te\u{1b}f "), "a_b_c_d_e_f");
        assert_eq!(host_token(""), "unknown");
        assert_eq!(host_token(" \n"), "unknown");
        for raw in ["x.y", "a b", "*", ">", "\u{0}", "é.ü"] {
            let token = host_token(raw);
            assert_eq!(
                crate::config::subject_token_problem(&token),
                None,
                "{raw:?}"
            );
        }
    }

    #[test]
    fn wildcards_match_as_nats_does() {
        assert!(subject_matches("a.>", "a.b"));
        assert!(subject_matches("a.>", "a.b.c"));
        assert!(!subject_matches("a.>", "a"));
        assert!(subject_matches("a.*.c", "a.b.c"));
        assert!(!subject_matches("a.*.c", "a.b.d"));
        assert!(!subject_matches("a.*", "a.b.c"));
        assert!(subject_matches("a.b", "a.b"));
        assert!(!subject_matches("a.b", "a.b.c"));
    }

    #[test]
    fn subjects_and_ids() {
        let s = Subjects::new("acme.secmon", "web-1");
        assert_eq!(s.event("file_open"), "acme.secmon.web-1.file_open");
        assert_eq!(s.alerts(), "acme.secmon.web-1.alerts");
        assert_eq!(s.status(), "acme.secmon.web-1.status");
        assert_eq!(s.control(), "acme.secmon.web-1.control");
        assert_eq!(s.all(), "acme.secmon.web-1.>");
        let subjects = stream_subjects("acme.secmon");
        let takes = |subject: &str| subjects.iter().any(|p| subject_matches(p, subject));
        assert!(takes("acme.secmon.web-1.file_open"));
        assert!(takes("acme.secmon.web-1.alerts"));
        assert!(takes("acme.secmon.web-1.status"));
        assert!(
            !takes("acme.secmon.web-1.control"),
            "control requests are never stored"
        );
        assert!(!takes("acme.secmon.web-1.file_open.x"));
        assert!(!takes("other.web-1.file_open"));
        assert_eq!(message_id("web-1", "ab12", 7), "web-1:ab12:7");
        assert_ne!(message_id("a", "b", 1), message_id("a", "b", 2));
    }
}
