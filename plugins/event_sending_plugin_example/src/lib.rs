//! The seed's event sending plugin, in Rust: each `sending_event` becomes one message
//! with `handler_id`, `account_id`, `Luna-Request-Id`, `events`, `event_create_time`
//! and `event_end_time`, addressed to the sink named by the `sink` setting.
//!
//! Builds as `event_sending_plugin_example.wasm` and, natively, into the agent.

use outpost_pdk::prelude::*;

pub struct EventSendingPlugin {
    sink: SinkName,
}

impl Plugin for EventSendingPlugin {
    fn describe() -> PluginInfo {
        PluginInfo::new("event_sending_plugin_example", env!("CARGO_PKG_VERSION"))
            .on(EventType::SendingEvent)
    }

    fn initialize(config: Config) -> Result<Self> {
        Ok(EventSendingPlugin {
            sink: config.sink("sink")?,
        })
    }

    fn sending_event(&mut self, event: &SendingEvent) -> Result<Output> {
        log::debug(&format!(
            "get events, request_id: {}, event_create_time: {}, event_end_time: {}",
            event.request_id, event.event_create_time, event.event_end_time
        ));
        let message = Message::json(self.sink.clone(), &SeedMessage::from(event))?;
        Ok(Output::message(message))
    }
}

register_plugin!(EventSendingPlugin);
