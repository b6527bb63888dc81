//! The edge (issue 10): what fuzzing and hand probes found. Huge `?wait`
//! values, problem+json for every refusal, replayed signed deliveries, slow and
//! idle connections, the connection cap.

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::support::*;

const SIGNING_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// One HTTP/1.1 exchange on a fresh connection, as raw bytes (for requests
/// reqwest will not send): the status, the content type and the body.
async fn raw(addr: SocketAddr, request: &[u8]) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("answered in time")
        .unwrap();
    let text = String::from_utf8_lossy(&answer).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let content_type = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-type")
                .then(|| value.trim().to_string())
        })
        .unwrap_or_default();
    (status, content_type, body.to_string())
}

/// Reads until the server closes the connection; the time it took.
async fn until_closed(stream: &mut TcpStream, limit: Duration) -> Duration {
    let started = Instant::now();
    let mut sink = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(started + limit, stream.read(&mut sink)).await {
            Err(_) => panic!("the server kept the connection open for {limit:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn a_wait_far_beyond_the_limit_is_clamped_and_answered() {
    let app = spawn_app().await;
    let event = app
        .post_event(
            "course-saved",
            &course_saved("C1", "First Aid"),
            "?wait=1e20",
        )
        .await;
    assert_eq!(event.status, StatusCode::OK, "{:?}", event.body);
    assert_eq!(event.body["status"], "succeeded");
    let grades = app
        .admin_post(&format!("/v1/tenants/{TENANT}/grades/sync?wait=1e20"))
        .await;
    assert!(
        matches!(grades.status, StatusCode::OK | StatusCode::ACCEPTED),
        "{:?}",
        grades.body
    );
    assert!(grades.body["job_id"].is_string(), "{:?}", grades.body);
    // A value that is not a number at all is still a 400 problem.
    let nan = app
        .post_event(
            "course-saved",
            &course_saved("C1", "First Aid"),
            "?wait=NaN",
        )
        .await;
    assert_eq!(nan.status, StatusCode::BAD_REQUEST);
    assert_eq!(nan.content_type, "application/problem+json");
}

#[tokio::test]
async fn every_refusal_is_problem_json_including_the_frameworks_own() {
    let app = spawn_app_with(|toml| format!("{toml}\n[server]\nrequest_timeout = \"1s\"\n")).await;
    let job = "/v1/jobs/00000000-0000-7000-8000-000000000000";
    let bearer = format!("Bearer {WEBHOOK_SECRET}");
    let admin = format!("Bearer {ADMIN_TOKEN}");
    let event = |path: &str, auth: &str, extra: &str, body: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: {auth}\r\n\
             {extra}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let get = |path: &str, auth: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: {auth}\r\n\r\n"
        )
    };
    let json = "Content-Type: application/json\r\n";
    let course = course_saved("C1", "First Aid").to_string();
    let big = format!("{{\"pad\": \"{}\"}}", "x".repeat(300 * 1024));
    let cases: Vec<(&str, String, u16)> = vec![
        ("bad UTF-8 in a job id", get("/v1/jobs/%ff", &admin), 404),
        (
            "bad UTF-8 in a retried job id",
            event("/v1/jobs/%ff/retry", &admin, "", ""),
            404,
        ),
        (
            "bad UTF-8 in a tenant",
            event(
                "/v1/tenants/%ff/events/course-saved",
                &bearer,
                json,
                &course,
            ),
            404,
        ),
        (
            "bad UTF-8 in a kind",
            event("/v1/tenants/acme/events/%ff%fe", &bearer, json, &course),
            404,
        ),
        (
            "bad UTF-8 in a grades tenant",
            event("/v1/tenants/%ff/grades/sync", &admin, "", ""),
            404,
        ),
        (
            "bad UTF-8 in a checked tenant",
            get("/v1/tenants/%ff/check", &admin),
            404,
        ),
        (
            "unknown query parameter",
            get("/v1/jobs?colour=red", &admin),
            400,
        ),
        (
            "a query that is not a pair",
            get("/v1/jobs?limit=1&&=&=x", &admin),
            400,
        ),
        ("unknown route", get("/v2/nothing", ""), 404),
        ("trailing slash", get("/v1/jobs/", &admin), 404),
        (
            "wrong method",
            get("/v1/tenants/acme/events/course-saved", &bearer),
            405,
        ),
        (
            "DELETE a job",
            format!("DELETE {job} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
            405,
        ),
        (
            "OPTIONS",
            "OPTIONS /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_string(),
            405,
        ),
        (
            "malformed JSON",
            event(
                "/v1/tenants/acme/events/course-saved",
                &bearer,
                json,
                "{\"course\":",
            ),
            400,
        ),
        (
            "JSON that is not an object",
            event("/v1/tenants/acme/events/course-saved", &bearer, json, "[1]"),
            400,
        ),
        (
            "no content type",
            event("/v1/tenants/acme/events/course-saved", &bearer, "", &course),
            415,
        ),
        (
            "a form body",
            event(
                "/v1/tenants/acme/events/course-saved",
                &bearer,
                "Content-Type: application/x-www-form-urlencoded\r\n",
                "a=b",
            ),
            415,
        ),
        (
            "over 256 KiB",
            event("/v1/tenants/acme/events/course-saved", &bearer, json, &big),
            413,
        ),
        (
            "over 256 KiB, chunked",
            format!(
                "POST /v1/tenants/acme/events/course-saved HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
             Authorization: {bearer}\r\n{json}Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{big}\r\n0\r\n\r\n",
                big.len()
            ),
            413,
        ),
        (
            "missing secret",
            event("/v1/tenants/acme/events/course-saved", "", json, &course),
            401,
        ),
        ("admin route without token", get("/v1/jobs", ""), 401),
        (
            "a bad Idempotency-Key",
            event(
                "/v1/tenants/acme/events/course-saved",
                &bearer,
                &format!("{json}Idempotency-Key: {}\r\n", "k".repeat(300)),
                &course,
            ),
            400,
        ),
        (
            "a job id that is not one",
            get("/v1/jobs/not-a-uuid", &admin),
            404,
        ),
        (
            "a huge limit",
            get("/v1/jobs?limit=99999999999999999999", &admin),
            400,
        ),
    ];
    let mut cases: Vec<(&str, Vec<u8>, u16)> = cases
        .into_iter()
        .map(|(what, request, status)| (what, request.into_bytes(), status))
        .collect();
    let mut not_utf8 = event(
        "/v1/tenants/acme/events/course-saved",
        &bearer,
        json,
        "{\"course\": \"??\"}",
    )
    .into_bytes();
    let at = not_utf8.len() - 4;
    not_utf8[at..at + 2].copy_from_slice(&[0xff, 0xfe]);
    cases.push(("invalid UTF-8 in the body", not_utf8, 400));
    for (what, request, status) in cases {
        let (got, content_type, body) = raw(app.addr, &request).await;
        assert_eq!(got, status, "{what}: {body}");
        assert_eq!(content_type, "application/problem+json", "{what}: {body}");
        let problem: Value =
            serde_json::from_str(&body).unwrap_or_else(|_| panic!("{what}: {body}"));
        assert_eq!(problem["status"], status, "{what}: {body}");
        assert!(
            problem["type"]
                .as_str()
                .unwrap()
                .starts_with("urn:apit-moodle-sync:problem:")
        );
    }

    // A body that never finishes is cut at request_timeout, with a problem too.
    let mut slow = TcpStream::connect(app.addr).await.unwrap();
    slow.write_all(
        format!(
            "POST /v1/tenants/acme/events/course-saved HTTP/1.1\r\nHost: x\r\nAuthorization: {bearer}\r\n\
             {json}Content-Length: 100\r\n\r\n{{\"course\":"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), slow.read(&mut answer))
        .await
        .expect("cut off in time")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("content-type: application/problem+json"),
        "{answer}"
    );
    assert!(
        answer.contains("urn:apit-moodle-sync:problem:request-timeout"),
        "{answer}"
    );
}

/// A Standard Webhooks delivery of `body`, signed with `id` and `ts`.
async fn signed(app: &TestApp, id: &str, ts: i64, body: &str, query: &str) -> Answer {
    let secret = apit_moodle_sync::secret::Secret::new(SIGNING_SECRET);
    let signature = apit_moodle_sync::http::sign(&secret, id, ts, body.as_bytes());
    let body = body.to_string();
    app.post_raw("course-saved", query, |r| {
        r.header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", signature)
            .body(body)
    })
    .await
}

fn with_signing(toml: String) -> String {
    toml.replace(
        "category_id = 5",
        &format!("category_id = 5\nsigning_secret = \"{SIGNING_SECRET}\""),
    )
}

#[tokio::test]
async fn a_replayed_signed_delivery_answers_its_original_job_even_after_a_restart() {
    let app = spawn_app_with(with_signing).await;
    let ts = chrono::Utc::now().timestamp();
    let a = course_saved("C1", "Version A").to_string();
    let b = course_saved("C1", "Version B").to_string();

    let first = signed(&app, "msg_A", ts, &a, "?wait=10").await;
    assert_eq!(first.status, StatusCode::OK, "{:?}", first.body);
    let job_a = first.job_id();
    let second = signed(&app, "msg_B", ts + 1, &b, "?wait=10").await;
    assert_eq!(second.status, StatusCode::OK, "{:?}", second.body);
    assert_ne!(second.job_id(), job_a);

    // A's exact request again, even with ?force: the original job answers.
    let replay = signed(&app, "msg_A", ts, &a, "?force=true").await;
    assert_eq!(replay.status, StatusCode::OK, "{:?}", replay.body);
    assert_eq!(replay.job_id(), job_a);
    app.settle(Duration::from_secs(10)).await;
    assert_eq!(app.jobs().await.len(), 2, "no new job");
    let courses = app.moodle.courses();
    assert_eq!(courses.len(), 1);
    assert_eq!(courses[0].fullname, "Version B", "the course stays at B");

    // The store remembers it across a restart inside the window.
    let app = app.restart().await;
    let replay = signed(&app, "msg_A", ts, &a, "").await;
    assert_eq!(replay.job_id(), job_a, "{:?}", replay.body);
    app.settle(Duration::from_secs(10)).await;
    assert_eq!(app.jobs().await.len(), 2, "no new job after the restart");
    assert_eq!(app.moodle.courses()[0].fullname, "Version B");

    // A new delivery of the same body (a new webhook-id) is an ordinary event.
    let fresh = signed(&app, "msg_A2", ts + 2, &a, "?wait=10").await;
    assert_eq!(fresh.status, StatusCode::OK, "{:?}", fresh.body);
    assert_ne!(fresh.job_id(), job_a);
    assert_eq!(app.moodle.courses()[0].fullname, "Version A");
}

fn limits(header: &str, idle: &str, max: usize) -> impl FnOnce(String) -> String {
    let section = format!(
        "\n[server]\nheader_timeout = \"{header}\"\nidle_timeout = \"{idle}\"\nmax_connections = {max}\n"
    );
    move |toml| format!("{toml}{section}")
}

#[tokio::test]
async fn slow_and_idle_clients_are_cut_while_health_checks_answer() {
    let app = spawn_app_with(limits("2s", "10s", 128)).await;
    let mut tricklers = Vec::new();
    let mut idlers = Vec::new();
    for _ in 0..40 {
        let mut s = TcpStream::connect(app.addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        tricklers.push(s);
        idlers.push(TcpStream::connect(app.addr).await.unwrap());
    }
    let opened = Instant::now();
    // Keep trickling header bytes, one line every 100 ms, in the background.
    let trickle = tokio::spawn(async move {
        let mut closed = Vec::new();
        for round in 0..100 {
            for s in tricklers.iter_mut() {
                if s.write_all(format!("x-slow-{round}: 1\r\n").as_bytes())
                    .await
                    .is_err()
                {
                    // Cut: the server closed it (a write fails once it reset).
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            if opened.elapsed() > Duration::from_secs(4) {
                break;
            }
        }
        for mut s in tricklers {
            closed.push(until_closed(&mut s, Duration::from_secs(5)).await);
        }
        closed
    });
    // Health checks answer meanwhile, while all 80 are still held.
    for _ in 0..5 {
        let health = app.get("/healthz").await;
        assert_eq!(health.status, StatusCode::OK);
    }
    let healthy_at = opened.elapsed();
    // The idle connections are closed at the header timeout…
    for mut s in idlers {
        until_closed(&mut s, Duration::from_secs(10)).await;
    }
    let idle_cut = opened.elapsed();
    assert!(idle_cut >= Duration::from_secs(2), "{idle_cut:?}");
    assert!(
        healthy_at < Duration::from_secs(2),
        "the health checks took until {healthy_at:?}, past the cut"
    );
    // …and so are the tricklers, though they keep sending.
    assert_eq!(trickle.await.unwrap().len(), 40);
    assert!(opened.elapsed() < Duration::from_secs(15));
}

#[tokio::test]
async fn a_kept_alive_connection_waits_the_idle_timeout_not_the_header_timeout() {
    let app = spawn_app_with(limits("300ms", "3s", 128)).await;
    let mut s = TcpStream::connect(app.addr).await.unwrap();
    let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut buf = vec![0u8; 4096];
    for _ in 0..3 {
        s.write_all(request).await.unwrap();
        let n = s.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        // Longer than the header timeout, shorter than the idle timeout.
        tokio::time::sleep(Duration::from_millis(800)).await;
    }
    // Then idle (0.8 s of the 3 s gone): closed at the idle timeout, not the header timeout.
    let closed = until_closed(&mut s, Duration::from_secs(10)).await;
    assert!(closed >= Duration::from_millis(1500), "{closed:?}");
}

#[tokio::test]
async fn connections_over_the_cap_wait_for_a_free_slot() {
    let app = spawn_app_with(limits("1s", "1s", 4)).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(app.addr).await.unwrap());
    }
    let opened = Instant::now();
    // A fifth client is answered only once a held connection is cut.
    let fifth = app.get("/healthz").await;
    let answered = opened.elapsed();
    assert_eq!(fifth.status, StatusCode::OK);
    assert!(
        answered >= Duration::from_millis(900),
        "answered after {answered:?}"
    );
    for mut s in held {
        until_closed(&mut s, Duration::from_secs(5)).await;
    }
}
