//! The state changes a client may make — switch a probe family or a rule, reload the rules,
//! add, remove or simulate a deny entry — in one place, with their checks and their audit
//! line. The HTTP API ([`super::api`], and through it the pages) and the NATS control
//! requests ([`crate::fleet::control`]) both call these, so a change is checked and audited
//! the same way whichever way it came.
use axum::http::StatusCode;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Controls, SimulatedBlock, audit::AuditLog};
use crate::{
    app::{Probes, RuleControl},
    event::Family,
    response::control::{self, Request as ControlRequest, TargetSpec},
};

/// A failed action: the status and what to tell the client.
pub type ActionError = (StatusCode, String);

/// Who acts, on what, and where it is written down.
pub struct Acting<'a> {
    pub controls: &'a Controls,
    pub audit: &'a AuditLog,
    /// The client as the audit log names it (an address, or `nats:<subject>`).
    pub client: String,
    /// How the enforcer's own records name where a block came from.
    pub origin: String,
}

/// `POST /denies` and `/denies/simulate` (and the NATS `add_deny`): what to deny.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenyRequest {
    pub target: TargetSpec,
    #[serde(default)]
    pub ttl_secs: Option<u64>,
    #[serde(default)]
    pub reason: Option<String>,
}

impl Acting<'_> {
    /// Switches rule `name` on or off.
    pub fn set_rule(&self, name: &str, on: bool) -> Result<String, ActionError> {
        let action = if on { "enable rule" } else { "disable rule" };
        let result = RuleControl::set_enabled(&self.controls.rules, name, on)
            .map(|()| format!("rule {name} {}", if on { "enabled" } else { "disabled" }));
        self.audit_result(action, name, &result);
        result.map_err(|e| (StatusCode::NOT_FOUND, e))
    }

    /// Re-reads the rule files; on an error the previous rules stay in force.
    pub fn reload_rules(&self) -> Result<String, ActionError> {
        let result = RuleControl::reload(&self.controls.rules);
        self.audit_result("reload rules", "", &result);
        self.controls
            .remember_reload(&format!("client {}", self.client), &result);
        result.map_err(|e| (StatusCode::UNPROCESSABLE_ENTITY, e))
    }

    /// Switches a probe family on or off in the kernel.
    pub fn set_probe(&self, family: &str, on: bool) -> Result<String, ActionError> {
        let Some(parsed) = Family::ALL.iter().copied().find(|f| f.as_str() == family) else {
            return Err((
                StatusCode::NOT_FOUND,
                format!("no probe family {family:?} (process, file, network, kernel)"),
            ));
        };
        let action = if on {
            "enable probes"
        } else {
            "disable probes"
        };
        let result = match &self.controls.capture {
            Some(capture) => capture.clone().set_enabled(parsed, on),
            None => Err("replaying a recording: there are no probes".to_string()),
        }
        .map(|()| format!("{family} probes {}", if on { "on" } else { "off" }));
        self.audit_result(action, family, &result);
        result.map_err(|e| (StatusCode::CONFLICT, e))
    }

    /// Adds a deny entry through the enforcer (its protected set and allowlist checks apply).
    pub fn add_deny(&self, request: DenyRequest) -> Result<Value, ActionError> {
        let target_text = describe_target(&request.target);
        let Some(enforcer) = &self.controls.enforcer else {
            let why = "real enforcement is off ([response] enforce = false): simulate instead";
            self.audit
                .record_as(&self.client, "block", &target_text, false, why);
            return Err((StatusCode::CONFLICT, why.to_string()));
        };
        let reply = control::handle(
            enforcer,
            ControlRequest::Add {
                target: request.target,
                ttl_secs: request.ttl_secs,
                reason: request.reason,
            },
            &self.origin,
        );
        match (reply.ok, reply.deny) {
            (true, Some(deny)) => {
                self.audit.record_as(
                    &self.client,
                    "block",
                    &target_text,
                    true,
                    &format!("deny entry {}", deny.id),
                );
                Ok(json!({ "ok": true, "deny": deny }))
            }
            _ => {
                let why = reply.error.unwrap_or_else(|| "refused".to_string());
                self.audit
                    .record_as(&self.client, "block", &target_text, false, &why);
                Err((StatusCode::UNPROCESSABLE_ENTITY, why))
            }
        }
    }

    /// Lifts deny entry `id`.
    pub fn remove_deny(&self, id: u32) -> Result<Value, ActionError> {
        let Some(enforcer) = &self.controls.enforcer else {
            return Err((
                StatusCode::CONFLICT,
                "real enforcement is off: there are no deny entries".to_string(),
            ));
        };
        let reply = control::handle(enforcer, ControlRequest::Remove { id }, &self.origin);
        let outcome: Result<String, String> = match (&reply.ok, &reply.deny) {
            (true, Some(deny)) => Ok(format!("lifted {}", deny.target)),
            _ => Err(reply.error.clone().unwrap_or_else(|| "refused".to_string())),
        };
        self.audit_result("unblock", &id.to_string(), &outcome);
        match outcome {
            Ok(_) => Ok(json!({ "ok": true, "deny": reply.deny })),
            Err(why) => Err((StatusCode::NOT_FOUND, why)),
        }
    }

    /// What a block of the target would do, without doing it (kept for the deny entries page).
    pub fn simulate_deny(&self, target: &TargetSpec) -> Result<SimulatedBlock, ActionError> {
        let deny = target.resolve().map_err(|e| (StatusCode::BAD_REQUEST, e))?;
        let outcome = match self.controls.allowlist.protecting_target(&deny) {
            Some(why) => format!("{deny} would not be blocked: {why}"),
            None => format!(
                "would deny {deny}, which would {} (simulated; nothing enforced)",
                crate::response::simulate::effect(&deny)
            ),
        };
        let block = SimulatedBlock {
            time: Utc::now(),
            target: describe_target(target),
            outcome,
            client: self.client.clone(),
        };
        self.audit.record_as(
            &self.client,
            "simulate block",
            &block.target,
            true,
            &block.outcome,
        );
        self.controls.remember_simulated(block.clone());
        Ok(block)
    }

    fn audit_result<T: std::fmt::Display>(
        &self,
        action: &str,
        target: &str,
        result: &Result<T, String>,
    ) {
        match result {
            Ok(done) => self
                .audit
                .record_as(&self.client, action, target, true, &done.to_string()),
            Err(why) => self
                .audit
                .record_as(&self.client, action, target, false, why),
        }
    }
}

pub fn describe_target(target: &TargetSpec) -> String {
    match target {
        TargetSpec::Exec(what) => format!("exec {what}"),
        TargetSpec::Connect(addr) => format!("connect {addr}"),
    }
}

// ---- control requests over NATS (fleet/control.rs answers them, a hub sends them) ----------

/// What a control request asks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Switch a probe family (`process`, `file`, `network`, `kernel`).
    SetProbe { family: String, enabled: bool },
    /// Switch a rule by name.
    SetRule { rule: String, enabled: bool },
    /// Re-read the rule files.
    ReloadRules,
    /// What blocking `target` would do, without doing it.
    SimulateBlock { target: TargetSpec },
    /// Add a deny entry (real enforcement only).
    AddDeny {
        target: TargetSpec,
        #[serde(default)]
        ttl_secs: Option<u64>,
        #[serde(default)]
        reason: Option<String>,
    },
    /// Lift deny entry `id`.
    RemoveDeny { id: u32 },
}

impl Action {
    /// The action's name in a request (`set_probe`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Action::SetProbe { .. } => "set_probe",
            Action::SetRule { .. } => "set_rule",
            Action::ReloadRules => "reload_rules",
            Action::SimulateBlock { .. } => "simulate_block",
            Action::AddDeny { .. } => "add_deny",
            Action::RemoveDeny { .. } => "remove_deny",
        }
    }
}

/// The reply: `ok`, and what was done (`done`, `result`) or why not (`error`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ControlReply {
    pub ok: bool,
    /// The host that answered.
    #[serde(default)]
    pub host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
