//! `type = "amqp"` sinks: publish to an exchange of an AMQP 0-9-1 broker, with
//! publisher confirms.

use serde::Deserialize;

use super::super::amqp::{self, AmqpConnection};
use super::super::connection;
use super::super::de::Ctx;
use super::super::env::Env;
use super::super::ConfigError;

/// Most publishes awaiting the broker's confirmation at once.
pub const AMQP_MAX_IN_FLIGHT: usize = 1000;

/// `type = "amqp"`: publishes each message, persistent and mandatory; it leaves the
/// queue when the broker confirmed it.
#[derive(Debug, Clone)]
pub struct AmqpSinkConfig {
    pub connection: AmqpConnection,
    /// Default `""`: the default exchange, where the routing key is a queue name.
    pub exchange: String,
    /// A template like MQTT topics (`{device_id}`, `{sink}`, `{handler_id}`); a
    /// plugin's per-message topic takes precedence.
    pub routing_key: String,
    /// Publishes sent before the first of them must be confirmed.
    pub max_in_flight: usize,
    /// Delivery mode 2 (the broker writes the message to disk in a durable queue).
    pub persistent: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AmqpSinkRole {
    #[serde(default)]
    exchange: String,
    routing_key: String,
    #[serde(default = "default_in_flight")]
    max_in_flight: usize,
    #[serde(default = "yes")]
    persistent: bool,
}

fn default_in_flight() -> usize {
    64
}
fn yes() -> bool {
    true
}

pub(in super::super) fn parse(
    ctx: &Ctx<'_>,
    env: &Env,
    key: &str,
    table: toml::Table,
) -> Result<AmqpSinkConfig, ConfigError> {
    let (connection, role): (_, AmqpSinkRole) =
        connection::parse_with_role::<amqp::AmqpConnectionSection, _>(ctx, env, key, table)?;
    if !(1..=AMQP_MAX_IN_FLIGHT).contains(&role.max_in_flight) {
        return Err(ctx.error(
            format!("{key}.max_in_flight"),
            format!("must be between 1 and {AMQP_MAX_IN_FLIGHT}"),
        ));
    }
    Ok(AmqpSinkConfig {
        connection,
        exchange: role.exchange,
        routing_key: role.routing_key,
        max_in_flight: role.max_in_flight,
        persistent: role.persistent,
    })
}
