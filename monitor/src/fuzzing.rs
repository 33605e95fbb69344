//! The checks behind the fuzz targets (`fuzz/`, run by `cargo xtask fuzz`) and their
//! regression tests: one function per target, taking the fuzzer's bytes. Each must never
//! panic, must stay within bounded time and memory, and must never let a character that
//! needs escaping reach a terminal, on the UI's screen or in a printed message.
//!
//! The fuzz targets are one-line wrappers, so a crashing input found by the fuzzer is replayed
//! by the normal test suite as soon as it is saved under `tests/fixtures/fuzz/<target>/`
//! (see `regressions_and_seeds_pass` below). Compiled for tests and with the `fuzzing` feature
//! only.
use std::{
    fmt,
    io::Write as _,
    path::{Path, PathBuf},
    sync::OnceLock,
};

use ratatui::{Terminal, backend::TestBackend};

use crate::{
    config::{Config, ThreatDetection},
    decode,
    enrich::{Enricher, UserNames},
    event::Event,
    output::event_json::write_event,
    record::{Replay, Speed},
    response::control::{self, Reply, Request},
    rules::{Evaluator, RuleEngine, RuleSet, SourceFile},
    sanitize::{self, needs_escape},
    ui::{self, Theme},
};

/// Inputs longer than this are ignored (libFuzzer is run with a smaller `-max_len`; this keeps
/// a stray large fixture from slowing the regression tests).
pub const MAX_INPUT: usize = 1 << 20;
/// Events kept from one replayed input (the UI panes keep fewer anyway).
const MAX_EVENTS: usize = 2_000;
/// Screen sizes drawn: a normal one and a cramped one.
const SCREENS: [(u16, u16); 2] = [(100, 30), (40, 10)];

/// A fuzz target's check: the fuzzer's bytes in, a panic when an invariant breaks.
pub type Check = fn(&[u8]);

/// The fuzz targets: name (the file under `fuzz/fuzz_targets/`) and check.
pub const TARGETS: [(&str, Check); 5] = [
    ("replay_ui", replay_ui),
    ("decode_enrich", decode_enrich),
    ("rules_load", rules_load),
    ("config_load", config_load),
    ("control_protocol", control_protocol),
];

/// Panics if `text` holds a character that must not reach a terminal (`\\` is allowed: it
/// introduces the escapes `sanitize::for_terminal` writes). `newlines` allows line ends.
pub fn assert_terminal_safe(what: &str, text: &str, newlines: bool) {
    if let Some(c) = text
        .chars()
        .find(|&c| !(c == '\\' || (newlines && c == '\n') || !needs_escape(c)))
    {
        panic!("{what} would write {c:?} to a terminal: {text:?}");
    }
}

/// What the binary prints for an error (`main.rs`), checked.
fn check_printed_error(error: &dyn fmt::Display) {
    let line = sanitize::error_line(error);
    assert_terminal_safe("an error message", &line, true);
    assert!(
        line.lines().skip(1).all(|l| l.starts_with("  ")),
        "a quoted text started a line of its own: {line:?}"
    );
}

/// The repository's rules (`rules/`), compiled once (evaluators keep their state apart).
fn bundled_rules() -> RuleEngine {
    static RULES: OnceLock<RuleEngine> = OnceLock::new();
    RULES
        .get_or_init(|| {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules");
            RuleEngine::load(vec![dir]).unwrap_or_else(|e| panic!("the bundled rules load: {e}"))
        })
        .clone()
}

fn bundled_lists() -> &'static SourceFile {
    static LISTS: OnceLock<SourceFile> = OnceLock::new();
    LISTS.get_or_init(|| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules/lists.json");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        SourceFile { path, text }
    })
}

fn analyzer() -> Evaluator {
    let engine = bundled_rules();
    let detection = ThreatDetection {
        enable_heuristics: true,
        ..ThreatDetection::default()
    };
    Evaluator::for_config(engine, &detection)
}

/// A file of this process's own for inputs that must come from a path (a recording's format
/// is detected from the file).
fn scratch_file(data: &[u8]) -> PathBuf {
    let path = std::env::temp_dir().join(format!("secmon-fuzz-{}.rec", std::process::id()));
    let written = std::fs::File::create(&path).and_then(|mut f| f.write_all(data));
    if let Err(e) = written {
        panic!("cannot write {}: {e}", path.display());
    }
    path
}

/// Draws the app's screens (live panes, the detail view, a simulated block's status line) and
/// checks every cell.
fn draw_screens(mut app: crate::app::App) {
    use crate::app::Event as AppEvent;
    use crossterm::event::{Event as TermEvent, KeyCode, KeyEvent, KeyModifiers};
    let keys = [
        None,
        Some(KeyCode::Tab),
        Some(KeyCode::Tab),
        Some(KeyCode::Tab),
        Some(KeyCode::Enter),
        Some(KeyCode::Char('b')),
        Some(KeyCode::Esc),
        Some(KeyCode::Char('R')),
    ];
    for key in keys {
        if let Some(code) = key {
            let key = KeyEvent::new(code, KeyModifiers::NONE);
            app.handle(AppEvent::Input(TermEvent::Key(key)));
        }
        for (width, height) in SCREENS {
            let mut terminal = match Terminal::new(TestBackend::new(width, height)) {
                Ok(terminal) => terminal,
                Err(e) => panic!("a test terminal: {e}"),
            };
            if let Err(e) = terminal.draw(|f| {
                ui::draw(
                    f,
                    &app,
                    Theme {
                        color: true,
                        presenter: false,
                    },
                )
            }) {
                panic!("drawing: {e}");
            }
            let buffer = terminal.backend().buffer();
            for cell in &buffer.content {
                assert_terminal_safe("a screen cell", cell.symbol(), false);
            }
        }
    }
}

/// Recording → replay → analysis (the bundled rules) → the terminal UI.
pub fn replay_ui(data: &[u8]) {
    if data.len() > MAX_INPUT {
        return;
    }
    let path = scratch_file(data);
    let replay = Replay::open(&path, Speed::Factor(1.0));
    let _ = std::fs::remove_file(&path);
    let replay = match replay {
        Ok(replay) => replay,
        Err(e) => return check_printed_error(&e),
    };
    let mut analyzer = analyzer();
    let mut events: Vec<Event> = Vec::new();
    for batch in replay {
        match batch {
            Ok(batch) => {
                for mut event in batch.events {
                    analyzer.analyze(&mut event);
                    events.push(event);
                }
            }
            Err(e) => {
                check_printed_error(&e);
                break;
            }
        }
        if events.len() >= MAX_EVENTS {
            break;
        }
    }
    draw_screens(ui::sample::app_with(ui::sample::controls(), events));
}

/// The kernel record kinds, and each one's size, for [`decode_enrich`]'s selector byte.
fn record_kinds() -> [(u32, usize); 21] {
    use monitor_common::{kind::*, *};
    use std::mem::size_of;
    [
        (PROCESS_EXEC, size_of::<ExecEvent>()),
        (PROCESS_FORK, size_of::<ForkEvent>()),
        (PROCESS_EXIT, size_of::<ExitEvent>()),
        (PTRACE, size_of::<PtraceEvent>()),
        (CHDIR, size_of::<ChdirEvent>()),
        (PRIVILEGE_CHANGE, size_of::<PrivilegeEvent>()),
        (FILE_OPEN, size_of::<FileEvent>()),
        (FILE_DELETE, size_of::<FileEvent>()),
        (FILE_RENAME, size_of::<FilePairEvent>()),
        (FILE_CHMOD, size_of::<FileEvent>()),
        (FILE_LINK, size_of::<FilePairEvent>()),
        (FD_DUP, size_of::<FileEvent>()),
        (NET_CONNECT, size_of::<NetEvent>()),
        (NET_ACCEPT, size_of::<NetEvent>()),
        (NET_LISTEN, size_of::<NetEvent>()),
        (NET_UDP, size_of::<NetEvent>()),
        (NET_CLOSE, size_of::<NetEvent>()),
        (NET_CONNECT_FAILED, size_of::<NetEvent>()),
        (MODULE_LOAD, size_of::<ModuleLoadEvent>()),
        (BPF_LOAD, size_of::<BpfLoadEvent>()),
        // A kind the decoder does not know.
        (999, size_of::<EventHeader>()),
    ]
}

/// A sequence of kernel records → decode → enrich (a process table that starts empty and never
/// reads this machine's /proc) → analysis → JSON lines, the hand-written serialiser's
/// exactly serde_json's.
///
/// Input: records one after another, each a selector byte then its bytes. A selector below
/// the number of kinds picks a kind and takes that record's size (zero-filled when the input
/// runs out, the kind written over the first 4 bytes); any other selector takes a length byte
/// and gives the decoder that many raw bytes.
pub fn decode_enrich(data: &[u8]) {
    if data.len() > MAX_INPUT {
        return;
    }
    let kinds = record_kinds();
    let nowhere = Path::new("/nonexistent/secmon-fuzz");
    let mut enricher = Enricher::with_proc_root(&nowhere.join("proc"), {
        UserNames::from_path(nowhere.join("passwd"))
    });
    let mut analyzer = analyzer();
    let mut out = Vec::new();
    let mut written = Vec::new();
    let mut rest = data;
    while let Some((&selector, tail)) = rest.split_first() {
        let (bytes, tail) = match kinds.get(usize::from(selector)) {
            Some(&(kind, size)) => {
                let take = size.min(tail.len());
                let mut bytes = tail[..take].to_vec();
                bytes.resize(size, 0);
                bytes[..4].copy_from_slice(&kind.to_ne_bytes());
                (bytes, &tail[take..])
            }
            None => {
                let Some((&len, tail)) = tail.split_first() else {
                    break;
                };
                let take = usize::from(len).min(tail.len());
                (tail[..take].to_vec(), &tail[take..])
            }
        };
        rest = tail;
        let record = match decode::decode(&bytes) {
            Ok(record) => record,
            Err(e) => {
                assert_terminal_safe("a decode error", &e.to_string(), false);
                continue;
            }
        };
        let Some(mut event) = enricher.process(&record) else {
            continue;
        };
        analyzer.analyze(&mut event);
        out.clear();
        if let Err(e) = serde_json::to_writer(&mut out, &event) {
            panic!("an event that cannot be written as JSON: {e}");
        }
        written.clear();
        write_event(&mut written, &event);
        assert!(
            written == out,
            "write_event wrote\n{}\nwhere serde_json wrote\n{}",
            String::from_utf8_lossy(&written),
            String::from_utf8_lossy(&out)
        );
        // A JSON line: one line, no raw C0 control (JSON escapes them; DEL and C1 controls
        // are legal raw in JSON and go through as they are).
        if let Some(b) = out.iter().find(|&&b| b < 0x20) {
            panic!("raw byte {b:#x} in a JSON line");
        }
    }
}

/// One rule file (with the bundled lists) → validate → compile → evaluate the sample events.
pub fn rules_load(data: &[u8]) {
    if data.len() > MAX_INPUT {
        return;
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = SourceFile {
        path: PathBuf::from("fuzz/rules.json"),
        text: text.to_string(),
    };
    match RuleSet::from_sources(vec![bundled_lists().clone(), file]) {
        Ok(set) => {
            let engine = RuleEngine::with_set(set, Vec::new());
            let mut analyzer = Evaluator::for_config(engine, &ThreatDetection::default());
            for mut event in ui::sample::events() {
                analyzer.analyze(&mut event);
            }
        }
        // `rules check` and the start-up print each problem through `for_terminal`.
        Err(crate::rules::RulesError::Invalid(problems)) => {
            for problem in problems {
                let printed = sanitize::for_terminal(&problem.to_string()).into_owned();
                assert_terminal_safe("a rule problem", &printed, false);
            }
        }
        Err(e) => check_printed_error(&e),
    }
}

/// A config file → parse and check.
pub fn config_load(data: &[u8]) {
    if data.len() > MAX_INPUT {
        return;
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = Config::parse(text, Path::new("fuzz/secmon.toml")) {
        check_printed_error(&e);
    }
}

/// One control-socket line, read as a request (the monitor's side: parse, resolve the target,
/// write it back) and as a reply (the client's side: what `block list|add|remove` print).
pub fn control_protocol(data: &[u8]) {
    if data.len() > MAX_INPUT {
        return;
    }
    let line = String::from_utf8_lossy(data);
    if let Ok(request) = serde_json::from_str::<Request>(&line) {
        if let Request::Add { target, .. } = &request {
            let _ = target.resolve();
        }
        let again = serde_json::to_string(&request).unwrap_or_default();
        let parsed: Option<Request> = serde_json::from_str(&again).ok();
        assert!(
            parsed.as_ref() == Some(&request),
            "{request:?} does not survive a round trip: {parsed:?}"
        );
    }
    if let Ok(reply) = serde_json::from_str::<Reply>(&line) {
        if let Some(error) = &reply.error {
            // Printed as any error is: a reply of several lines keeps them, indented.
            check_printed_error(error);
        }
        let mut out = Vec::new();
        if let Some(denies) = &reply.denies
            && let Err(e) = control::write_list(&mut out, denies)
        {
            panic!("writing a list into memory: {e}");
        }
        if let Some(deny) = &reply.deny {
            out.extend_from_slice(control::describe(deny).as_bytes());
        }
        assert_terminal_safe("block list output", &String::from_utf8_lossy(&out), true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                files_under(&path, out);
            } else {
                out.push(path);
            }
        }
    }

    /// Every saved crash (`tests/fixtures/fuzz/<target>/`) and every seed the fuzz targets
    /// start from passes its target's check: a crash found by `cargo xtask fuzz` becomes a
    /// test here by saving its input in that directory.
    #[test]
    fn regressions_and_seeds_pass() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let seeds: [(&str, &[&str]); 5] = [
            ("replay_ui", &["tests/fixtures/recordings"]),
            ("decode_enrich", &[]),
            ("rules_load", &["rules", "tests/rules_fixtures"]),
            (
                "config_load",
                &["tests/valid_configs", "tests/invalid_configs", "config"],
            ),
            ("control_protocol", &[]),
        ];
        let mut checked = 0;
        for (name, check) in TARGETS {
            let mut inputs = Vec::new();
            files_under(&repo.join("tests/fixtures/fuzz").join(name), &mut inputs);
            for (seed_target, dirs) in seeds {
                if seed_target == name {
                    for dir in dirs {
                        files_under(&repo.join(dir), &mut inputs);
                    }
                }
            }
            for input in inputs {
                let Ok(data) = std::fs::read(&input) else {
                    panic!("cannot read {}", input.display());
                };
                let outcome = std::panic::catch_unwind(|| check(&data));
                assert!(outcome.is_ok(), "{name} fails on {}", input.display());
                checked += 1;
            }
        }
        assert!(checked > 50, "only {checked} inputs found");
    }

    #[test]
    fn control_characters_on_screen_are_caught() {
        let caught = std::panic::catch_unwind(|| assert_terminal_safe("x", "a\x1b[2Jb", false));
        assert!(caught.is_err());
        assert_terminal_safe("x", "a\\x1b[2Jb", false);
        assert!(std::panic::catch_unwind(|| assert_terminal_safe("x", "a\nb", false)).is_err());
        assert_terminal_safe("x", "a\nb", true);
    }
}
