//! The built-in `forward` plugin: each `sending_event` becomes one message in the seed's
//! shape for the sink named by its `sink` setting. Needs no `.wasm` file.

use outpost_pdk::prelude::*;

pub struct Forward {
    sink: SinkName,
}

impl Plugin for Forward {
    fn describe() -> PluginInfo {
        PluginInfo::new("forward", env!("CARGO_PKG_VERSION")).on(EventType::SendingEvent)
    }

    fn initialize(config: Config) -> Result<Self> {
        Ok(Forward {
            sink: config.sink("sink")?,
        })
    }

    fn sending_event(&mut self, event: &SendingEvent) -> Result<Output> {
        Ok(Output::message(Message::json(
            self.sink.clone(),
            &SeedMessage::from(event),
        )?))
    }
}
