//! PostgreSQL store (stub: replaced by the real implementation).

#![allow(unused_variables)]

use super::*;

/// The postgres store.
pub struct PgStore;

impl PgStore {
    /// Opens the database and applies migrations.
    pub async fn connect(_url: &str) -> StoreResult<Self> {
        Err(StoreError::UnsupportedUrl)
    }
}

#[async_trait]
impl Store for PgStore {

    async fn ping(&self) -> StoreResult<()> {
        todo!()
    }

    async fn admit(&self, job: NewJob, force: bool, now: DateTime<Utc>) -> StoreResult<Admission> {
        todo!()
    }

    async fn job(&self, id: Uuid) -> StoreResult<Option<Job>> {
        todo!()
    }

    async fn jobs(&self, filter: &JobFilter) -> StoreResult<Vec<Job>> {
        todo!()
    }

    async fn attempts(&self, job_id: Uuid) -> StoreResult<Vec<Attempt>> {
        todo!()
    }

    async fn claim(&self, now: DateTime<Utc>, lease: Duration, limit: u32) -> StoreResult<Vec<Job>> {
        todo!()
    }

    async fn extend_lease(&self, id: Uuid, attempt: u32, until: DateTime<Utc>) -> StoreResult<bool> {
        todo!()
    }

    async fn finish(&self, id: Uuid, attempt: u32, now: DateTime<Utc>, finish: Finish) -> StoreResult<bool> {
        todo!()
    }

    async fn retry(&self, id: Uuid, now: DateTime<Utc>) -> StoreResult<RetryResult> {
        todo!()
    }

    async fn link(&self, tenant: &str, kind: LinkKind, apit_id: &str) -> StoreResult<Option<Link>> {
        todo!()
    }

    async fn put_link(&self, tenant: &str, kind: LinkKind, apit_id: &str, link: &Link) -> StoreResult<()> {
        todo!()
    }

    async fn put_enrolment(&self, record: &EnrolmentRecord) -> StoreResult<()> {
        todo!()
    }

    async fn enrolments(&self, tenant: &str, active_only: bool) -> StoreResult<Vec<EnrolmentRecord>> {
        todo!()
    }

    async fn set_last_score(&self, tenant: &str, booking_id: &str, score: &Value) -> StoreResult<()> {
        todo!()
    }

    async fn enqueue_writeback(&self, wb: NewWriteback, now: DateTime<Utc>) -> StoreResult<bool> {
        todo!()
    }

    async fn claim_writebacks(&self, now: DateTime<Utc>, lease: Duration, limit: u32) -> StoreResult<Vec<Writeback>> {
        todo!()
    }

    async fn finish_writeback(&self, id: Uuid, attempt: u32, now: DateTime<Utc>, finish: WritebackFinish) -> StoreResult<bool> {
        todo!()
    }

    async fn writebacks_for_job(&self, job_id: Uuid) -> StoreResult<Vec<Writeback>> {
        todo!()
    }

    async fn queue_stats(&self) -> StoreResult<Vec<QueueStat>> {
        todo!()
    }

}
