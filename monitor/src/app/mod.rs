//! The terminal UI's state and its transitions, without a terminal.
//!
//! One [`App`] owns everything the screen shows. The event loop (`tui`) feeds it [`Event`]s —
//! key presses, ticks, log lines, history pages — and batches of analysed kernel events
//! ([`App::ingest`]), and draws it with `ui::draw` when [`App::needs_redraw`] says something
//! changed. Key presses become [`Action`]s ([`App::action_for_key`]) and [`App::update`]
//! applies them; both are unit-tested without a terminal.
//!
//! The kernel, the rule engine, the response layer and the history are reached through small
//! traits (`controls.rs`), so the state machine can be driven with fakes: [`Probes`] (the
//! capture's family switches), [`RuleControl`] (reload, per-rule enable, list), [`Response`]
//! (simulated and real blocking, the deny entries) and [`HistorySource`]. Their adapters live
//! beside what they adapt (`response::ui_adapter`, `storage::ui_adapter`); how it all looks
//! (colours, severity markers) is `ui`'s. This module imports neither `ui`, `tui`, `response`
//! nor `storage`.
//!
//! Here: [`App`], the loop's [`Event`]s, [`App::update`] and the views' small state. Beside
//! it: `pane.rs` (the live panes, selection and scrolling), `keymap.rs` (key → [`Action`]),
//! `row.rs` (the compact row a pane keeps of an ordinary event), `filter.rs` (`/` and the
//! suspicious-only switch), `blocks.rs` (`b`, `B` and the `D` view),
//! `history.rs` (the `h` view), `incident.rs` (the `i` view: an event's process tree) and
//! `controls.rs` (the ports).
mod blocks;
mod controls;
mod demo;
mod filter;
mod history;
mod incident;
mod keymap;
mod pane;
mod row;

pub use crate::event::contains_ignore_case;
pub use blocks::{BlockMark, BlockTarget, BlocksView, DenyRow, endpoint};
pub use controls::{
    Controls, EnforcePlan, LinkPhase, LinkView, ProbeState, Probes, REPLAY_NO_PROBES, RemoteLink,
    ReplayProbes, Response, RuleControl, StaticProbes,
};
pub use demo::{AUTO_PAUSE_SECS, DemoDriver, DemoState, WIDE};
pub use filter::filter_matches;
pub use history::{
    DEFAULT_HISTORY_QUERY, HISTORY_MAX_ROWS, HISTORY_PAGE, HISTORY_SEQ, HistoryCursor,
    HistoryReply, HistoryRequest, HistorySource, HistoryView, NoHistory,
};
pub use incident::{
    Anchor, IncidentLabeler, IncidentRow, IncidentTree, IncidentView, ProcessKey, ProcessNode,
    build_tree, is_session_boundary,
};
pub use keymap::{Action, FAMILY_KEYS, PAGE_ROWS};
pub use pane::{Entry, PANE_CAPACITY, Pane, PaneId, Stored};

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};

use crate::losses::LossCounts;
use crate::notice::Notice;

use chrono::{DateTime, FixedOffset, Utc};
use crossterm::event::Event as TermEvent;

use crate::event::Family;
use crate::rules::RuleInfo;
use controls::family_index;

/// Alerts kept in the alerts strip.
pub const ALERT_CAPACITY: usize = 1_000;
/// Seconds of events/s history behind each family's sparkline.
pub const RATE_HISTORY: usize = 60;
/// How long a status message stays in the footer.
pub const STATUS_SECONDS: i64 = 10;

/// Everything the event loop hands to the [`App`].
#[derive(Debug)]
pub enum Event {
    /// The redraw tick; carries the wall-clock time (the header clock, rates, status expiry).
    Tick(DateTime<Utc>),
    /// A key press, resize, etc.
    Input(TermEvent),
    /// A notice from the monitor (a reload, a warning), shown in the status line instead of
    /// garbling the screen.
    Notice(Notice),
    /// A page of the history view's query.
    History(HistoryReply),
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
    /// `i`: the process tree of an event's story.
    Incident,
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
    /// The alerts strip: suspicious and malicious events, newest last (shared with their
    /// event pane), with its own selection.
    pub alerts: Pane,
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
    /// The incident view (`i`).
    pub incident: IncidentView,
    /// The presenter layout (`--presenter`, `Z`): fewer columns, bigger markers, high
    /// contrast, for a projector.
    pub presenter: bool,
    pub rules: Vec<RuleInfo>,
    /// The directories the rules came from (see [`RuleControl::dirs`]).
    pub rule_dirs: Vec<std::path::PathBuf>,
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
    /// Events received since start.
    pub received: u64,
    /// The remote machine's link (`--connect`; read once a second), `None` on this machine.
    pub link: Option<LinkView>,
    link_source: Option<Box<dyn RemoteLink>>,
    /// Classroom mode (`secmon-tui demo`): the scenario played.
    pub demo: Option<DemoState>,
    next_seq: u64,
    /// Events the bounded panes let go of, and those a row was made of, since the last
    /// [`App::take_evicted`]: the event loop hands them back to the thread that made them
    /// (freeing memory another thread allocated is several times dearer with mimalloc).
    evicted: Vec<crate::event::Event>,
    quit: bool,
    dirty: bool,
    controls: Controls,
}

impl App {
    pub fn new(controls: Controls, offset: FixedOffset, now: DateTime<Utc>) -> App {
        let mut app = App {
            panes: Default::default(),
            alerts: Pane::default(),
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
            incident: IncidentView::default(),
            presenter: false,
            rules: Vec::new(),
            rule_dirs: Vec::new(),
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
            received: 0,
            link: None,
            link_source: None,
            demo: None,
            next_seq: 1,
            evicted: Vec::new(),
            quit: false,
            dirty: true,
            controls,
        };
        app.refresh_slow();
        app
    }

    /// Shows a remote machine's link in the header (`--connect`).
    pub fn set_link(&mut self, link: Box<dyn RemoteLink>) {
        self.link = Some(link.view());
        self.link_source = Some(link);
        self.dirty = true;
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

    /// Events that arrived since the display was paused.
    pub fn arrived_while_paused(&self) -> u64 {
        self.paused_at
            .map_or(0, |p| self.next_seq.saturating_sub(p).saturating_sub(1))
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
            Event::Notice(notice) => self.notice(notice),
            Event::History(reply) => self.history_reply(reply),
        }
    }

    fn tick(&mut self, now: DateTime<Utc>) {
        self.tick_demo(now);
        let elapsed = now.timestamp() - self.now.timestamp();
        if elapsed != 0 {
            // Once a second: the clock, rates, drops, rule count.
            for rate in &mut self.rates {
                rate.roll(elapsed.max(1));
            }
            self.now = now;
            self.refresh_slow();
            // The rows read for the last second's frames; those in view are built again by
            // the next one.
            for pane in &mut self.panes {
                pane.forget_built();
            }
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
        if let Some(source) = &self.link_source {
            let view = source.view();
            let before = self.link.as_ref().map(|l| l.phase.clone());
            let was_connected = before == Some(LinkPhase::Connected);
            let was_down = matches!(
                before,
                Some(LinkPhase::Reconnecting { .. } | LinkPhase::Unauthorised { .. })
            );
            let connected = view.phase == LinkPhase::Connected;
            let change = match (was_connected, connected) {
                (true, false) => Some((
                    format!(
                        "the link to {} dropped ({}): reconnecting by itself",
                        view.host,
                        view.why.as_deref().unwrap_or("no reason given")
                    ),
                    StatusKind::Error,
                )),
                (false, true) if was_down => Some((
                    format!("the link to {} is back", view.host),
                    StatusKind::Info,
                )),
                _ => None,
            };
            self.link = Some(view);
            if let Some((text, kind)) = change {
                self.set_status(text, kind);
            }
        }
        for family in FAMILY_KEYS {
            self.probe_states[family_index(family)] = self.controls.probes.state(family);
        }
        self.rule_count = self.controls.rules.count();
        self.deny_count = self.controls.response.denies().map_or(0, |d| d.len());
        match self.view {
            View::Rules => self.refresh_rules(),
            View::Blocks => self.refresh_denies(),
            View::Incident => self.refresh_incident(),
            View::Live | View::History => {}
        }
        if self.view != View::Incident {
            // Closed: the events it kept go.
            self.incident.release();
        }
    }

    fn refresh_rules(&mut self) {
        self.rules = self.controls.rules.list();
        self.rule_dirs = self.controls.rules.dirs();
        self.rule_count = self.rules.len();
        self.rule_selected = self.rule_selected.min(self.rules.len().saturating_sub(1));
    }

    /// A notice from the monitor (a reload, a warning): the status line, and a reload's
    /// outcome in the rule list too.
    fn notice(&mut self, notice: Notice) {
        match notice {
            Notice::RulesReloaded { summary, .. } => self.record_reload(Ok(summary)),
            Notice::RulesReloadFailed { error, kept, .. } => {
                self.record_reload(Err(format!("{error}; keeping the previous {kept} rules")));
            }
            notice => {
                let kind = if notice.is_problem() {
                    StatusKind::Error
                } else {
                    StatusKind::Info
                };
                self.set_status(notice.to_string(), kind);
            }
        }
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
                    let focus = self.focus;
                    self.pane_mut(focus).follow();
                } else {
                    self.move_list_selection(isize::MIN);
                }
            }
            Action::SelectOldest => {
                if self.view == View::Live {
                    let (paused, focus) = (self.paused_at, self.focus);
                    self.pane_mut(focus).select_oldest(paused);
                } else {
                    self.move_list_selection(isize::MAX);
                }
            }
            Action::OpenDetail => self.open_detail(),
            Action::ShowProcessEvents => self.show_process_events(),
            Action::OpenIncident => self.open_incident(),
            Action::FoldProcess(fold) => self.fold_incident(fold),
            Action::TogglePresenter => {
                self.presenter = !self.presenter;
                let state = if self.presenter { "on" } else { "off" };
                self.set_status(format!("presenter layout {state} (Z)"), StatusKind::Info);
            }
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
            Action::DemoNext => self.demo_step(1),
            Action::DemoPrevious => self.demo_step(-1),
            Action::DemoAuto => self.demo_auto(),
            Action::DemoPause => self.demo_pause(),
            Action::DemoBlock => self.demo_block(),
            Action::DemoToggleNarration => self.demo_toggle_narration(),
            Action::AskEnforce => self.ask_enforce(),
            Action::Confirm(yes) => self.confirm(yes),
            action @ (Action::StartFilter
            | Action::FilterChar(_)
            | Action::FilterBackspace
            | Action::FilterClearText
            | Action::FilterAccept
            | Action::ClearFilter
            | Action::ToggleSuspiciousOnly) => self.update_filter(action),
            Action::TogglePause => {
                self.paused_at = match self.paused_at {
                    Some(_) => None,
                    None => Some(self.next_seq - 1),
                };
            }
            Action::Clear => {
                for pane in self.panes.iter_mut().chain([&mut self.alerts]) {
                    pane.entries.clear();
                    pane.follow();
                }
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

    /// `e`: from an alert (or any selected event) to what its process did — the filter
    /// `pid:N` on every pane, the detail view closed, and the focus on the process pane (or,
    /// when that holds nothing of the pid, the pane of the event itself).
    fn show_process_events(&mut self) {
        let Some(entry) = self.target_entry() else {
            let text = format!("no event in the {} pane", self.focus.title());
            self.set_status(text, StatusKind::Info);
            return;
        };
        let pid = entry.event.pid;
        let own_pane = PaneId::for_event(entry.event.event_type);
        self.detail = None;
        self.view = View::Live;
        self.mode = Mode::Normal;
        self.filter = filter::pid_filter_text(pid);
        self.refilter();
        self.focus = if self
            .pane(PaneId::Process)
            .shown(self.paused_at)
            .next()
            .is_some()
        {
            PaneId::Process
        } else {
            own_pane
        };
        self.set_status(
            format!("events of pid {pid} (Esc clears the filter)"),
            StatusKind::Info,
        );
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

    /// Rule info by name (for the detail view's scores).
    pub fn rule_info(&self, name: &str) -> Option<&RuleInfo> {
        self.rules.iter().find(|r| r.name == name)
    }
}

#[cfg(test)]
mod tests;
