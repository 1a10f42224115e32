//! Services the agent offers to plugins: logging into the agent's tracing (tagged with
//! the plugin's name), a clock, and a small persistent key-value store per plugin.
//!
//! In a WASM build these call the host functions of the [ABI](crate::abi); in a native
//! build they call the agent directly through [`crate::native::HostServices`].

use serde::{Deserialize, Serialize};

/// Severity of a plugin log record (in Extism's order: trace 0 … error 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Trace = 0,
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
}

impl LogLevel {
    /// The level's name, as passed over the ABI.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }

    /// Parses an ABI level name; unknown names are `Info`.
    pub fn parse(s: &str) -> LogLevel {
        match s {
            "trace" => LogLevel::Trace,
            "debug" => LogLevel::Debug,
            "warn" => LogLevel::Warn,
            "error" => LogLevel::Error,
            _ => LogLevel::Info,
        }
    }
}

#[cfg(target_arch = "wasm32")]
mod imports {
    use extism_pdk::host_fn;

    #[host_fn]
    extern "ExtismHost" {
        pub fn outpost_log(level: &str, message: &str);
        pub fn outpost_now_ms() -> u64;
        pub fn outpost_kv_get(key: &str) -> Vec<u8>;
        pub fn outpost_kv_set(key: &str, value: &[u8]) -> String;
        pub fn outpost_kv_remove(key: &str) -> String;
        pub fn outpost_agent_stats() -> Vec<u8>;
    }
}

/// Logging into the agent's log, tagged with the plugin's name.
pub mod log {
    use super::LogLevel;

    /// Logs `message` at `level`.
    pub fn log(level: LogLevel, message: &str) {
        #[cfg(target_arch = "wasm32")]
        // SAFETY: `get_log_level` is the Extism built-in without arguments (the agent's
        // most verbose enabled level: trace 0 … error 4); `outpost_log` is the host
        // function of the ABI with exactly this signature, and extism-pdk passes both
        // strings as memory blocks it owns.
        unsafe {
            if (level as i32) < extism_pdk::extism::get_log_level() {
                return;
            }
            let _ = super::imports::outpost_log(level.as_str(), message);
        }
        #[cfg(not(target_arch = "wasm32"))]
        crate::native::with_current(
            |host| host.log(level, message),
            || eprintln!("[{}] {message}", level.as_str()),
        );
    }

    pub fn trace(message: &str) {
        log(LogLevel::Trace, message)
    }
    pub fn debug(message: &str) {
        log(LogLevel::Debug, message)
    }
    pub fn info(message: &str) {
        log(LogLevel::Info, message)
    }
    pub fn warn(message: &str) {
        log(LogLevel::Warn, message)
    }
    pub fn error(message: &str) {
        log(LogLevel::Error, message)
    }
}

/// The agent's wall clock, in milliseconds since the Unix epoch.
///
/// WASM plugins have no clock of their own (no WASI), so they ask the host.
pub fn now_ms() -> i64 {
    #[cfg(target_arch = "wasm32")]
    // SAFETY: a host function of the ABI without arguments; the result is a block the
    // host allocated, read by extism-pdk.
    unsafe {
        imports::outpost_now_ms().map_or(0, |ms| ms as i64)
    }
    #[cfg(not(target_arch = "wasm32"))]
    crate::native::with_current(|host| host.now_ms(), crate::native::system_now_ms)
}

/// Figures about the agent (queue depth, data dir, device id).
pub fn agent_stats() -> crate::AgentStats {
    #[cfg(target_arch = "wasm32")]
    {
        // SAFETY: a host function of the ABI without arguments, returning a block.
        unsafe { imports::outpost_agent_stats() }
            .ok()
            .and_then(|json| serde_json::from_slice(&json).ok())
            .unwrap_or_default()
    }
    #[cfg(not(target_arch = "wasm32"))]
    crate::native::with_current(|host| host.agent_stats(), crate::AgentStats::default)
}

/// A small persistent key-value store, private to the plugin and kept across restarts
/// (in the agent's database). The agent caps its total size per plugin.
pub mod kv {
    use std::fmt;

    use crate::{Error, Result};

    /// Why a key-value operation failed. Native plugins get it as it is; WASM plugins
    /// get its text through the ABI (whose error convention is text).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum KvError {
        /// The key is empty or longer than `max` bytes.
        BadKey { max: usize },
        /// The value is longer than `max` bytes.
        ValueTooLarge { max: usize },
        /// The plugin's store would exceed its cap of `max` bytes.
        Full { max: u64 },
        /// The agent's storage failed; the reason, for the logs.
        Storage(String),
    }

    impl fmt::Display for KvError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                KvError::BadKey { max } => write!(f, "kv keys must be 1..={max} bytes"),
                KvError::ValueTooLarge { max } => {
                    write!(f, "kv values must be at most {max} bytes")
                }
                KvError::Full { max } => write!(f, "kv store would exceed its {max} bytes"),
                KvError::Storage(reason) => write!(f, "kv storage: {reason}"),
            }
        }
    }

    impl std::error::Error for KvError {}

    /// The value under `key`, if any.
    pub fn get(key: &str) -> Result<Option<Vec<u8>>> {
        #[cfg(target_arch = "wasm32")]
        {
            // SAFETY: the ABI's `outpost_kv_get(key) -> block`, as declared above.
            let tagged = unsafe { super::imports::outpost_kv_get(key) }
                .map_err(|e| Error::msg(format!("kv get: {e}")))?;
            match tagged.split_first() {
                Some((1, value)) => Ok(Some(value.to_vec())),
                Some((2, reason)) => Err(Error::msg(format!(
                    "kv get: {}",
                    String::from_utf8_lossy(reason)
                ))),
                _ => Ok(None),
            }
        }
        #[cfg(not(target_arch = "wasm32"))]
        crate::native::with_current(
            |host| host.kv_get(key).map_err(Error::from),
            || Err(Error::msg("kv: no agent to store into")),
        )
    }

    /// Stores `value` under `key`. Fails if the plugin's store would exceed its cap.
    pub fn set(key: &str, value: &[u8]) -> Result<()> {
        #[cfg(target_arch = "wasm32")]
        {
            // SAFETY: the ABI's `outpost_kv_set(key, value) -> error text`.
            let err = unsafe { super::imports::outpost_kv_set(key, value) }
                .map_err(|e| Error::msg(format!("kv set: {e}")))?;
            empty_or_error(err)
        }
        #[cfg(not(target_arch = "wasm32"))]
        crate::native::with_current(
            |host| host.kv_set(key, value).map_err(Error::from),
            || Err(Error::msg("kv: no agent to store into")),
        )
    }

    /// The ABI's "empty on success, else the error text".
    #[cfg(target_arch = "wasm32")]
    fn empty_or_error(err: String) -> Result<()> {
        if err.is_empty() {
            Ok(())
        } else {
            Err(Error::msg(err))
        }
    }

    /// Removes `key`.
    pub fn delete(key: &str) -> Result<()> {
        #[cfg(target_arch = "wasm32")]
        {
            // SAFETY: the ABI's `outpost_kv_remove(key) -> error text`.
            let err = unsafe { super::imports::outpost_kv_remove(key) }
                .map_err(|e| Error::msg(format!("kv delete: {e}")))?;
            empty_or_error(err)
        }
        #[cfg(not(target_arch = "wasm32"))]
        crate::native::with_current(
            |host| host.kv_delete(key).map_err(Error::from),
            || Err(Error::msg("kv: no agent to store into")),
        )
    }
}
