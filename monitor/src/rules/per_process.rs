//! Conditions on the process alone, decided once per process context.
//!
//! Many rules test who acts rather than what is done: `process.name in masquerade_names &&
//! !system_executable_path` (a regex over the executable), a name matched against kernel
//! threads' names, `!(process.name in package_managers || ancestors in package_managers)`.
//! Such a test reads only the event's process context — its name, executable, command line,
//! user, parent, ancestors, ppid, uid and cgroup — and that context is the same for every
//! event of a process until it execs, forks, changes ids or is renamed. Yet it was evaluated
//! for every open and write the process made: the two masquerade rules alone cost a tenth of
//! the rule engine's time on the benchmark's mix.
//!
//! [`decide_per_process`] puts each such condition, where it is worth it, behind a
//! [`Node::PerProcess`] slot. The memo keeps the slots' results per recent process context,
//! found by the event's [`ContextKey`], and forgets them when any part of the context changes
//! (a few pointer comparisons per event). The result is the same as evaluating the condition,
//! since it reads nothing the key does not compare.
//!
//! [`ContextKey`]: crate::event::ContextKey

use std::collections::HashMap;

use super::eval::{Node, NumExpr, StrTest};
use super::fields::{IntField, ListField, StrField, TextField};
use crate::event::EventType;

/// A condition cheaper than this (estimated instructions) is evaluated each time: looking
/// up its result costs about as much.
const WORTH_KEEPING: u32 = 20;

/// The per-process slots of a rule set, numbered across its event types.
#[derive(Default)]
pub(crate) struct ProcessSlots {
    next: u32,
    /// A macro's body used on one event type gets one slot, shared by every rule using it.
    macros: HashMap<(EventType, u32), u32>,
}

impl ProcessSlots {
    /// How many slots were given out.
    pub(crate) fn len(&self) -> usize {
        self.next as usize
    }

    fn fresh(&mut self) -> u32 {
        self.next += 1;
        self.next - 1
    }

    fn for_macro(&mut self, t: EventType, memo_slot: u32) -> u32 {
        if let Some(&slot) = self.macros.get(&(t, memo_slot)) {
            return slot;
        }
        let slot = self.fresh();
        self.macros.insert((t, memo_slot), slot);
        slot
    }
}

/// Whether a process makes events of type `t` many times with one context. An exec, a fork
/// (a new pid), an exit or a change of ids is its context's first or last event, so its
/// per-process slots would be looked up, missed and filled every time.
pub(crate) fn repeats_within_a_context(t: EventType) -> bool {
    !matches!(
        t,
        EventType::ProcessExec
            | EventType::ProcessFork
            | EventType::ProcessExit
            | EventType::PrivilegeChange
    )
}

/// `node`, a condition as simplified for events of type `t`, with each of its largest parts
/// that read only the process context, and cost enough, behind a per-process slot.
pub(crate) fn decide_per_process(node: Node, t: EventType, slots: &mut ProcessSlots) -> Node {
    if !repeats_within_a_context(t) {
        return node;
    }
    decide(node, t, slots)
}

fn decide(node: Node, t: EventType, slots: &mut ProcessSlots) -> Node {
    if reads_context_only(&node) && cost(&node) >= WORTH_KEEPING {
        return match node {
            // The inner condition is what other rules share (a macro), not its negation.
            Node::Not(inner) => Node::Not(Box::new(decide(*inner, t, slots))),
            Node::Memo(memo_slot, inner) => Node::PerProcess(slots.for_macro(t, memo_slot), inner),
            already @ Node::PerProcess(..) => already,
            other => Node::PerProcess(slots.fresh(), Box::new(other)),
        };
    }
    let each = |nodes: Box<[Node]>, slots: &mut ProcessSlots| {
        nodes
            .into_vec()
            .into_iter()
            .map(|n| decide(n, t, slots))
            .collect()
    };
    match node {
        Node::All(nodes) => Node::All(each(nodes, slots)),
        Node::Any(nodes) => Node::Any(each(nodes, slots)),
        Node::Not(inner) => Node::Not(Box::new(decide(*inner, t, slots))),
        Node::Memo(memo_slot, inner) => Node::Memo(memo_slot, Box::new(decide(*inner, t, slots))),
        leaf => leaf,
    }
}

/// Whether `node` reads nothing but the fields [`ContextKey`] compares. Type tests are not
/// among them: they are decided before this runs.
///
/// [`ContextKey`]: crate::event::ContextKey
pub(crate) fn reads_context_only(node: &Node) -> bool {
    match node {
        Node::Const(_) => true,
        Node::All(nodes) | Node::Any(nodes) => nodes.iter().all(reads_context_only),
        Node::Not(inner) | Node::Memo(_, inner) | Node::PerProcess(_, inner) => {
            reads_context_only(inner)
        }
        Node::Str(field, _) => context_text(*field),
        Node::List(field, _) => *field == ListField::Ancestors,
        Node::StrPair(a, b, _) => [a, b]
            .iter()
            .all(|f| matches!(f, TextField::Str(s) if context_text(*s))),
        Node::Num(a, _, b) => context_number(a) && context_number(b),
        Node::NumIn(a, _) => context_number(a),
        Node::Types(_) | Node::IpEq(..) | Node::Ip(..) | Node::IpText(..) => false,
    }
}

fn context_text(field: StrField) -> bool {
    matches!(
        field,
        StrField::ProcessName
            | StrField::ProcessPath
            | StrField::Cmdline
            | StrField::User
            | StrField::ParentName
    )
}

fn context_number(expr: &NumExpr) -> bool {
    match expr {
        NumExpr::Const(_) => true,
        NumExpr::Field(field) => matches!(field, IntField::Ppid | IntField::Uid | IntField::Cgroup),
        NumExpr::BitAnd(inner, _) => context_number(inner),
        NumExpr::Risk => false,
    }
}

/// Roughly what evaluating `node` costs, in instructions, when every part of it runs (from
/// callgrind on the benchmark's mix: a comparison is a few, a hash lookup a few dozen, a
/// substring search or a regex around a hundred or more).
fn cost(node: &Node) -> u32 {
    match node {
        Node::Const(_) | Node::Types(_) => 1,
        Node::All(nodes) | Node::Any(nodes) => nodes.iter().map(cost).sum(),
        Node::Not(inner) | Node::Memo(_, inner) | Node::PerProcess(_, inner) => cost(inner),
        Node::Str(_, test) => test_cost(test),
        Node::List(_, test) => 4 * test_cost(test),
        Node::StrPair(..) | Node::IpText(..) => 10,
        Node::Num(..) | Node::NumIn(..) | Node::IpEq(..) | Node::Ip(..) => 4,
    }
}

fn test_cost(test: &StrTest) -> u32 {
    match test {
        StrTest::Eq(_) | StrTest::Ne(_) | StrTest::StartsWith(_) | StrTest::EndsWith(_) => 6,
        StrTest::In(_) => 25,
        StrTest::Contains(_) => 60,
        StrTest::Matches(_) => 100,
    }
}
