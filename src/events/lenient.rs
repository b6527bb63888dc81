//! One lenient reader per value type (SPEC §2 "Event bodies").
//!
//! Bodies are built by accessplanit workflow merge fields, so a value arrives
//! as whatever the workflow author typed around the merge field: usually a
//! string, sometimes a bare number or boolean, an empty string when the record
//! has no value. Each reader accepts every reasonable spelling of its type and
//! answers with one of:
//! - `Ok(Some(value))`: present, normalised (strings trimmed);
//! - `Ok(None)`: absent (`null`, or a string that is empty after trimming);
//! - `Err(message)`: a short sentence the caller files under the field's pointer.
//!
//! Readers know nothing about pointers or which fields are required: that is
//! the walker's business (`parse.rs`).

use serde_json::{Map, Value};

use super::CourseType;

/// What a reader makes of one value: present, absent, or wrong (and why).
pub(super) type Read<T> = Result<Option<T>, String>;

const NOT_A_STRING: &str = "must be a string";
const NOT_AN_ID: &str = "must be a string or an integer";
const NOT_A_FLAG: &str = "must be true or false (or yes/no, 1/0)";
const NOT_A_MOODLE_ID: &str = "must be a positive integer";
const NOT_A_COURSE_TYPE: &str = "must be one of classroom, webinar, elearning";
const NOT_AN_OBJECT: &str = "must be an object";
/// PostgreSQL refuses U+0000 in `text` and `jsonb`, so a body carrying one would
/// pass the door and then fail to be stored (a 500 instead of a 422).
const HAS_NUL: &str = "must not contain a NUL character";

/// A text value, trimmed. Numbers are not text: only IDs accept them.
pub(super) fn text(value: &Value) -> Read<String> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => trimmed(s),
        _ => Err(NOT_A_STRING.into()),
    }
}

/// An accessplanit ID: a string or an integer, kept as a trimmed string.
pub(super) fn id(value: &Value) -> Read<String> {
    match value {
        // Integers only: `1.5` or `1e3` are not IDs anyone meant.
        Value::Number(n) if n.is_i64() || n.is_u64() => Ok(Some(n.to_string())),
        Value::Null | Value::String(_) => text(value),
        _ => Err(NOT_AN_ID.into()),
    }
}

/// A boolean: `true/false`, `"true"/"false"`, `"yes"/"no"`, `"1"/"0"` (any
/// case, surrounding spaces ignored) or the numbers `1`/`0`.
pub(super) fn flag(value: &Value) -> Read<bool> {
    let word = match value {
        Value::Bool(b) => return Ok(Some(*b)),
        Value::Number(n) => n.to_string(),
        Value::Null | Value::String(_) => match text(value)? {
            Some(word) => word.to_ascii_lowercase(),
            None => return Ok(None),
        },
        _ => return Err(NOT_A_FLAG.into()),
    };
    match word.as_str() {
        "true" | "yes" | "1" => Ok(Some(true)),
        "false" | "no" | "0" => Ok(Some(false)),
        _ => Err(NOT_A_FLAG.into()),
    }
}

/// A Moodle ID (course, user, role): a positive integer, as a number or a
/// numeric string. `0` and `"0"` mean "none", as an empty merge field of a
/// numeric accessplanit field renders as either.
pub(super) fn moodle_id(value: &Value) -> Read<i64> {
    let number = match value {
        Value::Number(n) => n.as_i64(),
        Value::Null | Value::String(_) => match text(value)? {
            Some(digits) => digits.parse::<i64>().ok(),
            None => return Ok(None),
        },
        _ => None,
    };
    match number {
        Some(0) => Ok(None),
        Some(n) if n > 0 => Ok(Some(n)),
        _ => Err(NOT_A_MOODLE_ID.into()),
    }
}

/// The course type: `classroom`, `webinar` or `elearning`, any case.
pub(super) fn course_type(value: &Value) -> Read<CourseType> {
    let Some(word) = text(value).map_err(|_| NOT_A_COURSE_TYPE)? else {
        return Ok(None);
    };
    match word.to_ascii_lowercase().as_str() {
        "classroom" => Ok(Some(CourseType::Classroom)),
        "webinar" => Ok(Some(CourseType::Webinar)),
        "elearning" => Ok(Some(CourseType::Elearning)),
        _ => Err(NOT_A_COURSE_TYPE.into()),
    }
}

/// A nested object. An empty string counts as absent like everywhere else.
pub(super) fn object(value: &Value) -> Read<&Map<String, Value>> {
    match value {
        Value::Object(map) => Ok(Some(map)),
        Value::Null | Value::String(_) => match text(value) {
            Ok(None) => Ok(None),
            _ => Err(NOT_AN_OBJECT.into()),
        },
        _ => Err(NOT_AN_OBJECT.into()),
    }
}

/// A string trimmed, `None` when nothing is left.
fn trimmed(s: &str) -> Read<String> {
    let s = s.trim();
    if s.contains('\0') {
        Err(HAS_NUL.into())
    } else if s.is_empty() {
        Ok(None)
    } else {
        Ok(Some(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Runs `read` over each `(input, expected)` row, naming the row that fails.
    fn table<T: PartialEq + std::fmt::Debug>(
        read: fn(&Value) -> Read<T>,
        rows: &[(Value, Result<Option<T>, &str>)],
    ) {
        for (input, expected) in rows {
            let got = read(input);
            assert_eq!(
                got.as_ref().map_err(String::as_str),
                expected.as_ref().map_err(|m| *m),
                "input {input}"
            );
        }
    }

    #[test]
    fn text_is_trimmed_and_blank_is_absent() {
        table(
            text,
            &[
                (json!("  First Aid \n"), Ok(Some("First Aid".into()))),
                (json!(""), Ok(None)),
                (json!("   "), Ok(None)),
                (json!(null), Ok(None)),
                (json!(12), Err(NOT_A_STRING)),
                (json!(true), Err(NOT_A_STRING)),
                (json!(["a"]), Err(NOT_A_STRING)),
                (json!({}), Err(NOT_A_STRING)),
                (json!("a\u{0}b"), Err(HAS_NUL)),
            ],
        );
    }

    #[test]
    fn ids_are_strings_or_integers() {
        table(
            id,
            &[
                (json!("C1001"), Ok(Some("C1001".into()))),
                (json!(" C1001 "), Ok(Some("C1001".into()))),
                (json!(1001), Ok(Some("1001".into()))),
                (json!("1001"), Ok(Some("1001".into()))),
                (json!(u64::MAX), Ok(Some(u64::MAX.to_string()))),
                (json!(""), Ok(None)),
                (json!(" "), Ok(None)),
                (json!(null), Ok(None)),
                (json!(1.5), Err(NOT_AN_ID)),
                (json!(true), Err(NOT_AN_ID)),
                (json!({"id": 1}), Err(NOT_AN_ID)),
            ],
        );
    }

    #[test]
    fn flags_take_every_spelling() {
        let mut rows = vec![
            (json!(true), Ok(Some(true))),
            (json!(false), Ok(Some(false))),
            (json!(1), Ok(Some(true))),
            (json!(0), Ok(Some(false))),
            (json!(""), Ok(None)),
            (json!("  "), Ok(None)),
            (json!(null), Ok(None)),
            (json!("maybe"), Err(NOT_A_FLAG)),
            (json!("on"), Err(NOT_A_FLAG)),
            (json!(2), Err(NOT_A_FLAG)),
            (json!(1.0), Err(NOT_A_FLAG)),
            (json!(-1), Err(NOT_A_FLAG)),
            (json!([true]), Err(NOT_A_FLAG)),
        ];
        for (word, meaning) in [
            ("true", true),
            ("TRUE", true),
            ("True", true),
            (" yes ", true),
            ("Yes", true),
            ("YES", true),
            ("1", true),
            (" 1 ", true),
            ("false", false),
            ("False", false),
            ("no", false),
            ("NO", false),
            ("0", false),
        ] {
            rows.push((json!(word), Ok(Some(meaning))));
        }
        table(flag, &rows);
    }

    #[test]
    fn moodle_ids_are_positive_and_zero_means_none() {
        table(
            moodle_id,
            &[
                (json!(42), Ok(Some(42))),
                (json!("42"), Ok(Some(42))),
                (json!(" 42 "), Ok(Some(42))),
                (json!(0), Ok(None)),
                (json!("0"), Ok(None)),
                (json!("00"), Ok(None)),
                (json!(""), Ok(None)),
                (json!(null), Ok(None)),
                (json!(-3), Err(NOT_A_MOODLE_ID)),
                (json!("-3"), Err(NOT_A_MOODLE_ID)),
                (json!(4.5), Err(NOT_A_MOODLE_ID)),
                (json!("4.5"), Err(NOT_A_MOODLE_ID)),
                (json!("42abc"), Err(NOT_A_MOODLE_ID)),
                (json!("abc"), Err(NOT_A_MOODLE_ID)),
                (json!(true), Err(NOT_A_MOODLE_ID)),
                (json!(u64::MAX), Err(NOT_A_MOODLE_ID)),
            ],
        );
    }

    #[test]
    fn course_types_in_any_case() {
        table(
            course_type,
            &[
                (json!("classroom"), Ok(Some(CourseType::Classroom))),
                (json!(" Webinar "), Ok(Some(CourseType::Webinar))),
                (json!("eLearning"), Ok(Some(CourseType::Elearning))),
                (json!("ELEARNING"), Ok(Some(CourseType::Elearning))),
                (json!(""), Ok(None)),
                (json!(null), Ok(None)),
                (json!("e-learning"), Err(NOT_A_COURSE_TYPE)),
                (json!(3), Err(NOT_A_COURSE_TYPE)),
            ],
        );
    }

    #[test]
    fn objects_and_their_absence() {
        let map = json!({"id": "C1"});
        assert_eq!(object(&map), Ok(map.as_object()));
        assert_eq!(object(&json!(null)), Ok(None));
        assert_eq!(object(&json!(" ")), Ok(None));
        for wrong in [json!("x"), json!(1), json!([]), json!(true)] {
            assert_eq!(object(&wrong), Err(NOT_AN_OBJECT.into()), "input {wrong}");
        }
    }
}
