//! What health and `/metrics` show of a source.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use crate::sync::LastError;

/// A source's connection, as its loop last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum SourceStatus {
    /// Connecting and subscribing (at start, or again after a failure).
    Connecting = 0,
    /// Receiving.
    Connected = 1,
    /// The connection failed; the loop waits its backoff before connecting again.
    Disconnected = 2,
}

impl SourceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceStatus::Connecting => "connecting",
            SourceStatus::Connected => "connected",
            SourceStatus::Disconnected => "disconnected",
        }
    }
}

/// Live state and counters of one source.
#[derive(Debug)]
pub struct SourceState {
    /// `mqtt`, `redis` or `amqp`.
    pub kind: &'static str,
    status: AtomicU8,
    /// Messages taken from the source.
    pub received: AtomicU64,
    /// Acknowledged to the source once what their plugin made of them was durable.
    pub acked: AtomicU64,
    /// Refused by their plugin (or not an event): handed back the source's way
    /// (acknowledged and dropped, moved to a dead key, rejected to a dead-letter
    /// exchange), counted here.
    pub rejected: AtomicU64,
    /// Received again after an earlier delivery that was not acknowledged (a crash,
    /// a lost connection, a claim of a dead consumer's entries).
    pub redelivered: AtomicU64,
    /// Received but not stored, where the source cannot keep a message (Redis pub/sub
    /// while the queue refuses work).
    pub dropped: AtomicU64,
    last_error: LastError,
}

impl SourceState {
    pub fn new(kind: &'static str) -> SourceState {
        SourceState {
            kind,
            status: AtomicU8::new(SourceStatus::Connecting as u8),
            received: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            redelivered: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            last_error: LastError::default(),
        }
    }

    pub fn status(&self) -> SourceStatus {
        match self.status.load(Ordering::Relaxed) {
            1 => SourceStatus::Connected,
            2 => SourceStatus::Disconnected,
            _ => SourceStatus::Connecting,
        }
    }

    pub(super) fn set_status(&self, status: SourceStatus) {
        self.status.store(status as u8, Ordering::Relaxed);
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.get()
    }

    pub(super) fn failed(&self, error: &dyn std::fmt::Display) {
        self.last_error.set(error);
    }

    pub(super) fn count(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}
