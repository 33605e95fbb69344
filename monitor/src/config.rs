//! The configuration file, `secmon.toml` (documented for users in docs/config.md).
//!
//! Lookup ([`Config::load_or_default`]): an explicitly given path; else
//! [`SYSTEM_CONFIG_PATH`] if it exists; else the built-in default, which is the shipped
//! `config/secmon.toml` compiled in.
//!
//! Every section and key is optional (defaults fill in), but unknown sections and keys, wrong
//! types and out-of-range values are errors, and every such error names the file, the line and
//! column, and the key. Parsing is done in two passes over the same parse tree:
//!
//! 1. a structural check over the spanned TOML tree ([`toml::de::DeTable`]), which gives precise
//!    positions and friendlier messages than serde's (unknown keys list the keys the section
//!    accepts, wrong types say what was expected and what was found);
//! 2. serde deserialisation into [`Config`] (with `deny_unknown_fields` as a backstop), followed
//!    by the numeric range check, positioned by looking the key up in the tree.

use std::borrow::Cow;
use std::fmt;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::event::{Family, Severity};

/// Where the system-wide configuration lives.
pub const SYSTEM_CONFIG_PATH: &str = "/etc/secmon/secmon.toml";

/// The shipped default configuration (`config/secmon.toml`), used when no file is found.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("../../config/secmon.toml");

/// The name errors in the built-in default would carry (there are none: a unit test parses it).
pub const BUILT_IN_ORIGIN: &str = "<built-in secmon.toml>";

/// The whole configuration file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[monitoring]`: which probe families to attach.
    pub monitoring: Monitoring,
    /// `[threat_detection]`: how events are analysed.
    pub threat_detection: ThreatDetection,
    /// `[response]`: what happens with what the analysis finds.
    pub response: Response,
    /// `[storage]`: the event history (SQLite).
    pub storage: Storage,
}

/// `[monitoring]`: probe families, switched on and off as a unit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Monitoring {
    /// Process execution, fork, exit, ptrace and privilege changes.
    pub enable_process: bool,
    /// Connections, accepts, listens, UDP traffic and closes.
    pub enable_network: bool,
    /// File opens, writes, deletes, renames, chmods and links.
    pub enable_filesystem: bool,
    /// BPF program loads and kernel module loads.
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
    /// The detection engine; `"rules"` is the built-in rule engine.
    pub provider: String,
    /// Heuristic detections on top of the rules (off by default: see config/secmon.toml).
    pub enable_heuristics: bool,
    /// Minimum confidence, in `[0, 1]`, a detection needs to be reported.
    pub confidence_threshold: f64,
    /// Extra rule directories, read in addition to the built-in rules.
    pub rules_dirs: Vec<PathBuf>,
}

impl Default for ThreatDetection {
    fn default() -> Self {
        ThreatDetection {
            provider: "rules".to_string(),
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
    pub enable_alerts: bool,
    /// An `http://` or `https://` URL alerts are sent to (HTTP POST); `None`: no webhook.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert_webhook: Option<String>,
    /// One HTTP header sent with every webhook POST, `"Name: value"` (e.g. `"Authorization:
    /// Bearer …"`): the webhook's secret, kept out of the URL (URLs end up in proxies' logs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_header: Option<String>,
    /// A file holding that header line instead (read at start; as root it must be root's and
    /// readable by root only), so the secret is not in the config file at all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_header_file: Option<PathBuf>,
    /// The least severity an event needs to be logged and alerted on.
    pub log_level: Severity,
    /// A file events at or above `log_level` are appended to; `None`: no log file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_file: Option<PathBuf>,
    /// A file alerts and every enforcement record (block, unblock, expiry) are appended to;
    /// `None`: none (real blocks are still reported on stderr).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert_log: Option<PathBuf>,
    /// `log_file` and `alert_log` are rotated when they would grow past this many MiB
    /// (0: never rotated).
    pub log_max_size_mb: u64,
    /// Real enforcement for rules with `action = "block"` (kill at exec, refuse connect).
    /// Off: such rules are simulated ("would block").
    pub enforce: bool,
    /// Programs (names, or absolute paths) that are never blocked, in addition to the built-in
    /// protected set (sshd and its helpers, login/su/sudo/doas, every shell in /etc/shells,
    /// tmux/screen/zellij, the init system, PID 1's program and secmon), which it cannot shrink.
    pub allowlist: Vec<String>,
    /// Rules whose `block` action may deny a program in the system directories (/usr, /bin,
    /// /sbin, /lib…). Other rules deny only programs outside them, and destinations.
    pub system_binary_rules: Vec<String>,
    /// How many deny entries rules may add a minute (0: none; operators' entries are not
    /// limited).
    pub rule_denies_per_minute: u32,
    /// How long a deny entry made by a rule lasts, in seconds (0: until removed or the monitor
    /// exits).
    pub deny_ttl_secs: u64,
    /// The Unix socket `secmon-tui block list|add|remove` talks to (root only, mode 0600);
    /// opened only while `enforce` is on.
    pub control_socket: PathBuf,
    /// Also send each alert to the local syslog (journald, rsyslog) through `syslog_socket`.
    pub syslog: bool,
    /// The syslog datagram socket.
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
    pub enabled: bool,
    /// The database file; its directory is created `0700` and the file `0600`.
    pub path: PathBuf,
    /// Events older than this many days are deleted (0: kept forever).
    pub retention_days: u32,
    /// The oldest events are deleted when the database holds more than this many MiB
    /// (0: no limit).
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

/// Where the configuration in use came from (for the startup status line).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigSource {
    /// The path given explicitly (command line).
    Explicit(PathBuf),
    /// [`SYSTEM_CONFIG_PATH`].
    System(PathBuf),
    /// No file: the compiled-in default ([`DEFAULT_CONFIG_TOML`]).
    BuiltIn,
}

impl ConfigSource {
    /// The file read, if any.
    pub fn path(&self) -> Option<&Path> {
        match self {
            ConfigSource::Explicit(path) | ConfigSource::System(path) => Some(path),
            ConfigSource::BuiltIn => None,
        }
    }
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigSource::Explicit(path) | ConfigSource::System(path) => {
                write!(f, "{}", path.display())
            }
            ConfigSource::BuiltIn => {
                write!(f, "built-in defaults ({SYSTEM_CONFIG_PATH} not found)")
            }
        }
    }
}

/// A place in a configuration file. Displays as `path:line:column` (both 1-based; the column
/// counts characters, not bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Position {
    pub path: PathBuf,
    pub line: usize,
    pub column: usize,
}

impl Position {
    /// The position of byte `offset` of `text` (clamped to the text).
    fn of_offset(text: &str, origin: &Path, offset: usize) -> Position {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Position {
            path: origin.to_path_buf(),
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.path.display(), self.line, self.column)
    }
}

/// Why a configuration could not be loaded. Every variant but [`ConfigError::Read`] carries the
/// [`Position`] of the offending key or value.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read (missing, permissions, not UTF-8, ...).
    #[error("{}: cannot read config file: {error}", path.display())]
    Read { path: PathBuf, error: io::Error },
    /// Not valid TOML (including duplicate keys).
    #[error("{at}: invalid TOML: {message}")]
    Syntax { at: Position, message: String },
    /// A top-level table that is not one of the known sections.
    #[error("{at}: unknown section `[{section}]`; expected one of {expected}")]
    UnknownSection {
        at: Position,
        section: String,
        expected: String,
    },
    /// A key its section does not have. `section` is empty for a top-level key.
    #[error("{at}: unknown key `{key}` {}; expected one of {expected}", key_place(.section))]
    UnknownKey {
        at: Position,
        key: String,
        section: String,
        expected: String,
    },
    /// A value of the wrong TOML type.
    #[error("{at}: wrong type for `{key}`: expected {expected}, found {found}")]
    WrongType {
        at: Position,
        key: String,
        expected: &'static str,
        found: &'static str,
    },
    /// A value of the right type that is not allowed (range, URL, log level, empty string).
    #[error("{at}: invalid value for `{key}`: {reason}")]
    InvalidValue {
        at: Position,
        key: String,
        reason: String,
    },
    /// Anything else the deserialiser rejected (not expected: the structural check runs first).
    #[error("{at}: {message}")]
    Invalid { at: Position, message: String },
    /// Running as root, the file (or a directory above it) is not root's or is writable by
    /// group or others: it may hold the webhook's secret and decides what is enforced.
    #[error(transparent)]
    Untrusted(#[from] crate::secure_fs::Untrusted),
}

fn key_place(section: &str) -> String {
    if section.is_empty() {
        "at the top level".to_string()
    } else {
        format!("in [{section}]")
    }
}

impl ConfigError {
    /// Where in the file the problem is (`None` for [`ConfigError::Read`]).
    pub fn position(&self) -> Option<&Position> {
        match self {
            ConfigError::Read { .. } | ConfigError::Untrusted(_) => None,
            ConfigError::Syntax { at, .. }
            | ConfigError::UnknownSection { at, .. }
            | ConfigError::UnknownKey { at, .. }
            | ConfigError::WrongType { at, .. }
            | ConfigError::InvalidValue { at, .. }
            | ConfigError::Invalid { at, .. } => Some(at),
        }
    }
}

impl Config {
    /// Parse configuration text; `origin` is the file name used in error messages.
    ///
    /// # Errors
    ///
    /// Invalid TOML, unknown sections or keys, values of the wrong type or out of range; the
    /// error carries the position (`origin:line:column`) and names the key.
    pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        let checker = Checker { text, origin };
        let root = DeTable::parse(text).map_err(|e| ConfigError::Syntax {
            at: checker.at_error(&e),
            message: checker.syntax_message(&e),
        })?;
        checker.check_document(root.get_ref())?;
        let threshold_span = value_span(root.get_ref(), "threat_detection", "confidence_threshold");
        let header_file_span = value_span(root.get_ref(), "response", "webhook_header_file");

        let config = Config::deserialize(toml::de::Deserializer::from(root)).map_err(|e| {
            ConfigError::Invalid {
                at: checker.at_error(&e),
                message: one_line(e.message()),
            }
        })?;

        let threshold = config.threat_detection.confidence_threshold;
        if !(0.0..=1.0).contains(&threshold) {
            let span = threshold_span.unwrap_or(0..0);
            let written = text
                .get(span.clone())
                .map_or_else(|| threshold.to_string(), str::to_string);
            return Err(ConfigError::InvalidValue {
                at: checker.at(span),
                key: "confidence_threshold".to_string(),
                reason: format!("{written} is outside [0, 1]"),
            });
        }
        let response = &config.response;
        if response.webhook_header.is_some() && response.webhook_header_file.is_some() {
            return Err(ConfigError::InvalidValue {
                at: checker.at(header_file_span.unwrap_or(0..0)),
                key: "webhook_header_file".to_string(),
                reason: "give webhook_header or webhook_header_file, not both".to_string(),
            });
        }
        Ok(config)
    }

    /// Read and parse the file at `path`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Read`] if the file cannot be read, [`ConfigError::Untrusted`] if running
    /// as root and root does not own it or others may write to it or to a directory above it
    /// ([`crate::secure_fs::check_trusted`]), else as [`Config::parse`].
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_with(path, crate::secure_fs::strict_modes())
    }

    /// [`Config::load`], with the ownership and mode checks on (`strict`) or off.
    pub fn load_with(path: &Path, strict: bool) -> Result<Config, ConfigError> {
        use std::io::Read;
        let read_err = |error| ConfigError::Read {
            path: path.to_path_buf(),
            error,
        };
        let mut file = std::fs::File::open(path).map_err(read_err)?;
        if strict {
            // Checked on the open file: what is read is what was checked.
            let meta = file.metadata().map_err(read_err)?;
            crate::secure_fs::check_trusted(path, &meta, "config file")?;
            crate::secure_fs::check_trusted_ancestors(path, "config file")?;
        }
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(read_err)?;
        Config::parse(&text, path)
    }

    /// The configuration secmon starts with: `explicit` if given (an error if it cannot be
    /// loaded; there is no fallback), else [`SYSTEM_CONFIG_PATH`] if it exists, else the built-in
    /// default.
    ///
    /// # Errors
    ///
    /// As [`Config::load`], for whichever file was chosen.
    pub fn load_or_default(explicit: Option<&Path>) -> Result<(Config, ConfigSource), ConfigError> {
        Config::load_or_default_from(explicit, Path::new(SYSTEM_CONFIG_PATH))
    }

    fn load_or_default_from(
        explicit: Option<&Path>,
        system: &Path,
    ) -> Result<(Config, ConfigSource), ConfigError> {
        if let Some(path) = explicit {
            return Ok((
                Config::load(path)?,
                ConfigSource::Explicit(path.to_path_buf()),
            ));
        }
        // `Err` means we cannot tell (e.g. /etc/secmon not searchable): try to read it, so the
        // user sees why instead of silently getting the defaults.
        if system.try_exists().unwrap_or(true) {
            return Ok((
                Config::load(system)?,
                ConfigSource::System(system.to_path_buf()),
            ));
        }
        let config = Config::parse(DEFAULT_CONFIG_TOML, Path::new(BUILT_IN_ORIGIN))?;
        Ok((config, ConfigSource::BuiltIn))
    }
}

/// toml's messages may span lines; ours are one line each.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// The span of `[section] key`'s value, if the document has it.
fn value_span(root: &DeTable<'_>, section: &str, key: &str) -> Option<Range<usize>> {
    let table = root.get(section)?.get_ref().as_table()?;
    Some(table.get(key)?.span())
}

/// What a key's value must be.
#[derive(Clone, Copy)]
enum Kind {
    Bool,
    /// A non-empty string.
    Text,
    /// An integer or float; the range is checked after deserialisation.
    Threshold,
    /// An array of non-empty strings.
    DirList,
    /// An http(s) URL.
    Url,
    /// An HTTP header line, `Name: value`.
    Header,
    /// A severity name.
    Level,
    /// A non-empty string.
    FilePath,
    /// A whole number of days, `0..=MAX_RETENTION_DAYS`.
    Days,
    /// A whole number of MiB, `0..=MAX_HISTORY_MB`.
    Megabytes,
    /// A whole number of seconds, `0..=MAX_DENY_TTL_SECS`.
    Seconds,
    /// An array of non-empty strings (program names or paths).
    NameList,
    /// An array of non-empty strings (rule names).
    RuleList,
    /// A whole number per minute, `0..=MAX_RULE_DENIES_PER_MINUTE`.
    PerMinute,
}

impl Kind {
    fn expected(self) -> &'static str {
        match self {
            Kind::Bool => "a boolean (true or false)",
            Kind::Text => "a string",
            Kind::Threshold => "a number between 0 and 1",
            Kind::DirList => "an array of directory paths (strings)",
            Kind::Url => "a string (an http:// or https:// URL)",
            Kind::Header => "a string (an HTTP header line, \"Name: value\")",
            Kind::Level => "a string (\"benign\", \"suspicious\" or \"malicious\")",
            Kind::FilePath => "a string (a file path)",
            Kind::Days => "a whole number of days (0: keep forever)",
            Kind::Megabytes => "a whole number of MiB (0: no limit)",
            Kind::Seconds => "a whole number of seconds (0: no expiry)",
            Kind::NameList => "an array of program names or paths (strings)",
            Kind::RuleList => "an array of rule names (strings)",
            Kind::PerMinute => "a whole number a minute (0: none)",
        }
    }
}

struct Section {
    name: &'static str,
    keys: &'static [(&'static str, Kind)],
}

/// The file's schema; must agree with the structs above (a unit test checks a file with every
/// key deserialises).
const SCHEMA: [Section; 4] = [
    Section {
        name: "monitoring",
        keys: &[
            ("enable_process", Kind::Bool),
            ("enable_network", Kind::Bool),
            ("enable_filesystem", Kind::Bool),
            ("enable_kernel", Kind::Bool),
        ],
    },
    Section {
        name: "threat_detection",
        keys: &[
            ("provider", Kind::Text),
            ("enable_heuristics", Kind::Bool),
            ("confidence_threshold", Kind::Threshold),
            ("rules_dirs", Kind::DirList),
        ],
    },
    Section {
        name: "response",
        keys: &[
            ("enable_alerts", Kind::Bool),
            ("alert_webhook", Kind::Url),
            ("webhook_header", Kind::Header),
            ("webhook_header_file", Kind::FilePath),
            ("log_level", Kind::Level),
            ("log_file", Kind::FilePath),
            ("alert_log", Kind::FilePath),
            ("log_max_size_mb", Kind::Megabytes),
            ("enforce", Kind::Bool),
            ("allowlist", Kind::NameList),
            ("system_binary_rules", Kind::RuleList),
            ("rule_denies_per_minute", Kind::PerMinute),
            ("deny_ttl_secs", Kind::Seconds),
            ("control_socket", Kind::FilePath),
            ("syslog", Kind::Bool),
            ("syslog_socket", Kind::FilePath),
        ],
    },
    Section {
        name: "storage",
        keys: &[
            ("enabled", Kind::Bool),
            ("path", Kind::FilePath),
            ("retention_days", Kind::Days),
            ("max_size_mb", Kind::Megabytes),
        ],
    },
];

const LEVELS: [&str; 3] = ["benign", "suspicious", "malicious"];

type Entry<'t, 'i> = (&'t Spanned<Cow<'i, str>>, &'t Spanned<DeValue<'i>>);

/// A table's entries in the order they appear in the file (the map itself is sorted by name), so
/// the first problem reported is the first in the file.
fn in_file_order<'t, 'i>(table: &'t DeTable<'i>) -> Vec<Entry<'t, 'i>> {
    let mut entries: Vec<Entry<'t, 'i>> = table.iter().collect();
    entries.sort_by_key(|(key, _)| key.span().start);
    entries
}

/// Shown for user-supplied names in messages: escapes control characters.
fn printable(name: &str) -> String {
    name.escape_debug().to_string()
}

struct Checker<'a> {
    text: &'a str,
    origin: &'a Path,
}

impl Checker<'_> {
    fn at(&self, span: Range<usize>) -> Position {
        Position::of_offset(self.text, self.origin, span.start)
    }

    fn at_error(&self, error: &toml::de::Error) -> Position {
        self.at(error.span().unwrap_or(0..0))
    }

    /// toml's message, on one line; "duplicate key" gets the key's name.
    fn syntax_message(&self, error: &toml::de::Error) -> String {
        let message = one_line(error.message());
        let key = error
            .span()
            .and_then(|span| self.text.get(span))
            .filter(|key| !key.is_empty() && key.len() <= 80 && !key.contains('\n'));
        match key {
            Some(key) if message == "duplicate key" => format!("duplicate key `{key}`"),
            _ => message,
        }
    }

    fn check_document(&self, root: &DeTable<'_>) -> Result<(), ConfigError> {
        for (key, value) in in_file_order(root) {
            let name: &str = key.get_ref();
            match SCHEMA.iter().find(|s| s.name == name) {
                Some(section) => match value.get_ref() {
                    DeValue::Table(table) => self.check_section(section, table)?,
                    other => {
                        return Err(ConfigError::WrongType {
                            at: self.at(value.span()),
                            key: name.to_string(),
                            expected: "a table (a [section])",
                            found: other.type_str(),
                        });
                    }
                },
                None => {
                    let expected = SCHEMA
                        .iter()
                        .map(|s| format!("[{}]", s.name))
                        .collect::<Vec<_>>()
                        .join(", ");
                    return Err(if value.get_ref().is_table() {
                        ConfigError::UnknownSection {
                            at: self.at(key.span()),
                            section: printable(name),
                            expected,
                        }
                    } else {
                        ConfigError::UnknownKey {
                            at: self.at(key.span()),
                            key: printable(name),
                            section: String::new(),
                            expected,
                        }
                    });
                }
            }
        }
        Ok(())
    }

    fn check_section(&self, section: &Section, table: &DeTable<'_>) -> Result<(), ConfigError> {
        for (key, value) in in_file_order(table) {
            let name: &str = key.get_ref();
            let Some(&(_, kind)) = section.keys.iter().find(|(k, _)| *k == name) else {
                return Err(ConfigError::UnknownKey {
                    at: self.at(key.span()),
                    key: printable(name),
                    section: section.name.to_string(),
                    expected: section
                        .keys
                        .iter()
                        .map(|(k, _)| *k)
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            };
            self.check_value(name, kind, value)?;
        }
        Ok(())
    }

    fn check_value(
        &self,
        key: &str,
        kind: Kind,
        value: &Spanned<DeValue<'_>>,
    ) -> Result<(), ConfigError> {
        let wrong_type = |expected: &'static str| ConfigError::WrongType {
            at: self.at(value.span()),
            key: key.to_string(),
            expected,
            found: value.get_ref().type_str(),
        };
        let invalid = |reason: String| ConfigError::InvalidValue {
            at: self.at(value.span()),
            key: key.to_string(),
            reason,
        };
        let v = value.get_ref();
        match kind {
            Kind::Bool if v.is_bool() => Ok(()),
            Kind::Threshold if v.is_integer() || v.is_float() => Ok(()),
            Kind::Bool | Kind::Threshold => Err(wrong_type(kind.expected())),
            Kind::Days | Kind::Megabytes | Kind::Seconds | Kind::PerMinute => {
                let Some(int) = v.as_integer() else {
                    return Err(wrong_type(kind.expected()));
                };
                let max = match kind {
                    Kind::Days => u128::from(MAX_RETENTION_DAYS),
                    Kind::Seconds => u128::from(MAX_DENY_TTL_SECS),
                    Kind::PerMinute => u128::from(MAX_RULE_DENIES_PER_MINUTE),
                    _ => u128::from(MAX_HISTORY_MB),
                };
                let written = self.text.get(value.span()).unwrap_or(int.as_str());
                match i128::from_str_radix(int.as_str(), int.radix()) {
                    Ok(n) if n < 0 => Err(invalid(format!("{written} is negative"))),
                    Ok(n) if n.unsigned_abs() <= max => Ok(()),
                    _ => Err(invalid(format!("{written} is too large (at most {max})"))),
                }
            }
            Kind::DirList | Kind::NameList | Kind::RuleList => {
                let Some(items) = v.as_array() else {
                    return Err(wrong_type(kind.expected()));
                };
                let (item_kind, item_type) = match kind {
                    Kind::DirList => ("a directory path", "a string (a directory path)"),
                    Kind::RuleList => ("a rule name", "a string (a rule name)"),
                    _ => (
                        "a program name or path",
                        "a string (a program name or path)",
                    ),
                };
                for (i, item) in items.iter().enumerate() {
                    match item.get_ref().as_str() {
                        Some(dir) if !dir.is_empty() => {}
                        Some(_) => {
                            return Err(ConfigError::InvalidValue {
                                at: self.at(item.span()),
                                key: format!("{key}[{i}]"),
                                reason: format!("{item_kind} must not be empty"),
                            });
                        }
                        None => {
                            return Err(ConfigError::WrongType {
                                at: self.at(item.span()),
                                key: format!("{key}[{i}]"),
                                expected: item_type,
                                found: item.get_ref().type_str(),
                            });
                        }
                    }
                }
                Ok(())
            }
            Kind::Text | Kind::FilePath | Kind::Url | Kind::Level | Kind::Header => {
                let Some(s) = v.as_str() else {
                    return Err(wrong_type(kind.expected()));
                };
                match kind {
                    // The URL may carry a secret: messages show it redacted.
                    Kind::Url => check_webhook(s).map_err(|why| {
                        invalid(format!("{:?} {why}", crate::secrets::redact_url(s)))
                    }),
                    // Never quoted: the value is a secret.
                    Kind::Header => crate::secrets::parse_header(s).map(drop).map_err(invalid),
                    Kind::Level if !LEVELS.contains(&s) => Err(invalid(format!(
                        "{s:?} is not one of {}",
                        LEVELS.join(", ")
                    ))),
                    _ if s.is_empty() => Err(invalid(
                        "must not be empty (leave the key out to use the default)".to_string(),
                    )),
                    _ => Ok(()),
                }
            }
        }
    }
}

/// A deliberately simple URL check: `http://` or `https://`, a non-empty host, a numeric port if
/// one is given, and no whitespace or control characters. Returns why not, as a phrase that
/// follows the URL.
fn check_webhook(url: &str) -> Result<(), &'static str> {
    let scheme_len = ["http://", "https://"]
        .iter()
        .find(|scheme| {
            url.get(..scheme.len())
                .is_some_and(|s| s.eq_ignore_ascii_case(scheme))
        })
        .map(|scheme| scheme.len())
        .ok_or("is not an http:// or https:// URL")?;
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains whitespace or control characters");
    }
    let rest = &url[scheme_len..];
    let authority = rest.find(['/', '?', '#']).map_or(rest, |end| &rest[..end]);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let (host, port) = if let Some(bracketed) = host_port.strip_prefix('[') {
        // IPv6 literal: [::1]:8080
        let (host, after) = bracketed
            .split_once(']')
            .ok_or("has an unterminated [ in its host")?;
        match after.strip_prefix(':') {
            Some(port) => (host, Some(port)),
            None if after.is_empty() => (host, None),
            None => return Err("has junk after its host"),
        }
    } else {
        match host_port.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        }
    };
    if host.is_empty() {
        return Err("has no host");
    }
    if let Some(port) = port
        && !port.is_empty()
        && port.parse::<u16>().is_err()
    {
        return Err("has a port that is not a number from 0 to 65535");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("x.toml"))
    }

    fn parse_err(text: &str) -> ConfigError {
        match parse(text) {
            Ok(config) => panic!("expected an error, got {config:?}"),
            Err(e) => e,
        }
    }

    fn line_col(e: &ConfigError) -> (usize, usize) {
        let at = e.position().expect("error has a position");
        (at.line, at.column)
    }

    fn workspace_dir(rel: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
    }

    #[test]
    fn defaults() {
        let c = Config::default();
        assert!(c.monitoring.enable_process);
        assert!(c.monitoring.enable_network);
        assert!(c.monitoring.enable_filesystem);
        assert!(c.monitoring.enable_kernel);
        assert_eq!(c.threat_detection.provider, "rules");
        assert!(!c.threat_detection.enable_heuristics);
        assert_eq!(c.threat_detection.confidence_threshold, 0.6);
        assert!(c.threat_detection.rules_dirs.is_empty());
        assert!(c.response.enable_alerts);
        assert_eq!(c.response.alert_webhook, None);
        assert_eq!(c.response.log_level, Severity::Suspicious);
        assert_eq!(c.response.log_file, None);
        assert_eq!(c.monitoring.enabled_families(), Family::ALL.to_vec());
        assert!(c.storage.enabled);
        assert_eq!(c.storage.path, PathBuf::from("/var/lib/secmon/events.db"));
        assert_eq!(c.storage.retention_days, 30);
        assert_eq!(c.storage.max_size_mb, 1024);
    }

    #[test]
    fn storage_section() {
        let c = parse("[storage]\nenabled = false\n").expect("parse");
        assert!(!c.storage.enabled);
        assert_eq!(c.storage.retention_days, 30);
        let c = parse("storage = { retention_days = 0, max_size_mb = 0 }\n").expect("parse");
        assert_eq!((c.storage.retention_days, c.storage.max_size_mb), (0, 0));
        let c = parse("[storage]\nretention_days = 36_500\n").expect("parse");
        assert_eq!(c.storage.retention_days, MAX_RETENTION_DAYS);

        let e = parse_err("[storage]\nretention_days = -1\n");
        assert_eq!(
            e.to_string(),
            "x.toml:2:18: invalid value for `retention_days`: -1 is negative"
        );
        let e = parse_err("[storage]\nretention_days = 36501\n");
        assert_eq!(
            e.to_string(),
            "x.toml:2:18: invalid value for `retention_days`: 36501 is too large (at most 36500)"
        );
        let e = parse_err("[storage]\nmax_size_mb = 99999999999999999999999\n");
        assert_eq!(line_col(&e), (2, 15));
        assert!(
            e.to_string().contains("is too large (at most 16777216)"),
            "{e}"
        );
        let e = parse_err("[storage]\nmax_size_mb = 1.5\n");
        assert_eq!(
            e.to_string(),
            "x.toml:2:15: wrong type for `max_size_mb`: expected a whole number of MiB \
             (0: no limit), found float"
        );
        let e = parse_err("[storage]\nretention_days = \"30d\"\n");
        assert!(matches!(
            e,
            ConfigError::WrongType {
                found: "string",
                ..
            }
        ));
        let e = parse_err("[storage]\npath = \"\"\n");
        assert!(matches!(&e, ConfigError::InvalidValue { key, .. } if key == "path"));
        assert_eq!(line_col(&e), (2, 8));
        let e = parse_err("[storage]\nenabled = 1\n");
        assert_eq!(line_col(&e), (2, 11));
        let e = parse_err("[storage]\nretention = 3\n");
        assert_eq!(
            e.to_string(),
            "x.toml:2:1: unknown key `retention` in [storage]; expected one of enabled, path, \
             retention_days, max_size_mb"
        );
    }

    #[test]
    fn empty_text_and_empty_sections_are_defaults() {
        assert_eq!(parse("").expect("parse"), Config::default());
        assert_eq!(
            parse("# nothing\n[monitoring]\n[threat_detection]\n[response]\n[storage]\n")
                .expect("parse"),
            Config::default()
        );
    }

    #[test]
    fn shipped_file_is_the_default() {
        let shipped = Config::parse(DEFAULT_CONFIG_TOML, Path::new("config/secmon.toml"))
            .expect("shipped config parses");
        assert_eq!(shipped, Config::default());
        // And it spells out every key.
        for section in &SCHEMA {
            for (key, _) in section.keys {
                if matches!(
                    *key,
                    "alert_webhook"
                        | "webhook_header"
                        | "webhook_header_file"
                        | "log_file"
                        | "alert_log"
                ) {
                    // Optional with no default: shown commented out.
                    assert!(
                        DEFAULT_CONFIG_TOML.contains(&format!("# {key} = ")),
                        "{key} documented"
                    );
                } else {
                    assert!(
                        DEFAULT_CONFIG_TOML.contains(&format!("\n{key} = ")),
                        "{key} present"
                    );
                }
            }
        }
    }

    #[test]
    fn full_file() {
        let text = r#"
[monitoring]
enable_process = true
enable_network = false
enable_filesystem = true
enable_kernel = false

[threat_detection]
provider = "rules"
enable_heuristics = true
confidence_threshold = 0.85
rules_dirs = ["/etc/secmon/rules.d", "/opt/rules"]

[response]
enable_alerts = false
alert_webhook = "https://hooks.example.com:8443/secmon?x=1"
log_level = "malicious"
log_file = "/var/log/secmon/events.jsonl"

[storage]
enabled = false
path = "/srv/secmon/history.db"
retention_days = 7
max_size_mb = 0x100
"#;
        let c = parse(text).expect("parse");
        assert_eq!(
            c,
            Config {
                monitoring: Monitoring {
                    enable_process: true,
                    enable_network: false,
                    enable_filesystem: true,
                    enable_kernel: false,
                },
                threat_detection: ThreatDetection {
                    provider: "rules".to_string(),
                    enable_heuristics: true,
                    confidence_threshold: 0.85,
                    rules_dirs: vec![
                        PathBuf::from("/etc/secmon/rules.d"),
                        PathBuf::from("/opt/rules")
                    ],
                },
                response: Response {
                    enable_alerts: false,
                    alert_webhook: Some("https://hooks.example.com:8443/secmon?x=1".to_string()),
                    log_level: Severity::Malicious,
                    log_file: Some(PathBuf::from("/var/log/secmon/events.jsonl")),
                    ..Response::default()
                },
                storage: Storage {
                    enabled: false,
                    path: PathBuf::from("/srv/secmon/history.db"),
                    retention_days: 7,
                    max_size_mb: 256,
                },
            }
        );
        assert_eq!(
            c.monitoring.enabled_families(),
            vec![Family::Process, Family::File]
        );
    }

    #[test]
    fn partial_file_keeps_other_defaults() {
        let c = parse("[response]\nlog_level = \"benign\"\n").expect("parse");
        assert_eq!(c.response.log_level, Severity::Benign);
        assert_eq!(c.monitoring, Monitoring::default());
        assert_eq!(c.threat_detection, ThreatDetection::default());
        assert!(c.response.enable_alerts);
    }

    #[test]
    fn inline_tables_dotted_keys_and_integer_threshold() {
        let c = parse(
            "monitoring = { enable_kernel = false }\n\
             threat_detection.confidence_threshold = 1\n\
             threat_detection.rules_dirs = []\n",
        )
        .expect("parse");
        assert!(!c.monitoring.enable_kernel);
        assert_eq!(c.threat_detection.confidence_threshold, 1.0);
    }

    #[test]
    fn serialised_config_round_trips() {
        let mut c = Config::default();
        c.response.alert_webhook = Some("http://localhost:9000/alert".to_string());
        c.response.log_file = Some(PathBuf::from("/tmp/secmon.log"));
        c.threat_detection.rules_dirs = vec![PathBuf::from("rules")];
        c.threat_detection.confidence_threshold = 0.25;
        for config in [Config::default(), c] {
            let text = toml::to_string(&config).expect("serialise");
            assert_eq!(parse(&text).expect("reparse"), config, "{text}");
        }
    }

    #[test]
    fn unknown_key() {
        let e = Config::parse(
            "[monitoring]\nenable_process = true\nenable_procss = false\n",
            Path::new("config/bad.toml"),
        )
        .expect_err("unknown key");
        assert!(matches!(&e, ConfigError::UnknownKey { key, section, .. }
            if key == "enable_procss" && section == "monitoring"));
        assert_eq!(
            e.to_string(),
            "config/bad.toml:3:1: unknown key `enable_procss` in [monitoring]; expected one of \
             enable_process, enable_network, enable_filesystem, enable_kernel"
        );
    }

    #[test]
    fn unknown_key_in_inline_table() {
        let e = parse("\nresponse = { enable_alerts = true, colour = \"red\" }\n");
        let e = e.expect_err("unknown key");
        assert_eq!(line_col(&e), (2, 36));
        assert!(e.to_string().contains("unknown key `colour` in [response]"));
    }

    #[test]
    fn unknown_top_level_key() {
        let e = parse_err("verbose = true\n");
        assert_eq!(line_col(&e), (1, 1));
        assert_eq!(
            e.to_string(),
            "x.toml:1:1: unknown key `verbose` at the top level; expected one of \
             [monitoring], [threat_detection], [response], [storage]"
        );
    }

    #[test]
    fn unknown_section() {
        let e = parse_err("[monitoring]\nenable_kernel = true\n\n[monitorng]\n");
        assert!(
            matches!(&e, ConfigError::UnknownSection { section, .. } if section == "monitorng")
        );
        assert_eq!(
            e.to_string(),
            "x.toml:4:2: unknown section `[monitorng]`; expected one of \
             [monitoring], [threat_detection], [response], [storage]"
        );
    }

    #[test]
    fn first_problem_in_file_order_is_reported() {
        // `zzz` sorts after `aaa` but comes first in the file.
        let e = parse_err("[monitoring]\nzzz = 1\naaa = 2\n");
        assert_eq!(line_col(&e), (2, 1));
    }

    #[test]
    fn wrong_type() {
        let text = "# secmon\n\n[threat_detection]\nprovider = \"rules\"\n\
                    confidence_threshold = \"0.6\"\n";
        let e = parse_err(text);
        assert_eq!(
            e.to_string(),
            "x.toml:5:24: wrong type for `confidence_threshold`: expected a number between 0 \
             and 1, found string"
        );

        let e = parse_err("[monitoring]\nenable_network = \"yes\"\n");
        assert_eq!(line_col(&e), (2, 18));
        assert_eq!(
            e.to_string(),
            "x.toml:2:18: wrong type for `enable_network`: expected a boolean (true or false), \
             found string"
        );

        let e = parse_err("[response]\nlog_level = 2\n");
        assert!(matches!(
            e,
            ConfigError::WrongType {
                found: "integer",
                ..
            }
        ));
        assert_eq!(line_col(&e), (2, 13));

        let e = parse_err("[threat_detection]\nrules_dirs = \"/etc/rules\"\n");
        assert!(matches!(
            e,
            ConfigError::WrongType {
                found: "string",
                ..
            }
        ));
        assert_eq!(line_col(&e), (2, 14));

        let e = parse_err("[threat_detection]\nrules_dirs = [\"/a\", 7]\n");
        assert_eq!(
            e.to_string(),
            "x.toml:2:21: wrong type for `rules_dirs[1]`: expected a string (a directory path), \
             found integer"
        );
    }

    #[test]
    fn section_of_wrong_type() {
        let e = parse_err("monitoring = true\n");
        assert_eq!(
            e.to_string(),
            "x.toml:1:14: wrong type for `monitoring`: expected a table (a [section]), \
             found boolean"
        );
        let e = parse_err("[[response]]\nenable_alerts = true\n");
        assert!(matches!(e, ConfigError::WrongType { found: "array", .. }));
    }

    #[test]
    fn out_of_range_threshold() {
        let e = parse_err("[threat_detection]\nconfidence_threshold = 1.5\n");
        assert!(
            matches!(&e, ConfigError::InvalidValue { key, .. } if key == "confidence_threshold")
        );
        assert_eq!(
            e.to_string(),
            "x.toml:2:24: invalid value for `confidence_threshold`: 1.5 is outside [0, 1]"
        );
        let e = parse_err("threat_detection = { confidence_threshold = -1 }\n");
        assert_eq!(line_col(&e), (1, 45));
        assert!(e.to_string().contains("-1 is outside [0, 1]"));
        let e = parse_err("[threat_detection]\nconfidence_threshold = nan\n");
        assert_eq!(line_col(&e), (2, 24));
        for bad in ["inf", "-inf", "+inf", "-nan", "1e400"] {
            let e = parse_err(&format!(
                "[threat_detection]\nconfidence_threshold = {bad}\n"
            ));
            assert!(e.position().is_some(), "{bad}: {e}");
        }
        // Whole numbers: negative, beyond the key's bound, beyond 64 bits.
        for (key, bad) in [
            ("[storage]\nretention_days", "-1"),
            ("[storage]\nmax_size_mb", "99999999999999"),
            ("[response]\nlog_max_size_mb", "-5"),
            ("[response]\ndeny_ttl_secs", "99999999999999999999"),
        ] {
            let e = parse_err(&format!("{key} = {bad}\n"));
            assert!(e.position().is_some(), "{key} = {bad}: {e}");
        }
        // The bounds themselves are fine.
        for ok in ["0", "0.0", "1", "1.0"] {
            let text = format!("[threat_detection]\nconfidence_threshold = {ok}\n");
            parse(&text).expect(ok);
        }
    }

    #[test]
    fn bad_webhook_url() {
        let e = parse_err("[response]\nalert_webhook = \"ftp://example.com/hook\"\n");
        assert_eq!(
            e.to_string(),
            "x.toml:2:17: invalid value for `alert_webhook`: \"ftp://example.com/hook\" is not \
             an http:// or https:// URL"
        );
        let e = parse_err("[response]\n  alert_webhook = \"https:///hook\"\n");
        assert_eq!(line_col(&e), (2, 19));
        assert!(e.to_string().ends_with("\"https:///hook\" has no host"));
    }

    #[test]
    fn webhook_secrets_are_checked_and_never_quoted() {
        let c = parse(
            "[response]\nalert_webhook = \"https://h/x\"\nwebhook_header = \"Authorization: Bearer s3cret\"\n",
        )
        .expect("parse");
        assert_eq!(
            c.response.webhook_header.as_deref(),
            Some("Authorization: Bearer s3cret")
        );
        let c = parse("[response]\nwebhook_header_file = \"/etc/secmon/hook\"\n").expect("parse");
        assert_eq!(
            c.response.webhook_header_file,
            Some(PathBuf::from("/etc/secmon/hook"))
        );
        let e = parse_err("[response]\nwebhook_header = \"Bearer s3cret\"\n");
        assert_eq!(line_col(&e), (2, 18));
        assert!(!e.to_string().contains("s3cret"), "{e}");
        let e = parse_err(
            "[response]\nwebhook_header = \"A: b\"\nwebhook_header_file = \"/etc/secmon/hook\"\n",
        );
        assert_eq!(line_col(&e), (3, 23));
        assert!(e.to_string().contains("not both"), "{e}");
        // A bad URL's message does not show its password or query values.
        let e = parse_err("[response]\nalert_webhook = \"ftp://u:pw@h/?k=s3cret\"\n");
        let text = e.to_string();
        assert!(
            text.contains("\"ftp://***@h/?k=***\" is not an http"),
            "{text}"
        );
    }

    #[test]
    fn response_enforcement_keys() {
        let c = parse(
            "[response]\nenforce = true\nallowlist = [\"sshd\", \"/usr/bin/tmux\"]\n\
             deny_ttl_secs = 0\nalert_log = \"/var/log/secmon/alerts.jsonl\"\n\
             control_socket = \"/tmp/s.sock\"\nlog_max_size_mb = 0\n",
        )
        .expect("parse");
        let r = &c.response;
        assert!(r.enforce);
        assert_eq!(r.allowlist, vec!["sshd", "/usr/bin/tmux"]);
        assert_eq!(r.deny_ttl_secs, 0);
        assert_eq!(
            r.alert_log.as_deref(),
            Some(Path::new("/var/log/secmon/alerts.jsonl"))
        );
        assert_eq!(r.control_socket, PathBuf::from("/tmp/s.sock"));
        assert_eq!(r.log_max_size_mb, 0);
        // A path to sshd protects it too; without enforcement the allowlist may be anything.
        parse("[response]\nenforce = true\nallowlist = [\"/usr/sbin/sshd\"]\n").expect("path");
        parse("[response]\nallowlist = []\n").expect("enforce off");
        let d = Response::default();
        assert!(!d.enforce);
        assert_eq!(d.allowlist, vec!["sshd"]);
        assert_eq!(d.deny_ttl_secs, 3600);
        assert_eq!(d.control_socket, PathBuf::from(DEFAULT_CONTROL_SOCKET));
    }

    #[test]
    fn enforcement_policy_keys() {
        // sshd is protected whatever the allowlist says: an empty one is fine.
        let c = parse("[response]\nenforce = true\nallowlist = []\n").expect("empty allowlist");
        assert!(c.response.allowlist.is_empty());
        let c = parse(
            "[response]\nsystem_binary_rules = [\"curl_to_c2\"]\nrule_denies_per_minute = 5\n",
        )
        .expect("policy keys");
        assert_eq!(c.response.system_binary_rules, ["curl_to_c2"]);
        assert_eq!(c.response.rule_denies_per_minute, 5);
        assert_eq!(Response::default().rule_denies_per_minute, 30);
        let e = parse_err("[response]\nrule_denies_per_minute = 601\n");
        assert!(e.to_string().contains("too large (at most 600)"), "{e}");
        let e = parse_err("[response]\nrule_denies_per_minute = -1\n");
        assert!(e.to_string().contains("is negative"), "{e}");
        let e = parse_err("[response]\nsystem_binary_rules = [1]\n");
        assert!(e.to_string().contains("a rule name"), "{e}");
        let e = parse_err("[response]\nallowlist = [\"sshd\", 3]\n");
        assert_eq!(
            e.to_string(),
            "x.toml:2:22: wrong type for `allowlist[1]`: expected a string (a program name or \
             path), found integer"
        );
        let e = parse_err("[response]\nallowlist = [\"\"]\n");
        assert!(matches!(&e, ConfigError::InvalidValue { key, .. } if key == "allowlist[0]"));
        let e = parse_err("[response]\ndeny_ttl_secs = -1\n");
        assert_eq!(
            e.to_string(),
            "x.toml:2:17: invalid value for `deny_ttl_secs`: -1 is negative"
        );
        let e = parse_err("[response]\ndeny_ttl_secs = 99999999999\n");
        assert!(
            e.to_string().contains("is too large (at most 31536000)"),
            "{e}"
        );
        let e = parse_err("[response]\nenforce = \"yes\"\n");
        assert!(matches!(e, ConfigError::WrongType { .. }));
        let e = parse_err("[response]\ncontrol_socket = \"\"\n");
        assert!(matches!(&e, ConfigError::InvalidValue { key, .. } if key == "control_socket"));
    }

    #[test]
    fn webhook_check() {
        for good in [
            "http://localhost",
            "https://hooks.example.com/services/T0/B0/x",
            "HTTPS://example.com:443",
            "http://user:pw@10.0.0.1:8080/alert?a=b#c",
            "http://[::1]:9000/",
            "http://example.com:/",
        ] {
            assert_eq!(check_webhook(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "example.com",
            "ftp://example.com",
            "http://",
            "http:///path",
            "http://:80/",
            "http://user@/x",
            "http://example.com:http/",
            "http://example.com:70000/",
            "http://exa mple.com/",
            "http://[::1/",
            "http://[::1]x/",
        ] {
            assert!(check_webhook(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_log_level_and_empty_strings() {
        let e = parse_err("[response]\nlog_level = \"warning\"\n");
        assert_eq!(
            e.to_string(),
            "x.toml:2:13: invalid value for `log_level`: \"warning\" is not one of benign, \
             suspicious, malicious"
        );
        let e = parse_err("[response]\nlog_file = \"\"\n");
        assert!(matches!(&e, ConfigError::InvalidValue { key, .. } if key == "log_file"));
        assert_eq!(line_col(&e), (2, 12));
        let e = parse_err("[threat_detection]\nprovider = \"\"\n");
        assert_eq!(line_col(&e), (2, 12));
        let e = parse_err("[threat_detection]\nrules_dirs = [\"a\", \"\"]\n");
        assert!(matches!(&e, ConfigError::InvalidValue { key, .. } if key == "rules_dirs[1]"));
        assert_eq!(line_col(&e), (2, 20));
    }

    #[test]
    fn syntax_errors() {
        let e = parse_err("[monitoring]\nenable_process = tru\n");
        assert!(matches!(e, ConfigError::Syntax { .. }));
        assert_eq!(line_col(&e), (2, 18));
        assert!(e.to_string().starts_with("x.toml:2:18: invalid TOML: "));
        assert!(!e.to_string().contains('\n'));

        let e = parse_err("[monitoring]\nenable_process = true\nenable_process = false\n");
        assert_eq!(
            e.to_string(),
            "x.toml:3:1: invalid TOML: duplicate key `enable_process`"
        );
        let e = parse_err("[response]\n\n[response]\n");
        assert_eq!(
            e.to_string(),
            "x.toml:3:2: invalid TOML: duplicate key `response`"
        );
    }

    #[test]
    fn columns_count_characters_and_crlf() {
        let e = parse_err("# é\r\n[response]\r\nlog_level = \"é\"\r\n");
        assert_eq!(line_col(&e), (3, 13));
        let p = Position::of_offset("aé\nb", Path::new("f"), 100);
        assert_eq!((p.line, p.column), (2, 2));
        let p = Position::of_offset("aé", Path::new("f"), 2); // inside the é
        assert_eq!((p.line, p.column), (1, 2));
    }

    #[test]
    fn as_root_a_config_others_can_change_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        if !crate::secure_fs::strict_modes() {
            return; // the temporary file is not root's
        }
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let path = dir.path().join("secmon.toml");
        std::fs::write(&path, "[response]\nenable_alerts = true\n").expect("write");
        let chmod = |mode| {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod")
        };
        chmod(0o600);
        Config::load(&path).expect("root's, 0600");
        chmod(0o620);
        let e = Config::load(&path).expect_err("group-writable");
        assert!(matches!(e, ConfigError::Untrusted(_)), "{e:?}");
        assert!(e.position().is_none());
        assert_eq!(
            e.to_string(),
            format!(
                "{0}: refusing to use this config file as root: its mode 0620 lets its group \
                 change it (owner root (uid 0)); fix: sudo chmod go-w {0}",
                path.display()
            )
        );
        Config::load_with(&path, false).expect("not checked when not root");
        chmod(0o644);
        std::os::unix::fs::chown(&path, Some(65534), None).expect("chown nobody");
        let e = Config::load(&path).expect_err("nobody's");
        assert!(
            e.to_string()
                .contains("config file as root: it is owned by nobody (uid 65534), not root"),
            "{e}"
        );
        // The directory above it counts too.
        std::os::unix::fs::chown(&path, Some(0), None).expect("chown root");
        Config::load(&path).expect("root's again");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
            .expect("chmod");
        let e = Config::load(&path).expect_err("world-writable directory");
        assert!(
            e.to_string()
                .contains("this directory holding the config file as root: its mode 0777"),
            "{e}"
        );
    }

    #[test]
    fn unreadable_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("nope.toml");
        let e = Config::load(&missing).expect_err("missing file");
        assert!(matches!(&e, ConfigError::Read { path, error }
            if path == &missing && error.kind() == io::ErrorKind::NotFound));
        assert!(e.position().is_none());
        let msg = e.to_string();
        assert!(msg.starts_with(&format!("{}: cannot read config file: ", missing.display())));
        assert!(msg.contains("os error 2"), "{msg}");

        // A directory is not readable as a file either.
        let e = Config::load(dir.path()).expect_err("directory");
        assert!(matches!(e, ConfigError::Read { .. }));
    }

    #[test]
    fn load_and_lookup_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let explicit = dir.path().join("explicit.toml");
        let system = dir.path().join("system.toml");
        std::fs::write(&explicit, "[monitoring]\nenable_kernel = false\n").expect("write");
        std::fs::write(&system, "[monitoring]\nenable_network = false\n").expect("write");

        let (c, source) =
            Config::load_or_default_from(Some(&explicit), &system).expect("explicit loads");
        assert_eq!(source, ConfigSource::Explicit(explicit.clone()));
        assert_eq!(source.path(), Some(explicit.as_path()));
        assert!(!c.monitoring.enable_kernel && c.monitoring.enable_network);

        let (c, source) = Config::load_or_default_from(None, &system).expect("system loads");
        assert_eq!(source, ConfigSource::System(system.clone()));
        assert!(c.monitoring.enable_kernel && !c.monitoring.enable_network);
        assert_eq!(source.to_string(), system.display().to_string());

        let absent = dir.path().join("absent.toml");
        let (c, source) = Config::load_or_default_from(None, &absent).expect("built-in");
        assert_eq!(source, ConfigSource::BuiltIn);
        assert_eq!(source.path(), None);
        assert_eq!(c, Config::default());
        assert!(source.to_string().starts_with("built-in defaults"));

        // An explicit path that cannot be read is an error, not a silent fallback.
        let e = Config::load_or_default_from(Some(&absent), &system).expect_err("no fallback");
        assert!(matches!(e, ConfigError::Read { .. }));

        // Errors name the file they came from.
        std::fs::write(&system, "[monitoring]\nenable_kernel = 1\n").expect("write");
        let e = Config::load_or_default_from(None, &system).expect_err("bad system file");
        assert!(
            e.to_string()
                .starts_with(&format!("{}:2:17: ", system.display()))
        );
    }

    fn toml_files(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.expect("dir entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        assert!(!files.is_empty(), "no fixtures in {}", dir.display());
        files
    }

    #[test]
    fn valid_fixtures_parse() {
        for file in toml_files(&workspace_dir("tests/valid_configs")) {
            if let Err(e) = Config::load(&file) {
                panic!("{}: {e}", file.display());
            }
        }
    }

    /// Each invalid fixture starts with `# expect: LINE:COL: TEXT`; the error must read
    /// `<path>:LINE:COL: ...TEXT...`.
    #[test]
    fn invalid_fixtures_fail_with_position() {
        for file in toml_files(&workspace_dir("tests/invalid_configs")) {
            let text = std::fs::read_to_string(&file).expect("read fixture");
            let expect = text
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("# expect: "))
                .unwrap_or_else(|| panic!("{}: no `# expect:` line", file.display()));
            let (line, rest) = expect.split_once(':').expect("LINE:");
            let (col, wanted) = rest.split_once(": ").expect("COL: ");
            let e = match Config::load(&file) {
                Ok(_) => panic!("{} parsed but should not", file.display()),
                Err(e) => e,
            };
            let msg = e.to_string();
            let name = file.file_name().expect("name").to_string_lossy();
            assert!(msg.contains(name.as_ref()), "{msg}");
            let prefix = format!("{}:{line}:{col}: ", file.display());
            assert!(msg.starts_with(&prefix), "{msg}\nwanted prefix {prefix}");
            assert!(msg.contains(wanted), "{msg}\nwanted {wanted}");
        }
    }
}
