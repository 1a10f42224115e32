//! Connections to a Redis server, for the Redis sources and sink. The socket is ours
//! (TCP, or rustls with the agent's own TLS config, as the other sinks use): redis-rs's
//! TLS would load the system's certificates on every connect and take no client config.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{MultiplexedConnection, PubSub};
use redis::{AsyncConnectionConfig, RedisConnectionInfo};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::config::RedisConnection;
use crate::tls::TlsError;

/// How long connecting (TCP, TLS, AUTH, SELECT) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS config for `rediss://` (none for `redis://`), built once per source or sink
/// so a bad file is an error at start or reload.
pub fn tls_config(
    connection: &RedisConnection,
) -> Result<Option<Arc<rustls::ClientConfig>>, TlsError> {
    connection
        .tls
        .then(|| crate::tls::client_config(&connection.tls_files))
        .transpose()
}

/// A connection to one server, for commands, pipelined.
pub struct Link {
    pub commands: MultiplexedConnection,
    /// The task that drives the socket: aborted when the link is dropped, so a blocking
    /// command in progress cannot keep the socket open.
    driver: JoinHandle<()>,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// Why a connection failed or a command did not work.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("{target}: {error}")]
    Connect { target: String, error: io::Error },
    #[error("{target}: no connection within {CONNECT_TIMEOUT:?}")]
    ConnectTimeout { target: String },
    #[error("{target}: {error}")]
    Redis {
        target: String,
        error: redis::RedisError,
    },
}

/// One boxed stream type, so the connection types are compiled once.
trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// Connects for commands. `response_timeout` must exceed the block time of any
/// blocking command sent on this link: redis-rs drops a reply that comes later, and
/// the entry it carried would be read but never seen.
pub async fn connect(
    connection: &RedisConnection,
    tls: Option<&Arc<rustls::ClientConfig>>,
    response_timeout: Duration,
) -> Result<Link, LinkError> {
    let target = connection.to_string();
    let info = info(connection);
    let setup = async {
        let io = open(connection, tls).await?;
        let config = AsyncConnectionConfig::new().set_response_timeout(Some(response_timeout));
        MultiplexedConnection::new_with_config(&info, io, config)
            .await
            .map_err(|error| LinkError::Redis {
                target: target.clone(),
                error,
            })
    };
    let (commands, driver) = tokio::time::timeout(CONNECT_TIMEOUT, setup)
        .await
        .map_err(|_| LinkError::ConnectTimeout {
            target: target.clone(),
        })??;
    Ok(Link {
        commands,
        driver: tokio::spawn(driver),
    })
}

/// Connects for SUBSCRIBE / PSUBSCRIBE.
pub async fn subscriber(
    connection: &RedisConnection,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<PubSub, LinkError> {
    let target = connection.to_string();
    let info = info(connection);
    let setup = async {
        let io = open(connection, tls).await?;
        PubSub::new(&info, io)
            .await
            .map_err(|error| LinkError::Redis {
                target: target.clone(),
                error,
            })
    };
    tokio::time::timeout(CONNECT_TIMEOUT, setup)
        .await
        .map_err(|_| LinkError::ConnectTimeout { target })?
}

fn info(connection: &RedisConnection) -> RedisConnectionInfo {
    let mut info = RedisConnectionInfo::default()
        .set_db(connection.db)
        .set_skip_set_lib_name();
    if let Some(user) = &connection.username {
        info = info.set_username(user);
    }
    if let Some(password) = &connection.password {
        info = info.set_password(password);
    }
    info
}

async fn open(
    connection: &RedisConnection,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<Box<dyn Io>, LinkError> {
    let failed = |error| LinkError::Connect {
        target: connection.to_string(),
        error,
    };
    let tcp = TcpStream::connect((connection.host.as_str(), connection.port))
        .await
        .map_err(failed)?;
    tcp.set_nodelay(true).map_err(failed)?;
    // A peer gone without a word (a NAT that forgot the connection, a host that lost
    // power) is noticed within about a minute, also by a subscriber, which sends
    // nothing of its own.
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(30))
        .with_interval(Duration::from_secs(10))
        .with_retries(3);
    socket2::SockRef::from(&tcp)
        .set_tcp_keepalive(&keepalive)
        .map_err(failed)?;
    let Some(config) = tls else {
        return Ok(Box::new(tcp));
    };
    let name = ServerName::try_from(connection.host.clone())
        .map_err(|e| failed(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
    let stream = tokio_rustls::TlsConnector::from(Arc::clone(config))
        .connect(name, tcp)
        .await
        .map_err(failed)?;
    Ok(Box::new(stream))
}
