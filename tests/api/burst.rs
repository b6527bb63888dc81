//! Bursts: Moodle calls shared between jobs (look-ups, enrolments), a refused
//! batch split down to the bad item, bookings of one course in parallel, the
//! per-tenant rate limit, and one tenant's backlog never holding up another.

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use apit_moodle_sync::moodle::{
    Enrolment, ErrorClass, Moodle, MoodleClient, MoodleError, Pacing, UserField,
};
use apit_moodle_sync::store::{Link, LinkKind};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

const LOOKUPS: &str = "core_user_get_users_by_field";
const ENROL: &str = "enrol_manual_enrol_users";

/// A batching client for the simulator; its window is wide so that every
/// request of a test is in the first batch.
fn batching_client(moodle: &FakeMoodle, max_concurrency: usize, pacing: Pacing) -> MoodleClient {
    MoodleClient::new(
        &moodle.url(),
        moodle.token().into(),
        Duration::from_secs(10),
        max_concurrency,
    )
    .unwrap()
    .with_pacing(pacing)
}

fn window(ms: u64) -> Pacing {
    Pacing {
        batch_window: Duration::from_millis(ms),
        max_calls_per_second: None,
    }
}

/// A course in the simulator and `n` users with apit idnumbers.
fn course_and_users(moodle: &FakeMoodle, n: usize) -> (i64, Vec<i64>) {
    let course = seed_course(moodle, "Burst", "BURST", Some("apit-course-B"));
    let users = (0..n)
        .map(|i| {
            let mut seed = UserSeed::new(&format!("u{i}"), &format!("u{i}@example.com"));
            seed.idnumber = format!("apit-user-U{i}");
            moodle.add_user(seed)
        })
        .collect();
    (course, users)
}

#[tokio::test]
async fn concurrent_look_ups_and_enrolments_share_calls() {
    let moodle = FakeMoodle::start().await;
    let (course, users) = course_and_users(&moodle, 120);
    let client = batching_client(&moodle, 4, window(200));
    let sessions: Vec<_> = (0..users.len()).map(|_| client.session()).collect();

    let found = futures::future::join_all(sessions.iter().enumerate().map(|(i, s)| {
        let idnumber = format!("apit-user-U{i}");
        async move { s.users_by_field(UserField::Idnumber, &idnumber).await }
    }))
    .await;
    for (i, users_found) in found.into_iter().enumerate() {
        let ids: Vec<i64> = users_found.unwrap().iter().map(|u| u.id).collect();
        assert_eq!(ids, vec![users[i]], "each job gets its own user");
    }
    // 120 values, at most 100 per call.
    assert_eq!(moodle.call_count(LOOKUPS), 2);

    let enrolled = futures::future::join_all(sessions.iter().zip(&users).map(|(s, &userid)| {
        let e = Enrolment {
            roleid: 5,
            userid,
            courseid: course,
            suspend: false,
        };
        async move { s.enrol(&e).await }
    }))
    .await;
    assert!(enrolled.iter().all(Result::is_ok), "{enrolled:?}");
    // 120 enrolments, 50 per call.
    assert_eq!(moodle.call_count(ENROL), 3);
    assert_eq!(moodle.enrolments().len(), 120);
    // Each job's history names the batched call it rode in.
    let call = &sessions[0].calls()[1];
    assert_eq!(call.function, ENROL);
    assert!(matches!(call.batch, Some(20 | 50)), "{call:?}");
}

#[tokio::test]
async fn a_refused_enrolment_batch_is_split_and_only_the_bad_one_fails() {
    let moodle = FakeMoodle::start().await;
    let (course, users) = course_and_users(&moodle, 40);
    let client = batching_client(&moodle, 4, window(200));
    let sessions: Vec<_> = (0..users.len()).map(|_| client.session()).collect();
    let bad = 17;
    let results = futures::future::join_all(sessions.iter().zip(&users).enumerate().map(
        |(i, (s, &userid))| {
            // One enrolment names a course that does not exist.
            let courseid = if i == bad { 999_999 } else { course };
            let e = Enrolment {
                roleid: 5,
                userid,
                courseid,
                suspend: false,
            };
            async move { s.enrol(&e).await }
        },
    ))
    .await;
    for (i, result) in results.iter().enumerate() {
        if i == bad {
            let error: &MoodleError = result.as_ref().unwrap_err();
            assert_eq!(error.errorcode(), Some("invalidparameter"), "{error}");
            assert_eq!(error.class(), ErrorClass::Data, "{error}");
        } else {
            assert!(result.is_ok(), "job {i}: {result:?}");
        }
    }
    assert_eq!(moodle.enrolments().len(), 39);
    // The bad job's history: the batch of 40, then halves down to itself alone.
    let sizes: Vec<Option<u32>> = sessions[bad].calls().iter().map(|c| c.batch).collect();
    assert_eq!(sizes.first(), Some(&Some(40)), "{sizes:?}");
    assert_eq!(sizes.last(), Some(&Some(1)), "{sizes:?}");
    // 1 + 2 + 2 + 2 + 2 + 2 + 2: each split costs two calls on the bad path only.
    assert!(
        moodle.call_count(ENROL) <= 1 + 2 * 6,
        "{}",
        moodle.call_count(ENROL)
    );
}

#[tokio::test]
async fn calls_per_second_are_capped_at_the_site() {
    let moodle = FakeMoodle::start().await;
    let limit = 10;
    let client = batching_client(
        &moodle,
        4,
        Pacing {
            batch_window: Duration::from_millis(5),
            max_calls_per_second: NonZeroU32::new(limit),
        },
    );
    let sessions: Vec<_> = (0..25).map(|_| client.session()).collect();
    let results =
        futures::future::join_all(sessions.iter().map(|s| async move { s.site_info().await }))
            .await;
    assert!(results.iter().all(Result::is_ok));
    // Measured where Moodle sees them: no second holds more than the limit.
    let times: Vec<Instant> = moodle.calls().iter().map(|c| c.at).collect();
    assert_eq!(times.len(), 25);
    for (i, start) in times.iter().enumerate() {
        let in_second = times[i..]
            .iter()
            .take_while(|t| t.duration_since(*start) < Duration::from_secs(1))
            .count();
        assert!(
            in_second <= limit as usize + 1,
            "{in_second} calls within a second"
        );
    }
}

/// `n` bookings of people already in Moodle (found by idnumber) on one course
/// that is already linked, posted at once.
async fn book_many(app: &TestApp, n: usize, edit: impl Fn(usize, &mut Value)) {
    let sends = (0..n).map(|i| {
        let mut body = booking(
            &format!("D{i}"),
            "C1",
            &format!("U{i}"),
            &format!("u{i}@example.com"),
        );
        edit(i, &mut body);
        async move { app.post_event("booking-created", &body, "").await }
    });
    for a in futures::future::join_all(sends).await {
        assert_eq!(a.status, StatusCode::ACCEPTED, "{:?}", a.body);
    }
}

/// Links accessplanit course C1 to the simulator's course.
async fn link_course(app: &TestApp, course: i64) {
    let link = Link {
        moodle_id: course,
        last_sent: None,
    };
    app.store
        .put_link(TENANT, LinkKind::Course, "C1", &link)
        .await
        .unwrap();
}

#[tokio::test]
async fn bookings_of_one_linked_course_run_in_parallel_and_share_calls() {
    let app = spawn_app().await;
    app.moodle.set_latency(Duration::from_millis(50));
    let (course, _) = course_and_users(&app.moodle, 200);
    link_course(&app, course).await;
    book_many(&app, 200, |_, _| {}).await;
    app.settle(Duration::from_secs(60)).await;

    let jobs = app.jobs().await;
    assert_eq!(jobs.len(), 200);
    assert!(jobs.iter().all(|j| j["status"] == "succeeded"), "{jobs:?}");
    assert_eq!(app.moodle.enrolments().len(), 200);
    // Bookings of one course no longer run one after another…
    assert!(app.moodle.max_calls_in_flight() > 1);
    // …and shared their calls: one call alone per step would be 400 (a
    // look-up and an enrolment each); how full the batches get depends on how
    // fast the bookings arrive, so only "fewer than one per booking" is sure.
    let calls = app.moodle.calls().len();
    assert!(calls < 200, "{calls} calls for 200 bookings");
}

#[tokio::test]
async fn a_stale_moodle_id_among_valid_ones_fails_only_its_own_job() {
    let app =
        spawn_app_with(|t| t.replace("role_id = 5", "role_id = 5\nbatch_window = \"100ms\"")).await;
    let (course, users) = course_and_users(&app.moodle, 50);
    link_course(&app, course).await;
    book_many(&app, 51, |i, body| {
        let moodle_id = users.get(i).copied().unwrap_or(999_999);
        body["user"]["moodle_id"] = json!(moodle_id);
    })
    .await;
    app.settle(Duration::from_secs(30)).await;
    let jobs = app.jobs().await;
    let failed: Vec<&Value> = jobs.iter().filter(|j| j["status"] == "failed").collect();
    assert_eq!(failed.len(), 1, "{jobs:?}");
    let error = failed[0]["error"].as_str().unwrap();
    assert!(error.contains("Moodle user 999999"), "{error}");
    assert_eq!(
        jobs.iter().filter(|j| j["status"] == "succeeded").count(),
        50
    );
    // The 51 ids were verified in very few shared look-ups.
    assert!(
        app.moodle.call_count(LOOKUPS) <= 3,
        "{}",
        app.moodle.call_count(LOOKUPS)
    );
}

#[tokio::test]
async fn a_tenant_with_a_backlog_does_not_hold_up_another() {
    // "slow" answers each call in 1 s, one at a time, and has 100 bookings queued.
    let slow_moodle = FakeMoodle::start().await;
    slow_moodle.set_latency(Duration::from_secs(1));
    let slow_url = slow_moodle.url();
    let slow_token = slow_moodle.token();
    let app = spawn_app_with(move |t| {
        format!(
            "{t}\n[tenants.slow]\nwebhook_secret = \"slow-secret\"\nmoodle_url = \"{slow_url}\"\n\
             moodle_token = \"{slow_token}\"\ncategory_id = 5\nmax_concurrency = 1\n"
        )
    })
    .await;
    let url = format!("{}/v1/tenants/slow/events/booking-created", app.base);
    for i in 0..100 {
        let body = booking(
            &format!("S{i}"),
            &format!("SC{i}"),
            &format!("SU{i}"),
            "s@example.com",
        );
        let r = app
            .http
            .post(&url)
            .bearer_auth("slow-secret")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED);
    }
    // The other tenant's one booking is done while the backlog has barely moved.
    let a = app
        .post_event(
            "booking-created",
            &booking("D1", "C1", "U1", "ada@example.com"),
            "?wait=10",
        )
        .await;
    assert_eq!(a.body["status"], "succeeded", "{:?}", a.body);
    let slow_done = app
        .jobs()
        .await
        .iter()
        .filter(|j| j["tenant"] == "slow" && j["status"] == "succeeded")
        .count();
    assert!(
        slow_done < 10,
        "{slow_done} of the slow tenant's jobs were done first"
    );
}
