//! Stage 4: scoring. The [`Analyzer`] is the rule engine's front for the pipeline: it fills
//! every event's `analysis` from the rules ([`crate::rules`]), the per-process state and,
//! when `enable_heuristics` is on, the seed heuristic.
use crate::config::ThreatDetection;
use crate::event::Event;
use crate::rules::{Evaluator, EvaluatorOptions, Outcome, RuleEngine};

pub struct Analyzer {
    evaluator: Evaluator,
}

impl Default for Analyzer {
    /// No rules and no heuristics: every event is benign (a cheap path).
    fn default() -> Self {
        Analyzer::new(RuleEngine::empty(), &ThreatDetection::default())
    }
}

impl Analyzer {
    pub fn new(engine: RuleEngine, threat_detection: &ThreatDetection) -> Analyzer {
        Analyzer {
            evaluator: Evaluator::new(engine, EvaluatorOptions::from(threat_detection)),
        }
    }

    /// Fills `event.analysis`; the outcome carries the strongest action the matched rules
    /// ask for.
    pub fn analyze(&mut self, event: &mut Event) -> Outcome {
        self.evaluator.analyze(event)
    }

    /// The shared engine (reload, enable/disable, rule list), if rules are loaded.
    pub fn engine(&self) -> Option<&RuleEngine> {
        self.evaluator.engine()
    }

    pub fn evaluator(&self) -> &Evaluator {
        &self.evaluator
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;
    use crate::event::{EventType, Severity};
    use crate::rules::RuleSet;

    #[test]
    fn no_rules_means_benign() {
        let mut analyzer = Analyzer::default();
        let mut event = Event::new(EventType::ProcessExec, DateTime::UNIX_EPOCH);
        event.process = "bash".to_string();
        event.exe = "/tmp/bash".to_string();
        analyzer.analyze(&mut event);
        assert_eq!(event.analysis, crate::event::Analysis::default());
    }

    #[test]
    fn rules_fill_the_analysis() {
        let set = RuleSet::from_json(
            "seed.json",
            r#"{"name": "tmp_exec", "condition": "process.path.contains('/tmp/')", "risk_score": 0.7, "action": "alert", "label": "Execution from /tmp"}"#,
        )
        .expect("valid");
        let engine = RuleEngine::with_set(set, Vec::new());
        let mut analyzer = Analyzer::new(engine, &ThreatDetection::default());
        let mut event = Event::new(EventType::ProcessExec, DateTime::UNIX_EPOCH);
        event.exe = "/tmp/x".to_string();
        analyzer.analyze(&mut event);
        assert_eq!(event.analysis.severity, Severity::Suspicious);
        assert_eq!(event.analysis.label, "Execution from /tmp");
        assert_eq!(event.analysis.detection_method, "rule_based");
        assert_eq!(event.analysis.rules, vec!["tmp_exec".to_string()]);
    }
}
