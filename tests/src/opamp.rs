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
    /// Where packages are served from (`/files/<name>`).
    pub files: PathBuf,
    state: PathBuf,
}

impl OpampServer {
    /// Starts a server serving packages from `dir/files` and keeping its offers in
    /// `dir/opamp-state.json` (a restart keeps them, as a real server's database would).
    pub fn start(dir: &Path) -> OpampServer {
        let files = dir.join("files");
        std::fs::create_dir_all(&files).unwrap();
        let mut server = OpampServer {
            child: None,
            http_port: crate::free_port(),
            ws_port: crate::free_port(),
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
            .arg("--files")
            .arg(&self.files)
            .arg("--state")
            .arg(&self.state)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the OpAMP test server (tests/setup.sh tests makes its venv)");
        self.child = Some(child);
        let ws = self.ws_port;
        crate::wait_for("the OpAMP test server", Duration::from_secs(30), || {
            let up = self.try_get("/control/agents").is_some();
            let ws_up = std::net::TcpStream::connect(("127.0.0.1", ws)).is_ok();
            (up && ws_up).then_some(())
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

    /// `http://127.0.0.1:<port>/v1/opamp`.
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1/opamp", self.http_port)
    }

    /// `ws://127.0.0.1:<port>/v1/opamp`.
    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/v1/opamp", self.ws_port)
    }

    /// Where `/files/<name>` is downloaded from.
    pub fn file_url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/files/{name}", self.http_port)
    }

    fn addr(&self) -> std::net::SocketAddr {
        format!("127.0.0.1:{}", self.http_port).parse().unwrap()
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
