//! Fleet management over OpAMP (OpenTelemetry's Open Agent Management Protocol): the
//! agent reports its description, health and effective config to an OpAMP server, and
//! takes from it a remote config (applied through the reload path) and signed plugin
//! packages. README, "Fleet".
//!
//! The parts that only touch files — composing a remote config with the local file,
//! and the state kept in `data_dir/fleet/` — are in every build, so a build without the
//! `fleet` feature still starts from what a managed device stored. The client itself
//! (protobuf, HTTP and WebSocket transports, packages) is the `fleet` feature.

pub mod compose;
pub mod store;

#[cfg(feature = "fleet")]
mod client;
#[cfg(feature = "fleet")]
mod packages;
#[cfg(feature = "fleet")]
pub mod proto;
#[cfg(feature = "fleet")]
mod report;
#[cfg(feature = "fleet")]
mod transport;

#[cfg(feature = "fleet")]
pub use client::{start, StartError};
