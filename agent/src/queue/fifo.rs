//! One sink's FIFO: its keys in the pending tree, its counters, and the wake-up of its
//! delivery loop. A key is `<sink>\0<seq: u64 BE>`, so a sink's messages are a
//! key-ordered prefix and one request's messages for several sinks can share a batch.

use std::sync::atomic::{AtomicU64, Ordering};

use outpost_pdk::SinkName;
use tokio::sync::Notify;

/// One sink's FIFO.
#[derive(Debug)]
pub struct SinkQueue {
    pub name: SinkName,
    prefix: Vec<u8>,
    depth: AtomicU64,
    bytes: AtomicU64,
    dead: AtomicU64,
    dropped_full: AtomicU64,
    notify: Notify,
}

impl SinkQueue {
    pub(super) fn new(name: &str) -> Self {
        let mut prefix = name.as_bytes().to_vec();
        prefix.push(0);
        SinkQueue {
            name: SinkName::from(name),
            prefix,
            depth: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            dead: AtomicU64::new(0),
            dropped_full: AtomicU64::new(0),
            notify: Notify::new(),
        }
    }

    /// The key prefix of this sink's messages.
    pub(super) fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    /// The key of message `seq`.
    pub(super) fn key(&self, seq: u64) -> Vec<u8> {
        let mut key = Vec::with_capacity(self.prefix.len() + 8);
        key.extend_from_slice(&self.prefix);
        key.extend_from_slice(&seq.to_be_bytes());
        key
    }

    /// Messages waiting.
    pub fn depth(&self) -> u64 {
        self.depth.load(Ordering::Relaxed)
    }
    /// Bytes waiting (keys, encoded records and payloads).
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
    /// Messages in the dead-letter tree.
    pub fn dead_letters(&self) -> u64 {
        self.dead.load(Ordering::Relaxed)
    }
    /// Messages dropped by `when_full = "drop_oldest"`.
    pub fn dropped_full(&self) -> u64 {
        self.dropped_full.load(Ordering::Relaxed)
    }
    /// Resolves when new messages were committed (a permit is kept if nobody waits).
    pub async fn wait_for_messages(&self) {
        self.notify.notified().await
    }

    pub(super) fn notify(&self) {
        self.notify.notify_one();
    }

    pub(super) fn added(&self, bytes: u64) {
        self.depth.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(super) fn removed(&self, bytes: u64) {
        self.depth.fetch_sub(1, Ordering::Relaxed);
        self.bytes.fetch_sub(bytes, Ordering::Relaxed);
    }

    pub(super) fn dead_added(&self, n: u64) {
        self.dead.fetch_add(n, Ordering::Relaxed);
    }

    pub(super) fn dead_removed(&self, n: u64) {
        self.dead
            .fetch_sub(n.min(self.dead_letters()), Ordering::Relaxed);
    }

    pub(super) fn dropped(&self) {
        self.dropped_full.fetch_add(1, Ordering::Relaxed);
    }

    /// Zeroes the counters rebuilt from disk (at open, and after a reopen).
    pub(super) fn reset(&self) {
        self.depth.store(0, Ordering::Relaxed);
        self.bytes.store(0, Ordering::Relaxed);
        self.dead.store(0, Ordering::Relaxed);
    }
}

/// The sink name of a key.
pub(super) fn sink_name_of_key(key: &[u8]) -> String {
    let end = key.iter().position(|&b| b == 0).unwrap_or(key.len());
    String::from_utf8_lossy(&key[..end]).into_owned()
}

/// The sequence number of a key.
pub(super) fn seq_of_key(key: &[u8]) -> u64 {
    key.len()
        .checked_sub(8)
        .and_then(|start| key[start..].try_into().ok())
        .map_or(0, u64::from_be_bytes)
}
