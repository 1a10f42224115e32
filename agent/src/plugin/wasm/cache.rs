//! The compiled-plugin cache (`<data_dir>/wasm-cache`): a restart loads machine code
//! instead of running Cranelift again — faster start-up on slow boards, and the
//! compiler's pages stay untouched.
//!
//! One file per module and engine: `<sha256 of the module and the engine's
//! compatibility hash>.cwasm`, written to a temporary file, synced and renamed, so a
//! reader never sees a partial file. A file that does not load (another wasmtime,
//! damage) is compiled again and replaced. Safe to delete at any time.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use ring::digest::{Context, SHA256};
use wasmtime::{Engine, Module};

use super::module::{Digest, ModuleError};

/// The cache directory.
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// Opens (creates) `<data_dir>/wasm-cache`.
    pub fn open(data_dir: &Path) -> std::io::Result<Self> {
        let dir = data_dir.join("wasm-cache");
        std::fs::create_dir_all(&dir)?;
        Ok(Cache { dir })
    }

    /// The module compiled from `wasm` (whose SHA-256 is `digest`), from the cache or
    /// compiled now (and cached).
    pub fn module(
        &self,
        engine: &Engine,
        wasm: &[u8],
        digest: &Digest,
    ) -> Result<Module, ModuleError> {
        let path = self.dir.join(format!("{}.cwasm", key(engine, digest)));
        if path.is_file() {
            // SAFETY: files in the cache are written only by `store` below (complete,
            // synced, then renamed into place, never modified after), from modules this
            // agent compiled; the data dir belongs to the agent. Wasmtime still checks
            // that the file fits this engine.
            match unsafe { Module::deserialize_file(engine, &path) } {
                Ok(module) => return Ok(module),
                Err(e) => tracing::warn!(file = %path.display(), error = %format!("{e:#}"),
                    "cached plugin does not load; compiling again"),
            }
        }
        let module =
            Module::new(engine, wasm).map_err(|e| ModuleError::Invalid(format!("{e:#}")))?;
        match module.serialize() {
            Ok(bytes) => {
                if let Err(e) = write_atomically(&path, &bytes) {
                    tracing::warn!(file = %path.display(), error = %e,
                        "cannot write the compiled-plugin cache");
                }
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "cannot serialise a compiled plugin")
            }
        }
        Ok(module)
    }
}

/// The cache key: the module's bytes and everything about the engine that decides
/// whether compiled code fits it.
fn key(engine: &Engine, wasm: &[u8]) -> String {
    let mut engine_hash = DefaultHasher::new();
    engine
        .precompile_compatibility_hash()
        .hash(&mut engine_hash);
    let mut digest = Context::new(&SHA256);
    digest.update(wasm);
    digest.update(&engine_hash.finish().to_le_bytes());
    digest
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes `bytes` to `path` so that `path` is either absent or complete: a temporary
/// file in the same directory, synced, then renamed over `path`.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
