//! Connections to an AMQP 0-9-1 broker (RabbitMQ), for the AMQP sources and sink.
//! TLS uses the agent's own rustls config (ring, the configured CA and client
//! certificate), handed to lapin through its connector hook.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use lapin::tcp::{AsyncTcpStream, RustlsConnector};
use lapin::uri::{AMQPScheme, AMQPUri};
use lapin::{Connection, ConnectionProperties};

use crate::config::AmqpConnection;
use crate::tls::TlsError;

/// How long connecting (TCP, TLS, the AMQP handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// The TLS config for `amqps://` (none for `amqp://`), built once per source or sink
/// so a bad file is an error at start or reload.
pub fn tls_config(
    connection: &AmqpConnection,
) -> Result<Option<Arc<rustls::ClientConfig>>, TlsError> {
    connection
        .tls
        .then(|| crate::tls::client_config(&connection.tls_files))
        .transpose()
}

/// Why a connection or an operation on it failed, naming the broker (never its
/// credentials).
#[derive(Debug, thiserror::Error)]
#[error("{target}: {message}")]
pub struct LinkError {
    pub target: String,
    pub message: String,
}

impl LinkError {
    pub fn new(connection: &AmqpConnection, what: &str, error: impl std::fmt::Display) -> Self {
        LinkError {
            target: connection.to_string(),
            message: format!("{what}: {error}"),
        }
    }
}

/// Opens a connection; `name` is shown in the broker's management UI.
pub async fn connect(
    connection: &AmqpConnection,
    tls: Option<&Arc<rustls::ClientConfig>>,
    name: &str,
) -> Result<Connection, LinkError> {
    let uri: AMQPUri = connection
        .uri
        .parse()
        .map_err(|e: String| LinkError::new(connection, "URL", e))?;
    let connector = tls.map(|c| RustlsConnector::from(Arc::clone(c)));
    let runtime =
        lapin::runtime::default_runtime().map_err(|e| LinkError::new(connection, "runtime", e))?;
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    let open = Connection::connector(
        uri,
        runtime,
        async move |uri: AMQPUri, runtime| {
            let host = uri.authority.host.clone();
            let addrs = runtime.to_socket_addrs((host.clone(), uri.authority.port));
            let tcp = AsyncTcpStream::connect(&runtime, addrs).await?;
            match uri.scheme {
                AMQPScheme::AMQP => Ok(tcp),
                AMQPScheme::AMQPS => {
                    let connector = connector
                        .as_ref()
                        .ok_or_else(|| io::Error::other("amqps:// without a TLS config"))?;
                    Ok(tcp.into_rustls(connector, &host).await?)
                }
            }
        },
        properties,
    );
    match tokio::time::timeout(CONNECT_TIMEOUT, open).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(LinkError::new(connection, "connect", e)),
        Err(_) => Err(LinkError::new(
            connection,
            "connect",
            format!("no connection within {CONNECT_TIMEOUT:?}"),
        )),
    }
}

/// Closes `connection` (best effort: it may be gone already), so its I/O thread ends.
pub async fn close(connection: &Connection) {
    if connection.status().connected() {
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            connection.close(200, "outpost stops or reconnects".into()),
        )
        .await;
    }
}
