//! The AMQP 0-9-1 (RabbitMQ) connection keys, shared by AMQP sources and sinks: `url`
//! (`amqp://[user:password@]host[:port][/vhost][?heartbeat=…]`, `amqps://` for TLS),
//! the credentials as keys (they win over the URL's), and the TLS files.

use serde::Deserialize;

use super::connection::{broker_url, percent_decode, Auth, ConnectionKeys};
use super::de::Ctx;
use super::mqtt::TlsFiles;
use super::ConfigError;

/// An AMQP broker connection, validated.
#[derive(Clone, PartialEq, Eq)]
pub struct AmqpConnection {
    /// The URL with the credentials in it, as the client library takes it.
    pub uri: String,
    pub host: String,
    pub port: u16,
    pub tls: bool,
    /// The virtual host (decoded; `/` by default).
    pub vhost: String,
    pub tls_files: TlsFiles,
}

impl std::fmt::Debug for AmqpConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the credentials.
        write!(f, "AmqpConnection({self})")
    }
}

impl std::fmt::Display for AmqpConnection {
    /// The address without credentials: for logs, health and errors.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "amqps" } else { "amqp" };
        write!(
            f,
            "{scheme}://{}:{} vhost {}",
            self.host, self.port, self.vhost
        )
    }
}

/// The connection's own key as written (credentials and TLS: [`super::connection`]).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AmqpConnectionSection {
    url: String,
}

impl ConnectionKeys for AmqpConnectionSection {
    type Connection = AmqpConnection;

    fn resolve(self, auth: Auth, ctx: &Ctx<'_>, key: &str) -> Result<AmqpConnection, ConfigError> {
        let (mut url, tls, host) = broker_url(ctx, key, &self.url, ["amqp", "amqps"])?;
        let vhost = match url.path() {
            "" | "/" => "/".to_owned(),
            path => percent_decode(&path[1..]).map_err(|()| {
                ctx.error(format!("{key}.url"), "bad percent-encoding in the vhost")
            })?,
        };
        if let Some(user) = &auth.username {
            url.set_username(user)
                .map_err(|()| ctx.error(format!("{key}.username"), "cannot be set on this URL"))?;
        }
        if let Some(password) = &auth.password {
            url.set_password(Some(password))
                .map_err(|()| ctx.error(format!("{key}.password"), "cannot be set on this URL"))?;
        }
        Ok(AmqpConnection {
            uri: url.to_string(),
            host,
            port: url.port().unwrap_or(if tls { 5671 } else { 5672 }),
            tls,
            vhost,
            tls_files: auth.tls,
        })
    }
}
