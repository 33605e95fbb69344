//! Real enforcement in the kernel (issue 6's mechanism): a denied executable is killed at exec
//! with SIGKILL and a denied destination refuses connect() with EPERM, other targets are not
//! touched, and everything is undone when the entry is removed or the monitor goes away.
//! Drives the library directly; the response layer decides *when* to call it.
use std::{net::TcpListener, os::unix::process::ExitStatusExt, process::Command, time::Duration};

use secmon::capture::{
    Capture, CaptureOptions,
    enforce::{DenyTarget, EnforceError},
};

use crate::common::{marker, require_root};

/// The capture and its ring buffer (kept open: blocked connects are reported through it).
fn start() -> (Capture, aya::maps::RingBuf<aya::maps::MapData>) {
    Capture::start(&CaptureOptions::default()).expect("capture starts")
}

/// Copies /bin/true under a unique name in `dir`.
fn marker_binary(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join(marker());
    std::fs::copy("/bin/true", &path).expect("copy /bin/true");
    path
}

/// Exit status of running `path` (retrying ETXTBSY right after the copy).
fn run(path: &std::path::Path) -> std::process::ExitStatus {
    crate::common::status_of(&mut Command::new(path))
}

/// Connects from a child process (the test process is the monitor, which is never blocked):
/// true when the connection was made.
fn child_connects(port: u16) -> bool {
    Command::new("bash")
        .arg("-c")
        .arg(format!("exec 3<>/dev/tcp/127.0.0.1/{port}"))
        .status()
        .expect("run bash")
        .success()
}

#[test]
fn nothing_is_denied_before_enforcement_is_enabled() {
    require_root();
    let (mut capture, _ring) = start();
    let result = capture.deny(DenyTarget::ExecName("true".into()), None);
    assert!(
        matches!(result, Err(EnforceError::NotEnabled)),
        "{result:?}"
    );
}

#[test]
fn denied_executable_is_killed_at_exec_and_released_after() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let denied = marker_binary(dir.path());
    let other = marker_binary(dir.path());
    let (mut capture, _ring) = start();
    capture.enable_enforcement().expect("enforcement on");
    let deny = capture
        .deny(DenyTarget::ExecPath(denied.display().to_string()), None)
        .expect("deny");

    let status = run(&denied);
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "denied binary: {status:?}"
    );
    assert!(run(&other).success(), "a binary not in the table must run");

    capture.undeny(deny.id).expect("undeny");
    assert!(
        run(&denied).success(),
        "runs again once the entry is removed"
    );

    capture
        .deny(DenyTarget::ExecPath(denied.display().to_string()), None)
        .expect("deny again");
    drop(capture);
    assert!(
        run(&denied).success(),
        "runs normally after the monitor is gone"
    );
}

#[test]
fn denied_name_and_expiry() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    // A name shorter than the kernel's 15-byte comm, so the entry cannot match the other
    // tests' marker binaries (their names share the `secmon-test-<pid>` prefix).
    let binary = dir
        .path()
        .join(format!("sdn{}", std::process::id() % 1_000_000));
    std::fs::copy("/bin/true", &binary).expect("copy /bin/true");
    let name = binary
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let (mut capture, _ring) = start();
    capture.enable_enforcement().expect("enforcement on");
    capture
        .deny(DenyTarget::ExecName(name), Some(Duration::from_millis(300)))
        .expect("deny");
    assert_eq!(run(&binary).signal(), Some(libc::SIGKILL));
    std::thread::sleep(Duration::from_millis(400));
    assert!(run(&binary).success(), "the entry lapsed in the kernel");
}

#[test]
fn denied_destination_refuses_connect_and_other_ports_work() {
    require_root();
    let denied = TcpListener::bind("127.0.0.1:0").expect("listener");
    let allowed = TcpListener::bind("127.0.0.1:0").expect("listener");
    let denied_port = denied.local_addr().expect("addr").port();
    let allowed_port = allowed.local_addr().expect("addr").port();
    let (mut capture, _ring) = start();
    capture.enable_enforcement().expect("enforcement on");
    capture
        .deny(
            DenyTarget::Connect("127.0.0.1".parse().expect("ip"), denied_port),
            None,
        )
        .expect("deny");

    assert!(
        !child_connects(denied_port),
        "connect to the denied port must fail"
    );
    assert!(child_connects(allowed_port), "another port still works");

    drop(capture);
    assert!(
        child_connects(denied_port),
        "connect works again after the monitor is gone"
    );
}
