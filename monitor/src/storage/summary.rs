//! The per-minute summary: how many events each minute holds per type, label, rule and severity
//! class, so that `--stats` and the timeline read a few thousand counts instead of every row of
//! their range (schema version 5, schema.rs).
//!
//! It is exact, not an estimate: the writer adds a batch's counts in the same transaction as
//! its rows ([`Tally::add_row`], aggregated in memory first, so a batch costs one UPSERT per
//! distinct minute and key rather than one per row), retention subtracts the counts of the rows
//! it deletes in the same transaction as the delete ([`Tally::add_stored`] with a negative
//! sign), and the migration to version 5 fills it from the rows already stored ([`fill`]). A
//! reader in one read transaction therefore sees the rows and their summary agree.
//!
//! Like the queries it replaces, it counts events rather than rows (a coalesced row counts its
//! `count`, all at the minute of its first event) and a rule once per name in the row's `rules`
//! (as `json_each` does). Queries use it for the whole minutes of their range and read the rows
//! of the ragged edges (query.rs).
use std::borrow::Cow;

use rusqlite::{Connection, params};
use rustc_hash::FxHashMap;

use super::row::severity_code;
use super::rows::RowRef;

/// The width of a summary bucket.
pub(crate) const MINUTE_NS: i64 = 60_000_000_000;

/// `summary.kind`: what a summary row counts by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Kind {
    Type = 0,
    Label = 1,
    Rule = 2,
    /// The timeline's severity class ([`severity_class`]).
    Severity = 3,
}

impl Kind {
    pub(crate) fn code(self) -> i64 {
        self as i64
    }
}

/// The minute holding the time `ts_ns` (minutes since the epoch, rounded down).
pub(crate) fn minute_of(ts_ns: i64) -> i64 {
    ts_ns.div_euclid(MINUTE_NS)
}

/// The key of [`Kind::Severity`]: `"1"` suspicious, `"2"` malicious, `"0"` everything else. As
/// the timeline counted from the rows: an event is suspicious or malicious only with a risk
/// above 0 and a severity above benign (query.rs, `timeline`).
pub(crate) fn severity_class(severity: i64, risk: f64) -> &'static str {
    if risk > 0.0 && severity > 0 {
        if severity >= 2 { "2" } else { "1" }
    } else {
        "0"
    }
}

/// Adds `n` to a count of the summary (a negative `n` subtracts).
const UPSERT: &str = "INSERT INTO summary (minute, kind, key, count) VALUES (?1, ?2, ?3, ?4) \
    ON CONFLICT (minute, kind, key) DO UPDATE SET count = count + excluded.count";

/// Counts that went to zero (retention deleted every event they counted).
const DELETE_EMPTY: &str = "DELETE FROM summary WHERE minute >= ?1 AND minute <= ?2 AND count <= 0";

/// Counts keyed by text that may borrow from the rows counted (the writer's batch) or own it
/// (rows read back from the table).
type Keyed<'a> = FxHashMap<Cow<'a, str>, i64>;

/// Counts per minute, kind and key gathered in memory, then added to the table at once
/// ([`Tally::write`]).
#[derive(Default)]
pub(crate) struct Tally<'a> {
    counts: FxHashMap<(i64, Kind), Keyed<'a>>,
    /// Distinct (minute, kind, key) held.
    entries: usize,
    /// Some count is negative: zeros may need deleting after the write.
    subtracts: bool,
}

impl<'a> Tally<'a> {
    fn bump(
        &mut self,
        minute: i64,
        kind: Kind,
        key: &str,
        n: i64,
        keep: impl FnOnce() -> Cow<'a, str>,
    ) {
        let keyed = self.counts.entry((minute, kind)).or_default();
        match keyed.get_mut(key) {
            Some(count) => *count += n,
            None => {
                keyed.insert(keep(), n);
                self.entries += 1;
            }
        }
        self.subtracts |= n < 0;
    }

    /// Counts a row the writer is inserting (its text borrowed, not copied).
    pub(crate) fn add_row(&mut self, row: &RowRef<'a>) {
        self.add_row_times(row, 1);
    }

    /// Counts a row `sign` times its count (−1: a block's row being deleted).
    pub(crate) fn add_row_times(&mut self, row: &RowRef<'a>, sign: i64) {
        let minute = minute_of(row.first_ns);
        let n = sign.saturating_mul(i64::try_from(row.count).unwrap_or(i64::MAX));
        let type_name = row.event_type.as_str();
        self.bump(minute, Kind::Type, type_name, n, || {
            Cow::Borrowed(type_name)
        });
        let label = row.label;
        self.bump(minute, Kind::Label, label, n, || Cow::Borrowed(label));
        for rule in row.rules.iter() {
            self.bump(minute, Kind::Rule, rule, n, || Cow::Borrowed(rule));
        }
        let class = severity_class(severity_code(row.severity), row.risk_score);
        self.bump(minute, Kind::Severity, class, n, || Cow::Borrowed(class));
    }

    /// Counts a stored row, `sign` times its count (−1: the row is being deleted). `rules` is
    /// the `rules` column (a JSON array of names); one that does not parse counts no rule.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn add_stored(
        &mut self,
        sign: i64,
        ts_ns: i64,
        event_type: &str,
        label: &str,
        severity: i64,
        risk: f64,
        rules: Option<&str>,
        count: i64,
    ) {
        let minute = minute_of(ts_ns);
        let n = sign.saturating_mul(count);
        let owned = |text: &str| -> Cow<'a, str> { Cow::Owned(text.to_string()) };
        self.bump(minute, Kind::Type, event_type, n, || owned(event_type));
        self.bump(minute, Kind::Label, label, n, || owned(label));
        if let Some(rules) = rules {
            for rule in serde_json::from_str::<Vec<String>>(rules).unwrap_or_default() {
                self.bump(minute, Kind::Rule, &rule, n, || owned(&rule));
            }
        }
        let class = severity_class(severity, risk);
        self.bump(minute, Kind::Severity, class, n, || Cow::Borrowed(class));
    }

    /// Adds everything gathered to the summary table (in the caller's transaction) and
    /// empties the tally.
    pub(crate) fn write(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        if self.entries == 0 {
            return Ok(());
        }
        let mut upsert = conn.prepare_cached(UPSERT)?;
        let (mut first, mut last) = (i64::MAX, i64::MIN);
        for ((minute, kind), keyed) in self.counts.drain() {
            first = first.min(minute);
            last = last.max(minute);
            for (key, n) in keyed {
                if n != 0 {
                    upsert.execute(params![minute, kind.code(), key.as_ref(), n])?;
                }
            }
        }
        if self.subtracts {
            conn.prepare_cached(DELETE_EMPTY)?
                .execute(params![first, last])?;
        }
        self.entries = 0;
        self.subtracts = false;
        Ok(())
    }
}

/// The columns [`Tally::add_stored`] takes, in its order, for `SELECT … FROM events`.
pub(crate) const STORED_COLUMNS: &str = "ts, event_type, label, severity, risk, rules, count";

/// Counts a row selected with [`STORED_COLUMNS`], `sign` times its count.
pub(crate) fn add_selected(
    tally: &mut Tally<'_>,
    sign: i64,
    row: &rusqlite::Row<'_>,
) -> rusqlite::Result<()> {
    let text = |i: usize| -> rusqlite::Result<&str> {
        row.get_ref(i)?.as_str().map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
        })
    };
    let rules = match row.get_ref(5)? {
        rusqlite::types::ValueRef::Null => None,
        _ => Some(text(5)?),
    };
    tally.add_stored(
        sign,
        row.get(0)?,
        text(1)?,
        text(2)?,
        row.get(3)?,
        row.get(4)?,
        rules,
        row.get(6)?,
    );
    Ok(())
}

/// Rows [`fill`] counts between two writes of its tally and two calls of `progress`.
pub(crate) const FILL_STEP: u64 = 1_000_000;

/// Fills the summary from every stored row (the migration to version 5; the table must be
/// empty). Calls `progress(rows done, rows in the table)` after every `step` rows; the total
/// is estimated from the row ids, without a count.
pub(crate) fn fill(
    conn: &Connection,
    step: u64,
    mut progress: impl FnMut(u64, u64),
) -> rusqlite::Result<()> {
    // Two subqueries: `min(id), max(id)` in one select scans the table.
    let (first, last): (Option<i64>, Option<i64>) = conn.query_row(
        "SELECT (SELECT min(id) FROM events), (SELECT max(id) FROM events)",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let total = match first.zip(last) {
        Some((first, last)) => u64::try_from(last - first + 1).unwrap_or(0),
        None => return Ok(()),
    };
    let mut tally = Tally::default();
    let mut stmt = conn.prepare(&format!("SELECT {STORED_COLUMNS} FROM events"))?;
    let mut rows = stmt.query([])?;
    let mut done = 0u64;
    while let Some(row) = rows.next()? {
        add_selected(&mut tally, 1, row)?;
        done += 1;
        if done.is_multiple_of(step.max(1)) {
            tally.write(conn)?;
            progress(done, total.max(done));
        }
    }
    tally.write(conn)?;
    Ok(())
}
