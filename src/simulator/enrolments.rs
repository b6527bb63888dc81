//! Manual enrolments, enrolled users and role assignments (moodle-ws.md §2.9–§2.11).

use serde_json::{Map, Value, json};

use super::envelope::Exc;
use super::params::{Desc, T, V, clean, def_empty, multi, opt, req, single, val};
use super::php::{php_empty, php_intval};
use super::site::{EnrolRow, ROLES, Site, UserRow};
use super::users::user_details;
use super::{FRONT_PAGE, MOODLE_DIR, ManualInstance, now};

pub(super) fn enrol_params() -> Desc {
    single(vec![req(
        "enrolments",
        multi(single(vec![
            req("roleid", val(T::Int)),
            req("userid", val(T::Int)),
            req("courseid", val(T::Int)),
            opt("timestart", val(T::Int)),
            opt("timeend", val(T::Int)),
            opt("suspend", val(T::Int)),
        ])),
    )])
}

pub(super) fn unenrol_params() -> Desc {
    single(vec![req(
        "enrolments",
        multi(single(vec![
            req("userid", val(T::Int)),
            req("courseid", val(T::Int)),
            opt("roleid", val(T::Int)),
        ])),
    )])
}

/// `get_assignable_roles` for the integration role: student, teacher, editingteacher.
fn can_assign(site: &Site, roleid: i64) -> bool {
    site.can("moodle/role:assign")
        && ROLES
            .iter()
            .any(|(id, _, assignable)| *id == roleid && *assignable)
}

fn no_instance() -> Exc {
    // Moodle passes the course id as the link, not as `$a`: the placeholder stays unfilled.
    Exc::moodle(
        "wsnoinstance",
        "Manual enrolment plugin instance doesn't exist or is disabled for the course (id = {$a->courseid})",
    )
}

/// `enrol_manual_external::enrol_users`: one transaction for the whole list.
pub(super) fn enrol_users(site: &mut Site, p: &V) -> Result<Value, Exc> {
    let mut db = site.db.clone();
    for e in p.list("enrolments") {
        let (roleid, userid, courseid) = (e.int("roleid")?, e.int("userid")?, e.int("courseid")?);
        let Some(course) = db.courses.get(&courseid) else {
            return Err(Exc::invalid_parameter("Context does not exist".into()));
        };
        site.require("enrol/manual:enrol")?;
        if !can_assign(site, roleid) {
            return Err(Exc::moodle(
                "wsusercannotassign",
                &format!(
                    "You don't have the permission to assign this role ({roleid}) to this user \
                     ({userid}) in this course ({courseid})."
                ),
            ));
        }
        if course.manual != ManualInstance::Enabled {
            return Err(no_instance());
        }
        if !db.users.contains_key(&userid) {
            // Moodle 4.5 (fixture unknown_user): a PHP TypeError, no errorcode; rolled back.
            return Err(Exc::php(
                "TypeError",
                &format!(
                    "core\\user::get_name_placeholders(): Argument #1 ($user) must be of type \
                     stdClass, bool given, called in {MOODLE_DIR}/lib/enrollib.php on line 3677"
                ),
            ));
        }
        // Enrolling again overwrites status and dates (missing keys count as 0 / active)
        // and adds the role if it is new; it never removes a role.
        let row = EnrolRow {
            suspended: e.opt_int("suspend")?.unwrap_or(0) != 0,
            timestart: e.opt_int("timestart")?.unwrap_or(0),
            timeend: e.opt_int("timeend")?.unwrap_or(0),
        };
        db.enrolments.insert((courseid, userid), row);
        db.assign_role(courseid, userid, roleid);
    }
    site.db = db;
    Ok(Value::Null)
}

/// `enrol_manual_external::unenrol_users`: one transaction for the whole list.
pub(super) fn unenrol_users(site: &mut Site, p: &V) -> Result<Value, Exc> {
    let mut db = site.db.clone();
    for e in p.list("enrolments") {
        let (userid, courseid) = (e.int("userid")?, e.int("courseid")?);
        let Some(course) = db.courses.get(&courseid) else {
            return Err(Exc::missing_course(courseid));
        };
        site.require("enrol/manual:unenrol")?;
        // A disabled instance is still used for unenrolling.
        if course.manual == ManualInstance::Missing {
            return Err(no_instance());
        }
        if !db.users.contains_key(&userid) {
            return Err(Exc::invalid_parameter(format!(
                "User id not exist: {userid}"
            )));
        }
        if db.enrolments.remove(&(courseid, userid)).is_some() {
            // That was the user's last enrolment in the course (the simulator has only manual
            // ones): Moodle removes every role there and deletes the gradebook grades.
            db.role_assignments
                .retain(|(c, u, _)| !(*c == courseid && *u == userid));
            db.grades.remove(&(courseid, userid));
        }
    }
    site.db = db;
    Ok(Value::Null)
}

pub(super) fn enrolled_users_params() -> Desc {
    single(vec![
        req("courseid", val(T::Int)),
        def_empty(
            "options",
            multi(single(vec![
                req("name", val(T::AlphaNumExt)),
                req("value", val(T::Raw)),
            ])),
        ),
    ])
}

/// The fields `user_get_user_details` accepts in `userfields`.
#[rustfmt::skip]
const USER_FIELDS: &[&str] = &[
    "id", "username", "fullname", "firstname", "lastname", "email", "address", "phone1",
    "phone2", "department", "institution", "idnumber", "interests", "firstaccess", "lastaccess",
    "lastcourseaccess", "auth", "suspended", "confirmed", "lang", "theme", "timezone",
    "mailformat", "trackforums", "description", "descriptionformat", "city", "country", "url",
    "profileimageurlsmall", "profileimageurl", "customfields", "groups", "roles", "preferences",
    "enrolledcourses",
];

/// `core_enrol_external::get_enrolled_users`: active and suspended users, by user id.
pub(super) fn enrolled_users(site: &mut Site, p: &V) -> Result<Value, Exc> {
    let courseid = p.int("courseid")?;
    let (mut onlyactive, mut onlysuspended) = (false, false);
    let mut userfields: Vec<String> = Vec::new();
    let (mut limitfrom, mut limitnumber) = (0usize, 0usize);
    let (mut sortby, mut descending) = ("id", false);
    for o in p.list("options") {
        let value = o.str("value")?;
        match o.str("name")? {
            "onlyactive" => onlyactive = !php_empty(value),
            "onlysuspended" => onlysuspended = !php_empty(value),
            "userfields" => {
                userfields = value.split(',').map(|f| clean(T::AlphaNumExt, f)).collect()
            }
            "limitfrom" => limitfrom = php_intval(value).max(0) as usize,
            "limitnumber" => limitnumber = php_intval(value).max(0) as usize,
            "sortby" => {
                sortby = match value {
                    "id" | "siteorder" => "id",
                    "firstname" => "firstname",
                    "lastname" => "lastname",
                    _ => {
                        return Err(Exc::invalid_parameter(format!(
                            "Invalid value for sortby parameter (value: {value}),allowed values are: id,firstname,lastname,siteorder"
                        )));
                    }
                }
            }
            "sortdirection" => match value.to_uppercase().as_str() {
                "ASC" => descending = false,
                "DESC" => descending = true,
                other => {
                    return Err(Exc::invalid_parameter(format!(
                        "Invalid value for sortdirection parameter (value: {other}),allowed values are: ASC,DESC"
                    )));
                }
            },
            // withcapability and groupid are not modelled; unknown names are ignored.
            _ => {}
        }
    }
    if !site.db.courses.contains_key(&courseid) {
        return Err(Exc::missing_course(courseid));
    }
    site.require("moodle/course:viewparticipants")?;
    if onlyactive || onlysuspended {
        site.require("moodle/course:enrolreview")?;
    }
    if onlyactive && onlysuspended {
        return Err(Exc::coding(
            "Both onlyactive and onlysuspended are set, this is probably not what you want!",
            None,
        ));
    }
    if let Some(bad) = userfields
        .iter()
        .find(|f| !USER_FIELDS.contains(&f.as_str()))
    {
        return Err(Exc::moodle(
            "invaliduserfield",
            &format!("Invalid user field: {bad}"),
        ));
    }
    let at = now();
    let mut users: Vec<&UserRow> = site
        .db
        .enrolments
        .keys()
        .filter(|(c, _)| *c == courseid)
        .filter(|(c, u)| {
            let active = site.db.is_active(*c, *u, at);
            (!onlyactive || active) && (!onlysuspended || !active)
        })
        .filter_map(|(_, u)| site.db.users.get(u))
        .collect();
    match sortby {
        "firstname" => users.sort_by(|a, b| a.firstname.cmp(&b.firstname)),
        "lastname" => users.sort_by(|a, b| a.lastname.cmp(&b.lastname)),
        _ => users.sort_by_key(|u| u.id),
    }
    if descending {
        users.reverse();
    }
    let take = if limitnumber == 0 {
        usize::MAX
    } else {
        limitnumber
    };
    let out: Vec<Value> = users
        .into_iter()
        .skip(limitfrom)
        .take(take)
        .filter_map(|u| enrolled_user_json(site, u, courseid, &userfields, at))
        .collect();
    Ok(Value::Array(out))
}

/// `user_get_user_details` in a course, as the recorded site returned it.
fn enrolled_user_json(
    site: &Site,
    u: &UserRow,
    courseid: i64,
    fields: &[String],
    at: i64,
) -> Option<Value> {
    let details = user_details(site, u)?;
    let wanted = |f: &str| {
        fields.is_empty() || fields.iter().any(|x| x == f) || f == "id" || f == "fullname"
    };
    let mut m = Map::new();
    for key in [
        "id",
        "username",
        "fullname",
        "email",
        "department",
        "idnumber",
        "firstaccess",
        "lastaccess",
    ] {
        if let Some(v) = details.get(key).filter(|_| wanted(key)) {
            m.insert(key.into(), v.clone());
        }
    }
    if wanted("lastcourseaccess") {
        m.insert("lastcourseaccess".into(), json!(0));
    }
    for key in ["profileimageurlsmall", "profileimageurl"] {
        if let Some(v) = details.get(key).filter(|_| wanted(key)) {
            m.insert(key.into(), v.clone());
        }
    }
    if wanted("roles") {
        let roles: Vec<Value> = site
            .db
            .roles_of(courseid, u.id)
            .into_iter()
            .map(|r| {
                let shortname = ROLES
                    .iter()
                    .find(|(id, _, _)| *id == r)
                    .map_or("", |(_, s, _)| s);
                json!({"roleid": r, "name": "", "shortname": shortname, "sortorder": 0})
            })
            .collect();
        m.insert("roles".into(), json!(roles));
    }
    if wanted("enrolledcourses") {
        // Only courses with an active enrolment; the key is left out when there is none.
        let courses: Vec<Value> = site
            .db
            .courses
            .values()
            .filter(|c| c.id != FRONT_PAGE && site.db.is_active(c.id, u.id, at))
            .map(|c| json!({"id": c.id, "fullname": c.fullname, "shortname": c.shortname}))
            .collect();
        if !courses.is_empty() {
            m.insert("enrolledcourses".into(), json!(courses));
        }
    }
    Some(Value::Object(m))
}

pub(super) fn assign_roles_params() -> Desc {
    single(vec![req(
        "assignments",
        multi(single(vec![
            req("roleid", val(T::Int)),
            req("userid", val(T::Int)),
            opt("contextid", val(T::Int)),
            opt("contextlevel", val(T::Alpha)),
            opt("instanceid", val(T::Int)),
        ])),
    )])
}

/// `core_role_external::assign_roles`, for course contexts only (the simulator has no context ids).
pub(super) fn assign_roles(site: &mut Site, p: &V) -> Result<Value, Exc> {
    let mut db = site.db.clone();
    for a in p.list("assignments") {
        let (roleid, userid) = (a.int("roleid")?, a.int("userid")?);
        let courseid = match (
            a.opt_int("contextid")?,
            a.opt_str("contextlevel")?,
            a.opt_int("instanceid")?,
        ) {
            (None, Some("course"), Some(instance)) => instance,
            (None, Some("system" | "user" | "coursecat" | "module" | "block"), Some(_)) => {
                return Err(Exc::invalid_parameter(
                    "The fake Moodle assigns roles in course contexts only".into(),
                ));
            }
            (None, Some(_), Some(_)) => {
                return Err(Exc::invalid_parameter(
                    "Invalid context level parameter".into(),
                ));
            }
            (Some(_), _, _) => return Err(Exc::invalid_parameter("Context does not exist".into())),
            _ => return Err(Exc::invalid_parameter("Missing parameters".into())),
        };
        if !db.courses.contains_key(&courseid) {
            return Err(Exc::invalid_parameter("Context does not exist".into()));
        }
        site.require("moodle/role:assign")?;
        if !can_assign(site, roleid) {
            return Err(Exc::invalid_parameter(format!(
                "Can not assign roleid={roleid} in contextid="
            )));
        }
        if !db.users.contains_key(&userid) {
            return Err(Exc::coding("User ID does not exist or is deleted!", None));
        }
        db.assign_role(courseid, userid, roleid);
    }
    site.db = db;
    Ok(Value::Null)
}
