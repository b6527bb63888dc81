//! PostgreSQL outbox: claiming with `FOR UPDATE SKIP LOCKED`; the rest is shared.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::types::PgTime;
use super::{PgDialect, PgStore};
use crate::store::codec;
use crate::store::shared::{Dialect, OutboxOps, WRITEBACK_COLUMNS};
use crate::store::{StoreResult, Writeback};

/// Claimers on several replicas pass each other (SKIP LOCKED); nobody waits.
impl OutboxOps for PgDialect {
    async fn claim_writebacks(
        store: &PgStore,
        now: DateTime<Utc>,
        lease: Duration,
        limit: u32,
    ) -> StoreResult<Vec<Writeback>> {
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
            .fetch_all(store.pool())
            .await?;
        rows.iter().map(PgDialect::writeback).collect()
    }
}
