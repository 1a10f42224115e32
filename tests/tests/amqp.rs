//! AMQP 0-9-1 source and sink against a real RabbitMQ (Debian's rabbitmq-server on
//! free 127.0.0.1 ports; one broker shared by the tests that do not restart it):
//! messages are acknowledged only once durable, so `kill -9` and a broker restart lose
//! nothing and leave nothing unacknowledged; a full queue leaves messages at the
//! broker; a refused message goes to the queue's dead-letter exchange; the sink
//! publishes with confirms.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use outpost_tests::agent::Agent;
use outpost_tests::fixture::{
    body, delivered_numbers, forward_config, numbered_events, post_across_outage, post_ok,
    source_config, source_health, wait_dead_letters, wait_numbers_delivered, DELIVERY,
};
use outpost_tests::rabbitmq::RabbitMq;
use outpost_tests::receiver::Receiver;
use outpost_tests::wait_for;
use serde_json::json;

fn wait_settled(broker: &RabbitMq, queue: &str) {
    wait_for("the queue empty, nothing unacknowledged", DELIVERY, || {
        (broker.queue_counts(queue) == (0, 0)).then_some(())
    });
}

#[test]
fn amqp_messages_survive_kill9_and_a_broker_restart_and_none_stays_unacknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = RabbitMq::start();
    let store = Receiver::start();
    let client = broker.client();
    client.queue("cams", None);
    let n = 3000;
    client.publish_all("cams", &numbered_events(0..n / 2), |i| {
        Some(format!("cam-msg-{i}"))
    });
    let config = source_config(
        "amqp",
        "forward",
        &store.url("/in"),
        &format!(
            "url = \"{}\"\nqueue = \"cams\"\nprefetch = 50",
            broker.url()
        ),
    );
    let mut agent = Agent::start(dir.path(), &config);
    wait_for("a sixth delivered", DELIVERY, || {
        (delivered_numbers(&store.accepted()).len() as u64 > n / 6).then_some(())
    });
    agent.kill9();
    agent.restart();
    wait_for("a third delivered", DELIVERY, || {
        (delivered_numbers(&store.accepted()).len() as u64 > n / 3).then_some(())
    });
    drop(client);
    broker.stop();
    broker.start_again();
    let client = broker.client();
    client.publish_all("cams", &numbered_events(n / 2..n), |_| None);
    wait_numbers_delivered(&store, n, &agent);
    wait_settled(&broker, "cams");
    let h = source_health(&agent);
    assert_eq!(
        (h["kind"].as_str(), h["state"].as_str()),
        (Some("amqp"), Some("connected")),
        "{h}"
    );
    assert!(
        h["redelivered"].as_u64().unwrap() > 0,
        "the kill -9 left some unacknowledged: {h}"
    );
    // The AMQP message_id is the idempotency key.
    let got = store.accepted();
    assert!(got
        .iter()
        .any(|m| m.header("idempotency-key") == Some("cam-msg-0")));
}

#[test]
fn a_full_queue_leaves_messages_at_the_broker_until_there_is_room() {
    let dir = tempfile::tempdir().unwrap();
    let broker = RabbitMq::shared();
    let up = Arc::new(AtomicBool::new(false));
    let open = Arc::clone(&up);
    let store = Receiver::start_on(0, move |_| {
        if open.load(Ordering::Relaxed) {
            200
        } else {
            503
        }
    });
    let client = broker.client();
    client.queue("full-test", None);
    let n = 200;
    let config = source_config(
        "amqp",
        "forward",
        &store.url("/in"),
        &format!(
            "url = \"{}\"\nqueue = \"full-test\"\nprefetch = 10",
            broker.url()
        ),
    )
    .replace(
        "[plugins]",
        "[queue]\nmax_bytes = 8192\nwhen_full = \"reject\"\n[plugins]",
    );
    let agent = Agent::start(dir.path(), &config);
    client.publish_all("full-test", &numbered_events(0..n), |_| None);
    wait_for("the queue refuses work", DELIVERY, || {
        let e = source_health(&agent)["last_error"].as_str()?.to_owned();
        e.contains("full").then_some(())
    });
    let (ready, unacked) = broker.queue_counts("full-test");
    assert!(ready + unacked > 0, "messages stay at the broker");
    assert!(
        unacked <= 10,
        "prefetch bounds what is in flight: {unacked}"
    );
    up.store(true, Ordering::Relaxed);
    wait_numbers_delivered(&store, n, &agent);
    wait_settled(&broker, "full-test");
}

#[test]
fn a_refused_message_is_rejected_to_the_dead_letter_exchange() {
    let dir = tempfile::tempdir().unwrap();
    let broker = RabbitMq::shared();
    let store = Receiver::start();
    let client = broker.client();
    client.queue("refused-dead", None);
    client.fanout_to("refused-dlx", "refused-dead");
    client.queue("refused-in", Some("refused-dlx"));
    let config = source_config(
        "amqp",
        "faulty_plugin",
        &store.url("/in"),
        &format!(
            "url = \"{}\"\nqueue = \"refused-in\"\npassive = true",
            broker.url()
        ),
    );
    let agent = Agent::start(dir.path(), &config);
    client.publish_all(
        "refused-in",
        &[
            b"{\"fault\": 7}".to_vec(),
            b"not json".to_vec(),
            b"{\"n\": 0}".to_vec(),
        ],
        |_| None,
    );
    wait_numbers_delivered(&store, 1, &agent);
    let dead = wait_for("two dead-lettered", DELIVERY, || {
        let (ready, _) = broker.queue_counts("refused-dead");
        (ready == 2).then(|| client.drain("refused-dead"))
    });
    let bodies: Vec<String> = dead
        .iter()
        .map(|(b, _)| String::from_utf8_lossy(b).into_owned())
        .collect();
    assert_eq!(bodies, ["{\"fault\": 7}", "not json"]);
    wait_settled(&broker, "refused-in");
    let h = source_health(&agent);
    assert_eq!(
        (h["rejected"].as_u64(), h["acked"].as_u64()),
        (Some(2), Some(1)),
        "{h}"
    );
}

#[test]
fn a_missing_queue_or_wrong_credentials_are_clear_errors_and_retried() {
    let dir = tempfile::tempdir().unwrap();
    let broker = RabbitMq::shared();
    let store = Receiver::start();
    let config = |keys: &str| source_config("amqp", "forward", &store.url("/in"), keys);
    let wrong = format!(
        "url = \"amqp://guest:nope@127.0.0.1:{}/%2f\"\nqueue = \"q\"",
        broker.port
    );
    let mut agent = Agent::start(dir.path(), &config(&wrong));
    let error = wait_for("an error in health", DELIVERY, || {
        source_health(&agent)["last_error"]
            .as_str()
            .map(str::to_owned)
    });
    assert!(
        error.contains("ACCESS_REFUSED") || error.contains("refused"),
        "{error}"
    );
    assert!(!error.contains("nope"), "no password in errors: {error}");
    agent.terminate();
    let missing = format!(
        "url = \"{}\"\nqueue = \"not-there\"\npassive = true",
        broker.url()
    );
    let mut agent = Agent::start(dir.path(), &config(&missing));
    let error = wait_for("an error in health", DELIVERY, || {
        source_health(&agent)["last_error"]
            .as_str()
            .map(str::to_owned)
    });
    assert!(
        error.contains("not-there") && error.contains("NOT_FOUND"),
        "{error}"
    );
    // Once the queue exists, the source gets going by itself.
    let client = broker.client();
    client.queue("not-there", None);
    client.publish_all("not-there", &numbered_events(0..3), |_| None);
    wait_numbers_delivered(&store, 3, &agent);
    assert!(agent.terminate().success());
}

#[test]
fn amqp_sink_publishes_with_confirms_across_a_broker_restart_and_kill9() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = RabbitMq::start();
    broker.client().queue("out", None);
    let config = forward_config(
        "bus",
        &format!(
            "type = \"amqp\"\nurl = \"{}\"\nrouting_key = \"out\"\n\
             retry = {{ initial_ms = 50, max_ms = 500 }}",
            broker.url()
        ),
    );
    let mut agent = Agent::start(dir.path(), &config);
    let n = 300;
    post_across_outage(&mut agent, &mut broker, n);
    let client = broker.client();
    let mut ids = BTreeSet::new();
    wait_for("every message at the broker", DELIVERY, || {
        for (_, id) in client.drain("out") {
            ids.insert(id.expect("message_id"));
        }
        (ids.len() == n).then_some(())
    });
    wait_for("the sink's backlog empty", DELIVERY, || {
        (agent.get_json("/v1/health")["sinks"]["bus"]["backlog"] == 0).then_some(())
    });
}

#[test]
fn an_unroutable_message_is_a_dead_letter() {
    let dir = tempfile::tempdir().unwrap();
    let broker = RabbitMq::shared();
    let config = forward_config(
        "bus",
        &format!(
            "type = \"amqp\"\nurl = \"{}\"\nrouting_key = \"no-such-queue\"",
            broker.url()
        ),
    );
    let agent = Agent::start(dir.path(), &config);
    post_ok(&agent, "r-1", &body("h", [json!({"n": 1})]));
    let dead = wait_dead_letters(&agent, "bus", 1);
    assert!(dead.to_string().contains("NO_ROUTE"), "{dead}");
}
