//! Store conformance suite: every case in `cases.rs` runs against SQLite (a
//! fresh file per test) and against PostgreSQL (a fresh database per test) when
//! `DATABASE_URL_POSTGRES` is set, e.g. `postgres://postgres@127.0.0.1:5432/test`.
//! Set but unreachable is a failure, not a skip. Plus SQLite-only checks:
//! crash durability (a child process aborts after committing) and URL options.

mod cases;
#[path = "../support/db.rs"]
mod db;

use std::sync::Arc;

use apit_moodle_sync::store::{self, JobQueue, SqliteStore, Store};
use db::TestDb;
use sqlx::Connection;
use sqlx::postgres::PgConnection;

/// A store for one test on its own database (fields drop in order: the store
/// first, then its database).
pub struct StoreUnderTest {
    store: Arc<dyn Store>,
    _db: TestDb,
}

impl StoreUnderTest {
    async fn open(db: TestDb) -> StoreUnderTest {
        let store = store::connect(&db.url).await.expect("open the store");
        StoreUnderTest { store, _db: db }
    }

    /// The store under test.
    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }
}

/// Runs each named case of `cases` as `sqlite::<case>` and `postgres::<case>`.
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let db = crate::StoreUnderTest::open(crate::TestDb::sqlite()).await;
                    crate::cases::$case(db.store()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let Some(db) = crate::TestDb::postgres(stringify!($case)).await else {
                        return;
                    };
                    let db = crate::StoreUnderTest::open(db).await;
                    crate::cases::$case(db.store()).await;
                }
            )*
        }
    };
}

conformance!(
    ping_answers,
    admit_creates_a_queued_job,
    admit_same_key_while_queued_or_running_returns_it,
    admit_same_key_after_success_returns_it_unless_forced,
    admit_same_key_requeues_failed_and_dead,
    admit_without_key_follows_the_newest_event,
    admit_without_key_requeues_a_failed_newest_job,
    claim_orders_by_seq_and_respects_keys,
    claim_waits_for_next_attempt_at_and_a_retrying_job_still_blocks,
    claim_respects_the_limit,
    expired_lease_is_reclaimed_and_the_dangling_attempt_closed,
    finish_records_the_attempt_and_releases_keys_only_when_final,
    finish_and_extend_with_a_stale_attempt_change_nothing,
    retry_requeues_behind_newer_jobs,
    concurrent_claimers_get_each_job_once,
    concurrent_claimers_and_admitters_keep_key_order,
    concurrent_admits_of_one_event_create_one_job,
    links_upsert,
    enrolments_upsert_and_keep_the_last_score,
    writebacks_dedupe_and_supersede,
    writebacks_claim_and_finish,
    jobs_list_filters_and_cursor,
    queue_stats_count_per_tenant_and_status,
    many_blocked_jobs_wait_and_run_in_key_order,
    run_now_makes_a_queued_job_due_and_nothing_else,
    activity_counts_events_and_calls_per_hour,
    deliveries_remember_replays_per_tenant_until_they_expire,
    prune_removes_old_history_and_keeps_each_entitys_newest_event,
    prune_keeps_a_job_while_its_idempotency_key_is_kept,
    prune_keeps_failed_jobs_longer_and_never_touches_active_jobs_links_or_enrolments,
    prune_writebacks_keeps_the_newest_of_each_target_and_pending_ones,
    prune_works_in_small_batches_through_a_long_history,
    concurrent_prunes_delete_each_row_once,
);

#[tokio::test]
async fn connect_rejects_an_unknown_scheme() {
    assert!(matches!(
        store::connect("mysql://localhost/x").await,
        Err(store::StoreError::UnsupportedUrl)
    ));
}

#[tokio::test]
async fn sqlite_accepts_synchronous_full_and_refuses_off() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("full.db");
    let store = store::connect(&format!("sqlite://{}?synchronous=full", path.display()))
        .await
        .expect("synchronous=full is accepted");
    store.ping().await.unwrap();
    assert!(
        store::connect(&format!("sqlite://{}?synchronous=off", path.display()))
            .await
            .is_err()
    );
}

/// The child side of [`sqlite_committed_data_survives_a_crash`]: writes through
/// the store, then aborts the process without closing anything.
#[tokio::test]
#[ignore = "run in a child process by sqlite_committed_data_survives_a_crash"]
async fn crash_child() {
    let Ok(path) = std::env::var("APIT_STORE_CRASH_DB") else {
        return;
    };
    let store = SqliteStore::connect(&format!("sqlite://{path}"))
        .await
        .unwrap();
    cases::write_durability_fixture(&store).await;
    // Like `kill -9`: no destructors, no pool close, no WAL checkpoint.
    std::process::abort();
}

#[tokio::test]
async fn sqlite_committed_data_survives_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.db");
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--ignored", "--test-threads=1"])
        .env("APIT_STORE_CRASH_DB", &path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run the child");
    assert!(!status.success(), "the child must die by abort, not exit");
    let wal = dir.path().join("crash.db-wal");
    assert!(
        std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0),
        "the committed data should still be in the WAL (no clean shutdown happened)"
    );

    let store = SqliteStore::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    cases::check_durability_fixture(&store).await;
    store.close().await;
}

#[tokio::test]
async fn sqlite_in_memory_works_through_one_connection() {
    let store = store::connect("sqlite::memory:").await.unwrap();
    cases::write_durability_fixture(store.as_ref()).await;
    cases::check_durability_fixture(store.as_ref()).await;
}

/// The claim's query with its parameters written in: now, the tenant, a limit.
fn claim_sql(now: &str) -> String {
    store::CLAIMABLE
        .replace("$1", now)
        .replace("$2", "'acme'")
        .replace("$3", "10")
}

/// The claim's query reads only the partial indexes of claimable jobs: no
/// scan of the jobs table, whatever its size (SQLite's plan).
#[tokio::test]
async fn sqlite_claims_never_scan_the_queue() {
    use sqlx::Connection;
    let db = TestDb::sqlite();
    let store = store::connect(&db.url).await.unwrap();
    cases::fill_blocked(&store, 2_000).await;
    let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
    // EXPLAIN QUERY PLAN rows are (id, parent, notused, detail).
    let rows: Vec<(i64, i64, i64, String)> =
        sqlx::query_as(&format!("EXPLAIN QUERY PLAN {}", claim_sql("0")))
            .fetch_all(&mut conn)
            .await
            .unwrap();
    let text: Vec<String> = rows.into_iter().map(|r| r.3).collect();
    let text = text.join("\n");
    assert!(text.contains("USING INDEX jobs_ready"), "{text}");
    assert!(text.contains("USING INDEX jobs_leased"), "{text}");
    assert!(!text.contains("SCAN jobs"), "{text}");
}

/// Rows a claim reads on PostgreSQL, from the executed plan: the same with
/// 200 or 2,000 jobs blocked in the queue.
#[tokio::test]
async fn postgres_claims_read_the_same_rows_at_any_depth() {
    let Some(db) = TestDb::postgres("postgres_claims_read_the_same_rows_at_any_depth").await else {
        return;
    };
    let store = store::connect(&db.url).await.unwrap();
    let mut conn = PgConnection::connect(&db.url).await.unwrap();
    cases::fill_blocked(&store, 200).await;
    let shallow = rows_read(&mut conn).await;
    cases::fill_more_blocked(&store, 200, 1_800).await;
    let deep = rows_read(&mut conn).await;
    assert_eq!(
        shallow, deep,
        "a claim read {shallow} rows at 200 queued, {deep} at 2,000"
    );
}

/// Rows the claim's query visited: returned by each plan node, plus removed by its filters.
async fn rows_read(conn: &mut PgConnection) -> u64 {
    let sql = format!("EXPLAIN (ANALYZE, FORMAT JSON) {}", claim_sql("now()"));
    let plan: sqlx::types::Json<serde_json::Value> =
        sqlx::query_scalar(&sql).fetch_one(conn).await.unwrap();
    fn walk(node: &serde_json::Value) -> u64 {
        let count = |k: &str| node.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
        let own = count("Actual Rows") + count("Rows Removed by Filter");
        let children: u64 = node
            .get("Plans")
            .and_then(serde_json::Value::as_array)
            .map_or(0, |plans| plans.iter().map(walk).sum());
        own + children
    }
    walk(&plan.0[0]["Plan"])
}

/// A full disk (simulated by a page cap) fails admissions; once there is room
/// again the same store admits again, without a restart. (SQLite may roll a
/// transaction back by itself on SQLITE_FULL, which used to leave the only
/// writer connection refusing every later transaction.)
#[tokio::test]
async fn sqlite_admits_again_after_a_full_disk() {
    let db = TestDb::sqlite();
    let store = SqliteStore::connect(&db.url).await.unwrap();
    store.set_max_page_count(1).await.unwrap();
    let mut refused = false;
    for n in 0..2000 {
        if cases::admit_one(&store, n).await.is_err() {
            refused = true;
            break;
        }
    }
    assert!(refused, "the capped database never filled up");
    assert!(cases::admit_one(&store, 9999).await.is_err(), "still full");
    store.set_max_page_count(u64::from(u32::MAX)).await.unwrap();
    let admitted = cases::admit_one(&store, 10_000).await.expect("room again");
    let id = admitted.job().id;
    assert!(store.job(id).await.unwrap().is_some(), "stored");
    store.close().await;
}

#[tokio::test]
async fn sqlite_file_shrinks_after_pruning() {
    let dir = tempfile::tempdir().unwrap();
    cases::sqlite_file_shrinks_after_pruning(&dir.path().join("shrink.db")).await;
}
