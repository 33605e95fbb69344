//! The fleet over NATS JetStream (`[export.nats]`, docs/fleet.md): each test starts its own
//! `nats-server -js` on a free loopback port with its store in the test's directory, and
//! monitors that publish to it (a live one with real probes, others replaying recordings under
//! other host names). What arrives is read back through `secmon::fleet::consumer`, the library
//! a hub uses.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use secmon::fleet::{
    Connection, HostStatus,
    consumer::{Fleet, FleetMessage},
    control::{Action, ControlReply},
};
use serde_json::Value;

use crate::common::{
    BIN, Instance, STOP_TIMEOUT, TestDir, marker, nats::NatsServer, nats::free_port,
    no_machine_flood, parse_json_lines, path_str, require_root, run, workspace,
};

/// How long a read of the stream waits for one more message before it counts as done.
const STREAM_IDLE: Duration = Duration::from_secs(2);
/// How long a test waits for something published to arrive.
const ARRIVAL: Duration = Duration::from_secs(20);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for the consumer")
}

/// How long a publisher waits at its stop for the server to take what it sent and its spool:
/// far longer than it needs on a loaded machine (the wait ends as soon as all is taken), so
/// tests that expect everything sent do not depend on the machine's speed.
pub(crate) const STOP_GRACE_SECS: u64 = 30;

/// A publisher's own directory and config: its spool, token, audit log and control socket
/// there, no history, `[export.nats]` on with `host`; at stop it waits up to
/// `stop_grace_secs` for the server.
/// The stream size the test publishers ask for: the default (10 GiB) is refused by a
/// nats-server whose disk has less free ("insufficient storage resources"), and a test must
/// not depend on the machine's free space.
const TEST_STREAM_MAX_MB: u64 = 256;

pub(crate) fn publisher_config(
    dir: &Path,
    url: &str,
    host: &str,
    spool_max_mb: u64,
    stop_grace_secs: u64,
) -> String {
    fs::create_dir_all(dir).expect("the publisher's directory");
    let config = dir.join("secmon.toml");
    fs::write(
        &config,
        format!(
            "[storage]\nenabled = false\n\n\
             [response]\ncontrol_socket = {:?}\n\n\
             [controller]\nlisten = \"127.0.0.1:0\"\ntoken_file = {:?}\naudit_log = {:?}\n\n\
             [export.nats]\nenabled = true\nurl = {url:?}\nhost = {host:?}\n\
             spool_dir = {:?}\nspool_max_mb = {spool_max_mb}\n\
             stop_grace_secs = {stop_grace_secs}\n\
             stream_max_mb = {TEST_STREAM_MAX_MB}\n",
            path_str(&dir.join("control.sock")),
            path_str(&dir.join("controller.token")),
            path_str(&dir.join("audit.log")),
            path_str(&dir.join("spool")),
        ),
    )
    .expect("write the publisher's config");
    path_str(&config)
}

/// Writes a controller token (as the controller would: 64 hex digits, mode 0600).
pub(crate) fn write_token(dir: &Path, token: &str) {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dir.join("controller.token"))
        .expect("create the token file");
    std::io::Write::write_all(&mut file, format!("{token}\n").as_bytes()).expect("write it");
}

fn story() -> String {
    workspace("tests/fixtures/recordings/attack-story.jsonl")
}

/// A recording of `n` benign `file_open` events `spacing` apart (the story's header and its
/// first `file_open`, retimed).
fn paced_recording(dir: &Path, n: usize, spacing: Duration) -> String {
    let text = fs::read_to_string(story()).expect("read the story");
    let mut lines = text.lines();
    let header = lines.next().expect("a header");
    let template: Value = lines
        .map(|l| serde_json::from_str::<Value>(l).expect("a JSON event"))
        .find(|e| e["event_type"] == "file_open" && e["analysis"]["severity"] == "benign")
        .expect("a benign file_open in the story");
    let start: DateTime<Utc> = "2026-11-23T16:40:00Z".parse().expect("a time");
    let mut out = String::from(header);
    out.push('\n');
    for i in 0..n {
        let mut event = template.clone();
        let at = start + chrono::Duration::from_std(spacing * i as u32).expect("a duration");
        event["timestamp"] = Value::from(at.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true));
        out.push_str(&event.to_string());
        out.push('\n');
    }
    let path = dir.join(format!("paced-{n}.jsonl"));
    fs::write(&path, out).expect("write the recording");
    path_str(&path)
}

/// `secmon-tui --replay FILE --json --speed max --config CONFIG` to its end: the events it
/// printed (as lines) and its stderr.
fn replay_to_end(recording: &str, config: &str) -> (Vec<String>, String) {
    let out = run(
        Command::new(BIN).args([
            "--replay",
            recording,
            "--json",
            "--speed",
            "max",
            "--config",
            config,
            "--rules",
            &workspace("rules"),
        ]),
        Duration::from_secs(120),
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "replay failed: {stderr}");
    let (_, bad) = parse_json_lines(&out.stdout);
    assert!(bad.is_empty(), "non-JSON output: {bad:?}");
    // As printed, byte for byte.
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    (lines, stderr)
}

/// The exporter's last word: `NATS: stopped: N events taken, E events acknowledged, M messages
/// acknowledged, B bytes left in the spool DIR; lost: nats_queue_full Q, nats_spool_full S,
/// nats_too_large T`.
#[derive(Debug)]
struct Stopped {
    taken: u64,
    left: u64,
    queue_full: u64,
    spool_full: u64,
    too_large: u64,
}

fn stopped_line(stderr: &str) -> Stopped {
    let line = stderr
        .lines()
        .find(|l| l.contains("NATS: stopped:"))
        .unwrap_or_else(|| panic!("no `NATS: stopped:` line in:\n{stderr}"));
    let number_before = |word: &str| -> u64 {
        let at = line
            .find(word)
            .unwrap_or_else(|| panic!("{word:?} in {line:?}"));
        line[..at]
            .split_whitespace()
            .last()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("a number before {word:?} in {line:?}"))
    };
    let number_after = |word: &str| -> u64 {
        let at = line
            .find(word)
            .unwrap_or_else(|| panic!("{word:?} in {line:?}"))
            + word.len();
        line[at..]
            .split(|c: char| !c.is_ascii_digit())
            .find(|s| !s.is_empty())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("a number after {word:?} in {line:?}"))
    };
    Stopped {
        taken: number_before(" events taken"),
        left: number_before(" bytes left"),
        queue_full: number_after("nats_queue_full "),
        spool_full: number_after("nats_spool_full "),
        too_large: number_after("nats_too_large "),
    }
}

fn connect(rt: &tokio::runtime::Runtime, url: &str) -> Fleet {
    rt.block_on(Fleet::connect(&Connection::plain(url), "secmon", "SECMON"))
        .expect("connect to the test's server")
}

/// Everything the stream holds for `host` (`*`: every host): one read per subject (event
/// types, alerts, status), each filtered by the server, so a busy live host does not slow the
/// reads of the others.
fn history(rt: &tokio::runtime::Runtime, fleet: &Fleet, host: &str) -> Vec<FleetMessage> {
    let since = Utc::now() - chrono::Duration::hours(1);
    secmon::event::EventType::ALL
        .iter()
        .map(|t| t.as_str())
        .chain(["alerts", "status"])
        .flat_map(|what| {
            rt.block_on(fleet.read_history(host, what, since, STREAM_IDLE))
                .expect("read the stream")
        })
        .collect()
}

/// The status messages the stream holds, from every host.
fn statuses(rt: &tokio::runtime::Runtime, fleet: &Fleet) -> Vec<FleetMessage> {
    let since = Utc::now() - chrono::Duration::hours(1);
    rt.block_on(fleet.read_history("*", "status", since, STREAM_IDLE))
        .expect("read the stream")
}

/// The event messages among `messages` (not the alert copies, not the status).
fn events_of(messages: &[FleetMessage]) -> Vec<&FleetMessage> {
    messages
        .iter()
        .filter(|m| !m.subject.ends_with(".alerts") && !m.subject.ends_with(".status"))
        .collect()
}

fn on_subject<'a>(messages: &'a [FleetMessage], last: &str) -> Vec<&'a FleetMessage> {
    messages
        .iter()
        .filter(|m| m.subject.rsplit('.').next() == Some(last))
        .collect()
}

/// One live monitor (real probes) and two replays under other host names publish to one
/// server: each host's events are on its own subjects, alerts also on `.alerts`, every host
/// says its status, and a per-host read sees that host only.
#[test]
fn three_hosts_publish_on_their_own_subjects() {
    require_root();
    let _no_flood = no_machine_flood();
    let dir = TestDir::new(&format!("fleet-{}", marker()));
    let nats = NatsServer::start(&dir.join("store"));
    let rt = runtime();
    let fleet = connect(&rt, &nats.url());

    let live_config = publisher_config(&dir.join("live"), &nats.url(), "live", 64, STOP_GRACE_SECS);
    let mut live = Instance::start(&["--json", "--config", &live_config]);
    live.wait_ready();
    live.wait_for_stderr("the exporter's start", |l| {
        l.contains("NATS: exporting as host live")
    });
    // A real process opening a real file shows up on the live host's file_open subject.
    let mut opens = Box::pin(
        rt.block_on(fleet.subscribe("live", "file_open"))
            .expect("subscribe"),
    );
    let opened = dir.join(format!("{}-opened", marker()));
    fs::write(&opened, b"seen over NATS").expect("write the file");
    drop(fs::File::open(&opened).expect("open it read-only"));
    let wanted = path_str(&opened);
    let arrived = rt.block_on(async {
        tokio::time::timeout(ARRIVAL, async {
            while let Some(message) = opens.next().await {
                let json = message.json().expect("an event as JSON");
                if json["file_path"].as_str() == Some(wanted.as_str()) {
                    return Some(message);
                }
            }
            None
        })
        .await
    });
    let message = arrived
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("the open of {wanted} never arrived on secmon.live.file_open"));
    assert_eq!(message.host, "live");
    assert!(
        message
            .id
            .as_deref()
            .is_some_and(|id| id.starts_with("live:")),
        "{:?}",
        message.id
    );

    // Two recordings replayed under their own names.
    let mut printed = HashMap::new();
    for host in ["rec-b", "rec-c"] {
        let config = publisher_config(&dir.join(host), &nats.url(), host, 64, STOP_GRACE_SECS);
        let (lines, stderr) = replay_to_end(&story(), &config);
        let stopped = stopped_line(&stderr);
        assert_eq!(stopped.taken, lines.len() as u64, "{stderr}");
        assert_eq!(
            stopped.left, 0,
            "everything was sent before the stop: {stderr}"
        );
        printed.insert(host, lines);
    }

    let statuses: BTreeSet<String> = statuses(&rt, &fleet)
        .iter()
        .map(|m| m.host.clone())
        .collect();
    assert_eq!(
        statuses,
        BTreeSet::from(["live".to_string(), "rec-b".to_string(), "rec-c".to_string()])
    );
    let hosts: HashMap<String, HostStatus> = rt
        .block_on(fleet.hosts(Duration::from_secs(3)))
        .expect("listen to the statuses")
        .into_iter()
        .collect();
    let live_status = hosts.get("live").expect("the live host says its status");
    assert_eq!(
        live_status.probes.get("file").map(String::as_str),
        Some("on")
    );

    let mut seen_ids = BTreeSet::new();
    for (host, lines) in &printed {
        let messages = history(&rt, &fleet, host);
        assert!(
            messages
                .iter()
                .all(|m| m.host == *host && m.subject.starts_with(&format!("secmon.{host}."))),
            "a read of {host} sees {host} only"
        );
        // Every event the replay printed is on the stream once, byte for byte, under its type.
        let events = events_of(&messages);
        let mut published: Vec<String> = events
            .iter()
            .map(|m| String::from_utf8(m.payload.to_vec()).expect("UTF-8 JSON"))
            .collect();
        let mut expected = lines.clone();
        published.sort();
        expected.sort();
        assert_eq!(
            published.len(),
            expected.len(),
            "{host}: events on the stream"
        );
        assert_eq!(
            published, expected,
            "{host}: the published events are the printed ones"
        );
        for message in &events {
            let json = message.json().expect("JSON");
            let event_type = json["event_type"].as_str().expect("an event type");
            assert_eq!(message.subject, format!("secmon.{host}.{event_type}"));
            let id = message.id.clone().expect("every message has an id");
            assert!(id.starts_with(&format!("{host}:")), "{id}");
            assert!(seen_ids.insert(id.clone()), "id {id} twice");
        }
        // Alerts: the events the rules marked, again on `.alerts`.
        let alerts = on_subject(&messages, "alerts");
        let marked = lines
            .iter()
            .filter(|l| {
                let e: Value = serde_json::from_str(l).expect("JSON");
                e["analysis"]["severity"] != "benign"
            })
            .count();
        assert!(marked > 0, "the story has alerts");
        assert_eq!(
            alerts.len(),
            marked,
            "{host}: alerts on secmon.{host}.alerts"
        );
        for alert in alerts {
            let json = alert.json().expect("JSON");
            assert_ne!(json["analysis"]["severity"], "benign");
            assert!(alert.id.as_deref().is_some_and(|id| id.ends_with(":alert")));
        }
    }
    live.signal(libc::SIGINT);
    let (status, _, stderr) = live.finish(STOP_TIMEOUT);
    assert!(status.success(), "{}", stderr.join("\n"));
}

/// The server stops in the middle of a paced stream and comes back (same port, same store):
/// every event arrives exactly once per id, or is counted as lost.
#[test]
fn a_server_that_goes_away_and_comes_back_gets_every_event_once() {
    let dir = TestDir::new(&format!("fleet-{}", marker()));
    let mut nats = NatsServer::start(&dir.join("store"));
    let recording = paced_recording(dir.path(), 3000, Duration::from_millis(3));
    let config = publisher_config(&dir.join("gone"), &nats.url(), "gone", 64, STOP_GRACE_SECS);
    let mut publisher = Instance::start(&[
        "--replay", &recording, "--json", "--speed", "1", "--config", &config,
    ]);
    publisher.wait_for_stderr("a connection", |l| l.contains("NATS: connected"));
    std::thread::sleep(Duration::from_secs(2));
    nats.stop();
    publisher.wait_for_stderr("the spool in use", |l| l.contains("cannot be reached"));
    std::thread::sleep(Duration::from_secs(2));
    nats.restart();
    let (status, stdout, stderr) = publisher.finish(Duration::from_secs(120));
    let stderr = stderr.join("\n");
    assert!(status.success(), "{stderr}");
    let (printed, _) = parse_json_lines(&stdout);
    assert_eq!(printed.len(), 3000);
    let stopped = stopped_line(&stderr);
    assert_eq!(stopped.taken, 3000, "{stderr}");

    let rt = runtime();
    let fleet = connect(&rt, &nats.url());
    let messages = history(&rt, &fleet, "gone");
    let mut per_id: HashMap<String, usize> = HashMap::new();
    for message in events_of(&messages) {
        *per_id
            .entry(message.id.clone().expect("an id"))
            .or_default() += 1;
    }
    let twice: Vec<_> = per_id.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "ids on the stream more than once: {twice:?}"
    );
    let lost = stopped.queue_full + stopped.spool_full;
    assert_eq!(
        per_id.len() as u64 + lost,
        3000,
        "each event arrived once or was counted as lost ({stopped:?}); stderr:\n{stderr}"
    );
    assert_eq!(
        stopped.left, 0,
        "the spool was emptied once the server was back"
    );
}

/// With no server at all, events wait in the spool up to its bound and the rest is counted as
/// lost; the next start sends what waited.
#[test]
fn a_full_spool_counts_its_losses_and_the_next_start_sends_the_rest() {
    let dir = TestDir::new(&format!("fleet-{}", marker()));
    let port = free_port();
    let url = format!("nats://127.0.0.1:{port}");
    // No server at all: nothing to wait for at the stop.
    let config = publisher_config(&dir.join("full"), &url, "full", 1, 0);
    let recording = paced_recording(dir.path(), 5000, Duration::from_micros(10));
    let (lines, stderr) = replay_to_end(&recording, &config);
    assert_eq!(lines.len(), 5000);
    let stopped = stopped_line(&stderr);
    assert_eq!(stopped.taken, 5000, "{stderr}");
    assert!(
        stopped.spool_full > 0,
        "a 1 MiB spool cannot hold 5000 events: {stderr}"
    );
    assert!(stopped.left <= 1024 * 1024, "{stopped:?}");
    let on_disk: u64 = fs::read_dir(dir.join("full/spool"))
        .expect("the spool directory")
        .map(|e| e.expect("an entry").metadata().expect("its size").len())
        .sum();
    assert_eq!(on_disk, stopped.left);
    assert!(
        on_disk <= 1024 * 1024,
        "the spool stays within its bound: {on_disk}"
    );

    // The server comes up; the next start (a one-event replay) sends what waited first.
    let nats = NatsServer::start_on(&dir.join("store"), port);
    let config = publisher_config(&dir.join("full"), &url, "full", 1, STOP_GRACE_SECS);
    let one = paced_recording(&dir.join("full"), 1, Duration::ZERO);
    let (_, stderr) = replay_to_end(&one, &config);
    let next = stopped_line(&stderr);
    assert_eq!(next.left, 0, "{stderr}");
    let rt = runtime();
    let fleet = connect(&rt, &nats.url());
    let messages = history(&rt, &fleet, "full");
    let events = events_of(&messages);
    let mut by_run: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
    for message in &events {
        let id = message.id.clone().expect("an id");
        let mut parts = id.rsplitn(2, ':');
        let sequence = parts
            .next()
            .and_then(|n| n.parse().ok())
            .expect("a sequence");
        by_run
            .entry(parts.next().unwrap_or_default().to_string())
            .or_default()
            .push(sequence);
    }
    let runs: Vec<(String, usize, Option<&u64>, Option<&u64>)> = by_run
        .iter()
        .map(|(run, seqs)| {
            (
                run.clone(),
                seqs.len(),
                seqs.iter().min(),
                seqs.iter().max(),
            )
        })
        .collect();
    // The new event queues behind the full spool: it fits once the spool is sent, or is
    // counted as lost if it came while the spool was still full.
    assert!(next.spool_full <= 1, "{next:?}");
    assert_eq!(
        events.len() as u64,
        5000 - stopped.spool_full + 1 - next.spool_full,
        "the spooled events and the new one: {runs:?}; {stopped:?}; {stderr}"
    );
    assert_eq!(by_run.len() as u64, 2 - next.spool_full, "{runs:?}");
    let first_run = by_run
        .values()
        .find(|seqs| seqs.len() > 1)
        .expect("the first run's events");
    let mut first_run = first_run.clone();
    first_run.sort_unstable();
    assert_eq!(
        first_run,
        (0..first_run.len() as u64).collect::<Vec<_>>(),
        "the spool kept the oldest events, each once"
    );
}

pub(crate) fn audit_lines(path: &Path) -> Vec<Value> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("an audit line is JSON"))
        .collect()
}

fn reply_of(
    rt: &tokio::runtime::Runtime,
    fleet: &Fleet,
    host: &str,
    token: &str,
    action: Action,
) -> ControlReply {
    rt.block_on(fleet.control(host, token, action, Duration::from_secs(10)))
        .expect("a reply")
}

/// A control request goes to one host, is checked against that host's token and applied by
/// its own checks; a wrong token is refused and audited; repeated wrong tokens lock it out.
#[test]
fn a_control_request_reaches_only_its_host() {
    require_root();
    let dir = TestDir::new(&format!("fleet-{}", marker()));
    let nats = NatsServer::start(&dir.join("store"));
    let (dir_a, dir_b) = (dir.join("ctl-a"), dir.join("ctl-b"));
    let config_a = publisher_config(&dir_a, &nats.url(), "ctl-a", 16, STOP_GRACE_SECS);
    let config_b = publisher_config(&dir_b, &nats.url(), "ctl-b", 16, STOP_GRACE_SECS);
    let token_a = "a".repeat(64);
    let token_b = "b".repeat(64);
    write_token(&dir_a, &token_a);
    write_token(&dir_b, &token_b);
    let mut a = Instance::start(&["--json", "--config", &config_a]);
    a.wait_ready();
    a.wait_for_stderr("control on", |l| {
        l.contains("NATS: exporting as host ctl-a") && l.contains("answering control requests")
    });
    let mut b = Instance::start(&["serve", "--replay", &story(), "--config", &config_b]);
    b.wait_for_stderr("control on", |l| {
        l.contains("NATS: exporting as host ctl-b") && l.contains("answering control requests")
    });
    let rt = runtime();
    let fleet = connect(&rt, &nats.url());
    let mut statuses = Box::pin(rt.block_on(fleet.statuses()).expect("statuses"));
    // "answering control requests" is said once the exporter has asked for its subscription,
    // which reaches the server when it connects: a status from a host, published after it on
    // the same connection, says the server has it (else a request meets no responders).
    let mut heard = BTreeSet::new();
    let both = rt.block_on(async {
        tokio::time::timeout(ARRIVAL, async {
            while heard.len() < 2
                && let Some(status) = statuses.next().await
            {
                heard.insert(status.host);
            }
        })
        .await
    });
    assert!(both.is_ok(), "statuses of both hosts: heard {heard:?}");
    let file_off = Action::SetProbe {
        family: "file".to_string(),
        enabled: false,
    };

    // The right token: applied on ctl-a, seen in ctl-a's own state.
    let reply = reply_of(&rt, &fleet, "ctl-a", &token_a, file_off.clone());
    assert!(reply.ok, "{reply:?}");
    assert_eq!(reply.host, "ctl-a");
    assert_eq!(reply.done.as_deref(), Some("file probes off"));
    let off = rt.block_on(async {
        tokio::time::timeout(ARRIVAL, async {
            while let Some(status) = statuses.next().await {
                let file = status.probes.get("file").map(String::as_str);
                if status.host == "ctl-a" && file == Some("off") {
                    return true;
                }
            }
            false
        })
        .await
    });
    assert_eq!(
        off.ok(),
        Some(true),
        "ctl-a's status shows its file probes off"
    );

    // ctl-a's token is not ctl-b's: refused there, and audited there only.
    let reply = reply_of(&rt, &fleet, "ctl-b", &token_a, file_off.clone());
    assert!(!reply.ok);
    assert_eq!(reply.host, "ctl-b");
    assert_eq!(reply.error.as_deref(), Some("wrong token"));
    let audit_a = audit_lines(&dir_a.join("audit.log"));
    assert_eq!(audit_a.len(), 1, "ctl-a saw one request: {audit_a:?}");
    assert_eq!(audit_a[0]["ok"], true);
    assert_eq!(audit_a[0]["action"], "disable probes");
    assert_eq!(audit_a[0]["client"], "nats:secmon.ctl-a.control");
    let audit_b = audit_lines(&dir_b.join("audit.log"));
    assert_eq!(audit_b.len(), 1, "{audit_b:?}");
    assert_eq!(audit_b[0]["ok"], false);
    assert_eq!(audit_b[0]["client"], "nats:secmon.ctl-b.control");
    assert!(
        audit_b[0]["outcome"]
            .as_str()
            .is_some_and(|o| o.starts_with("wrong token")),
        "{audit_b:?}"
    );

    // ctl-b's own token: checked by ctl-b's own rules (a replay has no probes).
    let reply = reply_of(&rt, &fleet, "ctl-b", &token_b, file_off.clone());
    assert!(!reply.ok);
    assert!(
        reply
            .error
            .as_deref()
            .is_some_and(|e| e.contains("replaying a recording")),
        "{reply:?}"
    );
    let simulated = reply_of(
        &rt,
        &fleet,
        "ctl-b",
        &token_b,
        Action::SimulateBlock {
            target: secmon::response::control::TargetSpec::Exec("/opt/x/miner".to_string()),
        },
    );
    assert!(simulated.ok, "{simulated:?}");
    assert!(
        simulated
            .done
            .as_deref()
            .is_some_and(|d| d.contains("would deny")),
        "{simulated:?}"
    );

    // Wrong tokens, again and again: then even the right one is refused for a while.
    for _ in 0..5 {
        let reply = reply_of(&rt, &fleet, "ctl-b", "not-the-token", Action::ReloadRules);
        assert!(!reply.ok);
    }
    let reply = reply_of(&rt, &fleet, "ctl-b", &token_b, Action::ReloadRules);
    assert!(
        reply
            .error
            .as_deref()
            .is_some_and(|e| e.contains("too many")),
        "{reply:?}"
    );
    // A request that is not JSON is answered, not applied.
    let raw = rt
        .block_on(fleet.client().request("secmon.ctl-a.control", "no".into()))
        .expect("a reply");
    let raw: ControlReply = serde_json::from_slice(&raw.payload).expect("a control reply");
    assert!(!raw.ok);

    // Back on, then stop both.
    let file_on = Action::SetProbe {
        family: "file".to_string(),
        enabled: true,
    };
    assert!(reply_of(&rt, &fleet, "ctl-a", &token_a, file_on).ok);
    for instance in [a, b] {
        instance.signal(libc::SIGINT);
        let (status, _, stderr) = instance.finish(STOP_TIMEOUT);
        assert!(status.success(), "{}", stderr.join("\n"));
    }
}

/// A replay at full speed queues events faster than one message each: the exporter packs
/// them (`events_per_message`, default 64). On the wire a packed message says its count in
/// `Secmon-Events`, its body is that many JSON lines and its id is the first event's plus the
/// count; read through the consumer each event comes with its own id, consecutive within a
/// pack, and every printed event is on the stream once.
#[test]
fn packed_messages_carry_their_count_and_each_event_its_own_id() {
    let dir = TestDir::new(&format!("fleet-{}", marker()));
    let nats = NatsServer::start(&dir.join("store"));
    let rt = runtime();
    let fleet = connect(&rt, &nats.url());
    let mut raw = rt
        .block_on(async {
            let sub = fleet
                .client()
                .subscribe("secmon.pk.file_open")
                .await
                .map_err(|e| e.to_string())?;
            fleet.client().flush().await.map_err(|e| e.to_string())?;
            Ok::<_, String>(sub)
        })
        .expect("subscribe");
    let config = publisher_config(&dir.join("pk"), &nats.url(), "pk", 64, STOP_GRACE_SECS);
    let recording = paced_recording(dir.path(), 2000, Duration::ZERO);
    let (lines, stderr) = replay_to_end(&recording, &config);
    assert_eq!(lines.len(), 2000);
    assert_eq!(stopped_line(&stderr).left, 0, "{stderr}");

    let mut wire = Vec::new();
    rt.block_on(async {
        while let Ok(Some(message)) = tokio::time::timeout(STREAM_IDLE, raw.next()).await {
            wire.push(message);
        }
    });
    let mut events = 0;
    let mut packed = 0;
    for message in &wire {
        let headers = message.headers.clone().unwrap_or_default();
        let id = headers
            .get(async_nats::header::NATS_MESSAGE_ID)
            .map(|v| v.as_str().to_string())
            .expect("an id");
        let body_lines = message
            .payload
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .count();
        match headers.get("Secmon-Events") {
            Some(count) => {
                let count: usize = count.as_str().parse().expect("a count");
                assert!((2..=64).contains(&count), "{count}");
                assert_eq!(body_lines, count, "{id}");
                assert!(id.ends_with(&format!("+{count}")), "{id}");
                packed += 1;
            }
            None => assert_eq!(body_lines, 1, "{id}"),
        }
        let unpacked = FleetMessage::unpack("secmon", message.clone());
        assert_eq!(unpacked.len(), body_lines);
        let sequences: Vec<u64> = unpacked
            .iter()
            .map(|m| {
                let own = m.id.clone().expect("an id");
                own.rsplit(':')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("a sequence in {own}"))
            })
            .collect();
        assert!(
            sequences.windows(2).all(|w| w[1] == w[0] + 1),
            "{id}: {sequences:?}"
        );
        events += body_lines;
    }
    assert_eq!(events, 2000, "every event on the wire once");
    assert!(packed > 0, "a full-speed replay is packed");
    assert!(wire.len() < 2000, "{} messages", wire.len());

    let stored = history(&rt, &fleet, "pk");
    let stored = events_of(&stored);
    let ids: BTreeSet<String> = stored.iter().filter_map(|m| m.id.clone()).collect();
    assert_eq!(stored.len(), 2000);
    assert_eq!(ids.len(), 2000, "one id per event");
    let mut published: Vec<String> = stored
        .iter()
        .map(|m| String::from_utf8(m.payload.to_vec()).expect("UTF-8"))
        .collect();
    let mut expected = lines;
    published.sort();
    expected.sort();
    assert_eq!(
        published, expected,
        "the stored events are the printed ones"
    );
}

/// One event larger than the server's `max_payload` can never be published: it is counted as
/// lost, once, and neither blocks nor loops through the spool; the events around it (packed
/// under the small bound) all arrive.
#[test]
fn an_event_over_the_servers_max_payload_is_counted_and_the_rest_arrive() {
    let dir = TestDir::new(&format!("fleet-{}", marker()));
    let nats = NatsServer::start_configured(&dir.join("store"), "max_payload: 3072");
    let recording = paced_recording(dir.path(), 200, Duration::ZERO);
    let long_path = format!("/tmp/{}", "a".repeat(4000));
    let text = fs::read_to_string(&recording).expect("the recording");
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let mut big: Value = serde_json::from_str(&lines[100]).expect("an event");
    big["file_path"] = Value::from(long_path.clone());
    lines[100] = big.to_string();
    fs::write(&recording, lines.join("\n") + "\n").expect("write the recording");

    let config = publisher_config(&dir.join("big"), &nats.url(), "big", 64, STOP_GRACE_SECS);
    let (printed, stderr) = replay_to_end(&recording, &config);
    assert_eq!(printed.len(), 200, "{stderr}");
    assert!(
        printed.iter().any(|l| l.contains(&long_path)),
        "the long path was cut before the exporter: the test proves nothing"
    );
    let stopped = stopped_line(&stderr);
    assert_eq!(stopped.too_large, 1, "{stderr}");
    assert_eq!((stopped.left, stopped.spool_full), (0, 0), "{stderr}");
    assert!(
        stderr.contains("over the server's max_payload (3072 bytes)"),
        "{stderr}"
    );

    let rt = runtime();
    let fleet = connect(&rt, &nats.url());
    let stored = history(&rt, &fleet, "big");
    let stored = events_of(&stored);
    assert_eq!(stored.len(), 199, "every other event, once");
    assert!(
        stored
            .iter()
            .all(|m| !String::from_utf8_lossy(&m.payload).contains(&long_path))
    );
}

/// JWTs as `nsc` writes them, signed in the test: an operator, an account it signed (with
/// JetStream) and users, for a nats-server in operator mode.
mod jwt {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    use nkeys::KeyPair;
    use serde_json::{Value, json};

    /// `issuer`'s JWT on `subject` (a public key) with these `nats` claims.
    pub fn sign(issuer: &KeyPair, subject: &str, name: &str, nats: Value) -> String {
        let header = URL_SAFE_NO_PAD.encode(r#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
        let claims = json!({
            "jti": format!("{}-{name}", &subject[..16]),
            "iat": chrono::Utc::now().timestamp(),
            "iss": issuer.public_key(),
            "name": name,
            "sub": subject,
            "nats": nats,
        });
        let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signed = format!("{header}.{claims}");
        let signature = issuer.sign(signed.as_bytes()).expect("sign the JWT");
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    pub fn operator(operator: &KeyPair) -> String {
        sign(
            operator,
            &operator.public_key(),
            "test-operator",
            json!({"type": "operator", "version": 2}),
        )
    }

    /// An account with no limits, JetStream on (`jetstream`; the system account may not).
    pub fn account(operator: &KeyPair, account: &KeyPair, jetstream: bool) -> String {
        let mut limits = json!({
            "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
            "wildcards": true, "conn": -1, "leaf": -1,
        });
        if jetstream {
            for key in ["mem_storage", "disk_storage", "streams", "consumer"] {
                limits[key] = json!(-1);
            }
        }
        sign(
            operator,
            &account.public_key(),
            "test-account",
            json!({"type": "account", "version": 2, "limits": limits}),
        )
    }

    /// A `.creds` file's text: a user of `account` (which signs it) and the user's seed.
    pub fn creds(account: &KeyPair, name: &str) -> String {
        let user = KeyPair::new_user();
        let jwt = sign(
            account,
            &user.public_key(),
            name,
            json!({"type": "user", "version": 2, "pub": {}, "sub": {},
                   "subs": -1, "data": -1, "payload": -1}),
        );
        let seed = user.seed().expect("the user's seed");
        format!(
            "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
             -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
        )
    }
}

/// `[export.nats] credentials`: a `.creds` file (a user JWT signed by an account the server's
/// operator signed, and the user's seed) logs in to a nats-server in operator mode; every event
/// arrives, and a reader with its own `.creds` reads them back. A user of an account the
/// server does not know is refused and told, and its events wait in its spool.
#[test]
fn a_credentials_file_logs_in_to_a_server_in_operator_mode_and_a_stranger_is_told() {
    use nkeys::KeyPair;
    let dir = TestDir::new(&format!("fleet-creds-{}", marker()));
    let (operator, account) = (KeyPair::new_operator(), KeyPair::new_account());
    // JetStream in operator mode needs a system account.
    let system = KeyPair::new_account();
    let operator_jwt = dir.join("operator.jwt");
    fs::write(&operator_jwt, jwt::operator(&operator)).expect("write the operator's JWT");
    let nats = NatsServer::start_configured(
        &dir.join("store"),
        &format!(
            "operator: {:?}\nsystem_account: {}\nresolver: MEMORY\n\
             resolver_preload: {{ {}: {:?}, {}: {:?} }}",
            path_str(&operator_jwt),
            system.public_key(),
            account.public_key(),
            jwt::account(&operator, &account, true),
            system.public_key(),
            jwt::account(&operator, &system, false),
        ),
    );
    let creds_file = |name: &str, text: String| {
        let path = dir.join(format!("{name}.creds"));
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .expect("create the .creds file");
        std::io::Write::write_all(&mut file, text.as_bytes()).expect("write it");
        path
    };
    let publisher_creds = creds_file("publisher", jwt::creds(&account, "publisher"));
    let reader_creds = creds_file("reader", jwt::creds(&account, "reader"));
    let stranger_creds = creds_file("stranger", jwt::creds(&KeyPair::new_account(), "stranger"));
    let config_with = |host: &str, creds: &Path, grace_secs: u64| {
        let config = publisher_config(&dir.join(host), &nats.url(), host, 16, grace_secs);
        let mut text = fs::read_to_string(&config).expect("the publisher's config");
        text.push_str(&format!("credentials = {:?}\n", path_str(creds)));
        fs::write(&config, text).expect("write the publisher's config");
        config
    };
    let recording = paced_recording(dir.path(), 100, Duration::ZERO);

    let (printed, stderr) = replay_to_end(
        &recording,
        &config_with("creds", &publisher_creds, STOP_GRACE_SECS),
    );
    assert_eq!(printed.len(), 100, "{stderr}");
    assert!(
        stderr.contains("100 events acknowledged"),
        "the events over a .creds login: {stderr}"
    );
    let rt = runtime();
    let reader = Connection {
        credentials: Some(reader_creds),
        ..Connection::plain(&nats.url())
    };
    let fleet = rt
        .block_on(Fleet::connect(&reader, "secmon", "SECMON"))
        .expect("the reader logs in with its .creds");
    assert_eq!(events_of(&history(&rt, &fleet, "creds")).len(), 100);

    // Refused: its stop does not wait long for a server that will not take it.
    let (_, stderr) = replay_to_end(&recording, &config_with("stranger", &stranger_creds, 1));
    assert!(
        stderr.contains("the server refused the login"),
        "a stranger's .creds: {stderr}"
    );
    let seed = fs::read_to_string(&stranger_creds).expect("the stranger's .creds");
    let seed = seed
        .lines()
        .find(|l| l.starts_with("SU"))
        .expect("a user seed");
    assert!(!stderr.contains(seed), "the seed was printed: {stderr}");
    let stopped = stopped_line(&stderr);
    assert!(stopped.left > 0, "its events wait in its spool: {stderr}");
    assert!(events_of(&history(&rt, &fleet, "stranger")).is_empty());
}
