//! secmon kernel programs.
//!
//! Only tracepoints are used (see ../shared/platform.md: this kernel has no kprobes, no BTF
//! tracing and no BPF LSM), so every field comes from tracepoint arguments or user memory.
//! Syscalls are reported at exit by `sm_sys_exit` on the raw `sys_exit` tracepoint, when they
//! succeeded, reading strings from user memory then (still valid: the caller is blocked in the
//! syscall); the few that need their entry also run `sm_sys_enter` on their own
//! `syscalls:sys_enter_<name>` tracepoint (see `probes/syscall.rs`). Programs learn which
//! syscall fired from its number via the `SM_OPS` table that userspace fills, so no
//! architecture's syscall numbers are compiled in.
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
// SAFETY (both attributes): the loader reads the program's license from the ELF section named
// `license`, which holds nothing else; no other symbol in the object is called `LICENSE`.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
