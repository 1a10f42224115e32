//! The `plugin` scenario: what the WASM plugin host costs.
//!
//! * per call, in-process on the plugin host: a no-op (`monitoring_event` with no
//!   points, which answers `{}`), one event and 100 events of ~1 KB through
//!   `event_sending_plugin_example`, WASM against the same plugin linked natively;
//! * the agent process: idle RSS with 1, 3 and 10 WASM plugins, cold start-up (empty
//!   compiled-plugin cache) and warm start-up (second start on the same data dir).

use std::path::Path;
use std::time::{Duration, Instant};

use outpost::config::{Config, Env};
use outpost::plugin::{HostContext, PluginHost, SendingInput};
use outpost_pdk::{Event, SendingEvent};

use super::{body, Agent, Report};

/// The three example WASM plugins the README's example config runs.
const EXAMPLES: [&str; 3] = [
    "event_sending_plugin_example",
    "request_monitoring_plugin",
    "teapot_plugin",
];

pub fn scenario() {
    per_call();
    process();
}

/// A plugin host in this process with `active` loaded from `dir`.
fn host(dir: &Path, active: &str) -> (PluginHost, tempfile::TempDir) {
    let data = tempfile::tempdir().unwrap();
    let text = format!(
        "[agent]\ndata_dir = \"{}\"\n[plugins]\ndir = \"{}\"\nactive = [\"{active}\"]\n\
         [plugins.settings.{active}]\nsink = \"s\"\n[sinks.s]\ntype = \"http\"\nurl = \"http://127.0.0.1:9/\"\n",
        data.path().join("d").display(),
        dir.display(),
    );
    let config = Config::parse(&data.path().join("o.toml"), &text, &Env::default()).unwrap();
    let host = PluginHost::load(&config, HostContext::detached(&config)).unwrap();
    (host, data)
}

/// A `sending_event` input of `events` events of ~1 KB.
fn input(events: usize) -> SendingInput {
    let one = String::from_utf8(body(1, 1024)).unwrap();
    let ev = &one[one.find('[').unwrap() + 1..one.rfind(']').unwrap()];
    SendingInput::new(SendingEvent {
        handler_id: "h".into(),
        account_id: "a".into(),
        request_id: "r".into(),
        event_create_time: "t".into(),
        event_end_time: "t".into(),
        events: (0..events)
            .map(|_| Event(serde_json::value::RawValue::from_string(ev.to_owned()).unwrap()))
            .collect(),
    })
}

/// Mean time of one `sending_event` call with `events` events. Each call gets a fresh
/// input, made just before it (as ingest does), so WASM pays the input's encoding every
/// call, as it does per request in the agent; only the call is timed.
fn time_sending(host: &PluginHost, events: usize, iterations: u32) -> Duration {
    host.sending_event(&input(events), None).unwrap();
    let mut total = Duration::ZERO;
    for _ in 0..iterations {
        let input = input(events);
        let began = Instant::now();
        host.sending_event(&input, None).unwrap();
        total += began.elapsed();
    }
    total / iterations
}

/// Mean time of a call that does nothing: `monitoring_event` with no points.
fn time_noop(host: &PluginHost, iterations: u32) -> Duration {
    host.monitoring_event(&[]);
    let began = Instant::now();
    for _ in 0..iterations {
        assert!(host.monitoring_event(&[]).is_empty());
    }
    began.elapsed() / iterations
}

fn micros(d: Duration) -> String {
    format!("{:.2} µs", d.as_secs_f64() * 1e6)
}

pub fn per_call() {
    let wasm_dir = &super::plugins_dir();
    let empty = tempfile::tempdir().unwrap();
    let mut r = Report::new("plugin: per-call cost (in-process, one thread)");

    let (wasm, _d1) = host(wasm_dir, "request_monitoring_plugin");
    let (native, _d2) = host(empty.path(), "request_monitoring_plugin");
    r.add(
        "no-op call: wasm / native",
        format!(
            "{} / {}",
            micros(time_noop(&wasm, 20_000)),
            micros(time_noop(&native, 20_000))
        ),
    );

    let (wasm, _d3) = host(wasm_dir, "event_sending_plugin_example");
    let (native, _d4) = host(empty.path(), "event_sending_plugin_example");
    for events in [1usize, 100] {
        let w = time_sending(&wasm, events, 2000);
        let n = time_sending(&native, events, 2000);
        r.add(
            &format!("{events} event(s)/call: wasm / native"),
            format!("{} / {}", micros(w), micros(n)),
        );
        if events == 100 {
            r.add(
                "  per event: wasm / native",
                format!("{} / {}", micros(w / 100), micros(n / 100)),
            );
            r.add(
                "  events/s through the WASM plugin",
                format!("{:.0}", 100.0 / w.as_secs_f64()),
            );
        }
    }
    for name in EXAMPLES
        .iter()
        .chain(&["monitoring_batcher", "faulty_plugin"])
    {
        let p = wasm_dir.join(format!("{name}.wasm"));
        r.add(
            &format!("{name}.wasm"),
            format!("{} bytes", std::fs::metadata(p).map_or(0, |m| m.len())),
        );
    }
    r.print();
}

/// A plugins dir with the three examples and `n - 3` more copies of the sending
/// example (`sending_copy_<i>`), and the config that runs the first `n` of them.
fn plugins_config(dir: &Path, n: usize) -> String {
    let src = super::plugins_dir();
    let mut names: Vec<String> = EXAMPLES.iter().map(|s| s.to_string()).collect();
    names.extend((3..n).map(|i| format!("sending_copy_{i}")));
    names.truncate(n);
    let mut settings = String::new();
    for name in &names {
        let from = match name.strip_prefix("sending_copy_") {
            Some(_) => "event_sending_plugin_example",
            None => name.as_str(),
        };
        std::fs::copy(
            src.join(format!("{from}.wasm")),
            dir.join(format!("{name}.wasm")),
        )
        .unwrap();
        if name != "teapot_plugin" {
            settings.push_str(&format!("[plugins.settings.{name}]\nsink = \"out\"\n"));
        }
    }
    let active: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    format!(
        "[agent]\nlisten = \"{{LISTEN}}\"\ndata_dir = \"{{DATA}}\"\n[plugins]\ndir = \"{}\"\n\
         active = [{}]\n{settings}[sinks.out]\ntype = \"http\"\nurl = \"http://127.0.0.1:9/\"\n",
        dir.display(),
        active.join(", ")
    )
}

/// Idle RSS after a settle time.
fn settled_rss(agent: &Agent) -> f64 {
    std::thread::sleep(Duration::from_millis(1500));
    agent.rss_mb()
}

pub fn process() {
    let mut r = Report::new("plugin: agent process, idle (RSS after 1.5 s)");
    let mut warm_rss = Vec::new();
    for n in [1usize, 3, 10] {
        let plugins = tempfile::tempdir().unwrap();
        let config = plugins_config(plugins.path(), n);
        let cold = Agent::start(&config);
        let (cold_time, cold_rss) = (cold.started_in, settled_rss(&cold));
        let warm = Agent::start_in(cold.stop(), &config);
        let (warm_time, rss) = (warm.started_in, settled_rss(&warm));
        warm.stop();
        warm_rss.push(rss);
        r.add(
            &format!("{n} WASM plugin(s): RSS warm / cold"),
            format!("{rss:.1} MB / {cold_rss:.1} MB"),
        );
        r.add(
            "  start-up warm / cold (to /v1/health)",
            format!(
                "{:.3} s / {:.3} s",
                warm_time.as_secs_f64(),
                cold_time.as_secs_f64()
            ),
        );
    }
    r.add(
        "each plugin beyond 3 (warm RSS)",
        format!("{:.2} MB", (warm_rss[2] - warm_rss[1]) / 7.0),
    );
    r.print();
}
