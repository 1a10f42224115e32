//! Redis sources: a stream read by a consumer group ([`stream`]), a list moved item by
//! item into a processing list ([`list`]), or pub/sub channels ([`pubsub`]). Streams
//! and lists are acknowledged (XACK, LREM) once durable, so a crash leaves what was
//! taken at Redis; pub/sub is at most once by Redis's design.

mod list;
mod pubsub;
mod reply;
mod stream;

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::run::{self, Failure, Feed, Settled};
use crate::config::{RedisConnection, RedisMode, RedisSourceConfig};
use crate::redis::{self as link, Link};
use crate::shutdown::Shutdown;
use crate::tls::TlsError;

/// Starts the source of `config`'s mode; `consumer` names this agent at Redis.
pub(super) fn spawn(
    config: &RedisSourceConfig,
    consumer: String,
    feed: Feed,
    shutdown: Shutdown,
) -> Result<JoinHandle<()>, TlsError> {
    let server = Server {
        connection: config.connection.clone(),
        tls: link::tls_config(&config.connection)?,
    };
    Ok(match &config.mode {
        RedisMode::Stream { .. } => tokio::spawn(run::run(
            stream::StreamSource::new(server, config, consumer),
            feed,
            shutdown,
        )),
        RedisMode::List { .. } => tokio::spawn(run::run(
            list::ListSource::new(server, config, &consumer),
            feed,
            shutdown,
        )),
        RedisMode::PubSub { channels, patterns } => tokio::spawn(run::run(
            pubsub::PubSubSource::new(server, channels, patterns, config.count),
            feed,
            shutdown,
        )),
    })
}

/// Where the source connects.
pub(in crate::sources) struct Server {
    connection: RedisConnection,
    tls: Option<Arc<rustls::ClientConfig>>,
}

/// How long a non-blocking command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// The two connections of a stream or list source: one for the blocking read (its
/// response timeout covers the block time; Redis answers a connection's commands in
/// order, so nothing else may wait behind the read) and one for everything else.
pub(in crate::sources) struct Links {
    commands: Link,
    reader: Link,
}

impl Server {
    async fn links(&self, block: Duration) -> Result<Links, Failure> {
        let tls = self.tls.as_ref();
        let commands = link::connect(&self.connection, tls, COMMAND_TIMEOUT)
            .await
            .map_err(Failure::new)?;
        let reader = link::connect(&self.connection, tls, block + COMMAND_TIMEOUT)
            .await
            .map_err(Failure::new)?;
        Ok(Links { commands, reader })
    }

    /// A command's failure, naming the server.
    fn failed(&self, what: &str, error: redis::RedisError) -> Failure {
        Failure::new(format!("{}: {what}: {error}", self.connection))
    }
}

/// The links, or the failure of using them before `connect`.
fn connected(links: &mut Option<Links>) -> Result<&mut Links, Failure> {
    links.as_mut().ok_or_else(|| Failure::new("not connected"))
}

/// Settles a batch: first the copies (`copy`) of refused messages to the dead key,
/// if any, then the acknowledgements `ack` adds for a set of messages — every one when
/// the copies were written, of the accepted ones only when they were not. So a
/// refused message is never acknowledged without its copy: it stays at Redis (a
/// stream entry is claimed again after `claim_idle`, a list item is taken up at the
/// next connect), and the copy's error is the source's `last_error`; the source goes on.
/// (One pipeline for both would not do: Redis runs an XACK after a failed XADD.)
async fn copy_then_ack<H>(
    links: &mut Option<Links>,
    server: &Server,
    settled: &[Settled<H>],
    dead_key: Option<&str>,
    copy: impl Fn(&mut redis::Pipeline, &str, &H, &str),
    ack: impl FnOnce(&mut redis::Pipeline, Vec<&H>),
) -> Result<(), Failure> {
    let commands = &mut connected(links)?.commands.commands;
    let mut copies = redis::pipe();
    for s in settled {
        if let (Settled::Refused(handle, reason), Some(dead)) = (s, dead_key) {
            copy(&mut copies, dead, handle, reason);
        }
    }
    let copied = match copies.is_empty() {
        true => Ok(()),
        false => copies
            .query_async::<()>(commands)
            .await
            .map_err(|e| server.failed("copy to dead_key", e)),
    };
    let settle: Vec<&H> = settled
        .iter()
        .filter_map(|s| match s {
            Settled::Accepted(h) => Some(h),
            Settled::Refused(h, _) => copied.is_ok().then_some(h),
        })
        .collect();
    if !settle.is_empty() {
        let mut acks = redis::pipe();
        ack(&mut acks, settle);
        acks.query_async::<()>(commands)
            .await
            .map_err(|e| server.failed("acknowledge", e))?;
    }
    copied.map_err(Failure::left_at_source)
}
