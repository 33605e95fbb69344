//! An [`Event`] as one JSON object, written by hand: the per-event serialiser of every output
//! that writes events (`--json`, recordings, the web controller's stream, alerts).
//!
//! Why it exists: serde_json spent about a third of the pipeline's userspace time on events,
//! most of it escaping strings byte by byte, writing each key as an escaped string and making
//! many small writes. Here every key is one pre-escaped literal (`,"pid":`), strings are
//! scanned eight bytes at a time and copied in clean runs, timestamps are written digit by
//! digit, and nothing is allocated beyond the output buffer's growth.
//!
//! The contract: the bytes are exactly those of `serde_json::to_writer(out, event)` with
//! [`Event`]'s derived `Serialize` (field order, the `skip_serializing_if`s, chrono's RFC 3339
//! timestamps, addresses as text, `null` for a non-finite float). The derive stays the
//! reference (and `Deserialize` reads this output back); the tests compare both on fixed and
//! generated events, and fail when a field of [`Event`] is missing here.

use std::io::Write as _;
use std::net::IpAddr;

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde_json::ser::{CompactFormatter, Formatter as _};

use crate::event::{
    AddressText, Analysis, ContextKey, Event, ResponseAction, ResponseResult, Severity,
};

/// `event` as a JSON text: what `serde_json::to_string(event)` returns.
pub fn event_to_string(event: &Event) -> String {
    let mut json = Vec::with_capacity(1024);
    write_event(&mut json, event);
    into_text(json)
}

/// What the writer wrote, as a `String`. It is UTF-8 by construction (strings are copied
/// whole, or cut only before and after ASCII bytes), so the check never fails; it is kept
/// rather than trusted, and would replace, not panic.
pub fn into_text(json: Vec<u8>) -> String {
    String::from_utf8(json)
        .unwrap_or_else(|invalid| String::from_utf8_lossy(invalid.as_bytes()).into_owned())
}

/// `,"name":` — a key after an object's first, quoted and with its colon, as one literal.
macro_rules! key {
    ($name:literal) => {
        concat!(",\"", $name, "\":").as_bytes()
    };
}

/// Appends `event` as one JSON object (no newline).
pub fn write_event(out: &mut Vec<u8>, event: &Event) {
    write_head(out, event, write_timestamp);
    write_context(out, event);
    write_rest(out, event);
}

/// [`write_event`], with the process context (`ppid` … `ancestors`) taken from `cache` when
/// the event's process wrote the same context before: the same bytes, without escaping the
/// same command line again for every event of a process.
pub fn write_event_cached(out: &mut Vec<u8>, event: &Event, cache: &mut ContextCache) {
    write_head(out, event, |out, timestamp| {
        cache.second.write(out, timestamp)
    });
    cache.write(out, event);
    write_rest(out, event);
}

/// How many processes' contexts a [`ContextCache`] holds: one slot per pid modulo this.
const CONTEXT_SLOTS: usize = 64;

/// A context longer than this (a long command line) is written each time, not kept: the
/// cache stays within `CONTEXT_SLOTS` × this many bytes.
const MAX_CACHED_CONTEXT: usize = 4096;

/// The JSON of the process context of recent processes (user, name, executable, command
/// line, cgroup, parent, ancestors), as [`write_event`] writes it.
///
/// Why: that text changes only at exec, fork, setuid or a rename, yet it was a third of the
/// JSON writer's work per event, most of it scanning the same command line for characters
/// to escape. A slot is reused while every field of the context is the same: the integers
/// equal, and each text the same shared allocation ([`ContextKey`]).
///
/// It also keeps the date and time of the last whole second written ([`CachedSecond`]).
#[derive(Default)]
pub struct ContextCache {
    slots: Vec<Option<CachedContext>>,
    second: CachedSecond,
}

/// The text of the last whole second [`write_timestamp`] wrote, `"YYYY-MM-DDTHH:MM:SS`: the
/// events of a busy second share it, and only their fraction is written each time (the date
/// and the time's digits were a tenth of the JSON writer's work per event).
#[derive(Default)]
struct CachedSecond {
    /// The day (days since the common era) and second of the day, when `text` is set.
    key: Option<(i32, u32)>,
    text: [u8; SECOND_TEXT_LEN],
}

/// `"YYYY-MM-DDTHH:MM:SS`: the opening quote and 19 characters (years 0 to 9999).
const SECOND_TEXT_LEN: usize = 20;

impl CachedSecond {
    /// [`write_timestamp`], with the whole second copied when it is the last one written.
    fn write(&mut self, out: &mut Vec<u8>, timestamp: &DateTime<Utc>) {
        let at = timestamp.naive_utc();
        let nanos = at.nanosecond();
        // A leap second (nanoseconds ≥ 10⁹) or a year of other than four digits: the full path.
        if nanos >= 1_000_000_000 || !(0..=9999).contains(&at.year()) {
            write_timestamp(out, timestamp);
            return;
        }
        let key = (at.num_days_from_ce(), at.num_seconds_from_midnight());
        if self.key != Some(key) {
            let start = out.len();
            write_timestamp(out, timestamp);
            // The first 20 bytes are the whole second whatever the fraction.
            self.text
                .copy_from_slice(&out[start..start + SECOND_TEXT_LEN]);
            self.key = Some(key);
            return;
        }
        out.extend_from_slice(&self.text);
        write_fraction(out, nanos);
        out.extend_from_slice(b"Z\"");
    }
}

struct CachedContext {
    key: ContextKey,
    json: Vec<u8>,
}

impl ContextCache {
    fn write(&mut self, out: &mut Vec<u8>, event: &Event) {
        if self.slots.is_empty() {
            self.slots.resize_with(CONTEXT_SLOTS, || None);
        }
        // `pid % CONTEXT_SLOTS` is below the slots' length.
        let slot = &mut self.slots[event.pid as usize % CONTEXT_SLOTS];
        if let Some(kept) = slot
            && kept.key.matches(event)
        {
            out.extend_from_slice(&kept.json);
            return;
        }
        let start = out.len();
        write_context(out, event);
        let written = &out[start..];
        if written.len() > MAX_CACHED_CONTEXT {
            *slot = None;
            return;
        }
        match slot {
            Some(kept) => {
                kept.key.set_to(event);
                kept.json.clear();
                kept.json.extend_from_slice(written);
            }
            None => {
                *slot = Some(CachedContext {
                    key: ContextKey::of(event),
                    json: written.to_vec(),
                })
            }
        }
    }
}

/// `{"timestamp":…,"event_type":…,"pid":…,"tid":…`: what differs from event to event of a
/// process. The timestamp is written by `timestamp`: [`write_timestamp`], or a
/// [`CachedSecond`]'s `write`.
fn write_head(
    out: &mut Vec<u8>,
    event: &Event,
    timestamp: impl FnOnce(&mut Vec<u8>, &DateTime<Utc>),
) {
    out.extend_from_slice(b"{\"timestamp\":");
    timestamp(out, &event.timestamp);
    out.extend_from_slice(key!("event_type"));
    write_str(out, event.event_type.as_str());
    write_int(out, key!("pid"), event.pid);
    write_int(out, key!("tid"), event.tid);
}

/// Everything after the process context, to the closing brace.
fn write_rest(out: &mut Vec<u8>, event: &Event) {
    write_specifics(out, event);
    if event.blocked {
        out.extend_from_slice(b",\"blocked\":true");
    }
    if event.truncated {
        out.extend_from_slice(b",\"truncated\":true");
    }
    out.extend_from_slice(key!("analysis"));
    write_analysis(out, &event.analysis);
    if !event.response.is_empty() {
        out.extend_from_slice(key!("response"));
        write_array(out, &event.response, write_response_action);
    }
    if let Some(host) = &event.host {
        write_str_field(out, key!("host"), host.as_str());
    }
    out.push(b'}');
}

/// The fields every event has after its pid and tid: its process's context, the same for
/// every event of the process until it execs, forks, changes ids or is renamed.
fn write_context(out: &mut Vec<u8>, event: &Event) {
    write_int(out, key!("ppid"), event.ppid);
    write_int(out, key!("uid"), event.uid);
    write_str_field(out, key!("user"), event.user.as_str());
    write_str_field(out, key!("process"), event.process.as_str());
    write_str_field(out, key!("exe"), event.exe.as_str());
    write_str_field(out, key!("cmdline"), event.cmdline.as_str());
    write_int(out, key!("cgroup_id"), event.cgroup_id);
    write_str_field(out, key!("parent_process"), event.parent_process.as_str());
    out.extend_from_slice(key!("ancestors"));
    write_array(out, &event.ancestors, |out, name| {
        write_str(out, name.as_str())
    });
}

/// The optional fields, in declaration order: present when set.
fn write_specifics(out: &mut Vec<u8>, e: &Event) {
    if let Some(argv) = &e.argv {
        out.extend_from_slice(key!("argv"));
        write_array(out, argv, |out, arg| write_str(out, arg));
    }
    write_opt_int(out, key!("exit_code"), e.exit_code);
    write_opt_int(out, key!("exit_signal"), e.exit_signal);
    write_opt_str(out, key!("ptrace_request"), e.ptrace_request.as_deref());
    write_opt_int(out, key!("target_pid"), e.target_pid);
    write_opt_str(out, key!("file_path"), e.file_path.as_deref());
    write_opt_str(out, key!("new_path"), e.new_path.as_deref());
    write_opt_str(out, key!("flags"), e.flags.as_deref());
    write_opt_int(out, key!("mode"), e.mode);
    write_opt_str(out, key!("syscall"), e.syscall.as_deref());
    write_opt_int(out, key!("old_uid"), e.old_uid);
    write_opt_int(out, key!("new_uid"), e.new_uid);
    write_opt_int(out, key!("old_gid"), e.old_gid);
    write_opt_int(out, key!("new_gid"), e.new_gid);
    if let Some(masks) = &e.capabilities {
        out.extend_from_slice(key!("capabilities"));
        write_array(out, masks, |out, &mask| write_number(out, mask));
    }
    write_opt_str(out, key!("protocol"), e.protocol.as_deref());
    write_opt_ip(out, key!("source_ip"), e.source_ip);
    write_opt_int(out, key!("source_port"), e.source_port);
    write_opt_ip(out, key!("target_ip"), e.target_ip);
    write_opt_int(out, key!("target_port"), e.target_port);
    write_opt_int(out, key!("bytes_sent"), e.bytes_sent);
    write_opt_int(out, key!("bytes_received"), e.bytes_received);
    if let Some(ms) = e.duration_ms {
        out.extend_from_slice(key!("duration_ms"));
        write_float(out, ms);
    }
    write_opt_str(out, key!("error"), e.error.as_deref());
    write_opt_int(out, key!("attempts"), e.attempts);
    write_opt_int(out, key!("bpf_prog_type"), e.bpf_prog_type);
    write_opt_str(out, key!("bpf_prog_name"), e.bpf_prog_name.as_deref());
    write_opt_str(out, key!("module_params"), e.module_params.as_deref());
}

fn write_analysis(out: &mut Vec<u8>, a: &Analysis) {
    out.extend_from_slice(b"{\"label\":");
    write_str(out, &a.label);
    out.extend_from_slice(key!("severity"));
    write_str(out, severity_name(a.severity));
    out.extend_from_slice(key!("risk_score"));
    write_float(out, a.risk_score);
    write_str_field(out, key!("detection_method"), &a.detection_method);
    out.extend_from_slice(key!("confidence"));
    write_float(out, a.confidence);
    write_str_field(out, key!("recommendation"), &a.recommendation);
    out.extend_from_slice(key!("rules"));
    write_array(out, &a.rules, |out, rule| write_str(out, rule));
    out.extend_from_slice(key!("process_risk"));
    write_float(out, a.process_risk);
    out.push(b'}');
}

fn write_response_action(out: &mut Vec<u8>, action: &ResponseAction) {
    out.extend_from_slice(b"{\"action\":");
    write_str(out, action.action.as_str());
    out.extend_from_slice(key!("result"));
    write_str(out, result_name(action.result));
    write_opt_str(out, key!("rule"), action.rule.as_deref());
    write_opt_str(out, key!("target"), action.target.as_deref());
    write_opt_int(out, key!("deny_id"), action.deny_id);
    write_str_field(out, key!("detail"), &action.detail);
    out.push(b'}');
}

/// The serde name of a severity (`rename_all = "snake_case"`).
fn severity_name(severity: Severity) -> &'static str {
    match severity {
        Severity::Benign => "benign",
        Severity::Suspicious => "suspicious",
        Severity::Malicious => "malicious",
    }
}

/// The serde name of a result (`rename_all = "snake_case"`).
fn result_name(result: ResponseResult) -> &'static str {
    match result {
        ResponseResult::Done => "done",
        ResponseResult::Simulated => "simulated",
        ResponseResult::Skipped => "skipped",
        ResponseResult::Failed => "failed",
    }
}

/// `[a,b,…]`, each item written by `write_item`.
fn write_array<T>(out: &mut Vec<u8>, items: &[T], write_item: impl Fn(&mut Vec<u8>, &T)) {
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_item(out, item);
    }
    out.push(b']');
}

fn write_int(out: &mut Vec<u8>, key: &[u8], value: impl itoa::Integer) {
    out.extend_from_slice(key);
    write_number(out, value);
}

fn write_opt_int(out: &mut Vec<u8>, key: &[u8], value: Option<impl itoa::Integer>) {
    if let Some(value) = value {
        write_int(out, key, value);
    }
}

/// An integer in decimal: itoa, as serde_json writes integers.
fn write_number(out: &mut Vec<u8>, value: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

/// A float exactly as serde_json writes one: `null` when not finite, otherwise serde_json's
/// own formatter (whichever shortest-representation algorithm the linked serde_json uses).
/// 0 and 1, most scores and confidences, are spelled directly.
fn write_float(out: &mut Vec<u8>, value: f64) {
    const ZERO: u64 = 0.0f64.to_bits();
    const ONE: u64 = 1.0f64.to_bits();
    match value.to_bits() {
        ZERO => out.extend_from_slice(b"0.0"),
        ONE => out.extend_from_slice(b"1.0"),
        _ if value.is_finite() => {
            // Writing to a Vec cannot fail.
            let _ = CompactFormatter.write_f64(out, value);
        }
        _ => out.extend_from_slice(b"null"),
    }
}

fn write_str_field(out: &mut Vec<u8>, key: &[u8], value: &str) {
    out.extend_from_slice(key);
    write_str(out, value);
}

fn write_opt_str(out: &mut Vec<u8>, key: &[u8], value: Option<&str>) {
    if let Some(value) = value {
        write_str_field(out, key, value);
    }
}

/// Addresses as serde writes them to a human-readable format: their `Display` text (IPv4's
/// four numbers written directly, without the formatting machinery).
fn write_opt_ip(out: &mut Vec<u8>, key: &[u8], value: Option<IpAddr>) {
    let Some(ip) = value else { return };
    out.extend_from_slice(key);
    out.push(b'"');
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            write_number(out, a);
            for octet in [b, c, d] {
                out.push(b'.');
                write_number(out, octet);
            }
        }
        IpAddr::V6(_) => out.extend_from_slice(AddressText::ip(ip).as_str().as_bytes()),
    }
    out.push(b'"');
}

/// chrono's serde form: RFC 3339 in UTC with `Z`, and the fraction of a second in the fewest
/// of 0, 3, 6 or 9 digits that hold it exactly (`SecondsFormat::AutoSi`). A leap second's
/// nanoseconds (≥ 10⁹) make the seconds 60, as chrono writes them.
fn write_timestamp(out: &mut Vec<u8>, timestamp: &DateTime<Utc>) {
    let at = timestamp.naive_utc();
    out.push(b'"');
    let year = at.year();
    if (0..=9999).contains(&year) {
        write_digits(out, year.unsigned_abs(), 4);
    } else {
        // chrono's spelling of years RFC 3339 cannot hold (ISO 8601's explicit sign). Writing
        // to a Vec cannot fail.
        let _ = write!(out, "{year:+05}");
    }
    out.push(b'-');
    write_digits(out, at.month(), 2);
    out.push(b'-');
    write_digits(out, at.day(), 2);
    out.push(b'T');
    let (mut second, mut nanos) = (at.second(), at.nanosecond());
    if nanos >= 1_000_000_000 {
        second += 1;
        nanos -= 1_000_000_000;
    }
    write_digits(out, at.hour(), 2);
    out.push(b':');
    write_digits(out, at.minute(), 2);
    out.push(b':');
    write_digits(out, second, 2);
    write_fraction(out, nanos);
    out.extend_from_slice(b"Z\"");
}

/// The fraction of a second (`nanos` < 10⁹) in the fewest of 0, 3, 6 or 9 digits that hold it.
fn write_fraction(out: &mut Vec<u8>, nanos: u32) {
    if nanos != 0 {
        out.push(b'.');
        if nanos.is_multiple_of(1_000_000) {
            write_digits(out, nanos / 1_000_000, 3);
        } else if nanos.is_multiple_of(1_000) {
            write_digits(out, nanos / 1_000, 6);
        } else {
            write_digits(out, nanos, 9);
        }
    }
}

/// The last `width` decimal digits of `value`, zero-padded (`width` ≤ 10).
fn write_digits(out: &mut Vec<u8>, mut value: u32, width: usize) {
    let mut digits = [b'0'; 10];
    let width = width.min(digits.len());
    for slot in digits[..width].iter_mut().rev() {
        // `value % 10` is a digit: the cast cannot truncate.
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
    out.extend_from_slice(&digits[..width]);
}

/// How each byte is written inside a JSON string, serde_json's table: 0 for as it is, `u` for
/// `\u00XX` (control characters without a short form), otherwise the letter after the
/// backslash (`\"`, `\\`, `\b`, `\t`, `\n`, `\f`, `\r`). Bytes ≥ 0x80 (UTF-8 beyond ASCII,
/// U+2028 included) and DEL are written as they are, as serde_json does.
const ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = b'u';
        byte += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

/// A string, quoted and escaped. Most strings need no escape: they are checked a word at a
/// time and copied whole.
fn write_str(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    out.push(b'"');
    if needs_escape(bytes) {
        write_escaped(out, bytes);
    } else {
        out.extend_from_slice(bytes);
    }
    out.push(b'"');
}

/// Whether any byte of `bytes` is one JSON escapes. Whole words, the last one overlapping the
/// one before; a string shorter than a word is read as overlapping halves, or as its first,
/// middle and last bytes (padded with spaces, which need no escape).
fn needs_escape(bytes: &[u8]) -> bool {
    let flagged = |word: u64| first_escaped_in_word(word).is_some();
    let len = bytes.len();
    if let Some(last) = bytes.last_chunk::<8>() {
        let (words, _) = bytes.as_chunks::<8>();
        words.iter().any(|word| flagged(u64::from_le_bytes(*word)))
            || flagged(u64::from_le_bytes(*last))
    } else if let (Some(first), Some(last)) = (bytes.first_chunk::<4>(), bytes.last_chunk::<4>()) {
        flagged(u64::from(u32::from_le_bytes(*first)) | u64::from(u32::from_le_bytes(*last)) << 32)
    } else if let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) {
        let middle = bytes[len / 2];
        flagged(u64::from_le_bytes([
            first, middle, last, b' ', b' ', b' ', b' ', b' ',
        ]))
    } else {
        false
    }
}

/// The contents of a JSON string with escapes: runs of bytes that need no escape are copied
/// whole, found eight bytes at a time; the rest is escaped one byte at a time.
fn write_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut clean_from = 0;
    let mut at = 0;
    while at < bytes.len() {
        let escaped_at = match bytes[at..].first_chunk::<8>() {
            Some(word) => match first_escaped_in_word(u64::from_le_bytes(*word)) {
                Some(offset) => at + offset,
                None => {
                    at += 8;
                    continue;
                }
            },
            None if ESCAPE[usize::from(bytes[at])] == 0 => {
                at += 1;
                continue;
            }
            None => at,
        };
        out.extend_from_slice(&bytes[clean_from..escaped_at]);
        write_escape(out, bytes[escaped_at]);
        at = escaped_at + 1;
        clean_from = at;
    }
    out.extend_from_slice(&bytes[clean_from..]);
}

/// The index of the first byte of `word` (little-endian: byte 0 is the lowest) that JSON
/// escapes: a control character, `"` or `\`. The classic "has a byte less than n" test per
/// class; a borrow can only flag bytes above a real match, so the lowest flag is exact.
fn first_escaped_in_word(word: u64) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH_BITS: u64 = 0x8080_8080_8080_8080;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word;
    let quote = word ^ (ONES * u64::from(b'"'));
    let quotes = quote.wrapping_sub(ONES) & !quote;
    let backslash = word ^ (ONES * u64::from(b'\\'));
    let backslashes = backslash.wrapping_sub(ONES) & !backslash;
    let flags = (below_space | quotes | backslashes) & HIGH_BITS;
    (flags != 0).then(|| (flags.trailing_zeros() / 8) as usize)
}

fn write_escape(out: &mut Vec<u8>, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    match ESCAPE[usize::from(byte)] {
        b'u' => out.extend_from_slice(&[
            b'\\',
            b'u',
            b'0',
            b'0',
            HEX[usize::from(byte >> 4)],
            HEX[usize::from(byte & 0xf)],
        ]),
        letter => out.extend_from_slice(&[b'\\', letter]),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::net::Ipv6Addr;

    use proptest::prelude::*;

    use super::*;
    use crate::event::{EventType, ResponseKind};
    use crate::shared_str::SharedStr;

    /// What serde_json writes for `event` (the reference), and what [`write_event`] writes.
    fn both(event: &Event) -> (String, String) {
        let reference = serde_json::to_vec(event).expect("serde_json");
        let mut ours = Vec::new();
        write_event(&mut ours, event);
        (
            String::from_utf8(reference).expect("serde_json writes UTF-8"),
            String::from_utf8(ours).expect("write_event writes UTF-8"),
        )
    }

    fn assert_same(event: &Event) {
        let (reference, ours) = both(event);
        assert_eq!(ours, reference);
    }

    fn at(seconds: i64, nanos: u32) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, nanos).expect("a valid time")
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    fn action(kind: ResponseKind, result: ResponseResult) -> ResponseAction {
        ResponseAction {
            action: kind,
            result,
            rule: Some("reverse-shell".to_string()),
            target: Some("connect 10.0.0.1:443".to_string()),
            deny_id: Some(7),
            detail: "denied in the kernel".to_string(),
        }
    }

    /// An event with every field set to something other than its default.
    fn full_event() -> Event {
        let mut e = Event::new(EventType::NetConnect, at(1_700_000_000, 123_456_789));
        e.pid = 4242;
        e.tid = 4243;
        e.ppid = 1;
        e.uid = 1000;
        e.user = "alice".into();
        e.process = "curl".into();
        e.exe = "/usr/bin/curl".into();
        e.cmdline = "curl -s https://example.com".into();
        e.cgroup_id = u64::MAX;
        e.parent_process = "bash".into();
        e.ancestors = vec!["bash".into(), "sshd".into(), "systemd".into()];
        e.argv = Some(vec![
            "curl".into(),
            "-s".into(),
            "https://example.com".into(),
        ]);
        e.exit_code = Some(-1);
        e.exit_signal = Some(9);
        e.ptrace_request = Some("PTRACE_ATTACH".into());
        e.target_pid = Some(77);
        e.file_path = Some("/etc/shadow".into());
        e.new_path = Some("/tmp/shadow".into());
        e.flags = Some("O_WRONLY|O_CREAT|O_TRUNC".into());
        e.mode = Some(0o4755);
        e.syscall = Some("renameat2".into());
        e.old_uid = Some(1000);
        e.new_uid = Some(0);
        e.old_gid = Some(1000);
        e.new_gid = Some(0);
        e.capabilities = Some([u32::MAX, 0, 0x20]);
        e.protocol = Some("tcp".into());
        e.source_ip = Some(ip("10.0.0.5"));
        e.source_port = Some(40000);
        e.target_ip = Some(ip("2001:db8::1"));
        e.target_port = Some(443);
        e.bytes_sent = Some(517);
        e.bytes_received = Some(u64::MAX);
        e.duration_ms = Some(35.5);
        e.error = Some("ECONNREFUSED".into());
        e.attempts = Some(1000);
        e.bpf_prog_type = Some(2);
        e.bpf_prog_name = Some("sniffer".into());
        e.module_params = Some("debug=1".into());
        e.host = Some("web-1".into());
        e.blocked = true;
        e.truncated = true;
        e.analysis = Analysis {
            label: "Reverse shell".into(),
            severity: Severity::Malicious,
            risk_score: 0.95,
            detection_method: "rule_based".into(),
            confidence: 1.0,
            recommendation: "Kill it".into(),
            rules: vec!["reverse-shell".into(), "curl-pipe".into()],
            process_risk: 0.5,
        };
        e.response = vec![
            action(ResponseKind::Block, ResponseResult::Done),
            ResponseAction {
                action: ResponseKind::Log,
                result: ResponseResult::Done,
                rule: None,
                target: None,
                deny_id: None,
                detail: "written to /var/log/secmon.jsonl".into(),
            },
        ];
        assert_every_field_set(&e);
        e
    }

    /// Fails the build when `Event` gains a field (the pattern has no `..`): set it in
    /// [`full_event`], and write it in [`write_event`].
    fn assert_every_field_set(e: &Event) {
        let Event {
            timestamp: _,
            event_type: _,
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
        } = e;
        assert!(error.is_some() && attempts.is_some());
        assert!([*pid, *tid, *ppid, *uid].iter().all(|&n| n != 0));
        assert!(*cgroup_id != 0 && *blocked && *truncated);
        let texts = [user, process, exe, cmdline, parent_process];
        assert!(texts.iter().all(|t| !t.as_str().is_empty()));
        assert!(!ancestors.is_empty() && !analysis.rules.is_empty());
        assert!(response.iter().any(|a| a.rule.is_some()));
        assert!(response.iter().any(|a| a.target.is_some()));
        assert!(response.iter().any(|a| a.deny_id.is_some()));
        assert!(argv.is_some() && capabilities.is_some() && duration_ms.is_some());
        assert!(exit_code.is_some() && exit_signal.is_some() && target_pid.is_some());
        assert!(host.is_some());
        assert!(source_ip.is_some() && source_port.is_some());
        assert!(target_ip.is_some() && target_port.is_some());
        assert!(bytes_sent.is_some() && bytes_received.is_some() && mode.is_some());
        assert!(
            [old_uid, new_uid, old_gid, new_gid, bpf_prog_type]
                .iter()
                .all(|n| n.is_some())
        );
        assert!(
            [
                ptrace_request.as_deref(),
                file_path.as_deref(),
                new_path.as_deref(),
                flags.as_deref(),
                syscall.as_deref(),
                protocol.as_deref(),
                bpf_prog_name.as_deref(),
                module_params.as_deref()
            ]
            .iter()
            .all(|t| t.is_some())
        );
    }

    /// The keys of an object, and of the objects inside it, as `path.key`.
    fn key_paths(value: &serde_json::Value, prefix: &str, paths: &mut BTreeSet<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, inner) in map {
                    let path = format!("{prefix}{key}");
                    key_paths(inner, &format!("{path}."), paths);
                    paths.insert(path);
                }
            }
            serde_json::Value::Array(items) => {
                for item in items {
                    key_paths(item, prefix, paths);
                }
            }
            _ => {}
        }
    }

    #[test]
    fn an_event_with_every_field_set_has_every_key_of_the_derive() {
        let e = full_event();
        let mut derived = BTreeSet::new();
        key_paths(&serde_json::to_value(&e).expect("value"), "", &mut derived);
        let mut ours = Vec::new();
        write_event(&mut ours, &e);
        let mut written = BTreeSet::new();
        let parsed = serde_json::from_slice(&ours).expect("write_event writes JSON");
        key_paths(&parsed, "", &mut written);
        assert_eq!(written, derived);
        // 46 fields, 8 of the analysis, 6 of a response action.
        assert_eq!(derived.len(), 46 + 8 + 6);
        assert_same(&e);
        let back: Event = serde_json::from_slice(&ours).expect("reads back");
        assert_eq!(back, e);
    }

    #[test]
    fn an_event_with_no_optional_field_matches() {
        for t in EventType::ALL {
            assert_same(&Event::new(t, DateTime::UNIX_EPOCH));
        }
    }

    #[test]
    fn every_event_type_with_its_fields_matches() {
        let full = full_event();
        for t in EventType::ALL {
            let mut e = full.clone();
            e.event_type = t;
            assert_same(&e);
            e.blocked = false;
            e.response.clear();
            assert_same(&e);
            e.truncated = false;
            e.argv = Some(Vec::new());
            e.ancestors.clear();
            e.analysis.rules.clear();
            assert_same(&e);
        }
    }

    #[test]
    fn each_optional_field_alone_matches() {
        let full = full_event();
        let base = Event::new(EventType::FileOpen, at(1_700_000_000, 0));
        let fields: [fn(&mut Event, &Event); 33] = [
            |e, f| e.argv = f.argv.clone(),
            |e, f| e.exit_code = f.exit_code,
            |e, f| e.exit_signal = f.exit_signal,
            |e, f| e.ptrace_request = f.ptrace_request.clone(),
            |e, f| e.target_pid = f.target_pid,
            |e, f| e.file_path = f.file_path.clone(),
            |e, f| e.new_path = f.new_path.clone(),
            |e, f| e.flags = f.flags.clone(),
            |e, f| e.mode = f.mode,
            |e, f| e.syscall = f.syscall.clone(),
            |e, f| e.old_uid = f.old_uid,
            |e, f| e.new_uid = f.new_uid,
            |e, f| e.old_gid = f.old_gid,
            |e, f| e.new_gid = f.new_gid,
            |e, f| e.capabilities = f.capabilities,
            |e, f| e.protocol = f.protocol.clone(),
            |e, f| e.source_ip = f.source_ip,
            |e, f| e.source_port = f.source_port,
            |e, f| e.target_ip = f.target_ip,
            |e, f| e.target_port = f.target_port,
            |e, f| e.bytes_sent = f.bytes_sent,
            |e, f| e.bytes_received = f.bytes_received,
            |e, f| e.duration_ms = f.duration_ms,
            |e, f| e.error = f.error.clone(),
            |e, f| e.attempts = f.attempts,
            |e, f| e.bpf_prog_type = f.bpf_prog_type,
            |e, f| e.bpf_prog_name = f.bpf_prog_name.clone(),
            |e, f| e.module_params = f.module_params.clone(),
            |e, _| e.blocked = true,
            |e, _| e.truncated = true,
            |e, f| e.response = f.response.clone(),
            |e, f| e.analysis = f.analysis.clone(),
            |e, f| e.host = f.host.clone(),
        ];
        for set in fields {
            let mut e = base.clone();
            set(&mut e, &full);
            assert_same(&e);
        }
    }

    /// Strings that stress the escaping.
    fn hostile_strings() -> Vec<String> {
        let every_control: String = (0u8..0x20).map(char::from).collect();
        let every_ascii: String = (0u8..0x80).map(char::from).collect();
        let mut strings = vec![
            String::new(),
            every_control.clone(),
            every_ascii,
            "\"".into(),
            "\\".into(),
            "\\\"\\\"".into(),
            "C:\\Windows\\\"quoted\"\\".into(),
            "\u{7f}\u{80}\u{9f}\u{a0}".into(),
            "line\u{2028}separator\u{2029}paragraph".into(),
            "emoji 🦀👩‍💻 and é, ß, 日本".into(),
            "\u{fffd}\u{fffd}lossy\u{fffd}".into(),
            "\\u0000 \\n looks escaped".into(),
            "\u{feff}\u{202e}bidi\u{200b}".into(),
            "\u{10ffff}".into(),
            "/tmp/\u{1b}[31mred\nline".into(),
            "x".repeat(100_000),
            format!("{}\"{}", "é".repeat(5000), every_control.repeat(100)),
        ];
        // An escape at every position of the first words, and before the tail.
        for len in 1..=25 {
            for position in 0..len {
                for special in ['"', '\\', '\0', '\n', '\u{1f}'] {
                    let mut text: Vec<char> = vec!['a'; len];
                    text[position] = special;
                    strings.push(text.into_iter().collect());
                }
            }
        }
        strings
    }

    #[test]
    fn hostile_strings_are_escaped_as_serde_json_escapes_them() {
        for text in hostile_strings() {
            let mut e = Event::new(EventType::ProcessExec, at(0, 1));
            e.user = text.as_str().into();
            e.process = text.as_str().into();
            e.exe = text.as_str().into();
            e.cmdline = text.as_str().into();
            e.parent_process = text.as_str().into();
            e.ancestors = vec![text.as_str().into(), "".into(), text.as_str().into()];
            e.argv = Some(vec![text.clone(), text.clone()]);
            e.file_path = Some(text.clone());
            e.analysis.label = text.clone();
            e.analysis.rules = vec![text.clone()];
            e.response = vec![ResponseAction {
                rule: Some(text.clone()),
                detail: text.clone(),
                ..action(ResponseKind::Alert, ResponseResult::Failed)
            }];
            assert_same(&e);
        }
    }

    #[test]
    fn floats_are_written_as_serde_json_writes_them() {
        let floats = [
            0.0,
            -0.0,
            1.0,
            -1.0,
            0.1,
            0.8,
            1e-7,
            1.5e-7,
            123_456_789.123,
            1e15,
            1e16,
            1e21,
            1e22,
            f64::MAX,
            f64::MIN,
            f64::MIN_POSITIVE,
            f64::EPSILON,
            5e-324,
            f64::NAN,
            -f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ];
        for x in floats {
            let mut e = Event::new(EventType::NetClose, DateTime::UNIX_EPOCH);
            e.duration_ms = Some(x);
            e.analysis.risk_score = x;
            e.analysis.confidence = x;
            e.analysis.process_risk = x;
            assert_same(&e);
        }
    }

    #[test]
    fn timestamps_are_written_as_chrono_writes_them() {
        let leap = chrono::NaiveDate::from_ymd_opt(2016, 12, 31)
            .and_then(|d| d.and_hms_nano_opt(23, 59, 59, 1_500_000_000))
            .expect("a leap second")
            .and_utc();
        let year = |y: i32| {
            chrono::NaiveDate::from_ymd_opt(y, 6, 7)
                .and_then(|d| d.and_hms_nano_opt(8, 9, 10, 11))
                .expect("a date")
                .and_utc()
        };
        let times = [
            DateTime::UNIX_EPOCH,
            at(1_700_000_000, 100_000_000),
            at(1_700_000_000, 120_000),
            at(1_700_000_000, 1),
            at(1_700_000_000, 999_999_999),
            at(-1, 0),
            leap,
            year(0),
            year(9999),
            year(10_000),
            year(-1),
            year(-10_000),
            DateTime::<Utc>::MIN_UTC,
            DateTime::<Utc>::MAX_UTC,
        ];
        for t in times {
            assert_same(&Event::new(EventType::ProcessFork, t));
        }
    }

    #[test]
    fn addresses_are_written_as_serde_writes_them() {
        let addresses = [
            "0.0.0.0",
            "255.255.255.255",
            "10.0.0.1",
            "::",
            "::1",
            "::ffff:1.2.3.4",
            "2001:db8::1",
            "fe80::1:2:3:4",
            "1:2:3:4:5:6:7:8",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ];
        for text in addresses {
            let mut e = Event::new(EventType::NetConnect, DateTime::UNIX_EPOCH);
            e.source_ip = Some(ip(text));
            e.target_ip = Some(ip(text));
            assert_same(&e);
        }
    }

    #[test]
    fn integers_at_their_limits_match() {
        let mut e = full_event();
        for (exit, small, big) in [(i32::MIN, 0, 0), (i32::MAX, u32::MAX, u64::MAX)] {
            e.exit_code = Some(exit);
            e.pid = small;
            e.mode = Some(small);
            e.capabilities = Some([small; 3]);
            e.source_port = Some(small as u16);
            e.target_port = Some(u16::MAX);
            e.cgroup_id = big;
            e.bytes_sent = Some(big);
            e.response[0].deny_id = Some(small);
            assert_same(&e);
        }
    }

    #[test]
    fn every_response_action_matches() {
        let kinds = [
            ResponseKind::Log,
            ResponseKind::Alert,
            ResponseKind::SimulateBlock,
            ResponseKind::Block,
        ];
        let results = [
            ResponseResult::Done,
            ResponseResult::Simulated,
            ResponseResult::Skipped,
            ResponseResult::Failed,
        ];
        let mut e = Event::new(EventType::ProcessExec, DateTime::UNIX_EPOCH);
        for kind in kinds {
            for result in results {
                e.response.push(action(kind, result));
                e.response.push(ResponseAction {
                    rule: None,
                    target: None,
                    deny_id: None,
                    detail: String::new(),
                    ..action(kind, result)
                });
            }
        }
        for severity in [Severity::Benign, Severity::Suspicious, Severity::Malicious] {
            e.analysis.severity = severity;
            assert_same(&e);
        }
    }

    #[test]
    fn events_are_appended_to_what_the_buffer_holds() {
        let e = full_event();
        let mut out = b"[".to_vec();
        write_event(&mut out, &e);
        out.push(b',');
        write_event(&mut out, &e);
        out.push(b']');
        let one = serde_json::to_string(&e).expect("json");
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            format!("[{one},{one}]")
        );
    }

    /// Characters the escaping and the UTF-8 handling could get wrong, among arbitrary ones.
    fn tricky_char() -> impl Strategy<Value = char> {
        prop_oneof![
            4 => any::<char>(),
            4 => proptest::char::range('\0', '\u{a0}'),
            2 => proptest::sample::select(vec![
                '"', '\\', '/', '\u{7f}', '\u{2028}', '\u{2029}', '\u{fffd}', '\u{feff}',
                '\u{1f980}', 'é', '\u{10ffff}',
            ]),
        ]
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            8 => proptest::collection::vec(tricky_char(), 0..24),
            1 => proptest::collection::vec(tricky_char(), 0..600),
        ]
        .prop_map(String::from_iter)
    }

    fn float() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>(),
            proptest::num::f64::ANY,
            0.0..1.0f64,
            proptest::sample::select(vec![0.0, -0.0, 1.0, 0.8, 1e-7, f64::NAN, f64::INFINITY]),
        ]
    }

    /// Times from year −262 143 to +262 142 (chrono's range), many near now, with every
    /// precision of fraction and leap seconds.
    fn timestamp() -> impl Strategy<Value = DateTime<Utc>> {
        let seconds = prop_oneof![
            -8_200_000_000_000i64..8_200_000_000_000,
            -100_000_000_000i64..300_000_000_000,
            1_600_000_000i64..1_900_000_000,
        ];
        let nanos = prop_oneof![
            Just(0u32),
            (0..1_000u32).prop_map(|ms| ms * 1_000_000),
            (0..1_000_000u32).prop_map(|us| us * 1_000),
            0..1_000_000_000u32,
            1_000_000_000..2_000_000_000u32,
        ];
        (seconds, nanos).prop_map(|(s, n)| {
            // A leap second only after :59; elsewhere the same nanoseconds without it.
            let s = if n >= 1_000_000_000 {
                s - s.rem_euclid(60) + 59
            } else {
                s
            };
            DateTime::from_timestamp(s, n)
                .or(DateTime::from_timestamp(s, n % 1_000_000_000))
                .unwrap_or(DateTime::UNIX_EPOCH)
        })
    }

    fn address() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<IpAddr>(),
            any::<std::net::Ipv4Addr>().prop_map(|v4| IpAddr::V6(v4.to_ipv6_mapped())),
            (any::<u16>(), any::<u16>())
                .prop_map(|(a, b)| IpAddr::V6(Ipv6Addr::new(a, 0, 0, 0, 0, 0, b, 0))),
        ]
    }

    fn analysis() -> impl Strategy<Value = Analysis> {
        let severity = proptest::sample::select(vec![
            Severity::Benign,
            Severity::Suspicious,
            Severity::Malicious,
        ]);
        (
            text(),
            severity,
            float(),
            text(),
            float(),
            text(),
            proptest::collection::vec(text(), 0..3),
            float(),
        )
            .prop_map(
                |(
                    label,
                    severity,
                    risk_score,
                    detection_method,
                    confidence,
                    recommendation,
                    rules,
                    process_risk,
                )| {
                    Analysis {
                        label,
                        severity,
                        risk_score,
                        detection_method,
                        confidence,
                        recommendation,
                        rules,
                        process_risk,
                    }
                },
            )
    }

    fn response_action() -> impl Strategy<Value = ResponseAction> {
        let kind = proptest::sample::select(vec![
            ResponseKind::Log,
            ResponseKind::Alert,
            ResponseKind::SimulateBlock,
            ResponseKind::Block,
        ]);
        let result = proptest::sample::select(vec![
            ResponseResult::Done,
            ResponseResult::Simulated,
            ResponseResult::Skipped,
            ResponseResult::Failed,
        ]);
        (
            kind,
            result,
            proptest::option::of(text()),
            proptest::option::of(text()),
            proptest::option::of(any::<u32>()),
            text(),
        )
            .prop_map(
                |(action, result, rule, target, deny_id, detail)| ResponseAction {
                    action,
                    result,
                    rule,
                    target,
                    deny_id,
                    detail,
                },
            )
    }

    fn event() -> impl Strategy<Value = Event> {
        use proptest::option::of;
        let texts = || proptest::collection::vec(text(), 0..4);
        let who = (
            timestamp(),
            proptest::sample::select(EventType::ALL.to_vec()),
            any::<[u32; 4]>(),
            [text(), text(), text(), text(), text()],
            any::<u64>(),
            texts(),
        );
        let what = (
            of(texts()),
            of(any::<i32>()),
            of(any::<u32>()),
            of(text()),
            of(any::<u32>()),
            [of(text()), of(text()), of(text()), of(text())],
            of(any::<u32>()),
            [
                of(any::<u32>()),
                of(any::<u32>()),
                of(any::<u32>()),
                of(any::<u32>()),
            ],
            of(any::<[u32; 3]>()),
        );
        let network = (
            of(text()),
            [of(address()), of(address())],
            [of(any::<u16>()), of(any::<u16>())],
            [of(any::<u64>()), of(any::<u64>())],
            of(float()),
            of(any::<u32>()),
            [of(text()), of(text())],
            any::<[bool; 2]>(),
            analysis(),
            proptest::collection::vec(response_action(), 0..3),
        );
        (who, what, network).prop_map(|(who, what, network)| {
            let (timestamp, event_type, ids, names, cgroup_id, ancestors) = who;
            let mut e = Event::new(event_type, timestamp);
            [e.pid, e.tid, e.ppid, e.uid] = ids;
            let [user, process, exe, cmdline, parent] = names;
            e.user = user.as_str().into();
            e.process = process.as_str().into();
            e.exe = exe.as_str().into();
            e.cmdline = cmdline.as_str().into();
            e.parent_process = parent.as_str().into();
            e.cgroup_id = cgroup_id;
            e.ancestors = ancestors.iter().map(|a| a.as_str().into()).collect();
            let (argv, exit_code, exit_signal, ptrace_request, target_pid, paths, mode, ids, caps) =
                what;
            e.argv = argv;
            e.exit_code = exit_code;
            e.exit_signal = exit_signal;
            e.ptrace_request = ptrace_request;
            e.target_pid = target_pid;
            let [file_path, new_path, flags, syscall] = paths;
            [e.file_path, e.new_path] = [file_path, new_path];
            [e.flags, e.syscall] = [flags.map(SharedStr::from), syscall.map(SharedStr::from)];
            e.mode = mode;
            [e.old_uid, e.new_uid, e.old_gid, e.new_gid] = ids;
            e.capabilities = caps;
            let (
                protocol,
                ips,
                ports,
                bytes,
                duration,
                prog_type,
                names,
                flags,
                analysis,
                response,
            ) = network;
            e.protocol = protocol;
            [e.source_ip, e.target_ip] = ips;
            [e.source_port, e.target_port] = ports;
            [e.bytes_sent, e.bytes_received] = bytes;
            e.duration_ms = duration;
            e.bpf_prog_type = prog_type;
            [e.bpf_prog_name, e.module_params] = names;
            [e.blocked, e.truncated] = flags;
            e.analysis = analysis;
            e.response = response;
            e
        })
    }

    /// `events`, with the process context of `context_of`'s event (its very texts, shared),
    /// under `pid`: what a run of events of a few processes looks like to the cache.
    fn with_context_of(event: &Event, context_of: &Event, pid: u32) -> Event {
        let mut e = event.clone();
        e.pid = pid;
        e.take_context_of(context_of);
        e
    }

    #[test]
    fn a_process_context_is_reused_only_while_all_of_it_is_the_same() {
        let mut first = Event::new(EventType::FileOpen, at(1_700_000_000, 0));
        first.pid = 4242;
        first.user = "alice".into();
        first.cmdline = "python3 -c \"import os\"".into();
        first.ancestors = vec!["bash".into(), "sshd".into()];
        let mut cache = ContextCache::default();
        let mut out = Vec::new();
        write_event_cached(&mut out, &first, &mut cache);
        let slot = |cache: &ContextCache, e: &Event| {
            cache.slots[e.pid as usize % CONTEXT_SLOTS]
                .as_ref()
                .is_some_and(|kept| kept.key.matches(e))
        };
        assert!(slot(&cache, &first), "the context is kept");
        let same = with_context_of(&first, &first, 4242);
        assert!(slot(&cache, &same), "the same texts: reused");

        let mut equal_text = same.clone();
        equal_text.cmdline = first.cmdline.as_str().into();
        assert!(
            !slot(&cache, &equal_text),
            "another allocation is another text"
        );
        let mut other_ancestor = same.clone();
        other_ancestor.ancestors[1] = "sshd".into();
        assert!(!slot(&cache, &other_ancestor));
        let mut fewer_ancestors = same.clone();
        fewer_ancestors.ancestors.pop();
        assert!(!slot(&cache, &fewer_ancestors));
        let mut new_uid = same.clone();
        new_uid.uid = 1000;
        assert!(!slot(&cache, &new_uid));

        // What was written each time is what write_event writes.
        for e in [
            &same,
            &equal_text,
            &other_ancestor,
            &fewer_ancestors,
            &new_uid,
        ] {
            let mut cached = Vec::new();
            write_event_cached(&mut cached, e, &mut cache);
            let mut plain = Vec::new();
            write_event(&mut plain, e);
            assert_eq!(
                String::from_utf8_lossy(&cached),
                String::from_utf8_lossy(&plain)
            );
        }
    }

    #[test]
    fn a_context_longer_than_the_bound_is_written_but_not_kept() {
        let mut e = Event::new(EventType::FileOpen, at(1_700_000_000, 0));
        e.cmdline = "x".repeat(MAX_CACHED_CONTEXT).into();
        let mut cache = ContextCache::default();
        let mut cached = Vec::new();
        write_event_cached(&mut cached, &e, &mut cache);
        assert!(cache.slots.iter().all(Option::is_none));
        let mut plain = Vec::new();
        write_event(&mut plain, &e);
        assert_eq!(cached, plain);
    }

    /// The first byte JSON escapes in a word, one byte at a time.
    fn first_escaped_slowly(word: u64) -> Option<usize> {
        word.to_le_bytes()
            .iter()
            .position(|&b| ESCAPE[usize::from(b)] != 0)
    }

    proptest! {
        #[test]
        fn any_event_is_written_as_serde_json_writes_it(e in event()) {
            let (reference, ours) = both(&e);
            prop_assert_eq!(ours, reference);
        }

        /// Events of a few processes, interleaved, some sharing a context slot: through one
        /// cache, each is written exactly as `write_event` writes it.
        #[test]
        fn events_written_through_the_context_cache_are_written_as_without_it(
            events in proptest::collection::vec(event(), 1..6),
            picks in proptest::collection::vec((0..6usize, 0..6usize, 0..200u32), 1..40),
        ) {
            let mut cache = ContextCache::default();
            for (which, context_of, pid) in picks {
                let e = with_context_of(
                    &events[which % events.len()],
                    &events[context_of % events.len()],
                    pid,
                );
                let mut cached = Vec::new();
                write_event_cached(&mut cached, &e, &mut cache);
                let mut plain = Vec::new();
                write_event(&mut plain, &e);
                prop_assert_eq!(
                    String::from_utf8_lossy(&cached),
                    String::from_utf8_lossy(&plain)
                );
            }
        }

        /// Times a few seconds apart around any time, with every precision of fraction and
        /// leap seconds among them: through one cache, each is written as `write_timestamp`
        /// writes it.
        #[test]
        fn times_written_through_the_second_cache_are_written_as_without_it(
            base in timestamp(),
            steps in proptest::collection::vec(
                (
                    -2i64..3,
                    prop_oneof![
                        Just(0u32),
                        (0..1_000u32).prop_map(|ms| ms * 1_000_000),
                        0..1_000_000_000u32,
                        1_000_000_000..2_000_000_000u32,
                    ],
                ),
                1..30,
            ),
        ) {
            let mut second = CachedSecond::default();
            for (delta, nanos) in steps {
                let Some(time) = DateTime::from_timestamp(base.timestamp() + delta, nanos) else {
                    continue;
                };
                let mut cached = Vec::new();
                second.write(&mut cached, &time);
                let mut plain = Vec::new();
                write_timestamp(&mut plain, &time);
                prop_assert_eq!(
                    String::from_utf8_lossy(&cached),
                    String::from_utf8_lossy(&plain)
                );
            }
        }

        #[test]
        fn the_string_check_finds_any_escaped_byte(s in text()) {
            let slowly = s.bytes().any(|b| ESCAPE[usize::from(b)] != 0);
            prop_assert_eq!(needs_escape(s.as_bytes()), slowly);
        }

        #[test]
        fn any_string_is_escaped_as_serde_json_escapes_it(s in text()) {
            let mut ours = Vec::new();
            write_str(&mut ours, &s);
            prop_assert_eq!(ours, serde_json::to_vec(&s).expect("json"));
        }

        #[test]
        fn the_word_scan_finds_the_first_escaped_byte(
            word in any::<u64>(),
            bytes in any::<[u8; 8]>().prop_map(|b| b.map(|b| b & 0x7f)),
            specials in any::<[u8; 8]>().prop_map(|b| b.map(|b| [b'"', b'\\', 0x1f, 0x20, b'!', 0x7f, 0x80, b'#'][usize::from(b % 8)])),
        ) {
            for w in [word, u64::from_le_bytes(bytes), u64::from_le_bytes(specials)] {
                prop_assert_eq!(first_escaped_in_word(w), first_escaped_slowly(w), "{:#018x}", w);
            }
        }
    }
}
