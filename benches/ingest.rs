//! Ingest benchmark: events accepted per second and p50/p99 acknowledgement
//! latency, through the real HTTP stack into the real SQLite store, while the
//! worker drains the jobs against an in-process fake Moodle.
//!
//! Run: `cargo bench --bench ingest` (options: `-- --events N --clients C --moodle-ms MS`).

use std::time::{Duration, Instant};

use apit_moodle_sync::config::Config;
use apit_moodle_sync::simulator::MoodleSimulator;
use serde_json::json;

struct Options {
    events: usize,
    clients: usize,
    moodle_ms: u64,
}

fn options() -> Options {
    let mut o = Options {
        events: 5000,
        clients: 32,
        moodle_ms: 35,
    };
    let args: Vec<String> = std::env::args().collect();
    for pair in args.windows(2) {
        match pair[0].as_str() {
            "--events" => o.events = pair[1].parse().expect("--events N"),
            "--clients" => o.clients = pair[1].parse().expect("--clients C"),
            "--moodle-ms" => o.moodle_ms = pair[1].parse().expect("--moodle-ms MS"),
            _ => {}
        }
    }
    o
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main]
async fn main() {
    let opts = options();
    let dir = tempfile::tempdir().unwrap();
    let moodle = MoodleSimulator::start().await;
    // The recorded rig's median Moodle latency (tests/fixtures/moodle/_timing.json):
    // the worker then drains at a real Moodle's pace instead of hogging the store.
    moodle.set_latency(Duration::from_millis(opts.moodle_ms));
    let toml = format!(
        r#"
database_url = "sqlite://{db}"
admin_token = "bench-admin"
[worker]
poll_interval = "50ms"
[tenants.bench]
webhook_secret = "bench-secret"
moodle_url = "{url}"
moodle_token = "{token}"
category_id = 5
"#,
        db = dir.path().join("bench.db").display(),
        url = moodle.url(),
        token = moodle.token(),
    );
    let config = Config::from_toml(&toml).unwrap();
    let store = apit_moodle_sync::store::connect(&config.database_url)
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/v1/tenants/bench/events/course-saved",
        listener.local_addr().unwrap()
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(apit_moodle_sync::app::run(config, store, listener, async {
        let _ = stopped.await;
    }));

    let http = reqwest::Client::new();
    let per_client = opts.events / opts.clients;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..opts.clients {
        let http = http.clone();
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_client);
            for n in 0..per_client {
                let body = json!({"course": {
                    "id": format!("C{c}-{n}"), "label": "Benchmark course", "type": "classroom",
                    "start": "2027-01-12 09:00", "end": "2027-01-14 17:00"}});
                let t = Instant::now();
                let r = http
                    .post(&url)
                    .bearer_auth("bench-secret")
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 202);
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let n = latencies.len();
    println!(
        "ingest: {n} events, {} clients, Moodle {} ms/call, {:.2}s: {:.0} events/s accepted; ack latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        opts.clients,
        opts.moodle_ms,
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies[n - 1].as_secs_f64() * 1e3,
    );
    let _ = stop.send(());
    let _ = server.await;
}
