//! Wall-clock time in the forms the agent stores and sends: Unix milliseconds (queue
//! records), Unix nanoseconds (monitoring points) and RFC 3339 (event times).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Where "now" comes from for decisions that depend on the wall clock (a message's age
/// against `max_age`): the system's clock, or one a test sets.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> u64 + Send + Sync>);

impl Clock {
    /// The system's wall clock.
    pub fn system() -> Clock {
        Clock(Arc::new(now_ms))
    }

    /// A clock that reads `now_ms` (in Unix milliseconds).
    pub fn from_fn(now_ms: impl Fn() -> u64 + Send + Sync + 'static) -> Clock {
        Clock(Arc::new(now_ms))
    }

    /// Milliseconds since the Unix epoch, by this clock.
    pub fn now_ms(&self) -> u64 {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    since_epoch(SystemTime::now()).as_millis() as u64
}

/// Nanoseconds since the Unix epoch, as monitoring points carry them.
pub fn now_ns() -> i64 {
    since_epoch(SystemTime::now()).as_nanos() as i64
}

/// `t` as RFC 3339 with milliseconds, UTC.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

fn since_epoch(t: SystemTime) -> std::time::Duration {
    t.duration_since(UNIX_EPOCH).unwrap_or_default()
}
