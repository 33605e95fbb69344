//! The terminal UI's state and its transitions, without a terminal.
//!
//! One [`App`] owns everything the screen shows. The event loop ([`crate::tui`]) feeds it
//! [`Event`]s — key presses, batches of analysed kernel events, ticks, log lines — and draws it
//! with [`crate::ui::draw`] when [`App::needs_redraw`] says something changed. Key presses
//! become [`Action`]s ([`App::action_for_key`]) and [`App::update`] applies them; both are
//! unit-tested below without a terminal.
//!
//! The kernel, the rule engine and the response layer are reached through three small traits
//! ([`controls`]), so the state machine can be driven with fakes: [`Probes`] (the capture's
//! family switches), [`RuleControl`] (reload, per-rule enable, list) and [`Response`]
//! (simulated and real blocking, the deny entries).
mod blocks;
mod controls;
mod history;

pub use blocks::BlocksView;
pub use history::{
    DEFAULT_HISTORY_QUERY, HISTORY_MAX_ROWS, HISTORY_PAGE, HISTORY_SEQ, HistoryReply,
    HistoryRequest, HistorySource, HistoryView, NoHistory,
};

pub use controls::{
    Controls, ENFORCE_OFF, EnforcePlan, ProbeState, Probes, REPLAY_NO_PROBES, ReplayProbes,
    Response, ResponseRecord, RuleControl, SimulatedResponse, StaticProbes, deny_target,
};

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::ops::Deref;
use std::sync::Arc;

use crate::losses::LossCounts;

use chrono::{DateTime, FixedOffset, Utc};
use crossterm::event::{Event as TermEvent, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::event::{AddressText, Event as SecEvent, EventType, Family, Severity};
use crate::rules::RuleInfo;
use controls::family_index;

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
    /// A page of the history view's query.
    History(HistoryReply),
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
    /// `D`: the kernel's deny entries.
    ToggleBlocksPane,
    /// Removes the selected deny entry.
    UnblockSelected,
    /// `h`: the stored history.
    ToggleHistory,
    /// `/` in the history view: edit its query.
    EditHistoryQuery,
    HistoryQueryChar(char),
    HistoryQueryBackspace,
    /// Ctrl-U: empties the query being edited.
    HistoryQueryClear,
    /// Runs the edited query.
    RunHistoryQuery,
    /// Leaves the query as it was.
    CancelHistoryQuery,
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

/// What the body of the screen shows.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum View {
    /// The three live event panes.
    #[default]
    Live,
    /// `R`: every rule, enabled or not.
    Rules,
    /// `D`: the kernel's deny entries.
    Blocks,
    /// `h`: the stored history.
    History,
}

/// Input modes: what the next key means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    Normal,
    /// Typing the filter after `/`.
    Filter,
    /// `p` was pressed: the next key picks a probe family.
    ChooseProbe,
    /// `B` asked y/N for this plan.
    ConfirmEnforce(EnforcePlan),
    /// Editing the history view's query after `/`.
    HistoryQuery,
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
    /// What the body of the screen shows.
    pub view: View,
    pub blocks: BlocksView,
    pub history: HistoryView,
    pub rules: Vec<RuleInfo>,
    pub rule_selected: usize,
    pub rule_count: usize,
    pub last_reload: Option<ReloadResult>,
    pub status: Option<Status>,
    pub blocked: HashMap<BlockTarget, BlockMark>,
    pub rates: [Rate; 4],
    /// Every loss since start, by reason (read once a second).
    pub losses: LossCounts,
    /// Live deny entries in the kernel (read once a second).
    pub deny_count: usize,
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
            view: View::Live,
            blocks: BlocksView::default(),
            history: HistoryView::default(),
            rules: Vec::new(),
            rule_selected: 0,
            rule_count: 0,
            last_reload: None,
            status: None,
            blocked: HashMap::new(),
            rates: Default::default(),
            losses: LossCounts::default(),
            deny_count: 0,
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

    /// Every loss since start, the kernel's read now.
    pub fn losses_now(&self) -> LossCounts {
        self.controls
            .probes
            .kernel_losses()
            .record(&self.controls.losses);
        self.controls.losses.snapshot()
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
            Event::History(reply) => self.history_reply(reply),
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
        self.losses = self.losses_now();
        for family in FAMILY_KEYS {
            self.probe_states[family_index(family)] = self.controls.probes.state(family);
        }
        self.rule_count = self.controls.rules.count();
        self.deny_count = self.controls.response.denies().map_or(0, |d| d.len());
        match self.view {
            View::Rules => self.refresh_rules(),
            View::Blocks => self.refresh_denies(),
            View::Live | View::History => {}
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
        if self.view == View::Rules {
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
            Mode::ConfirmEnforce(_) => {
                return Some(Action::Confirm(matches!(
                    key.code,
                    KeyCode::Char('y' | 'Y')
                )));
            }
            Mode::HistoryQuery => {
                return match key.code {
                    KeyCode::Enter => Some(Action::RunHistoryQuery),
                    KeyCode::Esc => Some(Action::CancelHistoryQuery),
                    KeyCode::Backspace => Some(Action::HistoryQueryBackspace),
                    KeyCode::Char('u') if ctrl => Some(Action::HistoryQueryClear),
                    KeyCode::Char(c) if !ctrl => Some(Action::HistoryQueryChar(c)),
                    _ => None,
                };
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
        if let Some(action) = navigation_action(key.code) {
            return Some(action);
        }
        // The views' keys open (or, pressed again, close) their view from anywhere.
        match key.code {
            KeyCode::Char('R') => return Some(Action::ToggleRulesPane),
            KeyCode::Char('D') => return Some(Action::ToggleBlocksPane),
            KeyCode::Char('h') => return Some(Action::ToggleHistory),
            _ => {}
        }
        match self.view {
            View::Rules => {
                return match key.code {
                    KeyCode::Esc | KeyCode::Char('q') => Some(Action::ToggleRulesPane),
                    KeyCode::Char(' ') | KeyCode::Enter => Some(Action::ToggleSelectedRule),
                    KeyCode::Char('r') => Some(Action::ReloadRules),
                    KeyCode::Char('?') => Some(Action::ToggleHelp),
                    KeyCode::Char(c @ '1'..='4') => family_key(c).map(Action::ToggleFamily),
                    _ => None,
                };
            }
            View::Blocks => {
                return match key.code {
                    KeyCode::Esc | KeyCode::Char('q') => Some(Action::ToggleBlocksPane),
                    KeyCode::Char('u') | KeyCode::Delete => Some(Action::UnblockSelected),
                    KeyCode::Char('?') => Some(Action::ToggleHelp),
                    _ => None,
                };
            }
            View::History => {
                return match key.code {
                    KeyCode::Esc | KeyCode::Char('q') => Some(Action::ToggleHistory),
                    KeyCode::Char('/') => Some(Action::EditHistoryQuery),
                    KeyCode::Char('r') => Some(Action::RunHistoryQuery),
                    KeyCode::Enter => Some(Action::OpenDetail),
                    KeyCode::Char('?') => Some(Action::ToggleHelp),
                    _ => None,
                };
            }
            View::Live => {}
        }
        Some(match key.code {
            KeyCode::Char('q') => Action::Quit,
            KeyCode::Char('?') => Action::ToggleHelp,
            KeyCode::Tab => Action::FocusNext,
            KeyCode::BackTab => Action::FocusPrev,
            KeyCode::Enter => Action::OpenDetail,
            KeyCode::Esc => Action::ClearFilter,
            KeyCode::Char(c @ '1'..='4') => Action::ToggleFamily(family_key(c)?),
            KeyCode::Char('p') => Action::ChooseProbe,
            KeyCode::Char('r') => Action::ReloadRules,
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
                if self.view == View::Live {
                    self.panes[self.focus.index()].follow();
                } else {
                    self.move_list_selection(isize::MIN);
                }
            }
            Action::SelectOldest => {
                if self.view == View::Live {
                    let paused = self.paused_at;
                    self.panes[self.focus.index()].select_oldest(paused);
                } else {
                    self.move_list_selection(isize::MAX);
                }
            }
            Action::OpenDetail => self.open_detail(),
            Action::Close => {
                if self.detail.is_some() {
                    self.detail = None;
                } else if self.help {
                    self.help = false;
                } else {
                    self.view = View::Live;
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
                if self.switch_view(View::Rules) {
                    self.refresh_rules();
                }
            }
            Action::ToggleBlocksPane => {
                if self.switch_view(View::Blocks) {
                    self.refresh_denies();
                }
            }
            Action::UnblockSelected => self.unblock_selected(),
            Action::ToggleHistory => {
                if self.switch_view(View::History) && self.history.rows.is_empty() {
                    self.run_history_query();
                }
            }
            Action::EditHistoryQuery => {
                self.history.editing = Some(self.history.query.clone());
                self.mode = Mode::HistoryQuery;
            }
            Action::HistoryQueryChar(c) => {
                if let Some(text) = &mut self.history.editing
                    && !c.is_control()
                {
                    text.push(c);
                }
            }
            Action::HistoryQueryBackspace => {
                if let Some(text) = &mut self.history.editing {
                    text.pop();
                }
            }
            Action::HistoryQueryClear => {
                if let Some(text) = &mut self.history.editing {
                    text.clear();
                }
            }
            Action::RunHistoryQuery => {
                self.mode = Mode::Normal;
                if let Some(text) = self.history.editing.take() {
                    self.history.query = text;
                }
                self.run_history_query();
            }
            Action::CancelHistoryQuery => {
                self.mode = Mode::Normal;
                self.history.editing = None;
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
        if self.view != View::Live {
            self.move_list_selection(delta);
            return;
        }
        let paused = self.paused_at;
        self.panes[self.focus.index()].move_selection(paused, delta);
    }

    /// Opens `view` (closing the detail view), or goes back to the live panes when it is
    /// already open. Returns whether `view` is now open.
    fn switch_view(&mut self, view: View) -> bool {
        if self.view == view {
            self.view = View::Live;
            return false;
        }
        self.view = view;
        self.detail = None;
        true
    }

    /// Moves the selection of the rules, blocks or history list (clamped to it; the history
    /// loads older events when the selection runs past the last one loaded).
    fn move_list_selection(&mut self, delta: isize) {
        let (selected, len) = match self.view {
            View::Rules => (&mut self.rule_selected, self.rules.len()),
            View::Blocks => {
                let len = self.blocks.len();
                (&mut self.blocks.selected, len)
            }
            View::History => {
                let wanted = self.history.selected.saturating_add_signed(delta);
                if wanted >= self.history.rows.len() {
                    self.load_more_history(wanted);
                }
                (&mut self.history.selected, self.history.rows.len())
            }
            View::Live => return,
        };
        *selected = selected
            .saturating_add_signed(delta)
            .min(len.saturating_sub(1));
    }

    /// The event `Enter`, `b` and `B` act on: the detail view's, else the history view's
    /// selection, else the focused pane's selection, else its newest shown event.
    pub fn target_entry(&self) -> Option<&Entry> {
        if let Some(entry) = self.detail.as_ref().and_then(|d| d.entry.as_ref()) {
            return Some(entry);
        }
        if self.view == View::History {
            return self.history.rows.get(self.history.selected);
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
            ProbeState::Replay => Err(REPLAY_NO_PROBES.to_string()),
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

    fn ask_enforce(&mut self) {
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

    fn confirm(&mut self, yes: bool) {
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

    /// Rule info by name (for the detail view's scores).
    pub fn rule_info(&self, name: &str) -> Option<&RuleInfo> {
        self.rules.iter().find(|r| r.name == name)
    }
}

/// Keys that move a selection, the same in every view.
fn navigation_action(code: KeyCode) -> Option<Action> {
    Some(match code {
        KeyCode::Up | KeyCode::Char('k') => Action::SelectNewer(1),
        KeyCode::Down | KeyCode::Char('j') => Action::SelectOlder(1),
        KeyCode::PageUp => Action::SelectNewer(PAGE_ROWS),
        KeyCode::PageDown => Action::SelectOlder(PAGE_ROWS),
        KeyCode::Home | KeyCode::Char('g') => Action::SelectNewest,
        KeyCode::End | KeyCode::Char('G') => Action::SelectOldest,
        _ => return None,
    })
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
mod tests;
