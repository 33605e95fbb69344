//! Opt-in enforcement in the kernel: deny tables for exec (killed with SIGKILL at
//! `sched_process_exec`) and for connect (refused with EPERM by `cgroup/connect4|6` attached
//! to the cgroup v2 root). Only the response layer calls this, and only when the config says
//! `[response] enforce = true`; it applies its allowlist before asking for a block. The kernel
//! side itself never touches PID 1, the monitor or its parent shell. Dropping the `Capture`
//! detaches the programs and closes the tables: nothing stays blocked after the monitor exits.
//!
//! Exec paths are compared as normalised absolute paths. Since the kernel compares the path
//! as given to execve, each denied path's file name is also listed in
//! `SM_DENY_EXEC_SUSPECT`: an exec spelled otherwise (`./x`, `//`, `..`, `/dev/fd/N`, too long
//! to compare) is killed when its name is listed there, unless that name is spared
//! ([`Capture::spare_names`]: the protected programs' names).
use std::{
    collections::{HashMap as StdHashMap, HashSet},
    fs,
    net::IpAddr,
    os::fd::AsFd,
    path::PathBuf,
    time::Duration,
};

use aya::{
    Ebpf,
    maps::{HashMap, MapData},
    programs::{CgroupAttachMode, CgroupSockAddr},
};
use monitor_common::{
    COMM_LEN, DENY_PATH_LEN, DENY_TABLE_LEN, DenyEntry, ExecDenyName, ExecDenyPath, NetDenyKey,
    config,
};

use super::BootClock;
use super::{Capture, CaptureError, write};
use crate::paths;

/// The programs attached when enforcement is switched on.
pub const CONNECT_PROGRAMS: [&str; 2] = ["sm_connect4", "sm_connect6"];

/// What a deny entry matches.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum DenyTarget {
    /// A normalised absolute path ([`DenyTarget::exec_path`] makes one).
    ExecPath(String),
    /// The new program's name (its file name, cut to 15 bytes as the kernel does).
    ExecName(String),
    /// A destination address, and port (0: every port).
    Connect(IpAddr, u16),
}

impl DenyTarget {
    /// An exec path target for `path`, normalised (`//`, `.` and `..` resolved lexically, as
    /// the kernel's keys are written). Only absolute paths can be compared.
    pub fn exec_path(path: &str) -> Result<DenyTarget, EnforceError> {
        if !path.starts_with('/') {
            return Err(EnforceError::RelativePath(path.to_string()));
        }
        Ok(DenyTarget::ExecPath(paths::normalize(path)))
    }

    /// The deny table this target goes to.
    pub fn table(&self) -> DenyTable {
        match self {
            DenyTarget::ExecPath(_) => DenyTable::ExecPath,
            DenyTarget::ExecName(_) => DenyTable::ExecName,
            DenyTarget::Connect(..) => DenyTable::Connect,
        }
    }
}

/// The kernel's deny tables, each [`DENY_TABLE_LEN`] entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DenyTable {
    ExecPath,
    ExecName,
    Connect,
}

impl DenyTable {
    pub const CAPACITY: usize = DENY_TABLE_LEN as usize;
}

impl std::fmt::Display for DenyTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DenyTable::ExecPath => "exec path",
            DenyTable::ExecName => "exec name",
            DenyTable::Connect => "connect",
        })
    }
}

impl std::fmt::Display for DenyTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DenyTarget::ExecPath(path) => write!(f, "exec path {path}"),
            DenyTarget::ExecName(name) => write!(f, "exec name {name}"),
            DenyTarget::Connect(ip, 0) => write!(f, "connect {ip} (any port)"),
            DenyTarget::Connect(IpAddr::V6(ip), port) => write!(f, "connect [{ip}]:{port}"),
            DenyTarget::Connect(ip, port) => write!(f, "connect {ip}:{port}"),
        }
    }
}

/// A deny entry as userspace keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deny {
    pub id: u32,
    pub target: DenyTarget,
    /// CLOCK_MONOTONIC ns after which it lapses (also enforced by the kernel), or None.
    pub expires_ns: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum EnforceError {
    #[error("enforcement is not switched on (config: [response] enforce = true)")]
    NotEnabled,
    #[error("enforcement is unavailable on this kernel: {0}")]
    Unavailable(String),
    #[error("{0}: a path of {MAX_DENY_PATH} bytes or more cannot be denied")]
    PathTooLong(String),
    #[error("{0}: only an absolute path can be denied (the kernel compares normalised paths)")]
    RelativePath(String),
    #[error("{0}: not a normalised path (no `//`, `.` or `..`; see DenyTarget::exec_path)")]
    NotNormalised(String),
    #[error("a time to live of {0:?} is too long (its expiry overflows the clock)")]
    BadTtl(Duration),
    #[error(
        "the {table} deny table is full ({capacity} entries): remove entries with \
         secmon-tui unblock ID"
    )]
    TableFull { table: DenyTable, capacity: usize },
    #[error("deny entry ids are used up: restart the monitor")]
    IdsExhausted,
    #[error("`{0}` is not a usable program name (1 to 15 bytes, no '/')")]
    BadName(String),
    #[error("no cgroup v2 hierarchy is mounted (see /proc/mounts): connect denial needs one")]
    NoCgroup2,
    #[error("updating the kernel deny table failed: {0}")]
    Map(#[from] aya::maps::MapError),
    #[error(transparent)]
    Capture(#[from] CaptureError),
}

/// The deny tables and the connect programs' state.
pub(super) struct Enforcer {
    exec_path: HashMap<MapData, ExecDenyPath, DenyEntry>,
    exec_name: HashMap<MapData, ExecDenyName, DenyEntry>,
    exec_suspect: HashMap<MapData, ExecDenyName, DenyEntry>,
    net: HashMap<MapData, NetDenyKey, DenyEntry>,
    enabled: bool,
    denies: Vec<Deny>,
    next_id: u32,
    /// What `SM_DENY_EXEC_SUSPECT` holds now.
    suspects: StdHashMap<ExecDenyName, DenyEntry>,
    /// Names never listed in `SM_DENY_EXEC_SUSPECT` (the protected programs').
    spared: HashSet<ExecDenyName>,
}

impl Enforcer {
    pub(super) fn new(ebpf: &mut Ebpf) -> Result<Enforcer, CaptureError> {
        Ok(Enforcer {
            exec_path: super::take_map(ebpf, "SM_DENY_EXEC_PATH", HashMap::try_from)?,
            exec_name: super::take_map(ebpf, "SM_DENY_EXEC_NAME", HashMap::try_from)?,
            exec_suspect: super::take_map(ebpf, "SM_DENY_EXEC_SUSPECT", HashMap::try_from)?,
            net: super::take_map(ebpf, "SM_DENY_NET", HashMap::try_from)?,
            enabled: false,
            denies: Vec::new(),
            next_id: 1,
            suspects: StdHashMap::new(),
            spared: HashSet::new(),
        })
    }
}

/// The cgroup v2 mount point, from /proc/mounts (it is /sys/fs/cgroup/unified on hybrid
/// layouts, /sys/fs/cgroup on most distributions).
pub fn cgroup2_root() -> Option<PathBuf> {
    let mounts = fs::read_to_string("/proc/mounts").ok()?;
    mounts.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (_source, target, fstype) = (fields.next()?, fields.next()?, fields.next()?);
        (fstype == "cgroup2").then(|| PathBuf::from(target))
    })
}

impl Capture {
    pub fn enforcement_enabled(&self) -> bool {
        self.enforcer.enabled
    }

    /// Attaches the connect programs to the cgroup v2 root. Idempotent.
    pub fn enable_enforcement(&mut self) -> Result<(), EnforceError> {
        if self.enforcer.enabled {
            return Ok(());
        }
        let root = cgroup2_root().ok_or(EnforceError::NoCgroup2)?;
        let cgroup = fs::File::open(&root)
            .map_err(|e| EnforceError::Unavailable(format!("{}: {e}", root.display())))?;
        for name in CONNECT_PROGRAMS {
            let program: &mut CgroupSockAddr = self
                .ebpf
                .program_mut(name)
                .ok_or_else(|| {
                    EnforceError::Unavailable(format!("{name} missing from the object"))
                })?
                .try_into()
                .map_err(|e| EnforceError::Unavailable(format!("{name}: {e}")))?;
            if program.fd().is_err() {
                return Err(EnforceError::Unavailable(format!(
                    "{name} did not load at start (the kernel refused it)"
                )));
            }
            // Through a BPF link (aya uses one where the kernel has them), which always
            // coexists with other programs on the cgroup; "Single" just means no legacy flags.
            program
                .attach(cgroup.as_fd(), CgroupAttachMode::Single)
                .map_err(|e| EnforceError::Unavailable(format!("attaching {name}: {e}")))?;
        }
        self.enforcer.enabled = true;
        Ok(())
    }

    /// Names whose unusual spellings are never killed by the file-name check (the protected
    /// programs' names; compared as the kernel keeps names, 15 bytes).
    pub fn spare_names<'a>(&mut self, names: impl IntoIterator<Item = &'a str>) {
        self.enforcer.spared = names
            .into_iter()
            .filter_map(|name| exec_name_key(name).ok())
            .collect();
    }

    /// Adds a deny entry; `ttl` None keeps it until removed or the monitor exits. Everything
    /// is checked before the kernel is touched, and the entry itself is written last: a
    /// request that fails leaves the tables as they were.
    pub fn deny(
        &mut self,
        target: DenyTarget,
        ttl: Option<Duration>,
    ) -> Result<Deny, EnforceError> {
        if !self.enforcer.enabled {
            return Err(EnforceError::NotEnabled);
        }
        let expires_ns = ttl
            .map(|ttl| expiry_after(BootClock::monotonic_now(), ttl))
            .transpose()?;
        let key = TableKey::of(&target)?;
        // Lapsed entries still take room in the kernel until removed: remove them first.
        self.denies();
        let replacing = self.enforcer.denies.iter().any(|d| d.target == target);
        let table = target.table();
        if !replacing && self.entries_in(table) >= DenyTable::CAPACITY {
            return Err(EnforceError::TableFull {
                table,
                capacity: DenyTable::CAPACITY,
            });
        }
        let id = self.enforcer.next_id;
        let next_id = id.checked_add(1).ok_or(EnforceError::IdsExhausted)?;
        let deny = Deny {
            id,
            target,
            expires_ns,
        };
        let before = self.enforcer.denies.clone();
        self.enforcer.denies.retain(|d| d.target != deny.target);
        self.enforcer.denies.push(deny.clone());
        let entry = DenyEntry {
            expires_ns: expires_ns.unwrap_or(0),
            id,
            _pad: 0,
        };
        let written = self
            .sync_exec_side()
            .and_then(|()| self.write_entry(&key, Some(entry)));
        if let Err(e) = written {
            self.enforcer.denies = before;
            let _ = self.sync_exec_side();
            return Err(e);
        }
        self.enforcer.next_id = next_id;
        Ok(deny)
    }

    /// Live entries in one table.
    pub fn entries_in(&self, table: DenyTable) -> usize {
        self.enforcer
            .denies
            .iter()
            .filter(|d| d.target.table() == table)
            .count()
    }

    /// Removes the entry with this id; returns it, or None if there was none.
    pub fn undeny(&mut self, id: u32) -> Result<Option<Deny>, EnforceError> {
        let Some(index) = self.enforcer.denies.iter().position(|d| d.id == id) else {
            return Ok(None);
        };
        let key = TableKey::of(&self.enforcer.denies[index].target)?;
        // The entry first: once it is gone nothing is killed on its account.
        self.write_entry(&key, None)?;
        let deny = self.enforcer.denies.remove(index);
        self.sync_exec_side()?;
        Ok(Some(deny))
    }

    /// Removes every deny entry from the kernel's tables (best effort: at stop, an entry that
    /// cannot be removed is left to go with its program).
    pub(super) fn withdraw_all_denies(&mut self) {
        let ids: Vec<u32> = self.enforcer.denies.iter().map(|d| d.id).collect();
        for id in ids {
            let _ = self.undeny(id);
        }
    }

    /// Live deny entries (lapsed ones are dropped from the list and the kernel table).
    pub fn denies(&mut self) -> Vec<Deny> {
        let now = BootClock::monotonic_now();
        let lapsed: Vec<u32> = self
            .enforcer
            .denies
            .iter()
            .filter(|d| d.expires_ns.is_some_and(|t| t <= now))
            .map(|d| d.id)
            .collect();
        for id in lapsed {
            let _ = self.undeny(id);
        }
        self.enforcer.denies.clone()
    }

    /// The id and kind (`exec_path`, `exec_name`, `connect`) of every entry in the kernel's
    /// deny tables, read back from the maps: for tests that compare what userspace reports
    /// with what the kernel enforces.
    pub fn kernel_deny_ids(&self) -> Result<Vec<(u32, &'static str)>, EnforceError> {
        let e = &self.enforcer;
        let mut ids = Vec::new();
        for entry in e.exec_path.iter() {
            ids.push((entry?.1.id, "exec_path"));
        }
        for entry in e.exec_name.iter() {
            ids.push((entry?.1.id, "exec_name"));
        }
        for entry in e.net.iter() {
            ids.push((entry?.1.id, "connect"));
        }
        ids.sort_unstable();
        Ok(ids)
    }

    fn write_entry(
        &mut self,
        key: &TableKey,
        entry: Option<DenyEntry>,
    ) -> Result<(), EnforceError> {
        let e = &mut self.enforcer;
        match (key, entry) {
            // By reference: no copy of the 256-byte key.
            #[allow(clippy::needless_borrows_for_generic_args)]
            (TableKey::Path(key), Some(v)) => e.exec_path.insert(&**key, v, 0)?,
            (TableKey::Path(key), None) => remove_ignoring_absent(e.exec_path.remove(&**key))?,
            (TableKey::Name(key), Some(v)) => e.exec_name.insert(key, v, 0)?,
            (TableKey::Name(key), None) => remove_ignoring_absent(e.exec_name.remove(key))?,
            (TableKey::Net(key), Some(v)) => e.net.insert(key, v, 0)?,
            (TableKey::Net(key), None) => remove_ignoring_absent(e.net.remove(key))?,
        }
        Ok(())
    }

    /// Brings the exec side in line with the list: the file names of denied paths
    /// (`SM_DENY_EXEC_SUSPECT`, each lasting as long as its longest-lived path) and the switch
    /// telling the exec probe whether there is anything to check.
    fn sync_exec_side(&mut self) -> Result<(), EnforceError> {
        let e = &mut self.enforcer;
        let mut wanted: StdHashMap<ExecDenyName, DenyEntry> = StdHashMap::new();
        for deny in &e.denies {
            let DenyTarget::ExecPath(path) = &deny.target else {
                continue;
            };
            let Ok(name) = exec_name_key(file_name(path)) else {
                continue;
            };
            if e.spared.contains(&name) {
                continue;
            }
            let expires_ns = deny.expires_ns.unwrap_or(0);
            let slot = wanted.entry(name).or_insert(DenyEntry {
                expires_ns,
                id: deny.id,
                _pad: 0,
            });
            // 0 (never) outlives everything.
            if slot.expires_ns != 0 && (expires_ns == 0 || expires_ns > slot.expires_ns) {
                slot.expires_ns = expires_ns;
            }
        }
        let stale: Vec<ExecDenyName> = e
            .suspects
            .keys()
            .filter(|name| !wanted.contains_key(name))
            .copied()
            .collect();
        for name in stale {
            remove_ignoring_absent(e.exec_suspect.remove(&name))?;
            e.suspects.remove(&name);
        }
        for (name, entry) in wanted {
            if e.suspects.get(&name) != Some(&entry) {
                e.exec_suspect.insert(name, entry, 0)?;
                e.suspects.insert(name, entry);
            }
        }
        let any_exec = e
            .denies
            .iter()
            .any(|d| !matches!(d.target, DenyTarget::Connect(..)));
        write(
            &mut self.config,
            "SM_CONFIG",
            config::ENFORCE_EXEC,
            u64::from(any_exec),
        )?;
        Ok(())
    }
}

/// CLOCK_MONOTONIC ns `ttl` after `now`, or why not (checked: a huge TTL is an error, never
/// a wrapped or saturated time).
pub fn expiry_after(now_ns: u64, ttl: Duration) -> Result<u64, EnforceError> {
    u64::try_from(ttl.as_nanos())
        .ok()
        .and_then(|ns| now_ns.checked_add(ns))
        .ok_or(EnforceError::BadTtl(ttl))
}

/// A target's key in its kernel table, built (and checked) before anything is written.
enum TableKey {
    /// Boxed: 256 bytes against the others' 16 to 24.
    Path(Box<ExecDenyPath>),
    Name(ExecDenyName),
    Net(NetDenyKey),
}

impl TableKey {
    fn of(target: &DenyTarget) -> Result<TableKey, EnforceError> {
        Ok(match target {
            DenyTarget::ExecPath(path) => TableKey::Path(Box::new(exec_path_key(path)?)),
            DenyTarget::ExecName(name) => TableKey::Name(exec_name_key(name)?),
            DenyTarget::Connect(ip, port) => TableKey::Net(net_key(*ip, *port)),
        })
    }
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn remove_ignoring_absent(
    result: Result<(), aya::maps::MapError>,
) -> Result<(), aya::maps::MapError> {
    match result {
        Err(aya::maps::MapError::KeyNotFound) => Ok(()),
        other => other,
    }
}

/// Longest deniable path + 1: the kernel reads at most `DENY_PATH_LEN - 1` bytes, so a longer
/// path would be compared by its first bytes only (and such execs count as unusual spellings).
pub const MAX_DENY_PATH: usize = DENY_PATH_LEN - 1;

fn exec_path_key(path: &str) -> Result<ExecDenyPath, EnforceError> {
    let bytes = path.as_bytes();
    if !path.starts_with('/') {
        return Err(EnforceError::RelativePath(path.to_string()));
    }
    if paths::normalize(path) != path || bytes.contains(&0) {
        return Err(EnforceError::NotNormalised(path.to_string()));
    }
    if bytes.len() >= MAX_DENY_PATH {
        return Err(EnforceError::PathTooLong(path.to_string()));
    }
    let mut key = ExecDenyPath {
        path: [0; DENY_PATH_LEN],
    };
    key.path[..bytes.len()].copy_from_slice(bytes);
    Ok(key)
}

fn exec_name_key(name: &str) -> Result<ExecDenyName, EnforceError> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.contains(&b'/') || bytes.contains(&0) {
        return Err(EnforceError::BadName(name.to_string()));
    }
    // The kernel keeps the first 15 bytes of the file name as comm.
    let len = bytes.len().min(COMM_LEN - 1);
    let mut key = ExecDenyName {
        comm: [0; COMM_LEN],
    };
    key.comm[..len].copy_from_slice(&bytes[..len]);
    Ok(key)
}

fn net_key(ip: IpAddr, port: u16) -> NetDenyKey {
    let mut addr = [0u8; 16];
    let family = match ip {
        IpAddr::V4(v4) => {
            addr[..4].copy_from_slice(&v4.octets());
            2
        }
        IpAddr::V6(v6) => {
            addr = v6.octets();
            10
        }
    };
    NetDenyKey {
        family,
        port,
        _pad: 0,
        addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_nul_padded_and_bounded() {
        let key = exec_path_key("/tmp/x").expect("key");
        assert_eq!(&key.path[..7], b"/tmp/x\0");
        assert!(key.path[7..].iter().all(|b| *b == 0));
        let longest = format!("/{}", "a".repeat(MAX_DENY_PATH - 2));
        assert!(exec_path_key(&longest).is_ok());
        assert!(matches!(
            exec_path_key(&format!("{longest}a")),
            Err(EnforceError::PathTooLong(_))
        ));
        assert!(exec_path_key("").is_err());
        assert!(matches!(
            exec_path_key("./x"),
            Err(EnforceError::RelativePath(_))
        ));
        for odd in ["//tmp/x", "/tmp/./x", "/tmp/../tmp/x", "/tmp/x/"] {
            assert!(
                matches!(exec_path_key(odd), Err(EnforceError::NotNormalised(_))),
                "{odd}"
            );
        }
        let name = exec_name_key("a-very-long-program-name").expect("name");
        assert_eq!(&name.comm[..15], b"a-very-long-pro");
        assert_eq!(name.comm[15], 0);
        assert!(exec_name_key("a/b").is_err());
    }

    #[test]
    fn exec_path_targets_are_normalised() {
        assert_eq!(
            DenyTarget::exec_path("//tmp/./a/../x").expect("absolute"),
            DenyTarget::ExecPath("/tmp/x".to_string())
        );
        assert!(matches!(
            DenyTarget::exec_path("x/y"),
            Err(EnforceError::RelativePath(_))
        ));
    }

    #[test]
    fn expiry_arithmetic_is_checked() {
        assert_eq!(expiry_after(5, Duration::from_nanos(7)).expect("fits"), 12);
        assert!(matches!(
            expiry_after(u64::MAX - 1, Duration::from_nanos(2)),
            Err(EnforceError::BadTtl(_))
        ));
        assert!(expiry_after(0, Duration::MAX).is_err());
    }

    #[test]
    fn net_keys_carry_family_and_host_order_port() {
        let key = net_key("127.0.0.1".parse().expect("ip"), 8080);
        assert_eq!((key.family, key.port), (2, 8080));
        assert_eq!(&key.addr[..4], &[127, 0, 0, 1]);
        let key6 = net_key("::1".parse().expect("ip"), 0);
        assert_eq!(key6.family, 10);
        assert_eq!(key6.addr[15], 1);
    }

    #[test]
    fn finds_the_cgroup2_mount() {
        // Every supported system has one; this machine's is at /sys/fs/cgroup/unified.
        let root = cgroup2_root().expect("cgroup2 mounted");
        assert!(root.is_dir());
    }
}
