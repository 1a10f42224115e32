//! Assembles the agent — queue, plugins, sinks, ingest — runs it, and shuts it down in
//! the order that loses nothing: stop accepting, finish in-flight requests, flush the
//! last monitoring points, stop delivery, close plugins, flush the queue.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Config;
use crate::ingest::{self, Metrics, State};
use crate::monitoring::PointBuffer;
use crate::pipeline::{run_monitoring_flusher, start_timers, Pipeline};
use crate::plugin::{HostHooks, LoadError, PluginHost};
use crate::queue::Queue;
use crate::sinks::{Sinks, TopicTemplates};
use outpost_pdk::AgentStats;

/// Monitoring points held between flushes before new ones are dropped (and counted).
const POINT_BUFFER: usize = 100_000;

/// Environment variable that overrides `agent.auth_token`.
pub const AUTH_TOKEN_ENV: &str = "OUTPOST_AUTH_TOKEN";

/// Runs the agent until SIGINT or SIGTERM.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let (stop, stopped) = watch::channel(false);
    let queue = Arc::new(
        Queue::open(
            &config.agent.data_dir,
            &config.queue,
            config.sinks.keys().map(String::as_str),
        )
        .with_context(|| {
            format!(
                "cannot open the queue in {}",
                config.agent.data_dir.display()
            )
        })?,
    );
    let stats = queue.stats();
    tracing::info!(depth = stats.depth, bytes = stats.bytes, "queue opened");

    let points = Arc::new(PointBuffer::new(&config.agent.service_name, POINT_BUFFER));
    let hooks = {
        let (q, device_id) = (Arc::clone(&queue), config.agent.device_id.clone());
        let data_dir = config.agent.data_dir.display().to_string();
        let flusher = Arc::clone(&queue);
        HostHooks {
            stats: Arc::new(move || {
                let s = q.stats();
                AgentStats {
                    device_id: device_id.clone(),
                    data_dir: data_dir.clone(),
                    queue_depth: s.depth,
                    queue_bytes: s.bytes,
                }
            }),
            kv_written: Arc::new(move || flusher.flush_soon()),
        }
    };
    let plugins = Arc::new(PluginHost::load(
        &config,
        queue.db(),
        Arc::clone(&points),
        hooks,
    )?);
    let sinks = Sinks::start(&config, &queue, &stopped)?;

    let addr = config.agent.listen_addr();
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (agent.listen)"))?;
    tracing::info!(%addr, device_id = %config.agent.device_id, "outpost listening");

    let auth_token = std::env::var(AUTH_TOKEN_ENV)
        .ok()
        .filter(|t| !t.is_empty())
        .or_else(|| config.agent.auth_token.clone());
    let pipeline = Pipeline {
        plugins: Arc::clone(&plugins),
        queue: Arc::clone(&queue),
        topics: Arc::new(TopicTemplates::from_config(&config)),
        internal_drops: Arc::default(),
    };
    let timers = start_timers(&pipeline, &stopped);
    let (source_states, sources) = crate::sources::start(&config, &pipeline, &stopped)?;
    let flusher = tokio::spawn(run_monitoring_flusher(
        Arc::clone(&points),
        pipeline.clone(),
        Duration::from_millis(config.plugins.monitoring_flush_ms),
        stopped.clone(),
    ));
    let state = Arc::new(State {
        pipeline,
        sources: source_states,
        sinks: sinks.states().clone(),
        points: Arc::clone(&points),
        metrics: Metrics::default(),
        auth_token,
        max_body_bytes: config.agent.max_body_bytes,
        device_id: config.agent.device_id.clone(),
        started: Instant::now(),
    });
    let server = tokio::spawn(ingest::serve(
        listener,
        state,
        Duration::from_millis(config.agent.header_read_timeout_ms),
        stopped.clone(),
    ));

    wait_for_signal().await;
    tracing::info!("shutting down: no new requests; finishing in-flight ones");
    let _ = stop.send(true);
    let _ = server.await;
    for task in timers.into_iter().chain(sources) {
        let _ = task.await;
    }
    let _ = flusher.await;
    sinks.join().await;
    let (p, q) = (Arc::clone(&plugins), Arc::clone(&queue));
    tokio::task::spawn_blocking(move || {
        p.close();
        q.flush_blocking()
    })
    .await?
    .context("final queue flush failed")?;
    tracing::info!("stopped; queue flushed");
    Ok(())
}

/// Validates the config and loads every plugin (into a throw-away store), as `run`
/// would, without touching the data dir's queue.
pub fn check(config: &Config) -> Result<Vec<String>, LoadError> {
    let db = sled::Config::new().temporary(true).open()?;
    let points = Arc::new(PointBuffer::new(&config.agent.service_name, 1));
    let host = PluginHost::load(config, &db, points, HostHooks::default())?;
    Ok(host
        .plugins()
        .iter()
        .map(|p| format!("{} ({}, {})", p.name, p.kind().as_str(), p.info().version))
        .collect())
}

async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("cannot install the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
