//! Collaboration of an event plugin and a background plugin (the seed's batching
//! example): takes `monitoring_event` points, keeps them, and on its timer flushes them
//! as one InfluxDB line-protocol message to the sink named by `sink`.
//!
//! Points are kept in the plugin's persistent key-value store (one chunk per batch), so
//! points it has accepted survive an agent restart before the flush. The store lives in
//! the same database as the queue: the flush's deletes become durable with the commit
//! of the message that carries them.
//!
//! Settings: `sink` (required), `interval_ms` (default 10000).

use outpost_pdk::line_protocol::to_line_protocol;
use outpost_pdk::prelude::*;

pub struct MonitoringBatcher {
    sink: SinkName,
    interval_ms: u64,
    /// Chunks stored under `chunk/<n>`, n in 0..chunks.
    chunks: u64,
}

const CHUNKS: &str = "chunks";

fn chunk_key(n: u64) -> String {
    format!("chunk/{n:010}")
}

impl MonitoringBatcher {
    fn set_chunks(&mut self, n: u64) -> Result<()> {
        self.chunks = n;
        kv::set(CHUNKS, &n.to_le_bytes())
    }

    /// Everything stored, in order, and the store emptied.
    fn take_all(&mut self) -> Result<String> {
        let mut lines = String::new();
        for n in 0..self.chunks {
            if let Some(chunk) = kv::get(&chunk_key(n))? {
                lines.push_str(&String::from_utf8_lossy(&chunk));
            }
            kv::delete(&chunk_key(n))?;
        }
        self.set_chunks(0)?;
        Ok(lines)
    }

    fn message(&self, lines: String) -> Output {
        Output::message(
            Message::text(self.sink.clone(), lines)
                .content_type("text/plain; charset=utf-8; format=influx-line-protocol"),
        )
    }
}

impl Plugin for MonitoringBatcher {
    fn describe() -> PluginInfo {
        PluginInfo::new("monitoring_batcher", env!("CARGO_PKG_VERSION"))
            .on(EventType::MonitoringEvent)
            .every_ms(10_000)
    }

    fn initialize(config: Config) -> Result<Self> {
        let chunks = match kv::get(CHUNKS)? {
            Some(bytes) if bytes.len() == 8 => u64::from_le_bytes(bytes.try_into().unwrap()),
            _ => 0,
        };
        if chunks > 0 {
            log::info(&format!(
                "{chunks} batches of points kept from before the restart"
            ));
        }
        Ok(MonitoringBatcher {
            sink: config.sink("sink")?,
            interval_ms: config.get_or("interval_ms", 10_000)?,
            chunks,
        })
    }

    fn timer_ms(&self) -> Option<u64> {
        Some(self.interval_ms)
    }

    fn monitoring_event(&mut self, points: &[Point]) -> Result<Output> {
        let lines = to_line_protocol(points);
        if lines.is_empty() {
            return Ok(Output::none());
        }
        match kv::set(&chunk_key(self.chunks), lines.as_bytes()) {
            Ok(()) => {
                self.set_chunks(self.chunks + 1)?;
                Ok(Output::none())
            }
            // The store is full: flush early rather than drop points.
            Err(e) => {
                log::warn(&format!("store full ({e}): flushing before the timer"));
                let mut all = self.take_all()?;
                all.push_str(&lines);
                Ok(self.message(all))
            }
        }
    }

    fn tick(&mut self) -> Result<Output> {
        if self.chunks == 0 {
            return Ok(Output::none());
        }
        let lines = self.take_all()?;
        Ok(self.message(lines))
    }
}

register_plugin!(MonitoringBatcher);
