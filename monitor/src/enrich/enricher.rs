//! Stage 3: kernel records → [`Event`]s with process context.
//!
//! Keeps the process table current from fork/exec/exit/chdir records, resolves every path to
//! an absolute, normalised one (relative to the process's cwd or to the directory fd the
//! syscall named), converts kernel timestamps to wall-clock time, and names users.
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
};

use monitor_common::{
    AT_FDCWD, EventHeader, ExecEvent, FileEvent, FilePairEvent, NetData, NetEvent, PrivilegeEvent,
    SYMLINK_TARGET_DIRFD, kind, ops,
};
use rustc_hash::FxHashMap;

use super::{
    ProcessTable, UserNames,
    failed_connects::{FailedConnects, errno_name},
    sockets::{Protocol, endpoints},
};
use crate::{
    capture::BootClock,
    decode::Record,
    event::{Event, EventType, SharedStr},
    losses::{Loss, Losses},
    paths::{self, KnownPath},
    sanitize::{lossy, lossy_str},
};

/// Process-table size: far above the number of live processes on a normal host.
const PROCESS_TABLE_CAPACITY: usize = 32_768;
/// How long an exited process stays in the table for late events (e.g. its net_close).
const EXITED_GRACE_NS: u64 = 30_000_000_000;
/// fds remembered across all processes before the table is reset.
const MAX_OPEN_FDS: usize = 65_536;
/// What the fds processes opened name, by pid then fd: a process's exit forgets its entries
/// at once (a scan of every entry on every exit cost ~23 % of enrichment with 30,000
/// processes).
#[derive(Debug, Default)]
struct FdTable {
    by_pid: FxHashMap<u32, FxHashMap<i32, KnownPath>>,
    len: usize,
}

impl FdTable {
    fn get(&self, pid: u32, fd: i32) -> Option<&KnownPath> {
        self.by_pid.get(&pid)?.get(&fd)
    }

    fn insert(&mut self, pid: u32, fd: i32, path: KnownPath) {
        if self
            .by_pid
            .entry(pid)
            .or_default()
            .insert(fd, path)
            .is_none()
        {
            self.len += 1;
        }
    }

    /// Remembers `path` for `fd` unless it is what the fd named already (a loop opening one
    /// file gets the same fd each time): then nothing is copied.
    fn remember(&mut self, pid: u32, fd: i32, path: &KnownPath) {
        if self.get(pid, fd) != Some(path) {
            self.insert(pid, fd, path.clone());
        }
    }

    fn forget_process(&mut self, pid: u32) {
        if let Some(fds) = self.by_pid.remove(&pid) {
            self.len -= fds.len();
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    fn clear(&mut self) {
        self.by_pid.clear();
        self.len = 0;
    }
}

/// How far up the tree `ancestors` goes.
pub const MAX_ANCESTORS: usize = 8;

pub struct Enricher {
    procs: ProcessTable,
    users: UserNames,
    clock: BootClock,
    proc_root: PathBuf,
    records_since_evict: u32,
    /// What each fd seen opened names, by pid then fd. fd numbers are reused, so a process's
    /// entries stay few; they are dropped when it exits.
    open_fds: FdTable,
    /// fd entries forgotten when `open_fds` hit its bound (later events on them lack a path).
    fds_forgotten: u64,
    /// Failed connects per process and address: most are counted, not reported.
    failed_connects: FailedConnects,
    open_flag_names: OpenFlagNames,
}

impl Enricher {
    /// A table seeded from the running system's /proc.
    pub fn new() -> Enricher {
        Enricher::with_proc_root(Path::new("/proc"), UserNames::system())
    }

    pub fn with_proc_root(proc_root: &Path, users: UserNames) -> Enricher {
        let mut procs = ProcessTable::new(PROCESS_TABLE_CAPACITY);
        procs.seed_from_proc(proc_root);
        Enricher {
            procs,
            users,
            clock: BootClock::now(),
            proc_root: proc_root.to_path_buf(),
            records_since_evict: 0,
            open_fds: FdTable::default(),
            open_flag_names: OpenFlagNames::default(),
            fds_forgotten: 0,
            failed_connects: FailedConnects::default(),
        }
    }

    pub fn processes(&self) -> &ProcessTable {
        &self.procs
    }

    /// Copies what this stage lost so far (context forgotten to stay bounded) into `losses`.
    pub fn record_losses(&self, losses: &Losses) {
        losses.observe(Loss::ProcessTableEviction, self.procs.live_evictions());
        losses.observe(Loss::FdTableReset, self.fds_forgotten);
    }

    /// Turns a kernel record into an event; `None` for records that only update state (chdir).
    /// (The pipeline builds into a reused slot with [`Enricher::process_into`].)
    pub fn process(&mut self, record: &Record) -> Option<Event> {
        let mut event = Event::new(EventType::ProcessExec, chrono::DateTime::UNIX_EPOCH);
        self.process_into(record, &mut event).then_some(event)
    }

    /// Builds the event of a kernel record in `event`, a slot reused from record to record
    /// (everything it held before is replaced); false for records that only update state
    /// (chdir), and then `event` holds nothing worth reading.
    ///
    /// In place because an [`Event`] is ~800 bytes: returned by value from each helper, then
    /// from here, then handed on, it was copied three or four times per event (~40 % of the
    /// pipeline's memcpy in callgrind), and a fresh one allocated its analysis' texts again.
    pub fn process_into(&mut self, record: &Record, event: &mut Event) -> bool {
        self.maybe_evict(record.header().timestamp_ns);
        match record {
            Record::Exec(e) => self.exec(e, event),
            Record::Fork(e) => {
                // Know the parent first, so the child inherits its comm, exe and cwd.
                let _ = self.procs.get_or_load(e.data.parent_pid, &self.proc_root);
                self.procs
                    .on_fork(e.data.parent_pid, e.data.child_pid, e.header.timestamp_ns);
                self.base(event, &e.header, EventType::ProcessFork);
                event.pid = e.data.child_pid;
                event.tid = e.data.child_pid;
                self.add_process_context(event);
            }
            Record::Exit(e) => {
                self.base(event, &e.header, EventType::ProcessExit);
                self.add_process_context(event);
                if e.data.exited == 1 {
                    event.exit_code = Some(e.data.exit_code);
                } else if e.data.signal != 0 {
                    event.exit_signal = Some(e.data.signal);
                    // What a shell reports (128 + signal); the kernel's value is untrusted
                    // input here, and no real signal is near the limit (found by fuzzing).
                    event.exit_code = i32::try_from(e.data.signal)
                        .ok()
                        .and_then(|signal| signal.checked_add(128));
                }
                self.procs.on_exit(e.header.pid, e.header.timestamp_ns);
                self.open_fds.forget_process(e.header.pid);
                self.failed_connects.forget_process(e.header.pid);
            }
            Record::Ptrace(e) => {
                self.base(event, &e.header, EventType::Ptrace);
                self.add_process_context(event);
                event.ptrace_request = Some(ptrace_request_name(e.data.request));
                event.target_pid = Some(e.data.target_pid);
            }
            Record::Chdir(e) => {
                let pid = e.header.pid;
                let new_cwd = if e.data.fd == AT_FDCWD {
                    self.join_cwd(pid, &lossy_str(&e.data.path))
                } else {
                    let Some(cwd) = self.read_link(pid, "cwd") else {
                        return false;
                    };
                    KnownPath::exact(cwd)
                };
                self.procs.on_chdir(pid, new_cwd);
                return false;
            }
            Record::File(e) if e.header.kind == kind::FD_DUP => {
                let pid = e.header.pid;
                if let Some(path) = self.open_fds.get(pid, e.data.dirfd).cloned() {
                    self.open_fds.insert(pid, e.data.ret, path);
                }
                return false;
            }
            Record::File(e) => self.file(e, event),
            Record::FilePair(e) => self.file_pair(e, event),
            Record::Privilege(e) => self.privilege(e, event),
            Record::Net(e) => return self.net(e, event),
            Record::BpfLoad(e) => {
                self.base(event, &e.header, EventType::BpfLoad);
                self.add_process_context(event);
                event.bpf_prog_type = Some(e.data.prog_type);
                event.bpf_prog_name = Some(lossy(&e.data.prog_name));
            }
            Record::ModuleLoad(e) => {
                self.base(event, &e.header, EventType::ModuleLoad);
                self.add_process_context(event);
                event.syscall = Some(op_name(e.data.op));
                event.module_params = Some(lossy(&e.data.params));
                if e.data.fd >= 0
                    && let Some(known) = self.fd_path(e.header.pid, e.data.fd)
                {
                    event.truncated |= known.cut;
                    event.file_path = Some(known.path);
                }
            }
        }
        true
    }

    fn maybe_evict(&mut self, now_ns: u64) {
        self.records_since_evict += 1;
        if self.records_since_evict >= 4096 {
            self.records_since_evict = 0;
            self.procs.evict_exited(now_ns, EXITED_GRACE_NS);
            // Bounded: a process that opens directories without ever exiting cannot grow it
            // forever (entries are dropped at exit; this is the backstop).
            if self.open_fds.len() > MAX_OPEN_FDS {
                self.fds_forgotten += self.open_fds.len() as u64;
                self.open_fds.clear();
            }
        }
    }

    /// Resets `event` for a new one, with the fields every event has, from the kernel header.
    fn base(&mut self, event: &mut Event, header: &EventHeader, event_type: EventType) {
        event.reset(event_type, self.clock.to_wall(header.timestamp_ns));
        event.pid = header.pid;
        event.tid = header.tid;
        event.uid = header.uid;
        event.user = self.users.name(header.uid);
        event.process = self.comm_of(header.pid, header.tid, &header.comm);
        event.cgroup_id = header.cgroup_id;
        event.truncated = header.truncated != 0;
    }

    /// The kernel's comm for the acting thread `tid` of `pid`, shared with the process table's
    /// when they are the same text (nearly always: a comm changes only at exec or a rename).
    ///
    /// A different comm on the main thread (`tid == pid`) means the process renamed itself
    /// (`prctl(PR_SET_NAME)`, a write to `/proc/<pid>/comm`): the table follows, so that its
    /// children's `parent_process` and `ancestors`, and the rules that read them, show the name
    /// the kernel shows. Other threads' names are their own and leave the process's alone.
    fn comm_of(&mut self, pid: u32, tid: u32, raw: &[u8]) -> SharedStr {
        let bytes = raw.split(|&b| b == 0).next().unwrap_or_default();
        if let Some(info) = self.procs.get(pid)
            && info.comm.as_bytes() == bytes
        {
            return info.comm.clone();
        }
        let comm = SharedStr::from(lossy(raw));
        if tid == pid {
            self.procs.on_rename(pid, comm.clone());
        }
        comm
    }

    /// ppid, exe, cmdline, parent and ancestors from the process table.
    fn add_process_context(&mut self, event: &mut Event) {
        if event.pid == 0 {
            return;
        }
        if let Some(info) = self.procs.get_or_load(event.pid, &self.proc_root) {
            event.ppid = info.ppid;
            event.exe = info.exe.clone();
            event.cmdline = info.cmdline();
        }
        self.procs
            .ancestor_names_into(event.pid, MAX_ANCESTORS, &mut event.ancestors);
        if let Some(parent) = event.ancestors.first() {
            event.parent_process = parent.clone();
        }
    }

    fn exec(&mut self, e: &ExecEvent, event: &mut Event) {
        let pid = e.header.pid;
        let filename = lossy_str(&e.data.filename);
        let exe = if filename.starts_with('/') {
            KnownPath::exact(paths::normalize(&filename))
        } else {
            // Make sure the process (and so its cwd) is known before resolving against it.
            let _ = self.procs.get_or_load(pid, &self.proc_root);
            self.join_cwd(pid, &filename)
        };
        let exe_cut = exe.cut;
        let argc = (e.data.argv.argc as usize).min(e.data.argv.args.len());
        let mut argv: Vec<String> = e.data.argv.args[..argc].iter().map(|a| lossy(a)).collect();
        if argv.is_empty() {
            argv = self.proc_cmdline(pid);
        }
        self.procs.on_exec(
            pid,
            lossy(&e.header.comm),
            exe.path,
            argv.clone(),
            e.header.uid,
            e.header.timestamp_ns,
        );
        self.base(event, &e.header, EventType::ProcessExec);
        self.add_process_context(event);
        event.argv = Some(argv);
        event.blocked = e.data.killed != 0;
        // argv cut in the kernel, or a relative name resolved against a cwd secmon had to cut.
        if e.data.argv.more & 1 != 0 || exe_cut {
            event.truncated = true;
        }
    }

    fn file(&mut self, e: &FileEvent, event: &mut Event) {
        let d = &e.data;
        let pid = e.header.pid;
        let (event_type, flags) = match e.header.kind {
            kind::FILE_OPEN => {
                let writes = d.flags as i32
                    & (libc::O_WRONLY | libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC)
                    != 0;
                let event_type = if writes {
                    EventType::FileWrite
                } else {
                    EventType::FileOpen
                };
                (event_type, Some(self.open_flag_names.get(d.flags as i32)))
            }
            kind::FILE_DELETE => (
                EventType::FileDelete,
                (d.flags & libc::AT_REMOVEDIR as u64 != 0).then(|| SharedStr::from("AT_REMOVEDIR")),
            ),
            _ => (EventType::FileChmod, None),
        };
        self.base(event, &e.header, event_type);
        self.add_process_context(event);
        event.syscall = Some(op_name(d.op));
        event.flags = flags;
        let known = if d.op == ops::FCHMOD || d.op == ops::FTRUNCATE {
            self.fd_path(pid, d.dirfd)
        } else {
            Some(self.resolve_at(pid, d.dirfd, &lossy_str(&d.path)))
        };
        if let Some(known) = known {
            // Remember what each fd names, for later *at() calls relative to a directory fd
            // and for fchmod/ftruncate (the fd may be closed and the process gone by the time
            // /proc could be asked: `rm -rf` and `find -delete` work that way).
            if e.header.kind == kind::FILE_OPEN
                && d.ret >= 0
                && d.op != ops::FTRUNCATE
                && d.op != ops::TRUNCATE
            {
                self.open_fds.remember(pid, d.ret, &known);
            }
            event.truncated |= known.cut;
            event.file_path = Some(known.path);
        }
        let creates = d.flags as i32 & libc::O_CREAT != 0;
        if event_type == EventType::FileChmod || creates {
            event.mode = Some(d.mode & 0o7777);
        }
    }

    fn file_pair(&mut self, e: &FilePairEvent, event: &mut Event) {
        let d = &e.data;
        let pid = e.header.pid;
        let event_type = if e.header.kind == kind::FILE_RENAME {
            EventType::FileRename
        } else {
            EventType::FileLink
        };
        self.base(event, &e.header, event_type);
        self.add_process_context(event);
        let new_path = self.resolve_at(pid, d.new_dirfd, &lossy(&d.new_path));
        let old_text = lossy(&d.old_path);
        let old_path = if d.old_dirfd == SYMLINK_TARGET_DIRFD {
            // A symlink's target is relative to the directory holding the link.
            let link_dir = Path::new(&new_path.path)
                .parent()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_else(|| "/".to_string());
            KnownPath {
                path: link_dir,
                cut: new_path.cut,
            }
            .join(&old_text)
        } else {
            self.resolve_at(pid, d.old_dirfd, &old_text)
        };
        event.syscall = Some(op_name(d.op));
        event.truncated |= old_path.cut || new_path.cut;
        event.file_path = Some(old_path.path);
        event.new_path = Some(new_path.path);
        if d.flags != 0 {
            event.flags = Some(SharedStr::from(format!("{:#x}", d.flags)));
        }
    }

    fn privilege(&mut self, e: &PrivilegeEvent, event: &mut Event) {
        let d = &e.data;
        self.base(event, &e.header, EventType::PrivilegeChange);
        self.add_process_context(event);
        event.syscall = Some(op_name(d.op));
        event.old_uid = Some(d.old_uid);
        event.old_gid = Some(d.old_gid);
        // The id that takes effect: the effective one where the call sets several (-1 = keep).
        let effective = match d.op {
            ops::SETREUID | ops::SETREGID | ops::SETRESUID | ops::SETRESGID => {
                [d.new_ids[1], d.new_ids[0]]
                    .into_iter()
                    .find(|id| *id != u32::MAX)
            }
            _ => Some(d.new_ids[0]).filter(|id| *id != u32::MAX),
        };
        match d.op {
            ops::SETUID | ops::SETREUID | ops::SETRESUID | ops::SETFSUID => {
                event.new_uid = Some(effective.unwrap_or(d.old_uid));
            }
            ops::SETGID | ops::SETREGID | ops::SETRESGID | ops::SETFSGID => {
                event.new_gid = Some(effective.unwrap_or(d.old_gid));
            }
            ops::CAPSET => event.capabilities = Some(d.caps),
            _ => {}
        }
    }

    /// False for what turns out not to be a network event, or a failed connect only counted.
    fn net(&mut self, e: &NetEvent, event: &mut Event) -> bool {
        let d = &e.data;
        let event_type = match e.header.kind {
            kind::NET_CONNECT => EventType::NetConnect,
            kind::NET_ACCEPT => EventType::NetAccept,
            kind::NET_LISTEN => EventType::NetListen,
            kind::NET_UDP => EventType::NetUdp,
            kind::NET_CONNECT_FAILED => EventType::NetConnectFailed,
            _ => EventType::NetClose,
        };
        self.base(event, &e.header, event_type);
        self.add_process_context(event);
        event.protocol = Some(if d.protocol == 17 { "udp" } else { "tcp" }.to_string());
        event.blocked = d.flags & monitor_common::net_flags::BLOCKED != 0;
        let ip = |addr: &[u8; 16]| -> Option<IpAddr> {
            match d.family {
                2 => Some(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]).into()),
                10 => Some(Ipv6Addr::from(*addr).into()),
                _ => None,
            }
        };
        if d.protocol != 17 {
            event.source_ip = ip(&d.src_addr);
            event.source_port = Some(d.src_port);
        }
        if event_type != EventType::NetListen {
            event.target_ip = ip(&d.dst_addr);
            event.target_port = Some(d.dst_port);
        }
        if d.fd >= 0 {
            if event_type == EventType::NetAccept && (d.src_port == 0 || d.dst_port == 0) {
                self.fill_endpoints_from_proc(event, d.fd, Protocol::Tcp, true);
                // Neither the kernel nor /proc/net/tcp knows it: not an IP socket (a unix
                // socket's accept), which is not a network event.
                if event.source_ip.is_none() && d.family == 0 {
                    return false;
                }
            } else if d.protocol == 17 {
                // The kernel probes see a datagram's destination, not the local end.
                self.fill_endpoints_from_proc(event, d.fd, Protocol::Udp, false);
            }
        }
        if event_type == EventType::NetClose {
            event.bytes_sent = Some(d.bytes_sent);
            event.bytes_received = Some(d.bytes_received);
            event.duration_ms = Some(d.duration_ns as f64 / 1e6);
        }
        if event_type == EventType::NetConnectFailed {
            return self.failed_connect(event, d, e.header.timestamp_ns);
        }
        true
    }

    /// A failed connect: reported (true), with the count of its window, or only counted (see
    /// [`FailedConnects`]).
    fn failed_connect(&mut self, event: &mut Event, d: &NetData, now_ns: u64) -> bool {
        // The kernel reports the local end only of connects that got as far as a SYN.
        if event.source_port == Some(0) {
            event.source_ip = None;
            event.source_port = None;
        }
        let Some(addr) = event.target_ip else {
            return false;
        };
        let Some(attempts) = self.failed_connects.count(event.pid, addr, now_ns) else {
            return false;
        };
        event.attempts = Some(attempts);
        event.error = errno_name(d.error);
        if d.duration_ns > 0 {
            event.duration_ms = Some(d.duration_ns as f64 / 1e6);
        }
        true
    }

    /// Endpoints the kernel probes did not see, from /proc (see `sockets`); `remote_too` also
    /// replaces the remote end.
    fn fill_endpoints_from_proc(
        &self,
        event: &mut Event,
        fd: i32,
        protocol: Protocol,
        remote_too: bool,
    ) {
        if let Some(found) = endpoints(&self.proc_root, event.pid, fd, protocol) {
            event.source_ip = Some(found.local.0);
            event.source_port = Some(found.local.1);
            if remote_too {
                event.target_ip = Some(found.remote.0);
                event.target_port = Some(found.remote.1);
            }
        }
    }

    /// `path` resolved against the cwd of `pid` (read in place: no copy of the cwd).
    fn join_cwd(&self, pid: u32, path: &str) -> KnownPath {
        match self.procs.get(pid).map(|p| &p.cwd) {
            Some(cwd) if !cwd.path.is_empty() => cwd.join(path),
            _ => KnownPath::exact("/".to_string()).join(path),
        }
    }

    /// Resolves `path` as the kernel did for `*at(dirfd, path)`.
    fn resolve_at(&mut self, pid: u32, dirfd: i32, path: &str) -> KnownPath {
        if path.starts_with('/') {
            return KnownPath::exact(paths::normalize(path));
        }
        if dirfd == AT_FDCWD {
            let _ = self.procs.get_or_load(pid, &self.proc_root);
            return self.join_cwd(pid, path);
        }
        // The fd may be closed by now: best effort, and say which fd it was otherwise.
        self.fd_path(pid, dirfd)
            .unwrap_or_else(|| KnownPath::exact(format!("/proc/{pid}/fd/{dirfd}")))
            .join(path)
    }

    fn fd_path(&self, pid: u32, fd: i32) -> Option<KnownPath> {
        self.open_fds.get(pid, fd).cloned().or_else(|| {
            self.read_link(pid, &format!("fd/{fd}"))
                .map(KnownPath::exact)
        })
    }

    fn read_link(&self, pid: u32, name: &str) -> Option<String> {
        let target = std::fs::read_link(self.proc_root.join(pid.to_string()).join(name)).ok()?;
        Some(target.to_string_lossy().into_owned())
    }

    fn proc_cmdline(&self, pid: u32) -> Vec<String> {
        std::fs::read(self.proc_root.join(pid.to_string()).join("cmdline"))
            .map(|bytes| {
                bytes
                    .split(|b| *b == 0)
                    .filter(|a| !a.is_empty())
                    .take(monitor_common::MAX_ARGS)
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Default for Enricher {
    fn default() -> Self {
        Enricher::new()
    }
}

/// [`open_flags`] kept per value: a program opens with a handful of flag combinations, and each
/// event then takes a reference to the shared text instead of writing its own (this runs for
/// every open).
#[derive(Default)]
struct OpenFlagNames {
    names: FxHashMap<i32, SharedStr>,
}

impl OpenFlagNames {
    /// Combinations kept at most. Only the named bits are the key, so there are few; the bound
    /// is for safety (flags come from the traced program).
    const CAPACITY: usize = 256;

    fn get(&mut self, flags: i32) -> SharedStr {
        let key = flags & OPEN_FLAGS_NAMED_BITS;
        if let Some(names) = self.names.get(&key) {
            return names.clone();
        }
        let names = SharedStr::from(open_flags(key));
        if self.names.len() < Self::CAPACITY {
            self.names.insert(key, names.clone());
        }
        names
    }
}

/// The open flags [`open_flags`] names after the access mode, in that order.
const NAMED_OPEN_FLAGS: [(i32, &str); 11] = [
    (libc::O_CREAT, "O_CREAT"),
    (libc::O_EXCL, "O_EXCL"),
    (libc::O_NOCTTY, "O_NOCTTY"),
    (libc::O_TRUNC, "O_TRUNC"),
    (libc::O_APPEND, "O_APPEND"),
    (libc::O_NONBLOCK, "O_NONBLOCK"),
    (libc::O_DIRECTORY, "O_DIRECTORY"),
    (libc::O_NOFOLLOW, "O_NOFOLLOW"),
    (libc::O_CLOEXEC, "O_CLOEXEC"),
    (libc::O_PATH, "O_PATH"),
    (libc::O_TMPFILE & !libc::O_DIRECTORY, "O_TMPFILE"),
];

/// The bits [`open_flags`] reads: the access mode and [`NAMED_OPEN_FLAGS`].
const OPEN_FLAGS_NAMED_BITS: i32 = {
    let mut bits = libc::O_ACCMODE;
    let mut i = 0;
    while i < NAMED_OPEN_FLAGS.len() {
        bits |= NAMED_OPEN_FLAGS[i].0;
        i += 1;
    }
    bits
};

/// `O_WRONLY|O_CREAT|O_TRUNC` style names for open flags, written into one string.
pub fn open_flags(flags: i32) -> String {
    let access = match flags & libc::O_ACCMODE {
        libc::O_WRONLY => "O_WRONLY",
        libc::O_RDWR => "O_RDWR",
        _ => "O_RDONLY",
    };
    let mut names = String::with_capacity(64);
    names.push_str(access);
    for (bit, name) in NAMED_OPEN_FLAGS {
        if flags & bit == bit && bit != 0 {
            names.push('|');
            names.push_str(name);
        }
    }
    names
}

pub fn ptrace_request_name(request: i64) -> String {
    match request {
        0 => "PTRACE_TRACEME".into(),
        4 => "PTRACE_POKETEXT".into(),
        5 => "PTRACE_POKEDATA".into(),
        6 => "PTRACE_POKEUSER".into(),
        13 => "PTRACE_SETREGS".into(),
        15 => "PTRACE_SETFPREGS".into(),
        16 => "PTRACE_ATTACH".into(),
        0x4205 => "PTRACE_SETREGSET".into(),
        0x4206 => "PTRACE_SEIZE".into(),
        other => format!("PTRACE_{other}"),
    }
}

/// The syscall name of an op, for the `syscall` field: one shared string per name, built once
/// from the probe table, so an event takes a reference rather than a copy (this runs for every
/// file event).
pub fn op_name(op: u32) -> SharedStr {
    static NAMES: std::sync::OnceLock<FxHashMap<u32, SharedStr>> = std::sync::OnceLock::new();
    static UNKNOWN: std::sync::OnceLock<SharedStr> = std::sync::OnceLock::new();
    NAMES
        .get_or_init(|| {
            crate::capture::probes::syscalls()
                .into_iter()
                .map(|p| (p.op, SharedStr::from(p.name)))
                .collect()
        })
        .get(&op)
        .unwrap_or_else(|| UNKNOWN.get_or_init(|| SharedStr::from("unknown")))
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_flags_are_named() {
        assert_eq!(open_flags(libc::O_RDONLY), "O_RDONLY");
        assert_eq!(
            open_flags(libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC),
            "O_WRONLY|O_CREAT|O_TRUNC"
        );
        assert_eq!(
            open_flags(libc::O_RDWR | libc::O_CLOEXEC),
            "O_RDWR|O_CLOEXEC"
        );
    }

    proptest::proptest! {
        /// The kept names are what `open_flags` writes for the same flags, whatever the bits
        /// the key leaves out.
        #[test]
        fn kept_open_flag_names_are_open_flags(flags in proptest::prelude::any::<i32>()) {
            let mut names = OpenFlagNames::default();
            let (first, second) = (names.get(flags), names.get(flags));
            proptest::prop_assert_eq!(first.as_str(), open_flags(flags));
            // The second time, from the map: the same shared text.
            proptest::prop_assert!(second.ptr_eq(&first));
        }
    }

    #[test]
    fn kept_open_flag_names_are_bounded() {
        let mut names = OpenFlagNames::default();
        let named: Vec<i32> = NAMED_OPEN_FLAGS.iter().map(|(bit, _)| *bit).collect();
        // Every combination of the first nine named bits: 512 keys, twice what may be kept.
        for combination in 0..512u32 {
            let flags = named
                .iter()
                .take(9)
                .enumerate()
                .filter(|(i, _)| combination & (1 << i) != 0)
                .fold(0, |all, (_, bit)| all | bit);
            assert_eq!(names.get(flags).as_str(), open_flags(flags));
        }
        assert_eq!(names.names.len(), OpenFlagNames::CAPACITY);
    }

    #[test]
    fn op_names_come_from_the_probe_table() {
        assert_eq!(op_name(ops::RENAMEAT2), "renameat2");
        assert_eq!(op_name(ops::SETRESUID), "setresuid");
        assert_eq!(op_name(9999), "unknown");
    }
}
