//! Moodle REST client: PHP-style form encoding, the error envelope, error classes.
//!
//! The handler layer (`sync`) talks to Moodle only through the [`Moodle`] trait,
//! so it can be tested without HTTP. [`MoodleClient`] is the real implementation;
//! one [`MoodleSession`] per job records every call made (function, outcome, latency).

mod batch;
mod client;
mod encode;
mod envelope;
mod error;
mod functions;
mod sanitize;
mod session;
#[cfg(test)]
mod tests;
pub(crate) mod wsfunction;

pub use client::{ClientBuildError, MoodleClient, Pacing};
pub use encode::{FormObject, FormParams, FormValue};
pub use error::{ErrorClass, MoodleError, fix_add_functions, fix_grant_capabilities};
pub use session::MoodleSession;
pub use wsfunction::required_functions;

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
    /// How many jobs' requests the call carried, when it was a batched call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<u32>,
}

/// A course as Moodle reports it (only the fields this service reads).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Course {
    /// Moodle course id.
    pub id: i64,
    /// Unique short name.
    pub shortname: String,
    /// Display name.
    pub fullname: String,
    /// Only present when the token may see it (`moodle/course:update`).
    pub idnumber: Option<String>,
    /// HTML, as formatted by Moodle for display.
    pub summary: Option<String>,
    /// Unix seconds; 0 when not set.
    pub startdate: Option<i64>,
    /// Unix seconds; 0 when the course has no end.
    pub enddate: Option<i64>,
}

/// A new course for `core_course_create_courses` (one per call).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewCourse {
    /// Display name (≤ 254 characters, no tags).
    pub fullname: String,
    /// Unique short name (≤ 255 characters, no tags).
    pub shortname: String,
    /// Moodle category id (must exist).
    pub categoryid: i64,
    /// The deterministic key, e.g. `apit-course-42`; not sent when empty.
    pub idnumber: String,
    /// HTML; sent with `summaryformat = 1` when present.
    pub summary: Option<String>,
    /// Unix seconds.
    pub startdate: Option<i64>,
    /// Unix seconds; needs a start date, must not be before it.
    pub enddate: Option<i64>,
    /// Sent as `1`/`0`; without it Moodle uses the category's visibility.
    pub visible: Option<bool>,
}

/// A partial update for `core_course_update_courses`: `None` fields are not sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CourseUpdate {
    /// Moodle course id.
    pub id: i64,
    /// New display name.
    pub fullname: Option<String>,
    /// HTML; sent with `summaryformat = 1` when present.
    pub summary: Option<String>,
    /// Unix seconds; send together with `enddate` (Moodle checks only what is sent).
    pub startdate: Option<i64>,
    /// Unix seconds; 0 for no end.
    pub enddate: Option<i64>,
}

/// The user fields `core_user_get_users_by_field` can search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UserField {
    /// `id`
    Id,
    /// `idnumber`
    Idnumber,
    /// `username`
    Username,
    /// `email`
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
    /// Moodle user id.
    pub id: i64,
    /// Only with `moodle/user:viewalldetails`.
    pub username: Option<String>,
    /// When the token may see it.
    pub email: Option<String>,
    /// Only with `moodle/user:viewalldetails` (or as an identity field).
    pub idnumber: Option<String>,
    /// Given name.
    pub firstname: Option<String>,
    /// Family name.
    pub lastname: Option<String>,
    /// Whether the account is suspended.
    pub suspended: Option<bool>,
}

/// A new user for `core_user_create_users`: always `auth = manual`, `createpassword = 1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewUser {
    /// Already clean: lower case, only `a-z 0-9 . @ _ -`, ≤ 100 characters.
    pub username: String,
    /// Given name (not blank, no tags).
    pub firstname: String,
    /// Family name (not blank, no tags).
    pub lastname: String,
    /// Sent exactly as given (Moodle does not lower-case it).
    pub email: String,
    /// The deterministic key, e.g. `apit-user-9`; not sent when empty.
    pub idnumber: String,
}

/// One item of `enrol_manual_enrol_users`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Enrolment {
    /// Moodle role id (usually the student role).
    pub roleid: i64,
    /// Moodle user id.
    pub userid: i64,
    /// Moodle course id.
    pub courseid: i64,
    /// Always sent: `false` reactivates a suspended enrolment.
    pub suspend: bool,
}

/// One item of `enrol_manual_unenrol_users`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Unenrolment {
    /// Moodle user id.
    pub userid: i64,
    /// Moodle course id.
    pub courseid: i64,
}

/// What `core_webservice_get_site_info` tells about the site and the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteInfo {
    /// The site's full name.
    pub sitename: String,
    /// The site's wwwroot, without a trailing slash.
    pub siteurl: String,
    /// The token user.
    pub username: String,
    /// The token user's id.
    pub userid: i64,
    /// e.g. `4.5.2 (Build: 20250210)`.
    pub release: Option<String>,
    /// e.g. `2024100700.09`.
    pub version: Option<String>,
    /// Names of every function in the token's external service.
    pub functions: Vec<String>,
    /// The front page's course id (`SITEID`, 1 on every standard site).
    pub siteid: Option<i64>,
}

/// The course total of one user, from `gradereport_user_get_grade_items`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CourseTotal {
    /// Moodle user id.
    pub userid: i64,
    /// The user's idnumber (`None` when empty), e.g. `apit-user-9`.
    pub useridnumber: Option<String>,
    /// `None` when the user has no grade yet (or it is hidden from the token).
    pub graderaw: Option<f64>,
    /// Only when the course's user report shows the range column.
    pub grademin: Option<f64>,
    /// Only when the course's user report shows the range column.
    pub grademax: Option<f64>,
}

/// Course completion of one user, from `core_completion_get_course_completion_status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Completion {
    /// As last aggregated by Moodle's cron (may lag behind).
    pub completed: bool,
    /// The latest `timecompleted` among the criteria, when complete.
    pub completed_at: Option<i64>,
}

/// The Moodle operations the service uses; one method per web-service call.
///
/// Every method makes at most one HTTP call: none when the answer is known without
/// asking (an empty lookup value, an update with no field set, an empty enrolment
/// list; see [`MoodleSession`]). A Moodle error envelope, a blocking warning, or a
/// transport failure is a [`MoodleError`].
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
    /// `core_user_get_users_by_field` for one value (it may share a call with
    /// other jobs' values of the same field).
    async fn users_by_field(&self, field: UserField, value: &str)
    -> Result<Vec<User>, MoodleError>;
    /// `core_user_get_users` with one `email` criterion (case-insensitive LIKE);
    /// the caller must still check for exact equality.
    async fn users_by_email_like(&self, email: &str) -> Result<Vec<User>, MoodleError>;
    /// `core_user_create_users` with exactly one user; returns its id.
    async fn create_user(&self, user: &NewUser) -> Result<i64, MoodleError>;
    /// `enrol_manual_enrol_users` for one enrolment (it may share a call with
    /// other jobs'; a refused batch is split until the bad enrolment is alone).
    async fn enrol(&self, enrolment: &Enrolment) -> Result<(), MoodleError>;
    /// `enrol_manual_unenrol_users` for one enrolment (batched like `enrol`).
    async fn unenrol(&self, unenrolment: &Unenrolment) -> Result<(), MoodleError>;
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
