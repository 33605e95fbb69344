use std::sync::{Arc as StdArc, Mutex};

use crate::notice::Notice;

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyEventState, KeyModifiers};

use super::*;
use crate::event::{Analysis, Event as SecEvent, EventType, Severity};
use crate::losses::Loss;
// The real simulated response, so that these tests see the status lines a user sees.
use crate::response::enforce::{DenyRecord, Origin};
use crate::response::ui_adapter::{ENFORCE_OFF, SimulatedResponse, deny_target};

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent {
        code,
        modifiers: KeyModifiers::NONE,
        kind: KeyEventKind::Press,
        state: KeyEventState::NONE,
    }
}

fn ch(c: char) -> KeyEvent {
    key(KeyCode::Char(c))
}

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000, 0).expect("valid time")
}

/// Records what the app asked of the kernel and the rules.
#[derive(Clone, Default)]
struct Log(StdArc<Mutex<Vec<String>>>);

impl Log {
    fn push(&self, s: String) {
        self.0.lock().expect("lock").push(s);
    }
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().expect("lock"))
    }
}

struct FakeProbes {
    inner: StaticProbes,
    log: Log,
}

impl Probes for FakeProbes {
    fn state(&self, family: Family) -> ProbeState {
        self.inner.state(family)
    }
    fn set_enabled(&mut self, family: Family, on: bool) -> Result<(), String> {
        self.log.push(format!("set {family} {on}"));
        self.inner.set_enabled(family, on)
    }
    fn kernel_losses(&self) -> crate::capture::KernelLosses {
        crate::capture::KernelLosses {
            ring_buffer_full: 7,
            pending_table_full: 2,
        }
    }
    fn unavailable_reason(&self, family: Family) -> Option<String> {
        self.inner.unavailable_reason(family)
    }
}

struct FakeRules {
    rules: Mutex<Vec<RuleInfo>>,
    fail_reload: bool,
    log: Log,
}

impl RuleControl for FakeRules {
    fn count(&self) -> usize {
        self.rules.lock().expect("lock").len()
    }
    fn reload(&self) -> Result<String, String> {
        self.log.push("reload".to_string());
        if self.fail_reload {
            Err("rules/x.json:3:17: expected a value, found `}`".to_string())
        } else {
            Ok(format!("{} rules from 1 files", self.count()))
        }
    }
    fn list(&self) -> Vec<RuleInfo> {
        self.rules.lock().expect("lock").clone()
    }
    fn set_enabled(&self, name: &str, enabled: bool) -> Result<(), String> {
        self.log.push(format!("rule {name} {enabled}"));
        let mut rules = self.rules.lock().expect("lock");
        let rule = rules
            .iter_mut()
            .find(|r| r.name == name)
            .ok_or_else(|| format!("no rule named `{name}`"))?;
        rule.enabled = enabled;
        Ok(())
    }
}

/// Blocks in a list instead of the kernel.
struct FakeEnforcer {
    log: Log,
    denies: Vec<DenyRow>,
}

impl Response for FakeEnforcer {
    fn simulate_block(&mut self, _target: &BlockTarget, _event: &SecEvent) -> String {
        "simulated".to_string()
    }
    fn plan_enforce(&self, target: &BlockTarget, event: &SecEvent) -> Result<EnforcePlan, String> {
        let deny = deny_target(target, event)?;
        Ok(EnforcePlan {
            target: target.clone(),
            question: format!("deny {deny}"),
            deny,
            by: "test".to_string(),
            reason: "test".to_string(),
        })
    }
    fn enforce(&mut self, plan: &EnforcePlan) -> Result<String, String> {
        self.log.push(format!("enforce {}", plan.deny));
        let id = self.denies.len() as u32 + 1;
        let origin = Origin {
            by: plan.by.clone(),
            rule: None,
            reason: plan.reason.clone(),
        };
        self.denies
            .push(DenyRecord::new(id, &plan.deny, t0(), None, origin).into());
        Ok(format!("blocked #{id}"))
    }
    fn denies(&self) -> Result<Vec<DenyRow>, String> {
        Ok(self.denies.clone())
    }
    fn unblock(&mut self, id: u32) -> Result<String, String> {
        self.log.push(format!("unblock {id}"));
        self.denies.retain(|d| d.id != id);
        Ok(format!("unblocked #{id}"))
    }
}

/// `stored` events with pids 0, 1, 2, … newest first; the cursor of event `i` is `i`.
struct FakeHistory {
    stored: usize,
    log: Log,
    /// Answer later (into `pending`), as the real source does.
    deferred: bool,
    pending: Vec<HistoryReply>,
}

impl HistorySource for FakeHistory {
    fn request(&mut self, request: HistoryRequest) -> Option<HistoryReply> {
        let HistoryRequest {
            query,
            before,
            limit,
            ..
        } = &request;
        self.log
            .push(format!("query {query} before {:?}", before.map(|c| c.id)));
        let result = if query.starts_with("--bad") {
            Err(format!("unexpected argument '{query}'"))
        } else {
            let from = before.map_or(0, |c| c.id as usize + 1);
            Ok((from..self.stored.min(from + limit))
                .map(|i| {
                    let cursor = HistoryCursor {
                        ts_ns: 0,
                        id: i as i64,
                    };
                    (ev(EventType::FileOpen, i as u32, "stored"), cursor)
                })
                .collect())
        };
        let reply = HistoryReply {
            generation: request.generation,
            result,
        };
        if self.deferred {
            self.pending.push(reply);
            return None;
        }
        Some(reply)
    }

    fn describe(&self) -> String {
        "History (fake)".to_string()
    }
}

fn rule(name: &str) -> RuleInfo {
    RuleInfo {
        name: name.to_string(),
        label: String::new(),
        description: String::new(),
        doc: Default::default(),
        score: 0.5,
        action: crate::rules::Action::Alert,
        tags: Vec::new(),
        enabled: true,
        hits: 0,
        file: "rules/x.json".into(),
        line: 1,
        event_types: Vec::new(),
    }
}

fn app_with(fail_reload: bool, states: [ProbeState; 4]) -> (App, Log) {
    app_from(
        fail_reload,
        states,
        |_| Box::new(SimulatedResponse::default()),
        None,
    )
}

/// An app whose `B` blocks (in a fake kernel: [`FakeEnforcer`]).
fn app_enforcing() -> (App, Log) {
    app_from(
        false,
        [ProbeState::On; 4],
        |log| {
            Box::new(FakeEnforcer {
                log,
                denies: Vec::new(),
            })
        },
        None,
    )
}

/// An app with a history of `stored` events ([`FakeHistory`]).
fn app_with_history(stored: usize) -> (App, Log) {
    app_from(
        false,
        [ProbeState::On; 4],
        |_| Box::new(SimulatedResponse::default()),
        Some(stored),
    )
}

fn app_from(
    fail_reload: bool,
    states: [ProbeState; 4],
    response: impl FnOnce(Log) -> Box<dyn Response>,
    stored: Option<usize>,
) -> (App, Log) {
    let log = Log::default();
    let history: Box<dyn HistorySource> = match stored {
        Some(stored) => Box::new(FakeHistory {
            stored,
            log: log.clone(),
            deferred: false,
            pending: Vec::new(),
        }),
        None => Box::new(NoHistory("no history here".to_string())),
    };
    let controls = Controls {
        probes: Box::new(FakeProbes {
            inner: StaticProbes { states, drops: 0 },
            log: log.clone(),
        }),
        rules: Box::new(FakeRules {
            rules: Mutex::new(vec![rule("a"), rule("b")]),
            fail_reload,
            log: log.clone(),
        }),
        response: response(log.clone()),
        history,
        losses: StdArc::default(),
    };
    let app = App::new(controls, FixedOffset::east_opt(0).expect("offset"), t0());
    (app, log)
}

fn app() -> (App, Log) {
    app_with(false, [ProbeState::On; 4])
}

fn ev(event_type: EventType, pid: u32, process: &str) -> SecEvent {
    let mut e = SecEvent::new(event_type, t0());
    e.pid = pid;
    e.process = process.into();
    e
}

fn press(app: &mut App, k: KeyEvent) {
    app.handle(Event::Input(TermEvent::Key(k)));
}

fn shown_pids(app: &App, pane: PaneId) -> Vec<u32> {
    app.pane(pane)
        .shown(app.paused_at)
        .map(|e| e.event.pid)
        .collect()
}

#[test]
fn events_go_to_their_pane() {
    let (mut app, _) = app();
    app.ingest(vec![
        ev(EventType::ProcessExec, 1, "a"),
        ev(EventType::FileOpen, 2, "b"),
        ev(EventType::NetConnect, 3, "c"),
        ev(EventType::BpfLoad, 4, "d"),
        ev(EventType::PrivilegeChange, 5, "e"),
    ]);
    assert_eq!(shown_pids(&app, PaneId::Process), vec![5, 4, 1]);
    assert_eq!(shown_pids(&app, PaneId::File), vec![2]);
    assert_eq!(shown_pids(&app, PaneId::Network), vec![3]);
    assert!(app.needs_redraw());
    assert!(!app.needs_redraw(), "the flag clears once drawn");
}

#[test]
fn panes_are_bounded() {
    let (mut app, _) = app();
    let batch: Vec<SecEvent> = (0..PANE_CAPACITY as u32 + 500)
        .map(|i| ev(EventType::FileOpen, i, "x"))
        .collect();
    app.ingest(batch);
    let pane = app.pane(PaneId::File);
    assert_eq!(pane.entries.len(), PANE_CAPACITY);
    assert_eq!(pane.entries.front().map(|e| e.event.pid), Some(500));
    assert_eq!(app.received, PANE_CAPACITY as u64 + 500);
}

#[test]
fn alerts_collect_suspicious_events() {
    let (mut app, _) = app();
    let mut bad = ev(EventType::ProcessExec, 9, "evil");
    bad.analysis = Analysis {
        severity: Severity::Malicious,
        risk_score: 0.9,
        ..Analysis::default()
    };
    app.ingest(vec![ev(EventType::ProcessExec, 1, "ok"), bad]);
    assert_eq!(app.alerts.entries.len(), 1);
    assert_eq!(app.alerts.entries[0].event.pid, 9);
}

#[test]
fn tab_cycles_focus_through_the_alerts() {
    let (mut app, _) = app();
    assert_eq!(app.focus, PaneId::Process);
    press(&mut app, key(KeyCode::Tab));
    assert_eq!(app.focus, PaneId::File);
    press(&mut app, key(KeyCode::Tab));
    assert_eq!(app.focus, PaneId::Network);
    press(&mut app, key(KeyCode::Tab));
    assert_eq!(app.focus, PaneId::Alerts);
    press(&mut app, key(KeyCode::Tab));
    assert_eq!(app.focus, PaneId::Process);
    press(&mut app, key(KeyCode::BackTab));
    assert_eq!(app.focus, PaneId::Alerts);
    press(&mut app, key(KeyCode::BackTab));
    assert_eq!(app.focus, PaneId::Network);
}

/// An event of `pid` flagged by `rule`.
fn alert(event_type: EventType, pid: u32, rule: &str) -> SecEvent {
    let mut e = ev(event_type, pid, "evil");
    e.analysis = Analysis {
        severity: Severity::Suspicious,
        risk_score: 0.7,
        rules: vec![rule.to_string()],
        ..Analysis::default()
    };
    e
}

/// Three alerts (pids 7, 8, 9, newest last) among benign events of the same processes.
fn app_with_alerts() -> App {
    let (mut app, _) = app();
    app.ingest(vec![
        ev(EventType::ProcessExec, 7, "seven"),
        alert(EventType::FileOpen, 7, "rule_seven"),
        ev(EventType::ProcessExec, 8, "eight"),
        ev(EventType::FileOpen, 8, "eight"),
        alert(EventType::NetConnect, 8, "rule_eight"),
        ev(EventType::FileOpen, 10, "other"),
        alert(EventType::ProcessExec, 9, "rule_nine"),
        ev(EventType::ProcessExec, 11, "newest"),
    ]);
    app
}

fn opened_pid(app: &App) -> Option<u32> {
    let detail = app.detail.as_ref()?;
    detail.entry.as_ref().map(|e| e.event.pid)
}

#[test]
fn alerts_pane_selects_and_opens_the_selected_alert() {
    let mut app = app_with_alerts();
    for _ in 0..3 {
        press(&mut app, key(KeyCode::Tab));
    }
    assert_eq!(app.focus, PaneId::Alerts);
    // Nothing selected: Enter explains the newest alert, not the newest event (pid 11).
    press(&mut app, key(KeyCode::Enter));
    assert_eq!(opened_pid(&app), Some(9));
    press(&mut app, key(KeyCode::Esc));
    // Down twice: the second newest alert.
    press(&mut app, key(KeyCode::Down));
    press(&mut app, key(KeyCode::Down));
    assert_eq!(
        app.pane(PaneId::Alerts)
            .selected_entry(None)
            .map(|e| e.event.pid),
        Some(8)
    );
    // New alerts arriving do not move the selection.
    app.ingest(vec![alert(EventType::ProcessExec, 12, "rule_twelve")]);
    press(&mut app, key(KeyCode::Enter));
    let opened = app.detail.as_ref().and_then(|d| d.entry.as_ref());
    assert_eq!(opened.map(|e| e.event.pid), Some(8));
    assert_eq!(
        opened.map(|e| e.event.analysis.rules.clone()),
        Some(vec!["rule_eight".to_string()])
    );
    press(&mut app, key(KeyCode::Esc));
    // End: the oldest alert; Home: back to following the newest.
    press(&mut app, key(KeyCode::End));
    press(&mut app, key(KeyCode::Enter));
    assert_eq!(opened_pid(&app), Some(7));
    press(&mut app, key(KeyCode::Esc));
    press(&mut app, key(KeyCode::Home));
    assert_eq!(app.pane(PaneId::Alerts).selected, None);
    // The event panes' selections were not touched.
    assert_eq!(app.pane(PaneId::Process).selected, None);
}

#[test]
fn enter_on_an_event_pane_opens_the_selected_row() {
    let mut app = app_with_alerts();
    // Process pane, newest first: 11, 9, 8, 7. Select the third.
    for _ in 0..3 {
        press(&mut app, ch('j'));
    }
    app.ingest(vec![ev(EventType::ProcessExec, 13, "later")]);
    press(&mut app, key(KeyCode::Enter));
    assert_eq!(opened_pid(&app), Some(8));
}

#[test]
fn e_jumps_from_an_alert_to_its_process_events() {
    let mut app = app_with_alerts();
    press(&mut app, key(KeyCode::BackTab));
    assert_eq!(app.focus, PaneId::Alerts);
    press(&mut app, key(KeyCode::Down));
    press(&mut app, key(KeyCode::Down));
    press(&mut app, ch('e'));
    assert_eq!(app.filter, "pid:8");
    assert_eq!(app.focus, PaneId::Process);
    assert_eq!(shown_pids(&app, PaneId::Process), vec![8]);
    assert_eq!(shown_pids(&app, PaneId::File), vec![8]);
    assert_eq!(shown_pids(&app, PaneId::Network), vec![8]);
    assert_eq!(shown_pids(&app, PaneId::Alerts), vec![8]);
    // Events of the process arriving later show too; others do not.
    app.ingest(vec![
        ev(EventType::FileOpen, 8, "eight"),
        ev(EventType::FileOpen, 80, "not eight"),
    ]);
    assert_eq!(shown_pids(&app, PaneId::File), vec![8, 8]);
    // Esc clears the filter: everything again.
    press(&mut app, key(KeyCode::Esc));
    assert!(app.filter.is_empty());
    assert_eq!(shown_pids(&app, PaneId::Process), vec![11, 9, 8, 7]);
}

#[test]
fn e_from_the_detail_view_closes_it_and_filters() {
    let mut app = app_with_alerts();
    press(&mut app, key(KeyCode::BackTab));
    press(&mut app, key(KeyCode::End));
    press(&mut app, key(KeyCode::Enter));
    assert_eq!(opened_pid(&app), Some(7));
    press(&mut app, ch('e'));
    assert!(app.detail.is_none());
    assert_eq!(app.filter, "pid:7");
    assert_eq!(app.focus, PaneId::Process);
    assert_eq!(shown_pids(&app, PaneId::Process), vec![7]);
}

#[test]
fn e_focuses_the_events_own_pane_when_the_process_pane_has_none() {
    let (mut app, _) = app();
    app.ingest(vec![alert(EventType::NetConnect, 5, "net_rule")]);
    press(&mut app, key(KeyCode::BackTab));
    press(&mut app, ch('e'));
    assert_eq!(app.focus, PaneId::Network);
    assert_eq!(shown_pids(&app, PaneId::Network), vec![5]);
}

#[test]
fn e_with_nothing_to_follow_says_so() {
    let (mut app, _) = app();
    press(&mut app, key(KeyCode::BackTab));
    press(&mut app, ch('e'));
    assert!(app.filter.is_empty());
    let status = app.status.as_ref().map(|s| s.text.as_str());
    assert_eq!(status, Some("no event in the Alerts pane"));
}

#[test]
fn a_pid_filter_matches_that_pid_only() {
    let mut e = ev(EventType::ProcessExec, 123, "pid:12");
    e.cmdline = "run 12".into();
    assert!(filter_matches("pid:123", &e));
    assert!(!filter_matches("pid:12", &e), "a pid, not a substring");
    // Not a number after the prefix: plain text.
    assert!(!filter_matches("pid:1", &e));
    assert!(filter_matches("pid:", &e));
}

#[test]
fn selection_moves_and_stays_on_its_event() {
    let (mut app, _) = app();
    app.ingest((1..=5).map(|p| ev(EventType::ProcessExec, p, "p")));
    assert_eq!(app.pane(PaneId::Process).selected, None);
    press(&mut app, ch('j'));
    let selected = |app: &App| {
        app.pane(PaneId::Process)
            .selected_entry(app.paused_at)
            .map(|e| e.event.pid)
    };
    assert_eq!(selected(&app), Some(5), "first step selects the newest");
    press(&mut app, key(KeyCode::Down));
    press(&mut app, ch('j'));
    assert_eq!(selected(&app), Some(3));
    // New events arrive above: the selection stays on the same event.
    app.ingest(vec![ev(EventType::ProcessExec, 6, "p")]);
    assert_eq!(selected(&app), Some(3));
    press(&mut app, ch('k'));
    assert_eq!(selected(&app), Some(4));
    press(&mut app, key(KeyCode::End));
    assert_eq!(selected(&app), Some(1));
    press(&mut app, ch('j'));
    assert_eq!(selected(&app), Some(1), "stops at the oldest");
    press(&mut app, key(KeyCode::Home));
    assert_eq!(
        app.pane(PaneId::Process).selected,
        None,
        "back to following"
    );
    press(&mut app, ch('j'));
    press(&mut app, ch('k'));
    assert_eq!(
        app.pane(PaneId::Process).selected,
        None,
        "up from the newest follows"
    );
}

#[test]
fn window_keeps_the_selection_in_view() {
    let (mut app, _) = app();
    app.ingest((1..=50).map(|p| ev(EventType::FileOpen, p, "p")));
    press(&mut app, key(KeyCode::Tab));
    app.pane(PaneId::File).height.set(10);
    for _ in 0..15 {
        press(&mut app, ch('j'));
    }
    let pane = app.pane(PaneId::File);
    let (start, rows) = pane.window(None, 10);
    assert_eq!(start, 5);
    assert_eq!(rows.len(), 10);
    assert_eq!(rows[9].event.pid, 36, "the selection is the bottom row");
    // New events do not move the view while browsing.
    app.ingest(
        (51..=60)
            .map(|p| ev(EventType::FileOpen, p, "p"))
            .collect::<Vec<_>>(),
    );
    let (_, rows) = app.pane(PaneId::File).window(None, 10);
    assert_eq!(rows[9].event.pid, 36);
    assert_eq!(rows[0].event.pid, 45);
}

#[test]
fn enter_opens_detail_and_esc_closes_it() {
    let (mut app, _) = app();
    press(&mut app, key(KeyCode::Enter));
    assert!(app.detail.is_none(), "nothing to show yet");
    app.ingest(vec![ev(EventType::ProcessExec, 42, "bash")]);
    press(&mut app, key(KeyCode::Enter));
    let pid = app
        .detail
        .as_ref()
        .and_then(|d| d.entry.as_ref())
        .map(|e| e.event.pid);
    assert_eq!(pid, Some(42));
    press(&mut app, ch('j'));
    assert_eq!(app.detail.as_ref().map(|d| d.scroll), Some(1), "j scrolls");
    if let Some(detail) = &app.detail {
        detail.lines.set(3);
    }
    press(&mut app, key(KeyCode::PageDown));
    assert_eq!(
        app.detail.as_ref().map(|d| d.scroll),
        Some(2),
        "up to the last line"
    );
    press(&mut app, ch('k'));
    assert_eq!(app.detail.as_ref().map(|d| d.scroll), Some(1));
    press(&mut app, key(KeyCode::Esc));
    assert!(app.detail.is_none());
    assert!(!app.should_quit());
}

#[test]
fn family_keys_switch_probes() {
    let (mut app, log) = app_with(
        false,
        [
            ProbeState::On,
            ProbeState::On,
            ProbeState::On,
            ProbeState::Unavailable,
        ],
    );
    press(&mut app, ch('2'));
    assert_eq!(log.take(), vec!["set file false"]);
    assert_eq!(app.probe_states[1], ProbeState::Off);
    assert_eq!(
        app.status.as_ref().map(|s| s.text.as_str()),
        Some("file probes off")
    );
    press(&mut app, ch('2'));
    assert_eq!(log.take(), vec!["set file true"]);
    assert_eq!(app.probe_states[1], ProbeState::On);
    // `p` then a choice.
    press(&mut app, ch('p'));
    assert_eq!(app.mode, Mode::ChooseProbe);
    press(&mut app, ch('n'));
    assert_eq!(log.take(), vec!["set network false"]);
    assert_eq!(app.mode, Mode::Normal);
    // Unavailable: nothing is asked of the kernel.
    press(&mut app, ch('4'));
    assert!(log.take().is_empty());
    let status = app.status.clone().expect("a status");
    assert_eq!(status.kind, StatusKind::Error);
    assert!(status.text.contains("unavailable"), "{}", status.text);
}

#[test]
fn reload_reports_success_and_failure() {
    let (mut app, log) = app();
    press(&mut app, ch('r'));
    assert_eq!(log.take(), vec!["reload"]);
    let reload = app.last_reload.clone().expect("recorded");
    assert!(reload.ok);
    assert_eq!(
        app.status.as_ref().map(|s| s.text.as_str()),
        Some("rules reloaded: 2 rules from 1 files")
    );

    let (mut app, _) = app_with(true, [ProbeState::On; 4]);
    press(&mut app, ch('r'));
    let reload = app.last_reload.clone().expect("recorded");
    assert!(!reload.ok);
    let status = app.status.clone().expect("a status");
    assert_eq!(status.kind, StatusKind::Error);
    assert_eq!(
        status.text,
        "rules reload failed: rules/x.json:3:17: expected a value, found `}`; keeping the \
         previous 2 rules"
    );
}

#[test]
fn watcher_reports_become_reload_results() {
    let (mut app, _) = app();
    app.handle(Event::Notice(Notice::RulesReloaded {
        summary: "2 rules from 1 files".into(),
        on_sighup: false,
    }));
    assert!(app.last_reload.as_ref().is_some_and(|r| r.ok));
    app.handle(Event::Notice(Notice::RulesReloadFailed {
        error: "x.json:1:2: bad".into(),
        kept: 2,
        on_sighup: false,
    }));
    assert!(app.last_reload.as_ref().is_some_and(|r| !r.ok));
    assert_eq!(
        app.status.as_ref().map(|s| s.text.as_str()),
        Some("rules reload failed: x.json:1:2: bad; keeping the previous 2 rules")
    );
    app.handle(Event::Notice(Notice::Warning("something".into())));
    assert_eq!(app.status.as_ref().map(|s| s.kind), Some(StatusKind::Error));
}

#[test]
fn rules_pane_toggles_rules() {
    let (mut app, log) = app();
    press(&mut app, ch('R'));
    assert_eq!(app.view, View::Rules);
    assert_eq!(app.rules.len(), 2);
    press(&mut app, ch(' '));
    assert_eq!(log.take(), vec!["rule a false"]);
    assert!(!app.rules[0].enabled);
    assert!(
        app.paused_at.is_none(),
        "space toggles the rule, not the pause"
    );
    press(&mut app, ch('j'));
    press(&mut app, ch(' '));
    assert_eq!(log.take(), vec!["rule b false"]);
    press(&mut app, ch('k'));
    press(&mut app, ch(' '));
    assert_eq!(log.take(), vec!["rule a true"]);
    assert!(app.rules[0].enabled);
    press(&mut app, key(KeyCode::Esc));
    assert_eq!(app.view, View::Live);
}

#[test]
fn block_marks_the_target_from_then_on() {
    let (mut app, _) = app();
    app.ingest(vec![
        ev(EventType::ProcessExec, 10, "early"),
        ev(EventType::ProcessExec, 11, "other"),
        ev(EventType::ProcessExec, 10, "sel"),
    ]);
    press(&mut app, ch('j'));
    press(&mut app, ch('b'));
    assert!(app.blocked.contains_key(&BlockTarget::Process(10)));
    assert!(
        app.status
            .as_ref()
            .is_some_and(|s| s.text.starts_with("would block process 10 (sel)"))
    );
    app.ingest(vec![
        ev(EventType::FileOpen, 10, "sel"),
        ev(EventType::FileOpen, 11, "other"),
    ]);
    let marked = |app: &App, pane: PaneId| -> Vec<(u32, bool)> {
        app.pane(pane)
            .shown(None)
            .map(|e| (e.event.pid, app.block_mark(e).is_some()))
            .collect()
    };
    assert_eq!(
        marked(&app, PaneId::Process),
        vec![(10, true), (11, false), (10, false)],
        "the event and later ones, not earlier ones"
    );
    assert_eq!(marked(&app, PaneId::File), vec![(11, false), (10, true)]);
}

#[test]
fn block_of_a_connection() {
    let (mut app, _) = app();
    let mut conn = ev(EventType::NetConnect, 20, "curl");
    conn.target_ip = Some("10.0.0.1".parse().expect("an address"));
    conn.target_port = Some(443);
    conn.protocol = Some("tcp".into());
    app.ingest(vec![conn.clone()]);
    press(&mut app, key(KeyCode::Tab));
    press(&mut app, key(KeyCode::Tab));
    press(&mut app, ch('b'));
    let target = BlockTarget::Connection {
        ip: [10, 0, 0, 1].into(),
        port: 443,
    };
    assert_eq!(
        app.blocked.get(&target).map(|m| m.what.as_str()),
        Some("tcp connection to 10.0.0.1:443")
    );
    conn.pid = 21;
    app.ingest(vec![conn]);
    let pane = app.pane(PaneId::Network);
    assert!(pane.shown(None).all(|e| app.block_mark(e).is_some()));
}

#[test]
fn real_enforcement_refused_when_off() {
    let (mut app, _) = app();
    app.ingest(vec![ev(EventType::ProcessExec, 10, "x")]);
    press(&mut app, ch('B'));
    assert_eq!(
        app.mode,
        Mode::Normal,
        "no question when nothing can be enforced"
    );
    assert_eq!(
        app.status.as_ref().map(|s| (s.kind, s.text.as_str())),
        Some((StatusKind::Error, ENFORCE_OFF))
    );
    assert!(
        app.blocked.is_empty(),
        "a refused enforcement marks nothing"
    );
}

#[test]
fn real_enforcement_asks_then_blocks_and_unblocks() {
    let (mut app, log) = app_enforcing();
    let mut exec = ev(EventType::ProcessExec, 10, "x");
    exec.exe = "/tmp/x".into();
    app.ingest(vec![exec.clone()]);
    press(&mut app, ch('B'));
    assert!(matches!(app.mode, Mode::ConfirmEnforce(_)));
    assert_eq!(
        app.status.as_ref().map(|s| (s.kind, s.text.as_str())),
        Some((StatusKind::Prompt, "really deny exec path /tmp/x? [y/N]"))
    );
    press(&mut app, ch('q'));
    assert_eq!(app.mode, Mode::Normal);
    assert!(!app.should_quit(), "q in the prompt did not quit");
    assert_eq!(
        app.status.as_ref().map(|s| s.text.as_str()),
        Some("not blocked")
    );
    assert!(log.take().is_empty(), "nothing enforced without y");

    press(&mut app, ch('B'));
    press(&mut app, ch('y'));
    assert_eq!(log.take(), vec!["enforce exec path /tmp/x"]);
    assert_eq!(
        app.status.as_ref().map(|s| s.text.as_str()),
        Some("blocked #1")
    );
    assert_eq!(app.deny_count, 1);
    assert!(
        app.blocked.is_empty(),
        "no simulated mark: the kernel's verdicts show instead"
    );

    // D lists the entry; u removes it.
    press(&mut app, ch('D'));
    assert_eq!(app.view, View::Blocks);
    assert_eq!(app.blocks.len(), 1);
    press(&mut app, ch('u'));
    assert_eq!(log.take(), vec!["unblock 1"]);
    assert_eq!(app.blocks.len(), 0);
    press(&mut app, ch('u'));
    assert_eq!(
        app.status.as_ref().map(|s| s.text.as_str()),
        Some("nothing is blocked")
    );
    press(&mut app, key(KeyCode::Esc));
    assert_eq!(app.view, View::Live);
}

#[test]
fn history_pages_arrive_later_and_stale_ones_are_dropped() {
    let log = Log::default();
    let mut fake = FakeHistory {
        stored: 10,
        log: log.clone(),
        deferred: true,
        pending: Vec::new(),
    };
    // Two requests of two generations; only the newer one's page is kept.
    let (mut app, _) = app();
    for generation in [1, 2] {
        let request = HistoryRequest {
            generation,
            query: "--last 1h".into(),
            now: t0(),
            before: None,
            limit: HISTORY_PAGE,
        };
        assert!(fake.request(request).is_none(), "answered later");
    }
    press(&mut app, ch('h'));
    app.history.rows.clear();
    app.history.loading = true;
    let mut pending = std::mem::take(&mut fake.pending);
    let newer = pending.pop().expect("two replies");
    let older = pending.pop().expect("two replies");
    // The app's own query is generation 1 (opening the view); make the fake's generation 2
    // the stale one and 1 the current.
    app.handle(Event::History(newer));
    assert!(
        app.history.rows.is_empty(),
        "a later generation than asked: dropped"
    );
    app.handle(Event::History(older));
    assert_eq!(app.history.rows.len(), 10);
    assert!(!app.history.loading);
    assert!(!app.history.has_more());
    assert_eq!(log.take().len(), 2);
}

#[test]
fn views_switch_from_anywhere() {
    let (mut app, _) = app();
    press(&mut app, ch('R'));
    assert_eq!(app.view, View::Rules);
    press(&mut app, ch('D'));
    assert_eq!(app.view, View::Blocks);
    assert!(
        app.blocks.denies.is_err(),
        "enforcement off: the view says why"
    );
    press(&mut app, ch('h'));
    assert_eq!(app.view, View::History);
    press(&mut app, ch('h'));
    assert_eq!(app.view, View::Live, "the same key closes its view");
}

#[test]
fn history_view_queries_pages_and_opens_details() {
    let (mut app, log) = app_with_history(1234);
    press(&mut app, ch('h'));
    assert_eq!(log.take(), vec!["query --last 24h before None"]);
    assert_eq!(app.history.rows.len(), HISTORY_PAGE);
    assert!(app.history.has_more());
    // G goes to the last loaded row and reads one more page; again, and again: never the
    // whole database at once.
    // (This fake answers at once, so the selection reaches the new page's end.)
    press(&mut app, ch('G'));
    assert_eq!(app.history.rows.len(), 1000);
    assert_eq!(app.history.selected, 999);
    press(&mut app, ch('G'));
    assert_eq!(app.history.rows.len(), 1234);
    assert_eq!(app.history.selected, 1233);
    assert!(!app.history.has_more());
    press(&mut app, ch('G'));
    assert_eq!(app.history.selected, 1233);
    assert_eq!(
        log.take(),
        vec![
            "query --last 24h before Some(499)",
            "query --last 24h before Some(999)"
        ]
    );
    press(&mut app, key(KeyCode::Enter));
    let shown = app
        .detail
        .as_ref()
        .and_then(|d| d.entry.as_ref())
        .map(|e| e.event.pid);
    assert_eq!(shown, Some(1233));
    press(&mut app, key(KeyCode::Esc));
    assert!(app.detail.is_none());
    assert_eq!(app.view, View::History);

    // `/` edits the query; Enter runs it; Esc leaves it.
    press(&mut app, ch('/'));
    assert_eq!(app.mode, Mode::HistoryQuery);
    for _ in 0.."--last 24h".len() {
        press(&mut app, key(KeyCode::Backspace));
    }
    for c in "--bad".chars() {
        press(&mut app, ch(c));
    }
    press(&mut app, ch('q'));
    assert!(!app.should_quit(), "q is text while editing");
    press(&mut app, key(KeyCode::Enter));
    assert_eq!(app.history.query, "--badq");
    assert_eq!(
        app.history.error.as_deref(),
        Some("unexpected argument '--badq'")
    );
    assert!(app.history.rows.is_empty());
    press(&mut app, ch('/'));
    press(&mut app, ch('x'));
    press(&mut app, key(KeyCode::Esc));
    assert_eq!(
        app.history.query, "--badq",
        "Esc leaves the query as it was"
    );
    assert_eq!(
        app.view,
        View::History,
        "Esc while editing stays in the view"
    );
    log.take();
}

#[test]
fn filter_by_name_path_and_address() {
    let (mut app, _) = app();
    let mut open = ev(EventType::FileOpen, 1, "cat");
    open.file_path = Some("/etc/Shadow".into());
    let mut conn = ev(EventType::NetConnect, 2, "curl");
    conn.target_ip = Some("10.1.2.3".parse().expect("an address"));
    conn.target_port = Some(8443);
    app.ingest(vec![open, conn, ev(EventType::ProcessExec, 3, "bash")]);
    press(&mut app, ch('/'));
    assert_eq!(app.mode, Mode::Filter);
    for c in "shadow".chars() {
        press(&mut app, ch(c));
    }
    assert_eq!(app.filter, "shadow");
    assert_eq!(shown_pids(&app, PaneId::File), vec![1]);
    assert!(shown_pids(&app, PaneId::Process).is_empty());
    press(&mut app, key(KeyCode::Enter));
    assert_eq!(app.mode, Mode::Normal);
    // q in filter mode types; in normal mode it would quit.
    press(&mut app, ch('/'));
    press(
        &mut app,
        KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL),
    );
    for c in "3:8443".chars() {
        press(&mut app, ch(c));
    }
    assert_eq!(shown_pids(&app, PaneId::Network), vec![2]);
    press(&mut app, key(KeyCode::Backspace));
    assert_eq!(app.filter, "3:844");
    // New events are filtered as they arrive.
    app.ingest(vec![ev(EventType::ProcessExec, 4, "bash")]);
    assert!(shown_pids(&app, PaneId::Process).is_empty());
    press(&mut app, key(KeyCode::Esc));
    assert_eq!(app.filter, "");
    assert_eq!(shown_pids(&app, PaneId::Process), vec![4, 3]);
    // q while typing is text.
    press(&mut app, ch('/'));
    press(&mut app, ch('q'));
    assert!(!app.should_quit());
    assert_eq!(app.filter, "q");
}

#[test]
fn suspicious_only() {
    let (mut app, _) = app();
    let mut bad = ev(EventType::ProcessExec, 2, "x");
    bad.analysis.severity = Severity::Suspicious;
    app.ingest(vec![ev(EventType::ProcessExec, 1, "ok"), bad]);
    press(&mut app, ch('f'));
    assert_eq!(shown_pids(&app, PaneId::Process), vec![2]);
    press(&mut app, ch('f'));
    assert_eq!(shown_pids(&app, PaneId::Process), vec![2, 1]);
}

#[test]
fn pause_freezes_the_display_and_counts_arrivals() {
    let (mut app, _) = app();
    app.ingest(vec![ev(EventType::ProcessExec, 1, "a")]);
    press(&mut app, ch(' '));
    app.ingest(vec![
        ev(EventType::ProcessExec, 2, "b"),
        ev(EventType::FileOpen, 3, "c"),
    ]);
    assert_eq!(shown_pids(&app, PaneId::Process), vec![1]);
    assert!(shown_pids(&app, PaneId::File).is_empty());
    assert_eq!(app.arrived_while_paused(), 2);
    assert_eq!(app.pane(PaneId::Process).entries.len(), 2, "still stored");
    press(&mut app, ch(' '));
    assert_eq!(shown_pids(&app, PaneId::Process), vec![2, 1]);
    assert_eq!(app.arrived_while_paused(), 0);
}

#[test]
fn clear_empties_panes_and_alerts() {
    let (mut app, _) = app();
    let mut bad = ev(EventType::FileOpen, 2, "x");
    bad.analysis.severity = Severity::Malicious;
    app.ingest(vec![ev(EventType::ProcessExec, 1, "a"), bad]);
    press(&mut app, ch('c'));
    assert!(app.panes.iter().all(|p| p.entries.is_empty()));
    assert!(app.alerts.entries.is_empty());
}

#[test]
fn help_opens_and_any_key_closes() {
    let (mut app, _) = app();
    press(&mut app, ch('?'));
    assert!(app.help);
    press(&mut app, ch('q'));
    assert!(!app.help);
    assert!(!app.should_quit(), "q closes the help first");
    press(&mut app, ch('q'));
    assert!(app.should_quit());
}

#[test]
fn ctrl_c_quits_from_any_mode() {
    for setup in ["", "/", "?", "R", "p"] {
        let (mut app, _) = app();
        for c in setup.chars() {
            press(&mut app, ch(c));
        }
        press(
            &mut app,
            KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL),
        );
        assert!(app.should_quit(), "after {setup:?}");
    }
}

#[test]
fn ticks_roll_rates_and_expire_status() {
    let (mut app, _) = app();
    app.ingest(vec![
        ev(EventType::ProcessExec, 1, "a"),
        ev(EventType::FileOpen, 1, "a"),
        ev(EventType::FileOpen, 1, "a"),
    ]);
    app.handle(Event::Tick(t0() + chrono::TimeDelta::milliseconds(500)));
    assert_eq!(app.rates[1].per_second(), 0, "the second is not over");
    app.handle(Event::Tick(t0() + chrono::TimeDelta::seconds(1)));
    assert_eq!(app.rates[0].per_second(), 1);
    assert_eq!(app.rates[1].per_second(), 2);
    assert_eq!(app.losses.get(Loss::RingBufferFull), 7);
    assert_eq!(app.losses.get(Loss::PendingTableFull), 2);
    assert_eq!(app.losses.total(), 9);
    app.handle(Event::Tick(t0() + chrono::TimeDelta::seconds(4)));
    assert_eq!(app.rates[1].per_second(), 0);
    assert_eq!(app.rates[1].history.len(), 4);
    app.set_status("x".into(), StatusKind::Info);
    app.handle(Event::Tick(t0() + chrono::TimeDelta::seconds(20)));
    assert!(app.status.is_none());
    assert!(app.rates[1].history.len() <= RATE_HISTORY);
}

#[test]
fn release_events_are_ignored() {
    let (app, _) = app();
    let mut k = ch('q');
    k.kind = KeyEventKind::Release;
    assert_eq!(app.action_for_key(k), None);
}

#[test]
fn case_insensitive_contains() {
    assert!(contains_ignore_case("/etc/Passwd", "passwd"));
    assert!(contains_ignore_case("abc", ""));
    assert!(!contains_ignore_case("ab", "abc"));
    assert!(contains_ignore_case("日本/x", "/X"));
}

/// The UI hands every event it took back to the pipeline's thread to be freed there, once and
/// oldest first: an ordinary one as soon as its row is made (the row is a copy), a whole one
/// (here a privilege change) when the panes let it go; and the panes keep their capacity.
#[test]
fn evicted_events_are_handed_back_oldest_first() {
    let (mut app, _) = app();
    let events = (0..PANE_CAPACITY as u32 + 3).map(|pid| ev(EventType::FileOpen, pid, "cat"));
    app.ingest(events);
    let mut back = Vec::new();
    app.take_evicted(&mut back);
    assert_eq!(
        back.iter().map(|e| e.pid).collect::<Vec<_>>(),
        (0..PANE_CAPACITY as u32 + 3).collect::<Vec<_>>(),
        "rows: every event at once"
    );
    assert_eq!(app.pane(PaneId::File).entries.len(), PANE_CAPACITY);
    back.clear();
    let setuids = (0..PANE_CAPACITY as u32 + 3).map(|pid| {
        let mut setuid = ev(EventType::PrivilegeChange, pid, "sh");
        setuid.new_uid = Some(0);
        setuid
    });
    app.ingest(setuids);
    app.take_evicted(&mut back);
    assert_eq!(
        back.iter().map(|e| e.pid).collect::<Vec<_>>(),
        vec![0, 1, 2],
        "whole events: those let go of"
    );
    assert_eq!(app.pane(PaneId::Process).entries.len(), PANE_CAPACITY);
    app.take_evicted(&mut back);
    assert_eq!(back.len(), 3, "nothing is handed back twice");
}

/// A remote link whose view the test changes (what `remote::ui_adapter` would report).
struct SharedLink(std::rc::Rc<std::cell::RefCell<super::LinkView>>);

impl super::RemoteLink for SharedLink {
    fn view(&self) -> super::LinkView {
        self.0.borrow().clone()
    }
}

#[test]
fn the_status_line_says_when_a_remote_link_drops_and_comes_back() {
    use super::{LinkPhase, LinkView};
    let (mut app, _) = app();
    let view = std::rc::Rc::new(std::cell::RefCell::new(LinkView {
        host: "web1".to_string(),
        phase: LinkPhase::Connecting,
        lost: 0,
        why: None,
    }));
    app.set_link(Box::new(SharedLink(view.clone())));
    let mut second = 0;
    let mut tick = |app: &mut App| {
        second += 1;
        app.handle(Event::Tick(t0() + chrono::TimeDelta::seconds(second)));
    };
    // The first connection is not news.
    view.borrow_mut().phase = LinkPhase::Connected;
    tick(&mut app);
    assert_eq!(
        app.link.as_ref().map(|l| &l.phase),
        Some(&LinkPhase::Connected)
    );
    assert!(app.status.is_none(), "{:?}", app.status);
    // A drop is, with why.
    *view.borrow_mut() = LinkView {
        host: "web1".to_string(),
        phase: LinkPhase::Reconnecting { in_secs: 2 },
        lost: 5,
        why: Some("the controller closed the stream".to_string()),
    };
    tick(&mut app);
    let status = app.status.clone().expect("a status");
    assert_eq!(status.kind, StatusKind::Error);
    assert!(
        status
            .text
            .contains("web1 dropped (the controller closed the stream)"),
        "{}",
        status.text
    );
    assert_eq!(app.link.as_ref().map(|l| l.lost), Some(5));
    // And so is its return.
    view.borrow_mut().phase = LinkPhase::Connected;
    tick(&mut app);
    let status = app.status.clone().expect("a status");
    assert_eq!(
        (status.kind, status.text.as_str()),
        (StatusKind::Info, "the link to web1 is back")
    );
}

#[test]
fn a_full_pane_holds_no_room_past_its_capacity() {
    let (mut app, _) = app();
    for chunk in 0..3 {
        let batch: Vec<SecEvent> = (0..PANE_CAPACITY as u32 / 2)
            .map(|i| ev(EventType::FileOpen, chunk * 100_000 + i, "x"))
            .collect();
        app.ingest(batch);
    }
    let pane = app.pane(PaneId::File);
    assert_eq!(pane.entries.len(), PANE_CAPACITY);
    assert!(
        pane.entries.capacity() <= PANE_CAPACITY,
        "a full pane's ring is its capacity, not the next power of two: {}",
        pane.entries.capacity()
    );
}

/// Ordinary events are kept as compact rows: read (drawn, opened) they are built whole, and
/// let go of again once a second; the filter walks them all without keeping them built.
#[test]
fn rows_are_built_only_while_read() {
    let (mut app, _) = app();
    app.ingest((0..100).map(|pid| ev(EventType::FileOpen, pid, "cat")));
    let built = |app: &App| {
        app.pane(PaneId::File)
            .entries
            .iter()
            .filter(|e| matches!(&e.event, Stored::Row { built, .. } if built.get().is_some()))
            .count()
    };
    assert_eq!(built(&app), 0, "stored as rows");
    for c in ['/', 'c', 'a'] {
        press(&mut app, ch(c));
    }
    assert_eq!(
        shown_pids(&app, PaneId::File).len(),
        100,
        "the filter kept them"
    );
    assert_eq!(built(&app), 100, "read: built");
    press(&mut app, ch('x'));
    assert_eq!(shown_pids(&app, PaneId::File), Vec::<u32>::new());
    app.handle(Event::Tick(t0() + chrono::TimeDelta::seconds(1)));
    assert_eq!(built(&app), 0, "let go of on the tick");
    press(&mut app, key(KeyCode::Backspace));
    assert_eq!(built(&app), 0, "the filter builds nothing it keeps");
    assert_eq!(shown_pids(&app, PaneId::File).len(), 100);
}
