//! # outpost-pdk
//!
//! The types shared by the Outpost agent and its plugins, and the guest-side API that
//! plugin authors write against. One plugin source builds two ways:
//!
//! * for `wasm32-unknown-unknown` (or `wasm32-wasip1`): [`register_plugin!`] emits the
//!   Extism exports of the [guest ABI](crate::abi), and the agent loads `<name>.wasm`;
//! * for the host target: [`register_plugin!`] emits `outpost_native_plugin()`, which the
//!   agent links in as a native plugin behind the same interface.
//!
//! A sending plugin is about twenty lines:
//!
//! ```
//! use outpost_pdk::prelude::*;
//!
//! struct Forward { sink: SinkName }
//!
//! impl Plugin for Forward {
//!     fn describe() -> PluginInfo {
//!         PluginInfo::new("forward_example", "1.0.0").on(EventType::SendingEvent)
//!     }
//!     fn initialize(config: Config) -> Result<Self> {
//!         Ok(Forward { sink: config.sink("sink")? })
//!     }
//!     fn sending_event(&mut self, event: &SendingEvent) -> Result<Output> {
//!         log::debug(&format!("request {}: {} events", event.request_id, event.events.len()));
//!         Ok(Output::message(Message::json(self.sink.clone(), &SeedMessage::from(event))?))
//!     }
//! }
//!
//! register_plugin!(Forward);
//! ```

pub mod abi;
mod error;
#[doc(hidden)]
pub mod framing;
pub mod host;
pub mod line_protocol;
mod plugin;
mod types;

#[doc(hidden)]
pub mod export;
#[cfg(not(target_arch = "wasm32"))]
pub mod native;

pub use error::{Error, Result};
pub use host::{agent_stats, kv, log};
pub use plugin::Plugin;
pub use types::*;

/// Re-exported so the code [`register_plugin!`] generates needs no extra dependency.
#[doc(hidden)]
pub use serde_json;

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub use extism_pdk;

/// Everything a plugin author usually needs.
pub mod prelude {
    pub use crate::host::{kv, log};
    pub use crate::{
        register_plugin, Config, Error, Event, EventType, FieldValue, Message, Output, Plugin,
        PluginInfo, Point, Result, RouteRequest, RouteResponse, RouteSpec, SeedMessage,
        SendingEvent, SinkName, SourceMessage,
    };
}
