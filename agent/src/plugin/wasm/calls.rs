//! The agent's [`PluginInstance`] interface over a WASM [`Instance`]: each callback as
//! the ABI's JSON in, its typed answer out.

use outpost_pdk::framing::decode_output;
use outpost_pdk::{Output, Point, RouteRequest, RouteResponse, SourceMessage};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::instance::{Export, Instance};
use crate::plugin::instance::{CallError, PluginInstance, SendingInput};

/// A WASM plugin instance, as the agent calls it.
pub struct WasmPlugin {
    pub instance: Instance,
    pub timer_ms: Option<u64>,
    /// The plugin reads `sending_event` input framed.
    pub framed_input: bool,
}

impl WasmPlugin {
    /// Calls `export` and decodes its JSON answer.
    fn call<T: DeserializeOwned>(&mut self, export: Export, input: &[u8]) -> Result<T, CallError> {
        let bytes = self.instance.call(export, input)?;
        serde_json::from_slice(bytes).map_err(|source| CallError::InvalidOutput {
            export: export.name(),
            source,
        })
    }

    /// Calls an export answering an [`Output`], plain JSON or framed.
    fn output(&mut self, export: Export, input: &[u8]) -> Result<Output, CallError> {
        let bytes = self.instance.call(export, input)?;
        decode_output(bytes).map_err(|source| CallError::InvalidOutput {
            export: export.name(),
            source,
        })
    }

    fn encode(input: &impl Serialize) -> Result<Vec<u8>, CallError> {
        serde_json::to_vec(input)
            .map_err(|e| CallError::Reported(format!("cannot encode the input: {e}")))
    }

    fn call_with<T: DeserializeOwned>(
        &mut self,
        export: Export,
        input: &impl Serialize,
    ) -> Result<T, CallError> {
        let json = Self::encode(input)?;
        self.call(export, &json)
    }
}

impl PluginInstance for WasmPlugin {
    fn sending_event(&mut self, input: &SendingInput) -> Result<Output, CallError> {
        let bytes = if self.framed_input {
            input.framed()
        } else {
            input.json()
        };
        self.output(Export::SendingEvent, bytes)
    }

    fn monitoring_event(&mut self, points: &[Point]) -> Result<Output, CallError> {
        self.output(Export::MonitoringEvent, &Self::encode(&points)?)
    }

    fn tick(&mut self) -> Result<Output, CallError> {
        self.output(Export::Tick, b"")
    }

    fn route(&mut self, request: &RouteRequest) -> Result<RouteResponse, CallError> {
        self.call_with(Export::Route, request)
    }

    fn on_message(&mut self, message: &SourceMessage) -> Result<Output, CallError> {
        self.output(Export::OnMessage, &Self::encode(message)?)
    }

    fn timer_ms(&self) -> Option<u64> {
        self.timer_ms
    }

    fn close(&mut self) {
        if self.instance.has(Export::Finalize) {
            if let Err(e) = self.instance.call(Export::Finalize, b"") {
                tracing::warn!(error = %e, "plugin `finalize` failed");
            }
        }
    }
}
