//! Candidate selection for large rule sets: which rules of an event type's list can match an
//! event at all, found by looking up the event's field values instead of evaluating every rule.
//!
//! Most rules carry a *guard*: a test that must hold for the whole condition to hold, and
//! that names a value — `process.name == 'x'`, `file.path in [...]`, `ancestors in list`,
//! `net.dst_port == 4444`, or text that must occur in a field (`startswith`, `endswith`,
//! `contains`, and the literals every match of a regex contains, [`Pattern`]). A guard is a
//! conjunct of the condition (inside `&&`, inside macros), or an `||` whose every branch has
//! a guard on the same field. For an event type with many rules, each rule is filed under its
//! most selective guard:
//!
//! - exact guards in a hash map per field, from the value to the rules;
//! - text guards in one Aho-Corasick automaton per field, from each literal to the rules;
//!
//! and rules without a usable guard are kept in a list evaluated for every event. The
//! candidates for an event are the rules found under its values plus that list, evaluated in
//! the order of the type's list (prerequisites first), exactly as a scan would: a rule that is
//! not a candidate would have evaluated to false, and evaluating a condition has no effect
//! beyond its result (macro results are a cache), so the outcome is the same.
//!
//! Small lists are scanned: for the shipped pack (a few dozen rules per type) the lookups
//! would cost more than the conditions.
//!
//! [`Pattern`]: super::eval::Pattern

use std::collections::HashMap;

use aho_corasick::{AhoCorasick, MatchKind};

use super::eval::{FxBuild, Node, NumExpr, Number, StrTest};
use super::fields::{self, IntField, ListField, StrField};
use super::parser::CmpOp;
use crate::event::Event;

/// An event type with fewer rules is scanned.
pub const MIN_INDEXED: usize = 64;
/// A field with fewer rules filed under it is not worth its lookup: its rules are scanned.
const MIN_GROUP: usize = 8;
/// Shorter text guards would make a rule a candidate for most values.
const MIN_LITERAL_LEN: usize = 3;

/// A value test that must hold for a rule to match.
#[derive(Clone, Debug, PartialEq)]
enum Guard {
    /// The field equals one of the values.
    Str(StrField, Vec<Box<str>>),
    /// An element of the list equals one of the values.
    List(ListField, Vec<Box<str>>),
    Int(IntField, Vec<i64>),
    /// One of the literals occurs in the field.
    Text(StrField, Vec<Box<[u8]>>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum GroupKey {
    Str(StrField),
    List(ListField),
    Int(IntField),
    Text(StrField),
}

impl Guard {
    fn key(&self) -> GroupKey {
        match self {
            Guard::Str(f, _) => GroupKey::Str(*f),
            Guard::List(f, _) => GroupKey::List(*f),
            Guard::Int(f, _) => GroupKey::Int(*f),
            Guard::Text(f, _) => GroupKey::Text(*f),
        }
    }

    /// Roughly how many unrelated events make the rule a candidate (lower is better): one
    /// per value for an exact guard, twice that for a list (several elements are looked up),
    /// more for text that may occur anywhere, the more the shorter it is.
    fn cost(&self) -> usize {
        match self {
            Guard::Str(_, v) => v.len(),
            Guard::Int(_, v) => v.len(),
            Guard::List(_, v) => 2 * v.len(),
            Guard::Text(_, lits) => {
                let shortest = lits.iter().map(|l| l.len()).min().unwrap_or(0);
                lits.len() * (2 + 12 - shortest.min(12))
            }
        }
    }

    /// The guard as text that must occur (an exact value occurs in the field too).
    fn into_text(self) -> Option<(StrField, Vec<Box<[u8]>>)> {
        match self {
            Guard::Text(f, lits) => Some((f, lits)),
            Guard::Str(f, values) if values.iter().all(|v| v.len() >= MIN_LITERAL_LEN) => Some((
                f,
                values
                    .into_iter()
                    .map(|v| Box::<[u8]>::from(v.as_bytes()))
                    .collect(),
            )),
            _ => None,
        }
    }
}

/// Fields whose value the index can read from the event alone.
fn indexable(field: StrField) -> bool {
    !matches!(field, StrField::ParentPath | StrField::EventType)
}

/// The guard a leaf test gives, if any.
fn leaf_guard(node: &Node) -> Option<Guard> {
    match node {
        Node::Str(f, test) if indexable(*f) => match test {
            StrTest::Eq(v) => Some(Guard::Str(*f, vec![v.clone()])),
            StrTest::In(set) => Some(Guard::Str(*f, set.items().map(Into::into).collect())),
            StrTest::Contains(v) if v.as_str().len() >= MIN_LITERAL_LEN => {
                Some(Guard::Text(*f, vec![v.as_str().as_bytes().into()]))
            }
            StrTest::StartsWith(v) | StrTest::EndsWith(v) if v.len() >= MIN_LITERAL_LEN => {
                Some(Guard::Text(*f, vec![v.as_bytes().into()]))
            }
            StrTest::Matches(p) => {
                let lits = p.required_literals()?;
                (!lits.is_empty() && lits.iter().all(|l| l.len() >= MIN_LITERAL_LEN))
                    .then(|| Guard::Text(*f, lits.into_iter().map(Into::into).collect()))
            }
            _ => None,
        },
        Node::List(f, StrTest::Eq(v)) => Some(Guard::List(*f, vec![v.clone()])),
        Node::List(f, StrTest::In(set)) => {
            Some(Guard::List(*f, set.items().map(Into::into).collect()))
        }
        Node::Num(NumExpr::Field(f), CmpOp::Eq, NumExpr::Const(Number::Int(n))) => {
            Some(Guard::Int(*f, vec![*n]))
        }
        Node::NumIn(NumExpr::Field(f), set) => {
            let ints: Option<Vec<i64>> = set
                .iter()
                .map(|n| match n {
                    Number::Int(i) => Some(*i),
                    Number::Float(_) => None,
                })
                .collect();
            Some(Guard::Int(*f, ints?))
        }
        _ => None,
    }
}

/// Every guard of `node` (each is necessary for it to be true).
fn guards(node: &Node, out: &mut Vec<Guard>) {
    match node {
        Node::All(items) => items.iter().for_each(|n| guards(n, out)),
        Node::Memo(_, inner) | Node::PerProcess(_, inner) => guards(inner, out),
        Node::Any(items) => out.extend(any_guard(items)),
        leaf => out.extend(leaf_guard(leaf)),
    }
}

/// The guard of `a || b || ...`: each branch's best guard, all on one field, merged.
fn any_guard(items: &[Node]) -> Option<Guard> {
    let mut branches = Vec::with_capacity(items.len());
    for item in items {
        let mut found = Vec::new();
        guards(item, &mut found);
        branches.push(found.into_iter().min_by_key(Guard::cost)?);
    }
    let first = branches.first()?.key();
    if branches.iter().all(|g| g.key() == first) {
        let mut merged = branches.into_iter();
        let mut acc = merged.next()?;
        for g in merged {
            match (&mut acc, g) {
                (Guard::Str(_, a), Guard::Str(_, b)) | (Guard::List(_, a), Guard::List(_, b)) => {
                    a.extend(b)
                }
                (Guard::Int(_, a), Guard::Int(_, b)) => a.extend(b),
                (Guard::Text(_, a), Guard::Text(_, b)) => a.extend(b),
                _ => return None,
            }
        }
        return Some(acc);
    }
    // Exact values and text on one field: all as text.
    let mut field = None;
    let mut lits = Vec::new();
    for g in branches {
        let (f, l) = g.into_text()?;
        if *field.get_or_insert(f) != f {
            return None;
        }
        lits.extend(l);
    }
    Some(Guard::Text(field?, lits))
}

/// Rules (by position in the type's list) filed under values of one field.
#[derive(Debug)]
struct ExactMap<F> {
    field: F,
    map: HashMap<Box<str>, Box<[u32]>, FxBuild>,
}

#[derive(Debug)]
struct IntMap {
    field: IntField,
    map: HashMap<i64, Box<[u32]>, FxBuild>,
}

#[derive(Debug)]
struct TextMap {
    field: StrField,
    automaton: AhoCorasick,
    /// For each literal (pattern id), the rules filed under it.
    rules: Box<[Box<[u32]>]>,
}

/// The index of one event type's rules.
#[derive(Debug)]
pub struct TypeIndex {
    strs: Vec<ExactMap<StrField>>,
    lists: Vec<ExactMap<ListField>>,
    ints: Vec<IntMap>,
    texts: Vec<TextMap>,
    /// Positions of the rules without a guard worth indexing, ascending.
    scan: Box<[u32]>,
}

/// Scratch space for [`TypeIndex::candidates`] (kept by the evaluator between events).
#[derive(Debug, Default)]
pub struct Scratch {
    found: Vec<u32>,
    merged: Vec<u32>,
}

impl TypeIndex {
    /// The index of one type's rule conditions (in evaluation order), or `None` when scanning
    /// them is as cheap.
    pub fn build(nodes: &[Node]) -> Option<TypeIndex> {
        if nodes.len() < MIN_INDEXED {
            return None;
        }
        let all: Vec<Vec<Guard>> = nodes
            .iter()
            .map(|node| {
                let mut found = Vec::new();
                guards(node, &mut found);
                found
            })
            .collect();
        // How many rules could be filed under each field.
        let mut potential: HashMap<GroupKey, usize> = HashMap::new();
        for found in &all {
            let mut keys: Vec<GroupKey> = Vec::new();
            for k in found.iter().map(Guard::key) {
                if !keys.contains(&k) {
                    keys.push(k);
                }
            }
            for k in keys {
                *potential.entry(k).or_default() += 1;
            }
        }
        let mut strs: HashMap<StrField, HashMap<Box<str>, Vec<u32>, FxBuild>> = HashMap::new();
        let mut lists: HashMap<ListField, HashMap<Box<str>, Vec<u32>, FxBuild>> = HashMap::new();
        let mut ints: HashMap<IntField, HashMap<i64, Vec<u32>, FxBuild>> = HashMap::new();
        let mut texts: HashMap<StrField, HashMap<Box<[u8]>, Vec<u32>>> = HashMap::new();
        let mut scan = Vec::new();
        for (pos, found) in all.into_iter().enumerate() {
            let pos = pos as u32;
            let best = found
                .into_iter()
                .filter(|g| potential.get(&g.key()).is_some_and(|&n| n >= MIN_GROUP))
                .min_by_key(Guard::cost);
            match best {
                None => scan.push(pos),
                Some(Guard::Str(f, values)) => {
                    let map = strs.entry(f).or_default();
                    for v in values {
                        map.entry(v).or_default().push(pos);
                    }
                }
                Some(Guard::List(f, values)) => {
                    let map = lists.entry(f).or_default();
                    for v in values {
                        map.entry(v).or_default().push(pos);
                    }
                }
                Some(Guard::Int(f, values)) => {
                    let map = ints.entry(f).or_default();
                    for v in values {
                        map.entry(v).or_default().push(pos);
                    }
                }
                Some(Guard::Text(f, lits)) => {
                    let map = texts.entry(f).or_default();
                    for l in lits {
                        map.entry(l).or_default().push(pos);
                    }
                }
            }
        }
        if scan.len() == nodes.len() {
            return None;
        }
        fn done<K: std::hash::Hash + Eq>(
            map: HashMap<K, Vec<u32>, FxBuild>,
        ) -> HashMap<K, Box<[u32]>, FxBuild> {
            map.into_iter()
                .map(|(k, mut v)| {
                    v.dedup();
                    (k, v.into_boxed_slice())
                })
                .collect()
        }
        let mut text_maps = Vec::new();
        for (field, map) in texts {
            let (lits, rules): (Vec<Box<[u8]>>, Vec<Vec<u32>>) = map.into_iter().unzip();
            let automaton = AhoCorasick::builder()
                .match_kind(MatchKind::Standard)
                .build(&lits)
                .ok();
            match automaton {
                Some(automaton) => text_maps.push(TextMap {
                    field,
                    automaton,
                    rules: rules
                        .into_iter()
                        .map(|mut v| {
                            v.dedup();
                            v.into_boxed_slice()
                        })
                        .collect(),
                }),
                // Too large an automaton (not expected): scan those rules.
                None => scan.extend(rules.into_iter().flatten()),
            }
        }
        scan.sort_unstable();
        scan.dedup();
        Some(TypeIndex {
            strs: strs
                .into_iter()
                .map(|(field, map)| ExactMap {
                    field,
                    map: done(map),
                })
                .collect(),
            lists: lists
                .into_iter()
                .map(|(field, map)| ExactMap {
                    field,
                    map: done(map),
                })
                .collect(),
            ints: ints
                .into_iter()
                .map(|(field, map)| IntMap {
                    field,
                    map: done(map),
                })
                .collect(),
            texts: text_maps,
            scan: scan.into_boxed_slice(),
        })
    }

    /// The positions in the list this index was built from of the rules that may match
    /// `event`, ascending.
    pub fn candidates<'s>(&self, event: &Event, scratch: &'s mut Scratch) -> &'s [u32] {
        let found = &mut scratch.found;
        found.clear();
        for g in &self.strs {
            if let Some(rules) = fields::str_value(event, g.field).and_then(|v| g.map.get(v)) {
                found.extend_from_slice(rules);
            }
        }
        for g in &self.lists {
            // Every item: the callback never stops the walk.
            fields::any_list_item(event, g.field, |item| {
                if let Some(rules) = g.map.get(item) {
                    found.extend_from_slice(rules);
                }
                false
            });
        }
        for g in &self.ints {
            if let Some(rules) = fields::int_value(event, g.field).and_then(|v| g.map.get(&v)) {
                found.extend_from_slice(rules);
            }
        }
        for g in &self.texts {
            if let Some(value) = fields::str_value(event, g.field) {
                for m in g.automaton.find_overlapping_iter(value.as_bytes()) {
                    found.extend_from_slice(&g.rules[m.pattern().as_usize()]);
                }
            }
        }
        found.sort_unstable();
        found.dedup();
        // Merge with the scanned rules (both ascending).
        let merged = &mut scratch.merged;
        merged.clear();
        let (mut a, mut b) = (found.iter().peekable(), self.scan.iter().peekable());
        loop {
            let next = match (a.peek(), b.peek()) {
                (Some(&&x), Some(&&y)) if x < y => a.next(),
                (Some(&&x), Some(&&y)) if x == y => {
                    a.next();
                    b.next()
                }
                (Some(_), Some(_)) => b.next(),
                (Some(_), None) => a.next(),
                (None, Some(_)) => b.next(),
                (None, None) => break,
            };
            if let Some(&pos) = next {
                merged.push(pos);
            }
        }
        merged
    }

    /// Rules evaluated for every event of the type.
    #[cfg(test)]
    pub fn scanned(&self) -> usize {
        self.scan.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::RuleSet;

    fn node(condition: &str) -> Node {
        let condition = serde_json::to_string(condition).expect("json");
        let text = format!(r#"{{"name": "t", "condition": {condition}, "risk_score": 0.5}}"#);
        let set = RuleSet::from_json("t.json", &text).expect("valid");
        set.rules[0].node.clone()
    }

    fn all_guards(condition: &str) -> Vec<Guard> {
        let mut out = Vec::new();
        guards(&node(condition), &mut out);
        out
    }

    fn strs(values: &[&str]) -> Vec<Box<str>> {
        values.iter().map(|&v| v.into()).collect()
    }

    fn lits(values: &[&str]) -> Vec<Box<[u8]>> {
        values.iter().map(|v| v.as_bytes().into()).collect()
    }

    #[test]
    fn guards_are_the_necessary_value_tests() {
        assert_eq!(
            all_guards(
                "event.type == 'process_exec' && process.name == 'nc' && !(process.user == 'root')"
            ),
            vec![Guard::Str(StrField::ProcessName, strs(&["nc"]))]
        );
        assert_eq!(
            all_guards("file.path.startswith('/etc/') && file.path.endswith('.conf')"),
            vec![
                Guard::Text(StrField::FilePath, lits(&["/etc/"])),
                Guard::Text(StrField::FilePath, lits(&[".conf"])),
            ]
        );
        assert_eq!(
            all_guards("net.dst_port in [4444, 5555] && ancestors in ['sshd']"),
            vec![
                Guard::Int(IntField::NetDstPort, vec![4444, 5555]),
                Guard::List(ListField::Ancestors, strs(&["sshd"])),
            ]
        );
        // Either branch: both on one field merge; exact values join text as text.
        assert_eq!(
            all_guards("process.name == 'a' || process.name in ['b', 'c']"),
            vec![Guard::Str(StrField::ProcessName, strs(&["a", "b", "c"]))]
        );
        assert_eq!(
            all_guards("file.path == '/etc/shadow' || file.path.contains('/.ssh/')"),
            vec![Guard::Text(
                StrField::FilePath,
                lits(&["/etc/shadow", "/.ssh/"])
            )]
        );
        // Regexes give the literals every match contains.
        assert_eq!(
            all_guards("process.cmdline.matches('implant[0-9]+ (-c|--connect)')"),
            vec![Guard::Text(StrField::Cmdline, lits(&["implant"]))]
        );
        // No guard: negations, different fields in branches, short text, parent.path,
        // inequalities, float sets, regexes without a required literal.
        for condition in [
            "!(process.name == 'a')",
            "process.name == 'a' || file.path == '/x'",
            "process.name == 'a' || process.user != 'root'",
            "file.path.contains('/x')",
            "parent.path == '/usr/bin/bash'",
            "process.name != 'a'",
            "net.dst_port > 1024",
            "net.dst_port in [1.5]",
            "process.cmdline.matches('(?i)stratum')",
        ] {
            assert_eq!(all_guards(condition), vec![], "{condition}");
        }
        // Inside macros too (the pack's `shell_process` is a macro).
        let text = r#"{"macros": {"sh": "process.name in ['sh', 'bash']"},
            "rules": [{"name": "t", "condition": "sh && file.path == '/x'", "risk_score": 0.5}]}"#;
        let set = RuleSet::from_json("t.json", text).expect("valid");
        let mut out = Vec::new();
        guards(&set.rules[0].node, &mut out);
        assert_eq!(
            out,
            vec![
                Guard::Str(StrField::ProcessName, strs(&["bash", "sh"])),
                Guard::Str(StrField::FilePath, strs(&["/x"])),
            ]
        );
    }

    #[test]
    fn small_types_and_small_groups_are_scanned() {
        let rule = |i: usize, condition: &str| {
            let condition = serde_json::to_string(condition).expect("json");
            format!(r#"{{"name": "r{i}", "condition": {condition}, "risk_score": 0.5}}"#)
        };
        let build = |conditions: &[String]| {
            let rules: Vec<String> = conditions
                .iter()
                .enumerate()
                .map(|(i, c)| rule(i, c))
                .collect();
            let set =
                RuleSet::from_json("t.json", &format!("[{}]", rules.join(","))).expect("valid");
            let nodes = &set.type_nodes[crate::event::EventType::ProcessExec as usize];
            TypeIndex::build(nodes).map(|i| i.scanned())
        };
        let named = |n: usize| {
            (0..n).map(|i| format!("event.type == 'process_exec' && process.name == 'p{i}'"))
        };
        assert_eq!(build(&named(MIN_INDEXED - 1).collect::<Vec<_>>()), None);
        assert_eq!(build(&named(MIN_INDEXED).collect::<Vec<_>>()), Some(0));
        // Guards on a field too few rules use are not worth a lookup.
        // A rule with such a guard and another is filed under the other.
        let mut mixed: Vec<String> = named(MIN_INDEXED).collect();
        mixed.extend(
            (0..MIN_GROUP - 1)
                .map(|i| format!("event.type == 'process_exec' && process.user == 'u{i}'")),
        );
        mixed.push(
            "event.type == 'process_exec' && process.path == '/x' && process.name == 'y'".into(),
        );
        assert_eq!(build(&mixed), Some(MIN_GROUP - 1));
    }
}
