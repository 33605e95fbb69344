//! The incident tree: its root, its descendants, their order, processes on reused pids, and
//! the view's keys, selection, folding and refresh.
use chrono::{DateTime, FixedOffset, TimeDelta, Utc};
use crossterm::event::{Event as TermEvent, KeyCode, KeyEvent, KeyModifiers};

use super::*;
use crate::app::{Controls, Event, NoHistory, StaticProbes};
use crate::event::{Analysis, EventType};

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000, 0).expect("valid time")
}

/// An event of `pid` (child of `ppid`) named `name`, `ms` after t0.
fn ev(event_type: EventType, ms: i64, pid: u32, ppid: u32, name: &str) -> SecEvent {
    let mut e = SecEvent::new(event_type, t0() + TimeDelta::milliseconds(ms));
    e.pid = pid;
    e.tid = pid;
    e.ppid = ppid;
    e.process = name.into();
    e.user = "alice".into();
    e.cmdline = name.into();
    e
}

fn flagged(mut e: SecEvent, rule: &str) -> SecEvent {
    e.analysis = Analysis {
        severity: Severity::Malicious,
        risk_score: 0.9,
        process_risk: 0.9,
        rules: vec![rule.to_string()],
        ..Analysis::default()
    };
    e
}

fn build(events: &[SecEvent], anchor: Anchor) -> IncidentTree {
    let numbered = events.iter().enumerate().map(|(i, e)| (i as u64 + 1, e));
    build_tree(numbered, anchor, None, &HashSet::new(), None)
}

/// `(depth, pid, name)` of every process, in tree order.
fn shape(tree: &IncidentTree) -> Vec<(usize, u32, String)> {
    tree.nodes
        .iter()
        .map(|n| (n.depth, n.key.pid, n.name.to_string()))
        .collect()
}

/// sshd (100) → bash (200) → sh (300) → sh (400) → cat (500), with a sibling of cat
/// (curl, 450) started first, and an unrelated process (900).
fn session() -> Vec<SecEvent> {
    vec![
        ev(EventType::FileOpen, 0, 100, 1, "sshd"),
        ev(EventType::ProcessFork, 10, 200, 100, "sshd"),
        ev(EventType::ProcessExec, 20, 200, 100, "bash"),
        ev(EventType::ProcessFork, 30, 300, 200, "bash"),
        ev(EventType::ProcessExec, 40, 300, 200, "sh"),
        ev(EventType::FileOpen, 45, 900, 1, "cron"),
        ev(EventType::ProcessFork, 50, 400, 300, "sh"),
        ev(EventType::ProcessFork, 55, 450, 400, "sh"),
        ev(EventType::ProcessExec, 56, 450, 400, "curl"),
        ev(EventType::ProcessFork, 60, 500, 400, "sh"),
        ev(EventType::ProcessExec, 70, 500, 400, "cat"),
        flagged(ev(EventType::FileOpen, 80, 500, 400, "cat"), "decoy_read"),
        ev(EventType::ProcessExit, 90, 500, 400, "cat"),
    ]
}

#[test]
fn the_root_is_the_oldest_ancestor_below_the_session_boundary() {
    let events = session();
    // From cat's flagged read (arrival 12): up to bash, whose parent sshd starts the session.
    let tree = build(&events, Anchor::Event { pid: 500, seq: 12 });
    assert_eq!(
        shape(&tree),
        vec![
            (0, 200, "bash".to_string()),
            (1, 300, "sh".to_string()),
            (2, 400, "sh".to_string()),
            (3, 450, "curl".to_string()),
            (3, 500, "cat".to_string()),
        ]
    );
    assert!(tree.why_root.contains("sshd"), "{}", tree.why_root);
    // cat: marked as alerted, exited, its events in time order under it.
    let cat = &tree.nodes[4];
    assert!(cat.alerted() && cat.exited);
    assert_eq!(cat.severity, Severity::Malicious);
    assert_eq!(cat.events, vec![10, 11, 12, 13]);
    let cat_rows: Vec<IncidentRow> = tree.rows[tree.rows.len() - 5..].to_vec();
    assert_eq!(cat_rows[0], IncidentRow::Process(4));
    assert_eq!(
        cat_rows[1..],
        [10, 11, 12, 13].map(|seq| IncidentRow::Event { node: 4, seq })
    );
    // The unrelated process is nowhere.
    assert!(tree.nodes.iter().all(|n| n.key.pid != 900));
}

#[test]
fn the_walk_stops_at_the_oldest_ancestor_held() {
    // Without sshd's and bash's events: sh (300) is the oldest held.
    let events: Vec<SecEvent> = session().into_iter().skip(3).collect();
    let tree = build(&events, Anchor::Event { pid: 500, seq: 5 });
    assert_eq!(tree.root().map(|n| n.key.pid), Some(300));
    assert!(
        tree.why_root.contains("no events of its parent (pid 200)"),
        "{}",
        tree.why_root
    );
    // PID 1 and a multiplexer are boundaries as well as sshd.
    assert!(is_session_boundary(1, "anything", None));
    assert!(is_session_boundary(77, "tmux: server", None));
    assert!(is_session_boundary(78, "sshd-session", None));
    assert!(is_session_boundary(79, "x", Some(79)));
    assert!(!is_session_boundary(80, "bash", Some(79)));
}

#[test]
fn a_root_asked_for_is_the_root_whatever_its_parents() {
    let tree = build(&session(), Anchor::Root { pid: 400 });
    assert_eq!(
        shape(&tree),
        vec![
            (0, 400, "sh".to_string()),
            (1, 450, "curl".to_string()),
            (1, 500, "cat".to_string()),
        ]
    );
    assert!(
        build(&session(), Anchor::Root { pid: 4242 })
            .nodes
            .is_empty()
    );
}

/// A pid reused by a new process after the first exited: two processes, each with its own
/// events and children, never merged.
#[test]
fn a_reused_pid_is_another_process() {
    let events = vec![
        ev(EventType::ProcessExec, 0, 300, 200, "sh"),
        // 400: first `old` (exits), then the pid is reused by `new` (forked again).
        ev(EventType::ProcessFork, 10, 400, 300, "sh"),
        ev(EventType::ProcessExec, 20, 400, 300, "old"),
        ev(EventType::ProcessFork, 25, 410, 400, "old"),
        ev(EventType::ProcessExit, 30, 400, 300, "old"),
        ev(EventType::ProcessFork, 40, 400, 300, "sh"),
        ev(EventType::ProcessExec, 50, 400, 300, "new"),
        ev(EventType::ProcessFork, 60, 420, 400, "new"),
        // Without a fork event held: an event after the exit is a new process too.
        ev(EventType::ProcessExit, 70, 400, 300, "new"),
        ev(EventType::FileOpen, 80, 400, 300, "third"),
    ];
    let tree = build(&events, Anchor::Root { pid: 300 });
    assert_eq!(
        shape(&tree),
        vec![
            (0, 300, "sh".to_string()),
            (1, 400, "old".to_string()),
            (2, 410, "old".to_string()),
            (1, 400, "new".to_string()),
            (2, 420, "new".to_string()),
            (1, 400, "third".to_string()),
        ]
    );
    let keys: HashSet<ProcessKey> = tree.nodes.iter().map(|n| n.key).collect();
    assert_eq!(keys.len(), 6);
    assert_eq!(tree.nodes[1].events, vec![2, 3, 5]);
    assert_eq!(tree.nodes[3].events, vec![6, 7, 9]);
    // From the child of the second 400, the walk goes up through the second 400.
    let tree = build(&events, Anchor::Event { pid: 420, seq: 8 });
    assert_eq!(tree.root().map(|n| n.key.pid), Some(300));
}

#[test]
fn a_parent_loop_in_the_data_does_not_hang() {
    let events = vec![
        ev(EventType::FileOpen, 0, 10, 20, "a"),
        ev(EventType::FileOpen, 10, 20, 10, "b"),
    ];
    let tree = build(&events, Anchor::Event { pid: 10, seq: 1 });
    assert!(!tree.nodes.is_empty() && tree.nodes.len() <= 2);
}

#[test]
fn labels_name_events() {
    let events = session();
    let numbered = events.iter().enumerate().map(|(i, e)| (i as u64 + 1, e));
    let labeler: IncidentLabeler = Box::new(|e: &SecEvent| {
        (e.event_type == EventType::ProcessExec).then(|| format!("step {}", e.pid / 100))
    });
    let tree = build_tree(
        numbered,
        Anchor::Root { pid: 400 },
        None,
        &HashSet::new(),
        Some(&labeler),
    );
    assert_eq!(tree.labels.get(&11).map(String::as_str), Some("step 5"));
    assert_eq!(tree.labels.get(&9).map(String::as_str), Some("step 4"));
    // Only events in the tree are asked about.
    assert_eq!(tree.labels.len(), 2);
}

fn app() -> App {
    let controls = Controls {
        probes: Box::new(StaticProbes::default()),
        rules: Box::new(crate::rules::RuleEngine::empty()),
        response: Box::new(crate::response::ui_adapter::SimulatedResponse::default()),
        history: Box::new(NoHistory("no history here".to_string())),
        losses: Default::default(),
    };
    App::new(controls, FixedOffset::east_opt(0).expect("offset"), t0())
}

fn press(app: &mut App, code: KeyCode) {
    let key = KeyEvent::new(code, KeyModifiers::NONE);
    app.handle(Event::Input(TermEvent::Key(key)));
}

/// `i` on the selected alert opens the tree with that event selected; Enter its detail,
/// Esc back to the tree, `e` its process's events, Esc/q back to the panes.
#[test]
fn i_opens_the_incident_of_the_selected_alert() {
    let mut app = app();
    app.ingest(session());
    for _ in 0..3 {
        press(&mut app, KeyCode::Tab);
    }
    press(&mut app, KeyCode::Down);
    press(&mut app, KeyCode::Char('i'));
    assert_eq!(app.view, View::Incident);
    assert_eq!(app.incident.tree.root().map(|n| n.key.pid), Some(200));
    assert_eq!(app.incident.selected_seq(), Some(12));
    press(&mut app, KeyCode::Enter);
    let opened = app.detail.as_ref().and_then(|d| d.entry.as_ref());
    assert_eq!(opened.map(|e| e.seq), Some(12));
    press(&mut app, KeyCode::Esc);
    assert!(app.detail.is_none());
    assert_eq!(app.view, View::Incident);
    // Up to the process row of bash (the root), Enter: its first event.
    press(&mut app, KeyCode::Home);
    assert_eq!(app.incident.selected, 0);
    press(&mut app, KeyCode::Enter);
    let opened = app.detail.as_ref().and_then(|d| d.entry.as_ref());
    assert_eq!(opened.map(|e| e.event.pid), Some(200));
    press(&mut app, KeyCode::Esc);
    press(&mut app, KeyCode::End);
    assert_eq!(app.incident.selected, app.incident.tree.rows.len() - 1);
    press(&mut app, KeyCode::Char('e'));
    assert_eq!(app.view, View::Live);
    assert_eq!(app.filter, "pid:500");
    // From the detail view too, and q closes the tree.
    press(&mut app, KeyCode::Enter);
    press(&mut app, KeyCode::Char('i'));
    assert_eq!(app.view, View::Incident);
    assert!(app.detail.is_none());
    press(&mut app, KeyCode::Char('q'));
    assert_eq!(app.view, View::Live);
    assert!(!app.should_quit());
}

#[test]
fn folding_hides_a_processes_events() {
    let mut app = app();
    app.ingest(session());
    app.open_incident_at(400);
    let rows = app.incident.tree.rows.len();
    // On sh (400): Left folds its three events away, Right brings them back.
    press(&mut app, KeyCode::Left);
    assert_eq!(app.incident.tree.rows.len(), rows - 1);
    assert_eq!(app.incident.selected, 0);
    press(&mut app, KeyCode::Char('+'));
    assert_eq!(app.incident.tree.rows.len(), rows);
}

/// New events of the tree's processes rebuild it on the next second's tick, not at once and
/// not for events of other processes.
#[test]
fn the_tree_follows_new_events_once_a_second() {
    let mut app = app();
    app.ingest(session());
    app.open_incident_at(400);
    let before = app.incident.tree.nodes.len();
    app.ingest(vec![ev(EventType::FileOpen, 100, 901, 1, "other")]);
    assert!(!app.incident.stale);
    app.ingest(vec![ev(EventType::ProcessFork, 110, 600, 450, "curl")]);
    assert!(app.incident.stale);
    assert_eq!(app.incident.tree.nodes.len(), before);
    app.handle(Event::Tick(t0() + TimeDelta::seconds(1)));
    assert_eq!(app.incident.tree.nodes.len(), before + 1);
    assert!(!app.incident.stale);
}

/// The demo's way in: a root that has no events yet fills in when they come.
#[test]
fn a_root_with_no_events_yet_fills_in() {
    let mut app = app();
    app.open_incident_at(4242);
    assert_eq!(app.view, View::Incident);
    assert!(app.incident.tree.nodes.is_empty());
    assert!(
        app.status
            .as_ref()
            .is_some_and(|s| s.text.contains("pid 4242"))
    );
    app.ingest(vec![ev(EventType::ProcessExec, 0, 4242, 1, "scenario")]);
    app.handle(Event::Tick(t0() + TimeDelta::seconds(1)));
    assert_eq!(app.incident.tree.root().map(|n| n.key.pid), Some(4242));
}

/// The panes let the story's events go under a flood; the open view keeps them (and lets
/// them go once closed).
#[test]
fn the_open_view_keeps_its_events_when_the_panes_let_them_go() {
    let mut app = app();
    app.ingest(session());
    app.open_incident_at(400);
    let seqs: Vec<u64> = app
        .incident
        .tree
        .nodes
        .iter()
        .flat_map(|n| n.events.clone())
        .collect();
    // Process and file events, enough to turn both panes over.
    let flood = (0..2 * crate::app::PANE_CAPACITY + 20).map(|i| {
        let event_type = [EventType::ProcessExec, EventType::FileOpen][i % 2];
        ev(event_type, 1_000, 10_000 + i as u32 % 7, 1, "flood")
    });
    app.ingest(flood);
    // (Not cat's flagged read: the alerts strip still holds that.)
    assert!(
        seqs.iter()
            .filter(|&&seq| seq != 12)
            .all(|&seq| app.entry_by_seq(seq).is_none()),
        "the panes let them go"
    );
    // A new event of the tree: rebuilt on the tick, from what the view kept.
    app.ingest(vec![ev(EventType::FileOpen, 2_000, 450, 400, "curl")]);
    app.handle(Event::Tick(t0() + TimeDelta::seconds(1)));
    assert_eq!(app.incident.tree.nodes.len(), 3);
    for seq in &seqs {
        assert!(app.incident.entry(*seq).is_some(), "event {seq} kept");
    }
    press(&mut app, KeyCode::Esc);
    app.handle(Event::Tick(t0() + TimeDelta::seconds(2)));
    assert!(app.incident.entry(seqs[0]).is_none());
    assert!(app.incident.tree.nodes.is_empty());
}
