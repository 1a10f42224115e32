//! A deliberately faulty plugin for the agent's isolation tests. Each event's `"fault"`
//! field picks the misbehaviour:
//!
//! * `"trap"` — panics (a WASM trap);
//! * `"loop"` — never returns (the call timeout must stop it);
//! * `"memory"` — allocates without bound (the memory cap must stop it);
//! * `"read_file"` — reads the file named by the event's `"path"` and forwards its
//!   content (fails unless the agent granted the directory);
//! * anything else — forwards the event like the example sending plugin.
//!
//! It also takes source messages (`on_message`) and forwards their payload as text.

use outpost_pdk::prelude::*;
use serde::Deserialize;

pub struct FaultyPlugin {
    sink: SinkName,
}

#[derive(Deserialize)]
struct Instruction {
    #[serde(default)]
    fault: String,
    #[serde(default)]
    path: String,
}

impl Plugin for FaultyPlugin {
    fn describe() -> PluginInfo {
        PluginInfo::new("faulty_plugin", env!("CARGO_PKG_VERSION"))
            .on(EventType::SendingEvent)
            .takes_messages()
    }

    fn initialize(config: Config) -> Result<Self> {
        Ok(FaultyPlugin {
            sink: config.sink("sink")?,
        })
    }

    fn sending_event(&mut self, event: &SendingEvent) -> Result<Output> {
        let mut out = Vec::new();
        for e in &event.events {
            let instruction: Instruction = e.parse()?;
            match instruction.fault.as_str() {
                "trap" => panic!("faulty_plugin: deliberate trap"),
                "loop" => {
                    let mut x: u64 = 0;
                    loop {
                        x = std::hint::black_box(x.wrapping_add(1));
                    }
                }
                "memory" => {
                    let mut hog: Vec<Vec<u8>> = Vec::new();
                    loop {
                        hog.push(vec![1u8; 1 << 20]);
                        std::hint::black_box(&hog);
                    }
                }
                "read_file" => {
                    let content = std::fs::read_to_string(&instruction.path)
                        .map_err(|e| Error::msg(format!("read {}: {e}", instruction.path)))?;
                    out.push(Message::text(self.sink.clone(), content));
                }
                _ => out.push(Message::json(self.sink.clone(), &SeedMessage::from(event))?),
            }
        }
        Ok(Output::messages(out))
    }

    fn on_message(&mut self, message: &SourceMessage) -> Result<Output> {
        Ok(self.on_source(message))
    }
}

impl FaultyPlugin {
    fn on_source(&self, message: &SourceMessage) -> Output {
        Output::message(
            Message::text(self.sink.clone(), message.payload.clone()).topic(message.topic.clone()),
        )
    }
}

register_plugin!(FaultyPlugin);
