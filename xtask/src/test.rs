//! `cargo xtask test`: setup, lint, then every test as root (privileged tests load eBPF programs),
//! then every fuzz target for a few seconds (`cargo xtask fuzz`, as the invoking user), then the
//! aarch64 stage (`cross`: its build, unit tests under qemu-user, replay, eBPF object).
//!
//! Works without a terminal (CI). Lint failures do not stop the tests, so one run reports both;
//! the exit status is non-zero if anything failed and the last line is a one-line summary.
//! `SECMON_TEST_FILTER="foo --skip slow"` is passed to the test binaries (after `--`); with a
//! filter, the fuzz targets and the aarch64 stage are skipped.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::{Context as _, Result};

use crate::{cross, util};

/// `cargo test` arguments. The eBPF crate is excluded: it is a `no_std`/`no_main` BPF program,
/// its host test harness cannot link (and `--workspace` ignores default-members).
const TEST_ARGS: &[&str] = &[
    "test",
    "--workspace",
    "--exclude",
    "monitor-ebpf",
    "--no-fail-fast",
];

#[derive(Default)]
struct Tally {
    binaries: u32,
    passed: u64,
    failed: u64,
    ignored: u64,
    failed_names: Vec<String>,
    /// Each failed test's captured output (`---- name stdout ----` up to the next section),
    /// so the summary at the end of a CI log can say why, not only what.
    failure_output: Vec<(String, Vec<String>)>,
    capturing: bool,
}

/// How many lines of a failed test's output the summary repeats, from its panic on.
const FAILURE_EXCERPT_LINES: usize = 20;

impl Tally {
    fn observe(&mut self, line: &str) {
        let line = line.trim_end();
        self.capture_failure_output(line);
        if let Some(name) = line
            .strip_prefix("test ")
            .and_then(|l| l.strip_suffix(" ... FAILED"))
        {
            self.failed_names.push(name.to_string());
        }
        // "test result: ok. 5 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s"
        let Some(rest) = line.strip_prefix("test result: ") else {
            return;
        };
        self.binaries += 1;
        let counts = rest.split_once(". ").map_or(rest, |(_, c)| c);
        for part in counts.split(';') {
            let mut words = part.split_whitespace();
            let (Some(n), Some(what)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            match what {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                "ignored" => self.ignored += n,
                _ => {}
            }
        }
    }
}

impl Tally {
    fn capture_failure_output(&mut self, line: &str) {
        if let Some(name) = line
            .strip_prefix("---- ")
            .and_then(|l| l.strip_suffix(" stdout ----"))
        {
            self.failure_output.push((name.to_string(), Vec::new()));
            self.capturing = true;
            return;
        }
        // The list of names after the captured outputs, or the next binary's summary.
        if line == "failures:" || line.starts_with("test result: ") {
            self.capturing = false;
            return;
        }
        if self.capturing
            && let Some((_, lines)) = self.failure_output.last_mut()
        {
            lines.push(line.to_string());
        }
    }

    /// The lines of `name`'s output from its first panic on (all of it if it did not panic),
    /// at most `FAILURE_EXCERPT_LINES`.
    fn failure_excerpt(&self, name: &str) -> Vec<&str> {
        let Some((_, lines)) = self.failure_output.iter().find(|(n, _)| n == name) else {
            return Vec::new();
        };
        let start = lines
            .iter()
            .position(|l| l.contains("panicked at"))
            .unwrap_or(0);
        lines[start..]
            .iter()
            .take(FAILURE_EXCERPT_LINES)
            .map(String::as_str)
            .collect()
    }
}

fn filter_args() -> Vec<String> {
    std::env::var("SECMON_TEST_FILTER")
        .map(|f| f.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

fn home_subdir(var: &str, default: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(default)))
}

/// `cargo test ...` as root: plain when euid is 0, else
/// `sudo -E env PATH=$PATH RUSTUP_HOME=... CARGO_HOME=... cargo test ...` (sudo may reset PATH and
/// HOME, which would lose the user's rustup toolchains).
fn test_command(filters: &[String]) -> Result<Command> {
    let mut args: Vec<String> = TEST_ARGS.iter().map(|s| s.to_string()).collect();
    if !filters.is_empty() {
        args.push("--".into());
        args.extend(filters.iter().cloned());
    }
    let mut cmd = if util::is_root() {
        let mut cmd = util::cargo();
        cmd.args(&args);
        cmd
    } else {
        let mut env_args = vec![format!("PATH={}", util::path_var().to_string_lossy())];
        for (var, default) in [("RUSTUP_HOME", ".rustup"), ("CARGO_HOME", ".cargo")] {
            if let Some(dir) = home_subdir(var, default) {
                env_args.push(format!("{var}={}", dir.display()));
            }
        }
        env_args.push("cargo".into());
        env_args.extend(args);
        let mut cmd = util::as_root("env", &env_args, true)?;
        cmd.current_dir(util::repo_root());
        cmd
    };
    if std::env::var_os("RUST_BACKTRACE").is_none() {
        cmd.env("RUST_BACKTRACE", "1");
    }
    Ok(cmd)
}

/// Builds every test binary, as the invoking user so the artifacts in the shared target
/// directory stay theirs (the root run then only executes the tests), and apart from the run so
/// the summary can say how long each took.
fn build_tests() -> Result<std::process::ExitStatus> {
    let mut build = util::cargo();
    build.args(TEST_ARGS).arg("--no-run");
    eprintln!("xtask test: building tests: {}", util::display(&build));
    util::status(util::stdout_to_stderr(&mut build))
}

/// Runs the tests, echoing their output line by line while counting results.
fn run_tests(tally: &mut Tally) -> Result<std::process::ExitStatus> {
    let filters = filter_args();
    let mut cmd = test_command(&filters)?;
    run_counted(&mut cmd, tally)
}

/// Runs a `cargo test` command, echoing its output line by line while counting results.
fn run_counted(cmd: &mut Command, tally: &mut Tally) -> Result<std::process::ExitStatus> {
    eprintln!("xtask test: {}", util::display(cmd));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start `{}`", util::display(cmd)))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut reader = BufReader::new(stdout);
    let mut out = std::io::stdout().lock();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .context("reading cargo test output")?;
        if n == 0 {
            break;
        }
        tally.observe(&String::from_utf8_lossy(&buf));
        // Output errors (closed pipe) must not stop us from waiting for the tests.
        let _ = out.write_all(&buf).and_then(|()| out.flush());
    }
    child.wait().context("waiting for cargo test")
}

pub fn run() -> Result<ExitCode> {
    let started = Instant::now();
    let mut phases = Phases::start();
    crate::setup::run_for(Some(&cross::AARCH64))?;
    phases.end("setup");
    let lint_failed = crate::lint::run_steps()?;
    phases.end("lint");

    let mut tally = Tally::default();
    let built = build_tests()?;
    phases.end("build");
    let st = if built.success() {
        run_tests(&mut tally)?
    } else {
        built
    };
    phases.end("tests");
    let fuzz = run_fuzz_targets();
    phases.end("fuzz");
    let cross = run_cross_stage(&cross::AARCH64);
    phases.end("aarch64");

    if !tally.failed_names.is_empty() {
        eprintln!("xtask test: failed tests:");
        for name in &tally.failed_names {
            eprintln!("  {name}");
            for line in tally.failure_excerpt(name) {
                eprintln!("  | {line}");
            }
        }
    }
    let lint = if lint_failed.is_empty() {
        "lint ok".to_string()
    } else {
        format!("lint FAILED ({})", lint_failed.join(", "))
    };
    let tests = if tally.binaries == 0 && !st.success() {
        format!(
            "cargo test failed before running tests ({})",
            util::describe(st)
        )
    } else {
        let mut s = format!(
            "{} passed, {} failed, {} ignored in {} test binaries",
            tally.passed, tally.failed, tally.ignored, tally.binaries
        );
        if !st.success() {
            s.push_str(&format!(" (cargo test: {})", util::describe(st)));
        }
        s
    };
    let ok = lint_failed.is_empty() && st.success() && fuzz.failed.is_empty() && cross.ok();
    let verdict = if ok { "ok" } else { "FAILED" };
    let secs = started.elapsed().as_secs();
    // stdout, after all test output: the last line a CI log shows.
    println!(
        "xtask test: {verdict}: {lint}; {tests}; {}; {}; {secs} s ({})",
        fuzz.summary(),
        cross.summary(),
        phases.summary()
    );
    Ok(if ok {
        ExitCode::SUCCESS
    } else if !st.success() {
        util::exit_code(st)
    } else {
        ExitCode::FAILURE
    })
}

/// `cargo xtask cross-check`: setup for aarch64, the host binary, then the aarch64 stage
/// alone (what `cargo xtask test` runs last).
pub fn run_cross_only() -> Result<ExitCode> {
    crate::setup::run_for(Some(&cross::AARCH64))?;
    util::build_secmon(None, "dev")?;
    let cross = run_cross_stage(&cross::AARCH64);
    for name in &cross.tests.failed_names {
        eprintln!("  failed: {name}");
    }
    println!("xtask cross-check: {}", cross.summary());
    Ok(if cross.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// How long each phase took, for the summary line: CI has a time budget (45 minutes on the
/// 2-core machine), and a run that nears it must say where the time went.
struct Phases {
    last: Instant,
    done: Vec<(&'static str, u64)>,
}

impl Phases {
    fn start() -> Self {
        Self {
            last: Instant::now(),
            done: Vec::new(),
        }
    }

    fn end(&mut self, name: &'static str) {
        let now = Instant::now();
        self.done
            .push((name, now.duration_since(self.last).as_secs()));
        self.last = now;
    }

    fn summary(&self) -> String {
        self.done
            .iter()
            .map(|(name, secs)| format!("{name} {secs} s"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The aarch64 stage's results, for the summary line.
struct CrossTally {
    triple: &'static str,
    tests: Tally,
    failed: Vec<String>,
    skipped: bool,
}

impl CrossTally {
    fn ok(&self) -> bool {
        self.failed.is_empty()
    }

    fn summary(&self) -> String {
        let t = &self.tests;
        match (self.skipped, self.failed.is_empty()) {
            (true, _) => format!("{}: skipped", self.triple),
            (false, true) => format!(
                "{}: {} unit tests passed under qemu, replay identical, eBPF object verified",
                self.triple, t.passed
            ),
            (false, false) => format!("{} FAILED ({})", self.triple, self.failed.join(", ")),
        }
    }
}

/// Unit tests left to the native run under qemu-user: they only render screens of every
/// size (minutes when emulated, nothing architecture-specific).
const QEMU_SKIPPED: &[&str] = &["ui::tests::never_panics_at_any_size"];

/// The cross-architecture stage (see `cross`): the target's build, its unit tests under
/// qemu-user (as the invoking user: they need no root), a replay that must print what the
/// host build prints, and its eBPF object through this kernel's verifier. Skipped with a
/// test filter, as the fuzz targets are.
fn run_cross_stage(target: &'static cross::Target) -> CrossTally {
    let mut outcome = CrossTally {
        triple: target.triple,
        tests: Tally::default(),
        failed: Vec::new(),
        skipped: !filter_args().is_empty(),
    };
    if outcome.skipped {
        eprintln!(
            "xtask test: SECMON_TEST_FILTER is set: {} stage skipped",
            target.triple
        );
        return outcome;
    }
    eprintln!(
        "xtask test: {}: build, unit tests under qemu-user, replay, eBPF object",
        target.triple
    );
    let cross_bin = match util::build_secmon_with(Some(target), "dev", &CROSS_DEPS_UNOPTIMISED) {
        Ok(bin) => bin,
        Err(e) => {
            eprintln!("xtask test: {} build failed: {e:#}", target.triple);
            outcome.failed.push("build".into());
            return outcome;
        }
    };
    let mut unit = cross_unit_tests(target);
    unit.arg("--")
        .args(QEMU_SKIPPED.iter().flat_map(|t| ["--skip", t]))
        // Emulated code runs ~25 times slower: fewer generated cases, the same properties.
        .env("PROPTEST_CASES", "32");
    match run_counted(&mut unit, &mut outcome.tests) {
        Ok(st) if st.success() && outcome.tests.passed > 0 => {}
        Ok(_) => outcome.failed.push(format!(
            "unit tests: {} failed ({})",
            outcome.tests.failed,
            outcome.tests.failed_names.join(", ")
        )),
        Err(e) => {
            eprintln!("xtask test: {e:#}");
            outcome.failed.push("unit tests".into());
        }
    }
    let host_bin = cross::output_dir(None, "debug").join("secmon-tui");
    match cross::check_replay(target, &host_bin, &cross_bin) {
        Ok(lines) => eprintln!("xtask test: replay: {lines} JSON lines identical on both"),
        Err(e) => {
            eprintln!("xtask test: replay: {e:#}");
            outcome.failed.push("replay".into());
        }
    }
    if let Err(e) = cross::check_object(target, &host_bin) {
        eprintln!("xtask test: eBPF object: {e:#}");
        outcome.failed.push("eBPF object".into());
    }
    outcome
}

/// The cross stage builds its dependencies unoptimised, unlike the host's dev builds.
///
/// Why: CI builds them cold within its 45-minute budget. Measured on the 2-core machine:
/// the binary and the unit tests built in 213 s instead of 414 s, and the unit tests then
/// ran under qemu in 108 s instead of 65 s. Nothing in this stage floods the monitor, which
/// is what the host's optimised dependencies are for.
const CROSS_DEPS_UNOPTIMISED: [&str; 2] = ["--config", "profile.dev.package.\"*\".opt-level=0"];

/// `cargo test` of the target's unit tests (the libraries' own), before its `--`.
fn cross_unit_tests(target: &cross::Target) -> Command {
    let mut cmd = util::cargo();
    cmd.args(["test", "--target", target.triple, "--no-fail-fast"])
        .args(CROSS_DEPS_UNOPTIMISED)
        .args(["-p", "monitor-common", "-p", "monitor", "--lib"]);
    cmd
}

/// The fuzz targets' results, for the summary line.
struct FuzzTally {
    ran: usize,
    failed: Vec<String>,
}

impl FuzzTally {
    fn summary(&self) -> String {
        if self.failed.is_empty() {
            format!("fuzz: {} targets ok", self.ran)
        } else {
            format!("fuzz FAILED ({})", self.failed.join(", "))
        }
    }
}

/// Every fuzz target for a short time (`fuzz::CI_SECONDS` each): what the suite cannot reach
/// with its fixed inputs. A build or tool failure counts as a failed `build` step.
fn run_fuzz_targets() -> FuzzTally {
    if !filter_args().is_empty() {
        eprintln!("xtask test: SECMON_TEST_FILTER is set: fuzz targets skipped");
        return FuzzTally {
            ran: 0,
            failed: Vec::new(),
        };
    }
    let names: Vec<&str> = crate::fuzz::TARGETS.iter().map(|(t, _)| *t).collect();
    eprintln!(
        "xtask test: fuzzing {} targets, {} s each",
        names.len(),
        crate::fuzz::CI_SECONDS
    );
    match crate::fuzz::run_targets(&names, crate::fuzz::CI_SECONDS, crate::fuzz::Build::Quick) {
        Ok(outcomes) => FuzzTally {
            ran: outcomes.len(),
            failed: outcomes
                .into_iter()
                .filter(|o| o.failure.is_some())
                .map(|o| o.target)
                .collect(),
        },
        Err(e) => {
            eprintln!("xtask test: fuzzing failed: {e:#}");
            FuzzTally {
                ran: 0,
                failed: vec!["build".to_string()],
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Tally;

    #[test]
    fn counts_results_and_failures() {
        let mut t = Tally::default();
        for line in [
            "running 3 tests",
            "test a::b ... ok",
            "test a::c ... FAILED",
            "test src/lib.rs - f (line 3) ... FAILED",
            "test result: FAILED. 1 passed; 2 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s",
            "test result: ok. 4 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s\n",
        ] {
            t.observe(line);
        }
        assert_eq!((t.binaries, t.passed, t.failed, t.ignored), (2, 5, 2, 1));
        assert_eq!(t.failed_names, ["a::c", "src/lib.rs - f (line 3)"]);
    }

    #[test]
    fn keeps_each_failures_output_from_its_panic_on() {
        let mut t = Tally::default();
        for line in [
            "failures:",
            "",
            "---- a::c stdout ----",
            "starting the server",
            "thread 'a::c' panicked at tests/a.rs:3:5:",
            "the open never arrived",
            "",
            "---- a::d stdout ----",
            "no panic here",
            "",
            "failures:",
            "    a::c",
            "    a::d",
            "test result: FAILED. 0 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out",
        ] {
            t.observe(line);
        }
        assert_eq!(
            t.failure_excerpt("a::c"),
            [
                "thread 'a::c' panicked at tests/a.rs:3:5:",
                "the open never arrived",
                ""
            ]
        );
        assert_eq!(t.failure_excerpt("a::d"), ["no panic here", ""]);
        assert!(t.failure_excerpt("a::e").is_empty());
    }
}
