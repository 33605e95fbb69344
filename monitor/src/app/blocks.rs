//! Blocking from the UI: what `b` and `B` act on ([`BlockTarget`]), `b`'s simulated marks,
//! `B`'s question and confirmed deny entry, and the deny-entries view (`D`): what the kernel
//! blocks right now, who asked and why, and `u` to remove the selected entry.
use std::net::IpAddr;

use chrono::{DateTime, Utc};

use super::{App, Entry, HISTORY_SEQ, Mode, StatusKind};
use crate::event::{AddressText, Event as SecEvent, EventType};

/// What `b`/`B` act on: the process, or the remote end of a connection.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum BlockTarget {
    Process(u32),
    Connection { ip: IpAddr, port: u16 },
}

impl BlockTarget {
    /// The target of an event: the destination of an outgoing connection (`net_connect`,
    /// `net_udp`: what the kernel can refuse), otherwise the process. (An accepted
    /// connection's remote port is the peer's ephemeral one: denying it would stop nothing.)
    pub fn of(event: &SecEvent) -> Option<BlockTarget> {
        if matches!(event.event_type, EventType::NetConnect | EventType::NetUdp)
            && let (Some(ip), Some(port)) = (event.target_ip, event.target_port)
        {
            return Some(BlockTarget::Connection { ip, port });
        }
        (event.pid != 0).then_some(BlockTarget::Process(event.pid))
    }

    /// `process 1234 (bash)` or `connection to 10.0.0.1:443` (untrusted text not sanitised).
    pub fn describe(&self, event: &SecEvent) -> String {
        match self {
            BlockTarget::Process(pid) => format!("process {pid} ({})", event.process),
            BlockTarget::Connection { ip, port } => {
                let proto = event.protocol.as_deref().unwrap_or("");
                format!("{proto} connection to {}", endpoint(*ip, *port))
                    .trim_start()
                    .to_string()
            }
        }
    }
}

/// `ip:port`, with brackets around IPv6 addresses.
pub fn endpoint(ip: IpAddr, port: u16) -> String {
    AddressText::endpoint(ip, port).as_str().to_string()
}

/// A "would block" mark: events of the target from `since` on are shown as blocked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockMark {
    pub since: u64,
    pub what: String,
}

/// One live deny entry as the view lists it: what is blocked, since and until when, who
/// asked and why. The view's own type (the response layer's record converts into it), so that
/// `app` does not import `response`, whose adapters import `app`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DenyRow {
    pub id: u32,
    /// As people read it: `exec path /tmp/x`, `connect 10.0.0.1:443`.
    pub target: String,
    pub created: DateTime<Utc>,
    /// When it lapses (`None`: until removed or the monitor exits).
    pub expires: Option<DateTime<Utc>>,
    pub by: String,
    /// The rule that asked for it.
    pub rule: Option<String>,
    pub reason: String,
}

/// The deny entries as last read, or why there are none (enforcement off, a replay).
#[derive(Clone, Debug)]
pub struct BlocksView {
    pub denies: Result<Vec<DenyRow>, String>,
    pub selected: usize,
}

impl Default for BlocksView {
    fn default() -> Self {
        BlocksView {
            denies: Ok(Vec::new()),
            selected: 0,
        }
    }
}

impl BlocksView {
    pub fn len(&self) -> usize {
        self.denies.as_ref().map_or(0, Vec::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn selected_record(&self) -> Option<&DenyRow> {
        self.denies.as_ref().ok()?.get(self.selected)
    }
}

impl App {
    /// The block mark an event falls under, if any.
    pub fn block_mark(&self, entry: &Entry) -> Option<&BlockMark> {
        let event = &entry.event;
        let by_process = (event.pid != 0)
            .then(|| self.blocked.get(&BlockTarget::Process(event.pid)))
            .flatten();
        let mark = by_process.or_else(|| match BlockTarget::of(event) {
            Some(target @ BlockTarget::Connection { .. }) => self.blocked.get(&target),
            _ => None,
        })?;
        (entry.seq >= mark.since).then_some(mark)
    }

    /// The selected event and what blocking it would target; says why not in the status
    /// line when there is none.
    fn block_target(&mut self) -> Option<(Entry, BlockTarget)> {
        let Some(entry) = self.target_entry().cloned() else {
            self.set_status("no event selected to block".to_string(), StatusKind::Info);
            return None;
        };
        let Some(target) = BlockTarget::of(&entry.event) else {
            self.set_status(
                "this event has no process or connection to block".to_string(),
                StatusKind::Info,
            );
            return None;
        };
        Some((entry, target))
    }

    pub(super) fn simulate_block(&mut self) {
        let Some((entry, _)) = self.block_target() else {
            return;
        };
        self.simulate_block_entry(entry);
    }

    /// `b` on `entry`: what blocking its target would do, and the mark on its events.
    pub(super) fn simulate_block_entry(&mut self, entry: Entry) {
        let Some(target) = BlockTarget::of(&entry.event) else {
            return;
        };
        let recorded = self.controls.response.simulate_block(&target, &entry.event);
        self.mark_blocked(&entry, target);
        self.set_status(recorded, StatusKind::Info);
    }

    /// Marks `target`'s events from `entry` on (from now on for a stored event) as blocked.
    fn mark_blocked(&mut self, entry: &Entry, target: BlockTarget) {
        let since = if entry.seq == HISTORY_SEQ {
            self.next_seq
        } else {
            entry.seq
        };
        let what = target.describe(&entry.event);
        self.blocked
            .entry(target)
            .or_insert(BlockMark { since, what });
    }

    pub(super) fn ask_enforce(&mut self) {
        let Some((entry, target)) = self.block_target() else {
            return;
        };
        match self.controls.response.plan_enforce(&target, &entry.event) {
            Ok(plan) => {
                self.set_status(
                    format!("really {}? [y/N]", plan.question),
                    StatusKind::Prompt,
                );
                self.mode = Mode::ConfirmEnforce(plan);
            }
            Err(why) => self.set_status(why, StatusKind::Error),
        }
    }

    pub(super) fn confirm(&mut self, yes: bool) {
        let Mode::ConfirmEnforce(plan) = std::mem::replace(&mut self.mode, Mode::Normal) else {
            return;
        };
        if !yes {
            self.set_status("not blocked".to_string(), StatusKind::Info);
            return;
        }
        match self.controls.response.enforce(&plan) {
            Ok(text) => {
                // No mark: the deny entry acts on later execs (or connects), which the kernel
                // stops and the panes tag `[stopped]`; the running process goes on.
                self.refresh_denies();
                self.set_status(text, StatusKind::Info);
            }
            Err(text) => self.set_status(text, StatusKind::Error),
        }
    }

    /// Re-reads the deny entries (on opening the view and once a second while it is open).
    pub(super) fn refresh_denies(&mut self) {
        // Keep the selection on the same entry (by id) when others expire around it.
        let selected_id = self.blocks.selected_record().map(|r| r.id);
        self.blocks.denies = self.controls.response.denies();
        self.deny_count = self.blocks.len();
        if let (Some(id), Ok(records)) = (selected_id, &self.blocks.denies)
            && let Some(index) = records.iter().position(|r| r.id == id)
        {
            self.blocks.selected = index;
        }
        self.blocks.selected = self
            .blocks
            .selected
            .min(self.blocks.len().saturating_sub(1));
    }

    pub(super) fn unblock_selected(&mut self) {
        let Some(id) = self.blocks.selected_record().map(|r| r.id) else {
            let text = match &self.blocks.denies {
                Err(why) => why.clone(),
                Ok(_) => "nothing is blocked".to_string(),
            };
            self.set_status(text, StatusKind::Info);
            return;
        };
        let result = self.controls.response.unblock(id);
        self.refresh_denies();
        match result {
            Ok(text) => self.set_status(text, StatusKind::Info),
            Err(text) => self.set_status(text, StatusKind::Error),
        }
    }
}
