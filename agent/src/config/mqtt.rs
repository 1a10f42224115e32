//! The MQTT connection keys, shared by MQTT sinks (`[sinks.<name>]`, `type = "mqtt"`)
//! and MQTT sources (`[sources.<name>]`). Each role has its own struct for its own keys
//! (`config::sinks`, `config::sources`); the connection part is split off by the field
//! names serde derives for it, so a sink-only key on a source is refused by serde.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::connection::{Auth, ConnectionKeys};
use super::de::Ctx;
use super::ConfigError;

/// An MQTT broker connection, validated.
#[derive(Debug, Clone)]
pub struct MqttConnection {
    pub broker: BrokerAddr,
    pub protocol: MqttProtocol,
    /// Default: `<device_id>-<sink or source name>`.
    pub client_id: Option<String>,
    pub username: Option<String>,
    /// From `password`, or read from the variable `password_env` names.
    pub password: Option<String>,
    pub keep_alive: Duration,
    pub tls: TlsFiles,
    pub qos: QoS,
    /// Largest packet sent or received; larger messages are dead-lettered.
    pub max_packet_bytes: usize,
}

/// PEM files of a TLS client: the CA bundle (default: the system roots) and, for
/// mutual TLS, a client certificate and key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct TlsFiles {
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    #[serde(default)]
    pub client_key: Option<PathBuf>,
}

impl TlsFiles {
    /// The files exist; cert and key go together.
    pub(super) fn check(&self, ctx: &Ctx<'_>, key: &str) -> Result<(), ConfigError> {
        if self.client_cert.is_some() != self.client_key.is_some() {
            return Err(ctx.error(
                format!("{key}.client_cert"),
                "client_cert and client_key go together",
            ));
        }
        for (k, path) in [
            ("ca_file", &self.ca_file),
            ("client_cert", &self.client_cert),
            ("client_key", &self.client_key),
        ] {
            if let Some(path) = path.as_ref().filter(|p| !p.is_file()) {
                return Err(ctx.error(
                    format!("{key}.{k}"),
                    format!("{} is not a readable file", path.display()),
                ));
            }
        }
        Ok(())
    }
}

/// `mqtt://host:port` or `mqtts://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddr {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

impl std::fmt::Display for BrokerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

fn broker_addr<'de, D: Deserializer<'de>>(d: D) -> Result<BrokerAddr, D::Error> {
    use serde::de::Error;
    let text = String::deserialize(d)?;
    let url = url::Url::parse(&text).map_err(|e| Error::custom(format!("`{text}`: {e}")))?;
    let tls = match url.scheme() {
        "mqtt" => false,
        "mqtts" => true,
        other => {
            return Err(Error::custom(format!(
                "scheme `{other}` is not supported (use mqtt:// or mqtts://)"
            )))
        }
    };
    let host = url
        .host_str()
        .ok_or_else(|| Error::custom(format!("`{text}` has no host")))?
        .trim_matches(|c| c == '[' || c == ']')
        .to_owned();
    Ok(BrokerAddr {
        host,
        port: url.port().unwrap_or(if tls { 8883 } else { 1883 }),
        tls,
    })
}

/// MQTT protocol version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum MqttProtocol {
    #[serde(rename = "3.1.1")]
    V311,
    /// Carries the message id as the `idempotency-key` user property.
    #[default]
    #[serde(rename = "5")]
    V5,
}

/// MQTT quality of service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "u8")]
pub enum QoS {
    AtMostOnce,
    AtLeastOnce,
    ExactlyOnce,
}

impl TryFrom<u8> for QoS {
    type Error = &'static str;
    fn try_from(q: u8) -> Result<Self, Self::Error> {
        match q {
            0 => Ok(QoS::AtMostOnce),
            1 => Ok(QoS::AtLeastOnce),
            2 => Ok(QoS::ExactlyOnce),
            _ => Err("must be 0, 1 or 2"),
        }
    }
}

/// The connection keys as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConnectionSection {
    #[serde(deserialize_with = "broker_addr")]
    url: BrokerAddr,
    #[serde(default)]
    protocol: MqttProtocol,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default = "default_keep_alive")]
    keep_alive_secs: u64,
    #[serde(default = "default_qos")]
    qos: QoS,
    #[serde(default = "default_max_packet", deserialize_with = "max_packet")]
    max_packet_bytes: usize,
}

fn default_keep_alive() -> u64 {
    30
}
fn default_qos() -> QoS {
    QoS::AtLeastOnce
}
fn default_max_packet() -> usize {
    1 << 20
}
fn max_packet<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    match usize::deserialize(d)? {
        n if n < 128 => Err(serde::de::Error::custom("must be at least 128")),
        n => Ok(n),
    }
}

impl ConnectionKeys for ConnectionSection {
    type Connection = MqttConnection;

    fn resolve(self, auth: Auth, _: &Ctx<'_>, _: &str) -> Result<MqttConnection, ConfigError> {
        Ok(MqttConnection {
            broker: self.url,
            protocol: self.protocol,
            client_id: self.client_id,
            username: auth.username,
            password: auth.password,
            keep_alive: Duration::from_secs(self.keep_alive_secs.max(5)),
            tls: auth.tls,
            qos: self.qos,
            max_packet_bytes: self.max_packet_bytes,
        })
    }
}
