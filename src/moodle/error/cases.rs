//! THE table of Moodle failures (moodle-ws.md §6): one row per errorcode or protocol
//! signal, with its class, what happened in plain words and, for configuration problems,
//! the administrator's fix; then how a row's placeholders are filled for one error.
//!
//! Over 500 lines because [`CASES`] is data (about 390 lines of rows); the code is the
//! row type, its constructors and the placeholder filling.

use super::{ErrorClass, MoodleError};
use crate::moodle::wsfunction::{
    COMPLETION, COURSES_BY_FIELD, CREATE_COURSES, CREATE_USERS, ENROL, GET_USERS, GRADE_ITEMS,
    UNENROL, UPDATE_COURSES, USERS_BY_FIELD,
};
use ErrorClass::{Configuration, Conflict, Data, Defect, Transient};

/// Protocol-level facts that are not an errorcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Signal {
    Timeout,
    Unreachable,
    Redirect,
    Forbidden,
    NotFound,
    SlowDown,
    Unavailable,
    ServerError,
    Refused,
    OddStatus,
    Html,
    Xml,
    OtherBody,
    FunctionMissing,
    EnrolUserMissing,
    NoErrorcode,
    UnknownCode,
    BadShape,
}

/// What a [`Case`] matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum On<'a> {
    Code(&'a str),
    Signal(Signal),
}

/// One row of the classification: class, plain-words text and fix, next to each other.
///
/// Placeholders: `{function}`, `{capability}` (from the message and [`CAPABILITIES`]),
/// `{role}` ("role 5"), `{category}` ("category 99").
pub(super) struct Case {
    /// The errorcode or signal.
    pub(super) on: On<'static>,
    /// Only for this function; a function-specific row wins over a general one.
    pub(super) only: Option<&'static str>,
    /// What the worker does next.
    pub(super) class: ErrorClass,
    /// What happened, in plain words (no trailing period).
    pub(super) what: &'static str,
    /// What the Moodle administrator must change (configuration rows only).
    pub(super) fix: Option<&'static str>,
}

const fn code(code: &'static str, class: ErrorClass, what: &'static str) -> Case {
    Case {
        on: On::Code(code),
        only: None,
        class,
        what,
        fix: None,
    }
}

const fn code_in(
    code: &'static str,
    function: &'static str,
    class: ErrorClass,
    what: &'static str,
) -> Case {
    Case {
        on: On::Code(code),
        only: Some(function),
        class,
        what,
        fix: None,
    }
}

const fn signal(signal: Signal, class: ErrorClass, what: &'static str) -> Case {
    Case {
        on: On::Signal(signal),
        only: None,
        class,
        what,
        fix: None,
    }
}

const fn config(on: On<'static>, what: &'static str, fix: &'static str) -> Case {
    Case {
        on,
        only: None,
        class: Configuration,
        what,
        fix: Some(fix),
    }
}

const fn config_code(code: &'static str, what: &'static str, fix: &'static str) -> Case {
    config(On::Code(code), what, fix)
}

/// How a function gets into the token's External Service, in the administrator's words.
/// A macro so that the `accessexception` row can extend the same literal with `concat!`.
macro_rules! add_function_fix {
    () => {
        "add the function {function} to the External Service used by this token (Site \
         administration › Server › Web services › External services › Functions)"
    };
}

/// The fix for functions missing from the token's External Service (the preflight reads
/// them from `core_webservice_get_site_info`, so no call has failed): the wording of the
/// `accessexception` row without its list of other causes.
pub fn fix_add_functions(functions: &[&str]) -> String {
    let text = add_function_fix!();
    match functions {
        [one] => text.replace("{function}", one),
        many => text.replace(
            "the function {function}",
            &format!("the functions {}", many.join(", ")),
        ),
    }
}

/// The fix for a capability the integration user's role lacks, worded as for
/// `nopermissions`; `capabilities` names them, e.g. `moodle/user:viewalldetails`.
pub fn fix_grant_capabilities(capabilities: &str) -> String {
    GRANT_CAPABILITY_FIX.replace("{capability}", capabilities)
}

/// The `nopermissions` fix, shared with [`fix_grant_capabilities`].
const GRANT_CAPABILITY_FIX: &str = "give the integration user's role {capability} at system \
     level (Site administration › Users › Permissions › Define roles)";

/// The fix for a web page (or other body) where web-service JSON was expected.
const WWWROOT_FIX: &str = "moodle_url is not the site's wwwroot (it answered with a web page): set it \
     to the site address exactly as in Moodle's config.php ($CFG->wwwroot), scheme and \
     sub-directory included";

/// THE classification (moodle-ws.md §6), with every text the operator sees.
pub(super) const CASES: &[Case] = &[
    // ---- transient: retry with backoff --------------------------------------------
    signal(Signal::Timeout, Transient, "Moodle did not answer in time"),
    signal(
        Signal::Unreachable,
        Transient,
        "Moodle could not be reached",
    ),
    signal(
        Signal::SlowDown,
        Transient,
        "Moodle (or a proxy in front of it) asked to slow down",
    ),
    signal(
        Signal::Unavailable,
        Transient,
        "Moodle is unavailable (upgrade, maintenance or overload)",
    ),
    signal(
        Signal::ServerError,
        Transient,
        "Moodle's web server failed (PHP error, timeout or proxy trouble)",
    ),
    code(
        "dmlreadexception",
        Transient,
        "Moodle could not read its database",
    ),
    code(
        "dmlwriteexception",
        Transient,
        "Moodle could not write to its database (a lock, a concurrent write, or a value too long)",
    ),
    code(
        "dmltransactionexception",
        Transient,
        "a Moodle database transaction failed",
    ),
    code(
        "sitemaintenance",
        Transient,
        "Moodle is in maintenance mode",
    ),
    // ---- configuration: the Moodle administrator must act ---------------------------
    config(
        On::Signal(Signal::Redirect),
        "Moodle answered with a redirect",
        "moodle_url is not the site's wwwroot (it answered with a redirect): set it to the \
         site address exactly as in Moodle's config.php ($CFG->wwwroot), scheme and \
         sub-directory included",
    ),
    config(
        On::Signal(Signal::Forbidden),
        "Moodle refuses web-service calls",
        "enable web services (Site administration › Advanced features › Enable web services) \
         and the REST protocol (Site administration › Server › Web services › Manage protocols)",
    ),
    config(
        On::Signal(Signal::NotFound),
        "there is no Moodle web-service endpoint at this address",
        "moodle_url must be the site's wwwroot, so that <moodle_url>/webservice/rest/server.php \
         exists: check its scheme, host and sub-directory",
    ),
    config(
        On::Signal(Signal::Refused),
        "a web server or proxy in front of Moodle refused the request",
        "let POST requests to <moodle_url>/webservice/rest/server.php through whatever sits in \
         front of Moodle (authentication, firewall, request size limits)",
    ),
    config(
        On::Signal(Signal::Html),
        "Moodle answered with a web page instead of web-service JSON",
        WWWROOT_FIX,
    ),
    config(
        On::Signal(Signal::OtherBody),
        "the answer is not Moodle's web-service JSON",
        WWWROOT_FIX,
    ),
    config(
        On::Signal(Signal::Xml),
        "Moodle answered in XML instead of JSON, so it did not receive the request's form body",
        "make moodle_url the site's exact wwwroot so that no redirect or proxy rewrites the \
         POST to <moodle_url>/webservice/rest/server.php",
    ),
    config(
        On::Signal(Signal::FunctionMissing),
        "the web-service function {function} does not exist on this Moodle",
        "upgrade Moodle, or enable the plugin that provides {function}; check that moodle_url \
         points at the right site",
    ),
    config_code(
        "invalidtoken",
        "Moodle does not accept the token",
        "the token is not valid: create a new token for the integration user and update \
         moodle_token (Site administration › Server › Web services › Manage tokens)",
    ),
    config_code(
        "accessexception",
        "Moodle denied the token access to {function}",
        concat!(
            add_function_fix!(),
            ", and check the token user has webservice/rest:use; an expired or IP-restricted \
             token, or a suspended integration user, gives the same error"
        ),
    ),
    config_code(
        "nopermissions",
        "the integration user lacks a capability",
        GRANT_CAPABILITY_FIX,
    ),
    config_code(
        "wsusercannotassign",
        "the integration user may not assign {role} in this course",
        "allow the integration user's role to assign {role} (Site administration › Users › \
         Permissions › Define roles › Allow role assignments), and check that {role} exists \
         and can be assigned in course context",
    ),
    config_code(
        "wsnoinstance",
        "the course has no enabled manual enrolment method",
        "add or enable the Manual enrolments method in the course (Course › Participants › \
         Enrolment methods), and keep the Manual enrolments plugin enabled (Site administration \
         › Plugins › Enrolments › Manage enrol plugins)",
    ),
    config_code(
        "wscannotenrol",
        "the course's manual enrolment method refuses to enrol",
        "enable the Manual enrolments method of the course (Course › Participants › Enrolment \
         methods)",
    ),
    config_code(
        "wscannotunenrol",
        "the course's manual enrolment method refuses to unenrol",
        "enable the Manual enrolments method of the course (Course › Participants › Enrolment \
         methods)",
    ),
    config_code(
        "manualpluginnotinstalled",
        "the Manual enrolments plugin is not enabled",
        "enable the Manual enrolments plugin (Site administration › Plugins › Enrolments › \
         Manage enrol plugins)",
    ),
    config_code(
        "errorcatcontextnotvalid",
        "{category} cannot be used to create courses",
        "category_id does not exist on this Moodle (use the id from the category's edit URL); \
         if it does, give the integration user's role moodle/category:viewhiddencategories",
    ),
    config_code(
        "errorcoursecontextnotvalid",
        "the integration user cannot work in this course",
        "give the integration user's role moodle/course:view and moodle/course:viewhiddencourses \
         at system level (Site administration › Users › Permissions › Define roles)",
    ),
    config_code(
        "restrictedcontextexception",
        "the token is restricted to another part of the site",
        "create the token at system level, without a context restriction (Site administration \
         › Server › Web services › Manage tokens)",
    ),
    config_code(
        "requireloginerror",
        "the integration user cannot access this course",
        "give the integration user's role moodle/course:view and moodle/course:viewhiddencourses \
         at system level, so it can access every course, hidden ones included",
    ),
    config_code(
        "sitepolicynotagreed",
        "the integration user has not accepted the site policy",
        "set the integration user's authentication to 'Web services authentication' (exempt \
         from the site policy), or log in once as that user and accept the policy",
    ),
    config_code(
        "usernotfullysetup",
        "the integration user's profile is incomplete",
        "fill in the required profile fields of the integration user (Site administration › \
         Users › Browse list of users)",
    ),
    config_code(
        "forcepasswordchangenotice",
        "the integration user is forced to change its password",
        "clear 'Force password change' on the integration user (Site administration › Users › \
         Browse list of users › Edit)",
    ),
    config_code(
        "nopasswordchangeforced",
        "the integration user is forced to change a password its authentication cannot change",
        "clear 'Force password change' on the integration user, or switch it to 'Web services \
         authentication' (Site administration › Users › Browse list of users › Edit)",
    ),
    config_code(
        "wsaccessuserunconfirmed",
        "the integration user's account is not confirmed",
        "confirm the integration user's account (Site administration › Users › Browse list of \
         users)",
    ),
    config_code(
        "cannotviewreport",
        "Moodle will not show the course's completion",
        "enable completion tracking on the site (Site administration › Advanced features) and \
         in the course (Course settings › Completion tracking), and give the integration user's \
         role report/completion:view",
    ),
    config_code(
        "nopermissiontoviewgrades",
        "Moodle will not show the course's grades",
        "give the integration user's role gradereport/user:view, moodle/grade:viewall and \
         moodle/grade:viewhidden at system level",
    ),
    config_code(
        "accessdenied",
        "the course uses separate groups and the integration user is in none of them",
        "give the integration user's role moodle/site:accessallgroups at system level",
    ),
    config_code(
        "notingroup",
        "the course uses separate groups and the integration user is in none of them",
        "give the integration user's role moodle/site:accessallgroups at system level",
    ),
    // ---- data: this record is wrong; retrying will not help -------------------------
    code(
        "invalidparameter",
        Data,
        "Moodle refused a value of this record",
    ),
    code_in(
        "invalidparameter",
        CREATE_USERS,
        Data,
        "Moodle refused the new user: its username or email is taken, or a value is invalid \
         (Moodle says which only with debugging on; look the user up by username and email)",
    ),
    code_in(
        "invalidparameter",
        ENROL,
        Data,
        "Moodle refused the enrolment: the course does not exist, or a value is invalid",
    ),
    code_in(
        "invalidparameter",
        UNENROL,
        Data,
        "Moodle refused the unenrolment: the user does not exist, or a value is invalid",
    ),
    code_in(
        "invalidparameter",
        USERS_BY_FIELD,
        Data,
        "Moodle refused the lookup value (a username must be lower case)",
    ),
    code(
        "errorinvalidparam",
        Data,
        "Moodle refused a course value (a blank name, or a language or theme that is not installed)",
    ),
    code(
        "enddatebeforestartdate",
        Data,
        "the course end date is before its start date",
    ),
    code(
        "nostartdatenoenddate",
        Data,
        "a course end date was sent without a start date",
    ),
    code(
        "invalidrecord",
        Data,
        "a Moodle record this call names does not exist",
    ),
    code(
        "invalidrecordunknown",
        Data,
        "a Moodle record this call names does not exist",
    ),
    code_in(
        "invalidrecord",
        UPDATE_COURSES,
        Data,
        "the Moodle course does not exist",
    ),
    code_in(
        "invalidrecordunknown",
        UPDATE_COURSES,
        Data,
        "the Moodle course does not exist",
    ),
    code_in(
        "invalidrecord",
        UNENROL,
        Data,
        "the Moodle course does not exist",
    ),
    code_in(
        "invalidrecord",
        GRADE_ITEMS,
        Data,
        "the Moodle course does not exist",
    ),
    code_in(
        "invalidrecord",
        COMPLETION,
        Data,
        "the Moodle course does not exist",
    ),
    code("invaliduser", Data, "the Moodle user does not exist"),
    code("invalidcourseid", Data, "the Moodle course does not exist"),
    code(
        "invalidcourse",
        Data,
        "the course is Moodle's front page, which this service must not change",
    ),
    code(
        "codingerror",
        Data,
        "Moodle rejected a value of this record (coding error)",
    ),
    code_in(
        "codingerror",
        ENROL,
        Data,
        "the Moodle user does not exist or is deleted",
    ),
    code_in(
        "codingerror",
        USERS_BY_FIELD,
        Data,
        "Moodle does not support this user lookup field",
    ),
    signal(
        Signal::EnrolUserMissing,
        Data,
        "the Moodle user does not exist or is deleted",
    ),
    code(
        "usernotenroled",
        Data,
        "the user has no active enrolment in the course",
    ),
    code(
        "nocriteriaset",
        Data,
        "the course has no completion criteria",
    ),
    code("userdeleted", Data, "the Moodle user is deleted"),
    code("usernotconfirmed", Data, "the Moodle user is not confirmed"),
    // ---- conflict: someone got there first; look up and link -------------------------
    code(
        "shortnametaken",
        Conflict,
        "another Moodle course already uses this shortname",
    ),
    code(
        "courseidnumbertaken",
        Conflict,
        "another Moodle course already uses this idnumber",
    ),
    // ---- defect: Moodle (or this service) misbehaved ---------------------------------
    code(
        "invalidresponse",
        Defect,
        "Moodle's answer broke its own declaration (a Moodle bug or a broken plugin)",
    ),
    code(
        "keyalreadyset",
        Defect,
        "the request repeated a search key (a bug in this service)",
    ),
    signal(
        Signal::NoErrorcode,
        Defect,
        "Moodle failed with an internal error",
    ),
    UNKNOWN_CODE,
    signal(
        Signal::BadShape,
        Defect,
        "Moodle's answer does not have the expected shape",
    ),
    signal(
        Signal::OddStatus,
        Defect,
        "Moodle answered with an unexpected HTTP status",
    ),
];

/// The row of any errorcode not above (also in [`CASES`], so the table is complete).
pub(super) const UNKNOWN_CODE: Case = signal(
    Signal::UnknownCode,
    Defect,
    "Moodle reported an error this service does not know",
);

/// The capabilities each function usually needs (moodle-ws.md §2 and §7), named in the
/// fix for `nopermissions`.
const CAPABILITIES: &[(&str, &str)] = &[
    (CREATE_COURSES, "moodle/course:create"),
    (
        UPDATE_COURSES,
        "moodle/course:update, moodle/course:changefullname, moodle/course:changesummary",
    ),
    (COURSES_BY_FIELD, "moodle/course:viewhiddencourses"),
    (CREATE_USERS, "moodle/user:create"),
    (
        USERS_BY_FIELD,
        "moodle/user:viewdetails, moodle/user:viewalldetails",
    ),
    (
        GET_USERS,
        "moodle/user:viewdetails, moodle/user:viewalldetails",
    ),
    (ENROL, "enrol/manual:enrol, moodle/role:assign"),
    (UNENROL, "enrol/manual:unenrol"),
    (GRADE_ITEMS, "gradereport/user:view, moodle/grade:viewall"),
    (COMPLETION, "report/completion:view"),
];

/// Fills the placeholders of a [`Case`] text for `error`.
pub(super) fn fill(template: &str, error: &MoodleError) -> String {
    let mut text = template.replace("{function}", error.function());
    if text.contains("{capability}") {
        text = text.replace("{capability}", &capability(error));
    }
    if text.contains("{role}") {
        let role = error
            .message()
            .and_then(|m| number_after(m, "role ("))
            .map_or_else(
                || "the enrolment role".to_owned(),
                |id| format!("role {id}"),
            );
        text = text.replace("{role}", &role);
    }
    if text.contains("{category}") {
        let category = error
            .message()
            .and_then(|m| number_after(m, "category id:"))
            .map_or_else(|| "the category".to_owned(), |id| format!("category {id}"));
        text = text.replace("{category}", &category);
    }
    text
}

/// The capability to grant: Moodle's human name from the message's last
/// parentheses ("… (Create courses)") and the usual capability of the function.
fn capability(error: &MoodleError) -> String {
    let named = error.message().and_then(last_parenthesised).filter(|n| {
        // "(1)" style ids are not capability names.
        !n.chars().all(|c| c.is_ascii_digit())
    });
    let usual = CAPABILITIES
        .iter()
        .find(|(f, _)| *f == error.function())
        .map(|(_, caps)| *caps);
    match (named, usual) {
        (Some(named), Some(usual)) => format!("'{named}' ({usual})"),
        (Some(named), None) => format!("'{named}'"),
        (None, Some(usual)) => usual.to_owned(),
        (None, None) => "the capability Moodle names".to_owned(),
    }
}

fn last_parenthesised(message: &str) -> Option<&str> {
    let close = message.rfind(')')?;
    let open = message[..close].rfind('(')?;
    let inner = message[open + 1..close].trim();
    (!inner.is_empty()).then_some(inner)
}

fn number_after<'a>(message: &'a str, marker: &str) -> Option<&'a str> {
    let start = message.find(marker)? + marker.len();
    let rest = message[start..].trim_start();
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    (end > 0).then(|| &rest[..end])
}
