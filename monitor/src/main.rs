//! The binary edge: parse the command line, load the config, run, and turn errors into one
//! clear line and an exit code.
use std::{
    io::{IsTerminal, Write},
    path::Path,
    process::ExitCode,
    time::Duration,
};

use clap::Parser;
use color_eyre::eyre::{Result, WrapErr};
use secmon::{
    capture::{self, CaptureError},
    cli::{BlockCommand, BlockKind, Cli, Command, RulesCommand},
    config::{self, Config},
    controller::{self, ControllerCompanion},
    fleet::NatsCompanion,
    history_cli,
    pipeline::{self, PipelineError, RunOptions, SourceSpec},
    record::Replay,
    remote,
    rules::{self, RuleEngine},
    sanitize,
    shutdown::cut_short_suffix,
    tui,
};

/// Opts this process out of transparent huge pages, before the allocator reserves anything.
/// The allocator asks for huge pages on its arenas, and each one touched commits 2 MiB where
/// the monitor needs a few KiB: ~13 MiB of resident memory at start for nothing (issue 19).
/// Best effort: an old kernel without the option only keeps the default.
fn refuse_huge_pages() {
    // SAFETY: prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) only sets a flag of the calling process.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// How long the async runtime may take to wind down once a run has returned.
const RUNTIME_SHUTDOWN: Duration = Duration::from_millis(500);

/// See monitor/Cargo.toml: allocation churn per event is most of the pipeline's userspace cost.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    refuse_huge_pages();
    let cli = Cli::parse();
    if let Err(report) = color_eyre::install() {
        eprintln!("secmon: {report}");
    }
    match run(cli) {
        Ok(code) => code,
        Err(report) => {
            // Expected failures (no privileges, bad config) are one line, not a backtrace;
            // escaped, since messages quote files (a config key, a recording's line).
            eprintln!("{}", secmon::sanitize::error_line(&report));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    if let Some(url) = &cli.connect {
        return run_connect(&cli, url);
    }
    if let Some(Command::Rules(command)) = &cli.command {
        return run_rules_command(&cli, command);
    }
    if let Some(Command::Block(command)) = &cli.command {
        return run_block_command(&cli, command);
    }
    if let Some(Command::Unblock { id, socket }) = &cli.command {
        let remove = BlockCommand::Remove {
            id: *id,
            socket: socket.clone(),
        };
        return run_block_command(&cli, &remove);
    }
    if let Some(Command::History(args)) = &cli.command {
        // Arguments are checked before the configuration is read.
        let (config, _) = Config::load_or_default(cli.config.as_deref())?;
        let db = cli.db.clone().unwrap_or(config.storage.path);
        return Ok(ExitCode::from(history_cli::main(args, &db)));
    }
    if let Some(recording) = &cli.replay {
        return run_replay(&cli, recording);
    }
    if !capture::privileged() {
        eprintln!("secmon: {}", CaptureError::NotPrivileged);
        return Ok(ExitCode::FAILURE);
    }
    let serve_only = matches!(cli.command, Some(Command::Serve));
    if !(cli.json || serve_only || has_terminal()) {
        eprintln!(
            "secmon: the terminal UI needs a terminal on stdin and stdout; use --json to \
             stream events to a pipe or a file (see --help)"
        );
        return Ok(ExitCode::from(2));
    }
    let (config, source) = Config::load_or_default(cli.config.as_deref())?;
    let options = RunOptions {
        duration: cli.duration,
        ring_bytes: Some(cli.ring_buffer_mib * 1024 * 1024),
        rules: Some(load_rules(&cli, &config)?),
        storage: Some(storage_settings(&cli, &config)),
        record: cli.record.clone(),
        presenter: cli.presenter,
    };
    let settings = controller_settings(&cli, &config)?;
    eprintln!("secmon: config: {source}");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .wrap_err("starting the async runtime")?;
    let companions = companions(settings.clone(), &config, &options, serve_only);
    let (result, verb) = if let (true, Some(settings)) = (serve_only, settings) {
        let exporter = companions;
        let served = controller::serve(&config, &options, SourceSpec::Kernel, settings, exporter);
        (runtime.block_on(served), "analysed")
    } else if cli.json {
        let result = match stdout_file() {
            Ok(stdout) => runtime.block_on(pipeline::run_json(
                &config,
                &options,
                SourceSpec::Kernel,
                stdout,
                companions,
            )),
            Err(e) => Err(e.into()),
        };
        (result, "written")
    } else {
        (
            runtime.block_on(tui::run(
                &config,
                &options,
                SourceSpec::Kernel,
                None,
                companions,
            )),
            "received",
        )
    };
    // Tasks still running (a control-socket client, a replay's feeder) are not waited for.
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
    match result {
        Ok(summary) => {
            eprintln!("secmon: stopped: {}", summary.stopped_line(verb));
            Ok(ExitCode::SUCCESS)
        }
        Err(PipelineError::Capture(CaptureError::NotPrivileged)) => {
            eprintln!("secmon: {}", CaptureError::NotPrivileged);
            Ok(ExitCode::FAILURE)
        }
        Err(e) => Err(e.into()),
    }
}

/// The controller's settings when it is to run (`serve`, `--serve`, `[controller] enabled`),
/// checked before anything starts: a plain-HTTP address off loopback without
/// `--insecure-http`, or half a TLS setup, is refused here.
fn controller_settings(cli: &Cli, config: &Config) -> Result<Option<controller::Settings>> {
    let serving =
        matches!(cli.command, Some(Command::Serve)) || cli.serve || config.controller.enabled;
    if !serving {
        return Ok(None);
    }
    let mut section = config.controller.clone();
    if let Some(listen) = cli.listen {
        section.listen = listen;
    }
    let settings = controller::Settings::from_config(&section, cli.insecure_http);
    settings.check(&section)?;
    Ok(Some(settings))
}

/// The front ends beside the main one: the controller (not for `serve`, where it is the main
/// one) and the NATS exporter (`[export.nats] enabled`).
fn companions(
    settings: Option<controller::Settings>,
    config: &Config,
    options: &RunOptions,
    serve_only: bool,
) -> pipeline::Companions {
    let mut companions: pipeline::Companions = Vec::new();
    if let Some(settings) = settings.filter(|_| !serve_only) {
        companions.push(Box::new(ControllerCompanion::new(
            settings, config, options,
        )));
    }
    if let Some(exporter) = NatsCompanion::from_config(config) {
        companions.push(Box::new(exporter));
    }
    companions
}

/// The config's `[storage]`, with `--db PATH` (which also switches storage on) applied.
fn storage_settings(cli: &Cli, config: &Config) -> config::Storage {
    let mut storage = config.storage.clone();
    if let Some(db) = &cli.db {
        storage.path = db.clone();
        storage.enabled = true;
    }
    storage
}

/// `--replay FILE`: no root, no eBPF; the recording through the current rules, in the terminal
/// UI or (`--json`) as JSON lines.
fn run_replay(cli: &Cli, recording: &Path) -> Result<ExitCode> {
    let serve_only = matches!(cli.command, Some(Command::Serve));
    if !cli.json && !serve_only && !has_terminal() {
        eprintln!(
            "secmon: the terminal UI needs a terminal on stdin and stdout; use --json with \
             --replay to write the replayed events as JSON lines (see --help)"
        );
        return Ok(ExitCode::from(2));
    }
    let (config, source) = Config::load_or_default(cli.config.as_deref())?;
    let settings = controller_settings(cli, &config)?;
    let speed = cli.speed.unwrap_or_default();
    let replay = Replay::open(recording, speed)?;
    let options = RunOptions {
        duration: cli.duration,
        ring_bytes: None,
        rules: Some(load_rules(cli, &config)?),
        // Only into an explicitly named database: a replay is not this machine's history.
        storage: cli.db.is_some().then(|| storage_settings(cli, &config)),
        record: cli.record.clone(),
        presenter: cli.presenter,
    };
    eprintln!("secmon: config: {source}");
    let recorded = match replay.recording().header() {
        Some(h) if !h.host.is_empty() => format!(
            "recorded on {} at {}",
            sanitize::for_terminal(&h.host),
            h.created.format("%Y-%m-%d %H:%M:%S UTC")
        ),
        Some(h) => format!("recorded at {}", h.created.format("%Y-%m-%d %H:%M:%S UTC")),
        None => "JSON lines without a recording header".to_string(),
    };
    let about = format!(
        "replaying {} ({recorded}) at speed {speed}",
        sanitize::for_terminal(&recording.display().to_string())
    );
    eprintln!("secmon: {about}");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .wrap_err("starting the async runtime")?;
    let companions = companions(settings.clone(), &config, &options, serve_only);
    let source = SourceSpec::Replay(Box::new(replay));
    let (summary, verb) = if let (true, Some(settings)) = (serve_only, settings) {
        let served = controller::serve(&config, &options, source, settings, companions);
        (runtime.block_on(served)?, "analysed")
    } else if cli.json {
        let summary = runtime.block_on(pipeline::run_json(
            &config,
            &options,
            source,
            stdout_file()?,
            companions,
        ))?;
        (summary, "written")
    } else {
        let summary =
            runtime.block_on(tui::run(&config, &options, source, Some(about), companions))?;
        (summary, "shown")
    };
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
    eprintln!(
        "secmon: stopped: {} events {verb}, {} events replayed from {}{}",
        summary.events,
        summary.records,
        recording.display(),
        cut_short_suffix(&summary.cut_short)
    );
    Ok(ExitCode::SUCCESS)
}

/// `--connect URL --token-file FILE`: the terminal UI on a remote controller. No root, no
/// config, no local rules or history; the address and the token are checked with one call
/// before the terminal is taken (even before one is asked for), so a wrong token or address
/// is a clear error, not a blank screen.
fn run_connect(cli: &Cli, url: &str) -> Result<ExitCode> {
    if cli.command.is_some() {
        eprintln!(
            "secmon: --connect opens the terminal UI on the remote machine: it takes no \
             subcommand (use the remote's API for the rest, docs/api.md)"
        );
        return Ok(ExitCode::from(2));
    }
    let url = remote::RemoteUrl::parse(url)?;
    let Some(token_file) = &cli.token_file else {
        eprintln!("secmon: --connect needs --token-file FILE (the remote controller's token)");
        return Ok(ExitCode::from(2));
    };
    let token = remote::Token::read(token_file)?;
    let roots = match &cli.ca_file {
        Some(path) => remote::Roots::from_pem_file(path)?,
        None => remote::Roots::default(),
    };
    let base = url.base();
    let client = remote::Client::new(url, token, &roots);
    eprintln!("secmon: connecting to {base}");
    let status = client
        .status()
        .wrap_err_with(|| format!("--connect {base}"))?;
    eprintln!(
        "secmon: connected to {} (secmon {})",
        sanitize::for_terminal(&status.host),
        sanitize::for_terminal(&status.version)
    );
    // After the checks: a script can test an address and a token without a terminal.
    if !has_terminal() {
        eprintln!(
            "secmon: the terminal UI needs a terminal on stdin and stdout; for a pipe, read the \
             remote's stream from its API (/api/v1/events, docs/api.md)"
        );
        return Ok(ExitCode::from(2));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .wrap_err("starting the async runtime")?;
    let summary = runtime.block_on(tui::run_remote(client, status));
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
    let summary = summary?;
    eprintln!(
        "secmon: stopped: {} events received from {} ({} lost on the link)",
        summary.events,
        sanitize::for_terminal(&summary.host),
        summary.lost_on_link
    );
    Ok(ExitCode::SUCCESS)
}

/// stdout as a file of its own for the JSON writer thread: unbuffered by std (the writer
/// writes whole batches) and independent of std's stdout lock, which that thread may hold
/// for ever on a stalled pipe while the process exits.
fn stdout_file() -> std::io::Result<std::fs::File> {
    use std::os::fd::AsFd;
    Ok(std::fs::File::from(
        std::io::stdout().as_fd().try_clone_to_owned()?,
    ))
}

/// Whether stdin and stdout are a terminal (the UI needs both).
fn has_terminal() -> bool {
    std::io::stdin().is_terminal() && std::io::stdout().is_terminal()
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

/// `secmon-tui block list|add|remove` and `unblock`: one request to the running monitor's
/// control socket (`--socket`, else the config's `control_socket`).
fn run_block_command(cli: &Cli, command: &BlockCommand) -> Result<ExitCode> {
    use secmon::response::control::{self, Request, TargetSpec};
    let socket = match command.socket() {
        Some(path) => path.to_path_buf(),
        None => {
            let (config, _) = Config::load_or_default(cli.config.as_deref())?;
            config.response.control_socket
        }
    };
    let request = match command {
        BlockCommand::List { .. } => Request::List,
        BlockCommand::Add {
            kind,
            target,
            ttl,
            reason,
            ..
        } => Request::Add {
            target: match kind {
                BlockKind::Exec => TargetSpec::Exec(target.clone()),
                BlockKind::Connect => TargetSpec::Connect(target.clone()),
            },
            ttl_secs: *ttl,
            reason: reason.clone(),
        },
        BlockCommand::Remove { id, .. } => Request::Remove { id: *id },
    };
    let reply = control::request(&socket, &request)?;
    if !reply.ok {
        let error = reply.error.unwrap_or_else(|| "refused".to_string());
        eprintln!("secmon: {}", sanitize::for_terminal(&error));
        return Ok(ExitCode::FAILURE);
    }
    let mut out = std::io::stdout().lock();
    match (&request, reply.denies, reply.deny) {
        (Request::List, Some(denies), _) => {
            control::write_list(&mut out, &denies).wrap_err("writing the list")?;
        }
        (Request::Add { .. }, _, Some(deny)) => {
            writeln!(out, "blocked {}", control::describe(&deny)).wrap_err("writing")?;
        }
        (Request::Remove { .. }, _, Some(deny)) => {
            writeln!(out, "unblocked {}", control::describe(&deny)).wrap_err("writing")?;
        }
        _ => writeln!(out, "ok").wrap_err("writing")?,
    }
    Ok(ExitCode::SUCCESS)
}
