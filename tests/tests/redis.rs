//! Redis sources (stream, list, pub/sub) and the Redis sink, against a real
//! redis-server on a free 127.0.0.1 port: entries are acknowledged only once durable,
//! so `kill -9` and a Redis restart lose nothing; a dead consumer's entries are
//! claimed; a full queue leaves entries at Redis; refused entries are counted and
//! copied to the dead key.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use outpost_tests::agent::Agent;
use outpost_tests::fixture::{
    body, delivered_numbers, forward_config, post_across_outage, post_ok, source_config,
    source_health, wait_dead_letters, wait_numbers_delivered, DELIVERY,
};
use outpost_tests::receiver::Receiver;
use outpost_tests::redis::{RedisClient, RedisServer, StreamEntry};
use outpost_tests::wait_for;
use serde_json::json;

fn add_events(client: &mut RedisClient, key: &str, range: std::ops::Range<u64>) {
    for i in range {
        client.xadd(key, &[("payload", json!({"n": i}).to_string().as_bytes())]);
    }
}

#[test]
fn stream_entries_survive_kill9_and_a_redis_restart_and_none_stays_pending() {
    let dir = tempfile::tempdir().unwrap();
    let mut redis = RedisServer::start(dir.path(), &[]);
    let store = Receiver::start();
    let n = 3000;
    add_events(&mut redis.client(), "cams", 0..n / 2);
    let config = source_config(
        "redis",
        "forward",
        &store.url("/in"),
        &format!("url = \"{}\"\nkey = \"cams\"\ncount = 50", redis.url()),
    );
    let mut agent = Agent::start(dir.path(), &config);
    wait_for("a third delivered", DELIVERY, || {
        (delivered_numbers(&store.accepted()).len() as u64 > n / 6).then_some(())
    });
    agent.kill9();
    add_events(&mut redis.client(), "cams", n / 2..n);
    agent.restart();
    wait_for("two thirds delivered", DELIVERY, || {
        (delivered_numbers(&store.accepted()).len() as u64 > n * 2 / 3).then_some(())
    });
    redis.restart();
    wait_numbers_delivered(&store, n, &agent);
    wait_for("nothing pending at Redis", DELIVERY, || {
        (redis.client().pending("cams", "outpost") == 0).then_some(())
    });
    let h = source_health(&agent);
    assert_eq!(h["kind"], "redis");
    assert_eq!(h["state"], "connected", "{h}");
    assert!(h["acked"].as_u64().unwrap() > 0, "{h}");
    // Each delivered message carries its entry's id as the idempotency key.
    let ids: BTreeSet<String> = store
        .accepted()
        .iter()
        .filter_map(|m| m.header("idempotency-key").map(str::to_owned))
        .collect();
    assert!(ids.len() as u64 >= n, "one key per entry: {}", ids.len());
    assert!(ids.iter().all(|id| id.contains('-')), "stream entry ids");
}

#[test]
fn a_second_agent_claims_a_dead_consumers_pending_entries() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(dir.path(), &[]);
    let store = Receiver::start();
    let mut client = redis.client();
    client.cmd(&["XGROUP", "CREATE", "cams", "outpost", "0", "MKSTREAM"]);
    add_events(&mut client, "cams", 0..20);
    // A consumer that read them and died.
    client.cmd(&[
        "XREADGROUP",
        "GROUP",
        "outpost",
        "dead-camera",
        "COUNT",
        "100",
        "STREAMS",
        "cams",
        ">",
    ]);
    assert_eq!(client.pending("cams", "outpost"), 20);
    let config = source_config(
        "redis",
        "forward",
        &store.url("/in"),
        &format!(
            "url = \"{}\"\nkey = \"cams\"\nclaim_idle_ms = 1000",
            redis.url()
        ),
    );
    let agent = Agent::start(dir.path(), &config);
    wait_numbers_delivered(&store, 20, &agent);
    wait_for("nothing pending", DELIVERY, || {
        (client.pending("cams", "outpost") == 0).then_some(())
    });
    assert_eq!(source_health(&agent)["redelivered"], 20);
}

#[test]
fn a_full_queue_leaves_entries_at_redis_until_there_is_room() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(dir.path(), &[]);
    let up = Arc::new(AtomicBool::new(false));
    let open = Arc::clone(&up);
    let store = Receiver::start_on(0, move |_| {
        if open.load(Ordering::Relaxed) {
            200
        } else {
            503
        }
    });
    let n = 200;
    let config = source_config(
        "redis",
        "forward",
        &store.url("/in"),
        &format!("url = \"{}\"\nkey = \"cams\"\ncount = 10", redis.url()),
    )
    .replace(
        "[plugins]",
        "[queue]\nmax_bytes = 8192\nwhen_full = \"reject\"\n[plugins]",
    );
    let agent = Agent::start(dir.path(), &config);
    add_events(&mut redis.client(), "cams", 0..n);
    wait_for("the queue refuses work", DELIVERY, || {
        let e = source_health(&agent)["last_error"].as_str()?.to_owned();
        e.contains("full").then_some(())
    });
    let mut client = redis.client();
    let stored = source_health(&agent)["acked"].as_u64().unwrap();
    assert!(stored < n, "only what fits is taken off Redis: {stored}");
    // What the agent has not stored is still Redis's: pending (read, not acknowledged)
    // or not yet read.
    let read = client.cmd(&["XINFO", "GROUPS", "cams"]).items()[0].items();
    let lag = read
        .chunks(2)
        .find(|kv| kv[0].text() == "lag")
        .map(|kv| kv[1].int())
        .unwrap();
    assert!(client.pending("cams", "outpost") + lag > 0);
    up.store(true, Ordering::Relaxed);
    wait_numbers_delivered(&store, n, &agent);
    wait_for("nothing pending", DELIVERY, || {
        (client.pending("cams", "outpost") == 0).then_some(())
    });
}

#[test]
fn refused_entries_are_acknowledged_counted_and_copied_to_the_dead_key() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(dir.path(), &[]);
    let store = Receiver::start();
    let config = source_config(
        "redis",
        "faulty_plugin",
        &store.url("/in"),
        &format!(
            "url = \"{}\"\nkey = \"cams\"\ndead_key = \"cams:dead\"",
            redis.url()
        ),
    );
    let agent = Agent::start(dir.path(), &config);
    let mut client = redis.client();
    client.xadd("cams", &[("payload", b"{\"fault\": 7}")]); // the plugin refuses it
    client.xadd("cams", &[("payload", b"not json")]);
    client.xadd("cams", &[("other", b"{}")]); // no payload field
    client.xadd("cams", &[("payload", b"{\"n\": 1}")]);
    store.wait_accepted(1, DELIVERY);
    wait_for("three dead entries", DELIVERY, || {
        (client.entries("cams:dead").len() == 3).then_some(())
    });
    let dead = client.entries("cams:dead");
    let field = |e: &StreamEntry, k: &str| {
        String::from_utf8_lossy(e.field(k).unwrap_or_default()).into_owned()
    };
    assert_eq!(field(&dead[1], "payload"), "not json");
    assert!(field(&dead[1], "error").contains("JSON"), "{dead:?}");
    assert!(
        field(&dead[2], "error").contains("no `payload` field"),
        "{dead:?}"
    );
    assert!(
        field(&dead[0], "error").contains("faulty_plugin"),
        "{dead:?}"
    );
    assert_eq!(field(&dead[0], "stream"), "cams");
    wait_for("all acknowledged", DELIVERY, || {
        (client.pending("cams", "outpost") == 0).then_some(())
    });
    let h = source_health(&agent);
    assert_eq!(
        (
            h["received"].as_u64(),
            h["rejected"].as_u64(),
            h["acked"].as_u64()
        ),
        (Some(4), Some(3), Some(1)),
        "{h}"
    );
    assert!(h["last_error"].as_str().unwrap().contains("refused"), "{h}");
    assert!(
        agent.metric("outpost_source_rejected_total{source=\"src\",kind=\"redis\"}") == Some(3.0)
    );
}

#[test]
fn a_refused_entry_whose_copy_fails_stays_pending_until_the_dead_key_takes_it() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(dir.path(), &[]);
    let store = Receiver::start();
    let mut client = redis.client();
    client.cmd(&["SET", "cams:dead", "not a stream"]); // the copy will fail: WRONGTYPE
    let config = source_config(
        "redis",
        "faulty_plugin",
        &store.url("/in"),
        &format!(
            "url = \"{}\"\nkey = \"cams\"\ndead_key = \"cams:dead\"\nclaim_idle_ms = 1000",
            redis.url()
        ),
    );
    let agent = Agent::start(dir.path(), &config);
    // The plugin refuses the first entry; without its copy it must not hold up the
    // entries behind it. A field name that is not UTF-8 (binary-safe at Redis) is no
    // reason to fail either.
    client.xadd("cams", &[("payload", b"{\"fault\": 7}")]);
    client.cmd(&[
        &b"XADD"[..],
        b"cams",
        b"*",
        b"\xff\xfe",
        b"x",
        b"payload",
        b"{\"n\": 0}",
    ]);
    client.xadd("cams", &[("payload", b"{\"n\": 1}")]);
    wait_numbers_delivered(&store, 2, &agent);
    let h = wait_for("the failed copy in last_error", DELIVERY, || {
        let h = source_health(&agent);
        h["last_error"].as_str()?.contains("dead_key").then_some(h)
    });
    assert!(
        h["last_error"].as_str().unwrap().contains("WRONGTYPE"),
        "{h}"
    );
    assert_eq!(
        client.pending("cams", "outpost"),
        1,
        "only the refused entry, without its copy, stays pending: {h}"
    );
    client.cmd(&["DEL", "cams:dead"]);
    wait_for(
        "the refused entry copied and acknowledged",
        DELIVERY,
        || {
            (client.entries("cams:dead").len() == 1 && client.pending("cams", "outpost") == 0)
                .then_some(())
        },
    );
    let events: usize = store
        .accepted()
        .iter()
        .map(|m| m.json()["events"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(events, 2, "the accepted entries were not taken again");
}

#[test]
fn list_mode_takes_up_what_a_crash_left_in_the_processing_list_first() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(dir.path(), &[]);
    let store = Receiver::start();
    let mut client = redis.client();
    // What a crashed agent had moved and not yet stored (oldest at the right end).
    for i in 0..5u64 {
        client.cmd(&[
            "LPUSH",
            "jobs:processing:cam-01",
            &json!({"n": i}).to_string(),
        ]);
    }
    for i in 5..50u64 {
        client.cmd(&["LPUSH", "jobs", &json!({"n": i}).to_string()]);
    }
    let config = source_config(
        "redis",
        "forward",
        &store.url("/in"),
        &format!(
            "url = \"{}\"\nmode = \"list\"\nkey = \"jobs\"\ncount = 8",
            redis.url()
        ),
    );
    let agent = Agent::start(dir.path(), &config);
    wait_numbers_delivered(&store, 50, &agent);
    let first: Vec<u64> = store.accepted()[..5]
        .iter()
        .map(|m| m.json()["events"][0]["n"].as_u64().unwrap())
        .collect();
    assert_eq!(
        first,
        vec![0, 1, 2, 3, 4],
        "the left-overs first, oldest first"
    );
    wait_for("both lists empty", DELIVERY, || {
        (client.llen("jobs") == 0 && client.llen("jobs:processing:cam-01") == 0).then_some(())
    });
    assert_eq!(source_health(&agent)["redelivered"], 5);
}

#[test]
fn pubsub_mode_delivers_while_subscribed() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(dir.path(), &[]);
    let store = Receiver::start();
    let config = source_config(
        "redis",
        "forward",
        &store.url("/in"),
        &format!(
            "url = \"{}\"\nmode = \"pubsub\"\nchannels = [\"cams\"]\npatterns = [\"door:*\"]",
            redis.url()
        ),
    );
    let agent = Agent::start(dir.path(), &config);
    wait_for("subscribed", DELIVERY, || {
        (source_health(&agent)["state"] == "connected").then_some(())
    });
    let mut client = redis.client();
    let mut n = 0;
    for (channel, i) in [("cams", 0), ("door:1", 1), ("other", 99), ("door:2", 2)] {
        n += client
            .cmd(&["PUBLISH", channel, &json!({"n": i}).to_string()])
            .int();
    }
    assert_eq!(n, 3, "the agent is subscribed to three of them");
    wait_numbers_delivered(&store, 3, &agent);
}

#[test]
fn wrong_credentials_are_a_clear_error_and_retried() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(dir.path(), &["--requirepass", "s3cret"]);
    let store = Receiver::start();
    let url = format!("redis://:wrong@127.0.0.1:{}/0", redis.port);
    let config = source_config(
        "redis",
        "forward",
        &store.url("/in"),
        &format!("url = \"{url}\"\nkey = \"cams\""),
    );
    let mut agent = Agent::start(dir.path(), &config);
    let error = wait_for("an error in health", DELIVERY, || {
        source_health(&agent)["last_error"]
            .as_str()
            .map(str::to_owned)
    });
    assert!(error.contains("authentication failed"), "{error}");
    assert!(
        !error.contains("wrong"),
        "the password is not shown: {error}"
    );
    assert_ne!(source_health(&agent)["state"], "connected");
    // The right password in a key, from the environment: connects and delivers.
    let config = source_config(
        "redis",
        "forward",
        &store.url("/in"),
        &format!(
            "url = \"redis://127.0.0.1:{}/0\"\npassword = \"${{REDIS_PASSWORD}}\"\nkey = \"cams\"",
            redis.port
        ),
    );
    agent.terminate();
    let agent = Agent::start_env(
        outpost_tests::agent::Launcher::native(),
        dir.path(),
        &config,
        &[("REDIS_PASSWORD", "s3cret")],
    );
    let mut client = redis.client();
    client.cmd(&["AUTH", "s3cret"]);
    add_events(&mut client, "cams", 0..3);
    wait_numbers_delivered(&store, 3, &agent);
}

#[test]
fn redis_sink_appends_every_message_across_a_redis_restart_and_kill9() {
    let dir = tempfile::tempdir().unwrap();
    let mut redis = RedisServer::start(dir.path(), &[]);
    let config = forward_config(
        "stream",
        &format!(
            "type = \"redis\"\nurl = \"{}\"\nkey = \"out:{{device_id}}\"\nmaxlen = 100000\n\
             retry = {{ initial_ms = 50, max_ms = 300 }}",
            redis.url()
        ),
    );
    let mut agent = Agent::start(dir.path(), &config);
    let n = 300;
    post_across_outage(&mut agent, &mut redis, n);
    let mut client = redis.client();
    let ids = wait_for("every message in the stream", DELIVERY, || {
        let ids: BTreeSet<String> = client
            .entries("out:cam-01")
            .into_iter()
            .filter_map(|e| {
                e.field("id")
                    .map(|v| String::from_utf8(v.to_vec()).unwrap())
            })
            .collect();
        (ids.len() == n).then_some(ids)
    });
    assert_eq!(ids.len(), n);
    let entry = &client.entries("out:cam-01")[0];
    let payload = entry.field("payload").unwrap();
    assert!(String::from_utf8_lossy(payload).contains("\"n\":0"));
    wait_for("the sink's backlog empty", DELIVERY, || {
        (agent.get_json("/v1/health")["sinks"]["stream"]["backlog"] == 0).then_some(())
    });
}

#[test]
fn redis_sink_dead_letters_a_message_redis_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(dir.path(), &[]);
    redis.client().cmd(&["SET", "taken", "a string"]);
    let config = forward_config(
        "stream",
        &format!(
            "type = \"redis\"\nurl = \"{}\"\nkey = \"taken\"",
            redis.url()
        ),
    );
    let agent = Agent::start(dir.path(), &config);
    post_ok(&agent, "r-1", &body("h", [json!({"n": 1})]));
    let dead = wait_dead_letters(&agent, "stream", 1);
    assert!(dead.to_string().contains("WRONGTYPE"), "{dead}");
}
