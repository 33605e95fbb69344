//! The event history (SQLite): sustained insert rate through the real writer, and query time as
//! the history grows.
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
//! - `storage/query_last24h_min_risk`: `--last 24h --min-risk 0.6` (and its default `--limit
//!   1000`) over the history curve's database of `SECMON_BENCH_EVENTS` events (default
//!   1,000,000), with criterion's statistics.
//! - The history curve (issue 19): `history/last24h_min_risk/<size>` and
//!   `history/stats_day/<size>` — `secmon-tui history --last 24h --min-risk 0.6` and
//!   `secmon-tui history --stats day` (the filters the command line builds,
//!   [`history_cli::query_filter`]) over databases of 1M and 10M events; 100M too with
//!   `SECMON_BENCH_HISTORY_SCALE=100m` (`cargo xtask bench --history-scale 100m`), `1m` for
//!   the first size only. Target: the query under 200 ms at 10M. These are timed here rather
//!   than by criterion, which runs everything at least ten times (`--stats` over 10M events
//!   took ~20 s a run with schema 3): one untimed run (warming the page cache), then runs until
//!   five and one second, at most ten seconds (one run for queries over 5 s). Each is printed
//!   in criterion's format, `[fastest median slowest]`, for `cargo xtask bench` to collect.
//!   Criterion's name filter applies to them too.
//!
//! The history curve's databases are generated once through the writer ([`Store`]) and kept in
//! `target/bench-data/history-v<schema>-<events>.db` (the time it took is printed); a new
//! schema version builds new ones and deletes the old. Events are the realistic mix of
//! [`make_event`] spread evenly over 48 hours ending when the database was built: mostly benign,
//! 2 % scored 0.6 or more; "now" for `--last 24h` is the newest event.
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
use secmon::history_cli;
use secmon::storage::{Bucket, Coalescer, Filter, History, SCHEMA_VERSION, Store, WriterOptions};

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
    e.user = if e.uid == 0 { "root" } else { "alice" }.into();
    e.process = process.into();
    e.exe = format!("/usr/bin/{process}").into();
    e.cmdline = format!("{process} --job {}", e.pid).into();
    e.cgroup_id = 1;
    e.parent_process = "systemd".into();
    e.ancestors = vec!["systemd".into()];
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
            e.flags = Some("O_RDONLY|O_CLOEXEC".into());
            e.syscall = Some("openat".into());
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
        e.flags = Some("O_RDONLY|O_CLOEXEC".into());
        e.syscall = Some("openat".into());
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

/// Where the history curve's databases are kept between runs.
fn bench_data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-data")
}

/// Hours of events in a curve database.
const CURVE_HOURS: i64 = 48;

fn insert_rate(c: &mut Criterion) {
    if !selected("storage/insert") {
        return;
    }
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
    match History::open(&path) {
        Err(e) => eprintln!("storage: insert: {e}"),
        Ok(history) => {
            let sizes: rusqlite::Result<(i64, i64)> = history.connection().query_row(
                "SELECT coalesce(sum(length(data)), 0), coalesce(sum(events), 0) FROM blocks",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            );
            match sizes {
                Ok((bytes, events)) => eprintln!(
                    "storage: insert: {:.1} bytes per event in blocks ({events} plain events)",
                    bytes as f64 / events.max(1) as f64
                ),
                Err(e) => eprintln!("storage: insert: {e}"),
            }
        }
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

/// The history curve's database of `events` events: built once, reused while the schema
/// version stays the same.
fn curve_db(events: usize) -> PathBuf {
    let dir = bench_data_dir();
    std::fs::create_dir_all(&dir).expect("bench-data directory");
    let name = format!("history-v{SCHEMA_VERSION}-{events}.db");
    let path = dir.join(&name);
    if path.exists() {
        return path;
    }
    // Databases of other schema versions: gigabytes each at 10M events.
    let suffix = format!("-{events}.db");
    for entry in std::fs::read_dir(&dir)
        .expect("bench-data directory")
        .flatten()
    {
        let old = entry.file_name().to_string_lossy().into_owned();
        let base = old.trim_end_matches("-wal").trim_end_matches("-shm");
        if base.starts_with("history-v") && base.ends_with(&suffix) && base != name {
            eprintln!("history: removing {old} (another schema version)");
            let _ = std::fs::remove_file(entry.path());
        }
    }
    let building = dir.join(format!("{name}.building"));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", building.display()));
    }
    eprintln!(
        "history: building {} with {events} events over {CURVE_HOURS} h (once; kept for later runs)",
        path.display()
    );
    let store = Store::open(&building, WriterOptions::default()).expect("open");
    let mut rng = Rng(0xc0ffee + events as u64);
    let span_ns: i64 = CURVE_HOURS * 3600 * 1_000_000_000;
    let step = span_ns / events as i64;
    let start = Utc::now() - chrono::Duration::nanoseconds(span_ns);
    let began = Instant::now();
    insert(&store, &mut rng, 0, events, start, step);
    let summary = store.close();
    let took = began.elapsed();
    assert_eq!(summary.failed, 0);
    assert_eq!(summary.stored, events as u64);
    let mut bytes = 0;
    for suffix in ["", "-wal", "-shm"] {
        let from = PathBuf::from(format!("{}{suffix}", building.display()));
        let to = PathBuf::from(format!("{}{suffix}", path.display()));
        if from.exists() {
            bytes += std::fs::metadata(&from).map_or(0, |m| m.len());
            std::fs::rename(&from, &to).expect("rename");
        }
    }
    eprintln!(
        "history: built {events} events in {:.1} s ({:.0} events/s), {:.2} GiB",
        took.as_secs_f64(),
        events as f64 / took.as_secs_f64(),
        bytes as f64 / f64::from(1u32 << 30)
    );
    path
}

/// The time of the newest event: "now" for `--last` (a database may be reused days later).
fn newest(history: &History) -> DateTime<Utc> {
    history
        .query(&Filter {
            limit: Some(1),
            ..Filter::default()
        })
        .expect("newest")
        .first()
        .map_or_else(Utc::now, |e| e.event.timestamp)
}

/// The filter `secmon-tui history QUERY` builds at `now`.
fn cli_filter(query: &str, now: DateTime<Utc>) -> Filter {
    history_cli::query_filter(query, now).expect("a valid query")
}

fn query_last_day(c: &mut Criterion) {
    if !selected("storage/query_last24h_min_risk") {
        return;
    }
    let events: usize = std::env::var("SECMON_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(1_000_000);
    let path = curve_db(events);
    let history = History::open(&path).expect("open");
    let filter = cli_filter("--last 24h --min-risk 0.6", newest(&history));
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

/// The history curve's sizes: every size up to `SECMON_BENCH_HISTORY_SCALE` (`1m`, `10m`, the
/// default, or `100m`).
fn curve_sizes() -> Vec<(usize, &'static str)> {
    let all = [
        (1_000_000, "1M"),
        (10_000_000, "10M"),
        (100_000_000, "100M"),
    ];
    let scale = std::env::var("SECMON_BENCH_HISTORY_SCALE").unwrap_or_else(|_| "10m".into());
    let upto = match scale.trim().to_ascii_lowercase().as_str() {
        "1m" => 1,
        "10m" | "" => 2,
        "100m" => 3,
        other => panic!("SECMON_BENCH_HISTORY_SCALE: expected 1m, 10m or 100m, found {other:?}"),
    };
    all[..upto].to_vec()
}

/// Criterion's options that take a value (so the value is not the name filter).
const VALUED_OPTIONS: &[&str] = &[
    "--warm-up-time",
    "--measurement-time",
    "--sample-size",
    "--nresamples",
    "--noise-threshold",
    "--confidence-level",
    "--significance-level",
    "--save-baseline",
    "--baseline",
    "--baseline-lenient",
    "--load-baseline",
    "--profile-time",
    "--output-format",
    "--color",
    "--plotting-backend",
    "--format",
    "--logfile",
];

/// Whether criterion's command line selects the benchmark `id` (its name filter, a regex, as
/// criterion applies it), and this is a measuring run (not `--list` or `--test`).
fn selected(id: &str) -> bool {
    let mut args = std::env::args().skip(1);
    let mut filter = None;
    while let Some(arg) = args.next() {
        if arg == "--list" || arg == "--test" {
            return false;
        }
        if VALUED_OPTIONS.contains(&arg.as_str()) {
            args.next();
        } else if !arg.starts_with('-') && filter.is_none() {
            filter = Some(arg);
        }
    }
    filter.is_none_or(|f| regex::Regex::new(&f).is_ok_and(|re| re.is_match(id)))
}

/// A duration as criterion prints it (`12.345 ms`).
fn criterion_time(d: Duration) -> String {
    let ns = d.as_secs_f64() * 1e9;
    let (value, unit) = if ns < 1e3 {
        (ns, "ns")
    } else if ns < 1e6 {
        (ns / 1e3, "µs")
    } else if ns < 1e9 {
        (ns / 1e6, "ms")
    } else {
        (ns / 1e9, "s")
    };
    let decimals = if value >= 100.0 {
        2
    } else if value >= 10.0 {
        3
    } else {
        4
    };
    format!("{value:.decimals$} {unit}")
}

/// Times `run` (see the module documentation) and prints the result as criterion would.
fn time_query(id: &str, mut run: impl FnMut() -> usize) {
    let began = Instant::now();
    let rows = run();
    let first = began.elapsed();
    let mut times = Vec::new();
    let budget = Instant::now();
    loop {
        let t = Instant::now();
        black_box(run());
        times.push(t.elapsed());
        let spent = budget.elapsed();
        let enough = (times.len() >= 5 && spent >= Duration::from_secs(1))
            || first >= Duration::from_secs(5)
            || spent >= Duration::from_secs(10);
        if enough {
            break;
        }
    }
    times.sort();
    eprintln!(
        "{id}: {rows} rows; {} timed runs after an untimed one of {}",
        times.len(),
        criterion_time(first)
    );
    // A name too long for criterion's column gets a line of its own, as criterion does it.
    let name = if id.len() < 24 {
        format!("{id:<24}")
    } else {
        format!("{id}\n{:24}", "")
    };
    println!(
        "{name}time:   [{} {} {}]",
        criterion_time(times[0]),
        criterion_time(times[times.len() / 2]),
        criterion_time(times[times.len() - 1])
    );
}

fn history_curve(_: &mut Criterion) {
    for (events, label) in curve_sizes() {
        let query = format!("history/last24h_min_risk/{label}");
        let stats = format!("history/stats_day/{label}");
        if !selected(&query) && !selected(&stats) {
            continue;
        }
        let history = History::open(&curve_db(events)).expect("open");
        let now = newest(&history);
        if selected(&query) {
            let filter = cli_filter("--last 24h --min-risk 0.6", now);
            time_query(&query, || history.query(&filter).expect("query").len());
        }
        if selected(&stats) {
            // `--stats day` without a range: the whole history, in days of UTC.
            let filter = cli_filter("", now);
            time_query(&stats, || {
                history.stats(&filter, Bucket::Day, 0).expect("stats").len()
            });
        }
    }
}

criterion_group!(benches, insert_rate, query_last_day, history_curve);
criterion_main!(benches);
