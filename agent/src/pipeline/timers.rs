//! Timer plugins: `tick` on each plugin's interval. A plugin's ticks never overlap: the
//! next interval starts when the previous tick finished, so a slow tick delays the next
//! one instead of piling up calls.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{Pipeline, PipelineError};
use crate::plugin::LoadedPlugin;

/// Starts one task per timer plugin.
pub fn start_timers(pipeline: &Pipeline, shutdown: &watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
    pipeline
        .plugins
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

async fn run_timer(
    plugin: Arc<LoadedPlugin>,
    pipeline: Pipeline,
    mut shutdown: watch::Receiver<bool>,
) {
    let interval = plugin.timer().expect("timer plugin");
    tracing::info!(plugin = %plugin.name, ?interval, "timer started");
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => break,
        }
        let (p, pl) = (Arc::clone(&plugin), pipeline.clone());
        let inserted = tokio::task::spawn_blocking(move || {
            let messages = pl.plugins.tick(&p)?;
            Ok::<_, PipelineError>(pl.insert(messages, None)?)
        })
        .await
        .expect("tick task panicked");
        match inserted {
            Ok(inserted) => {
                if let Err(e) = pipeline.commit(inserted).await {
                    tracing::error!(plugin = %plugin.name, error = %e, "tick messages not committed");
                }
            }
            Err(PipelineError::Queue(e)) => {
                pipeline.count_internal_drop();
                tracing::warn!(plugin = %plugin.name, error = %e, "tick output dropped");
            }
            // Already counted and logged by the plugin host.
            Err(PipelineError::Plugin(_)) => {}
        }
    }
}
