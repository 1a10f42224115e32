//! `mode = "stream"`: a consumer group. At connect the source first reads what is
//! still pending for its own consumer name (taken before a crash, never
//! acknowledged), then claims entries left pending by other consumers for longer than
//! `claim_idle` (XAUTOCLAIM, again every half of it), and otherwise blocks on new
//! entries. Entries are acknowledged (XACK) once durable; a refused one is first
//! copied to `dead_key` with its error, if configured.

use std::time::{Duration, Instant};

use bytes::Bytes;
use redis::Value;
use tokio::task::JoinHandle;

use super::reply::{self, Entry};
use super::{connected, copy_then_ack, Links, Server};
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
    /// The next read of new entries, sent as soon as a batch of them is handed over:
    /// Redis answers it while the plugin and the disk work on that batch. What it took
    /// is pending for this consumer, so a read cut short (reconnect, shutdown) is read
    /// again from the pending entries at the next connect.
    ahead: Option<JoinHandle<Result<Vec<Entry>, Failure>>>,
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
            ahead: None,
        }
    }

    /// Drops the read sent ahead, if any.
    fn cancel_ahead(&mut self) {
        if let Some(read) = self.ahead.take() {
            read.abort();
        }
    }

    /// Sends the next blocking read of new entries on the reader link, in a task.
    fn read_ahead(&mut self) {
        let Some(links) = &self.links else { return };
        let cmd = self.read_command(">");
        let mut reader = links.reader.commands.clone();
        let target = self.server.connection.to_string();
        self.ahead = Some(tokio::spawn(async move {
            let reply: Value = cmd
                .query_async(&mut reader)
                .await
                .map_err(|e| Failure::new(format!("{target}: XREADGROUP: {e}")))?;
            reply::read_entries(reply).map_err(Failure::new)
        }));
    }

    /// New entries: those of the read sent ahead, or a read now.
    async fn read_new(&mut self) -> Result<Vec<Entry>, Failure> {
        match self.ahead.take() {
            Some(read) => read
                .await
                .map_err(|e| Failure::new(format!("the read sent ahead failed: {e}")))?,
            None => self.read(">").await,
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
    fn read_command(&self, after: &str) -> redis::Cmd {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&self.group)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(self.count);
        if after == ">" {
            cmd.arg("BLOCK").arg(self.block.as_millis() as u64);
        }
        cmd.arg("STREAMS").arg(&self.key).arg(after);
        cmd
    }

    /// Reads from `after` (`>`: new entries, blocking, on the reader link).
    async fn read(&mut self, after: &str) -> Result<Vec<Entry>, Failure> {
        let cmd = self.read_command(after);
        let links = connected(&mut self.links)?;
        let link = if after == ">" {
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
        self.cancel_ahead();
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
                    let entries = self.read_new().await?;
                    if !entries.is_empty() {
                        self.read_ahead();
                        return Ok(entries
                            .into_iter()
                            .map(|e| self.incoming(e, false))
                            .collect());
                    }
                }
            }
        }
    }

    /// Copies refused entries to `dead_key` (if set), then acknowledges them in one
    /// XACK ([`copy_then_ack`]: not the refused ones if their copy failed).
    async fn settle(&mut self, settled: Vec<Settled<Self::Handle>>) -> Result<(), Failure> {
        let (key, group, field) = (&self.key, &self.group, &self.field);
        let copy = |pipe: &mut redis::Pipeline, dead: &str, entry: &EntryHandle, reason: &str| {
            pipe.cmd("XADD")
                .arg(dead)
                .arg("*")
                .arg(field)
                .arg(entry.payload.as_ref())
                .arg("error")
                .arg(reason)
                .arg("stream")
                .arg(key)
                .arg("entry")
                .arg(&entry.id)
                .ignore();
        };
        let ack = |pipe: &mut redis::Pipeline, entries: Vec<&EntryHandle>| {
            let mut xack = redis::cmd("XACK");
            xack.arg(key).arg(group);
            for entry in entries {
                xack.arg(&entry.id);
            }
            pipe.add_command(xack).ignore();
        };
        let dead_key = self.dead_key.as_deref();
        copy_then_ack(&mut self.links, &self.server, &settled, dead_key, copy, ack).await
    }

    async fn close(&mut self) {
        self.cancel_ahead();
        self.links = None;
    }
}

impl Drop for StreamSource {
    fn drop(&mut self) {
        self.cancel_ahead();
    }
}
