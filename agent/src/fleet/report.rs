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

/// The config text to report: the TOML as loaded, `${VAR}` as written, with every
/// literal secret replaced by `<redacted>`: values of secret-looking keys (`*token*`,
/// `*pass*`, `*secret*`, `*auth*`, `*cookie*`, `*credential*`, `*private*`,
/// `*api_key*`), every header value, and the password of a URL. Written anew from the
/// parsed TOML, so comments (which may hold anything) stay on the device too.
pub fn redacted(text: &str) -> String {
    match text.parse::<toml::Table>() {
        Ok(mut table) => {
            redact_table(&mut table, false);
            toml::to_string(&table).unwrap_or_default()
        }
        Err(_) => "# the running config is not shown: it does not parse as TOML\n".to_owned(),
    }
}

fn redact_table(table: &mut toml::Table, headers: bool) {
    for (key, value) in table.iter_mut() {
        redact_value(key, value, headers);
    }
}

fn redact_value(key: &str, value: &mut toml::Value, in_headers: bool) {
    let key = key.to_ascii_lowercase().replace('-', "_");
    match value {
        toml::Value::String(s) => {
            let secret = in_headers
                || [
                    "token",
                    "pass",
                    "secret",
                    "auth",
                    "cookie",
                    "credential",
                    "private",
                    "api_key",
                    "apikey",
                ]
                .iter()
                .any(|k| key.contains(k));
            if secret && !is_reference(s) {
                *s = "<redacted>".into();
            } else if let Some(url) = without_password(s) {
                *s = url;
            }
        }
        toml::Value::Table(t) => redact_table(t, key == "headers"),
        toml::Value::Array(items) => {
            for item in items {
                redact_value(&key, item, in_headers);
            }
        }
        _ => {}
    }
}

/// A value whose secret part is `${VAR}` references only: nothing but them, or an
/// auth scheme word before them (`Bearer ${TOKEN}`).
fn is_reference(s: &str) -> bool {
    let mut literal = String::new();
    let mut rest = s;
    let mut found = false;
    while let Some(start) = rest.find("${") {
        literal.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}') else {
            return false;
        };
        found = true;
        rest = &rest[start + end + 1..];
    }
    literal.push_str(rest);
    let literal = literal.trim();
    found && literal.chars().all(|c| c.is_ascii_alphabetic())
}

/// `s` with the password of its URL userinfo replaced, if it has a literal one.
fn without_password(s: &str) -> Option<String> {
    let scheme_end = s.find("://")? + 3;
    let authority_end = s[scheme_end..]
        .find(['/', '?', '#'])
        .map_or(s.len(), |i| scheme_end + i);
    let at = s[scheme_end..authority_end].rfind('@')? + scheme_end;
    let colon = s[scheme_end..at].find(':')? + scheme_end;
    let password = &s[colon + 1..at];
    if password.is_empty() || (password.starts_with("${") && password.ends_with('}')) {
        return None;
    }
    Some(format!("{}redacted{}", &s[..colon + 1], &s[at..]))
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
        let plain = "# a comment\n[agent]\ndevice_id = \"cam\"\n";
        assert_eq!(redacted(plain), "[agent]\ndevice_id = \"cam\"\n");
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
