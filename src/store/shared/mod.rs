//! The queries both back-ends run the same way, written once.
//!
//! SQL here is dialect-neutral: `$n` placeholders (sqlx's SQLite driver reads
//! `$n` as the n-th argument, as PostgreSQL does) and no back-end functions.
//! What differs in these queries is only how values are bound and rows decoded
//! (SQLite: text ids, millisecond integers, JSON text; PostgreSQL: uuid,
//! timestamptz, jsonb) — that is the [`Dialect`] of each back-end.

mod links;
mod outbox;
mod queue;

use std::future::Future;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{Database, Encode, Pool, Transaction, Type};
use uuid::Uuid;

use super::{
    Attempt, EnrolmentRecord, Job, Link, QueueStat, StoreResult, Writeback, WritebackStatus,
};

/// The columns of a job, in the order the dialects' `job` decoders expect.
pub(super) const JOB_COLUMNS: &str = "id, seq, tenant, kind, event, keys, status, attempts, \
     created_at, updated_at, next_attempt_at, retry_since, lease_until, last_error, outcome";

/// The columns of a write-back, for the dialects' `writeback` decoders.
pub(super) const WRITEBACK_COLUMNS: &str = "id, seq, job_id, tenant, entity, apit_id, payload, \
     status, attempts, created_at, retry_since, next_attempt_at, last_error";

/// How one back-end binds values and decodes rows for the shared queries.
pub(super) trait Dialect: Send + Sync + 'static {
    /// The sqlx database.
    type Db: Database;
    /// A bound UUID.
    type Id: for<'q> Encode<'q, Self::Db> + Type<Self::Db> + Send + 'static;
    /// A bound time.
    type Time: for<'q> Encode<'q, Self::Db> + Type<Self::Db> + Send + 'static;
    /// A bound JSON value.
    type Json: for<'q> Encode<'q, Self::Db> + Type<Self::Db> + Send + 'static;
    /// A bound attempt counter.
    type Count: for<'q> Encode<'q, Self::Db> + Type<Self::Db> + Send + 'static;

    /// The next write-back `seq` in an INSERT's VALUES list.
    const NEXT_WRITEBACK_SEQ: &'static str;

    fn id(id: Uuid) -> Self::Id;
    fn time(t: DateTime<Utc>) -> Self::Time;
    fn json(v: &Value) -> Self::Json;
    fn count(n: u32) -> Self::Count;

    fn job(row: &<Self::Db as Database>::Row) -> StoreResult<Job>;
    fn attempt(row: &<Self::Db as Database>::Row) -> StoreResult<Attempt>;
    fn writeback(row: &<Self::Db as Database>::Row) -> StoreResult<Writeback>;
    fn enrolment(row: &<Self::Db as Database>::Row) -> StoreResult<EnrolmentRecord>;
    fn link(row: &<Self::Db as Database>::Row) -> StoreResult<Link>;
    fn queue_stat(row: &<Self::Db as Database>::Row) -> StoreResult<QueueStat>;
    /// `payload_hash` and `status` of a write-back row.
    fn hash_and_status(row: &<Self::Db as Database>::Row)
    -> StoreResult<(String, WritebackStatus)>;

    /// Rows an UPDATE or DELETE changed.
    fn rows_affected(result: &<Self::Db as Database>::QueryResult) -> u64;

    /// The condition "one of the job's keys ends with `$param`" (the needle).
    fn reference_condition(param: usize) -> String;

    /// A write transaction (SQLite: one that holds the write lock from the start).
    fn begin_write(
        pool: &Pool<Self::Db>,
    ) -> impl Future<Output = StoreResult<Transaction<'static, Self::Db>>> + Send;

    /// Serialises transactions touching the same thing across replicas until
    /// commit (PostgreSQL advisory lock; SQLite's single writer already does).
    fn lock<'t>(
        tx: &'t mut Transaction<'static, Self::Db>,
        parts: &'t [&'t str],
    ) -> impl Future<Output = StoreResult<()>> + Send + 't;
}

/// The pools the shared queries run on: reads may go to a reader pool, writes
/// go to the writer (SQLite: its single connection; PostgreSQL: the same pool).
pub(super) struct Shared<D: Dialect> {
    pub reader: Pool<D::Db>,
    pub writer: Pool<D::Db>,
}

/// `impl<D: Dialect> Shared<D> { … }` with the bounds every shared query needs,
/// written once: the pools and transactions execute, and the plain values
/// (`&str`, `String`, `i64`, `bool`) bind on both back-ends, and a count reads back.
macro_rules! shared_queries {
    ($($body:tt)*) => {
        impl<D: Dialect> Shared<D>
        where
            for<'c> &'c mut <D::Db as sqlx::Database>::Connection:
                sqlx::Executor<'c, Database = D::Db>,
            for<'q> <D::Db as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, D::Db>,
            for<'q> &'q str: sqlx::Encode<'q, D::Db> + sqlx::Type<D::Db>,
            for<'q> String: sqlx::Encode<'q, D::Db>,
            String: sqlx::Type<D::Db>,
            for<'q> i64: sqlx::Encode<'q, D::Db>,
            i64: sqlx::Type<D::Db>,
            for<'q> bool: sqlx::Encode<'q, D::Db>,
            bool: sqlx::Type<D::Db>,
            for<'q> Option<String>: sqlx::Encode<'q, D::Db>,
            for<'q> Option<D::Id>: sqlx::Encode<'q, D::Db>,
            for<'q> Option<D::Time>: sqlx::Encode<'q, D::Db>,
            for<'q> Option<D::Json>: sqlx::Encode<'q, D::Db>,
            for<'r> i64: sqlx::Decode<'r, D::Db>,
            usize: sqlx::ColumnIndex<<D::Db as sqlx::Database>::Row>,
        {
            $($body)*
        }
    };
}
use shared_queries;
