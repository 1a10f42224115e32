//! WASM plugins on Outpost's own thin host over wasmtime, speaking the Extism ABI.
//! Why a host of our own instead of Extism, and how it is built: `README.md` here.
//!
//! Sandbox: no filesystem, network or environment unless granted; a memory cap and a
//! call timeout per plugin, which never disturb other plugins.

mod arena;
mod builtins;
mod bulk_io;
#[cfg(feature = "cranelift")]
mod cache;
mod calls;
mod compile;
mod engine;
mod host_fns;
mod imports;
mod instance;
mod kernel;
mod limits;
mod module;
mod state;
mod ticker;
#[cfg(feature = "wasi")]
mod wasi;

use std::path::Path;
use std::sync::Arc;

use outpost_pdk::{EventType, Initialized, PluginInfo};

pub use compile::{compile, default_output, CompileError};
pub use engine::EngineError;
pub use module::{Loader, ModuleError};

use self::calls::WasmPlugin;
use self::engine::Runtime;
use self::instance::{Export, Instance, Recipe};
use self::state::PluginContext;
use super::instance::{CallError, InstanceFactory, PluginInstance, PluginKind};
use super::services::PluginServices;
use super::{LoadError, LoadFailure};
use crate::config::SandboxConfig;

/// The import module of WASI preview 1's functions.
const WASI_P1: &str = "wasi_snapshot_preview1";

/// File extension of precompiled plugins (`outpost compile`).
pub const PRECOMPILED_EXTENSION: &str = "cwasm";

/// A loaded WASM plugin: instantiating it again (after a fault, or for another pool
/// slot) neither compiles nor links again.
pub struct WasmFactory {
    runtime: &'static Runtime,
    recipe: Recipe,
    info: PluginInfo,
    settings: Vec<u8>,
}

impl WasmFactory {
    /// Loads `path` (a `.wasm` module or a precompiled `.cwasm`), links it, asks the
    /// plugin to describe itself and checks that it exports what it declares.
    pub fn load(
        name: &str,
        path: &Path,
        settings: &serde_json::Map<String, serde_json::Value>,
        sandbox: &SandboxConfig,
        services: Arc<PluginServices>,
        loader: &Loader,
    ) -> Result<Self, LoadError> {
        let error = |reason: LoadFailure| LoadError::Plugin {
            plugin: name.to_owned(),
            file: Some(path.to_owned()),
            reason,
        };
        let runtime = engine::shared().map_err(|e| error(e.into()))?;
        let module = loader
            .load(&runtime.engine, path)
            .map_err(|e| error(e.into()))?;
        if cfg!(not(feature = "wasi")) {
            if uses_wasi(&module) {
                return Err(error(LoadFailure::NoWasi));
            }
            if !(sandbox.allowed_paths.is_empty() && sandbox.read_only_paths.is_empty()) {
                // Only WASI opens files: granted paths mean nothing to this build.
                tracing::warn!(
                    plugin = name,
                    "plugins.sandbox.{name}.allowed_paths / read_only_paths are set, but this \
                     agent was built without WASI (cargo feature `wasi`): they grant nothing"
                );
            }
        }
        let pre = runtime
            .linker
            .instantiate_pre(&module)
            .map_err(|e| error(LoadFailure::Link(e)))?;
        let recipe = Recipe {
            pre,
            plugin: Arc::new(PluginContext {
                name: name.to_owned(),
                services,
            }),
            memory_cap: usize::try_from(u64::from(sandbox.max_memory_mb) << 20)
                .unwrap_or(usize::MAX),
            timeout: sandbox.timeout,
            #[cfg(feature = "wasi")]
            wasi: uses_wasi(&module).then(|| wasi::Grants::of(sandbox)),
        };
        let settings = serde_json::to_vec(settings).map_err(|e| error(LoadFailure::Settings(e)))?;
        let info = describe(runtime, &recipe).map_err(|e| error(e.into()))?;
        Ok(WasmFactory {
            runtime,
            recipe,
            info,
            settings,
        })
    }
}

/// Whether `module` imports WASI preview 1 (a `wasm32-wasip1` build).
fn uses_wasi(module: &wasmtime::Module) -> bool {
    module.imports().any(|i| i.module() == WASI_P1)
}

/// Why a plugin's self-description was not usable.
#[derive(Debug, thiserror::Error)]
pub enum DescribeError {
    #[error("cannot instantiate: {0}")]
    Instantiate(CallError),
    #[error("missing export `{0}`")]
    MissingExport(&'static str),
    #[error("`describe` failed: {0}")]
    Call(CallError),
    #[error("`describe` returned invalid JSON: {0}")]
    InvalidJson(serde_json::Error),
    #[error("declares `{0}` but does not export it")]
    Undeclared(&'static str),
}

/// Runs `describe` on a probe instance and checks the exports against the answer.
fn describe(runtime: &'static Runtime, recipe: &Recipe) -> Result<PluginInfo, DescribeError> {
    let mut probe = Instance::new(runtime, recipe).map_err(DescribeError::Instantiate)?;
    for export in [Export::Describe, Export::Initialize] {
        if !probe.has(export) {
            return Err(DescribeError::MissingExport(export.name()));
        }
    }
    let json = probe
        .call(Export::Describe, b"")
        .map_err(DescribeError::Call)?;
    let info: PluginInfo = serde_json::from_slice(json).map_err(DescribeError::InvalidJson)?;
    if let Some(missing) = required_exports(&info).find(|e| !probe.has(*e)) {
        return Err(DescribeError::Undeclared(missing.name()));
    }
    Ok(info)
}

/// Exports a plugin must have for what it declares.
fn required_exports(info: &PluginInfo) -> impl Iterator<Item = Export> + '_ {
    let events = info.event_types.iter().map(|t| match t {
        EventType::SendingEvent => Export::SendingEvent,
        EventType::MonitoringEvent => Export::MonitoringEvent,
    });
    let others = [
        (!info.routes.is_empty()).then_some(Export::Route),
        info.timer_ms.map(|_| Export::Tick),
        info.on_message.then_some(Export::OnMessage),
    ];
    events.chain(others.into_iter().flatten())
}

impl InstanceFactory for WasmFactory {
    fn kind(&self) -> PluginKind {
        PluginKind::Wasm
    }

    fn info(&self) -> &PluginInfo {
        &self.info
    }

    fn instantiate(&self) -> Result<Box<dyn PluginInstance>, CallError> {
        let mut instance = Instance::new(self.runtime, &self.recipe)?;
        let out = instance.call(Export::Initialize, &self.settings)?;
        let initialized: Initialized = if out.is_empty() {
            Initialized::default()
        } else {
            serde_json::from_slice(out).map_err(|source| CallError::InvalidOutput {
                export: Export::Initialize.name(),
                source,
            })?
        };
        tracing::debug!(plugin = %self.recipe.plugin.name, "wasm instance created");
        Ok(Box::new(WasmPlugin {
            instance,
            timer_ms: initialized.timer_ms,
            framed_input: self.info.framed_input,
        }))
    }
}

/// Compiling a test module needs the compiler.
#[cfg(all(test, feature = "cranelift"))]
mod tests {
    use super::*;

    /// A module with one function import, `<module>.fd_write: () -> ()`.
    fn importing(module: &str) -> Vec<u8> {
        let mut bytes = b"\0asm\x01\0\0\0".to_vec();
        bytes.extend([0x01, 0x04, 0x01, 0x60, 0x00, 0x00]); // types: one `() -> ()`
        let mut import = vec![0x01, module.len() as u8];
        import.extend(module.as_bytes());
        import.push(8);
        import.extend(b"fd_write");
        import.extend([0x00, 0x00]); // a function of type 0
        bytes.extend([0x02, import.len() as u8]);
        bytes.extend(import);
        bytes
    }

    /// What decides that a build without WASI refuses a plugin (`LoadFailure::NoWasi`)
    /// and that a build with it gives the plugin a WASI context.
    #[test]
    fn wasip1_plugins_are_told_by_their_imports() {
        let engine = engine::engine_for(None).unwrap();
        let wasi = wasmtime::Module::new(&engine, importing(WASI_P1)).unwrap();
        assert!(uses_wasi(&wasi));
        let plain = wasmtime::Module::new(&engine, importing("extism:host/env")).unwrap();
        assert!(!uses_wasi(&plain));
    }
}
