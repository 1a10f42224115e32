//! # Outpost
//!
//! An offline-tolerant edge event agent. Data flows one way through the modules:
//!
//! ```text
//! ingest (producer API) ───────┐
//! sources (MQTT, Redis, AMQP) ─┼▶ pipeline → plugin (WASM or native) → queue (sled) → sinks
//! timers, monitoring ──────────┘                                          ▲             │
//!                                                                         └── ack ◀─────┘
//! ```
//!
//! Sinks: HTTP, MQTT, file, Redis, AMQP. Sources and sinks of Redis and AMQP are cargo
//! features (`redis`, `amqp`), and so is fleet management over OpAMP (`fleet`).
//!
//! `server` serves the producer API (`ingest`) and the operator API (`operator`);
//! `app` assembles the parts and shuts them down in order. A producer's 202 means its
//! messages are on disk; a message leaves the queue only when its sink acknowledged it.

#[cfg(feature = "amqp")]
pub mod amqp;
pub mod api;
pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod fleet;
pub mod ingest;
pub mod logging;
pub mod monitoring;
pub mod mqtt;
pub mod operator;
pub mod pipeline;
pub mod plugin;
pub mod queue;
#[cfg(feature = "redis")]
pub mod redis;
pub mod retry;
pub mod server;
pub mod shutdown;
pub mod signing;
pub mod sinks;
pub mod sources;
pub mod sync;
pub mod tls;
