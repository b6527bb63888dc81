//! Walks a body of one event kind, reading each field leniently and applying
//! the rules of SPEC §2 and §3, collecting EVERY bad field (with its JSON
//! pointer) so one 422 names them all.

use chrono_tz::Tz;
use serde_json::{Map, Value};

use super::lenient::{self, Read};
use super::rules::{self, EVENT_ID_MAX, ID_MAX, LABEL_MAX, NAME_MAX};
use super::time;
use super::{
    Booking, BookingEvent, CourseDateChanged, CourseInfo, CourseSaved, Event, EventKind,
    FieldError, Rejection, Template, UserInfo,
};

/// See [`Event::parse`].
pub(super) fn parse(kind: EventKind, body: &[u8], tz: Tz) -> Result<Event, Rejection> {
    let root = json_object(body)?;
    let mut walker = Walker {
        tz,
        errors: Vec::new(),
    };
    let event = walker.event(kind, &Obj::root(&root));
    match event {
        Some(event) if walker.errors.is_empty() => Ok(event),
        _ => {
            debug_assert!(!walker.errors.is_empty(), "a part was dropped silently");
            Err(Rejection::Invalid(walker.errors))
        }
    }
}

/// The body as a JSON object, or why it is not one (HTTP 400).
fn json_object(body: &[u8]) -> Result<Map<String, Value>, Rejection> {
    // Some Windows HTTP tools prefix a UTF-8 byte-order mark; it is not JSON.
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    match serde_json::from_slice(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(Rejection::Malformed(format!(
            "the body must be a JSON object, not {}",
            json_type(&other)
        ))),
        Err(e) => Err(Rejection::Malformed(format!("invalid JSON: {e}"))),
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// One JSON object of the body and the pointer to it (`""` for the body itself).
struct Obj<'a> {
    map: &'a Map<String, Value>,
    pointer: String,
}

impl<'a> Obj<'a> {
    fn root(map: &'a Map<String, Value>) -> Self {
        Obj {
            map,
            pointer: String::new(),
        }
    }

    /// The pointer to a member. Our member names need no `~`/`/` escaping.
    fn at(&self, name: &str) -> String {
        format!("{}/{name}", self.pointer)
    }
}

/// Reads fields and collects the errors.
///
/// Every method that returns `None` for something required has reported why,
/// so a missing part never goes unexplained; `parse` only builds the event
/// when no error was reported.
struct Walker {
    tz: Tz,
    errors: Vec<FieldError>,
}

impl Walker {
    fn event(&mut self, kind: EventKind, root: &Obj) -> Option<Event> {
        let event_id = self.optional(root, "event_id", event_id);
        let course = self.course(kind, root);
        // Course events ignore `booking`, `user` and `role_id` like any other
        // unknown field: a workflow may use one body for all kinds. A missing
        // label or date was reported by `course`, so `with_…` only restates it.
        match kind {
            EventKind::CourseSaved => Some(Event::CourseSaved(CourseSaved {
                event_id,
                course: course?.with_label()?,
            })),
            EventKind::CourseDateChanged => Some(Event::CourseDateChanged(CourseDateChanged {
                event_id,
                course: course?.with_dates()?,
            })),
            EventKind::BookingCreated | EventKind::BookingCancelled => {
                let booking = self.booking(root);
                let user = self.user(kind, root);
                let role_id = self.optional(root, "role_id", lenient::moodle_id);
                let booking = BookingEvent {
                    event_id,
                    booking: booking?,
                    course: course?,
                    user: user?,
                    role_id,
                };
                Some(if kind == EventKind::BookingCreated {
                    Event::BookingCreated(booking)
                } else {
                    Event::BookingCancelled(booking)
                })
            }
        }
    }

    fn course(&mut self, kind: EventKind, root: &Obj) -> Option<CourseInfo> {
        let course = self.object(root, "course", true)?;
        let id = self.required(&course, "id", entity_id);
        let label = self.field(&course, "label", kind == EventKind::CourseSaved, |v| {
            plain_text(v, LABEL_MAX)
        });
        let course_type = self.optional(&course, "type", lenient::course_type);
        let sync_to_moodle = self.optional(&course, "sync_to_moodle", lenient::flag);
        let moodle_id = self.optional(&course, "moodle_id", lenient::moodle_id);
        // Moodle needs both dates together when they change (SPEC §3).
        let need_dates = kind == EventKind::CourseDateChanged;
        let tz = self.tz;
        let start = self.field(&course, "start", need_dates, |v| time::read(v, tz));
        let end = self.field(&course, "end", need_dates, |v| time::read(v, tz));
        if let (Some(start), Some(end)) = (start, end) {
            if end < start {
                self.fail(course.at("end"), "must not be before start");
            }
        }
        let template = self.template(&course);
        Some(CourseInfo {
            id: id?,
            label,
            course_type,
            sync_to_moodle,
            moodle_id,
            start,
            end,
            template,
        })
    }

    fn template(&mut self, course: &Obj) -> Option<Template> {
        let template = self.object(course, "template", false)?;
        let template = Template {
            id: self.optional(&template, "id", entity_id),
            name: self.optional(&template, "name", lenient::text),
            // HTML is welcome: it becomes the Moodle course summary (PARAM_RAW).
            aims: self.optional(&template, "aims", lenient::text),
            moodle_id: self.optional(&template, "moodle_id", lenient::moodle_id),
        };
        // Workflows send the template's merge fields for every course, empty
        // for classroom ones; a template with nothing in it is no template.
        (template != Template::default()).then_some(template)
    }

    fn booking(&mut self, root: &Obj) -> Option<Booking> {
        let booking = self.object(root, "booking", true)?;
        let id = self.required(&booking, "id", entity_id)?;
        Some(Booking { id })
    }

    fn user(&mut self, kind: EventKind, root: &Obj) -> Option<UserInfo> {
        let user = self.object(root, "user", true)?;
        let id = self.required(&user, "id", entity_id);
        let moodle_id = self.read(&user, "moodle_id", lenient::moodle_id);
        // Without a Moodle ID the booking may have to create the user, which
        // takes a name and an email. A bad moodle_id is reported on its own,
        // not also as three missing fields.
        let need_profile = kind == EventKind::BookingCreated && matches!(moodle_id, Some(None));
        let name = |v| plain_text(v, NAME_MAX);
        let first_name = self.field(&user, "first_name", need_profile, name);
        let last_name = self.field(&user, "last_name", need_profile, name);
        let email = self.field(&user, "email", need_profile, email);
        Some(UserInfo {
            id: id?,
            moodle_id: moodle_id.flatten(),
            first_name,
            last_name,
            email,
        })
    }

    /// A nested object; `None` when absent or wrong (reported when it matters).
    fn object<'a>(&mut self, parent: &Obj<'a>, name: &str, required: bool) -> Option<Obj<'a>> {
        let map = self.field(parent, name, required, lenient::object)?;
        Some(Obj {
            map,
            pointer: parent.at(name),
        })
    }

    fn optional<'a, T>(
        &mut self,
        obj: &Obj<'a>,
        name: &str,
        read: impl FnOnce(&'a Value) -> Read<T>,
    ) -> Option<T> {
        self.field(obj, name, false, read)
    }

    fn required<'a, T>(
        &mut self,
        obj: &Obj<'a>,
        name: &str,
        read: impl FnOnce(&'a Value) -> Read<T>,
    ) -> Option<T> {
        self.field(obj, name, true, read)
    }

    /// A member's value, reporting it when wrong, or when absent but required.
    fn field<'a, T>(
        &mut self,
        obj: &Obj<'a>,
        name: &str,
        required: bool,
        read: impl FnOnce(&'a Value) -> Read<T>,
    ) -> Option<T> {
        let value = self.read(obj, name, read);
        if required && matches!(value, Some(None)) {
            self.fail(obj.at(name), "is required");
        }
        value.flatten()
    }

    /// `Some(None)` when absent, `None` when wrong (and reported): the caller
    /// can tell "not given" from "given but bad".
    fn read<'a, T>(
        &mut self,
        obj: &Obj<'a>,
        name: &str,
        read: impl FnOnce(&'a Value) -> Read<T>,
    ) -> Option<Option<T>> {
        let Some(value) = obj.map.get(name) else {
            return Some(None);
        };
        match read(value) {
            Ok(value) => Some(value),
            Err(message) => {
                self.fail(obj.at(name), message);
                None
            }
        }
    }

    fn fail(&mut self, pointer: String, message: impl Into<String>) {
        self.errors.push(FieldError {
            pointer,
            message: message.into(),
        });
    }
}

// Field readers: a lenient reader from `lenient` plus the field's rules.

fn entity_id(value: &Value) -> Read<String> {
    checked(lenient::id(value), |id| rules::max_chars(id, ID_MAX))
}

fn event_id(value: &Value) -> Read<String> {
    checked(lenient::id(value), |id| rules::max_chars(id, EVENT_ID_MAX))
}

/// Text Moodle keeps as PARAM_TEXT / PARAM_NOTAGS in a column of `max`
/// characters: the course fullname (label), first and last names.
fn plain_text(value: &Value, max: usize) -> Read<String> {
    checked(lenient::text(value), |text| {
        rules::max_chars(text, max)?;
        rules::no_html_tags(text)
    })
}

/// Becomes the Moodle user's email (and, lower-cased, their username).
fn email(value: &Value) -> Read<String> {
    checked(lenient::text(value), |text| rules::email(text))
}

/// Applies `check` to a value that was read and is present.
fn checked<T>(read: Read<T>, check: impl FnOnce(&T) -> Result<(), String>) -> Read<T> {
    if let Ok(Some(value)) = &read {
        check(value)?;
    }
    read
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::tests::merge;
    use crate::events::{Course, CourseType};
    use chrono::{DateTime, Utc};
    use chrono_tz::Europe::London;
    use serde_json::json;

    fn parse_json(kind: EventKind, body: Value) -> Result<Event, Rejection> {
        parse(kind, body.to_string().as_bytes(), London)
    }

    fn ok(kind: EventKind, body: Value) -> Event {
        parse_json(kind, body).expect("a valid body")
    }

    /// The `(pointer, message)` pairs of an invalid body, in body order.
    fn errors(kind: EventKind, body: Value) -> Vec<(String, String)> {
        match parse_json(kind, body) {
            Err(Rejection::Invalid(errors)) => {
                errors.into_iter().map(|e| (e.pointer, e.message)).collect()
            }
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
        expected
            .iter()
            .map(|(p, m)| (p.to_string(), m.to_string()))
            .collect()
    }

    fn utc(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339).unwrap().to_utc()
    }

    fn booking_body() -> Value {
        json!({
            "event_id": "evt-1",
            "booking": {"id": "D555"},
            "course": {"id": "C1001", "type": "classroom", "sync_to_moodle": "yes"},
            "user": {"id": "U9", "moodle_id": "", "first_name": " Ada ",
                     "last_name": "Lovelace", "email": "ada@example.com"},
            "role_id": ""
        })
    }

    #[test]
    fn a_full_course_saved_body() {
        let event = ok(
            EventKind::CourseSaved,
            json!({
                "event_id": 77,
                "course": {
                    "id": " C1001 ", "label": " First Aid at Work ", "type": "Classroom",
                    "sync_to_moodle": "Yes", "moodle_id": "0",
                    "start": "12/01/2027 09:00", "end": "2027-01-14 17:00",
                    "template": {"id": "T77", "name": "First Aid", "aims": "<p>Aims</p>",
                                 "moodle_id": 12},
                    "colour": "blue"
                },
                "unknown": {"deep": [1, 2]}
            }),
        );
        assert_eq!(
            event,
            Event::CourseSaved(CourseSaved {
                event_id: Some("77".into()),
                course: Course {
                    id: "C1001".into(),
                    label: "First Aid at Work".into(),
                    course_type: Some(CourseType::Classroom),
                    sync_to_moodle: Some(true),
                    moodle_id: None,
                    start: Some(utc("2027-01-12T09:00:00Z")),
                    end: Some(utc("2027-01-14T17:00:00Z")),
                    template: Some(Template {
                        id: Some("T77".into()),
                        name: Some("First Aid".into()),
                        aims: Some("<p>Aims</p>".into()),
                        moodle_id: Some(12),
                    }),
                },
            })
        );
    }

    #[test]
    fn a_minimal_body_of_each_kind() {
        let course =
            json!({"course": {"id": 5, "label": "L", "start": "2027-01-12", "end": "2027-01-12"}});
        for kind in [EventKind::CourseSaved, EventKind::CourseDateChanged] {
            assert_eq!(ok(kind, course.clone()).course_id(), "5");
        }
        let booking =
            json!({"course": {"id": 5}, "booking": {"id": 6}, "user": {"id": 7, "moodle_id": 8}});
        for kind in [EventKind::BookingCreated, EventKind::BookingCancelled] {
            let event = ok(kind, booking.clone());
            assert_eq!(event.kind(), kind);
            let booking = event.booking().unwrap();
            assert_eq!(booking.booking, Booking { id: "6".into() });
            assert_eq!(booking.user.moodle_id, Some(8));
        }
    }

    #[test]
    fn a_full_booking_body() {
        let event = ok(EventKind::BookingCreated, booking_body());
        assert_eq!(event.event_id(), Some("evt-1"));
        let booking = event.booking().unwrap();
        assert_eq!(booking.booking, Booking { id: "D555".into() });
        assert_eq!(
            booking.user,
            UserInfo {
                id: "U9".into(),
                moodle_id: None,
                first_name: Some("Ada".into()),
                last_name: Some("Lovelace".into()),
                email: Some("ada@example.com".into()),
            }
        );
        assert_eq!(booking.role_id, None);
        let mut with_role = booking_body();
        with_role["role_id"] = json!("5");
        let event = ok(EventKind::BookingCreated, with_role);
        assert_eq!(event.booking().unwrap().role_id, Some(5));
    }

    #[test]
    fn course_events_ignore_booking_fields() {
        let mut body = booking_body();
        body["course"]["label"] = json!("L");
        body["user"] = json!("not even an object");
        body["role_id"] = json!(-1);
        let event = ok(EventKind::CourseSaved, body);
        assert!(event.booking().is_none());
        assert_eq!(event.canonical_json().get("user"), None);
    }

    #[test]
    fn an_empty_template_is_no_template() {
        let body = json!({"course": {"id": "C1", "label": "L",
            "template": {"id": "", "name": " ", "aims": "", "moodle_id": "0"}}});
        let template = |body| match ok(EventKind::CourseSaved, body) {
            Event::CourseSaved(e) => e.course.template,
            other => panic!("not a course-saved event: {other:?}"),
        };
        assert_eq!(template(body), None);
        let body = json!({"course": {"id": "C1", "label": "L", "template": ""}});
        assert_eq!(template(body), None);
    }

    #[test]
    fn required_fields_per_kind() {
        type Case = (EventKind, Value, &'static [(&'static str, &'static str)]);
        let cases: [Case; 9] = [
            (
                EventKind::CourseSaved,
                json!({}),
                &[("/course", "is required")],
            ),
            (
                EventKind::CourseSaved,
                json!({"course": null}),
                &[("/course", "is required")],
            ),
            (
                EventKind::CourseSaved,
                json!({"course": ""}),
                &[("/course", "is required")],
            ),
            (
                EventKind::CourseSaved,
                json!({"course": {"id": "", "label": "  "}}),
                &[
                    ("/course/id", "is required"),
                    ("/course/label", "is required"),
                ],
            ),
            (
                EventKind::CourseDateChanged,
                json!({"course": {"id": "C1", "start": ""}}),
                &[
                    ("/course/start", "is required"),
                    ("/course/end", "is required"),
                ],
            ),
            (
                EventKind::BookingCancelled,
                json!({"course": {"id": "C1"}}),
                &[("/booking", "is required"), ("/user", "is required")],
            ),
            (
                EventKind::BookingCancelled,
                json!({"course": {"id": "C1"}, "booking": {}, "user": {"id": null}}),
                &[("/booking/id", "is required"), ("/user/id", "is required")],
            ),
            (
                EventKind::BookingCreated,
                json!({"course": {"id": "C1"}, "booking": {"id": "D1"}, "user": {"id": "U1"}}),
                &[
                    ("/user/first_name", "is required"),
                    ("/user/last_name", "is required"),
                    ("/user/email", "is required"),
                ],
            ),
            (
                EventKind::BookingCreated,
                json!({"course": {"id": "C1"}, "booking": {"id": "D1"},
                       "user": {"id": "U1", "moodle_id": "0", "email": ""}}),
                &[
                    ("/user/first_name", "is required"),
                    ("/user/last_name", "is required"),
                    ("/user/email", "is required"),
                ],
            ),
        ];
        for (kind, body, expected) in cases {
            assert_eq!(
                errors(kind, body.clone()),
                pairs(expected),
                "{kind:?} {body}"
            );
        }
    }

    #[test]
    fn optional_where_the_spec_says_so() {
        // Dates are optional for course-saved, the label for other kinds, and
        // the profile for booking-cancelled or a user Moodle already knows.
        ok(
            EventKind::CourseSaved,
            json!({"course": {"id": "C1", "label": "L"}}),
        );
        ok(
            EventKind::CourseDateChanged,
            json!({"course": {"id": "C1", "start": "2027-01-12", "end": "2027-01-13"}}),
        );
        let cancel = json!({"course": {"id": "C1"}, "booking": {"id": "D1"}, "user": {"id": "U1"}});
        ok(EventKind::BookingCancelled, cancel);
        let known = json!({"course": {"id": "C1"}, "booking": {"id": "D1"},
                           "user": {"id": "U1", "moodle_id": "42"}});
        ok(EventKind::BookingCreated, known);
    }

    #[test]
    fn a_bad_user_moodle_id_is_not_also_reported_as_missing_names() {
        let body = json!({"course": {"id": "C1"}, "booking": {"id": "D1"},
                          "user": {"id": "U1", "moodle_id": "abc"}});
        assert_eq!(
            errors(EventKind::BookingCreated, body),
            pairs(&[("/user/moodle_id", "must be a positive integer")])
        );
    }

    #[test]
    fn each_rule_with_its_pointer() {
        let long = |n: usize| "x".repeat(n);
        let cases = [
            (
                json!({"course": {"end": "2027-01-11 09:00"}}),
                "/course/end",
                "must not be before start",
            ),
            (
                json!({"course": {"type": "seminar"}}),
                "/course/type",
                "must be one of classroom, webinar, elearning",
            ),
            (
                json!({"course": {"moodle_id": -1}}),
                "/course/moodle_id",
                "must be a positive integer",
            ),
            (
                json!({"course": {"moodle_id": "1.5"}}),
                "/course/moodle_id",
                "must be a positive integer",
            ),
            (
                json!({"course": {"template": {"moodle_id": "x"}}}),
                "/course/template/moodle_id",
                "must be a positive integer",
            ),
            (
                json!({"role_id": "editingteacher"}),
                "/role_id",
                "must be a positive integer",
            ),
            (
                json!({"course": {"sync_to_moodle": "maybe"}}),
                "/course/sync_to_moodle",
                "must be true or false (or yes/no, 1/0)",
            ),
            (
                json!({"course": {"start": "tomorrow"}}),
                "/course/start",
                "must be RFC 3339 or a local time like 2027-01-12 09:00 or 12/01/2027 09:00",
            ),
            (
                json!({"user": {"email": "ada@example"}}),
                "/user/email",
                "must be an email address like ada@example.com",
            ),
            (
                json!({"user": {"email": format!("{}@example.com", long(90))}}),
                "/user/email",
                "must be at most 100 characters",
            ),
            (
                json!({"course": {"label": long(255)}}),
                "/course/label",
                "must be at most 254 characters",
            ),
            (
                json!({"course": {"label": "Fire <b>Safety</b>"}}),
                "/course/label",
                "must not contain HTML tags",
            ),
            (
                json!({"user": {"first_name": long(101)}}),
                "/user/first_name",
                "must be at most 100 characters",
            ),
            (
                json!({"user": {"last_name": "<i>Lovelace</i>"}}),
                "/user/last_name",
                "must not contain HTML tags",
            ),
            (
                json!({"course": {"id": long(101)}}),
                "/course/id",
                "must be at most 100 characters",
            ),
            (
                json!({"booking": {"id": long(101)}}),
                "/booking/id",
                "must be at most 100 characters",
            ),
            (
                json!({"user": {"id": long(101)}}),
                "/user/id",
                "must be at most 100 characters",
            ),
            (
                json!({"course": {"template": {"id": long(101)}}}),
                "/course/template/id",
                "must be at most 100 characters",
            ),
            (
                json!({"event_id": long(256)}),
                "/event_id",
                "must be at most 255 characters",
            ),
            (
                json!({"course": {"id": 1.5}}),
                "/course/id",
                "must be a string or an integer",
            ),
            (
                json!({"course": {"label": 12}}),
                "/course/label",
                "must be a string",
            ),
            (
                json!({"course": {"template": []}}),
                "/course/template",
                "must be an object",
            ),
            (json!({"booking": "D555"}), "/booking", "must be an object"),
            (json!({"user": ["U9"]}), "/user", "must be an object"),
            (
                json!({"user": {"first_name": "A\u{0}"}}),
                "/user/first_name",
                "must not contain a NUL character",
            ),
        ];
        for (patch, pointer, message) in cases {
            let mut body = booking_body();
            body["course"]["label"] = json!("L");
            body["course"]["start"] = json!("2027-01-12 09:00");
            merge(&mut body, &patch);
            assert_eq!(
                errors(EventKind::BookingCreated, body),
                pairs(&[(pointer, message)]),
                "{patch}"
            );
        }
        assert_eq!(
            errors(EventKind::CourseSaved, json!({"course": "C1001"})),
            pairs(&[("/course", "must be an object")])
        );
    }

    #[test]
    fn end_equal_to_start_is_fine() {
        let body = json!({"course": {"id": "C1", "start": "12/01/2027 09:00",
                                     "end": "2027-01-12T09:00:00Z"}});
        ok(EventKind::CourseDateChanged, body);
    }

    #[test]
    fn every_bad_field_is_reported_at_once() {
        let body = json!({
            "event_id": {"x": 1},
            "course": {"id": "", "label": "<b>", "type": "online", "sync_to_moodle": "perhaps",
                       "moodle_id": -2, "start": "2027-01-12 10:00", "end": "2027-01-12 09:00",
                       "template": "T77"},
            "booking": {"id": true},
            "user": {"id": "U9", "first_name": "", "last_name": "L", "email": "ada at example.com"},
            "role_id": "0.5"
        });
        assert_eq!(
            errors(EventKind::BookingCreated, body),
            pairs(&[
                ("/event_id", "must be a string or an integer"),
                ("/course/id", "is required"),
                ("/course/label", "must not contain HTML tags"),
                (
                    "/course/type",
                    "must be one of classroom, webinar, elearning"
                ),
                (
                    "/course/sync_to_moodle",
                    "must be true or false (or yes/no, 1/0)"
                ),
                ("/course/moodle_id", "must be a positive integer"),
                ("/course/end", "must not be before start"),
                ("/course/template", "must be an object"),
                ("/booking/id", "must be a string or an integer"),
                ("/user/first_name", "is required"),
                (
                    "/user/email",
                    "must be an email address like ada@example.com"
                ),
                ("/role_id", "must be a positive integer"),
            ])
        );
    }

    #[test]
    fn malformed_bodies() {
        let cases: [(&[u8], &str); 6] = [
            (
                b"",
                "invalid JSON: EOF while parsing a value at line 1 column 0",
            ),
            (
                b"{\"course\": ",
                "invalid JSON: EOF while parsing a value at line 1 column 11",
            ),
            (
                b"course=C1",
                "invalid JSON: expected value at line 1 column 1",
            ),
            (
                b"[{\"course\": {}}]",
                "the body must be a JSON object, not an array",
            ),
            (b"\"C1\"", "the body must be a JSON object, not a string"),
            (b"null", "the body must be a JSON object, not null"),
        ];
        for (body, reason) in cases {
            assert_eq!(
                parse(EventKind::CourseSaved, body, London),
                Err(Rejection::Malformed(reason.into())),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn a_byte_order_mark_is_skipped() {
        let body = b"\xEF\xBB\xBF{\"course\": {\"id\": \"C1\", \"label\": \"L\"}}";
        assert!(parse(EventKind::CourseSaved, body, London).is_ok());
    }
}
