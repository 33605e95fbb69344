//! Events on their way to the writer: encoded one after another into one buffer per batch
//! ([`Rows`]). Queueing an event costs copying its bytes instead of cloning it (a dozen heap
//! allocations made on the pipeline thread and freed on the writer's); the queue's size is
//! known exactly, so it is bounded in bytes; and the writer reads the fields in place. The
//! encoding lives only in memory, between the two threads of one process: it is not a file
//! format.
//!
//! A row: `u32` length of the rest, then the head (first and last time in nanoseconds, the
//! number of events it stands for: more than one when identical consecutive events were
//! coalesced, [`super::coalesce`]), then the body: the process context (length-prefixed, so the
//! writer recognises a known context by its bytes), then every other field of the event but
//! its time. Two events with equal bodies are the same event at different times.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::ser::{Serialize, SerializeSeq, Serializer};

use crate::event::{Event, EventType, Severity};

use super::row::to_ns;

/// Bytes before the body: length, first and last time, count.
const HEAD: usize = 4 + 8 + 8 + 8;

/// Encoded rows, in the order pushed.
#[derive(Clone, Debug, Default)]
pub struct Rows {
    buf: Vec<u8>,
    rows: usize,
    events: u64,
}

impl Rows {
    pub fn new() -> Rows {
        Rows::default()
    }

    /// Each event as a row of its own.
    pub fn from_events(events: &[Event]) -> Rows {
        let mut rows = Rows::new();
        for e in events {
            rows.push(e);
        }
        rows
    }

    /// Appends `e` as a row of one event.
    pub fn push(&mut self, e: &Event) {
        let ts = to_ns(e.timestamp);
        let at = self.start_row(ts, ts, 1);
        encode_body(e, &mut self.buf);
        self.end_row(at);
    }

    /// Appends a row of `count` events, the first at `first_ns` and the last at `last_ns`,
    /// whose body [`encode_body`] wrote.
    pub(crate) fn push_body(&mut self, first_ns: i64, last_ns: i64, count: u64, body: &[u8]) {
        let at = self.start_row(first_ns, last_ns, count);
        self.buf.extend_from_slice(body);
        self.end_row(at);
    }

    fn start_row(&mut self, first_ns: i64, last_ns: i64, count: u64) -> usize {
        let at = self.buf.len();
        put_u32(&mut self.buf, 0);
        put_i64(&mut self.buf, first_ns);
        put_i64(&mut self.buf, last_ns);
        put_u64(&mut self.buf, count);
        self.rows += 1;
        self.events += count;
        at
    }

    fn end_row(&mut self, at: usize) {
        let len = u32::try_from(self.buf.len() - at - 4).unwrap_or(u32::MAX);
        self.buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
    }

    /// Rows held.
    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Events the rows stand for (a coalesced row counts all of its events).
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Memory held: what the queue's bound counts.
    pub fn bytes(&self) -> usize {
        self.buf.capacity() + std::mem::size_of::<Rows>()
    }

    pub(crate) fn iter(&self) -> RowIter<'_> {
        RowIter {
            r: Reader { buf: &self.buf },
        }
    }
}

/// The rows of a [`Rows`], decoded in place.
pub(crate) struct RowIter<'a> {
    r: Reader<'a>,
}

/// One row as it was encoded; `row` is `None` if its body does not decode (never, unless the
/// encoder and decoder disagree: the row is then counted as failed, not stored).
pub(crate) struct Decoded<'a> {
    pub count: u64,
    pub row: Option<RowRef<'a>>,
}

impl<'a> Iterator for RowIter<'a> {
    type Item = Decoded<'a>;

    fn next(&mut self) -> Option<Decoded<'a>> {
        read_row(&mut self.r)
    }
}

/// Reads the row at the start of `r` (length, head, body); `None` at the end, or when the
/// length is malformed (then nothing more is read).
fn read_row<'a>(r: &mut Reader<'a>) -> Option<Decoded<'a>> {
    if r.buf.is_empty() {
        return None;
    }
    let Some(len) = r.u32() else {
        r.buf = &[];
        return None;
    };
    let len = len as usize;
    if len > r.buf.len() || len < HEAD - 4 {
        r.buf = &[];
        return None;
    }
    let (mut row, rest) = r.buf.split_at(len);
    r.buf = rest;
    let mut head = Reader { buf: row };
    let first_ns = head.i64().unwrap_or(0);
    let last_ns = head.i64().unwrap_or(0);
    let count = head.u64().unwrap_or(1);
    row = head.buf;
    Some(Decoded {
        count,
        row: decode_body(row, first_ns, last_ns, count),
    })
}

/// Appends `row` to a block's data (block.rs): its event id, then the row as [`Rows`] encodes
/// it, with the process context replaced by its id in the `contexts` table (8 bytes).
pub(crate) fn push_block_row(out: &mut Vec<u8>, id: i64, row: &RowRef<'_>, context_id: i64) {
    put_i64(out, id);
    let at = out.len();
    put_u32(out, 0);
    put_i64(out, row.first_ns);
    put_i64(out, row.last_ns);
    put_u64(out, row.count);
    put_u32(out, 8);
    put_i64(out, context_id);
    out.extend_from_slice(row.after_context);
    let len = u32::try_from(out.len() - at - 4).unwrap_or(u32::MAX);
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
}

/// The rows of a block's data (after its format byte), with their event ids.
pub(crate) struct BlockRowIter<'a> {
    r: Reader<'a>,
}

impl<'a> BlockRowIter<'a> {
    pub(crate) fn new(data: &'a [u8]) -> BlockRowIter<'a> {
        BlockRowIter {
            r: Reader { buf: data },
        }
    }
}

impl<'a> Iterator for BlockRowIter<'a> {
    /// The event id, and the row (`None` if it does not decode).
    type Item = (i64, Decoded<'a>);

    fn next(&mut self) -> Option<(i64, Decoded<'a>)> {
        if self.r.buf.is_empty() {
            return None;
        }
        let Some(id) = self.r.i64() else {
            self.r.buf = &[];
            return None;
        };
        read_row(&mut self.r).map(|decoded| (id, decoded))
    }
}

/// A list of strings inside a row (ancestors, `argv`, rules); serialises as a JSON array.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct StrList<'a> {
    n: u32,
    bytes: &'a [u8],
}

impl<'a> StrList<'a> {
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = &'a str> + use<'a> {
        let mut r = Reader { buf: self.bytes };
        (0..self.n).map_while(move |_| r.str())
    }

    pub fn to_vec(self) -> Vec<String> {
        self.iter().map(str::to_string).collect()
    }
}

impl Serialize for StrList<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.n as usize))?;
        for s in self.iter() {
            seq.serialize_element(s)?;
        }
        seq.end()
    }
}

/// The shared process context of a row.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ContextRef<'a> {
    pub user: &'a str,
    pub exe: &'a str,
    pub cmdline: &'a str,
    pub cgroup_id: u64,
    pub parent: &'a str,
    pub ancestors: StrList<'a>,
}

/// One row, its fields borrowed from the buffer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RowRef<'a> {
    pub first_ns: i64,
    /// `first_ns` unless the row stands for several events.
    pub last_ns: i64,
    pub count: u64,
    /// The context's encoding: equal bytes, equal context. In a block's row: the context's id
    /// (8 bytes, [`RowRef::context_id`]).
    pub context_bytes: &'a [u8],
    /// The body after the context: every field but the times, the count and the context.
    pub after_context: &'a [u8],
    pub event_type: EventType,
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub process: &'a str,
    pub file_path: Option<&'a str>,
    pub new_path: Option<&'a str>,
    pub flags: Option<&'a str>,
    pub syscall: Option<&'a str>,
    pub ptrace_request: Option<&'a str>,
    pub protocol: Option<&'a str>,
    pub bpf_prog_name: Option<&'a str>,
    pub module_params: Option<&'a str>,
    pub error: Option<&'a str>,
    pub exit_signal: Option<u32>,
    pub target_pid: Option<u32>,
    pub mode: Option<u32>,
    pub old_uid: Option<u32>,
    pub new_uid: Option<u32>,
    pub old_gid: Option<u32>,
    pub new_gid: Option<u32>,
    pub bpf_prog_type: Option<u32>,
    pub exit_code: Option<i32>,
    pub capabilities: Option<[u32; 3]>,
    pub source_ip: Option<IpAddr>,
    pub target_ip: Option<IpAddr>,
    pub source_port: Option<u16>,
    pub target_port: Option<u16>,
    pub bytes_sent: Option<u64>,
    pub bytes_received: Option<u64>,
    pub duration_ms: Option<f64>,
    pub attempts: Option<u64>,
    pub blocked: bool,
    pub truncated: bool,
    pub argv: Option<StrList<'a>>,
    pub label: &'a str,
    pub severity: Severity,
    pub risk_score: f64,
    pub detection_method: &'a str,
    pub recommendation: &'a str,
    pub rules: StrList<'a>,
    pub process_risk: f64,
    /// The response actions as JSON (`--json`'s `response`); empty when there are none.
    pub response_json: &'a str,
}

impl<'a> RowRef<'a> {
    /// The id in `contexts` that a block's row (block.rs) holds instead of its context.
    pub fn context_id(&self) -> Option<i64> {
        Some(i64::from_le_bytes(self.context_bytes.try_into().ok()?))
    }

    /// The process context, decoded from [`RowRef::context_bytes`].
    pub fn context(&self) -> Option<ContextRef<'a>> {
        let mut r = Reader {
            buf: self.context_bytes,
        };
        Some(ContextRef {
            user: r.str()?,
            exe: r.str()?,
            cmdline: r.str()?,
            cgroup_id: r.u64()?,
            parent: r.str()?,
            ancestors: r.list()?,
        })
    }
}

#[cfg(test)]
impl RowRef<'_> {
    /// The event back, as the writer saw it (at its first time).
    pub fn to_event(self) -> Event {
        let ctx = self.context().expect("context");
        let mut e = self.to_event_without_context();
        // `into`: these fields may become a shared string type.
        e.user = ctx.user.into();
        e.exe = ctx.exe.into();
        e.cmdline = ctx.cmdline.into();
        e.cgroup_id = ctx.cgroup_id;
        e.parent_process = ctx.parent.into();
        e.ancestors = ctx.ancestors.iter().map(Into::into).collect();
        e
    }
}

impl RowRef<'_> {
    /// The event back at its first time, without its process context (user, exe, command
    /// line, cgroup, parent, ancestors), which a block's row keeps in `contexts`. A response
    /// that does not parse is left out rather than hiding the event.
    pub fn to_event_without_context(self) -> Event {
        use crate::event::{Analysis, ResponseAction};
        let mut e = Event::new(self.event_type, super::row::from_ns(self.first_ns));
        e.pid = self.pid;
        e.tid = self.tid;
        e.ppid = self.ppid;
        e.uid = self.uid;
        e.process = self.process.into();
        let own = |s: Option<&str>| s.map(str::to_string);
        e.file_path = own(self.file_path);
        e.new_path = own(self.new_path);
        e.flags = self.flags.map(crate::event::SharedStr::from);
        e.syscall = self.syscall.map(crate::event::SharedStr::from);
        e.ptrace_request = own(self.ptrace_request);
        e.protocol = own(self.protocol);
        e.bpf_prog_name = own(self.bpf_prog_name);
        e.module_params = own(self.module_params);
        e.error = own(self.error);
        e.exit_signal = self.exit_signal;
        e.target_pid = self.target_pid;
        e.mode = self.mode;
        e.old_uid = self.old_uid;
        e.new_uid = self.new_uid;
        e.old_gid = self.old_gid;
        e.new_gid = self.new_gid;
        e.bpf_prog_type = self.bpf_prog_type;
        e.exit_code = self.exit_code;
        e.capabilities = self.capabilities;
        e.source_ip = self.source_ip;
        e.target_ip = self.target_ip;
        e.source_port = self.source_port;
        e.target_port = self.target_port;
        e.bytes_sent = self.bytes_sent;
        e.bytes_received = self.bytes_received;
        e.duration_ms = self.duration_ms;
        e.attempts = self.attempts;
        e.blocked = self.blocked;
        e.truncated = self.truncated;
        e.argv = self.argv.map(StrList::to_vec);
        e.analysis = Analysis {
            label: self.label.to_string(),
            severity: self.severity,
            risk_score: self.risk_score,
            detection_method: self.detection_method.to_string(),
            confidence: Analysis::confidence_of(self.detection_method),
            recommendation: self.recommendation.to_string(),
            rules: self.rules.to_vec(),
            process_risk: self.process_risk,
        };
        if !self.response_json.is_empty() {
            e.response =
                serde_json::from_str::<Vec<ResponseAction>>(self.response_json).unwrap_or_default();
        }
        e
    }
}

/// Writes every field of `e` but its time (the body of a row) to `out`.
pub(crate) fn encode_body(e: &Event, out: &mut Vec<u8>) {
    let at = out.len();
    put_u32(out, 0);
    put_str(out, e.user.as_str());
    put_str(out, e.exe.as_str());
    put_str(out, e.cmdline.as_str());
    put_u64(out, e.cgroup_id);
    put_str(out, e.parent_process.as_str());
    put_list(
        out,
        e.ancestors.iter().map(|a| a.as_str()),
        e.ancestors.len(),
    );
    let len = u32::try_from(out.len() - at - 4).unwrap_or(u32::MAX);
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());

    out.push(e.event_type as u8);
    put_u32(out, e.pid);
    put_u32(out, e.tid);
    put_u32(out, e.ppid);
    put_u32(out, e.uid);
    put_str(out, e.process.as_str());
    for s in [
        e.file_path.as_deref(),
        e.new_path.as_deref(),
        e.flags.as_deref(),
        e.syscall.as_deref(),
        e.ptrace_request.as_deref(),
        e.protocol.as_deref(),
        e.bpf_prog_name.as_deref(),
        e.module_params.as_deref(),
        e.error.as_deref(),
    ] {
        put_opt(out, s, put_str);
    }
    for n in [
        e.exit_signal,
        e.target_pid,
        e.mode,
        e.old_uid,
        e.new_uid,
        e.old_gid,
        e.new_gid,
        e.bpf_prog_type,
    ] {
        put_opt(out, n, put_u32);
    }
    put_opt(out, e.exit_code, |o, v| put_u32(o, v as u32));
    put_opt(out, e.capabilities, |o, c| {
        for v in c {
            put_u32(o, v);
        }
    });
    put_opt(out, e.source_ip, put_ip);
    put_opt(out, e.target_ip, put_ip);
    put_opt(out, e.source_port, |o, p| put_u32(o, u32::from(p)));
    put_opt(out, e.target_port, |o, p| put_u32(o, u32::from(p)));
    put_opt(out, e.bytes_sent, put_u64);
    put_opt(out, e.bytes_received, put_u64);
    put_opt(out, e.duration_ms, |o, v| put_u64(o, v.to_bits()));
    put_opt(out, e.attempts, put_u64);
    out.push(u8::from(e.blocked) | u8::from(e.truncated) << 1);
    put_opt(out, e.argv.as_ref(), |o, argv| {
        put_list(o, argv.iter().map(String::as_str), argv.len());
    });
    let a = &e.analysis;
    put_str(out, &a.label);
    out.push(match a.severity {
        Severity::Benign => 0,
        Severity::Suspicious => 1,
        Severity::Malicious => 2,
    });
    put_u64(out, a.risk_score.to_bits());
    put_str(out, &a.detection_method);
    put_str(out, &a.recommendation);
    put_list(out, a.rules.iter().map(String::as_str), a.rules.len());
    put_u64(out, a.process_risk.to_bits());
    if e.response.is_empty() {
        put_u32(out, 0);
    } else {
        // Rare (events a rule acted on): JSON here keeps the encoding simple. Serialising
        // plain structs into a String cannot fail; were it to, the row keeps no response.
        put_str(out, &serde_json::to_string(&e.response).unwrap_or_default());
    }
}

fn decode_body(body: &[u8], first_ns: i64, last_ns: i64, count: u64) -> Option<RowRef<'_>> {
    let mut r = Reader { buf: body };
    let context_len = r.u32()? as usize;
    let context_bytes = r.take(context_len)?;
    let after_context = r.buf;
    let event_type = *EventType::ALL.get(usize::from(r.u8()?))?;
    let pid = r.u32()?;
    let tid = r.u32()?;
    let ppid = r.u32()?;
    let uid = r.u32()?;
    let process = r.str()?;
    let mut strs = [None; 9];
    for s in &mut strs {
        *s = r.opt(Reader::str)?;
    }
    let [
        file_path,
        new_path,
        flags,
        syscall,
        ptrace_request,
        protocol,
        bpf_prog_name,
        module_params,
        error,
    ] = strs;
    let mut nums = [None; 8];
    for n in &mut nums {
        *n = r.opt(Reader::u32)?;
    }
    let [
        exit_signal,
        target_pid,
        mode,
        old_uid,
        new_uid,
        old_gid,
        new_gid,
        bpf_prog_type,
    ] = nums;
    let exit_code = r.opt(|r| r.u32().map(|v| v as i32))?;
    let capabilities = r.opt(|r| Some([r.u32()?, r.u32()?, r.u32()?]))?;
    let source_ip = r.opt(Reader::ip)?;
    let target_ip = r.opt(Reader::ip)?;
    let source_port = r.opt(|r| r.u32().and_then(|p| u16::try_from(p).ok()))?;
    let target_port = r.opt(|r| r.u32().and_then(|p| u16::try_from(p).ok()))?;
    let bytes_sent = r.opt(Reader::u64)?;
    let bytes_received = r.opt(Reader::u64)?;
    let duration_ms = r.opt(|r| r.u64().map(f64::from_bits))?;
    let attempts = r.opt(Reader::u64)?;
    let bits = r.u8()?;
    let argv = r.opt(Reader::list)?;
    let label = r.str()?;
    let severity = match r.u8()? {
        0 => Severity::Benign,
        1 => Severity::Suspicious,
        _ => Severity::Malicious,
    };
    let risk_score = f64::from_bits(r.u64()?);
    let detection_method = r.str()?;
    let recommendation = r.str()?;
    let rules = r.list()?;
    let process_risk = f64::from_bits(r.u64()?);
    let response_json = r.str()?;
    Some(RowRef {
        first_ns,
        last_ns,
        count,
        context_bytes,
        after_context,
        event_type,
        pid,
        tid,
        ppid,
        uid,
        process,
        file_path,
        new_path,
        flags,
        syscall,
        ptrace_request,
        protocol,
        bpf_prog_name,
        module_params,
        error,
        exit_signal,
        target_pid,
        mode,
        old_uid,
        new_uid,
        old_gid,
        new_gid,
        bpf_prog_type,
        exit_code,
        capabilities,
        source_ip,
        target_ip,
        source_port,
        target_port,
        bytes_sent,
        bytes_received,
        duration_ms,
        attempts,
        blocked: bits & 1 != 0,
        truncated: bits & 2 != 0,
        argv,
        label,
        severity,
        risk_score,
        detection_method,
        recommendation,
        rules,
        process_risk,
        response_json,
    })
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_i64(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Event strings are far below 4 GiB (the kernel's buffers bound them).
    put_u32(out, u32::try_from(s.len()).unwrap_or(u32::MAX));
    out.extend_from_slice(s.as_bytes());
}

fn put_list<'s>(out: &mut Vec<u8>, items: impl Iterator<Item = &'s str>, n: usize) {
    put_u32(out, u32::try_from(n).unwrap_or(u32::MAX));
    for s in items {
        put_str(out, s);
    }
}

fn put_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            out.push(4);
            out.extend_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            out.push(6);
            out.extend_from_slice(&v6.octets());
        }
    }
}

fn put_opt<T>(out: &mut Vec<u8>, value: Option<T>, put: impl FnOnce(&mut Vec<u8>, T)) {
    match value {
        None => out.push(0),
        Some(v) => {
            out.push(1);
            put(out, v);
        }
    }
}

/// Reads what the `put_*` functions wrote; `None` past the end or on a malformed value.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.buf.len() {
            return None;
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_le_bytes)
    }

    fn i64(&mut self) -> Option<i64> {
        self.array().map(i64::from_le_bytes)
    }

    fn str(&mut self) -> Option<&'a str> {
        let n = self.u32()? as usize;
        std::str::from_utf8(self.take(n)?).ok()
    }

    fn list(&mut self) -> Option<StrList<'a>> {
        let n = self.u32()?;
        let start = self.buf;
        for _ in 0..n {
            self.str()?;
        }
        let used = start.len() - self.buf.len();
        Some(StrList {
            n,
            bytes: &start[..used],
        })
    }

    fn ip(&mut self) -> Option<IpAddr> {
        match self.u8()? {
            4 => Some(IpAddr::V4(Ipv4Addr::from(self.array::<4>()?))),
            6 => Some(IpAddr::V6(Ipv6Addr::from(self.array::<16>()?))),
            _ => None,
        }
    }

    /// An optional value: `Some(None)` for absent, `None` if malformed.
    fn opt<T>(&mut self, read: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        match self.u8()? {
            0 => Some(None),
            1 => read(self).map(Some),
            _ => None,
        }
    }
}
