//! Intake: one way in for every job. An accepted event (or a grades-pass
//! request) becomes a [`NewJob`] here — its ordering keys, entity and body
//! hash — and is admitted with SPEC §2 idempotency; the worker is woken when
//! there is new work. The webhook routes, the admin API and the grades poller
//! all come through here, so they cannot disagree about what a job is.

use chrono::Utc;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::events::{CourseType, Event, Known};
use crate::store::{Admission, JobKind, JobQueue, LinkKind, Links, NewJob, StoreResult};

/// The job that runs `event` for `tenant`; its ordering keys depend on what
/// the link table already knows (see [`Event::ordering_keys`]).
pub async fn event_job(
    links: &dyn Links,
    tenant: &str,
    event: &Event,
    idempotency_key: Option<String>,
) -> StoreResult<NewJob> {
    let known = known(links, tenant, event).await?;
    Ok(NewJob {
        id: Uuid::now_v7(),
        tenant: tenant.to_string(),
        kind: JobKind::Event(event.kind()),
        // Plain data of strings, numbers and options: serialising cannot fail.
        event: serde_json::to_value(event).unwrap_or_default(),
        // Keys are per tenant: two customers' "C1" are different courses.
        keys: event
            .ordering_keys(known)
            .into_iter()
            .map(|k| format!("{tenant}:{k}"))
            .collect(),
        idempotency_key,
        entity: event.entity(),
        body_hash: event.body_hash(),
    })
}

/// What Moodle already has for a booking, from its payload and the link table.
/// Links are only ever added, so a booking judged "known" stays known.
async fn known(links: &dyn Links, tenant: &str, event: &Event) -> StoreResult<Known> {
    let Some(b) = event.booking() else {
        return Ok(Known::default());
    };
    let user = b.user.moodle_id.is_some()
        || links
            .link(tenant, LinkKind::User, &b.user.id)
            .await?
            .is_some();
    let template = b.course.template.as_ref();
    let course = match b.course.elearning_template() {
        Some(template_id) => {
            template.and_then(|t| t.moodle_id).is_some()
                || links
                    .link(tenant, LinkKind::Template, template_id)
                    .await?
                    .is_some()
        }
        None if b.course.kind() == CourseType::Elearning => true, // never creates; skips
        None => {
            b.course.moodle_id.is_some()
                || links
                    .link(tenant, LinkKind::Course, &b.course.id)
                    .await?
                    .is_some()
        }
    };
    Ok(Known { course, user })
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
