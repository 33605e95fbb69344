//! The rule reference at the end of docs/rules.md: `secmon-tui rules list --markdown rules`
//! prints it from the rule files; `cargo xtask rule-docs` writes it into the page and
//! `cargo xtask lint` fails when the page holds something else.

use std::path::PathBuf;
use std::process::{ExitCode, Stdio};

use anyhow::{Context as _, Result, bail};

use crate::util;

/// The generated part starts at the line beginning with this and ends after [`END`].
const BEGIN: &str = "<!-- BEGIN GENERATED RULES";
const END: &str = "<!-- END GENERATED RULES -->";

fn page() -> PathBuf {
    util::repo_root().join("docs").join("rules.md")
}

/// What the monitor prints for the source tree's rules (paths relative to the repository
/// root, as the page's links expect).
fn generate() -> Result<String> {
    let mut cmd = util::cargo();
    cmd.args([
        "run",
        "-q",
        "-p",
        "monitor",
        "--bin",
        "secmon-tui",
        "--",
        "rules",
        "list",
        "--markdown",
        "rules",
    ])
    .stderr(Stdio::inherit());
    match util::output(&mut cmd)? {
        Some(text) => Ok(text),
        None => bail!("`{}` failed", util::display(&cmd)),
    }
}

/// `page` with its generated part replaced by `generated`.
fn splice(page: &str, generated: &str) -> Result<String> {
    let (Some(start), Some(end)) = (page.find(BEGIN), page.find(END)) else {
        bail!("docs/rules.md: the BEGIN/END GENERATED RULES markers are missing");
    };
    let after = page[end + END.len()..]
        .strip_prefix('\n')
        .unwrap_or(&page[end + END.len()..]);
    Ok(format!("{}{generated}{after}", &page[..start]))
}

/// Whether docs/rules.md holds the current reference (the `lint` step).
pub fn is_current() -> Result<bool> {
    let path = page();
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let current = splice(&text, &generate()?)? == text;
    if !current {
        eprintln!("docs/rules.md is out of date: run cargo xtask rule-docs");
    }
    Ok(current)
}

/// `cargo xtask rule-docs`: rewrites the reference in docs/rules.md.
pub fn run() -> Result<ExitCode> {
    let path = page();
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let new = splice(&text, &generate()?)?;
    if new == text {
        eprintln!("xtask rule-docs: docs/rules.md is up to date");
    } else {
        std::fs::write(&path, new).with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("xtask rule-docs: rewrote the rule reference in docs/rules.md");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splice_replaces_only_the_generated_part() {
        let page = "intro\n<!-- BEGIN GENERATED RULES (old) -->\nold\n<!-- END GENERATED RULES -->\nafter\n";
        let generated = "<!-- BEGIN GENERATED RULES (new) -->\nnew\n<!-- END GENERATED RULES -->\n";
        assert_eq!(
            splice(page, generated).expect("markers"),
            format!("intro\n{generated}after\n")
        );
        assert!(splice("no markers", generated).is_err());
    }
}
