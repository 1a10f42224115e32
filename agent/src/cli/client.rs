//! A small blocking HTTP/1.1 client for the agent's own API on the loopback
//! interface: one request per connection, JSON in and out. No async runtime needed.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::config::Config;

/// Why a request to the agent failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the agent at {addr} (is it running?): {source}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("talking to the agent at {addr}: {source}")]
    Io {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the agent at {addr} sent an answer that is not HTTP")]
    Malformed { addr: SocketAddr },
    #[error("the agent answered {status}: {message}")]
    Refused { status: u16, message: String },
}

/// The running agent a config describes.
pub struct AgentClient {
    addr: SocketAddr,
    token: Option<String>,
}

/// How long a command waits for the agent (a reload or a replay can take a while).
const TIMEOUT: Duration = Duration::from_secs(120);

impl AgentClient {
    /// The agent listening where `config` says (a wildcard address is reached on
    /// loopback), with its bearer token.
    pub fn for_config(config: &Config) -> AgentClient {
        let mut addr = config.agent.listen;
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        AgentClient {
            addr,
            token: config.agent.auth_token.clone(),
        }
    }

    /// Sends a request; a 2xx answer's body as JSON, else the API's error message.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value, ClientError> {
        let io = |source| ClientError::Io {
            addr: self.addr,
            source,
        };
        let mut stream =
            TcpStream::connect_timeout(&self.addr, Duration::from_secs(5)).map_err(|source| {
                ClientError::Connect {
                    addr: self.addr,
                    source,
                }
            })?;
        stream.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        if let Some(token) = &self.token {
            head.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).map_err(io)?;
        stream.write_all(body.as_bytes()).map_err(io)?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).map_err(io)?;
        self.answer(&raw)
    }

    fn answer(&self, raw: &[u8]) -> Result<serde_json::Value, ClientError> {
        let malformed = || ClientError::Malformed { addr: self.addr };
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(malformed)?;
        let status: u16 = std::str::from_utf8(raw.get(9..12).ok_or_else(malformed)?)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(malformed)?;
        let json: serde_json::Value = serde_json::from_slice(&raw[split + 4..]).unwrap_or_default();
        if (200..300).contains(&status) {
            return Ok(json);
        }
        let message = json["error"]["message"].as_str().map_or_else(
            || String::from_utf8_lossy(&raw[split + 4..]).into_owned(),
            str::to_owned,
        );
        Err(ClientError::Refused { status, message })
    }
}
