//! Starting and stopping what runs next to a loop: secmon (`secmon-tui --json > /dev/null`) or
//! the equivalent bpftrace script (output to /dev/null). Both are started, waited for until their
//! probes are attached, and stopped with SIGINT and reaped before the next run begins, so no two
//! tracers ever overlap.

use std::fs::OpenOptions;
use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

/// How long a tracer may take to attach its probes.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a tracer may take to drain and exit after SIGINT.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// Printed by secmon once its probes are attached.
const SECMON_READY: &str = "secmon: ready";
/// Printed on stderr by bpftrace after attaching every probe when this variable is set (its test
/// framework uses it; the "Attaching N probes..." line goes to stdout, which is /dev/null here).
const BPFTRACE_NOTIFY: &str = "__BPFTRACE_NOTIFY_PROBES_ATTACHED";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Secmon,
    Bpftrace,
}

/// secmon's end-of-run line: `secmon: stopped: N events written, M kernel records, D dropped in
/// the kernel, E undecodable`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stopped {
    pub events: u64,
    pub records: u64,
    pub dropped: u64,
    pub undecodable: u64,
}

impl Stopped {
    pub fn parse(line: &str) -> Option<Stopped> {
        let rest = line.trim().strip_prefix("secmon: stopped: ")?;
        let mut numbers = rest.split(", ").map(|part| {
            part.split_whitespace()
                .next()
                .and_then(|n| n.parse::<u64>().ok())
        });
        Some(Stopped {
            events: numbers.next()??,
            records: numbers.next()??,
            dropped: numbers.next()??,
            undecodable: numbers.next()??,
        })
    }
}

/// A running tracer.
pub struct Tracer {
    kind: Kind,
    child: Child,
    lines: Receiver<String>,
    reader: Option<JoinHandle<()>>,
    /// stderr lines seen so far.
    seen: Vec<String>,
}

/// What a tracer reported when it stopped.
#[derive(Debug, Clone, Default)]
pub struct TracerReport {
    /// secmon's counters (None for bpftrace, or if the line was missing).
    pub stopped: Option<Stopped>,
}

fn dev_null() -> Result<Stdio> {
    let file = OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .context("opening /dev/null")?;
    Ok(Stdio::from(file))
}

impl Tracer {
    /// `secmon-tui --json --config CONFIG > /dev/null`, returned once it printed `secmon: ready`.
    pub fn secmon(bin: &Path, config: &Path) -> Result<Tracer> {
        let mut cmd = Command::new(bin);
        cmd.arg("--json").arg("--config").arg(config);
        Tracer::start(Kind::Secmon, cmd)
    }

    /// `bpftrace SCRIPT > /dev/null`, returned once every probe is attached.
    pub fn bpftrace(bpftrace: &Path, script: &Path) -> Result<Tracer> {
        let mut cmd = Command::new(bpftrace);
        cmd.arg(script)
            .env(BPFTRACE_NOTIFY, "1")
            // The longest str() bpftrace 0.17 fits on the BPF stack with this script (secmon: 512).
            .env("BPFTRACE_STRLEN", "160");
        Tracer::start(Kind::Bpftrace, cmd)
    }

    fn start(kind: Kind, mut cmd: Command) -> Result<Tracer> {
        cmd.stdin(Stdio::null())
            .stdout(dev_null()?)
            .stderr(Stdio::piped());
        let shown = crate::util::display(&cmd);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("could not start `{shown}`"))?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, lines) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut tracer = Tracer {
            kind,
            child,
            lines,
            reader: Some(reader),
            seen: Vec::new(),
        };
        let marker = match kind {
            Kind::Secmon => SECMON_READY,
            Kind::Bpftrace => BPFTRACE_NOTIFY,
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tracer.lines.recv_timeout(left) {
                Ok(line) => {
                    let ready = line.trim() == marker;
                    tracer.seen.push(line);
                    if ready {
                        break;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = tracer.child.wait().ok();
                    bail!(
                        "`{shown}` exited before its probes were attached ({}):\n{}",
                        status.map_or_else(|| "?".into(), crate::util::describe),
                        tracer.seen.join("\n")
                    );
                }
                Err(RecvTimeoutError::Timeout) => {
                    let _ = tracer.child.kill();
                    let _ = tracer.child.wait();
                    bail!(
                        "`{shown}` did not report its probes attached within {} s:\n{}",
                        READY_TIMEOUT.as_secs(),
                        tracer.seen.join("\n")
                    );
                }
            }
        }
        Ok(tracer)
    }

    /// CPU time (user + system, all threads) the tracer has used so far.
    pub fn cpu_secs(&self) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).ok()?;
        cpu_secs_from_stat(&stat)
    }

    /// The tracer's peak resident memory so far (VmHWM, KiB).
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        vm_hwm_kib(&status)
    }

    /// What the tracer's resident memory is made of now (see [`MemoryParts`]).
    pub fn memory_parts(&self) -> Option<MemoryParts> {
        let pid = self.child.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
        Some(MemoryParts {
            bpf_maps_kib: bpf_maps_rss_kib(&smaps),
            anon_kib: status_field_kib(&status, "RssAnon:")?,
        })
    }

    /// SIGINT, then waits for the tracer to drain and exit (SIGKILL after [`STOP_TIMEOUT`]).
    pub fn stop(mut self) -> Result<TracerReport> {
        let pid = libc::pid_t::try_from(self.child.id()).context("pid out of range")?;
        // SAFETY: plain kill(2) on our own child, which has not been reaped yet.
        unsafe { libc::kill(pid, libc::SIGINT) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.try_wait().context("waiting for the tracer")? {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!(
                    "{:?} did not stop within {} s of SIGINT (killed)",
                    self.kind,
                    STOP_TIMEOUT.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        self.seen.extend(self.lines.try_iter());
        let stopped = self.seen.iter().rev().find_map(|l| Stopped::parse(l));
        if self.kind == Kind::Secmon && (!status.success() || stopped.is_none()) {
            bail!(
                "secmon exited with {} without its `stopped` line:\n{}",
                crate::util::describe(status),
                self.seen.join("\n")
            );
        }
        Ok(TracerReport { stopped })
    }
}

/// `VmHWM:` of proc(5)'s status, in KiB.
pub fn vm_hwm_kib(status: &str) -> Option<u64> {
    status_field_kib(status, "VmHWM:")
}

/// A `<field> <n> kB` line of proc(5)'s status, in KiB.
fn status_field_kib(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Two parts of a tracer's resident memory, at one moment: what the rest of its RSS is made of
/// is mostly its executable's and libraries' pages.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MemoryParts {
    /// The mapped BPF maps (`anon_inode:bpf-map` in smaps): secmon's event ring buffer.
    pub bpf_maps_kib: u64,
    /// Private anonymous memory (`RssAnon`): heap, stacks, caches.
    pub anon_kib: u64,
}

/// The summed `Rss:` of the `anon_inode:bpf-map` mappings of proc(5)'s smaps, in KiB.
fn bpf_maps_rss_kib(smaps: &str) -> u64 {
    let mut in_map = false;
    let mut total = 0;
    for line in smaps.lines() {
        if let Some(rss) = line.strip_prefix("Rss:") {
            if in_map {
                let kib = rss.split_whitespace().next().and_then(|n| n.parse().ok());
                total += kib.unwrap_or(0);
            }
        } else if line
            .split_whitespace()
            .next()
            .is_some_and(|f| f.contains('-') && !f.ends_with(':'))
        {
            // A mapping's first line: `start-end perms offset dev inode [name]`.
            in_map = line.ends_with("anon_inode:bpf-map");
        }
    }
    total
}

/// utime + stime (fields 14 and 15 of proc(5)'s stat) in seconds.
fn cpu_secs_from_stat(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = if ticks > 0 { ticks as f64 } else { 100.0 };
    Some((utime + stime) as f64 / ticks)
}

impl Drop for Tracer {
    fn drop(&mut self) {
        // Only reached without `stop` on an error path: never leave probes attached behind us.
        if self.reader.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_stopped_line() {
        assert_eq!(
            Stopped::parse(
                "secmon: stopped: 1000 events written, 1002 kernel records, 3 dropped in the kernel, 0 undecodable"
            ),
            Some(Stopped {
                events: 1000,
                records: 1002,
                dropped: 3,
                undecodable: 0
            })
        );
        assert_eq!(Stopped::parse("secmon: ready"), None);
        assert_eq!(
            vm_hwm_kib("Name:\tsecmon-tui\nVmPeak:\t 900 kB\nVmHWM:\t   45120 kB\n"),
            Some(45120)
        );
        assert_eq!(vm_hwm_kib("Name:\tx\n"), None);
        assert_eq!(
            status_field_kib("RssAnon:\t   3120 kB\n", "RssAnon:"),
            Some(3120)
        );
        let smaps = "7f00-7f10 r--s 00001000 00:10 1044                       anon_inode:bpf-map\n\
                     Size:              16388 kB\nRss:               16388 kB\n\
                     7f20-7f30 rw-p 00000000 00:00 0 \nRss:                 300 kB\n\
                     7f40-7f50 rw-s 00000000 00:10 1044                       anon_inode:bpf-map\n\
                     Rss:                   4 kB\nPss_Anon:              0 kB\n";
        assert_eq!(bpf_maps_rss_kib(smaps), 16392);
        let stat = "42 (secmon (x) y) S 1 42 42 0 -1 4194560 10 0 0 0 250 50 0 0 20 0 3 0 100 1 1";
        // SAFETY: sysconf takes an integer name and only reads the system's configuration.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        assert_eq!(cpu_secs_from_stat(stat), Some(300.0 / ticks));
        assert_eq!(Stopped::parse("secmon: stopped: x events written"), None);
    }
}
