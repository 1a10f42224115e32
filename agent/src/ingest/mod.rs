//! The ingest API (hyper 1, HTTP/1.1): `POST /v1/events`, health, plugin list,
//! Prometheus metrics and the plugins' custom routes.

mod events;
mod plugin_routes;
mod response;
mod status;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::monitoring::PointBuffer;
use crate::pipeline::Pipeline;
use crate::sinks::SinkState;
use crate::sources::SourceStates;
use response::{ApiError, Body, ErrorCode};

/// Everything the handlers need.
pub struct State {
    pub pipeline: Pipeline,
    pub sinks: BTreeMap<String, Arc<SinkState>>,
    pub sources: SourceStates,
    pub points: Arc<PointBuffer>,
    pub metrics: Metrics,
    pub auth_token: Option<String>,
    pub max_body_bytes: usize,
    pub device_id: String,
    pub started: Instant,
}

/// Request counters of the API.
#[derive(Default)]
pub struct Metrics {
    by_status: Mutex<BTreeMap<u16, u64>>,
    accepted: AtomicU64,
}

impl Metrics {
    fn count(&self, status: u16) {
        *self
            .by_status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(status)
            .or_default() += 1;
    }

    fn events_accepted(&self, n: u64) {
        self.accepted.fetch_add(n, Ordering::Relaxed);
    }

    fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    fn by_status(&self) -> Vec<(String, u64)> {
        self.by_status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(s, n)| (format!("{{status=\"{s}\"}}"), *n))
            .collect()
    }
}

/// How long in-flight requests get to finish at shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves the API on `listener` until `shutdown` turns true, then stops accepting and
/// lets in-flight requests finish (up to 30 s).
pub async fn serve(
    listener: TcpListener,
    state: Arc<State>,
    header_read_timeout: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let _ = stream.set_nodelay(true);
                    let state = Arc::clone(&state);
                    let service = service_fn(move |request| {
                        let state = Arc::clone(&state);
                        async move { Ok::<_, Infallible>(handle(&state, request).await) }
                    });
                    let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
                    tokio::spawn(async move {
                        if let Err(e) = connection.await {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("in-flight requests finished"),
        _ = tokio::time::sleep(DRAIN_TIMEOUT) => tracing::warn!("in-flight requests still running after {DRAIN_TIMEOUT:?}; stopping anyway"),
    }
}

async fn handle(state: &State, request: Request<Incoming>) -> Response<Body> {
    let began = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let request_id = request_id(&request);
    let mut response = route(state, request, &request_id)
        .await
        .unwrap_or_else(ApiError::into_response);
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", v);
    }
    let status = response.status().as_u16();
    state.metrics.count(status);
    let code = response.extensions().get::<ErrorCode>().map(|c| c.0);
    state.points.request(
        method.as_str(),
        &path,
        status,
        code,
        &request_id,
        began.elapsed(),
    );
    response
}

async fn route(
    state: &State,
    request: Request<Incoming>,
    request_id: &str,
) -> Result<Response<Body>, ApiError> {
    let public = request.method() == Method::GET && request.uri().path() == "/v1/health";
    if !public {
        authorize(state, &request)?;
    }
    match (request.method(), request.uri().path()) {
        (&Method::POST, "/v1/events") => events::post_events(state, request, request_id).await,
        (&Method::GET, "/v1/health") => Ok(status::health(state)),
        (&Method::GET, "/v1/plugins") => Ok(status::plugins(state)),
        (&Method::GET, "/metrics") => Ok(status::metrics(state)),
        (_, "/v1/events" | "/v1/health" | "/v1/plugins" | "/metrics") => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{} is not allowed here", request.method()),
        )),
        (_, path) if path.starts_with("/v1/plugins/") => {
            plugin_routes::handle(state, request).await
        }
        _ => Err(ApiError::not_found()),
    }
}

/// The producer's `X-Request-Id` if it is sane, else a new UUID.
fn request_id(request: &Request<Incoming>) -> String {
    request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

fn authorize(state: &State, request: &Request<Incoming>) -> Result<(), ApiError> {
    let Some(expected) = &state.auth_token else {
        return Ok(());
    };
    let given = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if constant_time_eq(given.as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong bearer token",
        ))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
