//! Files the monitor writes as root (recordings, the event and alert logs, the history) are
//! never written through a symbolic link, never a FIFO (no hang), and get their mode set on
//! the open file.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::common::{
    BIN, DEFAULT_TIMEOUT, TestDir, marker, path_str, require_root, run, workspace,
};
use crate::storage::story;

const PRECIOUS: &str = "precious: must not be truncated or appended to\n";

/// A file with known contents and mode 0644, and a symbolic link to it.
fn target_and_link(dir: &TestDir) -> (PathBuf, PathBuf) {
    let target = dir.join("target");
    fs::write(&target, PRECIOUS).expect("write the target");
    fs::set_permissions(&target, fs::Permissions::from_mode(0o644)).expect("chmod");
    let link = dir.join("link");
    symlink(&target, &link).expect("symlink");
    (target, link)
}

fn assert_untouched(target: &Path) {
    assert_eq!(
        fs::read_to_string(target).expect("read the target"),
        PRECIOUS
    );
    let mode = fs::metadata(target).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o644, "the target's mode is left alone");
}

fn mkfifo(path: &Path) {
    let c = CString::new(path.as_os_str().as_bytes()).expect("no NUL");
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

/// `--replay` of the attack story as root (it is root who must not be fooled), with `args`
/// (the workspace's rules unless they name `--rules`).
fn replay_as_root(args: &[&str]) -> Output {
    let story = path_str(&story());
    let rules = workspace("rules");
    let mut all = vec!["--replay", &story, "--json", "--speed", "max"];
    if !args.contains(&"--rules") {
        all.extend_from_slice(&["--rules", &rules]);
    }
    all.extend_from_slice(args);
    run(Command::new(BIN).args(&all), DEFAULT_TIMEOUT)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_recording_is_never_written_through_a_symlink() {
    require_root();
    let dir = TestDir::new(&marker());
    let (target, link) = target_and_link(&dir);
    let out = replay_as_root(&["--record", &path_str(&link)]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "secmon: error: {}: is a symbolic link: secmon does not write through symbolic links",
            link.display()
        )),
        "{err}"
    );
    assert_untouched(&target);
}

#[test]
fn a_recording_to_a_fifo_is_refused_without_hanging() {
    require_root();
    let dir = TestDir::new(&marker());
    let fifo = dir.join("fifo");
    mkfifo(&fifo);
    // `run` fails the test if the monitor does not exit in time (an open blocked on the FIFO).
    let out = replay_as_root(&["--record", &path_str(&fifo)]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "{}: is a FIFO or socket, not a regular file",
            fifo.display()
        )),
        "{err}"
    );
}

#[test]
fn a_recording_gets_mode_0600_even_over_a_looser_file() {
    require_root();
    let dir = TestDir::new(&marker());
    let file = dir.join("rec.jsonl");
    fs::write(&file, "old contents\n").expect("write");
    fs::set_permissions(&file, fs::Permissions::from_mode(0o666)).expect("chmod");
    let out = replay_as_root(&["--record", &path_str(&file)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mode = fs::metadata(&file).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = fs::read_to_string(&file).expect("read");
    assert!(
        text.starts_with("{\"format\":\"secmon-recording\""),
        "{text}"
    );
}

#[test]
fn the_history_database_is_never_opened_through_a_symlink() {
    require_root();
    let dir = TestDir::new(&marker());
    let (target, link) = target_and_link(&dir);
    let out = replay_as_root(&["--db", &path_str(&link)]);
    let err = stderr(&out);
    // The history is optional: the replay goes on without it, saying why.
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "secmon: warning: history disabled: {}: is a symbolic link",
            link.display()
        )),
        "{err}"
    );
    assert_untouched(&target);
    let fifo = dir.join("fifo.db");
    mkfifo(&fifo);
    let out = replay_as_root(&["--db", &path_str(&fifo)]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("is a FIFO or socket, not a regular file"),
        "{err}"
    );
}

/// A live monitor whose `[response]` log files are `log_file` and `alert_log`: it must refuse
/// to start, naming the file, and leave the link's target alone.
fn live_with_logs(dir: &TestDir, log_file: &Path, alert_log: &Path) -> Output {
    let config = dir.join("secmon.toml");
    fs::write(
        &config,
        format!(
            "[response]\nlog_file = {:?}\nalert_log = {:?}\n",
            path_str(log_file),
            path_str(alert_log)
        ),
    )
    .expect("write the config");
    run(
        Command::new(BIN).args([
            "--json",
            "--duration",
            "1",
            "--config",
            &path_str(&config),
            "--rules",
            &workspace("rules"),
            "--db",
            &path_str(&dir.join("h.db")),
        ]),
        Duration::from_secs(60),
    )
}

#[test]
fn log_files_are_never_written_through_a_symlink_or_into_a_fifo() {
    require_root();
    let dir = TestDir::new(&marker());
    let (target, link) = target_and_link(&dir);
    let out = live_with_logs(&dir, &link, &dir.join("alerts.jsonl"));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "[response] log_file: cannot open {}: is a symbolic link",
            link.display()
        )),
        "{err}"
    );
    assert_untouched(&target);

    let fifo = dir.join("alerts.fifo");
    mkfifo(&fifo);
    let out = live_with_logs(&dir, &dir.join("events.jsonl"), &fifo);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "[response] alert_log: cannot open {}: is a FIFO or socket, not a regular file",
            fifo.display()
        )),
        "{err}"
    );
}

/// A rule directory like an administrator's: root's, 0755, with one valid rule file (0644).
fn rules_dir(dir: &TestDir) -> (PathBuf, PathBuf) {
    let rules = dir.join("rules");
    fs::create_dir(&rules).expect("mkdir");
    fs::set_permissions(&rules, fs::Permissions::from_mode(0o755)).expect("chmod");
    let file = rules.join("one.json");
    fs::write(
        &file,
        r#"[{"name": "one", "condition": "process.name == 'x'", "risk_score": 0.5}]"#,
    )
    .expect("write a rule");
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).expect("chmod");
    (rules, file)
}

#[test]
fn as_root_rules_that_others_can_change_are_refused() {
    require_root();
    let dir = TestDir::new(&marker());
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    let (rules, file) = rules_dir(&dir);
    let rules_s = path_str(&rules);
    let check = || {
        run(
            Command::new(BIN).args(["rules", "check", &rules_s]),
            DEFAULT_TIMEOUT,
        )
    };
    let out = check();
    assert!(out.status.success(), "{}", stderr(&out));

    fs::set_permissions(&file, fs::Permissions::from_mode(0o664)).expect("chmod g+w");
    let out = check();
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains(&format!(
            "{}: refusing to use this rule file as root: its mode 0664 lets its group change it \
             (owner root (uid 0)); fix: sudo chmod go-w {}",
            file.display(),
            file.display()
        )),
        "{all}"
    );
    // The monitor itself (here a replay, which loads the same way) refuses to start.
    let out = replay_as_root(&["--rules", &rules_s]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("refusing to use this rule file as root"),
        "{err}"
    );

    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).expect("chmod");
    std::os::unix::fs::chown(&file, Some(65534), Some(65534)).expect("chown nobody");
    let out = check();
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("rule file as root: it is owned by nobody (uid 65534), not root (mode 0644)"),
        "{all}"
    );
}

#[test]
fn as_root_a_config_file_others_can_change_is_refused() {
    require_root();
    let dir = TestDir::new(&marker());
    let config = dir.join("secmon.toml");
    fs::write(&config, "[response]\nenable_alerts = true\n").expect("write");
    fs::set_permissions(&config, fs::Permissions::from_mode(0o600)).expect("chmod");
    let config_s = path_str(&config);
    let out = replay_as_root(&["--config", &config_s]);
    assert!(out.status.success(), "{}", stderr(&out));

    std::os::unix::fs::chown(&config, Some(65534), Some(65534)).expect("chown nobody");
    let out = replay_as_root(&["--config", &config_s]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "secmon: error: {}: refusing to use this config file as root: it is owned by nobody \
             (uid 65534), not root (mode 0600)",
            config.display()
        )),
        "{err}"
    );
    std::os::unix::fs::chown(&config, Some(0), Some(0)).expect("chown root");
    fs::set_permissions(&config, fs::Permissions::from_mode(0o602)).expect("chmod o+w");
    let out = replay_as_root(&["--config", &config_s]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("config file as root: its mode 0602 lets all users change it"),
        "{err}"
    );
}
