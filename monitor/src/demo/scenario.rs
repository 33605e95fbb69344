//! Scenarios as data: the TOML files teachers write (`monitor/scenarios/*.toml`, built into the
//! binary, and any `--dir DIR`), parsed with their positions so that `demo --check` can say
//! `file:line:column: what was expected` for a typo as for a rule id the pack does not have.
use std::{
    collections::BTreeSet,
    fmt,
    ops::Range,
    path::{Path, PathBuf},
};

use serde::Deserialize;
use toml::Spanned;

use crate::rules::attack;

/// Most steps a scenario may have: a lesson's demo is a story told in minutes, not a test suite.
pub const MAX_STEPS: usize = 12;

/// The scenarios shipped with secmon, built into the binary so that an installed binary has
/// them (file name, text).
pub const SHIPPED: &[(&str, &str)] = &[
    ("webapp.toml", include_str!("../../scenarios/webapp.toml")),
    (
        "cryptominer.toml",
        include_str!("../../scenarios/cryptominer.toml"),
    ),
    ("evasion.toml", include_str!("../../scenarios/evasion.toml")),
];

/// One scenario, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// What `secmon-tui demo NAME` takes.
    pub name: String,
    pub title: String,
    pub summary: String,
    /// Shell commands run (outside the step namespaces, in the sandbox directory) before the
    /// first step: payloads for the demo's web server, decoy files.
    pub setup: Vec<String>,
    /// Lines the demo's listener sends down a reverse shell that connects to it.
    pub listener_commands: Vec<String>,
    pub steps: Vec<Step>,
    /// Where it came from: `built-in webapp.toml` or a path.
    pub origin: String,
}

/// One step of a scenario.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub title: String,
    /// The shell script the step runs in the sandbox (`sh -c`).
    pub run: String,
    /// What the attacker does, and why.
    pub narration: String,
    pub technique: Technique,
    /// The rules expected to fire on the step's process tree.
    pub expect: Vec<String>,
    /// What a defender would do next.
    pub defender: String,
}

/// An ATT&CK technique: `T1059.004`, `Command and Scripting Interpreter: Unix Shell`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Technique {
    pub id: String,
    pub name: String,
}

/// One problem in a scenario file: `file:line:column: message`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    pub position: Option<(usize, usize)>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, column)) => write!(f, "{}:{line}:{column}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// Why a scenario could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("{}", join(.0))]
    Invalid(Vec<Problem>),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no scenario named `{0}` (secmon-tui demo --list shows them)")]
    Unknown(String),
}

fn join(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: Spanned<String>,
    title: Spanned<String>,
    summary: Spanned<String>,
    #[serde(default)]
    setup: Vec<String>,
    #[serde(default)]
    listener_commands: Vec<String>,
    #[serde(default = "no_steps")]
    steps: Spanned<Vec<RawStep>>,
}

/// A file without `[[steps]]`: reported at its start.
fn no_steps() -> Spanned<Vec<RawStep>> {
    Spanned::new(0..0, Vec::new())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    title: Spanned<String>,
    run: Spanned<String>,
    narration: Spanned<String>,
    technique: RawTechnique,
    expect: Spanned<Vec<Spanned<String>>>,
    defender: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTechnique {
    id: Spanned<String>,
    name: Spanned<String>,
}

/// Line and column (1-based, in characters) of a byte offset of `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..text.floor_char_boundary(offset.min(text.len()))];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit_once('\n')
        .map_or(before, |(_, last)| last)
        .chars()
        .count()
        + 1;
    (line, column)
}

/// Collects problems with their positions in one file.
struct Problems<'a> {
    file: &'a str,
    text: &'a str,
    found: Vec<Problem>,
}

impl Problems<'_> {
    fn at(&mut self, span: Option<Range<usize>>, message: impl Into<String>) {
        self.found.push(Problem {
            file: self.file.to_string(),
            position: span.map(|s| line_column(self.text, s.start)),
            message: message.into(),
        });
    }

    fn not_blank(&mut self, value: &Spanned<String>, what: &str) {
        if value.get_ref().trim().is_empty() {
            self.at(
                Some(value.span()),
                format!("expected {what}, found an empty string"),
            );
        }
    }
}

impl Scenario {
    /// Parses and checks a scenario file's text. `known_rule` says whether the loaded rule pack
    /// has a rule id (`None`: rule ids are not checked).
    pub fn parse(
        file: &str,
        text: &str,
        known_rule: Option<&dyn Fn(&str) -> bool>,
    ) -> Result<Scenario, ScenarioError> {
        let mut problems = Problems {
            file,
            text,
            found: Vec::new(),
        };
        let raw: RawScenario = match toml::from_str(text) {
            Ok(raw) => raw,
            Err(e) => {
                problems.at(e.span(), e.message().trim().to_string());
                return Err(ScenarioError::Invalid(problems.found));
            }
        };
        let name = raw.name.get_ref();
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            problems.at(
                Some(raw.name.span()),
                format!(
                    "expected a name of lowercase letters, digits, - and _ (what `demo NAME` \
                     takes), found `{name}`"
                ),
            );
        }
        problems.not_blank(&raw.title, "a title");
        problems.not_blank(&raw.summary, "a summary");
        let count = raw.steps.get_ref().len();
        if !(1..=MAX_STEPS).contains(&count) {
            problems.at(
                Some(raw.steps.span()),
                format!("expected 1 to {MAX_STEPS} [[steps]], found {count}"),
            );
        }
        for step in raw.steps.get_ref() {
            check_step(&mut problems, step, known_rule);
        }
        if !problems.found.is_empty() {
            return Err(ScenarioError::Invalid(problems.found));
        }
        Ok(Scenario {
            name: raw.name.into_inner(),
            title: raw.title.into_inner(),
            summary: one_paragraph(raw.summary.get_ref()),
            setup: raw.setup,
            listener_commands: raw.listener_commands,
            steps: raw.steps.into_inner().into_iter().map(Step::from).collect(),
            origin: file.to_string(),
        })
    }

    /// The ATT&CK tactics its steps' rules belong to are not known here; the techniques are.
    pub fn techniques(&self) -> BTreeSet<&str> {
        self.steps.iter().map(|s| s.technique.id.as_str()).collect()
    }
}

fn check_step(problems: &mut Problems, step: &RawStep, known_rule: Option<&dyn Fn(&str) -> bool>) {
    problems.not_blank(&step.title, "a title");
    problems.not_blank(&step.run, "a command to run");
    problems.not_blank(&step.narration, "a narration");
    problems.not_blank(&step.defender, "what a defender does next");
    problems.not_blank(&step.technique.name, "the technique's name");
    let id = step.technique.id.get_ref();
    if !attack::is_technique_id(id) {
        problems.at(
            Some(step.technique.id.span()),
            format!("expected an ATT&CK technique id such as T1059 or T1059.004, found `{id}`"),
        );
    }
    if step.expect.get_ref().is_empty() {
        problems.at(
            Some(step.expect.span()),
            "expected at least one rule id the step makes fire",
        );
    }
    if let Some(known) = known_rule {
        for rule in step.expect.get_ref() {
            if !known(rule.get_ref()) {
                problems.at(
                    Some(rule.span()),
                    format!(
                        "expected a rule id of the loaded rules, found `{}` (secmon-tui rules \
                         list shows them)",
                        rule.get_ref()
                    ),
                );
            }
        }
    }
}

/// Prose as written in the file (lines broken anywhere) as one paragraph: the pane wraps it.
fn one_paragraph(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl From<RawStep> for Step {
    fn from(raw: RawStep) -> Step {
        Step {
            title: raw.title.into_inner(),
            run: raw.run.into_inner(),
            narration: one_paragraph(raw.narration.get_ref()),
            technique: Technique {
                id: raw.technique.id.into_inner(),
                name: raw.technique.name.into_inner(),
            },
            expect: raw
                .expect
                .into_inner()
                .into_iter()
                .map(Spanned::into_inner)
                .collect(),
            defender: one_paragraph(raw.defender.get_ref()),
        }
    }
}

/// The shipped scenarios, then those of `dirs` (`*.toml`, by file name); a scenario of a
/// directory with a shipped scenario's name replaces it.
pub fn load_all(
    dirs: &[PathBuf],
    known_rule: Option<&dyn Fn(&str) -> bool>,
) -> Result<Vec<Scenario>, ScenarioError> {
    let mut scenarios: Vec<Scenario> = Vec::new();
    let mut problems = Vec::new();
    let mut add =
        |parsed: Result<Scenario, ScenarioError>, problems: &mut Vec<Problem>| match parsed {
            Ok(s) => {
                scenarios.retain(|known| known.name != s.name);
                scenarios.push(s);
            }
            Err(ScenarioError::Invalid(found)) => problems.extend(found),
            Err(e) => problems.push(Problem {
                file: String::new(),
                position: None,
                message: e.to_string(),
            }),
        };
    for (file, text) in SHIPPED {
        add(
            Scenario::parse(&format!("built-in {file}"), text, known_rule),
            &mut problems,
        );
    }
    for dir in dirs {
        for path in toml_files(dir)? {
            add(read(&path, known_rule), &mut problems);
        }
    }
    if problems.is_empty() {
        Ok(scenarios)
    } else {
        Err(ScenarioError::Invalid(problems))
    }
}

/// Reads and checks one scenario file.
pub fn read(
    path: &Path,
    known_rule: Option<&dyn Fn(&str) -> bool>,
) -> Result<Scenario, ScenarioError> {
    let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Scenario::parse(&path.display().to_string(), &text, known_rule)
}

fn toml_files(dir: &Path) -> Result<Vec<PathBuf>, ScenarioError> {
    let read_error = |source| ScenarioError::Read {
        path: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_error)? {
        let path = entry.map_err(read_error)?.path();
        if path.extension().is_some_and(|e| e == "toml") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// The scenario `wanted` names: a loaded scenario's name, or the path of a file.
pub fn find(
    scenarios: &[Scenario],
    wanted: &str,
    known_rule: Option<&dyn Fn(&str) -> bool>,
) -> Result<Scenario, ScenarioError> {
    if let Some(s) = scenarios.iter().find(|s| s.name == wanted) {
        return Ok(s.clone());
    }
    let path = Path::new(wanted);
    if wanted.ends_with(".toml") || path.is_file() {
        return read(path, known_rule);
    }
    Err(ScenarioError::Unknown(wanted.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
name = "tiny"
title = "Tiny"
summary = "One step."

[[steps]]
title = "Who am I"
run = "id"
narration = "The attacker asks who they are."
technique = { id = "T1033", name = "System Owner/User Discovery" }
expect = ["discovery_user_identity"]
defender = "Look at the session."
"#;

    fn error_lines(text: &str, known: Option<&dyn Fn(&str) -> bool>) -> Vec<String> {
        match Scenario::parse("s.toml", text, known) {
            Err(ScenarioError::Invalid(problems)) => {
                problems.iter().map(ToString::to_string).collect()
            }
            other => panic!("expected problems, got {other:?}"),
        }
    }

    #[test]
    fn a_minimal_scenario_parses() {
        let s = Scenario::parse("s.toml", MINIMAL, None).expect("valid");
        assert_eq!(s.name, "tiny");
        assert_eq!(s.steps.len(), 1);
        assert_eq!(s.steps[0].technique.id, "T1033");
        assert_eq!(s.steps[0].expect, ["discovery_user_identity"]);
    }

    #[test]
    fn syntax_errors_and_unknown_fields_have_a_position() {
        let lines = error_lines(&MINIMAL.replace("run = \"id\"", "run = id"), None);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].starts_with("s.toml:8:7: "), "{lines:?}");
        let lines = error_lines(&MINIMAL.replace("defender =", "defendr ="), None);
        assert!(lines[0].starts_with("s.toml:12:1: "), "{lines:?}");
        assert!(lines[0].contains("defendr"), "{lines:?}");
    }

    #[test]
    fn semantic_checks_point_at_the_value() {
        let text = MINIMAL
            .replace("\"T1033\"", "\"T33\"")
            .replace("\"discovery_user_identity\"", "\"no_such_rule\"")
            .replace("run = \"id\"", "run = \"  \"");
        let known = |rule: &str| rule == "discovery_user_identity";
        let lines = error_lines(&text, Some(&known));
        assert_eq!(
            lines,
            [
                "s.toml:8:7: expected a command to run, found an empty string",
                "s.toml:10:20: expected an ATT&CK technique id such as T1059 or T1059.004, \
                 found `T33`",
                "s.toml:11:11: expected a rule id of the loaded rules, found `no_such_rule` \
                 (secmon-tui rules list shows them)",
            ]
        );
    }

    #[test]
    fn step_count_is_bounded() {
        let head = MINIMAL.split("[[steps]]").next().expect("a head");
        let lines = error_lines(head, None);
        assert!(
            lines[0].contains("expected 1 to 12 [[steps]], found 0"),
            "{lines:?}"
        );
        let step = format!(
            "[[steps]]{}",
            MINIMAL.split("[[steps]]").nth(1).expect("a step")
        );
        let many = format!("{head}{}", step.repeat(13));
        let lines = error_lines(&many, None);
        assert!(lines[0].contains("found 13"), "{lines:?}");
    }

    /// Every shipped scenario checks against the shipped rule pack, and its recording has its
    /// steps, each with events.
    #[test]
    fn shipped_scenarios_check_against_the_shipped_rules_and_have_recordings() {
        let rules = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules");
        let engine = crate::rules::RuleEngine::load(vec![rules]).expect("the shipped rules");
        let set = engine.current();
        let known = |name: &str| set.get(name).is_some();
        let scenarios = load_all(&[], Some(&known)).expect("the shipped scenarios check");
        assert_eq!(scenarios.len(), SHIPPED.len());
        for s in &scenarios {
            assert!((6..=MAX_STEPS).contains(&s.steps.len()), "{}", s.name);
            let recorded = crate::demo::recording::shipped(&s.name).expect("a recording");
            assert_eq!(recorded.steps.len(), s.steps.len(), "{}", s.name);
            for (i, events) in recorded.steps.iter().enumerate() {
                assert!(
                    !events.is_empty(),
                    "{} step {} has no events",
                    s.name,
                    i + 1
                );
            }
        }
    }

    #[test]
    fn line_column_counts_characters() {
        assert_eq!(line_column("ab\ncé d", 7), (2, 4));
        assert_eq!(line_column("x", 0), (1, 1));
    }
}
