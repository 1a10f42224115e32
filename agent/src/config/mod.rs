//! The agent's TOML configuration: parsing, defaults and validation.
//!
//! Every error names the file and the dotted key, so an operator on a device can fix
//! the config without reading the source. A minimal file (even an empty one) works.
//!
//! Three steps, each with one kind of effect:
//! * [`Config::parse`] is pure: text and an [`Env`] snapshot in, validated types out
//!   (`${VAR}` expanded, defaults filled in, cross-references checked);
//! * [`Config::check_files`] looks at the machine (granted directories, TLS files);
//! * [`Config::prepare_dirs`] creates what the agent will write to, at start-up.
//!
//! [`Config::load`] reads the file and does the first two, for `run` and `check`.

mod agent;
mod amqp;
mod connection;
mod de;
mod env;
mod features;
mod fleet;
mod mqtt;
mod plugins;
mod queue;
mod redis;
mod retry;
mod sinks;
mod sources;
mod topics;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use agent::{AgentConfig, Endpoint, IngestLimits, LogConfig, LogFormat, AUTH_TOKEN_ENV};
pub use amqp::AmqpConnection;
pub use de::is_identifier;
pub use env::Env;
pub use features::missing as missing_feature;
pub use fleet::{FleetConfig, FleetTransport};
pub use mqtt::{BrokerAddr, MqttConnection, MqttProtocol, QoS, TlsFiles};
pub use plugins::{PluginsConfig, SandboxConfig};
pub use queue::{QueueConfig, SyncMode, WhenFull};
pub use redis::RedisConnection;
pub use retry::RetryConfig;
pub use sinks::{
    AmqpSinkConfig, DeliveryConfig, FileSinkConfig, HttpSinkConfig, MqttSinkConfig,
    RedisSinkConfig, SinkConfig, SinkKind, AMQP_MAX_IN_FLIGHT, HTTP_MAX_BATCH, MQTT_MAX_IN_FLIGHT,
    REDIS_MAX_BATCH,
};
pub use sinks::{Compression, HttpProxy};
pub use sources::{
    AmqpBinding, AmqpSourceConfig, FeedConfig, MqttSourceConfig, RedisMode, RedisSourceConfig,
    SourceConfig, SourceDelivery, SourceKind,
};
pub use topics::TopicTemplates;

use de::{Ctx, IDENT_RULE};
use env::Expanded;

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
    /// `[fleet]`: the OpAMP server managing this device, if any.
    pub fleet: Option<FleetConfig>,
    /// The text as written (`${VAR}` not expanded): what the agent reports as its
    /// effective config.
    pub text: ConfigText,
}

/// A config file's text as written. Its `Debug` shows only the length: the file may
/// hold a literal secret, and configs end up in logs and panics.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ConfigText(pub std::sync::Arc<str>);

impl std::fmt::Debug for ConfigText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<{} bytes of TOML>", self.0.len())
    }
}

impl std::ops::Deref for ConfigText {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

/// The file's top level, as written; sinks and sources are typed per `type`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    #[serde(default)]
    agent: agent::AgentSection,
    #[serde(default)]
    plugins: PluginsConfig,
    #[serde(default)]
    sinks: BTreeMap<String, toml::Table>,
    #[serde(default)]
    queue: QueueConfig,
    #[serde(default)]
    log: LogConfig,
    #[serde(default)]
    sources: BTreeMap<String, toml::Table>,
    #[serde(default)]
    fleet: Option<toml::Value>,
}

impl Config {
    /// Reads `file`, parses it against the process environment and checks the files it
    /// names.
    pub fn load(file: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
            file: file.to_owned(),
            source,
        })?;
        let config = Self::parse(file, &text, &Env::capture())?;
        config.check_files()?;
        Ok(config)
    }

    /// Parses and validates `text`, read from `file`. No side effects.
    pub fn parse(file: &Path, text: &str, env: &Env) -> Result<Config, ConfigError> {
        let mut root: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Parse {
            file: file.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        let mut expanded = Expanded::default();
        let plain = Expanded::default();
        let plain = Ctx {
            file,
            expanded: &plain,
        };
        for (k, v) in root.iter_mut() {
            env::expand(&plain, env, k, v, &mut expanded)?;
        }
        let ctx = Ctx {
            file,
            expanded: &expanded,
        };
        let doc: Document = ctx.typed("", toml::Value::Table(root))?;
        let mut sinks = BTreeMap::new();
        for (name, table) in doc.sinks {
            let key = format!("sinks.{name}");
            if !is_identifier(&name) {
                return Err(ctx.error(key, IDENT_RULE));
            }
            sinks.insert(name, SinkConfig::parse(&ctx, env, &key, table)?);
        }
        let mut sources = BTreeMap::new();
        for (name, table) in doc.sources {
            let key = format!("sources.{name}");
            if !is_identifier(&name) {
                return Err(ctx.error(key, IDENT_RULE));
            }
            let source = SourceConfig::parse(&ctx, env, &key, table)?;
            if !doc.plugins.active.iter().any(|p| p == source.plugin()) {
                return Err(ctx.error(
                    format!("{key}.plugin"),
                    format!("`{}` is not in plugins.active", source.plugin()),
                ));
            }
            sources.insert(name, source);
        }
        doc.plugins
            .validate(&ctx, |sink| sinks.contains_key(sink))?;
        let fleet = match doc.fleet {
            Some(table) => Some(FleetConfig::parse(&ctx, table)?),
            None => None,
        };
        Ok(Config {
            file: file.to_owned(),
            agent: doc.agent.resolve(&ctx, env)?,
            plugins: doc.plugins,
            sinks,
            queue: doc.queue,
            log: doc.log,
            sources,
            fleet,
            text: ConfigText(text.into()),
        })
    }

    /// Checks what the config names on this machine: granted directories and TLS files.
    pub fn check_files(&self) -> Result<(), ConfigError> {
        let expanded = Expanded::default();
        let ctx = self.ctx(&expanded);
        self.plugins.check_files(&ctx)?;
        for (name, sink) in &self.sinks {
            sink.check_files(&ctx, &format!("sinks.{name}"))?;
        }
        for (name, source) in &self.sources {
            source.check_files(&ctx, &format!("sources.{name}"))?;
        }
        if let Some(fleet) = &self.fleet {
            fleet.check_files(&ctx)?;
        }
        Ok(())
    }

    /// Creates the data dir and the file sinks' directories (start-up).
    pub fn prepare_dirs(&self) -> Result<(), ConfigError> {
        let expanded = Expanded::default();
        let ctx = self.ctx(&expanded);
        let create = |key: &str, dir: &Path| {
            std::fs::create_dir_all(dir)
                .map_err(|e| ctx.error(key, format!("cannot create {}: {e}", dir.display())))
        };
        create("agent.data_dir", &self.agent.data_dir)?;
        for (name, sink) in &self.sinks {
            if let SinkKind::File(file) = &sink.kind {
                if let Some(parent) = file.path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    create(&format!("sinks.{name}.path"), parent)?;
                }
            }
        }
        Ok(())
    }

    /// An error about `key` of this config (for checks made after parsing, such as the
    /// plugins' wiring once they are loaded).
    pub fn key_error(&self, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        self.ctx(&Expanded::default()).error(key, message)
    }

    fn ctx<'a>(&'a self, expanded: &'a Expanded) -> Ctx<'a> {
        Ctx {
            file: &self.file,
            expanded,
        }
    }
}

#[cfg(test)]
mod tests;
