//! Everything a plugin may import, in one linker shared by all plugins: the Extism
//! kernel and built-ins (`extism:host/env`), Outpost's host functions
//! (`extism:host/user`), the bulk copies (`outpost:host/io`) and, in builds with the
//! `wasi` feature, WASI preview 1. All are store-independent, so one linker serves
//! every store, and a module's imports are resolved once, when it is loaded.

use wasmtime::Linker;

use super::state::HostState;

/// Defines every import in `linker`.
pub fn define(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    super::kernel::define(linker)?;
    super::builtins::define(linker)?;
    super::host_fns::define(linker)?;
    super::bulk_io::define(linker)?;
    #[cfg(feature = "wasi")]
    super::wasi::define(linker)?;
    Ok(())
}
