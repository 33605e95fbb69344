//! `cargo xtask install [--prefix /usr/local] [--destdir DIR] [--target TRIPLE]`: setup, release
//! build, then install the binary, the default configuration (only if none exists) and the rule
//! files. For another architecture (`--target`), everything goes into a staging directory
//! packed as a tarball to unpack on the device (the binary cannot run here).

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::Args;

use crate::util::{self, as_root, check};

const CONFIG_DST: &str = "/etc/secmon/secmon.toml";
const RULES_DST: &str = "/usr/local/share/secmon/rules";

#[derive(Debug, Args)]
pub struct InstallArgs {
    /// Installation prefix: the binary goes to PREFIX/bin/secmon-tui.
    #[arg(long, default_value = "/usr/local", value_name = "PREFIX")]
    pub prefix: PathBuf,
    /// Install under DIR instead of / (a staging root, as make's DESTDIR): DIR/PREFIX/bin,
    /// DIR/etc/secmon, DIR/usr/local/share/secmon/rules.
    #[arg(long, value_name = "DIR")]
    pub destdir: Option<PathBuf>,
    /// Cross-build for another architecture (e.g. aarch64-unknown-linux-gnu) and pack a
    /// tarball to unpack on the device with `sudo tar -xzf FILE -C /`: staged in
    /// target/TRIPLE/dist/root unless --destdir is given.
    #[arg(long, value_name = "TRIPLE")]
    pub target: Option<String>,
}

/// `path` (absolute) under the staging root `destdir`, or itself without one.
fn staged(destdir: Option<&Path>, path: &Path) -> PathBuf {
    match destdir {
        Some(root) => root.join(path.strip_prefix("/").unwrap_or(path)),
        None => path.to_path_buf(),
    }
}

pub fn run(args: InstallArgs) -> Result<ExitCode> {
    let target = crate::cross::resolve(args.target.as_deref())?;
    crate::setup::run_for(target)?;
    let bin = util::build_secmon(target, "release")?;
    let tarball = target.map(|t| {
        let dist = util::target_dir().join(t.triple).join("dist");
        (
            dist.join(format!("secmon-{}.tar.gz", t.triple)),
            dist.join("root"),
        )
    });
    let destdir = match (&args.destdir, &tarball) {
        (Some(dir), _) => Some(dir.clone()),
        (None, Some((_, staging))) => {
            // A fresh staging root, so the tarball holds this build only.
            if staging.exists() {
                std::fs::remove_dir_all(staging)
                    .with_context(|| format!("removing {}", staging.display()))?;
            }
            Some(staging.clone())
        }
        (None, None) => None,
    };
    let destdir = destdir.as_deref();
    let root = util::repo_root();
    let mut installed = Vec::new();
    let mut skipped = Vec::new();

    let bin_dst = staged(destdir, &args.prefix.join("bin").join("secmon-tui"));
    install_file(&bin, &bin_dst, 0o755)?;
    installed.push(bin_dst.display().to_string());

    let config_src = root.join("config").join("secmon.toml");
    let config_dst = &staged(destdir, Path::new(CONFIG_DST));
    if config_dst.exists() {
        skipped.push(format!("{CONFIG_DST} (already exists, left unchanged)"));
    } else if !config_src.is_file() {
        skipped.push(format!("{CONFIG_DST} ({} not found)", config_src.display()));
    } else {
        install_file(&config_src, config_dst, 0o644)?;
        installed.push(config_dst.display().to_string());
    }

    let rules_src = root.join("rules");
    let mut rule_files = Vec::new();
    collect_files(&rules_src, &mut rule_files)?;
    rule_files.sort();
    for file in &rule_files {
        let rel = file.strip_prefix(&rules_src).unwrap_or(file);
        install_file(
            file,
            &staged(destdir, Path::new(RULES_DST)).join(rel),
            0o644,
        )?;
    }
    if rule_files.is_empty() {
        skipped.push(format!("{RULES_DST} (no files in {})", rules_src.display()));
    } else {
        installed.push(format!("{RULES_DST}/ ({} rule files)", rule_files.len()));
    }

    eprintln!("xtask install: installed:");
    for item in &installed {
        eprintln!("  {item}");
    }
    for item in &skipped {
        eprintln!("  skipped {item}");
    }
    match (&tarball, destdir) {
        (Some((file, _)), Some(staging)) if args.destdir.is_none() => {
            pack(staging, file)?;
            let name = file.file_name().unwrap_or_default().to_string_lossy();
            eprintln!("xtask install: packed {}", file.display());
            eprintln!(
                "xtask install: on the device: `sudo tar -xzf {name} -C /` (add \
                 `--exclude=./etc/secmon/secmon.toml` to keep its configuration), then \
                 `sudo secmon-tui check-ebpf` and `sudo {}`",
                args.prefix.join("bin").join("secmon-tui").display()
            );
        }
        (_, Some(_)) => eprintln!("xtask install: staged; copy the tree to its root"),
        _ => eprintln!(
            "xtask install: start the monitor with `sudo {}`",
            bin_dst.display()
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// `tar -czf FILE -C STAGING .`, owned by root as on the device (the files are the user's here).
fn pack(staging: &Path, file: &Path) -> Result<()> {
    let mut tar = std::process::Command::new("tar");
    tar.args(["--owner=0", "--group=0", "-czf"])
        .arg(file)
        .arg("-C")
        .arg(staging)
        .arg(".");
    check(&mut tar).with_context(|| format!("packing {}", file.display()))
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    for entry in entries {
        let path = entry
            .with_context(|| format!("reading {}", dir.display()))?
            .path();
        if path.is_dir() {
            collect_files(&path, out)?;
        } else if path.is_file() {
            out.push(path);
        }
    }
    Ok(())
}

/// Copies `src` to `dst` (creating parent directories) with `mode`; if that is not permitted for
/// the current user, does the same through `sudo install -D`.
fn install_file(src: &Path, dst: &Path, mode: u32) -> Result<()> {
    match copy_direct(src, dst, mode) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::PermissionDenied && !util::is_root() => {
            let mode = format!("{mode:o}");
            let args = [
                "-D".as_ref(),
                "-m".as_ref(),
                mode.as_ref(),
                src.as_os_str(),
                dst.as_os_str(),
            ];
            check(&mut as_root("install", &args, false)?)
                .with_context(|| format!("installing {}", dst.display()))
        }
        Err(e) => Err(e).with_context(|| format!("copying {} to {}", src.display(), dst.display())),
    }
}

fn copy_direct(src: &Path, dst: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    if let Some(parent) = dst.parent() {
        std::fs::create_dir_all(parent)?;
    }
    // Write to a temporary name and rename, so a running secmon-tui binary is replaced, not
    // overwritten in place ("text file busy").
    let mut tmp = dst.as_os_str().to_owned();
    tmp.push(".xtask-tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::copy(src, &tmp)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
    std::fs::rename(&tmp, dst).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}
