//! Fluent Bit side by side (issue 23): the same load generator, the same receiver, the
//! same machine, one after the other. Fluent Bit takes the requests with its `http`
//! input (filesystem storage, as a user who wants the data kept would set it) and
//! posts them with its `http` output, which batches what it flushes each second;
//! Outpost runs its defaults (one message per POST, `queue.sync = "always"`), then
//! with 100 messages per POST, and in interval mode.
//!
//! Fluent Bit is not built here: set `OUTPOST_BENCH_FLUENT_BIT` to its binary
//! (BENCHMARKS.md says how to build one from its repository).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use outpost_tests::free_port;

use super::{
    bench_config, body, drive_target, http_receiver, proc_cpu_seconds, proc_status_kb, run_load,
    wait_listening, Load, Measured, Report, Tally, Target,
};

/// What Fluent Bit's output puts in each record it got: one per request.
const RECORD_KEY: &[u8] = b"\"handler_id\"";

/// Each load, through Fluent Bit and then through Outpost's variants.
pub fn side_by_side() {
    let Some(bin) = std::env::var_os("OUTPOST_BENCH_FLUENT_BIT").map(PathBuf::from) else {
        println!("\n## fluent-bit: skipped (set OUTPOST_BENCH_FLUENT_BIT to a fluent-bit binary)");
        return;
    };
    for (events, requests) in [(1, 30_000), (100, 3_000)] {
        let load = Load::flat_out(requests, events, 8);
        fluent_bit(&bin, load);
        let interval = "sync = \"interval\"\nsync_interval_ms = 100\n";
        let batched = "batch_max_messages = 100\n";
        for (label, queue, sink) in [
            ("defaults (sync always, a POST per message)", "", ""),
            ("sync always, 100 messages per POST", "", batched),
            ("sync interval 100 ms, a POST per message", interval, ""),
            (
                "sync interval 100 ms, 100 messages per POST",
                interval,
                batched,
            ),
        ] {
            let tally = Arc::new(Tally::default());
            let url = format!("http://{}/in", http_receiver(tally.clone()));
            let mut config = bench_config(&format!("type = \"http\"\nurl = \"{url}\"\n{sink}"));
            config.push_str(queue); // the config ends in [queue]
            run_load(
                &format!(
                    "vs Fluent Bit: Outpost, {requests} x {events} event(s), 8 connections, {label}"
                ),
                &config,
                &tally,
                load,
            );
        }
    }
}

/// A Fluent Bit process on a free port, posting to `receiver`.
struct FluentBit {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl FluentBit {
    fn start(bin: &Path, receiver: SocketAddr) -> FluentBit {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let conf = format!(
            "[SERVICE]\n    flush 1\n    grace 1\n    log_level warn\n    \
             storage.path {storage}\n    storage.sync normal\n    storage.checksum off\n\
             [INPUT]\n    name http\n    listen 127.0.0.1\n    port {port}\n    \
             storage.type filesystem\n    buffer_max_size 16M\n\
             [OUTPUT]\n    name http\n    match *\n    host 127.0.0.1\n    port {rport}\n    \
             uri /in\n    format json\n    retry_limit false\n",
            storage = dir.path().join("storage").display(),
            rport = receiver.port(),
        );
        let path = dir.path().join("fluent-bit.conf");
        std::fs::write(&path, conf).unwrap();
        let child = Command::new(bin)
            .arg("-c")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("fluent-bit.log")).unwrap())
            .spawn()
            .expect("start fluent-bit ($OUTPOST_BENCH_FLUENT_BIT)");
        let fluent_bit = FluentBit {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            _dir: dir,
        };
        wait_listening(fluent_bit.addr, "fluent-bit");
        fluent_bit
    }
}

impl Drop for FluentBit {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `load` through Fluent Bit: the figures `run_load` gives for Outpost.
fn fluent_bit(bin: &Path, load: Load) {
    let tally = Arc::new(Tally::counting(RECORD_KEY));
    let fb = FluentBit::start(bin, http_receiver(tally.clone()));
    let pid = fb.child.id();
    let idle_rss = proc_status_kb(pid, "VmRSS:") as f64 / 1024.0;
    let cpu0 = proc_cpu_seconds(pid);
    let payload = Arc::new(body(load.events, 1024));
    let first = Instant::now();
    let (accepted, rejected, elapsed) = drive_target(
        &Target::Tcp(fb.addr),
        load.connections,
        load.requests,
        0,
        &payload,
    );
    let delivered = tally.wait(accepted, Duration::from_secs(600));
    let total = first.elapsed();
    let cpu = proc_cpu_seconds(pid) - cpu0;
    let mut r = Report::new(&format!(
        "vs Fluent Bit: Fluent Bit, {} x {} event(s), 8 connections, filesystem storage",
        load.requests, load.events
    ));
    Measured {
        events: load.events,
        accepted,
        rejected,
        elapsed,
        delivered,
        total,
        latency: None, // its records carry no send time
        cpu,
        idle_rss,
        peak_rss: proc_status_kb(pid, "VmHWM:") as f64 / 1024.0,
    }
    .add_to(&mut r);
    r.print();
}
