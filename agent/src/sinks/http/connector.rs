//! How the HTTP sink's connections are made: TCP to the receiver, or through a forward
//! proxy (`CONNECT` tunnel for `https://`, absolute-form requests for `http://`), with
//! TLS on top for `https://` (rustls with the ring provider, the config MQTT uses).
//!
//! One pooled keep-alive client per sink; the route is decided once, from the config,
//! because a sink has one URL.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::header::HeaderValue;
use hyper::{Request, Uri};
use hyper_rustls::{
    DefaultServerNameResolver, FixedServerNameResolver, HttpsConnector, ResolveServerName,
};
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::client::legacy::{Client, ResponseFuture};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tower_service::Service;

use super::body::Chunks;
use crate::config::HttpSinkConfig;
use crate::tls::{self, TlsError};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The sink's HTTP client: plain, or with TLS for an `https://` URL.
pub(super) enum SinkClient {
    Plain(Client<SinkConnector, Chunks>),
    Tls(Client<HttpsConnector<SinkConnector>, Chunks>),
}

impl SinkClient {
    /// The client for `config`'s URL and proxy; reads the TLS files (or the system
    /// roots) for `https://`.
    pub fn new(config: &HttpSinkConfig) -> Result<SinkClient, TlsError> {
        let mut http = HttpConnector::new();
        // The destination handed to the TCP connector is https:// for TLS targets.
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(config.timeout));
        let route = match &config.proxy {
            Some(proxy) => Route::Proxy {
                uri: proxy.uri.clone(),
                auth: proxy.auth.clone(),
            },
            None => Route::Direct,
        };
        let connector = SinkConnector { http, route };
        let mut builder = Client::builder(TokioExecutor::new());
        builder.pool_idle_timeout(Duration::from_secs(60));
        if config.url.scheme_str() != Some("https") {
            return Ok(SinkClient::Plain(builder.build(connector)));
        }
        let resolver: Arc<dyn ResolveServerName + Send + Sync> = match &config.tls_server_name {
            Some(name) => Arc::new(FixedServerNameResolver::new(name.clone())),
            None => Arc::new(DefaultServerNameResolver::default()),
        };
        let tls = tls::client_config(&config.tls)?;
        let https = HttpsConnector::new(connector, tls, true, resolver);
        Ok(SinkClient::Tls(builder.build(https)))
    }

    pub fn request(&self, request: Request<Chunks>) -> ResponseFuture {
        match self {
            SinkClient::Plain(c) => c.request(request),
            SinkClient::Tls(c) => c.request(request),
        }
    }
}

/// Where the sink's TCP connections go.
#[derive(Clone, Debug)]
enum Route {
    Direct,
    /// A forward proxy: `https://` targets through a `CONNECT` tunnel, `http://` ones
    /// in absolute form (hyper writes it for connections marked proxied).
    Proxy {
        uri: Uri,
        auth: Option<HeaderValue>,
    },
}

/// Why a connection could not be made, with the proxy named when there is one (its
/// URI never carries credentials).
#[derive(Debug, thiserror::Error)]
pub(super) enum ConnectError {
    #[error("{0}")]
    Direct(#[source] BoxError),
    #[error("proxy {proxy}: {source}")]
    Proxy {
        proxy: Uri,
        #[source]
        source: BoxError,
    },
}

/// The TCP layer under TLS: direct, or through the proxy.
#[derive(Clone)]
pub(super) struct SinkConnector {
    http: HttpConnector,
    route: Route,
}

impl Service<Uri> for SinkConnector {
    type Response = Conn;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Conn, ConnectError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        self.http
            .poll_ready(cx)
            .map_err(|e| ConnectError::Direct(e.into()))
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let mut http = self.http.clone();
        let route = self.route.clone();
        Box::pin(async move {
            match route {
                Route::Direct => match http.call(dst).await {
                    Ok(io) => Ok(Conn { io, proxied: false }),
                    Err(e) => Err(ConnectError::Direct(e.into())),
                },
                Route::Proxy { uri, auth } => {
                    let tunnel = dst.scheme_str() == Some("https");
                    let proxy = uri.clone();
                    let connected = if tunnel {
                        let mut t = Tunnel::new(uri, http);
                        if let Some(auth) = auth {
                            t = t.with_auth(auth);
                        }
                        match std::future::poll_fn(|cx| t.poll_ready(cx)).await {
                            Ok(()) => t.call(dst).await.map_err(BoxError::from),
                            Err(e) => Err(BoxError::from(e)),
                        }
                    } else {
                        http.call(uri).await.map_err(BoxError::from)
                    };
                    match connected {
                        // TLS runs inside the tunnel; plain http speaks to the proxy.
                        Ok(io) => Ok(Conn {
                            io,
                            proxied: !tunnel,
                        }),
                        Err(source) => Err(ConnectError::Proxy { proxy, source }),
                    }
                }
            }
        })
    }
}

/// A TCP connection; `proxied` makes hyper write absolute-form request targets.
pub(super) struct Conn {
    io: TokioIo<tokio::net::TcpStream>,
    proxied: bool,
}

impl Connection for Conn {
    fn connected(&self) -> Connected {
        self.io.connected().proxy(self.proxied)
    }
}

impl hyper::rt::Read for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
}
