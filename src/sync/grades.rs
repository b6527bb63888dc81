//! Scores back (SPEC §3): a pass reads the course totals of every active enrolment
//! this service made and writes back the scores that changed since they were last
//! written.
//!
//! Moodle cost of a pass: one `gradereport_user_get_grade_items` per course, which
//! answers for all its delegates at once, plus, with `grades.completion`, one
//! `core_completion_get_course_completion_status` per graded delegate: Moodle has no
//! web-service call that reports course completion for a whole course.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, SecondsFormat, Utc};
use futures::{StreamExt, stream};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{Context, Disposition, Handled, Outcome, SyncError, queue_write_back};
use crate::config::CallbackKind;
use crate::moodle::{Completion, CourseTotal, ErrorClass, Moodle, MoodleError};
use crate::store::{EnrolmentRecord, Entity, JobKind, NewJob};

/// What started a pass (stored as the job's event, for people reading the job list).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// `[tenants.X.grades] poll_interval`.
    Schedule,
    /// `POST /v1/tenants/{tenant}/grades/sync`.
    Request,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Request => "request",
        }
    }
}

/// The job that runs one pass for `tenant`; admit it with `force = true`.
///
/// Every pass of a tenant has the same entity and body hash, so the newest-event
/// rule answers a pass that is still queued or running with that pass instead of
/// piling up another, and `force` lets a new pass follow a finished one. The
/// ordering key keeps two passes of one tenant from overlapping.
pub fn job(tenant: &str, trigger: Trigger) -> NewJob {
    NewJob {
        id: Uuid::now_v7(),
        tenant: tenant.to_string(),
        kind: JobKind::GradesSync,
        event: json!({ "trigger": trigger.as_str() }),
        keys: vec![format!("{tenant}:grades")],
        idempotency_key: None,
        entity: JobKind::GradesSync.as_str().to_string(),
        body_hash: hex::encode(Sha256::digest(JobKind::GradesSync.as_str())),
    }
}

/// What a pass read and wrote: the `grades` object of its outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GradesSummary {
    /// Courses whose grade report was read.
    pub courses_read: u32,
    /// Active enrolments (delegates) the pass looked at.
    pub delegates: u32,
    /// Changed scores queued for write-back.
    pub scores_written: u32,
    /// Scores equal to the last one written back: nothing sent.
    pub unchanged: u32,
    /// Delegates without a course total yet: nothing sent.
    pub no_grade: u32,
    /// Delegates Moodle's grade report does not list (not an active student there any
    /// more, e.g. suspended or given another role in Moodle): nothing sent.
    pub not_in_report: u32,
    /// Courses or delegates that could not be read; the pass went on without them.
    pub errors: Vec<String>,
}

/// A delegate's result as written back, and as stored to tell a change: the
/// enrolment's `last_score`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Score {
    score: f64,
    score_max: Option<f64>,
    score_percent: Option<f64>,
    /// Only with `grades.completion`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    completion: Option<CourseCompletion>,
}

/// Course completion as written back; both `None` when Moodle has no completion data
/// for the delegate (no criteria in the course, or not tracked).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CourseCompletion {
    completed: Option<bool>,
    /// RFC 3339.
    completed_at: Option<String>,
}

impl Score {
    /// From the course total; `None` while the delegate has no grade.
    fn of(total: &CourseTotal, completion: Option<CourseCompletion>) -> Option<Score> {
        let raw = total.graderaw?;
        let min = total.grademin.unwrap_or(0.0);
        // Moodle leaves out the range when the course's user report hides it.
        let score_percent = total
            .grademax
            .filter(|max| *max > min)
            .map(|max| round2((raw - min) / (max - min) * 100.0));
        Some(Score {
            score: round2(raw),
            score_max: total.grademax.map(round2),
            score_percent,
            completion,
        })
    }

    /// The fields a delegate write-back carries besides the generic ones.
    fn payload(&self, moodle_course_id: i64) -> Map<String, Value> {
        let mut fields = Map::new();
        fields.insert("moodle_course_id".into(), moodle_course_id.into());
        fields.insert("score".into(), json!(self.score));
        fields.insert("score_max".into(), json!(self.score_max));
        fields.insert("score_percent".into(), json!(self.score_percent));
        if let Some(c) = &self.completion {
            fields.insert("completed".into(), json!(c.completed));
            fields.insert("completed_at".into(), json!(c.completed_at));
        }
        fields
    }
}

impl From<Option<Completion>> for CourseCompletion {
    fn from(c: Option<Completion>) -> Self {
        CourseCompletion {
            completed: c.as_ref().map(|c| c.completed),
            completed_at: c
                .and_then(|c| c.completed_at)
                .and_then(|t| DateTime::<Utc>::from_timestamp(t, 0))
                .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true)),
        }
    }
}

/// "1 delegate", "3 delegates".
fn plural(n: u32, noun: &str) -> String {
    match n {
        1 => format!("1 {noun}"),
        n => format!("{n} {noun}s"),
    }
}

/// Two decimals, as Moodle's gradebook shows by default; also keeps float noise
/// (72.33333000001) from looking like a change.
fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// What Moodle said about one delegate.
enum Reading {
    /// The grade report does not list the user.
    NotInReport,
    NoGrade,
    Graded(Score),
    /// A data error about this delegate only (e.g. the user was deleted in Moodle).
    Error(String),
}

/// One course read: its delegates and what Moodle said about each, or the error
/// that stopped the course.
struct CourseRead {
    course_id: i64,
    delegates: u32,
    result: Result<Vec<(EnrolmentRecord, Reading)>, MoodleError>,
}

/// Runs one pass for the context's tenant.
pub async fn sync(ctx: &Context<'_>) -> Handled {
    let mut pass = Pass {
        ctx,
        summary: GradesSummary::default(),
        steps: Vec::new(),
    };
    let result = pass.run().await;
    let Pass { summary, steps, .. } = pass;
    let mut outcome = Outcome {
        steps,
        grades: Some(summary),
        ..Outcome::default()
    };
    let result = result.map(|done| match done {
        Done::Read => Disposition::Succeeded,
        Done::Nothing(reason) => {
            outcome.skip_reason = Some(reason.into());
            Disposition::Skipped
        }
    });
    (outcome, result)
}

/// How a pass ended without failing.
enum Done {
    Read,
    /// Nothing to read, with the reason.
    Nothing(&'static str),
}

struct Pass<'c, 'a> {
    ctx: &'c Context<'a>,
    summary: GradesSummary,
    steps: Vec<String>,
}

impl Pass<'_, '_> {
    async fn run(&mut self) -> Result<Done, SyncError> {
        let ctx = self.ctx;
        if ctx.config.callback.kind == CallbackKind::None {
            // Reading Moodle would cost calls for scores that cannot go anywhere.
            return Ok(Done::Nothing(
                "callback.kind is none: there is nowhere to write scores back",
            ));
        }
        // Active only: cancelled bookings (suspended or unenrolled) are left out.
        let enrolments = ctx.links.enrolments(ctx.tenant, true).await?;
        if enrolments.is_empty() {
            return Ok(Done::Nothing("no active enrolments"));
        }
        self.summary.delegates = enrolments.len() as u32;
        let mut by_course: BTreeMap<i64, Vec<EnrolmentRecord>> = BTreeMap::new();
        for e in enrolments {
            by_course.entry(e.moodle_course_id).or_default().push(e);
        }
        let limit = ctx.config.max_concurrency.max(1);
        let completion = ctx.config.grades.completion;
        // At most `limit` courses are read at a time (the Moodle client's semaphore
        // caps the calls in flight as well); `buffered` hands results over in course
        // order, so the steps read the same on every pass.
        // (Futures do nothing until polled; collecting them first keeps the stream
        // free of closures, which trip the compiler's Send inference.)
        let reads: Vec<_> = by_course
            .into_iter()
            .map(|(course_id, delegates)| {
                read_course(ctx.moodle, course_id, delegates, completion, limit)
            })
            .collect();
        let mut reads = stream::iter(reads).buffered(limit);
        while let Some(read) = reads.next().await {
            // A refusal stops the pass; scores of the courses before it stay queued.
            self.apply(read).await?;
        }
        Ok(Done::Read)
    }

    /// Writes back the changed scores of one course read.
    async fn apply(&mut self, read: CourseRead) -> Result<(), SyncError> {
        let CourseRead {
            course_id,
            delegates,
            result,
        } = read;
        let readings = match result {
            Ok(readings) => readings,
            Err(e) if matches!(e.class(), ErrorClass::Data | ErrorClass::Conflict) => {
                // This course only (deleted in Moodle?): the other courses still count.
                let error = format!(
                    "course {course_id} ({} not read): {e}",
                    plural(delegates, "delegate")
                );
                self.steps.push(error.clone());
                self.summary.errors.push(error);
                return Ok(());
            }
            Err(e) => {
                let mut error = SyncError::from(e);
                error.message = format!("course {course_id}: {}", error.message);
                return Err(error);
            }
        };
        self.summary.courses_read += 1;
        let (mut written, mut unchanged, mut no_grade) = (0, 0, 0);
        for (enrolment, reading) in readings {
            let score = match reading {
                Reading::Graded(score) => score,
                Reading::NoGrade => {
                    no_grade += 1;
                    continue;
                }
                Reading::NotInReport => {
                    self.summary.not_in_report += 1;
                    continue;
                }
                Reading::Error(error) => {
                    self.summary.errors.push(format!(
                        "course {course_id}, booking {}: {error}",
                        enrolment.booking_id
                    ));
                    continue;
                }
            };
            let last: Option<Score> = enrolment
                .last_score
                .clone()
                .and_then(|v| serde_json::from_value(v).ok());
            if last.as_ref() == Some(&score) {
                unchanged += 1;
                continue;
            }
            queue_write_back(
                self.ctx,
                Entity::Delegate,
                &enrolment.booking_id,
                enrolment.moodle_user_id,
                score.payload(course_id),
            )
            .await?;
            // After queueing: a crash in between re-queues the same payload next
            // pass, which the outbox drops as a duplicate.
            // Plain numbers and options: serialising cannot fail.
            let stored = serde_json::to_value(&score).unwrap_or_default();
            self.ctx
                .links
                .set_last_score(self.ctx.tenant, &enrolment.booking_id, &stored)
                .await?;
            written += 1;
        }
        self.summary.scores_written += written;
        self.summary.unchanged += unchanged;
        self.summary.no_grade += no_grade;
        self.steps.push(format!(
            "course {course_id}: {}, {} written, {unchanged} unchanged, {no_grade} without a grade",
            plural(delegates, "delegate"),
            plural(written, "score"),
        ));
        Ok(())
    }
}

/// One grade-report call for the course's delegates, then (with completion) one
/// completion call per graded delegate, at most `limit` at a time.
async fn read_course(
    moodle: &dyn Moodle,
    course_id: i64,
    delegates: Vec<EnrolmentRecord>,
    completion: bool,
    limit: usize,
) -> CourseRead {
    let count = delegates.len() as u32;
    let result: Result<_, MoodleError> = async {
        let totals: HashMap<i64, CourseTotal> = moodle
            .course_totals(course_id)
            .await?
            .into_iter()
            .map(|t| (t.userid, t))
            .collect();
        let mut readings = Vec::with_capacity(delegates.len());
        let mut graded = Vec::new();
        for e in delegates {
            match totals.get(&e.moodle_user_id) {
                None => readings.push((e, Reading::NotInReport)),
                Some(t) if t.graderaw.is_none() => readings.push((e, Reading::NoGrade)),
                Some(t) if !completion => {
                    let score = Score::of(t, None).expect("graded");
                    readings.push((e, Reading::Graded(score)));
                }
                Some(t) => graded.push((e, t)),
            }
        }
        // Completion is only asked for delegates that have a score to send.
        let asks: Vec<_> = graded
            .into_iter()
            .map(|(e, total)| async move {
                let answer = moodle.completion(course_id, e.moodle_user_id).await;
                (e, total, answer)
            })
            .collect();
        let mut asks = stream::iter(asks).buffered(limit);
        while let Some((e, total, answer)) = asks.next().await {
            let reading = match answer {
                Ok(c) => Reading::Graded(Score::of(total, Some(c.into())).expect("graded")),
                Err(e) if matches!(e.class(), ErrorClass::Data | ErrorClass::Conflict) => {
                    Reading::Error(e.to_string())
                }
                Err(e) => return Err(e),
            };
            readings.push((e, reading));
        }
        Ok(readings)
    }
    .await;
    CourseRead {
        course_id,
        delegates: count,
        result,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn total(raw: Option<f64>, min: Option<f64>, max: Option<f64>) -> CourseTotal {
        CourseTotal {
            userid: 7,
            useridnumber: None,
            graderaw: raw,
            grademin: min,
            grademax: max,
        }
    }

    #[test]
    fn a_score_is_the_course_total_with_its_range() {
        let s = Score::of(&total(Some(72.333333), Some(0.0), Some(80.0)), None).unwrap();
        assert_eq!(s.score, 72.33);
        assert_eq!(s.score_max, Some(80.0));
        assert_eq!(s.score_percent, Some(90.42));
        // The percentage counts from grademin, as Moodle's does.
        let s = Score::of(&total(Some(15.0), Some(10.0), Some(20.0)), None).unwrap();
        assert_eq!(s.score_percent, Some(50.0));
    }

    #[test]
    fn no_range_or_an_empty_one_gives_no_percentage() {
        let s = Score::of(&total(Some(5.0), None, None), None).unwrap();
        assert_eq!((s.score_max, s.score_percent), (None, None));
        let s = Score::of(&total(Some(0.0), Some(0.0), Some(0.0)), None).unwrap();
        assert_eq!((s.score_max, s.score_percent), (Some(0.0), None));
    }

    #[test]
    fn no_grade_is_no_score() {
        assert_eq!(Score::of(&total(None, Some(0.0), Some(100.0)), None), None);
    }

    #[test]
    fn completion_becomes_rfc3339_or_nulls() {
        let done = CourseCompletion::from(Some(Completion {
            completed: true,
            completed_at: Some(1_800_000_000),
        }));
        assert_eq!(done.completed, Some(true));
        assert_eq!(done.completed_at.as_deref(), Some("2027-01-15T08:00:00Z"));
        let none = CourseCompletion::from(None);
        assert_eq!((none.completed, none.completed_at), (None, None));
    }

    #[test]
    fn the_payload_is_flat_and_the_stored_score_reads_back_equal() {
        let score = Score {
            score: 85.0,
            score_max: Some(100.0),
            score_percent: Some(85.0),
            completion: Some(CourseCompletion {
                completed: Some(false),
                completed_at: None,
            }),
        };
        assert_eq!(
            Value::Object(score.payload(12)),
            json!({"moodle_course_id": 12, "score": 85.0, "score_max": 100.0,
                   "score_percent": 85.0, "completed": false, "completed_at": null})
        );
        let stored = serde_json::to_string(&score).unwrap();
        let back: Score = serde_json::from_str(&stored).unwrap();
        assert_eq!(back, score);
        // Without completion the keys are absent, not null.
        let plain = Score {
            completion: None,
            ..score
        };
        assert!(!plain.payload(12).contains_key("completed"));
    }

    #[test]
    fn every_pass_of_a_tenant_is_one_entity_with_one_body() {
        let (a, b) = (
            job("acme", Trigger::Schedule),
            job("acme", Trigger::Request),
        );
        assert_eq!(
            (a.entity.as_str(), a.kind),
            ("grades-sync", JobKind::GradesSync)
        );
        assert_eq!(a.body_hash, b.body_hash);
        assert_eq!(a.keys, vec!["acme:grades".to_string()]);
        assert_ne!(a.id, b.id);
    }
}
