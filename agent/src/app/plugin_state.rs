//! The plugins' key-value state lives in the queue's database (as durable as the
//! queue, no second database): this adapts the queue's stores to the plugin host's
//! interface, so that neither module knows the other.

use outpost_pdk::kv::KvError;

use crate::plugin;
use crate::queue::kv;

impl plugin::KvStores for kv::KvStores {
    fn open(&self, name: &str, max_bytes: u64) -> Result<Box<dyn plugin::KvStore>, KvError> {
        Ok(Box::new(
            kv::KvStores::open(self, name, max_bytes).map_err(typed)?,
        ))
    }
}

impl plugin::KvStore for kv::KvStore {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        kv::KvStore::get(self, key).map_err(typed)
    }

    fn set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        kv::KvStore::set(self, key, value).map_err(typed)
    }

    fn delete(&self, key: &str) -> Result<(), KvError> {
        kv::KvStore::delete(self, key).map_err(typed)
    }
}

/// The queue's error as plugins see it.
fn typed(e: kv::KvError) -> KvError {
    match e {
        kv::KvError::BadKey => KvError::BadKey {
            max: kv::MAX_KEY_LEN,
        },
        kv::KvError::ValueTooLarge => KvError::ValueTooLarge {
            max: kv::MAX_VALUE_LEN,
        },
        kv::KvError::Full { max, .. } => KvError::Full { max },
        storage @ kv::KvError::Storage { .. } => KvError::Storage(storage.to_string()),
    }
}
