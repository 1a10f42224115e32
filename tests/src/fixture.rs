//! What the end-to-end tests share: how long they wait for delivery, the configs they
//! start from, and how they post events.

use std::time::Duration;

use serde_json::{json, Value};

use crate::agent::Agent;
use crate::client::Response;

/// How long a test waits for something to be delivered before it fails (generous: the
/// machine may be busy; a test never waits this long when all is well).
pub const DELIVERY: Duration = Duration::from_secs(60);

/// The `[agent]` section tests start from: a free address, the test's data dir, a fixed
/// device id. `{LISTEN}` and `{DATA}` are filled in by [`Agent::start`].
pub const AGENT: &str =
    "[agent]\nlisten = \"{LISTEN}\"\ndata_dir = \"{DATA}\"\ndevice_id = \"cam-01\"\n";

/// A config: the built-in `forward` plugin sending every request to sink `sink`, whose
/// table holds `sink_keys` (see [`http_sink`], [`mqtt_sink`]).
pub fn forward_config(sink: &str, sink_keys: &str) -> String {
    format!(
        "{AGENT}[plugins]\nactive = [\"forward\"]\n[plugins.settings.forward]\nsink = \"{sink}\"\n\
         [sinks.{sink}]\n{sink_keys}\n"
    )
}

/// `config` with `keys` added to its `[agent]` section.
pub fn with_agent_keys(config: &str, keys: &str) -> String {
    config.replacen("[agent]\n", &format!("[agent]\n{keys}\n"), 1)
}

/// An HTTP sink's keys: `url`, a 2 s timeout, quick retries, and `extra` keys.
pub fn http_sink(url: &str, extra: &str) -> String {
    format!(
        "type = \"http\"\nurl = \"{url}\"\ntimeout_ms = 2000\n\
         retry = {{ initial_ms = 50, max_ms = 300 }}\n{extra}"
    )
}

/// An MQTT sink's keys: `url`, QoS 1, topics by device, sink and handler, quick
/// retries, and `extra` keys.
pub fn mqtt_sink(url: &str, extra: &str) -> String {
    format!(
        "type = \"mqtt\"\nurl = \"{url}\"\ntopic = \"outpost/{{device_id}}/{{sink}}/{{handler_id}}\"\n\
         qos = 1\nretry = {{ initial_ms = 50, max_ms = 500 }}\n{extra}"
    )
}

/// A request body: handler `handler`, account `acc`, these events.
pub fn body(handler: &str, events: impl IntoIterator<Item = Value>) -> Value {
    let events: Vec<Value> = events.into_iter().collect();
    json!({"handler_id": handler, "account_id": "acc", "events": events})
}

/// `POST /v1/events` with `body` as request `id`.
pub fn post(agent: &Agent, id: &str, body: &Value) -> Response {
    agent.request(
        "POST",
        "/v1/events",
        &[("X-Request-Id", id), ("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    )
}

/// [`post`], which must be accepted.
pub fn post_ok(agent: &Agent, id: &str, body: &Value) {
    let r = post(agent, id, body);
    assert_eq!(r.status, 202, "request {id}: {}", r.text());
}
