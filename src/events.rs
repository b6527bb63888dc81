//! Event bodies (SPEC §2) and their lenient parsing and validation.
//!
//! Workflows build bodies from merge fields, so parsing is forgiving: IDs may be
//! strings or integers, booleans `true/false/yes/no/1/0` in any case, an empty
//! string means absent, times are RFC 3339 or UK/ISO local times in the tenant's
//! time zone. What comes out is a typed, validated [`Event`] or a [`Rejection`]
//! naming every bad field.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// The four webhook events (the URL slug is the contract).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    CourseSaved,
    CourseDateChanged,
    BookingCreated,
    BookingCancelled,
}

impl EventKind {
    /// Every kind.
    pub const ALL: [EventKind; 4] = [
        EventKind::CourseSaved,
        EventKind::CourseDateChanged,
        EventKind::BookingCreated,
        EventKind::BookingCancelled,
    ];

    /// The URL slug and stored job kind, e.g. `course-saved`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::CourseSaved => "course-saved",
            EventKind::CourseDateChanged => "course-date-changed",
            EventKind::BookingCreated => "booking-created",
            EventKind::BookingCancelled => "booking-cancelled",
        }
    }

    /// Parses a URL slug.
    pub fn parse(slug: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == slug)
    }
}

/// The accessplanit course type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CourseType {
    Classroom,
    Webinar,
    Elearning,
}

/// The course template (eLearning courses enrol on the template's Moodle course).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Template {
    pub id: Option<String>,
    pub name: Option<String>,
    /// HTML; becomes the Moodle course summary.
    pub aims: Option<String>,
    pub moodle_id: Option<i64>,
}

/// The `course` object of every event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CourseInfo {
    /// accessplanit course (date) ID.
    pub id: String,
    pub label: Option<String>,
    /// Absent means classroom.
    #[serde(rename = "type")]
    pub course_type: Option<CourseType>,
    /// The "Sync to Moodle" checkbox; absent means true (the workflow chose to send it).
    pub sync_to_moodle: Option<bool>,
    /// Link to this existing Moodle course.
    pub moodle_id: Option<i64>,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    pub template: Option<Template>,
}

impl CourseInfo {
    /// The course type, classroom when absent.
    pub fn kind(&self) -> CourseType {
        self.course_type.unwrap_or(CourseType::Classroom)
    }
}

/// The `booking` object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Booking {
    /// accessplanit delegate ID.
    pub id: String,
}

/// The `user` object of booking events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    pub id: String,
    pub moodle_id: Option<i64>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
}

/// A validated event, as stored in its job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub kind: EventKind,
    pub event_id: Option<String>,
    pub course: CourseInfo,
    pub booking: Option<Booking>,
    pub user: Option<UserInfo>,
    /// Overrides the tenant's role for this enrolment.
    pub role_id: Option<i64>,
}

/// One bad field, located by a JSON pointer into the request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// e.g. `/course/start`.
    pub pointer: String,
    pub message: String,
}

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// Not JSON, or not a JSON object (HTTP 400).
    Malformed(String),
    /// Every field that breaks a rule (HTTP 422).
    Invalid(Vec<FieldError>),
}

impl Event {
    /// Parses and validates a body of the given kind; local times are read in `tz`.
    pub fn parse(kind: EventKind, body: &[u8], tz: Tz) -> Result<Event, Rejection> {
        let _ = (kind, body, tz);
        Err(Rejection::Malformed("not implemented".into()))
    }
}
