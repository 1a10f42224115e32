//! `type = "redis"` sources: a stream read by a consumer group, a list moved item by
//! item into a processing list, or pub/sub channels.

use std::time::Duration;

use serde::Deserialize;

use super::super::connection;
use super::super::de::Ctx;
use super::super::env::Env;
use super::super::redis::{self, RedisConnection};
use super::super::ConfigError;

/// A Redis source, validated.
#[derive(Debug, Clone)]
pub struct RedisSourceConfig {
    pub connection: RedisConnection,
    pub mode: RedisMode,
    /// The consumer's name (stream: in the group; list: of the processing list).
    /// Default: the device id (one consumer per device in a group).
    pub consumer: Option<String>,
    /// Most messages read at once.
    pub count: usize,
    /// How long one blocking read waits before it is issued again (a dead connection is
    /// noticed within it; shutdown does not wait for it).
    pub block: Duration,
}

/// How a Redis source takes messages, and how it acknowledges them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisMode {
    /// XREADGROUP; XACK once durable; a dead consumer's entries claimed after
    /// `claim_idle`.
    Stream {
        key: String,
        group: String,
        /// The entry field that holds the message body.
        field: String,
        claim_idle: Duration,
        /// Where refused entries go (a stream), with their error.
        dead_key: Option<String>,
    },
    /// BLMOVE into `<key>:processing:<consumer>`; LREM once durable.
    List {
        key: String,
        dead_key: Option<String>,
    },
    /// SUBSCRIBE / PSUBSCRIBE: at most once (Redis keeps nothing for a subscriber).
    PubSub {
        channels: Vec<String>,
        patterns: Vec<String>,
    },
}

impl RedisMode {
    pub fn as_str(&self) -> &'static str {
        match self {
            RedisMode::Stream { .. } => "stream",
            RedisMode::List { .. } => "list",
            RedisMode::PubSub { .. } => "pubsub",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Mode {
    #[default]
    Stream,
    List,
    Pubsub,
}

/// The source-only Redis keys, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RedisSourceRole {
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    consumer: Option<String>,
    #[serde(default)]
    field: Option<String>,
    #[serde(default = "default_count")]
    count: usize,
    #[serde(default = "default_block_ms")]
    block_ms: u64,
    #[serde(default)]
    claim_idle_ms: Option<u64>,
    #[serde(default)]
    dead_key: Option<String>,
    #[serde(default)]
    channels: Vec<String>,
    #[serde(default)]
    patterns: Vec<String>,
}

fn default_count() -> usize {
    64
}
fn default_block_ms() -> u64 {
    2_000
}

/// Entries pending this long at a consumer that does not acknowledge them are claimed.
const DEFAULT_CLAIM_IDLE_MS: u64 = 60_000;

pub(super) fn parse(
    ctx: &Ctx<'_>,
    env: &Env,
    key: &str,
    table: toml::Table,
) -> Result<RedisSourceConfig, ConfigError> {
    let (connection, role): (_, RedisSourceRole) =
        connection::parse_with_role::<redis::RedisConnectionSection, _>(ctx, env, key, table)?;
    let err = |k: &str, m: &str| ctx.error(format!("{key}.{k}"), m.to_owned());
    if !(1..=10_000).contains(&role.count) {
        return Err(err("count", "must be between 1 and 10000"));
    }
    if !(100..=60_000).contains(&role.block_ms) {
        return Err(err("block_ms", "must be between 100 and 60000"));
    }
    let only_for = |k: &str, set: bool, mode: &str| -> Result<(), ConfigError> {
        if set {
            return Err(err(k, &format!("is for mode = \"{mode}\"")));
        }
        Ok(())
    };
    let mode = match role.mode {
        Mode::Stream | Mode::List => {
            let Some(stream_key) = role.key.filter(|k| !k.is_empty()) else {
                return Err(err("key", "missing: the stream or list to read"));
            };
            only_for("channels", !role.channels.is_empty(), "pubsub")?;
            only_for("patterns", !role.patterns.is_empty(), "pubsub")?;
            if matches!(role.mode, Mode::Stream) {
                RedisMode::Stream {
                    key: stream_key,
                    group: role.group.unwrap_or_else(|| "outpost".to_owned()),
                    field: role.field.unwrap_or_else(|| "payload".to_owned()),
                    claim_idle: Duration::from_millis(
                        role.claim_idle_ms
                            .unwrap_or(DEFAULT_CLAIM_IDLE_MS)
                            .max(1_000),
                    ),
                    dead_key: role.dead_key,
                }
            } else {
                only_for("group", role.group.is_some(), "stream")?;
                only_for("field", role.field.is_some(), "stream")?;
                only_for("claim_idle_ms", role.claim_idle_ms.is_some(), "stream")?;
                RedisMode::List {
                    key: stream_key,
                    dead_key: role.dead_key,
                }
            }
        }
        Mode::Pubsub => {
            if role.channels.is_empty() && role.patterns.is_empty() {
                return Err(err(
                    "channels",
                    "missing: channels = [..] or patterns = [..]",
                ));
            }
            for (k, set) in [
                ("key", role.key.is_some()),
                ("group", role.group.is_some()),
                ("field", role.field.is_some()),
                ("claim_idle_ms", role.claim_idle_ms.is_some()),
                ("dead_key", role.dead_key.is_some()),
            ] {
                if set {
                    return Err(err(k, "is not for mode = \"pubsub\""));
                }
            }
            RedisMode::PubSub {
                channels: role.channels,
                patterns: role.patterns,
            }
        }
    };
    Ok(RedisSourceConfig {
        connection,
        mode,
        consumer: role.consumer,
        count: role.count,
        block: Duration::from_millis(role.block_ms),
    })
}
