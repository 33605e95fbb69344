//! `cargo xtask <command>`: set up, build, run, install, lint and test secmon.
//!
//! The alias lives in `.cargo/config.toml`. This crate deliberately does not depend on the monitor
//! crates, so it builds on a machine that has no bpf-linker or nightly yet (`setup` installs them).
//! One module per command; to add one, write `foo.rs` with `pub fn run(..) -> Result<ExitCode>`,
//! declare it below and add a variant to `Cmd`.

mod bench;
mod build;
mod cross;
mod demo_record;
mod fuzz;
mod install;
mod lint;
mod module_cycles;
mod rule_docs;
mod run;
mod setup;
mod soak;
mod test;
mod util;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Developer tasks for secmon",
    disable_version_flag = true
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Install missing prerequisites (apt packages, nightly + rust-src, bpf-linker, tracefs).
    Setup(SetupArgs),
    /// Setup, then build secmon-tui (release) with its eBPF programs inside; --target
    /// cross-builds for another architecture (aarch64-unknown-linux-gnu).
    Build(build::BuildArgs),
    /// Setup, release build, then run secmon-tui as root; arguments after `--` go to secmon-tui.
    Run(run::RunArgs),
    /// Setup, release build, then install secmon-tui, the default config and the rules.
    Install(install::InstallArgs),
    /// cargo fmt --check, the rule reference in docs/rules.md, and clippy (host crates, then
    /// the eBPF crate for the BPF target).
    Lint,
    /// Rewrite the rule reference in docs/rules.md from the rule files (`secmon-tui rules list
    /// --markdown rules`).
    RuleDocs,
    /// Setup, lint, then all tests (including privileged ones) as root, then each fuzz target briefly.
    Test,
    /// The aarch64 stage of `test` alone: cross build, unit tests under qemu-user, replay
    /// compared with this machine's build, eBPF object through this kernel's verifier.
    CrossCheck,
    /// Regenerate the recordings `secmon-tui demo` replays without root, from the live
    /// scenarios (as root).
    DemoRecord,
    /// Overhead (vs. no monitor and vs. bpftrace), drop-free throughput and criterion benches.
    Bench(bench::BenchArgs),
    /// Run the fuzz targets (cargo-fuzz, nightly) for a short time each.
    Fuzz(fuzz::FuzzArgs),
    /// Long run under mixed load with enforcement, reloads, stalls and kill -9 (as root).
    Soak(soak::SoakArgs),
}

#[derive(Debug, clap::Args)]
struct SetupArgs {
    /// Also install what cross-building for TRIPLE needs (e.g. aarch64-unknown-linux-gnu: its
    /// gcc, C library and qemu-user, and the Rust standard library for it).
    #[arg(long, value_name = "TRIPLE")]
    target: Option<String>,
}

fn main() -> ExitCode {
    util::init_env();
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Setup(args) => cross::resolve(args.target.as_deref())
            .and_then(setup::run_for)
            .map(|()| ExitCode::SUCCESS),
        Cmd::Build(args) => build::run(args),
        Cmd::Run(args) => run::run(args),
        Cmd::Install(args) => install::run(args),
        Cmd::Lint => lint::run(),
        Cmd::RuleDocs => rule_docs::run(),
        Cmd::Test => test::run(),
        Cmd::CrossCheck => test::run_cross_only(),
        Cmd::DemoRecord => demo_record::run(),
        Cmd::Bench(args) => bench::run(args),
        Cmd::Fuzz(args) => fuzz::run(args),
        Cmd::Soak(args) => soak::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cmd {
        Cli::try_parse_from(std::iter::once("cargo xtask").chain(args.iter().copied()))
            .expect("parses")
            .cmd
    }

    #[test]
    fn run_passes_arguments_through() {
        for args in [&["run", "--", "--json"][..], &["run", "--json"][..]] {
            match parse(args) {
                Cmd::Run(r) => assert_eq!(r.args, ["--json"]),
                other => panic!("{other:?}"),
            }
        }
        match parse(&["run", "--", "--config", "x.toml", "-v"]) {
            Cmd::Run(r) => assert_eq!(r.args, ["--config", "x.toml", "-v"]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn install_prefix() {
        match parse(&["install"]) {
            Cmd::Install(a) => assert_eq!(a.prefix, std::path::Path::new("/usr/local")),
            other => panic!("{other:?}"),
        }
        match parse(&["install", "--prefix", "/opt/x"]) {
            Cmd::Install(a) => assert_eq!(a.prefix, std::path::Path::new("/opt/x")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }
}
