//! The terminal UI's state and its transitions, without a terminal.
//!
//! One [`App`] owns everything the screen shows. The event loop ([`crate::tui`]) feeds it
//! [`Event`]s — key presses, batches of analysed kernel events, ticks, log lines — and draws it
//! with [`crate::ui::draw`] when [`App::needs_redraw`] says something changed. Key presses
//! become [`Action`]s ([`App::action_for_key`]) and [`App::update`] applies them; both are
//! unit-tested below without a terminal.
//!
//! The kernel and the rule engine are reached through three small traits, so the state
//! machine can be driven with fakes: [`Probes`] (the capture's family switches, implemented by
//! [`Capture`]), [`RuleControl`] (reload, per-rule enable, list; implemented by
//! [`RuleEngine`]) and [`Response`] (simulated and real blocking; [`SimulatedResponse`] until
//! the response layer of issue 6 exists).
use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::ops::Deref;
use std::sync::Arc;

use chrono::{DateTime, FixedOffset, Utc};
use crossterm::event::{Event as TermEvent, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::capture::Capture;
use crate::event::{Event as SecEvent, EventType, Family, Severity};
use crate::rules::{RuleEngine, RuleInfo};

/// Events kept per pane (the newest); older ones are dropped, so memory stays flat.
pub const PANE_CAPACITY: usize = 10_000;
/// Alerts kept in the alerts strip.
pub const ALERT_CAPACITY: usize = 1_000;
/// Seconds of events/s history behind each family's sparkline.
pub const RATE_HISTORY: usize = 60;
/// How long a status message stays in the footer.
pub const STATUS_SECONDS: i64 = 10;
/// Rows a page key moves.
pub const PAGE_ROWS: usize = 10;
/// Simulated block records kept by [`SimulatedResponse`].
const RESPONSE_LOG_CAPACITY: usize = 1_000;

/// The families keys `1`–`4` switch, in key order.
pub const FAMILY_KEYS: [Family; 4] = [
    Family::Process,
    Family::File,
    Family::Network,
    Family::Kernel,
];

/// Everything the event loop hands to the [`App`].
#[derive(Debug)]
pub enum Event {
    /// The redraw tick; carries the wall-clock time (the header clock, rates, status expiry).
    Tick(DateTime<Utc>),
    /// A key press, resize, etc.
    Input(TermEvent),
    /// A batch of enriched and analysed kernel events, oldest first.
    Kernel(Vec<SecEvent>),
    /// A line secmon itself wrote to stderr while the UI runs (e.g. the rule watcher's
    /// reload report), shown in the status line instead of garbling the screen.
    Log(String),
}

/// What a key asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Quit,
    FocusNext,
    FocusPrev,
    /// Towards newer events (up the table).
    SelectNewer(usize),
    /// Towards older events (down the table).
    SelectOlder(usize),
    /// Back to following the newest event.
    SelectNewest,
    SelectOldest,
    OpenDetail,
    /// Closes the detail view, the help overlay or the rules pane (the innermost open).
    Close,
    ToggleFamily(Family),
    /// `p`: the next key picks a family.
    ChooseProbe,
    ReloadRules,
    ToggleRulesPane,
    ToggleSelectedRule,
    SimulateBlock,
    AskEnforce,
    Confirm(bool),
    StartFilter,
    FilterChar(char),
    FilterBackspace,
    FilterClearText,
    /// Ends filter input, keeping the filter.
    FilterAccept,
    ClearFilter,
    ToggleSuspiciousOnly,
    TogglePause,
    Clear,
    ToggleHelp,
    /// Nothing to do (a key that only cancels a prompt).
    Cancel,
}

/// The three event panes, in focus order.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum PaneId {
    Process,
    File,
    Network,
}

impl PaneId {
    pub const ALL: [PaneId; 3] = [PaneId::Process, PaneId::File, PaneId::Network];

    pub fn index(self) -> usize {
        match self {
            PaneId::Process => 0,
            PaneId::File => 1,
            PaneId::Network => 2,
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            PaneId::Process => "Processes",
            PaneId::File => "Files",
            PaneId::Network => "Network",
        }
    }

    /// The pane an event type is shown in: processes (including privilege changes, ptrace,
    /// BPF and module loads), files, network.
    pub fn for_event(event_type: EventType) -> PaneId {
        match event_type.family() {
            Family::Process | Family::Kernel => PaneId::Process,
            Family::File => PaneId::File,
            Family::Network => PaneId::Network,
        }
    }

    fn next(self) -> PaneId {
        PaneId::ALL[(self.index() + 1) % 3]
    }

    fn prev(self) -> PaneId {
        PaneId::ALL[(self.index() + 2) % 3]
    }
}

/// An event as a pane holds it: by value, or shared with the alerts strip.
///
/// Allocations are what the UI pays for most at high event rates (a ring of 30,000 events
/// churns the heap): a benign event costs no allocation of its own, and an alert is shared,
/// not copied.
#[derive(Clone, Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "boxing the owned event would bring back the allocation this enum avoids"
)]
pub enum Stored {
    Owned(SecEvent),
    Shared(Arc<SecEvent>),
}

impl Deref for Stored {
    type Target = SecEvent;

    fn deref(&self) -> &SecEvent {
        match self {
            Stored::Owned(event) => event,
            Stored::Shared(event) => event,
        }
    }
}

/// One stored event.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Arrival number, unique and increasing across all panes.
    pub seq: u64,
    pub event: Stored,
    /// Whether it passes the current filter and the suspicious-only switch.
    pub visible: bool,
}

/// A bounded, newest-last list of events with a selection.
#[derive(Debug, Default)]
pub struct Pane {
    pub entries: VecDeque<Entry>,
    /// The selected event (`None`: follow the newest).
    pub selected: Option<u64>,
    /// The event shown in the top row while browsing (`None`: the newest).
    pub top: Option<u64>,
    /// Data rows the pane had at the last draw (for paging and keeping the selection in view).
    pub height: Cell<usize>,
}

impl Pane {
    fn push(&mut self, entry: Entry) {
        if self.entries.len() >= PANE_CAPACITY {
            self.entries.pop_front();
        }
        self.entries.push_back(entry);
    }

    /// The entries shown (visible and, when paused, arrived before the pause), newest first.
    pub fn shown(&self, paused_at: Option<u64>) -> impl Iterator<Item = &Entry> + '_ {
        self.entries
            .iter()
            .rev()
            .filter(move |e| e.visible && paused_at.is_none_or(|p| e.seq <= p))
    }

    fn position(&self, paused_at: Option<u64>, seq: u64) -> Option<usize> {
        self.shown(paused_at).position(|e| e.seq == seq)
    }

    /// The first shown row and the rows to draw for a pane `height` rows tall, keeping the
    /// selection in view.
    pub fn window(&self, paused_at: Option<u64>, height: usize) -> (usize, Vec<&Entry>) {
        let height = height.max(1);
        let top = self
            .top
            .and_then(|s| self.position(paused_at, s))
            .unwrap_or(0);
        let start = match self.selected.and_then(|s| self.position(paused_at, s)) {
            Some(p) if p < top => p,
            Some(p) if p >= top + height => p + 1 - height,
            _ => top,
        };
        let rows = self.shown(paused_at).skip(start).take(height).collect();
        (start, rows)
    }

    /// The selected entry, if it is still shown.
    pub fn selected_entry(&self, paused_at: Option<u64>) -> Option<&Entry> {
        let seq = self.selected?;
        self.shown(paused_at).find(|e| e.seq == seq)
    }

    /// Moves the selection by `delta` rows (negative: newer) and keeps it in view.
    fn move_selection(&mut self, paused_at: Option<u64>, delta: isize) {
        let shown: Vec<u64> = self.shown(paused_at).map(|e| e.seq).collect();
        if shown.is_empty() {
            self.selected = None;
            self.top = None;
            return;
        }
        let current = self
            .selected
            .and_then(|s| shown.iter().position(|&x| x == s));
        let target = match current {
            // Nothing selected: the first step down selects the newest row.
            None if delta > 0 => delta.unsigned_abs() - 1,
            None => return,
            Some(p) if delta < 0 && p < delta.unsigned_abs() => {
                // Past the newest row: follow the newest again.
                self.selected = None;
                self.top = None;
                return;
            }
            Some(p) => p.saturating_add_signed(delta),
        };
        let target = target.min(shown.len() - 1);
        self.select_position(&shown, target);
    }

    fn select_position(&mut self, shown: &[u64], target: usize) {
        let height = self.height.get().max(1);
        self.selected = Some(shown[target]);
        let top = self
            .top
            .and_then(|s| shown.iter().position(|&x| x == s))
            .unwrap_or(0);
        let top = if target < top {
            target
        } else if target >= top + height {
            target + 1 - height
        } else {
            top
        };
        self.top = Some(shown[top]);
    }

    fn select_oldest(&mut self, paused_at: Option<u64>) {
        let shown: Vec<u64> = self.shown(paused_at).map(|e| e.seq).collect();
        if let Some(last) = shown.len().checked_sub(1) {
            self.select_position(&shown, last);
        }
    }

    fn follow(&mut self) {
        self.selected = None;
        self.top = None;
    }
}

/// What `b`/`B` act on: the process, or the remote end of a connection.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum BlockTarget {
    Process(u32),
    Connection { ip: String, port: u16 },
}

impl BlockTarget {
    /// The target of an event: the connection for network events with a remote address,
    /// otherwise the process.
    pub fn of(event: &SecEvent) -> Option<BlockTarget> {
        if event.family() == Family::Network
            && let (Some(ip), Some(port)) = (&event.target_ip, event.target_port)
            && !ip.is_empty()
        {
            return Some(BlockTarget::Connection {
                ip: ip.clone(),
                port,
            });
        }
        (event.pid != 0).then_some(BlockTarget::Process(event.pid))
    }

    /// `process 1234 (bash)` or `connection to 10.0.0.1:443` (untrusted text not sanitised).
    pub fn describe(&self, event: &SecEvent) -> String {
        match self {
            BlockTarget::Process(pid) => format!("process {pid} ({})", event.process),
            BlockTarget::Connection { ip, port } => {
                let proto = event.protocol.as_deref().unwrap_or("");
                format!("{proto} connection to {}", endpoint(ip, *port))
                    .trim_start()
                    .to_string()
            }
        }
    }
}

/// `ip:port`, with brackets around IPv6 addresses.
pub fn endpoint(ip: &str, port: u16) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

/// A "would block" mark: events of the target from `since` on are shown as blocked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockMark {
    pub since: u64,
    pub what: String,
}

/// Whether a probe family is attached and switched on.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ProbeState {
    On,
    Off,
    /// The kernel refused every probe of the family.
    Unavailable,
}

/// The capture's switches, as the UI sees them.
pub trait Probes {
    fn state(&self, family: Family) -> ProbeState;
    /// Switches a family in the kernel; the error is one line.
    fn set_enabled(&mut self, family: Family, on: bool) -> Result<(), String>;
    /// Events the kernel dropped (ring buffer full) since start.
    fn drops(&self) -> u64;
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

    fn drops(&self) -> u64 {
        self.total_drops()
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

    fn drops(&self) -> u64 {
        self.drops
    }

    fn unavailable_reason(&self, family: Family) -> Option<String> {
        (self.state(family) == ProbeState::Unavailable)
            .then(|| "not attached on this kernel".to_string())
    }
}

fn family_index(family: Family) -> usize {
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

/// Blocking, simulated and real. The response layer (issue 6) will implement this; until
/// then [`SimulatedResponse`] records "would block" actions and refuses real enforcement.
pub trait Response {
    /// Records that `target` would be blocked; returns what was recorded.
    fn simulate_block(&mut self, target: &BlockTarget, what: &str) -> String;
    /// Blocks `target` for real, if the configuration allows it and an enforcement API
    /// exists.
    fn enforce(&mut self, target: &BlockTarget, what: &str) -> Result<String, String>;
}

/// One recorded "would block".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseRecord {
    pub target: BlockTarget,
    pub what: String,
}

/// The response stand-in: keeps the simulated actions (bounded) and has no enforcement.
#[derive(Clone, Debug, Default)]
pub struct SimulatedResponse {
    pub records: VecDeque<ResponseRecord>,
}

/// The answer to a confirmed `B` until real enforcement exists.
pub const NO_ENFORCEMENT: &str = "real enforcement is not available yet (issue 6)";

impl Response for SimulatedResponse {
    fn simulate_block(&mut self, target: &BlockTarget, what: &str) -> String {
        if self.records.len() >= RESPONSE_LOG_CAPACITY {
            self.records.pop_front();
        }
        self.records.push_back(ResponseRecord {
            target: target.clone(),
            what: what.to_string(),
        });
        format!("would block {what} (simulated; recorded, nothing enforced)")
    }

    fn enforce(&mut self, _target: &BlockTarget, _what: &str) -> Result<String, String> {
        Err(NO_ENFORCEMENT.to_string())
    }
}

/// What the UI controls.
pub struct Controls {
    pub probes: Box<dyn Probes>,
    pub rules: Box<dyn RuleControl>,
    pub response: Box<dyn Response>,
}

impl Controls {
    /// Fixed probes, no rules, simulated response.
    pub fn fixed() -> Controls {
        Controls {
            probes: Box::new(StaticProbes::default()),
            rules: Box::new(RuleEngine::empty()),
            response: Box::new(SimulatedResponse::default()),
        }
    }
}

/// Colours or not (NO_COLOR, TERM=vt100/dumb); severity markers are text either way.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Theme {
    pub color: bool,
}

impl Theme {
    /// From the environment: no colour when `NO_COLOR` is set (non-empty) or the terminal is
    /// monochrome (`TERM` dumb, vt52/vt100/vt102/vt220).
    pub fn from_env() -> Theme {
        Theme::from_vars(
            std::env::var_os("NO_COLOR").as_deref(),
            std::env::var("TERM").ok().as_deref(),
        )
    }

    pub fn from_vars(no_color: Option<&std::ffi::OsStr>, term: Option<&str>) -> Theme {
        let no_color = no_color.is_some_and(|v| !v.is_empty());
        let mono_term = term.is_some_and(|t| {
            let t = t.to_ascii_lowercase();
            t == "dumb" || t.starts_with("vt52") || t.starts_with("vt1") || t.starts_with("vt2")
        });
        Theme {
            color: !no_color && !mono_term,
        }
    }
}

/// The severity marker column: readable without colour.
pub fn severity_marker(severity: Severity) -> &'static str {
    match severity {
        Severity::Benign => "  ",
        Severity::Suspicious => "! ",
        Severity::Malicious => "!!",
    }
}

/// Kind of status message (the footer styles them differently).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum StatusKind {
    Info,
    Error,
    Prompt,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub text: String,
    pub kind: StatusKind,
    pub at: DateTime<Utc>,
}

/// The outcome of the last rules reload, for the header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReloadResult {
    pub at: DateTime<Utc>,
    pub ok: bool,
    /// The summary or the error.
    pub text: String,
}

/// Input modes: what the next key means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    Normal,
    /// Typing the filter after `/`.
    Filter,
    /// `p` was pressed: the next key picks a probe family.
    ChooseProbe,
    /// `B` asked y/N for this target.
    ConfirmEnforce {
        target: BlockTarget,
        what: String,
    },
}

/// The detail view of one event.
#[derive(Clone, Debug, Default)]
pub struct Detail {
    pub entry: Option<Entry>,
    pub scroll: usize,
    /// Lines the view had at the last draw (scrolling stops at the last one).
    pub lines: Cell<usize>,
}

/// Events per second of one family.
#[derive(Clone, Debug, Default)]
pub struct Rate {
    /// Events counted in the current second.
    pub current: u64,
    /// Completed seconds, oldest first.
    pub history: VecDeque<u64>,
}

impl Rate {
    /// Events in the last completed second.
    pub fn per_second(&self) -> u64 {
        self.history.back().copied().unwrap_or(0)
    }

    fn roll(&mut self, seconds: i64) {
        for i in 0..seconds.clamp(0, RATE_HISTORY as i64) {
            if self.history.len() >= RATE_HISTORY {
                self.history.pop_front();
            }
            let value = if i == 0 { self.current } else { 0 };
            self.history.push_back(value);
        }
        self.current = 0;
    }
}

/// The whole UI state.
pub struct App {
    pub panes: [Pane; 3],
    /// Suspicious and malicious events, newest last.
    pub alerts: VecDeque<Entry>,
    pub focus: PaneId,
    pub mode: Mode,
    pub filter: String,
    pub suspicious_only: bool,
    /// The last arrival shown when the display was paused.
    pub paused_at: Option<u64>,
    pub help: bool,
    pub detail: Option<Detail>,
    pub rules_pane: bool,
    pub rules: Vec<RuleInfo>,
    pub rule_selected: usize,
    pub rule_count: usize,
    pub last_reload: Option<ReloadResult>,
    pub status: Option<Status>,
    pub blocked: HashMap<BlockTarget, BlockMark>,
    pub rates: [Rate; 4],
    pub drops: u64,
    pub probe_states: [ProbeState; 4],
    /// Wall-clock time of the last tick.
    pub now: DateTime<Utc>,
    /// How times are shown (the local offset at start; UTC in tests).
    pub offset: FixedOffset,
    pub theme: Theme,
    /// Events received since start.
    pub received: u64,
    next_seq: u64,
    quit: bool,
    dirty: bool,
    controls: Controls,
}

impl App {
    pub fn new(controls: Controls, theme: Theme, offset: FixedOffset, now: DateTime<Utc>) -> App {
        let mut app = App {
            panes: Default::default(),
            alerts: VecDeque::new(),
            focus: PaneId::Process,
            mode: Mode::Normal,
            filter: String::new(),
            suspicious_only: false,
            paused_at: None,
            help: false,
            detail: None,
            rules_pane: false,
            rules: Vec::new(),
            rule_selected: 0,
            rule_count: 0,
            last_reload: None,
            status: None,
            blocked: HashMap::new(),
            rates: Default::default(),
            drops: 0,
            probe_states: [ProbeState::On; 4],
            now,
            offset,
            theme,
            received: 0,
            next_seq: 1,
            quit: false,
            dirty: true,
            controls,
        };
        app.refresh_slow();
        app
    }

    pub fn should_quit(&self) -> bool {
        self.quit
    }

    /// Events the kernel dropped since start, read now.
    pub fn kernel_drops(&self) -> u64 {
        self.controls.probes.drops()
    }

    /// Whether the screen is out of date; clears the flag.
    pub fn needs_redraw(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    pub fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    pub fn pane(&self, id: PaneId) -> &Pane {
        &self.panes[id.index()]
    }

    /// Events that arrived since the display was paused.
    pub fn arrived_while_paused(&self) -> u64 {
        self.paused_at
            .map_or(0, |p| self.next_seq.saturating_sub(p).saturating_sub(1))
    }

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

    /// Applies one loop event.
    pub fn handle(&mut self, event: Event) {
        match event {
            Event::Tick(now) => self.tick(now),
            Event::Input(TermEvent::Key(key)) => {
                if let Some(action) = self.action_for_key(key) {
                    self.update(action);
                }
            }
            Event::Input(TermEvent::Resize(..)) => self.dirty = true,
            Event::Input(_) => {}
            Event::Kernel(events) => self.ingest(events),
            Event::Log(line) => self.log_line(&line),
        }
    }

    /// Stores a batch of analysed events (`Vec::drain` keeps the caller's buffer for the next
    /// batch: freeing a large buffer per batch made glibc consolidate its whole heap).
    pub fn ingest(&mut self, events: impl IntoIterator<Item = SecEvent>) {
        let before = self.next_seq;
        for event in events {
            let seq = self.next_seq;
            self.next_seq += 1;
            self.received += 1;
            self.rates[family_index(event.family())].current += 1;
            let visible = self.matches(&event);
            let entry = if event.analysis.severity >= Severity::Suspicious {
                let entry = Entry {
                    seq,
                    event: Stored::Shared(Arc::new(event)),
                    visible,
                };
                if self.alerts.len() >= ALERT_CAPACITY {
                    self.alerts.pop_front();
                }
                self.alerts.push_back(entry.clone());
                entry
            } else {
                Entry {
                    seq,
                    event: Stored::Owned(event),
                    visible,
                }
            };
            self.panes[PaneId::for_event(entry.event.event_type).index()].push(entry);
        }
        if self.next_seq != before {
            self.dirty = true;
        }
    }

    /// Whether an event passes the filter and the suspicious-only switch.
    pub fn matches(&self, event: &SecEvent) -> bool {
        if self.suspicious_only && event.analysis.severity < Severity::Suspicious {
            return false;
        }
        self.filter.is_empty() || filter_matches(&self.filter, event)
    }

    fn refilter(&mut self) {
        let filter = std::mem::take(&mut self.filter);
        let suspicious_only = self.suspicious_only;
        let keep = |event: &SecEvent| {
            (!suspicious_only || event.analysis.severity >= Severity::Suspicious)
                && (filter.is_empty() || filter_matches(&filter, event))
        };
        for pane in &mut self.panes {
            for entry in &mut pane.entries {
                entry.visible = keep(&entry.event);
            }
            pane.follow();
        }
        for entry in &mut self.alerts {
            entry.visible = keep(&entry.event);
        }
        self.filter = filter;
        self.dirty = true;
    }

    fn tick(&mut self, now: DateTime<Utc>) {
        let elapsed = now.timestamp() - self.now.timestamp();
        if elapsed != 0 {
            // Once a second: the clock, rates, drops, rule count.
            for rate in &mut self.rates {
                rate.roll(elapsed.max(1));
            }
            self.now = now;
            self.refresh_slow();
            self.dirty = true;
        } else {
            self.now = now;
        }
        if let Some(status) = &self.status
            && status.kind != StatusKind::Prompt
            && (now - status.at).num_seconds() >= STATUS_SECONDS
        {
            self.status = None;
            self.dirty = true;
        }
    }

    /// What is read from the kernel and the engine once a second.
    fn refresh_slow(&mut self) {
        self.drops = self.controls.probes.drops();
        for family in FAMILY_KEYS {
            self.probe_states[family_index(family)] = self.controls.probes.state(family);
        }
        self.rule_count = self.controls.rules.count();
        if self.rules_pane {
            self.refresh_rules();
        }
    }

    fn refresh_rules(&mut self) {
        self.rules = self.controls.rules.list();
        self.rule_count = self.rules.len();
        self.rule_selected = self.rule_selected.min(self.rules.len().saturating_sub(1));
    }

    /// A line written to stderr while the UI runs.
    fn log_line(&mut self, line: &str) {
        let text = line.strip_prefix("secmon: ").unwrap_or(line).trim_end();
        if text.is_empty() {
            return;
        }
        // The rule watcher's report after an automatic reload.
        if let Some(summary) = text.strip_prefix("rules reloaded: ") {
            self.record_reload(Ok(summary.to_string()));
            return;
        }
        if let Some(error) = text.strip_prefix("rules reload failed: ") {
            self.record_reload(Err(error.to_string()));
            return;
        }
        let kind = if text.contains("error") || text.contains("warning") {
            StatusKind::Error
        } else {
            StatusKind::Info
        };
        self.set_status(text.to_string(), kind);
    }

    pub fn set_status(&mut self, text: String, kind: StatusKind) {
        self.status = Some(Status {
            text,
            kind,
            at: self.now,
        });
        self.dirty = true;
    }

    fn record_reload(&mut self, result: Result<String, String>) {
        let previous = self.rule_count;
        self.rule_count = self.controls.rules.count();
        let (ok, text, status, kind) = match result {
            Ok(summary) => (
                true,
                summary.clone(),
                format!("rules reloaded: {summary}"),
                StatusKind::Info,
            ),
            Err(error) => {
                let kept = if error.contains("keeping the previous") {
                    error.clone()
                } else {
                    format!("{error}; keeping the previous {previous} rules")
                };
                (
                    false,
                    error,
                    format!("rules reload failed: {kept}"),
                    StatusKind::Error,
                )
            }
        };
        self.last_reload = Some(ReloadResult {
            at: self.now,
            ok,
            text,
        });
        if self.rules_pane {
            self.refresh_rules();
        }
        self.set_status(status, kind);
    }

    /// The action a key stands for in the current mode and view.
    pub fn action_for_key(&self, key: KeyEvent) -> Option<Action> {
        if key.kind == KeyEventKind::Release {
            return None;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && matches!(key.code, KeyCode::Char('c') | KeyCode::Char('C')) {
            return Some(Action::Quit);
        }
        match &self.mode {
            Mode::Filter => {
                return match key.code {
                    KeyCode::Enter => Some(Action::FilterAccept),
                    KeyCode::Esc => Some(Action::ClearFilter),
                    KeyCode::Backspace => Some(Action::FilterBackspace),
                    KeyCode::Char('u') if ctrl => Some(Action::FilterClearText),
                    KeyCode::Char(c) if !ctrl => Some(Action::FilterChar(c)),
                    _ => None,
                };
            }
            Mode::ChooseProbe => {
                return Some(match key.code {
                    KeyCode::Char('1' | 'p') => Action::ToggleFamily(Family::Process),
                    KeyCode::Char('2' | 'f') => Action::ToggleFamily(Family::File),
                    KeyCode::Char('3' | 'n') => Action::ToggleFamily(Family::Network),
                    KeyCode::Char('4' | 'k') => Action::ToggleFamily(Family::Kernel),
                    _ => Action::Cancel,
                });
            }
            Mode::ConfirmEnforce { .. } => {
                return Some(Action::Confirm(matches!(
                    key.code,
                    KeyCode::Char('y' | 'Y')
                )));
            }
            Mode::Normal => {}
        }
        if self.help {
            // Any key closes the help.
            return Some(Action::ToggleHelp);
        }
        if self.detail.is_some() {
            return match key.code {
                KeyCode::Esc | KeyCode::Enter | KeyCode::Char('q') => Some(Action::Close),
                KeyCode::Up | KeyCode::Char('k') => Some(Action::SelectNewer(1)),
                KeyCode::Down | KeyCode::Char('j') => Some(Action::SelectOlder(1)),
                KeyCode::PageUp => Some(Action::SelectNewer(PAGE_ROWS)),
                KeyCode::PageDown => Some(Action::SelectOlder(PAGE_ROWS)),
                KeyCode::Char('b') => Some(Action::SimulateBlock),
                KeyCode::Char('B') => Some(Action::AskEnforce),
                KeyCode::Char('?') => Some(Action::ToggleHelp),
                _ => None,
            };
        }
        if self.rules_pane {
            return match key.code {
                KeyCode::Esc | KeyCode::Char('R') => Some(Action::ToggleRulesPane),
                KeyCode::Char('q') => Some(Action::Quit),
                KeyCode::Up | KeyCode::Char('k') => Some(Action::SelectNewer(1)),
                KeyCode::Down | KeyCode::Char('j') => Some(Action::SelectOlder(1)),
                KeyCode::PageUp => Some(Action::SelectNewer(PAGE_ROWS)),
                KeyCode::PageDown => Some(Action::SelectOlder(PAGE_ROWS)),
                KeyCode::Home | KeyCode::Char('g') => Some(Action::SelectNewest),
                KeyCode::End | KeyCode::Char('G') => Some(Action::SelectOldest),
                KeyCode::Char(' ') | KeyCode::Enter => Some(Action::ToggleSelectedRule),
                KeyCode::Char('r') => Some(Action::ReloadRules),
                KeyCode::Char('?') => Some(Action::ToggleHelp),
                KeyCode::Char(c @ '1'..='4') => family_key(c).map(Action::ToggleFamily),
                _ => None,
            };
        }
        Some(match key.code {
            KeyCode::Char('q') => Action::Quit,
            KeyCode::Char('?') => Action::ToggleHelp,
            KeyCode::Tab => Action::FocusNext,
            KeyCode::BackTab => Action::FocusPrev,
            KeyCode::Up | KeyCode::Char('k') => Action::SelectNewer(1),
            KeyCode::Down | KeyCode::Char('j') => Action::SelectOlder(1),
            KeyCode::PageUp => Action::SelectNewer(PAGE_ROWS),
            KeyCode::PageDown => Action::SelectOlder(PAGE_ROWS),
            KeyCode::Home | KeyCode::Char('g') => Action::SelectNewest,
            KeyCode::End | KeyCode::Char('G') => Action::SelectOldest,
            KeyCode::Enter => Action::OpenDetail,
            KeyCode::Esc => Action::ClearFilter,
            KeyCode::Char(c @ '1'..='4') => Action::ToggleFamily(family_key(c)?),
            KeyCode::Char('p') => Action::ChooseProbe,
            KeyCode::Char('r') => Action::ReloadRules,
            KeyCode::Char('R') => Action::ToggleRulesPane,
            KeyCode::Char('b') => Action::SimulateBlock,
            KeyCode::Char('B') => Action::AskEnforce,
            KeyCode::Char('/') => Action::StartFilter,
            KeyCode::Char('f') => Action::ToggleSuspiciousOnly,
            KeyCode::Char(' ') => Action::TogglePause,
            KeyCode::Char('c') => Action::Clear,
            _ => return None,
        })
    }

    /// Applies an action.
    pub fn update(&mut self, action: Action) {
        self.dirty = true;
        match action {
            Action::Quit => self.quit = true,
            Action::FocusNext => self.focus = self.focus.next(),
            Action::FocusPrev => self.focus = self.focus.prev(),
            Action::SelectNewer(n) => self.move_selection(-(n as isize)),
            Action::SelectOlder(n) => self.move_selection(n as isize),
            Action::SelectNewest => {
                if self.rules_pane {
                    self.rule_selected = 0;
                } else {
                    self.panes[self.focus.index()].follow();
                }
            }
            Action::SelectOldest => {
                if self.rules_pane {
                    self.rule_selected = self.rules.len().saturating_sub(1);
                } else {
                    let paused = self.paused_at;
                    self.panes[self.focus.index()].select_oldest(paused);
                }
            }
            Action::OpenDetail => self.open_detail(),
            Action::Close => {
                if self.detail.is_some() {
                    self.detail = None;
                } else if self.help {
                    self.help = false;
                } else if self.rules_pane {
                    self.rules_pane = false;
                }
            }
            Action::ToggleFamily(family) => {
                self.mode = Mode::Normal;
                self.toggle_family(family);
            }
            Action::ChooseProbe => {
                self.mode = Mode::ChooseProbe;
                self.set_status(
                    "toggle probes: 1 process  2 file  3 network  4 kernel  (other key cancels)"
                        .to_string(),
                    StatusKind::Prompt,
                );
            }
            Action::ReloadRules => {
                let result = self.controls.rules.reload();
                self.record_reload(result);
            }
            Action::ToggleRulesPane => {
                self.rules_pane = !self.rules_pane;
                if self.rules_pane {
                    self.detail = None;
                    self.refresh_rules();
                }
            }
            Action::ToggleSelectedRule => self.toggle_selected_rule(),
            Action::SimulateBlock => self.simulate_block(),
            Action::AskEnforce => self.ask_enforce(),
            Action::Confirm(yes) => self.confirm(yes),
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
            Action::FilterChar(c) => {
                if !c.is_control() {
                    self.filter.push(c);
                    self.refilter();
                }
            }
            Action::FilterBackspace => {
                if self.filter.pop().is_some() {
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
            Action::TogglePause => {
                self.paused_at = match self.paused_at {
                    Some(_) => None,
                    None => Some(self.next_seq - 1),
                };
            }
            Action::Clear => {
                for pane in &mut self.panes {
                    pane.entries.clear();
                    pane.follow();
                }
                self.alerts.clear();
                if self.paused_at.is_some() {
                    self.paused_at = Some(self.next_seq - 1);
                }
                self.set_status("cleared".to_string(), StatusKind::Info);
            }
            Action::ToggleHelp => self.help = !self.help,
            Action::Cancel => {
                self.mode = Mode::Normal;
                self.status = None;
            }
        }
    }

    fn move_selection(&mut self, delta: isize) {
        if let Some(detail) = &mut self.detail {
            let last = detail.lines.get().saturating_sub(1);
            detail.scroll = detail.scroll.saturating_add_signed(delta).min(last);
            return;
        }
        if self.rules_pane {
            let last = self.rules.len().saturating_sub(1);
            self.rule_selected = self.rule_selected.saturating_add_signed(delta).min(last);
            return;
        }
        let paused = self.paused_at;
        self.panes[self.focus.index()].move_selection(paused, delta);
    }

    /// The event `Enter`, `b` and `B` act on: the detail view's, else the focused pane's
    /// selection, else its newest shown event.
    pub fn target_entry(&self) -> Option<&Entry> {
        if let Some(entry) = self.detail.as_ref().and_then(|d| d.entry.as_ref()) {
            return Some(entry);
        }
        let pane = self.pane(self.focus);
        pane.selected_entry(self.paused_at)
            .or_else(|| pane.shown(self.paused_at).next())
    }

    fn open_detail(&mut self) {
        match self.target_entry().cloned() {
            Some(entry) => {
                // The detail view shows each matched rule's score from the current list.
                self.refresh_rules();
                self.detail = Some(Detail {
                    entry: Some(entry),
                    scroll: 0,
                    lines: Cell::new(usize::MAX),
                });
            }
            None => self.set_status(
                format!("no event in the {} pane", self.focus.title()),
                StatusKind::Info,
            ),
        }
    }

    fn toggle_family(&mut self, family: Family) {
        let index = family_index(family);
        let state = self.controls.probes.state(family);
        let result = match state {
            ProbeState::Unavailable => {
                let reason = self
                    .controls
                    .probes
                    .unavailable_reason(family)
                    .unwrap_or_default();
                Err(format!(
                    "{family} probes are unavailable on this kernel ({reason})"
                ))
            }
            ProbeState::On | ProbeState::Off => {
                let on = state == ProbeState::Off;
                self.controls
                    .probes
                    .set_enabled(family, on)
                    .map(|()| format!("{family} probes {}", if on { "on" } else { "off" }))
                    .map_err(|e| format!("switching {family} probes failed: {e}"))
            }
        };
        self.probe_states[index] = self.controls.probes.state(family);
        match result {
            Ok(text) => self.set_status(text, StatusKind::Info),
            Err(text) => self.set_status(text, StatusKind::Error),
        }
    }

    fn toggle_selected_rule(&mut self) {
        let Some(rule) = self.rules.get(self.rule_selected) else {
            self.set_status("no rules loaded".to_string(), StatusKind::Info);
            return;
        };
        let name = rule.name.clone();
        let enabled = !rule.enabled;
        match self.controls.rules.set_enabled(&name, enabled) {
            Ok(()) => {
                self.refresh_rules();
                let state = if enabled { "enabled" } else { "disabled" };
                self.set_status(format!("rule {name} {state}"), StatusKind::Info);
            }
            Err(e) => self.set_status(format!("rule {name}: {e}"), StatusKind::Error),
        }
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

    fn simulate_block(&mut self) {
        let Some((entry, target)) = self.block_target() else {
            return;
        };
        let what = target.describe(&entry.event);
        let recorded = self.controls.response.simulate_block(&target, &what);
        self.blocked.entry(target).or_insert(BlockMark {
            since: entry.seq,
            what,
        });
        self.set_status(recorded, StatusKind::Info);
    }

    fn ask_enforce(&mut self) {
        let Some((entry, target)) = self.block_target() else {
            return;
        };
        let what = target.describe(&entry.event);
        self.set_status(
            format!("really block {what} in the kernel? [y/N]"),
            StatusKind::Prompt,
        );
        self.mode = Mode::ConfirmEnforce { target, what };
    }

    fn confirm(&mut self, yes: bool) {
        let Mode::ConfirmEnforce { target, what } = std::mem::replace(&mut self.mode, Mode::Normal)
        else {
            return;
        };
        if !yes {
            self.set_status("not blocked".to_string(), StatusKind::Info);
            return;
        }
        match self.controls.response.enforce(&target, &what) {
            Ok(text) => self.set_status(text, StatusKind::Info),
            Err(text) => self.set_status(text, StatusKind::Error),
        }
    }

    /// Rule info by name (for the detail view's scores).
    pub fn rule_info(&self, name: &str) -> Option<&RuleInfo> {
        self.rules.iter().find(|r| r.name == name)
    }
}

fn family_key(c: char) -> Option<Family> {
    let index = c.to_digit(10)?.checked_sub(1)?;
    FAMILY_KEYS.get(index as usize).copied()
}

/// Case-insensitive substring match of the filter against process name, executable, command
/// line, paths and addresses (`ip` and `ip:port`).
pub fn filter_matches(filter: &str, event: &SecEvent) -> bool {
    let hit = |s: &str| contains_ignore_case(s, filter);
    hit(&event.process)
        || hit(&event.exe)
        || hit(&event.cmdline)
        || event.file_path.as_deref().is_some_and(hit)
        || event.new_path.as_deref().is_some_and(hit)
        || address_matches(filter, event.source_ip.as_deref(), event.source_port)
        || address_matches(filter, event.target_ip.as_deref(), event.target_port)
}

fn address_matches(filter: &str, ip: Option<&str>, port: Option<u16>) -> bool {
    let Some(ip) = ip else { return false };
    if contains_ignore_case(ip, filter) {
        return true;
    }
    port.is_some_and(|port| contains_ignore_case(&endpoint(ip, port), filter))
}

/// ASCII-case-insensitive `haystack.contains(needle)`, without allocating.
pub fn contains_ignore_case(haystack: &str, needle: &str) -> bool {
    let (h, n) = (haystack.as_bytes(), needle.as_bytes());
    if n.is_empty() {
        return true;
    }
    if n.len() > h.len() {
        return false;
    }
    h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc as StdArc, Mutex};

    use crossterm::event::KeyEventState;

    use super::*;
    use crate::event::Analysis;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent {
            code,
            modifiers: KeyModifiers::NONE,
            kind: KeyEventKind::Press,
            state: KeyEventState::NONE,
        }
    }

    fn ch(c: char) -> KeyEvent {
        key(KeyCode::Char(c))
    }

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).expect("valid time")
    }

    /// Records what the app asked of the kernel and the rules.
    #[derive(Clone, Default)]
    struct Log(StdArc<Mutex<Vec<String>>>);

    impl Log {
        fn push(&self, s: String) {
            self.0.lock().expect("lock").push(s);
        }
        fn take(&self) -> Vec<String> {
            std::mem::take(&mut *self.0.lock().expect("lock"))
        }
    }

    struct FakeProbes {
        inner: StaticProbes,
        log: Log,
    }

    impl Probes for FakeProbes {
        fn state(&self, family: Family) -> ProbeState {
            self.inner.state(family)
        }
        fn set_enabled(&mut self, family: Family, on: bool) -> Result<(), String> {
            self.log.push(format!("set {family} {on}"));
            self.inner.set_enabled(family, on)
        }
        fn drops(&self) -> u64 {
            7
        }
        fn unavailable_reason(&self, family: Family) -> Option<String> {
            self.inner.unavailable_reason(family)
        }
    }

    struct FakeRules {
        rules: Mutex<Vec<RuleInfo>>,
        fail_reload: bool,
        log: Log,
    }

    impl RuleControl for FakeRules {
        fn count(&self) -> usize {
            self.rules.lock().expect("lock").len()
        }
        fn reload(&self) -> Result<String, String> {
            self.log.push("reload".to_string());
            if self.fail_reload {
                Err("rules/x.json:3:17: expected a value, found `}`".to_string())
            } else {
                Ok(format!("{} rules from 1 files", self.count()))
            }
        }
        fn list(&self) -> Vec<RuleInfo> {
            self.rules.lock().expect("lock").clone()
        }
        fn set_enabled(&self, name: &str, enabled: bool) -> Result<(), String> {
            self.log.push(format!("rule {name} {enabled}"));
            let mut rules = self.rules.lock().expect("lock");
            let rule = rules
                .iter_mut()
                .find(|r| r.name == name)
                .ok_or_else(|| format!("no rule named `{name}`"))?;
            rule.enabled = enabled;
            Ok(())
        }
    }

    fn rule(name: &str) -> RuleInfo {
        RuleInfo {
            name: name.to_string(),
            label: String::new(),
            description: String::new(),
            score: 0.5,
            action: crate::rules::Action::Alert,
            tags: Vec::new(),
            enabled: true,
            hits: 0,
            file: "rules/x.json".into(),
            line: 1,
            event_types: Vec::new(),
        }
    }

    fn app_with(fail_reload: bool, states: [ProbeState; 4]) -> (App, Log) {
        let log = Log::default();
        let controls = Controls {
            probes: Box::new(FakeProbes {
                inner: StaticProbes { states, drops: 0 },
                log: log.clone(),
            }),
            rules: Box::new(FakeRules {
                rules: Mutex::new(vec![rule("a"), rule("b")]),
                fail_reload,
                log: log.clone(),
            }),
            response: Box::new(SimulatedResponse::default()),
        };
        let app = App::new(
            controls,
            Theme { color: true },
            FixedOffset::east_opt(0).expect("offset"),
            t0(),
        );
        (app, log)
    }

    fn app() -> (App, Log) {
        app_with(false, [ProbeState::On; 4])
    }

    fn ev(event_type: EventType, pid: u32, process: &str) -> SecEvent {
        let mut e = SecEvent::new(event_type, t0());
        e.pid = pid;
        e.process = process.to_string();
        e
    }

    fn press(app: &mut App, k: KeyEvent) {
        app.handle(Event::Input(TermEvent::Key(k)));
    }

    fn shown_pids(app: &App, pane: PaneId) -> Vec<u32> {
        app.pane(pane)
            .shown(app.paused_at)
            .map(|e| e.event.pid)
            .collect()
    }

    #[test]
    fn events_go_to_their_pane() {
        let (mut app, _) = app();
        app.ingest(vec![
            ev(EventType::ProcessExec, 1, "a"),
            ev(EventType::FileOpen, 2, "b"),
            ev(EventType::NetConnect, 3, "c"),
            ev(EventType::BpfLoad, 4, "d"),
            ev(EventType::PrivilegeChange, 5, "e"),
        ]);
        assert_eq!(shown_pids(&app, PaneId::Process), vec![5, 4, 1]);
        assert_eq!(shown_pids(&app, PaneId::File), vec![2]);
        assert_eq!(shown_pids(&app, PaneId::Network), vec![3]);
        assert!(app.needs_redraw());
        assert!(!app.needs_redraw(), "the flag clears once drawn");
    }

    #[test]
    fn panes_are_bounded() {
        let (mut app, _) = app();
        let batch: Vec<SecEvent> = (0..PANE_CAPACITY as u32 + 500)
            .map(|i| ev(EventType::FileOpen, i, "x"))
            .collect();
        app.ingest(batch);
        let pane = app.pane(PaneId::File);
        assert_eq!(pane.entries.len(), PANE_CAPACITY);
        assert_eq!(pane.entries.front().map(|e| e.event.pid), Some(500));
        assert_eq!(app.received, PANE_CAPACITY as u64 + 500);
    }

    #[test]
    fn alerts_collect_suspicious_events() {
        let (mut app, _) = app();
        let mut bad = ev(EventType::ProcessExec, 9, "evil");
        bad.analysis = Analysis {
            severity: Severity::Malicious,
            risk_score: 0.9,
            ..Analysis::default()
        };
        app.ingest(vec![ev(EventType::ProcessExec, 1, "ok"), bad]);
        assert_eq!(app.alerts.len(), 1);
        assert_eq!(app.alerts[0].event.pid, 9);
    }

    #[test]
    fn tab_cycles_focus() {
        let (mut app, _) = app();
        assert_eq!(app.focus, PaneId::Process);
        press(&mut app, key(KeyCode::Tab));
        assert_eq!(app.focus, PaneId::File);
        press(&mut app, key(KeyCode::Tab));
        press(&mut app, key(KeyCode::Tab));
        assert_eq!(app.focus, PaneId::Process);
        press(&mut app, key(KeyCode::BackTab));
        assert_eq!(app.focus, PaneId::Network);
    }

    #[test]
    fn selection_moves_and_stays_on_its_event() {
        let (mut app, _) = app();
        app.ingest((1..=5).map(|p| ev(EventType::ProcessExec, p, "p")));
        assert_eq!(app.pane(PaneId::Process).selected, None);
        press(&mut app, ch('j'));
        let selected = |app: &App| {
            app.pane(PaneId::Process)
                .selected_entry(app.paused_at)
                .map(|e| e.event.pid)
        };
        assert_eq!(selected(&app), Some(5), "first step selects the newest");
        press(&mut app, key(KeyCode::Down));
        press(&mut app, ch('j'));
        assert_eq!(selected(&app), Some(3));
        // New events arrive above: the selection stays on the same event.
        app.ingest(vec![ev(EventType::ProcessExec, 6, "p")]);
        assert_eq!(selected(&app), Some(3));
        press(&mut app, ch('k'));
        assert_eq!(selected(&app), Some(4));
        press(&mut app, key(KeyCode::End));
        assert_eq!(selected(&app), Some(1));
        press(&mut app, ch('j'));
        assert_eq!(selected(&app), Some(1), "stops at the oldest");
        press(&mut app, key(KeyCode::Home));
        assert_eq!(
            app.pane(PaneId::Process).selected,
            None,
            "back to following"
        );
        press(&mut app, ch('j'));
        press(&mut app, ch('k'));
        assert_eq!(
            app.pane(PaneId::Process).selected,
            None,
            "up from the newest follows"
        );
    }

    #[test]
    fn window_keeps_the_selection_in_view() {
        let (mut app, _) = app();
        app.ingest((1..=50).map(|p| ev(EventType::FileOpen, p, "p")));
        press(&mut app, key(KeyCode::Tab));
        app.pane(PaneId::File).height.set(10);
        for _ in 0..15 {
            press(&mut app, ch('j'));
        }
        let pane = app.pane(PaneId::File);
        let (start, rows) = pane.window(None, 10);
        assert_eq!(start, 5);
        assert_eq!(rows.len(), 10);
        assert_eq!(rows[9].event.pid, 36, "the selection is the bottom row");
        // New events do not move the view while browsing.
        app.ingest(
            (51..=60)
                .map(|p| ev(EventType::FileOpen, p, "p"))
                .collect::<Vec<_>>(),
        );
        let (_, rows) = app.pane(PaneId::File).window(None, 10);
        assert_eq!(rows[9].event.pid, 36);
        assert_eq!(rows[0].event.pid, 45);
    }

    #[test]
    fn enter_opens_detail_and_esc_closes_it() {
        let (mut app, _) = app();
        press(&mut app, key(KeyCode::Enter));
        assert!(app.detail.is_none(), "nothing to show yet");
        app.ingest(vec![ev(EventType::ProcessExec, 42, "bash")]);
        press(&mut app, key(KeyCode::Enter));
        let pid = app
            .detail
            .as_ref()
            .and_then(|d| d.entry.as_ref())
            .map(|e| e.event.pid);
        assert_eq!(pid, Some(42));
        press(&mut app, ch('j'));
        assert_eq!(app.detail.as_ref().map(|d| d.scroll), Some(1), "j scrolls");
        if let Some(detail) = &app.detail {
            detail.lines.set(3);
        }
        press(&mut app, key(KeyCode::PageDown));
        assert_eq!(
            app.detail.as_ref().map(|d| d.scroll),
            Some(2),
            "up to the last line"
        );
        press(&mut app, ch('k'));
        assert_eq!(app.detail.as_ref().map(|d| d.scroll), Some(1));
        press(&mut app, key(KeyCode::Esc));
        assert!(app.detail.is_none());
        assert!(!app.should_quit());
    }

    #[test]
    fn family_keys_switch_probes() {
        let (mut app, log) = app_with(
            false,
            [
                ProbeState::On,
                ProbeState::On,
                ProbeState::On,
                ProbeState::Unavailable,
            ],
        );
        press(&mut app, ch('2'));
        assert_eq!(log.take(), vec!["set file false"]);
        assert_eq!(app.probe_states[1], ProbeState::Off);
        assert_eq!(
            app.status.as_ref().map(|s| s.text.as_str()),
            Some("file probes off")
        );
        press(&mut app, ch('2'));
        assert_eq!(log.take(), vec!["set file true"]);
        assert_eq!(app.probe_states[1], ProbeState::On);
        // `p` then a choice.
        press(&mut app, ch('p'));
        assert_eq!(app.mode, Mode::ChooseProbe);
        press(&mut app, ch('n'));
        assert_eq!(log.take(), vec!["set network false"]);
        assert_eq!(app.mode, Mode::Normal);
        // Unavailable: nothing is asked of the kernel.
        press(&mut app, ch('4'));
        assert!(log.take().is_empty());
        let status = app.status.clone().expect("a status");
        assert_eq!(status.kind, StatusKind::Error);
        assert!(status.text.contains("unavailable"), "{}", status.text);
    }

    #[test]
    fn reload_reports_success_and_failure() {
        let (mut app, log) = app();
        press(&mut app, ch('r'));
        assert_eq!(log.take(), vec!["reload"]);
        let reload = app.last_reload.clone().expect("recorded");
        assert!(reload.ok);
        assert_eq!(
            app.status.as_ref().map(|s| s.text.as_str()),
            Some("rules reloaded: 2 rules from 1 files")
        );

        let (mut app, _) = app_with(true, [ProbeState::On; 4]);
        press(&mut app, ch('r'));
        let reload = app.last_reload.clone().expect("recorded");
        assert!(!reload.ok);
        let status = app.status.clone().expect("a status");
        assert_eq!(status.kind, StatusKind::Error);
        assert_eq!(
            status.text,
            "rules reload failed: rules/x.json:3:17: expected a value, found `}`; keeping the \
             previous 2 rules"
        );
    }

    #[test]
    fn watcher_reports_become_reload_results() {
        let (mut app, _) = app();
        app.handle(Event::Log(
            "secmon: rules reloaded: 2 rules from 1 files".into(),
        ));
        assert!(app.last_reload.as_ref().is_some_and(|r| r.ok));
        app.handle(Event::Log(
            "secmon: rules reload failed: x.json:1:2: bad; keeping the previous 2 rules".into(),
        ));
        assert!(app.last_reload.as_ref().is_some_and(|r| !r.ok));
        assert_eq!(
            app.status.as_ref().map(|s| s.text.as_str()),
            Some("rules reload failed: x.json:1:2: bad; keeping the previous 2 rules")
        );
        app.handle(Event::Log("secmon: warning: something".into()));
        assert_eq!(app.status.as_ref().map(|s| s.kind), Some(StatusKind::Error));
    }

    #[test]
    fn rules_pane_toggles_rules() {
        let (mut app, log) = app();
        press(&mut app, ch('R'));
        assert!(app.rules_pane);
        assert_eq!(app.rules.len(), 2);
        press(&mut app, ch(' '));
        assert_eq!(log.take(), vec!["rule a false"]);
        assert!(!app.rules[0].enabled);
        assert!(
            app.paused_at.is_none(),
            "space toggles the rule, not the pause"
        );
        press(&mut app, ch('j'));
        press(&mut app, ch(' '));
        assert_eq!(log.take(), vec!["rule b false"]);
        press(&mut app, ch('k'));
        press(&mut app, ch(' '));
        assert_eq!(log.take(), vec!["rule a true"]);
        assert!(app.rules[0].enabled);
        press(&mut app, key(KeyCode::Esc));
        assert!(!app.rules_pane);
    }

    #[test]
    fn block_marks_the_target_from_then_on() {
        let (mut app, _) = app();
        app.ingest(vec![
            ev(EventType::ProcessExec, 10, "early"),
            ev(EventType::ProcessExec, 11, "other"),
            ev(EventType::ProcessExec, 10, "sel"),
        ]);
        press(&mut app, ch('j'));
        press(&mut app, ch('b'));
        assert!(app.blocked.contains_key(&BlockTarget::Process(10)));
        assert!(
            app.status
                .as_ref()
                .is_some_and(|s| s.text.starts_with("would block process 10 (sel)"))
        );
        app.ingest(vec![
            ev(EventType::FileOpen, 10, "sel"),
            ev(EventType::FileOpen, 11, "other"),
        ]);
        let marked = |app: &App, pane: PaneId| -> Vec<(u32, bool)> {
            app.pane(pane)
                .shown(None)
                .map(|e| (e.event.pid, app.block_mark(e).is_some()))
                .collect()
        };
        assert_eq!(
            marked(&app, PaneId::Process),
            vec![(10, true), (11, false), (10, false)],
            "the event and later ones, not earlier ones"
        );
        assert_eq!(marked(&app, PaneId::File), vec![(11, false), (10, true)]);
    }

    #[test]
    fn block_of_a_connection() {
        let (mut app, _) = app();
        let mut conn = ev(EventType::NetConnect, 20, "curl");
        conn.target_ip = Some("10.0.0.1".into());
        conn.target_port = Some(443);
        conn.protocol = Some("tcp".into());
        app.ingest(vec![conn.clone()]);
        press(&mut app, key(KeyCode::Tab));
        press(&mut app, key(KeyCode::Tab));
        press(&mut app, ch('b'));
        let target = BlockTarget::Connection {
            ip: "10.0.0.1".into(),
            port: 443,
        };
        assert_eq!(
            app.blocked.get(&target).map(|m| m.what.as_str()),
            Some("tcp connection to 10.0.0.1:443")
        );
        conn.pid = 21;
        app.ingest(vec![conn]);
        let pane = app.pane(PaneId::Network);
        assert!(pane.shown(None).all(|e| app.block_mark(e).is_some()));
    }

    #[test]
    fn real_enforcement_asks_then_refuses() {
        let (mut app, _) = app();
        app.ingest(vec![ev(EventType::ProcessExec, 10, "x")]);
        press(&mut app, ch('B'));
        assert!(matches!(app.mode, Mode::ConfirmEnforce { .. }));
        assert!(
            app.status
                .as_ref()
                .is_some_and(|s| s.kind == StatusKind::Prompt && s.text.ends_with("[y/N]"))
        );
        press(&mut app, ch('n'));
        assert_eq!(app.mode, Mode::Normal);
        assert_eq!(
            app.status.as_ref().map(|s| s.text.as_str()),
            Some("not blocked")
        );
        press(&mut app, ch('B'));
        press(&mut app, ch('y'));
        assert_eq!(
            app.status.as_ref().map(|s| s.text.as_str()),
            Some(NO_ENFORCEMENT)
        );
        assert!(
            app.blocked.is_empty(),
            "a refused enforcement marks nothing"
        );
        assert!(!app.should_quit(), "q in the prompt did not quit");
    }

    #[test]
    fn filter_by_name_path_and_address() {
        let (mut app, _) = app();
        let mut open = ev(EventType::FileOpen, 1, "cat");
        open.file_path = Some("/etc/Shadow".into());
        let mut conn = ev(EventType::NetConnect, 2, "curl");
        conn.target_ip = Some("10.1.2.3".into());
        conn.target_port = Some(8443);
        app.ingest(vec![open, conn, ev(EventType::ProcessExec, 3, "bash")]);
        press(&mut app, ch('/'));
        assert_eq!(app.mode, Mode::Filter);
        for c in "shadow".chars() {
            press(&mut app, ch(c));
        }
        assert_eq!(app.filter, "shadow");
        assert_eq!(shown_pids(&app, PaneId::File), vec![1]);
        assert!(shown_pids(&app, PaneId::Process).is_empty());
        press(&mut app, key(KeyCode::Enter));
        assert_eq!(app.mode, Mode::Normal);
        // q in filter mode types; in normal mode it would quit.
        press(&mut app, ch('/'));
        press(
            &mut app,
            KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL),
        );
        for c in "3:8443".chars() {
            press(&mut app, ch(c));
        }
        assert_eq!(shown_pids(&app, PaneId::Network), vec![2]);
        press(&mut app, key(KeyCode::Backspace));
        assert_eq!(app.filter, "3:844");
        // New events are filtered as they arrive.
        app.ingest(vec![ev(EventType::ProcessExec, 4, "bash")]);
        assert!(shown_pids(&app, PaneId::Process).is_empty());
        press(&mut app, key(KeyCode::Esc));
        assert_eq!(app.filter, "");
        assert_eq!(shown_pids(&app, PaneId::Process), vec![4, 3]);
        // q while typing is text.
        press(&mut app, ch('/'));
        press(&mut app, ch('q'));
        assert!(!app.should_quit());
        assert_eq!(app.filter, "q");
    }

    #[test]
    fn suspicious_only() {
        let (mut app, _) = app();
        let mut bad = ev(EventType::ProcessExec, 2, "x");
        bad.analysis.severity = Severity::Suspicious;
        app.ingest(vec![ev(EventType::ProcessExec, 1, "ok"), bad]);
        press(&mut app, ch('f'));
        assert_eq!(shown_pids(&app, PaneId::Process), vec![2]);
        press(&mut app, ch('f'));
        assert_eq!(shown_pids(&app, PaneId::Process), vec![2, 1]);
    }

    #[test]
    fn pause_freezes_the_display_and_counts_arrivals() {
        let (mut app, _) = app();
        app.ingest(vec![ev(EventType::ProcessExec, 1, "a")]);
        press(&mut app, ch(' '));
        app.ingest(vec![
            ev(EventType::ProcessExec, 2, "b"),
            ev(EventType::FileOpen, 3, "c"),
        ]);
        assert_eq!(shown_pids(&app, PaneId::Process), vec![1]);
        assert!(shown_pids(&app, PaneId::File).is_empty());
        assert_eq!(app.arrived_while_paused(), 2);
        assert_eq!(app.pane(PaneId::Process).entries.len(), 2, "still stored");
        press(&mut app, ch(' '));
        assert_eq!(shown_pids(&app, PaneId::Process), vec![2, 1]);
        assert_eq!(app.arrived_while_paused(), 0);
    }

    #[test]
    fn clear_empties_panes_and_alerts() {
        let (mut app, _) = app();
        let mut bad = ev(EventType::FileOpen, 2, "x");
        bad.analysis.severity = Severity::Malicious;
        app.ingest(vec![ev(EventType::ProcessExec, 1, "a"), bad]);
        press(&mut app, ch('c'));
        assert!(app.panes.iter().all(|p| p.entries.is_empty()));
        assert!(app.alerts.is_empty());
    }

    #[test]
    fn help_opens_and_any_key_closes() {
        let (mut app, _) = app();
        press(&mut app, ch('?'));
        assert!(app.help);
        press(&mut app, ch('q'));
        assert!(!app.help);
        assert!(!app.should_quit(), "q closes the help first");
        press(&mut app, ch('q'));
        assert!(app.should_quit());
    }

    #[test]
    fn ctrl_c_quits_from_any_mode() {
        for setup in ["", "/", "?", "R", "p"] {
            let (mut app, _) = app();
            for c in setup.chars() {
                press(&mut app, ch(c));
            }
            press(
                &mut app,
                KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL),
            );
            assert!(app.should_quit(), "after {setup:?}");
        }
    }

    #[test]
    fn ticks_roll_rates_and_expire_status() {
        let (mut app, _) = app();
        app.ingest(vec![
            ev(EventType::ProcessExec, 1, "a"),
            ev(EventType::FileOpen, 1, "a"),
            ev(EventType::FileOpen, 1, "a"),
        ]);
        app.handle(Event::Tick(t0() + chrono::TimeDelta::milliseconds(500)));
        assert_eq!(app.rates[1].per_second(), 0, "the second is not over");
        app.handle(Event::Tick(t0() + chrono::TimeDelta::seconds(1)));
        assert_eq!(app.rates[0].per_second(), 1);
        assert_eq!(app.rates[1].per_second(), 2);
        assert_eq!(app.drops, 7);
        app.handle(Event::Tick(t0() + chrono::TimeDelta::seconds(4)));
        assert_eq!(app.rates[1].per_second(), 0);
        assert_eq!(app.rates[1].history.len(), 4);
        app.set_status("x".into(), StatusKind::Info);
        app.handle(Event::Tick(t0() + chrono::TimeDelta::seconds(20)));
        assert!(app.status.is_none());
        assert!(app.rates[1].history.len() <= RATE_HISTORY);
    }

    #[test]
    fn release_events_are_ignored() {
        let (app, _) = app();
        let mut k = ch('q');
        k.kind = KeyEventKind::Release;
        assert_eq!(app.action_for_key(k), None);
    }

    #[test]
    fn theme_from_environment() {
        use std::ffi::OsStr;
        assert!(Theme::from_vars(None, Some("xterm-256color")).color);
        assert!(!Theme::from_vars(Some(OsStr::new("1")), Some("xterm")).color);
        assert!(Theme::from_vars(Some(OsStr::new("")), Some("xterm")).color);
        assert!(!Theme::from_vars(None, Some("vt100")).color);
        assert!(!Theme::from_vars(None, Some("dumb")).color);
    }

    #[test]
    fn case_insensitive_contains() {
        assert!(contains_ignore_case("/etc/Passwd", "passwd"));
        assert!(contains_ignore_case("abc", ""));
        assert!(!contains_ignore_case("ab", "abc"));
        assert!(contains_ignore_case("日本/x", "/X"));
    }

    #[test]
    fn markers_read_without_colour() {
        assert_eq!(severity_marker(Severity::Benign), "  ");
        assert_eq!(severity_marker(Severity::Suspicious), "! ");
        assert_eq!(severity_marker(Severity::Malicious), "!!");
    }
}
