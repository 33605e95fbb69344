//! Stage 1 of the data path: load the kernel programs, attach them, and own the switches.
//!
//! [`Capture::start`] returns the running capture (which must stay alive: dropping it detaches
//! and unloads every program and map) and the ring buffer that [`reader`] drains.
mod clock;
pub mod enforce;
pub mod probes;
pub mod reader;
pub mod ring;
pub mod tracefs;
pub mod verify;

pub use clock::BootClock;
pub use ring::EventRing;

use std::{collections::BTreeMap, path::PathBuf};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, Map, MapData, PerCpuArray},
    programs::{Program, RawTracePoint, TracePoint, trace_point::TracePointLink},
};
use monitor_common::{
    config, family,
    ops::{self, MAX_SYSCALL_NR},
};

use crate::{
    event::Family,
    losses::{Loss, Losses},
};

/// The kernel wakes the reader when the waiting data crosses an eighth of the ring (at least
/// this much); below that the reader's own [`reader::DRAIN_INTERVAL`] picks records up. Each
/// wake-up is an inter-processor interrupt charged to the monitored workload (several µs in a
/// VM), so under load the timer, not the kernel, should drive the reader.
pub const MIN_WAKEUP_BYTES: u64 = 64 * 1024;

/// Default ring buffer size: ~25k exec records or ~200k file records of slack.
pub const DEFAULT_RING_BYTES: u32 = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("root (or CAP_BPF and CAP_PERFMON) is needed to load the eBPF probes: run with sudo")]
    NotPrivileged,
    #[error("cannot mount tracefs at {path} (tracepoints need it): {source}")]
    Tracefs {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("loading the eBPF object failed: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("eBPF map {name} is missing or has the wrong type: {detail}")]
    Map { name: &'static str, detail: String },
    #[error("writing eBPF map {name} failed: {source}")]
    MapWrite {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("the kernel refused every probe; nothing can be monitored:\n{0}")]
    NothingAttached(String),
}

/// Whether one probe group (exec, open, connect…) runs on this kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeStatus {
    pub family: Family,
    pub group: &'static str,
    /// None when attached; otherwise why not.
    pub unavailable: Option<String>,
}

/// What attached and what the kernel refused, for the start-up report and the TUI header.
#[derive(Clone, Debug, Default)]
pub struct ProbeReport {
    pub groups: Vec<ProbeStatus>,
    /// Why syscall entries are followed on the raw `sys_enter` tracepoint (every syscall)
    /// instead of per-syscall tracepoints, when that fallback was needed.
    pub raw_entry_fallback: Option<String>,
}

impl ProbeReport {
    fn mark(&mut self, family: Family, group: &'static str, failure: Option<String>) {
        match self
            .groups
            .iter_mut()
            .find(|g| g.family == family && g.group == group)
        {
            Some(status) => {
                if status.unavailable.is_none() {
                    status.unavailable = failure;
                }
            }
            None => self.groups.push(ProbeStatus {
                family,
                group,
                unavailable: failure,
            }),
        }
    }

    /// A family is available when at least one of its groups attached.
    pub fn family_available(&self, family: Family) -> bool {
        self.groups
            .iter()
            .any(|g| g.family == family && g.unavailable.is_none())
    }

    pub fn unavailable(&self) -> impl Iterator<Item = &ProbeStatus> {
        self.groups.iter().filter(|g| g.unavailable.is_some())
    }

    /// One line per family, e.g. `process: exec fork exit ptrace chdir privilege`.
    pub fn summary_lines(&self) -> Vec<String> {
        let mut by_family: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for g in self.groups.iter().filter(|g| g.unavailable.is_none()) {
            by_family
                .entry(g.family.as_str())
                .or_default()
                .push(g.group);
        }
        by_family
            .into_iter()
            .map(|(family, groups)| format!("{family}: {}", groups.join(" ")))
            .collect()
    }
}

/// Options for [`Capture::start`].
#[derive(Clone, Debug)]
pub struct CaptureOptions {
    pub enabled: Vec<Family>,
    pub ring_bytes: u32,
}

impl Default for CaptureOptions {
    fn default() -> Self {
        CaptureOptions {
            enabled: Family::ALL.to_vec(),
            ring_bytes: DEFAULT_RING_BYTES,
        }
    }
}

/// The running kernel side. Dropping it detaches and unloads everything.
pub struct Capture {
    ebpf: Ebpf,
    /// Perf-event tracepoint attachments, owned here so they can be detached all at once.
    tracepoint_links: Vec<TracePointLink>,
    enforcer: enforce::Enforcer,
    config: Array<MapData, u64>,
    drops: PerCpuArray<MapData, u64>,
    /// `SM_LOSSES`: the kernel's other losses (see `monitor_common::loss`).
    losses: PerCpuArray<MapData, u64>,
    enabled: u64,
    report: ProbeReport,
    ring_bytes: u32,
    /// The thread detaching the tracepoints once [`Capture::begin_detach`] was called.
    detaching: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Capture {
    /// Detaches the perf-event tracepoints concurrently: the kernel waits for an RCU grace
    /// period for each one it unregisters (~35-40 ms here, mostly serialised by the kernel),
    /// and one after the other the ~25 of them made stopping take ~1.85 s; side by side, part
    /// of the wait overlaps (~1.0 s). The rest (raw tracepoint, maps, programs) goes with
    /// `ebpf` afterwards.
    fn drop(&mut self) {
        // The entries first: a child forked by another thread keeps copies of the programs'
        // links until it execs, so detaching alone may leave them enforcing for a while.
        self.withdraw_all_denies();
        match self.detaching.take() {
            Some(detaching) => {
                let _ = detaching.join();
            }
            None => detach_all(std::mem::take(&mut self.tracepoint_links)),
        }
    }
}

/// Drops every link side by side (each waits for the kernel; see `Drop for Capture`).
fn detach_all(links: Vec<TracePointLink>) {
    std::thread::scope(|scope| {
        for link in links {
            // Without a thread (e.g. out of pids) the closure, and the link with it, is
            // dropped right here: slower, but never a panic in drop.
            let builder = std::thread::Builder::new().name("secmon-detach".into());
            let _ = builder.spawn_scoped(scope, move || drop(link));
        }
    });
}

impl Capture {
    pub fn start(options: &CaptureOptions) -> Result<(Capture, EventRing), CaptureError> {
        if !privileged() {
            return Err(CaptureError::NotPrivileged);
        }
        raise_memlock_limit();
        let tracefs = tracefs::ensure_mounted()?;
        let mut ebpf = EbpfLoader::new()
            .map_max_entries("SM_EVENTS", options.ring_bytes)
            .load(verify::embedded_object())?;
        // The loader's parsed kernel BTF is gone: give its ~22 MB back before the ring buffer
        // and the first events are added on top of it.
        crate::memory::release_freed();

        let mut config = take_array::<u64>(&mut ebpf, "SM_CONFIG")?;
        let enabled = options
            .enabled
            .iter()
            .fold(0u64, |bits, f| bits | family::bit(f.kernel_index()));
        write(
            &mut config,
            "SM_CONFIG",
            config::SELF_TGID,
            u64::from(std::process::id()),
        )?;
        write(&mut config, "SM_CONFIG", config::ENABLED_FAMILIES, enabled)?;
        let wakeup = (u64::from(options.ring_bytes) / 8).max(MIN_WAKEUP_BYTES);
        write(&mut config, "SM_CONFIG", config::WAKEUP_BYTES, wakeup)?;
        // SAFETY: getppid never fails.
        let parent = unsafe { libc::getppid() };
        write(
            &mut config,
            "SM_CONFIG",
            config::PARENT_TGID,
            u64::try_from(parent).unwrap_or(0),
        )?;
        let available = available_syscalls(&tracefs);
        fill_syscall_ops(&mut ebpf, &available)?;

        let (report, tracepoint_links) = attach_all(&mut ebpf, &tracefs, &available);
        if report.groups.iter().all(|g| g.unavailable.is_some()) {
            let reasons: Vec<String> = report
                .unavailable()
                .map(|g| {
                    format!(
                        "  {}/{}: {}",
                        g.family,
                        g.group,
                        g.unavailable.as_deref().unwrap_or("")
                    )
                })
                .collect();
            return Err(CaptureError::NothingAttached(reasons.join("\n")));
        }
        let ring = take_map(&mut ebpf, "SM_EVENTS", |map| match map {
            Map::RingBuf(data) => {
                EventRing::new(data, options.ring_bytes).map_err(|e| e.to_string())
            }
            _ => Err("not a ring buffer".to_string()),
        })?;
        let drops = take_map(&mut ebpf, "SM_DROPS", PerCpuArray::try_from)?;
        let losses = take_map(&mut ebpf, "SM_LOSSES", PerCpuArray::try_from)?;
        let enforcer = enforce::Enforcer::new(&mut ebpf)?;
        Ok((
            Capture {
                ebpf,
                tracepoint_links,
                enforcer,
                config,
                drops,
                losses,
                enabled,
                report,
                ring_bytes: options.ring_bytes,
                detaching: None,
            },
            ring,
        ))
    }

    pub fn report(&self) -> &ProbeReport {
        &self.report
    }

    /// The size of the event ring buffer (`SM_EVENTS`) in bytes.
    pub fn ring_bytes(&self) -> u32 {
        self.ring_bytes
    }

    /// The start of a stop: every family is switched off in the kernel (one map write, so
    /// nothing new enters the ring buffer and its last drain is finite even under a flood),
    /// and the tracepoints start detaching in the background, so the kernel's wait for each
    /// detach overlaps that drain instead of following it. Enforcement at exec ends here; the
    /// connect programs stay until the capture is dropped (which waits for the detaching).
    /// Idempotent.
    pub fn begin_stop(&mut self) {
        // On failure the drain is still bounded by the ring's size (capture::reader).
        let _ = write(&mut self.config, "SM_CONFIG", config::ENABLED_FAMILIES, 0);
        self.begin_detach();
    }

    fn begin_detach(&mut self) {
        if self.detaching.is_some() || self.tracepoint_links.is_empty() {
            return;
        }
        let links = std::mem::take(&mut self.tracepoint_links);
        let spawned = std::thread::Builder::new()
            .name("secmon-detach".into())
            .spawn(move || detach_all(links));
        // Without a thread the links were dropped (detached) right here.
        self.detaching = spawned.ok();
    }

    pub fn is_enabled(&self, family: Family) -> bool {
        self.enabled & family::bit(family.kernel_index()) != 0
    }

    /// Switches a family on or off in the kernel at once, without reloading anything.
    pub fn set_enabled(&mut self, family: Family, on: bool) -> Result<(), CaptureError> {
        let bit = family::bit(family.kernel_index());
        let enabled = if on {
            self.enabled | bit
        } else {
            self.enabled & !bit
        };
        write(
            &mut self.config,
            "SM_CONFIG",
            config::ENABLED_FAMILIES,
            enabled,
        )?;
        self.enabled = enabled;
        Ok(())
    }

    /// Ring-buffer reservation failures per family since start (summed over CPUs).
    pub fn drops(&self) -> BTreeMap<Family, u64> {
        Family::ALL
            .iter()
            .map(|f| {
                let total = self
                    .drops
                    .get(&f.kernel_index(), 0)
                    .map(|per_cpu| per_cpu.iter().sum())
                    .unwrap_or(0);
                (*f, total)
            })
            .collect()
    }

    pub fn total_drops(&self) -> u64 {
        self.drops().values().sum()
    }

    /// What the kernel lost since start: ring-buffer drops and full pending tables.
    pub fn kernel_losses(&self) -> KernelLosses {
        let pending = self
            .losses
            .get(&monitor_common::loss::PENDING_TABLE_FULL, 0)
            .map(|per_cpu| per_cpu.iter().sum())
            .unwrap_or(0);
        KernelLosses {
            ring_buffer_full: self.total_drops(),
            pending_table_full: pending,
        }
    }
}

/// The kernel's loss counters, totals since start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelLosses {
    pub ring_buffer_full: u64,
    pub pending_table_full: u64,
}

impl KernelLosses {
    /// Copies the totals into the shared counters.
    pub fn record(self, losses: &Losses) {
        losses.observe(Loss::RingBufferFull, self.ring_buffer_full);
        losses.observe(Loss::PendingTableFull, self.pending_table_full);
    }
}

pub(crate) fn take_map<T, E: std::fmt::Display>(
    ebpf: &mut Ebpf,
    name: &'static str,
    convert: impl FnOnce(aya::maps::Map) -> Result<T, E>,
) -> Result<T, CaptureError> {
    let map = ebpf.take_map(name).ok_or(CaptureError::Map {
        name,
        detail: "not in the object".into(),
    })?;
    convert(map).map_err(|e| CaptureError::Map {
        name,
        detail: e.to_string(),
    })
}

fn take_array<V: aya::Pod>(
    ebpf: &mut Ebpf,
    name: &'static str,
) -> Result<Array<MapData, V>, CaptureError> {
    take_map(ebpf, name, Array::try_from)
}

pub(crate) fn write<T: std::borrow::BorrowMut<MapData>, V: aya::Pod>(
    array: &mut Array<T, V>,
    name: &'static str,
    index: u32,
    value: V,
) -> Result<(), CaptureError> {
    array
        .set(index, value, 0)
        .map_err(|source| CaptureError::MapWrite { name, source })
}

/// For each followed syscall: None when this kernel implements it, else why not. A syscall the
/// kernel was built without (e.g. init_module without module support) has no
/// `syscalls:sys_enter_<name>` event in tracefs; without syscall events at all we cannot tell
/// and assume it exists.
fn available_syscalls(tracefs: &std::path::Path) -> Vec<(probes::SyscallProbe, Option<String>)> {
    let events = tracefs.join("events").join("syscalls");
    let can_tell = events.is_dir();
    probes::syscalls()
        .into_iter()
        .map(|probe| {
            let missing = can_tell && !events.join(format!("sys_enter_{}", probe.name)).is_dir();
            let reason = missing.then(|| format!("this kernel has no {} syscall", probe.name));
            (probe, reason)
        })
        .collect()
}

/// Syscall number → op, so the kernel side never hard-codes an architecture's numbers. Only
/// syscalls this kernel implements are entered.
fn fill_syscall_ops(
    ebpf: &mut Ebpf,
    available: &[(probes::SyscallProbe, Option<String>)],
) -> Result<(), CaptureError> {
    // Borrowed, not taken: the programs loaded later refer to this map by its fd, which must
    // stay open (taking it here would close it at the end of this function).
    let map = ebpf.map_mut("SM_OPS").ok_or(CaptureError::Map {
        name: "SM_OPS",
        detail: "not in the object".into(),
    })?;
    let mut ops: Array<&mut MapData, u32> =
        Array::try_from(map).map_err(|e| CaptureError::Map {
            name: "SM_OPS",
            detail: e.to_string(),
        })?;
    for (probe, _) in available.iter().filter(|(_, missing)| missing.is_none()) {
        if (0..i64::from(MAX_SYSCALL_NR)).contains(&probe.nr) {
            write(&mut ops, "SM_OPS", probe.nr as u32, probe.op)?;
        }
    }
    Ok(())
}

/// Loads every program, then attaches each probe group, recording what the kernel refused.
fn attach_all(
    ebpf: &mut Ebpf,
    tracefs: &std::path::Path,
    syscalls: &[(probes::SyscallProbe, Option<String>)],
) -> (ProbeReport, Vec<TracePointLink>) {
    let mut report = ProbeReport::default();
    let mut links = Vec::new();
    let mut load_errors: BTreeMap<&str, String> = BTreeMap::new();
    for name in probes::PROGRAMS {
        if let Err(e) = load_program(ebpf, name) {
            load_errors.insert(name, e);
        }
    }
    // Loaded now, while every map they refer to is still open; attached only if enforcement
    // is switched on (a load failure surfaces then).
    for name in enforce::CONNECT_PROGRAMS {
        let _ = load_program(ebpf, name);
    }
    let exit_attached = attach_raw(ebpf, &load_errors, probes::SYS_EXIT, "sys_exit");
    let entry_attached = match &exit_attached {
        Ok(()) => attach_entry(ebpf, &load_errors, syscalls).map(|(entry_links, fallback)| {
            links.extend(entry_links);
            report.raw_entry_fallback = fallback;
        }),
        Err(e) => Err(e.clone()),
    };
    for (probe, missing) in syscalls {
        let failure = match (&exit_attached, missing) {
            (Err(e), _) => Some(e.clone()),
            (Ok(()), Some(reason)) => Some(reason.clone()),
            (Ok(()), None) if ops::needs_sys_enter(probe.op) => entry_attached.clone().err(),
            (Ok(()), None) => None,
        };
        report.mark(probe.family, probe.group, failure);
    }
    for tp in probes::tracepoints() {
        let result =
            check_layout(tracefs, &tp).and_then(|()| attach_tracepoint(ebpf, &load_errors, &tp));
        match result {
            Ok(link) => {
                links.push(link);
                report.mark(tp.family, tp.group, None);
            }
            Err(e) => report.mark(tp.family, tp.group, Some(e)),
        }
    }
    (report, links)
}

/// The loaded program `program` as its concrete type, or why it cannot be attached.
fn loaded_program<'a, T>(
    ebpf: &'a mut Ebpf,
    load_errors: &BTreeMap<&str, String>,
    program: &str,
) -> Result<&'a mut T, String>
where
    &'a mut T: TryFrom<&'a mut Program, Error = aya::programs::ProgramError>,
{
    if let Some(e) = load_errors.get(program) {
        return Err(format!("program {program} did not load: {e}"));
    }
    ebpf.program_mut(program)
        .ok_or_else(|| format!("program {program} missing from the object"))?
        .try_into()
        .map_err(|e| format!("{e}"))
}

fn attach_raw(
    ebpf: &mut Ebpf,
    load_errors: &BTreeMap<&str, String>,
    program: &str,
    tracepoint: &str,
) -> Result<(), String> {
    let prog: &mut RawTracePoint = loaded_program(ebpf, load_errors, program)?;
    prog.attach(tracepoint)
        .map(|_| ())
        .map_err(|e| format!("attaching {program} to raw tracepoint {tracepoint}: {e}"))
}

/// In debug builds only: with this variable set, the raw `sys_enter` fallback is used as on a
/// kernel without per-syscall tracepoints, so the tests can exercise it.
const TEST_RAW_ENTRY_VAR: &str = "SECMON_TEST_RAW_SYS_ENTER";

/// Attaches the entry program for the syscalls in `ops::needs_sys_enter`: on each one's own
/// tracepoint, or, when any of those cannot be attached (a kernel without
/// `CONFIG_FTRACE_SYSCALLS`), on the raw `sys_enter` tracepoint for all of them at once, which
/// runs for every syscall. Returns the links and, for the fallback, why it was needed.
fn attach_entry(
    ebpf: &mut Ebpf,
    load_errors: &BTreeMap<&str, String>,
    syscalls: &[(probes::SyscallProbe, Option<String>)],
) -> Result<(Vec<TracePointLink>, Option<String>), String> {
    let wanted = syscalls
        .iter()
        .filter(|(probe, missing)| missing.is_none() && ops::needs_sys_enter(probe.op));
    let mut links = Vec::new();
    let mut failure = (cfg!(debug_assertions) && std::env::var_os(TEST_RAW_ENTRY_VAR).is_some())
        .then(|| format!("{TEST_RAW_ENTRY_VAR} is set"));
    if failure.is_none() {
        for (probe, _) in wanted {
            match attach_sys_enter(ebpf, load_errors, probe.name) {
                Ok(link) => links.push(link),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
    }
    let Some(reason) = failure else {
        return Ok((links, None));
    };
    // One mechanism or the other, never both: each entry would be handled twice.
    drop(links);
    attach_raw(ebpf, load_errors, probes::SYS_ENTER_RAW, "sys_enter")
        .map(|()| (Vec::new(), Some(reason.clone())))
        .map_err(|raw| format!("{reason}; and the raw fallback: {raw}"))
}

/// Attaches `sm_sys_enter` to `syscalls:sys_enter_<syscall>` (one program, several links).
fn attach_sys_enter(
    ebpf: &mut Ebpf,
    load_errors: &BTreeMap<&str, String>,
    syscall: &str,
) -> Result<TracePointLink, String> {
    let program = probes::SYS_ENTER;
    let prog: &mut TracePoint = loaded_program(ebpf, load_errors, program)?;
    let name = format!("sys_enter_{syscall}");
    prog.attach("syscalls", &name)
        .and_then(|id| prog.take_link(id))
        .map_err(|e| format!("attaching {program} to syscalls:{name}: {e}"))
}

/// Attaches after `check_layout`, which has already found the tracepoint's format file.
fn attach_tracepoint(
    ebpf: &mut Ebpf,
    load_errors: &BTreeMap<&str, String>,
    tp: &probes::TracepointProbe,
) -> Result<TracePointLink, String> {
    let program = tp.program;
    let prog: &mut TracePoint = loaded_program(ebpf, load_errors, program)?;
    prog.attach(tp.category, tp.name)
        .and_then(|id| prog.take_link(id))
        .map_err(|e| format!("attaching {program} to {}:{}: {e}", tp.category, tp.name))
}

/// Loads one program of either kind (the verifier runs here).
fn load_program(ebpf: &mut Ebpf, name: &str) -> Result<(), String> {
    let result = match ebpf
        .program_mut(name)
        .ok_or_else(|| "missing from the object".to_string())?
    {
        Program::TracePoint(prog) => prog.load(),
        Program::RawTracePoint(prog) => prog.load(),
        Program::CgroupSockAddr(prog) => prog.load(),
        other => return Err(format!("unexpected program type {:?}", other.prog_type())),
    };
    result.map_err(|e| verifier_summary(&e))
}

/// The useful end of a verifier log, not all of it.
fn verifier_summary(error: &aya::programs::ProgramError) -> String {
    let text = format!("{error:#}");
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines.len().saturating_sub(4);
    lines[tail..].join(" | ")
}

/// Checks that the fields the program reads sit where it expects them.
fn check_layout(tracefs: &std::path::Path, tp: &probes::TracepointProbe) -> Result<(), String> {
    let fields = tracefs::field_offsets(tracefs, tp.category, tp.name).map_err(|e| {
        format!(
            "this kernel has no tracepoint {}:{} ({e})",
            tp.category, tp.name
        )
    })?;
    for (name, offset) in tp.fields {
        match fields.iter().find(|(n, _, _)| n == name) {
            Some((_, found, _)) if found == offset => {}
            Some((_, found, _)) => {
                return Err(format!(
                    "{}:{} field {name} is at offset {found} on this kernel, secmon expects {offset}",
                    tp.category, tp.name
                ));
            }
            None => {
                return Err(format!(
                    "{}:{} has no field {name} on this kernel",
                    tp.category, tp.name
                ));
            }
        }
    }
    Ok(())
}

/// Root, or CAP_BPF + CAP_PERFMON (with CAP_DAC_READ_SEARCH-free tracefs access it still
/// needs to open tracepoint ids, which root has).
pub fn privileged() -> bool {
    // SAFETY: geteuid never fails.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    const CAP_PERFMON: u32 = 38;
    const CAP_BPF: u32 = 39;
    let effective = effective_capabilities().unwrap_or(0);
    effective & (1 << CAP_BPF) != 0 && effective & (1 << CAP_PERFMON) != 0
}

fn effective_capabilities() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK; newer ones use the memory cgroup,
/// where a failure to raise the limit (no CAP_SYS_RESOURCE, as in some VMs) does not matter.
fn raise_memlock_limit() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: `&unlimited` points to an initialised `rlimit` that outlives the call, and
    // setrlimit only reads it.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } != 0 && kernel_before_5_11() {
        crate::notice::warn(format!(
            "cannot raise RLIMIT_MEMLOCK ({}); loading may fail on this kernel",
            std::io::Error::last_os_error()
        ));
    }
}

fn kernel_before_5_11() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release
        .trim()
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    (major, minor) < (5, 11)
}
