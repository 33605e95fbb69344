use which::which;

/// Building this crate needs `bpf-linker` on PATH. Rebuild when that binary changes, as the
/// aya-template does; `cargo xtask setup` installs it.
fn main() {
    match which("bpf-linker") {
        Ok(path) => println!("cargo:rerun-if-changed={}", path.display()),
        Err(_) => println!("cargo:warning=bpf-linker not found on PATH: run `cargo xtask setup`"),
    }
}
