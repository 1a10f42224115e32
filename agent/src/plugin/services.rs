//! Host services for plugins: logging (tagged with the plugin's name), a clock, and a
//! per-plugin persistent key-value store. The same object serves native plugins
//! directly and WASM plugins through Extism host functions.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use extism::{CurrentPlugin, Function, UserData, Val, PTR};
use outpost_pdk::abi::host_functions;
use outpost_pdk::host::LogLevel;
use outpost_pdk::native::HostServices;
use outpost_pdk::AgentStats;

/// Longest key a plugin may use.
const MAX_KEY_LEN: usize = 256;

/// What the plugin host needs from the rest of the agent.
#[derive(Clone)]
pub struct HostHooks {
    /// The agent's figures, for `outpost_agent_stats`.
    pub stats: Arc<dyn Fn() -> AgentStats + Send + Sync>,
    /// Called after a plugin wrote its key-value store, so the queue's committer flushes
    /// it (the store lives in the queue's database, whose flushes the committer owns).
    pub kv_written: Arc<dyn Fn() + Send + Sync>,
}

impl Default for HostHooks {
    /// Zero figures, nothing to flush (`outpost check`, tests).
    fn default() -> Self {
        HostHooks {
            stats: Arc::new(AgentStats::default),
            kv_written: Arc::new(|| {}),
        }
    }
}

/// Services of one plugin.
pub struct PluginServices {
    plugin: String,
    hooks: HostHooks,
    kv: sled::Tree,
    prefix: Vec<u8>,
    kv_bytes: AtomicU64,
    kv_max_bytes: u64,
}

impl PluginServices {
    /// Services for `plugin`, its store being its namespace in `kv`, capped at
    /// `kv_max_bytes` (keys and values).
    pub fn new(
        plugin: &str,
        kv: sled::Tree,
        kv_max_bytes: u64,
        hooks: HostHooks,
    ) -> Result<Self, sled::Error> {
        let mut prefix = plugin.as_bytes().to_vec();
        prefix.push(0);
        let mut used = 0u64;
        for entry in kv.scan_prefix(&prefix) {
            let (k, v) = entry?;
            used += (k.len() - prefix.len() + v.len()) as u64;
        }
        Ok(PluginServices {
            plugin: plugin.to_owned(),
            hooks,
            kv,
            prefix,
            kv_bytes: AtomicU64::new(used),
            kv_max_bytes,
        })
    }

    fn key(&self, key: &str) -> Vec<u8> {
        let mut k = self.prefix.clone();
        k.extend_from_slice(key.as_bytes());
        k
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
        crate::queue::now_ms() as i64
    }

    fn kv_get(&self, key: &str) -> Option<Vec<u8>> {
        match self.kv.get(self.key(key)) {
            Ok(v) => v.map(|v| v.to_vec()),
            Err(e) => {
                tracing::error!(plugin = %self.plugin, error = %e, "plugin kv read failed");
                None
            }
        }
    }

    fn kv_set(&self, key: &str, value: &[u8]) -> Result<(), String> {
        if key.is_empty() || key.len() > MAX_KEY_LEN {
            return Err(format!("kv keys must be 1..={MAX_KEY_LEN} bytes"));
        }
        let old = self.kv.get(self.key(key)).map_err(|e| e.to_string())?;
        let old_size = old.map_or(0, |v| (key.len() + v.len()) as u64);
        let new_size = (key.len() + value.len()) as u64;
        let used = self.kv_bytes.load(Ordering::Relaxed);
        if used - old_size.min(used) + new_size > self.kv_max_bytes {
            return Err(format!(
                "kv store of plugin `{}` would exceed its {} bytes",
                self.plugin, self.kv_max_bytes
            ));
        }
        self.kv
            .insert(self.key(key), value)
            .map_err(|e| e.to_string())?;
        self.kv_bytes.fetch_add(new_size, Ordering::Relaxed);
        self.kv_bytes.fetch_sub(old_size, Ordering::Relaxed);
        (self.hooks.kv_written)();
        Ok(())
    }

    fn kv_delete(&self, key: &str) {
        if let Ok(Some(old)) = self.kv.remove(self.key(key)) {
            self.kv_bytes
                .fetch_sub((key.len() + old.len()) as u64, Ordering::Relaxed);
            (self.hooks.kv_written)();
        }
    }

    fn agent_stats(&self) -> AgentStats {
        (self.hooks.stats)()
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
                    Some(mut v) => {
                        v.insert(0, 1);
                        v
                    }
                    None => vec![0],
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
            host_functions::KV_DELETE,
            [PTR],
            [],
            data,
            |p: &mut CurrentPlugin, inputs: &[Val], _out: &mut [Val], d: Services| {
                let key = arg(p, &inputs[0])?;
                services(&d)?.kv_delete(&key);
                Ok(())
            },
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_is_namespaced_capped_and_persistent() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let tree = db.open_tree("kv").unwrap();
        let writes = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&writes);
        let hooks = HostHooks {
            kv_written: Arc::new(move || {
                counter.fetch_add(1, Ordering::Relaxed);
            }),
            ..HostHooks::default()
        };
        let a = PluginServices::new("a", tree.clone(), 100, hooks.clone()).unwrap();
        let b = PluginServices::new("b", tree.clone(), 100, hooks.clone()).unwrap();
        a.kv_set("k", b"one").unwrap();
        assert_eq!(a.kv_get("k").as_deref(), Some(&b"one"[..]));
        assert_eq!(b.kv_get("k"), None, "namespaced");
        assert!(a.kv_set("big", &[0; 200]).is_err(), "capped");
        a.kv_set("k", &[7; 90]).unwrap(); // replacing counts the new size only
        assert!(a.kv_set("k2", &[0; 20]).is_err());
        a.kv_delete("k");
        a.kv_set("k2", &[0; 20]).unwrap();
        drop(a);
        assert_eq!(
            writes.load(Ordering::Relaxed),
            4,
            "every write asks for a flush"
        );
        let again = PluginServices::new("a", tree, 100, hooks).unwrap();
        assert_eq!(again.kv_get("k2").as_deref(), Some(&[0u8; 20][..]));
        assert!(
            again.kv_set("x", &[0; 90]).is_err(),
            "usage rebuilt from disk"
        );
    }
}
