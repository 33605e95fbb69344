//! Command-line interface.
use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// secmon: a Linux runtime security monitor.
///
/// eBPF probes in the kernel watch process, file and network activity; every event is
/// enriched with its process context, scored, and shown live (terminal UI) or printed as
/// JSON lines (--json). Needs root, or CAP_BPF and CAP_PERFMON.
#[derive(Debug, Parser)]
#[command(
    name = "secmon-tui",
    version,
    after_help = "Examples:\n  \
        sudo secmon-tui --json                      stream every event as JSON lines\n  \
        sudo secmon-tui --json --duration 10 > ev.jsonl   capture for ten seconds\n  \
        sudo secmon-tui --json | jq 'select(.event_type == \"process_exec\")'\n  \
        sudo secmon-tui --config /etc/secmon/secmon.toml --json\n  \
        secmon-tui rules check rules/                 validate rule files (no root needed)\n\n\
        Config: /etc/secmon/secmon.toml if present, else built-in defaults (docs/config.md).\n\
        JSON fields: docs/json-schema.md."
)]
pub struct Cli {
    /// Print one JSON object per event on stdout instead of opening the terminal UI.
    #[arg(long)]
    pub json: bool,

    /// Stop after this many seconds (default: run until Ctrl-C / SIGTERM).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,

    /// TOML configuration file ([monitoring], [threat_detection], [response], [storage]).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Kernel ring buffer size in MiB (a power of two); more absorbs longer bursts.
    #[arg(long, value_name = "MIB", default_value_t = 16, value_parser = parse_ring_mib)]
    pub ring_buffer_mib: u32,

    /// Rule directory (default: /usr/local/share/secmon/rules if it exists, else the source
    /// tree's rules/). The config's `rules_dirs` are loaded too.
    #[arg(long, value_name = "DIR", global = true)]
    pub rules: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Work with rule files (no root needed).
    #[command(subcommand)]
    Rules(RulesCommand),
}

/// Without DIR, the rules the monitor would load: --rules DIR (or the default) plus the
/// config's `rules_dirs`.
#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Validate rule files: print `ok: N rules in M files`, or every error (exit status 1).
    Check {
        /// Rule directory to check.
        dir: Option<PathBuf>,
    },
    /// Run every rule's embedded tests and print a pass/fail table (exit status 1 on a failure).
    Test {
        /// Rule directory to test.
        dir: Option<PathBuf>,
    },
    /// List the rules: name, score, action, enabled, tags.
    List {
        /// Rule directory to list.
        dir: Option<PathBuf>,
    },
}

impl RulesCommand {
    pub fn dir(&self) -> Option<&std::path::Path> {
        match self {
            RulesCommand::Check { dir }
            | RulesCommand::Test { dir }
            | RulesCommand::List { dir } => dir.as_deref(),
        }
    }
}

fn parse_ring_mib(text: &str) -> Result<u32, String> {
    let mib: u32 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a whole number of MiB"))?;
    if !mib.is_power_of_two() || !(1..=1024).contains(&mib) {
        return Err(format!(
            "{mib} MiB: expected a power of two between 1 and 1024"
        ));
    }
    Ok(mib)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn rules_subcommands_parse() {
        let cli =
            Cli::try_parse_from(["secmon-tui", "rules", "check", "some/dir"]).expect("parses");
        let Some(Command::Rules(cmd)) = &cli.command else {
            panic!("rules subcommand: {cli:?}");
        };
        assert!(matches!(cmd, RulesCommand::Check { .. }));
        assert_eq!(cmd.dir(), Some(std::path::Path::new("some/dir")));
        let cli =
            Cli::try_parse_from(["secmon-tui", "rules", "test", "--rules", "r"]).expect("parses");
        assert_eq!(cli.rules, Some(PathBuf::from("r")));
        let cli = Cli::try_parse_from(["secmon-tui", "--rules", "r", "--json"]).expect("parses");
        assert!(cli.json && cli.command.is_none());
        assert!(Cli::try_parse_from(["secmon-tui", "rules"]).is_err());
    }

    #[test]
    fn ring_size_must_be_a_power_of_two() {
        assert!(parse_ring_mib("16").is_ok());
        assert!(parse_ring_mib("3").is_err());
        assert!(parse_ring_mib("x").is_err());
    }
}
