//! The sandbox every live step runs in, and what it leaves behind: nothing.
//!
//! [`Sandbox::create`] makes a directory under /run (a tmpfs: even a power cut leaves nothing
//! past the next boot) holding the step's world: `tmp/`, `shm/`, `log/`, `home/`, `work/`,
//! `www/`, `bin/` and decoys (`decoy/shadow`, `decoy/cron.d/`). It starts two loopback-only
//! servers in threads of the monitor: a listener for reverse shells (`$DEMO_PORT`, which sends
//! the scenario's `listener_commands` and closes) and a web server for the attacker's payloads
//! (`$DEMO_WEB`, the files of `www/`). Then it runs the scenario's `setup` in the directory.
//!
//! Each step runs as `unshare --mount --propagation private --fork --kill-child sh -c PRELUDE`
//! in a process group of its own. The prelude bind-mounts the sandbox's directories and decoys
//! over /tmp, /dev/shm, /var/log, /etc/shadow and /etc/cron.d inside the step's private mount
//! namespace — the events carry the real paths, so the rules that watch them fire, and the
//! machine's files are never touched. The namespace goes away with its last process.
//!
//! Dropping the sandbox (quit, Ctrl-C, SIGTERM, a panic, a failing step) kills every step's
//! process group, stops the servers and removes the directory. A step's processes also die
//! with the monitor (PR_SET_PDEATHSIG on `unshare`, whose `--kill-child` passes it on).
use std::{
    fs,
    io::{self, Read, Write},
    net::{TcpListener, TcpStream},
    os::unix::{fs::PermissionsExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use super::scenario::Scenario;
use crate::enrich::proctable;

/// How long a step may run before it is killed.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long setup may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the servers look at their stop flag.
const POLL: Duration = Duration::from_millis(50);

/// What the prelude mounts in the step's namespace: (sandbox path, system path).
pub const BIND_MOUNTS: &[(&str, &str)] = &[
    ("tmp", "/tmp"),
    ("shm", "/dev/shm"),
    ("log", "/var/log"),
    ("decoy/shadow", "/etc/shadow"),
    ("decoy/cron.d", "/etc/cron.d"),
];

/// The directories a sandbox is made of (relative to its root).
const DIRS: &[&str] = &[
    "tmp",
    "shm",
    "log",
    "home",
    "work",
    "www",
    "bin",
    "decoy",
    "decoy/cron.d",
];

/// Mounts the decoys (each only where the system path exists, so a step never creates one on
/// the machine), then runs the step's script in `work/`.
const PRELUDE: &str = r#"
for pair in $DEMO_MOUNTS; do
    from=${pair%%=*}; to=${pair#*=}
    if [ -e "$to" ]; then mount --bind "$DEMO_DIR/$from" "$to" || exit 97; fi
done
cd "$DEMO_DIR/work" || exit 97
exec sh -c "$DEMO_STEP"
"#;

/// A step that was started.
#[derive(Debug)]
pub struct StepRun {
    pub index: usize,
    /// Its `DEMO_RUN` value.
    run: u64,
    /// The root of the step's process tree (`unshare`).
    pub pid: u32,
    child: Child,
    started: Instant,
}

/// How a step ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepEnd {
    Exited(i32),
    Killed(String),
}

/// The demo's sandbox: see the module documentation.
#[derive(Debug)]
pub struct Sandbox {
    root: PathBuf,
    port: u16,
    web: u16,
    stop: Arc<AtomicBool>,
    servers: Vec<thread::JoinHandle<()>>,
    running: Vec<StepRun>,
    /// Runs started so far: each run's processes carry `DEMO_RUN=<n>` in their environment.
    runs: u64,
}

/// Why the sandbox could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("creating the demo's sandbox {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("the scenario's setup command `{command}` failed: {why}")]
    Setup { command: String, why: String },
}

impl Sandbox {
    /// Makes the sandbox under `base` (normally /run), starts its servers and runs the
    /// scenario's setup.
    pub fn create(base: &Path, scenario: &Scenario) -> Result<Sandbox, SandboxError> {
        let root = base.join(format!("secmon-demo.{}", std::process::id()));
        let io_error = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SandboxError::Io { path, source }
        };
        // A directory of an earlier demo of this pid (a reused pid after a kill -9).
        if root.exists() {
            fs::remove_dir_all(&root).map_err(io_error(&root))?;
        }
        fs::create_dir(&root).map_err(io_error(&root))?;
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).map_err(io_error(&root))?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut sandbox = Sandbox {
            root,
            port: 0,
            web: 0,
            stop,
            servers: Vec::new(),
            running: Vec::new(),
            runs: 0,
        };
        for dir in DIRS {
            let path = sandbox.root.join(dir);
            fs::create_dir_all(&path).map_err(io_error(&path))?;
        }
        for sticky in ["tmp", "shm"] {
            let path = sandbox.root.join(sticky);
            fs::set_permissions(&path, fs::Permissions::from_mode(0o1777))
                .map_err(io_error(&path))?;
        }
        let shadow = sandbox.root.join("decoy/shadow");
        fs::write(
            &shadow,
            "root:$6$decoy$notarealhashjustfortheclassroomdemo:20000:0:99999:7:::\n",
        )
        .map_err(io_error(&shadow))?;
        let listener = bind_loopback().map_err(io_error(&sandbox.root))?;
        let web = bind_loopback().map_err(io_error(&sandbox.root))?;
        sandbox.port = local_port(&listener);
        sandbox.web = local_port(&web);
        let lines = scenario.listener_commands.clone();
        let stop = sandbox.stop.clone();
        sandbox.servers.push(thread::spawn(move || {
            serve(listener, &stop, |c| talk(c, &lines))
        }));
        let www = sandbox.root.join("www");
        let stop = sandbox.stop.clone();
        sandbox.servers.push(thread::spawn(move || {
            serve(web, &stop, |c| serve_file(c, &www))
        }));
        for command in &scenario.setup {
            sandbox.setup(command)?;
        }
        Ok(sandbox)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The environment of setup and of the steps.
    fn env(&self, cmd: &mut Command) {
        let mounts: Vec<String> = BIND_MOUNTS
            .iter()
            .map(|(from, to)| format!("{from}={to}"))
            .collect();
        cmd.env_clear()
            .env("DEMO_DIR", &self.root)
            .env("DEMO_PORT", self.port.to_string())
            .env("DEMO_WEB", format!("http://127.0.0.1:{}", self.web))
            .env("DEMO_MOUNTS", mounts.join(" "))
            .env("HOME", self.root.join("home"))
            .env("HISTFILE", self.root.join("home/.bash_history"))
            .env(
                "PATH",
                format!(
                    "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    self.root.join("bin").display()
                ),
            )
            .env("LANG", "C.UTF-8")
            .env("TERM", "dumb")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        own_group_dying_with_us(cmd);
    }

    fn setup(&mut self, command: &str) -> Result<(), SandboxError> {
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", command]);
        self.env(&mut cmd);
        cmd.current_dir(&self.root);
        let failed = |why: String| SandboxError::Setup {
            command: command.to_string(),
            why,
        };
        let mut child = cmd.spawn().map_err(|e| failed(e.to_string()))?;
        let deadline = Instant::now() + SETUP_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => return Err(failed(status.to_string())),
                Ok(None) if Instant::now() < deadline => thread::sleep(POLL),
                Ok(None) => {
                    kill_group(child.id());
                    let _ = child.wait();
                    return Err(failed("timed out".to_string()));
                }
                Err(e) => return Err(failed(e.to_string())),
            }
        }
    }

    /// Starts step `index` (its script `run`); returns the root pid of its process tree.
    pub fn start(&mut self, index: usize, run: &str) -> io::Result<u32> {
        let mut cmd = Command::new("unshare");
        cmd.args([
            "--mount",
            "--propagation",
            "private",
            "--fork",
            "--kill-child=SIGKILL",
            "/bin/sh",
            "-c",
            PRELUDE,
        ]);
        self.env(&mut cmd);
        self.runs += 1;
        cmd.env("DEMO_STEP", run)
            .env("DEMO_RUN", self.runs.to_string())
            .current_dir(&self.root);
        let child = cmd.spawn()?;
        let pid = child.id();
        self.running.push(StepRun {
            index,
            run: self.runs,
            pid,
            child,
            started: Instant::now(),
        });
        Ok(pid)
    }

    /// Steps that ended since the last call (a step past [`STEP_TIMEOUT`] is killed).
    pub fn finished(&mut self) -> Vec<(usize, u32, StepEnd)> {
        let mut ended = Vec::new();
        self.running.retain_mut(|step| {
            let end = match step.child.try_wait() {
                Ok(Some(status)) => match (status.code(), status.signal_name()) {
                    (Some(code), _) => StepEnd::Exited(code),
                    (None, signal) => StepEnd::Killed(signal),
                },
                Ok(None) if step.started.elapsed() < STEP_TIMEOUT => return true,
                Ok(None) => {
                    kill_group(step.pid);
                    let _ = step.child.wait();
                    StepEnd::Killed(format!("timed out after {}s", STEP_TIMEOUT.as_secs()))
                }
                Err(e) => StepEnd::Killed(e.to_string()),
            };
            // Whatever the step left running goes with it: its group, and what left the group
            // (an interactive shell's jobs) but still carries its run's mark.
            kill_group(step.pid);
            kill_marked(&format!("DEMO_RUN={}", step.run), &self.root);
            ended.push((step.index, step.pid, end));
            false
        });
        ended
    }

    /// Whether a step is still running.
    pub fn busy(&self) -> bool {
        !self.running.is_empty()
    }

    /// Kills every running step's process group.
    pub fn stop_steps(&mut self) {
        for mut step in self.running.drain(..) {
            kill_group(step.pid);
            let _ = step.child.wait();
        }
        kill_marked("", &self.root);
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.stop_steps();
        self.stop.store(true, Ordering::SeqCst);
        for server in self.servers.drain(..) {
            let _ = server.join();
        }
        let _ = fs::remove_dir_all(&self.root);
    }
}

trait SignalName {
    fn signal_name(&self) -> String;
}

impl SignalName for std::process::ExitStatus {
    fn signal_name(&self) -> String {
        use std::os::unix::process::ExitStatusExt;
        self.signal()
            .map_or_else(|| "killed".to_string(), |s| format!("killed by signal {s}"))
    }
}

/// A session and process group of its own (killing the group kills all the step started;
/// without a controlling terminal, an interactive shell of a step is not stopped for touching
/// the monitor's), killed when the monitor's thread that started it dies.
fn own_group_dying_with_us(cmd: &mut Command) {
    // SAFETY: the closure only calls setsid and prctl, which are async-signal-safe, and
    // allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(io::Error::last_os_error());
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// SIGKILL to the process group `pgid` (a step's, led by the process the demo started).
fn kill_group(pgid: u32) {
    if let Ok(pgid) = i32::try_from(pgid)
        && pgid > 1
    {
        // SAFETY: kill(2) with a negative pid signals that process group only.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}

/// SIGKILL to every process whose environment has `DEMO_DIR=<root>` and `mark` (when not
/// empty): the sandbox's processes that left their step's process group. Repeated while it
/// finds any (one may have been forking), and a few times while a process's environment
/// reads empty (it may be in the middle of an exec).
fn kill_marked(mark: &str, root: &Path) {
    let dir = format!("DEMO_DIR={}", root.display());
    let mut unsure_passes = 0;
    for _ in 0..10 {
        let (mut found, mut unsure) = (false, false);
        let Ok(entries) = fs::read_dir("/proc") else {
            return;
        };
        for pid in entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()) {
            let Ok(environ) = fs::read(format!("/proc/{pid}/environ")) else {
                continue;
            };
            if environ.is_empty() && may_be_exec_ing(pid) {
                unsure = true;
                continue;
            }
            let has = |var: &str| environ.split(|b| *b == 0).any(|v| v == var.as_bytes());
            if pid > 1 && has(&dir) && (mark.is_empty() || has(mark)) {
                found = true;
                // SAFETY: kill(2) of one process of the demo's sandbox.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
        // A process started with an empty environment reads empty for good: look again a
        // few times for its sake, not ten.
        unsure_passes += usize::from(unsure && !found);
        if !found && (!unsure || unsure_passes > MAX_UNSURE_PASSES) {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Passes [`kill_marked`] makes for processes whose environment reads empty.
const MAX_UNSURE_PASSES: usize = 3;

/// Whether `pid`, whose environment read empty, may be in the middle of an exec: the kernel
/// switches to the new program's memory before it writes the environment there, and
/// /proc/PID/environ reads empty in between. A kernel thread or a zombie has none for good.
fn may_be_exec_ing(pid: i32) -> bool {
    u32::try_from(pid)
        .ok()
        .and_then(proctable::read_stat)
        .is_some_and(|stat| !matches!(stat.state, b'Z' | b'X') && !stat.is_kernel_thread())
}

fn bind_loopback() -> io::Result<TcpListener> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

fn local_port(listener: &TcpListener) -> u16 {
    listener.local_addr().map_or(0, |a| a.port())
}

/// Accepts connections until `stop`, one at a time.
fn serve(listener: TcpListener, stop: &AtomicBool, mut handle: impl FnMut(TcpStream)) {
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((conn, _)) => {
                let _ = conn.set_nonblocking(false);
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                let _ = conn.set_write_timeout(Some(Duration::from_secs(5)));
                handle(conn);
            }
            Err(_) => thread::sleep(POLL),
        }
    }
}

/// The attacker's side of a reverse shell: a moment for the prompt, the commands, then
/// whatever the shell says until it exits (bounded by the read timeout).
fn talk(mut conn: TcpStream, lines: &[String]) {
    thread::sleep(Duration::from_millis(300));
    for line in lines {
        if conn.write_all(format!("{line}\n").as_bytes()).is_err() {
            return;
        }
        thread::sleep(Duration::from_millis(200));
    }
    let mut sink = [0u8; 4096];
    while matches!(conn.read(&mut sink), Ok(n) if n > 0) {}
}

/// A minimal HTTP/1.0 GET of a file of `www` (names only: no `/` or `..` beyond the first).
fn serve_file(mut conn: TcpStream, www: &Path) {
    let mut request = [0u8; 2048];
    let n = conn.read(&mut request).unwrap_or(0);
    let request = String::from_utf8_lossy(&request[..n]);
    let name = request
        .split_whitespace()
        .nth(1)
        .and_then(|path| path.strip_prefix('/'))
        .filter(|name| !name.is_empty() && !name.contains('/') && !name.starts_with('.'));
    let body = name.and_then(|name| fs::read(www.join(name)).ok());
    let head = match &body {
        Some(body) => format!(
            "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        ),
        None => {
            "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
        }
    };
    let _ = conn.write_all(head.as_bytes());
    if let Some(body) = body {
        let _ = conn.write_all(&body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_live_user_process_may_be_in_an_exec() {
        assert!(may_be_exec_ing(std::process::id() as i32));
        assert!(!may_be_exec_ing(i32::MAX), "no such process");
        // A zombie: a child that exited and was not waited for yet.
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("run true");
        let pid = child.id() as i32;
        let zombie = || {
            fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                s.rsplit_once(')')
                    .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
            })
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !zombie() && std::time::Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        assert!(zombie(), "the child became a zombie");
        assert!(!may_be_exec_ing(pid));
        child.wait().expect("reap");
        // The kernel's thread daemon, where this pid namespace shows it.
        if fs::read_to_string("/proc/2/stat").is_ok_and(|s| s.contains("(kthreadd)")) {
            assert!(!may_be_exec_ing(2));
        }
    }
}
