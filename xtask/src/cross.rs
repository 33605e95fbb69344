//! Other architectures: the targets `cargo xtask build/install --target TRIPLE` cross-build
//! for, what each needs on this machine, and the checks `cargo xtask test` runs on the
//! aarch64 build here (its unit tests under qemu-user, a replay compared byte for byte with
//! the host build's, and its eBPF object through this kernel's verifier).
//!
//! The linker and the qemu runner of each target are in `.cargo/config.toml`, so plain
//! `cargo build --target aarch64-unknown-linux-gnu` works too once `setup` installed them.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};

use crate::util;

/// A target we cross-build for.
pub struct Target {
    pub triple: &'static str,
    /// Debian packages: the cross compiler and C library (C dependencies: SQLite, zstd,
    /// ring), and qemu-user to run its binaries here.
    pub apt: &'static [&'static str],
    /// The qemu-user binary that runs its executables (the runner in .cargo/config.toml).
    pub qemu: &'static str,
    /// The target's C library tree, where qemu-user finds the dynamic loader (`-L`).
    pub sysroot: &'static str,
}

pub const AARCH64: Target = Target {
    triple: "aarch64-unknown-linux-gnu",
    apt: &[
        "gcc-aarch64-linux-gnu",
        "libc6-dev-arm64-cross",
        "qemu-user",
    ],
    qemu: "qemu-aarch64",
    sysroot: "/usr/aarch64-linux-gnu",
};

impl Target {
    /// The command that runs one of its executables here: `qemu-aarch64 -L SYSROOT`.
    pub fn runner(&self) -> [&'static str; 3] {
        [self.qemu, "-L", self.sysroot]
    }
}

pub const TARGETS: &[&Target] = &[&AARCH64];

/// The machine's own triple (`rustc -vV`), which needs no cross toolchain.
pub fn host_triple() -> Result<String> {
    let out = util::output(Command::new("rustc").arg("-vV"))?
        .context("`rustc -vV` failed: is Rust installed?")?;
    out.lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(|h| h.trim().to_string())
        .context("`rustc -vV` printed no host line")
}

/// The cross target `triple` names: None for no triple or the host's own, an error naming the
/// supported ones for anything else.
pub fn resolve(triple: Option<&str>) -> Result<Option<&'static Target>> {
    let Some(triple) = triple else {
        return Ok(None);
    };
    if triple == host_triple()? {
        return Ok(None);
    }
    match TARGETS.iter().find(|t| t.triple == triple) {
        Some(target) => Ok(Some(*target)),
        None => {
            let known: Vec<&str> = TARGETS.iter().map(|t| t.triple).collect();
            bail!(
                "unsupported target {triple}: secmon cross-builds for {} (and builds for this \
                 machine without --target)",
                known.join(", ")
            )
        }
    }
}

/// Where cargo puts `target`'s `profile` output (`target/<triple>/<profile>`).
pub fn output_dir(target: Option<&Target>, profile: &str) -> PathBuf {
    let mut dir = util::target_dir();
    if let Some(target) = target {
        dir.push(target.triple);
    }
    dir.join(profile)
}

/// The eBPF object the last build for `arch` made: `monitor/build.rs` keeps it in
/// `target/ebpf-cache/<arch>-<hash>/monitor`; the newest one is the current one.
pub fn ebpf_object(arch: &str) -> Result<PathBuf> {
    let cache = util::target_dir().join("ebpf-cache");
    let prefix = format!("{arch}-");
    let newest = std::fs::read_dir(&cache)
        .with_context(|| format!("reading {}", cache.display()))?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path().join("monitor"))
        .filter(|p| p.is_file())
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok());
    newest.with_context(|| {
        format!(
            "no {arch} eBPF object in {}: build for the target first",
            cache.display()
        )
    })
}

/// Runs `secmon-tui --replay RECORDING --json --speed max` with the shipped rules and config
/// (`runner` empty for a host binary, or the qemu command) and returns its stdout. A replay
/// without `--db` stores nothing.
pub fn replay_output(runner: &[&str], bin: &Path, recording: &Path) -> Result<Vec<u8>> {
    let root = util::repo_root();
    let (program, runner_args) = match runner.split_first() {
        Some((program, args)) => (Path::new(program), args),
        None => (bin, &[][..]),
    };
    let mut cmd = Command::new(program);
    cmd.args(runner_args);
    if !runner.is_empty() {
        cmd.arg(bin);
    }
    cmd.current_dir(root)
        .arg("--replay")
        .arg(recording)
        .args(["--json", "--speed", "max", "--rules"])
        .arg(root.join("rules"))
        .arg("--config")
        .arg(root.join("config").join("secmon.toml"));
    let out = cmd
        .output()
        .with_context(|| format!("could not run {}", util::display(&cmd)))?;
    if !out.status.success() {
        bail!(
            "{} failed ({}): {}",
            util::display(&cmd),
            util::describe(out.status),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out.stdout)
}

/// Replays the attack-story recording with the host build and with `target`'s build under
/// qemu-user: both must print the same JSON lines (decoding, enrichment, rules and JSON are
/// the same code on both; a difference is an architecture bug: sizes, endianness, `c_char`
/// signedness, syscall numbers). Returns how many lines matched.
pub fn check_replay(target: &Target, host_bin: &Path, cross_bin: &Path) -> Result<usize> {
    let recording = util::repo_root().join("tests/fixtures/recordings/attack-story.jsonl");
    let host = replay_output(&[], host_bin, &recording)?;
    let cross = replay_output(&target.runner(), cross_bin, &recording)?;
    let (host, cross) = (
        String::from_utf8_lossy(&host),
        String::from_utf8_lossy(&cross),
    );
    let mut lines = 0;
    for (n, pair) in host.lines().zip(cross.lines()).enumerate() {
        if pair.0 != pair.1 {
            bail!(
                "line {} of the replay differs\n  {}: {}\n  {}: {}",
                n + 1,
                std::env::consts::ARCH,
                pair.0,
                target.triple,
                pair.1
            );
        }
        lines += 1;
    }
    let (h, c) = (host.lines().count(), cross.lines().count());
    if h != c || h == 0 {
        bail!(
            "the replay printed {h} lines here and {c} on {}",
            target.triple
        );
    }
    Ok(lines)
}

/// Loads `target`'s eBPF object into this kernel with the host build's `secmon-tui
/// check-ebpf --object` (as root): every program must pass the verifier.
pub fn check_object(target: &Target, host_bin: &Path) -> Result<()> {
    let arch = target.triple.split('-').next().unwrap_or(target.triple);
    let object = ebpf_object(arch)?;
    let args = [
        "check-ebpf".as_ref(),
        "--object".as_ref(),
        object.as_os_str(),
    ];
    let mut cmd = util::as_root(host_bin, &args, false)?;
    eprintln!("xtask test: {}", util::display(&cmd));
    util::check(util::stdout_to_stderr(&mut cmd))
}
