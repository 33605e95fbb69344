//! `cargo xtask build [--target TRIPLE] [--debug]`: setup (with the target's cross toolchain),
//! then the `secmon-tui` binary with its eBPF object built for that architecture inside.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use crate::{cross, util};

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Build for another architecture, e.g. aarch64-unknown-linux-gnu (Raspberry Pi 3/4/5 and
    /// other 64-bit ARM boards with a 64-bit OS). Default: this machine's.
    #[arg(long, value_name = "TRIPLE")]
    pub target: Option<String>,
    /// A debug build (faster to build, slower to run) instead of a release build.
    #[arg(long)]
    pub debug: bool,
}

pub fn run(args: BuildArgs) -> Result<ExitCode> {
    let target = cross::resolve(args.target.as_deref())?;
    crate::setup::run_for(target)?;
    let profile = if args.debug { "dev" } else { "release" };
    let bin = util::build_secmon(target, profile)?;
    eprintln!("xtask build: {}", bin.display());
    if let Some(target) = target {
        eprintln!(
            "xtask build: copy it to the {} machine, or run it here under qemu-user \
             (no eBPF there): {} {} --help",
            target.triple,
            target.runner().join(" "),
            bin.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
