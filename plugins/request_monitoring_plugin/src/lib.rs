//! The seed's request monitoring plugin, in Rust: each batch of monitoring points
//! (the agent's `requests`, `errors` and `plugin_calls` series, and points from timer
//! plugins) becomes one InfluxDB line-protocol message for the sink named by `sink`.

use outpost_pdk::line_protocol::to_line_protocol;
use outpost_pdk::prelude::*;

pub struct RequestMonitoringPlugin {
    sink: SinkName,
}

impl Plugin for RequestMonitoringPlugin {
    fn describe() -> PluginInfo {
        PluginInfo::new("request_monitoring_plugin", env!("CARGO_PKG_VERSION"))
            .on(EventType::MonitoringEvent)
    }

    fn initialize(config: Config) -> Result<Self> {
        Ok(RequestMonitoringPlugin {
            sink: config.sink("sink")?,
        })
    }

    fn monitoring_event(&mut self, points: &[Point]) -> Result<Output> {
        let lines = to_line_protocol(points);
        if lines.is_empty() {
            return Ok(Output::none());
        }
        let message = Message::text(self.sink.clone(), lines)
            .content_type("text/plain; charset=utf-8; format=influx-line-protocol");
        Ok(Output::message(message))
    }
}

register_plugin!(RequestMonitoringPlugin);
