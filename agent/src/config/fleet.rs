//! `[fleet]`: the OpAMP server that manages this device (README, "Fleet").
//!
//! The section belongs to the device, not to the fleet: a remote config never changes
//! it (the agent always uses the local file's `[fleet]`), so a bad remote config cannot
//! cut a device off its server.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use super::de::{self, Ctx};
use super::mqtt::TlsFiles;
use super::ConfigError;

/// How the agent talks to its OpAMP server: the URL's scheme decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FleetTransport {
    /// `http://` or `https://`: one POST per message, polled at `poll_interval`.
    Http,
    /// `ws://` or `wss://`: one connection, the server may push at any time.
    WebSocket,
}

/// `[fleet]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetConfig {
    pub server: Url,
    pub transport: FleetTransport,
    /// Whether the connection uses TLS (`https://`, `wss://`).
    pub tls: bool,
    /// Extra request headers (`Authorization`, …), `${VAR}` expanded.
    pub headers: BTreeMap<String, String>,
    pub tls_files: TlsFiles,
    /// HTTP: how often the agent polls; WebSocket: the heartbeat interval.
    pub poll_interval: Duration,
    /// Connect and request timeout.
    pub timeout: Duration,
    /// Public keys (files of 64 hex digits) that may sign plugin packages. Without any,
    /// the agent does not accept packages.
    pub trusted_keys: Vec<PathBuf>,
    /// Largest plugin package downloaded.
    pub max_package_bytes: u64,
}

/// `[fleet]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FleetSection {
    server: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "de::duration_opt")]
    poll_interval: Option<Duration>,
    #[serde(default, deserialize_with = "de::duration_opt")]
    timeout: Option<Duration>,
    #[serde(default)]
    trusted_keys: Vec<PathBuf>,
    #[serde(default = "default_max_package", deserialize_with = "de::positive")]
    max_package_bytes: usize,
}

fn default_max_package() -> usize {
    64 << 20
}

impl FleetConfig {
    pub(super) fn parse(ctx: &Ctx<'_>, value: toml::Value) -> Result<FleetConfig, ConfigError> {
        let toml::Value::Table(mut table) = value else {
            return Err(ctx.error("fleet", "must be a table"));
        };
        // The TLS keys are the sinks' (`ca_file`, `client_cert`, `client_key`).
        let tls = de::split::<TlsFiles>(&mut table);
        let tls_files: TlsFiles = ctx.typed("fleet", toml::Value::Table(tls))?;
        let section: FleetSection = ctx.typed("fleet", toml::Value::Table(table))?;
        let server = Url::parse(&section.server)
            .map_err(|e| ctx.error("fleet.server", format!("not a URL: {e}")))?;
        let (transport, tls) = match server.scheme() {
            "http" => (FleetTransport::Http, false),
            "https" => (FleetTransport::Http, true),
            "ws" => (FleetTransport::WebSocket, false),
            "wss" => (FleetTransport::WebSocket, true),
            other => {
                return Err(ctx.error(
                    "fleet.server",
                    format!("scheme `{other}`: use http://, https://, ws:// or wss://"),
                ))
            }
        };
        if server.host_str().is_none_or(str::is_empty) {
            return Err(ctx.error("fleet.server", "the URL has no host"));
        }
        for (name, value) in &section.headers {
            if hyper::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(ctx.error(format!("fleet.headers.{name}"), "not a header name"));
            }
            if hyper::header::HeaderValue::from_str(value).is_err() {
                return Err(ctx.error(format!("fleet.headers.{name}"), "not a header value"));
            }
        }
        if let Err(feature) = super::features::require_fleet() {
            return Err(ctx.error("fleet", feature));
        }
        Ok(FleetConfig {
            server,
            transport,
            tls,
            headers: section.headers,
            tls_files,
            poll_interval: section.poll_interval.unwrap_or(Duration::from_secs(30)),
            timeout: section.timeout.unwrap_or(Duration::from_secs(30)),
            trusted_keys: section.trusted_keys,
            max_package_bytes: section.max_package_bytes as u64,
        })
    }

    /// The TLS files exist and go together; the trusted keys are readable keys.
    pub(super) fn check_files(&self, ctx: &Ctx<'_>) -> Result<(), ConfigError> {
        self.tls_files.check(ctx, "fleet")?;
        for (i, path) in self.trusted_keys.iter().enumerate() {
            let text = std::fs::read_to_string(path).map_err(|e| {
                ctx.error(
                    format!("fleet.trusted_keys[{i}]"),
                    format!("{}: {e}", path.display()),
                )
            })?;
            if crate::signing::PublicKey::parse(&text).is_none() {
                return Err(ctx.error(
                    format!("fleet.trusted_keys[{i}]"),
                    format!(
                        "{}: not an ed25519 public key (64 hex digits, as `outpost fleet keygen` writes)",
                        path.display()
                    ),
                ));
            }
        }
        Ok(())
    }
}
