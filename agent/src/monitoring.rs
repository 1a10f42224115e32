//! The agent's own monitoring points (the seed's `requests` and `errors` series, plus
//! per-plugin call durations), buffered and handed to `monitoring_event` plugins in
//! batches, never one call per point.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::sync;
use outpost_pdk::Point;

/// Points waiting for the next flush. Bounded: past `capacity`, new points are dropped
/// and counted rather than growing without limit while plugins are slow.
pub struct PointBuffer {
    enabled: AtomicBool,
    points: Mutex<Vec<Point>>,
    capacity: usize,
    dropped: AtomicU64,
    service: String,
}

impl PointBuffer {
    pub fn new(service: &str, capacity: usize) -> Self {
        PointBuffer {
            enabled: AtomicBool::new(false),
            points: Mutex::new(Vec::new()),
            capacity,
            dropped: AtomicU64::new(0),
            service: service.to_owned(),
        }
    }

    /// Points are only made when some plugin consumes them.
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
    }

    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Adds points (no-op when disabled).
    pub fn extend(&self, points: impl IntoIterator<Item = Point>) {
        if !self.enabled() {
            return;
        }
        let mut buf = sync::lock(&self.points);
        for p in points {
            if buf.len() >= self.capacity {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            } else {
                buf.push(p);
            }
        }
    }

    /// Takes everything buffered.
    pub fn take(&self) -> Vec<Point> {
        std::mem::take(&mut *sync::lock(&self.points))
    }

    /// Points dropped because the buffer was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The `requests` point of one HTTP request, and its `errors` point if it failed.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        status: u16,
        error_code: Option<&str>,
        request_id: &str,
        elapsed: Duration,
    ) {
        if !self.enabled() {
            return;
        }
        let time = crate::clock::now_ns();
        let route = format!("{method}:{path}");
        let base = |series: &str| {
            Point::new(series, time)
                .tag("service", self.service.as_str())
                .tag("route", route.as_str())
                .tag("status_code", status.to_string())
                .field("request_id", request_id)
                .field("execution_time", elapsed.as_secs_f64())
        };
        let mut points = vec![base("requests")];
        if status >= 400 {
            points.push(base("errors").tag("error_code", error_code.unwrap_or("http_error")));
        }
        self.extend(points);
    }

    /// A `plugin_calls` point: which plugin, which callback, how it went, how long.
    pub fn plugin_call(&self, plugin: &str, callback: &str, outcome: &str, elapsed: Duration) {
        if !self.enabled() {
            return;
        }
        self.extend([Point::new("plugin_calls", crate::clock::now_ns())
            .tag("service", self.service.as_str())
            .tag("plugin", plugin)
            .tag("callback", callback)
            .tag("outcome", outcome)
            .field("duration_us", elapsed.as_micros() as u64)]);
    }
}
