//! `GET /v1/health`: the agent at a glance (open without the bearer token, for probes).

use std::sync::atomic::Ordering::Relaxed;

use hyper::{Response, StatusCode};
use serde_json::{json, Map, Value};

use crate::api::{json as json_response, Api, Body};
use crate::queue::StorageState;
use crate::sinks::SinkStatus;
use crate::sources::SourceStatus;

pub fn health(api: &Api) -> Response<Body> {
    let status = &api.status;
    let q = status.queue.stats();
    let storage = status.queue.storage();
    let overall = match storage.state {
        StorageState::Full | StorageState::Failed => "degraded",
        StorageState::Ok | StorageState::Low | StorageState::UnknownSize => "ok",
    };
    json_response(
        StatusCode::OK,
        &json!({
            "status": overall,
            "device_id": status.device_id,
            "uptime_seconds": status.started.elapsed().as_secs(),
            "queue": {
                "depth": q.depth,
                "bytes": q.bytes,
                "max_bytes": q.max_bytes,
                "commits": q.commits,
                "syncs": q.syncs,
                "checkpoints": q.checkpoints,
                "sync": q.sync.as_str(),
            },
            "storage": storage,
            "config": status.config.view(),
            "unconfigured_sinks": unconfigured(api),
            "sinks": sinks(api),
            "sources": sources(api),
            "plugins": plugins(api),
        }),
    )
}

/// Messages kept for sinks no longer configured: delivered if the sink comes back.
fn unconfigured(api: &Api) -> Map<String, Value> {
    let running = api.status.sinks();
    api.status
        .queue
        .sinks()
        .into_iter()
        .filter(|f| !running.contains_key(f.name.as_str()) && (f.depth() > 0 || f.dead_letters() > 0))
        .map(|f| {
            let view = json!({"backlog": f.depth(), "backlog_bytes": f.bytes(), "dead_letters": f.dead_letters()});
            (f.name.to_string(), view)
        })
        .collect()
}

fn sinks(api: &Api) -> Map<String, Value> {
    let queue = &api.status.queue;
    api.status
        .sinks()
        .iter()
        .map(|(name, s)| {
            let fifo = queue.sink(name);
            let view = json!({
                "type": s.kind,
                "state": s.status().as_str(),
                "connected": s.status() == SinkStatus::Connected,
                "backlog": fifo.as_ref().map_or(0, |f| f.depth()),
                "backlog_bytes": fifo.as_ref().map_or(0, |f| f.bytes()),
                "in_flight": s.in_flight(),
                "delivered": s.delivered_total(),
                "failures": s.failures_total(),
                "dead_letters": fifo.as_ref().map_or(0, |f| f.dead_letters()),
                "dropped_queue_full": fifo.as_ref().map_or(0, |f| f.dropped_full()),
                "expired": s.expired_total(),
                "last_error": s.last_error(),
            });
            (name.clone(), view)
        })
        .collect()
}

fn sources(api: &Api) -> Map<String, Value> {
    api.status
        .sources()
        .iter()
        .map(|(name, s)| {
            let connected = s.status() == SourceStatus::Connected;
            let acked = s.acked.load(Relaxed);
            let view = json!({
                "kind": s.kind,
                "state": s.status().as_str(),
                "received": s.received.load(Relaxed),
                "acked": acked,
                "rejected": s.rejected.load(Relaxed),
                "redelivered": s.redelivered.load(Relaxed),
                "dropped": s.dropped.load(Relaxed),
                "last_error": s.last_error(),
                // Before this wave's fields: kept for existing readers.
                "connected": connected,
                "subscribed": connected,
                "accepted": acked,
            });
            (name.clone(), view)
        })
        .collect()
}

fn plugins(api: &Api) -> Map<String, Value> {
    api.pipeline
        .plugins()
        .plugins()
        .iter()
        .map(|p| {
            let view = json!({
                "kind": p.kind().as_str(),
                "status": p.stats.health().as_str(),
                "faults": p.stats.faults.load(Relaxed),
                "last_error": p.stats.last_error(),
            });
            (p.name.clone(), view)
        })
        .collect()
}
