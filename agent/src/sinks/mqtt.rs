//! MQTT transport: a message leaves the queue only when the broker acknowledged it
//! (PUBACK for QoS 1, PUBCOMP for QoS 2; QoS 0 once written to the connection).
//! Up to `max_in_flight` publishes go out before the first acknowledgement is awaited;
//! the delivery loop deletes the acknowledged prefix.
//!
//! rumqttc assigns packet ids and reports `Outgoing::Publish(pkid)` in the order
//! publishes were enqueued; the transport matches those to its waiters in that order,
//! then acknowledgements by packet id. That is sound only if no enqueued publish can
//! vanish or be replayed behind the transport's back, so:
//!
//! * publishes are enqueued with `try_publish` under the lock the driver takes when the
//!   connection drops, and only while connected;
//! * on a drop, the driver (holding that lock) clears rumqttc's channel, in-flight state
//!   and replay list, and fails every waiter: the delivery loop then resends from the
//!   sled queue (never trusting rumqttc's in-memory copy, which a clean session loses);
//! * a missing acknowledgement forces a reconnect, so a late PUBACK can never match a
//!   reused packet id.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{oneshot, watch, Notify};

use super::retry::Backoff;
use super::{DeliveryError, Partial, SinkState, Transport};
use crate::config::{MqttConfig, MqttProtocol};
use crate::mqtt::{self, Client, EventLoop, SessionEvent};
use crate::queue::StoredMessage;

type Waiter = oneshot::Sender<Result<(), DeliveryError>>;

/// Connection state shared by the transport and its driver task.
#[derive(Default)]
struct Conn {
    connected: bool,
    /// Enqueued publishes whose packet id is not known yet, oldest first.
    unassigned: VecDeque<Waiter>,
    /// Sent publishes waiting for their acknowledgement.
    by_pkid: HashMap<u16, Waiter>,
}

impl Conn {
    fn fail_all(&mut self, reason: &str) {
        let waiters = self
            .unassigned
            .drain(..)
            .chain(self.by_pkid.drain().map(|(_, w)| w));
        for w in waiters.collect::<Vec<_>>() {
            let _ = w.send(Err(DeliveryError::Transient(reason.to_owned())));
        }
    }
}

pub(super) struct MqttTransport {
    client: Client,
    conn: Arc<Mutex<Conn>>,
    reconnect: Arc<Notify>,
    qos: u8,
    retain: bool,
    max_packet: usize,
    v5: bool,
    ack_timeout: Duration,
    max_in_flight: usize,
    /// For records queued without a topic (e.g. before the sink became MQTT).
    fallback_topic: String,
}

fn lock(conn: &Mutex<Conn>) -> std::sync::MutexGuard<'_, Conn> {
    conn.lock().unwrap_or_else(|e| e.into_inner())
}

impl MqttTransport {
    /// Connects (in the background, retrying) and returns the transport.
    pub fn start(
        sink: &str,
        config: &MqttConfig,
        device_id: &str,
        state: Arc<SinkState>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Self, mqtt::MqttError> {
        let client_id = config
            .client_id
            .clone()
            .unwrap_or_else(|| format!("{device_id}-{sink}"));
        let clean = config.clean_session.unwrap_or(true);
        let (client, eventloop) = mqtt::connect(config, &client_id, clean, false)?;
        let conn = Arc::new(Mutex::new(Conn::default()));
        let reconnect = Arc::new(Notify::new());
        tokio::spawn(drive(
            eventloop,
            client.clone(),
            Arc::clone(&conn),
            Arc::clone(&reconnect),
            state,
            Backoff::new(&config.retry),
            shutdown,
        ));
        let template = config.topic.clone().unwrap_or_default();
        Ok(MqttTransport {
            client,
            conn,
            reconnect,
            qos: config.qos,
            retain: config.retain,
            max_packet: config.max_packet_bytes,
            v5: config.protocol == MqttProtocol::V5,
            ack_timeout: Duration::from_millis(config.ack_timeout_ms),
            max_in_flight: config.max_in_flight,
            fallback_topic: template
                .replace("{device_id}", device_id)
                .replace("{sink}", sink)
                .replace("{handler_id}", "none"),
        })
    }

    /// An upper bound of the PUBLISH packet's size.
    fn packet_size(&self, topic: &str, message: &StoredMessage) -> usize {
        let properties = if self.v5 {
            64 + message.content_type.len()
        } else {
            0
        };
        5 + 2 + topic.len() + 2 + properties + message.payload.len()
    }
}

impl Transport for MqttTransport {
    /// The in-flight window: that many publishes go out before the first acknowledgement
    /// is awaited.
    fn batch_len(&self, head: &[StoredMessage]) -> usize {
        head.len().min(self.max_in_flight)
    }

    async fn deliver(&self, batch: &[StoredMessage]) -> Result<(), Partial> {
        let mut acks = Vec::with_capacity(batch.len());
        // Why the publishes stopped short of the whole batch, if they did.
        let mut cut = None;
        {
            let mut conn = lock(&self.conn);
            if !conn.connected {
                return Err(DeliveryError::Transient("not connected to the broker".into()).into());
            }
            for message in batch {
                let topic = message.topic.as_deref().unwrap_or(&self.fallback_topic);
                let size = self.packet_size(topic, message);
                if size > self.max_packet {
                    cut = Some(DeliveryError::Permanent(format!(
                        "message of {size} bytes exceeds max_packet_bytes {}",
                        self.max_packet
                    )));
                    break;
                }
                let published = self.client.try_publish(
                    topic,
                    self.qos,
                    self.retain,
                    message.payload.clone(),
                    &message.id.to_string(),
                    &message.content_type,
                );
                if let Err(e) = published {
                    cut = Some(DeliveryError::Transient(format!("publish: {e}")));
                    break;
                }
                let (tx, rx) = oneshot::channel();
                conn.unassigned.push_back(tx);
                acks.push(rx);
            }
        }
        let sent = acks.len();
        let deadline = tokio::time::Instant::now() + self.ack_timeout;
        for (acked, ack) in acks.into_iter().enumerate() {
            let error = match tokio::time::timeout_at(deadline, ack).await {
                Ok(Ok(Ok(()))) => continue,
                Ok(Ok(Err(e))) => e,
                Ok(Err(_)) => DeliveryError::Transient("connection reset".into()),
                Err(_) => {
                    lock(&self.conn).fail_all("superseded");
                    self.reconnect.notify_one();
                    DeliveryError::Transient(format!(
                        "no acknowledgement within {:?}; reconnecting",
                        self.ack_timeout
                    ))
                }
            };
            return Err(Partial { acked, error });
        }
        match cut {
            Some(error) => Err(Partial { acked: sent, error }),
            None => Ok(()),
        }
    }
}

/// Drives the event loop: reconnects with backoff, matches packet ids to waiters.
async fn drive(
    mut eventloop: EventLoop,
    client: Client,
    conn: Arc<Mutex<Conn>>,
    reconnect: Arc<Notify>,
    state: Arc<SinkState>,
    mut backoff: Backoff,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let event = tokio::select! {
            e = eventloop.poll() => e,
            _ = reconnect.notified() => Err("acknowledgement overdue".to_owned()),
            _ = shutdown.changed() => {
                lock(&conn).fail_all("shutting down");
                client.disconnect().await;
                return;
            }
        };
        match event {
            Ok(SessionEvent::Connected) => {
                lock(&conn).connected = true;
                backoff.reset();
                state.connected();
                tracing::info!(sink = %state.name, "connected to the MQTT broker");
            }
            Ok(SessionEvent::Sent(pkid)) => {
                let mut c = lock(&conn);
                if let Some(waiter) = c.unassigned.pop_front() {
                    if pkid == 0 {
                        let _ = waiter.send(Ok(()));
                    } else {
                        c.by_pkid.insert(pkid, waiter);
                    }
                }
            }
            Ok(SessionEvent::Acked(pkid)) => {
                if let Some(waiter) = lock(&conn).by_pkid.remove(&pkid) {
                    let _ = waiter.send(Ok(()));
                }
            }
            Ok(SessionEvent::Refused(pkid, reason)) => {
                if let Some(waiter) = lock(&conn).by_pkid.remove(&pkid) {
                    let _ = waiter.send(Err(DeliveryError::Permanent(reason)));
                }
            }
            Ok(SessionEvent::Message(_) | SessionEvent::Other) => {}
            Err(e) => {
                {
                    let mut c = lock(&conn);
                    c.connected = false;
                    eventloop.reset();
                    c.fail_all(&format!("connection lost: {e}"));
                }
                state.disconnected(&e);
                let delay = backoff.next_delay();
                tracing::warn!(sink = %state.name, error = %e, retry_in = ?delay, "MQTT connection failed");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.changed() => return,
                }
            }
        }
    }
}
