//! The event history (SQLite): sustained insert rate through the real writer, and the
//! `history --last 24h --min-risk 0.6` query over a large database.
//!
//! `cargo bench -p monitor --bench storage` (also run by `cargo xtask bench`).
//!
//! - `storage/insert`: events handed to [`Store::submit`] in batches of 1000 (as the pipeline
//!   does), timed until the writer has committed them all ([`Store::flush`]), into a database
//!   already holding [`PREFILL`] events (`SECMON_BENCH_PREFILL` overrides), with every index.
//!   Throughput in events/s.
//! - `storage/insert_flood`: the stream of a loop opening one file (one thread, identical
//!   events 3 µs apart) through the pipeline's side ([`Coalescer`]: identical consecutive
//!   events become one row with a count) and the real writer, timed until committed, into the
//!   same database. Throughput in events/s (most of them are counted, not inserted).
//! - `storage/query_last24h_min_risk`: `--last 24h --min-risk 0.6 --limit 1000` over a
//!   database of `SECMON_BENCH_EVENTS` events (default 1,000,000) spread over 7 days, 2 % of
//!   them scored ≥ 0.6. The database is generated once (through the same writer; the time it
//!   took is printed) and kept in `target/bench-history/` for later runs.
// A benchmark whose set-up fails should stop with its message; the workspace's unwrap/expect
// denial is for the monitor itself.
#![allow(clippy::unwrap_used, clippy::expect_used)]

/// The binary's allocator (src/main.rs), so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use secmon::event::{Analysis, Event, EventType, Severity};
use secmon::storage::{Coalescer, Filter, History, Store, WriterOptions};

/// Events per timed insert iteration.
const INSERT_BATCH: usize = 100_000;
/// Events in the database before the insert rate is measured.
const PREFILL: usize = 1_000_000;
/// Events per `submit`, as the pipeline's batches.
const SUBMIT: usize = 1000;

/// A small deterministic generator (xorshift), so every run builds the same data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const PROCESSES: [&str; 12] = [
    "bash", "python3", "nginx", "postgres", "sshd", "cron", "systemd", "node", "curl", "cat",
    "gcc", "java",
];

/// `SECMON_BENCH_UNIFORM=1`: the worst case, file paths uniformly random over 10 million and
/// pids over 4000, instead of the realistic mix.
fn uniform() -> bool {
    std::env::var_os("SECMON_BENCH_UNIFORM").is_some()
}

/// One event `i` of a stream starting at `start`, `step_ns` apart. Realistic mix (measured
/// streams repeat paths heavily: a few hundred library, locale and configuration files make
/// most opens): 70 % of file events open one of 2000 "hot" paths, skewed towards the first
/// ones, 30 % one of a million others; about 50 processes are active at a time, new ones
/// replacing old ones as the stream goes on; 2 % of events score 0.6 or more.
fn make_event(rng: &mut Rng, i: u64, start: DateTime<Utc>, step_ns: i64) -> Event {
    let at = start + chrono::Duration::nanoseconds(i as i64 * step_ns);
    let roll = rng.below(100);
    let event_type = match roll {
        0..=59 => EventType::FileOpen,
        60..=67 => EventType::FileWrite,
        68..=75 => EventType::ProcessExec,
        76..=81 => EventType::ProcessFork,
        82..=87 => EventType::ProcessExit,
        88..=95 => EventType::NetConnect,
        96..=97 => EventType::NetClose,
        _ => EventType::FileDelete,
    };
    let p = rng.below(PROCESSES.len() as u64) as usize;
    let process = PROCESSES[p];
    let mut e = Event::new(event_type, at);
    e.pid = if uniform() {
        1000 + rng.below(4000) as u32
    } else {
        1000 + (i / 2000 + rng.below(50)) as u32
    };
    e.tid = e.pid;
    e.ppid = 1;
    e.uid = if p < 4 { 0 } else { 1000 };
    e.user = if e.uid == 0 { "root" } else { "alice" }.to_string();
    e.process = process.to_string();
    e.exe = format!("/usr/bin/{process}");
    e.cmdline = format!("{process} --job {}", e.pid);
    e.cgroup_id = 1;
    e.parent_process = "systemd".to_string();
    e.ancestors = vec!["systemd".to_string()];
    match event_type {
        EventType::FileOpen | EventType::FileWrite | EventType::FileDelete => {
            e.file_path = Some(if uniform() {
                format!(
                    "/srv/data/{}/file-{}.dat",
                    rng.below(100),
                    rng.below(100_000)
                )
            } else if rng.below(100) < 70 {
                let u = rng.below(1000) as f64 / 1000.0;
                format!(
                    "/usr/lib/x86_64-linux-gnu/lib{}.so",
                    (u * u * 2000.0) as u64
                )
            } else {
                format!(
                    "/srv/data/{}/file-{}.dat",
                    rng.below(100),
                    rng.below(10_000)
                )
            });
            e.flags = Some("O_RDONLY|O_CLOEXEC".to_string());
            e.syscall = Some("openat".to_string());
        }
        EventType::ProcessExec => {
            e.argv = Some(e.cmdline.split(' ').map(str::to_string).collect());
        }
        EventType::ProcessExit => e.exit_code = Some(0),
        EventType::NetConnect | EventType::NetClose => {
            e.protocol = Some("tcp".to_string());
            e.source_ip = Some("10.0.0.5".parse().expect("an address"));
            e.source_port = Some(30000 + rng.below(30000) as u16);
            e.target_ip = Some([192, 0, 2, rng.below(250) as u8].into());
            e.target_port = Some(443);
        }
        _ => {}
    }
    if rng.below(100) < 2 {
        e.analysis = Analysis {
            label: "Shell Network Connection".to_string(),
            severity: Severity::Suspicious,
            risk_score: 0.6 + (rng.below(40) as f64) / 100.0,
            detection_method: "rule_based".to_string(),
            confidence: 1.0,
            recommendation: "Check the connection.".to_string(),
            rules: vec!["shell_network_connection".to_string()],
            process_risk: 0.0,
        };
    } else if rng.below(100) < 5 {
        e.analysis.risk_score = 0.3;
        e.analysis.label = "Low Signal".to_string();
        e.analysis.rules = vec!["weak".to_string()];
    }
    e
}

/// Submits `n` events (from `first`) in pipeline-sized batches and waits for the commit.
fn insert(store: &Store, rng: &mut Rng, first: u64, n: usize, start: DateTime<Utc>, step: i64) {
    let mut i = first;
    let end = first + n as u64;
    while i < end {
        let count = SUBMIT.min((end - i) as usize);
        let batch: Vec<Event> = (0..count as u64)
            .map(|k| make_event(rng, i + k, start, step))
            .collect();
        i += count as u64;
        // The queue is far larger than what is in flight here; wait rather than drop.
        while !store.submit(batch.clone()) {
            store.flush();
        }
    }
    store.flush();
}

/// CPU time (user + system) the history writer thread (`secmon-history`) has used so far: unlike
/// wall time, it hardly depends on what else the machine runs.
fn writer_cpu() -> Option<Duration> {
    for entry in std::fs::read_dir("/proc/self/task").ok()? {
        let dir = entry.ok()?.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim() != "secmon-history" {
            continue;
        }
        let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
        // After the command name: state, ppid, … utime and stime are the 12th and 13th.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let ticks: u64 =
            fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        // USER_HZ: 100 on Linux.
        return Some(Duration::from_millis(ticks * 10));
    }
    None
}

/// The open/close loop's stream: one thread opening one file, 3 µs apart.
struct Flood {
    event: Event,
    start: DateTime<Utc>,
    next: i64,
    coalescer: Coalescer,
    rows: usize,
}

impl Flood {
    fn new(start: DateTime<Utc>) -> Flood {
        let mut e = Event::new(EventType::FileOpen, start);
        e.pid = 4242;
        e.tid = 4242;
        e.ppid = 1;
        e.uid = 1000;
        e.user = "alice".into();
        e.process = "python3".into();
        e.exe = "/usr/bin/python3.12".into();
        e.cmdline = "python3 loop.py".into();
        e.cgroup_id = 1;
        e.parent_process = "bash".into();
        e.ancestors = vec!["bash".into(), "sshd".into()];
        e.file_path = Some("/tmp/secmon-bench/hot".to_string());
        e.flags = Some("O_RDONLY|O_CLOEXEC".to_string());
        e.syscall = Some("openat".to_string());
        Flood {
            event: e,
            start,
            next: 0,
            coalescer: Coalescer::new(),
            rows: 0,
        }
    }

    /// `n` more events of the loop, handed over in pipeline-sized batches as the tap does, then
    /// every row closed and committed.
    fn run(&mut self, store: &Store, n: usize) {
        for k in 0..n {
            self.event.timestamp = self.start + chrono::Duration::nanoseconds(self.next * 3000);
            self.next += 1;
            self.coalescer.push(&self.event);
            if (k + 1) % SUBMIT == 0 {
                self.submit(store);
            }
        }
        self.coalescer.close_all();
        self.submit(store);
        store.flush();
    }

    fn submit(&mut self, store: &Store) {
        self.coalescer.expire(Instant::now());
        let rows = self.coalescer.take();
        if rows.is_empty() {
            return;
        }
        self.rows += rows.len();
        // The queue is far larger than what is in flight here.
        assert!(store.submit_rows(rows));
    }
}

fn bench_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-history")
}

fn insert_rate(c: &mut Criterion) {
    let dir = tempfile::tempdir_in(std::env::temp_dir()).expect("tempdir");
    let path = dir.path().join("events.db");
    let store = Store::open(&path, WriterOptions::default()).expect("open");
    let mut rng = Rng(0x5eed);
    let start = Utc::now() - chrono::Duration::hours(1);
    let step = 1_000; // 1 µs apart
    let prefill = std::env::var("SECMON_BENCH_PREFILL")
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(PREFILL);
    insert(&store, &mut rng, 0, prefill, start, step);
    let mut next = prefill as u64;
    let cpu_before = writer_cpu();
    let mut group = c.benchmark_group("storage");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(INSERT_BATCH as u64));
    group.bench_function("insert", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let began = Instant::now();
                insert(&store, &mut rng, next, INSERT_BATCH, start, step);
                total += began.elapsed();
                next += INSERT_BATCH as u64;
            }
            total
        });
    });
    if let (Some(before), Some(after)) = (cpu_before, writer_cpu()) {
        let events = next - prefill as u64;
        eprintln!(
            "storage: insert: writer CPU {:.2} µs per event ({events} events)",
            (after - before).as_secs_f64() * 1e6 / events.max(1) as f64
        );
    }
    let mut flood = Flood::new(Utc::now() - chrono::Duration::minutes(30));
    let commits_before = store
        .stats()
        .commits
        .load(std::sync::atomic::Ordering::Relaxed);
    let mut flooded = 0u64;
    group.bench_function("insert_flood", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let began = Instant::now();
                flood.run(&store, INSERT_BATCH);
                total += began.elapsed();
                flooded += INSERT_BATCH as u64;
            }
            total
        });
    });
    eprintln!(
        "storage: insert_flood: {flooded} events in {} rows, {} commits",
        flood.rows,
        store
            .stats()
            .commits
            .load(std::sync::atomic::Ordering::Relaxed)
            - commits_before
    );
    group.finish();
    // (Batches refused while the queue was full were resubmitted, not lost.)
    assert_eq!(store.close().failed, 0);
}

/// The large database for the query benchmark: built once, reused.
fn large_db(events: usize) -> PathBuf {
    let dir = bench_dir();
    let path = dir.join(format!("events-{events}.db"));
    if path.exists() {
        return path;
    }
    let building = dir.join(format!("events-{events}.db.building"));
    let _ = std::fs::remove_file(&building);
    let store = Store::open(&building, WriterOptions::default()).expect("open");
    let mut rng = Rng(0xbeef);
    let span_ns: i64 = 7 * 86_400 * 1_000_000_000;
    let step = span_ns / events as i64;
    let start = Utc::now() - chrono::Duration::nanoseconds(span_ns);
    let began = Instant::now();
    insert(&store, &mut rng, 0, events, start, step);
    let summary = store.close();
    let took = began.elapsed();
    assert_eq!(summary.failed, 0);
    eprintln!(
        "storage: generated {events} events in {:.1} s ({:.0} events/s) into {}",
        took.as_secs_f64(),
        events as f64 / took.as_secs_f64(),
        path.display()
    );
    for suffix in ["", "-wal", "-shm"] {
        let from = PathBuf::from(format!("{}{suffix}", building.display()));
        let to = PathBuf::from(format!("{}{suffix}", path.display()));
        if from.exists() {
            std::fs::rename(&from, &to).expect("rename");
        }
    }
    path
}

fn query_last_day(c: &mut Criterion) {
    let events: usize = std::env::var("SECMON_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(1_000_000);
    let path = large_db(events);
    let history = History::open(&path).expect("open");
    // "Now" is when the database was generated (it may be reused days later).
    let newest = history
        .query(&Filter {
            limit: Some(1),
            ..Filter::default()
        })
        .expect("newest")
        .first()
        .map_or_else(Utc::now, |e| e.event.timestamp);
    let filter = Filter {
        since: Some(newest - chrono::Duration::hours(24)),
        min_risk: Some(0.6),
        limit: Some(1000),
        ..Filter::default()
    };
    let found = history.query(&filter).expect("query");
    eprintln!(
        "storage: query over {events} events returns {} events",
        found.len()
    );
    let mut group = c.benchmark_group("storage");
    group.sample_size(20);
    group.bench_function("query_last24h_min_risk", |b| {
        b.iter(|| black_box(history.query(black_box(&filter)).expect("query")));
    });
    group.finish();
}

criterion_group!(benches, insert_rate, query_last_day);
criterion_main!(benches);
