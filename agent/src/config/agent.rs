//! `[agent]` and `[log]`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::de::{self, Ctx, IDENT_RULE};
use super::env::Env;
use super::ConfigError;

/// Environment variable that overrides `agent.auth_token`, so the secret need not be in
/// the file.
pub const AUTH_TOKEN_ENV: &str = "OUTPOST_AUTH_TOKEN";

/// Where the API is served: a TCP address, or a Unix socket for producers on the same
/// box (no TCP on the way; the same API and token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Tcp(SocketAddr),
    /// `unix:/run/outpost/ingest.sock` in config.
    Unix(PathBuf),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Tcp(addr) => write!(f, "{addr}"),
            Endpoint::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// `[agent]`, validated.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Where the API listens. Loopback by default: producers are local.
    pub listen: Endpoint,
    /// A Unix socket served besides `listen` (`agent.listen_unix`).
    pub listen_unix: Option<PathBuf>,
    /// Where the queue (and the plugins' key-value stores) live.
    pub data_dir: PathBuf,
    /// This device's id, for topic templates and monitoring tags.
    pub device_id: String,
    /// Bearer token guarding every route but `/v1/health` (`OUTPOST_AUTH_TOKEN` wins).
    pub auth_token: Option<String>,
    /// Request bodies are refused beyond this size.
    pub limits: IngestLimits,
    /// The `service` tag of the agent's monitoring points.
    pub service_name: String,
}

/// What the API accepts from a client: how big, how slow, how deep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestLimits {
    /// Largest accepted request body; larger ones get 413.
    pub max_body_bytes: usize,
    /// How long a client may take to send the request headers.
    pub header_read_timeout: Duration,
    /// How long a request body may stall (no bytes arriving) before the request is cut
    /// off with 408.
    pub body_read_timeout: Duration,
    /// Deepest nesting of arrays and objects accepted inside an event.
    pub max_json_depth: usize,
}

impl Default for IngestLimits {
    fn default() -> Self {
        IngestLimits {
            max_body_bytes: 8 << 20,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            max_json_depth: 64,
        }
    }
}

/// `[agent]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AgentSection {
    #[serde(default = "default_listen", deserialize_with = "endpoint")]
    listen: Endpoint,
    #[serde(default)]
    listen_unix: Option<PathBuf>,
    #[serde(default = "default_data_dir")]
    data_dir: PathBuf,
    #[serde(default)]
    device_id: Option<String>,
    #[serde(default)]
    auth_token: Option<String>,
    #[serde(default = "default_max_body", deserialize_with = "de::positive")]
    max_body_bytes: usize,
    #[serde(
        default = "default_read_timeout",
        deserialize_with = "de::positive_millis"
    )]
    header_read_timeout_ms: Duration,
    #[serde(
        default = "default_read_timeout",
        deserialize_with = "de::positive_millis"
    )]
    body_read_timeout_ms: Duration,
    #[serde(default = "default_depth", deserialize_with = "de::positive")]
    max_json_depth: usize,
    #[serde(default = "default_service")]
    service_name: String,
}

impl Default for AgentSection {
    fn default() -> Self {
        let limits = IngestLimits::default();
        AgentSection {
            listen: default_listen(),
            listen_unix: None,
            data_dir: default_data_dir(),
            device_id: None,
            auth_token: None,
            max_body_bytes: limits.max_body_bytes,
            header_read_timeout_ms: limits.header_read_timeout,
            body_read_timeout_ms: limits.body_read_timeout,
            max_json_depth: limits.max_json_depth,
            service_name: default_service(),
        }
    }
}

fn default_listen() -> Endpoint {
    Endpoint::Tcp(SocketAddr::from(([127, 0, 0, 1], 8080)))
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("./data")
}
fn default_max_body() -> usize {
    IngestLimits::default().max_body_bytes
}
fn default_read_timeout() -> Duration {
    IngestLimits::default().header_read_timeout
}
fn default_depth() -> usize {
    IngestLimits::default().max_json_depth
}
fn default_service() -> String {
    "outpost".into()
}

fn endpoint<'de, D: Deserializer<'de>>(d: D) -> Result<Endpoint, D::Error> {
    let text = String::deserialize(d)?;
    if let Some(path) = text.strip_prefix("unix:") {
        if !path.starts_with('/') {
            return Err(serde::de::Error::custom(format!(
                "`{text}`: a Unix socket needs an absolute path (unix:/run/outpost/ingest.sock)"
            )));
        }
        return Ok(Endpoint::Unix(PathBuf::from(path)));
    }
    text.parse().map(Endpoint::Tcp).map_err(|_| {
        serde::de::Error::custom(format!(
            "`{text}` is not an IP:port address (or unix:/path/to.sock)"
        ))
    })
}

impl AgentSection {
    /// Fills in what comes from the environment: the device id (the host name) and the
    /// auth token override.
    pub(super) fn resolve(self, ctx: &Ctx<'_>, env: &Env) -> Result<AgentConfig, ConfigError> {
        let device_id = self
            .device_id
            .or_else(|| env.hostname().map(str::to_owned))
            .unwrap_or_else(|| "outpost".into());
        if !de::is_identifier(&device_id) {
            return Err(ctx.error("agent.device_id", IDENT_RULE));
        }
        if let Some(path) = &self.listen_unix {
            if !path.is_absolute() {
                return Err(ctx.error("agent.listen_unix", "must be an absolute path"));
            }
        }
        Ok(AgentConfig {
            listen: self.listen,
            listen_unix: self.listen_unix,
            data_dir: self.data_dir,
            device_id,
            auth_token: env
                .non_empty(AUTH_TOKEN_ENV)
                .map(str::to_owned)
                .or(self.auth_token),
            limits: IngestLimits {
                max_body_bytes: self.max_body_bytes,
                header_read_timeout: self.header_read_timeout_ms,
                body_read_timeout: self.body_read_timeout_ms,
                max_json_depth: self.max_json_depth,
            },
            service_name: self.service_name,
        })
    }
}

/// `[log]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
}

/// How log records are written to stderr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}
