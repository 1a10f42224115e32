//! `retry = { initial_ms, max_ms }`: the backoff of sinks and sources.

use std::time::Duration;

use serde::Deserialize;

/// Exponential backoff with jitter while a remote side is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RetrySection")]
pub struct RetryConfig {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(30),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RetrySection {
    #[serde(default = "initial_ms")]
    initial_ms: u64,
    #[serde(default = "max_ms")]
    max_ms: u64,
}

fn initial_ms() -> u64 {
    200
}
fn max_ms() -> u64 {
    30_000
}

impl TryFrom<RetrySection> for RetryConfig {
    type Error = &'static str;
    fn try_from(r: RetrySection) -> Result<Self, Self::Error> {
        if r.initial_ms == 0 || r.max_ms < r.initial_ms {
            return Err("need 0 < initial_ms <= max_ms");
        }
        Ok(RetryConfig {
            initial: Duration::from_millis(r.initial_ms),
            max: Duration::from_millis(r.max_ms),
        })
    }
}
