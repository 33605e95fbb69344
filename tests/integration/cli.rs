//! The command line: `--help`, `--duration`, signals, non-root refusal, bad configuration.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{
    AS_NOBODY, BIN, DEFAULT_TIMEOUT, Instance, READY_LINE, TestDir, copy_executable, marker,
    parse_json_lines, path_str, require_root, run, spawn, wait_child,
};

/// Asserts that stderr has no panic message or backtrace.
#[track_caller]
fn assert_no_panic(stderr: &str) {
    for bad in [
        "panicked",
        "backtrace",
        "Backtrace",
        "RUST_BACKTRACE",
        "Location:",
    ] {
        assert!(
            !stderr.contains(bad),
            "stderr should be a plain message, it contains {bad:?}:\n{stderr}"
        );
    }
}

#[test]
fn help_mentions_the_headless_flags() {
    let out = run(Command::new(BIN).arg("--help"), DEFAULT_TIMEOUT);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "--help exits 0, got {}; stderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    for flag in ["--json", "--duration", "--config"] {
        assert!(stdout.contains(flag), "--help mentions {flag}:\n{stdout}");
    }
}

#[test]
fn duration_exits_zero_by_itself() {
    require_root();
    let mut instance = Instance::start(&["--json", "--duration", "2"]);
    instance.wait_ready();
    let ready_at = Instant::now();
    let (status, stdout, stderr) = instance.finish(Duration::from_secs(30));
    let waited = ready_at.elapsed();
    assert!(
        status.success(),
        "`--duration 2` exits 0, got {status}; stderr:\n{}",
        stderr.join("\n")
    );
    // 2 s, plus a stop (bounded at 5 s, `shutdown.rs`), plus room for a loaded machine.
    assert!(
        waited <= Duration::from_secs(12),
        "`--duration 2` should exit within a few seconds of being ready, took {waited:?}"
    );
    let ready = stderr.iter().filter(|l| *l == READY_LINE).count();
    assert_eq!(
        ready,
        1,
        "exactly one `{READY_LINE}` line; stderr:\n{}",
        stderr.join("\n")
    );
    let (_, bad) = parse_json_lines(&stdout);
    assert!(
        bad.is_empty(),
        "stdout is JSON lines only, these are not:\n{bad:#?}"
    );
}

/// Start, cause an exec, stop with `signal`: exit 0, and the exec that happened before the signal
/// is in the output (events are drained and flushed on shutdown).
fn stops_cleanly_on(signal: libc::c_int) {
    require_root();
    let mut instance = Instance::start(&["--json"]);
    instance.wait_ready();

    let m = marker();
    let dir = TestDir::new(&m);
    let exe = copy_executable("/bin/true", &dir.join(&m));
    let mut child = spawn(&mut Command::new(&exe));
    let pid = child.id();
    assert!(wait_child(&mut child, DEFAULT_TIMEOUT).success());

    instance.signal(signal);
    let (status, stdout, stderr) = instance.finish(Duration::from_secs(15));
    assert!(
        status.success(),
        "signal {signal} should make the monitor exit 0, got {status}; stderr:\n{}",
        stderr.join("\n")
    );
    let (events, bad) = parse_json_lines(&stdout);
    assert!(
        bad.is_empty(),
        "stdout is JSON lines only, these are not:\n{bad:#?}"
    );
    let exe_s = path_str(&exe);
    assert!(
        events.iter().any(|e| e["event_type"] == "process_exec"
            && e["pid"] == pid
            && e["exe"] == exe_s.as_str()),
        "the exec of {exe_s} (pid {pid}) before signal {signal} is missing from the {} events printed",
        events.len()
    );
}

#[test]
fn sigterm_flushes_and_exits_zero() {
    stops_cleanly_on(libc::SIGTERM);
}

#[test]
fn sigint_flushes_and_exits_zero() {
    stops_cleanly_on(libc::SIGINT);
}

#[test]
fn non_root_is_refused_with_one_line() {
    require_root();
    // A copy nobody can read and execute wherever the build directory is.
    let dir = TestDir::new(&marker());
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))
        .expect("make the directory traversable");
    let bin = copy_executable(BIN, &dir.join("secmon-tui"));

    let out = run(
        Command::new(AS_NOBODY[0])
            .args(&AS_NOBODY[1..])
            .arg(&bin)
            .arg("--json")
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LIB_BACKTRACE"),
        Duration::from_secs(30),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "not root: exit code 1, got {}; stderr:\n{stderr}",
        out.status
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "a one-line explanation, got:\n{stderr}");
    assert!(
        stderr.contains("root") || stderr.contains("CAP_BPF"),
        "the explanation mentions root or CAP_BPF: {stderr}"
    );
    assert_no_panic(&stderr);
}

#[test]
fn unknown_config_key_is_rejected_with_location() {
    require_root();
    let fixture: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "..",
        "tests",
        "fixtures",
        "invalid_configs",
        "unknown_key.toml",
    ]
    .iter()
    .collect();
    let fixture = fixture.canonicalize().expect("the fixture exists");
    let fixture_s = path_str(&fixture);

    let out = run(
        Command::new(BIN).args(["--json", "--duration", "3", "--config", &fixture_s]),
        Duration::from_secs(60),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a config with an unknown key is refused (non-zero exit); stderr:\n{stderr}"
    );
    assert!(
        stderr.contains(&format!("{fixture_s}:4:1")),
        "stderr names {fixture_s}:4:1 (file:line:col of the key):\n{stderr}"
    );
    assert!(
        stderr.contains("no_such_secmon_setting"),
        "stderr names the unknown key:\n{stderr}"
    );
    assert_no_panic(&stderr);
}

/// Error messages quote the file (here a recording whose event type is spelled with ESC, which
/// serde's "unknown variant" message repeats): what reaches stderr is escaped, never raw
/// control characters (the `replay_ui` fuzz target checks the same for every input).
#[test]
fn errors_quoting_a_file_are_escaped_on_stderr() {
    let fixture = |rel: &str| -> String {
        let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "..", rel].iter().collect();
        path_str(&path)
    };
    let out = run(
        Command::new(BIN).args([
            "--config",
            &fixture("tests/valid_configs/minimal.toml"),
            "--json",
            "--replay",
            &fixture("tests/fixtures/fuzz/replay_ui/escape-in-serde-message.jsonl"),
        ]),
        DEFAULT_TIMEOUT,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "refused; stderr:\n{stderr}");
    assert!(
        stderr.contains("unknown variant `\\x1b[2Jevil`"),
        "the bad value is quoted, escaped:\n{stderr}"
    );
    assert!(
        !stderr.contains('\x1b'),
        "no raw control character on stderr: {stderr:?}"
    );
}

/// `check-ebpf` loads every program of the built-in object into this kernel and attaches
/// none: one `ok` line per program and exit 0; a file that is not an eBPF object is a clear
/// error, not a panic.
#[test]
fn check_ebpf_loads_every_program_and_attaches_none() {
    require_root();
    let out = run(Command::new(BIN).arg("check-ebpf"), DEFAULT_TIMEOUT);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit 0, got {}:\n{stdout}{stderr}",
        out.status
    );
    for program in [
        "sm_sys_exit",
        "sm_sched_exec",
        "sm_connect4",
        "sm_sock_state",
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with("ok ") && l.ends_with(program)),
            "{program} loaded:\n{stdout}"
        );
    }
    assert!(!stdout.contains("REFUSED"), "{stdout}");
    let summary = stdout.lines().last().unwrap_or_default();
    assert!(summary.contains(" 0 refused"), "summary: {summary}");

    let dir = TestDir::new(&marker());
    let not_an_object = dir.join("not-an-object");
    fs::write(&not_an_object, b"\x7fELF but not really").expect("write the file");
    let out = run(
        Command::new(BIN)
            .arg("check-ebpf")
            .arg("--object")
            .arg(&not_an_object),
        DEFAULT_TIMEOUT,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{stderr}");
    assert!(stderr.contains("eBPF object"), "a clear error: {stderr}");
    assert_no_panic(&stderr);
}
