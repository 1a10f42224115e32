//! A real HTTP(S) receiver (std threads, keep-alive) that records what it is sent and
//! answers with a status chosen per request by the test.
//!
//! Over TLS it is a rustls server (`Receiver::start_tls*`), optionally demanding a
//! client certificate. Bodies sent with `Content-Encoding: gzip | zstd` are decoded;
//! the size on the wire is kept next to them.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rustls::{ServerConfig, ServerConnection, StreamOwned};

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// The body, decoded if it came with a `Content-Encoding` the receiver knows.
    pub body: Vec<u8>,
    /// The body's size on the wire (compressed, if it was).
    pub wire_len: usize,
    /// Which connection it came on (numbered from 0 in accept order).
    pub connection: usize,
    /// The server name the client asked for (TLS SNI).
    pub sni: Option<String>,
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
    connections: AtomicUsize,
}

/// A running receiver.
pub struct Receiver {
    pub addr: SocketAddr,
    tls: bool,
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
        Self::listen(port, None, Box::new(respond))
    }

    /// HTTPS with `tls`, answering 200 to everything, on a free port.
    pub fn start_tls(tls: Arc<ServerConfig>) -> Receiver {
        Self::start_tls_on(0, tls, |_| 200)
    }

    /// HTTPS with `tls`, answering `respond(request)`, on `port` (0: any free port).
    pub fn start_tls_on(
        port: u16,
        tls: Arc<ServerConfig>,
        respond: impl Fn(&Received) -> u16 + Send + Sync + 'static,
    ) -> Receiver {
        Self::listen(port, Some(tls), Box::new(respond))
    }

    fn listen(port: u16, tls: Option<Arc<ServerConfig>>, respond: Box<Responder>) -> Receiver {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind receiver");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let inner = Arc::new(Inner {
            accepted: Mutex::new(Vec::new()),
            all: Mutex::new(Vec::new()),
            respond,
            stop: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
        });
        let shared = Arc::clone(&inner);
        let is_tls = tls.is_some();
        let thread = std::thread::spawn(move || {
            let mut connections = Vec::new();
            while !shared.stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (shared, tls) = (Arc::clone(&shared), tls.clone());
                        connections.push(std::thread::spawn(move || accept(stream, tls, &shared)));
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
            tls: is_tls,
            inner,
            thread: Some(thread),
        }
    }

    /// `http(s)://127.0.0.1:<port>/<path>`
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}/{}", self.addr, path.trim_start_matches('/'))
    }

    /// Requests answered with 2xx so far.
    pub fn accepted(&self) -> Vec<Received> {
        self.inner.accepted.lock().unwrap().clone()
    }

    /// All requests so far.
    pub fn all(&self) -> Vec<Received> {
        self.inner.all.lock().unwrap().clone()
    }

    /// Connections accepted so far (including those whose TLS handshake failed).
    pub fn connections(&self) -> usize {
        self.inner.connections.load(Ordering::Relaxed)
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

/// A connection the receiver reads requests from: plain TCP or TLS over it.
trait Wire: Read + Write {
    fn tcp(&self) -> &TcpStream;
    fn sni(&self) -> Option<String> {
        None
    }
}

impl Wire for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl Wire for StreamOwned<ServerConnection, TcpStream> {
    fn tcp(&self) -> &TcpStream {
        &self.sock
    }
    fn sni(&self) -> Option<String> {
        self.conn.server_name().map(str::to_owned)
    }
}

fn accept(stream: TcpStream, tls: Option<Arc<ServerConfig>>, inner: &Inner) {
    let id = inner.connections.fetch_add(1, Ordering::Relaxed);
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    match tls {
        None => serve(stream, id, inner),
        Some(config) => {
            let conn = ServerConnection::new(config).expect("TLS server connection");
            serve(StreamOwned::new(conn, stream), id, inner);
        }
    }
}

fn serve<S: Wire>(stream: S, connection: usize, inner: &Inner) {
    let mut reader = BufReader::new(stream);
    loop {
        let request = match read_request(&mut reader, inner) {
            Some(mut r) => {
                r.connection = connection;
                r.sni = reader.get_ref().sni();
                r
            }
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
        let writer = reader.get_mut();
        if writer
            .write_all(response.as_bytes())
            .and_then(|()| writer.flush())
            .is_err()
        {
            return;
        }
    }
}

/// Reads one request; `None` when the connection closed (or its TLS handshake failed)
/// or the receiver stops.
fn read_request<S: Wire>(reader: &mut BufReader<S>, inner: &Inner) -> Option<Received> {
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
    let timeout = |reader: &BufReader<S>, t| reader.get_ref().tcp().set_read_timeout(Some(t));
    timeout(reader, Duration::from_secs(10)).ok()?;
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
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let length: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut raw = vec![0; length];
    reader.read_exact(&mut raw).ok()?;
    timeout(reader, Duration::from_millis(50)).ok()?;
    let wire_len = raw.len();
    let body = decode(header("content-encoding"), raw);
    Some(Received {
        method,
        path,
        headers,
        body,
        wire_len,
        connection: 0,
        sni: None,
    })
}

/// `raw` decoded per `Content-Encoding` (gzip, zstd); unchanged otherwise, or if it
/// does not decode (the test then sees the bytes that came).
pub fn decode(encoding: Option<&str>, raw: Vec<u8>) -> Vec<u8> {
    let decoded = match encoding {
        Some("gzip") => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&raw[..])
                .read_to_end(&mut out)
                .map(|_| out)
        }
        Some("zstd") => zstd::stream::decode_all(&raw[..]),
        _ => return raw,
    };
    decoded.unwrap_or(raw)
}
