//! The decoded, enriched event: what every later stage (rules, UI, JSON output, storage) sees.
//!
//! One flat struct with optional fields keeps the JSON schema stable and simple to query: a field
//! is present exactly when it applies to the event type (documented in docs/json-schema.md).

use std::fmt::{self, Write as _};
use std::net::{IpAddr, SocketAddr};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use crate::shared_str::SharedStr;

/// The event types secmon reports. Their JSON names are a contract (`event_type`), spelled once,
/// in [`EVENT_TYPES`].
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    ProcessExec,
    ProcessFork,
    ProcessExit,
    Ptrace,
    FileOpen,
    FileWrite,
    FileDelete,
    FileRename,
    FileChmod,
    FileLink,
    PrivilegeChange,
    ModuleLoad,
    BpfLoad,
    NetConnect,
    NetAccept,
    NetListen,
    NetUdp,
    NetClose,
    NetConnectFailed,
}

/// Every event type with its name (JSON, history database, rules, `--type` filters) and the
/// probe family that produces it, in declaration order. The one table: [`EventType::ALL`],
/// [`EventType::NAMES`], `as_str`, `from_name`, `family` and the serde form derive from it.
const EVENT_TYPES: [(EventType, &str, Family); 19] = [
    (EventType::ProcessExec, "process_exec", Family::Process),
    (EventType::ProcessFork, "process_fork", Family::Process),
    (EventType::ProcessExit, "process_exit", Family::Process),
    (EventType::Ptrace, "ptrace", Family::Process),
    (EventType::FileOpen, "file_open", Family::File),
    (EventType::FileWrite, "file_write", Family::File),
    (EventType::FileDelete, "file_delete", Family::File),
    (EventType::FileRename, "file_rename", Family::File),
    (EventType::FileChmod, "file_chmod", Family::File),
    (EventType::FileLink, "file_link", Family::File),
    (
        EventType::PrivilegeChange,
        "privilege_change",
        Family::Process,
    ),
    (EventType::ModuleLoad, "module_load", Family::Kernel),
    (EventType::BpfLoad, "bpf_load", Family::Kernel),
    (EventType::NetConnect, "net_connect", Family::Network),
    (EventType::NetAccept, "net_accept", Family::Network),
    (EventType::NetListen, "net_listen", Family::Network),
    (EventType::NetUdp, "net_udp", Family::Network),
    (EventType::NetClose, "net_close", Family::Network),
    (
        EventType::NetConnectFailed,
        "net_connect_failed",
        Family::Network,
    ),
];

// `as_str` and `family` index the table by discriminant: a row out of order fails the build.
const _: () = {
    let mut i = 0;
    while i < EVENT_TYPES.len() {
        assert!(
            EVENT_TYPES[i].0 as usize == i,
            "EVENT_TYPES is out of order"
        );
        i += 1;
    }
};

impl EventType {
    pub const ALL: [EventType; EVENT_TYPES.len()] = {
        let mut all = [EventType::ProcessExec; EVENT_TYPES.len()];
        let mut i = 0;
        while i < all.len() {
            all[i] = EVENT_TYPES[i].0;
            i += 1;
        }
        all
    };

    /// The names, in [`EventType::ALL`] order.
    pub const NAMES: [&'static str; EVENT_TYPES.len()] = {
        let mut names = [""; EVENT_TYPES.len()];
        let mut i = 0;
        while i < names.len() {
            names[i] = EVENT_TYPES[i].1;
            i += 1;
        }
        names
    };

    pub fn as_str(self) -> &'static str {
        EVENT_TYPES[self as usize].1
    }

    /// The event type with this name (exactly as [`EventType::as_str`] spells it).
    pub fn from_name(name: &str) -> Option<EventType> {
        EVENT_TYPES
            .iter()
            .find(|(_, n, _)| *n == name)
            .map(|&(t, _, _)| t)
    }

    /// The probe family that produces this event type.
    pub fn family(self) -> Family {
        EVENT_TYPES[self as usize].2
    }
}

impl Serialize for EventType {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EventType {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Name;
        impl serde::de::Visitor<'_> for Name {
            type Value = EventType;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an event type name")
            }

            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<EventType, E> {
                // The message serde's derive gave: `unknown variant `x`, expected one of …`.
                EventType::from_name(name)
                    .ok_or_else(|| E::unknown_variant(name, &EventType::NAMES))
            }
        }
        deserializer.deserialize_str(Name)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Probe families, switched on and off as a unit (config, TUI keys 1/2/3).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    Process,
    File,
    Network,
    Kernel,
}

impl Family {
    pub const ALL: [Family; 4] = [
        Family::Process,
        Family::File,
        Family::Network,
        Family::Kernel,
    ];

    /// The family with this name (exactly as [`Family::as_str`] spells it).
    pub fn from_name(name: &str) -> Option<Family> {
        Family::ALL.into_iter().find(|f| f.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Family::Process => "process",
            Family::File => "file",
            Family::Network => "network",
            Family::Kernel => "kernel",
        }
    }

    /// Index used by the kernel's `CONFIG` family bit set (`monitor_common::family`).
    pub fn kernel_index(self) -> u32 {
        use monitor_common::family;
        match self {
            Family::Process => family::PROCESS,
            Family::File => family::FILE,
            Family::Network => family::NETWORK,
            Family::Kernel => family::KERNEL,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How bad the rule engine thinks an event is.
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    #[default]
    Benign,
    Suspicious,
    Malicious,
}

/// The confidence of a verdict of the seed heuristic alone (what the seed's `classify_threat`
/// reported). Here rather than in `rules`, which computes it, because [`Analysis`] derives it
/// back from `detection_method` for stored and replayed events.
pub const HEURISTIC_CONFIDENCE: f64 = 0.8;

/// The rule engine's verdict, present on every event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    pub label: String,
    pub severity: Severity,
    pub risk_score: f64,
    pub detection_method: String,
    /// How sure the method is of its verdict: 1.0 for rules, [`HEURISTIC_CONFIDENCE`] for the
    /// seed heuristic alone, 0.0 when nothing matched. Derived from `detection_method`
    /// ([`Analysis::confidence_of`]), so stored and replayed events get it back.
    #[serde(default)]
    pub confidence: f64,
    pub recommendation: String,
    pub rules: Vec<String>,
    /// The process's accumulated risk after this event: the scores of every rule it matched,
    /// summed, capped at 1 and halving every 10 minutes without a new match (the rules'
    /// `process.risk`). 0.0 for a process that never matched a rule.
    #[serde(default)]
    pub process_risk: f64,
}

impl Analysis {
    /// The confidence a detection method reports (see [`Analysis::confidence`]).
    pub fn confidence_of(detection_method: &str) -> f64 {
        match detection_method {
            "rule_based" => 1.0,
            "heuristic" => HEURISTIC_CONFIDENCE,
            _ => 0.0,
        }
    }

    /// Makes `self` the default verdict in place, keeping its buffers (see [`Event::reset`]).
    pub fn reset(&mut self) {
        let Analysis {
            label,
            severity,
            risk_score,
            detection_method,
            confidence,
            recommendation,
            rules,
            process_risk,
        } = self;
        set_text(label, DEFAULT_LABEL);
        *severity = Severity::Benign;
        set_text(detection_method, DEFAULT_METHOD);
        (*risk_score, *confidence, *process_risk) = (0.0, 0.0, 0.0);
        recommendation.clear();
        rules.clear();
    }
}

/// The label of an event no rule or heuristic flagged.
const DEFAULT_LABEL: &str = "Benign";
/// The detection method of an event nothing flagged.
const DEFAULT_METHOD: &str = "none";

/// `target = text`, reusing `target`'s buffer (no allocation when it holds the text already
/// or has room for it).
fn set_text(target: &mut String, text: &str) {
    if target != text {
        target.clear();
        target.push_str(text);
    }
}

impl Default for Analysis {
    fn default() -> Self {
        Analysis {
            label: DEFAULT_LABEL.to_string(),
            severity: Severity::Benign,
            risk_score: 0.0,
            detection_method: DEFAULT_METHOD.to_string(),
            confidence: 0.0,
            recommendation: String::new(),
            rules: Vec::new(),
            process_risk: 0.0,
        }
    }
}

/// One event, decoded from the kernel and enriched with process context.
///
/// Strings here are lossy UTF-8 conversions of untrusted bytes; they may still contain control
/// characters (JSON escapes them). Anything that writes to a terminal must go through
/// [`crate::sanitize`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Wall-clock time (RFC 3339, UTC) converted from the kernel's monotonic timestamp.
    pub timestamp: DateTime<Utc>,
    pub event_type: EventType,
    /// Thread-group id. For `process_fork`, the new child.
    pub pid: u32,
    pub tid: u32,
    /// Parent's pid (from the process table; 0 when unknown).
    pub ppid: u32,
    pub uid: u32,
    /// User name for `uid` (the number as text when it has no name).
    pub user: SharedStr,
    /// The task's comm (at most 15 bytes, set by the kernel from the executable name).
    pub process: SharedStr,
    /// Executable path (absolute, from the process table; empty when unknown).
    pub exe: SharedStr,
    /// Arguments joined by spaces.
    pub cmdline: SharedStr,
    pub cgroup_id: u64,
    /// Name of the parent process.
    #[serde(default)]
    pub parent_process: SharedStr,
    /// Names up the process tree, nearest first (bounded).
    #[serde(default)]
    pub ancestors: Vec<SharedStr>,

    // process_exec
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argv: Option<Vec<String>>,
    // process_exit
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_signal: Option<u32>,
    // ptrace
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ptrace_request: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_pid: Option<u32>,

    // file events
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_path: Option<String>,
    /// Symbolic open/unlinkat/rename flags, e.g. `O_WRONLY|O_CREAT|O_TRUNC`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flags: Option<SharedStr>,
    /// Permission bits (chmod, or open with O_CREAT), as a number: 0o4755 is 2541.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    /// The syscall that produced the event (e.g. `openat`, `renameat2`, `setresuid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syscall: Option<SharedStr>,

    // privilege_change
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_gid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_gid: Option<u32>,
    /// capset: effective, permitted, inheritable capability masks (low 32 bits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<[u32; 3]>,

    // network
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// Local address. Serialised as text (`127.0.0.1`, `::1`, `::ffff:10.0.0.1`: the standard
    /// library's spelling, the same as before the field was typed); read with [`parse_ip`].
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "address_from_text"
    )]
    pub source_ip: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_port: Option<u16>,
    /// Remote address (see `source_ip`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "address_from_text"
    )]
    pub target_ip: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_sent: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_received: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<f64>,
    /// `net_connect_failed`: the errno name (`ECONNREFUSED`, `ETIMEDOUT`...); absent when the
    /// failure was seen only by the socket (a non-blocking connect).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `net_connect_failed`: failed connects of this process to this address in the current
    /// window, this one included (see `enrich::failed_connects`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u64>,

    // kernel
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_prog_type: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_prog_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_params: Option<String>,

    /// Set when kernel enforcement acted on this event: the exec was killed with SIGKILL, or
    /// the connect was refused (EPERM).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub blocked: bool,

    /// Set when the kernel cut a string (path or argument) to its buffer size.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,

    pub analysis: Analysis,

    /// What the response layer did (or would have done) about this event, in order: blocks,
    /// then the alert, then the log line. Absent when nothing was done (docs/response.md).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub response: Vec<ResponseAction>,

    /// The machine the event came from, on a hub (`secmon-tui hub`): the host token of the
    /// NATS subject it arrived on, whatever the message said. Absent on the machine itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<SharedStr>,
}

/// The kind of a response action: the rule actions of docs/rules.md.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseKind {
    Log,
    Alert,
    SimulateBlock,
    Block,
}

impl ResponseKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ResponseKind::Log => "log",
            ResponseKind::Alert => "alert",
            ResponseKind::SimulateBlock => "simulate_block",
            ResponseKind::Block => "block",
        }
    }
}

/// How a response action went.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseResult {
    /// Carried out (logged, alerted, denied in the kernel, or stopped by the kernel).
    Done,
    /// Nothing was stopped: `detail` says what real enforcement would have done ("would block").
    Simulated,
    /// Not carried out on purpose (allowlisted, nothing blockable, already denied…): see `detail`.
    Skipped,
    /// Attempted and failed: `detail` has the error.
    Failed,
}

/// One action the response layer took or simulated for an event. A stable JSON object
/// (docs/json-schema.md): `action` and `result` are always present, the rest when they apply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseAction {
    pub action: ResponseKind,
    pub result: ResponseResult,
    /// The rule that asked for it (absent for heuristic alerts and for kernel kills).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// What is (or would be) blocked, e.g. `exec path /tmp/x` or `connect 10.0.0.1:443`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The kernel deny entry behind a real block (`secmon-tui unblock ID` removes it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deny_id: Option<u32>,
    /// One line for people: what was done, what would have been done, or why not.
    pub detail: String,
}

/// Parses an address as events spell it, also taking `[v6]` in brackets (as written next to a
/// port), for addresses read back as text: recordings, rule test events, the history.
pub fn parse_ip(text: &str) -> Option<IpAddr> {
    let bare = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    bare.parse().ok()
}

fn address_from_text<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<IpAddr>, D::Error> {
    let Some(text) = Option::<String>::deserialize(deserializer)? else {
        return Ok(None);
    };
    parse_ip(&text).map(Some).ok_or_else(|| {
        serde::de::Error::invalid_value(serde::de::Unexpected::Str(&text), &"an IP address")
    })
}

/// An address, or an `ip:port` endpoint (`[v6]:port`), spelled as the JSON output and the UI
/// spell it, formatted on the stack: text tests on addresses (a rule's `.startswith("10.")`,
/// the UI's filter) run for every event and must not allocate.
#[derive(Clone, Copy)]
pub struct AddressText {
    /// The longest, `[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535`, is 47 bytes.
    bytes: [u8; 56],
    len: u8,
}

impl AddressText {
    pub fn ip(ip: IpAddr) -> AddressText {
        AddressText::of(ip)
    }

    pub fn endpoint(ip: IpAddr, port: u16) -> AddressText {
        AddressText::of(SocketAddr::new(ip, port))
    }

    fn of(value: impl fmt::Display) -> AddressText {
        let mut text = AddressText {
            bytes: [0; 56],
            len: 0,
        };
        // Cannot fail: every address fits (see `bytes`), and `write_str` refuses rather than cut.
        let _ = write!(text, "{value}");
        text
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl fmt::Write for AddressText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let start = usize::from(self.len);
        let end = start + s.len();
        let slot = self.bytes.get_mut(start..end).ok_or(fmt::Error)?;
        slot.copy_from_slice(s.as_bytes());
        self.len = u8::try_from(end).map_err(|_| fmt::Error)?;
        Ok(())
    }
}

impl fmt::Debug for AddressText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl Event {
    /// Whether the process name, executable, command line, path or new path contains `text`,
    /// ignoring ASCII case: the fields both the UI's and the dashboard's text filters search
    /// (each adds its own: addresses, label, host).
    pub fn names_or_paths_contain(&self, text: &str) -> bool {
        let hit = |field: &str| contains_ignore_case(field, text);
        hit(&self.process)
            || hit(&self.exe)
            || hit(&self.cmdline)
            || self.file_path.as_deref().is_some_and(hit)
            || self.new_path.as_deref().is_some_and(hit)
    }
}

/// What makes two events' process contexts the same: the parent, user and cgroup numbers
/// equal, and each text (user, name, executable, command line, parent's name, ancestors) the
/// same shared allocation ([`SharedStr::ptr_eq`]). The enricher gives every event of a process
/// the process table's references, so this is true from one event of a process to the next
/// until it execs, forks, changes ids or is renamed — a few pointer comparisons instead of
/// comparing the texts.
///
/// The key holds its own references to those texts, so an allocation cannot be freed and
/// reused for another text while a key compares against it. Caches of what depends on the
/// context alone use it: the JSON of the context, the rules' verdicts on it.
#[derive(Clone, Debug)]
pub struct ContextKey {
    ppid: u32,
    uid: u32,
    cgroup_id: u64,
    texts: [SharedStr; 5],
    ancestors: Vec<SharedStr>,
}

/// The event's context texts, in the order [`ContextKey::texts`] keeps them.
fn context_texts(e: &Event) -> [&SharedStr; 5] {
    [&e.user, &e.process, &e.exe, &e.cmdline, &e.parent_process]
}

impl ContextKey {
    pub fn of(event: &Event) -> ContextKey {
        ContextKey {
            ppid: event.ppid,
            uid: event.uid,
            cgroup_id: event.cgroup_id,
            texts: context_texts(event).map(SharedStr::clone),
            ancestors: event.ancestors.clone(),
        }
    }

    /// Whether `event`'s context is the one this key was taken from.
    pub fn matches(&self, event: &Event) -> bool {
        self.ppid == event.ppid
            && self.uid == event.uid
            && self.cgroup_id == event.cgroup_id
            && self
                .texts
                .iter()
                .zip(context_texts(event))
                .all(|(kept, now)| kept.ptr_eq(now))
            && self.ancestors.len() == event.ancestors.len()
            && self
                .ancestors
                .iter()
                .zip(&event.ancestors)
                .all(|(kept, now)| kept.ptr_eq(now))
    }

    /// Becomes `event`'s key, reusing the ancestors' vector.
    pub fn set_to(&mut self, event: &Event) {
        self.ppid = event.ppid;
        self.uid = event.uid;
        self.cgroup_id = event.cgroup_id;
        self.texts = context_texts(event).map(SharedStr::clone);
        self.ancestors.clone_from(&event.ancestors);
    }
}

#[cfg(test)]
impl Event {
    /// Takes `other`'s process context (every field [`ContextKey`] compares), sharing its
    /// texts as the enricher shares the process table's: for tests of what is kept per
    /// context.
    pub(crate) fn take_context_of(&mut self, other: &Event) {
        self.ppid = other.ppid;
        self.uid = other.uid;
        self.cgroup_id = other.cgroup_id;
        self.user = other.user.clone();
        self.process = other.process.clone();
        self.exe = other.exe.clone();
        self.cmdline = other.cmdline.clone();
        self.parent_process = other.parent_process.clone();
        self.ancestors = other.ancestors.clone();
    }
}

/// ASCII-case-insensitive `haystack.contains(needle)`, without allocating (the UI's and the
/// dashboard's filters test every event's fields with it).
pub fn contains_ignore_case(haystack: &str, needle: &str) -> bool {
    let (h, n) = (haystack.as_bytes(), needle.as_bytes());
    if n.is_empty() {
        return true;
    }
    if n.len() > h.len() {
        return false;
    }
    h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
}

impl Event {
    /// An event with every optional field empty; decoders fill in what applies.
    pub fn new(event_type: EventType, timestamp: DateTime<Utc>) -> Event {
        Event {
            timestamp,
            event_type,
            pid: 0,
            tid: 0,
            ppid: 0,
            uid: 0,
            user: SharedStr::default(),
            process: SharedStr::default(),
            exe: SharedStr::default(),
            cmdline: SharedStr::default(),
            cgroup_id: 0,
            parent_process: SharedStr::default(),
            ancestors: Vec::new(),
            argv: None,
            exit_code: None,
            exit_signal: None,
            ptrace_request: None,
            target_pid: None,
            file_path: None,
            new_path: None,
            flags: None,
            mode: None,
            syscall: None,
            old_uid: None,
            new_uid: None,
            old_gid: None,
            new_gid: None,
            capabilities: None,
            protocol: None,
            source_ip: None,
            source_port: None,
            target_ip: None,
            target_port: None,
            bytes_sent: None,
            bytes_received: None,
            duration_ms: None,
            error: None,
            attempts: None,
            bpf_prog_type: None,
            bpf_prog_name: None,
            module_params: None,
            blocked: false,
            truncated: false,
            analysis: Analysis::default(),
            response: Vec::new(),
            host: None,
        }
    }

    pub fn family(&self) -> Family {
        self.event_type.family()
    }

    /// Makes `self` what [`Event::new`] returns, in place: an event slot reused for the next
    /// record (the pipeline builds each event in one slot instead of returning ~800 bytes by
    /// value through every stage). Keeps the buffers it can: the ancestors', the analysis'
    /// label, method, recommendation and rules, the response's.
    ///
    /// Every field is named (no `..`), so a field added to [`Event`] and not reset here fails
    /// the build instead of leaking from one event into the next.
    pub fn reset(&mut self, event_type: EventType, timestamp: DateTime<Utc>) {
        let Event {
            timestamp: at,
            event_type: kind,
            pid,
            tid,
            ppid,
            uid,
            user,
            process,
            exe,
            cmdline,
            cgroup_id,
            parent_process,
            ancestors,
            argv,
            exit_code,
            exit_signal,
            ptrace_request,
            target_pid,
            file_path,
            new_path,
            flags,
            mode,
            syscall,
            old_uid,
            new_uid,
            old_gid,
            new_gid,
            capabilities,
            protocol,
            source_ip,
            source_port,
            target_ip,
            target_port,
            bytes_sent,
            bytes_received,
            duration_ms,
            error,
            attempts,
            bpf_prog_type,
            bpf_prog_name,
            module_params,
            blocked,
            truncated,
            analysis,
            response,
            host,
        } = self;
        *at = timestamp;
        *kind = event_type;
        (*pid, *tid, *ppid, *uid, *cgroup_id) = (0, 0, 0, 0, 0);
        for text in [user, process, exe, cmdline, parent_process] {
            *text = SharedStr::default();
        }
        ancestors.clear();
        *argv = None;
        (*exit_code, *exit_signal, *target_pid) = (None, None, None);
        for text in [
            ptrace_request,
            file_path,
            new_path,
            protocol,
            error,
            bpf_prog_name,
            module_params,
        ] {
            *text = None;
        }
        (*flags, *syscall) = (None, None);
        *mode = None;
        (*old_uid, *new_uid, *old_gid, *new_gid) = (None, None, None, None);
        *capabilities = None;
        (*source_ip, *target_ip) = (None, None);
        (*source_port, *target_port) = (None, None);
        (*bytes_sent, *bytes_received, *attempts) = (None, None, None);
        *duration_ms = None;
        *host = None;
        (*bpf_prog_type, *blocked, *truncated) = (None, false, false);
        analysis.reset();
        response.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_type_names_match_serde() {
        for t in EventType::ALL {
            let json = serde_json::to_string(&t).expect("serialise");
            assert_eq!(json, format!("\"{}\"", t.as_str()));
        }
    }

    #[test]
    fn event_type_names_round_trip() {
        for (i, t) in EventType::ALL.into_iter().enumerate() {
            assert_eq!(EventType::NAMES[i], t.as_str());
            assert_eq!(EventType::from_name(t.as_str()), Some(t));
            let back: EventType =
                serde_json::from_value(serde_json::Value::from(t.as_str())).expect("a name");
            assert_eq!(back, t);
        }
        assert_eq!(EventType::from_name("file"), None);
        assert_eq!(EventType::from_name("FILE_OPEN"), None);
        let e = serde_json::from_str::<EventType>("\"nope\"").expect_err("unknown");
        assert!(
            e.to_string()
                .starts_with("unknown variant `nope`, expected one of `process_exec`, "),
            "{e}"
        );
        assert_eq!(Family::from_name("network"), Some(Family::Network));
        assert_eq!(Family::from_name("net"), None);
    }

    #[test]
    fn addresses_are_spelled_as_before_they_were_typed() {
        let ip = |text: &str| text.parse::<IpAddr>().expect("an address");
        let mut e = Event::new(EventType::NetConnect, DateTime::UNIX_EPOCH);
        e.source_ip = Some(ip("::ffff:127.0.0.1"));
        e.target_ip = Some(ip("2001:db8::1"));
        let v = serde_json::to_value(&e).expect("serialise");
        assert_eq!(v["source_ip"], "::ffff:127.0.0.1");
        assert_eq!(v["target_ip"], "2001:db8::1");
        let back: Event = serde_json::from_value(v).expect("deserialise");
        assert_eq!(back, e);
        assert_eq!(parse_ip("[::1]"), Some("::1".parse().expect("ip")));
        assert_eq!(parse_ip("10.0.0.1"), Some(ip("10.0.0.1")));
        assert_eq!(parse_ip("[10.0.0.1"), None);
        assert_eq!(parse_ip("localhost"), None);
        let bad = serde_json::json!({"timestamp": "1970-01-01T00:00:00Z",
            "event_type": "net_connect", "pid": 1, "tid": 1, "ppid": 0, "uid": 0, "user": "",
            "process": "", "exe": "", "cmdline": "", "cgroup_id": 0, "analysis": Analysis::default(),
            "target_ip": "1.2.3"});
        let e = serde_json::from_value::<Event>(bad).expect_err("no address");
        assert!(e.to_string().contains("expected an IP address"), "{e}");
        for (text, port, endpoint) in [
            ("10.0.0.1", 443, "10.0.0.1:443"),
            ("::1", 22, "[::1]:22"),
            (
                "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255",
                65535,
                "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
            ),
            ("::ffff:255.255.255.255", 1, "[::ffff:255.255.255.255]:1"),
        ] {
            assert_eq!(AddressText::ip(ip(text)).as_str(), ip(text).to_string());
            assert_eq!(AddressText::endpoint(ip(text), port).as_str(), endpoint);
        }
    }

    #[test]
    fn a_reset_slot_is_a_new_event() {
        let at = DateTime::from_timestamp(1_700_000_000, 5).expect("a time");
        let mut e = Event::new(EventType::ProcessExec, DateTime::UNIX_EPOCH);
        e.pid = 7;
        e.user = "alice".into();
        e.ancestors = vec!["bash".into(), "sshd".into()];
        e.argv = Some(vec!["ls".to_string()]);
        e.file_path = Some("/etc/shadow".to_string());
        e.flags = Some("O_RDONLY".into());
        e.source_ip = Some(IpAddr::from([10, 0, 0, 1]));
        e.duration_ms = Some(1.5);
        e.blocked = true;
        e.truncated = true;
        e.host = Some("web-1".into());
        e.analysis.label = "Shadow Read".to_string();
        e.analysis.detection_method = "rule_based".to_string();
        e.analysis.rules = vec!["shadow_file_read".to_string()];
        e.analysis.risk_score = 0.7;
        e.response.push(ResponseAction {
            action: ResponseKind::Log,
            result: ResponseResult::Done,
            rule: None,
            target: None,
            deny_id: None,
            detail: "logged".to_string(),
        });
        e.reset(EventType::FileOpen, at);
        assert_eq!(e, Event::new(EventType::FileOpen, at));
    }

    #[test]
    fn optional_fields_are_omitted() {
        let e = Event::new(EventType::FileOpen, DateTime::UNIX_EPOCH);
        let v = serde_json::to_value(&e).expect("serialise");
        assert!(v.get("file_path").is_none());
        assert_eq!(v["analysis"]["severity"], "benign");
        assert_eq!(v["analysis"]["risk_score"], 0.0);
        assert_eq!(v["timestamp"], "1970-01-01T00:00:00Z");
    }
}
