//! SQLite outbox: claiming on the single writer; the rest is shared.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
use uuid::Uuid;

use super::{SqliteDialect, SqliteStore};
use crate::store::codec::{self, to_ms};
use crate::store::shared::{Dialect, WRITEBACK_COLUMNS};
use crate::store::{NewWriteback, Outbox, StoreResult, Writeback, WritebackFinish};

#[async_trait]
impl Outbox for SqliteStore {
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
        // One statement on the single writer connection: exclusive by construction.
        let sql = format!(
            "UPDATE writebacks SET attempts = attempts + 1, lease_until = $2, updated_at = $1 \
             WHERE id IN (SELECT id FROM writebacks WHERE status = 'pending' \
               AND next_attempt_at <= $1 AND (lease_until IS NULL OR lease_until < $1) \
               ORDER BY seq LIMIT $3) \
             RETURNING {WRITEBACK_COLUMNS}"
        );
        let rows = sqlx::query(&sql)
            .bind(to_ms(now))
            .bind(to_ms(codec::lease_end(now, lease)))
            .bind(i64::from(limit))
            .fetch_all(&self.shared.writer)
            .await?;
        let mut claimed = rows
            .iter()
            .map(|row| {
                Ok((
                    row.try_get::<i64, _>("seq")?,
                    SqliteDialect::writeback(row)?,
                ))
            })
            .collect::<StoreResult<Vec<_>>>()?;
        // RETURNING gives no order.
        claimed.sort_by_key(|(seq, _)| *seq);
        Ok(claimed.into_iter().map(|(_, wb)| wb).collect())
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
