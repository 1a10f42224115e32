//! The delivery loop shared by every sink.

use std::sync::Arc;
use std::time::Duration;

use super::{Delivered, DeliveryError, Failure, Partial, SinkState, Transport};
use crate::clock::Clock;
use crate::config::DeliveryConfig;
use crate::queue::{Queue, QueueError, SinkQueue, StoredMessage};
use crate::retry::Backoff;
use crate::shutdown::Shutdown;

/// Messages read from the queue per pass at least (more if the sink's batches are
/// larger) …
pub(super) const BATCH: usize = 64;

/// … and payload bytes at most (past the first message): bounds the loop's memory.
const PEEK_BYTES: usize = 4 << 20;

pub(super) struct DeliveryLoop {
    pub queue: Arc<Queue>,
    pub fifo: Arc<SinkQueue>,
    pub state: Arc<SinkState>,
    pub policy: DeliveryConfig,
    /// Messages read from the queue per pass.
    pub peek: usize,
    pub shutdown: Shutdown,
    /// What "now" is for `max_age` (the system's; tests set their own).
    pub clock: Clock,
    /// Messages the transport sent but whose acknowledgement it still awaits
    /// ([`Delivered::InFlight`]), oldest first: the next batch starts with them, so a
    /// window slides across batches instead of draining at each batch's end. At most
    /// a window (the rest of a batch that was sent whole).
    pub carry: Vec<StoredMessage>,
}

/// What became of a message in this pass.
#[derive(Debug)]
enum Outcome {
    Acked,
    /// Older than `max_age` when its turn came: dropped, counted.
    Expired,
    /// Refused by the sink, or given up after `max_attempts`: a dead letter.
    Refused(DeliveryError),
}

/// Failed attempts at the head of the FIFO, for `max_attempts`.
#[derive(Default)]
struct Attempts {
    id: Option<crate::queue::record::MessageId>,
    failed: u32,
}

impl DeliveryLoop {
    /// Delivers the sink's FIFO in order, forever: wait for messages, hand the head to
    /// the transport in batches of its choosing until each message is acknowledged,
    /// refused or given up, retrying with backoff in between, then delete (or
    /// dead-letter) them. Stops at shutdown; messages in flight then stay queued and
    /// are delivered again after the restart (at-least-once).
    pub async fn run<T: Transport>(mut self, transport: T) {
        let mut backoff = Backoff::new(&self.policy.retry);
        // Kept across passes: a message in flight when a pass ends is still counted.
        let mut attempts = Attempts::default();
        while !self.shutdown.is_stopping() {
            let mut batch = match self.next_batch().await {
                Ok(Some(batch)) => batch,
                Ok(None) => continue,
                Err(e) => {
                    tracing::error!(sink = %self.fifo.name, error = %e, "cannot read the queue");
                    self.state.failed(&e);
                    if self.shutdown.sleep(Duration::from_secs(1)).await {
                        break;
                    }
                    continue;
                }
            };
            self.state.set_in_flight(batch.len() as u64);
            let outcomes = self
                .deliver(&transport, &batch, &mut backoff, &mut attempts)
                .await;
            if !self.settle(&batch[..outcomes.len()], &outcomes).await {
                break;
            }
            // Unsettled messages: in flight (or left at shutdown, when the loop ends).
            self.carry = batch.split_off(outcomes.len());
            self.state.set_in_flight(self.carry.len() as u64);
        }
    }

    /// The head of the FIFO; `None` after waiting for messages (or shutdown). Records
    /// that cannot be read are parked as dead letters first. Messages carried over from
    /// the last pass come first, then the rest of the head (the carried ones are not
    /// read again); with a carry, it does not wait for more.
    async fn next_batch(&mut self) -> Result<Option<Vec<StoredMessage>>, QueueError> {
        let carry = std::mem::take(&mut self.carry);
        let (queue, fifo) = (Arc::clone(&self.queue), Arc::clone(&self.fifo));
        let max = self.peek.saturating_sub(carry.len()).max(1);
        let carried_bytes: usize = carry.iter().map(|m| m.payload.len()).sum();
        let max_bytes = PEEK_BYTES.saturating_sub(carried_bytes).max(1);
        let (mut batch, peeked) = tokio::task::spawn_blocking(move || {
            let peeked = queue.peek(&fifo, &carry, max, max_bytes)?;
            for bad in &peeked.unreadable {
                tracing::error!(sink = %fifo.name, error = %bad.error,
                    "unreadable queue record: moved to the dead letters");
                queue.park_unreadable(&fifo, bad)?;
            }
            Ok::<_, QueueError>((carry, peeked))
        })
        .await??;
        batch.extend(peeked.messages);
        if !batch.is_empty() {
            return Ok(Some(batch));
        }
        if !peeked.unreadable.is_empty() {
            return Ok(None);
        }
        tokio::select! {
            _ = self.fifo.wait_for_messages() => {}
            _ = self.shutdown.stopped() => {}
        }
        Ok(None)
    }

    /// Hands `batch` to the transport until every message is acknowledged, expired or
    /// refused, backing off after transient failures. Returns the fate of each message
    /// settled, in order: all of them, unless shutdown came first or the transport
    /// still awaits the acknowledgement of the rest ([`Delivered::InFlight`]).
    async fn deliver<T: Transport>(
        &mut self,
        transport: &T,
        batch: &[StoredMessage],
        backoff: &mut Backoff,
        attempts: &mut Attempts,
    ) -> Vec<Outcome> {
        let mut pass = Pass {
            outcomes: Vec::with_capacity(batch.len()),
            isolate: 0,
        };
        while pass.outcomes.len() < batch.len() {
            let head = &batch[pass.outcomes.len()..];
            if self.expired(&head[0]) {
                pass.outcomes.push(Outcome::Expired);
                continue;
            }
            let n = if pass.isolate > 0 {
                1
            } else {
                transport.batch_len(head).clamp(1, head.len())
            };
            let result = tokio::select! {
                r = transport.deliver(&head[..n]) => r,
                _ = self.shutdown.stopped() => break,
            };
            let (acked, error) = match result {
                Ok(Delivered::All) => (n, None),
                Ok(Delivered::InFlight { acked }) => {
                    self.acked(&mut pass, acked.min(n), backoff);
                    if pass.isolate > 0 {
                        continue; // one by one: the same message again, now awaited
                    }
                    break; // settle what is acknowledged; the next pass starts with the rest
                }
                Err(Partial { acked, error }) => (acked.min(n - 1), Some(error)),
            };
            self.acked(&mut pass, acked, backoff);
            let Some(error) = error else { continue };
            let unsettled = if transport.pinpoints_refusals() {
                1
            } else {
                n - acked
            };
            let judged = self.judge(error, &head[acked], unsettled, attempts);
            if self.follow(judged, &mut pass, backoff).await {
                break;
            }
        }
        pass.outcomes
    }

    /// The next `n` messages of the pass were acknowledged.
    fn acked(&self, pass: &mut Pass, n: usize, backoff: &mut Backoff) {
        if n > 0 {
            backoff.reset();
            self.state.delivered(n);
            pass.outcomes.extend((0..n).map(|_| Outcome::Acked));
            pass.isolate = pass.isolate.saturating_sub(n);
        }
    }

    /// Does what a failed attempt was judged to need. True if shutdown came first.
    async fn follow(&mut self, judged: Judged, pass: &mut Pass, backoff: &mut Backoff) -> bool {
        match judged {
            Judged::Isolate(k) => pass.isolate = k,
            Judged::Refused(error) => {
                pass.outcomes.push(Outcome::Refused(error));
                pass.isolate = pass.isolate.saturating_sub(1);
            }
            Judged::Retry => {
                let delay = backoff.next_delay();
                tracing::warn!(sink = %self.fifo.name, retry_in = ?delay,
                    attempt = backoff.attempts(), last_error = ?self.state.last_error(),
                    "delivery failed");
                return self.shutdown.sleep(delay).await;
            }
        }
        false
    }

    /// What a failed attempt at `failing` (with `unsettled` messages from it on in the
    /// call that the error may be about) means: isolate the batch's culprit,
    /// dead-letter it, or retry.
    fn judge(
        &self,
        error: DeliveryError,
        failing: &StoredMessage,
        unsettled: usize,
        attempts: &mut Attempts,
    ) -> Judged {
        match error {
            DeliveryError::Permanent(reason) if unsettled > 1 => {
                tracing::info!(sink = %self.fifo.name, %reason, messages = unsettled,
                    "batch refused: sending its messages one by one");
                Judged::Isolate(unsettled)
            }
            error @ DeliveryError::Permanent(_) => self.refuse(failing, error),
            DeliveryError::Transient(reason) => {
                self.state.failed(&reason);
                if attempts.id != Some(failing.id) {
                    *attempts = Attempts {
                        id: Some(failing.id),
                        failed: 0,
                    };
                }
                attempts.failed += 1;
                match self.policy.max_attempts {
                    Some(max) if attempts.failed >= max.get() => {
                        let given_up = Failure::GaveUp {
                            attempts: attempts.failed,
                            last: Box::new(reason),
                        };
                        self.refuse(failing, DeliveryError::Permanent(given_up))
                    }
                    _ => Judged::Retry,
                }
            }
        }
    }

    fn refuse(&self, message: &StoredMessage, error: DeliveryError) -> Judged {
        tracing::warn!(sink = %self.fifo.name, id = %message.id, reason = %error,
            "message moved to the dead letters");
        self.state.refused(&error);
        Judged::Refused(error)
    }

    /// Whether `message` is older than `max_age`.
    fn expired(&self, message: &StoredMessage) -> bool {
        self.policy.max_age.is_some_and(|max| {
            let age = self.clock.now_ms().saturating_sub(message.enqueued_ms);
            Duration::from_millis(age) > max
        })
    }

    /// Deletes acknowledged and expired messages and dead-letters refused ones
    /// (`outcomes[i]` for `batch[i]`), off the reactor. If the queue cannot take the
    /// deletes (its storage fails), backs off and tries again — without sending the
    /// messages again meanwhile. Returns false if shutdown came first.
    async fn settle(&mut self, batch: &[StoredMessage], outcomes: &[Outcome]) -> bool {
        if outcomes.is_empty() {
            return true;
        }
        let mut backoff = Backoff::new(&self.policy.retry);
        loop {
            match self.settle_once(batch, outcomes).await {
                Ok(expired) => {
                    if expired > 0 {
                        self.state.expired(expired);
                        tracing::warn!(sink = %self.fifo.name, expired, max_age = ?self.policy.max_age,
                            "messages older than max_age dropped");
                    }
                    if self.state.unstalled() {
                        tracing::info!(sink = %self.fifo.name, "delivered messages are deleted again");
                    }
                    return true;
                }
                Err(e) => {
                    if self.state.stalled(&e) {
                        tracing::error!(sink = %self.fifo.name, error = %e,
                            "cannot delete delivered messages: retrying, not resending");
                    }
                    if self.shutdown.sleep(backoff.next_delay()).await {
                        return false;
                    }
                }
            }
        }
    }

    /// One try at [`DeliveryLoop::settle`]. Returns how many messages expired.
    async fn settle_once(
        &self,
        batch: &[StoredMessage],
        outcomes: &[Outcome],
    ) -> Result<usize, QueueError> {
        let (queue, fifo) = (Arc::clone(&self.queue), Arc::clone(&self.fifo));
        let work: Vec<(StoredMessage, Settle)> = batch
            .iter()
            .zip(outcomes)
            .map(|(m, o)| (m.clone(), Settle::from(o)))
            .collect();
        tokio::task::spawn_blocking(move || {
            let mut expired = 0;
            for (m, settle) in &work {
                match settle {
                    Settle::Delete { expired: e } => {
                        queue.ack(&fifo, m)?;
                        expired += usize::from(*e);
                    }
                    Settle::Dead { reason, status } => {
                        queue.dead_letter(&fifo, m, reason, *status)?
                    }
                }
            }
            Ok(expired)
        })
        .await?
    }
}

/// One call of [`DeliveryLoop::deliver`]: the fates so far, in order, and how many
/// messages are still to be sent one by one (after a batch was refused).
struct Pass {
    outcomes: Vec<Outcome>,
    isolate: usize,
}

/// What a failed attempt means for the batch.
enum Judged {
    /// Send this many one by one.
    Isolate(usize),
    Refused(DeliveryError),
    Retry,
}

/// The queue operation an outcome needs (owned, for the blocking task).
enum Settle {
    Delete { expired: bool },
    Dead { reason: String, status: Option<u16> },
}

impl From<&Outcome> for Settle {
    fn from(o: &Outcome) -> Self {
        match o {
            Outcome::Acked => Settle::Delete { expired: false },
            Outcome::Expired => Settle::Delete { expired: true },
            Outcome::Refused(e) => Settle::Dead {
                reason: e.to_string(),
                status: e.failure().status_code(),
            },
        }
    }
}

#[cfg(test)]
mod tests;
