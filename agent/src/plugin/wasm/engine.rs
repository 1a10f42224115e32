//! The one wasmtime engine every WASM plugin runs on, its settings, and the linker that
//! offers plugins their imports.
//!
//! One engine means the engine's code, signal handlers and caches exist once, however
//! many plugins run. Precompiled plugins (`outpost compile`) must be made with the same
//! settings as the engine that loads them: [`config`] is the one place they are chosen,
//! for both.

use std::sync::{Arc, OnceLock};

use wasmtime::{Config, Engine, Linker, WasmFeatures};

use super::state::HostState;
use super::ticker::Ticker;

/// Address space reserved per linear memory (growth beyond it moves the memory).
/// Wasmtime's 64-bit default is 4 GiB plus guard regions per memory, which exhausts the
/// address space of small boards (39-bit kernels, strict overcommit) with a few plugins.
/// The cost is an explicit bounds check per memory access.
const MEMORY_RESERVATION: u64 = 64 << 20;
const MEMORY_GUARD: u64 = 64 << 10;

/// Why the engine could not be set up. Cloned: the process's engine is made once and
/// its failure is the answer to every later load.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EngineError {
    #[error("unsupported target `{target}`: {error:#}")]
    Target {
        target: String,
        error: Arc<wasmtime::Error>,
    },
    #[error("cannot create the WebAssembly engine: {0:#}")]
    Create(Arc<wasmtime::Error>),
    #[error("cannot link the host functions: {0:#}")]
    Link(Arc<wasmtime::Error>),
    #[error("cannot start the timeout clock: {0}")]
    Ticker(Arc<std::io::Error>),
}

/// The engine settings, for this machine (`target: None`) or for a target triple
/// (`outpost compile --target`).
///
/// Wasm features are set explicitly: wasmtime derives their defaults from its cargo
/// features, which differ between the default and the runtime-only build, and a
/// precompiled module must have been made with a subset of the loading engine's.
pub fn config(target: Option<&str>) -> Result<Config, EngineError> {
    let mut c = Config::new();
    c.epoch_interruption(true)
        // Only for wasm-level backtraces, which the agent does not show: less code to
        // map per plugin.
        .generate_address_map(false)
        .memory_reservation(MEMORY_RESERVATION)
        .memory_guard_size(MEMORY_GUARD)
        .memory_reservation_for_growth(0)
        .wasm_features(
            WasmFeatures::THREADS
                | WasmFeatures::SHARED_EVERYTHING_THREADS
                | WasmFeatures::COMPONENT_MODEL
                | WasmFeatures::GC
                | WasmFeatures::GC_TYPES
                | WasmFeatures::EXCEPTIONS
                | WasmFeatures::LEGACY_EXCEPTIONS
                | WasmFeatures::STACK_SWITCHING,
            false,
        );
    if let Some(triple) = target {
        c.target(triple).map_err(|e| EngineError::Target {
            target: triple.to_owned(),
            error: Arc::new(e),
        })?;
    }
    Ok(c)
}

/// An engine with [`config`] for `target`, for compiling only.
pub fn engine_for(target: Option<&str>) -> Result<Engine, EngineError> {
    Engine::new(&config(target)?).map_err(|e| match target {
        Some(triple) => EngineError::Target {
            target: triple.to_owned(),
            error: Arc::new(e),
        },
        None => EngineError::Create(Arc::new(e)),
    })
}

/// The shared engine, its linker and its clock.
pub struct Runtime {
    pub engine: Engine,
    pub linker: Linker<HostState>,
    pub ticker: Ticker,
}

impl Runtime {
    fn new() -> Result<Self, EngineError> {
        let engine = engine_for(None)?;
        let mut linker = Linker::new(&engine);
        super::imports::define(&mut linker).map_err(|e| EngineError::Link(Arc::new(e)))?;
        let ticker = Ticker::start(engine.weak()).map_err(|e| EngineError::Ticker(Arc::new(e)))?;
        Ok(Runtime {
            engine,
            linker,
            ticker,
        })
    }
}

/// The process's engine, made on first use (a config reload keeps it).
pub fn shared() -> Result<&'static Runtime, EngineError> {
    static RUNTIME: OnceLock<Result<Runtime, EngineError>> = OnceLock::new();
    RUNTIME
        .get_or_init(Runtime::new)
        .as_ref()
        .map_err(Clone::clone)
}
