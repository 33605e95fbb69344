//! The terminal UI on a remote machine end to end: a real `secmon-tui serve` on loopback (a
//! recording, and the live kernel), and a real `secmon-tui --connect URL --token-file FILE` in
//! a tmux session (`tui.rs`'s [`Tmux`]), run as the unprivileged user `nobody`: no root, so no
//! local probes can be loaded, and none are (its file descriptors are checked).
//!
//! The remote's API is asked (with the token) whether the keys acted on it: a rule switched in
//! the remote TUI is switched in `/api/v1/rules`, a probe family in `/api/v1/probes`. The
//! remote is stopped while the TUI runs (the header says it reconnects and the keys still
//! work) and started again on the same port (events flow again, by themselves).
use std::{
    fs,
    os::unix::fs::{PermissionsExt, chown},
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::common::{
    BIN, DEFAULT_TIMEOUT, Instance, READY_TIMEOUT, STOP_TIMEOUT, TestDir, copy_executable, marker,
    next_id, path_str, require_root, run, spawn, workspace,
};
use crate::tui::{EXITED, SCREEN_TIMEOUT, Tmux, set_filter, shell_says_exited, wrapper_script};

/// The recording a remote serves; slowed down so that it is still playing when the TUI
/// connects, and again after a restart.
const RECORDING: &str = "tests/fixtures/recordings/attack-story.jsonl";
const SLOW: &str = "0.02";
/// The line a controller prints once it accepts connections.
const SERVING: &str = "secmon: controller: serving ";
/// The unprivileged user the remote TUI runs as.
const NOBODY: u32 = 65534;

/// A remote machine: `secmon-tui serve` with a config (and so a token) of the test's own.
struct Remote {
    server: Option<Instance>,
    config: PathBuf,
    args: Vec<String>,
    port: u16,
    token: String,
    agent: ureq::Agent,
}

impl Remote {
    /// Starts `serve ARGS` with the config in `dir`, on a free loopback port; `enforce`:
    /// real deny entries (`[response] enforce = true`).
    fn start(dir: &Path, args: &[&str], enforce: bool) -> Remote {
        Remote::start_with(dir, args, enforce, "")
    }

    /// [`Remote::start`] with `controller` added to its `[controller]` section (TLS).
    fn start_with(dir: &Path, args: &[&str], enforce: bool, controller: &str) -> Remote {
        let config = dir.join("secmon.toml");
        fs::write(
            &config,
            format!(
                "[storage]\nenabled = true\npath = {:?}\n\n\
                 [response]\ncontrol_socket = {:?}\nenforce = {enforce}\n\n\
                 [controller]\nlisten = \"127.0.0.1:0\"\ntoken_file = {:?}\naudit_log = {:?}\n\
                 {controller}\n",
                path_str(&dir.join("events.db")),
                path_str(&dir.join("control.sock")),
                path_str(&dir.join("controller.token")),
                path_str(&dir.join("controller-audit.log")),
            ),
        )
        .expect("write the remote's config");
        let mut remote = Remote {
            server: None,
            config,
            args: args.iter().map(|a| a.to_string()).collect(),
            port: 0,
            token: String::new(),
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .proxy(None)
                .timeout_global(Some(Duration::from_secs(10)))
                .build()
                .into(),
        };
        remote.run("127.0.0.1:0");
        remote.token = fs::read_to_string(dir.join("controller.token"))
            .expect("the remote's token")
            .trim()
            .to_string();
        remote
    }

    /// Starts the server listening on `listen`; remembers its port.
    fn run(&mut self, listen: &str) {
        let mut args = vec!["serve".to_string()];
        args.extend(self.args.iter().cloned());
        args.extend([
            "--config".to_string(),
            path_str(&self.config),
            "--listen".to_string(),
            listen.to_string(),
        ]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut server = Instance::start(&args);
        if !args.contains(&"--replay") {
            server.wait_ready();
        }
        let line = server.wait_for_stderr_within("the controller's address", READY_TIMEOUT, |l| {
            l.starts_with(SERVING)
        });
        let port = line
            .split_whitespace()
            .find_map(|w| w.split_once("://127.0.0.1:").map(|(_, port)| port))
            .and_then(|rest| rest.trim_end_matches('/').parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        self.port = port;
        self.server = Some(server);
    }

    /// Stops the server (SIGTERM) and waits for it to exit.
    fn stop(&mut self) {
        let server = self.server.take().expect("the remote runs");
        server.signal(libc::SIGTERM);
        let (status, _, stderr) = server.finish(STOP_TIMEOUT);
        assert!(status.success(), "remote: {status}\n{}", stderr.join("\n"));
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// GET `/api/v1{path}` with the token.
    #[track_caller]
    fn get(&self, path: &str) -> Value {
        let mut answer = self
            .agent
            .get(format!("{}/api/v1{path}", self.url()))
            .header("authorization", format!("Bearer {}", self.token))
            .call()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert_eq!(answer.status().as_u16(), 200, "GET {path}");
        serde_json::from_str(&answer.body_mut().read_to_string().expect("a body")).expect("JSON")
    }

    /// Whether rule `name` is enabled on the remote.
    fn rule_enabled(&self, name: &str) -> bool {
        self.get("/rules")["rules"]
            .as_array()
            .expect("a rule list")
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("no rule {name} on the remote"))["enabled"]
            .as_bool()
            .expect("enabled is a boolean")
    }

    fn probe_state(&self, family: &str) -> String {
        self.get("/probes")["probes"]
            .as_array()
            .expect("a probe list")
            .iter()
            .find(|p| p["family"] == family)
            .unwrap_or_else(|| panic!("no probe family {family}"))["state"]
            .as_str()
            .expect("a state")
            .to_string()
    }
}

/// The remote's token in a file the user `nobody` owns (mode 600) in a directory it can
/// reach, as an operator would copy it to their own machine.
fn client_token(remote: &Remote, dir: &TestDir) -> PathBuf {
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o711)).expect("chmod the dir");
    let path = dir.join("remote.token");
    fs::write(&path, format!("{}\n", remote.token)).expect("write the token");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod the token");
    chown(&path, Some(NOBODY), Some(NOBODY)).expect("give the token to nobody");
    path
}

/// `secmon-tui --connect URL --token-file FILE` as `nobody`, in a tmux session.
fn remote_tui(remote: &Remote, token: &Path) -> Tmux {
    let script = wrapper_script("", "");
    let uid = NOBODY.to_string();
    let url = remote.url();
    let token = path_str(token);
    Tmux::start(
        &format!("secmon-remote-{}-{}", std::process::id(), next_id()),
        &script,
        &[
            "setpriv",
            "--reuid",
            &uid,
            "--regid",
            &uid,
            "--clear-groups",
            BIN,
            "--connect",
            &url,
            "--token-file",
            &token,
        ],
    )
}

/// The `N events` of the header's second line.
fn events_shown(screen: &str) -> u64 {
    screen
        .lines()
        .nth(1)
        .and_then(|line| {
            line.split(" │ ").find_map(|part| {
                let mut words = part.split_whitespace();
                let count = words.next()?;
                (words.next() == Some("events")).then_some(count)
            })
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The pid of the program the tmux session's shell runs (the remote TUI).
fn tui_pid(tmux: &Tmux) -> u32 {
    let shell: u32 = tmux.display("#{pane_pid}").parse().expect("the pane's pid");
    let deadline = Instant::now() + SCREEN_TIMEOUT;
    loop {
        let children =
            fs::read_to_string(format!("/proc/{shell}/task/{shell}/children")).unwrap_or_default();
        if let Some(pid) = children.split_whitespace().find_map(|p| p.parse().ok()) {
            return pid;
        }
        assert!(Instant::now() < deadline, "the shell started no program");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Checks that the remote TUI runs as `nobody` and holds no BPF program, map or link.
fn assert_unprivileged_without_bpf(pid: u32) {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("the TUI's status");
    let uid_line = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .expect("a Uid line");
    assert!(
        uid_line
            .split_whitespace()
            .skip(1)
            .all(|u| u == NOBODY.to_string()),
        "the remote TUI is not running as nobody: {uid_line}"
    );
    for fd in fs::read_dir(format!("/proc/{pid}/fd")).expect("the TUI's descriptors") {
        let target = fs::read_link(fd.expect("an fd").path()).unwrap_or_default();
        assert!(
            !path_str(&target).contains("bpf"),
            "the remote TUI holds a BPF object: {}",
            target.display()
        );
    }
}

/// Quits with `q`; the shell says the TUI exited with status 0.
fn quit(tmux: &Tmux) {
    tmux.keys(&["q"]);
    let screen = tmux.wait_for("the TUI's exit", SCREEN_TIMEOUT, shell_says_exited);
    assert!(
        screen.contains(&format!("{EXITED} 0")),
        "the remote TUI did not exit cleanly:\n{screen}"
    );
}

/// A recording served on loopback, watched from the remote TUI as `nobody`: its events in the
/// panes with the remote's analysis, a rule switched on the remote from the rules view, the
/// remote stopped (reconnecting, the keys still answer) and started again on the same port
/// (events again, without a key).
/// The `rules N` the header shows (the rules loaded on the remote, from its status).
fn rules_in_header(screen: &str) -> Option<usize> {
    screen
        .split('│')
        .find_map(|cell| cell.trim().strip_prefix("rules ")?.parse().ok())
}

#[test]
fn remote_tui_follows_a_replayed_controller_through_a_restart() {
    require_root(); // to run the TUI as another user
    let dir = TestDir::new(&marker());
    let mut remote = Remote::start(
        dir.path(),
        &["--replay", &workspace(RECORDING), "--speed", SLOW],
        false,
    );
    let client_dir = TestDir::new(&marker());
    let token = client_token(&remote, &client_dir);
    let tmux = remote_tui(&remote, &token);

    // The remote's host (from the recording), the link up, and its events with its analysis.
    let screen = tmux.wait_for("the remote's events", READY_TIMEOUT, |s| {
        s.contains("secmon@vm")
            && s.contains("link connected")
            && events_shown(s) > 0
            && rules_in_header(s).is_some_and(|n| n > 0)
    });
    assert!(screen.contains("Processes"), "{screen}");
    assert_unprivileged_without_bpf(tui_pid(&tmux));

    // A probe key says there are none to switch in a replay (the remote's probes say replay).
    tmux.keys(&["1"]);
    tmux.wait_for("the replay's probe answer", SCREEN_TIMEOUT, |s| {
        s.contains("no kernel probes to switch")
    });

    // The rules view lists every rule the header counts on the remote; Space switches the
    // first one off there.
    let loaded = rules_in_header(&screen).expect("waited for it");
    tmux.keys(&["R"]);
    tmux.wait_for("the remote's rules", SCREEN_TIMEOUT, |s| {
        s.contains(&format!("Rules ({loaded})"))
    });
    tmux.keys(&["Space"]);
    let screen = tmux.wait_for("the switch", SCREEN_TIMEOUT, |s| {
        s.lines()
            .any(|l| l.contains(" disabled") && l.contains("rule "))
    });
    let name = screen
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("rule ")
                .and_then(|r| r.strip_suffix(" disabled"))
        })
        .unwrap_or_else(|| panic!("no `rule NAME disabled` line:\n{screen}"))
        .to_string();
    assert!(
        !remote.rule_enabled(&name),
        "rule {name} is still enabled on the remote"
    );
    tmux.keys(&["Space"]);
    tmux.wait_for("the rule enabled again", SCREEN_TIMEOUT, |s| {
        s.contains(&format!("rule {name} enabled"))
    });
    assert!(remote.rule_enabled(&name), "rule {name} stayed disabled");
    tmux.keys(&["Escape"]);

    // The remote goes away: the header says the link is reconnecting, the keys still work.
    remote.stop();
    let screen = tmux.wait_for("the link reconnecting", SCREEN_TIMEOUT, |s| {
        s.contains("link reconnecting in ")
    });
    let before = events_shown(&screen);
    tmux.keys(&["?"]);
    tmux.wait_for("the help overlay", SCREEN_TIMEOUT, |s| s.contains("Keys"));
    tmux.keys(&["Escape"]);
    // An Escape and a key read together are one Alt-key to the terminal: the next key waits
    // until the overlay is gone.
    tmux.wait_for("the help overlay closed", SCREEN_TIMEOUT, |s| {
        !s.contains("Keys")
    });
    tmux.keys(&["1"]);
    tmux.wait_for("a key refused without a link", SCREEN_TIMEOUT, |s| {
        s.contains("no kernel probes to switch") || s.contains("not connected to vm")
    });

    // Started again on the same port (same token): connected again and new events, by itself.
    remote.run(&format!("127.0.0.1:{}", remote.port));
    tmux.wait_for("events after the restart", READY_TIMEOUT, |s| {
        s.contains("link connected") && events_shown(s) > before
    });
    quit(&tmux);
    remote.stop();
}

/// The live kernel served on loopback, watched from the remote TUI as `nobody`: a program run
/// here shows in its process pane, and the probe keys switch the remote's probes.
#[test]
fn remote_tui_shows_live_events_and_switches_the_remotes_probes() {
    require_root();
    let dir = TestDir::new(&marker());
    let mut remote = Remote::start(dir.path(), &[], true);
    let client_dir = TestDir::new(&marker());
    let token = client_token(&remote, &client_dir);
    let tmux = remote_tui(&remote, &token);
    tmux.wait_for("the live remote", READY_TIMEOUT, |s| {
        s.contains("link connected") && s.contains("1 proc")
    });
    assert_unprivileged_without_bpf(tui_pid(&tmux));

    // A program of our own, run until the remote's stream has shown it.
    let name = format!("rmt{}", next_id());
    let exe = copy_executable("/bin/true", &dir.join(&name));
    set_filter(&tmux, &name);
    let deadline = Instant::now() + SCREEN_TIMEOUT;
    loop {
        let mut child = spawn(&mut Command::new(&exe));
        child.wait().expect("wait for the program");
        let screen = tmux.capture();
        if screen
            .lines()
            .any(|l| l.contains(&name) && l.contains(" exec "))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the program never showed in the remote TUI:\n{screen}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    // `2` switches the remote's file probes off, and on again.
    assert_eq!(remote.probe_state("file"), "on");
    tmux.keys(&["2"]);
    tmux.wait_for("the file probes off", SCREEN_TIMEOUT, |s| {
        s.contains("file probes off")
    });
    assert_eq!(remote.probe_state("file"), "off");
    tmux.keys(&["2"]);
    tmux.wait_for("the file probes on", SCREEN_TIMEOUT, |s| {
        s.contains("file probes on")
    });
    assert_eq!(remote.probe_state("file"), "on");

    // `b` asks the remote what a block would do; nothing is denied.
    let exe_s = path_str(&exe);
    tmux.keys(&["b"]);
    tmux.wait_for("the remote's simulation", SCREEN_TIMEOUT, |s| {
        s.contains(&format!("would deny exec path {exe_s}"))
    });
    assert_eq!(remote.get("/denies")["denies"], serde_json::json!([]));

    // `B`, `y`: a real deny entry on the remote, made by its enforcer: the program is killed.
    tmux.keys(&["B"]);
    tmux.wait_for("the question", SCREEN_TIMEOUT, |s| {
        s.contains(&format!("really deny exec path {exe_s} on vm"))
    });
    tmux.keys(&["y"]);
    tmux.wait_for("the block", SCREEN_TIMEOUT, |s| {
        s.contains(&format!("denied exec path {exe_s} on vm"))
    });
    let denies = remote.get("/denies")["denies"].clone();
    assert_eq!(
        denies[0]["target"],
        format!("exec path {exe_s}"),
        "{denies}"
    );
    let status = Command::new(&exe).status().expect("run the program");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL),
        "the program blocked from the remote TUI ran: {status}"
    );

    // `D` lists the remote's entry, `u` lifts it there.
    tmux.keys(&["D"]);
    tmux.wait_for("the remote's deny entry", SCREEN_TIMEOUT, |s| {
        s.contains("Blocked in the kernel (1)") && s.contains(&format!("exec path {exe_s}"))
    });
    tmux.keys(&["u"]);
    tmux.wait_for("the entry lifted", SCREEN_TIMEOUT, |s| {
        s.contains("Blocked in the kernel (0)") && s.contains(&format!("lifted exec path {exe_s}"))
    });
    assert_eq!(remote.get("/denies")["denies"], serde_json::json!([]));
    assert!(Command::new(&exe).status().expect("run").success());

    // `h`: the remote's history, queried with the history's options.
    tmux.keys(&["Escape"]);
    tmux.wait_for("the live panes", SCREEN_TIMEOUT, |s| {
        s.contains("▶ Processes")
    });
    tmux.keys(&["h"]);
    tmux.wait_for("the remote's history", SCREEN_TIMEOUT, |s| {
        s.contains("the history of vm")
    });
    tmux.keys(&["/", "C-u"]);
    let query = format!("--last 1h --process {name} --type process_exec");
    tmux.type_text(&query);
    tmux.keys(&["Enter"]);
    tmux.wait_for("the query run", SCREEN_TIMEOUT, |s| {
        s.contains(&format!("query: {query}"))
    });
    // The remote writes its history in batches: `r` asks again until the execs are stored.
    let deadline = Instant::now() + STORE_TIMEOUT;
    loop {
        let screen = tmux.capture();
        if history_rows(&screen).any(|l| l.contains(&exe_s) && l.contains(" exec ")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the remote's history never showed the program:\n{screen}"
        );
        std::thread::sleep(Duration::from_secs(1));
        tmux.keys(&["r"]);
    }
    // (`q` in a view closes it: back to the panes first.)
    tmux.keys(&["Escape"]);
    tmux.wait_for("the live panes", SCREEN_TIMEOUT, |s| {
        s.contains("▶ Processes")
    });
    quit(&tmux);
    remote.stop();
}

/// The rows of the history view (below its query line).
fn history_rows(screen: &str) -> impl Iterator<Item = &str> {
    screen
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("query:"))
        .skip(1)
}

/// How long the remote may take to store an event (its history writes in batches).
const STORE_TIMEOUT: Duration = Duration::from_secs(30);

/// `secmon-tui --connect ARGS` without a terminal: its exit status and stderr.
fn connect_fails(args: &[&str]) -> (i32, String) {
    let out = run(
        Command::new(BIN).arg("--connect").args(args),
        DEFAULT_TIMEOUT,
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code().unwrap_or(-1), stderr)
}

/// A wrong token, an address where nothing listens, a plain-http address off loopback, a token
/// file others can read, a certificate not trusted: each a clear one-line error before any
/// terminal is taken, and a non-zero status.
#[test]
fn remote_tui_start_errors_are_clear() {
    let dir = TestDir::new(&marker());
    let mut remote = Remote::start(
        dir.path(),
        &["--replay", &workspace(RECORDING), "--speed", SLOW],
        false,
    );
    let url = remote.url();
    let wrong = dir.join("wrong.token");
    fs::write(&wrong, "0123456789abcdef\n").expect("write a wrong token");
    fs::set_permissions(&wrong, fs::Permissions::from_mode(0o600)).expect("chmod");

    let (code, stderr) = connect_fails(&[&url, "--token-file", &path_str(&wrong)]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("the controller refused the token (401"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("0123456789abcdef"),
        "the token was printed: {stderr}"
    );

    // The right token without a terminal: connected, then told a terminal is needed.
    let right = dir.join("right.token");
    fs::write(&right, &remote.token).expect("write the token");
    fs::set_permissions(&right, fs::Permissions::from_mode(0o600)).expect("chmod");
    let (code, stderr) = connect_fails(&[&url, "--token-file", &path_str(&right)]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("connected to vm"), "{stderr}");
    assert!(stderr.contains("needs a terminal"), "{stderr}");

    // A token file others can read is refused before anything is sent.
    fs::set_permissions(&right, fs::Permissions::from_mode(0o644)).expect("chmod");
    let (code, stderr) = connect_fails(&[&url, "--token-file", &path_str(&right)]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("chmod 600"), "{stderr}");
    fs::set_permissions(&right, fs::Permissions::from_mode(0o600)).expect("chmod");

    // https to a plain-http controller: a TLS error, not a hang.
    let https = url.replace("http://", "https://");
    let (code, stderr) = connect_fails(&[&https, "--token-file", &path_str(&right)]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("secmon: error: --connect https://"),
        "{stderr}"
    );

    // Plain http off loopback is refused before any connection.
    let (code, stderr) =
        connect_fails(&["http://192.0.2.1:9988", "--token-file", &path_str(&right)]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("only for a loopback address"), "{stderr}");

    // Nothing listening any more.
    remote.stop();
    let (code, stderr) = connect_fails(&[&url, "--token-file", &path_str(&right)]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("cannot reach"), "{stderr}");
}

/// A self-signed certificate for 127.0.0.1 and localhost (and its key), made with openssl
/// (`CA:FALSE`: a server's own, which rustls accepts as a trusted root with --ca-file).
fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "extendedKeyUsage=serverAuth"])
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

/// An https controller: refused without its certificate (a clear error naming --ca-file), and
/// with `--ca-file` the JSON calls and the WebSocket stream both run over verified TLS.
#[test]
fn remote_tui_over_https_verifies_the_certificate() {
    require_root(); // to run the TUI as another user
    let dir = TestDir::new(&marker());
    let client_dir = TestDir::new(&marker());
    let (cert, key) = self_signed(client_dir.path());
    fs::set_permissions(&cert, fs::Permissions::from_mode(0o644)).expect("chmod the cert");
    let remote = Remote::start_with(
        dir.path(),
        &["--replay", &workspace(RECORDING), "--speed", SLOW],
        false,
        &format!(
            "tls_cert = {:?}\ntls_key = {:?}",
            path_str(&cert),
            path_str(&key)
        ),
    );
    let token = client_token(&remote, &client_dir);
    let url = format!("https://localhost:{}", remote.port);

    let (code, stderr) = connect_fails(&[&url, "--token-file", &path_str(&token)]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("is not trusted") && stderr.contains("--ca-file"),
        "{stderr}"
    );

    let uid = NOBODY.to_string();
    let (cert_s, token_s) = (path_str(&cert), path_str(&token));
    let tmux = Tmux::start(
        &format!("secmon-remote-tls-{}-{}", std::process::id(), next_id()),
        &wrapper_script("", ""),
        &[
            "setpriv",
            "--reuid",
            &uid,
            "--regid",
            &uid,
            "--clear-groups",
            BIN,
            "--connect",
            &url,
            "--token-file",
            &token_s,
            "--ca-file",
            &cert_s,
        ],
    );
    tmux.wait_for("the remote's events over TLS", READY_TIMEOUT, |s| {
        s.contains("secmon@vm") && s.contains("link connected") && events_shown(s) > 0
    });

    // A dropped SSH session (SIGHUP) stops it cleanly, the terminal given back.
    let pid = libc::pid_t::try_from(tui_pid(&tmux)).expect("a pid");
    // SAFETY: kill has no memory-safety preconditions; the pid is the test's own child's.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    let screen = tmux.wait_for("the TUI's exit", SCREEN_TIMEOUT, shell_says_exited);
    assert!(
        screen.contains(&format!("{EXITED} 0")) && screen.contains("SIGHUP received; stopping"),
        "{screen}"
    );
    assert!(
        screen.contains("events received from vm"),
        "no summary:\n{screen}"
    );
}
