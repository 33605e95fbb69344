//! `secmon-tui rules list --markdown`: the rule reference at the end of docs/rules.md, made
//! from a loaded set (every rule with its ATT&CK classification, reasoning and condition; the
//! shared lists and macros). `cargo xtask lint` checks that docs/rules.md holds what this
//! prints; `cargo xtask rule-docs` writes it there.

use std::fmt::Write as _;
use std::path::Path;

use super::attack::{self, Tactic};
use super::{CompiledRule, MALICIOUS_THRESHOLD, RuleSet};
use crate::config::ThreatDetection;
use crate::sanitize::needs_escape;

/// The first line of the generated part (xtask looks for it).
pub const BEGIN: &str = "<!-- BEGIN GENERATED RULES (cargo xtask rule-docs) -->";
/// The last line of the generated part.
pub const END: &str = "<!-- END GENERATED RULES -->";

/// The rule reference, from [`BEGIN`] to [`END`] (each on its own line, the text ending with a
/// newline).
pub fn markdown(set: &RuleSet) -> String {
    let mut rules: Vec<&CompiledRule> = set.rules().iter().collect();
    // Grouped by main tactic in matrix order (undocumented rules last), then by file; within
    // a file, in file order (the sort is stable).
    rules.sort_by(|a, b| {
        (main_tactic(a).is_none(), main_tactic(a), &a.meta.file).cmp(&(
            main_tactic(b).is_none(),
            main_tactic(b),
            &b.meta.file,
        ))
    });
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_reference(&mut out, set, &rules);
    out
}

fn write_reference(out: &mut String, set: &RuleSet, rules: &[&CompiledRule]) -> std::fmt::Result {
    writeln!(out, "{BEGIN}\n\n## The shipped rules\n")?;
    writeln!(
        out,
        "{} rules in {} files. Score: the rule's `risk_score`; the severity column says what the \
         rule alone makes of an event.\n",
        rules.len(),
        set.files().len()
    )?;
    writeln!(
        out,
        "| Rule | Label | Tactic | Score | Severity alone | Action |\n\
         | --- | --- | --- | --- | --- | --- |"
    )?;
    for rule in rules {
        let meta = &rule.meta;
        writeln!(
            out,
            "| [`{name}`](#{name}) | {label} | {tactics} | {score} | {severity} | `{action}` |",
            name = text(&meta.name),
            label = cell(&meta.label),
            tactics = tactic_names(rule),
            score = meta.score,
            severity = severity_short(meta.score),
            action = meta.action,
        )?;
    }
    writeln!(out)?;

    let mut group = None;
    for rule in rules {
        let tactic = main_tactic(rule);
        if group != Some(tactic) {
            group = Some(tactic);
            match tactic {
                Some(t) => writeln!(out, "### {} ([{}]({}))\n", t.name(), t.id(), t.url())?,
                None => writeln!(out, "### Rules without a tactic\n")?,
            }
        }
        write_rule(out, rule)?;
    }
    write_definitions(out, set)?;
    writeln!(out, "{END}")
}

fn write_rule(out: &mut String, rule: &CompiledRule) -> std::fmt::Result {
    let meta = &rule.meta;
    let doc = &meta.doc;
    let name = text(&meta.name);
    // An explicit anchor, so links do not depend on how a renderer names headings.
    writeln!(out, "<a id=\"{name}\"></a>\n")?;
    writeln!(out, "#### `{name}` — {}\n", text(&meta.label))?;
    writeln!(out, "| | |\n| --- | --- |")?;
    writeln!(out, "| Tactic | {} |", tactic_names(rule))?;
    let techniques: Vec<String> = doc
        .techniques
        .iter()
        .map(|id| {
            let link = format!("[{id}]({})", attack::technique_url(id));
            match attack::technique_name(id) {
                Some(name) => format!("{link} {name}"),
                None => link,
            }
        })
        .collect();
    writeln!(out, "| ATT&CK | {} |", techniques.join("; "))?;
    writeln!(
        out,
        "| Score | {} ({}) |",
        meta.score,
        severity_alone(meta.score)
    )?;
    let disabled = if meta.enabled {
        ""
    } else {
        " (disabled by default)"
    };
    writeln!(out, "| Action | `{}`{disabled} |", meta.action)?;
    let types: Vec<String> = meta
        .event_types
        .iter()
        .map(|t| format!("`{}`", t.as_str()))
        .collect();
    writeln!(out, "| Event types | {} |", types.join(", "))?;
    if let Some(req) = &rule.requires {
        let required = text(&req.rule_name);
        writeln!(
            out,
            "| Chain | requires [`{required}`](#{required}) within {} s, scope `{}` |",
            req.within_ns as f64 / 1e9,
            req.scope.as_str()
        )?;
    }
    let file = text(&display_path(&meta.file));
    writeln!(out, "| File | [`{file}`](../{file}) |")?;
    writeln!(out, "| Tests | {} |\n", rule.tests.len())?;
    for (title, body) in [
        ("What", &doc.what),
        ("Why", &doc.why),
        ("Known false positives", &doc.false_positives),
        ("Recommendation", &meta.recommendation),
    ] {
        if !body.is_empty() {
            writeln!(out, "**{title}.** {}\n", text(body))?;
        }
    }
    writeln!(out, "```text\n{}\n```\n", escape(&meta.condition, "\n"))
}

fn write_definitions(out: &mut String, set: &RuleSet) -> std::fmt::Result {
    let defs = set.definitions();
    let files: Vec<String> = defs
        .files
        .iter()
        .map(|f| {
            let f = text(&display_path(f));
            format!("[`{f}`](../{f})")
        })
        .collect();
    if !defs.lists.is_empty() {
        writeln!(out, "## Shared lists\n")?;
        writeln!(
            out,
            "Defined in {}. Extend any of them from your own rules directory (see \
             [Extending a list](#extending-a-list-without-touching-the-rules)).\n",
            files.join(", ")
        )?;
        writeln!(out, "| List | Entries |\n| --- | --- |")?;
        for (name, items) in &defs.lists {
            let items: Vec<String> = items.iter().map(|i| format!("`{}`", cell(i))).collect();
            writeln!(out, "| `{}` | {} |", text(name), items.join(", "))?;
        }
        writeln!(out)?;
    }
    if !defs.macros.is_empty() {
        writeln!(out, "## Shared macros\n")?;
        for (name, body) in &defs.macros {
            writeln!(out, "- `{}`: `{}`", text(name), cell(body))?;
        }
        writeln!(out)?;
    }
    Ok(())
}

fn main_tactic(rule: &CompiledRule) -> Option<Tactic> {
    rule.meta.doc.tactics.first().copied()
}

fn tactic_names(rule: &CompiledRule) -> String {
    let names: Vec<&str> = rule.meta.doc.tactics.iter().map(|t| t.name()).collect();
    names.join(" / ")
}

/// What a rule's score alone makes of an event, at the default threshold.
fn severity_alone(score: f64) -> &'static str {
    match severity_short(score) {
        "malicious" => "malicious on its own",
        "suspicious" => "suspicious on its own",
        _ => "weak signal: benign on its own, adds to other matches",
    }
}

fn severity_short(score: f64) -> &'static str {
    if score >= MALICIOUS_THRESHOLD {
        "malicious"
    } else if score >= ThreatDetection::default().confidence_threshold {
        "suspicious"
    } else {
        "benign (weak)"
    }
}

/// Paths as loaded: relative when the rules directory was given relative (as xtask does), so
/// the links work from docs/.
fn display_path(path: &Path) -> String {
    path.display().to_string()
}

/// Rule text for markdown, on one line: see [`escape`].
fn text(s: &str) -> String {
    escape(s, " ")
}

/// Characters a terminal or a renderer would act on (controls, invisible and bidirectional
/// formatting) are written as `\u{..}`; a newline as `newline`.
fn escape(s: &str, newline: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' => out.push_str(newline),
            '\\' => out.push('\\'),
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// [`text`] for a table cell, where `|` would end the cell.
fn cell(s: &str) -> String {
    text(s).replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::rules::{SOURCE_RULES_DIR, load};

    fn shipped() -> RuleSet {
        // Not as root's strict check: the checkout's owner is whoever built it.
        let (files, problems) = load::read_dirs_with(&[PathBuf::from(SOURCE_RULES_DIR)], false);
        assert!(problems.is_empty(), "{problems:?}");
        load::compile_files(files).unwrap_or_else(|d| panic!("{d:?}"))
    }

    /// What the reference shows for each rule comes from its keys, so every shipped rule has
    /// them all, and every technique it names has its name in the table.
    #[test]
    fn shipped_rules_document_themselves() {
        let set = shipped();
        assert!(set.len() >= 40, "{}", set.len());
        for rule in set.rules() {
            let (name, doc) = (&rule.meta.name, &rule.meta.doc);
            assert!(!doc.tactics.is_empty(), "{name}: tactic");
            assert!(!doc.techniques.is_empty(), "{name}: techniques");
            for id in &doc.techniques {
                assert!(
                    attack::technique_name(id).is_some(),
                    "{name}: {id} has no name in rules/attack.rs"
                );
            }
            for (key, text) in [
                ("what", &doc.what),
                ("why", &doc.why),
                ("false_positives", &doc.false_positives),
            ] {
                assert!(!text.trim().is_empty(), "{name}: {key}");
            }
        }
    }

    #[test]
    fn the_reference_covers_every_rule_list_and_macro() {
        let set = shipped();
        let text = markdown(&set);
        assert!(text.starts_with(BEGIN) && text.ends_with(&format!("{END}\n")));
        assert!(!text.contains("### Rules without a tactic"));
        for rule in set.rules() {
            let name = &rule.meta.name;
            assert!(text.contains(&format!("<a id=\"{name}\"></a>")), "{name}");
            assert!(
                text.contains(&format!("**What.** {}", rule.meta.doc.what)),
                "{name}"
            );
        }
        for list in set.definitions().lists.keys() {
            assert!(text.contains(&format!("| `{list}` |")), "{list}");
        }
        for name in set.definitions().macros.keys() {
            assert!(text.contains(&format!("- `{name}`: `")), "{name}");
        }
    }

    #[test]
    fn undocumented_rules_and_odd_text_still_render() {
        let set = RuleSet::from_json(
            "t.json",
            r#"{"lists": {"l": ["a|b"], "ports": [7]}, "rules": [{"name": "x", "label": "A | B",
                "condition": "process.name in l && net.dst_port in ports", "risk_score": 0.9,
                "what": "bell\u0007"}]}"#,
        )
        .expect("valid");
        let text = markdown(&set);
        assert!(text.contains("### Rules without a tactic"), "{text}");
        assert!(text.contains("| A \\| B |"), "{text}");
        assert!(text.contains("| `l` | `a\\|b` |"), "{text}");
        assert!(text.contains("| `ports` | `7` |"), "{text}");
        assert!(text.contains("**What.** bell\\u{7}"), "{text}");
        assert!(!text.contains('\u{7}'));
    }
}
