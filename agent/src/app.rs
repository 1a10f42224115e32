//! Assembles the agent — queue, plugins, sinks, sources, API — runs it, and shuts it
//! down in the order that loses nothing: stop accepting, finish in-flight requests,
//! flush the last monitoring points, stop delivery, close plugins, flush the queue.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::monitoring::PointBuffer;
use crate::operator::Status;
use crate::pipeline::{run_monitoring_flusher, start_timers, Pipeline};
use crate::plugin::{HostContext, LoadError, PluginHost, StatsFn};
use crate::queue::Queue;
use crate::server::{Api, ApiCounters};
use crate::sinks::{Sinks, TopicTemplates};
use outpost_pdk::AgentStats;

/// Monitoring points held between flushes before new ones are dropped (and counted).
const POINT_BUFFER: usize = 100_000;

/// Runs the agent until SIGINT or SIGTERM.
pub async fn run(config: Config) -> anyhow::Result<()> {
    config.prepare_dirs()?;
    let (stop, stopped) = watch::channel(false);
    let queue = open_queue(&config).await?;
    let points = Arc::new(PointBuffer::new(&config.agent.service_name, POINT_BUFFER));
    let plugins = Arc::new(PluginHost::load(
        &config,
        HostContext {
            kv: queue.kv_stores(),
            points: Arc::clone(&points),
            stats: agent_stats(&config, &queue),
        },
    )?);
    crate::sources::check_wiring(&config, &plugins).map_err(LoadError::from)?;
    let topics = TopicTemplates::from_config(&config);
    let sinks = Sinks::start(&config, &queue, &topics, &stopped)?;

    let addr = config.agent.listen;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (agent.listen)"))?;
    tracing::info!(%addr, device_id = %config.agent.device_id, "outpost listening");

    let pipeline = Pipeline::new(Arc::clone(&plugins), Arc::clone(&queue), topics);
    let mut producers = start_timers(&pipeline, &stopped);
    let (source_states, sources) = crate::sources::start(&config, &pipeline, &stopped)?;
    producers.extend(sources);
    let flusher = tokio::spawn(run_monitoring_flusher(
        Arc::clone(&points),
        pipeline.clone(),
        config.plugins.monitoring_flush,
        stopped.clone(),
    ));
    let api = Arc::new(Api {
        pipeline,
        status: Status {
            queue: Arc::clone(&queue),
            sinks: sinks.states().clone(),
            sources: source_states,
            points,
            device_id: config.agent.device_id.clone(),
            started: Instant::now(),
        },
        counters: ApiCounters::default(),
        auth_token: config.agent.auth_token.clone(),
        limits: config.agent.limits,
    });
    let server = tokio::spawn(crate::server::serve(listener, api, stopped.clone()));

    wait_for_signal().await?;
    tracing::info!("shutting down: no new requests; finishing in-flight ones");
    let _ = stop.send(true);
    shut_down(server, producers, flusher, sinks, plugins, queue).await
}

/// Opens the queue in the data dir for the configured sinks. On a full disk (sled
/// writes a snapshot when it opens) it waits for room instead of giving up: a device
/// nobody can log into must come back by itself.
async fn open_queue(config: &Config) -> anyhow::Result<Arc<Queue>> {
    let dir = &config.agent.data_dir;
    let sinks = || config.sinks.keys().map(String::as_str);
    let queue = loop {
        match Queue::open(dir, &config.queue, sinks()) {
            Err(e) if e.is_out_of_space() => {
                tracing::error!(error = %e, dir = %dir.display(),
                    "cannot open the queue: the disk is full; trying again in 10 s");
                tokio::time::sleep(std::time::Duration::from_secs(10)).await;
            }
            other => {
                break other
                    .with_context(|| format!("cannot open the queue in {}", dir.display()))?
            }
        }
    };
    let stats = queue.stats();
    tracing::info!(depth = stats.depth, bytes = stats.bytes, "queue opened");
    Ok(Arc::new(queue))
}

/// The figures `outpost_agent_stats` gives plugins.
fn agent_stats(config: &Config, queue: &Arc<Queue>) -> StatsFn {
    let (queue, device_id) = (Arc::clone(queue), config.agent.device_id.clone());
    let data_dir = config.agent.data_dir.display().to_string();
    Arc::new(move || {
        let s = queue.stats();
        AgentStats {
            device_id: device_id.clone(),
            data_dir: data_dir.clone(),
            queue_depth: s.depth,
            queue_bytes: s.bytes,
        }
    })
}

/// After the stop signal: waits for each part in the order that loses nothing.
async fn shut_down(
    server: JoinHandle<()>,
    producers: Vec<JoinHandle<()>>,
    flusher: JoinHandle<()>,
    sinks: Sinks,
    plugins: Arc<PluginHost>,
    queue: Arc<Queue>,
) -> anyhow::Result<()> {
    let _ = server.await;
    for task in producers {
        let _ = task.await;
    }
    let _ = flusher.await;
    sinks.join().await;
    tokio::task::spawn_blocking(move || {
        plugins.close();
        queue.flush_blocking()
    })
    .await?
    .context("final queue flush failed")?;
    tracing::info!("stopped; queue flushed");
    Ok(())
}

/// Validates the config and loads every plugin (into a throw-away store), as `run`
/// would, without touching the data dir's queue.
pub fn check(config: &Config) -> Result<Vec<String>, LoadError> {
    let host = PluginHost::load(config, HostContext::detached(config)?)?;
    crate::sources::check_wiring(config, &host)?;
    Ok(host
        .plugins()
        .iter()
        .map(|p| format!("{} ({}, {})", p.name, p.kind().as_str(), p.info().version))
        .collect())
}

async fn wait_for_signal() -> std::io::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r,
        _ = term.recv() => Ok(()),
    }
}
