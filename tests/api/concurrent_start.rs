//! Several replicas of the built binary started at the same moment on an empty
//! database (as a Deployment or `docker compose up` does): the migrations run
//! once, every replica becomes ready, and they serve one queue between them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::*;

const BIN: &str = env!("CARGO_BIN_EXE_apit-moodle-sync");

/// One replica: its process, its address, its log.
struct Replica {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `n` processes on `database_url` back to back (microseconds apart, so
/// their start-ups and migrations overlap), then waits until each is ready.
async fn start_together(
    dir: &Path,
    database_url: &str,
    moodle: &FakeMoodle,
    receiver: &CallbackReceiver,
    n: usize,
) -> Vec<Replica> {
    let mut commands = Vec::new();
    for i in 0..n {
        let port = free_port();
        let config = dir.join(format!("replica-{i}.toml"));
        let toml = test_config(database_url, moodle, receiver).replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{port}\""),
        );
        std::fs::write(&config, toml).unwrap();
        let log = dir.join(format!("replica-{i}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let mut command = Command::new(BIN);
        command
            .args(["serve", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out));
        commands.push((command, format!("http://127.0.0.1:{port}"), log));
    }
    let mut replicas: Vec<Replica> = commands
        .into_iter()
        .map(|(mut command, base, log)| Replica {
            child: command.spawn().expect("the binary starts"),
            base,
            log,
        })
        .collect();
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    for replica in &mut replicas {
        loop {
            if let Some(status) = replica.child.try_wait().unwrap() {
                panic!(
                    "a replica exited ({status}) instead of serving:\n{}",
                    std::fs::read_to_string(&replica.log).unwrap_or_default()
                );
            }
            let ready = http.get(format!("{}/readyz", replica.base)).send().await;
            if ready.is_ok_and(|r| r.status() == StatusCode::OK) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "a replica did not become ready:\n{}",
                std::fs::read_to_string(&replica.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    replicas
}

async fn post(base: &str, kind: &str, body: &Value) -> StatusCode {
    reqwest::Client::new()
        .post(format!("{base}/v1/tenants/{TENANT}/events/{kind}"))
        .bearer_auth(WEBHOOK_SECRET)
        .json(body)
        .send()
        .await
        .unwrap()
        .status()
}

async fn jobs(base: &str) -> Vec<Value> {
    let body: Value = reqwest::Client::new()
        .get(format!("{base}/v1/jobs?limit=100"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["jobs"].as_array().cloned().unwrap_or_default()
}

/// Each replica accepts a booking; every booking finishes, whichever replica
/// ran it, and each replica lists them all (one shared queue).
async fn all_serve(replicas: &[Replica], moodle: &FakeMoodle) {
    for (i, replica) in replicas.iter().enumerate() {
        let body = booking(
            &format!("D{i}"),
            "C1",
            &format!("U{i}"),
            &format!("user{i}@example.com"),
        );
        assert_eq!(
            post(&replica.base, "booking-created", &body).await,
            StatusCode::ACCEPTED
        );
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    for replica in replicas {
        loop {
            let listed = jobs(&replica.base).await;
            if listed.len() == replicas.len() && listed.iter().all(|j| j["status"] == "succeeded") {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "not every booking finished: {listed:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert_eq!(moodle.courses().len(), 1, "one course for every booking");
    assert_eq!(moodle.enrolments().len(), replicas.len());
}

#[tokio::test]
async fn replicas_started_at_once_on_an_empty_postgres_database_migrate_once_and_all_serve() {
    let Some(db) = TestDb::postgres("replicas_started_at_once_on_postgres").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let moodle = FakeMoodle::start().await;
    let receiver = CallbackReceiver::start().await;
    let replicas = start_together(dir.path(), &db.url, &moodle, &receiver, 3).await;

    // Each migration is recorded once, and succeeded.
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let rows: Vec<(i64, i64, bool)> = sqlx::query_as(
        "SELECT version, COUNT(*), bool_and(success) FROM _sqlx_migrations \
         GROUP BY version ORDER BY version",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    assert!(!rows.is_empty());
    for (version, count, success) in rows {
        assert_eq!((count, success), (1, true), "migration {version}");
    }
    all_serve(&replicas, &moodle).await;
}

/// SQLite is meant for one process per file; several started at once on a new
/// file must still not break it (sqlx takes no migration lock on SQLite, so
/// the losers of the race used to exit): all start, and the queue they share works.
#[tokio::test]
async fn processes_started_at_once_on_a_new_sqlite_file_migrate_once_and_all_serve() {
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let moodle = FakeMoodle::start().await;
    let receiver = CallbackReceiver::start().await;
    let replicas = start_together(dir.path(), &db.url, &moodle, &receiver, 4).await;

    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
    let rows: Vec<(i64, i64, bool)> = sqlx::query_as(
        "SELECT version, COUNT(*), MIN(success) FROM _sqlx_migrations \
         GROUP BY version ORDER BY version",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    assert!(!rows.is_empty());
    for (version, count, success) in rows {
        assert_eq!((count, success), (1, true), "migration {version}");
    }
    all_serve(&replicas, &moodle).await;
}
