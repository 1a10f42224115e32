//! MQTT source: subscribes, hands each message to its plugin, and acknowledges it to the
//! broker only once what the plugin made of it is on disk. With a persistent session
//! (the default for sources), the broker redelivers what was not acknowledged.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use outpost_pdk::{Event, SendingEvent, SourceMessage};
use serde_json::value::RawValue;
use tokio::task::JoinHandle;

use super::SourceState;
use crate::config::{MqttSourceConfig, SourceDelivery};
use crate::mqtt::{self, Client, Received, SessionEvent};
use crate::pipeline::{Job, Pipeline, PipelineError, Target};
use crate::retry::Backoff;
use crate::shutdown::Shutdown;

pub(super) fn start(
    name: &str,
    config: &MqttSourceConfig,
    device_id: &str,
    pipeline: Pipeline,
    state: Arc<SourceState>,
    shutdown: Shutdown,
) -> Result<JoinHandle<()>, super::SourceError> {
    let client_id = config
        .connection
        .client_id
        .clone()
        .unwrap_or_else(|| format!("{device_id}-{name}"));
    let (client, eventloop) =
        mqtt::connect(&config.connection, &client_id, config.clean_session, true).map_err(
            |error| super::SourceError::Tls {
                name: name.to_owned(),
                error,
            },
        )?;
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
    config: MqttSourceConfig,
    pipeline: Pipeline,
    state: Arc<SourceState>,
    client: Client,
}

/// What became of a message handed to the pipeline.
enum Handled {
    /// Durable: acknowledge it.
    Accepted,
    /// The plugin refused it: dropping it is the policy (counted), acknowledge it.
    Refused(PipelineError),
    /// It cannot be taken now (queue full or failing, no plugin takes it): do not
    /// acknowledge it; retry.
    Later(PipelineError),
}

impl Source {
    async fn run(self, mut eventloop: mqtt::EventLoop, mut shutdown: Shutdown) {
        let mut backoff = Backoff::new(&self.config.retry);
        let mut subacks = 0usize;
        loop {
            let event = tokio::select! {
                e = eventloop.poll() => e,
                _ = shutdown.stopped() => break,
            };
            match event {
                Ok(SessionEvent::Connected) => {
                    backoff.reset();
                    subacks = 0;
                    self.state.set_connected(true);
                    tracing::info!(source = %self.name, "connected; subscribing");
                    for topic in &self.config.topics {
                        if let Err(e) = self
                            .client
                            .subscribe(topic, self.config.connection.qos)
                            .await
                        {
                            tracing::error!(source = %self.name, topic, error = %e, "subscribe failed");
                        }
                    }
                }
                Ok(SessionEvent::Subscribed) => {
                    subacks += 1;
                    if subacks == self.config.topics.len() {
                        self.state.set_subscribed();
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
                    self.state.set_error(&e);
                    let delay = backoff.next_delay();
                    tracing::warn!(source = %self.name, error = %e, retry_in = ?delay, "MQTT source connection failed");
                    if shutdown.sleep(delay).await {
                        break;
                    }
                }
            }
        }
        self.client.disconnect().await;
    }

    /// Hands `message` to the plugin until it is durable or refused; false if shutdown
    /// came first (the message is then not acknowledged, and redelivered).
    async fn accept(&self, message: &Received, shutdown: &mut Shutdown) -> bool {
        let mut backoff = Backoff::new(&self.config.retry);
        loop {
            match self.hand_over(message).await {
                Handled::Accepted => {
                    self.state.accepted.fetch_add(1, Ordering::Relaxed);
                    return true;
                }
                Handled::Refused(e) => {
                    self.state.rejected.fetch_add(1, Ordering::Relaxed);
                    self.state.set_error(&e);
                    tracing::warn!(source = %self.name, topic = %message.topic, error = %e,
                        "message refused by its plugin: dropped");
                    return true;
                }
                Handled::Later(e) => {
                    self.state.set_error(&e);
                    let delay = backoff.next_delay();
                    tracing::warn!(source = %self.name, error = %e, retry_in = ?delay,
                        "message not accepted yet (not acknowledged)");
                    if shutdown.sleep(delay).await {
                        return false;
                    }
                }
            }
        }
    }

    async fn hand_over(&self, message: &Received) -> Handled {
        let plugin = self.config.plugin.clone();
        let job = match &self.config.deliver {
            SourceDelivery::OnMessage => Job::SourceMessage {
                plugin,
                message: SourceMessage {
                    source: self.name.clone(),
                    topic: message.topic.clone(),
                    payload: String::from_utf8_lossy(&message.payload).into_owned(),
                },
            },
            SourceDelivery::SendingEvent {
                handler_id,
                account_id,
            } => {
                let now = crate::clock::rfc3339(SystemTime::now());
                Job::Sending {
                    event: SendingEvent {
                        handler_id: handler_id.clone(),
                        account_id: account_id.clone(),
                        request_id: uuid::Uuid::new_v4().to_string(),
                        event_create_time: now.clone(),
                        event_end_time: now,
                        events: vec![as_event(&message.payload)],
                    },
                    target: Target::Plugin(plugin),
                }
            }
        };
        match self.pipeline.run(job).await {
            Ok(_) => Handled::Accepted,
            Err(e @ PipelineError::Plugin(_)) => Handled::Refused(e),
            Err(e) => Handled::Later(e),
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
