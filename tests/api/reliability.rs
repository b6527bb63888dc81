//! Correct under re-sends, races and a misbehaving Moodle.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::support::*;

fn statuses(jobs: &[Value]) -> Vec<String> {
    jobs.iter()
        .map(|j| j["status"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn re_sends_and_replays_never_duplicate_anything() {
    let app = spawn_app().await;
    let body = booking("D555", "C1001", "U9", "ada@example.com");
    for _ in 0..3 {
        app.post_event("booking-created", &body, "").await;
    }
    for n in 0..3 {
        let mut replay = body.clone();
        replay["event_id"] = json!(format!("replay-{n}"));
        app.post_event("booking-created", &replay, "").await;
    }
    app.drain(Duration::from_secs(20)).await;
    assert_eq!(app.moodle.courses().len(), 1);
    assert_eq!(app.moodle.users().len(), 1);
    assert_eq!(app.moodle.enrolments().len(), 1);
    assert_eq!(app.moodle.call_count("core_course_create_courses"), 1);
    assert_eq!(app.moodle.call_count("core_user_create_users"), 1);
    let jobs = app.jobs().await;
    assert_eq!(jobs.len(), 4, "the 3 identical sends are one job");
    assert!(statuses(&jobs).iter().all(|s| s == "succeeded"), "{jobs:?}");
}

/// Sends `bookings` bookings of one new person (`user`, grace@example.com) on
/// `courses` courses all at once; each must be accepted.
async fn book_one_person_at_once(app: &TestApp, bookings: usize, courses: usize, user: &str) {
    let sends = (0..bookings).map(|n| {
        let body = booking(
            &format!("D{n}"),
            &format!("C{}", n % courses),
            user,
            "grace@example.com",
        );
        async move { app.post_event("booking-created", &body, "").await }
    });
    for a in futures::future::join_all(sends).await {
        assert_eq!(a.status, reqwest::StatusCode::ACCEPTED, "{:?}", a.body);
    }
}

#[tokio::test]
async fn twenty_bookings_of_one_new_person_at_once_make_one_user() {
    let app = spawn_app().await;
    // Widen Moodle's non-atomic check-then-insert window, as a slow real site would.
    app.moodle.set_create_delay(Duration::from_millis(30));
    book_one_person_at_once(&app, 20, 4, "U9").await;
    app.drain(Duration::from_secs(30)).await;
    assert_eq!(app.moodle.users().len(), 1, "{:?}", app.moodle.users());
    assert_eq!(app.moodle.courses().len(), 4);
    assert_eq!(app.moodle.enrolments().len(), 4);
    let jobs = app.jobs().await;
    assert_eq!(jobs.len(), 20);
    assert!(
        statuses(&jobs).iter().all(|s| s == "succeeded"),
        "{:?}",
        statuses(&jobs)
    );
}

async fn assert_recovers_from(fault: Fault, times: usize) {
    let app = spawn_app().await;
    app.moodle.fail_next(times, fault);
    let a = app
        .post_event(
            "booking-created",
            &booking("D1", "C1", "U1", "ada@example.com"),
            "",
        )
        .await;
    let job = app.wait_final(&a.job_id(), Duration::from_secs(30)).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert!(job["attempts"].as_u64().unwrap() > 1, "{job}");
    assert_eq!(app.moodle.courses().len(), 1);
    assert_eq!(app.moodle.users().len(), 1);
    assert_eq!(app.moodle.enrolments().len(), 1);
}

#[tokio::test]
async fn moodle_answering_503_several_times_is_retried() {
    assert_recovers_from(Fault::Http503, 4).await;
}

#[tokio::test]
async fn moodle_hanging_past_the_timeout_is_retried() {
    assert_recovers_from(Fault::Hang, 1).await;
}

#[tokio::test]
async fn a_reset_connection_is_retried() {
    assert_recovers_from(Fault::Reset, 2).await;
}

#[tokio::test]
async fn a_create_that_worked_but_was_never_answered_is_not_repeated() {
    let app = spawn_app().await;
    app.moodle
        .fail_next_for("core_course_create_courses", 1, Fault::AfterCommit503);
    app.moodle
        .fail_next_for("core_user_create_users", 1, Fault::AfterCommit503);
    let a = app
        .post_event(
            "booking-created",
            &booking("D1", "C1", "U1", "ada@example.com"),
            "",
        )
        .await;
    let job = app.wait_final(&a.job_id(), Duration::from_secs(30)).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    // Both faults fired: two attempts failed after Moodle had committed…
    let failed: Vec<&Value> = job["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| !a["error"].is_null())
        .collect();
    assert_eq!(failed.len(), 2, "{job}");
    assert_eq!(app.moodle.call_count("core_course_create_courses"), 1);
    assert_eq!(app.moodle.call_count("core_user_create_users"), 1);
    // …and the retries found what the lost answers had created.
    assert_eq!(app.moodle.courses().len(), 1);
    assert_eq!(app.moodle.users().len(), 1);
}

/// A configuration error keeps the job queued (never `failed`), retried slowly,
/// with a message that says what the Moodle administrator must change.
async fn assert_configuration_problem(
    edit: impl FnOnce(String) -> String,
    break_moodle: impl FnOnce(&FakeMoodle),
    needles: &[&str],
) {
    let app =
        spawn_app_with(|t| edit(t.replace("max_backoff = \"400ms\"", "max_backoff = \"1h\"")))
            .await;
    break_moodle(&app.moodle);
    let a = app
        .post_event(
            "booking-created",
            &booking("D1", "C1", "U1", "ada@example.com"),
            "?wait=3",
        )
        .await;
    let id = a.job_id();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let job = loop {
        let job = app.job(&id).await;
        if job["attempts"].as_u64() >= Some(1)
            && job["status"] == "queued"
            && job["last_error"].is_string()
        {
            break job;
        }
        assert!(tokio::time::Instant::now() < deadline, "{job}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let error = job["last_error"].as_str().unwrap();
    for needle in needles {
        assert!(error.contains(needle), "{needle:?} missing in: {error}");
    }
    let next: DateTime<Utc> = job["next_attempt_at"].as_str().unwrap().parse().unwrap();
    assert!(
        next - Utc::now() > chrono::Duration::minutes(2),
        "configuration errors must be retried slowly, next at {next}"
    );
}

#[tokio::test]
async fn an_invalid_token_says_to_renew_it() {
    assert_configuration_problem(
        |t| t,
        |m| m.set_token_valid(false),
        &["token", "moodle_token"],
    )
    .await;
}

#[tokio::test]
async fn a_function_missing_from_the_service_is_named() {
    assert_configuration_problem(
        |t| t,
        |m| m.remove_function("core_course_create_courses"),
        &["core_course_create_courses", "External Service"],
    )
    .await;
}

#[tokio::test]
async fn an_unknown_category_is_named() {
    assert_configuration_problem(
        |t| t.replace("category_id = 5", "category_id = 999"),
        |_| {},
        &["category_id"],
    )
    .await;
}

#[tokio::test]
async fn a_role_the_token_cannot_assign_is_named() {
    assert_configuration_problem(
        |t| t.replace("role_id = 5", "role_id = 999"),
        |_| {},
        &["999", "Allow role assignments"],
    )
    .await;
}

#[tokio::test]
async fn a_missing_capability_is_named() {
    assert_configuration_problem(
        |t| t,
        |m| m.lack_capability("moodle/course:create"),
        &["moodle/course:create"],
    )
    .await;
}

#[tokio::test]
async fn no_secret_appears_in_any_answer_or_job_record() {
    let logs = LogCapture::install();
    let app = spawn_app().await;
    app.moodle.set_token_valid(false);
    let a = app
        .post_event(
            "booking-created",
            &booking("D1", "C1", "U1", "ada@example.com"),
            "?wait=2",
        )
        .await;
    let id = a.job_id();
    // The attempt whose error could carry the token has been recorded.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let job = loop {
        let job = app.job(&id).await;
        if job["last_error"].is_string() {
            break job;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no attempt recorded: {job}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let error = job["last_error"].as_str().unwrap();
    assert!(error.contains("invalidtoken"), "{error}");
    assert!(job["history"][0]["error"].is_string(), "{job}");
    let mut everything = a.body.to_string();
    everything += &job.to_string();
    everything += &app.admin_get("/v1/jobs").await.body.to_string();
    everything += &app.admin_get("/v1/jobs?ref=U1").await.body.to_string();
    let logged = logs.text();
    assert!(
        logged.contains("invalidtoken"),
        "the logs saw no attempt: {logged}"
    );
    everything += &logged;
    for secret in [
        app.moodle.token().as_str(),
        WEBHOOK_SECRET,
        ADMIN_TOKEN,
        CALLBACK_TOKEN,
    ] {
        assert!(
            !everything.contains(secret),
            "a secret leaked: {everything}"
        );
    }
}

/// Every log line at trace level, written while the guard lives. The test
/// runtime has one thread, so the service's tasks log through this too.
struct LogCapture {
    buffer: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    _guard: tracing::subscriber::DefaultGuard,
}

impl LogCapture {
    fn install() -> Self {
        let buffer = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || LogWriter(sink.clone()))
            .finish();
        LogCapture {
            buffer,
            _guard: tracing::subscriber::set_default(subscriber),
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.buffer.lock().unwrap()).into_owned()
    }
}

struct LogWriter(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn the_service_runs_the_same_on_postgresql() {
    let Some(db) = TestDb::postgres("the service on PostgreSQL").await else {
        return;
    };
    let app = start(
        db,
        FakeMoodle::start().await,
        CallbackReceiver::start().await,
        |t| t,
    )
    .await;
    let body = booking("D555", "C1001", "U9", "ada@example.com");
    let first = app.post_event("booking-created", &body, "?wait=10").await;
    assert_eq!(first.body["status"], "succeeded", "{:?}", first.body);
    let resend = app.post_event("booking-created", &body, "").await;
    assert_eq!(resend.job_id(), first.job_id());
    book_one_person_at_once(&app, 8, 2, "U7").await;
    app.drain(Duration::from_secs(30)).await;
    assert_eq!(app.moodle.users().len(), 2);
    assert_eq!(app.moodle.courses().len(), 3);
    // One enrolment per (course, person): U9 on C1001, U7 on C0 and C1.
    assert_eq!(app.moodle.enrolments().len(), 3);
    assert!(statuses(&app.jobs().await).iter().all(|s| s == "succeeded"));
    app.wait_writebacks(5, Duration::from_secs(10)).await;
}
