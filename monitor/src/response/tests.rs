//! The response layer without a kernel: simulated blocks, alerts, log files and filtering.
//! Real enforcement is covered by tests/integration/response.rs.
use std::fs;

use chrono::Utc;

use super::*;
use crate::config::{Response, ThreatDetection};
use crate::event::EventType;
use crate::rules::Evaluator;
use crate::rules::{RuleEngine, RuleSet};

const RULES: &str = r#"{"rules": [
  {"name": "tmp_alert", "condition": "process.path.startswith('/tmp/alert/')", "risk_score": 0.7, "action": "alert", "label": "Alert me"},
  {"name": "tmp_log", "condition": "process.path.startswith('/tmp/log/')", "risk_score": 0.7, "action": "log", "label": "Log me"},
  {"name": "tmp_quiet", "condition": "process.path.startswith('/tmp/quiet/')", "risk_score": 0.2, "action": "alert", "label": "Too weak"},
  {"name": "tmp_sim", "condition": "process.path.startswith('/tmp/sim/')", "risk_score": 0.9, "action": "simulate_block", "label": "Would stop"},
  {"name": "tmp_block", "condition": "process.path.startswith('/tmp/block/')", "risk_score": 0.9, "action": "block", "label": "Stop it"},
  {"name": "bad_port", "condition": "net.dst_port == 4444", "event_types": ["net_connect"], "risk_score": 0.9, "action": "block", "label": "C2 port"}
]}"#;

fn analyzer() -> Evaluator {
    let set = RuleSet::from_json("test.json", RULES).expect("rules compile");
    Evaluator::for_config(
        RuleEngine::with_set(set, Vec::new()),
        &ThreatDetection::default(),
    )
}

fn exec(exe: &str) -> Event {
    let mut e = Event::new(EventType::ProcessExec, Utc::now());
    e.exe = exe.into();
    e.process = exe.rsplit('/').next().unwrap_or_default().into();
    e.pid = 4242;
    e
}

fn run(responder: &mut Responder, analyzer: &mut Evaluator, mut event: Event) -> Event {
    let outcome = analyzer.analyze(&mut event);
    responder.respond_analyzed(&mut event, &outcome);
    responder.flush();
    event
}

#[test]
fn benign_events_get_no_response() {
    let mut responder = Responder::new(&Response::default(), None).expect("responder");
    let mut analyzer = analyzer();
    let e = run(&mut responder, &mut analyzer, exec("/usr/bin/ls"));
    assert!(e.response.is_empty());
    let json = serde_json::to_value(&e).expect("json");
    assert!(json.get("response").is_none(), "absent when empty: {json}");
    assert_eq!(responder.stats().summary(), None);
}

#[test]
fn block_rules_are_simulated_when_enforce_is_off() {
    let mut responder = Responder::new(&Response::default(), None).expect("responder");
    let mut analyzer = analyzer();
    let e = run(&mut responder, &mut analyzer, exec("/tmp/block/x"));
    let block = &e.response[0];
    assert_eq!(block.action, ResponseKind::Block);
    assert_eq!(block.result, ResponseResult::Simulated);
    assert_eq!(block.rule.as_deref(), Some("tmp_block"));
    assert_eq!(block.target.as_deref(), Some("exec path /tmp/block/x"));
    assert!(
        block
            .detail
            .starts_with("would block: deny exec path /tmp/block/x"),
        "{}",
        block.detail
    );
    assert!(
        block.detail.ends_with("(enforce is off)"),
        "{}",
        block.detail
    );
    // Every block is also an alert.
    assert_eq!(e.response[1].action, ResponseKind::Alert);

    let e = run(&mut responder, &mut analyzer, exec("/tmp/sim/y"));
    assert_eq!(e.response[0].action, ResponseKind::SimulateBlock);
    assert_eq!(e.response[0].result, ResponseResult::Simulated);
    let json = serde_json::to_value(&e).expect("json");
    assert_eq!(json["response"][0]["action"], "simulate_block");
    assert_eq!(json["response"][0]["result"], "simulated");
    assert_eq!(json["response"][0]["rule"], "tmp_sim");
    assert!(json["response"][0].get("deny_id").is_none());
    let stats = responder.stats();
    assert_eq!((stats.simulated, stats.blocks, stats.alerts), (2, 0, 2));
}

#[test]
fn a_reload_between_scoring_and_responding_does_not_change_the_response() {
    let mut responder = Responder::new(&Response::default(), None).expect("responder");
    let mut analyzer = analyzer();
    let mut event = exec("/tmp/block/x");
    let outcome = analyzer.analyze(&mut event);
    // The new set turns `tmp_block` into an alert and drops `tmp_sim`: the event was scored by
    // the old set, so it is answered as the old set asked.
    let reloaded = RuleSet::from_json(
        "reloaded.json",
        r#"{"name": "tmp_block", "condition": "process.path.startswith('/tmp/block/')", "risk_score": 0.9, "action": "alert"}"#,
    )
    .expect("rules compile");
    analyzer.engine().expect("rules loaded").replace(reloaded);
    responder.respond_analyzed(&mut event, &outcome);
    assert_eq!(event.response[0].action, ResponseKind::Block);
    assert_eq!(event.response[0].rule.as_deref(), Some("tmp_block"));

    let mut event = exec("/tmp/sim/y");
    let mut analyzer = self::analyzer();
    let outcome = analyzer.analyze(&mut event);
    analyzer
        .engine()
        .expect("rules loaded")
        .replace(RuleSet::empty());
    responder.respond_analyzed(&mut event, &outcome);
    assert_eq!(event.response[0].action, ResponseKind::SimulateBlock);
    assert_eq!(event.response[0].rule.as_deref(), Some("tmp_sim"));
}

#[test]
fn simulated_block_respects_the_allowlist() {
    let config = Response {
        allowlist: vec!["x".to_string()],
        ..Response::default()
    };
    let mut responder = Responder::new(&config, None).expect("responder");
    let mut analyzer = analyzer();
    let e = run(&mut responder, &mut analyzer, exec("/tmp/sim/x"));
    assert_eq!(e.response[0].result, ResponseResult::Skipped);
    assert!(e.response[0].detail.contains("x is allowlisted"));
    assert_eq!(responder.stats().simulated, 0);
}

#[test]
fn connect_block_simulation_names_the_destination() {
    let mut responder = Responder::new(&Response::default(), None).expect("responder");
    let mut analyzer = analyzer();
    let mut e = Event::new(EventType::NetConnect, Utc::now());
    e.process = "nc".into();
    e.target_ip = Some("127.0.0.1".parse().expect("an address"));
    e.target_port = Some(4444);
    let e = run(&mut responder, &mut analyzer, e);
    assert_eq!(
        e.response[0].target.as_deref(),
        Some("connect 127.0.0.1:4444")
    );
    assert!(
        e.response[0]
            .detail
            .contains("refuse every further connect 127.0.0.1:4444 with EPERM"),
        "{}",
        e.response[0].detail
    );
}

#[test]
fn kernel_stops_are_reported() {
    let mut responder = Responder::new(&Response::default(), None).expect("responder");
    let mut analyzer = analyzer();
    let mut e = exec("/usr/bin/whatever");
    e.blocked = true;
    let e = run(&mut responder, &mut analyzer, e);
    assert_eq!(e.response[0].action, ResponseKind::Block);
    assert_eq!(e.response[0].result, ResponseResult::Done);
    assert_eq!(
        e.response[0].detail,
        "killed at exec by the kernel (SIGKILL)"
    );
    assert_eq!(responder.stats().stopped, 1);
}

#[test]
fn alerts_and_logs_go_to_their_files_filtered_by_level() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Response {
        log_file: Some(dir.path().join("events.jsonl")),
        alert_log: Some(dir.path().join("alerts.jsonl")),
        ..Response::default()
    };
    let mut responder = Responder::new(&config, None).expect("responder");
    let mut analyzer = analyzer();
    let alerted = run(&mut responder, &mut analyzer, exec("/tmp/alert/a"));
    let logged = run(&mut responder, &mut analyzer, exec("/tmp/log/b"));
    let quiet = run(&mut responder, &mut analyzer, exec("/tmp/quiet/c"));
    let benign = run(&mut responder, &mut analyzer, exec("/usr/bin/d"));

    let kinds = |e: &Event| e.response.iter().map(|a| a.action).collect::<Vec<_>>();
    assert_eq!(
        kinds(&alerted),
        vec![ResponseKind::Alert, ResponseKind::Log]
    );
    assert_eq!(kinds(&logged), vec![ResponseKind::Log]);
    assert!(
        quiet.response.is_empty(),
        "below log_level: {:?}",
        quiet.response
    );
    assert!(benign.response.is_empty());

    let lines = |name: &str| -> Vec<serde_json::Value> {
        fs::read_to_string(dir.path().join(name))
            .expect("read")
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect()
    };
    let alerts = lines("alerts.jsonl");
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["exe"], "/tmp/alert/a");
    assert_eq!(alerts[0]["analysis"]["label"], "Alert me");
    assert_eq!(alerts[0]["response"][0]["detail"], "raised, alert log");
    let events = lines("events.jsonl");
    let exes: Vec<&str> = events.iter().filter_map(|e| e["exe"].as_str()).collect();
    assert_eq!(exes, vec!["/tmp/alert/a", "/tmp/log/b"]);
    let stats = responder.finish(Duration::from_secs(1));
    assert_eq!((stats.alerts, stats.logged), (1, 2));
    assert!(
        stats
            .summary()
            .is_some_and(|s| s.contains("1 alerts, 2 logged"))
    );
}

#[test]
fn benign_level_logs_everything_but_marks_only_matches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Response {
        log_file: Some(dir.path().join("events.jsonl")),
        log_level: Severity::Benign,
        enable_alerts: false,
        ..Response::default()
    };
    let mut responder = Responder::new(&config, None).expect("responder");
    let mut analyzer = analyzer();
    let benign = run(&mut responder, &mut analyzer, exec("/usr/bin/d"));
    let quiet = run(&mut responder, &mut analyzer, exec("/tmp/quiet/c"));
    assert!(benign.response.is_empty());
    assert_eq!(quiet.response.len(), 1, "alerts are off: only the log line");
    assert_eq!(quiet.response[0].action, ResponseKind::Log);
    let text = fs::read_to_string(dir.path().join("events.jsonl")).expect("read");
    assert_eq!(text.lines().count(), 2);
}

#[test]
fn alerts_reach_the_webhook() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::sync::mpsc;

    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/secmon", listener.local_addr().expect("addr"));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let Ok((mut stream, _)) = listener.accept() else {
            return;
        };
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut head = Vec::new();
        let mut length = 0;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
            head.push(line);
        }
        let mut body = vec![0; length];
        let _ = reader.read_exact(&mut body);
        let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
        let _ = tx.send((head, body));
    });
    let config = Response {
        alert_webhook: Some(url),
        ..Response::default()
    };
    let options = WebhookOptions {
        linger: Duration::from_millis(10),
        ..WebhookOptions::default()
    };
    let mut responder = Responder::with_webhook_options(&config, None, options).expect("responder");
    let mut analyzer = analyzer();
    let e = run(&mut responder, &mut analyzer, exec("/tmp/alert/hook"));
    assert_eq!(e.response[0].detail, "raised, webhook");
    let (head, body) = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the webhook was called");
    assert!(head[0].starts_with("POST /secmon HTTP/1.1"), "{head:?}");
    assert!(
        head.iter()
            .any(|h| h.eq_ignore_ascii_case("content-type: application/json\r\n")),
        "{head:?}"
    );
    let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON body");
    assert_eq!(v["source"], "secmon");
    assert_eq!(v["alerts"][0]["exe"], "/tmp/alert/hook");
    assert_eq!(v["alerts"][0]["analysis"]["rules"][0], "tmp_alert");
    assert_eq!(v["alerts"][0]["response"][0]["action"], "alert");
    let stats = responder.finish(Duration::from_secs(2));
    assert_eq!(stats.webhook.sent, 1);
}

#[test]
fn bad_log_path_is_a_clear_error() {
    let config = Response {
        alert_log: Some(PathBuf::from("/proc/version/alerts.jsonl")),
        ..Response::default()
    };
    let Err(e) = Responder::new(&config, None) else {
        panic!("an alert log under /proc/version cannot be opened");
    };
    assert!(
        e.to_string()
            .starts_with("[response] alert_log: cannot open /proc/version/alerts.jsonl"),
        "{e}"
    );
}
