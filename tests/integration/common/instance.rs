//! A monitor started by one test with its own arguments (safety and CLI tests): its own
//! directory and config, never the machine's secmon paths.

use std::fs;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::monitor::{Shared, spawn_readers};
use super::{
    BIN, DEFAULT_TIMEOUT, Monitor, READY_LINE, READY_TIMEOUT, TestDir, die_with_parent, marker,
    parse_json_lines, path_str, wait_timeout, workspace,
};

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

    /// [`Instance::wait_for_stderr`] with an explicit timeout.
    #[track_caller]
    pub fn wait_for_stderr_within(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        self.wait_for_line(what, timeout, pred)
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
                "# A test monitor's own state (tests/integration/common/instance.rs).\n\
                 [storage]\nenabled = true\npath = {:?}\n\n\
                 [response]\ncontrol_socket = {:?}\n\n\
                 [controller]\nlisten = \"127.0.0.1:0\"\ntoken_file = {:?}\naudit_log = {:?}\n",
                path_str(&home.join("events.db")),
                path_str(&home.join("control.sock")),
                path_str(&home.join("controller.token")),
                path_str(&home.join("controller-audit.log")),
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
