//! The webhook door: authentication, validation, problem+json, idempotency, `?wait`.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

/// A refused request stores nothing and calls nothing (had it stored a job,
/// `settle` would have let it run first, so its calls would show).
async fn assert_nothing_happened(app: &TestApp) {
    app.settle(Duration::from_secs(10)).await;
    assert!(app.jobs().await.is_empty(), "a job was stored");
    assert!(app.moodle.calls().is_empty(), "Moodle was called");
}

fn assert_problem(a: &Answer, status: StatusCode) {
    assert_eq!(a.status, status, "{:?}", a.body);
    assert_eq!(a.content_type, "application/problem+json");
    assert_eq!(a.body["status"], status.as_u16());
    for key in ["type", "title", "detail"] {
        assert!(a.body[key].is_string(), "{key} missing in {}", a.body);
    }
}

#[tokio::test]
async fn an_event_is_accepted_with_202_and_a_link() {
    let app = spawn_app().await;
    let a = app
        .post_event(
            "course-saved",
            &course_saved("C1001", "First Aid at Work"),
            "",
        )
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{:?}", a.body);
    let id = a.job_id();
    assert!(matches!(
        a.body["status"].as_str(),
        Some("queued" | "running" | "succeeded")
    ));
    assert_eq!(a.body["links"]["self"], format!("/v1/jobs/{id}"));
    assert_eq!(a.headers["location"], format!("/v1/jobs/{id}").as_str());
    let job = app.wait_final(&id, Duration::from_secs(10)).await;
    assert_eq!(job["status"], "succeeded", "{job}");
}

#[tokio::test]
async fn wait_answers_with_the_outcome() {
    let app = spawn_app().await;
    let a = app
        .post_event(
            "course-saved",
            &course_saved("C1001", "First Aid at Work"),
            "?wait=10",
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    assert_eq!(a.body["status"], "succeeded");
    let course_id = a.body["moodle"]["course_id"].as_i64().expect("course id");
    assert_eq!(app.moodle.courses()[0].id, course_id);
    let calls: Vec<&str> = a.body["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["function"].as_str().unwrap())
        .collect();
    assert_eq!(
        calls,
        [
            "core_course_get_courses_by_field",
            "core_course_create_courses"
        ]
    );
}

#[tokio::test]
async fn a_skipped_event_says_why() {
    let app = spawn_app().await;
    let mut body = course_saved("C1001", "First Aid");
    body["course"]["sync_to_moodle"] = json!("No");
    let a = app.post_event("course-saved", &body, "?wait=10").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body["status"], "skipped");
    assert!(
        a.body["skip_reason"]
            .as_str()
            .unwrap()
            .contains("Sync to Moodle")
    );
    assert!(app.moodle.calls().is_empty());
}

#[tokio::test]
async fn malformed_json_is_400() {
    let app = spawn_app().await;
    let a = app
        .post_raw("course-saved", "", |r| {
            r.header("content-type", "application/json")
                .body("{\"course\": ")
        })
        .await;
    assert_problem(&a, StatusCode::BAD_REQUEST);
    assert_nothing_happened(&app).await;
}

#[tokio::test]
async fn every_bad_field_is_listed_with_a_pointer() {
    let app = spawn_app().await;
    let body = json!({
        "booking": {"id": ""},
        "course": {"id": "C1", "type": "seminar", "start": "2027-01-14 09:00", "end": "2027-01-12 09:00"},
        "user": {"id": "U9", "first_name": "Ada", "last_name": "Lovelace", "email": "not-an-email"},
        "role_id": -3
    });
    let a = app.post_event("booking-created", &body, "").await;
    assert_problem(&a, StatusCode::UNPROCESSABLE_ENTITY);
    let mut pointers: Vec<&str> = a.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()));
            e["pointer"].as_str().unwrap()
        })
        .collect();
    pointers.sort();
    assert_eq!(
        pointers,
        [
            "/booking/id",
            "/course/end",
            "/course/type",
            "/role_id",
            "/user/email"
        ]
    );
    assert_nothing_happened(&app).await;
}

#[tokio::test]
async fn missing_fields_are_422() {
    let app = spawn_app().await;
    let a = app
        .post_event("course-date-changed", &json!({"course": {"id": "C1"}}), "")
        .await;
    assert_problem(&a, StatusCode::UNPROCESSABLE_ENTITY);
    let pointers: Vec<&str> = a.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    assert_eq!(pointers, ["/course/start", "/course/end"]);
    assert_nothing_happened(&app).await;
}

#[tokio::test]
async fn a_body_over_256_kib_is_413() {
    let app = spawn_app().await;
    let mut body = course_saved("C1", "First Aid");
    body["padding"] = Value::String("x".repeat(256 * 1024));
    let a = app.post_event("course-saved", &body, "").await;
    assert_problem(&a, StatusCode::PAYLOAD_TOO_LARGE);
    assert_nothing_happened(&app).await;
}

#[tokio::test]
async fn a_wrong_content_type_is_415() {
    let app = spawn_app().await;
    let a = app
        .post_raw("course-saved", "", |r| {
            r.header("content-type", "text/plain")
                .body(course_saved("C1", "First Aid").to_string())
        })
        .await;
    assert_problem(&a, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_nothing_happened(&app).await;
}

#[tokio::test]
async fn missing_or_wrong_secrets_are_401() {
    let app = spawn_app().await;
    let url = format!("{}/v1/tenants/{TENANT}/events/course-saved", app.base);
    let body = course_saved("C1", "First Aid");
    for auth in [None, Some("Bearer wrong-secret"), Some("Basic dGVzdA==")] {
        let mut r = app.http.post(&url).json(&body);
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        let a = Answer::from_response(r.send().await.unwrap()).await;
        assert_problem(&a, StatusCode::UNAUTHORIZED);
        assert_eq!(a.headers["www-authenticate"], "Bearer");
    }
    assert_nothing_happened(&app).await;
}

#[tokio::test]
async fn an_unknown_tenant_or_event_is_404() {
    let app = spawn_app().await;
    for path in [
        "/v1/tenants/nobody/events/course-saved",
        &format!("/v1/tenants/{TENANT}/events/course-deleted"),
    ] {
        let r = app
            .http
            .post(format!("{}{path}", app.base))
            .bearer_auth(WEBHOOK_SECRET)
            .json(&course_saved("C1", "First Aid"))
            .send()
            .await
            .unwrap();
        assert_problem(&Answer::from_response(r).await, StatusCode::NOT_FOUND);
    }
    assert_nothing_happened(&app).await;
}

#[tokio::test]
async fn signed_tenants_need_a_valid_standard_webhooks_signature() {
    let app = spawn_app_with(|toml| {
        toml.replace(
            "category_id = 5",
            "category_id = 5\nsigning_secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"",
        )
    })
    .await;
    let body = course_saved("C1", "First Aid").to_string();
    let unsigned = app
        .post_raw("course-saved", "", |r| {
            r.header("content-type", "application/json")
                .body(body.clone())
        })
        .await;
    assert_problem(&unsigned, StatusCode::UNAUTHORIZED);

    let secret = apit_moodle_sync::secret::Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    let ts = chrono::Utc::now().timestamp();
    let signature = apit_moodle_sync::http::sign(&secret, "msg_1", ts, body.as_bytes());
    let signed = app
        .post_raw("course-saved", "", |r| {
            r.header("content-type", "application/json")
                .header("webhook-id", "msg_1")
                .header("webhook-timestamp", ts.to_string())
                .header("webhook-signature", signature.clone())
                .body(body.clone())
        })
        .await;
    assert_eq!(signed.status, StatusCode::ACCEPTED, "{:?}", signed.body);

    let tampered = app
        .post_raw("course-saved", "", |r| {
            r.header("content-type", "application/json")
                .header("webhook-id", "msg_1")
                .header("webhook-timestamp", ts.to_string())
                .header("webhook-signature", signature)
                .body(body.replace("First Aid", "Last Aid"))
        })
        .await;
    assert_problem(&tampered, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_same_idempotency_key_returns_the_same_job() {
    let app = spawn_app().await;
    let body = course_saved("C1001", "First Aid");
    let first = app
        .post_raw("course-saved", "?wait=10", |r| {
            r.header("idempotency-key", "evt-1").json(&body)
        })
        .await;
    assert_eq!(first.status, StatusCode::OK);
    // A succeeded job is answered with its outcome, whatever the body says now.
    let mut other = body.clone();
    other["course"]["label"] = json!("Renamed");
    let again = app
        .post_raw("course-saved", "", |r| {
            r.header("idempotency-key", "evt-1").json(&other)
        })
        .await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.job_id(), first.job_id());
    assert_eq!(again.body["status"], "succeeded");
    // force=true runs it again as a new job.
    let forced = app
        .post_raw("course-saved", "?force=true&wait=10", |r| {
            r.header("idempotency-key", "evt-1").json(&body)
        })
        .await;
    assert_eq!(forced.status, StatusCode::OK);
    assert_ne!(forced.job_id(), first.job_id());
    assert_eq!(app.moodle.courses().len(), 1);
}

#[tokio::test]
async fn event_id_is_the_key_when_there_is_no_header() {
    let app = spawn_app().await;
    let mut body = course_saved("C1001", "First Aid");
    body["event_id"] = json!("wf-123");
    let first = app.post_event("course-saved", &body, "?wait=10").await;
    body["course"]["label"] = json!("Something else");
    let again = app.post_event("course-saved", &body, "").await;
    assert_eq!(again.job_id(), first.job_id());
    assert_eq!(app.jobs().await.len(), 1);
}

#[tokio::test]
async fn a_resend_of_the_newest_body_costs_nothing_but_a_to_b_to_a_ends_as_a() {
    let app = spawn_app().await;
    let a = course_saved("C1001", "Version A");
    let b = course_saved("C1001", "Version B");
    let first = app.post_event("course-saved", &a, "?wait=10").await;
    // A workflow firing on every save re-sends the same body: same job, no Moodle call.
    let calls = app.moodle.calls().len();
    let resend = app.post_event("course-saved", &a, "?wait=10").await;
    assert_eq!(resend.job_id(), first.job_id());
    assert_eq!(app.moodle.calls().len(), calls);

    let to_b = app.post_event("course-saved", &b, "?wait=10").await;
    assert_ne!(to_b.job_id(), first.job_id());
    let back = app.post_event("course-saved", &a, "?wait=10").await;
    assert_ne!(back.job_id(), first.job_id(), "A after B must run again");
    assert_eq!(back.body["status"], "succeeded");
    let courses = app.moodle.courses();
    assert_eq!(courses.len(), 1);
    assert_eq!(courses[0].fullname, "Version A");
}

#[tokio::test]
async fn lenient_variants_of_one_event_are_one_resend() {
    let app = spawn_app().await;
    let strict = course_saved("1001", "First Aid");
    let lenient = json!({
        "course": {
            "id": 1001, "label": " First Aid ", "type": "Classroom", "sync_to_moodle": "1",
            "start": "12/01/2027 09:00", "end": "2027-01-14T17:00:00Z",
            "template": {"id": "T77", "name": "First Aid", "aims": "<p>Aims &amp; goals</p>"},
            "moodle_id": ""
        },
        "unknown": "ignored"
    });
    let first = app.post_event("course-saved", &strict, "?wait=10").await;
    let second = app.post_event("course-saved", &lenient, "").await;
    assert_eq!(first.job_id(), second.job_id());
}

#[tokio::test]
async fn health_and_readiness() {
    let app = spawn_app().await;
    assert_eq!(app.get("/healthz").await.status, StatusCode::OK);
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.body["status"], "ready");
    let missing = app.get("/nowhere").await;
    assert_problem(&missing, StatusCode::NOT_FOUND);
    let request_id = app.get("/healthz").await.headers["x-request-id"].clone();
    assert!(!request_id.is_empty());
}
