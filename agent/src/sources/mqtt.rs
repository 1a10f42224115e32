//! MQTT source: subscribes, hands each message to its plugin, and acknowledges it to the
//! broker only once what the plugin made of it is on disk. With a persistent session
//! (the default for sources), the broker redelivers what was not acknowledged.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::Context;
use outpost_pdk::{Event, SendingEvent, SourceMessage};
use serde_json::value::RawValue;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::SourceState;
use crate::config::{MqttConfig, SourceDelivery};
use crate::mqtt::{self, Client, Received, SessionEvent};
use crate::pipeline::{Pipeline, PipelineError, Target};
use crate::queue::QueueError;
use crate::sinks::retry::Backoff;

pub(super) fn start(
    name: &str,
    config: &MqttConfig,
    device_id: &str,
    pipeline: Pipeline,
    state: Arc<SourceState>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<JoinHandle<()>> {
    let client_id = config
        .client_id
        .clone()
        .unwrap_or_else(|| format!("{device_id}-{name}"));
    let (client, eventloop) = mqtt::connect(
        config,
        &client_id,
        config.clean_session.unwrap_or(false),
        true,
    )
    .with_context(|| format!("source `{name}`"))?;
    let source = Source {
        name: name.to_owned(),
        config: config.clone(),
        pipeline,
        state,
        client,
    };
    Ok(tokio::spawn(source.run(eventloop, shutdown)))
}

struct Source {
    name: String,
    config: MqttConfig,
    pipeline: Pipeline,
    state: Arc<SourceState>,
    client: Client,
}

/// Why a message was not accepted.
enum Refusal {
    /// The plugin refused it: dropping it is the policy (counted).
    Plugin(String),
    /// The queue could not take it now: retry, do not acknowledge.
    Retry(String),
}

impl Source {
    async fn run(self, mut eventloop: mqtt::EventLoop, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Backoff::new(&self.config.retry);
        loop {
            let event = tokio::select! {
                e = eventloop.poll() => e,
                _ = shutdown.changed() => break,
            };
            match event {
                Ok(SessionEvent::Connected) => {
                    backoff.reset();
                    self.state.set_connected(true);
                    tracing::info!(source = %self.name, "connected; subscribing");
                    for topic in &self.config.topics {
                        if let Err(e) = self.client.subscribe(topic, self.config.qos).await {
                            tracing::error!(source = %self.name, topic, error = %e, "subscribe failed");
                        }
                    }
                }
                Ok(SessionEvent::Message(message)) => {
                    self.state.received.fetch_add(1, Ordering::Relaxed);
                    if !self.accept(&message, &mut shutdown).await {
                        break;
                    }
                    if let Err(e) = self.client.ack(&message).await {
                        tracing::warn!(source = %self.name, error = %e, "acknowledgement not sent");
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    self.state.set_connected(false);
                    self.state.set_error(e.clone());
                    let delay = backoff.next_delay();
                    tracing::warn!(source = %self.name, error = %e, retry_in = ?delay, "MQTT source connection failed");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.changed() => break,
                    }
                }
            }
        }
        self.client.disconnect().await;
    }

    /// Hands `message` to the plugin until it is durable or refused; false if shutdown
    /// came first (the message is then not acknowledged, and redelivered).
    async fn accept(&self, message: &Received, shutdown: &mut watch::Receiver<bool>) -> bool {
        let mut backoff = Backoff::new(&self.config.retry);
        loop {
            match self.hand_over(message).await {
                Ok(()) => {
                    self.state.accepted.fetch_add(1, Ordering::Relaxed);
                    return true;
                }
                Err(Refusal::Plugin(e)) => {
                    self.state.rejected.fetch_add(1, Ordering::Relaxed);
                    self.state.set_error(e.clone());
                    tracing::warn!(source = %self.name, topic = %message.topic, error = %e,
                        "message refused by its plugin: dropped");
                    return true;
                }
                Err(Refusal::Retry(e)) => {
                    self.state.set_error(e.clone());
                    let delay = backoff.next_delay();
                    tracing::warn!(source = %self.name, error = %e, retry_in = ?delay, "message not accepted yet");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.changed() => return false,
                    }
                }
            }
        }
    }

    async fn hand_over(&self, message: &Received) -> Result<(), Refusal> {
        let plugin = self.config.plugin.clone().unwrap_or_default();
        let refusal = |e: PipelineError| match e {
            PipelineError::Plugin(e) => Refusal::Plugin(e.to_string()),
            PipelineError::Queue(e) => Refusal::Retry(e.to_string()),
        };
        match self.config.deliver {
            SourceDelivery::OnMessage => {
                let input = SourceMessage {
                    source: self.name.clone(),
                    topic: message.topic.clone(),
                    payload: String::from_utf8_lossy(&message.payload).into_owned(),
                };
                let pipeline = self.pipeline.clone();
                let inserted = tokio::task::spawn_blocking(move || {
                    let messages = pipeline.plugins.on_message(&plugin, &input)?;
                    Ok::<_, PipelineError>(pipeline.insert(messages, None)?)
                })
                .await
                .expect("source task panicked")
                .map_err(refusal)?;
                self.pipeline
                    .commit(inserted)
                    .await
                    .map_err(|e: QueueError| Refusal::Retry(e.to_string()))
            }
            SourceDelivery::SendingEvent => {
                let now = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
                let event = SendingEvent {
                    handler_id: self.config.handler_id.clone().unwrap_or_default(),
                    account_id: self.config.account_id.clone().unwrap_or_default(),
                    request_id: uuid::Uuid::new_v4().to_string(),
                    event_create_time: now.clone(),
                    event_end_time: now,
                    events: vec![as_event(&message.payload)],
                };
                self.pipeline
                    .ingest_to(event, Target::Plugin(&plugin))
                    .await
                    .map(drop)
                    .map_err(refusal)
            }
        }
    }
}

/// A payload as one event: its JSON if it is JSON, else a JSON string.
fn as_event(payload: &[u8]) -> Event {
    let raw = std::str::from_utf8(payload)
        .ok()
        .and_then(|s| RawValue::from_string(s.trim().to_owned()).ok())
        .unwrap_or_else(|| {
            serde_json::value::to_raw_value(&String::from_utf8_lossy(payload))
                .expect("a string serialises")
        });
    Event(raw)
}
