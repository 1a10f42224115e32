//! The Redis connection keys, shared by Redis sources and sinks: `url`
//! (`redis://[user:password@]host[:port][/db]`, `rediss://` for TLS), the credentials
//! as keys (they win over the URL's), and the TLS files.

use serde::Deserialize;

use super::connection::{broker_url, percent_decode, Auth, ConnectionKeys};
use super::de::Ctx;
use super::mqtt::TlsFiles;
use super::ConfigError;

/// A Redis server connection, validated.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisConnection {
    pub host: String,
    pub port: u16,
    pub tls: bool,
    pub db: i64,
    pub username: Option<String>,
    pub password: Option<String>,
    pub tls_files: TlsFiles,
}

impl std::fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        write!(f, "RedisConnection({self})")
    }
}

impl std::fmt::Display for RedisConnection {
    /// The address without credentials: for logs, health and errors.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "rediss" } else { "redis" };
        write!(f, "{scheme}://{}:{}/{}", self.host, self.port, self.db)
    }
}

/// The connection's own key as written (credentials and TLS: [`super::connection`]).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RedisConnectionSection {
    url: String,
}

impl ConnectionKeys for RedisConnectionSection {
    type Connection = RedisConnection;

    fn resolve(self, auth: Auth, ctx: &Ctx<'_>, key: &str) -> Result<RedisConnection, ConfigError> {
        let (url, tls, host) = broker_url(ctx, key, &self.url, ["redis", "rediss"])?;
        let url_key = format!("{key}.url");
        let db = match url.path().trim_start_matches('/') {
            "" => 0,
            n => n.parse::<i64>().map_err(|_| {
                ctx.error(
                    &url_key,
                    format!("the path must be a database number, not `{n}`"),
                )
            })?,
        };
        let decode =
            |s: &str| percent_decode(s).map_err(|()| ctx.error(&url_key, "bad percent-encoding"));
        let url_user = Some(url.username()).filter(|u| !u.is_empty());
        let username = match auth.username {
            Some(u) => Some(u),
            None => url_user.map(decode).transpose()?,
        };
        let password = match auth.password {
            Some(p) => Some(p),
            None => url.password().map(decode).transpose()?,
        };
        Ok(RedisConnection {
            host,
            port: url.port().unwrap_or(6379),
            tls,
            db,
            username,
            password,
            tls_files: auth.tls,
        })
    }
}
