//! `type = "amqp"` sources: one queue of an AMQP 0-9-1 broker (RabbitMQ).

use serde::Deserialize;

use super::super::amqp::{self, AmqpConnection};
use super::super::connection;
use super::super::de::Ctx;
use super::super::env::Env;
use super::super::ConfigError;

/// An AMQP source, validated.
#[derive(Debug, Clone)]
pub struct AmqpSourceConfig {
    pub connection: AmqpConnection,
    pub queue: String,
    /// Only check that the queue exists (`queue.declare` passive) instead of declaring
    /// it durable.
    pub passive: bool,
    /// Bindings made at each connect.
    pub bindings: Vec<AmqpBinding>,
    /// `basic.qos`: messages delivered and not yet acknowledged, at most.
    pub prefetch: u16,
    /// Default: the device id and the source's name.
    pub consumer_tag: Option<String>,
}

/// A binding of the source's queue to an exchange.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpBinding {
    pub exchange: String,
    #[serde(default)]
    pub routing_key: String,
}

/// The source-only AMQP keys, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AmqpSourceRole {
    queue: String,
    #[serde(default)]
    passive: bool,
    #[serde(default)]
    bindings: Vec<AmqpBinding>,
    #[serde(default = "default_prefetch")]
    prefetch: u16,
    #[serde(default)]
    consumer_tag: Option<String>,
}

fn default_prefetch() -> u16 {
    64
}

pub(super) fn parse(
    ctx: &Ctx<'_>,
    env: &Env,
    key: &str,
    table: toml::Table,
) -> Result<AmqpSourceConfig, ConfigError> {
    let (connection, role): (_, AmqpSourceRole) =
        connection::parse_with_role::<amqp::AmqpConnectionSection, _>(ctx, env, key, table)?;
    if role.queue.is_empty() {
        return Err(ctx.error(format!("{key}.queue"), "must not be empty"));
    }
    if role.prefetch == 0 {
        return Err(ctx.error(
            format!("{key}.prefetch"),
            "must be at least 1 (0 would mean no limit)",
        ));
    }
    Ok(AmqpSourceConfig {
        connection,
        queue: role.queue,
        passive: role.passive,
        bindings: role.bindings,
        prefetch: role.prefetch,
        consumer_tag: role.consumer_tag,
    })
}
