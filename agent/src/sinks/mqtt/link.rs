//! The window's [`Link`] over rumqttc, and the driver that polls rumqttc's event loop.
//!
//! rumqttc assigns packet ids and reports `Outgoing::Publish(pkid)` in the order
//! publishes were enqueued; the link matches those to its waiters in that order, then
//! acknowledgements by packet id. That is sound only if no enqueued publish can vanish
//! or be replayed behind the link's back, so:
//!
//! * publishes are enqueued with `try_publish` under the lock the driver takes when the
//!   connection drops, and only while connected;
//! * on a drop, the driver (holding that lock) clears rumqttc's channel, in-flight state
//!   and replay list, and fails every waiter: the delivery loop then resends from the
//!   queue (never trusting rumqttc's in-memory copy, which a clean session loses);
//! * a missing acknowledgement forces a reconnect, so a late PUBACK can never match a
//!   reused packet id;
//! * a publish the window stops awaiting on the same connection (its message expired
//!   meanwhile) keeps its packet id until its acknowledgement comes: rumqttc does not
//!   reuse an unacknowledged id.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{oneshot, Notify};

use super::window::{Ack, Epoch, Link};
use crate::config::QoS;
use crate::mqtt::{Client, EventLoop, SessionError, SessionEvent};
use crate::queue::StoredMessage;
use crate::retry::Reconnect;
use crate::shutdown::Shutdown;
use crate::sinks::{DeliveryError, Failure, SinkState};
use crate::sync::lock;

type Waiter = oneshot::Sender<Result<(), DeliveryError>>;

/// Publishes waiting for the broker, matched to acknowledgements by packet id.
///
/// A publish's waiter moves from `unassigned` (oldest first) to `by_pkid` when its
/// packet id is known, and leaves with the acknowledgement of that id.
#[derive(Default)]
pub(in crate::sinks) struct InFlight {
    connected: bool,
    /// Counts connections: publishes carried from an earlier one are not awaited.
    epoch: Epoch,
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

/// How messages become publishes on this sink.
pub(in crate::sinks) struct Publishing {
    pub qos: QoS,
    pub retain: bool,
    pub max_packet: usize,
    pub v5: bool,
    /// For records queued without a topic (e.g. before the sink became MQTT).
    pub fallback_topic: String,
}

impl Publishing {
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

/// The rumqttc client, as a [`Link`].
pub(in crate::sinks) struct RumqttLink {
    pub client: Client,
    pub conn: Arc<Mutex<InFlight>>,
    pub reconnect: Arc<Notify>,
    pub publishing: Publishing,
}

impl Link for RumqttLink {
    /// Enqueues one publish (while connected, under the lock the driver takes on a
    /// drop).
    fn publish(&self, message: &StoredMessage) -> Result<(Ack, Epoch), DeliveryError> {
        let mut conn = lock(&self.conn);
        if !conn.connected {
            return Err(DeliveryError::Transient(Failure::NotConnected));
        }
        let p = &self.publishing;
        let topic = message.topic.as_deref().unwrap_or(&p.fallback_topic);
        let size = p.packet_size(topic, message);
        if size > p.max_packet {
            let max = p.max_packet;
            return Err(DeliveryError::Permanent(Failure::TooLarge { size, max }));
        }
        self.client
            .try_publish(
                topic,
                p.qos,
                p.retain,
                message.payload.clone(),
                &message.idempotency_key(),
                &message.content_type,
            )
            .map_err(|e| DeliveryError::Transient(Failure::Publish(Box::new(e))))?;
        let (tx, rx) = oneshot::channel();
        conn.enqueued(tx);
        Ok((rx, conn.epoch))
    }

    fn epoch(&self) -> Epoch {
        lock(&self.conn).epoch
    }

    fn overdue(&self, after: Duration) {
        lock(&self.conn).fail_all(|| Failure::AckTimeout(after));
        self.reconnect.notify_one();
    }
}

/// Drives the event loop: reconnects with backoff, matches packet ids to waiters.
pub(super) struct Driver {
    pub client: Client,
    pub conn: Arc<Mutex<InFlight>>,
    pub reconnect: Arc<Notify>,
    pub state: Arc<SinkState>,
    pub retry: Reconnect,
}

impl Driver {
    pub async fn run(mut self, mut eventloop: EventLoop, mut shutdown: Shutdown) {
        loop {
            let event = tokio::select! {
                e = eventloop.poll() => e.map_err(Arc::new),
                _ = self.reconnect.notified() => Err(Arc::new(SessionError::AckOverdue)),
                _ = shutdown.stopped() => break,
            };
            match event {
                Ok(event) => self.on_event(event),
                Err(e) => {
                    self.dropped(&mut eventloop, &e);
                    if self.retry.failed(&e, &mut shutdown).await {
                        return; // not connected: nothing to say goodbye to
                    }
                }
            }
        }
        lock(&self.conn).fail_all(|| Failure::ShuttingDown);
        self.client.disconnect().await;
    }

    /// The connection is gone: nothing enqueued survives it (see the module's doc).
    fn dropped(&self, eventloop: &mut EventLoop, e: &Arc<SessionError>) {
        let mut c = lock(&self.conn);
        c.connected = false;
        eventloop.reset();
        c.fail_all(|| Failure::ConnectionLost(Arc::clone(e)));
        drop(c);
        self.state.disconnected(e);
    }

    fn on_event(&mut self, event: SessionEvent) {
        match event {
            SessionEvent::Connected => {
                {
                    let mut conn = lock(&self.conn);
                    conn.connected = true;
                    conn.epoch += 1;
                }
                self.retry.connected();
                self.state.connected();
            }
            SessionEvent::Sent(pkid) => lock(&self.conn).sent(pkid),
            SessionEvent::Acked(pkid) => lock(&self.conn).answered(pkid, Ok(())),
            SessionEvent::Refused(pkid, refusal) => {
                let refused = DeliveryError::Permanent(Failure::BrokerRefused(refusal));
                lock(&self.conn).answered(pkid, Err(refused));
            }
            SessionEvent::Message(_) | SessionEvent::Subscribed | SessionEvent::Other => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::PublishRefusal;

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
        let refused =
            DeliveryError::Permanent(Failure::BrokerRefused(PublishRefusal::QuotaExceeded));
        conn.answered(8, Err(refused));
        assert_eq!(
            outcome(&mut b),
            Some(Err(
                "broker refused: quota exceeded (reason code 0x97)".into()
            ))
        );
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
