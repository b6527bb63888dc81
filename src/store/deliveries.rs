//! Replay protection for signed webhooks: the Standard Webhooks `webhook-id`s
//! seen per tenant, remembered for the signature tolerance window.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Job, StoreResult};

/// Remembers signed deliveries so that one replayed inside the tolerance window
/// answers the job it was first admitted as instead of running again.
///
/// A delivery is remembered just before its job is admitted, under the id the
/// job will have; a remembered delivery whose job does not exist (the
/// admission failed, or has not committed yet) counts as not seen, so a sender
/// retrying a delivery it got a 503 for is admitted normally.
#[async_trait]
pub trait Deliveries: Send + Sync + 'static {
    /// Remembers delivery `webhook_id` of `tenant` as job `job_id` until
    /// `expires_at`, unless it is remembered already for a job that exists:
    /// then that job is returned and nothing changes (a replay). Also forgets
    /// the tenant's deliveries that expired by `now`.
    async fn remember_delivery(
        &self,
        tenant: &str,
        webhook_id: &str,
        job_id: Uuid,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<Option<Job>>;

    /// Points the delivery at job `to` where it still points at `from` (its
    /// event was admitted as an existing job, a re-send of an earlier one).
    async fn repoint_delivery(
        &self,
        tenant: &str,
        webhook_id: &str,
        from: Uuid,
        to: Uuid,
    ) -> StoreResult<()>;
}
