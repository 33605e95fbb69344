//! Control requests on `<prefix>.<host>.control` (NATS request-reply): a hub (or the `nats`
//! CLI) switches this machine's probes and rules, reloads its rules and manages its deny
//! entries, with the controller's token in every request.
//!
//! Listened to only when the controller's token file (`[controller] token_file`) exists. The
//! token is compared in constant time ([`crate::controller::auth::Auth::token_matches`]);
//! after [`FAILURES_ALLOWED`] wrong tokens within [`FAILURE_WINDOW`] every request is refused
//! until the window is over (NATS does not say who sent a request, so the count is for all).
//! Requests are applied by the controller's own actions ([`crate::controller::actions`]): the
//! same checks (protected set, allowlist, enforcement mode) and the same audit log lines, the
//! client named `nats:<subject>`. The request format is in docs/fleet.md.
use std::{
    path::PathBuf,
    sync::{Mutex, PoisonError},
};

use async_nats::{Client, Message};
use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{FleetError, Subjects, exporter::ExportSettings};
// The actions and the reply are the controller's (a hub sends them): re-exported here, where
// the request format is.
pub use crate::controller::actions::{Action, ControlReply};
use crate::{
    config::Config,
    controller::{
        Controls,
        actions::{Acting, DenyRequest},
        audit::AuditLog,
        auth::{self, Auth, FAILURE_WINDOW, FAILURES_ALLOWED},
        window::Window,
    },
    pipeline::Pipeline,
};

/// A control request: the token and one action.
#[derive(Debug, Serialize, Deserialize)]
pub struct ControlRequest {
    pub token: String,
    #[serde(flatten)]
    pub action: Action,
}

/// What control needs from the config, before the pipeline runs.
pub struct ControlSetup {
    token_file: PathBuf,
    audit_log: PathBuf,
    history: Option<PathBuf>,
    config: Config,
}

impl ControlSetup {
    pub fn from_config(config: &Config) -> ControlSetup {
        ControlSetup {
            token_file: config.controller.token_file.clone(),
            audit_log: config.controller.audit_log.clone(),
            history: config.storage.enabled.then(|| config.storage.path.clone()),
            config: config.clone(),
        }
    }

    /// The responder, once the pipeline runs; `None` when no token file exists.
    pub fn start(self, pipeline: &Pipeline) -> Result<Option<Responder>, String> {
        if !self.token_file.exists() {
            crate::notice::info(format!(
                "NATS: control requests are not answered: no controller token in {}",
                self.token_file.display()
            ));
            return Ok(None);
        }
        let (token, _) = auth::load_or_create_token(&self.token_file)
            .map_err(|e| format!("token_file {}: {e}", self.token_file.display()))?;
        let audit = AuditLog::open(&self.audit_log)?;
        let controls = crate::controller::controls(&self.config, pipeline, self.history);
        Ok(Some(Responder {
            auth: Auth::new(token),
            audit,
            controls,
            failures: Mutex::new(Window::new()),
            client: String::new(),
            host: String::new(),
        }))
    }
}

/// Answers control requests.
pub struct Responder {
    auth: Auth,
    audit: AuditLog,
    controls: Controls,
    failures: Mutex<Window>,
    /// `nats:<subject>`, as the audit log names the client.
    client: String,
    host: String,
}

impl Responder {
    /// Subscribes to `<prefix>.<host>.control`.
    pub async fn subscribe(
        mut self,
        client: &Client,
        settings: &ExportSettings,
    ) -> Result<Listening, FleetError> {
        let subject = Subjects::new(&settings.prefix, &settings.host).control();
        let subscriber = client
            .subscribe(subject.clone())
            .await
            .map_err(|e| FleetError::Nats(format!("subscribing to {subject}: {e}")))?;
        self.client = format!("nats:{subject}");
        self.host = settings.host.clone();
        Ok(Listening {
            responder: self,
            subscriber,
            client: client.clone(),
        })
    }

    /// Checks and applies one request (its raw bytes).
    pub fn handle(&self, payload: &[u8]) -> ControlReply {
        let mut reply = match self.check_and_apply(payload) {
            Ok((done, result)) => ControlReply {
                ok: true,
                done: Some(done),
                result,
                ..ControlReply::default()
            },
            Err(error) => ControlReply {
                error: Some(error),
                ..ControlReply::default()
            },
        };
        reply.host = self.host.clone();
        reply
    }

    fn check_and_apply(&self, payload: &[u8]) -> Result<(String, Option<Value>), String> {
        let failures = || self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        if failures().current(FAILURE_WINDOW) >= FAILURES_ALLOWED {
            return Err(format!(
                "too many requests with a wrong token; refused for up to {} s",
                FAILURE_WINDOW.as_secs()
            ));
        }
        let request: ControlRequest = serde_json::from_slice(payload)
            .map_err(|e| format!("not a control request (docs/fleet.md): {e}"))?;
        if !self.auth.token_matches(&request.token) {
            let count = failures().bump(FAILURE_WINDOW);
            self.audit.record_as(
                &self.client,
                request.action.name(),
                "",
                false,
                &format!("wrong token ({count} in the last minute)"),
            );
            return Err("wrong token".to_string());
        }
        self.apply(request.action)
    }

    fn apply(&self, action: Action) -> Result<(String, Option<Value>), String> {
        let acting = Acting {
            controls: &self.controls,
            audit: &self.audit,
            client: self.client.clone(),
            origin: format!("NATS control request ({})", self.client),
        };
        let done = |text: String| (text, None);
        match action {
            Action::SetProbe { family, enabled } => acting.set_probe(&family, enabled).map(done),
            Action::SetRule { rule, enabled } => acting.set_rule(&rule, enabled).map(done),
            Action::ReloadRules => acting.reload_rules().map(done),
            Action::SimulateBlock { target } => acting
                .simulate_deny(&target)
                .map(|block| (block.outcome.clone(), serde_json::to_value(block).ok())),
            Action::AddDeny {
                target,
                ttl_secs,
                reason,
            } => acting
                .add_deny(DenyRequest {
                    target,
                    ttl_secs,
                    reason,
                })
                .map(|value| ("blocked".to_string(), Some(value))),
            Action::RemoveDeny { id } => acting
                .remove_deny(id)
                .map(|value| ("unblocked".to_string(), Some(value))),
        }
        .map_err(|(_, why)| why)
    }
}

/// A [`Responder`] subscribed to its subject.
pub struct Listening {
    responder: Responder,
    subscriber: async_nats::Subscriber,
    client: Client,
}

impl Listening {
    pub async fn next(&mut self) -> Option<Message> {
        self.subscriber.next().await
    }

    /// Applies `message` and replies on its reply subject (a request without one is applied
    /// all the same: a publisher may not care for the answer).
    pub async fn answer(&self, message: Message) {
        let reply = self.responder.handle(&message.payload);
        if let (Some(reply_to), Ok(json)) = (message.reply, serde_json::to_vec(&reply)) {
            let _ = self.client.publish(reply_to, Bytes::from(json)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::response::control::TargetSpec;

    /// A responder over a replay's controls (no probes, no enforcement), its audit log in `dir`.
    fn responder(dir: &std::path::Path) -> Responder {
        let controls = Controls {
            capture: None,
            rules: crate::rules::RuleEngine::empty(),
            enforcer: None,
            allowlist: crate::response::simulate::Allowlist::system(&[]),
            losses: Arc::new(crate::losses::Losses::new()),
            history: None,
            enforce_mode: "replay (nothing is enforced)",
            simulated: Mutex::new(Default::default()),
            reloads: Mutex::new(Default::default()),
            demo: Default::default(),
        };
        Responder {
            auth: Auth::new("t".repeat(64)),
            audit: AuditLog::open(&dir.join("audit.log")).expect("audit log"),
            controls,
            failures: Mutex::new(Window::new()),
            client: "nats:secmon.h.control".to_string(),
            host: "h".to_string(),
        }
    }

    fn request(token: &str, action: &str) -> Vec<u8> {
        format!("{{\"token\":\"{token}\",{action}}}").into_bytes()
    }

    fn audit(dir: &std::path::Path) -> Vec<Value> {
        std::fs::read_to_string(dir.join("audit.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON"))
            .collect()
    }

    #[test]
    fn the_right_token_applies_the_action_through_the_controllers_checks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let responder = responder(dir.path());
        let token = "t".repeat(64);
        let reply = responder.handle(&request(
            &token,
            r#""action":"simulate_block","target":{"exec":"/opt/x/miner"}"#,
        ));
        assert!(reply.ok, "{reply:?}");
        assert_eq!(reply.host, "h");
        assert!(
            reply
                .done
                .as_deref()
                .is_some_and(|d| d.contains("would deny"))
        );
        let reply = responder.handle(&request(
            &token,
            r#""action":"set_probe","family":"file","enabled":false"#,
        ));
        assert_eq!(
            reply.error.as_deref(),
            Some("replaying a recording: there are no probes")
        );
        let lines = audit(dir.path());
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["action"], "simulate block");
        assert_eq!(lines[0]["client"], "nats:secmon.h.control");
        assert_eq!(lines[1]["ok"], false);
    }

    #[test]
    fn wrong_tokens_are_refused_audited_and_then_locked_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        let responder = responder(dir.path());
        for n in 1..=FAILURES_ALLOWED {
            let reply = responder.handle(&request("guess", r#""action":"reload_rules""#));
            assert_eq!(reply.error.as_deref(), Some("wrong token"), "attempt {n}");
        }
        // Locked out: even the right token is refused, and nothing more is written.
        let reply = responder.handle(&request(&"t".repeat(64), r#""action":"reload_rules""#));
        assert!(
            reply
                .error
                .as_deref()
                .is_some_and(|e| e.contains("too many"))
        );
        let lines = audit(dir.path());
        assert_eq!(lines.len(), FAILURES_ALLOWED as usize);
        assert!(
            lines
                .iter()
                .all(|l| l["ok"] == false && l["action"] == "reload_rules")
        );
    }

    #[test]
    fn what_is_not_a_request_is_answered_and_not_applied() {
        let dir = tempfile::tempdir().expect("tempdir");
        let responder = responder(dir.path());
        for junk in [
            &b"not json"[..],
            br#"{"action":"reload_rules"}"#,
            br#"{"token":"x"}"#,
        ] {
            let reply = responder.handle(junk);
            assert!(!reply.ok);
            assert!(
                reply
                    .error
                    .is_some_and(|e| e.starts_with("not a control request"))
            );
        }
        assert!(audit(dir.path()).is_empty());
    }

    #[test]
    fn requests_read_and_write_the_documented_format() {
        let request: ControlRequest = serde_json::from_str(
            r#"{"token":"k","action":"add_deny","target":{"connect":"203.0.113.7:4444"},"ttl_secs":600,"reason":"c2"}"#,
        )
        .expect("the format of docs/fleet.md");
        assert_eq!(
            request.action,
            Action::AddDeny {
                target: TargetSpec::Connect("203.0.113.7:4444".to_string()),
                ttl_secs: Some(600),
                reason: Some("c2".to_string()),
            }
        );
        let text = serde_json::to_string(&ControlRequest {
            token: "k".to_string(),
            action: Action::RemoveDeny { id: 3 },
        })
        .expect("serialise");
        assert_eq!(text, r#"{"token":"k","action":"remove_deny","id":3}"#);
    }
}
