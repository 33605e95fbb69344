//! `cargo xtask lint`: no module cycles in the monitor crate, rustfmt check, the generated rule
//! reference, then clippy in the two passes aya-template recommends (the eBPF pass once per
//! architecture whose registers the syscall probes read).

use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::Result;

use crate::{module_cycles, rule_docs, util};

/// One lint step: a name for the summary and the command.
fn steps() -> Vec<(&'static str, Command)> {
    let mut fmt = util::cargo();
    fmt.args(["fmt", "--all", "--check"]);

    // Host pass. `--workspace` selects *all* members, default-members notwithstanding, so the eBPF
    // crate is excluded explicitly: it is `no_std`/`no_main` for the BPF target and is linted by
    // the second pass, for the target it is really built for.
    let mut host = util::cargo();
    host.args([
        "clippy",
        "--workspace",
        "--exclude",
        "monitor-ebpf",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);

    // eBPF pass: nightly clippy for bpfel-unknown-none, building `core` from rust-src (installed by
    // `cargo xtask setup`). Checked on nightly 1.97 / LLVM 22: works (it only type-checks, so it
    // does not need bpf-linker).
    let mut ebpf = util::cargo();
    ebpf.args([
        "+nightly",
        "clippy",
        "-p",
        "monitor-ebpf",
        "--target",
        "bpfel-unknown-none",
        "-Z",
        "build-std=core",
        "--",
        "-D",
        "warnings",
    ]);

    // The same for the other architecture's registers (probes/regs.rs): `bpf_target_arch`
    // comes from the host unless AYA_BPF_TARGET_ARCH says otherwise (monitor-ebpf/build.rs).
    let mut ebpf_aarch64 = util::cargo();
    ebpf_aarch64
        .args(ebpf.get_args())
        .env("AYA_BPF_TARGET_ARCH", "aarch64");

    vec![
        ("rustfmt", fmt),
        ("clippy (host)", host),
        ("clippy (eBPF)", ebpf),
        ("clippy (eBPF, aarch64)", ebpf_aarch64),
    ]
}

/// Runs every step (a failure does not stop the others, so one run shows all problems) and
/// returns the names of the steps that failed.
pub fn run_steps() -> Result<Vec<&'static str>> {
    let mut failed = Vec::new();
    // Read from the sources, before anything is built: a cycle is cheap to report early.
    let cycles = "module cycles (monitor/src)";
    eprintln!("xtask lint: {cycles}");
    if module_cycles::check(&util::repo_root().join("monitor").join("src"))? {
        eprintln!("xtask lint: {cycles}: ok");
    } else {
        eprintln!("xtask lint: {cycles}: FAILED");
        failed.push(cycles);
    }
    // docs/rules.md's rule reference is generated from the rule files: a rule changed without
    // regenerating it leaves the operators' documentation wrong.
    let name = "rule reference (docs/rules.md)";
    eprintln!("xtask lint: {name}: secmon-tui rules list --markdown rules");
    match rule_docs::is_current() {
        Ok(true) => eprintln!("xtask lint: {name}: ok"),
        Ok(false) => {
            eprintln!("xtask lint: {name}: FAILED");
            failed.push(name);
        }
        Err(e) => {
            eprintln!("xtask lint: {name}: FAILED ({e:#})");
            failed.push(name);
        }
    }
    for (name, mut cmd) in steps() {
        eprintln!("xtask lint: {name}: {}", util::display(&cmd));
        let t = Instant::now();
        let st = util::status(&mut cmd)?;
        let secs = t.elapsed().as_secs_f64();
        if st.success() {
            eprintln!("xtask lint: {name}: ok ({secs:.0} s)");
        } else {
            eprintln!(
                "xtask lint: {name}: FAILED ({}, {secs:.0} s)",
                util::describe(st)
            );
            failed.push(name);
        }
    }
    Ok(failed)
}

pub fn run() -> Result<ExitCode> {
    let failed = run_steps()?;
    if failed.is_empty() {
        eprintln!("xtask lint: ok");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("xtask lint: FAILED: {}", failed.join(", "));
        Ok(ExitCode::FAILURE)
    }
}
