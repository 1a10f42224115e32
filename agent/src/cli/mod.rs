//! Commands that talk to a running agent over its API, for a person on SSH or a
//! script: `outpost status` and `outpost dead-letters list|replay|purge`. They read
//! the agent's config file for its address and bearer token. `outpost fleet` makes
//! and uses the keys that sign plugin packages.

mod client;
mod dead_letters;
pub mod fleet;
mod status;
mod table;

pub use client::{AgentClient, ClientError};
pub use dead_letters::{dead_letters, DeadLettersCommand};
pub use status::status;
