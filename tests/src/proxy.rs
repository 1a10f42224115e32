//! A real forward proxy for the tests: Debian's tinyproxy on a free 127.0.0.1 port,
//! logging every request line (so a test can tell a `CONNECT` from an absolute-form
//! request) to a file in the test's directory.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The `Via` name the proxy adds to the requests it forwards.
pub const VIA_NAME: &str = "outpost-test-proxy";

/// A running tinyproxy. Killed on drop.
pub struct Tinyproxy {
    child: Child,
    pub port: u16,
    log: PathBuf,
}

fn binary() -> &'static str {
    if Path::new("/usr/bin/tinyproxy").exists() {
        "/usr/bin/tinyproxy"
    } else {
        "tinyproxy"
    }
}

impl Tinyproxy {
    /// Starts a proxy with its config and log in `dir`; with `auth`, it wants those
    /// Basic credentials (user, password). No `ConnectPort` lines: `CONNECT` to any
    /// port is allowed.
    pub fn start(dir: &Path, auth: Option<(&str, &str)>) -> Tinyproxy {
        let port = crate::free_port();
        let conf = dir.join("tinyproxy.conf");
        let log = dir.join("tinyproxy.log");
        let auth = auth.map_or(String::new(), |(u, p)| format!("BasicAuth {u} {p}\n"));
        std::fs::write(
            &conf,
            format!(
                "Port {port}\nListen 127.0.0.1\nAllow 127.0.0.1\nTimeout 30\nMaxClients 50\n\
                 LogFile \"{}\"\nLogLevel Connect\nViaProxyName \"{VIA_NAME}\"\n{auth}",
                log.display()
            ),
        )
        .unwrap();
        // -d: stay in the foreground (no pid file, no daemon to clean up).
        let child = Command::new(binary())
            .arg("-d")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tinyproxy (apt-get install tinyproxy-bin)");
        crate::wait_for("tinyproxy to listen", Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", port)).ok()
        });
        Tinyproxy { child, port, log }
    }

    /// `http://127.0.0.1:<port>`, with `user:password@` if given.
    pub fn url(&self, auth: Option<(&str, &str)>) -> String {
        let auth = auth.map_or(String::new(), |(u, p)| format!("{u}:{p}@"));
        format!("http://{auth}127.0.0.1:{}", self.port)
    }

    /// The proxy's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
