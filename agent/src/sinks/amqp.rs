//! AMQP transport: publishes each message (persistent, mandatory, `message_id` = its
//! idempotency key) on a channel in confirm mode, a window of up to `max_in_flight`
//! at once, and waits for the broker's confirms. A message leaves the queue once the
//! broker confirmed it; one the broker returns as unroutable goes to the dead letters
//! (alone); a negative confirm is retried.

use std::sync::Arc;
use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation, Connection, PublisherConfirm};

use super::{Delivered, DeliveryError, Failure, Partial, Transport};
use crate::amqp;
use crate::config::AmqpSinkConfig;
use crate::queue::StoredMessage;
use crate::tls::TlsError;

/// How long the broker may take to confirm a window.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) struct AmqpTransport {
    config: AmqpSinkConfig,
    tls: Option<Arc<rustls::ClientConfig>>,
    name: String,
    session: tokio::sync::Mutex<Option<(Connection, Channel)>>,
}

impl AmqpTransport {
    pub fn new(config: &AmqpSinkConfig, name: String) -> Result<AmqpTransport, TlsError> {
        Ok(AmqpTransport {
            tls: amqp::tls_config(&config.connection)?,
            config: config.clone(),
            name,
            session: tokio::sync::Mutex::new(None),
        })
    }

    fn failure(&self, what: &str, error: impl std::fmt::Display) -> Failure {
        Failure::Connection {
            target: self.config.connection.to_string(),
            message: format!("{what}: {error}"),
        }
    }

    fn lost(&self, what: &str, error: impl std::fmt::Display) -> Partial {
        DeliveryError::Transient(self.failure(what, error)).into()
    }

    async fn open(&self) -> Result<(Connection, Channel), Partial> {
        let connection = amqp::connect(&self.config.connection, self.tls.as_ref(), &self.name)
            .await
            .map_err(|e| {
                Partial::from(DeliveryError::Transient(Failure::Connection {
                    target: e.target,
                    message: e.message,
                }))
            })?;
        let channel = async {
            let channel = connection.create_channel().await?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
            Ok::<_, lapin::Error>(channel)
        }
        .await;
        match channel {
            Ok(channel) => Ok((connection, channel)),
            Err(e) => {
                amqp::close(&connection).await;
                Err(self.lost("channel", e))
            }
        }
    }

    fn properties(&self, m: &StoredMessage) -> BasicProperties {
        let mut headers = FieldTable::default();
        for (name, value) in &m.headers {
            headers.insert(
                name.as_str().into(),
                AMQPValue::LongString(value.as_str().into()),
            );
        }
        if let Some(key) = &m.key_ {
            headers.insert("key".into(), AMQPValue::LongString(key.as_str().into()));
        }
        BasicProperties::default()
            .with_delivery_mode(if self.config.persistent { 2 } else { 1 })
            .with_message_id(m.idempotency_key().as_ref().into())
            .with_content_type(m.content_type.as_str().into())
            .with_timestamp(m.enqueued_ms / 1000)
            .with_headers(headers)
    }

    /// Publishes the batch; the broker's answer to each, in order.
    async fn publish(
        &self,
        channel: &Channel,
        batch: &[StoredMessage],
    ) -> Result<Vec<PublisherConfirm>, lapin::Error> {
        let mut confirms = Vec::with_capacity(batch.len());
        for m in batch {
            let routing_key = m.topic.as_deref().unwrap_or(&self.config.routing_key);
            confirms.push(
                channel
                    .basic_publish(
                        self.config.exchange.as_str().into(),
                        routing_key.into(),
                        BasicPublishOptions {
                            mandatory: true,
                            immediate: false,
                        },
                        &m.payload,
                        self.properties(m),
                    )
                    .await?,
            );
        }
        Ok(confirms)
    }
}

/// What the broker said of each message of a batch: `None` if confirmed, else why not.
/// A returned message is matched to the message of the batch with its `message_id`
/// (a return rides on the next confirm, which a multiple-ack may give an earlier tag).
async fn outcomes(
    batch: &[StoredMessage],
    confirms: Vec<PublisherConfirm>,
) -> Result<Vec<Option<DeliveryError>>, lapin::Error> {
    let mut outcomes: Vec<Option<DeliveryError>> = (0..batch.len()).map(|_| None).collect();
    for (i, confirm) in confirms.into_iter().enumerate() {
        match confirm.await? {
            Confirmation::Ack(None) => {}
            Confirmation::Ack(Some(returned)) => {
                let id = returned.delivery.properties.message_id().clone();
                let at = id
                    .and_then(|id| {
                        batch.iter().enumerate().position(|(j, m)| {
                            outcomes[j].is_none() && m.idempotency_key() == id.as_str()
                        })
                    })
                    .unwrap_or(i);
                outcomes[at] = Some(DeliveryError::Permanent(Failure::Refused {
                    target: "broker".to_owned(),
                    message: format!(
                        "returned as unroutable: {} {}",
                        returned.reply_code,
                        returned.reply_text.as_str()
                    ),
                }));
            }
            Confirmation::Nack(_) => {
                outcomes[i] = Some(DeliveryError::Transient(Failure::Refused {
                    target: "broker".to_owned(),
                    message: "negative confirm (the broker could not take it)".to_owned(),
                }));
            }
            Confirmation::NotRequested => unreachable!("the channel is in confirm mode"),
        }
    }
    Ok(outcomes)
}

impl Transport for AmqpTransport {
    fn batch_len(&self, head: &[StoredMessage]) -> usize {
        head.len().min(self.config.max_in_flight)
    }

    fn pinpoints_refusals(&self) -> bool {
        true
    }

    async fn deliver(&self, batch: &[StoredMessage]) -> Result<Delivered, Partial> {
        let mut guard = self.session.lock().await;
        if guard
            .as_ref()
            .is_none_or(|(c, ch)| !c.status().connected() || !ch.status().connected())
        {
            if let Some((connection, _)) = guard.take() {
                amqp::close(&connection).await;
            }
            *guard = Some(self.open().await?);
        }
        let (_, channel) = guard.as_ref().expect("opened above");
        let exchange = async {
            let confirms = self.publish(channel, batch).await?;
            outcomes(batch, confirms).await
        };
        let outcomes = match tokio::time::timeout(CONFIRM_TIMEOUT, exchange).await {
            Ok(Ok(outcomes)) => outcomes,
            Ok(Err(e)) => {
                if let Some((connection, _)) = guard.take() {
                    amqp::close(&connection).await;
                }
                return Err(self.lost("publish", e));
            }
            Err(_) => {
                if let Some((connection, _)) = guard.take() {
                    amqp::close(&connection).await;
                }
                return Err(DeliveryError::Transient(Failure::AckTimeout(CONFIRM_TIMEOUT)).into());
            }
        };
        for (acked, outcome) in outcomes.into_iter().enumerate() {
            if let Some(mut error) = outcome {
                if let DeliveryError::Permanent(Failure::Refused { target, .. })
                | DeliveryError::Transient(Failure::Refused { target, .. }) = &mut error
                {
                    *target = self.config.connection.to_string();
                }
                return Err(Partial { acked, error });
            }
        }
        Ok(Delivered::All)
    }
}
