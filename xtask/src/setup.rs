//! `cargo xtask setup`: checks every prerequisite and installs what is missing.
//!
//! Each check is cheap (dpkg-query, rustup, `bpf-linker --version`, `cargo-fuzz --version`,
//! /proc/mounts), so a machine that already has everything is through in well under two
//! seconds. One status line per prerequisite.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use anyhow::{Context as _, Result, bail};

use crate::cross::Target;
use crate::util::{self, as_root, check, output, stdout_to_stderr, sudo_hint};

/// Debian packages: LLVM 22 to build bpf-linker, and the tools the tests and benchmarks drive.
pub const APT_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    "bpftool",
    "tmux",
    "bpftrace",
    "hyperfine",
    "stress-ng",
    "iproute2",
    // `cargo xtask soak` checks the history database with `PRAGMA integrity_check`.
    "sqlite3",
    // The rule pack's benign workload (tests/integration/rules_e2e.rs) runs these.
    "make",
    "strace",
    "openssh-client",
    "vim",
    // The dashboard's browser tests (tests/integration/web.rs) drive a headless Chromium.
    "chromium",
    "chromium-driver",
    // The fleet tests (tests/integration/fleet.rs) and the NATS bench row start their own
    // JetStream server on a loopback port.
    "nats-server",
    // The unpacked sshd of the benign workload (see `test_sshd`) links against it.
    "libwrap0",
];

/// Debian packages unpacked (not installed) into `target/test-tools/openssh`: the benign
/// workload logs in to an sshd of its own, and installing openssh-server would start a system
/// sshd on the machine.
const SSHD_PACKAGES: &[&str] = &["openssh-server", "openssh-sftp-server"];

const LLVM_PREFIX: &str = "/usr/lib/llvm-22";
const TRACEFS: &str = "/sys/kernel/tracing";

pub fn run() -> Result<()> {
    run_for(None)
}

/// Setup, plus what building for `target` needs (its cross toolchain and qemu-user, and the
/// Rust standard library for it).
pub fn run_for(target: Option<&Target>) -> Result<()> {
    let started = Instant::now();
    eprintln!("xtask setup: checking prerequisites");
    // rustup's steps first: cargo-fuzz then builds (a minute of CPU) while apt downloads and
    // unpacks, which it does not need.
    rust_components()?;
    if let Some(target) = target {
        rust_target(target)?;
    }
    nightly()?;
    let fuzz_install = CargoFuzzInstall::start();
    apt_packages("apt packages", APT_PACKAGES)?;
    if let Some(target) = target {
        apt_packages(&format!("{} toolchain", target.triple), target.apt)?;
    }
    bpf_linker()?;
    fuzz_install.finish()?;
    test_sshd()?;
    tracefs()?;
    eprintln!(
        "xtask setup: all prerequisites present ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn line(name: &str, status: &str) {
    eprintln!("  {name:<34} {status}");
}

/// Prints the status lines around `install` and turns a failure into a message naming the step and
/// the command to run by hand.
fn install(
    name: &str,
    what: &str,
    manual: &str,
    install: impl FnOnce() -> Result<()>,
) -> Result<()> {
    line(name, &format!("installing… {what}"));
    let t = Instant::now();
    if let Err(e) = install() {
        line(name, "FAILED");
        bail!(
            "setup step `{name}` failed: {e:#}\nto do it by hand, run:\n  {manual}\nthen run `cargo xtask setup` again"
        );
    }
    line(
        name,
        &format!("installed in {:.0} s", t.elapsed().as_secs_f64()),
    );
    Ok(())
}

// --- apt packages -----------------------------------------------------------------------------

fn apt_missing(packages: &[&'static str]) -> Result<Vec<&'static str>> {
    let mut cmd = Command::new("dpkg-query");
    cmd.arg("-W")
        .arg("-f=${Package}\t${Status}\n")
        .args(packages)
        .stderr(std::process::Stdio::null());
    // dpkg-query exits 1 when a package is unknown but still prints the ones it knows.
    let out = cmd.output().with_context(|| {
        format!(
            "`dpkg-query` not found: automatic installation needs Debian/Ubuntu (apt); install these \
             packages by hand: {}",
            packages.join(" ")
        )
    })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let installed: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .filter(|(_, status)| status.trim() == "install ok installed")
        .map(|(pkg, _)| pkg.split(':').next().unwrap_or(pkg))
        .collect();
    Ok(packages
        .iter()
        .copied()
        .filter(|p| !installed.contains(p))
        .collect())
}

fn apt_command(args: &[&str]) -> Result<Command> {
    let mut full = vec!["DEBIAN_FRONTEND=noninteractive", "apt-get"];
    full.extend_from_slice(args);
    // `env` so that DEBIAN_FRONTEND survives sudo's environment reset.
    let mut cmd = as_root("env", &full, false)?;
    stdout_to_stderr(&mut cmd);
    Ok(cmd)
}

fn apt_packages(name: &str, packages: &[&'static str]) -> Result<()> {
    let missing = apt_missing(packages)?;
    if missing.is_empty() {
        line(name, "ok");
        return Ok(());
    }
    let sudo = sudo_hint();
    let manual = format!(
        "{sudo}apt-get update && {sudo}env DEBIAN_FRONTEND=noninteractive apt-get install -y {}",
        missing.join(" ")
    );
    install(name, &format!("({})", missing.join(" ")), &manual, || {
        check(&mut apt_command(&["update"])?)?;
        let mut args = vec!["install", "-y"];
        args.extend(missing.iter().copied());
        check(&mut apt_command(&args)?)?;
        let still = apt_missing(packages)?;
        if !still.is_empty() {
            bail!("still not installed after apt-get: {}", still.join(" "));
        }
        Ok(())
    })
}

// --- Rust toolchains ---------------------------------------------------------------------------

fn require_rustup() -> Result<()> {
    if util::find_program("rustup").is_none() {
        bail!("`rustup` not found on PATH: install it from https://rustup.rs and run this again");
    }
    Ok(())
}

fn rustup() -> Command {
    let mut cmd = Command::new("rustup");
    stdout_to_stderr(&mut cmd);
    cmd
}

/// Installed components of `toolchain` (None = the active one), or None if the toolchain is absent.
fn installed_components(toolchain: Option<&str>) -> Result<Option<Vec<String>>> {
    let mut cmd = Command::new("rustup");
    cmd.args(["component", "list", "--installed"]);
    if let Some(tc) = toolchain {
        cmd.args(["--toolchain", tc]);
    }
    cmd.stderr(std::process::Stdio::null());
    require_rustup()?;
    let out = output(&mut cmd)?;
    Ok(out.map(|s| s.lines().map(|l| l.trim().to_string()).collect()))
}

fn has_component(installed: &[String], component: &str) -> bool {
    installed.iter().any(|c| {
        c == component
            || c.strip_prefix(component)
                .is_some_and(|rest| rest.starts_with('-'))
    })
}

/// rustfmt and clippy for the toolchain cargo runs with (`cargo xtask lint` needs both).
fn rust_components() -> Result<()> {
    const NAME: &str = "rustfmt + clippy";
    let installed = installed_components(None)?.unwrap_or_default();
    let missing: Vec<&str> = ["rustfmt", "clippy"]
        .into_iter()
        .filter(|c| !has_component(&installed, c))
        .collect();
    if missing.is_empty() {
        line(NAME, "ok");
        return Ok(());
    }
    let manual = format!("rustup component add {}", missing.join(" "));
    install(NAME, "", &manual, || {
        check(rustup().args(["component", "add"]).args(&missing))
    })
}

/// The Rust standard library for a cross target (`rustup target add`).
fn rust_target(target: &Target) -> Result<()> {
    let name = format!("Rust std for {}", target.triple);
    require_rustup()?;
    let installed =
        output(Command::new("rustup").args(["target", "list", "--installed"]))?.unwrap_or_default();
    if installed.lines().any(|l| l.trim() == target.triple) {
        line(&name, "ok");
        return Ok(());
    }
    let manual = format!("rustup target add {}", target.triple);
    install(&name, "", &manual, || {
        check(rustup().args(["target", "add", target.triple]))
    })
}

fn nightly_installed() -> Result<bool> {
    require_rustup()?;
    let out = output(Command::new("rustup").args(["toolchain", "list"]))?.unwrap_or_default();
    Ok(out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .any(|tc| {
            // `nightly` or `nightly-<host>`, not a dated `nightly-2025-01-01-<host>`.
            tc == "nightly"
                || tc
                    .strip_prefix("nightly-")
                    .is_some_and(|rest| !rest.starts_with(|c: char| c.is_ascii_digit()))
        }))
}

/// Nightly with rust-src (aya-build compiles the eBPF crate with `-Z build-std=core`) and clippy
/// (the eBPF clippy pass of `cargo xtask lint`).
fn nightly() -> Result<()> {
    const NAME: &str = "nightly toolchain + rust-src";
    const COMPONENTS: [&str; 2] = ["rust-src", "clippy"];
    if !nightly_installed()? {
        let manual =
            "rustup toolchain install nightly --profile minimal --component rust-src,clippy";
        return install(NAME, "(toolchain)", manual, || {
            check(rustup().args([
                "toolchain",
                "install",
                "nightly",
                "--profile",
                "minimal",
                "--component",
                "rust-src,clippy",
            ]))
        });
    }
    let installed = installed_components(Some("nightly"))?.unwrap_or_default();
    let missing: Vec<&str> = COMPONENTS
        .into_iter()
        .filter(|c| !has_component(&installed, c))
        .collect();
    if missing.is_empty() {
        line(NAME, "ok");
        return Ok(());
    }
    let manual = format!(
        "rustup component add {} --toolchain nightly",
        missing.join(" ")
    );
    install(NAME, &format!("({})", missing.join(", ")), &manual, || {
        check(
            rustup()
                .args(["component", "add"])
                .args(&missing)
                .args(["--toolchain", "nightly"]),
        )
    })
}

// --- bpf-linker --------------------------------------------------------------------------------

fn bpf_linker_version() -> Option<String> {
    tool_version("bpf-linker")
}

/// `PROGRAM --version`, trimmed, when it runs and succeeds.
fn tool_version(program: &str) -> Option<String> {
    let out = Command::new(program)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn bpf_linker() -> Result<()> {
    const NAME: &str = "bpf-linker";
    if let Some(version) = bpf_linker_version() {
        line(NAME, &format!("ok ({version})"));
        return Ok(());
    }
    let manual = format!(
        "LLVM_SYS_221_PREFIX={LLVM_PREFIX} PATH={LLVM_PREFIX}/bin:$PATH cargo install bpf-linker \
         --no-default-features --features llvm-22"
    );
    install(NAME, "(cargo install, about a minute)", &manual, || {
        let mut path = std::ffi::OsString::from(format!("{LLVM_PREFIX}/bin:"));
        path.push(util::path_var());
        let mut cmd = util::cargo();
        cmd.env("LLVM_SYS_221_PREFIX", LLVM_PREFIX)
            .env("PATH", path)
            // Its release profile keeps debug info, which only makes a fresh machine's (and
            // CI's) install slower: nobody debugs the linker from here.
            .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
            .args([
                "install",
                "bpf-linker",
                "--no-default-features",
                "--features",
                "llvm-22",
            ]);
        check(stdout_to_stderr(&mut cmd))?;
        if bpf_linker_version().is_none() {
            bail!(
                "`cargo install` finished but `bpf-linker --version` still fails (is {} on PATH?)",
                util::cargo_bin_dir()
                    .map(|d| d.display().to_string())
                    .unwrap_or_else(|| "~/.cargo/bin".into())
            );
        }
        Ok(())
    })
}

// --- cargo-fuzz -------------------------------------------------------------------------------

fn cargo_fuzz_version() -> Option<String> {
    tool_version("cargo-fuzz")
}

/// cargo-fuzz, for `cargo xtask fuzz` (and the short fuzzing pass of `cargo xtask test`).
pub fn cargo_fuzz() -> Result<()> {
    const NAME: &str = "cargo-fuzz";
    if let Some(version) = cargo_fuzz_version() {
        line(NAME, &format!("ok ({version})"));
        return Ok(());
    }
    install(
        NAME,
        "(cargo install, about a minute)",
        CARGO_FUZZ_MANUAL,
        || {
            check(stdout_to_stderr(&mut cargo_fuzz_install()))?;
            cargo_fuzz_installed()
        },
    )
}

const CARGO_FUZZ_MANUAL: &str = "cargo install cargo-fuzz --locked";

fn cargo_fuzz_install() -> Command {
    let mut cmd = util::cargo();
    cmd.args(["install", "cargo-fuzz", "--locked"]);
    cmd
}

/// After an install: that it runs.
fn cargo_fuzz_installed() -> Result<()> {
    if cargo_fuzz_version().is_none() {
        bail!("`cargo install` finished but `cargo-fuzz --version` still fails");
    }
    Ok(())
}

/// `cargo install cargo-fuzz`, started in the background when it is missing; its output is
/// kept and shown only if it fails.
struct CargoFuzzInstall(Option<(Instant, std::thread::JoinHandle<std::io::Result<Output>>)>);

impl CargoFuzzInstall {
    fn start() -> Self {
        if cargo_fuzz_version().is_some() {
            return Self(None);
        }
        let worker = std::thread::spawn(|| cargo_fuzz_install().stdin(Stdio::null()).output());
        Self(Some((Instant::now(), worker)))
    }

    fn finish(self) -> Result<()> {
        let Some((started, worker)) = self.0 else {
            return cargo_fuzz();
        };
        // `install` times the wait; the build began earlier.
        let what = format!(
            "(cargo install, started in the background {:.0} s ago)",
            started.elapsed().as_secs_f64()
        );
        install("cargo-fuzz", &what, CARGO_FUZZ_MANUAL, || {
            let out = worker
                .join()
                .map_err(|_| anyhow::anyhow!("the install's thread panicked"))?
                .with_context(|| format!("could not start `{CARGO_FUZZ_MANUAL}`"))?;
            if !out.status.success() {
                eprint!("{}", String::from_utf8_lossy(&out.stderr));
                bail!(
                    "`{CARGO_FUZZ_MANUAL}` failed ({})",
                    util::describe(out.status)
                );
            }
            cargo_fuzz_installed()
        })
    }
}

// --- the benign workload's sshd ---------------------------------------------------------------

/// `target/test-tools/openssh/sbin`: `sshd` and `sftp-server` from Debian's packages.
fn test_sshd_dir() -> PathBuf {
    util::repo_root().join("target/test-tools/openssh/sbin")
}

fn test_sshd() -> Result<()> {
    const NAME: &str = "sshd for the tests (unpacked)";
    let dir = test_sshd_dir();
    if ["sshd", "sftp-server"]
        .iter()
        .all(|p| dir.join(p).is_file())
    {
        line(NAME, "ok");
        return Ok(());
    }
    let tools = dir
        .parent()
        .expect("openssh/sbin has a parent")
        .to_path_buf();
    let manual = format!(
        "cd {} && apt-get download {} && dpkg-deb -x openssh-server_*.deb root && \
         dpkg-deb -x openssh-sftp-server_*.deb root && mkdir -p sbin && \
         cp root/usr/sbin/sshd root/usr/lib/openssh/sftp-server sbin/",
        tools.display(),
        SSHD_PACKAGES.join(" ")
    );
    install(NAME, "(apt-get download, dpkg-deb -x)", &manual, || {
        let debs = tools.join("debs");
        let root = tools.join("root");
        for stale in [&debs, &root, &dir] {
            if stale.exists() {
                std::fs::remove_dir_all(stale)
                    .with_context(|| format!("removing {}", stale.display()))?;
            }
        }
        std::fs::create_dir_all(&debs).with_context(|| format!("creating {}", debs.display()))?;
        let download = || {
            let mut cmd = Command::new("apt-get");
            cmd.arg("download").args(SSHD_PACKAGES).current_dir(&debs);
            check(stdout_to_stderr(&mut cmd))
        };
        if download().is_err() {
            // No package lists yet (a fresh machine that had every package already).
            check(&mut apt_command(&["update"])?)?;
            download()?;
        }
        for entry in std::fs::read_dir(&debs)? {
            let deb = entry?.path();
            check(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))?;
        }
        std::fs::create_dir_all(&dir)?;
        for (from, name) in [
            ("usr/sbin/sshd", "sshd"),
            ("usr/lib/openssh/sftp-server", "sftp-server"),
        ] {
            std::fs::copy(root.join(from), dir.join(name))
                .with_context(|| format!("copying {from} out of the unpacked packages"))?;
        }
        std::fs::remove_dir_all(&root)?;
        std::fs::remove_dir_all(&debs)?;
        Ok(())
    })
}

// --- tracefs -----------------------------------------------------------------------------------

fn tracefs_mounted() -> bool {
    std::fs::read_to_string("/proc/mounts").is_ok_and(|mounts| {
        mounts.lines().any(|l| {
            let mut fields = l.split_whitespace().skip(1);
            fields.next() == Some(TRACEFS) && fields.next() == Some("tracefs")
        })
    })
}

fn tracefs() -> Result<()> {
    const NAME: &str = "tracefs at /sys/kernel/tracing";
    if tracefs_mounted() {
        line(NAME, "ok");
        return Ok(());
    }
    let manual = format!("{}mount -t tracefs nodev {TRACEFS}", sudo_hint());
    install(NAME, "(mounting)", &manual, || {
        check(&mut as_root(
            "mount",
            &["-t", "tracefs", "nodev", TRACEFS],
            false,
        )?)?;
        if !tracefs_mounted() {
            bail!("mount succeeded but {TRACEFS} is not listed as tracefs in /proc/mounts");
        }
        Ok(())
    })
}
