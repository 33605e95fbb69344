//! The NATS exporter under a flood: a `nats-server -js` of the bench's own on a loopback port,
//! `secmon-tui --json` (history off, stdout to /dev/null) while the load generator opens files
//! at a fixed rate, twice with the same load: without `[export.nats]`, then with it. Kernel
//! drops must not move because of the exporter; what it published (acknowledged by JetStream)
//! per second, what it lost, nats-server's CPU (per message: what bounds the rate on a small
//! machine, where the server shares the cores), and the delay from each event's capture to its arrival at a
//! subscriber are recorded.
//!
//! The subscriber speaks the NATS text protocol itself (a few lines: CONNECT, SUB, MSG, PING),
//! so xtask needs no NATS client; the delay is its arrival time minus the event's own
//! `timestamp` (the kernel's clock, moved to wall time by the monitor).
use std::fs;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail};

use super::report::{NatsPhase, NatsResult};
use super::tui::{cpu_seconds, finish_load, start_load, stop_counts};
use crate::util;

const READY_TIMEOUT: Duration = Duration::from_secs(60);

pub(super) fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub(super) fn start_server(dir: &Path, port: u16) -> Result<Child> {
    let binary = ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .or_else(|| util::find_program("nats-server"))
        .context("nats-server is not installed (cargo xtask setup installs it)")?;
    let child = Command::new(binary)
        .args(["-js", "-sd"])
        .arg(dir.join("store"))
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting nats-server")?;
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if start.elapsed() > READY_TIMEOUT {
            bail!("nats-server did not listen on port {port}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(child)
}

/// A subscriber on `subject`: the delay of every message, in milliseconds.
struct Subscriber {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<f64>>,
}

fn subscribe(port: u16, subject: &str) -> Result<Subscriber> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_millis(200)))?;
    // Without headers: the server strips JetStream's `Nats-Msg-Id` and sends plain MSGs.
    write!(
        stream,
        "CONNECT {{\"verbose\":false,\"pedantic\":false,\"headers\":false}}\r\nSUB {subject} 1\r\nPING\r\n"
    )?;
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = stop.clone();
    let thread = std::thread::spawn(move || read_messages(stream, &stopping));
    Ok(Subscriber { stop, thread })
}

fn read_messages(stream: TcpStream, stop: &AtomicBool) -> Vec<f64> {
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(_) => return Vec::new(),
    };
    let mut reader = BufReader::with_capacity(1 << 20, stream);
    let mut delays = Vec::new();
    let mut line = String::new();
    let mut payload = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(_) => break,
        }
        if line.starts_with("PING") {
            let _ = writer.write_all(b"PONG\r\n");
            continue;
        }
        let Some(rest) = line.strip_prefix("MSG ") else {
            continue;
        };
        let Some(len) = rest
            .split_whitespace()
            .last()
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        payload.resize(len + 2, 0);
        if reader.read_exact(&mut payload).is_err() {
            break;
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        // A packed message (`events_per_message`) is JSON lines: one delay per event.
        for event in payload[..len].split(|&b| b == b'\n') {
            if let Some(at) = event_time_ns(event) {
                delays.push((now - at) as f64 / 1e6);
            }
        }
    }
    delays
}

/// The event's `"timestamp":"YYYY-MM-DDTHH:MM:SS.fffffffffZ"` as nanoseconds since the epoch.
fn event_time_ns(json: &[u8]) -> Option<i128> {
    let text = std::str::from_utf8(json).ok()?;
    let start = text.find("\"timestamp\":\"")? + "\"timestamp\":\"".len();
    let stamp = text.get(start..)?.split('"').next()?;
    let (date, time) = stamp.strip_suffix('Z')?.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|p| p.parse::<i64>().ok());
    let (h, min, s) = (t.next()??, t.next()??, t.next()??);
    let nanos: i64 = format!("{frac:0<9}").get(..9)?.parse().ok()?;
    let days = days_from_civil(y, m, day);
    let secs = days * 86_400 + h * 3600 + min * 60 + s;
    Some(i128::from(secs) * 1_000_000_000 + i128::from(nanos))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

pub(super) fn wait_for(stderr: &Path, what: &str) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < READY_TIMEOUT {
        if fs::read_to_string(stderr)
            .unwrap_or_default()
            .contains(what)
        {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("no {what:?} in {} within a minute", stderr.display())
}

/// The exporter's `NATS: stopped: N events taken, E events acknowledged, M messages
/// acknowledged, B bytes left ...; lost: nats_queue_full Q, nats_spool_full S` → (E, Q + S).
pub(super) fn exporter_counts(stderr: &str) -> (u64, u64) {
    let Some(line) = stderr.lines().find(|l| l.contains("NATS: stopped:")) else {
        return (0, 0);
    };
    let before = |word: &str| -> u64 {
        line.find(word)
            .and_then(|at| line[..at].split_whitespace().last()?.parse().ok())
            .unwrap_or(0)
    };
    let after = |word: &str| -> u64 {
        line.find(word)
            .and_then(|at| {
                line[at + word.len()..]
                    .split(|c: char| !c.is_ascii_digit())
                    .find(|s| !s.is_empty())?
                    .parse()
                    .ok()
            })
            .unwrap_or(0)
    };
    (
        before(" events acknowledged"),
        after("nats_queue_full ") + after("nats_spool_full "),
    )
}

/// One phase: `secmon-tui --json` under `config` and the load; when `exporting` to the server
/// (its port and pid), a subscriber too, and the server's CPU.
fn phase(
    secmon: &Path,
    loadgen: &Path,
    config: &Path,
    dir: &Path,
    exporting: Option<(u16, u32)>,
    rate: u64,
    secs: u64,
) -> Result<NatsPhase> {
    let name = if exporting.is_some() { "nats" } else { "plain" };
    let err = dir.join(format!("{name}.err"));
    let mut child = Command::new(secmon)
        .args(["--json", "--config"])
        .arg(config)
        .arg("--rules")
        .arg(util::repo_root().join("rules"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&err)?)
        .spawn()
        .context("starting secmon-tui --json")?;
    let ready = wait_for(&err, "secmon: ready").and_then(|()| match exporting {
        Some(_) => wait_for(&err, "NATS: connected"),
        None => Ok(()),
    });
    if let Err(e) = ready {
        stop(&mut child);
        return Err(e);
    }
    let subscriber = match exporting {
        Some((port, _)) => Some(subscribe(port, "secmon.bench.file_open")?),
        None => None,
    };
    std::thread::sleep(Duration::from_secs(1));
    let cpu_before = cpu_seconds(child.id());
    let server = exporting.map(|(_, pid)| pid);
    let server_before = server.and_then(cpu_seconds);
    let load = finish_load(start_load(loadgen, rate, secs)?)?;
    let cpu_after = cpu_seconds(child.id());
    let server_after = server.and_then(cpu_seconds);
    // What is still in flight arrives.
    std::thread::sleep(Duration::from_secs(3));
    stop(&mut child);
    let mut delays = match subscriber {
        Some(subscriber) => {
            subscriber.stop.store(true, Ordering::Relaxed);
            subscriber.thread.join().unwrap_or_default()
        }
        None => Vec::new(),
    };
    delays.sort_by(f64::total_cmp);
    let text = fs::read_to_string(&err)?;
    let (events, drops) = stop_counts(&text);
    let (published, lost) = exporter_counts(&text);
    let quantile = |q: f64| -> f64 {
        if delays.is_empty() {
            0.0
        } else {
            delays[((delays.len() - 1) as f64 * q) as usize]
        }
    };
    Ok(NatsPhase {
        exporting: exporting.is_some(),
        generated: load.ops,
        load_secs: load.secs,
        cpu_secs: cpu_after.zip(cpu_before).map_or(0.0, |(a, b)| a - b),
        server_cpu_secs: server_after.zip(server_before).map_or(0.0, |(a, b)| a - b),
        events,
        drops,
        published,
        lost,
        received: delays.len() as u64,
        delay_p50_ms: quantile(0.5),
        delay_p99_ms: quantile(0.99),
        delay_max_ms: delays.last().copied().unwrap_or(0.0),
    })
}

pub(super) fn stop(child: &mut Child) {
    // SAFETY: kill has no memory-safety preconditions; the child is ours.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let _ = child.wait();
}

/// `base_config` with `[export.nats]` to the server on `port` as host `bench`, its spool and
/// the controller's files (control requests need a token file; none is made) in `dir`.
/// `SECMON_BENCH_EVENTS_PER_MESSAGE=N` sets `events_per_message` (else secmon's default).
pub(super) fn publisher_config(base_config: &str, dir: &Path, port: u16) -> String {
    let packing = std::env::var("SECMON_BENCH_EVENTS_PER_MESSAGE")
        .ok()
        .and_then(|n| n.trim().parse::<u64>().ok())
        .map(|n| format!("events_per_message = {n}\n"))
        .unwrap_or_default();
    let config = format!(
        "{base_config}\n[controller]\ntoken_file = {:?}\naudit_log = {:?}\n\n\
         [export.nats]\nenabled = true\nurl = \"nats://127.0.0.1:{port}\"\nhost = \"bench\"\n\
         spool_dir = {:?}\nspool_max_mb = 1024\n",
        dir.join("no-token").display().to_string(),
        dir.join("audit.log").display().to_string(),
        dir.join("spool").display().to_string(),
    );
    config + &packing
}

/// Both phases at `rate` opens/s for `secs` s: `--json` alone, then with the exporter.
pub fn measure(
    secmon: &Path,
    loadgen: &Path,
    base_config: &str,
    rate: u64,
    secs: u64,
) -> Result<NatsResult> {
    let dir = util::target_dir().join("bench").join("nats");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)?;
    let port = free_port()?;
    let mut server = start_server(&dir, port)?;
    let plain = dir.join("plain.toml");
    fs::write(&plain, base_config)?;
    let exporting = dir.join("nats.toml");
    fs::write(&exporting, publisher_config(base_config, &dir, port))?;
    let result = phase(secmon, loadgen, &plain, &dir, None, rate, secs).and_then(|alone| {
        std::thread::sleep(Duration::from_secs(2));
        let with = phase(
            secmon,
            loadgen,
            &exporting,
            &dir,
            Some((port, server.id())),
            rate,
            secs,
        )?;
        Ok(NatsResult {
            rate,
            secs,
            alone,
            exporting: with,
        })
    });
    let _ = server.kill();
    let _ = server.wait();
    let _ = fs::remove_dir_all(dir.join("store"));
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_event_times_and_the_exporter_line() {
        let json = br#"{"timestamp":"1970-01-02T00:00:01.5Z","event_type":"file_open"}"#;
        assert_eq!(
            event_time_ns(json),
            Some(86_401_i128 * 1_000_000_000 + 500_000_000)
        );
        let json = br#"{"timestamp":"2026-12-03T02:40:00.000000001Z"}"#;
        assert_eq!(
            event_time_ns(json),
            Some(1_796_265_600_i128 * 1_000_000_000 + 1)
        );
        assert_eq!(event_time_ns(b"{}"), None);
        let line = "secmon: NATS: stopped: 10 events taken, 9 events acknowledged, 1 messages \
                    acknowledged, 0 bytes \
                    left in the spool /x; lost: nats_queue_full 2, nats_spool_full 3";
        assert_eq!(exporter_counts(line), (9, 5));
    }
}
