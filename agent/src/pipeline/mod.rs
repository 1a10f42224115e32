//! The pipeline: the one step every producer's work goes through —
//! plugin call(s) on the blocking pool → the request's messages admitted to the queue
//! as one group → the group commit that makes them durable.
//!
//! Producers (the HTTP API, MQTT sources, timers, the monitoring flusher, plugin
//! routes) describe their work as a [`Job`]; [`Pipeline::run`] does it and answers once
//! everything the plugins produced is on disk. What happens when it cannot be done is
//! decided here too: producers with someone to answer get the error
//! ([`Pipeline::run`]); internal producers with no one to answer have their output
//! dropped and counted ([`Pipeline::run_internal`]).

mod monitoring;
mod timers;
mod workers;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use outpost_pdk::{
    EventType, Message, Point, RouteRequest, RouteResponse, SendingEvent, SourceMessage,
};

pub use monitoring::run_monitoring_flusher;
pub use timers::start_timers;

use crate::config::TopicTemplates;
use crate::plugin::{LoadedPlugin, PluginError, PluginHost, SendingInput};
use crate::queue::{Queue, QueueError};
use crate::sync;
use workers::{Submitted, Workers};

/// Why a job was not done. Nothing of it was queued.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Plugin(#[from] PluginError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// No active plugin takes this kind of work: queuing nothing would lose it.
    #[error("plugin `{plugin}` does not take `{callback}`: nothing would handle this")]
    NotRouted {
        plugin: String,
        callback: &'static str,
    },
    /// The blocking task died (a bug: plugin panics are caught where they happen).
    #[error("pipeline task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The blocking task ended without an answer (a bug, as above).
    #[error("pipeline task ended without an answer")]
    Lost,
}

/// What a done job produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// Events handed to plugins (a `sending_event` job's events; 1 for a source message).
    pub events: usize,
    /// Messages queued.
    pub messages: usize,
}

/// Work for the plugins whose output is queued.
pub enum Job {
    /// One request's events for the `sending_event` plugins.
    Sending { event: SendingEvent, target: Target },
    /// A batch of monitoring points for the `monitoring_event` plugins.
    Monitoring(Vec<Point>),
    /// One timer tick of a plugin.
    Tick(Arc<LoadedPlugin>),
    /// A message from a data source for a plugin's `on_message`.
    SourceMessage {
        plugin: String,
        message: SourceMessage,
    },
}

/// Which `sending_event` plugins get an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// All of them, in config order (the HTTP API).
    All,
    /// One plugin (a source configured for it); it must take `sending_event`.
    Plugin(String),
}

/// The plugins and topic templates a job runs with. A reload swaps in a new set; a job
/// keeps the set it started with until it is done.
pub struct PluginSet {
    pub plugins: Arc<PluginHost>,
    pub topics: TopicTemplates,
}

/// Ingest → plugins → queue. Cheap to clone.
#[derive(Clone)]
pub struct Pipeline {
    current: Arc<RwLock<Arc<PluginSet>>>,
    queue: Arc<Queue>,
    /// Outputs of internal producers the queue refused: there is no producer to answer,
    /// so they are dropped, and counted here.
    internal_drops: Arc<AtomicU64>,
    /// Where [`Pipeline::run`]'s jobs wait for a worker.
    workers: Arc<Workers>,
}

impl Pipeline {
    pub fn new(plugins: Arc<PluginHost>, queue: Arc<Queue>, topics: TopicTemplates) -> Self {
        Pipeline {
            current: Arc::new(RwLock::new(Arc::new(PluginSet { plugins, topics }))),
            workers: Arc::new(Workers::new(Arc::clone(&queue))),
            queue,
            internal_drops: Arc::default(),
        }
    }

    /// The current plugin set.
    fn set(&self) -> Arc<PluginSet> {
        Arc::clone(&sync::read(&self.current))
    }

    /// The loaded plugins (for status and routes).
    pub fn plugins(&self) -> Arc<PluginHost> {
        Arc::clone(&self.set().plugins)
    }

    /// Makes `set` the one new jobs run with; returns the previous one (jobs in flight
    /// still hold it).
    pub fn replace(&self, set: PluginSet) -> Arc<PluginSet> {
        let mut current = sync::write(&self.current);
        std::mem::replace(&mut *current, Arc::new(set))
    }

    /// Does `job`. Returns once every message the plugins produced for it is on disk;
    /// on error nothing of it is queued and the producer decides (answer, retry).
    ///
    /// The job waits for one of the pipeline's workers on the blocking pool: the plugin
    /// calls, then the admission of their messages; the worker that is to lead the
    /// group commit commits for every request waiting (see `queue::commit`). The answer
    /// comes from the commit: one wake-up of the producer's task.
    pub async fn run(&self, job: Job) -> Result<Accepted, PipelineError> {
        let (answer, rx) = tokio::sync::oneshot::channel();
        self.workers.submit(Submitted {
            job,
            set: self.set(),
            answer,
        });
        rx.await.map_err(|_| PipelineError::Lost)?
    }

    /// Runs a source's batch: each job in order, as [`Pipeline::run`] would, in one
    /// blocking task (one commit covers them all). `id`: the source's id of the job's
    /// message, its messages' idempotency key. Returns each job's fate, in order, up to
    /// the first that failed for another reason than its plugin (the queue is full, …):
    /// the jobs after it are not tried, so a source keeps its order.
    pub async fn run_batch(
        &self,
        jobs: Vec<(Job, Option<String>)>,
    ) -> Vec<Result<(), PipelineError>> {
        let (queue, set) = (Arc::clone(&self.queue), self.set());
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::task::spawn_blocking(move || {
            let mut tried = Vec::with_capacity(jobs.len());
            let mut lead = None;
            for (job, id) in jobs {
                let admitted = produce(&set, job).and_then(|(mut messages, _)| {
                    stamp_ids(&mut messages, id.as_deref());
                    Ok(queue.enqueue(&messages)?)
                });
                match admitted {
                    Ok((ticket, l)) => {
                        tried.push(Ok(ticket));
                        lead = lead.or(l);
                    }
                    Err(e @ PipelineError::Plugin(_)) => tried.push(Err(e)),
                    Err(e) => {
                        tried.push(Err(e));
                        break;
                    }
                }
            }
            let _ = tx.send(tried);
            if let Some(lead) = lead {
                lead.run();
            }
        });
        let Ok(tried) = rx.await else {
            return vec![Err(PipelineError::Lost)];
        };
        let mut results = Vec::with_capacity(tried.len());
        for t in tried {
            results.push(match t {
                Ok(ticket) => ticket.durable().await.map_err(PipelineError::from),
                Err(e) => Err(e),
            });
        }
        results
    }

    /// [`Pipeline::run`] for producers that have no one to answer (timers, monitoring):
    /// a job the queue refuses is dropped and counted. Plugin errors are counted and
    /// logged by the plugin host already.
    pub async fn run_internal(&self, job: Job, what: &str) {
        match self.run(job).await {
            Ok(_) | Err(PipelineError::Plugin(_)) => {}
            Err(e) => {
                self.internal_drops.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(producer = what, error = %e, "output dropped: not queued");
            }
        }
    }

    /// Calls a plugin route off the reactor. Routes answer; they queue nothing.
    pub async fn route(
        &self,
        plugin: Arc<LoadedPlugin>,
        request: RouteRequest,
    ) -> Result<RouteResponse, PipelineError> {
        let host = self.plugins();
        Ok(tokio::task::spawn_blocking(move || host.route(&plugin, &request)).await??)
    }

    /// Outputs of internal producers dropped so far.
    pub fn internal_drops(&self) -> u64 {
        self.internal_drops.load(Ordering::Relaxed)
    }
}

/// The plugin calls of `job`: the messages to queue, and how many events it carried.
/// Blocking.
fn produce(set: &PluginSet, job: Job) -> Result<(Vec<Message>, usize), PipelineError> {
    let plugins = &set.plugins;
    let (mut messages, handler_id, events): (Vec<Message>, Option<String>, usize) = match job {
        Job::Sending { event, target } => {
            if let Target::Plugin(name) = &target {
                require(plugins, name, EventType::SendingEvent.as_str(), |p| {
                    p.info().event_types.contains(&EventType::SendingEvent)
                })?;
            }
            let events = event.events.len();
            let input = SendingInput::new(event);
            let only = match &target {
                Target::All => None,
                Target::Plugin(name) => Some(name.as_str()),
            };
            let messages = plugins.sending_event(&input, only)?;
            (messages, Some(input.event.handler_id), events)
        }
        Job::Monitoring(points) => (plugins.monitoring_event(&points), None, points.len()),
        Job::Tick(plugin) => (plugins.tick(&plugin)?, None, 0),
        Job::SourceMessage { plugin, message } => {
            let plugin = require(plugins, &plugin, "on_message", |p| p.info().on_message)?;
            (plugins.on_message(plugin, &message)?, None, 1)
        }
    };
    set.topics.stamp(&mut messages, handler_id.as_deref());
    Ok((messages, events))
}

/// Gives the messages made from a source's message `id` their idempotency keys: the
/// id itself for a single message, `<id>#<n>` for the n-th of several (stable across
/// redeliveries: a plugin makes the same messages of the same input). A key a plugin
/// chose stays.
fn stamp_ids(messages: &mut [Message], id: Option<&str>) {
    let Some(id) = id.map(safe_key) else { return };
    let several = messages.len() > 1;
    for (n, m) in messages.iter_mut().enumerate() {
        if m.id.is_none() {
            m.id = Some(if several {
                format!("{id}#{n}")
            } else {
                id.to_owned()
            });
        }
    }
}

/// A source's id as an idempotency key: as it is if it is short and plain (it goes
/// into HTTP headers and comma-separated lists), else a digest of it (as stable).
fn safe_key(id: &str) -> String {
    let plain = |b: u8| b.is_ascii_alphanumeric() || b"._:/@+=-".contains(&b);
    if !id.is_empty() && id.len() <= 128 && id.bytes().all(plain) {
        return id.to_owned();
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, id.as_bytes());
    let hex: String = digest.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

/// The plugin called `name`, if it takes `callback`.
fn require<'a>(
    plugins: &'a PluginHost,
    name: &str,
    callback: &'static str,
    takes: impl Fn(&LoadedPlugin) -> bool,
) -> Result<&'a Arc<LoadedPlugin>, PipelineError> {
    plugins
        .get(name)
        .filter(|p| takes(p))
        .ok_or_else(|| PipelineError::NotRouted {
            plugin: name.to_owned(),
            callback,
        })
}

#[cfg(test)]
mod tests;
