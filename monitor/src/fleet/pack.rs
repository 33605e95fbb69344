//! Several events in one NATS message (`[export.nats] events_per_message`).
//!
//! JetStream costs its server about 9 µs of CPU per acknowledged message whatever its size
//! (docs/benchmarks.md), so one message per event caps a host's export well below its capture
//! rate. A packed message holds up to N consecutive events of one subject (one host and event
//! type): its body is their JSON objects, each ended by `\n` (JSON lines), and its header
//! [`EVENTS_HEADER`] says how many. Its `Nats-Msg-Id` is the first event's id and the count,
//! `<host>:<run>:<sequence>+<count>`: the events of a pack have consecutive sequences, so each
//! event's own id (`<host>:<run>:<sequence + k>`) follows from it, and a pack sent again (a lost
//! ack, the spool) is the same message with the same id, stored once by the server and seen
//! once per event id by a reader. A message of one event is sent as before: its JSON object
//! alone, no header, the event's id.
use std::ops::Range;

use bytes::Bytes;

/// The header of a packed message: how many events its body holds.
pub const EVENTS_HEADER: &str = "Secmon-Events";

/// Room kept for a message's headers under the server's `max_payload` (which counts headers
/// and body): `Nats-Msg-Id` and [`EVENTS_HEADER`] take about a hundred bytes.
pub const HEADER_ROOM: usize = 1024;

/// The `Nats-Msg-Id` of a pack of `count` events whose first event's id is `first_id`.
pub fn pack_id(first_id: &str, count: usize) -> String {
    format!("{first_id}+{count}")
}

/// How many events the message with id `id` holds: the count after the last `+` of a pack's
/// id, else one.
pub fn events_in(id: &str) -> u64 {
    id.rsplit(':')
        .next()
        .and_then(|last| last.split_once('+'))
        .and_then(|(_, count)| count.parse().ok())
        .unwrap_or(1)
}

/// The id of the `k`-th event (from 0) of the pack with id `pack_id`, or, for an id that is
/// not one of ours, that id and `#k` (still unique per event and stable across deliveries).
pub fn event_id(pack_id: &str, k: usize) -> String {
    let ours = pack_id.rsplit_once(':').and_then(|(head, last)| {
        let (first, _) = last.split_once('+')?;
        let first: u64 = first.parse().ok()?;
        Some(format!("{head}:{}", first.checked_add(k as u64)?))
    });
    ours.unwrap_or_else(|| format!("{pack_id}#{k}"))
}

/// The events of a packed body: its non-empty lines (a reader splits on newlines; an event's
/// JSON has none, its strings escape them). Slices of `body`, no copy. The newlines are found
/// with `memchr` (a byte-at-a-time loop was 4 % of a hub's CPU under a flood).
pub fn split_lines(body: &Bytes) -> Vec<Bytes> {
    line_ranges(body)
        .into_iter()
        .map(|range| body.slice(range))
        .collect()
}

/// Where [`split_lines`]' lines are in `body` (without their newlines).
fn line_ranges(body: &[u8]) -> Vec<Range<usize>> {
    let mut lines = Vec::new();
    let mut start = 0;
    for at in memchr::memchr_iter(b'\n', body) {
        if at > start {
            lines.push(start..at);
        }
        start = at + 1;
    }
    if start < body.len() {
        lines.push(start..body.len());
    }
    lines
}

/// The message `id` with `body` as messages of at most `max_bytes` each, with their ids: a
/// pack cut again (built before the server said its `max_payload`, or spooled under a larger
/// one), each part a pack of its consecutive events or one event alone. A message of one event
/// is returned as it is, whatever its size: the caller decides what to do with one too large.
pub fn recut(id: &str, body: &Bytes, max_bytes: usize) -> Vec<(String, Bytes)> {
    if events_in(id) <= 1 {
        return vec![(id.to_string(), body.clone())];
    }
    let lines = line_ranges(body);
    let sizes: Vec<usize> = lines.iter().map(|line| line.len() + 1).collect();
    cut(&sizes, usize::MAX, max_bytes)
        .into_iter()
        .map(|part| {
            let first_id = event_id(id, part.start);
            let (first, last) = (&lines[part.start], &lines[part.end - 1]);
            if part.len() == 1 {
                (first_id, body.slice(first.clone()))
            } else {
                // Every event with its newline, as a pack is sent.
                let end = (last.end + 1).min(body.len());
                (pack_id(&first_id, part.len()), body.slice(first.start..end))
            }
        })
        .collect()
}

/// Cuts consecutive events of one subject, of `sizes` bytes each (newline included), into
/// packs of at most `max_events` events and `max_bytes` bytes. An event larger than
/// `max_bytes` alone is a pack of its own (sent as a message of one event, without the pack's
/// header: the publish refuses it if it is over the server's limit, never a pack around it).
pub fn cut(sizes: &[usize], max_events: usize, max_bytes: usize) -> Vec<Range<usize>> {
    let max_events = max_events.max(1);
    let mut packs = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, &size) in sizes.iter().enumerate() {
        let full = i - start >= max_events || bytes + size > max_bytes;
        if i > start && full {
            packs.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < sizes.len() {
        packs.push(start..sizes.len());
    }
    packs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_of_a_pack_and_of_its_events() {
        let id = pack_id("web-1:0a1b2c3d:41", 3);
        assert_eq!(id, "web-1:0a1b2c3d:41+3");
        assert_eq!(events_in(&id), 3);
        assert_eq!(events_in("web-1:0a1b2c3d:41"), 1);
        assert_eq!(events_in("web-1:0a1b2c3d:41:alert"), 1);
        assert_eq!(events_in("web-1:0a1b2c3d:41:alert+2"), 2);
        let ids: Vec<String> = (0..3).map(|k| event_id(&id, k)).collect();
        assert_eq!(
            ids,
            [
                "web-1:0a1b2c3d:41",
                "web-1:0a1b2c3d:42",
                "web-1:0a1b2c3d:43"
            ]
        );
        // Not one of ours: still one id per event.
        assert_eq!(event_id("someone-else", 2), "someone-else#2");
        assert_eq!(event_id("a:b:x+2", 0), "a:b:x+2#0");
        assert_eq!(
            event_id(&format!("a:b:{}+2", u64::MAX), 1),
            format!("a:b:{}+2#1", u64::MAX)
        );
    }

    #[test]
    fn packs_hold_at_most_n_events_and_fit_the_bound() {
        assert_eq!(cut(&[10; 5], 2, 1000), vec![0..2, 2..4, 4..5]);
        assert_eq!(cut(&[10; 5], 0, 1000), vec![0..1, 1..2, 2..3, 3..4, 4..5]);
        assert_eq!(cut(&[400, 400, 400, 100], 64, 1000), vec![0..2, 2..4]);
        // An event over the bound goes alone; the ones around it are packed as usual.
        assert_eq!(cut(&[10, 5000, 10, 10], 64, 1000), vec![0..1, 1..2, 2..4]);
        assert_eq!(cut(&[], 64, 1000), Vec::<Range<usize>>::new());
        // Every pack fits the bound unless it is one event alone.
        let sizes: Vec<usize> = (0..500).map(|i| (i * 37) % 900 + 1).collect();
        for pack in cut(&sizes, 16, 1000) {
            let bytes: usize = sizes[pack.clone()].iter().sum();
            assert!(pack.len() <= 16);
            assert!(bytes <= 1000 || pack.len() == 1, "{pack:?}: {bytes}");
        }
    }

    #[test]
    fn a_body_splits_into_its_lines() {
        let body = Bytes::from_static(b"{\"a\":1}\n{\"b\":\"x\\ny\"}\n\n{\"c\":3}");
        let split = split_lines(&body);
        let lines: Vec<&[u8]> = split.iter().map(|b| &b[..]).collect();
        assert_eq!(
            lines,
            [&b"{\"a\":1}"[..], b"{\"b\":\"x\\ny\"}", b"{\"c\":3}"]
        );
        assert!(split_lines(&Bytes::new()).is_empty());
    }

    /// Events as the exporter writes them (JSON, newline), cut into packs under `max_bytes`
    /// and read back as a consumer does: the same events, one per line, hostile text and an
    /// event larger than the bound included.
    #[test]
    fn hostile_and_oversized_events_round_trip_and_packs_stay_under_the_bound() {
        use crate::event::{Event, EventType};
        let paths = [
            "/tmp/plain".to_string(),
            "/tmp/\u{1b}[31mred\nline\r\n{\"event_type\":\"forged\"}\n".to_string(),
            "\u{2028}\u{2029}\u{0}\\n".to_string(),
            "x".repeat(100_000),
            "/tmp/after".to_string(),
        ];
        let events: Vec<Event> = paths
            .iter()
            .map(|path| {
                let mut e = Event::new(EventType::FileOpen, chrono::DateTime::UNIX_EPOCH);
                e.file_path = Some(path.clone());
                e
            })
            .collect();
        let mut buffer = Vec::new();
        let mut spans = Vec::new();
        for event in &events {
            let start = buffer.len();
            crate::output::event_json::write_event(&mut buffer, event);
            spans.push((start, buffer.len()));
            buffer.push(b'\n');
        }
        let json = Bytes::from(buffer);
        let max_bytes = 4096;
        let sizes: Vec<usize> = spans.iter().map(|(s, e)| e - s + 1).collect();
        let packs = cut(&sizes, 64, max_bytes);
        assert_eq!(packs, vec![0..3, 3..4, 4..5], "the 100 kB event goes alone");
        let mut read = Vec::new();
        for pack in packs {
            let body = json.slice(spans[pack.start].0..spans[pack.end - 1].1 + 1);
            assert!(body.len() <= max_bytes || pack.len() == 1);
            read.extend(split_lines(&body));
        }
        assert_eq!(
            read.len(),
            events.len(),
            "one line per event, whatever its text"
        );
        for (line, path) in read.iter().zip(&paths) {
            let value: serde_json::Value = serde_json::from_slice(line).expect("JSON");
            assert_eq!(value["file_path"].as_str(), Some(path.as_str()));
            assert_eq!(value["event_type"].as_str(), Some("file_open"));
        }
    }

    #[test]
    fn a_pack_too_large_for_the_server_is_cut_again_with_each_events_id() {
        let body = Bytes::from_static(b"{\"a\":1}\n{\"b\":22}\n{\"c\":333}\n");
        let parts = recut("h:r:7+3", &body, 20);
        assert_eq!(
            parts,
            [
                (
                    "h:r:7+2".to_string(),
                    Bytes::from_static(b"{\"a\":1}\n{\"b\":22}\n")
                ),
                ("h:r:9".to_string(), Bytes::from_static(b"{\"c\":333}")),
            ]
        );
        // Every event once, with the id it had in the whole pack.
        let ids: Vec<String> = parts
            .iter()
            .flat_map(|(id, body)| match events_in(id) {
                // A message of one event is read with its own id, as consumers do.
                1 => vec![id.clone()],
                _ => (0..split_lines(body).len())
                    .map(|k| event_id(id, k))
                    .collect(),
            })
            .collect();
        assert_eq!(ids, ["h:r:7", "h:r:8", "h:r:9"]);
        // A single event stays as it is, however large.
        let one = Bytes::from_static(b"{\"a\":1}");
        assert_eq!(recut("h:r:7", &one, 2), [("h:r:7".to_string(), one)]);
        // Under the bound: the same message.
        assert_eq!(recut("h:r:7+3", &body, 1024).len(), 1);
    }
}
