//! WASI preview 1 for plugins built for `wasm32-wasip1`, confined to what the plugin's
//! sandbox grants: the directories of `allowed_paths` (read-write) and
//! `read_only_paths`; no environment, no arguments, stdin closed, stdout and stderr
//! discarded, no sockets.
//!
//! Only instances of modules that import `wasi_snapshot_preview1` get a context.

use std::path::PathBuf;

use wasmtime::Linker;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use super::state::HostState;
use crate::config::SandboxConfig;

/// An instance's WASI context (empty until its plugin needs one).
#[derive(Default)]
pub struct Wasi {
    ctx: Option<WasiP1Ctx>,
}

impl Wasi {
    fn ctx(&mut self) -> &mut WasiP1Ctx {
        // Modules without WASI imports never call here; an empty context would grant
        // nothing anyway.
        self.ctx
            .get_or_insert_with(|| WasiCtxBuilder::new().build_p1())
    }
}

/// The directories a plugin was granted, as (host dir, guest path, permissions).
#[derive(Debug, Clone)]
pub struct Grants(Vec<(PathBuf, String, FsPerms)>);

impl Grants {
    pub fn of(sandbox: &SandboxConfig) -> Self {
        let rw = sandbox
            .allowed_paths
            .iter()
            .map(|(h, g)| (PathBuf::from(h), g.clone(), FsPerms::ReadWrite));
        let ro = sandbox
            .read_only_paths
            .iter()
            .map(|(h, g)| (PathBuf::from(h), g.clone(), FsPerms::ReadOnly));
        Grants(rw.chain(ro).collect())
    }

    /// A new context with these grants (each instance opens the directories anew).
    pub fn context(&self) -> anyhow::Result<Wasi> {
        let mut builder = WasiCtxBuilder::new();
        // Plugins are called on blocking threads: no need to hop to another one.
        builder.allow_blocking_current_thread(true);
        for (host, guest, perms) in &self.0 {
            builder
                .preopened_dir(host, guest, *perms)
                .map_err(|e| anyhow::anyhow!("cannot open {}: {e:#}", host.display()))?;
        }
        Ok(Wasi {
            ctx: Some(builder.build_p1()),
        })
    }
}

/// Adds the WASI preview 1 functions to `linker`.
pub fn define(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p1::add_to_linker_sync(linker, |s: &mut HostState| s.wasi.ctx())
}
