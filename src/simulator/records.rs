//! What tests seed and read back: seeds, snapshots of stored rows, recorded calls.

use super::CATEGORY;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManualInstance {
    Enabled,
    /// Enrolling fails with `wsnoinstance`; unenrolling still works.
    Disabled,
    /// Enrolling and unenrolling fail with `wsnoinstance`.
    Missing,
}

/// One request that reached `/webservice/rest/server.php`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedCall {
    /// The `wsfunction` sent ("" when missing).
    pub function: String,
    /// Every parameter in the order sent (query string first, then body), without `wstoken`;
    /// those PHP dropped past `max_input_vars` too.
    pub form: Vec<(String, String)>,
    /// `GET` or `POST`.
    pub method: String,
    /// True when `wstoken` was in the URL's query string (it must only be in the body).
    pub token_in_query: bool,
    /// When the call arrived (for rate checks).
    pub at: std::time::Instant,
}

/// A course as stored (front page excluded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CourseRecord {
    pub id: i64,
    pub shortname: String,
    pub fullname: String,
    pub idnumber: String,
    pub category: i64,
    pub summary: String,
    pub startdate: i64,
    pub enddate: i64,
    pub visible: bool,
}

/// A user as stored (the seeded guest, admin and token user excluded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub id: i64,
    pub username: String,
    pub email: String,
    pub idnumber: String,
    pub firstname: String,
    pub lastname: String,
    pub auth: String,
    pub suspended: bool,
}

/// A manual enrolment and the user's roles in that course.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrolmentRecord {
    pub courseid: i64,
    pub userid: i64,
    /// In the order they were assigned.
    pub roleids: Vec<i64>,
    pub suspended: bool,
    pub timestart: i64,
    pub timeend: i64,
}

/// A course to seed with [`add_course`](super::MoodleSimulator::add_course); start from
/// [`CourseSeed::new`].
#[derive(Debug, Clone)]
pub struct CourseSeed {
    /// `None`: the next free id.
    pub id: Option<i64>,
    pub shortname: String,
    pub fullname: String,
    pub idnumber: String,
    pub category: i64,
    pub summary: String,
    pub startdate: i64,
    pub enddate: i64,
    pub visible: bool,
    pub enablecompletion: bool,
}

impl CourseSeed {
    /// A visible course in [`CATEGORY`] with completion enabled and no dates.
    pub fn new(shortname: &str) -> Self {
        CourseSeed {
            id: None,
            shortname: shortname.into(),
            fullname: format!("Course {shortname}"),
            idnumber: String::new(),
            category: CATEGORY,
            summary: String::new(),
            startdate: 0,
            enddate: 0,
            visible: true,
            enablecompletion: true,
        }
    }
}

/// A user to seed with [`add_user`](super::MoodleSimulator::add_user); start from
/// [`UserSeed::new`].
#[derive(Debug, Clone)]
pub struct UserSeed {
    /// `None`: the next free id.
    pub id: Option<i64>,
    pub username: String,
    pub firstname: String,
    pub lastname: String,
    pub email: String,
    pub idnumber: String,
    pub auth: String,
    pub suspended: bool,
}

impl UserSeed {
    /// An active `manual` user without idnumber.
    pub fn new(username: &str, email: &str) -> Self {
        UserSeed {
            id: None,
            username: username.into(),
            firstname: "Del".into(),
            lastname: username.into(),
            email: email.into(),
            idnumber: String::new(),
            auth: "manual".into(),
            suspended: false,
        }
    }
}
