//! Stage 5: response. What happens to an analysed event, decided by the actions of the rules
//! it matched and by `[response]` (docs/response.md):
//!
//! - `block`: with `enforce = true`, the event's program (exec) or destination (connect) is
//!   added to the kernel deny table ([`enforce`]), so the *next* exec is killed at exec and the
//!   *next* connect is refused; the event that triggered the rule has already happened. With
//!   `enforce = false` it is simulated like `simulate_block`.
//! - `simulate_block`: nothing is stopped; the event records what real enforcement would have
//!   done ([`simulate`]).
//! - `alert` (and every block): the alert log ([`alert_log`]) and the webhook ([`webhook`]),
//!   for events at or above `log_level` (blocks always).
//! - `log`: the `log_file`, for events at or above `log_level`.
//!
//! Each action taken or simulated is listed in the event's `response` field. Nothing here
//! waits: files are appended to (buffered, flushed per batch), the webhook has its own thread
//! and a bounded queue, and a deny is one map update.
pub mod alert_log;
pub mod control;
pub mod enforce;
pub mod protect;
pub mod simulate;
pub mod syslog;
pub mod ui_adapter;
pub mod webhook;

use std::{io, path::PathBuf, sync::Arc, time::Duration};

use crate::{
    config,
    event::{Event, ResponseAction, ResponseKind, ResponseResult, Severity},
    output::event_json::event_to_string,
    rules::{Action, Outcome},
};
use alert_log::{JsonLog, SharedLog};
use enforce::{
    BlockError, EnforcePolicy, Enforcer, Origin, PolicyStats, SharedCapture, SharedTables,
};
use simulate::{Allowlist, Plan};
use syslog::{Syslog, SyslogStats};
use webhook::{Webhook, WebhookOptions, WebhookStats};

#[derive(Debug, thiserror::Error)]
pub enum ResponseError {
    #[error("[response] {key}: cannot open {}: {error}", path.display())]
    Log {
        key: &'static str,
        path: PathBuf,
        error: io::Error,
    },
    #[error("[response] {0}")]
    Webhook(String),
    #[error("[response] control_socket: {0}")]
    Control(#[from] control::ControlError),
    #[error(
        "[response] syslog_socket: cannot send to {}: {error} (is a syslog daemon or journald \
         running? syslog = false switches the sink off)",
        path.display()
    )]
    Syslog { path: PathBuf, error: io::Error },
}

/// What the response layer did during a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResponseStats {
    /// Events written to `log_file`.
    pub logged: u64,
    /// Alerts raised.
    pub alerts: u64,
    /// Blocks simulated ("would block").
    pub simulated: u64,
    /// Deny entries added by rules.
    pub blocks: u64,
    /// Blocks that failed (kernel refused, bad target, table full).
    pub block_failures: u64,
    /// Deny requests refused or limited by the policy (protected targets, rules asking for a
    /// system binary, rate limit, the rules' share of a table).
    pub policy: PolicyStats,
    /// Events the kernel stopped (killed execs, refused connects).
    pub stopped: u64,
    /// Lines that could not be written to `log_file` or `alert_log`.
    pub write_errors: u64,
    pub webhook: WebhookStats,
    pub syslog: SyslogStats,
}

impl ResponseStats {
    /// The `response summary: …` stop notice (`secmon: response summary: …` on stderr), or
    /// None when nothing happened.
    pub fn summary(&self) -> Option<String> {
        if *self == ResponseStats::default() {
            return None;
        }
        let w = &self.webhook;
        let mut line = format!(
            "response summary: {} alerts, {} logged, {} blocks ({} failed), {} simulated blocks, \
             {} stopped by the kernel",
            self.alerts,
            self.logged,
            self.blocks,
            self.block_failures,
            self.simulated,
            self.stopped
        );
        if w.requests > 0 || w.dropped > 0 {
            line.push_str(&format!(
                "; webhook: {} sent, {} failed, {} dropped (queue full)",
                w.sent, w.failed, w.dropped
            ));
        }
        if self.syslog != SyslogStats::default() {
            line.push_str(&format!(
                "; syslog: {} sent, {} dropped",
                self.syslog.sent, self.syslog.dropped
            ));
        }
        let p = &self.policy;
        if *p != PolicyStats::default() {
            line.push_str(&format!(
                "; deny requests refused: {} protected, {} not for rules, {} over the rules' \
                 limits, {} with a full table",
                p.protected, p.refused_rules, p.limited, p.table_full
            ));
        }
        if self.write_errors > 0 {
            line.push_str(&format!("; {} log lines not written", self.write_errors));
        }
        Some(line)
    }
}

/// The response layer of one pipeline.
pub struct Responder {
    log_level: Severity,
    enable_alerts: bool,
    event_log: Option<JsonLog>,
    alert_log: Option<SharedLog>,
    webhook: Option<Webhook>,
    syslog: Option<Syslog>,
    enforcer: Option<Arc<Enforcer>>,
    allowlist: Allowlist,
    policy: EnforcePolicy,
    stats: ResponseStats,
    /// Whether a write error was already reported on stderr.
    warned_write: bool,
}

impl Responder {
    /// Opens the log files and starts the webhook. `capture` is given when real enforcement
    /// is on (its connect programs attached): rules with `action = "block"` then deny for real.
    pub fn new(
        config: &config::Response,
        capture: Option<SharedCapture>,
    ) -> Result<Responder, ResponseError> {
        Responder::with_webhook_options(config, capture, WebhookOptions::default())
    }

    pub fn with_webhook_options(
        config: &config::Response,
        capture: Option<SharedCapture>,
        webhook_options: WebhookOptions,
    ) -> Result<Responder, ResponseError> {
        let tables = capture.map(|capture| -> SharedTables { capture });
        let allowlist = Allowlist::system(&config.allowlist);
        Responder::build(config, tables, allowlist, webhook_options)
    }

    /// Over any deny tables and protected set (tests use stand-ins).
    pub fn build(
        config: &config::Response,
        tables: Option<SharedTables>,
        allowlist: Allowlist,
        webhook_options: WebhookOptions,
    ) -> Result<Responder, ResponseError> {
        let open = |key: &'static str, path: &PathBuf| {
            JsonLog::open(path, config.log_max_size_mb).map_err(|error| ResponseError::Log {
                key,
                path: path.clone(),
                error,
            })
        };
        let event_log = config
            .log_file
            .as_ref()
            .map(|p| open("log_file", p))
            .transpose()?;
        let alert_log = config
            .alert_log
            .as_ref()
            .map(|p| open("alert_log", p))
            .transpose()?
            .map(JsonLog::shared);
        let webhook = match (&config.alert_webhook, config.enable_alerts) {
            (Some(url), true) => {
                let header = webhook::configured_header(config).map_err(ResponseError::Webhook)?;
                let options = WebhookOptions {
                    header,
                    ..webhook_options
                };
                Some(
                    Webhook::start(url, options)
                        .map_err(|e| ResponseError::Webhook(format!("alert_webhook: {e}")))?,
                )
            }
            _ => None,
        };
        let syslog = match (config.syslog, config.enable_alerts) {
            (true, true) => Some(Syslog::connect(&config.syslog_socket).map_err(|error| {
                ResponseError::Syslog {
                    path: config.syslog_socket.clone(),
                    error,
                }
            })?),
            _ => None,
        };
        let policy = EnforcePolicy::from_config(config);
        let enforcer = tables.map(|tables| {
            Arc::new(Enforcer::with_tables(
                tables,
                allowlist.clone(),
                policy.clone(),
                alert_log.clone(),
            ))
        });
        Ok(Responder {
            log_level: config.log_level,
            enable_alerts: config.enable_alerts,
            event_log,
            alert_log,
            webhook,
            syslog,
            enforcer,
            allowlist,
            policy,
            stats: ResponseStats::default(),
            warned_write: false,
        })
    }

    /// The real-enforcement policy, when `enforce` is on (the control socket uses it).
    pub fn enforcer(&self) -> Option<&Arc<Enforcer>> {
        self.enforcer.as_ref()
    }

    /// One line per active sink for the start-up report (`secmon: response: …`).
    pub fn describe(&self) -> String {
        let mut parts = vec![match &self.enforcer {
            Some(_) => format!(
                "enforce on ({} protected programs, allowlist: {}; rules deny at most {} a \
                 minute; deny entries last {})",
                self.allowlist.builtin().len(),
                self.allowlist.entries().join(", "),
                self.policy.rule_denies_per_minute,
                match self.policy.default_ttl {
                    Some(ttl) => format!("{} s", ttl.as_secs()),
                    None => "until removed".to_string(),
                }
            ),
            None => "enforce off (block rules are simulated)".to_string(),
        }];
        if let Some(log) = &self.event_log {
            parts.push(format!("log file {}", log.path().display()));
        }
        if let Some(log) = &self.alert_log {
            parts.push(format!(
                "alert log {}",
                alert_log::lock(log).path().display()
            ));
        }
        if let Some(hook) = &self.webhook {
            parts.push(format!("webhook {}", hook.url()));
        }
        if let Some(syslog) = &self.syslog {
            parts.push(format!("syslog {}", syslog.path().display()));
        }
        parts.join(", ")
    }

    /// Acts on an analysed event and lists what was done in `event.response`. The outcome
    /// names the rules asking for a block, from the rule set that scored the event.
    pub fn respond_analyzed(&mut self, event: &mut Event, outcome: &Outcome) {
        event.response.clear();
        let severity = event.analysis.severity;
        let log_all = self.event_log.is_some() && self.log_level == Severity::Benign;
        if outcome.action.is_none() && severity == Severity::Benign && !event.blocked && !log_all {
            return;
        }
        let mut strongest = outcome.action;
        if strongest.is_none() && severity > Severity::Benign {
            // A heuristic verdict: alert-worthy, like a rule's default action.
            strongest = Some(Action::Alert);
        }

        let mut blockish = true;
        if event.blocked {
            self.stopped(event);
        } else if let Some(rule) = &outcome.block_rule {
            self.block(event, rule.clone());
        } else if let Some(rule) = &outcome.simulate_rule {
            self.simulate(event, rule.clone(), ResponseKind::SimulateBlock);
        } else {
            blockish = false;
        }
        let above = severity >= self.log_level;
        let alert = self.enable_alerts
            && (blockish || (above && strongest.is_some_and(|a| a >= Action::Alert)));
        let write_log = self.event_log.is_some() && (blockish || above || log_all);
        let fires = blockish || strongest.is_some();
        if alert {
            self.stats.alerts += 1;
            let mut sinks = vec!["raised"];
            if self.alert_log.is_some() {
                sinks.push("alert log");
            }
            if self.webhook.is_some() {
                sinks.push("webhook");
            }
            if self.syslog.is_some() {
                sinks.push("syslog");
            }
            event.response.push(ResponseAction {
                action: ResponseKind::Alert,
                result: ResponseResult::Done,
                rule: event
                    .analysis
                    .rules
                    .first()
                    .filter(|r| !r.starts_with("heuristic:"))
                    .cloned(),
                target: None,
                deny_id: None,
                detail: sinks.join(", "),
            });
        }
        if write_log
            && fires
            && let Some(log) = &self.event_log
        {
            event.response.push(ResponseAction {
                action: ResponseKind::Log,
                result: ResponseResult::Done,
                rule: None,
                target: None,
                deny_id: None,
                detail: format!("written to {}", log.path().display()),
            });
        }
        if !(alert || write_log) {
            return;
        }
        let json = event_to_string(event);
        if alert {
            let mut failed = None;
            if let Some(log) = &self.alert_log {
                let mut log = alert_log::lock(log);
                if let Err(e) = log.append(&json) {
                    failed = Some(format!("alert log {}: {e}", log.path().display()));
                }
            }
            if let Some(hook) = &self.webhook
                && !hook.send(json.clone())
            {
                self.mark(event, ResponseKind::Alert, |a| {
                    a.detail
                        .push_str("; webhook queue full: not sent (counted)");
                });
            }
            if let Some(syslog) = &mut self.syslog
                && !syslog.send(event, &json)
            {
                self.mark(event, ResponseKind::Alert, |a| {
                    a.detail.push_str("; syslog: not sent (counted)");
                });
            }
            if let Some(why) = failed {
                self.write_failed(event, ResponseKind::Alert, &why);
            }
        }
        if write_log {
            let result = self.event_log.as_mut().map(|log| {
                log.append(&json)
                    .map_err(|e| format!("log file {}: {e}", log.path().display()))
            });
            match result {
                Some(Ok(())) => self.stats.logged += 1,
                Some(Err(why)) => self.write_failed(event, ResponseKind::Log, &why),
                None => {}
            }
        }
    }

    fn mark(&self, event: &mut Event, kind: ResponseKind, f: impl FnOnce(&mut ResponseAction)) {
        if let Some(action) = event.response.iter_mut().find(|a| a.action == kind) {
            f(action);
        }
    }

    fn write_failed(&mut self, event: &mut Event, kind: ResponseKind, why: &str) {
        self.stats.write_errors += 1;
        if !self.warned_write {
            self.warned_write = true;
            crate::notice::warn(format!(
                "cannot write to the {why} (further failures are counted)"
            ));
        }
        self.mark(event, kind, |a| {
            a.result = ResponseResult::Failed;
            a.detail = format!("cannot write to the {why}");
        });
    }

    /// The kernel already stopped this event.
    fn stopped(&mut self, event: &mut Event) {
        self.stats.stopped += 1;
        let (target, detail) = match simulate::plan(event, &self.allowlist) {
            Plan::Stopped { target, effect } => (target, effect),
            _ => (None, "stopped by the kernel".to_string()),
        };
        let deny_id = target
            .as_ref()
            .and_then(|t| self.enforcer.as_ref()?.existing(t))
            .map(|r| r.id);
        event.response.push(ResponseAction {
            action: ResponseKind::Block,
            result: ResponseResult::Done,
            rule: None,
            target: target.map(|t| t.to_string()),
            deny_id,
            detail,
        });
    }

    /// Records what blocking would do, stopping nothing.
    fn simulate(&mut self, event: &mut Event, rule: String, kind: ResponseKind) {
        let plan = simulate::plan(event, &self.allowlist);
        // The rule-deny policy applies to simulations too: they show what enforcement would do.
        let refusal = match &plan {
            Plan::Deny { target, .. } => simulate::rule_refusal(
                target,
                &rule,
                self.policy.system_binary_rules.contains(&rule),
            ),
            _ => None,
        };
        if let (Some(why), Plan::Deny { target, .. }) = (refusal, &plan) {
            event.response.push(ResponseAction {
                action: kind,
                result: ResponseResult::Skipped,
                rule: Some(rule),
                target: Some(target.to_string()),
                deny_id: None,
                detail: format!("would not block: {why}"),
            });
            return;
        }
        let (result, target) = match &plan {
            Plan::Deny { target, .. } => {
                self.stats.simulated += 1;
                (ResponseResult::Simulated, Some(target.to_string()))
            }
            Plan::Protected { target, .. } => (ResponseResult::Skipped, Some(target.to_string())),
            Plan::Stopped { target, .. } => (
                ResponseResult::Skipped,
                target.as_ref().map(|t| t.to_string()),
            ),
            Plan::Unsupported(_) => (ResponseResult::Skipped, None),
        };
        event.response.push(ResponseAction {
            action: kind,
            result,
            rule: Some(rule),
            target,
            deny_id: None,
            detail: simulate::would(&plan, self.enforcer.is_some()),
        });
    }

    /// A `block` rule fired: deny for real, or simulate when enforcement is off.
    fn block(&mut self, event: &mut Event, rule: String) {
        let Some(enforcer) = self.enforcer.clone() else {
            self.simulate(event, rule, ResponseKind::Block);
            return;
        };
        let plan = simulate::plan(event, &self.allowlist);
        let action = |result, target: Option<String>, deny_id, detail| ResponseAction {
            action: ResponseKind::Block,
            result,
            rule: Some(rule.clone()),
            target,
            deny_id,
            detail,
        };
        let entry = match plan {
            Plan::Deny { target, effect } => {
                if let Some(existing) = enforcer.existing(&target) {
                    action(
                        ResponseResult::Skipped,
                        Some(existing.target),
                        Some(existing.id),
                        format!("already denied (#{})", existing.id),
                    )
                } else {
                    let origin = Origin {
                        by: who(event),
                        rule: Some(rule.clone()),
                        reason: event.analysis.label.clone(),
                    };
                    let shown = target.to_string();
                    match enforcer.block(target, self.policy.default_ttl, origin) {
                        Ok(record) => {
                            self.stats.blocks += 1;
                            action(
                                ResponseResult::Done,
                                Some(shown),
                                Some(record.id),
                                format!(
                                    "denied in the kernel: {effect} (this event itself was not \
                                     stopped; undo: secmon-tui unblock {})",
                                    record.id
                                ),
                            )
                        }
                        Err(BlockError::Protected { why, .. }) => action(
                            ResponseResult::Skipped,
                            Some(shown),
                            None,
                            format!("not blocked: {why}"),
                        ),
                        Err(
                            e @ (BlockError::RefusedForRule(_)
                            | BlockError::RateLimited { .. }
                            | BlockError::RuleShareFull { .. }),
                        ) => action(
                            ResponseResult::Skipped,
                            Some(shown),
                            None,
                            format!("not blocked: {e}"),
                        ),
                        Err(e) => {
                            self.stats.block_failures += 1;
                            action(ResponseResult::Failed, Some(shown), None, e.to_string())
                        }
                    }
                }
            }
            Plan::Protected { target, why } => action(
                ResponseResult::Skipped,
                Some(target.to_string()),
                None,
                format!("not blocked: {why}"),
            ),
            Plan::Stopped { target, effect } => action(
                ResponseResult::Done,
                target.map(|t| t.to_string()),
                None,
                effect,
            ),
            Plan::Unsupported(why) => action(
                ResponseResult::Skipped,
                None,
                None,
                format!("not blocked: {why}"),
            ),
        };
        event.response.push(entry);
    }

    /// Writes buffered log lines out (after every batch).
    pub fn flush(&mut self) {
        if let Some(log) = &mut self.event_log {
            let _ = log.flush();
        }
        if let Some(log) = &self.alert_log {
            let _ = alert_log::lock(log).flush();
        }
    }

    /// Periodic work (about once a second): lapsed deny entries.
    pub fn tick(&mut self) {
        if let Some(enforcer) = &self.enforcer {
            enforcer.expire();
        }
    }

    pub fn stats(&self) -> ResponseStats {
        let mut stats = self.stats;
        if let Some(enforcer) = &self.enforcer {
            stats.policy = enforcer.policy_stats();
        }
        if let Some(hook) = &self.webhook {
            stats.webhook = hook.stats();
        }
        if let Some(syslog) = &self.syslog {
            stats.syslog = syslog.stats;
        }
        stats
    }

    /// Flushes the logs and stops the webhook (waiting at most `grace` for queued alerts).
    pub fn finish(mut self, grace: Duration) -> ResponseStats {
        self.flush();
        let mut stats = self.stats;
        if let Some(enforcer) = &self.enforcer {
            stats.policy = enforcer.policy_stats();
        }
        if let Some(hook) = self.webhook.take() {
            stats.webhook = hook.shutdown(grace);
        }
        if let Some(syslog) = &self.syslog {
            stats.syslog = syslog.stats;
        }
        stats
    }
}

/// `pid 1234 uid 0 (/tmp/x)`: the process behind an event.
fn who(event: &Event) -> String {
    let program = if event.exe.is_empty() {
        &event.process
    } else {
        &event.exe
    };
    format!("pid {} uid {} ({program})", event.pid, event.uid)
}

#[cfg(test)]
mod tests;
