//! The delivery loop shared by every sink.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::retry::Backoff;
use super::{DeliveryError, SinkState, Transport};
use crate::config::RetryConfig;
use crate::queue::{Queue, SinkQueue, StoredMessage};

/// Messages read from the queue per pass; bounds the loop's memory.
const BATCH: usize = 64;

pub(super) struct DeliveryLoop {
    pub queue: Arc<Queue>,
    pub fifo: Arc<SinkQueue>,
    pub state: Arc<SinkState>,
    pub retry: RetryConfig,
    pub shutdown: watch::Receiver<bool>,
}

/// What became of a message in this pass.
enum Outcome {
    Acked(StoredMessage),
    Refused(StoredMessage, String),
}

impl DeliveryLoop {
    /// Delivers the sink's FIFO in order, forever: wait for messages, deliver each until
    /// the transport acknowledges or refuses it, retrying with backoff in between, then
    /// delete (or dead-letter) it. Stops at shutdown; a message in flight then stays
    /// queued and is delivered again after the restart (at-least-once).
    pub async fn run<T: Transport>(mut self, transport: T) {
        let mut backoff = Backoff::new(&self.retry);
        while !*self.shutdown.borrow() {
            let batch = match self.peek().await {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::error!(sink = %self.fifo.name, error = %e, "cannot read the queue");
                    self.state.failed(&e.to_string());
                    if self.pause(Duration::from_secs(1)).await {
                        break;
                    }
                    continue;
                }
            };
            if batch.is_empty() {
                tokio::select! {
                    _ = self.fifo.wait_for_messages() => {}
                    _ = self.shutdown.changed() => {}
                }
                continue;
            }
            self.state.set_in_flight(batch.len() as u64);
            let mut outcomes = Vec::with_capacity(batch.len());
            'batch: for message in batch {
                loop {
                    let result = tokio::select! {
                        r = transport.deliver(&message) => r,
                        _ = self.shutdown.changed() => break 'batch,
                    };
                    match result {
                        Ok(()) => {
                            backoff.reset();
                            self.state.delivered();
                            outcomes.push(Outcome::Acked(message));
                            break;
                        }
                        Err(DeliveryError::Permanent(reason)) => {
                            tracing::warn!(sink = %self.fifo.name, id = %message.id, %reason,
                                "message refused by the sink: moved to the dead-letter tree");
                            self.state.refused(&reason);
                            outcomes.push(Outcome::Refused(message, reason));
                            break;
                        }
                        Err(DeliveryError::Transient(reason)) => {
                            let delay = backoff.next_delay();
                            tracing::warn!(sink = %self.fifo.name, %reason, retry_in = ?delay,
                                attempt = backoff.attempts(), "delivery failed");
                            self.state.failed(&reason);
                            if self.pause(delay).await {
                                break 'batch;
                            }
                        }
                    }
                }
            }
            self.state.set_in_flight(0);
            self.settle(outcomes).await;
        }
    }

    async fn peek(&self) -> Result<Vec<StoredMessage>, crate::queue::QueueError> {
        let (queue, fifo) = (Arc::clone(&self.queue), Arc::clone(&self.fifo));
        tokio::task::spawn_blocking(move || queue.peek(&fifo, BATCH))
            .await
            .expect("queue read panicked")
    }

    /// Deletes acknowledged messages and dead-letters refused ones, off the reactor.
    async fn settle(&self, outcomes: Vec<Outcome>) {
        if outcomes.is_empty() {
            return;
        }
        let (queue, fifo) = (Arc::clone(&self.queue), Arc::clone(&self.fifo));
        let result = tokio::task::spawn_blocking(move || {
            for outcome in outcomes {
                match outcome {
                    Outcome::Acked(m) => queue.ack(&fifo, &m)?,
                    Outcome::Refused(m, reason) => queue.dead_letter(&fifo, &m, &reason)?,
                }
            }
            Ok::<_, crate::queue::QueueError>(())
        })
        .await
        .expect("queue write panicked");
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
