//! The database layout and its migrations.
//!
//! `schema_version` holds one row: the version the tables are at. [`MIGRATIONS`]`[i]` takes a
//! database from version `i` to `i + 1`; a new database runs all of them, so every migration is
//! exercised on every fresh install too. Never edit a shipped migration: add one.
//!
//! Layout (version 6):
//!
//! - `blocks`: the plain events (benign, no rule, no response), up to 4,096 rows to a block
//!   (block.rs): the rows' encoding in `data`, and what lets a query pass a block over without
//!   reading it (time range, types, a Bloom filter of pids, names, paths and addresses).
//! - `events`: every other event (and every event stored before version 6): one row per
//!   event, or per run of identical consecutive events (`count` of them,
//!   from `ts` to `last_ts`). The fields queries filter on have their own columns
//!   (`ts` in nanoseconds since the Unix epoch, UTC); the process context most events of a
//!   process share (user, exe, cmdline, cgroup, parent, ancestors) is kept once in `contexts`
//!   and referenced by `ctx`; the remaining type-specific fields are a small JSON object in
//!   `extra` (NULL when there are none). `rules` is a JSON array of rule names and `response`
//!   a JSON array of the response layer's actions (NULL: none).
//! - `contexts`: the shared process contexts. `last_ts` is the newest event that uses one;
//!   retention deletes the contexts whose `last_ts` is older than the oldest event left.
//! - `summary`: events per minute (`minute`: minutes since the epoch) per type, label, rule and
//!   severity class (`kind`, `key`), kept exact by the writer and retention in the same
//!   transactions as the rows (summary.rs). `--stats` and the timeline read it instead of the
//!   rows.
//!
//! Indexes, chosen for the insert rate: every index entry an insert lands at a random place in a
//! large index costs a page rewritten in the WAL at the next commit, and each index costs its
//! own descent, so there are few indexes and their inserts stay near the right edge:
//!
//! - `events_ts`: time, covering type, pid, process name and count. Filters on those are
//!   checked in this index while scanning a time range backwards, and events counted per time
//!   bucket and type, without reading rows.
//! - `events_path_gen`, `events_pid_gen`: the file path, the pid, within each *generation* of
//!   [`GENERATION_SHIFT`] bits of the row id (16,384 events). Ids grow with insertion, so
//!   inserts only touch the current generation's few pages; a lookup probes every generation
//!   (a few hundred index seeks for 10 million events).
//! - Partial, so most events cost nothing there: risk and label (with time; only events the
//!   analysis flagged), rename/link target, destination and source address (only rows that
//!   have one). None on `events.ctx`.
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior};

use super::summary;

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: u32 = 6;

/// `MIGRATIONS[i]`: version `i` → `i + 1`. A step may also have a part in Rust, run right after
/// its SQL ([`migrate`]).
pub(crate) const MIGRATIONS: [&str; SCHEMA_VERSION as usize] =
    [V0_TO_V1, V1_TO_V2, V2_TO_V3, V3_TO_V4, V4_TO_V5, V5_TO_V6];

/// `events_path_gen` and `events_pid_gen` are keyed by `id >> GENERATION_SHIFT` first: queries must spell the
/// expression exactly as the index does (`id >> 14`) for SQLite to use it.
pub(crate) const GENERATION_SHIFT: u32 = 14;

/// Version 1: the first layout. `source_ip` still lived in `extra`; no response column.
const V0_TO_V1: &str = "
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE contexts (
    id        INTEGER PRIMARY KEY,
    user      TEXT NOT NULL,
    exe       TEXT NOT NULL,
    cmdline   TEXT NOT NULL,
    cgroup_id INTEGER NOT NULL,
    parent    TEXT NOT NULL,
    ancestors TEXT NOT NULL
);
CREATE TABLE events (
    id             INTEGER PRIMARY KEY,
    ts             INTEGER NOT NULL,
    event_type     TEXT NOT NULL,
    pid            INTEGER NOT NULL,
    tid            INTEGER NOT NULL,
    ppid           INTEGER NOT NULL,
    uid            INTEGER NOT NULL,
    process        TEXT NOT NULL,
    ctx            INTEGER NOT NULL,
    file_path      TEXT,
    new_path       TEXT,
    dst_ip         TEXT,
    dst_port       INTEGER,
    label          TEXT NOT NULL,
    severity       INTEGER NOT NULL,
    risk           REAL NOT NULL,
    method         TEXT NOT NULL,
    recommendation TEXT,
    rules          TEXT,
    extra          TEXT
);
CREATE INDEX events_ts ON events(ts);
CREATE INDEX events_type_ts ON events(event_type, ts);
CREATE INDEX events_risk_ts ON events(risk, ts) WHERE risk > 0;
CREATE INDEX events_pid_ts ON events(pid, ts);
CREATE INDEX events_process_ts ON events(process, ts);
CREATE INDEX events_path ON events(file_path) WHERE file_path IS NOT NULL;
CREATE INDEX events_dst ON events(dst_ip) WHERE dst_ip IS NOT NULL;
CREATE INDEX events_ctx ON events(ctx);
";

/// Version 2: the source address gets a column (moved out of `extra`), events keep what the
/// response layer did, and labels, rename/link targets and source addresses are indexed.
/// Contexts record their newest use, which replaces the (insert-costly) index on `events.ctx`.
const V1_TO_V2: &str = "
ALTER TABLE contexts ADD COLUMN last_ts INTEGER NOT NULL DEFAULT 0;
UPDATE contexts SET last_ts = coalesce((SELECT max(ts) FROM events WHERE ctx = contexts.id), 0);
CREATE INDEX contexts_last_ts ON contexts(last_ts);
DROP INDEX events_ctx;
ALTER TABLE events ADD COLUMN src_ip TEXT;
ALTER TABLE events ADD COLUMN response TEXT;
UPDATE events SET src_ip = json_extract(extra, '$.source_ip'),
                  extra = nullif(json_remove(extra, '$.source_ip'), '{}')
    WHERE extra IS NOT NULL AND json_extract(extra, '$.source_ip') IS NOT NULL;
CREATE INDEX events_label_ts ON events(label COLLATE NOCASE, ts) WHERE label <> 'Benign';
CREATE INDEX events_new_path ON events(new_path) WHERE new_path IS NOT NULL;
CREATE INDEX events_src ON events(src_ip) WHERE src_ip IS NOT NULL;
";

/// Version 3: cheaper inserts (see the module doc). The indexes on type, pid and process name
/// (random places in large indexes, about 2 µs per event each) go; the time index covers those
/// columns instead. The path index, and a new pid index (a pid is often rare: a time scan would
/// read the whole range), are keyed by id generation first (the `14` is [`GENERATION_SHIFT`]).
const V2_TO_V3: &str = "
DROP INDEX events_type_ts;
DROP INDEX events_pid_ts;
DROP INDEX events_process_ts;
DROP INDEX events_path;
DROP INDEX events_ts;
CREATE INDEX events_ts ON events(ts, event_type, pid, process);
CREATE INDEX events_path_gen ON events(id >> 14, file_path) WHERE file_path IS NOT NULL;
CREATE INDEX events_pid_gen ON events(id >> 14, pid);
";

/// Version 4: a row may stand for several identical consecutive events (the history's tap
/// coalesces them, docs/history.md): `count` of them (1 for every older row), the first at
/// `ts`, the last at `last_ts` (NULL when `count` is 1). The time index also covers `count`,
/// so that counting events per bucket (`--stats` by type, the UI's timeline) sums it without
/// reading rows; rebuilding it is the migration's only cost (about 1 s per million events).
const V3_TO_V4: &str = "
ALTER TABLE events ADD COLUMN count INTEGER NOT NULL DEFAULT 1;
ALTER TABLE events ADD COLUMN last_ts INTEGER;
DROP INDEX events_ts;
CREATE INDEX events_ts ON events(ts, event_type, pid, process, count);
";

/// Version 5: the per-minute summary (summary.rs), keyed by minute first so that a range of
/// minutes is one range of the table. Filled from the stored rows by [`summary::fill`], the
/// Rust part of this step (one read of every row: 7.5 s for 10 million events, docs/benchmarks.md).
const V4_TO_V5: &str = "
CREATE TABLE summary (
    minute INTEGER NOT NULL,
    kind   INTEGER NOT NULL,
    key    TEXT NOT NULL,
    count  INTEGER NOT NULL,
    PRIMARY KEY (minute, kind, key)
) WITHOUT ROWID;
";

/// Version 6: plain events (benign, no rule, no response) are stored many to a row of `blocks`
/// (block.rs) instead of one row of `events` each; `events` keeps the flagged ones, and every
/// event stored before. Event ids are shared: the writer hands them out in insertion order to
/// both. `last_ts` (the newest event's time) orders a query's newest-first scan.
const V5_TO_V6: &str = "
CREATE TABLE blocks (
    id       INTEGER PRIMARY KEY,
    first_id INTEGER NOT NULL,
    last_id  INTEGER NOT NULL,
    rows     INTEGER NOT NULL,
    events   INTEGER NOT NULL,
    first_ts INTEGER NOT NULL,
    last_ts  INTEGER NOT NULL,
    types    INTEGER NOT NULL,
    filter   BLOB NOT NULL,
    data     BLOB NOT NULL
);
CREATE INDEX blocks_last_ts ON blocks(last_ts);
";

/// The version a database is at: 0 for an empty database.
pub(crate) fn version(conn: &Connection) -> rusqlite::Result<u32> {
    let has_table: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version')",
        [],
        |row| row.get(0),
    )?;
    if !has_table {
        return Ok(0);
    }
    let version: Option<u32> = conn
        .query_row("SELECT max(version) FROM schema_version", [], |row| {
            row.get(0)
        })
        .optional()?
        .flatten();
    Ok(version.unwrap_or(0))
}

/// Progress of [`summary::fill`] on a large history (only large ones take long enough to
/// need it: a step is a million events).
fn report_fill(done: u64, total: u64) {
    crate::notice::info(format!(
        "history: upgrading the database (per-minute counts for --stats): {done} of about \
         {total} rows ({} %)",
        done * 100 / total.max(1)
    ));
}

/// What [`migrate`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Migration {
    /// Already at [`SCHEMA_VERSION`].
    Current,
    /// Upgraded from this version.
    Upgraded(u32),
    /// Written by a newer secmon: left alone.
    TooNew(u32),
}

/// Brings the database up to `target` (normally [`SCHEMA_VERSION`]) in one immediate
/// transaction, which also proves the database can be written (a lock held elsewhere makes it
/// fail with `SQLITE_BUSY` once the busy timeout has passed). A long step reports its progress
/// as notices (`crate::notice`: stderr, or the front end's notices).
pub(crate) fn migrate(conn: &mut Connection, target: u32) -> rusqlite::Result<Migration> {
    let tx = Transaction::new(conn, TransactionBehavior::Immediate)?;
    let found = version(&tx)?;
    let result = if found > SCHEMA_VERSION {
        Migration::TooNew(found)
    } else if found >= target {
        Migration::Current
    } else {
        for from in found..target {
            tx.execute_batch(MIGRATIONS[from as usize])?;
            if from == 4 {
                summary::fill(&tx, summary::FILL_STEP, report_fill)?;
            }
        }
        tx.execute("DELETE FROM schema_version", [])?;
        tx.execute("INSERT INTO schema_version (version) VALUES (?1)", [target])?;
        Migration::Upgraded(found)
    };
    tx.commit()?;
    Ok(result)
}
