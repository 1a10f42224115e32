//! `GET /v1/plugins`: the loaded plugins, what they declared, and how their calls went.

use std::sync::atomic::Ordering::Relaxed;

use hyper::{Response, StatusCode};
use serde_json::json;

use crate::api::{json as json_response, Api, Body};

pub fn plugins(api: &Api) -> Response<Body> {
    let list: Vec<serde_json::Value> = api
        .pipeline
        .plugins()
        .plugins()
        .iter()
        .map(|p| {
            let info = p.info();
            let routes: Vec<_> = info
                .routes
                .iter()
                .map(|r| json!({"method": r.method, "path": format!("/v1/plugins/{}/{}", p.name, r.path)}))
                .collect();
            json!({
                "name": p.name,
                "kind": p.kind().as_str(),
                "version": info.version,
                "file": p.file.as_ref().map(|f| f.display().to_string()),
                "event_types": info.event_types,
                "routes": routes,
                "timer_ms": p.timer().map(|t| t.as_millis() as u64),
                "instances": p.instances(),
                "calls": p.stats.calls.load(Relaxed),
                "failures": p.stats.failures.load(Relaxed),
                "faults": p.stats.faults.load(Relaxed),
                "restarts": p.stats.restarts.load(Relaxed),
                "last_error": p.stats.last_error(),
                "status": p.stats.health().as_str(),
            })
        })
        .collect();
    json_response(StatusCode::OK, &json!({ "plugins": list }))
}
