use crate::{
    Config, Error, Output, PluginInfo, Point, Result, RouteRequest, RouteResponse, SendingEvent,
    SourceMessage,
};

/// The interface every Outpost plugin implements, WASM or native.
///
/// One instance lives for the life of the agent (the seed's `initialize`/`close`
/// lifecycle). Callbacks return what to send; the agent queues it durably and delivers
/// it, so a plugin never does network I/O and never loses data when the network is down.
/// Callbacks a plugin does not declare in [`Plugin::describe`] are never called; the
/// defaults only exist so a plugin implements what it uses.
pub trait Plugin: Sized + Send + 'static {
    /// Name, version, subscribed event types, routes and timer. Called once, before
    /// [`Plugin::initialize`].
    fn describe() -> PluginInfo;

    /// Builds the instance from the plugin's `[plugins.settings.<name>]` table.
    fn initialize(config: Config) -> Result<Self>;

    /// The events of one ingest request (`sending_event`).
    fn sending_event(&mut self, event: &SendingEvent) -> Result<Output> {
        let _ = event;
        Err(not_declared("sending_event"))
    }

    /// A batch of monitoring points (`monitoring_event`).
    fn monitoring_event(&mut self, points: &[Point]) -> Result<Output> {
        let _ = points;
        Err(not_declared("monitoring_event"))
    }

    /// The timer fired (background plugins with `timer_ms`).
    fn tick(&mut self) -> Result<Output> {
        Err(not_declared("tick"))
    }

    /// A request to one of the plugin's routes.
    fn route(&mut self, request: &RouteRequest) -> Result<RouteResponse> {
        let _ = request;
        Err(not_declared("route"))
    }

    /// A message from a data source (plugins that declared `takes_messages`).
    fn on_message(&mut self, message: &SourceMessage) -> Result<Output> {
        let _ = message;
        Err(not_declared("on_message"))
    }

    /// The timer interval the settings chose, if any; overrides the declared one.
    fn timer_ms(&self) -> Option<u64> {
        None
    }

    /// The agent is stopping: flush what must not be lost into the key-value store.
    fn close(&mut self) {}
}

fn not_declared(callback: &str) -> Error {
    Error::msg(format!("this plugin does not implement `{callback}`"))
}
