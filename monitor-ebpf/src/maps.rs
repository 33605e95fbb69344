//! Every map the programs share with userspace. Names start with `SM_` so `bpftool map` shows
//! whose they are.
use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use monitor_common::{
    DENY_TABLE_LEN, DenyEntry, ExecArgs, ExecDenyName, ExecDenyPath, ExitData, FileEvent, Listener,
    NetDenyKey, PendingSyscall, SocketKey, TcpConnection, config, family, loss,
    ops::MAX_SYSCALL_NR,
};

/// Every event goes through this one ring buffer (size set by userspace at load time).
#[map]
pub static SM_EVENTS: RingBuf = RingBuf::with_byte_size(16 * 1024 * 1024, 0);

/// Run-time switches written by userspace: see `monitor_common::config`.
#[map]
pub static SM_CONFIG: Array<u64> = Array::with_max_entries(config::LEN, 0);

/// Syscall number → `monitor_common::ops` code, filled by userspace from libc::SYS_*.
#[map]
pub static SM_OPS: Array<u32> = Array::with_max_entries(MAX_SYSCALL_NR, 0);

/// Ring-buffer reservation failures per family, summed by userspace.
#[map]
pub static SM_DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(family::COUNT, 0);

/// Other losses in the kernel, by `monitor_common::loss` index, summed by userspace.
#[map]
pub static SM_LOSSES: PerCpuArray<u64> = PerCpuArray::with_max_entries(loss::COUNT, 0);

/// Syscall arguments saved at sys_enter until sys_exit, by thread id. A plain hash (cheaper
/// than LRU on the hot path): a thread that dies inside a syscall never reaches sys_exit, so
/// `sm_sched_exit` deletes its entry.
#[map]
pub static SM_PENDING: HashMap<u32, PendingSyscall> = HashMap::with_max_entries(32768, 0);

/// argv and filename copied at execve entry (the old memory is gone by sched_process_exec).
#[map]
pub static SM_EXEC_ARGS: LruHashMap<u32, ExecArgs> = LruHashMap::with_max_entries(1024, 0);

/// Per-CPU scratch space to build an `ExecArgs` (too large for the 512-byte stack).
#[map]
pub static SM_SCRATCH: PerCpuArray<ExecArgs> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU scratch space to build a file record before copying its used part into the ring
/// (`probes::file`). Used only at `sys_exit`, in task context, so never by two programs at
/// once on one CPU.
#[map]
pub static SM_FILE_SCRATCH: PerCpuArray<FileEvent> = PerCpuArray::with_max_entries(1, 0);

/// Exit status by tgid, recorded at exit_group()/fatal signal, reported at sched_process_exit.
#[map]
pub static SM_EXIT_STATUS: LruHashMap<u32, ExitData> = LruHashMap::with_max_entries(16384, 0);

/// Live TCP connections by socket address, from their first state change until TCP_CLOSE.
#[map]
pub static SM_TCP: LruHashMap<u64, TcpConnection> = LruHashMap::with_max_entries(65536, 0);

/// Listening sockets by (tgid, fd), to give accepted connections their local address.
#[map]
pub static SM_LISTENERS: LruHashMap<SocketKey, Listener> = LruHashMap::with_max_entries(4096, 0);

/// Last signal sent to each pid (`signal_generate`): the kernel turns a fatal signal into a
/// group-wide SIGKILL before delivery, so this remembers which signal it really was.
#[map]
pub static SM_LAST_SIGNAL: LruHashMap<u32, u32> = LruHashMap::with_max_entries(16384, 0);

/// Enforcement (opt-in, filled by userspace only when `[response] enforce` is on): programs
/// killed at exec by the normalised path given to execve, or by name.
#[map]
pub static SM_DENY_EXEC_PATH: HashMap<ExecDenyPath, DenyEntry> =
    HashMap::with_max_entries(DENY_TABLE_LEN, 0);
#[map]
pub static SM_DENY_EXEC_NAME: HashMap<ExecDenyName, DenyEntry> =
    HashMap::with_max_entries(DENY_TABLE_LEN, 0);

/// Enforcement: the file names (as comm) of the paths in `SM_DENY_EXEC_PATH`. An exec whose
/// path is spelled so that it cannot be compared (relative, `//`, `.`/`..` components,
/// `/dev/fd/N`, longer than a key) is killed when its name is here: the spelling cannot
/// evade a path entry. Userspace never lists the names of protected programs.
#[map]
pub static SM_DENY_EXEC_SUSPECT: HashMap<ExecDenyName, DenyEntry> =
    HashMap::with_max_entries(DENY_TABLE_LEN, 0);

/// Enforcement: connects refused by `cgroup/connect4|6` (port 0 = every port).
#[map]
pub static SM_DENY_NET: HashMap<NetDenyKey, DenyEntry> =
    HashMap::with_max_entries(DENY_TABLE_LEN, 0);

/// Per-CPU room to build an `ExecDenyPath` key (256 bytes is half the BPF stack).
#[map]
pub static SM_DENY_KEY: PerCpuArray<ExecDenyPath> = PerCpuArray::with_max_entries(1, 0);
