//! `secmon-tui rules check|test|list [--markdown]`: what each prints (no root needed).

use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;

use super::testing::{run_tests, test_gaps};
use super::{RuleSet, RulesError};
use crate::cli::RulesCommand;
use crate::sanitize::for_terminal;

/// Runs one `rules` subcommand over `dirs`: reports on `out`, problems on `err`. Returns
/// whether it succeeded (the exit status).
pub fn run(
    command: &RulesCommand,
    dirs: &[PathBuf],
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<bool> {
    let set = match RuleSet::load(dirs) {
        Ok(set) => Arc::new(set),
        Err(RulesError::Invalid(diags)) => {
            for d in &diags {
                writeln!(err, "{}", for_terminal(&d.to_string()))?;
            }
            let n = diags.len();
            writeln!(
                err,
                "error: {n} problem{} in the rules",
                if n == 1 { "" } else { "s" }
            )?;
            return Ok(false);
        }
        Err(e) => {
            writeln!(err, "error: {e}")?;
            return Ok(false);
        }
    };
    match command {
        RulesCommand::Check { .. } => {
            writeln!(
                out,
                "ok: {} rules in {} files",
                set.len(),
                set.files().len()
            )?;
            Ok(true)
        }
        RulesCommand::Test { .. } => test(&set, out),
        RulesCommand::List { markdown: true, .. } => {
            out.write_all(super::reference::markdown(&set).as_bytes())?;
            Ok(true)
        }
        RulesCommand::List { .. } => {
            list(&set, out)?;
            Ok(true)
        }
    }
}

fn table(
    out: &mut dyn Write,
    header: &[&str],
    rows: &[Vec<String>],
    right: &[bool],
) -> io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| -> String {
        let mut text = String::new();
        for (i, cell) in cells.enumerate() {
            let pad = widths[i].saturating_sub(cell.chars().count());
            if i > 0 {
                text.push_str("  ");
            }
            let last = i + 1 == widths.len();
            if right.get(i).copied().unwrap_or(false) {
                text.push_str(&" ".repeat(pad));
                text.push_str(cell);
            } else {
                text.push_str(cell);
                if !last {
                    text.push_str(&" ".repeat(pad));
                }
            }
        }
        text.trim_end().to_string()
    };
    writeln!(out, "{}", line(&mut header.iter().copied()))?;
    for row in rows {
        writeln!(out, "{}", line(&mut row.iter().map(String::as_str)))?;
    }
    Ok(())
}

fn test(set: &Arc<RuleSet>, out: &mut dyn Write) -> io::Result<bool> {
    let results = run_tests(set);
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|r| {
            vec![
                for_terminal(&r.rule).into_owned(),
                r.index.to_string(),
                r.expected.to_string(),
                r.got.to_string(),
                if r.passed() { "pass" } else { "FAIL" }.to_string(),
            ]
        })
        .collect();
    table(
        out,
        &["RULE", "TEST", "EXPECTED", "GOT", "RESULT"],
        &rows,
        &[false, true, false, false, false],
    )?;
    let failed: Vec<_> = results.iter().filter(|r| !r.passed()).collect();
    if !failed.is_empty() {
        writeln!(out)?;
        for r in &failed {
            writeln!(
                out,
                "FAIL {}:{}: rule `{}` test {}: expected {}, got {}",
                for_terminal(&r.file.display().to_string()),
                r.line,
                for_terminal(&r.rule),
                r.index,
                if r.expected { "a match" } else { "no match" },
                if r.got { "a match" } else { "no match" },
            )?;
        }
    }
    let gaps = test_gaps(set);
    if !gaps.is_empty() {
        let listed: Vec<String> = gaps
            .iter()
            .map(|(rule, gap)| format!("{} ({gap})", for_terminal(rule)))
            .collect();
        writeln!(
            out,
            "note: {} rule{} not tested both ways (a test it must match and one it must not): {}",
            gaps.len(),
            if gaps.len() == 1 { "" } else { "s" },
            listed.join(", ")
        )?;
    }
    writeln!(
        out,
        "{} passed, {} failed",
        results.len() - failed.len(),
        failed.len()
    )?;
    Ok(failed.is_empty())
}

fn list(set: &RuleSet, out: &mut dyn Write) -> io::Result<()> {
    let rows: Vec<Vec<String>> = set
        .info()
        .into_iter()
        .map(|r| {
            vec![
                for_terminal(&r.name).into_owned(),
                format!("{:.2}", r.score),
                r.action.to_string(),
                if r.enabled { "yes" } else { "no" }.to_string(),
                match r.doc.tactic_keys() {
                    keys if keys.is_empty() => "-".to_string(),
                    keys => keys.replace(' ', ""),
                },
                for_terminal(&r.tags.join(",")).into_owned(),
            ]
        })
        .collect();
    table(
        out,
        &["NAME", "SCORE", "ACTION", "ENABLED", "TACTIC", "TAGS"],
        &rows,
        &[false, true, false, false, false, false],
    )?;
    writeln!(out, "{} rules in {} files", set.len(), set.files().len())
}
