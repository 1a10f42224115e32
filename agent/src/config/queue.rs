//! `[queue]`: how much the durable queue may hold, and what happens when it is full.

use serde::{Deserialize, Deserializer};

/// What to do when the queue reaches `max_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Refuse new requests with 507: the producer keeps its data.
    Reject,
    /// Drop the oldest queued messages (counted) to make room.
    DropOldest,
}

/// `[queue]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Cap of the queued messages' bytes.
    #[serde(deserialize_with = "at_least_4k")]
    pub max_bytes: u64,
    pub when_full: WhenFull,
    /// sled page cache; small by default for 512 MB boards.
    pub cache_mb: u64,
    /// Free space kept on the data dir's filesystem: below it new work gets 507.
    /// Default: 5 % of the filesystem or 64 MiB, whichever is smaller.
    pub min_free_bytes: Option<u64>,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            max_bytes: 512 << 20,
            when_full: WhenFull::Reject,
            cache_mb: 8,
            min_free_bytes: None,
        }
    }
}

fn at_least_4k<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match u64::deserialize(d)? {
        n if n < 4096 => Err(serde::de::Error::custom("must be at least 4096")),
        n => Ok(n),
    }
}
