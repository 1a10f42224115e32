//! The HTTP server (hyper 1, HTTP/1.1): connections, timeouts, the bearer token and
//! routing, to the producer API ([`crate::ingest`]) and the operator API
//! ([`crate::operator`]). Bodies are read in one place ([`read_body`]) and errors have
//! one shape ([`ApiError`]).

mod body;
mod response;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use body::read_body;
pub use response::{json, text, ApiError, Body, ErrorCode};

use crate::config::IngestLimits;
use crate::operator::{Control, Status};
use crate::pipeline::Pipeline;

/// Everything the handlers need.
pub struct Api {
    pub pipeline: Pipeline,
    /// What the operator API reports.
    pub status: Status,
    pub counters: ApiCounters,
    /// Requests to the agent that runs the API (reload).
    pub control: tokio::sync::mpsc::Sender<Control>,
    settings: RwLock<Arc<ApiSettings>>,
}

/// The API's settings that a reload may change.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    pub auth_token: Option<String>,
    pub limits: IngestLimits,
}

impl Api {
    pub fn new(
        pipeline: Pipeline,
        status: Status,
        control: tokio::sync::mpsc::Sender<Control>,
        settings: ApiSettings,
    ) -> Api {
        Api {
            pipeline,
            status,
            counters: ApiCounters::default(),
            control,
            settings: RwLock::new(Arc::new(settings)),
        }
    }

    /// The current settings.
    pub fn settings(&self) -> Arc<ApiSettings> {
        Arc::clone(&self.settings.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// The current request limits.
    pub fn limits(&self) -> IngestLimits {
        self.settings().limits
    }

    /// Applies reloaded settings to the requests that come next.
    pub fn set_settings(&self, settings: ApiSettings) {
        *self.settings.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(settings);
    }
}

/// Request counters of the API.
#[derive(Default)]
pub struct ApiCounters {
    by_status: Mutex<BTreeMap<u16, u64>>,
    accepted: AtomicU64,
}

impl ApiCounters {
    fn count(&self, status: u16) {
        *self
            .by_status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(status)
            .or_default() += 1;
    }

    /// Counts events a 202 accepted.
    pub fn events_accepted(&self, n: u64) {
        self.accepted.fetch_add(n, Ordering::Relaxed);
    }

    /// Events accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Requests answered so far, by status code.
    pub fn by_status(&self) -> Vec<(u16, u64)> {
        let counts = self.by_status.lock().unwrap_or_else(|e| e.into_inner());
        counts.iter().map(|(s, n)| (*s, *n)).collect()
    }
}

/// How long in-flight requests get to finish at shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves the API on `listener` until `shutdown` turns true, then stops accepting and
/// lets in-flight requests finish (up to 30 s).
pub async fn serve(listener: TcpListener, api: Arc<Api>, mut shutdown: watch::Receiver<bool>) {
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let _ = stream.set_nodelay(true);
                    // Per connection, so a reloaded timeout applies to the next ones.
                    let mut builder = http1::Builder::new();
                    builder
                        .timer(TokioTimer::new())
                        .header_read_timeout(api.limits().header_read_timeout);
                    let api = Arc::clone(&api);
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

async fn handle(api: &Api, request: Request<Incoming>) -> Response<Body> {
    let began = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let request_id = request_id(&request);
    let mut response = route(api, request, &request_id)
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

async fn route(
    api: &Api,
    request: Request<Incoming>,
    request_id: &str,
) -> Result<Response<Body>, ApiError> {
    let public = request.method() == Method::GET && request.uri().path() == "/v1/health";
    if !public {
        authorize(api, &request)?;
    }
    use crate::operator as op;
    match (request.method(), request.uri().path()) {
        (&Method::POST, "/v1/events") => crate::ingest::post_events(api, request, request_id).await,
        (&Method::GET, "/v1/health") => Ok(op::health(api)),
        (&Method::GET, "/v1/plugins") => Ok(op::plugins(api)),
        (&Method::GET, "/metrics") => Ok(op::metrics(api)),
        (&Method::POST, "/v1/reload") => op::reload(api).await,
        (&Method::GET, "/v1/dead-letters") => op::list_dead_letters(api, &request).await,
        (&Method::DELETE, "/v1/dead-letters") => op::purge_dead_letters(api, &request).await,
        (&Method::POST, "/v1/dead-letters/replay") => op::replay_dead_letters(api, request).await,
        (
            _,
            "/v1/events"
            | "/v1/health"
            | "/v1/plugins"
            | "/metrics"
            | "/v1/reload"
            | "/v1/dead-letters"
            | "/v1/dead-letters/replay",
        ) => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{} is not allowed here", request.method()),
        )),
        (_, path) if path.starts_with("/v1/plugins/") => {
            crate::ingest::plugin_route(api, request).await
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

fn authorize(api: &Api, request: &Request<Incoming>) -> Result<(), ApiError> {
    let settings = api.settings();
    let Some(expected) = &settings.auth_token else {
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
