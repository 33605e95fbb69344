//! The three live event panes and the alerts strip: what each holds (bounded, newest last; an
//! alert is shared between the strip and its event pane), which rows are shown (the filter, a
//! pause), and the selection and scrolling that keep it in view.
use std::cell::{Cell, OnceCell};
use std::collections::VecDeque;
use std::ops::Deref;
use std::sync::Arc;

use super::controls::family_index;
use super::row::Row;
use super::{ALERT_CAPACITY, App, View};
use crate::event::{Event as SecEvent, EventType, Family, Severity};

/// Events kept per pane (the newest); older ones are dropped, so memory stays flat.
pub const PANE_CAPACITY: usize = 10_000;
/// The panes that take the focus: the three event panes and the alerts strip.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum PaneId {
    Process,
    File,
    Network,
    /// The alerts strip (suspicious and malicious events of every family).
    Alerts,
}

impl PaneId {
    /// The three event panes, top to bottom.
    pub const ALL: [PaneId; 3] = [PaneId::Process, PaneId::File, PaneId::Network];
    /// The order `Tab` moves the focus in: the event panes, then the alerts strip below them.
    pub const FOCUS_ORDER: [PaneId; 4] = [
        PaneId::Process,
        PaneId::File,
        PaneId::Network,
        PaneId::Alerts,
    ];

    fn focus_position(self) -> usize {
        match self {
            PaneId::Process => 0,
            PaneId::File => 1,
            PaneId::Network => 2,
            PaneId::Alerts => 3,
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            PaneId::Process => "Processes",
            PaneId::File => "Files",
            PaneId::Network => "Network",
            PaneId::Alerts => "Alerts",
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

    pub(super) fn next(self) -> PaneId {
        let order = PaneId::FOCUS_ORDER;
        order[(self.focus_position() + 1) % order.len()]
    }

    pub(super) fn prev(self) -> PaneId {
        let order = PaneId::FOCUS_ORDER;
        order[(self.focus_position() + order.len() - 1) % order.len()]
    }
}

/// An event as a pane holds it: an ordinary one as a compact [`Row`], any other whole and
/// shared (with the alerts strip, the incident view's copy).
///
/// It reads as the whole event (`Deref`). A row builds its event on first read and keeps it
/// until [`Pane::forget_built`], which the app calls once a second: drawing reads only the
/// rows in view, so at most a screenful is built at a time, while a full pane of rows takes
/// less than half the memory of its events (issue 19).
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "boxing the row would add an allocation per event, which the row saves"
)]
pub enum Stored {
    Row {
        row: Row,
        /// The event, once read (see [`Pane::forget_built`]).
        built: OnceCell<Box<SecEvent>>,
    },
    Whole(Arc<SecEvent>),
}

impl Stored {
    /// `event`, whole.
    pub fn whole(event: SecEvent) -> Stored {
        Stored::Whole(Arc::new(event))
    }

    fn row(row: Row) -> Stored {
        Stored::Row {
            row,
            built: OnceCell::new(),
        }
    }

    /// `read` of the event, without keeping a row's event built (for a walk over every event
    /// held: the filter).
    pub fn read<R>(&self, read: impl FnOnce(&SecEvent) -> R) -> R {
        match self {
            Stored::Row { row, built } => match built.get() {
                Some(event) => read(event),
                None => read(&row.event()),
            },
            Stored::Whole(event) => read(event),
        }
    }
}

impl Clone for Stored {
    /// A row's copy builds its own event when read (a copy of a built event is ~1 KiB).
    fn clone(&self) -> Stored {
        match self {
            Stored::Row { row, .. } => Stored::row(row.clone()),
            Stored::Whole(event) => Stored::Whole(event.clone()),
        }
    }
}

impl Deref for Stored {
    type Target = SecEvent;

    fn deref(&self) -> &SecEvent {
        match self {
            Stored::Row { row, built } => built.get_or_init(|| Box::new(row.event())),
            Stored::Whole(event) => event,
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

/// The first room a pane makes (then it doubles, up to its capacity).
const MIN_GROWTH: usize = 64;

/// Evicted events kept for [`App::take_evicted`] at most.
const EVICTED_LIMIT: usize = 65_536;

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
    /// Appends `entry`; returns the oldest one when the pane already held `capacity`.
    ///
    /// The buffer grows to `capacity` and no further. Left to itself a `VecDeque` doubles past
    /// it (10,000 entries in room for 16,384), and a full ring then walks its head through
    /// the whole buffer, so every slot becomes resident: 2–5 MB per pane for nothing (issue
    /// 19).
    pub(super) fn push(&mut self, entry: Entry, capacity: usize) -> Option<Entry> {
        let evicted = if self.entries.len() >= capacity {
            self.entries.pop_front()
        } else {
            let len = self.entries.len();
            if len == self.entries.capacity() {
                let grown = (len * 2).max(MIN_GROWTH).min(capacity);
                self.entries.reserve_exact(grown - len);
            }
            None
        };
        self.entries.push_back(entry);
        evicted
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
    pub(super) fn move_selection(&mut self, paused_at: Option<u64>, delta: isize) {
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

    pub(super) fn select_oldest(&mut self, paused_at: Option<u64>) {
        let shown: Vec<u64> = self.shown(paused_at).map(|e| e.seq).collect();
        if let Some(last) = shown.len().checked_sub(1) {
            self.select_position(&shown, last);
        }
    }

    pub(super) fn follow(&mut self) {
        self.selected = None;
        self.top = None;
    }

    /// Lets go of the events built from rows since the last call (see [`Stored`]).
    pub(super) fn forget_built(&mut self) {
        for entry in &mut self.entries {
            if let Stored::Row { built, .. } = &mut entry.event {
                built.take();
            }
        }
    }
}

impl App {
    pub fn pane(&self, id: PaneId) -> &Pane {
        match id {
            PaneId::Process => &self.panes[0],
            PaneId::File => &self.panes[1],
            PaneId::Network => &self.panes[2],
            PaneId::Alerts => &self.alerts,
        }
    }

    pub(super) fn pane_mut(&mut self, id: PaneId) -> &mut Pane {
        match id {
            PaneId::Process => &mut self.panes[0],
            PaneId::File => &mut self.panes[1],
            PaneId::Network => &mut self.panes[2],
            PaneId::Alerts => &mut self.alerts,
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
            self.note_for_incident(&event);
            let visible = self.matches(&event);
            let pane = PaneId::for_event(event.event_type);
            let stored = if event.analysis.severity >= Severity::Suspicious {
                let shared = Stored::whole(event);
                let entry = Entry {
                    seq,
                    event: shared.clone(),
                    visible,
                };
                let evicted = self.alerts.push(entry, ALERT_CAPACITY);
                self.keep_evicted(evicted);
                shared
            } else {
                match Row::of(&event) {
                    Some(row) => {
                        // The row is a copy: the event goes back to the thread that made it.
                        self.give_back(event);
                        Stored::row(row)
                    }
                    None => Stored::whole(event),
                }
            };
            let entry = Entry {
                seq,
                event: stored,
                visible,
            };
            let evicted = self.pane_mut(pane).push(entry, PANE_CAPACITY);
            self.keep_evicted(evicted);
        }
        if self.next_seq != before {
            self.dirty = true;
            self.observe_demo(before);
        }
    }

    /// Keeps an event the panes let go of for [`App::take_evicted`] (one still shown in the
    /// alerts strip or a pane is only a reference going away).
    fn keep_evicted(&mut self, entry: Option<Entry>) {
        let event = match entry.map(|e| e.event) {
            Some(Stored::Whole(shared)) => match Arc::try_unwrap(shared) {
                Ok(event) => event,
                Err(_) => return,
            },
            // The app's own copy (the event went back when the row was made).
            Some(Stored::Row { .. }) | None => return,
        };
        self.give_back(event);
    }

    fn give_back(&mut self, event: SecEvent) {
        // Bounded, should nobody take them: then they are simply freed here.
        if self.evicted.len() < EVICTED_LIMIT {
            self.evicted.push(event);
        }
    }

    /// Moves the events the panes let go of since the last call into `into` (the app's own
    /// buffer keeps its capacity, so a steady flood allocates nothing here).
    pub fn take_evicted(&mut self, into: &mut Vec<SecEvent>) {
        into.append(&mut self.evicted);
    }

    pub(super) fn move_selection(&mut self, delta: isize) {
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
        let focus = self.focus;
        self.pane_mut(focus).move_selection(paused, delta);
    }

    /// Moves the selection of the rules, blocks or history list (clamped to it; the history
    /// loads older events when the selection runs past the last one loaded).
    pub(super) fn move_list_selection(&mut self, delta: isize) {
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
            View::Incident => {
                self.incident.move_selection(delta);
                return;
            }
            View::Live => return,
        };
        *selected = selected
            .saturating_add_signed(delta)
            .min(len.saturating_sub(1));
    }

    /// The event `Enter`, `b`, `B`, `e` and `i` act on: the detail view's, else the history
    /// view's or the incident view's selection, else the focused pane's (or the alerts strip's) selection, else its newest
    /// shown event.
    pub fn target_entry(&self) -> Option<&Entry> {
        if let Some(entry) = self.detail.as_ref().and_then(|d| d.entry.as_ref()) {
            return Some(entry);
        }
        if self.view == View::History {
            return self.history.rows.get(self.history.selected);
        }
        if self.view == View::Incident {
            return self.incident_entry();
        }
        let pane = self.pane(self.focus);
        pane.selected_entry(self.paused_at)
            .or_else(|| pane.shown(self.paused_at).next())
    }
}
