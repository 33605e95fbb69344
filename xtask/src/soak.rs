//! `cargo xtask soak --minutes N`: the monitor under mixed load for a long time, with
//! enforcement on, rule reloads, a stalled consumer, and kill -9 / restart.
//!
//! One "life" of the monitor lasts `--life-secs`; lives end in turn with SIGKILL and with
//! SIGTERM. Meanwhile this process floods execs, file opens and loopback connects, rewrites a
//! rule file every few seconds (the monitor reloads it), stops reading the monitor's stdout for
//! a while once per life, runs the protected programs, and asks the control socket for its
//! list. Checked, and shown in the summary table:
//!
//! - the monitor's RSS stays under `--rss-limit-mib`;
//! - after a SIGTERM: when fewer of our file opens came out than were made, the `stopped`
//!   line counts losses;
//! - after each exit (SIGKILL included): every BPF program, map and link the monitor held is
//!   gone from the kernel (`bpftool prog|map|link show id N`);
//! - the history database passes `PRAGMA integrity_check` (sqlite3);
//! - the control socket answers `block list`;
//! - no protected program (shells, sudo, su, sshd, tmux, secmon-tui) is ever killed, and the
//!   control socket refuses to deny them;
//! - a rule's block does kill the soak's own "bad" program (enforcement is really on).
//!
//! Everything lives in a temporary directory (config, rules, database, control socket, logs);
//! the machine's own /etc/secmon, /var/lib/secmon and /run/secmon are never touched.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader, Read as _};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{
    AtomicBool, AtomicU64,
    Ordering::{Relaxed, SeqCst},
};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::Args;

use crate::util;

#[derive(Debug, Args)]
pub struct SoakArgs {
    /// How long to run, in minutes.
    #[arg(long, default_value_t = 30)]
    pub minutes: u64,
    /// How long each life of the monitor lasts before it is killed or stopped, in seconds.
    #[arg(long, default_value_t = 60)]
    pub life_secs: u64,
    /// The monitor's resident memory must stay below this (MiB).
    #[arg(long, default_value_t = 512)]
    pub rss_limit_mib: u64,
    /// Keep the temporary directory (config, database, logs) at the end.
    #[arg(long)]
    pub keep: bool,
}

const READY_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the kernel may take to free a dead monitor's objects (RCU, deferred work).
const RELEASE_TIMEOUT: Duration = Duration::from_secs(20);
const RELOAD_EVERY: Duration = Duration::from_secs(5);
const CONTROL_EVERY: Duration = Duration::from_secs(10);
const PROTECTED_EVERY: Duration = Duration::from_secs(5);
const STALL_FOR: Duration = Duration::from_secs(10);
/// Pauses between flood iterations: a few thousand events a second, on a shared machine.
const EXEC_PAUSE: Duration = Duration::from_millis(4);
const OPEN_PAUSE: Duration = Duration::from_micros(500);
const CONNECT_PAUSE: Duration = Duration::from_millis(4);

/// Programs no rule or request may ever deny: run every few seconds, never killed.
const PROTECTED: &[(&str, &[&str])] = &[
    ("bash", &["-c", ":"]),
    ("sh", &["-c", ":"]),
    ("dash", &["-c", ":"]),
    ("sudo", &["-V"]),
    ("su", &["--version"]),
    ("tmux", &["-V"]),
    ("sshd", &["-V"]),
];

/// Everything counted over the whole run.
#[derive(Default)]
struct Totals {
    lives: u64,
    sigkills: u64,
    sigterms: u64,
    events: u64,
    reloads: u64,
    losses_counted: u64,
    marker_seen: u64,
    marker_made: u64,
    rss_max_kib: u64,
    control_ok: u64,
    control_failed: u64,
    bad_killed: u64,
    protected_runs: u64,
    failures: Vec<String>,
}

/// Counters the flood threads share with the main loop.
#[derive(Default)]
struct Load {
    stop: AtomicBool,
    /// Floods wait while this is set (around a graceful stop, so every counted action is in
    /// the monitor's stream before it drains).
    paused: AtomicBool,
    /// Flood threads currently inside an iteration.
    busy: AtomicU64,
    execs: AtomicU64,
    bad_killed: AtomicU64,
    opens: AtomicU64,
    connects: AtomicU64,
    protected_runs: AtomicU64,
    protected_killed: Mutex<Vec<String>>,
    /// Set once the control socket has refused to deny every protected program: only then
    /// does a shell also match a block rule (on a monitor without a protected set that would
    /// deny the machine's shell for the rule's TTL, and the machine may be shared).
    provoke_rule: AtomicBool,
}

/// The state of one monitor run, filled by its stdout and stderr readers.
#[derive(Default)]
struct Stream {
    stall: AtomicBool,
    events: AtomicU64,
    marker_seen: AtomicU64,
    ready: AtomicBool,
    reloads: AtomicU64,
    stopped_line: Mutex<Option<String>>,
    stderr_tail: Mutex<Vec<String>>,
}

struct Paths {
    root: PathBuf,
    config: PathBuf,
    rules: PathBuf,
    db: PathBuf,
    socket: PathBuf,
    work: PathBuf,
    opens: PathBuf,
    bad: PathBuf,
}

impl Paths {
    fn create() -> Result<Paths> {
        let root = std::env::temp_dir().join(format!("secmon-soak-{}", std::process::id()));
        let p = Paths {
            config: root.join("secmon.toml"),
            rules: root.join("rules"),
            db: root.join("events.db"),
            socket: root.join("run/control.sock"),
            work: root.join("work"),
            opens: root.join("work/open"),
            bad: root.join("work/soak-bad"),
            root,
        };
        for dir in [
            &p.rules,
            &p.opens,
            &p.socket.parent().unwrap_or(&p.root).to_path_buf(),
        ] {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        Ok(p)
    }
}

pub fn run(args: SoakArgs) -> Result<ExitCode> {
    if !util::is_root() {
        bail!("the soak loads eBPF programs: run it as root (sudo -E cargo xtask soak)");
    }
    for tool in ["bpftool", "sqlite3"] {
        if util::find_program(tool).is_none() {
            bail!("`{tool}` is needed (cargo xtask setup installs it)");
        }
    }
    let bin = util::build_release()?;
    let paths = Paths::create()?;
    eprintln!(
        "xtask soak: {} min, state in {}",
        args.minutes,
        paths.root.display()
    );
    setup_files(&paths)?;

    let load = Arc::new(Load::default());
    let floods = start_floods(&paths, &bin, &load)?;
    let mut totals = Totals::default();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.minutes * 60);
    let mut next_progress = started + Duration::from_secs(60);
    let mut rules_version = 0u64;
    while Instant::now() < deadline || totals.lives == 0 {
        let graceful = totals.lives % 2 == 1
            || deadline.saturating_duration_since(Instant::now())
                < Duration::from_secs(args.life_secs * 2);
        let life_end = (Instant::now() + Duration::from_secs(args.life_secs))
            .min(deadline.max(Instant::now() + Duration::from_secs(20)));
        let ctx = LifeContext {
            bin: &bin,
            paths: &paths,
            load: &load,
            rss_limit_kib: args.rss_limit_mib * 1024,
        };
        let result = live_once(
            &ctx,
            life_end,
            graceful,
            &mut totals,
            &mut rules_version,
            &mut next_progress,
            started,
        );
        if let Err(e) = result {
            totals
                .failures
                .push(format!("life {}: {e:#}", totals.lives));
            break;
        }
    }
    load.stop.store(true, Relaxed);
    load.paused.store(false, Relaxed);
    for flood in floods {
        let _ = flood.join();
    }
    totals.bad_killed = load.bad_killed.load(Relaxed);
    totals.protected_runs = load.protected_runs.load(Relaxed);
    for name in load
        .protected_killed
        .lock()
        .map(|v| v.clone())
        .unwrap_or_default()
    {
        totals
            .failures
            .push(format!("protected program killed: {name}"));
    }
    if totals.bad_killed == 0 {
        totals.failures.push(
            "the rule's block never killed the soak's bad program: is enforcement on?".into(),
        );
    }
    print_summary(&totals, &load, started.elapsed());
    if totals.failures.is_empty() && !args.keep {
        let _ = std::fs::remove_dir_all(&paths.root);
    } else {
        eprintln!("xtask soak: state kept in {}", paths.root.display());
    }
    Ok(if totals.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The config (all state in the temp dir), the rules (the repository's, and one soak rule
/// file rewritten on every reload), and the soak's bad program (a copy of /bin/true).
fn setup_files(p: &Paths) -> Result<()> {
    let config = format!(
        r#"# cargo xtask soak: everything in {root}
[response]
enforce = true
allowlist = ["sshd"]
deny_ttl_secs = 30
control_socket = "{socket}"
alert_log = "{root}/alerts.log"
log_level = "suspicious"

[storage]
enabled = true
path = "{db}"
"#,
        root = p.root.display(),
        socket = p.socket.display(),
        db = p.db.display(),
    );
    std::fs::write(&p.config, config).context("writing the soak config")?;
    let repo_rules = util::repo_root().join("rules");
    copy_json_files(&repo_rules, &p.rules)?;
    write_soak_rules(p, 0)?;
    std::fs::copy("/bin/true", &p.bad).context("copying /bin/true")?;
    std::fs::copy("/bin/true", p.work.join("soak-true")).context("copying /bin/true")?;
    Ok(())
}

fn copy_json_files(from: &Path, to: &Path) -> Result<()> {
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let path = entry?.path();
        let dest = to.join(path.file_name().unwrap_or_default());
        if path.is_dir() {
            std::fs::create_dir_all(&dest)?;
            copy_json_files(&path, &dest)?;
        } else if path.extension().is_some_and(|e| e == "json") {
            std::fs::copy(&path, &dest).with_context(|| format!("copying {}", path.display()))?;
        }
    }
    Ok(())
}

/// The soak's rules; `version` changes a score, so each rewrite is a real reload.
fn write_soak_rules(p: &Paths, version: u64) -> Result<()> {
    let score = 0.7 + (version % 2) as f64 * 0.1;
    let text = format!(
        r#"[
  {{"name": "soak_bad_program", "condition": "event.type == 'process_exec' && process.path == '{bad}'",
    "risk_score": {score:.1}, "action": "block", "label": "soak: the bad program ran (v{version})"}},
  {{"name": "soak_protected_trigger", "condition": "event.type == 'process_exec' && process.cmdline.contains('secmon-soak-trigger')",
    "risk_score": 0.9, "action": "block", "label": "soak: a protected program matched a block rule"}}
]
"#,
        bad = p.bad.display()
    );
    let tmp = p.rules.join(".soak.json.tmp");
    std::fs::write(&tmp, text).context("writing the soak rules")?;
    std::fs::rename(&tmp, p.rules.join("soak.json")).context("replacing the soak rules")
}

// --- load ----------------------------------------------------------------------------------

/// Runs `step` in a thread until `stop`, waiting while `paused`.
fn flood(
    load: &Arc<Load>,
    pause: Duration,
    mut step: impl FnMut() + Send + 'static,
) -> thread::JoinHandle<()> {
    let load = load.clone();
    thread::spawn(move || {
        while !load.stop.load(Relaxed) {
            if load.paused.load(Relaxed) {
                thread::sleep(Duration::from_millis(20));
                continue;
            }
            // SeqCst on `busy` and `paused` (here and in the stopper): a pause set between
            // the two loads must be seen by the check inside, or the stopper sees us busy.
            load.busy.fetch_add(1, SeqCst);
            if !load.paused.load(SeqCst) {
                step();
            }
            load.busy.fetch_sub(1, SeqCst);
            thread::sleep(pause);
        }
    })
}

fn start_floods(p: &Paths, bin: &Path, load: &Arc<Load>) -> Result<Vec<thread::JoinHandle<()>>> {
    let mut threads = Vec::new();
    // exec: a harmless program, and every 20th time the bad one the soak rule blocks.
    let (good, bad) = (p.work.join("soak-true"), p.bad.clone());
    let l = load.clone();
    let mut n = 0u64;
    threads.push(flood(load, EXEC_PAUSE, move || {
        n += 1;
        let program = if n.is_multiple_of(20) { &bad } else { &good };
        if let Ok(status) = Command::new(program).status() {
            l.execs.fetch_add(1, Relaxed);
            if program == &bad && status.signal() == Some(9) {
                l.bad_killed.fetch_add(1, Relaxed);
            }
        }
    }));
    // open: files the stream is searched for (their directory is unique to this soak).
    let (opens, l) = (p.opens.clone(), load.clone());
    let mut n = 0u64;
    threads.push(flood(load, OPEN_PAUSE, move || {
        n += 1;
        if std::fs::File::create(opens.join(format!("f{}", n % 64))).is_ok() {
            l.opens.fetch_add(1, Relaxed);
        }
    }));
    // connect: loopback only.
    let listener = TcpListener::bind("127.0.0.1:0").context("binding a loopback listener")?;
    let addr = listener.local_addr()?;
    let l = load.clone();
    thread::spawn(move || {
        for stream in listener.incoming() {
            drop(stream);
            if l.stop.load(Relaxed) {
                break;
            }
        }
    });
    let l = load.clone();
    threads.push(flood(load, CONNECT_PAUSE, move || {
        if TcpStream::connect(addr).is_ok() {
            l.connects.fetch_add(1, Relaxed);
        }
    }));
    // The protected programs, and one that matches the soak's block rule.
    let l = load.clone();
    let monitor = bin.to_path_buf();
    threads.push(flood(load, PROTECTED_EVERY, move || {
        run_protected(&l, &monitor)
    }));
    Ok(threads)
}

fn run_protected(load: &Load, monitor: &Path) {
    let mut runs: Vec<(String, Command)> = PROTECTED
        .iter()
        .filter_map(|(name, args)| {
            let path = util::find_program(name).or_else(|| {
                let sbin = Path::new("/usr/sbin").join(name);
                sbin.is_file().then_some(sbin)
            })?;
            let mut cmd = Command::new(path);
            cmd.args(*args);
            Some((name.to_string(), cmd))
        })
        .collect();
    let mut me = Command::new(monitor);
    me.arg("--version");
    runs.push(("secmon-tui".into(), me));
    // A shell whose command line matches a block rule: the deny must be refused.
    if load.provoke_rule.load(Relaxed)
        && let Some(bash) = util::find_program("bash")
    {
        let mut trigger = Command::new(bash);
        trigger.args(["-c", ": secmon-soak-trigger"]);
        runs.push(("bash (matching a block rule)".into(), trigger));
    }
    for (name, mut cmd) in runs {
        let status = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        load.protected_runs.fetch_add(1, Relaxed);
        if let Ok(status) = status
            && status.signal() == Some(9)
            && let Ok(mut killed) = load.protected_killed.lock()
        {
            killed.push(name);
        }
    }
}

// --- one life --------------------------------------------------------------------------------

struct LifeContext<'a> {
    bin: &'a Path,
    paths: &'a Paths,
    load: &'a Arc<Load>,
    rss_limit_kib: u64,
}

#[allow(clippy::too_many_arguments)]
fn live_once(
    ctx: &LifeContext,
    until: Instant,
    graceful: bool,
    totals: &mut Totals,
    rules_version: &mut u64,
    next_progress: &mut Instant,
    started: Instant,
) -> Result<()> {
    totals.lives += 1;
    let life = totals.lives;
    let p = ctx.paths;
    let mut child = Command::new(ctx.bin)
        .args(["--json", "--ring-buffer-mib", "4", "--config"])
        .arg(&p.config)
        .arg("--rules")
        .arg(&p.rules)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting secmon-tui")?;
    let pid = child.id();
    let stream = Arc::new(Stream::default());
    let marker = format!("\"{}/", p.opens.display());
    let readers = start_readers(&mut child, &stream, marker)?;
    let ready_by = Instant::now() + READY_TIMEOUT;
    while !stream.ready.load(Relaxed) {
        if Instant::now() > ready_by || child.try_wait()?.is_some() {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the monitor did not start; stderr:\n{}", tail(&stream));
        }
        thread::sleep(Duration::from_millis(50));
    }
    let objects = kernel_objects_of(pid);
    eprintln!(
        "xtask soak: life {life}: monitor {pid} ready ({} programs, {} maps, {} links); ends with {}",
        objects.progs.len(),
        objects.maps.len(),
        objects.links.len(),
        if graceful { "SIGTERM" } else { "SIGKILL" }
    );
    if life == 1 {
        let refused = refuse_protected_denies(ctx.bin, &p.socket, totals);
        ctx.load.provoke_rule.store(refused, Relaxed);
        if !refused {
            eprintln!(
                "xtask soak: the monitor accepted a deny of a protected program: the shell that \
                 matches a block rule is not run"
            );
        }
    }
    let opens_at_start = ctx.load.opens.load(Relaxed);
    let life_start = Instant::now();
    let stall_at = life_start + (until - life_start) / 3;
    let mut stalled_until: Option<Instant> = None;
    let mut over_limit = false;
    let (mut next_reload, mut next_control) =
        (life_start + RELOAD_EVERY, life_start + CONTROL_EVERY);
    while Instant::now() < until {
        let now = Instant::now();
        if let Some(rss) = rss_kib(pid) {
            totals.rss_max_kib = totals.rss_max_kib.max(rss);
            if rss > ctx.rss_limit_kib && !over_limit {
                over_limit = true;
                totals.failures.push(format!(
                    "life {life}: RSS {} MiB over the limit",
                    rss / 1024
                ));
            }
        }
        if child.try_wait()?.is_some() {
            bail!("the monitor exited by itself; stderr:\n{}", tail(&stream));
        }
        if stalled_until.is_none() && now >= stall_at {
            stream.stall.store(true, Relaxed);
            stalled_until = Some(now + STALL_FOR);
        }
        if stalled_until.is_some_and(|t| now >= t) {
            stream.stall.store(false, Relaxed);
        }
        if now >= next_reload {
            *rules_version += 1;
            write_soak_rules(p, *rules_version)?;
            next_reload = now + RELOAD_EVERY;
        }
        if now >= next_control {
            if control_answers(ctx.bin, &p.socket) {
                totals.control_ok += 1;
            } else {
                totals.control_failed += 1;
                totals.failures.push(format!(
                    "life {life}: the control socket did not answer `block list`"
                ));
            }
            next_control = now + CONTROL_EVERY;
        }
        if now >= *next_progress {
            progress(totals, ctx.load, &stream, started);
            *next_progress += Duration::from_secs(60);
        }
        thread::sleep(Duration::from_millis(250));
    }
    stream.stall.store(false, Relaxed);

    let mut opens_made = None;
    if graceful {
        // Floods pause (and are seen to), so every open counted is in the kernel's stream
        // before the monitor starts draining.
        ctx.load.paused.store(true, SeqCst);
        while ctx.load.busy.load(SeqCst) > 0 {
            thread::sleep(Duration::from_millis(5));
        }
        opens_made = Some(ctx.load.opens.load(Relaxed) - opens_at_start);
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        totals.sigterms += 1;
    } else {
        child.kill().context("SIGKILL")?;
        totals.sigkills += 1;
    }
    let stop_by = Instant::now() + STOP_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > stop_by {
            let _ = child.kill();
            totals.failures.push(format!(
                "life {life}: no exit within {} s of SIGTERM",
                STOP_TIMEOUT.as_secs()
            ));
            break child.wait()?;
        }
        thread::sleep(Duration::from_millis(50));
    };
    for reader in readers {
        let _ = reader.join();
    }
    ctx.load.paused.store(false, Relaxed);
    totals.events += stream.events.load(Relaxed);
    totals.reloads += stream.reloads.load(Relaxed);

    if let Some(made) = opens_made {
        let seen = stream.marker_seen.load(Relaxed);
        let stopped = stream.stopped_line.lock().ok().and_then(|s| s.clone());
        let Some(stopped) = stopped else {
            bail!(
                "no `stopped` line after SIGTERM ({status:?}); stderr:\n{}",
                tail(&stream)
            );
        };
        let losses = losses_in(&stopped);
        totals.losses_counted += losses;
        totals.marker_made += made;
        totals.marker_seen += seen;
        if seen < made && losses == 0 {
            totals.failures.push(format!(
                "life {life}: {} of {made} file opens missing from the stream, but no loss counted: {stopped}",
                made - seen
            ));
        }
    }
    if let Err(left) = wait_released(&objects) {
        totals.failures.push(format!(
            "life {life}: left in the kernel after exit: {left}"
        ));
    }
    match integrity_check(&p.db) {
        Ok(()) => {}
        Err(e) => totals
            .failures
            .push(format!("life {life}: history database: {e}")),
    }
    Ok(())
}

fn tail(stream: &Stream) -> String {
    stream
        .stderr_tail
        .lock()
        .map(|t| t.join("\n"))
        .unwrap_or_default()
}

fn start_readers(
    child: &mut Child,
    stream: &Arc<Stream>,
    marker: String,
) -> Result<Vec<thread::JoinHandle<()>>> {
    let stdout = child.stdout.take().context("stdout is piped")?;
    let stderr = child.stderr.take().context("stderr is piped")?;
    let s = stream.clone();
    let out = thread::spawn(move || {
        let mut reader = BufReader::with_capacity(1 << 16, stdout);
        let mut line = Vec::new();
        loop {
            // The stalled consumer: stop reading, the pipe and then the monitor back up.
            while s.stall.load(Relaxed) {
                thread::sleep(Duration::from_millis(50));
            }
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            s.events.fetch_add(1, Relaxed);
            if memchr(&line, marker.as_bytes()) {
                s.marker_seen.fetch_add(1, Relaxed);
            }
        }
    });
    let s = stream.clone();
    let err = thread::spawn(move || {
        let mut text = String::new();
        let mut reader = BufReader::new(stderr);
        loop {
            text.clear();
            match reader.read_line(&mut text) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let line = text.trim_end().to_string();
            if line.starts_with("secmon: ready") {
                s.ready.store(true, Relaxed);
            } else if line.starts_with("secmon: rules reloaded") {
                s.reloads.fetch_add(1, Relaxed);
            } else if line.starts_with("secmon: stopped")
                && let Ok(mut stopped) = s.stopped_line.lock()
            {
                *stopped = Some(line.clone());
            }
            if let Ok(mut tail) = s.stderr_tail.lock() {
                tail.push(line);
                if tail.len() > 40 {
                    tail.remove(0);
                }
            }
        }
    });
    Ok(vec![out, err])
}

fn memchr(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every loss the `stopped` line counts: the numbers before `dropped`, `lost` or
/// `undecodable` (`… 12 dropped in the kernel, 0 undecodable`).
fn losses_in(stopped: &str) -> u64 {
    let words: Vec<&str> = stopped
        .split([' ', ',', ';', '(', ')'])
        .filter(|w| !w.is_empty())
        .collect();
    // `…; losses: N (reason n, …)` counts every reason (the kernel's drops included).
    if let Some(total) = words
        .windows(2)
        .find(|w| w[0] == "losses:")
        .and_then(|w| w[1].parse::<u64>().ok())
    {
        return total;
    }
    // Before that field: the kernel's drops and undecodable records.
    words
        .windows(2)
        .filter(|w| {
            ["dropped", "lost", "undecodable"]
                .iter()
                .any(|k| w[1].starts_with(k))
        })
        .filter_map(|w| w[0].parse::<u64>().ok())
        .sum()
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

// --- the kernel, the database, the control socket -------------------------------------------

#[derive(Default)]
struct KernelObjects {
    progs: BTreeSet<u32>,
    maps: BTreeSet<u32>,
    links: BTreeSet<u32>,
}

/// The BPF objects a process holds, from its fds' fdinfo (`prog_id:`, `map_id:`, `link_id:`).
fn kernel_objects_of(pid: u32) -> KernelObjects {
    let mut objects = KernelObjects::default();
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return objects;
    };
    for fd in fds.flatten() {
        let Ok(info) = std::fs::read_to_string(fd.path()) else {
            continue;
        };
        for line in info.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let Ok(id) = value.trim().parse::<u32>() else {
                continue;
            };
            match key {
                "link_id" => {
                    objects.links.insert(id);
                }
                "prog_id" => {
                    objects.progs.insert(id);
                }
                "map_id" => {
                    objects.maps.insert(id);
                }
                _ => {}
            }
        }
    }
    objects
}

/// Waits until none of `objects` exists any more; else says which are left.
fn wait_released(objects: &KernelObjects) -> Result<(), String> {
    let deadline = Instant::now() + RELEASE_TIMEOUT;
    loop {
        let mut left = String::new();
        for (kind, ids) in [
            ("prog", &objects.progs),
            ("map", &objects.maps),
            ("link", &objects.links),
        ] {
            let alive: Vec<String> = ids
                .iter()
                .filter(|id| bpftool_has(kind, **id))
                .map(u32::to_string)
                .collect();
            if !alive.is_empty() {
                let _ = write!(left, "{kind} {} ", alive.join(","));
            }
        }
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(left.trim_end().to_string());
        }
        thread::sleep(Duration::from_millis(200));
    }
}

fn bpftool_has(kind: &str, id: u32) -> bool {
    Command::new("bpftool")
        .args([kind, "show", "id", &id.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn integrity_check(db: &Path) -> Result<(), String> {
    if !db.exists() {
        return Err(format!("{} was not created", db.display()));
    }
    let out = Command::new("sqlite3")
        .arg(db)
        .arg("PRAGMA integrity_check;")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running sqlite3: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if out.status.success() && text.trim() == "ok" {
        Ok(())
    } else {
        Err(format!(
            "PRAGMA integrity_check: {} {}",
            text.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// `secmon-tui block <args> --socket S` with a time limit; its output, or None.
fn control(bin: &Path, socket: &Path, args: &[&str]) -> Option<(bool, String)> {
    let mut child = Command::new(bin)
        .arg("block")
        .args(args)
        .arg("--socket")
        .arg(socket)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let mut text = String::new();
            if let Some(mut out) = child.stdout.take() {
                let _ = out.read_to_string(&mut text);
            }
            if let Some(mut err) = child.stderr.take() {
                let _ = err.read_to_string(&mut text);
            }
            return Some((status.success(), text));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn control_answers(bin: &Path, socket: &Path) -> bool {
    control(bin, socket, &["list"]).is_some_and(|(ok, _)| ok)
}

/// Asks the control socket to deny protected programs: every request must be refused. One
/// that is accepted is removed at once and is a failure. Shells are left out: on a monitor
/// that accepts, even a moment's deny of `sh` would break whatever else runs on the machine.
/// Returns whether all were refused.
fn refuse_protected_denies(bin: &Path, socket: &Path, totals: &mut Totals) -> bool {
    let mut all_refused = true;
    for name in ["sshd", "sudo", "su", "login", "tmux", "secmon-tui"] {
        let Some((accepted, text)) = control(bin, socket, &["add", "exec", name, "--ttl", "1"])
        else {
            totals.failures.push(format!(
                "the control socket did not answer `block add exec {name}`"
            ));
            continue;
        };
        if accepted {
            let id = text
                .split_whitespace()
                .find_map(|w| w.strip_prefix('#').and_then(|n| n.parse::<u32>().ok()));
            if let Some(id) = id {
                let _ = control(bin, socket, &["remove", &id.to_string()]);
            }
            totals.failures.push(format!(
                "the control socket accepted a deny of protected `{name}`: {}",
                text.trim()
            ));
            all_refused = false;
        }
    }
    all_refused
}

// --- reporting -------------------------------------------------------------------------------

fn progress(totals: &Totals, load: &Load, stream: &Stream, started: Instant) {
    eprintln!(
        "xtask soak: {:>3} min: life {}, events {}, reloads {}, rss max {} MiB, execs {}, opens {}, connects {}, bad program killed {}, control {}/{}, failures {}",
        started.elapsed().as_secs() / 60,
        totals.lives,
        totals.events + stream.events.load(Relaxed),
        totals.reloads + stream.reloads.load(Relaxed),
        totals.rss_max_kib / 1024,
        load.execs.load(Relaxed),
        load.opens.load(Relaxed),
        load.connects.load(Relaxed),
        load.bad_killed.load(Relaxed),
        totals.control_ok,
        totals.control_ok + totals.control_failed,
        totals.failures.len()
    );
}

fn print_summary(t: &Totals, load: &Load, elapsed: Duration) {
    let rows: Vec<(&str, String)> = vec![
        (
            "duration",
            format!("{:.1} min", elapsed.as_secs_f64() / 60.0),
        ),
        (
            "monitor lives",
            format!(
                "{} ({} SIGKILL, {} SIGTERM)",
                t.lives, t.sigkills, t.sigterms
            ),
        ),
        ("events read", t.events.to_string()),
        (
            "execs / opens / connects made",
            format!(
                "{} / {} / {}",
                load.execs.load(Relaxed),
                load.opens.load(Relaxed),
                load.connects.load(Relaxed)
            ),
        ),
        ("rule reloads seen", t.reloads.to_string()),
        ("RSS max", format!("{} MiB", t.rss_max_kib / 1024)),
        (
            "marker opens seen / made (SIGTERM lives)",
            format!("{} / {}", t.marker_seen, t.marker_made),
        ),
        (
            "losses counted (SIGTERM lives)",
            t.losses_counted.to_string(),
        ),
        (
            "control socket answered",
            format!("{} / {}", t.control_ok, t.control_ok + t.control_failed),
        ),
        (
            "bad program killed by a rule block",
            t.bad_killed.to_string(),
        ),
        (
            "protected program runs / killed",
            format!(
                "{} / {}",
                t.protected_runs,
                load.protected_killed.lock().map(|k| k.len()).unwrap_or(0)
            ),
        ),
        (
            "kernel objects left after exits",
            if t.failures.iter().any(|f| f.contains("left in the kernel")) {
                "SOME".into()
            } else {
                "none".into()
            },
        ),
        (
            "database integrity_check",
            if t.failures.iter().any(|f| f.contains("history database")) {
                "FAILED".into()
            } else {
                "ok".into()
            },
        ),
    ];
    eprintln!("xtask soak: summary");
    for (what, value) in rows {
        eprintln!("  {what:<42} {value}");
    }
    if t.failures.is_empty() {
        println!("xtask soak: ok");
    } else {
        for f in &t.failures {
            eprintln!("xtask soak: FAILED: {f}");
        }
        println!("xtask soak: FAILED ({} problems)", t.failures.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_losses_of_a_stopped_line() {
        let line = "secmon: stopped: 10 events written, 12 kernel records, 3 dropped in the kernel, 1 undecodable";
        assert_eq!(losses_in(line), 4);
        assert_eq!(
            losses_in("secmon: stopped: 5 events written, 0 dropped, 0 undecodable"),
            0
        );
        assert_eq!(
            losses_in("secmon: stopped: 5 events written; lost: 7 lost (ring full)"),
            7
        );
        // The line as it is now: every reason in one total (a stalled stdout's included).
        let line = "secmon: stopped: 10 events written, 12 kernel records, 0 dropped in the \
                    kernel, 0 undecodable; losses: 250 (output_queue_full 250); cut short: \
                    processing the last events (3 records not processed)";
        assert_eq!(losses_in(line), 250);
    }
}
