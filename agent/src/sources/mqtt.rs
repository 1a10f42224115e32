//! MQTT source: subscribes, and acknowledges each message (PUBACK) only once what its
//! plugin made of it is on disk. With a persistent session (the default for sources),
//! the broker keeps what was not acknowledged and sends it again.

use std::collections::VecDeque;

use super::incoming::Incoming;
use super::run::{Failure, Settled, Source};
use crate::config::MqttSourceConfig;
use crate::mqtt::{self, Client, EventLoop, Received, SessionEvent};
use crate::tls::TlsError;

/// Most messages handed to the pipeline at once (those the event loop already holds).
const BATCH: usize = 64;

pub(super) struct MqttSource {
    config: MqttSourceConfig,
    client: Client,
    eventloop: EventLoop,
    /// Messages that arrived while subscribing, or behind the one `receive` waited for.
    early: VecDeque<Box<Received>>,
}

impl MqttSource {
    pub fn new(config: &MqttSourceConfig, client_id: String) -> Result<MqttSource, TlsError> {
        let (client, eventloop) =
            mqtt::connect(&config.connection, &client_id, config.clean_session, true)?;
        Ok(MqttSource {
            config: config.clone(),
            client,
            eventloop,
            early: VecDeque::new(),
        })
    }

    /// The next event of the session; a connection failure is the loop's to handle
    /// (polling again reconnects).
    async fn poll(&mut self) -> Result<SessionEvent, Failure> {
        self.eventloop.poll().await.map_err(Failure::new)
    }
}

impl Source for MqttSource {
    type Handle = Box<Received>;

    /// Polls until the broker accepted the connection and every subscription (a resumed
    /// session may deliver messages before that: they are kept).
    async fn connect(&mut self) -> Result<(), Failure> {
        self.early.clear();
        while !matches!(self.poll().await?, SessionEvent::Connected) {}
        for topic in &self.config.topics {
            self.client
                .subscribe(topic, self.config.connection.qos)
                .await
                .map_err(Failure::new)?;
        }
        let mut acked = 0;
        while acked < self.config.topics.len() {
            match self.poll().await? {
                SessionEvent::Subscribed => acked += 1,
                SessionEvent::Message(m) => self.early.push_back(m),
                _ => {}
            }
        }
        Ok(())
    }

    async fn receive(&mut self) -> Result<Vec<Incoming<Self::Handle>>, Failure> {
        while self.early.is_empty() {
            if let SessionEvent::Message(m) = self.poll().await? {
                self.early.push_back(m);
            }
        }
        let n = self.early.len().min(BATCH);
        Ok(self
            .early
            .drain(..n)
            .map(|m| {
                let (subject, payload) = (m.topic.clone(), m.payload.clone());
                let redelivered = m.redelivered();
                let mut incoming = Incoming::new(m, subject, payload);
                incoming.redelivered = redelivered;
                incoming
            })
            .collect())
    }

    /// PUBACK for each: MQTT has no refusal, so a refused message is acknowledged too
    /// (and counted). An acknowledgement waits in rumqttc's request channel until the
    /// event loop sends it: when the channel is full, the loop is polled here (messages
    /// it brings are kept for `receive`).
    async fn settle(&mut self, settled: Vec<Settled<Self::Handle>>) -> Result<(), Failure> {
        for s in settled {
            let (Settled::Accepted(m) | Settled::Refused(m, _)) = s;
            while self.client.try_ack(&m).is_err() {
                if let SessionEvent::Message(m) = self.poll().await? {
                    self.early.push_back(m);
                }
            }
        }
        Ok(())
    }

    async fn close(&mut self) {
        self.client.disconnect().await;
    }
}
