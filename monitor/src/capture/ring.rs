//! The consumer side of the kernel's event ring buffer (`SM_EVENTS`, a `BPF_MAP_TYPE_RINGBUF`),
//! in place of aya's `RingBuf` reader, to map the ring's data pages **once**.
//!
//! Layout (kernel/bpf/ringbuf.c, `ringbuf_map_mmap_kern`; libbpf's ringbuf.c reads it the same
//! way): page 0 holds the consumer position (the only page userspace may map writable), page 1
//! the producer position, and the data area of `size` bytes (a power of two, a multiple of the
//! page size) follows. The kernel maps the data pages twice in a row so that a record wrapping
//! the end reads contiguously, and aya and libbpf map both copies. It populates the whole
//! mapping at mmap time, so each copy is resident: with the default ring that is 16 MiB of RSS
//! that holds nothing. Here the producer page and the data pages are mapped once (the kernel
//! accepts a mapping shorter than the area) and the rare record whose data straddles the end
//! is copied into a reused scratch buffer.
//!
//! Each record has an 8-byte header (`BPF_RINGBUF_HDR_SZ`) in front of its data: a 32-bit
//! length whose top bits are BUSY (still being written) and DISCARD (withdrawn by the program),
//! then the page offset the kernel uses. Records are padded to 8 bytes and the data area is a
//! multiple of a page, so a header never straddles the end.
//!
//! Memory ordering, as libbpf: the producer position and each header are loaded with Acquire
//! (the kernel stores them with Release / a full xchg), and the consumer position is stored
//! with Release once a record is read, so the kernel reuses its room only after that.
use std::{
    os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd},
    ptr::NonNull,
    sync::atomic::{self, AtomicU32, AtomicUsize, Ordering},
};

use aya::maps::MapData;

/// `BPF_RINGBUF_HDR_SZ`: the header in front of every record.
pub const HEADER_BYTES: usize = 8;
/// `BPF_RINGBUF_BUSY_BIT`: the record is still being written.
const BUSY_BIT: u32 = 1 << 31;
/// `BPF_RINGBUF_DISCARD_BIT`: the program withdrew the record; skip it.
const DISCARD_BIT: u32 = 1 << 30;

#[derive(Debug, thiserror::Error)]
pub enum RingError {
    #[error("the ring buffer size {0} is not a power of two multiple of the page size")]
    Size(u32),
    #[error("mapping the ring buffer failed: {0}")]
    Map(#[source] std::io::Error),
}

/// What [`EventRing::read`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Read<R> {
    /// A record, handed to the reader's closure, which returned this.
    Record(R),
    /// Nothing committed is waiting.
    Empty,
    /// A header claimed a record longer than the ring (never written by a sane kernel): the
    /// consumer skipped everything the kernel had produced so far to find its footing again.
    Corrupt,
}

/// The ring buffer's consumer: owns the map (its fd is the one to poll) and its two mappings.
pub struct EventRing {
    consumer: Consumer,
    _positions: Mapping,
    _producer: Mapping,
    map: MapData,
}

// SAFETY: the mappings belong to this value alone; the raw pointers in `Consumer` point into
// them and move with it. Nothing is shared with another thread but the kernel.
unsafe impl Send for EventRing {}

impl EventRing {
    /// Maps the ring buffer map `map` of `size` bytes.
    pub fn new(map: MapData, size: u32) -> Result<EventRing, RingError> {
        let page = page_size();
        let data_bytes = usize::try_from(size).map_err(|_| RingError::Size(size))?;
        if !data_bytes.is_power_of_two() || !data_bytes.is_multiple_of(page) {
            return Err(RingError::Size(size));
        }
        let fd = map.fd().as_fd();
        // Page 0, the consumer position: the only page the kernel lets userspace write.
        let positions = Mapping::new(fd, page, libc::PROT_READ | libc::PROT_WRITE, 0)?;
        // Page 1, the producer position, then the data pages: once, not twice.
        let producer = Mapping::new(fd, page + data_bytes, libc::PROT_READ, page)?;
        // SAFETY: both mappings are at least a page long, page-aligned (so the positions are
        // aligned for AtomicUsize), and live as long as the consumer (fields of one struct).
        let consumer = unsafe {
            Consumer::new(
                positions.start.cast(),
                producer.start.cast(),
                producer.start.add(page),
                data_bytes,
            )
        };
        Ok(EventRing {
            consumer,
            _positions: positions,
            _producer: producer,
            map,
        })
    }

    /// Reads the next committed record: `handle` gets its bytes, and the record's room goes
    /// back to the kernel once `handle` returns.
    pub fn read<R>(&mut self, handle: impl FnOnce(&[u8]) -> R) -> Read<R> {
        self.consumer.read(handle)
    }
}

impl AsFd for EventRing {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.map.fd().as_fd()
    }
}

impl AsRawFd for EventRing {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

/// The reading logic, over raw memory so that a test can run it on a fake ring.
struct Consumer {
    consumer_pos: NonNull<AtomicUsize>,
    producer_pos: NonNull<AtomicUsize>,
    data: NonNull<u8>,
    size: usize,
    /// Our position: the kernel's consumer position as last stored.
    pos: usize,
    /// The producer position as last loaded (reloaded only once caught up with it).
    producer_cache: usize,
    /// Set once a record was consumed since the last fence (see [`Consumer::read`]).
    needs_wakeup: bool,
    /// Where a record straddling the end of the data area is put back together.
    scratch: Vec<u8>,
}

/// What a header says.
enum Header {
    Busy,
    Discarded(usize),
    Record(usize),
    Corrupt,
}

impl Consumer {
    /// # Safety
    /// `consumer_pos` and `producer_pos` point to aligned `usize`s and `data` to `size` bytes
    /// (a power of two, a multiple of 8), all valid for as long as the consumer lives.
    unsafe fn new(
        consumer_pos: NonNull<AtomicUsize>,
        producer_pos: NonNull<AtomicUsize>,
        data: NonNull<u8>,
        size: usize,
    ) -> Consumer {
        // SAFETY: valid per the caller.
        let pos = unsafe { consumer_pos.as_ref() }.load(Ordering::Acquire);
        Consumer {
            consumer_pos,
            producer_pos,
            data,
            size,
            pos,
            producer_cache: pos,
            needs_wakeup: false,
            scratch: Vec::new(),
        }
    }

    fn read<R>(&mut self, handle: impl FnOnce(&[u8]) -> R) -> Read<R> {
        while self.data_available() {
            match self.header() {
                Header::Busy => {
                    if !self.needs_wakeup {
                        return Read::Empty;
                    }
                    // Either a retry sees the record committed, or its producer sees our
                    // consumer position and wakes us (aya and libbpf do the same).
                    atomic::fence(Ordering::SeqCst);
                    self.needs_wakeup = false;
                }
                Header::Discarded(len) => self.advance(len),
                Header::Record(len) => {
                    let result = handle(self.record(len));
                    self.advance(len);
                    return Read::Record(result);
                }
                Header::Corrupt => {
                    self.skip_to(self.producer_cache);
                    return Read::Corrupt;
                }
            }
        }
        Read::Empty
    }

    /// Whether a record (committed or not) lies between us and the producer.
    fn data_available(&mut self) -> bool {
        if self.pos == self.producer_cache {
            if self.needs_wakeup {
                // Either the load below sees a new record or its producer sees our consumer
                // position and sends a wake-up.
                atomic::fence(Ordering::SeqCst);
                self.needs_wakeup = false;
            }
            // SAFETY: valid per `Consumer::new`.
            self.producer_cache = unsafe { self.producer_pos.as_ref() }.load(Ordering::Acquire);
        }
        self.pos != self.producer_cache
    }

    fn header(&self) -> Header {
        let offset = self.pos & (self.size - 1);
        // SAFETY: `offset` is 8-aligned (positions advance by multiples of 8) and at most
        // `size - 8`, so the header's first word lies inside the data area, aligned.
        let word = unsafe { &*self.data.as_ptr().add(offset).cast::<AtomicU32>() };
        // The kernel commits a record with a fully ordered xchg: Acquire makes its data visible.
        let header = word.load(Ordering::Acquire);
        if header & BUSY_BIT != 0 {
            return Header::Busy;
        }
        let len = (header & !(BUSY_BIT | DISCARD_BIT)) as usize;
        if len > self.size - HEADER_BYTES {
            Header::Corrupt
        } else if header & DISCARD_BIT != 0 {
            Header::Discarded(len)
        } else {
            Header::Record(len)
        }
    }

    /// The `len` data bytes of the record at our position: in place, or put back together in
    /// the scratch buffer when they wrap around the end of the data area.
    fn record(&mut self, len: usize) -> &[u8] {
        let start = (self.pos + HEADER_BYTES) & (self.size - 1);
        let first = len.min(self.size - start);
        // SAFETY: `start + first <= size` and `len - first < size` (len <= size - 8); the
        // kernel does not touch a committed record before we advance past it.
        let (head, tail) = unsafe {
            let base = self.data.as_ptr();
            (
                std::slice::from_raw_parts(base.add(start), first),
                std::slice::from_raw_parts(base, len - first),
            )
        };
        if tail.is_empty() {
            return head;
        }
        self.scratch.clear();
        self.scratch.extend_from_slice(head);
        self.scratch.extend_from_slice(tail);
        &self.scratch
    }

    /// Gives the room of a record of `len` data bytes back to the kernel.
    fn advance(&mut self, len: usize) {
        let footprint = (len + HEADER_BYTES).next_multiple_of(8);
        self.skip_to(self.pos.wrapping_add(footprint));
    }

    fn skip_to(&mut self, pos: usize) {
        self.pos = pos;
        // Release: the kernel loads it with Acquire before reusing the room we read.
        // SAFETY: valid per `Consumer::new`.
        unsafe { self.consumer_pos.as_ref() }.store(pos, Ordering::Release);
        self.needs_wakeup = true;
    }
}

/// A shared mapping of part of the map, unmapped on drop.
struct Mapping {
    start: NonNull<u8>,
    len: usize,
}

impl Mapping {
    fn new(fd: BorrowedFd<'_>, len: usize, prot: i32, offset: usize) -> Result<Mapping, RingError> {
        let offset =
            libc::off_t::try_from(offset).map_err(|e| RingError::Map(std::io::Error::other(e)))?;
        // SAFETY: a fresh shared mapping of a valid fd; the result is checked.
        let start = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                offset,
            )
        };
        if start == libc::MAP_FAILED {
            return Err(RingError::Map(std::io::Error::last_os_error()));
        }
        let start = NonNull::new(start.cast::<u8>())
            .ok_or_else(|| RingError::Map(std::io::Error::other("mmap returned null")))?;
        Ok(Mapping { start, len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `Mapping::new` mapped; nothing refers to it any more.
        unsafe { libc::munmap(self.start.as_ptr().cast(), self.len) };
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(page).unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ring in ordinary memory, written the way the kernel writes one.
    struct FakeRing {
        consumer_pos: Box<AtomicUsize>,
        producer_pos: Box<AtomicUsize>,
        data: Vec<u64>,
    }

    impl FakeRing {
        fn new(size: usize) -> FakeRing {
            FakeRing {
                consumer_pos: Box::new(AtomicUsize::new(0)),
                producer_pos: Box::new(AtomicUsize::new(0)),
                data: vec![0; size / 8],
            }
        }

        fn size(&self) -> usize {
            self.data.len() * 8
        }

        fn consumer(&mut self) -> Consumer {
            let size = self.size();
            // SAFETY: the boxes and the vector outlive the consumer in every test.
            unsafe {
                Consumer::new(
                    NonNull::from(&*self.consumer_pos),
                    NonNull::from(&*self.producer_pos),
                    NonNull::new(self.data.as_mut_ptr().cast()).unwrap(),
                    size,
                )
            }
        }

        fn bytes(&mut self) -> &mut [u8] {
            let len = self.size();
            // SAFETY: the vector's own bytes.
            unsafe { std::slice::from_raw_parts_mut(self.data.as_mut_ptr().cast(), len) }
        }

        /// Appends a record with `header_bits` set in its header, wrapping as the kernel does.
        fn push(&mut self, payload: &[u8], header_bits: u32) {
            let size = self.size();
            let pos = self.producer_pos.load(Ordering::Relaxed);
            let header = (payload.len() as u32 | header_bits).to_le_bytes();
            let bytes = self.bytes();
            for (i, b) in header.iter().chain(&[0; 4]).chain(payload).enumerate() {
                bytes[(pos + i) % size] = *b;
            }
            let footprint = (payload.len() + HEADER_BYTES).next_multiple_of(8);
            self.producer_pos.store(pos + footprint, Ordering::Release);
        }

        /// Sets the header word of the record at `pos` (e.g. to clear BUSY).
        fn set_header(&mut self, pos: usize, word: u32) {
            let size = self.size();
            self.bytes()[pos % size..pos % size + 4].copy_from_slice(&word.to_le_bytes());
        }
    }

    fn read_all(consumer: &mut Consumer) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Read::Record(record) = consumer.read(<[u8]>::to_vec) {
            out.push(record);
        }
        out
    }

    #[test]
    fn records_straddling_the_end_are_put_back_together() {
        let mut ring = FakeRing::new(64);
        let mut consumer = ring.consumer();
        // 40 bytes of room used and given back: the next record starts 24 bytes from the end.
        ring.push(&[1; 30], 0);
        assert_eq!(read_all(&mut consumer), vec![vec![1; 30]]);
        let wrapped: Vec<u8> = (0..37).collect();
        ring.push(&wrapped, 0);
        assert_eq!(read_all(&mut consumer), vec![wrapped]);
        assert_eq!(ring.consumer_pos.load(Ordering::Relaxed), 40 + 48);
        // A header in the last 8 bytes: its data starts at the beginning, contiguous.
        ring.push(&[2; 24], 0);
        assert_eq!(ring.producer_pos.load(Ordering::Relaxed) % 64, 56);
        ring.push(&[3; 12], 0);
        assert_eq!(read_all(&mut consumer), vec![vec![2; 24], vec![3; 12]]);
        assert_eq!(consumer.read(<[u8]>::to_vec), Read::Empty);
    }

    #[test]
    fn many_wraps_with_every_length() {
        let mut ring = FakeRing::new(256);
        let mut consumer = ring.consumer();
        for round in 0..2000usize {
            let len = round % 200;
            let payload: Vec<u8> = (0..len).map(|i| (i + round) as u8).collect();
            ring.push(&payload, 0);
            assert_eq!(read_all(&mut consumer), vec![payload]);
        }
    }

    #[test]
    fn discarded_records_are_skipped_and_busy_ones_wait() {
        let mut ring = FakeRing::new(128);
        let mut consumer = ring.consumer();
        ring.push(&[7; 9], DISCARD_BIT);
        ring.push(&[8; 3], BUSY_BIT);
        assert_eq!(read_all(&mut consumer), Vec::<Vec<u8>>::new());
        // The discarded record's room went back; the busy one's did not.
        assert_eq!(ring.consumer_pos.load(Ordering::Relaxed), 24);
        ring.set_header(24, 3);
        assert_eq!(read_all(&mut consumer), vec![vec![8; 3]]);
    }

    #[test]
    fn a_length_beyond_the_ring_is_an_error_not_a_crash() {
        let mut ring = FakeRing::new(64);
        let mut consumer = ring.consumer();
        ring.push(&[1; 4], 0);
        ring.push(&[2; 4], 0);
        ring.set_header(0, 1000);
        assert_eq!(consumer.read(<[u8]>::to_vec), Read::Corrupt);
        // It found its footing at the producer's position.
        assert_eq!(ring.consumer_pos.load(Ordering::Relaxed), 32);
        ring.push(&[3; 4], 0);
        assert_eq!(read_all(&mut consumer), vec![vec![3; 4]]);
    }
}
