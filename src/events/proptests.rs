//! Fuzzing the lenient parser (issue 10): any bytes, and any JSON built from
//! the real field names and tricky values, for every kind and a few time
//! zones. Nothing may panic; what is accepted can be hashed, keyed and
//! serialised (what admission does with it next).

use proptest::prelude::*;
use serde_json::{Map, Value};

use super::{Event, EventKind};

const ZONES: [chrono_tz::Tz; 4] = [
    chrono_tz::Europe::London,
    chrono_tz::America::New_York,
    chrono_tz::Australia::Lord_Howe, // a 30-minute daylight-saving shift
    chrono_tz::UTC,
];

const FIELDS: &[&str] = &[
    "event_id",
    "course",
    "id",
    "label",
    "type",
    "sync_to_moodle",
    "moodle_id",
    "start",
    "end",
    "template",
    "name",
    "aims",
    "booking",
    "user",
    "first_name",
    "last_name",
    "email",
    "role_id",
];

/// Strings that have broken lenient parsers somewhere.
fn tricky_string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just(" ".into()),
        Just("0".into()),
        Just("-1".into()),
        Just("+42".into()),
        Just("9223372036854775808".into()),
        Just("1e400".into()),
        Just("NaN".into()),
        Just("yes".into()),
        Just("FALSE".into()),
        Just("eLearning".into()),
        Just("2027-01-12T09:00:00Z".into()),
        Just("2027-03-28 01:30".into()),
        Just("31/02/2027 25:61".into()),
        Just("29/02/2028 09:00:60".into()),
        Just("+275760-09-13T00:00:00Z".into()),
        Just("9999-12-31 23:59:59".into()),
        Just("2027-10-31 01:30".into()),
        Just("a@b.c".into()),
        Just("<b>x</b>".into()),
        Just("\u{0}".into()),
        Just("\u{feff}x".into()),
        Just("é".repeat(300)),
        ".{0,40}",
        "[0-9/: T+-]{0,24}",
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        tricky_string().prop_map(Value::from),
    ]
}

/// JSON of any shape whose object keys are mostly the parser's own.
fn json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![4 => prop::sample::select(FIELDS).prop_map(str::to_string), 1 => ".{0,8}"],
                    inner
                ),
                0..8
            )
            .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Parses for every kind and zone; an accepted event goes through what
/// admission does with it.
fn parse_everywhere(body: &[u8]) {
    for kind in EventKind::ALL {
        for tz in ZONES {
            if let Ok(event) = Event::parse(kind, body, tz) {
                let _ = event.body_hash();
                let _ = event.entity();
                let _ = event.ordering_keys(super::Known::default());
                let _ = event.ordering_keys(super::Known {
                    course: true,
                    user: true,
                });
                let _ = event.event_id();
                assert!(serde_json::to_value(&event).is_ok());
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..256)) {
        parse_everywhere(&body);
    }

    #[test]
    fn any_event_shaped_json_never_panics(course in json(), booking in json(), user in json(), extra in json()) {
        let body = serde_json::json!({
            "event_id": extra,
            "course": course,
            "booking": booking,
            "user": user,
            "role_id": 0,
        });
        parse_everywhere(body.to_string().as_bytes());
    }

    #[test]
    fn any_json_never_panics(body in json()) {
        parse_everywhere(body.to_string().as_bytes());
    }
}
