//! Reading the history: filters, keyset paging and per-hour/day statistics.
//!
//! Queries pick the most recent matching events through an inner select that only touches
//! indexes (`ORDER BY ts DESC, id DESC LIMIT n`), then read those rows in full, oldest first.
//! Which index drives the inner select is steered with SQLite's unary `+` (which keeps a term
//! from using an index): with an exact process, pid, path or address, or a minimum risk, the
//! time and type terms are kept off their indexes, so one of those (selective) indexes drives;
//! otherwise the time index does.
use chrono::{DateTime, Utc};
use rusqlite::types::Value;
use rusqlite::{Connection, params_from_iter};

use crate::event::EventType;

use super::row::{HistoryEvent, SELECT_COLUMNS, event_from_row, from_ns, to_ns};

/// How a text filter matches: `*` in the pattern is a wildcard, otherwise the match is exact.
/// A path ending in `/` matches everything under that directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TextMatch {
    Exact(String),
    /// Everything starting with this (a directory, with its trailing `/`).
    Prefix(String),
    /// A pattern with `*` wildcards.
    Wildcard(String),
}

impl TextMatch {
    /// `*` anywhere → wildcard; otherwise exact.
    pub fn parse(text: &str) -> TextMatch {
        if text.contains('*') {
            TextMatch::Wildcard(text.to_string())
        } else {
            TextMatch::Exact(text.to_string())
        }
    }

    /// As [`TextMatch::parse`], and a trailing `/` means "under this directory".
    pub fn parse_path(text: &str) -> TextMatch {
        if text.contains('*') {
            TextMatch::Wildcard(text.to_string())
        } else if text.ends_with('/') && text.len() > 1 {
            TextMatch::Prefix(text.to_string())
        } else {
            TextMatch::Exact(text.to_string())
        }
    }

    fn is_exact(&self) -> bool {
        matches!(self, TextMatch::Exact(_))
    }
}

/// Keyset paging: only events strictly older than this one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub ts_ns: i64,
    pub id: i64,
}

impl HistoryEvent {
    /// The cursor that pages to events older than this one.
    pub fn cursor(&self) -> Cursor {
        Cursor {
            ts_ns: to_ns(self.event.timestamp),
            id: self.id,
        }
    }
}

/// Which events to read. Every condition given must hold.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filter {
    /// At or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Before this time.
    pub until: Option<DateTime<Utc>>,
    /// One of these types (empty: any).
    pub types: Vec<EventType>,
    /// The process name (comm).
    pub process: Option<TextMatch>,
    pub pid: Option<u32>,
    /// `file_path` or `new_path`.
    pub path: Option<TextMatch>,
    /// The destination or source address.
    pub ip: Option<String>,
    /// `risk_score` at least this.
    pub min_risk: Option<f64>,
    /// The analysis label, ignoring ASCII case.
    pub label: Option<TextMatch>,
    /// Matched by this rule.
    pub rule: Option<String>,
    /// At most this many (the most recent); `None`: all.
    pub limit: Option<usize>,
    pub before: Option<Cursor>,
}

/// Escapes GLOB's special characters except `*`.
fn glob_pattern(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '?' => out.push_str("[?]"),
            '[' => out.push_str("[[]"),
            c => out.push(c),
        }
    }
    out
}

/// A LIKE pattern (with `ESCAPE '\'`) where `*` is the wildcard.
fn like_pattern(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '*' => out.push('%'),
            '%' | '_' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// The first string after every string starting with `prefix` (for an index range).
fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        if let Some(next) = char::from_u32(last as u32 + 1) {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// WHERE terms and their parameters, and the ORDER BY that goes with them.
#[derive(Default)]
struct Where {
    terms: Vec<String>,
    params: Vec<Value>,
    order: &'static str,
}

impl Where {
    fn push(&mut self, term: String, params: impl IntoIterator<Item = Value>) {
        self.terms.push(term);
        self.params.extend(params);
    }

    fn text_term(&mut self, columns: &[&str], m: &TextMatch) {
        let mut alternatives = Vec::new();
        for column in columns {
            match m {
                TextMatch::Exact(t) => {
                    alternatives.push(format!("{column} = ?"));
                    self.params.push(Value::Text(t.clone()));
                }
                TextMatch::Prefix(p) => match prefix_end(p) {
                    Some(end) => {
                        alternatives.push(format!("({column} >= ? AND {column} < ?)"));
                        self.params.push(Value::Text(p.clone()));
                        self.params.push(Value::Text(end));
                    }
                    None => {
                        alternatives.push(format!("{column} >= ?"));
                        self.params.push(Value::Text(p.clone()));
                    }
                },
                TextMatch::Wildcard(w) => {
                    alternatives.push(format!("{column} GLOB ?"));
                    self.params.push(Value::Text(glob_pattern(w)));
                }
            }
        }
        self.terms.push(format!("({})", alternatives.join(" OR ")));
    }

    fn sql(&self) -> String {
        if self.terms.is_empty() {
            "1".to_string()
        } else {
            self.terms.join(" AND ")
        }
    }
}

fn build_where(filter: &Filter) -> Where {
    let selective = filter.process.as_ref().is_some_and(TextMatch::is_exact)
        || filter.pid.is_some()
        || filter
            .path
            .as_ref()
            .is_some_and(|p| !matches!(p, TextMatch::Wildcard(_)))
        || filter.ip.is_some();
    // With an exact process, pid, path or address, or a minimum risk, the time and type
    // indexes must not drive: scanning a day of events backwards for a rare match is what
    // the planner would otherwise often pick, to save a sort.
    let by_risk = filter.min_risk.is_some_and(|r| r > 0.0);
    let plus = if by_risk || selective { "+" } else { "" };
    let mut w = Where {
        order: if plus.is_empty() {
            "e.ts DESC, e.id DESC"
        } else {
            // Not satisfiable from the time index either.
            "+e.ts DESC, e.id DESC"
        },
        ..Where::default()
    };
    if let Some(since) = filter.since {
        w.push(format!("{plus}e.ts >= ?"), [Value::Integer(to_ns(since))]);
    }
    if let Some(until) = filter.until {
        w.push(format!("{plus}e.ts < ?"), [Value::Integer(to_ns(until))]);
    }
    if let Some(cursor) = filter.before {
        w.push(
            format!("({plus}e.ts, e.id) < (?, ?)"),
            [Value::Integer(cursor.ts_ns), Value::Integer(cursor.id)],
        );
    }
    if !filter.types.is_empty() {
        let marks = vec!["?"; filter.types.len()].join(", ");
        w.push(
            format!("{plus}e.event_type IN ({marks})"),
            filter
                .types
                .iter()
                .map(|t| Value::Text(t.as_str().to_string())),
        );
    }
    if let Some(process) = &filter.process {
        w.text_term(&["e.process"], process);
    }
    if let Some(pid) = filter.pid {
        w.push("e.pid = ?".to_string(), [Value::Integer(i64::from(pid))]);
    }
    if let Some(path) = &filter.path {
        w.text_term(&["e.file_path", "e.new_path"], path);
    }
    if let Some(ip) = &filter.ip {
        w.push(
            "(e.dst_ip = ? OR e.src_ip = ?)".to_string(),
            [Value::Text(ip.clone()), Value::Text(ip.clone())],
        );
    }
    if let Some(risk) = filter.min_risk {
        w.push("e.risk >= ?".to_string(), [Value::Real(risk)]);
        if risk > 0.0 && !selective {
            // The condition of the partial index events_risk_ts, spelled as it is there, so
            // the planner may use it (it is left out when a more selective index should drive).
            w.terms.push("e.risk > 0".to_string());
        }
    }
    if let Some(label) = &filter.label {
        match label {
            TextMatch::Exact(t) | TextMatch::Prefix(t) => {
                w.push(
                    "e.label = ? COLLATE NOCASE".to_string(),
                    [Value::Text(t.clone())],
                );
                if !t.eq_ignore_ascii_case("benign") {
                    // Implied, and the condition of the partial index events_label_ts.
                    w.terms.push("e.label <> 'Benign'".to_string());
                }
            }
            TextMatch::Wildcard(t) => w.push(
                "e.label LIKE ? ESCAPE '\\'".to_string(),
                [Value::Text(like_pattern(t))],
            ),
        }
    }
    if let Some(rule) = &filter.rule {
        w.push(
            "(e.rules IS NOT NULL AND EXISTS (SELECT 1 FROM json_each(e.rules) j \
             WHERE j.value = ?))"
                .to_string(),
            [Value::Text(rule.clone())],
        );
    }
    w
}

/// The matching events, oldest first; with a limit, the most recent `limit` of them.
pub(crate) fn select(conn: &Connection, filter: &Filter) -> rusqlite::Result<Vec<HistoryEvent>> {
    let mut w = build_where(filter);
    let limit = match filter.limit {
        Some(n) => i64::try_from(n).unwrap_or(i64::MAX),
        None => -1,
    };
    w.params.push(Value::Integer(limit));
    let sql = format!(
        "SELECT {SELECT_COLUMNS} FROM (SELECT e.id AS id FROM events e WHERE {} \
         ORDER BY {} LIMIT ?) AS picked \
         JOIN events e ON e.id = picked.id LEFT JOIN contexts c ON c.id = e.ctx \
         ORDER BY e.ts, e.id",
        w.sql(),
        w.order
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params_from_iter(w.params), event_from_row)?;
    rows.collect()
}

pub(crate) fn count(conn: &Connection, filter: &Filter) -> rusqlite::Result<u64> {
    let w = build_where(filter);
    let sql = format!("SELECT count(*) FROM events e WHERE {}", w.sql());
    let n: i64 = conn.query_row(&sql, params_from_iter(w.params), |r| r.get(0))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// The width of a statistics bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bucket {
    Hour,
    Day,
}

impl Bucket {
    pub fn seconds(self) -> i64 {
        match self {
            Bucket::Hour => 3600,
            Bucket::Day => 86_400,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Bucket::Hour => "hour",
            Bucket::Day => "day",
        }
    }
}

/// What a statistics row counts by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dimension {
    Type,
    Label,
    Rule,
}

impl Dimension {
    pub const ALL: [Dimension; 3] = [Dimension::Type, Dimension::Label, Dimension::Rule];

    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::Type => "type",
            Dimension::Label => "label",
            Dimension::Rule => "rule",
        }
    }
}

/// `count` events of `key` (a type, label or rule name) in the bucket starting at `start`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatsRow {
    pub start: DateTime<Utc>,
    pub by: Dimension,
    pub key: String,
    pub count: u64,
}

/// Counts per bucket and type, label and rule; buckets are aligned to local time
/// `offset_secs` east of UTC. Ordered by dimension, bucket, then key.
pub(crate) fn stats(
    conn: &Connection,
    filter: &Filter,
    bucket: Bucket,
    offset_secs: i32,
) -> rusqlite::Result<Vec<StatsRow>> {
    let width = bucket.seconds() * 1_000_000_000;
    let offset = i64::from(offset_secs) * 1_000_000_000;
    let mut out = Vec::new();
    for by in Dimension::ALL {
        let w = build_where(filter);
        let (key, from) = match by {
            Dimension::Type => ("e.event_type", "events e"),
            Dimension::Label => ("e.label", "events e"),
            Dimension::Rule => ("j.value", "events e, json_each(e.rules) j"),
        };
        let extra = if by == Dimension::Rule {
            " AND e.rules IS NOT NULL"
        } else {
            ""
        };
        let sql = format!(
            "SELECT (e.ts + ?) / ? AS b, {key} AS k, count(*) FROM {from} WHERE {}{extra} \
             GROUP BY b, k ORDER BY b, k",
            w.sql()
        );
        let mut params = vec![Value::Integer(offset), Value::Integer(width)];
        params.extend(w.params);
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map(params_from_iter(params), |r| {
            let b: i64 = r.get(0)?;
            let count: i64 = r.get(2)?;
            Ok(StatsRow {
                start: from_ns(b.saturating_mul(width).saturating_sub(offset)),
                by,
                key: r.get(1)?,
                count: u64::try_from(count).unwrap_or(0),
            })
        })?;
        for row in rows {
            out.push(row?);
        }
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests_support {
    use super::{Filter, Value, build_where};

    /// The WHERE clause, its parameters and the ORDER BY a filter becomes.
    pub(crate) fn where_sql(filter: &Filter) -> (String, Vec<Value>, &'static str) {
        let w = build_where(filter);
        (w.sql(), w.params, w.order)
    }
}
