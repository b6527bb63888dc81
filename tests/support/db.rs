//! A fresh database for one test: a SQLite file in a temporary directory, or a
//! PostgreSQL database of its own (dropped when the test ends, even on panic)
//! when `DATABASE_URL_POSTGRES` is set. Set but unreachable is a failure, not a
//! skip. Used by every test binary that needs a store.
#![allow(dead_code)]

use sqlx::Connection;
use sqlx::postgres::PgConnection;
use tempfile::TempDir;
use uuid::Uuid;

/// The environment variable naming the PostgreSQL server to test against.
pub const PG_ENV: &str = "DATABASE_URL_POSTGRES";

/// A database for one test and what to clean up after it.
pub struct TestDb {
    /// Pass to `store::connect` or as the service's `database_url`.
    pub url: String,
    /// The SQLite file lives in this directory.
    _dir: Option<TempDir>,
    /// Drops the PostgreSQL database when the test ends.
    _pg: Option<PgDropGuard>,
}

impl TestDb {
    /// A fresh SQLite database file.
    pub fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("test.db").display());
        TestDb {
            url,
            _dir: Some(dir),
            _pg: None,
        }
    }

    /// A fresh PostgreSQL database, or `None` (with a note naming `test`) when
    /// the suite is not configured for PostgreSQL. Panics when configured but
    /// unreachable.
    pub async fn postgres(test: &str) -> Option<TestDb> {
        let Ok(admin_url) = std::env::var(PG_ENV) else {
            eprintln!("note: {PG_ENV} is not set; skipping the PostgreSQL variant of {test}");
            return None;
        };
        let name = format!("apit_test_{}", Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("{PG_ENV} is set but PostgreSQL is unreachable: {e}"));
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create test database");
        let _ = admin.close().await;
        Some(TestDb {
            url: with_database(&admin_url, &name),
            _dir: None,
            _pg: Some(PgDropGuard { admin_url, name }),
        })
    }
}

/// Drops a test database, best effort. `WITH (FORCE)` ends the store's own
/// connections; a thread with its own runtime lets this run from `Drop`.
struct PgDropGuard {
    admin_url: String,
    name: String,
}

impl Drop for PgDropGuard {
    fn drop(&mut self) {
        let url = self.admin_url.clone();
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut conn = PgConnection::connect(&url).await.ok()?;
                sqlx::query(&sql).execute(&mut conn).await.ok()?;
                conn.close().await.ok()
            })
        })
        .join();
    }
}

/// `url` with its database name replaced.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let host_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[host_start..].find('/') {
        Some(slash) => &base[..host_start + slash],
        None => base,
    };
    format!("{base}/{database}{query}")
}

#[test]
fn with_database_replaces_the_name() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/test", "x"),
        "postgres://postgres@127.0.0.1:5432/x"
    );
    assert_eq!(
        with_database("postgres://u:p@h/test?sslmode=disable", "x"),
        "postgres://u:p@h/x?sslmode=disable"
    );
    assert_eq!(
        with_database("postgres://h:5432", "x"),
        "postgres://h:5432/x"
    );
}
