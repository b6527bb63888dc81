//! One request encoder and one answer parser per web-service function (moodle-ws.md §2).
//!
//! Pure functions, no HTTP: the client sends what these build and hands back what
//! Moodle answered. Optional answer keys are parsed as `Option`, unknown keys ignored.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::encode::FormParams;
use super::sanitize;
use super::wsfunction::*;
use super::{
    Completion, Course, CourseTotal, CourseUpdate, Enrolment, MoodleError, NewCourse, NewUser,
    SiteInfo, Unenrolment, User, UserField,
};

/// `summaryformat` for HTML summaries.
const FORMAT_HTML: i64 = 1;

/// One call to make: the function and its form fields (the client adds the token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Request {
    pub function: &'static str,
    pub params: FormParams,
}

fn request(function: &'static str, fill: impl FnOnce(&mut FormParams)) -> Request {
    let mut params = FormParams::new();
    fill(&mut params);
    Request { function, params }
}

/// An empty text means "not given" for optional keys (moodle-ws.md 1.2).
fn given(text: &str) -> Option<&str> {
    (!text.is_empty()).then_some(text)
}

// ---- requests -------------------------------------------------------------------------

pub(crate) fn site_info() -> Request {
    request(SITE_INFO, |_| {})
}

/// `field` is one of `id`, `idnumber`, `shortname`.
pub(crate) fn course_by_field(field: &'static str, value: &str) -> Request {
    request(COURSES_BY_FIELD, |p| {
        p.field("field", field).field("value", value);
    })
}

pub(crate) fn create_course(course: &NewCourse) -> Request {
    request(CREATE_COURSES, |p| {
        p.objects("courses", [course], |o, c| {
            o.field("fullname", &c.fullname)
                .field("shortname", &c.shortname)
                .field("categoryid", c.categoryid)
                .field("idnumber", given(&c.idnumber))
                .field("summary", c.summary.as_deref())
                .field("summaryformat", c.summary.as_ref().map(|_| FORMAT_HTML))
                .field("startdate", c.startdate)
                .field("enddate", c.enddate)
                .field("visible", c.visible);
        });
    })
}

/// Whether an update would change anything (an update with only the id still writes
/// `timemodified` and fires a "course updated" event in Moodle).
pub(crate) fn update_changes_something(update: &CourseUpdate) -> bool {
    update.fullname.is_some()
        || update.summary.is_some()
        || update.startdate.is_some()
        || update.enddate.is_some()
}

pub(crate) fn update_course(update: &CourseUpdate) -> Request {
    request(UPDATE_COURSES, |p| {
        p.objects("courses", [update], |o, u| {
            o.field("id", u.id)
                .field("fullname", u.fullname.as_deref())
                .field("summary", u.summary.as_deref())
                .field("summaryformat", u.summary.as_ref().map(|_| FORMAT_HTML))
                .field("startdate", u.startdate)
                .field("enddate", u.enddate);
        });
    })
}

pub(crate) fn users_by_field(field: UserField, values: &[&str]) -> Request {
    request(USERS_BY_FIELD, |p| {
        p.field("field", field.as_str())
            .list("values", values.iter().copied());
    })
}

pub(crate) fn users_by_email_like(email: &str) -> Request {
    request(GET_USERS, |p| {
        p.objects("criteria", [email], |o, email| {
            o.field("key", "email").field("value", email);
        });
    })
}

pub(crate) fn create_user(user: &NewUser) -> Request {
    request(CREATE_USERS, |p| {
        p.objects("users", [user], |o, u| {
            o.field("username", &u.username)
                .field("firstname", &u.firstname)
                .field("lastname", &u.lastname)
                .field("email", &u.email)
                // Moodle generates the password and emails the login (SPEC §3).
                .field("auth", "manual")
                .field("createpassword", true)
                .field("idnumber", given(&u.idnumber));
        });
    })
}

pub(crate) fn enrol(enrolments: &[Enrolment]) -> Request {
    request(ENROL, |p| {
        p.objects("enrolments", enrolments, |o, e| {
            o.field("roleid", e.roleid)
                .field("userid", e.userid)
                .field("courseid", e.courseid)
                // Always sent: a missing `suspend` silently reactivates (moodle-ws.md 2.9).
                .field("suspend", e.suspend);
        });
    })
}

pub(crate) fn unenrol(unenrolments: &[Unenrolment]) -> Request {
    request(UNENROL, |p| {
        p.objects("enrolments", unenrolments, |o, u| {
            o.field("userid", u.userid).field("courseid", u.courseid);
        });
    })
}

/// No `userid`: all graded users of the course in one call.
pub(crate) fn grade_items(courseid: i64) -> Request {
    request(GRADE_ITEMS, |p| {
        p.field("courseid", courseid);
    })
}

pub(crate) fn completion(courseid: i64, userid: i64) -> Request {
    request(COMPLETION, |p| {
        p.field("courseid", courseid).field("userid", userid);
    })
}

// ---- answers --------------------------------------------------------------------------

/// One `warnings` entry (moodle-ws.md 1.9).
#[derive(Debug, Deserialize)]
struct Warning {
    #[serde(default)]
    itemid: Option<i64>,
    #[serde(default)]
    warningcode: String,
    #[serde(default)]
    message: String,
}

/// A non-empty `warnings` list is a failure for the items it names: the first one
/// becomes the error (every call sends one item).
fn check_warnings(function: &str, warnings: Vec<Warning>) -> Result<(), MoodleError> {
    match warnings.into_iter().next() {
        None => Ok(()),
        Some(w) => Err(MoodleError::Warning {
            function: function.into(),
            warningcode: sanitize::clean_line(&w.warningcode, 100),
            message: sanitize::clean_line(&w.message, sanitize::MAX_MESSAGE),
            itemid: w.itemid,
        }),
    }
}

fn shape<T: DeserializeOwned>(function: &str, value: Value) -> Result<T, MoodleError> {
    serde_json::from_value(value).map_err(|e| MoodleError::Unexpected {
        function: function.into(),
        detail: sanitize::clean_line(&e.to_string(), 200),
    })
}

pub(crate) fn parse_site_info(function: &str, value: Value) -> Result<SiteInfo, MoodleError> {
    #[derive(Deserialize)]
    struct Function {
        name: String,
    }
    #[derive(Deserialize)]
    struct Answer {
        sitename: String,
        siteurl: String,
        username: String,
        userid: i64,
        release: Option<String>,
        version: Option<String>,
        #[serde(default)]
        functions: Vec<Function>,
        siteid: Option<i64>,
    }
    let a: Answer = shape(function, value)?;
    Ok(SiteInfo {
        sitename: a.sitename,
        siteurl: a.siteurl,
        username: a.username,
        userid: a.userid,
        release: a.release,
        version: a.version,
        functions: a.functions.into_iter().map(|f| f.name).collect(),
        siteid: a.siteid,
    })
}

/// The course found, or `None`; with several (a lost create race can make two courses
/// with one idnumber) the oldest, as Moodle orders by id.
pub(crate) fn parse_one_course(
    function: &str,
    value: Value,
) -> Result<Option<Course>, MoodleError> {
    #[derive(Deserialize)]
    struct Answer {
        courses: Vec<Course>,
        #[serde(default)]
        warnings: Vec<Warning>,
    }
    let a: Answer = shape(function, value)?;
    check_warnings(function, a.warnings)?;
    if a.courses.len() > 1 {
        let ids: Vec<i64> = a.courses.iter().map(|c| c.id).collect();
        tracing::warn!(
            function,
            ?ids,
            "several Moodle courses match; using the oldest"
        );
    }
    Ok(a.courses.into_iter().min_by_key(|c| c.id))
}

/// `[{id, shortname|username}]` for exactly one created record.
pub(crate) fn parse_created_id(function: &str, value: Value) -> Result<i64, MoodleError> {
    #[derive(Deserialize)]
    struct Created {
        id: i64,
    }
    let created: Vec<Created> = shape(function, value)?;
    match created.as_slice() {
        [one] => Ok(one.id),
        other => Err(MoodleError::Unexpected {
            function: function.into(),
            detail: format!("expected one created record, got {}", other.len()),
        }),
    }
}

/// `{"warnings": […]}` (update_courses).
pub(crate) fn parse_warnings_only(function: &str, value: Value) -> Result<(), MoodleError> {
    #[derive(Deserialize)]
    struct Answer {
        warnings: Vec<Warning>,
    }
    let a: Answer = shape(function, value)?;
    check_warnings(function, a.warnings)
}

/// A bare list of users (get_users_by_field).
pub(crate) fn parse_user_list(function: &str, value: Value) -> Result<Vec<User>, MoodleError> {
    shape(function, value)
}

/// `{"users": […], "warnings": […]}` (get_users).
pub(crate) fn parse_users(function: &str, value: Value) -> Result<Vec<User>, MoodleError> {
    #[derive(Deserialize)]
    struct Answer {
        users: Vec<User>,
        #[serde(default)]
        warnings: Vec<Warning>,
    }
    let a: Answer = shape(function, value)?;
    check_warnings(function, a.warnings)?;
    Ok(a.users)
}

/// The 4-byte body `null` of enrol/unenrol.
pub(crate) fn parse_null(function: &str, value: Value) -> Result<(), MoodleError> {
    match value {
        Value::Null => Ok(()),
        other => Err(MoodleError::Unexpected {
            function: function.into(),
            detail: format!(
                "expected null, got {}",
                sanitize::clean_line(&other.to_string(), 80)
            ),
        }),
    }
}

/// The `course` grade item of each user (users without one are left out).
pub(crate) fn parse_course_totals(
    function: &str,
    value: Value,
) -> Result<Vec<CourseTotal>, MoodleError> {
    #[derive(Deserialize)]
    struct Item {
        itemtype: Option<String>,
        graderaw: Option<f64>,
        grademin: Option<f64>,
        grademax: Option<f64>,
    }
    #[derive(Deserialize)]
    struct UserGrades {
        userid: i64,
        useridnumber: Option<String>,
        #[serde(default)]
        gradeitems: Vec<Item>,
    }
    #[derive(Deserialize)]
    struct Answer {
        usergrades: Vec<UserGrades>,
        #[serde(default)]
        warnings: Vec<Warning>,
    }
    let a: Answer = shape(function, value)?;
    check_warnings(function, a.warnings)?;
    Ok(a.usergrades
        .into_iter()
        .filter_map(|user| {
            let total = user
                .gradeitems
                .into_iter()
                .find(|item| item.itemtype.as_deref() == Some("course"))?;
            Some(CourseTotal {
                userid: user.userid,
                // Users without an idnumber report "".
                useridnumber: user.useridnumber.filter(|s| !s.is_empty()),
                graderaw: total.graderaw,
                grademin: total.grademin,
                grademax: total.grademax,
            })
        })
        .collect())
}

/// Completion of one user; `usernotenroled` and `nocriteriaset` mean "no completion
/// data" for the pair, not a failure (moodle-ws.md 2.14).
pub(crate) fn parse_completion(
    function: &str,
    answer: Result<Value, MoodleError>,
) -> Result<Option<Completion>, MoodleError> {
    #[derive(Deserialize)]
    struct Criterion {
        timecompleted: Option<i64>,
    }
    #[derive(Deserialize)]
    struct Status {
        completed: bool,
        #[serde(default)]
        completions: Vec<Criterion>,
    }
    #[derive(Deserialize)]
    struct Answer {
        completionstatus: Status,
        #[serde(default)]
        warnings: Vec<Warning>,
    }
    let value = match answer {
        Err(e) if matches!(e.errorcode(), Some("usernotenroled" | "nocriteriaset")) => {
            return Ok(None);
        }
        other => other?,
    };
    let a: Answer = shape(function, value)?;
    check_warnings(function, a.warnings)?;
    let status = a.completionstatus;
    // Moodle gives no course-level time; the last criterion completed is the best proxy.
    let completed_at = status
        .completed
        .then(|| {
            status
                .completions
                .iter()
                .filter_map(|c| c.timecompleted)
                .max()
        })
        .flatten();
    Ok(Some(Completion {
        completed: status.completed,
        completed_at,
    }))
}

#[cfg(test)]
mod tests {
    //! Answers are bodies recorded from Moodle 4.5 (`/work/shared/moodle-fixtures`,
    //! named per test), embedded so the crate stands alone; long ones are trimmed of
    //! keys this service ignores.
    use super::*;
    use crate::moodle::ErrorClass;

    fn v(body: &str) -> Value {
        serde_json::from_str(body).unwrap()
    }

    fn lines(request: &Request) -> Vec<String> {
        request
            .params
            .pairs()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect()
    }

    /// core_course_create_courses/success.json sends exactly these fields.
    #[test]
    fn create_course_matches_the_recorded_request() {
        let course = NewCourse {
            fullname: "APIT Fire Safety Level 2".into(),
            shortname: "APIT-C1-52c2f4".into(),
            categoryid: 2,
            idnumber: "apit-ev-1-52c2f4".into(),
            summary: Some(
                "<p>Classroom course <strong>delegates</strong> &amp; trainers</p>".into(),
            ),
            startdate: Some(1_803_978_000),
            enddate: Some(1_804_150_800),
            visible: Some(true),
        };
        let r = create_course(&course);
        assert_eq!(r.function, CREATE_COURSES);
        assert_eq!(
            lines(&r),
            [
                "courses[0][fullname]=APIT Fire Safety Level 2",
                "courses[0][shortname]=APIT-C1-52c2f4",
                "courses[0][categoryid]=2",
                "courses[0][idnumber]=apit-ev-1-52c2f4",
                "courses[0][summary]=<p>Classroom course <strong>delegates</strong> &amp; trainers</p>",
                "courses[0][summaryformat]=1",
                "courses[0][startdate]=1803978000",
                "courses[0][enddate]=1804150800",
                "courses[0][visible]=1",
            ]
        );
    }

    #[test]
    fn absent_fields_are_not_sent() {
        let minimal = NewCourse {
            fullname: "F".into(),
            shortname: "S".into(),
            categoryid: 2,
            idnumber: String::new(),
            summary: None,
            startdate: None,
            enddate: None,
            visible: None,
        };
        assert_eq!(
            lines(&create_course(&minimal)),
            [
                "courses[0][fullname]=F",
                "courses[0][shortname]=S",
                "courses[0][categoryid]=2"
            ]
        );
        let dates = CourseUpdate {
            id: 2,
            startdate: Some(1_807_002_000),
            enddate: Some(1_807_174_800),
            ..CourseUpdate::default()
        };
        // core_course_update_courses/success_dates.json
        assert_eq!(
            lines(&update_course(&dates)),
            [
                "courses[0][id]=2",
                "courses[0][startdate]=1807002000",
                "courses[0][enddate]=1807174800"
            ]
        );
        assert!(update_changes_something(&dates));
        assert!(!update_changes_something(&CourseUpdate {
            id: 2,
            ..CourseUpdate::default()
        }));
    }

    /// core_webservice_get_site_info/success.json (trimmed).
    #[test]
    fn site_info() {
        let body = r#"{"sitename":"APIT Moodle Rig","username":"apit_integration","firstname":"APIT","lastname":"Integration","fullname":"APIT Integration","lang":"en","userid":3,"siteurl":"http:\/\/127.0.0.1:8090","userpictureurl":"http:\/\/127.0.0.1:8090\/theme\/image.php\/boost\/core\/1795423858\/u\/f1","functions":[{"name":"core_webservice_get_site_info","version":"2024100700.09"},{"name":"core_course_create_courses","version":"2024100700.09"},{"name":"enrol_manual_enrol_users","version":"2024100700"}],"downloadfiles":0,"uploadfiles":0,"release":"4.5+ (Build: 20241205)","version":"2024100700.09","mobilecssurl":"","advancedfeatures":[{"name":"enablecompletion","value":1}],"usercanmanageownfiles":true,"userquota":104857600,"siteid":1,"userissiteadmin":false,"theme":"boost","policyagreed":0}"#;
        let info = parse_site_info(SITE_INFO, v(body)).unwrap();
        assert_eq!(
            info,
            SiteInfo {
                sitename: "APIT Moodle Rig".into(),
                siteurl: "http://127.0.0.1:8090".into(),
                username: "apit_integration".into(),
                userid: 3,
                release: Some("4.5+ (Build: 20241205)".into()),
                version: Some("2024100700.09".into()),
                functions: vec![
                    "core_webservice_get_site_info".into(),
                    "core_course_create_courses".into(),
                    "enrol_manual_enrol_users".into(),
                ],
                siteid: Some(1),
            }
        );
    }

    /// core_course_get_courses_by_field/by_idnumber_found.json (filters and format
    /// options trimmed) and by_idnumber_not_found.json.
    #[test]
    fn course_lookup() {
        let found = r#"{"courses":[{"id":2,"fullname":"APIT Fire Safety Level 2","displayname":"APIT Fire Safety Level 2","shortname":"APIT-C1-52c2f4","courseimage":"http:\/\/127.0.0.1:8090\/pluginfile.php\/15\/course\/generated\/course.svg","categoryid":2,"categoryname":"accessplanit","sortorder":20006,"summary":"<p>Classroom course <strong>delegates<\/strong> &amp; trainers<\/p>","summaryformat":1,"summaryfiles":[],"overviewfiles":[],"showactivitydates":false,"showcompletionconditions":true,"contacts":[],"enrollmentmethods":["manual"],"idnumber":"apit-ev-1-52c2f4","format":"topics","showgrades":1,"newsitems":5,"startdate":1807002000,"enddate":1807174800,"maxbytes":0,"showreports":0,"visible":1,"groupmode":0,"groupmodeforce":0,"defaultgroupingid":0,"enablecompletion":1,"completionnotify":0,"lang":"","theme":"","marker":0,"legacyfiles":0,"calendartype":"","timecreated":1795423861,"timemodified":1795423862,"requested":0,"cacherev":1795423864,"filters":[],"courseformatoptions":[{"name":"hiddensections","value":1}]}],"warnings":[]}"#;
        assert_eq!(
            parse_one_course(COURSES_BY_FIELD, v(found)).unwrap(),
            Some(Course {
                id: 2,
                shortname: "APIT-C1-52c2f4".into(),
                fullname: "APIT Fire Safety Level 2".into(),
                idnumber: Some("apit-ev-1-52c2f4".into()),
                summary: Some(
                    "<p>Classroom course <strong>delegates</strong> &amp; trainers</p>".into()
                ),
                startdate: Some(1_807_002_000),
                enddate: Some(1_807_174_800),
            })
        );
        let none = r#"{"courses":[],"warnings":[]}"#;
        assert_eq!(parse_one_course(COURSES_BY_FIELD, v(none)).unwrap(), None);

        // Without moodle/course:update there is no idnumber; two matches: the oldest.
        let two = r#"{"courses":[{"id":9,"shortname":"b","fullname":"B","summary":""},{"id":4,"shortname":"a","fullname":"A","summary":""}],"warnings":[]}"#;
        let course = parse_one_course(COURSES_BY_FIELD, v(two)).unwrap().unwrap();
        assert_eq!((course.id, course.idnumber), (4, None));

        let warned = r#"{"courses":[],"warnings":[{"item":"course","itemid":7,"warningcode":"1","message":"No access rights in course context"}]}"#;
        let error = parse_one_course(COURSES_BY_FIELD, v(warned)).unwrap_err();
        assert_eq!(error.class(), ErrorClass::Defect);

        let wrong = parse_one_course(COURSES_BY_FIELD, v("[]")).unwrap_err();
        assert!(matches!(wrong, MoodleError::Unexpected { .. }), "{wrong:?}");
    }

    /// core_course_create_courses/success.json, core_user_create_users/success_createpassword.json
    #[test]
    fn created_ids() {
        let course = r#"[{"id":2,"shortname":"APIT-C1-52c2f4"}]"#;
        assert_eq!(parse_created_id(CREATE_COURSES, v(course)).unwrap(), 2);
        let user = r#"[{"id":6,"username":"apit.del1.52c2f4"}]"#;
        assert_eq!(parse_created_id(CREATE_USERS, v(user)).unwrap(), 6);
        assert!(parse_created_id(CREATE_USERS, v("[]")).is_err());
    }

    /// core_course_update_courses/success_dates.json, duplicate_shortname.json,
    /// unknown_course_id.json
    #[test]
    fn update_warnings() {
        parse_warnings_only(UPDATE_COURSES, v(r#"{"warnings":[]}"#)).unwrap();

        let taken = r#"{"warnings":[{"item":"course","itemid":6,"warningcode":"shortnametaken","message":"Short name is already used for another course (APIT-C1-52c2f4)"}]}"#;
        let error = parse_warnings_only(UPDATE_COURSES, v(taken)).unwrap_err();
        match &error {
            MoodleError::Warning {
                warningcode,
                itemid,
                message,
                ..
            } => {
                assert_eq!(warningcode, "shortnametaken");
                assert_eq!(*itemid, Some(6));
                assert_eq!(
                    message,
                    "Short name is already used for another course (APIT-C1-52c2f4)"
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(error.class(), ErrorClass::Conflict);

        let unknown = r#"{"warnings":[{"item":"course","itemid":999999,"warningcode":"invalidrecord","message":"Can't find data record in database table course."}]}"#;
        let error = parse_warnings_only(UPDATE_COURSES, v(unknown)).unwrap_err();
        assert_eq!(error.class(), ErrorClass::Data);
        assert_eq!(
            error.to_string(),
            "core_course_update_courses: the Moodle course does not exist (Moodle warning \
             invalidrecord for item 999999: Can't find data record in database table course)"
        );
    }

    /// core_user_get_users_by_field/email_1_match.json (trimmed) and email_0_matches.json;
    /// core_user_get_users/by_email.json (trimmed).
    #[test]
    fn users() {
        let one = r#"[{"id":10,"username":"apit.dupid.52c2f4","fullname":"Del Apit.dupid.52c2f4","email":"apit.dupid.52c2f4@example.invalid","department":"","idnumber":"apit-p-1-52c2f4","firstaccess":0,"lastaccess":0,"auth":"manual","suspended":false,"confirmed":true,"lang":"en","theme":"","timezone":"99","mailformat":1,"trackforums":0,"profileimageurlsmall":"http:\/\/127.0.0.1:8090\/theme\/image.php\/boost\/core\/1795423858\/u\/f2","profileimageurl":"http:\/\/127.0.0.1:8090\/theme\/image.php\/boost\/core\/1795423858\/u\/f1"}]"#;
        assert_eq!(
            parse_user_list(USERS_BY_FIELD, v(one)).unwrap(),
            [User {
                id: 10,
                username: Some("apit.dupid.52c2f4".into()),
                email: Some("apit.dupid.52c2f4@example.invalid".into()),
                idnumber: Some("apit-p-1-52c2f4".into()),
                firstname: None,
                lastname: None,
                suspended: Some(false),
            }]
        );
        assert_eq!(parse_user_list(USERS_BY_FIELD, v("[]")).unwrap(), []);

        let by_email = r#"{"users":[{"id":6,"username":"apit.del1.52c2f4","fullname":"Del Apit.del1.52c2f4","email":"del1.52c2f4@example.invalid","idnumber":"apit-p-1-52c2f4","suspended":false,"confirmed":true},{"id":8,"username":"apit.sameemail.52c2f4","fullname":"Del Apit.sameemail.52c2f4","email":"del1.52c2f4@example.invalid","suspended":false,"confirmed":true}],"warnings":[]}"#;
        let users = parse_users(GET_USERS, v(by_email)).unwrap();
        assert_eq!(users.iter().map(|u| u.id).collect::<Vec<_>>(), [6, 8]);
        assert_eq!(users[1].idnumber, None);
        assert_eq!(
            parse_users(GET_USERS, v(r#"{"users":[],"warnings":[]}"#)).unwrap(),
            []
        );
    }

    /// enrol_manual_enrol_users/success.json: the body is the JSON literal null.
    #[test]
    fn null_bodies() {
        parse_null(ENROL, Value::Null).unwrap();
        assert!(parse_null(ENROL, v("[]")).is_err());
    }

    /// gradereport_user_get_grade_items/all_users.json (trimmed to the keys read; the
    /// third user is made up to show a user without a course item).
    #[test]
    fn course_totals_pick_the_course_item() {
        let body = r#"{"usergrades":[
          {"courseid":2,"courseidnumber":"apit-ev-1-52c2f4","userid":6,"userfullname":"Del Apit.del1.52c2f4","useridnumber":"apit-p-1-52c2f4","maxdepth":2,"gradeitems":[
            {"id":2,"itemname":"Rig assessment","itemtype":"manual","itemmodule":null,"graderaw":72.5,"grademin":0,"grademax":100,"gradeformatted":"72.50"},
            {"id":1,"itemname":null,"itemtype":"course","itemmodule":null,"graderaw":72.5,"grademin":0,"grademax":100,"gradeformatted":"72.50"}]},
          {"courseid":2,"courseidnumber":"apit-ev-1-52c2f4","userid":7,"userfullname":"Del Apit.del2.52c2f4","useridnumber":"","maxdepth":2,"gradeitems":[
            {"id":2,"itemname":"Rig assessment","itemtype":"manual","graderaw":null,"grademin":0,"grademax":100},
            {"id":1,"itemname":null,"itemtype":"course","graderaw":null}]},
          {"courseid":2,"userid":8,"useridnumber":"x","gradeitems":[]}],
         "warnings":[]}"#;
        assert_eq!(
            parse_course_totals(GRADE_ITEMS, v(body)).unwrap(),
            [
                CourseTotal {
                    userid: 6,
                    useridnumber: Some("apit-p-1-52c2f4".into()),
                    graderaw: Some(72.5),
                    grademin: Some(0.0),
                    grademax: Some(100.0),
                },
                CourseTotal {
                    userid: 7,
                    useridnumber: None,
                    graderaw: None,
                    grademin: None,
                    grademax: None,
                },
            ]
        );
    }

    /// core_completion_get_course_completion_status/enabled_with_criteria.json,
    /// user_not_enrolled.json, enabled_no_criteria.json, completion_disabled.json.
    #[test]
    fn completion_states() {
        let open = r#"{"completionstatus":{"completed":false,"aggregation":1,"completions":[{"type":2,"title":"Date","status":"23 Nov 2027","complete":false,"timecompleted":null,"details":{"type":"Date passed","criteria":"Remaining enrolled until a specified date","requirement":"23 Nov 2027","status":""}}]},"warnings":[]}"#;
        assert_eq!(
            parse_completion(COMPLETION, Ok(v(open))).unwrap(),
            Some(Completion {
                completed: false,
                completed_at: None
            })
        );

        // Made up from the same shape: complete, two criteria done at different times.
        let done = r#"{"completionstatus":{"completed":true,"aggregation":1,"completions":[{"type":4,"complete":true,"timecompleted":1795000000},{"type":2,"complete":true,"timecompleted":1795400000},{"type":6,"complete":false,"timecompleted":null}]},"warnings":[]}"#;
        assert_eq!(
            parse_completion(COMPLETION, Ok(v(done))).unwrap(),
            Some(Completion {
                completed: true,
                completed_at: Some(1_795_400_000)
            })
        );

        let moodle_error = |code: &str| MoodleError::Exception {
            function: COMPLETION.into(),
            exception: "core\\exception\\moodle_exception".into(),
            errorcode: Some(code.into()),
            message: String::new(),
            debuginfo: None,
        };
        assert_eq!(
            parse_completion(COMPLETION, Err(moodle_error("usernotenroled"))).unwrap(),
            None
        );
        assert_eq!(
            parse_completion(COMPLETION, Err(moodle_error("nocriteriaset"))).unwrap(),
            None
        );
        let disabled = parse_completion(COMPLETION, Err(moodle_error("cannotviewreport")));
        assert_eq!(disabled.unwrap_err().class(), ErrorClass::Configuration);
    }
}
