//! What health and metrics show about a sink.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use crate::sync::LastError;

/// Connection state of a sink, as last observed by its delivery loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum SinkStatus {
    /// Nothing delivered or attempted yet.
    Idle = 0,
    /// The last attempt reached the remote side.
    Connected = 1,
    /// The last attempt failed; the loop is backing off.
    Disconnected = 2,
    /// Delivered messages cannot be deleted from the queue (its storage fails); the
    /// loop backs off and retries the deletes before sending anything else.
    Stalled = 3,
}

impl SinkStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SinkStatus::Idle => "idle",
            SinkStatus::Connected => "connected",
            SinkStatus::Disconnected => "disconnected",
            SinkStatus::Stalled => "stalled",
        }
    }
}

/// Live state and counters of one sink.
#[derive(Debug)]
pub struct SinkState {
    pub name: String,
    pub kind: &'static str,
    status: AtomicU8,
    delivered: AtomicU64,
    failures: AtomicU64,
    expired: AtomicU64,
    in_flight: AtomicU64,
    last_error: LastError,
}

impl SinkState {
    pub fn new(name: &str, kind: &'static str) -> Self {
        SinkState {
            name: name.to_owned(),
            kind,
            status: AtomicU8::new(SinkStatus::Idle as u8),
            delivered: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            expired: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            last_error: LastError::default(),
        }
    }

    pub fn status(&self) -> SinkStatus {
        match self.status.load(Ordering::Relaxed) {
            1 => SinkStatus::Connected,
            2 => SinkStatus::Disconnected,
            3 => SinkStatus::Stalled,
            _ => SinkStatus::Idle,
        }
    }

    /// The connection is up (MQTT CONNACK), whatever was delivered.
    pub(super) fn connected(&self) {
        self.status
            .store(SinkStatus::Connected as u8, Ordering::Relaxed);
    }

    /// The connection went down.
    pub(super) fn disconnected(&self, reason: &dyn std::fmt::Display) {
        self.status
            .store(SinkStatus::Disconnected as u8, Ordering::Relaxed);
        self.last_error.set(reason);
    }

    pub(super) fn delivered(&self, n: usize) {
        self.status
            .store(SinkStatus::Connected as u8, Ordering::Relaxed);
        self.delivered.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// The remote side answered, but refused the message for good.
    pub(super) fn refused(&self, reason: &dyn std::fmt::Display) {
        self.status
            .store(SinkStatus::Connected as u8, Ordering::Relaxed);
        self.last_error.set(reason);
    }

    pub(super) fn failed(&self, reason: &dyn std::fmt::Display) {
        self.status
            .store(SinkStatus::Disconnected as u8, Ordering::Relaxed);
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.last_error.set(reason);
    }

    /// Messages dropped because they were older than `max_age`.
    pub(super) fn expired(&self, n: usize) {
        self.expired.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Delivered messages could not be deleted. Returns whether this is news (the
    /// state changed), so it is logged once, not per attempt.
    pub(super) fn stalled(&self, reason: &dyn std::fmt::Display) -> bool {
        self.last_error.set(reason);
        let was = self
            .status
            .swap(SinkStatus::Stalled as u8, Ordering::Relaxed);
        was != SinkStatus::Stalled as u8
    }

    /// Deletes work again. Returns whether the sink was stalled.
    pub(super) fn unstalled(&self) -> bool {
        self.status
            .compare_exchange(
                SinkStatus::Stalled as u8,
                SinkStatus::Connected as u8,
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_ok()
    }

    pub(super) fn set_in_flight(&self, n: u64) {
        self.in_flight.store(n, Ordering::Relaxed);
    }

    pub fn delivered_total(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }
    pub fn failures_total(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
    pub fn expired_total(&self) -> u64 {
        self.expired.load(Ordering::Relaxed)
    }
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }
    pub fn last_error(&self) -> Option<String> {
        self.last_error.get()
    }
}
