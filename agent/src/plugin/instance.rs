//! The one interface behind which WASM and native plugins look the same to the agent.

use std::sync::OnceLock;

use outpost_pdk::{
    Output, PluginInfo, Point, RouteRequest, RouteResponse, SendingEvent, SinkName, SourceMessage,
};

/// Where a plugin's code comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginKind {
    /// `<dir>/<name>.wasm`, run sandboxed by Extism.
    Wasm,
    /// Linked into the agent.
    Native,
}

impl PluginKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::Wasm => "wasm",
            PluginKind::Native => "native",
        }
    }
}

/// How a call went wrong: an error (its instance is fine), or a fault (its instance is
/// no longer trustworthy and is re-created).
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The plugin reported an error (the ABI's status 1 with a message).
    #[error("{0}")]
    Reported(String),
    /// The plugin's answer is not what the ABI says.
    #[error("`{export}` returned invalid output: {source}")]
    InvalidOutput {
        export: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// A message for a sink that is not configured.
    #[error("message for unknown sink `{0}`")]
    UnknownSink(SinkName),
    /// A message's topic, key, content type and headers are too large to queue.
    #[error("message metadata of {0} bytes exceeds 16 KiB (topic, key, content type, headers)")]
    MetadataTooLarge(usize),
    /// A new instance could not be made.
    #[error("cannot instantiate: {0:#}")]
    Instantiate(#[source] anyhow::Error),
    /// Trap, panic, timeout or out of memory.
    #[error("{kind}: {1}", kind = .0.as_str())]
    Fault(FaultKind, String),
}

impl CallError {
    /// Whether the instance must be re-created.
    pub fn is_fault(&self) -> bool {
        matches!(self, CallError::Fault(..))
    }

    /// The API's error code for this failure.
    pub fn code(&self) -> &'static str {
        if self.is_fault() {
            "plugin_fault"
        } else {
            "plugin_failed"
        }
    }
}

/// Kinds of faults, counted separately in `/v1/plugins`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    Trap,
    Panic,
    Timeout,
    OutOfMemory,
}

impl FaultKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Trap => "trap",
            FaultKind::Panic => "panic",
            FaultKind::Timeout => "timeout",
            FaultKind::OutOfMemory => "out_of_memory",
        }
    }
}

/// A `sending_event` input, shared by all plugins of one request: native plugins read
/// the typed value, WASM plugins the JSON, which is encoded once, on first use.
pub struct SendingInput {
    pub event: SendingEvent,
    json: OnceLock<Vec<u8>>,
    framed: OnceLock<Vec<u8>>,
}

impl SendingInput {
    pub fn new(event: SendingEvent) -> Self {
        SendingInput {
            event,
            json: OnceLock::new(),
            framed: OnceLock::new(),
        }
    }

    /// The event as ABI JSON.
    pub fn json(&self) -> &[u8] {
        self.json
            .get_or_init(|| serde_json::to_vec(&self.event).expect("event serialises"))
    }

    /// The event in the ABI's framed form (for plugins that asked for it).
    pub fn framed(&self) -> &[u8] {
        self.framed
            .get_or_init(|| outpost_pdk::framing::encode_sending(&self.event))
    }
}

/// One live instance of a plugin.
pub trait PluginInstance: Send {
    fn sending_event(&mut self, input: &SendingInput) -> Result<Output, CallError>;
    fn monitoring_event(&mut self, points: &[Point]) -> Result<Output, CallError>;
    fn tick(&mut self) -> Result<Output, CallError>;
    fn route(&mut self, request: &RouteRequest) -> Result<RouteResponse, CallError>;
    fn on_message(&mut self, message: &SourceMessage) -> Result<Output, CallError>;
    /// The timer interval the plugin's settings chose at `initialize`, if any.
    fn timer_ms(&self) -> Option<u64>;
    /// The seed's `close`: the agent is stopping.
    fn close(&mut self);
}

/// Makes instances of one plugin: loaded (and described) once, instantiated per slot of
/// the pool and again after a fault.
pub trait InstanceFactory: Send + Sync {
    fn kind(&self) -> PluginKind;
    /// What the plugin said about itself at load.
    fn info(&self) -> &PluginInfo;
    /// A new instance, already initialised with the plugin's settings.
    fn instantiate(&self) -> Result<Box<dyn PluginInstance>, CallError>;
}
