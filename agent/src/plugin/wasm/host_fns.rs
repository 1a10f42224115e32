//! Outpost's host functions for WASM plugins (`extism:host/user`, see
//! `outpost_pdk::abi`): logging, clock, key-value store, agent figures. Arguments and
//! results are kernel blocks, as for any Extism host function; the work is done by the
//! plugin's [`PluginServices`](crate::plugin::PluginServices), which native plugins
//! call directly.

use outpost_pdk::abi::host_functions as names;
use outpost_pdk::host::LogLevel;
use outpost_pdk::kv::KvError;
use outpost_pdk::native::HostServices;
use wasmtime::Linker;

use super::state::{Ctx, HostState};

/// Where Extism PDKs import host functions from by default.
pub const MODULE: &str = "extism:host/user";

/// A host function's argument that must be text.
#[derive(Debug, thiserror::Error)]
#[error("{function}: argument is not UTF-8")]
struct NotText {
    function: &'static str,
}

/// The block at `handle` as text.
fn text(c: &Ctx<'_>, handle: u64, function: &'static str) -> Result<String, NotText> {
    String::from_utf8(c.data().arena.block(handle).to_vec()).map_err(|_| NotText { function })
}

/// Hands `bytes` to the guest as a new block.
fn give(c: &mut Ctx<'_>, bytes: &[u8]) -> wasmtime::Result<u64> {
    Ok(c.data_mut().give(bytes)?)
}

/// Adds Outpost's host functions to `linker`.
pub fn define(l: &mut Linker<HostState>) -> wasmtime::Result<()> {
    l.func_wrap(MODULE, names::LOG, log)?;
    l.func_wrap(MODULE, names::NOW_MS, |mut c: Ctx<'_>| {
        let now = c.data().plugin.services.now_ms();
        give(&mut c, &now.to_le_bytes())
    })?;
    l.func_wrap(MODULE, names::KV_GET, kv_get)?;
    l.func_wrap(MODULE, names::KV_SET, kv_set)?;
    l.func_wrap(MODULE, names::KV_REMOVE, |mut c: Ctx<'_>, key: u64| {
        let key = text(&c, key, names::KV_REMOVE)?;
        let result = c.data().plugin.services.kv_delete(&key);
        give(&mut c, error_text(result).as_bytes())
    })?;
    l.func_wrap(MODULE, names::KV_DELETE, |c: Ctx<'_>, key: u64| {
        let key = text(&c, key, names::KV_DELETE)?;
        // No result to carry the error: the call fails with it.
        c.data()
            .plugin
            .services
            .kv_delete(&key)
            .map_err(wasmtime::Error::msg)
    })?;
    l.func_wrap(MODULE, names::AGENT_STATS, |mut c: Ctx<'_>| {
        let stats = c.data().plugin.services.agent_stats();
        give(&mut c, &serde_json::to_vec(&stats)?)
    })?;
    Ok(())
}

fn log(c: Ctx<'_>, level: u64, message: u64) -> wasmtime::Result<()> {
    let level = text(&c, level, names::LOG)?;
    let arena = &c.data().arena;
    let message = String::from_utf8_lossy(arena.block(message));
    c.data()
        .plugin
        .services
        .log(LogLevel::parse(&level), &message);
    Ok(())
}

fn kv_get(mut c: Ctx<'_>, key: u64) -> wasmtime::Result<u64> {
    let key = text(&c, key, names::KV_GET)?;
    let tagged = match c.data().plugin.services.kv_get(&key) {
        Ok(Some(v)) => [&[1u8][..], &v].concat(),
        Ok(None) => vec![0],
        Err(e) => [&[2u8][..], e.to_string().as_bytes()].concat(),
    };
    give(&mut c, &tagged)
}

fn kv_set(mut c: Ctx<'_>, key: u64, value: u64) -> wasmtime::Result<u64> {
    let key = text(&c, key, names::KV_SET)?;
    let s = c.data();
    let result = s.plugin.services.kv_set(&key, s.arena.block(value));
    give(&mut c, error_text(result).as_bytes())
}

/// The ABI's "empty on success, else the error text".
fn error_text(result: Result<(), KvError>) -> String {
    result.err().map(|e| e.to_string()).unwrap_or_default()
}
