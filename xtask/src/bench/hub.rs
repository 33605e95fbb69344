//! The hub's delay: the time from a syscall on a publishing monitor to its event on the live
//! stream of `secmon-tui hub` (`/api/v1/events`, the WebSocket the dashboard's API clients
//! read), first with the machine idle, then under the NATS step's flood of opens.
//!
//! Everything runs on this machine: a `nats-server -js` of the bench's own on a loopback port,
//! `secmon-tui --json` exporting to it as host `bench` (`[export.nats]`, as in `bench/nats.rs`),
//! and `secmon-tui hub --nats URL` serving on a loopback port with a token of its own. A
//! WebSocket client logs in to the hub with that token and asks for the events whose path holds
//! this run's mark (`?text=MARK`, the live page's own server-side filter), so the client reads
//! the marks only while the hub takes every event the monitor publishes.
//!
//! The marks are opens of files `MARK-<n>` by this process, one every [`SPACING`], without
//! waiting for the previous one's arrival: the clock starts just before the `open` and stops
//! when the client has read the message that names the file. Everything in between is counted:
//! capture, the monitor's pipeline, the exporter (serialising, its queue, the publish),
//! JetStream, the hub's subscription, deduplication and decoding, its hub and the WebSocket.
use std::collections::HashMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use super::nats::{exporter_counts, free_port, publisher_config, start_server, stop, wait_for};
use super::report::{HubResult, LatencyPhase};
use super::tui::{cpu_seconds, finish_load, start_load, stop_counts};
use super::web::{events_socket, is_lost_message, lost_events, read_texts};
use crate::util;

/// Each mark's number and the instant the client read it.
type Arrivals = Receiver<(usize, Instant)>;

/// Pause between two marks.
const SPACING: Duration = Duration::from_millis(20);
/// Marks the warm-up may use (one each half second).
const WARM_UP_MARKS: usize = 120;
/// How long the last marks of a phase may still take before they count as missed.
const STRAGGLERS: Duration = Duration::from_secs(5);

/// Measures `samples` marks idle, then `samples` under `rate` opens/s.
pub fn measure(
    secmon: &Path,
    loadgen: &Path,
    base_config: &str,
    rate: u64,
    samples: usize,
) -> Result<HubResult> {
    let dir = util::target_dir().join("bench").join("hub");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("marks"))?;
    let port = free_port()?;
    let mut server = start_server(&dir, port)?;
    // The warm-up's marks (one every half second for a minute at most) and both phases'.
    let marks = WARM_UP_MARKS + 2 * samples;
    let result = Setup::start(secmon, base_config, &dir, port, marks).and_then(|mut setup| {
        let measured = setup.measure(loadgen, rate, samples);
        let (publisher, hub) = setup.stop();
        let (idle, loaded, generated) = measured?;
        let (events, drops) = stop_counts(&publisher);
        let (published, lost) = exporter_counts(&publisher);
        Ok(HubResult {
            rate,
            idle,
            loaded,
            generated,
            events,
            drops,
            published,
            lost,
            hub_cpu_secs: hub.cpu_secs,
            stream_lost: hub.stream_lost,
        })
    });
    let _ = server.kill();
    let _ = server.wait();
    let _ = fs::remove_dir_all(dir.join("store"));
    result
}

/// The hub's side once stopped.
struct HubTotals {
    /// The hub's CPU over the flooded phase.
    cpu_secs: f64,
    /// Events the hub told the client it could not send (`{"type":"lost"}` messages).
    stream_lost: u64,
}

/// The publisher, the hub and the client, running.
struct Setup {
    dir: PathBuf,
    publisher: Child,
    hub: Child,
    arrivals: Arrivals,
    stream_lost: Arc<AtomicU64>,
    stop_client: Arc<AtomicBool>,
    client: Option<JoinHandle<()>>,
    hub_cpu_secs: f64,
    /// The marks' files, made before the publisher started (so their creation is not on the
    /// stream), each opened once.
    marks: Vec<PathBuf>,
    /// Marks used so far.
    made: usize,
}

impl Setup {
    fn start(
        secmon: &Path,
        base_config: &str,
        dir: &Path,
        port: u16,
        marks: usize,
    ) -> Result<Setup> {
        let mark = format!("hubmark{}x{port}", std::process::id());
        let marks = (0..marks)
            .map(|n| {
                let path = dir.join("marks").join(format!("{mark}-{n}."));
                File::create(&path).map(|_| path)
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        let url = format!("nats://127.0.0.1:{port}");
        let hub_err = dir.join("hub.err");
        let hub_config = dir.join("hub.toml");
        fs::write(
            &hub_config,
            "# Written by `cargo xtask bench`: the hub's own (its flags say the rest).\n",
        )?;
        let token_file = dir.join("hub.token");
        let mut hub = Command::new(secmon)
            .args(["hub", "--nats", &url, "--listen", "127.0.0.1:0", "--config"])
            .arg(&hub_config)
            .arg("--token-file")
            .arg(&token_file)
            .arg("--audit-log")
            .arg(dir.join("hub-audit.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&hub_err)?)
            .spawn()
            .context("starting secmon-tui hub")?;
        let addr = match super::web::wait_serving(&hub_err) {
            Ok(addr) => addr,
            Err(e) => {
                stop(&mut hub);
                return Err(e);
            }
        };
        let config = dir.join("publisher.toml");
        fs::write(&config, publisher_config(base_config, dir, port))?;
        let publisher_err = dir.join("publisher.err");
        let mut publisher = Command::new(secmon)
            .args(["--json", "--config"])
            .arg(&config)
            .arg("--rules")
            .arg(util::repo_root().join("rules"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&publisher_err)?)
            .spawn()
            .context("starting secmon-tui --json")?;
        let ready = wait_for(&publisher_err, "secmon: ready")
            .and_then(|()| wait_for(&publisher_err, "NATS: connected"));
        if let Err(e) = ready {
            stop(&mut publisher);
            stop(&mut hub);
            return Err(e);
        }
        let token = fs::read_to_string(&token_file)
            .with_context(|| format!("reading the hub's token {}", token_file.display()))?
            .trim()
            .to_string();
        let stop_client = Arc::new(AtomicBool::new(false));
        let stream_lost = Arc::new(AtomicU64::new(0));
        let (arrivals, client) = match follow(
            &addr,
            &token,
            &mark,
            stop_client.clone(),
            stream_lost.clone(),
        ) {
            Ok(running) => running,
            Err(e) => {
                stop(&mut publisher);
                stop(&mut hub);
                return Err(e);
            }
        };
        Ok(Setup {
            dir: dir.to_path_buf(),
            publisher,
            hub,
            arrivals,
            stream_lost,
            stop_client,
            client: Some(client),
            hub_cpu_secs: 0.0,
            marks,
            made: 0,
        })
    }

    /// Both phases; returns them and the opens the generator made.
    fn measure(
        &mut self,
        loadgen: &Path,
        rate: u64,
        samples: usize,
    ) -> Result<(LatencyPhase, LatencyPhase, u64)> {
        // The hub knows the host once its first status came (every 2 s): a first mark that
        // arrives says the whole path works.
        self.warm_up()?;
        let idle = self.phase(0, samples)?;
        let load_secs = 2 + (samples as u64 * SPACING.as_millis() as u64).div_ceil(1000);
        let load = start_load(loadgen, rate, load_secs)?;
        // Let the flood reach its rate before the first mark.
        thread::sleep(Duration::from_millis(500));
        let cpu_before = cpu_seconds(self.hub.id());
        let loaded = self.phase(rate, samples);
        let cpu_after = cpu_seconds(self.hub.id());
        self.hub_cpu_secs = cpu_after.zip(cpu_before).map_or(0.0, |(a, b)| a - b);
        let generated = finish_load(load)?;
        let loaded = LatencyPhase {
            generated: generated.ops,
            load_secs: generated.secs,
            ..loaded?
        };
        Ok((idle, loaded, generated.ops))
    }

    /// Marks until one arrives (at most a minute).
    fn warm_up(&mut self) -> Result<()> {
        for _ in 0..WARM_UP_MARKS {
            let (n, path) = self.next_mark()?;
            File::open(&path)?;
            let deadline = Instant::now() + Duration::from_millis(500);
            while let Some(left) = deadline.checked_duration_since(Instant::now()) {
                match self.arrivals.recv_timeout(left) {
                    Ok((got, _)) if got == n => return Ok(()),
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        }
        bail!("no mark reached the hub's live stream within a minute")
    }

    /// The next mark: its number and its file.
    fn next_mark(&mut self) -> Result<(usize, PathBuf)> {
        let n = self.made;
        self.made += 1;
        let path = self.marks.get(n).cloned().context("no mark files left")?;
        Ok((n, path))
    }

    /// `samples` marks, one every [`SPACING`]; then the stragglers are waited for.
    fn phase(&mut self, rate: u64, samples: usize) -> Result<LatencyPhase> {
        while self.arrivals.try_recv().is_ok() {}
        let mut opened: HashMap<usize, Instant> = HashMap::with_capacity(samples);
        let mut arrived: HashMap<usize, Instant> = HashMap::with_capacity(samples);
        for _ in 0..samples {
            let (n, path) = self.next_mark()?;
            thread::sleep(SPACING);
            opened.insert(n, Instant::now());
            File::open(&path).with_context(|| format!("opening the mark {}", path.display()))?;
            while let Ok((got, at)) = self.arrivals.try_recv() {
                arrived.entry(got).or_insert(at);
            }
        }
        let deadline = Instant::now() + STRAGGLERS;
        while opened.keys().any(|n| !arrived.contains_key(n)) {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                break;
            };
            match self.arrivals.recv_timeout(left) {
                Ok((got, at)) => {
                    arrived.entry(got).or_insert(at);
                }
                Err(_) => break,
            }
        }
        let mut phase = LatencyPhase {
            rate,
            ..LatencyPhase::default()
        };
        for (n, start) in &opened {
            match arrived.get(n) {
                Some(at) => phase
                    .latencies_ms
                    .push(at.saturating_duration_since(*start).as_secs_f64() * 1000.0),
                None => phase.missed += 1,
            }
        }
        Ok(phase)
    }

    /// Stops the client, the publisher and the hub; returns the publisher's stderr.
    fn stop(mut self) -> (String, HubTotals) {
        self.stop_client.store(true, Ordering::Relaxed);
        if let Some(client) = self.client.take() {
            let _ = client.join();
        }
        stop(&mut self.publisher);
        stop(&mut self.hub);
        let publisher = fs::read_to_string(self.dir.join("publisher.err")).unwrap_or_default();
        (
            publisher,
            HubTotals {
                cpu_secs: self.hub_cpu_secs,
                stream_lost: self.stream_lost.load(Ordering::Relaxed),
            },
        )
    }
}

/// A WebSocket client on the hub's `/api/v1/events?text=MARK`: sends each mark's number with
/// the instant the message naming it was read.
fn follow(
    addr: &str,
    token: &str,
    mark: &str,
    stop: Arc<AtomicBool>,
    lost: Arc<AtomicU64>,
) -> Result<(Arrivals, JoinHandle<()>)> {
    let socket = events_socket(
        addr,
        token,
        &format!("?text={mark}"),
        Duration::from_millis(100),
    )?;
    let (tx, rx) = mpsc::channel();
    let needle = format!("{mark}-");
    let thread = thread::spawn(move || {
        read_texts(socket, &stop, |text| {
            let read_at = Instant::now();
            if is_lost_message(text) {
                lost.fetch_add(lost_events(text), Ordering::Relaxed);
            }
            mark_numbers(text, &needle).all(|n| tx.send((n, read_at)).is_ok())
        });
    });
    Ok((rx, thread))
}

/// The numbers after each `needle` in `text` (`…hubmark12x34-7.` → 7).
fn mark_numbers<'a>(text: &'a str, needle: &'a str) -> impl Iterator<Item = usize> + 'a {
    text.split(needle).skip(1).filter_map(|rest| {
        let digits = rest.split(|c: char| !c.is_ascii_digit()).next()?;
        digits.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_marks_and_the_losses_in_a_message() {
        let text = r#"{"type":"events","events":[{"file_path":"/t/hubmark1x2-7."},{"file_path":"/t/hubmark1x2-12."},{"file_path":"/t/other-3"}]}"#;
        assert_eq!(
            mark_numbers(text, "hubmark1x2-").collect::<Vec<_>>(),
            vec![7, 12]
        );
        assert_eq!(mark_numbers("nothing", "hubmark1x2-").count(), 0);
        assert_eq!(lost_events(r#"{"type":"lost","events":42}"#), 42);
        assert_eq!(lost_events(r#"{"type":"lost"}"#), 0);
    }
}
