//! Sources: a backlog of 100,000 messages of ~1 KB in a Redis stream or a RabbitMQ
//! queue, drained by the agent through the WASM sending plugin into a file sink, with
//! every message acknowledged to the broker only after its durable commit. Beside it,
//! the broker's own ceiling on this machine: a plain consumer that reads and
//! acknowledges the same backlog the same way (batches of 64 / prefetch 64) and writes
//! nothing.

use std::time::{Duration, Instant};

use outpost_tests::rabbitmq::RabbitMq;
use outpost_tests::redis::RedisServer;

use super::{Agent, Report};

const BACKLOG: usize = 100_000;
/// Entries per XREADGROUP, and AMQP prefetch: the agent's defaults.
const BATCH: usize = 64;

/// `{"n": i, "pad": "…"}` of about 1 KB.
fn message(i: usize) -> Vec<u8> {
    format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(1000)).into_bytes()
}

/// The agent: source `src` (its `source` keys) → the WASM sending plugin → file sink.
fn config(source: &str) -> String {
    format!(
        r#"
[agent]
listen = "{{LISTEN}}"
data_dir = "{{DATA}}"
[plugins]
dir = "{{PLUGINS}}"
active = ["event_sending_plugin_example"]
[plugins.settings.event_sending_plugin_example]
sink = "out"
[sinks.out]
type = "file"
path = "{{DATA}}/out.ndjson"
[queue]
max_bytes = 4294967296
[sources.src]
plugin = "event_sending_plugin_example"
deliver = "sending_event"
handler_id = "bench"
account_id = "bench"
{source}
"#
    )
}

/// Runs the agent until it acknowledged the whole backlog and its sink wrote it all.
fn drain(name: &str, source: &str, ceiling: Duration) {
    let agent = Agent::start(&config(source));
    let cpu0 = agent.cpu_seconds();
    let began = Instant::now();
    let mut acked_at = None;
    let deadline = began + Duration::from_secs(1200);
    loop {
        let h = agent.health();
        let acked = h["sources"]["src"]["acked"].as_u64().unwrap_or(0) as usize;
        if acked >= BACKLOG && acked_at.is_none() {
            acked_at = Some(began.elapsed());
        }
        if acked_at.is_some() && h["queue"]["depth"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{name}: stuck at {h}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let delivered = began.elapsed();
    let cpu = agent.cpu_seconds() - cpu0;
    let acked = acked_at.unwrap();
    let rate = BACKLOG as f64 / acked.as_secs_f64();
    let ceiling_rate = BACKLOG as f64 / ceiling.as_secs_f64();
    let mut r = Report::new(name);
    r.add(
        "backlog",
        format!("{BACKLOG} messages of ~1 KB, batches / prefetch of {BATCH}"),
    );
    r.add(
        "broker ceiling (plain consumer)",
        format!("{ceiling_rate:.0} msgs/s ({:.2} s)", ceiling.as_secs_f64()),
    );
    r.add(
        "agent: acknowledged msgs/s",
        format!(
            "{rate:.0} ({:.2} s), {:.0} % of the ceiling",
            acked.as_secs_f64(),
            100.0 * rate / ceiling_rate
        ),
    );
    r.add(
        "agent: all in the file sink",
        format!("{:.2} s", delivered.as_secs_f64()),
    );
    r.add("agent CPU seconds", format!("{cpu:.2}"));
    r.add(
        "agent CPU per message",
        format!("{:.1} µs", cpu * 1e6 / BACKLOG as f64),
    );
    r.add("agent RSS peak", format!("{:.1} MB", agent.peak_rss_mb()));
    r.add(
        "queue group commits",
        agent.health()["queue"]["commits"].clone(),
    );
    r.print();
    agent.stop();
}

/// A Redis stream (redis-server with `appendfsync always`, as the tests run it).
pub fn redis_stream() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(dir.path(), &[]);
    let mut client = redis.client();
    let load = |client: &mut outpost_tests::redis::RedisClient| {
        for chunk in (0..BACKLOG).collect::<Vec<_>>().chunks(1000) {
            let commands: Vec<Vec<Vec<u8>>> = chunk
                .iter()
                .map(|&i| {
                    vec![
                        b"XADD".to_vec(),
                        b"cams".to_vec(),
                        b"*".to_vec(),
                        b"payload".to_vec(),
                        message(i),
                    ]
                })
                .collect();
            client.pipeline(&commands);
        }
    };
    load(&mut client);
    // The ceiling: XREADGROUP COUNT 64, then one XACK for the batch, on one connection.
    client.cmd(&["XGROUP", "CREATE", "cams", "plain", "0"]);
    let began = Instant::now();
    let mut read = 0;
    while read < BACKLOG {
        let reply = client.cmd(&[
            "XREADGROUP",
            "GROUP",
            "plain",
            "c",
            "COUNT",
            &BATCH.to_string(),
            "STREAMS",
            "cams",
            ">",
        ]);
        let entries = reply.items()[0].items()[1].items();
        let mut ack = vec!["XACK".to_owned(), "cams".to_owned(), "plain".to_owned()];
        ack.extend(entries.iter().map(|e| e.items()[0].text()));
        client.cmd(&ack);
        read += entries.len();
    }
    let ceiling = began.elapsed();
    drain(
        "sources) Redis stream → WASM plugin → file sink",
        &format!(
            "type = \"redis\"\nurl = \"{}\"\nkey = \"cams\"\nblock_ms = 100",
            redis.url()
        ),
        ceiling,
    );
}

/// A durable RabbitMQ queue of persistent messages.
pub fn amqp_queue() {
    let broker = RabbitMq::start();
    let client = broker.client();
    let messages: Vec<Vec<u8>> = (0..BACKLOG).map(message).collect();
    client.queue("ceiling", None);
    client.queue("cams", None);
    client.publish_all("ceiling", &messages, |_| None);
    client.publish_all("cams", &messages, |_| None);
    let began = Instant::now();
    client.consume_and_ack("ceiling", BACKLOG, BATCH as u16);
    let ceiling = began.elapsed();
    drop(client);
    drain(
        "sources) RabbitMQ queue → WASM plugin → file sink",
        &format!(
            "type = \"amqp\"\nurl = \"{}\"\nqueue = \"cams\"",
            broker.url()
        ),
        ceiling,
    );
}
