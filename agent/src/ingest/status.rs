//! `GET /v1/health`, `GET /v1/plugins` and `GET /metrics`.

use std::fmt::Write;

use hyper::{Response, StatusCode};
use serde_json::json;

use super::response::{json as json_response, text, Body};
use super::State;

pub fn health(state: &State) -> Response<Body> {
    let q = state.pipeline.queue.stats();
    let sinks: serde_json::Map<String, serde_json::Value> = state
        .sinks
        .iter()
        .map(|(name, s)| {
            let fifo = state.pipeline.queue.sink(name);
            (
                name.clone(),
                json!({
                    "type": s.kind,
                    "state": s.status().as_str(),
                    "connected": s.status() == crate::sinks::SinkStatus::Connected,
                    "backlog": fifo.map_or(0, |f| f.depth()),
                    "backlog_bytes": fifo.map_or(0, |f| f.bytes()),
                    "in_flight": s.in_flight(),
                    "delivered": s.delivered_total(),
                    "failures": s.failures_total(),
                    "dead_letters": fifo.map_or(0, |f| f.dead_letters()),
                    "dropped_queue_full": fifo.map_or(0, |f| f.dropped_full()),
                    "last_error": s.last_error(),
                }),
            )
        })
        .collect();
    let plugins: serde_json::Map<String, serde_json::Value> = state
        .pipeline
        .plugins
        .plugins()
        .iter()
        .map(|p| {
            let faults = p.stats.faults.load(std::sync::atomic::Ordering::Relaxed);
            (
                p.name.clone(),
                json!({
                    "kind": p.kind().as_str(),
                    "status": if p.stats.last_error().is_some() && faults > 0 { "degraded" } else { "ok" },
                    "faults": faults,
                    "last_error": p.stats.last_error(),
                }),
            )
        })
        .collect();
    let sources: serde_json::Map<String, serde_json::Value> = state
        .sources
        .iter()
        .map(|(name, s)| {
            use std::sync::atomic::Ordering::Relaxed;
            (
                name.clone(),
                json!({
                    "connected": s.connected(),
                    "received": s.received.load(Relaxed),
                    "accepted": s.accepted.load(Relaxed),
                    "rejected": s.rejected.load(Relaxed),
                    "last_error": s.last_error(),
                }),
            )
        })
        .collect();
    json_response(
        StatusCode::OK,
        &json!({
            "status": "ok",
            "sources": sources,
            "device_id": state.device_id,
            "uptime_seconds": state.started.elapsed().as_secs(),
            "queue": {
                "depth": q.depth,
                "bytes": q.bytes,
                "max_bytes": q.max_bytes,
                "flushes": q.flushes,
            },
            "sinks": sinks,
            "plugins": plugins,
        }),
    )
}

pub fn plugins(state: &State) -> Response<Body> {
    use std::sync::atomic::Ordering::Relaxed;
    let list: Vec<serde_json::Value> = state
        .pipeline
        .plugins
        .plugins()
        .iter()
        .map(|p| {
            let info = p.info();
            json!({
                "name": p.name,
                "kind": p.kind().as_str(),
                "version": info.version,
                "file": p.file.as_ref().map(|f| f.display().to_string()),
                "event_types": info.event_types,
                "routes": info.routes.iter().map(|r| json!({
                    "method": r.method,
                    "path": format!("/v1/plugins/{}/{}", p.name, r.path),
                })).collect::<Vec<_>>(),
                "timer_ms": p.timer().map(|t| t.as_millis() as u64),
                "instances": p.instances(),
                "calls": p.stats.calls.load(Relaxed),
                "failures": p.stats.failures.load(Relaxed),
                "faults": p.stats.faults.load(Relaxed),
                "restarts": p.stats.restarts.load(Relaxed),
                "last_error": p.stats.last_error(),
                "status": if p.stats.faults.load(Relaxed) > 0 { "degraded" } else { "ok" },
            })
        })
        .collect();
    json_response(StatusCode::OK, &json!({ "plugins": list }))
}

/// Prometheus text exposition format, version 0.0.4.
pub fn metrics(state: &State) -> Response<Body> {
    use std::sync::atomic::Ordering::Relaxed;
    let mut out = String::with_capacity(4096);
    let q = state.pipeline.queue.stats();
    let mut family = |name: &str, kind: &str, help: &str, samples: &[(String, u64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let one = |v: u64| vec![(String::new(), v)];
    family(
        "outpost_uptime_seconds",
        "gauge",
        "Seconds since start.",
        &one(state.started.elapsed().as_secs()),
    );
    family(
        "outpost_http_requests_total",
        "counter",
        "HTTP requests by status.",
        &state.metrics.by_status(),
    );
    family(
        "outpost_events_accepted_total",
        "counter",
        "Events accepted (202).",
        &one(state.metrics.accepted()),
    );
    family(
        "outpost_queue_depth",
        "gauge",
        "Messages waiting in the queue.",
        &one(q.depth),
    );
    family(
        "outpost_queue_bytes",
        "gauge",
        "Bytes waiting in the queue.",
        &one(q.bytes),
    );
    family(
        "outpost_queue_max_bytes",
        "gauge",
        "Queue capacity.",
        &one(q.max_bytes),
    );
    family(
        "outpost_queue_flushes_total",
        "counter",
        "Group-commit flushes (fsync).",
        &one(q.flushes),
    );
    family(
        "outpost_monitoring_points_dropped_total",
        "counter",
        "Monitoring points dropped because their buffer was full.",
        &one(state.points.dropped()),
    );
    family(
        "outpost_internal_outputs_dropped_total",
        "counter",
        "Timer and monitoring outputs dropped because the queue was full.",
        &one(state.pipeline.internal_drops()),
    );

    let sink = |f: &dyn Fn(&str, &crate::sinks::SinkState) -> u64| -> Vec<(String, u64)> {
        state
            .sinks
            .iter()
            .map(|(name, s)| (format!("{{sink=\"{name}\"}}"), f(name, s)))
            .collect()
    };
    let fifo = |name: &str| state.pipeline.queue.sink(name);
    family(
        "outpost_sink_connected",
        "gauge",
        "1 if the last delivery attempt reached the sink.",
        &sink(&|_, s| u64::from(s.status() == crate::sinks::SinkStatus::Connected)),
    );
    family(
        "outpost_sink_backlog",
        "gauge",
        "Messages waiting for the sink.",
        &sink(&|n, _| fifo(n).map_or(0, |f| f.depth())),
    );
    family(
        "outpost_sink_backlog_bytes",
        "gauge",
        "Bytes waiting for the sink.",
        &sink(&|n, _| fifo(n).map_or(0, |f| f.bytes())),
    );
    family(
        "outpost_sink_in_flight",
        "gauge",
        "Messages being delivered.",
        &sink(&|_, s| s.in_flight()),
    );
    family(
        "outpost_sink_delivered_total",
        "counter",
        "Messages acknowledged by the sink.",
        &sink(&|_, s| s.delivered_total()),
    );
    family(
        "outpost_sink_failures_total",
        "counter",
        "Failed delivery attempts (retried).",
        &sink(&|_, s| s.failures_total()),
    );
    family(
        "outpost_sink_dead_letters",
        "gauge",
        "Messages refused by the sink, kept in the dead-letter tree.",
        &sink(&|n, _| fifo(n).map_or(0, |f| f.dead_letters())),
    );
    family(
        "outpost_sink_dropped_total",
        "counter",
        "Messages dropped by when_full = \"drop_oldest\".",
        &sink(&|n, _| fifo(n).map_or(0, |f| f.dropped_full())),
    );

    let plugins = state.pipeline.plugins.plugins();
    let plugin = |f: &dyn Fn(&crate::plugin::LoadedPlugin) -> u64| -> Vec<(String, u64)> {
        plugins
            .iter()
            .map(|p| {
                (
                    format!("{{plugin=\"{}\",kind=\"{}\"}}", p.name, p.kind().as_str()),
                    f(p),
                )
            })
            .collect()
    };
    family(
        "outpost_plugin_calls_total",
        "counter",
        "Plugin calls.",
        &plugin(&|p| p.stats.calls.load(Relaxed)),
    );
    family(
        "outpost_plugin_failures_total",
        "counter",
        "Calls the plugin answered with an error.",
        &plugin(&|p| p.stats.failures.load(Relaxed)),
    );
    family(
        "outpost_plugin_faults_total",
        "counter",
        "Traps, panics, timeouts, out-of-memory.",
        &plugin(&|p| p.stats.faults.load(Relaxed)),
    );
    family(
        "outpost_plugin_restarts_total",
        "counter",
        "Instances re-created after a fault.",
        &plugin(&|p| p.stats.restarts.load(Relaxed)),
    );
    family(
        "outpost_plugin_call_microseconds_total",
        "counter",
        "Time spent in plugin calls.",
        &plugin(&|p| p.stats.call_micros.load(Relaxed)),
    );
    text(
        StatusCode::OK,
        "text/plain; version=0.0.4; charset=utf-8",
        out,
    )
}
