//! How OpAMP messages travel (spec, "Transports"): a POST per message over plain HTTP,
//! or binary frames on one WebSocket, each frame a zero header byte and the protobuf
//! message. Both run over one kind of stream (TCP, with rustls on top for `https://` and
//! `wss://`), and package downloads use the same HTTP path.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE, HOST, RETRY_AFTER};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use url::Url;

/// The largest message taken from the server (the spec asks clients to enforce one).
pub const MAX_MESSAGE_BYTES: usize = 8 << 20;

/// Why an exchange with the server (or a download) failed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    #[error("WebSocket: {0}")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("the server answered HTTP {0}")]
    Status(StatusCode),
    /// 429 or 503: come back later (`Retry-After` if the server said when).
    #[error("the server is busy (HTTP {status}); retry in {retry_after:?}")]
    Throttled {
        status: StatusCode,
        retry_after: Option<Duration>,
    },
    #[error("the answer is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the server closed the connection")]
    Closed,
    #[error("malformed frame: {0}")]
    Frame(&'static str),
    #[error("bad request: {0}")]
    Request(String),
}

/// A byte stream to the server: TCP, or TLS over TCP.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Where and how to connect: the TLS config for `https://`/`wss://` URLs, the extra
/// headers, the timeout.
#[derive(Clone)]
pub struct Endpoint {
    pub tls: Option<Arc<ClientConfig>>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub timeout: Duration,
}

impl Endpoint {
    /// A stream to `url`'s host, with TLS if its scheme asks for it.
    pub async fn connect(&self, url: &Url) -> Result<Box<dyn Stream>, TransportError> {
        let host = url.host_str().unwrap_or_default().to_owned();
        let secure = matches!(url.scheme(), "https" | "wss");
        let port = url
            .port_or_known_default()
            .unwrap_or(if secure { 443 } else { 80 });
        let addr = format!("{host}:{port}");
        let connect = async {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let tcp = TcpStream::connect((host, port)).await?;
            tcp.set_nodelay(true)?;
            if !secure {
                return Ok(Box::new(tcp) as Box<dyn Stream>);
            }
            let config = self
                .tls
                .clone()
                .ok_or_else(|| std::io::Error::other("no TLS config for a TLS URL"))?;
            let name = rustls::pki_types::ServerName::try_from(host.to_owned())
                .map_err(std::io::Error::other)?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await?;
            Ok(Box::new(tls) as Box<dyn Stream>)
        };
        match tokio::time::timeout(self.timeout, connect).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(source)) => Err(TransportError::Connect { addr, source }),
            Err(_) => Err(TransportError::Timeout(self.timeout)),
        }
    }

    /// One HTTP/1.1 exchange on a new connection (package downloads): `headers`, and
    /// the fleet's own (its credentials) only if `fleet_headers`.
    pub async fn get(
        &self,
        url: &Url,
        headers: &[(String, String)],
        fleet_headers: bool,
        range_from: u64,
    ) -> Result<hyper::Response<hyper::body::Incoming>, TransportError> {
        let mut sender = self.http_connection(url).await?;
        let mut request = self.request(Method::GET, url, Bytes::new())?;
        if !fleet_headers {
            for (name, _) in &self.headers {
                request.headers_mut().remove(name);
            }
        }
        for (name, value) in headers {
            let (name, value) = header(name, value)?;
            request.headers_mut().insert(name, value);
        }
        if range_from > 0 {
            request.headers_mut().insert(
                hyper::header::RANGE,
                HeaderValue::from_str(&format!("bytes={range_from}-")).expect("ascii"),
            );
        }
        self.timed(sender.send_request(request)).await
    }

    async fn http_connection(
        &self,
        url: &Url,
    ) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, TransportError> {
        let stream = self.connect(url).await?;
        let (sender, connection) = self
            .timed(hyper::client::conn::http1::handshake(TokioIo::new(stream)))
            .await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }

    fn request(
        &self,
        method: Method,
        url: &Url,
        body: Bytes,
    ) -> Result<Request<Full<Bytes>>, TransportError> {
        let mut path = url.path().to_owned();
        if let Some(query) = url.query() {
            path = format!("{path}?{query}");
        }
        let host = match url.port() {
            Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_owned(),
        };
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, host)
            .body(Full::new(body))
            .map_err(|e| TransportError::Request(e.to_string()))?;
        for (name, value) in &self.headers {
            request.headers_mut().insert(name.clone(), value.clone());
        }
        Ok(request)
    }

    /// `f`, bounded by the endpoint's timeout.
    pub async fn timed<T, E: Into<TransportError>>(
        &self,
        f: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, TransportError> {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(r) => r.map_err(Into::into),
            Err(_) => Err(TransportError::Timeout(self.timeout)),
        }
    }
}

fn header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), TransportError> {
    let bad = || TransportError::Request(format!("header `{name}` is not a valid header"));
    Ok((
        HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad())?,
        HeaderValue::from_str(value).map_err(|_| bad())?,
    ))
}

/// Plain HTTP: one POST per `AgentToServer`, its answer the `ServerToAgent`. The
/// keep-alive connection is made again when the server closed it.
pub struct HttpChannel {
    endpoint: Endpoint,
    url: Url,
    uid_header: HeaderValue,
    sender: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>,
}

impl HttpChannel {
    pub fn new(endpoint: Endpoint, url: Url, uid: &str) -> HttpChannel {
        HttpChannel {
            endpoint,
            url,
            uid_header: HeaderValue::from_str(uid).expect("a UUID is ascii"),
            sender: None,
        }
    }

    /// The agent's uid changed (the server assigned one).
    pub fn set_uid(&mut self, uid: &str) {
        self.uid_header = HeaderValue::from_str(uid).expect("a UUID is ascii");
    }

    /// Sends one message, returns the answer's bytes.
    pub async fn exchange(&mut self, message: Vec<u8>) -> Result<Bytes, TransportError> {
        let mut sender = match self.sender.take() {
            Some(s) if !s.is_closed() => s,
            _ => self.endpoint.http_connection(&self.url).await?,
        };
        self.endpoint.timed(sender.ready()).await?;
        let mut request = self
            .endpoint
            .request(Method::POST, &self.url, Bytes::from(message))?;
        let headers = request.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-protobuf"),
        );
        headers.insert("opamp-instance-uid", self.uid_header.clone());
        let response = self.endpoint.timed(sender.send_request(request)).await?;
        let status = response.status();
        if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
            return Err(TransportError::Throttled {
                status,
                retry_after: retry_after(response.headers().get(RETRY_AFTER)),
            });
        }
        if status != StatusCode::OK {
            return Err(TransportError::Status(status));
        }
        let body = self
            .endpoint
            .timed(async {
                Limited::new(response.into_body(), MAX_MESSAGE_BYTES)
                    .collect()
                    .await
                    .map_err(|e| match e.downcast::<hyper::Error>() {
                        Ok(e) => TransportError::Http(*e),
                        Err(_) => TransportError::TooLarge(MAX_MESSAGE_BYTES),
                    })
            })
            .await?;
        self.sender = Some(sender);
        Ok(body.to_bytes())
    }
}

/// `Retry-After` in seconds (the HTTP-date form is not worth its code on a device: the
/// caller's backoff applies instead).
fn retry_after(value: Option<&HeaderValue>) -> Option<Duration> {
    let secs: u64 = value?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs))
}

/// One WebSocket to the server.
pub struct WsChannel {
    socket: WebSocketStream<Box<dyn Stream>>,
}

impl WsChannel {
    /// Connects and upgrades (the configured headers go on the upgrade request).
    pub async fn open(endpoint: &Endpoint, url: &Url) -> Result<WsChannel, TransportError> {
        let stream = endpoint.connect(url).await?;
        let mut request = url.as_str().into_client_request()?;
        for (name, value) in &endpoint.headers {
            request.headers_mut().insert(name.clone(), value.clone());
        }
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE_BYTES))
            .max_frame_size(Some(MAX_MESSAGE_BYTES));
        let (socket, response) = endpoint
            .timed(tokio_tungstenite::client_async_with_config(
                request,
                stream,
                Some(config),
            ))
            .await?;
        tracing::debug!(status = %response.status(), "WebSocket open");
        Ok(WsChannel { socket })
    }

    pub async fn send(&mut self, message: Vec<u8>) -> Result<(), TransportError> {
        let mut frame = Vec::with_capacity(message.len() + 1);
        frame.push(0);
        frame.extend_from_slice(&message);
        self.socket.send(Message::Binary(frame.into())).await?;
        Ok(())
    }

    /// The next message from the server (pings are answered on the way).
    pub async fn receive(&mut self) -> Result<Bytes, TransportError> {
        loop {
            match self.socket.next().await {
                None => return Err(TransportError::Closed),
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(Message::Binary(frame))) => return unframe(frame),
                Some(Ok(Message::Close(_))) => return Err(TransportError::Closed),
                Some(Ok(Message::Text(_))) => {
                    return Err(TransportError::Frame(
                        "a text frame (OpAMP frames are binary)",
                    ))
                }
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Closes the socket the way RFC 6455 wants (best effort).
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.socket.close(None)).await;
    }
}

/// The protobuf bytes of a frame: after the header (a varint, which must be 0). A
/// frame without the header (older servers) starts with a protobuf tag, never 0.
fn unframe(frame: Bytes) -> Result<Bytes, TransportError> {
    match frame.first() {
        Some(0) => Ok(frame.slice(1..)),
        Some(b) if b & 0x80 != 0 => Err(TransportError::Frame("a non-zero header")),
        _ => Ok(frame),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_read_with_or_without_the_header() {
        assert_eq!(
            unframe(Bytes::from_static(&[0, 8, 1])).unwrap(),
            &[8, 1][..]
        );
        assert_eq!(unframe(Bytes::from_static(&[0])).unwrap(), &[][..]);
        assert_eq!(unframe(Bytes::from_static(&[10, 0])).unwrap(), &[10, 0][..]);
        assert!(unframe(Bytes::from_static(&[0x81, 1, 8])).is_err());
    }

    #[test]
    fn retry_after_is_read_in_seconds() {
        assert_eq!(
            retry_after(Some(&HeaderValue::from_static("7"))),
            Some(Duration::from_secs(7))
        );
        assert_eq!(retry_after(Some(&HeaderValue::from_static("soon"))), None);
        assert_eq!(retry_after(None), None);
    }
}
