//! Classroom mode (`secmon-tui demo`): the scenario being played, which step is on screen,
//! which of its expected rules have fired, and the demo's keys (`n`, `p`, `a`, `Space`, `b`,
//! `N`). The steps run through a [`DemoDriver`] (the live sandbox, `tui::demo`), so this state
//! machine is tested with a fake.
//!
//! A rule counts as fired for a step when an event of the step's process tree carries it: the
//! driver says which pid each run of a step started, and the tree grows with every event whose
//! parent is in it (forks and execs arrive before what the children do).
use std::collections::{BTreeSet, HashSet};

use chrono::{DateTime, Duration, Utc};

use super::{App, Entry, StatusKind};
use crate::demo::narration::{
    ExpectedRule, NarrationBoard, NarrationSnapshot, StepSnapshot, TechniqueSnapshot,
};
use crate::demo::scenario::Scenario;
use crate::event::{Event as SecEvent, Severity};

/// From this width on, the narration is beside the event panes; below, instead of them.
pub const WIDE: u16 = 120;

/// Seconds between two steps in auto-play, after the previous one has ended.
pub const AUTO_PAUSE_SECS: i64 = 6;

/// Runs a scenario's steps.
pub trait DemoDriver: Send {
    /// Starts step `index`; returns the root pid of its process tree.
    fn start(&mut self, index: usize) -> Result<u32, String>;
    /// Steps that ended since the last call: the step and how it ended (`None`: normally).
    fn finished(&mut self) -> Vec<(usize, Option<String>)>;
    /// Whether a step is running.
    fn busy(&self) -> bool;
}

/// The demo's state: see the module documentation.
pub struct DemoState {
    pub scenario: Scenario,
    /// The step on screen (`None`: the scenario's introduction).
    pub current: Option<usize>,
    /// Per step, the expected rules seen on its tree.
    pub fired: Vec<BTreeSet<String>>,
    /// Per step, the pids of its tree (of its latest run).
    trees: Vec<HashSet<u32>>,
    /// Per step, the newest alert of its tree (`b`'s offender).
    offenders: Vec<Option<Entry>>,
    /// Whether the step on screen is running.
    pub running: bool,
    pub auto: bool,
    /// When auto-play starts the next step.
    pub next_at: Option<DateTime<Utc>>,
    /// `N` pressed: below [`WIDE`] columns the event panes instead of the narration, from
    /// [`WIDE`] on the narration alone instead of beside the panes.
    pub toggled: bool,
    /// "live, in a sandbox" or "replay of …": the narration's title says how it is played.
    pub how: String,
    driver: Box<dyn DemoDriver>,
    /// Where the web dashboard reads the demo (`--serve`), published on every change.
    board: Option<NarrationBoard>,
}

impl DemoState {
    pub fn new(scenario: Scenario, how: String, driver: Box<dyn DemoDriver>) -> DemoState {
        let steps = scenario.steps.len();
        DemoState {
            scenario,
            current: None,
            fired: vec![BTreeSet::new(); steps],
            trees: vec![HashSet::new(); steps],
            offenders: vec![None; steps],
            running: false,
            auto: false,
            next_at: None,
            toggled: false,
            how,
            driver,
            board: None,
        }
    }

    /// Publishes the demo's state to `board` from now on (the controller reads it).
    pub fn publish_to(&mut self, board: NarrationBoard) {
        self.board = Some(board);
        self.publish();
    }

    /// The demo as the dashboard shows it.
    pub fn snapshot(&self) -> NarrationSnapshot {
        let step = self.current.and_then(|index| {
            let step = self.scenario.steps.get(index)?;
            Some(StepSnapshot {
                number: index + 1,
                title: step.title.clone(),
                narration: step.narration.clone(),
                technique: TechniqueSnapshot {
                    id: step.technique.id.clone(),
                    name: step.technique.name.clone(),
                },
                expect: step
                    .expect
                    .iter()
                    .map(|rule| ExpectedRule {
                        rule: rule.clone(),
                        fired: self.fired[index].contains(rule),
                    })
                    .collect(),
                defender: step.defender.clone(),
            })
        });
        NarrationSnapshot {
            scenario: self.scenario.name.clone(),
            title: self.scenario.title.clone(),
            summary: self.scenario.summary.clone(),
            how: self.how.clone(),
            steps: self.scenario.steps.len(),
            step,
            running: self.running,
            auto: self.auto,
        }
    }

    /// Hands the dashboard a new snapshot, when one reads it. Called on changes only (a key,
    /// a step's end, a newly fired rule), never per event.
    fn publish(&self) {
        if let Some(board) = &self.board {
            board.publish(Some(self.snapshot()));
        }
    }

    /// Labels for the incident view: an event of step N's process tree (as it is now) reads
    /// `step N`, so the tree of the story shows which step did what.
    pub fn incident_labels(&self) -> super::IncidentLabeler {
        let trees = self.trees.clone();
        Box::new(move |event| {
            trees
                .iter()
                .position(|tree| tree.contains(&event.pid))
                .map(|step| format!("step {}", step + 1))
        })
    }

    /// Whether every expected rule of `step` has fired.
    pub fn complete(&self, step: usize) -> bool {
        self.scenario
            .steps
            .get(step)
            .is_some_and(|s| s.expect.iter().all(|rule| self.fired[step].contains(rule)))
    }

    /// Notes an event: grows the step trees and marks the expected rules it carries; true
    /// when a rule fired for the first time on its step.
    fn observe(&mut self, entry: &Entry) -> bool {
        let mut newly_fired = false;
        let event: &SecEvent = &entry.event;
        for (step, tree) in self.trees.iter_mut().enumerate() {
            if tree.contains(&event.ppid) {
                tree.insert(event.pid);
            }
            if !tree.contains(&event.pid) {
                continue;
            }
            for rule in &event.analysis.rules {
                if self.scenario.steps[step].expect.contains(rule) {
                    newly_fired |= self.fired[step].insert(rule.clone());
                }
            }
            if event.analysis.severity >= Severity::Suspicious {
                self.offenders[step] = Some(entry.clone());
            }
        }
        newly_fired
    }
}

impl App {
    /// Plays `demo` in this UI (the keys `n`, `p`, `a`, `Space`, `b` and `N` become the
    /// demo's).
    pub fn start_demo(&mut self, demo: DemoState) {
        let title = demo.scenario.title.clone();
        demo.publish();
        self.demo = Some(demo);
        self.set_status(
            format!("demo: {title} — n runs the first step, a plays them all, ? the keys"),
            StatusKind::Info,
        );
    }

    /// Feeds the demo the events just ingested (from arrival `from` on).
    pub(super) fn observe_demo(&mut self, from: u64) {
        let Some(demo) = &mut self.demo else {
            return;
        };
        let mut newly_fired = false;
        for pane in &self.panes {
            for entry in pane.entries.iter().filter(|e| e.seq >= from) {
                newly_fired |= demo.observe(entry);
            }
        }
        if newly_fired {
            demo.publish();
        }
    }

    /// Once a tick: ended steps, and auto-play's next step.
    pub(super) fn tick_demo(&mut self, now: DateTime<Utc>) {
        let Some(demo) = &mut self.demo else {
            return;
        };
        let mut messages = Vec::new();
        for (index, failure) in demo.driver.finished() {
            if Some(index) == demo.current {
                demo.running = false;
                if demo.auto {
                    demo.next_at = Some(now + Duration::seconds(AUTO_PAUSE_SECS));
                }
            }
            let title = &demo.scenario.steps[index].title;
            messages.push(match failure {
                Some(why) => (
                    format!("step {}: {title}: {why}", index + 1),
                    StatusKind::Error,
                ),
                None => (
                    format!("step {} done: {title}", index + 1),
                    StatusKind::Info,
                ),
            });
        }
        let auto_due = demo.auto && !demo.running && demo.next_at.is_some_and(|at| now >= at);
        if !messages.is_empty() {
            demo.publish();
        }
        for (text, kind) in messages {
            self.set_status(text, kind);
        }
        if auto_due {
            self.demo_step(1);
        }
    }

    /// `n` (`delta` 1) or `p` (`delta` -1): moves to the next or previous step and runs it.
    pub(super) fn demo_step(&mut self, delta: isize) {
        self.move_demo_step(delta);
        self.publish_demo();
    }

    /// The dashboard's snapshot, after a key changed the demo.
    fn publish_demo(&self) {
        if let Some(demo) = &self.demo {
            demo.publish();
        }
    }

    fn move_demo_step(&mut self, delta: isize) {
        let Some(demo) = &mut self.demo else {
            return;
        };
        demo.next_at = None;
        if demo.running || demo.driver.busy() {
            self.set_status(
                "the step is still running: wait for it to end".to_string(),
                StatusKind::Info,
            );
            return;
        }
        let last = demo.scenario.steps.len() - 1;
        let target = match (demo.current, delta) {
            (None, d) if d < 0 => None,
            (None, _) => Some(0),
            (Some(i), d) if d < 0 => Some(i.saturating_sub(1)),
            (Some(i), _) if i >= last => None,
            (Some(i), _) => Some(i + 1),
        };
        let Some(index) = target else {
            demo.auto = false;
            let text = if delta < 0 {
                "this is the beginning: n runs the first step"
            } else {
                "that was the last step: p runs it again, q quits"
            };
            self.set_status(text.to_string(), StatusKind::Info);
            return;
        };
        demo.current = Some(index);
        demo.fired[index].clear();
        demo.trees[index].clear();
        demo.offenders[index] = None;
        let title = demo.scenario.steps[index].title.clone();
        match demo.driver.start(index) {
            Ok(pid) => {
                demo.trees[index].insert(pid);
                demo.running = true;
                self.set_status(
                    format!("step {}: {title} (pid {pid})", index + 1),
                    StatusKind::Info,
                );
            }
            Err(why) => {
                demo.auto = false;
                self.set_status(
                    format!("step {} could not start: {why}", index + 1),
                    StatusKind::Error,
                );
            }
        }
    }

    /// `a`: auto-play on (starting now when idle) or off.
    pub(super) fn demo_auto(&mut self) {
        let Some(demo) = &mut self.demo else {
            return;
        };
        demo.auto = !demo.auto;
        if !demo.auto {
            demo.next_at = None;
            self.set_status("auto-play off".to_string(), StatusKind::Info);
            self.publish_demo();
            return;
        }
        let idle = !demo.running;
        self.set_status(
            format!("auto-play: a step every {AUTO_PAUSE_SECS}s (Space pauses)"),
            StatusKind::Info,
        );
        if idle {
            self.demo_step(1);
        }
        self.publish_demo();
    }

    /// `Space`: pauses auto-play (the running step finishes), or resumes it.
    pub(super) fn demo_pause(&mut self) {
        let Some(demo) = &mut self.demo else {
            return;
        };
        if demo.auto {
            demo.auto = false;
            demo.next_at = None;
            self.set_status("paused (Space or a resumes)".to_string(), StatusKind::Info);
        } else {
            demo.auto = true;
            let idle = !demo.running;
            self.set_status("auto-play resumed".to_string(), StatusKind::Info);
            if idle {
                self.demo_step(1);
            }
        }
        self.publish_demo();
    }

    /// `b` in the demo: simulates blocking the step's offender (its newest alert).
    pub(super) fn demo_block(&mut self) {
        let offender = self
            .demo
            .as_ref()
            .and_then(|d| d.current.and_then(|i| d.offenders[i].clone()));
        match offender {
            Some(entry) => self.simulate_block_entry(entry),
            None => self.simulate_block(),
        }
    }

    /// `N`: the narration instead of the event panes, or beside them.
    pub(super) fn demo_toggle_narration(&mut self) {
        if let Some(demo) = &mut self.demo {
            demo.toggled = !demo.toggled;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use crossterm::event::{Event as TermEvent, KeyCode, KeyEvent, KeyModifiers};

    use super::*;
    use crate::app::{Event as AppEvent, Mode};
    use crate::event::EventType;

    const TWO_STEPS: &str = r#"
name = "two"
title = "Two steps"
summary = "Two."

[[steps]]
title = "One"
run = "one"
narration = "First."
technique = { id = "T1033", name = "System Owner/User Discovery" }
expect = ["rule_a", "rule_b"]
defender = "Look."

[[steps]]
title = "Two"
run = "two"
narration = "Second."
technique = { id = "T1082", name = "System Information Discovery" }
expect = ["rule_c"]
defender = "Look again."
"#;

    /// What the fake driver was asked, and the steps it says ended.
    #[derive(Default)]
    struct Log {
        started: Vec<usize>,
        ended: Vec<(usize, Option<String>)>,
    }

    /// Starts step N as pid 100 + N.
    struct Fake(Arc<Mutex<Log>>);

    impl DemoDriver for Fake {
        fn start(&mut self, index: usize) -> Result<u32, String> {
            self.0.lock().expect("log").started.push(index);
            Ok(100 + index as u32)
        }
        fn finished(&mut self) -> Vec<(usize, Option<String>)> {
            std::mem::take(&mut self.0.lock().expect("log").ended)
        }
        fn busy(&self) -> bool {
            false
        }
    }

    fn demo() -> (App, Arc<Mutex<Log>>) {
        let log = Arc::new(Mutex::new(Log::default()));
        let scenario = Scenario::parse("two.toml", TWO_STEPS, None).expect("parses");
        let mut app = crate::ui::sample::app_with(crate::ui::sample::controls(), Vec::new());
        app.start_demo(DemoState::new(
            scenario,
            "test".to_string(),
            Box::new(Fake(log.clone())),
        ));
        (app, log)
    }

    fn key(app: &mut App, c: char) {
        app.handle(AppEvent::Input(TermEvent::Key(KeyEvent::new(
            KeyCode::Char(c),
            KeyModifiers::NONE,
        ))));
    }

    fn event(pid: u32, ppid: u32, rules: &[&str]) -> SecEvent {
        let mut e = SecEvent::new(EventType::ProcessExec, Utc::now());
        e.pid = pid;
        e.ppid = ppid;
        e.analysis.rules = rules.iter().map(ToString::to_string).collect();
        e
    }

    fn end_step(app: &mut App, log: &Arc<Mutex<Log>>, index: usize, now: DateTime<Utc>) {
        log.lock().expect("log").ended.push((index, None));
        app.handle(AppEvent::Tick(now));
    }

    fn demo_state(app: &App) -> &DemoState {
        app.demo.as_ref().expect("a demo")
    }

    #[test]
    fn rules_fire_only_on_the_step_tree() {
        let (mut app, log) = demo();
        key(&mut app, 'n');
        assert_eq!(log.lock().expect("log").started, [0]);
        // Not in the tree (another machine's process): not counted.
        app.ingest([event(7, 1, &["rule_a"])]);
        assert!(demo_state(&app).fired[0].is_empty());
        // A child of the step's pid (100) joins the tree; its grandchild too.
        app.ingest([
            event(200, 100, &["rule_a"]),
            event(201, 200, &["rule_b", "other"]),
        ]);
        let demo = demo_state(&app);
        assert_eq!(
            demo.fired[0].iter().collect::<Vec<_>>(),
            ["rule_a", "rule_b"]
        );
        assert!(demo.complete(0));
        assert!(!demo.complete(1));
    }

    #[test]
    fn the_incident_view_labels_events_with_their_step() {
        let (mut app, _log) = demo();
        key(&mut app, 'n');
        app.ingest([event(200, 100, &["rule_a"]), event(7, 1, &[])]);
        let labels = demo_state(&app).incident_labels();
        assert_eq!(labels(&event(200, 100, &[])).as_deref(), Some("step 1"));
        assert_eq!(labels(&event(7, 1, &[])), None, "not the demo's");
    }

    #[test]
    fn the_dashboard_snapshot_follows_the_step_and_its_fired_rules() {
        let (mut app, _log) = demo();
        let board = NarrationBoard::new();
        app.demo.as_mut().expect("a demo").publish_to(board.clone());
        let intro = board.current().expect("published at once");
        assert_eq!((intro.scenario.as_str(), intro.steps), ("two", 2));
        assert!(intro.step.is_none(), "the introduction, before n");
        key(&mut app, 'n');
        app.ingest([event(200, 100, &["rule_b"])]);
        let shown = board.current().expect("a snapshot");
        assert!(shown.running);
        let step = shown.step.as_ref().expect("step 1");
        assert_eq!((step.number, step.title.as_str()), (1, "One"));
        assert_eq!(step.narration, "First.");
        assert_eq!(step.technique.id, "T1033");
        assert_eq!(step.defender, "Look.");
        let fired: Vec<(&str, bool)> = step
            .expect
            .iter()
            .map(|e| (e.rule.as_str(), e.fired))
            .collect();
        assert_eq!(fired, [("rule_a", false), ("rule_b", true)]);
        assert_eq!(*shown, demo_state(&app).snapshot(), "the newest state");
    }

    #[test]
    fn n_waits_for_the_running_step_and_p_repeats_the_previous_one() {
        let (mut app, log) = demo();
        let now = app.now;
        key(&mut app, 'n');
        key(&mut app, 'n');
        assert_eq!(log.lock().expect("log").started, [0], "step 1 still runs");
        end_step(&mut app, &log, 0, now);
        key(&mut app, 'n');
        end_step(&mut app, &log, 1, now);
        key(&mut app, 'n');
        assert_eq!(
            log.lock().expect("log").started,
            [0, 1],
            "no step after the last"
        );
        key(&mut app, 'p');
        assert_eq!(log.lock().expect("log").started, [0, 1, 0]);
        assert_eq!(demo_state(&app).current, Some(0));
        // In a demo, `p` is not the probe prompt.
        assert_eq!(app.mode, Mode::Normal);
    }

    #[test]
    fn auto_play_runs_the_next_step_after_the_pause_and_space_pauses_it() {
        let (mut app, log) = demo();
        let start = app.now;
        key(&mut app, 'a');
        assert_eq!(log.lock().expect("log").started, [0]);
        end_step(&mut app, &log, 0, start);
        app.handle(AppEvent::Tick(
            start + Duration::seconds(AUTO_PAUSE_SECS - 1),
        ));
        assert_eq!(log.lock().expect("log").started, [0], "still pausing");
        key(&mut app, ' ');
        app.handle(AppEvent::Tick(
            start + Duration::seconds(AUTO_PAUSE_SECS + 1),
        ));
        assert_eq!(log.lock().expect("log").started, [0], "paused");
        key(&mut app, ' ');
        assert_eq!(log.lock().expect("log").started, [0, 1], "resumed at once");
    }
}
