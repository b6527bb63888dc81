//! Event bodies (SPEC §2) and their lenient parsing and validation.
//!
//! Workflows build bodies from merge fields, so parsing is forgiving: IDs may be
//! strings or integers, booleans `true/false/yes/no/1/0` in any case, an empty
//! string means absent, times are RFC 3339 or UK/ISO local times in the tenant's
//! time zone. What comes out is a typed, validated [`Event`] or a [`Rejection`]
//! naming every bad field.
//!
//! Layout: `lenient` has one reader per value type, `time` the time formats,
//! `rules` the checks Moodle's limits call for, and `parse` walks a body of
//! one kind with them. This file holds the types and what the service derives
//! from an event (idempotency hash, entity, ordering keys).

mod lenient;
mod parse;
#[cfg(test)]
mod proptests;
mod rules;
mod time;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The four webhook events (the URL slug is the contract).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// A course (date) was created or edited.
    CourseSaved,
    /// A course's start or end changed.
    CourseDateChanged,
    /// A delegate was booked onto a course.
    BookingCreated,
    /// A delegate was cancelled, deleted or transferred away.
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

    /// True for the booking events, which carry `booking` and `user`.
    pub fn is_booking(self) -> bool {
        matches!(
            self,
            EventKind::BookingCreated | EventKind::BookingCancelled
        )
    }
}

/// The accessplanit course type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CourseType {
    /// Face to face; synced as its own Moodle course.
    Classroom,
    /// Online, live; synced as its own Moodle course.
    Webinar,
    /// Self-paced; delegates are enrolled on the template's Moodle course.
    Elearning,
}

/// The course template (eLearning courses enrol on the template's Moodle course).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Template {
    /// accessplanit template ID.
    pub id: Option<String>,
    /// Template name (informational: nothing in Moodle is named from it).
    pub name: Option<String>,
    /// HTML; becomes the Moodle course summary.
    pub aims: Option<String>,
    /// The Moodle course an eLearning template's delegates are enrolled on.
    pub moodle_id: Option<i64>,
}

/// The `course` object of every event. `L` (the label) and `D` (the dates) say
/// what the event kind guarantees: `String` / `DateTime<Utc>` where the kind
/// requires the field, `Option` where it may be absent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Course<L = Option<String>, D = Option<DateTime<Utc>>> {
    /// accessplanit course (date) ID.
    pub id: String,
    /// Course name; the Moodle fullname.
    pub label: L,
    /// Absent means classroom.
    #[serde(rename = "type")]
    pub course_type: Option<CourseType>,
    /// The "Sync to Moodle" checkbox; absent means true (the workflow chose to send it).
    pub sync_to_moodle: Option<bool>,
    /// Link to this existing Moodle course.
    pub moodle_id: Option<i64>,
    /// Start, whole seconds.
    pub start: D,
    /// End, never before `start`.
    pub end: D,
    /// Absent when the body's template fields are all empty.
    pub template: Option<Template>,
}

/// The course of a booking: every field but the ID optional.
pub type CourseInfo = Course;
/// The course of `course-saved`: it has a label.
pub type SavedCourse = Course<String>;
/// The course of `course-date-changed`: it has both dates.
pub type DatedCourse = Course<Option<String>, DateTime<Utc>>;

/// A field that one event kind requires and another may leave out.
pub trait Maybe<T> {
    /// The value, when present.
    fn get(&self) -> Option<&T>;
}

impl<T> Maybe<T> for Option<T> {
    fn get(&self) -> Option<&T> {
        self.as_ref()
    }
}

impl Maybe<String> for String {
    fn get(&self) -> Option<&String> {
        Some(self)
    }
}

impl Maybe<DateTime<Utc>> for DateTime<Utc> {
    fn get(&self) -> Option<&DateTime<Utc>> {
        Some(self)
    }
}

impl<L: Maybe<String>, D: Maybe<DateTime<Utc>>> Course<L, D> {
    /// The course type, classroom when absent.
    pub fn kind(&self) -> CourseType {
        self.course_type.unwrap_or(CourseType::Classroom)
    }

    /// The label, when the event has one.
    pub fn label(&self) -> Option<&str> {
        self.label.get().map(String::as_str)
    }

    /// The start, when the event has one.
    pub fn start(&self) -> Option<DateTime<Utc>> {
        self.start.get().copied()
    }

    /// The end, when the event has one.
    pub fn end(&self) -> Option<DateTime<Utc>> {
        self.end.get().copied()
    }

    /// The template's ID, when the course is eLearning and has one.
    pub fn elearning_template(&self) -> Option<&str> {
        let id = self.template.as_ref().and_then(|t| t.id.as_deref());
        id.filter(|_| self.kind() == CourseType::Elearning)
    }
}

impl CourseInfo {
    /// The same course with its label required; `None` without one.
    fn with_label(self) -> Option<SavedCourse> {
        let label = self.label?;
        Some(Course {
            id: self.id,
            label,
            course_type: self.course_type,
            sync_to_moodle: self.sync_to_moodle,
            moodle_id: self.moodle_id,
            start: self.start,
            end: self.end,
            template: self.template,
        })
    }

    /// The same course with both dates required; `None` without them.
    fn with_dates(self) -> Option<DatedCourse> {
        let (start, end) = (self.start?, self.end?);
        Some(Course {
            id: self.id,
            label: self.label,
            course_type: self.course_type,
            sync_to_moodle: self.sync_to_moodle,
            moodle_id: self.moodle_id,
            start,
            end,
            template: self.template,
        })
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
    /// accessplanit user (contact) ID.
    pub id: String,
    /// The user's Moodle ID when accessplanit already knows it.
    pub moodle_id: Option<i64>,
    /// Required for `booking-created` without `moodle_id`.
    pub first_name: Option<String>,
    /// Required for `booking-created` without `moodle_id`.
    pub last_name: Option<String>,
    /// Syntax-checked; required for `booking-created` without `moodle_id`.
    pub email: Option<String>,
}

/// `course-saved`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CourseSaved {
    /// The sender's ID for this event (an idempotency key).
    pub event_id: Option<String>,
    pub course: SavedCourse,
}

/// `course-date-changed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CourseDateChanged {
    /// The sender's ID for this event (an idempotency key).
    pub event_id: Option<String>,
    pub course: DatedCourse,
}

/// `booking-created` and `booking-cancelled`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookingEvent {
    /// The sender's ID for this event (an idempotency key).
    pub event_id: Option<String>,
    pub booking: Booking,
    pub course: CourseInfo,
    pub user: UserInfo,
    /// Overrides the tenant's role for this enrolment.
    pub role_id: Option<i64>,
}

/// A validated event, as stored in its job (`kind` is the URL slug).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Event {
    CourseSaved(CourseSaved),
    CourseDateChanged(CourseDateChanged),
    BookingCreated(BookingEvent),
    BookingCancelled(BookingEvent),
}

/// One bad field, located by a JSON pointer into the request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// e.g. `/course/start`.
    pub pointer: String,
    /// A short sentence about the field, e.g. `is required`.
    pub message: String,
}

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// Not JSON, or not a JSON object (HTTP 400).
    #[error("malformed body: {0}")]
    Malformed(String),
    /// Every field that breaks a rule (HTTP 422).
    #[error("{} invalid field(s)", .0.len())]
    Invalid(Vec<FieldError>),
}

impl Event {
    /// Parses and validates a body of the given kind; local times are read in `tz`.
    ///
    /// `Malformed` when the body is not a JSON object; otherwise `Invalid`
    /// with one [`FieldError`] per bad field, all of them at once.
    pub fn parse(kind: EventKind, body: &[u8], tz: Tz) -> Result<Event, Rejection> {
        parse::parse(kind, body, tz)
    }

    /// The kind the URL named.
    pub fn kind(&self) -> EventKind {
        match self {
            Event::CourseSaved(_) => EventKind::CourseSaved,
            Event::CourseDateChanged(_) => EventKind::CourseDateChanged,
            Event::BookingCreated(_) => EventKind::BookingCreated,
            Event::BookingCancelled(_) => EventKind::BookingCancelled,
        }
    }

    /// The sender's ID for this event.
    pub fn event_id(&self) -> Option<&str> {
        match self {
            Event::CourseSaved(e) => e.event_id.as_deref(),
            Event::CourseDateChanged(e) => e.event_id.as_deref(),
            Event::BookingCreated(e) | Event::BookingCancelled(e) => e.event_id.as_deref(),
        }
    }

    /// The booking, for booking events.
    pub fn booking(&self) -> Option<&BookingEvent> {
        match self {
            Event::BookingCreated(b) | Event::BookingCancelled(b) => Some(b),
            _ => None,
        }
    }

    /// The accessplanit course ID, which every event has.
    pub fn course_id(&self) -> &str {
        match self {
            Event::CourseSaved(e) => &e.course.id,
            Event::CourseDateChanged(e) => &e.course.id,
            Event::BookingCreated(e) | Event::BookingCancelled(e) => &e.course.id,
        }
    }

    /// The event as it matters for idempotency: without `event_id`, with keys
    /// sorted and absent fields left out.
    ///
    /// Two bodies that differ only in spelling (`"1"` vs `1`, `"yes"` vs
    /// `true`, a local time vs the same instant in RFC 3339, blank vs missing
    /// fields, unknown fields, `event_id`) give the same value. Leaving absent
    /// fields out also keeps today's hashes when an optional field is added.
    pub fn canonical_json(&self) -> Value {
        // Plain data of strings, numbers and options: serialising cannot fail.
        let mut value = serde_json::to_value(self).unwrap_or_default();
        if let Value::Object(map) = &mut value {
            map.remove("event_id");
        }
        canonical(value)
    }

    /// Hex SHA-256 of [`Event::canonical_json`]: the SPEC §2 body hash that
    /// tells a re-send from a change.
    pub fn body_hash(&self) -> String {
        hex::encode(Sha256::digest(self.canonical_json().to_string()))
    }

    /// The entity for the newest-event rule: `<kind>:<course id>` for course
    /// events, `<kind>:<booking id>` for booking events.
    pub fn entity(&self) -> String {
        let id = match self.booking() {
            Some(b) => &b.booking.id,
            None => self.course_id(),
        };
        format!("{}:{id}", self.kind().as_str())
    }

    /// What this event touches, so that jobs sharing a key run one at a time
    /// in arrival order (the store adds the tenant). Keys serialise only what
    /// needs it; `known` says what Moodle already has (links, given Moodle IDs):
    /// - course events: `course:<id>` (they may create or update the course),
    ///   and `template:<id>` for an eLearning course with a template (course-saved
    ///   links it);
    /// - booking events: `booking:<id>` (one booking's events in order) and
    ///   `user:<id>` (one person's bookings in order); `email:<lower-cased
    ///   email>` unless the person is known (two accessplanit users with one
    ///   email must not be created at once); `course:<id>` only while the course
    ///   is not known (the booking may create it, or wait for the course-saved
    ///   that does) — so bookings of a course already in Moodle run in parallel;
    ///   for eLearning, `template:<id>` only while the template is not known.
    pub fn ordering_keys(&self, known: Known) -> Vec<String> {
        match self {
            Event::CourseSaved(e) => course_keys(&e.course),
            Event::CourseDateChanged(e) => course_keys(&e.course),
            Event::BookingCreated(b) | Event::BookingCancelled(b) => {
                let mut keys = vec![
                    format!("booking:{}", b.booking.id),
                    format!("user:{}", b.user.id),
                ];
                if let (false, Some(email)) = (known.user, &b.user.email) {
                    keys.push(format!("email:{}", email.to_lowercase()));
                }
                match (b.course.elearning_template(), known.course) {
                    (_, true) => {}
                    (Some(template_id), false) => keys.push(format!("template:{template_id}")),
                    (None, false) => keys.push(format!("course:{}", b.course.id)),
                }
                keys
            }
        }
    }
}

/// What Moodle already has for a booking, as known at admission.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Known {
    /// The booking's Moodle course is known (linked, or its Moodle ID given;
    /// for eLearning: the template's).
    pub course: bool,
    /// The person is known (linked, or `user.moodle_id` given).
    pub user: bool,
}

/// A course event's keys: the course, and an eLearning course's template.
fn course_keys<L: Maybe<String>, D: Maybe<DateTime<Utc>>>(course: &Course<L, D>) -> Vec<String> {
    let mut keys = vec![format!("course:{}", course.id)];
    if let Some(template_id) = course.elearning_template() {
        keys.push(format!("template:{template_id}"));
    }
    keys
}

/// `value` with object keys sorted and `null` members dropped, at every
/// depth. Sorting by hand keeps the order stable even if a dependency turns on
/// serde_json's `preserve_order`.
fn canonical(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut members: Vec<(String, Value)> =
                map.into_iter().filter(|(_, v)| !v.is_null()).collect();
            members.sort_by(|(a, _), (b, _)| a.cmp(b));
            Value::Object(
                members
                    .into_iter()
                    .map(|(k, v)| (k, canonical(v)))
                    .collect::<Map<_, _>>(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(canonical).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::Europe::London;
    use serde_json::json;

    fn event(kind: EventKind, body: Value) -> Event {
        Event::parse(kind, body.to_string().as_bytes(), London).expect("a valid body")
    }

    fn booking() -> Value {
        json!({
            "booking": {"id": "D555"},
            "course": {"id": "C1001", "label": "First Aid", "type": "classroom",
                       "sync_to_moodle": true, "moodle_id": null,
                       "start": "2027-01-12T09:00:00Z", "end": "2027-01-14T17:00:00Z",
                       "template": {"id": "T77", "aims": "<p>Aims</p>"}},
            "user": {"id": "U9", "first_name": "Ada", "last_name": "Lovelace",
                     "email": "ada@example.com"},
            "role_id": 5
        })
    }

    #[test]
    fn lenient_spellings_hash_the_same() {
        let base = event(EventKind::BookingCreated, booking()).body_hash();
        let variants = [
            json!({"event_id": "evt-9"}),
            json!({"event_id": 12, "unknown": {"a": 1}}),
            json!({"booking": {"id": " D555 ", "extra": "x"}}),
            json!({"course": {"sync_to_moodle": "Yes"}}),
            json!({"course": {"sync_to_moodle": "1"}}),
            json!({"course": {"sync_to_moodle": 1}}),
            json!({"course": {"type": " Classroom "}}),
            json!({"course": {"moodle_id": "0"}}),
            json!({"course": {"moodle_id": ""}}),
            json!({"course": {"start": "12/01/2027 09:00", "end": "2027-01-14 17:00:00"}}),
            json!({"course": {"start": "2027-01-12T10:00:00+01:00"}}),
            json!({"course": {"template": {"name": "", "moodle_id": 0}}}),
            json!({"user": {"moodle_id": "", "first_name": "  Ada"}}),
            json!({"role_id": "5"}),
        ];
        for patch in variants {
            let mut body = booking();
            merge(&mut body, &patch);
            let hash = event(EventKind::BookingCreated, body).body_hash();
            assert_eq!(hash, base, "{patch}");
        }
        // Numeric IDs hash like their string spelling.
        let numeric = json!({"course": {"id": 1001, "label": "L"}});
        let text = json!({"course": {"id": "1001", "label": "L"}});
        assert_eq!(
            event(EventKind::CourseSaved, numeric).body_hash(),
            event(EventKind::CourseSaved, text).body_hash()
        );
    }

    #[test]
    fn real_changes_change_the_hash() {
        let base = event(EventKind::BookingCreated, booking()).body_hash();
        let changes = [
            json!({"booking": {"id": "D556"}}),
            json!({"course": {"label": "First Aid at Work"}}),
            json!({"course": {"sync_to_moodle": false}}),
            json!({"course": {"moodle_id": 3}}),
            json!({"course": {"start": "2027-01-12 09:01"}}),
            json!({"course": {"template": {"aims": "<p>New aims</p>"}}}),
            json!({"user": {"email": "ada@example.org"}}),
            json!({"user": {"first_name": "ADA"}}),
            json!({"role_id": 3}),
            json!({"role_id": null}),
        ];
        for patch in changes {
            let mut body = booking();
            merge(&mut body, &patch);
            let hash = event(EventKind::BookingCreated, body).body_hash();
            assert_ne!(hash, base, "{patch}");
        }
        // The same body under another kind is another event.
        let cancelled = event(EventKind::BookingCancelled, booking()).body_hash();
        assert_ne!(cancelled, base);
    }

    #[test]
    fn canonical_json_is_sorted_without_event_id_or_absent_fields() {
        let body = json!({"event_id": "e1", "course": {"id": "C1", "label": "L", "type": ""}});
        let canonical = event(EventKind::CourseSaved, body).canonical_json();
        assert_eq!(
            canonical.to_string(),
            r#"{"course":{"id":"C1","label":"L"},"kind":"course-saved"}"#
        );
        let hash = event(
            EventKind::CourseSaved,
            json!({"course": {"id": "C1", "label": "L"}}),
        )
        .body_hash();
        assert_eq!(hash.len(), 64);
        assert!(hash.chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn entity_names_the_course_or_the_booking() {
        let course = event(
            EventKind::CourseSaved,
            json!({"course": {"id": "C1", "label": "L"}}),
        );
        assert_eq!(course.entity(), "course-saved:C1");
        let dates = json!({"course": {"id": 7, "start": "2027-01-12", "end": "2027-01-13"}});
        assert_eq!(
            event(EventKind::CourseDateChanged, dates).entity(),
            "course-date-changed:7"
        );
        assert_eq!(
            event(EventKind::BookingCreated, booking()).entity(),
            "booking-created:D555"
        );
        assert_eq!(
            event(EventKind::BookingCancelled, booking()).entity(),
            "booking-cancelled:D555"
        );
    }

    #[test]
    fn ordering_keys() {
        let unknown = Known::default();
        let course = event(
            EventKind::CourseSaved,
            json!({"course": {"id": "C1", "label": "L"}}),
        );
        assert_eq!(course.ordering_keys(unknown), ["course:C1"]);

        let mut body = booking();
        body["user"]["email"] = json!("Ada@Example.COM");
        let booking_event = event(EventKind::BookingCreated, body);
        assert_eq!(
            booking_event.ordering_keys(unknown),
            [
                "booking:D555",
                "user:U9",
                "email:ada@example.com",
                "course:C1001"
            ]
        );
        // A course already in Moodle and a known person: nothing but the
        // booking and the person are serialised.
        let known = Known {
            course: true,
            user: true,
        };
        assert_eq!(
            booking_event.ordering_keys(known),
            ["booking:D555", "user:U9"]
        );

        // eLearning: the template's Moodle course is the one enrolled on.
        let mut body = booking();
        body["course"]["type"] = json!("eLearning");
        body["user"] = json!({"id": "U9", "moodle_id": 42});
        let elearning_booking = event(EventKind::BookingCancelled, body);
        assert_eq!(
            elearning_booking.ordering_keys(Known {
                course: false,
                user: true
            }),
            ["booking:D555", "user:U9", "template:T77"]
        );
        let elearning = json!({"course": {"id": "C2", "label": "L", "type": "elearning",
                                          "template": {"id": "T3"}}});
        assert_eq!(
            event(EventKind::CourseSaved, elearning).ordering_keys(unknown),
            ["course:C2", "template:T3"]
        );
    }

    #[test]
    fn kinds_round_trip_their_slugs() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::parse(kind.as_str()), Some(kind));
            assert_eq!(serde_json::to_value(kind).unwrap(), json!(kind.as_str()));
        }
        assert_eq!(EventKind::parse("course_saved"), None);
    }

    #[test]
    fn an_event_survives_the_store() {
        let original = event(EventKind::BookingCreated, booking());
        let stored = serde_json::to_value(&original).unwrap();
        let back: Event = serde_json::from_value(stored).unwrap();
        assert_eq!(back, original);
        assert_eq!(back.body_hash(), original.body_hash());
    }

    /// Overlays `patch` onto `body`, object member by member (shared with
    /// the other test modules of `events`).
    pub(super) fn merge(body: &mut Value, patch: &Value) {
        match (body, patch) {
            (Value::Object(body), Value::Object(patch)) => {
                for (key, value) in patch {
                    merge(body.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
            (body, patch) => *body = patch.clone(),
        }
    }
}
