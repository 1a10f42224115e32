//! Periodic hand-over of buffered monitoring points to the `monitoring_event` plugins.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::monitoring::PointBuffer;
use crate::plugin::PluginHost;
use crate::queue::Queue;

/// Every `interval`, takes the buffered points and hands them, as one batch, to the
/// monitoring plugins; their messages are queued like any other. Flushes once more at
/// shutdown so the last points are not lost.
pub async fn run_monitoring_flusher(
    points: Arc<PointBuffer>,
    plugins: Arc<PluginHost>,
    queue: Arc<Queue>,
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
        flush(&points, &plugins, &queue).await;
        if stopping || *shutdown.borrow() {
            break;
        }
    }
}

async fn flush(points: &PointBuffer, plugins: &Arc<PluginHost>, queue: &Arc<Queue>) {
    let batch = points.take();
    if batch.is_empty() {
        return;
    }
    let (plugins, q) = (Arc::clone(plugins), Arc::clone(queue));
    let inserted = tokio::task::spawn_blocking(move || {
        let messages = plugins.monitoring_event(&batch);
        q.insert(&messages)
    })
    .await
    .expect("monitoring task panicked");
    match inserted {
        Ok(inserted) => {
            if let Err(e) = queue.commit(inserted).await {
                tracing::error!(error = %e, "monitoring messages not committed");
            }
        }
        Err(e) => tracing::warn!(error = %e, "monitoring messages dropped"),
    }
}
