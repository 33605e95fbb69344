//! The checked value types: each key's type, range and the wording of its errors, in one place.
//!
//! The section structs keep plain field types (`u32`, `PathBuf`, …) for the rest of secmon; a
//! field is read through its checked type with `#[serde(deserialize_with = "via::<Checked, _,
//! _>")]`. A checked type's visitor says what it expects (the `expecting` text becomes "wrong
//! type for `key`: expected …") and rejects bad values with a reason (it becomes "invalid value
//! for `key`: …"); [`super::error`] adds the file, line, column and key.

use std::fmt;
use std::marker::PhantomData;
use std::path::PathBuf;

use serde::de::{self, Deserialize, Deserializer, SeqAccess, Visitor};

use super::{
    MAX_DENY_TTL_SECS, MAX_EVENTS_PER_MESSAGE, MAX_HISTORY_MB, MAX_RETENTION_DAYS,
    MAX_RULE_DENIES_PER_MINUTE, MAX_SPOOL_MB, MAX_STOP_GRACE_SECS, MAX_STREAM_AGE_HOURS,
};
use crate::event::Severity;

/// Reads a field through its checked type `C`, keeping the field's plain type `T`.
pub(super) fn via<'de, C, T, D>(deserializer: D) -> Result<T, D::Error>
where
    C: Deserialize<'de> + Into<T>,
    D: Deserializer<'de>,
{
    C::deserialize(deserializer).map(Into::into)
}

/// [`via`] for an optional key: present means `Some`.
pub(super) fn via_some<'de, C, T, D>(deserializer: D) -> Result<Option<T>, D::Error>
where
    C: Deserialize<'de> + Into<T>,
    D: Deserializer<'de>,
{
    C::deserialize(deserializer).map(|checked| Some(checked.into()))
}

/// Reads a section of [`super::Config`]: a TOML table only.
pub(super) fn section<'de, T, D>(deserializer: D) -> Result<T, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    Section::deserialize(deserializer).map(|Section(section)| section)
}

/// A section: a TOML table only. A derived struct would also take an array, its items as the
/// fields in order (`monitoring = [false]`), which no one means.
struct Section<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Section<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SectionVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for SectionVisitor<T> {
            type Value = Section<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table (a [section])")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Section<T>, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(Section)
            }
        }
        deserializer.deserialize_map(SectionVisitor(PhantomData))
    }
}

/// A boolean, with a friendlier "expected" than serde's.
pub(super) struct Flag(bool);

impl From<Flag> for bool {
    fn from(flag: Flag) -> bool {
        flag.0
    }
}

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FlagVisitor;
        impl Visitor<'_> for FlagVisitor {
            type Value = Flag;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a boolean (true or false)")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Flag, E> {
                Ok(Flag(v))
            }
        }
        deserializer.deserialize_bool(FlagVisitor)
    }
}

/// `confidence_threshold`: a finite number in `[0, 1]`, written as an integer or a float.
pub(super) struct Threshold(f64);

impl From<Threshold> for f64 {
    fn from(threshold: Threshold) -> f64 {
        threshold.0
    }
}

impl Threshold {
    fn new<E: de::Error>(value: f64, written: &str) -> Result<Threshold, E> {
        if (0.0..=1.0).contains(&value) {
            Ok(Threshold(value))
        } else {
            Err(E::custom(format_args!("{written} is outside [0, 1]")))
        }
    }
}

impl<'de> Deserialize<'de> for Threshold {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ThresholdVisitor;
        impl Visitor<'_> for ThresholdVisitor {
            type Value = Threshold;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number between 0 and 1")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Threshold, E> {
                Threshold::new(v, &toml_float(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Threshold, E> {
                Threshold::new(v as f64, &v.to_string())
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Threshold, E> {
                Threshold::new(v as f64, &v.to_string())
            }
            fn visit_i128<E: de::Error>(self, v: i128) -> Result<Threshold, E> {
                Threshold::new(v as f64, &v.to_string())
            }
            fn visit_u128<E: de::Error>(self, v: u128) -> Result<Threshold, E> {
                Threshold::new(v as f64, &v.to_string())
            }
        }
        deserializer.deserialize_f64(ThresholdVisitor)
    }
}

/// A float as TOML spells it (`nan`, `inf`, `-inf`), so messages quote what the user can write.
fn toml_float(v: f64) -> String {
    if v.is_nan() {
        "nan".to_string()
    } else if v.is_infinite() {
        if v > 0.0 { "inf" } else { "-inf" }.to_string()
    } else {
        v.to_string()
    }
}

/// Reads any TOML integer (up to 128 bits) and checks it against `0..=max`.
struct WholeNumberVisitor {
    max: u64,
    expected: &'static str,
}

impl WholeNumberVisitor {
    fn check<E: de::Error>(&self, value: i128) -> Result<u64, E> {
        if value < 0 {
            return Err(E::custom(format_args!("{value} is negative")));
        }
        u64::try_from(value)
            .ok()
            .filter(|&n| n <= self.max)
            .ok_or_else(|| E::custom(format_args!("{value} is too large (at most {})", self.max)))
    }
}

impl Visitor<'_> for WholeNumberVisitor {
    type Value = u64;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expected)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        self.check(i128::from(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        self.check(i128::from(v))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<u64, E> {
        self.check(v)
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<u64, E> {
        match i128::try_from(v) {
            Ok(v) => self.check(v),
            Err(_) => Err(E::custom(format_args!(
                "{v} is too large (at most {})",
                self.max
            ))),
        }
    }
}

/// A whole number from 0 to `$max` held in `$int`, read with the "expected" text `$expected`.
macro_rules! bounded_whole_number {
    ($(#[$doc:meta])* $name:ident($int:ty), max = $max:expr, expected = $expected:literal) => {
        $(#[$doc])*
        pub(super) struct $name($int);

        impl From<$name> for $int {
            fn from(n: $name) -> $int {
                n.0
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let visitor = WholeNumberVisitor {
                    max: u64::from($max),
                    expected: $expected,
                };
                let n = deserializer.deserialize_u64(visitor)?;
                // Cannot fail: `n <= $max`, which is an `$int`.
                <$int>::try_from(n).map($name).map_err(de::Error::custom)
            }
        }
    };
}

bounded_whole_number!(
    /// `[storage] retention_days`: 0 (keep forever) to [`MAX_RETENTION_DAYS`].
    RetentionDays(u32),
    max = MAX_RETENTION_DAYS,
    expected = "a whole number of days (0: keep forever)"
);

bounded_whole_number!(
    /// `[storage] max_size_mb` and `[response] log_max_size_mb`: 0 (no limit) to
    /// [`MAX_HISTORY_MB`].
    Mebibytes(u64),
    max = MAX_HISTORY_MB,
    expected = "a whole number of MiB (0: no limit)"
);

bounded_whole_number!(
    /// `[response] deny_ttl_secs`: 0 (no expiry) to [`MAX_DENY_TTL_SECS`].
    DenyTtlSecs(u64),
    max = MAX_DENY_TTL_SECS,
    expected = "a whole number of seconds (0: no expiry)"
);

bounded_whole_number!(
    /// `[response] rule_denies_per_minute`: 0 (none) to [`MAX_RULE_DENIES_PER_MINUTE`].
    DeniesPerMinute(u32),
    max = MAX_RULE_DENIES_PER_MINUTE,
    expected = "a whole number a minute (0: none)"
);

/// Reads a string and hands it to `check`.
struct StringVisitor<T> {
    expected: &'static str,
    check: fn(String) -> Result<T, String>,
}

impl<T> Visitor<'_> for StringVisitor<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expected)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.check)(v.to_string()).map_err(E::custom)
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<T, E> {
        (self.check)(v).map_err(E::custom)
    }
}

fn read_string<'de, D, T>(
    deserializer: D,
    expected: &'static str,
    check: fn(String) -> Result<T, String>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    deserializer.deserialize_string(StringVisitor { expected, check })
}

/// A file path (the history, a log, a socket): any non-empty string.
pub(super) struct FilePath(PathBuf);

impl From<FilePath> for PathBuf {
    fn from(path: FilePath) -> PathBuf {
        path.0
    }
}

impl<'de> Deserialize<'de> for FilePath {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        read_string(deserializer, "a string (a file path)", |s| {
            if s.is_empty() {
                Err("must not be empty (leave the key out to use the default)".to_string())
            } else {
                Ok(FilePath(PathBuf::from(s)))
            }
        })
    }
}

/// `[response] alert_webhook`: an `http://` or `https://` URL ([`check_webhook`]).
pub(super) struct WebhookUrl(String);

impl From<WebhookUrl> for String {
    fn from(url: WebhookUrl) -> String {
        url.0
    }
}

impl<'de> Deserialize<'de> for WebhookUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        read_string(
            deserializer,
            "a string (an http:// or https:// URL)",
            |url| match check_webhook(&url) {
                Ok(()) => Ok(WebhookUrl(url)),
                // The URL may carry a secret: messages show it redacted.
                Err(why) => Err(format!("{:?} {why}", crate::secrets::redact_url(&url))),
            },
        )
    }
}

/// `[response] webhook_header`: an HTTP header line, `Name: value`. Its value is a secret, so
/// no message quotes it.
pub(super) struct HeaderLine(String);

impl From<HeaderLine> for String {
    fn from(line: HeaderLine) -> String {
        line.0
    }
}

impl<'de> Deserialize<'de> for HeaderLine {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        read_string(
            deserializer,
            "a string (an HTTP header line, \"Name: value\")",
            |line| {
                crate::secrets::parse_header(&line)?;
                Ok(HeaderLine(line))
            },
        )
    }
}

/// `[response] log_level`: a severity by name.
pub(super) struct LogLevel(Severity);

impl From<LogLevel> for Severity {
    fn from(level: LogLevel) -> Severity {
        level.0
    }
}

const LEVELS: [(&str, Severity); 3] = [
    ("benign", Severity::Benign),
    ("suspicious", Severity::Suspicious),
    ("malicious", Severity::Malicious),
];

impl<'de> Deserialize<'de> for LogLevel {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        read_string(
            deserializer,
            "a string (\"benign\", \"suspicious\" or \"malicious\")",
            |name| match LEVELS.iter().find(|(level, _)| *level == name) {
                Some(&(_, severity)) => Ok(LogLevel(severity)),
                None => {
                    let names: Vec<&str> = LEVELS.iter().map(|(level, _)| *level).collect();
                    Err(format!("{name:?} is not one of {}", names.join(", ")))
                }
            },
        )
    }
}

/// What the entries of a list of names are.
pub(super) trait ListItem {
    /// The entry, e.g. "a directory path".
    const WHAT: &'static str;
    /// The list, e.g. "an array of directory paths (strings)".
    const LIST: &'static str;
}

/// A list of non-empty strings; each entry's problems are reported as `key[index]`.
pub(super) struct NameList<Item>(Vec<String>, PhantomData<Item>);

/// `[threat_detection] rules_dirs`.
pub(super) struct Directory;
impl ListItem for Directory {
    const WHAT: &'static str = "a directory path";
    const LIST: &'static str = "an array of directory paths (strings)";
}

/// `[response] allowlist`.
pub(super) struct Program;
impl ListItem for Program {
    const WHAT: &'static str = "a program name or path";
    const LIST: &'static str = "an array of program names or paths (strings)";
}

/// `[response] system_binary_rules`.
pub(super) struct RuleName;
impl ListItem for RuleName {
    const WHAT: &'static str = "a rule name";
    const LIST: &'static str = "an array of rule names (strings)";
}

impl<Item> From<NameList<Item>> for Vec<String> {
    fn from(list: NameList<Item>) -> Vec<String> {
        list.0
    }
}

impl From<NameList<Directory>> for Vec<PathBuf> {
    fn from(list: NameList<Directory>) -> Vec<PathBuf> {
        list.0.into_iter().map(PathBuf::from).collect()
    }
}

/// One entry of a [`NameList`].
struct ListEntry<Item>(String, PhantomData<Item>);

impl<'de, Item: ListItem> Deserialize<'de> for ListEntry<Item> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntryVisitor<Item>(PhantomData<Item>);
        impl<Item: ListItem> Visitor<'_> for EntryVisitor<Item> {
            type Value = ListEntry<Item>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a string ({})", Item::WHAT)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                if v.is_empty() {
                    Err(E::custom(format_args!("{} must not be empty", Item::WHAT)))
                } else {
                    Ok(ListEntry(v.to_string(), PhantomData))
                }
            }
        }
        deserializer.deserialize_str(EntryVisitor(PhantomData))
    }
}

impl<'de, Item: ListItem> Deserialize<'de> for NameList<Item> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ListVisitor<Item>(PhantomData<Item>);
        impl<'de, Item: ListItem> Visitor<'de> for ListVisitor<Item> {
            type Value = NameList<Item>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(Item::LIST)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(ListEntry(entry, _)) = seq.next_element::<ListEntry<Item>>()? {
                    entries.push(entry);
                }
                Ok(NameList(entries, PhantomData))
            }
        }
        deserializer.deserialize_seq(ListVisitor(PhantomData))
    }
}

/// A deliberately simple URL check: `http://` or `https://`, a non-empty host, a numeric port if
/// one is given, and no whitespace or control characters. Returns why not, as a phrase that
/// follows the URL.
pub(super) fn check_webhook(url: &str) -> Result<(), &'static str> {
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

/// `[controller] listen`: an address and port, `127.0.0.1:9988` or `[::1]:9988`.
pub(super) struct ListenAddr(std::net::SocketAddr);

impl From<ListenAddr> for std::net::SocketAddr {
    fn from(addr: ListenAddr) -> std::net::SocketAddr {
        addr.0
    }
}

impl<'de> Deserialize<'de> for ListenAddr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        read_string(
            deserializer,
            "a string (an address and port, e.g. \"127.0.0.1:9988\")",
            |s| {
                s.parse().map(ListenAddr).map_err(|_| {
                    format!(
                        "{s:?} is not an address and port (e.g. \"127.0.0.1:9988\" or \
                         \"[::1]:9988\"; a host name is not accepted)"
                    )
                })
            },
        )
    }
}

/// `[controller] allowed_origins`.
pub(super) struct WebOrigin;
impl ListItem for WebOrigin {
    const WHAT: &'static str = "a web origin (https://host or https://host:port)";
    const LIST: &'static str =
        "an array of web origins (strings such as \"https://admin.example:9988\")";
}

bounded_whole_number!(
    /// `[export.nats] spool_max_mb`: 0 (no spool: what the server does not take is lost) to
    /// [`MAX_SPOOL_MB`].
    SpoolMebibytes(u64),
    max = MAX_SPOOL_MB,
    expected = "a whole number of MiB (0: no spool)"
);

bounded_whole_number!(
    /// `[export.nats] stream_max_age_hours`: 0 (no limit) to [`MAX_STREAM_AGE_HOURS`].
    StreamAgeHours(u64),
    max = MAX_STREAM_AGE_HOURS,
    expected = "a whole number of hours (0: no limit)"
);

bounded_whole_number!(
    /// `[export.nats] stop_grace_secs`: 0 (leave what is unacknowledged in the spool at once)
    /// to [`MAX_STOP_GRACE_SECS`].
    StopGraceSecs(u64),
    max = MAX_STOP_GRACE_SECS,
    expected = "a whole number of seconds"
);

bounded_whole_number!(
    /// `[export.nats] events_per_message`: 0 or 1 (one event per message) to
    /// [`MAX_EVENTS_PER_MESSAGE`].
    EventsPerMessage(u64),
    max = MAX_EVENTS_PER_MESSAGE,
    expected = "a whole number of events (1: one per message)"
);

/// Why `token` cannot be one token of a NATS subject, if it cannot: tokens are separated by
/// `.`, `*` and `>` are wildcards, and whitespace or control characters end a subject on the
/// wire.
pub fn subject_token_problem(token: &str) -> Option<&'static str> {
    if token.is_empty() {
        Some("must not be empty")
    } else if token.contains(['.', '*', '>']) {
        Some("must not contain `.`, `*` or `>`")
    } else if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Some("must not contain whitespace or control characters")
    } else {
        None
    }
}

/// `[export.nats] url`: `nats://`, `tls://` (or `ws://`-less plain `host:port`) URLs, several
/// separated by commas.
pub(super) struct NatsUrl(String);

impl From<NatsUrl> for String {
    fn from(url: NatsUrl) -> String {
        url.0
    }
}

impl<'de> Deserialize<'de> for NatsUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        read_string(deserializer, "a string (a nats:// or tls:// URL)", |urls| {
            for url in urls.split(',').map(str::trim) {
                check_nats_url(url).map_err(|why| {
                    // A URL may carry a user and password: shown redacted.
                    format!("{:?} {why}", crate::secrets::redact_url(url))
                })?;
            }
            Ok(NatsUrl(urls))
        })
    }
}

fn check_nats_url(url: &str) -> Result<(), &'static str> {
    let rest = ["nats://", "tls://"]
        .iter()
        .find_map(|scheme| url.strip_prefix(scheme))
        .ok_or("is not a nats:// or tls:// URL")?;
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains whitespace or control characters");
    }
    let host_port = rest.rsplit_once('@').map_or(rest, |(_, hp)| hp);
    let host_port = host_port.trim_end_matches('/');
    if host_port.is_empty() || host_port.starts_with(':') {
        return Err("has no host");
    }
    if let Some((_, port)) = host_port.rsplit_once(':')
        && !host_port.ends_with(']')
        && port.parse::<u16>().is_err()
    {
        return Err("has a port that is not a number from 0 to 65535");
    }
    Ok(())
}

/// `[export.nats] subject_prefix`: one or more subject tokens joined by `.`.
pub(super) struct SubjectPrefix(String);

impl From<SubjectPrefix> for String {
    fn from(prefix: SubjectPrefix) -> String {
        prefix.0
    }
}

impl<'de> Deserialize<'de> for SubjectPrefix {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        read_string(
            deserializer,
            "a string (subject tokens joined by `.`, e.g. \"secmon\")",
            |prefix| {
                for token in prefix.split('.') {
                    if let Some(why) = subject_token_problem(token) {
                        return Err(format!("{prefix:?}: each token between dots {why}"));
                    }
                }
                Ok(SubjectPrefix(prefix))
            },
        )
    }
}

/// `[export.nats] host`: one subject token.
pub(super) struct HostToken(String);

impl From<HostToken> for String {
    fn from(host: HostToken) -> String {
        host.0
    }
}

impl<'de> Deserialize<'de> for HostToken {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        read_string(
            deserializer,
            "a string (one subject token, e.g. \"web-1\")",
            |host| match subject_token_problem(&host) {
                Some(why) => Err(format!("{:?} {why}", host.escape_debug().to_string())),
                None => Ok(HostToken(host)),
            },
        )
    }
}

/// `[export.nats] stream`: a JetStream stream name (one subject token, no path separators).
pub(super) struct StreamName(String);

impl From<StreamName> for String {
    fn from(name: StreamName) -> String {
        name.0
    }
}

impl<'de> Deserialize<'de> for StreamName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        read_string(
            deserializer,
            "a string (a stream name, e.g. \"SECMON\")",
            |name| {
                let why = subject_token_problem(&name).or_else(|| {
                    name.contains(['/', '\\'])
                        .then_some("must not contain `/` or `\\`")
                });
                match why {
                    Some(why) => Err(format!("{:?} {why}", name.escape_debug().to_string())),
                    None => Ok(StreamName(name)),
                }
            },
        )
    }
}
