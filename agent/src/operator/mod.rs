//! The operator API: what a person or a monitoring system asks of the running agent —
//! `GET /v1/health`, `GET /v1/plugins`, `GET /metrics`, `POST /v1/reload`, and the
//! dead letters (`GET`/`DELETE /v1/dead-letters`, `POST /v1/dead-letters/replay`).

mod dead_letters;
mod health;
mod metrics;
mod plugins;
mod reload;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

pub use dead_letters::{list_dead_letters, purge_dead_letters, replay_dead_letters};
pub use health::health;
pub use metrics::metrics;
pub use plugins::plugins;
pub use reload::{reload, Control, ReloadOutcome};

use crate::monitoring::PointBuffer;
use crate::queue::Queue;
use crate::sinks::SinkState;
use crate::sources::SourceStates;

/// What the operator API reports on, besides the pipeline. Sinks and sources change
/// with a reload.
pub struct Status {
    pub queue: Arc<Queue>,
    sinks: RwLock<BTreeMap<String, Arc<SinkState>>>,
    sources: RwLock<SourceStates>,
    pub points: Arc<PointBuffer>,
    pub device_id: String,
    pub started: Instant,
    pub config: ConfigStatus,
    /// Dead letters put back into their FIFOs, and deleted, by operators.
    pub replayed: AtomicU64,
    pub purged: AtomicU64,
}

impl Status {
    pub fn new(queue: Arc<Queue>, points: Arc<PointBuffer>, device_id: &str) -> Status {
        Status {
            queue,
            sinks: RwLock::default(),
            sources: RwLock::default(),
            points,
            device_id: device_id.to_owned(),
            started: Instant::now(),
            config: ConfigStatus::default(),
            replayed: AtomicU64::new(0),
            purged: AtomicU64::new(0),
        }
    }

    /// The running sinks' states.
    pub fn sinks(&self) -> BTreeMap<String, Arc<SinkState>> {
        self.sinks.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set_sinks(&self, sinks: BTreeMap<String, Arc<SinkState>>) {
        *self.sinks.write().unwrap_or_else(|e| e.into_inner()) = sinks;
    }

    /// The running sources' states.
    pub fn sources(&self) -> SourceStates {
        self.sources
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn set_sources(&self, sources: SourceStates) {
        *self.sources.write().unwrap_or_else(|e| e.into_inner()) = sources;
    }
}

/// The config the agent runs with: which generation, when it was last (re)loaded, and
/// why the last reload failed, if it did.
#[derive(Default)]
pub struct ConfigStatus {
    inner: Mutex<ConfigView>,
    pub reloads: AtomicU64,
    pub reload_failures: AtomicU64,
}

/// A snapshot of [`ConfigStatus`].
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ConfigView {
    /// 1 at start, one more per successful reload.
    pub generation: u64,
    /// Unix ms of the last successful reload (none yet: `null`).
    pub last_reload: Option<u64>,
    /// Why the last reload failed (cleared by a successful one).
    pub last_error: Option<String>,
}

impl ConfigStatus {
    pub fn view(&self) -> ConfigView {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The first config is running.
    pub fn started(&self) {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .generation = 1;
    }

    /// A reload succeeded; returns the new generation.
    pub fn reloaded(&self) -> u64 {
        self.reloads.fetch_add(1, Ordering::Relaxed);
        let mut view = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        view.generation += 1;
        view.last_reload = Some(crate::clock::now_ms());
        view.last_error = None;
        view.generation
    }

    /// A reload failed; the running set is unchanged.
    pub fn failed(&self, error: &str) {
        self.reload_failures.fetch_add(1, Ordering::Relaxed);
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .last_error = Some(error.to_owned());
    }
}
