//! The Moodle probes: site, token, site address, functions, category, role, users.
//!
//! What Moodle cannot tell through the service's own functions is not guessed:
//! * the course category: there is no read for categories in the service's functions,
//!   and courses-by-category says nothing about an empty category. The check calls
//!   `core_course_create_courses` with a course Moodle must refuse (blank names, end
//!   before start). Moodle checks the category, then `moodle/course:create` there, then
//!   the names, all before writing anything, so `errorinvalidparam` proves the category
//!   exists and courses may be created in it (fixture `blank_shortname`).
//! * the enrolment role: there is no read for roles either. The check enrols the token
//!   user, suspended, on the front page. Moodle checks `enrol/manual:enrol` and whether
//!   the role may be assigned in course context, then looks for the course's manual
//!   enrolment method, which the front page never has (Moodle offers no enrolment
//!   methods there), so `wsnoinstance` proves the role is assignable and nothing is
//!   enrolled.
//! * seeing users: the token user always sees its own details, so it proves nothing.
//!   The check looks up another account by id (the administrator created at install,
//!   id 2, else the guest user, id 1) and looks for `username` (shown only with
//!   `moodle/user:viewalldetails`, which idnumber look-ups need too) and `email` (shown
//!   with `moodle/site:viewuseridentity` when email is an identity field).

use super::report::{CheckRow, Status, fail, origin, pass, row};
use crate::config::TenantConfig;
use crate::moodle::wsfunction::{CREATE_COURSES, ENROL, USERS_BY_FIELD};
use crate::moodle::{
    Enrolment, Moodle, MoodleError, NewCourse, SiteInfo, UserField, fix_add_functions,
    fix_grant_capabilities, required_functions,
};

/// The name of the first row, which a failed check itself is reported in.
pub(super) const SITE: &str = "Moodle site";
const TOKEN: &str = "token";
const SITE_URL: &str = "site address";
const FUNCTIONS: &str = "web-service functions";
const USERS_IDNUMBER: &str = "users by idnumber";
const USERS_EMAIL: &str = "users by email";

/// The Moodle rows, in order; those that need a failed one are "not run".
pub(super) async fn rows(config: &TenantConfig, moodle: &dyn Moodle) -> Vec<CheckRow> {
    let endpoint = format!("{}/webservice/rest/server.php", config.moodle_url);
    let info = match moodle.site_info().await {
        Ok(info) => info,
        Err(e @ MoodleError::Exception { .. }) => {
            // Moodle's own error envelope: the site answers, the token is the problem.
            let mut rows = vec![
                pass("site", SITE, format!("{endpoint} answers as Moodle")),
                failed_call("token", TOKEN, &e),
            ];
            rows.extend(not_run(dependents(config), "the token was refused"));
            return rows;
        }
        Err(e) => {
            let mut rows = vec![site_failure(config, &endpoint, &e)];
            rows.extend(not_run(
                [("token", TOKEN.to_owned())]
                    .into_iter()
                    .chain(dependents(config)),
                "the Moodle site check failed",
            ));
            return rows;
        }
    };
    let version = info
        .release
        .as_deref()
        .or(info.version.as_deref())
        .unwrap_or("of an unknown version");
    let mut rows = vec![
        pass(
            "site",
            SITE,
            format!(
                "{endpoint} answers as Moodle {version} (\"{}\")",
                // Moodle's own text: kept to one line in the table.
                info.sitename
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        ),
        pass(
            "token",
            TOKEN,
            format!(
                "accepted; it belongs to {} (user id {})",
                info.username, info.userid
            ),
        ),
    ];
    if !same_site(&info.siteurl, &config.moodle_url) {
        rows.push(fail(
            "site_url",
            SITE_URL,
            format!(
                "the site calls itself {} but moodle_url is {}: the token belongs to the site at \
                 {0}",
                info.siteurl, config.moodle_url
            ),
            format!(
                "set moodle_url to {} exactly (the site's wwwroot, as in its config.php); if that \
                 is not the site this tenant should use, create a token on the site at {}",
                info.siteurl, config.moodle_url
            ),
        ));
        let rest = dependents(config).into_iter().skip(1);
        rows.extend(not_run(rest, "moodle_url is not the token's site"));
        return rows;
    }
    rows.push(pass(
        "site_url",
        SITE_URL,
        format!("the site's wwwroot is moodle_url ({})", info.siteurl),
    ));
    rows.push(functions_row(config, &info));
    let (category, role, users) = tokio::join!(
        category_row(config, moodle, &info),
        role_row(config, moodle, &info),
        user_rows(moodle, &info),
    );
    rows.push(category);
    rows.push(role);
    rows.extend(users);
    rows
}

/// The site row when no Moodle answer came back: each cause in its own words.
fn site_failure(config: &TenantConfig, endpoint: &str, e: &MoodleError) -> CheckRow {
    let origin = origin(&config.moodle_url);
    match e {
        MoodleError::Transport { timeout: true, .. } => fail(
            "site",
            SITE,
            format!(
                "no answer from {endpoint} within {}",
                humantime::format_duration(config.moodle_timeout)
            ),
            "check that Moodle is up and that this host can reach it (firewall, proxy); if it \
             is only slow, raise moodle_timeout"
                .into(),
        ),
        MoodleError::Transport { detail, .. } if e.is_tls_failure() => fail(
            "site",
            SITE,
            format!(
                "the TLS handshake with {origin} failed: {}",
                // The client's detail starts "TLS handshake failed: <cause>".
                detail
                    .split_once(": ")
                    .map_or(detail.as_str(), |(_, cause)| cause)
            ),
            format!(
                "{origin} must present a certificate for its host name from a trusted authority, \
                 intermediate certificates included; if the site does not use HTTPS on that \
                 port, correct the scheme or port in moodle_url"
            ),
        ),
        MoodleError::Transport { detail, .. } => fail(
            "site",
            SITE,
            format!("Moodle is unreachable at {origin}: {detail}"),
            "check the host name and port in moodle_url, and that this host may connect to it \
             (DNS, firewall, proxy)"
                .into(),
        ),
        _ => failed_call("site", SITE, e),
    }
}

fn functions_row(config: &TenantConfig, info: &SiteInfo) -> CheckRow {
    let grades = !config.grades.poll_interval.is_zero();
    let required = required_functions(grades, config.grades.completion);
    let missing: Vec<&str> = required
        .iter()
        .copied()
        .filter(|f| !allowed(info, f))
        .collect();
    if missing.is_empty() {
        let scope = if grades { ", grades included" } else { "" };
        pass(
            "functions",
            FUNCTIONS,
            format!(
                "all {} functions the service calls are in the token's service{scope}",
                required.len()
            ),
        )
    } else {
        fail(
            "functions",
            FUNCTIONS,
            format!("missing from the token's service: {}", missing.join(", ")),
            fix_add_functions(&missing),
        )
    }
}

fn allowed(info: &SiteInfo, function: &str) -> bool {
    info.functions.iter().any(|f| f == function)
}

fn function_missing(id: &'static str, name: String, function: &str) -> CheckRow {
    row(
        id,
        name,
        Status::NotRun,
        format!("not run: {function} is not in the token's service (see {FUNCTIONS})"),
    )
}

/// A course Moodle must refuse after its category and capability checks: the blank
/// names stop `create_courses`, and the end before the start would stop `create_course`
/// if a version skipped the name check. Hidden, in case both ever failed.
fn probe_course(category_id: i64) -> NewCourse {
    NewCourse {
        fullname: " ".into(),
        shortname: " ".into(),
        categoryid: category_id,
        idnumber: String::new(),
        summary: None,
        startdate: Some(2),
        enddate: Some(1),
        visible: Some(false),
    }
}

async fn category_row(config: &TenantConfig, moodle: &dyn Moodle, info: &SiteInfo) -> CheckRow {
    let name = category_name(config);
    if !allowed(info, CREATE_COURSES) {
        return function_missing("category", name, CREATE_COURSES);
    }
    let id = config.category_id;
    match moodle.create_course(&probe_course(id)).await {
        Err(e) if e.errorcode() == Some("errorinvalidparam") => pass(
            "category",
            name,
            format!(
                "category {id} exists and the integration user may create courses in it \
                 (Moodle checked both, then refused a probe course with blank names; nothing \
                 was created)"
            ),
        ),
        Err(e) => failed_call("category", name, &e),
        Ok(course) => fail(
            "category",
            name,
            format!(
                "category {id} exists, but Moodle created the probe course {course} it should \
                 have refused"
            ),
            format!(
                "delete course {course} (hidden, with a blank name) and report this Moodle \
                 version to the maintainers of apit-moodle-sync"
            ),
        ),
    }
}

async fn role_row(config: &TenantConfig, moodle: &dyn Moodle, info: &SiteInfo) -> CheckRow {
    let name = role_name(config);
    if !allowed(info, ENROL) {
        return function_missing("role", name, ENROL);
    }
    let role = config.role_id;
    // The front page: Moodle's SITEID, 1 unless the site says otherwise.
    let front_page = info.siteid.unwrap_or(1);
    let probe = Enrolment {
        roleid: role,
        userid: info.userid,
        courseid: front_page,
        suspend: true,
    };
    match moodle.enrol(&probe).await {
        Err(e) if e.errorcode() == Some("wsnoinstance") => pass(
            "role",
            name,
            format!(
                "role {role} exists and the integration user may assign it in courses (Moodle \
                 checked it on the front page, which has no enrolment method; nothing was \
                 enrolled)"
            ),
        ),
        Err(e) => failed_call("role", name, &e),
        Ok(()) => pass(
            "role",
            name,
            format!(
                "role {role} exists and may be assigned; the front page unexpectedly has a \
                 manual enrolment method, so {} is now enrolled there, suspended: unenrol it \
                 (Front page › Participants)",
                info.username
            ),
        ),
    }
}

/// The administrator account Moodle creates at install, then the guest user (which
/// Moodle never deletes).
const OTHER_USERS: [(i64, &str); 2] = [
    (2, "the administrator created at install"),
    (1, "the guest user"),
];

async fn user_rows(moodle: &dyn Moodle, info: &SiteInfo) -> Vec<CheckRow> {
    if !allowed(info, USERS_BY_FIELD) {
        return vec![
            function_missing("users_idnumber", USERS_IDNUMBER.into(), USERS_BY_FIELD),
            function_missing("users_email", USERS_EMAIL.into(), USERS_BY_FIELD),
        ];
    }
    let candidates: Vec<(i64, &str)> = OTHER_USERS
        .into_iter()
        .filter(|(id, _)| *id != info.userid)
        .collect();
    let mut seen = None;
    for (id, who) in &candidates {
        match moodle.users_by_field(UserField::Id, &id.to_string()).await {
            Ok(users) => {
                if let Some(user) = users.into_iter().find(|u| u.id == *id) {
                    seen = Some((user, *who));
                    break;
                }
            }
            Err(e) => {
                return vec![
                    failed_call("users_idnumber", USERS_IDNUMBER, &e),
                    row(
                        "users_email",
                        USERS_EMAIL,
                        Status::NotRun,
                        "not run: the user look-up failed".into(),
                    ),
                ];
            }
        }
    }
    let Some((user, who)) = seen else {
        let ids: Vec<String> = candidates.iter().map(|(id, _)| id.to_string()).collect();
        return vec![
            fail(
                "users_idnumber",
                USERS_IDNUMBER,
                format!(
                    "Moodle returns no other user (asked for user {}): the integration user \
                     cannot see other profiles, so look-ups find nobody and the service would \
                     create duplicate accounts",
                    ids.join(" and ")
                ),
                fix_grant_capabilities(
                    "moodle/user:viewdetails, moodle/user:viewalldetails and \
                     moodle/site:viewuseridentity",
                ),
            ),
            row(
                "users_email",
                USERS_EMAIL,
                Status::NotRun,
                "not run: no other user is visible".into(),
            ),
        ];
    };
    let subject = format!("user {} ({who})", user.id);
    let idnumber = match &user.username {
        Some(username) => pass(
            "users_idnumber",
            USERS_IDNUMBER,
            format!(
                "{subject} comes back with its username ({username}), shown only with \
                 moodle/user:viewalldetails: look-ups by idnumber see every account"
            ),
        ),
        None => fail(
            "users_idnumber",
            USERS_IDNUMBER,
            format!(
                "{subject} comes back without its username: the integration user lacks \
                 moodle/user:viewalldetails, so look-ups by idnumber find nobody and the \
                 service would create duplicate accounts"
            ),
            fix_grant_capabilities("moodle/user:viewalldetails"),
        ),
    };
    let email = match &user.email {
        Some(_) => pass(
            "users_email",
            USERS_EMAIL,
            format!("{subject} comes back with its email: look-ups by email see accounts"),
        ),
        None => fail(
            "users_email",
            USERS_EMAIL,
            format!(
                "{subject} comes back without its email: look-ups by email find nobody, so \
                 existing accounts are not matched and creating a user whose email is taken \
                 cannot be explained"
            ),
            format!(
                "{}, and keep 'Email address' ticked in Site administration › Users › \
                 Permissions › User policies › Show user identity",
                fix_grant_capabilities("moodle/site:viewuseridentity")
            ),
        ),
    };
    vec![idnumber, email]
}

/// A failed Moodle call as a row: the error's own line and its fix from the error table.
/// The table gives fixes for configuration problems only; a transient one gets advice
/// here (the service itself would just retry it).
fn failed_call(id: &'static str, name: impl Into<String>, e: &MoodleError) -> CheckRow {
    let fix = e.fix().unwrap_or_else(|| {
        if e.errorcode() == Some("sitemaintenance") {
            MAINTENANCE.to_owned()
        } else {
            TRY_LATER.to_owned()
        }
    });
    fail(id, name, e.what(), fix)
}

const TRY_LATER: &str = "Moodle or a proxy in front of it is failing: run the check again \
     later, and if it persists ask the Moodle host to check the web server's error log";

const MAINTENANCE: &str = "run the check again once Moodle leaves maintenance mode (Site \
     administration › Server › Maintenance mode)";

/// The rows that need a working site and token, in order, for "not run".
fn dependents(config: &TenantConfig) -> Vec<(&'static str, String)> {
    vec![
        ("site_url", SITE_URL.to_owned()),
        ("functions", FUNCTIONS.to_owned()),
        ("category", category_name(config)),
        ("role", role_name(config)),
        ("users_idnumber", USERS_IDNUMBER.to_owned()),
        ("users_email", USERS_EMAIL.to_owned()),
    ]
}

fn not_run(rows: impl IntoIterator<Item = (&'static str, String)>, reason: &str) -> Vec<CheckRow> {
    rows.into_iter()
        .map(|(id, name)| row(id, name, Status::NotRun, format!("not run: {reason}")))
        .collect()
}

fn category_name(config: &TenantConfig) -> String {
    format!("course category {}", config.category_id)
}

fn role_name(config: &TenantConfig) -> String {
    format!("enrolment role {}", config.role_id)
}

/// Whether two site addresses name the same site: scheme, host and port equal (case-
/// insensitively, default ports filled in) and the same path without trailing slashes.
fn same_site(a: &str, b: &str) -> bool {
    match (reqwest::Url::parse(a), reqwest::Url::parse(b)) {
        (Ok(x), Ok(y)) => {
            x.scheme() == y.scheme()
                && x.host_str().map(str::to_ascii_lowercase)
                    == y.host_str().map(str::to_ascii_lowercase)
                && x.port_or_known_default() == y.port_or_known_default()
                && x.path().trim_end_matches('/') == y.path().trim_end_matches('/')
        }
        _ => a.trim_end_matches('/') == b.trim_end_matches('/'),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_addresses_compare_like_urls() {
        assert!(same_site(
            "https://Moodle.example.org",
            "https://moodle.example.org/"
        ));
        assert!(same_site(
            "https://m.example.org:443/lms",
            "https://m.example.org/lms/"
        ));
        assert!(!same_site("http://m.example.org", "https://m.example.org"));
        assert!(!same_site(
            "https://m.example.org/lms",
            "https://m.example.org"
        ));
        assert!(!same_site("http://127.0.0.1:8080", "http://localhost:8080"));
    }
}
