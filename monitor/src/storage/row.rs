//! Rows ([`super::rows`]) → table rows and back to [`Event`]s: the insert statement, the
//! shared process contexts, the `extra` JSON object and turning a selected row back into an
//! event.
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use rusqlite::types::{ToSql, ToSqlOutput, ValueRef};
use rusqlite::{CachedStatement, Row, Statement, Transaction, params};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use super::rows::{RowRef, StrList};
use crate::event::{
    AddressText, Analysis, Event, EventType, ResponseAction, Severity, SharedStr, parse_ip,
};

pub(crate) const INSERT_EVENT: &str = "INSERT INTO events (ts, event_type, pid, tid, ppid, uid, \
    process, ctx, file_path, new_path, src_ip, dst_ip, dst_port, label, severity, risk, method, \
    recommendation, rules, extra, response, count, last_ts, id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, \
    ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24)";

const INSERT_CONTEXT: &str = "INSERT INTO contexts (user, exe, cmdline, cgroup_id, parent, \
    ancestors, last_ts) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

const TOUCH_CONTEXT: &str = "UPDATE contexts SET last_ts = ?2 WHERE id = ?1 AND last_ts < ?2";

/// The columns [`event_from_row`] reads, for `FROM events e LEFT JOIN contexts c`.
pub(crate) const SELECT_COLUMNS: &str = "e.id, e.ts, e.event_type, e.pid, e.tid, e.ppid, e.uid, \
    e.process, c.user, c.exe, c.cmdline, c.cgroup_id, c.parent, c.ancestors, e.file_path, \
    e.new_path, e.src_ip, e.dst_ip, e.dst_port, e.label, e.severity, e.risk, e.method, \
    e.recommendation, e.rules, e.extra, e.response, e.count, e.last_ts";

/// Nanoseconds since the Unix epoch (saturating outside 1677–2262).
pub fn to_ns(t: DateTime<Utc>) -> i64 {
    t.timestamp_nanos_opt().unwrap_or(if t.timestamp() < 0 {
        i64::MIN
    } else {
        i64::MAX
    })
}

pub fn from_ns(ns: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(ns)
}

pub(crate) fn severity_code(s: Severity) -> i64 {
    match s {
        Severity::Benign => 0,
        Severity::Suspicious => 1,
        Severity::Malicious => 2,
    }
}

fn severity_from_code(code: i64) -> Severity {
    match code {
        2.. => Severity::Malicious,
        1 => Severity::Suspicious,
        _ => Severity::Benign,
    }
}

/// The type-specific fields without a column of their own (borrowed, for writing).
#[derive(Serialize)]
struct ExtraRef<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    argv: Option<StrList<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_signal: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ptrace_request: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target_pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    flags: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mode: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    syscall: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    old_uid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    new_uid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    old_gid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    new_gid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    capabilities: Option<[u32; 3]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    protocol: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source_port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes_sent: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes_received: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attempts: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bpf_prog_type: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bpf_prog_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    module_params: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    blocked: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    truncated: bool,
    /// `analysis.process_risk` (no column of its own: it is rarely non-zero).
    #[serde(skip_serializing_if = "Option::is_none")]
    process_risk: Option<f64>,
}

impl<'a> ExtraRef<'a> {
    fn of(e: &RowRef<'a>) -> ExtraRef<'a> {
        ExtraRef {
            argv: e.argv,
            exit_code: e.exit_code,
            exit_signal: e.exit_signal,
            ptrace_request: e.ptrace_request,
            target_pid: e.target_pid,
            flags: e.flags,
            mode: e.mode,
            syscall: e.syscall,
            old_uid: e.old_uid,
            new_uid: e.new_uid,
            old_gid: e.old_gid,
            new_gid: e.new_gid,
            capabilities: e.capabilities,
            protocol: e.protocol,
            source_port: e.source_port,
            bytes_sent: e.bytes_sent,
            bytes_received: e.bytes_received,
            duration_ms: e.duration_ms,
            error: e.error,
            attempts: e.attempts,
            bpf_prog_type: e.bpf_prog_type,
            bpf_prog_name: e.bpf_prog_name,
            module_params: e.module_params,
            blocked: e.blocked,
            truncated: e.truncated,
            process_risk: Some(e.process_risk).filter(|&r| r > 0.0),
        }
    }

    fn is_empty(&self) -> bool {
        self.argv.is_none()
            && self.exit_code.is_none()
            && self.exit_signal.is_none()
            && self.ptrace_request.is_none()
            && self.target_pid.is_none()
            && self.flags.is_none()
            && self.mode.is_none()
            && self.syscall.is_none()
            && self.old_uid.is_none()
            && self.new_uid.is_none()
            && self.old_gid.is_none()
            && self.new_gid.is_none()
            && self.capabilities.is_none()
            && self.protocol.is_none()
            && self.source_port.is_none()
            && self.bytes_sent.is_none()
            && self.bytes_received.is_none()
            && self.duration_ms.is_none()
            && self.error.is_none()
            && self.attempts.is_none()
            && self.bpf_prog_type.is_none()
            && self.bpf_prog_name.is_none()
            && self.module_params.is_none()
            && !self.blocked
            && !self.truncated
            && self.process_risk.is_none()
    }
}

/// The same fields, owned, for reading. Unknown keys are ignored (a newer secmon may add some).
#[derive(Default, Deserialize)]
#[serde(default)]
struct Extra {
    argv: Option<Vec<String>>,
    exit_code: Option<i32>,
    exit_signal: Option<u32>,
    ptrace_request: Option<String>,
    target_pid: Option<u32>,
    flags: Option<String>,
    mode: Option<u32>,
    syscall: Option<String>,
    old_uid: Option<u32>,
    new_uid: Option<u32>,
    old_gid: Option<u32>,
    new_gid: Option<u32>,
    capabilities: Option<[u32; 3]>,
    protocol: Option<String>,
    source_port: Option<u16>,
    bytes_sent: Option<u64>,
    bytes_received: Option<u64>,
    duration_ms: Option<f64>,
    error: Option<String>,
    attempts: Option<u64>,
    bpf_prog_type: Option<u32>,
    bpf_prog_name: Option<String>,
    module_params: Option<String>,
    blocked: bool,
    truncated: bool,
    process_risk: f64,
}

impl Extra {
    fn apply(self, e: &mut Event) {
        e.argv = self.argv;
        e.exit_code = self.exit_code;
        e.exit_signal = self.exit_signal;
        e.ptrace_request = self.ptrace_request;
        e.target_pid = self.target_pid;
        e.flags = self.flags.map(SharedStr::from);
        e.mode = self.mode;
        e.syscall = self.syscall.map(SharedStr::from);
        e.old_uid = self.old_uid;
        e.new_uid = self.new_uid;
        e.old_gid = self.old_gid;
        e.new_gid = self.new_gid;
        e.capabilities = self.capabilities;
        e.protocol = self.protocol;
        e.source_port = self.source_port;
        e.bytes_sent = self.bytes_sent;
        e.bytes_received = self.bytes_received;
        e.duration_ms = self.duration_ms;
        e.error = self.error;
        e.attempts = self.attempts;
        e.bpf_prog_type = self.bpf_prog_type;
        e.bpf_prog_name = self.bpf_prog_name;
        e.module_params = self.module_params;
        e.blocked = self.blocked;
        e.truncated = self.truncated;
        e.analysis.process_risk = self.process_risk;
    }
}

/// Context rows already written, so an event of a known process costs no extra row. A
/// context is recognised by its encoding ([`RowRef::context_bytes`]): first against the one
/// its pid used last (a comparison of bytes, no hashing: most events of a process repeat it),
/// then through a map keyed by a hash of the bytes. Bounded: cleared when it holds
/// [`ContextCache::MAX_BYTES`] of contexts (a context written twice is harmless), and after
/// anything that may invalidate ids (a rolled-back transaction, retention deleting unreferenced
/// contexts).
#[derive(Default)]
pub(crate) struct ContextCache {
    hasher: RandomState,
    /// Hash of the bytes (seeded at random: contexts hold attacker-chosen text) → the contexts
    /// with that hash. The tables below hash what is already a hash, a pid or an id: Fx is
    /// enough there, and it is several times cheaper than SipHash, once per stored event.
    map: FxHashMap<u64, Vec<Known>>,
    bytes: usize,
    /// The hash and id of the context each pid used last.
    by_pid: FxHashMap<u32, (u64, i64)>,
    /// The newest event time per context used in the current transaction.
    used: FxHashMap<i64, i64>,
}

impl ContextCache {
    const MAX_BYTES: usize = 4 << 20;
    const MAX_PIDS: usize = 65_536;

    pub(crate) fn clear(&mut self) {
        self.map.clear();
        self.by_pid.clear();
        self.bytes = 0;
        self.used.clear();
    }

    fn used(&mut self, id: i64, ts: i64) {
        let newest = self.used.entry(id).or_insert(ts);
        *newest = (*newest).max(ts);
    }

    /// Records in `contexts.last_ts` the newest use of every context this transaction used.
    pub(crate) fn touch_used(&mut self, tx: &Transaction<'_>) -> rusqlite::Result<()> {
        let mut stmt = tx.prepare_cached(TOUCH_CONTEXT)?;
        for (id, ts) in self.used.drain() {
            stmt.execute(params![id, ts])?;
        }
        Ok(())
    }

    fn find(&self, key: u64, bytes: &[u8]) -> Option<i64> {
        self.map
            .get(&key)?
            .iter()
            .find(|(b, _)| **b == *bytes)
            .map(|&(_, id)| id)
    }

    /// The id of `row`'s context, written now (with `insert`) if it is not known yet.
    fn id(
        &mut self,
        insert: &mut Statement<'_>,
        row: &RowRef<'_>,
        json: &mut Vec<u8>,
    ) -> rusqlite::Result<i64> {
        let bytes = row.context_bytes;
        let ts = row.last_ns;
        if let Some(&(key, id)) = self.by_pid.get(&row.pid)
            && self.find(key, bytes) == Some(id)
        {
            self.used(id, ts);
            return Ok(id);
        }
        let key = self.hasher.hash_one(bytes);
        let id = match self.find(key, bytes) {
            Some(id) => id,
            None => {
                let ctx = row.context().ok_or_else(|| {
                    rusqlite::Error::ToSqlConversionFailure("undecodable context".into())
                })?;
                json.clear();
                // Serialising strings into a Vec cannot fail.
                let _ = serde_json::to_writer(&mut *json, &ctx.ancestors);
                let cgroup = i64::try_from(ctx.cgroup_id).unwrap_or(i64::MAX);
                let id = insert.insert(params![
                    ctx.user,
                    ctx.exe,
                    ctx.cmdline,
                    cgroup,
                    ctx.parent,
                    Text(json),
                    ts,
                ])?;
                if self.bytes + bytes.len() > Self::MAX_BYTES {
                    self.clear();
                }
                self.bytes += bytes.len();
                self.map.entry(key).or_default().push((bytes.into(), id));
                id
            }
        };
        if self.by_pid.len() >= Self::MAX_PIDS {
            self.by_pid.clear();
        }
        self.by_pid.insert(row.pid, (key, id));
        self.used(id, ts);
        Ok(id)
    }
}

/// A context written before: its encoding and row id.
type Known = (Box<[u8]>, i64);

/// Text already encoded as UTF-8 (JSON that serde_json wrote), bound without checking it again.
struct Text<'a>(&'a [u8]);

impl ToSql for Text<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(ValueRef::Text(self.0)))
    }
}

/// Scratch buffers reused from one insert to the next.
#[derive(Default)]
pub(crate) struct Scratch {
    ancestors: Vec<u8>,
    rules: Vec<u8>,
    extra: Vec<u8>,
}

/// The statements of one transaction, prepared once for all its rows.
pub(crate) struct Statements<'c> {
    event: CachedStatement<'c>,
    context: CachedStatement<'c>,
}

impl<'c> Statements<'c> {
    pub(crate) fn new(tx: &'c Transaction<'_>) -> rusqlite::Result<Statements<'c>> {
        Ok(Statements {
            event: tx.prepare_cached(INSERT_EVENT)?,
            context: tx.prepare_cached(INSERT_CONTEXT)?,
        })
    }
}

/// The id in `contexts` of `e`'s context, written now if it is new.
pub(crate) fn context_id(
    statements: &mut Statements<'_>,
    contexts: &mut ContextCache,
    scratch: &mut Scratch,
    e: &RowRef<'_>,
) -> rusqlite::Result<i64> {
    contexts.id(&mut statements.context, e, &mut scratch.ancestors)
}

/// Inserts one row as event `id` (and its context, when new).
pub(crate) fn insert(
    statements: &mut Statements<'_>,
    contexts: &mut ContextCache,
    scratch: &mut Scratch,
    id: i64,
    e: &RowRef<'_>,
) -> rusqlite::Result<()> {
    let ctx = context_id(statements, contexts, scratch, e)?;
    let rules = if e.rules.is_empty() {
        None
    } else {
        scratch.rules.clear();
        // Serialising strings into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut scratch.rules, &e.rules);
        Some(Text(&scratch.rules))
    };
    let extra_fields = ExtraRef::of(e);
    let extra = if extra_fields.is_empty() {
        None
    } else {
        scratch.extra.clear();
        // Serialising plain fields into a Vec cannot fail; were it to, the event is stored
        // without them rather than not at all.
        if serde_json::to_writer(&mut scratch.extra, &extra_fields).is_err() {
            scratch.extra.clear();
            scratch.extra.extend_from_slice(b"{}");
        }
        Some(Text(&scratch.extra))
    };
    let recommendation = (!e.recommendation.is_empty()).then_some(e.recommendation);
    let response = (!e.response_json.is_empty()).then_some(e.response_json);
    let source = e.source_ip.map(AddressText::ip);
    let target = e.target_ip.map(AddressText::ip);
    statements.event.execute(params![
        e.first_ns,
        e.event_type.as_str(),
        e.pid,
        e.tid,
        e.ppid,
        e.uid,
        e.process,
        ctx,
        e.file_path,
        e.new_path,
        source.as_ref().map(AddressText::as_str),
        target.as_ref().map(AddressText::as_str),
        e.target_port,
        e.label,
        severity_code(e.severity),
        e.risk_score,
        e.detection_method,
        recommendation,
        rules,
        extra,
        response,
        i64::try_from(e.count).unwrap_or(i64::MAX),
        (e.count > 1).then_some(e.last_ns),
        id,
    ])?;
    Ok(())
}

/// One stored event read back: a row of the history.
#[derive(Clone, Debug, PartialEq)]
pub struct HistoryEvent {
    /// The row id: increases with insertion order.
    pub id: i64,
    /// The event (for a coalesced row, the first of its events: `event.timestamp` is the first
    /// one's time).
    pub event: Event,
    /// How many identical consecutive events the row stands for: 1, or more when they were
    /// coalesced.
    pub count: u64,
    /// The last of them, when `count` is more than 1.
    pub last_timestamp: Option<DateTime<Utc>>,
}

fn text_or_empty(row: &Row<'_>, idx: usize) -> rusqlite::Result<SharedStr> {
    Ok(row.get::<_, Option<SharedStr>>(idx)?.unwrap_or_default())
}

/// An address column: stored as the JSON output spells it.
fn address_column(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<IpAddr>> {
    let Some(text) = row.get::<_, Option<String>>(idx)? else {
        return Ok(None);
    };
    parse_ip(&text).map(Some).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            idx,
            rusqlite::types::Type::Text,
            "not an IP address".into(),
        )
    })
}

fn json_column<T: for<'de> Deserialize<'de> + Default>(
    row: &Row<'_>,
    idx: usize,
) -> rusqlite::Result<T> {
    match row.get::<_, Option<String>>(idx)? {
        None => Ok(T::default()),
        Some(text) => serde_json::from_str(&text).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e))
        }),
    }
}

/// A row selected with [`SELECT_COLUMNS`], back as an event.
pub(crate) fn event_from_row(row: &Row<'_>) -> rusqlite::Result<HistoryEvent> {
    let type_name: String = row.get(2)?;
    let event_type = EventType::from_name(&type_name).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            2,
            rusqlite::types::Type::Text,
            format!("unknown event type `{type_name}`").into(),
        )
    })?;
    let mut e = Event::new(event_type, from_ns(row.get(1)?));
    e.pid = row.get(3)?;
    e.tid = row.get(4)?;
    e.ppid = row.get(5)?;
    e.uid = row.get(6)?;
    e.process = row.get(7)?;
    e.user = text_or_empty(row, 8)?;
    e.exe = text_or_empty(row, 9)?;
    e.cmdline = text_or_empty(row, 10)?;
    e.cgroup_id = row
        .get::<_, Option<i64>>(11)?
        .map_or(0, |v| u64::try_from(v).unwrap_or(0));
    e.parent_process = text_or_empty(row, 12)?;
    e.ancestors = json_column(row, 13)?;
    e.file_path = row.get(14)?;
    e.new_path = row.get(15)?;
    e.source_ip = address_column(row, 16)?;
    e.target_ip = address_column(row, 17)?;
    e.target_port = row.get(18)?;
    e.analysis = Analysis {
        label: row.get(19)?,
        severity: severity_from_code(row.get(20)?),
        risk_score: row.get(21)?,
        confidence: Analysis::confidence_of(&row.get::<_, String>(22)?),
        detection_method: row.get(22)?,
        recommendation: text_or_empty(row, 23)?.to_string(),
        rules: json_column(row, 24)?,
        process_risk: 0.0,
    };
    // After the analysis: it carries `process_risk`.
    let extra: Extra = json_column(row, 25)?;
    extra.apply(&mut e);
    // Lenient: a response written by another secmon version that does not parse is left out
    // rather than hiding the event.
    e.response = row
        .get::<_, Option<String>>(26)?
        .and_then(|text| serde_json::from_str::<Vec<ResponseAction>>(&text).ok())
        .unwrap_or_default();
    let count = row.get::<_, i64>(27)?;
    Ok(HistoryEvent {
        id: row.get(0)?,
        event: e,
        count: u64::try_from(count).unwrap_or(1).max(1),
        last_timestamp: row.get::<_, Option<i64>>(28)?.map(from_ns),
    })
}
