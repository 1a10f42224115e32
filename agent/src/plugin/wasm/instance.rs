//! One live WASM plugin instance: its store, its exports (resolved once), and a call as
//! the Extism ABI defines it (input block in, output or error block out).

use std::sync::Arc;
use std::time::Duration;

use outpost_pdk::abi::exports;
use wasmtime::{InstancePre, Store, Trap, TypedFunc};

use super::engine::Runtime;
use super::limits::CapReached;
use super::state::{HostState, PluginContext};
use crate::plugin::instance::{CallError, FaultKind};

/// The ABI's exports, in a fixed order: resolved once per instance into a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Export {
    Describe,
    Initialize,
    SendingEvent,
    MonitoringEvent,
    Tick,
    Route,
    OnMessage,
    Finalize,
}

impl Export {
    const ALL: [Export; 8] = [
        Export::Describe,
        Export::Initialize,
        Export::SendingEvent,
        Export::MonitoringEvent,
        Export::Tick,
        Export::Route,
        Export::OnMessage,
        Export::Finalize,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Export::Describe => exports::DESCRIBE,
            Export::Initialize => exports::INITIALIZE,
            Export::SendingEvent => exports::SENDING_EVENT,
            Export::MonitoringEvent => exports::MONITORING_EVENT,
            Export::Tick => exports::TICK,
            Export::Route => exports::ROUTE,
            Export::OnMessage => exports::ON_MESSAGE,
            Export::Finalize => exports::FINALIZE,
        }
    }
}

/// An export as Extism allows it: returning a status, or nothing (status 0).
#[derive(Clone)]
enum Entry {
    Status(TypedFunc<(), i32>),
    Unit(TypedFunc<(), ()>),
}

/// How an instance is made: what the factory knows about its plugin.
pub struct Recipe {
    pub pre: InstancePre<HostState>,
    pub plugin: Arc<PluginContext>,
    pub memory_cap: usize,
    pub timeout: Duration,
    #[cfg(feature = "wasi")]
    pub wasi: Option<super::wasi::Grants>,
}

/// A live instance.
pub struct Instance {
    store: Store<HostState>,
    entries: [Option<Entry>; Export::ALL.len()],
    timeout: Duration,
    runtime: &'static Runtime,
}

impl Instance {
    /// Instantiates `recipe` in a new store and runs the guest's own initialisers
    /// (`__wasm_call_ctors`, else `_initialize`, as Extism does).
    pub fn new(runtime: &'static Runtime, recipe: &Recipe) -> Result<Self, CallError> {
        let state = HostState::new(Arc::clone(&recipe.plugin), recipe.memory_cap);
        let mut store = Store::new(&runtime.engine, state);
        store.limiter(|s| &mut s.budget);
        store.epoch_deadline_callback(|mut cx| Ok(cx.data_mut().deadline.on_tick()));
        #[cfg(feature = "wasi")]
        if let Some(grants) = &recipe.wasi {
            store.data_mut().wasi = grants.context().map_err(CallError::Instantiate)?;
        }
        arm(&mut store, recipe.timeout);
        let running = runtime.ticker.running();
        let instance = recipe
            .pre
            .instantiate(&mut store)
            .map_err(|e| fault(e, store.data()))?;
        store.data_mut().guest_memory = instance.get_memory(&mut store, "memory");
        let init = ["__wasm_call_ctors", "_initialize"]
            .into_iter()
            .find_map(|name| instance.get_typed_func::<(), ()>(&mut store, name).ok());
        if let Some(init) = init {
            init.call(&mut store, ())
                .map_err(|e| fault(e, store.data()))?;
        }
        drop(running);
        let entries = Export::ALL.map(|export| {
            let name = export.name();
            match instance.get_typed_func::<(), i32>(&mut store, name) {
                Ok(f) => Some(Entry::Status(f)),
                Err(_) => instance
                    .get_typed_func::<(), ()>(&mut store, name)
                    .ok()
                    .map(Entry::Unit),
            }
        });
        Ok(Instance {
            store,
            entries,
            timeout: recipe.timeout,
            runtime,
        })
    }

    /// Whether the plugin exports `export` with a signature the ABI allows.
    pub fn has(&self, export: Export) -> bool {
        self.entries[export as usize].is_some()
    }

    /// Calls `export` with `input`; returns its output, or the error or fault.
    pub fn call(&mut self, export: Export, input: &[u8]) -> Result<&[u8], CallError> {
        let Some(entry) = self.entries[export as usize].clone() else {
            return Err(CallError::Fault(
                FaultKind::Trap,
                format!("the plugin does not export `{}`", export.name()),
            ));
        };
        let state = self.store.data_mut();
        state.arena.reset();
        let block = state.give(input).map_err(|_| oom())?;
        state.arena.set_input(block, input.len() as u64);
        arm(&mut self.store, self.timeout);
        let running = self.runtime.ticker.running();
        let result = match entry {
            Entry::Status(f) => f.call(&mut self.store, ()),
            Entry::Unit(f) => f.call(&mut self.store, ()).map(|()| 0),
        };
        drop(running);
        let state = self.store.data();
        match result {
            Ok(status) => returned(status, state),
            Err(e) => match exited(&e) {
                Some(0) if state.arena.error().is_none() => Ok(()),
                Some(status) if state.arena.error().is_some() => returned(status, state),
                _ => Err(fault(e, state)),
            },
        }?;
        state.arena.output().ok_or_else(|| {
            CallError::Fault(
                FaultKind::Trap,
                "output range outside the kernel memory".into(),
            )
        })
    }
}

fn arm(store: &mut Store<HostState>, timeout: Duration) {
    store.data_mut().deadline.arm(timeout);
    store.set_epoch_deadline(1);
}

fn oom() -> CallError {
    CallError::Fault(FaultKind::OutOfMemory, CapReached.to_string())
}

/// A call that returned `status`: an error message with status 1 is the plugin's own
/// error; with another status it is a fault; without one the call succeeded (Extism
/// ignores the status then).
fn returned(status: i32, state: &HostState) -> Result<(), CallError> {
    match state.arena.error() {
        None => Ok(()),
        Some(message) => {
            let message = String::from_utf8_lossy(message).into_owned();
            Err(match status {
                1 => CallError::Reported(message),
                _ => CallError::Fault(FaultKind::Trap, format!("status {status}: {message}")),
            })
        }
    }
}

/// The status a WASI plugin exited with (`proc_exit`), if that is how it stopped.
fn exited(e: &wasmtime::Error) -> Option<i32> {
    #[cfg(feature = "wasi")]
    return e.downcast_ref::<wasmtime_wasi::I32Exit>().map(|x| x.0);
    #[cfg(not(feature = "wasi"))]
    return {
        let _ = e;
        None
    };
}

/// Classifies a call that did not return: timeout, memory cap, or trap.
fn fault(e: wasmtime::Error, state: &HostState) -> CallError {
    let trap = e.downcast_ref::<Trap>();
    if trap == Some(&Trap::Interrupt) && state.deadline.expired() {
        return CallError::Fault(FaultKind::Timeout, "call timed out".into());
    }
    if e.downcast_ref::<CapReached>().is_some() {
        return oom();
    }
    let message = match trap {
        Some(trap) => trap.to_string(),
        None => e.root_cause().to_string(),
    };
    CallError::Fault(FaultKind::Trap, message)
}
