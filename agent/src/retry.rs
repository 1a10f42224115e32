//! The one retry policy of sinks and sources: exponential backoff with jitter and a cap.

use std::time::Duration;

use crate::config::RetryConfig;

/// Backoff state of one sink or source: grows on each failure, resets on success.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(config: &RetryConfig) -> Self {
        Backoff {
            initial: config.initial,
            max: config.max,
            attempt: 0,
        }
    }

    /// The delay before the next attempt: `initial * 2^n`, capped at `max`, of which a
    /// random half is jitter ("equal jitter"), so devices that lost the same uplink do
    /// not all retry in lock-step when it comes back.
    pub fn next_delay(&mut self) -> Duration {
        let factor = 1u32 << self.attempt.min(20);
        let ceiling = self.initial.saturating_mul(factor).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = ceiling / 2;
        let jitter_ms = fastrand::u64(0..=half.as_millis() as u64);
        half + Duration::from_millis(jitter_ms)
    }

    /// Back to the initial delay (after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Failures since the last success.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backoff(initial_ms: u64, max_ms: u64) -> Backoff {
        Backoff::new(&RetryConfig {
            initial: Duration::from_millis(initial_ms),
            max: Duration::from_millis(max_ms),
        })
    }

    #[test]
    fn grows_exponentially_within_jitter_bounds() {
        let mut b = backoff(100, 1_000_000);
        for n in 0..8u32 {
            let ceiling = Duration::from_millis(100 * (1 << n));
            let d = b.next_delay();
            assert!(
                d >= ceiling / 2 && d <= ceiling,
                "attempt {n}: {d:?} vs {ceiling:?}"
            );
        }
    }

    #[test]
    fn capped_and_resettable() {
        let mut b = backoff(100, 1_000);
        for _ in 0..100 {
            assert!(b.next_delay() <= Duration::from_millis(1_000));
        }
        assert!(
            b.next_delay() >= Duration::from_millis(500),
            "stays near the cap"
        );
        b.reset();
        assert_eq!(b.attempts(), 0);
        assert!(b.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn jitter_spreads_delays() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..50 {
            let mut b = backoff(1000, 1000);
            seen.insert(b.next_delay());
        }
        assert!(seen.len() > 1, "no jitter");
    }
}
