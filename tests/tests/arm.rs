//! The agent cross-built for the ARM targets it ships for (the docker-free path) and run
//! under qemu-user with a WASM example plugin and the native resource monitor,
//! delivering posted events to a receiver on the host.

use std::time::{Duration, Instant};

use outpost_tests::agent::Agent;
use outpost_tests::arm::{ArmTarget, AARCH64, ARMV7};
use outpost_tests::receiver::Receiver;
use serde_json::json;

fn runs_under_qemu(target: &ArmTarget) {
    let bin = target.build();
    let size = std::fs::metadata(&bin).unwrap().len();
    eprintln!(
        "{}: stripped {} binary {size} bytes",
        target.triple,
        outpost_tests::arm::PROFILE
    );
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start();
    let config = format!(
        r#"
[agent]
listen = "{{LISTEN}}"
data_dir = "{{DATA}}"
device_id = "arm-01"
[plugins]
dir = "{{PLUGINS}}"
active = ["event_sending_plugin_example", "resource_monitor"]
[plugins.settings.event_sending_plugin_example]
sink = "store"
[plugins.settings.resource_monitor]
interval_ms = 60000
[sinks.store]
type = "http"
url = "{}"
"#,
        receiver.url("/in")
    );
    let started = Instant::now();
    let agent = Agent::start_with(target.launcher(bin), dir.path(), &config);
    eprintln!(
        "{}: agent ready under qemu in {:.1} s",
        target.triple,
        started.elapsed().as_secs_f64()
    );
    let plugins = agent.get_json("/v1/plugins");
    assert_eq!(plugins["plugins"][0]["kind"], "wasm");
    assert_eq!(plugins["plugins"][1]["kind"], "native");

    for i in 0..5 {
        let body = json!({"handler_id": "h", "account_id": "a", "events": [{"arch": target.triple, "i": i}]});
        let r = agent.request(
            "POST",
            "/v1/events",
            &[("X-Request-Id", &format!("arm-{i}"))],
            body.to_string().as_bytes(),
        );
        assert_eq!(r.status, 202, "{}", r.text());
    }
    let got = receiver.wait_accepted(5, Duration::from_secs(180));
    for (i, m) in got.iter().enumerate() {
        assert_eq!(m.json()["Luna-Request-Id"], format!("arm-{i}"));
        assert_eq!(m.json()["events"][0]["arch"], target.triple);
    }
    if let Some(pid) = agent.pid() {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let rss = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .unwrap_or("VmRSS: ?");
        eprintln!("{}: qemu process (agent + emulator) {rss}", target.triple);
    }
}

#[test]
fn aarch64_build_runs_under_qemu_with_a_wasm_plugin() {
    runs_under_qemu(&AARCH64);
}

#[test]
fn armv7_build_runs_under_qemu_with_a_wasm_plugin_on_pulley() {
    runs_under_qemu(&ARMV7);
}
