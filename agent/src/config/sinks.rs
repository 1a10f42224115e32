//! `[sinks.<name>]`: where messages go. Every sink has the delivery keys
//! ([`DeliveryConfig`]); the rest depends on its `type`.

mod amqp;
mod http;
mod redis;

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::connection;
use super::de::{self, Ctx};
use super::env::Env;
use super::mqtt::{self, MqttConnection};
use super::retry::RetryConfig;
use super::ConfigError;

pub use amqp::{AmqpSinkConfig, AMQP_MAX_IN_FLIGHT};
pub use http::{Compression, HttpProxy, HttpSinkConfig, HTTP_MAX_BATCH};
pub use redis::{RedisSinkConfig, REDIS_MAX_BATCH};

/// Largest in-flight window of an MQTT sink (rumqttc's request channel holds it).
pub const MQTT_MAX_IN_FLIGHT: usize = 64;

/// One sink, validated.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    pub delivery: DeliveryConfig,
    pub kind: SinkKind,
    /// A fingerprint of the sink's table as written (`${VAR}` expanded): a reload
    /// restarts a sink only if it changed. (Not the table itself: it may hold secrets.)
    pub written: u64,
}

/// The keys every sink has: how its delivery loop retries, and when it gives a message
/// up (both explicit policies, off by default, counted when they act).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    #[serde(default)]
    pub retry: RetryConfig,
    /// A message older than this when its turn comes is dropped (counted as expired).
    #[serde(default, deserialize_with = "de::duration_opt")]
    pub max_age: Option<Duration>,
    /// After this many failed attempts a message goes to the dead letters with its last
    /// error, and the FIFO moves on (a receiver that answers 5xx for one message
    /// forever would otherwise block the sink).
    #[serde(default)]
    pub max_attempts: Option<std::num::NonZeroU32>,
}

/// What kind of remote side a sink talks to.
#[derive(Debug, Clone)]
pub enum SinkKind {
    Http(Box<HttpSinkConfig>),
    File(FileSinkConfig),
    Mqtt(Box<MqttSinkConfig>),
    Redis(Box<RedisSinkConfig>),
    Amqp(Box<AmqpSinkConfig>),
}

/// The sink types, for error messages.
const TYPES: &str = "`http`, `mqtt`, `file`, `redis` or `amqp`";

impl SinkConfig {
    /// Parses `[sinks.<name>]` (at config path `key`).
    pub(super) fn parse(
        ctx: &Ctx<'_>,
        env: &Env,
        key: &str,
        mut table: toml::Table,
    ) -> Result<SinkConfig, ConfigError> {
        let written = fingerprint(&table);
        let kind = match table.remove("type") {
            Some(toml::Value::String(kind)) => kind,
            Some(_) => return Err(ctx.error(format!("{key}.type"), "must be a string")),
            None => return Err(ctx.error(format!("{key}.type"), format!("missing: {TYPES}"))),
        };
        let delivery = de::split::<DeliveryConfig>(&mut table);
        let delivery: DeliveryConfig = ctx.typed(key, toml::Value::Table(delivery))?;
        let kind = match kind.as_str() {
            "http" => SinkKind::Http(Box::new(http::parse(ctx, env, key, table)?)),
            "file" => SinkKind::File(ctx.typed(key, toml::Value::Table(table))?),
            "mqtt" => {
                let (connection, role): (_, MqttSinkRole) = connection::parse_with_role::<
                    mqtt::ConnectionSection,
                    _,
                >(ctx, env, key, table)?;
                SinkKind::Mqtt(Box::new(MqttSinkConfig {
                    connection,
                    topic: role.topic,
                    retain: role.retain,
                    clean_session: role.clean_session,
                    ack_timeout: role.ack_timeout_ms,
                    max_in_flight: role.max_in_flight,
                }))
            }
            "redis" => SinkKind::Redis(Box::new(redis::parse(ctx, env, key, table)?)),
            "amqp" => SinkKind::Amqp(Box::new(amqp::parse(ctx, env, key, table)?)),
            other => {
                return Err(ctx.error(
                    format!("{key}.type"),
                    format!("unknown sink type `{other}` (use {TYPES})"),
                ))
            }
        };
        let sink = SinkConfig {
            delivery,
            kind,
            written,
        };
        super::features::require(ctx, &format!("{key}.type"), sink.kind_name())?;
        Ok(sink)
    }

    /// Checks what the sink needs from the machine (TLS files).
    pub(super) fn check_files(&self, ctx: &Ctx<'_>, key: &str) -> Result<(), ConfigError> {
        match &self.kind {
            SinkKind::Mqtt(m) => m.connection.tls.check(ctx, key),
            SinkKind::Http(h) => h.tls.check(ctx, key),
            SinkKind::Redis(r) => r.connection.tls_files.check(ctx, key),
            SinkKind::Amqp(a) => a.connection.tls_files.check(ctx, key),
            SinkKind::File(_) => Ok(()),
        }
    }

    /// The most messages one delivery call of this sink carries (a batched POST, an
    /// MQTT in-flight window), so the delivery loop reads at least that many at once.
    /// The file sink takes whatever one read brought, so it asks for nothing more.
    pub fn max_batch(&self) -> usize {
        match &self.kind {
            SinkKind::Http(c) => c.batch_max_messages,
            SinkKind::File(_) => 1,
            // The window slides over the messages read: read several windows' worth.
            SinkKind::Mqtt(c) => (c.max_in_flight * 16).clamp(64, 1024),
            SinkKind::Redis(c) => c.batch,
            SinkKind::Amqp(c) => (c.max_in_flight * 4).clamp(64, 4096),
        }
    }

    /// The sink type's name, for health and metrics.
    pub fn kind_name(&self) -> &'static str {
        match &self.kind {
            SinkKind::Http(_) => "http",
            SinkKind::File(_) => "file",
            SinkKind::Mqtt(_) => "mqtt",
            SinkKind::Redis(_) => "redis",
            SinkKind::Amqp(_) => "amqp",
        }
    }

    /// The template of where each message goes at the remote side (an MQTT topic, an
    /// AMQP routing key, a Redis stream), filled in when it is queued.
    pub fn topic_template(&self) -> Option<&str> {
        match &self.kind {
            SinkKind::Mqtt(m) => Some(&m.topic),
            SinkKind::Amqp(a) => Some(&a.routing_key),
            SinkKind::Redis(r) => Some(&r.key),
            SinkKind::Http(_) | SinkKind::File(_) => None,
        }
    }
}

/// `type = "file"`: appends NDJSON to a local file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// NDJSON file the messages are appended to.
    pub path: PathBuf,
}

/// A hash of `table`'s text (stable within the process, which is all a reload needs).
fn fingerprint(table: &toml::Table) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    table.to_string().hash(&mut h);
    h.finish()
}

/// `type = "mqtt"`: publishes to a broker.
#[derive(Debug, Clone)]
pub struct MqttSinkConfig {
    pub connection: MqttConnection,
    /// Topic template: `{device_id}`, `{sink}`, `{handler_id}`. A plugin's per-message
    /// topic takes precedence.
    pub topic: String,
    pub retain: bool,
    /// Start a clean session on (re)connect: Outpost resends unacknowledged messages
    /// from its own queue either way.
    pub clean_session: bool,
    /// How long to wait for the broker's acknowledgement of a message.
    pub ack_timeout: Duration,
    /// Publishes sent before the first of them must be acknowledged (1 ..= 64).
    pub max_in_flight: usize,
}

/// The sink-only MQTT keys, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MqttSinkRole {
    #[serde(deserialize_with = "topic")]
    topic: String,
    #[serde(default)]
    retain: bool,
    #[serde(default = "yes")]
    clean_session: bool,
    #[serde(
        default = "default_ack_timeout",
        deserialize_with = "de::positive_millis"
    )]
    ack_timeout_ms: Duration,
    /// Default 16. The window slides (the next publish goes out as an acknowledgement
    /// comes in), so brokers that leave Nagle's algorithm on do not stall it.
    #[serde(default = "default_in_flight", deserialize_with = "in_flight")]
    max_in_flight: usize,
}

fn default_in_flight() -> usize {
    16
}
fn yes() -> bool {
    true
}
fn default_ack_timeout() -> Duration {
    Duration::from_secs(10)
}
fn topic<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let t = String::deserialize(d)?;
    if t.is_empty() {
        return Err(serde::de::Error::custom("an MQTT sink needs a topic"));
    }
    Ok(t)
}
fn in_flight<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    match usize::deserialize(d)? {
        n @ 1..=MQTT_MAX_IN_FLIGHT => Ok(n),
        _ => Err(serde::de::Error::custom(format!(
            "must be between 1 and {MQTT_MAX_IN_FLIGHT}"
        ))),
    }
}
