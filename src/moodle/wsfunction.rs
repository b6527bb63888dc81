//! The names of the web-service functions the service calls (moodle-ws.md §2), written
//! once for the encoders, the error table and the preflight.

/// Site name, release, the token user and the functions of its service.
pub(crate) const SITE_INFO: &str = "core_webservice_get_site_info";
/// Courses by `id`, `idnumber` or `shortname`.
pub(crate) const COURSES_BY_FIELD: &str = "core_course_get_courses_by_field";
/// Creates courses (one per call here).
pub(crate) const CREATE_COURSES: &str = "core_course_create_courses";
/// Updates courses; per-course problems come back as warnings.
pub(crate) const UPDATE_COURSES: &str = "core_course_update_courses";
/// Users by `id`, `idnumber`, `username` or `email`.
pub(crate) const USERS_BY_FIELD: &str = "core_user_get_users_by_field";
/// Users by criteria (here: an email, case-insensitively).
pub(crate) const GET_USERS: &str = "core_user_get_users";
/// Creates users (one per call here).
pub(crate) const CREATE_USERS: &str = "core_user_create_users";
/// Manual enrolments (atomic for the whole list).
pub(crate) const ENROL: &str = "enrol_manual_enrol_users";
/// Manual unenrolments (atomic for the whole list).
pub(crate) const UNENROL: &str = "enrol_manual_unenrol_users";
/// The user grade report: course totals.
pub(crate) const GRADE_ITEMS: &str = "gradereport_user_get_grade_items";
/// Course completion of one user.
pub(crate) const COMPLETION: &str = "core_completion_get_course_completion_status";

/// Every function the service calls, for the preflight: the core set, plus the grade
/// report when grades are polled and the completion status when completion is too.
pub fn required_functions(grades: bool, completion: bool) -> Vec<&'static str> {
    let mut out = vec![
        SITE_INFO,
        COURSES_BY_FIELD,
        CREATE_COURSES,
        UPDATE_COURSES,
        USERS_BY_FIELD,
        GET_USERS,
        CREATE_USERS,
        ENROL,
        UNENROL,
    ];
    if grades {
        out.push(GRADE_ITEMS);
        if completion {
            out.push(COMPLETION);
        }
    }
    out
}
