//! Retention: deleting events older than `retention_days`, and the oldest events while the
//! database holds more than `max_size_mb`. Done in bounded steps ([`CHUNK`] events each) by
//! the writer thread between batches, so a large clean-up never holds the database (or the
//! writer) for long.
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use super::block::{BlockBuilder, rows_of};
use super::row::to_ns;
use super::rows::BlockRowIter;
use super::summary::{STORED_COLUMNS, Tally, add_selected};

/// The most events one retention step deletes.
pub const CHUNK: usize = 20_000;

/// When the size limit is exceeded, events are deleted until the database is this fraction
/// of the limit (so it is not trimmed again by every batch).
const SIZE_TARGET: f64 = 0.9;

/// What retention keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Retention {
    /// Delete events older than this (`None`: keep forever).
    pub max_age: Option<chrono::Duration>,
    /// Delete the oldest events while the data takes more than this many bytes (`None`: no
    /// limit).
    pub max_bytes: Option<u64>,
}

impl Retention {
    pub fn from_config(config: &crate::config::Storage) -> Retention {
        Retention {
            max_age: (config.retention_days > 0)
                .then(|| chrono::Duration::days(i64::from(config.retention_days))),
            max_bytes: (config.max_size_mb > 0)
                .then(|| config.max_size_mb.saturating_mul(1024 * 1024)),
        }
    }

    pub fn is_unlimited(&self) -> bool {
        self.max_age.is_none() && self.max_bytes.is_none()
    }
}

/// What one step did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Step {
    pub deleted_by_age: u64,
    pub deleted_by_size: u64,
    /// Contexts no event referenced any more.
    pub contexts_deleted: u64,
    /// More is to be deleted: call again soon.
    pub more: bool,
}

/// Bytes the database's live pages take (free pages, which SQLite reuses, not counted).
pub fn used_bytes(conn: &Connection) -> rusqlite::Result<u64> {
    let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    Ok(u64::try_from((pages - free).max(0) * page_size).unwrap_or(0))
}

/// Deletes the `limit` oldest events before `before_ns` (and their counts from the summary),
/// then the contexts no remaining event can use: those whose newest use is older than the
/// oldest event left. Returns (events, contexts) deleted.
///
/// Rows of `events` go first, then whole blocks: by age, the blocks whose every event is
/// before `before_ns` (so a block outlives the limit by up to its own time span); by size
/// (`before_ns` `None`), the rows older than the oldest block, else the oldest blocks.
fn delete_oldest(
    tx: &Transaction<'_>,
    before_ns: Option<i64>,
    limit: usize,
) -> rusqlite::Result<(u64, u64)> {
    let oldest_block: Option<i64> = tx
        .query_row("SELECT first_ts FROM blocks ORDER BY id LIMIT 1", [], |r| {
            r.get(0)
        })
        .optional()?;
    let row_cutoff = match before_ns {
        Some(cutoff) => cutoff,
        None => oldest_block.unwrap_or(i64::MAX),
    };
    let mut events = delete_oldest_rows(tx, row_cutoff, limit)?;
    if (events as usize) < limit && (before_ns.is_some() || events == 0) {
        let block_cutoff = before_ns.unwrap_or(i64::MAX);
        events += delete_oldest_blocks(tx, block_cutoff, limit - events as usize)?;
    }
    if events == 0 {
        return Ok((0, 0));
    }
    let contexts = tx
        .prepare_cached(
            "DELETE FROM contexts WHERE last_ts < coalesce(min( \
                coalesce((SELECT min(ts) FROM events), 9223372036854775807), \
                coalesce((SELECT min(first_ts) FROM blocks), 9223372036854775807)), \
             9223372036854775807)",
        )?
        .execute([])? as u64;
    Ok((events, contexts))
}

/// Deletes up to `limit` of the oldest rows of `events` before `before_ns`, and their counts
/// from the summary; returns the events (not rows) deleted.
fn delete_oldest_rows(tx: &Transaction<'_>, before_ns: i64, limit: usize) -> rusqlite::Result<u64> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    // What is deleted leaves the summary in the same transaction.
    let mut tally = Tally::default();
    let mut rows = 0u64;
    {
        let mut delete = tx.prepare_cached(&format!(
            "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE ts < ?1 \
             ORDER BY ts LIMIT ?2) RETURNING {STORED_COLUMNS}"
        ))?;
        let mut deleted = delete.query(params![before_ns, limit])?;
        while let Some(row) = deleted.next()? {
            add_selected(&mut tally, -1, row)?;
            rows += 1;
        }
    }
    tally.write(tx)?;
    Ok(rows)
}

/// Deletes the events of the oldest blocks that are before `before_ns`, at least one block's
/// and about `limit` events' worth, and their counts from the summary; returns the events
/// deleted. A block whose events are all before goes whole; one that also holds later events
/// is written again without the earlier ones.
fn delete_oldest_blocks(
    tx: &Transaction<'_>,
    before_ns: i64,
    limit: usize,
) -> rusqlite::Result<u64> {
    let mut events = 0u64;
    let mut oldest = tx.prepare_cached(
        "SELECT id, last_ts, data FROM blocks WHERE first_ts < ?1 ORDER BY id LIMIT 1",
    )?;
    let mut delete = tx.prepare_cached("DELETE FROM blocks WHERE id = ?1")?;
    let mut kept = BlockBuilder::default();
    while events == 0 || (events as usize) < limit {
        let Some((id, last_ts, data)) = oldest
            .query_row([before_ns], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                ))
            })
            .optional()?
        else {
            break;
        };
        let whole = last_ts < before_ns;
        // A block that does not decode (another format, damaged) has no rows to keep.
        let rows = rows_of(&data).unwrap_or_default();
        let mut tally = Tally::default();
        let mut deleted = 0u64;
        for (row_id, decoded) in BlockRowIter::new(&rows) {
            match decoded.row {
                Some(row) if !whole && row.first_ns >= before_ns => {
                    kept.push(row_id, &row, row.context_id().unwrap_or(0));
                }
                Some(row) => {
                    tally.add_row_times(&row, -1);
                    deleted += decoded.count;
                }
                None => deleted += decoded.count,
            }
        }
        tally.write(tx)?;
        if kept.is_empty() {
            delete.execute([id])?;
        } else {
            kept.write_as(tx, Some(id))?;
        }
        // A block that did not decode still goes: count it as one.
        events += deleted.max(1);
    }
    Ok(events)
}

/// One bounded retention step at time `now`. `trimming`: the previous step left more to do
/// (then the size is brought down to 90 % of the limit, not just under it).
pub fn step(
    conn: &mut Connection,
    retention: &Retention,
    now: DateTime<Utc>,
    trimming: bool,
) -> rusqlite::Result<Step> {
    let mut result = Step::default();
    if let Some(age) = retention.max_age {
        let cutoff = to_ns(now - age);
        let tx = Transaction::new(conn, TransactionBehavior::Immediate)?;
        let (events, contexts) = delete_oldest(&tx, Some(cutoff), CHUNK)?;
        tx.commit()?;
        result.deleted_by_age = events;
        result.contexts_deleted += contexts;
        if events as usize >= CHUNK {
            result.more = true;
            return Ok(result);
        }
    }
    if let Some(max) = retention.max_bytes {
        let used = used_bytes(conn)?;
        let target = max as f64 * SIZE_TARGET;
        if used > max || (trimming && used as f64 > target) {
            // Estimate how many of the oldest events make up the excess; ids grow with
            // insertion, so max - min approximates the row count without a full count.
            // Two subqueries: `min(id), max(id)` in one select scans the table.
            // Ids are shared by `events` and `blocks` (the writer hands them out).
            let (min_id, max_id): (Option<i64>, Option<i64>) = conn.query_row(
                // (SQLite's min and max of several values are NULL if one is.)
                "WITH e AS (SELECT (SELECT min(id) FROM events) AS lo, \
                                   (SELECT max(id) FROM events) AS hi), \
                      b AS (SELECT (SELECT first_id FROM blocks ORDER BY id LIMIT 1) AS lo, \
                                   (SELECT last_id FROM blocks ORDER BY id DESC LIMIT 1) AS hi) \
                 SELECT min(coalesce(e.lo, b.lo), coalesce(b.lo, e.lo)), \
                        max(coalesce(e.hi, b.hi), coalesce(b.hi, e.hi)) FROM e, b",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let rows = match (min_id, max_id) {
                (Some(lo), Some(hi)) => (hi - lo + 1).max(1) as f64,
                _ => return Ok(result),
            };
            let excess = ((used as f64 - target) / used as f64).clamp(0.0, 1.0);
            let wanted = ((rows * excess).ceil() as usize).max(1);
            let chunk = wanted.min(CHUNK);
            let tx = Transaction::new(conn, TransactionBehavior::Immediate)?;
            let (events, contexts) = delete_oldest(&tx, None, chunk)?;
            tx.commit()?;
            result.deleted_by_size = events;
            result.contexts_deleted += contexts;
            // Deleting frees pages only once whole pages are empty: check again next step.
            result.more = events > 0;
        }
    }
    Ok(result)
}
