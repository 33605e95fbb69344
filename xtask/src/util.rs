//! Helpers shared by the commands: locating the repository and tools, running child processes
//! with readable errors, running things as root, and turning child statuses into exit codes.

use std::ffi::{OsStr, OsString};
use std::os::fd::AsFd as _;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, ExitStatus, Stdio};

use anyhow::{Context as _, Result, bail};

/// The workspace root (the parent of this crate's directory).
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
}

/// `$CARGO_HOME/bin` (default `~/.cargo/bin`), where rustup and `cargo install` put binaries.
pub fn cargo_bin_dir() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("CARGO_HOME").filter(|h| !h.is_empty()) {
        return Some(PathBuf::from(home).join("bin"));
    }
    home_dir().map(|h| h.join(".cargo").join("bin"))
}

fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// Put `$CARGO_HOME/bin` and `~/.cargo/bin` on PATH for this process and therefore for every child
/// (cargo, rustup, bpf-linker, `sudo -E ... cargo`). Called first thing in `main`.
pub fn init_env() {
    let current = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&current).collect();
    let mut wanted: Vec<PathBuf> = cargo_bin_dir().into_iter().collect();
    if let Some(home) = home_dir() {
        wanted.push(home.join(".cargo").join("bin"));
    }
    let mut changed = false;
    for dir in wanted.into_iter().rev() {
        if !dirs.contains(&dir) {
            dirs.insert(0, dir);
            changed = true;
        }
    }
    if changed && let Ok(path) = std::env::join_paths(dirs) {
        // SAFETY: called at the start of `main`, before any other thread exists.
        unsafe { std::env::set_var("PATH", path) };
    }
}

/// The PATH this process (and its children) use.
pub fn path_var() -> OsString {
    std::env::var_os("PATH").unwrap_or_default()
}

/// Finds an executable on PATH.
pub fn find_program(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&path_var())
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// True when the effective uid is 0 (read from /proc, so no libc dependency is needed).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// `program args...` run as root: directly when we already are root, else through `sudo`.
/// `keep_env` adds `-E` (keep the caller's environment).
pub fn as_root<S: AsRef<OsStr>>(
    program: impl AsRef<OsStr>,
    args: &[S],
    keep_env: bool,
) -> Result<Command> {
    if is_root() {
        let mut cmd = Command::new(program);
        cmd.args(args);
        return Ok(cmd);
    }
    let Some(sudo) = find_program("sudo") else {
        bail!(
            "this step needs root and `sudo` is not installed; run as root instead:\n  {}",
            shell_words(std::iter::once(program.as_ref()).chain(args.iter().map(AsRef::as_ref)))
        );
    };
    let mut cmd = Command::new(sudo);
    if keep_env {
        cmd.arg("-E");
    }
    cmd.arg(program).args(args);
    Ok(cmd)
}

/// `sudo ` when not root (for commands shown to the user), else nothing.
pub fn sudo_hint() -> &'static str {
    if is_root() { "" } else { "sudo " }
}

/// A `cargo` command (the rustup proxy on PATH, so `+nightly` works) run from the repo root.
pub fn cargo() -> Command {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(repo_root());
    cmd
}

/// Sends the child's stdout to our stderr, so that `cargo xtask run -- --json | jq` only sees the
/// monitor's own output on stdout.
pub fn stdout_to_stderr(cmd: &mut Command) -> &mut Command {
    if let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() {
        cmd.stdout(Stdio::from(fd));
    }
    cmd
}

/// Renders a command line the way a user would type it (for messages).
pub fn display(cmd: &Command) -> String {
    let envs = cmd.get_envs().filter_map(|(k, v)| {
        v.map(|v| format!("{}={}", k.to_string_lossy(), quote(&v.to_string_lossy())))
    });
    let words = shell_words(std::iter::once(cmd.get_program()).chain(cmd.get_args()));
    envs.chain(std::iter::once(words))
        .collect::<Vec<_>>()
        .join(" ")
}

fn shell_words<'a>(words: impl Iterator<Item = &'a OsStr>) -> String {
    words
        .map(|w| quote(&w.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ")
}

fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:+,@%$".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Runs `cmd` to completion with inherited stdio and returns its status.
pub fn status(cmd: &mut Command) -> Result<ExitStatus> {
    cmd.status()
        .with_context(|| format!("could not start `{}`", display(cmd)))
}

/// Runs `cmd` and fails (naming the command) unless it exits with status 0.
pub fn check(cmd: &mut Command) -> Result<()> {
    let st = status(cmd)?;
    if !st.success() {
        bail!("`{}` failed ({})", display(cmd), describe(st));
    }
    Ok(())
}

/// Runs `cmd` with captured output; returns stdout if it exits 0, `None` if it ran and failed,
/// and an error if it could not be started.
pub fn output(cmd: &mut Command) -> Result<Option<String>> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("could not start `{}`", display(cmd)))?;
    Ok(out
        .status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned()))
}

/// "exit status 3" / "killed by signal 9".
pub fn describe(st: ExitStatus) -> String {
    match (st.code(), st.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => st.to_string(),
    }
}

/// The exit code to hand back for a child's status (128 + signal number for a signal, as shells do).
pub fn exit_code(st: ExitStatus) -> ExitCode {
    let code = match (st.code(), st.signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        _ => 1,
    };
    ExitCode::from(u8::try_from(code & 0xff).unwrap_or(1))
}

/// Cargo's target directory: `$CARGO_TARGET_DIR` if set, else `<repo>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                repo_root().join(dir)
            }
        }
        None => repo_root().join("target"),
    }
}

/// `cargo build --release -p monitor` (output on stderr); returns the path of `secmon-tui`.
pub fn build_release() -> Result<PathBuf> {
    build_secmon(None, "release")
}

/// Builds `secmon-tui` for `target` (None: this machine) in `profile` (`release` or `dev`),
/// its eBPF object compiled for that architecture and embedded; returns the binary's path.
pub fn build_secmon(target: Option<&crate::cross::Target>, profile: &str) -> Result<PathBuf> {
    build_secmon_with(target, profile, &[])
}

/// [`build_secmon`] with more arguments for cargo (`--config` overrides).
pub fn build_secmon_with(
    target: Option<&crate::cross::Target>,
    profile: &str,
    extra: &[&str],
) -> Result<PathBuf> {
    let mut cmd = cargo();
    cmd.args(extra);
    cmd.args([
        "build",
        "--profile",
        profile,
        "-p",
        "monitor",
        "--bin",
        "secmon-tui",
    ]);
    if let Some(target) = target {
        cmd.args(["--target", target.triple]);
    }
    eprintln!("xtask: building secmon ({})", display(&cmd));
    check(stdout_to_stderr(&mut cmd)).context("build failed")?;
    // Cargo names the dev profile's directory `debug`.
    let dir = if profile == "dev" { "debug" } else { profile };
    let bin = crate::cross::output_dir(target, dir).join("secmon-tui");
    if !bin.is_file() {
        bail!(
            "the build succeeded but {} does not exist (is CARGO_TARGET_DIR or build.target-dir set differently?)",
            bin.display()
        );
    }
    Ok(bin)
}
