//! The operator API: what a person or a monitoring system asks the running agent —
//! `GET /v1/health`, `GET /v1/plugins`, `GET /metrics`. Read-only views of the queue,
//! sinks, sources and plugins.

mod health;
mod metrics;
mod plugins;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

pub use health::health;
pub use metrics::metrics;
pub use plugins::plugins;

use crate::monitoring::PointBuffer;
use crate::queue::Queue;
use crate::sinks::SinkState;
use crate::sources::SourceStates;

/// What the operator API reports on, besides the pipeline.
pub struct Status {
    pub queue: Arc<Queue>,
    pub sinks: BTreeMap<String, Arc<SinkState>>,
    pub sources: SourceStates,
    pub points: Arc<PointBuffer>,
    pub device_id: String,
    pub started: Instant,
}
