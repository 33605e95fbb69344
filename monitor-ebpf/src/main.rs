//! secmon kernel programs.
//!
//! Only tracepoints are used (see ../shared/platform.md: this kernel has no kprobes, no BTF
//! tracing and no BPF LSM), so every field comes from tracepoint arguments or user memory. The
//! syscall probes share two programs per family: `sm_sys_enter` saves a syscall's arguments per
//! thread, and a per-family `sm_exit_*` program reports the syscall at `sys_exit` when it
//! succeeded, reading strings from user memory then (still valid: the caller is blocked in the
//! syscall). Programs learn which syscall fired from `__syscall_nr` via the `SM_OPS` table that
//! userspace fills, so no architecture's syscall numbers are compiled in.
#![no_std]
#![no_main]

mod maps;
mod probes;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

// GPL: bpf_probe_read_user_str and bpf_send_signal are GPL-only helpers.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
