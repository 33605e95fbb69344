//! Classroom mode (`secmon-tui demo`) end to end: `--list` and `--check` of every shipped
//! scenario, each shipped scenario played live in tmux (every step's expected rules fire on
//! the step's own processes and the narration advances), and the cleanup after Ctrl-C in the
//! middle of a step (no sandbox directory, no step process, no mount left).
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use secmon::demo::scenario::{SHIPPED, Scenario};

use serde_json::Value;

use crate::common::{
    AS_NOBODY, BIN, READY_TIMEOUT, SHARED_CONFIG, TestDir, copy_executable, marker, next_id,
    path_str, require_root,
};
use crate::tui::{
    EXITED, SCREEN_TIMEOUT, Tmux, set_filter, shell_says_exited, tui_pid, wrapper_script,
};
use crate::web::{Browser, PAGE_TIMEOUT, wait_until};

/// A free loopback port (free a moment ago).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("its address").port()
}

const RULES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../rules");
const SCENARIOS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios");
/// How long one step may take to run and show its rules (a reverse shell's exchange, a
/// loaded machine).
const STEP_TIMEOUT: Duration = Duration::from_secs(60);
/// What the narration shows once the monitor runs and no step has been played.
const INTRODUCTION: &str = "n: run the first step";

fn demo_command(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(["demo", "--rules", RULES, "--config", SHARED_CONFIG])
        .args(args)
        .output()
        .expect("run secmon-tui demo")
}

/// `demo --list` names every shipped scenario; `demo --check` accepts each shipped file and
/// reports a broken one as file:line:column with exit status 1. No root needed.
#[test]
fn demo_list_and_check_every_shipped_scenario() {
    let out = demo_command(&["--list"]);
    assert!(out.status.success(), "{out:?}");
    let list = String::from_utf8_lossy(&out.stdout);
    for (file, _) in SHIPPED {
        let name = file.trim_end_matches(".toml");
        assert!(list.contains(name), "--list lacks {name}:\n{list}");
        let path = format!("{SCENARIOS}/{file}");
        let out = demo_command(&["--check", &path]);
        assert!(
            out.status.success(),
            "--check {path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).starts_with(&format!("ok: {name} (")));
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let broken = dir.path().join("broken.toml");
    let text = SHIPPED[0].1.replacen(
        "expect = [\"web_server_spawned_shell\"]",
        "expect = [\"no_such_rule\"]",
        1,
    );
    fs::write(&broken, text).expect("write the broken scenario");
    let out = demo_command(&["--check", broken.to_str().expect("UTF-8 path")]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!("{}:", broken.display());
    let line = stderr
        .lines()
        .find(|l| l.starts_with(&expected))
        .unwrap_or_else(|| panic!("no file:line:column error:\n{stderr}"));
    assert!(
        line.contains("found `no_such_rule`")
            && line
                .split(':')
                .nth(1)
                .is_some_and(|l| l.parse::<usize>().is_ok()),
        "{line}"
    );
}

/// The sandbox directory of the demo run by `pid`.
fn sandbox_of(pid: u32) -> PathBuf {
    PathBuf::from(format!("/run/secmon-demo.{pid}"))
}

/// Processes whose environment names `sandbox` (every step's processes carry DEMO_DIR).
fn processes_in(sandbox: &Path) -> Vec<u32> {
    let needle = format!("DEMO_DIR={}", sandbox.display());
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|var| var == needle.as_bytes()))
        })
        .collect()
}

/// Nothing of the demo is left: no directory, no process, no mount naming it.
#[track_caller]
fn assert_cleaned_up(sandbox: &Path) {
    // The monitor has exited (the wrapper said so): what is left now stays.
    assert!(!sandbox.exists(), "{} is left", sandbox.display());
    let left = processes_in(sandbox);
    assert!(left.is_empty(), "processes of the demo left: {left:?}");
    let mounts = fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
    assert!(
        !mounts.contains("secmon-demo."),
        "a mount of the demo is left:\n{mounts}"
    );
}

fn start_demo(name: &str, extra: &[&str]) -> Tmux {
    let mut args = vec![BIN, "demo", "--rules", RULES, "--config", SHARED_CONFIG];
    args.extend_from_slice(extra);
    args.push(name);
    Tmux::start(
        &format!("demo-{name}-{}-{}", std::process::id(), next_id()),
        &wrapper_script("", ""),
        &args,
    )
}

/// Plays a shipped scenario with `n` and checks each step's narration and markers.
fn play_shipped(file: &str) {
    require_root();
    let scenario = shipped(file);
    let tmux = start_demo(&scenario.name, &[]);
    tmux.wait_for("the scenario's introduction", READY_TIMEOUT, |s| {
        s.contains(INTRODUCTION)
    });
    let pid = tui_pid(&tmux);
    let sandbox = sandbox_of(pid);
    assert!(sandbox.is_dir(), "the sandbox {} exists", sandbox.display());
    play_steps(&tmux, &scenario);
    tmux.keys(&["q"]);
    let screen = tmux.wait_for("the process exit", SCREEN_TIMEOUT, shell_says_exited);
    assert!(screen.contains(&format!("{EXITED} 0")), "{screen}");
    assert!(screen.contains("secmon: demo over"), "{screen}");
    assert_cleaned_up(&sandbox);
}

/// The shipped scenario of `file`.
fn shipped(file: &str) -> Scenario {
    let text = SHIPPED
        .iter()
        .find(|(f, _)| *f == file)
        .map(|(_, t)| *t)
        .expect("a shipped scenario");
    Scenario::parse(file, text, None).expect("the shipped scenario parses")
}

/// Presses `n` for every step, waiting each time for the narration to say that every
/// expected rule fired and to mark each of them.
///
/// Both in one capture: the frame that completes a step rewrites the step's line before the
/// markers below it, and `capture-pane` can read the pane between the two writes (it did on
/// a loaded CI machine: "done, every expected rule fired" above "[ ] waiting"). A rule that
/// never fires still fails the step, by the timeout, with the screen.
fn play_steps(tmux: &Tmux, scenario: &Scenario) {
    let total = scenario.steps.len();
    for (i, step) in scenario.steps.iter().enumerate() {
        tmux.keys(&["n"]);
        let done = format!(
            "Step {} of {total} · done, every expected rule fired",
            i + 1
        );
        let markers: Vec<String> = step
            .expect
            .iter()
            .map(|rule| format!("[x] fired {rule}"))
            .collect();
        let what = format!("{done}, with {}", markers.join(", "));
        tmux.wait_for(&what, STEP_TIMEOUT, |s| {
            s.contains(&done) && markers.iter().all(|m| s.contains(m.as_str()))
        });
    }
}

#[test]
fn demo_webapp_live() {
    play_shipped("webapp.toml");
}

#[test]
fn demo_cryptominer_live() {
    play_shipped("cryptominer.toml");
}

#[test]
fn demo_evasion_live() {
    play_shipped("evasion.toml");
}

/// A step still running (processes in the sandbox, a file in its /tmp) when the demo is
/// stopped — Ctrl-C, then SIGTERM —: the monitor stops, and the sandbox and the step's
/// processes are gone.
#[test]
fn demo_cleans_up_after_ctrl_c_or_sigterm_in_a_step() {
    require_root();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let scenario = r#"
name = "slow"
title = "A slow step"
summary = "A step that is still running when the teacher stops the demo."

[[steps]]
title = "Sleeps"
run = "touch /tmp/.demo-left; sleep 600 & sleep 600"
narration = "The attacker hides a file and waits."
technique = { id = "T1564.001", name = "Hide Artifacts: Hidden Files and Directories" }
expect = ["hidden_file_in_temp_dir"]
defender = "Look in /tmp."
"#;
    fs::write(dir.path().join("slow.toml"), scenario).expect("write the scenario");
    for stop in ["Ctrl-C", "SIGTERM"] {
        let tmux = start_demo("slow", &["--dir", dir.path().to_str().expect("UTF-8 path")]);
        tmux.wait_for("the scenario's introduction", READY_TIMEOUT, |s| {
            s.contains(INTRODUCTION)
        });
        let pid = tui_pid(&tmux);
        let sandbox = sandbox_of(pid);
        tmux.keys(&["n"]);
        tmux.wait_for("the hidden file's rule", STEP_TIMEOUT, |s| {
            s.contains("[x] fired hidden_file_in_temp_dir")
        });
        // unshare, the step's shell and its sleeps run in the sandbox.
        let deadline = Instant::now() + STEP_TIMEOUT;
        while processes_in(&sandbox).len() < 3 {
            assert!(
                Instant::now() < deadline,
                "{stop}: the step's processes never ran"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(
            sandbox.join("tmp/.demo-left").exists(),
            "the step wrote into the sandbox"
        );
        assert!(
            !Path::new("/tmp/.demo-left").exists(),
            "the step wrote into the real /tmp"
        );
        if stop == "Ctrl-C" {
            tmux.keys(&["C-c"]);
        } else {
            let pid = libc::pid_t::try_from(pid).expect("pid fits pid_t");
            // SAFETY: kill has no memory-safety preconditions; the process is the test's own.
            assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0, "kill {pid}");
        }
        let screen = tmux.wait_for("the process exit", SCREEN_TIMEOUT, shell_says_exited);
        assert!(screen.contains(&format!("{EXITED} 0")), "{stop}: {screen}");
        assert!(screen.contains("secmon: demo over"), "{stop}: {screen}");
        assert_cleaned_up(&sandbox);
    }
}

/// Without root (as `nobody`), each shipped scenario plays from its built-in recording: the
/// same narration, `n` replays the next step's events, and every expected rule fires.
#[test]
fn demo_replays_every_shipped_scenario_without_root() {
    require_root();
    let dir = TestDir::new(&marker());
    let (bin, rules) = for_nobody(&dir);
    for (file, _) in SHIPPED {
        let scenario = shipped(file);
        let tmux = Tmux::start(
            &format!("demo-replay-{}-{}", std::process::id(), next_id()),
            &wrapper_script("", ""),
            &[
                &AS_NOBODY[..],
                &[
                    bin.to_str().expect("UTF-8 path"),
                    "demo",
                    "--rules",
                    rules.to_str().expect("UTF-8 path"),
                    "--config",
                    "/dev/null",
                    &scenario.name,
                ],
            ]
            .concat(),
        );
        let screen = tmux.wait_for("the scenario's introduction", READY_TIMEOUT, |s| {
            s.contains(INTRODUCTION)
        });
        assert!(screen.contains("1 process replay"), "no kernel: {screen}");
        play_steps(&tmux, &scenario);
        tmux.keys(&["q"]);
        let screen = tmux.wait_for("the process exit", SCREEN_TIMEOUT, shell_says_exited);
        assert!(screen.contains(&format!("{EXITED} 0")), "{screen}");
    }
}

/// Everything `nobody` needs in `dir`, where nobody can read it (the build tree may not be):
/// the binary and the rules.
fn for_nobody(dir: &TestDir) -> (PathBuf, PathBuf) {
    let bin = copy_executable(BIN, &dir.join("secmon-tui"));
    let rules = dir.join("rules");
    run_tool("cp", &["-r", RULES, path_str(&rules).as_str()]);
    run_tool("chmod", &["-R", "a+rX", path_str(dir.path()).as_str()]);
    (bin, rules)
}

#[track_caller]
fn run_tool(tool: &str, args: &[&str]) {
    let status = Command::new(tool).args(args).status().expect(tool);
    assert!(status.success(), "{tool} {args:?}: {status}");
}

/// Without root, from the recording, with `--serve`: the dashboard shows the demo. Before
/// `n`, `/api/v1/demo` says the introduction; after it, step 1 with its expected rules, then
/// each fired; the live page's narration fragment (`/ui/demo`) says the same; and without the
/// token the API refuses (401).
#[test]
fn demo_serve_shows_the_narration_on_the_dashboard() {
    require_root();
    let dir = TestDir::new(&marker());
    let (bin, rules) = for_nobody(&dir);
    // The controller's files, nobody's own (the token file must be private to its reader).
    let private = dir.join("controller");
    fs::create_dir(&private).expect("create the controller's directory");
    let token = "d".repeat(64);
    let token_file = private.join("controller.token");
    fs::write(&token_file, format!("{token}\n")).expect("write the token");
    run_tool("chmod", &["600", path_str(&token_file).as_str()]);
    run_tool("chmod", &["700", path_str(&private).as_str()]);
    run_tool("chown", &["-R", "65534:65534", path_str(&private).as_str()]);
    let config = dir.join("secmon.toml");
    fs::write(
        &config,
        format!(
            "[controller]\ntoken_file = {:?}\naudit_log = {:?}\n",
            path_str(&token_file),
            path_str(&private.join("audit.log")),
        ),
    )
    .expect("write the config");
    run_tool("chmod", &["a+r", path_str(&config).as_str()]);
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let scenario = shipped(SHIPPED[0].0);
    let tmux = Tmux::start(
        &format!("demo-serve-{}-{}", std::process::id(), next_id()),
        &wrapper_script("", ""),
        &[
            &AS_NOBODY[..],
            &[
                path_str(&bin).as_str(),
                "demo",
                "--serve",
                "--listen",
                &listen,
                "--rules",
                path_str(&rules).as_str(),
                "--config",
                path_str(&config).as_str(),
                &scenario.name,
            ],
        ]
        .concat(),
    );
    tmux.wait_for("the scenario's introduction", READY_TIMEOUT, |s| {
        s.contains(INTRODUCTION)
    });
    let base = format!("http://{listen}");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let get = |path: &str, token: Option<&str>| -> (u16, String) {
        let mut request = agent.get(format!("{base}{path}"));
        if let Some(token) = token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        match request.call() {
            Ok(mut reply) => (
                reply.status().as_u16(),
                reply.body_mut().read_to_string().unwrap_or_default(),
            ),
            Err(e) => (0, e.to_string()),
        }
    };
    // The controller starts beside the UI: its first answer says the introduction.
    let intro = wait_until("the controller's answer", READY_TIMEOUT, || {
        match get("/api/v1/demo", Some(&token)) {
            (200, body) => serde_json::from_str::<Value>(&body).map_err(|e| e.to_string()),
            (status, body) => Err(format!("{status}: {body}")),
        }
    });
    assert_eq!(intro["scenario"], scenario.name.as_str(), "{intro}");
    assert_eq!(intro["steps"], scenario.steps.len(), "{intro}");
    assert!(intro["step"].is_null(), "before n: {intro}");
    let (status, body) = get("/api/v1/demo", None);
    assert_eq!(status, 401, "without the token: {body}");
    // A real browser on the live page: the panel says the introduction, then follows `n`.
    let browser = Browser::start(&base);
    assert!(browser.log_in(&token), "the token logs in");
    let heading = browser.text("#demo-step").unwrap_or_default();
    assert!(heading.starts_with("Introduction"), "{heading:?}");

    tmux.keys(&["n"]);
    let step = &scenario.steps[0];
    let expected: Vec<&str> = step.expect.iter().map(String::as_str).collect();
    let shown = wait_until("step 1 on the dashboard", SCREEN_TIMEOUT, || {
        let (status, body) = get("/api/v1/demo", Some(&token));
        let demo: Value = serde_json::from_str(&body).map_err(|e| format!("{status}: {e}"))?;
        match demo["step"]["number"].as_u64() {
            Some(1) => Ok(demo),
            _ => Err(demo.to_string()),
        }
    });
    let step_json = &shown["step"];
    assert_eq!(step_json["title"], step.title.as_str(), "{shown}");
    assert_eq!(step_json["narration"], step.narration.as_str(), "{shown}");
    assert_eq!(step_json["technique"]["id"], step.technique.id.as_str());
    assert_eq!(step_json["defender"], step.defender.as_str(), "{shown}");
    let listed: Vec<&str> = step_json["expect"]
        .as_array()
        .expect("expect is a list")
        .iter()
        .filter_map(|e| e["rule"].as_str())
        .collect();
    assert_eq!(listed, expected, "{shown}");
    // Every expected rule fires on the replayed step.
    let fired = wait_until("every expected rule fired", STEP_TIMEOUT, || {
        let (status, body) = get("/api/v1/demo", Some(&token));
        let demo: Value = serde_json::from_str(&body).map_err(|e| format!("{status}: {e}"))?;
        let all = demo["step"]["expect"]
            .as_array()
            .is_some_and(|rules| rules.iter().all(|r| r["fired"] == true));
        if all { Ok(demo) } else { Err(demo.to_string()) }
    });
    assert_eq!(fired["step"]["number"], 1, "{fired}");
    let (status, fragment) = get("/ui/demo", Some(&token));
    assert_eq!(status, 200, "{fragment}");
    let heading_wanted = format!("Step 1 of {}: ", scenario.steps.len());
    assert!(fragment.contains(&heading_wanted), "{fragment}");
    for rule in &expected {
        assert!(
            fragment.contains(&format!(r#"<li class="fired" data-rule="{rule}">"#)),
            "{rule} not marked fired: {fragment}"
        );
    }
    // The page in the browser caught up by itself (HTMX asks for the panel every second).
    let marked = wait_until(
        "the browser's panel at step 1, rules fired",
        PAGE_TIMEOUT,
        || {
            let heading = browser.text("#demo-step").unwrap_or_default();
            let fired = browser.js(
            "return Array.from(document.querySelectorAll('#demo-rules li.fired')).map(l => l.dataset.rule);",
            vec![],
        );
            let fired: Vec<String> = serde_json::from_value(fired).map_err(|e| e.to_string())?;
            if heading.starts_with(&heading_wanted) && fired == expected {
                Ok(fired)
            } else {
                Err(format!("{heading:?}, fired {fired:?}"))
            }
        },
    );
    assert_eq!(marked, expected);
    drop(browser);
    let (status, page) = get("/", Some(&token));
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains(r#"id="demo-narration""#),
        "no narration panel: {page}"
    );

    tmux.keys(&["q"]);
    let screen = tmux.wait_for("the process exit", SCREEN_TIMEOUT, shell_says_exited);
    assert!(screen.contains(&format!("{EXITED} 0")), "{screen}");
}

/// `demo --enforce`: `B` on the step's alert really blocks the demo's dropper (a deny entry,
/// listed by `D`); after `q` the sandbox, the processes and the control socket are gone (the
/// deny entries go with the monitor's programs).
#[test]
fn demo_enforce_blocks_the_demos_own_process_and_leaves_nothing() {
    require_root();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let scenarios = dir.path().join("scenarios");
    fs::create_dir(&scenarios).expect("create the scenario directory");
    fs::write(
        scenarios.join("drop.toml"),
        r#"
name = "drop"
title = "A dropper"
summary = "A program dropped into /tmp keeps running."

[[steps]]
title = "Dropped and run"
run = "cp /bin/sleep /tmp/dropper && /tmp/dropper 25"
narration = "The attacker runs a program from /tmp."
technique = { id = "T1204.002", name = "User Execution: Malicious File" }
expect = ["exec_from_tmp_root"]
defender = "Block it."
"#,
    )
    .expect("write the scenario");
    let socket = dir.path().join("control.sock");
    let config = dir.path().join("secmon.toml");
    fs::write(
        &config,
        format!(
            "[storage]\nenabled = false\n\n[response]\ncontrol_socket = \"{}\"\n",
            socket.display()
        ),
    )
    .expect("write the config");
    let mut args = vec![BIN, "demo", "--enforce", "--rules", RULES];
    let (scenarios_s, config_s) = (
        scenarios.to_str().expect("UTF-8 path"),
        config.to_str().expect("UTF-8 path"),
    );
    args.extend(["--config", config_s, "--dir", scenarios_s, "drop"]);
    let tmux = Tmux::start(
        &format!("demo-enforce-{}-{}", std::process::id(), next_id()),
        &wrapper_script("", ""),
        &args,
    );
    tmux.wait_for("the scenario's introduction", READY_TIMEOUT, |s| {
        s.contains(INTRODUCTION)
    });
    let sandbox = sandbox_of(tui_pid(&tmux));
    tmux.keys(&["n"]);
    tmux.wait_for("the dropper's rule", STEP_TIMEOUT, |s| {
        s.contains("[x] fired exec_from_tmp_root")
    });
    // Only the dropper's events (the machine's other alerts are filtered out), the alerts
    // focused, the dropper's alert selected.
    set_filter(&tmux, "dropper");
    tmux.keys(&["Tab", "Tab", "Tab"]);
    tmux.wait_for("the alerts focused", SCREEN_TIMEOUT, |s| {
        s.contains("▶ Alerts")
    });
    tmux.keys(&["j"]);
    tmux.keys(&["B"]);
    tmux.wait_for("the question", SCREEN_TIMEOUT, |s| {
        s.contains("really deny exec path /tmp/dropper? [y/N]")
    });
    tmux.keys(&["y"]);
    tmux.wait_for("the block", SCREEN_TIMEOUT, |s| {
        s.contains("block #1: exec path /tmp/dropper")
    });
    tmux.keys(&["D"]);
    tmux.wait_for("the deny entry", SCREEN_TIMEOUT, |s| {
        s.contains("#1 exec path /tmp/dropper")
    });
    tmux.keys(&["q", "q"]);
    let screen = tmux.wait_for("the process exit", SCREEN_TIMEOUT, shell_says_exited);
    assert!(screen.contains(&format!("{EXITED} 0")), "{screen}");
    assert_cleaned_up(&sandbox);
    assert!(!socket.exists(), "the control socket is left");
}
