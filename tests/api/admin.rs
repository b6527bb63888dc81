//! The admin API: job lists, details with every attempt, retries.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn the_admin_api_needs_the_admin_token() {
    let app = spawn_app().await;
    for path in ["/v1/jobs", "/v1/jobs/00000000-0000-0000-0000-000000000000"] {
        let none = app.get(path).await;
        assert_eq!(none.status, StatusCode::UNAUTHORIZED);
        assert_eq!(none.content_type, "application/problem+json");
        let webhook_secret = app
            .http
            .get(format!("{}{path}", app.base))
            .bearer_auth(WEBHOOK_SECRET)
            .send()
            .await
            .unwrap();
        assert_eq!(webhook_secret.status(), StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test]
async fn a_job_shows_every_attempt_with_its_moodle_calls() {
    let app = spawn_app().await;
    app.moodle.fail_next(1, Fault::Http503);
    let a = app
        .post_event("course-saved", &course_saved("C1", "First Aid"), "")
        .await;
    let job = app.wait_final(&a.job_id(), Duration::from_secs(10)).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["attempts"], 2);
    let history = job["history"].as_array().unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0]["number"], 1);
    assert!(
        history[0]["error"].as_str().unwrap().contains("503"),
        "{}",
        history[0]
    );
    assert_eq!(
        history[0]["calls"][0]["function"],
        "core_course_get_courses_by_field"
    );
    assert!(history[0]["started_at"].is_string());
    assert_eq!(history[1]["error"], serde_json::Value::Null);
    assert_eq!(job["event"]["course"]["id"], "C1");
    assert_eq!(job["kind"], "course-saved");
    assert_eq!(job["tenant"], TENANT);
}

#[tokio::test]
async fn jobs_are_listed_newest_first_with_filters_and_a_cursor() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for n in 0..5 {
        let a = app
            .post_event(
                "course-saved",
                &course_saved(&format!("C{n}"), "First Aid"),
                "",
            )
            .await;
        ids.push(a.job_id());
    }
    let mut skipped = course_saved("C9", "First Aid");
    skipped["course"]["sync_to_moodle"] = json!(false);
    app.post_event("course-saved", &skipped, "?wait=10").await;
    app.drain(Duration::from_secs(10)).await;

    let page = app
        .admin_get("/v1/jobs?limit=3&kind=course-saved&status=succeeded")
        .await;
    assert_eq!(page.status, StatusCode::OK);
    let got: Vec<String> = page.body["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["job_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, [ids[4].clone(), ids[3].clone(), ids[2].clone()]);
    let cursor = page.body["next_cursor"].as_str().unwrap();
    let next = app
        .admin_get(&format!(
            "/v1/jobs?limit=3&status=succeeded&cursor={cursor}"
        ))
        .await;
    let rest: Vec<&str> = next.body["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["job_id"].as_str().unwrap())
        .collect();
    assert_eq!(rest, [ids[1].as_str(), ids[0].as_str()]);

    let skipped = app
        .admin_get(&format!("/v1/jobs?status=skipped&tenant={TENANT}"))
        .await;
    assert_eq!(skipped.body["jobs"].as_array().unwrap().len(), 1);
    let bad = app.admin_get("/v1/jobs?status=finished").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_failed_job_can_be_retried_after_the_data_is_fixed() {
    let app = spawn_app().await;
    let mut body = course_saved("C1", "First Aid");
    body["course"]["moodle_id"] = json!(424242);
    let a = app.post_event("course-saved", &body, "?wait=10").await;
    assert_eq!(a.body["status"], "failed", "{:?}", a.body);
    let error = a.body["error"].as_str().unwrap();
    assert!(error.contains("424242"), "{error}");
    let id = a.job_id();
    assert_eq!(a.body["links"]["retry"], format!("/v1/jobs/{id}/retry"));

    // Not retryable while it is succeeded/queued; retryable when failed.
    let course = seed_course(&app.moodle, "Existing", "EXIST-1", None);
    assert_ne!(course, 424242);
    let retried = app.admin_post(&format!("/v1/jobs/{id}/retry")).await;
    assert_eq!(retried.status, StatusCode::ACCEPTED);
    assert_eq!(retried.body["status"], "queued");
    let job = app.wait_final(&id, Duration::from_secs(10)).await;
    assert_eq!(job["status"], "failed", "still no course 424242");
    assert_eq!(job["attempts"], 2);

    let ok = app
        .post_event("course-saved", &course_saved("C2", "Fine"), "?wait=10")
        .await;
    let again = app
        .admin_post(&format!("/v1/jobs/{}/retry", ok.job_id()))
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    let unknown = app
        .admin_post("/v1/jobs/00000000-0000-7000-8000-000000000000/retry")
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}
