//! # The guest ABI
//!
//! Language-neutral: any Extism PDK (Rust, Go, JS, Python, C, Zig …) can implement an
//! Outpost plugin. Everything crossing the boundary is UTF-8 JSON in Extism memory.
//!
//! ## Exports
//!
//! | export             | input (JSON)                         | output (JSON)          | when |
//! |--------------------|--------------------------------------|------------------------|------|
//! | `describe`         | none                                 | [`PluginInfo`]         | once, at load |
//! | `initialize`       | the plugin's settings table          | empty or [`Initialized`] | once, after `describe` |
//! | `sending_event`    | [`SendingEvent`]                     | [`Output`]             | each ingest request, if declared |
//! | `monitoring_event` | array of [`Point`]                   | [`Output`]             | each batch of points, if declared |
//! | `tick`             | none                                 | [`Output`]             | every `timer_ms`, if declared |
//! | `route`            | [`RouteRequest`]                     | [`RouteResponse`]      | a request to a declared route |
//! | `on_message`       | [`SourceMessage`]                    | [`Output`]             | a message from a data source, if declared |
//! | `finalize`         | none                                 | empty                  | at shutdown (the seed's `close`) |
//!
//! `describe` and `initialize` are required; the export of each declared event type is
//! required (the agent refuses to load a plugin that lacks one). An [`Output`] is
//! `{"messages": [Message…], "points": [Point…]}`, both optional; points returned by
//! any call go to the `monitoring_event` plugins. A [`Message`] is
//! `{"sink": "name", "body": {"json": <any JSON>} | {"text": "…"}, "content_type"?,
//! "topic"?, "key"?, "headers"?: {…}}`.
//!
//! ## Errors
//!
//! An export fails by returning a non-zero status after setting an error message with
//! Extism's `error_set` (every PDK has it: `Err` from a Rust `#[plugin_fn]`, a thrown
//! exception in JS …). The agent names the plugin and the message in its answer, its
//! log and `/v1/plugins`. A trap, a timeout or running out of memory also fails only
//! that call; the agent then re-creates the instance.
//!
//! ## Host functions (module `extism:host/user`)
//!
//! All arguments and results are Extism memory blocks.
//!
//! | function            | arguments                  | result |
//! |---------------------|----------------------------|--------|
//! | `outpost_log`       | level (`trace`…`error`), message | none |
//! | `outpost_now_ms`    | none                       | u64, little-endian, Unix ms |
//! | `outpost_kv_get`    | key                        | `[0]` if absent, `[1, value…]` if present, `[2, error text…]` if the store failed |
//! | `outpost_kv_set`    | key, value                 | empty on success, else the error text |
//! | `outpost_kv_remove` | key                        | empty on success, else the error text |
//! | `outpost_kv_delete` | key                        | none; a store error fails the call (kept for plugins built before `outpost_kv_remove`) |
//! | `outpost_agent_stats` | none                     | JSON [`AgentStats`] |
//!
//! ## Optional fast paths (used by the Outpost PDK)
//!
//! All are opt-in; a plugin that uses none gets exactly the behaviour above.
//!
//! **Bulk copies, module `outpost:host/io`.** Through the Extism kernel a guest moves
//! bytes eight at a time, one host call each. These copy between the call's blocks and
//! the plugin's own exported `memory` in one call (pointers and lengths are i32):
//!
//! | function       | arguments      | effect |
//! |----------------|----------------|--------|
//! | `input_read`   | dst, len → i32 | copies the first `min(len, input_length)` input bytes to `dst`; returns the count |
//! | `output_write` | src, len       | the `len` bytes at `src` become the call's output |
//! | `error_write`  | src, len       | the `len` bytes at `src` become the call's error message |
//!
//! **Framed `sending_event` input.** A plugin whose `describe` answer has
//! `"framed_input": true` gets `sending_event` input framed instead of as JSON: the byte
//! `0x00`, a u32 (little-endian) length `H`, `H` bytes of the [`SendingEvent`] JSON with
//! `"events": []`, then for each event a u32 length and that many bytes of the event's
//! JSON, exactly as the producer sent it (the agent validated it at ingest). A
//! forwarding plugin then never parses an event it only passes on.
//!
//! **Framed [`Output`].** Any export returning an [`Output`] may answer framed instead
//! of as JSON: the byte `0x00`, a u32 length `H`, `H` bytes of the [`Output`] JSON with
//! every JSON message body written as `null`, then for each JSON body (in message order)
//! a u32 length and that many bytes of the body's JSON. The agent takes the bodies by
//! length (it checks they are UTF-8, and does not parse them: like text bodies, they
//! are the plugin's responsibility).
//!
//! ## Sandbox
//!
//! Plugins get no filesystem, network or environment unless the agent's config grants
//! it per plugin (`[plugins.sandbox.<name>]`); memory and call time are capped.
//!
//! [`PluginInfo`]: crate::PluginInfo
//! [`SendingEvent`]: crate::SendingEvent
//! [`Output`]: crate::Output
//! [`Point`]: crate::Point
//! [`RouteRequest`]: crate::RouteRequest
//! [`RouteResponse`]: crate::RouteResponse
//! [`Message`]: crate::Message
//! [`Initialized`]: crate::Initialized
//! [`SourceMessage`]: crate::SourceMessage
//! [`AgentStats`]: crate::AgentStats

/// Export names, shared by the agent and the guest macro.
pub mod exports {
    pub const DESCRIBE: &str = "describe";
    pub const INITIALIZE: &str = "initialize";
    pub const SENDING_EVENT: &str = "sending_event";
    pub const MONITORING_EVENT: &str = "monitoring_event";
    pub const TICK: &str = "tick";
    pub const ROUTE: &str = "route";
    pub const ON_MESSAGE: &str = "on_message";
    pub const FINALIZE: &str = "finalize";
}

/// Host function names.
pub mod host_functions {
    pub const LOG: &str = "outpost_log";
    pub const NOW_MS: &str = "outpost_now_ms";
    pub const KV_GET: &str = "outpost_kv_get";
    pub const KV_SET: &str = "outpost_kv_set";
    pub const KV_REMOVE: &str = "outpost_kv_remove";
    /// The older form of [`KV_REMOVE`] without a result; still linked for old plugins.
    pub const KV_DELETE: &str = "outpost_kv_delete";
    pub const AGENT_STATS: &str = "outpost_agent_stats";
}
