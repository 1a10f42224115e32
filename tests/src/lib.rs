//! Harness for the end-to-end tests: the real `outpost` binary, a real HTTP(S)
//! receiver, a plain HTTP client, mosquitto, redis-server, RabbitMQ, tinyproxy, an OpAMP
//! server and test certificates, all on 127.0.0.1.

pub mod agent;
pub mod arm;
pub mod certs;
pub mod client;
pub mod fixture;
pub mod mosquitto;
pub mod opamp;
pub mod proxy;
pub mod rabbitmq;
pub mod receiver;
pub mod redis;
pub mod relay;
pub mod testfs;

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Directory holding the test builds of the WASM plugins (`<name>.wasm`).
pub fn plugins_dir() -> PathBuf {
    PathBuf::from(env!("OUTPOST_TEST_PLUGINS"))
}

/// A port that was free a moment ago, on 127.0.0.1, for a server the caller starts on
/// it (a broker, an agent, a receiver started again on the same port).
///
/// Taken below the kernel's ephemeral range: a port from that range (what binding to
/// port 0 gives) can go to any test's outgoing connection, or to another bind to port
/// 0, between this probe and the caller's bind — which failed a CI run. Below it, only
/// another caller of this function could take it, and within one test binary no port
/// is handed out twice.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    const FIRST: u32 = 10_000;
    if low > FIRST + 1_000 {
        let span = low - FIRST;
        // Each test binary starts somewhere else in the span (they run one after the
        // other, but a port may linger in TIME_WAIT).
        let start = std::process::id().wrapping_mul(7919) % span;
        for _ in 0..span {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let port = FIRST + (start + n) % span;
            if TcpListener::bind(("127.0.0.1", port as u16)).is_ok() {
                return port as u16;
            }
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `f` until it returns `Some`, or panics with `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}
