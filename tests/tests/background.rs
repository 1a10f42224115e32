//! End to end: background plugins — custom routes, timers with state, device monitoring.

use outpost_tests::agent::Agent;
use outpost_tests::fixture::{AGENT, DELIVERY};
use outpost_tests::receiver::Receiver;
use outpost_tests::wait_for;

#[test]
fn teapot_routes_answer_as_the_seed_says() {
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(
        dir.path(),
        "[agent]\nlisten = \"{LISTEN}\"\ndata_dir = \"{DATA}\"\n[plugins]\ndir = \"{PLUGINS}\"\nactive = [\"teapot_plugin\"]\n",
    );
    let r = agent.request("GET", "/v1/plugins/teapot_plugin/teapot", &[], b"");
    assert_eq!(r.status, 418);
    assert_eq!(r.text(), "I am teapot");
    assert_eq!(r.header("content-type"), Some("text/plain"));

    let r = agent.request("GET", "/v1/plugins/teapot_plugin/teapot/version", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "T800");

    for (method, path) in [
        ("GET", "/v1/plugins/teapot_plugin/coffee"),
        ("POST", "/v1/plugins/teapot_plugin/teapot"),
        ("GET", "/v1/plugins/no_such_plugin/teapot"),
    ] {
        let r = agent.request(method, path, &[], b"");
        assert_eq!(r.status, 404, "{method} {path}");
        assert_eq!(r.json()["error"]["code"], "not_found");
    }
    let plugins = agent.get_json("/v1/plugins");
    let routes = &plugins["plugins"][0]["routes"];
    assert_eq!(routes[0]["path"], "/v1/plugins/teapot_plugin/teapot");
    assert_eq!(
        routes[1]["path"],
        "/v1/plugins/teapot_plugin/teapot/version"
    );
}

fn batcher_config(url: &str, interval_ms: u64) -> String {
    format!(
        r#"{AGENT}[plugins]
dir = "{{PLUGINS}}"
active = ["monitoring_batcher"]
monitoring_flush_ms = 100
[plugins.settings.monitoring_batcher]
sink = "influx"
interval_ms = {interval_ms}
[sinks.influx]
type = "http"
url = "{url}"
"#
    )
}

/// Sends `n` health requests tagged `{prefix}-{i}`; each makes one `requests` point.
fn health_requests(agent: &Agent, prefix: &str, n: usize) {
    for i in 0..n {
        let id = format!("{prefix}-{i}");
        assert_eq!(
            agent
                .request("GET", "/v1/health", &[("X-Request-Id", &id)], b"")
                .status,
            200
        );
    }
}

fn messages_with(receiver: &Receiver, needle: &str) -> usize {
    receiver
        .accepted()
        .iter()
        .filter(|m| m.text().contains(needle))
        .count()
}

#[test]
fn batcher_turns_many_points_into_one_message_and_keeps_them_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let influx = Receiver::start();
    // From before the agent starts: its readiness checks make points too.
    let started = std::time::Instant::now();
    let mut agent = Agent::start(dir.path(), &batcher_config(&influx.url("/write"), 1500));
    let plugin = &agent.get_json("/v1/plugins")["plugins"][0];
    assert_eq!(plugin["timer_ms"], 1500, "interval from the settings");

    // Points arrive at the batcher over several monitoring_event calls (every 100 ms) …
    let calls = |a: &Agent| {
        a.get_json("/v1/plugins")["plugins"][0]["calls"]
            .as_u64()
            .unwrap()
    };
    for round in 0..3 {
        let before = calls(&agent);
        health_requests(&agent, &format!("b{round}"), 10);
        wait_for(
            "a monitoring call with the round's points",
            DELIVERY,
            || (calls(&agent) > before).then_some(()),
        );
    }
    // … and leave in one message per timer tick: each point once, in few messages.
    wait_for("the batch", DELIVERY, || {
        (messages_with(&influx, "request_id=\"b2-9\"") == 1).then_some(())
    });
    let sent: String = influx.accepted().iter().map(|m| m.text()).collect();
    for round in 0..3 {
        for i in 0..10 {
            let id = format!("request_id=\"b{round}-{i}\"");
            assert_eq!(sent.matches(&id).count(), 1, "{id} once:\n{sent}");
        }
    }
    // One message per timer tick at most: 3 when the rounds take a tick or two (as on a
    // quiet machine), more only when a stalled machine stretched them over more ticks.
    let ticks = started.elapsed().as_millis() as usize / 1500 + 2;
    assert!(
        influx.accepted().len() <= ticks.max(3),
        "30 points, {} messages over {} timer ticks",
        influx.accepted().len(),
        ticks
    );

    // Points the batcher accepted survive a restart before its flush.
    agent.rewrite_config(&batcher_config(&influx.url("/write"), 600_000));
    agent.restart();
    health_requests(&agent, "kept", 5);
    // Handed to the batcher (a monitoring flush that began after the requests), stored
    // in its key-value store, and flushed to disk by a checkpoint: then a hard kill.
    let flushes = |a: &Agent| {
        a.get_json("/v1/health")["queue"]["checkpoints"]
            .as_u64()
            .unwrap()
    };
    let before = calls(&agent);
    wait_for("two batcher calls", DELIVERY, || {
        (calls(&agent) >= before + 2).then_some(())
    });
    let before = flushes(&agent);
    wait_for("two queue checkpoints", DELIVERY, || {
        (flushes(&agent) >= before + 2).then_some(())
    });
    assert_eq!(messages_with(&influx, "kept-0"), 0, "not flushed yet");
    agent.kill9();
    agent.rewrite_config(&batcher_config(&influx.url("/write"), 300));
    agent.restart();
    wait_for("the kept points", DELIVERY, || {
        (messages_with(&influx, "request_id=\"kept-4\"") == 1).then_some(())
    });
    assert!(
        agent.log().contains("kept from before the restart"),
        "{}",
        agent.log()
    );
    let kept = influx
        .accepted()
        .into_iter()
        .find(|m| m.text().contains("kept-0"))
        .unwrap()
        .text();
    for i in 0..5 {
        assert!(kept.contains(&format!("request_id=\"kept-{i}\"")), "{kept}");
    }
}

type Pairs = Vec<(String, String)>;

/// Parses one line-protocol line into (series, tags, fields).
fn parse_line(line: &str) -> (String, Pairs, Pairs) {
    let mut parts = line.splitn(3, ' ');
    let head = parts.next().unwrap();
    let fields = parts.next().unwrap();
    let mut head = head.split(',');
    let series = head.next().unwrap().to_owned();
    let kv = |s: &str| {
        let (k, v) = s.split_once('=').unwrap();
        (k.to_owned(), v.trim_end_matches('i').to_owned())
    };
    (
        series,
        head.map(kv).collect(),
        fields.split(',').map(kv).collect(),
    )
}

fn field(fields: &[(String, String)], name: &str) -> f64 {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .unwrap_or_else(|| panic!("no field {name} in {fields:?}"))
        .1
        .parse()
        .unwrap()
}

#[test]
fn resource_monitor_reports_plausible_values() {
    let dir = tempfile::tempdir().unwrap();
    let influx = Receiver::start();
    let agent = Agent::start(
        dir.path(),
        &format!(
            r#"
[agent]
listen = "{{LISTEN}}"
data_dir = "{{DATA}}"
device_id = "gw-7"
[plugins]
dir = "{{PLUGINS}}"
active = ["resource_monitor", "request_monitoring_plugin"]
monitoring_flush_ms = 200
[plugins.settings.resource_monitor]
interval_ms = 300
mounts = ["/"]
[plugins.settings.request_monitoring_plugin]
sink = "influx"
[sinks.influx]
type = "http"
url = "{}"
"#,
            influx.url("/write")
        ),
    );
    let plugins = agent.get_json("/v1/plugins");
    assert_eq!(plugins["plugins"][0]["kind"], "native");
    assert_eq!(
        plugins["plugins"][0]["timer_ms"], 300,
        "interval from the settings"
    );

    let text = wait_for("two rounds of resource points", DELIVERY, || {
        let text: String = influx.accepted().iter().map(|m| m.text()).collect();
        (text.matches("\nprocess,").count() + usize::from(text.starts_with("process,")) >= 2)
            .then_some(text)
    });
    let lines: Vec<_> = text.lines().map(parse_line).collect();
    let find = |series: &str, tag: Option<(&str, &str)>| {
        lines
            .iter()
            .find(|(s, tags, _)| {
                s == series
                    && tag.is_none_or(|(k, v)| tags.iter().any(|(tk, tv)| tk == k && tv == v))
            })
            .unwrap_or_else(|| panic!("no {series} point with {tag:?} in:\n{text}"))
    };
    for (series, tags, _) in &lines {
        if series != "requests" && series != "errors" && series != "plugin_calls" {
            assert!(
                tags.contains(&("device".into(), "gw-7".into())),
                "{series} {tags:?}"
            );
        }
    }

    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let mem_total_kb: f64 = meminfo
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let (_, _, memory) = find("memory", None);
    assert_eq!(field(memory, "total_bytes"), mem_total_kb * 1024.0);
    assert!(field(memory, "used_bytes") <= field(memory, "total_bytes"));

    let (_, _, cpu) = find("cpu", Some(("cpu", "total")));
    let usage = field(cpu, "usage_percent");
    assert!((0.0..=100.0).contains(&usage), "cpu {usage}");
    find("cpu", Some(("cpu", "cpu0")));

    let (_, _, process) = find("process", Some(("process", "outpost")));
    let rss = field(process, "rss_bytes");
    assert!(rss > 1e6 && rss < 4e9, "agent rss {rss}");
    let cpus = std::thread::available_parallelism().unwrap().get() as f64;
    let cpu = field(process, "cpu_percent");
    assert!((0.0..=100.0 * cpus).contains(&cpu), "agent cpu {cpu}");

    let (_, _, disk) = find("disk", Some(("path", "/")));
    assert!(field(disk, "total_bytes") > 0.0);
    find("load", None);
    find("net", Some(("interface", "lo")));
    let (_, _, queue) = find("queue", None);
    let depth = field(queue, "depth");
    assert!(
        depth.fract() == 0.0 && (0.0..1000.0).contains(&depth),
        "queue depth {depth}"
    );
}
