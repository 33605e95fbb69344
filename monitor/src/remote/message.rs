//! The remote controller's stream messages (`/api/v1/events`, docs/api.md), read as untrusted
//! input: a message that does not parse is skipped (and counted), an event that does not parse
//! is skipped (and counted), every event is cut to what a real capture can produce
//! ([`record::clamp_to_live_limits`]) and its analysis to sane sizes, so a hostile or broken
//! controller cannot feed the panes more than the local capture could. The panes escape
//! every field when they draw it (`ui::clean`); nothing here is printed raw.
use serde::Deserialize;
use serde_json::Value;

use crate::event::{Analysis, Event};
use crate::record;

/// Events taken from one message at most (the controller sends at most 256).
pub const MAX_EVENTS_PER_MESSAGE: usize = 4096;
/// A label, a detection method, a rule name, a response's words: at most this many bytes.
const MAX_WORD: usize = 256;
/// A recommendation or a response's detail.
const MAX_TEXT: usize = 1024;
/// Rules named in one analysis, responses of one event.
const MAX_LIST: usize = 64;

/// One message of the stream, parsed.
#[derive(Debug, Default, PartialEq)]
pub struct Parsed {
    /// The events that parsed, ready for the panes.
    pub events: Vec<Event>,
    /// Events the controller says this client lost (`{"type":"lost","events":N}`).
    pub lost_remotely: u64,
    /// Events of this message that could not be read (malformed, or past the per-message
    /// bound), counted as lost on the link.
    pub unreadable: u64,
    /// The message as a whole was not one this client understands.
    pub unknown: bool,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Message {
    Events {
        #[serde(default)]
        events: Vec<Value>,
    },
    Lost {
        #[serde(default)]
        events: u64,
    },
}

/// Parses one text message. Never fails: what cannot be read is counted in the result.
pub fn parse(text: &str) -> Parsed {
    let message = match serde_json::from_str::<Message>(text) {
        Ok(message) => message,
        Err(_) => {
            return Parsed {
                unknown: true,
                ..Parsed::default()
            };
        }
    };
    match message {
        Message::Lost { events } => Parsed {
            lost_remotely: events,
            ..Parsed::default()
        },
        Message::Events { events: values } => {
            let mut parsed = Parsed::default();
            let total = values.len();
            for value in values.into_iter().take(MAX_EVENTS_PER_MESSAGE) {
                match event_from(value) {
                    Some(event) => parsed.events.push(event),
                    None => parsed.unreadable += 1,
                }
            }
            parsed.unreadable += total.saturating_sub(MAX_EVENTS_PER_MESSAGE) as u64;
            parsed
        }
    }
}

/// One event as the remote analysed it, cut to live limits; `None` when it does not parse.
pub fn event_from(value: Value) -> Option<Event> {
    let mut event: Event = serde_json::from_value(value).ok()?;
    let mut cut = record::clamp_to_live_limits(&mut event);
    cut |= clamp_analysis(&mut event.analysis);
    cut |= clamp_responses(&mut event);
    if cut {
        event.truncated = true;
    }
    Some(event)
}

/// Bounds the remote's verdict: texts and lists cut, scores finite and within 0..=1 (the
/// panes sort and colour by them), the confidence derived as for stored events.
fn clamp_analysis(analysis: &mut Analysis) -> bool {
    let mut cut = false;
    cut |= cut_text(&mut analysis.label, MAX_WORD);
    cut |= cut_text(&mut analysis.detection_method, MAX_WORD);
    cut |= cut_text(&mut analysis.recommendation, MAX_TEXT);
    if analysis.rules.len() > MAX_LIST {
        analysis.rules.truncate(MAX_LIST);
        cut = true;
    }
    for rule in &mut analysis.rules {
        cut |= cut_text(rule, MAX_WORD);
    }
    for score in [&mut analysis.risk_score, &mut analysis.process_risk] {
        cut |= clamp_score(score);
    }
    analysis.confidence = Analysis::confidence_of(&analysis.detection_method);
    cut
}

fn clamp_responses(event: &mut Event) -> bool {
    let mut cut = event.response.len() > MAX_LIST;
    event.response.truncate(MAX_LIST);
    for response in &mut event.response {
        cut |= cut_text(&mut response.detail, MAX_TEXT);
        for word in [&mut response.rule, &mut response.target] {
            cut |= word.as_mut().is_some_and(|w| cut_text(w, MAX_WORD));
        }
    }
    cut
}

fn clamp_score(score: &mut f64) -> bool {
    let clamped = if score.is_finite() {
        score.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let changed = clamped.to_bits() != score.to_bits();
    *score = clamped;
    changed
}

/// Cuts `text` to at most `max` bytes on a character boundary; true when it was cut.
fn cut_text(text: &mut String, max: usize) -> bool {
    if text.len() <= max {
        return false;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    true
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::event::{EventType, Severity};

    fn exec_event() -> Value {
        json!({
            "timestamp": "2026-12-02T12:52:23.460478022Z",
            "event_type": "process_exec",
            "pid": 1794, "tid": 1794, "ppid": 1, "uid": 0, "user": "root",
            "process": "curl", "exe": "/usr/bin/curl", "cmdline": "curl x", "cgroup_id": 1,
            "analysis": {
                "label": "Download", "severity": "suspicious", "risk_score": 0.7,
                "detection_method": "rule_based", "recommendation": "look",
                "rules": ["download_tool"]
            }
        })
    }

    #[test]
    fn an_events_message_keeps_the_remote_analysis() {
        let text = json!({"type": "events", "events": [exec_event()]}).to_string();
        let parsed = parse(&text);
        assert_eq!(parsed.events.len(), 1);
        assert_eq!(parsed.unreadable, 0);
        let event = &parsed.events[0];
        assert_eq!(event.event_type, EventType::ProcessExec);
        assert_eq!(event.analysis.severity, Severity::Suspicious);
        assert_eq!(event.analysis.risk_score, 0.7);
        assert_eq!(event.analysis.rules, ["download_tool"]);
        assert_eq!(event.analysis.confidence, 1.0);
        assert!(!event.truncated);
    }

    #[test]
    fn a_lost_message_is_counted() {
        let parsed = parse(r#"{"type":"lost","events":1834,"total":6147}"#);
        assert_eq!(parsed.lost_remotely, 1834);
        assert!(parsed.events.is_empty() && !parsed.unknown);
    }

    #[test]
    fn garbage_and_unknown_messages_are_skipped_without_a_panic() {
        for text in [
            "",
            "null",
            "[]",
            "{",
            r#"{"type":"hello"}"#,
            r#"{"events":[]}"#,
            r#"{"type":"lost","events":-1}"#,
            r#"{"type":"lost","events":1e400}"#,
            r#"{"type":"events","events":{"a":1}}"#,
            "\u{1b}]52;c;AAAA\u{7}",
        ] {
            let parsed = parse(text);
            assert!(parsed.unknown, "{text:?}: {parsed:?}");
            assert!(parsed.events.is_empty());
        }
    }

    #[test]
    fn malformed_events_are_counted_and_the_rest_kept() {
        let mut wrong_type = exec_event();
        wrong_type["pid"] = json!("not a number");
        let mut no_analysis = exec_event();
        no_analysis
            .as_object_mut()
            .expect("an object")
            .remove("analysis");
        let text = json!({
            "type": "events",
            "events": [exec_event(), wrong_type, 42, "x", null, no_analysis, exec_event()]
        })
        .to_string();
        let parsed = parse(&text);
        assert_eq!(parsed.events.len(), 2);
        assert_eq!(parsed.unreadable, 5);
    }

    #[test]
    fn oversized_fields_are_cut_and_marked_truncated() {
        let mut event = exec_event();
        event["cmdline"] = json!("A".repeat(1 << 20));
        event["process"] = json!("p".repeat(100));
        event["analysis"]["label"] = json!("é".repeat(10_000));
        event["analysis"]["rules"] = json!(vec!["r"; 10_000]);
        event["analysis"]["risk_score"] = json!(7.5);
        event["analysis"]["process_risk"] = json!(-3);
        event["response"] = json!(vec![
            json!({"action": "alert", "result": "done", "detail": "d".repeat(1 << 16)});
            1000
        ]);
        let parsed = parse(&json!({"type": "events", "events": [event]}).to_string());
        let event = &parsed.events[0];
        assert!(event.truncated);
        assert!(event.cmdline.len() < (1 << 20));
        assert!(event.process.len() <= 15);
        assert!(event.analysis.label.len() <= MAX_WORD);
        assert!(event.analysis.label.chars().all(|c| c == 'é'));
        assert_eq!(event.analysis.rules.len(), MAX_LIST);
        assert_eq!(event.analysis.risk_score, 1.0);
        assert_eq!(event.analysis.process_risk, 0.0);
        assert_eq!(event.response.len(), MAX_LIST);
        assert!(event.response.iter().all(|r| r.detail.len() <= MAX_TEXT));
    }

    #[test]
    fn too_many_events_in_one_message_are_counted_not_kept() {
        let events = vec![exec_event(); MAX_EVENTS_PER_MESSAGE + 10];
        let parsed = parse(&json!({"type": "events", "events": events}).to_string());
        assert_eq!(parsed.events.len(), MAX_EVENTS_PER_MESSAGE);
        assert_eq!(parsed.unreadable, 10);
    }

    #[test]
    fn control_characters_survive_parsing_for_the_panes_to_escape() {
        let mut event = exec_event();
        event["exe"] = json!("/tmp/\u{1b}[2J\u{7}evil");
        let parsed = parse(&json!({"type": "events", "events": [event]}).to_string());
        // Kept as data (the detail view shows what the program was called); the panes and
        // the detail view draw it through `ui::clean`, which escapes it (ui's tests).
        assert!(parsed.events[0].exe.contains('\u{1b}'));
        assert_eq!(
            crate::sanitize::for_terminal(&parsed.events[0].exe),
            "/tmp/\\x1b[2J\\x07evil"
        );
    }
}
