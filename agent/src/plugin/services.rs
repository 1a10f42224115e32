//! Host services for plugins: logging (tagged with the plugin's name), a clock, and a
//! per-plugin persistent key-value store. The same object serves native plugins
//! directly and WASM plugins through host functions (`wasm/host_fns.rs`).

use std::sync::Arc;

use outpost_pdk::host::LogLevel;
use outpost_pdk::native::HostServices;
use outpost_pdk::AgentStats;

use crate::queue::kv::KvStore;

/// The agent's figures, for `outpost_agent_stats` (none in `outpost check`).
pub type StatsFn = Arc<dyn Fn() -> AgentStats + Send + Sync>;

/// Services of one plugin.
pub struct PluginServices {
    plugin: String,
    kv: KvStore,
    stats: StatsFn,
}

impl PluginServices {
    pub fn new(plugin: &str, kv: KvStore, stats: StatsFn) -> Self {
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

    fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        self.kv.get(key).map_err(|e| e.to_string())
    }

    fn kv_set(&self, key: &str, value: &[u8]) -> Result<(), String> {
        self.kv.set(key, value).map_err(|e| e.to_string())
    }

    fn kv_delete(&self, key: &str) -> Result<(), String> {
        self.kv.delete(key).map_err(|e| e.to_string())
    }

    fn agent_stats(&self) -> AgentStats {
        (self.stats)()
    }
}
