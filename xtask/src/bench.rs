//! `cargo xtask bench`: what secmon costs the machine it watches, and how much it can take.
//!
//! One run measures, on this machine and in this order:
//! 1. **Overhead** of `secmon-tui --json > /dev/null` on three loops (1M open/close, 20k
//!    fork+exec of /bin/true, 50k loopback TCP connects), each timed without any tracer
//!    (baseline), under secmon, and under an equivalent bpftrace script
//!    (`bench/secmon-equivalent.bt`). The three configurations are interleaved, in a rotating
//!    order, for several rounds; the ratio is median(traced) / median(baseline).
//! 2. **Throughput**: secmon running while opens are issued at increasing rates; the highest rate
//!    whose events were all written with nothing dropped in the kernel.
//! 3. **Criterion** micro-benchmarks of the userspace stages (`monitor/benches/`: the pipeline's
//!    decode + enrich + JSON, the SQLite history, the rule engine over the shipped pack, the
//!    terminal UI's frames), and how their cost grows with the work (issue 19: enrichment with
//!    1,000 and 30,000 live processes, history queries over 1M and 10M stored events — 100M
//!    with `--history-scale 100m` —, the rule engine with 500 and 5,000 more rules, a frame
//!    after 100k events).
//! 4. Under a flood of opens: the terminal UI (key latency), the web controller with WebSocket
//!    clients, and the NATS exporter (`bench/nats.rs`: `--json` without and with
//!    `[export.nats]` to a local `nats-server -js`; kernel drops, events published per second,
//!    capture → subscriber delay), and the hub's delay (`bench/hub.rs`: a syscall on an
//!    exporting monitor → its event on `secmon-tui hub`'s live stream, idle and under the flood).
//!    `--only-nats` runs these two alone.
//!
//! Then it prints the tables and (unless `--quick`) rewrites the generated part of
//! `docs/benchmarks.md`. Loading eBPF needs root: as another user everything is built first, then
//! the measuring part runs again under sudo.
//!
//! The load generators are `xtask bench loadgen <load>` (hidden), run from the release build.

mod hub;
mod latency;
mod loadgen;
mod nats;
mod report;
mod tracer;
mod tui;
mod web;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};

pub use loadgen::Load;
use loadgen::LoadResult;
use tracer::Tracer;

use crate::util;

/// The bpftrace peer, written to a temporary file for each run.
const BPFTRACE_SCRIPT: &str = include_str!("bench/secmon-equivalent.bt");
/// secmon's configuration for the headline runs: the shipped defaults (history on, rules on,
/// every probe family on), written to a temporary file so neither an /etc/secmon/secmon.toml
/// on the machine nor its history database change what is measured. `{history}` is replaced
/// by a database path in a temporary directory, emptied before every run.
const DEFAULTS_CONFIG: &str = "\
# Written by `cargo xtask bench`: the shipped defaults, history in a temporary directory.
[monitoring]
enable_process = true
enable_network = true
enable_filesystem = true
enable_kernel = true

[storage]
enabled = true
path = \"{history}\"
";
/// The extra row: the same with the history off, to show what the history costs.
const NO_HISTORY_CONFIG: &str = "\
# Written by `cargo xtask bench`: the shipped defaults without the history.
[monitoring]
enable_process = true
enable_network = true
enable_filesystem = true
enable_kernel = true

[storage]
enabled = false
";
/// Wait after a tracer reports ready before starting the loop (start-up work such as secmon
/// seeding its process table from /proc is then over).
const SETTLE: Duration = Duration::from_millis(500);
/// Longest a single loop may run.
const LOAD_TIMEOUT: Duration = Duration::from_secs(300);
/// How long to wait for someone else's compiler to finish before measuring anyway.
const QUIET_WAIT: Duration = Duration::from_secs(120);
/// How long to wait before each run for another tracer (secmon, bpftrace) to exit.
const TRACER_WAIT: Duration = Duration::from_secs(30);
/// Longest wait for a tracer to finish handling a loop's events.
const IDLE_TIMEOUT: Duration = Duration::from_secs(20);
/// Generator threads the throughput search may use (the machine class has 2 cores, and secmon
/// needs CPU too).
const MAX_GENERATOR_THREADS: u32 = 2;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub cmd: Option<BenchCmd>,
    /// A 1–2 minute run: one round, loops a fifth of the size, short throughput steps and
    /// criterion measurements. Does not touch docs/benchmarks.md unless --doc is given.
    #[arg(long)]
    pub quick: bool,
    /// Rounds of the three interleaved configurations (default 3, 1 with --quick).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=20))]
    pub rounds: Option<u32>,
    /// Do not run the criterion micro-benchmarks.
    #[arg(long)]
    pub skip_criterion: bool,
    /// Do not run the loops under bpftrace.
    #[arg(long)]
    pub skip_bpftrace: bool,
    /// Do not search for the highest drop-free event rate.
    #[arg(long)]
    pub skip_throughput: bool,
    /// Do not measure the terminal UI under a flood (key latency, CPU beside --json).
    #[arg(long)]
    pub skip_tui: bool,
    /// Do not measure the web controller with 20 WebSocket clients under a flood.
    #[arg(long)]
    pub skip_web: bool,
    /// Do not measure the detection latency (syscall to alert line, idle and under 100,000
    /// opens/s).
    #[arg(long)]
    pub skip_latency: bool,
    /// Do not measure the NATS exporter under a flood, nor the hub's delay.
    #[arg(long)]
    pub skip_nats: bool,
    /// Measure the NATS exporter and the hub's delay only (nothing else). Never writes
    /// docs/benchmarks.md: its generated part is a whole run's.
    #[arg(long, conflicts_with_all = ["skip_nats", "doc"])]
    pub only_nats: bool,
    /// Write the results into docs/benchmarks.md (the default without --quick).
    #[arg(long, conflicts_with = "no_doc")]
    pub doc: bool,
    /// Do not write docs/benchmarks.md.
    #[arg(long)]
    pub no_doc: bool,
    /// The largest history measured (databases of 1M, 10M, 100M events; each is built once
    /// into target/bench-data/, 100M taking about 5 GB and 3 minutes to build). Default 10m
    /// (1m with --quick).
    #[arg(long, value_name = "SIZE", value_parser = ["1m", "10m", "100m"])]
    pub history_scale: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum BenchCmd {
    /// Internal: a load generator the benchmark times (prints `<seconds> <operations>`).
    #[command(hide = true)]
    Loadgen {
        #[command(subcommand)]
        load: Load,
    },
}

/// One of the timed loops, with secmon's overhead target for it.
#[derive(Debug, Clone)]
pub struct LoopSpec {
    pub name: &'static str,
    pub load: Load,
    pub ops: u64,
    pub target: f64,
}

/// What a run does, from the flags.
#[derive(Debug, Clone)]
struct Plan {
    quick: bool,
    rounds: u32,
    loops: Vec<LoopSpec>,
    bpftrace: bool,
    throughput: bool,
    /// Seconds of load per throughput step.
    rate_secs: f64,
    /// Rates tried in order until one fails.
    ladder: Vec<u64>,
    /// Bisection steps between the last rate that passed and the first that failed.
    bisect: u32,
    criterion: bool,
    criterion_args: Vec<&'static str>,
    /// `SECMON_BENCH_HISTORY_SCALE` for the storage benchmark.
    history_scale: String,
    /// Seconds of flood for the terminal UI measurement (None: skipped).
    tui_secs: Option<u64>,
    web_secs: Option<u64>,
    /// Alerts timed per phase of the latency measurement (None: skipped).
    latency_samples: Option<usize>,
    nats_secs: Option<u64>,
    /// Marks timed per phase of the hub's delay (None: skipped).
    hub_samples: Option<usize>,
    doc: bool,
}

impl Plan {
    fn new(args: &BenchArgs) -> Plan {
        let quick = args.quick;
        let scale = if quick { 5 } else { 1 };
        let spec = |name, load: fn(u64) -> Load, ops: u64, target| LoopSpec {
            name,
            load: load(ops / scale),
            ops: ops / scale,
            target,
        };
        Plan {
            quick,
            rounds: args.rounds.unwrap_or(if quick { 1 } else { 3 }),
            loops: vec![
                spec("open/close", |n| Load::Open { n }, 1_000_000, 1.30),
                spec("fork+exec", |n| Load::Exec { n }, 20_000, 1.05),
                spec("tcp connect", |n| Load::Connect { n }, 50_000, 1.10),
            ],
            bpftrace: !args.skip_bpftrace,
            throughput: !args.skip_throughput,
            rate_secs: if quick { 2.0 } else { 5.0 },
            ladder: if quick {
                vec![100_000, 300_000, 450_000, 600_000, 1_000_000]
            } else {
                vec![
                    100_000, 200_000, 300_000, 400_000, 450_000, 500_000, 600_000, 800_000,
                    1_000_000, 1_200_000, 1_500_000,
                ]
            },
            bisect: if quick { 0 } else { 2 },
            criterion: !args.skip_criterion,
            criterion_args: if quick {
                vec!["--warm-up-time", "0.5", "--measurement-time", "1"]
            } else {
                vec!["--warm-up-time", "1", "--measurement-time", "3"]
            },
            history_scale: args
                .history_scale
                .clone()
                .unwrap_or_else(|| if quick { "1m" } else { "10m" }.to_string()),
            tui_secs: (!args.skip_tui).then_some(if quick { 6 } else { 15 }),
            web_secs: (!args.skip_web).then_some(if quick { 6 } else { 15 }),
            latency_samples: (!args.skip_latency).then_some(if quick { 50 } else { 300 }),
            nats_secs: (!args.skip_nats).then_some(if quick { 4 } else { 10 }),
            hub_samples: (!args.skip_nats).then_some(if quick { 50 } else { 200 }),
            doc: if quick { args.doc } else { !args.no_doc },
        }
        .only_nats(args)
    }

    /// `--only-nats`: every other measurement off.
    fn only_nats(self, args: &BenchArgs) -> Plan {
        if !args.only_nats {
            return self;
        }
        Plan {
            loops: Vec::new(),
            bpftrace: false,
            throughput: false,
            criterion: false,
            tui_secs: None,
            web_secs: None,
            latency_samples: None,
            doc: false,
            ..self
        }
    }
}

/// The event rate the terminal UI is measured under (issue 5: 100k events/s).
const TUI_RATE: u64 = 100_000;
/// The load of the NATS row: the exporter's target (issue 15, `report::NATS_TARGET`).
const NATS_RATE: u64 = 200_000;

/// The hub's flood when the exporter's rate is not known (no NATS row).
const HUB_RATE: u64 = 40_000;

/// The hub's delay is measured at the rate the exporter reaches (issue 15): three quarters of
/// what the NATS row published per second, so that the marks are not lost in the exporter's
/// full queue (a flood beyond it measures the queue, not the path).
fn hub_rate(nats: Option<&report::NatsResult>) -> u64 {
    nats.map(|n| &n.exporting)
        .filter(|e| e.load_secs > 0.0 && e.published > 0)
        .map_or(HUB_RATE, |e| {
            ((e.published as f64 / e.load_secs * 0.75) as u64 / 1000 * 1000).max(1000)
        })
}

/// The target events per second sustained without a drop.
pub const THROUGHPUT_TARGET: f64 = 450_000.0;

pub fn run(args: BenchArgs) -> Result<ExitCode> {
    if let Some(BenchCmd::Loadgen { load }) = &args.cmd {
        loadgen::run(load)?;
        return Ok(ExitCode::SUCCESS);
    }
    let started = Instant::now();
    let plan = Plan::new(&args);
    crate::setup::run()?;
    if !util::is_root() {
        // Build as the invoking user, so the target directory stays theirs; the root run below
        // finds everything built and only measures.
        build(&plan)?;
        return reexec_as_root();
    }
    let bins = build(&plan)?;
    let command = command_line();
    eprintln!("xtask bench: {command}");
    let mut notes = Vec::new();
    wait_until_quiet(&mut notes);

    let mut results = report::Results {
        machine: report::Machine::probe(),
        command,
        quick: plan.quick,
        rounds: plan.rounds,
        rate_secs: plan.rate_secs,
        ..report::Results::default()
    };

    let bpftrace = if plan.bpftrace {
        match util::find_program("bpftrace") {
            Some(path) => Some(path),
            None => {
                notes.push("bpftrace is not installed: its column is empty".to_string());
                None
            }
        }
    } else {
        None
    };
    let script = write_temp("peer.bt", BPFTRACE_SCRIPT)?;
    let history_dir = temp_dir("history")?;
    let history = history_dir.join("events.db");
    let config = write_temp(
        "defaults.toml",
        &DEFAULTS_CONFIG.replace("{history}", &history.display().to_string()),
    )?;
    let config_no_history = write_temp("no-history.toml", NO_HISTORY_CONFIG)?;
    // The `--json` run beside the UI in the terminal UI's measurement: its own database.
    let config_beside = write_temp(
        "beside.toml",
        &DEFAULTS_CONFIG.replace(
            "{history}",
            &history_dir.join("beside.db").display().to_string(),
        ),
    )?;
    let ctx = Ctx {
        loadgen: bins.loadgen.clone(),
        secmon: bins.secmon.clone(),
        config: config.clone(),
        config_no_history: config_no_history.clone(),
        history,
        bpftrace,
        script: script.clone(),
    };

    results.loops = overhead(&ctx, &plan)?;
    if plan.throughput {
        results.throughput = Some(throughput(&ctx, &plan)?);
    }
    if let Some(secs) = plan.tui_secs {
        eprintln!("xtask bench: the terminal UI under {TUI_RATE} opens/s for {secs} s");
        ctx.fresh_history();
        let (ui, json) = (&config, &config_beside);
        match tui::measure(&bins.secmon, &bins.loadgen, ui, json, TUI_RATE, secs) {
            Ok(result) => results.tui = Some(result),
            Err(e) => notes.push(format!("terminal UI not measured: {e:#}")),
        }
    }
    if let Some(secs) = plan.web_secs {
        eprintln!(
            "xtask bench: the web controller under {TUI_RATE} opens/s for {secs} s, without and with {} WebSocket clients",
            web::CLIENTS
        );
        ctx.fresh_history();
        match web::measure(&bins.secmon, &bins.loadgen, &config, TUI_RATE, secs) {
            Ok(result) => results.web = Some(result),
            Err(e) => notes.push(format!("web controller not measured: {e:#}")),
        }
    }
    if let Some(samples) = plan.latency_samples {
        eprintln!(
            "xtask bench: detection latency, {samples} alerts idle and {samples} under {TUI_RATE} opens/s"
        );
        ctx.fresh_history();
        match latency::measure(&bins.secmon, &bins.loadgen, &config, TUI_RATE, samples) {
            Ok(result) => results.latency = Some(result),
            Err(e) => notes.push(format!("detection latency not measured: {e:#}")),
        }
    }
    if let Some(secs) = plan.nats_secs {
        eprintln!(
            "xtask bench: the NATS exporter under {NATS_RATE} opens/s for {secs} s, without and with it"
        );
        match nats::measure(
            &bins.secmon,
            &bins.loadgen,
            NO_HISTORY_CONFIG,
            NATS_RATE,
            secs,
        ) {
            Ok(result) => results.nats = Some(result),
            Err(e) => notes.push(format!("NATS exporter not measured: {e:#}")),
        }
    }
    if let Some(samples) = plan.hub_samples {
        let rate = hub_rate(results.nats.as_ref());
        eprintln!(
            "xtask bench: the hub's delay, {samples} marks idle and {samples} under {rate} opens/s"
        );
        match hub::measure(
            &bins.secmon,
            &bins.loadgen,
            NO_HISTORY_CONFIG,
            rate,
            samples,
        ) {
            Ok(result) => results.hub = Some(result),
            Err(e) => notes.push(format!("hub delay not measured: {e:#}")),
        }
    }
    let _ = std::fs::remove_file(&script);
    let _ = std::fs::remove_file(&config);
    let _ = std::fs::remove_file(&config_no_history);
    let _ = std::fs::remove_file(&config_beside);
    let _ = std::fs::remove_dir_all(&history_dir);
    if plan.criterion {
        results.criterion = criterion(&plan, "pipeline")?;
        results.storage = criterion(&plan, "storage")?;
        results.rules = criterion(&plan, "rules")?;
        results.render = criterion(&plan, "render")?;
    }
    notes.extend(foreign_tracers().into_iter().map(|p| {
        format!("{p} was running at the end of the run: its probes may have added to every configuration")
    }));
    results.notes = notes;
    results.elapsed_secs = started.elapsed().as_secs_f64();

    let text = report::render(&results);
    println!("{text}");
    let last = util::target_dir().join("bench").join("last-run.md");
    if let Some(dir) = last.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let _ = std::fs::write(&last, &text);
    if plan.doc {
        let doc = util::repo_root().join("docs").join("benchmarks.md");
        report::update_doc(&doc, &text)?;
        eprintln!("xtask bench: results written to {}", doc.display());
    } else {
        eprintln!(
            "xtask bench: results in {} (docs/benchmarks.md untouched)",
            last.display()
        );
    }
    eprintln!(
        "xtask bench: done in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// `cargo xtask bench ARGS` as typed (for the report).
fn command_line() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    format!("cargo xtask {}", args.join(" "))
}

struct Bins {
    secmon: PathBuf,
    loadgen: PathBuf,
}

/// Release builds of secmon and of xtask (the load generator), and the criterion benchmark.
fn build(plan: &Plan) -> Result<Bins> {
    let secmon = util::build_release()?;
    eprintln!("xtask: building the load generator (cargo build --release -p xtask)");
    let mut cmd = util::cargo();
    cmd.args(["build", "--release", "-p", "xtask"]);
    util::check(util::stdout_to_stderr(&mut cmd)).context("building the load generator")?;
    let loadgen = util::target_dir().join("release").join("xtask");
    if plan.criterion {
        let mut cmd = util::cargo();
        cmd.args(["bench", "-p", "monitor", "--benches", "--no-run"]);
        eprintln!(
            "xtask: building the criterion benchmarks ({})",
            util::display(&cmd)
        );
        util::check(util::stdout_to_stderr(&mut cmd)).context("building the benchmark")?;
    }
    Ok(Bins { secmon, loadgen })
}

fn home_subdir(var: &str, default: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(default)))
}

/// Runs this same command again as root (`sudo -E env PATH=... xtask bench ARGS`), keeping the
/// user's PATH and rustup/cargo homes so cargo finds the same toolchains.
fn reexec_as_root() -> Result<ExitCode> {
    let exe = std::env::current_exe().context("locating the xtask binary")?;
    let mut env_args = vec![format!("PATH={}", util::path_var().to_string_lossy())];
    for (var, default) in [("RUSTUP_HOME", ".rustup"), ("CARGO_HOME", ".cargo")] {
        if let Some(dir) = home_subdir(var, default) {
            env_args.push(format!("{var}={}", dir.display()));
        }
    }
    env_args.push(exe.to_string_lossy().into_owned());
    env_args.extend(std::env::args().skip(1));
    let mut cmd = util::as_root("env", &env_args, true)?;
    cmd.current_dir(util::repo_root());
    eprintln!(
        "xtask bench: loading eBPF needs root: {}",
        util::display(&cmd)
    );
    let status = util::status(&mut cmd)?;
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        util::exit_code(status)
    })
}

/// `/tmp/secmon-bench-<pid>.<ext>` holding `text`.
fn write_temp(name: &str, text: &str) -> Result<PathBuf> {
    let path = std::env::temp_dir().join(format!("secmon-bench-{}-{name}", std::process::id()));
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// A private temporary directory (0700: the history written there is root's).
fn temp_dir(name: &str) -> Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt as _;
    let path = std::env::temp_dir().join(format!("secmon-bench-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&path);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    Ok(path)
}

/// Processes by name from /proc: `(pid, comm)`.
fn processes() -> Vec<(u32, String)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|entry| {
        let entry = entry.ok()?;
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let comm = std::fs::read_to_string(entry.path().join("comm")).ok()?;
        Some((pid, comm.trim().to_string()))
    })
    .collect()
}

/// Other tracers that would add their cost to every configuration.
fn foreign_tracers() -> Vec<String> {
    processes()
        .into_iter()
        .filter(|(_, comm)| comm == "secmon-tui" || comm == "bpftrace")
        .map(|(pid, comm)| format!("another {comm} (pid {pid})"))
        .collect()
}

/// Waits (up to [`QUIET_WAIT`]) while a compiler runs on this 2-core class of machine; notes it if
/// it is still running, and notes other tracers.
fn wait_until_quiet(notes: &mut Vec<String>) {
    let deadline = Instant::now() + QUIET_WAIT;
    let mut said = false;
    loop {
        let busy: Vec<u32> = processes()
            .into_iter()
            .filter(|(_, comm)| comm == "rustc" || comm == "cc1" || comm == "ld")
            .map(|(pid, _)| pid)
            .collect();
        if busy.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            notes.push(format!(
                "a compiler was running during the measurements (pids {busy:?}): numbers are noisier"
            ));
            break;
        }
        if !said {
            eprintln!(
                "xtask bench: waiting up to {} s for compilers to finish (pids {busy:?})",
                QUIET_WAIT.as_secs()
            );
            said = true;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    for tracer in foreign_tracers() {
        eprintln!("xtask bench: warning: {tracer} is running");
        notes.push(format!(
            "{tracer} was running at the start: its probes add to every configuration"
        ));
    }
}

/// What a measurement needs.
struct Ctx {
    loadgen: PathBuf,
    secmon: PathBuf,
    /// The shipped defaults ([`DEFAULTS_CONFIG`]) and the history-off row.
    config: PathBuf,
    config_no_history: PathBuf,
    /// The defaults' history database, removed before each run (every run starts as a new
    /// install does).
    history: PathBuf,
    bpftrace: Option<PathBuf>,
    script: PathBuf,
}

impl Ctx {
    fn fresh_history(&self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut path = self.history.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Runs `xtask bench loadgen <load>` and parses its result line.
fn run_load(loadgen: &Path, load: &Load) -> Result<LoadResult> {
    let mut cmd = Command::new(loadgen);
    cmd.args(["bench", "loadgen"]);
    match load {
        Load::Open { n } => cmd.args(["open", &n.to_string()]),
        Load::Exec { n } => cmd.args(["exec", &n.to_string()]),
        Load::Connect { n } => cmd.args(["connect", &n.to_string()]),
        Load::Rate {
            ops_per_sec,
            secs,
            threads,
        } => cmd.args([
            "rate",
            &ops_per_sec.to_string(),
            &secs.to_string(),
            "--threads",
            &threads.to_string(),
        ]),
    };
    cmd.stdin(Stdio::null()).stdout(Stdio::piped());
    let shown = util::display(&cmd);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("could not start `{shown}`"))?;
    let deadline = Instant::now() + LOAD_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("`{shown}` took more than {} s", LOAD_TIMEOUT.as_secs());
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        use std::io::Read as _;
        stdout.read_to_string(&mut out)?;
    }
    if !status.success() {
        bail!("`{shown}` failed ({})", util::describe(status));
    }
    LoadResult::parse(&out).with_context(|| format!("`{shown}` printed {out:?}"))
}

/// Who runs next to a loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setup {
    Baseline,
    /// `secmon-tui --json` with the shipped defaults (history on, rules on).
    Secmon,
    /// The same with `[storage] enabled = false`.
    SecmonNoHistory,
    Bpftrace,
}

/// Something that makes a measurement less trustworthy, if running now: another tracer (its
/// probes fire on our loops too) or a compiler (it takes CPU from them).
fn disturbance() -> Option<String> {
    let found: Vec<String> = processes()
        .into_iter()
        .filter(|(_, comm)| {
            ["secmon-tui", "bpftrace", "rustc", "cc1", "ld"].contains(&comm.as_str())
        })
        .map(|(pid, comm)| format!("{comm} ({pid})"))
        .collect();
    (!found.is_empty()).then(|| found.join(", "))
}

/// Before a run: waits (up to [`TRACER_WAIT`]) for other tracers to exit. Returns whether the
/// run starts disturbed.
fn gate() -> bool {
    let deadline = Instant::now() + TRACER_WAIT;
    let mut said = false;
    loop {
        let others = foreign_tracers();
        if others.is_empty() || Instant::now() >= deadline {
            break;
        }
        if !said {
            eprintln!(
                "xtask bench: waiting up to {} s for {} to exit",
                TRACER_WAIT.as_secs(),
                others.join(", ")
            );
            said = true;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    disturbance().is_some()
}

/// Waits until the tracer's CPU time stops growing (it has handled what the loop produced).
fn wait_idle(tracer: &Tracer) {
    let deadline = Instant::now() + IDLE_TIMEOUT;
    let mut last = tracer.cpu_secs();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        let now = tracer.cpu_secs();
        if now == last {
            return;
        }
        last = now;
    }
}

/// One loop under one setup.
fn measure(ctx: &Ctx, setup: Setup, load: &Load) -> Result<(LoadResult, report::Sample)> {
    let disturbed_before = gate();
    let tracer = match setup {
        Setup::Baseline => None,
        Setup::Secmon => {
            ctx.fresh_history();
            Some(Tracer::secmon(&ctx.secmon, &ctx.config)?)
        }
        Setup::SecmonNoHistory => Some(Tracer::secmon(&ctx.secmon, &ctx.config_no_history)?),
        Setup::Bpftrace => {
            let bpftrace = ctx.bpftrace.as_deref().context("bpftrace missing")?;
            Some(Tracer::bpftrace(bpftrace, &ctx.script)?)
        }
    };
    if tracer.is_some() {
        std::thread::sleep(SETTLE);
    }
    let idle_rss_kib = tracer.as_ref().and_then(Tracer::peak_rss_kib);
    let idle_parts = tracer.as_ref().and_then(Tracer::memory_parts);
    let cpu_before = tracer.as_ref().and_then(Tracer::cpu_secs);
    let result = run_load(&ctx.loadgen, load);
    let tracer_cpu = tracer.as_ref().and_then(|t| {
        wait_idle(t);
        Some(t.cpu_secs()? - cpu_before?)
    });
    let peak_rss_kib = tracer.as_ref().and_then(Tracer::peak_rss_kib);
    let peak_parts = tracer.as_ref().and_then(Tracer::memory_parts);
    // Always stop the tracer (even when the loop failed), and before the next run starts.
    let report = tracer.map(Tracer::stop).transpose()?;
    let result = result?;
    let disturbed = disturbed_before || disturbance().is_some();
    Ok((
        result,
        report::Sample {
            secs: result.secs,
            stopped: report.and_then(|r| r.stopped),
            tracer_cpu,
            disturbed,
            idle_rss_kib,
            peak_rss_kib,
            idle_parts,
            peak_parts,
        },
    ))
}

fn overhead(ctx: &Ctx, plan: &Plan) -> Result<Vec<report::LoopResult>> {
    let mut setups = vec![Setup::Baseline, Setup::Secmon, Setup::SecmonNoHistory];
    if ctx.bpftrace.is_some() {
        setups.push(Setup::Bpftrace);
    }
    // Warm-up (untimed): page cache, the dynamic loader's files, TCP state.
    for spec in &plan.loops {
        let small = match spec.load {
            Load::Open { n } => Load::Open { n: n / 20 },
            Load::Exec { n } => Load::Exec { n: n / 20 },
            Load::Connect { n } => Load::Connect { n: n / 20 },
            ref other => other.clone(),
        };
        run_load(&ctx.loadgen, &small)?;
    }
    let mut results: Vec<report::LoopResult> = plan
        .loops
        .iter()
        .map(|spec| report::LoopResult::new(spec.clone()))
        .collect();
    for round in 0..plan.rounds as usize {
        for result in &mut results {
            // Rotate the order each round so drift does not always favour one setup.
            let mut order = setups.clone();
            order.rotate_left(round % setups.len());
            for setup in order {
                let (_, sample) = measure(ctx, setup, &result.spec.load)?;
                let mut line = format!(
                    "xtask bench: round {}/{}: {} under {setup:?}: {:.3} s",
                    round + 1,
                    plan.rounds,
                    result.spec.name,
                    sample.secs
                );
                if let Some(cpu) = sample.tracer_cpu {
                    line.push_str(&format!(", tracer CPU {cpu:.2} s"));
                }
                if let Some(st) = sample.stopped {
                    line.push_str(&format!(", {} events, {} dropped", st.events, st.dropped));
                }
                if let Some(peak) = sample.peak_rss_kib {
                    line.push_str(&format!(", peak RSS {} MiB", peak / 1024));
                }
                if sample.disturbed {
                    line.push_str(" (disturbed)");
                }
                eprintln!("{line}");
                match setup {
                    Setup::Baseline => result.baseline.push(sample),
                    Setup::Secmon => result.secmon.push(sample),
                    Setup::SecmonNoHistory => result.secmon_no_history.push(sample),
                    Setup::Bpftrace => result.bpftrace.push(sample),
                }
            }
        }
    }
    Ok(results)
}

/// The highest open rate secmon follows with every event written and nothing dropped.
///
/// One generator thread first; when it cannot issue the rate asked for (and secmon kept up),
/// the same rate is tried with two. Stops at the first rate secmon fails, then bisects.
fn throughput(ctx: &Ctx, plan: &Plan) -> Result<report::Throughput> {
    let step = |rate: u64, threads: u32| -> Result<report::RateStep> {
        let load = Load::Rate {
            ops_per_sec: rate,
            secs: plan.rate_secs,
            threads,
        };
        let (result, sample) = measure(ctx, Setup::Secmon, &load)?;
        let s = report::RateStep {
            rate,
            threads,
            load: result,
            stopped: sample.stopped.unwrap_or_default(),
            tracer_cpu: sample.tracer_cpu,
            disturbed: sample.disturbed,
        };
        eprintln!(
            "xtask bench: throughput: {rate} opens/s asked, {threads} thread(s), {} s: {:.0}/s issued, {} events, {} dropped: {}",
            plan.rate_secs,
            s.achieved(),
            s.stopped.events,
            s.stopped.dropped,
            s.verdict()
        );
        Ok(s)
    };
    let mut steps: Vec<report::RateStep> = Vec::new();
    let mut threads = 1;
    let mut last_pass: Option<u64> = None;
    let mut first_fail: Option<u64> = None;
    let mut i = 0;
    while let Some(&rate) = plan.ladder.get(i) {
        let s = step(rate, threads)?;
        let (passed, saturated) = (s.passed(), s.generator_saturated());
        steps.push(s);
        if !passed {
            first_fail = Some(rate);
            break;
        }
        last_pass = Some(rate);
        if saturated {
            if threads < MAX_GENERATOR_THREADS {
                threads += 1;
                continue;
            }
            break;
        }
        i += 1;
    }
    if let (Some(mut low), Some(mut high)) = (last_pass, first_fail) {
        for _ in 0..plan.bisect {
            let mid = (low + high) / 2 / 10_000 * 10_000;
            if mid <= low || mid >= high {
                break;
            }
            let s = step(mid, threads)?;
            if s.passed() {
                low = mid;
            } else {
                high = mid;
            }
            steps.push(s);
        }
    }
    Ok(report::Throughput { steps })
}

/// `cargo bench -p monitor --bench BENCH -- ARGS`, echoed, with its numbers collected.
fn criterion(plan: &Plan, bench: &str) -> Result<Vec<report::CriterionResult>> {
    let mut cmd = util::cargo();
    cmd.args(["bench", "-p", "monitor", "--bench", bench, "--"])
        .args(&plan.criterion_args)
        .env("SECMON_BENCH_HISTORY_SCALE", &plan.history_scale);
    eprintln!("xtask bench: {}", util::display(&cmd));
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("could not start `{}`", util::display(&cmd)))?;
    let text = String::from_utf8_lossy(&out.stdout);
    for line in text.lines() {
        if !line.starts_with("Benchmarking ") {
            eprintln!("{line}");
        }
    }
    if !out.status.success() {
        bail!(
            "`{}` failed ({})",
            util::display(&cmd),
            util::describe(out.status)
        );
    }
    Ok(report::parse_criterion(&text))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn parse(args: &[&str]) -> BenchArgs {
        Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied()))
            .expect("parses")
            .args
    }

    #[test]
    fn flags_and_plan() {
        let full = Plan::new(&parse(&[]));
        assert_eq!((full.rounds, full.doc, full.quick), (3, true, false));
        assert_eq!(
            full.loops.iter().map(|l| l.ops).collect::<Vec<_>>(),
            [1_000_000, 20_000, 50_000]
        );
        let quick = Plan::new(&parse(&["--quick", "--skip-criterion"]));
        assert_eq!(
            (quick.rounds, quick.doc, quick.criterion),
            (1, false, false)
        );
        assert_eq!(quick.loops[0].ops, 200_000);
        assert!(Plan::new(&parse(&["--quick", "--doc"])).doc);
        assert_eq!(full.history_scale, "10m");
        assert_eq!(quick.history_scale, "1m");
        let scaled = Plan::new(&parse(&["--quick", "--history-scale", "100m"]));
        assert_eq!(scaled.history_scale, "100m");
        assert!(Cli::try_parse_from(["bench", "--history-scale", "5m"]).is_err());
        assert!(!Plan::new(&parse(&["--no-doc", "--rounds", "5"])).doc);
        assert!(Cli::try_parse_from(["bench", "--doc", "--no-doc"]).is_err());
    }

    #[test]
    fn loadgen_is_a_hidden_subcommand() {
        match parse(&["loadgen", "rate", "1000", "2.5"]).cmd {
            Some(BenchCmd::Loadgen {
                load:
                    Load::Rate {
                        ops_per_sec: 1000,
                        secs,
                        threads: 1,
                    },
            }) => assert_eq!(secs, 2.5),
            other => panic!("{other:?}"),
        }
        use clap::CommandFactory as _;
        let help = Cli::command().render_help().to_string();
        assert!(!help.contains("loadgen"), "{help}");
        Cli::command().debug_assert();
    }

    #[test]
    fn the_bpftrace_script_is_embedded() {
        assert!(BPFTRACE_SCRIPT.contains("tracepoint:syscalls:sys_exit_openat"));
        assert!(BPFTRACE_SCRIPT.contains("tracepoint:sched:sched_process_exec"));
        assert!(BPFTRACE_SCRIPT.contains("tracepoint:sock:inet_sock_set_state"));
    }
}
