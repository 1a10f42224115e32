//! Periodic hand-over of buffered monitoring points to the `monitoring_event` plugins.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::Pipeline;
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
        flush(&points, &pipeline).await;
        if stopping || *shutdown.borrow() {
            break;
        }
    }
}

async fn flush(points: &PointBuffer, pipeline: &Pipeline) {
    let batch = points.take();
    if batch.is_empty() {
        return;
    }
    let pl = pipeline.clone();
    let inserted = tokio::task::spawn_blocking(move || {
        let messages = pl.plugins.monitoring_event(&batch);
        pl.insert(messages, None)
    })
    .await
    .expect("monitoring task panicked");
    match inserted {
        Ok(inserted) => {
            if let Err(e) = pipeline.commit(inserted).await {
                tracing::error!(error = %e, "monitoring messages not committed");
            }
        }
        Err(e) => {
            pipeline.count_internal_drop();
            tracing::warn!(error = %e, "monitoring messages dropped");
        }
    }
}
