//! # Outpost
//!
//! An offline-tolerant edge event agent. Data flows one way through the modules:
//!
//! ```text
//! ingest (producer API) ─┐
//! sources (MQTT) ────────┼▶ pipeline → plugin (WASM or native) → queue (sled) → sinks (HTTP, MQTT, file)
//! timers, monitoring ────┘                                          ▲              │
//!                                                                   └── ack ◀──────┘
//! ```
//!
//! `server` serves the producer API (`ingest`) and the operator API (`operator`);
//! `app` assembles the parts and shuts them down in order. A producer's 202 means its
//! messages are on disk; a message leaves the queue only when its sink acknowledged it.

pub mod api;
pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod ingest;
pub mod logging;
pub mod monitoring;
pub mod mqtt;
pub mod operator;
pub mod pipeline;
pub mod plugin;
pub mod queue;
pub mod retry;
pub mod server;
pub mod shutdown;
pub mod sinks;
pub mod sources;
pub mod sync;
pub mod tls;
