//! Redis transport: each message is appended to a stream (XADD, optionally trimmed to
//! about `maxlen` entries), a batch pipelined in one round trip. A message leaves the
//! queue once Redis answered its XADD; an error reply for one message (the key holds
//! another type, …) dead-letters that message alone.

use std::sync::Arc;

use redis::Value;

use super::{Delivered, DeliveryError, Failure, Partial, Transport};
use crate::config::RedisSinkConfig;
use crate::queue::StoredMessage;
use crate::redis::{self as link, Link};
use crate::tls::TlsError;

/// How long Redis may take to answer a batch.
const RESPONSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

pub(super) struct RedisTransport {
    config: RedisSinkConfig,
    tls: Option<Arc<rustls::ClientConfig>>,
    link: tokio::sync::Mutex<Option<Link>>,
}

impl RedisTransport {
    pub fn new(config: &RedisSinkConfig) -> Result<RedisTransport, TlsError> {
        Ok(RedisTransport {
            tls: link::tls_config(&config.connection)?,
            config: config.clone(),
            link: tokio::sync::Mutex::new(None),
        })
    }

    fn lost(&self, message: impl std::fmt::Display) -> Partial {
        DeliveryError::Transient(Failure::Connection {
            target: self.config.connection.to_string(),
            message: message.to_string(),
        })
        .into()
    }

    /// XADD of `m`: its body in the configured field, beside its id (the idempotency
    /// key), content type, key and headers (`h:<name>`).
    fn xadd(&self, pipe: &mut redis::Pipeline, m: &StoredMessage) {
        let cmd = pipe
            .cmd("XADD")
            .arg(m.topic.as_deref().unwrap_or(&self.config.key));
        if let Some(n) = self.config.maxlen {
            cmd.arg("MAXLEN").arg("~").arg(n);
        }
        cmd.arg("*")
            .arg(&self.config.field)
            .arg(m.payload.as_ref())
            .arg("id")
            .arg(m.idempotency_key().as_ref())
            .arg("content_type")
            .arg(&m.content_type);
        if let Some(key) = &m.key_ {
            cmd.arg("key").arg(key);
        }
        for (name, value) in &m.headers {
            cmd.arg(format!("h:{name}")).arg(value);
        }
    }
}

/// What an error reply to one XADD means for its message.
fn refusal(target: String, error: &redis::RedisError) -> DeliveryError {
    let failure = Failure::Refused {
        target,
        message: error.to_string(),
    };
    match error.code() {
        // The key holds another type, the message is too large, …: the same message
        // will be refused again.
        Some("WRONGTYPE") | Some("ERR") => DeliveryError::Permanent(failure),
        // Out of memory, read-only replica, loading, no permission (yet), …
        _ => DeliveryError::Transient(failure),
    }
}

impl Transport for RedisTransport {
    fn batch_len(&self, head: &[StoredMessage]) -> usize {
        head.len().min(self.config.batch)
    }

    fn pinpoints_refusals(&self) -> bool {
        true
    }

    async fn deliver(&self, batch: &[StoredMessage]) -> Result<Delivered, Partial> {
        let mut guard = self.link.lock().await;
        if guard.is_none() {
            let connected =
                link::connect(&self.config.connection, self.tls.as_ref(), RESPONSE_TIMEOUT)
                    .await
                    .map_err(|e| self.lost(e))?;
            *guard = Some(connected);
        }
        let connection = &mut guard.as_mut().expect("connected above").commands;
        let mut pipe = redis::pipe();
        for m in batch {
            self.xadd(&mut pipe, m);
        }
        let replies: Vec<redis::RedisResult<Value>> =
            match pipe.ignore_errors().query_async(connection).await {
                Ok(replies) => replies,
                Err(e) => {
                    *guard = None;
                    return Err(self.lost(e));
                }
            };
        for (acked, reply) in replies.iter().enumerate() {
            if let Err(e) = reply {
                let error = refusal(self.config.connection.to_string(), e);
                return Err(Partial { acked, error });
            }
        }
        if replies.len() < batch.len() {
            *guard = None;
            return Err(self.lost("fewer replies than commands"));
        }
        Ok(Delivered::All)
    }
}
