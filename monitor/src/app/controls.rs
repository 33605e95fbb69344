//! What the UI controls, behind small traits so the state machine runs with fakes in tests:
//! [`Probes`] (the capture's family switches), [`RuleControl`] (reload, per-rule enable,
//! list) and [`Response`] (simulated and real blocking, the deny entries).
use std::collections::VecDeque;
use std::sync::Arc;

use super::{BlockTarget, HistorySource, NoHistory};
use crate::capture::{Capture, KernelLosses, enforce::DenyTarget};
use crate::event::{Event as SecEvent, Family};
use crate::losses::Losses;
use crate::response::{
    enforce::DenyRecord,
    simulate::{self, Allowlist, Protection},
};
use crate::rules::{RuleEngine, RuleInfo};

/// Simulated block records kept by [`SimulatedResponse`].
const RESPONSE_LOG_CAPACITY: usize = 1_000;

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

impl Probes for Capture {
    fn state(&self, family: Family) -> ProbeState {
        if !self.report().family_available(family) {
            ProbeState::Unavailable
        } else if self.is_enabled(family) {
            ProbeState::On
        } else {
            ProbeState::Off
        }
    }

    fn set_enabled(&mut self, family: Family, on: bool) -> Result<(), String> {
        Capture::set_enabled(self, family, on).map_err(|e| e.to_string())
    }

    fn kernel_losses(&self) -> KernelLosses {
        Capture::kernel_losses(self)
    }

    fn unavailable_reason(&self, family: Family) -> Option<String> {
        self.report()
            .unavailable()
            .find(|g| g.family == family)
            .map(|g| format!("{}: {}", g.group, g.unavailable.as_deref().unwrap_or("")))
    }
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
/// over the response layer by [`crate::tui::controls::EnforcingResponse`]; [`SimulatedResponse`]
/// when enforcement is off, in replays and in tests.
pub trait Response {
    /// Records that `target` would be blocked; returns what was recorded.
    fn simulate_block(&mut self, target: &BlockTarget, event: &SecEvent) -> String;
    /// What a real block of `target` would add to the kernel, or why there can be none.
    fn plan_enforce(&self, target: &BlockTarget, event: &SecEvent) -> Result<EnforcePlan, String>;
    /// Adds the planned deny entry; says what was done.
    fn enforce(&mut self, plan: &EnforcePlan) -> Result<String, String>;
    /// The live deny entries, oldest first, or why there are none.
    fn denies(&self) -> Result<Vec<DenyRecord>, String>;
    /// Removes deny entry `id`; says what was removed.
    fn unblock(&mut self, id: u32) -> Result<String, String>;
}

/// One recorded "would block".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseRecord {
    pub target: BlockTarget,
    pub what: String,
}

/// The deny entry blocking `target` takes: the program of a process (by its path), or the
/// destination of a connection. Never by process name: any process can give itself any name
/// (`prctl(PR_SET_NAME)`), so a name from an event could deny `bash` or `sshd` system-wide;
/// `secmon-tui block add exec NAME` does that deliberately.
pub fn deny_target(target: &BlockTarget, event: &SecEvent) -> Result<DenyTarget, String> {
    match target {
        BlockTarget::Process(_) if event.exe.starts_with('/') => {
            DenyTarget::exec_path(&event.exe).map_err(|e| e.to_string())
        }
        BlockTarget::Process(pid) => Err(format!(
            "the program of process {pid} has no known path (names can be forged: \
             secmon-tui block add exec NAME denies a name deliberately)"
        )),
        BlockTarget::Connection { ip, port } => Ok(DenyTarget::Connect(*ip, *port)),
    }
}

/// Blocking without a kernel to enforce in: keeps the simulated actions (bounded) and
/// answers `B` and `D` with why there is no enforcement.
#[derive(Clone, Debug)]
pub struct SimulatedResponse {
    pub records: VecDeque<ResponseRecord>,
    allowlist: Allowlist,
    /// Why there is no real enforcement (`B` and `D` say it).
    why_not: String,
}

/// Why `B` cannot block when `[response] enforce` is off.
pub const ENFORCE_OFF: &str =
    "real enforcement is off: set enforce = true in [response] (docs/response.md)";

impl Default for SimulatedResponse {
    fn default() -> Self {
        SimulatedResponse::new(Allowlist::default(), ENFORCE_OFF)
    }
}

impl SimulatedResponse {
    /// `allowlist` is the config's (simulated blocks say when it would protect a program).
    pub fn new(allowlist: Allowlist, why_not: &str) -> SimulatedResponse {
        SimulatedResponse {
            records: VecDeque::new(),
            allowlist,
            why_not: why_not.to_string(),
        }
    }

    pub fn allowlist(&self) -> &Allowlist {
        &self.allowlist
    }

    /// `Err` when the allowlist protects the target or the program acting.
    /// `Err` when the protected set or the allowlist covers the target (for a connect: when
    /// the config's allowlist covers the program connecting).
    pub fn check_allowlist(&self, deny: &DenyTarget, event: &SecEvent) -> Result<(), String> {
        let why = match deny {
            DenyTarget::Connect(..) => self
                .allowlist
                .protecting(&event.exe, &event.process)
                .map(|e| Protection::Allowlisted(e.to_string())),
            _ => self.allowlist.protecting_target(deny),
        };
        match why {
            Some(why) => Err(format!("{deny} is not blocked: {why}")),
            None => Ok(()),
        }
    }
}

impl Response for SimulatedResponse {
    fn simulate_block(&mut self, target: &BlockTarget, event: &SecEvent) -> String {
        let what = target.describe(event);
        if self.records.len() >= RESPONSE_LOG_CAPACITY {
            self.records.pop_front();
        }
        self.records.push_back(ResponseRecord {
            target: target.clone(),
            what: what.clone(),
        });
        let effect = match deny_target(target, event) {
            Ok(deny) => match self.check_allowlist(&deny, event) {
                Ok(()) => format!("deny {deny}, which would {}", simulate::effect(&deny)),
                Err(why) => why,
            },
            Err(why) => why,
        };
        format!("would block {what}: {effect} (simulated; nothing enforced)")
    }

    fn plan_enforce(
        &self,
        _target: &BlockTarget,
        _event: &SecEvent,
    ) -> Result<EnforcePlan, String> {
        Err(self.why_not.clone())
    }

    fn enforce(&mut self, _plan: &EnforcePlan) -> Result<String, String> {
        Err(self.why_not.clone())
    }

    fn denies(&self) -> Result<Vec<DenyRecord>, String> {
        Err(self.why_not.clone())
    }

    fn unblock(&mut self, _id: u32) -> Result<String, String> {
        Err(self.why_not.clone())
    }
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

impl Controls {
    /// Fixed probes, no rules, simulated response.
    pub fn fixed() -> Controls {
        Controls {
            probes: Box::new(StaticProbes::default()),
            rules: Box::new(RuleEngine::empty()),
            response: Box::new(SimulatedResponse::default()),
            history: Box::new(NoHistory("no history in this view".to_string())),
            losses: Arc::default(),
        }
    }
}
