//! Every loss is visible: a real ring-buffer overflow is counted so that events written plus
//! losses account for every event the flood generated, and a stalled stdout neither blocks the
//! monitor nor its stop (SIGTERM exits within 2 s, the losses reported).
use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{
    BIN, DEFAULT_TIMEOUT, Instance, READY_LINE, READY_TIMEOUT, SHARED_CONFIG, TestDir,
    die_with_parent, marker, parse_json_lines, path_str, require_root, wait_timeout,
};

/// Opens `path` `n` times: `n` file_open events, recognised by the path.
fn open_many(path: &std::path::Path, n: u64) {
    for _ in 0..n {
        drop(File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display())));
    }
}

/// The state letter of `/proc/<pid>/stat` (`T` once stopped by SIGSTOP).
fn process_state(pid: u32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The comm, in parentheses, may hold spaces: the state follows the last ')'.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Waits (bounded) until the process is stopped.
fn wait_stopped(pid: u32) {
    let deadline = Instant::now() + DEFAULT_TIMEOUT;
    while process_state(pid) != Some('T') {
        assert!(
            Instant::now() < deadline,
            "monitor pid {pid} not stopped by SIGSTOP within {DEFAULT_TIMEOUT:?}"
        );
        thread::sleep(Duration::from_millis(5));
    }
}

/// The `stats` records of a stream, in order, with the number of event lines before each.
fn stats_records(lines: &[Value]) -> Vec<(usize, &Value)> {
    let mut events = 0;
    let mut out = Vec::new();
    for line in lines {
        if line.get("record").and_then(Value::as_str) == Some("stats") {
            out.push((events, line));
        } else {
            events += 1;
        }
    }
    out
}

fn count(v: &Value, reason: &str) -> u64 {
    v["losses"][reason]
        .as_u64()
        .unwrap_or_else(|| panic!("stats record without losses.{reason}: {v}"))
}

/// A flood while the monitor cannot read (stopped with SIGSTOP, as a starved monitor would
/// be) overflows the smallest ring: every event of the flood is either written or counted.
#[test]
fn ring_overflow_is_counted_end_to_end() {
    require_root();
    let _flood = crate::common::flooding_the_machine();
    let marker = marker();
    let dir = TestDir::new(&marker);
    let target = dir.join("flood");
    fs::write(&target, b"").expect("create the flood's file");
    let target_str = path_str(&target);
    let mut monitor = smallest_ring_monitor();
    monitor.wait_ready();
    let pid = monitor.pid();

    monitor.signal(libc::SIGSTOP);
    wait_stopped(pid);
    // ~600 bytes a record: a 1 MiB ring holds under 2 000 of them.
    let generated = 20_000;
    open_many(&target, generated);
    monitor.signal(libc::SIGCONT);
    monitor.signal(libc::SIGINT);
    let (status, stdout, stderr) = monitor.finish(Duration::from_secs(30));
    assert!(status.success(), "monitor: {status}\n{}", stderr.join("\n"));
    let (lines, bad) = parse_json_lines(&stdout);
    assert!(bad.is_empty(), "non-JSON output: {bad:?}");

    let written = lines
        .iter()
        .filter(|e| {
            e.get("event_type").and_then(Value::as_str) == Some("file_open")
                && e.get("file_path").and_then(Value::as_str) == Some(target_str.as_str())
        })
        .count() as u64;
    let stats = stats_records(&lines);
    let (events_before, last) = *stats
        .last()
        .unwrap_or_else(|| panic!("no stats record; stderr:\n{}", stderr.join("\n")));
    assert_eq!(
        last["final"], true,
        "the last stats record is the final one: {last}"
    );
    assert_eq!(
        last["events"].as_u64(),
        Some(events_before as u64),
        "`events` counts the event lines before the record"
    );
    let ring = count(last, "ring_buffer_full");
    assert!(
        written < generated,
        "the ring never overflowed: all {generated} events written"
    );
    assert!(
        ring > 0,
        "the overflow was not counted in the kernel: {last}"
    );
    // Drops are counted per ring, not per process: other processes' events that found the
    // ring full are counted too, so the count covers the flood's losses at least. The stop
    // comes right after the flood: what was read but not yet handled when the stop's drain
    // deadline passed (a loaded machine) is counted too, as such.
    let at_stop = count(last, "unprocessed_at_stop") + count(last, "output_unwritten_at_stop");
    assert!(
        written + ring + at_stop >= generated,
        "{generated} events generated, {written} written, only {ring} counted as lost in the \
         kernel (ring_buffer_full) and {at_stop} at stop; final stats: {last}"
    );
    assert_eq!(
        last["lost"].as_u64(),
        Some(
            [
                "ring_buffer_full",
                "pending_table_full",
                "decode_error",
                "process_table_eviction",
                "fd_table_reset",
                "history_queue_full",
                "history_write_failed",
                "webhook_queue_full",
                "unprocessed_at_stop",
                "output_queue_full",
                "output_unwritten_at_stop"
            ]
            .iter()
            .map(|r| count(last, r))
            .sum::<u64>()
        ),
        "`lost` is the sum of `losses`: {last}"
    );
    let stopped = stderr
        .iter()
        .find(|l| l.starts_with("secmon: stopped:"))
        .unwrap_or_else(|| panic!("no stopped line:\n{}", stderr.join("\n")));
    let reported = stopped
        .split("ring_buffer_full ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("the stopped line names no ring_buffer_full count: {stopped}"));
    assert!(
        reported >= ring,
        "stopped line {stopped:?} vs final stats {last}"
    );
}

/// A monitor whose stdout is a pipe nobody reads, and its stderr lines.
struct Stalled {
    child: Child,
    /// Held open and never read.
    _stdout: ChildStdout,
    stderr: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Stalled {
    fn start(args: &[&str]) -> Stalled {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        die_with_parent(&mut cmd);
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("start {BIN}: {e}"));
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Stalled {
            child,
            _stdout: stdout,
            stderr: rx,
            seen: Vec::new(),
        }
    }

    /// The first stderr line `pred` accepts within `timeout`, doing `work` between looks.
    fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        mut work: impl FnMut(),
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            while let Ok(line) = self.stderr.try_recv() {
                self.seen.push(line.clone());
                if pred(&line) {
                    return line;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no stderr line {what} within {timeout:?}; stderr:\n{}",
                self.seen.join("\n")
            );
            work();
        }
    }
}

impl Drop for Stalled {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// stdout a pipe nobody reads: the monitor goes on (its output losses are reported while it
/// runs), and SIGTERM still stops it within 2 s with those losses in the stopped line.
#[test]
fn sigterm_exits_within_2s_with_stdout_stalled() {
    require_root();
    let _flood = crate::common::flooding_the_machine();
    let marker = marker();
    let dir = TestDir::new(&marker);
    let target = dir.join("stall");
    fs::write(&target, b"").expect("create the file");
    let mut monitor = Stalled::start(&["--json", "--config", SHARED_CONFIG]);
    monitor.wait_for(
        &format!("`{READY_LINE}`"),
        READY_TIMEOUT,
        || thread::sleep(Duration::from_millis(10)),
        |l| l == READY_LINE,
    );
    // More JSON than the pipe (64 KiB) and the output's queue (8 MiB) hold; a bounded flood,
    // so that what SIGTERM finds waiting is what the stall left, not a backlog of analysis.
    open_many(&target, 30_000);
    // The pipeline went on: it counted (and reported) what stdout could not take.
    monitor.wait_for(
        "saying events were not written",
        Duration::from_secs(60),
        || thread::sleep(Duration::from_millis(10)),
        |l| l.contains("events not written (stdout is not keeping up"),
    );

    let pid = libc::pid_t::try_from(monitor.child.id()).expect("pid fits pid_t");
    let sent = Instant::now();
    // SAFETY: kill has no memory-safety preconditions; the child is ours and not yet reaped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = wait_timeout(&mut monitor.child, Duration::from_secs(10));
    let took = sent.elapsed();
    let status = status.unwrap_or_else(|| {
        panic!(
            "no exit 10 s after SIGTERM with stdout stalled; stderr:\n{}",
            monitor.seen.join("\n")
        )
    });
    let stopped = monitor.wait_for(
        "`secmon: stopped:`",
        DEFAULT_TIMEOUT,
        || thread::sleep(Duration::from_millis(10)),
        |l| l.starts_with("secmon: stopped:"),
    );
    assert!(
        status.success(),
        "exit status {status}; stderr:\n{}",
        monitor.seen.join("\n")
    );
    // Detaching the probes is the kernel's part of any stop (an RCU grace period per
    // tracepoint, seconds when other monitors stop at the same time); the stall must cost
    // nothing on top of it.
    let detached = monitor
        .seen
        .iter()
        .find_map(|l| l.strip_prefix("secmon: probes detached in "))
        .and_then(|rest| rest.strip_suffix(" ms"))
        .and_then(|ms| ms.parse::<u64>().ok())
        .map(Duration::from_millis)
        .unwrap_or_else(|| panic!("no `probes detached` line:\n{}", monitor.seen.join("\n")));
    eprintln!("stop with stdout stalled: {took:?}, {detached:?} of it detaching");
    assert!(
        took.saturating_sub(detached) < Duration::from_secs(2),
        "SIGTERM took {took:?} ({detached:?} of it detaching the probes) to stop the monitor \
         with stdout stalled; stderr:\n{}",
        monitor.seen.join("\n")
    );
    assert!(
        stopped.contains("output_queue_full"),
        "the stopped line reports the output's losses: {stopped}"
    );
}

/// The reader maps the ring's data pages once (`capture::ring`), so a record whose data wraps
/// around the end of the ring is put back together by copying: opens of paths of many lengths
/// make the smallest ring wrap a dozen times with records of every length, and each one must
/// come out whole and exactly once. The opens go in chunks far smaller than the ring, each
/// followed by a sync point, so nothing is dropped.
#[test]
fn records_wrapping_around_the_ring_arrive_whole() {
    require_root();
    let _quiet = crate::common::no_machine_flood();
    let dir = TestDir::new(&marker());
    let deep = dir.join("d".repeat(200));
    fs::create_dir(&deep).expect("create the deep directory");
    // Paths of 120 lengths (from ~50 to ~490 bytes), each file's name saying which it is.
    let paths: Vec<std::path::PathBuf> = (0..120usize)
        .map(|i| {
            let filler = char::from(b'a' + (i % 26) as u8).to_string();
            let name = format!("{i:04}-{}", filler.repeat((i * 37) % 240));
            let parent = if i % 2 == 0 {
                dir.path()
            } else {
                deep.as_path()
            };
            let path = parent.join(name);
            fs::write(&path, b"").expect("create a file to open");
            path
        })
        .collect();
    let mut monitor = smallest_ring_monitor();
    monitor.wait_ready();

    // ~330 bytes a record on average: 250 rounds of 120 opens pass ~10 MiB through the ring.
    let rounds = 250;
    for round in 0..rounds {
        for path in &paths {
            drop(File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display())));
        }
        if round % 4 == 3 {
            monitor.sync_point(dir.path());
        }
    }
    let signal_pid = monitor.pid();
    let events = monitor.stop_for_events();

    let wanted: std::collections::HashMap<String, usize> = paths
        .iter()
        .enumerate()
        .map(|(i, p)| (path_str(p), i))
        .collect();
    let mut seen = vec![0u32; paths.len()];
    let prefix = path_str(dir.path());
    for e in &events {
        let Some(path) = e.get("file_path").and_then(Value::as_str) else {
            continue;
        };
        if e.get("event_type").and_then(Value::as_str) != Some("file_open")
            || !path.starts_with(&prefix)
            || path.contains("/sync-")
        {
            continue;
        }
        let i = *wanted
            .get(path)
            .unwrap_or_else(|| panic!("an open of a path never opened (a torn record?): {e}"));
        seen[i] += 1;
    }
    let stats = stats_records(&events);
    let (_, last) = stats.last().expect("a final stats record");
    assert_eq!(count(last, "decode_error"), 0, "final stats: {last}");
    for (i, n) in seen.iter().enumerate() {
        assert_eq!(
            *n,
            rounds,
            "path #{i} ({} bytes) came out {n} times of {rounds} (monitor {signal_pid}); \
             final stats: {last}",
            path_str(&paths[i]).len()
        );
    }
}

/// `secmon-tui --json` with the smallest ring buffer (1 MiB), for the tests that overflow or
/// wrap it.
fn smallest_ring_monitor() -> Instance {
    Instance::start(&[
        "--json",
        "--config",
        SHARED_CONFIG,
        "--ring-buffer-mib",
        "1",
    ])
}
