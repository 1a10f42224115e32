//! AMQP 0-9-1 source (RabbitMQ): consumes one queue with manual acknowledgements and a
//! prefetch limit. A message is acknowledged once durable; a refused one is rejected
//! without requeue, so the queue's dead-letter exchange (if it has one) takes it. What
//! is not acknowledged when the connection or channel is lost goes back to the queue
//! (redelivered, flagged so).

use std::sync::Arc;

use futures_util::{FutureExt, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, BasicRejectOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Acker, Connection, Consumer};

use super::incoming::Incoming;
use super::run::{Failure, Settled, Source};
use crate::amqp;
use crate::config::AmqpSourceConfig;
use crate::tls::TlsError;

pub(super) struct AmqpSource {
    config: AmqpSourceConfig,
    tls: Option<Arc<rustls::ClientConfig>>,
    tag: String,
    session: Option<(Connection, Consumer)>,
}

impl AmqpSource {
    pub fn new(config: &AmqpSourceConfig, tag: String) -> Result<AmqpSource, TlsError> {
        Ok(AmqpSource {
            tls: amqp::tls_config(&config.connection)?,
            config: config.clone(),
            tag,
            session: None,
        })
    }

    fn failed(&self, what: &str, error: impl std::fmt::Display) -> Failure {
        Failure::new(amqp::LinkError::new(&self.config.connection, what, error))
    }

    /// A channel with the prefetch limit, the queue declared (or checked) and bound,
    /// and a consumer on it.
    async fn consume(&self, connection: &Connection) -> Result<Consumer, Failure> {
        let queue = self.config.queue.as_str();
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| self.failed("channel", e))?;
        channel
            .basic_qos(self.config.prefetch, BasicQosOptions::default())
            .await
            .map_err(|e| self.failed("basic.qos", e))?;
        let options = QueueDeclareOptions {
            passive: self.config.passive,
            durable: true,
            ..QueueDeclareOptions::default()
        };
        channel
            .queue_declare(queue.into(), options, FieldTable::default())
            .await
            .map_err(|e| self.failed(&format!("queue `{queue}`"), e))?;
        for b in &self.config.bindings {
            channel
                .queue_bind(
                    queue.into(),
                    b.exchange.as_str().into(),
                    b.routing_key.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(|e| self.failed(&format!("bind to exchange `{}`", b.exchange), e))?;
        }
        channel
            .basic_consume(
                queue.into(),
                self.tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| self.failed(&format!("consume `{queue}`"), e))
    }
}

fn incoming(delivery: lapin::message::Delivery) -> Incoming<Acker> {
    Incoming {
        id: delivery
            .properties
            .message_id()
            .as_ref()
            .map(|id| id.as_str().to_owned()),
        subject: delivery.routing_key.as_str().to_owned(),
        payload: delivery.data.into(),
        redelivered: delivery.redelivered,
        unreadable: None,
        handle: delivery.acker,
    }
}

impl Source for AmqpSource {
    type Handle = Acker;

    async fn connect(&mut self) -> Result<(), Failure> {
        self.close().await;
        let connection = amqp::connect(&self.config.connection, self.tls.as_ref(), &self.tag)
            .await
            .map_err(Failure::new)?;
        match self.consume(&connection).await {
            Ok(consumer) => {
                self.session = Some((connection, consumer));
                Ok(())
            }
            Err(e) => {
                amqp::close(&connection).await;
                Err(e)
            }
        }
    }

    /// The next delivery, and those already here behind it (at most `prefetch`).
    async fn receive(&mut self) -> Result<Vec<Incoming<Acker>>, Failure> {
        let broker = &self.config.connection;
        let lost = |e: Option<lapin::Error>| {
            let why = e.map_or_else(|| "the channel was closed".to_owned(), |e| e.to_string());
            Failure::new(amqp::LinkError::new(broker, "consumer", why))
        };
        let Some((_, consumer)) = self.session.as_mut() else {
            return Err(lost(None));
        };
        let first = match consumer.next().await {
            Some(Ok(d)) => d,
            Some(Err(e)) => return Err(lost(Some(e))),
            None => return Err(lost(None)),
        };
        let mut batch = vec![incoming(first)];
        while batch.len() < usize::from(self.config.prefetch) {
            match consumer.next().now_or_never() {
                Some(Some(Ok(d))) => batch.push(incoming(d)),
                _ => break,
            }
        }
        Ok(batch)
    }

    async fn settle(&mut self, settled: Vec<Settled<Acker>>) -> Result<(), Failure> {
        for s in settled {
            let done = match s {
                Settled::Accepted(acker) => acker.ack(BasicAckOptions::default()).await,
                Settled::Refused(acker, _) => {
                    acker.reject(BasicRejectOptions { requeue: false }).await
                }
            };
            // `false`: the channel is gone, and the broker requeued the message itself.
            match done {
                Ok(true) => {}
                Ok(false) => return Err(self.failed("ack", "the channel was closed")),
                Err(e) => return Err(self.failed("ack", e)),
            }
        }
        Ok(())
    }

    async fn close(&mut self) {
        if let Some((connection, _)) = self.session.take() {
            amqp::close(&connection).await;
        }
    }
}
