//! The kernel's time base: records carry CLOCK_MONOTONIC nanoseconds (`bpf_ktime_get_ns`), and
//! deny entries expire on the same clock. Here, with the capture, because both the capture
//! (deny expiries) and the enricher (event timestamps) read it.

use chrono::{DateTime, Utc};

/// Converts CLOCK_MONOTONIC (what `bpf_ktime_get_ns` returns) to wall-clock time.
#[derive(Clone, Copy, Debug)]
pub struct BootClock {
    /// Realtime minus monotonic, in nanoseconds, measured once at start.
    offset_ns: i128,
}

impl BootClock {
    pub fn now() -> BootClock {
        let realtime = clock_ns(libc::CLOCK_REALTIME);
        let monotonic = clock_ns(libc::CLOCK_MONOTONIC);
        BootClock {
            offset_ns: realtime - monotonic,
        }
    }

    pub fn to_wall(self, monotonic_ns: u64) -> DateTime<Utc> {
        let ns = i128::from(monotonic_ns) + self.offset_ns;
        DateTime::from_timestamp_nanos(i64::try_from(ns).unwrap_or(i64::MAX))
    }

    /// Current CLOCK_MONOTONIC time, the kernel's timestamp base.
    pub fn monotonic_now() -> u64 {
        u64::try_from(clock_ns(libc::CLOCK_MONOTONIC)).unwrap_or(0)
    }
}

fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec on the stack.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_converts_monotonic_to_now() {
        let clock = BootClock::now();
        let wall = clock.to_wall(BootClock::monotonic_now());
        let skew = (Utc::now() - wall).num_milliseconds().abs();
        assert!(skew < 1000, "skew {skew} ms");
    }
}
