//! Shared helpers, one module per concern; every test file imports them from `common`:
//!
//! - [`assert`]: field assertions and the envelope every event carries;
//! - [`monitor`]: the one monitor shared by the whole test binary, checkpoints, waiting for
//!   events and sync points, parsing a monitor's output;
//! - [`instance`]: a monitor started by one test, with its own arguments and directory;
//! - [`process`]: who the test is (root, pid, tid, comm) and child processes (bounded waits,
//!   `ETXTBSY` retries, dying with the test);
//! - [`files`]: temporary directories, paths as the monitor prints them, copied executables;
//! - [`nats`]: a NATS server with JetStream of the test's own (the fleet tests).
//!
//! Tests run in parallel against the shared monitor. Each test takes a [`Checkpoint`] before it
//! acts and only looks at events that arrived after it, and it recognises its own events by
//! unique markers (temporary directory names, child pids, ports), never by order.

pub mod assert;
pub mod files;
pub mod instance;
pub mod monitor;
pub mod nats;
pub mod process;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

pub use assert::{
    assert_absent, assert_envelope, assert_field, assert_syscall_in, flag_tokens, str_field, str_is,
};
pub use files::{TestDir, copy_executable, lossy, path_str, workspace};
pub use instance::{Instance, STOP_TIMEOUT};
pub use monitor::{Checkpoint, Monitor, monitor, parse_json_lines};
pub use process::{
    comm_of, cstring, die_with_parent, gettid, main_thread_comm, require_root, run, spawn,
    status_of, test_pid, thread_comm, wait_child, wait_timeout,
};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_secmon-tui");
/// The line the monitor prints on stderr once every probe is attached.
pub const READY_LINE: &str = "secmon: ready";
/// The config of monitors started only to watch: every family on, no history (tests running
/// side by side must not share, and lock, the machine's database).
pub const SHARED_CONFIG: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/fixtures/shared-monitor.toml"
);
/// How long a test waits for an event it caused.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a monitor may take to load and attach its programs.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A number unique within this test binary.
pub fn next_id() -> u32 {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// A marker unique across tests and test runs: `secmon-test-<pid>-<n>`.
/// Tests that flood the whole machine with events (every monitor running sees them) take
/// this exclusively; a test that needs every one of its own events through a monitor that is
/// not made to overflow takes it shared. Floods still run beside the other tests.
static MACHINE_FLOOD: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Held while a test floods the machine (see [`MACHINE_FLOOD`]).
pub fn flooding_the_machine() -> std::sync::RwLockWriteGuard<'static, ()> {
    MACHINE_FLOOD
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Held while a test needs no other test to flood the machine (see [`MACHINE_FLOOD`]).
pub fn no_machine_flood() -> std::sync::RwLockReadGuard<'static, ()> {
    MACHINE_FLOOD
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `setpriv` running what follows as the user nobody, with no groups and no capabilities to
/// inherit: how the tests check what works without root.
pub const AS_NOBODY: [&str; 5] = [
    "setpriv",
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
    "--inh-caps=-all",
];

pub fn marker() -> String {
    format!("secmon-test-{}-{}", std::process::id(), next_id())
}
