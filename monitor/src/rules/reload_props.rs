//! Property: a reload from rule set A to rule set B behaves like a fresh load of B. An evaluator
//! that analysed events under A and then sees B swapped in (as SIGHUP, a file change or the UI
//! do) must give every later event the same verdict as an evaluator that only ever knew B.
//! The later events come from processes A never saw, so state kept on purpose across a reload
//! (chain prerequisites and risk of known processes, remapped by rule name) does not enter.
use chrono::{DateTime, TimeDelta};
use proptest::prelude::*;

use super::*;
use crate::event::{Event, EventType};

/// Rule names and the conditions each may have: a name in both sets may mean something else
/// in B, which a stale index or memo would confuse.
const POOL: &[(&str, &[&str])] = &[
    (
        "shell",
        &[
            "process.name == 'bash'",
            "process.name in ['sh', 'bash'] && event.type == 'process_exec'",
        ],
    ),
    (
        "tmp_exec",
        &["event.type == 'process_exec' && process.path.startswith('/tmp/')"],
    ),
    (
        "shadow",
        &[
            "file.path == '/etc/shadow'",
            "file.path.startswith('/etc/')",
        ],
    ),
    (
        "port",
        &[
            "event.type == 'net_connect' && net.dst_port == 4444",
            "net.dst_port > 1000",
        ],
    ),
    ("curl", &["process.cmdline.contains('curl')"]),
    (
        "tmp_write",
        &["event.type == 'file_open' && file.path.startswith('/tmp/')"],
    ),
    ("risky", &["process.risk > 0.5"]),
];

/// `after_tmp_write` needs `tmp_write` earlier in the same process (a chain).
const CHAIN: &str = r#"{"name": "after_tmp_write", "condition": "event.type == 'net_connect'", "risk_score": 0.6, "requires": {"rule": "tmp_write", "within_secs": 60}}"#;

/// A rule set: for each pool entry, absent or (variant, score, action); and the chain rule.
fn rule_set() -> impl Strategy<Value = String> {
    let entry = proptest::option::of((0usize..2, 1u32..10, 0usize..3));
    (
        proptest::collection::vec(entry, POOL.len()),
        any::<bool>(),
    )
        .prop_map(|(entries, chain)| {
            let mut rules = Vec::new();
            for ((name, variants), entry) in POOL.iter().zip(entries) {
                let Some((variant, score, action)) = entry else {
                    continue;
                };
                let condition = variants[variant % variants.len()];
                let action = ["log", "alert", "simulate_block"][action];
                rules.push(format!(
                    r#"{{"name": "{name}", "condition": "{condition}", "risk_score": 0.{score}, "action": "{action}", "label": "{name} {variant}"}}"#
                ));
            }
            if chain && rules.iter().any(|r| r.contains(r#""name": "tmp_write""#)) {
                rules.push(CHAIN.to_string());
            }
            format!("[{}]", rules.join(",\n"))
        })
}

/// An event of a small vocabulary, from a process in `pids`, `secs` after the epoch.
fn event(pids: std::ops::Range<u32>) -> impl Strategy<Value = (u8, u32, u8, u8, u8)> {
    (0u8..4, pids, 0u8..3, 0u8..3, 0u8..3)
}

fn build(spec: (u8, u32, u8, u8, u8), secs: i64) -> Event {
    let (kind, pid, name, path, port) = spec;
    let event_type = [
        EventType::ProcessExec,
        EventType::FileOpen,
        EventType::NetConnect,
        EventType::ProcessExit,
    ][usize::from(kind)];
    let mut e = Event::new(event_type, DateTime::UNIX_EPOCH + TimeDelta::seconds(secs));
    e.pid = pid;
    e.tid = pid;
    e.ppid = 1;
    e.process = ["bash", "curl", "python3"][usize::from(name)].into();
    e.exe = (["/usr/bin/", "/tmp/", "/opt/x/"][usize::from(path)].to_string() + &e.process).into();
    e.cmdline = format!("{} -x", e.process).into();
    match event_type {
        EventType::FileOpen => {
            e.file_path =
                Some(["/etc/shadow", "/tmp/drop", "/home/u/notes"][usize::from(path)].to_string());
        }
        EventType::NetConnect => {
            e.protocol = Some("tcp".to_string());
            e.target_ip = Some("192.0.2.7".parse().expect("an address"));
            e.target_port = Some([4444, 80, 8080][usize::from(port)]);
        }
        _ => {}
    }
    e
}

fn compile(text: &str) -> RuleSet {
    match RuleSet::from_json("prop.json", text) {
        Ok(set) => set,
        Err(e) => panic!("a generated rule set must load:\n{e}\n{text}"),
    }
}

/// What a verdict is made of.
fn verdict(evaluator: &mut Evaluator, mut event: Event) -> String {
    let outcome = evaluator.analyze(&mut event);
    let a = &event.analysis;
    format!(
        "{:?} {:?} {} {:?} {} {} {}",
        outcome.action, a.rules, a.risk_score, a.severity, a.label, a.process_risk, a.confidence
    )
}

proptest! {
    #[test]
    fn reload_behaves_like_a_fresh_load(
        a in rule_set(),
        b in rule_set(),
        before in proptest::collection::vec(event(1000..1004), 0..20),
        after in proptest::collection::vec(event(2000..2004), 1..30),
    ) {
        let engine = RuleEngine::with_set(compile(&a), Vec::new());
        let mut reloaded = Evaluator::new(engine.clone(), EvaluatorOptions::default());
        for (i, spec) in before.into_iter().enumerate() {
            let _ = verdict(&mut reloaded, build(spec, i as i64));
        }
        engine.replace(compile(&b));

        let fresh_engine = RuleEngine::with_set(compile(&b), Vec::new());
        let mut fresh = Evaluator::new(fresh_engine, EvaluatorOptions::default());
        for (i, spec) in after.into_iter().enumerate() {
            let secs = 100 + i as i64;
            prop_assert_eq!(
                verdict(&mut reloaded, build(spec, secs)),
                verdict(&mut fresh, build(spec, secs)),
                "event {} of the run after the reload to\n{}",
                i,
                b
            );
        }
    }
}
