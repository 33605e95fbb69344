//! The event history: the writer survives `kill -9` with every committed batch; the monitor
//! stores what it captures and keeps running (saying so) when the database is corrupted or
//! locked; `secmon-tui history` queries a database through the binary.
//!
//! The writer crash test and the `history` tests need no root (they fill the database by
//! replaying the shipped recording); the monitor tests do.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use secmon::event::{Event, EventType};
use secmon::storage::{Filter, History, Store, TextMatch, WriterOptions};
use serde_json::Value;

use crate::common::{
    BIN, DEFAULT_TIMEOUT, Instance, TestDir, die_with_parent, marker, parse_json_lines, path_str,
    require_root, run, workspace,
};

/// The environment variable that turns [`crash_writer_child`] into the writer process.
const CHILD_ENV: &str = "SECMON_TEST_CRASH_WRITER_DB";

/// The shipped recording of the attack story.
pub fn story() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/recordings/attack-story.jsonl")
}

fn sequence_event(seq: u32) -> Event {
    let base: DateTime<Utc> = Utc
        .with_ymd_and_hms(2026, 5, 1, 12, 0, 0)
        .single()
        .expect("valid");
    let mut e = Event::new(
        EventType::FileOpen,
        base + chrono::Duration::microseconds(i64::from(seq)),
    );
    // The sequence number is the pid: the test checks it has no holes.
    e.pid = seq;
    e.tid = seq;
    e.process = "writer".into();
    e.exe = "/usr/bin/writer".into();
    e.cmdline = format!("writer {}", seq % 97).into();
    e.file_path = Some(format!("/data/{}/f{}", seq % 1000, seq));
    e
}

/// Not a test by itself: the process `kill_9_while_writing_keeps_every_committed_batch` starts
/// and kills. Writes numbered events as fast as the writer takes them and prints
/// `committed N` whenever the committed count changes.
#[test]
#[ignore = "helper process of kill_9_while_writing_keeps_every_committed_batch"]
fn crash_writer_child() {
    use std::io::Write;
    let Some(db) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let store = Store::open(Path::new(&db), WriterOptions::default()).expect("open");
    let mut out = std::io::stdout().lock();
    let mut seq = 0u32;
    let mut reported = 0;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        let batch: Vec<Event> = (1..=1000).map(|k| sequence_event(seq + k)).collect();
        // A full queue refuses the whole batch: offer it again, so numbers have no holes.
        while !store.submit(batch.clone()) {
            std::thread::sleep(Duration::from_millis(1));
        }
        seq += 1000;
        let stored = store
            .stats()
            .stored
            .load(std::sync::atomic::Ordering::Acquire);
        if stored != reported {
            reported = stored;
            let _ = writeln!(out, "committed {stored}");
            let _ = out.flush();
        }
    }
}

/// How many commits the writer reports before it is killed.
const MIN_COMMITS_BEFORE_KILL: u32 = 5;

#[test]
fn kill_9_while_writing_keeps_every_committed_batch() {
    let dir = TestDir::new(&marker());
    let db = dir.join("history/events.db");
    let mut cmd = Command::new(std::env::current_exe().expect("test binary"));
    cmd.args([
        "--exact",
        "storage::crash_writer_child",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD_ENV, &db)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    die_with_parent(&mut cmd);
    let mut child = cmd.spawn().expect("start the writer process");
    let stdout = child.stdout.take().expect("piped");
    let mut committed = 0u64;
    let mut commits_seen = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        if let Some(n) = line.strip_prefix("committed ") {
            committed = n.parse().expect("a count");
            commits_seen += 1;
        }
        // Several transactions into a run at full speed. A count of transactions, not a rate:
        // a loaded machine commits fewer events per second, and the test is about the kill.
        if commits_seen >= MIN_COMMITS_BEFORE_KILL || Instant::now() > deadline {
            break;
        }
    }
    // SIGKILL, mid-stream: the writer is busy with the next transactions.
    child.kill().expect("kill -9 the writer");
    let status = child.wait().expect("reap");
    assert!(
        commits_seen >= MIN_COMMITS_BEFORE_KILL,
        "the writer committed only {commits_seen} times ({committed} events) in 60 s"
    );
    assert_eq!(status.signal_number(), Some(libc::SIGKILL));
    let wal = PathBuf::from(format!("{}-wal", db.display()));
    assert!(wal.exists(), "the killed writer left its WAL for recovery");

    // The database opens cleanly and holds every committed event, without holes.
    let history = History::open(&db).expect("the database opens after kill -9");
    let conn = history.connection();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity check");
    assert_eq!(check, "ok");
    // Rows of `events` and of blocks alike.
    let stored = history.query(&Filter::default()).expect("read");
    let pids: std::collections::BTreeSet<u32> = stored.iter().map(|e| e.event.pid).collect();
    let count = stored.len() as i64;
    let (min, max, distinct) = (
        pids.first().map_or(0, |&p| i64::from(p)),
        pids.last().map_or(0, |&p| i64::from(p)),
        pids.len() as i64,
    );
    assert!(
        count as u64 >= committed,
        "{count} events stored, but {committed} were reported committed"
    );
    assert_eq!(
        (min, max, distinct),
        (1, count, count),
        "no holes, no duplicates"
    );
    // Whole batches only: the writer commits what it was handed in whole submissions.
    assert_eq!(count % 1000, 0, "{count} is not a whole number of batches");
    // And the recovered database takes more writes.
    drop(history);
    let store = Store::open(&db, WriterOptions::default()).expect("reopen for writing");
    assert!(store.submit(vec![sequence_event(count as u32 + 1)]));
    assert_eq!(store.close().stored, 1);
}

trait SignalNumber {
    fn signal_number(&self) -> Option<i32>;
}

impl SignalNumber for std::process::ExitStatus {
    fn signal_number(&self) -> Option<i32> {
        std::os::unix::process::ExitStatusExt::signal(self)
    }
}

/// Fills `db` by replaying the shipped story (no root).
fn replay_into(db: &Path) {
    let out = run(
        Command::new(BIN).args([
            "--replay",
            &path_str(&story()),
            "--speed",
            "max",
            "--json",
            "--rules",
            &workspace("rules"),
            "--config",
            &workspace("config/secmon.toml"),
            "--db",
            &path_str(db),
        ]),
        DEFAULT_TIMEOUT,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "replay into {}: {stderr}",
        db.display()
    );
    assert!(
        stderr.contains(&format!("secmon: history: {} (", db.display())),
        "{stderr}"
    );
    assert!(stderr.contains(" events stored in "), "{stderr}");
}

fn history(db: &Path, args: &[&str]) -> (i32, String, String) {
    let out = run(
        Command::new(BIN)
            .arg("history")
            .args(["--db", &path_str(db)])
            .args(args)
            .env("TZ", "UTC"),
        DEFAULT_TIMEOUT,
    );
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn history_queries_a_replayed_story() {
    let dir = TestDir::new(&marker());
    let db = dir.join("h.db");
    replay_into(&db);
    let mode = std::fs::metadata(&db).expect("db").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // Everything the rules flagged at 0.6 or more, as JSON lines in time order.
    let (code, out, err) = history(&db, &["--min-risk", "0.6", "--json"]);
    assert_eq!(code, 0, "{err}");
    let (events, bad) = parse_json_lines(out.as_bytes());
    assert!(bad.is_empty(), "{bad:?}");
    let labels: Vec<&str> = events
        .iter()
        .map(|e| e["analysis"]["label"].as_str().expect("label"))
        .collect();
    for wanted in [
        "Downloaded File Made Executable And Run",
        "Reverse Shell Via /dev/tcp",
        "Password Hash File Read",
        "Shell Startup File Modified",
        "System Log Deleted Or Truncated",
    ] {
        assert!(labels.contains(&wanted), "{wanted} in {labels:?}");
    }
    let times: Vec<DateTime<chrono::FixedOffset>> = events
        .iter()
        .map(|e| {
            DateTime::parse_from_rfc3339(e["timestamp"].as_str().expect("ts")).expect("rfc 3339")
        })
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "oldest first");

    // Filters through the command line.
    let (code, out, _) = history(&db, &["--path", "/etc/shadow", "--json"]);
    assert_eq!(code, 0);
    let (events, _) = parse_json_lines(out.as_bytes());
    assert_eq!(events.len(), 1, "{out}");
    assert_eq!(events[0]["process"], "cat");
    let (_, out, _) = history(&db, &["--type", "network", "--ip", "127.0.0.1", "--json"]);
    let (events, _) = parse_json_lines(out.as_bytes());
    assert!(events.len() >= 2, "{out}");
    assert!(events.iter().all(|e| {
        e["event_type"]
            .as_str()
            .is_some_and(|t| t.starts_with("net_"))
    }));
    let (_, out, _) = history(&db, &["--label", "password hash file read", "--json"]);
    assert_eq!(parse_json_lines(out.as_bytes()).0.len(), 1);
    let (_, out, _) = history(
        &db,
        &["--process", "curl", "--type", "process_exec", "--json"],
    );
    assert_eq!(parse_json_lines(out.as_bytes()).0.len(), 1);
    let (_, out, err) = history(&db, &["--limit", "3", "--json"]);
    assert_eq!(parse_json_lines(out.as_bytes()).0.len(), 3);
    assert!(
        err.contains("showing the 3 most recent matching events"),
        "{err}"
    );
    // Time forms: nothing before 2020, everything in the last 100 years or since 2020.
    let (code, out, err) = history(&db, &["--until", "2020-01-01 00:00"]);
    assert_eq!(code, 0);
    assert!(
        out.is_empty() && err.contains("no events match"),
        "{out}{err}"
    );
    let recorded = std::fs::read_to_string(story())
        .expect("story")
        .lines()
        .count()
        - 1;
    for args in [
        ["--since", "2020-01-01 00:00"],
        ["--since", "2020-01-01T00:00:00+02:00"],
        ["--last", "100y"],
    ] {
        let (_, out, _) = history(&db, &[args[0], args[1], "--json", "--limit", "0"]);
        // Every recorded event, identical consecutive ones in one line with their count.
        let (lines, _) = parse_json_lines(out.as_bytes());
        let events: u64 = lines.iter().map(|e| e["count"].as_u64().unwrap_or(1)).sum();
        assert_eq!(events, recorded as u64, "{args:?}");
        assert!(
            lines
                .iter()
                .all(|e| e.get("count").is_none() == e.get("last_timestamp").is_none()),
            "{args:?}"
        );
    }

    // The table: aligned, header first, one line per event.
    let (code, out, _) = history(&db, &["--min-risk", "0.6", "--table"]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("TIME"), "{out}");
    let label_at = lines[0].find("LABEL").expect("LABEL column");
    assert!(lines[1..].iter().all(|l| l.len() > label_at), "{out}");
    assert!(out.contains("/etc/shadow"), "{out}");

    // Statistics.
    let (code, out, _) = history(&db, &["--stats", "day", "--json"]);
    assert_eq!(code, 0);
    let (rows, _) = parse_json_lines(out.as_bytes());
    let count = |by: &str, key: &str| -> u64 {
        rows.iter()
            .filter(|r| r["by"] == by && r["key"] == key)
            .map(|r| r["count"].as_u64().expect("count"))
            .sum()
    };
    assert_eq!(count("rule", "shadow_file_read"), 1);
    assert_eq!(count("label", "Password Hash File Read"), 1);
    assert!(count("type", "file_open") > 100);
    let (_, out, _) = history(&db, &["--stats", "--table"]);
    assert!(out.contains("RULE") && out.contains("total"), "{out}");
}

#[test]
fn history_reports_bad_arguments_and_databases_clearly() {
    let dir = TestDir::new(&marker());
    let db = dir.join("h.db");
    replay_into(&db);
    for (args, wanted) in [
        (
            vec!["--since", "2026-13-01 10:00"],
            "secmon: error: --since: `2026-13-01 10:00` is not a time (a field is out of range); \
             expected RFC 3339",
        ),
        (
            vec!["--last", "2x"],
            "secmon: error: --last: `2x`: unknown unit `x`",
        ),
        (
            vec!["--until", "tomorrow"],
            "secmon: error: --until: `tomorrow` is not a time",
        ),
        (
            vec!["--type", "file_opne"],
            "secmon: error: --type: unknown event type `file_opne`",
        ),
        (vec!["--ip", "300.1.1.1"], "is not an IPv4 or IPv6 address"),
        (vec!["--min-risk", "2"], "--min-risk: 2 is outside 0 to 1"),
        (
            vec!["--since", "2026-05-02", "--until", "2026-05-01"],
            "is not before --until",
        ),
    ] {
        let (code, out, err) = history(&db, &args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(out.is_empty());
        assert!(err.contains(wanted), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
    }
    let (code, _, err) = history(&dir.join("absent.db"), &[]);
    assert_eq!(code, 1);
    assert!(err.contains("absent.db: no history database here"), "{err}");
    let garbage = dir.join("garbage.db");
    std::fs::write(&garbage, vec![7u8; 4096]).expect("garbage");
    let (code, _, err) = history(&garbage, &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("not an SQLite database, or corrupted"),
        "{err}"
    );
    // Unknown options are clap's usage errors.
    let (code, _, err) = history(&db, &["--colour"]);
    assert_eq!(code, 2);
    assert!(err.contains("--colour"), "{err}");
}

#[test]
fn history_table_sanitises_control_characters() {
    let dir = TestDir::new(&marker());
    let db = dir.join("h.db");
    let mut e = sequence_event(1);
    e.file_path = Some("/tmp/\u{1b}]0;pwned\u{7}\u{1b}[2J".to_string());
    e.process = "evil\u{1b}[31m".into();
    e.timestamp = Utc::now();
    let store = Store::open(&db, WriterOptions::default()).expect("open");
    assert!(store.submit(vec![e]));
    store.close();
    let (code, out, _) = history(&db, &["--table"]);
    assert_eq!(code, 0);
    assert!(!out.contains('\u{1b}') && !out.contains('\u{7}'), "{out:?}");
    assert!(out.contains("\\x1b]0;pwned\\x07\\x1b[2J"), "{out}");
    assert!(out.contains("evil\\x1b[31m"), "{out}");
}

// ---------------------------------------------------------------------------------------------
// The real monitor (root)

/// A monitor with `--db`; stop it with SIGINT and return its stderr.
fn monitor_with_db(db: &Path, act: impl FnOnce()) -> (Vec<Value>, Vec<String>) {
    let mut instance = Instance::start(&["--json", "--db", &path_str(db)]);
    instance.wait_ready();
    act();
    instance.sync_point(instance.home());
    instance.signal(libc::SIGINT);
    let (status, stdout, stderr) = instance.finish(Duration::from_secs(30));
    assert!(status.success(), "{status}; stderr:\n{}", stderr.join("\n"));
    let (events, _) = parse_json_lines(&stdout);
    (events, stderr)
}

fn run_true(mark: &str) {
    let status = Command::new("/bin/sh")
        .args(["-c", &format!("true {mark}")])
        .status()
        .expect("run sh");
    assert!(status.success());
}

#[test]
fn the_monitor_stores_what_it_captures() {
    require_root();
    let dir = TestDir::new(&marker());
    let db = dir.join("lib/events.db");
    let file = dir.join("secret.txt");
    std::fs::write(&file, "x").expect("write");
    let (events, stderr) = monitor_with_db(&db, || {
        let _ = std::fs::read(&file).expect("read");
    });
    let stderr = stderr.join("\n");
    assert!(
        stderr.contains(&format!(
            "secmon: history: {} (keeping at most 30 days and 1024 MiB)",
            db.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains(" events stored in "), "{stderr}");
    let dir_mode = std::fs::metadata(dir.join("lib"))
        .expect("dir")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(dir_mode, 0o700);
    let history = History::open(&db).expect("open");
    let stored = history
        .query(&Filter {
            path: Some(TextMatch::parse_path(&path_str(&file))),
            ..Filter::default()
        })
        .expect("query");
    assert!(
        !stored.is_empty(),
        "the read of {} is stored",
        file.display()
    );
    // Stored exactly as printed.
    let printed: Vec<&Value> = events
        .iter()
        .filter(|e| e["file_path"] == path_str(&file))
        .collect();
    assert_eq!(printed.len(), stored.len());
    let as_json = serde_json::to_value(&stored[0].event).expect("json");
    assert_eq!(&as_json, printed[0]);
}

#[test]
fn the_monitor_keeps_running_without_a_usable_database() {
    require_root();
    let dir = TestDir::new(&marker());
    // Corrupted.
    let corrupt = dir.join("corrupt.db");
    std::fs::write(&corrupt, vec![0x5a; 16384]).expect("garbage");
    let mark = marker();
    let (events, stderr) = monitor_with_db(&corrupt, || run_true(&mark));
    let warning = stderr
        .iter()
        .find(|l| l.starts_with("secmon: warning: history disabled: "))
        .unwrap_or_else(|| panic!("a warning; stderr:\n{}", stderr.join("\n")));
    assert!(
        warning.contains("not an SQLite database, or corrupted"),
        "{warning}"
    );
    assert!(
        warning.ends_with("monitoring goes on without storing events"),
        "{warning}"
    );
    assert!(
        events.iter().any(|e| e["event_type"] == "process_exec"
            && e["cmdline"].as_str().is_some_and(|c| c.contains(&mark))),
        "events still flow"
    );
    // The file is left alone.
    assert_eq!(std::fs::read(&corrupt).expect("read"), vec![0x5a; 16384]);

    // Locked by another program for the whole start-up.
    let locked = dir.join("locked.db");
    drop(Store::open(&locked, WriterOptions::default()).expect("create"));
    let holder = rusqlite::Connection::open(&locked).expect("open");
    holder
        .execute_batch(
            "BEGIN EXCLUSIVE; DELETE FROM schema_version; INSERT INTO schema_version VALUES (2);",
        )
        .expect("lock");
    let mark = marker();
    let (events, stderr) = monitor_with_db(&locked, || run_true(&mark));
    holder.execute_batch("ROLLBACK").expect("unlock");
    let warning = stderr
        .iter()
        .find(|l| l.starts_with("secmon: warning: history disabled: "))
        .unwrap_or_else(|| panic!("a warning; stderr:\n{}", stderr.join("\n")));
    assert!(warning.contains("locked by another program"), "{warning}");
    assert!(
        events
            .iter()
            .any(|e| e["cmdline"].as_str().is_some_and(|c| c.contains(&mark)))
    );
}

#[test]
fn kill_9_of_the_monitor_under_load_leaves_a_clean_database() {
    require_root();
    let _flood = crate::common::flooding_the_machine();
    let dir = TestDir::new(&marker());
    let db = dir.join("events.db");
    let target = dir.join("hot");
    std::fs::write(&target, "x").expect("write");
    let mut instance = Instance::start(&["--json", "--db", &path_str(&db)]);
    instance.wait_ready();
    // Opens at a high rate for a while, then kill -9 in the middle of it.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        let target = target.clone();
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = std::fs::File::open(&target);
                n += 1;
            }
            n
        })
    };
    // The history thread runs at a lower priority than capture and analysis, so on a busy
    // machine (CI) it commits late: kill only once it has committed a few batches, so the kill
    // lands in the middle of steady writing whatever the machine's speed.
    let committed_before_kill = wait_for_committed(&db, 5_000, Duration::from_secs(90));
    std::thread::sleep(Duration::from_millis(200));
    instance.signal(libc::SIGKILL);
    let (status, _, stderr) = instance.finish(Duration::from_secs(30));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let opens = load.join().expect("load thread");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL),
        "{}",
        stderr.join("\n")
    );
    let history = History::open(&db).expect("opens after kill -9");
    let check: String = history
        .connection()
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("check");
    assert_eq!(check, "ok");
    // Rows of `events` and of blocks alike.
    let stored = history.query(&Filter::default()).expect("read");
    let rows = stored.len() as i64;
    let max_id = stored.iter().map(|e| e.id).max().unwrap_or(0);
    let count: i64 = stored.iter().map(|e| e.count as i64).sum();
    assert!(
        count >= committed_before_kill,
        "{count} events stored of {opens} opens; {committed_before_kill} were committed before the kill"
    );
    // Committed transactions only, each whole: ids have no holes.
    assert_eq!(rows, max_id);
    let hot = history
        .count(&Filter {
            path: Some(TextMatch::parse_path(&path_str(&target))),
            ..Filter::default()
        })
        .expect("count");
    assert!(hot > 0);
}

/// Polls the history (read-only, beside the running writer) until at least `at_least` events
/// are committed (a coalesced row counts all of its events); returns how many were. Panics
/// after `limit`, saying how far it got.
fn wait_for_committed(db: &Path, at_least: i64, limit: Duration) -> i64 {
    let start = Instant::now();
    let mut seen = 0;
    while start.elapsed() < limit {
        if let Ok(history) = History::open(db) {
            seen = history.count(&Filter::default()).map_or(seen, |n| n as i64);
            if seen >= at_least {
                return seen;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "only {seen} events committed to {} after {limit:?}",
        db.display()
    );
}
