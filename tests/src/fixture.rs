//! What the end-to-end tests share: how long they wait for delivery, the configs they
//! start from, and how they post events.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};

use crate::agent::Agent;
use crate::client::Response;
use crate::receiver::{Received, Receiver};
use crate::wait_for;

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

/// A config: source `src` of `kind` (its `source_keys`) feeding `plugin` as
/// `sending_event`s (handler `src-handler`, quick retries), and `plugin` sending
/// every message to the HTTP sink `store` at `url`. `plugin` is the built-in
/// `forward` or a WASM plugin from the test plugins' directory.
pub fn source_config(kind: &str, plugin: &str, url: &str, source_keys: &str) -> String {
    format!(
        "{AGENT}[plugins]\ndir = \"{{PLUGINS}}\"\nactive = [\"{plugin}\"]\n\
         [plugins.settings.{plugin}]\nsink = \"store\"\n[sinks.store]\n{}\n\
         [sources.src]\ntype = \"{kind}\"\nplugin = \"{plugin}\"\ndeliver = \"sending_event\"\n\
         handler_id = \"src-handler\"\naccount_id = \"acc\"\n\
         retry = {{ initial_ms = 50, max_ms = 300 }}\n{source_keys}\n",
        http_sink(url, "")
    )
}

/// Source `src`'s view in the agent's health.
pub fn source_health(agent: &Agent) -> Value {
    agent.get_json("/v1/health")["sources"]["src"].clone()
}

/// Events `{"n": i}` for each `i` of `range`, as JSON bytes.
pub fn numbered_events(range: std::ops::Range<u64>) -> Vec<Vec<u8>> {
    range
        .map(|i| json!({ "n": i }).to_string().into_bytes())
        .collect()
}

/// The `n` of every event the receiver got.
pub fn delivered_numbers(got: &[Received]) -> BTreeSet<u64> {
    got.iter()
        .flat_map(|m| {
            m.json()["events"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|e| e["n"].as_u64())
        })
        .collect()
}

/// Waits until events `0..n` all reached `store`, and checks no other number did.
pub fn wait_numbers_delivered(store: &Receiver, n: u64, agent: &Agent) {
    wait_for(&format!("{n} events delivered"), DELIVERY, || {
        (delivered_numbers(&store.accepted()).len() as u64 >= n).then_some(())
    });
    assert_eq!(
        delivered_numbers(&store.accepted()),
        (0..n).collect(),
        "{}",
        agent.log()
    );
}

/// A broker a test can stop and start again on the same port and data.
pub trait Outage {
    fn stop(&mut self);
    fn start_again(&mut self);
}

/// Posts `n` one-event requests `{"n": i}` (ids `r-000`…): the broker is stopped a
/// third of the way, and half way the agent is killed with `-9`, the broker started
/// again and the agent restarted. Every request must be accepted.
pub fn post_across_outage(agent: &mut Agent, broker: &mut impl Outage, n: usize) {
    for i in 0..n {
        post_ok(agent, &format!("r-{i:03}"), &body("h", [json!({ "n": i })]));
        if i == n / 3 {
            broker.stop();
        }
        if i == n / 2 {
            agent.kill9();
            broker.start_again();
            agent.restart();
        }
    }
}

/// Waits until sink `sink` holds exactly `n` dead letters; the listing.
pub fn wait_dead_letters(agent: &Agent, sink: &str, n: usize) -> Value {
    wait_for(&format!("{n} dead letters in {sink}"), DELIVERY, || {
        let listing = agent.get_json(&format!("/v1/dead-letters?sink={sink}"));
        (listing["dead_letters"].as_array()?.len() == n).then_some(listing)
    })
}

/// Waits for the next checkpoint of the queue's index (flushed to disk): deletes and
/// drops made before the one it waits for are durable across `kill -9` (a crash
/// before their checkpoint may bring them back: at-least-once).
pub fn wait_checkpoint(agent: &Agent) {
    let checkpoints = || {
        agent.get_json("/v1/health")["queue"]["checkpoints"]
            .as_u64()
            .unwrap_or(0)
    };
    let start = checkpoints();
    wait_for("a checkpoint of the queue's index", DELIVERY, || {
        (checkpoints() > start).then_some(())
    });
}
