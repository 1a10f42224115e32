//! The producers inside the agent — timer plugins, MQTT sources and the monitoring
//! flusher — started together for one plugin set and stopped together when a reload
//! brings another.

use std::sync::Arc;

use tokio::task::JoinHandle;

use crate::config::Config;
use crate::monitoring::PointBuffer;
use crate::pipeline::{run_monitoring_flusher, start_timers, Pipeline};
use crate::shutdown::Stopper;
use crate::sources::{SourceError, SourceStates};

/// Running producers and their stop signal.
pub(super) struct Producers {
    stop: Stopper,
    tasks: Vec<JoinHandle<()>>,
    pub sources: SourceStates,
}

impl Producers {
    /// Starts the timers of the pipeline's plugins, the configured sources and the
    /// monitoring flusher.
    pub fn start(
        config: &Config,
        pipeline: &Pipeline,
        points: &Arc<PointBuffer>,
    ) -> Result<Producers, SourceError> {
        let (stop, stopped) = Stopper::new();
        let mut tasks = start_timers(pipeline, &stopped);
        let (sources, source_tasks) = crate::sources::start(config, pipeline, &stopped)?;
        tasks.extend(source_tasks);
        tasks.push(tokio::spawn(run_monitoring_flusher(
            Arc::clone(points),
            pipeline.clone(),
            config.plugins.monitoring_flush,
            stopped,
        )));
        Ok(Producers {
            stop,
            tasks,
            sources,
        })
    }

    /// None running (between a reload's stop and start).
    pub fn idle() -> Producers {
        Producers {
            stop: Stopper::new().0,
            tasks: Vec::new(),
            sources: SourceStates::new(),
        }
    }

    /// Stops them and waits: a tick or a source message in progress finishes (or, for
    /// a source, stays unacknowledged at the broker), the last points are flushed.
    pub async fn stop(self) {
        self.stop.stop();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}
