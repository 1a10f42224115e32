//! Sources: where events come from besides the HTTP API (an MQTT subscription today).
//! A message from a source goes to the plugin configured for it and, once accepted, has
//! the same durable semantics as an ingest request.

mod mqtt;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{Config, SourceConfig};
use crate::pipeline::Pipeline;

/// Live counters of one source, for health.
#[derive(Debug, Default)]
pub struct SourceState {
    pub received: AtomicU64,
    pub accepted: AtomicU64,
    /// Messages the plugin refused: acknowledged and dropped (counted here).
    pub rejected: AtomicU64,
    connected: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl SourceState {
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed) == 1
    }
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
    fn set_connected(&self, up: bool) {
        self.connected.store(u64::from(up), Ordering::Relaxed);
    }
    fn set_error(&self, e: String) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
    }
}

/// Each source's name and live state.
pub type SourceStates = Vec<(String, Arc<SourceState>)>;

/// Starts every configured source.
pub fn start(
    config: &Config,
    pipeline: &Pipeline,
    shutdown: &watch::Receiver<bool>,
) -> anyhow::Result<(SourceStates, Vec<JoinHandle<()>>)> {
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
