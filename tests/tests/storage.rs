//! A full disk, end to end: the real agent with its data dir on a 16 MiB tmpfs, the
//! sink down while producers fill it, then the sink back. Every 202'd event must
//! arrive, the agent must answer 507 (never another 5xx) while full, and accept again
//! without a restart. Needs root to mount the tmpfs (CI runs as root).

use std::collections::HashSet;
use std::process::Command;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use outpost_tests::agent::Agent;
use outpost_tests::fixture::{forward_config, http_sink, post, post_ok, AGENT, DELIVERY};
use outpost_tests::receiver::Receiver;
use outpost_tests::testfs::{Capacity, TestFs};
use outpost_tests::{free_port, wait_for};
use serde_json::json;

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(path: &std::path::Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(path).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(path.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

fn body(request: usize) -> serde_json::Value {
    let events: Vec<_> = (0..20)
        .map(|i| json!({"request": request, "n": i, "pad": "x".repeat(1000)}))
        .collect();
    json!({"handler_id": "h", "account_id": "a", "events": events})
}

#[test]
fn a_full_disk_answers_507_keeps_every_acknowledged_event_and_recovers_by_itself() {
    assert!(
        is_root(),
        "this test mounts a 16 MiB tmpfs for the agent's data dir, which needs root: \
         run the suite as root (CI does), or skip it by name"
    );
    let dir = tempfile::tempdir().unwrap();
    let _tmpfs = Tmpfs::mount(&dir.path().join("data"), "16m")
        .expect("cannot mount a tmpfs for the data dir (mount -t tmpfs failed)");
    let status = Arc::new(AtomicU16::new(503));
    let answer = Arc::clone(&status);
    let port = free_port();
    let receiver = Receiver::start_on(port, move |_| answer.load(Ordering::Relaxed));
    let config = format!(
        r#"{AGENT}[plugins]
active = ["forward"]
[plugins.settings.forward]
sink = "store"
[sinks.store]
type = "http"
url = "{}"
retry = {{ initial_ms = 50, max_ms = 500 }}
"#,
        receiver.url("/in")
    );
    let agent = Agent::start(dir.path(), &config);

    // Fill the disk with the sink down.
    let (mut accepted, mut refused) = (Vec::new(), 0usize);
    for i in 0..5000 {
        let r = post(&agent, &format!("fill-{i}"), &body(i));
        match r.status {
            202 => accepted.push(format!("fill-{i}")),
            507 => {
                assert_eq!(r.json()["error"]["code"], "insufficient_storage");
                refused += 1;
                if refused >= 20 {
                    break;
                }
            }
            other => panic!("request {i}: {other} {}", r.text()),
        }
    }
    assert!(refused >= 20, "the disk never filled");
    let health = agent.get_json("/v1/health");
    assert_eq!(health["storage"]["state"], "full", "{health}");
    assert_eq!(health["status"], "degraded");

    // The sink comes back: everything acknowledged arrives, the agent accepts again.
    let back = Instant::now();
    status.store(200, Ordering::Relaxed);
    let wanted: HashSet<String> = accepted.iter().cloned().collect();
    wait_for(
        "every acknowledged request delivered",
        Duration::from_secs(240),
        || {
            let got: HashSet<String> = receiver
                .accepted()
                .iter()
                .filter_map(|m| m.json()["Luna-Request-Id"].as_str().map(str::to_owned))
                .collect();
            wanted.is_subset(&got).then_some(())
        },
    );
    let drained = back.elapsed();
    let again = wait_for("new work accepted", Duration::from_secs(120), || {
        let r = post(&agent, "after", &body(0));
        (r.status == 202).then_some(r)
    });
    assert_eq!(again.status, 202);
    let recovered = back.elapsed();
    let health = agent.get_json("/v1/health");
    assert_eq!(health["status"], "ok", "{health}");
    eprintln!(
        "disk full: {} requests ({} events) accepted, {refused} refused with 507; \
         sink back → all delivered in {:.1} s, accepting again after {:.1} s; {}",
        accepted.len(),
        accepted.len() * 20,
        drained.as_secs_f64(),
        recovered.as_secs_f64(),
        health["storage"]
    );
}

/// A filesystem that reports no size (statvfs answers zeros, as FUSE, network and
/// overlay filesystems may) is not full: the agent accepts, says "unknown_size", and
/// delivers.
#[test]
fn a_filesystem_that_reports_no_size_is_not_full() {
    let dir = tempfile::tempdir().unwrap();
    let _fs = TestFs::mount(&dir.path().join("data"), Capacity::Unknown)
        .expect("mount the test filesystem (needs /dev/fuse and root or fusermount3)");
    let receiver = Receiver::start();
    let config = format!(
        "{}\n[queue]\nmin_free_bytes = 67108864",
        forward_config("store", &http_sink(&receiver.url("/in"), ""))
    );
    let agent = Agent::start(dir.path(), &config);
    for i in 0..5 {
        post_ok(&agent, &format!("u-{i}"), &body(i));
    }
    let got = receiver.wait_accepted(5, DELIVERY);
    assert_eq!(got.len(), 5);
    let health = agent.get_json("/v1/health");
    assert_eq!(health["storage"]["state"], "unknown_size", "{health}");
    assert_eq!(health["storage"]["free_bytes"], serde_json::Value::Null);
    assert_eq!(health["status"], "ok");
    assert_eq!(
        agent.metric("outpost_storage_state{state=\"unknown_size\"}"),
        Some(1.0)
    );
}
