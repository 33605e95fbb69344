//! The web controller under a flood: `secmon-tui serve` while the load generator opens files
//! at a fixed rate, twice with the same load: first with no web client, then with
//! [`CLIENTS`] WebSocket clients on `/api/v1/events` reading everything. Kernel drops must not
//! move because of the clients; the added CPU and the peak memory per client are recorded.
use std::fs;
use std::io::Read as _;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use super::report::{WebPhase, WebResult};
use super::tui::{cpu_seconds, finish_load, start_load, stop_counts};
use crate::util;

/// WebSocket clients of the second phase.
pub const CLIENTS: usize = 20;
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// One client: counts the events and the losses its messages report.
struct Client {
    events: Arc<AtomicU64>,
    lost: Arc<AtomicU64>,
    thread: JoinHandle<()>,
}

/// `VmHWM` of `pid`, in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// `VmRSS` of `pid`, in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// The controller's address from its `serving http://ADDR/` line.
pub(super) fn wait_serving(stderr: &Path) -> Result<String> {
    let start = Instant::now();
    while start.elapsed() < READY_TIMEOUT {
        let text = fs::read_to_string(stderr).unwrap_or_default();
        if let Some(addr) = text
            .lines()
            .find_map(|l| l.split_once("serving http://"))
            .and_then(|(_, rest)| rest.split('/').next())
        {
            return Ok(addr.to_string());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!(
        "no `serving http://` line in {} within a minute",
        stderr.display()
    )
}

/// A WebSocket on a controller's (or hub's) `/api/v1/events?QUERY` with `token`, whose reads
/// give up after `read_timeout` (so a reader can look at its stop flag).
pub(super) fn events_socket(
    addr: &str,
    token: &str,
    query: &str,
    read_timeout: Duration,
) -> Result<tungstenite::WebSocket<TcpStream>> {
    let request = tungstenite::http::Request::builder()
        .uri(format!("ws://{addr}/api/v1/events{query}"))
        .header("Host", addr)
        .header("Authorization", format!("Bearer {token}"))
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header(
            "Sec-WebSocket-Key",
            tungstenite::handshake::client::generate_key(),
        )
        .body(())?;
    let stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(read_timeout))?;
    let (socket, _) = tungstenite::client(request, stream)
        .map_err(|e| anyhow::anyhow!("WebSocket handshake with {addr}: {e}"))?;
    Ok(socket)
}

/// Hands each text message of `socket` to `on_text` until `stop` is set, the socket fails or
/// `on_text` answers false; then closes it. Reads time out (see [`events_socket`]) so that
/// `stop` is looked at.
pub(super) fn read_texts(
    mut socket: tungstenite::WebSocket<TcpStream>,
    stop: &AtomicBool,
    mut on_text: impl FnMut(&str) -> bool,
) {
    while !stop.load(Ordering::Relaxed) {
        match socket.read() {
            Ok(tungstenite::Message::Text(text)) => {
                if !on_text(&text) {
                    break;
                }
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    let _ = socket.close(None);
}

/// Whether a stream message is `{"type":"lost",…}`.
pub(super) fn is_lost_message(text: &str) -> bool {
    text.contains("\"type\":\"lost\"")
}

/// The `"events":N` of a `{"type":"lost",…}` message.
pub(super) fn lost_events(text: &str) -> u64 {
    text.split("\"events\":")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn connect(addr: &str, token: &str, stop: Arc<AtomicBool>) -> Result<Client> {
    let socket = events_socket(addr, token, "", Duration::from_millis(200))?;
    let events = Arc::new(AtomicU64::new(0));
    let lost = Arc::new(AtomicU64::new(0));
    let (counted, lost_counted) = (events.clone(), lost.clone());
    let thread = std::thread::spawn(move || {
        // The clients stand for browsers on other machines: here they share the monitor's two
        // cores, so they run at the lowest priority, as the monitor's own threads should not
        // pay for reading 20 copies of the stream.
        // SAFETY: setpriority on the calling thread (tid) only changes its nice value.
        unsafe {
            libc::setpriority(libc::PRIO_PROCESS as _, libc::gettid() as libc::id_t, 19);
        }
        read_texts(socket, &stop, |text| {
            // Counting without parsing the whole batch: one `"event_type"` per event.
            if is_lost_message(text) {
                lost_counted.fetch_add(lost_events(text), Ordering::Relaxed);
            } else {
                let n = text.matches("\"event_type\"").count() as u64;
                counted.fetch_add(n, Ordering::Relaxed);
            }
            true
        });
    });
    Ok(Client {
        events,
        lost,
        thread,
    })
}

/// The monitor under `config` with a private token and audit log in `dir`.
fn start_serve(secmon: &Path, config: &Path, dir: &Path, name: &str) -> Result<(Child, PathBuf)> {
    let own = dir.join(format!("{name}.toml"));
    let base = fs::read_to_string(config)?;
    fs::write(
        &own,
        format!(
            "{base}\n[controller]\nlisten = \"127.0.0.1:0\"\ntoken_file = {:?}\naudit_log = {:?}\n",
            dir.join("token").display().to_string(),
            dir.join("audit.log").display().to_string()
        ),
    )?;
    let err = dir.join(format!("{name}.err"));
    let child = Command::new(secmon)
        .args(["serve", "--config"])
        .arg(&own)
        .arg("--rules")
        .arg(util::repo_root().join("rules"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&err)?)
        .spawn()
        .context("starting secmon-tui serve")?;
    Ok((child, err))
}

fn stop(child: &mut Child) {
    // SAFETY: kill has no memory-safety preconditions; the child is ours.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let _ = child.wait();
}

/// One phase: the monitor, `clients` WebSocket clients, the load.
fn phase(
    secmon: &Path,
    loadgen: &Path,
    config: &Path,
    dir: &Path,
    clients: usize,
    rate: u64,
    secs: u64,
) -> Result<WebPhase> {
    let (mut child, err) = start_serve(secmon, config, dir, &format!("serve-{clients}"))?;
    let addr = match wait_serving(&err) {
        Ok(addr) => addr,
        Err(e) => {
            stop(&mut child);
            return Err(e);
        }
    };
    let token = fs::read_to_string(dir.join("token"))?.trim().to_string();
    let stop_clients = Arc::new(AtomicBool::new(false));
    let mut connected = Vec::new();
    for _ in 0..clients {
        connected.push(connect(&addr, &token, stop_clients.clone())?);
    }
    std::thread::sleep(Duration::from_secs(1));
    let rss_before = rss_kib(child.id()).unwrap_or(0);
    let cpu_before = cpu_seconds(child.id());
    let load = finish_load(start_load(loadgen, rate, secs)?)?;
    let cpu_after = cpu_seconds(child.id());
    // The clients read what is still queued.
    std::thread::sleep(Duration::from_secs(2));
    let peak_kib = peak_rss_kib(child.id()).unwrap_or(0);
    stop_clients.store(true, Ordering::Relaxed);
    let mut delivered = Vec::new();
    let mut lost = Vec::new();
    for client in connected {
        let _ = client.thread.join();
        delivered.push(client.events.load(Ordering::Relaxed));
        lost.push(client.lost.load(Ordering::Relaxed));
    }
    stop(&mut child);
    let mut text = String::new();
    fs::File::open(&err)?.read_to_string(&mut text)?;
    let (events, drops) = stop_counts(&text);
    Ok(WebPhase {
        clients,
        generated: load.ops,
        load_secs: load.secs,
        cpu_secs: cpu_after.zip(cpu_before).map_or(0.0, |(a, b)| a - b),
        rss_before_kib: rss_before,
        peak_kib,
        events,
        drops,
        delivered,
        lost,
    })
}

/// Both phases: no client, then [`CLIENTS`].
pub fn measure(
    secmon: &Path,
    loadgen: &Path,
    config: &Path,
    rate: u64,
    secs: u64,
) -> Result<WebResult> {
    let dir = util::target_dir().join("bench").join("web");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)?;
    let alone = phase(secmon, loadgen, config, &dir, 0, rate, secs)?;
    std::thread::sleep(Duration::from_secs(2));
    let with_clients = phase(secmon, loadgen, config, &dir, CLIENTS, rate, secs)?;
    Ok(WebResult {
        rate,
        secs,
        alone,
        with_clients,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process_memory() {
        assert!(peak_rss_kib(std::process::id()).is_some_and(|k| k > 0));
        assert!(rss_kib(std::process::id()).is_some_and(|k| k > 0));
    }
}
