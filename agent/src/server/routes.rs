//! The route table: one list of the fixed routes drives both dispatch and the `405`
//! answer (with its `Allow` header); `/v1/plugins/{name}/…` goes to the plugins' own
//! routes. Every route but the health probe needs the bearer token, when one is set.

use hyper::body::Incoming;
use hyper::header::AUTHORIZATION;
use hyper::{Method, Request, Response, StatusCode};

use crate::api::{Api, ApiError, Body};
use crate::{ingest, operator};

/// A fixed route's handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Events,
    Health,
    Plugins,
    Metrics,
    Reload,
    ListDeadLetters,
    PurgeDeadLetters,
    ReplayDeadLetters,
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Open to probes without the token.
    Public,
    /// The bearer token, when one is configured.
    Token,
}

/// Every fixed route: path, method, handler, access.
const ROUTES: &[(&str, &str, Endpoint, Access)] = &[
    ("/v1/events", "POST", Endpoint::Events, Access::Token),
    ("/v1/health", "GET", Endpoint::Health, Access::Public),
    ("/v1/plugins", "GET", Endpoint::Plugins, Access::Token),
    ("/metrics", "GET", Endpoint::Metrics, Access::Token),
    ("/v1/reload", "POST", Endpoint::Reload, Access::Token),
    (
        "/v1/dead-letters",
        "GET",
        Endpoint::ListDeadLetters,
        Access::Token,
    ),
    (
        "/v1/dead-letters",
        "DELETE",
        Endpoint::PurgeDeadLetters,
        Access::Token,
    ),
    (
        "/v1/dead-letters/replay",
        "POST",
        Endpoint::ReplayDeadLetters,
        Access::Token,
    ),
];

/// Where the custom routes of background plugins live.
const PLUGIN_ROUTES: &str = "/v1/plugins/";

/// What a request is for.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Fixed(Endpoint, Access),
    Plugin,
}

/// The route of `method path`: a fixed route, a plugin route, or why neither.
fn resolve(method: &Method, path: &str) -> Result<Route, ApiError> {
    let mut routes = ROUTES.iter().filter(|r| r.0 == path).peekable();
    if routes.peek().is_some() {
        let mut allowed = Vec::new();
        for &(_, m, endpoint, access) in routes {
            if m == method.as_str() {
                return Ok(Route::Fixed(endpoint, access));
            }
            allowed.push(m);
        }
        return Err(ApiError::method_not_allowed(method, &allowed));
    }
    if path.starts_with(PLUGIN_ROUTES) {
        return Ok(Route::Plugin);
    }
    Err(ApiError::not_found())
}

/// Authorizes and routes `request` to its handler.
pub(super) async fn dispatch(
    api: &Api,
    request: Request<Incoming>,
    request_id: &str,
) -> Result<Response<Body>, ApiError> {
    let route = resolve(request.method(), request.uri().path());
    if !matches!(route, Ok(Route::Fixed(_, Access::Public))) {
        authorize(api, &request)?;
    }
    let endpoint = match route? {
        Route::Plugin => return ingest::plugin_route(api, request).await,
        Route::Fixed(endpoint, _) => endpoint,
    };
    match endpoint {
        Endpoint::Events => ingest::post_events(api, request, request_id).await,
        Endpoint::Health => Ok(operator::health(api)),
        Endpoint::Plugins => Ok(operator::plugins(api)),
        Endpoint::Metrics => Ok(operator::metrics(api)),
        Endpoint::Reload => operator::reload(api).await,
        Endpoint::ListDeadLetters => operator::list_dead_letters(api, &request).await,
        Endpoint::PurgeDeadLetters => operator::purge_dead_letters(api, &request).await,
        Endpoint::ReplayDeadLetters => operator::replay_dead_letters(api, request).await,
    }
}

/// The producer's `X-Request-Id` if it is sane, else a new UUID.
pub(super) fn request_id(request: &Request<Incoming>) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_table_routes_and_answers_405_with_the_allowed_methods() {
        assert_eq!(
            resolve(&Method::GET, "/v1/health").unwrap(),
            Route::Fixed(Endpoint::Health, Access::Public)
        );
        assert_eq!(
            resolve(&Method::DELETE, "/v1/dead-letters").unwrap(),
            Route::Fixed(Endpoint::PurgeDeadLetters, Access::Token)
        );
        let e = resolve(&Method::PUT, "/v1/dead-letters").unwrap_err();
        assert_eq!(e.status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(e.allow.as_deref(), Some("GET, DELETE"));
        assert_eq!(
            resolve(&Method::GET, "/v1/plugins/teapot_plugin/teapot").unwrap(),
            Route::Plugin
        );
        assert_eq!(
            resolve(&Method::GET, "/nope").unwrap_err().status,
            StatusCode::NOT_FOUND
        );
    }
}
