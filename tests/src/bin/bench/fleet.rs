//! Fleet scale, simulated: N agents (default 50, `OUTPOST_BENCH_AGENTS`) on this machine
//! against one OpAMP test server, over HTTP (polling) and over WebSocket. Prints the
//! memory per agent, the size of a full report and of a heartbeat, the server's message
//! rate, and the time for a config change to reach every agent (reported `APPLIED`).

use std::time::{Duration, Instant};

use outpost_tests::opamp::OpampServer;
use serde_json::Value;

use super::Agent;

fn agent_count() -> usize {
    std::env::var("OUTPOST_BENCH_AGENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50)
}

fn config(server: &str, poll: &str) -> String {
    format!(
        r#"
[agent]
listen = "{{LISTEN}}"
data_dir = "{{DATA}}"
[plugins]
active = ["forward"]
[plugins.settings.forward]
sink = "out"
[sinks.out]
type = "file"
path = "{{DATA}}/out.ndjson"
[fleet]
server = "{server}"
poll_interval = "{poll}"
"#
    )
}

/// The config change: the whole config but `[fleet]` and `data_dir` (the local file's
/// win); `agent.listen` is left at its default, which each agent reports as waiting
/// for a restart.
const REMOTE: &str = r#"
[plugins]
active = ["forward"]
[plugins.settings.forward]
sink = "out"
[sinks.out]
type = "http"
url = "http://127.0.0.1:9/never-used"
"#;

fn sum(agents: &serde_json::Map<String, Value>, key: &str) -> u64 {
    agents.values().filter_map(|a| a[key].as_u64()).sum()
}

pub fn scenario() {
    let n = agent_count();
    for (transport, poll) in [("http", "10s"), ("ws", "30s")] {
        let dir = tempfile::tempdir().unwrap();
        let server = OpampServer::start(dir.path());
        let url = if transport == "http" {
            server.http_url()
        } else {
            server.ws_url()
        };
        let began = Instant::now();
        let agents: Vec<Agent> = (0..n).map(|_| Agent::start(&config(&url, poll))).collect();
        let started = began.elapsed();
        let deadline = Instant::now() + Duration::from_secs(120);
        while server.agents().len() < n {
            assert!(Instant::now() < deadline, "not every agent reported");
            std::thread::sleep(Duration::from_millis(200));
        }
        std::thread::sleep(Duration::from_secs(5));
        let rss: Vec<f64> = agents.iter().map(Agent::rss_mb).collect();
        let view = server.agents();
        let first_size = sum(&view, "first_size") as f64 / n as f64;
        // The server's load in steady state: messages and bytes over a window.
        let (m0, b0) = (sum(&view, "messages"), sum(&view, "bytes"));
        let window = Duration::from_secs(30);
        std::thread::sleep(window);
        let view = server.agents();
        let (m1, b1) = (sum(&view, "messages"), sum(&view, "bytes"));
        let rate = (m1 - m0) as f64 / window.as_secs_f64();
        let beat = if m1 > m0 {
            (b1 - b0) as f64 / (m1 - m0) as f64
        } else {
            0.0
        };

        // A config change: the time until every agent runs it.
        let offered = Instant::now();
        server.offer_config(REMOTE);
        let deadline = Instant::now() + Duration::from_secs(180);
        let applied = loop {
            let view = server.agents();
            let done = view
                .values()
                .filter(|a| {
                    a["parts"]["remote_config_status"]["status"] == "RemoteConfigStatuses_APPLIED"
                })
                .count();
            if done == n {
                break offered.elapsed();
            }
            assert!(Instant::now() < deadline, "{done} of {n} applied");
            std::thread::sleep(Duration::from_millis(50));
        };
        let mean_rss = rss.iter().sum::<f64>() / n as f64;
        let max_rss = rss.iter().cloned().fold(0.0, f64::max);
        println!(
            "fleet {transport:<4} agents={n} poll={poll} start_all={:.1}s rss_mean={mean_rss:.1}MB \
             rss_max={max_rss:.1}MB first_report={first_size:.0}B heartbeat={beat:.0}B \
             server_rate={rate:.2}msg/s config_to_all={:.2}s",
            started.as_secs_f64(),
            applied.as_secs_f64()
        );
        for agent in agents {
            agent.stop();
        }
    }
}
