//! Host services for plugins: logging (tagged with the plugin's name), a clock, and a
//! per-plugin persistent key-value store. The same object serves native plugins
//! directly and WASM plugins through host functions (`wasm/host_fns.rs`).
//!
//! Where the key-value state lives is not the plugin host's business: it takes any
//! [`KvStores`] (the queue's database in the agent, memory for `outpost check`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use outpost_pdk::host::LogLevel;
use outpost_pdk::kv::KvError;
use outpost_pdk::native::HostServices;
use outpost_pdk::AgentStats;

use crate::sync;

/// The agent's figures, for `outpost_agent_stats` (none in `outpost check`).
pub type StatsFn = Arc<dyn Fn() -> AgentStats + Send + Sync>;

/// One plugin's key-value store.
pub trait KvStore: Send + Sync {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError>;
    fn set(&self, key: &str, value: &[u8]) -> Result<(), KvError>;
    fn delete(&self, key: &str) -> Result<(), KvError>;
}

/// Where the plugins' stores live: opens plugin `name`'s, capped at `max_bytes`.
pub trait KvStores: Send + Sync {
    fn open(&self, plugin: &str, max_bytes: u64) -> Result<Box<dyn KvStore>, KvError>;
}

/// Every plugin's entries, by (plugin, key).
type Entries = Arc<Mutex<BTreeMap<(String, String), Vec<u8>>>>;

/// Stores in memory, gone with the process (`outpost check`, tests, benchmarks).
#[derive(Default)]
pub struct MemoryKv(Entries);

/// One plugin's part of a [`MemoryKv`].
struct MemoryKvStore {
    all: Entries,
    plugin: String,
    max_bytes: u64,
}

impl KvStores for MemoryKv {
    fn open(&self, plugin: &str, max_bytes: u64) -> Result<Box<dyn KvStore>, KvError> {
        Ok(Box::new(MemoryKvStore {
            all: Arc::clone(&self.0),
            plugin: plugin.to_owned(),
            max_bytes,
        }))
    }
}

impl MemoryKvStore {
    fn key(&self, key: &str) -> (String, String) {
        (self.plugin.clone(), key.to_owned())
    }
}

impl KvStore for MemoryKvStore {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        Ok(sync::lock(&self.all).get(&self.key(key)).cloned())
    }

    fn set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        let mut all = sync::lock(&self.all);
        let used: u64 = all
            .iter()
            .filter(|((p, k), _)| *p == self.plugin && k != key)
            .map(|((_, k), v)| (k.len() + v.len()) as u64)
            .sum();
        if used + (key.len() + value.len()) as u64 > self.max_bytes {
            return Err(KvError::Full {
                max: self.max_bytes,
            });
        }
        all.insert(self.key(key), value.to_vec());
        Ok(())
    }

    fn delete(&self, key: &str) -> Result<(), KvError> {
        sync::lock(&self.all).remove(&self.key(key));
        Ok(())
    }
}

/// Services of one plugin.
pub struct PluginServices {
    plugin: String,
    kv: Box<dyn KvStore>,
    stats: StatsFn,
}

impl PluginServices {
    pub fn new(plugin: &str, kv: Box<dyn KvStore>, stats: StatsFn) -> Self {
        PluginServices {
            plugin: plugin.to_owned(),
            kv,
            stats,
        }
    }
}

impl HostServices for PluginServices {
    fn log(&self, level: LogLevel, message: &str) {
        let plugin = self.plugin.as_str();
        match level {
            LogLevel::Trace => tracing::trace!(target: "outpost::plugin", plugin, "{message}"),
            LogLevel::Debug => tracing::debug!(target: "outpost::plugin", plugin, "{message}"),
            LogLevel::Info => tracing::info!(target: "outpost::plugin", plugin, "{message}"),
            LogLevel::Warn => tracing::warn!(target: "outpost::plugin", plugin, "{message}"),
            LogLevel::Error => tracing::error!(target: "outpost::plugin", plugin, "{message}"),
        }
    }

    fn now_ms(&self) -> i64 {
        crate::clock::now_ms() as i64
    }

    fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.kv.get(key)
    }

    fn kv_set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.kv.set(key, value)
    }

    fn kv_delete(&self, key: &str) -> Result<(), KvError> {
        self.kv.delete(key)
    }

    fn agent_stats(&self) -> AgentStats {
        (self.stats)()
    }
}
