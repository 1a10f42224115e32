//! The one retry policy of sinks and sources: exponential backoff with jitter and a cap,
//! and the one way a connection is taken up again after it failed ([`Reconnect`]).

use std::fmt::Display;
use std::time::Duration;

use crate::config::RetryConfig;
use crate::shutdown::Shutdown;

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

/// How every connection (an MQTT sink's, a source's) comes back after a failure: the
/// failure is logged with the delay, the delay grows with each failure in a row, and a
/// connection that worked resets it.
#[derive(Debug)]
pub struct Reconnect {
    backoff: Backoff,
    /// What is connecting, for the log: e.g. "MQTT sink `cloud`".
    what: String,
}

impl Reconnect {
    pub fn new(config: &RetryConfig, what: String) -> Self {
        Reconnect {
            backoff: Backoff::new(config),
            what,
        }
    }

    /// The connection is up and trusted: the next failure waits the initial delay
    /// again.
    pub fn connected(&mut self) {
        self.worked();
        self.up();
    }

    /// The connection is up (logged), not yet trusted: a failure that always follows
    /// the connect (a command the server refuses) must not retry at the initial delay
    /// forever. [`worked`](Self::worked) resets the backoff once it did its job.
    pub fn up(&self) {
        tracing::info!(what = %self.what, "connected");
    }

    /// The connection did its job: the next failure waits the initial delay again.
    pub fn worked(&mut self) {
        self.backoff.reset();
    }

    /// The connection failed: logs why and waits the backoff before the caller tries
    /// again. True if the agent is stopping (do not try again).
    pub async fn failed(&mut self, error: &(dyn Display + Sync), shutdown: &mut Shutdown) -> bool {
        let delay = self.failure(error);
        shutdown.sleep(delay).await
    }

    /// The connection failed: logs why and returns the backoff to wait, for a caller
    /// with work of its own to do while it waits.
    pub fn failure(&mut self, error: &(dyn Display + Sync)) -> Duration {
        let delay = self.backoff.next_delay();
        tracing::warn!(what = %self.what, %error, retry_in = ?delay, "connection failed");
        delay
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
