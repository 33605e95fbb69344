//! The incident view (`i`): the process tree of an event's story, built from the events the
//! app holds (the three panes and the alerts strip), with each process's events and the rules
//! that fired on them.
//!
//! **The root.** From the event's process, the tree walks up its parents (an event's `ppid`)
//! as long as the app holds events of the parent, and stops *below* a session boundary: PID 1
//! (or an unknown parent), an SSH daemon, a login or a getty, a terminal multiplexer or
//! emulator, a container shim, or the monitor itself ([`is_session_boundary`]). Above that
//! point every process is the same for every incident of the session, so the tree would show
//! the whole machine; below it, the oldest process held is where the story starts (a web
//! server that spawned a shell, the shell a user typed the attack into). Then every
//! descendant the app holds events for hangs under it, children in the order they started.
//!
//! **Processes, not pids.** A pid is reused once its process has exited: a node is a process
//! *incarnation*, keyed by pid and its first event held ([`ProcessKey`]). A `process_fork`
//! of a pid, or any event after its `process_exit`, starts a new incarnation, so two
//! processes that had the same pid never merge; a child hangs under the incarnation of its
//! parent pid that was alive when the child's first event arrived.
//!
//! **Kept while open.** The panes are bounded and let old events go under load; the view
//! keeps its own copy of the events in its tree (shared, for alerts; a compact row's copy is
//! a row), so the story stays whole while it is open, up to [`MAX_KEPT`] events. A build reads
//! every held event whole, so it builds each row's event; they are let go of right after.
//!
//! **Bounded work.** The tree is built when the view opens and then at most once a second
//! (on the tick), and only when an event of one of its processes (or a new child of one) has
//! arrived since ([`App::ingest`] marks it stale with a hash lookup per event). Nothing is
//! rebuilt per frame: drawing reads the built rows and looks the few events in view up by
//! arrival number (a binary search per pane).
//!
//! **For the classroom demo.** [`App::open_incident_at`] opens the view for a given root pid
//! (the scenario's first process), and [`App::set_incident_labels`] names events (`step 3`)
//! on the tree.
use std::cell::Cell;
use std::collections::{BTreeMap, HashMap, HashSet};

use super::pane::{Entry, PaneId};
use super::{App, StatusKind, View};
use crate::event::{Event as SecEvent, EventType, Severity, SharedStr};

/// A label for an event in the incident view (the demo's `step 3`), or none.
pub type IncidentLabeler = Box<dyn Fn(&SecEvent) -> Option<String>>;

/// Events the incident view keeps of its tree at most (the newest).
pub const MAX_KEPT: usize = 20_000;

/// Steps the walk up the tree takes at most (a loop in bad data must not hang the UI).
const MAX_DEPTH: usize = 64;

/// Process names (comm, up to 15 bytes) that start a session: the incident's root is their
/// child, never they (see the module doc). `tmux: server`, `tmux: client` and the like match
/// by prefix.
const SESSION_BOUNDARIES: &[&str] = &[
    "systemd",
    "init",
    "sshd",
    "sshd-session",
    "dropbear",
    "login",
    "agetty",
    "getty",
    "tmux",
    "screen",
    "SCREEN",
    "zellij",
    "xterm",
    "gnome-terminal-",
    "konsole",
    "alacritty",
    "kitty",
    "containerd-shim",
    "conmon",
    "cron",
    "secmon-tui",
];

/// Whether a process with this pid and name starts a session (so is never an incident's root
/// nor above it). `own_pid` is the monitor's own pid when the events are this machine's.
pub fn is_session_boundary(pid: u32, name: &str, own_pid: Option<u32>) -> bool {
    pid <= 1
        || own_pid == Some(pid)
        || SESSION_BOUNDARIES
            .iter()
            .any(|b| name == *b || (*b == "tmux" && name.starts_with("tmux")))
}

/// One process (incarnation): its pid and the arrival number of its first event held, which
/// tells apart two processes that had the same pid.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProcessKey {
    pub pid: u32,
    pub first_seq: u64,
}

/// A process in the tree.
#[derive(Clone, Debug)]
pub struct ProcessNode {
    pub key: ProcessKey,
    /// The parent pid its first event named (0: unknown).
    pub ppid: u32,
    /// Levels below the root (0 for the root).
    pub depth: usize,
    /// Name, user and command line as of its last event held (after an exec, the new ones).
    pub name: SharedStr,
    pub user: SharedStr,
    pub cmdline: SharedStr,
    /// The worst severity of its events.
    pub severity: Severity,
    /// Its accumulated risk (the rules' `process.risk`) at its riskiest event.
    pub risk: f64,
    /// Events of it that rules flagged (suspicious or malicious).
    pub alerts: usize,
    pub exited: bool,
    /// Whether its first event held is the fork that created it (so it did not exist before).
    pub forked: bool,
    /// Its events' arrival numbers, oldest first.
    pub events: Vec<u64>,
}

impl ProcessNode {
    fn new(event: &SecEvent, seq: u64) -> ProcessNode {
        ProcessNode {
            key: ProcessKey {
                pid: event.pid,
                first_seq: seq,
            },
            ppid: event.ppid,
            depth: 0,
            name: event.process.clone(),
            user: event.user.clone(),
            cmdline: event.cmdline.clone(),
            severity: Severity::Benign,
            risk: 0.0,
            alerts: 0,
            exited: false,
            forked: event.event_type == EventType::ProcessFork,
            events: Vec::new(),
        }
    }

    fn add(&mut self, event: &SecEvent, seq: u64) {
        if self.ppid == 0 {
            self.ppid = event.ppid;
        }
        if !event.process.is_empty() {
            self.name = event.process.clone();
        }
        if !event.cmdline.is_empty() {
            self.cmdline = event.cmdline.clone();
        }
        if !event.user.is_empty() {
            self.user = event.user.clone();
        }
        let severity = event.analysis.severity;
        self.severity = self.severity.max(severity);
        self.risk = self.risk.max(event.analysis.process_risk);
        if severity >= Severity::Suspicious {
            self.alerts += 1;
        }
        self.exited |= event.event_type == EventType::ProcessExit;
        self.events.push(seq);
    }

    /// Whether rules flagged any of its events.
    pub fn alerted(&self) -> bool {
        self.alerts > 0
    }
}

/// One row of the view: a process, or one of its events.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum IncidentRow {
    /// The index of the process in [`IncidentTree::nodes`].
    Process(usize),
    /// An event (its arrival number) of the process at that index.
    Event { node: usize, seq: u64 },
}

/// The built tree: its processes depth first (children in start order), the rows to draw,
/// and why its root is the root.
#[derive(Clone, Debug, Default)]
pub struct IncidentTree {
    pub nodes: Vec<ProcessNode>,
    pub rows: Vec<IncidentRow>,
    /// Why the root is where the tree starts, for the title (`its parent sshd (pid 812) starts
    /// the session`). It names a process: untrusted text.
    pub why_root: String,
    /// Labels of events by arrival number ([`App::set_incident_labels`]).
    pub labels: HashMap<u64, String>,
}

impl IncidentTree {
    pub fn root(&self) -> Option<&ProcessNode> {
        self.nodes.first()
    }
}

/// Where the tree starts from.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Anchor {
    /// An event (`i`): the root is found by walking up from its process.
    Event { pid: u32, seq: u64 },
    /// A root asked for ([`App::open_incident_at`]): its newest incarnation is the root.
    Root { pid: u32 },
}

impl Anchor {
    fn pid(self) -> u32 {
        match self {
            Anchor::Event { pid, .. } | Anchor::Root { pid } => pid,
        }
    }
}

/// The incident view's state.
#[derive(Default)]
pub struct IncidentView {
    pub anchor: Option<Anchor>,
    pub tree: IncidentTree,
    /// The selected row.
    pub selected: usize,
    /// The first row in view (kept by the drawing, as a pane's).
    pub top: Cell<usize>,
    /// Processes whose events are folded away (`Left`).
    pub collapsed: HashSet<ProcessKey>,
    /// The pids in the tree: an event of one of them (or a child of one) makes it stale.
    pids: HashSet<u32>,
    /// The tree's events, by arrival number, kept when the panes let them go.
    kept: BTreeMap<u64, Entry>,
    stale: bool,
    labeler: Option<IncidentLabeler>,
}

impl IncidentView {
    /// The selected row's event (on a process row, the process's first event held).
    pub fn selected_seq(&self) -> Option<u64> {
        match *self.tree.rows.get(self.selected)? {
            IncidentRow::Event { seq, .. } => Some(seq),
            IncidentRow::Process(node) => representative_event(self.tree.nodes.get(node)?),
        }
    }

    fn selected_node(&self) -> Option<&ProcessNode> {
        match *self.tree.rows.get(self.selected)? {
            IncidentRow::Event { node, .. } | IncidentRow::Process(node) => {
                self.tree.nodes.get(node)
            }
        }
    }
}

/// What a process row stands for when an event is asked of it: its first event held (the
/// fork or exec that started it).
fn representative_event(node: &ProcessNode) -> Option<u64> {
    node.events.first().copied()
}

/// Every process incarnation in a run of events (oldest first) and how to find one.
struct ProcessIndex {
    nodes: Vec<ProcessNode>,
    /// The incarnations of each pid, oldest first.
    by_pid: HashMap<u32, Vec<usize>>,
}

impl ProcessIndex {
    fn build<'a>(events: impl Iterator<Item = (u64, &'a SecEvent)>) -> ProcessIndex {
        let mut index = ProcessIndex {
            nodes: Vec::new(),
            by_pid: HashMap::new(),
        };
        for (seq, event) in events {
            let current = index
                .by_pid
                .get(&event.pid)
                .and_then(|list| list.last())
                .copied();
            // A fork creates a new process with this pid; after an exit the pid is free.
            let new_process = match current.map(|i| &index.nodes[i]) {
                None => true,
                Some(node) => node.exited || event.event_type == EventType::ProcessFork,
            };
            let at = match current {
                Some(i) if !new_process => i,
                _ => {
                    index.nodes.push(ProcessNode::new(event, seq));
                    let i = index.nodes.len() - 1;
                    index.by_pid.entry(event.pid).or_default().push(i);
                    i
                }
            };
            index.nodes[at].add(event, seq);
        }
        index
    }

    /// The incarnation of `pid` that `seq` belongs to (or the one alive then).
    fn locate(&self, pid: u32, seq: u64) -> Option<usize> {
        let list = self.by_pid.get(&pid)?;
        list.iter()
            .rev()
            .find(|&&i| self.nodes[i].key.first_seq <= seq)
            .or_else(|| list.first())
            .copied()
    }

    fn newest(&self, pid: u32) -> Option<usize> {
        self.by_pid.get(&pid)?.last().copied()
    }

    /// The parent incarnation: of the parent pid, the one alive when `node` started (started
    /// before it and not exited before it), else — when only later events of the parent are
    /// held — its oldest incarnation held, unless that one is a newer process on a reused pid.
    fn parent(&self, node: usize) -> Option<usize> {
        let child = &self.nodes[node];
        if child.ppid == 0 || child.ppid == child.key.pid {
            return None;
        }
        let list = self.by_pid.get(&child.ppid)?;
        let started = child.key.first_seq;
        match list
            .iter()
            .rev()
            .find(|&&i| self.nodes[i].key.first_seq <= started)
        {
            Some(&i) => {
                let parent = &self.nodes[i];
                let exited_before =
                    parent.exited && parent.events.last().is_some_and(|&last| last < started);
                (!exited_before).then_some(i)
            }
            None => {
                // Only later events of the parent pid are held: its oldest incarnation, unless
                // that one was forked after the child started (a newer process on the pid).
                let &first = list.first()?;
                (!self.nodes[first].forked).then_some(first)
            }
        }
    }
}

/// The root for an anchor and why: for an event, the walk up from its process (see the module
/// doc); for a root asked for, its newest incarnation.
fn choose_root(
    index: &ProcessIndex,
    anchor: Anchor,
    own_pid: Option<u32>,
) -> Option<(usize, String)> {
    let mut node = match anchor {
        Anchor::Root { pid } => {
            return index
                .newest(pid)
                .map(|i| (i, "the root asked for".to_string()));
        }
        Anchor::Event { pid, seq } => index.locate(pid, seq)?,
    };
    for _ in 0..MAX_DEPTH {
        let current = &index.nodes[node];
        if is_session_boundary(current.key.pid, &current.name, own_pid) {
            return Some((node, "the process itself starts a session".to_string()));
        }
        let Some(parent) = index.parent(node) else {
            let why = match current.ppid {
                0 => "its parent is unknown".to_string(),
                ppid => format!("no events of its parent (pid {ppid}) are held"),
            };
            return Some((node, why));
        };
        let up = &index.nodes[parent];
        if is_session_boundary(up.key.pid, &up.name, own_pid) {
            return Some((
                node,
                format!(
                    "its parent {} (pid {}) starts the session",
                    up.name, up.key.pid
                ),
            ));
        }
        node = parent;
    }
    Some((node, "the tree is deeper than the view goes".to_string()))
}

/// Builds the tree for `anchor` from events (arrival number, event; oldest first).
/// `collapsed` processes get no event rows; `labeler` names events.
pub fn build_tree<'a>(
    events: impl Iterator<Item = (u64, &'a SecEvent)> + Clone,
    anchor: Anchor,
    own_pid: Option<u32>,
    collapsed: &HashSet<ProcessKey>,
    labeler: Option<&IncidentLabeler>,
) -> IncidentTree {
    let index = ProcessIndex::build(events.clone());
    let Some((root, why_root)) = choose_root(&index, anchor, own_pid) else {
        return IncidentTree::default();
    };
    // Children of every process, in start order (nodes are in start order already).
    let mut children: HashMap<usize, Vec<usize>> = HashMap::new();
    for node in 0..index.nodes.len() {
        if let Some(parent) = index.parent(node) {
            children.entry(parent).or_default().push(node);
        }
    }
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    let mut stack = vec![(root, 0)];
    while let Some((node, depth)) = stack.pop() {
        if !seen.insert(node) {
            continue;
        }
        order.push((node, depth));
        if let Some(kids) = children.get(&node) {
            stack.extend(kids.iter().rev().map(|&k| (k, depth + 1)));
        }
    }
    let mut nodes: Vec<ProcessNode> = Vec::with_capacity(order.len());
    let mut rows = Vec::new();
    for (node, depth) in order {
        let mut process = index.nodes[node].clone();
        process.depth = depth;
        let at = nodes.len();
        rows.push(IncidentRow::Process(at));
        if !collapsed.contains(&process.key) {
            rows.extend(
                process
                    .events
                    .iter()
                    .map(|&seq| IncidentRow::Event { node: at, seq }),
            );
        }
        nodes.push(process);
    }
    let mut labels = HashMap::new();
    if let Some(labeler) = labeler {
        let wanted: HashSet<u64> = nodes
            .iter()
            .flat_map(|n| n.events.iter().copied())
            .collect();
        for (seq, event) in events.filter(|(seq, _)| wanted.contains(seq)) {
            if let Some(label) = labeler(event) {
                labels.insert(seq, label);
            }
        }
    }
    IncidentTree {
        nodes,
        rows,
        why_root,
        labels,
    }
}

impl App {
    /// `i`: the incident view of the selected event's process (an alert, an event, the
    /// detail view's event).
    pub(super) fn open_incident(&mut self) {
        let Some(entry) = self.target_entry() else {
            let text = format!("no event in the {} pane", self.focus.title());
            self.set_status(text, StatusKind::Info);
            return;
        };
        let (pid, seq) = (entry.event.pid, entry.seq);
        // In a demo, each event says which step it belongs to (the step trees as they are
        // when the view opens).
        if let Some(demo) = &self.demo {
            self.incident.labeler = Some(demo.incident_labels());
        }
        self.show_incident(Anchor::Event { pid, seq });
        let incident = &mut self.incident;
        incident.selected = incident
            .tree
            .rows
            .iter()
            .position(|row| matches!(row, IncidentRow::Event { seq: s, .. } if *s == seq))
            .unwrap_or(0);
    }

    /// Opens the incident view with the newest process of `root_pid` as its root, and every
    /// descendant the app holds events for below it. For the classroom demo: the scenario's
    /// first process, whatever its parents. The tree follows new events of these processes
    /// (rebuilt at most once a second); when none of `root_pid` is held yet, the view says so
    /// and fills in as they arrive.
    pub fn open_incident_at(&mut self, root_pid: u32) {
        self.show_incident(Anchor::Root { pid: root_pid });
        self.incident.selected = 0;
    }

    /// Names events on the incident tree: `labeler` is asked for every event in the tree
    /// when it is built, and a `Some(label)` (e.g. `step 3`, sanitised when drawn) shows
    /// beside the event. `None` removes the labels. The classroom demo labels its steps.
    pub fn set_incident_labels(&mut self, labeler: Option<IncidentLabeler>) {
        self.incident.labeler = labeler;
        self.incident.stale = true;
        if self.view == View::Incident {
            self.rebuild_incident();
        }
    }

    fn show_incident(&mut self, anchor: Anchor) {
        self.incident.anchor = Some(anchor);
        self.incident.collapsed.clear();
        self.incident.top.set(usize::MAX);
        self.view = View::Incident;
        self.detail = None;
        self.rebuild_incident();
        if self.incident.tree.nodes.is_empty() {
            let pid = anchor.pid();
            self.set_status(
                format!("no events of pid {pid} are held (yet): the tree fills in as they arrive"),
                StatusKind::Info,
            );
        }
    }

    /// Builds the tree again from what the panes hold now.
    pub(super) fn rebuild_incident(&mut self) {
        let Some(anchor) = self.incident.anchor else {
            return;
        };
        let selected = self.incident.selected_key_and_seq();
        let own_pid = self.link.is_none().then(std::process::id);
        let tree = build_tree(
            held_events(self).into_iter(),
            anchor,
            own_pid,
            &self.incident.collapsed,
            self.incident.labeler.as_ref(),
        );
        let kept = self.keep_tree_events(&tree);
        // Walking them built every row's event: let them go now rather than at the next tick
        // (those in view are built again when drawn).
        for pane in &mut self.panes {
            pane.forget_built();
        }
        let incident = &mut self.incident;
        incident.kept = kept;
        incident.pids = tree.nodes.iter().map(|n| n.key.pid).collect();
        incident.pids.insert(anchor.pid());
        incident.tree = tree;
        incident.stale = false;
        // The same row stays selected where it still exists.
        incident.selected = selected
            .and_then(|wanted| incident.position_of(wanted))
            .unwrap_or(incident.selected)
            .min(incident.tree.rows.len().saturating_sub(1));
        self.dirty = true;
    }

    /// Marks the tree stale when an event concerns it (called for every event ingested while
    /// the view is open: one or two hash lookups).
    pub(super) fn note_for_incident(&mut self, event: &SecEvent) {
        if self.view == View::Incident
            && (self.incident.pids.contains(&event.pid) || self.incident.pids.contains(&event.ppid))
        {
            self.incident.stale = true;
        }
    }

    /// Once a second: the tree again if events of it arrived (not while paused: the view
    /// stays as it was).
    pub(super) fn refresh_incident(&mut self) {
        if self.view == View::Incident && self.incident.stale && self.paused_at.is_none() {
            self.rebuild_incident();
        }
    }

    /// `Left`/`Right`: folds or unfolds the selected process's events.
    pub(super) fn fold_incident(&mut self, fold: bool) {
        let Some(key) = self.incident.selected_node().map(|n| n.key) else {
            return;
        };
        let changed = if fold {
            self.incident.collapsed.insert(key)
        } else {
            self.incident.collapsed.remove(&key)
        };
        if changed {
            self.rebuild_incident();
            // On the process row, whose events came or went.
            if let Some(at) = self
                .incident
                .tree
                .rows
                .iter()
                .position(|row| matches!(row, IncidentRow::Process(n) if self.incident.tree.nodes[*n].key == key))
            {
                self.incident.selected = at;
            }
        }
    }

    /// The selected event of the incident view.
    pub(super) fn incident_entry(&self) -> Option<&Entry> {
        self.incident.entry(self.incident.selected_seq()?)
    }

    /// The events of `tree` (the newest [`MAX_KEPT`]): those kept already, and copies of
    /// the new ones (an alert's is shared, not copied).
    fn keep_tree_events(&mut self, tree: &IncidentTree) -> BTreeMap<u64, Entry> {
        let mut wanted: Vec<u64> = tree
            .nodes
            .iter()
            .flat_map(|n| n.events.iter().copied())
            .collect();
        wanted.sort_unstable();
        let newest = &wanted[wanted.len().saturating_sub(MAX_KEPT)..];
        let mut old = std::mem::take(&mut self.incident.kept);
        newest
            .iter()
            .filter_map(|&seq| {
                let entry = old
                    .remove(&seq)
                    .or_else(|| self.entry_by_seq(seq).cloned())?;
                Some((seq, entry))
            })
            .collect()
    }

    /// A held event by arrival number (each store is in arrival order: a binary search).
    pub fn entry_by_seq(&self, seq: u64) -> Option<&Entry> {
        PaneId::FOCUS_ORDER.into_iter().find_map(|id| {
            let entries = &self.pane(id).entries;
            entries
                .binary_search_by_key(&seq, |e| e.seq)
                .ok()
                .and_then(|i| entries.get(i))
        })
    }
}

/// Every event the app holds and the incident view kept, oldest first, once each (an alert
/// is in the strip and in its pane; the strip can hold one its pane has let go of).
fn held_events(app: &App) -> Vec<(u64, &SecEvent)> {
    let mut all: Vec<&Entry> = app
        .panes
        .iter()
        .chain([&app.alerts])
        .flat_map(|pane| pane.entries.iter())
        .chain(app.incident.kept.values())
        .collect();
    all.sort_unstable_by_key(|e| e.seq);
    all.dedup_by_key(|e| e.seq);
    all.into_iter().map(|e| (e.seq, &*e.event)).collect()
}

impl IncidentView {
    /// Lets the tree and its kept events go (the view was closed).
    pub(super) fn release(&mut self) {
        if self.anchor.is_some() {
            self.anchor = None;
            self.tree = IncidentTree::default();
            self.kept.clear();
            self.pids.clear();
            self.collapsed.clear();
        }
    }

    /// An event of the tree by arrival number.
    pub fn entry(&self, seq: u64) -> Option<&Entry> {
        self.kept.get(&seq)
    }

    fn selected_key_and_seq(&self) -> Option<(ProcessKey, Option<u64>)> {
        let node = self.selected_node()?.key;
        let seq = match self.tree.rows.get(self.selected)? {
            IncidentRow::Event { seq, .. } => Some(*seq),
            IncidentRow::Process(_) => None,
        };
        Some((node, seq))
    }

    fn position_of(&self, (key, seq): (ProcessKey, Option<u64>)) -> Option<usize> {
        self.tree.rows.iter().position(|row| match *row {
            IncidentRow::Process(n) => seq.is_none() && self.tree.nodes[n].key == key,
            IncidentRow::Event { seq: s, .. } => seq == Some(s),
        })
    }

    /// Moves the selection by `delta` rows, clamped.
    pub(super) fn move_selection(&mut self, delta: isize) {
        self.selected = self
            .selected
            .saturating_add_signed(delta)
            .min(self.tree.rows.len().saturating_sub(1));
    }
}

#[cfg(test)]
mod tests;
