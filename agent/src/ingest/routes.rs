//! `/v1/plugins/{name}/{path..}`: custom routes of background plugins.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use outpost_pdk::RouteRequest;

use crate::api::{read_body, Api, ApiError, Body};

pub async fn plugin_route(
    api: &Api,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let path = request.uri().path().to_owned();
    let rest = path.strip_prefix("/v1/plugins/").unwrap_or_default();
    let (name, sub) = rest.split_once('/').unwrap_or((rest, ""));
    let plugins = api.pipeline.plugins();
    let plugin = plugins.get(name).ok_or_else(ApiError::not_found)?;
    let method = request.method().as_str().to_owned();
    let declared = plugin.info().routes.iter().any(|r| {
        r.method.eq_ignore_ascii_case(&method) && r.path.trim_matches('/') == sub.trim_matches('/')
    });
    if !declared {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("plugin `{name}` has no route {method} /{sub}"),
        ));
    }
    let query = request.uri().query().unwrap_or_default().to_owned();
    let headers = request
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let body = read_body(request, &api.limits()).await?;
    let route_request = RouteRequest {
        method,
        path: sub.to_owned(),
        query,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    let answer = api
        .pipeline
        .route(Arc::clone(plugin), route_request)
        .await
        .map_err(ApiError::from)?;
    respond(name, answer)
}

/// The plugin's answer as an HTTP response; headers it cannot legally send are skipped.
fn respond(plugin: &str, answer: outpost_pdk::RouteResponse) -> Result<Response<Body>, ApiError> {
    let status = StatusCode::from_u16(answer.status).map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "plugin_failed",
            format!(
                "plugin `{plugin}` answered with invalid status {}",
                answer.status
            ),
        )
    })?;
    let mut response = Response::new(Full::new(Bytes::from(answer.body)));
    *response.status_mut() = status;
    for (k, v) in answer.headers {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(&v),
        ) {
            response.headers_mut().insert(k, v);
        }
    }
    Ok(response)
}
