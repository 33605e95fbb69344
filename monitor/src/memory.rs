//! Giving freed memory back to the system right after a big temporary is dropped.
//!
//! Loading the eBPF object parses the kernel's BTF (aya's `EbpfLoader::new` always reads
//! /sys/kernel/btf/vmlinux, ~5.5 MB, into ~22 MB of parsed types, which our programs, without
//! CO-RE relocations, never use). It is freed at once, but the allocator keeps freed pages for
//! about a second before it returns them, so the ring buffer and the first events landed on
//! top of it: the start-up peak (VmHWM) was ~18 MB above the settled size. The allocator is the
//! binary's choice (mimalloc in `secmon-tui`), so the binary registers how to release.
use std::sync::OnceLock;

static RELEASE: OnceLock<fn()> = OnceLock::new();

/// Registers how to return freed memory to the system (once; later calls are ignored).
pub fn set_release(release: fn()) {
    let _ = RELEASE.set(release);
}

/// Returns the memory freed so far to the system, if the binary said how. Costs a walk of the
/// allocator's pages: for the few moments after a big temporary, not for a loop.
pub fn release_freed() {
    if let Some(release) = RELEASE.get() {
        release();
    }
}
