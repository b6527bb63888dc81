//! The conformance cases: each takes a fresh, empty store and checks one part
//! of the contract documented on `apit_moodle_sync::store::Store`. Times are
//! synthetic (the store never reads the clock for job timing), so nothing here
//! sleeps or measures time.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apit_moodle_sync::moodle::CallRecord;
use apit_moodle_sync::store::{
    Admission, EnrolmentRecord, EnrolmentState, Entity, Finish, Job, JobFilter, JobKind, JobStatus,
    Link, LinkKind, NewJob, NewWriteback, QueueStat, RetryResult, Store, WritebackFinish,
    WritebackStatus,
};
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

const LEASE: Duration = Duration::from_secs(60);
const LEASE_EXPIRED: &str = "the worker stopped before finishing (lease expired)";

/// A fixed instant with sub-millisecond digits (the store keeps milliseconds).
fn base() -> DateTime<Utc> {
    DateTime::from_timestamp(1_900_000_000, 123_456_789).unwrap()
}

/// `base() + secs`.
fn at(secs: i64) -> DateTime<Utc> {
    base() + TimeDelta::seconds(secs)
}

/// `t` at the precision the store keeps.
fn ms(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap()
}

/// A `course-saved` event for course `course` with `body` as its content.
fn event(tenant: &str, course: &str, body: Value, key: Option<&str>) -> NewJob {
    let event = json!({"course": {"id": course}, "body": body});
    NewJob {
        id: Uuid::now_v7(),
        tenant: tenant.into(),
        kind: JobKind::parse("course-saved").unwrap(),
        body_hash: hex::encode(Sha256::digest(event.to_string().as_bytes())),
        event,
        keys: vec![format!("course:{course}")],
        idempotency_key: key.map(str::to_owned),
        entity: format!("course-saved:{course}"),
    }
}

/// A job with the given ordering keys and a unique body.
fn keyed(tenant: &str, keys: &[&str]) -> NewJob {
    let mut job = event(tenant, &Uuid::now_v7().to_string(), json!({}), None);
    job.keys = keys.iter().map(|k| (*k).to_owned()).collect();
    job
}

async fn admit(store: &Arc<dyn Store>, job: NewJob, now: DateTime<Utc>) -> Job {
    match store.admit(job, false, now).await.unwrap() {
        Admission::Created(job) => job,
        other => panic!("expected a new job, got {other:?}"),
    }
}

fn created(a: Admission) -> Job {
    match a {
        Admission::Created(job) => job,
        other => panic!("expected Created, got {other:?}"),
    }
}

fn existing(a: Admission) -> Job {
    match a {
        Admission::Existing(job) => job,
        other => panic!("expected Existing, got {other:?}"),
    }
}

fn requeued(a: Admission) -> Job {
    match a {
        Admission::Requeued(job) => job,
        other => panic!("expected Requeued, got {other:?}"),
    }
}

/// Jobs compare equal when every field does (times at ms precision).
#[track_caller]
fn assert_same(a: &Job, b: &Job) {
    assert_eq!(
        serde_json::to_value(a).unwrap(),
        serde_json::to_value(b).unwrap()
    );
}

fn ids(jobs: &[Job]) -> Vec<Uuid> {
    jobs.iter().map(|j| j.id).collect()
}

fn ended(status: JobStatus) -> Finish {
    Finish {
        status,
        next_attempt_at: None,
        error: None,
        outcome: None,
        calls: Vec::new(),
    }
}

fn retry_at(next: DateTime<Utc>, error: &str) -> Finish {
    Finish {
        status: JobStatus::Queued,
        next_attempt_at: Some(next),
        error: Some(error.into()),
        outcome: None,
        calls: Vec::new(),
    }
}

/// Claims exactly one job (asserting so) and returns it.
async fn claim_one(store: &Arc<dyn Store>, now: DateTime<Utc>) -> Job {
    let mut jobs = store.claim("acme", now, LEASE, 10).await.unwrap();
    assert_eq!(
        jobs.len(),
        1,
        "expected one claimable job, got {:?}",
        ids(&jobs)
    );
    jobs.remove(0)
}

/// Admits, claims and finishes a job with `status`.
async fn run_to(store: &Arc<dyn Store>, job: NewJob, status: JobStatus, now: DateTime<Utc>) -> Job {
    let job = admit(store, job, now).await;
    let claimed = claim_one(store, now).await;
    assert_eq!(claimed.id, job.id);
    assert!(
        store
            .finish(job.id, claimed.attempts, now, ended(status))
            .await
            .unwrap()
    );
    store.job(job.id).await.unwrap().unwrap()
}

/// Claims and finishes (succeeded) until nothing is claimable.
async fn drain(store: &Arc<dyn Store>, now: DateTime<Utc>) {
    loop {
        let jobs = store.claim("acme", now, LEASE, 100).await.unwrap();
        if jobs.is_empty() {
            return;
        }
        for job in jobs {
            assert!(
                store
                    .finish(job.id, job.attempts, now, ended(JobStatus::Succeeded))
                    .await
                    .unwrap()
            );
        }
    }
}

async fn all_jobs(store: &Arc<dyn Store>) -> Vec<Job> {
    store.jobs(&JobFilter::default()).await.unwrap()
}

pub async fn ping_answers(store: Arc<dyn Store>) {
    store.ping().await.unwrap();
}

pub async fn admit_creates_a_queued_job(store: Arc<dyn Store>) {
    let now = base();
    let new = event(
        "acme",
        "C1001",
        json!({"label": "First Aid", "n": 1.5, "list": [1, "a", null]}),
        Some("e-1"),
    );
    let job = admit(&store, new.clone(), now).await;

    assert_eq!(job.id, new.id);
    assert_eq!(job.tenant, "acme");
    assert_eq!(job.kind.as_str(), "course-saved");
    assert_eq!(job.event, new.event);
    assert_eq!(job.keys, vec!["course:C1001".to_owned()]);
    assert_eq!(job.status, JobStatus::Queued);
    assert_eq!(job.attempts, 0);
    assert!(job.seq > 0);
    assert_eq!(job.created_at, ms(now));
    assert_eq!(job.updated_at, ms(now));
    assert_eq!(job.next_attempt_at, Some(ms(now)));
    assert_eq!(job.retry_since, ms(now));
    assert_eq!(job.lease_until, None);
    assert_eq!(job.last_error, None);
    assert_eq!(job.outcome, None);

    // What admit returned is what is stored, at millisecond precision.
    let stored = store.job(job.id).await.unwrap().expect("stored");
    assert_same(&job, &stored);
    assert!(store.attempts(job.id).await.unwrap().is_empty());
    assert!(store.job(Uuid::now_v7()).await.unwrap().is_none());

    // Seq grows in arrival order.
    let second = admit(&store, event("acme", "C1002", json!({}), None), at(1)).await;
    assert!(second.seq > job.seq);
}

pub async fn admit_same_key_while_queued_or_running_returns_it(store: Arc<dyn Store>) {
    let first = admit(
        &store,
        event("acme", "C1", json!({"v": 1}), Some("k1")),
        at(0),
    )
    .await;

    // A re-send (new request id, same key) while queued: the same job, as it is.
    let again = existing(
        store
            .admit(
                event("acme", "C1", json!({"v": 1}), Some("k1")),
                false,
                at(1),
            )
            .await
            .unwrap(),
    );
    assert_same(&again, &first);
    // Even with force, and even with a different body: the key decides.
    let forced = existing(
        store
            .admit(
                event("acme", "C1", json!({"v": 2}), Some("k1")),
                true,
                at(2),
            )
            .await
            .unwrap(),
    );
    assert_eq!(forced.id, first.id);

    let claimed = claim_one(&store, at(3)).await;
    let again = existing(
        store
            .admit(
                event("acme", "C1", json!({"v": 1}), Some("k1")),
                true,
                at(4),
            )
            .await
            .unwrap(),
    );
    assert_eq!(again.id, first.id);
    assert_eq!(again.status, JobStatus::Running);
    assert_eq!(again.attempts, claimed.attempts);

    // The key is per tenant.
    created(
        store
            .admit(
                event("other", "C1", json!({"v": 1}), Some("k1")),
                false,
                at(5),
            )
            .await
            .unwrap(),
    );
    assert_eq!(all_jobs(&store).await.len(), 2);
}

pub async fn admit_same_key_after_success_returns_it_unless_forced(store: Arc<dyn Store>) {
    for (i, status) in [JobStatus::Succeeded, JobStatus::Skipped]
        .into_iter()
        .enumerate()
    {
        let key = format!("k-{i}");
        let course = format!("C{i}");
        let done = run_to(
            &store,
            event("acme", &course, json!({}), Some(&key)),
            status,
            at(0),
        )
        .await;
        assert_eq!(done.status, status);

        let again = existing(
            store
                .admit(event("acme", &course, json!({}), Some(&key)), false, at(1))
                .await
                .unwrap(),
        );
        assert_same(&again, &done);

        // force: a new job, and the key points at it from then on.
        let new = event("acme", &course, json!({}), Some(&key));
        let forced = created(store.admit(new.clone(), true, at(2)).await.unwrap());
        assert_eq!(forced.id, new.id);
        assert_eq!(forced.status, JobStatus::Queued);
        assert!(forced.seq > done.seq);
        let later = existing(
            store
                .admit(event("acme", &course, json!({}), Some(&key)), false, at(3))
                .await
                .unwrap(),
        );
        assert_eq!(later.id, forced.id);

        // The forced job is also the entity's newest: a key-less re-send of the
        // same body is that job, not the old one.
        let keyless = event("acme", &course, json!({}), None);
        assert_eq!(keyless.body_hash, new.body_hash);
        let same = existing(store.admit(keyless, false, at(4)).await.unwrap());
        assert_eq!(same.id, forced.id);

        // Let the forced job finish so the next round starts with an empty queue.
        let claimed = claim_one(&store, at(5)).await;
        assert!(
            store
                .finish(claimed.id, claimed.attempts, at(5), ended(status))
                .await
                .unwrap()
        );
    }
}

pub async fn admit_same_key_requeues_failed_and_dead(store: Arc<dyn Store>) {
    for (i, status) in [JobStatus::Failed, JobStatus::Dead].into_iter().enumerate() {
        let key = format!("k-{i}");
        let course = format!("C{i}");
        let done = run_to(
            &store,
            event("acme", &course, json!({}), Some(&key)),
            status,
            at(0),
        )
        .await;
        assert_eq!(done.status, status);
        // Something newer sharing the job's key arrives meanwhile.
        let newer = admit(&store, keyed("acme", &[&format!("course:{course}")]), at(1)).await;

        // force does not matter for a failed or dead job.
        let again = requeued(
            store
                .admit(
                    event("acme", &course, json!({}), Some(&key)),
                    i == 1,
                    at(10),
                )
                .await
                .unwrap(),
        );
        assert_eq!(again.id, done.id);
        assert_eq!(again.status, JobStatus::Queued);
        assert!(
            again.seq > newer.seq,
            "a re-queued job goes behind newer jobs"
        );
        assert_eq!(again.attempts, 1, "the attempt count is kept");
        assert_eq!(again.next_attempt_at, Some(ms(at(10))));
        assert_eq!(again.retry_since, ms(at(10)));
        assert_eq!(again.created_at, done.created_at);
        assert_eq!(again.lease_until, None);
        assert_eq!(
            store.attempts(done.id).await.unwrap().len(),
            1,
            "history is kept"
        );
        assert_same(&again, &store.job(done.id).await.unwrap().unwrap());

        // Its keys are active again: the newer job runs first, then this one.
        let first = claim_one(&store, at(11)).await;
        assert_eq!(first.id, newer.id);
        assert!(
            store
                .finish(newer.id, 1, at(12), ended(JobStatus::Succeeded))
                .await
                .unwrap()
        );
        let second = claim_one(&store, at(13)).await;
        assert_eq!(second.id, done.id);
        assert_eq!(second.attempts, 2);
        assert!(
            store
                .finish(done.id, 2, at(14), ended(JobStatus::Succeeded))
                .await
                .unwrap()
        );
    }
}

pub async fn admit_without_key_follows_the_newest_event(store: Arc<dyn Store>) {
    let a = || event("acme", "C1", json!({"label": "A"}), None);
    let b = || event("acme", "C1", json!({"label": "B"}), None);

    let first_a = admit(&store, a(), at(0)).await;
    // The same body as the newest event: a re-send.
    assert_eq!(
        existing(store.admit(a(), false, at(1)).await.unwrap()).id,
        first_a.id
    );

    let first_b = admit(&store, b(), at(2)).await;
    assert_eq!(
        existing(store.admit(b(), false, at(3)).await.unwrap()).id,
        first_b.id
    );

    // A → B → A: the second A runs again (the course must end as A).
    let second_a = admit(&store, a(), at(4)).await;
    assert_ne!(second_a.id, first_a.id);
    assert_eq!(
        existing(store.admit(a(), false, at(5)).await.unwrap()).id,
        second_a.id
    );

    // Other entities and tenants are separate.
    created(
        store
            .admit(
                event("acme", "C2", json!({"label": "A"}), None),
                false,
                at(6),
            )
            .await
            .unwrap(),
    );
    created(
        store
            .admit(
                event("beta", "C1", json!({"label": "A"}), None),
                false,
                at(7),
            )
            .await
            .unwrap(),
    );

    // The newest job decides whatever its status: once it succeeded, a re-send
    // is answered with it; with force it runs again.
    drain(&store, at(8)).await;
    let done = existing(store.admit(a(), false, at(12)).await.unwrap());
    assert_eq!((done.id, done.status), (second_a.id, JobStatus::Succeeded));
    let forced = created(store.admit(a(), true, at(13)).await.unwrap());
    assert_eq!(
        existing(store.admit(a(), false, at(14)).await.unwrap()).id,
        forced.id
    );
    assert_eq!(all_jobs(&store).await.len(), 6);
}

pub async fn admit_without_key_requeues_a_failed_newest_job(store: Arc<dyn Store>) {
    let body = || event("acme", "C1", json!({"label": "A"}), None);
    let failed = run_to(&store, body(), JobStatus::Failed, at(0)).await;
    let again = requeued(store.admit(body(), false, at(5)).await.unwrap());
    assert_eq!(again.id, failed.id);
    assert_eq!(again.status, JobStatus::Queued);
    assert!(again.seq > failed.seq);
    // Requeued while queued: a re-send is now answered with the queued job.
    assert_eq!(
        existing(store.admit(body(), false, at(6)).await.unwrap()).id,
        failed.id
    );
    assert_eq!(all_jobs(&store).await.len(), 1);
}

pub async fn claim_orders_by_seq_and_respects_keys(store: Arc<dyn Store>) {
    let j1 = admit(&store, keyed("acme", &["course:C1", "user:U1"]), at(0)).await;
    let j2 = admit(&store, keyed("acme", &["course:C1"]), at(0)).await;
    let j3 = admit(&store, keyed("acme", &["user:U2"]), at(0)).await;
    let j4 = admit(&store, keyed("acme", &["user:U1", "user:U2"]), at(0)).await;
    let j5 = admit(&store, keyed("acme", &[]), at(0)).await;
    // Keys are per tenant.
    let j6 = admit(&store, keyed("beta", &["course:C1"]), at(0)).await;

    // j2 waits for j1 (course:C1); j4 waits for j1 and j3; unrelated jobs run
    // together; a claim is per tenant.
    let mut claimed = store.claim("acme", at(1), LEASE, 10).await.unwrap();
    assert_eq!(ids(&claimed), vec![j1.id, j3.id, j5.id]);
    let beta = store.claim("beta", at(1), LEASE, 10).await.unwrap();
    assert_eq!(ids(&beta), vec![j6.id]);
    claimed.extend(beta);
    for job in &claimed {
        assert_eq!(job.status, JobStatus::Running);
        assert_eq!(job.attempts, 1);
        assert_eq!(job.lease_until, Some(ms(at(1) + TimeDelta::seconds(60))));
        assert_eq!(job.updated_at, ms(at(1)));
        assert_same(job, &store.job(job.id).await.unwrap().unwrap());
    }
    assert!(
        store
            .claim("acme", at(1), LEASE, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .claim("beta", at(1), LEASE, 10)
            .await
            .unwrap()
            .is_empty()
    );

    assert!(
        store
            .finish(j1.id, 1, at(2), ended(JobStatus::Succeeded))
            .await
            .unwrap()
    );
    // j4 still waits for j3.
    assert_eq!(
        ids(&store.claim("acme", at(2), LEASE, 10).await.unwrap()),
        vec![j2.id]
    );
    assert!(
        store
            .finish(j3.id, 1, at(3), ended(JobStatus::Failed))
            .await
            .unwrap()
    );
    assert_eq!(
        ids(&store.claim("acme", at(3), LEASE, 10).await.unwrap()),
        vec![j4.id]
    );
}

pub async fn claim_waits_for_next_attempt_at_and_a_retrying_job_still_blocks(
    store: Arc<dyn Store>,
) {
    let j1 = admit(&store, keyed("acme", &["course:C1"]), at(10)).await;
    let j2 = admit(&store, keyed("acme", &["course:C1"]), at(10)).await;
    let other = admit(&store, keyed("acme", &["course:C2"]), at(10)).await;

    // Not due before it was admitted.
    assert!(
        store
            .claim("acme", at(9), LEASE, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        ids(&store.claim("acme", at(10), LEASE, 10).await.unwrap()),
        vec![j1.id, other.id]
    );

    // j1 hits a retryable error: queued again, due in 30 s, still holding its keys.
    assert!(
        store
            .finish(j1.id, 1, at(11), retry_at(at(41), "Moodle answered 503"))
            .await
            .unwrap()
    );
    let waiting = store.job(j1.id).await.unwrap().unwrap();
    assert_eq!(waiting.status, JobStatus::Queued);
    assert_eq!(waiting.next_attempt_at, Some(ms(at(41))));
    assert_eq!(waiting.last_error.as_deref(), Some("Moodle answered 503"));
    assert_eq!(waiting.seq, j1.seq, "a retry keeps its place");
    assert!(
        store
            .claim("acme", at(40), LEASE, 10)
            .await
            .unwrap()
            .is_empty(),
        "j2 must wait for j1"
    );

    let again = claim_one(&store, at(41)).await;
    assert_eq!((again.id, again.attempts), (j1.id, 2));
    // A queued finish with no time means "now".
    assert!(
        store
            .finish(j1.id, 2, at(42), ended(JobStatus::Queued))
            .await
            .unwrap()
    );
    assert_eq!(
        store.job(j1.id).await.unwrap().unwrap().next_attempt_at,
        Some(ms(at(42)))
    );
    let third = claim_one(&store, at(42)).await;
    assert_eq!((third.id, third.attempts), (j1.id, 3));
    assert!(
        store
            .finish(j1.id, 3, at(43), ended(JobStatus::Dead))
            .await
            .unwrap()
    );
    assert_eq!(claim_one(&store, at(43)).await.id, j2.id);
}

pub async fn claim_respects_the_limit(store: Arc<dyn Store>) {
    let mut admitted = Vec::new();
    for i in 0..5 {
        admitted.push(
            admit(&store, keyed("acme", &[&format!("course:C{i}")]), at(0))
                .await
                .id,
        );
    }
    assert!(
        store
            .claim("acme", at(1), LEASE, 0)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        ids(&store.claim("acme", at(1), LEASE, 2).await.unwrap()),
        admitted[..2]
    );
    assert_eq!(
        ids(&store.claim("acme", at(1), LEASE, 10).await.unwrap()),
        admitted[2..]
    );
    assert!(
        store
            .claim("acme", at(1), LEASE, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn expired_lease_is_reclaimed_and_the_dangling_attempt_closed(store: Arc<dyn Store>) {
    let job = admit(&store, keyed("acme", &["course:C1"]), at(0)).await;
    let next = admit(&store, keyed("acme", &["course:C1"]), at(0)).await;
    let first = claim_one(&store, at(0)).await;
    assert_eq!(first.lease_until, Some(ms(at(60))));

    // The lease still holds at its last instant.
    assert!(
        store
            .claim("acme", at(60), LEASE, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // The worker died; after the lease the job runs again (and still blocks `next`).
    let second = claim_one(&store, at(61)).await;
    assert_eq!((second.id, second.attempts), (job.id, 2));
    assert_eq!(second.lease_until, Some(ms(at(121))));

    let attempts = store.attempts(job.id).await.unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0].number, 1);
    assert_eq!(attempts[0].started_at, ms(at(0)));
    assert_eq!(attempts[0].finished_at, Some(ms(at(61))));
    assert_eq!(attempts[0].error.as_deref(), Some(LEASE_EXPIRED));
    assert_eq!(attempts[1].number, 2);
    assert_eq!(attempts[1].started_at, ms(at(61)));
    assert_eq!(attempts[1].finished_at, None);
    assert_eq!(attempts[1].error, None);
    assert_eq!(attempts[1].result, None);

    // The dead worker's late finish is refused; the live one's counts.
    assert!(
        !store
            .finish(job.id, 1, at(62), ended(JobStatus::Succeeded))
            .await
            .unwrap()
    );
    assert_eq!(
        store.job(job.id).await.unwrap().unwrap().status,
        JobStatus::Running
    );
    assert!(
        store
            .finish(job.id, 2, at(63), ended(JobStatus::Succeeded))
            .await
            .unwrap()
    );
    assert_eq!(claim_one(&store, at(63)).await.id, next.id);
}

pub async fn finish_records_the_attempt_and_releases_keys_only_when_final(store: Arc<dyn Store>) {
    let job = admit(&store, keyed("acme", &["course:C1"]), at(0)).await;
    let waiting = admit(&store, keyed("acme", &["course:C1"]), at(0)).await;
    claim_one(&store, at(0)).await;

    let calls = vec![
        CallRecord {
            function: "core_course_get_courses_by_field".into(),
            outcome: "ok".into(),
            ms: 12,
            batch: Some(40),
        },
        CallRecord {
            function: "core_course_create_courses".into(),
            outcome: "ok".into(),
            ms: 80,
            batch: None,
        },
    ];
    let outcome = json!({"moodle_course_id": 42});
    let finish = Finish {
        status: JobStatus::Succeeded,
        next_attempt_at: None,
        error: None,
        outcome: Some(outcome.clone()),
        calls: calls.clone(),
    };
    assert!(store.finish(job.id, 1, at(5), finish).await.unwrap());

    let done = store.job(job.id).await.unwrap().unwrap();
    assert_eq!(done.status, JobStatus::Succeeded);
    assert_eq!(done.outcome, Some(outcome));
    assert_eq!(done.lease_until, None);
    assert_eq!(done.next_attempt_at, None);
    assert_eq!(done.updated_at, ms(at(5)));
    let attempts = store.attempts(job.id).await.unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].finished_at, Some(ms(at(5))));
    assert_eq!(attempts[0].calls, calls);
    assert_eq!(attempts[0].result, Some(JobStatus::Succeeded));
    // Final: the keys are released, and the finished job keeps them on its row.
    assert_eq!(done.keys, vec!["course:C1".to_owned()]);
    let next = claim_one(&store, at(5)).await;
    assert_eq!(next.id, waiting.id);

    // A failed attempt records its error on both the job and the attempt.
    let failure = Finish {
        status: JobStatus::Failed,
        next_attempt_at: None,
        error: Some("Moodle course 77 does not exist".into()),
        outcome: None,
        calls: vec![CallRecord {
            function: "core_course_get_courses_by_field".into(),
            outcome: "ok".into(),
            ms: 9,
            batch: None,
        }],
    };
    assert!(store.finish(waiting.id, 1, at(6), failure).await.unwrap());
    let failed = store.job(waiting.id).await.unwrap().unwrap();
    assert_eq!(
        failed.last_error.as_deref(),
        Some("Moodle course 77 does not exist")
    );
    let attempt = &store.attempts(waiting.id).await.unwrap()[0];
    assert_eq!(
        attempt.error.as_deref(),
        Some("Moodle course 77 does not exist")
    );
    assert_eq!(attempt.result, Some(JobStatus::Failed));

    // Finishing with "running" is a caller bug, refused without a change.
    let third = admit(&store, keyed("acme", &["course:C9"]), at(7)).await;
    claim_one(&store, at(7)).await;
    assert!(
        store
            .finish(third.id, 1, at(8), ended(JobStatus::Running))
            .await
            .is_err()
    );
    assert_eq!(
        store.job(third.id).await.unwrap().unwrap().status,
        JobStatus::Running
    );
}

pub async fn finish_and_extend_with_a_stale_attempt_change_nothing(store: Arc<dyn Store>) {
    let job = admit(&store, keyed("acme", &["course:C1"]), at(0)).await;
    // Not running yet.
    assert!(
        !store
            .finish(job.id, 0, at(0), ended(JobStatus::Succeeded))
            .await
            .unwrap()
    );
    assert!(
        !store
            .finish(job.id, 1, at(0), ended(JobStatus::Succeeded))
            .await
            .unwrap()
    );
    assert!(!store.extend_lease(job.id, 1, at(100)).await.unwrap());
    // Unknown job.
    assert!(
        !store
            .finish(Uuid::now_v7(), 1, at(0), ended(JobStatus::Succeeded))
            .await
            .unwrap()
    );

    claim_one(&store, at(1)).await;
    let before = store.job(job.id).await.unwrap().unwrap();
    assert!(
        !store
            .finish(job.id, 2, at(2), ended(JobStatus::Failed))
            .await
            .unwrap()
    );
    assert!(!store.extend_lease(job.id, 2, at(500)).await.unwrap());
    assert_same(&before, &store.job(job.id).await.unwrap().unwrap());
    assert_eq!(store.attempts(job.id).await.unwrap()[0].finished_at, None);

    // The right attempt may extend its lease: it is not reclaimed at the old end.
    assert!(store.extend_lease(job.id, 1, at(300)).await.unwrap());
    assert_eq!(
        store.job(job.id).await.unwrap().unwrap().lease_until,
        Some(ms(at(300)))
    );
    assert!(
        store
            .claim("acme", at(200), LEASE, 10)
            .await
            .unwrap()
            .is_empty()
    );

    assert!(
        store
            .finish(job.id, 1, at(3), ended(JobStatus::Succeeded))
            .await
            .unwrap()
    );
    // Finishing twice: the second is a lost claim.
    assert!(
        !store
            .finish(job.id, 1, at(4), ended(JobStatus::Failed))
            .await
            .unwrap()
    );
    assert!(!store.extend_lease(job.id, 1, at(600)).await.unwrap());
    assert_eq!(
        store.job(job.id).await.unwrap().unwrap().status,
        JobStatus::Succeeded
    );
}

pub async fn retry_requeues_behind_newer_jobs(store: Arc<dyn Store>) {
    let failed = run_to(
        &store,
        keyed("acme", &["course:C1"]),
        JobStatus::Failed,
        at(0),
    )
    .await;
    let dead = run_to(
        &store,
        keyed("acme", &["course:C2"]),
        JobStatus::Dead,
        at(1),
    )
    .await;
    let newer = admit(&store, keyed("acme", &["course:C1"]), at(2)).await;

    let RetryResult::Requeued(again) = store.retry(failed.id, at(10)).await.unwrap() else {
        panic!("a failed job is retryable");
    };
    assert_eq!(again.status, JobStatus::Queued);
    assert!(again.seq > newer.seq);
    assert_eq!(again.next_attempt_at, Some(ms(at(10))));
    assert_eq!(again.retry_since, ms(at(10)));
    assert_eq!(again.attempts, 1);
    assert_same(&again, &store.job(failed.id).await.unwrap().unwrap());
    let RetryResult::Requeued(dead_again) = store.retry(dead.id, at(10)).await.unwrap() else {
        panic!("a dead job is retryable");
    };
    assert_eq!(dead_again.status, JobStatus::Queued);

    // Not retryable: queued (now), running, succeeded. Unknown: not found.
    match store.retry(failed.id, at(11)).await.unwrap() {
        RetryResult::NotRetryable(job) => assert_eq!(job.status, JobStatus::Queued),
        other => panic!("expected NotRetryable, got {other:?}"),
    }
    assert!(matches!(
        store.retry(Uuid::now_v7(), at(11)).await.unwrap(),
        RetryResult::NotFound
    ));

    // The newer job of the same key runs first.
    let claimed = store.claim("acme", at(11), LEASE, 10).await.unwrap();
    assert_eq!(ids(&claimed), vec![newer.id, dead.id]);
    assert!(matches!(
        store.retry(newer.id, at(12)).await.unwrap(),
        RetryResult::NotRetryable(_)
    ));
    assert!(
        store
            .finish(newer.id, 1, at(12), ended(JobStatus::Succeeded))
            .await
            .unwrap()
    );
    let last = claim_one(&store, at(13)).await;
    assert_eq!((last.id, last.attempts), (failed.id, 2));
    assert_eq!(store.attempts(failed.id).await.unwrap().len(), 2);
}

pub async fn concurrent_claimers_get_each_job_once(store: Arc<dyn Store>) {
    const JOBS: usize = 200;
    let mut admitted = HashSet::new();
    for i in 0..JOBS {
        admitted.insert(
            admit(&store, keyed("acme", &[&format!("booking:D{i}")]), at(0))
                .await
                .id,
        );
    }
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let jobs = store.claim("acme", at(1), LEASE, 5).await.unwrap();
                if jobs.is_empty() {
                    return mine;
                }
                for job in jobs {
                    assert!(
                        store
                            .finish(job.id, job.attempts, at(1), ended(JobStatus::Succeeded))
                            .await
                            .unwrap()
                    );
                    mine.push(job.id);
                }
            }
        }));
    }
    let mut claimed = Vec::new();
    for task in tasks {
        claimed.extend(task.await.unwrap());
    }
    assert_eq!(claimed.len(), JOBS, "each job claimed exactly once");
    assert_eq!(claimed.into_iter().collect::<HashSet<_>>(), admitted);
    for attempt in store.jobs(&JobFilter::default()).await.unwrap() {
        assert_eq!(
            (attempt.status, attempt.attempts),
            (JobStatus::Succeeded, 1)
        );
    }
}

pub async fn concurrent_claimers_and_admitters_keep_key_order(store: Arc<dyn Store>) {
    // Jobs sharing one key, admitted while claimers run: never two at once, and
    // in seq order.
    const ADMITTERS: usize = 4;
    const EACH: usize = 15;
    #[derive(Default)]
    struct Seen {
        running: Option<i64>,
        order: Vec<i64>,
    }
    let seen = Arc::new(Mutex::new(Seen::default()));
    let admitters: Vec<_> = (0..ADMITTERS)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                for _ in 0..EACH {
                    admit(&store, keyed("acme", &["course:C1", "user:U1"]), at(0)).await;
                    // Pacing, not timing: it lets the claimers drain the queue
                    // between admits, which is when a job committed out of seq
                    // order would be claimed out of order (PostgreSQL).
                    tokio::time::sleep(Duration::from_millis(rand::random::<u64>() % 3)).await;
                }
            })
        })
        .collect();
    let claimers: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut idle = 0;
                while idle < 200 {
                    let jobs = store.claim("acme", at(1), LEASE, 3).await.unwrap();
                    if jobs.is_empty() {
                        idle += 1;
                        tokio::task::yield_now().await;
                        continue;
                    }
                    idle = 0;
                    assert_eq!(
                        jobs.len(),
                        1,
                        "jobs sharing a key are never claimed together"
                    );
                    let job = &jobs[0];
                    {
                        let mut seen = seen.lock().unwrap();
                        assert_eq!(seen.running, None, "two jobs of one key ran at once");
                        if let Some(last) = seen.order.last() {
                            assert!(job.seq > *last, "out of order: {} after {last}", job.seq);
                        }
                        seen.running = Some(job.seq);
                        seen.order.push(job.seq);
                    }
                    tokio::task::yield_now().await;
                    // Mark it done before the store does, so the next claim can't race the flag.
                    seen.lock().unwrap().running = None;
                    assert!(
                        store
                            .finish(job.id, 1, at(1), ended(JobStatus::Succeeded))
                            .await
                            .unwrap()
                    );
                }
            })
        })
        .collect();
    for task in admitters {
        task.await.unwrap();
    }
    for task in claimers {
        task.await.unwrap();
    }
    // Claimers may give up before the last admits; drain what is left in order.
    loop {
        let jobs = store.claim("acme", at(2), LEASE, 3).await.unwrap();
        if jobs.is_empty() {
            break;
        }
        assert_eq!(jobs.len(), 1);
        {
            let mut seen = seen.lock().unwrap();
            assert!(seen.order.last().is_none_or(|last| jobs[0].seq > *last));
            seen.order.push(jobs[0].seq);
        }
        assert!(
            store
                .finish(jobs[0].id, 1, at(2), ended(JobStatus::Succeeded))
                .await
                .unwrap()
        );
    }
    assert_eq!(seen.lock().unwrap().order.len(), ADMITTERS * EACH);
}

pub async fn concurrent_admits_of_one_event_create_one_job(store: Arc<dyn Store>) {
    // With an idempotency key, and without one (the newest-event rule).
    for key in [Some("evt-1"), None] {
        let template = event(
            "acme",
            if key.is_some() { "C1" } else { "C2" },
            json!({"label": "A"}),
            key,
        );
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let store = store.clone();
                let mut new = template.clone();
                new.id = Uuid::now_v7(); // every request gets its own id
                tokio::spawn(async move { store.admit(new, false, at(0)).await.unwrap() })
            })
            .collect();
        let mut created = Vec::new();
        let mut returned = HashSet::new();
        for task in tasks {
            let admission = task.await.unwrap();
            returned.insert(admission.job().id);
            if let Admission::Created(job) = admission {
                created.push(job.id);
            }
        }
        assert_eq!(created.len(), 1, "exactly one job created (key {key:?})");
        assert_eq!(
            returned,
            HashSet::from([created[0]]),
            "everyone sees that job"
        );
    }
    assert_eq!(all_jobs(&store).await.len(), 2);
}

pub async fn links_upsert(store: Arc<dyn Store>) {
    assert_eq!(
        store.link("acme", LinkKind::Course, "C1").await.unwrap(),
        None
    );
    let link = Link {
        moodle_id: 42,
        last_sent: Some(json!({"fullname": "First Aid"})),
    };
    store
        .put_link("acme", LinkKind::Course, "C1", &link)
        .await
        .unwrap();
    assert_eq!(
        store.link("acme", LinkKind::Course, "C1").await.unwrap(),
        Some(link)
    );

    let replaced = Link {
        moodle_id: 43,
        last_sent: None,
    };
    store
        .put_link("acme", LinkKind::Course, "C1", &replaced)
        .await
        .unwrap();
    assert_eq!(
        store.link("acme", LinkKind::Course, "C1").await.unwrap(),
        Some(replaced)
    );

    // Kind and tenant are part of the key.
    assert_eq!(
        store.link("acme", LinkKind::Template, "C1").await.unwrap(),
        None
    );
    assert_eq!(
        store.link("beta", LinkKind::Course, "C1").await.unwrap(),
        None
    );
    let user = Link {
        moodle_id: 7,
        last_sent: None,
    };
    store
        .put_link("acme", LinkKind::User, "C1", &user)
        .await
        .unwrap();
    assert_eq!(
        store.link("acme", LinkKind::User, "C1").await.unwrap(),
        Some(user)
    );
    assert_eq!(
        store
            .link("acme", LinkKind::Course, "C1")
            .await
            .unwrap()
            .unwrap()
            .moodle_id,
        43
    );
}

pub async fn enrolments_upsert_and_keep_the_last_score(store: Arc<dyn Store>) {
    let record = |booking: &str, course: i64, user: i64, state| EnrolmentRecord {
        tenant: "acme".into(),
        booking_id: booking.into(),
        moodle_course_id: course,
        moodle_user_id: user,
        state,
        last_score: None,
    };
    store
        .put_enrolment(&record("D1", 10, 100, EnrolmentState::Active))
        .await
        .unwrap();
    store
        .put_enrolment(&record("D2", 10, 101, EnrolmentState::Active))
        .await
        .unwrap();
    store
        .put_enrolment(&EnrolmentRecord {
            tenant: "beta".into(),
            ..record("D3", 10, 100, EnrolmentState::Active)
        })
        .await
        .unwrap();
    store
        .set_last_score("acme", "D1", &json!({"score": 87.5}))
        .await
        .unwrap();
    // No such booking: nothing happens.
    store
        .set_last_score("acme", "D404", &json!({"score": 1}))
        .await
        .unwrap();

    let all = store.enrolments("acme", false).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(
        all[0],
        EnrolmentRecord {
            last_score: Some(json!({"score": 87.5})),
            ..record("D1", 10, 100, EnrolmentState::Active)
        }
    );

    // Same course and user (suspended on cancel): the score stays.
    store
        .put_enrolment(&record("D1", 10, 100, EnrolmentState::Suspended))
        .await
        .unwrap();
    let d1 = store.enrolments("acme", false).await.unwrap().remove(0);
    assert_eq!(d1.state, EnrolmentState::Suspended);
    assert_eq!(d1.last_score, Some(json!({"score": 87.5})));
    assert_eq!(
        ids_of(&store.enrolments("acme", true).await.unwrap()),
        vec!["D2"]
    );

    // Transferred to another course: the old score no longer applies.
    store
        .put_enrolment(&record("D1", 11, 100, EnrolmentState::Active))
        .await
        .unwrap();
    let d1 = store.enrolments("acme", true).await.unwrap().remove(0);
    assert_eq!((d1.moodle_course_id, d1.last_score), (11, None));
    assert_eq!(
        ids_of(&store.enrolments("acme", true).await.unwrap()),
        vec!["D1", "D2"]
    );
    assert_eq!(
        ids_of(&store.enrolments("beta", false).await.unwrap()),
        vec!["D3"]
    );
    assert!(store.enrolments("nobody", false).await.unwrap().is_empty());
}

fn ids_of(records: &[EnrolmentRecord]) -> Vec<&str> {
    records.iter().map(|r| r.booking_id.as_str()).collect()
}

fn writeback(job: Option<Uuid>, apit_id: &str, payload: Value) -> NewWriteback {
    NewWriteback {
        job_id: job,
        tenant: "acme".into(),
        entity: Entity::Course,
        apit_id: apit_id.into(),
        payload,
    }
}

pub async fn writebacks_dedupe_and_supersede(store: Arc<dyn Store>) {
    let job = admit(&store, keyed("acme", &["course:C1"]), at(0)).await.id;
    let a = || json!({"accessplanit_id": "C1", "moodle_id": 42, "entity": "course"});
    let b = || json!({"accessplanit_id": "C1", "moodle_id": 43, "entity": "course"});

    assert!(
        store
            .enqueue_writeback(writeback(Some(job), "C1", a()), at(1))
            .await
            .unwrap()
    );
    // The same payload again (even built in another key order): not queued.
    let reordered: Value =
        serde_json::from_str(r#"{"moodle_id":42,"entity":"course","accessplanit_id":"C1"}"#)
            .unwrap();
    assert!(
        !store
            .enqueue_writeback(writeback(Some(job), "C1", reordered), at(2))
            .await
            .unwrap()
    );

    // A different payload supersedes the pending one.
    assert!(
        store
            .enqueue_writeback(writeback(Some(job), "C1", b()), at(3))
            .await
            .unwrap()
    );
    // Only the newest counts: A again is new work (C1 moved back to 42).
    assert!(
        store
            .enqueue_writeback(writeback(Some(job), "C1", a()), at(4))
            .await
            .unwrap()
    );
    // Another entity is independent.
    assert!(
        store
            .enqueue_writeback(writeback(Some(job), "C2", a()), at(5))
            .await
            .unwrap()
    );
    assert!(
        store
            .enqueue_writeback(writeback(None, "C3", a()), at(5))
            .await
            .unwrap()
    );

    let all = store.writebacks_for_job(job).await.unwrap();
    let summary: Vec<_> = all
        .iter()
        .map(|w| (w.apit_id.as_str(), w.payload["moodle_id"].clone(), w.status))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("C1", json!(42), WritebackStatus::Superseded),
            ("C1", json!(43), WritebackStatus::Superseded),
            ("C1", json!(42), WritebackStatus::Pending),
            ("C2", json!(42), WritebackStatus::Pending),
        ]
    );
    let wb = &all[2];
    assert_eq!(wb.job_id, Some(job));
    assert_eq!((wb.tenant.as_str(), wb.entity.as_str()), ("acme", "course"));
    assert_eq!(wb.payload, a());
    assert_eq!(wb.attempts, 0);
    assert_eq!(wb.created_at, ms(at(4)));
    assert_eq!(wb.retry_since, ms(at(4)));
    assert_eq!(wb.next_attempt_at, Some(ms(at(4))));
    assert_eq!(wb.last_error, None);
    assert!(
        store
            .writebacks_for_job(Uuid::now_v7())
            .await
            .unwrap()
            .is_empty()
    );

    // Superseded ones are never delivered.
    let claimed = store.claim_writebacks(at(10), LEASE, 10).await.unwrap();
    let claimed: Vec<_> = claimed.iter().map(|w| w.apit_id.as_str()).collect();
    assert_eq!(claimed, vec!["C1", "C2", "C3"]);
}

pub async fn writebacks_claim_and_finish(store: Arc<dyn Store>) {
    let job = admit(&store, keyed("acme", &["course:C1"]), at(0)).await.id;
    for id in ["C1", "C2", "C3"] {
        assert!(
            store
                .enqueue_writeback(writeback(Some(job), id, json!({"id": id})), at(0))
                .await
                .unwrap()
        );
    }
    assert!(
        store
            .claim_writebacks(at(0), LEASE, 0)
            .await
            .unwrap()
            .is_empty()
    );
    let first = store.claim_writebacks(at(1), LEASE, 2).await.unwrap();
    assert_eq!(
        first.iter().map(|w| w.apit_id.as_str()).collect::<Vec<_>>(),
        vec!["C1", "C2"]
    );
    assert!(
        first
            .iter()
            .all(|w| w.attempts == 1 && w.status == WritebackStatus::Pending)
    );
    let third = store.claim_writebacks(at(1), LEASE, 10).await.unwrap();
    assert_eq!(third.len(), 1);
    assert!(
        store
            .claim_writebacks(at(2), LEASE, 10)
            .await
            .unwrap()
            .is_empty(),
        "leased"
    );

    let (c1, c2, c3) = (first[0].id, first[1].id, third[0].id);
    // C1 delivered.
    let delivered = WritebackFinish {
        status: WritebackStatus::Delivered,
        next_attempt_at: None,
        error: None,
    };
    assert!(
        store
            .finish_writeback(c1, 1, at(3), delivered.clone())
            .await
            .unwrap()
    );
    assert!(
        !store
            .finish_writeback(c1, 1, at(3), delivered.clone())
            .await
            .unwrap(),
        "already finished"
    );
    // C2 failed for now: retried at 100 s.
    let later = WritebackFinish {
        status: WritebackStatus::Pending,
        next_attempt_at: Some(at(100)),
        error: Some("HTTP 503".into()),
    };
    assert!(
        !store
            .finish_writeback(c2, 2, at(3), later.clone())
            .await
            .unwrap(),
        "stale attempt"
    );
    assert!(store.finish_writeback(c2, 1, at(3), later).await.unwrap());
    // C3's worker died: reclaimed after the lease, and the old attempt is refused.
    let reclaimed = store.claim_writebacks(at(62), LEASE, 10).await.unwrap();
    assert_eq!(
        reclaimed
            .iter()
            .map(|w| (w.id, w.attempts))
            .collect::<Vec<_>>(),
        vec![(c3, 2)]
    );
    let dead = WritebackFinish {
        status: WritebackStatus::Dead,
        next_attempt_at: None,
        error: Some("gave up".into()),
    };
    assert!(
        !store
            .finish_writeback(c3, 1, at(63), dead.clone())
            .await
            .unwrap()
    );
    assert!(store.finish_writeback(c3, 2, at(63), dead).await.unwrap());

    let again = store.claim_writebacks(at(100), LEASE, 10).await.unwrap();
    assert_eq!(
        again.iter().map(|w| (w.id, w.attempts)).collect::<Vec<_>>(),
        vec![(c2, 2)]
    );
    assert_eq!(again[0].last_error.as_deref(), Some("HTTP 503"));
    assert_eq!(again[0].next_attempt_at, Some(ms(at(100))));

    let all = store.writebacks_for_job(job).await.unwrap();
    let statuses: Vec<_> = all.iter().map(|w| w.status).collect();
    assert_eq!(
        statuses,
        vec![
            WritebackStatus::Delivered,
            WritebackStatus::Pending,
            WritebackStatus::Dead
        ]
    );
    assert_eq!(all[0].next_attempt_at, None);

    // Dedupe against what is already delivered; but a dead one may be queued again.
    assert!(
        !store
            .enqueue_writeback(writeback(Some(job), "C1", json!({"id": "C1"})), at(200))
            .await
            .unwrap()
    );
    assert!(
        store
            .enqueue_writeback(writeback(Some(job), "C3", json!({"id": "C3"})), at(200))
            .await
            .unwrap()
    );

    // A write-back superseded while being delivered: its claim is lost.
    assert!(
        store
            .enqueue_writeback(
                writeback(Some(job), "C2", json!({"id": "C2", "v": 2})),
                at(201)
            )
            .await
            .unwrap()
    );
    let ok = WritebackFinish {
        status: WritebackStatus::Delivered,
        next_attempt_at: None,
        error: None,
    };
    assert!(!store.finish_writeback(c2, 2, at(202), ok).await.unwrap());
}

pub async fn jobs_list_filters_and_cursor(store: Arc<dyn Store>) {
    let mut course = event("acme", "C1001", json!({}), None);
    course.keys = vec!["course:C1001".into()];
    let mut booking = event("acme", "C1001", json!({"b": 1}), None);
    booking.kind = JobKind::parse("booking-created").unwrap();
    booking.entity = "booking-created:D555".into();
    booking.keys = vec![
        "course:C1001".into(),
        "user:U9".into(),
        "booking:D555".into(),
    ];
    let mut similar = event("acme", "C10011", json!({}), None);
    similar.keys = vec!["course:C10011".into(), "user:XU9".into()];
    let other_tenant = event("beta", "C1001", json!({}), None);

    let course = run_to(&store, course, JobStatus::Succeeded, at(0)).await;
    let booking = admit(&store, booking, at(1)).await;
    let similar = admit(&store, similar, at(2)).await;
    let other = admit(&store, other_tenant, at(3)).await;

    let list = |f: JobFilter| {
        let store = store.clone();
        async move { ids(&store.jobs(&f).await.unwrap()) }
    };
    let mut newest_first = vec![course.id, booking.id, similar.id, other.id];
    newest_first.sort_by(|a, b| b.cmp(a));
    assert_eq!(list(JobFilter::default()).await, newest_first);

    let tenant = |t: &str| JobFilter {
        tenant: Some(t.into()),
        ..Default::default()
    };
    assert_eq!(list(tenant("beta")).await, vec![other.id]);
    assert_eq!(list(tenant("acme")).await.len(), 3);
    assert_eq!(
        list(JobFilter {
            status: Some(JobStatus::Succeeded),
            ..Default::default()
        })
        .await,
        vec![course.id]
    );
    assert_eq!(
        list(JobFilter {
            tenant: Some("acme".into()),
            status: Some(JobStatus::Queued),
            ..Default::default()
        })
        .await
        .len(),
        2
    );
    assert_eq!(
        list(JobFilter {
            kind: JobKind::parse("booking-created"),
            ..Default::default()
        })
        .await,
        vec![booking.id]
    );

    // Reference: the exact ID after the last ':' of a key, finished jobs included.
    let reference = |r: &str| JobFilter {
        reference: Some(r.into()),
        tenant: Some("acme".into()),
        ..Default::default()
    };
    let mut c1001 = vec![course.id, booking.id];
    c1001.sort_by(|a, b| b.cmp(a));
    assert_eq!(list(reference("C1001")).await, c1001);
    assert_eq!(list(reference("U9")).await, vec![booking.id]);
    assert_eq!(list(reference("D555")).await, vec![booking.id]);
    assert_eq!(list(reference("C10011")).await, vec![similar.id]);
    assert!(list(reference("1001")).await.is_empty());
    assert!(list(reference("course:C1001")).await.is_empty());
    assert!(list(reference("%")).await.is_empty());

    // Pages of two, following the cursor.
    let mut pages = Vec::new();
    let mut before = None;
    loop {
        let page = list(JobFilter {
            limit: 2,
            before,
            ..Default::default()
        })
        .await;
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 2);
        before = page.last().copied();
        pages.extend(page);
    }
    assert_eq!(pages, newest_first);
    assert!(
        list(JobFilter {
            before: Some(*newest_first.last().unwrap()),
            ..Default::default()
        })
        .await
        .is_empty()
    );
}

pub async fn queue_stats_count_per_tenant_and_status(store: Arc<dyn Store>) {
    assert!(store.queue_stats().await.unwrap().is_empty());
    admit(&store, keyed("acme", &["course:C1"]), at(5)).await;
    admit(&store, keyed("acme", &["course:C2"]), at(3)).await;
    admit(&store, keyed("beta", &["course:C1"]), at(7)).await;
    run_to(
        &store,
        keyed("acme", &["course:C9"]),
        JobStatus::Failed,
        at(1),
    )
    .await;
    // (run_to could claim the failed job alone: the others are not due at 1 s.)
    let stats = store.queue_stats().await.unwrap();
    let find = |tenant: &str, status| {
        stats
            .iter()
            .find(|s: &&QueueStat| s.tenant == tenant && s.status == status)
            .cloned()
    };
    assert_eq!(
        find("acme", JobStatus::Queued),
        Some(QueueStat {
            tenant: "acme".into(),
            status: JobStatus::Queued,
            count: 2,
            oldest: Some(ms(at(3)))
        })
    );
    assert_eq!(
        find("acme", JobStatus::Failed),
        Some(QueueStat {
            tenant: "acme".into(),
            status: JobStatus::Failed,
            count: 1,
            oldest: Some(ms(at(1)))
        })
    );
    assert_eq!(
        find("beta", JobStatus::Queued),
        Some(QueueStat {
            tenant: "beta".into(),
            status: JobStatus::Queued,
            count: 1,
            oldest: Some(ms(at(7)))
        })
    );
    assert_eq!(stats.len(), 3);
}

/// Written by a process that then aborts (see `main.rs`).
pub async fn write_durability_fixture(store: &dyn Store) {
    let job = event("acme", "C1", json!({"label": "A"}), Some("durable"));
    let Admission::Created(job) = store.admit(job, false, at(0)).await.unwrap() else {
        panic!("a fresh database creates the job");
    };
    let claimed = store.claim("acme", at(1), LEASE, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert!(
        store
            .finish(job.id, 1, at(2), ended(JobStatus::Succeeded))
            .await
            .unwrap()
    );
    store
        .put_link(
            "acme",
            LinkKind::Course,
            "C1",
            &Link {
                moodle_id: 42,
                last_sent: None,
            },
        )
        .await
        .unwrap();
    assert!(
        store
            .enqueue_writeback(
                writeback(Some(job.id), "C1", json!({"moodle_id": 42})),
                at(3)
            )
            .await
            .unwrap()
    );
    // A second job, left queued.
    store
        .admit(event("acme", "C2", json!({}), Some("queued")), false, at(4))
        .await
        .unwrap();
}

/// Checks what [`write_durability_fixture`] committed.
pub async fn check_durability_fixture(store: &dyn Store) {
    let jobs = store.jobs(&JobFilter::default()).await.unwrap();
    assert_eq!(jobs.len(), 2);
    let done = jobs
        .iter()
        .find(|j| j.status == JobStatus::Succeeded)
        .expect("the finished job");
    assert_eq!(
        store.attempts(done.id).await.unwrap()[0].result,
        Some(JobStatus::Succeeded)
    );
    assert!(jobs.iter().any(|j| j.status == JobStatus::Queued));
    assert_eq!(
        store
            .link("acme", LinkKind::Course, "C1")
            .await
            .unwrap()
            .map(|l| l.moodle_id),
        Some(42)
    );
    assert_eq!(store.writebacks_for_job(done.id).await.unwrap().len(), 1);
    // The idempotency record survived too.
    let again = event("acme", "C1", json!({"label": "A"}), Some("durable"));
    assert!(matches!(
        store.admit(again, false, at(5)).await.unwrap(),
        Admission::Existing(_)
    ));
}

/// Admits `n` jobs on `keys` keys (round robin), `concurrency` at a time.
async fn fill(store: &Arc<dyn Store>, from: usize, n: usize, keys: usize, now: DateTime<Utc>) {
    use futures::StreamExt;
    futures::stream::iter(from..from + n)
        .map(|i| {
            let store = store.clone();
            async move {
                let key = format!("user:K{}", i % keys);
                admit(&store, keyed("acme", &[&key]), now).await;
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
}

/// Keys of the blocked queues the plan tests build.
const BLOCKED_KEYS: usize = 40;

/// `n` jobs on 40 keys whose first jobs run (lease far away): the rest blocked.
pub async fn fill_blocked(store: &Arc<dyn Store>, n: usize) {
    let now = at(1);
    fill(store, 0, BLOCKED_KEYS, BLOCKED_KEYS, now).await;
    let heads = store
        .claim("acme", now, Duration::from_secs(3600), 100)
        .await
        .unwrap();
    assert_eq!(heads.len(), BLOCKED_KEYS);
    fill(store, BLOCKED_KEYS, n - BLOCKED_KEYS, BLOCKED_KEYS, now).await;
}

/// `n` more jobs blocked behind the same heads.
pub async fn fill_more_blocked(store: &Arc<dyn Store>, from: usize, n: usize) {
    fill(store, from, n, BLOCKED_KEYS, at(1)).await;
}

/// Thousands of jobs blocked behind the running heads of their keys: nothing
/// is claimable until a head finishes, then exactly the next job of each key.
/// (That a claim does not read the blocked jobs is shown by each back-end's
/// own test of the claim's query plan.)
pub async fn many_blocked_jobs_wait_and_run_in_key_order(store: Arc<dyn Store>) {
    let now = at(1);
    fill_blocked(&store, 2_000).await;
    assert!(
        store
            .claim("acme", now, LEASE, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let heads = store
        .jobs(&JobFilter {
            status: Some(JobStatus::Running),
            ..JobFilter::default()
        })
        .await
        .unwrap();

    // The blocked jobs run, in key order, once their heads finish: the next
    // of each key is its earliest queued job.
    let queued = store
        .jobs(&JobFilter {
            status: Some(JobStatus::Queued),
            ..JobFilter::default()
        })
        .await
        .unwrap();
    let mut expected: std::collections::BTreeMap<String, (i64, Uuid)> = Default::default();
    for job in &queued {
        let entry = expected
            .entry(job.keys[0].clone())
            .or_insert((job.seq, job.id));
        if job.seq < entry.0 {
            *entry = (job.seq, job.id);
        }
    }
    for head in &heads {
        assert!(
            store
                .finish(head.id, head.attempts, now, ended(JobStatus::Succeeded))
                .await
                .unwrap()
        );
    }
    let next = store.claim("acme", now, LEASE, 100).await.unwrap();
    let mut got: Vec<Uuid> = next.iter().map(|j| j.id).collect();
    let mut want: Vec<Uuid> = expected.values().map(|(_, id)| *id).collect();
    got.sort();
    want.sort();
    assert_eq!(got.len(), BLOCKED_KEYS, "one job per key");
    assert_eq!(got, want, "the earliest waiting job of each key");
}

pub async fn run_now_makes_a_queued_job_due_and_nothing_else(store: Arc<dyn Store>) {
    let job = admit(&store, keyed("acme", &["course:C1"]), at(0)).await;
    let claimed = claim_one(&store, at(0)).await;
    assert!(
        !store.run_now(job.id, at(1)).await.unwrap(),
        "a running job is not queued"
    );
    assert!(
        store
            .finish(job.id, claimed.attempts, at(1), retry_at(at(3600), "503"))
            .await
            .unwrap()
    );
    assert!(
        store
            .claim("acme", at(10), LEASE, 10)
            .await
            .unwrap()
            .is_empty(),
        "in back-off"
    );

    assert!(store.run_now(job.id, at(10)).await.unwrap());
    let due = store.job(job.id).await.unwrap().unwrap();
    assert_eq!(due.status, JobStatus::Queued);
    assert_eq!(due.next_attempt_at, Some(ms(at(10))));
    assert_eq!(due.attempts, 1, "the history is kept");
    assert_eq!(due.last_error.as_deref(), Some("503"));
    let again = claim_one(&store, at(10)).await;
    assert_eq!((again.id, again.attempts), (job.id, 2));
    assert!(
        store
            .finish(job.id, 2, at(11), ended(JobStatus::Succeeded))
            .await
            .unwrap()
    );
    assert!(
        !store.run_now(job.id, at(12)).await.unwrap(),
        "a finished job"
    );
    assert!(
        !store.run_now(Uuid::now_v7(), at(12)).await.unwrap(),
        "no such job"
    );
    assert_eq!(
        store.job(job.id).await.unwrap().unwrap().status,
        JobStatus::Succeeded
    );
}

/// `job` with an id made at `t`, as intake makes them (UUIDv7 of the admission time).
fn made_at(mut job: NewJob, t: DateTime<Utc>) -> NewJob {
    let ts = uuid::Timestamp::from_unix(
        uuid::NoContext,
        t.timestamp() as u64,
        t.timestamp_subsec_nanos(),
    );
    job.id = Uuid::new_v7(ts);
    job
}

fn calls(n: usize) -> Vec<CallRecord> {
    (0..n)
        .map(|i| CallRecord {
            function: format!("f{i}"),
            outcome: "ok".into(),
            ms: 1,
            batch: None,
        })
        .collect()
}

pub async fn activity_counts_events_and_calls_per_hour(store: Arc<dyn Store>) {
    let from = DateTime::from_timestamp(1_900_000_000 - 1_900_000_000 % 3600, 0).unwrap();
    let t = |mins: i64| from + TimeDelta::minutes(mins);
    // In seq order: one before the window, three in hour 0 (one of them another
    // tenant's, one a grades pass), two in hour 2.
    let before = admit(&store, made_at(keyed("acme", &["course:B"]), t(-1)), t(-1)).await;
    let first = admit(&store, made_at(keyed("acme", &["course:A"]), t(10)), t(10)).await;
    admit(&store, made_at(keyed("beta", &["course:X"]), t(11)), t(11)).await;
    let mut grades = made_at(keyed("acme", &["grades"]), t(12));
    grades.kind = JobKind::GradesSync;
    admit(&store, grades, t(12)).await;
    admit(
        &store,
        made_at(keyed("acme", &["course:C"]), t(125)),
        t(125),
    )
    .await;
    admit(
        &store,
        made_at(keyed("acme", &["course:D"]), t(126)),
        t(126),
    )
    .await;

    // The job from before the window makes 2 calls in hour 1; the first one of the
    // window 3 calls in hour 2.
    let mut claimed = store.claim("acme", t(61), LEASE, 1).await.unwrap();
    assert_eq!(ids(&claimed), [before.id]);
    let finish = |n| Finish {
        calls: calls(n),
        ..ended(JobStatus::Succeeded)
    };
    assert!(store.finish(before.id, 1, t(62), finish(2)).await.unwrap());
    claimed = store.claim("acme", t(130), LEASE, 1).await.unwrap();
    assert_eq!(ids(&claimed), [first.id]);
    assert!(store.finish(first.id, 1, t(131), finish(3)).await.unwrap());

    let hours = store.activity("acme", from, 24).await.unwrap();
    assert_eq!(hours.len(), 24);
    assert_eq!(hours[0].start, from);
    assert_eq!(hours[23].start, from + TimeDelta::hours(23));
    let events: Vec<u64> = hours.iter().map(|h| h.events).collect();
    let made: Vec<u64> = hours.iter().map(|h| h.calls).collect();
    assert_eq!(&events[..4], [1, 0, 2, 0]);
    assert_eq!(&made[..4], [0, 2, 3, 0]);
    assert_eq!(events.iter().sum::<u64>(), 3);
    assert_eq!(made.iter().sum::<u64>(), 5);
    let beta = store.activity("beta", from, 24).await.unwrap();
    assert_eq!(beta.iter().map(|h| h.events).sum::<u64>(), 1);
    assert!(store.activity("acme", from, 0).await.unwrap().is_empty());
    // A window after all of it is empty.
    let later = store
        .activity("acme", from + TimeDelta::days(3), 24)
        .await
        .unwrap();
    assert!(later.iter().all(|h| h.events == 0 && h.calls == 0));
}

/// Replay protection: a delivery remembered for an admitted job answers that
/// job until it expires, per tenant; a reservation whose job never came to
/// exist is taken over; re-pointing follows a re-send.
pub async fn deliveries_remember_replays_per_tenant_until_they_expire(store: Arc<dyn Store>) {
    let job = event("acme", "C1", json!({"v": "A"}), None);
    let reserved = job.id;
    assert!(
        store
            .remember_delivery("acme", "msg_1", reserved, at(0), at(360))
            .await
            .unwrap()
            .is_none(),
        "a new delivery"
    );
    // Admitting is what makes it count: before that, a retry takes it over.
    let retry = Uuid::now_v7();
    assert!(
        store
            .remember_delivery("acme", "msg_1", retry, at(1), at(361))
            .await
            .unwrap()
            .is_none(),
        "a reservation without its job is not a replay"
    );
    let mut job = job;
    job.id = retry;
    let admitted = admit(&store, job, at(1)).await;
    let replay = store
        .remember_delivery("acme", "msg_1", Uuid::now_v7(), at(2), at(362))
        .await
        .unwrap()
        .expect("a replay");
    assert_eq!(replay.id, admitted.id);
    // Another tenant's id of the same spelling is its own delivery.
    assert!(
        store
            .remember_delivery("other", "msg_1", Uuid::now_v7(), at(2), at(362))
            .await
            .unwrap()
            .is_none()
    );
    // Expired: forgotten, and the id is new again.
    assert!(
        store
            .remember_delivery("acme", "msg_1", Uuid::now_v7(), at(400), at(760))
            .await
            .unwrap()
            .is_none(),
        "expired deliveries are forgotten"
    );

    // A delivery admitted as an existing job (a re-send) answers that job.
    let original = admit(&store, event("acme", "C2", json!({}), None), at(500)).await;
    let reserved = Uuid::now_v7();
    assert!(
        store
            .remember_delivery("acme", "msg_2", reserved, at(500), at(860))
            .await
            .unwrap()
            .is_none()
    );
    store
        .repoint_delivery("acme", "msg_2", reserved, original.id)
        .await
        .unwrap();
    let replay = store
        .remember_delivery("acme", "msg_2", Uuid::now_v7(), at(501), at(861))
        .await
        .unwrap()
        .expect("a replay");
    assert_eq!(replay.id, original.id);
}

/// Admits one new, distinct event (for the full-disk check).
pub async fn admit_one(
    store: &dyn Store,
    n: usize,
) -> Result<Admission, apit_moodle_sync::store::StoreError> {
    let job = event(
        "acme",
        &format!("FULL-{n}"),
        json!({"pad": "x".repeat(2000)}),
        None,
    );
    store.admit(job, false, at(0)).await
}

// Retention cases live in their own file, with the helpers above.
#[path = "retention.rs"]
mod retention;
pub use retention::*;
