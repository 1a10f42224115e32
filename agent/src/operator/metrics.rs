//! `GET /metrics`: Prometheus text exposition format 0.0.4, written from tables — one
//! row per metric family (name, type, help, how to read it) — so adding a figure is one
//! line and every family is written the same way.

use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use hyper::{Response, StatusCode};

use crate::api::{text, Api, Body};
use crate::plugin::LoadedPlugin;
use crate::queue::{SinkQueue, StorageState};
use crate::sinks::{SinkState, SinkStatus};
use crate::sources::{SourceState, SourceStatus};
use Kind::{Counter, Gauge};

#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
}

/// One metric family and how to read its value from a `T`.
struct Family<T: ?Sized> {
    name: &'static str,
    kind: Kind,
    help: &'static str,
    value: fn(&T) -> u64,
}

const fn family<T: ?Sized>(
    kind: Kind,
    name: &'static str,
    help: &'static str,
    value: fn(&T) -> u64,
) -> Family<T> {
    Family {
        name,
        kind,
        help,
        value,
    }
}

const AGENT: &[Family<Api>] = &[
    family(
        Gauge,
        "outpost_uptime_seconds",
        "Seconds since start.",
        |a| a.status.started.elapsed().as_secs(),
    ),
    family(
        Counter,
        "outpost_events_accepted_total",
        "Events accepted (202).",
        |a| a.counters.accepted(),
    ),
    family(
        Gauge,
        "outpost_queue_depth",
        "Messages waiting in the queue.",
        |a| a.status.queue.stats().depth,
    ),
    family(
        Gauge,
        "outpost_queue_bytes",
        "Bytes waiting in the queue.",
        |a| a.status.queue.stats().bytes,
    ),
    family(Gauge, "outpost_queue_max_bytes", "Queue capacity.", |a| {
        a.status.queue.stats().max_bytes
    }),
    family(
        Counter,
        "outpost_queue_commits_total",
        "Group commits (requests per commit shows how well commits group).",
        |a| a.status.queue.stats().commits,
    ),
    family(
        Counter,
        "outpost_queue_syncs_total",
        "fdatasyncs of the journals (one per group commit with queue.sync = \"always\").",
        |a| a.status.queue.stats().syncs,
    ),
    family(
        Gauge,
        "outpost_storage_free_bytes",
        "Free bytes on the data dir's filesystem (0 when it reports no size).",
        |a| a.status.queue.storage().free_bytes.unwrap_or(0),
    ),
    family(
        Gauge,
        "outpost_storage_reserve_bytes",
        "Free bytes kept in reserve (queue.min_free_bytes); below it new work gets 507.",
        |a| a.status.queue.storage().reserve_bytes,
    ),
    family(
        Gauge,
        "outpost_queue_disk_bytes",
        "The queue's files on disk (database and payload segments).",
        |a| a.status.queue.storage().disk_bytes,
    ),
    family(
        Gauge,
        "outpost_queue_used_bytes",
        "What the queue counts against max_bytes.",
        |a| a.status.queue.storage().used_bytes,
    ),
    family(
        Counter,
        "outpost_queue_reopens_total",
        "Times the queue database was reopened (after a write failure, or compacted).",
        |a| a.status.queue.storage().reopens,
    ),
    family(
        Gauge,
        "outpost_config_generation",
        "The config generation running (1 at start, +1 per successful reload).",
        |a| a.status.config.view().generation,
    ),
    family(
        Counter,
        "outpost_config_reloads_total",
        "Successful reloads (SIGHUP or POST /v1/reload).",
        |a| a.status.config.reloads.load(Relaxed),
    ),
    family(
        Counter,
        "outpost_config_reload_failures_total",
        "Reloads refused (invalid config or plugin); the running set stayed.",
        |a| a.status.config.reload_failures.load(Relaxed),
    ),
    family(
        Counter,
        "outpost_dead_letters_replayed_total",
        "Dead letters put back into their sink's FIFO by an operator.",
        |a| a.status.replayed.load(Relaxed),
    ),
    family(
        Counter,
        "outpost_dead_letters_purged_total",
        "Dead letters deleted by an operator.",
        |a| a.status.purged.load(Relaxed),
    ),
    family(
        Counter,
        "outpost_monitoring_points_dropped_total",
        "Monitoring points dropped because their buffer was full.",
        |a| a.status.points.dropped(),
    ),
    family(
        Counter,
        "outpost_internal_outputs_dropped_total",
        "Timer and monitoring outputs dropped because the queue refused them.",
        |a| a.pipeline.internal_drops(),
    ),
];

/// A sink as the metrics see it: its delivery state and its FIFO.
struct SinkView {
    state: Arc<SinkState>,
    fifo: Option<Arc<SinkQueue>>,
}

const SINKS: &[Family<SinkView>] = &[
    family(
        Gauge,
        "outpost_sink_connected",
        "1 if the last delivery attempt reached the sink.",
        |s| u64::from(s.state.status() == SinkStatus::Connected),
    ),
    family(
        Gauge,
        "outpost_sink_backlog",
        "Messages waiting for the sink.",
        |s| s.fifo.as_ref().map_or(0, |f| f.depth()),
    ),
    family(
        Gauge,
        "outpost_sink_backlog_bytes",
        "Bytes waiting for the sink.",
        |s| s.fifo.as_ref().map_or(0, |f| f.bytes()),
    ),
    family(
        Gauge,
        "outpost_sink_in_flight",
        "Messages being delivered.",
        |s| s.state.in_flight(),
    ),
    family(
        Counter,
        "outpost_sink_delivered_total",
        "Messages acknowledged by the sink.",
        |s| s.state.delivered_total(),
    ),
    family(
        Counter,
        "outpost_sink_failures_total",
        "Failed delivery attempts (retried).",
        |s| s.state.failures_total(),
    ),
    family(
        Gauge,
        "outpost_sink_dead_letters",
        "Messages refused by the sink, kept in the dead-letter tree.",
        |s| s.fifo.as_ref().map_or(0, |f| f.dead_letters()),
    ),
    family(
        Counter,
        "outpost_sink_expired_total",
        "Messages dropped because they were older than max_age.",
        |s| s.state.expired_total(),
    ),
    family(
        Counter,
        "outpost_sink_dropped_total",
        "Messages dropped by when_full = \"drop_oldest\".",
        |s| s.fifo.as_ref().map_or(0, |f| f.dropped_full()),
    ),
];

const SOURCES: &[Family<SourceState>] = &[
    family(
        Gauge,
        "outpost_source_connected",
        "1 if the source is connected (and subscribed).",
        |s| u64::from(s.status() == SourceStatus::Connected),
    ),
    family(
        Counter,
        "outpost_source_received_total",
        "Messages taken from the source.",
        |s| s.received.load(Relaxed),
    ),
    family(
        Counter,
        "outpost_source_acked_total",
        "Messages acknowledged to the source once durable.",
        |s| s.acked.load(Relaxed),
    ),
    family(
        Counter,
        "outpost_source_rejected_total",
        "Messages refused by their plugin (or not events), handed back the source's way.",
        |s| s.rejected.load(Relaxed),
    ),
    family(
        Counter,
        "outpost_source_redelivered_total",
        "Messages received again after a delivery that was not acknowledged.",
        |s| s.redelivered.load(Relaxed),
    ),
    family(
        Counter,
        "outpost_source_dropped_total",
        "Messages not stored where the source cannot keep them (Redis pub/sub, queue full).",
        |s| s.dropped.load(Relaxed),
    ),
];

const PLUGINS: &[Family<LoadedPlugin>] = &[
    family(
        Counter,
        "outpost_plugin_calls_total",
        "Plugin calls.",
        |p| p.stats.calls.load(Relaxed),
    ),
    family(
        Counter,
        "outpost_plugin_failures_total",
        "Calls the plugin answered with an error.",
        |p| p.stats.failures.load(Relaxed),
    ),
    family(
        Counter,
        "outpost_plugin_faults_total",
        "Traps, panics, timeouts, out-of-memory.",
        |p| p.stats.faults.load(Relaxed),
    ),
    family(
        Counter,
        "outpost_plugin_restarts_total",
        "Instances re-created after a fault.",
        |p| p.stats.restarts.load(Relaxed),
    ),
    family(
        Counter,
        "outpost_plugin_call_microseconds_total",
        "Time spent in plugin calls.",
        |p| p.stats.call_micros.load(Relaxed),
    ),
];

/// Writes a family's `# HELP` and `# TYPE` lines.
fn header(out: &mut String, name: &str, kind: Kind, help: &str) {
    let kind = match kind {
        Kind::Counter => "counter",
        Kind::Gauge => "gauge",
    };
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Writes `family`'s header and one sample per `(labels, item)`.
fn write<'a, T: 'a + ?Sized>(
    out: &mut String,
    family: &Family<T>,
    samples: impl IntoIterator<Item = (String, &'a T)>,
) {
    header(out, family.name, family.kind, family.help);
    for (labels, item) in samples {
        let _ = writeln!(out, "{}{labels} {}", family.name, (family.value)(item));
    }
}

pub fn metrics(api: &Api) -> Response<Body> {
    let mut out = String::with_capacity(4096);
    agent(&mut out, api);
    sinks(&mut out, api);
    sources(&mut out, api);
    plugins(&mut out, api);
    text(
        StatusCode::OK,
        "text/plain; version=0.0.4; charset=utf-8",
        out,
    )
}

/// The agent-wide families, the storage state and the requests by status.
fn agent(out: &mut String, api: &Api) {
    for family in AGENT {
        write(out, family, [(String::new(), api)]);
    }
    let state = api.status.queue.storage().state;
    let name = "outpost_storage_state";
    header(
        out,
        name,
        Gauge,
        "The storage state (1 for the current one).",
    );
    for s in [
        StorageState::Ok,
        StorageState::Low,
        StorageState::Full,
        StorageState::Failed,
        StorageState::UnknownSize,
    ] {
        let _ = writeln!(
            out,
            "{name}{{state=\"{}\"}} {}",
            s.as_str(),
            u64::from(s == state)
        );
    }
    let name = "outpost_http_requests_total";
    header(out, name, Counter, "HTTP requests by status.");
    for (status, n) in api.counters.by_status() {
        let _ = writeln!(out, "{name}{{status=\"{status}\"}} {n}");
    }
}

fn sinks(out: &mut String, api: &Api) {
    let sinks: Vec<(String, SinkView)> = api
        .status
        .sinks()
        .iter()
        .map(|(name, state)| {
            let view = SinkView {
                state: Arc::clone(state),
                fifo: api.status.queue.sink(name),
            };
            (format!("{{sink=\"{name}\"}}"), view)
        })
        .collect();
    for family in SINKS {
        write(out, family, sinks.iter().map(|(l, s)| (l.clone(), s)));
    }
}

fn sources(out: &mut String, api: &Api) {
    let sources = api.status.sources();
    for family in SOURCES {
        let samples = sources.iter().map(|(name, state)| {
            let labels = format!("{{source=\"{name}\",kind=\"{}\"}}", state.kind);
            (labels, &**state)
        });
        write(out, family, samples);
    }
}

fn plugins(out: &mut String, api: &Api) {
    let host = api.pipeline.plugins();
    for family in PLUGINS {
        let samples = host.plugins().iter().map(|p| {
            let labels = format!("{{plugin=\"{}\",kind=\"{}\"}}", p.name, p.kind().as_str());
            (labels, &**p)
        });
        write(out, family, samples);
    }
}
