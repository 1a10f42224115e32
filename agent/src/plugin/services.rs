//! Host services for plugins: logging (tagged with the plugin's name), a clock, and a
//! per-plugin persistent key-value store. The same object serves native plugins
//! directly and WASM plugins through Extism host functions.

use std::sync::Arc;

use extism::{CurrentPlugin, Function, UserData, Val, PTR};
use outpost_pdk::abi::host_functions;
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

type Services = UserData<Arc<PluginServices>>;

fn services(data: &Services) -> Result<Arc<PluginServices>, extism::Error> {
    let cell = data.get()?;
    let guard = cell
        .lock()
        .map_err(|_| extism::Error::msg("services lock poisoned"))?;
    Ok(Arc::clone(&guard))
}

fn arg(plugin: &mut CurrentPlugin, val: &Val) -> Result<String, extism::Error> {
    plugin.memory_get_val::<String>(val)
}

fn give(plugin: &mut CurrentPlugin, out: &mut [Val], bytes: &[u8]) -> Result<(), extism::Error> {
    let handle = plugin.memory_new(bytes)?;
    out[0] = plugin.memory_to_val(handle);
    Ok(())
}

/// The Extism host functions of the ABI, bound to `services`.
pub fn host_functions(services_: Arc<PluginServices>) -> Vec<Function> {
    let data: Services = UserData::new(services_);
    vec![
        Function::new(
            host_functions::LOG,
            [PTR, PTR],
            [],
            data.clone(),
            |p: &mut CurrentPlugin, inputs: &[Val], _out: &mut [Val], d: Services| {
                let level = arg(p, &inputs[0])?;
                let message = arg(p, &inputs[1])?;
                services(&d)?.log(LogLevel::parse(&level), &message);
                Ok(())
            },
        ),
        Function::new(
            host_functions::NOW_MS,
            [],
            [PTR],
            data.clone(),
            |p: &mut CurrentPlugin, _in: &[Val], out: &mut [Val], d: Services| {
                let now = services(&d)?.now_ms() as u64;
                give(p, out, &now.to_le_bytes())
            },
        ),
        Function::new(
            host_functions::KV_GET,
            [PTR],
            [PTR],
            data.clone(),
            |p: &mut CurrentPlugin, inputs: &[Val], out: &mut [Val], d: Services| {
                let key = arg(p, &inputs[0])?;
                let tagged = match services(&d)?.kv_get(&key) {
                    Ok(Some(v)) => [&[1u8][..], &v].concat(),
                    Ok(None) => vec![0],
                    Err(e) => [&[2u8][..], e.as_bytes()].concat(),
                };
                give(p, out, &tagged)
            },
        ),
        Function::new(
            host_functions::KV_SET,
            [PTR, PTR],
            [PTR],
            data.clone(),
            |p: &mut CurrentPlugin, inputs: &[Val], out: &mut [Val], d: Services| {
                let key = arg(p, &inputs[0])?;
                let value: Vec<u8> = p.memory_get_val(&inputs[1])?;
                let err = services(&d)?.kv_set(&key, &value).err().unwrap_or_default();
                give(p, out, err.as_bytes())
            },
        ),
        Function::new(
            host_functions::AGENT_STATS,
            [],
            [PTR],
            data.clone(),
            |p: &mut CurrentPlugin, _in: &[Val], out: &mut [Val], d: Services| {
                let json = serde_json::to_vec(&services(&d)?.agent_stats())?;
                give(p, out, &json)
            },
        ),
        Function::new(
            host_functions::KV_REMOVE,
            [PTR],
            [PTR],
            data.clone(),
            |p: &mut CurrentPlugin, inputs: &[Val], out: &mut [Val], d: Services| {
                let key = arg(p, &inputs[0])?;
                let err = services(&d)?.kv_delete(&key).err().unwrap_or_default();
                give(p, out, err.as_bytes())
            },
        ),
        Function::new(
            host_functions::KV_DELETE,
            [PTR],
            [],
            data,
            |p: &mut CurrentPlugin, inputs: &[Val], _out: &mut [Val], d: Services| {
                let key = arg(p, &inputs[0])?;
                // No result to carry the error: the call fails with it.
                services(&d)?.kv_delete(&key).map_err(extism::Error::msg)
            },
        ),
    ]
}
