//! The store goes away (issue 10): PostgreSQL unreachable behind a TCP proxy
//! the test cuts (the machine's shared server is never touched), and SQLite's
//! disk full (simulated with `PRAGMA max_page_count`, see
//! `SqliteStore::set_max_page_count`). Under a steady trickle of events:
//! answers are 202 (stored) or 503 problem+json with `Retry-After`, never 500;
//! the claim loops back off (the pause itself is measured in `run::tests`);
//! everything resumes by itself; every accepted event runs.
//!
//! The outages last seconds, not the 30 s of the issue: the behaviour does not
//! change with the length once the store timeout (1 s here) has passed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apit_moodle_sync::store::{SqliteStore, Store};
use reqwest::StatusCode;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::support::*;

/// What the proxy does with connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Forward to the real server.
    Forward,
    /// Close every connection at once (the server is down).
    Reject,
    /// Accept and never answer (a network partition).
    Blackhole,
}

/// A TCP proxy in front of the PostgreSQL server; changing its mode drops
/// every connection it holds.
struct Proxy {
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
    connects: Arc<AtomicUsize>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (mode, modes) = watch::channel(Mode::Forward);
        let connects = Arc::new(AtomicUsize::new(0));
        let counter = connects.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let mut modes = modes.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let current = *modes.borrow_and_update();
                    match current {
                        Mode::Reject => {}
                        Mode::Blackhole => {
                            let _ = modes.changed().await;
                        }
                        Mode::Forward => {
                            let Ok(mut server) = TcpStream::connect(&upstream).await else {
                                return;
                            };
                            tokio::select! {
                                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                                _ = modes.changed() => {}
                            }
                        }
                    }
                    drop(client);
                });
            }
        });
        Proxy {
            addr,
            mode,
            connects,
        }
    }

    fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }
}

/// `host:port` of a `postgres://[user@]host[:port]/db` URL.
fn host_port(url: &str) -> (usize, usize) {
    let start = url
        .find('@')
        .map(|i| i + 1)
        .unwrap_or(url.find("://").unwrap() + 3);
    let end = start + url[start..].find('/').unwrap_or(url.len() - start);
    (start, end)
}

/// One answer: status, content type, `Retry-After`, job id.
type Reply = (StatusCode, String, Option<String>, Option<String>);

/// Every answer to the trickle, by course id.
#[derive(Debug, Default)]
struct Answers(BTreeMap<String, Vec<Reply>>);

type Shared = Arc<Mutex<Answers>>;

/// Posts a new course event every 100 ms (each on its own task, so a slow
/// answer does not slow the trickle) until `stop` turns true; the answers so
/// far can be read from the second value.
fn trickle(
    app: &TestApp,
    stop: watch::Receiver<bool>,
) -> (tokio::task::JoinHandle<Answers>, Shared) {
    let url = format!("{}/v1/tenants/{TENANT}/events/course-saved", app.base);
    let http = app.http.clone();
    let shared = Shared::default();
    let answers = shared.clone();
    let handle = tokio::spawn(async move {
        let mut sent = Vec::new();
        let mut n = 0;
        while !*stop.borrow() {
            n += 1;
            let course = format!("T{n:04}");
            let (url, http, answers) = (url.clone(), http.clone(), answers.clone());
            sent.push(tokio::spawn(async move {
                let answer = post(&http, &url, &course).await;
                answers
                    .lock()
                    .unwrap()
                    .0
                    .entry(course)
                    .or_default()
                    .push(answer);
            }));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for task in sent {
            task.await.unwrap();
        }
        std::mem::take(&mut *answers.lock().unwrap())
    });
    (handle, shared)
}

/// Waits until some event was answered `status`.
async fn some_answer_is(answers: &Shared, status: StatusCode, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let seen = answers
            .lock()
            .unwrap()
            .0
            .values()
            .flatten()
            .any(|a| a.0 == status);
        if seen {
            return;
        }
        assert!(Instant::now() < deadline, "no event was answered {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One event: status, content type, `Retry-After`, job id.
async fn post(http: &reqwest::Client, url: &str, course: &str) -> Reply {
    let r = http
        .post(url)
        .bearer_auth(WEBHOOK_SECRET)
        .json(&course_saved(course, "Outage"))
        .send()
        .await
        .expect("every event gets an answer");
    let answer = Answer::from_response(r).await;
    let retry_after = answer
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let job = answer.body["job_id"].as_str().map(str::to_string);
    (answer.status, answer.content_type, retry_after, job)
}

/// Waits until `/readyz` answers `status`.
async fn readiness_becomes(app: &TestApp, status: StatusCode, within: Duration) {
    let deadline = Instant::now() + within;
    while app.get("/readyz").await.status != status {
        assert!(Instant::now() < deadline, "/readyz never answered {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The trickle's answers are all 202 or 503 problems with `Retry-After`; the
/// refused events are sent again (as the sender would, after `Retry-After`);
/// then every accepted event ran, each exactly once in Moodle.
async fn check_nothing_lost(app: &TestApp, answers: Answers) {
    let mut accepted = Vec::new();
    let mut refused = Vec::new();
    for (course, tries) in &answers.0 {
        for (status, content_type, retry_after, job) in tries {
            match *status {
                StatusCode::ACCEPTED => accepted.push(job.clone().expect("a job id")),
                StatusCode::SERVICE_UNAVAILABLE => {
                    assert_eq!(content_type, "application/problem+json", "{course}");
                    assert!(
                        retry_after.is_some(),
                        "503 without Retry-After for {course}"
                    );
                    refused.push(course.clone());
                }
                other => panic!("{course} was answered {other}"),
            }
        }
    }
    assert!(
        !refused.is_empty(),
        "the outage refused nothing: {answers:?}"
    );
    assert!(!accepted.is_empty());
    let url = format!("{}/v1/tenants/{TENANT}/events/course-saved", app.base);
    for course in &refused {
        let (status, _, _, job) = post(&app.http, &url, course).await;
        assert!(
            matches!(status, StatusCode::ACCEPTED | StatusCode::OK),
            "re-send of {course}: {status}"
        );
        accepted.push(job.expect("a job id"));
    }
    app.settle(Duration::from_secs(60)).await;
    for id in &accepted {
        assert_eq!(app.job(id).await["status"], "succeeded", "job {id}");
    }
    assert_eq!(
        app.moodle.courses().len(),
        answers.0.len(),
        "one course per event"
    );
}

#[tokio::test]
async fn postgres_going_away_is_503_and_everything_resumes() {
    let Some(db) = TestDb::postgres("postgres_going_away_is_503_and_everything_resumes").await
    else {
        return;
    };
    let (start, end) = host_port(&db.url);
    let proxy = Proxy::start(db.url[start..end].to_string()).await;
    let proxied = format!("{}{}{}", &db.url[..start], proxy.addr, &db.url[end..]);
    let moodle = FakeMoodle::start().await;
    let callbacks = CallbackReceiver::start().await;
    let toml = format!(
        "{}\n[server]\nstore_timeout = \"1s\"\n",
        test_config(&proxied, &moodle, &callbacks)
    );
    let store = apit_moodle_sync::store::connect(&proxied).await.unwrap();
    let app = start_on(db, moodle, callbacks, toml, store).await;
    let (stop, stopped) = watch::channel(false);
    let (trickle, seen) = trickle(&app, stopped);
    some_answer_is(&seen, StatusCode::ACCEPTED, Duration::from_secs(5)).await;

    // Down: every connection is closed at once.
    let before = proxy.connects.load(Ordering::SeqCst);
    let outage = Instant::now();
    proxy.set(Mode::Reject);
    readiness_becomes(
        &app,
        StatusCode::SERVICE_UNAVAILABLE,
        Duration::from_secs(10),
    )
    .await;
    some_answer_is(
        &seen,
        StatusCode::SERVICE_UNAVAILABLE,
        Duration::from_secs(10),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Partitioned: connections hang; requests give up after the store timeout.
    proxy.set(Mode::Blackhole);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        app.get("/readyz").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let attempts = proxy.connects.load(Ordering::SeqCst) - before;
    // Events (10/s) and readiness probes connect once each; the worker, the
    // outbox and the poller back off. A loop that spun would make thousands.
    let seconds = outage.elapsed().as_secs_f64();
    assert!(
        (attempts as f64) < 30.0 * seconds,
        "{attempts} connection attempts in {seconds:.1} s"
    );

    proxy.set(Mode::Forward);
    readiness_becomes(&app, StatusCode::OK, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.send(true).unwrap();
    let answers = trickle.await.unwrap();
    check_nothing_lost(&app, answers).await;
    app.stop().await;
}

#[tokio::test]
async fn sqlite_disk_full_is_503_and_everything_resumes() {
    let db = TestDb::sqlite();
    let sqlite = Arc::new(SqliteStore::connect(&db.url).await.unwrap());
    let store: Arc<dyn Store> = sqlite.clone();
    let moodle = FakeMoodle::start().await;
    let callbacks = CallbackReceiver::start().await;
    let toml = test_config(&db.url, &moodle, &callbacks);
    let app = start_on(db, moodle, callbacks, toml, store).await;
    let (stop, stopped) = watch::channel(false);
    let (trickle, seen) = trickle(&app, stopped);
    some_answer_is(&seen, StatusCode::ACCEPTED, Duration::from_secs(5)).await;

    // Full: no page beyond the current size (free space inside it is used up first).
    sqlite.set_max_page_count(1).await.unwrap();
    some_answer_is(
        &seen,
        StatusCode::SERVICE_UNAVAILABLE,
        Duration::from_secs(20),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Space again: nothing to restart.
    sqlite
        .set_max_page_count(u64::from(u32::MAX))
        .await
        .unwrap();
    let resumed = seen.lock().unwrap().0.len();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let accepted_since = seen
            .lock()
            .unwrap()
            .0
            .values()
            .skip(resumed)
            .flatten()
            .any(|a| a.0 == StatusCode::ACCEPTED);
        if accepted_since {
            break;
        }
        assert!(Instant::now() < deadline, "events were not accepted again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.send(true).unwrap();
    let answers = trickle.await.unwrap();
    check_nothing_lost(&app, answers).await;
    app.stop().await;
}
