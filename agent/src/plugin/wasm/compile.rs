//! `outpost compile`: a `.wasm` plugin to a precompiled artifact (`.cwasm`) that agents
//! load without compiling — the only kind a runtime-only build loads.
//!
//! The artifact is made with the engine settings of [`super::engine::config`] for the
//! chosen target, so an agent of the same version on that target accepts it, and any
//! other agent refuses it with the reason.

use std::path::{Path, PathBuf};

use super::engine::EngineError;

/// Why a plugin could not be precompiled.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("{} is not a valid WASM module: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error("this agent was built without a compiler (runtime-only); run `outpost compile` with the default build")]
    NoCompiler,
}

/// Where the artifact goes by default: beside the module, as `<name>.cwasm`.
pub fn default_output(input: &Path) -> PathBuf {
    input.with_extension("cwasm")
}

/// Precompiles `input` for `target` (this machine if `None`) into `output` (default
/// [`default_output`]); returns the path written.
#[cfg(feature = "cranelift")]
pub fn compile(
    input: &Path,
    target: Option<&str>,
    output: Option<&Path>,
) -> Result<PathBuf, CompileError> {
    let wasm = std::fs::read(input).map_err(|source| CompileError::Read {
        path: input.to_owned(),
        source,
    })?;
    if !super::module::is_wasm(&wasm) {
        return Err(CompileError::Invalid {
            path: input.to_owned(),
            message: "not a WebAssembly binary (no `\\0asm` header)".into(),
        });
    }
    let engine = super::engine::engine_for(target)?;
    let artifact = engine
        .precompile_module(&wasm)
        .map_err(|e| CompileError::Invalid {
            path: input.to_owned(),
            message: format!("{e:#}"),
        })?;
    let output = output.map_or_else(|| default_output(input), Path::to_owned);
    super::cache::write_atomically(&output, &artifact).map_err(|source| CompileError::Write {
        path: output.clone(),
        source,
    })?;
    Ok(output)
}

/// Runtime-only builds cannot compile.
#[cfg(not(feature = "cranelift"))]
pub fn compile(
    _input: &Path,
    _target: Option<&str>,
    _output: Option<&Path>,
) -> Result<PathBuf, CompileError> {
    Err(CompileError::NoCompiler)
}
