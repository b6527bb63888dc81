//! Intake: one way in for every job. An accepted event (or a grades-pass
//! request) becomes a [`NewJob`] here — its ordering keys, entity and body
//! hash — and is admitted with SPEC §2 idempotency; the worker is woken when
//! there is new work. The webhook routes, the admin API and the grades poller
//! all come through here, so they cannot disagree about what a job is.

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::events::{CourseType, Event, Known};
use crate::store::{Admission, JobKind, JobQueue, LinkKind, Links, NewJob, Store, StoreResult};

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

/// A signed delivery's Standard Webhooks `webhook-id`, and until when a replay
/// of it could pass the timestamp check.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub webhook_id: String,
    pub replayable_until: DateTime<Utc>,
}

/// What [`admit_delivery`] did.
#[derive(Debug)]
pub enum Delivered {
    /// The delivery is new: admitted as [`admit`] does.
    Admitted(Admission),
    /// The delivery was seen before: the job it was admitted as, as it is
    /// (never re-queued or forced, so a captured request cannot run again).
    Replayed(Admission),
}

impl Delivered {
    /// The admission, whatever happened.
    pub fn into_admission(self) -> Admission {
        match self {
            Delivered::Admitted(a) | Delivered::Replayed(a) => a,
        }
    }
}

/// Admits `job` as [`admit`] does, unless `delivery` (a signed request's
/// `webhook-id`) was seen before inside its replay window: then the job it was
/// first admitted as answers. The id is remembered before the admission, under
/// the new job's id, so a crash in between forgets nothing that was admitted.
pub async fn admit_delivery(
    store: &dyn Store,
    wake: &Notify,
    job: NewJob,
    force: bool,
    delivery: Option<&Delivery>,
) -> StoreResult<Delivered> {
    let Some(delivery) = delivery else {
        return Ok(Delivered::Admitted(admit(store, wake, job, force).await?));
    };
    let (tenant, reserved) = (job.tenant.clone(), job.id);
    if let Some(original) = store
        .remember_delivery(
            &tenant,
            &delivery.webhook_id,
            reserved,
            Utc::now(),
            delivery.replayable_until,
        )
        .await?
    {
        tracing::warn!(%tenant, webhook_id = %delivery.webhook_id, job_id = %original.id, "replayed delivery: the original job answers");
        return Ok(Delivered::Replayed(Admission::Existing(original)));
    }
    let admission = admit(store, wake, job, force).await?;
    let admitted = admission.job().id;
    if admitted != reserved {
        // A re-send of an earlier event: a replay must answer that job too.
        store
            .repoint_delivery(&tenant, &delivery.webhook_id, reserved, admitted)
            .await?;
    }
    Ok(Delivered::Admitted(admission))
}
