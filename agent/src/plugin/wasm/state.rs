//! What one instance's store holds: its kernel arena, limits, Extism variables, WASI
//! context, and which plugin it belongs to (for host functions and logs).

use std::collections::HashMap;
use std::sync::Arc;

use wasmtime::{Caller, Memory};

use super::arena::Arena;
use super::limits::{Budget, CapReached, Deadline};
use crate::plugin::services::PluginServices;

/// The plugin an instance belongs to, shared by all its instances.
pub struct PluginContext {
    pub name: String,
    pub services: Arc<PluginServices>,
}

/// Extism's per-instance variables (`var_get`/`var_set`): host memory that survives
/// calls, lost when the instance is re-created.
#[derive(Default)]
pub struct Vars {
    map: HashMap<Vec<u8>, Vec<u8>>,
    bytes: usize,
}

/// Extism's default cap on the variables of one instance.
const MAX_VAR_BYTES: usize = 1 << 20;

/// Extism's per-entry bookkeeping charge, so many tiny variables are capped too.
const VAR_OVERHEAD: usize = 48;

impl Vars {
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.map.get(key).map(Vec::as_slice)
    }

    /// Stores `value` (or removes `key` if `None`); refuses to pass the cap.
    pub fn set(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), VarsFull> {
        if let Some(old) = self.map.remove(key) {
            self.bytes -= key.len() + old.len() + VAR_OVERHEAD;
        }
        let Some(value) = value else { return Ok(()) };
        let size = key.len() + value.len() + VAR_OVERHEAD;
        if self.bytes + size > MAX_VAR_BYTES {
            return Err(VarsFull);
        }
        self.bytes += size;
        self.map.insert(key.to_vec(), value.to_vec());
        Ok(())
    }
}

/// `var_set` would pass the cap.
#[derive(Debug, thiserror::Error)]
#[error("variable store is full ({} bytes)", MAX_VAR_BYTES)]
pub struct VarsFull;

/// The data of one instance's store.
pub struct HostState {
    pub arena: Arena,
    pub budget: Budget,
    pub deadline: Deadline,
    pub vars: Vars,
    pub plugin: Arc<PluginContext>,
    /// The plugin's exported `memory`, for the bulk copies of `outpost:host/io`.
    pub guest_memory: Option<Memory>,
    #[cfg(feature = "wasi")]
    pub wasi: super::wasi::Wasi,
}

impl HostState {
    pub fn new(plugin: Arc<PluginContext>, memory_cap: usize) -> Self {
        HostState {
            arena: Arena::default(),
            budget: Budget::new(memory_cap),
            deadline: Deadline::default(),
            vars: Vars::default(),
            plugin,
            guest_memory: None,
            #[cfg(feature = "wasi")]
            wasi: super::wasi::Wasi::default(),
        }
    }

    /// A new block holding `bytes` (0 when empty), charged to the memory cap.
    pub fn give(&mut self, bytes: &[u8]) -> Result<u64, CapReached> {
        self.arena.alloc_bytes(bytes, &mut self.budget)
    }
}

/// The calling instance's state, as host functions see it.
pub type Ctx<'a> = Caller<'a, HostState>;
