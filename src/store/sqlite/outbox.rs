//! SQLite outbox: claiming on the single writer; the rest is shared.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{SqliteDialect, SqliteStore};
use crate::store::codec::{self, to_ms};
use crate::store::shared::{Dialect, OutboxOps, WRITEBACK_COLUMNS};
use crate::store::{StoreResult, Writeback};

/// One statement on the single writer connection: exclusive by construction.
impl OutboxOps for SqliteDialect {
    async fn claim_writebacks(
        store: &SqliteStore,
        now: DateTime<Utc>,
        lease: Duration,
        limit: u32,
    ) -> StoreResult<Vec<Writeback>> {
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
            .fetch_all(&store.writer)
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
}
