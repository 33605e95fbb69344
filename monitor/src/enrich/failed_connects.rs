//! Failed connects, counted so that a port scan stays a handful of events.
//!
//! A scanner (or a reverse shell retrying a listener that is gone) fails thousands of connects
//! a second. Each failure is counted per process and destination address over a window of
//! [`WINDOW_NS`]; an event is reported for the 1st, 10th, 100th, 1,000th... failure of the
//! window, each carrying the count so far (`attempts`). A scan of all 65,535 ports of one
//! address is then at most 5 events per window, a rule can say "10 or more" and still match,
//! and the first failure is reported at once. The tally is bounded: past [`MAX_KEYS`] pairs,
//! the oldest window is forgotten.
use std::net::IpAddr;

use rustc_hash::FxHashMap;

/// How long one window of failures lasts, from its first failure.
pub const WINDOW_NS: u64 = 10_000_000_000;

/// Process–address pairs counted at once, at most.
pub const MAX_KEYS: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Window {
    started_ns: u64,
    attempts: u64,
}

/// Failures per (pid, destination address).
#[derive(Debug, Default)]
pub struct FailedConnects {
    windows: FxHashMap<(u32, IpAddr), Window>,
}

impl FailedConnects {
    /// Counts a failure of `pid` to reach `addr` at `now_ns`. Returns the failures of the
    /// window so far when this one is to be reported, `None` when it is only counted.
    pub fn count(&mut self, pid: u32, addr: IpAddr, now_ns: u64) -> Option<u64> {
        if !self.windows.contains_key(&(pid, addr)) && self.windows.len() >= MAX_KEYS {
            self.forget_oldest();
        }
        let window = self.windows.entry((pid, addr)).or_insert(Window {
            started_ns: now_ns,
            attempts: 0,
        });
        if now_ns.saturating_sub(window.started_ns) >= WINDOW_NS {
            *window = Window {
                started_ns: now_ns,
                attempts: 0,
            };
        }
        window.attempts += 1;
        is_reported(window.attempts).then_some(window.attempts)
    }

    /// Forgets the pairs of a process that exited.
    pub fn forget_process(&mut self, pid: u32) {
        if !self.windows.is_empty() {
            self.windows.retain(|&(p, _), _| p != pid);
        }
    }

    pub fn len(&self) -> usize {
        self.windows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }

    fn forget_oldest(&mut self) {
        if let Some(oldest) = self
            .windows
            .iter()
            .min_by_key(|(_, w)| w.started_ns)
            .map(|(key, _)| *key)
        {
            self.windows.remove(&oldest);
        }
    }
}

/// 1, 10, 100, 1,000...: the counts at which a failure is reported.
fn is_reported(attempts: u64) -> bool {
    let mut n = attempts;
    while n >= 10 && n.is_multiple_of(10) {
        n /= 10;
    }
    n == 1
}

/// The name of a connect errno, for `error`; `None` for 0 (not known).
pub fn errno_name(errno: i32) -> Option<String> {
    let name = match errno {
        0 => return None,
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::EHOSTUNREACH => "EHOSTUNREACH",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::ECONNRESET => "ECONNRESET",
        libc::ECONNABORTED => "ECONNABORTED",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        libc::EACCES => "EACCES",
        libc::EPERM => "EPERM",
        libc::ENETDOWN => "ENETDOWN",
        libc::EHOSTDOWN => "EHOSTDOWN",
        libc::EPROTO => "EPROTO",
        other => return Some(format!("errno {other}")),
    };
    Some(name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn a_scan_of_every_port_is_a_handful_of_events() {
        let mut failed = FailedConnects::default();
        let reported: Vec<u64> = (0..65_535u64)
            .filter_map(|i| failed.count(7, LOCAL, i * 1000))
            .collect();
        assert_eq!(reported, [1, 10, 100, 1_000, 10_000]);
    }

    #[test]
    fn a_new_window_starts_counting_again() {
        let mut failed = FailedConnects::default();
        assert_eq!(failed.count(7, LOCAL, 0), Some(1));
        assert_eq!(failed.count(7, LOCAL, 1), None);
        assert_eq!(failed.count(7, LOCAL, WINDOW_NS), Some(1));
        // Another process, or another address, has its own count.
        assert_eq!(failed.count(8, LOCAL, WINDOW_NS), Some(1));
        let other: IpAddr = "10.0.0.1".parse().unwrap_or(LOCAL);
        assert_eq!(failed.count(7, other, WINDOW_NS), Some(1));
        failed.forget_process(7);
        assert_eq!(failed.len(), 1);
    }

    #[test]
    fn the_tally_is_bounded() {
        let mut failed = FailedConnects::default();
        for pid in 0..(MAX_KEYS as u32 + 100) {
            assert_eq!(failed.count(pid, LOCAL, u64::from(pid)), Some(1));
        }
        assert_eq!(failed.len(), MAX_KEYS);
        // The oldest went first.
        assert_eq!(failed.count(0, LOCAL, 1_000_000), Some(1));
    }

    #[test]
    fn errnos_are_named() {
        assert_eq!(errno_name(0), None);
        assert_eq!(
            errno_name(libc::ECONNREFUSED).as_deref(),
            Some("ECONNREFUSED")
        );
        assert_eq!(errno_name(9999).as_deref(), Some("errno 9999"));
    }
}
