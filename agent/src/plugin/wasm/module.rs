//! From a plugin file to a compiled module. A precompiled artifact (made by `outpost
//! compile`) is loaded as it is; a `.wasm` module is compiled — through the
//! compiled-plugin cache — in builds with the `cranelift` feature, and refused by
//! runtime-only builds.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use ring::digest::{digest, SHA256};
use wasmtime::{Engine, Module, Precompiled};

#[cfg(feature = "cranelift")]
use super::cache::Cache;
use crate::sync;

/// SHA-256 of a plugin file.
pub type Digest = [u8; 32];

/// Loads the plugin modules of one `PluginHost::load`: plain modules through the
/// compiled-plugin cache (builds with a compiler), and each distinct file once —
/// plugins loaded from identical files (one plugin under two names, with different
/// settings) share one module, so its machine code is mapped once.
pub struct Loader {
    #[cfg(feature = "cranelift")]
    cache: Cache,
    loaded: Mutex<HashMap<Digest, Module>>,
}

impl Loader {
    /// A loader whose compiled-plugin cache (if this build compiles) is under
    /// `data_dir`.
    pub fn new(data_dir: &Path) -> std::io::Result<Self> {
        #[cfg(not(feature = "cranelift"))]
        let _ = data_dir;
        Ok(Loader {
            #[cfg(feature = "cranelift")]
            cache: Cache::open(data_dir)?,
            loaded: Mutex::new(HashMap::new()),
        })
    }

    /// The module in `path`, for `engine`.
    pub fn load(&self, engine: &Engine, path: &Path) -> Result<Module, ModuleError> {
        let bytes = std::fs::read(path).map_err(ModuleError::Read)?;
        let mut key = [0; 32];
        key.copy_from_slice(digest(&SHA256, &bytes).as_ref());
        let mut loaded = sync::lock(&self.loaded);
        if let Some(module) = loaded.get(&key) {
            return Ok(module.clone());
        }
        let module = match Engine::detect_precompiled(&bytes) {
            Some(Precompiled::Module) => deserialize(engine, &bytes),
            Some(Precompiled::Component) => Err(ModuleError::Component),
            None if !is_wasm(&bytes) => Err(ModuleError::Invalid(
                "neither a WebAssembly module (.wasm) nor a precompiled plugin (.cwasm)".into(),
            )),
            None => self.compile(engine, &bytes, &key, path),
        }?;
        loaded.insert(key, module.clone());
        Ok(module)
    }

    #[cfg(feature = "cranelift")]
    fn compile(
        &self,
        engine: &Engine,
        bytes: &[u8],
        key: &Digest,
        _path: &Path,
    ) -> Result<Module, ModuleError> {
        self.cache.module(engine, bytes, key)
    }

    #[cfg(not(feature = "cranelift"))]
    fn compile(
        &self,
        _engine: &Engine,
        _bytes: &[u8],
        _key: &Digest,
        path: &Path,
    ) -> Result<Module, ModuleError> {
        Err(ModuleError::NeedsCompiler(path.display().to_string()))
    }
}

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

/// Whether `bytes` start like a WebAssembly binary.
pub fn is_wasm(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\0asm")
}

/// Loads a precompiled artifact. Wasmtime checks that it was made by the same wasmtime
/// version, for this architecture and CPU features, and with compatible engine
/// settings (memory layout, epochs, wasm features); each mismatch is named.
fn deserialize(engine: &Engine, bytes: &[u8]) -> Result<Module, ModuleError> {
    // SAFETY: `deserialize` runs the artifact's machine code later, unchecked beyond the
    // compatibility checks above. Precompiled plugins are therefore as trusted as the
    // agent binary: they come from the operator's plugin directory (README: only the
    // operator may write it). The bytes are copied, so the file may change afterwards.
    unsafe { Module::deserialize(engine, bytes) }.map_err(|e| {
        ModuleError::Incompatible(format!(
            "{e:#} (this agent: {}-{})",
            std::env::consts::ARCH,
            std::env::consts::OS
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest valid module: the header alone.
    const EMPTY_MODULE: &[u8] = b"\0asm\x01\0\0\0";

    fn file(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[cfg(feature = "cranelift")]
    #[test]
    fn an_artifact_of_another_engine_config_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let mut other = super::super::engine::config(None).unwrap();
        other.memory_reservation(1 << 30);
        let artifact = Engine::new(&other)
            .unwrap()
            .precompile_module(EMPTY_MODULE)
            .unwrap();
        let path = file(dir.path(), "p.cwasm", &artifact);
        let engine = super::super::engine::engine_for(None).unwrap();
        let loader = Loader::new(dir.path()).unwrap();
        let e = loader.load(&engine, &path).unwrap_err().to_string();
        assert!(e.contains("memory reservation"), "{e}");
        assert!(e.contains("outpost compile"), "{e}");

        let ours = engine.precompile_module(EMPTY_MODULE).unwrap();
        let path = file(dir.path(), "q.cwasm", &ours);
        assert!(loader.load(&engine, &path).is_ok());
    }

    #[cfg(feature = "cranelift")]
    #[test]
    fn identical_files_share_one_module_and_compile_once() {
        let dir = tempfile::tempdir().unwrap();
        let engine = super::super::engine::engine_for(None).unwrap();
        let loader = Loader::new(dir.path()).unwrap();
        let a = loader
            .load(&engine, &file(dir.path(), "a.wasm", EMPTY_MODULE))
            .unwrap();
        let b = loader
            .load(&engine, &file(dir.path(), "b.wasm", EMPTY_MODULE))
            .unwrap();
        assert!(Module::same(&a, &b));
        let cached = std::fs::read_dir(dir.path().join("wasm-cache")).unwrap();
        assert_eq!(cached.count(), 1);
    }

    #[cfg(not(feature = "cranelift"))]
    #[test]
    fn a_runtime_only_build_refuses_plain_modules_and_says_what_to_run() {
        let dir = tempfile::tempdir().unwrap();
        let engine = super::super::engine::engine_for(None).unwrap();
        let loader = Loader::new(dir.path()).unwrap();
        let path = file(dir.path(), "p.wasm", EMPTY_MODULE);
        let e = loader.load(&engine, &path).unwrap_err().to_string();
        assert!(e.contains("outpost compile") && e.contains("p.wasm"), "{e}");
    }

    #[test]
    fn junk_is_neither_a_module_nor_an_artifact() {
        let dir = tempfile::tempdir().unwrap();
        let engine = super::super::engine::engine_for(None).unwrap();
        let loader = Loader::new(dir.path()).unwrap();
        let path = file(dir.path(), "p.wasm", b"\x7fELF but not really");
        let e = loader.load(&engine, &path).unwrap_err().to_string();
        assert!(e.contains("neither"), "{e}");
    }
}
