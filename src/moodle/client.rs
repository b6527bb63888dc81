//! The HTTP client for `{moodle_url}/webservice/rest/server.php`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use secrecy::SecretString;

use super::*;

/// A tenant's Moodle site: one HTTP client, its token, and its concurrency limit.
#[derive(Clone)]
pub struct MoodleClient {
    inner: Arc<Inner>,
}

struct Inner {
    #[allow(dead_code)]
    endpoint: String,
    #[allow(dead_code)]
    token: SecretString,
}

impl MoodleClient {
    /// A client for the site at `base_url` (its `wwwroot`), with a per-call timeout
    /// and at most `max_concurrency` calls in flight.
    pub fn new(
        base_url: &str,
        token: SecretString,
        _timeout: Duration,
        _max_concurrency: usize,
    ) -> Self {
        let endpoint = format!("{}/webservice/rest/server.php", base_url.trim_end_matches('/'));
        MoodleClient {
            inner: Arc::new(Inner { endpoint, token }),
        }
    }

    /// A session for one job: shares the client and records every call it makes.
    pub fn session(&self) -> MoodleSession {
        MoodleSession {
            client: self.clone(),
            calls: Arc::new(Mutex::new(Vec::new())),
        }
    }
}

/// The calls of one job against one site.
#[derive(Clone)]
pub struct MoodleSession {
    #[allow(dead_code)]
    client: MoodleClient,
    calls: Arc<Mutex<Vec<CallRecord>>>,
}

impl MoodleSession {
    /// Every call made so far, in order.
    pub fn calls(&self) -> Vec<CallRecord> {
        self.calls.lock().expect("call log poisoned").clone()
    }
}

fn unimplemented(function: &str) -> MoodleError {
    MoodleError::Unexpected {
        function: function.into(),
        detail: "client not implemented yet".into(),
    }
}

#[async_trait]
impl Moodle for MoodleSession {
    async fn site_info(&self) -> Result<SiteInfo, MoodleError> {
        Err(unimplemented("core_webservice_get_site_info"))
    }
    async fn course_by_idnumber(&self, _idnumber: &str) -> Result<Option<Course>, MoodleError> {
        Err(unimplemented("core_course_get_courses_by_field"))
    }
    async fn course_by_id(&self, _id: i64) -> Result<Option<Course>, MoodleError> {
        Err(unimplemented("core_course_get_courses_by_field"))
    }
    async fn course_by_shortname(&self, _s: &str) -> Result<Option<Course>, MoodleError> {
        Err(unimplemented("core_course_get_courses_by_field"))
    }
    async fn create_course(&self, _c: &NewCourse) -> Result<i64, MoodleError> {
        Err(unimplemented("core_course_create_courses"))
    }
    async fn update_course(&self, _u: &CourseUpdate) -> Result<(), MoodleError> {
        Err(unimplemented("core_course_update_courses"))
    }
    async fn users_by_field(&self, _f: UserField, _v: &str) -> Result<Vec<User>, MoodleError> {
        Err(unimplemented("core_user_get_users_by_field"))
    }
    async fn users_by_email_like(&self, _e: &str) -> Result<Vec<User>, MoodleError> {
        Err(unimplemented("core_user_get_users"))
    }
    async fn create_user(&self, _u: &NewUser) -> Result<i64, MoodleError> {
        Err(unimplemented("core_user_create_users"))
    }
    async fn enrol(&self, _e: &[Enrolment]) -> Result<(), MoodleError> {
        Err(unimplemented("enrol_manual_enrol_users"))
    }
    async fn unenrol(&self, _e: &[Unenrolment]) -> Result<(), MoodleError> {
        Err(unimplemented("enrol_manual_unenrol_users"))
    }
    async fn course_totals(&self, _c: i64) -> Result<Vec<CourseTotal>, MoodleError> {
        Err(unimplemented("gradereport_user_get_grade_items"))
    }
    async fn completion(&self, _c: i64, _u: i64) -> Result<Option<Completion>, MoodleError> {
        Err(unimplemented("core_completion_get_course_completion_status"))
    }
}
