//! One job's calls against its tenant's Moodle: every call it made, or rode in
//! when its request shared a batched call with other jobs, is recorded with
//! its outcome, latency and batch size, for the job's attempt history.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use serde_json::Value;

use super::batch::Reply;
use super::client::MoodleClient;
use super::functions::{self as f, Request};
use super::*;

/// The calls of one job against one site.
#[derive(Clone)]
pub struct MoodleSession {
    client: MoodleClient,
    calls: Arc<Mutex<Vec<CallRecord>>>,
}

impl MoodleSession {
    pub(super) fn new(client: MoodleClient) -> Self {
        MoodleSession {
            client,
            calls: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Every call made so far, in order.
    pub fn calls(&self) -> Vec<CallRecord> {
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn record(&self, call: CallRecord) {
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(call);
    }

    /// A batched call's answer for this job, recorded as the calls it rode in.
    fn rode<T>(&self, reply: Reply<T>) -> Result<T, MoodleError> {
        for call in reply.calls {
            self.record(call);
        }
        reply.result
    }

    /// Makes the call alone, parses the answer with `parse`, records the outcome.
    async fn run<T>(
        &self,
        request: Request,
        parse: impl FnOnce(&str, Result<Value, MoodleError>) -> Result<T, MoodleError>,
    ) -> Result<T, MoodleError> {
        let function = request.function;
        let inner = self.client.inner();
        let called = inner.call(&request).await;
        let (result, call) = inner.finish(function, called, None, parse);
        self.record(call);
        result
    }

    /// [`run`](Self::run) for answers that are only parsed when the call succeeded.
    async fn call<T>(
        &self,
        request: Request,
        parse: fn(&str, Value) -> Result<T, MoodleError>,
    ) -> Result<T, MoodleError> {
        self.run(request, |function, answer| parse(function, answer?))
            .await
    }
}

impl fmt::Debug for MoodleSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MoodleSession")
            .field("client", &self.client)
            .field("calls", &self.calls())
            .finish()
    }
}

/// Every method makes one HTTP call, or shares one with other jobs (look-ups
/// and enrolments, when batching is on), except where the answer is known
/// without one: an empty look-up value (it names nothing, and Moodle would
/// match every record with an empty field) and an update that changes nothing.
/// Those return at once and record no call.
#[async_trait]
impl Moodle for MoodleSession {
    async fn site_info(&self) -> Result<SiteInfo, MoodleError> {
        self.call(f::site_info(), f::parse_site_info).await
    }

    async fn course_by_idnumber(&self, idnumber: &str) -> Result<Option<Course>, MoodleError> {
        self.course_by("idnumber", idnumber).await
    }

    async fn course_by_id(&self, id: i64) -> Result<Option<Course>, MoodleError> {
        self.course_by("id", &id.to_string()).await
    }

    async fn course_by_shortname(&self, shortname: &str) -> Result<Option<Course>, MoodleError> {
        self.course_by("shortname", shortname).await
    }

    async fn create_course(&self, course: &NewCourse) -> Result<i64, MoodleError> {
        self.call(f::create_course(course), f::parse_created_id)
            .await
    }

    async fn update_course(&self, update: &CourseUpdate) -> Result<(), MoodleError> {
        if !f::update_changes_something(update) {
            return Ok(());
        }
        self.call(f::update_course(update), f::parse_warnings_only)
            .await
    }

    async fn users_by_field(
        &self,
        field: UserField,
        value: &str,
    ) -> Result<Vec<User>, MoodleError> {
        if value.trim().is_empty() {
            return Ok(Vec::new());
        }
        match self.client.batches() {
            Some(batches) => self.rode(batches.users(field, value).await),
            None => {
                self.call(f::users_by_field(field, &[value]), f::parse_user_list)
                    .await
            }
        }
    }

    async fn users_by_email_like(&self, email: &str) -> Result<Vec<User>, MoodleError> {
        if email.trim().is_empty() {
            return Ok(Vec::new());
        }
        self.call(f::users_by_email_like(email), f::parse_users)
            .await
    }

    async fn create_user(&self, user: &NewUser) -> Result<i64, MoodleError> {
        self.call(f::create_user(user), f::parse_created_id).await
    }

    async fn enrol(&self, enrolment: &Enrolment) -> Result<(), MoodleError> {
        match self.client.batches() {
            Some(batches) => self.rode(batches.enrol(*enrolment).await),
            None => self.call(f::enrol(&[*enrolment]), f::parse_null).await,
        }
    }

    async fn unenrol(&self, unenrolment: &Unenrolment) -> Result<(), MoodleError> {
        match self.client.batches() {
            Some(batches) => self.rode(batches.unenrol(*unenrolment).await),
            None => self.call(f::unenrol(&[*unenrolment]), f::parse_null).await,
        }
    }

    async fn course_totals(&self, courseid: i64) -> Result<Vec<CourseTotal>, MoodleError> {
        self.call(f::grade_items(courseid), f::parse_course_totals)
            .await
    }

    async fn completion(
        &self,
        courseid: i64,
        userid: i64,
    ) -> Result<Option<Completion>, MoodleError> {
        self.run(f::completion(courseid, userid), f::parse_completion)
            .await
    }
}

impl MoodleSession {
    /// `core_course_get_courses_by_field`; concurrent jobs asking for the same
    /// course share one call when batching is on.
    async fn course_by(
        &self,
        field: &'static str,
        value: &str,
    ) -> Result<Option<Course>, MoodleError> {
        if value.trim().is_empty() {
            return Ok(None);
        }
        match self.client.batches() {
            Some(batches) => self.rode(batches.course(field, value).await),
            None => {
                self.call(f::course_by_field(field, value), f::parse_one_course)
                    .await
            }
        }
    }
}
