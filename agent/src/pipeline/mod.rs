//! The pipeline: one ingest request → its `sending_event` plugins → one atomic queue
//! batch → one group commit. The plugin calls and the queue insert run on a blocking
//! thread; only the wait for the commit is async. Timers, monitoring and sources queue
//! their messages through the same [`Pipeline::insert`].

mod monitoring;
mod timers;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use outpost_pdk::{Message, SendingEvent};

pub use monitoring::run_monitoring_flusher;
pub use timers::start_timers;

use crate::plugin::{PluginError, PluginHost, SendingInput};
use crate::queue::{Inserted, Queue, QueueError};
use crate::sinks::TopicTemplates;

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
    pub topics: Arc<TopicTemplates>,
    /// Outputs of timers and monitoring plugins the queue refused (full): there is no
    /// producer to answer, so they are dropped, and counted here.
    pub internal_drops: Arc<AtomicU64>,
}

/// Which `sending_event` plugins get an event.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// All of them, in config order (the HTTP API).
    All,
    /// One plugin (a source configured for it).
    Plugin(&'a str),
}

impl Pipeline {
    /// Processes one request's events. Returns once every message the plugins produced
    /// for it is on disk.
    pub async fn ingest(&self, event: SendingEvent) -> Result<Accepted, PipelineError> {
        self.ingest_to(event, Target::All).await
    }

    /// [`Pipeline::ingest`] for the given plugins.
    pub async fn ingest_to(
        &self,
        event: SendingEvent,
        target: Target<'_>,
    ) -> Result<Accepted, PipelineError> {
        let events = event.events.len();
        let this = self.clone();
        let only = match target {
            Target::All => None,
            Target::Plugin(p) => Some(p.to_owned()),
        };
        let writer = self.queue.writer();
        let inserted = tokio::task::spawn_blocking(move || {
            let input = SendingInput::new(event);
            let messages = this.plugins.sending_event(&input, only.as_deref())?;
            Ok::<_, PipelineError>(this.insert(messages, Some(&input.event.handler_id))?)
        })
        .await
        .expect("pipeline task panicked")?;
        let messages = inserted.count;
        self.queue.commit_as(inserted, writer).await?;
        Ok(Accepted { events, messages })
    }

    /// Queues `messages` (not yet durable: [`Pipeline::commit`]), filling in MQTT topic
    /// templates. Blocking.
    pub fn insert(
        &self,
        mut messages: Vec<Message>,
        handler_id: Option<&str>,
    ) -> Result<Inserted, QueueError> {
        self.topics.stamp(&mut messages, handler_id);
        self.queue.insert(&messages)
    }

    /// Counts a dropped timer or monitoring output.
    pub fn count_internal_drop(&self) {
        self.internal_drops.fetch_add(1, Ordering::Relaxed);
    }

    /// Outputs dropped so far.
    pub fn internal_drops(&self) -> u64 {
        self.internal_drops.load(Ordering::Relaxed)
    }

    /// Waits until `inserted` is on disk.
    pub async fn commit(&self, inserted: Inserted) -> Result<(), QueueError> {
        self.queue.commit(inserted).await
    }
}
