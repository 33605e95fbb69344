use which::which;

/// Building this crate needs `bpf-linker` on PATH. Rebuild when that binary changes, as the
/// aya-template does; `cargo xtask setup` installs it.
///
/// Also says which architecture's registers the syscall probes read (`bpf_target_arch`,
/// probes/regs.rs): aya-build passes it when it builds the object for a target; a build
/// without it (clippy for bpfel-unknown-none) takes the host's, or `AYA_BPF_TARGET_ARCH`.
fn main() {
    if let Err(e) = aya_build::emit_bpf_target_arch_cfg() {
        println!("cargo:warning=bpf_target_arch: {e}");
    }
    match which("bpf-linker") {
        Ok(path) => println!("cargo:rerun-if-changed={}", path.display()),
        Err(_) => println!("cargo:warning=bpf-linker not found on PATH: run `cargo xtask setup`"),
    }
}
