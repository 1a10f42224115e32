//! The floor under one event per request (issue 23): what the same load costs a
//! server that does nothing but take it with hyper (the agent's HTTP server, built as
//! the agent builds it), parse the body and answer 202 — on the runtime thread that
//! read it, then handed to a blocking thread and back as plugin calls are: one
//! `spawn_blocking` per request, and a job queue drained by workers started only when
//! none runs, as the agent's pipeline does (`agent/src/pipeline/workers.rs`). No
//! plugin, no queue, no sink: the agent pays at least this per request.
//!
//! The server is this binary again (`bench floor-server <port> <mode>`), a process of
//! its own, so that its CPU is read from /proc as the agent's is. It inherits the
//! environment (`TOKIO_WORKER_THREADS` sets its runtime's workers, as the agent's),
//! and exits when its stdin closes, so it never outlives the bench.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io::Read;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use outpost_tests::free_port;
use tokio::sync::oneshot;

use super::{body, drive_target, proc_cpu_seconds, wait_listening, Report, Target};

/// What the floor server does with a request's body before it answers.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// Parses it on the runtime thread that read it.
    Parse,
    /// Parses it on a blocking thread of its own (`spawn_blocking`) and waits.
    SpawnBlocking,
    /// Queues it for blocking workers, as the agent's pipeline does, and waits.
    Workers,
}

const MODES: [Mode; 3] = [Mode::Parse, Mode::SpawnBlocking, Mode::Workers];

impl Mode {
    fn arg(self) -> &'static str {
        match self {
            Mode::Parse => "parse",
            Mode::SpawnBlocking => "spawn-blocking",
            Mode::Workers => "workers",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Mode::Parse => "parse on the runtime thread",
            Mode::SpawnBlocking => "parse on a blocking thread (a spawn_blocking per request)",
            Mode::Workers => "parse on blocking workers fed by a queue (as the agent)",
        }
    }
}

/// The scenario: the one-event load of `http-small` (30,000 requests, 8 connections)
/// against each mode of the floor server.
pub fn scenario() {
    let workers = std::env::var("TOKIO_WORKER_THREADS").unwrap_or_else(|_| "a per core".into());
    for mode in MODES {
        let server = FloorServer::start(mode);
        let pid = server.child.id();
        let payload = Arc::new(body(1, 1024));
        let cpu0 = proc_cpu_seconds(pid);
        let (accepted, rejected, elapsed) =
            drive_target(&Target::Tcp(server.addr), 8, 30_000, 0, &payload);
        let cpu = proc_cpu_seconds(pid) - cpu0;
        let mut r = Report::new(&format!(
            "floor: hyper, {}, 202 (no plugin, queue or sink; runtime workers: {workers}), \
             30000 x 1 event, 8 connections",
            mode.describe()
        ));
        r.add(
            "requests/s (this load generator)",
            format!("{:.0}", accepted as f64 / elapsed.as_secs_f64()),
        );
        r.add("rejected requests", rejected);
        r.add("server CPU seconds", format!("{cpu:.2}"));
        r.add(
            "server CPU per request",
            format!("{:.1} µs", cpu * 1e6 / accepted.max(1) as f64),
        );
        r.print();
    }
}

/// A floor server process on a free port; killed when dropped.
struct FloorServer {
    child: Child,
    addr: SocketAddr,
}

impl FloorServer {
    fn start(mode: Mode) -> FloorServer {
        let port = free_port();
        let child = Command::new(std::env::current_exe().expect("the bench binary"))
            .args(["floor-server", &port.to_string(), mode.arg()])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start the floor server");
        let server = FloorServer {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        wait_listening(server.addr, "the floor server");
        server
    }
}

impl Drop for FloorServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `bench floor-server <port> <mode>`: serves until its stdin closes.
pub fn serve(args: &[String]) {
    let (Some(port), Some(mode)) = (
        args.first().and_then(|p| p.parse::<u16>().ok()),
        args.get(1)
            .and_then(|m| MODES.into_iter().find(|mode| mode.arg() == m)),
    ) else {
        eprintln!("usage: bench floor-server <port> parse|spawn-blocking|workers");
        std::process::exit(2);
    };
    std::thread::spawn(|| {
        // The bench went away (or dropped us): so do we.
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        std::process::exit(0);
    });
    // As the agent's runtime: multi-threaded, a worker per core unless
    // TOKIO_WORKER_THREADS says otherwise.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let workers = Workers::new();
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind the floor server");
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10));
            let workers = workers.clone();
            let service = service_fn(move |request| answer(request, mode, workers.clone()));
            tokio::spawn(builder.serve_connection(TokioIo::new(stream), service));
        }
    });
}

fn parse(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body).is_ok()
}

async fn answer(
    request: Request<Incoming>,
    mode: Mode,
    workers: Workers,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return Ok(status(StatusCode::BAD_REQUEST, "{}")),
    };
    let parsed = match mode {
        Mode::Parse => parse(&body),
        Mode::SpawnBlocking => tokio::task::spawn_blocking(move || parse(&body))
            .await
            .unwrap_or(false),
        Mode::Workers => {
            let (tx, rx) = oneshot::channel();
            workers.submit(body, tx);
            rx.await.unwrap_or(false)
        }
    };
    Ok(if parsed {
        status(StatusCode::ACCEPTED, r#"{"accepted":1}"#)
    } else {
        status(StatusCode::BAD_REQUEST, r#"{"error":"invalid JSON"}"#)
    })
}

fn status(code: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = code;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

/// Bodies waiting to be parsed, and the workers that take them: the agent's policy
/// (a worker is started when none runs, or when bodies pile up and fewer than cores +
/// 1 run; a worker takes bodies until none waits).
#[derive(Clone)]
struct Workers {
    waiting: Arc<Mutex<Waiting>>,
    /// Worked out once, as the agent does: `available_parallelism` reads cgroup files,
    /// and per request it cost more than the hand-off measured.
    max: usize,
}

#[derive(Default)]
struct Waiting {
    bodies: VecDeque<(Bytes, oneshot::Sender<bool>)>,
    running: usize,
}

impl Workers {
    fn new() -> Workers {
        Workers {
            waiting: Arc::default(),
            max: std::thread::available_parallelism().map_or(1, |n| n.get()) + 1,
        }
    }

    fn submit(&self, body: Bytes, answer: oneshot::Sender<bool>) {
        let start = {
            let mut state = self.waiting.lock().unwrap();
            state.bodies.push_back((body, answer));
            let start = state.running == 0 || (state.bodies.len() > 1 && state.running < self.max);
            state.running += usize::from(start);
            start
        };
        if start {
            let workers = self.clone();
            tokio::task::spawn_blocking(move || workers.work());
        }
    }

    fn work(&self) {
        loop {
            let next = {
                let mut state = self.waiting.lock().unwrap();
                let next = state.bodies.pop_front();
                state.running -= usize::from(next.is_none());
                next
            };
            let Some((body, answer)) = next else { return };
            let _ = answer.send(parse(&body));
        }
    }
}
