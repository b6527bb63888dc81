//! What each event does in Moodle (SPEC §3), with snapshots of the exact
//! requests sent, and the write-backs that follow.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

/// The Moodle requests made so far, as `function` + form fields (token removed).
fn requests(app: &TestApp) -> Vec<Value> {
    app.moodle
        .calls()
        .into_iter()
        .map(|c| {
            let form: serde_json::Map<String, Value> = c
                .form
                .into_iter()
                .filter(|(k, _)| k != "wsfunction" && k != "moodlewsrestformat")
                .map(|(k, v)| (k, Value::String(v)))
                .collect();
            json!({ "function": c.function, "form": form })
        })
        .collect()
}

async fn run(app: &TestApp, kind: &str, body: &Value) -> Value {
    let a = app.post_event(kind, body, "?wait=10").await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    a.body
}

#[tokio::test]
async fn course_saved_creates_a_course_and_writes_its_id_back() {
    let app = spawn_app().await;
    let out = run(
        &app,
        "course-saved",
        &course_saved("C1001", "First Aid at Work"),
    )
    .await;
    assert_eq!(out["status"], "succeeded");
    let courses = app.moodle.courses();
    assert_eq!(courses.len(), 1);
    let c = &courses[0];
    assert_eq!(c.fullname, "First Aid at Work");
    assert_eq!(c.shortname, "First Aid at Work (C1001)");
    assert_eq!(c.idnumber, "apit-course-C1001");
    assert_eq!(c.category, 5);
    assert_eq!(c.summary, "<p>Aims &amp; goals</p>");
    // 2027-01-12 09:00 London (GMT) and 2027-01-14 17:00.
    assert_eq!(c.startdate, 1799744400);
    assert_eq!(c.enddate, 1799946000);
    assert!(c.visible);
    insta::assert_yaml_snapshot!("course_saved_requests", requests(&app));

    let wb = app.wait_writebacks(1, Duration::from_secs(10)).await;
    assert_eq!(
        wb[0],
        json!({"tenant": TENANT, "entity": "course", "accessplanit_id": "C1001", "moodle_id": c.id})
    );
    let received = &app.callbacks.received()[0];
    assert_eq!(
        received.authorization.as_deref(),
        Some(format!("Bearer {CALLBACK_TOKEN}").as_str())
    );
}

#[tokio::test]
async fn a_course_already_in_moodle_is_linked_by_idnumber_not_created_again() {
    let app = spawn_app().await;
    let existing = seed_course(
        &app.moodle,
        "First Aid at Work",
        "FA-OLD",
        Some("apit-course-C1001"),
    );
    let out = run(
        &app,
        "course-saved",
        &course_saved("C1001", "First Aid at Work"),
    )
    .await;
    assert_eq!(out["moodle"]["course_id"], existing);
    assert_eq!(app.moodle.courses().len(), 1);
    assert_eq!(app.moodle.call_count("core_course_create_courses"), 0);
}

#[tokio::test]
async fn a_given_moodle_id_links_to_that_course_or_fails_naming_it() {
    let app = spawn_app().await;
    let existing = seed_course(&app.moodle, "Their course", "THEIRS", None);
    let mut body = course_saved("C1001", "First Aid");
    body["course"]["moodle_id"] = json!(existing.to_string());
    let out = run(&app, "course-saved", &body).await;
    assert_eq!(out["status"], "succeeded");
    assert_eq!(out["moodle"]["course_id"], existing);
    assert_eq!(app.moodle.courses().len(), 1, "no new course");
    assert_eq!(
        app.moodle.courses()[0].fullname,
        "Their course",
        "linking changes nothing"
    );

    body["course"]["id"] = json!("C2002");
    body["course"]["moodle_id"] = json!(99999);
    let out = run(&app, "course-saved", &body).await;
    assert_eq!(out["status"], "failed");
    assert!(out["error"].as_str().unwrap().contains("99999"), "{out}");
}

#[tokio::test]
async fn a_resave_updates_only_what_changed_and_never_makes_a_second_course() {
    let app = spawn_app().await;
    run(&app, "course-saved", &course_saved("C1001", "First Aid")).await;
    app.moodle.reset_calls();
    // Same content as a new event (new event_id): nothing to send.
    let mut same = course_saved("C1001", "First Aid");
    same["event_id"] = json!("again-1");
    run(&app, "course-saved", &same).await;
    assert_eq!(app.moodle.call_count("core_course_update_courses"), 0);

    let mut renamed = course_saved("C1001", "First Aid (2027 edition)");
    renamed["course"]["end"] = json!("2027-01-15 17:00");
    let out = run(&app, "course-saved", &renamed).await;
    assert_eq!(out["status"], "succeeded");
    insta::assert_yaml_snapshot!("course_resaved_requests", requests(&app));
    let c = &app.moodle.courses()[0];
    assert_eq!(app.moodle.courses().len(), 1);
    assert_eq!(c.fullname, "First Aid (2027 edition)");
    assert_eq!(c.shortname, "First Aid (C1001)", "shortname is not touched");
    assert_eq!(c.enddate, 1800032400);
}

#[tokio::test]
async fn course_date_changed_sends_both_dates() {
    let app = spawn_app().await;
    run(&app, "course-saved", &course_saved("C1001", "First Aid")).await;
    app.moodle.reset_calls();
    let body =
        json!({"course": {"id": "C1001", "start": "2027-07-01 09:00", "end": "2027-07-02 17:00"}});
    let out = run(&app, "course-date-changed", &body).await;
    assert_eq!(out["status"], "succeeded");
    insta::assert_yaml_snapshot!("course_date_changed_requests", requests(&app));
    let c = &app.moodle.courses()[0];
    // British Summer Time: 09:00 local is 08:00Z.
    assert_eq!(c.startdate, 1814428800);
    assert_eq!(c.enddate, 1814544000);

    let unknown =
        json!({"course": {"id": "C404", "start": "2027-07-01 09:00", "end": "2027-07-02 17:00"}});
    let out = run(&app, "course-date-changed", &unknown).await;
    assert_eq!(out["status"], "skipped");
    assert_eq!(out["skip_reason"], "the course is not in Moodle");
}

#[tokio::test]
async fn elearning_uses_the_template_course_and_never_creates_one() {
    let app = spawn_app().await;
    let template_course = seed_course(&app.moodle, "eLearning: GDPR", "GDPR", None);
    let mut saved = json!({"course": {"id": "C3003", "label": "GDPR online", "type": "elearning",
        "template": {"id": "T9", "moodle_id": template_course}}});
    let out = run(&app, "course-saved", &saved).await;
    assert_eq!(out["status"], "succeeded");

    // The booking may omit template.moodle_id: the template link is known now.
    let mut b = booking("D1", "C3003", "U1", "ada@example.com");
    b["course"] = json!({"id": "C3003", "type": "elearning", "template": {"id": "T9"}});
    let out = run(&app, "booking-created", &b).await;
    assert_eq!(out["status"], "succeeded", "{out}");
    assert_eq!(out["moodle"]["course_id"], template_course);
    assert_eq!(app.moodle.courses().len(), 1);

    saved["course"]["template"] = json!({"id": "T10"});
    let out = run(&app, "course-saved", &saved).await;
    assert_eq!(out["status"], "skipped");
    assert_eq!(out["skip_reason"], "template has no Moodle ID");

    app.moodle.reset_calls();
    b["booking"]["id"] = json!("D2");
    b["course"]["template"] = json!({"id": "T10"});
    let out = run(&app, "booking-created", &b).await;
    assert_eq!(out["status"], "skipped");
    assert!(
        app.moodle.calls().is_empty(),
        "nothing is sent for unlinked templates"
    );
}

#[tokio::test]
async fn a_booking_creates_course_user_and_enrolment_and_writes_ids_back() {
    let app = spawn_app().await;
    let body = booking("D555", "C1001", "U9", "Ada.Lovelace+mdl@Example.com");
    let out = run(&app, "booking-created", &body).await;
    assert_eq!(out["status"], "succeeded", "{out}");
    insta::assert_yaml_snapshot!("booking_created_requests", requests(&app));
    let users = app.moodle.users();
    assert_eq!(users.len(), 1);
    let u = &users[0];
    assert_eq!(u.username, "ada.lovelacemdl@example.com");
    assert_eq!(u.email, "Ada.Lovelace+mdl@Example.com");
    assert_eq!(u.idnumber, "apit-user-U9");
    assert_eq!(u.auth, "manual");
    let enrolments = app.moodle.enrolments();
    assert_eq!(enrolments.len(), 1);
    assert_eq!(enrolments[0].userid, u.id);
    assert_eq!(enrolments[0].courseid, app.moodle.courses()[0].id);
    assert_eq!(enrolments[0].roleids, vec![5]);
    assert!(!enrolments[0].suspended);
    assert_eq!(out["moodle"]["user_id"], u.id);

    let mut wb = app.wait_writebacks(2, Duration::from_secs(10)).await;
    wb.sort_by_key(|w| w["entity"].as_str().unwrap().to_string());
    assert_eq!(wb[0]["entity"], "course");
    assert_eq!(
        wb[1],
        json!({"tenant": TENANT, "entity": "user", "accessplanit_id": "U9", "moodle_id": u.id})
    );
}

#[tokio::test]
async fn an_existing_moodle_user_is_matched_by_email_only_when_unique() {
    let app = spawn_app().await;
    let ada = seed_user(&app.moodle, "ada", "ada@example.com");
    let out = run(
        &app,
        "booking-created",
        &booking("D1", "C1", "U1", "ADA@example.com"),
    )
    .await;
    assert_eq!(out["moodle"]["user_id"], ada);
    assert_eq!(app.moodle.users().len(), 1);
    assert_eq!(app.moodle.call_count("core_user_create_users"), 0);
}

#[tokio::test]
async fn a_username_taken_by_another_person_gets_a_suffix() {
    let app =
        spawn_app_with(|t| t.replace("role_id = 5", "role_id = 5\nmatch_users_by_email = false"))
            .await;
    // Someone else already has the username ada@example.com (with another email).
    seed_user(&app.moodle, "ada@example.com", "someone@else.org");
    let out = run(
        &app,
        "booking-created",
        &booking("D1", "C1", "U1", "ada@example.com"),
    )
    .await;
    assert_eq!(out["status"], "succeeded", "{out}");
    let users = app.moodle.users();
    let created = users.iter().find(|u| u.idnumber == "apit-user-U1").unwrap();
    assert_eq!(created.username, "ada@example.com-2");
}

#[tokio::test]
async fn the_events_role_overrides_the_tenants_role() {
    let app = spawn_app().await;
    let mut body = booking("D1", "C1", "U1", "ada@example.com");
    body["role_id"] = json!("3");
    run(&app, "booking-created", &body).await;
    assert_eq!(app.moodle.enrolments()[0].roleids, vec![3]);
}

#[tokio::test]
async fn a_cancellation_suspends_by_default_and_a_rebooking_reactivates() {
    let app = spawn_app().await;
    let body = booking("D1", "C1", "U1", "ada@example.com");
    run(&app, "booking-created", &body).await;
    app.moodle.reset_calls();
    let out = run(&app, "booking-cancelled", &body).await;
    assert_eq!(out["status"], "succeeded", "{out}");
    insta::assert_yaml_snapshot!("booking_cancelled_requests", requests(&app));
    assert!(app.moodle.enrolments()[0].suspended);
    assert_eq!(app.moodle.users().len(), 1, "the user is never deleted");

    let mut again = body.clone();
    again["event_id"] = json!("rebook");
    run(&app, "booking-created", &again).await;
    assert!(!app.moodle.enrolments()[0].suspended);
}

#[tokio::test]
async fn on_cancel_unenrol_and_ignore() {
    let app =
        spawn_app_with(|t| t.replace("role_id = 5", "role_id = 5\non_cancel = \"unenrol\"")).await;
    let body = booking("D1", "C1", "U1", "ada@example.com");
    run(&app, "booking-created", &body).await;
    let out = run(&app, "booking-cancelled", &body).await;
    assert_eq!(out["status"], "succeeded");
    assert!(app.moodle.enrolments().is_empty());
    assert_eq!(app.moodle.users().len(), 1);

    let app =
        spawn_app_with(|t| t.replace("role_id = 5", "role_id = 5\non_cancel = \"ignore\"")).await;
    run(&app, "booking-created", &body).await;
    app.moodle.reset_calls();
    let out = run(&app, "booking-cancelled", &body).await;
    assert_eq!(out["status"], "skipped");
    assert!(app.moodle.calls().is_empty());
}

#[tokio::test]
async fn a_booking_for_a_course_not_synced_is_skipped() {
    let app = spawn_app().await;
    let mut body = booking("D1", "C1", "U1", "ada@example.com");
    body["course"]["sync_to_moodle"] = json!("no");
    let out = run(&app, "booking-created", &body).await;
    assert_eq!(out["status"], "skipped");
    assert!(app.moodle.calls().is_empty());
}

#[tokio::test]
async fn a_callback_outage_retries_the_write_back_but_never_the_moodle_work() {
    let app = spawn_app().await;
    app.callbacks.fail_next(3);
    run(&app, "course-saved", &course_saved("C1", "First Aid")).await;
    let calls = app.moodle.calls().len();
    let wb = app.wait_writebacks(1, Duration::from_secs(15)).await;
    assert_eq!(wb[0]["accessplanit_id"], "C1");
    assert_eq!(app.callbacks.failed(), 3);
    assert_eq!(app.moodle.calls().len(), calls, "Moodle work was repeated");
    // The receiver saw one write-back id across all four deliveries.
    assert!(app.callbacks.received()[0].idempotency_key.is_some());
}
