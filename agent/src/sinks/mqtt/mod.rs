//! MQTT transport: a message leaves the queue only when the broker acknowledged it
//! (PUBACK for QoS 1, PUBCOMP for QoS 2; QoS 0 once written to the connection).
//! Up to `max_in_flight` publishes are out at any time, in a window that slides across
//! the delivery loop's batches ([`window`]); the loop deletes the acknowledged prefix.
//! The window reaches the broker through rumqttc ([`link`]), whose event loop a driver
//! task polls, reconnecting with backoff.

mod link;
mod window;

use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::{Delivered, Partial, SinkState, Transport};
use crate::config::{MqttProtocol, MqttSinkConfig, RetryConfig};
use crate::mqtt;
use crate::queue::{SinkQueue, StoredMessage};
use crate::retry::Reconnect;
use crate::shutdown::Shutdown;
use crate::tls::TlsError;
use link::{Driver, InFlight, Publishing, RumqttLink};
use window::{Link, Window};

/// The window over a broker link: rumqttc's, or a test's fake.
pub(super) struct MqttTransport<L = RumqttLink> {
    window: Window<L>,
}

impl MqttTransport {
    /// Connects (in the background, retrying) and returns the transport for `fifo`
    /// (whose new messages it watches while its window drains). `fallback_topic` is for
    /// records queued without a topic (e.g. before the sink became MQTT).
    pub fn start(
        fifo: Arc<SinkQueue>,
        config: &MqttSinkConfig,
        device_id: &str,
        fallback_topic: String,
        retry: &RetryConfig,
        state: Arc<SinkState>,
        shutdown: Shutdown,
    ) -> Result<Self, TlsError> {
        let connection = &config.connection;
        let client_id = connection
            .client_id
            .clone()
            .unwrap_or_else(|| format!("{device_id}-{}", state.name));
        let (client, eventloop) =
            mqtt::connect(connection, &client_id, config.clean_session, false)?;
        let conn = Arc::new(Mutex::new(InFlight::default()));
        let reconnect = Arc::new(Notify::new());
        let driver = Driver {
            client: client.clone(),
            conn: Arc::clone(&conn),
            reconnect: Arc::clone(&reconnect),
            retry: Reconnect::new(retry, format!("MQTT sink `{}`", state.name)),
            state,
        };
        tokio::spawn(driver.run(eventloop, shutdown));
        let link = RumqttLink {
            client,
            conn,
            reconnect,
            publishing: Publishing {
                qos: connection.qos,
                retain: config.retain,
                max_packet: connection.max_packet_bytes,
                v5: connection.protocol == MqttProtocol::V5,
                fallback_topic,
            },
        };
        Ok(MqttTransport {
            window: Window::new(link, fifo, config.max_in_flight, config.ack_timeout),
        })
    }
}

impl<L: Link> Transport for MqttTransport<L> {
    /// The whole head: the in-flight window slides over it.
    fn batch_len(&self, head: &[StoredMessage]) -> usize {
        head.len()
    }

    /// Each publish has its own acknowledgement (or MQTT 5 refusal).
    fn pinpoints_refusals(&self) -> bool {
        true
    }

    async fn deliver(&self, batch: &[StoredMessage]) -> Result<Delivered, Partial> {
        self.window.deliver(batch).await
    }
}

#[cfg(test)]
mod tests;
