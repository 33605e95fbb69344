//! Classroom mode's data and sandbox (`secmon-tui demo`, docs/classroom.md).
//!
//! - `scenario`: the TOML scenarios teachers write (shipped ones in `monitor/scenarios/`,
//!   built into the binary), parsed with positions, checked against the loaded rules;
//! - `sandbox`: where a live step runs, and the cleanup that leaves nothing behind.
//! - `narration`: the snapshot of a running demo the web dashboard shows.
//!
//! The demo's state in the UI (which step, which expected rules fired, its keys) is
//! `app::demo`'s; the narration pane `ui::narration`; the wiring of the sandbox to the UI
//! `tui::demo`.
pub mod narration;
pub mod recording;
pub mod sandbox;
pub mod scenario;

use std::io::{self, Write};

pub use scenario::{Problem, Scenario, ScenarioError, Step, Technique};

/// `demo --list`: every scenario, its steps and its techniques.
pub fn write_list(out: &mut impl Write, scenarios: &[Scenario]) -> io::Result<()> {
    for s in scenarios {
        writeln!(
            out,
            "{:<14} {} ({} steps; {})",
            s.name,
            crate::sanitize::for_terminal(&s.title),
            s.steps.len(),
            crate::sanitize::for_terminal(&s.origin)
        )?;
        let techniques: Vec<&str> = s.techniques().into_iter().collect();
        writeln!(out, "{:<14} techniques: {}", "", techniques.join(", "))?;
    }
    Ok(())
}
