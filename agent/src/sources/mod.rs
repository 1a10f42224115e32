//! Sources: where events come from besides the HTTP API (an MQTT subscription today).
//! A message from a source goes to the plugin configured for it and, once accepted, has
//! the same durable semantics as an ingest request.

mod mqtt;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use outpost_pdk::EventType;
use tokio::task::JoinHandle;

use crate::config::{Config, ConfigError, SourceConfig, SourceDelivery};
use crate::pipeline::Pipeline;
use crate::plugin::PluginHost;
use crate::shutdown::Shutdown;
use crate::sync::LastError;

/// Why a source could not be set up (a reload then changes nothing).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("source `{name}`: TLS: {error}")]
    Tls {
        name: String,
        error: crate::tls::TlsError,
    },
}

/// Live counters of one source, for health.
#[derive(Debug, Default)]
pub struct SourceState {
    pub received: AtomicU64,
    pub accepted: AtomicU64,
    /// Messages the plugin refused: acknowledged and dropped (counted here).
    pub rejected: AtomicU64,
    connected: AtomicBool,
    /// Every topic filter acknowledged by the broker (SUBACK).
    subscribed: AtomicBool,
    last_error: LastError,
}

impl SourceState {
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }
    pub fn subscribed(&self) -> bool {
        self.subscribed.load(Ordering::Relaxed)
    }
    pub fn last_error(&self) -> Option<String> {
        self.last_error.get()
    }
    fn set_connected(&self, up: bool) {
        self.connected.store(up, Ordering::Relaxed);
        if !up {
            self.subscribed.store(false, Ordering::Relaxed);
        }
    }
    fn set_subscribed(&self) {
        self.subscribed.store(true, Ordering::Relaxed);
    }
    fn set_error(&self, e: &dyn std::fmt::Display) {
        self.last_error.set(e);
    }
}

/// Each source's name and live state.
pub type SourceStates = Vec<(String, Arc<SourceState>)>;

/// Refuses sources whose plugin does not take what they deliver: their messages would
/// be handled by nothing. Run once the plugins are loaded (`run` and `check`).
pub fn check_wiring(config: &Config, plugins: &PluginHost) -> Result<(), ConfigError> {
    for (name, source) in &config.sources {
        let Some(plugin) = plugins.get(source.plugin()) else {
            continue; // not active: refused when the config was parsed
        };
        let info = plugin.info();
        let takes = match source.deliver() {
            SourceDelivery::OnMessage => info.on_message,
            SourceDelivery::SendingEvent { .. } => {
                info.event_types.contains(&EventType::SendingEvent)
            }
        };
        if !takes {
            return Err(config.key_error(
                format!("sources.{name}.deliver"),
                format!(
                    "plugin `{}` does not take `{}`: nothing would handle this source's messages",
                    plugin.name,
                    source.deliver().as_str()
                ),
            ));
        }
    }
    Ok(())
}

/// Starts every configured source.
pub fn start(
    config: &Config,
    pipeline: &Pipeline,
    shutdown: &Shutdown,
) -> Result<(SourceStates, Vec<JoinHandle<()>>), SourceError> {
    let mut states = Vec::new();
    let mut tasks = Vec::new();
    for (name, source) in &config.sources {
        let state = Arc::new(SourceState::default());
        match source {
            SourceConfig::Mqtt(c) => tasks.push(mqtt::start(
                name,
                c,
                &config.agent.device_id,
                pipeline.clone(),
                Arc::clone(&state),
                shutdown.clone(),
            )?),
        }
        states.push((name.clone(), state));
    }
    Ok((states, tasks))
}
