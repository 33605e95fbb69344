//! How long to wait before the next attempt to reach the controller: doubling from
//! [`FIRST`] to [`LONGEST`], back to the start once a connection held. A small random share
//! (up to a quarter) is added so that many terminals cut off by one restart do not all knock
//! at the same instant.
use std::time::Duration;

/// The first wait after a link drops.
pub const FIRST: Duration = Duration::from_millis(500);
/// The longest wait between attempts.
pub const LONGEST: Duration = Duration::from_secs(30);
/// The wait after the controller refused the token (it will not change by itself soon).
pub const UNAUTHORISED: Duration = LONGEST;

#[derive(Clone, Debug)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: FIRST }
    }
}

impl Backoff {
    /// The wait before the next attempt (without jitter), and doubles the one after it.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(LONGEST);
        delay
    }

    /// A connection held: the next drop starts from `FIRST` again.
    pub fn reset(&mut self) {
        self.next = FIRST;
    }
}

/// `delay` plus up to a quarter of it, from `random` (any u32).
pub fn with_jitter(delay: Duration, random: u32) -> Duration {
    let share = f64::from(random) / f64::from(u32::MAX) / 4.0;
    delay + delay.mul_f64(share)
}

/// A random u32 for [`with_jitter`] (0 when the system has none to give).
pub fn random_u32() -> u32 {
    let mut bytes = [0u8; 4];
    match getrandom::fill(&mut bytes) {
        Ok(()) => u32::from_ne_bytes(bytes),
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_longest_and_start_over_after_a_reset() {
        let mut backoff = Backoff::default();
        let waits: Vec<u64> = (0..9)
            .map(|_| backoff.next_delay().as_millis() as u64)
            .collect();
        assert_eq!(
            waits,
            [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        backoff.reset();
        assert_eq!(backoff.next_delay(), FIRST);
        assert_eq!(backoff.next_delay(), FIRST * 2);
    }

    #[test]
    fn jitter_adds_at_most_a_quarter() {
        let delay = Duration::from_secs(4);
        assert_eq!(with_jitter(delay, 0), delay);
        assert_eq!(with_jitter(delay, u32::MAX), Duration::from_secs(5));
        let mid = with_jitter(delay, u32::MAX / 2);
        assert!(mid > delay && mid < Duration::from_secs(5), "{mid:?}");
    }
}
