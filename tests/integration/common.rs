//! Shared helpers: the root check, the one monitor shared by the whole test binary, waiting for
//! events, the event envelope check, temporary directories and child processes.
//!
//! Tests run in parallel against the shared monitor. Each test takes a [`Checkpoint`] before it
//! acts and only looks at events that arrived after it, and it recognises its own events by
//! unique markers (temporary directory names, child pids, ports), never by order.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_secmon-tui");
/// The line the monitor prints on stderr once every probe is attached.
pub const READY_LINE: &str = "secmon: ready";
/// The config of monitors started only to watch: every family on, no history (tests running
/// side by side must not share, and lock, the machine's database).
pub const SHARED_CONFIG: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/fixtures/shared-monitor.toml"
);
/// How long a test waits for an event it caused.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a monitor may take to load and attach its programs.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How many events of the expected type a failure message shows.
const SHOWN_EVENTS: usize = 20;

/// Panics unless the test runs as root: these tests load eBPF programs. Never skip silently.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        panic!("these tests load eBPF programs: run them as root, e.g. `cargo xtask test`");
    }
}

/// A number unique within this test binary.
pub fn next_id() -> u32 {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// A marker unique across tests and test runs: `secmon-test-<pid>-<n>`.
pub fn marker() -> String {
    format!("secmon-test-{}-{}", std::process::id(), next_id())
}

/// The test process's pid (tgid): what `pid` is in events caused by the test itself.
pub fn test_pid() -> u32 {
    std::process::id()
}

/// The calling thread's id: what `tid` is in events caused by this thread.
pub fn gettid() -> u32 {
    // SAFETY: gettid has no preconditions and cannot fail.
    let tid = unsafe { libc::gettid() };
    u32::try_from(tid).expect("gettid returns a positive id")
}

/// The comm the kernel derives from an executable's file name: its first 15 bytes.
pub fn comm_of(file_name: &[u8]) -> String {
    String::from_utf8_lossy(&file_name[..file_name.len().min(15)]).into_owned()
}

/// `/proc/self/comm`: the comm of the test process's main thread.
pub fn main_thread_comm() -> String {
    read_comm("/proc/self/comm")
}

/// `/proc/thread-self/comm`: the comm of the calling thread (the harness names it after the test).
pub fn thread_comm() -> String {
    read_comm("/proc/thread-self/comm")
}

fn read_comm(path: &str) -> String {
    let comm = fs::read(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    String::from_utf8_lossy(&comm)
        .trim_end_matches('\n')
        .to_string()
}

/// A path in the source tree (`rules`, `tests/fixtures/...`), as a string.
pub fn workspace(rel: &str) -> String {
    path_str(&Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel))
}

/// A path as the UTF-8 string the monitor is expected to print.
pub fn path_str(path: &Path) -> String {
    path.to_str()
        .unwrap_or_else(|| panic!("test path {} is not UTF-8", path.display()))
        .to_string()
}

/// The JSON string the monitor should print for a path of arbitrary bytes (lossy UTF-8).
pub fn lossy(path: &Path) -> String {
    String::from_utf8_lossy(path.as_os_str().as_bytes()).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Field assertions

/// Asserts that `e[field] == expected`, printing the whole event when it is not.
#[track_caller]
pub fn assert_field(e: &Value, field: &str, expected: impl Into<Value>) {
    let expected = expected.into();
    let actual = e.get(field).unwrap_or(&Value::Null);
    assert!(
        *actual == expected,
        "field `{field}`: expected {expected}, got {actual}\n  in event: {e}"
    );
}

/// Asserts that an optional field is absent (or null).
#[track_caller]
pub fn assert_absent(e: &Value, field: &str) {
    let actual = e.get(field).unwrap_or(&Value::Null);
    assert!(
        actual.is_null(),
        "field `{field}` should be absent, got {actual}\n  in event: {e}"
    );
}

/// A field that must be a string.
#[track_caller]
pub fn str_field<'a>(e: &'a Value, field: &str) -> &'a str {
    e.get(field)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("field `{field}` should be a string\n  in event: {e}"))
}

/// A field that must be an unsigned integer.
#[track_caller]
pub fn u64_field(e: &Value, field: &str) -> u64 {
    e.get(field)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("field `{field}` should be an unsigned integer\n  in event: {e}"))
}

/// True when the event's string field is present and satisfies `f` (for predicates).
pub fn str_is(e: &Value, field: &str, f: impl FnOnce(&str) -> bool) -> bool {
    e.get(field).and_then(Value::as_str).is_some_and(f)
}

/// The `|`-separated tokens of the symbolic `flags` field.
#[track_caller]
pub fn flag_tokens(e: &Value) -> Vec<String> {
    str_field(e, "flags")
        .split('|')
        .map(|t| t.trim().to_string())
        .collect()
}

/// Asserts that the event's `syscall` is one of `names` (libc picks e.g. `unlink` or `unlinkat`).
#[track_caller]
pub fn assert_syscall_in(e: &Value, names: &[&str]) {
    let syscall = str_field(e, "syscall");
    assert!(
        names.contains(&syscall),
        "field `syscall`: expected one of {names:?}, got {syscall:?}\n  in event: {e}"
    );
}

/// Checks the fields every event carries, whatever its type.
#[track_caller]
pub fn assert_envelope(e: &Value, kind: &str, since: SystemTime) {
    assert!(e.is_object(), "an event must be a JSON object: {e}");
    assert_field(e, "event_type", kind);

    let ts = str_field(e, "timestamp");
    let parsed = chrono::DateTime::parse_from_rfc3339(ts).unwrap_or_else(|err| {
        panic!("`timestamp` {ts:?} is not RFC 3339 ({err})\n  in event: {e}")
    });
    assert_eq!(
        parsed.offset().local_minus_utc(),
        0,
        "`timestamp` {ts:?} must be UTC\n  in event: {e}"
    );
    // The kernel's monotonic clock converted to wall time: it must land near the moment the test
    // caused the event (generous slack for the conversion, none for a wrong epoch).
    let at = SystemTime::from(parsed);
    let slack = Duration::from_secs(5);
    assert!(
        at >= since - slack && at <= SystemTime::now() + slack,
        "`timestamp` {ts:?} is not within 5 s of when the test acted ({:?})\n  in event: {e}",
        chrono::DateTime::<chrono::Utc>::from(since)
    );

    for field in ["pid", "tid", "ppid", "uid"] {
        let n = u64_field(e, field);
        assert!(
            n <= u64::from(u32::MAX),
            "`{field}` {n} does not fit in u32\n  in event: {e}"
        );
    }
    assert!(
        u64_field(e, "pid") > 0,
        "`pid` must not be 0\n  in event: {e}"
    );
    assert!(
        u64_field(e, "tid") > 0,
        "`tid` must not be 0\n  in event: {e}"
    );
    u64_field(e, "cgroup_id");
    for field in ["user", "process", "exe", "cmdline", "parent_process"] {
        str_field(e, field);
    }
    assert!(
        !str_field(e, "user").is_empty(),
        "`user` must name the uid (or be the number)\n  in event: {e}"
    );
    let ancestors = e
        .get("ancestors")
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("`ancestors` should be an array\n  in event: {e}"));
    assert!(
        ancestors.iter().all(Value::is_string),
        "`ancestors` should hold names\n  in event: {e}"
    );
    if u64_field(e, "uid") == 0 {
        assert_field(e, "user", "root");
    }

    // The verdict's shape; what the rules make of each technique is tested in `rules_e2e`.
    let analysis = e
        .get("analysis")
        .filter(|a| a.is_object())
        .unwrap_or_else(|| panic!("`analysis` should be an object\n  in event: {e}"));
    for field in ["label", "detection_method", "recommendation"] {
        str_field(analysis, field);
    }
    let severity = str_field(analysis, "severity");
    assert!(
        ["benign", "suspicious", "malicious"].contains(&severity),
        "`analysis.severity` should be benign, suspicious or malicious\n  in event: {e}"
    );
    let risk = analysis.get("risk_score").and_then(Value::as_f64);
    assert!(
        risk.is_some_and(|r| (0.0..=1.0).contains(&r)),
        "`analysis.risk_score` should be a number in [0, 1]\n  in event: {e}"
    );
    let process_risk = analysis.get("process_risk").and_then(Value::as_f64);
    assert!(
        process_risk.is_some_and(|r| (0.0..=1.0).contains(&r)),
        "`analysis.process_risk` should be a number in [0, 1]\n  in event: {e}"
    );
    let confidence = analysis.get("confidence").and_then(Value::as_f64);
    let expected = match str_field(analysis, "detection_method") {
        "rule_based" => 1.0,
        "heuristic" => 0.8,
        _ => 0.0,
    };
    assert_eq!(
        confidence,
        Some(expected),
        "`analysis.confidence` follows `detection_method`\n  in event: {e}"
    );
    let rules = analysis.get("rules").and_then(Value::as_array);
    assert!(
        rules.is_some_and(|r| r.iter().all(Value::is_string)),
        "`analysis.rules` should be an array of rule names\n  in event: {e}"
    );
    // A rated event names the rules that rated it.
    if severity != "benign" {
        assert!(
            rules.is_some_and(|r| !r.is_empty()),
            "a {severity} event without rules: {e}"
        );
    }
}

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

// ---------------------------------------------------------------------------------------------
// The shared monitor

/// A running monitor's output as it arrives (`secmon-tui --json`): the one started for the
/// whole test binary ([`monitor`]), or a test's own ([`Instance`], which derefs to this).
pub struct Monitor {
    pid: u32,
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    events: Vec<Value>,
    /// stdout lines that are not JSON objects (or not UTF-8).
    bad_lines: Vec<String>,
    /// stdout as written, kept only for an [`Instance`] (tests check its exact bytes).
    raw_stdout: Option<Vec<u8>>,
    stderr: Vec<String>,
    ready_lines: usize,
    /// Set when the monitor process has exited (how), or its stdout has closed.
    exited: Option<String>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
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

/// Makes a child die with SIGKILL when the thread that spawned it ends.
pub fn die_with_parent(cmd: &mut Command) -> &mut Command {
    // SAFETY: the closure only calls prctl, which is async-signal-safe, and allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
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
fn spawn_readers(
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

// ---------------------------------------------------------------------------------------------
// A separately started monitor (safety and CLI tests)

/// A monitor started by one test, with its own arguments. Killed if the test panics.
///
/// It has a directory of its own ([`Instance::home`]): unless the test passes `--config`,
/// its config there puts the history database and the control socket in it, and `--rules`
/// defaults to the source tree's rules, so no test monitor reads or writes the machine's
/// own (/etc/secmon, /var/lib/secmon, /run/secmon). [`Instance::finish`] checks that.
/// Its output is read as it arrives: it derefs to [`Monitor`] for checkpoints, waits for
/// events and sync points.
pub struct Instance {
    child: Child,
    output: Monitor,
    readers: Vec<JoinHandle<()>>,
    /// stderr lines already looked at by [`Instance::wait_for_stderr`].
    stderr_seen: usize,
    home: TestDir,
}

/// Paths of the machine's own secmon state: a test monitor must never use them.
const MACHINE_STATE: &[&str] = &[
    "/etc/secmon",
    "/var/lib/secmon",
    "/run/secmon",
    "/usr/local/share/secmon",
    "/var/log/secmon",
];

impl Instance {
    /// Starts `secmon-tui ARGS` with piped output.
    pub fn start(args: &[&str]) -> Instance {
        Instance::start_with_env(args, &[])
    }

    /// Starts `secmon-tui ARGS` with piped output and these extra environment variables.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Instance {
        let home = TestDir::new(&format!("secmon-instance-{}", marker()));
        let args = private_args(args, &home);
        let mut cmd = Command::new(BIN);
        cmd.args(&args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        die_with_parent(&mut cmd);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{BIN} {}`: {e}", args.join(" ")));
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let shared: Arc<Shared> = Arc::default();
        shared.lock().raw_stdout = Some(Vec::new());
        let readers = spawn_readers(&shared, stdout, stderr).into();
        Instance {
            output: Monitor {
                pid: child.id(),
                shared,
            },
            child,
            readers,
            stderr_seen: 0,
            home,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The instance's own directory (removed when it is dropped).
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// Waits (≤ [`READY_TIMEOUT`]) for `secmon: ready` on stderr.
    #[track_caller]
    pub fn wait_ready(&mut self) {
        self.wait_for_line(&format!("`{READY_LINE}`"), READY_TIMEOUT, |l| {
            l == READY_LINE
        });
    }

    /// Waits (≤ [`DEFAULT_TIMEOUT`]) for a stderr line that `pred` accepts, among the lines
    /// printed since the last wait; returns it.
    #[track_caller]
    pub fn wait_for_stderr(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        self.wait_for_line(what, DEFAULT_TIMEOUT, pred)
    }

    #[track_caller]
    fn wait_for_line(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        let shared = self.output.shared.clone();
        let mut st = shared.lock();
        loop {
            while self.stderr_seen < st.stderr.len() {
                let line = &st.stderr[self.stderr_seen];
                self.stderr_seen += 1;
                if pred(line) {
                    return line.clone();
                }
            }
            let now = Instant::now();
            let failure = if st.exited.is_some() {
                Some("exited".to_string())
            } else if now >= deadline {
                Some(format!("printed no such line within {timeout:?}"))
            } else {
                None
            };
            if let Some(why) = failure {
                let stderr = st.stderr.join("\n");
                drop(st);
                if why == "exited" {
                    // Its stdout closed: let stderr's last lines and the status in.
                    let status = wait_timeout(&mut self.child, DEFAULT_TIMEOUT);
                    let st = shared.lock();
                    if let Some(line) = st.stderr[self.stderr_seen..].iter().find(|l| pred(l)) {
                        return line.clone();
                    }
                    panic!(
                        "monitor exited ({status:?}) before printing a line with {what}; \
                         stderr:\n{}",
                        st.stderr.join("\n")
                    );
                }
                panic!(
                    "monitor pid {} {why} with {what}; stderr:\n{stderr}",
                    self.pid()
                );
            }
            st = shared
                .changed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Sends a signal to the monitor.
    pub fn signal(&self, sig: libc::c_int) {
        let pid = libc::pid_t::try_from(self.pid()).expect("pid fits pid_t");
        // SAFETY: kill has no memory-safety preconditions; the child is ours and not yet reaped.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(
            rc,
            0,
            "kill({pid}, {sig}): {}",
            std::io::Error::last_os_error()
        );
    }

    /// Stops the monitor with SIGINT (which drains the ring buffer first, so every event of
    /// what happened before is in the output), asserts it exited 0 and printed only JSON
    /// lines, and returns its events.
    #[track_caller]
    pub fn stop_for_events(self) -> Vec<Value> {
        self.signal(libc::SIGINT);
        let (status, stdout, stderr) = self.finish(STOP_TIMEOUT);
        assert!(
            status.success(),
            "monitor: {status}; stderr:\n{}",
            stderr.join("\n")
        );
        let (events, bad) = parse_json_lines(&stdout);
        assert!(bad.is_empty(), "non-JSON output: {bad:?}");
        events
    }

    /// Waits (bounded) for the monitor to exit; returns its status, stdout and all stderr
    /// lines. Panics if the monitor used the machine's own secmon paths.
    #[track_caller]
    pub fn finish(mut self, timeout: Duration) -> (ExitStatus, Vec<u8>, Vec<String>) {
        let status = match wait_timeout(&mut self.child, timeout) {
            Some(status) => status,
            None => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "monitor pid {} did not exit within {timeout:?}; stderr:\n{}",
                    self.pid(),
                    self.output.shared.lock().stderr.join("\n")
                );
            }
        };
        for reader in self.readers.drain(..) {
            // A panic in a reader only loses output, which the test then notices.
            let _ = reader.join();
        }
        let mut st = self.output.shared.lock();
        let stdout = st.raw_stdout.take().unwrap_or_default();
        let stderr = std::mem::take(&mut st.stderr);
        drop(st);
        assert_private(&stderr);
        (status, stdout, stderr)
    }
}

/// How long a stop may take in a test: the monitor's own bound (5 s, `shutdown.rs`) with
/// room for a loaded machine.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// `args` with the instance's private config and the source tree's rules where the test
/// gave none.
fn private_args(args: &[&str], home: &TestDir) -> Vec<String> {
    let mut out: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let given = |flag: &str| args.contains(&flag);
    if !given("--config") {
        let config = home.join("secmon.toml");
        fs::write(
            &config,
            format!(
                "# A test monitor's own state (tests/integration/common.rs).\n\
                 [storage]\nenabled = true\npath = {:?}\n\n\
                 [response]\ncontrol_socket = {:?}\n",
                path_str(&home.join("events.db")),
                path_str(&home.join("control.sock")),
            ),
        )
        .expect("write the instance's config");
        out.extend(["--config".to_string(), path_str(&config)]);
    }
    if !given("--rules") {
        out.extend(["--rules".to_string(), workspace("rules")]);
    }
    out
}

/// Panics if a monitor's stderr names one of the machine's own secmon paths (its config,
/// history, control socket, rules, logs).
#[track_caller]
pub fn assert_private(stderr: &[String]) {
    for line in stderr {
        if let Some(path) = MACHINE_STATE.iter().find(|p| line.contains(*p)) {
            panic!(
                "a test monitor used the machine's own {path}: {line:?}\n(give it a config \
                 with paths in a temporary directory)"
            );
        }
    }
}

impl std::ops::Deref for Instance {
    type Target = Monitor;

    fn deref(&self) -> &Monitor {
        &self.output
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        // Only matters when a test panicked with the monitor still running.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Files and processes

/// A temporary directory named after a marker, with its canonical path (what events report).
/// Removed on drop.
pub struct TestDir {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl TestDir {
    pub fn new(marker: &str) -> TestDir {
        let dir = tempfile::Builder::new()
            .prefix(&format!("{marker}-"))
            .tempdir()
            .expect("create a temporary directory");
        let path = dir
            .path()
            .canonicalize()
            .expect("canonicalise the temporary directory");
        TestDir { _dir: dir, path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.path.join(name)
    }
}

/// Copies an executable (e.g. `/bin/true`) to `dest` with mode 0755 and returns `dest`.
pub fn copy_executable(src: &str, dest: &Path) -> PathBuf {
    fs::copy(src, dest).unwrap_or_else(|e| panic!("copy {src} to {}: {e}", dest.display()));
    fs::set_permissions(dest, fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", dest.display()));
    dest.to_path_buf()
}

/// Spawns a command, retrying (bounded) on ETXTBSY: another test thread may be forking while it
/// briefly holds a freshly copied executable open for writing.
#[track_caller]
pub fn spawn(cmd: &mut Command) -> Child {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match cmd.spawn() {
            Ok(child) => return child,
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("spawn {cmd:?}: {e}"),
        }
    }
}

/// Runs a command to its end (bounded; retrying ETXTBSY, see [`spawn`]) and returns how it
/// ended.
#[track_caller]
pub fn status_of(cmd: &mut Command) -> ExitStatus {
    let mut child = spawn(cmd);
    wait_child(&mut child, Duration::from_secs(30))
}

/// Polls a child until it exits or `timeout` passes (then returns None; the child keeps running).
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait on a child") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Waits for a child (bounded); kills it and panics on timeout.
#[track_caller]
pub fn wait_child(child: &mut Child, timeout: Duration) -> ExitStatus {
    match wait_timeout(child, timeout) {
        Some(status) => status,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child {} did not exit within {timeout:?}", child.id());
        }
    }
}

/// Runs a command to completion (bounded), capturing stdout and stderr.
#[track_caller]
pub fn run(cmd: &mut Command, timeout: Duration) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    die_with_parent(cmd);
    let mut child = spawn(cmd);
    let mut out = child.stdout.take().expect("stdout is piped");
    let mut err = child.stderr.take().expect("stderr is piped");
    let out = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out.read_to_end(&mut buf);
        buf
    });
    let err = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err.read_to_end(&mut buf);
        buf
    });
    let status = wait_timeout(&mut child, timeout);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let stdout = out.join().expect("the stdout reader does not panic");
    let stderr = err.join().expect("the stderr reader does not panic");
    match status {
        Some(status) => Output {
            status,
            stdout,
            stderr,
        },
        None => panic!(
            "{cmd:?} did not exit within {timeout:?}; stderr:\n{}",
            String::from_utf8_lossy(&stderr)
        ),
    }
}

/// A C string from bytes without NUL (prepared before fork, for `pre_exec`).
pub fn cstring(bytes: &[u8]) -> CString {
    CString::new(bytes).expect("no NUL byte in the string")
}
