//! End to end over HTTPS, proxies and compressed bodies: the real agent against a
//! rustls receiver with test certificates, a real tinyproxy, and a receiver that
//! decodes gzip and zstd.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use outpost_tests::agent::{Agent, Launcher};
use outpost_tests::certs::{Certs, NAMED_HOST};
use outpost_tests::fixture::{self, body, http_sink, post_ok, AGENT, DELIVERY};
use outpost_tests::proxy::{Tinyproxy, VIA_NAME};
use outpost_tests::receiver::{Received, Receiver};
use outpost_tests::{free_port, wait_for};
use serde_json::{json, Value};

/// The built-in `forward` plugin into HTTP sink `store` at `url`, with `extra` sink keys.
fn forward_config(url: &str, extra: &str) -> String {
    fixture::forward_config("store", &http_sink(url, extra))
}

/// Posts one event, which must be accepted.
fn post(agent: &Agent, id: &str) {
    post_ok(agent, id, &body("h", [json!({"id": id})]));
}

fn request_ids(got: &[Received]) -> Vec<String> {
    got.iter()
        .map(|r| r.json()["Luna-Request-Id"].as_str().unwrap().to_owned())
        .collect()
}

fn store_health(agent: &Agent) -> Value {
    agent.get_json("/v1/health")["sinks"]["store"].clone()
}

/// Waits until the sink has failed at least once; returns its health.
fn wait_failing(agent: &Agent) -> Value {
    wait_for("a failed delivery", DELIVERY, || {
        let h = store_health(agent);
        (h["failures"].as_u64() > Some(0) && h["last_error"].is_string()).then_some(h)
    })
}

#[test]
fn verified_https_delivery_over_one_kept_alive_connection() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::generate(&dir.path().join("certs"));
    let receiver = Receiver::start_tls(certs.server_config("server", None));
    let ca = format!("ca_file = \"{}\"", certs.path("ca.crt"));
    let agent = Agent::start(dir.path(), &forward_config(&receiver.url("/in"), &ca));
    for i in 0..5 {
        post(&agent, &format!("tls-{i}"));
    }
    let got = receiver.wait_accepted(5, DELIVERY);
    assert_eq!(
        request_ids(&got),
        ["tls-0", "tls-1", "tls-2", "tls-3", "tls-4"]
    );
    assert!(got.iter().all(|r| r.header("idempotency-key").is_some()));
    assert!(
        got.iter().all(|r| r.connection == got[0].connection),
        "keep-alive: one TLS connection"
    );
    assert_eq!(got[0].sni, None, "no SNI for an IP address");
}

#[test]
fn wrong_ca_is_retried_and_reported_until_the_chain_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::generate(&dir.path().join("certs"));
    // A certificate for 127.0.0.1, but from a CA the agent does not trust.
    let untrusted = Receiver::start_tls(certs.server_config("other-server", None));
    let port = untrusted.addr.port();
    let ca = format!("ca_file = \"{}\"", certs.path("ca.crt"));
    let agent = Agent::start(dir.path(), &forward_config(&untrusted.url("/in"), &ca));
    post(&agent, "r-1");

    let h = wait_failing(&agent);
    let error = h["last_error"].as_str().unwrap();
    assert!(
        error.contains("TLS") && error.contains("UnknownIssuer"),
        "{h}"
    );
    assert_eq!(h["connected"], false, "{h}");
    assert_eq!(h["backlog"], 1, "{h}");
    assert_eq!(h["dead_letters"], 0, "{h}");
    assert!(
        untrusted.all().is_empty(),
        "nothing sent over an unverified connection"
    );
    assert!(untrusted.connections() > 0);

    // The receiver comes back on the same port with a chain the agent trusts.
    untrusted.stop();
    let fixed = Receiver::start_tls_on(port, certs.server_config("server", None), |_| 200);
    let got = fixed.wait_accepted(1, DELIVERY);
    assert_eq!(request_ids(&got), ["r-1"]);
    let h = wait_for("the backlog to drain", DELIVERY, || {
        let h = store_health(&agent);
        (h["backlog"] == 0).then_some(h)
    });
    assert_eq!(h["dead_letters"], 0, "{h}");
    assert_eq!(h["connected"], true, "{h}");
}

#[test]
fn mutual_tls_needs_the_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::generate(&dir.path().join("certs"));
    let receiver = Receiver::start_tls(certs.server_config("server", Some("ca")));
    let url = receiver.url("/in");
    let ca = format!("ca_file = \"{}\"", certs.path("ca.crt"));
    let mut agent = Agent::start(dir.path(), &forward_config(&url, &ca));
    post(&agent, "m-1");
    let h = wait_failing(&agent);
    // TLS 1.3: the refusal comes as an alert after the client's handshake.
    assert!(h["last_error"].as_str().unwrap().contains("TLS"), "{h}");
    assert_eq!(h["backlog"], 1, "{h}");
    assert_eq!(h["dead_letters"], 0, "{h}");
    assert!(receiver.accepted().is_empty());

    let with_cert = format!(
        "{ca}\nclient_cert = \"{}\"\nclient_key = \"{}\"",
        certs.path("client.crt"),
        certs.path("client.key")
    );
    agent.rewrite_config(&forward_config(&url, &with_cert));
    agent.restart();
    let got = receiver.wait_accepted(1, DELIVERY);
    assert_eq!(request_ids(&got), ["m-1"]);
}

#[test]
fn tls_server_name_overrides_the_name_checked_and_sent() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::generate(&dir.path().join("certs"));
    // Its certificate names only receiver.test; the agent connects to 127.0.0.1.
    let receiver = Receiver::start_tls(certs.server_config("named", None));
    let extra = format!(
        "ca_file = \"{}\"\ntls_server_name = \"{NAMED_HOST}\"",
        certs.path("ca.crt")
    );
    let agent = Agent::start(dir.path(), &forward_config(&receiver.url("/in"), &extra));
    post(&agent, "n-1");
    let got = receiver.wait_accepted(1, DELIVERY);
    assert_eq!(got[0].sni.as_deref(), Some(NAMED_HOST));
}

const PROXY_USER: (&str, &str) = ("alice", "s3cret-pw");

#[test]
fn http_and_https_through_an_authenticating_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::generate(&dir.path().join("certs"));
    let proxy = Tinyproxy::start(dir.path(), Some(PROXY_USER));
    // The password comes from the environment, through ${VAR} in the proxy URL.
    let proxy_key = format!(
        "proxy = \"http://alice:${{PROXY_PASSWORD}}@127.0.0.1:{}\"",
        proxy.port
    );
    let env = [("PROXY_PASSWORD", PROXY_USER.1)];

    let plain = Receiver::start();
    let agent_dir = dir.path().join("plain");
    std::fs::create_dir(&agent_dir).unwrap();
    let config = forward_config(&plain.url("/in"), &proxy_key);
    let agent = Agent::start_env(Launcher::native(), &agent_dir, &config, &env);
    post(&agent, "p-1");
    let got = plain.wait_accepted(1, DELIVERY);
    let via = got[0].header("via").unwrap_or_default();
    assert!(via.contains(VIA_NAME), "went through the proxy: {got:?}");
    assert!(got[0].header("proxy-authorization").is_none());
    let log = proxy.log();
    assert!(
        log.contains(&format!("POST http://127.0.0.1:{}/in", plain.addr.port())),
        "absolute-form request: {log}"
    );
    assert!(!agent.log().contains(PROXY_USER.1));

    let tls = Receiver::start_tls(certs.server_config("server", None));
    let agent_dir = dir.path().join("tls");
    std::fs::create_dir(&agent_dir).unwrap();
    let extra = format!("{proxy_key}\nca_file = \"{}\"", certs.path("ca.crt"));
    let config = forward_config(&tls.url("/in"), &extra);
    let agent = Agent::start_env(Launcher::native(), &agent_dir, &config, &env);
    post(&agent, "s-1");
    post(&agent, "s-2");
    let got = tls.wait_accepted(2, DELIVERY);
    assert_eq!(request_ids(&got), ["s-1", "s-2"]);
    assert_eq!(
        got[0].connection, got[1].connection,
        "one tunnel, kept alive"
    );
    let log = proxy.log();
    assert!(
        log.contains(&format!("CONNECT 127.0.0.1:{}", tls.addr.port())),
        "{log}"
    );
}

#[test]
fn a_refused_proxy_tunnel_is_retried_and_keeps_the_password_out_of_health() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::generate(&dir.path().join("certs"));
    let proxy = Tinyproxy::start(dir.path(), Some(PROXY_USER));
    let tls = Receiver::start_tls(certs.server_config("server", None));
    let extra = format!(
        "proxy = \"{}\"\nca_file = \"{}\"",
        proxy.url(Some(("alice", "wrong-password"))),
        certs.path("ca.crt")
    );
    let agent = Agent::start(dir.path(), &forward_config(&tls.url("/in"), &extra));
    post(&agent, "x-1");
    let h = wait_failing(&agent);
    let error = h["last_error"].as_str().unwrap();
    assert!(
        error.contains(&format!("proxy http://127.0.0.1:{}/", proxy.port)),
        "{h}"
    );
    assert!(!error.contains("wrong-password"), "{h}");
    assert_eq!(
        (h["backlog"].as_u64(), h["dead_letters"].as_u64()),
        (Some(1), Some(0))
    );
    assert!(tls.all().is_empty());
    assert!(!agent.log().contains("wrong-password"));
}

#[test]
fn https_proxy_from_the_environment_and_no_proxy_bypass() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::generate(&dir.path().join("certs"));
    let proxy = Tinyproxy::start(dir.path(), None);
    let tls = Receiver::start_tls(certs.server_config("server", None));
    let config = forward_config(
        &tls.url("/in"),
        &format!("ca_file = \"{}\"", certs.path("ca.crt")),
    );

    let agent_dir = dir.path().join("env");
    std::fs::create_dir(&agent_dir).unwrap();
    let proxy_url = proxy.url(None);
    let env = [("HTTPS_PROXY", proxy_url.as_str())];
    let agent = Agent::start_env(Launcher::native(), &agent_dir, &config, &env);
    post(&agent, "e-1");
    tls.wait_accepted(1, DELIVERY);
    let connect = format!("CONNECT 127.0.0.1:{}", tls.addr.port());
    assert!(proxy.log().contains(&connect), "{}", proxy.log());
    drop(agent);

    // NO_PROXY exempts 127.0.0.1: delivered directly although the proxy is dead.
    let agent_dir = dir.path().join("bypass");
    std::fs::create_dir(&agent_dir).unwrap();
    let dead = format!("http://127.0.0.1:{}", free_port());
    let env = [
        ("https_proxy", dead.as_str()),
        ("NO_PROXY", "localhost,127.0.0.1"),
    ];
    let agent = Agent::start_env(Launcher::native(), &agent_dir, &config, &env);
    post(&agent, "e-2");
    let got = tls.wait_accepted(2, DELIVERY);
    assert_eq!(request_ids(&got), ["e-1", "e-2"]);
    assert_eq!(store_health(&agent)["failures"], 0);
}

/// Two sinks fed the same seed messages: `plain` by `forward`, `packed` by the
/// (native) `event_sending_plugin_example`, compressed and batched as `packed_extra`.
fn twin_config(plain: &str, packed: &str, packed_extra: &str) -> String {
    format!(
        r#"{AGENT}
[plugins]
active = ["forward", "event_sending_plugin_example"]
[plugins.settings.forward]
sink = "plain"
[plugins.settings.event_sending_plugin_example]
sink = "packed"
[sinks.plain]
type = "http"
url = "{plain}"
[sinks.packed]
type = "http"
url = "{packed}"
retry = {{ initial_ms = 50, max_ms = 100 }}
{packed_extra}
"#
    )
}

/// What `packed` must have sent, rebuilt from the uncompressed single messages: each
/// request's messages (as many as its `Outpost-Message-Ids`) alone or as `[a,b,…]`.
fn expected_bodies(plain: &[Received], packed: &[Received]) -> Vec<Vec<u8>> {
    let mut next = plain.iter().map(|r| r.body.clone());
    packed
        .iter()
        .map(|r| match r.header("outpost-message-ids") {
            None => next.next().unwrap(),
            Some(ids) => {
                let bodies: Vec<Vec<u8>> = (0..ids.split(',').count())
                    .map(|_| next.next().unwrap())
                    .collect();
                [b"[".to_vec(), bodies.join(&b","[..]), b"]".to_vec()].concat()
            }
        })
        .collect()
}

#[test]
fn gzip_and_zstd_bodies_decode_to_the_uncompressed_bytes() {
    for (codec, batch) in [("gzip", 1), ("zstd", 1), ("gzip", 8), ("zstd", 8)] {
        let dir = tempfile::tempdir().unwrap();
        let plain = Receiver::start();
        // Refuses until everything is queued, so the batches fill up.
        let open = Arc::new(AtomicBool::new(false));
        let gate = Arc::clone(&open);
        let packed = Receiver::start_on(0, move |_| {
            if gate.load(Ordering::Relaxed) {
                200
            } else {
                503
            }
        });
        let extra = format!("compression = \"{codec}\"\nbatch_max_messages = {batch}");
        let config = twin_config(&plain.url("/in"), &packed.url("/in"), &extra);
        let agent = Agent::start(dir.path(), &config);
        for i in 0..12 {
            post(&agent, &format!("{codec}-{batch}-{i:02}"));
        }
        open.store(true, Ordering::Relaxed);
        let reference = plain.wait_accepted(12, DELIVERY);
        let got = wait_for("all 12 packed messages", DELIVERY, || {
            let got = packed.accepted();
            let n: usize = got
                .iter()
                .map(|r| {
                    r.header("outpost-message-ids")
                        .map_or(1, |i| i.split(',').count())
                })
                .sum();
            (n == 12).then_some(got)
        });
        if batch > 1 {
            assert!(
                got.len() < 12,
                "{codec}: batches formed ({} requests)",
                got.len()
            );
        }
        let expected = expected_bodies(&reference, &got);
        for (r, want) in got.iter().zip(&expected) {
            assert_eq!(r.header("content-encoding"), Some(codec));
            assert_eq!(r.body, *want, "{codec} x {batch}: decoded body differs");
            assert_ne!(r.wire_len, r.body.len(), "{codec}: really encoded");
        }
        let big = got.iter().max_by_key(|r| r.body.len()).unwrap();
        if batch > 1 {
            assert!(
                big.wire_len * 2 < big.body.len(),
                "{codec}: {} of {} bytes",
                big.wire_len,
                big.body.len()
            );
        }
    }
}
