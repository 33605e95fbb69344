//! A stop that always ends: one time budget shared by every step of a shutdown (the last
//! drain of the ring, the response layer, detaching the programs, the history), so that a
//! flood, a slow kernel detach, a locked database or a stalled consumer can delay a stop by
//! at most [`STOP_BUDGET`]. Each step that runs out of time is named in the `stopped` line.
use std::time::{Duration, Instant};

/// The longest a stop may take, from the request (signal, `--duration`, `q`) to exit.
pub const STOP_BUDGET: Duration = Duration::from_secs(5);

/// Time left for a shutdown, and what had to be cut short.
#[derive(Debug)]
pub struct StopBudget {
    deadline: Instant,
    cut_short: Vec<String>,
}

impl StopBudget {
    /// A budget of [`STOP_BUDGET`] from now.
    pub fn start() -> StopBudget {
        StopBudget::with_limit(STOP_BUDGET)
    }

    pub fn with_limit(limit: Duration) -> StopBudget {
        StopBudget {
            deadline: Instant::now() + limit,
            cut_short: Vec::new(),
        }
    }

    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// How long a step may take: at most `limit`, and no more than what is left once
    /// `reserve` is kept for the steps after it.
    pub fn step(&self, limit: Duration, reserve: Duration) -> Duration {
        self.remaining().saturating_sub(reserve).min(limit)
    }

    /// Notes a step that ran out of time (`what` completes "cut short: …").
    pub fn cut_short(&mut self, what: impl Into<String>) {
        self.cut_short.push(what.into());
    }

    /// What was cut short, in order.
    pub fn into_cut_short(self) -> Vec<String> {
        self.cut_short
    }
}

/// Drops `value` on a thread of its own and waits at most `limit` for the drop to finish.
/// Returns false when it did not: the drop goes on in the background (and ends with the
/// process at the latest). Detaching programs waits for the kernel, which under load can
/// take longer than a stop should.
pub fn drop_within<T: Send + 'static>(value: T, name: &str, limit: Duration) -> bool {
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            drop(value);
            let _ = done_tx.send(());
        });
    match spawned {
        Ok(_) => done_rx.recv_timeout(limit).is_ok(),
        // No thread (out of pids): the closure, and `value` with it, was dropped here.
        Err(_) => true,
    }
}

/// The `stopped` line's ending: empty, or `; cut short: a, b`.
pub fn cut_short_suffix(cut_short: &[String]) -> String {
    if cut_short.is_empty() {
        String::new()
    } else {
        format!("; cut short: {}", cut_short.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_keeps_the_reserve_and_its_own_limit() {
        let budget = StopBudget::with_limit(Duration::from_secs(5));
        let step = budget.step(Duration::from_secs(2), Duration::from_secs(1));
        assert!(step <= Duration::from_secs(2) && step > Duration::from_millis(1900));
        let step = budget.step(Duration::from_secs(10), Duration::from_secs(1));
        assert!(step <= Duration::from_secs(4) && step > Duration::from_millis(3900));
        let spent = StopBudget::with_limit(Duration::ZERO);
        assert_eq!(
            spent.step(Duration::from_secs(2), Duration::ZERO),
            Duration::ZERO
        );
    }

    #[test]
    fn a_slow_drop_is_not_waited_for() {
        /// Its drop blocks until the test lets it go.
        struct Blocked(std::sync::mpsc::Receiver<()>);
        impl Drop for Blocked {
            fn drop(&mut self) {
                let _ = self.0.recv();
            }
        }
        let (release, blocked) = std::sync::mpsc::channel();
        assert!(!drop_within(
            Blocked(blocked),
            "blocked-drop",
            Duration::from_millis(50)
        ));
        release.send(()).expect("the drop thread still waits");
        assert!(drop_within(
            String::new(),
            "quick-drop",
            Duration::from_secs(60)
        ));
    }

    #[test]
    fn the_suffix_names_each_step() {
        assert_eq!(cut_short_suffix(&[]), "");
        let cut = vec![
            "history (12 events not stored)".to_string(),
            "detach".to_string(),
        ];
        assert_eq!(
            cut_short_suffix(&cut),
            "; cut short: history (12 events not stored), detach"
        );
    }
}
