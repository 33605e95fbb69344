//! The binary edge: parse the command line, load the config, run, and turn errors into one
//! clear line and an exit code.
use std::{
    io::{IsTerminal, Write},
    path::Path,
    process::ExitCode,
    time::Duration,
};

use clap::Parser;
use color_eyre::eyre::{Result, WrapErr, eyre};
use secmon::{
    capture::{self, CaptureError},
    cli::{BlockCommand, BlockKind, Cli, Command, DemoArgs, HubArgs, RulesCommand},
    config::{self, Config},
    controller::{self, ControllerCompanion},
    demo::{self, narration::NarrationBoard},
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

// mimalloc's own API (the `mimalloc` crate exposes only the allocator; its `extended` feature
// would pull in another crate for this one function).
unsafe extern "C" {
    fn mi_collect(force: bool);
}

/// Returns the pages mimalloc holds freed to the system now (see `secmon::memory`).
fn release_freed_memory() {
    // SAFETY: mimalloc is the global allocator and mi_collect may be called from any thread.
    unsafe { mi_collect(true) }
}

fn main() -> ExitCode {
    refuse_huge_pages();
    secmon::memory::set_release(release_freed_memory);
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
    if let Some(Command::Demo(args)) = &cli.command {
        return run_demo_command(&cli, args);
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
    if let Some(Command::CheckEbpf { object }) = &cli.command {
        return run_check_ebpf(object.as_deref());
    }
    if let Some(Command::History(args)) = &cli.command {
        // Arguments are checked before the configuration is read.
        let (config, _) = Config::load_or_default(cli.config.as_deref())?;
        let db = cli.db.clone().unwrap_or(config.storage.path);
        return Ok(ExitCode::from(history_cli::main(args, &db)));
    }
    if let Some(Command::Hub(args)) = &cli.command {
        return run_hub(&cli, args);
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

/// `secmon-tui hub`: the dashboard for the hosts on NATS, until a signal or --duration.
fn run_hub(cli: &Cli, args: &HubArgs) -> Result<ExitCode> {
    // The hub captures, stores and records nothing: say so rather than ignore the flags.
    for (given, flag) in [
        (cli.replay.is_some(), "--replay"),
        (cli.record.is_some(), "--record"),
        (cli.db.is_some(), "--db"),
    ] {
        if given {
            return Err(eyre!(
                "hub: {flag} is not for the hub (it shows what the hosts publish)"
            ));
        }
    }
    let (config, source) = Config::load_or_default(cli.config.as_deref())?;
    let (settings, controller, options) = hub_settings(cli, args, &config)?;
    eprintln!("secmon: config: {source}");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .wrap_err("starting the async runtime")?;
    runtime.block_on(secmon::fleet::hub::run(settings, &controller, options))?;
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
    Ok(ExitCode::SUCCESS)
}

/// The hub's settings: its flags over [controller] and [export.nats].
fn hub_settings(
    cli: &Cli,
    args: &HubArgs,
    config: &Config,
) -> Result<(
    controller::Settings,
    config::Controller,
    secmon::fleet::hub::HubOptions,
)> {
    let mut section = config.controller.clone();
    if let Some(listen) = cli.listen {
        section.listen = listen;
    }
    if let Some(token_file) = &args.token_file {
        section.token_file = token_file.clone();
    }
    if let Some(audit_log) = &args.audit_log {
        section.audit_log = audit_log.clone();
    }
    if args.tls_cert.is_some() {
        section.tls_cert = args.tls_cert.clone();
        section.tls_key = args.tls_key.clone();
    }
    let settings = controller::Settings::from_config(&section, cli.insecure_http);
    settings.check(&section)?;
    let nats = &config.export.nats;
    let mut connection = secmon::fleet::Connection::from_config(nats);
    if let Some(url) = &args.nats {
        connection.url = url.clone();
    }
    if args.nats_token_file.is_some() || args.nats_credentials.is_some() {
        connection.token_file = args.nats_token_file.clone();
        connection.credentials = args.nats_credentials.clone();
    }
    if let Some(ca) = &args.nats_ca_file {
        connection.ca_file = Some(ca.clone());
    }
    if let Some(pair) = args.nats_cert.clone().zip(args.nats_key.clone()) {
        connection.client_cert = Some(pair);
    }
    let prefix = args
        .subject_prefix
        .clone()
        .unwrap_or_else(|| nats.subject_prefix.clone());
    for token in prefix.split('.') {
        if let Some(problem) = config::subject_token_problem(token) {
            return Err(eyre!("--subject-prefix {prefix:?}: {problem}"));
        }
    }
    let options = secmon::fleet::hub::HubOptions {
        connection,
        prefix,
        stream: args.stream.clone().unwrap_or_else(|| nats.stream.clone()),
        host_tokens: args.host_tokens.clone(),
        duration: cli.duration,
    };
    Ok((settings, section, options))
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

/// A demo's companions: the controller with the demo's narration (`demo --serve`), and for a
/// live demo the NATS exporter (a replayed recording is not this machine's activity).
fn demo_companions(
    settings: Option<controller::Settings>,
    config: &Config,
    options: &RunOptions,
    board: &NarrationBoard,
    live: bool,
) -> pipeline::Companions {
    let mut companions: pipeline::Companions = Vec::new();
    if let Some(settings) = settings {
        let controller = ControllerCompanion::new(settings, config, options);
        companions.push(Box::new(controller.with_demo(board.clone())));
    }
    if live && let Some(exporter) = NatsCompanion::from_config(config) {
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

/// Lines of a refusal's verifier log printed per program (the end says why; the whole log is
/// often thousands of lines).
const VERIFIER_LOG_TAIL: usize = 12;

fn run_check_ebpf(object: Option<&std::path::Path>) -> Result<ExitCode> {
    let file_bytes;
    let (bytes, what) = match object {
        Some(path) => {
            file_bytes = std::fs::read(path)
                .wrap_err_with(|| format!("reading the eBPF object {}", path.display()))?;
            (&file_bytes[..], path.display().to_string())
        }
        None => (
            capture::verify::embedded_object(),
            format!("the built-in object ({})", std::env::consts::ARCH),
        ),
    };
    let checks = capture::verify::check_object(bytes)?;
    let mut stdout = std::io::stdout().lock();
    let mut refused = 0;
    for check in &checks {
        let verdict = if check.refused.is_some() {
            "REFUSED"
        } else {
            "ok"
        };
        writeln!(stdout, "{verdict:<8} {:<17} {}", check.kind, check.name)?;
        if let Some(log) = &check.refused {
            refused += 1;
            let lines: Vec<&str> = log.lines().collect();
            for line in &lines[lines.len().saturating_sub(VERIFIER_LOG_TAIL)..] {
                writeln!(
                    stdout,
                    "         | {}",
                    secmon::sanitize::for_terminal(line)
                )?;
            }
        }
    }
    writeln!(
        stdout,
        "{}: {} programs, {} loaded, {refused} refused by this kernel",
        secmon::sanitize::for_terminal(&what),
        checks.len(),
        checks.len() - refused
    )?;
    Ok(if refused == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Where the demo's sandbox directories go: a tmpfs, so that not even a power cut leaves one
/// past the next boot.
const DEMO_SANDBOX_BASE: &str = "/run";

/// `secmon-tui demo [SCENARIO] | --list | --check FILE`.
fn run_demo_command(cli: &Cli, args: &DemoArgs) -> Result<ExitCode> {
    let (mut config, source) = Config::load_or_default(cli.config.as_deref())?;
    // A demo simulates blocking (`b`) whatever [response] says; with --enforce, `B` really
    // blocks the demo's own processes only (tui::DemoScopedResponse), and the deny entries
    // go with the monitor.
    config.response.enforce = args.enforce;
    let engine = load_rules(cli, &config)?;
    let rules = engine.current();
    let known = |name: &str| rules.get(name).is_some();
    if let Some(file) = &args.check {
        return Ok(match demo::scenario::read(file, Some(&known)) {
            Ok(s) => {
                println!(
                    "ok: {} ({} steps, every expected rule is loaded)",
                    sanitize::for_terminal(&s.name),
                    s.steps.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                // One problem a line, each escaped (they quote the file).
                for line in e.to_string().lines() {
                    eprintln!("{}", sanitize::for_terminal(line));
                }
                ExitCode::FAILURE
            }
        });
    }
    let scenarios = demo::scenario::load_all(&args.dir, Some(&known))?;
    if args.list {
        demo::write_list(&mut std::io::stdout().lock(), &scenarios).wrap_err("writing the list")?;
        return Ok(ExitCode::SUCCESS);
    }
    let wanted = args.scenario.as_deref().unwrap_or("webapp");
    let scenario = demo::scenario::find(&scenarios, wanted, Some(&known))?;
    if args.enforce
        && let Some(rule) = engine
            .list()
            .into_iter()
            .find(|r| r.enabled && r.action == secmon::rules::Action::Block)
    {
        eprintln!(
            "secmon: demo --enforce: the rule `{}` blocks on its own, anywhere on this machine, \
             not only in the demo; use rules without `block` actions (--rules DIR)",
            sanitize::for_terminal(&rule.name)
        );
        return Ok(ExitCode::FAILURE);
    }
    if let Some(dir) = &args.record_steps {
        return record_demo(cli, &config, engine, &scenario, dir);
    }
    if !has_terminal() {
        eprintln!("secmon: the demo needs a terminal on stdin and stdout");
        return Ok(ExitCode::from(2));
    }
    let presenter = cli.presenter || args.presenter;
    if !capture::privileged() {
        return replay_demo(cli, &config, engine, scenario, presenter);
    }
    let options = RunOptions {
        duration: cli.duration,
        ring_bytes: Some(cli.ring_buffer_mib * 1024 * 1024),
        rules: Some(engine.clone()),
        // A demo is not this machine's history: stored only into a database named with --db.
        storage: cli.db.is_some().then(|| storage_settings(cli, &config)),
        record: cli.record.clone(),
        presenter,
    };
    let settings = controller_settings(cli, &config)?;
    eprintln!("secmon: config: {source}");
    let sandbox = demo::sandbox::Sandbox::create(Path::new(DEMO_SANDBOX_BASE), &scenario)?;
    eprintln!(
        "secmon: demo {}: sandbox {}",
        sanitize::for_terminal(&scenario.name),
        sandbox.root().display()
    );
    let enforce_in = args.enforce.then(|| sandbox.root().to_path_buf());
    let steps = tui::LiveSteps::new(sandbox, &scenario);
    let mut state =
        secmon::app::DemoState::new(scenario, "live, in a sandbox".to_string(), Box::new(steps));
    let board = NarrationBoard::new();
    state.publish_to(board.clone());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .wrap_err("starting the async runtime")?;
    let companions = demo_companions(settings, &config, &options, &board, true);
    let result = runtime.block_on(tui::run_demo(
        &config,
        &options,
        SourceSpec::Kernel,
        companions,
        state,
        enforce_in,
    ));
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
    let summary = result?;
    eprintln!("secmon: stopped: {}", summary.stopped_line("received"));
    eprintln!("secmon: demo over: its sandbox and processes are gone");
    Ok(ExitCode::SUCCESS)
}

/// `secmon-tui demo SCENARIO` without root: the scenario's shipped recording, step by step
/// (`n` hands the next step's recorded events to the rules), with the same narration and keys.
fn replay_demo(
    cli: &Cli,
    config: &Config,
    engine: RuleEngine,
    scenario: demo::Scenario,
    presenter: bool,
) -> Result<ExitCode> {
    let recorded = demo::recording::shipped(&scenario.name)?;
    if recorded.steps.len() != scenario.steps.len() {
        eprintln!(
            "secmon: the recording of `{}` has {} steps, the scenario {}: regenerate it with \
             cargo xtask demo-record",
            sanitize::for_terminal(&scenario.name),
            recorded.steps.len(),
            scenario.steps.len()
        );
        return Ok(ExitCode::FAILURE);
    }
    let options = RunOptions {
        duration: cli.duration,
        ring_bytes: None,
        rules: Some(engine),
        storage: cli.db.is_some().then(|| storage_settings(cli, config)),
        record: None,
        presenter,
    };
    let settings = controller_settings(cli, config)?;
    let (steps, source) = tui::RecordedSteps::new(recorded);
    let mut state = secmon::app::DemoState::new(
        scenario,
        "replay of a recording (no root)".to_string(),
        Box::new(steps),
    );
    let board = NarrationBoard::new();
    state.publish_to(board.clone());
    let companions = demo_companions(settings, config, &options, &board, false);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .wrap_err("starting the async runtime")?;
    let result = runtime.block_on(tui::run_demo(
        config, &options, source, companions, state, None,
    ));
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
    let summary = result?;
    eprintln!("secmon: stopped: {} events shown", summary.events);
    Ok(ExitCode::SUCCESS)
}

/// How long a headless recording waits after the capture started, and after each step, for
/// the events to be read (a tool's pause, not a test's assertion).
const RECORD_SETTLE: std::time::Duration = std::time::Duration::from_secs(2);

/// `demo SCENARIO --record-steps DIR` (root, `cargo xtask demo-record`): plays every step in
/// the sandbox with the capture on and `--json` to nowhere, records, then cuts the recording
/// to the steps' process trees (`demo::recording`).
fn record_demo(
    cli: &Cli,
    config: &Config,
    engine: RuleEngine,
    scenario: &demo::Scenario,
    dir: &Path,
) -> Result<ExitCode> {
    if !capture::privileged() {
        eprintln!("secmon: {}", CaptureError::NotPrivileged);
        return Ok(ExitCode::FAILURE);
    }
    let work = tempfile_dir(dir, &scenario.name)?;
    let raw = work.join("raw.jsonl");
    let options = RunOptions {
        duration: cli.duration,
        ring_bytes: Some(cli.ring_buffer_mib * 1024 * 1024),
        rules: Some(engine),
        storage: None,
        record: Some(raw.clone()),
        presenter: false,
    };
    let mut sandbox = demo::sandbox::Sandbox::create(Path::new(DEMO_SANDBOX_BASE), scenario)?;
    let runs: Vec<String> = scenario.steps.iter().map(|s| s.run.clone()).collect();
    let player = std::thread::spawn(move || -> Result<Vec<u32>, String> {
        std::thread::sleep(RECORD_SETTLE);
        let mut roots = Vec::new();
        for (i, run) in runs.iter().enumerate() {
            roots.push(sandbox.start(i, run).map_err(|e| e.to_string())?);
            while sandbox.busy() {
                std::thread::sleep(std::time::Duration::from_millis(50));
                for (_, _, end) in sandbox.finished() {
                    eprintln!("secmon: step {}: {end:?}", i + 1);
                }
            }
            std::thread::sleep(RECORD_SETTLE);
        }
        drop(sandbox);
        // The pipeline stops as on Ctrl-C.
        // SAFETY: kill(2) on this process with a signal the pipeline handles.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGINT);
        }
        Ok(roots)
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .wrap_err("starting the async runtime")?;
    let sink = std::fs::File::create("/dev/null").wrap_err("opening /dev/null")?;
    let result = runtime.block_on(pipeline::run_json(
        config,
        &options,
        SourceSpec::Kernel,
        sink,
        Vec::new(),
    ));
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
    result?;
    let roots = match player.join() {
        Ok(Ok(roots)) => roots,
        Ok(Err(e)) => return Err(color_eyre::eyre::eyre!("playing the steps: {e}")),
        Err(_) => return Err(color_eyre::eyre::eyre!("the step player panicked")),
    };
    let kept = demo::recording::write_cut(&raw, &roots, dir, &scenario.name)?;
    let _ = std::fs::remove_dir_all(&work);
    eprintln!(
        "secmon: {}: {kept} events of {} steps in {}",
        sanitize::for_terminal(&scenario.name),
        roots.len(),
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// A fresh work directory for a recording in `dir`.
fn tempfile_dir(dir: &Path, name: &str) -> Result<std::path::PathBuf> {
    let work = dir.join(format!(".{name}.recording"));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).wrap_err_with(|| format!("creating {}", work.display()))?;
    Ok(work)
}
