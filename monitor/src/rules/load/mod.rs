//! Rule files → a validated, compiled [`RuleSet`].
//!
//! Every problem found is collected (not just the first) as a [`Diagnostic`] with the file,
//! line and column; a set with any problem is refused as a whole.
//!
//! - [`files`]: finding and reading the rule files under the rule directories;
//! - [`pack`]: a file's top level (a rule, an array of rules, or a pack of lists, macros and
//!   rules);
//! - [`rule`]: one rule's keys and their checks;
//! - [`embedded_tests`]: a rule's `tests`, parsed into events;
//! - here: the whole set, macros compiled and `requires` chains linked.

mod embedded_tests;
mod files;
mod pack;
mod rule;

use std::collections::HashMap;
use std::fmt;

use super::compile::{CompileError, Compiler, ListItem};
use super::fields::TypeMask;
use super::json::{self, Json, JsonString, JsonValue};
use super::{CompiledRule, Definitions, Record, Requirement, RuleMeta, RuleSet, Scope};

#[cfg(test)]
pub(crate) use files::read_dirs_with;
pub use files::{SourceFile, read_dirs};
use pack::MacroSource;

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

/// Validates and compiles rule files.
pub fn compile_files(files: Vec<SourceFile>) -> Result<RuleSet, Vec<Diagnostic>> {
    let mut loader = Loader {
        files,
        diags: Vec::new(),
        sources: Vec::new(),
        definitions: Definitions::default(),
        newlines: Vec::new(),
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
    /// Lists and macros as written, for [`RuleSet::definitions`].
    definitions: Definitions,
    /// Per file, the offsets of its newlines (made when a line number is first asked for):
    /// counting them from the start for every rule and test made a load of one file of
    /// 5,000 rules take a second.
    newlines: Vec<Option<Box<[usize]>>>,
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

    /// 1-based line of a byte offset in a file (as [`json::line_col`] counts it).
    fn line(&mut self, file: usize, offset: usize) -> usize {
        if self.newlines.len() < self.files.len() {
            self.newlines.resize(self.files.len(), None);
        }
        let text = &self.files[file].text;
        let newlines = self.newlines[file]
            .get_or_insert_with(|| memchr::memchr_iter(b'\n', text.as_bytes()).collect());
        newlines.partition_point(|&n| n < offset) + 1
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
        let mut macro_defs: Vec<MacroSource> = Vec::new();
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

        let macros = self.parse_macros(macro_defs, &lists);

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
        let mut set = RuleSet::new(rules, files, uses_parent_path || tree_chains, memo_slots);
        set.definitions = std::mem::take(&mut self.definitions);
        Some(set)
    }

    /// Remembers that `file` defines lists or macros.
    fn defines(&mut self, file: usize) {
        let path = &self.files[file].path;
        if !self.definitions.files.contains(path) {
            self.definitions.files.push(path.clone());
        }
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
