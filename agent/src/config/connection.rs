//! What every broker connection (MQTT, Redis, AMQP) is configured with besides its
//! address: who connects (`username`, `password` or `password_env`) and with which TLS
//! files. A sink's or source's table is split three ways: these keys, the connection's
//! own keys, and the role's (topics, queues, modes).

use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::de::{self, Ctx};
use super::env::Env;
use super::mqtt::TlsFiles;
use super::ConfigError;

/// The credential and TLS keys as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthSection {
    #[serde(default)]
    username: Option<String>,
    /// Plain password (prefer `password_env` or `${VAR}`).
    #[serde(default)]
    password: Option<String>,
    /// Environment variable holding the password.
    #[serde(default)]
    password_env: Option<String>,
    #[serde(default)]
    ca_file: Option<PathBuf>,
    #[serde(default)]
    client_cert: Option<PathBuf>,
    #[serde(default)]
    client_key: Option<PathBuf>,
}

/// Who connects, resolved: `password_env` read (it must be set).
pub(super) struct Auth {
    pub username: Option<String>,
    pub password: Option<String>,
    pub tls: TlsFiles,
}

impl AuthSection {
    fn resolve(self, ctx: &Ctx<'_>, env: &Env, key: &str) -> Result<Auth, ConfigError> {
        let password = match self.password_env {
            Some(var) => Some(env.var(&var).map(str::to_owned).ok_or_else(|| {
                ctx.error(
                    format!("{key}.password_env"),
                    format!("environment variable `{var}` is not set"),
                )
            })?),
            None => self.password,
        };
        Ok(Auth {
            username: self.username,
            password,
            tls: TlsFiles {
                ca_file: self.ca_file,
                client_cert: self.client_cert,
                client_key: self.client_key,
            },
        })
    }
}

/// A kind of connection's own keys (its address and protocol options), made into the
/// validated connection together with the [`Auth`] keys.
pub(super) trait ConnectionKeys: DeserializeOwned {
    type Connection;
    fn resolve(self, auth: Auth, ctx: &Ctx<'_>, key: &str)
        -> Result<Self::Connection, ConfigError>;
}

/// Splits the table at `key` into connection `C` and the role's own keys `R`, typed.
pub(super) fn parse_with_role<C: ConnectionKeys, R: DeserializeOwned>(
    ctx: &Ctx<'_>,
    env: &Env,
    key: &str,
    mut table: toml::Table,
) -> Result<(C::Connection, R), ConfigError> {
    let auth = de::split::<AuthSection>(&mut table);
    let connection = de::split::<C>(&mut table);
    let auth: AuthSection = ctx.typed(key, toml::Value::Table(auth))?;
    let connection: C = ctx.typed(key, toml::Value::Table(connection))?;
    let role: R = ctx.typed(key, toml::Value::Table(table))?;
    Ok((
        connection.resolve(auth.resolve(ctx, env, key)?, ctx, key)?,
        role,
    ))
}

/// A broker `url` at `key`: parsed, TLS chosen by its scheme (`plain` or `tls`, say
/// `redis` / `rediss`), and its host (brackets of an IPv6 literal removed).
pub(super) fn broker_url(
    ctx: &Ctx<'_>,
    key: &str,
    url: &str,
    [plain, tls]: [&str; 2],
) -> Result<(url::Url, bool, String), ConfigError> {
    let url_key = format!("{key}.url");
    let url = url::Url::parse(url).map_err(|e| ctx.error(&url_key, e.to_string()))?;
    let tls = match url.scheme() {
        s if s == plain => false,
        s if s == tls => true,
        other => {
            return Err(ctx.error(
                url_key,
                format!("scheme `{other}` is not supported (use {plain}:// or {tls}://)"),
            ))
        }
    };
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| ctx.error(&url_key, "no host"))?
        .trim_matches(|c| c == '[' || c == ']')
        .to_owned();
    Ok((url, tls, host))
}

/// `%xx` sequences decoded (user names, passwords and vhosts in URLs).
pub(super) fn percent_decode(s: &str) -> Result<String, ()> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3).ok_or(())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| ())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ())
}
