//! The four sections of the file and their defaults. Each key is read through its checked type
//! ([`super::value`]), which holds its range and the wording of its errors.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::value::{
    DeniesPerMinute, DenyTtlSecs, Directory, EventsPerMessage, FilePath, Flag, HeaderLine,
    HostToken, ListenAddr, LogLevel, Mebibytes, NameList, NatsUrl, Program, RetentionDays,
    RuleName, SpoolMebibytes, StopGraceSecs, StreamAgeHours, StreamName, SubjectPrefix, Threshold,
    WebOrigin, WebhookUrl, via, via_some,
};
use crate::event::{Family, Severity};

/// `[monitoring]`: probe families, switched on and off as a unit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Monitoring {
    /// Process execution, fork, exit, ptrace and privilege changes.
    #[serde(deserialize_with = "via::<Flag, _, _>")]
    pub enable_process: bool,
    /// Connections, accepts, listens, UDP traffic and closes.
    #[serde(deserialize_with = "via::<Flag, _, _>")]
    pub enable_network: bool,
    /// File opens, writes, deletes, renames, chmods and links.
    #[serde(deserialize_with = "via::<Flag, _, _>")]
    pub enable_filesystem: bool,
    /// BPF program loads and kernel module loads.
    #[serde(deserialize_with = "via::<Flag, _, _>")]
    pub enable_kernel: bool,
}

impl Default for Monitoring {
    fn default() -> Self {
        Monitoring {
            enable_process: true,
            enable_network: true,
            enable_filesystem: true,
            enable_kernel: true,
        }
    }
}

impl Monitoring {
    /// Whether the probes of `family` are switched on.
    pub fn is_enabled(&self, family: Family) -> bool {
        match family {
            Family::Process => self.enable_process,
            Family::File => self.enable_filesystem,
            Family::Network => self.enable_network,
            Family::Kernel => self.enable_kernel,
        }
    }

    /// The enabled probe families, in [`Family::ALL`] order.
    pub fn enabled_families(&self) -> Vec<Family> {
        Family::ALL
            .into_iter()
            .filter(|&family| self.is_enabled(family))
            .collect()
    }
}

/// `[threat_detection]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ThreatDetection {
    /// Heuristic detections on top of the rules (off by default: see config/secmon.toml).
    #[serde(deserialize_with = "via::<Flag, _, _>")]
    pub enable_heuristics: bool,
    /// Minimum confidence, in `[0, 1]`, a detection needs to be reported.
    #[serde(deserialize_with = "via::<Threshold, _, _>")]
    pub confidence_threshold: f64,
    /// Extra rule directories, read in addition to the built-in rules.
    #[serde(deserialize_with = "via::<NameList<Directory>, _, _>")]
    pub rules_dirs: Vec<PathBuf>,
}

impl Default for ThreatDetection {
    fn default() -> Self {
        ThreatDetection {
            enable_heuristics: false,
            confidence_threshold: 0.6,
            rules_dirs: Vec::new(),
        }
    }
}

/// `[response]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Response {
    /// Raise alerts (UI, webhook) for events at or above `log_level`.
    #[serde(deserialize_with = "via::<Flag, _, _>")]
    pub enable_alerts: bool,
    /// An `http://` or `https://` URL alerts are sent to (HTTP POST); `None`: no webhook.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "via_some::<WebhookUrl, _, _>"
    )]
    pub alert_webhook: Option<String>,
    /// One HTTP header sent with every webhook POST, `"Name: value"` (e.g. `"Authorization:
    /// Bearer …"`): the webhook's secret, kept out of the URL (URLs end up in proxies' logs).
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "via_some::<HeaderLine, _, _>"
    )]
    pub webhook_header: Option<String>,
    /// A file holding that header line instead (read at start; as root it must be root's and
    /// readable by root only), so the secret is not in the config file at all.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "via_some::<FilePath, _, _>"
    )]
    pub webhook_header_file: Option<PathBuf>,
    /// The least severity an event needs to be logged and alerted on.
    #[serde(deserialize_with = "via::<LogLevel, _, _>")]
    pub log_level: Severity,
    /// A file events at or above `log_level` are appended to; `None`: no log file.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "via_some::<FilePath, _, _>"
    )]
    pub log_file: Option<PathBuf>,
    /// A file alerts and every enforcement record (block, unblock, expiry) are appended to;
    /// `None`: none (real blocks are still reported on stderr).
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "via_some::<FilePath, _, _>"
    )]
    pub alert_log: Option<PathBuf>,
    /// `log_file` and `alert_log` are rotated when they would grow past this many MiB
    /// (0: never rotated).
    #[serde(deserialize_with = "via::<Mebibytes, _, _>")]
    pub log_max_size_mb: u64,
    /// Real enforcement for rules with `action = "block"` (kill at exec, refuse connect).
    /// Off: such rules are simulated ("would block").
    #[serde(deserialize_with = "via::<Flag, _, _>")]
    pub enforce: bool,
    /// Programs (names, or absolute paths) that are never blocked, in addition to the built-in
    /// protected set (sshd and its helpers, login/su/sudo/doas, every shell in /etc/shells,
    /// tmux/screen/zellij, the init system, PID 1's program and secmon), which it cannot shrink.
    #[serde(deserialize_with = "via::<NameList<Program>, _, _>")]
    pub allowlist: Vec<String>,
    /// Rules whose `block` action may deny a program in the system directories (/usr, /bin,
    /// /sbin, /lib…). Other rules deny only programs outside them, and destinations.
    #[serde(deserialize_with = "via::<NameList<RuleName>, _, _>")]
    pub system_binary_rules: Vec<String>,
    /// How many deny entries rules may add a minute (0: none; operators' entries are not
    /// limited).
    #[serde(deserialize_with = "via::<DeniesPerMinute, _, _>")]
    pub rule_denies_per_minute: u32,
    /// How long a deny entry made by a rule lasts, in seconds (0: until removed or the monitor
    /// exits).
    #[serde(deserialize_with = "via::<DenyTtlSecs, _, _>")]
    pub deny_ttl_secs: u64,
    /// The Unix socket `secmon-tui block list|add|remove` talks to (root only, mode 0600);
    /// opened only while `enforce` is on.
    #[serde(deserialize_with = "via::<FilePath, _, _>")]
    pub control_socket: PathBuf,
    /// Also send each alert to the local syslog (journald, rsyslog) through `syslog_socket`.
    #[serde(deserialize_with = "via::<Flag, _, _>")]
    pub syslog: bool,
    /// The syslog datagram socket.
    #[serde(deserialize_with = "via::<FilePath, _, _>")]
    pub syslog_socket: PathBuf,
}

/// Where the local syslog daemon listens.
pub const DEFAULT_SYSLOG_SOCKET: &str = "/dev/log";

/// Where the control socket lives by default.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/secmon/control.sock";
/// The largest `deny_ttl_secs` accepted (one year); also the largest `--ttl` and control
/// socket `ttl_secs`.
pub const MAX_DENY_TTL_SECS: u64 = 365 * 24 * 3600;
/// The largest `rule_denies_per_minute` accepted.
pub const MAX_RULE_DENIES_PER_MINUTE: u32 = 600;

impl Default for Response {
    fn default() -> Self {
        Response {
            enable_alerts: true,
            alert_webhook: None,
            webhook_header: None,
            webhook_header_file: None,
            log_level: Severity::Suspicious,
            log_file: None,
            alert_log: None,
            log_max_size_mb: 64,
            enforce: false,
            allowlist: vec!["sshd".to_string()],
            system_binary_rules: Vec::new(),
            rule_denies_per_minute: 30,
            deny_ttl_secs: 3600,
            control_socket: PathBuf::from(DEFAULT_CONTROL_SOCKET),
            syslog: false,
            syslog_socket: PathBuf::from(DEFAULT_SYSLOG_SOCKET),
        }
    }
}

/// Where the history database lives by default.
pub const DEFAULT_HISTORY_PATH: &str = "/var/lib/secmon/events.db";
/// The largest `retention_days` accepted (100 years).
pub const MAX_RETENTION_DAYS: u32 = 36_500;
/// The largest `max_size_mb` accepted (16 TiB).
pub const MAX_HISTORY_MB: u64 = 16 * 1024 * 1024;

/// `[storage]`: the event history, an SQLite database written in the background.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Storage {
    /// Store every event (with its analysis and response) in the history database.
    #[serde(deserialize_with = "via::<Flag, _, _>")]
    pub enabled: bool,
    /// The database file; its directory is created `0700` and the file `0600`.
    #[serde(deserialize_with = "via::<FilePath, _, _>")]
    pub path: PathBuf,
    /// Events older than this many days are deleted (0: kept forever).
    #[serde(deserialize_with = "via::<RetentionDays, _, _>")]
    pub retention_days: u32,
    /// The oldest events are deleted when the database holds more than this many MiB
    /// (0: no limit).
    #[serde(deserialize_with = "via::<Mebibytes, _, _>")]
    pub max_size_mb: u64,
}

impl Default for Storage {
    fn default() -> Self {
        Storage {
            enabled: true,
            path: PathBuf::from(DEFAULT_HISTORY_PATH),
            retention_days: 30,
            max_size_mb: 1024,
        }
    }
}

/// The controller's address by default: loopback only, the project's port.
pub const DEFAULT_CONTROLLER_LISTEN: &str = "127.0.0.1:9988";
/// Where the controller keeps its access token by default (created `0600` on first start).
pub const DEFAULT_CONTROLLER_TOKEN: &str = "/var/lib/secmon/controller.token";
/// The registered machines' file, by default: this name beside the token file.
pub const DEFAULT_MACHINES_FILE_NAME: &str = "machines.json";
/// Where the controller writes what its clients changed, by default.
pub const DEFAULT_CONTROLLER_AUDIT: &str = "/var/log/secmon/controller-audit.log";

/// `[controller]`: the HTTP/WebSocket API and the web dashboard (`secmon-tui serve`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Controller {
    /// Serve the controller beside the terminal UI or `--json` (`secmon-tui serve` always does).
    #[serde(deserialize_with = "via::<Flag, _, _>")]
    pub enabled: bool,
    /// Address and port; anything but loopback needs `tls_cert` and `tls_key`.
    #[serde(deserialize_with = "via::<ListenAddr, _, _>")]
    pub listen: std::net::SocketAddr,
    /// PEM certificate chain for HTTPS.
    #[serde(
        deserialize_with = "via_some::<FilePath, _, _>",
        skip_serializing_if = "Option::is_none"
    )]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for HTTPS.
    #[serde(
        deserialize_with = "via_some::<FilePath, _, _>",
        skip_serializing_if = "Option::is_none"
    )]
    pub tls_key: Option<PathBuf>,
    /// The access token's file (created with a new random token if missing).
    #[serde(deserialize_with = "via::<FilePath, _, _>")]
    pub token_file: PathBuf,
    /// Web origins besides the controller's own whose pages may change state (CSRF check).
    #[serde(deserialize_with = "via::<NameList<WebOrigin>, _, _>")]
    pub allowed_origins: Vec<String>,
    /// Every state change made through the controller, one JSON object per line.
    #[serde(deserialize_with = "via::<FilePath, _, _>")]
    pub audit_log: PathBuf,
    /// The other machines' controllers registered on the Machines page, with their tokens
    /// (root only; default: `machines.json` beside `token_file`).
    #[serde(
        deserialize_with = "via_some::<FilePath, _, _>",
        skip_serializing_if = "Option::is_none"
    )]
    pub machines_file: Option<PathBuf>,
}

impl Default for Controller {
    fn default() -> Self {
        Controller {
            enabled: false,
            listen: DEFAULT_CONTROLLER_LISTEN
                .parse()
                .unwrap_or(std::net::SocketAddr::from(([127, 0, 0, 1], 9988))),
            tls_cert: None,
            tls_key: None,
            token_file: PathBuf::from(DEFAULT_CONTROLLER_TOKEN),
            allowed_origins: Vec::new(),
            audit_log: PathBuf::from(DEFAULT_CONTROLLER_AUDIT),
            machines_file: None,
        }
    }
}

/// `[export]`: where events go besides this machine's own front ends.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Export {
    /// `[export.nats]`: publishing to NATS JetStream (docs/fleet.md).
    #[serde(deserialize_with = "super::value::section")]
    pub nats: NatsExport,
}

/// Where the NATS spool lives by default.
pub const DEFAULT_NATS_SPOOL: &str = "/var/lib/secmon/nats-spool";
/// The largest `spool_max_mb` accepted (1 TiB).
pub const MAX_SPOOL_MB: u64 = 1024 * 1024;
/// The largest `stream_max_age_hours` accepted (ten years).
pub const MAX_STREAM_AGE_HOURS: u64 = 10 * 365 * 24;
/// `[export.nats] stop_grace_secs` at most: systemd's default stop timeout is 90 s.
pub const MAX_STOP_GRACE_SECS: u64 = 60;
/// `[export.nats] events_per_message` by default (docs/benchmarks.md, "NATS export: several
/// events per message").
pub const DEFAULT_EVENTS_PER_MESSAGE: u64 = 64;
/// `[export.nats] events_per_message` at most (a message stays well under the server's
/// `max_payload` of 1 MiB at ~700 bytes an event; the exporter splits before it anyway).
pub const MAX_EVENTS_PER_MESSAGE: u64 = 1024;

/// `[export.nats]`: every analysed event published to NATS JetStream as
/// `<subject_prefix>.<host>.<event_type>` (alerts also to `.alerts`), with a bounded on-disk
/// spool for when the server cannot be reached.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsExport {
    #[serde(deserialize_with = "via::<Flag, _, _>")]
    pub enabled: bool,
    /// `nats://host:port` or `tls://host:port` (several separated by commas: a cluster).
    #[serde(deserialize_with = "via::<NatsUrl, _, _>")]
    pub url: String,
    /// A file holding the server's auth token (root only).
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "via_some::<FilePath, _, _>"
    )]
    pub token_file: Option<PathBuf>,
    /// A NATS `.creds` file (user JWT and NKey seed; root only).
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "via_some::<FilePath, _, _>"
    )]
    pub credentials: Option<PathBuf>,
    /// PEM CA certificate(s) the server's certificate is checked against (turns TLS on).
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "via_some::<FilePath, _, _>"
    )]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate, for servers that verify clients (with `key`).
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "via_some::<FilePath, _, _>"
    )]
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "via_some::<FilePath, _, _>"
    )]
    pub key: Option<PathBuf>,
    /// The first tokens of every subject (`secmon`, or dotted: `acme.secmon`).
    #[serde(deserialize_with = "via::<SubjectPrefix, _, _>")]
    pub subject_prefix: String,
    /// The JetStream stream (created with subjects `<subject_prefix>.>` when missing).
    #[serde(deserialize_with = "via::<StreamName, _, _>")]
    pub stream: String,
    /// This machine's name in subjects; `None`: the hostname, made into one subject token.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "via_some::<HostToken, _, _>"
    )]
    pub host: Option<String>,
    /// Where events wait while the server cannot be reached (created `0700`).
    #[serde(deserialize_with = "via::<FilePath, _, _>")]
    pub spool_dir: PathBuf,
    /// The spool's bound in MiB; what does not fit is counted as lost (`nats_spool_full`).
    #[serde(deserialize_with = "via::<SpoolMebibytes, _, _>")]
    pub spool_max_mb: u64,
    /// The stream's age limit when the exporter creates it, in hours (0: none).
    #[serde(deserialize_with = "via::<StreamAgeHours, _, _>")]
    pub stream_max_age_hours: u64,
    /// The stream's size limit when the exporter creates it, in MiB (0: none).
    #[serde(deserialize_with = "via::<Mebibytes, _, _>")]
    pub stream_max_mb: u64,
    /// At stop, how long to wait for the server to acknowledge what was sent and to take the
    /// spool, in seconds; what is left then stays in the spool for the next start.
    #[serde(deserialize_with = "via::<StopGraceSecs, _, _>")]
    pub stop_grace_secs: u64,
    /// Up to how many events of one subject go in one message (JSON lines, header
    /// `Secmon-Events`); 0 or 1: one event per message.
    #[serde(deserialize_with = "via::<EventsPerMessage, _, _>")]
    pub events_per_message: u64,
}

impl Default for NatsExport {
    fn default() -> Self {
        NatsExport {
            enabled: false,
            url: "nats://127.0.0.1:4222".to_string(),
            token_file: None,
            credentials: None,
            ca_file: None,
            cert: None,
            key: None,
            subject_prefix: "secmon".to_string(),
            stream: "SECMON".to_string(),
            host: None,
            spool_dir: PathBuf::from(DEFAULT_NATS_SPOOL),
            spool_max_mb: 256,
            stream_max_age_hours: 7 * 24,
            stream_max_mb: 10 * 1024,
            stop_grace_secs: 5,
            events_per_message: DEFAULT_EVENTS_PER_MESSAGE,
        }
    }
}
