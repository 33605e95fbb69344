//! Opt-in enforcement in the kernel: deny tables for exec (killed with SIGKILL at
//! `sched_process_exec`) and for connect (refused with EPERM by `cgroup/connect4|6` attached
//! to the cgroup v2 root). Only the response layer calls this, and only when the config says
//! `[response] enforce = true`; it applies its allowlist before asking for a block. The kernel
//! side itself never touches PID 1, the monitor or its parent shell. Dropping the `Capture`
//! detaches the programs and closes the tables: nothing stays blocked after the monitor exits.
use std::{fs, net::IpAddr, os::fd::AsFd, path::PathBuf, time::Duration};

use aya::{
    Ebpf,
    maps::{HashMap, MapData},
    programs::{CgroupAttachMode, CgroupSockAddr},
};
use monitor_common::{
    COMM_LEN, DENY_PATH_LEN, DenyEntry, ExecDenyName, ExecDenyPath, NetDenyKey, config,
};

use super::{Capture, CaptureError, write};
use crate::enrich::BootClock;

/// The programs attached when enforcement is switched on.
pub const CONNECT_PROGRAMS: [&str; 2] = ["sm_connect4", "sm_connect6"];

/// What a deny entry matches.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum DenyTarget {
    /// The path exactly as given to execve (absolute paths of what the rules saw).
    ExecPath(String),
    /// The new program's name (its file name, cut to 15 bytes as the kernel does).
    ExecName(String),
    /// A destination address, and port (0: every port).
    Connect(IpAddr, u16),
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
    #[error("{0}: path longer than {DENY_PATH_LEN} bytes cannot be denied")]
    PathTooLong(String),
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
    net: HashMap<MapData, NetDenyKey, DenyEntry>,
    enabled: bool,
    denies: Vec<Deny>,
    next_id: u32,
}

impl Enforcer {
    pub(super) fn new(ebpf: &mut Ebpf) -> Result<Enforcer, CaptureError> {
        Ok(Enforcer {
            exec_path: super::take_map(ebpf, "SM_DENY_EXEC_PATH", HashMap::try_from)?,
            exec_name: super::take_map(ebpf, "SM_DENY_EXEC_NAME", HashMap::try_from)?,
            net: super::take_map(ebpf, "SM_DENY_NET", HashMap::try_from)?,
            enabled: false,
            denies: Vec::new(),
            next_id: 1,
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

    /// Adds a deny entry; `ttl` None keeps it until removed or the monitor exits.
    pub fn deny(
        &mut self,
        target: DenyTarget,
        ttl: Option<Duration>,
    ) -> Result<Deny, EnforceError> {
        if !self.enforcer.enabled {
            return Err(EnforceError::NotEnabled);
        }
        let id = self.enforcer.next_id;
        let expires_ns = ttl.map(|ttl| {
            BootClock::monotonic_now()
                .saturating_add(u64::try_from(ttl.as_nanos()).unwrap_or(u64::MAX))
        });
        let entry = DenyEntry {
            expires_ns: expires_ns.unwrap_or(0),
            id,
            _pad: 0,
        };
        self.write_entry(&target, Some(entry))?;
        self.enforcer.next_id += 1;
        let deny = Deny {
            id,
            target,
            expires_ns,
        };
        self.enforcer.denies.retain(|d| d.target != deny.target);
        self.enforcer.denies.push(deny.clone());
        self.sync_exec_switch()?;
        Ok(deny)
    }

    /// Removes the entry with this id; returns it, or None if there was none.
    pub fn undeny(&mut self, id: u32) -> Result<Option<Deny>, EnforceError> {
        let Some(index) = self.enforcer.denies.iter().position(|d| d.id == id) else {
            return Ok(None);
        };
        let deny = self.enforcer.denies.remove(index);
        self.write_entry(&deny.target, None)?;
        self.sync_exec_switch()?;
        Ok(Some(deny))
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
        target: &DenyTarget,
        entry: Option<DenyEntry>,
    ) -> Result<(), EnforceError> {
        let e = &mut self.enforcer;
        match target {
            DenyTarget::ExecPath(path) => {
                let key = exec_path_key(path)?;
                match entry {
                    Some(v) => e.exec_path.insert(key, v, 0)?,
                    None => remove_ignoring_absent(e.exec_path.remove(&key))?,
                }
            }
            DenyTarget::ExecName(name) => {
                let key = exec_name_key(name)?;
                match entry {
                    Some(v) => e.exec_name.insert(key, v, 0)?,
                    None => remove_ignoring_absent(e.exec_name.remove(&key))?,
                }
            }
            DenyTarget::Connect(ip, port) => {
                let key = net_key(*ip, *port);
                match entry {
                    Some(v) => e.net.insert(key, v, 0)?,
                    None => remove_ignoring_absent(e.net.remove(&key))?,
                }
            }
        }
        Ok(())
    }

    /// Tells the exec probe whether there is anything to check.
    fn sync_exec_switch(&mut self) -> Result<(), EnforceError> {
        let any_exec = self
            .enforcer
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

fn remove_ignoring_absent(
    result: Result<(), aya::maps::MapError>,
) -> Result<(), aya::maps::MapError> {
    match result {
        Err(aya::maps::MapError::KeyNotFound) => Ok(()),
        other => other,
    }
}

fn exec_path_key(path: &str) -> Result<ExecDenyPath, EnforceError> {
    let bytes = path.as_bytes();
    if bytes.is_empty() || bytes.len() >= DENY_PATH_LEN {
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
        assert!(exec_path_key(&"a".repeat(DENY_PATH_LEN)).is_err());
        assert!(exec_path_key("").is_err());
        let name = exec_name_key("a-very-long-program-name").expect("name");
        assert_eq!(&name.comm[..15], b"a-very-long-pro");
        assert_eq!(name.comm[15], 0);
        assert!(exec_name_key("a/b").is_err());
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
