//! The config a managed device runs: the fleet's remote config, with two parts always
//! taken from the local file — `[fleet]` (a remote config cannot cut the device off its
//! server) and `agent.data_dir` (where the queue and the fleet state live).

use std::path::Path;

use crate::config::{Config, ConfigError, Env};

use super::store::FleetStore;

/// The local file's config, or — if it has `[fleet]` and a remote config was applied —
/// that remote config composed with it. A stored remote config that no longer loads
/// (the device's files changed, a new version refuses a key) is reported and skipped:
/// the device runs its local file and stays reachable.
pub fn effective(local: Config) -> (Config, Option<ConfigError>) {
    if local.fleet.is_none() {
        return (local, None);
    }
    let store = FleetStore::new(&local.agent.data_dir);
    let Some(remote) = store.remote_config() else {
        return (local, None);
    };
    match compose(
        &local,
        &remote.toml,
        &store.remote_config_path(),
        &Env::capture(),
    ) {
        Ok(config) => (config, None),
        Err(e) => (local, Some(e)),
    }
}

/// `remote` (TOML, read from `file`) with the local config's `[fleet]` and
/// `agent.data_dir`, parsed against `env` and checked against the machine.
pub fn compose(
    local: &Config,
    remote: &str,
    file: &Path,
    env: &Env,
) -> Result<Config, ConfigError> {
    let parse_error = |message: String| ConfigError::Parse {
        file: file.to_owned(),
        message,
    };
    let mut table: toml::Table = remote
        .parse()
        .map_err(|e: toml::de::Error| parse_error(e.to_string().trim_end().to_owned()))?;
    let written: toml::Table = local
        .text
        .parse()
        .map_err(|e: toml::de::Error| parse_error(format!("the local config: {e}")))?;
    table.remove("fleet");
    if let Some(fleet) = written.get("fleet") {
        table.insert("fleet".into(), fleet.clone());
    }
    let local_dir = written
        .get("agent")
        .and_then(|a| a.get("data_dir"))
        .cloned();
    if let Some(toml::Value::Table(agent)) = table.get_mut("agent") {
        agent.remove("data_dir");
    }
    if let Some(dir) = local_dir {
        let agent = table
            .entry("agent")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let toml::Value::Table(agent) = agent {
            agent.insert("data_dir".into(), dir);
        } else {
            return Err(ConfigError::Key {
                file: file.to_owned(),
                key: "agent".into(),
                message: "must be a table".into(),
            });
        }
    }
    let text = toml::to_string(&table).map_err(|e| parse_error(e.to_string()))?;
    let config = Config::parse(file, &text, env)?;
    config.check_files()?;
    Ok(config)
}

#[cfg(all(test, feature = "fleet"))]
mod tests {
    use super::*;

    fn local(text: &str) -> Config {
        let env = Env::from_vars([("FLEET_TOKEN", "s3cret")]);
        Config::parse(Path::new("/etc/outpost.toml"), text, &env).unwrap()
    }

    const LOCAL: &str = r#"
[agent]
data_dir = "/var/lib/outpost"
device_id = "cam-7"

[fleet]
server = "http://127.0.0.1:4320/v1/opamp"
headers = { Authorization = "Bearer ${FLEET_TOKEN}" }
"#;

    #[test]
    fn the_local_fleet_section_and_data_dir_win() {
        let remote = r#"
[agent]
data_dir = "/tmp/elsewhere"
device_id = "cam-9"

[fleet]
server = "http://attacker.example/v1/opamp"

[sinks.cloud]
type = "file"
path = "/tmp/out.jsonl"
"#;
        let env = Env::from_vars([("FLEET_TOKEN", "s3cret")]);
        let file = Path::new("/var/lib/outpost/fleet/remote-config.toml");
        let config = compose(&local(LOCAL), remote, file, &env).unwrap();
        assert_eq!(config.agent.data_dir, Path::new("/var/lib/outpost"));
        assert_eq!(config.agent.device_id, "cam-9");
        let fleet = config.fleet.as_ref().unwrap();
        assert_eq!(fleet.server.host_str(), Some("127.0.0.1"));
        assert_eq!(fleet.headers["Authorization"], "Bearer s3cret");
        assert!(config.sinks.contains_key("cloud"));
        assert!(config.text.contains("${FLEET_TOKEN}"), "{}", &*config.text);
        assert!(!config.text.contains("s3cret"));
        assert_eq!(config.file, file);
    }

    #[test]
    fn a_remote_config_that_does_not_parse_names_its_file() {
        let file = Path::new("/d/fleet/remote-config.toml");
        let env = Env::from_vars([("FLEET_TOKEN", "s3cret")]);
        let err = compose(&local(LOCAL), "[sinks.x\n", file, &env).unwrap_err();
        assert!(err.to_string().contains("remote-config.toml"), "{err}");
        let err = compose(&local(LOCAL), "[sinks.x]\ntype = \"nope\"\n", file, &env).unwrap_err();
        assert!(err.to_string().contains("sinks.x"), "{err}");
    }
}
