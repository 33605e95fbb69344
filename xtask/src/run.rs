//! `cargo xtask run [-- ARGS]`: setup, release build, then `secmon-tui ARGS` as root.

use std::os::unix::process::CommandExt as _;
use std::process::ExitCode;

use anyhow::{Result, anyhow};
use clap::Args;

use crate::util::{self, as_root};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Arguments for secmon-tui (e.g. `cargo xtask run -- --json`).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ARGS"
    )]
    pub args: Vec<String>,
}

pub fn run(args: RunArgs) -> Result<ExitCode> {
    crate::setup::run()?;
    let bin = util::build_release()?;
    // Needs root to load eBPF programs: directly when euid is 0, else `sudo -E`.
    let mut cmd = as_root(&bin, &args.args, true)?;
    cmd.current_dir(util::repo_root());
    eprintln!("xtask: starting {}", util::display(&cmd));
    // Replace this process (cargo already exec'd into us), so the monitor owns the terminal,
    // receives Ctrl-C and signals directly, and its exit status is ours.
    let err = cmd.exec();
    Err(anyhow!(err).context(format!("could not start `{}`", util::display(&cmd))))
}
