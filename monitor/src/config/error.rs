//! Configuration errors and warnings, and how a deserialiser's error becomes one that names the
//! file, line, column and key.

use std::fmt;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

use thiserror::Error;
use toml::de::{DeTable, DeValue};

/// A place in a configuration file. Displays as `path:line:column` (both 1-based; the column
/// counts characters, not bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Position {
    pub path: PathBuf,
    pub line: usize,
    pub column: usize,
}

impl Position {
    /// The position of byte `offset` of `text` (clamped to the text).
    pub(super) fn of_offset(text: &str, origin: &Path, offset: usize) -> Position {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Position {
            path: origin.to_path_buf(),
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.path.display(), self.line, self.column)
    }
}

/// Why a configuration could not be loaded. Every variant but [`ConfigError::Read`] and
/// [`ConfigError::Untrusted`] carries the [`Position`] of the offending key or value.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read (missing, permissions, not UTF-8, ...).
    #[error("{}: cannot read config file: {error}", path.display())]
    Read { path: PathBuf, error: io::Error },
    /// Not valid TOML (including duplicate keys).
    #[error("{at}: invalid TOML: {message}")]
    Syntax { at: Position, message: String },
    /// A top-level table that is not one of the known sections.
    #[error("{at}: unknown section `[{section}]`; expected one of {expected}")]
    UnknownSection {
        at: Position,
        section: String,
        expected: String,
    },
    /// A key its section does not have. `section` is empty for a top-level key.
    #[error("{at}: unknown key `{key}` {}; expected one of {expected}", key_place(.section))]
    UnknownKey {
        at: Position,
        key: String,
        section: String,
        expected: String,
    },
    /// A value of the wrong TOML type. `expected` is the key's type (its checked type's
    /// `expecting`); `found` is TOML's name for the type written.
    #[error("{at}: wrong type for `{key}`: expected {expected}, found {found}")]
    WrongType {
        at: Position,
        key: String,
        expected: String,
        found: &'static str,
    },
    /// A value of the right type that is not allowed (range, URL, log level, empty string).
    #[error("{at}: invalid value for `{key}`: {reason}")]
    InvalidValue {
        at: Position,
        key: String,
        reason: String,
    },
    /// Anything else the deserialiser rejected (not expected: every key has a checked type).
    #[error("{at}: {message}")]
    Invalid { at: Position, message: String },
    /// Running as root, the file (or a directory above it) is not root's or is writable by
    /// group or others: it may hold the webhook's secret and decides what is enforced.
    #[error(transparent)]
    Untrusted(#[from] crate::secure_fs::Untrusted),
}

fn key_place(section: &str) -> String {
    if section.is_empty() {
        "at the top level".to_string()
    } else {
        format!("in [{section}]")
    }
}

impl ConfigError {
    /// Where in the file the problem is (`None` for [`ConfigError::Read`] and
    /// [`ConfigError::Untrusted`]).
    pub fn position(&self) -> Option<&Position> {
        match self {
            ConfigError::Read { .. } | ConfigError::Untrusted(_) => None,
            ConfigError::Syntax { at, .. }
            | ConfigError::UnknownSection { at, .. }
            | ConfigError::UnknownKey { at, .. }
            | ConfigError::WrongType { at, .. }
            | ConfigError::InvalidValue { at, .. }
            | ConfigError::Invalid { at, .. } => Some(at),
        }
    }
}

/// Something a configuration file says that still works but should change (a deprecated key).
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("{at}: {message}")]
pub struct ConfigWarning {
    pub at: Position,
    pub message: String,
}

/// The text being parsed and its name, to turn byte offsets into [`Position`]s.
#[derive(Clone, Copy)]
pub(super) struct Source<'a> {
    pub text: &'a str,
    pub origin: &'a Path,
}

impl Source<'_> {
    pub(super) fn at(&self, span: Range<usize>) -> Position {
        Position::of_offset(self.text, self.origin, span.start)
    }

    /// A TOML syntax error (including a duplicate key, which gets the key's name).
    pub(super) fn syntax_error(&self, error: &toml::de::Error) -> ConfigError {
        let message = one_line(error.message());
        let key = error
            .span()
            .and_then(|span| self.text.get(span))
            .filter(|key| !key.is_empty() && key.len() <= 80 && !key.contains('\n'));
        let message = match key {
            Some(key) if message == "duplicate key" => format!("duplicate key `{key}`"),
            _ => message,
        };
        ConfigError::Syntax {
            at: self.at(error.span().unwrap_or(0..0)),
            message,
        }
    }

    /// A deserialisation error, told apart by where it points in `root` (the same parse tree
    /// that was deserialised): at a key, the key is unknown; at a value, the value is of the
    /// wrong type or not allowed.
    ///
    /// toml keeps only a message and a span of serde's error, so the kind of a value's problem
    /// is read from serde's standard wording, which `de::Error::invalid_type` produces and our
    /// checked types' visitors rely on: "invalid type: {found}, expected {expecting}". Every
    /// other message is one of our reasons (or toml's own, e.g. an integer beyond 128 bits).
    pub(super) fn deserialize_error(
        &self,
        root: &DeTable<'_>,
        error: &toml::de::Error,
    ) -> ConfigError {
        let span = error.span().unwrap_or(0..0);
        let at = self.at(span.clone());
        let message = one_line(error.message());
        match locate(root, &span, "") {
            Some(Located::Key { section, key }) => unknown_key(at, section, key, &message),
            Some(Located::Value { key, found }) => match expected_type(&message) {
                Some(expected) => ConfigError::WrongType {
                    at,
                    key,
                    expected: expected.to_string(),
                    found,
                },
                None => ConfigError::InvalidValue {
                    at,
                    key,
                    reason: message,
                },
            },
            None => ConfigError::Invalid { at, message },
        }
    }
}

/// An unknown key; serde's message ends with the keys the section has: "unknown field `x`,
/// expected one of `a`, `b`" (or "expected `a`").
fn unknown_key(at: Position, section: String, key: KeyName, message: &str) -> ConfigError {
    let fields: Vec<&str> = message
        .rsplit_once(", expected ")
        .map(|(_, list)| list.strip_prefix("one of ").unwrap_or(list))
        .map(|list| list.split(", ").map(|f| f.trim_matches('`')).collect())
        .unwrap_or_default();
    if section.is_empty() {
        let expected = fields
            .iter()
            .map(|f| format!("[{f}]"))
            .collect::<Vec<_>>()
            .join(", ");
        if key.is_table {
            ConfigError::UnknownSection {
                at,
                section: key.name,
                expected,
            }
        } else {
            ConfigError::UnknownKey {
                at,
                key: key.name,
                section,
                expected,
            }
        }
    } else {
        ConfigError::UnknownKey {
            at,
            key: key.name,
            section,
            expected: fields.join(", "),
        }
    }
}

/// `{expecting}` of serde's "invalid type: {found}, expected {expecting}". The last ", expected "
/// is ours: `found` may quote the user's string, our `expecting` texts never contain it.
fn expected_type(message: &str) -> Option<&str> {
    message
        .strip_prefix("invalid type: ")?
        .rsplit_once(", expected ")
        .map(|(_, expected)| expected)
}

/// A key as it appears in messages.
#[derive(Debug)]
struct KeyName {
    /// Escaped for display (control characters are shown as escapes).
    name: String,
    /// Its value is a table.
    is_table: bool,
}

#[derive(Debug)]
enum Located {
    /// The span is a key's: `section` is empty at the top level.
    Key { section: String, key: KeyName },
    /// The span is a value's: `key` is its name (`rules_dirs[1]` for an array's entry).
    Value { key: String, found: &'static str },
}

/// The key or value of `table` (or of a table or array in it) whose span is `span`.
fn locate(table: &DeTable<'_>, span: &Range<usize>, section: &str) -> Option<Located> {
    for (key, value) in table {
        let name: &str = key.get_ref();
        if key.span() == *span {
            return Some(Located::Key {
                section: section.to_string(),
                key: KeyName {
                    name: printable(name),
                    is_table: value.get_ref().is_table(),
                },
            });
        }
        if value.span() == *span {
            return Some(Located::Value {
                key: printable(name),
                found: value.get_ref().type_str(),
            });
        }
        // A nested table is named by its dotted path (`[export.nats]`).
        let path = if section.is_empty() {
            printable(name)
        } else {
            format!("{section}.{}", printable(name))
        };
        match value.get_ref() {
            DeValue::Table(inner) => {
                if let Some(found) = locate(inner, span, &path) {
                    return Some(found);
                }
            }
            DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    if item.span() == *span {
                        return Some(Located::Value {
                            key: format!("{}[{i}]", printable(name)),
                            found: item.get_ref().type_str(),
                        });
                    }
                    if let DeValue::Table(inner) = item.get_ref()
                        && let Some(found) = locate(inner, span, &path)
                    {
                        return Some(found);
                    }
                }
            }
            _ => {}
        }
    }
    None
}

/// The span of `[section] key`'s value, if the document has it.
pub(super) fn value_span(root: &DeTable<'_>, section: &str, key: &str) -> Option<Range<usize>> {
    let table = root.get(section)?.get_ref().as_table()?;
    Some(table.get(key)?.span())
}

/// Shown for user-supplied names in messages: escapes control characters.
fn printable(name: &str) -> String {
    name.escape_debug().to_string()
}

/// toml's messages may span lines; ours are one line each.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}
