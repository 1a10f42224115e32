//! `[sources.<name>]`: where events come from besides the HTTP API. Every source has
//! the feed keys ([`FeedConfig`]: which plugin gets its messages, how, and the retry
//! policy); the rest depends on its `type`.

mod amqp;
mod redis;

use serde::{Deserialize, Deserializer};

use super::connection;
use super::de::{self, Ctx};
use super::env::Env;
use super::mqtt::{self, MqttConnection};
use super::retry::RetryConfig;
use super::ConfigError;

pub use amqp::{AmqpBinding, AmqpSourceConfig};
pub use redis::{RedisMode, RedisSourceConfig};

/// One source, validated.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    pub feed: FeedConfig,
    pub kind: SourceKind,
}

/// What kind of system a source takes messages from.
#[derive(Debug, Clone)]
pub enum SourceKind {
    Mqtt(Box<MqttSourceConfig>),
    Redis(Box<RedisSourceConfig>),
    Amqp(Box<AmqpSourceConfig>),
}

/// The keys every source has.
#[derive(Debug, Clone)]
pub struct FeedConfig {
    /// The plugin that gets the messages.
    pub plugin: String,
    /// How the plugin gets them.
    pub deliver: SourceDelivery,
    /// Reconnects, and retries of a message the queue cannot take yet.
    pub retry: RetryConfig,
}

/// An MQTT subscription.
#[derive(Debug, Clone)]
pub struct MqttSourceConfig {
    pub connection: MqttConnection,
    /// Topic filters to subscribe to.
    pub topics: Vec<String>,
    /// Default false: a persistent session keeps messages at the broker while the agent
    /// is away.
    pub clean_session: bool,
}

/// How a source hands messages to its plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceDelivery {
    /// The background plugin's `on_message`.
    OnMessage,
    /// As a `sending_event` (a JSON object is one event, an array a list), with these
    /// ids.
    SendingEvent {
        handler_id: String,
        account_id: String,
    },
}

impl SourceDelivery {
    /// The config value of `deliver`.
    pub fn as_str(&self) -> &'static str {
        match self {
            SourceDelivery::OnMessage => "on_message",
            SourceDelivery::SendingEvent { .. } => "sending_event",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Deliver {
    #[default]
    OnMessage,
    SendingEvent,
}

/// The feed keys, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedSection {
    plugin: String,
    #[serde(default)]
    deliver: Deliver,
    #[serde(default)]
    handler_id: Option<String>,
    #[serde(default)]
    account_id: Option<String>,
    #[serde(default)]
    retry: RetryConfig,
}

/// The source-only MQTT keys, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MqttSourceRole {
    #[serde(deserialize_with = "topics")]
    topics: Vec<String>,
    #[serde(default)]
    clean_session: bool,
}

fn topics<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let topics = Vec::<String>::deserialize(d)?;
    if topics.is_empty() {
        return Err(serde::de::Error::custom("subscribe to at least one topic"));
    }
    Ok(topics)
}

/// The source types, for error messages.
const TYPES: &str = "`mqtt`, `redis` or `amqp`";

impl SourceConfig {
    /// Parses `[sources.<name>]` (at config path `key`).
    pub(super) fn parse(
        ctx: &Ctx<'_>,
        env: &Env,
        key: &str,
        mut table: toml::Table,
    ) -> Result<SourceConfig, ConfigError> {
        let kind = match table.remove("type") {
            Some(toml::Value::String(t)) => t,
            Some(_) => return Err(ctx.error(format!("{key}.type"), "must be a string")),
            None => return Err(ctx.error(format!("{key}.type"), format!("missing: {TYPES}"))),
        };
        let feed = de::split::<FeedSection>(&mut table);
        let feed = FeedConfig::resolve(ctx, key, ctx.typed(key, toml::Value::Table(feed))?)?;
        let kind = match kind.as_str() {
            "mqtt" => {
                let (connection, role): (_, MqttSourceRole) =
                    connection::parse_with_role::<mqtt::ConnectionSection, _>(
                        ctx, env, key, table,
                    )?;
                SourceKind::Mqtt(Box::new(MqttSourceConfig {
                    connection,
                    topics: role.topics,
                    clean_session: role.clean_session,
                }))
            }
            "redis" => SourceKind::Redis(Box::new(redis::parse(ctx, env, key, table)?)),
            "amqp" => SourceKind::Amqp(Box::new(amqp::parse(ctx, env, key, table)?)),
            other => {
                return Err(ctx.error(
                    format!("{key}.type"),
                    format!("unknown source type `{other}` (use {TYPES})"),
                ))
            }
        };
        let source = SourceConfig { feed, kind };
        super::features::require(ctx, &format!("{key}.type"), source.kind_name())?;
        Ok(source)
    }

    /// The plugin the source feeds.
    pub fn plugin(&self) -> &str {
        &self.feed.plugin
    }

    /// How the plugin is fed.
    pub fn deliver(&self) -> &SourceDelivery {
        &self.feed.deliver
    }

    /// The source type's name, for health and metrics.
    pub fn kind_name(&self) -> &'static str {
        match &self.kind {
            SourceKind::Mqtt(_) => "mqtt",
            SourceKind::Redis(_) => "redis",
            SourceKind::Amqp(_) => "amqp",
        }
    }

    /// Checks what the source needs from the machine (TLS files).
    pub(super) fn check_files(&self, ctx: &Ctx<'_>, key: &str) -> Result<(), ConfigError> {
        match &self.kind {
            SourceKind::Mqtt(m) => m.connection.tls.check(ctx, key),
            SourceKind::Redis(r) => r.connection.tls_files.check(ctx, key),
            SourceKind::Amqp(a) => a.connection.tls_files.check(ctx, key),
        }
    }
}

impl FeedConfig {
    fn resolve(ctx: &Ctx<'_>, key: &str, feed: FeedSection) -> Result<FeedConfig, ConfigError> {
        let deliver = match (feed.deliver, feed.handler_id, feed.account_id) {
            (Deliver::OnMessage, None, None) => SourceDelivery::OnMessage,
            (Deliver::OnMessage, _, _) => {
                return Err(ctx.error(
                    format!("{key}.handler_id"),
                    "handler_id and account_id are for deliver = \"sending_event\"",
                ))
            }
            (Deliver::SendingEvent, Some(handler_id), Some(account_id)) => {
                SourceDelivery::SendingEvent {
                    handler_id,
                    account_id,
                }
            }
            (Deliver::SendingEvent, _, _) => {
                return Err(ctx.error(
                    format!("{key}.handler_id"),
                    "deliver = \"sending_event\" needs handler_id and account_id",
                ))
            }
        };
        Ok(FeedConfig {
            plugin: feed.plugin,
            deliver,
            retry: feed.retry,
        })
    }
}
