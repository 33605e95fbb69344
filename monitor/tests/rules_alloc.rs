//! The rule engine's match path allocates nothing for events no rule matches: evaluating the
//! shipped pack over non-matching events, after a warm-up, makes zero heap allocations.
//!
//! A separate test binary, because it installs a counting global allocator (allocations are
//! counted per thread, so other tests running in parallel do not disturb the count).
// Test set-up that fails should stop with its message (clippy's in-tests allowance covers only
// `#[test]` functions, not their helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::PathBuf;

use chrono::{DateTime, TimeDelta};
use secmon::config::ThreatDetection;
use secmon::event::{Event, EventType, Severity};
use secmon::rules::Evaluator;
use secmon::rules::{RuleEngine, SOURCE_RULES_DIR};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

fn base(t: EventType, secs: i64) -> Event {
    let mut e = Event::new(t, DateTime::UNIX_EPOCH + TimeDelta::seconds(secs));
    e.pid = 4242;
    e.tid = 4242;
    e.ppid = 4000;
    e.uid = 1000;
    e.user = "alice".into();
    e.process = "cat".into();
    e.exe = "/usr/bin/cat".into();
    e.cmdline = "cat notes.txt".into();
    e.parent_process = "bash".into();
    e.ancestors = vec!["bash".into(), "sshd".into(), "systemd".into()];
    e
}

fn events() -> Vec<Event> {
    let mut out = Vec::new();
    for secs in 0..10 {
        let mut open = base(EventType::FileOpen, secs);
        open.file_path = Some("/usr/lib/x86_64-linux-gnu/libc.so.6".to_string());
        open.flags = Some("O_RDONLY|O_CLOEXEC".into());
        out.push(open);
        let mut proc_open = base(EventType::FileOpen, secs);
        proc_open.file_path = Some("/proc/self/status".to_string());
        out.push(proc_open);
        let mut connect = base(EventType::NetConnect, secs);
        connect.protocol = Some("tcp".to_string());
        connect.target_ip = Some("140.82.121.4".parse().expect("an address"));
        connect.target_port = Some(443);
        out.push(connect);
        let mut exec = base(EventType::ProcessExec, secs);
        exec.argv = Some(vec!["cat".to_string(), "notes.txt".to_string()]);
        out.push(exec);
        let mut write = base(EventType::FileWrite, secs);
        write.file_path = Some("/home/alice/notes.txt".to_string());
        write.flags = Some("O_WRONLY|O_CREAT|O_TRUNC".into());
        write.mode = Some(0o644);
        out.push(write);
    }
    out
}

#[test]
fn non_matching_events_allocate_nothing() {
    let engine = match RuleEngine::load(vec![PathBuf::from(SOURCE_RULES_DIR)]) {
        Ok(engine) => engine,
        Err(e) => panic!("the shipped pack must load:\n{e}"),
    };
    let mut analyzer = Evaluator::for_config(engine, &ThreatDetection::default());
    let mut events = events();
    // Warm-up: regex caches, the process map entry, the memo table.
    for e in events.iter_mut() {
        analyzer.analyze(e);
        assert!(
            e.analysis.rules.is_empty(),
            "this test needs events no rule matches; {:?} matched {:?}",
            e.event_type,
            e.analysis.rules
        );
    }
    let before = allocations();
    for _ in 0..100 {
        for e in events.iter_mut() {
            analyzer.analyze(e);
        }
    }
    let made = allocations() - before;
    assert_eq!(
        made, 0,
        "allocations on the match path of non-matching events"
    );
    assert!(
        events
            .iter()
            .all(|e| e.analysis.severity == Severity::Benign)
    );
}
