//! `[plugins]`: which plugins run, their settings and their sandboxes.

use std::collections::{BTreeMap, HashSet};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::de::{self, Ctx, IDENT_RULE};
use super::ConfigError;

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
    #[serde(
        rename = "monitoring_flush_ms",
        deserialize_with = "de::positive_millis"
    )]
    pub monitoring_flush: Duration,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        PluginsConfig {
            dir: PathBuf::from("./plugins"),
            active: Vec::new(),
            settings: BTreeMap::new(),
            sandbox: BTreeMap::new(),
            monitoring_flush: Duration::from_secs(1),
        }
    }
}

/// `[plugins.sandbox.<name>]`: what a WASM plugin may use. Nothing is granted by
/// default: no filesystem, no network, no environment.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxConfig {
    /// Linear memory cap.
    #[serde(deserialize_with = "positive_u32")]
    pub max_memory_mb: u32,
    /// Wall-clock limit of one call.
    #[serde(rename = "timeout_ms", deserialize_with = "de::positive_millis")]
    pub timeout: Duration,
    /// Instances called concurrently (each with its own memory). Default: the number of
    /// CPUs for pure on-event plugins, 1 for plugins with a timer or routes.
    pub instances: Option<NonZeroUsize>,
    /// Host directory → guest path, read-write.
    pub allowed_paths: BTreeMap<String, String>,
    /// Host directory → guest path, read-only.
    pub read_only_paths: BTreeMap<String, String>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            max_memory_mb: 64,
            timeout: Duration::from_secs(5),
            instances: None,
            allowed_paths: BTreeMap::new(),
            read_only_paths: BTreeMap::new(),
        }
    }
}

fn positive_u32<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    match u32::deserialize(d)? {
        0 => Err(serde::de::Error::custom("must be positive")),
        n => Ok(n),
    }
}

impl PluginsConfig {
    /// Names are identifiers, listed once; a `sink`/`sinks` setting names defined sinks.
    pub(super) fn validate(
        &self,
        ctx: &Ctx<'_>,
        sink_defined: impl Fn(&str) -> bool,
    ) -> Result<(), ConfigError> {
        let mut seen = HashSet::new();
        for (i, name) in self.active.iter().enumerate() {
            let key = format!("plugins.active[{i}]");
            if !de::is_identifier(name) {
                return Err(ctx.error(key, format!("`{name}`: {IDENT_RULE}")));
            }
            if !seen.insert(name) {
                return Err(ctx.error(key, format!("`{name}` is listed twice")));
            }
        }
        for (name, settings) in &self.settings {
            for (k, v) in settings {
                let referenced: Vec<&str> = match (k.as_str(), v) {
                    ("sink", toml::Value::String(s)) => vec![s.as_str()],
                    ("sinks", toml::Value::Array(a)) => {
                        a.iter().filter_map(|v| v.as_str()).collect()
                    }
                    _ => continue,
                };
                if let Some(sink) = referenced.into_iter().find(|s| !sink_defined(s)) {
                    return Err(ctx.error(
                        format!("plugins.settings.{name}.{k}"),
                        format!("sink `{sink}` is not defined (no [sinks.{sink}])"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Granted directories exist (a check of the machine, not of the text).
    pub(super) fn check_files(&self, ctx: &Ctx<'_>) -> Result<(), ConfigError> {
        for (name, sandbox) in &self.sandbox {
            for (field, grants) in [
                ("allowed_paths", &sandbox.allowed_paths),
                ("read_only_paths", &sandbox.read_only_paths),
            ] {
                if let Some(host) = grants.keys().find(|h| !Path::new(h).is_dir()) {
                    return Err(ctx.error(
                        format!("plugins.sandbox.{name}.{field}"),
                        format!("`{host}` is not a directory"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The settings table of plugin `name`, as the JSON object handed to the plugin.
    pub fn settings_of(&self, name: &str) -> serde_json::Map<String, serde_json::Value> {
        match self.settings.get(name).map(serde_json::to_value) {
            Some(Ok(serde_json::Value::Object(map))) => map,
            _ => serde_json::Map::new(),
        }
    }

    /// The sandbox of plugin `name` (defaults if not configured).
    pub fn sandbox_of(&self, name: &str) -> SandboxConfig {
        self.sandbox.get(name).cloned().unwrap_or_default()
    }
}
