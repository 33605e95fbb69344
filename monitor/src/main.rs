//! The binary edge: parse the command line, load the config, run, and turn errors into one
//! clear line and an exit code.
use std::{process::ExitCode, time::Duration};

use clap::Parser;
use color_eyre::eyre::{Result, WrapErr};
use secmon::{
    capture::{self, CaptureError},
    cli::Cli,
    config::Config,
    pipeline::{self, PipelineError, RunOptions},
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
    if cli.json && !capture::privileged() {
        eprintln!("secmon: {}", CaptureError::NotPrivileged);
        return Ok(ExitCode::FAILURE);
    }
    let (config, source) = Config::load_or_default(cli.config.as_deref())?;
    if !cli.json {
        eprintln!(
            "secmon: the terminal UI is not available yet; run `secmon-tui --json` for the \
             event stream (see --help)"
        );
        return Ok(ExitCode::from(2));
    }
    let options = RunOptions {
        duration: cli.duration.map(Duration::from_secs_f64),
        ring_bytes: Some(cli.ring_buffer_mib * 1024 * 1024),
    };
    eprintln!("secmon: config: {source}");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .wrap_err("starting the async runtime")?;
    let stdout = std::io::stdout();
    match runtime.block_on(pipeline::run_json(&config, &options, stdout.lock())) {
        Ok(summary) => {
            eprintln!(
                "secmon: stopped: {} events written, {} kernel records, {} dropped in the kernel, {} undecodable",
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
