//! The one retry policy: capped exponential backoff with jitter.
//!
//! Attempt `n` (from 0) waits `min(max, base · 2^n)`, scaled by a jitter factor in
//! `[0.5, 1.0)` so that many clients retrying the same server spread out.

use std::time::Duration;

/// A retry policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The first delay.
    pub base: Duration,
    /// The longest delay.
    pub max: Duration,
    /// How many retries before giving up.
    pub retries: u32,
}

impl Backoff {
    /// Retries for interactive commands: 5 tries over about 3 seconds.
    pub const COMMAND: Backoff = Backoff {
        base: Duration::from_millis(100),
        max: Duration::from_secs(2),
        retries: 5,
    };

    /// Retries for daemons following peers: up to 5 minutes apart, forever.
    pub const FOLLOW: Backoff = Backoff {
        base: Duration::from_secs(1),
        max: Duration::from_secs(300),
        retries: u32::MAX,
    };

    /// The delay before retry `attempt`, or `None` when retries are used up. `random` is any
    /// uniformly random number; it only sets the jitter.
    pub fn delay(&self, attempt: u32, random: u64) -> Option<Duration> {
        if attempt >= self.retries {
            return None;
        }
        let exp = self
            .base
            .saturating_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX));
        let capped = exp.min(self.max);
        let jitter = 0.5 + (random % 1000) as f64 / 2000.0;
        Some(capped.mul_f64(jitter))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_caps_jitters_and_ends() {
        let b = Backoff::COMMAND;
        assert_eq!(b.delay(0, 999), Some(Duration::from_micros(99_950)));
        assert_eq!(b.delay(0, 0), Some(Duration::from_millis(50)));
        assert_eq!(b.delay(2, 0), Some(Duration::from_millis(200)));
        assert_eq!(b.delay(4, 0), Some(Duration::from_millis(800)));
        let capped = Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(2),
            retries: 9,
        };
        assert_eq!(
            capped.delay(5, 0),
            Some(Duration::from_secs(1)),
            "capped at 2 s, halved by jitter"
        );
        assert_eq!(b.delay(5, 0), None);
        assert!(Backoff::FOLLOW.delay(1000, 0).is_some());
        assert!(Backoff::FOLLOW.delay(1000, 0).unwrap() <= Duration::from_secs(300));
    }
}
