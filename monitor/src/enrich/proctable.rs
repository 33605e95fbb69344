//! The process table: what secmon knows about each process, rebuilt from fork/exec/exit events
//! and seeded from `/proc`.
//!
//! The kernel side cannot read `task_struct` here (no BTF, no kprobes), so parent pid, executable,
//! arguments and cwd come from this table: seeded from `/proc` at start, kept up to date by events,
//! and filled lazily from `/proc` for a pid seen for the first time ([`ProcessTable::get_or_load`]).
//!
//! Everything read here is untrusted: `comm` and argv are chosen by the process, paths by whoever
//! named the files. Strings are lossy UTF-8 and bounded in size; show them only through
//! [`crate::sanitize::for_terminal`].
//!
//! # Bounding
//!
//! The table never holds more than `capacity` entries. When an insert finds it full, one pass over
//! the table frees an eighth of it: exited entries first (oldest exit first), then the entries
//! updated least recently. That pass is O(n), but it runs once per `capacity / 8` inserts, so an
//! insert costs O(1) amortised even when a fork bomb keeps the table full, and no per-update
//! bookkeeping (LRU list) is needed: an update only stamps a counter.
//!
//! Memory per entry is bounded by what the events and `/proc` bring: argv read from `/proc` is at
//! most [`MAX_ARGS`] × [`MAX_ARG_LEN`] bytes; argv passed to [`ProcessTable::on_exec`] is stored as
//! given (the capture side bounds it).
//!
//! # Timestamps
//!
//! `now_ns` arguments are the event timestamps (the kernel's clock). `start_ns` of a process read
//! from `/proc` is its start time since boot (`/proc/<pid>/stat` field 22), which equals the
//! monotonic clock unless the machine has been suspended.

use crate::paths::KnownPath;
use crate::shared_str::SharedStr;
use rustc_hash::FxHashMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::Path;

/// At most this many arguments are read from `/proc/<pid>/cmdline`.
pub const MAX_ARGS: usize = 16;
/// Each argument read from `/proc` is cut to at most this many bytes (of UTF-8).
pub const MAX_ARG_LEN: usize = 4096;
/// At most this many bytes of `/proc/<pid>/cmdline` are read (arguments longer than
/// [`MAX_ARG_LEN`] are skipped over, not stored, so later arguments are still seen).
const MAX_CMDLINE_SCAN: u64 = 256 * 1024;
/// The uid of a process whose uid we could not learn (it is `(uid_t)-1`, never a real user).
pub const UID_UNKNOWN: u32 = u32::MAX;

/// What the table knows about one process (thread group).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessInfo {
    pub pid: u32,
    /// Parent's pid; 0 when unknown.
    pub ppid: u32,
    /// The task's comm (set by the kernel from the executable name, changeable by the process).
    pub comm: SharedStr,
    /// Absolute path of the executable; empty when unknown (kernel threads).
    pub exe: SharedStr,
    pub argv: Vec<String>,
    /// The arguments joined by single spaces, made once at exec (every event carries it).
    pub cmdline: SharedStr,
    /// Real uid; [`UID_UNKNOWN`] when unknown.
    pub uid: u32,
    /// Working directory (empty when unknown), and whether secmon had to cut it.
    pub cwd: KnownPath,
    /// When the process started (fork event time, or boot-relative time from `/proc`).
    pub start_ns: u64,
    /// Set by the exit event. The entry stays a while so that late events still find it.
    pub exited_ns: Option<u64>,
}

impl ProcessInfo {
    /// The arguments joined by single spaces.
    pub fn cmdline(&self) -> SharedStr {
        self.cmdline.clone()
    }
}

#[derive(Debug)]
struct Entry {
    info: ProcessInfo,
    /// Value of the table's clock at the last update: smaller means updated longer ago.
    touched: u64,
}

/// The most ancestors a walk up the tree returns (a bound for the pids it remembers to stop at
/// a cycle; events carry 8).
const MAX_WALK: usize = 64;

/// Processes by pid, bounded in size (see the module documentation).
#[derive(Debug)]
pub struct ProcessTable {
    entries: FxHashMap<u32, Entry>,
    capacity: usize,
    /// Logical clock for `Entry::touched`.
    clock: u64,
    /// `sysconf(_SC_CLK_TCK)`: the unit of `/proc/<pid>/stat` times.
    clk_tck: u64,
    /// Live processes forgotten to make room (what their later events lose is counted).
    live_evictions: u64,
}

impl ProcessTable {
    /// An empty table that will never hold more than `capacity` entries (at least 1).
    pub fn new(capacity: usize) -> ProcessTable {
        ProcessTable {
            entries: FxHashMap::default(),
            capacity: capacity.max(1),
            clock: 0,
            clk_tck: clock_ticks_per_second(),
            live_evictions: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Live (not exited) processes evicted since start because the table was full.
    pub fn live_evictions(&self) -> u64 {
        self.live_evictions
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds every process listed in `proc_root` (normally `/proc`) that the table does not know
    /// yet. Processes that vanish while we read them are skipped. Returns how many were added.
    pub fn seed_from_proc(&mut self, proc_root: &Path) -> usize {
        let Ok(dir) = fs::read_dir(proc_root) else {
            return 0;
        };
        let mut added = 0;
        for entry in dir.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(parse_pid) else {
                continue;
            };
            if self.entries.contains_key(&pid) {
                continue;
            }
            if let Some(info) = load_from_proc(proc_root, pid, self.clk_tck) {
                self.insert(info);
                added += 1;
            }
        }
        added
    }

    /// `parent` forked `child` at `now_ns`. The child starts as a copy of the parent (comm, exe,
    /// argv, uid, cwd) when the parent is known, and empty (uid [`UID_UNKNOWN`]) otherwise. An
    /// older entry for `child` (a reused pid) is replaced. `parent == child` (a thread, or a bogus
    /// event) is ignored, so that no process becomes its own parent.
    pub fn on_fork(&mut self, parent: u32, child: u32, now_ns: u64) {
        if parent == child {
            return;
        }
        let stamp = self.tick();
        let info = match self.entries.get_mut(&parent) {
            Some(entry) => {
                entry.touched = stamp;
                ProcessInfo {
                    pid: child,
                    ppid: parent,
                    start_ns: now_ns,
                    exited_ns: None,
                    ..entry.info.clone()
                }
            }
            None => ProcessInfo {
                pid: child,
                ppid: parent,
                uid: UID_UNKNOWN,
                start_ns: now_ns,
                ..ProcessInfo::default()
            },
        };
        self.insert(info);
    }

    /// `pid` executed a new program at `now_ns`. Updates comm, exe, argv and uid, keeping ppid,
    /// cwd and start time. Creates the entry (ppid 0, empty cwd) when the pid is unknown, or when
    /// its entry exited before `now_ns`: the pid was reused and we missed the fork.
    pub fn on_exec(
        &mut self,
        pid: u32,
        comm: String,
        exe: String,
        argv: Vec<String>,
        uid: u32,
        now_ns: u64,
    ) {
        let stamp = self.tick();
        let comm = SharedStr::from(comm);
        let exe = SharedStr::from(exe);
        let cmdline = SharedStr::from(argv.join(" "));
        if let Some(entry) = self.entries.get_mut(&pid) {
            // An exec stamped before the exit is a late event of that same process.
            let same_process = entry.info.exited_ns.is_none_or(|exited| now_ns <= exited);
            if same_process {
                entry.info.comm = comm;
                entry.info.exe = exe;
                entry.info.argv = argv;
                entry.info.cmdline = cmdline;
                entry.info.uid = uid;
                entry.touched = stamp;
                return;
            }
        }
        self.insert(ProcessInfo {
            pid,
            ppid: 0,
            comm,
            exe,
            argv,
            cmdline,
            uid,
            cwd: KnownPath::default(),
            start_ns: now_ns,
            exited_ns: None,
        });
    }

    /// `pid` renamed itself to `comm` (seen on its main thread's events). Unknown and exited
    /// pids are ignored: a late event of an exited process says nothing about a pid's new owner.
    pub fn on_rename(&mut self, pid: u32, comm: SharedStr) {
        let stamp = self.tick();
        if let Some(entry) = self.entries.get_mut(&pid)
            && entry.info.exited_ns.is_none()
        {
            entry.info.comm = comm;
            entry.touched = stamp;
        }
    }

    /// `pid` exited at `now_ns`. The entry stays until [`ProcessTable::evict_exited`] removes it
    /// after a grace period, or room is needed. A second exit keeps the first time. Unknown pids
    /// are ignored.
    pub fn on_exit(&mut self, pid: u32, now_ns: u64) {
        if let Some(entry) = self.entries.get_mut(&pid) {
            entry.info.exited_ns.get_or_insert(now_ns);
        }
    }

    /// `pid` changed its working directory to `new_cwd` (absolute, resolved by the caller).
    /// Unknown pids are ignored: load them first with [`ProcessTable::get_or_load`], which reads
    /// the cwd from `/proc` anyway.
    pub fn on_chdir(&mut self, pid: u32, new_cwd: KnownPath) {
        let stamp = self.tick();
        if let Some(entry) = self.entries.get_mut(&pid) {
            entry.info.cwd = new_cwd;
            entry.touched = stamp;
        }
    }

    /// What we know about `pid`, exited or not.
    pub fn get(&self, pid: u32) -> Option<&ProcessInfo> {
        self.entries.get(&pid).map(|entry| &entry.info)
    }

    /// Like [`ProcessTable::get`], but reads an unknown pid from `proc_root` (normally `/proc`)
    /// and adds it. `None` when the process is unknown and cannot be read (it is gone). A hit
    /// counts as use for eviction.
    pub fn get_or_load(&mut self, pid: u32, proc_root: &Path) -> Option<&ProcessInfo> {
        if self.entries.contains_key(&pid) {
            let stamp = self.tick();
            let entry = self.entries.get_mut(&pid)?;
            entry.touched = stamp;
            return Some(&entry.info);
        }
        let info = load_from_proc(proc_root, pid, self.clk_tck)?;
        self.insert(info);
        self.get(pid)
    }

    /// `(pid, comm)` of up to `max` ancestors of `pid`, parent first. Stops at an unknown pid, at
    /// ppid 0, and at the first pid seen twice (pid reuse can make the recorded tree cyclic).
    /// Costs O(max²) at worst; keep `max` small.
    pub fn ancestors(&self, pid: u32, max: usize) -> Vec<(u32, SharedStr)> {
        let mut out = Vec::new();
        self.walk_ancestors(pid, max, |ppid, parent| {
            out.push((ppid, parent.comm.clone()))
        });
        out
    }

    /// The names of [`ProcessTable::ancestors`] into `out` (cleared first): what every event
    /// carries, built in the event's own vector, so its buffer is reused.
    pub fn ancestor_names_into(&self, pid: u32, max: usize, out: &mut Vec<SharedStr>) {
        out.clear();
        self.walk_ancestors(pid, max, |_, parent| out.push(parent.comm.clone()));
    }

    /// Calls `visit` with (pid, entry) of each ancestor of `pid`, parent first, as
    /// [`ProcessTable::ancestors`] describes; at most [`MAX_WALK`] of them.
    fn walk_ancestors(&self, pid: u32, max: usize, mut visit: impl FnMut(u32, &ProcessInfo)) {
        let mut seen = [0u32; MAX_WALK];
        let max = max.min(MAX_WALK);
        let Some(mut current) = self.get(pid) else {
            return;
        };
        let mut count = 0;
        while count < max {
            let ppid = current.ppid;
            if ppid == 0 || ppid == pid || seen[..count].contains(&ppid) {
                break;
            }
            let Some(parent) = self.get(ppid) else {
                break;
            };
            visit(ppid, parent);
            seen[count] = ppid;
            count += 1;
            current = parent;
        }
    }

    /// Like [`ProcessTable::ancestors`], but loads unknown processes on the way from `proc_root`
    /// (see [`ProcessTable::get_or_load`]).
    pub fn ancestors_or_load(
        &mut self,
        pid: u32,
        max: usize,
        proc_root: &Path,
    ) -> Vec<(u32, SharedStr)> {
        let mut out: Vec<(u32, SharedStr)> = Vec::new();
        let mut current = pid;
        while out.len() < max {
            let Some(ppid) = self.get_or_load(current, proc_root).map(|p| p.ppid) else {
                break;
            };
            if ppid == 0 || ppid == pid || out.iter().any(|(seen, _)| *seen == ppid) {
                break;
            }
            let Some(comm) = self.get_or_load(ppid, proc_root).map(|p| p.comm.clone()) else {
                break;
            };
            out.push((ppid, comm));
            current = ppid;
        }
        out
    }

    /// Removes entries that exited at least `grace_ns` before `now_ns`. O(n): call it
    /// periodically (say once a second), not per event.
    pub fn evict_exited(&mut self, now_ns: u64, grace_ns: u64) {
        self.entries.retain(|_, entry| match entry.info.exited_ns {
            Some(exited) => now_ns.saturating_sub(exited) < grace_ns,
            None => true,
        });
    }

    fn tick(&mut self) -> u64 {
        self.clock = self.clock.wrapping_add(1);
        self.clock
    }

    /// Inserts or replaces the entry for `info.pid`, making room first if that adds an entry.
    fn insert(&mut self, info: ProcessInfo) {
        let pid = info.pid;
        if !self.entries.contains_key(&pid) {
            self.make_room();
        }
        let touched = self.tick();
        self.entries.insert(pid, Entry { info, touched });
    }

    /// When the table is full, frees an eighth of it (at least one entry): exited entries first,
    /// oldest exit first, then the least recently updated.
    fn make_room(&mut self) {
        if self.entries.len() < self.capacity {
            return;
        }
        let keep = self.capacity - (self.capacity / 8).max(1);
        let mut need = self.entries.len().saturating_sub(keep);

        let mut exited: Vec<(u64, u64, u32)> = self
            .entries
            .iter()
            .filter_map(|(&pid, e)| e.info.exited_ns.map(|t| (t, e.touched, pid)))
            .collect();
        take_smallest(&mut exited, need);
        for &(_, _, pid) in &exited {
            self.entries.remove(&pid);
        }
        need -= exited.len();
        if need == 0 {
            return;
        }

        // Only live entries are left.
        let mut live: Vec<(u64, u32)> = self
            .entries
            .iter()
            .map(|(&pid, e)| (e.touched, pid))
            .collect();
        take_smallest(&mut live, need);
        for &(_, pid) in &live {
            self.entries.remove(&pid);
        }
        self.live_evictions += live.len() as u64;
    }
}

/// Keeps the `n` smallest items of `items` (in no particular order), in O(len).
fn take_smallest<T: Ord>(items: &mut Vec<T>, n: usize) {
    if n == 0 {
        items.clear();
    } else if items.len() > n {
        items.select_nth_unstable(n - 1);
        items.truncate(n);
    }
}

/// A `/proc` directory name as a pid: digits only, not 0.
fn parse_pid(name: &str) -> Option<u32> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    name.parse().ok().filter(|&pid| pid != 0)
}

fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions and only reads configuration.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100)
}

/// Reads `/proc/<pid>` under `proc_root`. `None` when `stat` cannot be read or parsed (the
/// process is gone, or never existed); other files that cannot be read leave their fields empty.
fn load_from_proc(proc_root: &Path, pid: u32, clk_tck: u64) -> Option<ProcessInfo> {
    let dir = proc_root.join(pid.to_string());
    let stat = parse_stat(&read_bounded(&dir.join("stat"), 8192).ok()?)?;

    let comm = read_bounded(&dir.join("comm"), 256)
        .ok()
        .map(|bytes| {
            let bytes = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
            String::from_utf8_lossy(bytes).into_owned()
        })
        .filter(|comm| !comm.is_empty())
        .unwrap_or(stat.comm);
    let uid = read_bounded(&dir.join("status"), 64 * 1024)
        .ok()
        .and_then(|bytes| parse_status_uid(&bytes))
        .unwrap_or(UID_UNKNOWN);
    let argv = read_cmdline(&dir.join("cmdline")).unwrap_or_default();

    Some(ProcessInfo {
        pid,
        ppid: stat.ppid,
        comm: comm.into(),
        exe: read_link_lossy(&dir.join("exe")).into(),
        cmdline: argv.join(" ").into(),
        argv,
        uid,
        cwd: KnownPath::exact(read_link_lossy(&dir.join("cwd"))),
        start_ns: ticks_to_ns(stat.start_ticks, clk_tck),
        exited_ns: None,
    })
}

fn ticks_to_ns(ticks: u64, clk_tck: u64) -> u64 {
    let ns = u128::from(ticks) * 1_000_000_000 / u128::from(clk_tck.max(1));
    u64::try_from(ns).unwrap_or(u64::MAX)
}

fn read_link_lossy(path: &Path) -> String {
    fs::read_link(path)
        .map(|target| target.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn read_bounded(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    File::open(path)?.take(limit).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The fields of `/proc/<pid>/stat` we use.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Stat {
    pub comm: String,
    /// `R`, `S`, `Z` (a zombie), `X` (dead)…
    pub state: u8,
    pub ppid: u32,
    /// The kernel's `PF_*` flags of the task.
    pub flags: u64,
    pub start_ticks: u64,
}

/// The kernel's flag for a kernel thread (`PF_KTHREAD`) in [`Stat::flags`].
const PF_KTHREAD: u64 = 0x0020_0000;

impl Stat {
    pub fn is_kernel_thread(&self) -> bool {
        self.flags & PF_KTHREAD != 0
    }
}

/// `/proc/<pid>/stat` of a live process (`None`: gone, or never existed).
pub(crate) fn read_stat(pid: u32) -> Option<Stat> {
    parse_stat(&read_bounded(Path::new(&format!("/proc/{pid}/stat")), 8192).ok()?)
}

/// Parses `pid (comm) state ppid ... flags ... starttime ...`. The comm may contain spaces,
/// parentheses and any byte but NUL, so it runs from the first `(` to the *last* `)`.
fn parse_stat(bytes: &[u8]) -> Option<Stat> {
    let open = bytes.iter().position(|&b| b == b'(')?;
    let close = bytes.iter().rposition(|&b| b == b')')?;
    if close <= open {
        return None;
    }
    let comm = String::from_utf8_lossy(bytes.get(open + 1..close)?).into_owned();
    let rest = std::str::from_utf8(bytes.get(close + 1..)?).ok()?;
    // Fields after the comm, numbered as in proc(5): state is field 3, ppid 4, flags 9,
    // starttime 22.
    let mut fields = rest.split_ascii_whitespace();
    let state = *fields.next()?.as_bytes().first()?;
    let ppid = fields.next()?.parse().ok()?;
    let flags = fields.nth(9 - 5)?.parse().ok()?;
    let start_ticks = fields.nth(22 - 10)?.parse().ok()?;
    Some(Stat {
        comm,
        state,
        ppid,
        flags,
        start_ticks,
    })
}

/// The real uid from `/proc/<pid>/status` (`Uid:\treal\teffective\tsaved\tfs`).
fn parse_status_uid(bytes: &[u8]) -> Option<u32> {
    bytes
        .split(|&b| b == b'\n')
        .find_map(|line| line.strip_prefix(b"Uid:"))
        .and_then(|rest| std::str::from_utf8(rest).ok())
        .and_then(|rest| rest.split_ascii_whitespace().next())
        .and_then(|uid| uid.parse().ok())
}

/// Reads a NUL-separated argument list: at most [`MAX_ARGS`] arguments of at most
/// [`MAX_ARG_LEN`] bytes each, from the first [`MAX_CMDLINE_SCAN`] bytes. A process may have
/// rewritten its arguments (setproctitle): a last argument without a terminating NUL is kept.
fn read_cmdline(path: &Path) -> io::Result<Vec<String>> {
    let mut file = File::open(path)?.take(MAX_CMDLINE_SCAN);
    let mut buf = [0u8; 8192];
    let mut argv = Vec::new();
    let mut current: Vec<u8> = Vec::new();
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        for &byte in &buf[..n] {
            if byte == 0 {
                argv.push(bounded_lossy(&current));
                current.clear();
                if argv.len() == MAX_ARGS {
                    return Ok(argv);
                }
            } else if current.len() < MAX_ARG_LEN {
                current.push(byte);
            }
        }
    }
    if !current.is_empty() {
        argv.push(bounded_lossy(&current));
    }
    Ok(argv)
}

/// Lossy UTF-8 of `bytes`, cut on a character boundary to at most [`MAX_ARG_LEN`] bytes
/// (replacement characters can make the text longer than the bytes).
fn bounded_lossy(bytes: &[u8]) -> String {
    let mut s = String::from_utf8_lossy(bytes).into_owned();
    if s.len() > MAX_ARG_LEN {
        let mut end = MAX_ARG_LEN;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::path::PathBuf;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn stat_line(pid: u32, comm: &str, ppid: u32, start_ticks: u64) -> String {
        format!(
            "{pid} ({comm}) S {ppid} {pid} {pid} 0 -1 4194560 1234 0 0 0 5 3 0 0 20 0 1 0 \
             {start_ticks} 12345678 890 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
        )
    }

    fn status_text(name: &str, ppid: u32, uid: u32) -> String {
        format!(
            "Name:\t{name}\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t1\nPPid:\t{ppid}\n\
             Uid:\t{uid}\t{euid}\t{uid}\t{uid}\nGid:\t0\t0\t0\t0\n",
            euid = uid + 1
        )
    }

    /// A fake `/proc/<pid>` directory.
    struct FakeProc<'a> {
        pid: u32,
        stat: Option<Vec<u8>>,
        comm: Option<Vec<u8>>,
        status: Option<String>,
        cmdline: Option<Vec<u8>>,
        exe: Option<&'a str>,
        cwd: Option<&'a str>,
    }

    impl<'a> FakeProc<'a> {
        fn new(pid: u32, comm: &str, ppid: u32, uid: u32) -> FakeProc<'a> {
            FakeProc {
                pid,
                stat: Some(stat_line(pid, comm, ppid, 100 + u64::from(pid)).into_bytes()),
                comm: Some(format!("{comm}\n").into_bytes()),
                status: Some(status_text(comm, ppid, uid)),
                cmdline: None,
                exe: None,
                cwd: None,
            }
        }

        fn write(&self, root: &Path) -> io::Result<PathBuf> {
            let dir = root.join(self.pid.to_string());
            fs::create_dir_all(&dir)?;
            if let Some(stat) = &self.stat {
                fs::write(dir.join("stat"), stat)?;
            }
            if let Some(comm) = &self.comm {
                fs::write(dir.join("comm"), comm)?;
            }
            if let Some(status) = &self.status {
                fs::write(dir.join("status"), status)?;
            }
            if let Some(cmdline) = &self.cmdline {
                fs::write(dir.join("cmdline"), cmdline)?;
            }
            if let Some(exe) = self.exe {
                symlink(exe, dir.join("exe"))?;
            }
            if let Some(cwd) = self.cwd {
                symlink(cwd, dir.join("cwd"))?;
            }
            Ok(dir)
        }
    }

    fn exec(table: &mut ProcessTable, pid: u32, comm: &str, now: u64) {
        table.on_exec(
            pid,
            comm.to_string(),
            format!("/usr/bin/{comm}"),
            vec![comm.to_string(), "--flag".to_string()],
            1000,
            now,
        );
    }

    #[test]
    fn cmdline_joins_argv_once_at_exec() {
        let mut table = ProcessTable::new(8);
        let argv = vec!["ls".to_string(), "-la".into(), "/tmp dir".into()];
        table.on_exec(7, "ls".into(), "/usr/bin/ls".into(), argv, 0, 1);
        let info = table.get(7).cloned().unwrap_or_default();
        assert_eq!(info.cmdline(), "ls -la /tmp dir");
        let again = table.get(7).map(ProcessInfo::cmdline).unwrap_or_default();
        assert!(
            again.ptr_eq(&info.cmdline),
            "made once, shared by every event"
        );
        assert_eq!(ProcessInfo::default().cmdline(), "");
    }

    #[test]
    fn parse_stat_handles_hostile_comm() {
        for comm in [
            "bash",
            "a b c",
            "x)",
            ") )",
            "((",
            "evil) R 1 2 3",
            "(sd-pam)",
            "",
        ] {
            let line = stat_line(42, comm, 7, 999);
            let stat = parse_stat(line.as_bytes());
            assert_eq!(
                stat,
                Some(Stat {
                    comm: comm.to_string(),
                    state: b'S',
                    ppid: 7,
                    flags: 4194560,
                    start_ticks: 999
                }),
                "{comm:?}"
            );
        }
        // A newline and invalid UTF-8 in the comm.
        let mut line = b"5 (a\n\xff) S 3 ".to_vec();
        line.extend_from_slice(b"0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 77 0\n");
        let stat = parse_stat(&line);
        assert_eq!(
            stat.map(|s| (s.comm, s.ppid, s.start_ticks)),
            Some(("a\n\u{fffd}".to_string(), 3, 77))
        );
    }

    #[test]
    fn parse_stat_rejects_garbage() {
        assert_eq!(parse_stat(b""), None);
        assert_eq!(parse_stat(b"1 bash S 1"), None);
        assert_eq!(parse_stat(b"1 )bash( S 1 2"), None);
        assert_eq!(parse_stat(b"1 (bash) S"), None);
        assert_eq!(parse_stat(b"1 (bash) S x 0 0 0"), None);
        // Truncated before starttime.
        assert_eq!(parse_stat(b"1 (bash) S 1 1 1 0 -1 0 0 0 0 0"), None);
    }

    #[test]
    fn parse_status_uid_takes_real_uid() {
        assert_eq!(
            parse_status_uid(status_text("x", 1, 1000).as_bytes()),
            Some(1000)
        );
        assert_eq!(parse_status_uid(b"Name:\tx\nGid:\t0\n"), None);
        assert_eq!(parse_status_uid(b"Uid:\tabc\n"), None);
    }

    #[test]
    fn cmdline_is_bounded_and_lossy() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("cmdline");

        fs::write(&path, b"/bin/sh\0-c\0echo hi\0")?;
        assert_eq!(read_cmdline(&path)?, ["/bin/sh", "-c", "echo hi"]);

        // Empty arguments are kept; a missing final NUL (setproctitle) keeps the last one.
        fs::write(&path, b"a\0\0b\0\0")?;
        assert_eq!(read_cmdline(&path)?, ["a", "", "b", ""]);
        fs::write(&path, b"nginx: worker process")?;
        assert_eq!(read_cmdline(&path)?, ["nginx: worker process"]);
        fs::write(&path, b"")?;
        assert!(read_cmdline(&path)?.is_empty());

        // Invalid UTF-8.
        fs::write(&path, b"x\xff\xfey\0")?;
        assert_eq!(read_cmdline(&path)?, ["x\u{fffd}\u{fffd}y"]);

        // More than MAX_ARGS arguments.
        let many: Vec<u8> = (0..40)
            .flat_map(|i| format!("arg{i}\0").into_bytes())
            .collect();
        fs::write(&path, &many)?;
        let argv = read_cmdline(&path)?;
        assert_eq!(argv.len(), MAX_ARGS);
        assert_eq!(argv[15], "arg15");

        // A huge argument is cut, and later arguments are still seen.
        let mut long = vec![b'A'; 100_000];
        long.extend_from_slice(b"\0--hidden-flag\0");
        fs::write(&path, &long)?;
        let argv = read_cmdline(&path)?;
        assert_eq!(argv.len(), 2);
        assert_eq!(argv[0].len(), MAX_ARG_LEN);
        assert_eq!(argv[1], "--hidden-flag");

        // Invalid bytes turn into 3-byte replacement characters: still at most MAX_ARG_LEN.
        fs::write(&path, vec![0xff; 10_000])?;
        let argv = read_cmdline(&path)?;
        assert_eq!(argv.len(), 1);
        assert!(argv[0].len() <= MAX_ARG_LEN);
        assert!(argv[0].chars().all(|c| c == '\u{fffd}'));

        // Multi-byte characters are not split.
        let mut accents = "é".repeat(3000).into_bytes();
        accents.push(0);
        fs::write(&path, &accents)?;
        let argv = read_cmdline(&path)?;
        assert_eq!(argv[0], "é".repeat(MAX_ARG_LEN / 2));
        Ok(())
    }

    #[test]
    fn seed_from_fixture() -> TestResult {
        let root = tempfile::tempdir()?;
        let root = root.path();

        let mut init = FakeProc::new(1, "systemd", 0, 0);
        init.cmdline = Some(b"/sbin/init\0splash\0".to_vec());
        init.exe = Some("/usr/lib/systemd/systemd");
        init.cwd = Some("/");
        init.write(root)?;

        let mut shell = FakeProc::new(200, "we ird) (name", 1, 1000);
        shell.cmdline = Some(b"-bash\0".to_vec());
        shell.exe = Some("/usr/bin/bash (deleted)");
        shell.cwd = Some("/home/alice/work dir");
        shell.write(root)?;

        // A kernel thread: no exe, no cwd, empty cmdline.
        let mut kthread = FakeProc::new(2, "kthreadd", 0, 0);
        kthread.cmdline = Some(Vec::new());
        kthread.write(root)?;

        // Only a stat file: everything else is missing (permissions, races).
        let mut bare = FakeProc::new(300, "bare", 200, 0);
        bare.comm = None;
        bare.status = None;
        bare.write(root)?;

        // Vanished before we read stat; and garbage in stat.
        let mut gone = FakeProc::new(400, "gone", 1, 0);
        gone.stat = None;
        gone.write(root)?;
        let mut garbage = FakeProc::new(401, "garbage", 1, 0);
        garbage.stat = Some(b"401 (garbage".to_vec());
        garbage.write(root)?;

        // Not processes.
        fs::create_dir(root.join("self-not-a-pid"))?;
        fs::create_dir(root.join("0"))?;
        fs::create_dir(root.join("+5"))?;
        fs::write(root.join("uptime"), "1.0 1.0\n")?;

        let mut table = ProcessTable::new(100);
        assert_eq!(table.seed_from_proc(root), 4);
        assert_eq!(table.len(), 4);

        let init = table.get(1).ok_or("init missing")?;
        assert_eq!(init.ppid, 0);
        assert_eq!(init.comm, "systemd");
        assert_eq!(init.exe, "/usr/lib/systemd/systemd");
        assert_eq!(init.argv, ["/sbin/init", "splash"]);
        assert_eq!(init.cmdline(), "/sbin/init splash");
        assert_eq!(init.uid, 0);
        assert_eq!(init.cwd.path, "/");
        assert_eq!(init.start_ns, ticks_to_ns(101, table.clk_tck));
        assert_eq!(init.exited_ns, None);

        let shell = table.get(200).ok_or("shell missing")?;
        assert_eq!(shell.ppid, 1);
        assert_eq!(shell.comm, "we ird) (name");
        assert_eq!(shell.exe, "/usr/bin/bash (deleted)");
        assert_eq!(shell.argv, ["-bash"]);
        assert_eq!(shell.uid, 1000, "real uid, not effective");
        assert_eq!(shell.cwd.path, "/home/alice/work dir");

        let kthread = table.get(2).ok_or("kthreadd missing")?;
        assert_eq!(kthread.exe, "");
        assert_eq!(kthread.cwd.path, "");
        assert!(kthread.argv.is_empty());

        let bare = table.get(300).ok_or("bare missing")?;
        assert_eq!(
            bare.comm, "bare",
            "comm from stat when the comm file is missing"
        );
        assert_eq!(bare.ppid, 200);
        assert_eq!(bare.uid, UID_UNKNOWN);
        assert!(bare.argv.is_empty());

        assert!(table.get(400).is_none());
        assert!(table.get(401).is_none());
        assert_eq!(
            table.ancestors(300, 8),
            [
                (200, SharedStr::from("we ird) (name")),
                (1, SharedStr::from("systemd"))
            ]
        );

        // Seeding again adds nothing and keeps what events told us.
        table.on_chdir(200, KnownPath::exact("/tmp".to_string()));
        assert_eq!(table.seed_from_proc(root), 0);
        assert_eq!(table.get(200).map(|p| p.cwd.path.as_str()), Some("/tmp"));

        assert_eq!(
            ProcessTable::new(10).seed_from_proc(&root.join("missing")),
            0
        );
        Ok(())
    }

    #[test]
    fn get_or_load_fills_lazily() -> TestResult {
        let root = tempfile::tempdir()?;
        let root = root.path();
        let mut p = FakeProc::new(77, "late", 1, 5);
        p.cmdline = Some(b"late\0--x\0".to_vec());
        p.write(root)?;

        let mut table = ProcessTable::new(10);
        assert!(table.get(77).is_none());
        let info = table.get_or_load(77, root).ok_or("not loaded")?;
        assert_eq!((info.ppid, info.comm.as_str(), info.uid), (1, "late", 5));
        assert_eq!(table.len(), 1);

        // Known pids come from the table, not /proc.
        table.on_chdir(77, KnownPath::exact("/srv".to_string()));
        assert_eq!(
            table.get_or_load(77, root).map(|p| p.cwd.path.as_str()),
            Some("/srv")
        );
        assert!(table.get_or_load(78, root).is_none());
        assert_eq!(table.len(), 1);
        Ok(())
    }

    #[test]
    fn fork_exec_exit_lifecycle() {
        let mut table = ProcessTable::new(100);
        exec(&mut table, 10, "bash", 1);
        table.on_chdir(10, KnownPath::exact("/home/alice".to_string()));

        table.on_fork(10, 11, 5);
        let child = table.get(11).cloned().unwrap_or_default();
        assert_eq!(child.ppid, 10);
        assert_eq!(child.comm, "bash");
        assert_eq!(child.exe, "/usr/bin/bash");
        assert_eq!(child.argv, ["bash", "--flag"]);
        assert_eq!(child.uid, 1000);
        assert_eq!(child.cwd.path, "/home/alice");
        assert_eq!(child.start_ns, 5);
        assert_eq!(child.exited_ns, None);

        table.on_exec(
            11,
            "curl".into(),
            "/usr/bin/curl".into(),
            vec!["curl".into(), "http://x".into()],
            0,
            6,
        );
        let child = table.get(11).cloned().unwrap_or_default();
        assert_eq!(child.comm, "curl");
        assert_eq!(child.exe, "/usr/bin/curl");
        assert_eq!(child.cmdline(), "curl http://x");
        assert_eq!(child.uid, 0);
        assert_eq!(child.ppid, 10, "exec keeps the parent");
        assert_eq!(child.cwd.path, "/home/alice", "exec keeps the cwd");
        assert_eq!(child.start_ns, 5, "exec keeps the start time");

        table.on_exit(11, 9);
        table.on_exit(11, 12);
        assert_eq!(table.get(11).and_then(|p| p.exited_ns), Some(9));
        // Exited entries still enrich late events.
        assert_eq!(table.ancestors(11, 4), [(10, SharedStr::from("bash"))]);

        // Events for unknown pids are ignored or create minimal entries.
        table.on_exit(999, 1);
        table.on_chdir(999, KnownPath::exact("/".to_string()));
        assert!(table.get(999).is_none());
        exec(&mut table, 500, "orphan", 3);
        assert_eq!(
            table.get(500).map(|p| (p.ppid, p.cwd.path.as_str())),
            Some((0, ""))
        );
    }

    #[test]
    fn fork_with_unknown_parent() {
        let mut table = ProcessTable::new(10);
        table.on_fork(42, 43, 7);
        let child = table.get(43).cloned().unwrap_or_default();
        assert_eq!(child.ppid, 42);
        assert_eq!(child.uid, UID_UNKNOWN);
        assert_eq!(child.comm, "");
        assert_eq!(child.start_ns, 7);
        assert!(table.get(42).is_none());
    }

    #[test]
    fn fork_to_self_is_ignored() {
        let mut table = ProcessTable::new(10);
        exec(&mut table, 5, "a", 1);
        table.on_fork(5, 5, 2);
        assert_eq!(table.get(5).map(|p| p.ppid), Some(0));
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn pid_reuse_replaces_the_entry() {
        let mut table = ProcessTable::new(10);
        exec(&mut table, 1, "init", 0);
        exec(&mut table, 2, "old", 1);
        table.on_chdir(2, KnownPath::exact("/old".to_string()));
        table.on_exit(2, 10);

        // Reused through a fork.
        table.on_fork(1, 2, 20);
        let p = table.get(2).cloned().unwrap_or_default();
        assert_eq!(
            (p.comm.as_str(), p.exited_ns, p.start_ns),
            ("init", None, 20)
        );

        // Reused with the fork missed: an exec after the exit starts a new entry.
        table.on_exit(2, 30);
        exec(&mut table, 2, "new", 40);
        let p = table.get(2).cloned().unwrap_or_default();
        assert_eq!(p.comm, "new");
        assert_eq!(p.exited_ns, None);
        assert_eq!(p.ppid, 0);
        assert_eq!(p.cwd.path, "");
        assert_eq!(p.start_ns, 40);

        // An exec stamped before the exit is a late event of the exited process.
        table.on_chdir(2, KnownPath::exact("/kept".to_string()));
        table.on_exit(2, 50);
        exec(&mut table, 2, "late", 45);
        let p = table.get(2).cloned().unwrap_or_default();
        assert_eq!(p.comm, "late");
        assert_eq!(p.exited_ns, Some(50));
        assert_eq!(p.cwd.path, "/kept");
    }

    #[test]
    fn ancestors_nearest_first_and_bounded() {
        let mut table = ProcessTable::new(100);
        exec(&mut table, 1, "systemd", 0);
        table.on_fork(1, 100, 1);
        exec(&mut table, 100, "sshd", 2);
        table.on_fork(100, 200, 3);
        exec(&mut table, 200, "bash", 4);
        table.on_fork(200, 300, 5);
        exec(&mut table, 300, "python3", 6);

        assert_eq!(
            table.ancestors(300, 10),
            [
                (200, SharedStr::from("bash")),
                (100, SharedStr::from("sshd")),
                (1, SharedStr::from("systemd"))
            ]
        );
        assert_eq!(table.ancestors(300, 2).len(), 2);
        assert!(table.ancestors(300, 0).is_empty());
        assert!(table.ancestors(1, 10).is_empty());
        assert!(table.ancestors(12345, 10).is_empty());

        // An unknown ancestor ends the chain.
        table.on_fork(777, 778, 7);
        assert!(table.ancestors(778, 10).is_empty());
    }

    #[test]
    fn a_rename_shows_in_the_childrens_ancestors() {
        let mut table = ProcessTable::new(100);
        exec(&mut table, 100, "bash", 0);
        table.on_fork(100, 200, 1);
        exec(&mut table, 200, "python3", 2);
        table.on_rename(200, SharedStr::from("kworker/0:7"));
        table.on_fork(200, 300, 3);
        exec(&mut table, 300, "true", 4);
        assert_eq!(
            table.ancestors(300, 10),
            [
                (200, SharedStr::from("kworker/0:7")),
                (100, SharedStr::from("bash"))
            ]
        );

        // Unknown pids stay unknown, and an exited process keeps its last name.
        table.on_rename(999, SharedStr::from("ghost"));
        assert!(table.get(999).is_none());
        table.on_exit(300, 5);
        table.on_rename(300, SharedStr::from("reused"));
        assert_eq!(
            table.get(300).map(|p| p.comm.clone()),
            Some(SharedStr::from("true"))
        );
    }

    #[test]
    fn ancestors_are_loop_safe() {
        let mut table = ProcessTable::new(100);
        // 1 → 2 → 3, then pid 1 exits and is reused as a child of 3: 1 → 3 → 2 → 1.
        exec(&mut table, 1, "one", 0);
        table.on_fork(1, 2, 1);
        table.on_fork(2, 3, 2);
        table.on_exit(1, 3);
        table.on_fork(3, 1, 4);
        assert_eq!(table.get(1).map(|p| p.ppid), Some(3));
        let chain = table.ancestors(3, 100);
        assert_eq!(chain.iter().map(|(p, _)| *p).collect::<Vec<_>>(), [2, 1]);
        let chain = table.ancestors(1, 100);
        assert_eq!(chain.iter().map(|(p, _)| *p).collect::<Vec<_>>(), [3, 2]);

        // A process that is its own parent (only possible with corrupt data).
        table.insert(ProcessInfo {
            pid: 9,
            ppid: 9,
            comm: "self".into(),
            ..ProcessInfo::default()
        });
        assert!(table.ancestors(9, 100).is_empty());

        // A cycle that does not include the start: 20 → 21 → 22 → 21.
        for (pid, ppid) in [(20, 21), (21, 22), (22, 21)] {
            table.insert(ProcessInfo {
                pid,
                ppid,
                ..ProcessInfo::default()
            });
        }
        let chain = table.ancestors(20, 100);
        assert_eq!(chain.iter().map(|(p, _)| *p).collect::<Vec<_>>(), [21, 22]);
    }

    #[test]
    fn ancestors_or_load_reads_missing_parents() -> TestResult {
        let root = tempfile::tempdir()?;
        let root = root.path();
        FakeProc::new(1, "init", 0, 0).write(root)?;
        FakeProc::new(50, "cron", 1, 0).write(root)?;

        let mut table = ProcessTable::new(10);
        table.on_fork(50, 60, 1);
        assert!(table.ancestors(60, 5).is_empty());
        assert_eq!(
            table.ancestors_or_load(60, 5, root),
            [(50, SharedStr::from("cron")), (1, SharedStr::from("init"))]
        );
        assert_eq!(table.len(), 3);
        assert_eq!(table.ancestors(60, 5).len(), 2);
        Ok(())
    }

    #[test]
    fn evict_exited_boundaries() {
        let mut table = ProcessTable::new(10);
        for pid in 1..=4 {
            exec(&mut table, pid, "p", 0);
        }
        table.on_exit(2, 100);
        table.on_exit(3, 150);
        table.evict_exited(149, 50);
        assert!(table.get(2).is_some(), "49 ns after exit, grace 50");
        assert!(table.get(3).is_some());
        table.evict_exited(150, 50);
        assert!(table.get(2).is_none(), "50 ns after exit, grace 50");
        assert!(table.get(3).is_some());
        // An exit time in the future (clock skew) is kept.
        table.evict_exited(10, 50);
        assert!(table.get(3).is_some());
        table.evict_exited(150, 0);
        assert!(table.get(3).is_none(), "grace 0 drops every exited entry");
        assert_eq!(table.len(), 2);
        assert!(table.get(1).is_some() && table.get(4).is_some());
    }

    #[test]
    fn full_table_evicts_exited_first() {
        let mut table = ProcessTable::new(8);
        for pid in 1..=8 {
            exec(&mut table, pid, "p", u64::from(pid));
        }
        table.on_exit(5, 100);
        table.on_exit(3, 50);
        // Process 1 is the least recently updated, but live.
        table.on_fork(2, 9, 200);
        assert_eq!(table.len(), 8);
        assert!(table.get(3).is_none(), "oldest exited entry goes first");
        assert!(table.get(5).is_some());
        assert!(table.get(1).is_some());
        assert!(table.get(9).is_some());
        assert_eq!(table.live_evictions(), 0, "an exited entry is no loss");
    }

    #[test]
    fn full_table_evicts_least_recently_updated() {
        let mut table = ProcessTable::new(8);
        for pid in 1..=8 {
            exec(&mut table, pid, "p", u64::from(pid));
        }
        // Touch 1 and 2; 3 becomes the least recently updated.
        table.on_chdir(1, KnownPath::exact("/".to_string()));
        exec(&mut table, 2, "q", 20);
        table.on_fork(4, 9, 30); // also touches the parent, 4
        assert_eq!(table.len(), 8);
        assert!(table.get(3).is_none());
        for pid in [1, 2, 4, 5, 6, 7, 8, 9] {
            assert!(table.get(pid).is_some(), "{pid} evicted");
        }
        assert_eq!(
            table.live_evictions(),
            1,
            "a live process forgotten is counted"
        );
        // A fork whose parent is the next in line: the parent's data is copied first.
        table.on_fork(5, 10, 40);
        assert_eq!(table.get(10).map(|p| p.comm.as_str()), Some("p"));
    }

    #[test]
    fn never_exceeds_capacity() {
        for capacity in [0, 1, 2, 3, 7, 8, 64, 100] {
            let mut table = ProcessTable::new(capacity);
            let bound = capacity.max(1);
            for i in 0..1000u32 {
                // A fork bomb with some exits and reused pids mixed in.
                table.on_fork(i % 50, i + 1, u64::from(i));
                if i % 3 == 0 {
                    table.on_exit(i / 2, u64::from(i));
                }
                exec(&mut table, i % 97 + 1, "x", u64::from(i));
                assert!(table.len() <= bound, "{} > {bound}", table.len());
            }
            assert_eq!(table.capacity(), bound);
            // The most recent process survives.
            assert!(table.get(1000).is_some() || bound == 1);
        }
    }

    #[test]
    fn eviction_is_batched() {
        let mut table = ProcessTable::new(64);
        for pid in 1..=64 {
            exec(&mut table, pid, "p", 0);
        }
        assert_eq!(table.len(), 64);
        exec(&mut table, 65, "p", 0);
        assert_eq!(table.len(), 64 - 8 + 1);
        // The eight least recently updated went: pids 1..=8.
        assert!((1..=8).all(|pid| table.get(pid).is_none()));
        assert!((9..=65).all(|pid| table.get(pid).is_some()));
    }

    #[test]
    fn real_proc_has_this_process() -> TestResult {
        let proc_root = Path::new("/proc");
        let pid = std::process::id();
        let expected_exe = std::env::current_exe()?;
        let expected_cwd = std::env::current_dir()?;
        let expected_argv0 = std::env::args().next().unwrap_or_default();

        let mut table = ProcessTable::new(1 << 16);
        let seeded = table.seed_from_proc(proc_root);
        assert!(seeded >= 2, "only {seeded} processes in /proc");
        assert_eq!(table.len(), seeded);

        let me = table.get(pid).ok_or("own pid not found in /proc")?;
        assert_eq!(me.ppid, std::os::unix::process::parent_id());
        assert_eq!(Path::new(me.exe.as_str()), expected_exe);
        assert_eq!(Path::new(&me.cwd.path), expected_cwd);
        assert_eq!(
            me.argv.first().map(String::as_str),
            Some(expected_argv0.as_str())
        );
        // SAFETY: getuid cannot fail and has no preconditions.
        assert_eq!(me.uid, unsafe { libc::getuid() });
        assert!(!me.comm.is_empty());
        assert_eq!(me.exited_ns, None);

        // The parent is there too (unless it is outside our pid namespace).
        let ancestors = table.ancestors(pid, 64);
        if table.get(me.ppid).is_some() {
            assert_eq!(ancestors.first().map(|a| a.0), Some(me.ppid));
        }

        // Lazy loading finds the same.
        let mut lazy = ProcessTable::new(4);
        let loaded = lazy
            .get_or_load(pid, proc_root)
            .cloned()
            .ok_or("lazy load")?;
        assert_eq!(loaded.ppid, std::os::unix::process::parent_id());
        assert_eq!(Path::new(loaded.exe.as_str()), expected_exe);
        Ok(())
    }
}
