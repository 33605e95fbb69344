//! Command-line interface.
use std::path::PathBuf;

use clap::Parser;

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
        sudo secmon-tui --config /etc/secmon/secmon.toml --json\n\n\
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

    /// TOML configuration file ([monitoring], [threat_detection], [response]).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Kernel ring buffer size in MiB (a power of two); more absorbs longer bursts.
    #[arg(long, value_name = "MIB", default_value_t = 16, value_parser = parse_ring_mib)]
    pub ring_buffer_mib: u32,
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
    fn ring_size_must_be_a_power_of_two() {
        assert!(parse_ring_mib("16").is_ok());
        assert!(parse_ring_mib("3").is_err());
        assert!(parse_ring_mib("x").is_err());
    }
}
