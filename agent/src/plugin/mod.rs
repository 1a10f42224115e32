//! The plugin host: resolves `[plugins] active` to WASM or native plugins, loads them,
//! and calls them in config order.

mod forward;
mod instance;
mod loaded;
mod native;
mod services;
mod wasm;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use outpost_pdk::{EventType, Message, Output, Point, RouteRequest, RouteResponse, SourceMessage};

pub use instance::{CallError, FaultKind, PluginKind, SendingInput};
pub use loaded::{LoadedPlugin, PluginError, PluginHealth};
pub use services::{KvStore, KvStores, MemoryKv, PluginServices, StatsFn};
pub use wasm::{compile, default_output as compiled_path, CompileError, DescribeError};

use crate::config::Config;
use crate::monitoring::PointBuffer;
use outpost_pdk::kv::KvError;

/// Why plugins could not be loaded; names the plugin and its file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("plugin `{plugin}`{}: {reason}", file.as_ref().map(|f| format!(" ({})", f.display())).unwrap_or_default())]
    Plugin {
        plugin: String,
        file: Option<PathBuf>,
        reason: LoadFailure,
    },
    #[error("plugin `{plugin}`: its key-value store: {error}")]
    Kv { plugin: String, error: KvError },
    /// The plugins load, but the config wires them wrongly (e.g. a source feeding a
    /// plugin that does not take what it sends).
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

/// What went wrong loading one plugin.
#[derive(Debug, thiserror::Error)]
pub enum LoadFailure {
    #[error("no such file (nor {name}.{ext}), and no built-in plugin of that name", ext = wasm::PRECOMPILED_EXTENSION)]
    NotFound { name: String },
    #[error("cannot set up the compiled-plugin cache: {0}")]
    Cache(std::io::Error),
    #[error(transparent)]
    Engine(#[from] wasm::EngineError),
    #[error(transparent)]
    Module(#[from] wasm::ModuleError),
    #[error("cannot link: {0:#}")]
    Link(wasmtime::Error),
    /// A `wasm32-wasip1` plugin in a build without WASI (the camera build leaves it
    /// out for size): said as such, not as an unknown import.
    #[error("it is built for wasm32-wasip1 (it imports `wasi_snapshot_preview1`), and this agent was built without WASI: build the agent with the cargo feature `wasi`, or the plugin for wasm32-unknown-unknown")]
    NoWasi,
    #[error("its settings: {0}")]
    Settings(serde_json::Error),
    #[error(transparent)]
    Describe(#[from] DescribeError),
    #[error("initialize failed: {0}")]
    Initialize(CallError),
}

/// Most bytes of a message's topic, key, content type and headers: they are stored in
/// the queue's database, which must keep its values small.
const MAX_MESSAGE_META: usize = 16 << 10;

/// Total size cap of one plugin's key-value store.
const KV_MAX_BYTES: u64 = 1 << 20;

/// The loaded plugins.
pub struct PluginHost {
    plugins: Vec<Arc<LoadedPlugin>>,
    sinks: BTreeSet<String>,
    points: Arc<PointBuffer>,
}

/// What loading needs besides the config: where plugins keep their state, where
/// their points go, and the agent's figures for `outpost_agent_stats`.
pub struct HostContext {
    pub kv: Arc<dyn KvStores>,
    pub points: Arc<PointBuffer>,
    pub stats: StatsFn,
}

impl HostContext {
    /// A context of its own: key-value stores in memory, no agent figures (`outpost
    /// check`, tests and benchmarks of the plugin host).
    pub fn detached(config: &Config) -> Self {
        HostContext {
            kv: Arc::new(MemoryKv::default()),
            points: Arc::new(PointBuffer::new(&config.agent.service_name, 1)),
            stats: Arc::new(outpost_pdk::AgentStats::default),
        }
    }
}

impl PluginHost {
    /// Loads every active plugin: `<dir>/<name>.cwasm` (precompiled) or
    /// `<dir>/<name>.wasm` if one exists, else the built-in native plugin of that name.
    /// Any failure stops start-up (and `outpost check`).
    pub fn load(config: &Config, cx: HostContext) -> Result<Self, LoadError> {
        let loader = wasm::Loader::new(&config.agent.data_dir).map_err(|e| LoadError::Plugin {
            plugin: "*".into(),
            file: Some(config.agent.data_dir.join("wasm-cache")),
            reason: LoadFailure::Cache(e),
        })?;
        let plugins = config
            .plugins
            .active
            .iter()
            .map(|name| load_one(config, name, &cx, &loader).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        let host = PluginHost {
            plugins,
            sinks: config.sinks.keys().cloned().collect(),
            points: cx.points,
        };
        host.points
            .set_enabled(host.subscribed(EventType::MonitoringEvent).next().is_some());
        Ok(host)
    }

    /// All plugins, in config order.
    pub fn plugins(&self) -> &[Arc<LoadedPlugin>] {
        &self.plugins
    }

    /// The plugin called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<LoadedPlugin>> {
        self.plugins.iter().find(|p| p.name == name)
    }

    fn subscribed(&self, event_type: EventType) -> impl Iterator<Item = &Arc<LoadedPlugin>> {
        self.plugins
            .iter()
            .filter(move |p| p.info().event_types.contains(&event_type))
    }

    /// Checks that every message goes to a configured sink; an unknown sink is the
    /// plugin's error.
    fn checked(&self, output: Output) -> Result<Output, CallError> {
        for m in &output.messages {
            if !self.sinks.contains(m.sink.as_str()) {
                return Err(CallError::UnknownSink(m.sink.clone()));
            }
            let meta = m.topic.as_ref().map_or(0, String::len)
                + m.key.as_ref().map_or(0, String::len)
                + m.content_type.as_ref().map_or(0, String::len)
                + m.headers
                    .iter()
                    .map(|(k, v)| k.len() + v.len())
                    .sum::<usize>();
            if meta > MAX_MESSAGE_META {
                return Err(CallError::MetadataTooLarge(meta));
            }
        }
        Ok(output)
    }

    /// Runs the `sending_event` plugins (all, in config order, or only `only`) on one
    /// request's events and returns all their messages, or the first plugin error (then
    /// nothing is queued: the producer gets an error and may retry the whole request).
    /// Blocking.
    pub fn sending_event(
        &self,
        input: &SendingInput,
        only: Option<&str>,
    ) -> Result<Vec<Message>, PluginError> {
        let mut messages = Vec::new();
        let targets = self
            .subscribed(EventType::SendingEvent)
            .filter(|p| only.is_none_or(|name| p.name == name));
        for plugin in targets {
            let (result, elapsed) = plugin.call(|i| self.checked(i.sending_event(input)?));
            self.points
                .plugin_call(&plugin.name, "sending_event", outcome(&result), elapsed);
            let output = result?;
            messages.extend(output.messages);
            self.points.extend(output.points);
        }
        Ok(messages)
    }

    /// Hands a batch of points to every `monitoring_event` plugin. A failing plugin is
    /// logged and counted; the others still get the batch. Blocking.
    pub fn monitoring_event(&self, points: &[Point]) -> Vec<Message> {
        let mut messages = Vec::new();
        for plugin in self.subscribed(EventType::MonitoringEvent) {
            // No `plugin_calls` point here: it would feed itself forever.
            match plugin.call(|i| self.checked(i.monitoring_event(points)?)).0 {
                Ok(output) => messages.extend(output.messages),
                Err(e) => tracing::warn!(error = %e, "monitoring batch not handled"),
            }
        }
        messages
    }

    /// Runs one `tick` of `plugin`: its messages are returned, its points buffered for
    /// the monitoring plugins. Blocking.
    pub fn tick(&self, plugin: &LoadedPlugin) -> Result<Vec<Message>, PluginError> {
        let (result, elapsed) = plugin.call(|i| self.checked(i.tick()?));
        self.points
            .plugin_call(&plugin.name, "tick", outcome(&result), elapsed);
        let output = result?;
        self.points.extend(output.points);
        Ok(output.messages)
    }

    /// Hands a source message to `plugin`'s `on_message`. Blocking.
    pub fn on_message(
        &self,
        plugin: &LoadedPlugin,
        message: &SourceMessage,
    ) -> Result<Vec<Message>, PluginError> {
        let (result, elapsed) = plugin.call(|i| self.checked(i.on_message(message)?));
        self.points
            .plugin_call(&plugin.name, "on_message", outcome(&result), elapsed);
        let output = result?;
        self.points.extend(output.points);
        Ok(output.messages)
    }

    /// Answers a request to one of `plugin`'s routes. Blocking.
    pub fn route(
        &self,
        plugin: &LoadedPlugin,
        request: &RouteRequest,
    ) -> Result<RouteResponse, PluginError> {
        let (result, elapsed) = plugin.call(|i| i.route(request));
        self.points
            .plugin_call(&plugin.name, "route", outcome(&result), elapsed);
        result
    }

    /// Makes every plugin start its instances afresh on their next call (see
    /// [`LoadedPlugin::restart_instances`]). Blocking.
    pub fn restart_instances(&self) {
        for plugin in &self.plugins {
            plugin.restart_instances();
        }
    }

    /// Calls `close` on every plugin, in reverse order. Blocking.
    pub fn close(&self) {
        for plugin in self.plugins.iter().rev() {
            plugin.close();
        }
    }
}

/// Loads plugin `name`: its factory (WASM file or built-in), then its first instance.
fn load_one(
    config: &Config,
    name: &str,
    cx: &HostContext,
    loader: &wasm::Loader,
) -> Result<LoadedPlugin, LoadError> {
    let kv = cx
        .kv
        .open(name, KV_MAX_BYTES)
        .map_err(|error| LoadError::Kv {
            plugin: name.to_owned(),
            error,
        })?;
    let services = Arc::new(PluginServices::new(name, kv, Arc::clone(&cx.stats)));
    let settings = config.plugins.settings_of(name);
    let sandbox = config.plugins.sandbox_of(name);
    let path = config.plugins.dir.join(format!("{name}.wasm"));
    let precompiled = path.with_extension(wasm::PRECOMPILED_EXTENSION);
    let file = [precompiled, path.clone()]
        .into_iter()
        .find(|p| p.is_file());
    let factory: Box<dyn instance::InstanceFactory> = if let Some(file) = &file {
        let f = wasm::WasmFactory::load(name, file, &settings, &sandbox, services, loader)?;
        Box::new(f)
    } else if let Some(native) = native::builtin(name) {
        Box::new(native::NativePluginFactory::new(native, settings, services))
    } else {
        return Err(LoadError::Plugin {
            plugin: name.to_owned(),
            file: Some(path),
            reason: LoadFailure::NotFound {
                name: name.to_owned(),
            },
        });
    };
    let info = factory.info();
    let background = info.timer_ms.is_some() || !info.routes.is_empty() || info.on_message;
    // Each instance has its own memory: background plugins keep one, whose state is
    // then the plugin's state; pure on-event plugins get one per CPU.
    let instances = match sandbox.instances {
        Some(n) => n.get(),
        None if background => 1,
        None => std::thread::available_parallelism().map_or(2, |n| n.get()),
    };
    let loaded = LoadedPlugin::new(name, file.clone(), factory, instances).map_err(|e| {
        LoadError::Plugin {
            plugin: name.to_owned(),
            file,
            reason: LoadFailure::Initialize(e.error),
        }
    })?;
    tracing::info!(plugin = %name, kind = loaded.kind().as_str(),
        version = %loaded.info().version, instances, "plugin loaded");
    Ok(loaded)
}

fn outcome<T>(result: &Result<T, PluginError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(e) if e.error.is_fault() => "fault",
        Err(_) => "failed",
    }
}
