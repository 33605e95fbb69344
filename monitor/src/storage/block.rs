//! Blocks (schema version 6): the plain events, many to a row of the `blocks` table.
//!
//! Most events are plain: benign, risk 0, no rule matched, nothing done about them. Stored one
//! to a row, each cost SQLite a record of ~20 columns and an entry in each index, about 5 µs
//! of the writer's time (docs/benchmarks.md), which bounded the history at ~150,000 events/s.
//! A block holds up to [`BLOCK_ROWS`] of them as one blob: the rows as the writer's queue
//! encodes them (rows.rs), each after its event id, with the process context replaced by its
//! id in `contexts`. Beside the blob, what lets a query pass a block over without reading it:
//! the time range, the event types (a bit each), and a Bloom filter of the pids, process
//! names, paths (and every directory above them) and addresses its rows hold.
//!
//! Flagged events (a risk above 0, a label other than `Benign`, a rule, a response) stay rows
//! of `events` with their indexes, so that the queries analysts run most (`--min-risk`,
//! `--label`, `--rule`) read only them. Queries read both and merge them (query.rs).
//!
//! The blob's format is stored on disk: [`FORMAT`] first, the rows' length (`u32`, little
//! endian), then the rows compressed with zstd (level 1: a block of ~1 MB of rows becomes a few
//! hundred KB; the bytes written, to the WAL and again at checkpoints, were most of the writer's
//! time before compression). Changing the row encoding (rows.rs), the order of `EventType::ALL` (a type is stored as its index there) or
//! the filter's hashing ([`key`]) needs a new format number and a migration.
use std::collections::HashMap;
use std::collections::hash_map::Entry;

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::event::{AddressText, Event, EventType, Severity, SharedStr};

use super::query::{Filter, TextMatch};
use super::row::{HistoryEvent, from_ns, to_ns};
use super::rows::{BlockRowIter, RowRef, push_block_row};

/// The format byte at the start of `blocks.data`.
pub(crate) const FORMAT: u8 = 1;

/// zstd's level for blocks: its fastest ordinary level.
const ZSTD_LEVEL: i32 = 1;

/// A block's rows are never longer than this: a stored length beyond it (a damaged or hostile
/// database) is not decompressed.
const MAX_RAW_BYTES: usize = 256 << 20;

/// The rows of a block's stored `data`: `None` if it is of another format or does not
/// decompress.
pub(crate) fn rows_of(blob: &[u8]) -> Option<Vec<u8>> {
    let (&format, rest) = blob.split_first()?;
    if format != FORMAT || rest.len() < 4 {
        return None;
    }
    let (len, compressed) = rest.split_at(4);
    let len = u32::from_le_bytes(len.try_into().ok()?) as usize;
    if len > MAX_RAW_BYTES {
        return None;
    }
    let rows = zstd::bulk::decompress(compressed, len).ok()?;
    (rows.len() == len).then_some(rows)
}

/// A block's rows as stored in `data`.
fn stored_data(rows: &[u8], compressor: &mut Option<zstd::bulk::Compressor<'static>>) -> Vec<u8> {
    let mut blob = vec![FORMAT];
    blob.extend_from_slice(&u32::try_from(rows.len()).unwrap_or(u32::MAX).to_le_bytes());
    let compressed = compressor
        .get_or_insert_with(|| {
            // Level 1 is always valid; were creating the context to fail, blocks are stored
            // uncompressed-in-a-frame by the one-shot function below.
            zstd::bulk::Compressor::new(ZSTD_LEVEL)
                .unwrap_or_else(|_| zstd::bulk::Compressor::default())
        })
        .compress(rows)
        .or_else(|_| zstd::bulk::compress(rows, ZSTD_LEVEL))
        .unwrap_or_default();
    blob.extend_from_slice(&compressed);
    blob
}

/// A block holds at most this many rows: a query that reads a block for one event decodes at
/// most this many.
pub(crate) const BLOCK_ROWS: u32 = 4096;

/// Whether a row is stored in a block rather than as a row of `events`.
pub(crate) fn is_plain(row: &RowRef<'_>) -> bool {
    row.risk_score == 0.0
        && row.severity == Severity::Benign
        && row.label == "Benign"
        && row.rules.is_empty()
        && row.response_json.is_empty()
}

/// Whether every event `filter` can match is flagged (so no block holds one): a minimum risk
/// above 0, a rule, or a label other than benign.
pub(crate) fn needs_flagged(filter: &Filter) -> bool {
    filter.min_risk.is_some_and(|r| r > 0.0)
        || filter.rule.is_some()
        || matches!(&filter.label,
            Some(TextMatch::Exact(l) | TextMatch::Prefix(l)) if !l.eq_ignore_ascii_case("benign"))
}

/// What a filter key is of: part of its hash, so that a pid and a name never collide.
#[derive(Clone, Copy)]
enum KeyKind {
    Pid = 1,
    Process = 2,
    Path = 3,
    /// A directory above a path, with its trailing `/`.
    Directory = 4,
    Address = 5,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(FNV_PRIME);
    }
    h
}

/// FNV-1a mixes its low bits poorly for a Bloom filter's indexes: splitmix64's finaliser.
fn finish(mut h: u64) -> u64 {
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The filter's hash of a key: stable across runs and machines (it is stored).
fn key(kind: KeyKind, bytes: &[u8]) -> u64 {
    finish(fnv(fnv(FNV_OFFSET, &[kind as u8]), bytes))
}

/// The hash of `path` itself, and of every directory above it (`/`, `/etc/`, …), in one pass.
fn path_keys(path: &str, mut each: impl FnMut(u64)) {
    let mut h = fnv(FNV_OFFSET, &[KeyKind::Directory as u8]);
    for &b in path.as_bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(FNV_PRIME);
        if b == b'/' {
            each(finish(h));
        }
    }
    each(path_key(h));
}

/// The key of a whole path from the hash of its bytes as a directory's ([`path_keys`]): a
/// path ending in `/` is also a directory, and its two keys must differ.
fn path_key(directory_hash: u64) -> u64 {
    finish(directory_hash ^ (KeyKind::Path as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// The key of a whole path, as [`path_keys`] makes it.
fn exact_path_key(path: &str) -> u64 {
    path_key(fnv(
        fnv(FNV_OFFSET, &[KeyKind::Directory as u8]),
        path.as_bytes(),
    ))
}

/// Bits set per key.
const PROBES: u64 = 5;

/// A Bloom filter built at its largest and stored folded to the size its keys need: a size is
/// a power of two, and a bit's index is the hash modulo the size, so folding the upper half
/// onto the lower (OR) gives the filter those keys would have made at half the size.
struct Bloom {
    words: Vec<u64>,
    /// Keys that set at least one new bit: about the distinct keys added.
    distinct: u32,
}

impl Bloom {
    /// 16 KiB: a block of 4,096 rows has up to ~8,000 distinct keys in a busy host's mix.
    const MAX_BITS: u64 = 1 << 17;
    const MIN_BITS: u64 = 512;
    /// 16 to 32 bits per key (sizes are powers of two) and 5 probes: 0.01–0.15 % false
    /// positives. With 10 bits and 3 probes, a rare path's query read 3.7 % of the blocks of
    /// the bench's 10-million-event history, each a decompression and a decoding for nothing.
    const BITS_PER_KEY: u64 = 16;

    fn new() -> Bloom {
        Bloom {
            words: vec![0; (Self::MAX_BITS / 64) as usize],
            distinct: 0,
        }
    }

    fn clear(&mut self) {
        self.words.fill(0);
        self.distinct = 0;
    }

    fn insert(&mut self, h: u64) {
        let (h1, h2) = (h, (h >> 32) | 1);
        let mut new = false;
        for i in 0..PROBES {
            let bit = h1.wrapping_add(i.wrapping_mul(h2)) % Self::MAX_BITS;
            let (word, mask) = ((bit / 64) as usize, 1u64 << (bit % 64));
            new |= self.words[word] & mask == 0;
            self.words[word] |= mask;
        }
        self.distinct += u32::from(new);
    }

    /// The filter as stored: [`FILTER_FORMAT`], then the bits folded to the smallest size that
    /// keeps [`Bloom::BITS_PER_KEY`], as little-endian words.
    fn to_bytes(&self) -> Vec<u8> {
        let wanted = (u64::from(self.distinct) * Self::BITS_PER_KEY)
            .next_power_of_two()
            .clamp(Self::MIN_BITS, Self::MAX_BITS);
        let mut words = self.words.clone();
        while (words.len() as u64) * 64 > wanted {
            let half = words.len() / 2;
            let (low, high) = words.split_at_mut(half);
            for (l, h) in low.iter_mut().zip(high.iter()) {
                *l |= *h;
            }
            words.truncate(half);
        }
        let mut bytes = vec![FILTER_FORMAT];
        bytes.extend(words.iter().flat_map(|w| w.to_le_bytes()));
        bytes
    }
}

/// The first byte of `blocks.filter`: the hashing, the probes and the largest size (folding
/// depends on it) that built it. A filter of another format may hold anything.
const FILTER_FORMAT: u8 = 1;

/// Whether a stored filter may hold the key hashed `h`. A filter of another format, or of a
/// size that is not a power of two (not written by this code), may hold anything.
fn may_hold(filter: &[u8], h: u64) -> bool {
    let Some((&FILTER_FORMAT, filter)) = filter.split_first() else {
        return true;
    };
    let bits = filter.len() as u64 * 8;
    if bits == 0 || !bits.is_power_of_two() {
        return true;
    }
    let (h1, h2) = (h, (h >> 32) | 1);
    (0..PROBES).all(|i| {
        // Modulo the largest size first, as the filter was built: folding keeps that.
        let bit = (h1.wrapping_add(i.wrapping_mul(h2)) % Bloom::MAX_BITS) % bits;
        filter[(bit / 8) as usize] & (1 << (bit % 8)) != 0
    })
}

/// The bit of a type in `blocks.types`.
fn type_bit(t: EventType) -> i64 {
    let index = EventType::ALL.iter().position(|&x| x == t).unwrap_or(63);
    1i64 << index.min(63)
}

/// The mask of the types a filter allows (every bit: any type).
fn types_mask(types: &[EventType]) -> i64 {
    if types.is_empty() {
        -1
    } else {
        types.iter().fold(0, |m, &t| m | type_bit(t))
    }
}

/// The block being filled by the writer, written when full or at the end of a transaction.
pub(crate) struct BlockBuilder {
    /// The rows, uncompressed.
    data: Vec<u8>,
    compressor: Option<zstd::bulk::Compressor<'static>>,
    bloom: Bloom,
    first_id: i64,
    last_id: i64,
    rows: u32,
    events: u64,
    first_ts: i64,
    last_ts: i64,
    types: i64,
    /// The previous row's pid and process name: consecutive rows of a process add them once.
    last_process: Option<(u32, String)>,
}

impl Default for BlockBuilder {
    fn default() -> BlockBuilder {
        BlockBuilder {
            data: Vec::new(),
            compressor: None,
            bloom: Bloom::new(),
            first_id: 0,
            last_id: 0,
            rows: 0,
            events: 0,
            first_ts: i64::MAX,
            last_ts: i64::MIN,
            types: 0,
            last_process: None,
        }
    }
}

/// A new block (`id` NULL), or block `id` written again.
const INSERT_BLOCK: &str = "INSERT OR REPLACE INTO blocks (id, first_id, last_id, rows, events, \
    first_ts, last_ts, types, filter, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";

impl BlockBuilder {
    pub(crate) fn is_empty(&self) -> bool {
        self.rows == 0
    }

    pub(crate) fn is_full(&self) -> bool {
        self.rows >= BLOCK_ROWS
    }

    /// Adds `row`, event `id`, whose context is `context_id` in `contexts`.
    pub(crate) fn push(&mut self, id: i64, row: &RowRef<'_>, context_id: i64) {
        if self.rows == 0 {
            self.first_id = id;
        }
        self.last_id = id;
        self.rows += 1;
        self.events += row.count;
        self.first_ts = self.first_ts.min(row.first_ns);
        self.last_ts = self.last_ts.max(row.first_ns);
        self.types |= type_bit(row.event_type);
        push_block_row(&mut self.data, id, row, context_id);
        let same_process = self
            .last_process
            .as_ref()
            .is_some_and(|(pid, name)| *pid == row.pid && name == row.process);
        if !same_process {
            self.bloom.insert(key(KeyKind::Pid, &row.pid.to_le_bytes()));
            self.bloom
                .insert(key(KeyKind::Process, row.process.as_bytes()));
            let (pid, name) = self.last_process.get_or_insert_with(Default::default);
            *pid = row.pid;
            name.clear();
            name.push_str(row.process);
        }
        for path in [row.file_path, row.new_path].into_iter().flatten() {
            path_keys(path, |h| self.bloom.insert(h));
        }
        for ip in [row.source_ip, row.target_ip].into_iter().flatten() {
            let text = AddressText::ip(ip);
            self.bloom
                .insert(key(KeyKind::Address, text.as_str().as_bytes()));
        }
    }

    /// Writes the block as a new row of `blocks` and empties the builder.
    pub(crate) fn write(&mut self, tx: &Transaction<'_>) -> rusqlite::Result<()> {
        self.write_as(tx, None)
    }

    /// Writes the block as row `id` of `blocks` (replacing it), or as a new row, and empties
    /// the builder.
    pub(crate) fn write_as(
        &mut self,
        tx: &Transaction<'_>,
        id: Option<i64>,
    ) -> rusqlite::Result<()> {
        if self.is_empty() {
            return Ok(());
        }
        tx.prepare_cached(INSERT_BLOCK)?.execute(params![
            id,
            self.first_id,
            self.last_id,
            self.rows,
            i64::try_from(self.events).unwrap_or(i64::MAX),
            self.first_ts,
            self.last_ts,
            self.types,
            self.bloom.to_bytes(),
            stored_data(&self.data, &mut self.compressor),
        ])?;
        self.clear();
        Ok(())
    }

    /// Empties the builder, keeping its buffers.
    pub(crate) fn clear(&mut self) {
        self.data.clear();
        self.bloom.clear();
        self.rows = 0;
        self.events = 0;
        self.first_ts = i64::MAX;
        self.last_ts = i64::MIN;
        self.types = 0;
        self.last_process = None;
    }
}

/// A block's description, as read before deciding to read its rows.
#[derive(Clone, Debug)]
pub(crate) struct BlockMeta {
    pub id: i64,
    pub events: i64,
    pub first_ts: i64,
    pub last_ts: i64,
}

/// What a block scan does next ([`Probe::scan`]).
pub(crate) enum Next {
    Read,
    Skip,
    Stop,
}

/// What a query asks of the blocks, prepared once: the filter's keys hashed.
pub(crate) struct Probe<'f> {
    filter: &'f Filter,
    since: i64,
    until: i64,
    types: i64,
    /// Keys that must all be in a block's filter for it to hold a match.
    keys: Vec<u64>,
}

impl<'f> Probe<'f> {
    pub(crate) fn new(filter: &'f Filter) -> Probe<'f> {
        let mut keys = Vec::new();
        if let Some(pid) = filter.pid {
            keys.push(key(KeyKind::Pid, &pid.to_le_bytes()));
        }
        if let Some(TextMatch::Exact(name)) = &filter.process {
            keys.push(key(KeyKind::Process, name.as_bytes()));
        }
        match &filter.path {
            Some(TextMatch::Exact(path)) => keys.push(exact_path_key(path)),
            Some(TextMatch::Prefix(dir)) if dir.ends_with('/') => {
                keys.push(key(KeyKind::Directory, dir.as_bytes()));
            }
            _ => {}
        }
        if let Some(ip) = &filter.ip {
            keys.push(key(KeyKind::Address, ip.as_bytes()));
        }
        Probe {
            filter,
            since: filter.since.map_or(i64::MIN, to_ns),
            until: filter.until.map_or(i64::MAX, to_ns),
            types: types_mask(&filter.types),
            keys,
        }
    }

    /// Whether no block can hold a match.
    pub(crate) fn excludes_blocks(&self) -> bool {
        needs_flagged(self.filter) || self.since >= self.until
    }

    /// Whether every event of `block` matches (only the time range and types are asked).
    pub(crate) fn takes_whole(&self, block: &BlockMeta) -> bool {
        let f = self.filter;
        block.first_ts >= self.since
            && block.last_ts < self.until
            && f.types.is_empty()
            && f.process.is_none()
            && f.pid.is_none()
            && f.path.is_none()
            && f.ip.is_none()
            && f.min_risk.is_none_or(|r| r <= 0.0)
            && f.label.is_none()
            && f.rule.is_none()
            && f.before.is_none()
    }

    fn may_hold(&self, filter: &[u8]) -> bool {
        self.keys.iter().all(|&h| may_hold(filter, h))
    }

    /// Visits the blocks that may hold a match, newest (by last event time) first. `visit` is
    /// called with a block's description and `None` to decide whether to read its rows, then,
    /// if it said [`Next::Read`], with `Some(data)`; [`Next::Stop`] ends the scan.
    pub(crate) fn scan(
        &self,
        conn: &Connection,
        mut visit: impl FnMut(&BlockMeta, Option<&[u8]>) -> rusqlite::Result<Next>,
    ) -> rusqlite::Result<()> {
        if self.excludes_blocks() {
            return Ok(());
        }
        let mut before = self.until;
        if let Some(cursor) = self.filter.before {
            // Rows strictly before the cursor: a block whose first event is later has none.
            before = before.min(cursor.ts_ns.saturating_add(1));
        }
        let mut blocks = conn.prepare_cached(
            "SELECT id, events, first_ts, last_ts, filter FROM blocks \
             WHERE last_ts >= ?1 AND first_ts < ?2 AND types & ?3 <> 0 \
             ORDER BY last_ts DESC, id DESC",
        )?;
        let mut data = conn.prepare_cached("SELECT data FROM blocks WHERE id = ?1")?;
        let mut rows = blocks.query(params![self.since, before, self.types])?;
        while let Some(row) = rows.next()? {
            let filter = row.get_ref(4)?.as_blob_or_null()?.unwrap_or_default();
            if !self.may_hold(filter) {
                continue;
            }
            let meta = BlockMeta {
                id: row.get(0)?,
                events: row.get(1)?,
                first_ts: row.get(2)?,
                last_ts: row.get(3)?,
            };
            match visit(&meta, None)? {
                Next::Stop => break,
                Next::Skip => continue,
                Next::Read => {}
            }
            let blob: Option<Vec<u8>> = data
                .query_row([meta.id], |r| r.get(0))
                .optional()?
                .flatten();
            // A block of another format (a newer secmon's) is passed over, not misread.
            let Some(rows_data) = blob.as_deref().and_then(rows_of) else {
                continue;
            };
            if let Next::Stop = visit(&meta, Some(&rows_data))? {
                break;
            }
        }
        Ok(())
    }

    /// The rows of a block's data that match, with their ids.
    pub(crate) fn matching<'d>(
        &'d self,
        data: &'d [u8],
    ) -> impl Iterator<Item = (i64, RowRef<'d>)> + 'd {
        BlockRowIter::new(data)
            .filter_map(|(id, decoded)| decoded.row.map(|row| (id, row)))
            .filter(|(id, row)| self.matches(*id, row))
    }

    /// Whether one row matches the filter, as the SQL of query.rs decides for a row of
    /// `events` (the tests compare the two).
    pub(crate) fn matches(&self, id: i64, row: &RowRef<'_>) -> bool {
        let f = self.filter;
        let ts = row.first_ns;
        ts >= self.since
            && ts < self.until
            && f.before.is_none_or(|c| (ts, id) < (c.ts_ns, c.id))
            && (f.types.is_empty() || f.types.contains(&row.event_type))
            && f.process
                .as_ref()
                .is_none_or(|m| text_matches(m, row.process))
            && f.pid.is_none_or(|pid| pid == row.pid)
            && f.path.as_ref().is_none_or(|m| {
                row.file_path.is_some_and(|p| text_matches(m, p))
                    || row.new_path.is_some_and(|p| text_matches(m, p))
            })
            && f.ip.as_ref().is_none_or(|ip| {
                [row.target_ip, row.source_ip]
                    .into_iter()
                    .flatten()
                    .any(|a| AddressText::ip(a).as_str() == ip)
            })
            && f.min_risk.is_none_or(|r| row.risk_score >= r)
            && f.label.as_ref().is_none_or(|m| match m {
                TextMatch::Exact(l) | TextMatch::Prefix(l) => row.label.eq_ignore_ascii_case(l),
                TextMatch::Wildcard(w) => wildcard_matches(w, row.label, true),
            })
            && f.rule
                .as_ref()
                .is_none_or(|r| row.rules.iter().any(|x| x == r))
    }
}

/// As SQL compares a column with a [`TextMatch`] in query.rs: `=`, a prefix range, or `GLOB`
/// with only `*` special.
fn text_matches(m: &TextMatch, text: &str) -> bool {
    match m {
        TextMatch::Exact(t) => text == t,
        TextMatch::Prefix(p) => text.starts_with(p.as_str()),
        TextMatch::Wildcard(w) => wildcard_matches(w, text, false),
    }
}

/// Whether `text` matches `pattern`, where `*` matches any run of characters and nothing else
/// is special; `ignore_ascii_case` as SQLite's `LIKE`.
fn wildcard_matches(pattern: &str, text: &str, ignore_ascii_case: bool) -> bool {
    let eq = |a: &[u8], b: &[u8]| {
        if ignore_ascii_case {
            a.eq_ignore_ascii_case(b)
        } else {
            a == b
        }
    };
    let find = |hay: &[u8], needle: &[u8]| -> Option<usize> {
        if needle.is_empty() {
            return Some(0);
        }
        hay.windows(needle.len()).position(|w| eq(w, needle))
    };
    let parts: Vec<&[u8]> = pattern.as_bytes().split(|&b| b == b'*').collect();
    let text = text.as_bytes();
    // `split` yields at least one part.
    let Some((first, rest)) = parts.split_first() else {
        return text.is_empty();
    };
    let Some((last, middle)) = rest.split_last() else {
        return eq(first, text);
    };
    if text.len() < first.len() || !eq(&text[..first.len()], first) {
        return false;
    }
    let mut at = first.len();
    for part in middle {
        match find(&text[at..], part) {
            Some(i) => at += i + part.len(),
            None => return false,
        }
    }
    text.len() - at >= last.len() && eq(&text[text.len() - last.len()..], last)
}

/// A process context read back from `contexts`.
#[derive(Clone, Default)]
struct StoredContext {
    user: SharedStr,
    exe: SharedStr,
    cmdline: SharedStr,
    cgroup_id: u64,
    parent: SharedStr,
    ancestors: Vec<SharedStr>,
}

/// Context `id` from `contexts`. Retention keeps a context while an event uses it; were one
/// missing, the event is still shown, without it.
fn read_context(conn: &Connection, id: i64) -> rusqlite::Result<StoredContext> {
    let ctx = conn
        .prepare_cached(
            "SELECT user, exe, cmdline, cgroup_id, parent, ancestors FROM contexts WHERE id = ?1",
        )?
        .query_row([id], |r| {
            let ancestors: String = r.get(5)?;
            Ok(StoredContext {
                user: r.get(0)?,
                exe: r.get(1)?,
                cmdline: r.get(2)?,
                cgroup_id: u64::try_from(r.get::<_, i64>(3)?).unwrap_or(0),
                parent: r.get(4)?,
                ancestors: serde_json::from_str(&ancestors).unwrap_or_default(),
            })
        })
        .optional()?;
    Ok(ctx.unwrap_or_default())
}

/// Contexts read for block rows, each once per query.
#[derive(Default)]
pub(crate) struct Contexts {
    known: HashMap<i64, StoredContext>,
}

impl Contexts {
    fn get(&mut self, conn: &Connection, id: i64) -> rusqlite::Result<&StoredContext> {
        match self.known.entry(id) {
            Entry::Occupied(known) => Ok(known.into_mut()),
            Entry::Vacant(new) => Ok(new.insert(read_context(conn, id)?)),
        }
    }

    /// The stored event of a block's row.
    pub(crate) fn event(
        &mut self,
        conn: &Connection,
        id: i64,
        row: &RowRef<'_>,
    ) -> rusqlite::Result<HistoryEvent> {
        let mut e: Event = row.to_event_without_context();
        if let Some(context_id) = row.context_id() {
            let ctx = self.get(conn, context_id)?;
            e.user = ctx.user.clone();
            e.exe = ctx.exe.clone();
            e.cmdline = ctx.cmdline.clone();
            e.cgroup_id = ctx.cgroup_id;
            e.parent_process = ctx.parent.clone();
            e.ancestors = ctx.ancestors.clone();
        }
        Ok(HistoryEvent {
            id,
            event: e,
            count: row.count.max(1),
            last_timestamp: (row.count > 1).then(|| from_ns(row.last_ns)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folded_filter_holds_every_key_added() {
        for n in [0u64, 1, 10, 100, 1000, 6000, 20_000] {
            let mut bloom = Bloom::new();
            for i in 0..n {
                bloom.insert(key(KeyKind::Pid, &i.to_le_bytes()));
            }
            let bytes = bloom.to_bytes();
            let bits = (bytes.len() as u64 - 1) * 8;
            assert!(bits.is_power_of_two() && bits >= Bloom::MIN_BITS);
            for i in 0..n {
                assert!(
                    may_hold(&bytes, key(KeyKind::Pid, &i.to_le_bytes())),
                    "{n}: {i}"
                );
            }
            // Not everything: a filter that holds all keys skips no block.
            // Up to the largest size's 16 bits per key, under 0.2 % false positives; beyond
            // (more keys than a block of plain rows has), more.
            let absent = (n..n + 1000)
                .filter(|i| may_hold(&bytes, key(KeyKind::Pid, &i.to_le_bytes())))
                .count();
            let most = if n <= 8000 { 3 } else { 1000 };
            assert!(
                absent <= most,
                "{n} keys: {absent} of 1000 absent keys held"
            );
        }
    }

    #[test]
    fn a_path_is_held_with_every_directory_above_it() {
        let mut bloom = Bloom::new();
        path_keys("/srv/data/5/f.txt", |h| bloom.insert(h));
        let bytes = bloom.to_bytes();
        for dir in ["/", "/srv/", "/srv/data/", "/srv/data/5/"] {
            assert!(
                may_hold(&bytes, key(KeyKind::Directory, dir.as_bytes())),
                "{dir}"
            );
        }
        assert!(may_hold(&bytes, exact_path_key("/srv/data/5/f.txt")));
        assert!(!may_hold(&bytes, key(KeyKind::Directory, b"/srv/data/6/")));
        assert!(!may_hold(&bytes, exact_path_key("/srv/data/5/")));
        assert!(!may_hold(
            &bytes,
            key(KeyKind::Directory, b"/srv/data/5/f.txt")
        ));
    }

    #[test]
    fn a_filter_not_written_here_holds_anything() {
        assert!(may_hold(&[], 42));
        assert!(may_hold(&[0; 3], 42));
        assert!(may_hold(&[FILTER_FORMAT, 0, 0, 0], 42));
        assert!(may_hold(&[FILTER_FORMAT + 1, 0, 0, 0, 0, 0, 0, 0, 0], 42));
        assert!(!may_hold(&[FILTER_FORMAT, 0, 0, 0, 0, 0, 0, 0, 0], 42));
    }

    #[test]
    fn damaged_blocks_are_read_without_panics() {
        use crate::event::Event;
        use crate::storage::rows::Rows;
        let mut events = Vec::new();
        for i in 0..20u32 {
            let mut e = Event::new(EventType::FileOpen, from_ns(1_000_000_000 * i64::from(i)));
            e.pid = i;
            e.process = "cat".into();
            e.file_path = Some(format!("/tmp/f{i}"));
            events.push(e);
        }
        let rows = Rows::from_events(&events);
        let mut builder = BlockBuilder::default();
        for (i, decoded) in rows.iter().enumerate() {
            let row = decoded.row.expect("decodes");
            builder.push(i as i64 + 1, &row, 7);
        }
        let blob = stored_data(&builder.data, &mut None);
        let rows = rows_of(&blob).expect("reads back");
        assert_eq!(rows, builder.data);
        let ids: Vec<i64> = BlockRowIter::new(&rows).map(|(id, _)| id).collect();
        assert_eq!(ids, (1..=20).collect::<Vec<_>>());
        // Every truncation, and a byte changed at every place: no panic, and what decodes is
        // bounded by what was stored.
        for end in 0..rows.len() {
            assert!(BlockRowIter::new(&rows[..end]).count() <= 20);
        }
        let mut state = 0x1234_5678_u64;
        for at in 0..rows.len() {
            let mut damaged = rows.clone();
            state = finish(state);
            damaged[at] ^= (state as u8) | 1;
            for (_, decoded) in BlockRowIter::new(&damaged) {
                if let Some(row) = decoded.row {
                    let _ = row.context_id();
                    let _ = row.to_event_without_context();
                }
            }
        }
        for end in 0..blob.len() {
            let _ = rows_of(&blob[..end]);
        }
        // A stored length beyond what a block may hold is not believed.
        let mut huge = blob.clone();
        huge[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(rows_of(&huge), None);
    }

    #[test]
    fn wildcards_match_as_glob_and_like_do() {
        let cases = [
            ("*", "", true),
            ("*", "abc", true),
            ("a*", "abc", true),
            ("*c", "abc", true),
            ("a*c", "ac", true),
            ("a*c", "a", false),
            ("a*b*c", "axbyc", true),
            ("a*b*c", "acb", false),
            ("*b*", "abc", true),
            ("ab", "ab", true),
            ("ab", "abc", false),
            ("a**c", "abc", true),
            ("*aa", "aa", true),
            ("aa*aa", "aaa", false),
            ("/tmp/*.sh", "/tmp/x.sh", true),
            ("/tmp/*.sh", "/tmp/x.shx", false),
        ];
        for (pattern, text, want) in cases {
            assert_eq!(
                wildcard_matches(pattern, text, false),
                want,
                "{pattern} {text}"
            );
        }
        assert!(wildcard_matches("SUSP*", "suspicious", true));
        assert!(!wildcard_matches("SUSP*", "suspicious", false));
    }
}
