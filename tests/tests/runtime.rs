//! The WASM runtime: per-plugin timeouts on the shared engine, precompiled plugins
//! (`outpost compile`), and plugins written without outpost-pdk (extism-pdk only, and
//! AssemblyScript on the Extism AssemblyScript PDK).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use outpost::config::{Config, Env};
use outpost::plugin::{FaultKind, HostContext, PluginHost, PluginKind, SendingInput};
use outpost_pdk::{Event, SendingEvent};
use outpost_tests::agent::{self, Agent};
use outpost_tests::fixture::DELIVERY;
use outpost_tests::receiver::Receiver;
use serde_json::json;

/// `name.wasm` from the test plugins, or a panic saying why it is missing.
fn assert_timed_out<T: std::fmt::Debug>(result: &Result<T, outpost::plugin::CallError>) {
    assert!(
        matches!(
            result,
            Err(outpost::plugin::CallError::Fault(FaultKind::Timeout, _))
        ),
        "{result:?}"
    );
}

fn plugin_file(name: &str) -> std::path::PathBuf {
    let path = outpost_tests::plugins_dir().join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} was not built (see the build script's warning: the AssemblyScript plugin \
         needs node and npm)",
        path.display()
    );
    path
}

/// Copies test plugin `from` into `dir` as `<to>.wasm`.
fn install(dir: &Path, from: &str, to: &str) {
    std::fs::copy(plugin_file(from), dir.join(format!("{to}.wasm"))).unwrap();
}

/// A plugin host in this process for `plugins` (name, `[plugins.sandbox.<name>]` body)
/// from `dir`, each with `sink = "store"`.
fn host(dir: &Path, data: &Path, plugins: &[(&str, &str)]) -> Result<PluginHost, String> {
    let active: Vec<String> = plugins.iter().map(|(n, _)| format!("\"{n}\"")).collect();
    let mut text = format!(
        "[agent]\ndata_dir = \"{}\"\n[plugins]\ndir = \"{}\"\nactive = [{}]\n\
         [sinks.store]\ntype = \"http\"\nurl = \"http://127.0.0.1:9/x\"\n",
        data.display(),
        dir.display(),
        active.join(", ")
    );
    for (name, sandbox) in plugins {
        text.push_str(&format!(
            "[plugins.settings.{name}]\nsink = \"store\"\n[plugins.sandbox.{name}]\n{sandbox}\n"
        ));
    }
    let config = Config::parse(&data.join("outpost.toml"), &text, &Env::default()).unwrap();
    PluginHost::load(&config, HostContext::detached(&config)).map_err(|e| e.to_string())
}

fn input(events: &[&str]) -> SendingInput {
    SendingInput::new(SendingEvent {
        handler_id: "h".into(),
        account_id: "a".into(),
        request_id: "r-1".into(),
        event_create_time: "t0".into(),
        event_end_time: "t1".into(),
        events: events
            .iter()
            .map(|e| Event(serde_json::value::RawValue::from_string(e.to_string()).unwrap()))
            .collect(),
    })
}

/// With one engine for all plugins, each call still has its own deadline: a plugin
/// timing out interrupts neither a plugin looping with a longer timeout nor a healthy
/// plugin answering meanwhile.
#[test]
fn a_timeout_in_one_plugin_does_not_disturb_the_others() {
    let (dir, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    install(dir.path(), "faulty_plugin", "long_loop");
    install(dir.path(), "faulty_plugin", "short_loop");
    install(dir.path(), "event_sending_plugin_example", "healthy");
    let host = Arc::new(
        host(
            dir.path(),
            data.path(),
            &[
                ("long_loop", "timeout_ms = 4000\ninstances = 1"),
                ("short_loop", "timeout_ms = 300\ninstances = 1"),
                ("healthy", "timeout_ms = 300"),
            ],
        )
        .unwrap(),
    );
    let looping = Arc::new(input(&[r#"{"fault": "loop"}"#]));
    let call = |name: &'static str| {
        let (host, looping) = (Arc::clone(&host), Arc::clone(&looping));
        std::thread::spawn(move || {
            let began = Instant::now();
            let result = host.sending_event(&looping, Some(name));
            (result.map(|_| ()).map_err(|e| e.error), began.elapsed())
        })
    };
    let long = call("long_loop");
    let short = call("short_loop");

    let (result, _) = short.join().unwrap();
    assert_timed_out(&result);
    assert!(
        !long.is_finished(),
        "the short timeout stopped the long loop too"
    );
    for _ in 0..20 {
        let out = host
            .sending_event(&input(&["{}"]), Some("healthy"))
            .unwrap();
        assert_eq!(out.len(), 1);
    }
    assert!(
        !long.is_finished(),
        "the long loop ended before its own timeout"
    );

    let (result, elapsed) = long.join().unwrap();
    assert_timed_out(&result);
    assert!(
        elapsed >= Duration::from_millis(4000),
        "stopped early: {elapsed:?}"
    );
    // Both timed-out plugins serve again with fresh instances.
    for name in ["short_loop", "long_loop"] {
        assert_eq!(
            host.sending_event(&input(&["{}"]), Some(name))
                .unwrap()
                .len(),
            1
        );
    }
}

/// `outpost compile` output loads without compiling: only the `.cwasm` is there, and
/// the compiled-plugin cache stays empty.
#[test]
fn a_precompiled_plugin_loads_without_compiling() {
    let (dir, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let out = dir.path().join("event_sending_plugin_example.cwasm");
    let wasm = plugin_file("event_sending_plugin_example");
    let (status, text) = agent::run_cli(
        dir.path(),
        &[
            "compile",
            wasm.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ],
    );
    assert!(status.success(), "{text}");
    assert!(
        text.contains("event_sending_plugin_example.cwasm"),
        "{text}"
    );

    let host = host(
        dir.path(),
        data.path(),
        &[("event_sending_plugin_example", "")],
    )
    .unwrap();
    let plugin = &host.plugins()[0];
    assert_eq!(plugin.kind(), PluginKind::Wasm);
    assert_eq!(plugin.file.as_deref(), Some(out.as_path()));
    let messages = host.sending_event(&input(&[r#"{"a": 1}"#]), None).unwrap();
    let body: serde_json::Value = serde_json::from_slice(messages[0].payload()).unwrap();
    assert_eq!(body["events"], json!([{"a": 1}]));
    let cached = std::fs::read_dir(data.path().join("wasm-cache"))
        .unwrap()
        .count();
    assert_eq!(cached, 0, "nothing was compiled");
}

/// An artifact made for another machine is refused by name, with what to do.
#[test]
fn a_precompiled_plugin_for_another_target_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let wasm = plugin_file("event_sending_plugin_example");
    let other = if cfg!(target_arch = "aarch64") {
        ("x86_64-unknown-linux-gnu", "x86_64")
    } else {
        ("aarch64-unknown-linux-gnu", "aarch64")
    };
    let out = plugins.join("forwarder.cwasm");
    let (status, text) = agent::run_cli(
        dir.path(),
        &[
            "compile",
            wasm.to_str().unwrap(),
            "--target",
            other.0,
            "-o",
            out.to_str().unwrap(),
        ],
    );
    assert!(status.success(), "{text}");

    let (status, text) = agent::check(
        dir.path(),
        &format!(
            "[agent]\ndata_dir = \"{{DATA}}\"\n[plugins]\ndir = \"{}\"\nactive = [\"forwarder\"]\n\
             [plugins.settings.forwarder]\nsink = \"s\"\n[sinks.s]\ntype = \"http\"\nurl = \"http://127.0.0.1:9/\"\n",
            plugins.display()
        ),
    );
    assert_eq!(status.code(), Some(2), "{text}");
    for needle in [
        "plugin `forwarder`",
        "forwarder.cwasm",
        other.1,
        "outpost compile",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in: {text}");
    }
}

/// A plugin built with plain extism-pdk goes through the Extism kernel (input, output,
/// memory blocks, variables, config, logging) and Outpost's host functions.
#[test]
fn a_plugin_built_with_plain_extism_pdk_runs() {
    let (dir, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    install(dir.path(), "plain_extism_plugin", "plain");
    let host = host(dir.path(), data.path(), &[("plain", "instances = 2")]).unwrap();
    for n in 1..=3 {
        let events = [r#"{"n": 1}"#, r#"{"s": "é\u00e9"}"#];
        let out = host.sending_event(&input(&events), None).unwrap();
        let body: serde_json::Value = serde_json::from_slice(out[0].payload()).unwrap();
        assert_eq!(body, json!({"count": n, "events": [{"n": 1}, {"s": "éé"}]}));
    }

    let (dir, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    install(dir.path(), "plain_extism_plugin", "plain");
    let text = format!(
        "[agent]\ndata_dir = \"{}\"\n[plugins]\ndir = \"{}\"\nactive = [\"plain\"]\n",
        data.path().display(),
        dir.path().display()
    );
    let config = Config::parse(&data.path().join("o.toml"), &text, &Env::default()).unwrap();
    let error = PluginHost::load(&config, HostContext::detached(&config))
        .err()
        .unwrap()
        .to_string();
    assert!(
        error.contains("plugin `plain`") && error.contains("missing setting `sink`"),
        "{error}"
    );
}

/// The AssemblyScript plugin, built from source with npm, end to end through the agent.
#[test]
fn an_assemblyscript_plugin_forwards_requests_end_to_end() {
    plugin_file("as_forward");
    let dir = tempfile::tempdir().unwrap();
    let store = Receiver::start();
    let agent = Agent::start(
        dir.path(),
        &format!(
            "[agent]\nlisten = \"{{LISTEN}}\"\ndata_dir = \"{{DATA}}\"\n[plugins]\n\
             dir = \"{{PLUGINS}}\"\nactive = [\"as_forward\"]\n\
             [plugins.settings.as_forward]\nsink = \"store\"\n\
             [plugins.sandbox.as_forward]\ninstances = 1\n\
             [sinks.store]\ntype = \"http\"\nurl = \"{}\"\n",
            store.url("/in")
        ),
    );
    assert_eq!(agent.get_json("/v1/plugins")["plugins"][0]["kind"], "wasm");
    for i in 0..2 {
        let body = json!({"handler_id": "h", "account_id": "a", "events": [{"i": i, "s": "é"}]});
        let id = format!("as-{i}");
        let r = agent.request(
            "POST",
            "/v1/events",
            &[("X-Request-Id", &id)],
            body.to_string().as_bytes(),
        );
        assert_eq!(r.status, 202, "{}", r.text());
    }
    let got = store.wait_accepted(2, DELIVERY);
    for (i, m) in got.iter().enumerate() {
        let body = m.json();
        assert_eq!(body["plugin"], "as_forward");
        assert_eq!(body["call"], i + 1, "state kept across calls: {body}");
        assert_eq!(body["request"]["request_id"], format!("as-{i}"));
        assert_eq!(body["request"]["events"], json!([{"i": i, "s": "é"}]));
    }
    assert!(
        agent.log().contains("as_forward: request 2"),
        "logged through outpost_log"
    );

    // A missing setting fails `initialize` with the plugin's own message.
    let (status, text) = agent::check(
        dir.path(),
        "[agent]\ndata_dir = \"{DATA}\"\n[plugins]\ndir = \"{PLUGINS}\"\nactive = [\"as_forward\"]\n",
    );
    assert_eq!(status.code(), Some(2), "{text}");
    assert!(
        text.contains("as_forward") && text.contains("missing setting `sink`"),
        "{text}"
    );
}
