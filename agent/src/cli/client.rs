//! A small blocking HTTP/1.1 client for the agent's own API on the loopback
//! interface: one request per connection, JSON in and out. No async runtime needed.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use crate::config::{Config, Endpoint};

/// Why a request to the agent failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the agent at {addr} (is it running?): {source}")]
    Connect {
        addr: Endpoint,
        #[source]
        source: std::io::Error,
    },
    #[error("talking to the agent at {addr}: {source}")]
    Io {
        addr: Endpoint,
        #[source]
        source: std::io::Error,
    },
    #[error("the agent at {addr} sent an answer that is not HTTP")]
    Malformed { addr: Endpoint },
    #[error("the agent answered {status}: {message}")]
    Refused { status: u16, message: String },
}

/// The running agent a config describes.
pub struct AgentClient {
    addr: Endpoint,
    token: Option<String>,
}

/// A connection to the agent, over either kind of endpoint.
enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Conn {
    fn open(addr: &Endpoint) -> std::io::Result<Conn> {
        let conn = match addr {
            Endpoint::Tcp(a) => Conn::Tcp(TcpStream::connect_timeout(a, Duration::from_secs(5))?),
            Endpoint::Unix(path) => Conn::Unix(UnixStream::connect(path)?),
        };
        match &conn {
            Conn::Tcp(s) => s.set_read_timeout(Some(TIMEOUT))?,
            Conn::Unix(s) => s.set_read_timeout(Some(TIMEOUT))?,
        }
        Ok(conn)
    }

    fn io(&mut self) -> &mut dyn ReadWrite {
        match self {
            Conn::Tcp(s) => s,
            Conn::Unix(s) => s,
        }
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// How long a command waits for the agent (a reload or a replay can take a while).
const TIMEOUT: Duration = Duration::from_secs(120);

impl AgentClient {
    /// The agent listening where `config` says (a wildcard address is reached on
    /// loopback), with its bearer token.
    pub fn for_config(config: &Config) -> AgentClient {
        let mut addr = config.agent.listen.clone();
        if let Endpoint::Tcp(a) = &mut addr {
            if a.ip().is_unspecified() {
                a.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
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
            addr: self.addr.clone(),
            source,
        };
        let mut conn = Conn::open(&self.addr).map_err(|source| ClientError::Connect {
            addr: self.addr.clone(),
            source,
        })?;
        let stream = conn.io();
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            match &self.addr {
                Endpoint::Tcp(a) => a.to_string(),
                Endpoint::Unix(_) => "localhost".to_owned(),
            },
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
        let malformed = || ClientError::Malformed {
            addr: self.addr.clone(),
        };
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
