//! The terminal UI end to end: the real `secmon-tui` (no `--json`) in a detached tmux session,
//! driven with `send-keys` and read with `capture-pane`.
//!
//! The test performs real actions (an exec of a copied binary, a file open, a loopback
//! connect), checks that each shows up in its pane with its risk marker (its own rules make
//! them suspicious or malicious), switches the file probe off with `2` and checks that a
//! later open does not show up, reloads the rules with `r` (good, then broken), toggles a rule
//! in the rules pane, quits with `q` and checks that the terminal is back to normal.
//!
//! It runs its own tmux server (`tmux -L <unique>`), killed at the end even on failure.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{
    AS_NOBODY, BIN, READY_TIMEOUT, SHARED_CONFIG, TestDir, copy_executable, marker, next_id,
    no_machine_flood, require_root, spawn,
};

/// How long a test waits for something it caused to show on the screen.
pub(crate) const SCREEN_TIMEOUT: Duration = Duration::from_secs(15);
/// How often the screen is read while waiting.
const POLL: Duration = Duration::from_millis(100);
const WIDTH: u16 = 120;
const HEIGHT: u16 = 40;
/// The line the wrapper shell prints once `secmon-tui` has exited.
pub(crate) const EXITED: &str = "secmon-tui exited with status";

/// The wrapper's own line, at the start of a line: the UI can show the wrapper's command line
/// (which contains the same words) in its process pane before it exits.
pub(crate) fn shell_says_exited(screen: &str) -> bool {
    screen.lines().any(|l| l.starts_with(EXITED))
}

/// The shell line a session runs: `env` (environment changes) and the command given as
/// arguments, then [`EXITED`] with its status, then `after` (more commands, `;`-terminated),
/// then a sleep that keeps the pane (and what the command left on it) readable.
pub(crate) fn wrapper_script(env: &str, after: &str) -> String {
    format!(r#"{env}"$0" "$@"; echo "{EXITED} $?"; {after}exec sleep 600"#)
}

/// A detached tmux session on a private server.
pub(crate) struct Tmux {
    socket: String,
    session: String,
    /// The server's socket file (tmux leaves it behind when killed).
    socket_path: String,
}

impl Tmux {
    /// Starts `command` (run through `sh -c`) in a new `WIDTH`×`HEIGHT` session.
    pub(crate) fn start(name: &str, script: &str, args: &[&str]) -> Tmux {
        let mut tmux = Tmux {
            socket: format!("{name}-sock"),
            session: name.to_string(),
            socket_path: String::new(),
        };
        let (w, h) = (WIDTH.to_string(), HEIGHT.to_string());
        let mut argv = vec![
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-x",
            &w,
            "-y",
            &h,
            "-s",
            name,
            "--",
            "sh",
            "-c",
            script,
        ];
        argv.extend_from_slice(args);
        let out = tmux.run(&argv);
        assert!(
            out.status.success(),
            "tmux new-session failed ({}): {}\n(is tmux installed? `cargo xtask setup` installs it)",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        tmux.socket_path = tmux.display("#{socket_path}");
        tmux
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run tmux (install it: `cargo xtask setup`): {e}"))
    }

    /// Sends tmux key names (`Enter`, `Escape`, `Space`, `q`…).
    pub(crate) fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", &self.session];
        args.extend_from_slice(keys);
        let out = self.run(&args);
        assert!(out.status.success(), "send-keys {keys:?}: {out:?}");
    }

    /// Types text literally.
    pub(crate) fn type_text(&self, text: &str) {
        let out = self.run(&["send-keys", "-t", &self.session, "-l", "--", text]);
        assert!(out.status.success(), "send-keys -l {text:?}: {out:?}");
    }

    pub(crate) fn capture(&self) -> String {
        let out = self.run(&["capture-pane", "-p", "-t", &self.session]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub(crate) fn display(&self, format: &str) -> String {
        let out = self.run(&["display-message", "-p", "-t", &self.session, format]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Polls the screen until `pred` holds; panics with the last screen after `timeout`.
    #[track_caller]
    pub(crate) fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.capture();
            if pred(&screen) {
                return screen;
            }
            if Instant::now() >= deadline {
                panic!("the screen never showed {what} within {timeout:?}; last screen:\n{screen}");
            }
            thread::sleep(POLL);
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
        if !self.socket_path.is_empty() {
            let _ = fs::remove_file(&self.socket_path);
        }
    }
}

/// The screen's lines, each with the pane it is in (`Processes`, `Files`, `Network`,
/// `Alerts`, or `` above the first pane).
pub(crate) fn lines_by_pane(screen: &str) -> Vec<(&'static str, &str)> {
    let mut pane = "";
    let mut out = Vec::new();
    for line in screen.lines() {
        let title = line.trim_start().trim_start_matches("▶ ");
        for name in ["Processes", "Files", "Network", "Alerts"] {
            if title.starts_with(name) && line.contains('─') {
                pane = name;
            }
        }
        out.push((pane, line));
    }
    out
}

/// A table row of `pane` that contains `needle` and starts with the risk marker `marker`.
pub(crate) fn row_in<'a>(
    screen: &'a str,
    pane: &str,
    marker: &str,
    needle: &str,
) -> Option<&'a str> {
    lines_by_pane(screen)
        .into_iter()
        .find(|(p, line)| *p == pane && line.contains(needle) && line.starts_with(marker))
        .map(|(_, line)| line)
}

/// Sets the filter (`/`, clear, text, Enter) and waits for the header to show it. The text is
/// typed in two halves, so that no tmux command line holds all of it (and matches it).
pub(crate) fn set_filter(tmux: &Tmux, text: &str) {
    tmux.keys(&["/", "C-u"]);
    let middle = text.len() / 2;
    tmux.type_text(&text[..middle]);
    tmux.type_text(&text[middle..]);
    tmux.keys(&["Enter"]);
    let shown = format!("filter \"{text}\"");
    tmux.wait_for(&shown, SCREEN_TIMEOUT, |s| s.contains(&shown));
}

fn exec(path: &Path) {
    let mut child = spawn(Command::new(path).stdin(Stdio::null()));
    let status = child.wait().expect("wait for the copied binary");
    assert!(status.success(), "{} failed: {status}", path.display());
}

/// Rules of a test's own and a config (history off) in a temporary directory outside the
/// test's marker directory, and the tmux session that runs the UI on them. The tests filter on
/// their marker, which must match only their own actions, not tmux's or the shell's command
/// lines that name these files.
struct OwnRules {
    _dir: tempfile::TempDir,
    rules: PathBuf,
    config: PathBuf,
}

impl OwnRules {
    fn new(prefix: &str, file: &str, json: &str) -> OwnRules {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .expect("create a temporary directory");
        let rules = dir.path().join("rules");
        fs::create_dir(&rules).expect("create the rules directory");
        fs::write(rules.join(file), json).expect("write the rules");
        let config = dir.path().join("secmon.toml");
        fs::write(
            &config,
            "[monitoring]\nenable_process = true\nenable_filesystem = true\nenable_network = true\n\n\
             [threat_detection]\nconfidence_threshold = 0.6\n\n\
             # Not the machine's history: tests running beside it would share (and lock) it.\n\
             [storage]\nenabled = false\n",
        )
        .expect("write the config");
        OwnRules {
            _dir: dir,
            rules,
            config,
        }
    }

    /// `secmon-tui --config CONFIG --rules RULES` in a tmux session named after `session`.
    fn start_tui(&self, session: &str) -> Tmux {
        Tmux::start(
            &format!("{session}-{}-{}", std::process::id(), next_id()),
            &wrapper_script("", ""),
            &[
                BIN,
                "--config",
                self.config.to_str().expect("UTF-8 path"),
                "--rules",
                self.rules.to_str().expect("UTF-8 path"),
            ],
        )
    }
}

#[test]
fn terminal_ui_end_to_end() {
    require_root();
    // Every one of its events must be seen: no other test floods the machine meanwhile.
    let _no_flood = no_machine_flood();
    let mark = marker();
    let dir = TestDir::new(&mark);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback listener");
    let port = listener.local_addr().expect("listener address").port();

    // Rules of our own: the exec is malicious (0.9), the open and the connect suspicious (0.7).
    let own = OwnRules::new(
        "secmon-tui-e2e-",
        "tui.json",
        &format!(
            r#"[
  {{"name": "tui_test_exec", "condition": "event.type == 'process_exec' and process.path.contains('{mark}')", "risk_score": 0.9, "action": "alert", "label": "TUI test exec", "recommendation": "tui test recommendation"}},
  {{"name": "tui_test_file", "condition": "file.path.contains('{mark}')", "risk_score": 0.7, "action": "alert", "label": "TUI test file"}},
  {{"name": "tui_test_connect", "condition": "event.type == 'net_connect' and net.dst_port == {port}", "risk_score": 0.7, "action": "alert", "label": "TUI test connect"}}
]"#
        ),
    );
    let rules = &own.rules;
    let tmux = own.start_tui("secmon-tui-e2e");

    // Ready: the header and the three panes.
    tmux.wait_for("the header and panes", READY_TIMEOUT, |s| {
        s.contains(" secmon ") && s.contains("Processes") && s.contains("Network")
    });
    assert_eq!(
        tmux.display("#{alternate_on}"),
        "1",
        "the UI uses the alternate screen"
    );

    // Only our own events: filter by the marker (process path, file path).
    set_filter(&tmux, &mark);

    // An exec of a copied binary: processes pane, malicious.
    let exe = copy_executable("/bin/true", &dir.join("tuiexec"));
    exec(&exe);
    let exe_s = exe.to_str().expect("UTF-8 path").to_string();
    tmux.wait_for(
        "the exec in the processes pane marked !!",
        SCREEN_TIMEOUT,
        |s| row_in(s, "Processes", "!!", &exe_s).is_some_and(|l| l.contains(" exec ")),
    );

    // A file open: files pane, suspicious.
    let opened = dir.join("opened-1");
    fs::write(&opened, b"x").expect("create the marker file");
    drop(fs::File::open(&opened).expect("open the marker file"));
    let opened_s = opened.to_str().expect("UTF-8 path").to_string();
    // One wait for both: a capture can catch the terminal mid-frame (ratatui writes the cells
    // that changed, top to bottom, and the strip's rows all shift when an alert arrives), so
    // a row above can be new while the strip below is not redrawn yet.
    tmux.wait_for(
        "the open in the files pane marked ! and the exec in the alerts strip",
        SCREEN_TIMEOUT,
        |s| {
            row_in(s, "Files", "! ", &opened_s).is_some_and(|l| l.contains(" open "))
                && lines_by_pane(s)
                    .iter()
                    .any(|(p, l)| *p == "Alerts" && l.contains("tui_test_exec"))
        },
    );

    // A loopback connect: network pane, suspicious. Filter by the listener's address.
    let endpoint = format!("127.0.0.1:{port}");
    set_filter(&tmux, &endpoint);
    let client = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let (accepted, _) = listener.accept().expect("accept");
    tmux.wait_for(
        "the connect in the network pane marked !",
        SCREEN_TIMEOUT,
        |s| {
            row_in(s, "Network", "! ", &format!("→ {endpoint}"))
                .is_some_and(|l| l.contains(" connect "))
        },
    );
    drop((client, accepted));

    // `2` switches the file probe off: the header says so and a new open does not show.
    set_filter(&tmux, &mark);
    tmux.keys(&["2"]);
    tmux.wait_for("the file probe off in the header", SCREEN_TIMEOUT, |s| {
        s.contains("2 file off")
    });
    let unseen = dir.join("opened-2");
    fs::write(&unseen, b"x").expect("create the second marker file");
    drop(fs::File::open(&unseen).expect("open the second marker file"));
    // Events arrive in order: once a later exec shows, the open would have shown before it.
    let sync = copy_executable("/bin/true", &dir.join("tuisync"));
    exec(&sync);
    let sync_s = sync.to_str().expect("UTF-8 path").to_string();
    let screen = tmux.wait_for("the sync exec", SCREEN_TIMEOUT, |s| {
        row_in(s, "Processes", "!!", &sync_s).is_some()
    });
    assert!(
        !screen.contains("opened-2"),
        "an open with the file probe off showed up:\n{screen}"
    );

    // `r` reloads: the rule count; then a broken file: the error with file:line:column, and
    // the previous rules stay.
    tmux.keys(&["r"]);
    tmux.wait_for("the reload result", SCREEN_TIMEOUT, |s| {
        s.contains("rules reloaded: 3 rules from 1 files") && s.contains("rules 3, reload ok")
    });
    let broken = rules.join("zz-broken.json");
    fs::write(
        &broken,
        "[\n  {\"name\": \"broken\", \"condition\": \"process.name ==\"}\n]\n",
    )
    .expect("write a broken rule file");
    tmux.keys(&["r"]);
    let screen = tmux.wait_for("the reload error", SCREEN_TIMEOUT, |s| {
        s.contains("rules reload failed: ") && s.contains("rules 3, reload FAILED")
    });
    let status = screen
        .lines()
        .find(|l| l.contains("rules reload failed: "))
        .unwrap_or_default();
    let after = status
        .split_once("zz-broken.json:")
        .map(|(_, rest)| rest)
        .unwrap_or_else(|| panic!("the error names the file: {status:?}"));
    let mut position = after.split(':');
    for part in ["line", "column"] {
        let value = position.next().unwrap_or_default();
        assert!(
            !value.is_empty() && value.chars().all(|c| c.is_ascii_digit()),
            "the error gives file:line:column ({part} is {value:?}): {status:?}"
        );
    }

    // `R`: the rules pane; Space disables the selected (first) rule at once.
    tmux.keys(&["R"]);
    tmux.wait_for("the rules pane", SCREEN_TIMEOUT, |s| {
        s.contains("Rules (3)") && s.lines().any(|l| l.starts_with("on  tui_test_exec"))
    });
    tmux.keys(&["Space"]);
    // (The footer's "rule … disabled" may already be replaced by the rule watcher's report
    // of the broken file: the table is what counts.)
    tmux.wait_for("the rule disabled", SCREEN_TIMEOUT, |s| {
        s.lines().any(|l| l.starts_with("off tui_test_exec"))
    });

    // `q` quits (from the rules pane too) and the terminal is back to normal.
    tmux.keys(&["Escape"]);
    tmux.wait_for("the panes again", SCREEN_TIMEOUT, |s| {
        s.contains("Processes")
    });
    tmux.keys(&["q"]);
    let screen = tmux.wait_for("the process exit", SCREEN_TIMEOUT, shell_says_exited);
    assert!(
        screen.contains(&format!("{EXITED} 0")),
        "secmon-tui exited with an error:\n{screen}"
    );
    assert!(screen.contains("secmon: stopped:"), "{screen}");
    assert!(
        !screen.contains("Processes"),
        "the UI is still on the screen:\n{screen}"
    );
    assert_eq!(
        tmux.display("#{alternate_on}"),
        "0",
        "the alternate screen was left"
    );
}

/// A first-time user's path from an alert: `Tab` to the alerts strip, `Enter` on the alert
/// shows why it fired (the rule's name), `Esc`, then `e` shows that process's events (its
/// exec in the processes pane, the file it read in the files pane) under a `pid:N` filter.
#[test]
fn alert_explained_and_followed_to_its_process() {
    require_root();
    // Every one of its events must be seen: no other test floods the machine meanwhile.
    let _no_flood = no_machine_flood();
    let mark = marker();
    let dir = TestDir::new(&mark);
    let own = OwnRules::new(
        "secmon-tui-alert-",
        "alert.json",
        &format!(
            r#"[
  {{"name": "tui_alert_exec", "condition": "event.type == 'process_exec' and process.path.contains('{mark}')", "risk_score": 0.9, "action": "alert", "label": "TUI alert exec", "recommendation": "follow it to its process"}}
]"#
        ),
    );
    let tmux = own.start_tui("secmon-tui-alert");
    tmux.wait_for("the header and panes", READY_TIMEOUT, |s| {
        s.contains(" secmon ") && s.contains("Processes") && s.contains("Alerts")
    });
    set_filter(&tmux, &mark);

    // Another process the filter shows (and the rule flags) until `e` narrows it to one pid.
    let other = copy_executable("/bin/true", &dir.join("tuiother"));
    exec(&other);
    // Then a copied `cat` (the exec fires the rule) reading a file: two events of one process,
    // and the newest alert.
    let cat = copy_executable("/bin/cat", &dir.join("tuicat"));
    let read = dir.join("read-by-cat");
    fs::write(&read, b"x").expect("create the file cat reads");
    let mut child = spawn(
        Command::new(&cat)
            .arg(&read)
            .stdin(Stdio::null())
            .stdout(Stdio::null()),
    );
    let pid = child.id();
    assert!(child.wait().expect("wait for cat").success());
    let cat_s = cat.to_str().expect("UTF-8 path").to_string();
    let read_s = read.to_str().expect("UTF-8 path").to_string();
    tmux.wait_for("both alerts and cat's read", SCREEN_TIMEOUT, |s| {
        let alerts = lines_by_pane(s)
            .into_iter()
            .filter(|(p, l)| *p == "Alerts" && l.starts_with("!!") && l.contains("tui_alert_exec"))
            .count();
        alerts == 2 && row_in(s, "Files", "  ", &read_s).is_some()
    });

    // Tab ×3: the alerts strip has the focus (its title marked, with its keys: not the
    // footer's, which a status message may cover).
    tmux.keys(&["Tab", "Tab", "Tab"]);
    tmux.wait_for("the alerts strip focused", SCREEN_TIMEOUT, |s| {
        s.lines()
            .any(|l| l.starts_with(" ▶ Alerts") && l.contains("Enter: why it fired"))
    });
    // Select the alert, Enter: why it fired.
    tmux.keys(&["Down", "Enter"]);
    // One wait for all of it: a capture can catch the terminal mid-frame (see
    // `terminal_ui_end_to_end`), the rule drawn but not yet the process below it.
    let process = format!("pid {pid}");
    tmux.wait_for("the alert's detail", SCREEN_TIMEOUT, |s| {
        s.contains("Event detail")
            && s.contains("• tui_alert_exec")
            && s.contains("follow it to its process")
            && s.contains(&process)
    });

    // Esc closes it; `e` filters every pane to the alert's process and focuses its events.
    tmux.keys(&["Escape"]);
    tmux.wait_for("the detail closed", SCREEN_TIMEOUT, |s| {
        !s.contains("Event detail")
    });
    tmux.keys(&["e"]);
    let filter = format!("filter \"pid:{pid}\"");
    let screen = tmux.wait_for("the process's events", SCREEN_TIMEOUT, |s| {
        s.contains(&filter)
            && s.lines().any(|l| l.starts_with(" ▶ Processes"))
            && row_in(s, "Processes", "!!", &cat_s).is_some_and(|l| l.contains(" exec "))
            && row_in(s, "Files", "  ", &read_s).is_some_and(|l| l.contains(" open "))
            // The other process gone from every pane and the strip (and with it a frame
            // caught half drawn).
            && !s.contains("tuiother")
    });
    // Only that process: every row of the event panes names its pid.
    let pid_s = pid.to_string();
    let mut rows = 0;
    for (pane, line) in lines_by_pane(&screen) {
        // A table row: the marker, a space, then the time (`HH:MM:SS`).
        let bytes = line.as_bytes();
        let is_row = bytes.len() > 11 && bytes[5] == b':' && bytes[8] == b':';
        if ["Processes", "Files", "Network"].contains(&pane) && is_row {
            assert!(
                line.contains(&pid_s),
                "a row of another process: {line}\n{screen}"
            );
            rows += 1;
        }
    }
    assert!(rows >= 2, "the exec and the read at least:\n{screen}");
    tmux.keys(&["q"]);
    tmux.wait_for("the process exit", SCREEN_TIMEOUT, shell_says_exited);
}

/// The pids a test's shell script wrote to `path` (one file per name, see
/// `incident_view_shows_the_process_tree_of_an_alert`), once all are there.
fn wait_for_pids(dir: &TestDir, names: &[&str]) -> Vec<u32> {
    let deadline = Instant::now() + SCREEN_TIMEOUT;
    loop {
        let pids: Vec<Option<u32>> = names
            .iter()
            .map(|name| {
                let text = fs::read_to_string(dir.join(format!("pid.{name}"))).ok()?;
                text.trim().parse().ok()
            })
            .collect();
        if let Some(pids) = pids.iter().copied().collect::<Option<Vec<u32>>>() {
            return pids;
        }
        assert!(
            Instant::now() < deadline,
            "the script never wrote its pids {names:?}: {pids:?}"
        );
        thread::sleep(POLL);
    }
}

/// The column of a process row's fold mark (`▾ PID NAME`, `▸` folded), its depth in the tree.
fn tree_column(screen: &str, mark: char, pid: u32, name: &str) -> Option<usize> {
    let row = format!("{mark} {pid} {name}");
    screen
        .lines()
        .find_map(|l| l.find(&row).map(|at| l[..at].chars().count()))
}

/// `i` on an alert shows the incident's real process tree. In a second tmux window (so its
/// parent is the tmux server, a session boundary, and the tree's root is the first shell), a
/// shell starts a shell that runs a copied `cat` on a decoy file the test's rule flags. From
/// the alert, `i` shows sh → sh → cat indented level by level, cat marked ALERT with its read
/// of the decoy and the rule under it; `Enter` explains the read, `Esc` goes back to the tree
/// and `q` back to the panes.
#[test]
fn incident_view_shows_the_process_tree_of_an_alert() {
    require_root();
    // Every one of its events must be seen: no other test floods the machine meanwhile.
    let _no_flood = no_machine_flood();
    let mark = marker();
    let dir = TestDir::new(&mark);
    let own = OwnRules::new(
        "secmon-tui-incident-",
        "incident.json",
        &format!(
            r#"[
  {{"name": "tui_incident_decoy", "condition": "event.type == 'file_open' and file.path.contains('{mark}') and file.path.endswith('/decoy-secret')", "risk_score": 0.9, "action": "alert", "label": "Decoy read", "recommendation": "open its incident"}}
]"#
        ),
    );
    let tmux = own.start_tui("secmon-tui-incident");
    tmux.wait_for("the header and panes", READY_TIMEOUT, |s| {
        s.contains(" secmon ") && s.contains("Processes") && s.contains("Alerts")
    });
    set_filter(&tmux, &mark);

    let cat = copy_executable("/bin/cat", &dir.join("tuiinccat"));
    let decoy = dir.join("decoy-secret");
    fs::write(&decoy, b"not a secret").expect("create the decoy");
    let pids = dir.join("pid");
    // Each shell writes its pid; the inner one runs cat in the background (writing its pid
    // too) and waits, and both end with a builtin, so neither execs its last command in place.
    let inner = r#"echo $$ > "$2.inner"; "$0" "$1" > /dev/null & echo $! > "$2.cat"; wait; :"#;
    let outer = format!(r#"echo $$ > "$2.outer"; sh -c '{inner}' "$0" "$1" "$2"; :"#);
    let out = tmux.run(&[
        "new-window",
        "-d",
        "-t",
        &tmux.session,
        "--",
        "sh",
        "-c",
        &outer,
        cat.to_str().expect("UTF-8 path"),
        decoy.to_str().expect("UTF-8 path"),
        pids.to_str().expect("UTF-8 path"),
    ]);
    assert!(out.status.success(), "tmux new-window: {out:?}");
    let pids = wait_for_pids(&dir, &["outer", "inner", "cat"]);
    let (outer_pid, inner_pid, cat_pid) = (pids[0], pids[1], pids[2]);
    tmux.wait_for("the decoy's alert", SCREEN_TIMEOUT, |s| {
        lines_by_pane(s)
            .into_iter()
            .any(|(p, l)| p == "Alerts" && l.starts_with("!!") && l.contains("tui_incident_decoy"))
    });

    // The alert selected in the strip, then `i`.
    tmux.keys(&["Tab", "Tab", "Tab"]);
    tmux.wait_for("the alerts strip focused", SCREEN_TIMEOUT, |s| {
        s.lines().any(|l| l.starts_with(" ▶ Alerts"))
    });
    tmux.keys(&["Down", "i"]);
    // The read selected, in view with cat's row and the rule that fired.
    let title = format!("Incident: pid {outer_pid} sh (3 processes)");
    let screen = tmux.wait_for("the incident's tree", SCREEN_TIMEOUT, |s| {
        s.contains(&title)
            && tree_column(s, '▾', cat_pid, "tuiinccat").is_some()
            && s.lines()
                .any(|l| l.contains("decoy-secret") && l.contains("← tui_incident_decoy"))
    });
    // The root is the first shell: its parent, the tmux server, starts the session.
    assert!(
        screen.contains("root here: its parent tmux: server"),
        "{screen}"
    );
    let cat_row = format!("▾ {cat_pid} tuiinccat");
    assert!(
        screen
            .lines()
            .any(|l| l.contains(&cat_row) && l.contains("!! ALERT")),
        "cat is marked:\n{screen}"
    );

    // Enter explains the selected read; Esc goes back to the tree.
    tmux.keys(&["Enter"]);
    tmux.wait_for("the read's detail", SCREEN_TIMEOUT, |s| {
        s.contains("Event detail") && s.contains("• tui_incident_decoy")
    });
    tmux.keys(&["Escape"]);
    tmux.wait_for("the tree again", SCREEN_TIMEOUT, |s| {
        !s.contains("Event detail") && s.contains(&title)
    });
    // From the top, each process's events folded away (Left): sh → sh → cat, three rows,
    // each a level deeper, only cat marked.
    tmux.keys(&["Home", "Left", "Down", "Left", "Down", "Left"]);
    let screen = tmux.wait_for("the three processes folded", SCREEN_TIMEOUT, |s| {
        tree_column(s, '▸', outer_pid, "sh").is_some()
            && tree_column(s, '▸', inner_pid, "sh").is_some()
            && tree_column(s, '▸', cat_pid, "tuiinccat").is_some()
    });
    let depth = |pid, name| tree_column(&screen, '▸', pid, name).unwrap_or(usize::MAX);
    assert!(
        depth(outer_pid, "sh") < depth(inner_pid, "sh")
            && depth(inner_pid, "sh") < depth(cat_pid, "tuiinccat"),
        "sh → sh → cat, each a level deeper:\n{screen}"
    );
    let marked: Vec<&str> = screen.lines().filter(|l| l.contains("ALERT")).collect();
    assert!(
        marked.len() == 1 && marked[0].contains(&format!("▸ {cat_pid} tuiinccat")),
        "only cat is marked:\n{screen}"
    );
    tmux.keys(&["q"]);
    tmux.wait_for("the panes again", SCREEN_TIMEOUT, |s| {
        !s.contains(&title) && s.contains("Processes")
    });
    tmux.keys(&["q"]);
    tmux.wait_for("the process exit", SCREEN_TIMEOUT, shell_says_exited);
}

/// The pid of the wrapper shell's child (`secmon-tui`), once it has one.
pub(crate) fn tui_pid(tmux: &Tmux) -> u32 {
    let shell = tmux.display("#{pane_pid}");
    let path = format!("/proc/{shell}/task/{shell}/children");
    let deadline = Instant::now() + SCREEN_TIMEOUT;
    loop {
        let children = fs::read_to_string(&path).unwrap_or_default();
        if let Some(pid) = children
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
        {
            return pid;
        }
        assert!(
            Instant::now() < deadline,
            "no secmon-tui under shell {shell}"
        );
        thread::sleep(POLL);
    }
}

/// SIGTERM and SIGHUP (a dropped SSH session) stop the UI and restore the terminal.
#[test]
fn terminal_restored_on_sigterm_and_sighup() {
    require_root();
    for (signal, name) in [(libc::SIGTERM, "SIGTERM"), (libc::SIGHUP, "SIGHUP")] {
        let script = wrapper_script("", "");
        let tmux = Tmux::start(
            &format!("secmon-tui-e2e-{}-{}", std::process::id(), next_id()),
            &script,
            &[BIN, "--config", SHARED_CONFIG],
        );
        tmux.wait_for("the header", READY_TIMEOUT, |s| {
            s.contains(" secmon ") && s.contains("Processes")
        });
        assert_eq!(tmux.display("#{alternate_on}"), "1");
        let pid = libc::pid_t::try_from(tui_pid(&tmux)).expect("pid fits pid_t");
        // SAFETY: kill has no memory-safety preconditions; the process is the test's own.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "kill {pid} {name}");
        let screen = tmux.wait_for("the process exit", SCREEN_TIMEOUT, shell_says_exited);
        assert!(
            screen.contains(&format!("secmon: {name} received; stopping")),
            "{name}: {screen}"
        );
        assert!(screen.contains(&format!("{EXITED} 0")), "{name}: {screen}");
        assert_eq!(
            tmux.display("#{alternate_on}"),
            "0",
            "{name}: alternate screen left"
        );
        assert!(
            !screen.contains("Processes"),
            "{name}: the UI is gone:\n{screen}"
        );
    }
}

/// The status line (the screen's last non-empty line).
fn status_line(screen: &str) -> &str {
    screen
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default()
}

/// `B` blocks the selected event's program in the kernel (after y), the next exec of it is
/// killed; `D` lists the entry and `u` removes it; `h` finds the exec in the stored history
/// and `Enter` opens its details.
#[test]
fn enforcement_deny_list_and_history_from_the_ui() {
    require_root();
    // Every one of its events must be seen: no other test floods the machine meanwhile.
    let _no_flood = no_machine_flood();
    let dir = TestDir::new(&marker());
    // Short and unique: the process name (comm) the history query filters on.
    let name = format!("blk{}x{}", std::process::id() % 100_000, next_id());
    let program = copy_executable("/bin/true", &dir.join(&name));
    let program_s = program.to_str().expect("UTF-8 path").to_string();
    let alerts = dir.join("alerts.jsonl");
    let db = dir.join("history.db");
    let config = dir.join("secmon.toml");
    fs::write(
        &config,
        format!(
            "[response]\nenforce = true\nallowlist = [\"sshd\"]\ncontrol_socket = \"{}\"\n\
             alert_log = \"{}\"\n",
            dir.join("run/control.sock").display(),
            alerts.display()
        ),
    )
    .expect("write the config");
    let script = wrapper_script("", "");
    let db_s = db.to_str().expect("UTF-8 path");
    let config_s = config.to_str().expect("UTF-8 path");
    let tmux = Tmux::start(
        &format!("secmon-tui-enf-{}-{}", std::process::id(), next_id()),
        &script,
        &[BIN, "--config", config_s, "--db", db_s],
    );
    tmux.wait_for("the header and panes", READY_TIMEOUT, |s| {
        s.contains(" secmon ") && s.contains("Processes")
    });
    set_filter(&tmux, &name);
    exec(&program);
    tmux.wait_for("the exec", SCREEN_TIMEOUT, |s| {
        lines_by_pane(s)
            .iter()
            .any(|(p, l)| *p == "Processes" && l.contains(&program_s) && l.contains(" exec "))
    });

    // B asks; y blocks. (The newest shown event of the program is the target.)
    tmux.keys(&["B"]);
    let question = format!("really deny exec path {program_s}");
    let screen = tmux.wait_for("the question", SCREEN_TIMEOUT, |s| s.contains(&question));
    assert!(status_line(&screen).ends_with("[y/N]"), "{screen}");
    tmux.keys(&["y"]);
    let screen = tmux.wait_for("the block", SCREEN_TIMEOUT, |s| {
        status_line(s).contains(&format!(": exec path {program_s}"))
    });
    // The UI's "blocked #N" or the enforcer's own report ("block #N: …; who: …"), whichever
    // came last.
    assert!(status_line(&screen).contains("block"), "{screen}");

    // The kernel kills the next exec.
    let status = Command::new(&program).status().expect("run the program");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL),
        "the blocked program ran: {status}"
    );
    let audit = fs::read_to_string(&alerts).unwrap_or_default();
    assert!(
        audit
            .lines()
            .any(|l| l.contains("\"enforcement\":\"block\"")
                && l.contains(&program_s)
                && l.contains("terminal UI")),
        "the alert log records who blocked what:\n{audit}"
    );

    // The CLI sees the UI's entry through the control socket: one table, two front ends.
    let list = Command::new(BIN)
        .args(["block", "list", "--socket"])
        .arg(dir.join("run/control.sock"))
        .output()
        .expect("secmon-tui block list");
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(
        list.status.success() && listed.contains(&format!("exec path {program_s}")),
        "block list: {listed}{}",
        String::from_utf8_lossy(&list.stderr)
    );

    // D lists it; u removes it; the program runs again.
    tmux.keys(&["D"]);
    tmux.wait_for("the deny entry", SCREEN_TIMEOUT, |s| {
        s.contains("Blocked in the kernel (1)") && s.contains(&format!("exec path {program_s}"))
    });
    tmux.keys(&["u"]);
    tmux.wait_for("the entry removed", SCREEN_TIMEOUT, |s| {
        let status = status_line(s);
        s.contains("Blocked in the kernel (0)")
            && (status.contains("unblock #") || status.contains("unblocked #"))
    });
    // A second later than the first exec, so the history's order shows in the times.
    thread::sleep(Duration::from_millis(1100));
    let status = Command::new(&program).status().expect("run the program");
    assert!(status.success(), "unblocked, the program runs: {status}");

    // h: the stored history, queried by the program's name; Enter: its details.
    tmux.keys(&["h", "/", "C-u"]);
    let query = format!("--last 1h --process {name} --type process_exec");
    tmux.type_text(&query);
    tmux.keys(&["Enter"]);
    tmux.wait_for("the query run", SCREEN_TIMEOUT, |s| {
        s.contains(&format!("query: {query}")) && !s.contains("Enter: run")
    });
    let deadline = Instant::now() + SCREEN_TIMEOUT;
    let screen = loop {
        let screen = tmux.capture();
        // Three execs: the history writer commits in batches, so rerun (r) until all are in.
        if history_times(&screen, &program_s).len() >= 3 {
            break screen;
        }
        assert!(
            Instant::now() < deadline,
            "the history never showed three execs of {name}:\n{screen}"
        );
        tmux.keys(&["r"]);
        thread::sleep(Duration::from_millis(300));
    };
    assert!(screen.contains("▶ History"), "{screen}");
    let times = history_times(&screen, &program_s);

    assert!(
        times.windows(2).all(|w| w[0] >= w[1]) && times.first() > times.last(),
        "newest first ({times:?}):\n{screen}"
    );
    tmux.keys(&["Enter"]);
    tmux.wait_for("the detail view of a stored exec", SCREEN_TIMEOUT, |s| {
        s.contains("process_exec") && s.contains(&program_s) && s.contains("Event detail")
    });

    // (Escape and q in one send-keys would read as Alt-q.)
    tmux.keys(&["Escape"]);
    tmux.wait_for("the history again", SCREEN_TIMEOUT, |s| {
        !s.contains("Event detail") && s.contains("▶ History")
    });
    // q closes the view (it does not quit from there), then quits.
    tmux.keys(&["q"]);
    tmux.wait_for("the live panes", SCREEN_TIMEOUT, |s| {
        s.contains("Processes") && !s.contains("▶ History")
    });
    tmux.keys(&["q"]);
    let screen = tmux.wait_for("the process exit", SCREEN_TIMEOUT, shell_says_exited);
    assert!(screen.contains(&format!("{EXITED} 0")), "{screen}");
    assert_eq!(tmux.display("#{alternate_on}"), "0");
}

/// The date and time of each history row that shows an exec of `program` (whatever its risk
/// marker), top to bottom.
fn history_times(screen: &str, program: &str) -> Vec<String> {
    screen
        .lines()
        .filter(|l| l.contains(program) && l.contains(" exec "))
        .filter_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let date = words
                .iter()
                .position(|w| w.len() == 10 && w.starts_with("20"))?;
            Some(format!("{} {}", words[date], words.get(date + 1)?))
        })
        .collect()
}

/// `--replay` in the UI as an unprivileged user: no root, no eBPF; the recording's attack
/// shows with its markers, the probe and enforcement keys say why they do nothing.
#[test]
fn replay_in_the_ui_without_root() {
    require_root();
    // Everything nobody needs, where nobody can read it (the build tree may not be).
    let dir = TestDir::new(&marker());
    fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("make the directory traversable");
    let bin = copy_executable(BIN, &dir.join("secmon-tui"));
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let recording = dir.join("story.jsonl");
    fs::copy(
        root.join("tests/fixtures/recordings/attack-story.jsonl"),
        &recording,
    )
    .expect("copy the recording");
    let rules = dir.join("rules");
    for args in [
        vec![
            "-r".as_ref(),
            root.join("rules").as_os_str(),
            rules.as_os_str(),
        ],
        vec!["-R".as_ref(), "a+rX".as_ref(), dir.path().as_os_str()],
    ] {
        let tool = if args[0] == "-r" { "cp" } else { "chmod" };
        let status = Command::new(tool).args(&args).status().expect(tool);
        assert!(status.success(), "{tool} {args:?}: {status}");
    }
    let script = wrapper_script("", "");
    let tmux = Tmux::start(
        &format!("secmon-tui-replay-{}-{}", std::process::id(), next_id()),
        &script,
        &[
            &AS_NOBODY[..],
            &[
                bin.to_str().expect("UTF-8 path"),
                "--replay",
                recording.to_str().expect("UTF-8 path"),
                "--rules",
                rules.to_str().expect("UTF-8 path"),
                "--config",
                "/dev/null",
                "--speed",
                "max",
            ],
        ]
        .concat(),
    );
    let screen = tmux.wait_for("the finished replay", READY_TIMEOUT, |s| {
        s.contains("replay finished: ")
    });
    assert!(
        screen.contains("1 process replay"),
        "the header says replay:\n{screen}"
    );
    assert!(
        lines_by_pane(&screen)
            .iter()
            .any(|(p, l)| *p == "Alerts" && l.starts_with("!!") && l.contains("reverse_shell")),
        "the reverse shell is in the alerts, malicious:\n{screen}"
    );
    assert!(
        row_in(&screen, "Network", "! ", "connect").is_some(),
        "the shell's connect is marked suspicious:\n{screen}"
    );
    tmux.keys(&["2"]);
    tmux.wait_for("probe keys explained", SCREEN_TIMEOUT, |s| {
        status_line(s).contains("replaying a recording: there are no kernel probes")
    });
    tmux.keys(&["B"]);
    tmux.wait_for("enforcement explained", SCREEN_TIMEOUT, |s| {
        status_line(s).contains("replaying a recording: nothing is enforced")
    });
    tmux.keys(&["q"]);
    let screen = tmux.wait_for("the process exit", SCREEN_TIMEOUT, shell_says_exited);
    assert!(screen.contains(&format!("{EXITED} 0")), "{screen}");
    assert!(screen.contains("events shown"), "{screen}");
    assert_eq!(tmux.display("#{alternate_on}"), "0");
}

/// A panic in the UI (forced in debug builds by `SECMON_TEST_PANIC_ON_KEY`) leaves the
/// alternate screen and raw mode before the panic message is printed.
#[test]
fn terminal_restored_on_panic() {
    require_root();
    let script = wrapper_script(
        "env -u RUST_BACKTRACE -u RUST_LIB_BACKTRACE SECMON_TEST_PANIC_ON_KEY=1 ",
        "stty -a; ",
    );
    let tmux = Tmux::start(
        &format!("secmon-tui-panic-{}-{}", std::process::id(), next_id()),
        &script,
        &[BIN, "--config", SHARED_CONFIG],
    );
    tmux.wait_for("the header", READY_TIMEOUT, |s| {
        s.contains(" secmon ") && s.contains("Processes")
    });
    tmux.keys(&["x"]);
    // The exit line, then `stty -a`'s report: the shell prints them one after the other, so
    // wait for the report too (it was once captured before stty had run).
    let screen = tmux.wait_for("the process exit and stty's report", SCREEN_TIMEOUT, |s| {
        shell_says_exited(s) && s.contains("icanon")
    });
    assert!(
        screen.contains(&format!("{EXITED} 101")),
        "a panic exits 101:\n{screen}"
    );
    assert!(
        screen.contains("test panic"),
        "the panic message is readable:\n{screen}"
    );
    // Once: the pipeline still running on its own thread while the runtime shut down once
    // panicked a second time, and that message, cut off at exit, ate the next character.
    assert_eq!(
        screen.matches("panicked").count(),
        1,
        "one panic, the test's:\n{screen}"
    );
    assert_eq!(
        tmux.display("#{alternate_on}"),
        "0",
        "alternate screen left"
    );
    assert!(
        screen.contains(" icanon ") && screen.contains(" echo "),
        "the terminal is back in cooked mode with echo (stty -a):\n{screen}"
    );
}
