//! The evaluator: runs an event through the rules indexed under its type, keeps per-process
//! state, and turns the matches into the event's [`Analysis`].
//!
//! Scoring: `risk_score = 1 − ∏(1 − sᵢ)` over the scores `sᵢ` of the matched (enabled) rules —
//! independent pieces of evidence — capped at 1.0. With heuristics on, the seed heuristic's
//! score `h` is one more factor: `1 − (1 − h)·∏(1 − sᵢ)`. `severity` is `benign` below the
//! configured `confidence_threshold`, `malicious` from [`MALICIOUS_THRESHOLD`], `suspicious`
//! in between. `label` and `recommendation` come from the highest-scoring rule (the first in
//! load order on a tie); `rules` lists the matched names, highest score first.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::eval::{Ctx, Memo};
use super::index::Scratch;
use super::state::{Hit, MAX_TREE_DEPTH, ProcTable};
use super::{Action, Record, RuleEngine, RuleSet, Scope};
use crate::config::ThreatDetection;
pub use crate::event::HEURISTIC_CONFIDENCE;
use crate::event::{Analysis, Event, EventType, Severity};

/// From this risk on, an event is `malicious`.
pub const MALICIOUS_THRESHOLD: f64 = 0.85;
/// The seed heuristic: +0.3 for a path under /tmp/, +0.4 for a shell.
const HEURISTIC_TMP: f64 = 0.3;
const HEURISTIC_SHELL: f64 = 0.4;
const SHELLS: &[&str] = &["sh", "bash", "dash", "zsh", "ksh", "fish"];

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EvaluatorOptions {
    /// Below this risk an event is benign.
    pub confidence_threshold: f64,
    /// Add the seed heuristic to the score.
    pub enable_heuristics: bool,
}

impl Default for EvaluatorOptions {
    fn default() -> Self {
        EvaluatorOptions::from(&ThreatDetection::default())
    }
}

impl From<&ThreatDetection> for EvaluatorOptions {
    fn from(t: &ThreatDetection) -> Self {
        EvaluatorOptions {
            confidence_threshold: t.confidence_threshold,
            enable_heuristics: t.enable_heuristics,
        }
    }
}

/// What the analysis of one event asks for beyond `event.analysis`. Everything the response
/// stage needs comes from the rule set that scored the event: a reload between scoring and
/// responding cannot change what is blocked or in whose name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outcome {
    /// The strongest action among the matched rules.
    pub action: Option<Action>,
    /// 1.0 for rule-based verdicts, [`HEURISTIC_CONFIDENCE`] when only the heuristic fired,
    /// 0.0 when nothing fired.
    pub confidence: f64,
    /// The highest-scoring matched rule whose action is `block`.
    pub block_rule: Option<String>,
    /// The highest-scoring matched rule whose action is `simulate_block`.
    pub simulate_rule: Option<String>,
}

/// Evaluates events against the engine's current rules: the analysis stage. One per pipeline
/// (it is not shared: it owns the per-process state).
pub struct Evaluator {
    engine: Option<RuleEngine>,
    set: Arc<RuleSet>,
    /// The engine generation `set` was taken at.
    generation: u64,
    memo: Memo,
    procs: ProcTable,
    options: EvaluatorOptions,
    /// Rules matched by the current event (indices into `set`).
    matched: Vec<u32>,
    /// Prerequisite rules matched by the current event (hits recorded after the event).
    pending: Vec<u32>,
    /// The candidate rules of the current event, when its type is indexed.
    candidates: Scratch,
    /// Treat every rule as enabled and count no hits (for running rule tests).
    testing: bool,
    /// The current event's process's accumulated risk, after the event.
    process_risk: f64,
}

impl Default for Evaluator {
    /// No rules and no heuristics: every event is benign (a cheap path).
    fn default() -> Self {
        Evaluator::for_config(RuleEngine::empty(), &ThreatDetection::default())
    }
}

impl Evaluator {
    pub fn new(engine: RuleEngine, options: EvaluatorOptions) -> Evaluator {
        let generation = engine.generation();
        let set = engine.current();
        Evaluator {
            engine: Some(engine),
            generation,
            memo: Memo::with_process_slots(set.memo_slots, set.process_slots),
            set,
            procs: ProcTable::default(),
            options,
            matched: Vec::new(),
            pending: Vec::new(),
            candidates: Scratch::default(),
            testing: false,
            process_risk: 0.0,
        }
    }

    /// The pipeline's analysis stage: `engine`'s rules with the options of
    /// `[threat_detection]`.
    pub fn for_config(engine: RuleEngine, detection: &ThreatDetection) -> Evaluator {
        Evaluator::new(engine, EvaluatorOptions::from(detection))
    }

    /// An evaluator over a fixed set, with every rule enabled and no hit counting.
    pub(crate) fn for_tests(set: Arc<RuleSet>) -> Evaluator {
        Evaluator {
            engine: None,
            generation: 0,
            memo: Memo::with_process_slots(set.memo_slots, set.process_slots),
            set,
            procs: ProcTable::default(),
            options: EvaluatorOptions {
                confidence_threshold: 0.6,
                enable_heuristics: false,
            },
            matched: Vec::new(),
            pending: Vec::new(),
            candidates: Scratch::default(),
            testing: true,
            process_risk: 0.0,
        }
    }

    pub fn engine(&self) -> Option<&RuleEngine> {
        self.engine.as_ref()
    }

    pub fn options(&self) -> EvaluatorOptions {
        self.options
    }

    /// Accumulated (decayed) risk of a process at `now_ns`, as `process.risk` reads it.
    pub fn process_risk(&self, pid: u32, now_ns: i64) -> f64 {
        self.procs.risk(pid, now_ns)
    }

    /// Processes currently remembered.
    pub fn tracked_processes(&self) -> usize {
        self.procs.len()
    }

    /// Forgets a process (the evaluator does this itself on `process_exit` events).
    pub fn forget_process(&mut self, pid: u32) {
        self.procs.forget(pid);
    }

    /// Follows a reload: recorded hits are renumbered by rule name.
    fn refresh(&mut self) {
        let Some(engine) = &self.engine else {
            return;
        };
        let generation = engine.generation();
        if generation == self.generation {
            return;
        }
        self.generation = generation;
        let new = engine.current();
        if Arc::ptr_eq(&new, &self.set) {
            return;
        }
        let map: Vec<Option<u32>> = self
            .set
            .rules
            .iter()
            .map(|r| new.index.get(&r.meta.name).copied())
            .collect();
        self.procs.remap_hits(&map);
        self.memo = Memo::with_process_slots(new.memo_slots, new.process_slots);
        self.set = new;
    }

    /// Fills `event.analysis`.
    pub fn analyze(&mut self, event: &mut Event) -> Outcome {
        self.refresh();
        if !self.set.is_empty() {
            self.run_rules(event);
        } else {
            self.matched.clear();
            self.process_risk = 0.0;
        }
        let heuristic = if self.options.enable_heuristics {
            heuristic(event)
        } else {
            Heuristic::default()
        };
        self.fill(event, heuristic)
    }

    /// The names of the rules `event` matches (updating state as [`Evaluator::analyze`]
    /// does, without touching the event).
    pub fn matching_rules(&mut self, event: &Event) -> Vec<String> {
        self.refresh();
        self.run_rules(event);
        self.matched
            .iter()
            .map(|&i| self.set.rules[i as usize].meta.name.clone())
            .collect()
    }

    fn run_rules(&mut self, event: &Event) {
        let Evaluator {
            set,
            procs,
            memo,
            matched,
            pending,
            candidates,
            testing,
            process_risk,
            ..
        } = self;
        let set = &**set;
        matched.clear();
        pending.clear();
        let now_ns = event.timestamp.timestamp_nanos_opt().unwrap_or(i64::MAX);
        match event.event_type {
            EventType::ProcessFork | EventType::ProcessExec => {
                procs.observe(event.pid, event.ppid, Some(&event.exe));
            }
            _ if set.track_all => procs.observe(event.pid, event.ppid, Some(&event.exe)),
            _ => {}
        }

        memo.next_event(event);
        let ctx = Ctx {
            event,
            procs,
            now_ns,
            memo,
        };
        let t = event.event_type as usize;
        let (order, nodes) = (&set.by_type[t], &set.type_nodes[t]);
        let positions = match &set.indexes[t] {
            Some(index) => index.candidates(event, candidates),
            None => &set.every_position[..order.len()],
        };
        for &pos in positions {
            let (Some(&i), Some(node)) = (order.get(pos as usize), nodes.get(pos as usize)) else {
                continue;
            };
            let rule = &set.rules[i as usize];
            let enabled = *testing || rule.enabled.load(Ordering::Relaxed);
            if !enabled && !set.required[i as usize] {
                continue;
            }
            if !node.eval(&ctx) {
                continue;
            }
            if let Some(req) = &rule.requires
                && !chain_satisfied(
                    req.rule,
                    req.within_ns,
                    req.scope,
                    event,
                    procs,
                    pending,
                    now_ns,
                )
            {
                continue;
            }
            if rule.record != Record::None {
                pending.push(i);
            }
            if enabled {
                matched.push(i);
                if !*testing {
                    rule.hits.fetch_add(1, Ordering::Relaxed);
                }
            }
        }

        for &i in pending.iter() {
            let hit = Hit {
                rule: i,
                at_ns: now_ns,
            };
            procs.record_hit(event.pid, hit);
            if set.rules[i as usize].record == Record::ProcessAndParent && event.ppid > 1 {
                procs.record_hit(event.ppid, hit);
            }
        }
        if !matched.is_empty() {
            let added: f64 = matched
                .iter()
                .map(|&i| set.rules[i as usize].meta.score)
                .sum();
            procs.add_risk(event.pid, added, now_ns);
            let rules = &set.rules;
            matched.sort_unstable_by(|&a, &b| {
                rules[b as usize]
                    .meta
                    .score
                    .total_cmp(&rules[a as usize].meta.score)
                    .then(a.cmp(&b))
            });
        }
        *process_risk = round_score(procs.risk(event.pid, now_ns));
        if event.event_type == EventType::ProcessExit {
            procs.forget(event.pid);
        }
    }

    fn fill(&self, event: &mut Event, heuristic: Heuristic) -> Outcome {
        let analysis = &mut event.analysis;
        analysis.process_risk = self.process_risk;
        if self.matched.is_empty() && heuristic.score == 0.0 {
            set_benign(analysis);
            return Outcome::default();
        }
        let rules = &self.set.rules;
        let mut keep = 1.0;
        let mut action = None;
        let (mut block_rule, mut simulate_rule) = (None, None);
        // `matched` is in score order, so the first rule asking for each kind of block wins.
        for &i in &self.matched {
            let meta = &rules[i as usize].meta;
            keep *= 1.0 - meta.score;
            action = action.max(Some(meta.action));
            match meta.action {
                Action::Block if block_rule.is_none() => block_rule = Some(meta.name.clone()),
                Action::SimulateBlock if simulate_rule.is_none() => {
                    simulate_rule = Some(meta.name.clone());
                }
                _ => {}
            }
        }
        keep *= 1.0 - heuristic.score;
        let risk = round_score(1.0 - keep);
        let risk = risk.clamp(0.0, 1.0);
        analysis.risk_score = risk;
        analysis.severity = severity(risk, self.options.confidence_threshold);
        analysis.rules.clear();
        analysis.rules.extend(
            self.matched
                .iter()
                .map(|&i| rules[i as usize].meta.name.clone()),
        );
        let confidence;
        if let Some(&top) = self.matched.first() {
            let meta = &rules[top as usize].meta;
            set_text(&mut analysis.label, &meta.label);
            set_text(&mut analysis.recommendation, &meta.recommendation);
            set_text(&mut analysis.detection_method, "rule_based");
            confidence = 1.0;
        } else {
            set_text(&mut analysis.label, heuristic.label());
            set_text(
                &mut analysis.recommendation,
                "Heuristic match (not a rule): check what this process is and why it runs from \
                 or touches /tmp",
            );
            set_text(&mut analysis.detection_method, "heuristic");
            confidence = HEURISTIC_CONFIDENCE;
        }
        if heuristic.tmp {
            analysis.rules.push("heuristic:tmp_path".to_string());
        }
        if heuristic.shell {
            analysis.rules.push("heuristic:shell".to_string());
        }
        analysis.confidence = confidence;
        Outcome {
            action,
            confidence,
            block_rule,
            simulate_rule,
        }
    }
}

/// `benign` below the threshold, `malicious` from [`MALICIOUS_THRESHOLD`] (when that is not
/// below the threshold), `suspicious` in between.
pub fn severity(risk: f64, threshold: f64) -> Severity {
    if risk < threshold || risk <= 0.0 {
        Severity::Benign
    } else if risk >= MALICIOUS_THRESHOLD {
        Severity::Malicious
    } else {
        Severity::Suspicious
    }
}

/// Scores are printed to six decimals: products and decays of floats would print as
/// 0.7999999999999999 otherwise.
fn round_score(score: f64) -> f64 {
    (score * 1e6).round() / 1e6
}

fn set_text(target: &mut String, text: &str) {
    if target != text {
        target.clear();
        target.push_str(text);
    }
}

/// The default verdict, written in place (no allocation when the event already holds it).
fn set_benign(analysis: &mut Analysis) {
    set_text(&mut analysis.label, "Benign");
    analysis.severity = Severity::Benign;
    analysis.risk_score = 0.0;
    set_text(&mut analysis.detection_method, "none");
    analysis.confidence = 0.0;
    analysis.recommendation.clear();
    analysis.rules.clear();
}

fn chain_satisfied(
    rule: u32,
    within_ns: i64,
    scope: Scope,
    event: &Event,
    procs: &ProcTable,
    pending: &[u32],
    now_ns: i64,
) -> bool {
    // Fired on this very event (it belongs to this process).
    if pending.contains(&rule) || procs.has_hit(event.pid, rule, now_ns, within_ns) {
        return true;
    }
    if scope == Scope::Process {
        return false;
    }
    let mut pid = event.ppid;
    for _ in 0..MAX_TREE_DEPTH {
        if pid == 0 || pid == event.pid {
            return false;
        }
        if procs.has_hit(pid, rule, now_ns, within_ns) {
            return true;
        }
        match procs.ppid(pid) {
            Some(parent) if parent != pid => pid = parent,
            _ => return false,
        }
    }
    false
}

#[derive(Clone, Copy, Debug, Default)]
struct Heuristic {
    score: f64,
    tmp: bool,
    shell: bool,
}

impl Heuristic {
    fn label(&self) -> &'static str {
        match (self.shell, self.tmp) {
            (true, true) => "Shell Activity in /tmp",
            (true, false) => "Shell Activity",
            _ => "Activity in /tmp",
        }
    }
}

/// The seed's `classify_threat`: +0.3 when the executable or the file path is under /tmp/,
/// +0.4 when the process is a shell.
fn heuristic(event: &Event) -> Heuristic {
    let tmp = event.exe.contains("/tmp/")
        || event
            .file_path
            .as_deref()
            .is_some_and(|p| p.contains("/tmp/"));
    let shell = SHELLS.contains(&event.process.as_str());
    let score = if tmp { HEURISTIC_TMP } else { 0.0 } + if shell { HEURISTIC_SHELL } else { 0.0 };
    Heuristic {
        score: score.min(1.0),
        tmp,
        shell,
    }
}
