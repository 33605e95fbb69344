use std::os::unix::fs::PermissionsExt;

use chrono::{Duration as Span, TimeZone};

use super::block::BLOCK_ROWS;
use super::*;
use crate::event::{Analysis, EventType, ResponseAction, ResponseKind, ResponseResult, Severity};

/// 2026-05-01 12:00:00 UTC.
fn base() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 5, 1, 12, 0, 0)
        .single()
        .expect("valid")
}

use chrono::{DateTime, Utc};

fn event(t: EventType, at: DateTime<Utc>, pid: u32, process: &str) -> Event {
    let mut e = Event::new(t, at);
    e.pid = pid;
    e.tid = pid;
    e.ppid = 1;
    e.uid = 1000;
    e.user = "alice".into();
    e.process = process.into();
    e.exe = format!("/usr/bin/{process}").into();
    e.cmdline = format!("{process} --flag").into();
    e.cgroup_id = 42;
    e.parent_process = "bash".into();
    e.ancestors = vec!["bash".into(), "sshd".into()];
    e
}

fn flagged(mut e: Event, label: &str, risk: f64, rules: &[&str]) -> Event {
    e.analysis = Analysis {
        label: label.to_string(),
        severity: if risk >= 0.8 {
            Severity::Malicious
        } else {
            Severity::Suspicious
        },
        risk_score: risk,
        detection_method: "rule_based".to_string(),
        confidence: 1.0,
        recommendation: "Look at it.".to_string(),
        rules: rules.iter().map(ToString::to_string).collect(),
        // Round-trips through the `extra` column.
        process_risk: (risk + 0.1).min(1.0),
    };
    e
}

fn stored(event: Event) -> Event {
    event
}

fn respond(kind: ResponseKind, rule: &str) -> Vec<ResponseAction> {
    vec![ResponseAction {
        action: kind,
        result: ResponseResult::Simulated,
        rule: Some(rule.to_string()),
        target: Some("exec path /tmp/x".to_string()),
        deny_id: None,
        detail: "would block".to_string(),
    }]
}

fn open_store(path: &Path) -> Store {
    Store::open(path, WriterOptions::default()).expect("open store")
}

fn write_all(path: &Path, events: Vec<Event>) {
    write_all_with(path, events, WriterOptions::default());
}

/// Every stored event, rows of `events` and of blocks, oldest first.
fn all_stored(conn: &Connection) -> Vec<HistoryEvent> {
    query::select(conn, &Filter::default()).expect("select")
}

/// As [`write_all`], every event a row of `events` (as schema versions up to 5 stored them).
fn write_all_as_rows(path: &Path, events: Vec<Event>) {
    let options = WriterOptions {
        plain_in_blocks: false,
        ..WriterOptions::default()
    };
    write_all_with(path, events, options);
}

fn write_all_with(path: &Path, events: Vec<Event>, options: WriterOptions) {
    let store = Store::open(path, options).expect("open store");
    // In batches the queue takes (it is bounded in bytes), each committed before the next.
    for batch in events.chunks(4096) {
        assert!(store.submit(batch.to_vec()));
        store.flush();
    }
    let summary = store.close();
    assert_eq!((summary.dropped, summary.failed), (0, 0));
}

/// One event of every type, every optional field used somewhere.
fn every_kind() -> Vec<Event> {
    let t = base();
    let mut n = 0;
    let mut t = move || {
        n += 1;
        t + Span::nanoseconds(n)
    };
    let mut out = Vec::new();
    let mut exec = event(EventType::ProcessExec, t(), 100, "curl");
    exec.argv = Some(vec!["curl".into(), "-o".into(), "/tmp/x y".into()]);
    exec.truncated = true;
    out.push(exec);
    let mut exit = event(EventType::ProcessExit, t(), 100, "curl");
    exit.exit_code = Some(-1);
    exit.exit_signal = Some(9);
    out.push(exit);
    let mut ptrace = event(EventType::Ptrace, t(), 101, "gdb");
    ptrace.ptrace_request = Some("PTRACE_ATTACH".into());
    ptrace.target_pid = Some(100);
    out.push(flagged(ptrace, "Ptrace Attach", 0.7, &["ptrace_attach"]));
    let mut open = event(EventType::FileWrite, t(), 102, "sh");
    open.file_path = Some("/tmp/\u{1b}[31mred\nname".into());
    open.flags = Some("O_WRONLY|O_CREAT".into());
    open.mode = Some(0o644);
    open.syscall = Some("openat".into());
    out.push(open);
    let mut rename = event(EventType::FileRename, t(), 102, "mv");
    rename.file_path = Some("/a".into());
    rename.new_path = Some("/b".into());
    rename.flags = Some("0x1".into());
    out.push(rename);
    let mut privilege = event(EventType::PrivilegeChange, t(), 103, "su");
    privilege.old_uid = Some(1000);
    privilege.new_uid = Some(0);
    privilege.old_gid = Some(1000);
    privilege.new_gid = Some(0);
    privilege.capabilities = Some([1, 2, 3]);
    privilege.syscall = Some("capset".into());
    out.push(privilege);
    let mut close = event(EventType::NetClose, t(), 104, "python3");
    close.protocol = Some("tcp".into());
    close.source_ip = Some("127.0.0.1".parse().expect("an address"));
    close.source_port = Some(40000);
    close.target_ip = Some("::1".parse().expect("an address"));
    close.target_port = Some(443);
    close.bytes_sent = Some(10);
    close.bytes_received = Some(u64::from(u32::MAX) + 7);
    close.duration_ms = Some(0.25);
    out.push(close);
    let mut bpf = event(EventType::BpfLoad, t(), 105, "bpftrace");
    bpf.bpf_prog_type = Some(5);
    bpf.bpf_prog_name = Some("x".into());
    out.push(bpf);
    let mut module = event(EventType::ModuleLoad, t(), 106, "insmod");
    module.module_params = Some("a=1".into());
    module.file_path = Some("/lib/m.ko".into());
    out.push(module);
    // No context at all.
    let mut bare = Event::new(EventType::NetAccept, t());
    bare.pid = 0;
    out.push(bare);
    let flagged_one = flagged(
        event(EventType::FileOpen, t(), 107, "cat"),
        "Credential File Read",
        0.7,
        &["shadow_file_read", "other"],
    );
    out.push(flagged_one);
    let mut stored_events: Vec<Event> = out.into_iter().map(stored).collect();
    stored_events[10].response = respond(ResponseKind::Alert, "shadow_file_read");
    stored_events[2].blocked = true;
    stored_events
}

#[test]
fn events_round_trip_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("h/events.db");
    let events = every_kind();
    write_all(&path, events.clone());
    let history = History::open(&path).expect("open");
    let back = history.query(&Filter::default()).expect("query");
    assert_eq!(back.len(), events.len());
    for (got, want) in back.iter().zip(&events) {
        assert_eq!(&got.event, want);
    }
    // Ids are unique (within a transaction they follow file path order, see writer.rs).
    let mut ids: Vec<i64> = back.iter().map(|e| e.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), back.len());
    // The many events of one process share one context row.
    let contexts: i64 = history
        .connection()
        .query_row("SELECT count(*) FROM contexts", [], |r| r.get(0))
        .expect("count");
    assert!(contexts < events.len() as i64, "{contexts} contexts");
}

/// The queue's encoding keeps every field, in order.
#[test]
fn rows_carry_every_field() {
    let events = every_kind();
    let rows = Rows::from_events(&events);
    assert_eq!(
        (rows.len(), rows.events()),
        (events.len(), events.len() as u64)
    );
    let back: Vec<Event> = rows
        .iter()
        .map(|d| {
            assert_eq!(d.count, 1);
            d.row.expect("decodes").to_event()
        })
        .collect();
    assert_eq!(back, events);
    // Its size is what the bytes took, not the events' in-memory form.
    let encoded: usize = rows.iter().map(|_| 1).sum();
    assert_eq!(encoded, events.len());
    assert!(rows.bytes() < events.len() * std::mem::size_of::<Event>());
}

#[test]
fn directory_and_files_are_private() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("secmon/lib/events.db");
    let store = open_store(&path);
    assert!(store.submit(vec![stored(event(EventType::FileOpen, base(), 1, "x"))]));
    store.flush();
    let mode = |p: &Path| {
        std::fs::metadata(p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(&dir.path().join("secmon")), 0o700);
    assert_eq!(mode(&dir.path().join("secmon/lib")), 0o700);
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&dir.path().join("secmon/lib/events.db-wal")), 0o600);
    assert_eq!(mode(&dir.path().join("secmon/lib/events.db-shm")), 0o600);
    drop(store);

    // An existing file readable by others is made private.
    let loose = dir.path().join("loose.db");
    std::fs::write(&loose, b"").expect("create");
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    drop(open_store(&loose));
    assert_eq!(mode(&loose), 0o600);
    let journal: String = History::open(&loose)
        .expect("open")
        .connection()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("pragma");
    assert_eq!(journal, "wal");
}

/// The fixed set the filter tests query: 24 events, one every 10 minutes from 08:00 UTC.
fn known_set() -> Vec<Event> {
    let start = base() - Span::hours(4);
    let mut out = Vec::new();
    for i in 0..24u32 {
        let at = start + Span::minutes(10 * i64::from(i));
        let e = match i % 4 {
            0 => {
                let mut e = event(EventType::ProcessExec, at, 1000 + i, "bash");
                e.cmdline = format!("bash -c step{i}").into();
                e
            }
            1 => {
                let mut e = event(EventType::FileOpen, at, 1000 + i, "cat");
                e.file_path = Some(if i == 5 {
                    "/etc/shadow".to_string()
                } else {
                    format!("/tmp/work/f{i}")
                });
                e
            }
            2 => {
                let mut e = event(EventType::NetConnect, at, 1000 + i, "curl");
                e.protocol = Some("tcp".into());
                e.source_ip = Some("10.0.0.2".parse().expect("an address"));
                let target = if i == 6 { "203.0.113.9" } else { "127.0.0.1" };
                e.target_ip = Some(target.parse().expect("an address"));
                e.target_port = Some(80);
                e
            }
            _ => {
                let mut e = event(EventType::FileRename, at, 1000 + i, "mv");
                e.file_path = Some(format!("/tmp/work/r{i}"));
                e.new_path = Some(format!("/var/log/r{i}"));
                e
            }
        };
        let e = match i {
            5 => flagged(e, "Credential File Read", 0.7, &["shadow_file_read"]),
            6 => flagged(
                e,
                "Shell Network Connection",
                0.8,
                &["shell_network_connection"],
            ),
            20 => flagged(
                e,
                "Execution From Temp Directory Root",
                0.65,
                &["exec_from_tmp_root", "shell_network_connection"],
            ),
            9 => flagged(e, "Low Signal", 0.3, &["weak"]),
            _ => e,
        };
        let mut e = e;
        if i == 6 {
            e.response = respond(ResponseKind::SimulateBlock, "shell_network_connection");
        }
        out.push(e);
    }
    out
}

fn pids(events: &[HistoryEvent]) -> Vec<u32> {
    events.iter().map(|e| e.event.pid - 1000).collect()
}

#[test]
fn every_filter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.db");
    write_all(&path, known_set());
    let h = History::open(&path).expect("open");
    let q = |f: Filter| pids(&h.query(&f).expect("query"));
    let all: Vec<u32> = (0..24).collect();

    assert_eq!(q(Filter::default()), all);
    // Time: since inclusive, until exclusive.
    let at = |i: i64| base() - Span::hours(4) + Span::minutes(10 * i);
    assert_eq!(
        q(Filter {
            since: Some(at(20)),
            ..Filter::default()
        }),
        vec![20, 21, 22, 23]
    );
    assert_eq!(
        q(Filter {
            since: Some(at(2)),
            until: Some(at(5)),
            ..Filter::default()
        }),
        vec![2, 3, 4]
    );
    assert_eq!(
        q(Filter {
            until: Some(at(0)),
            ..Filter::default()
        }),
        Vec::<u32>::new()
    );
    // Types.
    assert_eq!(
        q(Filter {
            types: vec![EventType::NetConnect],
            ..Filter::default()
        }),
        vec![2, 6, 10, 14, 18, 22]
    );
    assert_eq!(
        q(Filter {
            types: vec![EventType::ProcessExec, EventType::FileRename],
            since: Some(at(16)),
            ..Filter::default()
        }),
        vec![16, 19, 20, 23]
    );
    // Process: exact and wildcard.
    assert_eq!(
        q(Filter {
            process: Some(TextMatch::parse("mv")),
            ..Filter::default()
        }),
        vec![3, 7, 11, 15, 19, 23]
    );
    assert_eq!(
        q(Filter {
            process: Some(TextMatch::parse("c*")),
            since: Some(at(12)),
            ..Filter::default()
        }),
        vec![13, 14, 17, 18, 21, 22]
    );
    assert_eq!(
        q(Filter {
            process: Some(TextMatch::parse("ba")),
            ..Filter::default()
        }),
        Vec::<u32>::new()
    );
    assert_eq!(
        q(Filter {
            pid: Some(1007),
            ..Filter::default()
        }),
        vec![7]
    );
    // Path: exact (either path), directory prefix, wildcard.
    assert_eq!(
        q(Filter {
            path: Some(TextMatch::parse_path("/etc/shadow")),
            ..Filter::default()
        }),
        vec![5]
    );
    assert_eq!(
        q(Filter {
            path: Some(TextMatch::parse_path("/var/log/r7")),
            ..Filter::default()
        }),
        vec![7]
    );
    assert_eq!(
        q(Filter {
            path: Some(TextMatch::parse_path("/var/log/")),
            ..Filter::default()
        }),
        vec![3, 7, 11, 15, 19, 23]
    );
    assert_eq!(
        q(Filter {
            path: Some(TextMatch::parse_path("/tmp/work/f*")),
            ..Filter::default()
        }),
        vec![1, 9, 13, 17, 21]
    );
    // Address: destination or source.
    assert_eq!(
        q(Filter {
            ip: Some("203.0.113.9".into()),
            ..Filter::default()
        }),
        vec![6]
    );
    assert_eq!(
        q(Filter {
            ip: Some("10.0.0.2".into()),
            ..Filter::default()
        })
        .len(),
        6
    );
    // Risk, label (any case, wildcard), rule.
    assert_eq!(
        q(Filter {
            min_risk: Some(0.6),
            ..Filter::default()
        }),
        vec![5, 6, 20]
    );
    assert_eq!(
        q(Filter {
            min_risk: Some(0.7),
            since: Some(at(6)),
            ..Filter::default()
        }),
        vec![6]
    );
    assert_eq!(
        q(Filter {
            label: Some(TextMatch::parse("credential file read")),
            ..Filter::default()
        }),
        vec![5]
    );
    assert_eq!(
        q(Filter {
            label: Some(TextMatch::parse("*NETWORK*")),
            ..Filter::default()
        }),
        vec![6]
    );
    assert_eq!(
        q(Filter {
            label: Some(TextMatch::parse("benign")),
            ..Filter::default()
        })
        .len(),
        20
    );
    assert_eq!(
        q(Filter {
            rule: Some("shell_network_connection".into()),
            ..Filter::default()
        }),
        vec![6, 20]
    );
    // Everything at once.
    assert_eq!(
        q(Filter {
            since: Some(at(1)),
            until: Some(at(23)),
            types: vec![EventType::ProcessExec],
            process: Some(TextMatch::parse("bash")),
            min_risk: Some(0.6),
            label: Some(TextMatch::parse("*temp*")),
            rule: Some("exec_from_tmp_root".into()),
            ..Filter::default()
        }),
        vec![20]
    );
    // Responses come back.
    let blocked = h
        .query(&Filter {
            pid: Some(1006),
            ..Filter::default()
        })
        .expect("query");
    assert_eq!(
        blocked[0].event.response,
        respond(ResponseKind::SimulateBlock, "shell_network_connection")
    );
}

#[test]
fn limit_keeps_the_most_recent_and_cursors_page_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.db");
    // Two events share a timestamp: ids break the tie.
    let mut events = known_set();
    let mut twin = events[23].clone();
    twin.pid = 1099;
    events.push(twin);
    write_all(&path, events);
    let h = History::open(&path).expect("open");
    let page = |limit: usize, before: Option<Cursor>| {
        h.query(&Filter {
            limit: Some(limit),
            before,
            ..Filter::default()
        })
        .expect("query")
    };
    let first = page(3, None);
    assert_eq!(pids(&first), vec![22, 23, 99]);
    let second = page(3, Some(first[0].cursor()));
    assert_eq!(pids(&second), vec![19, 20, 21]);
    let twin_cursor = first[2].cursor();
    assert_eq!(pids(&page(1, Some(twin_cursor))), vec![23]);
    assert_eq!(
        h.count(&Filter {
            limit: Some(1),
            ..Filter::default()
        })
        .expect("count"),
        25
    );
    assert_eq!(pids(&page(0, None)), Vec::<u32>::new());
}

#[test]
fn stats_per_hour_and_day() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.db");
    write_all(&path, known_set());
    let h = History::open(&path).expect("open");
    let rows = h.stats(&Filter::default(), Bucket::Hour, 0).expect("stats");
    let of = |by: Dimension| -> Vec<(String, String, u64)> {
        rows.iter()
            .filter(|r| r.by == by)
            .map(|r| (r.start.format("%H:%M").to_string(), r.key.clone(), r.count))
            .collect()
    };
    let types = of(Dimension::Type);
    // 08:00–11:50: 4 hours × 6 events, each hour 2 of one type... summed per type = 6.
    assert_eq!(types.iter().map(|t| t.2).sum::<u64>(), 24);
    assert_eq!(
        types
            .iter()
            .filter(|t| t.0 == "08:00")
            .cloned()
            .collect::<Vec<_>>(),
        vec![
            ("08:00".to_string(), "file_open".to_string(), 2),
            ("08:00".to_string(), "file_rename".to_string(), 1),
            ("08:00".to_string(), "net_connect".to_string(), 1),
            ("08:00".to_string(), "process_exec".to_string(), 2),
        ]
    );
    assert_eq!(
        of(Dimension::Rule),
        vec![
            ("08:00".to_string(), "shadow_file_read".to_string(), 1),
            (
                "09:00".to_string(),
                "shell_network_connection".to_string(),
                1
            ),
            ("09:00".to_string(), "weak".to_string(), 1),
            ("11:00".to_string(), "exec_from_tmp_root".to_string(), 1),
            (
                "11:00".to_string(),
                "shell_network_connection".to_string(),
                1
            ),
        ]
    );
    let labels = of(Dimension::Label);
    assert!(labels.contains(&("08:00".to_string(), "Benign".to_string(), 5)));

    // Per day, in a zone 13 hours ahead: 08:00–11:50 UTC is 21:00–00:50 there, two days.
    let rows = h
        .stats(&Filter::default(), Bucket::Day, 13 * 3600)
        .expect("stats");
    let days: Vec<(String, u64)> = rows
        .iter()
        .filter(|r| r.by == Dimension::Type && r.key == "process_exec")
        .map(|r| (r.start.to_rfc3339(), r.count))
        .collect();
    assert_eq!(
        days,
        vec![
            ("2026-04-30T11:00:00+00:00".to_string(), 5),
            ("2026-05-01T11:00:00+00:00".to_string(), 1),
        ]
    );
    // Filters apply to statistics too.
    let risky = h
        .stats(
            &Filter {
                min_risk: Some(0.6),
                ..Filter::default()
            },
            Bucket::Day,
            0,
        )
        .expect("stats");
    let total: u64 = risky
        .iter()
        .filter(|r| r.by == Dimension::Label)
        .map(|r| r.count)
        .sum();
    assert_eq!(total, 3);
}

#[test]
fn timeline_counts_each_bucket_by_severity() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.db");
    write_all(&path, known_set());
    let h = History::open(&path).expect("open");
    let rows = |filter: &Filter, width: i64, offset: i32| -> Vec<(String, [u64; 3])> {
        h.timeline(filter, width, offset)
            .expect("timeline")
            .into_iter()
            .map(|r| (r.start.format("%H:%M").to_string(), r.by_severity))
            .collect()
    };
    let hour = |h: &str, counts: [u64; 3]| (h.to_string(), counts);
    // 08:00–11:50, an event every 10 minutes; suspicious at 08:50, 09:30 and 11:20, malicious
    // at 09:00.
    assert_eq!(
        rows(&Filter::default(), 3600, 0),
        vec![
            hour("08:00", [5, 1, 0]),
            hour("09:00", [4, 1, 1]),
            hour("10:00", [6, 0, 0]),
            hour("11:00", [5, 1, 0]),
        ]
    );
    // Empty buckets are left out; a bucket of 20 minutes aligned to a zone 10 minutes ahead
    // starts at :50, :10, :30 UTC.
    let narrow = rows(
        &Filter {
            since: Some(base() - Span::minutes(50)),
            ..Filter::default()
        },
        20 * 60,
        600,
    );
    assert_eq!(
        narrow,
        vec![
            hour("11:10", [1, 1, 0]),
            hour("11:30", [2, 0, 0]),
            hour("11:50", [1, 0, 0]),
        ]
    );
    // The filter applies; its limit and cursor do not.
    let risky = Filter {
        min_risk: Some(0.5),
        limit: Some(1),
        before: Some(Cursor { ts_ns: 0, id: 0 }),
        ..Filter::default()
    };
    assert_eq!(rows(&risky, 86_400, 0), vec![hour("00:00", [0, 2, 1])]);
    assert_eq!(
        rows(
            &Filter {
                types: vec![EventType::NetConnect],
                ..Filter::default()
            },
            86_400,
            0
        ),
        vec![hour("00:00", [5, 0, 1])]
    );
}

#[test]
fn age_retention_deletes_exactly_what_is_old() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.db");
    let now = base();
    let ages = [40, 31, 30, 29, 1, 0];
    let mut events = Vec::new();
    for (i, days) in ages.iter().enumerate() {
        // 30 days and one second is old; 30 days minus one second is not.
        let at = now - Span::days(*days) + Span::seconds(if *days == 30 { 1 } else { 0 });
        let mut e = event(EventType::ProcessExec, at, i as u32, "p");
        // The oldest two have contexts of their own, which must go with them.
        e.cmdline = format!("p {days}").into();
        events.push(stored(e));
    }
    let extra_old = stored(event(EventType::FileOpen, now - Span::days(45), 9, "p"));
    events.push(extra_old);
    write_all(&path, events);

    let mut conn = open_connection(&path, true).expect("open");
    let retention = Retention {
        max_age: Some(Span::days(30)),
        max_bytes: None,
    };
    let step = retention::step(&mut conn, &retention, now, false).expect("step");
    assert_eq!(step.deleted_by_age, 3);
    assert_eq!(step.deleted_by_size, 0);
    assert!(!step.more);
    let left = all_stored(&conn);
    let pids: Vec<u32> = left.iter().map(|e| e.event.pid).collect();
    assert_eq!(pids, vec![2, 3, 4, 5]);
    // Unreferenced contexts are gone; referenced ones stay: four contexts, the four left
    // events' own.
    let cmdlines: Vec<&str> = left.iter().map(|e| e.event.cmdline.as_str()).collect();
    assert_eq!(cmdlines, ["p 30", "p 29", "p 1", "p 0"]);
    let contexts: i64 = conn
        .query_row("SELECT count(*) FROM contexts", [], |r| r.get(0))
        .expect("count");
    assert_eq!(contexts, 4);
    // Nothing more to do.
    let again = retention::step(&mut conn, &retention, now, false).expect("step");
    assert_eq!(again, RetentionStep::default());
}

#[test]
fn age_retention_runs_in_chunks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.db");
    let now = base();
    let old = now - Span::days(10);
    let n = RETENTION_CHUNK + 5;
    let events: Vec<Event> = (0..n)
        .map(|i| stored(event(EventType::FileOpen, old, i as u32, "p")))
        .chain(std::iter::once(stored(event(
            EventType::FileOpen,
            now,
            0,
            "p",
        ))))
        .collect();
    write_all(&path, events);
    let mut conn = open_connection(&path, true).expect("open");
    let retention = Retention {
        max_age: Some(Span::days(1)),
        max_bytes: None,
    };
    // A step stops after the block that takes it to a chunk.
    let first = retention::step(&mut conn, &retention, now, false).expect("step");
    let deleted = first.deleted_by_age as usize;
    assert!(
        (RETENTION_CHUNK..RETENTION_CHUNK + BLOCK_ROWS as usize).contains(&deleted),
        "{first:?}"
    );
    assert!(first.more);
    let second = retention::step(&mut conn, &retention, now, true).expect("step");
    assert_eq!(second.deleted_by_age as usize, n - deleted);
    assert!(!second.more);
    let left = all_stored(&conn);
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].event.timestamp, now);
}

#[test]
fn size_retention_deletes_the_oldest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.db");
    let events: Vec<Event> = (0..20_000u32)
        .map(|i| {
            let mut e = event(
                EventType::FileOpen,
                base() + Span::milliseconds(i64::from(i)),
                i,
                "p",
            );
            e.file_path = Some(format!("/data/{i:08}/some/longer/path/name"));
            stored(e)
        })
        .collect();
    write_all(&path, events);
    let mut conn = open_connection(&path, true).expect("open");
    let used = used_bytes(&conn).expect("size");
    let max = used / 2;
    let retention = Retention {
        max_age: None,
        max_bytes: Some(max),
    };
    let mut trimming = false;
    let mut deleted = 0;
    for _ in 0..50 {
        let step = retention::step(&mut conn, &retention, base(), trimming).expect("step");
        deleted += step.deleted_by_size;
        trimming = step.more;
        if !step.more {
            break;
        }
    }
    assert!(!trimming, "retention converges");
    assert!(used_bytes(&conn).expect("size") <= max);
    assert!(deleted > 5_000 && deleted < 20_000, "{deleted}");
    // The oldest went first: what is left is a suffix.
    let left = all_stored(&conn);
    let min_pid = left.iter().map(|e| e.event.pid).min().expect("some left");
    assert_eq!(min_pid as usize + left.len(), 20_000);
}

#[test]
fn the_writer_runs_retention_in_the_background() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.db");
    let now = Utc::now();
    write_all(
        &path,
        vec![
            stored(event(EventType::FileOpen, now - Span::days(3), 1, "p")),
            stored(event(EventType::FileOpen, now, 2, "p")),
        ],
    );
    let store = Store::open(
        &path,
        WriterOptions {
            retention: Retention {
                max_age: Some(Span::days(2)),
                max_bytes: None,
            },
            ..WriterOptions::default()
        },
    )
    .expect("open");
    // Retention runs at start; a flush after it proves the writer got that far.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while store.stats().expired.load(Ordering::Relaxed) == 0 {
        assert!(std::time::Instant::now() < deadline, "retention never ran");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(store.close().expired, 1);
    let left = History::open(&path)
        .expect("open")
        .query(&Filter::default())
        .expect("query");
    assert_eq!(pids_raw(&left), vec![2]);
}

fn pids_raw(events: &[HistoryEvent]) -> Vec<u32> {
    events.iter().map(|e| e.event.pid).collect()
}

/// The version-1 layout, written the way a version-1 secmon wrote it.
#[test]
fn an_older_schema_migrates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.db");
    {
        let mut conn = Connection::open(&path).expect("create");
        conn.execute_batch("PRAGMA journal_mode = WAL")
            .expect("wal");
        assert_eq!(
            schema::migrate(&mut conn, 1).expect("v1"),
            schema::Migration::Upgraded(0)
        );
        assert_eq!(schema::version(&conn).expect("version"), 1);
        conn.execute_batch(
            "INSERT INTO contexts VALUES (1, 'root', '/usr/bin/curl', 'curl x', 1, 'bash', '[\"bash\"]');
             INSERT INTO events (ts, event_type, pid, tid, ppid, uid, process, ctx, dst_ip, dst_port,
                 label, severity, risk, method, rules, extra)
             VALUES (1777636800000000000, 'net_connect', 7, 7, 1, 0, 'curl', 1, '198.51.100.1', 443,
                 'Shell Network Connection', 2, 0.8, 'rule_based', '[\"r\"]',
                 '{\"protocol\":\"tcp\",\"source_ip\":\"10.1.1.1\",\"source_port\":5000}');
             INSERT INTO events (ts, event_type, pid, tid, ppid, uid, process, ctx, file_path,
                 label, severity, risk, method, extra)
             VALUES (1777636801000000000, 'file_open', 8, 8, 1, 0, 'cat', 1, '/etc/passwd',
                 'Benign', 0, 0.0, 'none', '{\"source_ip\":\"10.9.9.9\"}');",
        )
        .expect("v1 rows");
    }
    // Opening for writing migrates, keeps the rows, and moves the source address.
    let store = open_store(&path);
    let mut e = event(EventType::NetConnect, base() + Span::hours(1), 9, "nc");
    e.source_ip = Some("10.2.2.2".parse().expect("an address"));
    e.response = respond(ResponseKind::Alert, "r");
    assert!(store.submit(vec![e]));
    drop(store);
    let h = History::open(&path).expect("open");
    assert_eq!(
        schema::version(h.connection()).expect("version"),
        SCHEMA_VERSION
    );
    let all = h.query(&Filter::default()).expect("query");
    assert_eq!(pids_raw(&all), vec![7, 8, 9]);
    let old = &all[0].event;
    assert_eq!(
        old.source_ip.map(|ip| ip.to_string()).as_deref(),
        Some("10.1.1.1")
    );
    assert_eq!(old.source_port, Some(5000));
    assert_eq!(old.protocol.as_deref(), Some("tcp"));
    assert_eq!(old.exe, "/usr/bin/curl");
    assert_eq!(old.ancestors, vec!["bash".to_string()]);
    assert_eq!(old.analysis.rules, vec!["r".to_string()]);
    assert_eq!(old.analysis.severity, Severity::Malicious);
    assert_eq!(
        all[1].event.source_ip.map(|ip| ip.to_string()).as_deref(),
        Some("10.9.9.9")
    );
    let extra: Option<String> = h
        .connection()
        .query_row("SELECT extra FROM events WHERE pid = 8", [], |r| r.get(0))
        .expect("extra");
    assert_eq!(extra, None, "an emptied extra object becomes NULL");
    // The new columns and indexes work.
    let by_source = h
        .query(&Filter {
            ip: Some("10.1.1.1".into()),
            ..Filter::default()
        })
        .expect("query");
    assert_eq!(pids_raw(&by_source), vec![7]);
    assert_eq!(all[2].event.response, respond(ResponseKind::Alert, "r"));
    let indexes: i64 = h
        .connection()
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name IN \
             ('events_label_ts', 'events_new_path', 'events_src')",
            [],
            |r| r.get(0),
        )
        .expect("indexes");
    assert_eq!(indexes, 3);
    // Contexts know their newest use; the index on events.ctx is gone.
    let last: i64 = h
        .connection()
        .query_row("SELECT last_ts FROM contexts WHERE id = 1", [], |r| {
            r.get(0)
        })
        .expect("last_ts");
    assert_eq!(last, 1_777_636_801_000_000_000);
    let ctx_index: i64 = h
        .connection()
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'events_ctx'",
            [],
            |r| r.get(0),
        )
        .expect("index");
    assert_eq!(ctx_index, 0);
}

/// A version-2 database (the layout before the insert-rate indexes) gets the version-3 indexes
/// and keeps answering every query.
#[test]
fn a_version_2_database_migrates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.db");
    {
        let mut conn = Connection::open(&path).expect("create");
        conn.execute_batch("PRAGMA journal_mode = WAL")
            .expect("wal");
        schema::migrate(&mut conn, 2).expect("v2");
        conn.execute_batch(
            "INSERT INTO contexts VALUES (1, 'root', '/usr/bin/cat', 'cat x', 1, 'bash', '[]', 1);
             INSERT INTO events (ts, event_type, pid, tid, ppid, uid, process, ctx, file_path,
                 label, severity, risk, method)
             VALUES (1777636801000000000, 'file_open', 8, 8, 1, 0, 'cat', 1, '/etc/passwd',
                 'Benign', 0, 0.0, 'none');",
        )
        .expect("v2 rows");
    }
    let h = History::open(&path).expect("open");
    assert_eq!(
        schema::version(h.connection()).expect("version"),
        SCHEMA_VERSION
    );
    let names: Vec<String> = {
        let mut stmt = h
            .connection()
            .prepare(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events' \
                 ORDER BY name",
            )
            .expect("prepare");
        let rows = stmt.query_map([], |r| r.get(0)).expect("names");
        rows.collect::<Result<_, _>>().expect("rows")
    };
    assert_eq!(
        names,
        [
            "events_dst",
            "events_label_ts",
            "events_new_path",
            "events_path_gen",
            "events_pid_gen",
            "events_risk_ts",
            "events_src",
            "events_ts"
        ]
    );
    for f in [
        Filter {
            path: Some(TextMatch::parse_path("/etc/passwd")),
            ..Filter::default()
        },
        Filter {
            path: Some(TextMatch::parse_path("/etc/")),
            ..Filter::default()
        },
        Filter {
            process: Some(TextMatch::parse("cat")),
            pid: Some(8),
            types: vec![EventType::FileOpen],
            ..Filter::default()
        },
    ] {
        assert_eq!(pids_raw(&h.query(&f).expect("query")), vec![8], "{f:?}");
    }
}

/// A version-3 database (before coalesced rows) gets `count` and `last_ts`: its rows stand for
/// one event each, new rows go in beside them, and queries and counts answer as before.
#[test]
fn a_version_3_database_migrates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.db");
    {
        let mut conn = Connection::open(&path).expect("create");
        conn.execute_batch("PRAGMA journal_mode = WAL")
            .expect("wal");
        schema::migrate(&mut conn, 3).expect("v3");
        assert_eq!(schema::version(&conn).expect("version"), 3);
        conn.execute_batch(
            "INSERT INTO contexts VALUES (1, 'root', '/usr/bin/cat', 'cat x', 1, 'bash', '[]', 1);
             INSERT INTO events (ts, event_type, pid, tid, ppid, uid, process, ctx, file_path,
                 label, severity, risk, method)
             VALUES (1777636801000000000, 'file_open', 8, 8, 1, 0, 'cat', 1, '/etc/passwd',
                 'Benign', 0, 0.0, 'none'),
                    (1777636802000000000, 'file_open', 8, 8, 1, 0, 'cat', 1, '/etc/passwd',
                 'Benign', 0, 0.0, 'none');",
        )
        .expect("v3 rows");
    }
    let mut new = event(EventType::FileOpen, base() + Span::seconds(3), 9, "cat");
    new.file_path = Some("/etc/passwd".to_string());
    write_all(&path, vec![new.clone()]);
    let h = History::open(&path).expect("open");
    assert_eq!(
        schema::version(h.connection()).expect("version"),
        SCHEMA_VERSION
    );
    let all = h.query(&Filter::default()).expect("query");
    assert_eq!(pids_raw(&all), vec![8, 8, 9]);
    assert!(
        all.iter()
            .all(|e| e.count == 1 && e.last_timestamp.is_none()),
        "{all:?}"
    );
    assert_eq!(all[2].event, new);
    let passwd = Filter {
        path: Some(TextMatch::parse_path("/etc/passwd")),
        ..Filter::default()
    };
    assert_eq!(h.count(&passwd).expect("count"), 3);
    let stats = h.stats(&Filter::default(), Bucket::Day, 0).expect("stats");
    let opens: u64 = stats
        .iter()
        .filter(|r| r.by == Dimension::Type && r.key == "file_open")
        .map(|r| r.count)
        .sum();
    assert_eq!(opens, 3);
    let index: String = h
        .connection()
        .query_row(
            "SELECT sql FROM sqlite_master WHERE name = 'events_ts'",
            [],
            |r| r.get(0),
        )
        .expect("events_ts");
    assert!(index.contains("count"), "{index}");
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.db");
    drop(open_store(&path));
    {
        let conn = Connection::open(&path).expect("open");
        conn.execute("UPDATE schema_version SET version = 99", [])
            .expect("bump");
    }
    let e = Store::open(&path, WriterOptions::default())
        .err()
        .expect("too new");
    assert!(matches!(e, StorageError::TooNew { found: 99, .. }), "{e:?}");
    assert!(
        e.to_string().ends_with(&format!(
            "events.db: history schema version 99 is newer than this secmon understands \
                 ({SCHEMA_VERSION}); use a newer secmon or another --db"
        )),
        "{e}"
    );
}

#[test]
fn corrupted_locked_and_missing_databases_give_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.db");
    std::fs::write(&path, vec![0x42u8; 8192]).expect("garbage");
    let e = Store::open(&path, WriterOptions::default())
        .err()
        .expect("corrupt");
    assert!(matches!(e, StorageError::Corrupt { .. }), "{e:?}");
    assert!(e.is_fatal());
    let text = e.to_string();
    assert!(
        text.starts_with(&format!(
            "{}: not an SQLite database, or corrupted (",
            path.display()
        )),
        "{text}"
    );
    assert!(
        text.ends_with("move it aside to start a new history"),
        "{text}"
    );
    let e = History::open(&path).err().expect("corrupt");
    assert!(matches!(e, StorageError::Corrupt { .. }), "{e:?}");

    // A valid header with damaged pages.
    let damaged = dir.path().join("damaged.db");
    write_all(
        &damaged,
        (0..2000)
            .map(|i| stored(event(EventType::FileOpen, base(), i, "p")))
            .collect(),
    );
    {
        let mut bytes = std::fs::read(&damaged).expect("read");
        for b in &mut bytes[4096..] {
            *b = 0xff;
        }
        std::fs::write(&damaged, bytes).expect("write");
    }
    let failed = History::open(&damaged).and_then(|h| h.query(&Filter::default()));
    let e = failed.expect_err("damaged");
    assert!(matches!(e, StorageError::Corrupt { .. }), "{e:?}");

    // Locked: another connection holds the write lock.
    let locked = dir.path().join("locked.db");
    drop(open_store(&locked));
    let holder = Connection::open(&locked).expect("open");
    holder
        .execute_batch("BEGIN EXCLUSIVE; INSERT INTO schema_version VALUES (2);")
        .expect("lock");
    let started = std::time::Instant::now();
    let e = Store::open(&locked, WriterOptions::default())
        .err()
        .expect("locked");
    assert!(matches!(e, StorageError::Locked { .. }), "{e:?}");
    assert!(started.elapsed() >= LOCK_WAIT - Duration::from_millis(100));
    assert!(
        e.to_string()
            .ends_with("locked.db: the database is locked by another program (another secmon, or an open sqlite3 transaction)"),
        "{e}"
    );
    holder.execute_batch("ROLLBACK").expect("unlock");
    drop(open_store(&locked));

    let e = History::open(&dir.path().join("absent.db"))
        .err()
        .expect("missing");
    assert!(matches!(e, StorageError::Missing { .. }), "{e:?}");
    assert!(e.to_string().contains("no history database here"));
    // Opening for reading does not create it.
    assert!(!dir.path().join("absent.db").exists());

    let e = Store::open(&dir.path().join("f/x.db"), WriterOptions::default());
    assert!(e.is_ok());
    std::fs::write(dir.path().join("file"), b"").expect("file");
    let e = Store::open(&dir.path().join("file/x.db"), WriterOptions::default())
        .err()
        .expect("not a directory");
    assert!(
        e.to_string()
            .contains("file: cannot create the history directory"),
        "{e}"
    );
}

#[test]
fn a_full_queue_drops_and_reports() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.db");
    let batch = |n: u32| -> Vec<Event> {
        (0..n)
            .map(|i| stored(event(EventType::FileOpen, base(), i, "p")))
            .collect()
    };
    // The queue holds ten of these events (in bytes, as encoded).
    let mut store = Store::open(
        &path,
        WriterOptions {
            queue_bytes: Rows::from_events(&batch(10)).bytes(),
            ..WriterOptions::default()
        },
    )
    .expect("open");
    // Larger than the whole queue: dropped at once, whatever the writer does.
    assert!(!store.submit(batch(11)));
    assert!(store.submit(batch(10)));
    store.flush();
    assert!(store.submit(batch(4)));
    let report = store.take_report();
    assert_eq!(
        report,
        vec![
            "warning: history: 11 events not stored (the history writer is behind; they were \
             still analysed and shown)"
                .to_string()
        ]
    );
    assert!(store.take_report().is_empty(), "reported once");
    let summary = store.close();
    assert_eq!(summary.stored, 14);
    assert_eq!(summary.dropped, 11);
    assert_eq!(summary.failed, 0);
}

#[test]
fn queries_use_the_intended_indexes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.db");
    write_all_as_rows(&path, known_set());
    let h = History::open(&path).expect("open");
    let plan = |f: &Filter| -> String {
        let w = query::tests_support::where_sql(h.connection(), f);
        let sql = format!(
            "EXPLAIN QUERY PLAN SELECT e.id FROM events e WHERE {} ORDER BY {} LIMIT 100",
            w.0, w.2
        );
        let mut stmt = h.connection().prepare(&sql).expect("prepare");
        let rows = stmt
            .query_map(rusqlite::params_from_iter(w.1), |r| r.get::<_, String>(3))
            .expect("plan");
        rows.collect::<Result<Vec<_>, _>>()
            .expect("rows")
            .join("; ")
    };
    let since = Some(base() - Span::hours(24));
    let risk = plan(&Filter {
        since,
        min_risk: Some(0.6),
        ..Filter::default()
    });
    assert!(risk.contains("events_risk_ts"), "{risk}");
    let last = plan(&Filter {
        since,
        ..Filter::default()
    });
    assert!(last.contains("events_ts"), "{last}");
    let path_plan = plan(&Filter {
        since,
        min_risk: Some(0.6),
        path: Some(TextMatch::parse_path("/etc/shadow")),
        ..Filter::default()
    });
    assert!(path_plan.contains("events_path"), "{path_plan}");
    let ip = plan(&Filter {
        ip: Some("1.2.3.4".into()),
        ..Filter::default()
    });
    assert!(
        ip.contains("events_dst") && ip.contains("events_src"),
        "{ip}"
    );
    let process = plan(&Filter {
        since,
        process: Some(TextMatch::parse("bash")),
        ..Filter::default()
    });
    // Checked in the covering time index, without reading rows.
    assert!(process.contains("COVERING INDEX events_ts"), "{process}");
    let pid = plan(&Filter {
        pid: Some(1005),
        ..Filter::default()
    });
    assert!(pid.contains("events_pid_gen"), "{pid}");
    let directory = plan(&Filter {
        path: Some(TextMatch::parse_path("/tmp/work/")),
        ..Filter::default()
    });
    assert!(
        directory.contains("events_path_gen") && directory.contains("events_new_path"),
        "{directory}"
    );
}

/// The generation indexes' leading expression and the one queries use agree (SQLite only uses an
/// expression index for the same expression).
#[test]
fn the_generation_indexes_use_the_shift_queries_use() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.db");
    drop(open_store(&path));
    let h = History::open(&path).expect("open");
    let key = format!("id >> {}", schema::GENERATION_SHIFT);
    for name in ["events_path_gen", "events_pid_gen"] {
        let sql: String = h
            .connection()
            .query_row(
                "SELECT sql FROM sqlite_master WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .expect("index");
        assert!(sql.contains(&key), "{sql}");
    }
}

/// Path and pid lookups find matches in every generation of ids, old and new, and none that do
/// not match; process and type filters (checked in the time index) too.
#[test]
fn paths_are_found_in_every_generation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.db");
    let per_generation = 1usize << schema::GENERATION_SHIFT;
    let total = per_generation * 3 + 100;
    let events: Vec<Event> = (0..total)
        .map(|i| {
            let at = base() + Span::milliseconds(i as i64);
            let mut e = event(EventType::FileOpen, at, 2 + (i % 7) as u32, "cat");
            e.file_path = Some(format!("/srv/d{}/f{}", i % 3, i % 1000));
            if i % per_generation == 5 {
                e.file_path = Some("/etc/shadow".to_string());
                e.event_type = EventType::FileWrite;
                e.pid = 1;
                e.process = "vi".into();
            }
            e
        })
        .collect();
    write_all(&path, events);
    let h = History::open(&path).expect("open");
    let count = |f: Filter| h.count(&f).expect("count");
    let exact = Filter {
        path: Some(TextMatch::parse_path("/etc/shadow")),
        ..Filter::default()
    };
    assert_eq!(count(exact.clone()), 4);
    let found = h.query(&exact).expect("query");
    assert_eq!(found.len(), 4);
    assert!(
        found
            .windows(2)
            .all(|w| w[0].event.timestamp < w[1].event.timestamp)
    );
    let directory = Filter {
        path: Some(TextMatch::parse_path("/srv/d1/")),
        ..Filter::default()
    };
    let expected = (0..total)
        .filter(|i| i % per_generation != 5 && i % 3 == 1)
        .count() as u64;
    assert_eq!(count(directory), expected);
    let recent = h
        .query(&Filter {
            path: Some(TextMatch::parse_path("/etc/")),
            limit: Some(1),
            ..Filter::default()
        })
        .expect("query");
    assert_eq!(recent.len(), 1);
    assert_eq!(
        recent[0].event.timestamp,
        base() + Span::milliseconds((per_generation * 3 + 5) as i64)
    );
    for f in [
        Filter {
            pid: Some(1),
            ..Filter::default()
        },
        Filter {
            process: Some(TextMatch::parse("vi")),
            ..Filter::default()
        },
        Filter {
            types: vec![EventType::FileWrite],
            ..Filter::default()
        },
    ] {
        assert_eq!(count(f), 4);
    }
}

/// A stop must not wait for a writer stuck on a locked database: `close_within` returns at its
/// limit, counts what was not stored, and leaves the database consistent.
#[test]
fn close_within_gives_up_on_a_locked_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.db");
    let store = Store::open(
        &path,
        WriterOptions {
            max_batch: 1,
            ..WriterOptions::default()
        },
    )
    .expect("open");
    let holder = Connection::open(&path).expect("open");
    holder.execute_batch("BEGIN EXCLUSIVE").expect("lock");
    // One transaction per event, each waiting LOCK_WAIT for the lock: far longer than allowed.
    for i in 0..10 {
        assert!(store.submit(vec![stored(event(EventType::FileOpen, base(), i, "p"))]));
    }
    let started = std::time::Instant::now();
    let summary = store.close_within(Duration::from_millis(300));
    assert!(
        started.elapsed() < LOCK_WAIT,
        "close_within waited {:?} for a locked database",
        started.elapsed()
    );
    assert!(summary.abandoned >= 9 && summary.stored == 0, "{summary:?}");
    holder.execute_batch("ROLLBACK").expect("unlock");
    let check: String = holder
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check");
    assert_eq!(check, "ok");
}

// ---------------------------------------------------------------------------------------------
// Coalescing identical consecutive events

fn open_event(at: DateTime<Utc>, pid: u32) -> Event {
    let mut e = event(EventType::FileOpen, at, pid, "python3");
    e.file_path = Some("/srv/hot".to_string());
    e.flags = Some("O_RDONLY".into());
    e.syscall = Some("openat".into());
    e
}

/// (count, first, last time) of each row, in order.
fn runs(rows: &Rows) -> Vec<(u64, i64, i64)> {
    rows.iter()
        .map(|d| {
            let r = d.row.expect("decodes");
            assert_eq!(r.count, d.count);
            (r.count, r.first_ns, r.last_ns)
        })
        .collect()
}

fn coalesced(events: &[Event]) -> Vec<(u64, i64, i64)> {
    let mut c = Coalescer::new();
    for e in events {
        c.push(e);
    }
    c.close_all();
    runs(&c.take())
}

fn ns(at: DateTime<Utc>) -> i64 {
    to_ns(at)
}

#[test]
fn identical_benign_events_coalesce_with_an_exact_count() {
    let step = Span::microseconds(9);
    let events: Vec<Event> = (0..100_000)
        .map(|i| open_event(base() + step * i, 7))
        .collect();
    assert_eq!(
        coalesced(&events),
        vec![(100_000, ns(base()), ns(base() + step * 99_999))]
    );
    // Interleaved processes: each pid has its own row.
    let mut other = open_event(base(), 8);
    other.file_path = Some("/srv/other".to_string());
    let mut mixed = Vec::new();
    for i in 0..5 {
        let at = base() + Span::milliseconds(i);
        mixed.push(open_event(at, 7));
        other.timestamp = at;
        mixed.push(other.clone());
    }
    let rows = coalesced(&mixed);
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.iter().all(|r| r.0 == 5), "{rows:?}");
}

#[test]
fn a_row_covers_at_most_its_window() {
    let at = |ms: i64| base() + Span::milliseconds(ms);
    let events: Vec<Event> = [0, 500, 999, 1000, 1500]
        .iter()
        .map(|&ms| open_event(at(ms), 7))
        .collect();
    assert_eq!(
        coalesced(&events),
        vec![(3, ns(at(0)), ns(at(999))), (2, ns(at(1000)), ns(at(1500)))]
    );
    // Time going backwards starts a new row.
    let events = vec![open_event(at(5), 7), open_event(at(4), 7)];
    assert_eq!(
        coalesced(&events),
        vec![(1, ns(at(5)), ns(at(5))), (1, ns(at(4)), ns(at(4)))]
    );
}

#[test]
fn events_that_differ_or_matched_a_rule_are_never_coalesced() {
    let a = open_event(base(), 7);
    let mut variants: Vec<(&str, Event)> = Vec::new();
    let mut vary = |name: &'static str, change: &dyn Fn(&mut Event)| {
        let mut e = a.clone();
        change(&mut e);
        assert_ne!(e, a, "{name}");
        variants.push((name, e));
    };
    vary("tid", &|e| e.tid += 1);
    vary("type", &|e| e.event_type = EventType::FileWrite);
    vary("path", &|e| e.file_path = Some("/srv/cold".to_string()));
    vary("new path", &|e| e.new_path = Some("/srv/x".to_string()));
    vary("flags", &|e| e.flags = Some("O_RDWR".into()));
    vary("mode", &|e| e.mode = Some(0o600));
    vary("syscall", &|e| e.syscall = Some("open".into()));
    vary("process", &|e| e.process = "python3.12".into());
    vary("cmdline", &|e| e.cmdline = "python3 other".into());
    vary("uid", &|e| e.uid = 0);
    vary("port", &|e| e.target_port = Some(443));
    vary("truncated", &|e| e.truncated = true);
    vary("process risk", &|e| e.analysis.process_risk = 0.1);
    for (name, b) in variants {
        let mut events = vec![a.clone(), b, a.clone()];
        for (i, e) in events.iter_mut().enumerate() {
            e.timestamp = base() + Span::microseconds(i as i64);
        }
        let rows = coalesced(&events);
        assert_eq!(rows.len(), 3, "{name}: {rows:?}");
        assert!(rows.iter().all(|r| r.0 == 1), "{name}: {rows:?}");
    }

    // What a rule found (or the response did) is never counted into a row, nor joins one.
    let hit = flagged(a.clone(), "Hot File Read", 0.7, &["hot_file"]);
    let mut logged = a.clone();
    logged.response = respond(ResponseKind::Alert, "hot_file");
    let mut blocked = a.clone();
    blocked.blocked = true;
    let mut weak = a.clone();
    weak.analysis.rules = vec!["weak".to_string()];
    for special in [hit, logged, blocked, weak] {
        let events: Vec<Event> = [a.clone(), special.clone(), special, a.clone(), a.clone()]
            .into_iter()
            .enumerate()
            .map(|(i, mut e)| {
                e.timestamp = base() + Span::microseconds(i as i64);
                e
            })
            .collect();
        let counts: Vec<u64> = coalesced(&events).iter().map(|r| r.0).collect();
        assert_eq!(counts, vec![1, 1, 1, 2]);
    }
}

#[test]
fn a_quiet_process_row_is_queued_after_its_window() {
    let mut c = Coalescer::new();
    let start = std::time::Instant::now();
    c.push(&open_event(base(), 7));
    c.push(&open_event(base() + Span::milliseconds(1), 7));
    c.expire(start);
    assert!(c.take().is_empty(), "still counting");
    assert_eq!(c.open_rows(), 1);
    c.expire(start + coalesce::WINDOW + coalesce::SWEEP_EVERY);
    assert_eq!(
        runs(&c.take()),
        vec![(2, ns(base()), ns(base() + Span::milliseconds(1)))]
    );
    assert_eq!(c.open_rows(), 0);
}

/// Coalesced rows through the writer: stored with their count and times, read back with them,
/// and counted as all of their events.
#[test]
fn coalesced_rows_are_stored_queried_and_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.db");
    let store = open_store(&path);
    let mut c = Coalescer::new();
    for i in 0..1000 {
        c.push(&open_event(base() + Span::microseconds(i), 7));
    }
    let hit = flagged(
        open_event(base() + Span::milliseconds(2), 7),
        "Hot File Read",
        0.7,
        &["hot_file"],
    );
    c.push(&hit);
    let mut again = hit.clone();
    again.timestamp += Span::microseconds(1);
    c.push(&again);
    for i in 0..10 {
        c.push(&open_event(
            base() + Span::milliseconds(3) + Span::microseconds(i),
            7,
        ));
    }
    c.close_all();
    let rows = c.take();
    assert_eq!((rows.len(), rows.events()), (4, 1012));
    assert!(store.submit_rows(rows));
    let summary = store.close();
    assert_eq!(
        (summary.stored, summary.dropped, summary.failed),
        (1012, 0, 0)
    );

    let h = History::open(&path).expect("open");
    let all = h.query(&Filter::default()).expect("query");
    let counts: Vec<u64> = all.iter().map(|e| e.count).collect();
    assert_eq!(counts, vec![1000, 1, 1, 10]);
    assert_eq!(all[0].event, open_event(base(), 7));
    assert_eq!(
        all[0].last_timestamp,
        Some(base() + Span::microseconds(999))
    );
    assert_eq!(all[1].event, hit);
    assert_eq!(all[1].last_timestamp, None);
    assert_eq!(
        all[3].last_timestamp,
        Some(base() + Span::milliseconds(3) + Span::microseconds(9))
    );
    let hot = Filter {
        path: Some(TextMatch::parse_path("/srv/hot")),
        ..Filter::default()
    };
    assert_eq!(h.count(&hot).expect("count"), 1012);
    assert_eq!(h.count(&Filter::default()).expect("count"), 1012);
    let stats = h.stats(&Filter::default(), Bucket::Hour, 0).expect("stats");
    let of = |by: Dimension, key: &str| -> u64 {
        stats
            .iter()
            .filter(|r| r.by == by && r.key == key)
            .map(|r| r.count)
            .sum()
    };
    assert_eq!(of(Dimension::Type, "file_open"), 1012);
    assert_eq!(of(Dimension::Label, "Benign"), 1010);
    assert_eq!(of(Dimension::Rule, "hot_file"), 2);
    let timeline = h.timeline(&Filter::default(), 60, 0).expect("timeline");
    let total: u64 = timeline
        .iter()
        .map(|r| r.by_severity.iter().sum::<u64>())
        .sum();
    assert_eq!(total, 1012);
    assert_eq!(
        timeline.iter().map(|r| r.by_severity[1]).sum::<u64>(),
        2,
        "{timeline:?}"
    );
}

/// A small deterministic generator (xorshift) for the summary's tests.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Three hours of a mix for comparing the summary with the rows: several types, labels and
/// rules (one row naming a rule twice, rows with two), a suspicious severity with no risk,
/// events exactly on minute boundaries, and runs of identical events that the history's tap
/// coalesces into one row with a count. The rows as the tap makes them.
fn summary_mix() -> Rows {
    let start = base() - Span::hours(3);
    let mut rng = Rng(0x5eed_cafe);
    let mut c = Coalescer::new();
    let mut at = start;
    for i in 0..3000u32 {
        at += if i % 97 == 0 {
            // Onto the next whole minute.
            let ns = to_ns(at);
            Span::nanoseconds(60_000_000_000 - ns.rem_euclid(60_000_000_000))
        } else {
            Span::nanoseconds(1 + rng.below(7_000_000_000) as i64)
        };
        let pid = 2000 + rng.below(20) as u32;
        let (kind, process) = match rng.below(4) {
            0 => (EventType::FileOpen, "cat"),
            1 => (EventType::ProcessExec, "bash"),
            2 => (EventType::NetConnect, "curl"),
            _ => (EventType::FileWrite, "python3"),
        };
        let mut e = event(kind, at, pid, process);
        e.file_path = Some(format!("/srv/f{}", rng.below(50)));
        let e = match rng.below(40) {
            0 => flagged(e, "Credential File Read", 0.7, &["shadow_file_read"]),
            1 => flagged(e, "Shell Network Connection", 0.9, &["shell_net", "egress"]),
            2 => flagged(e, "Twice", 0.65, &["dup", "dup"]),
            3 => flagged(e, "Low Signal", 0.3, &["weak"]),
            4 => {
                // Suspicious with no risk: benign on the timeline, as the rows say.
                let mut e = flagged(e, "Odd", 0.0, &[]);
                e.analysis.process_risk = 0.0;
                e
            }
            _ => e,
        };
        let repeats = if i % 50 == 0 { 1 + rng.below(300) } else { 0 };
        c.push(&e);
        for r in 0..repeats {
            let mut again = e.clone();
            again.timestamp = e.timestamp + Span::microseconds(r as i64 + 1);
            c.push(&again);
        }
    }
    c.close_all();
    c.take()
}

/// Writes [`summary_mix`] to a new history at `path`; returns how many events it holds.
fn write_summary_mix(path: &Path) -> u64 {
    write_summary_mix_with(path, true)
}

/// [`write_summary_mix`], with `plain_in_blocks` as given.
fn write_summary_mix_with(path: &Path, plain_in_blocks: bool) -> u64 {
    let rows = summary_mix();
    let events = rows.events();
    assert!(rows.len() < events as usize, "some rows are coalesced");
    let options = WriterOptions {
        plain_in_blocks,
        ..WriterOptions::default()
    };
    let store = Store::open(path, options).expect("open store");
    assert!(store.submit_rows(rows));
    let summary = store.close();
    assert_eq!(
        (summary.stored, summary.dropped, summary.failed),
        (events, 0, 0)
    );
    events
}

/// The summary table, in key order.
fn summary_table(conn: &Connection) -> Vec<(i64, i64, String, i64)> {
    conn.prepare("SELECT minute, kind, key, count FROM summary ORDER BY minute, kind, key")
        .expect("prepare")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

/// Events counted by the summary per kind: each kind counts every event once, except rules.
fn summary_totals(conn: &Connection) -> Vec<(i64, i64)> {
    conn.prepare("SELECT kind, sum(count) FROM summary GROUP BY kind ORDER BY kind")
        .expect("prepare")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

/// Time zones east of UTC: whole hours either way, and half and three-quarter ones.
const OFFSETS: [i32; 5] = [0, 13 * 3600, -5 * 3600, -(9 * 3600 + 1800), 5 * 3600 + 2700];

/// `--stats` and the timeline of `filter` as the summary answers them equal a full read of the
/// rows, in every zone and bucket width.
fn assert_summary_answers_as_the_rows(h: &History, filter: &Filter) {
    let conn = h.connection();
    for offset in OFFSETS {
        for bucket in [Bucket::Hour, Bucket::Day] {
            let summarised = h.stats(filter, bucket, offset).expect("stats");
            let scanned =
                query::stats_from_rows(conn, filter, bucket, offset).expect("stats from rows");
            assert!(!scanned.is_empty() || filter.since.is_some());
            assert_eq!(summarised, scanned, "{filter:?} per {bucket:?} at {offset}");
        }
        for width in [60, 600, 3600, 86_400] {
            let summarised = h.timeline(filter, width, offset).expect("timeline");
            let scanned = query::tests_support::timeline_from_rows(conn, filter, width, offset);
            assert_eq!(summarised, scanned, "{filter:?} per {width} s at {offset}");
        }
    }
}

/// Ranges: everything, whole minutes, ragged edges to the nanosecond, one side open, and a
/// range inside a single minute.
fn summary_ranges() -> Vec<Filter> {
    let start = base() - Span::hours(3);
    let ragged =
        |minutes: i64, ns: i64| Some(start + Span::minutes(minutes) + Span::nanoseconds(ns));
    let range = |since, until| Filter {
        since,
        until,
        ..Filter::default()
    };
    vec![
        Filter::default(),
        range(ragged(17, 123_456_789), ragged(133, 987)),
        range(ragged(20, 0), ragged(140, 0)),
        range(ragged(61, 1), None),
        range(None, ragged(99, 59_999_999_999)),
        range(ragged(45, 5_000_000_000), ragged(45, 40_000_000_000)),
        // Limits do not apply to statistics.
        Filter {
            limit: Some(3),
            ..range(ragged(30, 7), ragged(150, 7))
        },
    ]
}

#[test]
fn the_summary_answers_stats_and_timelines_as_the_rows_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.db");
    let events = write_summary_mix(&path);
    let h = History::open(&path).expect("open");
    let conn = h.connection();
    let totals = summary_totals(conn);
    let rules: i64 = conn
        .query_row(
            "SELECT sum(e.count) FROM events e, json_each(e.rules) j",
            [],
            |r| r.get(0),
        )
        .expect("rules");
    let all = i64::try_from(events).expect("events");
    assert_eq!(totals, vec![(0, all), (1, all), (2, rules), (3, all)]);
    for filter in summary_ranges() {
        assert_summary_answers_as_the_rows(&h, &filter);
    }
    // A filter the summary cannot answer is counted from the rows.
    let risky = Filter {
        min_risk: Some(0.6),
        since: summary_ranges()[1].since,
        ..Filter::default()
    };
    assert_summary_answers_as_the_rows(&h, &risky);
}

#[test]
fn split_counts_whole_minutes_from_the_summary_and_reads_the_edges() {
    let minute = |m: i64| Some(from_ns(m * summary::MINUTE_NS));
    let at = |ns: i64| Some(from_ns(ns));
    let m = 29_000_000; // a minute of 2025
    let ragged = Filter {
        since: at(m * summary::MINUTE_NS + 1),
        until: at((m + 10) * summary::MINUTE_NS - 1),
        ..Filter::default()
    };
    let split = query::tests_support::split(&ragged, 3600, 0).expect("time only");
    assert_eq!(split.0, Some((m + 1, m + 9)));
    assert_eq!(
        split.1,
        vec![
            Filter {
                until: minute(m + 1),
                ..ragged.clone()
            },
            Filter {
                since: minute(m + 9),
                ..ragged.clone()
            },
        ]
    );
    // Aligned: no edges.
    let aligned = Filter {
        since: minute(m),
        until: minute(m + 10),
        ..Filter::default()
    };
    let split = query::tests_support::split(&aligned, 86_400, -3600).expect("time only");
    assert_eq!(split, (Some((m, m + 10)), Vec::new()));
    // Within a minute: the rows alone.
    let inside = Filter {
        since: at(m * summary::MINUTE_NS + 5),
        until: at(m * summary::MINUTE_NS + 50),
        ..Filter::default()
    };
    let split = query::tests_support::split(&inside, 3600, 0).expect("time only");
    assert_eq!(split, (None, vec![inside.clone()]));
    // Not by time alone, or buckets not made of whole minutes: no summary.
    let typed = Filter {
        types: vec![EventType::FileOpen],
        ..aligned.clone()
    };
    assert!(query::tests_support::split(&typed, 3600, 0).is_none());
    assert!(query::tests_support::split(&aligned, 90, 0).is_none());
    assert!(query::tests_support::split(&aligned, 3600, 37).is_none());
}

#[test]
fn retention_prunes_the_summary_with_the_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.db");
    let events = write_summary_mix(&path);
    let mut conn = open_connection(&path, true).expect("open");
    // A cutoff 70 minutes and a bit into the three hours: a minute split by it keeps its newer
    // events and their counts.
    let cutoff = base() - Span::hours(3) + Span::minutes(70) + Span::nanoseconds(31_415_926_535);
    let retention = Retention {
        max_age: Some(Span::days(1)),
        max_bytes: None,
    };
    let step = retention::step(&mut conn, &retention, cutoff + Span::days(1), false).expect("step");
    assert!(step.deleted_by_age > 0 && !step.more, "{step:?}");
    let stored = all_stored(&conn);
    let left: i64 = stored.iter().map(|e| e.count as i64).sum();
    assert!(left < i64::try_from(events).expect("events"));
    assert_eq!(summary_totals(&conn)[0], (0, left));
    let oldest_minute: i64 = conn
        .query_row("SELECT min(minute) FROM summary", [], |r| r.get(0))
        .expect("oldest");
    let oldest_event = stored
        .iter()
        .map(|e| to_ns(e.event.timestamp))
        .min()
        .expect("some left");
    assert!(oldest_event >= to_ns(cutoff));
    assert_eq!(oldest_minute, summary::minute_of(oldest_event));
    let empty: i64 = conn
        .query_row("SELECT count(*) FROM summary WHERE count <= 0", [], |r| {
            r.get(0)
        })
        .expect("empty");
    assert_eq!(empty, 0);
    drop(conn);
    let h = History::open(&path).expect("open");
    for filter in summary_ranges() {
        assert_summary_answers_as_the_rows(&h, &filter);
    }
}

#[test]
fn a_version_4_database_migrates_with_its_summary_filled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.db");
    write_summary_mix_with(&path, false);
    let kept = {
        let conn = open_connection(&path, true).expect("open");
        let kept = summary_table(&conn);
        // Version 4 is version 6 without the summary and the blocks.
        conn.execute_batch(
            "DROP TABLE summary; DROP TABLE blocks; UPDATE schema_version SET version = 4;",
        )
        .expect("back to version 4");
        kept
    };
    assert!(kept.len() > 1000, "{}", kept.len());
    let h = History::open(&path).expect("open");
    assert_eq!(
        schema::version(h.connection()).expect("version"),
        SCHEMA_VERSION
    );
    // Filled from the rows, it is what the writer kept while inserting them.
    assert_eq!(summary_table(h.connection()), kept);
    for filter in summary_ranges() {
        assert_summary_answers_as_the_rows(&h, &filter);
    }
}

#[test]
fn filling_the_summary_reports_its_progress() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.db");
    write_summary_mix_with(&path, false);
    let conn = open_connection(&path, true).expect("open");
    let kept = summary_table(&conn);
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .expect("rows");
    let rows = u64::try_from(rows).expect("rows");
    conn.execute_batch("DELETE FROM summary").expect("empty");
    let mut reports = Vec::new();
    summary::fill(&conn, 500, |done, total| reports.push((done, total))).expect("fill");
    let expected: Vec<(u64, u64)> = (1..=rows / 500).map(|i| (i * 500, rows)).collect();
    assert_eq!(reports, expected);
    assert_eq!(summary_table(&conn), kept);
}

/// Events for comparing blocks with rows: ~12,000 rows (three blocks' worth and more, written in
/// several transactions), out of time order by up to two seconds, many at equal times, several
/// types, pids, names, paths in a few directories, addresses, flagged events among them, and
/// coalesced runs.
fn blocks_mix() -> Vec<Rows> {
    let start = base() - Span::hours(2);
    let mut rng = Rng(0xb10c_5eed);
    let mut c = Coalescer::new();
    let mut batches = Vec::new();
    for i in 0..12_000u32 {
        // Whole seconds: most events share their time with others, so ties are ordered by id.
        let jitter = rng.below(4) as i64 * 1_000 - 2_000;
        let at = start + Span::milliseconds(i64::from(i / 2) * 500 + jitter);
        let pid = 3000 + rng.below(30) as u32;
        let process = ["cat", "bash", "curl", "python3", "Cat"][rng.below(5) as usize];
        let kind = [
            EventType::FileOpen,
            EventType::FileWrite,
            EventType::NetConnect,
            EventType::FileRename,
            EventType::ProcessExec,
        ][rng.below(5) as usize];
        let mut e = event(kind, at, pid, process);
        let dir = ["/srv/a/", "/srv/b/", "/tmp/", "/etc/"][rng.below(4) as usize];
        e.file_path = Some(format!("{dir}f{}", rng.below(40)));
        if kind == EventType::FileRename {
            e.new_path = Some(format!("/var/log/r{}", rng.below(20)));
        }
        if kind == EventType::NetConnect {
            e.source_ip = Some("10.0.0.2".parse().expect("an address"));
            let target = ["127.0.0.1", "203.0.113.9", "::1"][rng.below(3) as usize];
            e.target_ip = Some(target.parse().expect("an address"));
            e.target_port = Some(80);
        }
        let e = match rng.below(25) {
            0 => flagged(e, "Credential File Read", 0.7, &["shadow_file_read"]),
            1 => flagged(e, "Low Signal", 0.3, &["weak"]),
            _ => e,
        };
        c.push(&e);
        if i % 500 == 0 {
            for r in 0..1 + rng.below(50) {
                let mut again = e.clone();
                again.timestamp = e.timestamp + Span::microseconds(r as i64 + 1);
                c.push(&again);
            }
        }
        if i % 2_500 == 2_499 {
            c.close_all();
            batches.push(c.take());
        }
    }
    c.close_all();
    batches.push(c.take());
    batches
}

fn write_blocks_mix(path: &Path, batches: &[Rows], plain_in_blocks: bool) {
    let options = WriterOptions {
        plain_in_blocks,
        ..WriterOptions::default()
    };
    let store = Store::open(path, options).expect("open store");
    for rows in batches.iter().cloned() {
        assert!(store.submit_rows(rows));
        store.flush();
    }
    let summary = store.close();
    assert_eq!((summary.dropped, summary.failed), (0, 0));
}

/// `got == want`, or a panic naming the first difference (the lists are long).
fn assert_same_events(got: &[HistoryEvent], want: &[HistoryEvent], what: &str) {
    let key = |e: &HistoryEvent| (e.id, to_ns(e.event.timestamp));
    let got_keys: Vec<_> = got.iter().map(key).collect();
    let want_keys: Vec<_> = want.iter().map(key).collect();
    if got_keys != want_keys {
        let at = got_keys
            .iter()
            .zip(&want_keys)
            .position(|(g, w)| g != w)
            .unwrap_or(got_keys.len().min(want_keys.len()));
        let near =
            |keys: &[(i64, i64)]| keys[at.saturating_sub(2)..(at + 3).min(keys.len())].to_vec();
        panic!(
            "{what}: {} events, {} wanted; first difference at {at}: {:?} against {:?}",
            got.len(),
            want.len(),
            near(&got_keys),
            near(&want_keys)
        );
    }
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g, w, "{what}");
    }
}

/// Filters of every kind and combination, drawn from `rng`.
fn some_filter(rng: &mut Rng, around: DateTime<Utc>) -> Filter {
    let mut f = Filter::default();
    let minutes = |rng: &mut Rng| Span::seconds(rng.below(7_200) as i64 - 3_600);
    if rng.below(2) == 0 {
        f.since = Some(around + minutes(rng));
    }
    if rng.below(3) == 0 {
        f.until = Some(around + minutes(rng));
    }
    if rng.below(4) == 0 {
        f.types =
            vec![EventType::FileOpen, EventType::NetConnect][..1 + rng.below(2) as usize].to_vec();
    }
    f.process = match rng.below(8) {
        0 => Some(TextMatch::parse("cat")),
        1 => Some(TextMatch::parse("c*t")),
        2 => Some(TextMatch::Prefix("py".into())),
        _ => None,
    };
    if rng.below(6) == 0 {
        f.pid = Some(3000 + rng.below(32) as u32);
    }
    f.path = match rng.below(8) {
        0 => Some(TextMatch::parse_path(&format!("/srv/a/f{}", rng.below(40)))),
        1 => Some(TextMatch::parse_path("/srv/")),
        2 => Some(TextMatch::parse_path("/tmp/*7")),
        3 => Some(TextMatch::parse_path("/var/log/")),
        4 => Some(TextMatch::parse_path("/nowhere/")),
        _ => None,
    };
    f.ip = match rng.below(10) {
        0 => Some("203.0.113.9".into()),
        1 => Some("::1".into()),
        _ => None,
    };
    f.min_risk = match rng.below(8) {
        0 => Some(0.0),
        1 => Some(0.5),
        _ => None,
    };
    f.label = match rng.below(10) {
        0 => Some(TextMatch::parse("benign")),
        1 => Some(TextMatch::parse("Low Signal")),
        2 => Some(TextMatch::parse("*i*")),
        _ => None,
    };
    if rng.below(12) == 0 {
        f.rule = Some("weak".into());
    }
    f.limit = [None, Some(0), Some(1), Some(7), Some(100), Some(5_000)]
        .get(rng.below(8) as usize)
        .copied()
        .flatten();
    f
}

#[test]
fn blocks_answer_every_query_as_rows_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (in_blocks, as_rows) = (dir.path().join("blocks.db"), dir.path().join("rows.db"));
    // The same rows for both (the coalescer's order of closing runs is not fixed).
    let batches = blocks_mix();
    write_blocks_mix(&in_blocks, &batches, true);
    write_blocks_mix(&as_rows, &batches, false);
    let blocks = History::open(&in_blocks).expect("open");
    let rows = History::open(&as_rows).expect("open");
    let count = |h: &History, table: &str| -> i64 {
        h.connection()
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .expect("count")
    };
    // The test is only worth something if the plain events are in several blocks.
    assert!(
        count(&blocks, "blocks") >= 3,
        "{}",
        count(&blocks, "blocks")
    );
    assert!(count(&blocks, "events") < count(&rows, "events") / 10);
    assert_eq!(count(&rows, "blocks"), 0);

    let around = base() - Span::hours(1);
    let mut rng = Rng(0x0dd_ba11);
    let mut compared = 0;
    for i in 0..400 {
        let mut filter = some_filter(&mut rng, around);
        let want = rows.query(&filter).expect("rows");
        let got = blocks.query(&filter).expect("blocks");
        assert_same_events(&got, &want, &format!("filter {i}: {filter:?}"));
        compared += want.len();
        // Paging on from the oldest of a page gives the same next page.
        if let Some(oldest) = want.first() {
            filter.before = Some(oldest.cursor());
            assert_same_events(
                &blocks.query(&filter).expect("blocks"),
                &rows.query(&filter).expect("rows"),
                &format!("filter {i} paged: {filter:?}"),
            );
        }
        assert_eq!(
            blocks.count(&filter).expect("blocks"),
            rows.count(&filter).expect("rows"),
            "count {i}: {filter:?}"
        );
        if i % 4 == 0 {
            for bucket in [Bucket::Hour, Bucket::Day] {
                assert_eq!(
                    blocks.stats(&filter, bucket, 3600).expect("blocks"),
                    rows.stats(&filter, bucket, 3600).expect("rows"),
                    "stats {i}: {filter:?}"
                );
            }
            assert_eq!(
                blocks.timeline(&filter, 300, 0).expect("blocks"),
                rows.timeline(&filter, 300, 0).expect("rows"),
                "timeline {i}: {filter:?}"
            );
        }
    }
    assert!(
        compared > 50_000,
        "the filters matched too little: {compared}"
    );
}

#[test]
fn small_batches_are_gathered_into_one_transaction_and_block() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.db");
    let store = Store::open(
        &path,
        WriterOptions {
            // Far longer than the test: nothing is written until the flush.
            gather_for: Duration::from_secs(600),
            ..WriterOptions::default()
        },
    )
    .expect("open");
    for i in 0..5u32 {
        let at = base() + Span::seconds(i64::from(i));
        assert!(store.submit(vec![event(EventType::FileOpen, at, 1100 + i, "cat")]));
    }
    // Time for the writer to take them (it would write each at once without gathering).
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        store.stats().commits.load(Ordering::Relaxed),
        0,
        "written before the flush"
    );
    store.flush();
    assert_eq!(store.stats().commits.load(Ordering::Relaxed), 1);
    assert_eq!(store.close().stored, 5);
    let h = History::open(&path).expect("open");
    let blocks: i64 = h
        .connection()
        .query_row("SELECT count(*) FROM blocks", [], |r| r.get(0))
        .expect("count");
    assert_eq!(blocks, 1, "one block for the five batches");
    assert_eq!(
        pids(&h.query(&Filter::default()).expect("query")),
        [100, 101, 102, 103, 104]
    );
}
