//! What the UI controls, behind small traits so the state machine runs with fakes in tests:
//! [`Probes`] (the capture's family switches), [`RuleControl`] (reload, per-rule enable,
//! list), [`Response`] (simulated and real blocking, the deny entries) and
//! [`HistorySource`] (the stored events).
//!
//! These are the app's ports. Their adapters over the real thing live beside what they
//! adapt: the capture's switches and blocking in `response::ui_adapter`, the history reader
//! in `storage::ui_adapter`. Only the rule engine's is here, because the rules pane shows
//! the engine's own [`RuleInfo`] (`app` imports `rules`, never the reverse).
use std::path::PathBuf;
use std::sync::Arc;

use super::{BlockTarget, DenyRow, HistorySource};
use crate::capture::{KernelLosses, enforce::DenyTarget};
use crate::event::{Event as SecEvent, Family};
use crate::losses::Losses;
use crate::rules::{RuleEngine, RuleInfo};

/// Whether a probe family is attached and switched on.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ProbeState {
    On,
    Off,
    /// The kernel refused every probe of the family.
    Unavailable,
    /// Replaying a recording: no probes at all.
    Replay,
}

/// The capture's switches, as the UI sees them.
pub trait Probes {
    fn state(&self, family: Family) -> ProbeState;
    /// Switches a family in the kernel; the error is one line.
    fn set_enabled(&mut self, family: Family, on: bool) -> Result<(), String>;
    /// What the kernel lost since start (ring buffer full, pending table full).
    fn kernel_losses(&self) -> KernelLosses;
    /// Why a family is unavailable (the first refused group).
    fn unavailable_reason(&self, family: Family) -> Option<String>;
}

/// Fixed probe states: for tests, the render benchmark, and running without a capture.
#[derive(Clone, Debug)]
pub struct StaticProbes {
    pub states: [ProbeState; 4],
    pub drops: u64,
}

impl Default for StaticProbes {
    fn default() -> Self {
        StaticProbes {
            states: [ProbeState::On; 4],
            drops: 0,
        }
    }
}

impl Probes for StaticProbes {
    fn state(&self, family: Family) -> ProbeState {
        self.states[family_index(family)]
    }

    fn set_enabled(&mut self, family: Family, on: bool) -> Result<(), String> {
        let state = &mut self.states[family_index(family)];
        if *state == ProbeState::Unavailable {
            return Err("unavailable".to_string());
        }
        *state = if on { ProbeState::On } else { ProbeState::Off };
        Ok(())
    }

    fn kernel_losses(&self) -> KernelLosses {
        KernelLosses {
            ring_buffer_full: self.drops,
            pending_table_full: 0,
        }
    }

    fn unavailable_reason(&self, family: Family) -> Option<String> {
        (self.state(family) == ProbeState::Unavailable)
            .then(|| "not attached on this kernel".to_string())
    }
}

/// A replay's "probes": nothing to switch, nothing dropped; the keys say so.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReplayProbes;

/// Why probe keys do nothing in a replay.
pub const REPLAY_NO_PROBES: &str =
    "replaying a recording: there are no kernel probes to switch (the recording has what it has)";

impl Probes for ReplayProbes {
    fn state(&self, _family: Family) -> ProbeState {
        ProbeState::Replay
    }

    fn set_enabled(&mut self, _family: Family, _on: bool) -> Result<(), String> {
        Err(REPLAY_NO_PROBES.to_string())
    }

    fn kernel_losses(&self) -> KernelLosses {
        KernelLosses::default()
    }

    fn unavailable_reason(&self, _family: Family) -> Option<String> {
        None
    }
}

pub(crate) fn family_index(family: Family) -> usize {
    match family {
        Family::Process => 0,
        Family::File => 1,
        Family::Network => 2,
        Family::Kernel => 3,
    }
}

/// The rule engine, as the UI uses it.
pub trait RuleControl {
    fn count(&self) -> usize;
    /// Re-reads the rules: `Ok("12 rules from 3 files")`, or the first problem with its
    /// `file:line:column` (the previous rules stay in use).
    fn reload(&self) -> Result<String, String>;
    fn list(&self) -> Vec<RuleInfo>;
    fn set_enabled(&self, name: &str, enabled: bool) -> Result<(), String>;
    /// The directories the rules were loaded from (the rules view shows each rule's file
    /// relative to its directory); none when unknown, as on a remote machine.
    fn dirs(&self) -> Vec<PathBuf> {
        Vec::new()
    }
}

impl RuleControl for RuleEngine {
    fn count(&self) -> usize {
        self.summary().rules
    }

    fn reload(&self) -> Result<String, String> {
        RuleEngine::reload(self)
            .map(|s| s.to_string())
            .map_err(|e| e.summary())
    }

    fn list(&self) -> Vec<RuleInfo> {
        RuleEngine::list(self)
    }

    fn set_enabled(&self, name: &str, enabled: bool) -> Result<(), String> {
        RuleEngine::set_enabled(self, name, enabled).map_err(|e| e.to_string())
    }

    fn dirs(&self) -> Vec<PathBuf> {
        RuleEngine::dirs(self).to_vec()
    }
}

/// What a confirmed `B` will do: the deny entry, and the question asked before adding it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnforcePlan {
    pub target: BlockTarget,
    pub deny: DenyTarget,
    /// `deny exec path /tmp/x: kill it with SIGKILL at every further exec`.
    pub question: String,
    /// The process behind the selected event (who the audit log names).
    pub by: String,
    /// The selected event's label, or its type (the audit log's why).
    pub reason: String,
}

/// Blocking, simulated (`b`) and real (`B`), and the kernel's deny entries (`D`). Implemented
/// over the response layer by `response::ui_adapter::EnforcingResponse`, and by its
/// `SimulatedResponse` when enforcement is off, in replays and in tests.
pub trait Response {
    /// Records that `target` would be blocked; returns what was recorded.
    fn simulate_block(&mut self, target: &BlockTarget, event: &SecEvent) -> String;
    /// What a real block of `target` would add to the kernel, or why there can be none.
    fn plan_enforce(&self, target: &BlockTarget, event: &SecEvent) -> Result<EnforcePlan, String>;
    /// Adds the planned deny entry; says what was done.
    fn enforce(&mut self, plan: &EnforcePlan) -> Result<String, String>;
    /// The live deny entries, oldest first, or why there are none.
    fn denies(&self) -> Result<Vec<DenyRow>, String>;
    /// Removes deny entry `id`; says what was removed.
    fn unblock(&mut self, id: u32) -> Result<String, String>;
}

/// The link to a remote machine's controller (`--connect`), as the header shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkPhase {
    Connecting,
    Connected,
    /// The link dropped; the next attempt is in this many seconds.
    Reconnecting {
        in_secs: u64,
    },
    /// The controller refused the token; the next attempt is in this many seconds.
    Unauthorised {
        in_secs: u64,
    },
}

/// What the header says about the remote machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkView {
    /// The remote machine's host name (from its status), or its address until it is known.
    pub host: String,
    pub phase: LinkPhase,
    /// Events lost on the way here: the remote's `lost` messages (this terminal fell behind
    /// its stream) and what was dropped here (a full queue, events that did not parse).
    pub lost: u64,
    /// Why the link last dropped, escaped (the status line shows it).
    pub why: Option<String>,
}

/// A remote machine's link, read once a second (implemented by `remote::ui_adapter`).
pub trait RemoteLink {
    fn view(&self) -> LinkView;
}

/// What the UI controls.
pub struct Controls {
    pub probes: Box<dyn Probes>,
    pub rules: Box<dyn RuleControl>,
    pub response: Box<dyn Response>,
    pub history: Box<dyn HistorySource>,
    /// Every loss, shared with the stages that count them (the header shows the total, the
    /// detail view each reason).
    pub losses: Arc<Losses>,
}
