//! Sinks: deliver queued messages to the remote side, and delete them only once it
//! acknowledged them.
//!
//! A sink is a [`Transport`] (how one message goes out: HTTP, file, …) driven by the one
//! [delivery loop](delivery) with the one [retry policy](retry). Adding a sink type means
//! adding a transport, nothing else.

mod delivery;
mod file;
mod http;
mod mqtt;
pub mod retry;
mod state;
mod topic;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{Config, SinkConfig};
use crate::queue::{Queue, StoredMessage};
pub use state::{SinkState, SinkStatus};
pub use topic::TopicTemplates;

/// Why a delivery failed, which decides what happens to the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryError {
    /// The remote side is unreachable or overloaded: keep the message, back off, retry.
    Transient(String),
    /// The remote side refused this message and will refuse it again: dead-letter it,
    /// so it neither blocks the sink nor vanishes.
    Permanent(String),
}

/// How one message leaves the device.
pub trait Transport: Send + Sync + 'static {
    /// Delivers `message`; `Ok` means the remote side acknowledged it.
    fn deliver(
        &self,
        message: &StoredMessage,
    ) -> impl Future<Output = Result<(), DeliveryError>> + Send;
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
        shutdown: &watch::Receiver<bool>,
    ) -> anyhow::Result<Sinks> {
        let mut states = BTreeMap::new();
        let mut tasks = Vec::new();
        for (name, sink) in &config.sinks {
            let state = Arc::new(SinkState::new(name, sink.kind()));
            let fifo = Arc::clone(queue.sink(name).expect("queue opened with every sink"));
            let looper = delivery::DeliveryLoop {
                queue: Arc::clone(queue),
                fifo,
                state: Arc::clone(&state),
                retry: sink.retry().clone(),
                shutdown: shutdown.clone(),
            };
            let task = match sink {
                SinkConfig::Http(c) => tokio::spawn(looper.run(http::HttpTransport::new(c)?)),
                SinkConfig::File(c) => tokio::spawn(looper.run(file::FileTransport::new(c))),
                SinkConfig::Mqtt(c) => {
                    let transport = mqtt::MqttTransport::start(
                        name,
                        c,
                        &config.agent.device_id,
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
