//! The handler layer: one event → the Moodle steps of SPEC §3 → links and write-backs.
//!
//! Plain code over three small interfaces ([`Moodle`], [`Links`] and [`Outbox`]),
//! no HTTP types, so it is testable without a server. Every step is find-or-create by a
//! deterministic key, so running a job again (after a crash or a retry) is safe.

mod booking;
mod course;
pub mod grades;
#[cfg(test)]
mod tests;
mod user;

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::config::{CallbackKind, TenantConfig};
use crate::events::Event;
use crate::moodle::{ErrorClass, Moodle, MoodleError};
use crate::store::{Entity, Links, NewWriteback, Outbox, StoreError};

/// Everything a handler needs for one job.
pub struct Context<'a> {
    pub tenant: &'a str,
    pub config: &'a TenantConfig,
    pub moodle: &'a dyn Moodle,
    /// What Moodle and accessplanit already know.
    pub links: &'a dyn Links,
    /// Where write-backs are queued.
    pub outbox: &'a dyn Outbox,
    /// The job the write-backs belong to.
    pub job_id: Option<Uuid>,
    pub now: DateTime<Utc>,
}

/// The Moodle IDs a job resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MoodleIds {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub course_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_id: Option<i64>,
}

/// What a job did (kept even when it fails half-way).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Outcome {
    pub moodle: MoodleIds,
    /// One line per step, for people reading the job.
    pub steps: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skip_reason: Option<String>,
    /// What a grades pass read and wrote (grades-sync jobs only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grades: Option<grades::GradesSummary>,
}

impl Outcome {
    fn step(&mut self, text: impl Into<String>) {
        self.steps.push(text.into());
    }
}

/// A failed job step, classified for the worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncError {
    pub class: ErrorClass,
    /// Operator-facing: what failed and, for configuration errors, the fix.
    pub message: String,
    /// A delay Moodle asked for (HTTP `Retry-After`).
    pub retry_after: Option<std::time::Duration>,
}

impl SyncError {
    /// A data error: this record is wrong and retrying will not help.
    pub fn data(message: impl Into<String>) -> Self {
        SyncError {
            class: ErrorClass::Data,
            message: message.into(),
            retry_after: None,
        }
    }

    /// A configuration error: someone must change a setting.
    pub fn configuration(message: impl Into<String>) -> Self {
        SyncError {
            class: ErrorClass::Configuration,
            message: message.into(),
            retry_after: None,
        }
    }
}

impl fmt::Display for SyncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<MoodleError> for SyncError {
    fn from(e: MoodleError) -> Self {
        let class = match e.class() {
            // An unresolved conflict reaching here is a clash with someone else's record.
            ErrorClass::Conflict => ErrorClass::Data,
            other => other,
        };
        SyncError {
            class,
            // One line: what happened and, when someone must act, the fix.
            message: e.to_string(),
            retry_after: e.retry_after(),
        }
    }
}

impl From<StoreError> for SyncError {
    fn from(e: StoreError) -> Self {
        SyncError {
            class: ErrorClass::Transient,
            message: format!("store: {e}"),
            retry_after: None,
        }
    }
}

/// How a job ended, with what it did either way.
pub type Handled = (Outcome, Result<Disposition, SyncError>);

/// A successful end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    Succeeded,
    /// Nothing to do; `Outcome::skip_reason` says why.
    Skipped,
}

/// A step that ends the job early without an error.
pub(crate) struct Skip(pub String);

/// Internal result of a step: continue, skip the job, or fail.
pub(crate) enum Stop {
    Skip(Skip),
    Fail(SyncError),
}

impl<E: Into<SyncError>> From<E> for Stop {
    fn from(e: E) -> Self {
        Stop::Fail(e.into())
    }
}

pub(crate) type Step<T> = Result<T, Stop>;

pub(crate) fn skip<T>(reason: impl Into<String>) -> Step<T> {
    Err(Stop::Skip(Skip(reason.into())))
}

/// Runs one event against Moodle.
pub async fn handle(ctx: &Context<'_>, event: &Event) -> Handled {
    let mut run = Run {
        ctx,
        outcome: Outcome::default(),
    };
    let result = match event {
        Event::CourseSaved(e) => run.course_saved(e).await,
        Event::CourseDateChanged(e) => run.course_date_changed(e).await,
        Event::BookingCreated(e) => run.booking_created(e).await,
        Event::BookingCancelled(e) => run.booking_cancelled(e).await,
    };
    let Run { mut outcome, .. } = run;
    let result = match result {
        Ok(()) => Ok(Disposition::Succeeded),
        Err(Stop::Skip(Skip(reason))) => {
            outcome.skip_reason = Some(reason);
            Ok(Disposition::Skipped)
        }
        Err(Stop::Fail(e)) => Err(e),
    };
    (outcome, result)
}

/// One job in progress: the context plus what it has done so far.
pub(crate) struct Run<'c, 'a> {
    pub ctx: &'c Context<'a>,
    pub outcome: Outcome,
}

impl Run<'_, '_> {
    /// Queues a write-back of a Moodle ID accessplanit does not have yet.
    async fn write_back(&mut self, entity: Entity, apit_id: &str, moodle_id: i64) -> Step<()> {
        if queue_write_back(self.ctx, entity, apit_id, moodle_id, Map::new()).await? {
            self.outcome.step(format!(
                "write-back queued: {} {apit_id} → {moodle_id}",
                entity.as_str()
            ));
        }
        Ok(())
    }
}

/// Queues a write-back of `{tenant, entity, accessplanit_id, moodle_id}` plus `extra`
/// fields (a delegate's score). True when queued; false when the tenant writes
/// nothing back, or when the newest write-back of the entity already carries this
/// payload (a re-run job does not send it twice).
pub(crate) async fn queue_write_back(
    ctx: &Context<'_>,
    entity: Entity,
    apit_id: &str,
    moodle_id: i64,
    extra: Map<String, Value>,
) -> Result<bool, StoreError> {
    if ctx.config.callback.kind == CallbackKind::None {
        return Ok(false);
    }
    let mut payload = json!({
        "tenant": ctx.tenant,
        "entity": entity.as_str(),
        "accessplanit_id": apit_id,
        "moodle_id": moodle_id,
    });
    if let Value::Object(fields) = &mut payload {
        fields.extend(extra);
    }
    ctx.outbox
        .enqueue_writeback(
            NewWriteback {
                job_id: ctx.job_id,
                tenant: ctx.tenant.to_string(),
                entity,
                apit_id: apit_id.to_string(),
                payload,
            },
            ctx.now,
        )
        .await
}
