//! The one loop of every source, as the sinks have one delivery loop: connect (and
//! subscribe), receive a batch, hand it to the pipeline, acknowledge what became
//! durable and hand back what the plugin refused, and on any failure reconnect with
//! backoff. A message the queue cannot take now (507: full, the disk reserve) is not
//! acknowledged: the loop keeps it, waits and tries again, and the source holds back
//! the rest (prefetch, pending entries), so it stays at the source until there is room.

use std::future::Future;
use std::sync::Arc;

use super::incoming::Incoming;
use super::state::{SourceState, SourceStatus};
use crate::config::{RetryConfig, SourceDelivery};
use crate::pipeline::{Pipeline, PipelineError};
use crate::queue::QueueError;
use crate::retry::{Backoff, Reconnect};
use crate::shutdown::Shutdown;

/// Why a source's connection failed (the loop reconnects), or why a settle left
/// messages at the source while the connection is fine (the loop notes it and goes on:
/// the source's own redelivery brings them back).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    message: String,
    connection: ConnectionState,
}

/// Whether a [`Failure`] cost the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConnectionState {
    Lost,
    Kept,
}

impl Failure {
    /// The connection (or the source behind it) failed: reconnect.
    pub fn new(what: impl std::fmt::Display) -> Failure {
        Failure {
            message: what.to_string(),
            connection: ConnectionState::Lost,
        }
    }

    /// Some messages were left at the source, unacknowledged, for a reason of their
    /// own (say, their copy to a dead key failed); the connection works.
    #[cfg(feature = "redis")]
    pub fn left_at_source(what: impl std::fmt::Display) -> Failure {
        Failure {
            message: what.to_string(),
            connection: ConnectionState::Kept,
        }
    }
}

/// What became of a message, for its source to settle it.
#[derive(Debug)]
pub enum Settled<H> {
    /// What its plugin made of it is durable.
    Accepted(H),
    /// Its plugin refused it (or it is not an event): handed back the source's way.
    Refused(H, String),
}

/// A system messages come from.
pub trait Source: Send + 'static {
    /// What the system needs to acknowledge a message.
    type Handle: Send + 'static;

    /// Connects and subscribes (again, after a failure).
    fn connect(&mut self) -> impl Future<Output = Result<(), Failure>> + Send;

    /// The next messages: at least one (waits for them), at most a batch.
    fn receive(
        &mut self,
    ) -> impl Future<Output = Result<Vec<Incoming<Self::Handle>>, Failure>> + Send;

    /// Acknowledges and hands back messages, in the order received.
    fn settle(
        &mut self,
        settled: Vec<Settled<Self::Handle>>,
    ) -> impl Future<Output = Result<(), Failure>> + Send;

    /// Lets go of the connection (shutdown; a reconnect calls `connect` again, which
    /// replaces it).
    fn close(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// Whether a message left unsettled stays at the source (false: Redis pub/sub,
    /// which cannot keep a message: one the queue refuses is dropped and counted).
    fn keeps_unsettled(&self) -> bool {
        true
    }
}

/// What the loop of one source needs besides the source.
pub struct Feed {
    pub name: String,
    pub plugin: String,
    pub deliver: SourceDelivery,
    pub pipeline: Pipeline,
    pub state: Arc<SourceState>,
    pub retry: RetryConfig,
}

/// Runs `source` until `shutdown`. Messages not yet settled then stay at the source.
pub async fn run<S: Source>(mut source: S, feed: Feed, mut shutdown: Shutdown) {
    let what = format!("{} source `{}`", feed.state.kind, feed.name);
    let mut reconnect = Reconnect::new(&feed.retry, what);
    'connect: while !shutdown.is_stopping() {
        feed.state.set_status(SourceStatus::Connecting);
        let connected = tokio::select! {
            c = source.connect() => c,
            _ = shutdown.stopped() => break,
        };
        if let Err(e) = connected {
            if fail(&feed, &mut reconnect, &e, &mut shutdown).await {
                break;
            }
            continue;
        }
        // The backoff is reset once a batch is settled (or a read comes back empty):
        // a source that fails right after each connect backs off.
        reconnect.up();
        feed.state.set_status(SourceStatus::Connected);
        loop {
            let batch = tokio::select! {
                b = source.receive() => b,
                _ = shutdown.stopped() => break 'connect,
            };
            let settled = match batch {
                Ok(batch) if batch.is_empty() => {
                    reconnect.worked();
                    continue;
                }
                Ok(batch) => {
                    match hand_over(&feed, source.keeps_unsettled(), batch, &mut shutdown).await {
                        Some(settled) => settled,
                        None => break 'connect, // shutdown: what is unsettled stays at the source
                    }
                }
                Err(e) => {
                    if fail(&feed, &mut reconnect, &e, &mut shutdown).await {
                        break 'connect;
                    }
                    continue 'connect;
                }
            };
            let (acked, refused) = tally(&feed.state, &settled);
            match source.settle(settled).await {
                Ok(()) => SourceState::count(&feed.state.rejected, refused),
                // The refused ones stay at the source; the accepted ones were settled.
                Err(e) if e.connection == ConnectionState::Kept => {
                    tracing::warn!(source = %feed.name, error = %e,
                        "refused messages left at the source: they come back later");
                    feed.state.failed(&e);
                }
                Err(e) => {
                    if fail(&feed, &mut reconnect, &e, &mut shutdown).await {
                        break 'connect;
                    }
                    continue 'connect;
                }
            }
            reconnect.worked();
            SourceState::count(&feed.state.acked, acked);
        }
    }
    source.close().await;
}

/// Notes a failure and waits the backoff. True if shutdown came first.
async fn fail(
    feed: &Feed,
    reconnect: &mut Reconnect,
    e: &Failure,
    shutdown: &mut Shutdown,
) -> bool {
    feed.state.set_status(SourceStatus::Disconnected);
    feed.state.failed(e);
    reconnect.failed(e, shutdown).await
}

/// Hands `batch` to the pipeline, in order, until every message is accepted or
/// refused; a message the queue cannot take now is tried again after a backoff, with
/// the ones after it (or, where the source cannot keep them, dropped and counted).
/// `None` if shutdown came first.
async fn hand_over<H>(
    feed: &Feed,
    keeps_unsettled: bool,
    batch: Vec<Incoming<H>>,
    shutdown: &mut Shutdown,
) -> Option<Vec<Settled<H>>> {
    SourceState::count(&feed.state.received, batch.len());
    let again = batch.iter().filter(|m| m.redelivered).count();
    SourceState::count(&feed.state.redelivered, again);
    let mut settled = Vec::with_capacity(batch.len());
    let mut rest = batch;
    let mut backoff = Backoff::new(&feed.retry);
    while !rest.is_empty() {
        let mut jobs = Vec::with_capacity(rest.len());
        let mut not_events = Vec::new();
        for (i, m) in rest.iter().enumerate() {
            match m.job(&feed.name, &feed.plugin, &feed.deliver) {
                Ok(job) => jobs.push((i, job, m.id.clone())),
                Err(e) => not_events.push((i, e.to_string())),
            }
        }
        let results = feed
            .pipeline
            .run_batch(jobs.into_iter().map(|(_, job, id)| (job, id)).collect())
            .await;
        let (done, later) = outcomes(rest.len(), &not_events, results);
        let tail = rest.split_off(done.len());
        for (m, outcome) in rest.into_iter().zip(done) {
            settled.push(match outcome {
                Ok(()) => Settled::Accepted(m.handle),
                Err(reason) => {
                    tracing::warn!(source = %feed.name, subject = %m.subject, %reason,
                        "message refused: handed back to the source");
                    Settled::Refused(m.handle, reason)
                }
            });
        }
        rest = tail;
        let Some(e) = later else { continue };
        feed.state.failed(&e);
        if !keeps_unsettled {
            SourceState::count(&feed.state.dropped, rest.len());
            tracing::warn!(source = %feed.name, dropped = rest.len(), error = %e,
                "messages not stored: this source cannot keep them");
            break;
        }
        let delay = backoff.next_delay();
        tracing::warn!(source = %feed.name, waiting = rest.len(), error = %e, retry_in = ?delay,
            "messages not accepted yet: left at the source");
        if shutdown.sleep(delay).await {
            return None;
        }
    }
    Some(settled)
}

/// The fate of the first messages of a batch of `n`: accepted or refused (the reason),
/// in order, up to the first the queue could not take now (whose error comes second).
fn outcomes(
    n: usize,
    not_events: &[(usize, String)],
    mut results: Vec<Result<(), PipelineError>>,
) -> (Vec<Result<(), String>>, Option<PipelineError>) {
    let mut done = Vec::with_capacity(n);
    let mut results = results.drain(..);
    for i in 0..n {
        if let Some((_, reason)) = not_events.iter().find(|(j, _)| *j == i) {
            done.push(Err(reason.clone()));
            continue;
        }
        match results.next() {
            Some(Ok(())) => done.push(Ok(())),
            // The plugin refused it, or made a message for a sink that does not exist:
            // it would fail again.
            Some(Err(
                e @ (PipelineError::Plugin(_) | PipelineError::Queue(QueueError::UnknownSink(_))),
            )) => done.push(Err(e.to_string())),
            // Larger than the whole queue may be: it would never fit.
            Some(Err(e @ PipelineError::Queue(QueueError::Full { needed, max })))
                if needed > max =>
            {
                done.push(Err(e.to_string()))
            }
            Some(Err(e)) => return (done, Some(e)),
            None => break, // the pipeline stopped at an earlier one
        }
    }
    (done, None)
}

/// How many of `settled` are accepted, and refused; the last refusal is the source's
/// last error.
fn tally<H>(state: &SourceState, settled: &[Settled<H>]) -> (usize, usize) {
    let mut refused = 0;
    for s in settled {
        if let Settled::Refused(_, reason) = s {
            refused += 1;
            state.failed(&format_args!("message refused: {reason}"));
        }
    }
    (settled.len() - refused, refused)
}
