//! End to end: the real agent, the built-in `forward` plugin, a real HTTP receiver.

use std::collections::HashSet;
use std::time::Duration;

use outpost_tests::agent::Agent;
use outpost_tests::fixture::{self, http_sink, post, wait_checkpoint, with_agent_keys, DELIVERY};
use outpost_tests::receiver::Receiver;
use outpost_tests::{free_port, wait_for};
use serde_json::json;

/// The built-in `forward` plugin into HTTP sink `store` at `url`, with `extra` sink
/// keys (and tables after them); requests up to 64 KiB.
fn forward_config(url: &str, extra: &str) -> String {
    with_agent_keys(
        &fixture::forward_config("store", &http_sink(url, extra)),
        "max_body_bytes = 65536",
    )
}

fn events_body(request: usize, events: usize) -> serde_json::Value {
    json!({
        "handler_id": "handler-1",
        "account_id": "account-1",
        "events": (0..events).map(|i| json!({"request": request, "n": i, "label": "face"})).collect::<Vec<_>>(),
    })
}

#[test]
fn events_arrive_in_seed_shape_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start();
    let agent = Agent::start(
        dir.path(),
        &forward_config(&receiver.url("/1/buckets/b/objects"), ""),
    );

    for i in 0..20 {
        let r = post(&agent, &format!("req-{i:02}"), &events_body(i, 3));
        assert_eq!(r.status, 202, "{}", r.text());
        assert_eq!(
            r.json(),
            json!({"request_id": format!("req-{i:02}"), "accepted": 3})
        );
    }
    let got = receiver.wait_accepted(20, DELIVERY);
    let mut keys = HashSet::new();
    for (i, m) in got.iter().enumerate() {
        assert_eq!(m.method, "POST");
        assert_eq!(m.path, "/1/buckets/b/objects");
        assert_eq!(m.header("content-type"), Some("application/json"));
        assert!(keys.insert(
            m.header("idempotency-key")
                .expect("idempotency key")
                .to_owned()
        ));
        let body = m.json();
        let obj = body.as_object().unwrap();
        let mut fields: Vec<&str> = obj.keys().map(String::as_str).collect();
        fields.sort();
        assert_eq!(
            fields,
            [
                "Luna-Request-Id",
                "account_id",
                "event_create_time",
                "event_end_time",
                "events",
                "handler_id"
            ]
        );
        assert_eq!(body["Luna-Request-Id"], format!("req-{i:02}"), "in order");
        assert_eq!(body["handler_id"], "handler-1");
        assert_eq!(body["account_id"], "account-1");
        assert_eq!(body["events"], events_body(i, 3)["events"]);
        assert!(body["event_create_time"].as_str().unwrap().ends_with('Z'));
    }
    let health = agent.get_json("/v1/health");
    assert_eq!(health["sinks"]["store"]["state"], "connected");
    wait_for("empty queue", DELIVERY, || {
        (agent.get_json("/v1/health")["queue"]["depth"] == 0).then_some(())
    });
}

#[test]
fn offline_backlog_survives_kill_9_and_arrives_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/ingest");
    let mut agent = Agent::start(dir.path(), &forward_config(&url, ""));

    for i in 0..50 {
        let r = post(&agent, &format!("off-{i:02}"), &events_body(i, 2));
        assert_eq!(
            r.status,
            202,
            "accepted while the receiver is down: {}",
            r.text()
        );
    }
    let health = wait_for("a failed delivery attempt", DELIVERY, || {
        let h = agent.get_json("/v1/health");
        (h["sinks"]["store"]["state"] == "disconnected").then_some(h)
    });
    assert_eq!(health["sinks"]["store"]["backlog"], 50);
    assert!(health["sinks"]["store"]["last_error"].as_str().is_some());

    agent.kill9();
    let receiver = Receiver::start_on(port, |_| 200);
    agent.restart();
    let got = receiver.wait_accepted(50, DELIVERY);
    let ids: Vec<String> = got
        .iter()
        .map(|m| m.json()["Luna-Request-Id"].as_str().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = (0..50).map(|i| format!("off-{i:02}")).collect();
    assert_eq!(ids[..50], expected[..], "all of them, in order");
    wait_for("empty queue", DELIVERY, || {
        (agent.get_json("/v1/health")["queue"]["depth"] == 0).then_some(())
    });
}

#[test]
fn bad_input_gets_a_4xx_with_a_json_error_and_the_agent_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start();
    let agent = Agent::start(dir.path(), &forward_config(&receiver.url("/in"), ""));

    let cases: Vec<(&[u8], u16, &str, &str)> = vec![
        (
            b"{\"handler_id\": \"h\", \"account_id\": ",
            400,
            "malformed_json",
            "line 1",
        ),
        (b"not json at all", 400, "malformed_json", "JSON"),
        (
            br#"{"handler_id": 7, "account_id": "a", "events": [{}]}"#,
            400,
            "invalid_body",
            "handler_id",
        ),
        (
            br#"{"handler_id": "h", "account_id": "a", "events": {"a": 1}}"#,
            400,
            "invalid_body",
            "events",
        ),
        (
            br#"{"handler_id": "h", "account_id": "a"}"#,
            400,
            "invalid_body",
            "events",
        ),
        (
            br#"{"handler_id": "h", "account_id": "a", "events": []}"#,
            400,
            "invalid_body",
            "empty",
        ),
    ];
    for (body, status, code, hint) in cases {
        let r = agent.request("POST", "/v1/events", &[], body);
        assert_eq!(
            r.status,
            status,
            "{}: {}",
            String::from_utf8_lossy(body),
            r.text()
        );
        let e = r.json();
        assert_eq!(e["error"]["code"], code, "{e}");
        assert!(
            e["error"]["message"].as_str().unwrap().contains(hint),
            "{e}"
        );
    }
    let oversized = events_body(0, 1)
        .to_string()
        .replace("face", &"x".repeat(70_000));
    let r = agent.request("POST", "/v1/events", &[], oversized.as_bytes());
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "body_too_large");

    let r = agent.request("GET", "/nope", &[], b"");
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["code"], "not_found");
    let r = agent.request("GET", "/v1/events", &[], b"");
    assert_eq!(r.status, 405);

    let r = post(&agent, "after-bad", &events_body(1, 1));
    assert_eq!(r.status, 202, "still serving: {}", r.text());
    let got = receiver.wait_accepted(1, DELIVERY);
    assert_eq!(got.len(), 1, "nothing from the bad requests was queued");
    assert_eq!(got[0].json()["Luna-Request-Id"], "after-bad");
    assert_eq!(
        agent.metric("outpost_http_requests_total{status=\"400\"}"),
        Some(6.0)
    );
}

#[test]
fn hostile_input_is_refused_naming_the_field_and_stalled_bodies_are_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start();
    let config = forward_config(&receiver.url("/in"), "").replace(
        "max_body_bytes = 65536",
        "max_body_bytes = 1048576\nbody_read_timeout_ms = 500\nmax_json_depth = 32",
    );
    let agent = Agent::start(dir.path(), &config);
    let refused = |body: String, hint: &str| {
        let r = agent.request("POST", "/v1/events", &[], body.as_bytes());
        assert_eq!(r.status, 400, "{hint}: {}", r.text());
        let e = r.json();
        assert_eq!(e["error"]["code"], "invalid_body", "{e}");
        let message = e["error"]["message"].as_str().unwrap();
        assert!(message.contains(hint), "{hint}: {message}");
    };
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    refused(
        format!(
            r#"{{"handler_id": "h", "account_id": "a", "events": [{{"ok": 1}}, {{"x": {deep}}}]}}"#
        ),
        "`events[1]`: nested deeper than 32 levels",
    );
    refused(
        r#"{"handler_id": "h", "account_id": "a", "events": [1, "x", null]}"#.into(),
        "`events[0]`: an event must be a JSON object",
    );
    refused(
        r#"{"handler_id": "", "account_id": "a", "events": [{}]}"#.into(),
        "`handler_id`: must not be empty",
    );
    refused(
        r#"{"handler_id": "h", "account_id": "", "events": [{}]}"#.into(),
        "`account_id`: must not be empty",
    );

    // A body that stops short of its Content-Length, and a chunked body that stops: both
    // cut off with 408 after body_read_timeout_ms, the connection closed.
    let short = format!(
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{}",
        r#"{"handler_id""#
    );
    let chunked =
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"han\r\n";
    for stalled in [short.as_str(), chunked] {
        let began = std::time::Instant::now();
        let r = outpost_tests::client::raw(agent.addr, stalled.as_bytes(), Duration::from_secs(20))
            .expect("an answer before the connection closes");
        assert_eq!(r.status, 408, "{}", r.text());
        assert_eq!(r.json()["error"]["code"], "body_timeout");
        assert!(
            began.elapsed() < Duration::from_secs(15),
            "cut off: {:?}",
            began.elapsed()
        );
    }

    let r = post(&agent, "after-hostile", &events_body(1, 1));
    assert_eq!(r.status, 202, "still serving: {}", r.text());
    let got = receiver.wait_accepted(1, DELIVERY);
    assert_eq!(got.len(), 1, "nothing from the refused requests was queued");
    assert_eq!(got[0].json()["Luna-Request-Id"], "after-hostile");
}

fn filler(i: usize) -> serde_json::Value {
    json!({"handler_id": "h", "account_id": "a", "events": [{"i": i, "pad": "p".repeat(1000)}]})
}

#[test]
fn full_queue_rejects_with_507_under_reject() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{}/down", free_port());
    let agent = Agent::start(
        dir.path(),
        &forward_config(&url, "[queue]\nmax_bytes = 8192\nwhen_full = \"reject\"\n"),
    );
    let mut accepted = 0;
    let mut rejected = None;
    for i in 0..20 {
        let r = post(&agent, &format!("f-{i}"), &filler(i));
        match r.status {
            202 => accepted += 1,
            507 => {
                rejected = Some(r);
                break;
            }
            other => panic!("unexpected {other}: {}", r.text()),
        }
    }
    let r = rejected.expect("the queue filled up");
    assert!(accepted >= 3, "accepted {accepted} before full");
    assert_eq!(r.json()["error"]["code"], "insufficient_storage");
    let h = agent.get_json("/v1/health");
    assert_eq!(
        h["queue"]["depth"], accepted,
        "nothing dropped, nothing extra"
    );
    assert_eq!(h["sinks"]["store"]["dropped_queue_full"], 0);
    assert_eq!(
        agent.metric("outpost_http_requests_total{status=\"507\"}"),
        Some(1.0)
    );
}

#[test]
fn full_queue_drops_oldest_under_drop_oldest_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/in");
    let mut agent = Agent::start(
        dir.path(),
        &forward_config(
            &url,
            "[queue]\nmax_bytes = 8192\nwhen_full = \"drop_oldest\"\n",
        ),
    );
    for i in 0..20 {
        let r = post(&agent, &format!("d-{i:02}"), &filler(i));
        assert_eq!(r.status, 202, "{}", r.text());
    }
    let dropped = agent
        .metric("outpost_sink_dropped_total{sink=\"store\"}")
        .expect("dropped counter");
    assert!(dropped >= 10.0, "dropped {dropped}");
    let h = agent.get_json("/v1/health");
    assert_eq!(
        h["sinks"]["store"]["dropped_queue_full"].as_f64(),
        Some(dropped)
    );
    let depth = h["queue"]["depth"].as_u64().unwrap();
    assert_eq!(depth + dropped as u64, 20);

    wait_checkpoint(&agent);
    agent.kill9();
    let receiver = Receiver::start_on(port, |_| 200);
    agent.restart();
    let got = receiver.wait_accepted(depth as usize, DELIVERY);
    let ids: Vec<String> = got
        .iter()
        .map(|m| m.json()["Luna-Request-Id"].as_str().unwrap().to_owned())
        .collect();
    let newest: Vec<String> = (20 - depth as usize..20)
        .map(|i| format!("d-{i:02}"))
        .collect();
    // The newest stayed, in order. A drop is durable at the index's next checkpoint:
    // if the one waited for began before the last drops, those come back, oldest
    // first (at-least-once), never out of order or twice.
    assert!(ids.ends_with(&newest), "the newest stayed: {ids:?}");
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(ids, sorted, "in order, once each");
}

#[test]
fn refused_message_is_dead_lettered_while_others_flow() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start_on(0, |r| {
        if r.text().contains("poison") {
            400
        } else {
            201
        }
    });
    let agent = Agent::start(dir.path(), &forward_config(&receiver.url("/in"), ""));
    for (id, label) in [("ok-1", "fine"), ("bad", "poison"), ("ok-2", "fine")] {
        let body = json!({"handler_id": "h", "account_id": "a", "events": [{"label": label}]});
        assert_eq!(post(&agent, id, &body).status, 202);
    }
    let got = receiver.wait_accepted(2, DELIVERY);
    let ids: Vec<String> = got
        .iter()
        .map(|m| m.json()["Luna-Request-Id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["ok-1", "ok-2"]);
    // The receiver has ok-2 before the agent read its answer and deleted it: wait for
    // the delete too (asserting the depth at once raced it under CPU stress).
    let h = wait_for("dead letter counted and the queue empty", DELIVERY, || {
        let h = agent.get_json("/v1/health");
        (h["sinks"]["store"]["dead_letters"] == 1 && h["queue"]["depth"] == 0).then_some(h)
    });
    assert!(h["sinks"]["store"]["last_error"]
        .as_str()
        .unwrap()
        .contains("400"));
    let attempts = receiver
        .all()
        .iter()
        .filter(|r| r.text().contains("poison"))
        .count();
    assert_eq!(attempts, 1, "a permanent refusal is not retried");
}

#[test]
fn server_errors_are_retried_with_the_same_idempotency_key() {
    let dir = tempfile::tempdir().unwrap();
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = calls.clone();
    let receiver = Receiver::start_on(0, move |_| {
        if counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 3 {
            503
        } else {
            200
        }
    });
    let agent = Agent::start(dir.path(), &forward_config(&receiver.url("/in"), ""));
    assert_eq!(post(&agent, "retry-me", &events_body(0, 1)).status, 202);
    receiver.wait_accepted(1, DELIVERY);
    let all = receiver.all();
    assert_eq!(all.len(), 4, "three 503s, then success");
    let keys: HashSet<_> = all
        .iter()
        .map(|r| r.header("idempotency-key").unwrap().to_owned())
        .collect();
    assert_eq!(keys.len(), 1, "one message, one key");
    assert!(
        agent
            .metric("outpost_sink_failures_total{sink=\"store\"}")
            .unwrap()
            >= 3.0
    );
}

#[test]
fn bearer_token_guards_every_route_but_health() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start();
    let config = forward_config(&receiver.url("/in"), "").replace(
        "max_body_bytes = 65536",
        "max_body_bytes = 65536\nauth_token = \"s3cret\"",
    );
    let agent = Agent::start(dir.path(), &config);
    let body = events_body(0, 1).to_string();
    let r = agent.request("POST", "/v1/events", &[], body.as_bytes());
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["code"], "unauthorized");
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    let r = agent.request(
        "POST",
        "/v1/events",
        &[("Authorization", "Bearer wrong")],
        body.as_bytes(),
    );
    assert_eq!(r.status, 401);
    assert_eq!(agent.request("GET", "/metrics", &[], b"").status, 401);
    assert_eq!(agent.request("GET", "/v1/health", &[], b"").status, 200);
    let r = agent.request(
        "POST",
        "/v1/events",
        &[("Authorization", "Bearer s3cret")],
        body.as_bytes(),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    receiver.wait_accepted(1, DELIVERY);
}

#[test]
fn sigterm_shuts_down_cleanly_and_keeps_the_backlog() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{}/down", free_port());
    let mut agent = Agent::start(dir.path(), &forward_config(&url, ""));
    for i in 0..5 {
        assert_eq!(
            post(&agent, &format!("t-{i}"), &events_body(i, 1)).status,
            202
        );
    }
    let status = agent.terminate();
    assert!(status.success(), "exit status {status:?}\n{}", agent.log());
    assert!(agent.log().contains("queue flushed"), "{}", agent.log());
    agent.restart();
    assert_eq!(agent.get_json("/v1/health")["queue"]["depth"], 5);
}

#[test]
fn batched_posts_carry_json_arrays_and_a_refused_batch_is_split_to_find_the_culprit() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let open = std::sync::Arc::new(AtomicBool::new(false));
    let gate = open.clone();
    // 503 until every request is queued, so that the agent has a backlog to batch.
    let receiver = Receiver::start_on(0, move |r| {
        if !gate.load(Ordering::SeqCst) {
            503
        } else if r.text().contains("poison") {
            400
        } else {
            200
        }
    });
    let agent = Agent::start(
        dir.path(),
        &forward_config(&receiver.url("/bulk"), "batch_max_messages = 10"),
    );
    let expected: Vec<String> = (0..25)
        .filter(|i| *i != 12)
        .map(|i| format!("b-{i:02}"))
        .collect();
    for i in 0..25 {
        let label = if i == 12 { "poison" } else { "fine" };
        let body = json!({"handler_id": "h", "account_id": "a", "events": [{"label": label}]});
        assert_eq!(post(&agent, &format!("b-{i:02}"), &body).status, 202);
    }
    open.store(true, Ordering::SeqCst);
    wait_for("the dead letter", DELIVERY, || {
        let h = agent.get_json("/v1/health");
        (h["sinks"]["store"]["dead_letters"] == 1 && h["queue"]["depth"] == 0).then_some(())
    });

    let mut delivered = Vec::new();
    let mut batches = 0;
    for r in receiver.accepted() {
        assert!(r
            .header("content-type")
            .unwrap()
            .starts_with("application/json"));
        match r.json() {
            serde_json::Value::Array(messages) => {
                batches += 1;
                assert!(
                    messages.len() > 1 && messages.len() <= 10,
                    "{}",
                    messages.len()
                );
                let ids = r.header("outpost-message-ids").expect("ids of a batch");
                assert_eq!(ids.split(',').count(), messages.len());
                let key = r.header("idempotency-key").unwrap();
                assert!(key.starts_with(ids.split(',').next().unwrap()), "{key}");
                delivered.extend(messages);
            }
            message => {
                assert!(r.header("outpost-message-ids").is_none());
                delivered.push(message);
            }
        }
    }
    let ids: Vec<String> = delivered
        .iter()
        .map(|m| m["Luna-Request-Id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, expected, "each once, in order, the poison left out");
    assert!(batches >= 2, "the backlog went out in batches");
    let poison_alone = receiver
        .all()
        .iter()
        .filter(|r| r.text().contains("poison") && !r.text().starts_with('['))
        .count();
    assert_eq!(
        poison_alone, 1,
        "the culprit was found by sending it alone once"
    );
}

#[test]
fn a_message_the_receiver_always_fails_is_dead_lettered_after_max_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start_on(free_port(), |m| {
        if m.json()["Luna-Request-Id"] == "poison" {
            500
        } else {
            200
        }
    });
    let agent = Agent::start(
        dir.path(),
        &forward_config(&receiver.url("/in"), "max_attempts = 3"),
    );
    for id in ["poison", "after-1", "after-2"] {
        assert_eq!(post(&agent, id, &events_body(0, 1)).status, 202);
    }
    let got = receiver.wait_accepted(2, DELIVERY);
    let ids: Vec<_> = got
        .iter()
        .map(|m| m.json()["Luna-Request-Id"].clone())
        .collect();
    assert_eq!(ids, ["after-1", "after-2"], "the FIFO moved on");
    let poisoned = receiver
        .all()
        .iter()
        .filter(|m| m.json()["Luna-Request-Id"] == "poison")
        .count();
    assert_eq!(poisoned, 3, "tried max_attempts times");
    let h = agent.get_json("/v1/health");
    assert_eq!(h["sinks"]["store"]["dead_letters"], 1, "{h}");
    assert!(h["sinks"]["store"]["last_error"]
        .as_str()
        .unwrap()
        .contains("gave up after 3 attempts"));
}

#[test]
fn messages_older_than_max_age_are_dropped_with_a_counter() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/in");
    let agent = Agent::start(dir.path(), &forward_config(&url, "max_age = \"1s\""));
    for i in 0..3 {
        assert_eq!(
            post(&agent, &format!("stale-{i}"), &events_body(i, 1)).status,
            202
        );
    }
    // The receiver is down: the loop retries, and drops the messages once they are
    // older than max_age; only then does the receiver come up.
    wait_for("the stale messages to expire", DELIVERY, || {
        (agent.metric("outpost_sink_expired_total{sink=\"store\"}") == Some(3.0)).then_some(())
    });
    let receiver = Receiver::start_on(port, |_| 200);
    assert_eq!(post(&agent, "fresh", &events_body(9, 1)).status, 202);
    let got = receiver.wait_accepted(1, DELIVERY);
    assert_eq!(got[0].json()["Luna-Request-Id"], "fresh");
    assert_eq!(receiver.accepted().len(), 1, "nothing stale was sent");
    assert_eq!(agent.get_json("/v1/health")["sinks"]["store"]["expired"], 3);
}

/// Producers on the same box can skip TCP: a Unix socket serves the same API, with the
/// same token, beside the TCP listener (or instead of it).
#[test]
fn a_unix_socket_serves_the_same_api_with_the_same_token() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start();
    let socket = dir.path().join("run").join("ingest.sock");
    let config = with_agent_keys(
        &forward_config(&receiver.url("/in"), ""),
        &format!(
            "listen_unix = \"{}\"\nauth_token = \"s3cret\"",
            socket.display()
        ),
    );
    let agent = Agent::start(dir.path(), &config);
    let unix = |method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]| {
        outpost_tests::client::try_request_unix(&socket, method, path, headers, body)
            .expect("an answer on the Unix socket")
    };
    let body = events_body(0, 2).to_string();
    let refused = unix(
        "POST",
        "/v1/events",
        &[("X-Request-Id", "u-0")],
        body.as_bytes(),
    );
    assert_eq!(refused.status, 401, "the token applies: {}", refused.text());
    let auth = [("X-Request-Id", "u-1"), ("Authorization", "Bearer s3cret")];
    let r = unix("POST", "/v1/events", &auth, body.as_bytes());
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(r.json()["accepted"], 2);
    let got = receiver.wait_accepted(1, DELIVERY);
    assert_eq!(got[0].json()["Luna-Request-Id"], "u-1");
    assert_eq!(unix("GET", "/v1/health", &[], b"").status, 200);
    // A restart finds the socket file of the previous run and takes its place.
    let mut agent = agent;
    agent.restart();
    let r = unix("POST", "/v1/events", &auth, body.as_bytes());
    assert_eq!(r.status, 202, "{}", r.text());
}
