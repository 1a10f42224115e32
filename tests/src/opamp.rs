//! The OpAMP test server (`tests/fleet/opamp_server.py`, on OpenTelemetry's generated
//! protobuf classes) on free 127.0.0.1 ports, and the JSON calls that drive it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::client::try_request;

/// The venv `tests/setup.sh tests` makes, with `opentelemetry-opamp-client` and
/// `websockets`.
pub fn python() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".opamp-venv/bin/python")
}

/// A running test server. Killed on drop.
pub struct OpampServer {
    child: Option<Child>,
    pub http_port: u16,
    pub ws_port: u16,
    /// Plain HTTP: the tests' JSON calls and the package downloads.
    pub control_port: u16,
    /// `--tls-cert`, `--tls-key` and maybe `--client-ca`: HTTPS and WSS.
    tls: Vec<String>,
    /// Where packages are served from (`/files/<name>`).
    pub files: PathBuf,
    state: PathBuf,
}

impl OpampServer {
    /// Starts a server serving packages from `dir/files` and keeping its offers in
    /// `dir/opamp-state.json` (a restart keeps them, as a real server's database would).
    pub fn start(dir: &Path) -> OpampServer {
        Self::start_with_tls(dir, Vec::new())
    }

    /// [`start`](Self::start), serving OpAMP over HTTPS and WSS with the test
    /// certificates' `server` (IP 127.0.0.1, issued by `ca`); with `mutual`, a client
    /// certificate issued by `ca` is required.
    pub fn start_tls(dir: &Path, certs: &crate::certs::Certs, mutual: bool) -> OpampServer {
        let mut tls = vec![
            "--tls-cert".to_owned(),
            certs.path("server.crt"),
            "--tls-key".to_owned(),
            certs.path("server.key"),
        ];
        if mutual {
            tls.extend(["--client-ca".to_owned(), certs.path("ca.crt")]);
        }
        Self::start_with_tls(dir, tls)
    }

    fn start_with_tls(dir: &Path, tls: Vec<String>) -> OpampServer {
        let files = dir.join("files");
        std::fs::create_dir_all(&files).unwrap();
        let mut server = OpampServer {
            child: None,
            http_port: crate::free_port(),
            ws_port: crate::free_port(),
            control_port: crate::free_port(),
            tls,
            files,
            state: dir.join("opamp-state.json"),
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fleet/opamp_server.py");
        let child = Command::new(python())
            .arg(script)
            .args(["--http-port", &self.http_port.to_string()])
            .args(["--ws-port", &self.ws_port.to_string()])
            .args(["--control-port", &self.control_port.to_string()])
            .args(&self.tls)
            .arg("--files")
            .arg(&self.files)
            .arg("--state")
            .arg(&self.state)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the OpAMP test server (tests/setup.sh tests makes its venv)");
        self.child = Some(child);
        let (ws, http) = (self.ws_port, self.http_port);
        crate::wait_for("the OpAMP test server", Duration::from_secs(30), || {
            let up = self.try_get("/control/agents").is_some();
            let ws_up = std::net::TcpStream::connect(("127.0.0.1", ws)).is_ok();
            let http_up = std::net::TcpStream::connect(("127.0.0.1", http)).is_ok();
            (up && ws_up && http_up).then_some(())
        });
    }

    /// Kills the server (what a crash does).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same ports, with the offers it had.
    pub fn start_again(&mut self) {
        self.spawn();
    }

    /// `http://127.0.0.1:<port>/v1/opamp` (`https://` with TLS).
    pub fn http_url(&self) -> String {
        let scheme = if self.tls.is_empty() { "http" } else { "https" };
        format!("{scheme}://127.0.0.1:{}/v1/opamp", self.http_port)
    }

    /// `ws://127.0.0.1:<port>/v1/opamp` (`wss://` with TLS).
    pub fn ws_url(&self) -> String {
        let scheme = if self.tls.is_empty() { "ws" } else { "wss" };
        format!("{scheme}://127.0.0.1:{}/v1/opamp", self.ws_port)
    }

    /// Where `/files/<name>` is downloaded from.
    pub fn file_url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/files/{name}", self.control_port)
    }

    fn addr(&self) -> std::net::SocketAddr {
        format!("127.0.0.1:{}", self.control_port).parse().unwrap()
    }

    fn try_get(&self, path: &str) -> Option<Value> {
        let r = try_request(self.addr(), "GET", path, &[], b"")?;
        (r.status == 200).then(|| r.json())
    }

    fn post(&self, path: &str, body: &Value) -> Value {
        let r = try_request(
            self.addr(),
            "POST",
            path,
            &[("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        )
        .expect("the OpAMP test server answers");
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        r.json()
    }

    /// Every agent the server heard from, by instance uid (hex): its message count,
    /// sequence numbers, and the last of each part it reported.
    pub fn agents(&self) -> serde_json::Map<String, Value> {
        match self.try_get("/control/agents") {
            Some(Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        }
    }

    /// The one agent's view (none yet: `None`).
    pub fn agent(&self) -> Option<Value> {
        self.agents().into_iter().next().map(|(_, v)| v)
    }

    /// Offers `toml` as the remote config; returns its hash (hex).
    pub fn offer_config(&self, toml: &str) -> String {
        self.post("/control/config", &json!({ "toml": toml }))["hash"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Offers packages: `name → {version, url, sha256, signature}` (hex).
    pub fn offer_packages(&self, packages: Value) {
        self.post("/control/packages", &json!({ "packages": packages }));
    }

    /// The next answer is garbage instead of protobuf.
    pub fn send_garbage(&self) {
        self.post("/control/garbage", &json!({}));
    }

    /// Answers OpAMP requests with 503 and `Retry-After: 1` for `seconds`.
    pub fn throttle(&self, seconds: u64) {
        self.post("/control/throttle", &json!({ "seconds": seconds }));
    }

    /// Each package download takes about `seconds` from now on (a slow link).
    pub fn slow_files(&self, seconds: u64) {
        self.post("/control/slow_files", &json!({ "seconds": seconds }));
    }

    /// How many downloads so far resumed a partial file (sent a `Range` header).
    pub fn range_requests(&self) -> u64 {
        self.try_get("/control/ranges")
            .map_or(0, |v| v["ranges"].as_u64().unwrap_or(0))
    }

    /// How many requests got a 503 so far.
    pub fn throttled(&self) -> u64 {
        self.try_get("/control/throttled")
            .map_or(0, |v| v["throttled"].as_u64().unwrap_or(0))
    }

    /// The next answer asks for a full state report.
    pub fn ask_full_state(&self) {
        self.post("/control/full_state", &json!({}));
    }
}

impl Drop for OpampServer {
    fn drop(&mut self) {
        self.stop();
    }
}
