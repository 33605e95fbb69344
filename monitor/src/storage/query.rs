//! Reading the history: filters, keyset paging and per-hour/day statistics.
//!
//! Queries pick the most recent matching events through an inner select that only touches
//! indexes (`ORDER BY ts DESC, id DESC LIMIT n`), then read those rows in full, oldest first.
//! Which index drives the inner select is steered with SQLite's unary `+` (which keeps a term
//! from using an index): with a pid, an exact path or prefix, an address, or a minimum risk, the
//! time and type terms are kept off the time index, so one of those (selective) indexes drives;
//! otherwise the time index does, and type and process (which it covers) are checked in it
//! without reading rows (schema.rs explains why they have no index of their own).
//!
//! The path and pid indexes are keyed by id generation first; their terms list every generation
//! from the oldest event's to the newest's ([`Generations`]) so that SQLite seeks in each.
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rusqlite::types::Value;
use rusqlite::{Connection, params_from_iter};

use crate::event::EventType;

use super::block::{Contexts, Next, Probe};
use super::row::severity_code;
use super::row::{HistoryEvent, SELECT_COLUMNS, event_from_row, from_ns, to_ns};
use super::schema::GENERATION_SHIFT;
use super::summary::{Kind, MINUTE_NS, minute_of, severity_class};

/// The id generations present (the leading key of `events_path_gen` and `events_pid_gen`), read in the same snapshot
/// as the query that uses them.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Generations {
    /// The oldest and newest event's generation; `None`: no events.
    range: Option<(i64, i64)>,
}

impl Generations {
    fn of(conn: &Connection) -> rusqlite::Result<Generations> {
        let (first, last): (Option<i64>, Option<i64>) =
            // Two subqueries: `min(id), max(id)` in one select scans the table.
            conn.query_row(
                "SELECT (SELECT min(id) FROM events), (SELECT max(id) FROM events)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
        let range = first
            .zip(last)
            .map(|(first, last)| (first >> GENERATION_SHIFT, last >> GENERATION_SHIFT));
        Ok(Generations { range })
    }

    /// `(e.id >> 14) IN (…every generation…)`. A literal list rather than a subquery, so the
    /// planner knows how many seeks the index takes (with a subquery it guesses, and on a small
    /// table prefers a scan).
    fn term(&self) -> String {
        let list = match self.range {
            Some((first, last)) => (first..=last)
                .map(|g| g.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            None => String::new(),
        };
        format!("(e.id >> {GENERATION_SHIFT}) IN ({list})")
    }
}

/// Runs `read` with the generations `filter` needs. When a term lists them (pid, exact path or
/// prefix), in one read transaction (unless one is open already), so that the list and the
/// query see the same events.
fn with_generations<T>(
    conn: &Connection,
    filter: &Filter,
    read: impl FnOnce(Generations) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    let needed = filter.pid.is_some()
        || filter
            .path
            .as_ref()
            .is_some_and(|p| !matches!(p, TextMatch::Wildcard(_)));
    if !needed {
        return read(Generations::default());
    }
    if !conn.is_autocommit() {
        return read(Generations::of(conn)?);
    }
    let tx = conn.unchecked_transaction()?;
    let result = read(Generations::of(&tx)?)?;
    tx.commit()?;
    Ok(result)
}

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

    fn text_term(&mut self, column: &str, m: &TextMatch) {
        let term = self.column_match(column, m);
        self.terms.push(term);
    }

    /// `file_path` (through the generation-keyed path index, unless a wildcard makes the index
    /// useless) or `new_path` matches.
    fn path_term(&mut self, m: &TextMatch, generations: &Generations) {
        let file = self.column_match("e.file_path", m);
        let file = match m {
            TextMatch::Wildcard(_) => file,
            TextMatch::Exact(_) | TextMatch::Prefix(_) => {
                format!("({} AND {file})", generations.term())
            }
        };
        let new = self.column_match("e.new_path", m);
        self.terms.push(format!("({file} OR {new})"));
    }

    /// `column` matches `m`, with its parameters pushed.
    fn column_match(&mut self, column: &str, m: &TextMatch) -> String {
        match m {
            TextMatch::Exact(t) => {
                self.params.push(Value::Text(t.clone()));
                format!("{column} = ?")
            }
            TextMatch::Prefix(p) => {
                self.params.push(Value::Text(p.clone()));
                match prefix_end(p) {
                    Some(end) => {
                        self.params.push(Value::Text(end));
                        format!("({column} >= ? AND {column} < ?)")
                    }
                    None => format!("{column} >= ?"),
                }
            }
            TextMatch::Wildcard(w) => {
                self.params.push(Value::Text(glob_pattern(w)));
                format!("{column} GLOB ?")
            }
        }
    }

    fn sql(&self) -> String {
        if self.terms.is_empty() {
            "1".to_string()
        } else {
            self.terms.join(" AND ")
        }
    }
}

fn build_where(filter: &Filter, generations: &Generations) -> Where {
    let selective = filter.pid.is_some()
        || filter
            .path
            .as_ref()
            .is_some_and(|p| !matches!(p, TextMatch::Wildcard(_)))
        || filter.ip.is_some();
    // With a pid, an exact path or address, or a minimum risk, the time index must not drive:
    // scanning a day of events backwards for a rare match is what the planner would otherwise
    // often pick, to save a sort.
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
        w.text_term("e.process", process);
    }
    if let Some(pid) = filter.pid {
        w.push(
            format!("({} AND e.pid = ?)", generations.term()),
            [Value::Integer(i64::from(pid))],
        );
    }
    if let Some(path) = &filter.path {
        w.path_term(path, generations);
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

/// The matching events, oldest first; with a limit, the most recent `limit` of them: those of
/// `events` and those of the blocks, merged.
pub(crate) fn select(conn: &Connection, filter: &Filter) -> rusqlite::Result<Vec<HistoryEvent>> {
    in_one_read(conn, || {
        let rows = with_generations(conn, filter, |generations| {
            select_in(conn, filter, &generations)
        })?;
        let probe = Probe::new(filter);
        if probe.excludes_blocks() {
            return Ok(rows);
        }
        let from_blocks = select_from_blocks(conn, &probe, filter.limit)?;
        Ok(newest_of(rows, from_blocks, filter.limit))
    })
}

/// The `limit` newest of two lists each ordered oldest first, oldest first.
fn newest_of(
    mut a: Vec<HistoryEvent>,
    b: Vec<HistoryEvent>,
    limit: Option<usize>,
) -> Vec<HistoryEvent> {
    if b.is_empty() {
        return a;
    }
    a.extend(b);
    a.sort_by_key(|e| (to_ns(e.event.timestamp), e.id));
    if let Some(limit) = limit {
        let excess = a.len().saturating_sub(limit);
        a.drain(..excess);
    }
    a
}

/// The matching events of the blocks: with a limit, the `limit` newest (by time, then id),
/// reading blocks newest first until no older block can hold a newer one; oldest first.
fn select_from_blocks(
    conn: &Connection,
    probe: &Probe<'_>,
    limit: Option<usize>,
) -> rusqlite::Result<Vec<HistoryEvent>> {
    let limit = limit.unwrap_or(usize::MAX);
    if limit == 0 {
        return Ok(Vec::new());
    }
    let mut contexts = Contexts::default();
    // The newest found so far, keyed by (time, id); the first entry is the oldest kept.
    let mut kept: BTreeMap<(i64, i64), HistoryEvent> = BTreeMap::new();
    let full = |kept: &BTreeMap<(i64, i64), HistoryEvent>| kept.len() >= limit;
    probe.scan(conn, |block, data| {
        let Some(data) = data else {
            // Every event of this block, and of every later one, is older than all kept.
            let older = kept
                .first_key_value()
                .is_some_and(|(&(ts, _), _)| block.last_ts < ts);
            return Ok(if full(&kept) && older {
                Next::Stop
            } else {
                Next::Read
            });
        };
        let mut matching: Vec<_> = probe.matching(data).collect();
        // Newest first: once the kept set is full, older rows are turned away at once.
        matching.sort_by_key(|(id, row)| std::cmp::Reverse((row.first_ns, *id)));
        for (id, row) in matching {
            let at = (row.first_ns, id);
            if full(&kept) {
                match kept.first_key_value() {
                    Some((&oldest, _)) if at > oldest => {
                        kept.pop_first();
                    }
                    _ => break,
                }
            }
            kept.insert(at, contexts.event(conn, id, &row)?);
        }
        Ok(Next::Read)
    })?;
    Ok(kept.into_values().collect())
}

fn select_in(
    conn: &Connection,
    filter: &Filter,
    generations: &Generations,
) -> rusqlite::Result<Vec<HistoryEvent>> {
    let mut w = build_where(filter, generations);
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
    in_one_read(conn, || {
        let rows = with_generations(conn, filter, |generations| {
            count_in(conn, &build_where(filter, &generations))
        })?;
        Ok(rows + count_in_blocks(conn, filter)?)
    })
}

/// Events (not rows) of the blocks matching `filter`: a block entirely in a time-only filter's
/// range is counted without reading its rows.
fn count_in_blocks(conn: &Connection, filter: &Filter) -> rusqlite::Result<u64> {
    let probe = Probe::new(filter);
    let mut n = 0u64;
    probe.scan(conn, |block, data| {
        match data {
            None if probe.takes_whole(block) => {
                n += u64::try_from(block.events).unwrap_or(0);
                return Ok(Next::Skip);
            }
            None => {}
            Some(data) => n += probe.matching(data).map(|(_, row)| row.count).sum::<u64>(),
        }
        Ok(Next::Read)
    })?;
    Ok(n)
}

/// Adds the events of the blocks matching `filter` to `add(bucket, type, label, severity
/// class, count)`, with buckets of `width` ns starting `offset` ns before the epoch (as the
/// SQL's `(ts + offset) / width`).
fn tally_blocks(
    conn: &Connection,
    filter: &Filter,
    width: i64,
    offset: i64,
    mut add: impl FnMut(i64, &str, &str, &str, u64),
) -> rusqlite::Result<()> {
    let probe = Probe::new(filter);
    probe.scan(conn, |_, data| {
        for (_, row) in data.into_iter().flat_map(|data| probe.matching(data)) {
            let bucket = row.first_ns.saturating_add(offset) / width.max(1);
            let class = severity_class(severity_code(row.severity), row.risk_score);
            add(bucket, row.event_type.as_str(), row.label, class, row.count);
        }
        Ok(Next::Read)
    })
}

/// [`tally_blocks`] into statistics counts (blocks hold no rule matches).
fn stats_of_blocks(
    conn: &Connection,
    filter: &Filter,
    width: i64,
    offset: i64,
    counts: &mut StatsCounts,
) -> rusqlite::Result<()> {
    tally_blocks(
        conn,
        filter,
        width,
        offset,
        |bucket, type_name, label, _, n| {
            let n = i64::try_from(n).unwrap_or(i64::MAX);
            counts.add(Dimension::Type, bucket, type_name.to_string(), n);
            counts.add(Dimension::Label, bucket, label.to_string(), n);
        },
    )
}

fn count_in(conn: &Connection, w: &Where) -> rusqlite::Result<u64> {
    // Events, not rows: a coalesced row counts all of its events.
    let sql = format!(
        "SELECT coalesce(sum(e.count), 0) FROM events e WHERE {}",
        w.sql()
    );
    let n: i64 = conn.query_row(&sql, params_from_iter(&w.params), |r| r.get(0))?;
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

/// `count` events of `key` (a type, label or rule name) in the bucket starting at `start`. A
/// coalesced row counts all of its events (at its first event's time).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatsRow {
    pub start: DateTime<Utc>,
    pub by: Dimension,
    pub key: String,
    pub count: u64,
}

/// Events (not rows) per bucket and type, label and rule; buckets are aligned to local time
/// `offset_secs` east of UTC. Ordered by dimension, bucket, then key.
///
/// When the filter is a time range only, the whole minutes of the range are counted from the
/// summary (summary.rs) and only the rows of its ragged edges are read; the counts are the same
/// as [`stats_from_rows`]'s.
pub(crate) fn stats(
    conn: &Connection,
    filter: &Filter,
    bucket: Bucket,
    offset_secs: i32,
) -> rusqlite::Result<Vec<StatsRow>> {
    let Some(split) = Split::of(filter, bucket.seconds(), offset_secs) else {
        return stats_from_rows(conn, filter, bucket, offset_secs);
    };
    let width = bucket.seconds() * 1_000_000_000;
    let offset = i64::from(offset_secs) * 1_000_000_000;
    in_one_read(conn, || {
        let mut counts = StatsCounts::new();
        if let Some((first, end)) = split.minutes {
            let sql = format!(
                "SELECT kind, (minute * {MINUTE_NS} + ?1) / ?2 AS b, key, sum(count) \
                 FROM summary WHERE minute >= ?3 AND minute < ?4 AND kind <= {} \
                 GROUP BY kind, b, key",
                Kind::Rule.code()
            );
            let mut stmt = conn.prepare(&sql)?;
            let mut rows = stmt.query(rusqlite::params![offset, width, first, end])?;
            while let Some(row) = rows.next()? {
                let by = match row.get::<_, i64>(0)? {
                    0 => Dimension::Type,
                    1 => Dimension::Label,
                    _ => Dimension::Rule,
                };
                counts.add(by, row.get(1)?, row.get(2)?, row.get(3)?);
            }
        }
        for edge in &split.edges {
            with_generations(conn, edge, |generations| {
                for by in Dimension::ALL {
                    count_rows_by(
                        conn,
                        build_where(edge, &generations),
                        by,
                        width,
                        offset,
                        &mut counts,
                    )?;
                }
                Ok(())
            })?;
            stats_of_blocks(conn, edge, width, offset, &mut counts)?;
        }
        Ok(counts.rows(width, offset))
    })
}

/// [`stats`] counted from the rows alone (three reads of every row of the range): for filters
/// the summary cannot answer, and for tests to compare against.
pub(crate) fn stats_from_rows(
    conn: &Connection,
    filter: &Filter,
    bucket: Bucket,
    offset_secs: i32,
) -> rusqlite::Result<Vec<StatsRow>> {
    let width = bucket.seconds() * 1_000_000_000;
    let offset = i64::from(offset_secs) * 1_000_000_000;
    in_one_read(conn, || {
        let mut counts = with_generations(conn, filter, |generations| {
            let mut counts = StatsCounts::new();
            for by in Dimension::ALL {
                let w = build_where(filter, &generations);
                count_rows_by(conn, w, by, width, offset, &mut counts)?;
            }
            Ok(counts)
        })?;
        stats_of_blocks(conn, filter, width, offset, &mut counts)?;
        Ok(counts.rows(width, offset))
    })
}

/// Runs `read` in one read transaction (unless one is open already), so that everything it
/// reads is the same snapshot: the writer adds rows and their summary counts in one
/// transaction, so the two agree within it.
fn in_one_read<T>(
    conn: &Connection,
    read: impl FnOnce() -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    if !conn.is_autocommit() {
        return read();
    }
    let tx = conn.unchecked_transaction()?;
    let result = read()?;
    tx.commit()?;
    Ok(result)
}

/// Which part of a range the summary answers.
#[derive(Debug, PartialEq)]
struct Split {
    /// Whole minutes `[first, end)` (minutes since the epoch) counted from the summary.
    minutes: Option<(i64, i64)>,
    /// The rest of the range, read from the rows: before and after those minutes.
    edges: Vec<Filter>,
}

impl Split {
    /// `None` unless `filter` selects by time only (limit aside) and buckets of `width_secs`
    /// aligned to `offset_secs` are made of whole minutes; then the minutes of its range that
    /// lie entirely within it, and the edges around them.
    fn of(filter: &Filter, width_secs: i64, offset_secs: i32) -> Option<Split> {
        let Filter {
            since,
            until,
            types,
            process,
            pid,
            path,
            ip,
            min_risk,
            label,
            rule,
            limit: _,
            before,
        } = filter;
        let time_only = types.is_empty()
            && process.is_none()
            && pid.is_none()
            && path.is_none()
            && ip.is_none()
            && min_risk.is_none()
            && label.is_none()
            && rule.is_none()
            && before.is_none();
        let minute_secs = MINUTE_NS / 1_000_000_000;
        if !time_only
            || width_secs <= 0
            || width_secs % minute_secs != 0
            || i64::from(offset_secs) % minute_secs != 0
        {
            return None;
        }
        let offset = i64::from(offset_secs) * 1_000_000_000;
        // The first minute starting at or after `since`, and not before the epoch in local time
        // (where SQLite's division, which truncates, would put a minute in two buckets).
        let first_at_or_after = |ns: i64| minute_of(ns.saturating_sub(1)) + 1;
        let mut first = first_at_or_after(-offset);
        if let Some(since) = since {
            first = first.max(first_at_or_after(to_ns(*since)));
        }
        // The first minute not entirely before `until` (nor past the largest time a bucket can
        // be computed for).
        let mut end = (i64::MAX - offset.max(0)).div_euclid(MINUTE_NS);
        if let Some(until) = until {
            end = end.min(minute_of(to_ns(*until)));
        }
        if first >= end {
            return Some(Split {
                minutes: None,
                edges: vec![filter.clone()],
            });
        }
        let at = |minute: i64| Some(from_ns(minute * MINUTE_NS));
        let mut edges = Vec::new();
        if since.is_none_or(|since| to_ns(since) < first * MINUTE_NS) {
            edges.push(Filter {
                until: at(first),
                ..filter.clone()
            });
        }
        if until.is_none_or(|until| to_ns(until) > end * MINUTE_NS) {
            edges.push(Filter {
                since: at(end),
                ..filter.clone()
            });
        }
        Some(Split {
            minutes: Some((first, end)),
            edges,
        })
    }
}

/// Statistics being gathered: events per dimension, bucket (index) and key.
struct StatsCounts(BTreeMap<(Dimension, i64, String), u64>);

impl StatsCounts {
    fn new() -> StatsCounts {
        StatsCounts(BTreeMap::new())
    }

    fn add(&mut self, by: Dimension, bucket: i64, key: String, count: i64) {
        *self.0.entry((by, bucket, key)).or_default() += u64::try_from(count).unwrap_or(0);
    }

    /// The rows, ordered by dimension, bucket, then key (as SQLite orders text: by bytes).
    fn rows(self, width: i64, offset: i64) -> Vec<StatsRow> {
        self.0
            .into_iter()
            .map(|((by, b, key), count)| StatsRow {
                start: from_ns(b.saturating_mul(width).saturating_sub(offset)),
                by,
                key,
                count,
            })
            .collect()
    }
}

/// Counts the rows matching `w` by `by` into `counts`.
fn count_rows_by(
    conn: &Connection,
    w: Where,
    by: Dimension,
    width: i64,
    offset: i64,
    counts: &mut StatsCounts,
) -> rusqlite::Result<()> {
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
        "SELECT (e.ts + ?) / ? AS b, {key} AS k, sum(e.count) FROM {from} WHERE {}{extra} \
         GROUP BY b, k",
        w.sql()
    );
    let mut params = vec![Value::Integer(offset), Value::Integer(width)];
    params.extend(w.params);
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query(params_from_iter(params))?;
    while let Some(row) = rows.next()? {
        counts.add(by, row.get(0)?, row.get(1)?, row.get(2)?);
    }
    Ok(())
}

/// The events of one bucket of a [timeline](super::History::timeline), by severity (benign,
/// suspicious, malicious).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimelineRow {
    pub start: DateTime<Utc>,
    pub by_severity: [u64; 3],
}

/// Timeline counts being gathered: per bucket (index), by severity.
type TimelineCounts = BTreeMap<i64, [u64; 3]>;

/// Events per bucket of `width_secs` (aligned to local time `offset_secs` east of UTC) by
/// severity, oldest first; buckets without events are left out. `filter`'s limit and cursor
/// are ignored.
///
/// As [`stats`]: a time range alone is counted from the summary for its whole minutes (when
/// the buckets are whole minutes), and from the rows for the rest.
pub(crate) fn timeline(
    conn: &Connection,
    filter: &Filter,
    width_secs: i64,
    offset_secs: i32,
) -> rusqlite::Result<Vec<TimelineRow>> {
    let filter = Filter {
        limit: None,
        before: None,
        ..filter.clone()
    };
    let width = width_secs.max(1).saturating_mul(1_000_000_000);
    let offset = i64::from(offset_secs) * 1_000_000_000;
    let buckets = in_one_read(conn, || {
        let mut buckets = TimelineCounts::new();
        let Some(split) = Split::of(&filter, width_secs.max(1), offset_secs) else {
            timeline_from_rows(conn, &filter, width, offset, &mut buckets)?;
            return Ok(buckets);
        };
        if let Some((first, end)) = split.minutes {
            let sql = format!(
                "SELECT (minute * {MINUTE_NS} + ?1) / ?2 AS b, key, sum(count) FROM summary \
                 WHERE minute >= ?3 AND minute < ?4 AND kind = {} GROUP BY b, key",
                Kind::Severity.code()
            );
            let mut stmt = conn.prepare(&sql)?;
            let mut rows = stmt.query(rusqlite::params![offset, width, first, end])?;
            while let Some(row) = rows.next()? {
                let class = match row.get_ref(1)?.as_str().unwrap_or("0") {
                    "2" => 2,
                    "1" => 1,
                    _ => 0,
                };
                let n: i64 = row.get(2)?;
                buckets.entry(row.get(0)?).or_default()[class] += u64::try_from(n).unwrap_or(0);
            }
        }
        for edge in &split.edges {
            timeline_from_rows(conn, edge, width, offset, &mut buckets)?;
        }
        Ok(buckets)
    })?;
    Ok(buckets
        .into_iter()
        .map(|(b, by_severity)| TimelineRow {
            start: from_ns(b.saturating_mul(width).saturating_sub(offset)),
            by_severity,
        })
        .collect())
}

/// Counts the timeline of `filter` (limit and cursor cleared) from the rows into `buckets`.
///
/// Two GROUP BYs rather than one over `severity` (which no index covers, so that would read
/// every row of the period): the count of every event, from the time index where the filter
/// allows, and the count of the suspicious and malicious ones, from the partial risk index (a
/// severity above benign implies a risk above 0, see `rules::engine::severity`). Benign is the
/// difference.
fn timeline_from_rows(
    conn: &Connection,
    filter: &Filter,
    width: i64,
    offset: i64,
    buckets: &mut TimelineCounts,
) -> rusqlite::Result<()> {
    let generations = Generations::of(conn)?;
    let query = |w: Where, select: &str, group: &str| -> rusqlite::Result<Vec<(i64, i64, i64)>> {
        let sql = format!(
            "SELECT (e.ts + ?) / ? AS b, {select}, sum(e.count) FROM events e WHERE {} \
             GROUP BY b{group}",
            w.sql()
        );
        let mut params = vec![Value::Integer(offset), Value::Integer(width)];
        params.extend(w.params);
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map(params_from_iter(params), |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
        rows.collect()
    };
    for (b, _, n) in query(build_where(filter, &generations), "0", "")? {
        buckets.entry(b).or_default()[0] += u64::try_from(n).unwrap_or(0);
    }
    let mut risky = build_where(filter, &generations);
    risky.terms.push("e.risk > 0".to_string());
    risky.terms.push("e.severity > 0".to_string());
    for (b, severity, n) in query(risky, "e.severity", ", e.severity")? {
        let n = u64::try_from(n).unwrap_or(0);
        let counts = buckets.entry(b).or_default();
        counts[if severity >= 2 { 2 } else { 1 }] += n;
        counts[0] = counts[0].saturating_sub(n);
    }
    tally_blocks(conn, filter, width, offset, |b, _, _, class, n| {
        let class = match class {
            "2" => 2,
            "1" => 1,
            _ => 0,
        };
        buckets.entry(b).or_default()[class] += n;
    })
}

#[cfg(test)]
pub(crate) mod tests_support {
    use super::{
        Filter, Generations, Split, TimelineCounts, TimelineRow, Value, build_where, from_ns,
        timeline_from_rows as from_rows,
    };
    use rusqlite::Connection;

    /// The timeline counted from the rows alone (what [`super::timeline`] did before the
    /// summary).
    pub(crate) fn timeline_from_rows(
        conn: &Connection,
        filter: &Filter,
        width_secs: i64,
        offset_secs: i32,
    ) -> Vec<TimelineRow> {
        let width = width_secs * 1_000_000_000;
        let offset = i64::from(offset_secs) * 1_000_000_000;
        let filter = Filter {
            limit: None,
            before: None,
            ..filter.clone()
        };
        let mut buckets = TimelineCounts::new();
        from_rows(conn, &filter, width, offset, &mut buckets).expect("timeline from rows");
        buckets
            .into_iter()
            .map(|(b, by_severity)| TimelineRow {
                start: from_ns(b * width - offset),
                by_severity,
            })
            .collect()
    }

    /// The minutes the summary answers for `filter`, and the edges read from the rows.
    #[allow(clippy::type_complexity)]
    pub(crate) fn split(
        filter: &Filter,
        width_secs: i64,
        offset_secs: i32,
    ) -> Option<(Option<(i64, i64)>, Vec<Filter>)> {
        Split::of(filter, width_secs, offset_secs).map(|s| (s.minutes, s.edges))
    }

    /// The WHERE clause, its parameters and the ORDER BY a filter becomes on `conn`'s events.
    pub(crate) fn where_sql(
        conn: &Connection,
        filter: &Filter,
    ) -> (String, Vec<Value>, &'static str) {
        let generations = Generations::of(conn).expect("generations");
        let w = build_where(filter, &generations);
        (w.sql(), w.params, w.order)
    }
}
