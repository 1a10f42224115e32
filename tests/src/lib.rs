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

/// A port that was free a moment ago, on 127.0.0.1.
pub fn free_port() -> u16 {
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
