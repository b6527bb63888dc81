//! `apit-moodle-sync jobs …` against a running service.

use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::support::*;

const BIN: &str = env!("CARGO_BIN_EXE_apit-moodle-sync");

/// Runs a command off the test's runtime thread, which also serves the app.
async fn output(mut command: Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

/// Runs the CLI against `app`; returns (success, stdout, stderr).
async fn cli(app: &TestApp, args: &[&str]) -> (bool, String, String) {
    let mut command = Command::new(BIN);
    command
        .arg("jobs")
        .args(["--url", &app.base])
        .args(args)
        .env("APIT_ADMIN_TOKEN", ADMIN_TOKEN);
    let out = output(command).await;
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn list_show_search_retry_and_bulk_retry() {
    let app = spawn_app_with(|t| t.replace("max_age = \"1h\"", "max_age = \"300ms\"")).await;
    let mut broken = booking("D555", "C1", "U1", "ada@example.com");
    broken["course"]["moodle_id"] = json!(99999);
    let failed = app.post_event("booking-created", &broken, "?wait=10").await;
    assert_eq!(failed.body["status"], "failed");
    let failed_id = failed.job_id();
    app.post_event("course-saved", &course_saved("C2", "Fine"), "?wait=10")
        .await;
    app.moodle.set_token_valid(false);
    let dead = app
        .post_event(
            "booking-created",
            &booking("D777", "C3", "U3", "alan@example.com"),
            "",
        )
        .await;
    let dead_id = dead.job_id();
    let job = app.wait_final(&dead_id, Duration::from_secs(20)).await;
    assert_eq!(job["status"], "dead", "{job}");

    let (ok, out, err) = cli(&app, &["list", "--status", "failed"]).await;
    assert!(ok, "{err}");
    assert!(out.contains(&failed_id) && out.contains("99999"), "{out}");
    assert!(!out.contains(&dead_id), "{out}");
    assert!(out.contains("1 job(s)"));

    let (ok, out, _) = cli(&app, &["list", "--ref", "D555", "--json"]).await;
    assert!(ok);
    let found: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(found.as_array().unwrap().len(), 1);
    assert_eq!(found[0]["job_id"], failed_id.as_str());

    let (ok, out, _) = cli(&app, &["show", &failed_id]).await;
    assert!(ok);
    assert!(out.contains("status: failed"), "{out}");
    assert!(out.contains("attempt 1"), "{out}");
    assert!(out.contains("core_course_get_courses_by_field"), "{out}");
    assert!(
        out.contains("correct the Moodle ID in accessplanit"),
        "{out}"
    );

    let (ok, out, _) = cli(&app, &["retry", &failed_id]).await;
    assert!(ok);
    assert!(out.contains("queued"), "{out}");
    let (ok, _, err) = cli(&app, &["retry", &failed_id]).await;
    assert!(!ok, "a queued or running job cannot be retried");
    assert!(
        err.contains("409") || err.contains("only failed or dead"),
        "{err}"
    );

    app.moodle.set_token_valid(true);
    let (ok, out, _) = cli(&app, &["retry", "--status", "dead", "--tenant", TENANT]).await;
    assert!(ok);
    assert!(out.contains("re-queued 1 of 1"), "{out}");
    let job = app.wait_final(&dead_id, Duration::from_secs(20)).await;
    assert_eq!(job["status"], "succeeded", "{job}");
}

#[tokio::test]
async fn a_wrong_token_or_a_stopped_service_is_one_clear_line() {
    let app = spawn_app().await;
    let mut command = Command::new(BIN);
    command
        .args(["jobs", "--url", &app.base, "list"])
        .env("APIT_ADMIN_TOKEN", "wrong");
    let out = output(command).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("401"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");

    let mut command = Command::new(BIN);
    command
        .args(["jobs", "--url", "http://127.0.0.1:9", "list"])
        .env("APIT_ADMIN_TOKEN", ADMIN_TOKEN);
    let out = output(command).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach"));
}
