//! `secmon-tui check-ebpf`: loads every program of the eBPF object into the kernel, which runs
//! its verifier on each, and attaches none. What a user on a new kernel or architecture runs
//! to learn whether the probes would load, without starting to monitor; the ARM64 cross check
//! (`cargo xtask test`) runs it on the aarch64 object here, where BPF byte code and the
//! verifier are the same for every architecture (only the `pt_regs` layout the syscall probes
//! read differs, and the verifier cannot see it: it is read through a helper).
use aya::{EbpfLoader, programs::Program};

use super::{CaptureError, privileged, raise_memlock_limit};

/// The outcome for one program of the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramCheck {
    pub name: String,
    /// The program type: `tracepoint`, `raw_tracepoint`, `cgroup_sock_addr`, …
    pub kind: &'static str,
    /// None when the kernel accepted it; otherwise its verdict (the verifier's log).
    pub refused: Option<String>,
}

/// The object built into this binary.
pub fn embedded_object() -> &'static [u8] {
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/monitor"))
}

/// Loads each program of `object` (parse errors and missing privileges are errors; a program
/// the verifier refuses is a [`ProgramCheck`] with `refused`). Programs and maps are unloaded
/// when this returns.
pub fn check_object(object: &[u8]) -> Result<Vec<ProgramCheck>, CaptureError> {
    if !privileged() {
        return Err(CaptureError::NotPrivileged);
    }
    raise_memlock_limit();
    let mut ebpf = EbpfLoader::new().load(object)?;
    let mut checks: Vec<ProgramCheck> = ebpf
        .programs_mut()
        .map(|(name, program)| {
            let (kind, loaded) = load(program);
            ProgramCheck {
                name: name.to_string(),
                kind,
                refused: loaded.err(),
            }
        })
        .collect();
    checks.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(checks)
}

/// Loads one program; the kinds secmon ships, and a refusal for any other.
fn load(program: &mut Program) -> (&'static str, Result<(), String>) {
    let verdict = |r: Result<(), aya::programs::ProgramError>| r.map_err(|e| format!("{e:#}"));
    match program {
        Program::TracePoint(p) => ("tracepoint", verdict(p.load())),
        Program::RawTracePoint(p) => ("raw_tracepoint", verdict(p.load())),
        Program::CgroupSockAddr(p) => ("cgroup_sock_addr", verdict(p.load())),
        _ => (
            "other",
            Err("a program type secmon does not use".to_string()),
        ),
    }
}
