//! Running the tests embedded in rule files (`secmon-tui rules test`).
//!
//! A test `{"event": {...}, "expect": true}` checks whether the rule matches the event: the
//! event's type must be one the rule applies to and its condition must hold. A `requires`
//! chain counts as satisfied and `process.risk` is 0 — unless the test gives `after`: then the
//! `after` events and the event go, in order, through a fresh evaluator with the whole set,
//! chains and risk included, and the test checks whether the rule is among the matches.

use std::path::PathBuf;
use std::sync::Arc;

use super::RuleSet;
use super::engine::Evaluator;
use super::eval::{Ctx, Memo};
use super::fields::type_bit;
use super::state::ProcTable;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestResult {
    pub rule: String,
    /// 1-based position of the test in the rule's `tests`.
    pub index: usize,
    pub file: PathBuf,
    /// Line of the test object.
    pub line: usize,
    pub expected: bool,
    pub got: bool,
}

impl TestResult {
    pub fn passed(&self) -> bool {
        self.expected == self.got
    }
}

/// Runs every test of every rule, in file order.
pub fn run_tests(set: &Arc<RuleSet>) -> Vec<TestResult> {
    let empty = ProcTable::new(4);
    let mut results = Vec::new();
    for rule in set.rules() {
        for (i, test) in rule.tests.iter().enumerate() {
            let got = if test.after.is_empty() {
                let event = &test.event;
                let memo = Memo::new(set.memo_slots);
                let ctx = Ctx {
                    event,
                    procs: &empty,
                    now_ns: event.timestamp.timestamp_nanos_opt().unwrap_or(0),
                    memo: &memo,
                };
                rule.types & type_bit(event.event_type) != 0 && rule.node.eval(&ctx)
            } else {
                let mut evaluator = Evaluator::for_tests(set.clone());
                for earlier in &test.after {
                    evaluator.matching_rules(earlier);
                }
                evaluator
                    .matching_rules(&test.event)
                    .iter()
                    .any(|n| n == rule.name())
            };
            results.push(TestResult {
                rule: rule.name().to_string(),
                index: i + 1,
                file: rule.meta.file.clone(),
                line: test.line,
                expected: test.expect,
                got,
            });
        }
    }
    results
}

/// The rules whose tests do not show both sides: each rule should have at least one test it
/// must match (`"expect": true`) and one it must not (`"expect": false`). Returns the rule's
/// name and what it lacks, in file order.
pub fn test_gaps(set: &RuleSet) -> Vec<(String, &'static str)> {
    set.rules()
        .iter()
        .filter_map(|r| {
            let matching = r.tests.iter().any(|t| t.expect);
            let non_matching = r.tests.iter().any(|t| !t.expect);
            let gap = match (matching, non_matching) {
                (true, true) => return None,
                (false, false) => "no tests",
                (false, true) => "no matching test",
                (true, false) => "no non-matching test",
            };
            Some((r.name().to_string(), gap))
        })
        .collect()
}
