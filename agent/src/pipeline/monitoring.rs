//! Periodic hand-over of buffered monitoring points to the `monitoring_event` plugins.

use std::sync::Arc;
use std::time::Duration;

use super::{Job, Pipeline};
use crate::monitoring::PointBuffer;
use crate::shutdown::Shutdown;

/// Every `interval`, takes the buffered points and hands them, as one batch, to the
/// monitoring plugins; their messages are queued like any other. Flushes once more at
/// shutdown so the last points are not lost.
pub async fn run_monitoring_flusher(
    points: Arc<PointBuffer>,
    pipeline: Pipeline,
    interval: Duration,
    mut shutdown: Shutdown,
) {
    if !points.enabled() {
        return;
    }
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            _ = ticker.tick() => false,
            _ = shutdown.stopped() => true,
        };
        let batch = points.take();
        if !batch.is_empty() {
            pipeline
                .run_internal(Job::Monitoring(batch), "monitoring")
                .await;
        }
        if stopping || shutdown.is_stopping() {
            break;
        }
    }
}
