//! What the agent tells its server about itself (spec, "Status Reporting"): its
//! description, health, effective config, remote config status and package statuses.
//! Each part is sent when it changed since it was last sent, or in full when the server
//! asks (`ReportFullState`); a message with none is a heartbeat.

use std::collections::HashMap;

use super::proto::{
    AgentConfigFile, AgentConfigMap, AgentDescription, AgentToServer, ComponentHealth,
    EffectiveConfig, KeyValue, PackageStatuses, RemoteConfigStatus,
};
use crate::api::Api;
use crate::queue::StorageState;
use crate::sinks::SinkStatus;
use crate::sources::SourceStatus;

/// The parts of a status report, as last built.
#[derive(Clone, Default, PartialEq)]
pub struct Parts {
    pub description: Option<AgentDescription>,
    pub health: Option<ComponentHealth>,
    pub effective_config: Option<EffectiveConfig>,
    pub remote_config_status: Option<RemoteConfigStatus>,
    pub package_statuses: Option<PackageStatuses>,
}

/// Remembers what the server was last told, so a report carries only what changed.
#[derive(Default)]
pub struct Reporter {
    sent: Parts,
}

impl Reporter {
    /// Fills `message` with the parts of `now` that differ from the last ones sent
    /// (all of them if `full`); true if any did.
    pub fn fill(&mut self, now: &Parts, full: bool, message: &mut AgentToServer) -> bool {
        let mut any = false;
        macro_rules! part {
            ($field:ident, $target:ident, $same:expr) => {
                if full || !$same(&self.sent.$field, &now.$field) {
                    message.$target = now.$field.clone();
                    any |= now.$field.is_some();
                }
            };
        }
        part!(description, agent_description, |a, b| a == b);
        part!(health, health, same_health);
        part!(effective_config, effective_config, |a, b| a == b);
        part!(remote_config_status, remote_config_status, |a, b| a == b);
        part!(package_statuses, package_statuses, |a, b| a == b);
        any
    }

    /// The message carrying what `fill` put in it went out.
    pub fn sent(&mut self, now: Parts) {
        self.sent = now;
    }

    /// The server may have lost what it was told (a new connection, an error): the next
    /// report is a full one.
    pub fn forget(&mut self) {
        self.sent = Parts::default();
    }
}

/// Health differs in more than its timestamps.
fn same_health(a: &Option<ComponentHealth>, b: &Option<ComponentHealth>) -> bool {
    fn strip(h: &ComponentHealth) -> ComponentHealth {
        let mut h = h.clone();
        h.status_time_unix_nano = 0;
        for c in h.component_health_map.values_mut() {
            *c = strip(c);
        }
        h
    }
    match (a, b) {
        (Some(a), Some(b)) => strip(a) == strip(b),
        (None, None) => true,
        _ => false,
    }
}

/// `service.*`, `host.*` and `os.type` of this agent (OpenTelemetry's semantic
/// conventions): `service.instance.id` identifies it; the rest describes it.
pub fn description(api: &Api, instance_uid: &str) -> AgentDescription {
    AgentDescription {
        identifying_attributes: vec![
            KeyValue::text("service.name", "outpost"),
            KeyValue::text("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::text("service.instance.id", instance_uid),
        ],
        non_identifying_attributes: vec![
            KeyValue::text("host.name", api.status.device_id.clone()),
            KeyValue::text("host.arch", host_arch()),
            KeyValue::text("os.type", std::env::consts::OS),
        ],
    }
}

/// The architecture in the semantic conventions' words.
fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm32",
        "x86" => "x86",
        other => other,
    }
}

/// What `/v1/health` knows, as OpAMP component health: the agent, and one component
/// each for the storage, every sink (`sinks/<name>`), source and plugin.
pub fn health(api: &Api, start_time_unix_nano: u64) -> ComponentHealth {
    let now = crate::clock::now_ms() * 1_000_000;
    let component = |healthy: bool, status: &str, last_error: Option<String>| ComponentHealth {
        healthy,
        start_time_unix_nano,
        last_error: last_error.unwrap_or_default(),
        status: status.to_owned(),
        status_time_unix_nano: now,
        component_health_map: HashMap::new(),
    };
    let status = &api.status;
    let mut map = HashMap::new();
    let storage = status.queue.storage().state;
    let storage_ok = !matches!(storage, StorageState::Full | StorageState::Failed);
    map.insert(
        "storage".to_owned(),
        component(storage_ok, storage.as_str(), None),
    );
    for (name, sink) in status.sinks() {
        let state = sink.status();
        let healthy = !matches!(state, SinkStatus::Disconnected | SinkStatus::Stalled);
        map.insert(
            format!("sinks/{name}"),
            component(healthy, state.as_str(), sink.last_error()),
        );
    }
    for (name, source) in status.sources().iter() {
        let state = source.status();
        map.insert(
            format!("sources/{name}"),
            component(
                state != SourceStatus::Disconnected,
                state.as_str(),
                source.last_error(),
            ),
        );
    }
    for plugin in api.pipeline.plugins().plugins() {
        let state = plugin.stats.health();
        map.insert(
            format!("plugins/{}", plugin.name),
            component(
                state == crate::plugin::PluginHealth::Ok,
                state.as_str(),
                plugin.stats.last_error(),
            ),
        );
    }
    let config = status.config.view();
    let healthy = storage_ok && config.last_error.is_none();
    let mut agent = component(
        healthy,
        if storage_ok { "ok" } else { "degraded" },
        config.last_error,
    );
    agent.component_health_map = map;
    agent
}

/// The config text to report: as written (`${VAR}` not expanded), except that a literal
/// value of a secret-looking key (`*token*`, `*password*`, `*secret*`, `*api_key*`,
/// `authorization`) or a URL's literal password becomes `<redacted>` — then the TOML
/// is written anew, without comments. A secret's value never leaves the device.
pub fn redacted(text: &str) -> String {
    let Ok(mut table) = text.parse::<toml::Table>() else {
        return text.to_owned();
    };
    if !redact_table(&mut table) {
        return text.to_owned();
    }
    toml::to_string(&table).unwrap_or_default()
}

fn redact_table(table: &mut toml::Table) -> bool {
    let mut changed = false;
    for (key, value) in table.iter_mut() {
        changed |= redact_value(key, value);
    }
    changed
}

fn redact_value(key: &str, value: &mut toml::Value) -> bool {
    match value {
        toml::Value::String(s) if !s.contains("${") => {
            let key = key.to_ascii_lowercase().replace('-', "_");
            let secret = ["token", "password", "secret", "api_key", "apikey"]
                .iter()
                .any(|k| key.contains(k))
                || key == "authorization";
            if secret {
                *s = "<redacted>".into();
                return true;
            }
            match url::Url::parse(s) {
                Ok(mut url) if url.password().is_some() => {
                    let _ = url.set_password(Some("redacted"));
                    *s = url.to_string();
                    true
                }
                _ => false,
            }
        }
        toml::Value::Table(t) => redact_table(t),
        toml::Value::Array(items) => items
            .iter_mut()
            .fold(false, |changed, v| redact_value(key, v) | changed),
        _ => false,
    }
}

/// The config the agent runs, as [`redacted`] gives it.
pub fn effective_config(text: &str) -> EffectiveConfig {
    let mut map = HashMap::new();
    map.insert(
        "outpost.toml".to_owned(),
        AgentConfigFile {
            body: text.as_bytes().to_vec(),
            content_type: "text/toml".to_owned(),
        },
    );
    EffectiveConfig {
        config_map: Some(AgentConfigMap { config_map: map }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health_at(t: u64, healthy: bool) -> ComponentHealth {
        ComponentHealth {
            healthy,
            status_time_unix_nano: t,
            ..ComponentHealth::default()
        }
    }

    #[test]
    fn literal_secrets_are_redacted_and_variables_kept() {
        let text = "# comment\n[agent]\nauth_token = \"abc\"\n[sinks.s]\n\
                    url = \"amqp://user:pw@host/v\"\nheaders = { Authorization = \"Bearer ${TOKEN}\", X-Api-Key = \"k1\" }\n\
                    key = \"camera:events\"\n";
        let out = redacted(text);
        assert!(
            !out.contains("abc") && !out.contains(":pw@") && !out.contains("k1"),
            "{out}"
        );
        assert!(
            out.contains("Bearer ${TOKEN}") && out.contains("camera:events"),
            "{out}"
        );
        let plain = "# kept as written\n[agent]\ndevice_id = \"cam\"\n";
        assert_eq!(redacted(plain), plain);
    }

    #[test]
    fn only_changed_parts_are_sent_unless_a_full_report_is_asked() {
        let mut reporter = Reporter::default();
        let parts = Parts {
            health: Some(health_at(1, true)),
            effective_config: Some(effective_config("a = 1")),
            ..Parts::default()
        };
        let mut first = AgentToServer::default();
        assert!(reporter.fill(&parts, false, &mut first));
        assert!(first.health.is_some() && first.effective_config.is_some());
        reporter.sent(parts.clone());

        // Only a timestamp moved: a heartbeat.
        let later = Parts {
            health: Some(health_at(2, true)),
            ..parts.clone()
        };
        let mut beat = AgentToServer::default();
        assert!(!reporter.fill(&later, false, &mut beat));
        assert_eq!(beat, AgentToServer::default());

        let sick = Parts {
            health: Some(health_at(3, false)),
            ..parts.clone()
        };
        let mut changed = AgentToServer::default();
        assert!(reporter.fill(&sick, false, &mut changed));
        assert!(changed.health.is_some() && changed.effective_config.is_none());

        let mut full = AgentToServer::default();
        assert!(reporter.fill(&parts, true, &mut full));
        assert!(full.health.is_some() && full.effective_config.is_some());
    }
}
