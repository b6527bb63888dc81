//! `/metrics` moves by the right amounts.

use std::time::Duration;

use serde_json::json;

use crate::support::*;

/// The value of one sample line, 0 when absent.
fn sample(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(name_and_labels)
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

#[tokio::test]
async fn counters_follow_events_jobs_and_moodle_calls() {
    let app = spawn_app().await;
    for n in 0..3 {
        app.post_event(
            "course-saved",
            &course_saved(&format!("C{n}"), "First Aid"),
            "?wait=10",
        )
        .await;
    }
    app.post_event("course-saved", &course_saved("C0", "First Aid"), "")
        .await; // a re-send
    app.post_event("course-saved", &json!({"course": {"id": "C9"}}), "")
        .await; // 422
    app.post_event(
        "booking-created",
        &booking("D1", "C0", "U1", "ada@example.com"),
        "?wait=10",
    )
    .await;
    app.wait_writebacks(4, Duration::from_secs(10)).await;

    // A delivery is counted just after the receiver saw it: scrape until it shows.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let text = loop {
        let scrape = app.get("/metrics").await;
        assert_eq!(scrape.status, reqwest::StatusCode::OK);
        let text = scrape.body.as_str().expect("text").to_string();
        let delivered = ["course", "user"].map(|e| {
            sample(
                &text,
                &format!("apit_callback_calls_total{{entity=\"{e}\",outcome=\"delivered\"}}"),
            )
        });
        if delivered == [3.0, 1.0] || tokio::time::Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let events = |kind: &str, outcome: &str, status: u16| {
        sample(
            &text,
            &format!(
                "apit_events_received_total{{tenant=\"acme\",kind=\"{kind}\",outcome=\"{outcome}\",status=\"{status}\"}}"
            ),
        )
    };
    assert_eq!(events("course-saved", "accepted", 200), 3.0, "{text}");
    assert_eq!(events("course-saved", "duplicate", 200), 1.0);
    assert_eq!(events("course-saved", "rejected", 422), 1.0);
    assert_eq!(events("booking-created", "accepted", 200), 1.0);
    assert_eq!(
        sample(&text, "apit_jobs{tenant=\"acme\",status=\"succeeded\"}"),
        4.0
    );
    assert_eq!(
        sample(
            &text,
            "apit_moodle_calls_total{function=\"core_course_create_courses\",outcome=\"ok\"}"
        ),
        3.0
    );
    assert_eq!(
        sample(
            &text,
            "apit_moodle_calls_total{function=\"enrol_manual_enrol_users\",outcome=\"ok\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            "apit_moodle_call_duration_seconds_count{function=\"core_course_create_courses\"}"
        ),
        3.0
    );
    assert_eq!(
        sample(
            &text,
            "apit_callback_calls_total{entity=\"course\",outcome=\"delivered\"}"
        ),
        3.0
    );
    assert_eq!(
        sample(
            &text,
            "apit_callback_calls_total{entity=\"user\",outcome=\"delivered\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            "apit_job_duration_seconds_count{kind=\"course-saved\",status=\"succeeded\"}"
        ),
        3.0
    );
    assert!(
        !text.contains("C0") && !text.contains("D1"),
        "an ID became a label"
    );
}

#[tokio::test]
async fn a_fresh_service_exports_every_family_with_zero_samples() {
    let app = spawn_app_with(|toml| {
        let second = toml
            .split("[tenants.acme]")
            .nth(1)
            .and_then(|t| t.split("[tenants.acme.callback]").next())
            .unwrap()
            .to_string();
        format!("{toml}\n[tenants.beta]{second}")
    })
    .await;
    let scrape = app.get("/metrics").await;
    assert_eq!(scrape.status, reqwest::StatusCode::OK);
    let text = scrape.body.as_str().expect("text").to_string();
    for family in [
        "apit_events_received",
        "apit_jobs",
        "apit_queue_oldest_age_seconds",
        "apit_job_duration_seconds",
        "apit_moodle_calls",
        "apit_moodle_call_duration_seconds",
        "apit_callback_calls",
        "apit_callback_duration_seconds",
        "apit_build_info",
        "process_cpu_seconds",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
        "process_threads",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{family} missing:\n{text}"
        );
    }
    let has = |line: &str| text.lines().any(|l| l == line);
    for tenant in ["acme", "beta"] {
        for status in [
            "queued",
            "running",
            "succeeded",
            "skipped",
            "failed",
            "dead",
        ] {
            assert!(
                has(&format!(
                    "apit_jobs{{tenant=\"{tenant}\",status=\"{status}\"}} 0"
                )),
                "jobs of {tenant} {status}:\n{text}"
            );
        }
        assert!(
            has(&format!(
                "apit_queue_oldest_age_seconds{{tenant=\"{tenant}\"}} 0.0"
            )),
            "{text}"
        );
        assert!(has(&format!(
            "apit_events_received_total{{tenant=\"{tenant}\",kind=\"booking-created\",outcome=\"accepted\",status=\"202\"}} 0"
        )));
    }
    assert!(has(&format!(
        "apit_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    )));
    assert!(has(
        "apit_moodle_calls_total{function=\"core_user_create_users\",outcome=\"ok\"} 0"
    ));
    assert!(sample(&text, "process_resident_memory_bytes") > 0.0);
    assert!(sample(&text, "process_start_time_seconds") > 1.6e9);
    assert!(text.trim_end().ends_with("# EOF"));
}
