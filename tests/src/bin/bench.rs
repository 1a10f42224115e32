//! Outpost benchmark: starts the real (release) agent with a scenario's config, drives
//! it from 127.0.0.1 and prints what its users judge it by.
//!
//!     tests/bench.sh [scenario…]        # smoke10k plugin http http-batch https compress mqtt mqtt-window steady backlog
//!
//! Figures: events/s accepted (202s) and delivered (at the receiver), ingest→receiver
//! latency p50/p99 (per request; all its events share it), agent CPU seconds (from
//! /proc/<pid>/stat), peak RSS (VmHWM), and bytes on disk per queued event.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use outpost_tests::free_port;

/// The HTTPS and compression scenarios, and the plugin host's (a directory of their
/// own, so that cargo does not take the files for other binaries).
#[path = "bench/fleet.rs"]
mod fleet;
#[path = "bench/floor.rs"]
mod floor;
#[path = "bench/fluent_bit.rs"]
mod fluent_bit;
#[path = "bench/https.rs"]
mod https;
#[path = "bench/plugin.rs"]
mod plugin;
#[path = "bench/sources.rs"]
mod sources;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("floor-server") {
        // The `floor` scenario's server: this binary again, a process of its own.
        floor::serve(&args[1..]);
        return;
    }
    let all = [
        "smoke10k",
        "plugin",
        "http",
        "http-batch",
        "https",
        "compress",
        "mqtt",
        "mqtt-window",
        "steady",
        "backlog",
        "disk",
        "http-small",
        "http-10",
        "small",
        "mqtt-16",
        "mqtt-delay",
        "mqtt-drain",
        "redis-source",
        "amqp-source",
        "fleet",
        "fluent-bit",
        "floor",
    ];
    let chosen: Vec<&str> = if args.is_empty() {
        all.to_vec()
    } else {
        args.iter().map(String::as_str).collect()
    };
    println!(
        "# outpost bench: {} cores, agent {}",
        cores(),
        agent_binary().display()
    );
    for s in chosen {
        match s {
            "smoke10k" => smoke10k(),
            "plugin" => plugin::scenario(),
            "plugin-calls" => plugin::per_call(),
            "plugin-idle" => plugin::process(),
            "http" => http_max(),
            "http-batch" => http_batch(),
            "https" => https::https_vs_http(),
            "compress" => https::compress(),
            "mqtt" => mqtt_max(),
            "mqtt-window" => mqtt_window(),
            "steady" => steady(),
            "backlog" => backlog(),
            "disk" => disk_bounded(),
            "http-small" => http_small(1, 30_000),
            "http-10" => http_small(10, 10_000),
            "small" => small_matrix(false),
            "small-before" => small_matrix(true),
            "mqtt-16" => mqtt_default_window(),
            "mqtt-delay" => mqtt_delay(),
            "mqtt-drain" => mqtt_drain(),
            "redis-source" => sources::redis_stream(),
            "amqp-source" => sources::amqp_queue(),
            "fleet" => fleet::scenario(),
            "fluent-bit" => fluent_bit::side_by_side(),
            "floor" => floor::scenario(),
            other => eprintln!(
                "unknown scenario {other}; known: {all:?} (and plugin's parts: plugin-calls, plugin-idle)"
            ),
        }
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// The WASM plugins: `$OUTPOST_TEST_PLUGINS` (to compare builds with the same or
/// saved plugins), else the ones the tests' build script made.
fn plugins_dir() -> PathBuf {
    std::env::var_os("OUTPOST_TEST_PLUGINS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("OUTPOST_TEST_PLUGINS")))
}

fn agent_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("OUTPOST_BIN") {
        return PathBuf::from(bin);
    }
    std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .join("outpost")
}

// ---------------------------------------------------------------- the agent process

struct Agent {
    child: Child,
    addr: SocketAddr,
    /// Its Unix socket, when the config asks for one (`listen_unix = "{SOCKET}"`).
    socket: PathBuf,
    data: PathBuf,
    /// Spawn to the first answer of `/v1/health`.
    started_in: Duration,
    dir: tempfile::TempDir,
}

impl Agent {
    fn start(config: &str) -> Agent {
        Agent::start_in(tempfile::tempdir().unwrap(), config)
    }

    /// Starts the agent with `config` in `dir` (whose `data` dir may hold a previous
    /// run's state: a warm start).
    fn start_in(dir: tempfile::TempDir, config: &str) -> Agent {
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let data = dir.path().join("data");
        let socket = dir.path().join("agent.sock");
        let text = config
            .replace("{LISTEN}", &addr.to_string())
            .replace("{SOCKET}", &socket.display().to_string())
            .replace("{DATA}", &data.display().to_string())
            .replace("{PLUGINS}", &plugins_dir().display().to_string());
        let path = dir.path().join("outpost.toml");
        std::fs::write(&path, text).unwrap();
        let began = Instant::now();
        let child = Command::new(agent_binary())
            .args(["run", "--config"])
            .arg(&path)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("agent.log")).unwrap())
            .spawn()
            .expect("start outpost (cargo build --release -p outpost)");
        let deadline = began + Duration::from_secs(120);
        while get(addr, "/v1/health").is_none() {
            assert!(Instant::now() < deadline, "agent did not start");
            std::thread::sleep(Duration::from_millis(2));
        }
        Agent {
            child,
            addr,
            socket,
            data,
            started_in: began.elapsed(),
            dir,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// (utime + stime) in seconds.
    fn cpu_seconds(&self) -> f64 {
        proc_cpu_seconds(self.pid())
    }

    fn status_kb(&self, key: &str) -> u64 {
        proc_status_kb(self.pid(), key)
    }

    fn rss_mb(&self) -> f64 {
        self.status_kb("VmRSS:") as f64 / 1024.0
    }

    fn peak_rss_mb(&self) -> f64 {
        self.status_kb("VmHWM:") as f64 / 1024.0
    }

    fn health(&self) -> serde_json::Value {
        get(self.addr, "/v1/health")
            .map(|b| serde_json::from_slice(&b).unwrap())
            .unwrap_or_default()
    }

    /// Stops the agent (SIGTERM) and hands back its dir.
    fn stop(mut self) -> tempfile::TempDir {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
        let _ = self.child.wait();
        self.dir
    }
}

/// Waits (30 s at most) until a process started by a scenario listens on `addr`. Call
/// it once the process is in a value that kills it when dropped, so that a process
/// that does not come up is not left running by the panic.
fn wait_listening(addr: SocketAddr, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A process's (utime + stime) in seconds.
fn proc_cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = &stat[stat.rfind(')').map_or(0, |i| i + 1)..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    ticks / 100.0
}

/// A `/proc/<pid>/status` figure in kB (`key` with its colon, e.g. `VmRSS:`).
fn proc_status_kb(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key)?.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn dir_bytes(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

// ---------------------------------------------------------------- HTTP client

/// Where the load goes: the agent's TCP address, or its Unix socket.
#[derive(Debug, Clone)]
enum Target {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

/// A connection to a [`Target`].
enum Stream {
    Tcp(TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush(),
            Stream::Unix(s) => s.flush(),
        }
    }
}

/// A keep-alive HTTP/1.1 connection.
struct Conn {
    stream: BufReader<Stream>,
}

impl Conn {
    fn open(target: &Target) -> Conn {
        let stream = match target {
            Target::Tcp(addr) => {
                let s = TcpStream::connect(addr).unwrap();
                s.set_nodelay(true).unwrap();
                Stream::Tcp(s)
            }
            Target::Unix(path) => {
                Stream::Unix(std::os::unix::net::UnixStream::connect(path).unwrap())
            }
        };
        Conn {
            stream: BufReader::new(stream),
        }
    }

    /// Sends a request and returns the status (body read and discarded).
    fn send(&mut self, method: &str, path: &str, extra: &str, body: &[u8]) -> u16 {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n{extra}\r\n",
            body.len()
        );
        let s = self.stream.get_mut();
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(body).unwrap();
        let mut line = String::new();
        self.stream.read_line(&mut line).unwrap();
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut length = 0usize;
        loop {
            let mut h = String::new();
            self.stream.read_line(&mut h).unwrap();
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut sink = vec![0; length];
        self.stream.read_exact(&mut sink).unwrap();
        status
    }
}

fn get(addr: SocketAddr, path: &str) -> Option<Vec<u8>> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    raw.get(9..12).filter(|c| c == b"200")?;
    Some(raw[split + 4..].to_vec())
}

/// One request body: `events` events of about `event_bytes` each. The request id
/// carries the send time, so the receiver can compute latency without parsing JSON.
fn body(events: usize, event_bytes: usize) -> Vec<u8> {
    let pad = "x".repeat(event_bytes.saturating_sub(60));
    let events: Vec<String> = (0..events)
        .map(|i| format!("{{\"n\":{i},\"type\":\"face\",\"score\":0.97,\"pad\":\"{pad}\"}}"))
        .collect();
    format!(
        "{{\"handler_id\":\"bench\",\"account_id\":\"acc\",\"events\":[{}]}}",
        events.join(",")
    )
    .into_bytes()
}

/// Load: `connections` keep-alive connections posting `body` until `total` requests
/// were sent, or `rate` requests/s overall (0: as fast as possible). Returns
/// (accepted requests, rejected requests, elapsed).
fn drive_load(
    addr: SocketAddr,
    connections: usize,
    total: u64,
    rate: u64,
    body: &Arc<Vec<u8>>,
) -> (u64, u64, Duration) {
    drive_target(&Target::Tcp(addr), connections, total, rate, body)
}

/// [`drive_load`] to any [`Target`].
fn drive_target(
    target: &Target,
    connections: usize,
    total: u64,
    rate: u64,
    body: &Arc<Vec<u8>>,
) -> (u64, u64, Duration) {
    drive_varied_load(
        target,
        connections,
        total,
        rate,
        &Arc::new(vec![body.to_vec()]),
    )
}

/// [`drive_load`] with request `n` posting `bodies[n % bodies.len()]`.
fn drive_varied_load(
    target: &Target,
    connections: usize,
    total: u64,
    rate: u64,
    bodies: &Arc<Vec<Vec<u8>>>,
) -> (u64, u64, Duration) {
    let sent = Arc::new(AtomicU64::new(0));
    let accepted = Arc::new(AtomicU64::new(0));
    let rejected = Arc::new(AtomicU64::new(0));
    let began = Instant::now();
    let threads: Vec<_> = (0..connections)
        .map(|_| {
            let (sent, accepted, rejected, bodies, target) = (
                sent.clone(),
                accepted.clone(),
                rejected.clone(),
                bodies.clone(),
                target.clone(),
            );
            std::thread::spawn(move || {
                let mut conn = Conn::open(&target);
                loop {
                    let n = sent.fetch_add(1, Ordering::Relaxed);
                    if n >= total {
                        break;
                    }
                    if rate > 0 {
                        let due = began + Duration::from_secs_f64(n as f64 / rate as f64);
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                    }
                    let id = format!(
                        "Content-Type: application/json\r\nX-Request-Id: r{}-{}\r\n",
                        now_ns(),
                        n
                    );
                    let body = &bodies[n as usize % bodies.len()];
                    // 2xx: Outpost answers 202, Fluent Bit (side by side) 201.
                    match conn.send("POST", "/v1/events", &id, body) {
                        200..=299 => accepted.fetch_add(1, Ordering::Relaxed),
                        _ => rejected.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    (
        accepted.load(Ordering::Relaxed),
        rejected.load(Ordering::Relaxed),
        began.elapsed(),
    )
}

// ---------------------------------------------------------------- receivers

/// Counts deliveries and their latencies; keeps no bodies.
#[derive(Default)]
struct Tally {
    messages: AtomicU64,
    /// Request bodies as sent (compressed, if they were) and as decoded.
    wire_bytes: AtomicU64,
    body_bytes: AtomicU64,
    latencies_us: Mutex<Vec<u64>>,
    /// Counts a body's occurrences of this instead of request ids (for another
    /// agent's output, which carries no send time).
    count_by: Option<&'static [u8]>,
    first_ns: AtomicU64,
    last_ns: AtomicU64,
}

impl Tally {
    /// A tally that counts the records of a body by `key`.
    fn counting(key: &'static [u8]) -> Tally {
        Tally {
            count_by: Some(key),
            ..Tally::default()
        }
    }

    /// Counts the messages in `payload`: one, or each of a batched POST's array.
    fn record(&self, payload: &[u8]) {
        let now = now_ns();
        if let Some(key) = self.count_by {
            let n = payload.windows(key.len()).filter(|w| w == &key).count();
            self.messages.fetch_add(n as u64, Ordering::Relaxed);
            return;
        }
        let mut messages = 0;
        let mut rest = payload;
        while let Some((sent, next)) = find_sent_ns(rest) {
            self.latencies_us
                .lock()
                .unwrap()
                .push(now.saturating_sub(sent) / 1000);
            messages += 1;
            rest = &rest[next..];
        }
        self.messages.fetch_add(messages.max(1), Ordering::Relaxed);
        self.body_bytes
            .fetch_add(payload.len() as u64, Ordering::Relaxed);
        let _ = self
            .first_ns
            .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
        self.last_ns.store(now, Ordering::Relaxed);
    }

    /// From the first delivery to the last.
    fn span(&self) -> Duration {
        let (first, last) = (
            self.first_ns.load(Ordering::Relaxed),
            self.last_ns.load(Ordering::Relaxed),
        );
        Duration::from_nanos(last.saturating_sub(first))
    }

    fn wait(&self, n: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.messages.load(Ordering::Relaxed) < n {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }

    fn percentiles(&self) -> (f64, f64) {
        let mut l = self.latencies_us.lock().unwrap().clone();
        if l.is_empty() {
            return (0.0, 0.0);
        }
        l.sort_unstable();
        let p = |q: f64| l[((l.len() - 1) as f64 * q) as usize] as f64 / 1000.0;
        (p(0.50), p(0.99))
    }
}

/// `"Luna-Request-Id":"r<ns>-<n>"` → ns.
/// The send time in the first request id of `payload`, and where to look for the next.
fn find_sent_ns(payload: &[u8]) -> Option<(u64, usize)> {
    let key = b"\"Luna-Request-Id\":\"r";
    let at = payload.windows(key.len()).position(|w| w == key)? + key.len();
    let end = payload[at..].iter().position(|&b| b == b'-')?;
    let sent = std::str::from_utf8(&payload[at..at + end])
        .ok()?
        .parse()
        .ok()?;
    Some((sent, at + end))
}

/// A lean HTTP receiver on a free port: thread per connection, keep-alive, 200 to
/// everything.
fn http_receiver(tally: Arc<Tally>) -> SocketAddr {
    http_receiver_on("127.0.0.1:0".parse().unwrap(), tally)
}

// ---------------------------------------------------------------- reporting

struct Report {
    name: String,
    rows: Vec<(String, String)>,
}

impl Report {
    fn new(name: &str) -> Report {
        Report {
            name: name.to_owned(),
            rows: Vec::new(),
        }
    }
    fn add(&mut self, key: &str, value: impl std::fmt::Display) {
        self.rows.push((key.to_owned(), value.to_string()));
    }
    fn print(&self) {
        println!("\n## {}", self.name);
        for (k, v) in &self.rows {
            println!("  {k:<34} {v}");
        }
    }
}

/// The agent under test: the WASM sending plugin, its messages to the sink `out`
/// described by `sink` (the body of `[sinks.out]`), a 4 GB queue.
fn bench_config(sink: &str) -> String {
    format!(
        r#"
[agent]
listen = "{{LISTEN}}"
data_dir = "{{DATA}}"
max_body_bytes = 16777216
[plugins]
dir = "{{PLUGINS}}"
active = ["event_sending_plugin_example"]
[plugins.settings.event_sending_plugin_example]
sink = "out"
[sinks.out]
{sink}
[queue]
max_bytes = 4294967296
"#
    )
}

/// The bench config with an MQTT QoS 1 sink to 127.0.0.1:`port`; `extra` adds keys.
fn mqtt_sink_config(port: u16, in_flight: usize, extra: &str) -> String {
    bench_config(&format!(
        "type = \"mqtt\"\nurl = \"mqtt://127.0.0.1:{port}\"\ntopic = \"bench/{{device_id}}\"\nqos = 1\nmax_packet_bytes = 4194304\nmax_in_flight = {in_flight}\n{extra}"
    ))
}

/// The bench config with an HTTP sink to `url`; `OUTPOST_BENCH_HTTP_SINK` adds keys
/// (e.g. `batch_max_messages = 100`, to see what delivery costs of the agent's CPU),
/// and `OUTPOST_BENCH_QUEUE` adds keys to `[queue]` (e.g. `sync = "interval"`).
fn http_sink_config(url: &str) -> String {
    let extra = std::env::var("OUTPOST_BENCH_HTTP_SINK").unwrap_or_default();
    let queue = std::env::var("OUTPOST_BENCH_QUEUE").unwrap_or_default();
    let mut config = bench_config(&format!(
        "type = \"http\"\nurl = \"{url}\"\nretry = {{ initial_ms = 100, max_ms = 1000 }}\n{extra}"
    ));
    config.push_str(&queue); // the config ends in [queue]
    config.push('\n');
    config
}

/// How a scenario loads the agent: `requests` requests of `events` events (~1 KB each)
/// over `connections` keep-alive connections, at `rate` requests/s (0: flat out).
#[derive(Debug, Clone, Copy)]
struct Load {
    requests: u64,
    events: usize,
    connections: usize,
    rate: u64,
    /// Over the agent's Unix socket instead of TCP.
    unix: bool,
}

impl Load {
    /// `requests` of `events` over `connections` TCP connections, as fast as taken.
    fn flat_out(requests: u64, events: usize, connections: usize) -> Load {
        Load {
            requests,
            events,
            connections,
            rate: 0,
            unix: false,
        }
    }
}

/// What a load measured of the agent that took it.
struct Measured {
    events: usize,
    accepted: u64,
    rejected: u64,
    /// From the first request to the last answer.
    elapsed: Duration,
    /// Whether every accepted message reached the receiver …
    delivered: bool,
    /// … and from the first request to then (or to the wait's end).
    total: Duration,
    /// p50 and p99 from ingest to the receiver, in ms, where the messages tell.
    latency: Option<(f64, f64)>,
    cpu: f64,
    idle_rss: f64,
    peak_rss: f64,
}

impl Measured {
    /// The rows every load reports.
    fn add_to(&self, r: &mut Report) {
        let per_s = |d: Duration| self.accepted as f64 * self.events as f64 / d.as_secs_f64();
        r.add("accepted events/s", format!("{:.0}", per_s(self.elapsed)));
        r.add("rejected requests", self.rejected);
        r.add(
            "delivered events/s (first POST→last)",
            if self.delivered {
                format!("{:.0}", per_s(self.total))
            } else {
                "incomplete".into()
            },
        );
        r.add(
            "first POST → last delivery",
            format!("{:.2} s", self.total.as_secs_f64()),
        );
        if let Some((p50, p99)) = self.latency {
            r.add(
                "latency p50 / p99 (ingest→receiver)",
                format!("{p50:.2} ms / {p99:.2} ms"),
            );
        }
        r.add("agent CPU seconds", format!("{:.2}", self.cpu));
        r.add(
            "agent CPU per request",
            format!("{:.1} µs", self.cpu * 1e6 / self.accepted.max(1) as f64),
        );
        r.add(
            "agent RSS idle / peak",
            format!("{:.1} MB / {:.1} MB", self.idle_rss, self.peak_rss),
        );
    }
}

/// Runs `load` through an agent with `config`, and
/// reports ingest and delivery figures.
fn run_load(name: &str, config: &str, tally: &Arc<Tally>, load: Load) {
    let Load {
        requests,
        events,
        connections,
        rate,
        unix,
    } = load;
    let agent = Agent::start(config);
    let idle_rss = agent.rss_mb();
    let cpu0 = agent.cpu_seconds();
    let payload = Arc::new(body(events, 1024));
    let first = Instant::now();
    let target = if unix {
        Target::Unix(agent.socket.clone())
    } else {
        Target::Tcp(agent.addr)
    };
    let (accepted, rejected, elapsed) =
        drive_target(&target, connections, requests, rate, &payload);
    let delivered = tally.wait(accepted, Duration::from_secs(600));
    let total = first.elapsed();
    let cpu = agent.cpu_seconds() - cpu0;
    let mut r = Report::new(name);
    r.add(
        "requests x events (event ~1 KB)",
        format!(
            "{requests} x {events}, {connections} connections over {}{}",
            if unix { "a Unix socket" } else { "TCP" },
            if rate > 0 {
                format!(", {rate} req/s offered")
            } else {
                String::new()
            }
        ),
    );
    Measured {
        events,
        accepted,
        rejected,
        elapsed,
        delivered,
        total,
        latency: Some(tally.percentiles()),
        cpu,
        idle_rss,
        peak_rss: agent.peak_rss_mb(),
    }
    .add_to(&mut r);
    // `flushes`: what agents before the journal reported.
    let queue = &agent.health()["queue"];
    let commits = queue["commits"]
        .as_u64()
        .or(queue["flushes"].as_u64())
        .unwrap_or(0);
    r.add(
        "group commits (requests per commit)",
        format!("{commits} ({:.1})", accepted as f64 / commits.max(1) as f64),
    );
    r.print();
    agent.stop();
}

// ---------------------------------------------------------------- scenarios

/// An HTTP-sink scenario: WASM sending plugin, lean HTTP receiver.
fn http_scenario(name: &str, load: Load) {
    let tally = Arc::new(Tally::default());
    let url = format!("http://{}/in", http_receiver(tally.clone()));
    run_load(name, &http_sink_config(&url), &tally, load);
}

/// The foundation issue's quick figure: 10,000 events in requests of 100.
fn smoke10k() {
    let load = Load {
        requests: 100,
        events: 100,
        connections: 1,
        rate: 0,
        unix: false,
    };
    http_scenario(
        "smoke10k: 10,000 events, requests of 100, WASM plugin, HTTP sink",
        load,
    );
}

/// (a) HTTP ingest → WASM sending plugin → queue → HTTP sink, max rate.
fn http_max() {
    let load = Load {
        requests: 3000,
        events: 100,
        connections: 8,
        rate: 0,
        unix: false,
    };
    http_scenario("a) http: max rate, WASM plugin, HTTP sink", load);
}

/// (a) with batched POSTs: up to 32 messages (3,200 events) a request.
fn http_batch() {
    let load = Load {
        requests: 3000,
        events: 100,
        connections: 8,
        rate: 0,
        unix: false,
    };
    let tally = Arc::new(Tally::default());
    let url = format!("http://{}/in", http_receiver(tally.clone()));
    let config = http_sink_config(&url).replace(
        "[queue]",
        "batch_max_messages = 32\nbatch_max_bytes = 8388608\n[queue]",
    );
    run_load(
        "a') http: max rate, WASM plugin, HTTP sink, 32 messages per POST",
        &config,
        &tally,
        load,
    );
}

/// Cameras often post one event per request: `requests` requests of `events` events,
/// 8 connections. Per-request costs (commit, plugin call, response) dominate.
fn http_small(events: usize, requests: u64) {
    let load = Load::flat_out(requests, events, 8);
    http_scenario(
        &format!("small requests: {requests} x {events} event(s), WASM plugin, HTTP sink"),
        load,
    );
}

/// Small requests the camera's way, each combination: 1 and 10 events per request,
/// 8 and 64 connections, `queue.sync` "always" and "interval" (100 ms), over TCP and
/// over the agent's Unix socket. `only_strict_tcp`: the cases an agent from before the
/// journal can run (it knows neither key), for a before/after in one run.
fn small_matrix(only_strict_tcp: bool) {
    for events in [1, 10] {
        let requests = if events == 1 { 30_000 } else { 10_000 };
        for connections in [8, 64] {
            for sync in ["always", "interval"] {
                for unix in [false, true] {
                    if only_strict_tcp && (sync != "always" || unix) {
                        continue;
                    }
                    let tally = Arc::new(Tally::default());
                    let url = format!("http://{}/in", http_receiver(tally.clone()));
                    let mut config = http_sink_config(&url);
                    if sync == "interval" {
                        config.push_str("sync = \"interval\"\nsync_interval_ms = 100\n");
                    }
                    if unix {
                        config = config.replacen(
                            "[agent]\n",
                            "[agent]\nlisten_unix = \"{SOCKET}\"\n",
                            1,
                        );
                    }
                    let load = Load {
                        requests,
                        events,
                        connections,
                        rate: 0,
                        unix,
                    };
                    run_load(
                        &format!(
                            "small: {events} event(s) per request, {connections} connections, \
                             sync {sync}, {}",
                            if unix { "Unix socket" } else { "TCP" }
                        ),
                        &config,
                        &tally,
                        load,
                    );
                }
            }
        }
    }
}

/// (d) A fixed 10,000 events/s: latency.
fn steady() {
    let load = Load {
        requests: 1000,
        events: 100,
        connections: 4,
        rate: 100,
        unix: false,
    };
    http_scenario("d) steady: 10,000 events/s for 10 s", load);
}

/// (b) The same into MQTT QoS 1 on a local mosquitto, one publish in flight (the
/// default, right for any broker).
fn mqtt_max() {
    mqtt_scenario(
        "b) mqtt: max rate, WASM plugin, MQTT QoS 1, max_in_flight = 1 (one message = one request of 100 events)",
        "",
        1,
        None,
    );
}

/// (b) with a sliding window of 16 (the default) on a default mosquitto (Nagle on).
fn mqtt_default_window() {
    mqtt_scenario(
        "b'') mqtt: as b), max_in_flight = 16 (sliding), default mosquitto",
        "",
        16,
        None,
    );
}

/// (b) with 16 publishes in flight, on a mosquitto that disables Nagle's algorithm on
/// its sockets (`set_tcp_nodelay true`).
fn mqtt_window() {
    mqtt_scenario(
        "b') mqtt: as b), max_in_flight = 16, mosquitto with set_tcp_nodelay true",
        "set_tcp_nodelay true",
        16,
        None,
    );
}

/// (b) over a long round trip: a relay delaying each direction by 5 ms, windows of 1
/// and 16.
fn mqtt_delay() {
    for window in [1, 16] {
        mqtt_scenario(
            &format!("b-delay) mqtt through a 5 ms (each way) relay, max_in_flight = {window}"),
            "",
            window,
            Some(Duration::from_millis(5)),
        );
    }
}

fn mqtt_scenario(name: &str, broker_config: &str, in_flight: usize, delay: Option<Duration>) {
    let dir = tempfile::tempdir().unwrap();
    let broker = outpost_tests::mosquitto::Mosquitto::start(
        dir.path(),
        &format!("max_queued_messages 1000000\n{broker_config}"),
    );
    let port = broker.port;
    let tally = Arc::new(Tally::default());
    mqtt_subscriber(port, tally.clone());
    let agent_port = match delay {
        Some(d) => delaying_relay(port, d),
        None => port,
    };
    let config = mqtt_sink_config(agent_port, in_flight, "");
    let load = match delay {
        Some(_) => Load {
            requests: 2000,
            events: 10,
            connections: 8,
            rate: 0,
            unix: false,
        },
        None => Load {
            requests: 2000,
            events: 100,
            connections: 8,
            rate: 0,
            unix: false,
        },
    };
    run_load(name, &config, &tally, load);
    drop(broker);
}

/// (b) the MQTT delivery path alone: 2,000 messages of 100 events queued while the
/// broker is down, then drained through windows of 1 and 16 on a default mosquitto.
/// Nothing else competes for the cores, so this is the window's own rate.
fn mqtt_drain() {
    for window in [1, 16] {
        let dir = tempfile::tempdir().unwrap();
        let mut broker =
            outpost_tests::mosquitto::Mosquitto::start(dir.path(), "max_queued_messages 1000000\n");
        let tally = Arc::new(Tally::default());
        mqtt_subscriber(broker.port, tally.clone());
        broker.stop();
        // The agent retries once a second, the subscriber every 50 ms: it is subscribed
        // again before the first publish.
        let agent = Agent::start(&mqtt_sink_config(
            broker.port,
            window,
            "retry = { initial_ms = 1000, max_ms = 1000 }",
        ));
        let payload = Arc::new(body(100, 1024));
        let (accepted, _, _) = drive_load(agent.addr, 8, 2000, 0, &payload);
        let cpu0 = agent.cpu_seconds();
        broker.restart();
        let drained = tally.wait(accepted, Duration::from_secs(600));
        let cpu = agent.cpu_seconds() - cpu0;
        let span = tally.span();
        let mut r = Report::new(&format!(
            "b-drain) mqtt: {accepted} queued messages of 100 events drained, max_in_flight = {window}, default mosquitto"
        ));
        r.add(
            "drained events/s (first delivery→last)",
            if drained {
                format!("{:.0}", accepted as f64 * 100.0 / span.as_secs_f64())
            } else {
                "incomplete".into()
            },
        );
        r.add(
            "first → last delivery",
            format!("{:.2} s", span.as_secs_f64()),
        );
        r.add("agent CPU seconds (drain)", format!("{cpu:.2}"));
        r.print();
    }
}

/// A TCP relay on a free port to 127.0.0.1:`upstream` that holds every chunk for
/// `delay` in each direction, in order: a long round trip on the loopback interface,
/// without privileges (no `tc netem`).
fn delaying_relay(upstream: u16, delay: Duration) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                continue;
            };
            for (from, to) in [(&client, &server), (&server, &client)] {
                let (from, to) = (from.try_clone().unwrap(), to.try_clone().unwrap());
                let _ = (from.set_nodelay(true), to.set_nodelay(true));
                pump(from, to, delay);
            }
        }
    });
    port
}

/// Copies `from` to `to`, each chunk `delay` after it was read.
fn pump(mut from: TcpStream, mut to: TcpStream, delay: Duration) {
    let (tx, rx) = std::sync::mpsc::channel::<(Instant, Vec<u8>)>();
    std::thread::spawn(move || {
        let mut buf = vec![0; 64 << 10];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0
                || tx
                    .send((Instant::now() + delay, buf[..n].to_vec()))
                    .is_err()
            {
                break;
            }
        }
    });
    std::thread::spawn(move || {
        for (due, chunk) in rx {
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            if to.write_all(&chunk).is_err() {
                break;
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Write);
    });
}

fn mqtt_subscriber(port: u16, tally: Arc<Tally>) {
    use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
    let mut o = MqttOptions::new("bench-sub", "127.0.0.1", port);
    o.set_max_packet_size(8 << 20, 8 << 20);
    o.set_keep_alive(Duration::from_secs(30));
    let (client, mut connection) = Client::new(o, 1000);
    // The subscriber acknowledges at once (no Nagle on its side): it is the yardstick,
    // not part of what is measured.
    let mut network = rumqttc::NetworkOptions::new();
    network.set_tcp_nodelay(true);
    connection.eventloop.set_network_options(network);
    let ready = Arc::new(AtomicBool::new(false));
    let flag = ready.clone();
    std::thread::spawn(move || {
        for event in connection.iter() {
            match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    let _ = client.subscribe("bench/#", QoS::AtLeastOnce);
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => flag.store(true, Ordering::Relaxed),
                Ok(Event::Incoming(Packet::Publish(p))) => tally.record(&p.payload),
                Ok(_) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    });
    while !ready.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// (c) 1,000,000 events accepted with the sink down, then the drain once it is up.
fn backlog() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/in");
    let agent = Agent::start(&http_sink_config(&url));
    let idle_rss = agent.rss_mb();
    let payload = Arc::new(body(100, 1024));
    let (accepted, rejected, elapsed) = drive_load(agent.addr, 8, 10_000, 0, &payload);
    let events = accepted * 100;
    std::thread::sleep(Duration::from_secs(1));
    let backlog_rss = agent.rss_mb();
    let disk = dir_bytes(&agent.data);
    let depth = agent.health()["queue"]["depth"].as_u64().unwrap_or(0);

    // Sink up, on the port the agent retries.
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    http_receiver_on(SocketAddr::from(([127, 0, 0, 1], port)), tally.clone());
    let drained = tally.wait(accepted, Duration::from_secs(1200));
    let drain = started.elapsed();
    let mut r = Report::new("c) backlog: 1,000,000 events with the sink down, then drain");
    r.add(
        "accepted events / rejected requests",
        format!("{events} / {rejected}"),
    );
    r.add(
        "accepted events/s (sink down)",
        format!("{:.0}", events as f64 / elapsed.as_secs_f64()),
    );
    r.add("queued messages (100 events each)", depth);
    r.add(
        "bytes on disk per queued event",
        format!("{:.0}", disk as f64 / events.max(1) as f64),
    );
    r.add(
        "drain events/s",
        if drained {
            format!("{:.0}", events as f64 / drain.as_secs_f64())
        } else {
            "incomplete".into()
        },
    );
    r.add(
        "drain time (includes retry backoff ≤ 1 s)",
        format!("{:.1} s", drain.as_secs_f64()),
    );
    r.add(
        "agent RSS idle / with backlog / peak",
        format!(
            "{idle_rss:.1} / {backlog_rss:.1} / {:.1} MB",
            agent.peak_rss_mb()
        ),
    );
    r.print();
    agent.stop();
}

/// Samples the largest size `dir` reaches until `stop` is set.
fn watch_dir(dir: PathBuf, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut peak = 0;
        while !stop.load(Ordering::Relaxed) {
            peak = peak.max(dir_bytes(&dir));
            std::thread::sleep(Duration::from_millis(250));
        }
        peak
    })
}

/// The data dir stays bounded over time: 5,000,000 events of ~1 KB in and out with the
/// sink up (requests of 100), then a 1,000,000-event backlog in requests of 10 (100,000
/// queue records) drained; sizes at the peak, after each phase, and after the
/// queue's compaction had its chance (it looks every 30 s).
fn disk_bounded() {
    let tally = Arc::new(Tally::default());
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/in");
    let agent = Agent::start(&http_sink_config(&url));
    let stop = Arc::new(AtomicBool::new(false));
    let peak = watch_dir(agent.data.clone(), Arc::clone(&stop));
    let mut r = Report::new("disk: the data dir over millions of events");
    http_receiver_on(SocketAddr::from(([127, 0, 0, 1], port)), tally.clone());
    let churn = Arc::new(body(100, 1024));
    let (accepted, _, took) = drive_load(agent.addr, 8, 50_000, 0, &churn);
    tally.wait(accepted, Duration::from_secs(1200));
    std::thread::sleep(Duration::from_secs(2));
    r.add(
        "5M events in and out (sink up)",
        format!("{:.0} s", took.as_secs_f64()),
    );
    r.add(
        "  data dir after",
        format!("{:.1} MB", dir_bytes(&agent.data) as f64 / 1e6),
    );
    stop.store(true, Ordering::Relaxed);
    r.add(
        "  data dir peak",
        format!("{:.1} MB", peak.join().unwrap() as f64 / 1e6),
    );

    agent.stop();

    // A backlog with the sink down (nothing listens on its port), then the drain.
    let port = free_port();
    let agent = Agent::start(&http_sink_config(&format!("http://127.0.0.1:{port}/in")));
    let stop = Arc::new(AtomicBool::new(false));
    let peak = watch_dir(agent.data.clone(), Arc::clone(&stop));
    drive_load(agent.addr, 8, 100_000, 0, &Arc::new(body(10, 1024)));
    let mb = |dir: &Path| format!("{:.1} MB", dir_bytes(dir) as f64 / 1e6);
    r.add("1M-event backlog (100,000 records)", mb(&agent.data));
    let backlog_tally = Arc::new(Tally::default());
    http_receiver_on(
        SocketAddr::from(([127, 0, 0, 1], port)),
        backlog_tally.clone(),
    );
    backlog_tally.wait(100_000, Duration::from_secs(1200));
    std::thread::sleep(Duration::from_secs(2));
    r.add("  data dir after the drain", mb(&agent.data));
    std::thread::sleep(Duration::from_secs(35));
    r.add("  … 35 s later (compaction)", mb(&agent.data));
    stop.store(true, Ordering::Relaxed);
    r.add(
        "  data dir peak",
        format!("{:.1} MB", peak.join().unwrap() as f64 / 1e6),
    );
    r.add(
        "queue reopens (compactions)",
        agent.health()["storage"]["reopens"].clone(),
    );
    r.print();
    agent.stop();
}

fn http_receiver_on(addr: SocketAddr, tally: Arc<Tally>) -> SocketAddr {
    receiver_on(addr, tally, None)
}

/// The lean receiver, over TLS with `tls` (a rustls server, as a cloud endpoint would
/// terminate it).
fn receiver_on(
    addr: SocketAddr,
    tally: Arc<Tally>,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> SocketAddr {
    let listener = TcpListener::bind(addr).unwrap();
    let local = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (tally, tls) = (tally.clone(), tls.clone());
            let _ = stream.set_nodelay(true);
            std::thread::spawn(move || match tls {
                None => serve_one(stream, &tally),
                Some(config) => {
                    let conn = rustls::ServerConnection::new(config).unwrap();
                    serve_one(rustls::StreamOwned::new(conn, stream), &tally)
                }
            });
        }
    });
    local
}

fn serve_one<S: Read + Write>(stream: S, tally: &Tally) {
    let mut reader = BufReader::with_capacity(256 * 1024, stream);
    let mut body = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0usize;
        let mut encoding = None;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end().to_ascii_lowercase();
            if h.is_empty() {
                break;
            }
            if let Some(v) = h.strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            } else if let Some(v) = h.strip_prefix("content-encoding:") {
                encoding = Some(v.trim().to_owned());
            }
        }
        body.resize(length, 0);
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        tally.wire_bytes.fetch_add(length as u64, Ordering::Relaxed);
        match encoding {
            None => tally.record(&body),
            Some(e) => tally.record(&outpost_tests::receiver::decode(Some(&e), body.clone())),
        }
        let w = reader.get_mut();
        if w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .and_then(|()| w.flush())
            .is_err()
        {
            return;
        }
    }
}
