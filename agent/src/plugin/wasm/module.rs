//! From a plugin file to a compiled module. A precompiled artifact (made by `outpost
//! compile`) is loaded as it is; a `.wasm` module is compiled — through the
//! compiled-plugin cache — in builds with the `cranelift` feature, and refused by
//! runtime-only builds.

use std::path::Path;

use wasmtime::{Engine, Module, Precompiled};

#[cfg(feature = "cranelift")]
pub use super::cache::Cache;

/// Stand-in for the cache in builds that cannot compile (nothing to cache).
#[cfg(not(feature = "cranelift"))]
pub struct Cache;

/// Why a plugin file did not give a module.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    #[error("cannot read: {0}")]
    Read(#[source] std::io::Error),
    #[error(
        "cannot load the precompiled plugin: {0}. Precompile the .wasm again with this \
         agent's `outpost compile` (for a device: `outpost compile --target <triple>`)"
    )]
    Incompatible(String),
    #[error("a WebAssembly component, not a core module: Extism plugins are core modules")]
    Component,
    #[cfg(not(feature = "cranelift"))]
    #[error(
        "a plain .wasm module, and this agent was built without a compiler (runtime-only): \
         precompile it with `outpost compile {0}` on a machine with the default build, \
         and put the .cwasm next to it"
    )]
    NeedsCompiler(String),
    #[error("not a loadable WASM module: {0}")]
    Invalid(String),
}

/// Loads the module in `path` on `engine`.
pub fn load(engine: &Engine, path: &Path, cache: Option<&Cache>) -> Result<Module, ModuleError> {
    let bytes = std::fs::read(path).map_err(ModuleError::Read)?;
    match Engine::detect_precompiled(&bytes) {
        Some(Precompiled::Module) => deserialize(engine, &bytes),
        Some(Precompiled::Component) => Err(ModuleError::Component),
        None => compile(engine, &bytes, path, cache),
    }
}

/// Loads a precompiled artifact. Wasmtime checks that it was made by the same wasmtime
/// version, for this architecture and CPU features, and with compatible engine
/// settings (memory layout, epochs, wasm features); each mismatch is named.
fn deserialize(engine: &Engine, bytes: &[u8]) -> Result<Module, ModuleError> {
    // SAFETY: `deserialize` runs the artifact's machine code later, unchecked beyond the
    // compatibility checks above. Precompiled plugins are therefore as trusted as the
    // agent binary: they come from the operator's plugin directory (README: only the
    // operator may write it). The bytes are copied, so the file may change afterwards.
    unsafe { Module::deserialize(engine, bytes) }
        .map_err(|e| ModuleError::Incompatible(format!("{e:#}")))
}

#[cfg(feature = "cranelift")]
fn compile(
    engine: &Engine,
    bytes: &[u8],
    _path: &Path,
    cache: Option<&Cache>,
) -> Result<Module, ModuleError> {
    match cache {
        Some(cache) => cache.module(engine, bytes),
        None => Module::new(engine, bytes).map_err(|e| ModuleError::Invalid(format!("{e:#}"))),
    }
}

#[cfg(not(feature = "cranelift"))]
fn compile(
    _engine: &Engine,
    bytes: &[u8],
    path: &Path,
    _cache: Option<&Cache>,
) -> Result<Module, ModuleError> {
    if bytes.starts_with(b"\0asm") {
        Err(ModuleError::NeedsCompiler(path.display().to_string()))
    } else {
        Err(ModuleError::Invalid(
            "neither a WASM module nor a precompiled plugin".into(),
        ))
    }
}
