//! Remembered deliveries: the same queries on both back-ends.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Dialect, JOB_COLUMNS, SqlStore, for_every_dialect};
use crate::store::{Deliveries, Job, StoreResult};

for_every_dialect! { Deliveries for Dialect {
    async fn remember_delivery(
        &self,
        tenant: &str,
        webhook_id: &str,
        job_id: Uuid,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<Option<Job>> {
        let mut tx = D::begin_write(&self.writer).await?;
        sqlx::query("DELETE FROM deliveries WHERE tenant = $1 AND expires_at <= $2")
            .bind(tenant.to_owned())
            .bind(D::time(now))
            .execute(&mut *tx)
            .await?;
        // Taken over only when the job it names does not exist: a reservation
        // whose admission failed, or one still being admitted concurrently
        // (admission's own idempotency then makes both one job).
        sqlx::query(
            "INSERT INTO deliveries (tenant, webhook_id, job_id, expires_at) \
             VALUES ($1, $2, $3, $4) \
             ON CONFLICT (tenant, webhook_id) DO UPDATE \
             SET job_id = excluded.job_id, expires_at = excluded.expires_at \
             WHERE NOT EXISTS (SELECT 1 FROM jobs WHERE jobs.id = deliveries.job_id)",
        )
        .bind(tenant.to_owned())
        .bind(webhook_id.to_owned())
        .bind(D::id(job_id))
        .bind(D::time(expires_at))
        .execute(&mut *tx)
        .await?;
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE id = \
             (SELECT job_id FROM deliveries WHERE tenant = $1 AND webhook_id = $2)"
        );
        let row = sqlx::query(&sql)
            .bind(tenant.to_owned())
            .bind(webhook_id.to_owned())
            .fetch_optional(&mut *tx)
            .await?;
        let original = row.as_ref().map(D::job).transpose()?;
        tx.commit().await?;
        Ok(original)
    }

    async fn repoint_delivery(
        &self,
        tenant: &str,
        webhook_id: &str,
        from: Uuid,
        to: Uuid,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE deliveries SET job_id = $1 \
             WHERE tenant = $2 AND webhook_id = $3 AND job_id = $4",
        )
        .bind(D::id(to))
        .bind(tenant.to_owned())
        .bind(webhook_id.to_owned())
        .bind(D::id(from))
        .execute(&self.writer)
        .await?;
        Ok(())
    }
} }
