//! Ring-buffer bytes → typed kernel records, with a length and kind check and no `transmute`
//! into Rust enums: every kernel struct is plain integers and byte arrays, so any bit pattern
//! of the right length is a valid value, and we copy it out with `read_unaligned`. The copy is
//! generic only over `aya::Pod` (implemented by `monitor-common` for exactly those structs), so
//! a type for which that is not true cannot be decoded.
use std::mem::size_of;

use aya::Pod;

use monitor_common::{
    BpfLoadEvent, ChdirEvent, EventHeader, ExecEvent, ExitEvent, FILE_PATH_OFFSET, FileEvent,
    FilePairEvent, ForkEvent, ModuleLoadEvent, NetEvent, PrivilegeEvent, PtraceEvent, kind,
};

/// One record from the kernel. Large ones are boxed so the enum stays small in batches.
#[derive(Clone)]
pub enum Record {
    Exec(Box<ExecEvent>),
    Fork(ForkEvent),
    Exit(ExitEvent),
    Ptrace(PtraceEvent),
    Chdir(Box<ChdirEvent>),
    File(Box<FileEvent>),
    FilePair(Box<FilePairEvent>),
    Privilege(PrivilegeEvent),
    Net(NetEvent),
    BpfLoad(BpfLoadEvent),
    ModuleLoad(Box<ModuleLoadEvent>),
}

impl Record {
    /// The memory the decoded record takes (its boxed payload included), for queues bounded
    /// in bytes.
    pub fn footprint(&self) -> usize {
        size_of::<Record>()
            + match self {
                Record::Exec(_) => size_of::<ExecEvent>(),
                Record::Chdir(_) => size_of::<ChdirEvent>(),
                Record::File(_) => size_of::<FileEvent>(),
                Record::FilePair(_) => size_of::<FilePairEvent>(),
                Record::ModuleLoad(_) => size_of::<ModuleLoadEvent>(),
                Record::Fork(_)
                | Record::Exit(_)
                | Record::Ptrace(_)
                | Record::Privilege(_)
                | Record::Net(_)
                | Record::BpfLoad(_) => 0,
            }
    }

    pub fn header(&self) -> &EventHeader {
        match self {
            Record::Exec(e) => &e.header,
            Record::Fork(e) => &e.header,
            Record::Exit(e) => &e.header,
            Record::Ptrace(e) => &e.header,
            Record::Chdir(e) => &e.header,
            Record::File(e) => &e.header,
            Record::FilePair(e) => &e.header,
            Record::Privilege(e) => &e.header,
            Record::Net(e) => &e.header,
            Record::BpfLoad(e) => &e.header,
            Record::ModuleLoad(e) => &e.header,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {len} bytes is shorter than an event header ({need} bytes)")]
    TooShortForHeader { len: usize, need: usize },
    #[error("unknown event kind {0}")]
    UnknownKind(u32),
    #[error("record of kind {kind} has {len} bytes, expected at least {need}")]
    TooShort { kind: u32, len: usize, need: usize },
}

/// Copies a `T` out of the front of `bytes` after checking the length.
fn read_record<T: Pod>(bytes: &[u8], kind: u32) -> Result<T, DecodeError> {
    let need = size_of::<T>();
    if bytes.len() < need {
        return Err(DecodeError::TooShort {
            kind,
            len: bytes.len(),
            need,
        });
    }
    // SAFETY: `bytes` holds at least `size_of::<T>()` bytes (checked above), the read does not
    // need alignment (the slice may come from the fuzzer or a test at any address), and `T: Pod` makes any bit pattern of that length a valid `T`.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// Copies a record of at least `min` bytes into a new box, the rest of `T` zeroed: a record
/// the kernel sent cut after its trailing string keeps the string's NUL. The large records are
/// built where they will live, each byte written once, not zeroed on the stack and copied.
fn boxed_record<T: Pod>(bytes: &[u8], kind: u32, min: usize) -> Result<Box<T>, DecodeError> {
    if bytes.len() < min {
        return Err(DecodeError::TooShort {
            kind,
            len: bytes.len(),
            need: min,
        });
    }
    let full = size_of::<T>();
    let len = bytes.len().min(full);
    let mut record = Box::<T>::new_uninit();
    // SAFETY: the box holds `full` bytes; `len` of them are copied from `bytes` (which has at
    // least `len`, and cannot overlap a new allocation) and the other `full - len` zeroed, so
    // every byte is written, and `T: Pod` makes any bytes a valid `T`.
    unsafe {
        let at = record.as_mut_ptr().cast::<u8>();
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), at, len);
        std::ptr::write_bytes(at.add(len), 0, full - len);
        Ok(record.assume_init())
    }
}

pub fn decode(bytes: &[u8]) -> Result<Record, DecodeError> {
    let need = size_of::<EventHeader>();
    if bytes.len() < need {
        return Err(DecodeError::TooShortForHeader {
            len: bytes.len(),
            need,
        });
    }
    let kind = u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    Ok(match kind {
        kind::PROCESS_EXEC => Record::Exec(boxed_record(bytes, kind, size_of::<ExecEvent>())?),
        kind::PROCESS_FORK => Record::Fork(read_record(bytes, kind)?),
        kind::PROCESS_EXIT => Record::Exit(read_record(bytes, kind)?),
        kind::PTRACE => Record::Ptrace(read_record(bytes, kind)?),
        kind::CHDIR => Record::Chdir(boxed_record(bytes, kind, size_of::<ChdirEvent>())?),
        kind::PRIVILEGE_CHANGE => Record::Privilege(read_record(bytes, kind)?),
        kind::FILE_OPEN | kind::FILE_DELETE | kind::FILE_CHMOD | kind::FD_DUP => {
            Record::File(boxed_record(bytes, kind, FILE_PATH_OFFSET + 1)?)
        }
        kind::FILE_RENAME | kind::FILE_LINK => {
            Record::FilePair(boxed_record(bytes, kind, size_of::<FilePairEvent>())?)
        }
        kind::NET_CONNECT
        | kind::NET_ACCEPT
        | kind::NET_LISTEN
        | kind::NET_UDP
        | kind::NET_CLOSE
        | kind::NET_CONNECT_FAILED => Record::Net(read_record(bytes, kind)?),
        kind::BPF_LOAD => Record::BpfLoad(read_record(bytes, kind)?),
        kind::MODULE_LOAD => {
            Record::ModuleLoad(boxed_record(bytes, kind, size_of::<ModuleLoadEvent>())?)
        }
        other => return Err(DecodeError::UnknownKind(other)),
    })
}

/// The bytes of a record, for tests and benchmarks that build kernel records by hand.
///
/// Only for `aya::Pod` types: a type with padding (uninitialised bytes) is refused.
/// ```compile_fail
/// let padded: (u8, u32) = (1, 2);
/// secmon::decode::as_bytes(&padded);
/// ```
pub fn as_bytes<T: Pod>(value: &T) -> &[u8] {
    // SAFETY: the slice covers exactly the `size_of::<T>()` bytes of `*value`, which stays
    // borrowed (so alive and unchanged) for the slice's lifetime; `T: Pod` has no padding, so
    // every one of those bytes is initialised.
    unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()) }
}

/// An all-zero record, for tests and benchmarks that build kernel records by hand.
///
/// Only for `aya::Pod` types: a type for which zero is not a valid value is refused.
/// ```compile_fail
/// let never_zero: std::num::NonZeroU32 = secmon::decode::zeroed();
/// ```
pub fn zeroed<T: Pod>() -> T {
    // SAFETY: `T: Pod` is integers and byte arrays only, for which all-zero bytes are a valid
    // value.
    unsafe { std::mem::zeroed() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_kind() {
        let mut fork: ForkEvent = zeroed();
        fork.header.kind = kind::PROCESS_FORK;
        fork.data.child_pid = 42;
        match decode(as_bytes(&fork)) {
            Ok(Record::Fork(e)) => assert_eq!(e.data.child_pid, 42),
            _ => panic!("fork did not decode"),
        }
        let mut exec: ExecEvent = zeroed();
        exec.header.kind = kind::PROCESS_EXEC;
        exec.data.filename[..4].copy_from_slice(b"/bin");
        assert!(matches!(decode(as_bytes(&exec)), Ok(Record::Exec(_))));
        let mut net: NetEvent = zeroed();
        for k in [kind::NET_CONNECT, kind::NET_CLOSE, kind::NET_CONNECT_FAILED] {
            net.header.kind = k;
            assert!(matches!(decode(as_bytes(&net)), Ok(Record::Net(_))));
        }
    }

    #[test]
    fn a_file_record_cut_after_its_path_decodes_with_the_rest_zeroed() {
        let mut open: FileEvent = zeroed();
        open.header.kind = kind::FILE_OPEN;
        open.header.pid = 7;
        open.data.ret = 3;
        open.data.path[..10].copy_from_slice(b"/etc/motd\0");
        // What the kernel sends: up to the path's NUL. Garbage after it must not matter.
        let mut bytes = as_bytes(&open)[..FILE_PATH_OFFSET + 10].to_vec();
        match decode(&bytes) {
            Ok(Record::File(e)) => {
                assert_eq!((e.header.pid, e.data.ret), (7, 3));
                assert_eq!(&e.data.path[..10], b"/etc/motd\0");
                assert!(e.data.path[10..].iter().all(|&b| b == 0));
            }
            _ => panic!("a cut file record did not decode"),
        }
        // Not even one byte of path: refused, not read past the end.
        bytes.truncate(FILE_PATH_OFFSET);
        assert_eq!(
            decode(&bytes).err(),
            Some(DecodeError::TooShort {
                kind: kind::FILE_OPEN,
                len: FILE_PATH_OFFSET,
                need: FILE_PATH_OFFSET + 1,
            })
        );
        // Every other kind still needs its whole record.
        let mut pair: FilePairEvent = zeroed();
        pair.header.kind = kind::FILE_RENAME;
        let cut = &as_bytes(&pair)[..size_of::<FilePairEvent>() - 1];
        assert!(matches!(decode(cut), Err(DecodeError::TooShort { .. })));
    }

    #[test]
    fn rejects_short_and_unknown_records() {
        assert_eq!(
            decode(&[0u8; 3]).err(),
            Some(DecodeError::TooShortForHeader {
                len: 3,
                need: size_of::<EventHeader>()
            })
        );
        let mut header: EventHeader = zeroed();
        header.kind = 9999;
        assert_eq!(
            decode(as_bytes(&header)).err(),
            Some(DecodeError::UnknownKind(9999))
        );
        header.kind = kind::PROCESS_EXEC;
        assert!(matches!(
            decode(as_bytes(&header)),
            Err(DecodeError::TooShort {
                kind: kind::PROCESS_EXEC,
                ..
            })
        ));
    }
}
