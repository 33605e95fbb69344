//! One JSON object per event, newline-delimited.
//!
//! [`JsonLines`] writes straight to its writer. [`JsonOutput`] is what `--json` uses: the
//! pipeline serialises each batch into one buffer and hands it to a dedicated writer thread
//! through a queue bounded in bytes ([`OutputOptions::queue_bytes`]). When stdout does not keep
//! up (a stalled pipe, a stopped terminal) the queue fills and whole batches are dropped and
//! counted ([`Loss::OutputQueueFull`]): the pipeline never waits on stdout, so analysis,
//! enforcement, the history and signal handling go on. At stop the writer gets a bounded time
//! to write what is queued; what it could not write is counted too
//! ([`Loss::OutputUnwrittenAtStop`]).
use std::{
    io::{self, Write},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant},
};

use serde::Serialize;
use tokio::sync::{oneshot, watch};

use crate::{
    event::Event,
    losses::{Loss, Losses},
    output::event_json::{ContextCache, write_event_cached},
};

/// Bytes of lines [`JsonLines`] holds before writing them out.
const JSON_LINES_BUFFER: usize = 256 * 1024;

/// Events as JSON lines to a writer, buffered. The lines are serialised straight into the
/// buffer (a `BufWriter` would copy each line once more).
pub struct JsonLines<W: Write> {
    out: W,
    /// Lines not yet written to `out`.
    pending: Vec<u8>,
    /// Recent processes' context, written once per process.
    contexts: ContextCache,
}

impl<W: Write> JsonLines<W> {
    pub fn new(out: W) -> JsonLines<W> {
        JsonLines {
            out,
            pending: Vec::with_capacity(JSON_LINES_BUFFER),
            contexts: ContextCache::default(),
        }
    }

    pub fn write(&mut self, event: &Event) -> io::Result<()> {
        write_event_cached(&mut self.pending, event, &mut self.contexts);
        self.pending.push(b'\n');
        if self.pending.len() >= JSON_LINES_BUFFER {
            self.write_pending()?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.write_pending()?;
        self.out.flush()
    }

    /// Hands the pending lines to `out`. After an error they are dropped: the caller stops
    /// writing (a closed pipe), and a buffer kept for a dead output would only grow.
    fn write_pending(&mut self) -> io::Result<()> {
        let written = self.out.write_all(&self.pending);
        self.pending.clear();
        written
    }
}

impl<W: Write> Drop for JsonLines<W> {
    /// Writes what is pending, as the `BufWriter` it replaces did; an error has no one to go to.
    fn drop(&mut self) {
        let _ = self.write_pending();
    }
}

#[derive(Clone, Copy, Debug)]
pub struct OutputOptions {
    /// Bytes of JSON waiting for the writer thread; a batch that would go beyond is dropped.
    pub queue_bytes: usize,
}

impl Default for OutputOptions {
    fn default() -> Self {
        // About 10 000 events: several seconds of a busy machine, a short stall absorbed.
        OutputOptions {
            queue_bytes: 8 * 1024 * 1024,
        }
    }
}

/// What a batch's buffer starts with.
const BATCH_CAPACITY: usize = 256 * 1024;
/// Emptied batch buffers the writer thread hands back, so that the next batch is serialised
/// into memory already grown and mapped (a reader batch is a few MB of JSON: growing a fresh
/// buffer to that copied it four times over and faulted every page in again). At most this
/// many wait.
const SPARE_BATCHES: usize = 2;
/// A larger buffer is freed rather than handed back: one huge batch must not pin its memory.
const MAX_SPARE_BYTES: usize = 8 * 1024 * 1024;

/// One item of the queue: lines of JSON, and how many of them are events.
struct Chunk {
    bytes: Vec<u8>,
    events: u64,
}

/// What the pipeline and the writer thread share.
#[derive(Default)]
struct Shared {
    queued_bytes: AtomicUsize,
    queued_events: AtomicU64,
    written_events: AtomicU64,
    error: Mutex<Option<io::Error>>,
    /// Set when the stop's grace is over: the writer stops at the next line boundary, so
    /// whoever reads stdout never gets half a line when the process exits.
    abandon: AtomicBool,
    /// Slices written so far: a stop waits on while this moves.
    slices: AtomicU64,
}

/// How the output ended.
#[derive(Debug, Default)]
pub struct OutputSummary {
    /// Events written to the output.
    pub written: u64,
    /// Events accepted but never written: the writer was stalled (or failed) at stop.
    pub unwritten: u64,
    /// The write error that stopped the writer, if any (a broken pipe included).
    pub error: Option<io::Error>,
}

/// The `--json` output: a bounded queue and its writer thread (see the module documentation).
pub struct JsonOutput {
    tx: Option<mpsc::Sender<Chunk>>,
    shared: Arc<Shared>,
    options: OutputOptions,
    losses: Arc<Losses>,
    /// The batch being serialised.
    batch: Vec<u8>,
    /// Recent processes' context, written once per process.
    contexts: ContextCache,
    /// Buffers of written batches, back from the writer thread.
    spare: mpsc::Receiver<Vec<u8>>,
    batch_events: u64,
    /// Events accepted into the queue since start: each is before any later record in the
    /// stream.
    accepted: u64,
    /// Turns true when the writer thread stops on an error (a closed pipe, a full disk).
    stopped: watch::Receiver<bool>,
    done: Option<oneshot::Receiver<()>>,
    closed_at: Option<Instant>,
}

impl JsonOutput {
    /// Starts the writer thread on `out`.
    pub fn start<W: Write + Send + 'static>(
        out: W,
        options: OutputOptions,
        losses: Arc<Losses>,
    ) -> io::Result<JsonOutput> {
        let (tx, rx) = mpsc::channel::<Chunk>();
        let (spare_tx, spare) = mpsc::sync_channel(SPARE_BATCHES);
        let shared = Arc::new(Shared::default());
        let (stopped_tx, stopped) = watch::channel(false);
        let (done_tx, done) = oneshot::channel();
        let thread_shared = shared.clone();
        thread::Builder::new()
            .name("secmon-output".into())
            .spawn(move || {
                write_queue(out, &rx, &thread_shared, &stopped_tx, &spare_tx);
                let _ = done_tx.send(());
            })?;
        Ok(JsonOutput {
            tx: Some(tx),
            shared,
            options,
            losses,
            batch: Vec::with_capacity(BATCH_CAPACITY),
            contexts: ContextCache::default(),
            spare,
            batch_events: 0,
            accepted: 0,
            stopped,
            done: Some(done),
            closed_at: None,
        })
    }

    /// Serialises one event into the current batch.
    pub fn write(&mut self, event: &Event) -> io::Result<()> {
        write_event_cached(&mut self.batch, event, &mut self.contexts);
        self.batch.push(b'\n');
        self.batch_events += 1;
        Ok(())
    }

    /// Queues the current batch, or drops and counts it when the queue has no room. Never
    /// blocks.
    pub fn end_batch(&mut self) {
        if self.batch_events == 0 {
            self.batch.clear();
            return;
        }
        let next = self
            .spare
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(BATCH_CAPACITY));
        let bytes = std::mem::replace(&mut self.batch, next);
        let events = std::mem::take(&mut self.batch_events);
        if self.enqueue(bytes, events, false) {
            self.accepted += events;
        } else {
            self.losses.add(Loss::OutputQueueFull, events);
        }
    }

    /// Queues one record that is not an event (a `stats` record) when the queue has room;
    /// returns whether it did. `force` queues it whatever the room (the final record).
    pub fn write_record<T: Serialize>(&mut self, record: &T, force: bool) -> io::Result<bool> {
        let mut bytes = serde_json::to_vec(record).map_err(io::Error::other)?;
        bytes.push(b'\n');
        Ok(self.enqueue(bytes, 0, force))
    }

    fn enqueue(&mut self, bytes: Vec<u8>, events: u64, force: bool) -> bool {
        let Some(tx) = &self.tx else { return false };
        let len = bytes.len();
        let before = self.shared.queued_bytes.fetch_add(len, Ordering::AcqRel);
        if !force && before + len > self.options.queue_bytes {
            self.shared.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            return false;
        }
        self.shared
            .queued_events
            .fetch_add(events, Ordering::AcqRel);
        if tx.send(Chunk { bytes, events }).is_err() {
            // The writer thread has stopped (its error is kept): nothing will be written.
            self.shared.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            self.shared
                .queued_events
                .fetch_sub(events, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Events accepted for output since start (written, or still queued).
    pub fn accepted(&self) -> u64 {
        self.accepted
    }

    /// Events written to the output so far.
    pub fn written(&self) -> u64 {
        self.shared.written_events.load(Ordering::Acquire)
    }

    /// Resolves when the writer thread has stopped on an error (never otherwise). Borrows
    /// nothing, so it can wait in a `select!` beside branches that write.
    pub fn stopped(&self) -> impl Future<Output = ()> + use<> {
        let mut stopped = self.stopped.clone();
        async move {
            if stopped.wait_for(|stopped| *stopped).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Stops taking records: the writer thread writes what is queued and ends.
    pub fn close(&mut self) {
        self.end_batch();
        self.tx = None;
        self.closed_at.get_or_insert_with(Instant::now);
    }

    /// Closes the output and gives the writer until `grace` after [`JsonOutput::close`] to
    /// write what is queued; events it could not write are counted as
    /// [`Loss::OutputUnwrittenAtStop`]. The writer thread, if still blocked on a stalled
    /// output, is left behind (the process is ending).
    pub async fn finish(mut self, grace: Duration) -> OutputSummary {
        self.close();
        let deadline = self.closed_at.unwrap_or_else(Instant::now) + grace;
        if let Some(mut done) = self.done.take() {
            // `grace` is how long stdout may make no progress: a reader that keeps reading
            // gets the whole backlog (up to MAX_DRAIN), a stalled one holds up nothing.
            let give_up = Instant::now() + MAX_DRAIN;
            let mut deadline = deadline;
            let mut seen = self.shared.slices.load(Ordering::Acquire);
            loop {
                if tokio::time::timeout_at(deadline.into(), &mut done)
                    .await
                    .is_ok()
                {
                    break;
                }
                let now = self.shared.slices.load(Ordering::Acquire);
                if now == seen || Instant::now() >= give_up {
                    // Stop at a line boundary, which a reader that still reads reaches within
                    // one slice.
                    self.shared.abandon.store(true, Ordering::Release);
                    let _ = tokio::time::timeout(ABANDON_WAIT, done).await;
                    break;
                }
                seen = now;
                deadline = Instant::now() + grace;
            }
        }
        let unwritten = self.shared.queued_events.load(Ordering::Acquire);
        self.losses.add(Loss::OutputUnwrittenAtStop, unwritten);
        let error = self
            .shared
            .error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        OutputSummary {
            written: self.written(),
            unwritten,
            error,
        }
    }
}

/// The writer thread: writes chunks in order until the queue closes or a write fails. A chunk
/// counts as written only once all of it is; after a failure the rest stays counted as queued.
/// Written batch buffers go back to the pipeline through `spare` when it has room for them.
fn write_queue<W: Write>(
    mut out: W,
    rx: &mpsc::Receiver<Chunk>,
    shared: &Shared,
    stopped: &watch::Sender<bool>,
    spare: &mpsc::SyncSender<Vec<u8>>,
) {
    for chunk in rx {
        match write_lines(&mut out, &chunk.bytes, &shared.abandon, &shared.slices) {
            Ok(Written::All) => {}
            Ok(Written::Lines(lines)) => {
                // Abandoned at a line boundary: the lines written count, the rest stays queued.
                let events = lines.min(chunk.events);
                shared.written_events.fetch_add(events, Ordering::AcqRel);
                shared.queued_events.fetch_sub(events, Ordering::AcqRel);
                return;
            }
            Err(error) => {
                *shared
                    .error
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(error);
                stopped.send_replace(true);
                return;
            }
        }
        let Chunk { mut bytes, events } = chunk;
        let len = bytes.len();
        // Handed back before the chunk counts as written: whoever sees it written can count
        // on the buffer being back. Records (a few hundred bytes) are not worth it.
        if (BATCH_CAPACITY..=MAX_SPARE_BYTES).contains(&bytes.capacity()) {
            bytes.clear();
            let _ = spare.try_send(bytes);
        }
        shared.written_events.fetch_add(events, Ordering::AcqRel);
        shared.queued_events.fetch_sub(events, Ordering::AcqRel);
        shared.queued_bytes.fetch_sub(len, Ordering::AcqRel);
    }
}

/// A chunk goes to the output in slices of about this size, each ending at a line's end.
const SLICE_BYTES: usize = 64 * 1024;
/// The longest a stop waits for stdout to take the backlog while it keeps taking it.
const MAX_DRAIN: Duration = Duration::from_secs(5);
/// How long a stop waits, once its grace is over, for the writer to reach a line boundary.
const ABANDON_WAIT: Duration = Duration::from_millis(500);

enum Written {
    All,
    /// `abandon` was set: this many whole lines were written, then nothing more.
    Lines(u64),
}

/// Writes `bytes` (whole lines) in slices that end at a line's end, checking `abandon`
/// between them.
fn write_lines<W: Write>(
    out: &mut W,
    bytes: &[u8],
    abandon: &AtomicBool,
    slices: &AtomicU64,
) -> io::Result<Written> {
    let mut rest = bytes;
    let mut lines = 0u64;
    while !rest.is_empty() {
        if abandon.load(Ordering::Acquire) {
            return Ok(Written::Lines(lines));
        }
        let end = match memchr::memchr(b'\n', &rest[SLICE_BYTES.min(rest.len()) - 1..]) {
            Some(at) => SLICE_BYTES.min(rest.len()) + at,
            None => rest.len(),
        };
        let (slice, tail) = rest.split_at(end);
        out.write_all(slice)?;
        out.flush()?;
        lines += memchr::memchr_iter(b'\n', slice).count() as u64;
        slices.fetch_add(1, Ordering::AcqRel);
        rest = tail;
    }
    Ok(Written::All)
}

#[cfg(test)]
mod tests {
    use std::sync::Condvar;

    use chrono::DateTime;

    use super::*;
    use crate::event::EventType;

    #[test]
    fn an_abandoned_write_stops_at_a_line_boundary() {
        let line = format!("{{\"pad\":\"{}\"}}\n", "x".repeat(1000));
        let bytes = line.repeat(200);
        let abandon = AtomicBool::new(false);
        let mut all = Vec::new();
        assert!(matches!(
            write_lines(&mut all, bytes.as_bytes(), &abandon, &AtomicU64::new(0)),
            Ok(Written::All)
        ));
        assert_eq!(all, bytes.as_bytes());

        /// Sets `abandon` after its first write, as a stop's deadline would mid-chunk.
        struct StopAfterFirst<'a>(Vec<u8>, &'a AtomicBool);
        impl Write for StopAfterFirst<'_> {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.0.extend_from_slice(buf);
                self.1.store(true, Ordering::Release);
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let abandon = AtomicBool::new(false);
        let mut out = StopAfterFirst(Vec::new(), &abandon);
        let slices = AtomicU64::new(0);
        let Ok(Written::Lines(lines)) = write_lines(&mut out, bytes.as_bytes(), &abandon, &slices)
        else {
            panic!("not abandoned");
        };
        assert!(lines > 0 && lines < 200, "{lines}");
        assert_eq!(out.0.len(), lines as usize * line.len(), "whole lines only");
        assert!(out.0.ends_with(b"}\n"));
    }

    #[test]
    fn writes_one_line_per_event_with_escaped_control_characters() {
        let mut event = Event::new(EventType::FileOpen, DateTime::UNIX_EPOCH);
        event.file_path = Some("/tmp/\u{1b}[31mred\nline".to_string());
        let mut out = Vec::new();
        let mut sink = JsonLines::new(&mut out);
        sink.write(&event).expect("write");
        sink.write(&event).expect("write");
        sink.flush().expect("flush");
        drop(sink);
        let text = String::from_utf8(out).expect("utf8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].contains("\\u001b[31mred\\nline"));
        assert_eq!(lines[0], serde_json::to_string(&event).expect("json"));
        let back: Event = serde_json::from_str(lines[0]).expect("parse");
        assert_eq!(back, event);
    }

    #[test]
    fn json_lines_are_written_whole_once_the_buffer_fills_and_the_rest_at_drop() {
        let mut out = Vec::new();
        let mut sink = JsonLines::new(&mut out);
        let line = serde_json::to_string(&event()).expect("json") + "\n";
        let events = 2 * JSON_LINES_BUFFER / line.len();
        for _ in 0..events {
            sink.write(&event()).expect("write");
        }
        drop(sink);
        assert_eq!(out, line.repeat(events).into_bytes());
        let mut early = Vec::new();
        let mut sink = JsonLines::new(&mut early);
        for _ in 0..events {
            sink.write(&event()).expect("write");
        }
        let before_drop = sink.out.len();
        assert!(before_drop >= JSON_LINES_BUFFER, "{before_drop}");
        assert_eq!(before_drop % line.len(), 0);
    }

    /// Whether the valve is open, and what went through.
    type ValveState = Mutex<(bool, Vec<u8>)>;

    /// A writer that blocks until opened, then appends to a shared buffer.
    #[derive(Clone, Default)]
    struct Valve {
        state: Arc<(ValveState, Condvar)>,
    }

    impl Valve {
        fn open(&self) {
            let (lock, cv) = &*self.state;
            lock.lock().expect("lock").0 = true;
            cv.notify_all();
        }

        fn text(&self) -> String {
            String::from_utf8(self.state.0.lock().expect("lock").1.clone()).expect("utf8")
        }
    }

    impl Write for Valve {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let (lock, cv) = &*self.state;
            let mut state = lock.lock().expect("lock");
            while !state.0 {
                state = cv.wait(state).expect("wait");
            }
            state.1.extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn event() -> Event {
        Event::new(EventType::FileOpen, DateTime::UNIX_EPOCH)
    }

    #[test]
    fn the_writer_hands_written_batch_buffers_back() {
        let losses = Arc::new(Losses::new());
        let mut out =
            JsonOutput::start(io::sink(), OutputOptions::default(), losses).expect("start");
        let line = serde_json::to_vec(&event()).expect("json").len() + 1;
        let events = 2 * BATCH_CAPACITY / line;
        for _ in 0..events {
            out.write(&event()).expect("write");
        }
        let grown = out.batch.capacity();
        assert!(grown > BATCH_CAPACITY);
        out.end_batch();
        // Waits for the writer thread (a hang here is the failure, not a slow machine).
        while out.written() < events as u64 {
            thread::sleep(Duration::from_millis(1));
        }
        out.write(&event()).expect("write");
        out.end_batch();
        assert_eq!(out.batch.capacity(), grown);
        assert!(out.batch.is_empty());
        let summary = runtime().block_on(out.finish(Duration::from_secs(10)));
        assert_eq!(summary.written, events as u64 + 1);
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime")
    }

    #[test]
    fn a_stalled_output_drops_and_counts_instead_of_blocking() {
        let valve = Valve::default();
        let losses = Arc::new(Losses::new());
        let line = serde_json::to_vec(&event()).expect("json").len() + 1;
        // Room for three events' lines.
        let options = OutputOptions {
            queue_bytes: 3 * line,
        };
        let mut out = JsonOutput::start(valve.clone(), options, losses.clone()).expect("start");
        let mut sent = 0;
        for _ in 0..10 {
            out.write(&event()).expect("write");
            out.end_batch();
            sent += 1;
        }
        // The writer thread holds at most one chunk (blocked in write), the queue three: at
        // least six of the ten batches were dropped, none blocked this thread.
        let dropped = losses.get(Loss::OutputQueueFull);
        assert!(dropped >= 6, "dropped {dropped}");
        assert_eq!(out.accepted() + dropped, sent);
        valve.open();
        let summary = runtime().block_on(out.finish(Duration::from_secs(10)));
        assert_eq!(summary.written + dropped, sent);
        assert_eq!(summary.unwritten, 0);
        assert_eq!(valve.text().lines().count() as u64, summary.written);
    }

    #[test]
    fn what_a_stalled_output_never_wrote_is_counted_at_stop() {
        let valve = Valve::default();
        let losses = Arc::new(Losses::new());
        let mut out = JsonOutput::start(valve.clone(), OutputOptions::default(), losses.clone())
            .expect("start");
        for _ in 0..5 {
            out.write(&event()).expect("write");
        }
        out.end_batch();
        let started = std::time::Instant::now();
        let summary = runtime().block_on(out.finish(Duration::from_millis(50)));
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(summary.written, 0);
        assert_eq!(summary.unwritten, 5);
        assert_eq!(losses.get(Loss::OutputUnwrittenAtStop), 5);
        valve.open();
    }

    #[test]
    fn a_write_error_stops_the_writer_and_is_reported() {
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let losses = Arc::new(Losses::new());
        let mut out =
            JsonOutput::start(Closed, OutputOptions::default(), losses.clone()).expect("start");
        out.write(&event()).expect("write");
        out.end_batch();
        let rt = runtime();
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(10), out.stopped())
                .await
                .expect("the writer reports its failure");
        });
        let summary = rt.block_on(out.finish(Duration::from_secs(1)));
        assert_eq!(
            summary.error.map(|e| e.kind()),
            Some(io::ErrorKind::BrokenPipe)
        );
        assert_eq!(summary.unwritten, 1);
    }

    #[test]
    fn records_keep_their_place_among_the_events() {
        let valve = Valve::default();
        valve.open();
        let losses = Arc::new(Losses::new());
        let mut out =
            JsonOutput::start(valve.clone(), OutputOptions::default(), losses).expect("start");
        out.write(&event()).expect("write");
        out.end_batch();
        assert!(
            out.write_record(&serde_json::json!({"record": "stats"}), false)
                .expect("record")
        );
        out.write(&event()).expect("write");
        out.end_batch();
        let summary = runtime().block_on(out.finish(Duration::from_secs(10)));
        assert_eq!(summary.written, 2);
        let text = valve.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[1], r#"{"record":"stats"}"#);
    }
}
