//! A real HTTP receiver (std threads, keep-alive) that records what it is sent and
//! answers with a status chosen per request by the test.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("received body is JSON")
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

type Responder = dyn Fn(&Received) -> u16 + Send + Sync;

struct Inner {
    /// Requests answered with 2xx (what the agent may consider delivered).
    accepted: Mutex<Vec<Received>>,
    /// Every request, whatever the answer.
    all: Mutex<Vec<Received>>,
    respond: Box<Responder>,
    stop: AtomicBool,
}

/// A running receiver.
pub struct Receiver {
    pub addr: SocketAddr,
    inner: Arc<Inner>,
    thread: Option<JoinHandle<()>>,
}

impl Receiver {
    /// Answers 200 to everything, on a free port.
    pub fn start() -> Receiver {
        Self::start_on(0, |_| 200)
    }

    /// Answers with `respond(request)`, on `port` (0: any free port).
    pub fn start_on(
        port: u16,
        respond: impl Fn(&Received) -> u16 + Send + Sync + 'static,
    ) -> Receiver {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind receiver");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let inner = Arc::new(Inner {
            accepted: Mutex::new(Vec::new()),
            all: Mutex::new(Vec::new()),
            respond: Box::new(respond),
            stop: AtomicBool::new(false),
        });
        let shared = Arc::clone(&inner);
        let thread = std::thread::spawn(move || {
            let mut connections = Vec::new();
            while !shared.stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let shared = Arc::clone(&shared);
                        connections.push(std::thread::spawn(move || serve(stream, &shared)));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            for c in connections {
                let _ = c.join();
            }
        });
        Receiver {
            addr,
            inner,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:<port>/<path>`
    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{}", self.addr, path.trim_start_matches('/'))
    }

    /// Requests answered with 2xx so far.
    pub fn accepted(&self) -> Vec<Received> {
        self.inner.accepted.lock().unwrap().clone()
    }

    /// All requests so far.
    pub fn all(&self) -> Vec<Received> {
        self.inner.all.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests were accepted.
    pub fn wait_accepted(&self, n: usize, timeout: Duration) -> Vec<Received> {
        crate::wait_for(&format!("{n} deliveries to {}", self.addr), timeout, || {
            let got = self.accepted();
            (got.len() >= n).then_some(got)
        })
    }

    /// Stops listening and closes every connection.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.inner.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn serve(stream: TcpStream, inner: &Inner) {
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let request = match read_request(&mut reader, inner) {
            Some(r) => r,
            None => return,
        };
        let status = (inner.respond)(&request);
        inner.all.lock().unwrap().push(request.clone());
        if (200..300).contains(&status) {
            inner.accepted.lock().unwrap().push(request);
        }
        let response = format!(
            "HTTP/1.1 {status} X\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

/// Reads one request; `None` when the connection closed or the receiver stops.
fn read_request(reader: &mut BufReader<TcpStream>, inner: &Inner) -> Option<Received> {
    let mut line = String::new();
    // Wait for the request line, checking for shutdown between read timeouts.
    loop {
        match reader.read_line(&mut line) {
            Ok(0) => return None,
            Ok(_) => break,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if inner.stop.load(Ordering::Relaxed) {
                    return None;
                }
            }
            Err(_) => return None,
        }
    }
    reader
        .get_ref()
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    let length: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    reader
        .get_ref()
        .set_read_timeout(Some(Duration::from_millis(50)))
        .ok()?;
    Some(Received {
        method,
        path,
        headers,
        body,
    })
}
