//! The terminal UI's ports ([`crate::app::Probes`], [`crate::app::Response`]) over the real
//! thing: the shared capture's family switches, and blocking — simulated ([`SimulatedResponse`],
//! when enforcement is off, in replays and in tests) or real through the [`Enforcer`]
//! ([`EnforcingResponse`]).
//!
//! They live here, beside what they adapt, so that `app/` stays state and transitions: `app`
//! never imports `response`.
use std::collections::VecDeque;
use std::sync::Arc;

use super::enforce::{DenyRecord, Enforcer, Origin, SharedCapture, lock_capture};
use super::simulate::{self, Allowlist, Protection};
use crate::app::{BlockTarget, DenyRow, EnforcePlan, ProbeState, Probes, Response};
use crate::capture::{Capture, KernelLosses, enforce::DenyTarget};
use crate::event::{Event as SecEvent, Family};
use crate::sanitize;

/// Simulated block records kept by [`SimulatedResponse`].
const RESPONSE_LOG_CAPACITY: usize = 1_000;

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

/// The capture as the pipeline and the response layer share it.
impl Probes for SharedCapture {
    fn state(&self, family: Family) -> ProbeState {
        lock_capture(self).state(family)
    }

    fn set_enabled(&mut self, family: Family, on: bool) -> Result<(), String> {
        Probes::set_enabled(&mut *lock_capture(self), family, on)
    }

    fn kernel_losses(&self) -> KernelLosses {
        lock_capture(self).kernel_losses()
    }

    fn unavailable_reason(&self, family: Family) -> Option<String> {
        lock_capture(self).unavailable_reason(family)
    }
}

impl From<DenyRecord> for DenyRow {
    fn from(record: DenyRecord) -> DenyRow {
        DenyRow {
            id: record.id,
            target: record.target,
            created: record.created,
            expires: record.expires,
            by: record.by,
            rule: record.rule,
            reason: record.reason,
        }
    }
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

/// One recorded "would block".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseRecord {
    pub target: BlockTarget,
    pub what: String,
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

    fn denies(&self) -> Result<Vec<DenyRow>, String> {
        Err(self.why_not.clone())
    }

    fn unblock(&mut self, _id: u32) -> Result<String, String> {
        Err(self.why_not.clone())
    }
}

/// Who the audit log names for a block from the UI: the operator behind `sudo`, if any.
fn operator() -> String {
    match std::env::var("SUDO_USER") {
        Ok(user) if !user.is_empty() => format!("terminal UI (user {user} via sudo)"),
        _ => format!("terminal UI (uid {})", current_uid()),
    }
}

fn current_uid() -> u32 {
    // SAFETY: getuid cannot fail and has no preconditions.
    unsafe { libc::getuid() }
}

/// `b` simulates as [`SimulatedResponse`] does; `B` adds a deny entry through the
/// [`Enforcer`] (protected set and allowlist checked, logged on stderr and in the alert log, removable with `D`
/// then `u`, or `secmon-tui unblock ID`).
pub struct EnforcingResponse {
    simulated: SimulatedResponse,
    enforcer: Arc<Enforcer>,
}

impl EnforcingResponse {
    pub fn new(enforcer: Arc<Enforcer>) -> EnforcingResponse {
        let simulated = SimulatedResponse::new(enforcer.allowlist().clone(), "");
        EnforcingResponse {
            simulated,
            enforcer,
        }
    }
}

impl Response for EnforcingResponse {
    fn simulate_block(&mut self, target: &BlockTarget, event: &SecEvent) -> String {
        self.simulated.simulate_block(target, event)
    }

    fn plan_enforce(&self, target: &BlockTarget, event: &SecEvent) -> Result<EnforcePlan, String> {
        let deny = deny_target(target, event)?;
        self.simulated.check_allowlist(&deny, event)?;
        // The same refusal the enforcer makes (the protected set), before the question.
        if let Some(refusal) = self.enforcer.refusal(&deny) {
            return Err(refusal.to_string());
        }
        if let Some(existing) = self.enforcer.existing(&deny) {
            return Err(format!(
                "{deny} is already blocked (entry #{}; D lists the entries)",
                existing.id
            ));
        }
        let question = format!("deny {deny}");
        let reason = if event.analysis.label.is_empty() {
            format!("{} selected in the UI", event.event_type)
        } else {
            event.analysis.label.clone()
        };
        Ok(EnforcePlan {
            target: target.clone(),
            by: format!(
                "{}, on pid {} ({})",
                operator(),
                event.pid,
                sanitize::for_terminal(&event.process)
            ),
            deny,
            question,
            reason,
        })
    }

    fn enforce(&mut self, plan: &EnforcePlan) -> Result<String, String> {
        let origin = Origin {
            by: plan.by.clone(),
            rule: None,
            reason: plan.reason.clone(),
        };
        let record = self
            .enforcer
            .block(plan.deny.clone(), self.enforcer.default_ttl(), origin)
            .map_err(|e| e.to_string())?;
        Ok(format!(
            "blocked #{}: {}: {} (D lists the entries)",
            record.id,
            record.target,
            simulate::effect(&plan.deny)
        ))
    }

    fn denies(&self) -> Result<Vec<DenyRow>, String> {
        Ok(self
            .enforcer
            .list()
            .into_iter()
            .map(DenyRow::from)
            .collect())
    }

    fn unblock(&mut self, id: u32) -> Result<String, String> {
        self.enforcer
            .unblock(id, &operator())
            .map(|record| format!("unblocked #{id}: {}", record.target))
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::event::EventType;
    use crate::response::enforce::{EnforcePolicy, testing::FakeTables};
    use crate::response::protect::Protected;

    fn exec_event(exe: &str) -> SecEvent {
        let mut e = SecEvent::new(EventType::ProcessExec, Utc::now());
        e.exe = exe.into();
        e.process = exe.rsplit('/').next().unwrap_or_default().into();
        e.pid = 77;
        e
    }

    /// The `B` key's path: a protected program is refused before the [y/N] question, and
    /// nothing reaches the kernel; another program is planned and denied.
    #[test]
    fn the_block_key_refuses_protected_programs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let shell = dir.path().join("shell");
        std::fs::write(&shell, b"").expect("write");
        let mut set = Protected::discover();
        set.add(
            &shell.to_string_lossy(),
            "a login shell (listed in /etc/shells)",
        );
        let (fake, tables) = FakeTables::shared();
        let enforcer = Enforcer::with_tables(
            tables,
            Allowlist::with_protected(&[], set),
            EnforcePolicy::default(),
            None,
        );
        let mut response = EnforcingResponse::new(Arc::new(enforcer));
        let me = std::env::current_exe().expect("current exe");
        for exe in [
            format!("{}//shell", dir.path().display()),
            me.to_string_lossy().into_owned(),
        ] {
            let event = exec_event(&exe);
            let refused = response
                .plan_enforce(&BlockTarget::Process(77), &event)
                .map(|plan| plan.question)
                .expect_err("protected");
            assert!(refused.contains("is protected"), "{exe}: {refused}");
        }
        let event = exec_event("/tmp/dropper");
        let plan = response
            .plan_enforce(&BlockTarget::Process(77), &event)
            .expect("a dropped program can be denied");
        response.enforce(&plan).expect("denied");
        let denies = &fake.lock().expect("lock").denies;
        assert_eq!(denies.len(), 1);
        assert_eq!(
            denies[0].target,
            DenyTarget::ExecPath("/tmp/dropper".to_string())
        );
    }
}
