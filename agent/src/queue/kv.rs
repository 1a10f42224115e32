//! The plugins' key-value stores: one namespace per plugin in the queue's database, so
//! a plugin's state (batched points, counters) is as durable as the queue and costs no
//! second database. Each store is capped in bytes (keys and values).
//!
//! Writes are not flushed on their own: they mark the database dirty and the group
//! committer flushes within its idle interval (or with the next commit).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use super::store::Store;
use super::QueueError;

/// Longest key a plugin may use.
pub const MAX_KEY_LEN: usize = 256;

/// Largest value: sled writes bigger values (over ~128 KiB) to separate blob files,
/// which hang its flushes if the disk fills while one is written.
pub const MAX_VALUE_LEN: usize = 64 << 10;

/// Why a key-value operation failed; the text reaches the plugin.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    #[error("kv keys must be 1..={MAX_KEY_LEN} bytes")]
    BadKey,
    #[error("kv values must be at most {MAX_VALUE_LEN} bytes")]
    ValueTooLarge,
    #[error("kv store of plugin `{plugin}` would exceed its {max} bytes")]
    Full { plugin: String, max: u64 },
    #[error("kv store of plugin `{plugin}`: {source}")]
    Storage {
        plugin: String,
        #[source]
        source: QueueError,
    },
}

/// Where the stores live: the queue database's `plugin_kv` tree, reached through the
/// database handle (which may be swapped while the agent runs).
#[derive(Clone)]
pub struct KvStores {
    store: Arc<Store>,
    dirty: Arc<AtomicBool>,
}

impl KvStores {
    pub(super) fn new(store: Arc<Store>, dirty: Arc<AtomicBool>) -> Self {
        KvStores { store, dirty }
    }

    /// The store of `plugin`, capped at `max_bytes`; its usage is counted from disk.
    pub fn open(&self, plugin: &str, max_bytes: u64) -> Result<KvStore, KvError> {
        let mut prefix = plugin.as_bytes().to_vec();
        prefix.push(0);
        let storage = |source| KvError::Storage {
            plugin: plugin.to_owned(),
            source,
        };
        let trees = self.store.trees().map_err(storage)?;
        let mut used = 0u64;
        for entry in trees.kv.scan_prefix(&prefix) {
            let (k, v) = entry.map_err(|e| storage(e.into()))?;
            used += (k.len() - prefix.len() + v.len()) as u64;
        }
        Ok(KvStore {
            plugin: plugin.to_owned(),
            store: Arc::clone(&self.store),
            dirty: Arc::clone(&self.dirty),
            prefix,
            used: AtomicU64::new(used),
            max_bytes,
        })
    }
}

/// One plugin's store.
pub struct KvStore {
    plugin: String,
    store: Arc<Store>,
    dirty: Arc<AtomicBool>,
    prefix: Vec<u8>,
    used: AtomicU64,
    max_bytes: u64,
}

impl KvStore {
    fn key(&self, key: &str) -> Result<Vec<u8>, KvError> {
        if key.is_empty() || key.len() > MAX_KEY_LEN {
            return Err(KvError::BadKey);
        }
        let mut k = self.prefix.clone();
        k.extend_from_slice(key.as_bytes());
        Ok(k)
    }

    fn storage(&self, source: QueueError) -> KvError {
        KvError::Storage {
            plugin: self.plugin.clone(),
            source,
        }
    }

    /// Runs `f` on the kv tree; storage errors name the plugin (and a write error marks
    /// the database failed, like any other).
    fn with<T>(&self, f: impl FnOnce(&sled::Tree) -> Result<T, sled::Error>) -> Result<T, KvError> {
        let trees = self.store.trees().map_err(|e| self.storage(e))?;
        self.store.check(f(&trees.kv)).map_err(|e| self.storage(e))
    }

    /// The value under `key`, if any.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let k = self.key(key)?;
        Ok(self.with(|kv| kv.get(k))?.map(|v| v.to_vec()))
    }

    /// Stores `value` under `key`, within the cap.
    pub fn set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        let k = self.key(key)?;
        if value.len() > MAX_VALUE_LEN {
            return Err(KvError::ValueTooLarge);
        }
        let old = self.with(|kv| kv.get(&k))?;
        let old_size = old.map_or(0, |v| (key.len() + v.len()) as u64);
        let new_size = (key.len() + value.len()) as u64;
        let used = self.used.load(Ordering::Relaxed);
        if used - old_size.min(used) + new_size > self.max_bytes {
            return Err(KvError::Full {
                plugin: self.plugin.clone(),
                max: self.max_bytes,
            });
        }
        self.with(|kv| kv.insert(k, value))?;
        self.used.fetch_add(new_size, Ordering::Relaxed);
        self.used.fetch_sub(old_size, Ordering::Relaxed);
        self.dirty.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Removes `key` (absent is fine).
    pub fn delete(&self, key: &str) -> Result<(), KvError> {
        let k = self.key(key)?;
        if let Some(old) = self.with(|kv| kv.remove(k))? {
            self.used
                .fetch_sub((key.len() + old.len()) as u64, Ordering::Relaxed);
            self.dirty.store(true, Ordering::Relaxed);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaced_capped_persistent_and_flushed() {
        let dir = tempfile::tempdir().unwrap();
        let dirty = Arc::new(AtomicBool::new(false));
        let open = || {
            let (store, _) = Store::open(dir.path(), 1 << 20).unwrap();
            KvStores::new(Arc::new(store), Arc::clone(&dirty))
        };
        let stores = open();
        let a = stores.open("a", 100).unwrap();
        let b = stores.open("b", 100).unwrap();
        a.set("k", b"one").unwrap();
        assert!(
            dirty.swap(false, Ordering::Relaxed),
            "a write asks for a flush"
        );
        assert_eq!(a.get("k").unwrap().as_deref(), Some(&b"one"[..]));
        assert_eq!(b.get("k").unwrap(), None, "namespaced");
        assert!(matches!(a.set("big", &[0; 200]), Err(KvError::Full { .. })));
        a.set("k", &[7; 90]).unwrap(); // replacing counts the new size only
        assert!(a.set("k2", &[0; 20]).is_err());
        a.delete("k").unwrap();
        assert!(dirty.load(Ordering::Relaxed));
        a.set("k2", &[0; 20]).unwrap();
        assert!(matches!(a.get(""), Err(KvError::BadKey)));
        stores.store.flush().unwrap();
        drop((a, b, stores));
        let again = open().open("a", 100).unwrap();
        assert_eq!(again.get("k2").unwrap().as_deref(), Some(&[0u8; 20][..]));
        assert!(again.set("x", &[0; 90]).is_err(), "usage rebuilt from disk");
    }
}
