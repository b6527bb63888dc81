//! Operator tokens in the admin API: a scoped operator sees and acts on its
//! tenants only, and everything else answers 404 as if it did not exist; the
//! admin token still sees everything; every state change is logged with who
//! made it, never with the token.

use std::time::Duration;

use reqwest::StatusCode;

use crate::console::{
    OPERATOR_TOKEN, OTHER_TENANT, booking_on_missing_course, post_other, spawn_console_app,
};
use crate::support::*;

async fn as_operator(app: &TestApp, method: reqwest::Method, path: &str) -> Answer {
    let r = app
        .http
        .request(method, format!("{}{path}", app.base))
        .bearer_auth(OPERATOR_TOKEN)
        .send()
        .await
        .unwrap();
    Answer::from_response(r).await
}

fn ids(page: &Answer) -> Vec<String> {
    page.body["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["job_id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_scoped_operator_sees_only_its_tenants_in_the_admin_api() {
    let app = spawn_console_app().await;
    let ours = app
        .post_event(
            "booking-created",
            &booking_on_missing_course("D1"),
            "?wait=10",
        )
        .await;
    let theirs = post_other(&app, "booking-created", &booking_on_missing_course("D2")).await;
    assert_eq!(theirs.body["status"], "failed", "{:?}", theirs.body);
    let (ours, theirs) = (ours.job_id(), theirs.job_id());
    let get = reqwest::Method::GET;
    let post = reqwest::Method::POST;

    let all = as_operator(&app, get.clone(), "/v1/jobs").await;
    assert_eq!(all.status, StatusCode::OK);
    assert_eq!(ids(&all), std::slice::from_ref(&ours));
    let by_ref = as_operator(&app, get.clone(), "/v1/jobs?ref=D2").await;
    assert!(ids(&by_ref).is_empty());
    let filtered = as_operator(
        &app,
        get.clone(),
        &format!("/v1/jobs?tenant={OTHER_TENANT}"),
    )
    .await;
    assert_eq!(filtered.status, StatusCode::OK);
    assert!(ids(&filtered).is_empty());
    assert_eq!(
        ids(&app.admin_get("/v1/jobs").await).len(),
        2,
        "the admin sees both"
    );

    // The other tenant's things do not exist for the operator.
    for (method, path) in [
        (get.clone(), format!("/v1/jobs/{theirs}")),
        (post.clone(), format!("/v1/jobs/{theirs}/retry")),
        (get.clone(), format!("/v1/tenants/{OTHER_TENANT}/check")),
        (
            post.clone(),
            format!("/v1/tenants/{OTHER_TENANT}/grades/sync"),
        ),
    ] {
        let a = as_operator(&app, method.clone(), &path).await;
        assert_eq!(
            a.status,
            StatusCode::NOT_FOUND,
            "{method} {path}: {:?}",
            a.body
        );
        assert_eq!(a.content_type, "application/problem+json");
    }
    let unknown = as_operator(
        &app,
        get.clone(),
        "/v1/jobs/00000000-0000-7000-8000-000000000000",
    )
    .await;
    let hidden = as_operator(&app, get.clone(), &format!("/v1/jobs/{theirs}")).await;
    assert_eq!(
        hidden.body["title"], unknown.body["title"],
        "a hidden job reads like an unknown one"
    );
    // Its own tenant works as for the admin.
    let own = as_operator(&app, get.clone(), &format!("/v1/jobs/{ours}")).await;
    assert_eq!(own.status, StatusCode::OK);
    assert!(own.body["history"].is_array());
    let retried = as_operator(&app, post.clone(), &format!("/v1/jobs/{ours}/retry")).await;
    assert_eq!(retried.status, StatusCode::ACCEPTED, "{:?}", retried.body);
    let check = as_operator(&app, get.clone(), &format!("/v1/tenants/{TENANT}/check")).await;
    assert_eq!(check.status, StatusCode::OK);
    let grades = as_operator(
        &app,
        post.clone(),
        &format!("/v1/tenants/{TENANT}/grades/sync"),
    )
    .await;
    assert_eq!(grades.status, StatusCode::ACCEPTED, "{:?}", grades.body);

    app.settle(Duration::from_secs(10)).await;
    assert_eq!(app.job(&theirs).await["attempts"], 1, "not retried");
    let wrong = app
        .http
        .get(format!("{}/v1/jobs", app.base))
        .bearer_auth("not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
}
