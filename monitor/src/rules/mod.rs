//! The rule engine: JSON rule files, a small condition language, and the evaluator that
//! scores every event (docs/rules.md describes the language for rule authors).
//!
//! - [`RuleSet`]: rules compiled once from files (conditions → evaluable trees, names and
//!   types checked, regexes compiled), indexed by event type. Immutable apart from each
//!   rule's enabled flag and hit counter (atomics).
//! - [`RuleEngine`]: the shared, cloneable handle. Holds the current set behind an atomic
//!   swap; [`RuleEngine::reload`] builds and validates a complete new set before swapping it
//!   in, so an event is always evaluated against one whole set, old or new. Per-rule
//!   enable/disable and the list the TUI shows go through it.
//! - [`Evaluator`]: owned by the analysis stage; per-process state (accumulated risk, recent
//!   hits for `requires` chains, parent links), scoring, and filling `event.analysis`.
//! - [`watch`]: reloads on changes in the rule directories.

pub mod attack;
pub mod cli;
mod compile;
mod edges;
mod engine;
mod eval;
mod fields;
mod index;
mod json;
mod lexer;
mod load;
mod parser;
mod per_process;
mod reference;
mod state;
pub mod testing;
mod watch;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;

pub use engine::{Evaluator, EvaluatorOptions, HEURISTIC_CONFIDENCE, MALICIOUS_THRESHOLD, Outcome};
pub use load::{Diagnostic, SourceFile};
pub use watch::{RulesWatcher, reload_and_report, reload_on_sighup, watch};

use crate::event::EventType;
use eval::Node;
use fields::TypeMask;
use per_process::{ProcessSlots, decide_per_process};

/// Where an installed secmon finds its rules.
pub const SYSTEM_RULES_DIR: &str = "/usr/local/share/secmon/rules";
/// The rule pack in the source tree (used when nothing is installed).
pub const SOURCE_RULES_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../rules");

/// The rule directory to use when none is given: the installed pack if there is one, else
/// the source tree's.
pub fn default_rules_dir() -> PathBuf {
    let system = Path::new(SYSTEM_RULES_DIR);
    if system.is_dir() {
        system.to_path_buf()
    } else {
        PathBuf::from(SOURCE_RULES_DIR)
    }
}

/// The directories a monitor loads: `explicit` (`--rules DIR`) or the default, then the
/// config's extra `rules_dirs`.
pub fn rules_dirs(explicit: Option<&Path>, extra: &[PathBuf]) -> Vec<PathBuf> {
    let mut dirs = vec![explicit.map_or_else(default_rules_dir, Path::to_path_buf)];
    for dir in extra {
        if !dirs.contains(dir) {
            dirs.push(dir.clone());
        }
    }
    dirs
}

#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// Problems in the rule files, one per line (`file:line:column: expected X, found Y`).
    #[error("{}", join_lines(.0))]
    Invalid(Vec<Diagnostic>),
    #[error("no rule named `{0}`")]
    UnknownRule(String),
    #[error("cannot watch {path}: {message}")]
    Watch { path: PathBuf, message: String },
}

fn join_lines(diags: &[Diagnostic]) -> String {
    diags
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl RulesError {
    /// One line: the first problem, and how many more there are.
    pub fn summary(&self) -> String {
        match self {
            RulesError::Invalid(diags) if diags.len() > 1 => {
                format!("{} (and {} more problems)", diags[0], diags.len() - 1)
            }
            other => other.to_string(),
        }
    }
}

/// What a rule asks for when it matches (the response stage acts on it; the engine only
/// reports it). Ordered from weakest to strongest.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    Log,
    Alert,
    SimulateBlock,
    Block,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Log => "log",
            Action::Alert => "alert",
            Action::SimulateBlock => "simulate_block",
            Action::Block => "block",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whose earlier hits satisfy a `requires` chain.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The same process (pid).
    Process,
    /// The process, its ancestors, and (because a prerequisite's hit is also kept on its
    /// parent) its siblings: `curl -o /tmp/x; /tmp/x` in one shell.
    ProcessTree,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Process => "process",
            Scope::ProcessTree => "process_tree",
        }
    }
}

/// A `requires` link, resolved.
#[derive(Clone, Debug)]
pub struct Requirement {
    /// Index of the required rule in the set.
    pub(crate) rule: u32,
    pub rule_name: String,
    pub within_ns: i64,
    pub scope: Scope,
}

/// Where a prerequisite's hits are kept.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Record {
    /// No rule requires this one.
    None,
    Process,
    ProcessAndParent,
}

/// What a rule documents about itself (its optional `tactic`, `techniques`, `what`, `why` and
/// `false_positives` keys): shown by `rules list --markdown` and where a rule's details are.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleDoc {
    /// The ATT&CK tactics, the main one first.
    pub tactics: Vec<attack::Tactic>,
    /// ATT&CK technique ids (`T1059.004`), checked by shape.
    pub techniques: Vec<String>,
    pub what: String,
    pub why: String,
    pub false_positives: String,
}

impl RuleDoc {
    /// `execution, defense_evasion` (empty without a tactic).
    pub fn tactic_keys(&self) -> String {
        let keys: Vec<&str> = self.tactics.iter().map(|t| t.key()).collect();
        keys.join(", ")
    }
}

/// A rule's descriptive part.
#[derive(Clone, Debug)]
pub struct RuleMeta {
    pub name: String,
    pub description: String,
    pub doc: RuleDoc,
    pub label: String,
    pub recommendation: String,
    pub tags: Vec<String>,
    pub action: Action,
    pub score: f64,
    pub file: PathBuf,
    /// Line of the rule object in its file.
    pub line: usize,
    /// Enabled in the file (`enabled`, default true).
    pub enabled: bool,
    /// The event types the rule is evaluated on (given, or inferred from the condition).
    pub event_types: Vec<EventType>,
    pub condition: String,
}

/// An embedded test: `event` should (not) match the rule, after `after` went through a
/// fresh evaluator.
#[derive(Clone, Debug)]
pub struct RuleTest {
    pub event: crate::event::Event,
    pub after: Vec<crate::event::Event>,
    pub expect: bool,
    /// Line of the test object in the rule file.
    pub line: usize,
}

pub struct CompiledRule {
    pub meta: RuleMeta,
    pub(crate) node: Node,
    pub(crate) types: TypeMask,
    pub requires: Option<Requirement>,
    pub(crate) record: Record,
    /// Length of the `requires` chain below this rule (prerequisites are evaluated first).
    pub(crate) depth: usize,
    pub tests: Vec<RuleTest>,
    pub(crate) enabled: AtomicBool,
    pub(crate) hits: AtomicU64,
}

impl CompiledRule {
    pub(crate) fn new(
        meta: RuleMeta,
        node: Node,
        types: TypeMask,
        requires: Option<Requirement>,
        record: Record,
        depth: usize,
        tests: Vec<RuleTest>,
    ) -> CompiledRule {
        let enabled = AtomicBool::new(meta.enabled);
        CompiledRule {
            meta,
            node,
            types,
            requires,
            record,
            depth,
            tests,
            enabled,
            hits: AtomicU64::new(0),
        }
    }

    pub fn name(&self) -> &str {
        &self.meta.name
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }
}

impl fmt::Debug for CompiledRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompiledRule")
            .field("name", &self.meta.name)
            .field("types", &self.types)
            .field("enabled", &self.is_enabled())
            .finish_non_exhaustive()
    }
}

/// What `rules list` and the TUI's rule pane show.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleInfo {
    pub name: String,
    pub label: String,
    pub description: String,
    pub doc: RuleDoc,
    pub score: f64,
    pub action: Action,
    pub tags: Vec<String>,
    pub enabled: bool,
    pub hits: u64,
    pub file: PathBuf,
    pub line: usize,
    pub event_types: Vec<EventType>,
}

/// The shared lists and macros of the loaded files as written (for the rule reference; the
/// compiled rules have them inlined).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Definitions {
    /// Each list's entries (numbers as written), over every file that defines it.
    pub lists: BTreeMap<String, Vec<String>>,
    /// Each macro's condition text.
    pub macros: BTreeMap<String, String>,
    /// The files defining lists or macros, in load order.
    pub files: Vec<PathBuf>,
}

/// A compiled, validated set of rules.
#[derive(Debug)]
pub struct RuleSet {
    pub(crate) rules: Vec<CompiledRule>,
    /// For each event type, the rules to evaluate, prerequisites first (without the rules
    /// that can never match the type).
    pub(crate) by_type: Vec<Box<[u32]>>,
    /// For each event type, the conditions of `by_type`'s rules (same positions) as they
    /// evaluate on that type: their type tests decided ([`Node::with_types_decided`]) and
    /// simplified, then their costly conditions on the process alone behind per-process
    /// slots ([`per_process`]). Evaluation has no effect beyond its result (a memo only caches
    /// it), so the verdicts are the same; a rule whose condition is then `false` is left out
    /// of the type's list.
    pub(crate) type_nodes: Vec<Box<[Node]>>,
    /// `0, 1, 2, …` as long as the longest `by_type` list: the positions to evaluate when a
    /// type has no index.
    pub(crate) every_position: Box<[u32]>,
    /// For each event type with many rules, which of them an event's values can match.
    pub(crate) indexes: Vec<Option<index::TypeIndex>>,
    /// Rules that another rule `requires` (evaluated even when disabled, silently).
    pub(crate) required: Vec<bool>,
    files: Vec<PathBuf>,
    /// Whether the evaluator must learn every process's parent and executable (conditions
    /// read `parent.path`, or chains look up the process tree).
    pub(crate) track_all: bool,
    /// Macro memo entries an evaluation needs.
    pub(crate) memo_slots: usize,
    /// Per-process results an evaluation keeps (the `PerProcess` slots of `type_nodes`).
    pub(crate) process_slots: usize,
    index: HashMap<String, u32>,
    pub(crate) definitions: Definitions,
}

/// The result of a (re)load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReloadSummary {
    pub rules: usize,
    pub files: usize,
}

impl fmt::Display for ReloadSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} rules from {} files", self.rules, self.files)
    }
}

impl RuleSet {
    pub(crate) fn new(
        mut rules: Vec<CompiledRule>,
        files: Vec<PathBuf>,
        track_all: bool,
        memo_slots: usize,
    ) -> RuleSet {
        let mut roots: Vec<&mut Node> = rules.iter_mut().map(|r| &mut r.node).collect();
        let memo_slots = compile::share_repeated_searches(&mut roots, memo_slots);
        let mut by_type = Vec::with_capacity(EventType::ALL.len());
        let mut type_nodes = Vec::with_capacity(EventType::ALL.len());
        let mut process_slots = ProcessSlots::default();
        for t in EventType::ALL {
            let bit = fields::type_bit(t);
            let mut ids: Vec<u32> = (0..rules.len() as u32)
                .filter(|&i| rules[i as usize].types & bit != 0)
                .collect();
            ids.sort_by_key(|&i| (rules[i as usize].depth, i));
            let (ids, nodes): (Vec<u32>, Vec<Node>) = ids
                .into_iter()
                .map(|i| {
                    let node = &rules[i as usize].node;
                    (i, compile::simplify(node.with_types_decided(t)))
                })
                .filter(|(_, node)| !matches!(node, Node::Const(false)))
                .map(|(i, node)| (i, decide_per_process(node, t, &mut process_slots)))
                .unzip();
            by_type.push(ids.into_boxed_slice());
            type_nodes.push(nodes.into_boxed_slice());
        }
        let indexes = type_nodes
            .iter()
            .map(|nodes| index::TypeIndex::build(nodes))
            .collect();
        let longest = by_type.iter().map(|ids| ids.len()).max().unwrap_or(0);
        let every_position = (0..longest as u32).collect();
        let mut required = vec![false; rules.len()];
        for r in &rules {
            if let Some(req) = &r.requires {
                required[req.rule as usize] = true;
            }
        }
        let index = rules
            .iter()
            .enumerate()
            .map(|(i, r)| (r.meta.name.clone(), i as u32))
            .collect();
        RuleSet {
            rules,
            by_type,
            type_nodes,
            every_position,
            indexes,
            required,
            files,
            track_all,
            memo_slots,
            process_slots: process_slots.len(),
            index,
            definitions: Definitions::default(),
        }
    }

    pub fn empty() -> RuleSet {
        RuleSet::new(Vec::new(), Vec::new(), false, 0)
    }

    /// The set with every event type scanned rule by rule (to compare with the index).
    #[cfg(test)]
    pub(crate) fn without_indexes(mut self) -> RuleSet {
        self.indexes.iter_mut().for_each(|i| *i = None);
        self
    }

    /// Loads every `*.json` file under the directories.
    pub fn load(dirs: &[PathBuf]) -> Result<RuleSet, RulesError> {
        let (files, mut problems) = load::read_dirs(dirs);
        match load::compile_files(files) {
            Ok(set) if problems.is_empty() => Ok(set),
            Ok(_) => Err(RulesError::Invalid(problems)),
            Err(diags) => {
                problems.extend(diags);
                Err(RulesError::Invalid(problems))
            }
        }
    }

    /// Checks `text` as a rule file named `name` beside the files under `dirs` (so it may use
    /// their lists and macros; a file of the same name there is replaced by it). Nothing is
    /// loaded. `Ok("N rules in M files")`, or every problem, one per line, with
    /// `file:line:column`.
    pub fn check_text(dirs: &[PathBuf], name: &str, text: &str) -> Result<String, String> {
        let (mut files, problems) = load::read_dirs(dirs);
        files.retain(|f| f.path.file_name() != Some(std::ffi::OsStr::new(name)));
        files.push(SourceFile {
            path: PathBuf::from(name),
            text: text.to_string(),
        });
        let lines = |diags: &[Diagnostic]| {
            diags
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        };
        if !problems.is_empty() {
            return Err(lines(&problems));
        }
        match load::compile_files(files) {
            Ok(set) => Ok(format!(
                "{} rules in {} files",
                set.len(),
                set.files().len()
            )),
            Err(diags) => Err(lines(&diags)),
        }
    }

    /// Compiles files already in memory.
    pub fn from_sources(files: Vec<SourceFile>) -> Result<RuleSet, RulesError> {
        load::compile_files(files).map_err(RulesError::Invalid)
    }

    /// Compiles one file's text (`name` is used in messages).
    pub fn from_json(name: &str, text: &str) -> Result<RuleSet, RulesError> {
        RuleSet::from_sources(vec![SourceFile {
            path: PathBuf::from(name),
            text: text.to_string(),
        }])
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    pub fn rules(&self) -> &[CompiledRule] {
        &self.rules
    }

    /// The shared lists and macros, as written in the files.
    pub fn definitions(&self) -> &Definitions {
        &self.definitions
    }

    pub fn get(&self, name: &str) -> Option<&CompiledRule> {
        self.index.get(name).map(|&i| &self.rules[i as usize])
    }

    pub fn summary(&self) -> ReloadSummary {
        ReloadSummary {
            rules: self.rules.len(),
            files: self.files.len(),
        }
    }

    pub fn info(&self) -> Vec<RuleInfo> {
        self.rules
            .iter()
            .map(|r| RuleInfo {
                name: r.meta.name.clone(),
                label: r.meta.label.clone(),
                description: r.meta.description.clone(),
                doc: r.meta.doc.clone(),
                score: r.meta.score,
                action: r.meta.action,
                tags: r.meta.tags.clone(),
                enabled: r.is_enabled(),
                hits: r.hits(),
                file: r.meta.file.clone(),
                line: r.meta.line,
                event_types: r.meta.event_types.clone(),
            })
            .collect()
    }
}

/// The shared rule engine handle (cheap to clone; all clones see the same rules).
#[derive(Clone)]
pub struct RuleEngine {
    inner: Arc<Shared>,
}

struct Shared {
    current: ArcSwap<RuleSet>,
    dirs: Vec<PathBuf>,
    /// Run-time enable/disable by name, re-applied to every reloaded set. Also serialises
    /// reloads with toggles, so a toggle is never lost in a concurrent swap.
    overrides: Mutex<HashMap<String, bool>>,
    /// Bumped after every swap: evaluators check it (one atomic load) before each event.
    generation: AtomicU64,
}

impl fmt::Debug for RuleEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuleEngine")
            .field("dirs", &self.inner.dirs)
            .field("rules", &self.inner.current.load().len())
            .finish()
    }
}

impl RuleEngine {
    /// Loads the rule directories (see [`rules_dirs`]).
    pub fn load(dirs: Vec<PathBuf>) -> Result<RuleEngine, RulesError> {
        let set = RuleSet::load(&dirs)?;
        Ok(RuleEngine::with_set(set, dirs))
    }

    /// An engine over a prepared set; [`RuleEngine::reload`] reads `dirs`.
    pub fn with_set(set: RuleSet, dirs: Vec<PathBuf>) -> RuleEngine {
        RuleEngine {
            inner: Arc::new(Shared {
                current: ArcSwap::from_pointee(set),
                dirs,
                overrides: Mutex::new(HashMap::new()),
                generation: AtomicU64::new(0),
            }),
        }
    }

    /// No rules (every event benign unless heuristics are on).
    pub fn empty() -> RuleEngine {
        RuleEngine::with_set(RuleSet::empty(), Vec::new())
    }

    pub fn dirs(&self) -> &[PathBuf] {
        &self.inner.dirs
    }

    /// The set in use now.
    pub fn current(&self) -> Arc<RuleSet> {
        self.inner.current.load_full()
    }

    /// Changes after every swap of the rule set.
    pub(crate) fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }

    /// Re-reads the rule directories. The new set is fully parsed and validated before it is
    /// swapped in; on any error the current set stays and the error is returned. Run-time
    /// enable/disable choices and hit counters carry over by rule name.
    pub fn reload(&self) -> Result<ReloadSummary, RulesError> {
        let set = RuleSet::load(&self.inner.dirs)?;
        Ok(self.replace(set))
    }

    /// Swaps in a prepared set (as [`RuleEngine::reload`] does after loading).
    pub fn replace(&self, set: RuleSet) -> ReloadSummary {
        let overrides = self
            .inner
            .overrides
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for rule in &set.rules {
            if let Some(&enabled) = overrides.get(&rule.meta.name) {
                rule.enabled.store(enabled, Ordering::Relaxed);
            }
        }
        let summary = set.summary();
        let new = Arc::new(set);
        let old = self.inner.current.swap(new.clone());
        self.inner.generation.fetch_add(1, Ordering::Release);
        // Counts made on the old set until the swap carry over.
        for rule in &old.rules {
            if let Some(r) = new.get(&rule.meta.name) {
                r.hits.fetch_add(rule.hits(), Ordering::Relaxed);
            }
        }
        drop(overrides);
        summary
    }

    /// Enables or disables a rule by name, now and across reloads.
    pub fn set_enabled(&self, name: &str, enabled: bool) -> Result<(), RulesError> {
        let mut overrides = self
            .inner
            .overrides
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let set = self.inner.current.load();
        let rule = set
            .get(name)
            .ok_or_else(|| RulesError::UnknownRule(name.to_string()))?;
        rule.enabled.store(enabled, Ordering::Relaxed);
        overrides.insert(name.to_string(), enabled);
        Ok(())
    }

    pub fn is_enabled(&self, name: &str) -> Option<bool> {
        self.inner
            .current
            .load()
            .get(name)
            .map(CompiledRule::is_enabled)
    }

    /// Name, score, tags, enabled state, hits and file of every rule.
    pub fn list(&self) -> Vec<RuleInfo> {
        self.inner.current.load().info()
    }

    pub fn summary(&self) -> ReloadSummary {
        self.inner.current.load().summary()
    }
}

#[cfg(test)]
mod index_props;
#[cfg(test)]
mod reload_props;
#[cfg(test)]
mod tests;
