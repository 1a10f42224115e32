//! The MQTT sink's in-flight window: up to `max_in_flight` publishes await their
//! acknowledgements, the next message goes out as soon as the oldest is acknowledged,
//! and what is still in flight when a call returns is carried into the next call
//! (the delivery loop's next batch starts with those messages), so the window slides
//! across batches instead of draining at each batch's end.
//!
//! The window knows the broker only through a [`Link`]: rumqttc in the agent
//! (`link.rs`), a script in the tests, which drive every path of this state machine.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::queue::record::MessageId;
use crate::queue::{SinkQueue, StoredMessage};
use crate::sinks::{Delivered, DeliveryError, Failure, Partial};
use crate::sync::lock;

/// How one publish went: acknowledged, or why not.
pub(in crate::sinks) type Ack = oneshot::Receiver<Result<(), DeliveryError>>;

/// The broker connection, as the window uses it.
pub(in crate::sinks) trait Link: Send + Sync + 'static {
    /// Enqueues `message` for publishing on the current connection; its answer comes
    /// through the [`Ack`]. Fails at once when not connected, or for a message the
    /// broker could never take.
    fn publish(&self, message: &StoredMessage) -> Result<(Ack, Epoch), DeliveryError>;

    /// The current connection: publishes carried from an earlier one are not awaited
    /// any more (the connection's end failed them).
    fn epoch(&self) -> Epoch;

    /// An acknowledgement is overdue: fail every publish in flight and reconnect, so a
    /// late acknowledgement can never match a reused packet id.
    fn overdue(&self, after: Duration);
}

/// Counts connections.
pub(in crate::sinks) type Epoch = u64;

/// A publish on its way: its message, its acknowledgement, when to give up on it, and
/// the connection it went out on.
struct Sent {
    id: MessageId,
    ack: Ack,
    deadline: tokio::time::Instant,
    epoch: Epoch,
}

/// The window of one sink.
pub(super) struct Window<L> {
    link: L,
    /// The sink's FIFO: newer messages end a call that only awaits acknowledgements.
    fifo: Arc<SinkQueue>,
    max_in_flight: usize,
    ack_timeout: Duration,
    /// Publishes still in flight when the last call returned, oldest first.
    carried: Mutex<VecDeque<Sent>>,
}

/// One call's progress through its batch.
struct Pass {
    /// In flight, oldest first: for `batch[acked..next]`.
    window: VecDeque<Sent>,
    /// The next message of the batch to publish.
    next: usize,
    /// Messages at the head of the batch acknowledged in this call.
    acked: usize,
    /// Whether this call published anything.
    sent_new: bool,
    /// Why publishing stopped short of the batch's end, if it did.
    cut: Option<DeliveryError>,
}

impl Pass {
    /// Everything is out and nothing stopped it: only acknowledgements are awaited.
    fn all_out(&self, batch: &[StoredMessage]) -> bool {
        self.cut.is_none() && self.next == batch.len()
    }
}

impl<L: Link> Window<L> {
    pub fn new(link: L, fifo: Arc<SinkQueue>, max_in_flight: usize, ack_timeout: Duration) -> Self {
        Window {
            link,
            fifo,
            max_in_flight: max_in_flight.max(1),
            ack_timeout,
            carried: Mutex::new(VecDeque::new()),
        }
    }

    /// Publishes `batch` through the window: the next message goes out as soon as the
    /// oldest in flight is acknowledged, and acknowledgements are taken in order. Once
    /// the whole batch is out, the call returns [`Delivered::InFlight`] and the window
    /// carries over to the next batch (which starts with its messages); a call that
    /// only awaits acknowledgements returns so too as soon as newer messages are
    /// queued. The window drains only when there is nothing left to send. (A window
    /// that drains stalls on brokers that leave Nagle's algorithm on: they hold back
    /// the later acknowledgements until the agent's delayed ACK, 40 ms; a publish
    /// going out carries that ACK at once.)
    pub async fn deliver(&self, batch: &[StoredMessage]) -> Result<Delivered, Partial> {
        let window = self.resume(batch);
        let mut pass = Pass {
            next: window.len(),
            window,
            acked: 0,
            sent_new: false,
            cut: None,
        };
        loop {
            self.fill(&mut pass, batch);
            if pass.all_out(batch) && pass.sent_new && !pass.window.is_empty() {
                return Ok(self.hand_back(pass));
            }
            let idle = pass.all_out(batch);
            let Some(front) = pass.window.front_mut() else {
                break;
            };
            let answer = tokio::select! {
                biased;
                answer = tokio::time::timeout_at(front.deadline, &mut front.ack) => answer,
                _ = self.fifo.wait_for_messages(), if idle => return Ok(self.hand_back(pass)),
            };
            pass.window.pop_front();
            if let Err(error) = self.settle_front(answer, &mut pass) {
                return Err(Partial {
                    acked: pass.acked,
                    error,
                });
            }
        }
        self.carry_over(pass.window);
        match pass.cut {
            Some(error) => Err(Partial {
                acked: pass.acked,
                error,
            }),
            None => Ok(Delivered::All),
        }
    }

    /// Publishes the batch's next messages while the window has room.
    fn fill(&self, pass: &mut Pass, batch: &[StoredMessage]) {
        while pass.cut.is_none()
            && pass.next < batch.len()
            && pass.window.len() < self.max_in_flight
        {
            match self.link.publish(&batch[pass.next]) {
                Ok((ack, epoch)) => {
                    pass.window.push_back(Sent {
                        id: batch[pass.next].id,
                        ack,
                        deadline: tokio::time::Instant::now() + self.ack_timeout,
                        epoch,
                    });
                    pass.next += 1;
                    pass.sent_new = true;
                }
                Err(e) => pass.cut = Some(e),
            }
        }
    }

    /// Takes the answer for the oldest publish in flight (just popped): counts it, or
    /// says why the call ends. A refusal leaves the rest of the window in flight for
    /// the next call (for the messages after the refused one).
    fn settle_front(
        &self,
        answer: Result<
            Result<Result<(), DeliveryError>, oneshot::error::RecvError>,
            tokio::time::error::Elapsed,
        >,
        pass: &mut Pass,
    ) -> Result<(), DeliveryError> {
        match answer {
            Ok(Ok(Ok(()))) => {
                pass.acked += 1;
                Ok(())
            }
            Ok(Ok(Err(e @ DeliveryError::Permanent(_)))) => {
                self.carry_over(std::mem::take(&mut pass.window));
                Err(e)
            }
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(_)) => Err(DeliveryError::Transient(Failure::ShuttingDown)),
            Err(_) => {
                self.link.overdue(self.ack_timeout);
                Err(DeliveryError::Transient(Failure::AckTimeout(
                    self.ack_timeout,
                )))
            }
        }
    }

    /// Ends a call with the window still in flight.
    fn hand_back(&self, pass: Pass) -> Delivered {
        self.carry_over(pass.window);
        Delivered::InFlight { acked: pass.acked }
    }

    /// Takes up the publishes still in flight from the last call, for the messages the
    /// batch starts with. A carried publish whose message is not next in the batch (the
    /// loop expired it meanwhile) is no longer awaited: its acknowledgement is ignored.
    /// If the connection dropped since, none is (their waiters failed): the batch is
    /// published again from its start, in order.
    fn resume(&self, batch: &[StoredMessage]) -> VecDeque<Sent> {
        let carried = std::mem::take(&mut *lock(&self.carried));
        let epoch = self.link.epoch();
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
}
