//! A slow front end slows nothing else: the terminal UI on a terminal that stops reading (a
//! frozen SSH session, a paused terminal) blocks in its own drawing, while the pipeline goes on
//! analysing and storing every event, and the kernel loses nothing because of it.
//!
//! The UI runs on a pseudo-terminal of the test's own whose other end is not read while the
//! test opens files: its writes block once the terminal's buffer is full. Before the one
//! pipeline, the UI loop also ran the stages, so a stalled screen stopped the reader, filled
//! the kernel ring and lost events for the history too.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{
    BIN, READY_TIMEOUT, TestDir, die_with_parent, marker, require_root, wait_timeout,
};

/// Opens made while the screen is stalled: paced, so that nothing but a stalled consumer could
/// overflow the ring buffer, and more than the UI's queue holds (`SUBSCRIBER_EVENTS`,
/// 32,768), so that the stalled screen must miss some.
const ROUNDS: usize = 30;
const OPENS_PER_ROUND: usize = 2_000;
const _: () = assert!(ROUNDS * OPENS_PER_ROUND > secmon::pipeline::SUBSCRIBER_EVENTS * 3 / 2);
const ROUND_PAUSE: Duration = Duration::from_millis(100);
/// How long the history may take to have stored every open.
const STORE_TIMEOUT: Duration = Duration::from_secs(60);
/// A count of stored events that has not moved for this long is final.
const STORE_SETTLED: Duration = Duration::from_secs(5);

#[test]
fn a_stalled_terminal_slows_neither_the_history_nor_the_kernel() {
    require_root();
    // Every one of its opens must get through: no other test floods the machine meanwhile.
    let _no_flood = crate::common::no_machine_flood();
    let mark = marker();
    let dir = TestDir::new(&mark);
    let conf = tempfile::Builder::new()
        .prefix("secmon-stall-")
        .tempdir()
        .expect("create a temporary directory");
    let db = conf.path().join("history.db");
    let rules = conf.path().join("rules");
    fs::create_dir(&rules).expect("create the rules directory");
    let config = conf.path().join("secmon.toml");
    fs::write(
        &config,
        format!(
            "[monitoring]\nenable_process = true\nenable_filesystem = true\n\
             enable_network = false\n\n[storage]\nenabled = true\npath = {:?}\n\n\
             [response]\ncontrol_socket = {:?}\n",
            db.display().to_string(),
            conf.path().join("control.sock").display().to_string(),
        ),
    )
    .expect("write the config");

    let terminal = Pty::open(80, 24);
    let mut ui = Reaped(
        terminal.spawn(
            die_with_parent(&mut Command::new(BIN))
                .arg("--config")
                .arg(&config)
                .arg("--rules")
                .arg(&rules)
                .env("HOME", conf.path())
                .env("TERM", "xterm-256color"),
        ),
    );
    let mut screen = Vec::new();
    // Read up to the alternate screen: the UI is drawing. From here on nothing is read, and
    // the terminal's buffer is filled up first, so the UI's next frame blocks at once.
    terminal.read_until(&mut screen, READY_TIMEOUT, |seen| {
        contains(seen, b"\x1b[?1049h")
    });
    terminal.fill();

    let target = dir.join("stalled-screen");
    fs::write(&target, b"x").expect("create the file");
    for _ in 0..ROUNDS {
        for _ in 0..OPENS_PER_ROUND {
            drop(File::open(&target).expect("open"));
        }
        thread::sleep(ROUND_PAUSE);
    }
    let expected = ROUNDS * OPENS_PER_ROUND;
    let target_s = target.to_str().expect("UTF-8 path");
    let stored = wait_for_stored(&db, target_s, expected);

    // Stop; reading the terminal again lets the UI finish its frame and leave.
    // SAFETY: kill has no memory-safety preconditions; the pid is our child's.
    unsafe { libc::kill(ui.0.id() as libc::pid_t, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut exited = None;
    while exited.is_none() && Instant::now() < deadline {
        terminal.read_available(&mut screen, Duration::from_millis(100));
        exited = wait_timeout(&mut ui.0, Duration::ZERO);
    }
    terminal.read_available(&mut screen, Duration::from_millis(200));
    let text = String::from_utf8_lossy(&screen).into_owned();
    crate::common::instance::assert_private(&text.lines().map(str::to_string).collect::<Vec<_>>());
    assert!(exited.is_some_and(|s| s.success()), "the UI exits cleanly");
    let stopped = text
        .lines()
        .find_map(|l| l.split_once("secmon: stopped: ").map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("a stopped line; the terminal showed:\n{text}"));
    assert!(
        stopped.contains("display_queue_full"),
        "the screen was stalled, so it missed events and said so: {stopped}"
    );
    // The history has a bounded queue of its own, which on a loaded machine (the rest of the
    // suite writing its own databases) may drop a batch and count it: the stalled screen must
    // cost none.
    let history_dropped = loss_count(stopped, "history_queue_full");
    assert!(
        stored + history_dropped >= expected,
        "the history stores every open while the screen is stalled: {stored} of {expected} \
         stored, {history_dropped} counted as dropped by the history's own queue ({stopped})"
    );
    assert!(
        stopped.contains(" 0 dropped in the kernel"),
        "the stalled screen cost the kernel nothing: {stopped}"
    );
}

/// `N` from `reason N` in the stopped line's losses (0 when the reason is not there).
fn loss_count(stopped: &str, reason: &str) -> usize {
    stopped
        .split_once(&format!("{reason} "))
        .and_then(|(_, rest)| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// Events of `path` in the history database (a coalesced row counts all of its events), once
/// there are `expected`, the count has not moved for [`STORE_SETTLED`], or at the timeout.
fn wait_for_stored(db: &std::path::Path, path: &str, expected: usize) -> usize {
    let deadline = Instant::now() + STORE_TIMEOUT;
    let mut stored = 0;
    let mut last_change = Instant::now();
    while Instant::now() < deadline && last_change.elapsed() < STORE_SETTLED {
        let before = stored;
        if let Ok(history) = secmon::storage::History::open(db) {
            let opens = secmon::storage::Filter {
                types: vec![secmon::event::EventType::FileOpen],
                path: Some(secmon::storage::TextMatch::Exact(path.to_string())),
                ..secmon::storage::Filter::default()
            };
            stored = history.count(&opens).map_or(0, |n| n as usize);
        }
        if stored >= expected {
            break;
        }
        if stored != before {
            last_change = Instant::now();
        }
        thread::sleep(Duration::from_millis(200));
    }
    stored
}

/// The UI's process, killed and reaped however the test ends.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A pseudo-terminal of the test's own: the UI gets the terminal end, the test the other.
struct Pty {
    master: File,
    slave: OwnedFd,
}

impl Pty {
    fn open(cols: u16, rows: u16) -> Pty {
        let (mut master, mut slave) = (0, 0);
        let size = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: both out-pointers are valid; no name buffer or termios is passed.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                &size,
            )
        };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: openpty succeeded: both descriptors are open and ours alone.
        let (master, slave) =
            unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        // SAFETY: fcntl on a descriptor we own.
        unsafe { libc::fcntl(master.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
        Pty {
            master: File::from(master),
            slave,
        }
    }

    /// Starts `cmd` in a session of its own with this terminal as its controlling terminal and
    /// as stdin, stdout and stderr.
    fn spawn(&self, cmd: &mut Command) -> Child {
        let stdio = || Stdio::from(self.slave.try_clone().expect("dup the terminal"));
        cmd.stdin(stdio()).stdout(stdio()).stderr(stdio());
        // SAFETY: only async-signal-safe calls (setsid, ioctl) between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd.spawn().expect("start secmon-tui on the terminal")
    }

    /// Fills the terminal's output buffer (through a descriptor of the test's own, so the UI's
    /// writes stay blocking): from now on a write of the UI blocks until the test reads.
    fn fill(&self) {
        let mut name = [0 as libc::c_char; 128];
        // SAFETY: the buffer is valid for its length; the descriptor is the open master.
        let rc = unsafe { libc::ptsname_r(self.master.as_raw_fd(), name.as_mut_ptr(), name.len()) };
        assert_eq!(
            rc,
            0,
            "ptsname_r: {}",
            std::io::Error::from_raw_os_error(rc)
        );
        // SAFETY: ptsname_r wrote a NUL-terminated name into `name`.
        let path = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) };
        let path = path.to_str().expect("a UTF-8 terminal name").to_string();
        let mut writer = fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(&path)
            .unwrap_or_else(|e| panic!("open {path}: {e}"));
        let junk = [b'.'; 4096];
        let mut filled = 0;
        loop {
            match writer.write(&junk) {
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("fill {path}: {e}"),
            }
        }
        assert!(filled > 0, "the terminal took nothing");
    }

    /// Reads what the UI wrote until `done` says so; panics at the timeout.
    fn read_until(&self, seen: &mut Vec<u8>, timeout: Duration, done: impl Fn(&[u8]) -> bool) {
        let deadline = Instant::now() + timeout;
        while !done(seen) {
            assert!(
                Instant::now() < deadline,
                "the UI did not start within {timeout:?}; it wrote:\n{}",
                String::from_utf8_lossy(seen)
            );
            self.read_available(seen, Duration::from_millis(100));
        }
    }

    /// Reads what is there, waiting at most `wait` for something.
    fn read_available(&self, seen: &mut Vec<u8>, wait: Duration) {
        let mut poll = libc::pollfd {
            fd: self.master.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let millis = wait.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut poll, 1, millis) } <= 0 {
            return;
        }
        let mut buf = [0u8; 65536];
        loop {
            match (&self.master).read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    }
}
