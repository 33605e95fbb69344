//! The filter (`/`: a case-insensitive substring of names, paths and addresses, or `pid:N`
//! for one process, which `e` sets) and the suspicious-only switch (`f`): which events the
//! panes and the alerts strip show.
use std::net::IpAddr;

use super::{Action, App, Mode, StatusKind};
use crate::event::{AddressText, Event as SecEvent, Severity, contains_ignore_case};

impl App {
    /// Whether an event passes the filter and the suspicious-only switch.
    pub fn matches(&self, event: &SecEvent) -> bool {
        if self.suspicious_only && event.analysis.severity < Severity::Suspicious {
            return false;
        }
        self.filter.is_empty() || filter_matches(&self.filter, event)
    }

    pub(super) fn refilter(&mut self) {
        let filter = std::mem::take(&mut self.filter);
        let suspicious_only = self.suspicious_only;
        let keep = |event: &SecEvent| {
            (!suspicious_only || event.analysis.severity >= Severity::Suspicious)
                && (filter.is_empty() || filter_matches(&filter, event))
        };
        for pane in &mut self.panes {
            for entry in &mut pane.entries {
                // Without keeping every row's event built (see `Stored`).
                entry.visible = entry.event.read(keep);
            }
            pane.follow();
        }
        for entry in &mut self.alerts.entries {
            entry.visible = keep(&entry.event);
        }
        self.alerts.follow();
        self.filter = filter;
        self.dirty = true;
    }

    /// Applies a filter key: typing, editing, accepting or clearing the filter, and the
    /// suspicious-only switch.
    pub(super) fn update_filter(&mut self, action: Action) {
        match action {
            Action::StartFilter => {
                self.mode = Mode::Filter;
                if self
                    .status
                    .as_ref()
                    .is_some_and(|s| s.kind == StatusKind::Prompt)
                {
                    self.status = None;
                }
            }
            Action::FilterChar(c) if !c.is_control() => {
                self.filter.push(c);
                self.refilter();
            }
            Action::FilterBackspace => {
                let removed = self.filter.pop().is_some();
                if removed {
                    self.refilter();
                }
            }
            Action::FilterClearText => {
                self.filter.clear();
                self.refilter();
            }
            Action::FilterAccept => self.mode = Mode::Normal,
            Action::ClearFilter => {
                self.mode = Mode::Normal;
                if !self.filter.is_empty() {
                    self.filter.clear();
                    self.refilter();
                }
            }
            Action::ToggleSuspiciousOnly => {
                self.suspicious_only = !self.suspicious_only;
                self.refilter();
            }
            // Other actions, and control characters (never typed into the filter).
            _ => {}
        }
    }
}

/// The filter `e` sets: one process's events.
pub fn pid_filter_text(pid: u32) -> String {
    format!("{PID_PREFIX}{pid}")
}

const PID_PREFIX: &str = "pid:";

/// The pid of a `pid:N` filter.
fn pid_filter(filter: &str) -> Option<u32> {
    filter.strip_prefix(PID_PREFIX)?.trim().parse().ok()
}

/// Whether `event` passes the filter: `pid:N` keeps that process's events; any other text is
/// a case-insensitive substring of the process name, executable, command line, paths and
/// addresses (`ip` and `ip:port`).
pub fn filter_matches(filter: &str, event: &SecEvent) -> bool {
    if let Some(pid) = pid_filter(filter) {
        return event.pid == pid;
    }
    event.names_or_paths_contain(filter)
        || address_matches(filter, event.source_ip, event.source_port)
        || address_matches(filter, event.target_ip, event.target_port)
}

fn address_matches(filter: &str, ip: Option<IpAddr>, port: Option<u16>) -> bool {
    let Some(ip) = ip else { return false };
    if contains_ignore_case(AddressText::ip(ip).as_str(), filter) {
        return true;
    }
    port.is_some_and(|port| contains_ignore_case(AddressText::endpoint(ip, port).as_str(), filter))
}
