//! Fleet management over OpAMP, against a test server written on OpenTelemetry's own
//! generated protobuf classes (so the wire format is checked against an independent
//! implementation), over plain HTTP and over WebSocket: the agent's description,
//! health and effective config reach the server; a remote config is applied and the
//! data path follows it; a broken one is reported `FAILED` while events keep flowing;
//! the last applied one is used at a restart with the server down; signed plugin
//! packages are installed and used, badly signed or corrupted ones refused; garbage
//! from the server changes nothing; a `kill -9` during an apply leaves the old config
//! or the new one.

use std::path::{Path, PathBuf};
use std::time::Duration;

use outpost_tests::agent::{run_cli, Agent, Launcher};
use outpost_tests::fixture::{body, delivered_numbers, http_sink, post_ok, AGENT, DELIVERY};
use outpost_tests::opamp::OpampServer;
use outpost_tests::receiver::Receiver;
use outpost_tests::wait_for;
use serde_json::{json, Value};

/// How the agent reaches the server.
#[derive(Clone, Copy, Debug)]
enum Transport {
    Http,
    WebSocket,
}

impl Transport {
    fn url(self, server: &OpampServer) -> String {
        match self {
            Transport::Http => server.http_url(),
            Transport::WebSocket => server.ws_url(),
        }
    }
}

/// The agent's local file: the `forward` plugin to the HTTP sink `store` at `url`, and
/// `[fleet]` with a header from the environment and a 1 s poll.
fn local_config(server: &str, url: &str, fleet_extra: &str) -> String {
    format!(
        "{AGENT}[plugins]\ndir = \"{{PLUGINS}}\"\nactive = [\"forward\"]\n\
         [plugins.settings.forward]\nsink = \"store\"\n[sinks.store]\n{}\n\
         [fleet]\nserver = \"{server}\"\npoll_interval = \"1s\"\ntimeout = \"5s\"\n\
         headers = {{ Authorization = \"Bearer ${{FLEET_TOKEN}}\" }}\n{fleet_extra}\n",
        http_sink(url, "")
    )
}

/// A remote config for `agent`: the same pipeline, delivering to `url` instead. (A
/// remote config is the whole config but `[fleet]` and `data_dir`: it names the address
/// the agent listens on, as the local file does.)
fn remote_config(agent: &Agent, url: &str) -> String {
    format!(
        "[agent]\nlisten = \"{}\"\ndevice_id = \"cam-01\"\n[plugins]\ndir = \"{}\"\nactive = [\"forward\"]\n\
         [plugins.settings.forward]\nsink = \"store\"\n[sinks.store]\n{}\n",
        agent.addr,
        outpost_tests::plugins_dir().display(),
        http_sink(url, "")
    )
}

fn start_agent(dir: &Path, config: &str) -> Agent {
    Agent::start_env(
        Launcher::native(),
        dir,
        config,
        &[("FLEET_TOKEN", "s3cret")],
    )
}

/// Waits until the server's view of the one agent satisfies `f`.
/// (A failure prints the server's last view here, and the agent's log as it drops.)
fn wait_agent(server: &OpampServer, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for(what, DELIVERY, || {
            let view = server.agent()?;
            last = view.clone();
            f(&view).then_some(view)
        })
    }));
    match found {
        Ok(view) => view,
        Err(panic) => {
            eprintln!("--- the server's last view of the agent: {last:#}");
            std::panic::resume_unwind(panic)
        }
    }
}

fn remote_status(view: &Value) -> (&str, &str) {
    let s = &view["parts"]["remote_config_status"];
    (
        s["status"].as_str().unwrap_or("UNSET"),
        s["error_message"].as_str().unwrap_or(""),
    )
}

/// The hash the server reported for the agent's last remote config (hex).
fn remote_hash(view: &Value) -> String {
    use std::fmt::Write;
    let b64 = view["parts"]["remote_config_status"]["last_remote_config_hash"]
        .as_str()
        .unwrap_or("");
    let mut hex = String::new();
    for b in base64_decode(b64) {
        write!(hex, "{b:02x}").unwrap();
    }
    hex
}

/// protobuf's JSON form writes bytes as base64.
fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes().filter(|c| *c != b'=') {
        let v = ALPHABET.iter().position(|a| *a == c).expect("base64") as u32;
        acc = acc << 6 | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

fn post_numbered(agent: &Agent, id: &str, n: u64) {
    post_ok(agent, id, &body("h", [json!({ "n": n })]));
}

fn wait_delivered(receiver: &Receiver, n: usize) {
    wait_for(&format!("{n} delivered"), DELIVERY, || {
        (receiver.accepted().len() >= n).then_some(())
    });
}

fn reports_status_and_config(transport: Transport) {
    let dir = tempfile::tempdir().unwrap();
    let server = OpampServer::start(dir.path());
    let store = Receiver::start();
    let agent = start_agent(
        dir.path(),
        &local_config(&transport.url(&server), &store.url("/in"), ""),
    );
    let view = wait_agent(&server, "a full status report", |v| {
        v["parts"]["health"]["component_health_map"]
            .get("sinks/store")
            .is_some()
    });
    let description = &view["parts"]["agent_description"];
    let attrs = |list: &str| -> Vec<(String, String)> {
        description[list]
            .as_array()
            .unwrap()
            .iter()
            .map(|kv| {
                (
                    kv["key"].as_str().unwrap().to_owned(),
                    kv["value"]["string_value"]
                        .as_str()
                        .unwrap_or("")
                        .to_owned(),
                )
            })
            .collect()
    };
    let identifying = attrs("identifying_attributes");
    assert!(
        identifying.contains(&("service.name".into(), "outpost".into())),
        "{identifying:?}"
    );
    assert!(identifying
        .iter()
        .any(|(k, v)| k == "service.version" && !v.is_empty()));
    let other = attrs("non_identifying_attributes");
    assert!(
        other.contains(&("host.name".into(), "cam-01".into())),
        "{other:?}"
    );
    assert!(
        other.contains(&("os.type".into(), "linux".into())),
        "{other:?}"
    );
    assert!(other.iter().any(|(k, _)| k == "host.arch"));

    let health = &view["parts"]["health"];
    assert_eq!(health["healthy"], true, "{health}");
    let components = health["component_health_map"].as_object().unwrap();
    for name in ["storage", "sinks/store", "plugins/forward"] {
        assert!(components.contains_key(name), "{name} in {components:?}");
    }
    // The effective config as written: the variable, never the secret...
    let text = view["effective_text"]["outpost.toml"].as_str().unwrap();
    assert!(text.contains("Bearer ${FLEET_TOKEN}"), "{text}");
    assert!(!text.contains("s3cret"));
    // ...which went, expanded, only into the request header.
    assert_eq!(view["authorization"], "Bearer s3cret");
    let caps = view["capabilities"].as_u64().unwrap();
    assert_eq!(caps & 0x1, 0x1, "ReportsStatus");
    assert_eq!(caps & 0x2, 0x2, "AcceptsRemoteConfig");
    assert_eq!(caps & 0x800, 0x800, "ReportsHealth");
    assert_eq!(caps & 0x8, 0, "no packages without trusted keys");

    // A sink going down shows in health upstream.
    post_numbered(&agent, "r1", 1);
    wait_delivered(&store, 1);
    store.stop();
    post_numbered(&agent, "r2", 2);
    wait_agent(&server, "the sink reported unhealthy", |v| {
        v["parts"]["health"]["component_health_map"]["sinks/store"]["healthy"] != true
    });

    // Sequence numbers go up by one; a full report comes when asked.
    // The count is read right before the ask: a reconnect in between also sends the
    // effective config, and must not pass for the answer.
    let reports = server.agent().unwrap()["reports"]["effective_config"]
        .as_u64()
        .unwrap();
    server.ask_full_state();
    let view = wait_agent(&server, "a full state report", |v| {
        v["reports"]["effective_config"].as_u64().unwrap() > reports
    });
    let seq: Vec<u64> = view["sequence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_u64().unwrap())
        .collect();
    assert!(seq.windows(2).all(|w| w[1] == w[0] + 1), "{seq:?}");

    // The agent says goodbye when it stops.
    let mut agent = agent;
    assert!(agent.terminate().success());
    wait_agent(&server, "agent_disconnect", |v| v["disconnected"] == true);
}

#[test]
fn description_health_and_effective_config_reach_the_server_over_http() {
    reports_status_and_config(Transport::Http);
}

#[test]
fn description_health_and_effective_config_reach_the_server_over_websocket() {
    reports_status_and_config(Transport::WebSocket);
}

fn remote_config_applied_then_kept(transport: Transport) {
    let dir = tempfile::tempdir().unwrap();
    let mut server = OpampServer::start(dir.path());
    let local = Receiver::start();
    let remote = Receiver::start();
    let mut agent = start_agent(
        dir.path(),
        &local_config(&transport.url(&server), &local.url("/in"), ""),
    );
    post_numbered(&agent, "before", 0);
    wait_delivered(&local, 1);

    // A broken remote config: reported FAILED with the key, nothing changes.
    server.offer_config("[sinks.store]\ntype = \"carrier-pigeon\"\n");
    let view = wait_agent(&server, "FAILED", |v| {
        remote_status(v).0 == "RemoteConfigStatuses_FAILED"
    });
    let (_, error) = remote_status(&view);
    assert!(error.contains("sinks.store"), "{error}");
    post_numbered(&agent, "during", 1);
    wait_delivered(&local, 2);
    assert_eq!(agent.get_json("/v1/health")["status"], "ok");

    // Garbage from the server: logged, skipped; nothing changes.
    server.send_garbage();
    wait_for("the garbage logged", DELIVERY, || {
        agent
            .log()
            .contains("unreadable message from the OpAMP server")
            .then_some(())
    });
    assert_eq!(
        remote_status(&server.agent().unwrap()).0,
        "RemoteConfigStatuses_FAILED"
    );

    // A good one: applied, and the data path follows it.
    let hash = server.offer_config(&remote_config(&agent, &remote.url("/remote")));
    let view = wait_agent(&server, "APPLIED", |v| {
        remote_status(v).0 == "RemoteConfigStatuses_APPLIED"
    });
    assert_eq!(remote_hash(&view), hash);
    post_numbered(&agent, "after", 2);
    wait_delivered(&remote, 1);
    let view = wait_agent(&server, "the new effective config", |v| {
        v["effective_text"]["outpost.toml"]
            .as_str()
            .is_some_and(|t| t.contains("/remote"))
    });
    let text = view["effective_text"]["outpost.toml"].as_str().unwrap();
    assert!(text.contains("[fleet]"), "the local [fleet] stays: {text}");

    // Restart with the server down: the last applied remote config runs.
    server.stop();
    agent.restart();
    post_numbered(&agent, "restarted", 3);
    wait_delivered(&remote, 2);
    // Distinct events: a request the receiver saw twice (a retry after a slow answer)
    // is not a wrong route.
    assert_eq!(delivered_numbers(&local.accepted()), [0, 1].into());

    // The server back: the agent reports the config it runs, and is not sent it again.
    server.start_again();
    let view = wait_agent(&server, "APPLIED after the restart", |v| {
        remote_status(v).0 == "RemoteConfigStatuses_APPLIED" && v["messages"].as_u64() > Some(2)
    });
    assert_eq!(remote_hash(&view), hash);
    assert!(
        view.get("configs_sent").is_none(),
        "the new server had nothing to send: {view}"
    );
}

#[test]
fn a_remote_config_is_applied_kept_and_a_broken_one_refused_over_http() {
    remote_config_applied_then_kept(Transport::Http);
}

#[test]
fn a_remote_config_is_applied_kept_and_a_broken_one_refused_over_websocket() {
    remote_config_applied_then_kept(Transport::WebSocket);
}

/// `outpost fleet keygen` in `dir`; returns the public key file.
fn keygen(dir: &Path) -> std::path::PathBuf {
    let (status, out) = run_cli(dir, &["fleet", "keygen", "fleet.key"]);
    assert!(status.success(), "{out}");
    dir.join("fleet.key.pub")
}

/// `outpost fleet sign`: the package's sha256 and signature (hex).
fn sign(dir: &Path, key: &str, package: &Path) -> (String, String) {
    let (status, out) = run_cli(
        dir,
        &["fleet", "sign", "--key", key, package.to_str().unwrap()],
    );
    assert!(status.success(), "{out}");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    (
        v["sha256"].as_str().unwrap().to_owned(),
        v["signature"].as_str().unwrap().to_owned(),
    )
}

fn package_status<'a>(view: &'a Value, name: &str) -> &'a Value {
    &view["parts"]["package_statuses"]["packages"][name]
}

/// The local file with packages accepted if signed by the key at `public`.
fn trusting_config(server: &OpampServer, store: &Receiver, public: &Path) -> String {
    local_config(
        &server.http_url(),
        &store.url("/in"),
        &format!("trusted_keys = [\"{}\"]", public.display()),
    )
}

/// Puts the teapot plugin on the server for download and signs it with `dir`'s key:
/// its path there, SHA-256 and signature (hex).
fn publish_teapot(server: &OpampServer, dir: &Path) -> (PathBuf, String, String) {
    let package = server.files.join("teapot_plugin.wasm");
    std::fs::copy(
        outpost_tests::plugins_dir().join("teapot_plugin.wasm"),
        &package,
    )
    .unwrap();
    let (sha, signature) = sign(dir, "fleet.key", &package);
    (package, sha, signature)
}

/// Whether the server was told that `version` of `name` failed to install.
fn install_failed(view: &Value, name: &str, version: &str) -> bool {
    let status = package_status(view, name);
    status["server_offered_version"] == version
        && status["status"] == "PackageStatusEnum_InstallFailed"
}

#[test]
fn signed_plugin_packages_are_installed_and_used_and_bad_ones_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = OpampServer::start(dir.path());
    let store = Receiver::start();
    let public = keygen(dir.path());
    let device_plugins = dir.path().join("device-plugins");
    std::fs::create_dir_all(&device_plugins).unwrap();
    // Packages go to the running config's plugins dir: the device's own.
    let local = trusting_config(&server, &store, &public)
        .replace("{PLUGINS}", &device_plugins.display().to_string());
    let agent = start_agent(dir.path(), &local);
    wait_agent(&server, "the first report", |v| {
        v["messages"].as_u64() > Some(0)
    });
    let caps = server.agent().unwrap()["capabilities"].as_u64().unwrap();
    assert_eq!(caps & 0x8, 0x8, "AcceptsPackages with trusted keys");

    // A remote config that needs the plugin before it arrived: FAILED...
    let config = format!(
        "[plugins]\ndir = \"{}\"\nactive = [\"teapot_plugin\"]\n",
        device_plugins.display()
    );
    server.offer_config(&config);
    wait_agent(&server, "FAILED without the plugin", |v| {
        remote_status(v).0 == "RemoteConfigStatuses_FAILED"
    });

    // ...then the signed package: installed, and the config applied with it.
    let (package, sha, signature) = publish_teapot(&server, dir.path());
    server.offer_packages(json!({"teapot_plugin": {
        "version": "1.0", "url": server.file_url("teapot_plugin.wasm"),
        "sha256": sha, "signature": signature}}));
    let view = wait_agent(&server, "INSTALLED and APPLIED", |v| {
        package_status(v, "teapot_plugin")["agent_has_version"] == "1.0"
            && remote_status(v).0 == "RemoteConfigStatuses_APPLIED"
    });
    assert!(package_status(&view, "teapot_plugin")
        .get("error_message")
        .is_none());
    let r = agent.request("GET", "/v1/plugins/teapot_plugin/teapot", &[], b"");
    assert_eq!(r.status, 418, "{}", r.text());
    let installed = std::fs::read(device_plugins.join("teapot_plugin.wasm")).unwrap();

    // A version whose signature is not the trusted key's: refused, nothing changes.
    let other = tempfile::tempdir().unwrap();
    keygen(other.path());
    let forged = other.path().join("fleet.key");
    let (sha2, bad_signature) = sign(dir.path(), forged.to_str().unwrap(), &package);
    server.offer_packages(json!({"teapot_plugin": {
        "version": "2.0", "url": server.file_url("teapot_plugin.wasm"),
        "sha256": sha2, "signature": bad_signature}}));
    let view = wait_agent(&server, "INSTALL_FAILED (signature)", |v| {
        install_failed(v, "teapot_plugin", "2.0")
    });
    let status = package_status(&view, "teapot_plugin");
    assert_eq!(
        status["status"], "PackageStatusEnum_InstallFailed",
        "{status}"
    );
    assert!(
        status["error_message"]
            .as_str()
            .unwrap()
            .contains("signature"),
        "{status}"
    );
    assert_eq!(status["agent_has_version"], "1.0");

    // A corrupted download (the hash does not match): refused too.
    let wrong_sha = "00".repeat(32);
    server.offer_packages(json!({"teapot_plugin": {
        "version": "3.0", "url": server.file_url("teapot_plugin.wasm"),
        "sha256": wrong_sha, "signature": signature}}));
    let view = wait_agent(&server, "INSTALL_FAILED (hash)", |v| {
        install_failed(v, "teapot_plugin", "3.0")
    });
    let status = package_status(&view, "teapot_plugin");
    assert!(
        status["error_message"]
            .as_str()
            .unwrap()
            .contains("SHA-256"),
        "{status}"
    );
    // Unsigned: refused.
    server.offer_packages(json!({"teapot_plugin": {
        "version": "4.0", "url": server.file_url("teapot_plugin.wasm"), "sha256": sha}}));
    let view = wait_agent(&server, "INSTALL_FAILED (unsigned)", |v| {
        install_failed(v, "teapot_plugin", "4.0")
    });
    let status = package_status(&view, "teapot_plugin");
    assert!(
        status["error_message"]
            .as_str()
            .unwrap()
            .contains("unsigned"),
        "{status}"
    );

    assert_eq!(
        std::fs::read(device_plugins.join("teapot_plugin.wasm")).unwrap(),
        installed
    );
    let r = agent.request("GET", "/v1/plugins/teapot_plugin/teapot", &[], b"");
    assert_eq!(r.status, 418);
}

/// A package that takes seconds to download is installed in the background: the
/// server sees `INSTALLING` meanwhile, the agent goes on reporting, and a newer offer
/// replaces the one under way.
#[test]
fn a_slow_package_download_is_reported_installing_and_reporting_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let server = OpampServer::start(dir.path());
    let store = Receiver::start();
    let public = keygen(dir.path());
    let _agent = start_agent(dir.path(), &trusting_config(&server, &store, &public));
    wait_agent(&server, "the first report", |v| {
        v["messages"].as_u64() > Some(0)
    });
    let (_, sha, signature) = publish_teapot(&server, dir.path());
    server.slow_files(12);
    server.offer_packages(json!({"teapot_plugin": {
        "version": "1.0", "url": server.file_url("teapot_plugin.wasm"),
        "sha256": sha, "signature": signature}}));
    let installing = |v: &Value| {
        let status = package_status(v, "teapot_plugin");
        status["status"] == "PackageStatusEnum_Installing"
            && status["server_offered_version"] == "1.0"
    };
    let view = wait_agent(&server, "INSTALLING", installing);
    assert!(package_status(&view, "teapot_plugin")
        .get("agent_has_version")
        .is_none());
    // The poll goes on (every second) while the download takes ~12 s: more messages
    // reach the server before the package is installed.
    let seen = view["messages"].as_u64().unwrap();
    wait_agent(&server, "two more messages while INSTALLING", |v| {
        v["messages"].as_u64().unwrap() >= seen + 2 && installing(v)
    });
    // A newer offer meanwhile: the download under way stops, and the newer one is
    // installed (resuming the same bytes), with no failure reported on the way.
    server.offer_packages(json!({"teapot_plugin": {
        "version": "1.1", "url": server.file_url("teapot_plugin.wasm"),
        "sha256": sha, "signature": signature}}));
    let view = wait_agent(&server, "1.1 INSTALLED", |v| {
        let status = package_status(v, "teapot_plugin");
        assert_ne!(
            status["status"], "PackageStatusEnum_InstallFailed",
            "{status}"
        );
        status["agent_has_version"] == "1.1"
    });
    let status = package_status(&view, "teapot_plugin");
    assert!(
        status.get("status").is_none(),
        "INSTALLED is the default: {status}"
    );
    assert!(status.get("error_message").is_none(), "{status}");
    assert!(
        server.range_requests() >= 1,
        "the stopped download was resumed, not started over"
    );
}

#[test]
fn the_agent_runs_without_its_server_and_reports_once_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = OpampServer::start(dir.path());
    server.stop();
    let store = Receiver::start();
    let agent = start_agent(
        dir.path(),
        &local_config(&server.ws_url(), &store.url("/in"), ""),
    );
    for i in 0..5 {
        post_numbered(&agent, &format!("r{i}"), i);
    }
    wait_delivered(&store, 5);
    assert_eq!(agent.get_json("/v1/health")["status"], "ok");
    wait_for("the agent failing to reach its server", DELIVERY, || {
        agent.log().contains("connection failed").then_some(())
    });
    server.start_again();
    wait_agent(&server, "a report once the server is back", |v| {
        v["parts"].get("health").is_some()
    });
}

#[test]
fn kill9_during_an_apply_leaves_the_old_config_or_the_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let server = OpampServer::start(dir.path());
    let local = Receiver::start();
    let mut agent = start_agent(
        dir.path(),
        &local_config(&server.http_url(), &local.url("/in"), ""),
    );
    let stored = dir.path().join("data/fleet/remote-config.toml");
    let mut receivers = Vec::new();
    for round in 0..4u64 {
        let next = Receiver::start();
        server.offer_config(&remote_config(&agent, &next.url(&format!("/round{round}"))));
        // Somewhere between the offer and well after the apply.
        std::thread::sleep(Duration::from_millis(300 * round));
        agent.kill9();
        if let Ok(text) = std::fs::read_to_string(&stored) {
            let (first, rest) = text.split_once('\n').unwrap();
            assert!(
                first.starts_with("# outpost remote config, hash "),
                "{text}"
            );
            assert!(rest.contains("[sinks.store]"), "a whole config: {text}");
        }
        agent.restart();
        receivers.push(next);
        // It runs the old config or the new one: an event arrives at one of them.
        post_numbered(&agent, &format!("round{round}"), round);
        wait_for("the event at the old or the new receiver", DELIVERY, || {
            let all = local.accepted().len()
                + receivers.iter().map(|r| r.accepted().len()).sum::<usize>();
            (all as u64 > round).then_some(())
        });
    }
    // In the end the last offer is applied.
    wait_agent(&server, "the last config applied", |v| {
        remote_status(v).0 == "RemoteConfigStatuses_APPLIED"
            && v["effective_text"]["outpost.toml"]
                .as_str()
                .is_some_and(|t| t.contains("/round3"))
    });
}

#[test]
fn mutual_tls_over_https_and_wss_and_a_wrong_client_refused() {
    let dir = tempfile::tempdir().unwrap();
    let certs = outpost_tests::certs::Certs::generate(&dir.path().join("certs"));
    let server = OpampServer::start_tls(dir.path(), &certs, true);
    let store = Receiver::start();
    let tls = format!(
        "ca_file = \"{}\"\nclient_cert = \"{}\"\nclient_key = \"{}\"",
        certs.path("ca.crt"),
        certs.path("client.crt"),
        certs.path("client.key")
    );
    for url in [server.http_url(), server.ws_url()] {
        // Counted before the agent starts: its first report may well come before
        // `start_agent` returns.
        let before = server.agents().len();
        let agent_dir = tempfile::tempdir().unwrap();
        let agent = start_agent(
            agent_dir.path(),
            &local_config(&url, &store.url("/in"), &tls),
        );
        wait_agent(&server, &format!("a report over {url}"), |_| {
            server.agents().len() > before
        });
        drop(agent);
    }
    // Without a client certificate the server refuses the handshake: the agent runs
    // on, and says why in its log.
    let agent_dir = tempfile::tempdir().unwrap();
    let ca_only = format!("ca_file = \"{}\"", certs.path("ca.crt"));
    let agent = start_agent(
        agent_dir.path(),
        &local_config(&server.http_url(), &store.url("/in"), &ca_only),
    );
    wait_for("the refused handshake in the log", DELIVERY, || {
        agent.log().contains("connection failed").then_some(())
    });
    post_numbered(&agent, "still-flowing", 1);
    wait_delivered(&store, 1);
    assert_eq!(
        server.agents().len(),
        2,
        "only the two agents with certificates"
    );
}

#[test]
fn a_busy_server_is_left_alone_for_as_long_as_it_asks() {
    let dir = tempfile::tempdir().unwrap();
    let server = OpampServer::start(dir.path());
    let store = Receiver::start();
    let agent = start_agent(
        dir.path(),
        &local_config(&server.http_url(), &store.url("/in"), ""),
    );
    wait_agent(&server, "the first report", |v| {
        v["messages"].as_u64() > Some(0)
    });
    server.throttle(6);
    wait_for("a 503 answered", DELIVERY, || {
        (server.throttled() > 0).then_some(())
    });
    wait_for("the agent backing off", DELIVERY, || {
        agent
            .log()
            .contains("asks to come back later")
            .then_some(())
    });
    post_numbered(&agent, "busy", 1);
    wait_delivered(&store, 1);
    // Retry-After: 1 with a 1 s poll: about one request a second (6 in the 6 s), not a
    // storm.
    let throttled = server.throttled();
    assert!(throttled <= 10, "{throttled} requests in 6 s");
    let before = server.agent().unwrap()["messages"].as_u64().unwrap();
    wait_agent(&server, "reports again once the server is free", |v| {
        v["messages"].as_u64() > Some(before)
    });
}
