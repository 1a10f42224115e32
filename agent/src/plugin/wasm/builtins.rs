//! Extism's built-in host functions (`extism:host/env`): config, variables, logging and
//! HTTP, with Extism's semantics. Each takes ownership of its handle arguments and
//! frees them, as Extism's do.
//!
//! Outpost gives plugins no Extism config (their settings arrive in `initialize`) and
//! no network: `http_request` fails the call, as it did under Extism built without its
//! HTTP client.

use outpost_pdk::host::LogLevel;
use outpost_pdk::native::HostServices;
use tracing::level_filters::LevelFilter;
use tracing::Level;
use wasmtime::Linker;

use super::kernel::MODULE;
use super::state::{Ctx, HostState};

/// Adds the built-in functions to `linker`.
pub fn define(l: &mut Linker<HostState>) -> wasmtime::Result<()> {
    l.func_wrap(MODULE, "config_get", |mut c: Ctx<'_>, key: u64| -> u64 {
        c.data_mut().arena.free(key);
        0
    })?;
    l.func_wrap(MODULE, "var_get", var_get)?;
    l.func_wrap(MODULE, "var_set", var_set)?;
    l.func_wrap(MODULE, "http_request", http_request)?;
    l.func_wrap(MODULE, "http_status_code", || -> i32 { 0 })?;
    l.func_wrap(MODULE, "http_headers", || -> u64 { 0 })?;
    l.func_wrap(MODULE, "get_log_level", get_log_level)?;
    for (name, level) in [
        ("log_trace", LogLevel::Trace),
        ("log_debug", LogLevel::Debug),
        ("log_info", LogLevel::Info),
        ("log_warn", LogLevel::Warn),
        ("log_error", LogLevel::Error),
    ] {
        l.func_wrap(MODULE, name, move |mut c: Ctx<'_>, message: u64| {
            log(&mut c, level, message)
        })?;
    }
    Ok(())
}

fn var_get(mut c: Ctx<'_>, key: u64) -> wasmtime::Result<u64> {
    let s = c.data_mut();
    let name = s.arena.block(key).to_vec();
    s.arena.free(key);
    let value = s.vars.get(&name).map(<[u8]>::to_vec).unwrap_or_default();
    Ok(s.give(&value)?)
}

fn var_set(mut c: Ctx<'_>, key: u64, value: u64) -> wasmtime::Result<()> {
    let s = c.data_mut();
    let name = s.arena.block(key).to_vec();
    let result = match value {
        0 => s.vars.set(&name, None),
        v => {
            let bytes = s.arena.block(v).to_vec();
            s.arena.free(v);
            s.vars.set(&name, Some(&bytes))
        }
    };
    s.arena.free(key);
    Ok(result?)
}

fn http_request(mut c: Ctx<'_>, request: u64, body: u64) -> wasmtime::Result<u64> {
    let s = c.data_mut();
    s.arena.free(request);
    s.arena.free(body);
    wasmtime::bail!(
        "http_request is not available: plugins have no network access; \
         return messages for a sink instead"
    )
}

/// The agent's log filter as Extism encodes it (trace 0 … error 4, off `i32::MAX`).
fn get_log_level() -> i32 {
    match LevelFilter::current().into_level() {
        None => i32::MAX,
        Some(Level::TRACE) => 0,
        Some(Level::DEBUG) => 1,
        Some(Level::INFO) => 2,
        Some(Level::WARN) => 3,
        Some(Level::ERROR) => 4,
    }
}

fn log(c: &mut Ctx<'_>, level: LogLevel, message: u64) {
    let s = c.data_mut();
    let text = String::from_utf8_lossy(s.arena.block(message));
    s.plugin.services.log(level, &text);
    s.arena.free(message);
}
