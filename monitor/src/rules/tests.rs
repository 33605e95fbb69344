//! Engine tests: loading and error positions, every field and operator through the whole
//! pipeline (file → compile → evaluate), scoring, heuristics, chains, toggles, reloads.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, TimeDelta};

use super::testing::run_tests;
use super::*;
use crate::event::{Event, EventType, Severity};

fn rule_json(condition: &str, extra: &str) -> String {
    let condition = serde_json::to_string(condition).expect("json string");
    format!(r#"{{"name": "t", "condition": {condition}, "risk_score": 0.5{extra}}}"#)
}

fn compile(text: &str) -> RuleSet {
    match RuleSet::from_json("t.json", text) {
        Ok(set) => set,
        Err(e) => panic!("should load:\n{e}\n--- file ---\n{text}"),
    }
}

fn errors(text: &str) -> Vec<String> {
    match RuleSet::from_json("t.json", text) {
        Ok(_) => panic!("should not load:\n{text}"),
        Err(RulesError::Invalid(diags)) => diags.iter().map(ToString::to_string).collect(),
        Err(e) => panic!("unexpected error kind: {e}"),
    }
}

fn first_error(text: &str) -> String {
    errors(text).remove(0)
}

fn event(t: EventType) -> Event {
    let mut e = Event::new(t, DateTime::UNIX_EPOCH);
    e.pid = 100;
    e.tid = 100;
    e.ppid = 1;
    e.uid = 1000;
    e.user = "alice".into();
    e.process = "bash".into();
    e.exe = "/usr/bin/bash".into();
    e.cmdline = "bash -i".into();
    e.parent_process = "sshd".into();
    e.ancestors = vec!["sshd".into(), "systemd".into()];
    e
}

fn at(mut e: Event, secs: i64) -> Event {
    e.timestamp = DateTime::UNIX_EPOCH + TimeDelta::seconds(secs);
    e
}

fn evaluator(set: RuleSet) -> (RuleEngine, Evaluator) {
    let engine = RuleEngine::with_set(set, Vec::new());
    let evaluator = Evaluator::new(engine.clone(), EvaluatorOptions::default());
    (engine, evaluator)
}

/// Whether the one-rule condition matches the event.
fn check(condition: &str, e: &Event) -> bool {
    let (_, mut ev) = evaluator(compile(&rule_json(condition, "")));
    !ev.matching_rules(e).is_empty()
}

fn file_event(t: EventType, path: &str) -> Event {
    let mut e = event(t);
    e.file_path = Some(path.to_string());
    e
}

fn net_event(t: EventType, dst: &str, port: u16) -> Event {
    let mut e = event(t);
    e.protocol = Some("tcp".to_string());
    e.target_ip = Some(dst.parse().expect("an address"));
    e.target_port = Some(port);
    e.source_ip = Some("10.0.0.5".parse().expect("an address"));
    e.source_port = Some(40000);
    e
}

// ---------------------------------------------------------------------------------------
// Loading

#[test]
fn seed_rule_loads_and_matches() {
    let set = compile(
        r#"{"name": "tmp_exec", "condition": "process.path.contains('/tmp/')", "risk_score": 0.3, "action": "alert"}"#,
    );
    assert_eq!(set.len(), 1);
    let rule = set.get("tmp_exec").expect("rule");
    assert_eq!(rule.meta.action, Action::Alert);
    assert_eq!(rule.meta.label, "tmp_exec");
    assert!(rule.meta.enabled);
    assert_eq!(rule.meta.event_types.len(), EventType::ALL.len());
    let mut e = event(EventType::ProcessExec);
    e.exe = "/tmp/x/evil".into();
    let (_, mut ev) = evaluator(set);
    assert_eq!(ev.matching_rules(&e), vec!["tmp_exec".to_string()]);
}

#[test]
fn file_shapes_rule_array_and_pack() {
    let set = compile(
        r#"[{"name": "a", "condition": "process.name == 'a'", "risk_score": 0.1},
            {"name": "b", "condition": "process.name == 'b'", "risk_score": 0.2}]"#,
    );
    assert_eq!(set.len(), 2);
    let set = compile(
        r#"{"title": "Execution", "description": "TA0002",
            "lists": {"shells": ["sh", "bash"], "ports": [4444, 1337]},
            "macros": {"is_shell": "process.name in shells"},
            "rules": [{"name": "shell", "condition": "is_shell", "risk_score": 0.5},
                      {"name": "port", "condition": "net.dst_port in ports", "risk_score": 0.5}]}"#,
    );
    assert_eq!(set.len(), 2);
    let (_, mut ev) = evaluator(set);
    assert_eq!(
        ev.matching_rules(&event(EventType::ProcessExec)),
        vec!["shell".to_string()]
    );
    let mut e = net_event(EventType::NetConnect, "1.2.3.4", 4444);
    e.process = "nc".into();
    assert_eq!(ev.matching_rules(&e), vec!["port".to_string()]);
}

#[test]
fn documentation_keys_are_carried_to_the_compiled_rule() {
    let set = compile(
        r#"{"name": "doc", "condition": "process.name == 'x'", "risk_score": 0.5,
            "tactic": "execution", "techniques": ["T1059.004", "T1204"],
            "what": "w", "why": "y", "false_positives": "fp"}"#,
    );
    let doc = &set.get("doc").expect("rule").meta.doc;
    assert_eq!(doc.tactics, vec![attack::Tactic::Execution]);
    assert_eq!(doc.techniques, vec!["T1059.004", "T1204"]);
    assert_eq!(
        (
            doc.what.as_str(),
            doc.why.as_str(),
            doc.false_positives.as_str()
        ),
        ("w", "y", "fp")
    );
    assert_eq!(&set.info()[0].doc, doc, "listed with the rule");

    let set = compile(&rule_json(
        "true",
        r#", "tactic": ["execution", "defense_evasion"]"#,
    ));
    assert_eq!(
        set.rules()[0].meta.doc.tactic_keys(),
        "execution, defense_evasion"
    );
    // All optional.
    let set = compile(&rule_json("true", ""));
    assert_eq!(set.rules()[0].meta.doc, RuleDoc::default());
}

#[test]
fn documentation_keys_are_checked() {
    let cases: &[(&str, &str)] = &[
        (
            r#", "tactic": "Execution""#,
            "t.json:1:65: expected an ATT&CK tactic (reconnaissance, resource_development, \
             initial_access, execution, persistence, privilege_escalation, defense_evasion, \
             credential_access, discovery, lateral_movement, collection, command_and_control, \
             exfiltration, impact), found \"Execution\"",
        ),
        (
            r#", "tactic": ["execution", "evasion"]"#,
            "t.json:1:79: expected an ATT&CK tactic (",
        ),
        (
            r#", "tactic": []"#,
            "t.json:1:65: expected an ATT&CK tactic or a non-empty array of them for `tactic`, \
             found an empty array",
        ),
        (
            r#", "techniques": ["T1059.4"]"#,
            "t.json:1:70: expected an ATT&CK technique id such as T1059 or T1059.004 in \
             `techniques`, found \"T1059.4\"",
        ),
        (
            r#", "techniques": "T1059""#,
            "t.json:1:69: expected an array of strings for `techniques`, found a string",
        ),
        (
            r#", "false_positives": ["none"]"#,
            "t.json:1:74: expected a string for `false_positives`, found an array",
        ),
    ];
    for (extra, expected) in cases {
        let got = first_error(&rule_json("true", extra));
        assert!(
            got.starts_with(expected),
            "{extra}:\n  got      {got}\n  expected {expected}"
        );
    }
}

#[test]
fn rules_list_shows_the_tactic() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "r.json",
        &rule_json("true", r#", "tactic": ["execution", "defense_evasion"]"#),
    );
    let command = crate::cli::RulesCommand::List {
        dir: None,
        markdown: false,
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let ok = cli::run(&command, &[dir.path().to_path_buf()], &mut out, &mut err).expect("writes");
    let out = String::from_utf8(out).expect("utf-8");
    assert!(ok, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    let col = lines[0].find("TACTIC").expect("a TACTIC column");
    assert!(
        lines[1][col..].starts_with("execution,defense_evasion"),
        "{out}"
    );
}

#[test]
fn all_rule_keys() {
    let set = compile(
        r#"{"name": "full", "description": "d", "condition": "process.name == 'x'",
            "event_types": ["process_exec", "process_fork"], "risk_score": 0.75,
            "action": "simulate_block", "enabled": false, "tags": ["T1059.004", "T1204"],
            "recommendation": "r", "label": "Full Rule",
            "tests": [{"event": {"process": "x"}, "expect": true},
                      {"event": {"process": "y"}, "expect": false}]}"#,
    );
    let r = set.get("full").expect("rule");
    assert_eq!(r.meta.description, "d");
    assert_eq!(r.meta.score, 0.75);
    assert_eq!(r.meta.action, Action::SimulateBlock);
    assert!(!r.meta.enabled && !r.is_enabled());
    assert_eq!(r.meta.tags, vec!["T1059.004", "T1204"]);
    assert_eq!(r.meta.recommendation, "r");
    assert_eq!(r.meta.label, "Full Rule");
    assert_eq!(
        r.meta.event_types,
        vec![EventType::ProcessExec, EventType::ProcessFork]
    );
    assert_eq!(r.tests.len(), 2);
    // A test event without event_type gets the rule's first type.
    assert_eq!(r.tests[0].event.event_type, EventType::ProcessExec);
    for action in ["alert", "log", "block"] {
        compile(&rule_json("true", &format!(r#", "action": "{action}""#)));
    }
}

#[test]
fn errors_point_into_the_condition() {
    let text =
        "{\n  \"name\": \"x\",\n  \"condition\": \"process.nam == 'a'\",\n  \"risk_score\": 0.5\n}";
    assert_eq!(
        first_error(text),
        "t.json:3:17: expected a field, found unknown field `process.nam` (did you mean `process.name`?)"
    );
    // Escapes before the error shift the column in the file, not in the condition.
    let text = "{\"name\": \"x\", \"risk_score\": 0.5,\n \"condition\": \"process.name == \\\"a\\\" && file.mode.contains('x')\"}";
    let line = text.lines().nth(1).expect("line 2");
    let column = line.find("contains").expect("in line") + 1;
    assert_eq!(
        first_error(text),
        format!(
            "t.json:2:{column}: expected a text or list field before `.contains`, found number field `file.mode`"
        )
    );
    // Syntax errors.
    let text = r#"{"name": "x", "risk_score": 0.5, "condition": "process.name == 'a' &&"}"#;
    let column = text.find("\"}").expect("end") + 1;
    assert_eq!(
        first_error(text),
        format!(
            "t.json:1:{column}: expected a field, a value or `(`, found the end of the condition"
        )
    );
    let text = r#"{"name": "x", "risk_score": 0.5, "condition": "(process.name == 'a'"}"#;
    assert!(first_error(text).ends_with("expected `)`, found the end of the condition"));
}

#[test]
fn load_time_errors() {
    let cases: &[(&str, &str)] = &[
        (
            "process.name.contains(3)",
            "expected a string argument to `.contains`, found number 3",
        ),
        (
            "file.mode == 'x'",
            "expected a number to compare with number field `file.mode`, found string \"x\"",
        ),
        (
            "process.name < 'x'",
            "expected `==` or `!=` to compare text, found `<`",
        ),
        (
            "process.name.matches('a(')",
            "expected a valid regular expression, found \"a(\"",
        ),
        (
            "net.dst_ip in cidr('10.0.0.0/33')",
            "expected an IP address or network such as \"10.0.0.0/8\" in cidr(...), found \"10.0.0.0/33\"",
        ),
        (
            "process.name in cidr('10.0.0.0/8')",
            "expected an IP address field (net.dst_ip, net.src_ip) before `in cidr(...)`, found `process.name`",
        ),
        (
            "process.name in nolist",
            "expected a list name, found unknown name `nolist`",
        ),
        (
            "nomacro",
            "expected a field or macro, found unknown name `nomacro`",
        ),
        (
            "process.name",
            "expected a condition, found text field `process.name` on its own",
        ),
        (
            "event.type == 'exec'",
            "expected an event type (process_exec,",
        ),
        (
            "process.name in [1, 2]",
            "expected strings in the list (for `process.name`), found number 1",
        ),
        (
            "file.mode in ['x']",
            "expected numbers in the list (for `file.mode`), found string \"x\"",
        ),
        (
            "ancestors == 'x'",
            "expected `.contains(x)`, `.matches(re)` or `in [...]` on a list field, found `==`",
        ),
        (
            "process.name & 4 == 0",
            "expected an integer field before `&`, found text field",
        ),
        (
            "file.mode & 'x' == 0",
            "expected an integer mask after `&`, found string \"x\"",
        ),
        (
            "'a' == 'b'",
            "expected a field on one side of `==`, found string \"a\"",
        ),
        (
            "process.name == 'a' == 'b'",
            "expected `&&`, `||` or the end of the condition, found `==`",
        ),
    ];
    for (condition, expected) in cases {
        let got = first_error(&rule_json(condition, ""));
        assert!(
            got.contains(expected),
            "{condition}:\n  got      {got}\n  expected …{expected}…"
        );
        assert!(got.starts_with("t.json:1:"), "{got}");
    }
    let text = r#"{"name": "x", "condition": "true", "risk_score": 0.5, "severity": "high"}"#;
    let got = first_error(text);
    assert!(
        got.starts_with("t.json:1:55: expected a rule key ("),
        "{got}"
    );
    assert!(got.ends_with("found `severity`"), "{got}");
    assert!(
        first_error(r#"{"name": "x", "condition": "true", "risk_score": 1.5}"#)
            .contains("expected a `risk_score` between 0 and 1, found 1.5")
    );
    assert!(
        first_error(r#"{"name": "x", "condition": "true"}"#).contains("expected a `risk_score`")
    );
    assert!(first_error(r#"{"name": "x", "risk_score": 0.5}"#).contains("expected a `condition`"));
    assert!(
        first_error(&rule_json("true", r#", "action": "kill""#)).contains("expected an action")
    );
    assert!(
        first_error(&rule_json("true", r#", "event_types": ["exec"]"#))
            .contains("expected an event type")
    );
    assert!(
        first_error(&rule_json("true", r#", "event_types": []"#))
            .contains("at least one event type")
    );
    assert!(
        first_error(&rule_json("true", r#", "enabled": "yes""#))
            .contains("expected true or false for `enabled`")
    );
    assert!(
        first_error(&rule_json(
            "net.dst_port == 1",
            r#", "event_types": ["process_exec"]"#
        ))
        .contains("can only match net_connect, net_accept, net_listen, net_udp, net_close")
    );
    assert!(first_error("[1]").contains("expected a rule object, found a number"));
    assert!(first_error("{\"rules\": 3}").contains("expected an array of rules"));
    assert!(first_error("{\"rulez\": []}").contains("found key `rulez`"));
    assert_eq!(
        first_error("{\"a\": }"),
        "t.json:1:7: expected a JSON value, found `}`"
    );
}

#[test]
fn every_problem_is_reported() {
    let text = r#"[{"name": "a", "condition": "bad.field == 1", "risk_score": 0.5},
                   {"name": "b", "condition": "process.name == ", "risk_score": 0.5},
                   {"name": "a", "condition": "true", "risk_score": 0.5}]"#;
    let errs = errors(text);
    assert_eq!(errs.len(), 3, "{errs:#?}");
    assert!(
        errs[2].contains("expected a unique rule name, found `a` (first defined at t.json:1:11)"),
        "{}",
        errs[2]
    );
}

#[test]
fn lists_and_macros() {
    let pack = r#"{"lists": {"shells": ["sh", "bash"], "editors": ["vim"]},
        "macros": {"shell": "process.name in shells", "shell_or_editor": "shell || process.name in editors",
                   "not_root": "process.uid != 0"},
        "rules": [{"name": "r", "condition": "shell_or_editor && not_root", "risk_score": 0.5}]}"#;
    let (_, mut ev) = evaluator(compile(pack));
    let mut e = event(EventType::ProcessExec);
    assert_eq!(ev.matching_rules(&e).len(), 1);
    e.process = "vim".into();
    assert_eq!(ev.matching_rules(&e).len(), 1);
    e.uid = 0;
    assert!(ev.matching_rules(&e).is_empty());

    // Cycles, unknown names, names that clash with fields.
    let cyclic = r#"{"macros": {"a": "b", "b": "process.name == 'x' || a"}, "rules": []}"#;
    let got = first_error(cyclic);
    assert!(got.contains("found a cycle through `a`"), "{got}");
    let got = first_error(r#"{"macros": {"a": "process.nme == 'x'"}, "rules": []}"#);
    assert!(
        got.starts_with("t.json:1:19: expected a field, found unknown field `process.nme`"),
        "{got}"
    );
    assert!(
        first_error(r#"{"lists": {"process.name": ["x"]}}"#)
            .contains("expected a list name made of")
    );
    assert!(first_error(r#"{"lists": {"cgroup": ["x"]}}"#).contains("not a field name"));
    assert!(
        first_error(r#"{"lists": {"l": [true]}}"#)
            .contains("expected strings or numbers in list `l`")
    );
    assert!(
        first_error(r#"{"lists": {"m": ["x"]}, "macros": {"m": "true"}}"#)
            .contains("not already used by a list")
    );
    // Nesting is bounded.
    let chain: Vec<String> = (0..40)
        .map(|i| format!(r#""m{i}": "m{} || process.uid == {i}""#, i + 1))
        .chain([r#""m40": "true""#.to_string()])
        .collect();
    let deep = format!(r#"{{"macros": {{{}}}, "rules": []}}"#, chain.join(", "));
    assert!(first_error(&deep).contains("expected macros nested at most 32 deep"));
    // A broken macro is reported once, not again for each rule using it.
    let text = r#"{"macros": {"m": "nope"}, "rules": [
        {"name": "a", "condition": "m", "risk_score": 0.5}, {"name": "b", "condition": "m", "risk_score": 0.5}]}"#;
    assert_eq!(errors(text).len(), 1);
}

#[test]
fn lists_merge_across_files() {
    let files = vec![
        SourceFile {
            path: PathBuf::from("a.json"),
            text: r#"{"lists": {"shells": ["sh"]}, "rules": [{"name": "r", "condition": "process.name in shells", "risk_score": 0.5}]}"#.to_string(),
        },
        SourceFile {
            path: PathBuf::from("b.json"),
            text: r#"{"lists": {"shells": ["bash"]}}"#.to_string(),
        },
    ];
    let set = RuleSet::from_sources(files).expect("valid");
    assert_eq!(set.files().len(), 2);
    let (_, mut ev) = evaluator(set);
    assert_eq!(ev.matching_rules(&event(EventType::ProcessExec)).len(), 1);
}

// ---------------------------------------------------------------------------------------
// Fields and operators

#[test]
fn process_fields() {
    let e = event(EventType::ProcessExec);
    let yes = [
        "process.name == 'bash'",
        "process.path == '/usr/bin/bash'",
        "process.cmdline.contains('-i')",
        "process.pid == 100",
        "process.tid == 100",
        "process.ppid == 1",
        "parent.pid == 1",
        "process.uid == 1000",
        "process.user == 'alice'",
        "parent.name == 'sshd'",
        "ancestors.contains('systemd')",
        "ancestors in [init, systemd]",
        "ancestors.matches('^ss')",
        "ancestors.startswith('sys')",
        "ancestors.endswith('hd')",
        "event.type == 'process_exec'",
        "event.type in [process_exec, process_fork]",
        "event.type.startswith('process_')",
        "event.type != 'file_open'",
        "container.id == 0",
        "cgroup == 0",
        "process.risk == 0",
        "parent.path == ''",
    ];
    for c in yes {
        assert!(check(c, &e), "{c} should match");
    }
    let no = [
        "process.name == 'sh'",
        "process.name != 'bash'",
        "ancestors.contains('sys')",
        "ancestors in [init]",
        "event.type == 'file_open'",
        "process.uid < 1000",
        "process.uid > 1000",
    ];
    for c in no {
        assert!(!check(c, &e), "{c} should not match");
    }
    assert!(check("process.uid <= 1000 && process.uid >= 1000", &e));
}

#[test]
fn args_field() {
    let mut e = event(EventType::ProcessExec);
    e.argv = Some(vec![
        "nc".into(),
        "-e".into(),
        "/bin/sh".into(),
        "10.0.0.1".into(),
    ]);
    assert!(check("process.args.contains('-e')", &e));
    assert!(!check("process.args.contains('-')", &e));
    assert!(check("process.args in ['-c', '-e']", &e));
    assert!(check("process.args.matches('^/bin/(ba)?sh$')", &e));
    assert!(check("process.args.startswith('/bin')", &e));
    // No argv (not an exec): every test of it is false.
    e.argv = None;
    assert!(!check("process.args.contains('-e')", &e));
    assert!(check("!process.args.contains('-e')", &e));
}

#[test]
fn file_fields() {
    let mut e = file_event(EventType::FileChmod, "/tmp/x");
    e.mode = Some(0o4755);
    e.flags = Some("O_WRONLY|O_CREAT".into());
    assert!(check("file.path == '/tmp/x'", &e));
    assert!(check("file.path.startswith('/tmp/')", &e));
    assert!(check("file.path.endswith('/x')", &e));
    assert!(check("file.path.matches('^/(var/)?tmp/')", &e));
    assert!(check("file.mode == 0o4755", &e));
    assert!(check("file.mode == 2541", &e));
    assert!(check("file.mode & 0o4000 != 0", &e));
    assert!(check("file.mode & 0o2000 == 0", &e));
    assert!(check("file.mode & 0x800 == 0x800", &e));
    assert!(check("file.mode in [0o4755, 0o6755]", &e));
    assert!(check("file.flags.contains('O_CREAT')", &e));
    assert!(!check("file.new_path == '/tmp/y'", &e));
    let mut r = file_event(EventType::FileRename, "/tmp/x");
    r.new_path = Some("/usr/bin/x".to_string());
    assert!(check("file.new_path.startswith('/usr/bin/')", &r));
    // Missing optional fields: false, whatever the operator.
    let plain = file_event(EventType::FileOpen, "/etc/passwd");
    assert!(!check("file.mode == 0", &plain));
    assert!(!check("file.mode != 0", &plain));
    assert!(!check("file.mode & 0o4000 == 0", &plain));
    assert!(!check("file.flags != 'x'", &plain));
    assert!(check("!(file.mode == 0)", &plain));
    // Not on the event type at all.
    assert!(!check(
        "file.path == '/tmp/x'",
        &event(EventType::ProcessExec)
    ));
}

#[test]
fn network_fields_and_cidr() {
    let e = net_event(EventType::NetConnect, "192.168.1.20", 4444);
    assert!(check("net.dst_port == 4444", &e));
    assert!(check("net.dst_port in [4444, 1337]", &e));
    assert!(check("net.src_port > 1024", &e));
    assert!(check("net.protocol == 'tcp'", &e));
    assert!(check("net.dst_ip == '192.168.1.20'", &e));
    assert!(check("net.dst_ip in cidr(\"192.168.0.0/16\")", &e));
    assert!(!check("net.dst_ip in cidr('10.0.0.0/8')", &e));
    assert!(check("net.src_ip in cidr('10.0.0.0/8')", &e));
    assert!(check(
        "net.dst_ip in [cidr('10.0.0.0/8'), '192.168.1.20']",
        &e
    ));
    assert!(check("net.dst_ip in ['10.0.0.0/8', '192.168.1.0/24']", &e));
    assert!(check("!(net.dst_ip in cidr('127.0.0.0/8'))", &e));
    let v6 = net_event(EventType::NetConnect, "fe80::1", 22);
    assert!(check("net.dst_ip in cidr('fe80::/10')", &v6));
    assert!(!check("net.dst_ip in cidr('10.0.0.0/8')", &v6));
    let mapped = net_event(EventType::NetConnect, "::ffff:10.1.2.3", 22);
    assert!(check("net.dst_ip in cidr('10.0.0.0/8')", &mapped));
    let mut listen = event(EventType::NetListen);
    listen.source_port = Some(8080);
    assert!(!check("net.dst_ip in cidr('0.0.0.0/0')", &listen));
    assert!(!check("net.dst_port == 1", &event(EventType::ProcessExec)));
    let mut close = net_event(EventType::NetClose, "1.1.1.1", 443);
    close.bytes_sent = Some(10_000_000);
    assert!(check("net.bytes_sent > 1000000", &close));
}

/// Addresses are typed: `==` compares addresses, the text methods read the JSON spelling, and
/// everything the language accepted when addresses were text is still accepted.
#[test]
fn addresses_compare_as_addresses_and_read_as_text() {
    let e = net_event(EventType::NetConnect, "192.168.1.20", 4444);
    assert!(check("net.dst_ip != '192.168.1.21'", &e));
    assert!(!check("net.dst_ip != '192.168.1.20'", &e));
    assert!(check("net.dst_ip.startswith('192.168.')", &e));
    assert!(check("net.dst_ip.endswith('.20')", &e));
    assert!(check("net.dst_ip.contains('168.1')", &e));
    assert!(check("net.dst_ip.matches('^192[.]168[.]')", &e));
    assert!(check("net.src_ip != net.dst_ip", &e));
    assert!(!check("net.src_ip == net.dst_ip", &e));
    // Text that is no address compiles as before and equals no address.
    assert!(!check("net.dst_ip == 'localhost'", &e));
    assert!(check("net.dst_ip != 'localhost'", &e));
    // An address compared with a text field compares the spelling.
    let mut named = e.clone();
    named.process = "192.168.1.20".into();
    assert!(check("net.dst_ip == process.name", &named));
    assert!(check("process.name == net.dst_ip", &named));
    assert!(!check("net.src_ip == process.name", &named));
    let v6 = net_event(EventType::NetConnect, "fe80::1", 22);
    assert!(check("net.dst_ip == 'fe80::1'", &v6));
    assert!(check("net.dst_ip.startswith('fe80:')", &v6));
    let local = net_event(EventType::NetConnect, "::1", 22);
    assert!(
        check("net.dst_ip == '0:0::1'", &local),
        "the same address, spelled longer"
    );
    assert!(check("net.dst_ip in ['::1']", &local));
    let mapped = net_event(EventType::NetConnect, "::ffff:10.1.2.3", 22);
    assert!(check("net.dst_ip == '::ffff:10.1.2.3'", &mapped));
    assert!(
        !check("net.dst_ip == '10.1.2.3'", &mapped),
        "as the text compared"
    );
    assert!(check("net.dst_ip.startswith('::ffff:10.')", &mapped));
    // Absent on a listen: every test of it is false, `!=` included.
    let mut listen = event(EventType::NetListen);
    listen.source_ip = Some("0.0.0.0".parse().expect("an address"));
    assert!(!check("net.dst_ip != '10.0.0.1'", &listen));
    assert!(!check("net.dst_ip.startswith('')", &listen));
    assert!(!check("net.src_ip != net.dst_ip", &listen));
}

#[test]
fn other_event_fields() {
    let mut p = event(EventType::Ptrace);
    p.ptrace_request = Some("PTRACE_ATTACH".to_string());
    p.target_pid = Some(4242);
    assert!(check(
        "ptrace.request == 'PTRACE_ATTACH' && ptrace.target_pid == 4242",
        &p
    ));
    let mut x = event(EventType::ProcessExit);
    x.exit_code = Some(-1);
    x.exit_signal = Some(9);
    assert!(check("exit.code == -1 && exit.signal == 9", &x));
    assert!(check("exit.code < 0", &x));
    let mut u = event(EventType::PrivilegeChange);
    u.old_uid = Some(1000);
    u.new_uid = Some(0);
    u.new_gid = Some(0);
    u.old_gid = Some(1000);
    assert!(check(
        "priv.old_uid != 0 && priv.new_uid == 0 && priv.new_gid == 0",
        &u
    ));
    assert!(check("priv.new_uid < process.uid", &u));
    assert!(check("priv.old_gid == process.uid", &u));
    let mut b = event(EventType::BpfLoad);
    b.bpf_prog_name = Some("sniffer".to_string());
    b.bpf_prog_type = Some(5);
    assert!(check(
        "bpf.prog_name == 'sniffer' && bpf.prog_type == 5",
        &b
    ));
    let mut m = event(EventType::ModuleLoad);
    m.module_params = Some("debug=1".to_string());
    m.syscall = Some("finit_module".into());
    m.file_path = Some("/tmp/rootkit.ko".to_string());
    assert!(check(
        "module.params.contains('debug') && event.syscall == 'finit_module'",
        &m
    ));
    assert!(check("file.path.endswith('.ko')", &m));
    let mut c = event(EventType::FileOpen);
    c.cgroup_id = 77;
    assert!(check("container.id != 0 && cgroup == 77", &c));
    assert!(check(
        "process.name == parent.name || process.name != parent.name",
        &c
    ));
}

#[test]
fn boolean_operators_and_precedence() {
    let e = event(EventType::ProcessExec);
    assert!(check("process.name == 'bash' && process.uid == 1000", &e));
    assert!(check("process.name == 'bash' and process.uid == 1000", &e));
    assert!(!check("process.name == 'bash' && process.uid == 0", &e));
    assert!(check("process.name == 'x' || process.uid == 1000", &e));
    assert!(check("process.name == 'x' or process.uid == 1000", &e));
    assert!(check("!(process.name == 'x')", &e));
    assert!(check("not process.name == 'x'", &e));
    assert!(check("!process.name.contains('x')", &e));
    // && binds tighter than ||.
    assert!(check(
        "process.name == 'bash' || process.name == 'x' && process.uid == 0",
        &e
    ));
    assert!(!check(
        "(process.name == 'bash' || process.name == 'x') && process.uid == 0",
        &e
    ));
    assert!(check("!!(process.name == 'bash')", &e));
    assert!(check("true", &e));
    assert!(!check("false", &e));
    assert!(check("1 < process.uid", &e));
    assert!(check("process.name == \"bash\"", &e));
    assert!(check(
        "process.cmdline == 'bash -i' && process.path.endswith(\"/bash\")",
        &e
    ));
}

#[test]
fn literals() {
    let mut e = event(EventType::FileWrite);
    e.file_path = Some("it's \"quoted\"\\".to_string());
    assert!(check(r#"file.path == 'it\'s "quoted"\\'"#, &e));
    assert!(check(r#"file.path == "it's \"quoted\"\\""#, &e));
    e.mode = Some(0b101);
    assert!(check("file.mode == 0b101", &e));
    assert!(check("file.mode == 5.0", &e));
    assert!(check("file.mode < 5.5", &e));
    e.file_path = Some("/tmp/a.sh".to_string());
    assert!(check(r"file.path.matches('\.sh$')", &e));
    assert!(!check(r"file.path.matches('\.py$')", &e));
    assert!(check("process.risk < 0.5", &e));
}

#[test]
fn event_types_are_inferred() {
    let set = compile(&rule_json(
        "event.type == 'process_exec' && process.name == 'x'",
        "",
    ));
    assert_eq!(
        set.rules()[0].meta.event_types,
        vec![EventType::ProcessExec]
    );
    let set = compile(&rule_json("file.path.startswith('/etc/')", ""));
    assert_eq!(
        set.rules()[0].meta.event_types,
        vec![
            EventType::FileOpen,
            EventType::FileWrite,
            EventType::FileDelete,
            EventType::FileRename,
            EventType::FileChmod,
            EventType::FileLink,
            EventType::ModuleLoad
        ]
    );
    let set = compile(&rule_json(
        "event.type in [net_connect, net_accept] || ptrace.request == 'x'",
        "",
    ));
    assert_eq!(
        set.rules()[0].meta.event_types,
        vec![
            EventType::Ptrace,
            EventType::NetConnect,
            EventType::NetAccept
        ]
    );
    // A negation cannot narrow, except of the type itself.
    let set = compile(&rule_json("!(file.path == '/x')", ""));
    assert_eq!(set.rules()[0].meta.event_types.len(), EventType::ALL.len());
    let set = compile(&rule_json(
        "event.type != 'file_open' && file.path == '/x'",
        "",
    ));
    assert!(
        !set.rules()[0]
            .meta
            .event_types
            .contains(&EventType::FileOpen)
    );
    // Explicit types narrow further.
    let set = compile(&rule_json(
        "file.path == '/x'",
        r#", "event_types": ["file_write"]"#,
    ));
    assert_eq!(set.rules()[0].meta.event_types, vec![EventType::FileWrite]);
    // Indexing: the rule is only under its types.
    let w = set.by_type[EventType::FileWrite as usize].len();
    let o = set.by_type[EventType::FileOpen as usize].len();
    assert_eq!((w, o), (1, 0));
}

// ---------------------------------------------------------------------------------------
// Scoring

fn scored(scores: &[f64], threshold: f64, heuristics: bool, e: &mut Event) -> Outcome {
    let rules: Vec<String> = scores
        .iter()
        .enumerate()
        .map(|(i, s)| {
            format!(r#"{{"name": "r{i}", "condition": "process.name == 'bash'", "risk_score": {s}, "label": "Label {i}", "recommendation": "do {i}"}}"#)
        })
        .collect();
    let set = compile(&format!("[{}]", rules.join(",")));
    let engine = RuleEngine::with_set(set, Vec::new());
    let mut ev = Evaluator::new(
        engine,
        EvaluatorOptions {
            confidence_threshold: threshold,
            enable_heuristics: heuristics,
        },
    );
    ev.analyze(e)
}

#[test]
fn scores_combine_and_set_severity() {
    let cases: &[(&[f64], f64, Severity)] = &[
        (&[0.5, 0.5], 0.75, Severity::Suspicious),
        (&[0.6, 0.7], 0.88, Severity::Malicious),
        (&[0.59], 0.59, Severity::Benign),
        (&[0.6], 0.6, Severity::Suspicious),
        (&[0.85], 0.85, Severity::Malicious),
        (&[1.0, 0.5], 1.0, Severity::Malicious),
        (&[0.0], 0.0, Severity::Benign),
        (&[0.3, 0.3, 0.3], 0.657, Severity::Suspicious),
    ];
    for (scores, risk, severity) in cases {
        let mut e = event(EventType::ProcessExec);
        let out = scored(scores, 0.6, false, &mut e);
        assert!(
            (e.analysis.risk_score - risk).abs() < 1e-9,
            "{scores:?}: {}",
            e.analysis.risk_score
        );
        assert_eq!(e.analysis.severity, *severity, "{scores:?}");
        assert_eq!(e.analysis.detection_method, "rule_based");
        assert_eq!(out.confidence, 1.0);
        assert_eq!(e.analysis.confidence, 1.0, "reported in the event too");
        assert_eq!(out.action, Some(Action::Alert));
    }
    // The threshold comes from the config.
    let mut e = event(EventType::ProcessExec);
    scored(&[0.7], 0.8, false, &mut e);
    assert_eq!(e.analysis.severity, Severity::Benign);
    assert_eq!(severity_of(0.9, 0.95), Severity::Benign);
    assert_eq!(severity_of(0.0, 0.0), Severity::Benign);
}

fn severity_of(risk: f64, threshold: f64) -> Severity {
    engine::severity(risk, threshold)
}

#[test]
fn label_and_order_come_from_the_highest_score() {
    let mut e = event(EventType::ProcessExec);
    scored(&[0.2, 0.9, 0.5, 0.9], 0.6, false, &mut e);
    assert_eq!(e.analysis.label, "Label 1");
    assert_eq!(e.analysis.recommendation, "do 1");
    assert_eq!(e.analysis.rules, vec!["r1", "r3", "r2", "r0"]);
    // No match: the benign default.
    let mut e = event(EventType::ProcessExec);
    e.process = "ls".into();
    let out = scored(&[0.9], 0.6, false, &mut e);
    assert_eq!(e.analysis, crate::event::Analysis::default());
    assert_eq!(out, Outcome::default());
}

#[test]
fn heuristics_only_when_enabled() {
    let mut e = event(EventType::FileWrite);
    e.process = "bash".into();
    e.file_path = Some("/tmp/x".to_string());
    let (_, mut off) = evaluator(RuleSet::empty());
    off.analyze(&mut e);
    assert_eq!(e.analysis.severity, Severity::Benign);

    let engine = RuleEngine::empty();
    let options = EvaluatorOptions {
        confidence_threshold: 0.6,
        enable_heuristics: true,
    };
    let mut on = Evaluator::new(engine, options);
    let out = on.analyze(&mut e);
    assert!((e.analysis.risk_score - 0.7).abs() < 1e-9);
    assert_eq!(e.analysis.severity, Severity::Suspicious);
    assert_eq!(e.analysis.detection_method, "heuristic");
    assert_eq!(
        e.analysis.rules,
        vec!["heuristic:tmp_path", "heuristic:shell"]
    );
    assert_eq!(out.confidence, HEURISTIC_CONFIDENCE);
    assert_eq!(
        e.analysis.confidence, 0.8,
        "the seed's confidence, in the event's JSON"
    );
    assert_eq!(out.action, None);

    // /tmp alone: 0.3, benign.
    e.process = "cc1".into();
    on.analyze(&mut e);
    assert!((e.analysis.risk_score - 0.3).abs() < 1e-9);
    assert_eq!(e.analysis.severity, Severity::Benign);
    assert_eq!(e.analysis.label, "Activity in /tmp");
    // A shell alone: 0.4 (exe under /tmp/ counts as the path).
    e.process = "zsh".into();
    e.file_path = None;
    on.analyze(&mut e);
    assert!((e.analysis.risk_score - 0.4).abs() < 1e-9);
    e.exe = "/tmp/zsh".into();
    on.analyze(&mut e);
    assert!((e.analysis.risk_score - 0.7).abs() < 1e-9);

    // With a rule: one more factor, and the method stays rule_based.
    let mut e = event(EventType::ProcessExec);
    scored(&[0.5], 0.6, true, &mut e);
    assert!((e.analysis.risk_score - 0.7).abs() < 1e-9);
    assert_eq!(e.analysis.detection_method, "rule_based");
    assert_eq!(e.analysis.rules, vec!["r0", "heuristic:shell"]);
}

#[test]
fn process_risk_accumulates() {
    let set = compile(
        r#"[{"name": "touch_secret", "condition": "file.path == '/etc/shadow'", "risk_score": 0.5},
            {"name": "risky", "condition": "process.risk >= 0.9 && event.type == 'file_open'", "risk_score": 0.1}]"#,
    );
    let (_, mut ev) = evaluator(set);
    let e = file_event(EventType::FileOpen, "/etc/shadow");
    assert_eq!(ev.matching_rules(&e), vec!["touch_secret"]);
    assert!((ev.process_risk(100, 0) - 0.5).abs() < 1e-9);
    // Risk is read before this event's matches are added.
    assert_eq!(ev.matching_rules(&e), vec!["touch_secret"]);
    assert_eq!(ev.process_risk(100, 0), 1.0);
    assert_eq!(ev.matching_rules(&e), vec!["touch_secret", "risky"]);
    // Another process is unaffected; an exit forgets the process.
    let mut other = file_event(EventType::FileOpen, "/etc/hosts");
    other.pid = 101;
    assert!(ev.matching_rules(&other).is_empty());
    ev.matching_rules(&event(EventType::ProcessExit));
    assert_eq!(ev.process_risk(100, 0), 0.0);
}

#[test]
fn process_risk_is_reported_in_the_analysis() {
    let set = compile(
        r#"[{"name": "touch_secret", "condition": "file.path == '/etc/shadow'", "risk_score": 0.4}]"#,
    );
    let (_, mut ev) = evaluator(set);
    let mut e = file_event(EventType::FileOpen, "/etc/shadow");
    ev.analyze(&mut e);
    assert_eq!(e.analysis.process_risk, 0.4);
    ev.analyze(&mut e);
    assert_eq!(e.analysis.process_risk, 0.8);
    // A later event of the same process that matches nothing still shows what it has done.
    let mut quiet = file_event(EventType::FileOpen, "/etc/hosts");
    ev.analyze(&mut quiet);
    assert_eq!(quiet.analysis.severity, Severity::Benign);
    assert_eq!(quiet.analysis.process_risk, 0.8);
    // Its exit too (the last word on it), then it is forgotten.
    let mut exit = event(EventType::ProcessExit);
    ev.analyze(&mut exit);
    assert_eq!(exit.analysis.process_risk, 0.8);
    ev.analyze(&mut quiet);
    assert_eq!(quiet.analysis.process_risk, 0.0);
}

#[test]
fn parent_path_from_exec_events() {
    let set = compile(&rule_json(
        "parent.path == '/usr/sbin/nginx' && process.name == 'sh'",
        "",
    ));
    let (_, mut ev) = evaluator(set);
    let mut nginx = event(EventType::ProcessExec);
    nginx.pid = 50;
    nginx.process = "nginx".into();
    nginx.exe = "/usr/sbin/nginx".into();
    ev.matching_rules(&nginx);
    let mut sh = event(EventType::ProcessExec);
    sh.pid = 51;
    sh.ppid = 50;
    sh.process = "sh".into();
    sh.exe = "/bin/sh".into();
    assert_eq!(ev.matching_rules(&sh), vec!["t"]);
    sh.ppid = 49;
    assert!(ev.matching_rules(&sh).is_empty());
}

// ---------------------------------------------------------------------------------------
// Chains

const CHAIN: &str = r#"[
  {"name": "tmp_write", "condition": "file.path.startswith('/tmp/')", "event_types": ["file_write"], "risk_score": 0.2},
  {"name": "tmp_exec_after_write", "condition": "process.path.startswith('/tmp/')", "event_types": ["process_exec"],
   "risk_score": 0.8, "requires": {"rule": "tmp_write", "within_secs": 60, "scope": "SCOPE"}}
]"#;

fn chain_set(scope: &str) -> RuleSet {
    compile(&CHAIN.replace("SCOPE", scope))
}

fn proc_event(t: EventType, pid: u32, ppid: u32, secs: i64) -> Event {
    let mut e = at(event(t), secs);
    e.pid = pid;
    e.ppid = ppid;
    e
}

fn write_tmp(pid: u32, ppid: u32, secs: i64) -> Event {
    let mut e = proc_event(EventType::FileWrite, pid, ppid, secs);
    e.file_path = Some("/tmp/payload".to_string());
    e
}

fn exec_tmp(pid: u32, ppid: u32, secs: i64) -> Event {
    let mut e = proc_event(EventType::ProcessExec, pid, ppid, secs);
    e.exe = "/tmp/payload".into();
    e.process = "payload".into();
    e
}

#[test]
fn chain_in_the_same_process_within_the_window() {
    let (_, mut ev) = evaluator(chain_set("process"));
    // Exec from /tmp without the write first: nothing.
    assert!(ev.matching_rules(&exec_tmp(300, 1, 0)).is_empty());
    assert_eq!(ev.matching_rules(&write_tmp(100, 1, 0)), vec!["tmp_write"]);
    assert_eq!(
        ev.matching_rules(&exec_tmp(100, 1, 30)),
        vec!["tmp_exec_after_write"]
    );
    assert!(ev.matching_rules(&exec_tmp(100, 1, 61)).is_empty());
    // Scope process: a child does not inherit.
    ev.matching_rules(&write_tmp(100, 1, 100));
    assert!(ev.matching_rules(&exec_tmp(101, 100, 101)).is_empty());
}

#[test]
fn chain_across_the_process_tree() {
    let (_, mut ev) = evaluator(chain_set("process_tree"));
    // shell 100 → curl 101 writes /tmp/payload; shell forks 102, which execs it.
    ev.matching_rules(&proc_event(EventType::ProcessExec, 100, 1, 0));
    ev.matching_rules(&proc_event(EventType::ProcessFork, 101, 100, 0));
    assert_eq!(
        ev.matching_rules(&write_tmp(101, 100, 1)),
        vec!["tmp_write"]
    );
    ev.matching_rules(&proc_event(EventType::ProcessExit, 101, 100, 2));
    ev.matching_rules(&proc_event(EventType::ProcessFork, 102, 100, 3));
    assert_eq!(
        ev.matching_rules(&exec_tmp(102, 100, 5)),
        vec!["tmp_exec_after_write"]
    );
    // A grandchild of the writer's parent too.
    ev.matching_rules(&proc_event(EventType::ProcessFork, 103, 102, 6));
    assert_eq!(
        ev.matching_rules(&exec_tmp(103, 102, 7)),
        vec!["tmp_exec_after_write"]
    );
    // Out of the window.
    assert!(ev.matching_rules(&exec_tmp(103, 102, 62)).is_empty());
    // Another tree.
    ev.matching_rules(&write_tmp(201, 200, 100));
    assert!(ev.matching_rules(&exec_tmp(301, 300, 101)).is_empty());
    // The writer itself execs (same pid).
    assert_eq!(
        ev.matching_rules(&exec_tmp(201, 200, 102)),
        vec!["tmp_exec_after_write"]
    );
}

#[test]
fn chain_prerequisite_runs_even_when_disabled() {
    let set = chain_set("process");
    let (engine, mut ev) = evaluator(set);
    engine.set_enabled("tmp_write", false).expect("known");
    assert!(ev.matching_rules(&write_tmp(100, 1, 0)).is_empty());
    assert_eq!(
        ev.matching_rules(&exec_tmp(100, 1, 1)),
        vec!["tmp_exec_after_write"]
    );
    assert_eq!(
        engine.current().get("tmp_write").map(CompiledRule::hits),
        Some(0)
    );
}

#[test]
fn chain_errors() {
    let text = r#"[{"name": "a", "condition": "true", "risk_score": 0.1, "requires": {"rule": "b"}},
                   {"name": "b", "condition": "true", "risk_score": 0.1, "requires": {"rule": "a"}}]"#;
    assert!(
        errors(text)
            .iter()
            .any(|e| e.contains("expected `requires` chains without cycles, found a -> b -> a"))
    );
    let text =
        r#"{"name": "a", "condition": "true", "risk_score": 0.1, "requires": {"rule": "zz"}}"#;
    assert!(first_error(text).contains("found unknown rule `zz`"));
    let text =
        r#"{"name": "a", "condition": "true", "risk_score": 0.1, "requires": {"rule": "a"}}"#;
    assert!(first_error(text).contains("this rule's own name"));
    let text = r#"{"name": "a", "condition": "true", "risk_score": 0.1, "requires": {"rule": "a", "scope": "host"}}"#;
    assert!(first_error(text).contains("expected \"process\" or \"process_tree\""));
    let text = r#"{"name": "a", "condition": "true", "risk_score": 0.1, "requires": {"rule": "a", "within": 3}}"#;
    assert!(first_error(text).contains("found `within`"));
    let text = r#"{"name": "a", "condition": "true", "risk_score": 0.1, "requires": {"rule": "a", "within_secs": -3}}"#;
    assert!(first_error(text).contains("positive number of seconds"));
}

// ---------------------------------------------------------------------------------------
// Run-time control

#[test]
fn enable_disable_and_hit_counters() {
    let (engine, mut ev) = evaluator(compile(&rule_json("process.name == 'bash'", "")));
    let mut e = event(EventType::ProcessExec);
    ev.analyze(&mut e);
    ev.analyze(&mut e);
    assert_eq!(engine.list()[0].hits, 2);
    engine.set_enabled("t", false).expect("known rule");
    assert_eq!(engine.is_enabled("t"), Some(false));
    ev.analyze(&mut e);
    assert_eq!(e.analysis.severity, Severity::Benign);
    assert!(e.analysis.rules.is_empty());
    assert_eq!(engine.list()[0].hits, 2);
    engine.set_enabled("t", true).expect("known rule");
    ev.analyze(&mut e);
    assert_eq!(e.analysis.rules, vec!["t"]);
    assert!(matches!(
        engine.set_enabled("nope", true),
        Err(RulesError::UnknownRule(_))
    ));
    // Disabled in the file: loaded, listed, not evaluated until enabled.
    let (engine, mut ev) = evaluator(compile(&rule_json(
        "process.name == 'bash'",
        r#", "enabled": false"#,
    )));
    assert!(ev.matching_rules(&event(EventType::ProcessExec)).is_empty());
    assert!(!engine.list()[0].enabled);
    engine.set_enabled("t", true).expect("known");
    assert_eq!(ev.matching_rules(&event(EventType::ProcessExec)), vec!["t"]);
}

#[test]
fn rule_info_for_listing() {
    let set = compile(
        r#"{"name": "x", "condition": "process.name == 'a'", "risk_score": 0.4, "tags": ["T1"], "action": "log"}"#,
    );
    let info = set.info();
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].name, "x");
    assert_eq!(info[0].score, 0.4);
    assert_eq!(info[0].tags, vec!["T1"]);
    assert_eq!(info[0].action, Action::Log);
    assert!(info[0].enabled);
    assert_eq!(info[0].hits, 0);
    assert_eq!(info[0].file, PathBuf::from("t.json"));
    assert_eq!(info[0].line, 1);
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write rule file");
}

#[test]
fn failing_reload_keeps_the_old_set() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "a.json",
        &rule_json("process.name == 'bash'", ""),
    );
    let engine = RuleEngine::load(vec![dir.path().to_path_buf()]).expect("loads");
    let mut ev = Evaluator::new(engine.clone(), EvaluatorOptions::default());
    let e = event(EventType::ProcessExec);
    assert_eq!(ev.matching_rules(&e), vec!["t"]);
    engine.set_enabled("t", false).expect("known");

    write(
        dir.path(),
        "b.json",
        r#"{"name": "u", "condition": "process.name ==", "risk_score": 0.5}"#,
    );
    let err = engine.reload().expect_err("broken file");
    assert!(err.to_string().contains("b.json:1:"), "{err}");
    let message = watch::reload_message(&Err(err), engine.summary().rules);
    assert!(
        message.starts_with("secmon: rules reload failed: "),
        "{message}"
    );
    assert!(
        message.ends_with("; keeping the previous 1 rules"),
        "{message}"
    );
    assert_eq!(engine.summary().rules, 1);
    engine.set_enabled("t", true).expect("known");
    assert_eq!(ev.matching_rules(&e), vec!["t"]);

    // Fixed: the new set goes in; toggles and hit counts carry over by name.
    write(
        dir.path(),
        "b.json",
        &rule_json("process.uid == 1000", "").replace("\"t\"", "\"u\""),
    );
    engine.set_enabled("t", false).expect("known");
    let hits_before = engine.current().get("t").map(CompiledRule::hits);
    let summary = engine.reload().expect("valid now");
    assert_eq!(summary, ReloadSummary { rules: 2, files: 2 });
    assert_eq!(
        watch::reload_message(&Ok(summary), 1),
        "secmon: rules reloaded: 2 rules from 2 files"
    );
    assert_eq!(engine.is_enabled("t"), Some(false));
    assert_eq!(
        engine.current().get("t").map(CompiledRule::hits),
        hits_before
    );
    assert_eq!(ev.matching_rules(&e), vec!["u"]);

    // A removed directory is an error too, and changes nothing.
    let gone = RuleEngine::load(vec![dir.path().join("missing")]).expect_err("no dir");
    assert!(gone.to_string().contains("cannot read the rules directory"));
}

#[test]
fn chain_hits_survive_a_reload() {
    let engine = RuleEngine::with_set(chain_set("process"), Vec::new());
    let mut ev = Evaluator::new(engine.clone(), EvaluatorOptions::default());
    ev.matching_rules(&write_tmp(100, 1, 0));
    // Same rules in another order: indices change, names do not.
    let reordered = format!(
        "[{{\"name\": \"extra\", \"condition\": \"false\", \"risk_score\": 0.1}},{}",
        &CHAIN.replace("SCOPE", "process").trim_start()[1..]
    );
    engine.replace(compile(&reordered));
    assert_eq!(
        ev.matching_rules(&exec_tmp(100, 1, 10)),
        vec!["tmp_exec_after_write"]
    );
}

#[test]
fn evaluation_during_reloads_sees_whole_sets() {
    let set_a = r#"[{"name": "a1", "condition": "process.name == 'bash'", "risk_score": 0.5},
                    {"name": "a2", "condition": "process.uid == 1000", "risk_score": 0.5}]"#;
    let set_b = r#"[{"name": "b1", "condition": "process.name == 'bash'", "risk_score": 0.5},
                    {"name": "b2", "condition": "process.uid == 1000", "risk_score": 0.5},
                    {"name": "b3", "condition": "process.ppid == 1", "risk_score": 0.5}]"#;
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "rules.json", set_a);
    let engine = RuleEngine::load(vec![dir.path().to_path_buf()]).expect("loads");
    let stop = Arc::new(AtomicBool::new(false));
    let reloads = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let reloader = {
        let engine = engine.clone();
        let stop = stop.clone();
        let reloads = reloads.clone();
        let path = dir.path().join("rules.json");
        std::thread::spawn(move || {
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                reloads.store(n, Ordering::Relaxed);
                match n % 4 {
                    // From files, including a broken one that must change nothing.
                    0 => {
                        std::fs::write(&path, if n.is_multiple_of(8) { set_a } else { set_b })
                            .expect("write");
                        engine.reload().expect("valid");
                    }
                    1 => {
                        std::fs::write(&path, "[{\"name\": ").expect("write");
                        assert!(engine.reload().is_err());
                    }
                    2 => {
                        engine.replace(RuleSet::from_json("a", set_a).expect("valid"));
                    }
                    _ => {
                        engine.replace(RuleSet::from_json("b", set_b).expect("valid"));
                    }
                }
            }
            n
        })
    };
    let mut ev = Evaluator::new(engine.clone(), EvaluatorOptions::default());
    let mut seen_a = 0;
    let mut seen_b = 0;
    let e = event(EventType::ProcessExec);
    // At least 20,000 evaluations, and on until the reloader has gone round a few times (on a
    // busy machine it may hardly run during the first 20,000).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut evaluations = 0u32;
    while evaluations < 20_000
        || (reloads.load(Ordering::Relaxed) < 16 && std::time::Instant::now() < deadline)
    {
        evaluations += 1;
        let got = ev.matching_rules(&e);
        match got
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice()
        {
            ["a1", "a2"] => seen_a += 1,
            ["b1", "b2", "b3"] => seen_b += 1,
            other => panic!("half a set: {other:?}"),
        }
    }
    stop.store(true, Ordering::Relaxed);
    let reloads = reloader.join().expect("reloader");
    assert!(reloads >= 16, "the reloader ran ({reloads} rounds)");
    assert_eq!(seen_a + seen_b, evaluations);
}

// ---------------------------------------------------------------------------------------
// Embedded tests

#[test]
fn embedded_tests_run() {
    let text = r#"[
      {"name": "shell_in_tmp", "condition": "process.name in [sh, bash] && process.path.startswith('/tmp/')",
       "event_types": ["process_exec"], "risk_score": 0.7,
       "tests": [
         {"event": {"process": "bash", "exe": "/tmp/bash"}, "expect": true},
         {"event": {"process": "bash", "exe": "/usr/bin/bash"}, "expect": false},
         {"event": {"event_type": "file_open", "process": "bash", "exe": "/tmp/bash"}, "expect": false},
         {"event": {"process": "bash", "exe": "/tmp/bash"}, "expect": false}
       ]},
      {"name": "write", "condition": "file.path.startswith('/tmp/')", "event_types": ["file_write"], "risk_score": 0.1},
      {"name": "exec_after_write", "condition": "process.path.startswith('/tmp/')", "event_types": ["process_exec"],
       "risk_score": 0.8, "requires": {"rule": "write", "within_secs": 60},
       "tests": [
         {"event": {"exe": "/tmp/x"}, "expect": true},
         {"after": [{"event_type": "file_write", "pid": 5, "file_path": "/tmp/x"}],
          "event": {"pid": 5, "exe": "/tmp/x", "timestamp": "1970-01-01T00:00:30Z"}, "expect": true},
         {"after": [{"event_type": "file_write", "pid": 5, "file_path": "/tmp/x"}],
          "event": {"pid": 6, "exe": "/tmp/x"}, "expect": false},
         {"after": [{"event_type": "file_write", "pid": 5, "file_path": "/tmp/x"}],
          "event": {"pid": 5, "exe": "/tmp/x", "timestamp": "1970-01-01T00:05:00Z"}, "expect": false}
       ]}
    ]"#;
    let set = Arc::new(compile(text));
    let results = run_tests(&set);
    let summary: Vec<(String, usize, bool)> = results
        .iter()
        .map(|r| (r.rule.clone(), r.index, r.passed()))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("shell_in_tmp".to_string(), 1, true),
            ("shell_in_tmp".to_string(), 2, true),
            ("shell_in_tmp".to_string(), 3, true),
            ("shell_in_tmp".to_string(), 4, false),
            ("exec_after_write".to_string(), 1, true),
            ("exec_after_write".to_string(), 2, true),
            ("exec_after_write".to_string(), 3, true),
            ("exec_after_write".to_string(), 4, true),
        ]
    );
    assert_eq!(results[3].line, 8);
    assert_eq!(
        testing::test_gaps(&set),
        vec![("write".to_string(), "no tests")]
    );
}

#[test]
fn embedded_test_errors() {
    let bad_field = rule_json(
        "true",
        r#", "tests": [{"event": {"procss": "x"}, "expect": true}]"#,
    );
    let got = first_error(&bad_field);
    assert!(
        got.contains("expected an event field (see docs/json-schema.md), found `procss`"),
        "{got}"
    );
    let bad_type = rule_json(
        "true",
        r#", "tests": [{"event": {"pid": "x"}, "expect": true}]"#,
    );
    assert!(first_error(&bad_type).contains("expected a valid event"));
    let no_expect = rule_json("true", r#", "tests": [{"event": {}}]"#);
    assert!(first_error(&no_expect).contains("expected `expect`"));
    let extra = rule_json(
        "true",
        r#", "tests": [{"event": {}, "expect": true, "why": 1}]"#,
    );
    assert!(first_error(&extra).contains("found `why`"));
    let bad_kind = rule_json(
        "true",
        r#", "tests": [{"event": {"event_type": "exec"}, "expect": true}]"#,
    );
    assert!(first_error(&bad_kind).contains("expected a valid event"));
}

// ---------------------------------------------------------------------------------------
// Fixtures and the rules CLI

fn fixtures() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/rules_fixtures"
    ))
}

#[test]
fn valid_fixtures_load_and_pass_their_tests() {
    let set =
        Arc::new(RuleSet::load(&[fixtures().join("valid")]).unwrap_or_else(|e| panic!("{e}")));
    assert!(set.len() >= 5, "{}", set.len());
    assert_eq!(set.files().len(), 3);
    let results = run_tests(&set);
    assert!(!results.is_empty());
    let failed: Vec<_> = results.iter().filter(|r| !r.passed()).collect();
    assert!(failed.is_empty(), "{failed:#?}");
}

/// Each invalid fixture is a pack whose `comment` is `expect: LINE:COLUMN: MESSAGE`, the
/// first problem reported.
#[test]
fn invalid_fixtures_fail_with_positions() {
    let dir = fixtures().join("invalid");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("fixture dir")
        .map(|e| e.expect("entry").path())
        .collect();
    paths.sort();
    assert!(paths.len() >= 6);
    for path in paths {
        let text = std::fs::read_to_string(&path).expect("read");
        let expected = text
            .split("\"comment\": \"expect: ")
            .nth(1)
            .and_then(|rest| rest.split("\",\n").next())
            .unwrap_or_else(|| panic!("{}: no `comment: expect: ...`", path.display()))
            .replace("\\\"", "\"")
            .replace("\\\\", "\\");
        let err = RuleSet::from_json("f.json", &text).expect_err("invalid fixture");
        let RulesError::Invalid(diags) = err else {
            panic!("{}: wrong error", path.display());
        };
        assert_eq!(
            diags[0].to_string(),
            format!("f.json:{expected}"),
            "{}",
            path.display()
        );
    }
}

#[test]
fn rules_cli_check_test_list() {
    use crate::cli::RulesCommand;
    let run = |command: RulesCommand, dir: PathBuf| {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let ok = cli::run(&command, &[dir], &mut out, &mut err).expect("writes");
        (
            ok,
            String::from_utf8(out).expect("utf-8"),
            String::from_utf8(err).expect("utf-8"),
        )
    };
    let valid = fixtures().join("valid");
    let (ok, out, _) = run(RulesCommand::Check { dir: None }, valid.clone());
    assert!(ok);
    assert!(
        out.starts_with("ok: ") && out.trim_end().ends_with(" rules in 3 files"),
        "{out}"
    );

    let (ok, out, _) = run(RulesCommand::Test { dir: None }, valid.clone());
    assert!(ok, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("RULE ") && lines[0].ends_with("TEST  EXPECTED  GOT    RESULT"),
        "{out}"
    );
    assert!(
        lines
            .last()
            .is_some_and(|l| l.ends_with(" passed, 0 failed")),
        "{out}"
    );
    // Columns line up.
    let col = lines[0].find("EXPECTED").expect("header");
    assert!(
        lines[1..lines.len() - 1]
            .iter()
            .filter(|l| l.contains("pass"))
            .all(|l| l[col..].starts_with("true") || l[col..].starts_with("false"))
    );

    let (ok, out, _) = run(
        RulesCommand::List {
            dir: None,
            markdown: false,
        },
        valid,
    );
    assert!(ok);
    assert!(out.starts_with("NAME"), "{out}");
    assert!(out.contains("T1059.004"), "{out}");

    let (ok, out, err) = run(
        RulesCommand::Check { dir: None },
        fixtures().join("invalid"),
    );
    assert!(!ok);
    assert!(out.is_empty());
    assert!(err.lines().count() > 6, "{err}");
    assert!(err.trim_end().ends_with("problems in the rules"), "{err}");

    // A failing embedded test fails `rules test`.
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "r.json",
        &rule_json(
            "process.name == 'x'",
            r#", "tests": [{"event": {"process": "y"}, "expect": true}]"#,
        ),
    );
    let (ok, out, _) = run(RulesCommand::Test { dir: None }, dir.path().to_path_buf());
    assert!(!ok);
    assert!(out.contains("FAIL"), "{out}");
    assert!(
        out.contains("r.json:1: rule `t` test 1: expected a match, got no match"),
        "{out}"
    );
    assert!(out.trim_end().ends_with("0 passed, 1 failed"), "{out}");
}

#[test]
fn rule_dirs_defaults() {
    let dirs = rules_dirs(
        Some(Path::new("/x")),
        &[PathBuf::from("/y"), PathBuf::from("/x")],
    );
    assert_eq!(dirs, vec![PathBuf::from("/x"), PathBuf::from("/y")]);
    let dirs = rules_dirs(None, &[]);
    assert_eq!(dirs.len(), 1);
    assert!(dirs[0] == Path::new(SYSTEM_RULES_DIR) || dirs[0] == Path::new(SOURCE_RULES_DIR));
}

#[test]
fn a_byte_order_mark_is_ignored() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "bom.json",
        "\u{feff}[{\"name\": \"b\", \"condition\": \"process.name == 'x' &&\", \"risk_score\": 0.5}]",
    );
    let Err(err) = RuleSet::load(&[dir.path().to_path_buf()]) else {
        panic!("the condition is incomplete")
    };
    let err = err.to_string();
    // The error is the condition's, at the column an editor shows (the mark is not one).
    assert!(err.contains("bom.json:1:52: expected"), "{err}");
}

#[test]
fn watcher_reloads_on_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "a.json", &rule_json("true", ""));
    let engine = RuleEngine::load(vec![dir.path().to_path_buf()]).expect("loads");
    let _watcher = watch(engine.clone()).expect("inotify");
    write(
        dir.path(),
        "b.json",
        &rule_json("true", "").replace("\"t\"", "\"u\""),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while engine.summary().rules != 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "no reload after a change"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A rule directory as an administrator would leave it: root's, mode 0755, one rule file 0644.
fn trusted_rules_dir() -> (tempfile::TempDir, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    write(dir.path(), "a.json", &rule_json("true", ""));
    let file = dir.path().join("a.json");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    (dir, file)
}

fn strict_load_error(dir: &Path) -> String {
    let (_, problems) = load::read_dirs_with(&[dir.to_path_buf()], true);
    assert_eq!(problems.len(), 1, "{problems:?}");
    problems[0].to_string()
}

#[test]
fn as_root_writable_rule_files_and_directories_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    if !crate::secure_fs::strict_modes() {
        return; // the temporary files are not root's
    }
    let (dir, file) = trusted_rules_dir();
    let (files, problems) = load::read_dirs_with(&[dir.path().to_path_buf()], true);
    assert_eq!((files.len(), problems.len()), (1, 0), "{problems:?}");
    RuleSet::load(&[dir.path().to_path_buf()]).expect("a trusted directory loads");

    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o664)).expect("chmod g+w");
    let e = strict_load_error(dir.path());
    assert!(
        e.starts_with(&format!(
            "{}: refusing to use this rule file as root: its mode 0664 lets its group change it",
            file.display()
        )),
        "{e}"
    );
    // The whole set is refused, as for any other problem in a rule file.
    let Err(err) = RuleSet::load(&[dir.path().to_path_buf()]) else {
        panic!("a group-writable rule file is loaded as root")
    };
    assert!(err.to_string().contains("chmod go-w"), "{err}");
    // Off as another user (nothing to protect then).
    let (files, problems) = load::read_dirs_with(&[dir.path().to_path_buf()], false);
    assert_eq!((files.len(), problems.len()), (1, 0));

    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let sub = dir.path().join("more");
    std::fs::create_dir(&sub).expect("mkdir");
    std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let e = strict_load_error(dir.path());
    assert!(
        e.contains("refusing to use this rule directory as root: its mode 0777"),
        "{e}"
    );
    std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o775)).expect("chmod");
    let e = strict_load_error(dir.path());
    assert!(e.contains("rule directory as root: its mode 0775"), "{e}");
}

#[test]
fn as_root_rule_files_owned_by_another_user_are_refused() {
    if !crate::secure_fs::strict_modes() {
        return; // chown needs root
    }
    let (dir, file) = trusted_rules_dir();
    std::os::unix::fs::chown(&file, Some(65534), None).expect("chown nobody");
    let e = strict_load_error(dir.path());
    assert!(
        e.contains("rule file as root: it is owned by nobody (uid 65534), not root (mode 0644)"),
        "{e}"
    );
    assert!(e.contains("fix: sudo chown root:root"), "{e}");
}

// The analysis stage as the pipeline builds it (`Evaluator::for_config`, `Evaluator::default`).
#[test]
fn no_rules_means_benign() {
    let mut analyzer = Evaluator::default();
    let mut event = Event::new(EventType::ProcessExec, DateTime::UNIX_EPOCH);
    event.process = "bash".into();
    event.exe = "/tmp/bash".into();
    analyzer.analyze(&mut event);
    assert_eq!(event.analysis, crate::event::Analysis::default());
}

#[test]
fn rules_fill_the_analysis() {
    let set = RuleSet::from_json(
    "seed.json",
    r#"{"name": "tmp_exec", "condition": "process.path.contains('/tmp/')", "risk_score": 0.7, "action": "alert", "label": "Execution from /tmp"}"#,
)
.expect("valid");
    let engine = RuleEngine::with_set(set, Vec::new());
    let mut analyzer = Evaluator::for_config(engine, &crate::config::ThreatDetection::default());
    let mut event = Event::new(EventType::ProcessExec, DateTime::UNIX_EPOCH);
    event.exe = "/tmp/x".into();
    analyzer.analyze(&mut event);
    assert_eq!(event.analysis.severity, Severity::Suspicious);
    assert_eq!(event.analysis.label, "Execution from /tmp");
    assert_eq!(event.analysis.detection_method, "rule_based");
    assert_eq!(event.analysis.rules, vec!["tmp_exec".to_string()]);
}
