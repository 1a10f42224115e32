//! The native side of the hybrid build: a plugin compiled for the host target is linked
//! into the agent and driven through [`NativeGuest`], the same callbacks a WASM plugin
//! exports, minus the serialisation.

use std::cell::RefCell;
use std::sync::Arc;

use crate::host::kv::KvError;
use crate::host::LogLevel;
use crate::{
    AgentStats, Config, Output, Plugin, PluginInfo, Point, Result, RouteRequest, RouteResponse,
    SendingEvent, SourceMessage,
};

/// What the agent provides to a native plugin (the host functions of the WASM ABI).
pub trait HostServices: Send + Sync {
    fn log(&self, level: LogLevel, message: &str);
    fn now_ms(&self) -> i64;
    /// The value under `key`, if any.
    fn kv_get(&self, key: &str) -> std::result::Result<Option<Vec<u8>>, KvError>;
    fn kv_set(&self, key: &str, value: &[u8]) -> std::result::Result<(), KvError>;
    fn kv_delete(&self, key: &str) -> std::result::Result<(), KvError>;
    fn agent_stats(&self) -> AgentStats;
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<dyn HostServices>>> = const { RefCell::new(None) };
}

/// Runs `f` with `host` as the services seen by [`crate::log`], [`crate::kv`] and
/// [`crate::host::now_ms`] on this thread. The agent wraps every native call in it.
pub fn with_host<R>(host: &Arc<dyn HostServices>, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Arc<dyn HostServices>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            CURRENT.with(|c| *c.borrow_mut() = previous);
        }
    }
    let previous = CURRENT.with(|c| c.borrow_mut().replace(Arc::clone(host)));
    let _restore = Restore(previous);
    f()
}

pub(crate) fn with_current<R>(
    f: impl FnOnce(&dyn HostServices) -> R,
    otherwise: impl FnOnce() -> R,
) -> R {
    let host = CURRENT.with(|c| c.borrow().clone());
    match host {
        Some(host) => f(host.as_ref()),
        None => otherwise(),
    }
}

pub(crate) fn system_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Object-safe form of [`Plugin`], so the agent can hold any native plugin.
pub trait NativeGuest: Send {
    fn sending_event(&mut self, event: &SendingEvent) -> Result<Output>;
    fn monitoring_event(&mut self, points: &[Point]) -> Result<Output>;
    fn tick(&mut self) -> Result<Output>;
    fn route(&mut self, request: &RouteRequest) -> Result<RouteResponse>;
    fn on_message(&mut self, message: &SourceMessage) -> Result<Output>;
    fn timer_ms(&self) -> Option<u64>;
    fn close(&mut self);
}

impl<T: Plugin> NativeGuest for T {
    fn sending_event(&mut self, event: &SendingEvent) -> Result<Output> {
        Plugin::sending_event(self, event)
    }
    fn monitoring_event(&mut self, points: &[Point]) -> Result<Output> {
        Plugin::monitoring_event(self, points)
    }
    fn tick(&mut self) -> Result<Output> {
        Plugin::tick(self)
    }
    fn route(&mut self, request: &RouteRequest) -> Result<RouteResponse> {
        Plugin::route(self, request)
    }
    fn on_message(&mut self, message: &SourceMessage) -> Result<Output> {
        Plugin::on_message(self, message)
    }
    fn timer_ms(&self) -> Option<u64> {
        Plugin::timer_ms(self)
    }
    fn close(&mut self) {
        Plugin::close(self)
    }
}

/// How the agent describes and instantiates one native plugin.
#[derive(Clone, Copy)]
pub struct NativeFactory {
    describe: fn() -> PluginInfo,
    initialize: fn(Config) -> Result<Box<dyn NativeGuest>>,
}

impl NativeFactory {
    /// The factory of plugin type `T`.
    pub fn of<T: Plugin>() -> Self {
        NativeFactory {
            describe: T::describe,
            initialize: |config| Ok(Box::new(T::initialize(config)?)),
        }
    }

    /// The plugin's self-description.
    pub fn describe(&self) -> PluginInfo {
        (self.describe)()
    }

    /// A new, initialised instance.
    pub fn initialize(&self, config: Config) -> Result<Box<dyn NativeGuest>> {
        (self.initialize)(config)
    }
}
