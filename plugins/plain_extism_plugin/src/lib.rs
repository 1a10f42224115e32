//! An Outpost plugin written with nothing but extism-pdk (no outpost-pdk): any plugin
//! following the ABI in `pdk/src/abi.rs` runs in Outpost. It goes through the whole
//! Extism kernel — input, output and error blocks, `alloc`/`store`/`load`/`length`/
//! `free` — its built-ins (config, variables, logging), and calls Outpost's host
//! functions the Extism way (`#[host_fn]`).
//!
//! `sending_event`: one JSON message `{"count": N, "events": [...]}` for the sink of
//! the `sink` setting, N counting requests in the plugin's key-value store.
#![cfg(target_arch = "wasm32")]

use extism_pdk::*;
use serde::Deserialize;
use serde_json::value::RawValue;

#[host_fn]
extern "ExtismHost" {
    fn outpost_kv_get(key: &str) -> Vec<u8>;
    fn outpost_kv_set(key: &str, value: &[u8]) -> String;
}

/// An error the agent reports as the plugin's own (status 1), not as a fault.
fn failed(message: impl Into<String>) -> WithReturnCode<Error> {
    WithReturnCode::new(Error::msg(message.into()), 1)
}

#[plugin_fn]
pub fn describe() -> FnResult<String> {
    Ok(
        r#"{"name":"plain_extism_plugin","version":"1.0.0","event_types":["sending_event"]}"#
            .into(),
    )
}

#[derive(Deserialize)]
struct Settings {
    sink: Option<String>,
}

#[plugin_fn]
pub fn initialize(Json(settings): Json<Settings>) -> FnResult<String> {
    let sink = settings
        .sink
        .ok_or_else(|| failed("missing setting `sink`"))?;
    if config::get("sink")?.is_some() {
        return Err(failed(
            "the agent passes settings to `initialize`, not as Extism config",
        ));
    }
    var::set("sink", &sink)?;
    info!("plain_extism_plugin: sending to {sink}");
    Ok("{}".into())
}

#[derive(Deserialize)]
struct Request {
    events: Box<RawValue>,
}

/// Requests seen so far, from the key-value store (`[1, decimal…]` when present).
fn count() -> FnResult<u64> {
    // SAFETY: the ABI's `outpost_kv_get(key) -> block`, as declared above.
    let tagged = unsafe { outpost_kv_get("count")? };
    Ok(match tagged.split_first() {
        Some((1, digits)) => String::from_utf8_lossy(digits).parse().unwrap_or(0),
        _ => 0,
    })
}

#[plugin_fn]
pub fn sending_event(input: String) -> FnResult<String> {
    let request: Request = serde_json::from_str(&input)?;
    let sink: String = var::get("sink")?.ok_or_else(|| failed("not initialised"))?;
    let n = count()? + 1;
    // SAFETY: the ABI's `outpost_kv_set(key, value) -> error text`.
    let error = unsafe { outpost_kv_set("count", n.to_string().as_bytes())? };
    if !error.is_empty() {
        return Err(failed(error));
    }
    let events = request.events.get();
    Ok(format!(
        r#"{{"messages":[{{"sink":"{sink}","body":{{"json":{{"count":{n},"events":{events}}}}}}}]}}"#
    ))
}
