//! The operator API: what a person or a monitoring system asks of the running agent —
//! `GET /v1/health`, `GET /v1/plugins`, `GET /metrics`, `POST /v1/reload`, and the
//! dead letters (`GET`/`DELETE /v1/dead-letters`, `POST /v1/dead-letters/replay`).

mod dead_letters;
mod health;
mod metrics;
mod plugins;
mod reload;

pub use dead_letters::{list_dead_letters, purge_dead_letters, replay_dead_letters};
pub use health::health;
pub use metrics::metrics;
pub use plugins::plugins;
pub use reload::reload;
