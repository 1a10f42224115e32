//! Where the API is served: a TCP address and/or a Unix socket (producers on the same
//! box skip TCP). Both are accepted the same way and serve the same API, token and all.

use std::path::{Path, PathBuf};

use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

use crate::config::{AgentConfig, Endpoint};

/// Why the API could not listen; names the config key.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {endpoint} ({key}): {error}")]
pub struct ListenError {
    pub endpoint: Endpoint,
    pub key: &'static str,
    pub error: std::io::Error,
}

/// The bound listeners.
pub struct Listeners {
    tcp: Option<TcpListener>,
    unix: Vec<(UnixListener, PathBuf)>,
}

/// An accepted connection.
pub enum Accepted {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Listeners {
    /// Binds `agent.listen` and `agent.listen_unix`.
    pub async fn bind(config: &AgentConfig) -> Result<Listeners, ListenError> {
        let mut listeners = Listeners {
            tcp: None,
            unix: Vec::new(),
        };
        let endpoints = std::iter::once((config.listen.clone(), "agent.listen")).chain(
            config
                .listen_unix
                .clone()
                .map(|p| (Endpoint::Unix(p), "agent.listen_unix")),
        );
        for (endpoint, key) in endpoints {
            let bound = match &endpoint {
                Endpoint::Tcp(addr) => TcpListener::bind(addr)
                    .await
                    .map(|l| listeners.tcp = Some(l)),
                Endpoint::Unix(path) => {
                    bind_unix(path).map(|l| listeners.unix.push((l, path.clone())))
                }
            };
            bound.map_err(|error| ListenError {
                endpoint,
                key,
                error,
            })?;
        }
        Ok(listeners)
    }

    /// The next connection on any of them.
    pub async fn accept(&self) -> std::io::Result<Accepted> {
        let tcp = async {
            match &self.tcp {
                Some(l) => l.accept().await.map(|(s, _)| Accepted::Tcp(s)),
                None => std::future::pending().await,
            }
        };
        let unix = async {
            match self.unix.first() {
                Some((l, _)) => l.accept().await.map(|(s, _)| Accepted::Unix(s)),
                None => std::future::pending().await,
            }
        };
        let second = async {
            match self.unix.get(1) {
                Some((l, _)) => l.accept().await.map(|(s, _)| Accepted::Unix(s)),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            c = tcp => c,
            c = unix => c,
            c = second => c,
        }
    }
}

impl Drop for Listeners {
    fn drop(&mut self) {
        for (_, path) in &self.unix {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Binds a Unix socket at `path`, replacing a stale socket a previous run left (but
/// never another kind of file).
fn bind_unix(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::FileTypeExt;
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "a file that is not a socket is in the way",
            ));
        }
        std::fs::remove_file(path)?;
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    UnixListener::bind(path)
}
