//! The module-cycle check of `cargo xtask lint`: no two top-level modules of the monitor crate
//! may reference each other.
//!
//! A pair of modules that import each other cannot be read, tested or replaced one at a time,
//! and a new front end wired onto one drags in the other. The check reads the sources instead
//! of asking the compiler, so it runs before anything is built: every `crate::<module>` path in
//! code (in `use` statements and in paths, with `use crate::{a, b::c}` groups) of a file under
//! `monitor/src/<name>.rs` or `monitor/src/<name>/` is an edge `name → module`. Comments are
//! skipped (an intra-doc link is not a dependency), and so is test code (files named
//! `tests.rs` and a trailing `#[cfg(test)] mod tests`): a test may wire the real neighbours of
//! its module together (the app's tests drive it with the real simulated response), which the
//! built program never does.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Pairs allowed to reference each other for now, written either way round: only cycles through
/// `pipeline`, `tui`, `app`, `ui` or `analysis`, which are being rewritten (issue 13), may be
/// listed, each with a comment saying why, and the list ends empty. An entry that is no longer a
/// cycle fails the check, so the list cannot go stale.
///
/// Empty when the check was written: the others were broken then (`event`↔`rules`,
/// `capture`↔`enrich`, `config`↔`response`), and `app` names `tui` and `ui` only in doc
/// comments, which do not count.
const ALLOWED: &[(&str, &str)] = &[];

/// A file and line where one module refers to another, for the report.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Site {
    pub file: PathBuf,
    pub line: usize,
}

/// `from → to` edges between top-level modules, with the first place each was seen.
pub type Edges = BTreeMap<(String, String), Site>;

/// The top-level modules of the crate rooted at `src`: `<name>.rs` and `<name>/` entries,
/// without the crate roots.
fn top_level_modules(src: &Path) -> Result<BTreeSet<String>> {
    let mut names = BTreeSet::new();
    for entry in fs::read_dir(src).with_context(|| format!("reading {}", src.display()))? {
        let path = entry?.path();
        let name = if path.is_dir() {
            path.file_name().and_then(|n| n.to_str())
        } else if path.extension().is_some_and(|e| e == "rs") {
            path.file_stem().and_then(|n| n.to_str())
        } else {
            None
        };
        if let Some(name) = name.filter(|n| !matches!(*n, "lib" | "main")) {
            names.insert(name.to_string());
        }
    }
    Ok(names)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            rust_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// Every edge between top-level modules of the crate whose sources are in `src`.
pub fn edges(src: &Path) -> Result<Edges> {
    let modules = top_level_modules(src)?;
    let mut files = Vec::new();
    rust_files(src, &mut files)?;
    files.sort();
    let mut edges = Edges::new();
    for file in files {
        let relative = file.strip_prefix(src).unwrap_or(&file);
        let Some(owner) = relative
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .map(|c| c.trim_end_matches(".rs"))
            .filter(|c| modules.contains(*c))
        else {
            continue;
        };
        if file.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let text =
            fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
        for (line, target) in crate_references(without_tests(&text)) {
            if target != owner && modules.contains(&target) {
                edges
                    .entry((owner.to_string(), target))
                    .or_insert_with(|| Site {
                        file: file.clone(),
                        line,
                    });
            }
        }
    }
    Ok(edges)
}

/// The source with comments blanked out (newlines kept, so line numbers stay right). String
/// literals are not parsed: a `crate::x` inside one would count, which no code here has.
fn without_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("//") {
            let end = after.find('\n').unwrap_or(after.len());
            rest = &after[end..];
        } else if let Some(after) = rest.strip_prefix("/*") {
            let end = after.find("*/").map_or(after.len(), |i| i + 2);
            out.extend(after[..end].chars().filter(|&c| c == '\n'));
            rest = &after[end..];
        } else {
            let mut chars = rest.chars();
            if let Some(c) = chars.next() {
                out.push(c);
            }
            rest = chars.as_str();
        }
    }
    out
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The leading identifier of `text` (after whitespace).
fn leading_ident(text: &str) -> &str {
    let text = text.trim_start();
    let end = text.find(|c| !is_ident_char(c)).unwrap_or(text.len());
    &text[..end]
}

/// The first path segment of each item of a `{…}` group that `text` starts inside (just after
/// the `{`): `event::Event, rules::{a, b}}` gives `event` and `rules`.
fn group_heads(text: &str) -> Vec<&str> {
    let mut heads = Vec::new();
    let mut depth = 0usize;
    let mut item_start = Some(0);
    for (i, c) in text.char_indices() {
        if let Some(start) = item_start.take() {
            let head = leading_ident(&text[start..]);
            if !head.is_empty() {
                heads.push(head);
            }
        }
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => item_start = Some(i + 1),
            _ => {}
        }
    }
    heads
}

/// `text` up to its test module (`#[cfg(test)]` at the start of a line, then `mod tests`),
/// which by convention ends a file.
fn without_tests(text: &str) -> &str {
    let mut at = 0;
    while let Some(found) = text[at..].find("\n#[cfg(test)]") {
        let start = at + found + 1;
        let rest = text[start + "#[cfg(test)]".len()..].trim_start();
        if rest.starts_with("mod tests") {
            return &text[..start];
        }
        at = start;
    }
    text
}

/// `(line, module)` for each `crate::<module>` path in `text` (1-based lines).
pub fn crate_references(text: &str) -> Vec<(usize, String)> {
    let code = without_comments(text);
    let mut found = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let preceded_by_ident = code[..at]
            .chars()
            .next_back()
            .is_some_and(|c| is_ident_char(c) || c == '$');
        if preceded_by_ident {
            continue; // `$crate::`, `my_crate::`
        }
        let line = code[..at].matches('\n').count() + 1;
        let after = code[at + "crate::".len()..].trim_start();
        let heads = match after.strip_prefix('{') {
            Some(group) => group_heads(group),
            None => vec![leading_ident(after)],
        };
        found.extend(
            heads
                .into_iter()
                .filter(|h| !h.is_empty())
                .map(|h| (line, h.to_string())),
        );
    }
    found
}

/// Pairs `(a, b)`, `a < b`, where `a` references `b` and `b` references `a`, with one site of
/// each direction.
pub fn cycles(edges: &Edges) -> Vec<((String, String), Site, Site)> {
    edges
        .iter()
        .filter(|((a, b), _)| a < b)
        .filter_map(|((a, b), there)| {
            let back = edges.get(&(b.clone(), a.clone()))?;
            Some(((a.clone(), b.clone()), there.clone(), back.clone()))
        })
        .collect()
}

fn same_pair((a, b): (&str, &str), (x, y): (&str, &str)) -> bool {
    (a, b) == (x, y) || (a, b) == (y, x)
}

/// One line per cycle that `allowed` does not list and per entry of `allowed` that is no
/// longer a cycle.
pub fn problems(edges: &Edges, allowed: &[(&str, &str)]) -> Vec<String> {
    let found = cycles(edges);
    let is_cycle = |pair| {
        found
            .iter()
            .any(|((a, b), _, _)| same_pair((a.as_str(), b.as_str()), pair))
    };
    let mut problems: Vec<String> = found
        .iter()
        .filter(|((a, b), _, _)| {
            !allowed
                .iter()
                .any(|&p| same_pair((a.as_str(), b.as_str()), p))
        })
        .map(|((a, b), there, back)| {
            format!(
                "modules `{a}` and `{b}` reference each other ({}:{} and {}:{})",
                there.file.display(),
                there.line,
                back.file.display(),
                back.line
            )
        })
        .collect();
    problems.extend(allowed.iter().filter(|&&p| !is_cycle(p)).map(|(x, y)| {
        format!(
            "`{x}` and `{y}` are allowed to reference each other (xtask/src/module_cycles.rs) \
             but no longer do: remove the entry"
        )
    }));
    problems
}

/// The lint step: prints each problem and returns whether there were none.
pub fn check(src: &Path) -> Result<bool> {
    let edges = edges(src)?;
    let problems = problems(&edges, ALLOWED);
    for problem in &problems {
        eprintln!("xtask lint: module cycles: {problem}");
    }
    Ok(problems.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(text: &str) -> Vec<(usize, String)> {
        crate_references(text)
    }

    fn pair(a: &str, b: &str) -> (usize, String) {
        (a.parse().unwrap(), b.to_string())
    }

    #[test]
    fn finds_paths_uses_and_groups() {
        let text = "use crate::event::Event;\n\
                    use crate::{rules::{Engine, fields}, storage, sanitize::for_terminal};\n\
                    fn f() { crate::capture::probes::syscalls(); }\n";
        assert_eq!(
            refs(text),
            vec![
                pair("1", "event"),
                pair("2", "rules"),
                pair("2", "storage"),
                pair("2", "sanitize"),
                pair("3", "capture"),
            ]
        );
    }

    #[test]
    fn skips_test_modules() {
        let text = "use crate::event::Event;\n#[cfg(test)]\nfn helper() { crate::rules::x(); }\n\
                    #[cfg(test)]\nmod tests {\n    use crate::response::Fake;\n}\n";
        assert_eq!(
            refs(without_tests(text)),
            vec![pair("1", "event"), pair("3", "rules")]
        );
    }

    #[test]
    fn skips_comments_and_other_crates() {
        let text = "// use crate::rules;\n\
                    /// [`X`]: crate::rules::X\n\
                    /* crate::storage\n crate::ui */ use crate::event;\n\
                    macro_rules! m { () => { $crate::x() } }\n\
                    use monitor_crate::y;\n";
        assert_eq!(refs(text), vec![pair("4", "event")]);
    }

    #[test]
    fn reports_each_mutual_pair_once_with_both_sites() {
        let dir = tempdir();
        let src = dir.join("src");
        fs::create_dir_all(src.join("capture")).unwrap();
        fs::create_dir_all(src.join("enrich")).unwrap();
        fs::write(
            src.join("lib.rs"),
            "pub mod capture; pub mod enrich; pub mod event;",
        )
        .unwrap();
        fs::write(src.join("event.rs"), "pub struct Event;").unwrap();
        fs::write(src.join("capture/mod.rs"), "use crate::event::Event;\n").unwrap();
        fs::write(
            src.join("capture/enforce.rs"),
            "\nuse crate::enrich::{BootClock, paths};\n",
        )
        .unwrap();
        fs::write(
            src.join("enrich/mod.rs"),
            "use crate::{capture::probes, event};\n",
        )
        .unwrap();
        let edges = edges(&src).unwrap();
        let found = cycles(&edges);
        assert_eq!(found.len(), 1, "{found:?}");
        let ((a, b), there, back) = &found[0];
        assert_eq!((a.as_str(), b.as_str()), ("capture", "enrich"));
        assert_eq!(
            (there.file.ends_with("capture/enforce.rs"), there.line),
            (true, 2)
        );
        assert_eq!((back.file.ends_with("enrich/mod.rs"), back.line), (true, 1));
        assert_eq!(problems(&edges, &[]).len(), 1);
        assert!(problems(&edges, &[("enrich", "capture")]).is_empty());
        assert_eq!(
            problems(&edges, &[("capture", "enrich"), ("event", "capture")]).len(),
            1,
            "an allowed pair that is no cycle is reported"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_monitor_crate_has_no_cycles_but_the_allowed_ones() {
        let src = crate::util::repo_root().join("monitor").join("src");
        let edges = edges(&src).unwrap();
        assert_eq!(problems(&edges, ALLOWED), Vec::<String>::new());
    }

    /// A fresh directory under the system's temporary directory (xtask has no tempfile
    /// dependency).
    fn tempdir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "xtask-module-cycles-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&dir);
        dir
    }
}
