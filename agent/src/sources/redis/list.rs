//! `mode = "list"`: the reliable-queue pattern. Each item is moved (BLMOVE, atomically)
//! from the list into this consumer's processing list `<key>:processing:<consumer>`
//! and removed from there (LREM) once durable. At connect, what the processing list
//! still holds (what a crash left) is handled first, oldest first. A refused item is
//! pushed to `dead_key` as `{"error": …, "payload": …, "list": …}`, if configured.

use std::time::Duration;

use bytes::Bytes;
use redis::Value;

use super::{connected, copy_then_ack, Links, Server};
use crate::config::{RedisMode, RedisSourceConfig};
use crate::sources::incoming::Incoming;
use crate::sources::run::{Failure, Settled, Source};

pub(in crate::sources) struct ListSource {
    server: Server,
    key: String,
    processing: String,
    dead_key: Option<String>,
    count: usize,
    block: Duration,
    links: Option<Links>,
    /// Still taking up what the processing list held at connect.
    recovering: bool,
}

impl ListSource {
    pub fn new(server: Server, config: &RedisSourceConfig, consumer: &str) -> ListSource {
        let RedisMode::List { key, dead_key } = &config.mode else {
            unreachable!("a list source of a list config")
        };
        ListSource {
            server,
            processing: format!("{key}:processing:{consumer}"),
            key: key.clone(),
            dead_key: dead_key.clone(),
            count: config.count,
            block: config.block,
            links: None,
            recovering: true,
        }
    }

    fn incoming(&self, item: Vec<u8>, redelivered: bool) -> Incoming<Bytes> {
        let payload = Bytes::from(item);
        let mut incoming = Incoming::new(payload.clone(), self.key.clone(), payload);
        incoming.redelivered = redelivered;
        incoming
    }

    /// The oldest items of the processing list (at its right end), oldest first.
    async fn left_over(&mut self) -> Result<Vec<Vec<u8>>, Failure> {
        let links = connected(&mut self.links)?;
        let mut items: Vec<Vec<u8>> = redis::cmd("LRANGE")
            .arg(&self.processing)
            .arg(-(self.count as i64))
            .arg(-1)
            .query_async(&mut links.commands.commands)
            .await
            .map_err(|e| self.server.failed("LRANGE", e))?;
        items.reverse();
        Ok(items)
    }

    /// Waits for one item, then takes up to a batch of what else is there.
    async fn take(&mut self) -> Result<Vec<Vec<u8>>, Failure> {
        let links = connected(&mut self.links)?;
        let first: Option<Vec<u8>> = redis::cmd("BLMOVE")
            .arg(&self.key)
            .arg(&self.processing)
            .arg("RIGHT")
            .arg("LEFT")
            .arg(self.block.as_secs_f64())
            .query_async(&mut links.reader.commands)
            .await
            .map_err(|e| self.server.failed("BLMOVE", e))?;
        let Some(first) = first else {
            return Ok(Vec::new());
        };
        let mut more = redis::pipe();
        for _ in 1..self.count {
            more.cmd("LMOVE")
                .arg(&self.key)
                .arg(&self.processing)
                .arg("RIGHT")
                .arg("LEFT");
        }
        let more: Vec<Value> = more
            .query_async(&mut links.commands.commands)
            .await
            .map_err(|e| self.server.failed("LMOVE", e))?;
        let mut items = vec![first];
        items.extend(more.into_iter().filter_map(|v| match v {
            Value::BulkString(b) => Some(b),
            _ => None,
        }));
        Ok(items)
    }
}

impl Source for ListSource {
    type Handle = Bytes;

    async fn connect(&mut self) -> Result<(), Failure> {
        self.links = None;
        self.links = Some(self.server.links(self.block).await?);
        self.recovering = true;
        Ok(())
    }

    async fn receive(&mut self) -> Result<Vec<Incoming<Self::Handle>>, Failure> {
        loop {
            if self.recovering {
                let items = self.left_over().await?;
                if !items.is_empty() {
                    return Ok(items.into_iter().map(|i| self.incoming(i, true)).collect());
                }
                self.recovering = false;
            }
            let items = self.take().await?;
            if !items.is_empty() {
                return Ok(items.into_iter().map(|i| self.incoming(i, false)).collect());
            }
        }
    }

    /// Refused items to `dead_key` (if set), then the items removed from the
    /// processing list, from its old end: a duplicate item removes the older copy
    /// ([`copy_then_ack`]: not the refused ones if their copy failed).
    async fn settle(&mut self, settled: Vec<Settled<Self::Handle>>) -> Result<(), Failure> {
        let (key, processing) = (&self.key, &self.processing);
        let copy = |pipe: &mut redis::Pipeline, dead: &str, item: &Bytes, reason: &str| {
            let record = serde_json::json!({
                "error": reason,
                "payload": String::from_utf8_lossy(item),
                "list": key,
            });
            pipe.cmd("LPUSH").arg(dead).arg(record.to_string()).ignore();
        };
        let ack = |pipe: &mut redis::Pipeline, items: Vec<&Bytes>| {
            for item in items {
                pipe.cmd("LREM")
                    .arg(processing)
                    .arg(-1)
                    .arg(item.as_ref())
                    .ignore();
            }
        };
        let dead_key = self.dead_key.as_deref();
        copy_then_ack(&mut self.links, &self.server, &settled, dead_key, copy, ack).await
    }

    async fn close(&mut self) {
        self.links = None;
    }
}
