//! The binary edge: parse the command line, load the config, run, and turn errors into one
//! clear line and an exit code.
use std::{io::IsTerminal, process::ExitCode, time::Duration};

use clap::Parser;
use color_eyre::eyre::{Result, WrapErr};
use secmon::{
    capture::{self, CaptureError},
    cli::{Cli, Command, RulesCommand},
    config::Config,
    pipeline::{self, PipelineError, RunOptions},
    rules::{self, RuleEngine},
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(report) = color_eyre::install() {
        eprintln!("secmon: {report}");
    }
    match run(cli) {
        Ok(code) => code,
        Err(report) => {
            // Expected failures (no privileges, bad config) are one line, not a backtrace.
            eprintln!("secmon: error: {report:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    if let Some(Command::Rules(command)) = &cli.command {
        return run_rules_command(&cli, command);
    }
    if !capture::privileged() {
        eprintln!("secmon: {}", CaptureError::NotPrivileged);
        return Ok(ExitCode::FAILURE);
    }
    if !cli.json && !(std::io::stdin().is_terminal() && std::io::stdout().is_terminal()) {
        eprintln!(
            "secmon: the terminal UI needs a terminal on stdin and stdout; use --json to \
             stream events to a pipe or a file (see --help)"
        );
        return Ok(ExitCode::from(2));
    }
    let (config, source) = Config::load_or_default(cli.config.as_deref())?;
    let options = RunOptions {
        duration: cli.duration.map(Duration::from_secs_f64),
        ring_bytes: Some(cli.ring_buffer_mib * 1024 * 1024),
        rules: Some(load_rules(&cli, &config)?),
    };
    eprintln!("secmon: config: {source}");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .wrap_err("starting the async runtime")?;
    let (result, verb) = if cli.json {
        let stdout = std::io::stdout();
        let result = runtime.block_on(pipeline::run_json(&config, &options, stdout.lock()));
        (result, "written")
    } else {
        eprintln!("secmon: the terminal UI is not available yet; run `secmon-tui --json`");
        return Ok(ExitCode::from(2));
    };
    match result {
        Ok(summary) => {
            eprintln!(
                "secmon: stopped: {} events {verb}, {} kernel records, {} dropped in the kernel, {} undecodable",
                summary.events, summary.records, summary.kernel_drops, summary.decode_errors
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(PipelineError::Capture(CaptureError::NotPrivileged)) => {
            eprintln!("secmon: {}", CaptureError::NotPrivileged);
            Ok(ExitCode::FAILURE)
        }
        Err(e) => Err(e.into()),
    }
}

/// The rules `--json` mode uses: `--rules DIR` (or the default) and the config's `rules_dirs`.
fn load_rules(cli: &Cli, config: &Config) -> Result<RuleEngine> {
    let dirs = rules::rules_dirs(cli.rules.as_deref(), &config.threat_detection.rules_dirs);
    let shown: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    let engine = RuleEngine::load(dirs).wrap_err("loading the rules")?;
    eprintln!("secmon: rules: {} ({})", engine.summary(), shown.join(", "));
    Ok(engine)
}

/// `secmon-tui rules check|test|list [DIR]`: no root, no capture.
fn run_rules_command(cli: &Cli, command: &RulesCommand) -> Result<ExitCode> {
    let dirs = match command.dir() {
        Some(dir) => vec![dir.to_path_buf()],
        None => {
            let (config, _) = Config::load_or_default(cli.config.as_deref())?;
            rules::rules_dirs(cli.rules.as_deref(), &config.threat_detection.rules_dirs)
        }
    };
    let ok = rules::cli::run(
        command,
        &dirs,
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    )
    .wrap_err("writing the report")?;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
