//! What the HTTP API's handlers share, below the server that routes requests to them:
//! the state they serve from ([`Api`]), how they read bodies and answer ([`read_body`],
//! [`json`], [`ApiError`]), what they report on ([`Status`]) and what they can ask of
//! the agent ([`Control`]). The producer API (`ingest`) and the operator API
//! (`operator`) build on this; neither knows the server.

mod body;
mod control;
mod response;
mod status;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

pub use body::read_body;
pub use control::{ApplyOutcome, Control, ReloadError, ReloadOutcome};
pub use response::{json, text, ApiError, Body, ErrorCode};
pub use status::{ConfigStatus, ConfigView, Status};

use crate::config::IngestLimits;
use crate::pipeline::Pipeline;
use crate::sync;

/// Everything the handlers need.
pub struct Api {
    pub pipeline: Pipeline,
    /// What the operator API reports.
    pub status: Status,
    pub counters: ApiCounters,
    /// Requests to the agent that runs the API (reload).
    pub control: tokio::sync::mpsc::Sender<Control>,
    settings: RwLock<Arc<ApiSettings>>,
}

/// The API's settings that a reload may change.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    pub auth_token: Option<String>,
    pub limits: IngestLimits,
}

impl Api {
    pub fn new(
        pipeline: Pipeline,
        status: Status,
        control: tokio::sync::mpsc::Sender<Control>,
        settings: ApiSettings,
    ) -> Api {
        Api {
            pipeline,
            status,
            counters: ApiCounters::default(),
            control,
            settings: RwLock::new(Arc::new(settings)),
        }
    }

    /// The current settings.
    pub fn settings(&self) -> Arc<ApiSettings> {
        Arc::clone(&sync::read(&self.settings))
    }

    /// The current request limits.
    pub fn limits(&self) -> IngestLimits {
        self.settings().limits
    }

    /// Applies reloaded settings to the requests that come next.
    pub fn set_settings(&self, settings: ApiSettings) {
        *sync::write(&self.settings) = Arc::new(settings);
    }
}

/// Request counters of the API.
#[derive(Default)]
pub struct ApiCounters {
    by_status: Mutex<BTreeMap<u16, u64>>,
    accepted: AtomicU64,
}

impl ApiCounters {
    /// Counts a request answered with `status`.
    pub fn count(&self, status: u16) {
        *sync::lock(&self.by_status).entry(status).or_default() += 1;
    }

    /// Counts events a 202 accepted.
    pub fn events_accepted(&self, n: u64) {
        self.accepted.fetch_add(n, Ordering::Relaxed);
    }

    /// Events accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Requests answered so far, by status code.
    pub fn by_status(&self) -> Vec<(u16, u64)> {
        let counts = sync::lock(&self.by_status);
        counts.iter().map(|(s, n)| (*s, *n)).collect()
    }
}
