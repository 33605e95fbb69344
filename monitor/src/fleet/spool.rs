//! The exporter's on-disk spool: where messages wait while the NATS server cannot be reached
//! or does not acknowledge, bounded in bytes, kept across restarts of the monitor.
//!
//! The spool is a directory (mode `0700`) of segment files, `<sequence>.seg`, each a run of
//! records:
//!
//! ```text
//! u32 LE body length | u32 LE FNV-1a checksum of the body | body
//! body = u16 LE subject length | subject | u16 LE id length | id | payload
//! ```
//!
//! New records are appended to the newest segment (one `write` each, so a crash tears at most
//! the last record); a segment that reaches [`Spool::segment_bytes`] is closed and the next
//! one begun. Segments are sent oldest first: the oldest is read whole, its records handed out
//! in order ([`Spool::take_next`]), and the file is deleted once every one of them was settled
//! ([`Spool::settled`]: acknowledged, or spooled again). Reading stops at the first record
//! that is short or fails its checksum (a write torn by a crash or a full disk): what came
//! before it is kept, the rest of that file is dropped.
//!
//! What the bound cannot hold is refused ([`SpoolError::Full`]); the caller counts it as lost.
use std::{
    collections::VecDeque,
    fs::{self, File, OpenOptions},
    io::{self, Write},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

/// One spooled message: where it goes, its id (`Nats-Msg-Id`) and its bytes. The subject is
/// NATS's own shared string: every event of a type names the same one, without a copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub subject: async_nats::Subject,
    pub id: String,
    pub payload: bytes::Bytes,
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("the spool is full ({0} bytes)")]
    Full(u64),
    #[error("spool: {0}")]
    Io(#[from] io::Error),
}

/// The header of a record: its body's length and checksum.
const HEADER: usize = 8;
/// The largest record accepted back from a file (NATS's own largest payload is 64 MiB).
const MAX_RECORD: usize = 64 * 1024 * 1024;
/// The largest segment file (smaller when the bound is small: a quarter of it).
const MAX_SEGMENT: u64 = 4 * 1024 * 1024;
const MIN_SEGMENT: u64 = 4 * 1024;

pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    /// Bytes in the segment files, the one being sent included.
    bytes: u64,
    /// Closed segments not yet being sent, oldest first: (sequence, size).
    closed: VecDeque<(u64, u64)>,
    /// The segment being appended to.
    writing: Option<Writing>,
    /// The segment being sent.
    sending: Option<Sending>,
    next_sequence: u64,
    /// A record was refused for the bound: later ones are refused too until a segment is sent
    /// and deleted, so the spool keeps the oldest messages and loses the newest, without gaps
    /// (a smaller message after a refused larger one, a pack of fewer events, would fit).
    full: bool,
}

struct Writing {
    sequence: u64,
    file: File,
    size: u64,
}

struct Sending {
    sequence: u64,
    size: u64,
    records: VecDeque<Record>,
    /// Handed out, not yet settled.
    outstanding: usize,
}

impl Spool {
    /// Opens the spool in `dir` (created `0700`; an existing one is set to `0700`), with the
    /// segments an earlier run left, bounded to `max_bytes` (0: nothing is spooled).
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<Spool> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let meta = fs::symlink_metadata(dir)?;
        if !meta.is_dir() {
            return Err(io::Error::other(format!(
                "{} is not a directory",
                dir.display()
            )));
        }
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        let mut segments = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(sequence) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".seg"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            let meta = entry.metadata()?;
            if meta.is_file() {
                segments.push((sequence, meta.len()));
            }
        }
        segments.sort_unstable();
        let next_sequence = segments.last().map_or(0, |(s, _)| s + 1);
        Ok(Spool {
            dir: dir.to_path_buf(),
            max_bytes,
            segment_bytes: (max_bytes / 4).clamp(MIN_SEGMENT, MAX_SEGMENT),
            bytes: segments.iter().map(|(_, size)| size).sum(),
            closed: segments.into(),
            writing: None,
            sending: None,
            next_sequence,
            full: false,
        })
    }

    /// Bytes on disk.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The size at which a segment is closed and the next begun.
    pub fn segment_bytes(&self) -> u64 {
        self.segment_bytes
    }

    /// Whether records wait to be handed out (those handed out and not settled do not count).
    pub fn has_backlog(&self) -> bool {
        self.sending.as_ref().is_some_and(|s| !s.records.is_empty())
            || !self.closed.is_empty()
            || self.writing.as_ref().is_some_and(|w| w.size > 0)
    }

    /// Appends `record`, or refuses it when the bound would be passed.
    pub fn push(&mut self, record: &Record) -> Result<(), SpoolError> {
        let encoded = encode(record);
        let len = encoded.len() as u64;
        if self.full || self.bytes + len > self.max_bytes {
            self.full = true;
            return Err(SpoolError::Full(self.max_bytes));
        }
        if self
            .writing
            .as_ref()
            .is_some_and(|w| w.size > 0 && w.size + len > self.segment_bytes)
        {
            self.close_writing();
        }
        if self.writing.is_none() {
            self.writing = Some(self.new_segment()?);
        }
        let Some(writing) = self.writing.as_mut() else {
            return Ok(());
        };
        // One write: a crash leaves this record whole or torn, never the ones before it.
        if let Err(e) = writing.file.write_all(&encoded) {
            // What part of it reached the file is read back as a torn record; start afresh.
            self.close_writing();
            return Err(e.into());
        }
        writing.size += len;
        self.bytes += len;
        Ok(())
    }

    fn new_segment(&mut self) -> io::Result<Writing> {
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .mode(0o600)
            .open(self.path(sequence))?;
        Ok(Writing {
            sequence,
            file,
            size: 0,
        })
    }

    fn close_writing(&mut self) {
        if let Some(writing) = self.writing.take() {
            if writing.size == 0 {
                let _ = fs::remove_file(self.path(writing.sequence));
            } else {
                self.closed.push_back((writing.sequence, writing.size));
            }
        }
    }

    fn path(&self, sequence: u64) -> PathBuf {
        self.dir.join(format!("{sequence:020}.seg"))
    }

    /// The oldest record not yet handed out, if any. A segment's records are handed out
    /// once all of the previous segment's were settled.
    pub fn take_next(&mut self) -> Option<Record> {
        if let Some(sending) = &mut self.sending {
            let record = sending.records.pop_front()?;
            sending.outstanding += 1;
            return Some(record);
        }
        if self.closed.is_empty() {
            self.close_writing();
        }
        let (sequence, size) = self.closed.pop_front()?;
        let records = match fs::read(self.path(sequence)) {
            Ok(bytes) => decode_all(&bytes),
            Err(e) => {
                crate::notice::warn(format!(
                    "NATS spool: cannot read {}: {e}; its messages are lost",
                    self.path(sequence).display()
                ));
                VecDeque::new()
            }
        };
        self.sending = Some(Sending {
            sequence,
            size,
            records,
            outstanding: 0,
        });
        self.settle_if_done();
        self.take_next()
    }

    /// A record handed out by [`Spool::take_next`] was acknowledged (or spooled again).
    pub fn settled(&mut self) {
        if let Some(sending) = &mut self.sending {
            sending.outstanding = sending.outstanding.saturating_sub(1);
        }
        self.settle_if_done();
    }

    fn settle_if_done(&mut self) {
        let done = self
            .sending
            .as_ref()
            .is_some_and(|s| s.records.is_empty() && s.outstanding == 0);
        if done && let Some(sending) = self.sending.take() {
            let _ = fs::remove_file(self.path(sending.sequence));
            self.bytes = self.bytes.saturating_sub(sending.size);
            self.full = false;
        }
    }

    /// At stop: the segment being sent is rewritten with the records not yet handed out (those
    /// handed out are settled by then, or spooled again), so a restart does not send again
    /// what was acknowledged.
    pub fn close(&mut self) -> io::Result<()> {
        self.close_writing();
        let Some(sending) = self.sending.take() else {
            return Ok(());
        };
        let path = self.path(sending.sequence);
        if sending.records.is_empty() {
            let _ = fs::remove_file(&path);
            self.bytes = self.bytes.saturating_sub(sending.size);
            return Ok(());
        }
        let mut bytes = Vec::new();
        for record in &sending.records {
            bytes.extend_from_slice(&encode(record));
        }
        let temporary = self.dir.join(format!("{:020}.tmp", sending.sequence));
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        fs::rename(&temporary, &path)?;
        self.bytes = self.bytes.saturating_sub(sending.size) + bytes.len() as u64;
        Ok(())
    }
}

fn encode(record: &Record) -> Vec<u8> {
    // Subjects and ids are short (ours are well under 64 KiB); cut rather than fail.
    let subject = &record.subject.as_bytes()[..record.subject.len().min(u16::MAX as usize)];
    let id = &record.id.as_bytes()[..record.id.len().min(u16::MAX as usize)];
    let body_len = 2 + subject.len() + 2 + id.len() + record.payload.len();
    let mut out = Vec::with_capacity(HEADER + body_len);
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(subject.len() as u16).to_le_bytes());
    out.extend_from_slice(subject);
    out.extend_from_slice(&(id.len() as u16).to_le_bytes());
    out.extend_from_slice(id);
    out.extend_from_slice(&record.payload);
    let checksum = fnv1a(&out[HEADER..]);
    out[4..HEADER].copy_from_slice(&checksum.to_le_bytes());
    out
}

/// The records of a segment file, up to the first torn or damaged one.
fn decode_all(mut bytes: &[u8]) -> VecDeque<Record> {
    let mut records = VecDeque::new();
    while let Some((record, rest)) = decode_one(bytes) {
        records.push_back(record);
        bytes = rest;
    }
    records
}

fn decode_one(bytes: &[u8]) -> Option<(Record, &[u8])> {
    let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let checksum = u32::from_le_bytes(bytes.get(4..HEADER)?.try_into().ok()?);
    if len > MAX_RECORD {
        return None;
    }
    let body = bytes.get(HEADER..HEADER + len)?;
    if fnv1a(body) != checksum {
        return None;
    }
    let (subject, rest) = take_field(body)?;
    let (id, payload) = take_field(rest)?;
    let record = Record {
        subject: String::from_utf8(subject.to_vec()).ok()?.into(),
        id: String::from_utf8(id.to_vec()).ok()?,
        payload: bytes::Bytes::copy_from_slice(payload),
    };
    Some((record, &bytes[HEADER + len..]))
}

/// A `u16`-length-prefixed field and what follows it.
fn take_field(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u16::from_le_bytes(bytes.get(..2)?.try_into().ok()?) as usize;
    let field = bytes.get(2..2 + len)?;
    Some((field, &bytes[2 + len..]))
}

/// 32-bit FNV-1a: enough to tell a torn or overwritten record from a whole one.
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |hash, &b| {
        (hash ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: usize) -> Record {
        Record {
            subject: format!("secmon.h.file_open.{n}").into(),
            id: format!("h:run:{n}"),
            payload: bytes::Bytes::from(format!("{{\"n\":{n},\"pad\":\"{}\"}}", "x".repeat(100))),
        }
    }

    fn drain(spool: &mut Spool) -> Vec<Record> {
        let mut out = Vec::new();
        while let Some(r) = spool.take_next() {
            out.push(r);
            spool.settled();
        }
        out
    }

    #[test]
    fn records_come_back_in_order_across_segments_and_files_go_once_settled() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Segments of 16 KiB (a quarter of the bound): 200 records of ~150 bytes span two.
        let mut spool = Spool::open(dir.path(), 64 * 1024).expect("open");
        assert_eq!(spool.segment_bytes(), 16 * 1024);
        let records: Vec<Record> = (0..200).map(record).collect();
        for r in &records {
            spool.push(r).expect("room");
        }
        assert!(spool.has_backlog());
        let files = fs::read_dir(dir.path()).expect("read").count();
        assert!(files > 1, "200 records of ~150 bytes span several segments");
        assert_eq!(drain(&mut spool), records);
        assert!(!spool.has_backlog());
        assert_eq!(spool.bytes(), 0);
        assert_eq!(fs::read_dir(dir.path()).expect("read").count(), 0);
    }

    #[test]
    fn the_bound_refuses_what_does_not_fit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut spool = Spool::open(dir.path(), 16 * 1024).expect("open");
        let mut taken = 0;
        let mut refused = 0;
        for n in 0..1000 {
            match spool.push(&record(n)) {
                Ok(()) => taken += 1,
                Err(SpoolError::Full(_)) => refused += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(
            taken > 50 && refused > 0,
            "taken {taken}, refused {refused}"
        );
        assert!(spool.bytes() <= 16 * 1024);
        let on_disk: u64 = fs::read_dir(dir.path())
            .expect("read")
            .map(|e| e.expect("entry").metadata().expect("meta").len())
            .sum();
        assert_eq!(on_disk, spool.bytes());
        assert!(on_disk <= 16 * 1024);
        // Once full, a smaller message is refused too: the newest are lost, not some of them.
        let small = Record {
            payload: bytes::Bytes::from_static(b"{}"),
            ..record(0)
        };
        assert!(matches!(spool.push(&small), Err(SpoolError::Full(_))));
        assert_eq!(
            refused,
            1000 - taken,
            "nothing taken after the first refusal"
        );
        // Sending frees room again.
        assert_eq!(drain(&mut spool).len(), taken);
        spool.push(&record(0)).expect("room again");
        // No spool at all: everything is refused.
        let mut none = Spool::open(&dir.path().join("none"), 0).expect("open");
        assert!(matches!(none.push(&record(1)), Err(SpoolError::Full(0))));
    }

    #[test]
    fn a_reopened_spool_keeps_what_was_not_sent_and_its_ids() {
        let dir = tempfile::tempdir().expect("tempdir");
        let records: Vec<Record> = (0..50).map(record).collect();
        {
            let mut spool = Spool::open(dir.path(), 1024 * 1024).expect("open");
            for r in &records {
                spool.push(r).expect("room");
            }
            // Ten were sent and acknowledged before the stop.
            for _ in 0..10 {
                assert!(spool.take_next().is_some());
                spool.settled();
            }
            spool.close().expect("close");
        }
        let mut spool = Spool::open(dir.path(), 1024 * 1024).expect("reopen");
        let again = drain(&mut spool);
        assert_eq!(again, records[10..]);
        let ids: std::collections::HashSet<&str> = again.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids.len(), 40, "ids survive a restart, each once");
        // New records go to a later segment than the old ones.
        spool.push(&record(99)).expect("room");
        assert_eq!(drain(&mut spool), vec![record(99)]);
    }

    #[test]
    fn a_torn_last_record_is_dropped_and_the_ones_before_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let mut spool = Spool::open(dir.path(), 1024 * 1024).expect("open");
            for n in 0..5 {
                spool.push(&record(n)).expect("room");
            }
        }
        let path = fs::read_dir(dir.path())
            .expect("read")
            .next()
            .expect("one segment")
            .expect("entry")
            .path();
        let whole = fs::read(&path).expect("read");
        // A crash in the middle of the sixth record's write.
        let torn = encode(&record(5));
        let mut bytes = whole.clone();
        bytes.extend_from_slice(&torn[..torn.len() / 2]);
        fs::write(&path, &bytes).expect("write");
        let mut spool = Spool::open(dir.path(), 1024 * 1024).expect("reopen");
        assert_eq!(drain(&mut spool), (0..5).map(record).collect::<Vec<_>>());
        // A damaged byte inside a record ends the file there too.
        let mut bytes = whole;
        let second = encode(&record(0)).len() + HEADER + 3;
        bytes[second] ^= 0xff;
        fs::write(dir.path().join(format!("{:020}.seg", 100)), &bytes).expect("write");
        let mut spool = Spool::open(dir.path(), 1024 * 1024).expect("reopen");
        assert_eq!(drain(&mut spool), vec![record(0)]);
        // Only a header, or nothing at all: no record, no panic.
        for junk in [&b"\x05\x00"[..], &[0xff; 8][..], &[][..]] {
            assert!(decode_all(junk).is_empty());
        }
    }

    #[test]
    fn the_directory_is_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool_dir = dir.path().join("spool");
        fs::create_dir(&spool_dir).expect("mkdir");
        fs::set_permissions(&spool_dir, fs::Permissions::from_mode(0o755)).expect("chmod");
        Spool::open(&spool_dir, 1024).expect("open");
        let mode = fs::metadata(&spool_dir).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}
