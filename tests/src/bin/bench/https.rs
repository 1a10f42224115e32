//! Scenarios of the HTTP sink's field features: a) over HTTPS next to plain HTTP, and
//! what gzip and zstd bodies cost and save on seed-shaped events.

use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{
    bench_config, drive_varied_load, http_receiver, http_sink_config, receiver_on, run_load, Agent,
    Load, Report, Tally,
};
use outpost_tests::certs::Certs;

/// a) (3,000 requests of 100 ~1 KB events, 8 connections) over plain HTTP, then over
/// HTTPS to a local rustls receiver (TLS 1.3, verified against a test CA), in one run.
pub fn https_vs_http() {
    let load = Load {
        requests: 3000,
        events: 100,
        connections: 8,
        rate: 0,
        unix: false,
    };
    let tally = Arc::new(Tally::default());
    let url = format!("http://{}/in", http_receiver(tally.clone()));
    run_load(
        "a) http: max rate, HTTP sink (plain)",
        &http_sink_config(&url),
        &tally,
        load,
    );

    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::generate(dir.path());
    let tally = Arc::new(Tally::default());
    let tls = Some(certs.server_config("server", None));
    let addr = receiver_on("127.0.0.1:0".parse().unwrap(), tally.clone(), tls);
    let config = http_sink_config(&format!("https://{addr}/in")).replace(
        "[queue]",
        &format!("ca_file = \"{}\"\n[queue]", certs.path("ca.crt")),
    );
    run_load(
        "a-tls) https: as a), HTTPS sink (rustls, TLS 1.3)",
        &config,
        &tally,
        load,
    );
}

/// Bytes on the wire and agent CPU per event for `compression = none | gzip | zstd`,
/// one message per POST and 32 per POST, on seed-shaped events; then the time one
/// body takes to compress, in process.
pub fn compress() {
    // Distinct requests (more than a batch, and more than zstd's window holds), so
    // that neither a batch nor the compressor's window sees an event twice.
    let mut rng = Rng(0x5eed);
    let bodies: Arc<Vec<Vec<u8>>> =
        Arc::new((0..600).map(|_| seed_request(10, &mut rng)).collect());
    let per_event = bodies.iter().map(Vec::len).sum::<usize>() / bodies.len() / 10;
    let mut r = Report::new("compress: 5,000 requests x 10 seed-shaped events, 4 connections");
    r.add("request body / event", format!("{per_event} B"));
    for batch in [1, 32] {
        for codec in ["none", "gzip", "zstd"] {
            // The median of three runs by CPU per event: other load on the machine
            // moves single runs by ±20 %.
            let mut runs: Vec<_> = (0..3)
                .map(|_| compress_run(&bodies, codec, batch))
                .collect();
            runs.sort_by(|a, b| a.2.total_cmp(&b.2));
            let (wire, plain, cpu_us, rate) = runs[1];
            r.add(
                &format!("{codec}, {batch} msg/POST: wire B/event"),
                format!(
                    "{wire:.0} ({:.1} % of {plain:.0}); agent {cpu_us:.1} µs/event; {rate:.0} events/s",
                    100.0 * wire / plain
                ),
            );
        }
    }
    for size in [8 << 10, 100 << 10, 1 << 20] {
        let (len, gzip, zstd) = time_codecs(size);
        r.add(
            &format!("CPU to compress a {} KiB body: gzip-6 / zstd-3", len >> 10),
            format!(
                "{:.3} ms / {:.3} ms ({:.1} / {:.1} µs per KiB)",
                gzip * 1e3,
                zstd * 1e3,
                gzip * 1e6 * 1024.0 / len as f64,
                zstd * 1e6 * 1024.0 / len as f64
            ),
        );
    }
    r.print();
}

/// One run: (wire bytes per event, decoded bytes per event, agent CPU µs per event,
/// delivered events/s).
fn compress_run(bodies: &Arc<Vec<Vec<u8>>>, codec: &str, batch: usize) -> (f64, f64, f64, f64) {
    let (requests, events) = (5000u64, 10u64);
    let tally = Arc::new(Tally::default());
    let url = format!("http://{}/in", http_receiver(tally.clone()));
    let sink = format!(
        "type = \"http\"\nurl = \"{url}\"\ncompression = \"{codec}\"\nbatch_max_messages = {batch}"
    );
    let agent = Agent::start(&bench_config(&sink));
    let cpu0 = agent.cpu_seconds();
    let began = Instant::now();
    let (accepted, _, _) =
        drive_varied_load(&super::Target::Tcp(agent.addr), 4, requests, 0, bodies);
    let done = tally.wait(accepted, Duration::from_secs(600));
    let elapsed = began.elapsed().as_secs_f64();
    let cpu = agent.cpu_seconds() - cpu0;
    agent.stop();
    assert!(done, "{codec}: not all delivered");
    let n = (accepted * events) as f64;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    (
        load(&tally.wire_bytes) as f64 / n,
        load(&tally.body_bytes) as f64 / n,
        cpu * 1e6 / n,
        n / elapsed,
    )
}

/// CPU seconds to compress a JSON array of seed messages of at least `size` bytes
/// (its length first), with the agent's codecs and levels (the thread's own CPU time,
/// so other load on the machine does not count).
fn time_codecs(size: usize) -> (usize, f64, f64) {
    let mut rng = Rng(size as u64);
    let mut array = b"[".to_vec();
    while array.len() < size {
        if array.len() > 1 {
            array.push(b',');
        }
        array.extend(seed_request(10, &mut rng));
    }
    array.push(b']');
    let rounds = (50 << 20) / size;
    let per_body = |f: &dyn Fn() -> usize| {
        let cpu0 = thread_cpu_ns();
        for _ in 0..rounds {
            assert!(f() > 0);
        }
        (thread_cpu_ns() - cpu0) as f64 / 1e9 / rounds as f64
    };
    let gzip = per_body(&|| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        e.write_all(&array).unwrap();
        e.finish().unwrap().len()
    });
    let zstd = per_body(&|| zstd::bulk::compress(&array, 3).unwrap().len());
    (array.len(), gzip, zstd)
}

/// Nanoseconds this thread has run on a CPU (`/proc/thread-self/schedstat`).
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A small deterministic PRNG (xorshift64), so runs compare.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn uuid(&mut self) -> String {
        let (a, b) = (self.next(), self.next());
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            (b >> 48) | 0x8000,
            b & 0xffff_ffff_ffff
        )
    }
    fn unit(&mut self) -> f64 {
        (self.next() % 10_000) as f64 / 10_000.0
    }
}

/// An ingest request of `events` events shaped like a video-analytics handler's
/// (`POST /v1/events`; the plugin turns it into the seed's message): ids, times, a
/// detection with its box and attribute estimations, a match — varied values, as a
/// camera's events are, so compression is not flattered by repetition.
fn seed_request(events: usize, rng: &mut Rng) -> Vec<u8> {
    let events: Vec<String> = (0..events).map(|_| seed_event(rng)).collect();
    format!(
        "{{\"handler_id\":\"{}\",\"account_id\":\"{}\",\"events\":[{}]}}",
        rng.uuid(),
        rng.uuid(),
        events.join(",")
    )
    .into_bytes()
}

fn seed_event(rng: &mut Rng) -> String {
    let time = |rng: &mut Rng| {
        format!(
            "2026-11-28T{:02}:{:02}:{:02}.{:06}+00:00",
            rng.next() % 24,
            rng.next() % 60,
            rng.next() % 60,
            rng.next() % 1_000_000
        )
    };
    let emotions: Vec<String> = [
        "anger",
        "disgust",
        "fear",
        "happiness",
        "neutral",
        "sadness",
        "surprise",
    ]
    .iter()
    .map(|e| format!("\"{e}\":{:.4}", rng.unit()))
    .collect();
    format!(
        concat!(
            "{{\"event_id\":\"{}\",\"create_time\":\"{}\",\"end_time\":\"{}\",",
            "\"source\":\"cam-{:02}\",\"tags\":[\"entrance\",\"zone-{}\"],\"track_id\":\"{}\",",
            "\"location\":{{\"city\":\"Springfield\",\"area\":\"gate-{}\",\"geo_position\":",
            "{{\"longitude\":{:.6},\"latitude\":{:.6}}}}},",
            "\"face_detections\":[{{\"sample_id\":\"{}\",\"detect_time\":\"{}\",",
            "\"rect\":{{\"x\":{},\"y\":{},\"width\":{},\"height\":{}}},\"rect_score\":{:.4},",
            "\"attributes\":{{\"age\":{:.1},\"gender\":{:.4},\"emotions\":{{{}}},",
            "\"mask\":{{\"missing\":{:.4},\"medical_mask\":{:.4}}}}}}}],",
            "\"matches\":[{{\"label\":\"watchlist\",\"candidates\":[{{\"face_id\":\"{}\",",
            "\"similarity\":{:.4}}}]}}],\"external_id\":\"{}\"}}"
        ),
        rng.uuid(),
        time(rng),
        time(rng),
        rng.next() % 16,
        rng.next() % 8,
        rng.uuid(),
        rng.next() % 12,
        -180.0 + 360.0 * rng.unit(),
        -90.0 + 180.0 * rng.unit(),
        rng.uuid(),
        time(rng),
        rng.next() % 1920,
        rng.next() % 1080,
        40 + rng.next() % 200,
        40 + rng.next() % 200,
        rng.unit(),
        18.0 + 60.0 * rng.unit(),
        rng.unit(),
        emotions.join(","),
        rng.unit(),
        rng.unit(),
        rng.uuid(),
        rng.unit(),
        rng.uuid(),
    )
}
