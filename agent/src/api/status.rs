//! What the operator API reports on besides the pipeline: the queue, the running
//! sinks and sources (swapped by a reload), and how the config got there.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use crate::monitoring::PointBuffer;
use crate::queue::Queue;
use crate::sinks::SinkState;
use crate::sources::SourceStates;
use crate::sync;

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
        sync::read(&self.sinks).clone()
    }

    pub fn set_sinks(&self, sinks: BTreeMap<String, Arc<SinkState>>) {
        *sync::write(&self.sinks) = sinks;
    }

    /// The running sources' states.
    pub fn sources(&self) -> SourceStates {
        sync::read(&self.sources).clone()
    }

    pub fn set_sources(&self, sources: SourceStates) {
        *sync::write(&self.sources) = sources;
    }
}

/// The config the agent runs with: which generation, when it was last (re)loaded, and
/// why the last reload failed, if it did.
#[derive(Default)]
pub struct ConfigStatus {
    inner: Mutex<ConfigView>,
    /// The running config's text as written and its plugins dir (what fleet management
    /// reports, and where it installs packages).
    running: Mutex<(Arc<str>, std::path::PathBuf)>,
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
        sync::lock(&self.inner).clone()
    }

    /// The first config is running.
    pub fn started(&self) {
        sync::lock(&self.inner).generation = 1;
    }

    /// The running config's text (as written, `${VAR}` not expanded).
    pub fn text(&self) -> Arc<str> {
        Arc::clone(&sync::lock(&self.running).0)
    }

    /// The running config's plugins dir.
    pub fn plugins_dir(&self) -> std::path::PathBuf {
        sync::lock(&self.running).1.clone()
    }

    /// `config` runs now.
    pub fn set_running(&self, config: &crate::config::Config) {
        *sync::lock(&self.running) = (Arc::clone(&config.text.0), config.plugins.dir.clone());
    }

    /// A reload succeeded; returns the new generation.
    pub fn reloaded(&self) -> u64 {
        self.reloads.fetch_add(1, Ordering::Relaxed);
        let mut view = sync::lock(&self.inner);
        view.generation += 1;
        view.last_reload = Some(crate::clock::now_ms());
        view.last_error = None;
        view.generation
    }

    /// A reload failed; the running set is unchanged.
    pub fn failed(&self, error: &str) {
        self.reload_failures.fetch_add(1, Ordering::Relaxed);
        sync::lock(&self.inner).last_error = Some(error.to_owned());
    }
}
