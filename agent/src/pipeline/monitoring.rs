//! Periodic hand-over of buffered monitoring points to the `monitoring_event` plugins.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{Job, Pipeline};
use crate::monitoring::PointBuffer;

/// Every `interval`, takes the buffered points and hands them, as one batch, to the
/// monitoring plugins; their messages are queued like any other. Flushes once more at
/// shutdown so the last points are not lost.
pub async fn run_monitoring_flusher(
    points: Arc<PointBuffer>,
    pipeline: Pipeline,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    if !points.enabled() {
        return;
    }
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            _ = ticker.tick() => false,
            _ = shutdown.changed() => true,
        };
        let batch = points.take();
        if !batch.is_empty() {
            pipeline
                .run_internal(Job::Monitoring(batch), "monitoring")
                .await;
        }
        if stopping || *shutdown.borrow() {
            break;
        }
    }
}
