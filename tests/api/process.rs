//! The built binary as a process: killed with SIGKILL mid-burst, stopped with
//! SIGTERM, started with a bad configuration; its logs never hold a secret.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::*;

const BIN: &str = env!("CARGO_BIN_EXE_apit-moodle-sync");

/// A free loopback port (bound, then released for the child to take).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Service {
    child: Child,
    base: String,
    http: reqwest::Client,
}

impl Service {
    /// Starts the binary on `config` and waits until it is ready.
    async fn start(config: &Path, log: &Path) -> Service {
        let text = std::fs::read_to_string(config).unwrap();
        let port: u16 = text
            .lines()
            .find_map(|l| l.strip_prefix("listen = \"127.0.0.1:"))
            .and_then(|rest| rest.trim_end_matches('"').parse().ok())
            .expect("listen line");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(config)
            .env("RUST_LOG", "trace")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("binary starts");
        let service = Service {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = service
                .http
                .get(format!("{}/readyz", service.base))
                .send()
                .await
            {
                if r.status() == StatusCode::OK {
                    return service;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "service did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn post(&self, kind: &str, body: &Value) -> StatusCode {
        self.http
            .post(format!("{}/v1/tenants/{TENANT}/events/{kind}", self.base))
            .bearer_auth(WEBHOOK_SECRET)
            .json(body)
            .send()
            .await
            .unwrap()
            .status()
    }

    async fn jobs(&self) -> Vec<Value> {
        let r = self
            .http
            .get(format!("{}/v1/jobs?limit=500", self.base))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        let body: Value = r.json().await.unwrap();
        body["jobs"].as_array().cloned().unwrap_or_default()
    }
}

/// A configuration file for the binary, on a fresh SQLite file.
fn write_config(
    dir: &Path,
    moodle: &FakeMoodle,
    receiver: &CallbackReceiver,
    lease: &str,
) -> PathBuf {
    let db = format!("sqlite://{}", dir.join("service.db").display());
    let toml = test_config(&db, moodle, receiver)
        .replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{}\"", free_port()),
        )
        .replace("lease = \"5s\"", &format!("lease = \"{lease}\""));
    let path = dir.join("config.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

fn assert_no_secret_in(log: &Path, secrets: &[&str]) {
    let text = std::fs::read_to_string(log).unwrap();
    assert!(text.len() > 1000, "the log is suspiciously short:\n{text}");
    for secret in secrets {
        assert!(!text.contains(secret), "a secret appears in the log");
    }
}

#[tokio::test]
async fn a_killed_service_finishes_every_accepted_event_once_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let moodle = FakeMoodle::start().await;
    let receiver = CallbackReceiver::start().await;
    moodle.set_latency(Duration::from_millis(100));
    let config = write_config(dir.path(), &moodle, &receiver, "2s");
    let log = dir.path().join("service.log");

    let service = Service::start(&config, &log).await;
    let mut expected = 0;
    for user in 0..8 {
        for course in 0..3 {
            let body = booking(
                &format!("D{user}-{course}"),
                &format!("C{course}"),
                &format!("U{user}"),
                &format!("user{user}@example.com"),
            );
            assert_eq!(
                service.post("booking-created", &body).await,
                StatusCode::ACCEPTED
            );
            expected += 1;
        }
    }
    // Let some jobs get half-way through their Moodle calls, then kill -9.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while moodle.call_count("enrol_manual_enrol_users") < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no progress before the kill"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut service = service;
    service.child.kill().unwrap(); // SIGKILL
    service.child.wait().unwrap();
    let done_before = moodle.enrolments().len();
    assert!(
        done_before < expected,
        "the kill came too late to prove anything"
    );

    let service = Service::start(&config, &log).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let jobs = loop {
        let jobs = service.jobs().await;
        if jobs.len() == expected && jobs.iter().all(|j| j["status"] == "succeeded") {
            break jobs;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not all jobs succeeded: {jobs:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(jobs.len(), expected);
    assert_eq!(moodle.courses().len(), 3, "{:?}", moodle.courses());
    assert_eq!(moodle.users().len(), 8, "{:?}", moodle.users());
    assert_eq!(moodle.enrolments().len(), expected);
    let mut service = service;
    service.child.kill().unwrap();
    service.child.wait().unwrap();
    assert_no_secret_in(
        &log,
        &[
            moodle.token().as_str(),
            WEBHOOK_SECRET,
            ADMIN_TOKEN,
            CALLBACK_TOKEN,
        ],
    );
}

#[tokio::test]
async fn sigterm_drains_in_flight_jobs_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let moodle = FakeMoodle::start().await;
    let receiver = CallbackReceiver::start().await;
    moodle.set_latency(Duration::from_millis(400));
    let config = write_config(dir.path(), &moodle, &receiver, "30s");
    let log = dir.path().join("service.log");
    let mut service = Service::start(&config, &log).await;

    let body = booking("D1", "C1", "U1", "ada@example.com");
    assert_eq!(
        service.post("booking-created", &body).await,
        StatusCode::ACCEPTED
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while moodle.calls().is_empty() {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let status = Command::new("kill")
        .args(["-TERM", &service.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());

    // Readiness turns 503 while the job drains.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let r = service
            .http
            .get(format!("{}/readyz", service.base))
            .send()
            .await;
        if let Ok(r) = r {
            if r.status() == StatusCode::SERVICE_UNAVAILABLE {
                break;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "readyz never went 503"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let exit = tokio::task::spawn_blocking(move || service.child.wait().unwrap())
        .await
        .unwrap();
    assert!(exit.success(), "exit status {exit:?}");
    assert_eq!(
        moodle.enrolments().len(),
        1,
        "the in-flight job finished before exit"
    );
}

#[tokio::test]
async fn a_configuration_error_names_the_key_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[tenants.acme]\nwebhook_secret = \"s\"\nmoodle_url = \"not a url\"\nmoodle_token = \"t\"\ncategory_id = 5\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("tenants.acme.moodle_url"), "{stderr}");
}

#[tokio::test]
async fn operator_actions_are_logged_with_who_made_them_and_never_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let moodle = FakeMoodle::start().await;
    let receiver = CallbackReceiver::start().await;
    let config = write_config(dir.path(), &moodle, &receiver, "5s");
    let operator_token = "test-operator-token-log-6d2f";
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[operators.night-shift]\ntoken = \"{operator_token}\"\ntenants = [\"{TENANT}\"]\n"
    ));
    std::fs::write(&config, text).unwrap();
    let log = dir.path().join("service.log");
    let mut service = Service::start(&config, &log).await;

    let mut body = course_saved("C1", "First Aid");
    body["course"]["moodle_id"] = serde_json::json!(4242);
    let a = service
        .http
        .post(format!(
            "{}/v1/tenants/{TENANT}/events/course-saved?wait=10",
            service.base
        ))
        .bearer_auth(WEBHOOK_SECRET)
        .json(&body)
        .send()
        .await
        .unwrap();
    let job: Value = a.json().await.unwrap();
    assert_eq!(job["status"], "failed", "{job}");
    let id = job["job_id"].as_str().unwrap();
    let retry = service
        .http
        .post(format!("{}/v1/jobs/{id}/retry", service.base))
        .bearer_auth(operator_token)
        .send()
        .await
        .unwrap();
    assert_eq!(retry.status(), StatusCode::ACCEPTED);
    let grades = service
        .http
        .post(format!(
            "{}/v1/tenants/{TENANT}/grades/sync?wait=10",
            service.base
        ))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(grades.status(), StatusCode::OK);
    service.child.kill().unwrap();
    service.child.wait().unwrap();

    let text = std::fs::read_to_string(&log).unwrap();
    let line = |needle: &str| {
        text.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} line in:\n{text}"))
            .to_string()
    };
    let retried = line("job re-queued by an operator");
    assert!(
        retried.contains("night-shift") && retried.contains(id),
        "{retried}"
    );
    let pass = line("grades pass requested by an operator");
    assert!(pass.contains("admin"), "{pass}");
    assert_no_secret_in(&log, &[operator_token, ADMIN_TOKEN, WEBHOOK_SECRET]);
}
