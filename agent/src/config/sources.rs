//! `[sources.<name>]`: where events come from besides the HTTP API.

use serde::{Deserialize, Deserializer};

use super::de::Ctx;
use super::env::Env;
use super::mqtt::{self, MqttConnection};
use super::retry::RetryConfig;
use super::ConfigError;

/// One source, validated.
#[derive(Debug, Clone)]
pub enum SourceConfig {
    Mqtt(Box<MqttSourceConfig>),
}

/// An MQTT subscription feeding one plugin.
#[derive(Debug, Clone)]
pub struct MqttSourceConfig {
    pub connection: MqttConnection,
    /// Topic filters to subscribe to.
    pub topics: Vec<String>,
    /// The plugin that gets the messages.
    pub plugin: String,
    /// How the plugin gets them.
    pub deliver: SourceDelivery,
    /// Default false: a persistent session keeps messages at the broker while the agent
    /// is away.
    pub clean_session: bool,
    pub retry: RetryConfig,
}

/// How a source hands messages to its plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceDelivery {
    /// The background plugin's `on_message`.
    OnMessage,
    /// As a `sending_event` of one event (the payload), with these ids.
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

/// The source-only MQTT keys, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MqttSourceRole {
    #[serde(deserialize_with = "topics")]
    topics: Vec<String>,
    plugin: String,
    #[serde(default)]
    deliver: Deliver,
    #[serde(default)]
    handler_id: Option<String>,
    #[serde(default)]
    account_id: Option<String>,
    #[serde(default)]
    clean_session: bool,
    #[serde(default)]
    retry: RetryConfig,
}

fn topics<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let topics = Vec::<String>::deserialize(d)?;
    if topics.is_empty() {
        return Err(serde::de::Error::custom("subscribe to at least one topic"));
    }
    Ok(topics)
}

impl SourceConfig {
    /// Parses `[sources.<name>]` (at config path `key`).
    pub(super) fn parse(
        ctx: &Ctx<'_>,
        env: &Env,
        key: &str,
        mut table: toml::Table,
    ) -> Result<SourceConfig, ConfigError> {
        match table.remove("type") {
            Some(toml::Value::String(t)) if t == "mqtt" => {}
            Some(other) => {
                return Err(ctx.error(
                    format!("{key}.type"),
                    format!("unknown source type {other} (use `mqtt`)"),
                ))
            }
            None => return Err(ctx.error(format!("{key}.type"), "missing: `mqtt`")),
        }
        let (connection, role): (_, MqttSourceRole) = mqtt::parse_with_role(ctx, env, key, table)?;
        let deliver = match (role.deliver, role.handler_id, role.account_id) {
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
        Ok(SourceConfig::Mqtt(Box::new(MqttSourceConfig {
            connection,
            topics: role.topics,
            plugin: role.plugin,
            deliver,
            clean_session: role.clean_session,
            retry: role.retry,
        })))
    }

    /// The plugin the source feeds.
    pub fn plugin(&self) -> &str {
        match self {
            SourceConfig::Mqtt(m) => &m.plugin,
        }
    }

    /// How the plugin is fed.
    pub fn deliver(&self) -> &SourceDelivery {
        match self {
            SourceConfig::Mqtt(m) => &m.deliver,
        }
    }

    /// Checks what the source needs from the machine (TLS files).
    pub(super) fn check_files(&self, ctx: &Ctx<'_>, key: &str) -> Result<(), ConfigError> {
        match self {
            SourceConfig::Mqtt(m) => m.connection.tls.check(ctx, key),
        }
    }
}
