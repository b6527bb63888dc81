//! Durable state, in three roles: the job queue ([`JobQueue`]), links and
//! enrolments ([`Links`]), and the write-back outbox ([`Outbox`]). Two back-ends.
//!
//! SQLite is the embedded default; PostgreSQL serves several replicas. Both keep
//! the same schema and semantics: one [`SqlStore`] implements the three roles
//! once (`shared/`), over a [`Dialect`]; each back-end's folder holds only what
//! truly differs (encodings, admission, claiming, locking, JSON functions).
//!
//! The handler layer (`sync`) sees only [`Links`] and [`Outbox`]. Signed
//! webhooks are also checked against [`Deliveries`] (replay protection).

mod codec;
mod deliveries;
mod links;
mod migrations;
mod outbox;
mod postgres;
mod queue;
mod retention;
mod shared;
mod sqlite;

pub use deliveries::Deliveries;
pub use links::{EnrolmentRecord, EnrolmentState, Link, LinkKind, Links};
pub use outbox::{Entity, NewWriteback, Outbox, Writeback, WritebackFinish, WritebackStatus};
pub use postgres::{PgDialect, PgStore};
pub use queue::{
    ACTIVITY_LOOKBACK, Admission, Attempt, Finish, HourActivity, Job, JobFilter, JobKind, JobQueue,
    JobStatus, NewJob, QueueStat, RetryResult,
};
pub use retention::{Cutoffs, PruneCursor, PruneStep, Pruned, Retention, Space};
pub use shared::{CLAIMABLE, Dialect, SqlStore};
pub use sqlite::{SqliteDialect, SqliteStore};

use std::sync::Arc;

/// A store failure. Callers treat every store error as transient.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// A failure shared by several callers (a group commit that failed).
    #[error("database error: {0}")]
    Unavailable(String),
    #[error("unsupported database_url (expected sqlite:// or postgres://)")]
    UnsupportedUrl,
}

/// Result alias for store calls.
pub type StoreResult<T> = Result<T, StoreError>;

/// A whole store: every role over one database.
pub trait Store: JobQueue + Links + Outbox + Deliveries + Retention {}

impl<T: JobQueue + Links + Outbox + Deliveries + Retention> Store for T {}

/// Opens the store named by `database_url` and applies its migrations.
pub async fn connect(database_url: &str) -> StoreResult<Arc<dyn Store>> {
    if database_url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(database_url).await?))
    } else if database_url.starts_with("postgres:") || database_url.starts_with("postgresql:") {
        Ok(Arc::new(PgStore::connect(database_url).await?))
    } else {
        Err(StoreError::UnsupportedUrl)
    }
}
