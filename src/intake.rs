//! Intake: one way in for every job. An accepted event (or a grades-pass
//! request) becomes a [`NewJob`] here — its ordering keys, entity and body
//! hash — and is admitted with SPEC §2 idempotency; the worker is woken when
//! there is new work. The webhook routes, the admin API and the grades poller
//! all come through here, so they cannot disagree about what a job is.

use chrono::Utc;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::events::Event;
use crate::store::{Admission, JobKind, JobQueue, NewJob, StoreResult};

/// The job that runs `event` for `tenant`.
pub fn event_job(tenant: &str, event: &Event, idempotency_key: Option<String>) -> NewJob {
    NewJob {
        id: Uuid::now_v7(),
        tenant: tenant.to_string(),
        kind: JobKind::Event(event.kind()),
        // Plain data of strings, numbers and options: serialising cannot fail.
        event: serde_json::to_value(event).unwrap_or_default(),
        // Keys are per tenant: two customers' "C1" are different courses.
        keys: event
            .ordering_keys()
            .into_iter()
            .map(|k| format!("{tenant}:{k}"))
            .collect(),
        idempotency_key,
        entity: event.entity(),
        body_hash: event.body_hash(),
    }
}

/// Admits `job` (see [`JobQueue::admit`]) and wakes the worker when it will run.
pub async fn admit(
    queue: &dyn JobQueue,
    wake: &Notify,
    job: NewJob,
    force: bool,
) -> StoreResult<Admission> {
    let (tenant, kind) = (job.tenant.clone(), job.kind);
    let admission = queue.admit(job, force, Utc::now()).await?;
    let job = admission.job();
    if admission.queued_work() {
        wake.notify_one();
        tracing::info!(%tenant, kind = kind.as_str(), job_id = %job.id, "job queued");
    } else {
        tracing::info!(%tenant, kind = kind.as_str(), job_id = %job.id, status = job.status.as_str(), "already known: the existing job answers");
    }
    Ok(admission)
}
