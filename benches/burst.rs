//! Burst and deep-queue benchmark: bookings against the Moodle simulator with
//! a real Moodle's latency, the service running as its own process (the built
//! binary, SQLite store), measured against the floor that Moodle's latency and
//! the tenant's `max_concurrency` allow.
//!
//! Run: `cargo bench --bench burst` (options after `--`: `--bookings N`
//! (10000), `--latency-ms MS` (50), `--naive N` (1000: the same mix with
//! batching off, and with it on, for the comparison), `--deep N` (100000),
//! `--only mix|course|naive|deep`).
//!
//! The floor: every new person needs a create call of their own; everything
//! else can go 50 to a call: `(new people + ⌈bookings/50⌉ enrolments +
//! ⌈people to look up/50⌉ look-ups) × latency ÷ max_concurrency`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use apit_moodle_sync::simulator::{CourseSeed, MoodleSimulator, UserSeed};
use apit_moodle_sync::store::{self, Link, LinkKind};
use futures::StreamExt;
use serde_json::{Value, json};

const TENANT: &str = "bench";
const SECRET: &str = "bench-secret";
const ADMIN: &str = "bench-admin";
const MAX_CONCURRENCY: usize = 4;
const PER_CALL: usize = 50;

struct Options {
    bookings: usize,
    latency: Duration,
    naive: usize,
    deep: usize,
    only: Option<String>,
}

fn options() -> Options {
    let mut o = Options {
        bookings: 10_000,
        latency: Duration::from_millis(50),
        naive: 1_000,
        deep: 100_000,
        only: None,
    };
    let args: Vec<String> = std::env::args().collect();
    for pair in args.windows(2) {
        let number = || pair[1].parse::<usize>().expect("a number");
        match pair[0].as_str() {
            "--bookings" => o.bookings = number(),
            "--latency-ms" => o.latency = Duration::from_millis(number() as u64),
            "--naive" => o.naive = number(),
            "--deep" => o.deep = number(),
            "--only" => o.only = Some(pair[1].clone()),
            _ => {}
        }
    }
    o
}

/// Who is booked: a new person, one in Moodle (matched by email), or one linked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Person {
    New,
    InMoodle,
    Linked,
}

impl Person {
    /// 30 % new, 30 % in Moodle but not linked, 40 % linked.
    fn of(i: usize) -> Person {
        match i % 10 {
            0..=2 => Person::New,
            3..=5 => Person::InMoodle,
            _ => Person::Linked,
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            Person::New => "N",
            Person::InMoodle => "M",
            Person::Linked => "L",
        }
    }
}

/// One run's setting.
struct Scenario {
    name: &'static str,
    bookings: usize,
    courses: usize,
    batch_window: &'static str,
}

/// What a run measured.
struct Figures {
    wall: Duration,
    floor: Duration,
    calls: usize,
    per_booking: BTreeMap<Person, f64>,
    peak_rss_mb: f64,
    /// The service's CPU time over the run, in cores (1.0 = one core busy).
    cpu_cores: f64,
    writebacks: usize,
}

#[tokio::main]
async fn main() {
    let o = options();
    println!(
        "burst benchmark: Moodle latency {:?}, max_concurrency {MAX_CONCURRENCY}, SQLite store; machine: {}",
        o.latency,
        machine()
    );
    let wants = |name: &str| o.only.as_deref().is_none_or(|only| only == name);
    if wants("mix") {
        let s = Scenario {
            name: "mix: 50 courses",
            bookings: o.bookings,
            courses: 50,
            batch_window: "5ms",
        };
        report(&s, &run(&s, o.latency).await);
    }
    if wants("course") {
        let s = Scenario {
            name: "one course",
            bookings: o.bookings,
            courses: 1,
            batch_window: "5ms",
        };
        report(&s, &run(&s, o.latency).await);
    }
    if wants("naive") {
        for (name, window) in [
            ("naive (batching off)", "0s"),
            ("batched, same size", "5ms"),
        ] {
            let s = Scenario {
                name,
                bookings: o.naive,
                courses: 50,
                batch_window: window,
            };
            report(&s, &run(&s, o.latency).await);
        }
    }
    if wants("deep") {
        deep_queue(o.deep, o.latency).await;
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    format!("{cores} cores, {cpu}")
}

fn report(s: &Scenario, f: &Figures) {
    let ratio = f.wall.as_secs_f64() / f.floor.as_secs_f64();
    let per = |p| f.per_booking.get(&p).copied().unwrap_or(0.0);
    println!(
        "{:<24} {:>6} bookings  wall {:>7.1} s  floor {:>6.1} s  ×{:<5.2}  calls {:>6} ({:.2}/booking; new {:.2}, in Moodle {:.3}, linked {:.3})  write-backs {}  peak RSS {:.0} MB  CPU {:.2} cores",
        s.name,
        s.bookings,
        f.wall.as_secs_f64(),
        f.floor.as_secs_f64(),
        ratio,
        f.calls,
        f.calls as f64 / s.bookings as f64,
        per(Person::New),
        per(Person::InMoodle),
        per(Person::Linked),
        f.writebacks,
        f.peak_rss_mb,
        f.cpu_cores,
    );
}

/// The floor of a burst (see the module doc).
fn floor(new: usize, bookings: usize, looked_up: usize, latency: Duration) -> Duration {
    let calls = new + bookings.div_ceil(PER_CALL) + looked_up.div_ceil(PER_CALL);
    latency * calls as u32 / MAX_CONCURRENCY as u32
}

/// The service, running as the built binary.
struct Service {
    child: Child,
    base: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Service {
    async fn start(
        moodle: &MoodleSimulator,
        callback: &str,
        db: &Path,
        extra: &str,
        dir: tempfile::TempDir,
    ) -> Service {
        let port = free_port();
        let config = dir.path().join("bench.toml");
        std::fs::write(
            &config,
            format!(
                r#"
listen = "127.0.0.1:{port}"
database_url = "sqlite://{db}"
admin_token = "{ADMIN}"
log_format = "json"
[worker]
poll_interval = "100ms"
[retry]
initial_backoff = "20s"
max_backoff = "10m"
[tenants.{TENANT}]
webhook_secret = "{SECRET}"
moodle_url = "{url}"
moodle_token = "{token}"
category_id = 5
max_concurrency = {MAX_CONCURRENCY}
{extra}
[tenants.{TENANT}.callback]
kind = "webhook"
url = "{callback}"
"#,
                db = db.display(),
                url = moodle.url(),
                token = moodle.token(),
            ),
        )
        .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_apit-moodle-sync"))
            .args(["serve", "--config"])
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the service");
        let service = Service {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .build()
                .unwrap(),
            _dir: dir,
        };
        for _ in 0..200 {
            if let Ok(r) = service
                .http
                .get(format!("{}/readyz", service.base))
                .send()
                .await
            {
                if r.status().is_success() {
                    return service;
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the service did not become ready");
    }

    /// POSTs every booking, 64 at a time; returns when each is answered 202,
    /// with the time at which every 1,000th was.
    async fn post_all(&self, bodies: Vec<Value>) -> Vec<Instant> {
        let url = format!("{}/v1/tenants/{TENANT}/events/booking-created", self.base);
        let done = Arc::new(AtomicUsize::new(0));
        let marks = Arc::new(std::sync::Mutex::new(Vec::new()));
        futures::stream::iter(bodies)
            .map(|body| {
                let (http, url, done, marks) =
                    (self.http.clone(), url.clone(), done.clone(), marks.clone());
                async move {
                    let r = http
                        .post(&url)
                        .bearer_auth(SECRET)
                        .json(&body)
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), reqwest::StatusCode::ACCEPTED);
                    if (done.fetch_add(1, Ordering::Relaxed) + 1) % 1_000 == 0 {
                        marks.lock().unwrap().push(Instant::now());
                    }
                }
            })
            .buffer_unordered(64)
            .collect::<Vec<()>>()
            .await;
        marks.lock().unwrap().clone()
    }

    /// Jobs by status, from `/metrics`.
    async fn statuses(&self) -> BTreeMap<String, u64> {
        let text = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let mut out = BTreeMap::new();
        for line in text.lines().filter(|l| l.starts_with("apit_jobs{")) {
            let status = line
                .split("status=\"")
                .nth(1)
                .and_then(|r| r.split('"').next());
            let value = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
            if let (Some(status), Some(value)) = (status, value) {
                *out.entry(status.to_string()).or_default() += value as u64;
            }
        }
        out
    }

    async fn wait_final(&self, n: usize) {
        loop {
            let s = self.statuses().await;
            let finished: u64 = ["succeeded", "skipped", "failed", "dead"]
                .iter()
                .map(|k| s.get(*k).copied().unwrap_or(0))
                .sum();
            if finished as usize >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every job's outcome, by paging through `/v1/jobs`.
    async fn jobs(&self) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor = String::new();
        loop {
            let page: Value = self
                .http
                .get(format!("{}/v1/jobs?limit=500{cursor}", self.base))
                .bearer_auth(ADMIN)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            out.extend(page["jobs"].as_array().cloned().unwrap_or_default());
            match page["next_cursor"].as_str() {
                Some(next) => cursor = format!("&cursor={next}"),
                None => return out,
            }
        }
    }

    fn peak_rss_mb(&self) -> f64 {
        proc_status(self.child.id(), "VmHWM:") / 1024.0
    }

    fn rss_mb(&self) -> f64 {
        proc_status(self.child.id(), "VmRSS:") / 1024.0
    }

    /// CPU seconds (user + system) the service has used so far.
    fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        // After the ")": state is 0, utime 11, stime 12; clock ticks are 100 per second on Linux.
        (ticks(11) + ticks(12)) / 100.0
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// A kB figure from `/proc/<pid>/status`.
fn proc_status(pid: u32, key: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A write-back receiver that counts what it is sent.
async fn receiver() -> (String, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let app = axum::Router::new().fallback(move || {
        let seen = seen.clone();
        async move {
            seen.fetch_add(1, Ordering::Relaxed);
            "ok"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/ids", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, count)
}

fn booking(i: usize, course: usize, person: Person, user: usize) -> Value {
    let id = format!("{}{user}", person.prefix());
    json!({
        "booking": {"id": format!("D{i}")},
        "course": {"id": format!("C{course}"), "label": format!("Course {course}"), "type": "classroom"},
        "user": {"id": id, "first_name": "Bench", "last_name": format!("Person {id}"),
                 "email": format!("{}@example.com", id.to_lowercase())}
    })
}

/// Courses in Moodle and linked; the people of the mix seeded and linked as
/// the mix says; then the burst.
async fn run(s: &Scenario, latency: Duration) -> Figures {
    let moodle = MoodleSimulator::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bench.db");
    let links = store::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    for c in 0..s.courses {
        let mut seed = CourseSeed::new(&format!("C{c}"));
        seed.idnumber = format!("apit-course-C{c}");
        let id = moodle.add_course(seed);
        let link = Link {
            moodle_id: id,
            last_sent: None,
        };
        links
            .put_link(TENANT, LinkKind::Course, &format!("C{c}"), &link)
            .await
            .unwrap();
    }
    let mut bodies = Vec::with_capacity(s.bookings);
    let (mut new, mut looked_up) = (0, 0);
    for i in 0..s.bookings {
        let person = Person::of(i);
        let id = format!("{}{i}", person.prefix());
        match person {
            Person::New => {
                new += 1;
                looked_up += 1;
            }
            Person::InMoodle => {
                looked_up += 1;
                moodle.add_user(UserSeed::new(
                    &id.to_lowercase(),
                    &format!("{}@example.com", id.to_lowercase()),
                ));
            }
            Person::Linked => {
                let uid = moodle.add_user(UserSeed::new(
                    &id.to_lowercase(),
                    &format!("{}@example.com", id.to_lowercase()),
                ));
                let link = Link {
                    moodle_id: uid,
                    last_sent: None,
                };
                links
                    .put_link(TENANT, LinkKind::User, &id, &link)
                    .await
                    .unwrap();
            }
        }
        bodies.push(booking(i, i % s.courses, person, i));
    }
    drop(links);
    moodle.set_latency(latency);
    let (callback, writebacks) = receiver().await;
    let extra = format!("batch_window = \"{}\"", s.batch_window);
    let service = Service::start(&moodle, &callback, &db, &extra, dir).await;
    moodle.reset_calls();

    let started = Instant::now();
    let cpu_before = service.cpu_seconds();
    service.post_all(bodies).await;
    service.wait_final(s.bookings).await;
    let expected_writebacks = s.bookings - s.bookings * 4 / 10;
    while writebacks.load(Ordering::Relaxed) < expected_writebacks
        && started.elapsed() < Duration::from_secs(3600)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let wall = started.elapsed();
    if std::env::var_os("BENCH_TRACE").is_some() {
        let calls = moodle.calls();
        let first = calls
            .first()
            .map(|c| c.at.duration_since(started))
            .unwrap_or_default();
        let last = calls
            .last()
            .map(|c| c.at.duration_since(started))
            .unwrap_or_default();
        let mut per_sec = vec![0usize; (wall.as_secs() + 1) as usize];
        for c in &calls {
            per_sec[c.at.duration_since(started).as_secs() as usize] += 1;
        }
        eprintln!(
            "first call {first:?}, last call {last:?}, wall {wall:?}; calls per second: {per_sec:?}"
        );
    }
    let cpu_cores = (service.cpu_seconds() - cpu_before) / wall.as_secs_f64();

    let jobs = service.jobs().await;
    let failed = jobs.iter().filter(|j| j["status"] != "succeeded").count();
    assert_eq!(failed, 0, "every booking succeeds");
    let mut shares: BTreeMap<Person, (f64, usize)> = BTreeMap::new();
    // A job's share of its calls: 1 for a call of its own, 1/n of a batch of n.
    for job in &jobs {
        let Some(calls) = job["calls"].as_array() else {
            continue;
        };
        let share: f64 = calls
            .iter()
            .map(|c| 1.0 / c["batch"].as_f64().unwrap_or(1.0))
            .sum();
        let person = person_of_job(job);
        let entry = shares.entry(person).or_default();
        entry.0 += share;
        entry.1 += 1;
    }
    let per_booking = shares
        .into_iter()
        .map(|(p, (sum, n))| (p, sum / n as f64))
        .collect();
    let figures = Figures {
        wall,
        floor: floor(new, s.bookings, looked_up, latency),
        calls: moodle.calls().len(),
        per_booking,
        peak_rss_mb: service.peak_rss_mb(),
        cpu_cores,
        writebacks: writebacks.load(Ordering::Relaxed),
    };
    assert_eq!(
        moodle.users().len(),
        s.bookings,
        "one Moodle user per person"
    );
    service.stop();
    figures
}

/// Which kind of person a job booked, from what its steps say it did.
fn person_of_job(job: &Value) -> Person {
    let steps = job["steps"].as_array().cloned().unwrap_or_default();
    let text: Vec<String> = steps
        .iter()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect();
    if text.iter().any(|s| s.starts_with("user created")) {
        Person::New
    } else if text
        .iter()
        .any(|s| s.starts_with("user matched") || s.starts_with("user found"))
    {
        Person::InMoodle
    } else {
        Person::Linked
    }
}

/// 100,000 bookings queued while Moodle is switched off: intake at depth versus
/// empty, the service's CPU while nothing is due, then the drain once Moodle is
/// back and the queue is due again (as an operator's bulk "run now" makes it).
async fn deep_queue(n: usize, latency: Duration) {
    let moodle = MoodleSimulator::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("deep.db");
    let url = format!("sqlite://{}", db.display());
    let links = store::connect(&url).await.unwrap();
    let courses = 100;
    for c in 0..courses {
        let mut seed = CourseSeed::new(&format!("C{c}"));
        seed.idnumber = format!("apit-course-C{c}");
        let id = moodle.add_course(seed);
        let link = Link {
            moodle_id: id,
            last_sent: None,
        };
        links
            .put_link(TENANT, LinkKind::Course, &format!("C{c}"), &link)
            .await
            .unwrap();
    }
    drop(links);
    // 1,000 people with 100 bookings each: one job per person is runnable, the
    // rest wait behind it (arrival order per person).
    let people = (n / 100).max(1);
    let bodies: Vec<Value> = (0..n)
        .map(|i| booking(i, i % courses, Person::New, i % people))
        .collect();
    moodle.set_latency(latency);
    // Web services off: every attempt is refused as a configuration problem and
    // retried slowly, so after the first attempts nothing is due for minutes.
    moodle.set_rest_disabled(true);
    let (callback, _) = receiver().await;
    let service = Service::start(&moodle, &callback, &db, "batch_window = \"5ms\"", dir).await;

    let started = Instant::now();
    let marks = service.post_all(bodies).await;
    let intake = started.elapsed();
    let rate = |from: usize, to: usize| {
        let span = marks[to].duration_since(marks[from]).as_secs_f64();
        1_000.0 * (to - from) as f64 / span
    };
    let early = rate(0, 5.min(marks.len() - 1));
    let late = rate(marks.len().saturating_sub(6), marks.len() - 1);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_deep = service.rss_mb();
    let cpu0 = service.cpu_seconds();
    let idle = Duration::from_secs(10);
    tokio::time::sleep(idle).await;
    let idle_cpu = (service.cpu_seconds() - cpu0) / idle.as_secs_f64();
    println!(
        "deep queue: {n} bookings queued behind an outage in {:.1} s; accepted/s {early:.0} at the start, {late:.0} at {}k queued (×{:.2}); CPU while nothing is due {:.1} % of a core; RSS {rss_deep:.0} MB",
        intake.as_secs_f64(),
        n / 1000,
        late / early,
        idle_cpu * 100.0
    );
    // Moodle is back, and the waiting jobs are made due at once.
    moodle.set_rest_disabled(false);
    let back = Instant::now();
    let cpu_back = service.cpu_seconds();
    moodle.reset_calls();
    make_due(&url).await;
    service.wait_final(n).await;
    let drained = back.elapsed();
    let drain_cpu = (service.cpu_seconds() - cpu_back) / drained.as_secs_f64();
    let drain_calls = moodle.calls().len();

    let drain_floor = floor(people, n, people, latency);
    println!(
        "deep queue: drained {n} jobs in {:.1} s once Moodle was back (floor {:.1} s, ×{:.2}; {drain_calls} Moodle calls; CPU {drain_cpu:.2} cores); peak RSS {:.0} MB",
        drained.as_secs_f64(),
        drain_floor.as_secs_f64(),
        drained.as_secs_f64() / drain_floor.as_secs_f64(),
        service.peak_rss_mb(),
    );
    service.stop();
}

/// Every queued job due now, as a bulk "run now" does.
async fn make_due(url: &str) {
    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    sqlx::query("UPDATE jobs SET next_attempt_at = $1 WHERE status = 'queued'")
        .bind(now)
        .execute(&mut conn)
        .await
        .unwrap();
}
