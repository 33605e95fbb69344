//! A rule file's top level: one rule, an array of rules, or a pack object with `lists`,
//! `macros` and `rules` (and descriptive keys that are ignored).

use std::collections::HashMap;

use super::{Loader, RawRule};
use crate::rules::compile::{ListItem, MacroDef};
use crate::rules::eval::Number;
use crate::rules::fields;
use crate::rules::json::{Json, JsonString, JsonValue};
use crate::rules::parser;

/// Keys of a pack object besides `lists`, `macros` and `rules`: descriptive, ignored.
/// A macro as found in a file: its name, the file index, its body and the offset of its key.
pub(super) type MacroSource = (String, usize, JsonString, usize);

const PACK_INFO_KEYS: &[&str] = &[
    "title",
    "description",
    "tactic",
    "technique",
    "references",
    "comment",
];

impl Loader {
    pub(super) fn split_file(
        &mut self,
        file: usize,
        root: Json,
        lists: &mut HashMap<String, Vec<ListItem>>,
        macros: &mut Vec<MacroSource>,
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
            let mut written = Vec::with_capacity(items.len());
            for item in items {
                match item.value {
                    JsonValue::String(s) => {
                        written.push(s.text.clone());
                        entry.push(ListItem::Str(s.text));
                    }
                    JsonValue::Number(n) => match parse_number(&n) {
                        Some(number) => {
                            written.push(n);
                            entry.push(ListItem::Num(number));
                        }
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
            self.defines(file);
            self.definitions
                .lists
                .entry(name.text)
                .or_default()
                .extend(written);
        }
    }

    /// Parses each macro body (positions inside it map back to its file); a name defined twice,
    /// or already a list's, is a problem.
    pub(super) fn parse_macros(
        &mut self,
        macro_defs: Vec<MacroSource>,
        lists: &HashMap<String, Vec<ListItem>>,
    ) -> HashMap<String, MacroDef> {
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
                    self.defines(file);
                    self.definitions
                        .macros
                        .insert(name.clone(), body.text.clone());
                    macros.insert(name, MacroDef { source, ast });
                }
                Err(e) => self.diag_at(file, body.source_offset(e.span.start), e.message),
            }
        }
        macros
    }
}

fn parse_number(text: &str) -> Option<Number> {
    if let Ok(i) = text.parse::<i64>() {
        return Some(Number::Int(i));
    }
    text.parse::<f64>().ok().map(Number::Float)
}
