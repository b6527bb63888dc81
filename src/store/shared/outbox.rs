//! The outbox on both back-ends (claiming differs: see each dialect).

use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{OutboxOps, SqlStore, WRITEBACK_COLUMNS, for_every_dialect};
use crate::store::codec;
use crate::store::{
    NewWriteback, Outbox, StoreResult, Writeback, WritebackFinish, WritebackStatus,
};

for_every_dialect! { Outbox for OutboxOps {
    async fn claim_writebacks(&self, now: DateTime<Utc>, lease: Duration, limit: u32) -> StoreResult<Vec<Writeback>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        D::claim_writebacks(self, now, lease, limit).await
    }

    async fn enqueue_writeback(&self, wb: NewWriteback, now: DateTime<Utc>) -> StoreResult<bool> {
        let hash = codec::payload_hash(&wb.payload);
        let entity = wb.entity.as_str();
        let mut tx = D::begin_write(&self.writer).await?;
        // Enqueues for one target run one at a time, so "newest" is well defined.
        D::lock(&mut tx, &["writeback", &wb.tenant, entity, &wb.apit_id]).await?;
        let newest = sqlx::query(
            "SELECT payload_hash, status FROM writebacks \
             WHERE tenant = $1 AND entity = $2 AND apit_id = $3 ORDER BY seq DESC LIMIT 1",
        )
        .bind(wb.tenant.clone())
        .bind(entity)
        .bind(wb.apit_id.clone())
        .fetch_optional(&mut *tx)
        .await?;
        let newest = newest.as_ref().map(D::hash_and_status).transpose()?;
        // A dead write-back is not a reason to skip: a re-run job must be able
        // to deliver what never arrived.
        if newest.is_some_and(|(h, status)| h == hash && status != WritebackStatus::Dead) {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query(
            "UPDATE writebacks SET status = 'superseded', lease_until = NULL, updated_at = $1 \
             WHERE tenant = $2 AND entity = $3 AND apit_id = $4 AND status = 'pending'",
        )
        .bind(D::time(now))
        .bind(wb.tenant.clone())
        .bind(entity)
        .bind(wb.apit_id.clone())
        .execute(&mut *tx)
        .await?;
        let insert = format!(
            "INSERT INTO writebacks (id, seq, job_id, tenant, entity, apit_id, payload, \
             payload_hash, status, attempts, created_at, updated_at, retry_since, next_attempt_at) \
             VALUES ($1, {}, $2, $3, $4, $5, $6, $7, 'pending', 0, $8, $8, $8, $8)",
            D::NEXT_WRITEBACK_SEQ
        );
        sqlx::query(&insert)
            .bind(D::id(Uuid::now_v7()))
            .bind(wb.job_id.map(D::id))
            .bind(wb.tenant)
            .bind(entity)
            .bind(wb.apit_id)
            .bind(D::json(&wb.payload))
            .bind(hash)
            .bind(D::time(now))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn finish_writeback(
        &self,
        id: Uuid,
        attempt: u32,
        now: DateTime<Utc>,
        finish: WritebackFinish,
    ) -> StoreResult<bool> {
        let next = match finish.status {
            WritebackStatus::Pending => Some(D::time(finish.next_attempt_at.unwrap_or(now))),
            _ => None,
        };
        let done = sqlx::query(
            "UPDATE writebacks SET status = $1, next_attempt_at = $2, last_error = $3, \
             lease_until = NULL, updated_at = $4 \
             WHERE id = $5 AND status = 'pending' AND attempts = $6",
        )
        .bind(finish.status.as_str())
        .bind(next)
        .bind(finish.error)
        .bind(D::time(now))
        .bind(D::id(id))
        .bind(D::count(attempt))
        .execute(&self.writer)
        .await?;
        Ok(D::rows_affected(&done) == 1)
    }

    async fn pending_writebacks(&self) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM writebacks WHERE status = 'pending'")
            .fetch_one(&self.reader)
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn writebacks_for_job(&self, job_id: Uuid) -> StoreResult<Vec<Writeback>> {
        let sql = format!("SELECT {WRITEBACK_COLUMNS} FROM writebacks WHERE job_id = $1 ORDER BY seq");
        let rows = sqlx::query(&sql)
            .bind(D::id(job_id))
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(D::writeback).collect()
    }
} }
