//! `type = "redis"` sinks: XADD to a stream.

use serde::Deserialize;

use super::super::connection;
use super::super::de::Ctx;
use super::super::env::Env;
use super::super::redis::{self, RedisConnection};
use super::super::ConfigError;

/// Most XADDs pipelined in one round trip.
pub const REDIS_MAX_BATCH: usize = 1000;

/// `type = "redis"`: appends each message to a stream.
#[derive(Debug, Clone)]
pub struct RedisSinkConfig {
    pub connection: RedisConnection,
    /// The stream, a template like MQTT topics (`{device_id}`, `{sink}`,
    /// `{handler_id}`); a plugin's per-message topic takes precedence.
    pub key: String,
    /// The entry field that holds the message body (beside `id`, `content_type`, the
    /// message key and headers).
    pub field: String,
    /// `MAXLEN ~ n` on every XADD: the stream is trimmed to about this many entries.
    pub maxlen: Option<usize>,
    /// XADDs pipelined in one round trip.
    pub batch: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RedisSinkRole {
    key: String,
    #[serde(default = "default_field")]
    field: String,
    #[serde(default)]
    maxlen: Option<usize>,
    #[serde(default = "default_batch")]
    batch: usize,
}

fn default_field() -> String {
    "payload".to_owned()
}
fn default_batch() -> usize {
    64
}

pub(in super::super) fn parse(
    ctx: &Ctx<'_>,
    env: &Env,
    key: &str,
    table: toml::Table,
) -> Result<RedisSinkConfig, ConfigError> {
    let (connection, role): (_, RedisSinkRole) =
        connection::parse_with_role::<redis::RedisConnectionSection, _>(ctx, env, key, table)?;
    if role.key.is_empty() {
        return Err(ctx.error(format!("{key}.key"), "must not be empty"));
    }
    if role.field.is_empty() || ["id", "content_type", "key"].contains(&role.field.as_str()) {
        return Err(ctx.error(
            format!("{key}.field"),
            "must be a field name other than id, content_type and key",
        ));
    }
    if !(1..=REDIS_MAX_BATCH).contains(&role.batch) {
        return Err(ctx.error(
            format!("{key}.batch"),
            format!("must be between 1 and {REDIS_MAX_BATCH}"),
        ));
    }
    if role.maxlen == Some(0) {
        return Err(ctx.error(format!("{key}.maxlen"), "must be at least 1"));
    }
    Ok(RedisSinkConfig {
        connection,
        key: role.key,
        field: role.field,
        maxlen: role.maxlen,
        batch: role.batch,
    })
}
