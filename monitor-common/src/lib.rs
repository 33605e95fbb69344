//! Types shared by the kernel programs (`monitor-ebpf`) and userspace (`monitor`).
//!
//! Every record in the ring buffer is an [`Event<T>`]: a fixed [`EventHeader`] followed by one
//! kind-specific payload. All types are `#[repr(C)]`, `Copy`, and built only from integers and
//! byte arrays so that userspace can decode them with a length check and no `transmute` into
//! Rust enums. Strings are NUL-terminated byte arrays of fixed size: the kernel side bounds every
//! copy, and userspace treats the bytes as untrusted (lossy UTF-8, sanitised before display).
#![no_std]

pub mod kind;
pub mod ops;

/// Length of a task's `comm` (kernel `TASK_COMM_LEN`).
pub const COMM_LEN: usize = 16;
/// Longest path copied from user memory; longer paths are cut and flagged as truncated.
pub const PATH_LEN: usize = 512;
/// Longest single argv entry copied at exec.
pub const ARG_LEN: usize = 128;
/// How many argv entries are copied at exec.
pub const MAX_ARGS: usize = 16;
/// Bytes of a `struct sockaddr_in6`, the largest socket address we read.
pub const SOCKADDR_LEN: usize = 28;

/// Indexes of the `CONFIG` array map that userspace writes and every program reads.
pub mod config {
    /// Thread-group id of the monitor itself: its own activity is never reported.
    pub const SELF_TGID: u32 = 0;
    /// Bit set of enabled probe families (see [`crate::family`]).
    pub const ENABLED_FAMILIES: u32 = 1;
    /// Wake the userspace reader only once this many bytes wait in the ring (0: every record).
    pub const WAKEUP_BYTES: u32 = 2;
    /// Thread-group id of the monitor's parent (its shell): never a target of enforcement.
    pub const PARENT_TGID: u32 = 3;
    /// Non-zero while the exec deny tables hold entries (skips the lookups otherwise).
    pub const ENFORCE_EXEC: u32 = 4;
    pub const LEN: u32 = 8;
}

/// Probe families: each can be switched on and off at run time through `CONFIG`.
pub mod family {
    pub const PROCESS: u32 = 0;
    pub const FILE: u32 = 1;
    pub const NETWORK: u32 = 2;
    pub const KERNEL: u32 = 3;
    pub const COUNT: u32 = 4;

    pub const fn bit(family: u32) -> u64 {
        1 << family
    }
    pub const ALL: u64 = bit(PROCESS) | bit(FILE) | bit(NETWORK) | bit(KERNEL);
}

/// Indexes of the `SM_LOSSES` per-CPU array: events lost in the kernel for another reason
/// than a full ring buffer (those are counted per family in `SM_DROPS`).
pub mod loss {
    /// `SM_PENDING` was full at `sys_enter`: the syscall's arguments could not be kept, so its
    /// `sys_exit` reports nothing.
    pub const PENDING_TABLE_FULL: u32 = 0;
    pub const COUNT: u32 = 2;
}

/// Common to every event.
#[derive(Copy, Clone, Debug)]
#[repr(C)]
pub struct EventHeader {
    /// One of [`kind`]; checked by the decoder.
    pub kind: u32,
    /// Set when a string in the payload was cut to its buffer size.
    pub truncated: u32,
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC nanoseconds.
    pub timestamp_ns: u64,
    /// Thread-group id (the userspace notion of pid).
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    pub uid: u32,
    pub gid: u32,
    pub cgroup_id: u64,
    pub comm: [u8; COMM_LEN],
}

/// The ring-buffer record: header then payload.
#[derive(Copy, Clone, Debug)]
#[repr(C)]
pub struct Event<T> {
    pub header: EventHeader,
    pub data: T,
}

/// argv as copied at exec: `MAX_ARGS` fixed slots of `ARG_LEN` bytes.
#[derive(Copy, Clone)]
#[repr(C)]
pub struct ExecArgs {
    /// Arguments copied (≤ MAX_ARGS).
    pub argc: u32,
    /// Non-zero when argv had more than MAX_ARGS entries.
    pub more: u32,
    pub args: [[u8; ARG_LEN]; MAX_ARGS],
}

#[derive(Copy, Clone)]
#[repr(C)]
pub struct ExecData {
    /// pid before exec (differs from the header pid when a non-leader thread calls exec).
    pub old_pid: u32,
    /// 1 when an exec deny entry matched and the kernel sent SIGKILL.
    pub killed: u32,
    /// The path as the kernel saw it (`bprm->filename`): may be relative.
    pub filename: [u8; PATH_LEN],
    pub argv: ExecArgs,
}

#[derive(Copy, Clone, Debug)]
#[repr(C)]
pub struct ForkData {
    /// Thread-group id of the new process.
    pub child_pid: u32,
    /// Thread-group id of the parent.
    pub parent_pid: u32,
}

#[derive(Copy, Clone, Debug)]
#[repr(C)]
pub struct ExitData {
    /// Value passed to exit()/exit_group() when `exited` is 1.
    pub exit_code: i32,
    /// Fatal signal number when the process was killed (`exited` 0), else 0.
    pub signal: u32,
    /// 1: exited through exit()/exit_group(); 0: killed by `signal` or unknown (`signal` 0).
    pub exited: u32,
    pub _pad: u32,
}

#[derive(Copy, Clone, Debug)]
#[repr(C)]
pub struct PtraceData {
    pub request: i64,
    pub target_pid: u32,
    pub _pad: u32,
}

/// chdir/fchdir: not reported as an event, it keeps the process table's cwd current.
#[derive(Copy, Clone)]
#[repr(C)]
pub struct ChdirData {
    /// The fd for fchdir, or `AT_FDCWD` (-100) for chdir.
    pub fd: i32,
    pub _pad: u32,
    pub path: [u8; PATH_LEN],
}

/// open/openat/openat2, unlink/unlinkat/rmdir, chmod/fchmod/fchmodat.
#[derive(Copy, Clone)]
#[repr(C)]
pub struct FileData {
    /// Which syscall ([`ops`]).
    pub op: u32,
    /// Directory fd a relative path is resolved against (`AT_FDCWD` = -100), or the fd itself
    /// for fchmod (then `path` is empty).
    pub dirfd: i32,
    /// open flags, unlinkat flags.
    pub flags: u64,
    /// open mode (with O_CREAT) or chmod mode.
    pub mode: u32,
    /// Syscall return value (the new fd for opens).
    pub ret: i32,
    pub path: [u8; PATH_LEN],
}

/// rename/renameat/renameat2 and link/linkat/symlink/symlinkat.
#[derive(Copy, Clone)]
#[repr(C)]
pub struct FilePairData {
    pub op: u32,
    pub _pad: u32,
    /// dirfd of `old_path` (for symlinks `old_path` is the target text and is not resolved).
    pub old_dirfd: i32,
    pub new_dirfd: i32,
    pub flags: u64,
    pub old_path: [u8; PATH_LEN],
    pub new_path: [u8; PATH_LEN],
}

/// setuid family and capset.
#[derive(Copy, Clone, Debug)]
#[repr(C)]
pub struct PrivilegeData {
    pub op: u32,
    pub old_uid: u32,
    pub old_gid: u32,
    /// The syscall's id arguments (real, effective, saved; unused ones are u32::MAX).
    pub new_ids: [u32; 3],
    /// capset: effective, permitted, inheritable (low 32 capability bits).
    pub caps: [u32; 3],
    pub _pad: u32,
}

/// Every network event: connect, failed connect, accept, listen, UDP send, close.
#[derive(Copy, Clone, Debug)]
#[repr(C)]
pub struct NetData {
    /// AF_INET (2) or AF_INET6 (10).
    pub family: u16,
    /// IPPROTO_TCP (6) or IPPROTO_UDP (17).
    pub protocol: u16,
    /// Host byte order.
    pub src_port: u16,
    pub dst_port: u16,
    /// IPv4 in the first 4 bytes, or IPv6.
    pub src_addr: [u8; 16],
    pub dst_addr: [u8; 16],
    /// The socket fd where known (accept: the new fd), else -1.
    pub fd: i32,
    /// [`net_flags`] bits.
    pub flags: u32,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub duration_ns: u64,
    /// [`crate::kind::NET_CONNECT_FAILED`]: the errno the connect failed with, 0 when it is not
    /// known (a non-blocking connect whose failure only the socket saw).
    pub error: i32,
    pub _pad: u32,
}

#[derive(Copy, Clone, Debug)]
#[repr(C)]
pub struct BpfLoadData {
    pub prog_type: u32,
    pub insn_count: u32,
    pub prog_name: [u8; 16],
}

#[derive(Copy, Clone)]
#[repr(C)]
pub struct ModuleLoadData {
    pub op: u32,
    /// finit_module's fd, else -1.
    pub fd: i32,
    /// Module parameters string.
    pub params: [u8; ARG_LEN],
}

pub type ExecEvent = Event<ExecData>;
pub type ForkEvent = Event<ForkData>;
pub type ExitEvent = Event<ExitData>;
pub type PtraceEvent = Event<PtraceData>;
pub type ChdirEvent = Event<ChdirData>;
pub type FileEvent = Event<FileData>;

/// Where a `FileEvent`'s path starts. The kernel sends a file record only up to the end of its
/// path (its NUL included), not the whole 512-byte buffer: most paths are a few dozen bytes,
/// and a full-size record took five times the room in the ring buffer (and in every cache line
/// between the CPUs) under a flood of opens. Userspace fills the rest with zeros.
pub const FILE_PATH_OFFSET: usize =
    core::mem::offset_of!(FileEvent, data) + core::mem::offset_of!(FileData, path);
pub type FilePairEvent = Event<FilePairData>;
pub type PrivilegeEvent = Event<PrivilegeData>;
pub type NetEvent = Event<NetData>;
pub type BpfLoadEvent = Event<BpfLoadData>;
pub type ModuleLoadEvent = Event<ModuleLoadData>;

/// A syscall's arguments saved at sys_enter until its sys_exit, keyed by thread id.
#[derive(Copy, Clone, Debug)]
#[repr(C)]
pub struct PendingSyscall {
    pub op: u32,
    /// Set by other probes during the syscall (e.g. `inet_sock_set_state` marks a TCP connect).
    pub marks: u32,
    pub uid_gid: u64,
    pub args: [u64; 6],
}

/// Bits of [`NetData::flags`].
pub mod net_flags {
    /// The connect was refused by an enforcement deny entry (`cgroup/connect4|6`).
    pub const BLOCKED: u32 = 1;
}

/// Longest executable path an exec deny entry can name.
pub const DENY_PATH_LEN: usize = 256;

/// Entries in each deny table (`SM_DENY_EXEC_PATH`, `SM_DENY_EXEC_NAME`, `SM_DENY_NET`,
/// `SM_DENY_EXEC_SUSPECT`). Userspace keeps part of each for the operator's own entries.
pub const DENY_TABLE_LEN: u32 = 1024;

/// Exec deny-table key: the path exactly as passed to execve, NUL-padded.
#[derive(Copy, Clone)]
#[repr(C)]
pub struct ExecDenyPath {
    pub path: [u8; DENY_PATH_LEN],
}

/// Exec deny-table key: the new program's comm (its file name, cut to 15 bytes), NUL-padded.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct ExecDenyName {
    pub comm: [u8; COMM_LEN],
}

/// Connect deny-table key. `port` 0 matches every port of `addr`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct NetDenyKey {
    /// AF_INET (2) or AF_INET6 (10).
    pub family: u16,
    /// Host byte order.
    pub port: u16,
    pub _pad: u32,
    /// IPv4 in the first 4 bytes, or IPv6.
    pub addr: [u8; 16],
}

/// Value of every deny table.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct DenyEntry {
    /// CLOCK_MONOTONIC nanoseconds after which the entry no longer applies; 0 = never.
    pub expires_ns: u64,
    /// Userspace's id for the entry (for reports).
    pub id: u32,
    pub _pad: u32,
}

/// Key bit of `SM_EXIT_STATUS` entries recorded per thread by `exit()` (tgid keys have it clear).
pub const THREAD_EXIT_KEY: u32 = 0x8000_0000;

/// `dirfd` value of a symlink target: text stored in the link, resolved against the link's
/// directory rather than the caller's cwd.
pub const SYMLINK_TARGET_DIRFD: i32 = -2;

/// `AT_FDCWD`: resolve relative paths against the current directory.
pub const AT_FDCWD: i32 = -100;

/// Marks on a [`PendingSyscall`].
pub mod marks {
    /// The connect reached TCP SYN_SENT: it is reported when established, not at sys_exit.
    pub const TCP_CONNECT: u32 = 1;
    /// That connect already failed, inside the syscall (loopback answers synchronously): its
    /// sys_exit reports it, whatever it returns.
    pub const TCP_FAILED: u32 = 2;
}

/// Where a TCP socket came from, kept from its first state change to TCP_CLOSE.
#[derive(Copy, Clone, Debug)]
#[repr(C)]
pub struct TcpConnection {
    /// Header of the owning task (pid 0 until known for accepted sockets).
    pub owner: EventHeader,
    pub net: NetData,
    pub start_ns: u64,
    /// [`kind::NET_CONNECT`] or [`kind::NET_ACCEPT`].
    pub role: u32,
    /// 1 once the connection reached TCP_ESTABLISHED (only those are reported at close).
    pub established: u32,
}

/// Key of the listener table: (tgid, fd).
#[derive(Copy, Clone, Debug)]
#[repr(C)]
pub struct SocketKey {
    pub tgid: u32,
    pub fd: i32,
}

/// A listening socket's local address.
#[derive(Copy, Clone, Debug)]
#[repr(C)]
pub struct Listener {
    pub family: u16,
    pub port: u16,
    pub _pad: u32,
    pub addr: [u8; 16],
}

/// Record sizes both sides rely on: the kernel reserves `size_of::<T>()` bytes in the ring buffer
/// and userspace's decoder checks each record's length against the same number. Each size is
/// also the sum of the fields' sizes, so no type has implicit padding (uninitialised bytes the
/// kernel would copy out, and that `aya::Pod` must not have). A change here changes the ring
/// buffer's format: update the number deliberately, never to make the build pass.
mod layout {
    use core::mem::size_of;

    use super::*;

    const _: () = assert!(size_of::<EventHeader>() == 56);

    const _: () = assert!(size_of::<ExecArgs>() == 2056);
    const _: () = assert!(size_of::<ExecData>() == 2576);
    const _: () = assert!(size_of::<ForkData>() == 8);
    const _: () = assert!(size_of::<ExitData>() == 16);
    const _: () = assert!(size_of::<PtraceData>() == 16);
    const _: () = assert!(size_of::<ChdirData>() == 520);
    const _: () = assert!(size_of::<FileData>() == 536);
    const _: () = assert!(size_of::<FilePairData>() == 1048);
    const _: () = assert!(size_of::<PrivilegeData>() == 40);
    const _: () = assert!(size_of::<NetData>() == 80);
    const _: () = assert!(size_of::<BpfLoadData>() == 24);
    const _: () = assert!(size_of::<ModuleLoadData>() == 136);

    // Header + payload with nothing between (the header's 56 bytes keep any payload aligned).
    const _: () = assert!(size_of::<ExecEvent>() == 2632);
    const _: () = assert!(size_of::<ForkEvent>() == 64);
    const _: () = assert!(size_of::<ExitEvent>() == 72);
    const _: () = assert!(size_of::<PtraceEvent>() == 72);
    const _: () = assert!(size_of::<ChdirEvent>() == 576);
    const _: () = assert!(size_of::<FileEvent>() == 592);
    const _: () = assert!(size_of::<FilePairEvent>() == 1104);
    const _: () = assert!(size_of::<PrivilegeEvent>() == 96);
    const _: () = assert!(size_of::<NetEvent>() == 136);
    const _: () = assert!(size_of::<BpfLoadEvent>() == 80);
    const _: () = assert!(size_of::<ModuleLoadEvent>() == 192);

    // Map keys and values (userspace writes and reads them through aya's typed maps).
    const _: () = assert!(size_of::<PendingSyscall>() == 64);
    const _: () = assert!(size_of::<TcpConnection>() == 152);
    const _: () = assert!(size_of::<SocketKey>() == 8);
    const _: () = assert!(size_of::<Listener>() == 24);
    const _: () = assert!(size_of::<ExecDenyPath>() == 256);
    const _: () = assert!(size_of::<ExecDenyName>() == 16);
    const _: () = assert!(size_of::<NetDenyKey>() == 24);
    const _: () = assert!(size_of::<DenyEntry>() == 16);
}

/// `aya::Pod` for every record and map type: userspace decodes ring-buffer bytes into them
/// (`secmon::decode`) and reads and writes them through aya's maps.
#[cfg(feature = "user")]
mod pod {
    use super::*;

    /// Implements `aya::Pod` for types that are plain old data.
    macro_rules! plain_old_data {
        ($($record:ty),+ $(,)?) => {
            $(
                // SAFETY: `$record` is `#[repr(C)]` + `Copy` and built only from integers and
                // byte arrays (no references, enums, bools or floats), so every bit pattern is a
                // valid value; `layout` asserts its size is the sum of its fields', so it has no
                // padding and all of its bytes are initialised.
                unsafe impl aya::Pod for $record {}
            )+
        };
    }

    plain_old_data!(
        EventHeader,
        ExecArgs,
        ExecEvent,
        ForkEvent,
        ExitEvent,
        PtraceEvent,
        ChdirEvent,
        FileEvent,
        FilePairEvent,
        PrivilegeEvent,
        NetEvent,
        BpfLoadEvent,
        ModuleLoadEvent,
        PendingSyscall,
        TcpConnection,
        SocketKey,
        Listener,
        ExecDenyPath,
        ExecDenyName,
        NetDenyKey,
        DenyEntry,
    );
}
