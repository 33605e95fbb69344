//! `cargo xtask fuzz [--seconds N] [--target NAME]`: runs the cargo-fuzz targets in `fuzz/`
//! (libFuzzer, nightly), each for a short time, seeded from the test fixtures and the rules.
//!
//! Prints a progress line every few seconds and a summary table; exits non-zero when a target
//! crashed (a panic, a timeout, too much memory) and says where the crashing input is. The
//! corpus grows in `fuzz/corpus/<target>/` (not committed) from one run to the next.
//! `cargo xtask test` runs every target for [`CI_SECONDS`], built with [`Build::Quick`].

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::Args;

use crate::util;

/// The targets (`fuzz/fuzz_targets/<name>.rs`) and the directories their seeds come from,
/// besides `tests/fixtures/fuzz/<name>/` (saved crashes and hand-written seeds).
pub const TARGETS: &[(&str, &[&str])] = &[
    ("replay_ui", &["tests/fixtures/recordings"]),
    ("decode_enrich", &[]),
    ("rules_load", &["rules", "tests/rules_fixtures"]),
    (
        "config_load",
        &["config", "tests/valid_configs", "tests/invalid_configs"],
    ),
    ("control_protocol", &[]),
];

/// Seconds per target for `cargo xtask fuzz` without `--seconds`.
pub const DEFAULT_SECONDS: u64 = 20;
/// Seconds per target when `cargo xtask test` runs them.
pub const CI_SECONDS: u64 = 15;
/// libFuzzer limits: one input may take this long (s) and the process this much memory (MiB);
/// inputs are at most this long (bytes).
const INPUT_TIMEOUT_SECS: u64 = 10;
const RSS_LIMIT_MB: u64 = 2048;
const MAX_LEN: u64 = 64 * 1024;
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// How the targets are built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Build {
    /// Optimised (`--release` with debug assertions, one codegen unit): many more runs per
    /// second, for runs of minutes or hours. `cargo xtask fuzz`.
    Optimised,
    /// The fuzz crate's dev profile (opt-level 1, no debug info, parallel codegen): a cold
    /// build takes a fraction of the optimised one, which matters more than speed for the
    /// seconds-long runs of `cargo xtask test` within CI's time budget.
    Quick,
}

#[derive(Debug, Args)]
pub struct FuzzArgs {
    /// Seconds to run each target.
    #[arg(long, default_value_t = DEFAULT_SECONDS)]
    pub seconds: u64,
    /// Run only this target (default: all).
    #[arg(long, value_name = "NAME")]
    pub target: Option<String>,
    /// Build as `cargo xtask test` does (fast to build, slower to run) instead of optimised.
    #[arg(long)]
    pub quick_build: bool,
}

/// How one target's run ended.
#[derive(Debug, Default)]
pub struct Outcome {
    pub target: String,
    pub runs: u64,
    pub coverage: u64,
    pub corpus: u64,
    /// The crashing input libFuzzer saved, when it found one.
    pub crash: Option<PathBuf>,
    /// Why the run failed (None: it ran its time without finding anything).
    pub failure: Option<String>,
}

pub fn run(args: FuzzArgs) -> Result<ExitCode> {
    let names: Vec<&str> = match &args.target {
        Some(name) => {
            if !TARGETS.iter().any(|(t, _)| t == name) {
                let known: Vec<&str> = TARGETS.iter().map(|(t, _)| *t).collect();
                bail!(
                    "no fuzz target `{name}`; the targets are {}",
                    known.join(", ")
                );
            }
            vec![name.as_str()]
        }
        None => TARGETS.iter().map(|(t, _)| *t).collect(),
    };
    let build = if args.quick_build {
        Build::Quick
    } else {
        Build::Optimised
    };
    let outcomes = run_targets(&names, args.seconds, build)?;
    Ok(if outcomes.iter().all(|o| o.failure.is_none()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Builds the targets, runs each for `seconds`, prints the summary table.
pub fn run_targets(names: &[&str], seconds: u64, build: Build) -> Result<Vec<Outcome>> {
    crate::setup::cargo_fuzz()?;
    build_targets(build)?;
    let mut outcomes = Vec::new();
    for (i, name) in names.iter().enumerate() {
        eprintln!(
            "xtask fuzz: [{}/{}] {name} for {seconds} s",
            i + 1,
            names.len()
        );
        outcomes.push(run_one(name, seconds, build)?);
    }
    print_summary(&outcomes);
    Ok(outcomes)
}

fn fuzz_dir() -> PathBuf {
    util::repo_root().join("fuzz")
}

/// `cargo +nightly fuzz <subcommand>` in `fuzz/`, with its own target directory (the fuzz
/// build's flags differ from the workspace's: sharing would rebuild both every time).
fn cargo_fuzz(subcommand: &str, build: Build) -> Command {
    let mut cmd = util::cargo();
    cmd.current_dir(fuzz_dir())
        .env_remove("CARGO_TARGET_DIR")
        // No AddressSanitizer: the code is safe Rust; panics, timeouts and the RSS limit are
        // what the targets check, and the build is much faster.
        .args(["+nightly", "fuzz", subcommand, "--sanitizer", "none"]);
    match build {
        Build::Optimised => cmd.arg("--debug-assertions"),
        Build::Quick => cmd.arg("--dev"),
    };
    cmd
}

fn build_targets(build: Build) -> Result<()> {
    let started = Instant::now();
    let mut cmd = cargo_fuzz("build", build);
    eprintln!("xtask fuzz: building: {}", util::display(&cmd));
    util::check(util::stdout_to_stderr(&mut cmd)).context("building the fuzz targets")?;
    eprintln!(
        "xtask fuzz: built in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn seed_dirs(name: &str) -> Vec<PathBuf> {
    let root = util::repo_root();
    let mut dirs = vec![root.join("tests/fixtures/fuzz").join(name)];
    if let Some((_, extra)) = TARGETS.iter().find(|(t, _)| *t == name) {
        dirs.extend(extra.iter().map(|d| root.join(d)));
    }
    dirs.into_iter().filter(|d| d.is_dir()).collect()
}

fn run_one(name: &str, seconds: u64, build: Build) -> Result<Outcome> {
    let corpus = fuzz_dir().join("corpus").join(name);
    std::fs::create_dir_all(&corpus).with_context(|| format!("creating {}", corpus.display()))?;
    let mut cmd = cargo_fuzz("run", build);
    cmd.arg(name)
        .arg(&corpus)
        .args(seed_dirs(name))
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        // One fixed seed: from the same corpus a run tries the same inputs in the same order,
        // so a short CI run repeats (a faster machine only gets further); the corpus kept in
        // fuzz/corpus/ still moves longer local runs on to new ground.
        .arg("-seed=1")
        .arg(format!("-timeout={INPUT_TIMEOUT_SECS}"))
        .arg(format!("-rss_limit_mb={RSS_LIMIT_MB}"))
        .arg(format!("-max_len={MAX_LEN}"))
        .arg("-print_final_stats=1");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start `{}`", util::display(&cmd)))?;
    // cargo fuzz's own hints go to stdout: keep them for the failure report.
    let stdout = child.stdout.take().context("stdout is piped")?;
    let hints = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    let stderr = child.stderr.take().context("stderr is piped")?;
    let mut outcome = Outcome {
        target: name.to_string(),
        ..Outcome::default()
    };
    let mut tail: Vec<String> = Vec::new();
    let started = Instant::now();
    let mut last_progress = Instant::now();
    for line in BufReader::new(stderr).lines() {
        let line = line.context("reading the fuzzer's output")?;
        observe(&mut outcome, &line);
        if last_progress.elapsed() >= PROGRESS_EVERY && line.starts_with('#') {
            last_progress = Instant::now();
            eprintln!(
                "xtask fuzz:   {name}: {:>3}/{seconds} s, {} runs, coverage {}, corpus {}",
                started.elapsed().as_secs(),
                outcome.runs,
                outcome.coverage,
                outcome.corpus
            );
        }
        tail.push(line);
        if tail.len() > 60 {
            tail.remove(0);
        }
    }
    let status = child.wait().context("waiting for cargo fuzz")?;
    let hints = hints.join().unwrap_or_default();
    if !status.success() || outcome.crash.is_some() {
        outcome.failure = Some(match &outcome.crash {
            Some(path) => format!("crash input saved as {}", path.display()),
            None => format!("cargo fuzz run failed ({})", util::describe(status)),
        });
        eprintln!("xtask fuzz: {name} FAILED; the fuzzer's last lines:");
        for line in tail.iter().chain(&hints) {
            eprintln!("  | {line}");
        }
        if let Some(path) = &outcome.crash {
            report_crash(name, path);
        }
    }
    Ok(outcome)
}

/// Reads libFuzzer's status lines (`#4096 pulse cov: 1234 ft: 2345 corp: 56/7890b ...`) and
/// its crash report (`Test unit written to ./artifacts/x/crash-...`).
fn observe(outcome: &mut Outcome, line: &str) {
    if let Some(rest) = line.strip_prefix('#') {
        let mut words = rest.split_whitespace();
        if let Some(runs) = words.next().and_then(|n| n.parse().ok()) {
            outcome.runs = runs;
        }
        let words: Vec<&str> = rest.split_whitespace().collect();
        for pair in words.windows(2) {
            match pair[0] {
                "cov:" => outcome.coverage = pair[1].parse().unwrap_or(outcome.coverage),
                "corp:" => {
                    let count = pair[1].split('/').next().unwrap_or_default();
                    outcome.corpus = count.parse().unwrap_or(outcome.corpus);
                }
                _ => {}
            }
        }
    } else if let Some(runs) = line
        .strip_prefix("Done ")
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
    {
        outcome.runs = runs;
    } else if let Some((_, path)) = line.split_once("Test unit written to ") {
        let path = PathBuf::from(path.trim());
        outcome.crash = Some(if path.is_absolute() {
            path
        } else {
            fuzz_dir().join(path)
        });
    }
}

fn report_crash(name: &str, path: &Path) {
    let fixture = format!("tests/fixtures/fuzz/{name}/");
    eprintln!(
        "xtask fuzz: {name} found a crash; the input is {}",
        path.display()
    );
    eprintln!(
        "  reproduce:  cd fuzz && cargo +nightly fuzz run -s none -a {name} {}",
        path.display()
    );
    eprintln!(
        "  regression: cp {} {fixture}  (replayed by `cargo test -p monitor --lib fuzzing`), then fix",
        path.display()
    );
}

fn print_summary(outcomes: &[Outcome]) {
    eprintln!(
        "xtask fuzz: {:<18} {:>10} {:>9} {:>7}  result",
        "target", "runs", "coverage", "corpus"
    );
    for o in outcomes {
        eprintln!(
            "xtask fuzz: {:<18} {:>10} {:>9} {:>7}  {}",
            o.target,
            o.runs,
            o.coverage,
            o.corpus,
            o.failure.as_deref().unwrap_or("ok")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_is_declared_in_the_fuzz_crate() {
        let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).expect("manifest");
        for (name, _) in TARGETS {
            assert!(
                manifest.contains(&format!("name = \"{name}\"")),
                "{name} missing from fuzz/Cargo.toml"
            );
            assert!(fuzz_dir().join(format!("fuzz_targets/{name}.rs")).is_file());
        }
        let declared = manifest.matches("[[bin]]").count();
        assert_eq!(declared, TARGETS.len(), "fuzz/Cargo.toml has other targets");
    }

    #[test]
    fn reads_libfuzzer_status_and_crash_lines() {
        let mut o = Outcome::default();
        observe(
            &mut o,
            "#4096\tpulse  cov: 1234 ft: 2345 corp: 56/7890b lim: 43 exec/s: 1365 rss: 78Mb",
        );
        assert_eq!((o.runs, o.coverage, o.corpus), (4096, 1234, 56));
        observe(&mut o, "Done 12345 runs in 21 second(s)");
        assert_eq!(o.runs, 12345);
        observe(
            &mut o,
            "artifact_prefix='/r/fuzz/artifacts/x/'; Test unit written to /r/fuzz/artifacts/x/crash-ab12",
        );
        assert_eq!(
            o.crash,
            Some(PathBuf::from("/r/fuzz/artifacts/x/crash-ab12"))
        );
    }
}
