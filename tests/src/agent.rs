//! The real `outpost` binary, started with a config written for the test.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::client::{self, Response};

/// Where `cargo test --workspace` put the binary (next to the test's `deps/` dir), or
/// `$OUTPOST_BIN`.
pub fn binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("OUTPOST_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("outpost");
    assert!(
        bin.exists(),
        "{} not found: run the tests with `cargo test --workspace` (which builds it) \
         or set OUTPOST_BIN",
        bin.display()
    );
    bin
}

/// Startup can include compiling WASM plugins with an unoptimised wasmtime (or under
/// emulation).
pub const STARTUP: Duration = Duration::from_secs(180);

/// How to start the binary: directly, or through a runner such as qemu-user.
#[derive(Debug, Clone)]
pub struct Launcher {
    pub program: PathBuf,
    pub prefix: Vec<String>,
}

impl Launcher {
    /// The host build.
    pub fn native() -> Launcher {
        Launcher {
            program: binary(),
            prefix: Vec::new(),
        }
    }

    fn command(&self) -> Command {
        match self.prefix.split_first() {
            None => Command::new(&self.program),
            Some((runner, args)) => {
                let mut c = Command::new(runner);
                c.args(args).arg(&self.program);
                c
            }
        }
    }
}

/// A running agent. Killed (SIGKILL) on drop.
pub struct Agent {
    child: Option<Child>,
    launcher: Launcher,
    pub addr: SocketAddr,
    pub dir: PathBuf,
    pub config: PathBuf,
    log: PathBuf,
    /// Variables set for the agent (kept across restarts).
    env: Vec<(String, String)>,
}

/// Proxy variables of the test's own environment, never passed on: a developer's proxy
/// must not carry the agent's traffic to 127.0.0.1 receivers. Tests set them explicitly.
const PROXY_VARS: [&str; 8] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
];

impl Agent {
    /// Writes `config` to `<dir>/outpost.toml` and starts the agent on it. `{LISTEN}`,
    /// `{DATA}` and `{PLUGINS}` in the text become a free address, `<dir>/data` and the
    /// test plugin dir. Waits until `/v1/health` answers.
    pub fn start(dir: &Path, config: &str) -> Agent {
        Self::start_with(Launcher::native(), dir, config)
    }

    /// [`Agent::start`] through `launcher`.
    pub fn start_with(launcher: Launcher, dir: &Path, config: &str) -> Agent {
        Self::start_env(launcher, dir, config, &[])
    }

    /// [`Agent::start_with`], with environment variables `env` set for the agent.
    pub fn start_env(launcher: Launcher, dir: &Path, config: &str, env: &[(&str, &str)]) -> Agent {
        let addr: SocketAddr = format!("127.0.0.1:{}", crate::free_port()).parse().unwrap();
        let path = write_config(dir, config, addr);
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        let agent = Self::spawn_with(launcher, dir, path, addr, env.collect());
        agent.wait_ready();
        agent
    }

    /// The agent's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Replaces the config file (placeholders as in [`Agent::start`]); takes effect at the
    /// next [`Agent::restart`].
    pub fn rewrite_config(&self, config: &str) {
        write_config(&self.dir, config, self.addr);
    }

    /// Starts the agent again on the same dir and config (after a kill).
    pub fn restart(&mut self) {
        self.kill9();
        let next = Self::spawn_with(
            self.launcher.clone(),
            &self.dir,
            self.config.clone(),
            self.addr,
            std::mem::take(&mut self.env),
        );
        *self = next;
        self.wait_ready();
    }

    fn spawn_with(
        launcher: Launcher,
        dir: &Path,
        config: PathBuf,
        addr: SocketAddr,
        env: Vec<(String, String)>,
    ) -> Agent {
        let log = dir.join(format!(
            "agent-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let mut command = launcher.command();
        for var in PROXY_VARS {
            command.env_remove(var);
        }
        let child = command
            .envs(env.iter().map(|(k, v)| (k, v)))
            .args(["run", "--config"])
            .arg(&config)
            .current_dir(dir)
            .env_remove("OUTPOST_AUTH_TOKEN")
            .env("RUST_LOG", "info,outpost=debug,extism=off")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start outpost");
        Agent {
            child: Some(child),
            launcher,
            addr,
            dir: dir.to_owned(),
            config,
            log,
            env,
        }
    }

    /// Waits until the agent answers `/v1/health`; panics with its log if it exits.
    pub fn wait_ready(&self) {
        let deadline = std::time::Instant::now() + STARTUP;
        loop {
            if let Some(r) = client::try_request(self.addr, "GET", "/v1/health", &[], b"") {
                if r.status == 200 {
                    return;
                }
            }
            if std::time::Instant::now() > deadline {
                panic!("agent not ready after {STARTUP:?}; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The agent's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("agent running");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        child.wait().unwrap()
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        client::request(self.addr, method, path, headers, body)
    }

    /// `POST /v1/events` with `body`.
    pub fn post_events(&self, body: &serde_json::Value) -> Response {
        self.request(
            "POST",
            "/v1/events",
            &[("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        )
    }

    /// `GET path` as JSON (asserting 200).
    pub fn get_json(&self, path: &str) -> serde_json::Value {
        let r = self.request("GET", path, &[], b"");
        assert_eq!(r.status, 200, "GET {path}: {}", r.text());
        r.json()
    }

    /// `GET /metrics`, the value of one sample (exact name with labels).
    pub fn metric(&self, sample: &str) -> Option<f64> {
        let r = self.request("GET", "/metrics", &[], b"");
        r.text()
            .lines()
            .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill9();
        // A failed test shows what the agent said: a timeout alone does not say why.
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- the agent's log, last {} lines:", tail.len());
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// Writes the config file for a test.
pub fn write_config(dir: &Path, config: &str, addr: SocketAddr) -> PathBuf {
    let text = config
        .replace("{LISTEN}", &addr.to_string())
        .replace("{DATA}", &dir.join("data").display().to_string())
        .replace("{PLUGINS}", &crate::plugins_dir().display().to_string());
    let path = dir.join("outpost.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `outpost check` on `config` (placeholders as in [`Agent::start`]).
pub fn check(dir: &Path, config: &str) -> (std::process::ExitStatus, String) {
    let path = write_config(dir, config, "127.0.0.1:1".parse().unwrap());
    run_cli(dir, &["check", "--config", path.to_str().unwrap()])
}

/// Runs the binary with `args`, returning its status and stdout+stderr.
pub fn run_cli(dir: &Path, args: &[&str]) -> (std::process::ExitStatus, String) {
    let out = Command::new(binary())
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run outpost");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status, text)
}
