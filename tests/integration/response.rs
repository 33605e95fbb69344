//! The response layer end to end (issue 6), each test with its own `secmon-tui --json --rules
//! DIR --config CFG`: alerts reach a webhook served on loopback by the test; a slow or dead
//! webhook neither slows capture nor loses events; simulated blocks stop nothing; with
//! `enforce = true` a `block` rule gets the next exec killed (allowlisted programs never),
//! `block add connect` over the control socket refuses connect() with EPERM, and everything
//! runs normally again once the monitor is gone; bad configurations and rules are refused
//! with the key named.
use std::{
    fs,
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    os::unix::process::ExitStatusExt,
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Output},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::common::{
    BIN, Instance, TestDir, copy_executable, marker, parse_json_lines, path_str, require_root, run,
    status_of,
};

/// A test's own rules, config and marker programs.
struct Setup {
    dir: TestDir,
}

impl Setup {
    fn new() -> Setup {
        let dir = TestDir::new(&marker());
        fs::create_dir(dir.join("rules")).expect("rules dir");
        Setup { dir }
    }

    /// Copies /bin/true to `name` in the test directory.
    fn program(&self, name: &str) -> PathBuf {
        copy_executable("/bin/true", &self.dir.join(name))
    }

    /// One rule matching the exec of any of `programs`, with `action`.
    fn rule(&self, name: &str, action: &str, programs: &[&Path]) {
        let paths: Vec<String> = programs
            .iter()
            .map(|p| format!("'{}'", path_str(p)))
            .collect();
        let rule = serde_json::json!({
            "name": name,
            "condition": format!("process.path in [{}]", paths.join(", ")),
            "event_types": ["process_exec"],
            "risk_score": 0.9,
            "action": action,
            "label": format!("{name} label"),
        });
        let text = serde_json::json!({ "rules": [rule] }).to_string();
        fs::write(self.dir.join("rules").join(format!("{name}.json")), text).expect("rule file");
    }

    /// The config: `[response]` lines as given, no history.
    fn config(&self, response: &str) -> PathBuf {
        let path = self.dir.join("secmon.toml");
        let text = format!("[response]\n{response}\n\n[storage]\nenabled = false\n");
        fs::write(&path, text).expect("config");
        path
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("run/control.sock")
    }

    fn start(&self, config: &Path) -> Instance {
        let rules = path_str(&self.dir.join("rules"));
        let config = path_str(config);
        let mut monitor = Instance::start(&["--json", "--rules", &rules, "--config", &config]);
        monitor.wait_ready();
        monitor
    }
}

/// Stops a monitor with SIGTERM; its exit status, JSON events and stderr.
fn stop(monitor: Instance) -> (ExitStatus, Vec<Value>, Vec<String>) {
    monitor.signal(libc::SIGTERM);
    let (status, stdout, stderr) = monitor.finish(Duration::from_secs(30));
    let (events, _bad) = parse_json_lines(&stdout);
    (status, events, stderr)
}

/// Runs a program (retrying ETXTBSY right after a copy) and returns its exit status.
fn exec(path: &Path) -> ExitStatus {
    status_of(&mut Command::new(path))
}

/// The `block` response of each exec of `exe` that has one.
fn block_responses<'a>(events: &'a [Value], exe: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["event_type"] == "process_exec" && e["exe"] == exe)
        .filter_map(|e| {
            e["response"]
                .as_array()?
                .iter()
                .find(|a| a["action"] == "block")
        })
        .collect()
}

/// The exec events of `path` in a monitor's output.
fn execs_of<'a>(events: &'a [Value], path: &Path) -> Vec<&'a Value> {
    let path = path_str(path);
    events
        .iter()
        .filter(|e| e["event_type"] == "process_exec" && e["exe"] == path.as_str())
        .collect()
}

fn stderr_text(stderr: &[String]) -> String {
    stderr.join("\n")
}

/// `secmon-tui ARGS`, to completion.
fn secmon(args: &[&str]) -> Output {
    run(Command::new(BIN).args(args), Duration::from_secs(30))
}

// ---------------------------------------------------------------------------------------------
// Webhooks

/// An HTTP server on loopback that answers every POST with 200 and sends each body on.
fn webhook_server() -> (String, mpsc::Receiver<Value>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the webhook server");
    let url = format!("http://{}/alerts", listener.local_addr().expect("addr"));
    let (tx, rx) = mpsc::channel();
    listener.set_nonblocking(true).expect("nonblocking");
    thread::spawn(move || {
        // Bounded: the server stops by itself.
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            let Ok((stream, _)) = listener.accept() else {
                thread::sleep(Duration::from_millis(10));
                continue;
            };
            let _ = stream.set_nonblocking(false);
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            if let Some(body) = read_request(&stream) {
                let mut stream = &stream;
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
                if let Ok(v) = serde_json::from_slice::<Value>(&body)
                    && tx.send(v).is_err()
                {
                    return;
                }
            }
        }
    });
    (url, rx)
}

/// Reads one HTTP request; returns its body.
fn read_request(stream: &TcpStream) -> Option<Vec<u8>> {
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).ok()?;
    if !request_line.starts_with("POST /alerts ") {
        return None;
    }
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 || line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(body)
}

#[test]
fn alerts_are_posted_to_the_webhook_as_json() {
    require_root();
    let setup = Setup::new();
    let program = setup.program("alerting");
    setup.rule("webhook_marker", "alert", &[&program]);
    let (url, bodies) = webhook_server();
    let config = setup.config(&format!("alert_webhook = \"{url}\""));
    let monitor = setup.start(&config);

    assert!(exec(&program).success());
    let expected = path_str(&program);
    let deadline = Instant::now() + Duration::from_secs(20);
    let alert = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let body = bodies
            .recv_timeout(left)
            .expect("the webhook received the alert within 20 s");
        assert_eq!(body["source"], "secmon", "payload: {body}");
        assert!(body["dropped"].is_u64(), "payload: {body}");
        let alerts = body["alerts"].as_array().expect("alerts array").clone();
        if let Some(alert) = alerts.into_iter().find(|a| a["exe"] == expected.as_str()) {
            break alert;
        }
    };
    assert_eq!(alert["event_type"], "process_exec", "{alert}");
    assert_eq!(alert["process"], "alerting", "{alert}");
    assert!(alert["pid"].as_u64().is_some_and(|p| p > 0), "{alert}");
    assert_eq!(alert["analysis"]["rules"][0], "webhook_marker", "{alert}");
    assert_eq!(
        alert["analysis"]["label"], "webhook_marker label",
        "{alert}"
    );
    assert_eq!(alert["analysis"]["severity"], "malicious", "{alert}");
    assert_eq!(alert["response"][0]["action"], "alert", "{alert}");
    assert_eq!(alert["response"][0]["result"], "done", "{alert}");

    let (status, events, stderr) = stop(monitor);
    assert!(status.success(), "{}", stderr_text(&stderr));
    let execs = execs_of(&events, &program);
    assert_eq!(execs.len(), 1, "{}", stderr_text(&stderr));
    assert_eq!(execs[0]["response"][0]["detail"], "raised, webhook");
    assert!(
        stderr
            .iter()
            .any(|l| l.starts_with("secmon: response summary: 1 alerts")
                && l.contains("webhook: 1 sent")),
        "{}",
        stderr_text(&stderr)
    );
}

#[test]
fn alerts_go_to_syslog() {
    require_root();
    let setup = Setup::new();
    let program = setup.program("sysloggy");
    setup.rule("syslog_marker", "alert", &[&program]);
    // A stand-in for /dev/log: a datagram socket the test reads.
    let socket_path = setup.dir.join("dev-log");
    let daemon = std::os::unix::net::UnixDatagram::bind(&socket_path).expect("bind");
    daemon
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let config = setup.config(&format!(
        "syslog = true\nsyslog_socket = \"{}\"",
        path_str(&socket_path)
    ));
    let monitor = setup.start(&config);
    assert!(exec(&program).success());
    let expected = format!("\"exe\":\"{}\"", path_str(&program));
    let mut buf = vec![0u8; 64 * 1024];
    let line = loop {
        let n = daemon
            .recv(&mut buf)
            .expect("a syslog datagram within 20 s");
        let line = String::from_utf8_lossy(&buf[..n]).into_owned();
        if line.contains(&expected) {
            break line;
        }
    };
    // authpriv (10) * 8 + alert (1): the rule scores 0.9, malicious.
    assert!(line.starts_with("<81>secmon["), "{line}");
    let json = line.split_once("]: ").map(|(_, j)| j).expect("message");
    let event: Value = serde_json::from_str(json).expect("the message is the event's JSON");
    assert_eq!(event["analysis"]["rules"][0], "syslog_marker", "{event}");

    let (status, events, stderr) = stop(monitor);
    assert!(status.success(), "{}", stderr_text(&stderr));
    let execs = execs_of(&events, &program);
    assert_eq!(execs[0]["response"][0]["detail"], "raised, syslog");
    assert!(
        stderr
            .iter()
            .any(|l| l.contains("response summary") && l.contains("syslog: 1 sent, 0 dropped")),
        "{}",
        stderr_text(&stderr)
    );
}

#[test]
fn syslog_without_a_daemon_is_refused() {
    require_root();
    let setup = Setup::new();
    let missing = setup.dir.join("no-such-socket");
    let config = setup.config(&format!(
        "syslog = true\nsyslog_socket = \"{}\"",
        path_str(&missing)
    ));
    let stderr = refused(&setup, &config);
    assert!(
        stderr.contains(&format!(
            "[response] syslog_socket: cannot send to {}",
            path_str(&missing)
        )),
        "{stderr}"
    );
}

/// Starts a monitor whose webhook is `url`, runs the alerting program `count` times, and
/// checks every exec is in the JSON output and the run did not wait for the webhook.
fn flood_with_bad_webhook(url: &str) -> Vec<String> {
    let setup = Setup::new();
    let program = setup.program("flood");
    setup.rule("flood_marker", "alert", &[&program]);
    let config = setup.config(&format!("alert_webhook = \"{url}\""));
    let monitor = setup.start(&config);

    // More alerts than the queue holds (1024): overflow is counted, never waited for.
    let count = 1500;
    let started = Instant::now();
    for _ in 0..count {
        assert!(exec(&program).success());
    }
    let took = started.elapsed();
    thread::sleep(Duration::from_secs(1));
    let stopping = Instant::now();
    let (status, events, stderr) = stop(monitor);
    let stop_took = stopping.elapsed();
    assert!(status.success(), "{}", stderr_text(&stderr));
    // Waiting for the webhook would take minutes here (1024 queued alerts, 5 s per try); the
    // monitor gives it 2 s. The margin is for a loaded CI machine.
    assert!(
        stop_took < Duration::from_secs(20),
        "stopping waited for the webhook: {stop_took:?}"
    );
    assert!(
        took < Duration::from_secs(60),
        "{count} execs took {took:?} with a bad webhook"
    );
    let execs = execs_of(&events, &program);
    assert_eq!(
        execs.len(),
        count,
        "every exec reaches the JSON output; stderr:\n{}",
        stderr_text(&stderr)
    );
    assert!(
        execs.iter().all(|e| e["response"][0]["action"] == "alert"),
        "every one is an alert"
    );
    stderr
}

/// `webhook: S sent, F failed, D dropped (queue full)` → (S, F, D).
fn webhook_counts(stderr: &[String]) -> (u64, u64, u64) {
    let line = stderr
        .iter()
        .find(|l| l.starts_with("secmon: response summary:"))
        .unwrap_or_else(|| panic!("no response summary:\n{}", stderr_text(stderr)));
    let part = line
        .split("webhook: ")
        .nth(1)
        .unwrap_or_else(|| panic!("no webhook counts: {line}"));
    let numbers: Vec<u64> = part
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect();
    assert!(numbers.len() >= 3, "{line}");
    (numbers[0], numbers[1], numbers[2])
}

#[test]
fn a_slow_webhook_neither_slows_capture_nor_loses_events() {
    require_root();
    // Accepts connections and never answers (each request runs into the 5 s timeout).
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/alerts", listener.local_addr().expect("addr"));
    listener.set_nonblocking(true).expect("nonblocking");
    let holder = thread::spawn(move || {
        let mut held = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(90);
        while Instant::now() < deadline {
            match listener.accept() {
                Ok((stream, _)) => held.push(stream),
                Err(_) => thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    let stderr = flood_with_bad_webhook(&url);
    let (sent, _failed, dropped) = webhook_counts(&stderr);
    assert_eq!(sent, 0);
    assert!(
        dropped > 0,
        "the queue overflowed and said so:\n{}",
        stderr_text(&stderr)
    );
    drop(holder);
}

#[test]
fn a_dead_webhook_neither_slows_capture_nor_loses_events() {
    require_root();
    // Nothing listens on this port any more: every connect is refused.
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let stderr = flood_with_bad_webhook(&format!("http://127.0.0.1:{port}/alerts"));
    let (sent, failed, dropped) = webhook_counts(&stderr);
    assert_eq!(sent, 0);
    assert!(failed + dropped > 0, "{}", stderr_text(&stderr));
    assert!(
        stderr
            .iter()
            .any(|l| l.starts_with("secmon: warning: webhook")),
        "the first failure is reported:\n{}",
        stderr_text(&stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// Simulated and real blocks

#[test]
fn simulated_blocks_are_marked_and_stop_nothing() {
    require_root();
    let setup = Setup::new();
    let simulated = setup.program("simulated");
    let blocked_off = setup.program("enforce-off");
    setup.rule("sim_marker", "simulate_block", &[&simulated]);
    // A real `block` rule while enforce is off is simulated as well.
    setup.rule("block_marker", "block", &[&blocked_off]);
    let config = setup.config("enforce = false");
    let monitor = setup.start(&config);
    for _ in 0..3 {
        assert!(
            exec(&simulated).success(),
            "a simulated block stops nothing"
        );
        assert!(
            exec(&blocked_off).success(),
            "enforce = false stops nothing"
        );
    }
    let (status, events, stderr) = stop(monitor);
    assert!(status.success(), "{}", stderr_text(&stderr));
    for (program, action, rule) in [
        (&simulated, "simulate_block", "sim_marker"),
        (&blocked_off, "block", "block_marker"),
    ] {
        let execs = execs_of(&events, program);
        assert_eq!(execs.len(), 3, "{}", stderr_text(&stderr));
        for e in execs {
            let r = &e["response"][0];
            assert_eq!(r["action"], action, "{e}");
            assert_eq!(r["result"], "simulated", "{e}");
            assert_eq!(r["rule"], rule, "{e}");
            assert_eq!(
                r["target"],
                format!("exec path {}", path_str(program)).as_str(),
                "{e}"
            );
            let detail = r["detail"].as_str().unwrap_or_default();
            assert!(detail.starts_with("would block: "), "{e}");
            assert!(
                detail.contains("SIGKILL"),
                "says what enforcement would do: {e}"
            );
            assert!(r.get("deny_id").is_none(), "{e}");
            assert!(e.get("blocked").is_none(), "{e}");
        }
    }
    assert!(
        stderr.iter().any(|l| l.contains("6 simulated blocks")),
        "{}",
        stderr_text(&stderr)
    );
}

#[test]
fn block_rule_kills_the_next_exec_and_never_an_allowlisted_program() {
    require_root();
    let setup = Setup::new();
    let denied = setup.program("denied");
    let allowed = setup.program("allowed-tool");
    setup.rule("deny_markers", "block", &[&denied, &allowed]);
    let socket = setup.socket();
    let config = setup.config(&format!(
        "enforce = true\nallowlist = [\"sshd\", \"allowed-tool\"]\ndeny_ttl_secs = 300\n\
         control_socket = \"{}\"\nalert_log = \"{}\"",
        path_str(&socket),
        path_str(&setup.dir.join("alerts.jsonl"))
    ));
    let monitor = setup.start(&config);

    // The rule learns of the program from its first exec, which therefore runs; it adds the
    // program to the kernel deny table, and a later exec is killed at exec.
    let first = exec(&denied);
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut killed = None;
    while Instant::now() < deadline {
        let status = exec(&denied);
        if status.signal() == Some(libc::SIGKILL) {
            killed = Some(status);
            break;
        }
        assert!(status.success(), "{}: {status}", denied.display());
        thread::sleep(Duration::from_millis(50));
    }
    let killed = killed.unwrap_or_else(|| panic!("{} was never killed", denied.display()));
    // What a shell reports for it: 128 + SIGKILL.
    let shell = Command::new("sh")
        .arg("-c")
        .arg(format!("'{}'", path_str(&denied)))
        .status()
        .expect("sh");
    assert_eq!(
        shell.code(),
        Some(137),
        "killed at exec (first run: {first}, then {killed})"
    );

    for _ in 0..3 {
        assert!(
            exec(&allowed).success(),
            "an allowlisted program is never killed"
        );
    }

    let list = secmon(&["block", "list", "--socket", &path_str(&socket)]);
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(
        list.status.success(),
        "{listed}{}",
        String::from_utf8_lossy(&list.stderr)
    );
    assert!(
        listed.contains(&format!("exec path {}", path_str(&denied))),
        "{listed}"
    );
    assert!(listed.contains("rule deny_markers"), "{listed}");
    assert!(!listed.contains("allowed-tool"), "{listed}");

    let (status, events, stderr) = stop(monitor);
    assert!(status.success(), "{}", stderr_text(&stderr));
    assert!(
        exec(&denied).success(),
        "runs normally once the monitor is gone"
    );
    assert!(!socket.exists(), "the control socket is removed at exit");

    let execs = execs_of(&events, &denied);
    let made = execs
        .iter()
        .find(|e| e["response"][0]["result"] == "done" && e.get("blocked").is_none())
        .unwrap_or_else(|| panic!("no exec made the deny entry: {execs:?}"));
    let deny_id = made["response"][0]["deny_id"].as_u64().expect("deny_id");
    assert_eq!(made["response"][0]["action"], "block");
    assert_eq!(made["response"][0]["rule"], "deny_markers");
    let stopped = execs
        .iter()
        .find(|e| e["blocked"] == true)
        .unwrap_or_else(|| panic!("no exec reported as blocked: {execs:?}"));
    assert_eq!(
        stopped["response"][0]["detail"],
        "killed at exec by the kernel (SIGKILL)"
    );
    assert_eq!(stopped["response"][0]["deny_id"].as_u64(), Some(deny_id));
    for e in execs_of(&events, &allowed) {
        assert_eq!(e["response"][0]["result"], "skipped", "{e}");
        assert!(
            e["response"][0]["detail"]
                .as_str()
                .is_some_and(|d| d.contains("allowed-tool is allowlisted")),
            "{e}"
        );
    }
    // Who, what and why: on stderr and in the alert log.
    let line = stderr
        .iter()
        .find(|l| l.starts_with(&format!("secmon: block #{deny_id}: ")))
        .unwrap_or_else(|| panic!("no block line:\n{}", stderr_text(&stderr)));
    assert!(
        line.contains("who: pid ") && line.contains("why: rule deny_markers"),
        "{line}"
    );
    let audit = fs::read_to_string(setup.dir.join("alerts.jsonl")).expect("alert log");
    let record = audit
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["enforcement"] == "block")
        .unwrap_or_else(|| panic!("no block record in the alert log:\n{audit}"));
    assert_eq!(record["id"].as_u64(), Some(deny_id));
    assert_eq!(record["value"], path_str(&denied).as_str());
    assert_eq!(record["rule"], "deny_markers");
    assert_eq!(record["reason"], "deny_markers label");
    assert!(record["by"].as_str().is_some_and(|b| b.starts_with("pid ")));
    assert!(record["expires"].is_string());
}

/// Connects to 127.0.0.1:`port` from a child shell: Ok, or the shell's error message.
fn child_connect(port: u16) -> Result<(), String> {
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("exec 3<>/dev/tcp/127.0.0.1/{port}"))
        .output()
        .expect("run bash");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn connect_deny_over_the_control_socket() {
    require_root();
    let setup = Setup::new();
    let denied = TcpListener::bind("127.0.0.1:0").expect("listener");
    let allowed = TcpListener::bind("127.0.0.1:0").expect("listener");
    let denied_port = denied.local_addr().expect("addr").port();
    let allowed_port = allowed.local_addr().expect("addr").port();
    let socket = setup.socket();
    let socket_s = path_str(&socket);
    let config = setup.config(&format!("enforce = true\ncontrol_socket = \"{socket_s}\""));
    let monitor = setup.start(&config);
    let mode = fs::metadata(&socket).expect("socket").permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600,
        "root only"
    );

    let destination = format!("127.0.0.1:{denied_port}");
    let add = secmon(&[
        "block",
        "add",
        "connect",
        &destination,
        "--reason",
        "test port",
        "--socket",
        &socket_s,
    ]);
    let added = String::from_utf8_lossy(&add.stdout).into_owned();
    assert!(
        add.status.success(),
        "{added}{}",
        String::from_utf8_lossy(&add.stderr)
    );
    let id: u32 = added
        .strip_prefix("blocked #")
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("`blocked #ID …`: {added}"));
    assert!(added.contains(&format!("connect {destination}")), "{added}");

    let refused = child_connect(denied_port).expect_err("connect to the denied port fails");
    assert!(
        refused.contains("Operation not permitted"),
        "EPERM, got: {refused}"
    );
    child_connect(allowed_port).expect("another port still works");

    let unblock = secmon(&["unblock", &id.to_string(), "--socket", &socket_s]);
    assert!(
        unblock.status.success(),
        "{}",
        String::from_utf8_lossy(&unblock.stderr)
    );
    child_connect(denied_port).expect("works again once removed");

    let again = secmon(&[
        "block",
        "add",
        "connect",
        &destination,
        "--socket",
        &socket_s,
    ]);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(child_connect(denied_port).is_err(), "denied again");
    let missing = secmon(&["block", "remove", "999999", "--socket", &socket_s]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("no deny entry with id 999999"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
    // An allowlisted program cannot be denied by hand either.
    let sshd = secmon(&["block", "add", "exec", "sshd", "--socket", &socket_s]);
    assert_eq!(sshd.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&sshd.stderr).contains("sshd is allowlisted"),
        "{}",
        String::from_utf8_lossy(&sshd.stderr)
    );

    let (status, events, stderr) = stop(monitor);
    assert!(status.success(), "{}", stderr_text(&stderr));
    child_connect(denied_port).expect("the connect works again after the monitor exits");

    // The refusals are events too, marked as stopped by the kernel.
    let refusal = events
        .iter()
        .find(|e| {
            e["event_type"] == "net_connect"
                && e["blocked"] == true
                && e["target_port"].as_u64() == Some(u64::from(denied_port))
        })
        .unwrap_or_else(|| {
            panic!(
                "no blocked net_connect event; stderr:\n{}",
                stderr_text(&stderr)
            )
        });
    assert_eq!(refusal["response"][0]["action"], "block", "{refusal}");
    assert_eq!(refusal["response"][0]["result"], "done", "{refusal}");
    assert!(
        stderr.iter().any(|l| l
            .starts_with(&format!("secmon: block #{id}: connect {destination}"))
            && l.contains("why: test port")),
        "{}",
        stderr_text(&stderr)
    );
    drop((denied, allowed));
}

// ---------------------------------------------------------------------------------------------
// The protected set and the rule-deny policy

/// One request line to the control socket, by hand; the reply line.
fn raw_request(socket: &Path, line: &str) -> String {
    let mut stream = std::os::unix::net::UnixStream::connect(socket).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream.write_all(line.as_bytes()).expect("write");
    stream.write_all(b"\n").expect("write");
    let mut reply = String::new();
    BufReader::new(&stream)
        .read_line(&mut reply)
        .expect("reply");
    reply
}

/// A protected program cannot be denied from any entry point, even with an empty allowlist:
/// not by a `block` rule matching it, not by `secmon-tui block add` (by path in any spelling,
/// or by name), not by a raw control-socket request. A rule matching a system binary is
/// refused and logged ("would deny system binary …"). TTLs past a year are refused on the
/// command line and on the socket. Nothing reaches the kernel: the list stays empty.
#[test]
fn protected_programs_are_refused_from_every_entry_point() {
    require_root();
    let setup = Setup::new();
    setup.rule("deny_shell", "block", &[Path::new("/bin/sh")]);
    setup.rule("deny_true", "block", &[Path::new("/usr/bin/true")]);
    let socket = setup.socket();
    let socket_s = path_str(&socket);
    let config = setup.config(&format!(
        "enforce = true\nallowlist = []\ncontrol_socket = \"{socket_s}\""
    ));
    let monitor = setup.start(&config);

    for _ in 0..3 {
        let shell = Command::new("/bin/sh").args(["-c", "exit 0"]).status();
        assert!(
            shell.expect("sh").success(),
            "a protected shell always runs"
        );
        let system = Command::new("/usr/bin/true").status();
        assert!(
            system.expect("true").success(),
            "a system binary is not denied by a rule"
        );
    }

    let bin = std::fs::canonicalize(BIN).expect("secmon-tui");
    let refusals = [
        "/bin/sh".to_string(),
        "/bin//./sh".to_string(),
        "sh".to_string(),
        "secmon-tui".to_string(),
        "sshd-session".to_string(),
        "sshd-auth".to_string(),
        "sudo".to_string(),
        "tmux".to_string(),
        "systemctl".to_string(),
        path_str(&bin),
    ];
    for target in &refusals {
        let out = secmon(&["block", "add", "exec", target, "--socket", &socket_s]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{target}: {stderr}");
        assert!(stderr.contains("is not blocked"), "{target}: {stderr}");
        assert!(stderr.contains("protected"), "{target}: {stderr}");
    }
    let raw = raw_request(&socket, r#"{"op":"add","target":{"exec":"/bin/sh"}}"#);
    assert!(
        raw.contains(r#""ok":false"#) && raw.contains("protected"),
        "{raw}"
    );
    let ttl = format!(
        r#"{{"op":"add","target":{{"exec":"{}"}},"ttl_secs":18446744073709551615}}"#,
        path_str(&setup.dir.join("x"))
    );
    let raw = raw_request(&socket, &ttl);
    assert!(
        raw.contains(r#""ok":false"#) && raw.contains("too long"),
        "{raw}"
    );
    let cli_ttl = secmon(&[
        "block",
        "add",
        "exec",
        "/tmp/x",
        "--ttl",
        "99999999999",
        "--socket",
        &socket_s,
    ]);
    assert_eq!(cli_ttl.status.code(), Some(2), "a usage error");
    let list = secmon(&["block", "list", "--socket", &socket_s]);
    assert_eq!(
        String::from_utf8_lossy(&list.stdout).trim(),
        "no deny entries",
        "nothing reached the kernel"
    );

    let (status, events, stderr) = stop(monitor);
    assert!(status.success(), "{}", stderr_text(&stderr));
    let shell_blocks = block_responses(&events, "/bin/sh");
    assert!(!shell_blocks.is_empty(), "the shell rule fired");
    for block in shell_blocks {
        assert_eq!(block["result"], "skipped", "{block}");
        assert!(
            block["detail"]
                .as_str()
                .is_some_and(|d| d.contains("/bin/sh is protected")),
            "{block}"
        );
    }
    let true_blocks = block_responses(&events, "/usr/bin/true");
    assert!(!true_blocks.is_empty(), "the system binary rule fired");
    for block in true_blocks {
        assert_eq!(block["result"], "skipped", "{block}");
    }
    let logged = stderr
        .iter()
        .filter(|l| l.contains("would deny system binary /usr/bin/true"))
        .count();
    assert_eq!(logged, 1, "logged once:\n{}", stderr_text(&stderr));
    assert!(
        stderr.iter().any(|l| l.contains("deny requests refused:")),
        "{}",
        stderr_text(&stderr)
    );
}

/// Rule-made entries are rate-limited: with `rule_denies_per_minute = 2`, a rule matching
/// three programs denies two and skips the third (said in its response, warned once on
/// stderr, counted in the summary); an operator's entry is not limited.
#[test]
fn rule_made_denies_are_rate_limited() {
    require_root();
    let setup = Setup::new();
    let programs: Vec<PathBuf> = (0..3).map(|i| setup.program(&format!("rl{i}"))).collect();
    let refs: Vec<&Path> = programs.iter().map(PathBuf::as_path).collect();
    setup.rule("deny_rl", "block", &refs);
    let socket = setup.socket();
    let socket_s = path_str(&socket);
    let config = setup.config(&format!(
        "enforce = true\nrule_denies_per_minute = 2\ncontrol_socket = \"{socket_s}\""
    ));
    let monitor = setup.start(&config);
    for program in &programs {
        assert!(exec(program).success(), "the first exec of each runs");
    }
    let operator = setup.program("by-hand");
    let add = secmon(&[
        "block",
        "add",
        "exec",
        &path_str(&operator),
        "--socket",
        &socket_s,
    ]);
    assert!(
        add.status.success(),
        "{}",
        String::from_utf8_lossy(&add.stderr)
    );
    let (status, events, stderr) = stop(monitor);
    assert!(status.success(), "{}", stderr_text(&stderr));
    let results: Vec<(String, String)> = programs
        .iter()
        .flat_map(|p| execs_of(&events, p))
        .filter_map(|e| {
            let block = e["response"]
                .as_array()?
                .iter()
                .find(|a| a["action"] == "block")?;
            Some((
                block["result"].as_str()?.to_string(),
                block["detail"].as_str()?.to_string(),
            ))
        })
        .collect();
    let done = results.iter().filter(|(r, _)| r == "done").count();
    let limited: Vec<&String> = results
        .iter()
        .filter(|(r, d)| {
            r == "skipped" && d.contains("rules may add at most 2 deny entries a minute")
        })
        .map(|(_, d)| d)
        .collect();
    assert_eq!((done, limited.len()), (2, 1), "{results:?}");
    let warned = stderr
        .iter()
        .filter(|l| l.contains("rules may add at most 2 deny entries a minute"))
        .count();
    assert_eq!(warned, 1, "{}", stderr_text(&stderr));
    assert!(
        stderr
            .iter()
            .any(|l| l.contains("1 over the rules' limits")),
        "{}",
        stderr_text(&stderr)
    );
}

/// The control socket serves root only: with the socket and its directory opened to
/// everyone, a client running as nobody is still refused (its credentials come from the
/// kernel), and the refusal is reported.
#[test]
fn control_socket_refuses_non_root_peers() {
    use std::os::unix::{fs::PermissionsExt, process::CommandExt};
    require_root();
    let setup = Setup::new();
    let socket = setup.socket();
    let socket_s = path_str(&socket);
    let config = setup.config(&format!("enforce = true\ncontrol_socket = \"{socket_s}\""));
    let mut monitor = setup.start(&config);
    let open = |path: &Path, mode| {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
    };
    open(setup.dir.path(), 0o755);
    open(&setup.dir.join("run"), 0o755);
    open(&socket, 0o666);
    let out = run(
        Command::new(BIN)
            .args(["block", "list", "--socket", &socket_s])
            .uid(65534)
            .gid(65534),
        Duration::from_secs(30),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("permission denied: the control socket is root-only (uid 65534"),
        "{stderr}"
    );
    monitor.wait_for_stderr("the refusal", |l| {
        l.contains("control socket: refused a client: uid 65534 (root only)")
    });
    let root = secmon(&["block", "list", "--socket", &socket_s]);
    assert!(root.status.success(), "root is served");
    let (status, _events, stderr) = stop(monitor);
    assert!(status.success(), "{}", stderr_text(&stderr));
}

// ---------------------------------------------------------------------------------------------
// Refusals

/// Runs the monitor with `config` (and `rules` if given) and expects it to refuse to start.
fn refused(setup: &Setup, config: &Path) -> String {
    let out = secmon(&[
        "--json",
        "--duration",
        "1",
        "--rules",
        &path_str(&setup.dir.join("rules")),
        "--config",
        &path_str(config),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "refused with exit status 1:\n{stderr}"
    );
    assert!(!stderr.contains("secmon: ready"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[test]
fn malformed_webhook_url_is_refused() {
    require_root();
    let setup = Setup::new();
    let config = setup.config("alert_webhook = \"htp:/hooks.example.com\"");
    let stderr = refused(&setup, &config);
    assert!(
        stderr.contains(&format!(
            "{}:2:17: invalid value for `alert_webhook`",
            path_str(&config)
        )),
        "{stderr}"
    );
}

#[test]
fn unknown_rule_action_is_refused() {
    require_root();
    let setup = Setup::new();
    let program = setup.program("whatever");
    setup.rule("bad_action", "quarantine", &[&program]);
    let config = setup.config("");
    let stderr = refused(&setup, &config);
    assert!(
        stderr.contains("bad_action.json"),
        "names the file:\n{stderr}"
    );
    assert!(
        stderr.contains("expected an action (\"alert\", \"log\", \"simulate_block\", \"block\"), found \"quarantine\""),
        "{stderr}"
    );
}

#[test]
fn block_commands_without_a_monitor_explain_why() {
    require_root();
    let setup = Setup::new();
    let out = secmon(&["block", "list", "--socket", &path_str(&setup.socket())]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no monitor is listening"), "{stderr}");
    assert!(stderr.contains("enforce = true"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
}
