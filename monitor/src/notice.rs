//! Notices: what the monitor tells its operator while it runs (a reload, a warning, a step of
//! the stop), typed, so that each front end shows them its own way without parsing text.
//!
//! Any stage emits with [`emit`], [`warn`] or [`info`]. A notice goes to every
//! [`subscribe`]d front end (a bounded queue each: a front end that is not reading loses notices,
//! never holds up the stage that emitted them). It is also printed on stderr as one
//! `secmon: …` line, as `--json` mode always has, unless a subscriber owns the terminal (the
//! TUI, whose screen a stray line would break): then it is that subscriber's to show.
//!
//! The router is process-wide, as a logger is: the stages that emit (the rule watcher's
//! thread, the response layer, the history) need no handle passed through the pipeline.
use std::{
    fmt,
    io::Write,
    sync::{
        Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
};

use tokio::sync::mpsc;

/// What happened, as the operator is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// The rules were reloaded (`summary`: "N rules from M files …").
    RulesReloaded { summary: String, on_sighup: bool },
    /// A reload failed; the previous `kept` rules stay in force.
    RulesReloadFailed {
        error: String,
        kept: usize,
        on_sighup: bool,
    },
    /// Something went wrong or is being lost; monitoring goes on.
    Warning(String),
    /// Progress and state (history opened, a recording finished, probes detached).
    Info(String),
}

impl Notice {
    /// True for notices that report a problem (a UI shows them as errors).
    pub fn is_problem(&self) -> bool {
        matches!(self, Notice::RulesReloadFailed { .. } | Notice::Warning(_))
    }
}

impl fmt::Display for Notice {
    /// The text after `secmon: ` (the line `--json` mode prints, which tests and scripts read).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sighup = |on: bool| if on { " (on SIGHUP)" } else { "" };
        match self {
            Notice::RulesReloaded { summary, on_sighup } => {
                write!(f, "rules reloaded: {summary}{}", sighup(*on_sighup))
            }
            Notice::RulesReloadFailed {
                error,
                kept,
                on_sighup,
            } => write!(
                f,
                "rules reload failed: {error}; keeping the previous {kept} rules{}",
                sighup(*on_sighup)
            ),
            Notice::Warning(text) => write!(f, "warning: {text}"),
            Notice::Info(text) => f.write_str(text),
        }
    }
}

/// Sends `notice` to every subscriber and, unless one owns the terminal, to stderr.
pub fn emit(notice: Notice) {
    let route = ROUTE.lock().unwrap_or_else(PoisonError::into_inner);
    route.deliver(&notice, &mut std::io::stderr().lock());
}

/// [`emit`] a [`Notice::Warning`].
pub fn warn(text: impl Into<String>) {
    emit(Notice::Warning(text.into()));
}

/// [`emit`] a [`Notice::Info`].
pub fn info(text: impl Into<String>) {
    emit(Notice::Info(text.into()));
}

/// Who receives notices, besides stderr.
struct Route {
    subscribers: Vec<Subscriber>,
}

impl Route {
    const fn new() -> Route {
        Route {
            subscribers: Vec::new(),
        }
    }

    fn deliver(&self, notice: &Notice, stderr: &mut impl Write) {
        for subscriber in &self.subscribers {
            // A full queue loses the notice rather than blocking the stage that emitted it.
            let _ = subscriber.tx.try_send(notice.clone());
        }
        if !self.subscribers.iter().any(|s| s.owns_terminal) {
            let _ = writeln!(stderr, "secmon: {notice}");
        }
    }

    fn add(&mut self, capacity: usize, terminal: Terminal) -> Subscription {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        self.subscribers.push(Subscriber {
            id,
            tx,
            owns_terminal: terminal == Terminal::Owned,
        });
        Subscription { id, rx }
    }

    fn remove(&mut self, id: u64) {
        self.subscribers.retain(|s| s.id != id);
    }
}

struct Subscriber {
    id: u64,
    tx: mpsc::Sender<Notice>,
    owns_terminal: bool,
}

static ROUTE: Mutex<Route> = Mutex::new(Route::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Whether a subscriber's screen is the terminal stderr writes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Terminal {
    /// Notices stop going to stderr while the subscription lives (the TUI).
    Owned,
    /// stderr keeps its copy (a web page, a test).
    Shared,
}

/// Receives notices until dropped.
pub struct Subscription {
    id: u64,
    rx: mpsc::Receiver<Notice>,
}

impl Subscription {
    pub async fn recv(&mut self) -> Option<Notice> {
        self.rx.recv().await
    }

    pub fn try_recv(&mut self) -> Option<Notice> {
        self.rx.try_recv().ok()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        ROUTE
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(self.id);
    }
}

/// Starts receiving every notice emitted from now on; at most `capacity` wait unread.
pub fn subscribe(capacity: usize, terminal: Terminal) -> Subscription {
    ROUTE
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .add(capacity, terminal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_is_what_json_mode_has_always_printed() {
        let reloaded = Notice::RulesReloaded {
            summary: "3 rules from 1 file".into(),
            on_sighup: true,
        };
        assert_eq!(
            reloaded.to_string(),
            "rules reloaded: 3 rules from 1 file (on SIGHUP)"
        );
        let failed = Notice::RulesReloadFailed {
            error: "a.toml:2:3: expected a string".into(),
            kept: 46,
            on_sighup: false,
        };
        assert_eq!(
            failed.to_string(),
            "rules reload failed: a.toml:2:3: expected a string; keeping the previous 46 rules"
        );
        assert_eq!(Notice::Warning("x".into()).to_string(), "warning: x");
        assert!(failed.is_problem() && !reloaded.is_problem());
    }

    /// A route of the test's own (the process-wide one is shared by tests running at once),
    /// and what it printed on "stderr".
    fn deliver_all(route: &Route, notices: &[Notice]) -> String {
        let mut stderr = Vec::new();
        for notice in notices {
            route.deliver(notice, &mut stderr);
        }
        String::from_utf8_lossy(&stderr).into_owned()
    }

    #[test]
    fn subscribers_get_each_notice_and_stderr_keeps_its_copy() {
        let mut route = Route::new();
        let mut first = route.add(4, Terminal::Shared);
        let mut second = route.add(4, Terminal::Shared);
        let printed = deliver_all(&route, &[Notice::Info("one".into())]);
        assert_eq!(printed, "secmon: one\n");
        assert_eq!(first.try_recv(), Some(Notice::Info("one".into())));
        assert_eq!(second.try_recv(), Some(Notice::Info("one".into())));
        route.remove(second.id);
        deliver_all(&route, &[Notice::Warning("two".into())]);
        assert_eq!(first.try_recv(), Some(Notice::Warning("two".into())));
        assert_eq!(second.try_recv(), None);
    }

    #[test]
    fn a_subscriber_that_owns_the_terminal_keeps_notices_off_stderr() {
        let mut route = Route::new();
        let mut screen = route.add(4, Terminal::Owned);
        assert_eq!(deliver_all(&route, &[Notice::Info("quiet".into())]), "");
        assert_eq!(screen.try_recv(), Some(Notice::Info("quiet".into())));
        route.remove(screen.id);
        assert_eq!(
            deliver_all(&route, &[Notice::Info("loud".into())]),
            "secmon: loud\n"
        );
    }

    #[test]
    fn a_full_queue_loses_notices_instead_of_blocking() {
        let mut route = Route::new();
        let mut slow = route.add(1, Terminal::Shared);
        deliver_all(
            &route,
            &[Notice::Info("kept".into()), Notice::Info("lost".into())],
        );
        assert_eq!(slow.try_recv(), Some(Notice::Info("kept".into())));
        assert_eq!(slow.try_recv(), None);
    }

    #[test]
    fn dropping_a_subscription_unsubscribes_it() {
        let subscription = subscribe(1, Terminal::Shared);
        let id = subscription.id;
        drop(subscription);
        let route = ROUTE.lock().unwrap_or_else(PoisonError::into_inner);
        assert!(route.subscribers.iter().all(|s| s.id != id));
    }
}
