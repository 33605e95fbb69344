//! Reloading the rules when their files change (inotify through `notify`), and the notice
//! every reload gives.

use std::path::Path;
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};

use super::{ReloadSummary, RuleEngine, RulesError};
use crate::notice::{self, Notice};

/// Changes closer together than this are one reload (editors write files in several steps).
const DEBOUNCE: Duration = Duration::from_millis(250);

/// Reloads `engine` and reports the outcome as a notice (on stderr:
/// `secmon: rules reloaded: N rules from M files`, or
/// `secmon: rules reload failed: <error>; keeping the previous N rules`).
pub fn reload_and_report(engine: &RuleEngine) -> Result<ReloadSummary, RulesError> {
    reload_reporting(engine, false)
}

/// [`reload_and_report`] for a SIGHUP: the report ends with ` (on SIGHUP)`, so it can be told
/// from a reload the file watcher made at about the same time.
pub fn reload_on_sighup(engine: &RuleEngine) -> Result<ReloadSummary, RulesError> {
    reload_reporting(engine, true)
}

fn reload_reporting(engine: &RuleEngine, on_sighup: bool) -> Result<ReloadSummary, RulesError> {
    let previous = engine.summary().rules;
    let result = engine.reload();
    notice::emit(reload_notice(&result, previous, on_sighup));
    result
}

/// The notice a reload gives: the UI shows it in its rule list, `--json` mode prints it.
pub fn reload_notice(
    result: &Result<ReloadSummary, RulesError>,
    previous: usize,
    on_sighup: bool,
) -> Notice {
    match result {
        Ok(summary) => Notice::RulesReloaded {
            summary: summary.to_string(),
            on_sighup,
        },
        Err(e) => Notice::RulesReloadFailed {
            error: e.summary(),
            kept: previous,
            on_sighup,
        },
    }
}

/// The line `--json` mode prints for a reload (not on SIGHUP).
#[cfg(test)]
pub fn reload_message(result: &Result<ReloadSummary, RulesError>, previous: usize) -> String {
    format!("secmon: {}", reload_notice(result, previous, false))
}

/// Watches the engine's rule directories while it lives; reloads (and reports) after changes.
pub struct RulesWatcher {
    watcher: Option<RecommendedWatcher>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for RulesWatcher {
    fn drop(&mut self) {
        // Dropping the watcher closes the channel, which ends the thread.
        self.watcher.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Starts watching every rule directory of `engine` (recursively).
pub fn watch(engine: RuleEngine) -> Result<RulesWatcher, RulesError> {
    let (tx, rx) = mpsc::channel::<notify::Result<notify::Event>>();
    let mut watcher = notify::recommended_watcher(move |event| {
        let _ = tx.send(event);
    })
    .map_err(|e| RulesError::Watch {
        path: engine.dirs().first().cloned().unwrap_or_default(),
        message: e.to_string(),
    })?;
    for dir in engine.dirs() {
        watcher
            .watch(dir, RecursiveMode::Recursive)
            .map_err(|e| RulesError::Watch {
                path: dir.clone(),
                message: e.to_string(),
            })?;
    }
    let thread = thread::Builder::new()
        .name("secmon-rules-watch".to_string())
        .spawn(move || watch_loop(&engine, &rx))
        .map_err(|e| RulesError::Watch {
            path: Default::default(),
            message: e.to_string(),
        })?;
    Ok(RulesWatcher {
        watcher: Some(watcher),
        thread: Some(thread),
    })
}

fn watch_loop(engine: &RuleEngine, rx: &mpsc::Receiver<notify::Result<notify::Event>>) {
    loop {
        match rx.recv() {
            Err(_) => return,
            Ok(Ok(event)) if relevant(&event) => {}
            Ok(_) => continue,
        }
        loop {
            match rx.recv_timeout(DEBOUNCE) {
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
        let _ = reload_and_report(engine);
    }
}

/// A change that can alter the rules: not a mere read, and about a `.json` file or a
/// directory (not an editor's swap or backup file).
fn relevant(event: &notify::Event) -> bool {
    if matches!(event.kind, EventKind::Access(_)) {
        return false;
    }
    event.paths.is_empty()
        || event.paths.iter().any(|p| {
            let hidden = p
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'));
            !hidden && (p.extension().is_some_and(|e| e == "json") || is_dir_like(p))
        })
}

fn is_dir_like(path: &Path) -> bool {
    path.extension().is_none() && !path.is_file()
}
