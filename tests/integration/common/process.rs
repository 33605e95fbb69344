//! Who the test is (root, pid, tid, comm) and child processes: bounded waits, retries on
//! `ETXTBSY`, children that die with the test.

use std::ffi::CString;
use std::fs;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Panics unless the test runs as root: these tests load eBPF programs. Never skip silently.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        panic!("these tests load eBPF programs: run them as root, e.g. `cargo xtask test`");
    }
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
