//! `[queue]`: how much the durable queue may hold, what happens when it is full, and
//! when a producer's answer comes relative to the disk.

use std::time::Duration;

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

/// When a producer's 202 comes, relative to the disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    /// After the `fdatasync` of the group commit that wrote the messages: a 202 survives
    /// a power cut.
    #[default]
    Always,
    /// Once the messages are written to the operating system; an `fdatasync` follows
    /// within `sync_interval_ms`. A crash or `kill -9` loses nothing; a power cut can
    /// lose what was accepted in the last interval (Fluent Bit's and Vector's way).
    Interval,
}

impl SyncMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncMode::Always => "always",
            SyncMode::Interval => "interval",
        }
    }
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
    /// When a 202 comes: after the disk sync (default), or before it.
    pub sync: SyncMode,
    /// With `sync = "interval"`: how often accepted messages are synced to disk.
    #[serde(
        rename = "sync_interval_ms",
        deserialize_with = "super::de::positive_millis"
    )]
    pub sync_interval: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            max_bytes: 512 << 20,
            when_full: WhenFull::Reject,
            cache_mb: 8,
            min_free_bytes: None,
            sync: SyncMode::Always,
            sync_interval: Duration::from_millis(100),
        }
    }
}

fn at_least_4k<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match u64::deserialize(d)? {
        n if n < 4096 => Err(serde::de::Error::custom("must be at least 4096")),
        n => Ok(n),
    }
}
