//! End to end with real `.wasm` plugins built from `plugins/`.

use outpost_tests::agent::{self, Agent};
use outpost_tests::fixture::{AGENT, DELIVERY};
use outpost_tests::receiver::Receiver;
use outpost_tests::wait_for;
use serde_json::json;

#[test]
fn example_wasm_plugins_deliver_events_and_monitoring() {
    let dir = tempfile::tempdir().unwrap();
    let store = Receiver::start();
    let monitoring = Receiver::start();
    let agent = Agent::start(
        dir.path(),
        &format!(
            r#"{AGENT}
[plugins]
dir = "{{PLUGINS}}"
active = ["event_sending_plugin_example", "request_monitoring_plugin"]
monitoring_flush_ms = 200

[plugins.settings.event_sending_plugin_example]
sink = "store"

[plugins.settings.request_monitoring_plugin]
sink = "influx"

[sinks.store]
type = "http"
url = "{}"

[sinks.influx]
type = "http"
url = "{}"
"#,
            store.url("/1/buckets/plugin_test_bucket/objects"),
            monitoring.url("/write"),
        ),
    );
    let plugins = agent.get_json("/v1/plugins");
    let list = plugins["plugins"].as_array().unwrap();
    assert_eq!(list[0]["name"], "event_sending_plugin_example");
    assert_eq!(list[0]["kind"], "wasm");
    assert_eq!(list[0]["event_types"], json!(["sending_event"]));
    assert_eq!(list[1]["kind"], "wasm");
    assert_eq!(list[1]["event_types"], json!(["monitoring_event"]));

    for i in 0..3 {
        let body =
            json!({"handler_id": "h", "account_id": "acc", "events": [{"i": i}, {"i": i + 100}]});
        let r = agent.request(
            "POST",
            "/v1/events",
            &[("X-Request-Id", &format!("w-{i}"))],
            body.to_string().as_bytes(),
        );
        assert_eq!(r.status, 202, "{}", r.text());
    }
    let got = store.wait_accepted(3, DELIVERY);
    for (i, m) in got.iter().enumerate() {
        let body = m.json();
        assert_eq!(body["Luna-Request-Id"], format!("w-{i}"));
        assert_eq!(body["events"], json!([{"i": i}, {"i": i + 100}]));
        assert_eq!(body["account_id"], "acc");
    }

    // The requests' points arrive as line protocol, batched (not one message per point).
    let lines = wait_for("the events' monitoring points", DELIVERY, || {
        let text: String = monitoring.accepted().iter().map(|m| m.text()).collect();
        (text.matches("route=POST:/v1/events").count() >= 3).then_some(text)
    });
    let batches = monitoring.accepted();
    assert!(
        batches.len() < 6,
        "{} messages for 6+ points: not batched",
        batches.len()
    );
    assert!(batches
        .iter()
        .all(|m| m.header("content-type").unwrap().starts_with("text/plain")));
    let request_line = lines
        .lines()
        .find(|l| l.starts_with("requests,") && l.contains("route=POST:/v1/events"))
        .unwrap();
    assert!(request_line.contains("status_code=202"), "{request_line}");
    assert!(request_line.contains("service=outpost"), "{request_line}");
    assert!(request_line.contains("request_id=\"w-"), "{request_line}");
    assert!(request_line.contains("execution_time="), "{request_line}");
    assert!(
        lines
            .lines()
            .any(|l| l.starts_with("plugin_calls,")
                && l.contains("plugin=event_sending_plugin_example")),
        "{lines}"
    );

    // A failed request gives an `errors` point with its error code.
    assert_eq!(agent.request("POST", "/v1/events", &[], b"{").status, 400);
    wait_for("the errors point", DELIVERY, || {
        let text: String = monitoring.accepted().iter().map(|m| m.text()).collect();
        text.lines()
            .any(|l| {
                l.starts_with("errors,")
                    && l.contains("error_code=malformed_json")
                    && l.contains("status_code=400")
            })
            .then_some(())
    });
}

fn faulty_config(sink_url: &str, sandbox: &str) -> String {
    format!(
        r#"{AGENT}
[plugins]
dir = "{{PLUGINS}}"
active = ["faulty_plugin"]

[plugins.settings.faulty_plugin]
sink = "store"

[plugins.sandbox.faulty_plugin]
timeout_ms = 1000
max_memory_mb = 16
instances = 1
{sandbox}

[sinks.store]
type = "http"
url = "{sink_url}"
"#
    )
}

fn fault(agent: &Agent, kind: &str) -> outpost_tests::client::Response {
    let body = json!({"handler_id": "h", "account_id": "a", "events": [{"fault": kind, "path": "/granted/secret.txt"}]});
    agent.post_events(&body)
}

#[test]
fn faulty_plugin_cannot_take_the_agent_down() {
    let dir = tempfile::tempdir().unwrap();
    let store = Receiver::start();
    let agent = Agent::start(dir.path(), &faulty_config(&store.url("/in"), ""));

    for (kind, hint) in [
        ("trap", "trap"),
        ("loop", "timed out"),
        ("memory", "memory"),
    ] {
        let r = fault(&agent, kind);
        assert_eq!(r.status, 500, "{kind}: {}", r.text());
        let e = r.json();
        assert_eq!(e["error"]["code"], "plugin_fault", "{e}");
        let message = e["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("faulty_plugin"),
            "names the plugin: {message}"
        );
        assert!(message.contains(hint), "{kind}: {message}");
        // Still serving, with a fresh instance.
        assert_eq!(fault(&agent, "none").status, 202, "after {kind}");
    }
    let got = store.wait_accepted(3, DELIVERY);
    assert_eq!(got.len(), 3);
    let plugins = agent.get_json("/v1/plugins");
    let p = &plugins["plugins"][0];
    assert_eq!(p["name"], "faulty_plugin");
    assert_eq!(p["faults"], 3, "{p}");
    assert_eq!(p["restarts"], 3, "{p}");
    assert_eq!(p["calls"], 6, "{p}");
    assert_eq!(p["status"], "degraded");
    assert!(
        p["last_error"].as_str().unwrap().contains("out_of_memory"),
        "{p}"
    );
    // The good requests' messages leave the queue once their 200s are in; the failed
    // requests queued nothing.
    wait_for("the queue to drain", DELIVERY, || {
        (agent.get_json("/v1/health")["queue"]["depth"] == 0).then_some(())
    });
    let queue = agent.get_json("/v1/health")["queue"].clone();
    assert_eq!(queue["depth"], 0, "failed requests queued nothing: {queue}");
    assert_eq!(
        agent.metric("outpost_plugin_faults_total{plugin=\"faulty_plugin\",kind=\"wasm\"}"),
        Some(3.0)
    );
}

#[test]
fn wasm_plugin_reads_files_only_when_granted() {
    let granted = tempfile::tempdir().unwrap();
    std::fs::write(granted.path().join("secret.txt"), "the secret").unwrap();
    let store = Receiver::start();

    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(dir.path(), &faulty_config(&store.url("/in"), ""));
    let r = fault(&agent, "read_file");
    assert_eq!(r.status, 500, "{}", r.text());
    let e = r.json();
    assert_eq!(e["error"]["code"], "plugin_failed", "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/granted/secret.txt"),
        "{e}"
    );
    drop(agent);

    let dir = tempfile::tempdir().unwrap();
    let grant = format!(
        "read_only_paths = {{ \"{}\" = \"/granted\" }}",
        granted.path().display()
    );
    let agent = Agent::start(dir.path(), &faulty_config(&store.url("/in"), &grant));
    let r = fault(&agent, "read_file");
    assert_eq!(r.status, 202, "{}", r.text());
    let got = store.wait_accepted(1, DELIVERY);
    assert_eq!(got[0].text(), "the secret");
}

#[test]
fn missing_or_invalid_plugin_is_named_at_startup() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::write(plugins.join("broken.wasm"), b"\0asm but not really").unwrap();
    let config = |name: &str| {
        format!(
            "[agent]\nlisten = \"{{LISTEN}}\"\ndata_dir = \"{{DATA}}\"\n[plugins]\ndir = \"{}\"\nactive = [\"{name}\"]\n",
            plugins.display()
        )
    };

    let (status, out) = agent::check(dir.path(), &config("nope"));
    assert_eq!(status.code(), Some(2), "{out}");
    assert!(out.contains("plugin `nope`"), "{out}");
    assert!(
        out.contains("nope.wasm"),
        "names the file looked for: {out}"
    );

    let (status, out) = agent::check(dir.path(), &config("broken"));
    assert_eq!(status.code(), Some(2), "{out}");
    assert!(
        out.contains("plugin `broken`") && out.contains("broken.wasm"),
        "{out}"
    );

    // `run` refuses to start the same way.
    let path = agent::write_config(
        dir.path(),
        &config("broken"),
        "127.0.0.1:1".parse().unwrap(),
    );
    let (status, out) = agent::run_cli(dir.path(), &["run", "--config", path.to_str().unwrap()]);
    assert_eq!(status.code(), Some(2), "{out}");
    assert!(out.contains("plugin `broken`"), "{out}");

    // A plugin whose initialize fails (its `sink` setting is missing) is named too.
    let (status, out) = agent::check(
        dir.path(),
        "[agent]\ndata_dir = \"{DATA}\"\n[plugins]\ndir = \"{PLUGINS}\"\nactive = [\"event_sending_plugin_example\"]\n",
    );
    assert_eq!(status.code(), Some(2), "{out}");
    assert!(
        out.contains("event_sending_plugin_example") && out.contains("sink"),
        "{out}"
    );
}
