//! Recordings: the decoded, enriched event stream saved while monitoring (`--record FILE`) and
//! played back later through the current rules (`--replay FILE --speed N`), without root and
//! without loading any eBPF program.
//!
//! Format (docs/history.md): JSON lines. The first line is a [`Header`]
//! (`{"format":"secmon-recording","version":1,...}`); every other line is one [`Event`] as
//! `--json` prints it, taken *before* analysis (its `analysis` is the empty verdict and is
//! ignored on replay). A file name ending in `.zst` is written zstd-compressed; reading detects
//! compression by its magic number. Plain `--json` output (no header) replays too.
//!
//! Replay: [`Replay`] groups a [`Recording`]'s events into batches with the time each is due
//! (from the recorded timestamps, divided by the [`Speed`]); [`feed`] sends them into a channel
//! at those times, which is what the `--json` replay and the TUI consume.
//!
//! A recording handed to `--replay` may come from anyone, so reading it is bounded like live
//! capture is: a line longer than [`MAX_LINE_BYTES`] ends the replay with an error, a compressed
//! stream may not expand past [`decompressed_limit`] (a zstd bomb of blank lines would
//! otherwise keep a replay busy forever), every string and list of an event is cut to what the
//! live capture can produce ([`clamp_to_live_limits`]), and no pause between two events lasts
//! longer than [`MAX_GAP`]. Messages quote the file's text raw; they are escaped where they
//! are shown (`sanitize::for_terminal` on stderr, the UI's own cleaning on screen).
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::event::{Analysis, Event, SharedStr, parse_ip};
use crate::output::event_json::write_event;
use crate::output::stats::is_stats_record;
use crate::secure_fs;

/// The `format` value of a recording's header line.
pub const FORMAT_NAME: &str = "secmon-recording";
/// The format version this build writes; it reads this and older.
pub const FORMAT_VERSION: u32 = 1;
/// Events a replay batch holds at most.
pub const MAX_BATCH: usize = 4096;
/// Events due within this much replay time of a batch's first event go in the same batch
/// (the live pipeline's reader drains every 10 ms too).
pub const BATCH_WINDOW: Duration = Duration::from_millis(10);
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
/// The longest line a recording may have (an event of the live capture at its limits is far
/// below this: about 100 KiB).
pub const MAX_LINE_BYTES: usize = 1 << 20;
/// The longest pause a replay makes between two events, in replay time: a recording whose
/// events are a day apart replays without waiting a day.
pub const MAX_GAP: Duration = Duration::from_secs(1);
/// A compressed recording may expand to this many times its size on disk …
pub const MAX_COMPRESSION_RATIO: u64 = 1000;
/// … and always to at least this much (tiny recordings compress badly).
pub const MIN_DECOMPRESSED_LIMIT: u64 = 64 << 20;

/// What the live capture can put in a field, in bytes (see [`clamp_to_live_limits`]).
mod live_limits {
    use crate::enrich::{enricher, proctable};
    use crate::paths;

    /// comm, the parent's and the ancestors' names: the kernel's `TASK_COMM_LEN` less the NUL.
    pub const NAME: usize = monitor_common::COMM_LEN - 1;
    /// Resolved paths (exe, file_path, new_path): Linux's `PATH_MAX`.
    pub const PATH: usize = paths::MAX_RESOLVED_LEN;
    pub const ARGS: usize = proctable::MAX_ARGS;
    pub const ARG: usize = proctable::MAX_ARG_LEN;
    /// argv joined by spaces.
    pub const CMDLINE: usize = ARGS * (ARG + 1);
    pub const ANCESTORS: usize = enricher::MAX_ANCESTORS;
    /// User names (Linux's `LOGIN_NAME_MAX`), symbolic flags, syscall and request names.
    pub const WORD: usize = 256;
    /// A BPF program's name: `BPF_OBJ_NAME_LEN` less the NUL.
    pub const BPF_NAME: usize = 15;
    /// Module parameters as the kernel copies them.
    pub const PARAMS: usize = monitor_common::ARG_LEN;
}

/// The first line of a recording.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub format: String,
    pub version: u32,
    /// When recording started.
    pub created: DateTime<Utc>,
    /// The secmon version that recorded it.
    #[serde(default)]
    pub secmon_version: String,
    /// The machine it was recorded on.
    #[serde(default)]
    pub host: String,
}

impl Header {
    pub fn new(created: DateTime<Utc>) -> Header {
        Header {
            format: FORMAT_NAME.to_string(),
            version: FORMAT_VERSION,
            created,
            secmon_version: env!("CARGO_PKG_VERSION").to_string(),
            host: hostname(),
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("{}: {error}", path.display())]
    Io { path: PathBuf, error: io::Error },
    #[error("{}:{line}: not a secmon event: {message}", path.display())]
    BadLine {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{}: recording format version {found} is newer than this secmon reads ({FORMAT_VERSION})", path.display())]
    TooNew { path: PathBuf, found: u32 },
    #[error("{}: the recording is empty", path.display())]
    Empty { path: PathBuf },
    /// The file ends in the middle of an event (the recorder was killed): what came before
    /// it was read.
    #[error("{}:{line}: the recording ends abruptly (the recorder did not stop cleanly); {events} events were read before it", path.display())]
    Truncated {
        path: PathBuf,
        line: usize,
        events: u64,
    },
    /// A line past [`MAX_LINE_BYTES`]: not something secmon wrote.
    #[error("{}:{line}: the line is longer than {} MiB: not a secmon recording, or a damaged one; {events} events were read before it", path.display(), MAX_LINE_BYTES >> 20)]
    LineTooLong {
        path: PathBuf,
        line: usize,
        events: u64,
    },
    /// The compressed stream expands past [`decompressed_limit`].
    #[error("{}: the compressed recording expands to more than {} MiB ({MAX_COMPRESSION_RATIO} times its size): refused as a decompression bomb; {events} events were read before it", path.display(), limit >> 20)]
    TooLarge {
        path: PathBuf,
        limit: u64,
        events: u64,
    },
}

enum Sink {
    Plain(BufWriter<File>),
    Zstd(zstd::stream::write::Encoder<'static, BufWriter<File>>),
}

impl Sink {
    fn writer(&mut self) -> &mut dyn Write {
        match self {
            Sink::Plain(w) => w,
            Sink::Zstd(w) => w,
        }
    }
}

/// Recorded lines waiting for the recording's writer thread, at most. Past it a batch is
/// dropped and counted ([`Recorder::dropped`]): a slow disk or compression loses recorded
/// events, never the pipeline's time.
pub const RECORDING_QUEUE_BYTES: usize = 16 << 20;

/// What the writer thread and the pipeline share.
#[derive(Default)]
struct RecorderShared {
    /// Bytes queued for the thread.
    queued: AtomicUsize,
    /// Events the thread has written.
    written: AtomicU64,
    /// The first write error; the thread stops writing there.
    error: Mutex<Option<io::Error>>,
}

impl RecorderShared {
    fn take_error(&self) -> Option<io::Error> {
        self.error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}

/// Writes a recording: the header at creation, then one line per event. Lines are made on the
/// caller's thread (the pipeline's: cheap) and written, compressed, by a thread of its own
/// behind a queue bounded in bytes, so the disk and zstd never slow capture.
pub struct Recorder {
    path: PathBuf,
    /// Lines of the current batch, handed to the thread by [`Recorder::flush`].
    batch: Vec<u8>,
    batch_events: u64,
    queue: Option<mpsc::UnboundedSender<(Vec<u8>, u64)>>,
    shared: Arc<RecorderShared>,
    thread: Option<std::thread::JoinHandle<io::Result<()>>>,
    /// Events dropped because the queue was full.
    dropped: u64,
}

impl Recorder {
    /// Creates (truncating) `path`, mode `0600`: recordings hold command lines and paths.
    /// zstd-compressed when the name ends in `.zst`. A symbolic link, a FIFO or another
    /// non-regular file at `path` is refused ([`secure_fs::open_for_writing`]).
    pub fn create(path: &Path) -> Result<Recorder, RecordError> {
        let io_err = |error| RecordError::Io {
            path: path.to_path_buf(),
            error,
        };
        let file = secure_fs::open_for_writing(path, 0o600, secure_fs::Existing::Truncate)
            .map_err(io_err)?;
        let out = BufWriter::with_capacity(256 * 1024, file);
        let mut sink = if path.extension().is_some_and(|e| e == "zst") {
            Sink::Zstd(zstd::stream::write::Encoder::new(out, 3).map_err(io_err)?)
        } else {
            Sink::Plain(out)
        };
        let header = Header::new(Utc::now());
        serde_json::to_writer(sink.writer(), &header)
            .map_err(io::Error::other)
            .map_err(io_err)?;
        sink.writer().write_all(b"\n").map_err(io_err)?;
        let shared = Arc::new(RecorderShared::default());
        let (queue, batches) = mpsc::unbounded_channel();
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("secmon-record".to_string())
            .spawn(move || write_batches(sink, batches, &thread_shared))
            .map_err(io_err)?;
        Ok(Recorder {
            path: path.to_path_buf(),
            batch: Vec::with_capacity(64 * 1024),
            batch_events: 0,
            queue: Some(queue),
            shared,
            thread: Some(thread),
            dropped: 0,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Events written so far.
    pub fn events(&self) -> u64 {
        self.shared.written.load(Ordering::Acquire)
    }

    /// Events dropped so far because the writer was behind.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Appends one event (call it before analysis). An error is the writer's: the recording
    /// has stopped.
    pub fn write(&mut self, event: &Event) -> io::Result<()> {
        write_event(&mut self.batch, event);
        self.batch.push(b'\n');
        self.batch_events += 1;
        Ok(())
    }

    /// Hands the batch to the writer thread (once per batch), or drops and counts it when the
    /// queue is full. Returns the writer's error, if it has stopped.
    pub fn flush(&mut self) -> io::Result<()> {
        if let Some(error) = self.shared.take_error() {
            return Err(error);
        }
        if self.batch_events == 0 {
            return Ok(());
        }
        let bytes = self.batch.len();
        let events = std::mem::take(&mut self.batch_events);
        if self.shared.queued.load(Ordering::Acquire) + bytes > RECORDING_QUEUE_BYTES {
            self.dropped += events;
            self.batch.clear();
            return Ok(());
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(64 * 1024));
        self.shared.queued.fetch_add(bytes, Ordering::AcqRel);
        if let Some(queue) = &self.queue
            && queue.send((batch, events)).is_err()
        {
            self.dropped += events;
        }
        Ok(())
    }

    /// Hands over what is left, waits for the writer to write it and end the compressed
    /// stream; returns the number of events written.
    pub fn finish(mut self) -> io::Result<u64> {
        self.flush()?;
        self.queue = None;
        let finished = match self.thread.take() {
            Some(thread) => thread
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the recording's writer panicked"))),
            None => Ok(()),
        };
        finished?;
        Ok(self.events())
    }
}

/// The writer thread: batches to the sink, flushed after each; at the end, the stream is
/// finished. Stops at the first error (kept for the pipeline to report).
fn write_batches(
    mut sink: Sink,
    mut batches: mpsc::UnboundedReceiver<(Vec<u8>, u64)>,
    shared: &RecorderShared,
) -> io::Result<()> {
    crate::priority::lower_this_thread();
    while let Some((batch, events)) = batches.blocking_recv() {
        let written = sink
            .writer()
            .write_all(&batch)
            .and_then(|()| sink.writer().flush());
        shared.queued.fetch_sub(batch.len(), Ordering::AcqRel);
        if let Err(error) = written {
            let shown = io::Error::new(error.kind(), error.to_string());
            *shared
                .error
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(error);
            return Err(shown);
        }
        shared.written.fetch_add(events, Ordering::AcqRel);
    }
    match sink {
        Sink::Plain(mut w) => w.flush(),
        Sink::Zstd(w) => w.finish()?.flush(),
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        // Without `finish` (an error path): let the thread end on its own.
        self.queue = None;
    }
}

/// A recording being read, event by event.
pub struct Recording {
    path: PathBuf,
    lines: Box<dyn BufRead + Send>,
    header: Option<Header>,
    /// The first event, when the file has no header.
    first: Option<Event>,
    line: usize,
    events: u64,
    /// Events with a field cut to the live capture's limits.
    clamped: u64,
    buf: Vec<u8>,
    done: bool,
}

impl fmt::Debug for Recording {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recording")
            .field("path", &self.path)
            .field("header", &self.header)
            .field("line", &self.line)
            .finish_non_exhaustive()
    }
}

impl Recording {
    /// Opens a recording (plain or zstd) and reads its header.
    pub fn open(path: &Path) -> Result<Recording, RecordError> {
        let io_err = |error| RecordError::Io {
            path: path.to_path_buf(),
            error,
        };
        let file = File::open(path).map_err(io_err)?;
        let size = file.metadata().map_err(io_err)?.len();
        let mut file = BufReader::new(file);
        let compressed = file.fill_buf().map_err(io_err)?.starts_with(&ZSTD_MAGIC);
        let lines: Box<dyn BufRead + Send> = if compressed {
            let decoder = zstd::stream::read::Decoder::with_buffer(file).map_err(io_err)?;
            Box::new(BufReader::new(Limited::new(
                decoder,
                decompressed_limit(size),
            )))
        } else {
            Box::new(file)
        };
        Recording::from_reader(path, lines)
    }

    /// Reads a recording from any reader (`name` is used in messages).
    pub fn from_reader(
        name: &Path,
        lines: Box<dyn BufRead + Send>,
    ) -> Result<Recording, RecordError> {
        let mut recording = Recording {
            path: name.to_path_buf(),
            lines,
            header: None,
            first: None,
            line: 0,
            events: 0,
            clamped: 0,
            buf: Vec::new(),
            done: false,
        };
        let Some(first) = recording.next_line()? else {
            return Err(RecordError::Empty {
                path: name.to_path_buf(),
            });
        };
        let value: serde_json::Value =
            serde_json::from_str(&first).map_err(|e| recording.bad_line(e.to_string()))?;
        if value.get("format").is_some() {
            let header: Header =
                serde_json::from_value(value).map_err(|e| recording.bad_line(e.to_string()))?;
            if header.format != FORMAT_NAME {
                return Err(recording.bad_line(format!(
                    "the header's format is `{}`, not `{FORMAT_NAME}`",
                    header.format
                )));
            }
            if header.version > FORMAT_VERSION {
                return Err(RecordError::TooNew {
                    path: name.to_path_buf(),
                    found: header.version,
                });
            }
            recording.header = Some(header);
        } else if !is_stats_record(&value) {
            // `--json` output: no header, the first line is already an event.
            recording.first = Some(recording.event_from(value)?);
        }
        Ok(recording)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The header (`None` for plain `--json` output).
    pub fn header(&self) -> Option<&Header> {
        self.header.as_ref()
    }

    /// Events read so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Events read so far that had a field longer than the live capture allows (cut, and
    /// marked `truncated`).
    pub fn clamped(&self) -> u64 {
        self.clamped
    }

    fn bad_line(&self, message: String) -> RecordError {
        RecordError::BadLine {
            path: self.path.clone(),
            line: self.line,
            message,
        }
    }

    /// The next non-empty line, or `None` at the end. A last line without its newline that
    /// is not valid JSON, or a read error in a compressed stream, is a truncated recording.
    fn next_line(&mut self) -> Result<Option<String>, RecordError> {
        loop {
            let complete = match read_bounded_line(&mut *self.lines, &mut self.buf) {
                Ok(LineRead::End) => return Ok(None),
                Ok(LineRead::Line { complete }) => complete,
                Ok(LineRead::TooLong) => {
                    return Err(RecordError::LineTooLong {
                        path: self.path.clone(),
                        line: self.line + 1,
                        events: self.events,
                    });
                }
                Err(e) if e.get_ref().is_some_and(|inner| inner.is::<LimitReached>()) => {
                    return Err(RecordError::TooLarge {
                        path: self.path.clone(),
                        limit: e
                            .get_ref()
                            .and_then(|inner| inner.downcast_ref::<LimitReached>())
                            .map_or(0, |l| l.0),
                        events: self.events,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                    // A damaged compressed stream.
                    return Err(self.bad_line(e.to_string()));
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::UnexpectedEof | io::ErrorKind::Other
                    ) =>
                {
                    return Err(self.truncated(self.line + 1));
                }
                Err(error) => {
                    return Err(RecordError::Io {
                        path: self.path.clone(),
                        error,
                    });
                }
            };
            self.line += 1;
            let Ok(text) = std::str::from_utf8(&self.buf) else {
                return Err(self.bad_line("the line is not UTF-8 text".to_string()));
            };
            if !complete && serde_json::from_str::<serde::de::IgnoredAny>(text).is_err() {
                return Err(self.truncated(self.line));
            }
            let text = text.trim();
            if !text.is_empty() {
                return Ok(Some(text.to_string()));
            }
        }
    }

    fn truncated(&self, line: usize) -> RecordError {
        RecordError::Truncated {
            path: self.path.clone(),
            line,
            events: self.events,
        }
    }

    fn event_from(&mut self, value: serde_json::Value) -> Result<Event, RecordError> {
        let mut value = value;
        if let Some(map) = value.as_object_mut() {
            map.remove("analysis");
            map.remove("response");
        }
        let dropped_address = drop_unreadable_addresses(&mut value);
        let mut event: Event = match serde_json::from_value(with_empty_analysis(value)) {
            Ok(event) => event,
            Err(e) => return Err(self.bad_line(e.to_string())),
        };
        event.analysis = Analysis::default();
        if clamp_to_live_limits(&mut event) | dropped_address {
            event.truncated = true;
            self.clamped += 1;
        }
        self.events += 1;
        Ok(event)
    }

    /// The next event (its analysis reset), or `None` at the end.
    pub fn next_event(&mut self) -> Result<Option<Event>, RecordError> {
        if let Some(first) = self.first.take() {
            return Ok(Some(first));
        }
        if self.done {
            return Ok(None);
        }
        loop {
            let line = match self.next_line() {
                Ok(Some(line)) => line,
                Ok(None) => {
                    self.done = true;
                    return Ok(None);
                }
                Err(e) => {
                    self.done = true;
                    return Err(e);
                }
            };
            let value = serde_json::from_str(&line).map_err(|e| self.bad_line(e.to_string()))?;
            // `--json` output carries `stats` records between its events.
            if !is_stats_record(&value) {
                return self.event_from(value).map(Some);
            }
        }
    }
}

/// Removes a `source_ip` or `target_ip` text that is no IP address, which the live capture
/// cannot produce (when addresses were text, a recording could carry any; they are typed
/// now): the event is still replayed, without it and marked `truncated`, like a cut one.
/// True when one was removed.
fn drop_unreadable_addresses(value: &mut serde_json::Value) -> bool {
    let Some(map) = value.as_object_mut() else {
        return false;
    };
    let mut dropped = false;
    for key in ["source_ip", "target_ip"] {
        if let Some(serde_json::Value::String(text)) = map.get(key)
            && parse_ip(text).is_none()
        {
            map.remove(key);
            dropped = true;
        }
    }
    dropped
}

fn with_empty_analysis(mut value: serde_json::Value) -> serde_json::Value {
    if let Some(map) = value.as_object_mut() {
        // Serialising the default analysis cannot fail.
        if let Ok(analysis) = serde_json::to_value(Analysis::default()) {
            map.insert("analysis".to_string(), analysis);
        }
    }
    value
}

/// What [`read_bounded_line`] found.
enum LineRead {
    /// The end of the input, nothing read.
    End,
    /// A line (without its newline); `complete` is false for a last line without one.
    Line { complete: bool },
    /// A line longer than [`MAX_LINE_BYTES`] (what was read of it is discarded).
    TooLong,
}

/// Reads one line into `buf` (cleared first) without ever holding more than
/// [`MAX_LINE_BYTES`] of it: `BufRead::read_line` would buffer a newline-free file whole.
fn read_bounded_line(input: &mut dyn BufRead, buf: &mut Vec<u8>) -> io::Result<LineRead> {
    buf.clear();
    loop {
        let available = match input.fill_buf() {
            Ok(available) => available,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(if buf.is_empty() {
                LineRead::End
            } else {
                LineRead::Line { complete: false }
            });
        }
        let (chunk, newline) = match memchr::memchr(b'\n', available) {
            Some(at) => (&available[..at], true),
            None => (available, false),
        };
        if buf.len() + chunk.len() > MAX_LINE_BYTES {
            buf.clear();
            return Ok(LineRead::TooLong);
        }
        buf.extend_from_slice(chunk);
        let used = chunk.len() + usize::from(newline);
        input.consume(used);
        if newline {
            return Ok(LineRead::Line { complete: true });
        }
    }
}

/// How far a compressed recording of `compressed` bytes may expand.
pub fn decompressed_limit(compressed: u64) -> u64 {
    compressed
        .saturating_mul(MAX_COMPRESSION_RATIO)
        .max(MIN_DECOMPRESSED_LIMIT)
}

/// The error [`Limited`] returns once its limit is passed (carries the limit).
#[derive(Debug)]
struct LimitReached(u64);

impl fmt::Display for LimitReached {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "more than {} bytes", self.0)
    }
}

impl std::error::Error for LimitReached {}

/// A reader that fails once more than `limit` bytes came through it.
struct Limited<R> {
    inner: R,
    limit: u64,
    read: u64,
}

impl<R> Limited<R> {
    fn new(inner: R, limit: u64) -> Limited<R> {
        Limited {
            inner,
            limit,
            read: 0,
        }
    }
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.read > self.limit {
            return Err(io::Error::other(LimitReached(self.limit)));
        }
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.limit {
            return Err(io::Error::other(LimitReached(self.limit)));
        }
        Ok(n)
    }
}

/// Cuts `text` to at most `max` bytes, on a character boundary. True when it was cut.
fn cut(text: &mut String, max: usize) -> bool {
    if text.len() <= max {
        return false;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    true
}

fn cut_opt(text: &mut Option<String>, max: usize) -> bool {
    text.as_mut().is_some_and(|t| cut(t, max))
}

/// [`cut`] for a shared string: a new string only when it is cut.
fn cut_shared(text: &mut SharedStr, max: usize) -> bool {
    if text.len() <= max {
        return false;
    }
    let mut owned = text.to_string();
    cut(&mut owned, max);
    *text = owned.into();
    true
}

fn cut_shared_list(items: &mut Vec<SharedStr>, count: usize, each: usize) -> bool {
    let mut changed = items.len() > count;
    items.truncate(count);
    for item in items.iter_mut() {
        changed |= cut_shared(item, each);
    }
    changed
}

fn cut_list(items: &mut Vec<String>, count: usize, each: usize) -> bool {
    let mut changed = items.len() > count;
    items.truncate(count);
    for item in items.iter_mut() {
        changed |= cut(item, each);
    }
    changed
}

/// Cuts every string and list of a replayed event to what the live capture can produce
/// (`live_limits`), so a crafted recording cannot feed the rules, the UI or the history more
/// than a real kernel event could. A cut event is marked `truncated`, as the kernel marks its
/// own cut strings. True when anything was cut.
pub fn clamp_to_live_limits(event: &mut Event) -> bool {
    use live_limits as max;
    let mut cut_any = false;
    for name in [&mut event.process, &mut event.parent_process] {
        cut_any |= cut_shared(name, max::NAME);
    }
    cut_any |= cut_shared_list(&mut event.ancestors, max::ANCESTORS, max::NAME);
    cut_any |= cut_shared(&mut event.exe, max::PATH);
    cut_any |= cut_shared(&mut event.cmdline, max::CMDLINE);
    cut_any |= cut_shared(&mut event.user, max::WORD);
    if let Some(argv) = &mut event.argv {
        cut_any |= cut_list(argv, max::ARGS, max::ARG);
    }
    for path in [&mut event.file_path, &mut event.new_path] {
        cut_any |= cut_opt(path, max::PATH);
    }
    for word in [&mut event.flags, &mut event.syscall] {
        cut_any |= word.as_mut().is_some_and(|w| cut_shared(w, max::WORD));
    }
    for word in [&mut event.ptrace_request, &mut event.protocol] {
        cut_any |= cut_opt(word, max::WORD);
    }
    cut_any |= cut_opt(&mut event.bpf_prog_name, max::BPF_NAME);
    cut_any |= cut_opt(&mut event.module_params, max::PARAMS);
    if let Some(ms) = event.duration_ms
        && (ms.is_nan() || ms < 0.0)
    {
        event.duration_ms = Some(0.0);
        cut_any = true;
    }
    if cut_any {
        event.truncated = true;
    }
    cut_any
}

impl Iterator for Recording {
    type Item = Result<Event, RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_event().transpose()
    }
}

/// How fast a replay runs: a multiple of real time, or as fast as possible.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Speed {
    Factor(f64),
    Max,
}

impl Default for Speed {
    fn default() -> Self {
        Speed::Factor(1.0)
    }
}

impl FromStr for Speed {
    type Err = String;

    fn from_str(text: &str) -> Result<Speed, String> {
        let t = text.trim().to_ascii_lowercase();
        if t == "max" {
            return Ok(Speed::Max);
        }
        let number = t.strip_suffix('x').unwrap_or(&t);
        match number.parse::<f64>() {
            Ok(f) if f.is_finite() && f > 0.0 && f <= 1e6 => Ok(Speed::Factor(f)),
            _ => Err(format!(
                "`{text}` is not a speed: give a factor such as 1, 2 or 10 (times real time), \
                 or max"
            )),
        }
    }
}

impl fmt::Display for Speed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Speed::Max => f.write_str("max"),
            Speed::Factor(x) => write!(f, "{x}x"),
        }
    }
}

/// Events due together: `at` is when, counted from the start of the replay.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplayBatch {
    pub at: Duration,
    pub events: Vec<Event>,
}

/// A recording cut into timed batches (an iterator; no waiting happens here).
#[derive(Debug)]
pub struct Replay {
    recording: Recording,
    speed: Speed,
    /// The latest recorded timestamp so far.
    latest_ns: Option<i64>,
    last_at: Duration,
    peeked: Option<Event>,
    error: Option<RecordError>,
}

impl Replay {
    pub fn new(recording: Recording, speed: Speed) -> Replay {
        Replay {
            recording,
            speed,
            latest_ns: None,
            last_at: Duration::ZERO,
            peeked: None,
            error: None,
        }
    }

    /// Opens `path` for replay at `speed`.
    pub fn open(path: &Path, speed: Speed) -> Result<Replay, RecordError> {
        Ok(Replay::new(Recording::open(path)?, speed))
    }

    pub fn recording(&self) -> &Recording {
        &self.recording
    }

    pub fn speed(&self) -> Speed {
        self.speed
    }

    /// When `event` is due: the previous event's due time plus the recorded gap between them
    /// divided by the speed, but at most [`MAX_GAP`]. Never earlier than the previous event
    /// (recorded timestamps from different CPUs can be slightly out of order).
    fn due(&mut self, event: &Event) -> Duration {
        let Speed::Factor(factor) = self.speed else {
            return Duration::ZERO;
        };
        let ns = crate::storage::to_ns(event.timestamp);
        let previous = *self.latest_ns.get_or_insert(ns);
        let gap_ns = ns.saturating_sub(previous).max(0) as f64 / factor;
        let gap = Duration::from_nanos(gap_ns.min(MAX_GAP.as_nanos() as f64) as u64);
        self.latest_ns = Some(previous.max(ns));
        self.last_at = self.last_at.saturating_add(gap.min(MAX_GAP));
        self.last_at
    }

    fn next_event(&mut self) -> Result<Option<Event>, RecordError> {
        match self.peeked.take() {
            Some(event) => Ok(Some(event)),
            None => self.recording.next_event(),
        }
    }

    /// The next batch, or `None` at the end of the recording. An error (a bad line, a cut
    /// file) comes after the batch of the events before it.
    pub fn next_batch(&mut self) -> Result<Option<ReplayBatch>, RecordError> {
        if let Some(error) = self.error.take() {
            return Err(error);
        }
        let Some(first) = self.next_event()? else {
            return Ok(None);
        };
        let at = self.due(&first);
        let mut events = vec![first];
        while events.len() < MAX_BATCH {
            let event = match self.next_event() {
                Ok(Some(event)) => event,
                Ok(None) => break,
                Err(error) => {
                    self.error = Some(error);
                    break;
                }
            };
            let due = self.due(&event);
            if due > at + BATCH_WINDOW {
                // Due later: it starts the next batch (its due time is already recorded in
                // last_at, which only ever grows).
                self.peeked = Some(event);
                break;
            }
            events.push(event);
        }
        Ok(Some(ReplayBatch { at, events }))
    }
}

impl Iterator for Replay {
    type Item = Result<ReplayBatch, RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_batch().transpose()
    }
}

/// What [`feed`] did.
#[derive(Clone, Debug, Default)]
pub struct ReplaySummary {
    pub events: u64,
    pub batches: u64,
    /// Events with a field cut to the live capture's limits ([`clamp_to_live_limits`]).
    pub clamped: u64,
    /// The recording ended abruptly or had a bad line (events before it were replayed).
    pub error: Option<String>,
}

/// Sends the replay's batches into `tx` at their due times (from now). Ends at the end of the
/// recording, or when the receiver is dropped. The events are not analysed: the consumer runs
/// them through its [`crate::rules::Evaluator`], as it would kernel events.
pub async fn feed(mut replay: Replay, tx: mpsc::Sender<Vec<Event>>) -> ReplaySummary {
    let start = tokio::time::Instant::now();
    let mut summary = ReplaySummary::default();
    loop {
        let batch = match replay.next_batch() {
            Ok(Some(batch)) => batch,
            Ok(None) => break,
            Err(e) => {
                summary.error = Some(e.to_string());
                break;
            }
        };
        if batch.at > Duration::ZERO {
            tokio::time::sleep_until(start + batch.at).await;
        }
        let n = batch.events.len() as u64;
        if tx.send(batch.events).await.is_err() {
            break;
        }
        summary.events += n;
        summary.batches += 1;
    }
    summary.clamped = replay.recording().clamped();
    summary
}

/// Starts [`feed`] on the current tokio runtime: the receiving end gets `Vec<Event>` batches
/// (not yet analysed) at the recording's pace; the task's result says how it ended.
pub fn spawn_replay(
    replay: Replay,
    capacity: usize,
) -> (
    mpsc::Receiver<Vec<Event>>,
    tokio::task::JoinHandle<ReplaySummary>,
) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    (rx, tokio::spawn(feed(replay, tx)))
}

/// Reads every event of a recording (for tests and tools).
pub fn read_all(path: &Path) -> Result<(Option<Header>, Vec<Event>), RecordError> {
    let mut recording = Recording::open(path)?;
    let mut events = Vec::new();
    while let Some(event) = recording.next_event()? {
        events.push(event);
    }
    Ok((recording.header.clone(), events))
}

/// Whether a file starts like a zstd stream (used to name compressed recordings in messages).
pub fn is_compressed(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok_and(|()| magic == ZSTD_MAGIC)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::event::EventType;

    fn event(ms: i64, pid: u32) -> Event {
        let mut e = Event::new(
            EventType::ProcessExec,
            Utc.timestamp_millis_opt(1_780_000_000_000 + ms)
                .single()
                .expect("valid"),
        );
        e.pid = pid;
        e.process = format!("p{pid}").into();
        e.cmdline = "sh -c 'echo \u{1b}[31m'".into();
        e
    }

    fn record(path: &Path, events: &[Event]) {
        let mut r = Recorder::create(path).expect("create");
        for e in events {
            r.write(e).expect("write");
        }
        assert_eq!(r.finish().expect("finish"), events.len() as u64);
    }

    #[test]
    fn plain_and_compressed_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut events: Vec<Event> = (0..50).map(|i| event(i * 3, i as u32)).collect();
        events[3].analysis.label = "stale verdict".to_string();
        for name in ["rec.jsonl", "rec.jsonl.zst"] {
            let path = dir.path().join(name);
            record(&path, &events);
            assert_eq!(is_compressed(&path), name.ends_with(".zst"));
            let mode = std::fs::metadata(&path).expect("meta").permissions();
            assert_eq!(
                std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
                0o600
            );
            let (header, back) = read_all(&path).expect("read");
            let header = header.expect("header");
            assert_eq!(header.format, FORMAT_NAME);
            assert_eq!(header.version, FORMAT_VERSION);
            assert_eq!(back.len(), events.len());
            // Analyses are reset on reading.
            assert_eq!(back[3].analysis, Analysis::default());
            let mut expected = events.clone();
            expected[3].analysis = Analysis::default();
            assert_eq!(back, expected);
        }
    }

    #[test]
    fn batches_handed_to_the_writer_thread_are_all_written_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("batches.jsonl.zst");
        let mut r = Recorder::create(&path).expect("create");
        let mut expected = Vec::new();
        for batch in 0..20u32 {
            for i in 0..500u32 {
                let e = event(i64::from(batch * 500 + i), batch * 500 + i);
                r.write(&e).expect("write");
                expected.push(e);
            }
            r.flush().expect("flush");
        }
        assert_eq!(r.dropped(), 0);
        assert_eq!(r.finish().expect("finish"), 10_000);
        let (_, back) = read_all(&path).expect("read");
        let pids: Vec<u32> = back.iter().map(|e| e.pid).collect();
        assert_eq!(pids, (0..10_000).collect::<Vec<u32>>());
    }

    #[test]
    fn json_output_without_header_replays() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.jsonl");
        let mut text = String::new();
        for i in 0..3 {
            let mut e = event(i, 7);
            e.analysis.risk_score = 0.9;
            text.push_str(&serde_json::to_string(&e).expect("json"));
            text.push('\n');
        }
        std::fs::write(&path, text).expect("write");
        let (header, events) = read_all(&path).expect("read");
        assert!(header.is_none());
        assert_eq!(events.len(), 3);
        assert!(events.iter().all(|e| e.analysis.risk_score == 0.0));
    }

    #[test]
    fn json_output_with_stats_records_replays_only_the_events() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.jsonl");
        let stats = |last| {
            let record = crate::output::stats::StatsRecord::new(
                1,
                1,
                crate::losses::LossCounts::default(),
                Duration::ZERO,
                last,
            );
            serde_json::to_string(&record).expect("json")
        };
        let event = |i| serde_json::to_string(&event(i, 7)).expect("json");
        // A stats record first (a quiet first second), between events, and last.
        let text = format!(
            "{}\n{}\n{}\n{}\n{}\n",
            stats(false),
            event(0),
            stats(false),
            event(1),
            stats(true)
        );
        std::fs::write(&path, text).expect("write");
        let (header, events) = read_all(&path).expect("read");
        assert!(header.is_none());
        assert_eq!(events.len(), 2);
    }

    #[test]
    fn bad_files_give_clear_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("r.jsonl");
        let write = |text: &str| std::fs::write(&path, text).expect("write");

        write("");
        assert!(matches!(
            Recording::open(&path),
            Err(RecordError::Empty { .. })
        ));
        write(
            "{\"format\":\"secmon-recording\",\"version\":9,\"created\":\"2026-01-01T00:00:00Z\"}\n",
        );
        let e = Recording::open(&path).expect_err("too new");
        assert!(e.to_string().contains("version 9 is newer"), "{e}");
        write("{\"format\":\"pcap\",\"version\":1,\"created\":\"2026-01-01T00:00:00Z\"}\n");
        let e = Recording::open(&path).expect_err("other format");
        assert!(e.to_string().ends_with("r.jsonl:1: not a secmon event: the header's format is `pcap`, not `secmon-recording`"), "{e}");
        write("hello\n");
        let e = Recording::open(&path).expect_err("not json");
        assert!(
            e.to_string().contains("r.jsonl:1: not a secmon event"),
            "{e}"
        );

        let header = serde_json::to_string(&Header::new(Utc::now())).expect("json");
        let good = serde_json::to_string(&event(0, 1)).expect("json");
        write(&format!("{header}\n{good}\n{{\"event_type\":\"nope\"}}\n"));
        let mut r = Recording::open(&path).expect("open");
        assert!(r.next_event().expect("first").is_some());
        let e = r.next_event().expect_err("bad event");
        assert!(
            e.to_string().contains("r.jsonl:3: not a secmon event"),
            "{e}"
        );

        // Killed mid-line: the events before are read, then a clear "ends abruptly".
        write(&format!("{header}\n{good}\n{}", &good[..20]));
        let mut r = Recording::open(&path).expect("open");
        assert!(r.next_event().expect("first").is_some());
        let e = r.next_event().expect_err("truncated");
        assert!(
            matches!(
                e,
                RecordError::Truncated {
                    line: 3,
                    events: 1,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(r.next_event().expect("done").is_none());
    }

    #[test]
    fn truncated_compressed_recording() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("r.jsonl.zst");
        let events: Vec<Event> = (0..2000).map(|i| event(i, i as u32)).collect();
        record(&path, &events);
        let bytes = std::fs::read(&path).expect("read");
        std::fs::write(&path, &bytes[..bytes.len() - 40]).expect("cut");
        let mut r = Recording::open(&path).expect("open");
        let mut n = 0;
        let error = loop {
            match r.next_event() {
                Ok(Some(_)) => n += 1,
                Ok(None) => panic!("a cut zstd stream must not end cleanly"),
                Err(e) => break e,
            }
        };
        assert!(n > 0);
        assert!(
            matches!(
                error,
                RecordError::Truncated { .. } | RecordError::BadLine { .. }
            ),
            "{error:?}"
        );
    }

    #[test]
    fn speeds() {
        assert_eq!("max".parse::<Speed>(), Ok(Speed::Max));
        assert_eq!("MAX".parse::<Speed>(), Ok(Speed::Max));
        assert_eq!("2".parse::<Speed>(), Ok(Speed::Factor(2.0)));
        assert_eq!("10x".parse::<Speed>(), Ok(Speed::Factor(10.0)));
        assert_eq!("0.5".parse::<Speed>(), Ok(Speed::Factor(0.5)));
        for bad in ["0", "-1", "fast", "inf", "nan", ""] {
            let e = bad.parse::<Speed>().expect_err(bad);
            assert!(e.contains("1, 2 or 10"), "{e}");
        }
        assert_eq!(Speed::Factor(2.0).to_string(), "2x");
    }

    fn batches(events: &[Event], speed: Speed) -> Vec<(Duration, Vec<u32>)> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("r.jsonl");
        record(&path, events);
        Replay::open(&path, speed)
            .expect("open")
            .map(|b| {
                let b = b.expect("batch");
                (b.at, b.events.iter().map(|e| e.pid).collect())
            })
            .collect()
    }

    #[test]
    fn batches_follow_the_recorded_times() {
        // ms: 0, 5, 30, 31, 1000, and one out of order (990 after 1000).
        let events: Vec<Event> = [(0, 1), (5, 2), (30, 3), (31, 4), (1000, 5), (990, 6)]
            .into_iter()
            .map(|(ms, pid)| event(ms, pid))
            .collect();
        let ms = Duration::from_millis;
        assert_eq!(
            batches(&events, Speed::Factor(1.0)),
            vec![
                (ms(0), vec![1, 2]),
                (ms(30), vec![3, 4]),
                (ms(1000), vec![5, 6]),
            ]
        );
        assert_eq!(
            batches(&events, Speed::Factor(10.0)),
            vec![(ms(0), vec![1, 2, 3, 4]), (ms(100), vec![5, 6])]
        );
        assert_eq!(
            batches(&events, Speed::Max),
            vec![(Duration::ZERO, vec![1, 2, 3, 4, 5, 6])]
        );
        let many: Vec<Event> = (0..(MAX_BATCH as i64 + 10))
            .map(|i| event(0, i as u32))
            .collect();
        let b = batches(&many, Speed::Max);
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].1.len(), MAX_BATCH);
    }

    #[test]
    fn a_cut_recording_replays_up_to_the_cut() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("r.jsonl");
        record(&path, &[event(0, 1), event(0, 2), event(0, 3)]);
        let text = std::fs::read_to_string(&path).expect("read");
        std::fs::write(&path, &text[..text.len() - 30]).expect("cut");
        let mut replay = Replay::open(&path, Speed::Max).expect("open");
        let batch = replay
            .next_batch()
            .expect("the events before the cut")
            .expect("a batch");
        assert_eq!(
            batch.events.iter().map(|e| e.pid).collect::<Vec<_>>(),
            vec![1, 2]
        );
        let e = replay.next_batch().expect_err("then the error");
        assert!(
            matches!(
                e,
                RecordError::Truncated {
                    line: 4,
                    events: 2,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(replay.next_batch().expect("end").is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn feed_waits_for_due_times() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("r.jsonl");
        record(&path, &[event(0, 1), event(2000, 2)]);
        let replay = Replay::open(&path, Speed::Factor(2.0)).expect("open");
        let (mut rx, task) = spawn_replay(replay, 4);
        let start = tokio::time::Instant::now();
        assert_eq!(rx.recv().await.expect("first")[0].pid, 1);
        assert_eq!(rx.recv().await.expect("second")[0].pid, 2);
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        assert!(rx.recv().await.is_none());
        let summary = task.await.expect("task");
        assert_eq!((summary.events, summary.batches), (2, 2));
        assert!(summary.error.is_none());
    }

    /// A recording: the header, then `lines` as they are.
    fn write_lines(path: &Path, lines: &[String]) {
        let header = serde_json::to_string(&Header::new(Utc::now())).expect("json");
        let mut text = header + "\n";
        for line in lines {
            text.push_str(line);
            text.push('\n');
        }
        std::fs::write(path, text).expect("write");
    }

    #[test]
    fn a_line_longer_than_the_bound_is_refused_without_reading_it_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("long.jsonl");
        let good = serde_json::to_string(&event(0, 1)).expect("json");
        let mut long = event(0, 2);
        long.cmdline = "a".repeat(MAX_LINE_BYTES).into();
        let long = serde_json::to_string(&long).expect("json");
        write_lines(&path, &[good.clone(), long, good]);
        let mut r = Recording::open(&path).expect("open");
        assert!(r.next_event().expect("first").is_some());
        let e = r.next_event().expect_err("too long");
        assert!(
            matches!(
                e,
                RecordError::LineTooLong {
                    line: 3,
                    events: 1,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains("longer than 1 MiB"), "{e}");
        assert!(r.next_event().expect("ends there").is_none());

        // No newline at all (a device, random bytes): the same error, not a buffer the size
        // of the file.
        std::fs::write(&path, vec![b'x'; 3 * MAX_LINE_BYTES]).expect("write");
        let e = Recording::open(&path).expect_err("no newline");
        assert!(
            matches!(e, RecordError::LineTooLong { line: 1, .. }),
            "{e:?}"
        );
    }

    #[test]
    fn a_line_of_exactly_the_bound_is_read() {
        let mut input: &[u8] = &[b' '; MAX_LINE_BYTES];
        let mut buf = Vec::new();
        let read = read_bounded_line(&mut input, &mut buf).expect("read");
        assert!(matches!(read, LineRead::Line { complete: false }));
        assert_eq!(buf.len(), MAX_LINE_BYTES);
    }

    #[test]
    fn non_utf8_lines_are_bad_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bin.jsonl");
        std::fs::write(&path, b"{\"format\":\"\xff\xfe\"}\n").expect("write");
        let e = Recording::open(&path).expect_err("not UTF-8");
        assert!(
            e.to_string()
                .contains(":1: not a secmon event: the line is not UTF-8"),
            "{e}"
        );
    }

    /// A zstd frame of `lines` blank lines of almost [`MAX_LINE_BYTES`] each.
    fn blank_frame(lines: usize) -> Vec<u8> {
        let mut text = Vec::with_capacity(lines * MAX_LINE_BYTES);
        for _ in 0..lines {
            text.extend(std::iter::repeat_n(b' ', MAX_LINE_BYTES - 1));
            text.push(b'\n');
        }
        zstd::encode_all(&text[..], 3).expect("compress")
    }

    #[test]
    fn a_decompression_bomb_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bomb.jsonl.zst");
        let header = serde_json::to_string(&Header::new(Utc::now())).expect("json") + "\n";
        let mut bytes = zstd::encode_all(header.as_bytes(), 3).expect("compress");
        // 32 frames of 4 MiB: 128 MiB from a few kilobytes.
        let frame = blank_frame(4);
        for _ in 0..32 {
            bytes.extend_from_slice(&frame);
        }
        std::fs::write(&path, &bytes).expect("write");
        assert!(bytes.len() < 64 * 1024, "{} bytes", bytes.len());
        let mut r = Recording::open(&path).expect("the header reads");
        let e = r.next_event().expect_err("a bomb");
        assert!(
            matches!(e, RecordError::TooLarge { limit, events: 0, .. } if limit == MIN_DECOMPRESSED_LIMIT),
            "{e:?}"
        );
        assert!(e.to_string().contains("decompression bomb"), "{e}");
        assert!(r.next_event().expect("ends there").is_none());
    }

    #[test]
    fn the_decompressed_limit_scales_with_the_file() {
        assert_eq!(decompressed_limit(0), MIN_DECOMPRESSED_LIMIT);
        assert_eq!(
            decompressed_limit(1 << 30),
            (1 << 30) * MAX_COMPRESSION_RATIO
        );
        assert_eq!(decompressed_limit(u64::MAX), u64::MAX);
    }

    #[test]
    fn a_replayed_address_that_is_none_is_dropped_and_the_event_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("addresses.jsonl");
        let mut net = event(0, 1);
        net.event_type = EventType::NetConnect;
        net.target_port = Some(443);
        let mut odd = serde_json::to_value(&net).expect("json");
        odd["source_ip"] = serde_json::Value::from("localhost");
        odd["target_ip"] = serde_json::Value::from("[::1]");
        write_lines(&path, &[odd.to_string()]);
        let mut r = Recording::open(&path).expect("open");
        let e = r.next_event().expect("read").expect("an event");
        assert_eq!(e.source_ip, None);
        assert_eq!(e.target_ip, Some("::1".parse().expect("an address")));
        assert_eq!((e.target_port, e.truncated), (Some(443), true));
        assert_eq!((r.events(), r.clamped()), (1, 1));
    }

    #[test]
    fn replayed_fields_are_cut_to_the_live_limits() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("big.jsonl");
        let mut big = event(0, 1);
        big.process = "p".repeat(100).into();
        big.parent_process = "é".repeat(100).into();
        big.ancestors = vec!["x".repeat(40).into(); 50];
        big.exe = format!("/{}", "e".repeat(20_000)).into();
        big.argv = Some(vec!["a".repeat(10_000); 40]);
        big.cmdline = "c".repeat(200_000).into();
        big.user = "u".repeat(1000).into();
        big.file_path = Some("/".repeat(9000));
        big.new_path = Some("€".repeat(5000));
        big.flags = Some("O_".repeat(500).into());
        big.bpf_prog_name = Some("b".repeat(64));
        big.module_params = Some("m".repeat(1000));
        big.duration_ms = Some(-5.0);
        let small = event(1, 2);
        // Addresses are typed now: an overlong one can only come from a crafted line.
        let mut big_line = serde_json::to_value(&big).expect("json");
        big_line["target_ip"] = serde_json::Value::from("1".repeat(500));
        let lines = [
            big_line.to_string(),
            serde_json::to_string(&small).expect("json"),
        ];
        write_lines(&path, &lines);
        let mut r = Recording::open(&path).expect("open");
        let e = r.next_event().expect("read").expect("an event");
        assert_eq!(e.process.len(), 15);
        assert_eq!(
            e.parent_process,
            "é".repeat(7),
            "cut on a character boundary"
        );
        assert_eq!(e.ancestors.len(), 8);
        assert!(e.ancestors.iter().all(|a| a.len() == 15));
        assert_eq!(e.exe.len(), 4096);
        let argv = e.argv.as_ref().expect("argv");
        assert_eq!(argv.len(), 16);
        assert!(argv.iter().all(|a| a.len() == 4096));
        assert_eq!(e.cmdline.len(), 16 * 4097);
        assert_eq!(e.user.len(), 256);
        assert_eq!(e.file_path.as_deref().map(str::len), Some(4096));
        assert_eq!(e.new_path.as_deref().map(str::len), Some(4095));
        assert_eq!(e.flags.as_deref().map(str::len), Some(256));
        assert_eq!(e.target_ip, None, "500 digits are no address: dropped");
        assert_eq!(e.bpf_prog_name.as_deref().map(str::len), Some(15));
        assert_eq!(e.module_params.as_deref().map(str::len), Some(128));
        assert_eq!(e.duration_ms, Some(0.0));
        assert!(e.truncated, "a cut event is marked truncated");
        let e = r.next_event().expect("read").expect("an event");
        assert_eq!(e, small, "an event within the limits is untouched");
        assert_eq!((r.events(), r.clamped()), (2, 1));
    }

    #[test]
    fn long_pauses_are_cut_to_the_maximum_gap() {
        let day = 24 * 3600 * 1000;
        let events: Vec<Event> = [(0, 1), (day, 2), (day + 5, 3), (400 * day, 4), (0, 5)]
            .into_iter()
            .map(|(ms, pid)| event(ms, pid))
            .collect();
        let ms = Duration::from_millis;
        assert_eq!(
            batches(&events, Speed::Factor(1.0)),
            vec![
                (ms(0), vec![1]),
                (MAX_GAP, vec![2, 3]),
                (MAX_GAP * 2 + ms(5), vec![4, 5]),
            ]
        );
        // The cap is in replay time: at 0.001x, 5 ms recorded is 5 s, cut to 1 s.
        let events: Vec<Event> = [(0, 1), (5, 2)]
            .into_iter()
            .map(|(ms, pid)| event(ms, pid))
            .collect();
        assert_eq!(
            batches(&events, Speed::Factor(0.001)),
            vec![(ms(0), vec![1]), (MAX_GAP, vec![2])]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn feed_never_waits_longer_than_the_maximum_gap() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("r.jsonl");
        let year_ms = 365 * 24 * 3600 * 1000;
        record(&path, &[event(0, 1), event(year_ms, 2)]);
        let replay = Replay::open(&path, Speed::Factor(1.0)).expect("open");
        let (mut rx, task) = spawn_replay(replay, 4);
        let start = tokio::time::Instant::now();
        assert_eq!(rx.recv().await.expect("first")[0].pid, 1);
        assert_eq!(rx.recv().await.expect("second")[0].pid, 2);
        assert_eq!(start.elapsed(), MAX_GAP);
        assert!(rx.recv().await.is_none());
        task.await.expect("task");
    }
}
