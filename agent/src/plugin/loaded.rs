//! A loaded plugin: its pool of instances, its counters, and fault isolation.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use outpost_pdk::PluginInfo;

use super::instance::{CallError, InstanceFactory, PluginInstance, PluginKind};
use crate::sync::{self, LastError};

/// A failed call, attributed to its plugin.
#[derive(Debug, thiserror::Error)]
#[error("plugin `{plugin}` {}: {error}", if error.is_fault() { "faulted" } else { "failed" })]
pub struct PluginError {
    pub plugin: String,
    pub error: CallError,
}

/// Counters shown by `/v1/plugins` and `/metrics`.
#[derive(Debug, Default)]
pub struct PluginStats {
    pub calls: AtomicU64,
    pub failures: AtomicU64,
    pub faults: AtomicU64,
    pub restarts: AtomicU64,
    pub call_micros: AtomicU64,
    last_error: LastError,
}

impl PluginStats {
    pub fn last_error(&self) -> Option<String> {
        self.last_error.get()
    }

    /// `Degraded` once the plugin has faulted (its last error says how).
    pub fn health(&self) -> PluginHealth {
        if self.faults.load(Ordering::Relaxed) > 0 {
            PluginHealth::Degraded
        } else {
            PluginHealth::Ok
        }
    }
}

/// A plugin's state as health and `/v1/plugins` show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginHealth {
    Ok,
    /// It faulted at least once (trap, panic, timeout, out of memory).
    Degraded,
}

impl PluginHealth {
    pub fn as_str(self) -> &'static str {
        match self {
            PluginHealth::Ok => "ok",
            PluginHealth::Degraded => "degraded",
        }
    }
}

type Slot = Mutex<Option<Box<dyn PluginInstance>>>;

/// One plugin, ready to call from blocking threads.
///
/// Calls go to a pool of instances, each behind its own lock, so concurrent requests
/// run in parallel up to the pool size and different plugins never wait for each
/// other. An instance that faults is dropped and re-created; the agent keeps serving.
pub struct LoadedPlugin {
    pub name: String,
    pub file: Option<PathBuf>,
    factory: Box<dyn InstanceFactory>,
    slots: Vec<Slot>,
    next: AtomicUsize,
    timer: Option<Duration>,
    pub stats: PluginStats,
}

impl LoadedPlugin {
    /// Wraps `factory` with `instances` slots, creating the first instance now so that a
    /// plugin whose `initialize` fails stops start-up.
    pub fn new(
        name: &str,
        file: Option<PathBuf>,
        factory: Box<dyn InstanceFactory>,
        instances: usize,
    ) -> Result<Self, PluginError> {
        let first = factory.instantiate().map_err(|error| PluginError {
            plugin: name.to_owned(),
            error,
        })?;
        let timer = first
            .timer_ms()
            .or(factory.info().timer_ms)
            .map(|ms| Duration::from_millis(ms.max(1)));
        let slots: Vec<Slot> = std::iter::once(Mutex::new(Some(first)))
            .chain((1..instances.max(1)).map(|_| Mutex::new(None)))
            .collect();
        Ok(LoadedPlugin {
            name: name.to_owned(),
            file,
            factory,
            slots,
            next: AtomicUsize::new(0),
            timer,
            stats: PluginStats::default(),
        })
    }

    pub fn kind(&self) -> PluginKind {
        self.factory.kind()
    }

    pub fn info(&self) -> &PluginInfo {
        self.factory.info()
    }

    /// How often `tick` runs: the interval chosen by the settings, else the declared one.
    pub fn timer(&self) -> Option<Duration> {
        self.timer
    }

    pub fn instances(&self) -> usize {
        self.slots.len()
    }

    /// Runs `f` on a free instance (blocking until one is free). Returns the result and
    /// the call's duration. Blocking: call from a blocking thread, never the reactor.
    pub fn call<R>(
        &self,
        f: impl FnOnce(&mut dyn PluginInstance) -> Result<R, CallError>,
    ) -> (Result<R, PluginError>, Duration) {
        let start = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let mut guard = (0..self.slots.len())
            .find_map(|i| self.slots[(start + i) % self.slots.len()].try_lock().ok())
            .unwrap_or_else(|| sync::lock(&self.slots[start]));

        let began = Instant::now();
        let result = match guard.as_mut() {
            Some(instance) => f(instance.as_mut()),
            None => match self.factory.instantiate() {
                Ok(instance) => f(guard.insert(instance).as_mut()),
                Err(e) => Err(e),
            },
        };
        let elapsed = began.elapsed();
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        self.stats
            .call_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);

        let result = result.map_err(|error| {
            if !error.is_fault() {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(plugin = %self.name, %error, "plugin call failed");
            } else {
                self.stats.faults.fetch_add(1, Ordering::Relaxed);
                tracing::error!(plugin = %self.name, %error,
                        "plugin faulted: re-creating its instance");
                *guard = None;
                match self.factory.instantiate() {
                    Ok(instance) => {
                        *guard = Some(instance);
                        self.stats.restarts.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => tracing::error!(plugin = %self.name, error = %e,
                            "cannot re-create the instance; will retry on the next call"),
                }
            }
            self.stats.last_error.set(&error);
            PluginError {
                plugin: self.name.clone(),
                error,
            }
        });
        (result, elapsed)
    }

    /// Drops every instance; each is created again (`initialize`) on its next call, so
    /// it starts from the state the instances before it left (after a reload closed
    /// the previous set).
    pub fn restart_instances(&self) {
        for slot in &self.slots {
            *sync::lock(slot) = None;
        }
    }

    /// Calls `close` on every live instance (shutdown).
    pub fn close(&self) {
        for slot in &self.slots {
            if let Some(instance) = sync::lock(slot).as_mut() {
                instance.close();
            }
        }
    }
}
