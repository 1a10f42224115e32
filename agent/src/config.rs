//! The agent's TOML configuration: parsing, defaults and validation.
//!
//! Every error names the file and the key, so an operator on a device can fix the
//! config without reading the source. A minimal file (even an empty one) works.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// A configuration error: the file, the key (dotted path) and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {file}: {source}")]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {file}: {message}")]
    Parse { file: PathBuf, message: String },
    #[error("invalid config file {file}: key `{key}`: {message}")]
    Key {
        file: PathBuf,
        key: String,
        message: String,
    },
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from (for messages and relative paths).
    pub file: PathBuf,
    pub agent: AgentConfig,
    pub plugins: PluginsConfig,
    pub sinks: BTreeMap<String, SinkConfig>,
    pub queue: QueueConfig,
    pub log: LogConfig,
    pub sources: BTreeMap<String, SourceConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    agent: AgentConfig,
    #[serde(default)]
    plugins: PluginsConfig,
    #[serde(default)]
    sinks: BTreeMap<String, SinkConfig>,
    #[serde(default)]
    queue: QueueConfig,
    #[serde(default)]
    log: LogConfig,
    #[serde(default)]
    sources: BTreeMap<String, SourceConfig>,
}

/// `[agent]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// Where the ingest API listens. Loopback by default: producers are local.
    pub listen: String,
    /// Where the queue (and the plugins' key-value stores) live.
    pub data_dir: PathBuf,
    /// This device's id, for topic templates and monitoring tags.
    pub device_id: String,
    /// Bearer token guarding every route but `/v1/health`. The environment variable
    /// `OUTPOST_AUTH_TOKEN` overrides it, so the secret need not be in the file.
    pub auth_token: Option<String>,
    /// Largest accepted request body; larger ones get 413.
    pub max_body_bytes: usize,
    /// How long a client may take to send the request headers.
    pub header_read_timeout_ms: u64,
    /// The `service` tag of the agent's monitoring points.
    pub service_name: String,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("./data"),
            device_id: default_device_id(),
            auth_token: None,
            max_body_bytes: 8 << 20,
            header_read_timeout_ms: 10_000,
            service_name: "outpost".into(),
        }
    }
}

impl AgentConfig {
    /// The validated listen address.
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen.parse().expect("validated at load")
    }
}

fn default_device_id() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "outpost".into())
}

/// `[plugins]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginsConfig {
    /// Where `<name>.wasm` files are looked up.
    pub dir: PathBuf,
    /// Names of the plugins to load, in call order.
    pub active: Vec<String>,
    /// Per-plugin settings, handed to the plugin's `initialize` as JSON.
    pub settings: BTreeMap<String, toml::Table>,
    /// Per-plugin sandbox limits and grants.
    pub sandbox: BTreeMap<String, SandboxConfig>,
    /// How often the agent's own monitoring points are handed to `monitoring_event`
    /// plugins (they are batched, never one call per point).
    pub monitoring_flush_ms: u64,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        PluginsConfig {
            dir: PathBuf::from("./plugins"),
            active: Vec::new(),
            settings: BTreeMap::new(),
            sandbox: BTreeMap::new(),
            monitoring_flush_ms: 1000,
        }
    }
}

/// `[plugins.sandbox.<name>]`: what a WASM plugin may use. Nothing is granted by
/// default: no filesystem, no network, no environment.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxConfig {
    /// Linear memory cap.
    pub max_memory_mb: u32,
    /// Wall-clock limit of one call.
    pub timeout_ms: u64,
    /// Instances called concurrently (each with its own memory). Default: the number of
    /// CPUs for pure on-event plugins, 1 for plugins with a timer or routes.
    pub instances: Option<usize>,
    /// Host directory → guest path, read-write.
    pub allowed_paths: BTreeMap<String, String>,
    /// Host directory → guest path, read-only.
    pub read_only_paths: BTreeMap<String, String>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            max_memory_mb: 64,
            timeout_ms: 5_000,
            instances: None,
            allowed_paths: BTreeMap::new(),
            read_only_paths: BTreeMap::new(),
        }
    }
}

impl SandboxConfig {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// `[sinks.<name>]`: where messages go.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SinkConfig {
    Http(HttpSinkConfig),
    File(FileSinkConfig),
    Mqtt(Box<MqttConfig>),
}

impl SinkConfig {
    pub fn retry(&self) -> &RetryConfig {
        match self {
            SinkConfig::Http(c) => &c.retry,
            SinkConfig::File(c) => &c.retry,
            SinkConfig::Mqtt(c) => &c.retry,
        }
    }

    /// The most messages one delivery call of this sink carries (a batched POST, an
    /// MQTT in-flight window), so the delivery loop reads at least that many at once.
    /// The file sink takes whatever one read brought, so it asks for nothing more.
    pub fn max_batch(&self) -> usize {
        match self {
            SinkConfig::Http(c) => c.batch_max_messages,
            SinkConfig::File(_) => 1,
            SinkConfig::Mqtt(c) => c.max_in_flight,
        }
    }

    /// The sink type's name, for health and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            SinkConfig::Http(_) => "http",
            SinkConfig::File(_) => "file",
            SinkConfig::Mqtt(_) => "mqtt",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSinkConfig {
    pub url: String,
    #[serde(default = "default_http_timeout_ms")]
    pub timeout_ms: u64,
    /// Extra headers on every request (e.g. an API key).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Messages per POST. 1 (the default) posts each message as it is; more posts a
    /// JSON array of the messages (see the README), which receivers with a bulk
    /// endpoint take far faster.
    #[serde(default = "one")]
    pub batch_max_messages: usize,
    /// Upper bound of a batched POST's body; a single larger message still goes alone.
    #[serde(default = "default_batch_max_bytes")]
    pub batch_max_bytes: usize,
    #[serde(default)]
    pub retry: RetryConfig,
}

fn default_http_timeout_ms() -> u64 {
    10_000
}
fn one() -> usize {
    1
}
fn default_batch_max_bytes() -> usize {
    1 << 20
}
/// Most messages in one batched POST (the delivery loop holds a batch in memory).
pub const HTTP_MAX_BATCH: usize = 1000;
/// Largest in-flight window of an MQTT sink (rumqttc's request channel holds it).
pub const MQTT_MAX_IN_FLIGHT: usize = 64;
fn default_max_in_flight() -> usize {
    1
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// NDJSON file the messages are appended to.
    pub path: PathBuf,
    #[serde(default)]
    pub retry: RetryConfig,
}

/// An MQTT connection: `[sinks.<name>]` with `type = "mqtt"` (publishing) or
/// `[sources.<name>]` (subscribing). One struct for both roles so the connection keys
/// are spelled once; keys of the other role are refused by validation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// `mqtt://host:port` or `mqtts://host:port` (TLS).
    pub url: String,
    #[serde(default)]
    pub protocol: MqttProtocol,
    /// Default: `<device_id>-<sink or source name>`.
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    /// Plain password (prefer `password_env`).
    #[serde(default)]
    pub password: Option<String>,
    /// Environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    #[serde(default = "default_keep_alive_secs")]
    pub keep_alive_secs: u64,
    /// Start a clean session on (re)connect. Default: true for sinks (Outpost resends
    /// unacknowledged messages from its own queue either way), false for sources (so
    /// the broker keeps messages for the agent while it is away).
    #[serde(default)]
    pub clean_session: Option<bool>,
    /// PEM CA bundle for `mqtts://` (default: the system roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate and key, for mutual TLS.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    #[serde(default = "default_qos")]
    pub qos: u8,
    /// Largest packet sent or received; larger messages are dead-lettered.
    #[serde(default = "default_max_packet_bytes")]
    pub max_packet_bytes: usize,

    // Sink role.
    /// Topic template: `{device_id}`, `{sink}`, `{handler_id}`. A plugin's per-message
    /// topic takes precedence.
    #[serde(default)]
    pub topic: Option<String>,
    #[serde(default)]
    pub retain: bool,
    /// How long to wait for the broker's acknowledgement of one message.
    #[serde(default = "default_ack_timeout_ms")]
    pub ack_timeout_ms: u64,
    /// Publishes sent before the first of them must be acknowledged (1 ..= 64): a
    /// window hides the round trip to the broker. Default 1: a broker that leaves
    /// Nagle's algorithm on (mosquitto's default) holds back its acknowledgements of a
    /// window until the agent's delayed ACK, ~40 ms per window (see BENCHMARKS.md).
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    #[serde(default)]
    pub retry: RetryConfig,

    // Source role.
    /// Topic filters to subscribe to.
    #[serde(default)]
    pub topics: Vec<String>,
    /// The plugin that gets the messages.
    #[serde(default)]
    pub plugin: Option<String>,
    /// How the plugin gets them.
    #[serde(default)]
    pub deliver: SourceDelivery,
    /// For `deliver = "sending_event"`: the event's `handler_id` and `account_id`.
    #[serde(default)]
    pub handler_id: Option<String>,
    #[serde(default)]
    pub account_id: Option<String>,
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

/// How a source hands messages to its plugin.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceDelivery {
    /// The background plugin's `on_message`.
    #[default]
    OnMessage,
    /// As a `sending_event` of one event (the payload) to the plugin.
    SendingEvent,
}

fn default_qos() -> u8 {
    1
}
fn default_keep_alive_secs() -> u64 {
    30
}
fn default_max_packet_bytes() -> usize {
    1 << 20
}
fn default_ack_timeout_ms() -> u64 {
    10_000
}

/// `[sources.<name>]`: where events come from besides the HTTP API.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SourceConfig {
    Mqtt(MqttConfig),
}

/// `[sinks.<name>.retry]`: exponential backoff with jitter while a sink is unreachable.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    pub initial_ms: u64,
    pub max_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial_ms: 200,
            max_ms: 30_000,
        }
    }
}

/// What to do when the queue reaches `max_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Refuse new requests with 507: the producer keeps its data.
    Reject,
    /// Drop the oldest queued messages (counted) to make room.
    DropOldest,
}

/// `[queue]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    pub max_bytes: u64,
    pub when_full: WhenFull,
    /// sled page cache; small by default for 512 MB boards.
    pub cache_mb: u64,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            max_bytes: 512 << 20,
            when_full: WhenFull::Reject,
            cache_mb: 8,
        }
    }
}

/// `[log]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl Config {
    /// Reads, parses and validates `file`. Creates the data dir (a dir that cannot be
    /// created is a config error).
    pub fn load(file: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
            file: file.to_owned(),
            source,
        })?;
        Self::parse(file, &text)
    }

    /// Parses and validates `text`, read from `file`.
    pub fn parse(file: &Path, text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            file: file.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        let config = Config {
            file: file.to_owned(),
            agent: raw.agent,
            plugins: raw.plugins,
            sinks: raw.sinks,
            queue: raw.queue,
            log: raw.log,
            sources: raw.sources,
        };
        config.validate()?;
        Ok(config)
    }

    fn key_error(&self, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::Key {
            file: self.file.clone(),
            key: key.into(),
            message: message.into(),
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.agent.listen.parse::<SocketAddr>().is_err() {
            return Err(self.key_error(
                "agent.listen",
                format!("`{}` is not an IP:port address", self.agent.listen),
            ));
        }
        if !is_identifier(&self.agent.device_id) {
            return Err(self.key_error("agent.device_id", IDENT_RULE));
        }
        if self.agent.max_body_bytes == 0 {
            return Err(self.key_error("agent.max_body_bytes", "must be positive"));
        }
        std::fs::create_dir_all(&self.agent.data_dir).map_err(|e| {
            self.key_error(
                "agent.data_dir",
                format!("cannot create {}: {e}", self.agent.data_dir.display()),
            )
        })?;

        for (name, sink) in &self.sinks {
            let key = format!("sinks.{name}");
            if !is_identifier(name) {
                return Err(self.key_error(key, IDENT_RULE));
            }
            self.validate_sink(&key, sink)?;
        }

        let mut seen = std::collections::HashSet::new();
        for (i, name) in self.plugins.active.iter().enumerate() {
            let key = format!("plugins.active[{i}]");
            if !is_identifier(name) {
                return Err(self.key_error(key, format!("`{name}`: {IDENT_RULE}")));
            }
            if !seen.insert(name) {
                return Err(self.key_error(key, format!("`{name}` is listed twice")));
            }
        }
        for (name, settings) in &self.plugins.settings {
            for (k, v) in settings {
                let key = format!("plugins.settings.{name}.{k}");
                let referenced: Vec<&str> = match (k.as_str(), v) {
                    ("sink", toml::Value::String(s)) => vec![s.as_str()],
                    ("sinks", toml::Value::Array(a)) => {
                        a.iter().filter_map(|v| v.as_str()).collect()
                    }
                    _ => continue,
                };
                for sink in referenced {
                    if !self.sinks.contains_key(sink) {
                        return Err(self.key_error(
                            key,
                            format!("sink `{sink}` is not defined (no [sinks.{sink}])"),
                        ));
                    }
                }
            }
        }
        for (name, sandbox) in &self.plugins.sandbox {
            let key = format!("plugins.sandbox.{name}");
            if sandbox.max_memory_mb == 0 {
                return Err(self.key_error(format!("{key}.max_memory_mb"), "must be positive"));
            }
            if sandbox.timeout_ms == 0 {
                return Err(self.key_error(format!("{key}.timeout_ms"), "must be positive"));
            }
            if sandbox.instances == Some(0) {
                return Err(self.key_error(format!("{key}.instances"), "must be positive"));
            }
            for host in sandbox
                .allowed_paths
                .keys()
                .chain(sandbox.read_only_paths.keys())
            {
                if !Path::new(host).is_dir() {
                    return Err(self.key_error(
                        format!("{key}.allowed_paths"),
                        format!("`{host}` is not a directory"),
                    ));
                }
            }
        }
        for (name, source) in &self.sources {
            let key = format!("sources.{name}");
            if !is_identifier(name) {
                return Err(self.key_error(key, IDENT_RULE));
            }
            self.validate_source(&key, source)?;
        }
        if self.queue.max_bytes < 4096 {
            return Err(self.key_error("queue.max_bytes", "must be at least 4096"));
        }
        Ok(())
    }

    fn validate_sink(&self, key: &str, sink: &SinkConfig) -> Result<(), ConfigError> {
        let retry = sink.retry();
        if retry.initial_ms == 0 || retry.max_ms < retry.initial_ms {
            return Err(self.key_error(format!("{key}.retry"), "need 0 < initial_ms <= max_ms"));
        }
        match sink {
            SinkConfig::Http(http) => {
                let url = url::Url::parse(&http.url).map_err(|e| {
                    self.key_error(format!("{key}.url"), format!("`{}`: {e}", http.url))
                })?;
                if url.scheme() != "http" {
                    return Err(self.key_error(
                        format!("{key}.url"),
                        format!("scheme `{}` is not supported (use http://)", url.scheme()),
                    ));
                }
                if url.host_str().is_none() {
                    return Err(self.key_error(format!("{key}.url"), "has no host"));
                }
                if http.timeout_ms == 0 {
                    return Err(self.key_error(format!("{key}.timeout_ms"), "must be positive"));
                }
                if !(1..=HTTP_MAX_BATCH).contains(&http.batch_max_messages) {
                    return Err(self.key_error(
                        format!("{key}.batch_max_messages"),
                        format!("must be between 1 and {HTTP_MAX_BATCH}"),
                    ));
                }
                for (name, value) in &http.headers {
                    if hyper::header::HeaderName::from_bytes(name.as_bytes()).is_err()
                        || hyper::header::HeaderValue::from_str(value).is_err()
                    {
                        return Err(self.key_error(
                            format!("{key}.headers.{name}"),
                            "not a valid HTTP header",
                        ));
                    }
                }
            }
            SinkConfig::File(file) => {
                let parent = file.path.parent().filter(|p| !p.as_os_str().is_empty());
                if let Some(parent) = parent {
                    std::fs::create_dir_all(parent).map_err(|e| {
                        self.key_error(
                            format!("{key}.path"),
                            format!("cannot create {}: {e}", parent.display()),
                        )
                    })?;
                }
            }
            SinkConfig::Mqtt(mqtt) => {
                self.validate_mqtt(key, mqtt)?;
                let source_only = [
                    ("topics", !mqtt.topics.is_empty()),
                    ("plugin", mqtt.plugin.is_some()),
                    ("handler_id", mqtt.handler_id.is_some()),
                    ("account_id", mqtt.account_id.is_some()),
                ];
                if let Some((k, _)) = source_only.iter().find(|(_, set)| *set) {
                    return Err(self.key_error(format!("{key}.{k}"), "only for [sources]"));
                }
                if mqtt.topic.as_deref().is_none_or(str::is_empty) {
                    return Err(
                        self.key_error(format!("{key}.topic"), "an MQTT sink needs a topic")
                    );
                }
                if mqtt.ack_timeout_ms == 0 {
                    return Err(self.key_error(format!("{key}.ack_timeout_ms"), "must be positive"));
                }
                if !(1..=MQTT_MAX_IN_FLIGHT).contains(&mqtt.max_in_flight) {
                    return Err(self.key_error(
                        format!("{key}.max_in_flight"),
                        format!("must be between 1 and {MQTT_MAX_IN_FLIGHT}"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Checks the connection keys shared by MQTT sinks and sources.
    fn validate_mqtt(&self, key: &str, mqtt: &MqttConfig) -> Result<(), ConfigError> {
        let url = url::Url::parse(&mqtt.url)
            .map_err(|e| self.key_error(format!("{key}.url"), format!("`{}`: {e}", mqtt.url)))?;
        if !matches!(url.scheme(), "mqtt" | "mqtts") {
            return Err(self.key_error(
                format!("{key}.url"),
                format!(
                    "scheme `{}` is not supported (use mqtt:// or mqtts://)",
                    url.scheme()
                ),
            ));
        }
        if url.host_str().is_none() {
            return Err(self.key_error(format!("{key}.url"), "has no host"));
        }
        if mqtt.qos > 2 {
            return Err(self.key_error(format!("{key}.qos"), "must be 0, 1 or 2"));
        }
        if let Some(var) = &mqtt.password_env {
            if std::env::var_os(var).is_none() {
                return Err(self.key_error(
                    format!("{key}.password_env"),
                    format!("environment variable `{var}` is not set"),
                ));
            }
        }
        for (k, path) in [
            ("ca_file", &mqtt.ca_file),
            ("client_cert", &mqtt.client_cert),
            ("client_key", &mqtt.client_key),
        ] {
            if let Some(path) = path {
                if !path.is_file() {
                    return Err(self.key_error(
                        format!("{key}.{k}"),
                        format!("{} is not a readable file", path.display()),
                    ));
                }
            }
        }
        if mqtt.client_cert.is_some() != mqtt.client_key.is_some() {
            return Err(self.key_error(
                format!("{key}.client_cert"),
                "client_cert and client_key go together",
            ));
        }
        if mqtt.max_packet_bytes < 128 {
            return Err(self.key_error(format!("{key}.max_packet_bytes"), "must be at least 128"));
        }
        Ok(())
    }

    fn validate_source(&self, key: &str, source: &SourceConfig) -> Result<(), ConfigError> {
        let SourceConfig::Mqtt(mqtt) = source;
        self.validate_mqtt(key, mqtt)?;
        if mqtt.topics.is_empty() {
            return Err(self.key_error(format!("{key}.topics"), "subscribe to at least one topic"));
        }
        if mqtt.topic.is_some() || mqtt.retain {
            return Err(
                self.key_error(format!("{key}.topic"), "only for MQTT sinks (use `topics`)")
            );
        }
        let Some(plugin) = &mqtt.plugin else {
            return Err(self.key_error(
                format!("{key}.plugin"),
                "name the plugin that gets the messages",
            ));
        };
        if !self.plugins.active.contains(plugin) {
            return Err(self.key_error(
                format!("{key}.plugin"),
                format!("`{plugin}` is not in plugins.active"),
            ));
        }
        if mqtt.deliver == SourceDelivery::SendingEvent
            && (mqtt.handler_id.is_none() || mqtt.account_id.is_none())
        {
            return Err(self.key_error(
                format!("{key}.handler_id"),
                "deliver = \"sending_event\" needs handler_id and account_id",
            ));
        }
        Ok(())
    }

    /// The settings table of plugin `name`, as the JSON object handed to the plugin.
    pub fn plugin_settings(&self, name: &str) -> serde_json::Map<String, serde_json::Value> {
        match self.plugins.settings.get(name) {
            Some(table) => match serde_json::to_value(table) {
                Ok(serde_json::Value::Object(map)) => map,
                _ => serde_json::Map::new(),
            },
            None => serde_json::Map::new(),
        }
    }

    /// The sandbox of plugin `name` (defaults if not configured).
    pub fn sandbox(&self, name: &str) -> SandboxConfig {
        self.plugins.sandbox.get(name).cloned().unwrap_or_default()
    }
}

const IDENT_RULE: &str = "names may only use letters, digits, `_` and `-`";

/// Names used as keys on disk and in URLs: ASCII letters, digits, `_`, `-`.
pub fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let text =
            format!("{text}\n",).replace("@DATA@", &dir.path().join("data").display().to_string());
        let file = dir.path().join("outpost.toml");
        let r = Config::parse(&file, &text);
        drop(dir);
        r
    }

    #[test]
    fn minimal_file_works() {
        let c = parse("[agent]\ndata_dir = \"@DATA@\"").unwrap();
        assert_eq!(c.agent.listen, "127.0.0.1:8080");
        assert_eq!(c.queue.when_full, WhenFull::Reject);
        assert!(c.plugins.active.is_empty());
    }

    #[test]
    fn design_example_parses() {
        let c = parse(
            r#"
[agent]
listen   = "127.0.0.1:8080"
data_dir = "@DATA@"
device_id = "cam-01"

[plugins]
dir    = "./plugins"
active = ["event_sending_plugin_example", "request_monitoring_plugin"]

[plugins.settings.event_sending_plugin_example]
sink = "store"

[sinks.store]
type = "http"
url  = "http://127.0.0.1:5020/1/buckets/plugin_test_bucket/objects"

[queue]
max_bytes = 536870912
when_full = "drop_oldest"
"#,
        )
        .unwrap();
        assert_eq!(c.agent.device_id, "cam-01");
        assert_eq!(c.queue.when_full, WhenFull::DropOldest);
        assert!(matches!(c.sinks["store"], SinkConfig::Http(_)));
        assert_eq!(
            c.plugin_settings("event_sending_plugin_example")["sink"],
            "store"
        );
    }

    fn error_of(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn unknown_key_is_named() {
        let e = error_of("[agent]\ndata_dir = \"@DATA@\"\nlisten_on = \"x\"");
        assert!(e.contains("listen_on"), "{e}");
        assert!(e.contains("outpost.toml"), "{e}");
    }

    #[test]
    fn bad_url_is_named() {
        let e = error_of(
            "[agent]\ndata_dir = \"@DATA@\"\n[sinks.store]\ntype = \"http\"\nurl = \"not a url\"",
        );
        assert!(e.contains("sinks.store.url"), "{e}");
    }

    #[test]
    fn undefined_sink_is_named() {
        let e = error_of(
            "[agent]\ndata_dir = \"@DATA@\"\n[plugins.settings.forward]\nsink = \"nowhere\"",
        );
        assert!(e.contains("plugins.settings.forward.sink"), "{e}");
        assert!(e.contains("nowhere"), "{e}");
    }

    #[test]
    fn bad_listen_and_when_full_are_named() {
        let e = error_of("[agent]\ndata_dir = \"@DATA@\"\nlisten = \"localhost\"");
        assert!(e.contains("agent.listen"), "{e}");
        let e = error_of("[agent]\ndata_dir = \"@DATA@\"\n[queue]\nwhen_full = \"explode\"");
        assert!(e.contains("explode"), "{e}");
    }

    #[test]
    fn uncreatable_data_dir_is_named() {
        let e = error_of("[agent]\ndata_dir = \"/proc/outpost-cannot-exist\"");
        assert!(e.contains("agent.data_dir"), "{e}");
    }

    #[test]
    fn duplicate_plugin_is_named() {
        let e = error_of(
            "[agent]\ndata_dir = \"@DATA@\"\n[plugins]\nactive = [\"forward\", \"forward\"]",
        );
        assert!(e.contains("plugins.active[1]"), "{e}");
    }
}

#[cfg(test)]
mod mqtt_tests {
    use super::*;

    fn error_of(text: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let text = text.replace("@DATA@", &dir.path().join("d").display().to_string());
        Config::parse(&dir.path().join("o.toml"), &text)
            .unwrap_err()
            .to_string()
    }

    const BASE: &str = "[agent]\ndata_dir = \"@DATA@\"\n";

    #[test]
    fn mqtt_sink_and_source_parse() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "[agent]\ndata_dir = \"{}\"\n[plugins]\nactive = [\"p\"]\n\
             [sinks.cloud]\ntype = \"mqtt\"\nurl = \"mqtts://127.0.0.1:8883\"\ntopic = \"a/{{device_id}}\"\nprotocol = \"3.1.1\"\n\
             [sources.s]\ntype = \"mqtt\"\nurl = \"mqtt://127.0.0.1\"\ntopics = [\"x/#\"]\nplugin = \"p\"\n",
            dir.path().join("d").display()
        );
        let c = Config::parse(&dir.path().join("o.toml"), &text).unwrap();
        let SinkConfig::Mqtt(m) = &c.sinks["cloud"] else {
            panic!()
        };
        assert_eq!(m.protocol, MqttProtocol::V311);
        assert_eq!(m.qos, 1);
        let SourceConfig::Mqtt(s) = &c.sources["s"];
        assert_eq!(s.deliver, SourceDelivery::OnMessage);
    }

    #[test]
    fn mqtt_errors_name_the_key() {
        let sink = |extra: &str| {
            format!("{BASE}[sinks.c]\ntype = \"mqtt\"\nurl = \"mqtt://h\"\ntopic = \"t\"\n{extra}")
        };
        assert!(error_of(&sink("qos = 3")).contains("sinks.c.qos"));
        assert!(error_of(&sink("topics = [\"x\"]")).contains("sinks.c.topics"));
        assert!(error_of(&sink("password_env = \"OUTPOST_TEST_UNSET_VAR\""))
            .contains("sinks.c.password_env"));
        assert!(error_of(&format!(
            "{BASE}[sinks.c]\ntype = \"mqtt\"\nurl = \"http://h\"\ntopic = \"t\""
        ))
        .contains("sinks.c.url"));
        assert!(error_of(&format!(
            "{BASE}[sinks.c]\ntype = \"mqtt\"\nurl = \"mqtt://h\""
        ))
        .contains("sinks.c.topic"));
        let source = format!("{BASE}[sources.s]\ntype = \"mqtt\"\nurl = \"mqtt://h\"\ntopics = [\"x\"]\nplugin = \"nope\"");
        assert!(error_of(&source).contains("sources.s.plugin"));
    }
}
