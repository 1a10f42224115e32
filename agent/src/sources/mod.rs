//! Sources: where events come from besides the HTTP API — MQTT subscriptions, Redis
//! (streams, lists, pub/sub) and AMQP queues. A message from a source goes to the
//! plugin configured for it and is acknowledged to its system only once what the plugin
//! made of it is durable: the same promise as a 202.
//!
//! Each kind is a [`Source`](run::Source) (connect, receive, settle) driven by the one
//! [source loop](run::run), as the sinks are transports driven by one delivery loop.

#[cfg(feature = "amqp")]
mod amqp;
mod incoming;
mod mqtt;
#[cfg(feature = "redis")]
mod redis;
mod run;
mod state;

use std::sync::Arc;

use outpost_pdk::EventType;
use tokio::task::JoinHandle;

use crate::config::{Config, ConfigError, SourceConfig, SourceDelivery, SourceKind};
use crate::pipeline::Pipeline;
use crate::plugin::PluginHost;
use crate::shutdown::Shutdown;
pub use state::{SourceState, SourceStatus};

/// Why a source could not be set up (a reload then changes nothing).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("source `{name}`: TLS: {error}")]
    Tls {
        name: String,
        error: crate::tls::TlsError,
    },
}

/// Each source's name and live state.
pub type SourceStates = Vec<(String, Arc<SourceState>)>;

/// Refuses sources whose plugin does not take what they deliver: their messages would
/// be handled by nothing. Run once the plugins are loaded (`run` and `check`).
pub fn check_wiring(config: &Config, plugins: &PluginHost) -> Result<(), ConfigError> {
    for (name, source) in &config.sources {
        let Some(plugin) = plugins.get(source.plugin()) else {
            continue; // not active: refused when the config was parsed
        };
        let info = plugin.info();
        let takes = match source.deliver() {
            SourceDelivery::OnMessage => info.on_message,
            SourceDelivery::SendingEvent { .. } => {
                info.event_types.contains(&EventType::SendingEvent)
            }
        };
        if !takes {
            return Err(config.key_error(
                format!("sources.{name}.deliver"),
                format!(
                    "plugin `{}` does not take `{}`: nothing would handle this source's messages",
                    plugin.name,
                    source.deliver().as_str()
                ),
            ));
        }
    }
    Ok(())
}

/// Starts every configured source.
pub fn start(
    config: &Config,
    pipeline: &Pipeline,
    shutdown: &Shutdown,
) -> Result<(SourceStates, Vec<JoinHandle<()>>), SourceError> {
    let mut states = Vec::new();
    let mut tasks = Vec::new();
    for (name, source) in &config.sources {
        let state = Arc::new(SourceState::new(source.kind_name()));
        let feed = run::Feed {
            name: name.clone(),
            plugin: source.feed.plugin.clone(),
            deliver: source.feed.deliver.clone(),
            pipeline: pipeline.clone(),
            state: Arc::clone(&state),
            retry: source.feed.retry,
        };
        tasks.push(spawn(
            name,
            source,
            &config.agent.device_id,
            feed,
            shutdown,
        )?);
        states.push((name.clone(), state));
    }
    Ok((states, tasks))
}

/// Builds source `name` of its kind and starts its loop.
fn spawn(
    name: &str,
    source: &SourceConfig,
    device_id: &str,
    feed: run::Feed,
    shutdown: &Shutdown,
) -> Result<JoinHandle<()>, SourceError> {
    let tls = |e| SourceError::Tls {
        name: name.to_owned(),
        error: e,
    };
    let consumer = |given: &Option<String>| {
        given
            .clone()
            .unwrap_or_else(|| format!("{device_id}-{name}"))
    };
    let stopped = shutdown.clone();
    Ok(match &source.kind {
        SourceKind::Mqtt(c) => {
            let source =
                mqtt::MqttSource::new(c, consumer(&c.connection.client_id)).map_err(tls)?;
            tokio::spawn(run::run(source, feed, stopped))
        }
        #[cfg(feature = "redis")]
        SourceKind::Redis(c) => {
            // The contract's default: one consumer per device in a group.
            let consumer = c.consumer.clone().unwrap_or_else(|| device_id.to_owned());
            redis::spawn(c, consumer, feed, stopped).map_err(tls)?
        }
        #[cfg(feature = "amqp")]
        SourceKind::Amqp(c) => {
            let source = amqp::AmqpSource::new(c, consumer(&c.consumer_tag)).map_err(tls)?;
            tokio::spawn(run::run(source, feed, stopped))
        }
        #[allow(unreachable_patterns)]
        _ => unreachable!("the config refuses source types this build lacks"),
    })
}
