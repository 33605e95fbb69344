//! One rule object: its keys, each checked, and its condition compiled.

use std::collections::HashMap;

use super::{Loader, Pending, RawRule};
use crate::event::EventType;
use crate::rules::attack::{self, Tactic};
use crate::rules::compile::{Compiler, type_bounds};
use crate::rules::fields::{TypeMask, type_bit, types_in};
use crate::rules::json::{self, Json, JsonValue};
use crate::rules::parser;
use crate::rules::{Action, RuleDoc, RuleMeta, Scope};

/// Keys a rule object may have.
const RULE_KEYS: &[&str] = &[
    "name",
    "description",
    "tactic",
    "techniques",
    "what",
    "why",
    "false_positives",
    "condition",
    "event_types",
    "risk_score",
    "action",
    "enabled",
    "tags",
    "recommendation",
    "label",
    "requires",
    "tests",
];

impl Loader {
    pub(super) fn rule(
        &mut self,
        raw: RawRule,
        compiler: &mut Compiler<'_>,
        names: &mut HashMap<String, (usize, usize)>,
    ) -> Option<Pending> {
        let file = raw.file;
        let errors_before = self.diags.len();
        let mut get = HashMap::new();
        for (key, value) in &raw.members {
            let key_offset = key.source_offset(0).saturating_sub(1);
            if RULE_KEYS.contains(&key.text.as_str()) {
                get.insert(key.text.as_str(), value);
            } else {
                let msg = format!(
                    "expected a rule key ({}), found `{}`",
                    RULE_KEYS.join(", "),
                    key.text
                );
                self.diag_at(file, key_offset, msg);
            }
        }
        let Some(name_json) = get.get("name") else {
            self.diag_at(
                file,
                raw.span_start,
                "expected a rule with a `name`, found none",
            );
            return None;
        };
        let name = self.string(file, name_json, "name")?.text.clone();
        if name.trim().is_empty() || name.chars().any(char::is_control) {
            self.diag_at(
                file,
                name_json.span.start,
                format!(
                    "expected a non-empty rule name without control characters, found {name:?}"
                ),
            );
        }
        if let Some(&(other_file, other_offset)) = names.get(&name) {
            let (line, column) = json::line_col(&self.files[other_file].text, other_offset);
            let first = format!("{}:{line}:{column}", self.files[other_file].path.display());
            self.diag_at(
                file,
                name_json.span.start,
                format!("expected a unique rule name, found `{name}` (first defined at {first})"),
            );
        } else {
            names.insert(name.clone(), (file, name_json.span.start));
        }

        let text = |this: &mut Self, key: &str| -> Option<String> {
            let v = get.get(key)?;
            this.string(file, v, key).map(|s| s.text.clone())
        };
        let description = text(self, "description").unwrap_or_default();
        let doc = self.rule_doc(file, &get);
        let recommendation = text(self, "recommendation").unwrap_or_default();
        let label = text(self, "label").unwrap_or_else(|| name.clone());

        let score = match get.get("risk_score") {
            None => {
                self.diag_at(
                    file,
                    raw.span_start,
                    format!("expected a `risk_score` (0 to 1) in rule `{name}`, found none"),
                );
                0.0
            }
            Some(v) => match &v.value {
                JsonValue::Number(n) => match n.parse::<f64>() {
                    Ok(x) if (0.0..=1.0).contains(&x) => x,
                    _ => {
                        self.diag_at(
                            file,
                            v.span.start,
                            format!("expected a `risk_score` between 0 and 1, found {n}"),
                        );
                        0.0
                    }
                },
                other => {
                    self.diag_at(
                        file,
                        v.span.start,
                        format!("expected a number for `risk_score`, found {}", other.kind()),
                    );
                    0.0
                }
            },
        };

        let action = match get.get("action") {
            None => Action::Alert,
            Some(v) => match self.string(file, v, "action").map(|s| s.text.as_str()) {
                Some("alert") => Action::Alert,
                Some("log") => Action::Log,
                Some("simulate_block") => Action::SimulateBlock,
                Some("block") => Action::Block,
                Some(other) => {
                    let msg = format!(
                        "expected an action (\"alert\", \"log\", \"simulate_block\", \"block\"), found {other:?}"
                    );
                    self.diag_at(file, v.span.start, msg);
                    Action::Alert
                }
                None => Action::Alert,
            },
        };

        let enabled = match get.get("enabled") {
            None => true,
            Some(v) => match v.value {
                JsonValue::Bool(b) => b,
                ref other => {
                    self.diag_at(
                        file,
                        v.span.start,
                        format!(
                            "expected true or false for `enabled`, found {}",
                            other.kind()
                        ),
                    );
                    true
                }
            },
        };

        let tags = match get.get("tags") {
            None => Vec::new(),
            Some(v) => self
                .strings(file, v, "tags")
                .into_iter()
                .map(|(s, _)| s)
                .collect(),
        };

        let explicit_types: Option<TypeMask> = match get.get("event_types") {
            None => None,
            Some(v) => {
                let items = self.strings(file, v, "event_types");
                if items.is_empty() && matches!(&v.value, JsonValue::Array(a) if a.is_empty()) {
                    self.diag_at(
                        file,
                        v.span.start,
                        "expected at least one event type in `event_types`, found an empty array",
                    );
                }
                let mut mask = 0;
                for (item, offset) in items {
                    match EventType::from_name(&item) {
                        Some(t) => mask |= type_bit(t),
                        None => {
                            let msg = format!(
                                "expected an event type ({}), found {item:?}",
                                EventType::NAMES.join(", ")
                            );
                            self.diag_at(file, offset, msg);
                        }
                    }
                }
                Some(mask)
            }
        };

        let requires = match get.get("requires") {
            None => None,
            Some(v) => self.requires(file, v),
        };

        let Some(condition_json) = get.get("condition") else {
            self.diag_at(
                file,
                raw.span_start,
                format!("expected a `condition` in rule `{name}`, found none"),
            );
            return None;
        };
        let condition = self.string(file, condition_json, "condition")?.clone();
        let ast = match parser::parse(&condition.text) {
            Ok(ast) => ast,
            Err(e) => {
                self.diag_at(file, condition.source_offset(e.span.start), e.message);
                return None;
            }
        };
        let source = self.sources.len();
        self.sources.push((file, condition.clone()));
        let node = match compiler.compile(&ast, source) {
            Ok(Some(node)) => node,
            Ok(None) => return None,
            Err(e) => {
                self.compile_error(e);
                return None;
            }
        };
        let (may, _) = type_bounds(&node);
        let types = match explicit_types {
            Some(explicit) => {
                if explicit != 0 && explicit & may == 0 {
                    let offset = condition_json.span.start;
                    let msg = format!(
                        "expected a condition that can be true for the rule's event_types, found one that can only match {}",
                        describe_types(may)
                    );
                    self.diag_at(file, offset, msg);
                }
                explicit & may
            }
            None => may,
        };
        if self.diags.len() > errors_before {
            return None;
        }
        Some(Pending {
            meta: RuleMeta {
                name,
                description,
                doc,
                label,
                recommendation,
                tags,
                action,
                score,
                file: self.files[file].path.clone(),
                line: self.line(file, raw.span_start),
                enabled,
                event_types: types_in(types).collect(),
                condition: condition.text,
            },
            node,
            types,
            requires,
            tests: get.get("tests").map(|t| (*t).clone()),
            file,
        })
    }

    /// The documentation keys: each optional, each checked.
    fn rule_doc(&mut self, file: usize, get: &HashMap<&str, &Json>) -> RuleDoc {
        let mut doc = RuleDoc::default();
        if let Some(v) = get.get("tactic") {
            doc.tactics = self.tactics(file, v);
        }
        if let Some(v) = get.get("techniques") {
            for (id, offset) in self.strings(file, v, "techniques") {
                if attack::is_technique_id(&id) {
                    doc.techniques.push(id);
                } else {
                    let msg = format!(
                        "expected an ATT&CK technique id such as T1059 or T1059.004 in `techniques`, found {id:?}"
                    );
                    self.diag_at(file, offset, msg);
                }
            }
        }
        for (key, target) in [
            ("what", &mut doc.what),
            ("why", &mut doc.why),
            ("false_positives", &mut doc.false_positives),
        ] {
            if let Some(v) = get.get(key)
                && let Some(s) = self.string(file, v, key)
            {
                *target = s.text.clone();
            }
        }
        doc
    }

    /// `"tactic": "execution"`, or several, the main one first: `["execution", "defense_evasion"]`.
    fn tactics(&mut self, file: usize, v: &Json) -> Vec<Tactic> {
        let named: Vec<(String, usize)> = match &v.value {
            JsonValue::String(s) => vec![(s.text.clone(), v.span.start)],
            JsonValue::Array(items) if !items.is_empty() => self.strings(file, v, "tactic"),
            other => {
                let msg = format!(
                    "expected an ATT&CK tactic or a non-empty array of them for `tactic`, found {}",
                    match other {
                        JsonValue::Array(_) => "an empty array",
                        other => other.kind(),
                    }
                );
                self.diag_at(file, v.span.start, msg);
                return Vec::new();
            }
        };
        let mut tactics = Vec::new();
        for (key, offset) in named {
            match Tactic::from_key(&key) {
                Some(tactic) => tactics.push(tactic),
                None => {
                    let known: Vec<&str> = Tactic::ALL.iter().map(|t| t.key()).collect();
                    let msg = format!(
                        "expected an ATT&CK tactic ({}), found {key:?}",
                        known.join(", ")
                    );
                    self.diag_at(file, offset, msg);
                }
            }
        }
        tactics
    }

    fn requires(&mut self, file: usize, v: &Json) -> Option<(String, usize, i64, Scope)> {
        let JsonValue::Object(members) = &v.value else {
            let msg = format!(
                "expected an object {{\"rule\", \"within_secs\", \"scope\"}} for `requires`, found {}",
                v.value.kind()
            );
            self.diag_at(file, v.span.start, msg);
            return None;
        };
        let mut rule = None;
        let mut within_ns: i64 = 60_000_000_000;
        let mut scope = Scope::Process;
        for (key, value) in members {
            match key.text.as_str() {
                "rule" => {
                    rule = self
                        .string(file, value, "rule")
                        .map(|s| (s.text.clone(), value.span.start))
                }
                "within_secs" => match &value.value {
                    JsonValue::Number(n) => match n.parse::<f64>() {
                        Ok(x) if x > 0.0 && x <= 86_400.0 * 365.0 => within_ns = (x * 1e9) as i64,
                        _ => self.diag_at(
                            file,
                            value.span.start,
                            format!(
                                "expected a positive number of seconds for `within_secs`, found {n}"
                            ),
                        ),
                    },
                    other => {
                        let msg = format!(
                            "expected a number of seconds for `within_secs`, found {}",
                            other.kind()
                        );
                        self.diag_at(file, value.span.start, msg);
                    }
                },
                "scope" => match self.string(file, value, "scope").map(|s| s.text.as_str()) {
                    Some("process") => scope = Scope::Process,
                    Some("process_tree") => scope = Scope::ProcessTree,
                    Some(other) => {
                        let msg = format!(
                            "expected \"process\" or \"process_tree\" for `scope`, found {other:?}"
                        );
                        self.diag_at(file, value.span.start, msg);
                    }
                    None => {}
                },
                other => {
                    let offset = key.source_offset(0).saturating_sub(1);
                    self.diag_at(file, offset, format!("expected `rule`, `within_secs` or `scope` in `requires`, found `{other}`"));
                }
            }
        }
        match rule {
            Some((name, offset)) => Some((name, offset, within_ns, scope)),
            None => {
                self.diag_at(
                    file,
                    v.span.start,
                    "expected the `rule` that must have fired first in `requires`, found none",
                );
                None
            }
        }
    }
}

fn describe_types(mask: TypeMask) -> String {
    if mask == 0 {
        return "no event type".to_string();
    }
    types_in(mask)
        .map(|t| t.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
