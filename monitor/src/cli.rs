//! Command-line interface.
//!
//! Every numeric flag has a value parser that refuses what would make no sense or could not be
//! represented (negative, NaN, infinite, too large) with a message naming the flag's unit, so a
//! typo is a usage error (exit status 2), never a panic further on.
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::history_cli::HistoryArgs;
use crate::record::Speed;

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
        secmon-tui rules check rules/                 validate rule files (no root needed)\n  \
        sudo secmon-tui history --last 2h --min-risk 0.6   what the rules flagged lately\n  \
        sudo secmon-tui --json --record story.jsonl   save the event stream while monitoring\n  \
        secmon-tui --replay story.jsonl --speed 2     replay it in the UI (no root needed)\n  \
        secmon-tui --replay story.jsonl --json --speed max   replay it as JSON lines\n  \
        sudo secmon-tui block add exec /tmp/dropper   kill it at exec (needs [response] enforce)\n  \
        sudo secmon-tui block list                    deny entries of the running monitor\n  \
        secmon-tui --connect https://web1:9988 --token-file web1.token   another machine's UI\n  \
        secmon-tui hub --nats nats://127.0.0.1:4222   the dashboard of every host on NATS\n  \
        sudo secmon-tui demo webapp                   a narrated attack, live, for a class\n\n\
        In the UI: ? shows every key; h the stored history; D the deny entries; b simulates\n\
        and B (asking y/N, with [response] enforce = true) really blocks the selected event;\n\
        i shows its process tree; Z (or --presenter) the layout for a projector.\n\n\
        Config: /etc/secmon/secmon.toml if present, else built-in defaults (docs/config.md).\n\
        JSON fields: docs/json-schema.md."
)]
pub struct Cli {
    /// Print one JSON object per event on stdout instead of opening the terminal UI.
    #[arg(long)]
    pub json: bool,

    /// Stop after this many seconds, e.g. 10 or 0.5 (default: run until Ctrl-C / SIGTERM).
    #[arg(long, value_name = "SECS", value_parser = parse_duration_secs, allow_hyphen_values = true, global = true)]
    pub duration: Option<Duration>,

    /// TOML configuration file ([monitoring], [threat_detection], [response], [storage]).
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,

    /// Kernel ring buffer size in MiB (a power of two); more absorbs longer bursts.
    #[arg(long, value_name = "MIB", default_value_t = 16, value_parser = parse_ring_mib, global = true)]
    pub ring_buffer_mib: u32,

    /// Rule directory (default: /usr/local/share/secmon/rules if it exists, else the source
    /// tree's rules/). The config's `rules_dirs` are loaded too.
    #[arg(long, value_name = "DIR", global = true)]
    pub rules: Option<PathBuf>,

    /// History database (default: the config's [storage] path, /var/lib/secmon/events.db).
    /// With --replay, events are stored only when --db is given.
    #[arg(long, value_name = "PATH", global = true)]
    pub db: Option<PathBuf>,

    /// Save the event stream (enriched events, before analysis) to FILE while monitoring, for
    /// --replay. zstd-compressed when FILE ends in .zst.
    #[arg(long, value_name = "FILE", global = true)]
    pub record: Option<PathBuf>,

    /// Replay a recording (or saved --json output) instead of capturing: no root and no eBPF
    /// needed; the events go through the current rules.
    #[arg(long, value_name = "FILE", global = true)]
    pub replay: Option<PathBuf>,

    /// Replay speed: a multiple of real time (1, 2, 10, ...) or max (as fast as possible; the
    /// --json output is then deterministic).
    #[arg(long, value_name = "1|2|10|max", requires = "replay", global = true)]
    pub speed: Option<Speed>,

    /// Watch another machine: the terminal UI on the live stream of the controller at URL
    /// (`secmon-tui serve` there), with the same panes and keys. The keys act on that
    /// machine through its API and its own safety checks: probes (1-4), rules (r, R then
    /// Space), blocks (b, B, D) and the history (h) are the remote's. No root, no eBPF, no
    /// local rules or history here. https:// with a certificate this machine trusts (see
    /// --ca-file); plain http:// only to a loopback address (an SSH tunnel, say). The link
    /// reconnects by itself; the header says how it is and what it lost.
    #[arg(
        long,
        value_name = "URL",
        requires = "token_file",
        conflicts_with_all = ["json", "replay", "record", "serve", "db", "duration"]
    )]
    pub connect: Option<String>,

    /// The remote controller's access token (its [controller] token_file, copied here with
    /// mode 600): sent as `Authorization: Bearer` to --connect's URL only.
    #[arg(long, value_name = "FILE", requires = "connect")]
    pub token_file: Option<PathBuf>,

    /// PEM certificates the --connect controller's certificate must chain to (its own
    /// self-signed certificate, or a private CA). Default: the built-in Mozilla roots.
    #[arg(long, value_name = "PEM", requires = "connect")]
    pub ca_file: Option<PathBuf>,

    /// Start the terminal UI in the presenter layout, for a projector: fewer columns, risk
    /// markers as words (`!! MALICIOUS`), high-contrast colours. `Z` toggles it.
    #[arg(long, conflicts_with_all = ["json", "connect"])]
    pub presenter: bool,

    /// Also serve the web controller (API and dashboard, see `serve --help`) beside the
    /// terminal UI or --json (`demo --serve`: with the demo's narration). Same as
    /// [controller] enabled = true.
    #[arg(long, global = true)]
    pub serve: bool,

    /// The controller's address and port (default: [controller] listen, 127.0.0.1:9988).
    /// Port 0 picks a free one (the URL printed says which).
    #[arg(long, value_name = "ADDR:PORT", global = true)]
    pub listen: Option<std::net::SocketAddr>,

    /// Serve the controller over plain HTTP on a non-loopback address (without TLS anyone on
    /// the network can read the token, the session and the events: use TLS instead).
    #[arg(long, global = true)]
    pub insecure_http: bool,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// `secmon-tui hub`'s options (the rest are the global --listen, --insecure-http, --config,
/// --duration).
#[derive(Debug, Args)]
#[command(next_help_heading = "Hub options")]
pub struct HubArgs {
    /// The NATS server the machines publish to: nats://HOST:PORT, tls://HOST:PORT (several,
    /// comma-separated, for a cluster). Default: [export.nats] url.
    #[arg(long, value_name = "URL")]
    pub nats: Option<String>,
    /// A file holding the NATS server's auth token (mode 600).
    #[arg(long, value_name = "FILE", conflicts_with = "nats_credentials")]
    pub nats_token_file: Option<PathBuf>,
    /// A NATS .creds file (user JWT and NKey seed) to log in with.
    #[arg(long, value_name = "FILE")]
    pub nats_credentials: Option<PathBuf>,
    /// PEM CA certificate(s) the NATS server's certificate must chain to (turns TLS on).
    #[arg(long, value_name = "PEM")]
    pub nats_ca_file: Option<PathBuf>,
    /// PEM client certificate for a server that verifies clients (with --nats-key).
    #[arg(long, value_name = "PEM", requires = "nats_key")]
    pub nats_cert: Option<PathBuf>,
    /// The private key of --nats-cert.
    #[arg(long, value_name = "PEM", requires = "nats_cert")]
    pub nats_key: Option<PathBuf>,
    /// The subjects' first tokens, as the machines' [export.nats] subject_prefix (default
    /// secmon).
    #[arg(long, value_name = "PREFIX")]
    pub subject_prefix: Option<String>,
    /// The JetStream stream the machines publish to, for history (default SECMON).
    #[arg(long, value_name = "NAME")]
    pub stream: Option<String>,
    /// A directory of the hosts' control tokens: HOST.token holds a copy of that machine's
    /// [controller] token_file (mode 600, this user's). Without it the hub only watches.
    #[arg(long, value_name = "DIR")]
    pub host_tokens: Option<PathBuf>,
    /// The dashboard's own access token (made on first start, mode 600). Default: [controller]
    /// token_file.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Where the hub writes who did what (default: [controller] audit_log).
    #[arg(long, value_name = "FILE")]
    pub audit_log: Option<PathBuf>,
    /// PEM certificate chain for serving HTTPS (with --tls-key).
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (mode 600).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Work with rule files (no root needed).
    #[command(subcommand)]
    Rules(RulesCommand),
    /// Query the event history: what happened, when, above which risk.
    History(HistoryArgs),
    /// Kernel deny entries of the running monitor (real enforcement, `[response] enforce =
    /// true`), through its control socket. Root only.
    #[command(subcommand)]
    Block(BlockCommand),
    /// Run headless with the web controller: an authenticated HTTP/WebSocket API (/api/v1)
    /// and a live dashboard, on 127.0.0.1:9988 by default ([controller] in the config).
    ///
    /// Prints the URL and where the access token is once ready; open the URL, paste the token
    /// (`sudo cat /var/lib/secmon/controller.token`). API clients send it as
    /// `Authorization: Bearer TOKEN` (docs/api.md). A non-loopback --listen needs tls_cert and
    /// tls_key in [controller] (or --insecure-http). With --replay FILE it serves a recording
    /// (no root needed). Every change made through it is written to [controller] audit_log.
    #[command(after_help = "Examples:\n  \
        sudo secmon-tui serve                                   dashboard on http://127.0.0.1:9988/\n  \
        sudo secmon-tui serve --listen 0.0.0.0:9988 --config /etc/secmon/secmon.toml   (with TLS set up)\n  \
        secmon-tui serve --replay story.jsonl --listen 127.0.0.1:0   a recording, no root\n  \
        curl -H \"Authorization: Bearer $(sudo cat /var/lib/secmon/controller.token)\" http://127.0.0.1:9988/api/v1/status")]
    Serve,
    /// Check that the kernel accepts every eBPF program, without monitoring anything.
    ///
    /// Loads each program of the built-in eBPF object (or of --object FILE) into the kernel,
    /// whose verifier checks it, attaches none, and unloads them again. One line per program,
    /// then a summary; exit status 1 if the kernel refused one. Run it first on a new kernel
    /// or architecture (an ARM64 board, a distribution kernel): a refusal prints the
    /// verifier's reason. Root only.
    #[command(after_help = "Examples:\n  \
        sudo secmon-tui check-ebpf                  the programs built into this binary\n  \
        sudo secmon-tui check-ebpf --object target/ebpf-cache/aarch64-*/monitor   another build's object")]
    CheckEbpf {
        /// An eBPF object file to check instead of the built-in one.
        #[arg(long, value_name = "FILE")]
        object: Option<PathBuf>,
    },
    /// Hub mode: the web dashboard for every machine that publishes on NATS ([export.nats] on
    /// each machine). No probes, no root.
    ///
    /// The Machines page fills itself from the hosts' status messages (a host whose status
    /// stops is shown unreachable, and comes back by itself); each host has its page
    /// (/hosts/NAME: state, probes, alerts, recent events, its history from the JetStream
    /// stream); the All machines view merges their alerts; the live page shows every host's
    /// events. Probe and rule switches and simulated blocks go to that host only, as NATS
    /// requests on <prefix>.<host>.control with its own controller token (from
    /// --host-tokens), and are applied by its own checks. Log in as on the controller, with the
    /// token in --token-file (made on first start, mode 600). docs/fleet.md, docs/scaling.md.
    #[command(after_help = "Examples:\n  \
        secmon-tui hub --nats nats://127.0.0.1:4222 --token-file ~/.secmon/hub.token\n  \
        secmon-tui hub --nats tls://nats.example:4222 --nats-ca-file ca.pem --nats-credentials hub.creds \\\n      \
            --host-tokens ~/.secmon/hosts --token-file ~/.secmon/hub.token --listen 127.0.0.1:9990\n\n\
        Defaults come from --config's [export.nats] (url, subject_prefix, stream, TLS, login) and\n\
        [controller] (listen, token_file, audit_log, tls_cert, tls_key). A non-loopback --listen\n\
        needs --tls-cert and --tls-key (or --insecure-http).")]
    Hub(HubArgs),
    /// Classroom mode: a narrated attack scenario, step by step, in a sandbox (root), with the
    /// live monitor showing what the kernel sees (docs/classroom.md).
    #[command(after_help = "Examples:\n  \
        secmon-tui demo --list                  the scenarios (built in, and --dir's)\n  \
        secmon-tui demo --check my-lesson.toml  validate a scenario file (file:line:column errors)\n  \
        sudo secmon-tui demo webapp             play it live: n next step, a auto-play, ? keys\n  \
        sudo secmon-tui demo webapp --serve     and show the narration on the web dashboard too")]
    Demo(DemoArgs),
    /// Removes a deny entry of the running monitor (same as `block remove ID`).
    Unblock {
        /// The entry's id (`block list`, or the `deny_id` of the event's response).
        id: u32,
        #[command(flatten)]
        socket: SocketArg,
    },
}

/// `secmon-tui demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The scenario to play: a name from --list, or a scenario file.
    #[arg(value_name = "SCENARIO", conflicts_with_all = ["list", "check"])]
    pub scenario: Option<String>,
    /// List the scenarios: name, title, steps and ATT&CK techniques.
    #[arg(long)]
    pub list: bool,
    /// Validate a scenario file against the loaded rules (exit status 1 on an error).
    #[arg(long, value_name = "FILE", conflicts_with = "list")]
    pub check: Option<PathBuf>,
    /// Also load the scenarios of DIR (`*.toml`; one named like a built-in one replaces it).
    #[arg(long, value_name = "DIR")]
    pub dir: Vec<PathBuf>,
    /// Let `B` really block, in the kernel, the demo's own processes (and nothing else); by
    /// default a demo only simulates (`b`), whatever [response] enforce says. Refused while a
    /// loaded rule's action is `block` (it would act on the whole machine).
    #[arg(long, conflicts_with_all = ["list", "check"])]
    pub enforce: bool,
    /// Start in the presenter layout, for a projector (as `secmon-tui --presenter`; `Z`
    /// toggles it).
    #[arg(long, conflicts_with_all = ["list", "check"])]
    pub presenter: bool,
    /// Play SCENARIO headless (no UI, root) and write its recording for the replay without
    /// root into DIR (`cargo xtask demo-record` runs it for every shipped scenario).
    #[arg(long, value_name = "DIR", hide = true, requires = "scenario")]
    pub record_steps: Option<PathBuf>,
}

/// `--socket PATH`: the running monitor's control socket.
#[derive(Clone, Debug, Default, Args)]
pub struct SocketArg {
    /// The control socket (default: the config's [response] control_socket,
    /// /run/secmon/control.sock).
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
}

/// `secmon-tui block …`.
#[derive(Debug, Subcommand)]
pub enum BlockCommand {
    /// List the deny entries: id, target, expiry, who and why.
    List {
        #[command(flatten)]
        socket: SocketArg,
    },
    /// Deny a program (killed at its next exec) or a destination (connect refused, EPERM).
    Add {
        /// exec: a program, by absolute path or by name; connect: ADDR, ADDR:PORT or [V6]:PORT.
        kind: BlockKind,
        /// The program or the destination.
        target: String,
        /// Seconds until the entry lapses (0: never; at most 31536000, a year; default: the
        /// config's deny_ttl_secs).
        #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(0..=crate::config::MAX_DENY_TTL_SECS))]
        ttl: Option<u64>,
        /// Why (recorded with the entry and in the alert log).
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
        #[command(flatten)]
        socket: SocketArg,
    },
    /// Remove a deny entry.
    Remove {
        id: u32,
        #[command(flatten)]
        socket: SocketArg,
    },
}

/// What `block add` denies.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum BlockKind {
    Exec,
    Connect,
}

impl BlockCommand {
    pub fn socket(&self) -> Option<&std::path::Path> {
        match self {
            BlockCommand::List { socket }
            | BlockCommand::Add { socket, .. }
            | BlockCommand::Remove { socket, .. } => socket.socket.as_deref(),
        }
    }
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
    /// List the rules: name, score, action, enabled, tactic, tags.
    List {
        /// Rule directory to list.
        dir: Option<PathBuf>,
        /// Print the rule reference of docs/rules.md instead (every rule's ATT&CK
        /// classification, what, why, false positives and condition; the shared lists and
        /// macros). Paths in it are as given: run from the repository root with `rules`.
        #[arg(long)]
        markdown: bool,
    },
}

impl RulesCommand {
    pub fn dir(&self) -> Option<&std::path::Path> {
        match self {
            RulesCommand::Check { dir }
            | RulesCommand::Test { dir }
            | RulesCommand::List { dir, .. } => dir.as_deref(),
        }
    }
}

/// The longest `--duration`: a year. Longer is surely a typo, and a deadline that far is
/// nothing a clock computation has to worry about.
pub const MAX_DURATION_SECS: u64 = 365 * 24 * 3600;

/// `--duration SECS`: a finite number of seconds above zero, at most [`MAX_DURATION_SECS`].
pub fn parse_duration_secs(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds (e.g. 10 or 0.5)"))?;
    if !secs.is_finite() {
        return Err(format!("`{text}`: the number of seconds must be finite"));
    }
    if secs <= 0.0 {
        return Err(format!(
            "`{text}`: the number of seconds must be above zero (leave --duration out to run \
             until stopped)"
        ));
    }
    if secs > MAX_DURATION_SECS as f64 {
        return Err(format!(
            "`{text}` seconds is too long: at most {MAX_DURATION_SECS} (a year); leave \
             --duration out to run until stopped"
        ));
    }
    Duration::try_from_secs_f64(secs).map_err(|e| format!("`{text}`: {e}"))
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
    fn block_subcommands_parse() {
        let cli = Cli::try_parse_from(["secmon-tui", "block", "add", "connect", "127.0.0.1:80"])
            .expect("parses");
        let Some(Command::Block(BlockCommand::Add {
            kind, target, ttl, ..
        })) = &cli.command
        else {
            panic!("block add: {cli:?}");
        };
        assert_eq!(
            (*kind, target.as_str(), *ttl),
            (BlockKind::Connect, "127.0.0.1:80", None)
        );
        let cli = Cli::try_parse_from([
            "secmon-tui",
            "block",
            "add",
            "exec",
            "/tmp/x",
            "--ttl",
            "60",
            "--socket",
            "/s",
        ])
        .expect("parses");
        let Some(Command::Block(command)) = &cli.command else {
            panic!("block: {cli:?}");
        };
        assert_eq!(command.socket(), Some(std::path::Path::new("/s")));
        let cli = Cli::try_parse_from(["secmon-tui", "unblock", "7"]).expect("parses");
        assert!(matches!(cli.command, Some(Command::Unblock { id: 7, .. })));
        let cli = Cli::try_parse_from(["secmon-tui", "block", "list"]).expect("parses");
        assert!(matches!(
            cli.command,
            Some(Command::Block(BlockCommand::List { .. }))
        ));
        assert!(Cli::try_parse_from(["secmon-tui", "block", "add", "file", "/x"]).is_err());
        assert!(Cli::try_parse_from(["secmon-tui", "block", "remove", "x"]).is_err());
    }

    #[test]
    fn block_ttl_is_checked_on_the_command_line() {
        let add = |ttl: &str| {
            Cli::try_parse_from(["secmon-tui", "block", "add", "exec", "/tmp/x", "--ttl", ttl])
        };
        assert!(add("0").is_ok());
        assert!(add("31536000").is_ok());
        for bad in ["31536001", "-1", "18446744073709551616", "1e3", "nan"] {
            assert!(add(bad).is_err(), "{bad}");
        }
        let e = add("31536001").expect_err("too long");
        assert!(e.to_string().contains("0..=31536000"), "{e}");
    }

    #[test]
    fn hub_takes_its_nats_and_dashboard_flags() {
        let cli = Cli::try_parse_from([
            "secmon-tui",
            "hub",
            "--nats",
            "nats://127.0.0.1:4222",
            "--host-tokens",
            "hosts",
            "--listen",
            "127.0.0.1:0",
            "--subject-prefix",
            "acme.secmon",
        ])
        .expect("parses");
        let Some(Command::Hub(args)) = &cli.command else {
            panic!("not the hub: {cli:?}");
        };
        assert_eq!(args.nats.as_deref(), Some("nats://127.0.0.1:4222"));
        assert_eq!(
            args.host_tokens.as_deref(),
            Some(std::path::Path::new("hosts"))
        );
        assert_eq!(args.subject_prefix.as_deref(), Some("acme.secmon"));
        assert!(cli.listen.is_some_and(|l| l.port() == 0));
        // A half TLS or client-certificate setup, or two NATS logins, are usage errors.
        usage_error(&["hub", "--tls-cert", "c.pem"]);
        usage_error(&["hub", "--nats-key", "k.pem"]);
        usage_error(&["hub", "--nats-token-file", "t", "--nats-credentials", "c"]);
    }

    #[test]
    fn connect_needs_a_token_file_and_excludes_local_sources() {
        let cli = Cli::try_parse_from([
            "secmon-tui",
            "--connect",
            "https://web1:9988",
            "--token-file",
            "t",
            "--ca-file",
            "ca.pem",
        ])
        .expect("parses");
        assert_eq!(cli.connect.as_deref(), Some("https://web1:9988"));
        assert_eq!(cli.token_file, Some(PathBuf::from("t")));
        assert_eq!(cli.ca_file, Some(PathBuf::from("ca.pem")));
        usage_error(&["--connect", "https://web1:9988"]);
        usage_error(&["--token-file", "t"]);
        usage_error(&["--ca-file", "ca.pem"]);
        for other in [
            &["--json"][..],
            &["--replay", "r.jsonl"],
            &["--record", "r.jsonl"],
            &["--serve"],
            &["--db", "x.db"],
        ] {
            let mut args = vec!["--connect", "https://web1:9988", "--token-file", "t"];
            args.extend_from_slice(other);
            usage_error(&args);
        }
    }

    #[test]
    fn demo_parses() {
        let cli =
            Cli::try_parse_from(["secmon-tui", "demo", "webapp", "--dir", "d"]).expect("parses");
        let Some(Command::Demo(args)) = &cli.command else {
            panic!("demo: {cli:?}");
        };
        assert_eq!(args.scenario.as_deref(), Some("webapp"));
        assert_eq!(args.dir, [PathBuf::from("d")]);
        let cli = Cli::try_parse_from(["secmon-tui", "demo", "--check", "s.toml"]).expect("parses");
        assert!(matches!(&cli.command, Some(Command::Demo(a)) if a.check.is_some()));
        // The dashboard beside the demo: --serve after the subcommand too.
        let cli = Cli::try_parse_from(["secmon-tui", "demo", "webapp", "--serve"]).expect("parses");
        assert!(cli.serve);
        usage_error(&["demo", "webapp", "--list"]);
        usage_error(&["demo", "--list", "--check", "s.toml"]);
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
    fn record_replay_and_history_parse() {
        let cli = Cli::try_parse_from(["secmon-tui", "--replay", "r.jsonl", "--speed", "max"])
            .expect("parses");
        assert_eq!(cli.replay, Some(PathBuf::from("r.jsonl")));
        assert_eq!(cli.speed, Some(Speed::Max));
        assert!(Cli::try_parse_from(["secmon-tui", "--speed", "2"]).is_err());
        assert!(Cli::try_parse_from(["secmon-tui", "--replay", "r", "--speed", "fast"]).is_err());
        let cli = Cli::try_parse_from(["secmon-tui", "--json", "--record", "out.jsonl.zst"])
            .expect("parses");
        assert_eq!(cli.record, Some(PathBuf::from("out.jsonl.zst")));
        let cli = Cli::try_parse_from([
            "secmon-tui",
            "history",
            "--last",
            "2h",
            "--min-risk",
            "0.6",
            "--db",
            "x.db",
        ])
        .expect("parses");
        assert_eq!(cli.db, Some(PathBuf::from("x.db")));
        assert!(matches!(cli.command, Some(Command::History(_))));
    }

    /// The error clap prints for `args`, which must be a usage error, not a panic.
    fn usage_error(args: &[&str]) -> String {
        let mut argv = vec!["secmon-tui"];
        argv.extend_from_slice(args);
        let e = Cli::try_parse_from(&argv).expect_err("a usage error");
        assert_eq!(e.exit_code(), 2, "{e}");
        e.to_string()
    }

    #[test]
    fn duration_accepts_positive_finite_seconds() {
        let cli = Cli::try_parse_from(["secmon-tui", "--presenter"]).expect("parses");
        assert!(cli.presenter);
        assert!(Cli::try_parse_from(["secmon-tui", "--presenter", "--json"]).is_err());
        let cli = Cli::try_parse_from(["secmon-tui", "--duration", "2.5"]).expect("parses");
        assert_eq!(cli.duration, Some(Duration::from_millis(2500)));
        let cli = Cli::try_parse_from(["secmon-tui", "--duration", "31536000"]).expect("a year");
        assert_eq!(cli.duration, Some(Duration::from_secs(MAX_DURATION_SECS)));
    }

    #[test]
    fn duration_rejects_negative_nan_infinite_and_huge_values() {
        for (value, expected) in [
            ("-1", "above zero"),
            ("-0.5", "above zero"),
            ("0", "above zero"),
            ("nan", "finite"),
            ("NaN", "finite"),
            ("inf", "finite"),
            ("-inf", "finite"),
            ("infinity", "finite"),
            ("1e300", "too long"),
            ("31536001", "too long"),
            ("18446744073709551616", "too long"),
            ("ten", "not a number of seconds"),
            ("", "not a number of seconds"),
        ] {
            let e = usage_error(&["--duration", value]);
            assert!(e.contains(expected), "--duration {value}: {e}");
            let e = usage_error(&[&format!("--duration={value}")]);
            assert!(e.contains(expected), "--duration={value}: {e}");
        }
    }

    #[test]
    fn other_numeric_flags_reject_bad_values_with_a_usage_error() {
        for args in [
            &["--ring-buffer-mib", "-16"][..],
            &["--ring-buffer-mib", "99999999999"],
            &["--ring-buffer-mib", "nan"],
            &["--replay", "r", "--speed", "-2"],
            &["--replay", "r", "--speed", "nan"],
            &["--replay", "r", "--speed", "inf"],
            &["--replay", "r", "--speed", "1e400"],
            &["unblock", "-1"],
            &["unblock", "4294967296"],
            &["block", "remove", "-3"],
            &["history", "--pid", "-1"],
            &["history", "--pid", "99999999999"],
            &["history", "--limit", "-5"],
            &["history", "--limit", "999999999999999999999"],
        ] {
            usage_error(args);
        }
        // `history --min-risk` is checked by the history command itself (one-line errors,
        // NaN and infinities included: history_cli's tests).
    }

    #[test]
    fn ring_size_must_be_a_power_of_two() {
        assert!(parse_ring_mib("16").is_ok());
        assert!(parse_ring_mib("3").is_err());
        assert!(parse_ring_mib("x").is_err());
    }
}
