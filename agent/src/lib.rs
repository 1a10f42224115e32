//! # Outpost
//!
//! An offline-tolerant edge event agent. Data flows one way through the modules:
//!
//! ```text
//! ingest (HTTP API) → pipeline → plugin (WASM or native) → queue (sled) → sinks (HTTP, file)
//!                                   ▲                                           │
//!                         monitoring points                       ack ◀─────────┘
//! ```
//!
//! A producer's 202 means its messages are on disk; a message leaves the queue only
//! when its sink acknowledged it.

pub mod app;
pub mod config;
pub mod ingest;
pub mod logging;
pub mod monitoring;
pub mod mqtt;
pub mod pipeline;
pub mod plugin;
pub mod queue;
pub mod sinks;
pub mod sources;
