//! `mode = "pubsub"`: SUBSCRIBE and PSUBSCRIBE. At most once by Redis's design: Redis
//! keeps nothing for a subscriber, so what is published while the agent is away or
//! reconnecting is lost, and a message the queue cannot take is dropped (counted).

use futures_util::{FutureExt, StreamExt};
use redis::aio::PubSubStream;

use super::Server;
use crate::sources::incoming::Incoming;
use crate::sources::run::{Failure, Settled, Source};

pub(in crate::sources) struct PubSubSource {
    server: Server,
    channels: Vec<String>,
    patterns: Vec<String>,
    count: usize,
    messages: Option<PubSubStream>,
}

impl PubSubSource {
    pub fn new(
        server: Server,
        channels: &[String],
        patterns: &[String],
        count: usize,
    ) -> PubSubSource {
        PubSubSource {
            server,
            channels: channels.to_vec(),
            patterns: patterns.to_vec(),
            count,
            messages: None,
        }
    }
}

fn incoming(message: redis::Msg) -> Incoming<()> {
    Incoming::new(
        (),
        message.get_channel_name().to_owned(),
        bytes::Bytes::copy_from_slice(message.get_payload_bytes()),
    )
}

impl Source for PubSubSource {
    type Handle = ();

    async fn connect(&mut self) -> Result<(), Failure> {
        self.messages = None;
        let mut subscriber =
            crate::redis::subscriber(&self.server.connection, self.server.tls.as_ref())
                .await
                .map_err(Failure::new)?;
        if !self.channels.is_empty() {
            subscriber
                .subscribe(&self.channels)
                .await
                .map_err(|e| self.server.failed("SUBSCRIBE", e))?;
        }
        if !self.patterns.is_empty() {
            subscriber
                .psubscribe(&self.patterns)
                .await
                .map_err(|e| self.server.failed("PSUBSCRIBE", e))?;
        }
        self.messages = Some(subscriber.into_on_message());
        Ok(())
    }

    async fn receive(&mut self) -> Result<Vec<Incoming<()>>, Failure> {
        let lost = || {
            Failure::new(format!(
                "{}: subscription connection lost",
                self.server.connection
            ))
        };
        let messages = self.messages.as_mut().ok_or_else(lost)?;
        let first = messages.next().await;
        let Some(first) = first else {
            self.messages = None;
            return Err(lost());
        };
        let mut batch = vec![incoming(first)];
        while batch.len() < self.count {
            match messages.next().now_or_never() {
                Some(Some(m)) => batch.push(incoming(m)),
                _ => break,
            }
        }
        Ok(batch)
    }

    /// Nothing to acknowledge.
    async fn settle(&mut self, _: Vec<Settled<()>>) -> Result<(), Failure> {
        Ok(())
    }

    fn keeps_unsettled(&self) -> bool {
        false
    }

    async fn close(&mut self) {
        self.messages = None;
    }
}
