//! `mode = "stream"`: a consumer group. At connect the source first reads what is
//! still pending for its own consumer name (taken before a crash, never
//! acknowledged), then claims entries left pending by other consumers for longer than
//! `claim_idle` (XAUTOCLAIM, again every half of it), and otherwise blocks on new
//! entries. Entries are acknowledged (XACK) once durable; a refused one is first
//! copied to `dead_key` with its error, if configured.

use std::time::{Duration, Instant};

use bytes::Bytes;
use redis::Value;

use super::reply::{self, Entry};
use super::{connected, Links, Server};
use crate::config::{RedisMode, RedisSourceConfig};
use crate::sources::incoming::Incoming;
use crate::sources::run::{Failure, Settled, Source};

pub(in crate::sources) struct StreamSource {
    server: Server,
    key: String,
    group: String,
    consumer: String,
    field: String,
    claim_idle: Duration,
    dead_key: Option<String>,
    count: usize,
    block: Duration,
    links: Option<Links>,
    phase: Phase,
    next_claim: Instant,
}

/// Where the next read comes from.
enum Phase {
    /// This consumer's own pending entries, after this id.
    OwnPending(String),
    /// Other consumers' idle entries, scanning from this id.
    Claiming(String),
    /// New entries.
    New,
}

/// What acknowledging an entry needs.
pub(in crate::sources) struct EntryHandle {
    id: String,
    payload: Bytes,
}

impl StreamSource {
    pub fn new(server: Server, config: &RedisSourceConfig, consumer: String) -> StreamSource {
        let RedisMode::Stream {
            key,
            group,
            field,
            claim_idle,
            dead_key,
        } = &config.mode
        else {
            unreachable!("a stream source of a stream config")
        };
        StreamSource {
            server,
            key: key.clone(),
            group: group.clone(),
            consumer,
            field: field.clone(),
            claim_idle: *claim_idle,
            dead_key: dead_key.clone(),
            count: config.count,
            block: config.block,
            links: None,
            phase: Phase::New,
            next_claim: Instant::now(),
        }
    }

    fn incoming(&self, entry: Entry, redelivered: bool) -> Incoming<EntryHandle> {
        let payload = entry.field(&self.field).cloned();
        let unreadable = match (&entry.fields, &payload) {
            (None, _) => Some("the entry was deleted from the stream".to_owned()),
            (Some(_), None) => Some(format!("the entry has no `{}` field", self.field)),
            _ => None,
        };
        let payload = payload.unwrap_or_default();
        Incoming {
            id: Some(entry.id.clone()),
            subject: self.key.clone(),
            payload: payload.clone(),
            redelivered,
            unreadable,
            handle: EntryHandle {
                id: entry.id,
                payload,
            },
        }
    }

    /// XREADGROUP from `after` (`>`: new entries, blocking).
    async fn read(&mut self, after: &str) -> Result<Vec<Entry>, Failure> {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&self.group)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(self.count);
        let blocking = after == ">";
        if blocking {
            cmd.arg("BLOCK").arg(self.block.as_millis() as u64);
        }
        cmd.arg("STREAMS").arg(&self.key).arg(after);
        let links = connected(&mut self.links)?;
        let link = if blocking {
            &mut links.reader
        } else {
            &mut links.commands
        };
        let reply: Value = cmd
            .query_async(&mut link.commands)
            .await
            .map_err(|e| self.server.failed("XREADGROUP", e))?;
        reply::read_entries(reply).map_err(Failure::new)
    }

    /// One XAUTOCLAIM step from `start`: the next start and what was claimed.
    async fn claim(&mut self, start: &str) -> Result<(String, Vec<Entry>), Failure> {
        let mut cmd = redis::cmd("XAUTOCLAIM");
        cmd.arg(&self.key)
            .arg(&self.group)
            .arg(&self.consumer)
            .arg(self.claim_idle.as_millis() as u64)
            .arg(start)
            .arg("COUNT")
            .arg(self.count);
        let links = connected(&mut self.links)?;
        let reply: Value = cmd
            .query_async(&mut links.commands.commands)
            .await
            .map_err(|e| self.server.failed("XAUTOCLAIM", e))?;
        let (next, claimed, deleted) = reply::autoclaim(reply).map_err(Failure::new)?;
        if !deleted.is_empty() {
            tracing::warn!(stream = %self.key, entries = deleted.len(),
                "pending entries were deleted from the stream before they were handled");
        }
        Ok((next, claimed))
    }
}

impl Source for StreamSource {
    type Handle = EntryHandle;

    /// Connects and makes sure the group exists (created at the start of the stream,
    /// and the stream with it, when missing).
    async fn connect(&mut self) -> Result<(), Failure> {
        self.links = None;
        let mut links = self.server.links(self.block).await?;
        let created: Result<Value, _> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.key)
            .arg(&self.group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut links.commands.commands)
            .await;
        match created {
            Ok(_) => {
                tracing::info!(stream = %self.key, group = %self.group, "consumer group created")
            }
            Err(e) if e.code() == Some("BUSYGROUP") => {}
            Err(e) => return Err(self.server.failed("XGROUP CREATE", e)),
        }
        self.links = Some(links);
        self.phase = Phase::OwnPending("0".to_owned());
        self.next_claim = Instant::now();
        Ok(())
    }

    async fn receive(&mut self) -> Result<Vec<Incoming<Self::Handle>>, Failure> {
        loop {
            match std::mem::replace(&mut self.phase, Phase::New) {
                Phase::OwnPending(after) => {
                    let entries = self.read(&after).await?;
                    if let Some(last) = entries.last() {
                        self.phase = Phase::OwnPending(last.id.clone());
                        return Ok(entries
                            .into_iter()
                            .map(|e| self.incoming(e, true))
                            .collect());
                    }
                }
                Phase::Claiming(start) => {
                    let (next, claimed) = self.claim(&start).await?;
                    if next == "0-0" {
                        self.next_claim = Instant::now() + (self.claim_idle / 2);
                    } else {
                        self.phase = Phase::Claiming(next);
                    }
                    if !claimed.is_empty() {
                        return Ok(claimed
                            .into_iter()
                            .map(|e| self.incoming(e, true))
                            .collect());
                    }
                }
                Phase::New if Instant::now() >= self.next_claim => {
                    self.phase = Phase::Claiming("0-0".to_owned());
                }
                Phase::New => {
                    let entries = self.read(">").await?;
                    if !entries.is_empty() {
                        return Ok(entries
                            .into_iter()
                            .map(|e| self.incoming(e, false))
                            .collect());
                    }
                }
            }
        }
    }

    /// Copies refused entries to `dead_key` (if set), then acknowledges every entry in
    /// one XACK, all in one round trip: if the copy fails, nothing is acknowledged and
    /// the entries stay pending (read again after the reconnect).
    async fn settle(&mut self, settled: Vec<Settled<Self::Handle>>) -> Result<(), Failure> {
        let mut pipe = redis::pipe();
        let mut ack = redis::cmd("XACK");
        ack.arg(&self.key).arg(&self.group);
        for s in &settled {
            let (Settled::Accepted(entry) | Settled::Refused(entry, _)) = s;
            ack.arg(&entry.id);
            if let (Settled::Refused(entry, reason), Some(dead)) = (s, &self.dead_key) {
                pipe.cmd("XADD")
                    .arg(dead)
                    .arg("*")
                    .arg(&self.field)
                    .arg(entry.payload.as_ref())
                    .arg("error")
                    .arg(reason)
                    .arg("stream")
                    .arg(&self.key)
                    .arg("entry")
                    .arg(&entry.id)
                    .ignore();
            }
        }
        pipe.add_command(ack).ignore();
        let links = connected(&mut self.links)?;
        pipe.query_async::<()>(&mut links.commands.commands)
            .await
            .map_err(|e| self.server.failed("XACK", e))
    }

    async fn close(&mut self) {
        self.links = None;
    }
}
