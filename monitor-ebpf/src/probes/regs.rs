//! The saved user registers handed to the raw `sys_enter`/`sys_exit` tracepoints
//! (`struct pt_regs *`), per architecture: where the syscall number and the six arguments are.
//!
//! The architecture is the one the monitor is built for: aya-build passes
//! `--cfg bpf_target_arch="<arch>"` when it compiles this crate for a target, and this crate's
//! build script sets it from the host for builds that do not (clippy). Every field is read
//! with `bpf_probe_read_kernel`: the verifier does not know `pt_regs`'s layout, so a wrong
//! offset would read a wrong value, never fault; the layouts below are the kernel's UAPI ones,
//! stable for years.

#[cfg(bpf_target_arch = "x86_64")]
mod arch {
    use aya_ebpf::{bindings::pt_regs, helpers::bpf_probe_read_kernel};

    /// Code segment of 32-bit user code: ia32 syscall numbers differ, and are not followed.
    const USER32_CS: u64 = 0x23;

    /// The syscall number: `orig_rax` (rax itself holds the return value at exit).
    #[inline(always)]
    pub fn syscall_id(regs: *const core::ffi::c_void) -> Option<i64> {
        let regs = regs as *const pt_regs;
        // SAFETY: `regs` is the raw tracepoint's `struct pt_regs *`, the current task's saved
        // user registers, valid for the whole program; taking the field's address reads
        // nothing, and the helper copies it with fault handling into a u64.
        let id = unsafe { bpf_probe_read_kernel(core::ptr::addr_of!((*regs).orig_rax)) }.ok()?;
        Some(id as i64)
    }

    /// The six arguments (x86_64 syscall convention: rdi, rsi, rdx, r10, r8, r9), or None for
    /// a 32-bit caller.
    #[inline(always)]
    pub fn syscall_args(regs: *const core::ffi::c_void) -> Option<[u64; 6]> {
        // SAFETY: the helper copies with fault handling (a bad `regs` gives an error, never a
        // fault); `pt_regs` is integers only, so any bytes are a valid value.
        let regs = unsafe { bpf_probe_read_kernel(regs as *const pt_regs) }.ok()?;
        if regs.cs == USER32_CS {
            return None;
        }
        Some([regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8, regs.r9])
    }
}

#[cfg(bpf_target_arch = "aarch64")]
mod arch {
    use aya_ebpf::helpers::bpf_probe_read_kernel;

    /// The start of arm64's `struct pt_regs` (arch/arm64/include/asm/ptrace.h): the user
    /// registers, then `orig_x0` and `syscallno`. aya's bindings leave it opaque. Only this
    /// prefix is read.
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct PtRegs {
        regs: [u64; 31],
        sp: u64,
        pc: u64,
        pstate: u64,
        /// x0 on entry: at exit x0 holds the return value.
        orig_x0: u64,
        /// Little-endian layout (`s32 syscallno; u32 unused2;`), what bpfel builds for.
        syscallno: i32,
        unused2: u32,
    }

    /// `pstate` bit set while the task runs AArch32 code: compat syscall numbers differ, and
    /// are not followed.
    const PSR_MODE32_BIT: u64 = 0x10;

    /// The syscall number: `syscallno`.
    #[inline(always)]
    pub fn syscall_id(regs: *const core::ffi::c_void) -> Option<i64> {
        let regs = regs as *const PtRegs;
        // SAFETY: as on x86_64: the raw tracepoint's `struct pt_regs *`, copied with fault
        // handling; only the field's address is computed here.
        let id = unsafe { bpf_probe_read_kernel(core::ptr::addr_of!((*regs).syscallno)) }.ok()?;
        Some(i64::from(id))
    }

    /// The six arguments (AArch64 convention: x0 to x5, with x0 as saved at entry), or None
    /// for a 32-bit caller.
    #[inline(always)]
    pub fn syscall_args(regs: *const core::ffi::c_void) -> Option<[u64; 6]> {
        // SAFETY: the helper copies with fault handling; `PtRegs` is integers only, so any
        // bytes are a valid value.
        let regs = unsafe { bpf_probe_read_kernel(regs as *const PtRegs) }.ok()?;
        if regs.pstate & PSR_MODE32_BIT != 0 {
            return None;
        }
        let r = regs.regs;
        Some([regs.orig_x0, r[1], r[2], r[3], r[4], r[5]])
    }
}

#[cfg(not(any(bpf_target_arch = "x86_64", bpf_target_arch = "aarch64")))]
compile_error!("secmon's syscall probes support x86_64 and aarch64 only (see probes/regs.rs)");

pub use arch::{syscall_args, syscall_id};
