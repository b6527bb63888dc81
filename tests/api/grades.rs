//! Scores back: `POST /v1/tenants/{tenant}/grades/sync` and the poller read course
//! totals from the fake Moodle (one call per course) and write changed scores back.

use std::time::{Duration, Instant};

use apit_moodle_sync::store::{EnrolmentRecord, EnrolmentState};
use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

const GRADE_ITEMS: &str = "gradereport_user_get_grade_items";
const COMPLETION: &str = "core_completion_get_course_completion_status";
const SECS: Duration = Duration::from_secs(10);

/// Appends a `[tenants.acme.grades]` section.
fn with_grades(toml: String, section: &str) -> String {
    format!("{toml}\n[tenants.{TENANT}.grades]\n{section}\n")
}

/// Books a delegate through the real event path; returns (Moodle course, Moodle user).
async fn book(app: &TestApp, booking_id: &str, course: &str, user: &str) -> (i64, i64) {
    let email = format!("{}@example.com", user.to_lowercase());
    let a = app
        .post_event(
            "booking-created",
            &booking(booking_id, course, user, &email),
            "?wait=10",
        )
        .await;
    assert_eq!(a.body["status"], "succeeded", "{}", a.body);
    let id = |k: &str| a.body["moodle"][k].as_i64().unwrap();
    (id("course_id"), id("user_id"))
}

/// `POST …/grades/sync` with the admin token; `query` like `"?wait=10"`.
async fn sync(app: &TestApp, query: &str) -> Answer {
    app.admin_post(&format!("/v1/tenants/{TENANT}/grades/sync{query}"))
        .await
}

/// A pass run to its end: asserts it succeeded and returns its job detail.
async fn pass(app: &TestApp) -> Value {
    let a = sync(app, "?wait=10").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["status"], "succeeded", "{}", a.body);
    app.job(&a.job_id()).await
}

/// Delegate write-backs the receiver accepted, in arrival order.
fn delegate_bodies(app: &TestApp) -> Vec<Value> {
    app.callbacks
        .bodies()
        .into_iter()
        .filter(|b| b["entity"] == "delegate")
        .collect()
}

/// Waits for `n` delegate write-backs; returns them sorted by booking id.
async fn wait_delegates(app: &TestApp, n: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + SECS;
    loop {
        let mut got = delegate_bodies(app);
        if got.len() >= n {
            got.sort_by_key(|b| b["accessplanit_id"].as_str().unwrap().to_string());
            return got;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {n} delegate write-backs: {got:?}",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Lets every job and write-back finish, then checks nothing more arrived.
async fn assert_no_more_delegates(app: &TestApp, n: usize) {
    app.settle(SECS).await;
    let got = delegate_bodies(app);
    assert_eq!(got.len(), n, "unexpected write-backs: {got:#?}");
}

/// The write-back a delegate's score should produce.
fn expected(booking: &str, user: i64, course: i64, score: f64, max: f64, percent: f64) -> Value {
    json!({
        "tenant": TENANT,
        "entity": "delegate",
        "accessplanit_id": booking,
        "moodle_id": user,
        "moodle_course_id": course,
        "score": score,
        "score_max": max,
        "score_percent": percent,
    })
}

#[tokio::test]
async fn one_pass_writes_each_score_once_and_a_second_pass_writes_nothing() {
    write_once_then_nothing(TestDb::sqlite()).await;
}

/// The same on PostgreSQL (its `jsonb` keeps the last score written).
#[tokio::test]
async fn one_pass_writes_each_score_once_and_a_second_pass_writes_nothing_on_postgres() {
    if let Some(db) = TestDb::postgres("grades write-once").await {
        write_once_then_nothing(db).await;
    }
}

async fn write_once_then_nothing(db: TestDb) {
    let moodle = FakeMoodle::start().await;
    let callbacks = CallbackReceiver::start().await;
    let app = start(db, moodle, callbacks, |t| t).await;
    let (c1, u1) = book(&app, "D1", "C1", "U1").await;
    let (_, u2) = book(&app, "D2", "C1", "U2").await;
    let (_, u3) = book(&app, "D3", "C1", "U3").await;
    let (c2, _) = book(&app, "D4", "C2", "U1").await;
    let (_, u4) = book(&app, "D5", "C2", "U4").await;
    app.moodle.set_grade(c1, u1, Some(85.0));
    app.moodle.set_grade(c1, u2, Some(72.5));
    app.moodle.set_grade(c1, u3, None); // not graded yet: nothing is sent
    app.moodle.set_grademax(c2, 50.0);
    app.moodle.set_grade(c2, u1, Some(40.0));
    app.moodle.set_grade(c2, u4, Some(50.0));
    app.moodle.reset_calls();

    let a = sync(&app, "?wait=10").await;
    eprintln!(
        "POST /v1/tenants/{TENANT}/grades/sync?wait=10 → {}\n{}",
        a.status,
        serde_json::to_string_pretty(&a.body).unwrap()
    );
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["status"], "succeeded");
    assert_eq!(a.body["kind"], "grades-sync");
    assert_eq!(
        a.body["grades"],
        json!({"courses_read": 2, "delegates": 5, "scores_written": 4, "unchanged": 0,
               "no_grade": 1, "not_in_report": 0, "errors": []})
    );
    // One call per course, whatever the number of delegates.
    assert_eq!(app.moodle.call_count(GRADE_ITEMS), 2);
    assert_eq!(app.moodle.calls().len(), 2, "{:?}", app.moodle.calls());
    assert_eq!(a.body["calls"].as_array().unwrap().len(), 2);

    let got = wait_delegates(&app, 4).await;
    assert_eq!(
        got,
        vec![
            expected("D1", u1, c1, 85.0, 100.0, 85.0),
            expected("D2", u2, c1, 72.5, 100.0, 72.5),
            expected("D4", u1, c2, 40.0, 50.0, 80.0),
            expected("D5", u4, c2, 50.0, 50.0, 100.0),
        ]
    );
    assert_no_more_delegates(&app, 4).await;

    // Nothing changed: a new pass reads again and writes nothing.
    app.moodle.reset_calls();
    let second = pass(&app).await;
    assert_ne!(
        second["job_id"], a.body["job_id"],
        "a new pass, not the old one"
    );
    assert_eq!(second["grades"]["scores_written"], 0);
    assert_eq!(second["grades"]["unchanged"], 4);
    assert_eq!(second["grades"]["no_grade"], 1);
    assert_eq!(second["writebacks"], json!([]));
    assert_eq!(app.moodle.call_count(GRADE_ITEMS), 2);
    assert_no_more_delegates(&app, 4).await;
}

#[tokio::test]
async fn a_changed_score_is_written_back_once_more() {
    let app = spawn_app().await;
    let (c1, u1) = book(&app, "D1", "C1", "U1").await;
    let (_, u2) = book(&app, "D2", "C1", "U2").await;
    let (_, u3) = book(&app, "D3", "C1", "U3").await;
    app.moodle.set_grade(c1, u1, Some(60.0));
    app.moodle.set_grade(c1, u2, Some(70.0));
    pass(&app).await;
    wait_delegates(&app, 2).await;

    app.moodle.set_grade(c1, u1, Some(75.25));
    let job = pass(&app).await;
    assert_eq!(job["grades"]["scores_written"], 1);
    assert_eq!(job["grades"]["unchanged"], 1);
    let queued = job["writebacks"].as_array().unwrap();
    assert_eq!(queued.len(), 1, "{queued:?}");
    assert_eq!(queued[0]["accessplanit_id"], "D1");
    let got = wait_delegates(&app, 3).await;
    assert!(
        got.contains(&expected("D1", u1, c1, 75.25, 100.0, 75.25)),
        "{got:#?}"
    );
    assert_no_more_delegates(&app, 3).await;

    // A first grade later on is written then.
    app.moodle.set_grade(c1, u3, Some(10.0));
    let job = pass(&app).await;
    assert_eq!(job["grades"]["scores_written"], 1);
    let got = wait_delegates(&app, 4).await;
    assert!(
        got.contains(&expected("D3", u3, c1, 10.0, 100.0, 10.0)),
        "{got:#?}"
    );
}

#[tokio::test]
async fn with_completion_on_write_backs_say_whether_the_course_is_complete() {
    let app = spawn_app_with(|t| with_grades(t, "completion = true")).await;
    let (c1, u1) = book(&app, "D1", "C1", "U1").await;
    let (_, u2) = book(&app, "D2", "C1", "U2").await;
    let (c2, u3) = book(&app, "D3", "C2", "U3").await;
    book(&app, "D4", "C2", "U4").await; // no grade: nothing sent, completion not asked
    for (c, u) in [(c1, u1), (c1, u2), (c2, u3)] {
        app.moodle.set_grade(c, u, Some(90.0));
    }
    app.moodle.set_completion_criteria(c1, true);
    app.moodle.set_completion(c1, u1, true, Some(1_800_000_000));
    // C2 has no completion criteria: Moodle has no completion data there.
    app.moodle.reset_calls();

    let job = pass(&app).await;
    assert_eq!(job["grades"]["scores_written"], 3);
    assert_eq!(job["grades"]["no_grade"], 1);
    // One grade call per course, one completion call per graded delegate.
    assert_eq!(app.moodle.call_count(GRADE_ITEMS), 2);
    assert_eq!(app.moodle.call_count(COMPLETION), 3);
    let with = |mut v: Value, completed: Value, at: Value| {
        v["completed"] = completed;
        v["completed_at"] = at;
        v
    };
    let got = wait_delegates(&app, 3).await;
    assert_eq!(
        got,
        vec![
            with(
                expected("D1", u1, c1, 90.0, 100.0, 90.0),
                json!(true),
                json!("2027-01-15T08:00:00Z")
            ),
            with(
                expected("D2", u2, c1, 90.0, 100.0, 90.0),
                json!(false),
                Value::Null
            ),
            with(
                expected("D3", u3, c2, 90.0, 100.0, 90.0),
                Value::Null,
                Value::Null
            ),
        ]
    );

    // Completing the course is a change even when the score is not.
    app.moodle.set_completion(c1, u2, true, Some(1_800_003_600));
    let job = pass(&app).await;
    assert_eq!(job["grades"]["scores_written"], 1);
    wait_delegates(&app, 4).await;
    let last = delegate_bodies(&app).pop().unwrap();
    assert_eq!(last["accessplanit_id"], "D2", "{last}");
    assert_eq!(last["completed"], true);
    assert_eq!(last["completed_at"], "2027-01-15T09:00:00Z");
}

#[tokio::test]
async fn a_delegate_without_a_grade_sends_nothing() {
    let app = spawn_app().await;
    book(&app, "D1", "C1", "U1").await;
    let job = pass(&app).await;
    assert_eq!(job["grades"]["no_grade"], 1);
    assert_eq!(job["grades"]["scores_written"], 0);
    assert_eq!(job["writebacks"], json!([]));
    assert_no_more_delegates(&app, 0).await;
}

#[tokio::test]
async fn cancelled_bookings_are_left_out() {
    let app = spawn_app().await;
    let (c1, u1) = book(&app, "D1", "C1", "U1").await;
    let (_, u2) = book(&app, "D2", "C1", "U2").await;
    app.moodle.set_grade(c1, u1, Some(50.0));
    app.moodle.set_grade(c1, u2, Some(60.0));
    let cancel = app
        .post_event(
            "booking-cancelled",
            &booking("D2", "C1", "U2", "u2@example.com"),
            "?wait=10",
        )
        .await;
    assert_eq!(cancel.body["status"], "succeeded", "{}", cancel.body);

    let job = pass(&app).await;
    // D2 is not read at all (not merely absent from Moodle's report).
    assert_eq!(job["grades"]["delegates"], 1);
    assert_eq!(job["grades"]["not_in_report"], 0);
    assert_eq!(job["grades"]["scores_written"], 1);
    let got = wait_delegates(&app, 1).await;
    assert_eq!(got[0]["accessplanit_id"], "D1");
    assert_no_more_delegates(&app, 1).await;
}

/// A pass Moodle refuses stays queued for a slow retry (it is never shown `failed`
/// while it will run again), says what the Moodle admin must change, writes nothing.
async fn assert_refused(break_moodle: impl FnOnce(&FakeMoodle), needles: &[&str]) {
    let app =
        spawn_app_with(|t| t.replace("max_backoff = \"400ms\"", "max_backoff = \"1h\"")).await;
    let (c1, u1) = book(&app, "D1", "C1", "U1").await;
    app.moodle.set_grade(c1, u1, Some(50.0));
    break_moodle(&app.moodle);

    let started = Instant::now();
    let a = sync(&app, "?wait=10").await;
    eprintln!(
        "refused pass → {}\n{}",
        a.status,
        serde_json::to_string_pretty(&a.body).unwrap()
    );
    // The answer comes once the attempt failed: the retry is minutes away.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    assert_eq!(a.body["status"], "queued");
    let error = a.body["last_error"].as_str().expect("last_error");
    for needle in needles {
        assert!(error.contains(needle), "{needle:?} missing in: {error}");
    }
    let next: DateTime<Utc> = a.body["next_attempt_at"].as_str().unwrap().parse().unwrap();
    assert!(next - Utc::now() > chrono::Duration::minutes(2), "{next}");

    let job = app.job(&a.job_id()).await;
    assert_eq!(job["status"], "queued");
    assert_eq!(job["writebacks"], json!([]));
    assert_eq!(job["grades"]["scores_written"], 0);
    assert_no_more_delegates(&app, 0).await;

    // Asked again meanwhile: the same pass, not a second one.
    let again = sync(&app, "").await;
    assert_eq!(again.job_id(), a.job_id());
}

#[tokio::test]
async fn a_missing_grade_capability_fails_the_pass_with_the_fix() {
    assert_refused(
        |m| m.lack_capability("moodle/grade:viewall"),
        &["moodle/grade:viewall", "Define roles", "course "],
    )
    .await;
}

#[tokio::test]
async fn a_grade_function_missing_from_the_service_fails_the_pass_with_the_fix() {
    assert_refused(
        |m| m.remove_function(GRADE_ITEMS),
        &[GRADE_ITEMS, "External Service"],
    )
    .await;
}

#[tokio::test]
async fn a_completion_refusal_fails_the_pass_with_the_fix() {
    // Needs completion on: the edit is applied on top of assert_refused's own.
    let app = spawn_app_with(|t| {
        with_grades(
            t.replace("max_backoff = \"400ms\"", "max_backoff = \"1h\""),
            "completion = true",
        )
    })
    .await;
    let (c1, u1) = book(&app, "D1", "C1", "U1").await;
    app.moodle.set_grade(c1, u1, Some(50.0));
    app.moodle.lack_capability("report/completion:view");
    let a = sync(&app, "?wait=10").await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    let error = a.body["last_error"].as_str().unwrap();
    assert!(error.contains("report/completion:view"), "{error}");
    assert_eq!(app.job(&a.job_id()).await["writebacks"], json!([]));
}

#[tokio::test]
async fn after_the_moodle_admin_fixes_it_the_next_attempt_writes_the_scores() {
    let app = spawn_app().await; // retries within 400 ms
    let (c1, u1) = book(&app, "D1", "C1", "U1").await;
    app.moodle.set_grade(c1, u1, Some(64.0));
    app.moodle.lack_capability("moodle/grade:viewall");
    let id = sync(&app, "").await.job_id();
    let deadline = tokio::time::Instant::now() + SECS;
    loop {
        let job = app.job(&id).await;
        if job["last_error"].is_string() {
            assert_eq!(job["status"], "queued");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{job}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(delegate_bodies(&app).len(), 0);

    app.moodle.restore_capability("moodle/grade:viewall");
    let job = app.wait_final(&id, SECS).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["grades"]["scores_written"], 1);
    let got = wait_delegates(&app, 1).await;
    assert_eq!(got[0], expected("D1", u1, c1, 64.0, 100.0, 64.0));
}

#[tokio::test]
async fn a_refusing_moodle_does_not_hold_up_other_tenants() {
    let moodle = FakeMoodle::start().await;
    let beta = FakeMoodle::start().await;
    let callbacks = CallbackReceiver::start().await;
    let beta_section = format!(
        "\n[tenants.beta]\nwebhook_secret = \"beta-secret-0001\"\nmoodle_url = \"{}\"\n\
         moodle_token = \"{}\"\ncategory_id = 5\nrole_id = 5\n\n\
         [tenants.beta.callback]\nkind = \"webhook\"\nurl = \"{}\"\n",
        beta.url(),
        beta.token(),
        callbacks.url
    );
    let app = start(TestDb::sqlite(), moodle, callbacks, |t| t + &beta_section).await;
    let (c1, u1) = book(&app, "D1", "C1", "U1").await;
    app.moodle.set_grade(c1, u1, Some(50.0));
    app.moodle.lack_capability("moodle/grade:viewall");
    // beta's delegate, seeded in its Moodle and in the store.
    let course = seed_course(&beta, "Beta course", "B1", None);
    let user = seed_user(&beta, "bob", "bob@example.com");
    beta.add_enrolment(course, user, 5, false);
    beta.set_grade(course, user, Some(99.0));
    app.store
        .put_enrolment(&EnrolmentRecord {
            tenant: "beta".into(),
            booking_id: "B-D1".into(),
            moodle_course_id: course,
            moodle_user_id: user,
            state: EnrolmentState::Active,
            last_score: None,
        })
        .await
        .unwrap();

    let acme = sync(&app, "").await;
    let b = app.admin_post("/v1/tenants/beta/grades/sync?wait=10").await;
    assert_eq!(b.body["status"], "succeeded", "{}", b.body);
    assert_eq!(b.body["grades"]["scores_written"], 1);
    let got = wait_delegates(&app, 1).await;
    assert_eq!(got[0]["tenant"], "beta");
    assert_eq!(got[0]["score"], 99.0);
    let acme = app.job(&acme.job_id()).await;
    assert_ne!(acme["status"], "succeeded", "{acme}");
}

#[tokio::test]
async fn a_course_deleted_in_moodle_is_reported_and_the_others_are_still_read() {
    let app = spawn_app().await;
    let (c1, u1) = book(&app, "D1", "C1", "U1").await;
    app.moodle.set_grade(c1, u1, Some(50.0));
    app.store
        .put_enrolment(&EnrolmentRecord {
            tenant: TENANT.into(),
            booking_id: "D9".into(),
            moodle_course_id: 9999,
            moodle_user_id: u1,
            state: EnrolmentState::Active,
            last_score: None,
        })
        .await
        .unwrap();
    let job = pass(&app).await;
    assert_eq!(job["grades"]["courses_read"], 1);
    assert_eq!(job["grades"]["scores_written"], 1);
    let errors = job["grades"]["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{errors:?}");
    let error = errors[0].as_str().unwrap();
    assert!(error.contains("course 9999"), "{error}");
    assert!(error.contains("does not exist"), "{error}");
    wait_delegates(&app, 1).await;
}

#[tokio::test]
async fn a_request_while_a_pass_is_under_way_returns_that_pass() {
    let app = spawn_app().await;
    book(&app, "D1", "C1", "U1").await;
    app.moodle.set_latency(Duration::from_millis(400));
    let first = sync(&app, "").await;
    let second = sync(&app, "").await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    assert_eq!(second.status, StatusCode::ACCEPTED);
    assert_eq!(first.job_id(), second.job_id());
    assert_eq!(
        first.headers["location"],
        format!("/v1/jobs/{}", first.job_id())
    );
    app.wait_final(&first.job_id(), SECS).await;
    let third = sync(&app, "").await;
    assert_ne!(
        third.job_id(),
        first.job_id(),
        "a finished pass is followed by a new one"
    );
}

#[tokio::test]
async fn the_endpoint_needs_the_admin_token_and_a_known_tenant() {
    let app = spawn_app().await;
    let url = format!("{}/v1/tenants/{TENANT}/grades/sync", app.base);
    for token in [None, Some(WEBHOOK_SECRET)] {
        let mut r = app.http.post(&url);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let a = Answer::from_response(r.send().await.unwrap()).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
        assert_eq!(a.content_type, "application/problem+json");
    }
    let unknown = app.admin_post("/v1/tenants/globex/grades/sync").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.body["detail"], "unknown tenant globex");
    let bad = sync(&app, "?wait=soon").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let unknown_param = sync(&app, "?force=true").await;
    assert_eq!(unknown_param.status, StatusCode::BAD_REQUEST);
    assert!(
        app.jobs().await.is_empty(),
        "a refused request stores nothing"
    );
}

#[tokio::test]
async fn without_a_callback_there_is_nothing_to_read() {
    let app = spawn_app_with(|t| t.replace("kind = \"webhook\"", "kind = \"none\"")).await;
    book(&app, "D1", "C1", "U1").await;
    app.moodle.reset_calls();
    let a = sync(&app, "?wait=10").await;
    assert_eq!(a.body["status"], "skipped", "{}", a.body);
    assert!(
        a.body["skip_reason"].as_str().unwrap().contains("callback"),
        "{}",
        a.body
    );
    assert_eq!(app.moodle.calls().len(), 0);
}

#[tokio::test]
async fn the_poller_runs_a_pass_every_interval() {
    let app = spawn_app_with(|t| with_grades(t, "poll_interval = \"200ms\"")).await;
    let (c1, u1) = book(&app, "D1", "C1", "U1").await;
    app.moodle.set_grade(c1, u1, Some(55.0));
    let got = wait_delegates(&app, 1).await;
    assert_eq!(got[0]["score"], 55.0);

    // Two more passes with no change: nothing more written.
    let passes = |jobs: Vec<Value>| {
        jobs.into_iter()
            .filter(|j| j["kind"] == "grades-sync" && j["status"] == "succeeded")
            .count()
    };
    let seen = passes(app.jobs().await);
    let deadline = tokio::time::Instant::now() + SECS;
    while passes(app.jobs().await) < seen + 2 {
        assert!(tokio::time::Instant::now() < deadline, "the poller stopped");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(delegate_bodies(&app).len(), 1);

    // A change is picked up by the next pass, with no request.
    app.moodle.set_grade(c1, u1, Some(56.0));
    let got = wait_delegates(&app, 2).await;
    assert_eq!(delegate_bodies(&app)[1]["score"], 56.0, "{got:?}");

    let page = app.admin_get("/v1/jobs?kind=grades-sync&limit=500").await;
    let jobs = page.body["jobs"].as_array().unwrap();
    // One pass per 200 ms window at most, never two at once.
    let running = jobs.iter().filter(|j| j["status"] == "running").count();
    assert!(running <= 1, "{jobs:?}");
    app.stop().await;
}

/// The number asked for in the README: Moodle calls of one pass over 100 delegates.
async fn calls_for_100_delegates(completion: bool) -> (usize, usize) {
    let app = spawn_app_with(|t| with_grades(t, &format!("completion = {completion}"))).await;
    let courses: Vec<i64> = (0..4)
        .map(|i| seed_course(&app.moodle, "Load", &format!("L{i}"), None))
        .collect();
    for course in &courses {
        app.moodle.set_completion_criteria(*course, true);
    }
    for n in 0..100 {
        let user = seed_user(&app.moodle, &format!("d{n}"), &format!("d{n}@example.com"));
        let course = courses[n % 4];
        app.moodle.add_enrolment(course, user, 5, false);
        // 90 delegates graded, 10 not yet.
        if n < 90 {
            app.moodle
                .set_grade(course, user, Some(50.0 + n as f64 / 4.0));
        }
        app.store
            .put_enrolment(&EnrolmentRecord {
                tenant: TENANT.into(),
                booking_id: format!("D{n}"),
                moodle_course_id: course,
                moodle_user_id: user,
                state: EnrolmentState::Active,
                last_score: None,
            })
            .await
            .unwrap();
    }
    app.moodle.reset_calls();
    let started = Instant::now();
    let job = pass(&app).await;
    let elapsed = started.elapsed();
    assert_eq!(job["grades"]["scores_written"], 90);
    assert_eq!(job["grades"]["no_grade"], 10);
    let (grades, completions) = (
        app.moodle.call_count(GRADE_ITEMS),
        app.moodle.call_count(COMPLETION),
    );
    eprintln!(
        "100 delegates in 4 courses, completion {completion}: {grades} grade-report calls, \
         {completions} completion calls, pass took {elapsed:?}"
    );
    assert_eq!(app.moodle.calls().len(), grades + completions);
    (grades, completions)
}

#[tokio::test]
async fn a_pass_over_100_delegates_makes_one_call_per_course() {
    assert_eq!(calls_for_100_delegates(false).await, (4, 0));
}

#[tokio::test]
async fn with_completion_each_graded_delegate_costs_one_more_call() {
    assert_eq!(calls_for_100_delegates(true).await, (4, 90));
}
