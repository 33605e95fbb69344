//! What the web dashboard shows of a running demo: a small snapshot of the demo's state,
//! published by its single owner (the terminal UI's `app::DemoState`) whenever it changes, and
//! read by the controller (`GET /api/v1/demo`, the narration panel of `/ui/live`).
//!
//! The board is a mutex around the newest snapshot: the UI replaces it (a pointer swap under
//! the lock) and a request clones the `Arc`, so neither side ever waits on the other's work.
use std::sync::{Arc, Mutex, PoisonError};

/// The demo as the dashboard shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct NarrationSnapshot {
    /// What `secmon-tui demo NAME` took.
    pub scenario: String,
    pub title: String,
    pub summary: String,
    /// "live, in a sandbox" or "replay of a recording (no root)".
    pub how: String,
    /// How many steps the scenario has.
    pub steps: usize,
    /// The step on screen (`None`: the scenario's introduction, before `n`).
    pub step: Option<StepSnapshot>,
    /// Whether the step on screen is running.
    pub running: bool,
    /// Whether auto-play is on.
    pub auto: bool,
}

/// The step on screen.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct StepSnapshot {
    /// From 1.
    pub number: usize,
    pub title: String,
    /// What the attacker does, and why.
    pub narration: String,
    pub technique: TechniqueSnapshot,
    /// The rules expected to fire on the step's process tree, in the scenario's order.
    pub expect: Vec<ExpectedRule>,
    /// What a defender would do next.
    pub defender: String,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TechniqueSnapshot {
    pub id: String,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ExpectedRule {
    pub rule: String,
    /// Seen on the step's process tree (of its latest run).
    pub fired: bool,
}

impl NarrationSnapshot {
    /// "running", "auto-play", or "waiting for the presenter", as the dashboard says it.
    pub fn play_state(&self) -> &'static str {
        match (self.running, self.auto) {
            (true, _) => "running",
            (false, true) => "auto-play: the next step starts soon",
            (false, false) => "waiting for the presenter",
        }
    }
}

/// Where the demo publishes its snapshot and the controller reads it: empty when no demo runs.
#[derive(Clone, Debug, Default)]
pub struct NarrationBoard(Arc<Mutex<Option<Arc<NarrationSnapshot>>>>);

impl NarrationBoard {
    pub fn new() -> NarrationBoard {
        NarrationBoard::default()
    }

    /// Replaces the snapshot (`None`: the demo is over).
    pub fn publish(&self, snapshot: Option<NarrationSnapshot>) {
        // A panic elsewhere while holding the lock left a whole snapshot behind: keep going.
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = snapshot.map(Arc::new);
    }

    /// The newest snapshot, if a demo runs.
    pub fn current(&self) -> Option<Arc<NarrationSnapshot>> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
