//! The configuration file, `secmon.toml` (documented for users in docs/config.md).
//!
//! Lookup ([`Config::load_or_default`]): an explicitly given path; else
//! [`SYSTEM_CONFIG_PATH`] if it exists; else the built-in default, which is the shipped
//! `config/secmon.toml` compiled in.
//!
//! Every section and key is optional (defaults fill in), but unknown sections and keys, wrong
//! types and out-of-range values are errors, and every such error names the file, the line and
//! column, and the key. The file is checked by serde itself: the section structs
//! ([`sections`]) deny unknown keys, and each key is read through a checked type ([`value`])
//! that holds its type, range and error wording. [`error`] turns the deserialiser's error into
//! a [`ConfigError`] at the right place; the one rule across keys (not both `webhook_header`
//! and `webhook_header_file`) is checked after deserialising; [`deprecated`] handles keys that
//! are gone but still found in old files.

mod deprecated;
mod error;
mod sections;
#[cfg(test)]
mod tests;
mod value;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::de::DeTable;

pub use error::{ConfigError, ConfigWarning, Position};
pub use sections::{
    Controller, DEFAULT_CONTROL_SOCKET, DEFAULT_CONTROLLER_AUDIT, DEFAULT_CONTROLLER_LISTEN,
    DEFAULT_CONTROLLER_TOKEN, DEFAULT_EVENTS_PER_MESSAGE, DEFAULT_HISTORY_PATH,
    DEFAULT_MACHINES_FILE_NAME, DEFAULT_NATS_SPOOL, DEFAULT_SYSLOG_SOCKET, Export,
    MAX_DENY_TTL_SECS, MAX_EVENTS_PER_MESSAGE, MAX_HISTORY_MB, MAX_RETENTION_DAYS,
    MAX_RULE_DENIES_PER_MINUTE, MAX_SPOOL_MB, MAX_STOP_GRACE_SECS, MAX_STREAM_AGE_HOURS,
    Monitoring, NatsExport, Response, Storage, ThreatDetection,
};
pub use value::subject_token_problem;

use error::Source;

/// Where the system-wide configuration lives.
pub const SYSTEM_CONFIG_PATH: &str = "/etc/secmon/secmon.toml";

/// The shipped default configuration (`config/secmon.toml`), used when no file is found.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("../../../config/secmon.toml");

/// The name errors in the built-in default would carry (there are none: a unit test parses it).
pub const BUILT_IN_ORIGIN: &str = "<built-in secmon.toml>";

/// The whole configuration file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[monitoring]`: which probe families to attach.
    #[serde(deserialize_with = "value::section")]
    pub monitoring: Monitoring,
    /// `[threat_detection]`: how events are analysed.
    #[serde(deserialize_with = "value::section")]
    pub threat_detection: ThreatDetection,
    /// `[response]`: what happens with what the analysis finds.
    #[serde(deserialize_with = "value::section")]
    pub response: Response,
    /// `[storage]`: the event history (SQLite).
    #[serde(deserialize_with = "value::section")]
    pub storage: Storage,
    /// `[controller]`: the HTTP API and web dashboard.
    #[serde(deserialize_with = "value::section")]
    pub controller: Controller,
    /// `[export]`: `[export.nats]`, publishing to NATS JetStream.
    #[serde(deserialize_with = "value::section")]
    pub export: Export,
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

impl Config {
    /// Parse configuration text; `origin` is the file name used in error messages. Warnings
    /// (deprecated keys) are dropped: see [`Config::parse_with_warnings`].
    ///
    /// # Errors
    ///
    /// Invalid TOML, unknown sections or keys, values of the wrong type or out of range; the
    /// error carries the position (`origin:line:column`) and names the key.
    pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        Config::parse_with_warnings(text, origin).map(|(config, _)| config)
    }

    /// [`Config::parse`], also returning what the file should change (deprecated keys).
    ///
    /// # Errors
    ///
    /// As [`Config::parse`].
    pub fn parse_with_warnings(
        text: &str,
        origin: &Path,
    ) -> Result<(Config, Vec<ConfigWarning>), ConfigError> {
        let source = Source { text, origin };
        let mut root = DeTable::parse(text).map_err(|e| source.syntax_error(&e))?;
        let warnings = deprecated::take(root.get_mut(), &source)?;
        // The deserialiser consumes its tree; errors are placed in this copy.
        let tree = root.get_ref().clone();
        let config = Config::deserialize(toml::de::Deserializer::from(root))
            .map_err(|e| source.deserialize_error(&tree, &e))?;
        config.check_across_keys(&tree, &source)?;
        Ok((config, warnings))
    }

    /// The rule no single key's type can check: the webhook's secret is given one way only.
    fn check_across_keys(
        &self,
        tree: &DeTable<'_>,
        source: &Source<'_>,
    ) -> Result<(), ConfigError> {
        let response = &self.response;
        if response.webhook_header.is_some() && response.webhook_header_file.is_some() {
            let span = error::value_span(tree, "response", "webhook_header_file");
            return Err(ConfigError::InvalidValue {
                at: source.at(span.unwrap_or(0..0)),
                key: "webhook_header_file".to_string(),
                reason: "give webhook_header or webhook_header_file, not both".to_string(),
            });
        }
        self.check_nats_keys(tree, source)
    }

    /// `[export.nats]`: one way to authenticate, and a client certificate with its key.
    fn check_nats_keys(&self, tree: &DeTable<'_>, source: &Source<'_>) -> Result<(), ConfigError> {
        let nats = &self.export.nats;
        let problem = if nats.token_file.is_some() && nats.credentials.is_some() {
            Some(("credentials", "give token_file or credentials, not both"))
        } else if nats.cert.is_some() != nats.key.is_some() {
            if nats.cert.is_some() {
                Some(("cert", "cert and key go together: key is missing"))
            } else {
                Some(("key", "cert and key go together: cert is missing"))
            }
        } else {
            None
        };
        let Some((key, reason)) = problem else {
            return Ok(());
        };
        let span = tree
            .get("export")
            .and_then(|export| export.get_ref().as_table())
            .and_then(|export| export.get("nats"))
            .and_then(|nats| nats.get_ref().as_table())
            .and_then(|nats| nats.get(key))
            .map(|value| value.span());
        Err(ConfigError::InvalidValue {
            at: source.at(span.unwrap_or(0..0)),
            key: key.to_string(),
            reason: reason.to_string(),
        })
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
        Config::load_with_warnings(path, strict).map(|(config, _)| config)
    }

    /// [`Config::load_with`], also returning the file's warnings.
    fn load_with_warnings(
        path: &Path,
        strict: bool,
    ) -> Result<(Config, Vec<ConfigWarning>), ConfigError> {
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
        Config::parse_with_warnings(&text, path)
    }

    /// The configuration secmon starts with: `explicit` if given (an error if it cannot be
    /// loaded; there is no fallback), else [`SYSTEM_CONFIG_PATH`] if it exists, else the built-in
    /// default. Warnings about the file (deprecated keys) are printed on stderr: this runs at
    /// start, before any front end exists to show them.
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
        let source = match explicit {
            Some(path) => ConfigSource::Explicit(path.to_path_buf()),
            // `Err` means we cannot tell (e.g. /etc/secmon not searchable): try to read it, so
            // the user sees why instead of silently getting the defaults.
            None if system.try_exists().unwrap_or(true) => {
                ConfigSource::System(system.to_path_buf())
            }
            None => ConfigSource::BuiltIn,
        };
        let (config, warnings) = match source.path() {
            Some(path) => Config::load_with_warnings(path, crate::secure_fs::strict_modes())?,
            None => Config::parse_with_warnings(DEFAULT_CONFIG_TOML, Path::new(BUILT_IN_ORIGIN))?,
        };
        for warning in warnings {
            let warning = warning.to_string();
            eprintln!(
                "secmon: warning: {}",
                crate::sanitize::for_terminal(&warning)
            );
        }
        Ok((config, source))
    }
}
