//! Detection latency: the time from a syscall to its alert line on `secmon-tui --json`'s
//! standard output, with the shipped defaults (history on, rules on), first with the machine
//! idle, then under a flood of opens from the load generator.
//!
//! The trigger is a read-only open of `/etc/shadow` by this process, which the shipped rule
//! `shadow_file_read` rates suspicious. The clock starts just before the `open` and stops when
//! the reader thread has read the line that names it: everything in between (the kernel
//! record, the ring buffer, decoding, enrichment, the rule engine, the JSON sink and the pipe)
//! is counted. Nothing is written anywhere.
use std::fs::{self, File};
use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use super::report::{LatencyPhase, LatencyResult};
use super::tui::{finish_load, start_load, stop_counts};
use crate::util;

/// The file whose read the shipped pack alerts on.
const TRIGGER: &str = "/etc/shadow";
/// How long one alert may take before the trigger counts as missed.
const ALERT_TIMEOUT: Duration = Duration::from_secs(5);
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Pause between two triggers, so that each alert is waited for on its own.
const SPACING: Duration = Duration::from_millis(10);

/// Measures `samples` alerts idle, then `samples` under `rate` opens/s.
pub fn measure(
    secmon: &Path,
    loadgen: &Path,
    config: &Path,
    rate: u64,
    samples: usize,
) -> Result<LatencyResult> {
    let dir = util::target_dir().join("bench").join("latency");
    fs::create_dir_all(&dir)?;
    let stderr_path = dir.join("json.err");
    let mut monitor = Monitor::start(secmon, config, &stderr_path)?;
    let idle = monitor.phase(0, samples);
    // Long enough for every trigger under load, with room to spare.
    let load_secs = 2 + (samples as u64 * (SPACING.as_millis() as u64 + 20)).div_ceil(1000);
    let load = start_load(loadgen, rate, load_secs)?;
    // Let the flood reach its rate before the first trigger.
    thread::sleep(Duration::from_millis(500));
    let loaded = monitor.phase(rate, samples);
    let generated = finish_load(load)?;
    let drops = monitor.stop(&stderr_path);
    Ok(LatencyResult {
        idle: idle?,
        loaded: LatencyPhase {
            generated: generated.ops,
            load_secs: generated.secs,
            ..loaded?
        },
        drops,
    })
}

/// `secmon-tui --json` with a thread reading its output: each line naming the trigger by this
/// process and rated above benign is reported with the instant it was read.
struct Monitor {
    child: Child,
    alerts: Receiver<Instant>,
    reader: Option<JoinHandle<()>>,
}

impl Monitor {
    fn start(secmon: &Path, config: &Path, stderr_path: &Path) -> Result<Monitor> {
        let stderr = File::create(stderr_path)?;
        let mut child = Command::new(secmon)
            .arg("--json")
            .arg("--config")
            .arg(config)
            .arg("--rules")
            .arg(util::repo_root().join("rules"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .context("starting secmon-tui --json")?;
        let stdout = child.stdout.take().context("stdout is piped")?;
        let (tx, alerts) = mpsc::channel();
        let needle = format!("\"file_path\":\"{TRIGGER}\"");
        let ours = format!("\"pid\":{},", std::process::id());
        let reader = thread::spawn(move || {
            let mut lines = BufReader::with_capacity(1 << 20, stdout);
            let mut line = Vec::new();
            while matches!(lines.read_until(b'\n', &mut line), Ok(n) if n > 0) {
                let read_at = Instant::now();
                if let Ok(text) = std::str::from_utf8(&line)
                    && text.contains(&needle)
                    && text.contains(&ours)
                    && !text.contains("\"severity\":\"benign\"")
                    && tx.send(read_at).is_err()
                {
                    return;
                }
                line.clear();
            }
        });
        let mut monitor = Monitor {
            child,
            alerts,
            reader: Some(reader),
        };
        monitor.wait_ready(stderr_path)?;
        Ok(monitor)
    }

    fn wait_ready(&mut self, stderr_path: &Path) -> Result<()> {
        let start = Instant::now();
        while start.elapsed() < READY_TIMEOUT {
            let text = fs::read_to_string(stderr_path).unwrap_or_default();
            if text.contains("secmon: ready") {
                // Start-up work (seeding the process table from /proc) is then over.
                thread::sleep(Duration::from_millis(500));
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                bail!("secmon-tui --json exited before it was ready ({status}):\n{text}");
            }
            thread::sleep(Duration::from_millis(50));
        }
        bail!("secmon-tui --json was not ready after {READY_TIMEOUT:?}")
    }

    /// `samples` triggers, one at a time.
    fn phase(&mut self, rate: u64, samples: usize) -> Result<LatencyPhase> {
        let mut phase = LatencyPhase {
            rate,
            ..LatencyPhase::default()
        };
        for _ in 0..samples {
            // A late alert of a missed trigger must not be taken for this one's.
            while self.alerts.try_recv().is_ok() {}
            thread::sleep(SPACING);
            let start = Instant::now();
            File::open(TRIGGER).with_context(|| format!("reading {TRIGGER} as the trigger"))?;
            match self.alerts.recv_timeout(ALERT_TIMEOUT) {
                Ok(read_at) => phase
                    .latencies_ms
                    .push(read_at.duration_since(start).as_secs_f64() * 1000.0),
                Err(RecvTimeoutError::Timeout) => phase.missed += 1,
                Err(RecvTimeoutError::Disconnected) => bail!("secmon-tui --json stopped"),
            }
        }
        Ok(phase)
    }

    /// Stops the monitor; returns its kernel drops.
    fn stop(mut self, stderr_path: &Path) -> u64 {
        // SAFETY: kill has no memory-safety preconditions; the child is ours.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        stop_counts(&fs::read_to_string(stderr_path).unwrap_or_default()).1
    }
}
