//! Field assertions: one field's value, type or absence, and the envelope every event carries.
//! Each failure prints the whole event.

use std::time::{Duration, SystemTime};

use serde_json::Value;

/// Asserts that `e[field] == expected`, printing the whole event when it is not.
#[track_caller]
pub fn assert_field(e: &Value, field: &str, expected: impl Into<Value>) {
    let expected = expected.into();
    let actual = e.get(field).unwrap_or(&Value::Null);
    assert!(
        *actual == expected,
        "field `{field}`: expected {expected}, got {actual}\n  in event: {e}"
    );
}

/// Asserts that an optional field is absent (or null).
#[track_caller]
pub fn assert_absent(e: &Value, field: &str) {
    let actual = e.get(field).unwrap_or(&Value::Null);
    assert!(
        actual.is_null(),
        "field `{field}` should be absent, got {actual}\n  in event: {e}"
    );
}

/// A field that must be a string.
#[track_caller]
pub fn str_field<'a>(e: &'a Value, field: &str) -> &'a str {
    e.get(field)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("field `{field}` should be a string\n  in event: {e}"))
}

/// A field that must be an unsigned integer.
#[track_caller]
pub fn u64_field(e: &Value, field: &str) -> u64 {
    e.get(field)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("field `{field}` should be an unsigned integer\n  in event: {e}"))
}

/// True when the event's string field is present and satisfies `f` (for predicates).
pub fn str_is(e: &Value, field: &str, f: impl FnOnce(&str) -> bool) -> bool {
    e.get(field).and_then(Value::as_str).is_some_and(f)
}

/// The `|`-separated tokens of the symbolic `flags` field.
#[track_caller]
pub fn flag_tokens(e: &Value) -> Vec<String> {
    str_field(e, "flags")
        .split('|')
        .map(|t| t.trim().to_string())
        .collect()
}

/// Asserts that the event's `syscall` is one of `names` (libc picks e.g. `unlink` or `unlinkat`).
#[track_caller]
pub fn assert_syscall_in(e: &Value, names: &[&str]) {
    let syscall = str_field(e, "syscall");
    assert!(
        names.contains(&syscall),
        "field `syscall`: expected one of {names:?}, got {syscall:?}\n  in event: {e}"
    );
}

/// Checks the fields every event carries, whatever its type.
#[track_caller]
pub fn assert_envelope(e: &Value, kind: &str, since: SystemTime) {
    assert!(e.is_object(), "an event must be a JSON object: {e}");
    assert_field(e, "event_type", kind);

    let ts = str_field(e, "timestamp");
    let parsed = chrono::DateTime::parse_from_rfc3339(ts).unwrap_or_else(|err| {
        panic!("`timestamp` {ts:?} is not RFC 3339 ({err})\n  in event: {e}")
    });
    assert_eq!(
        parsed.offset().local_minus_utc(),
        0,
        "`timestamp` {ts:?} must be UTC\n  in event: {e}"
    );
    // The kernel's monotonic clock converted to wall time: it must land near the moment the test
    // caused the event (generous slack for the conversion, none for a wrong epoch).
    let at = SystemTime::from(parsed);
    let slack = Duration::from_secs(5);
    assert!(
        at >= since - slack && at <= SystemTime::now() + slack,
        "`timestamp` {ts:?} is not within 5 s of when the test acted ({:?})\n  in event: {e}",
        chrono::DateTime::<chrono::Utc>::from(since)
    );

    for field in ["pid", "tid", "ppid", "uid"] {
        let n = u64_field(e, field);
        assert!(
            n <= u64::from(u32::MAX),
            "`{field}` {n} does not fit in u32\n  in event: {e}"
        );
    }
    assert!(
        u64_field(e, "pid") > 0,
        "`pid` must not be 0\n  in event: {e}"
    );
    assert!(
        u64_field(e, "tid") > 0,
        "`tid` must not be 0\n  in event: {e}"
    );
    u64_field(e, "cgroup_id");
    for field in ["user", "process", "exe", "cmdline", "parent_process"] {
        str_field(e, field);
    }
    assert!(
        !str_field(e, "user").is_empty(),
        "`user` must name the uid (or be the number)\n  in event: {e}"
    );
    let ancestors = e
        .get("ancestors")
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("`ancestors` should be an array\n  in event: {e}"));
    assert!(
        ancestors.iter().all(Value::is_string),
        "`ancestors` should hold names\n  in event: {e}"
    );
    if u64_field(e, "uid") == 0 {
        assert_field(e, "user", "root");
    }

    // The verdict's shape; what the rules make of each technique is tested in `rules_e2e`.
    let analysis = e
        .get("analysis")
        .filter(|a| a.is_object())
        .unwrap_or_else(|| panic!("`analysis` should be an object\n  in event: {e}"));
    for field in ["label", "detection_method", "recommendation"] {
        str_field(analysis, field);
    }
    let severity = str_field(analysis, "severity");
    assert!(
        ["benign", "suspicious", "malicious"].contains(&severity),
        "`analysis.severity` should be benign, suspicious or malicious\n  in event: {e}"
    );
    let risk = analysis.get("risk_score").and_then(Value::as_f64);
    assert!(
        risk.is_some_and(|r| (0.0..=1.0).contains(&r)),
        "`analysis.risk_score` should be a number in [0, 1]\n  in event: {e}"
    );
    let process_risk = analysis.get("process_risk").and_then(Value::as_f64);
    assert!(
        process_risk.is_some_and(|r| (0.0..=1.0).contains(&r)),
        "`analysis.process_risk` should be a number in [0, 1]\n  in event: {e}"
    );
    let confidence = analysis.get("confidence").and_then(Value::as_f64);
    let expected = match str_field(analysis, "detection_method") {
        "rule_based" => 1.0,
        "heuristic" => 0.8,
        _ => 0.0,
    };
    assert_eq!(
        confidence,
        Some(expected),
        "`analysis.confidence` follows `detection_method`\n  in event: {e}"
    );
    let rules = analysis.get("rules").and_then(Value::as_array);
    assert!(
        rules.is_some_and(|r| r.iter().all(Value::is_string)),
        "`analysis.rules` should be an array of rule names\n  in event: {e}"
    );
    // A rated event names the rules that rated it.
    if severity != "benign" {
        assert!(
            rules.is_some_and(|r| !r.is_empty()),
            "a {severity} event without rules: {e}"
        );
    }
}
