//! Logs with `tracing`: human-readable by default, JSON on request, `RUST_LOG` respected.
//!
//! `RUST_LOG` takes comma-separated `level` and `target=level` directives (e.g.
//! `info,outpost=debug,sled=off`): tracing-subscriber's `Targets` filter, not its
//! `EnvFilter`, whose span and regex matching cost the binary about half a megabyte.

use std::io::IsTerminal;
use std::str::FromStr;

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;

/// Filter used when `RUST_LOG` is unset or not understood.
const DEFAULT_FILTER: &str = "info,cranelift_codegen=warn,wasmtime=warn,sled=warn";

/// The filter `RUST_LOG` asks for, or the default (with a note on stderr if it was not
/// understood).
fn filter() -> Targets {
    let default = || Targets::from_str(DEFAULT_FILTER).unwrap_or_default();
    match std::env::var("RUST_LOG") {
        Ok(text) => Targets::from_str(&text).unwrap_or_else(|e| {
            eprintln!("RUST_LOG `{text}` not understood ({e}); using `{DEFAULT_FILTER}`");
            default()
        }),
        Err(_) => default(),
    }
}

/// Installs the global subscriber (stderr). Safe to call more than once.
pub fn init(format: LogFormat) {
    let ansi = std::io::stderr().is_terminal();
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let registry = tracing_subscriber::registry().with(filter());
    let _ = match format {
        LogFormat::Text => registry.with(fmt).try_init(),
        LogFormat::Json => registry.with(fmt.json().flatten_event(true)).try_init(),
    };
}
