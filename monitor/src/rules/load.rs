//! Rule files → a validated, compiled [`RuleSet`].
//!
//! Every problem found is collected (not just the first) as a [`Diagnostic`] with the file,
//! line and column; a set with any problem is refused as a whole.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeDelta};

use super::compile::{CompileError, Compiler, ListItem, MacroDef, type_bounds};
use super::eval::Number;
use super::fields::{self, ALL_TYPES, TypeMask, type_bit, types_in};
use super::json::{self, Json, JsonString, JsonValue};
use super::parser;
use super::{Action, CompiledRule, Record, Requirement, RuleMeta, RuleSet, RuleTest, Scope};
use crate::event::{Event, EventType};
use crate::secure_fs;

/// Keys a rule object may have.
const RULE_KEYS: &[&str] = &[
    "name",
    "description",
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

/// Keys of a pack object besides `lists`, `macros` and `rules`: descriptive, ignored.
const PACK_INFO_KEYS: &[&str] = &[
    "title",
    "description",
    "tactic",
    "technique",
    "references",
    "comment",
];

/// One load problem: `file:line:column: message` (or `file: message` without a position).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    pub position: Option<(usize, usize)>,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, column)) => write!(f, "{}:{line}:{column}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// A rule file's name and contents.
#[derive(Clone, Debug)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
}

/// The `*.json` files under each directory (recursively, sorted by path; hidden files and
/// directories skipped), read into memory. A missing directory is a problem. As root, so is a
/// file or directory that root does not own or that group or others may write to
/// ([`secure_fs::check_trusted`]).
pub fn read_dirs(dirs: &[PathBuf]) -> (Vec<SourceFile>, Vec<Diagnostic>) {
    read_dirs_with(dirs, secure_fs::strict_modes())
}

/// [`read_dirs`], with the ownership and mode checks on (`strict`) or off.
pub fn read_dirs_with(dirs: &[PathBuf], strict: bool) -> (Vec<SourceFile>, Vec<Diagnostic>) {
    let mut files = Vec::new();
    let mut problems = Vec::new();
    for dir in dirs {
        if strict && let Err(e) = secure_fs::check_trusted_ancestors(dir, "rules") {
            problems.push(untrusted(e));
            continue;
        }
        let mut paths = Vec::new();
        if let Err(e) = collect_json(dir, &mut paths, &mut problems, strict, 0) {
            problems.push(Diagnostic {
                file: dir.display().to_string(),
                position: None,
                message: format!("cannot read the rules directory: {e}"),
            });
            continue;
        }
        paths.sort();
        for path in paths {
            match read_rule_file(&path, strict) {
                Ok(text) => {
                    // Editors on Windows save UTF-8 with a byte-order mark; JSON has no use
                    // for it and editors do not count it as a column.
                    let text = match text.strip_prefix('\u{feff}') {
                        Some(rest) => rest.to_string(),
                        None => text,
                    };
                    files.push(SourceFile { path, text })
                }
                Err(RuleFileError::Untrusted(e)) => problems.push(untrusted(e)),
                Err(RuleFileError::Io(e)) => problems.push(Diagnostic {
                    file: path.display().to_string(),
                    position: None,
                    message: format!("cannot read: {e}"),
                }),
            }
        }
    }
    (files, problems)
}

enum RuleFileError {
    Io(std::io::Error),
    Untrusted(secure_fs::Untrusted),
}

/// Reads a rule file; with `strict`, the checks are made on the open file, so what is read
/// is what was checked.
fn read_rule_file(path: &Path, strict: bool) -> Result<String, RuleFileError> {
    let mut file = fs::File::open(path).map_err(RuleFileError::Io)?;
    if strict {
        let meta = file.metadata().map_err(RuleFileError::Io)?;
        secure_fs::check_trusted(path, &meta, "rule file").map_err(RuleFileError::Untrusted)?;
    }
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(RuleFileError::Io)?;
    Ok(text)
}

fn untrusted(e: secure_fs::Untrusted) -> Diagnostic {
    Diagnostic {
        file: e.path.display().to_string(),
        position: None,
        message: e.reason,
    }
}

fn collect_json(
    dir: &Path,
    out: &mut Vec<PathBuf>,
    problems: &mut Vec<Diagnostic>,
    strict: bool,
    depth: usize,
) -> std::io::Result<()> {
    if depth > 16 {
        return Ok(());
    }
    if strict {
        let meta = fs::metadata(dir)?;
        if let Err(e) = secure_fs::check_trusted(dir, &meta, "rule directory") {
            problems.push(untrusted(e));
            return Ok(());
        }
    }
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        let kind = fs::metadata(&path)?;
        if kind.is_dir() {
            collect_json(&path, out, problems, strict, depth + 1)?;
        } else if kind.is_file() && path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
    Ok(())
}

/// Validates and compiles rule files.
pub fn compile_files(files: Vec<SourceFile>) -> Result<RuleSet, Vec<Diagnostic>> {
    let mut loader = Loader {
        files,
        diags: Vec::new(),
        sources: Vec::new(),
    };
    match loader.run() {
        Some(set) if loader.diags.is_empty() => Ok(set),
        _ => {
            // In file order, then by position (macros are checked before rules).
            let rank: HashMap<String, usize> = loader
                .files
                .iter()
                .enumerate()
                .map(|(i, f)| (f.path.display().to_string(), i))
                .collect();
            let mut diags = loader.diags;
            diags.sort_by_key(|d| (rank.get(&d.file).copied().unwrap_or(usize::MAX), d.position));
            Err(diags)
        }
    }
}

struct RawRule {
    file: usize,
    span_start: usize,
    members: Vec<(JsonString, Json)>,
}

struct Loader {
    files: Vec<SourceFile>,
    diags: Vec<Diagnostic>,
    /// Condition and macro texts: (file index, the string).
    sources: Vec<(usize, JsonString)>,
}

/// A rule between parsing and linking.
struct Pending {
    meta: RuleMeta,
    node: super::eval::Node,
    types: TypeMask,
    requires: Option<(String, usize, i64, Scope)>,
    tests: Option<Json>,
    file: usize,
}

impl Loader {
    fn diag_at(&mut self, file: usize, offset: usize, message: impl Into<String>) {
        let f = &self.files[file];
        self.diags.push(Diagnostic {
            file: f.path.display().to_string(),
            position: Some(json::line_col(&f.text, offset)),
            message: message.into(),
        });
    }

    fn compile_error(&mut self, e: CompileError) {
        let (file, offset) = match self.sources.get(e.source) {
            Some((file, string)) => (*file, string.source_offset(e.span.start)),
            None => (0, 0),
        };
        self.diag_at(file, offset, e.message);
    }

    fn run(&mut self) -> Option<RuleSet> {
        let mut lists: HashMap<String, Vec<ListItem>> = HashMap::new();
        let mut macro_defs: Vec<(String, usize, JsonString, usize)> = Vec::new();
        let mut raw_rules: Vec<RawRule> = Vec::new();

        for file in 0..self.files.len() {
            let parsed = json::parse(&self.files[file].text);
            let root = match parsed {
                Ok(root) => root,
                Err(e) => {
                    self.diag_at(file, e.offset, e.message);
                    continue;
                }
            };
            self.split_file(file, root, &mut lists, &mut macro_defs, &mut raw_rules);
        }

        // Macros: parse each body (positions inside it map back to its file).
        let mut macros: HashMap<String, MacroDef> = HashMap::new();
        for (name, file, body, key_offset) in macro_defs {
            if macros.contains_key(&name) {
                self.diag_at(
                    file,
                    key_offset,
                    format!("expected each macro to be defined once, found `{name}` again"),
                );
                continue;
            }
            if lists.contains_key(&name) {
                self.diag_at(
                    file,
                    key_offset,
                    format!("expected a name not already used by a list, found `{name}`"),
                );
                continue;
            }
            let source = self.sources.len();
            self.sources.push((file, body.clone()));
            match parser::parse(&body.text) {
                Ok(ast) => {
                    macros.insert(name, MacroDef { source, ast });
                }
                Err(e) => self.diag_at(file, body.source_offset(e.span.start), e.message),
            }
        }

        let mut compiler = Compiler::new(&lists, &macros);
        compiler.compile_all_macros();
        let macro_errors = std::mem::take(&mut compiler.macro_errors);
        for e in macro_errors {
            self.compile_error(e);
        }

        let mut pending: Vec<Pending> = Vec::new();
        let mut names: HashMap<String, (usize, usize)> = HashMap::new();
        for raw in raw_rules {
            if let Some(p) = self.rule(raw, &mut compiler, &mut names) {
                pending.push(p);
            }
        }
        let macro_errors = std::mem::take(&mut compiler.macro_errors);
        for e in macro_errors {
            self.compile_error(e);
        }
        let uses_parent_path = compiler.uses_parent_path;
        let memo_slots = compiler.memo_slots as usize;
        drop(compiler);

        // Link `requires` by name, refuse cycles, order rules so prerequisites come first.
        let index: HashMap<String, usize> = pending
            .iter()
            .enumerate()
            .map(|(i, p)| (p.meta.name.clone(), i))
            .collect();
        let mut links: Vec<Option<usize>> = vec![None; pending.len()];
        for (i, p) in pending.iter().enumerate() {
            if let Some((name, offset, _, _)) = &p.requires {
                match index.get(name) {
                    Some(&j) if j == i => {
                        let msg = format!(
                            "expected another rule's name in `requires`, found this rule's own name `{name}`"
                        );
                        self.diag_at(p.file, *offset, msg);
                    }
                    Some(&j) => links[i] = Some(j),
                    None => {
                        let msg = format!(
                            "expected the name of a loaded rule in `requires`, found unknown rule `{name}`"
                        );
                        self.diag_at(p.file, *offset, msg);
                    }
                }
            }
        }
        let mut depth: Vec<Option<usize>> = vec![None; pending.len()];
        for start in 0..pending.len() {
            let mut chain = vec![start];
            let mut cur = start;
            let mut cyclic = false;
            while let Some(next) = links[cur] {
                if depth[next].is_some() {
                    break;
                }
                if chain.contains(&next) {
                    cyclic = true;
                    break;
                }
                chain.push(next);
                cur = next;
            }
            if cyclic {
                let p = &pending[start];
                if let Some((_, offset, _, _)) = &p.requires {
                    let names: Vec<&str> = chain
                        .iter()
                        .map(|&i| pending[i].meta.name.as_str())
                        .collect();
                    let msg = format!(
                        "expected `requires` chains without cycles, found {} -> {}",
                        names.join(" -> "),
                        names[0]
                    );
                    let (file, offset) = (p.file, *offset);
                    self.diag_at(file, offset, msg);
                }
                for &i in &chain {
                    depth[i] = Some(0);
                }
                continue;
            }
            for &i in chain.iter().rev() {
                depth[i] = Some(links[i].and_then(|j| depth[j]).map_or(0, |d| d + 1));
            }
        }

        // What each prerequisite must remember for its dependants.
        let mut record = vec![Record::None; pending.len()];
        for (i, p) in pending.iter().enumerate() {
            if let (Some(j), Some((_, _, _, scope))) = (links[i], &p.requires) {
                record[j] = match (record[j], scope) {
                    (_, Scope::ProcessTree) | (Record::ProcessAndParent, _) => {
                        Record::ProcessAndParent
                    }
                    _ => Record::Process,
                };
            }
        }

        // Tests: parsed last, they need each rule's event types.
        let mut rules = Vec::with_capacity(pending.len());
        let mut tree_chains = false;
        for (i, p) in pending.into_iter().enumerate() {
            let tests = match &p.tests {
                Some(t) => self.tests(p.file, t, p.types),
                None => Vec::new(),
            };
            let requires = match (links[i], p.requires) {
                (Some(rule), Some((name, _, within_ns, scope))) => {
                    tree_chains |= scope == Scope::ProcessTree;
                    Some(Requirement {
                        rule: rule as u32,
                        rule_name: name,
                        within_ns,
                        scope,
                    })
                }
                _ => None,
            };
            rules.push(CompiledRule::new(
                p.meta,
                p.node,
                p.types,
                requires,
                record[i],
                depth[i].unwrap_or(0),
                tests,
            ));
        }
        if !self.diags.is_empty() {
            return None;
        }
        let files = self.files.iter().map(|f| f.path.clone()).collect();
        Some(RuleSet::new(
            rules,
            files,
            uses_parent_path || tree_chains,
            memo_slots,
        ))
    }

    fn split_file(
        &mut self,
        file: usize,
        root: Json,
        lists: &mut HashMap<String, Vec<ListItem>>,
        macros: &mut Vec<(String, usize, JsonString, usize)>,
        rules: &mut Vec<RawRule>,
    ) {
        let start = root.span.start;
        match root.value {
            JsonValue::Array(items) => self.rule_array(file, items, rules),
            JsonValue::Object(members)
                if members
                    .iter()
                    .any(|(k, _)| k.text == "name" || k.text == "condition") =>
            {
                rules.push(RawRule {
                    file,
                    span_start: start,
                    members,
                });
            }
            JsonValue::Object(members) => {
                for (key, value) in members {
                    let key_offset = key.source_offset(0).saturating_sub(1);
                    match key.text.as_str() {
                        "rules" => match value.value {
                            JsonValue::Array(items) => self.rule_array(file, items, rules),
                            other => self.diag_at(file, value.span.start, format!("expected an array of rules for `rules`, found {}", other.kind())),
                        },
                        "lists" => self.lists(file, value, lists),
                        "macros" => match value.value {
                            JsonValue::Object(defs) => {
                                for (name, body) in defs {
                                    let name_offset = name.source_offset(0).saturating_sub(1);
                                    if !self.check_name(file, name_offset, &name.text, "macro") {
                                        continue;
                                    }
                                    match body.value {
                                        JsonValue::String(s) => macros.push((name.text, file, s, name_offset)),
                                        other => self.diag_at(file, body.span.start, format!("expected a condition string for macro `{}`, found {}", name.text, other.kind())),
                                    }
                                }
                            }
                            other => self.diag_at(file, value.span.start, format!("expected an object of named conditions for `macros`, found {}", other.kind())),
                        },
                        k if PACK_INFO_KEYS.contains(&k) || k.starts_with('_') => {}
                        k => self.diag_at(file, key_offset, format!("expected `rules`, `lists`, `macros` (or a rule's `name` and `condition`), found key `{k}`")),
                    }
                }
            }
            other => self.diag_at(
                file,
                start,
                format!(
                    "expected a rule object, an array of rules or a pack object, found {}",
                    other.kind()
                ),
            ),
        }
    }

    fn rule_array(&mut self, file: usize, items: Vec<Json>, rules: &mut Vec<RawRule>) {
        for item in items {
            match item.value {
                JsonValue::Object(members) => rules.push(RawRule {
                    file,
                    span_start: item.span.start,
                    members,
                }),
                other => self.diag_at(
                    file,
                    item.span.start,
                    format!("expected a rule object, found {}", other.kind()),
                ),
            }
        }
    }

    /// List, macro names: a plain word that is not a field name.
    fn check_name(&mut self, file: usize, offset: usize, name: &str, what: &str) -> bool {
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid
            || matches!(
                name,
                "and" | "or" | "not" | "in" | "true" | "false" | "cidr"
            )
        {
            self.diag_at(
                file,
                offset,
                format!(
                    "expected a {what} name made of letters, digits, `_` and `-`, found {name:?}"
                ),
            );
            return false;
        }
        if fields::lookup(name).is_some() {
            self.diag_at(
                file,
                offset,
                format!("expected a {what} name that is not a field name, found `{name}`"),
            );
            return false;
        }
        true
    }

    fn lists(&mut self, file: usize, value: Json, lists: &mut HashMap<String, Vec<ListItem>>) {
        let JsonValue::Object(defs) = value.value else {
            let kind = value.value.kind();
            self.diag_at(
                file,
                value.span.start,
                format!("expected an object of named lists for `lists`, found {kind}"),
            );
            return;
        };
        for (name, items) in defs {
            let name_offset = name.source_offset(0).saturating_sub(1);
            if !self.check_name(file, name_offset, &name.text, "list") {
                continue;
            }
            let JsonValue::Array(items) = items.value else {
                let kind = items.value.kind();
                self.diag_at(
                    file,
                    items.span.start,
                    format!("expected an array for list `{}`, found {kind}", name.text),
                );
                continue;
            };
            // A list defined in several files is the union of its definitions.
            let entry = lists.entry(name.text.clone()).or_default();
            for item in items {
                match item.value {
                    JsonValue::String(s) => entry.push(ListItem::Str(s.text)),
                    JsonValue::Number(n) => match parse_number(&n) {
                        Some(n) => entry.push(ListItem::Num(n)),
                        None => self.diag_at(
                            file,
                            item.span.start,
                            format!("expected a number, found {n}"),
                        ),
                    },
                    other => {
                        self.diag_at(
                            file,
                            item.span.start,
                            format!(
                                "expected strings or numbers in list `{}`, found {}",
                                name.text,
                                other.kind()
                            ),
                        );
                    }
                }
            }
        }
    }

    fn rule(
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
                label,
                recommendation,
                tags,
                action,
                score,
                file: self.files[file].path.clone(),
                line: json::line_col(&self.files[file].text, raw.span_start).0,
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

    fn tests(&mut self, file: usize, v: &Json, types: TypeMask) -> Vec<RuleTest> {
        let JsonValue::Array(items) = &v.value else {
            let kind = v.value.kind();
            self.diag_at(
                file,
                v.span.start,
                format!("expected an array of tests for `tests`, found {kind}"),
            );
            return Vec::new();
        };
        let default_type = types_in(if types == 0 { ALL_TYPES } else { types })
            .next()
            .unwrap_or(EventType::ProcessExec);
        let mut tests = Vec::new();
        for item in items {
            let JsonValue::Object(members) = &item.value else {
                let kind = item.value.kind();
                self.diag_at(file, item.span.start, format!("expected a test object {{\"event\": {{...}}, \"expect\": true}}, found {kind}"));
                continue;
            };
            let mut event = None;
            let mut expect = None;
            let mut after = Vec::new();
            for (key, value) in members {
                match key.text.as_str() {
                    "event" => event = self.test_event(file, value, default_type, 1000),
                    "expect" => match value.value {
                        JsonValue::Bool(b) => expect = Some(b),
                        ref other => {
                            let msg = format!(
                                "expected true or false for `expect`, found {}",
                                other.kind()
                            );
                            self.diag_at(file, value.span.start, msg);
                        }
                    },
                    "after" => match &value.value {
                        JsonValue::Array(events) => {
                            for (i, e) in events.iter().enumerate() {
                                if let Some(e) = self.test_event(file, e, default_type, i as i64) {
                                    after.push(e);
                                }
                            }
                        }
                        other => {
                            let msg = format!(
                                "expected an array of earlier events for `after`, found {}",
                                other.kind()
                            );
                            self.diag_at(file, value.span.start, msg);
                        }
                    },
                    "description" | "name" => {}
                    other => {
                        let offset = key.source_offset(0).saturating_sub(1);
                        self.diag_at(file, offset, format!("expected `event`, `expect`, `after` or `description` in a test, found `{other}`"));
                    }
                }
            }
            match (event, expect) {
                (Some(event), Some(expect)) => tests.push(RuleTest {
                    event,
                    after,
                    expect,
                    line: json::line_col(&self.files[file].text, item.span.start).0,
                }),
                (_, None) => self.diag_at(
                    file,
                    item.span.start,
                    "expected `expect` (true or false) in the test, found none",
                ),
                (None, _) => {
                    if !members.iter().any(|(k, _)| k.text == "event") {
                        self.diag_at(
                            file,
                            item.span.start,
                            "expected an `event` in the test, found none",
                        );
                    }
                }
            }
        }
        tests
    }

    /// A partial event: the given fields over [`Event::new`]'s defaults. `event_type` defaults
    /// to the rule's first event type; `timestamp` to `seconds` after the epoch.
    fn test_event(
        &mut self,
        file: usize,
        v: &Json,
        default_type: EventType,
        seconds: i64,
    ) -> Option<Event> {
        let JsonValue::Object(members) = &v.value else {
            let kind = v.value.kind();
            self.diag_at(
                file,
                v.span.start,
                format!("expected an event object, found {kind}"),
            );
            return None;
        };
        let timestamp = DateTime::UNIX_EPOCH + TimeDelta::seconds(seconds);
        let base = Event::new(default_type, timestamp);
        let mut value = match serde_json::to_value(&base) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => return None,
        };
        for (key, field) in members {
            value.insert(key.text.clone(), to_serde(field));
        }
        let event: Event = match serde_json::from_value(serde_json::Value::Object(value)) {
            Ok(e) => e,
            Err(e) => {
                // serde names the field in its message; point at the member when we can.
                let message = e.to_string();
                let offset = members
                    .iter()
                    .find(|(k, _)| {
                        message.contains(&format!("`{}`", k.text)) || message.contains(&k.text)
                    })
                    .map_or(v.span.start, |(_, val)| val.span.start);
                self.diag_at(
                    file,
                    offset,
                    format!("expected a valid event, found a problem: {message}"),
                );
                return None;
            }
        };
        // Keys that did not land in any Event field are typos.
        if let Ok(serde_json::Value::Object(round)) = serde_json::to_value(&event) {
            for (key, field) in members {
                if !round.contains_key(&key.text) && !matches!(field.value, JsonValue::Null) {
                    let offset = key.source_offset(0).saturating_sub(1);
                    self.diag_at(
                        file,
                        offset,
                        format!(
                            "expected an event field (see docs/json-schema.md), found `{}`",
                            key.text
                        ),
                    );
                }
            }
        }
        Some(event)
    }

    fn string<'j>(&mut self, file: usize, v: &'j Json, key: &str) -> Option<&'j JsonString> {
        match &v.value {
            JsonValue::String(s) => Some(s),
            other => {
                self.diag_at(
                    file,
                    v.span.start,
                    format!("expected a string for `{key}`, found {}", other.kind()),
                );
                None
            }
        }
    }

    /// An array of strings, with the file offset of each.
    fn strings(&mut self, file: usize, v: &Json, key: &str) -> Vec<(String, usize)> {
        let JsonValue::Array(items) = &v.value else {
            let kind = v.value.kind();
            self.diag_at(
                file,
                v.span.start,
                format!("expected an array of strings for `{key}`, found {kind}"),
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for item in items {
            match &item.value {
                JsonValue::String(s) => out.push((s.text.clone(), item.span.start)),
                other => {
                    let msg = format!("expected a string in `{key}`, found {}", other.kind());
                    self.diag_at(file, item.span.start, msg);
                }
            }
        }
        out
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

fn parse_number(text: &str) -> Option<Number> {
    if let Ok(i) = text.parse::<i64>() {
        return Some(Number::Int(i));
    }
    text.parse::<f64>().ok().map(Number::Float)
}

fn to_serde(json: &Json) -> serde_json::Value {
    use serde_json::Value;
    match &json.value {
        JsonValue::Null => Value::Null,
        JsonValue::Bool(b) => Value::Bool(*b),
        JsonValue::Number(n) => {
            if let Ok(i) = n.parse::<i64>() {
                Value::from(i)
            } else if let Ok(u) = n.parse::<u64>() {
                Value::from(u)
            } else {
                n.parse::<f64>().map_or(Value::Null, Value::from)
            }
        }
        JsonValue::String(s) => Value::String(s.text.clone()),
        JsonValue::Array(items) => Value::Array(items.iter().map(to_serde).collect()),
        JsonValue::Object(members) => Value::Object(
            members
                .iter()
                .map(|(k, v)| (k.text.clone(), to_serde(v)))
                .collect(),
        ),
    }
}
