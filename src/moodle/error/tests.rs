use super::*;
use crate::moodle::wsfunction::{
    COMPLETION, COURSES_BY_FIELD, CREATE_COURSES as CC, CREATE_USERS, GRADE_ITEMS, UNENROL,
    UPDATE_COURSES, USERS_BY_FIELD,
};
use ErrorClass::*;

fn exception(function: &str, exception: &str, code: Option<&str>, message: &str) -> MoodleError {
    MoodleError::Exception {
        function: function.into(),
        exception: exception.into(),
        errorcode: code.map(Into::into),
        message: message.into(),
        debuginfo: None,
    }
}

fn ex(function: &str, code: &str) -> MoodleError {
    exception(
        function,
        "core\\exception\\moodle_exception",
        Some(code),
        "",
    )
}

fn status(status: u16) -> MoodleError {
    MoodleError::Status {
        function: "f".into(),
        status,
        retry_after: None,
    }
}

fn not_json(content_type: &str) -> MoodleError {
    MoodleError::NotJson {
        function: "f".into(),
        content_type: content_type.into(),
    }
}

/// The classification of moodle-ws.md §6 and the brief, one row per signal/code.
#[test]
fn classification_table() {
    let transport = |timeout| MoodleError::Transport {
        function: "f".into(),
        detail: "x".into(),
        timeout,
    };
    let rows: Vec<(MoodleError, ErrorClass)> = vec![
        // transient
        (transport(true), Transient),
        (transport(false), Transient),
        (status(500), Transient),
        (status(502), Transient),
        (status(503), Transient),
        (status(504), Transient),
        (status(429), Transient),
        (status(408), Transient),
        (ex(CC, "dmlreadexception"), Transient),
        (ex(CC, "dmlwriteexception"), Transient),
        (ex(CC, "dmltransactionexception"), Transient),
        (ex(CC, "sitemaintenance"), Transient),
        // configuration
        (status(301), Configuration),
        (status(302), Configuration),
        (status(307), Configuration),
        (status(403), Configuration),
        (status(404), Configuration),
        (status(401), Configuration),
        (not_json("text/html; charset=utf-8"), Configuration),
        (not_json("application/xml; charset=utf-8"), Configuration),
        (not_json(""), Configuration),
        (ex(CC, "invalidtoken"), Configuration),
        (ex(CC, "accessexception"), Configuration),
        (ex(CC, "nopermissions"), Configuration),
        (ex(ENROL, "wsusercannotassign"), Configuration),
        (ex(ENROL, "wsnoinstance"), Configuration),
        (ex(CC, "errorcatcontextnotvalid"), Configuration),
        (ex(CC, "restrictedcontextexception"), Configuration),
        (ex(CC, "requireloginerror"), Configuration),
        (ex(CC, "sitepolicynotagreed"), Configuration),
        (ex(CC, "usernotfullysetup"), Configuration),
        (ex(CC, "forcepasswordchangenotice"), Configuration),
        (ex(CC, "nopasswordchangeforced"), Configuration),
        (ex(CC, "wsaccessuserunconfirmed"), Configuration),
        (ex(COMPLETION, "cannotviewreport"), Configuration),
        (ex(GRADE_ITEMS, "nopermissiontoviewgrades"), Configuration),
        (
            exception(
                "core_does_not_exist",
                "dml_missing_record_exception",
                Some("invalidrecord"),
                "Can't find data record in database table external_functions.",
            ),
            Configuration,
        ),
        (
            MoodleError::Exception {
                function: "core_does_not_exist".into(),
                exception: "dml_missing_record_exception".into(),
                errorcode: Some("invalidrecord".into()),
                message: "Datensatz nicht gefunden".into(),
                debuginfo: Some("SELECT * FROM {external_functions} WHERE name = ?".into()),
            },
            Configuration,
        ),
        // data
        (ex(CC, "invalidparameter"), Data),
        (ex(CREATE_USERS, "invalidparameter"), Data),
        (ex(CC, "errorinvalidparam"), Data),
        (ex(CC, "enddatebeforestartdate"), Data),
        (ex(CC, "nostartdatenoenddate"), Data),
        (
            exception(
                UNENROL,
                "dml_missing_record_exception",
                Some("invalidrecord"),
                "Can't find data record in database table course.",
            ),
            Data,
        ),
        (ex(GRADE_ITEMS, "invalidrecordunknown"), Data),
        (
            ex("gradereport_overview_get_course_grades", "invaliduser"),
            Data,
        ),
        (ex(UPDATE_COURSES, "invalidcourse"), Data),
        (ex(ENROL, "codingerror"), Data),
        (ex(USERS_BY_FIELD, "codingerror"), Data),
        (ex(COMPLETION, "usernotenroled"), Data),
        (ex(COMPLETION, "nocriteriaset"), Data),
        (ex(GRADE_ITEMS, "userdeleted"), Data),
        (ex(GRADE_ITEMS, "usernotconfirmed"), Data),
        (
            exception(
                ENROL,
                "TypeError",
                None,
                "Argument #1 ($user) must be of type stdClass",
            ),
            Data,
        ),
        // conflict
        (ex(CC, "shortnametaken"), Conflict),
        (ex(CC, "courseidnumbertaken"), Conflict),
        // defect
        (ex(CC, "invalidresponse"), Defect),
        (exception(CC, "TypeError", None, "x"), Defect),
        (
            exception(
                COURSES_BY_FIELD,
                "Error",
                None,
                "Attempt to assign property \"contextvalidated\" on null",
            ),
            Defect,
        ),
        (ex(CC, "somethingnew"), Defect),
        (status(204), Defect),
        (
            MoodleError::Unexpected {
                function: "f".into(),
                detail: "missing field `id`".into(),
            },
            Defect,
        ),
    ];
    for (error, class) in rows {
        assert_eq!(error.class(), class, "{error:?}");
    }
}

#[test]
fn warnings_are_classified_like_their_exception() {
    let warning = |code: &str| MoodleError::Warning {
        function: UPDATE_COURSES.into(),
        warningcode: code.into(),
        message: "m".into(),
        itemid: Some(6),
    };
    assert_eq!(warning("shortnametaken").class(), Conflict);
    assert_eq!(warning("courseidnumbertaken").class(), Conflict);
    assert_eq!(warning("invalidrecord").class(), Data);
    assert_eq!(warning("enddatebeforestartdate").class(), Data);
    assert_eq!(warning("nopermissions").class(), Configuration);
    assert_eq!(warning("dmlwriteexception").class(), Transient);
    assert_eq!(warning("1").class(), Defect);
    assert_eq!(
        warning("shortnametaken").errorcode(),
        Some("shortnametaken")
    );
}

/// Every configuration row says what to change; no other row pretends to.
#[test]
fn fixes_exist_exactly_for_configuration_rows() {
    for case in CASES {
        assert_eq!(
            case.fix.is_some(),
            case.class == Configuration,
            "{:?}: {}",
            case.on,
            case.what
        );
        assert!(!case.what.ends_with('.'), "{}", case.what);
    }
    // No (code, function) pair appears twice: the first row would hide the second.
    for (i, a) in CASES.iter().enumerate() {
        for b in &CASES[i + 1..] {
            assert!(
                !(a.on == b.on && a.only == b.only),
                "duplicate row {:?}",
                a.on
            );
        }
    }
}

#[test]
fn fix_texts_name_the_exact_thing() {
    let access = ex(ENROL, "accessexception");
    assert_eq!(
        access.fix().unwrap(),
        "add the function enrol_manual_enrol_users to the External Service used by this \
         token (Site administration › Server › Web services › External services › \
         Functions), and check the token user has webservice/rest:use; an expired or \
         IP-restricted token, or a suspended integration user, gives the same error"
    );

    let nocap = exception(
        CC,
        "core\\exception\\required_capability_exception",
        Some("nopermissions"),
        "Sorry, but you do not currently have permissions to do that (Create courses).",
    );
    let fix = nocap.fix().unwrap();
    assert!(
        fix.contains("'Create courses' (moodle/course:create)"),
        "{fix}"
    );

    let enrol_cap = ex(ENROL, "nopermissions");
    assert!(enrol_cap.fix().unwrap().contains("enrol/manual:enrol"));
    assert!(
        ex(CREATE_USERS, "nopermissions")
            .fix()
            .unwrap()
            .contains("moodle/user:create")
    );

    let role = exception(
        ENROL,
        "core\\exception\\moodle_exception",
        Some("wsusercannotassign"),
        "You don't have the permission to assign this role (1) to this user (6) in this course (2).",
    );
    assert!(role.fix().unwrap().starts_with("allow the integration user's role to assign role 1 (Site administration › Users › Permissions › Define roles › Allow role assignments)"));

    let category = exception(
        CC,
        "core\\exception\\moodle_exception",
        Some("errorcatcontextnotvalid"),
        "You cannot execute functions in the category context (category id:999999). The context error message was: Invalid parameter value detected",
    );
    assert!(category.fix().unwrap().starts_with(
        "category_id does not exist on this Moodle (use the id from the category's edit URL)"
    ));
    assert!(
        category
            .to_string()
            .contains("category 999999 cannot be used")
    );

    assert!(ex(CC, "invalidtoken").fix().unwrap().starts_with(
        "the token is not valid: create a new token for the integration user and update moodle_token"
    ));
    assert!(status(403).fix().unwrap().contains("enable web services"));
    assert!(status(403).fix().unwrap().contains("REST protocol"));
    assert!(
        status(302)
            .fix()
            .unwrap()
            .starts_with("moodle_url is not the site's wwwroot")
    );
    assert!(
        not_json("text/html")
            .fix()
            .unwrap()
            .starts_with("moodle_url is not the site's wwwroot (it answered with a web page)")
    );
    assert_eq!(ex(CC, "shortnametaken").fix(), None);
    assert_eq!(status(503).fix(), None);
}

#[test]
fn preflight_fixes_reuse_the_table_wording() {
    assert_eq!(
        fix_add_functions(&[ENROL]),
        "add the function enrol_manual_enrol_users to the External Service used by this \
         token (Site administration › Server › Web services › External services › Functions)"
    );
    assert!(
        ex(ENROL, "accessexception")
            .fix()
            .unwrap()
            .starts_with(&fix_add_functions(&[ENROL]))
    );
    assert!(
        fix_add_functions(&["a_b", "c_d"])
            .starts_with("add the functions a_b, c_d to the External Service")
    );
    assert_eq!(
        fix_grant_capabilities("moodle/user:viewalldetails"),
        "give the integration user's role moodle/user:viewalldetails at system level (Site \
         administration › Users › Permissions › Define roles)"
    );
}

#[test]
fn display_is_one_actionable_line() {
    let nocap = exception(
        CC,
        "core\\exception\\required_capability_exception",
        Some("nopermissions"),
        "Sorry, but you do not currently have permissions to do that (Create courses).",
    );
    assert_eq!(
        nocap.to_string(),
        "core_course_create_courses: the integration user lacks a capability (Moodle \
         nopermissions: Sorry, but you do not currently have permissions to do that (Create \
         courses)). Fix: give the integration user's role 'Create courses' \
         (moodle/course:create) at system level (Site administration › Users › Permissions › \
         Define roles)"
    );

    let typeerror = exception(
        ENROL,
        "TypeError",
        None,
        "core\\user::get_name_placeholders(): Argument #1 ($user) must be of type stdClass, bool given, called in [path] on line 3677",
    );
    assert!(typeerror.to_string().starts_with(
        "enrol_manual_enrol_users: the Moodle user does not exist or is deleted (Moodle TypeError: "
    ));

    let busy = MoodleError::Status {
        function: CREATE_USERS.into(),
        status: 503,
        retry_after: Some(Duration::from_secs(300)),
    };
    assert_eq!(
        busy.to_string(),
        "core_user_create_users: Moodle is unavailable (upgrade, maintenance or overload) \
         (HTTP 503, retry after 300 s)"
    );

    let warning = MoodleError::Warning {
        function: UPDATE_COURSES.into(),
        warningcode: "shortnametaken".into(),
        message: "Short name is already used for another course (APIT-C1-52c2f4)".into(),
        itemid: Some(6),
    };
    assert_eq!(
        warning.to_string(),
        "core_course_update_courses: another Moodle course already uses this shortname \
         (Moodle warning shortnametaken for item 6: Short name is already used for another \
         course (APIT-C1-52c2f4))"
    );

    let multiline = MoodleError::Transport {
        function: "f".into(),
        detail: "line one\nline two".into(),
        timeout: false,
    };
    assert_eq!(
        multiline.to_string(),
        "f: Moodle could not be reached (line one line two)"
    );
}

#[test]
fn outcomes_are_short_and_stable() {
    assert_eq!(ex(CC, "shortnametaken").outcome(), "shortnametaken");
    assert_eq!(status(503).outcome(), "http 503");
    assert_eq!(
        exception(ENROL, "TypeError", None, "m").outcome(),
        "no errorcode (TypeError)"
    );
    assert_eq!(
        MoodleError::Transport {
            function: "f".into(),
            detail: "d".into(),
            timeout: true
        }
        .outcome(),
        "timeout"
    );
    assert_eq!(not_json("text/html").outcome(), "not json");
}

#[test]
fn debug_hides_debuginfo_and_redaction_reaches_every_text() {
    let error = MoodleError::Exception {
        function: CC.into(),
        exception: "dml_write_exception".into(),
        errorcode: Some("dmlwriteexception".into()),
        message: "Error writing to database s3cret".into(),
        debuginfo: Some("INSERT INTO mdl_course ... 'Ada Lovelace' s3cret".into()),
    }
    .redacted("s3cret");
    let debug = format!("{error:?}");
    assert!(!debug.contains("Ada Lovelace"), "{debug}");
    assert!(debug.contains("chars, logged at debug level"), "{debug}");
    assert!(!debug.contains("s3cret") && !error.to_string().contains("s3cret"));
    match &error {
        MoodleError::Exception { debuginfo, .. } => {
            assert!(debuginfo.as_deref().unwrap().contains("[redacted]"))
        }
        _ => unreachable!(),
    }
}

#[test]
fn recognises_code_shapes() {
    assert!(is_code("invalidparameter"));
    assert!(is_code("1"));
    assert!(!is_code(
        "<div>Passwords must be at least 8 characters long.</div>"
    ));
    assert!(!is_code(""));
}
