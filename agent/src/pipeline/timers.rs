//! Timer plugins: `tick` on each plugin's interval. A plugin's ticks never overlap: the
//! next interval starts when the previous tick finished, so a slow tick delays the next
//! one instead of piling up calls.

use std::sync::Arc;

use tokio::task::JoinHandle;

use super::{Job, Pipeline};
use crate::plugin::LoadedPlugin;
use crate::shutdown::Shutdown;

/// Starts one task per timer plugin.
pub fn start_timers(pipeline: &Pipeline, shutdown: &Shutdown) -> Vec<JoinHandle<()>> {
    pipeline
        .plugins()
        .plugins()
        .iter()
        .filter(|p| p.timer().is_some())
        .map(|plugin| {
            tokio::spawn(run_timer(
                Arc::clone(plugin),
                pipeline.clone(),
                shutdown.clone(),
            ))
        })
        .collect()
}

async fn run_timer(plugin: Arc<LoadedPlugin>, pipeline: Pipeline, mut shutdown: Shutdown) {
    let Some(interval) = plugin.timer() else {
        return;
    };
    tracing::info!(plugin = %plugin.name, ?interval, "timer started");
    while !shutdown.sleep(interval).await {
        pipeline
            .run_internal(Job::Tick(Arc::clone(&plugin)), "timer")
            .await;
    }
}
