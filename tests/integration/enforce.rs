//! Real enforcement in the kernel (issue 6's mechanism): a denied executable is killed at exec
//! with SIGKILL and a denied destination refuses connect() with EPERM, other targets are not
//! touched, and everything is undone when the entry is removed or the monitor goes away.
//! Drives the library directly; the response layer decides *when* to call it.
use std::{net::TcpListener, os::unix::process::ExitStatusExt, process::Command, time::Duration};

use secmon::capture::{
    Capture, CaptureOptions,
    enforce::{DenyTarget, EnforceError},
};

use crate::common::{marker, path_str, require_root};

/// The capture and its ring buffer (kept open: blocked connects are reported through it).
fn start() -> (Capture, secmon::capture::EventRing) {
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

/// A child forked by another thread holds a copy of every descriptor of the process, the
/// capture's BPF links and programs among them, until it execs. Under load that can be long
/// after the monitor let go of them; the denies must still end when the capture does.
#[test]
fn denies_end_with_the_capture_while_a_forked_child_holds_its_descriptors() {
    require_root();
    let denied = TcpListener::bind("127.0.0.1:0").expect("listener");
    let denied_port = denied.local_addr().expect("addr").port();
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
        "denied while the capture runs"
    );

    let held = hold_descriptors_in_a_child(Duration::from_secs(3));
    drop(capture);
    assert!(
        child_connects(denied_port),
        "connect works once the capture is gone, whoever still holds its descriptors"
    );
    held.join().expect("holder");
}

/// Forks a child (on a thread of its own: `spawn` waits for the exec) that sleeps for `hold`
/// before it execs, so it keeps copies of all this process's descriptors that long; returns
/// once the child has forked.
fn hold_descriptors_in_a_child(hold: Duration) -> std::thread::JoinHandle<()> {
    use std::os::unix::process::CommandExt;
    let (forked_tx, forked) = std::sync::mpsc::channel();
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    let [read_end, write_end] = fds;
    let holder = std::thread::spawn(move || {
        let seconds = hold.as_secs() as libc::c_uint;
        let mut command = Command::new("true");
        // SAFETY: only async-signal-safe calls (write, sleep) run in the forked child.
        unsafe {
            command.pre_exec(move || {
                libc::write(write_end, b"f".as_ptr().cast(), 1);
                libc::sleep(seconds);
                Ok(())
            });
        }
        let status = command.status().expect("run the holder");
        let _ = forked_tx.send(status.success());
    });
    let mut byte = [0u8; 1];
    // SAFETY: `read_end` is the pipe's open read end and `byte` is one writable byte.
    let n = unsafe { libc::read(read_end, byte.as_mut_ptr().cast(), 1) };
    assert_eq!(n, 1, "the holder forked");
    // SAFETY: both ends are ours and closed once each.
    unsafe {
        libc::close(read_end);
        libc::close(write_end);
    }
    std::thread::spawn(move || {
        assert_eq!(forked.recv().ok(), Some(true), "the holder ran");
        holder.join().expect("holder thread");
    })
}

/// Exit status of `sh -c 'cd DIR && exec SPELLING'`: execve gets the path exactly as spelled.
fn run_spelled(dir: &std::path::Path, spelling: &str) -> std::process::ExitStatus {
    for _ in 0..50 {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("cd '{}' && exec {spelling}", dir.display()))
            .output()
            .expect("run sh");
        // ETXTBSY right after the copy: sh reports it and exits 126.
        if out.status.code() == Some(126) && String::from_utf8_lossy(&out.stderr).contains("busy") {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        return out.status;
    }
    panic!("{spelling} stayed busy");
}

/// Path denies cannot be evaded by spelling the path differently: `./x`, `//`, `.`, `..`,
/// `/dev/fd/N` and spellings too long for the kernel's key are killed as well (their file
/// name is that of a denied path). A program of another name, the same name in another
/// directory spelled plainly, and a spared (protected) name are left alone.
#[test]
fn path_denies_match_every_spelling() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).expect("sub");
    // Names shorter than the kernel's 15-byte comm, distinct from other tests' (their
    // markers share the `secmon-test-<pid>` prefix).
    let short = |prefix: &str| format!("{prefix}{}", std::process::id() % 1_000_000);
    let (name, other_name) = (short("pdn"), short("pon"));
    let denied = dir.path().join(&name);
    std::fs::copy("/bin/true", &denied).expect("copy");
    std::fs::copy("/bin/true", dir.path().join(&other_name)).expect("copy");
    let same_name_elsewhere = sub.join(&name);
    std::fs::copy("/bin/true", &same_name_elsewhere).expect("copy");
    let spared = dir.path().join(short("spr"));
    std::fs::copy("/bin/true", &spared).expect("copy");
    let spared_name = spared
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();

    let (mut capture, _ring) = start();
    capture.enable_enforcement().expect("enforcement on");
    capture.spare_names([spared_name.as_str()]);
    // Given in an unusual spelling: stored normalised.
    let spelled = format!("{}/sub/..//{name}", dir.path().display());
    capture
        .deny(DenyTarget::exec_path(&spelled).expect("absolute"), None)
        .expect("deny");
    capture
        .deny(
            DenyTarget::exec_path(&path_str(&spared)).expect("absolute"),
            None,
        )
        .expect("deny spared");

    let d = dir.path().display();
    let long = format!("{d}/{}{name}", "./".repeat(140));
    for spelling in [
        format!("{d}/{name}"),
        format!("./{name}"),
        format!("{d}//{name}"),
        format!("{d}/./{name}"),
        format!("{d}/sub/../{name}"),
        format!("sub/../{name}"),
        long,
    ] {
        assert_eq!(
            run_spelled(dir.path(), &spelling).signal(),
            Some(libc::SIGKILL),
            "{spelling} must be killed"
        );
    }
    assert!(run_spelled(dir.path(), &format!("./{other_name}")).success());
    assert!(run_spelled(dir.path(), &path_str(&same_name_elsewhere)).success());
    // The spared name is killed only by its exact path.
    assert_eq!(
        run_spelled(dir.path(), &path_str(&spared)).signal(),
        Some(libc::SIGKILL)
    );
    assert!(run_spelled(dir.path(), &format!("./{spared_name}")).success());
}

/// Enforcement does not depend on the event stream: with the process family switched off
/// (or the ring buffer full) a denied program is still killed at exec.
#[test]
fn denied_exec_is_killed_with_the_process_family_off() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let denied = marker_binary(dir.path());
    let (mut capture, _ring) = start();
    capture.enable_enforcement().expect("enforcement on");
    capture
        .deny(
            DenyTarget::exec_path(&path_str(&denied)).expect("absolute"),
            None,
        )
        .expect("deny");
    capture
        .set_enabled(secmon::event::Family::Process, false)
        .expect("switch off");
    assert_eq!(run(&denied).signal(), Some(libc::SIGKILL));
}

/// A request that fails leaves nothing behind: a too-long TTL, a path the kernel cannot
/// compare, a relative path.
#[test]
fn failed_denies_leave_nothing_behind() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let program = marker_binary(dir.path());
    let (mut capture, _ring) = start();
    capture.enable_enforcement().expect("enforcement on");
    let target = DenyTarget::exec_path(&path_str(&program)).expect("absolute");
    let result = capture.deny(target, Some(Duration::MAX));
    assert!(matches!(result, Err(EnforceError::BadTtl(_))), "{result:?}");
    let long = DenyTarget::ExecPath(format!("/{}", "a".repeat(300)));
    assert!(matches!(
        capture.deny(long, None),
        Err(EnforceError::PathTooLong(_))
    ));
    assert!(matches!(
        capture.deny(DenyTarget::ExecPath("/tmp//x".into()), None),
        Err(EnforceError::NotNormalised(_))
    ));
    assert!(capture.denies().is_empty());
    assert!(run(&program).success(), "nothing was denied");
    assert!(
        run_spelled(
            dir.path(),
            &format!("./{}", program.file_name().expect("name").to_string_lossy())
        )
        .success(),
        "not even by an unusual spelling"
    );
}

/// A full kernel table refuses the next entry with a clear error and changes nothing; an
/// entry replacing an existing target still goes in, and removing one makes room.
#[test]
fn a_full_table_refuses_new_entries_and_keeps_the_old() {
    require_root();
    let (mut capture, _ring) = start();
    capture.enable_enforcement().expect("enforcement on");
    let capacity = secmon::capture::enforce::DenyTable::CAPACITY;
    // Names no program here has (a `#` never appears in the test binaries' names).
    let name = |i: usize| format!("f#{}#{i}", std::process::id() % 10_000);
    for i in 0..capacity {
        capture
            .deny(DenyTarget::ExecName(name(i)), None)
            .unwrap_or_else(|e| panic!("entry {i}: {e}"));
    }
    let full = capture.deny(DenyTarget::ExecName(name(capacity)), None);
    let message = full.as_ref().map(|_| ()).map_err(ToString::to_string);
    assert!(
        matches!(full, Err(EnforceError::TableFull { capacity: 1024, .. })),
        "{message:?}"
    );
    assert!(
        message.is_err_and(|m| m.contains("exec name deny table is full (1024 entries)")),
        "clear message"
    );
    assert_eq!(capture.denies().len(), capacity, "nothing evicted");
    // Other tables are separate.
    capture
        .deny(
            DenyTarget::Connect("192.0.2.1".parse().expect("ip"), 9),
            None,
        )
        .expect("the connect table has room");
    capture
        .deny(DenyTarget::ExecName(name(0)), None)
        .expect("replacing needs no room");
    let first = capture.denies()[0].id;
    capture.undeny(first).expect("undeny");
    capture
        .deny(DenyTarget::ExecName(name(capacity)), None)
        .expect("room again");
}
