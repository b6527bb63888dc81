//! Moodle REST client: PHP-style form encoding, the error envelope, error classes.
//!
//! The handler layer (`sync`) talks to Moodle only through the [`Moodle`] trait,
//! so it can be tested without HTTP. [`MoodleClient`] is the real implementation;
//! one [`MoodleSession`] per job records every call made (function, outcome, latency).

mod client;
mod encode;
mod envelope;
mod error;
mod functions;
mod sanitize;
#[cfg(test)]
mod tests;

pub use client::{ClientBuildError, MoodleClient, MoodleSession};
pub use encode::{FormObject, FormParams, FormValue};
pub use error::{ErrorClass, MoodleError};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// One Moodle web-service call as recorded for an attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallRecord {
    /// The `wsfunction` called.
    pub function: String,
    /// `ok`, or the errorcode / transport failure (never a secret).
    pub outcome: String,
    /// Wall-clock latency in milliseconds.
    pub ms: u64,
}

/// A course as Moodle reports it (only the fields this service reads).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Course {
    pub id: i64,
    pub shortname: String,
    pub fullname: String,
    /// Only present when the token may see it (`moodle/course:update`).
    pub idnumber: Option<String>,
    pub summary: Option<String>,
    pub startdate: Option<i64>,
    pub enddate: Option<i64>,
}

/// A new course for `core_course_create_courses` (one per call).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewCourse {
    pub fullname: String,
    pub shortname: String,
    pub categoryid: i64,
    pub idnumber: String,
    /// HTML; sent with `summaryformat = 1` when present.
    pub summary: Option<String>,
    pub startdate: Option<i64>,
    pub enddate: Option<i64>,
    pub visible: Option<bool>,
}

/// A partial update for `core_course_update_courses`: `None` fields are not sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CourseUpdate {
    pub id: i64,
    pub fullname: Option<String>,
    /// HTML; sent with `summaryformat = 1` when present.
    pub summary: Option<String>,
    pub startdate: Option<i64>,
    pub enddate: Option<i64>,
}

/// The user fields `core_user_get_users_by_field` can search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UserField {
    Id,
    Idnumber,
    Username,
    Email,
}

impl UserField {
    /// The value Moodle expects in `field`.
    pub fn as_str(self) -> &'static str {
        match self {
            UserField::Id => "id",
            UserField::Idnumber => "idnumber",
            UserField::Username => "username",
            UserField::Email => "email",
        }
    }
}

/// A user as Moodle reports it; optional fields depend on the token's capabilities.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: i64,
    pub username: Option<String>,
    pub email: Option<String>,
    pub idnumber: Option<String>,
    pub firstname: Option<String>,
    pub lastname: Option<String>,
    pub suspended: Option<bool>,
}

/// A new user for `core_user_create_users`: always `auth = manual`, `createpassword = 1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewUser {
    pub username: String,
    pub firstname: String,
    pub lastname: String,
    pub email: String,
    pub idnumber: String,
}

/// One item of `enrol_manual_enrol_users`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Enrolment {
    pub roleid: i64,
    pub userid: i64,
    pub courseid: i64,
    /// Always sent: `false` reactivates a suspended enrolment.
    pub suspend: bool,
}

/// One item of `enrol_manual_unenrol_users`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Unenrolment {
    pub userid: i64,
    pub courseid: i64,
}

/// What `core_webservice_get_site_info` tells about the site and the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteInfo {
    pub sitename: String,
    pub siteurl: String,
    pub username: String,
    pub userid: i64,
    pub release: Option<String>,
    pub version: Option<String>,
    /// Names of every function in the token's external service.
    pub functions: Vec<String>,
}

/// The course total of one user, from `gradereport_user_get_grade_items`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CourseTotal {
    pub userid: i64,
    pub useridnumber: Option<String>,
    /// `None` when the user has no grade yet (or it is hidden from the token).
    pub graderaw: Option<f64>,
    pub grademin: Option<f64>,
    pub grademax: Option<f64>,
}

/// Course completion of one user, from `core_completion_get_course_completion_status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Completion {
    pub completed: bool,
    /// The latest `timecompleted` among the criteria, when complete.
    pub completed_at: Option<i64>,
}

/// The Moodle operations the service uses; one method per web-service call.
///
/// Every method makes exactly one HTTP call. A Moodle error envelope, a
/// blocking warning, or a transport failure is a [`MoodleError`].
#[async_trait]
pub trait Moodle: Send + Sync {
    /// `core_webservice_get_site_info`.
    async fn site_info(&self) -> Result<SiteInfo, MoodleError>;
    /// `core_course_get_courses_by_field` with `field=idnumber` (never called with an empty value).
    async fn course_by_idnumber(&self, idnumber: &str) -> Result<Option<Course>, MoodleError>;
    /// `core_course_get_courses_by_field` with `field=id`.
    async fn course_by_id(&self, id: i64) -> Result<Option<Course>, MoodleError>;
    /// `core_course_get_courses_by_field` with `field=shortname`.
    async fn course_by_shortname(&self, shortname: &str) -> Result<Option<Course>, MoodleError>;
    /// `core_course_create_courses` with exactly one course; returns its id.
    async fn create_course(&self, course: &NewCourse) -> Result<i64, MoodleError>;
    /// `core_course_update_courses` with one course; a warning is an error.
    async fn update_course(&self, update: &CourseUpdate) -> Result<(), MoodleError>;
    /// `core_user_get_users_by_field` with one value.
    async fn users_by_field(&self, field: UserField, value: &str)
    -> Result<Vec<User>, MoodleError>;
    /// `core_user_get_users` with one `email` criterion (case-insensitive LIKE);
    /// the caller must still check for exact equality.
    async fn users_by_email_like(&self, email: &str) -> Result<Vec<User>, MoodleError>;
    /// `core_user_create_users` with exactly one user; returns its id.
    async fn create_user(&self, user: &NewUser) -> Result<i64, MoodleError>;
    /// `enrol_manual_enrol_users` (atomic for the whole list).
    async fn enrol(&self, enrolments: &[Enrolment]) -> Result<(), MoodleError>;
    /// `enrol_manual_unenrol_users` (atomic for the whole list).
    async fn unenrol(&self, unenrolments: &[Unenrolment]) -> Result<(), MoodleError>;
    /// `gradereport_user_get_grade_items` for all users of a course (`userid` omitted).
    async fn course_totals(&self, courseid: i64) -> Result<Vec<CourseTotal>, MoodleError>;
    /// `core_completion_get_course_completion_status`; `None` for "no completion data"
    /// (`usernotenroled`, `nocriteriaset`).
    async fn completion(
        &self,
        courseid: i64,
        userid: i64,
    ) -> Result<Option<Completion>, MoodleError>;
}
