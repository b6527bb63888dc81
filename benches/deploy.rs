//! Deployment benchmark: the release binary as separate processes, as it is
//! deployed — one or two replicas on SQLite or PostgreSQL, the Moodle simulator
//! as its own process (`simulate-moodle --latency`), a write-back receiver —
//! driven over HTTP by concurrent clients sending booking events round-robin
//! to the replicas (as a load balancer would).
//!
//! It prints: accepted events/s (all answered 202), end-to-end jobs/s (all
//! succeeded), each replica's RSS idle and at its peak, and the store's size
//! after the run and after pruning with the default retention 31 days later
//! (what stays for good: each entity's newest event, links, enrolments, the
//! newest write-back of each target).
//!
//! Run (PostgreSQL from DATABASE_URL_POSTGRES, default the CI server's):
//!   cargo bench --bench deploy -- --store sqlite --replicas 1 --events 5000
//!   cargo bench --bench deploy -- --store postgres --replicas 2 --events 5000
//!   cargo bench --bench deploy -- --store sqlite --backlog 100000   # RSS with a deep queue
//!   cargo bench --bench deploy -- --store sqlite --prune 50000      # admissions during a pass
//! Options: --clients C (32), --moodle-ms MS (35), --courses N (100).

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use apit_moodle_sync::config::RetentionConfig;
use apit_moodle_sync::store::{self, Cutoffs, PruneCursor, Space};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_apit-moodle-sync");
const TOKEN: &str = "0123456789abcdef0123456789abcdef";
const SECRET: &str = "bench-secret";
const ADMIN: &str = "bench-admin";

#[derive(Clone)]
struct Options {
    store: String,
    replicas: usize,
    events: usize,
    clients: usize,
    moodle_ms: u64,
    courses: usize,
    backlog: usize,
    prune: usize,
}

fn options() -> Options {
    let mut o = Options {
        store: "sqlite".into(),
        replicas: 1,
        events: 5000,
        clients: 32,
        moodle_ms: 35,
        courses: 100,
        backlog: 0,
        prune: 0,
    };
    let args: Vec<String> = std::env::args().collect();
    for pair in args.windows(2) {
        let v = &pair[1];
        match pair[0].as_str() {
            "--store" => o.store = v.clone(),
            "--replicas" => o.replicas = v.parse().expect("--replicas N"),
            "--events" => o.events = v.parse().expect("--events N"),
            "--clients" => o.clients = v.parse().expect("--clients C"),
            "--moodle-ms" => o.moodle_ms = v.parse().expect("--moodle-ms MS"),
            "--courses" => o.courses = v.parse().expect("--courses N"),
            "--backlog" => o.backlog = v.parse().expect("--backlog N"),
            "--prune" => o.prune = v.parse().expect("--prune N"),
            _ => {}
        }
    }
    assert!(
        o.store == "sqlite" || o.store == "postgres",
        "--store sqlite|postgres"
    );
    o
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    /// Resident set size now and at its peak, in MiB (from /proc).
    fn rss(&self) -> (f64, f64) {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.0.id())).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
                .unwrap_or(0.0)
                / 1024.0
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// CPU seconds used so far (user + system, from /proc).
    fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.0.id())).unwrap_or_default();
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, r)| r.split_whitespace().collect())
            .unwrap_or_default();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        // utime and stime are fields 14 and 15 (11 and 12 after the name).
        (ticks(11) + ticks(12)) / 100.0
    }
}

async fn wait_ready(http: &reqwest::Client, url: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(r) = http.get(url).send().await {
            if r.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{url} never became ready");
}

/// A write-back receiver that answers 200 to everything.
async fn receiver() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(|| async { "ok" });
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/moodle-ids")
}

/// Sum of `apit_jobs{…status="<status>"}` in a replica's /metrics.
async fn jobs_with_status(http: &reqwest::Client, base: &str, status: &str) -> usize {
    let Ok(r) = http.get(format!("{base}/metrics")).send().await else {
        return 0;
    };
    let text = r.text().await.unwrap_or_default();
    let needle = format!("status=\"{status}\"}}");
    text.lines()
        .filter(|l| l.starts_with("apit_jobs{") && l.contains(&needle))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as usize
}

/// Size of the store in MiB: the SQLite file after a checkpoint, or PostgreSQL's database.
async fn store_size(url: &str) -> f64 {
    use sqlx::Connection;
    let bytes = if let Some(path) = url.strip_prefix("sqlite://") {
        let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&mut c)
            .await
            .unwrap();
        let n = std::fs::metadata(path).unwrap().len();
        c.close().await.unwrap();
        n as f64
    } else {
        let mut c = sqlx::PgConnection::connect(url).await.unwrap();
        let n: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())")
            .fetch_one(&mut c)
            .await
            .unwrap();
        c.close().await.unwrap();
        n as f64
    };
    bytes / 1024.0 / 1024.0
}

#[tokio::main]
async fn main() {
    let o = options();
    if o.prune > 0 {
        return prune_while_admitting(&o).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(o.clients)
        .build()
        .unwrap();

    // The database.
    let (database_url, pg_admin) = if o.store == "sqlite" {
        (
            format!("sqlite://{}", dir.path().join("bench.db").display()),
            None,
        )
    } else {
        use sqlx::Connection;
        let admin = std::env::var("DATABASE_URL_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let name = format!("apit_bench_{}", uuid::Uuid::new_v4().simple());
        let mut c = sqlx::PgConnection::connect(&admin).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut c)
            .await
            .unwrap();
        c.close().await.unwrap();
        let base = admin.rsplit_once('/').unwrap().0;
        (format!("{base}/{name}"), Some((admin, name)))
    };

    // Moodle: the simulator as its own process. With --backlog it never
    // answers, so every admitted job stays queued (the worker's few slots hang).
    let moodle_port = free_port();
    let mut moodle_cmd = Command::new(BIN);
    moodle_cmd
        .args(["simulate-moodle", "--listen"])
        .arg(format!("127.0.0.1:{moodle_port}"))
        .args(["--token", TOKEN, "--latency"])
        .arg(format!("{}ms", o.moodle_ms));
    if o.backlog > 0 {
        moodle_cmd.args(["--fault", "hang"]);
    }
    let _moodle = Proc(
        moodle_cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let callback = receiver().await;

    // The replicas.
    let mut replicas = Vec::new();
    let mut bases = Vec::new();
    for i in 0..o.replicas {
        let port = free_port();
        let config = dir.path().join(format!("replica-{i}.toml"));
        std::fs::write(
            &config,
            format!(
                r#"listen = "127.0.0.1:{port}"
database_url = "{database_url}"
admin_token = "{ADMIN}"
[worker]
poll_interval = "50ms"
[tenants.demo]
webhook_secret = "{SECRET}"
moodle_url = "http://127.0.0.1:{moodle_port}"
moodle_token = "{TOKEN}"
category_id = 5
role_id = 5
[tenants.demo.callback]
kind = "webhook"
url = "{callback}"
bearer_token = "bench-callback"
"#
            ),
        )
        .unwrap();
        let child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        replicas.push(Proc(child));
        bases.push(format!("http://127.0.0.1:{port}"));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", moodle_port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "the simulator did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for base in &bases {
        wait_ready(&http, &format!("{base}/readyz")).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle: Vec<(f64, f64)> = replicas.iter().map(Proc::rss).collect();
    let cpu_before: Vec<f64> = replicas.iter().map(Proc::cpu_seconds).collect();

    let events = if o.backlog > 0 { o.backlog } else { o.events };
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..o.clients {
        let (http, bases, next) = (http.clone(), bases.clone(), next.clone());
        let courses = o.courses;
        clients.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= events {
                    return;
                }
                let course = i % courses;
                let body = json!({
                    "booking": {"id": format!("D{i}")},
                    "course": {"id": format!("C{course}"), "label": format!("Course {course}"),
                               "type": "classroom",
                               "start": "2027-01-12T09:00:00Z", "end": "2027-01-14T17:00:00Z"},
                    "user": {"id": format!("U{i}"), "first_name": "Ada", "last_name": format!("L{i}"),
                             "email": format!("user{i}@example.com")},
                });
                let base = &bases[i % bases.len()];
                let r = http
                    .post(format!("{base}/v1/tenants/demo/events/booking-created"))
                    .bearer_auth(SECRET)
                    .json(&body)
                    .send()
                    .await
                    .expect("the service answers");
                assert_eq!(r.status().as_u16(), 202, "{}", r.text().await.unwrap_or_default());
            }
        }));
    }
    for c in clients {
        c.await.unwrap();
    }
    let accepted_after = started.elapsed();
    let accepted_rate = events as f64 / accepted_after.as_secs_f64();
    let label = format!("{} ×{}", o.store, o.replicas);

    if o.backlog > 0 {
        let queued = jobs_with_status(&http, &bases[0], "queued").await;
        let rss: Vec<String> = replicas
            .iter()
            .zip(&idle)
            .map(|(p, (idle, _))| {
                let (now, peak) = p.rss();
                format!("idle {idle:.1} MiB, with the backlog {now:.1} MiB (peak {peak:.1})")
            })
            .collect();
        println!(
            "{label}: backlog of {events} admitted at {accepted_rate:.0} events/s; \
             {queued} queued; RSS {}; store {:.1} MiB",
            rss.join(" | "),
            store_size(&database_url).await
        );
    } else {
        let deadline = Instant::now() + Duration::from_secs(1800);
        loop {
            let done = jobs_with_status(&http, &bases[0], "succeeded").await;
            if done >= events {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "only {done} of {events} jobs succeeded"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let e2e = started.elapsed();
        let cpu: Vec<f64> = replicas
            .iter()
            .zip(&cpu_before)
            .map(|(p, before)| p.cpu_seconds() - before)
            .collect();
        let rss: Vec<String> = replicas
            .iter()
            .zip(&idle)
            .map(|(p, (idle, _))| {
                let (_, peak) = p.rss();
                format!("{idle:.1}→{peak:.1}")
            })
            .collect();
        // Let the last write-backs go out before measuring the store.
        tokio::time::sleep(Duration::from_secs(2)).await;
        drop(replicas);
        let size = store_size(&database_url).await;
        // 31 days later, with the default retention.
        let store = store::connect(&database_url).await.unwrap();
        let later = chrono::Utc::now() + chrono::TimeDelta::days(31);
        let cutoffs = Cutoffs::at(later, &RetentionConfig::default());
        let mut cursor = PruneCursor::default();
        let mut pruned = 0;
        loop {
            let step = store.prune(&cutoffs, cursor, 500).await.unwrap();
            pruned += step.pruned.total();
            match step.next {
                Some(c) => cursor = c,
                None => break,
            }
        }
        while let Space::Released { released, free } = store.release_space(4096).await.unwrap() {
            if released == 0 || free == 0 {
                break;
            }
        }
        drop(store);
        if database_url.starts_with("postgres") {
            use sqlx::Connection;
            let mut c = sqlx::PgConnection::connect(&database_url).await.unwrap();
            sqlx::query("VACUUM FULL").execute(&mut c).await.unwrap();
            c.close().await.unwrap();
        }
        let kept = store_size(&database_url).await;
        println!(
            "{label}: {events} bookings, {} clients, Moodle {} ms/call: accepted {accepted_rate:.0} events/s \
             ({:.1} s), end-to-end {:.0} jobs/s ({:.1} s); CPU {} s; RSS idle→peak MiB {}; \
             store {size:.1} MiB, {kept:.1} MiB after pruning ({pruned} rows) 31 days later",
            o.clients,
            o.moodle_ms,
            accepted_after.as_secs_f64(),
            events as f64 / e2e.as_secs_f64(),
            e2e.as_secs_f64(),
            cpu.iter()
                .map(|c| format!("{c:.1}"))
                .collect::<Vec<_>>()
                .join("+"),
            rss.join(" | "),
        );
    }

    if let Some((admin, name)) = pg_admin {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&admin).await.unwrap();
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut c)
            .await;
        let _ = c.close().await;
    }
}

/// A job for the store directly: a `course-saved` of `course` with body `n`.
fn course_job(course: usize, n: usize) -> store::NewJob {
    store::NewJob {
        id: uuid::Uuid::now_v7(),
        tenant: "demo".into(),
        kind: store::JobKind::parse("course-saved").unwrap(),
        event: json!({"course": {"id": format!("C{course}"), "label": format!("v{n}"),
                      "aims": "x".repeat(300)}}),
        keys: vec![format!("demo:course:C{course}:{n}")],
        idempotency_key: Some(format!("wf-{course}-{n}")),
        entity: format!("course-saved:C{course}"),
        body_hash: format!("{course}-{n}"),
    }
}

/// `--prune N`: N finished, superseded jobs (with attempts and keys) 40 days
/// old in the store; then one pruning pass with the default settings while a
/// client admits events back to back. Prints the pass's time and the
/// admissions' latency before and during it.
async fn prune_while_admitting(o: &Options) {
    use apit_moodle_sync::config::RetentionConfig;
    use apit_moodle_sync::metrics::Metrics;
    use apit_moodle_sync::run::retention::Pruner;
    let dir = tempfile::tempdir().unwrap();
    let url = if o.store == "sqlite" {
        format!("sqlite://{}", dir.path().join("prune.db").display())
    } else {
        std::env::var("DATABASE_URL_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
    };
    assert!(
        o.store == "sqlite",
        "--prune runs on SQLite (its single writer is the case that matters)"
    );
    let store = store::connect(&url).await.unwrap();
    let old = chrono::Utc::now() - chrono::TimeDelta::days(40);
    let lease = Duration::from_secs(60);
    let done = |status| store::Finish {
        status,
        next_attempt_at: None,
        error: None,
        outcome: Some(json!({"steps": ["course updated"]})),
        calls: Vec::new(),
    };
    let filled = Instant::now();
    // 10 versions of each course: 9 superseded per course.
    for n in 0..o.prune {
        store
            .admit(course_job(n / 10, n), false, old)
            .await
            .unwrap();
        if n % 500 == 499 || n + 1 == o.prune {
            loop {
                let jobs = store.claim("demo", old, lease, 500).await.unwrap();
                if jobs.is_empty() {
                    break;
                }
                for j in jobs {
                    store
                        .finish(j.id, j.attempts, old, done(store::JobStatus::Succeeded))
                        .await
                        .unwrap();
                }
            }
        }
    }
    eprintln!(
        "filled {} jobs in {:.1} s",
        o.prune,
        filled.elapsed().as_secs_f64()
    );

    async fn admit_for(
        store: &std::sync::Arc<dyn store::Store>,
        stop: &std::sync::atomic::AtomicBool,
        base: usize,
    ) -> Vec<Duration> {
        let mut latencies = Vec::new();
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            let t = Instant::now();
            store
                .admit(
                    course_job(1_000_000 + base + n, n),
                    false,
                    chrono::Utc::now(),
                )
                .await
                .unwrap();
            latencies.push(t.elapsed());
            n += 1;
        }
        latencies
    }
    fn summary(mut l: Vec<Duration>) -> String {
        l.sort();
        let p = |q: f64| l[((l.len() - 1) as f64 * q) as usize].as_secs_f64() * 1000.0;
        format!(
            "{} admissions, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            l.len(),
            p(0.5),
            p(0.99),
            p(1.0)
        )
    }
    let stop = std::sync::atomic::AtomicBool::new(false);
    let before = {
        let admitting = admit_for(&store, &stop, 0);
        let timer = async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            stop.store(true, Ordering::Relaxed);
        };
        tokio::join!(admitting, timer).0
    };
    stop.store(false, Ordering::Relaxed);
    let pruner = Pruner {
        store: store.clone(),
        config: RetentionConfig::default(),
        metrics: std::sync::Arc::new(Metrics::new()),
    };
    let (_tx, mut rx) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let (during, report) = tokio::join!(admit_for(&store, &stop, 500_000), async {
        let report = pruner.pass(&mut rx).await.unwrap();
        stop.store(true, Ordering::Relaxed);
        report
    });
    let took = started.elapsed().as_secs_f64();
    println!(
        "sqlite: pruned {} jobs ({} rows) and released {} pages in {took:.1} s ({:.0} jobs/s); \
         admissions before: {}; during the pass: {}",
        report.pruned.jobs,
        report.pruned.total(),
        report.released_pages,
        report.pruned.jobs as f64 / took,
        summary(before),
        summary(during),
    );
}
