//! The functions of the site, and `core_webservice_get_site_info` (moodle-ws.md §2.1).

use serde_json::{Value, json};

use super::course_reads::{
    courses_by_field, courses_by_field_params, get_courses, get_courses_params,
};
use super::courses::{
    create_courses, create_courses_params, update_courses, update_courses_params,
};
use super::enrolments::{
    assign_roles, assign_roles_params, enrol_params, enrol_users, enrolled_users,
    enrolled_users_params, unenrol_params, unenrol_users,
};
use super::envelope::Exc;
use super::grades::{
    completion_params, completion_status, course_grades, course_grades_params, grade_items,
    grade_items_params,
};
use super::params::{Desc, T, V, def_empty, multi, single, val};
use super::site::Site;
use super::users::{
    create_users_params, get_users, get_users_params, users_by_field, users_by_field_params,
};
use super::{FRONT_PAGE, TOKEN_USER};

pub(super) struct WsFunction {
    pub(super) name: &'static str,
    /// The owning component's version, as site info lists it.
    pub(super) version: &'static str,
    pub(super) params: fn() -> Desc,
    pub(super) run: Run,
    /// Optional top-level return keys the simulator never fills (see [`Format::success`]).
    pub(super) absent_optional: &'static [&'static str],
}

pub(super) enum Run {
    /// Runs under the site lock.
    Sync(fn(&mut Site, &V) -> Result<Value, Exc>),
    /// `core_user_create_users`, which may pause between its checks and its insert.
    CreateUsers,
}

const CORE: &str = "2024100700.09";
const PLUGIN: &str = "2024100700";

/// The functions the simulator implements; all of them are in the token's service at the start,
/// in the order the recorded site listed them.
pub(super) const FUNCTIONS: &[WsFunction] = &[
    WsFunction {
        name: "core_webservice_get_site_info",
        version: CORE,
        params: site_info_params,
        run: Run::Sync(site_info),
        absent_optional: &["userhomepageurl", "usersessionscount"],
    },
    WsFunction {
        name: "core_course_create_courses",
        version: CORE,
        params: create_courses_params,
        run: Run::Sync(create_courses),
        absent_optional: &[],
    },
    WsFunction {
        name: "core_course_update_courses",
        version: CORE,
        params: update_courses_params,
        run: Run::Sync(update_courses),
        absent_optional: &[],
    },
    WsFunction {
        name: "core_course_get_courses_by_field",
        version: CORE,
        params: courses_by_field_params,
        run: Run::Sync(courses_by_field),
        absent_optional: &[],
    },
    WsFunction {
        name: "core_course_get_courses",
        version: CORE,
        params: get_courses_params,
        run: Run::Sync(get_courses),
        absent_optional: &[],
    },
    WsFunction {
        name: "core_user_create_users",
        version: CORE,
        params: create_users_params,
        run: Run::CreateUsers,
        absent_optional: &[],
    },
    WsFunction {
        name: "core_user_get_users_by_field",
        version: CORE,
        params: users_by_field_params,
        run: Run::Sync(users_by_field),
        absent_optional: &[],
    },
    WsFunction {
        name: "core_user_get_users",
        version: CORE,
        params: get_users_params,
        run: Run::Sync(get_users),
        absent_optional: &[],
    },
    WsFunction {
        name: "enrol_manual_enrol_users",
        version: PLUGIN,
        params: enrol_params,
        run: Run::Sync(enrol_users),
        absent_optional: &[],
    },
    WsFunction {
        name: "enrol_manual_unenrol_users",
        version: PLUGIN,
        params: unenrol_params,
        run: Run::Sync(unenrol_users),
        absent_optional: &[],
    },
    WsFunction {
        name: "core_enrol_get_enrolled_users",
        version: CORE,
        params: enrolled_users_params,
        run: Run::Sync(enrolled_users),
        absent_optional: &[],
    },
    WsFunction {
        name: "gradereport_user_get_grade_items",
        version: PLUGIN,
        params: grade_items_params,
        run: Run::Sync(grade_items),
        absent_optional: &[],
    },
    WsFunction {
        name: "gradereport_overview_get_course_grades",
        version: PLUGIN,
        params: course_grades_params,
        run: Run::Sync(course_grades),
        absent_optional: &[],
    },
    WsFunction {
        name: "core_completion_get_course_completion_status",
        version: CORE,
        params: completion_params,
        run: Run::Sync(completion_status),
        absent_optional: &[],
    },
    WsFunction {
        name: "core_role_assign_roles",
        version: CORE,
        params: assign_roles_params,
        run: Run::Sync(assign_roles),
        absent_optional: &[],
    },
];

/// Real Moodle functions the simulator does not implement: they exist on the site but are not in
/// the token's service, so calling one gives `accessexception`, not `invalidrecord`.
pub(super) const OTHER_FUNCTIONS: &[&str] = &[
    "core_course_delete_courses",
    "core_course_get_categories",
    "core_enrol_get_users_courses",
    "core_grades_update_grades",
    "core_group_create_groups",
    "core_role_unassign_roles",
    "core_user_delete_users",
    "core_user_update_users",
];

fn site_info_params() -> Desc {
    // Deprecated and ignored, but still declared (so it is accepted).
    single(vec![def_empty(
        "serviceshortnames",
        multi(val(T::AlphaNumExt)),
    )])
}

fn site_info(site: &mut Site, _: &V) -> Result<Value, Exc> {
    let functions: Vec<Value> = site
        .cfg
        .service
        .iter()
        .filter_map(|name| FUNCTIONS.iter().find(|f| f.name == *name))
        .map(|f| json!({"name": f.name, "version": f.version}))
        .collect();
    let features: Vec<Value> = [
        ("usecomments", 1),
        ("usetags", 1),
        ("enablenotes", 1),
        ("messaging", 1),
        ("enableblogs", 1),
        ("enablecompletion", 1),
        ("enablebadges", 1),
        ("messagingallusers", 0),
        ("enablecustomreports", 1),
        ("enableglobalsearch", 0),
        ("mnet_dispatcher_mode", 0),
        ("enablecompetencies", 1),
    ]
    .iter()
    .map(|(name, value)| json!({"name": name, "value": value}))
    .collect();
    // Nothing removes the token user, but its absence must not take the server down.
    let Some(user) = site.db.users.get(&TOKEN_USER) else {
        return Err(Exc::invalid_user(TOKEN_USER));
    };
    Ok(json!({
        "sitename": "Fake Moodle",
        "username": user.username,
        "firstname": user.firstname,
        "lastname": user.lastname,
        "fullname": user.fullname(),
        "lang": "en",
        "userid": TOKEN_USER,
        "siteurl": site.url,
        "userpictureurl": format!("{}/theme/image.php/boost/core/1/u/f1", site.url),
        "functions": functions,
        "downloadfiles": 0,
        "uploadfiles": 0,
        "release": "4.5+ (Build: 20241205)",
        "version": CORE,
        "mobilecssurl": "",
        "advancedfeatures": features,
        "usercanmanageownfiles": true,
        "userquota": 104857600,
        "usermaxuploadfilesize": 67108864,
        "userhomepage": 1,
        "userprivateaccesskey": "0123456789abcdef0123456789abcdef",
        "siteid": FRONT_PAGE,
        "sitecalendartype": "gregorian",
        "usercalendartype": "gregorian",
        "userissiteadmin": false,
        "theme": "boost",
        "limitconcurrentlogins": 0,
        "policyagreed": 0,
    }))
}

/// A JSON number that is an integer when the value is whole (as PHP encodes 100.0 here).
pub(super) fn num(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        json!(x as i64)
    } else {
        json!(x)
    }
}
