//! WASM plugins, run by Extism in a sandbox: no filesystem, network or environment
//! unless granted, a memory cap and a call timeout.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use extism::{CompiledPlugin, Manifest, PluginBuilder, Wasm};
use outpost_pdk::abi::exports;
use outpost_pdk::{
    EventType, Initialized, Output, PluginInfo, Point, RouteRequest, RouteResponse, SourceMessage,
};

use super::instance::{
    CallError, FaultKind, InstanceFactory, PluginInstance, PluginKind, SendingInput,
};
use super::services::{host_functions, PluginServices};
use super::LoadError;
use crate::config::SandboxConfig;

/// A compiled WASM plugin: instantiating it again (after a fault, or for another pool
/// slot) does not recompile.
pub struct WasmFactory {
    name: String,
    compiled: CompiledPlugin,
    info: PluginInfo,
    settings: Vec<u8>,
}

const WASM_PAGE: u64 = 64 * 1024;

impl WasmFactory {
    /// Compiles `path`, asks the plugin to describe itself and checks that it exports
    /// what it declares.
    pub fn load(
        name: &str,
        path: &Path,
        settings: &serde_json::Map<String, serde_json::Value>,
        sandbox: &SandboxConfig,
        services: Arc<PluginServices>,
        cache_config: &Path,
    ) -> Result<Self, LoadError> {
        let file_error = |message: String| LoadError::Plugin {
            plugin: name.to_owned(),
            file: Some(path.to_owned()),
            message,
        };
        let wasm = std::fs::read(path).map_err(|e| file_error(format!("cannot read: {e}")))?;
        let pages = (u64::from(sandbox.max_memory_mb) << 20) / WASM_PAGE;
        let mut manifest = Manifest::new([Wasm::data(wasm)])
            .with_memory_max(pages.min(u64::from(u32::MAX)) as u32)
            .with_timeout(sandbox.timeout)
            .disallow_all_hosts();
        let grants = sandbox
            .allowed_paths
            .iter()
            .map(|(host, guest)| (host.clone(), PathBuf::from(guest)))
            .chain(
                sandbox
                    .read_only_paths
                    .iter()
                    .map(|(host, guest)| (format!("ro:{host}"), PathBuf::from(guest))),
            );
        manifest = manifest.with_allowed_paths(grants);
        // WASI is linked so that wasip1 plugins load, but it has no preopened directory
        // unless granted above, no environment and no inherited stdio.
        let builder = PluginBuilder::new(manifest)
            .with_wasi(true)
            .with_cache_config(cache_config)
            .with_wasmtime_config(engine_config(sandbox))
            .with_functions(host_functions(services));
        let compiled = CompiledPlugin::new(builder)
            .map_err(|e| file_error(format!("not a loadable WASM module: {e:#}")))?;

        let mut probe = extism::Plugin::new_from_compiled(&compiled)
            .map_err(|e| file_error(format!("cannot instantiate: {e:#}")))?;
        for export in [exports::DESCRIBE, exports::INITIALIZE] {
            if !probe.function_exists(export) {
                return Err(file_error(format!("missing export `{export}`")));
            }
        }
        let info_json = call(&mut probe, exports::DESCRIBE, b"")
            .map_err(|e| file_error(format!("`describe` failed: {e}")))?;
        let info: PluginInfo = serde_json::from_slice(&info_json)
            .map_err(|e| file_error(format!("`describe` returned invalid JSON: {e}")))?;
        for needed in required_exports(&info) {
            if !probe.function_exists(needed) {
                return Err(file_error(format!(
                    "declares `{needed}` but does not export it"
                )));
            }
        }
        Ok(WasmFactory {
            name: name.to_owned(),
            compiled,
            info,
            settings: serde_json::to_vec(settings).expect("settings serialise"),
        })
    }
}

/// The engine's memory layout. Wasmtime's default reserves 4 GiB of address space plus
/// guard pages per linear memory, which fails on boards whose kernel has a 39-bit
/// address space or strict overcommit. Reserving only the plugin's memory cap (bounds
/// checks instead of guard regions) works everywhere, at a small cost per memory access.
fn engine_config(sandbox: &SandboxConfig) -> wasmtime::Config {
    let cap = u64::from(sandbox.max_memory_mb) << 20;
    let mut config = wasmtime::Config::new();
    config
        .memory_reservation(cap)
        .memory_guard_size(64 << 10)
        .memory_reservation_for_growth(0);
    config
}

/// Exports a plugin must have for what it declares.
fn required_exports(info: &PluginInfo) -> Vec<&'static str> {
    let mut needed: Vec<&'static str> = info
        .event_types
        .iter()
        .map(|t| match t {
            EventType::SendingEvent => exports::SENDING_EVENT,
            EventType::MonitoringEvent => exports::MONITORING_EVENT,
        })
        .collect();
    if !info.routes.is_empty() {
        needed.push(exports::ROUTE);
    }
    if info.timer_ms.is_some() {
        needed.push(exports::TICK);
    }
    if info.on_message {
        needed.push(exports::ON_MESSAGE);
    }
    needed
}

impl InstanceFactory for WasmFactory {
    fn kind(&self) -> PluginKind {
        PluginKind::Wasm
    }

    fn info(&self) -> &PluginInfo {
        &self.info
    }

    fn instantiate(&self) -> Result<Box<dyn PluginInstance>, CallError> {
        let mut plugin =
            extism::Plugin::new_from_compiled(&self.compiled).map_err(CallError::Instantiate)?;
        let out = call(&mut plugin, exports::INITIALIZE, &self.settings)?;
        let initialized: Initialized = if out.is_empty() {
            Initialized::default()
        } else {
            serde_json::from_slice(&out).map_err(|source| CallError::InvalidOutput {
                export: exports::INITIALIZE,
                source,
            })?
        };
        let has_finalize = plugin.function_exists(exports::FINALIZE);
        tracing::debug!(plugin = %self.name, "wasm instance created");
        Ok(Box::new(WasmInstance {
            plugin,
            has_finalize,
            timer_ms: initialized.timer_ms,
        }))
    }
}

struct WasmInstance {
    plugin: extism::Plugin,
    has_finalize: bool,
    timer_ms: Option<u64>,
}

/// Calls `export`, classifying failures per the ABI's error convention: status 1 with
/// an error message is the plugin's own error; anything else is a fault.
fn call(plugin: &mut extism::Plugin, export: &str, input: &[u8]) -> Result<Vec<u8>, CallError> {
    match plugin.call_get_error_code::<&[u8], &[u8]>(export, input) {
        Ok(out) => Ok(out.to_vec()),
        Err((e, 1)) => Err(CallError::Reported(e.to_string())),
        Err((e, _)) => {
            let root = e.root_cause().to_string();
            Err(match root.as_str() {
                "timeout" => CallError::Fault(FaultKind::Timeout, "call timed out".into()),
                "oom" => CallError::Fault(FaultKind::OutOfMemory, "memory cap reached".into()),
                _ => CallError::Fault(FaultKind::Trap, first_line(&format!("{e:#}"))),
            })
        }
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_owned()
}

impl WasmInstance {
    fn output(&mut self, export: &'static str, input: &[u8]) -> Result<Output, CallError> {
        let bytes = call(&mut self.plugin, export, input)?;
        serde_json::from_slice(&bytes).map_err(|source| CallError::InvalidOutput { export, source })
    }
}

impl PluginInstance for WasmInstance {
    fn sending_event(&mut self, input: &SendingInput) -> Result<Output, CallError> {
        self.output(exports::SENDING_EVENT, input.json())
    }

    fn monitoring_event(&mut self, points: &[Point]) -> Result<Output, CallError> {
        let json = serde_json::to_vec(points).expect("points serialise");
        self.output(exports::MONITORING_EVENT, &json)
    }

    fn tick(&mut self) -> Result<Output, CallError> {
        self.output(exports::TICK, b"")
    }

    fn route(&mut self, request: &RouteRequest) -> Result<RouteResponse, CallError> {
        let json = serde_json::to_vec(request).expect("request serialises");
        let bytes = call(&mut self.plugin, exports::ROUTE, &json)?;
        serde_json::from_slice(&bytes).map_err(|source| CallError::InvalidOutput {
            export: exports::ROUTE,
            source,
        })
    }

    fn on_message(&mut self, message: &SourceMessage) -> Result<Output, CallError> {
        let json = serde_json::to_vec(message).expect("message serialises");
        self.output(exports::ON_MESSAGE, &json)
    }

    fn timer_ms(&self) -> Option<u64> {
        self.timer_ms
    }

    fn close(&mut self) {
        if self.has_finalize {
            if let Err(e) = call(&mut self.plugin, exports::FINALIZE, b"") {
                tracing::warn!(error = %e, "plugin `finalize` failed");
            }
        }
    }
}
