//! MQTT transport: a message leaves the queue only when the broker acknowledged it
//! (PUBACK for QoS 1, PUBCOMP for QoS 2; QoS 0 once written to the connection).
//! Up to `max_in_flight` publishes are out at any time, in a window that slides across
//! the delivery loop's batches; the loop deletes the acknowledged prefix.
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
//!   reused packet id;
//! * a publish the transport stops awaiting on the same connection (its message
//!   expired meanwhile) keeps its packet id until its acknowledgement comes: rumqttc
//!   does not reuse an unacknowledged id.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{oneshot, watch, Notify};

use super::{Delivered, DeliveryError, Failure, Partial, SinkState, Transport};
use crate::config::{MqttProtocol, MqttSinkConfig, QoS, RetryConfig};
use crate::mqtt::{self, Client, EventLoop, SessionError, SessionEvent};
use crate::queue::record::MessageId;
use crate::queue::{SinkQueue, StoredMessage};
use crate::retry::Backoff;
use crate::sync::lock;
use crate::tls::TlsError;

type Waiter = oneshot::Sender<Result<(), DeliveryError>>;

/// Publishes waiting for the broker, matched to acknowledgements by packet id.
///
/// rumqttc reports `Outgoing::Publish(pkid)` in the order publishes were enqueued, so a
/// publish's waiter moves from `unassigned` (oldest first) to `by_pkid` when its
/// packet id is known, and leaves with the acknowledgement of that id.
#[derive(Default)]
struct InFlight {
    connected: bool,
    /// Counts connections: publishes carried from an earlier one are not awaited.
    epoch: u64,
    /// Enqueued publishes whose packet id is not known yet, oldest first.
    unassigned: VecDeque<Waiter>,
    /// Sent publishes waiting for their acknowledgement.
    by_pkid: HashMap<u16, Waiter>,
}

impl InFlight {
    /// A publish was enqueued; `waiter` hears how it went.
    fn enqueued(&mut self, waiter: Waiter) {
        self.unassigned.push_back(waiter);
    }

    /// The oldest enqueued publish went out as `pkid` (0: QoS 0, done once written).
    fn sent(&mut self, pkid: u16) {
        if let Some(waiter) = self.unassigned.pop_front() {
            if pkid == 0 {
                let _ = waiter.send(Ok(()));
            } else {
                self.by_pkid.insert(pkid, waiter);
            }
        }
    }

    /// The broker answered for `pkid`.
    fn answered(&mut self, pkid: u16, result: Result<(), DeliveryError>) {
        if let Some(waiter) = self.by_pkid.remove(&pkid) {
            let _ = waiter.send(result);
        }
    }

    /// Fails every waiter (the connection is gone; their publishes may be lost).
    fn fail_all(&mut self, failure: impl Fn() -> Failure) {
        let waiters = self
            .unassigned
            .drain(..)
            .chain(self.by_pkid.drain().map(|(_, w)| w));
        for w in waiters.collect::<Vec<_>>() {
            let _ = w.send(Err(DeliveryError::Transient(failure())));
        }
    }
}

pub(super) struct MqttTransport {
    /// The sink's FIFO: new messages end a call that only awaits acknowledgements.
    fifo: Arc<SinkQueue>,
    client: Client,
    conn: Arc<Mutex<InFlight>>,
    reconnect: Arc<Notify>,
    qos: QoS,
    retain: bool,
    max_packet: usize,
    v5: bool,
    ack_timeout: Duration,
    max_in_flight: usize,
    /// Publishes still in flight when the last call returned, oldest first.
    carried: Mutex<VecDeque<Sent>>,
    /// For records queued without a topic (e.g. before the sink became MQTT).
    fallback_topic: String,
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
        shutdown: watch::Receiver<bool>,
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
            state,
            backoff: Backoff::new(retry),
        };
        tokio::spawn(driver.run(eventloop, shutdown));
        Ok(MqttTransport {
            fifo,
            client,
            conn,
            reconnect,
            qos: connection.qos,
            retain: config.retain,
            max_packet: connection.max_packet_bytes,
            v5: connection.protocol == MqttProtocol::V5,
            ack_timeout: config.ack_timeout,
            max_in_flight: config.max_in_flight,
            carried: Mutex::new(VecDeque::new()),
            fallback_topic,
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
    /// The whole head: the in-flight window slides over it.
    fn batch_len(&self, head: &[StoredMessage]) -> usize {
        head.len()
    }

    /// Each publish has its own acknowledgement (or MQTT 5 refusal).
    fn pinpoints_refusals(&self) -> bool {
        true
    }

    /// Publishes `batch` through a sliding window of `max_in_flight`: the next message
    /// goes out as soon as the oldest in flight is acknowledged, and acknowledgements
    /// are taken in order. Once the whole batch is out, the call returns
    /// [`Delivered::InFlight`] and the window carries over to the next batch (which
    /// starts with its messages); a call that only awaits acknowledgements returns so
    /// too as soon as newer messages are queued. The window drains only when there is
    /// nothing left to send. (A window that drains stalls on brokers that leave Nagle's
    /// algorithm on: they hold back the later acknowledgements until the agent's delayed
    /// ACK, 40 ms; a publish going out carries that ACK at once.)
    async fn deliver(&self, batch: &[StoredMessage]) -> Result<Delivered, Partial> {
        let mut window = self.resume(batch);
        let (mut next, mut acked) = (window.len(), 0);
        let mut sent_new = false;
        // Why publishing stopped short of the batch, if it did.
        let mut cut = None;
        loop {
            while cut.is_none() && next < batch.len() && window.len() < self.max_in_flight {
                match self.publish_one(&batch[next]) {
                    Ok(sent) => {
                        window.push_back(sent);
                        next += 1;
                        sent_new = true;
                    }
                    Err(e) => cut = Some(e),
                }
            }
            if cut.is_none() && next == batch.len() && sent_new && !window.is_empty() {
                self.carry_over(window);
                return Ok(Delivered::InFlight { acked });
            }
            // Everything is out and awaited: newer messages in the queue end the call
            // (the loop reads them and the next call publishes them as the window
            // slides) rather than waiting for the whole window.
            let idle = cut.is_none() && next == batch.len();
            let Some(front) = window.front_mut() else {
                break;
            };
            let answer = tokio::select! {
                biased;
                answer = tokio::time::timeout_at(front.deadline, &mut front.ack) => Some(answer),
                _ = self.fifo.wait_for_messages(), if idle => None,
            };
            let Some(answer) = answer else {
                self.carry_over(window);
                return Ok(Delivered::InFlight { acked });
            };
            window.pop_front();
            let error = match answer {
                Ok(Ok(Ok(()))) => {
                    acked += 1;
                    continue;
                }
                // Refused: the rest of the window is still in flight, and the next call
                // (for the messages after this one) takes it up.
                Ok(Ok(Err(e @ DeliveryError::Permanent(_)))) => {
                    self.carry_over(window);
                    e
                }
                Ok(Ok(Err(e))) => e,
                Ok(Err(_)) => DeliveryError::Transient(Failure::ShuttingDown),
                Err(_) => {
                    lock(&self.conn).fail_all(|| Failure::AckTimeout(self.ack_timeout));
                    self.reconnect.notify_one();
                    DeliveryError::Transient(Failure::AckTimeout(self.ack_timeout))
                }
            };
            return Err(Partial { acked, error });
        }
        self.carry_over(window);
        match cut {
            Some(error) => Err(Partial { acked, error }),
            None => Ok(Delivered::All),
        }
    }
}

/// A publish on its way: the message, its acknowledgement, when to give up on it, and
/// the connection it went out on.
struct Sent {
    id: MessageId,
    ack: Ack,
    deadline: tokio::time::Instant,
    epoch: u64,
}

type Ack = oneshot::Receiver<Result<(), DeliveryError>>;

impl MqttTransport {
    /// Takes up the publishes still in flight from the last call, for the messages the
    /// batch starts with. A carried publish whose message is not next in the batch (the
    /// loop expired it meanwhile) is no longer awaited: its acknowledgement is ignored.
    /// If the connection dropped since, none is (their waiters failed): the batch is
    /// published again from its start, in order.
    fn resume(&self, batch: &[StoredMessage]) -> VecDeque<Sent> {
        let carried = std::mem::take(&mut *lock(&self.carried));
        let epoch = lock(&self.conn).epoch;
        let mut window = VecDeque::with_capacity(carried.len());
        if carried.iter().any(|sent| sent.epoch != epoch) {
            return window;
        }
        for sent in carried {
            if batch.get(window.len()).is_some_and(|m| m.id == sent.id) {
                window.push_back(sent);
            }
        }
        window
    }

    /// Keeps the publishes still in flight for the next call, oldest first.
    fn carry_over(&self, window: VecDeque<Sent>) {
        *lock(&self.carried) = window;
    }

    /// Enqueues one publish (while connected, under the lock the driver takes on a
    /// drop); its acknowledgement comes through the returned receiver.
    fn publish_one(&self, message: &StoredMessage) -> Result<Sent, DeliveryError> {
        let mut conn = lock(&self.conn);
        if !conn.connected {
            return Err(DeliveryError::Transient(Failure::NotConnected));
        }
        let topic = message.topic.as_deref().unwrap_or(&self.fallback_topic);
        let size = self.packet_size(topic, message);
        if size > self.max_packet {
            let max = self.max_packet;
            return Err(DeliveryError::Permanent(Failure::TooLarge { size, max }));
        }
        self.client
            .try_publish(
                topic,
                self.qos,
                self.retain,
                message.payload.clone(),
                &message.id.to_string(),
                &message.content_type,
            )
            .map_err(|e| DeliveryError::Transient(Failure::Publish(Box::new(e))))?;
        let (tx, rx) = oneshot::channel();
        conn.enqueued(tx);
        Ok(Sent {
            id: message.id,
            ack: rx,
            deadline: tokio::time::Instant::now() + self.ack_timeout,
            epoch: conn.epoch,
        })
    }
}

/// Drives the event loop: reconnects with backoff, matches packet ids to waiters.
struct Driver {
    client: Client,
    conn: Arc<Mutex<InFlight>>,
    reconnect: Arc<Notify>,
    state: Arc<SinkState>,
    backoff: Backoff,
}

impl Driver {
    async fn run(mut self, mut eventloop: EventLoop, mut shutdown: watch::Receiver<bool>) {
        loop {
            let event = tokio::select! {
                e = eventloop.poll() => e.map_err(Arc::new),
                _ = self.reconnect.notified() => Err(Arc::new(SessionError::AckOverdue)),
                _ = shutdown.changed() => {
                    lock(&self.conn).fail_all(|| Failure::ShuttingDown);
                    self.client.disconnect().await;
                    return;
                }
            };
            match event {
                Ok(event) => self.on_event(event),
                Err(e) => {
                    {
                        let mut c = lock(&self.conn);
                        c.connected = false;
                        eventloop.reset();
                        c.fail_all(|| Failure::ConnectionLost(Arc::clone(&e)));
                    }
                    self.state.disconnected(&e);
                    let delay = self.backoff.next_delay();
                    tracing::warn!(sink = %self.state.name, error = %e, retry_in = ?delay,
                        "MQTT connection failed");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.changed() => return,
                    }
                }
            }
        }
    }

    fn on_event(&mut self, event: SessionEvent) {
        match event {
            SessionEvent::Connected => {
                {
                    let mut conn = lock(&self.conn);
                    conn.connected = true;
                    conn.epoch += 1;
                }
                self.backoff.reset();
                self.state.connected();
                tracing::info!(sink = %self.state.name, "connected to the MQTT broker");
            }
            SessionEvent::Sent(pkid) => lock(&self.conn).sent(pkid),
            SessionEvent::Acked(pkid) => lock(&self.conn).answered(pkid, Ok(())),
            SessionEvent::Refused(pkid, reason) => {
                let refused = DeliveryError::Permanent(Failure::BrokerRefused(reason));
                lock(&self.conn).answered(pkid, Err(refused));
            }
            SessionEvent::Message(_) | SessionEvent::Subscribed | SessionEvent::Other => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiter(conn: &mut InFlight) -> oneshot::Receiver<Result<(), DeliveryError>> {
        let (tx, rx) = oneshot::channel();
        conn.enqueued(tx);
        rx
    }

    fn outcome(
        rx: &mut oneshot::Receiver<Result<(), DeliveryError>>,
    ) -> Option<Result<(), String>> {
        rx.try_recv().ok().map(|r| r.map_err(|e| e.to_string()))
    }

    #[test]
    fn acknowledgements_are_matched_by_packet_id_in_any_order() {
        let mut conn = InFlight::default();
        let (mut a, mut b, mut c) = (waiter(&mut conn), waiter(&mut conn), waiter(&mut conn));
        // Sent in enqueue order, with the ids rumqttc chose.
        conn.sent(7);
        conn.sent(8);
        conn.sent(9);
        assert_eq!(outcome(&mut a), None, "sent is not acknowledged");
        conn.answered(9, Ok(()));
        conn.answered(7, Ok(()));
        assert_eq!(outcome(&mut c), Some(Ok(())));
        assert_eq!(outcome(&mut a), Some(Ok(())));
        assert_eq!(outcome(&mut b), None);
        let refused = DeliveryError::Permanent(Failure::BrokerRefused("QuotaExceeded".into()));
        conn.answered(8, Err(refused));
        assert!(outcome(&mut b)
            .unwrap()
            .unwrap_err()
            .contains("QuotaExceeded"));
        assert!(conn.by_pkid.is_empty() && conn.unassigned.is_empty());
    }

    #[test]
    fn qos_0_is_done_once_sent_and_unknown_ids_are_ignored() {
        let mut conn = InFlight::default();
        let mut a = waiter(&mut conn);
        conn.answered(3, Ok(())); // a late ack of another connection's publish
        assert_eq!(outcome(&mut a), None);
        conn.sent(0);
        assert_eq!(outcome(&mut a), Some(Ok(())));
    }

    #[test]
    fn a_dropped_connection_fails_every_waiter() {
        let mut conn = InFlight::default();
        let (mut a, mut b) = (waiter(&mut conn), waiter(&mut conn));
        conn.sent(1);
        conn.fail_all(|| Failure::NotConnected);
        for rx in [&mut a, &mut b] {
            assert_eq!(outcome(rx), Some(Err("not connected to the broker".into())));
        }
        assert!(conn.by_pkid.is_empty() && conn.unassigned.is_empty());
    }
}
