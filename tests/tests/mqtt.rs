//! End to end over MQTT: the real agent against a real mosquitto on free ports.

use std::collections::HashSet;

use outpost_tests::agent::Agent;
use outpost_tests::certs::Certs;
use outpost_tests::fixture::{body, forward_config, mqtt_sink, post_ok, AGENT, DELIVERY};
use outpost_tests::mosquitto::{Mosquitto, MqttMessage, Subscriber};
use outpost_tests::receiver::Receiver;
use outpost_tests::relay::Relay;
use outpost_tests::wait_for;
use serde_json::json;

/// The built-in `forward` plugin into MQTT sink `cloud` at `url`, with `extra` keys.
fn forward_to_mqtt(url: &str, extra: &str) -> String {
    forward_config("cloud", &mqtt_sink(url, extra))
}

/// Posts one event for `handler`, which must be accepted.
fn post(agent: &Agent, id: &str, handler: &str, event: serde_json::Value) {
    post_ok(agent, id, &body(handler, [event]));
}

/// Request ids in first-arrival order, duplicates (same idempotency key) removed.
fn distinct_ids(messages: &[MqttMessage]) -> Vec<String> {
    let mut seen = HashSet::new();
    messages
        .iter()
        .filter(|m| seen.insert(m.property("idempotency-key").unwrap_or_default().to_owned()))
        .map(|m| m.json()["Luna-Request-Id"].as_str().unwrap().to_owned())
        .collect()
}

/// Waits until sink `cloud` has dead-lettered one message and the queue is empty, and
/// checks that its last error says `why`; returns the health.
fn one_dead_letter(agent: &Agent, why: &str) -> serde_json::Value {
    let h = wait_for("one dead letter and an empty queue", DELIVERY, || {
        let h = agent.get_json("/v1/health");
        (h["sinks"]["cloud"]["dead_letters"] == 1 && h["queue"]["depth"] == 0).then_some(h)
    });
    let error = h["sinks"]["cloud"]["last_error"]
        .as_str()
        .unwrap_or_default();
    assert!(error.contains(why), "{h}");
    h
}

fn ids(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}-{i:02}")).collect()
}

#[test]
fn qos_0_and_1_with_topic_templates_over_mqtt_5_and_3_1_1() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), "");
    let sub = Subscriber::start(broker.port, "outpost/#");
    let config = format!(
        r#"{AGENT}[plugins]
dir = "{{PLUGINS}}"
active = ["forward", "event_sending_plugin_example"]
[plugins.settings.forward]
sink = "q1"
[plugins.settings.event_sending_plugin_example]
sink = "q0"
[sinks.q1]
type = "mqtt"
url = "{url}"
topic = "outpost/{{device_id}}/{{sink}}/{{handler_id}}"
qos = 1
protocol = "5"
[sinks.q0]
type = "mqtt"
url = "{url}"
topic = "outpost/{{device_id}}/{{sink}}"
qos = 0
protocol = "3.1.1"
"#,
        url = broker.url()
    );
    let agent = Agent::start(dir.path(), &config);
    for i in 0..10 {
        post(&agent, &format!("t-{i:02}"), "door", json!({"n": i}));
    }
    let got = sub.wait(20, DELIVERY);
    let q1: Vec<_> = got
        .iter()
        .filter(|m| m.topic == "outpost/cam-01/q1/door")
        .collect();
    let q0: Vec<_> = got
        .iter()
        .filter(|m| m.topic == "outpost/cam-01/q0")
        .collect();
    assert_eq!(q1.len(), 10, "{got:?}");
    assert_eq!(q0.len(), 10, "{got:?}");
    let keys: HashSet<_> = q1
        .iter()
        .map(|m| m.property("idempotency-key").expect("v5 id"))
        .collect();
    assert_eq!(keys.len(), 10);
    assert!(keys.iter().all(|k| k.len() == 32));
    assert!(
        q0.iter().all(|m| m.user_properties.is_empty()),
        "3.1.1 has no properties"
    );
    for (i, m) in q1.iter().enumerate() {
        assert_eq!(m.json()["Luna-Request-Id"], format!("t-{i:02}"), "in order");
        assert_eq!(m.json()["events"], json!([{"n": i}]));
    }
    let health = agent.get_json("/v1/health");
    assert_eq!(health["sinks"]["q1"]["connected"], true);
    assert_eq!(health["sinks"]["q0"]["type"], "mqtt");
}

#[test]
fn broker_outage_loses_nothing_and_keeps_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Mosquitto::start(dir.path(), "");
    let sub = Subscriber::start(broker.port, "outpost/#");
    // A window of publishes in flight: what an outage cuts short is resent in order.
    let agent = Agent::start(
        dir.path(),
        &forward_to_mqtt(&broker.url(), "max_in_flight = 8"),
    );
    for i in 0..10 {
        post(&agent, &format!("o-{i:02}"), "h", json!({"i": i}));
    }
    sub.wait(10, DELIVERY);

    broker.stop();
    for i in 10..30 {
        post(&agent, &format!("o-{i:02}"), "h", json!({"i": i}));
    }
    let health = wait_for("the sink to notice", DELIVERY, || {
        let h = agent.get_json("/v1/health");
        (h["sinks"]["cloud"]["state"] == "disconnected" && h["sinks"]["cloud"]["backlog"] == 20)
            .then_some(h)
    });
    assert!(health["sinks"]["cloud"]["last_error"].as_str().is_some());
    let failures = agent.metric("outpost_sink_connected{sink=\"cloud\"}");
    assert_eq!(failures, Some(0.0));

    broker.restart();
    let got = wait_for("all 30, once each", DELIVERY, || {
        let got = distinct_ids(&sub.messages());
        (got.len() >= 30).then_some(got)
    });
    assert_eq!(got, ids("o", 0..30), "nothing lost, in order");
    wait_for("empty queue", DELIVERY, || {
        (agent.get_json("/v1/health")["queue"]["depth"] == 0).then_some(())
    });
}

#[test]
fn kill_9_while_the_broker_is_down_then_everything_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Mosquitto::start(dir.path(), "");
    let sub = Subscriber::start(broker.port, "outpost/#");
    let mut agent = Agent::start(dir.path(), &forward_to_mqtt(&broker.url(), ""));
    broker.stop();
    for i in 0..15 {
        post(&agent, &format!("k-{i:02}"), "h", json!({"i": i}));
    }
    agent.kill9();
    broker.restart();
    agent.restart();
    let got = wait_for("all 15", DELIVERY, || {
        let got = distinct_ids(&sub.messages());
        (got.len() >= 15).then_some(got)
    });
    assert_eq!(got, ids("k", 0..15));
}

#[test]
fn a_window_sliding_across_batches_loses_nothing_through_broker_restarts_and_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Mosquitto::start(dir.path(), "");
    let sub = Subscriber::start(broker.port, "outpost/#");
    // 16 in flight while the loop reads 256 messages at a time: 600 queued take three
    // batches, and the window carries over from one to the next.
    let mut agent = Agent::start(
        dir.path(),
        &forward_to_mqtt(&broker.url(), "max_in_flight = 16"),
    );
    broker.stop();
    for i in 0..600 {
        post(&agent, &format!("w-{i:02}"), "h", json!({"i": i}));
    }
    let arrived = |n: usize| {
        wait_for(&format!("{n} distinct messages"), DELIVERY, || {
            (distinct_ids(&sub.messages()).len() >= n).then_some(())
        })
    };
    broker.restart();
    arrived(1);
    broker.restart(); // in the middle of the drain, most likely
    arrived(300);
    agent.kill9();
    agent.restart();
    for i in 600..700 {
        post(&agent, &format!("w-{i:02}"), "h", json!({"i": i}));
    }
    broker.restart();
    arrived(700);
    let got: HashSet<String> = distinct_ids(&sub.messages()).into_iter().collect();
    assert_eq!(got, ids("w", 0..700).into_iter().collect(), "nothing lost");
    wait_for("empty queue", DELIVERY, || {
        (agent.get_json("/v1/health")["queue"]["depth"] == 0).then_some(())
    });
}

#[test]
fn oversize_message_is_dead_lettered_while_the_others_flow() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), "");
    let sub = Subscriber::start(broker.port, "outpost/#");
    let agent = Agent::start(
        dir.path(),
        &forward_to_mqtt(&broker.url(), "max_packet_bytes = 4096"),
    );
    post(&agent, "s-00", "h", json!({"small": true}));
    post(&agent, "big", "h", json!({"pad": "x".repeat(6000)}));
    post(&agent, "s-01", "h", json!({"small": true}));
    let got = sub.wait(2, DELIVERY);
    assert_eq!(distinct_ids(&got), ["s-00", "s-01"]);
    let h = one_dead_letter(&agent, "max_packet_bytes");
    assert_eq!(
        h["sinks"]["cloud"]["connected"], true,
        "the connection was not wedged"
    );
}

#[test]
fn a_publish_the_broker_refuses_is_dead_lettered_alone_and_the_window_moves_on() {
    let dir = tempfile::tempdir().unwrap();
    // Anonymous clients may publish under the handler "ok" only: MQTT 5 answers the
    // others with a PUBACK whose reason code refuses them.
    let acl = dir.path().join("acl");
    std::fs::write(&acl, "topic read outpost/#\ntopic write outpost/+/+/ok\n").unwrap();
    let broker = Mosquitto::start(dir.path(), &format!("acl_file {}", acl.display()));
    let sub = Subscriber::start(broker.port, "outpost/#");
    // The agent reaches the broker through a link the test cuts: the broker stays up,
    // so the subscriber's session keeps receiving. (A restarted mosquitto 2.0 with an
    // acl_file does not queue messages for a restored session until its client is back,
    // so a subscriber that reconnected after the agent's publishes missed them.)
    let link = Relay::start(broker.port);
    let agent = Agent::start(
        dir.path(),
        &forward_to_mqtt(&link.mqtt_url(), "protocol = \"5\"\nmax_in_flight = 16"),
    );
    // Queued while the link is down, so the refused one is in flight with others.
    link.cut();
    post(&agent, "r-00", "ok", json!({"i": 0}));
    post(&agent, "refused", "no", json!({"i": 1}));
    for i in 2..20 {
        post(&agent, &format!("r-{i:02}"), "ok", json!({"i": i}));
    }
    link.restore();
    one_dead_letter(&agent, "broker refused: not authorized (reason code 0x87)");
    // A last message after the others: once it is in, everything before it is (one
    // sink, one subscription, in order), so any resend would be counted.
    post(&agent, "r-20", "ok", json!({"i": 20}));
    let got = wait_for("the last message", DELIVERY, || {
        let got = sub.messages();
        distinct_ids(&got)
            .contains(&"r-20".to_owned())
            .then_some(got)
    });
    let mut expected = ids("r", 0..1);
    expected.extend(ids("r", 2..21));
    assert_eq!(
        distinct_ids(&got),
        expected,
        "the others, once each, in order"
    );
    assert_eq!(got.len(), 20, "nothing sent again");
}

#[test]
fn mqtts_with_a_test_ca_and_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::generate(&dir.path().join("certs"));
    let tls_port = outpost_tests::free_port();
    let c = |f: &str| certs.path(f);
    let broker = Mosquitto::start(
        dir.path(),
        &format!(
            "listener {tls_port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\n",
            c("ca.crt"), c("server.crt"), c("server.key")
        ),
    );
    let sub = Subscriber::start(broker.port, "outpost/#");
    let extra = format!(
        "ca_file = \"{}\"\nclient_cert = \"{}\"\nclient_key = \"{}\"",
        c("ca.crt"),
        c("client.crt"),
        c("client.key")
    );
    let agent = Agent::start(
        dir.path(),
        &forward_to_mqtt(&format!("mqtts://127.0.0.1:{tls_port}"), &extra),
    );
    for i in 0..3 {
        post(&agent, &format!("tls-{i:02}"), "h", json!({"i": i}));
    }
    let got = sub.wait(3, DELIVERY);
    assert_eq!(distinct_ids(&got), ids("tls", 0..3), "{}", broker.log());
}

#[test]
fn mqtt_source_feeds_plugins_durably() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), "");
    let store = Receiver::start();
    let config = format!(
        r#"{AGENT}[plugins]
dir = "{{PLUGINS}}"
active = ["faulty_plugin", "forward"]
[plugins.settings.faulty_plugin]
sink = "store"
[plugins.settings.forward]
sink = "store"
[sinks.store]
type = "http"
url = "{store}"
[sources.door]
type = "mqtt"
url = "{url}"
topics = ["sensors/#"]
plugin = "faulty_plugin"
[sources.cams]
type = "mqtt"
url = "{url}"
topics = ["cams/+/events"]
plugin = "forward"
deliver = "sending_event"
handler_id = "mqtt-handler"
account_id = "acc"
"#,
        url = broker.url(),
        store = store.url("/in")
    );
    let agent = Agent::start(dir.path(), &config);
    wait_for("sources subscribed", DELIVERY, || {
        let h = agent.get_json("/v1/health");
        (h["sources"]["door"]["subscribed"] == true && h["sources"]["cams"]["subscribed"] == true)
            .then_some(())
    });
    let producer = Subscriber::start(broker.port, "unrelated/#");
    for i in 0..3 {
        producer.publish("sensors/door", format!("opened {i}").as_bytes());
    }
    producer.publish("cams/1/events", br#"{"type": "face", "score": 0.9}"#);
    let got = store.wait_accepted(4, DELIVERY);
    let texts: Vec<String> = got.iter().map(|m| m.text()).collect();
    for i in 0..3 {
        assert!(texts.contains(&format!("opened {i}")), "{texts:?}");
    }
    let seed = got
        .iter()
        .find(|m| m.text().contains("Luna-Request-Id"))
        .expect("seed message")
        .json();
    assert_eq!(seed["handler_id"], "mqtt-handler");
    assert_eq!(seed["events"], json!([{"type": "face", "score": 0.9}]));
    let h = agent.get_json("/v1/health");
    assert_eq!(h["sources"]["door"]["accepted"], 3);
    assert_eq!(h["sources"]["cams"]["accepted"], 1);
}

/// A source that feeds a plugin not taking what it delivers would have its messages
/// handled by nothing: `check` and `run` refuse it naming the key, and the broker keeps
/// the messages (none is acknowledged) until a config that handles them runs.
#[test]
fn mis_wired_source_is_refused_and_its_messages_are_not_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), "");
    let store = Receiver::start();
    let config = |plugin: &str| {
        format!(
            r#"{AGENT}[plugins]
dir = "{{PLUGINS}}"
active = ["forward", "teapot_plugin"]
[plugins.settings.forward]
sink = "store"
[sinks.store]
type = "http"
url = "{store}"
[sources.cams]
type = "mqtt"
url = "{url}"
topics = ["cams/+/events"]
plugin = "{plugin}"
deliver = "sending_event"
handler_id = "mqtt-handler"
account_id = "acc"
"#,
            url = broker.url(),
            store = store.url("/in")
        )
    };
    // A well-wired run makes the broker keep a session for the source.
    let mut agent = Agent::start(dir.path(), &config("forward"));
    wait_for("source subscribed", DELIVERY, || {
        (agent.get_json("/v1/health")["sources"]["cams"]["subscribed"] == true).then_some(())
    });
    assert!(agent.terminate().success());
    let producer = Subscriber::start(broker.port, "unrelated/#");
    for i in 0..3 {
        producer.publish("cams/1/events", format!(r#"{{"n": {i}}}"#).as_bytes());
    }

    agent.rewrite_config(&config("teapot_plugin"));
    let path = agent.config.to_str().unwrap().to_owned();
    for command in ["check", "run"] {
        let (status, out) =
            outpost_tests::agent::run_cli(dir.path(), &[command, "--config", &path]);
        assert_eq!(status.code(), Some(2), "{command}: {out}");
        assert!(
            out.contains("sources.cams.deliver") && out.contains("teapot_plugin"),
            "{command}: {out}"
        );
    }

    agent.rewrite_config(&config("forward"));
    agent.restart();
    let got = store.wait_accepted(3, DELIVERY);
    let mut ns: Vec<i64> = got
        .iter()
        .map(|m| m.json()["events"][0]["n"].as_i64().unwrap())
        .collect();
    ns.sort();
    assert_eq!(ns, [0, 1, 2], "every message kept by the broker arrives");
}
