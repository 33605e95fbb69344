//! A rule's embedded `tests`: each a partial event (over [`Event::new`]'s defaults) that the
//! rule must or must not match, after optional earlier events.

use chrono::{DateTime, TimeDelta};

use super::Loader;
use crate::event::{Event, EventType};
use crate::rules::RuleTest;
use crate::rules::fields::{ALL_TYPES, TypeMask, types_in};
use crate::rules::json::{Json, JsonValue};

impl Loader {
    pub(super) fn tests(&mut self, file: usize, v: &Json, types: TypeMask) -> Vec<RuleTest> {
        let JsonValue::Array(items) = &v.value else {
            let kind = v.value.kind();
            self.diag_at(
                file,
                v.span.start,
                format!("expected an array of tests for `tests`, found {kind}"),
            );
            return Vec::new();
        };
        let default_type = types_in(if types == 0 { ALL_TYPES } else { types })
            .next()
            .unwrap_or(EventType::ProcessExec);
        let mut tests = Vec::new();
        for item in items {
            let JsonValue::Object(members) = &item.value else {
                let kind = item.value.kind();
                self.diag_at(file, item.span.start, format!("expected a test object {{\"event\": {{...}}, \"expect\": true}}, found {kind}"));
                continue;
            };
            let mut event = None;
            let mut expect = None;
            let mut after = Vec::new();
            for (key, value) in members {
                match key.text.as_str() {
                    "event" => event = self.test_event(file, value, default_type, 1000),
                    "expect" => match value.value {
                        JsonValue::Bool(b) => expect = Some(b),
                        ref other => {
                            let msg = format!(
                                "expected true or false for `expect`, found {}",
                                other.kind()
                            );
                            self.diag_at(file, value.span.start, msg);
                        }
                    },
                    "after" => match &value.value {
                        JsonValue::Array(events) => {
                            for (i, e) in events.iter().enumerate() {
                                if let Some(e) = self.test_event(file, e, default_type, i as i64) {
                                    after.push(e);
                                }
                            }
                        }
                        other => {
                            let msg = format!(
                                "expected an array of earlier events for `after`, found {}",
                                other.kind()
                            );
                            self.diag_at(file, value.span.start, msg);
                        }
                    },
                    "description" | "name" => {}
                    other => {
                        let offset = key.source_offset(0).saturating_sub(1);
                        self.diag_at(file, offset, format!("expected `event`, `expect`, `after` or `description` in a test, found `{other}`"));
                    }
                }
            }
            match (event, expect) {
                (Some(event), Some(expect)) => tests.push(RuleTest {
                    event,
                    after,
                    expect,
                    line: self.line(file, item.span.start),
                }),
                (_, None) => self.diag_at(
                    file,
                    item.span.start,
                    "expected `expect` (true or false) in the test, found none",
                ),
                (None, _) => {
                    if !members.iter().any(|(k, _)| k.text == "event") {
                        self.diag_at(
                            file,
                            item.span.start,
                            "expected an `event` in the test, found none",
                        );
                    }
                }
            }
        }
        tests
    }

    /// A partial event: the given fields over [`Event::new`]'s defaults. `event_type` defaults
    /// to the rule's first event type; `timestamp` to `seconds` after the epoch.
    fn test_event(
        &mut self,
        file: usize,
        v: &Json,
        default_type: EventType,
        seconds: i64,
    ) -> Option<Event> {
        let JsonValue::Object(members) = &v.value else {
            let kind = v.value.kind();
            self.diag_at(
                file,
                v.span.start,
                format!("expected an event object, found {kind}"),
            );
            return None;
        };
        let timestamp = DateTime::UNIX_EPOCH + TimeDelta::seconds(seconds);
        let base = Event::new(default_type, timestamp);
        let mut value = match serde_json::to_value(&base) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => return None,
        };
        for (key, field) in members {
            value.insert(key.text.clone(), to_serde(field));
        }
        let event: Event = match serde_json::from_value(serde_json::Value::Object(value)) {
            Ok(e) => e,
            Err(e) => {
                // serde names the field in its message; point at the member when we can.
                let message = e.to_string();
                let offset = members
                    .iter()
                    .find(|(k, _)| {
                        message.contains(&format!("`{}`", k.text)) || message.contains(&k.text)
                    })
                    .map_or(v.span.start, |(_, val)| val.span.start);
                self.diag_at(
                    file,
                    offset,
                    format!("expected a valid event, found a problem: {message}"),
                );
                return None;
            }
        };
        // Keys that did not land in any Event field are typos.
        if let Ok(serde_json::Value::Object(round)) = serde_json::to_value(&event) {
            for (key, field) in members {
                if !round.contains_key(&key.text) && !matches!(field.value, JsonValue::Null) {
                    let offset = key.source_offset(0).saturating_sub(1);
                    self.diag_at(
                        file,
                        offset,
                        format!(
                            "expected an event field (see docs/json-schema.md), found `{}`",
                            key.text
                        ),
                    );
                }
            }
        }
        Some(event)
    }
}

fn to_serde(json: &Json) -> serde_json::Value {
    use serde_json::Value;
    match &json.value {
        JsonValue::Null => Value::Null,
        JsonValue::Bool(b) => Value::Bool(*b),
        JsonValue::Number(n) => {
            if let Ok(i) = n.parse::<i64>() {
                Value::from(i)
            } else if let Ok(u) = n.parse::<u64>() {
                Value::from(u)
            } else {
                n.parse::<f64>().map_or(Value::Null, Value::from)
            }
        }
        JsonValue::String(s) => Value::String(s.text.clone()),
        JsonValue::Array(items) => Value::Array(items.iter().map(to_serde).collect()),
        JsonValue::Object(members) => Value::Object(
            members
                .iter()
                .map(|(k, v)| (k.text.clone(), to_serde(v)))
                .collect(),
        ),
    }
}
