//! The delivery loop shared by every sink.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{DeliveryError, Partial, SinkState, Transport};
use crate::config::RetryConfig;
use crate::queue::{Queue, QueueError, SinkQueue, StoredMessage};
use crate::retry::Backoff;

/// Messages read from the queue per pass at least (more if the sink's batches are
/// larger); bounds the loop's memory.
pub(super) const BATCH: usize = 64;

pub(super) struct DeliveryLoop {
    pub queue: Arc<Queue>,
    pub fifo: Arc<SinkQueue>,
    pub state: Arc<SinkState>,
    pub retry: RetryConfig,
    /// Messages read from the queue per pass.
    pub peek: usize,
    pub shutdown: watch::Receiver<bool>,
}

/// What became of a message in this pass.
#[derive(Debug)]
enum Outcome {
    Acked,
    Refused(DeliveryError),
}

impl DeliveryLoop {
    /// Delivers the sink's FIFO in order, forever: wait for messages, hand the head to
    /// the transport in batches of its choosing until each message is acknowledged or
    /// refused, retrying with backoff in between, then delete (or dead-letter) them.
    /// Stops at shutdown; messages in flight then stay queued and are delivered again
    /// after the restart (at-least-once).
    pub async fn run<T: Transport>(mut self, transport: T) {
        let mut backoff = Backoff::new(&self.retry);
        while !*self.shutdown.borrow() {
            let batch = match self.next_batch().await {
                Ok(Some(batch)) => batch,
                Ok(None) => continue,
                Err(e) => {
                    tracing::error!(sink = %self.fifo.name, error = %e, "cannot read the queue");
                    self.state.failed(&e);
                    if self.pause(Duration::from_secs(1)).await {
                        break;
                    }
                    continue;
                }
            };
            self.state.set_in_flight(batch.len() as u64);
            let outcomes = self.deliver(&transport, &batch, &mut backoff).await;
            self.state.set_in_flight(0);
            self.settle(batch, outcomes).await;
        }
    }

    /// The head of the FIFO; `None` after waiting for messages (or shutdown).
    async fn next_batch(&mut self) -> Result<Option<Vec<StoredMessage>>, QueueError> {
        let (queue, fifo, max) = (Arc::clone(&self.queue), Arc::clone(&self.fifo), self.peek);
        let batch = tokio::task::spawn_blocking(move || queue.peek(&fifo, max)).await??;
        if !batch.is_empty() {
            return Ok(Some(batch));
        }
        tokio::select! {
            _ = self.fifo.wait_for_messages() => {}
            _ = self.shutdown.changed() => {}
        }
        Ok(None)
    }

    /// Hands `batch` to the transport until every message is acknowledged or refused,
    /// backing off after transient failures. Returns the fate of each message settled
    /// (all of them, unless shutdown came first), in order.
    async fn deliver<T: Transport>(
        &mut self,
        transport: &T,
        batch: &[StoredMessage],
        backoff: &mut Backoff,
    ) -> Vec<Outcome> {
        let mut outcomes = Vec::with_capacity(batch.len());
        // After a batch of several was refused: how many to send one by one, so that only
        // the refused message is dead-lettered.
        let mut isolate = 0usize;
        while outcomes.len() < batch.len() {
            let head = &batch[outcomes.len()..];
            let n = if isolate > 0 {
                1
            } else {
                transport.batch_len(head).clamp(1, head.len())
            };
            let result = tokio::select! {
                r = transport.deliver(&head[..n]) => r,
                _ = self.shutdown.changed() => break,
            };
            let (acked, error) = match result {
                Ok(()) => (n, None),
                Err(Partial { acked, error }) => (acked.min(n - 1), Some(error)),
            };
            if acked > 0 {
                backoff.reset();
                self.state.delivered(acked);
                outcomes.extend((0..acked).map(|_| Outcome::Acked));
                isolate = isolate.saturating_sub(acked);
            }
            match error {
                None => {}
                Some(DeliveryError::Permanent(reason)) if n - acked > 1 => {
                    tracing::info!(sink = %self.fifo.name, %reason, messages = n - acked,
                        "batch refused: sending its messages one by one");
                    isolate = n - acked;
                }
                Some(error @ DeliveryError::Permanent(_)) => {
                    tracing::warn!(sink = %self.fifo.name, id = %head[acked].id, reason = %error,
                        "message refused by the sink: moved to the dead-letter tree");
                    self.state.refused(&error);
                    outcomes.push(Outcome::Refused(error));
                    isolate = isolate.saturating_sub(1);
                }
                Some(DeliveryError::Transient(reason)) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(sink = %self.fifo.name, %reason, retry_in = ?delay,
                        attempt = backoff.attempts(), "delivery failed");
                    self.state.failed(&reason);
                    if self.pause(delay).await {
                        break;
                    }
                }
            }
        }
        outcomes
    }

    /// Deletes acknowledged messages and dead-letters refused ones (`outcomes[i]` for
    /// `batch[i]`), off the reactor.
    async fn settle(&self, batch: Vec<StoredMessage>, outcomes: Vec<Outcome>) {
        if outcomes.is_empty() {
            return;
        }
        let (queue, fifo) = (Arc::clone(&self.queue), Arc::clone(&self.fifo));
        let result = tokio::task::spawn_blocking(move || {
            for (m, outcome) in batch.iter().zip(outcomes) {
                match outcome {
                    Outcome::Acked => queue.ack(&fifo, m)?,
                    Outcome::Refused(error) => queue.dead_letter(&fifo, m, error.failure())?,
                }
            }
            Ok::<_, QueueError>(())
        })
        .await
        .map_err(QueueError::from)
        .and_then(|r| r);
        if let Err(e) = result {
            // The messages stay queued and are delivered again: at-least-once.
            tracing::error!(sink = %self.fifo.name, error = %e, "cannot delete delivered messages");
        }
    }

    /// Sleeps for `delay`; true if shutdown came first.
    async fn pause(&mut self, delay: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(delay) => *self.shutdown.borrow(),
            _ = self.shutdown.changed() => true,
        }
    }
}

#[cfg(test)]
mod tests;
