//! What the API can ask of the agent that runs it, and how the agent answers.

use tokio::sync::oneshot;

use crate::config::{Config, ConfigError};
use crate::plugin::LoadError;
use crate::sinks::SetupError;
use crate::sources::SourceError;

/// A request to the agent (the app's control loop serves it).
pub enum Control {
    /// Reload config and plugins; the answer says how it went.
    Reload(oneshot::Sender<ReloadOutcome>),
    /// Switch to this config (a remote config from the fleet server, composed with the
    /// local file and checked); the answer lists the keys that wait for a restart.
    Apply(Box<Config>, oneshot::Sender<ApplyOutcome>),
}

/// How applying a given config went: the changed keys that need a restart, or why
/// nothing changed.
pub type ApplyOutcome = Result<Vec<&'static str>, ReloadError>;

/// How a reload went: the new config generation, or why nothing changed.
pub type ReloadOutcome = Result<u64, ReloadError>;

/// Why a reload was refused. The running config, plugins, sinks and sources stay.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Plugins(#[from] LoadError),
    #[error(transparent)]
    Sink(#[from] SetupError),
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The blocking task that loads plugins died (a bug: plugin panics are caught).
    #[error("loading the plugins: {0}")]
    Task(#[from] tokio::task::JoinError),
}
