//! Conformance cases for retention (`Retention::prune`): what goes, and what
//! never does — the newest event of each entity still answers a re-send, an
//! idempotency key of a kept job still answers, queued and running jobs, the
//! newest write-back of a target, links and enrolments stay.

use std::sync::Arc;

use apit_moodle_sync::config::RetentionConfig;
use apit_moodle_sync::store::{
    Cutoffs, EnrolmentRecord, EnrolmentState, JobStatus, Link, LinkKind, NewJob, PruneCursor,
    Pruned, Store, WritebackFinish, WritebackStatus,
};
use serde_json::json;
use uuid::Uuid;

use super::{LEASE, admit, at, claim_one, created, event, existing, run_to, writeback};

const DAY: i64 = 86_400;

/// The default retention (30 days for succeeded jobs, 90 for failed ones,
/// 30 for delivered write-backs, keys as long as their jobs).
fn defaults() -> RetentionConfig {
    RetentionConfig::default()
}

/// Runs a whole pass at `now` in steps of `batch`, as the pruner does.
async fn prune_all(
    store: &Arc<dyn Store>,
    now: chrono::DateTime<chrono::Utc>,
    config: &RetentionConfig,
    batch: u32,
) -> Pruned {
    let cutoffs = Cutoffs::at(now, config);
    let mut cursor = PruneCursor::default();
    let mut total = Pruned::default();
    for _ in 0..10_000 {
        let step = store.prune(&cutoffs, cursor, batch).await.unwrap();
        assert!(
            step.pruned.jobs <= u64::from(batch) && step.pruned.writebacks <= u64::from(batch),
            "a step deletes at most one batch: {:?}",
            step.pruned
        );
        total.add(&step.pruned);
        match step.next {
            Some(next) => cursor = next,
            None => return total,
        }
    }
    panic!("the pass never ended");
}

pub async fn prune_removes_old_history_and_keeps_each_entitys_newest_event(store: Arc<dyn Store>) {
    // C1 saved as A, then as B: A is history, B is the newest event of C1.
    let a = event("acme", "C1", json!({"label": "A"}), None);
    let b = event("acme", "C1", json!({"label": "B"}), None);
    let old_a = run_to(&store, a.clone(), JobStatus::Succeeded, at(0)).await;
    let head_b = run_to(&store, b.clone(), JobStatus::Succeeded, at(10)).await;
    // A skipped job of another entity, superseded too, finished later (day 20).
    let skip_1 = event("acme", "C2", json!({"label": "x"}), None);
    let skip_2 = event("acme", "C2", json!({"label": "y"}), None);
    let recent = run_to(&store, skip_1, JobStatus::Skipped, at(20 * DAY)).await;
    run_to(&store, skip_2, JobStatus::Skipped, at(20 * DAY + 1)).await;

    // Day 31: only A is older than 30 days and not an entity's newest.
    let pruned = prune_all(&store, at(31 * DAY), &defaults(), 200).await;
    assert_eq!(pruned.jobs, 1, "{pruned:?}");
    assert_eq!(pruned.attempts, 1, "its one attempt goes with it");
    assert!(store.job(old_a.id).await.unwrap().is_none());
    assert!(store.attempts(old_a.id).await.unwrap().is_empty());
    assert!(
        store.job(recent.id).await.unwrap().is_some(),
        "within 30 days"
    );

    // Years later the newest event still answers a re-send with its outcome.
    let pruned = prune_all(&store, at(3000 * DAY), &defaults(), 200).await;
    assert_eq!(
        pruned.jobs, 1,
        "only the superseded skipped job: {pruned:?}"
    );
    let again = existing(store.admit(b, false, at(3000 * DAY)).await.unwrap());
    assert_eq!(again.id, head_b.id);
    assert_eq!(again.status, JobStatus::Succeeded);
    assert_eq!(store.attempts(head_b.id).await.unwrap().len(), 1);
    // The pruned body A is not the newest: sending it again runs it (as SPEC §2 says anyway).
    created(store.admit(a, false, at(3000 * DAY)).await.unwrap());
}

pub async fn prune_keeps_a_job_while_its_idempotency_key_is_kept(store: Arc<dyn Store>) {
    let config = RetentionConfig {
        idempotency: std::time::Duration::from_secs(60 * DAY as u64),
        ..defaults()
    };
    // Job K (key "wf-1") is followed by a newer event of the same course, so
    // only its key protects it.
    let keyed = event("acme", "C1", json!({"label": "A"}), Some("wf-1"));
    let k = run_to(&store, keyed.clone(), JobStatus::Succeeded, at(0)).await;
    run_to(
        &store,
        event("acme", "C1", json!({"label": "B"}), None),
        JobStatus::Succeeded,
        at(1),
    )
    .await;

    // Day 31: past `succeeded`, not past `idempotency`: kept, and the key answers.
    let pruned = prune_all(&store, at(31 * DAY), &config, 200).await;
    assert_eq!(pruned, Pruned::default());
    let again = existing(
        store
            .admit(keyed.clone(), false, at(31 * DAY))
            .await
            .unwrap(),
    );
    assert_eq!(again.id, k.id);

    // Day 61: the job and its key go together; the key is then new again.
    let pruned = prune_all(&store, at(61 * DAY), &config, 200).await;
    assert_eq!((pruned.jobs, pruned.idempotency), (1, 1), "{pruned:?}");
    assert!(store.job(k.id).await.unwrap().is_none());
    let resend = NewJob {
        id: Uuid::now_v7(),
        ..keyed
    };
    let fresh = created(store.admit(resend, false, at(61 * DAY)).await.unwrap());
    assert_eq!(fresh.status, JobStatus::Queued);
}

pub async fn prune_keeps_failed_jobs_longer_and_never_touches_active_jobs_links_or_enrolments(
    store: Arc<dyn Store>,
) {
    // A failed job, superseded by a newer event of its course.
    let failed = run_to(
        &store,
        event("acme", "C1", json!({"label": "bad"}), None),
        JobStatus::Failed,
        at(0),
    )
    .await;
    run_to(
        &store,
        event("acme", "C1", json!({"label": "good"}), None),
        JobStatus::Succeeded,
        at(1),
    )
    .await;
    let link = Link {
        moodle_id: 42,
        last_sent: Some(json!({"fullname": "First Aid"})),
    };
    store
        .put_link("acme", LinkKind::Course, "C1", &link)
        .await
        .unwrap();
    let enrolment = EnrolmentRecord {
        tenant: "acme".into(),
        booking_id: "D1".into(),
        moodle_course_id: 42,
        moodle_user_id: 7,
        state: EnrolmentState::Active,
        last_score: None,
    };
    store.put_enrolment(&enrolment).await.unwrap();
    // A running job (claimed, its worker gone) and a queued one behind it.
    admit(&store, event("acme", "C9", json!({"n": 1}), None), at(2)).await;
    let running = claim_one(&store, at(2)).await;
    let queued = admit(&store, event("acme", "C9", json!({"n": 2}), None), at(3)).await;

    // Day 31: the failed job is kept (90 days for failures).
    let pruned = prune_all(&store, at(31 * DAY), &defaults(), 200).await;
    assert_eq!(pruned, Pruned::default());
    assert!(store.job(failed.id).await.unwrap().is_some());

    // Day 91 and years on: the failed job goes; nothing active, no link, no enrolment.
    let pruned = prune_all(&store, at(91 * DAY), &defaults(), 200).await;
    assert_eq!(pruned.jobs, 1, "{pruned:?}");
    assert!(store.job(failed.id).await.unwrap().is_none());
    prune_all(&store, at(3000 * DAY), &defaults(), 200).await;
    let still_running = store.job(running.id).await.unwrap().unwrap();
    assert_eq!(still_running.status, JobStatus::Running);
    assert_eq!(store.attempts(running.id).await.unwrap().len(), 1);
    let still_queued = store.job(queued.id).await.unwrap().unwrap();
    assert_eq!(still_queued.status, JobStatus::Queued);
    assert_eq!(
        store.link("acme", LinkKind::Course, "C1").await.unwrap(),
        Some(link)
    );
    assert_eq!(
        store.enrolments("acme", false).await.unwrap(),
        vec![enrolment]
    );
    // The queue still works as before: the running job's lease expires, it is
    // claimed again, and the queued one waits behind it (same course key).
    let later = at(3000 * DAY);
    let again = store.claim("acme", later, LEASE, 10).await.unwrap();
    assert_eq!(
        again.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![running.id]
    );
}

pub async fn prune_writebacks_keeps_the_newest_of_each_target_and_pending_ones(
    store: Arc<dyn Store>,
) {
    let job = admit(&store, event("acme", "C1", json!({}), None), at(0))
        .await
        .id;
    let deliver_all = |now| {
        let store = store.clone();
        async move {
            for wb in store.claim_writebacks(now, LEASE, 100).await.unwrap() {
                let finish = WritebackFinish {
                    status: WritebackStatus::Delivered,
                    next_attempt_at: None,
                    error: None,
                };
                assert!(
                    store
                        .finish_writeback(wb.id, wb.attempts, now, finish)
                        .await
                        .unwrap()
                );
            }
        }
    };
    // C1 got Moodle id 41, then 42: both delivered; C2's is still pending.
    let c1 = |id| json!({"accessplanit_id": "C1", "moodle_id": id});
    assert!(
        store
            .enqueue_writeback(writeback(Some(job), "C1", c1(41)), at(1))
            .await
            .unwrap()
    );
    deliver_all(at(2)).await;
    assert!(
        store
            .enqueue_writeback(writeback(Some(job), "C1", c1(42)), at(3))
            .await
            .unwrap()
    );
    deliver_all(at(4)).await;
    assert!(
        store
            .enqueue_writeback(writeback(Some(job), "C2", json!({"moodle_id": 5})), at(5))
            .await
            .unwrap()
    );
    let summary = |wbs: Vec<apit_moodle_sync::store::Writeback>| {
        wbs.into_iter()
            .map(|w| (w.apit_id, w.payload["moodle_id"].clone(), w.status))
            .collect::<Vec<_>>()
    };

    // Day 29: nothing is old enough.
    assert_eq!(
        prune_all(&store, at(29 * DAY), &defaults(), 200).await,
        Pruned::default()
    );
    // Day 31 (and years on): only the superseded value 41 goes.
    let pruned = prune_all(&store, at(31 * DAY), &defaults(), 1).await;
    assert_eq!(pruned.writebacks, 1, "{pruned:?}");
    prune_all(&store, at(3000 * DAY), &defaults(), 1).await;
    assert_eq!(
        summary(store.writebacks_for_job(job).await.unwrap()),
        vec![
            ("C1".to_owned(), json!(42), WritebackStatus::Delivered),
            ("C2".to_owned(), json!(5), WritebackStatus::Pending),
        ]
    );
    // A re-run job that learns 42 again still sends nothing twice.
    assert!(
        !store
            .enqueue_writeback(writeback(Some(job), "C1", c1(42)), at(3000 * DAY))
            .await
            .unwrap()
    );
}

pub async fn prune_works_in_small_batches_through_a_long_history(store: Arc<dyn Store>) {
    // 25 superseded events of one course and 25 newest events of 25 others,
    // interleaved: every window holds both kinds.
    let mut superseded = Vec::new();
    let mut newest = Vec::new();
    for i in 0..25 {
        let old = event("acme", "C0", json!({"n": i}), Some(&format!("k{i}")));
        superseded.push(run_to(&store, old, JobStatus::Succeeded, at(i)).await.id);
        let head = event("acme", &format!("H{i}"), json!({}), None);
        newest.push(run_to(&store, head, JobStatus::Succeeded, at(i)).await.id);
    }
    // C0's last event is its newest: it stays.
    let c0_head = superseded.pop().unwrap();
    let pruned = prune_all(&store, at(31 * DAY), &defaults(), 3).await;
    assert_eq!(pruned.jobs, 24, "{pruned:?}");
    assert_eq!(pruned.idempotency, 24, "their keys go with them");
    for id in superseded {
        assert!(store.job(id).await.unwrap().is_none());
    }
    for id in newest.into_iter().chain([c0_head]) {
        assert!(store.job(id).await.unwrap().is_some());
    }
    // A second pass finds nothing more.
    assert_eq!(
        prune_all(&store, at(32 * DAY), &defaults(), 3).await,
        Pruned::default()
    );
}

/// SQLite only: after pruning, the freed pages go back to the file system and
/// the file shrinks (new files use incremental auto-vacuum).
pub async fn sqlite_file_shrinks_after_pruning(path: &std::path::Path) {
    use apit_moodle_sync::store::{Space, SqliteStore};
    let url = format!("sqlite://{}", path.display());
    let sqlite = Arc::new(SqliteStore::connect(&url).await.unwrap());
    let store: Arc<dyn Store> = sqlite.clone();
    // 2,000 events of one course with big bodies: all but the newest are history.
    let filler = "x".repeat(4000);
    for i in 0..2000 {
        let mut job = event("acme", "C1", json!({"n": i, "aims": filler}), None);
        job.keys = vec![format!("course:C1-{i}")];
        admit(&store, job, at(i)).await;
    }
    loop {
        let jobs = store.claim("acme", at(3000), LEASE, 500).await.unwrap();
        if jobs.is_empty() {
            break;
        }
        for job in jobs {
            let done = super::ended(JobStatus::Succeeded);
            assert!(
                store
                    .finish(job.id, job.attempts, at(3000), done)
                    .await
                    .unwrap()
            );
        }
    }
    let before = checkpointed_size(&url, path).await;

    let pruned = prune_all(&store, at(31 * DAY), &defaults(), 200).await;
    assert_eq!(pruned.jobs, 1999);
    let mut released = 0;
    loop {
        match store.release_space(256).await.unwrap() {
            Space::Released { released: n, free } => {
                released += n;
                if n == 0 || free == 0 {
                    break;
                }
            }
            other => panic!("a new file should shrink, got {other:?}"),
        }
    }
    assert!(released > 1000, "released {released} pages");
    let after = checkpointed_size(&url, path).await;
    sqlite.close().await;
    assert!(
        after * 4 < before,
        "the file should shrink to a fraction: {before} → {after} bytes"
    );
}

/// The database file's size once the WAL is written back into it (what `ls`
/// shows after the service stops), measured from a second connection.
async fn checkpointed_size(url: &str, path: &std::path::Path) -> u64 {
    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&mut conn)
        .await
        .unwrap();
    let size = std::fs::metadata(path).unwrap().len();
    conn.close().await.unwrap();
    size
}

/// Two replicas pruning the same store at once (and admitting meanwhile):
/// every superseded job goes exactly once, nothing fails, nothing kept goes.
pub async fn concurrent_prunes_delete_each_row_once(store: Arc<dyn Store>) {
    let mut superseded = 0;
    for course in 0..6 {
        for n in 0..10 {
            let job = event(
                "acme",
                &format!("C{course}"),
                json!({"n": n}),
                Some(&format!("k{course}-{n}")),
            );
            run_to(&store, job, JobStatus::Succeeded, at(n)).await;
            superseded += u64::from(n < 9);
        }
    }
    let now = at(31 * DAY);
    let config = defaults();
    let (a, b, _) = tokio::join!(
        prune_all(&store, now, &config, 4),
        prune_all(&store, now, &config, 4),
        async {
            for i in 0..20 {
                admit(
                    &store,
                    event("acme", &format!("N{i}"), json!({}), None),
                    now,
                )
                .await;
            }
        }
    );
    assert_eq!(a.jobs + b.jobs, superseded, "{a:?} + {b:?}");
    assert_eq!(a.idempotency + b.idempotency, superseded);
    let left = store.jobs(&Default::default()).await.unwrap();
    assert_eq!(
        left.len(),
        6 + 20,
        "each course's newest event and the new jobs"
    );
}
