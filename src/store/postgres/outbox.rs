//! PostgreSQL outbox: claiming with `FOR UPDATE SKIP LOCKED`; the rest is shared.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::types::PgTime;
use super::{PgDialect, PgStore};
use crate::store::codec;
use crate::store::shared::{Dialect, WRITEBACK_COLUMNS};
use crate::store::{NewWriteback, Outbox, StoreResult, Writeback, WritebackFinish};

#[async_trait]
impl Outbox for PgStore {
    async fn enqueue_writeback(&self, wb: NewWriteback, now: DateTime<Utc>) -> StoreResult<bool> {
        self.shared.enqueue_writeback(wb, now).await
    }

    async fn claim_writebacks(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: u32,
    ) -> StoreResult<Vec<Writeback>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let sql = format!(
            "WITH candidates AS ( \
               SELECT id FROM writebacks WHERE status = 'pending' \
               AND next_attempt_at <= $1 AND (lease_until IS NULL OR lease_until < $1) \
               ORDER BY seq LIMIT $3 FOR UPDATE SKIP LOCKED \
             ), claimed AS ( \
               UPDATE writebacks SET attempts = writebacks.attempts + 1, \
               lease_until = $2, updated_at = $1 \
               FROM candidates WHERE writebacks.id = candidates.id \
               RETURNING writebacks.* \
             ) \
             SELECT {WRITEBACK_COLUMNS} FROM claimed ORDER BY seq"
        );
        let rows = sqlx::query(&sql)
            .bind(PgTime(now))
            .bind(PgTime(codec::lease_end(now, lease)))
            .bind(i64::from(limit))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(PgDialect::writeback).collect()
    }

    async fn finish_writeback(
        &self,
        id: Uuid,
        attempt: u32,
        now: DateTime<Utc>,
        finish: WritebackFinish,
    ) -> StoreResult<bool> {
        self.shared.finish_writeback(id, attempt, now, finish).await
    }

    async fn writebacks_for_job(&self, job_id: Uuid) -> StoreResult<Vec<Writeback>> {
        self.shared.writebacks_for_job(job_id).await
    }

    async fn pending_writebacks(&self) -> StoreResult<u64> {
        self.shared.pending_writebacks().await
    }
}
