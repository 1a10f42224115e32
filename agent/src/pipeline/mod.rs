//! The pipeline: one ingest request → its `sending_event` plugins → one atomic queue
//! batch → one group commit. The plugin calls and the queue insert run on a blocking
//! thread; only the wait for the commit is async.

mod monitoring;
mod timers;

use std::sync::Arc;

use outpost_pdk::SendingEvent;

pub use monitoring::run_monitoring_flusher;
pub use timers::start_timers;

use crate::plugin::{PluginError, PluginHost, SendingInput};
use crate::queue::{Queue, QueueError};

/// Why a request was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Plugin(#[from] PluginError),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// What an accepted request produced.
#[derive(Debug, Clone, Copy)]
pub struct Accepted {
    pub events: usize,
    pub messages: usize,
}

/// Ingest → plugins → queue.
#[derive(Clone)]
pub struct Pipeline {
    pub plugins: Arc<PluginHost>,
    pub queue: Arc<Queue>,
}

impl Pipeline {
    /// Processes one request's events. Returns once every message the plugins produced
    /// for it is on disk.
    pub async fn ingest(&self, event: SendingEvent) -> Result<Accepted, PipelineError> {
        let events = event.events.len();
        let (plugins, queue) = (Arc::clone(&self.plugins), Arc::clone(&self.queue));
        let inserted = tokio::task::spawn_blocking(move || {
            let input = SendingInput::new(event);
            let messages = plugins.sending_event(&input)?;
            Ok::<_, PipelineError>(queue.insert(&messages)?)
        })
        .await
        .expect("pipeline task panicked")?;
        let messages = inserted.count;
        self.queue.commit(inserted).await?;
        Ok(Accepted { events, messages })
    }
}
