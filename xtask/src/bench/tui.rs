//! The terminal UI under a flood, in two phases while the load generator opens files at a
//! fixed rate: first `secmon-tui` alone in a 160×48 tmux session, as an operator runs it, with
//! its key-to-screen latency (`?` pressed repeatedly, `capture-pane` polled until the help
//! overlay appears or goes); then the same load again with `secmon-tui --json > /dev/null`
//! beside it, for their CPU time (from `/proc/<pid>/stat`) over the same load. Event and drop
//! counts come from their stop lines.
use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use super::report::TuiResult;
use crate::util;

const WIDTH: &str = "160";
const HEIGHT: &str = "48";
/// Key presses timed (half open the help, half close it).
const PRESSES: usize = 16;
/// What only the help overlay shows. (The pattern is written so that the screen never
/// matches it through a process's command line: `grep` would not find itself.)
const HELP_TITLE: &str = "Keys — any key closes";
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Screen reads while waiting for a key's effect. Each read is a tmux client talking to the
/// tmux server that also has to draw the UI's output: polling every 2 ms slowed the very
/// thing measured (one in three presses then took ~100 ms); 10 ms leaves tmux alone and
/// still resolves a 100 ms target.
const POLL: Duration = Duration::from_millis(10);
const KEY_TIMEOUT: Duration = Duration::from_secs(5);

/// A private tmux server, killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn command(&self) -> Command {
        let mut cmd = Command::new("tmux");
        cmd.args(["-L", &self.socket]).stdin(Stdio::null());
        cmd
    }

    fn capture(&self) -> String {
        self.command()
            .args(["capture-pane", "-p", "-t", "ui"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    fn key(&self, key: &str) -> Result<()> {
        let status = self
            .command()
            .args(["send-keys", "-t", "ui", key])
            .status()?;
        if !status.success() {
            bail!("tmux send-keys {key} failed");
        }
        Ok(())
    }

    fn pane_pid(&self) -> Option<u32> {
        let out = self
            .command()
            .args(["display-message", "-p", "-t", "ui", "#{pane_pid}"])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    }

    /// Polls the screen until `pred` holds; how long it took, or None after `limit`.
    fn wait(&self, limit: Duration, pred: impl Fn(&str) -> bool) -> Option<Duration> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if pred(&self.capture()) {
                return Some(start.elapsed());
            }
            std::thread::sleep(POLL);
        }
        None
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.command().arg("kill-server").status();
    }
}

/// User + system CPU time of `pid`, in seconds.
pub(super) fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) are space-separated; utime and
    // stime are the 14th and 15th fields.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks / hz)
}

/// `secmon: stopped: N events …, M dropped in the kernel …` → (N, M).
pub(super) fn stop_counts(stderr: &str) -> (u64, u64) {
    let Some(line) = stderr
        .lines()
        .rev()
        .find(|l| l.contains("secmon: stopped:"))
    else {
        return (0, 0);
    };
    let number_before = |what: &str| -> u64 {
        line.split(',')
            .find(|part| part.contains(what))
            .and_then(|part| part.split_whitespace().find_map(|w| w.parse().ok()))
            .unwrap_or(0)
    };
    let events = line
        .split_once("stopped:")
        .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    (events, number_before("dropped"))
}

/// The process tmux runs: the pane's shell's child (`secmon-tui`), or the pane itself.
fn ui_pid(tmux: &Tmux) -> Option<u32> {
    let shell = tmux.pane_pid()?;
    let children = fs::read_to_string(format!("/proc/{shell}/task/{shell}/children")).ok()?;
    Some(
        children
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(shell),
    )
}

fn wait_ready(stderr: &Path) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < READY_TIMEOUT {
        if fs::read_to_string(stderr).is_ok_and(|s| s.contains("secmon: ready")) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("no `secmon: ready` in {} within a minute", stderr.display())
}

fn stop(child: &mut Child) {
    // SAFETY: kill has no memory-safety preconditions; the child is ours.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let _ = child.wait();
}

pub(super) fn start_load(loadgen: &Path, rate: u64, secs: u64) -> Result<Child> {
    Command::new(loadgen)
        .args([
            "bench",
            "loadgen",
            "rate",
            &rate.to_string(),
            &secs.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the load generator")
}

pub(super) fn finish_load(load: Child) -> Result<super::loadgen::LoadResult> {
    let out = load.wait_with_output()?;
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    super::loadgen::LoadResult::parse(&line)
        .with_context(|| format!("the load generator printed {line:?}"))
}

/// Runs the measurement: `rate` opens/s for `secs` seconds, twice: the UI alone (key
/// latency), then the UI and `--json` side by side (CPU).
/// `config` is the UI's, `json_config` the `--json` run's beside it (the same settings with a
/// history database of its own: two monitors cannot share one).
pub fn measure(
    secmon: &Path,
    loadgen: &Path,
    config: &Path,
    json_config: &Path,
    rate: u64,
    secs: u64,
) -> Result<TuiResult> {
    if util::find_program("tmux").is_none() {
        bail!("tmux is not installed (cargo xtask setup installs it)");
    }
    let dir = util::target_dir().join("bench").join("tui");
    fs::create_dir_all(&dir)?;
    let ui_err = dir.join("ui.err");
    let json_err = dir.join("json.err");
    let _ = fs::remove_file(&ui_err);
    let rules = util::repo_root().join("rules");
    let tmux = Tmux {
        socket: format!("secmon-bench-{}", std::process::id()),
    };
    let ui_command = format!(
        "{} --config {} --rules {} 2>{}",
        secmon.display(),
        config.display(),
        rules.display(),
        ui_err.display()
    );
    let status = tmux
        .command()
        .args([
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-x",
            WIDTH,
            "-y",
            HEIGHT,
        ])
        .args(["-s", "ui", &ui_command])
        .status()
        .context("tmux new-session")?;
    if !status.success() {
        bail!("tmux new-session failed");
    }
    wait_ready(&ui_err)?;
    tmux.wait(READY_TIMEOUT, |s| s.contains("Processes"))
        .context("the UI never showed its panes")?;
    let ui = ui_pid(&tmux).context("no secmon-tui in the tmux pane")?;

    // Phase 1, the operator's setup: the UI alone under the flood, keys pressed.
    let load = start_load(loadgen, rate, secs)?;
    std::thread::sleep(Duration::from_secs(2));
    let mut latencies = Vec::with_capacity(PRESSES);
    for _ in 0..PRESSES {
        // From what the screen shows now: a lost key must not put every later reading out
        // of step.
        let want_help = !tmux.capture().contains(HELP_TITLE);
        tmux.key("?")?;
        let took = tmux
            .wait(KEY_TIMEOUT, |s| s.contains(HELP_TITLE) == want_help)
            .unwrap_or(KEY_TIMEOUT);
        latencies.push(took.as_secs_f64() * 1e3);
        std::thread::sleep(Duration::from_millis(300));
    }
    let generated = finish_load(load)?;
    std::thread::sleep(Duration::from_secs(2));

    // Phase 2, the comparison: `--json` beside the UI, both under the same flood.
    let mut json = Command::new(secmon)
        .args(["--json", "--config"])
        .arg(json_config)
        .arg("--rules")
        .arg(&rules)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&json_err)?)
        .spawn()
        .context("starting secmon-tui --json")?;
    wait_ready(&json_err)?;
    let before = (cpu_seconds(ui), cpu_seconds(json.id()));
    let side_by_side = finish_load(start_load(loadgen, rate, secs)?)?;
    let after = (cpu_seconds(ui), cpu_seconds(json.id()));

    // Let both drain, then stop them and read their stop lines.
    std::thread::sleep(Duration::from_secs(2));
    let ui_peak_rss_kib = peak_rss_kib(ui);
    let json_peak_rss_kib = peak_rss_kib(json.id());
    tmux.key("q")?;
    stop(&mut json);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline
        && !fs::read_to_string(&ui_err).is_ok_and(|s| s.contains("stopped:"))
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let (ui_events, ui_drops) = stop_counts(&fs::read_to_string(&ui_err).unwrap_or_default());
    let (json_events, json_drops) = stop_counts(&fs::read_to_string(&json_err).unwrap_or_default());
    let spent = |b: Option<f64>, a: Option<f64>| a.zip(b).map_or(0.0, |(a, b)| a - b);
    Ok(TuiResult {
        rate,
        secs,
        generated: generated.ops,
        load_secs: generated.secs,
        side_by_side_generated: side_by_side.ops,
        side_by_side_secs: side_by_side.secs,
        latencies_ms: latencies,
        ui_cpu_secs: spent(before.0, after.0),
        json_cpu_secs: spent(before.1, after.1),
        ui_events,
        ui_drops,
        json_events,
        json_drops,
        ui_peak_rss_kib,
        json_peak_rss_kib,
    })
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    super::tracer::vm_hwm_kib(&fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_stop_line() {
        let text = "secmon: ready\nsecmon: stopped: 1500000 events received, 1600000 kernel records, 12 dropped in the kernel, 0 undecodable\n";
        assert_eq!(stop_counts(text), (1_500_000, 12));
        assert_eq!(stop_counts("nothing"), (0, 0));
    }

    #[test]
    fn reads_cpu_time_of_this_process() {
        assert!(cpu_seconds(std::process::id()).is_some());
    }
}
