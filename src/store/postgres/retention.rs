//! PostgreSQL's part of retention: row decoding and row locks. Space needs
//! nothing here: autovacuum makes deleted rows' space reusable.

use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use super::types::PgUuid;
use super::{PgDialect, PgStore};
use crate::store::shared::RetentionOps;
use crate::store::{Space, StoreResult};

impl RetentionOps for PgDialect {
    // A replica pruning at the same time holds its rows: pass them by. A
    // retry or a re-send touching a row waits for this short transaction.
    const LOCK_SKIP_LOCKED: &'static str = " FOR UPDATE SKIP LOCKED";

    fn window_job(row: &PgRow) -> StoreResult<(Uuid, bool)> {
        Ok((
            row.try_get::<PgUuid, _>("id")?.0,
            row.try_get::<i64, _>("prunable")? == 1,
        ))
    }

    fn doomed_job(row: &PgRow) -> StoreResult<Uuid> {
        Ok(row.try_get::<PgUuid, _>("id")?.0)
    }

    fn window_writeback(row: &PgRow) -> StoreResult<(Uuid, i64, bool)> {
        Ok((
            row.try_get::<PgUuid, _>("id")?.0,
            row.try_get("seq")?,
            row.try_get::<i64, _>("prunable")? == 1,
        ))
    }

    async fn release_space(_: &PgStore, _: u32) -> StoreResult<Space> {
        Ok(Space::Managed)
    }
}
