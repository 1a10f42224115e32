//! The floor under one event per request (issue 23): what the same load costs a
//! server that does nothing but take it with hyper (the agent's HTTP server, built as
//! the agent builds it), parse the body and answer 202 — first on the runtime's
//! threads, then with the body handed to a blocking thread and back, as every plugin
//! call is. No plugin, no queue, no sink: any agent built on these parts pays at least
//! this per request, and the difference between the two is the price of running
//! plugin calls off the reactor.
//!
//! The server is this binary again (`bench floor-server <port> <mode>`), a process of
//! its own, so that its CPU is read from /proc as the agent's is.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use outpost_tests::free_port;

use super::{body, drive_target, listening, proc_cpu_seconds, Report, Target};

/// What the floor server does with a request's body before it answers.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// Parses it on the runtime thread that read it.
    Parse,
    /// Parses it on a blocking thread (`spawn_blocking`) and waits for that.
    HandOff,
}

impl Mode {
    fn arg(self) -> &'static str {
        match self {
            Mode::Parse => "parse",
            Mode::HandOff => "hand-off",
        }
    }

    fn from_arg(arg: &str) -> Option<Mode> {
        [Mode::Parse, Mode::HandOff]
            .into_iter()
            .find(|m| m.arg() == arg)
    }
}

/// The scenario: the one-event load of `http-small` (30,000 requests, 8 connections)
/// against each mode of the floor server.
pub fn scenario() {
    for mode in [Mode::Parse, Mode::HandOff] {
        let server = FloorServer::start(mode);
        let pid = server.child.id();
        let payload = Arc::new(body(1, 1024));
        let cpu0 = proc_cpu_seconds(pid);
        let (accepted, rejected, elapsed) =
            drive_target(&Target::Tcp(server.addr), 8, 30_000, 0, &payload);
        let cpu = proc_cpu_seconds(pid) - cpu0;
        let mut r = Report::new(&format!(
            "floor: hyper, parse {}, answer 202 (no plugin, queue or sink), 30000 x 1 event, 8 connections",
            match mode {
                Mode::Parse => "on the runtime thread",
                Mode::HandOff => "on a blocking thread (spawn_blocking)",
            }
        ));
        r.add(
            "requests/s",
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

/// A floor server process on a free port.
struct FloorServer {
    child: Child,
    addr: SocketAddr,
}

impl FloorServer {
    fn start(mode: Mode) -> FloorServer {
        let port = free_port();
        let child = Command::new(std::env::current_exe().expect("the bench binary"))
            .args(["floor-server", &port.to_string(), mode.arg()])
            .stdout(Stdio::null())
            .spawn()
            .expect("start the floor server");
        let addr = listening(port, "the floor server");
        FloorServer { child, addr }
    }
}

impl Drop for FloorServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `bench floor-server <port> <mode>`: serves until killed.
pub fn serve(args: &[String]) {
    let (Some(port), Some(mode)) = (
        args.first().and_then(|p| p.parse::<u16>().ok()),
        args.get(1).and_then(|m| Mode::from_arg(m)),
    ) else {
        eprintln!("usage: bench floor-server <port> parse|hand-off");
        std::process::exit(2);
    };
    // As the agent's runtime: multi-threaded, a worker per core.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
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
            let service = service_fn(move |request| answer(request, mode));
            tokio::spawn(builder.serve_connection(TokioIo::new(stream), service));
        }
    });
}

async fn answer(
    request: Request<Incoming>,
    mode: Mode,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return Ok(status(StatusCode::BAD_REQUEST, "{}")),
    };
    let parse = move || serde_json::from_slice::<serde_json::Value>(&body).is_ok();
    let parsed = match mode {
        Mode::Parse => parse(),
        Mode::HandOff => tokio::task::spawn_blocking(parse).await.unwrap_or(false),
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
