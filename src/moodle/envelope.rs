//! Reading one HTTP answer of `server.php`: a JSON value, or the typed error it means.
//!
//! HTTP 200 proves nothing (moodle-ws.md 1.6, 1.8): Moodle answers its errors with 200
//! and an `{exception, errorcode, message}` object; web servers and proxies answer with
//! other statuses, and a wrong URL answers with an HTML page.

use std::time::Duration;

use serde_json::Value;

use super::MoodleError;
use super::error::is_code;
use super::sanitize::{self, MAX_DEBUGINFO, MAX_MESSAGE};

/// The parts of an HTTP answer this module looks at.
pub(crate) struct Answer<'a> {
    pub status: u16,
    pub content_type: Option<&'a str>,
    pub retry_after: Option<&'a str>,
    pub body: &'a [u8],
}

/// The JSON body of a successful call, or the error the answer means.
pub(crate) fn read(function: &str, answer: Answer<'_>) -> Result<Value, MoodleError> {
    if answer.status != 200 {
        // Only these two ask the client to come back later (CLI maintenance, rate limits).
        let retry_after = match answer.status {
            429 | 503 => answer.retry_after.and_then(parse_retry_after),
            _ => None,
        };
        return Err(MoodleError::Status {
            function: function.into(),
            status: answer.status,
            retry_after,
        });
    }
    let content_type = answer.content_type.map(str::trim).unwrap_or("");
    let declared_json = content_type.to_ascii_lowercase().contains("json");
    if !content_type.is_empty() && !declared_json {
        return Err(not_json(function, content_type));
    }
    let value: Value = match serde_json::from_slice(answer.body) {
        Ok(value) => value,
        // No content type and no JSON: a page from something that is not Moodle's WS.
        Err(_) if !declared_json => return Err(not_json(function, content_type)),
        // Declared JSON but broken, e.g. PHP notices printed before it (debug display on).
        Err(e) => {
            let start = String::from_utf8_lossy(&answer.body[..answer.body.len().min(120)]);
            return Err(MoodleError::Unexpected {
                function: function.into(),
                detail: format!(
                    "the body is not valid JSON ({e}); it starts with: {}",
                    sanitize::clean_line(&start, 80)
                ),
            });
        }
    };
    match value {
        Value::Object(ref fields) if fields.contains_key("exception") => {
            Err(exception(function, fields))
        }
        value => Ok(value),
    }
}

fn not_json(function: &str, content_type: &str) -> MoodleError {
    MoodleError::NotJson {
        function: function.into(),
        content_type: sanitize::clean_line(content_type, 100),
    }
}

/// Moodle's error object. `errorcode` may be missing (PHP errors), `null` (old
/// versions) or not a code at all (the password policy puts HTML there): only a real
/// code is kept, so classification on it is safe.
fn exception(function: &str, fields: &serde_json::Map<String, Value>) -> MoodleError {
    let text = |key: &str| fields.get(key).and_then(Value::as_str);
    let raw_message = text("message").unwrap_or("");
    let (errorcode, message) = match text("errorcode") {
        Some(code) if is_code(code) => (Some(code.to_owned()), raw_message),
        Some(odd) if raw_message.is_empty() => (None, odd),
        _ => (None, raw_message),
    };
    MoodleError::Exception {
        function: function.into(),
        exception: sanitize::clean_line(text("exception").unwrap_or("unknown"), 200),
        errorcode,
        message: sanitize::clean_line(message, MAX_MESSAGE),
        debuginfo: text("debuginfo").map(|d| sanitize::clean_line(d, MAX_DEBUGINFO)),
    }
}

/// `Retry-After` as delta-seconds or an HTTP date (a date in the past means now).
fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::moodle::ErrorClass;

    fn json(body: &str) -> Answer<'_> {
        Answer {
            status: 200,
            content_type: Some("application/json"),
            retry_after: None,
            body: body.as_bytes(),
        }
    }

    fn err(answer: Answer<'_>) -> MoodleError {
        read("enrol_manual_enrol_users", answer).unwrap_err()
    }

    #[test]
    fn success_bodies_pass_through() {
        assert_eq!(read("f", json("null")).unwrap(), Value::Null);
        assert_eq!(
            read("f", json(r#"{"warnings":[]}"#)).unwrap(),
            serde_json::json!({"warnings": []})
        );
        // Moodle escapes `/` and non-ASCII text.
        assert_eq!(
            read("f", json(r#"[{"id":2,"shortname":"A\/B \u00e9"}]"#)).unwrap()[0]["shortname"],
            "A/B é"
        );
    }

    /// Every error envelope recorded from Moodle 4.5 (moodle-fixtures, one per distinct
    /// function and body; the 1.6 kB debug SQL one left out): its class, and a clean
    /// one-line text with a fix exactly for configuration errors.
    #[test]
    fn recorded_error_envelopes() {
        use ErrorClass::*;
        let rows: &[(&str, &str, ErrorClass, &str)] = &[
            (
                "core_completion_get_course_completion_status/completion_disabled",
                "core_completion_get_course_completion_status",
                Configuration,
                r#"{"exception":"core\\exception\\moodle_exception","errorcode":"cannotviewreport","message":"You cannot view this report"}"#,
            ),
            (
                "core_completion_get_course_completion_status/enabled_no_criteria",
                "core_completion_get_course_completion_status",
                Data,
                r#"{"exception":"core\\exception\\moodle_exception","errorcode":"nocriteriaset","message":"No completion criteria set for this course"}"#,
            ),
            (
                "core_completion_get_course_completion_status/unknown_course",
                "core_completion_get_course_completion_status",
                Data,
                r#"{"exception":"dml_missing_record_exception","errorcode":"invalidrecord","message":"Can't find data record in database table course."}"#,
            ),
            (
                "core_completion_get_course_completion_status/user_not_enrolled",
                "core_completion_get_course_completion_status",
                Data,
                r#"{"exception":"core\\exception\\moodle_exception","errorcode":"usernotenroled","message":"User is not enrolled in this course"}"#,
            ),
            (
                "core_course_create_courses/batch_second_fails",
                "core_course_create_courses",
                Conflict,
                r#"{"exception":"core\\exception\\moodle_exception","errorcode":"shortnametaken","message":"Short name is already used for another course (APIT-C1-52c2f4)"}"#,
            ),
            (
                "core_course_create_courses/blank_shortname",
                "core_course_create_courses",
                Data,
                r#"{"exception":"core\\exception\\moodle_exception","errorcode":"errorinvalidparam","message":"The param \"shortname\" is invalid."}"#,
            ),
            (
                "core_course_create_courses/duplicate_idnumber",
                "core_course_create_courses",
                Conflict,
                r#"{"exception":"core\\exception\\moodle_exception","errorcode":"courseidnumbertaken","message":"ID number is already used for another course (apit-ev-1-52c2f4)"}"#,
            ),
            (
                "core_course_create_courses/duplicate_shortname__debug",
                "core_course_create_courses",
                Conflict,
                r#"{"exception":"core\\exception\\moodle_exception","errorcode":"shortnametaken","message":"Short name is already used for another course (dbg-52c302)"}"#,
            ),
            (
                "core_course_create_courses/enddate_before_startdate",
                "core_course_create_courses",
                Data,
                r#"{"exception":"core\\exception\\moodle_exception","errorcode":"enddatebeforestartdate","message":"The course end date must be after the start date."}"#,
            ),
            (
                "core_course_create_courses/overlong_fullname",
                "core_course_create_courses",
                Transient,
                r#"{"exception":"dml_write_exception","errorcode":"dmlwriteexception","message":"Error writing to database"}"#,
            ),
            (
                "core_course_create_courses/unknown_categoryid",
                "core_course_create_courses",
                Configuration,
                r#"{"exception":"core\\exception\\moodle_exception","errorcode":"errorcatcontextnotvalid","message":"You cannot execute functions in the category context (category id:999999). The context error message was: Invalid parameter value detected"}"#,
            ),
            (
                "core_course_get_courses_by_field/by_ids_with_unknown_id",
                "core_course_get_courses_by_field",
                Defect,
                r#"{"exception":"Error","message":"Attempt to assign property \"contextvalidated\" on null"}"#,
            ),
            (
                "core_course_get_courses_by_field/invalid_field",
                "core_course_get_courses_by_field",
                Data,
                r#"{"exception":"core\\exception\\invalid_parameter_exception","errorcode":"invalidparameter","message":"Invalid parameter value detected"}"#,
            ),
            (
                "core_enrol_get_enrolled_users/unknown_course",
                "core_enrol_get_enrolled_users",
                Data,
                r#"{"exception":"dml_missing_record_exception","errorcode":"invalidrecord","message":"Can't find data record in database table course."}"#,
            ),
            (
                "core_role_assign_roles/role_not_assignable",
                "core_role_assign_roles",
                Data,
                r#"{"exception":"core\\exception\\invalid_parameter_exception","errorcode":"invalidparameter","message":"Invalid parameter value detected"}"#,
            ),
            (
                "core_user_create_users/batch_one_bad",
                "core_user_create_users",
                Data,
                r#"{"exception":"core\\exception\\invalid_parameter_exception","errorcode":"invalidparameter","message":"Invalid parameter value detected"}"#,
            ),
            (
                "core_user_create_users/invalid_username__debug",
                "core_user_create_users",
                Data,
                r#"{"exception":"core\\exception\\invalid_parameter_exception","errorcode":"invalidparameter","message":"Invalid parameter value detected","debuginfo":"users => Invalid parameter value detected: username => Invalid parameter value detected: Invalid external api parameter: the value is \"Bad User52c302\", the server was expecting \"username\" type"}"#,
            ),
            (
                "core_user_create_users/weak_password",
                "core_user_create_users",
                Defect,
                r#"{"exception":"core\\exception\\moodle_exception","errorcode":"<div>Passwords must be at least 8 characters long.</div><div>Passwords must have at least 1 digit(s).</div><div>Passwords must have at least 1 upper case letter(s).</div><div>The password must have at least 1 special character(s) such as *, -, or #.</div>","message":"error/<div>Passwords must be at least 8 characters long.</div><div>Passwords must have at least 1 digit(s).</div><div>Passwords must have at least 1 upper case letter(s).</div><div>The password must have at least 1 special character(s) such as *, -, or #.</div>"}"#,
            ),
            (
                "core_user_get_users_by_field/invalid_field",
                "core_user_get_users_by_field",
                Data,
                r#"{"exception":"core\\exception\\coding_exception","errorcode":"codingerror","message":"Coding error detected, it must be fixed by a programmer: invalid field parameter"}"#,
            ),
            (
                "core_user_get_users_by_field/username_other_case",
                "core_user_get_users_by_field",
                Data,
                r#"{"exception":"core\\exception\\invalid_parameter_exception","errorcode":"invalidparameter","message":"Invalid parameter value detected"}"#,
            ),
            (
                "enrol_manual_enrol_users/batch_one_bad",
                "enrol_manual_enrol_users",
                Configuration,
                r#"{"exception":"core\\exception\\moodle_exception","errorcode":"wsusercannotassign","message":"You don't have the permission to assign this role (1) to this user (6) in this course (6)."}"#,
            ),
            (
                "enrol_manual_enrol_users/role_not_assignable",
                "enrol_manual_enrol_users",
                Configuration,
                r#"{"exception":"core\\exception\\moodle_exception","errorcode":"wsusercannotassign","message":"You don't have the permission to assign this role (1) to this user (6) in this course (2)."}"#,
            ),
            (
                "enrol_manual_enrol_users/role_unknown",
                "enrol_manual_enrol_users",
                Configuration,
                r#"{"exception":"core\\exception\\moodle_exception","errorcode":"wsusercannotassign","message":"You don't have the permission to assign this role (999) to this user (6) in this course (2)."}"#,
            ),
            (
                "enrol_manual_enrol_users/unknown_course",
                "enrol_manual_enrol_users",
                Data,
                r#"{"exception":"core\\exception\\invalid_parameter_exception","errorcode":"invalidparameter","message":"Invalid parameter value detected"}"#,
            ),
            (
                "enrol_manual_enrol_users/unknown_course__debug",
                "enrol_manual_enrol_users",
                Data,
                r#"{"exception":"core\\exception\\invalid_parameter_exception","errorcode":"invalidparameter","message":"Invalid parameter value detected","debuginfo":"Context does not exist"}"#,
            ),
            (
                "enrol_manual_enrol_users/unknown_user",
                "enrol_manual_enrol_users",
                Data,
                r#"{"exception":"TypeError","message":"core\\user::get_name_placeholders(): Argument #1 ($user) must be of type stdClass, bool given, called in <moodle-dir>/lib/enrollib.php on line 3677"}"#,
            ),
            (
                "enrol_manual_unenrol_users/unknown_course",
                "enrol_manual_unenrol_users",
                Data,
                r#"{"exception":"dml_missing_record_exception","errorcode":"invalidrecord","message":"Can't find data record in database table course."}"#,
            ),
            (
                "enrol_manual_unenrol_users/unknown_user",
                "enrol_manual_unenrol_users",
                Data,
                r#"{"exception":"core\\exception\\invalid_parameter_exception","errorcode":"invalidparameter","message":"Invalid parameter value detected"}"#,
            ),
            (
                "gradereport_overview_get_course_grades/unknown_user",
                "gradereport_overview_get_course_grades",
                Data,
                r#"{"exception":"dml_missing_record_exception","errorcode":"invaliduser","message":"Invalid user"}"#,
            ),
            (
                "gradereport_user_get_grade_items/unknown_course",
                "gradereport_user_get_grade_items",
                Data,
                r#"{"exception":"dml_missing_record_exception","errorcode":"invalidrecord","message":"Can't find data record in database table course."}"#,
            ),
            (
                "rest_envelope/function_not_in_service",
                "enrol_manual_enrol_users",
                Configuration,
                r#"{"exception":"webservice_access_exception","errorcode":"accessexception","message":"Access control exception"}"#,
            ),
            (
                "rest_envelope/invalid_token",
                "core_webservice_get_site_info",
                Configuration,
                r#"{"exception":"core\\exception\\moodle_exception","errorcode":"invalidtoken","message":"Invalid token - token not found"}"#,
            ),
            (
                "rest_envelope/missing_capability",
                "core_course_create_courses",
                Configuration,
                r#"{"exception":"core\\exception\\required_capability_exception","errorcode":"nopermissions","message":"Sorry, but you do not currently have permissions to do that (Create courses)."}"#,
            ),
            (
                "rest_envelope/missing_required_parameter",
                "core_course_create_courses",
                Data,
                r#"{"exception":"core\\exception\\invalid_parameter_exception","errorcode":"invalidparameter","message":"Invalid parameter value detected"}"#,
            ),
            (
                "rest_envelope/missing_required_parameter__debug",
                "core_course_create_courses",
                Data,
                r#"{"exception":"core\\exception\\invalid_parameter_exception","errorcode":"invalidparameter","message":"Invalid parameter value detected","debuginfo":"courses => Invalid parameter value detected: Missing required key in single structure: shortname"}"#,
            ),
            (
                "rest_envelope/missing_rest_use_capability",
                "core_webservice_get_site_info",
                Configuration,
                r#"{"exception":"webservice_access_exception","errorcode":"accessexception","message":"Access control exception"}"#,
            ),
            (
                "rest_envelope/unknown_wsfunction",
                "core_does_not_exist",
                Configuration,
                r#"{"exception":"dml_missing_record_exception","errorcode":"invalidrecord","message":"Can't find data record in database table external_functions."}"#,
            ),
            (
                "rest_envelope/unknown_wsfunction__debug",
                "core_does_not_exist",
                Configuration,
                r#"{"exception":"dml_missing_record_exception","errorcode":"invalidrecord","message":"Can't find data record in database table external_functions.","debuginfo":"SELECT * FROM {external_functions} WHERE name = ?\n[array (\n  0 => 'core_does_not_exist',\n)]"}"#,
            ),
        ];
        for (fixture, function, class, body) in rows {
            let error = read(function, json(body)).unwrap_err();
            assert_eq!(error.class(), *class, "{fixture}: {error:?}");
            assert_eq!(error.fix().is_some(), *class == Configuration, "{fixture}");
            let text = error.to_string();
            assert!(
                text.starts_with(&format!("{function}: ")),
                "{fixture}: {text}"
            );
            assert!(
                !text.contains('\n') && !text.contains('<'),
                "{fixture}: {text}"
            );
        }
    }

    /// fixture enrol_manual_enrol_users/unknown_user.json, with a real server path.
    #[test]
    fn typeerror_without_errorcode_loses_its_path() {
        let body = r#"{"exception":"TypeError","message":"core\\user::get_name_placeholders(): Argument #1 ($user) must be of type stdClass, bool given, called in \/var\/www\/moodle\/lib\/enrollib.php on line 3677"}"#;
        let error = err(json(body));
        match &error {
            MoodleError::Exception {
                exception,
                errorcode,
                message,
                ..
            } => {
                assert_eq!(exception, "TypeError");
                assert_eq!(errorcode, &None);
                assert!(
                    message.ends_with("called in [path] on line 3677"),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(error.class(), ErrorClass::Data);
        assert!(!error.to_string().contains("/var/www"));
    }

    /// fixture core_user_create_users/weak_password.json: HTML where the code should be.
    #[test]
    fn html_errorcode_is_not_a_code() {
        let body = r#"{"exception":"core\\exception\\moodle_exception","errorcode":"<div>Passwords must be at least 8 characters long.<\/div><div>Passwords must have at least 1 digit(s).<\/div>","message":"error\/<div>Passwords must be at least 8 characters long.<\/div><div>Passwords must have at least 1 digit(s).<\/div>"}"#;
        let error = read("core_user_create_users", json(body)).unwrap_err();
        assert_eq!(error.errorcode(), None);
        assert_eq!(error.class(), ErrorClass::Defect);
        assert_eq!(
            error.to_string(),
            "core_user_create_users: Moodle failed with an internal error (Moodle \
             moodle_exception: error/ Passwords must be at least 8 characters long. Passwords \
             must have at least 1 digit(s))"
        );
    }

    /// fixtures rest_envelope/unknown_wsfunction{,__debug}.json
    #[test]
    fn unknown_function_is_configuration_and_debuginfo_is_kept_clean() {
        let plain = r#"{"exception":"dml_missing_record_exception","errorcode":"invalidrecord","message":"Can't find data record in database table external_functions."}"#;
        assert_eq!(err(json(plain)).class(), ErrorClass::Configuration);
        let debug = r#"{"exception":"dml_missing_record_exception","errorcode":"invalidrecord","message":"Can't find data record in database table external_functions.","debuginfo":"SELECT * FROM {external_functions} WHERE name = ?\n[array (\n  0 => 'core_does_not_exist',\n)]"}"#;
        match err(json(debug)) {
            MoodleError::Exception { debuginfo, .. } => assert_eq!(
                debuginfo.as_deref(),
                Some(
                    "SELECT * FROM {external_functions} WHERE name = ? [array ( 0 => \
                     'core_does_not_exist', )]"
                )
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn null_errorcode_of_old_versions_is_none() {
        let body = r#"{"exception":"Error","errorcode":null,"message":"Attempt to assign property \"contextvalidated\" on null"}"#;
        let error = err(json(body));
        assert_eq!(error.errorcode(), None);
        assert_eq!(error.class(), ErrorClass::Defect);
    }

    /// fixtures rest_envelope/webservices_disabled.json, wrong_path_site_root.json,
    /// error_default_format_xml.json, and a CLI-maintenance 503.
    #[test]
    fn non_json_answers() {
        let disabled = err(Answer {
            status: 403,
            content_type: Some("text/html; charset=utf-8"),
            retry_after: None,
            body: b"",
        });
        assert_eq!(disabled.class(), ErrorClass::Configuration);
        assert!(disabled.fix().unwrap().contains("Enable web services"));

        let page = err(Answer {
            status: 200,
            content_type: Some("text/html; charset=utf-8"),
            retry_after: None,
            body: b"<!DOCTYPE html>\n<html><head><title>Home | apitrig</title>",
        });
        assert!(matches!(page, MoodleError::NotJson { .. }));
        assert_eq!(page.class(), ErrorClass::Configuration);

        let xml = err(Answer {
            status: 200,
            content_type: Some("application/xml; charset=utf-8"),
            retry_after: None,
            body: b"<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<EXCEPTION class=\"core\\exception\\moodle_exception\">\n<ERRORCODE>invalidtoken</ERRORCODE>",
        });
        assert!(matches!(xml, MoodleError::NotJson { .. }));
        assert_eq!(xml.class(), ErrorClass::Configuration);

        let maintenance = err(Answer {
            status: 503,
            content_type: Some("text/html"),
            retry_after: Some("300"),
            body: b"<html>upgrade</html>",
        });
        assert_eq!(maintenance.retry_after(), Some(Duration::from_secs(300)));
        assert_eq!(maintenance.class(), ErrorClass::Transient);

        let no_type = err(Answer {
            status: 200,
            content_type: None,
            retry_after: None,
            body: b"<html></html>",
        });
        assert!(matches!(no_type, MoodleError::NotJson { .. }));
        assert_eq!(
            read(
                "f",
                Answer {
                    content_type: None,
                    ..json("null")
                }
            )
            .unwrap(),
            Value::Null
        );
    }

    #[test]
    fn broken_json_is_a_defect_that_shows_its_start() {
        let error = err(json(
            "<br />\n<b>Notice</b>: Undefined index in <b>/var/www/moodle/lib/x.php</b> on line 3<br />{\"exception\":",
        ));
        assert_eq!(error.class(), ErrorClass::Defect);
        let text = error.to_string();
        assert!(
            text.contains("Notice : Undefined index in [path]"),
            "{text}"
        );
        assert!(!text.contains("/var/www"), "{text}");
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after(" 120 "), Some(Duration::from_secs(120)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
        // Retry-After on other statuses is not a request to wait.
        let other = err(Answer {
            status: 500,
            content_type: None,
            retry_after: Some("30"),
            body: b"",
        });
        assert_eq!(other.retry_after(), None);
    }
}
