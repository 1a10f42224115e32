//! The HTTP server (hyper 1, HTTP/1.1): connections, timeouts, and the route table
//! ([`routes`]) that hands requests to the producer API ([`crate::ingest`]) and the
//! operator API ([`crate::operator`]). What the handlers share is in [`crate::api`].

mod listen;
mod routes;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};

pub use listen::{Accepted, ListenError, Listeners};

use crate::api::{Api, ApiError, Body, ErrorCode};
use crate::shutdown::Shutdown;

/// How long in-flight requests get to finish at shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves the API on `listeners` until `shutdown`, then stops accepting and lets
/// in-flight requests finish (up to 30 s).
pub async fn serve(listeners: Listeners, api: Arc<Api>, mut shutdown: Shutdown) {
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listeners.accept() => match accepted {
                Ok(Accepted::Tcp(stream)) => {
                    let _ = stream.set_nodelay(true);
                    serve_connection(&graceful, &api, stream);
                }
                Ok(Accepted::Unix(stream)) => serve_connection(&graceful, &api, stream),
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    if shutdown.sleep(Duration::from_millis(100)).await {
                        break;
                    }
                }
            },
            _ = shutdown.stopped() => break,
        }
    }
    drop(listeners);
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("in-flight requests finished"),
        _ = tokio::time::sleep(DRAIN_TIMEOUT) => tracing::warn!("in-flight requests still running after {DRAIN_TIMEOUT:?}; stopping anyway"),
    }
}

/// Serves one connection (HTTP/1.1, keep-alive) in a task of its own.
fn serve_connection<S>(graceful: &GracefulShutdown, api: &Arc<Api>, stream: S)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Per connection, so a reloaded timeout applies to the next ones.
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(api.limits().header_read_timeout);
    let api = Arc::clone(api);
    let service = service_fn(move |request| {
        let api = Arc::clone(&api);
        async move { Ok::<_, Infallible>(handle(&api, request).await) }
    });
    let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "connection ended with an error");
        }
    });
}

/// One request: routed, answered, counted, and reported as a monitoring point.
async fn handle(api: &Api, request: Request<Incoming>) -> Response<Body> {
    let began = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let request_id = routes::request_id(&request);
    let mut response = routes::dispatch(api, request, &request_id)
        .await
        .unwrap_or_else(ApiError::into_response);
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", v);
    }
    let status = response.status().as_u16();
    api.counters.count(status);
    let code = response.extensions().get::<ErrorCode>().map(|c| c.0);
    api.status.points.request(
        method.as_str(),
        &path,
        status,
        code,
        &request_id,
        began.elapsed(),
    );
    response
}
