//! Assembles the agent — queue, plugins, sinks, sources, API — runs it, reloads it on
//! `SIGHUP` or `POST /v1/reload`, and shuts it down in the order that loses nothing:
//! stop accepting, finish in-flight requests, stop the producers (flushing the last
//! monitoring points), stop delivery, close plugins, flush the queue.

mod plugin_state;
mod producers;
mod running;

use std::sync::Arc;

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use crate::api::{Api, ApplyOutcome, Control, ReloadOutcome, Status};
use crate::config::Config;
use crate::config::TopicTemplates;
use crate::monitoring::PointBuffer;
use crate::pipeline::Pipeline;
use crate::plugin::{HostContext, LoadError, PluginHost, StatsFn};
use crate::queue::Queue;
use crate::server::Listeners;
use crate::shutdown::Stopper;
use crate::sinks::Sinks;
use outpost_pdk::AgentStats;
use producers::Producers;
use running::{api_settings, Fixed, Running};

/// Monitoring points held between flushes before new ones are dropped (and counted).
const POINT_BUFFER: usize = 100_000;

/// Runs the agent until SIGINT or SIGTERM.
///
/// A managed device runs the fleet's last remote config. If the agent cannot start
/// with it (its listener cannot bind, a plugin it names is gone), it starts with the
/// local file instead and reports why upstream: a device must stay reachable by its
/// fleet whatever a remote config did.
pub async fn run(local: Config) -> anyhow::Result<()> {
    let (config, remote_error) = crate::fleet::compose::effective(local.clone());
    let remote_error = remote_error.map(|e| {
        tracing::error!(error = %e,
            "the fleet's last remote config does not load; running the local file");
        e.to_string()
    });
    let from_remote = config.file != local.file;
    config.prepare_dirs()?;
    let queue = open_queue(&config).await?;
    let started = match start(config, &local.file, Arc::clone(&queue), remote_error).await {
        Err(e) if from_remote => {
            tracing::error!(error = %format!("{e:#}"),
                "cannot start with the fleet's last remote config; starting with the local file");
            local.prepare_dirs()?;
            start(local.clone(), &local.file, queue, Some(format!("{e:#}"))).await?
        }
        other => other?,
    };
    started.serve().await
}

/// The running agent, between start-up and shutdown.
struct Started {
    running: Running,
    fixed: Fixed,
    api: Arc<Api>,
    requests: mpsc::Receiver<Control>,
    stop: Stopper,
    server: tokio::task::JoinHandle<()>,
    fleet: Option<tokio::task::JoinHandle<()>>,
}

/// Loads the plugins, starts the sinks, binds the API and starts the producers and
/// fleet management for `config`.
async fn start(
    config: Config,
    local_file: &std::path::Path,
    queue: Arc<Queue>,
    remote_error: Option<String>,
) -> anyhow::Result<Started> {
    let fixed = Fixed {
        stats: agent_stats(&config, &queue),
        points: Arc::new(PointBuffer::new(&config.agent.service_name, POINT_BUFFER)),
        queue,
    };
    let plugins = Arc::new(fixed.load_plugins(&config)?);
    let topics = TopicTemplates::from_config(&config);
    let sinks = Sinks::start(&config, &fixed.sink_context(&config, &topics))?;

    let listeners = Listeners::bind(&config.agent).await?;
    tracing::info!(listen = %config.agent.listen,
        listen_unix = ?config.agent.listen_unix, device_id = %config.agent.device_id,
        sync = config.queue.sync.as_str(), "outpost listening");

    let pipeline = Pipeline::new(Arc::clone(&plugins), Arc::clone(&fixed.queue), topics);
    let producers = Producers::start(&config, &pipeline, &fixed.points)?;
    let status = Status::new(
        Arc::clone(&fixed.queue),
        Arc::clone(&fixed.points),
        &config.agent.device_id,
    );
    status.set_sinks(sinks.states());
    status.set_sources(producers.sources.clone());
    status.config.started();
    status.config.set_running(&config);
    let (control, requests) = mpsc::channel(4);
    let api = Arc::new(Api::new(pipeline, status, control, api_settings(&config)));
    let (stop, stopped) = Stopper::new();
    let server = tokio::spawn(crate::server::serve(listeners, Arc::clone(&api), stopped));
    let fleet = start_fleet(&config, local_file, &api, remote_error, &stop);
    let running = Running {
        local_file: local_file.to_owned(),
        config,
        plugins,
        sinks,
        producers,
    };
    Ok(Started {
        running,
        fixed,
        api,
        requests,
        stop,
        server,
        fleet,
    })
}

impl Started {
    /// Serves until SIGINT or SIGTERM, then shuts down in order.
    async fn serve(self) -> anyhow::Result<()> {
        let mut running = self.running;
        let (fixed, api, stop) = (self.fixed, self.api, self.stop);
        serve_until_stopped(&mut running, &fixed, &api, self.requests).await?;
        tracing::info!("shutting down: no new requests; finishing in-flight ones");
        stop.stop();
        let _ = self.server.await;
        if let Some(fleet) = self.fleet {
            // It says goodbye to its server (bounded: the server may be away).
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), fleet).await;
        }
        running.producers.stop().await;
        running.sinks.stop_all().await;
        let (plugins, queue) = (running.plugins, fixed.queue);
        tokio::task::spawn_blocking(move || {
            plugins.close();
            queue.flush_blocking()
        })
        .await?
        .context("final queue flush failed")?;
        tracing::info!("stopped; queue flushed");
        Ok(())
    }
}

/// Serves reloads (SIGHUP, the API) until SIGINT or SIGTERM.
async fn serve_until_stopped(
    running: &mut Running,
    fixed: &Fixed,
    api: &Api,
    mut requests: mpsc::Receiver<Control>,
) -> std::io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    loop {
        let reply = tokio::select! {
            r = tokio::signal::ctrl_c() => return r,
            _ = term.recv() => return Ok(()),
            _ = hangup.recv() => None,
            Some(control) = requests.recv() => match control {
                Control::Reload(reply) => Some(reply),
                Control::Apply(config, reply) => {
                    let _ = reply.send(apply(running, fixed, api, *config).await);
                    continue;
                }
            },
        };
        let outcome = reload(running, fixed, api).await;
        if let Some(reply) = reply {
            let _ = reply.send(outcome);
        }
    }
}

/// One reload, logged, counted and recorded for health.
async fn reload(running: &mut Running, fixed: &Fixed, api: &Api) -> ReloadOutcome {
    tracing::info!(file = %running.config.file.display(), "reloading config and plugins");
    match running.reload(fixed, api).await {
        Ok(restart) => {
            let generation = api.status.config.reloaded();
            if !restart.is_empty() {
                tracing::warn!(keys = ?restart, "changed keys take effect at the next restart");
            }
            tracing::info!(generation, "reloaded");
            Ok(generation)
        }
        Err(e) => {
            api.status.config.failed(&e.to_string());
            tracing::error!(error = %e, "reload refused; the running config and plugins stay");
            Err(e)
        }
    }
}

/// Switches to a config the fleet server sent (composed with the local file), logged
/// and recorded for health like a reload.
async fn apply(running: &mut Running, fixed: &Fixed, api: &Api, config: Config) -> ApplyOutcome {
    tracing::info!(file = %config.file.display(), "applying the fleet's remote config");
    let outcome = running.switch(fixed, api, config).await;
    match &outcome {
        Ok(restart) => {
            let generation = api.status.config.reloaded();
            if !restart.is_empty() {
                tracing::warn!(keys = ?restart, "changed keys take effect at the next restart");
            }
            tracing::info!(generation, "remote config running");
        }
        Err(e) => {
            api.status.config.failed(&e.to_string());
            tracing::error!(error = %e, "remote config refused; the running config and plugins stay");
        }
    }
    outcome
}

/// Starts fleet management if the config has `[fleet]` (and this build the feature).
/// A client that cannot start is logged: the agent runs on without it.
fn start_fleet(
    config: &Config,
    local_file: &std::path::Path,
    api: &Arc<Api>,
    remote_error: Option<String>,
    stop: &Stopper,
) -> Option<tokio::task::JoinHandle<()>> {
    config.fleet.as_ref()?;
    #[cfg(feature = "fleet")]
    {
        let started = crate::fleet::start(
            config,
            local_file.to_owned(),
            Arc::clone(api),
            remote_error,
            stop.subscribe(),
        );
        match started {
            Ok(task) => Some(task),
            Err(e) => {
                tracing::error!(error = %e, "fleet management cannot start; the agent runs without it");
                None
            }
        }
    }
    #[cfg(not(feature = "fleet"))]
    {
        let _ = (local_file, api, remote_error, stop);
        None
    }
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

/// Validates the config and loads every plugin (into a throw-away store), as `run`
/// would, without touching the data dir's queue.
pub fn check(config: &Config) -> Result<Vec<String>, LoadError> {
    let host = PluginHost::load(config, HostContext::detached(config))?;
    crate::sources::check_wiring(config, &host)?;
    Ok(host
        .plugins()
        .iter()
        .map(|p| format!("{} ({}, {})", p.name, p.kind().as_str(), p.info().version))
        .collect())
}
