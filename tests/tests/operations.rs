//! Operations on a running agent: reload without restart (SIGHUP and the API, good and
//! bad configs, under load), dead letters an operator lists, replays and purges, and
//! the `status` and `dead-letters` commands.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use outpost_tests::agent::{run_cli, Agent};
use outpost_tests::fixture::{self, AGENT, DELIVERY};
use outpost_tests::receiver::Receiver;
use outpost_tests::{free_port, plugins_dir, wait_for};
use serde_json::json;

/// A plugins dir of the test's own, so a plugin file can be swapped.
fn own_plugins(dir: &Path, files: &[(&str, &str)]) -> std::path::PathBuf {
    let own = dir.join("plugins");
    std::fs::create_dir_all(&own).unwrap();
    for (name, from) in files {
        std::fs::copy(
            plugins_dir().join(format!("{from}.wasm")),
            own.join(format!("{name}.wasm")),
        )
        .unwrap();
    }
    own
}

fn config(plugins: &Path, store: &str, extra: &str) -> String {
    format!(
        r#"{AGENT}[plugins]
dir = "{}"
active = ["sender"{extra_plugins}]
[plugins.settings.sender]
sink = "store"
[sinks.store]
type = "http"
url = "{store}"
retry = {{ initial_ms = 50, max_ms = 300 }}
{extra}
"#,
        plugins.display(),
        extra_plugins = if extra.contains("archive") {
            ", \"forward\""
        } else {
            ""
        },
    )
}

/// Posts `events` events as request `id`; the status.
fn post(agent: &Agent, id: &str, events: usize) -> u16 {
    let body = fixture::body("h", (0..events).map(|n| json!({"n": n})));
    fixture::post(agent, id, &body).status
}

/// Messages the receiver got, by request id.
fn by_request(receiver: &Receiver) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for m in receiver.accepted() {
        if let Some(id) = m.json()["Luna-Request-Id"].as_str() {
            *seen.entry(id.to_owned()).or_default() += 1;
        }
    }
    seen
}

#[test]
fn reload_under_load_swaps_plugins_and_sinks_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start();
    let plugins = own_plugins(dir.path(), &[("sender", "event_sending_plugin_example")]);
    let agent = Arc::new(Agent::start(
        dir.path(),
        &config(&plugins, &receiver.url("/in"), ""),
    ));

    // A producer posting continuously, two events per request.
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let producer = {
        let (agent, stop, accepted) =
            (Arc::clone(&agent), Arc::clone(&stop), Arc::clone(&accepted));
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let id = format!("p-{i:05}");
                match post(&agent, &id, 2) {
                    202 => accepted.lock().unwrap().push(id),
                    other => panic!("{id}: {other}"),
                }
                i += 1;
            }
        })
    };
    wait_for("some traffic", DELIVERY, || {
        (accepted.lock().unwrap().len() > 20).then_some(())
    });

    // A new .wasm under the same name (one message per event instead of per request)
    // and a new sink with a plugin feeding it.
    std::fs::copy(
        plugins_dir().join("faulty_plugin.wasm"),
        plugins.join("sender.wasm"),
    )
    .unwrap();
    let archive = dir.path().join("archive.ndjson");
    let extra = format!(
        "[plugins.settings.forward]\nsink = \"archive\"\n[sinks.archive]\ntype = \"file\"\npath = \"{}\"\n",
        archive.display()
    );
    agent.rewrite_config(&config(&plugins, &receiver.url("/in"), &extra));
    let r = agent.request("POST", "/v1/reload", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["generation"], 2);
    let after_reload = accepted.lock().unwrap().len();
    wait_for("traffic after the reload", DELIVERY, || {
        (accepted.lock().unwrap().len() > after_reload + 20).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    producer.join().unwrap();

    let accepted = accepted.lock().unwrap().clone();
    // Requests accepted after the reload answered go through the new plugin: one
    // message per event.
    let new_set = &accepted[after_reload + 1..];
    let seen = wait_for("every accepted request delivered", DELIVERY, || {
        let seen = by_request(&receiver);
        let all = accepted.iter().all(|id| seen.contains_key(id));
        let both = new_set.iter().all(|id| seen.get(id) >= Some(&2));
        (all && both).then_some(seen)
    });
    for id in new_set {
        assert_eq!(seen[id], 2, "{id}: the new plugin's output, once");
    }
    assert_eq!(seen[&accepted[0]], 1, "the old plugin's: one per request");
    // The file sink delivers on its own: it may be a batch behind the HTTP receiver.
    wait_for("the new sink gets the newest", DELIVERY, || {
        let text = std::fs::read_to_string(&archive).unwrap_or_default();
        (text.lines().count() >= 20 && text.contains(&accepted[accepted.len() - 1])).then_some(())
    });
    let h = agent.get_json("/v1/health");
    assert_eq!(h["config"]["generation"], 2);
    assert!(h["config"]["last_error"].is_null());
    assert_eq!(h["sinks"]["archive"]["type"], "file");
}

#[test]
fn a_bad_reload_keeps_serving_the_running_set_and_sighup_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start();
    let plugins = own_plugins(dir.path(), &[("sender", "event_sending_plugin_example")]);
    let good = config(&plugins, &receiver.url("/in"), "");
    let agent = Agent::start(dir.path(), &good);

    agent.rewrite_config(&format!(
        "{good}\n[sinks.store2]\ntype = \"http\"\nurl = \"ftp://x\"\n"
    ));
    let r = agent.request("POST", "/v1/reload", &[], b"");
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "reload_failed");
    assert!(r.text().contains("sinks.store2.url"), "{}", r.text());
    agent.rewrite_config(
        &good
            .replace("\"sender\"", "\"missing_plugin\"")
            .replace("settings.sender", "settings.missing_plugin"),
    );
    let r = agent.request("POST", "/v1/reload", &[], b"");
    assert_eq!(r.status, 422);
    assert!(r.text().contains("missing_plugin"), "{}", r.text());
    let h = agent.get_json("/v1/health");
    assert_eq!(h["config"]["generation"], 1);
    assert!(h["config"]["last_error"]
        .as_str()
        .unwrap()
        .contains("missing_plugin"));
    assert_eq!(
        agent.metric("outpost_config_reload_failures_total"),
        Some(2.0)
    );

    assert_eq!(post(&agent, "still-serving", 1), 202);
    receiver.wait_accepted(1, DELIVERY);

    agent.rewrite_config(&good);
    let pid = agent.pid().unwrap().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    wait_for("SIGHUP's reload", DELIVERY, || {
        let h = agent.get_json("/v1/health");
        (h["config"]["generation"] == 2 && h["config"]["last_error"].is_null()).then_some(())
    });
    assert_eq!(post(&agent, "after-hup", 1), 202);
    receiver.wait_accepted(2, DELIVERY);
}

#[test]
fn dead_letters_are_listed_replayed_and_purged_through_the_api_and_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let status = Arc::new(AtomicU16::new(400));
    let answer = Arc::clone(&status);
    let receiver = Receiver::start_on(free_port(), move |_| answer.load(Ordering::Relaxed));
    let plugins = own_plugins(dir.path(), &[("sender", "event_sending_plugin_example")]);
    let agent = Agent::start(dir.path(), &config(&plugins, &receiver.url("/in"), ""));
    let cfg = agent.config.to_str().unwrap().to_owned();
    for i in 0..3 {
        assert_eq!(post(&agent, &format!("dl-{i}"), 1), 202);
    }
    wait_for("three dead letters", DELIVERY, || {
        (agent.get_json("/v1/health")["sinks"]["store"]["dead_letters"] == 3).then_some(())
    });

    let listed = agent.get_json("/v1/dead-letters?sink=store&limit=10&payload=true");
    assert_eq!(listed["count"], 3);
    let first = &listed["dead_letters"][0];
    assert_eq!(first["status"], 400);
    assert_eq!(first["sink"], "store");
    assert!(first["payload"].as_str().unwrap().contains("dl-0"));
    let id = first["id"].as_str().unwrap().to_owned();

    let (ok, out) = run_cli(dir.path(), &["dead-letters", "list", "--config", &cfg]);
    assert!(ok.success(), "{out}");
    assert!(
        out.contains(&id) && out.contains("3 dead letter(s)"),
        "{out}"
    );

    // Replay one by id through the CLI once the receiver takes them.
    status.store(200, Ordering::Relaxed);
    let (ok, out) = run_cli(
        dir.path(),
        &["dead-letters", "replay", "--config", &cfg, "--id", &id],
    );
    assert!(ok.success(), "{out}");
    assert!(out.contains("replayed 1"), "{out}");
    let got = receiver.wait_accepted(1, DELIVERY);
    assert_eq!(got[0].json()["Luna-Request-Id"], "dl-0");
    assert_eq!(
        got[0].header("idempotency-key"),
        Some(id.as_str()),
        "the same message id"
    );

    // Purge needs a choice; then the rest goes.
    let (ok, out) = run_cli(dir.path(), &["dead-letters", "purge", "--config", &cfg]);
    assert!(!ok.success() && out.contains("--all"), "{out}");
    let r = agent.request("DELETE", "/v1/dead-letters?sink=store", &[], b"");
    assert_eq!(r.json()["purged"], 2);
    assert_eq!(agent.get_json("/v1/dead-letters")["count"], 0);
    assert_eq!(
        agent.metric("outpost_dead_letters_replayed_total"),
        Some(1.0)
    );
    assert_eq!(agent.metric("outpost_dead_letters_purged_total"), Some(2.0));
}

#[test]
fn status_shows_a_person_the_agent_at_a_glance() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start();
    let plugins = own_plugins(dir.path(), &[("sender", "event_sending_plugin_example")]);
    let agent = Agent::start(dir.path(), &config(&plugins, &receiver.url("/in"), ""));
    assert_eq!(post(&agent, "s-1", 1), 202);
    receiver.wait_accepted(1, DELIVERY);
    let cfg = agent.config.to_str().unwrap().to_owned();
    let (ok, out) = run_cli(dir.path(), &["status", "--config", &cfg]);
    assert!(ok.success(), "{out}");
    for needle in [
        "SINK",
        "store",
        "http",
        "connected",
        "PLUGIN",
        "sender",
        "wasm",
        "storage ok",
        "config generation 1",
    ] {
        assert!(out.contains(needle), "{needle} in:\n{out}");
    }
    let (ok, out) = run_cli(dir.path(), &["status", "--config", &cfg, "--json"]);
    assert!(ok.success(), "{out}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["health"]["sinks"]["store"]["delivered"], 1);
    assert_eq!(json["plugins"][0]["name"], "sender");

    drop(agent);
    let (ok, out) = run_cli(dir.path(), &["status", "--config", &cfg]);
    assert_eq!(ok.code(), Some(1));
    assert!(out.contains("cannot reach the agent"), "{out}");
}
