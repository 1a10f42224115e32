//! Logs with `tracing`: human-readable by default, JSON on request, `RUST_LOG` respected.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Filter used when `RUST_LOG` is unset. Extism logs every plugin error itself at
/// error level; the agent reports those (with the plugin's name), so it is silenced.
const DEFAULT_FILTER: &str = "info,extism=off,cranelift_codegen=warn,wasmtime=warn,sled=warn";

/// Installs the global subscriber (stderr). Safe to call more than once.
pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
