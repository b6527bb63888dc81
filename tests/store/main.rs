//! Store conformance suite: every case in `cases.rs` runs against SQLite (a
//! fresh file per test) and against PostgreSQL (a fresh database per test) when
//! `DATABASE_URL_POSTGRES` is set, e.g. `postgres://postgres@127.0.0.1:5432/test`.
//! Set but unreachable is a failure, not a skip. Plus SQLite-only checks:
//! crash durability (a child process aborts after committing) and URL options.

mod cases;
#[path = "../support/db.rs"]
mod db;

use std::sync::Arc;

use apit_moodle_sync::store::{self, SqliteStore, Store};
use db::TestDb;

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

#[tokio::test]
async fn sqlite_file_shrinks_after_pruning() {
    let dir = tempfile::tempdir().unwrap();
    cases::sqlite_file_shrinks_after_pruning(&dir.path().join("shrink.db")).await;
}
