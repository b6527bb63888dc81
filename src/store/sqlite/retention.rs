//! SQLite's part of retention: row decoding, and giving free pages back to
//! the file system with incremental auto-vacuum.
//!
//! New database files are created with `auto_vacuum = INCREMENTAL` (set on
//! connect, before the first table exists). A file created before that keeps
//! `NONE` until it is vacuumed once: its free pages are still reused by new
//! rows, so it stops growing, but it never shrinks (README, "Retention").

use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use uuid::Uuid;

use super::{SqliteDialect, SqliteStore};
use crate::store::codec;
use crate::store::shared::RetentionOps;
use crate::store::{Space, StoreResult};

/// `PRAGMA auto_vacuum` of an incremental database.
const INCREMENTAL: i64 = 2;

impl RetentionOps for SqliteDialect {
    // The single writer connection already makes the transaction exclusive.
    const LOCK_SKIP_LOCKED: &'static str = "";

    fn window_job(row: &SqliteRow) -> StoreResult<(Uuid, bool)> {
        Ok((
            codec::uuid(row.try_get("id")?)?,
            row.try_get::<i64, _>("prunable")? == 1,
        ))
    }

    fn doomed_job(row: &SqliteRow) -> StoreResult<Uuid> {
        codec::uuid(row.try_get("id")?)
    }

    fn window_writeback(row: &SqliteRow) -> StoreResult<(Uuid, i64, bool)> {
        Ok((
            codec::uuid(row.try_get("id")?)?,
            row.try_get("seq")?,
            row.try_get::<i64, _>("prunable")? == 1,
        ))
    }

    async fn release_space(store: &SqliteStore, pages: u32) -> StoreResult<Space> {
        let mode: i64 = sqlx::query_scalar("PRAGMA auto_vacuum")
            .fetch_one(&store.writer)
            .await?;
        let free = freelist(store).await?;
        if mode != INCREMENTAL {
            return Ok(Space::NotShrinkable { free });
        }
        if free == 0 {
            return Ok(Space::Released { released: 0, free });
        }
        // One short write on the writer connection: at most `pages` pages.
        sqlx::query(&format!("PRAGMA incremental_vacuum({})", pages.max(1)))
            .execute(&store.writer)
            .await?;
        let left = freelist(store).await?;
        Ok(Space::Released {
            released: free.saturating_sub(left),
            free: left,
        })
    }
}

async fn freelist(store: &SqliteStore) -> StoreResult<u64> {
    let n: i64 = sqlx::query_scalar("PRAGMA freelist_count")
        .fetch_one(&store.writer)
        .await?;
    Ok(u64::try_from(n).unwrap_or(0))
}
