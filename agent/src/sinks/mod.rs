//! Sinks: deliver queued messages to the remote side, and delete them only once it
//! acknowledged them.
//!
//! A sink is a [`Transport`] (how one message goes out: HTTP, file, …) driven by the one
//! [delivery loop](delivery) with the one [retry policy](crate::retry). Adding a sink
//! type means adding a transport, nothing else.

mod delivery;
mod error;
mod file;
mod http;
mod mqtt;
mod state;
mod topic;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{Config, SinkKind};
use crate::queue::{Queue, StoredMessage};
pub use error::{DeliveryError, Failure, Partial};
pub use state::{SinkState, SinkStatus};
pub use topic::TopicTemplates;

/// How messages leave the device.
///
/// The delivery loop hands a transport the head of its FIFO; the transport says how
/// much of it one call takes ([`batch_len`](Transport::batch_len): messages per request
/// or an in-flight window), so the round trip is paid per batch, not per message.
pub trait Transport: Send + Sync + 'static {
    /// How many of `head` (never empty) the next [`deliver`](Transport::deliver) may
    /// carry; at least 1.
    fn batch_len(&self, head: &[StoredMessage]) -> usize {
        let _ = head;
        1
    }

    /// Delivers `batch` in order; `Ok` means the remote side acknowledged all of it.
    /// A [`DeliveryError::Permanent`] for a batch of several messages does not say which
    /// one was refused: the loop then retries them one by one.
    fn deliver(&self, batch: &[StoredMessage]) -> impl Future<Output = Result<(), Partial>> + Send;
}

/// The running sinks.
pub struct Sinks {
    states: BTreeMap<String, Arc<SinkState>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Sinks {
    /// Starts one delivery loop per configured sink.
    pub fn start(
        config: &Config,
        queue: &Arc<Queue>,
        topics: &TopicTemplates,
        shutdown: &watch::Receiver<bool>,
    ) -> anyhow::Result<Sinks> {
        let mut states = BTreeMap::new();
        let mut tasks = Vec::new();
        for (name, sink) in &config.sinks {
            let state = Arc::new(SinkState::new(name, sink.kind_name()));
            let Some(fifo) = queue.sink(name) else {
                anyhow::bail!("sink `{name}` has no queue");
            };
            let looper = delivery::DeliveryLoop {
                queue: Arc::clone(queue),
                fifo: Arc::clone(fifo),
                state: Arc::clone(&state),
                policy: sink.delivery.clone(),
                peek: sink.max_batch().max(delivery::BATCH),
                shutdown: shutdown.clone(),
            };
            let task = match &sink.kind {
                SinkKind::Http(c) => tokio::spawn(looper.run(http::HttpTransport::new(c)?)),
                SinkKind::File(c) => tokio::spawn(looper.run(file::FileTransport::new(c))),
                SinkKind::Mqtt(c) => {
                    let transport = mqtt::MqttTransport::start(
                        name,
                        c,
                        &config.agent.device_id,
                        topics.expand(&c.topic, name, None),
                        &sink.delivery.retry,
                        Arc::clone(&state),
                        shutdown.clone(),
                    )
                    .map_err(|e| anyhow::anyhow!("sink `{name}`: {e}"))?;
                    tokio::spawn(looper.run(transport))
                }
            };
            tasks.push(task);
            states.insert(name.clone(), state);
        }
        Ok(Sinks { states, tasks })
    }

    /// State of every sink, by name.
    pub fn states(&self) -> &BTreeMap<String, Arc<SinkState>> {
        &self.states
    }

    /// Waits for the delivery loops to stop (after shutdown was signalled).
    pub async fn join(self) {
        for task in self.tasks {
            let _ = task.await;
        }
    }
}
