//! Rule engine cost per event: the shipped pack (`rules/` of the source tree) over a realistic
//! event mix.
//!
//! `cargo bench -p monitor --bench rules` (also run by `cargo xtask bench`). Throughput is in
//! events (elements) per second on one core; the target is at least 2,000,000 events/s/core
//! for `rules/mix` (docs/benchmarks.md).
//!
//! Benchmarks (1000 events per iteration, analysed in place as the pipeline does):
//! - `rules/mix`: what a busy host produces — opens dominate (70 %), then writes (10 %),
//!   process exec/fork/exit (10 %), TCP connects and closes (8 %), deletes and renames (2 %) —
//!   from shells, compilers, git, Python, a web server and system daemons, with a few events
//!   that match rules (reads of /etc/shadow, a dropped file run from /tmp, a connection to a
//!   miner port).
//! - `rules/file_open`: opens only (the hottest path: most rules are not indexed under it).
//! - `rules/file_write`, `rules/process_exec`: the events of that type from the mix, repeated
//!   (the types most rules are indexed under: persistence and execution rules).
//! - `rules/no_rules`: the same mix with no rules loaded (the analysis stage's floor).
//! - `rules/generated_500`, `rules/generated_5000`: the mix through the shipped pack plus 500
//!   or 5,000 generated rules (issue 19: how the cost grows with the rule count; target at
//!   5,000: at least 1,000,000 events/s/core). The generated rules look like what sites
//!   write on top of a pack (see [`generated_rule`]): every event type the pack covers, tests
//!   of equality, `in` lists (inline and the pack's), prefixes, suffixes, substrings, regexes,
//!   ancestors, ports and networks, with the pack's macros. Each names its own tool, path or
//!   port, a tenth of them a process of the mix, so some are candidates for mix events without
//!   matching them, as most rules are for most events.
//! - `rules/load_pack`: parsing, validating and compiling the whole pack (a reload's cost).
//! - `rules/load_generated_5000`: the same for the pack and 5,000 generated rules.
// A benchmark whose set-up fails should stop with its message; the workspace's unwrap/expect
// denial is for the monitor itself.
#![allow(clippy::unwrap_used, clippy::expect_used)]
/// The binary's allocator (src/main.rs), so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use chrono::{DateTime, TimeDelta};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use secmon::config::ThreatDetection;
use secmon::event::{Event, EventType, SharedStr};
use secmon::rules::Evaluator;
use secmon::rules::{RuleEngine, RuleSet, SOURCE_RULES_DIR, SourceFile};

const EVENTS: usize = 1000;

struct Proc {
    pid: u32,
    ppid: u32,
    comm: &'static str,
    exe: &'static str,
    cmdline: &'static str,
    user: &'static str,
    uid: u32,
    ancestors: &'static [&'static str],
}

const PROCS: &[Proc] = &[
    Proc {
        pid: 2000,
        ppid: 1990,
        comm: "bash",
        exe: "/usr/bin/bash",
        cmdline: "-bash",
        user: "alice",
        uid: 1000,
        ancestors: &["sshd", "sshd", "systemd"],
    },
    Proc {
        pid: 2101,
        ppid: 2100,
        comm: "cc1",
        exe: "/usr/libexec/gcc/x86_64-linux-gnu/13/cc1",
        cmdline: "/usr/libexec/gcc/x86_64-linux-gnu/13/cc1 -quiet main.c -o /tmp/ccX1.s",
        user: "alice",
        uid: 1000,
        ancestors: &["gcc", "make", "bash", "sshd", "systemd"],
    },
    Proc {
        pid: 2200,
        ppid: 2000,
        comm: "git",
        exe: "/usr/bin/git",
        cmdline: "git status",
        user: "alice",
        uid: 1000,
        ancestors: &["bash", "sshd", "sshd", "systemd"],
    },
    Proc {
        pid: 2300,
        ppid: 2000,
        comm: "python3",
        exe: "/usr/bin/python3.12",
        cmdline: "python3 manage.py runserver",
        user: "alice",
        uid: 1000,
        ancestors: &["bash", "sshd", "sshd", "systemd"],
    },
    Proc {
        pid: 800,
        ppid: 1,
        comm: "nginx",
        exe: "/usr/sbin/nginx",
        cmdline: "nginx: worker process",
        user: "www-data",
        uid: 33,
        ancestors: &["nginx", "systemd"],
    },
    Proc {
        pid: 400,
        ppid: 1,
        comm: "systemd-journal",
        exe: "/usr/lib/systemd/systemd-journald",
        cmdline: "/usr/lib/systemd/systemd-journald",
        user: "root",
        uid: 0,
        ancestors: &["systemd"],
    },
];

const READS: &[&str] = &[
    "/etc/ld.so.cache",
    "/usr/lib/x86_64-linux-gnu/libc.so.6",
    "/usr/lib/x86_64-linux-gnu/libpcre2-8.so.0",
    "/proc/self/status",
    "/home/alice/project/src/main.c",
    "/home/alice/project/.git/HEAD",
    "/home/alice/project/.git/objects/pack/pack-1a2b.idx",
    "/usr/share/locale/locale.alias",
    "/etc/nsswitch.conf",
    "/etc/passwd",
    "/usr/lib/python3.12/os.py",
    "/var/www/html/index.html",
    "/sys/fs/cgroup/system.slice/memory.max",
    "/dev/null",
];

const WRITES: &[&str] = &[
    "/tmp/ccX1.s",
    "/home/alice/project/build/main.o",
    "/home/alice/project/.git/index.lock",
    "/var/log/nginx/access.log",
    "/var/log/journal/abc/system.journal",
    "/home/alice/.bash_history",
];

/// A small deterministic generator (no dependency, same mix every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() as usize) % items.len()]
    }
}

/// A process's context texts, made once per process: the enricher gives every event of a
/// process the process table's shared texts (`SharedStr`), and the rule engine keeps its
/// verdicts on a process by them.
struct Context {
    pid: u32,
    user: SharedStr,
    process: SharedStr,
    exe: SharedStr,
    cmdline: SharedStr,
    ancestors: Vec<SharedStr>,
}

fn context(p: &Proc) -> &'static Context {
    static CONTEXTS: OnceLock<Vec<Context>> = OnceLock::new();
    let contexts = CONTEXTS.get_or_init(|| {
        PROCS
            .iter()
            .map(|p| Context {
                pid: p.pid,
                user: p.user.into(),
                process: p.comm.into(),
                exe: p.exe.into(),
                cmdline: p.cmdline.into(),
                ancestors: p.ancestors.iter().map(|&a| a.into()).collect(),
            })
            .collect()
    });
    contexts
        .iter()
        .find(|c| c.pid == p.pid)
        .expect("every process of PROCS has a context")
}

fn base(t: EventType, p: &Proc, n: usize) -> Event {
    let mut e = Event::new(
        t,
        DateTime::UNIX_EPOCH + TimeDelta::milliseconds(1_700_000_000_000 + n as i64),
    );
    let c = context(p);
    e.pid = p.pid;
    e.tid = p.pid;
    e.ppid = p.ppid;
    e.uid = p.uid;
    e.user = c.user.clone();
    e.process = c.process.clone();
    e.exe = c.exe.clone();
    e.cmdline = c.cmdline.clone();
    e.parent_process = c.ancestors[0].clone();
    e.ancestors = c.ancestors.clone();
    e
}

fn file(t: EventType, p: &Proc, n: usize, path: &str, flags: &str) -> Event {
    let mut e = base(t, p, n);
    e.file_path = Some(path.to_string());
    e.flags = Some(flags.into());
    e.syscall = Some("openat".into());
    e
}

fn mix(only_opens: bool) -> Vec<Event> {
    let mut rng = Lcg(42);
    let mut out = Vec::with_capacity(EVENTS);
    for n in 0..EVENTS {
        let p = rng.pick(PROCS);
        let roll = if only_opens { 0 } else { rng.next() % 100 };
        let e = match roll {
            0..70 => {
                // Now and then something a rule should flag.
                let path = if n % 250 == 7 {
                    "/etc/shadow"
                } else {
                    *rng.pick(READS)
                };
                file(EventType::FileOpen, p, n, path, "O_RDONLY|O_CLOEXEC")
            }
            70..80 => {
                let path = *rng.pick(WRITES);
                let mut e = file(EventType::FileWrite, p, n, path, "O_WRONLY|O_CREAT|O_TRUNC");
                e.mode = Some(0o644);
                e
            }
            80..84 => {
                let mut e = base(EventType::ProcessExec, p, n);
                // An exec gives the process new texts.
                e.process = p.comm.into();
                e.exe = p.exe.into();
                e.cmdline = p.cmdline.into();
                if n % 100 == 3 {
                    e.exe = "/tmp/xmrig".into();
                    e.process = "xmrig".into();
                    e.argv = Some(vec!["/tmp/xmrig".to_string(), "-o".to_string()]);
                } else {
                    e.argv = Some(e.cmdline.split(' ').map(str::to_string).collect());
                }
                e
            }
            84..87 => {
                let mut e = base(EventType::ProcessFork, p, n);
                e.ppid = e.pid;
                e.pid = 10_000 + n as u32;
                e
            }
            87..90 => {
                let mut e = base(EventType::ProcessExit, p, n);
                e.pid = 10_000 + n as u32 - 3;
                e.exit_code = Some(0);
                e
            }
            90..95 => {
                let mut e = base(EventType::NetConnect, p, n);
                e.protocol = Some("tcp".to_string());
                e.source_ip = Some("10.0.0.5".parse().expect("an address"));
                e.source_port = Some(40_000 + (n % 20_000) as u16);
                let (ip, port) = match n % 97 {
                    0 => ("198.51.100.7", 3333),
                    1..40 => ("127.0.0.1", 5432),
                    _ => ("140.82.121.4", 443),
                };
                e.target_ip = Some(ip.parse().expect("an address"));
                e.target_port = Some(port);
                e
            }
            95..98 => {
                let mut e = base(EventType::NetClose, p, n);
                e.protocol = Some("tcp".to_string());
                e.target_ip = Some("140.82.121.4".parse().expect("an address"));
                e.target_port = Some(443);
                e.bytes_sent = Some(1024);
                e.bytes_received = Some(65_536);
                e
            }
            98 => file(
                EventType::FileDelete,
                p,
                n,
                "/home/alice/project/build/main.o",
                "",
            ),
            _ => {
                let mut e = file(
                    EventType::FileRename,
                    p,
                    n,
                    "/home/alice/project/.git/index.lock",
                    "",
                );
                e.new_path = Some("/home/alice/project/.git/index".to_string());
                e
            }
        };
        out.push(e);
    }
    out
}

/// The events of one type from a long mix, `EVENTS` of them.
fn only(t: EventType) -> Vec<Event> {
    let mut out = Vec::with_capacity(EVENTS);
    let pool: Vec<Event> = (0..40)
        .flat_map(|round| {
            let mut events = mix(false);
            for (i, e) in events.iter_mut().enumerate() {
                e.timestamp += TimeDelta::seconds(round);
                if e.event_type == EventType::ProcessExec && i % 7 == round as usize % 7 {
                    e.cmdline = format!("{} --round {round}", e.cmdline).into();
                }
            }
            events
        })
        .filter(|e| e.event_type == t)
        .collect();
    for e in pool.iter().cycle().take(EVENTS) {
        out.push(e.clone());
    }
    out
}

fn pack_dirs() -> Vec<PathBuf> {
    vec![PathBuf::from(SOURCE_RULES_DIR)]
}

fn analyzer() -> Evaluator {
    let engine = match RuleEngine::load(pack_dirs()) {
        Ok(engine) => engine,
        Err(e) => panic!("the shipped rule pack must load:\n{e}"),
    };
    Evaluator::for_config(engine, &ThreatDetection::default())
}

/// The pack's files (every `*.json` under `rules/`, sorted), read into memory.
fn pack_files() -> Vec<SourceFile> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("the rule pack") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "json") {
                out.push(path);
            }
        }
    }
    let mut paths = Vec::new();
    walk(Path::new(SOURCE_RULES_DIR), &mut paths);
    paths.sort();
    paths
        .into_iter()
        .map(|path| SourceFile {
            text: std::fs::read_to_string(&path).expect("a rule file"),
            path,
        })
        .collect()
}

/// Processes of the mix, named by a tenth of the generated rules.
const MIX_NAMES: &[&str] = &["bash", "gcc", "git", "python3", "nginx", "cc1"];

/// Generated rule `i`'s condition: one of 16 shapes, each with its own names, paths and ports.
fn generated_condition(i: usize) -> String {
    let name = if i.is_multiple_of(10) {
        MIX_NAMES[(i / 10) % MIX_NAMES.len()].to_string()
    } else {
        format!("tool{i}")
    };
    match i % 16 {
        0 => format!(
            "event.type == 'process_exec' && process.name == '{name}' && !package_management"
        ),
        1 => format!(
            "event.type == 'process_exec' && process.name in ['{name}', '{name}-cli', '{name}d'] && process.args in ['--exec', '-e', '--upload']"
        ),
        2 => format!(
            "event.type == 'process_exec' && process.path.endswith('/bin/{name}') && process.user != 'root'"
        ),
        3 => format!("event.type == 'process_exec' && process.cmdline.contains('--payload-{i} ')"),
        4 => format!(
            "event.type == 'process_exec' && process.cmdline.matches('implant{i}[[:space:]]+(-c|--connect)[[:space:]]')"
        ),
        5 => format!(
            "event.type == 'process_exec' && ancestors in ['svc{i}', 'svc{i}-worker'] && shell_process"
        ),
        6 => format!(
            "event.type == 'file_open' && file.path == '/opt/app{i}/secret.key' && !(process.name in ['app{i}', 'backup'])"
        ),
        7 => format!(
            "event.type == 'file_open' && file.path.startswith('/srv/tenant{i}/keys/') && !(process.name in ['vault', 'app{i}'])"
        ),
        8 => format!(
            "event.type == 'file_write' && file.path.startswith('/etc/app{i}/') && !package_management && !(process.name in etc_writers)"
        ),
        9 => format!(
            "event.type in ['file_write', 'file_rename'] && file.path.endswith('.app{i}.conf') && process.user != 'app{i}'"
        ),
        10 => format!(
            "event.type == 'file_open' && file.path.matches('^/var/lib/app{i}/[0-9]+/token$') && !(process.name in ['app{i}'])"
        ),
        11 => format!(
            "event.type == 'net_connect' && net.dst_port == {} && !(process.name in ['app{i}', 'curl'])",
            20_000 + i
        ),
        12 => format!(
            "event.type == 'net_connect' && net.dst_ip in cidr('10.{}.{}.0/24') && process.name in shell_binaries",
            (i / 256) % 256,
            i % 256
        ),
        13 => format!(
            "event.type == 'file_open' && process.name == '{name}' && file.path.startswith('/home/') && file.path.contains('/.secret{i}/')"
        ),
        14 => format!(
            "event.type == 'file_delete' && process.user == 'svc{i}' && file.path.startswith('/var/')"
        ),
        _ => format!("event.type == 'process_exec' && parent.name == 'daemon{i}' && shell_process"),
    }
}

/// Generated rule `i` as a JSON object.
fn generated_rule(i: usize) -> String {
    let condition = serde_json::to_string(&generated_condition(i)).expect("a JSON string");
    format!(
        r#"{{"name": "generated_{i:05}", "label": "Generated Rule {i}", "condition": {condition}, "risk_score": {}, "action": "alert", "recommendation": "Check it."}}"#,
        [0.3, 0.5, 0.7][i % 3]
    )
}

/// The pack and `n` generated rules in a file of their own.
fn generated_files(n: usize) -> Vec<SourceFile> {
    let rules: Vec<String> = (0..n).map(generated_rule).collect();
    let mut files = pack_files();
    files.push(SourceFile {
        path: PathBuf::from("generated/rules.json"),
        text: format!("{{\"rules\": [\n{}\n]}}\n", rules.join(",\n")),
    });
    files
}

fn generated_analyzer(n: usize) -> Evaluator {
    let set = match RuleSet::from_sources(generated_files(n)) {
        Ok(set) => set,
        Err(e) => panic!("the generated rules must load:\n{e}"),
    };
    Evaluator::for_config(
        RuleEngine::with_set(set, Vec::new()),
        &ThreatDetection::default(),
    )
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("rules");
    group.throughput(Throughput::Elements(EVENTS as u64));

    let mut events = mix(false);
    let mut with_rules = analyzer();
    let flagged = events
        .iter_mut()
        .map(|e| {
            with_rules.analyze(e);
            e.analysis.rules.len()
        })
        .filter(|&n| n > 0)
        .count();
    eprintln!(
        "rules/mix: {} rules, {flagged} of {EVENTS} events matched at least one",
        with_rules.engine().map_or(0, |e| e.summary().rules)
    );
    group.bench_function("mix", |b| {
        b.iter(|| {
            for e in events.iter_mut() {
                black_box(with_rules.analyze(e));
            }
        })
    });

    let mut opens = mix(true);
    group.bench_function("file_open", |b| {
        b.iter(|| {
            for e in opens.iter_mut() {
                black_box(with_rules.analyze(e));
            }
        })
    });

    for (name, t) in [
        ("file_write", EventType::FileWrite),
        ("process_exec", EventType::ProcessExec),
    ] {
        let mut events = only(t);
        group.bench_function(name, |b| {
            b.iter(|| {
                for e in events.iter_mut() {
                    black_box(with_rules.analyze(e));
                }
            })
        });
    }

    for n in [500, 5000] {
        let mut generated = generated_analyzer(n);
        let mut events = mix(false);
        let flagged = events
            .iter_mut()
            .map(|e| {
                generated.analyze(e);
                e.analysis.rules.len()
            })
            .filter(|&n| n > 0)
            .count();
        eprintln!(
            "rules/generated_{n}: {} rules, {flagged} of {EVENTS} events matched at least one",
            generated.engine().map_or(0, |e| e.summary().rules)
        );
        group.bench_function(format!("generated_{n}"), |b| {
            b.iter(|| {
                for e in events.iter_mut() {
                    black_box(generated.analyze(e));
                }
            })
        });
    }

    let mut none = Evaluator::default();
    group.bench_function("no_rules", |b| {
        b.iter(|| {
            for e in events.iter_mut() {
                black_box(none.analyze(e));
            }
        })
    });
    group.finish();

    let mut load = c.benchmark_group("rules");
    load.sample_size(20);
    load.bench_function("load_pack", |b| {
        b.iter(|| black_box(RuleSet::load(&pack_dirs()).map(|s| s.len()).unwrap_or(0)))
    });
    let files = generated_files(5000);
    load.bench_function("load_generated_5000", |b| {
        b.iter(|| {
            black_box(
                RuleSet::from_sources(files.clone())
                    .map(|s| s.len())
                    .unwrap_or(0),
            )
        })
    });
    load.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
