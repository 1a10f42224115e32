//! Sinks: deliver queued messages to the remote side, and delete them only once it
//! acknowledged them.
//!
//! A sink is a [`Transport`] (how one message goes out: HTTP, file, …) driven by the one
//! [delivery loop](delivery) with the one [retry policy](crate::retry). Adding a sink
//! type means adding a transport, nothing else.

#[cfg(feature = "amqp")]
mod amqp;
mod delivery;
mod error;
mod file;
#[cfg(test)]
mod harness;
mod http;
mod mqtt;
#[cfg(feature = "redis")]
mod redis;
mod state;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use tokio::task::JoinHandle;

use crate::config::{Config, SinkConfig, SinkKind, TopicTemplates};
use crate::queue::{Queue, QueueError, StoredMessage};
use crate::shutdown::{Shutdown, Stopper};
use crate::tls::TlsError;
pub use error::{DeliveryError, Failure, Partial};
pub use state::{SinkState, SinkStatus};

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

    /// Whether a [`DeliveryError::Permanent`] in a [`Partial`] is about the message
    /// right after the acknowledged prefix alone (acknowledgements per message, as
    /// MQTT's), rather than about the whole rest of the batch (one HTTP request): then
    /// the loop dead-letters that message without sending the rest one by one.
    fn pinpoints_refusals(&self) -> bool {
        false
    }

    /// Delivers `batch` in order; [`Delivered::All`] means the remote side acknowledged
    /// all of it. A [`DeliveryError::Permanent`] for a batch of several messages does not
    /// say which one was refused: the loop then retries them one by one.
    fn deliver(
        &self,
        batch: &[StoredMessage],
    ) -> impl Future<Output = Result<Delivered, Partial>> + Send;
}

/// How far a [`Transport::deliver`] that did not fail got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// The remote side acknowledged the whole batch.
    All,
    /// The first `acked` are acknowledged; the rest of the batch went out and the
    /// transport still awaits their acknowledgements. The loop settles the first
    /// `acked` and starts the next batch with the rest (which the transport must not
    /// send again), followed by newer messages: an in-flight window that slides across
    /// batches. A transport answers this only when the next call can make progress:
    /// it sent something new in this one, or newer messages were queued meanwhile.
    InFlight { acked: usize },
}

/// Why a sink could not be set up (a reload then changes nothing).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("sink `{sink}`: TLS: {error}")]
    Tls { sink: String, error: TlsError },
    #[error("sink `{sink}`: {error}")]
    Queue { sink: String, error: QueueError },
}

/// A sink whose delivery loop runs, with its own stop signal (a reload stops and
/// starts sinks one by one).
pub struct RunningSink {
    pub state: Arc<SinkState>,
    /// The config it runs with (to tell whether a reload changed it).
    pub config: SinkConfig,
    stop: Stopper,
    task: JoinHandle<()>,
}

impl RunningSink {
    /// Stops the delivery loop; messages in flight stay queued (at-least-once).
    pub async fn stop(self) {
        self.stop.stop();
        let _ = self.task.await;
    }
}

/// A sink ready to run: its transport is built (so a bad TLS file or URL is an error
/// before anything changes), its loop not yet started.
pub struct PreparedSink {
    name: String,
    state: Arc<SinkState>,
    config: SinkConfig,
    stop: Stopper,
    spawn: Spawn,
}

/// Starts a prepared delivery loop.
type Spawn = Box<dyn FnOnce() -> JoinHandle<()> + Send>;

/// Builds the transport of `sink` and returns what starts `looper` over it.
fn spawner(
    looper: delivery::DeliveryLoop,
    name: &str,
    sink: &SinkConfig,
    context: &SinkContext<'_>,
    stopped: Shutdown,
) -> Result<Spawn, TlsError> {
    Ok(match &sink.kind {
        SinkKind::Http(c) => {
            let transport = http::HttpTransport::new(c)?;
            Box::new(move || tokio::spawn(looper.run(transport)))
        }
        SinkKind::File(c) => {
            let transport = file::FileTransport::new(c);
            Box::new(move || tokio::spawn(looper.run(transport)))
        }
        SinkKind::Mqtt(c) => {
            let transport = mqtt::MqttTransport::start(
                Arc::clone(&looper.fifo),
                c,
                context.device_id,
                context.topics.expand(&c.topic, name, None),
                &sink.delivery.retry,
                Arc::clone(&looper.state),
                stopped,
            )?;
            Box::new(move || tokio::spawn(looper.run(transport)))
        }
        #[cfg(feature = "redis")]
        SinkKind::Redis(c) => {
            let transport = redis::RedisTransport::new(c)?;
            Box::new(move || tokio::spawn(looper.run(transport)))
        }
        #[cfg(feature = "amqp")]
        SinkKind::Amqp(c) => {
            let transport = amqp::AmqpTransport::new(c, format!("{}-{name}", context.device_id))?;
            Box::new(move || tokio::spawn(looper.run(transport)))
        }
        #[allow(unreachable_patterns)]
        _ => unreachable!("the config refuses sink types this build lacks"),
    })
}

impl PreparedSink {
    /// Builds sink `name`'s transport and loop. `state` carries counters over from a
    /// previous run of the sink (a reload).
    pub fn prepare(
        name: &str,
        sink: &SinkConfig,
        context: &SinkContext<'_>,
        state: Option<Arc<SinkState>>,
    ) -> Result<PreparedSink, SetupError> {
        let tls = |error| SetupError::Tls {
            sink: name.to_owned(),
            error,
        };
        let state = state
            .filter(|s| s.kind == sink.kind_name())
            .unwrap_or_else(|| Arc::new(SinkState::new(name, sink.kind_name())));
        let (stop, stopped) = Stopper::new();
        let looper = delivery::DeliveryLoop {
            queue: Arc::clone(context.queue),
            fifo: context
                .queue
                .add_sink(name)
                .map_err(|error| SetupError::Queue {
                    sink: name.to_owned(),
                    error,
                })?,
            state: Arc::clone(&state),
            policy: sink.delivery.clone(),
            peek: sink.max_batch().max(delivery::BATCH),
            shutdown: stopped.clone(),
            clock: crate::clock::Clock::system(),
            carry: Vec::new(),
        };
        let spawn = spawner(looper, name, sink, context, stopped).map_err(tls)?;
        Ok(PreparedSink {
            name: name.to_owned(),
            state,
            config: sink.clone(),
            stop,
            spawn,
        })
    }

    /// The sink's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Starts the delivery loop.
    pub fn start(self) -> (String, RunningSink) {
        let task = (self.spawn)();
        let running = RunningSink {
            state: self.state,
            config: self.config,
            stop: self.stop,
            task,
        };
        (self.name, running)
    }

    /// Gives up the sink unstarted (a reload that failed elsewhere).
    pub fn discard(self) {
        self.stop.stop();
    }
}

/// What starting a sink needs besides its config.
pub struct SinkContext<'a> {
    pub queue: &'a Arc<Queue>,
    pub topics: &'a TopicTemplates,
    pub device_id: &'a str,
}

/// The running sinks, by name.
#[derive(Default)]
pub struct Sinks {
    running: BTreeMap<String, RunningSink>,
}

impl Sinks {
    /// Starts one delivery loop per configured sink.
    pub fn start(config: &Config, context: &SinkContext<'_>) -> Result<Sinks, SetupError> {
        let mut sinks = Sinks::default();
        for (name, sink) in &config.sinks {
            let (name, running) = PreparedSink::prepare(name, sink, context, None)?.start();
            sinks.running.insert(name, running);
        }
        Ok(sinks)
    }

    /// State of every running sink, by name.
    pub fn states(&self) -> BTreeMap<String, Arc<SinkState>> {
        self.running
            .iter()
            .map(|(n, r)| (n.clone(), Arc::clone(&r.state)))
            .collect()
    }

    /// The running sink called `name`.
    pub fn get(&self, name: &str) -> Option<&RunningSink> {
        self.running.get(name)
    }

    /// Takes sink `name` out (to stop it).
    pub fn take(&mut self, name: &str) -> Option<RunningSink> {
        self.running.remove(name)
    }

    /// Names of the running sinks.
    pub fn names(&self) -> Vec<String> {
        self.running.keys().cloned().collect()
    }

    /// Adds a started sink.
    pub fn insert(&mut self, name: String, sink: RunningSink) {
        self.running.insert(name, sink);
    }

    /// Stops every delivery loop (shutdown).
    pub async fn stop_all(self) {
        for (_, sink) in self.running {
            sink.stop().await;
        }
    }
}
