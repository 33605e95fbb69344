//! A running monitor's output as it arrives: the one started for the whole test binary
//! ([`monitor`]), checkpoints, waits for events and stderr lines, sync points, and parsing a
//! monitor's stdout.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use super::{
    BIN, DEFAULT_TIMEOUT, READY_LINE, READY_TIMEOUT, SHARED_CONFIG, assert_envelope,
    die_with_parent, marker, path_str, require_root, str_is, test_pid, workspace,
};

/// How many events of the expected type a failure message shows.
const SHOWN_EVENTS: usize = 20;

/// Parses stdout of a monitor: the JSON objects, and the lines that are not JSON objects.
pub fn parse_json_lines(stdout: &[u8]) -> (Vec<Value>, Vec<String>) {
    let mut events = Vec::new();
    let mut bad = Vec::new();
    for line in stdout.split(|&b| b == b'\n') {
        if line.is_empty() {
            continue;
        }
        match parse_event(line) {
            Some(v) => events.push(v),
            None => bad.push(String::from_utf8_lossy(line).into_owned()),
        }
    }
    (events, bad)
}

fn parse_event(line: &[u8]) -> Option<Value> {
    let text = std::str::from_utf8(line).ok()?;
    serde_json::from_str::<Value>(text)
        .ok()
        .filter(Value::is_object)
}

/// A running monitor's output as it arrives (`secmon-tui --json`): the one started for the
/// whole test binary ([`monitor`]), or a test's own ([`Instance`], which derefs to this).
pub struct Monitor {
    pub(super) pid: u32,
    pub(super) shared: Arc<Shared>,
}

/// A monitor's output, filled by its reader threads; `changed` wakes the waits.
#[derive(Default)]
pub(super) struct Shared {
    state: Mutex<State>,
    pub(super) changed: Condvar,
}

#[derive(Default)]
pub(super) struct State {
    events: Vec<Value>,
    /// stdout lines that are not JSON objects (or not UTF-8).
    bad_lines: Vec<String>,
    /// stdout as written, kept only for an [`Instance`](super::Instance) (tests check its
    /// exact bytes).
    pub(super) raw_stdout: Option<Vec<u8>>,
    pub(super) stderr: Vec<String>,
    ready_lines: usize,
    /// Set when the monitor process has exited (how), or its stdout has closed.
    pub(super) exited: Option<String>,
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking test never holds the lock, but do not let one poison every other test.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Where a test starts looking: events that arrive later, acts that happen later.
#[derive(Clone, Copy, Debug)]
pub struct Checkpoint {
    index: usize,
    time: SystemTime,
}

/// The shared monitor, started on first use. Panics (in every test that uses it) when it cannot
/// be started or does not become ready.
pub fn monitor() -> &'static Monitor {
    require_root();
    static MONITOR: OnceLock<Result<Monitor, String>> = OnceLock::new();
    match MONITOR.get_or_init(start_shared_monitor) {
        Ok(m) => m,
        Err(e) => panic!("{e}"),
    }
}

fn start_shared_monitor() -> Result<Monitor, String> {
    let shared: Arc<Shared> = Arc::default();
    let thread_shared = shared.clone();
    let (tx, rx) = mpsc::channel();
    // PR_SET_PDEATHSIG fires when the *thread* that forked the child ends, so the monitor is
    // spawned from a thread that lives as long as the monitor: it dies with the test binary.
    thread::Builder::new()
        .name("secmon-monitor".into())
        .spawn(move || {
            let mut cmd = Command::new(BIN);
            // The source tree's rules, not an installed (and maybe older) copy of them.
            cmd.arg("--json")
                .arg("--config")
                .arg(SHARED_CONFIG)
                .arg("--rules")
                .arg(workspace("rules"))
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            die_with_parent(&mut cmd);
            let mut child = match cmd.spawn() {
                Ok(child) => child,
                Err(e) => {
                    // The receiver only goes away if the test binary is shutting down.
                    let _ = tx.send(Err(format!("cannot start `{BIN} --json`: {e}")));
                    return;
                }
            };
            let stdout = child.stdout.take().expect("the monitor's stdout is piped");
            let stderr = child.stderr.take().expect("the monitor's stderr is piped");
            let _ = tx.send(Ok(child.id()));
            let shared = thread_shared;
            let readers = spawn_readers(&shared, stdout, stderr);
            let status = child.wait();
            // Readers end at EOF; a panic in one would only lose output, which the tests notice.
            for reader in readers {
                let _ = reader.join();
            }
            let how = match status {
                Ok(status) => status.to_string(),
                Err(e) => format!("wait failed: {e}"),
            };
            shared.lock().exited = Some(how);
            shared.changed.notify_all();
        })
        .map_err(|e| format!("cannot spawn the monitor thread: {e}"))?;

    let pid = rx
        .recv()
        .map_err(|_| "the monitor thread ended without starting the monitor".to_string())??;

    let deadline = Instant::now() + READY_TIMEOUT;
    let mut st = shared.lock();
    loop {
        if st.ready_lines > 0 {
            break;
        }
        if let Some(how) = &st.exited {
            return Err(format!(
                "`{BIN} --json` exited ({how}) before printing `{READY_LINE}` on stderr\n{}",
                describe_output(&st)
            ));
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(format!(
                "`{BIN} --json` (pid {pid}) did not print `{READY_LINE}` on stderr within {:?}\n{}",
                READY_TIMEOUT,
                describe_output(&st)
            ));
        }
        st = shared
            .changed
            .wait_timeout(st, deadline - now)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
    drop(st);
    Ok(Monitor { pid, shared })
}

fn describe_output(st: &State) -> String {
    let mut s = format!("its stderr ({} lines):\n", st.stderr.len());
    for line in &st.stderr {
        s.push_str(&format!("  {line}\n"));
    }
    s.push_str(&format!(
        "its stdout: {} events, {} non-JSON lines",
        st.events.len(),
        st.bad_lines.len()
    ));
    for line in st.bad_lines.iter().take(10) {
        s.push_str(&format!("\n  {line}"));
    }
    s
}

/// Threads that read a monitor's stdout and stderr into `shared` until end-of-file.
pub(super) fn spawn_readers(
    shared: &Arc<Shared>,
    stdout: impl Read + Send + 'static,
    stderr: impl Read + Send + 'static,
) -> [JoinHandle<()>; 2] {
    let for_stdout = shared.clone();
    let for_stderr = shared.clone();
    [
        thread::Builder::new()
            .name("secmon-stdout".into())
            .spawn(move || read_stdout(&for_stdout, stdout))
            .expect("spawn the monitor's stdout reader"),
        thread::Builder::new()
            .name("secmon-stderr".into())
            .spawn(move || read_stderr(&for_stderr, stderr))
            .expect("spawn the monitor's stderr reader"),
    ]
}

fn read_stdout(shared: &Shared, stdout: impl Read) {
    let mut reader = BufReader::new(stdout);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let parsed = parse_event(line);
        let mut st = shared.lock();
        if let Some(raw) = &mut st.raw_stdout {
            raw.extend_from_slice(&buf);
        }
        match parsed {
            Some(v) => st.events.push(v),
            None => st
                .bad_lines
                .push(String::from_utf8_lossy(line).into_owned()),
        }
        drop(st);
        shared.changed.notify_all();
    }
    // Waits for events end here (an Instance's exit status is its owner's to collect).
    shared
        .lock()
        .exited
        .get_or_insert_with(|| "its stdout closed".to_string());
    shared.changed.notify_all();
}

fn read_stderr(shared: &Shared, stderr: impl Read) {
    let mut reader = BufReader::new(stderr);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let line = String::from_utf8_lossy(&buf).trim_end().to_string();
        let mut st = shared.lock();
        if line == READY_LINE {
            st.ready_lines += 1;
        }
        st.stderr.push(line);
        drop(st);
        shared.changed.notify_all();
    }
}

impl Monitor {
    /// The monitor's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Marks "now": later waits only consider events that arrive after this point.
    pub fn checkpoint(&self) -> Checkpoint {
        let st = self.shared.lock();
        Checkpoint {
            index: st.events.len(),
            time: SystemTime::now(),
        }
    }

    /// Waits (up to [`DEFAULT_TIMEOUT`]) for an event of type `kind` matching `pred` that arrived
    /// after `cp`, checks its envelope and returns it. `what` describes it for failure messages.
    #[track_caller]
    pub fn expect(
        &self,
        cp: &Checkpoint,
        kind: &str,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        self.wait_for_event(cp, kind, what, DEFAULT_TIMEOUT, pred)
    }

    /// [`Monitor::expect`] with an explicit timeout.
    #[track_caller]
    pub fn wait_for_event(
        &self,
        cp: &Checkpoint,
        kind: &str,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        let mut next = cp.index;
        let mut st = self.shared.lock();
        loop {
            while next < st.events.len() {
                let e = &st.events[next];
                next += 1;
                if e.get("event_type").and_then(Value::as_str) == Some(kind) && pred(e) {
                    let found = e.clone();
                    drop(st);
                    assert_envelope(&found, kind, cp.time);
                    return found;
                }
            }
            let failure = if st.exited.is_some() {
                Some("the monitor exited")
            } else if Instant::now() >= deadline {
                Some("timed out")
            } else {
                None
            };
            if let Some(why) = failure {
                let msg = format!(
                    "no {kind} event for {what} within {timeout:?} ({why})\n{}",
                    self.describe(&st, cp, kind)
                );
                drop(st);
                panic!("{msg}");
            }
            st = self
                .shared
                .changed
                .wait_timeout(st, deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Asserts that no event of one of `kinds` matching `pred` arrives after `cp` during `within`
    /// (pass a sync point first: see [`Monitor::sync_point`]).
    #[track_caller]
    pub fn assert_no_event_for(
        &self,
        cp: &Checkpoint,
        kinds: &[&str],
        what: &str,
        within: Duration,
        pred: impl Fn(&Value) -> bool,
    ) {
        let deadline = Instant::now() + within;
        let mut next = cp.index;
        let mut st = self.shared.lock();
        loop {
            while next < st.events.len() {
                let e = &st.events[next];
                next += 1;
                let kind = e.get("event_type").and_then(Value::as_str).unwrap_or("");
                if kinds.contains(&kind) && pred(e) {
                    let msg = format!("unexpected {kind} event ({what}): {e}");
                    drop(st);
                    panic!("{msg}");
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            st = self
                .shared
                .changed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Opens a fresh file read-only and waits for its `file_open` event. Events are delivered in
    /// order, so once this returns, every event the calling thread caused before has arrived.
    #[track_caller]
    pub fn sync_point(&self, dir: &Path) {
        let path = dir.join(format!("sync-{}", marker()));
        fs::write(&path, b"sync").expect("write the sync-point file");
        let cp = self.checkpoint();
        drop(fs::File::open(&path).expect("open the sync-point file"));
        let expected = path_str(&path);
        self.expect(&cp, "file_open", "the sync-point open", |e| {
            e["pid"] == test_pid() && str_is(e, "file_path", |p| p == expected)
        });
        fs::remove_file(&path).expect("remove the sync-point file");
    }

    /// Every event received so far.
    pub fn events(&self) -> Vec<Value> {
        self.shared.lock().events.clone()
    }

    /// stdout lines that were not JSON objects.
    pub fn bad_lines(&self) -> Vec<String> {
        self.shared.lock().bad_lines.clone()
    }

    /// How many `secmon: ready` lines the monitor printed.
    pub fn ready_lines(&self) -> usize {
        self.shared.lock().ready_lines
    }

    /// How the monitor exited, if it did.
    pub fn exited(&self) -> Option<String> {
        self.shared.lock().exited.clone()
    }

    /// Waits (bounded) until some stderr line satisfies `pred`, then returns it.
    #[track_caller]
    pub fn wait_for_stderr(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + DEFAULT_TIMEOUT;
        let mut st = self.shared.lock();
        loop {
            if let Some(line) = st.stderr.iter().find(|l| pred(l)) {
                return line.clone();
            }
            let now = Instant::now();
            if now >= deadline || st.exited.is_some() {
                let msg = format!(
                    "the monitor's stderr has no line {what}\n{}",
                    describe_output(&st)
                );
                drop(st);
                panic!("{msg}");
            }
            st = self
                .shared
                .changed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    fn describe(&self, st: &State, cp: &Checkpoint, kind: &str) -> String {
        let since = &st.events[cp.index.min(st.events.len())..];
        let of_kind: Vec<&Value> = since
            .iter()
            .filter(|e| e.get("event_type").and_then(Value::as_str) == Some(kind))
            .collect();
        let mut s = format!(
            "monitor pid {}: {}; {} events since the test's checkpoint ({} of type {kind}), {} in all",
            self.pid,
            match &st.exited {
                Some(how) => format!("exited ({how})"),
                None => "running".to_string(),
            },
            since.len(),
            of_kind.len(),
            st.events.len(),
        );
        if since.len() > 10_000 {
            // A flood (e.g. a benchmark running at the same time) can fill the kernel's ring
            // buffer: the monitor then drops events, and this test's event may be among them.
            let mut busiest: BTreeMap<&str, usize> = BTreeMap::new();
            for e in since {
                *busiest
                    .entry(e.get("process").and_then(Value::as_str).unwrap_or("?"))
                    .or_default() += 1;
            }
            let mut busiest: Vec<(&str, usize)> = busiest.into_iter().collect();
            busiest.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
            busiest.truncate(3);
            s.push_str(&format!(
                "\nbusiest processes since the checkpoint (the kernel may have dropped events): {busiest:?}"
            ));
        }
        let shown = &of_kind[of_kind.len().saturating_sub(SHOWN_EVENTS)..];
        s.push_str(&format!("\nlast {} {kind} events:", shown.len()));
        for e in shown {
            s.push_str(&format!("\n  {e}"));
        }
        if st.exited.is_some() || !st.bad_lines.is_empty() {
            s.push('\n');
            s.push_str(&describe_output(st));
        }
        s
    }
}
