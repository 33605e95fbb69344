//! Userspace cost per event: decode, enrich and JSON-serialise hand-built kernel records.
//!
//! `cargo bench -p monitor --bench pipeline` (also run by `cargo xtask bench`). Throughput is
//! reported in events (elements) per second. The kernel side and the ring buffer are measured by
//! `cargo xtask bench` itself; this isolates what one record costs once it is in userspace.
//!
//! Records are built the way the eBPF programs fill them and decoded from their bytes, exactly as
//! the ring-buffer reader does. The process table is seeded from a small fake `/proc` (a shell
//! and its parents), so enrichment finds parents, ancestry, users and the cwd without touching
//! the real system, and every iteration sees the same state.
//!
//! Benchmarks (1000 records per iteration):
//! - `decode/mix`: bytes → typed records only.
//! - `pipeline/mix`: decode + enrich + JSON for a realistic mix (shell sessions: fork, exec,
//!   library and data file opens, a relative open, a write, a TCP connect and close, exit).
//! - `pipeline/file_open`: decode + enrich + JSON for a stream of opens from one process, the
//!   record stream of the `open/close` loop and of the throughput test of `cargo xtask bench`.
//!
//! - `json/write_event`: JSON only, the mix's enriched events written as `--json` writes them;
//!   `json/serde_json`: the same with serde_json's derived serialiser, which it replaced.
//! - `json/output_batches`: the `--json` output (`JsonOutput`) taking reader-sized batches of
//!   those events (4000), its writer thread writing them to nowhere.
//!
//! Enrichment as the number of live processes grows (issue 19), decode + enrich without JSON,
//! [`CURVE_RECORDS`] records per iteration:
//! - `enrich/procs_1000`, `enrich/procs_30000`: a fake `/proc` of 1,000 or 30,000 processes
//!   (a tree under sshd, up to 6 deep, of a dozen programs and five users) and a stream whose
//!   records come from processes drawn at random among all of them: absolute, relative and
//!   created-file opens, TCP connects and closes, re-execs, and short-lived children (fork,
//!   an open, exit). How long seeding the table from that `/proc` took is printed.
//!
//! The rule engine (the analysis stage) is measured on its own, in `benches/rules.rs`.
// A benchmark whose set-up fails should stop with its message; the workspace's unwrap/expect
// denial is for the monitor itself.
#![allow(clippy::unwrap_used, clippy::expect_used)]

/// The binary's allocator (src/main.rs), so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use monitor_common::{
    AT_FDCWD, COMM_LEN, EventHeader, ExecEvent, ExitEvent, FileEvent, ForkEvent, NetEvent, kind,
    ops,
};
use secmon::decode::{Record, as_bytes, decode, zeroed};
use secmon::enrich::{Enricher, UserNames};
use secmon::event::{Event, EventType};
use secmon::losses::Losses;
use secmon::output::event_json::write_event;
use secmon::output::json::{JsonLines, JsonOutput, OutputOptions};

/// Records per benchmark iteration.
const RECORDS: usize = 1000;
/// Records per shell session in the mix.
const SESSION_RECORDS: usize = 10;
const SHELL_PID: u32 = 2000;
/// First pid of the children the shell forks.
const CHILD_PID: u32 = 3000;
const UID: u32 = 1000;
/// A process known from the fake /proc that does nothing but open files.
const OPENER_PID: u32 = 2100;
/// Records per iteration of the `enrich/procs_*` benchmarks.
const CURVE_RECORDS: usize = 10_000;
/// First pid of the generated processes of the `enrich/procs_*` benchmarks.
const FIRST_PID: u32 = 10_000;
/// First pid of the short-lived children in their stream.
const CHILD_BASE: u32 = 100_000;
const PROGRAMS: [&str; 12] = [
    "bash",
    "python3",
    "nginx",
    "postgres",
    "node",
    "java",
    "sshd",
    "cron",
    "gcc",
    "make",
    "git",
    "redis-server",
];

fn copy_str(dest: &mut [u8], text: &str) {
    let n = text.len().min(dest.len() - 1);
    dest[..n].copy_from_slice(&text.as_bytes()[..n]);
    dest[n] = 0;
}

fn header(kind: u32, pid: u32, comm: &str, timestamp_ns: u64) -> EventHeader {
    let mut h: EventHeader = zeroed();
    h.kind = kind;
    h.timestamp_ns = timestamp_ns;
    h.pid = pid;
    h.tid = pid;
    h.uid = UID;
    h.gid = UID;
    h.cgroup_id = 4242;
    let mut c = [0u8; COMM_LEN];
    copy_str(&mut c, comm);
    h.comm = c;
    h
}

fn fork(parent: u32, child: u32, ts: u64) -> Vec<u8> {
    let mut e: ForkEvent = zeroed();
    e.header = header(kind::PROCESS_FORK, parent, "bash", ts);
    e.data.parent_pid = parent;
    e.data.child_pid = child;
    as_bytes(&e).to_vec()
}

fn exec(pid: u32, path: &str, argv: &[&str], ts: u64) -> Vec<u8> {
    let mut e: Box<ExecEvent> = Box::new(zeroed());
    let comm = path.rsplit('/').next().unwrap_or(path);
    e.header = header(kind::PROCESS_EXEC, pid, comm, ts);
    e.data.old_pid = pid;
    copy_str(&mut e.data.filename, path);
    e.data.argv.argc = argv.len() as u32;
    for (slot, arg) in e.data.argv.args.iter_mut().zip(argv) {
        copy_str(slot, arg);
    }
    as_bytes(&*e).to_vec()
}

fn open(pid: u32, comm: &str, path: &str, flags: i32, ts: u64) -> Vec<u8> {
    let mut e: Box<FileEvent> = Box::new(zeroed());
    e.header = header(kind::FILE_OPEN, pid, comm, ts);
    e.data.op = ops::OPENAT;
    e.data.dirfd = AT_FDCWD;
    e.data.flags = flags as u64;
    e.data.mode = if flags & libc::O_CREAT != 0 { 0o644 } else { 0 };
    e.data.ret = 3;
    copy_str(&mut e.data.path, path);
    as_bytes(&*e).to_vec()
}

fn tcp(kind: u32, pid: u32, comm: &str, sport: u16, ts: u64) -> Vec<u8> {
    let mut e: NetEvent = zeroed();
    e.header = header(kind, pid, comm, ts);
    e.data.family = 2;
    e.data.protocol = 6;
    e.data.src_port = sport;
    e.data.dst_port = 443;
    e.data.src_addr[..4].copy_from_slice(&[10, 0, 0, 5]);
    e.data.dst_addr[..4].copy_from_slice(&[93, 184, 216, 34]);
    e.data.fd = 3;
    if kind == monitor_common::kind::NET_CLOSE {
        e.data.bytes_sent = 517;
        e.data.bytes_received = 4096;
        e.data.duration_ns = 35_000_000;
    }
    as_bytes(&e).to_vec()
}

fn exit(pid: u32, comm: &str, ts: u64) -> Vec<u8> {
    let mut e: ExitEvent = zeroed();
    e.header = header(kind::PROCESS_EXIT, pid, comm, ts);
    e.data.exited = 1;
    as_bytes(&e).to_vec()
}

/// 100 shell sessions of 10 records: what a busy interactive or CI host produces.
fn mix() -> Vec<Vec<u8>> {
    let mut records = Vec::with_capacity(RECORDS);
    let mut ts = 1_000_000_000u64;
    let mut tick = || {
        ts += 1_000;
        ts
    };
    for session in 0..(RECORDS / SESSION_RECORDS) as u32 {
        let child = CHILD_PID + session;
        records.push(fork(SHELL_PID, child, tick()));
        records.push(exec(
            child,
            "/usr/bin/grep",
            &["grep", "-r", "--include=*.conf", "listen", "/etc/nginx"],
            tick(),
        ));
        records.push(open(
            child,
            "grep",
            "/etc/ld.so.cache",
            libc::O_RDONLY | libc::O_CLOEXEC,
            tick(),
        ));
        records.push(open(
            child,
            "grep",
            "/lib/x86_64-linux-gnu/libc.so.6",
            libc::O_RDONLY | libc::O_CLOEXEC,
            tick(),
        ));
        records.push(open(
            child,
            "grep",
            "/etc/nginx/sites-enabled/default.conf",
            libc::O_RDONLY | libc::O_NOFOLLOW,
            tick(),
        ));
        records.push(open(
            child,
            "grep",
            "notes/../todo.txt",
            libc::O_RDONLY,
            tick(),
        ));
        records.push(open(
            child,
            "grep",
            "/tmp/grep-out.txt",
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
            tick(),
        ));
        records.push(tcp(
            kind::NET_CONNECT,
            child,
            "grep",
            40000 + session as u16,
            tick(),
        ));
        records.push(tcp(
            kind::NET_CLOSE,
            child,
            "grep",
            40000 + session as u16,
            tick(),
        ));
        records.push(exit(child, "grep", tick()));
    }
    assert_eq!(records.len(), RECORDS);
    records
}

/// The open/close loop's stream: one process opening the same file.
fn opens() -> Vec<Vec<u8>> {
    (0..RECORDS as u64)
        .map(|i| {
            open(
                OPENER_PID,
                "xtask",
                "/tmp/secmon-bench-2100/file",
                libc::O_RDONLY | libc::O_CLOEXEC,
                1_000_000_000 + i * 1_000,
            )
        })
        .collect()
}

/// One process of a fake /proc: `stat`, `comm`, `status`, `cmdline`, and the `exe` and `cwd`
/// links.
#[allow(clippy::too_many_arguments)]
fn write_proc(
    root: &Path,
    pid: u32,
    comm: &str,
    ppid: u32,
    uid: u32,
    exe: &str,
    cwd: &str,
    cmdline: &str,
) {
    let dir = root.join(pid.to_string());
    std::fs::create_dir_all(&dir).expect("proc dir");
    let stat = format!(
        "{pid} ({comm}) S {ppid} {pid} {pid} 0 -1 4194560 1234 0 0 0 5 3 0 0 20 0 1 0 \
         {start} 12345678 890 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n",
        start = 100 + pid
    );
    std::fs::write(dir.join("stat"), stat).expect("stat");
    std::fs::write(dir.join("comm"), format!("{comm}\n")).expect("comm");
    std::fs::write(
        dir.join("status"),
        format!("Name:\t{comm}\nPPid:\t{ppid}\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n"),
    )
    .expect("status");
    std::fs::write(dir.join("cmdline"), cmdline).expect("cmdline");
    std::os::unix::fs::symlink(exe, dir.join("exe")).expect("exe");
    std::os::unix::fs::symlink(cwd, dir.join("cwd")).expect("cwd");
}

/// A fake /proc: init → sshd → bash (the shell), and an opener under init.
fn fake_proc(root: &Path) {
    let procs: [(u32, &str, u32, &str, &str, &str); 4] = [
        (
            1,
            "systemd",
            0,
            "/usr/lib/systemd/systemd",
            "/",
            "/sbin/init\0",
        ),
        (
            900,
            "sshd",
            1,
            "/usr/sbin/sshd",
            "/",
            "sshd: alice [priv]\0",
        ),
        (
            SHELL_PID,
            "bash",
            900,
            "/usr/bin/bash",
            "/home/alice",
            "-bash\0",
        ),
        (
            OPENER_PID,
            "xtask",
            1,
            "/work/target/release/xtask",
            "/work",
            "xtask\0bench\0",
        ),
    ];
    for (pid, comm, ppid, exe, cwd, cmdline) in procs {
        let uid = if pid == SHELL_PID || pid == OPENER_PID {
            UID
        } else {
            0
        };
        write_proc(root, pid, comm, ppid, uid, exe, cwd, cmdline);
    }
}

/// Generated process `i` of the `enrich/procs_*` benchmarks: (pid, parent, program, uid). The
/// first 64 are children of sshd (900), each later one a child of an earlier one (eight
/// children each), so the tree is up to 6 deep at 30,000.
fn generated_proc(i: u32) -> (u32, u32, &'static str, u32) {
    let parent = if i < 64 { 900 } else { FIRST_PID + i / 8 - 8 };
    let uid = if i.is_multiple_of(3) { 0 } else { 1000 + i % 4 };
    (
        FIRST_PID + i,
        parent,
        PROGRAMS[i as usize % PROGRAMS.len()],
        uid,
    )
}

/// The small fake /proc's init and sshd, and `n` generated processes.
fn fake_proc_n(root: &Path, n: u32) {
    write_proc(
        root,
        1,
        "systemd",
        0,
        0,
        "/usr/lib/systemd/systemd",
        "/",
        "/sbin/init\0",
    );
    write_proc(
        root,
        900,
        "sshd",
        1,
        0,
        "/usr/sbin/sshd",
        "/",
        "sshd: alice [priv]\0",
    );
    for i in 0..n {
        let (pid, ppid, comm, uid) = generated_proc(i);
        let cmdline = format!("{comm}\0--worker\0{i}\0--config\0/etc/{comm}/{comm}.conf\0");
        let cwd = format!("/srv/app{}", i % 50);
        write_proc(
            root,
            pid,
            comm,
            ppid,
            uid,
            &format!("/usr/bin/{comm}"),
            &cwd,
            &cmdline,
        );
    }
}

/// The `enrich/procs_*` stream: [`CURVE_RECORDS`] records from processes drawn at random among
/// the `n` generated ones.
fn curve_stream(n: u32) -> Vec<Vec<u8>> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut records = Vec::with_capacity(CURVE_RECORDS);
    let mut ts = 1_000_000_000u64;
    let mut child = CHILD_BASE;
    while records.len() < CURVE_RECORDS {
        ts += 1_000;
        let i = (next() % u64::from(n)) as u32;
        let (pid, _, comm, _) = generated_proc(i);
        let k = records.len();
        match next() % 100 {
            0..60 => records.push(open(
                pid,
                comm,
                &format!("/srv/app{}/data/{}.dat", i % 50, k % 100),
                libc::O_RDONLY | libc::O_CLOEXEC,
                ts,
            )),
            60..68 => records.push(open(pid, comm, "notes/../todo.txt", libc::O_RDONLY, ts)),
            68..76 => records.push(open(
                pid,
                comm,
                &format!("/tmp/{comm}-{pid}.log"),
                libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND,
                ts,
            )),
            76..84 => records.push(tcp(
                kind::NET_CONNECT,
                pid,
                comm,
                40_000 + (k % 20_000) as u16,
                ts,
            )),
            84..88 => records.push(tcp(
                kind::NET_CLOSE,
                pid,
                comm,
                40_000 + (k % 20_000) as u16,
                ts,
            )),
            88..92 => records.push(exec(
                pid,
                &format!("/usr/bin/{comm}"),
                &[comm, "--worker", &i.to_string()],
                ts,
            )),
            _ => {
                // A short-lived child: fork, one open, exit.
                child += 1;
                records.push(fork(pid, child, ts));
                records.push(open(
                    child,
                    comm,
                    "/etc/ld.so.cache",
                    libc::O_RDONLY,
                    ts + 100,
                ));
                records.push(exit(child, comm, ts + 200));
            }
        }
    }
    records.truncate(CURVE_RECORDS);
    records
}

struct Fixture {
    _dir: tempfile::TempDir,
    enricher: Enricher,
    /// How long seeding the process table from the fake /proc took.
    seed_secs: f64,
}

/// An enricher over a fake /proc made by `make` (in a temporary directory), with five users.
fn fixture_with(make: impl FnOnce(&Path)) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let proc_root = dir.path().join("proc");
    make(&proc_root);
    let passwd = dir.path().join("passwd");
    std::fs::write(
        &passwd,
        "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000:Alice:/home/alice:/bin/bash\n\
         bob:x:1001:1001::/home/bob:/bin/bash\nwww-data:x:1002:1002::/var/www:/usr/sbin/nologin\n\
         postgres:x:1003:1003::/var/lib/postgresql:/bin/bash\n",
    )
    .expect("passwd");
    let began = Instant::now();
    let enricher = Enricher::with_proc_root(&proc_root, UserNames::from_path(passwd));
    Fixture {
        _dir: dir,
        enricher,
        seed_secs: began.elapsed().as_secs_f64(),
    }
}

fn fixture() -> Fixture {
    fixture_with(fake_proc)
}

/// What the pipeline does per batch: decode each record, enrich it, write it as a JSON line;
/// each event built in one slot reused from record to record, as `pipeline::Stages` does.
fn run_batch(
    records: &[Vec<u8>],
    enricher: &mut Enricher,
    sink: &mut JsonLines<std::io::Sink>,
) -> u64 {
    let mut written = 0;
    let mut slot = Event::new(EventType::ProcessExec, chrono::DateTime::UNIX_EPOCH);
    for bytes in records {
        let record = decode(bytes).expect("decodes");
        if enricher.process_into(&record, &mut slot) {
            sink.write(&slot).expect("write");
            written += 1;
        }
    }
    sink.flush().expect("flush");
    written
}

fn benches(c: &mut Criterion) {
    let mix = mix();
    let opens = opens();

    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(RECORDS as u64));
    group.bench_function("mix", |b| {
        b.iter(|| {
            for bytes in &mix {
                let record: Record = decode(black_box(bytes)).expect("decodes");
                black_box(&record);
            }
        })
    });
    group.finish();

    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Elements(RECORDS as u64));
    for (name, records) in [("mix", &mix), ("file_open", &opens)] {
        let mut fx = fixture();
        let mut sink = JsonLines::new(std::io::sink());
        // Every record of both streams becomes an event (no chdir records).
        assert_eq!(
            run_batch(records, &mut fx.enricher, &mut sink),
            RECORDS as u64
        );
        group.bench_function(name, |b| {
            b.iter(|| run_batch(black_box(records), &mut fx.enricher, &mut sink))
        });
    }
    group.finish();

    let mut fx = fixture();
    let events: Vec<Event> = mix
        .iter()
        .filter_map(|bytes| fx.enricher.process(&decode(bytes).expect("decodes")))
        .collect();
    let mut out = Vec::with_capacity(1 << 20);
    let mut group = c.benchmark_group("json");
    group.throughput(Throughput::Elements(events.len() as u64));
    group.bench_function("write_event", |b| {
        b.iter(|| {
            out.clear();
            for event in black_box(&events) {
                write_event(&mut out, event);
                out.push(b'\n');
            }
            out.len()
        })
    });
    group.bench_function("serde_json", |b| {
        b.iter(|| {
            out.clear();
            for event in black_box(&events) {
                serde_json::to_writer(&mut out, event).expect("serialises");
                out.push(b'\n');
            }
            out.len()
        })
    });

    let mut output = JsonOutput::start(
        std::io::sink(),
        OutputOptions::default(),
        std::sync::Arc::new(Losses::new()),
    )
    .expect("output");
    const COPIES: usize = 4;
    group.throughput(Throughput::Elements((COPIES * events.len()) as u64));
    group.bench_function("output_batches", |b| {
        b.iter(|| {
            for _ in 0..COPIES {
                for event in black_box(&events) {
                    output.write(event).expect("write");
                }
            }
            output.end_batch();
        })
    });
    group.finish();

    let mut group = c.benchmark_group("enrich");
    group.throughput(Throughput::Elements(CURVE_RECORDS as u64));
    group.sample_size(30);
    for n in [1_000u32, 30_000] {
        let mut fx = fixture_with(|root| fake_proc_n(root, n));
        eprintln!(
            "enrich/procs_{n}: process table seeded from the fake /proc in {:.2} s ({} processes)",
            fx.seed_secs,
            fx.enricher.processes().len()
        );
        let records = curve_stream(n);
        let enrich = |records: &[Vec<u8>], enricher: &mut Enricher| {
            let mut events = 0u64;
            for bytes in records {
                let record = decode(bytes).expect("decodes");
                events += u64::from(black_box(enricher.process(&record)).is_some());
            }
            events
        };
        assert_eq!(enrich(&records, &mut fx.enricher), CURVE_RECORDS as u64);
        assert!(fx.enricher.processes().len() >= n as usize);
        group.bench_function(format!("procs_{n}"), |b| {
            b.iter(|| enrich(black_box(&records), &mut fx.enricher))
        });
    }
    group.finish();
}

criterion_group!(pipeline, benches);
criterion_main!(pipeline);
