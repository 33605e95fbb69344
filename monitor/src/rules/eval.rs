//! Compiled conditions and their evaluation.
//!
//! A condition is compiled once into a [`Node`] tree whose leaves read one field of the event
//! by reference: evaluating never allocates and never fails. A test of a field the event does
//! not have (an optional field that is absent) is false — including `!=`; `!` inverts the
//! result of the whole test.

use std::cell::Cell;
use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;

use memchr::memmem::Finder;
use regex::Regex;
use regex_syntax::hir::literal::{ExtractKind, Extractor};
use regex_syntax::hir::{Hir, HirKind, Look};

use super::edges::Edges;
use super::fields::{self, IntField, IpField, ListField, StrField, TextField, TypeMask, type_bit};
use super::parser::CmpOp;
use super::per_process::repeats_within_a_context;
use super::state::ProcTable;
use crate::event::{AddressText, ContextKey, Event, EventType};

/// What a condition is evaluated against: the event and the engine's process state.
pub struct Ctx<'a> {
    pub event: &'a Event,
    pub procs: &'a ProcTable,
    /// The event's time, nanoseconds since the epoch (for decaying `process.risk`).
    pub now_ns: i64,
    /// Macro results already computed for this event.
    pub memo: &'a Memo,
}

/// Per-event results of macros: a macro used by several rules (`package_management` is in
/// most of them) is evaluated once per event. Entries are stamped with the event's number, so
/// moving to the next event costs nothing.
///
/// It also keeps, for recent processes, the results of conditions on the process context
/// alone ([`Node::PerProcess`]), which last as long as the context does.
#[derive(Debug)]
pub struct Memo {
    stamp: u32,
    cells: Box<[Cell<u32>]>,
    contexts: ContextVerdicts,
}

impl Memo {
    /// A memo for `slots` macro results and no per-process results.
    pub fn new(slots: usize) -> Memo {
        Memo::with_process_slots(slots, 0)
    }

    pub fn with_process_slots(slots: usize, process_slots: usize) -> Memo {
        Memo {
            stamp: 1,
            cells: (0..slots).map(|_| Cell::new(0)).collect(),
            contexts: ContextVerdicts {
                words: process_slots.div_ceil(64),
                entries: Vec::new(),
                current: None,
            },
        }
    }

    /// Forgets every macro result, and finds the per-process results of `event`'s process
    /// context (call before each event).
    pub fn next_event(&mut self, event: &Event) {
        self.stamp += 1;
        if self.stamp >= u32::MAX >> 1 {
            self.stamp = 1;
            for cell in self.cells.iter() {
                cell.set(0);
            }
        }
        self.contexts.select(event);
    }

    fn get(&self, slot: u32) -> Option<bool> {
        let v = self.cells.get(slot as usize)?.get();
        (v >> 1 == self.stamp).then_some(v & 1 == 1)
    }

    fn set(&self, slot: u32, value: bool) {
        if let Some(cell) = self.cells.get(slot as usize) {
            cell.set(self.stamp << 1 | u32::from(value));
        }
    }
}

/// How many processes' verdicts a [`Memo`] keeps: one entry per pid modulo this (more than
/// the JSON writer's 64: a lost entry costs the rules more than a context's JSON).
const CONTEXT_ENTRIES: usize = 256;

/// The results of the per-process conditions for recent process contexts.
#[derive(Debug)]
struct ContextVerdicts {
    /// Words of 64 results per entry (none: the rules have no per-process condition).
    words: usize,
    entries: Vec<Option<Verdicts>>,
    /// The entry of the current event's context.
    current: Option<usize>,
}

/// One context's results: bit `n` of `known` says whether slot `n` was decided, the same bit
/// of `value` what it was decided to.
#[derive(Debug)]
struct Verdicts {
    key: ContextKey,
    known: Box<[Cell<u64>]>,
    value: Box<[Cell<u64>]>,
}

impl ContextVerdicts {
    fn select(&mut self, event: &Event) {
        self.current = None;
        // The types whose conditions have no per-process slots would only evict others.
        if self.words == 0 || !repeats_within_a_context(event.event_type) {
            return;
        }
        if self.entries.is_empty() {
            self.entries.resize_with(CONTEXT_ENTRIES, || None);
        }
        let index = event.pid as usize % CONTEXT_ENTRIES;
        self.current = Some(index);
        let Some(entry) = self.entries.get_mut(index) else {
            return;
        };
        match entry {
            Some(kept) if kept.key.matches(event) => {}
            Some(kept) => {
                kept.key.set_to(event);
                kept.known.iter().for_each(|word| word.set(0));
            }
            None => {
                let zeros = || (0..self.words).map(|_| Cell::new(0)).collect();
                *entry = Some(Verdicts {
                    key: ContextKey::of(event),
                    known: zeros(),
                    value: zeros(),
                });
            }
        }
    }

    fn current(&self) -> Option<&Verdicts> {
        self.entries.get(self.current?)?.as_ref()
    }

    fn get(&self, slot: u32) -> Option<bool> {
        let verdicts = self.current()?;
        let (word, bit) = (slot as usize / 64, 1u64 << (slot % 64));
        let known = verdicts.known.get(word)?.get() & bit != 0;
        known.then(|| verdicts.value.get(word).is_some_and(|v| v.get() & bit != 0))
    }

    fn set(&self, slot: u32, value: bool) {
        let Some(verdicts) = self.current() else {
            return;
        };
        let (word, bit) = (slot as usize / 64, 1u64 << (slot % 64));
        if let (Some(known), Some(values)) = (verdicts.known.get(word), verdicts.value.get(word)) {
            known.set(known.get() | bit);
            values.set(if value {
                values.get() | bit
            } else {
                values.get() & !bit
            });
        }
    }
}

/// FxHash (rustc's hasher): much cheaper than SipHash for the short keys hashed per event
/// (names looked up in fixed sets, pids). Lookups into fixed sets cannot be slowed down by
/// chosen keys beyond the set's own size.
#[derive(Clone, Copy, Debug, Default)]
pub struct FxBuild;

impl BuildHasher for FxBuild {
    type Hasher = FxHasher;

    fn build_hasher(&self) -> FxHasher {
        FxHasher(0)
    }
}

pub struct FxHasher(u64);

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A regex, and when every match must contain one of a few literal strings, searchers for
/// them: most haystacks are turned away by a substring search without running the regex.
/// An anchored regex also turns away haystacks by their first or last byte ([`Edges`]).
#[derive(Clone, Debug)]
pub struct Pattern {
    re: Regex,
    required: Option<Box<[Finder<'static>]>>,
    /// Boxed: two 32-byte sets, and nodes are walked for every event.
    edges: Option<Box<Edges>>,
    /// For a regex anchored at the start: texts one of which every match begins with.
    prefixes: Option<Box<[Box<[u8]>]>>,
}

/// More prefixes than this are not worth comparing one by one.
const MAX_PREFIXES: usize = 16;

/// More required literals than this are not worth searching for one by one.
const MAX_REQUIRED: usize = 8;
/// Shorter required literals are too common to reject much.
const MIN_REQUIRED_LEN: usize = 3;

impl Pattern {
    pub fn new(pattern: &str) -> Result<Pattern, regex::Error> {
        let re = Regex::new(pattern)?;
        let hir = regex_syntax::Parser::new().parse(pattern).ok();
        let required = hir
            .as_ref()
            .and_then(required_literals)
            .filter(|lits| {
                lits.len() <= MAX_REQUIRED && lits.iter().all(|l| l.len() >= MIN_REQUIRED_LEN)
            })
            .map(|lits| lits.iter().map(|l| Finder::new(l).into_owned()).collect());
        let edges = hir.as_ref().and_then(Edges::of).map(Box::new);
        let prefixes = hir.as_ref().and_then(anchored_prefixes);
        Ok(Pattern {
            re,
            required,
            edges,
            prefixes,
        })
    }

    pub fn is_match(&self, s: &str) -> bool {
        if let Some(edges) = &self.edges
            && !edges.allow(s.as_bytes())
        {
            return false;
        }
        // A few comparisons at the start of the text, where an anchored regex's match must
        // begin, in place of searching all of it for the required literals: the pack's
        // `^(/etc/crontab|/etc/cron[.]d/.+|…)` path patterns have up to eight of those, and
        // a path holding none of them (most) was searched eight times.
        if let Some(prefixes) = &self.prefixes {
            if !prefixes.iter().any(|p| begins_with(s.as_bytes(), p)) {
                return false;
            }
        } else if let Some(finders) = &self.required
            && !finders.iter().any(|f| f.find(s.as_bytes()).is_some())
        {
            return false;
        }
        self.re.is_match(s)
    }

    /// The regex as written.
    pub fn as_str(&self) -> &str {
        self.re.as_str()
    }

    /// Literals of which every match contains one (`None`: no such set is known).
    pub fn required_literals(&self) -> Option<Vec<&[u8]>> {
        self.required
            .as_ref()
            .map(|finders| finders.iter().map(|f| f.needle()).collect())
    }

    #[cfg(test)]
    pub fn required(&self) -> Vec<String> {
        self.required
            .iter()
            .flat_map(|f| f.iter())
            .map(|f| String::from_utf8_lossy(f.needle()).into_owned())
            .collect()
    }
}

/// Whether `text` begins with `prefix` (not empty): its last byte is compared first, which
/// turns most texts away without a call to compare slices.
fn begins_with(text: &[u8], prefix: &[u8]) -> bool {
    let last = prefix.len().wrapping_sub(1);
    text.get(last)
        .is_some_and(|&byte| Some(&byte) == prefix.last())
        && text.starts_with(prefix)
}

/// For a regex anchored at the start of the text (`^…`), texts one of which every match
/// begins with (`None`: not anchored, or no short set of non-empty ones is known). regex-syntax
/// finds them; when it cuts a literal short to keep the set small, the shorter text is still
/// one every match begins with.
fn anchored_prefixes(hir: &Hir) -> Option<Box<[Box<[u8]>]>> {
    if !hir.properties().look_set_prefix().contains(Look::Start) {
        return None;
    }
    let seq = Extractor::new().kind(ExtractKind::Prefix).extract(hir);
    let literals = seq.literals()?;
    let usable = !literals.is_empty()
        && literals.len() <= MAX_PREFIXES
        && literals.iter().all(|l| !l.is_empty());
    usable.then(|| literals.iter().map(|l| l.as_bytes().into()).collect())
}

/// Literals of which every match of `hir` contains at least one (`None`: no such set known).
fn required_literals(hir: &Hir) -> Option<Vec<Vec<u8>>> {
    match hir.kind() {
        HirKind::Literal(lit) => Some(vec![lit.0.to_vec()]),
        HirKind::Capture(cap) => required_literals(&cap.sub),
        HirKind::Repetition(rep) if rep.min >= 1 => required_literals(&rep.sub),
        HirKind::Concat(items) => items
            .iter()
            .filter_map(required_literals)
            .filter(|set| !set.is_empty() && set.iter().all(|l| !l.is_empty()))
            // The most selective: longest shortest literal, then fewest literals.
            .max_by_key(|set| {
                let shortest = set.iter().map(Vec::len).min().unwrap_or(0);
                (shortest.min(16), usize::MAX - set.len())
            }),
        HirKind::Alternation(items) => {
            let mut all = Vec::new();
            for item in items {
                all.extend(required_literals(item)?);
                if all.len() > MAX_REQUIRED {
                    return None;
                }
            }
            Some(all)
        }
        _ => None,
    }
}

impl Ctx<'_> {
    fn str_value(&self, field: StrField) -> Option<&str> {
        match field {
            StrField::ParentPath => Some(self.procs.exe(self.event.ppid).unwrap_or("")),
            other => fields::str_value(self.event, other),
        }
    }

    fn ip_value(&self, field: IpField) -> Option<IpAddr> {
        fields::ip_value(self.event, field)
    }

    /// The field as text; an address is spelled into `buf` (on the caller's stack).
    fn text<'b>(&'b self, field: TextField, buf: &'b mut Option<AddressText>) -> Option<&'b str> {
        match field {
            TextField::Str(f) => self.str_value(f),
            TextField::Ip(f) => Some(buf.insert(AddressText::ip(self.ip_value(f)?)).as_str()),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Number {
    Int(i64),
    Float(f64),
}

impl Number {
    fn as_f64(self) -> f64 {
        match self {
            Number::Int(i) => i as f64,
            Number::Float(x) => x,
        }
    }

    pub fn compare(self, op: CmpOp, other: Number) -> bool {
        match (self, other) {
            (Number::Int(a), Number::Int(b)) => op.holds(a, b),
            _ => op.holds(self.as_f64(), other.as_f64()),
        }
    }
}

#[derive(Clone, Debug)]
pub enum NumExpr {
    Field(IntField),
    Risk,
    Const(Number),
    BitAnd(Box<NumExpr>, i64),
}

impl NumExpr {
    fn eval(&self, ctx: &Ctx<'_>) -> Option<Number> {
        match self {
            NumExpr::Field(f) => fields::int_value(ctx.event, *f).map(Number::Int),
            NumExpr::Risk => Some(Number::Float(ctx.procs.risk(ctx.event.pid, ctx.now_ns))),
            NumExpr::Const(n) => Some(*n),
            NumExpr::BitAnd(inner, mask) => match inner.eval(ctx)? {
                Number::Int(i) => Some(Number::Int(i & mask)),
                Number::Float(_) => None,
            },
        }
    }
}

/// A set of strings: a scan for a few, a hash set for many; either way behind a check of
/// the lengths present, which turns most strings away at once.
#[derive(Clone, Debug)]
pub struct StrSet {
    /// Bit `n` (n < 63): an item of length n; bit 63: an item of length 63 or more.
    lengths: u64,
    items: Items,
}

#[derive(Clone, Debug)]
enum Items {
    Few(Box<[Box<str>]>),
    Many(HashSet<Box<str>, FxBuild>),
}

fn length_bit(len: usize) -> u64 {
    1 << len.min(63)
}

impl StrSet {
    pub fn new(items: Vec<String>) -> StrSet {
        let mut items: Vec<Box<str>> = items.into_iter().map(String::into_boxed_str).collect();
        items.sort();
        items.dedup();
        let lengths = items.iter().fold(0, |m, i| m | length_bit(i.len()));
        let items = if items.len() <= 8 {
            Items::Few(items.into_boxed_slice())
        } else {
            Items::Many(items.into_iter().collect())
        };
        StrSet { lengths, items }
    }

    pub fn items(&self) -> impl Iterator<Item = &str> {
        let (few, many) = match &self.items {
            Items::Few(items) => (Some(items.iter()), None),
            Items::Many(set) => (None, Some(set.iter())),
        };
        few.into_iter()
            .flatten()
            .chain(many.into_iter().flatten())
            .map(|s| &**s)
    }

    pub fn contains(&self, s: &str) -> bool {
        if self.lengths & length_bit(s.len()) == 0 {
            return false;
        }
        match &self.items {
            Items::Few(items) => items.iter().any(|i| **i == *s),
            Items::Many(set) => set.contains(s),
        }
    }
}

/// Text a `.contains()` looks for, with its searcher built once: `str::contains` set up a
/// two-way searcher on every call, which cost more than the search itself on the short
/// paths and command lines tested for every event (a tenth of the rule engine's work).
#[derive(Clone, Debug)]
pub struct Substring {
    text: Box<str>,
    /// Boxed: a searcher is ~300 bytes, and nodes are walked for every event.
    finder: Box<Finder<'static>>,
}

impl Substring {
    pub fn new(text: &str) -> Substring {
        Substring {
            text: text.into(),
            finder: Box::new(Finder::new(text.as_bytes()).into_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn into_text(self) -> Box<str> {
        self.text
    }

    fn is_in(&self, haystack: &str) -> bool {
        self.finder.find(haystack.as_bytes()).is_some()
    }
}

#[derive(Clone, Debug)]
pub enum StrTest {
    Eq(Box<str>),
    Ne(Box<str>),
    Contains(Substring),
    StartsWith(Box<str>),
    EndsWith(Box<str>),
    Matches(Pattern),
    In(StrSet),
}

impl StrTest {
    pub(super) fn test(&self, s: &str) -> bool {
        match self {
            StrTest::Eq(v) => s == &**v,
            StrTest::Ne(v) => s != &**v,
            StrTest::Contains(v) => v.is_in(s),
            StrTest::StartsWith(v) => s.starts_with(&**v),
            StrTest::EndsWith(v) => s.ends_with(&**v),
            StrTest::Matches(re) => re.is_match(s),
            StrTest::In(set) => set.contains(s),
        }
    }
}

/// An IPv4 or IPv6 network (a single address is a /32 or /128).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Parses `10.0.0.0/8`, `fe80::/10` or a single address.
    pub fn parse(text: &str) -> Option<IpNet> {
        let (addr_text, prefix_text) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr = unmap(addr_text.trim().parse::<IpAddr>().ok()?);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let mapped_v4 =
            matches!(addr_text.trim().parse::<IpAddr>(), Ok(IpAddr::V6(_))) && addr.is_ipv4();
        let prefix = match prefix_text {
            None => max,
            Some(p) => {
                let p: u8 = p.trim().parse().ok()?;
                // A prefix written for the mapped v6 form (::ffff:10.0.0.0/104) → v4 prefix.
                let p = if mapped_v4 { p.checked_sub(96)? } else { p };
                if p > max {
                    return None;
                }
                p
            }
        };
        Some(IpNet { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, unmap(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// `::ffff:a.b.c.d` (how dual-stack sockets show IPv4 peers) is the IPv4 address.
fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

#[derive(Clone, Debug)]
pub enum Node {
    Const(bool),
    All(Box<[Node]>),
    Any(Box<[Node]>),
    Not(Box<Node>),
    /// The event's type is in the set.
    Types(TypeMask),
    Str(StrField, StrTest),
    /// Any element of the list passes the test.
    List(ListField, StrTest),
    /// Two fields equal (`true`) or differ (`false`): two addresses as addresses, otherwise as
    /// text.
    StrPair(TextField, TextField, bool),
    /// The address equals (`true`) or differs from (`false`) the one a rule names (`None`: the
    /// rule's text is no address, so equal to none).
    IpEq(IpField, Option<IpAddr>, bool),
    /// The address is in one of the networks.
    Ip(IpField, Box<[IpNet]>),
    /// The address's text passes the test (`.startswith("10.")` and the other methods).
    IpText(IpField, StrTest),
    Num(NumExpr, CmpOp, NumExpr),
    NumIn(NumExpr, Box<[Number]>),
    /// A macro's condition, evaluated at most once per event (the slot is its memo entry).
    Memo(u32, Box<Node>),
    /// A condition on the process context alone (the fields of [`ContextKey`]), evaluated
    /// once per context rather than once per event (the slot is its entry in the memo's
    /// per-process results). See [`super::per_process`].
    PerProcess(u32, Box<Node>),
}

impl Node {
    pub fn eval(&self, ctx: &Ctx<'_>) -> bool {
        match self {
            Node::Const(b) => *b,
            Node::All(nodes) => nodes.iter().all(|n| n.eval(ctx)),
            Node::Any(nodes) => nodes.iter().any(|n| n.eval(ctx)),
            Node::Not(n) => !n.eval(ctx),
            Node::Types(mask) => mask & type_bit(ctx.event.event_type) != 0,
            Node::Str(field, test) => ctx.str_value(*field).is_some_and(|s| test.test(s)),
            Node::List(field, test) => fields::any_list_item(ctx.event, *field, |s| test.test(s)),
            Node::StrPair(TextField::Ip(a), TextField::Ip(b), equal) => {
                match (ctx.ip_value(*a), ctx.ip_value(*b)) {
                    (Some(a), Some(b)) => (a == b) == *equal,
                    _ => false,
                }
            }
            Node::StrPair(a, b, equal) => {
                let (mut a_buf, mut b_buf) = (None, None);
                match (ctx.text(*a, &mut a_buf), ctx.text(*b, &mut b_buf)) {
                    (Some(a), Some(b)) => (a == b) == *equal,
                    _ => false,
                }
            }
            Node::IpEq(field, ip, equal) => ctx
                .ip_value(*field)
                .is_some_and(|value| (Some(value) == *ip) == *equal),
            Node::Ip(field, nets) => ctx
                .ip_value(*field)
                .is_some_and(|ip| nets.iter().any(|n| n.contains(ip))),
            Node::IpText(field, test) => ctx
                .ip_value(*field)
                .is_some_and(|ip| test.test(AddressText::ip(ip).as_str())),
            Node::Num(a, op, b) => match (a.eval(ctx), b.eval(ctx)) {
                (Some(a), Some(b)) => a.compare(*op, b),
                _ => false,
            },
            Node::NumIn(a, set) => a
                .eval(ctx)
                .is_some_and(|a| set.iter().any(|&b| a.compare(CmpOp::Eq, b))),
            Node::Memo(slot, inner) => match ctx.memo.get(*slot) {
                Some(v) => v,
                None => {
                    let v = inner.eval(ctx);
                    ctx.memo.set(*slot, v);
                    v
                }
            },
            Node::PerProcess(slot, inner) => match ctx.memo.contexts.get(*slot) {
                Some(v) => v,
                None => {
                    let v = inner.eval(ctx);
                    ctx.memo.contexts.set(*slot, v);
                    v
                }
            },
        }
    }
}

impl Node {
    /// The node with its type tests decided for events of type `t` (each `Types` a
    /// constant): what [`RuleSet`](super::RuleSet) simplifies into the condition a type's
    /// list evaluates. A rule is evaluated only for the types it is listed under, so its
    /// `event.type == '…'` conjuncts are known to hold there, and of a rule written as one
    /// branch per type only the event's branch is left after simplifying.
    pub(crate) fn with_types_decided(&self, t: EventType) -> Node {
        let decide = |nodes: &[Node]| nodes.iter().map(|n| n.with_types_decided(t)).collect();
        match self {
            Node::Types(mask) => Node::Const(mask & type_bit(t) != 0),
            Node::Not(inner) => Node::Not(Box::new(inner.with_types_decided(t))),
            Node::All(nodes) => Node::All(decide(nodes)),
            Node::Any(nodes) => Node::Any(decide(nodes)),
            // Every use of a macro on this type is decided the same way, so its memo entry
            // still holds one node's result.
            Node::Memo(slot, inner) => Node::Memo(*slot, Box::new(inner.with_types_decided(t))),
            Node::PerProcess(slot, inner) => {
                Node::PerProcess(*slot, Box::new(inner.with_types_decided(t)))
            }
            other => other.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks() {
        let net = IpNet::parse("10.0.0.0/8").expect("valid");
        assert!(net.contains("10.200.3.4".parse().expect("ip")));
        assert!(!net.contains("11.0.0.1".parse().expect("ip")));
        assert!(net.contains("::ffff:10.1.2.3".parse().expect("ip")));
        let net = IpNet::parse("fe80::/10").expect("valid");
        assert!(net.contains("fe80::1".parse().expect("ip")));
        assert!(!net.contains("2001:db8::1".parse().expect("ip")));
        let all = IpNet::parse("0.0.0.0/0").expect("valid");
        assert!(all.contains("1.2.3.4".parse().expect("ip")));
        assert!(!all.contains("::1".parse().expect("ip")));
        let one = IpNet::parse("127.0.0.1").expect("valid");
        assert!(one.contains("127.0.0.1".parse().expect("ip")));
        assert!(!one.contains("127.0.0.2".parse().expect("ip")));
        let mapped = IpNet::parse("::ffff:192.168.0.0/112").expect("valid");
        assert!(mapped.contains("192.168.7.7".parse().expect("ip")));
        for bad in [
            "10.0.0.0/33",
            "10.0.0/8",
            "fe80::/129",
            "x",
            "10.0.0.0/-1",
            "",
        ] {
            assert_eq!(IpNet::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn numbers_compare_across_kinds() {
        assert!(Number::Int(3).compare(CmpOp::Lt, Number::Float(3.5)));
        assert!(Number::Float(0.5).compare(CmpOp::Ge, Number::Float(0.5)));
        assert!(Number::Int(i64::MAX).compare(CmpOp::Gt, Number::Int(i64::MAX - 1)));
    }

    #[test]
    fn string_sets() {
        let few = StrSet::new(vec!["a".into(), "b".into(), "a".into()]);
        assert!(matches!(few.items, Items::Few(ref v) if v.len() == 2));
        assert!(few.contains("b") && !few.contains("c") && !few.contains("bb"));
        let many = StrSet::new((0..20).map(|i| i.to_string()).collect());
        assert!(matches!(many.items, Items::Many(_)));
        assert!(many.contains("19") && !many.contains("20") && !many.contains(""));
        let long = "x".repeat(100);
        let set = StrSet::new(vec![long.clone(), "y".repeat(70)]);
        assert!(set.contains(&long) && !set.contains(&"x".repeat(99)));
        let empty = StrSet::new(Vec::new());
        assert!(!empty.contains("") && !empty.contains("a"));
        let with_empty = StrSet::new(vec![String::new()]);
        assert!(with_empty.contains(""));
    }

    #[test]
    fn regex_prefilters() {
        let cases: &[(&str, &[&str])] = &[
            ("^/proc/[0-9]+/(task/[0-9]+/)?mem$", &["/proc/"]),
            (
                "^(.*/[.]ssh/(id_[a-z0-9_]+|identity)|/etc/ssh/ssh_host_[a-z0-9_]+_key)$",
                &["/.ssh/", "/etc/ssh/ssh_host_"],
            ),
            ("(?s)^.*/dev/(tcp|udp)/.*$", &["/dev/"]),
            ("(?i)^.*(stratum|donate).*$", &[]),
            ("^/tmp/[^/]+$", &["/tmp/"]),
            ("a|bc", &[]),
            ("(abc)?def", &["def"]),
            ("x*", &[]),
        ];
        for (pattern, required) in cases {
            let p = Pattern::new(pattern).expect("valid");
            assert_eq!(p.required(), *required, "{pattern}");
        }
        // The prefilter never changes the answer.
        let p =
            Pattern::new("^(.*/[.]ssh/(id_[a-z0-9_]+|identity)|/etc/ssh/ssh_host_[a-z0-9_]+_key)$")
                .expect("valid");
        assert!(p.is_match("/home/a/.ssh/id_rsa"));
        assert!(p.is_match("/etc/ssh/ssh_host_ed25519_key"));
        assert!(!p.is_match("/etc/ssh/sshd_config"));
        assert!(!p.is_match("/home/a/.ssh/known_hosts"));
    }

    #[test]
    fn anchored_regexes_give_the_texts_their_matches_begin_with() {
        let prefixes = |pattern: &str| -> Vec<String> {
            Pattern::new(pattern)
                .expect("valid")
                .prefixes
                .iter()
                .flat_map(|p| p.iter())
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect()
        };
        assert_eq!(
            prefixes("^(/etc/crontab|/var/spool/cron/.+)$"),
            ["/etc/crontab", "/var/spool/cron/"]
        );
        // Small classes are spelled out.
        let digits: Vec<String> = (0..10).map(|d| format!("/proc/{d}")).collect();
        assert_eq!(prefixes("^/proc/[0-9]+/mem$"), digits);
        // Not anchored, anchored per line, or a match may begin with anything.
        for pattern in ["/etc/crontab", "(?m)^/etc/x", "^(/etc/x|.*y)", "^a?"] {
            assert!(prefixes(pattern).is_empty(), "{pattern}");
        }
    }

    /// Every regex of the shipped pack, and the texts of its rules' test events (process
    /// names, paths, command lines, arguments, ancestors), many of which the regexes match.
    /// Loaded once for all the cases.
    fn pack() -> &'static (Vec<Pattern>, Vec<String>) {
        static PACK: std::sync::OnceLock<(Vec<Pattern>, Vec<String>)> = std::sync::OnceLock::new();
        PACK.get_or_init(load_pack)
    }

    fn load_pack() -> (Vec<Pattern>, Vec<String>) {
        fn walk(node: &Node, out: &mut Vec<Pattern>) {
            match node {
                Node::All(nodes) | Node::Any(nodes) => nodes.iter().for_each(|n| walk(n, out)),
                Node::Not(inner) | Node::Memo(_, inner) => walk(inner, out),
                Node::Str(_, StrTest::Matches(p))
                | Node::List(_, StrTest::Matches(p))
                | Node::IpText(_, StrTest::Matches(p)) => out.push(p.clone()),
                _ => {}
            }
        }
        let dirs = [std::path::PathBuf::from(super::super::SOURCE_RULES_DIR)];
        let set = super::super::RuleSet::load(&dirs).expect("the shipped pack");
        let mut patterns = Vec::new();
        set.rules
            .iter()
            .for_each(|rule| walk(&rule.node, &mut patterns));
        let mut texts = Vec::new();
        let events = set
            .rules
            .iter()
            .flat_map(|r| &r.tests)
            .flat_map(|t| std::iter::once(&t.event).chain(&t.after));
        for e in events {
            texts.extend(
                [&e.process, &e.exe, &e.cmdline, &e.parent_process]
                    .into_iter()
                    .chain(&e.ancestors)
                    .map(|s| s.as_str().to_string()),
            );
            texts.extend(e.file_path.iter().chain(&e.new_path).cloned());
            texts.extend(e.argv.iter().flatten().map(|a| a.to_string()));
        }
        texts.sort();
        texts.dedup();
        (patterns, texts)
    }

    /// The pack's regexes with their prefilters (first and last bytes, prefixes, required
    /// literals) answer every text of the pack's tests as the regexes alone do.
    #[test]
    fn prefilters_never_change_an_answer_on_the_pack_tests() {
        let (patterns, texts) = pack();
        let mut matched = 0;
        for pattern in patterns {
            for text in texts {
                let expected = pattern.re.is_match(text);
                assert_eq!(
                    pattern.is_match(text),
                    expected,
                    "{} on {text:?}",
                    pattern.re.as_str()
                );
                matched += usize::from(expected);
            }
        }
        assert!(
            patterns.len() > 100 && matched > 200,
            "{} patterns, {matched} matches",
            patterns.len()
        );
    }

    proptest::proptest! {
        /// The same on texts built from pieces of those texts and of the literals the
        /// prefilters look for, whole or cut short, and random text.
        #[test]
        fn prefilters_never_change_an_answer_of_the_pack(
            picks in proptest::collection::vec((0usize..100_000, 0usize..100), 0..4),
            random in "[ -~é]{0,4}",
            which in 0usize..10_000,
        ) {
            let (patterns, texts) = pack();
            let mut pieces: Vec<&[u8]> = vec![b"/", random.as_bytes()];
            pieces.extend(texts.iter().map(|t| t.as_bytes()));
            for p in patterns {
                pieces.extend(p.prefixes.iter().flat_map(|ps| ps.iter()).map(|l| &**l));
                pieces.extend(p.required_literals().unwrap_or_default());
            }
            let mut text = Vec::new();
            for (piece, cut) in picks {
                let piece = pieces[piece % pieces.len()];
                text.extend_from_slice(&piece[..piece.len() - cut % (piece.len() / 2 + 1)]);
            }
            let text = String::from_utf8_lossy(&text);
            let pattern = &patterns[which % patterns.len()];
            proptest::prop_assert_eq!(
                pattern.is_match(&text),
                pattern.re.is_match(&text),
                "{} on {:?}",
                pattern.re.as_str(),
                text
            );
        }
    }

    #[test]
    fn memo_forgets_between_events() {
        let event = Event::new(EventType::FileOpen, chrono::DateTime::UNIX_EPOCH);
        let mut memo = Memo::new(2);
        assert_eq!(memo.get(0), None);
        memo.set(0, true);
        memo.set(1, false);
        assert_eq!((memo.get(0), memo.get(1)), (Some(true), Some(false)));
        memo.next_event(&event);
        assert_eq!((memo.get(0), memo.get(1)), (None, None));
        assert_eq!(memo.get(7), None);
        memo.set(7, true);
        memo.stamp = u32::MAX >> 1;
        memo.set(0, true);
        memo.next_event(&event);
        assert_eq!(memo.get(0), None);
        assert_eq!(memo.cells.len(), 2);
    }

    /// Per-process results last while the event's process context is the same allocation,
    /// across events, and are forgotten when any part of it changes.
    #[test]
    fn per_process_results_last_as_long_as_the_context() {
        let mut first = Event::new(EventType::FileOpen, chrono::DateTime::UNIX_EPOCH);
        first.pid = 7;
        first.process = "bash".into();
        first.ancestors = vec!["sshd".into()];
        let mut memo = Memo::with_process_slots(1, 130);
        // Before any event, and with no per-process slots, nothing is kept.
        memo.contexts.set(3, true);
        assert_eq!(memo.contexts.get(3), None);
        memo.next_event(&first);
        for slot in [0, 63, 64, 129] {
            assert_eq!(memo.contexts.get(slot), None);
            memo.contexts.set(slot, slot % 2 == 1);
        }
        assert_eq!(memo.contexts.get(130), None, "beyond the slots");
        memo.contexts.set(130, true);
        let mut same = first.clone();
        same.file_path = Some("/etc/passwd".into());
        memo.next_event(&same);
        assert_eq!(memo.contexts.get(63), Some(true));
        assert_eq!(memo.contexts.get(64), Some(false));
        assert_eq!(memo.contexts.get(129), Some(true));
        assert_eq!(memo.contexts.get(1), None);
        let changes: [fn(&mut Event); 6] = [
            |e| e.process = "bash".into(),
            |e| e.cmdline = "bash -i".into(),
            |e| e.ancestors.push("systemd".into()),
            |e| e.ancestors[0] = "sshd".into(),
            |e| e.uid = 1000,
            |e| e.ppid = 1,
        ];
        for change in changes {
            let mut changed = first.clone();
            change(&mut changed);
            memo.next_event(&changed);
            assert_eq!(memo.contexts.get(63), None, "a changed context");
            memo.next_event(&first);
            memo.contexts.set(63, true);
        }
        // Another process in the same entry takes it over.
        let mut other = first.clone();
        other.pid = 7 + CONTEXT_ENTRIES as u32;
        other.process = "sh".into();
        memo.next_event(&other);
        assert_eq!(memo.contexts.get(63), None);
        let mut none = Memo::new(1);
        none.next_event(&first);
        none.contexts.set(0, true);
        assert_eq!(none.contexts.get(0), None);
    }
}
