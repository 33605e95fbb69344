//! Compiles `monitor-ebpf` for the BPF target with nightly (aya-template pattern), so a plain
//! `cargo build` produces everything; the object lands in `$OUT_DIR/monitor` and is embedded by
//! `capture::Capture::start` with `include_bytes_aligned!`.
//!
//! The object is also kept in `target/ebpf-cache/<key>/monitor`, keyed by everything it is
//! built from (the eBPF and shared crates' files, the lock file, the workspace manifest, the
//! nightly compiler, bpf-linker and the target): aya-build compiles into `$OUT_DIR`, which
//! differs between `cargo build`, `cargo clippy`, `cargo test` and the fuzz workspace, so each
//! of them compiled the eBPF crate and `core` again (one to two minutes each in a cold CI run).
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, anyhow};
use aya_build::Toolchain;

/// The eBPF binary's name (`[[bin]]` of monitor-ebpf), the file aya-build writes to `$OUT_DIR`.
const OBJECT: &str = "monitor";

fn main() -> anyhow::Result<()> {
    let cargo_metadata::Metadata {
        packages,
        workspace_root,
        ..
    } = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("MetadataCommand::exec")?;
    let package_dir = |wanted: &str| -> anyhow::Result<PathBuf> {
        let package = packages
            .iter()
            .find(|p| p.name.as_str() == wanted)
            .ok_or_else(|| anyhow!("{wanted} package not found"))?;
        let dir = package
            .manifest_path
            .parent()
            .ok_or_else(|| anyhow!("no parent for {}", package.manifest_path))?;
        Ok(dir.as_std_path().to_path_buf())
    };
    let ebpf_dir = package_dir("monitor-ebpf")?;
    let common_dir = package_dir("monitor-common")?;
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").context("OUT_DIR not set")?);
    let workspace_root = workspace_root.as_std_path();

    let key = cache_key(workspace_root, &[&ebpf_dir, &common_dir]);
    let cached = workspace_root
        .join("target/ebpf-cache")
        .join(&key)
        .join(OBJECT);
    if cached.is_file() {
        // aya-build says these when it builds; without it, cargo must still know when to ask.
        println!("cargo:rerun-if-changed={}", ebpf_dir.display());
        println!("cargo:rerun-if-changed={}", common_dir.display());
        println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
        fs::copy(&cached, out_dir.join(OBJECT))
            .with_context(|| format!("copying the cached eBPF object {}", cached.display()))?;
        return Ok(());
    }

    let ebpf_dir_text = ebpf_dir
        .to_str()
        .ok_or_else(|| anyhow!("non-UTF-8 path {}", ebpf_dir.display()))?;
    let ebpf_package = aya_build::Package {
        name: "monitor-ebpf",
        root_dir: ebpf_dir_text,
        ..Default::default()
    };
    aya_build::build_ebpf([ebpf_package], Toolchain::default())
        .context("building the eBPF programs failed; `cargo xtask setup` installs bpf-linker and nightly rust-src")?;
    store(&out_dir.join(OBJECT), &cached);
    Ok(())
}

/// Copies the fresh object into the cache (through a temporary name and a rename, so a build
/// running beside this one never sees half a file). A cache that cannot be written only costs
/// the next build its time.
fn store(object: &Path, cached: &Path) {
    let (Some(dir), true) = (cached.parent(), object.is_file()) else {
        return;
    };
    let partial = dir.join(format!("{OBJECT}.{}.partial", std::process::id()));
    let stored = fs::create_dir_all(dir)
        .and_then(|()| fs::copy(object, &partial))
        .and_then(|_| fs::rename(&partial, cached));
    if let Err(e) = stored {
        let _ = fs::remove_file(&partial);
        println!("cargo:warning=could not cache the eBPF object in {dir:?}: {e}");
    }
}

/// What the object is built from, hashed: every file of `dirs` (but build output), the lock
/// file and workspace manifest (dependency versions, the eBPF release profile), the nightly
/// compiler and bpf-linker versions, and the target's architecture and endianness.
fn cache_key(workspace_root: &Path, dirs: &[&Path]) -> String {
    let mut hash = Fnv1a::default();
    let mut files = Vec::new();
    for dir in dirs {
        collect_files(dir, &mut files);
    }
    files.push(workspace_root.join("Cargo.lock"));
    files.push(workspace_root.join("Cargo.toml"));
    files.sort();
    for file in &files {
        hash.write(file.to_string_lossy().as_bytes());
        hash.write(&fs::read(file).unwrap_or_default());
    }
    for (program, args) in [
        ("rustup", &["run", "nightly", "rustc", "-vV"][..]),
        ("bpf-linker", &["--version"][..]),
    ] {
        let version = Command::new(program)
            .args(args)
            .output()
            .map(|o| o.stdout)
            .unwrap_or_default();
        hash.write(&version);
    }
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let endian = std::env::var("CARGO_CFG_TARGET_ENDIAN").unwrap_or_default();
    hash.write(arch.as_bytes());
    hash.write(endian.as_bytes());
    format!("{arch}-{:016x}", hash.0)
}

fn collect_files(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.file_name().is_some_and(|n| n == "target") {
            continue;
        }
        if path.is_dir() {
            collect_files(&path, files);
        } else {
            files.push(path);
        }
    }
}

/// FNV-1a, 64 bits: a hash that stays the same from one compiler to the next (std's does not
/// promise to), good enough to name a cache entry.
struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv1a {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // A separator, so ("ab", "c") and ("a", "bc") differ.
        self.0 = self.0.rotate_left(5) ^ 0xff;
    }
}
