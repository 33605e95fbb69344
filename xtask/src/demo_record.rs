//! `cargo xtask demo-record`: regenerates the recordings `secmon-tui demo` replays without
//! root (monitor/scenarios/recordings/), by playing every shipped scenario live, headless, as
//! root (`secmon-tui demo NAME --record-steps DIR`). The recordings come from the scenarios, so
//! the two never drift: run it after changing a scenario's steps, and commit the result.
use std::process::ExitCode;

use anyhow::{Context as _, Result};

use crate::util;

/// The shipped scenarios (monitor/scenarios/NAME.toml).
const SCENARIOS: &[&str] = &["webapp", "cryptominer", "evasion"];

pub fn run() -> Result<ExitCode> {
    let root = util::repo_root();
    eprintln!("xtask: building secmon (cargo build -p monitor)");
    let mut build = util::cargo();
    build.args(["build", "-p", "monitor"]);
    util::check(util::stdout_to_stderr(&mut build)).context("build failed")?;
    let bin = util::target_dir().join("debug").join("secmon-tui");
    let out = root.join("monitor").join("scenarios").join("recordings");
    let rules = root.join("rules");
    let config = root
        .join("tests")
        .join("fixtures")
        .join("shared-monitor.toml");
    for name in SCENARIOS {
        let args = [
            bin.as_os_str(),
            "demo".as_ref(),
            "--rules".as_ref(),
            rules.as_os_str(),
            "--config".as_ref(),
            config.as_os_str(),
            "--record-steps".as_ref(),
            out.as_os_str(),
            name.as_ref(),
        ];
        let mut cmd = util::as_root(args[0], &args[1..], false)?;
        util::check(&mut cmd).with_context(|| format!("recording {name}"))?;
    }
    eprintln!(
        "xtask: recordings written to {}; rebuild to embed them",
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}
