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
    response::control::TargetSpec,
};

/// A control request: the token and one action.
#[derive(Debug, Serialize, Deserialize)]
pub struct ControlRequest {
    pub token: String,
    #[serde(flatten)]
    pub action: Action,
}

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
    fn name(&self) -> &'static str {
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
