//! What one config runs — its plugins, sinks and producers — and how a reload replaces
//! it while the queue and the API stay up.
//!
//! A reload first builds and checks everything new (config, plugins, wiring, sink
//! transports): any error leaves the running set untouched. Then it stops the old
//! producers, swaps the plugin set (requests in flight finish on the old one), restarts
//! the sinks whose config changed, closes the old plugins once idle, and has the new
//! ones start their instances afresh, from the state the old ones left in their
//! key-value stores.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::producers::Producers;
use crate::api::{Api, ApiSettings, ReloadError};
use crate::config::Config;
use crate::config::TopicTemplates;
use crate::monitoring::PointBuffer;
use crate::pipeline::PluginSet;
use crate::plugin::{HostContext, LoadError, PluginHost, StatsFn};
use crate::queue::Queue;
use crate::sinks::{PreparedSink, SetupError, SinkContext, Sinks};

/// How long a reload waits for requests on the old plugin set before closing it.
const OLD_SET_GRACE: Duration = Duration::from_secs(30);

/// The parts that a config runs and a reload replaces.
pub(super) struct Running {
    /// The device's own config file (a fleet's remote config is composed with it).
    pub local_file: std::path::PathBuf,
    pub config: Config,
    pub plugins: Arc<PluginHost>,
    pub sinks: Sinks,
    pub producers: Producers,
}

/// What stays across reloads.
#[derive(Clone)]
pub(super) struct Fixed {
    pub queue: Arc<Queue>,
    pub points: Arc<PointBuffer>,
    pub stats: StatsFn,
}

impl Fixed {
    /// Loads the plugins of `config` (blocking: compiles WASM) and checks how sources
    /// feed them.
    pub fn load_plugins(&self, config: &Config) -> Result<PluginHost, LoadError> {
        let cx = HostContext {
            kv: Arc::new(self.queue.kv_stores()),
            points: Arc::clone(&self.points),
            stats: Arc::clone(&self.stats),
        };
        let host = PluginHost::load(config, cx)?;
        crate::sources::check_wiring(config, &host)?;
        Ok(host)
    }

    pub fn sink_context<'a>(
        &'a self,
        config: &'a Config,
        topics: &'a TopicTemplates,
    ) -> SinkContext<'a> {
        SinkContext {
            queue: &self.queue,
            topics,
            device_id: &config.agent.device_id,
        }
    }
}

/// The API settings of `config`.
pub(super) fn api_settings(config: &Config) -> ApiSettings {
    ApiSettings {
        auth_token: config.agent.auth_token.clone(),
        limits: config.agent.limits,
    }
}

impl Running {
    /// Re-reads the config (the local file, with the fleet's last remote config if it
    /// has one) and the plugins, and swaps them in. On error nothing changed. Returns
    /// the keys whose change needs a restart to take effect.
    pub async fn reload(
        &mut self,
        fixed: &Fixed,
        api: &Api,
    ) -> Result<Vec<&'static str>, ReloadError> {
        let (config, remote_error) =
            crate::fleet::compose::effective(Config::load(&self.local_file)?);
        if let Some(e) = remote_error {
            tracing::error!(error = %e, "the fleet's remote config does not load; using the local file");
        }
        self.switch(fixed, api, config).await
    }

    /// Swaps in `config` (already parsed and checked) with its plugins. On error
    /// nothing changed.
    pub async fn switch(
        &mut self,
        fixed: &Fixed,
        api: &Api,
        mut config: Config,
    ) -> Result<Vec<&'static str>, ReloadError> {
        let restart = keep_fixed(&self.config, &mut config);
        let plugins = {
            let (fixed, config) = (fixed.clone(), config.clone());
            tokio::task::spawn_blocking(move || fixed.load_plugins(&config)).await??
        };
        let plugins = Arc::new(plugins);
        let topics = TopicTemplates::from_config(&config);
        let prepared = self.prepare_sinks(fixed, &config, &topics)?;

        // Everything new is ready: swap.
        let old = std::mem::replace(&mut self.producers, Producers::idle());
        old.stop().await;
        let old_set = api.pipeline.replace(PluginSet {
            plugins: Arc::clone(&plugins),
            topics,
        });
        self.restart_sinks(&config, prepared).await;
        retire(old_set, Arc::clone(&plugins)).await;
        self.producers = Producers::start(&config, &api.pipeline, &fixed.points)?;
        api.status.set_sinks(self.sinks.states());
        api.status.set_sources(self.producers.sources.clone());
        api.set_settings(api_settings(&config));
        api.status.config.set_running(&config);
        self.plugins = plugins;
        self.config = config;
        Ok(restart)
    }

    /// Builds the sinks that are new or changed in `config` (not started yet).
    fn prepare_sinks(
        &self,
        fixed: &Fixed,
        config: &Config,
        topics: &TopicTemplates,
    ) -> Result<Vec<PreparedSink>, SetupError> {
        let context = fixed.sink_context(config, topics);
        let mut prepared = Vec::new();
        for (name, sink) in &config.sinks {
            let running = self.sinks.get(name);
            if running.is_some_and(|r| r.config.written == sink.written) {
                continue;
            }
            match PreparedSink::prepare(name, sink, &context, running.map(|r| Arc::clone(&r.state)))
            {
                Ok(p) => prepared.push(p),
                Err(e) => {
                    prepared.into_iter().for_each(PreparedSink::discard);
                    return Err(e);
                }
            }
        }
        Ok(prepared)
    }

    /// Stops the removed and changed sinks, then starts the new and changed ones.
    async fn restart_sinks(&mut self, config: &Config, prepared: Vec<PreparedSink>) {
        let gone: Vec<String> = self
            .sinks
            .names()
            .into_iter()
            .filter(|n| !config.sinks.contains_key(n) || prepared.iter().any(|p| p.name() == n))
            .collect();
        for name in gone {
            if let Some(sink) = self.sinks.take(&name) {
                sink.stop().await;
                if !config.sinks.contains_key(&name) {
                    tracing::info!(sink = %name, "sink removed; its messages stay queued");
                }
            }
        }
        for p in prepared {
            let (name, running) = p.start();
            tracing::info!(sink = %name, "sink (re)started");
            self.sinks.insert(name, running);
        }
    }
}

/// Closes the previous plugin set once no request holds it any more (or after a
/// grace period), then has `new` start its instances afresh.
async fn retire(old: Arc<PluginSet>, new: Arc<PluginHost>) {
    let began = Instant::now();
    while Arc::strong_count(&old) > 1 && began.elapsed() < OLD_SET_GRACE {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let closed = tokio::task::spawn_blocking(move || {
        old.plugins.close();
        new.restart_instances();
    })
    .await;
    if let Err(e) = closed {
        tracing::error!(error = %e, "closing the previous plugins failed");
    }
}

/// Keeps in `new` what a reload cannot change while running (the listener, the data
/// dir and queue, the device id, the logger) as it is in `old`; returns the keys whose
/// new values wait for a restart.
fn keep_fixed(old: &Config, new: &mut Config) -> Vec<&'static str> {
    let mut keys = Vec::new();
    let (a, b) = (&old.agent, &mut new.agent);
    if a.listen != b.listen {
        keys.push("agent.listen");
        b.listen = a.listen.clone();
    }
    if a.listen_unix != b.listen_unix {
        keys.push("agent.listen_unix");
        b.listen_unix = a.listen_unix.clone();
    }
    if a.data_dir != b.data_dir {
        keys.push("agent.data_dir");
        b.data_dir = a.data_dir.clone();
    }
    if a.device_id != b.device_id {
        keys.push("agent.device_id");
        b.device_id = a.device_id.clone();
    }
    if a.service_name != b.service_name {
        keys.push("agent.service_name");
        b.service_name = a.service_name.clone();
    }
    let (q, r) = (&old.queue, &new.queue);
    let queue_changed = q.max_bytes != r.max_bytes
        || q.when_full != r.when_full
        || q.cache_mb != r.cache_mb
        || q.min_free_bytes != r.min_free_bytes
        || q.sync != r.sync
        || q.sync_interval != r.sync_interval;
    if queue_changed {
        keys.push("queue");
        new.queue = old.queue.clone();
    }
    if old.fleet != new.fleet {
        keys.push("fleet");
        new.fleet = old.fleet.clone();
    }
    if old.log.format != new.log.format {
        keys.push("log.format");
        new.log = old.log.clone();
    }
    keys
}
