//! The agent cross-built for aarch64 (the docker-free path: Debian's cross gcc) and run
//! under qemu-user with a WASM example plugin, delivering to a receiver on the host.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use outpost_tests::agent::{Agent, Launcher};
use outpost_tests::receiver::Receiver;
use serde_json::json;

const TARGET: &str = "aarch64-unknown-linux-gnu";

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// Builds `outpost` for aarch64 with the `qemu` profile, in its own target dir (the
/// test run holds the lock of the main one).
fn cross_build() -> PathBuf {
    for tool in ["aarch64-linux-gnu-gcc", "qemu-aarch64"] {
        let found = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .status()
            .unwrap()
            .success();
        assert!(
            found,
            "{tool} not found: apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user \
             (.ci/run does)"
        );
    }
    let target_dir = workspace().join("target").join("aarch64");
    let began = Instant::now();
    let status = Command::new(env!("CARGO"))
        .current_dir(workspace())
        .args([
            "build",
            "-p",
            "outpost",
            "--bin",
            "outpost",
            "--profile",
            "qemu",
            "--target",
            TARGET,
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .expect("run cargo");
    assert!(status.success(), "aarch64 cross build failed");
    eprintln!(
        "aarch64 cross build: {:.0} s",
        began.elapsed().as_secs_f64()
    );
    target_dir.join(TARGET).join("qemu").join("outpost")
}

#[test]
fn aarch64_build_runs_under_qemu_with_a_wasm_plugin() {
    let bin = cross_build();
    let elf = std::fs::read(&bin).unwrap();
    assert_eq!(&elf[..4], b"\x7fELF");
    assert_eq!(
        u16::from_le_bytes([elf[18], elf[19]]),
        183,
        "e_machine is EM_AARCH64"
    );

    let launcher = Launcher {
        program: bin,
        prefix: vec![
            "qemu-aarch64".into(),
            "-L".into(),
            "/usr/aarch64-linux-gnu".into(),
        ],
    };
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
    let agent = Agent::start_with(launcher, dir.path(), &config);
    eprintln!(
        "agent ready under qemu in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let plugins = agent.get_json("/v1/plugins");
    assert_eq!(plugins["plugins"][0]["kind"], "wasm");

    for i in 0..5 {
        let body =
            json!({"handler_id": "h", "account_id": "a", "events": [{"arch": "aarch64", "i": i}]});
        let r = agent.request(
            "POST",
            "/v1/events",
            &[("X-Request-Id", &format!("arm-{i}"))],
            body.to_string().as_bytes(),
        );
        assert_eq!(r.status, 202, "{}", r.text());
    }
    let got = receiver.wait_accepted(5, Duration::from_secs(120));
    for (i, m) in got.iter().enumerate() {
        assert_eq!(m.json()["Luna-Request-Id"], format!("arm-{i}"));
        assert_eq!(m.json()["events"][0]["arch"], "aarch64");
    }
    if let Some(pid) = agent.pid() {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let rss = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .unwrap_or("VmRSS: ?");
        eprintln!("qemu-aarch64 process (agent + emulator) {rss}");
    }
}
