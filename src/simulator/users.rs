//! Users: create, look up by field or by criteria, and what the caller may see of a profile
//! (moodle-ws.md §2.6–§2.8).

use serde_json::{Map, Value, json};

use super::TOKEN_USER;
use super::envelope::Exc;
use super::params::{
    AUTH_PLUGINS, Desc, INTERNAL_AUTHS, LANGS, T, THEMES, V, clean, def, multi, opt, req, single,
    val,
};
use super::php::{like_match, php_empty, php_intval, php_trim, validate_email};
use super::site::{Site, UserRow, check_widths};

/// Column widths of `mdl_user` (moodle-ws.md §3).
const USER_COLUMNS: &[(&str, usize)] = &[
    ("username", 100),
    ("firstname", 100),
    ("lastname", 100),
    ("email", 100),
    ("idnumber", 255),
    ("auth", 20),
    ("city", 120),
    ("institution", 255),
    ("department", 255),
    ("address", 255),
    ("phone1", 20),
    ("phone2", 20),
];

pub(super) fn create_users_params() -> Desc {
    let pairs = |first: &'static str, t: T| {
        multi(single(vec![req(first, val(t)), req("value", val(T::Raw))]))
    };
    single(vec![req(
        "users",
        multi(single(vec![
            req("username", val(T::Username)),
            def("auth", val(T::Auth), "manual"),
            opt("createpassword", val(T::Bool)),
            opt("password", val(T::Raw)),
            req("firstname", val(T::NoTags)),
            req("lastname", val(T::NoTags)),
            req("email", val(T::RawTrimmed)),
            def("idnumber", val(T::Raw), ""),
            def("lang", val(T::Lang), "en"),
            def("calendartype", val(T::Plugin), "gregorian"),
            opt("theme", val(T::Theme)),
            opt("timezone", val(T::Timezone)),
            opt("mailformat", val(T::Int)),
            opt("maildisplay", val(T::Int)),
            opt("description", val(T::Text)),
            opt("city", val(T::NoTags)),
            opt("country", val(T::Alpha)),
            opt("firstnamephonetic", val(T::NoTags)),
            opt("lastnamephonetic", val(T::NoTags)),
            opt("middlename", val(T::NoTags)),
            opt("alternatename", val(T::NoTags)),
            opt("interests", val(T::Text)),
            opt("institution", val(T::Text)),
            opt("department", val(T::Text)),
            opt("phone1", val(T::NoTags)),
            opt("phone2", val(T::NoTags)),
            opt("address", val(T::Text)),
            opt("preferences", pairs("type", T::Raw)),
            opt("customfields", pairs("type", T::AlphaNumExt)),
        ])),
    )])
}

/// Moodle's default password policy; `Some` is the HTML that becomes the "errorcode".
fn password_policy_errors(password: &str) -> Option<String> {
    let count = |f: fn(&char) -> bool| password.chars().filter(f).count();
    let mut errors = String::new();
    if password.chars().count() < 8 {
        errors.push_str("<div>Passwords must be at least 8 characters long.</div>");
    }
    if count(char::is_ascii_digit) < 1 {
        errors.push_str("<div>Passwords must have at least 1 digit(s).</div>");
    }
    if count(|c| c.is_lowercase()) < 1 {
        errors.push_str("<div>Passwords must have at least 1 lower case letter(s).</div>");
    }
    if count(|c| c.is_uppercase()) < 1 {
        errors.push_str("<div>Passwords must have at least 1 upper case letter(s).</div>");
    }
    if count(|c| !c.is_alphanumeric()) < 1 {
        errors.push_str(
            "<div>The password must have at least 1 special character(s) such as *, -, or #.</div>",
        );
    }
    (!errors.is_empty()).then_some(errors)
}

/// The checks of `core_user_external::create_users` and `user_create_user`, in Moodle's
/// order; the result is the rows to insert (ids are given at commit).
pub(super) fn plan_create_users(site: &Site, p: &V) -> Result<Vec<UserRow>, Exc> {
    site.require("moodle/user:create")?;
    let mut planned: Vec<UserRow> = Vec::new();
    for u in p.list("users") {
        let invalid = |reason: String| Err(Exc::invalid_parameter(reason));
        for field in ["username", "firstname", "lastname"] {
            if php_trim(u.str(field)?).is_empty() {
                return invalid(format!("The field {field} cannot be blank"));
            }
        }
        let existing = || site.db.users.values().chain(planned.iter());
        let username = u.str("username")?;
        if existing().any(|x| x.username == username) {
            return invalid(format!("Username already exists: {username}"));
        }
        let auth = u.str("auth")?;
        if auth == "mnet" || auth == "webservice" || !AUTH_PLUGINS.contains(&auth) {
            return invalid(format!("Invalid authentication type: {auth}"));
        }
        let lang = u.str("lang")?;
        if !LANGS.contains(&lang) {
            return invalid(format!("Invalid language code: {lang}"));
        }
        if let Some(theme) = u
            .opt_str("theme")?
            .filter(|t| !t.is_empty() && !THEMES.contains(t))
        {
            return invalid(format!("Invalid theme: {theme}"));
        }
        let createpassword = u.opt_str("createpassword")? == Some("1");
        let password = u.opt_str("password")?.unwrap_or("");
        if INTERNAL_AUTHS.contains(&auth) && php_empty(password) && !createpassword {
            return invalid(
                "Invalid password: you must provide a password, or set createpassword.".into(),
            );
        }
        let email = u.str("email")?;
        if !validate_email(email) {
            return invalid(format!("Email address is invalid: {email}"));
        }
        let same_email = |x: &UserRow| x.email.to_lowercase() == email.to_lowercase();
        if !site.cfg.allow_same_email && existing().any(same_email) {
            return invalid(format!("Email address already exists: {email}"));
        }
        // user_create_user(): the policy is checked only for a password that is set now.
        if !createpassword && !password.is_empty() {
            if let Some(errors) = password_policy_errors(password) {
                return Err(Exc::moodle(&errors, &format!("error/{errors}")));
            }
        }
        let text = |k: &str| u.opt_str(k).map(|v| v.unwrap_or(""));
        check_widths(
            "INSERT INTO mdl_user",
            USER_COLUMNS,
            &[
                ("username", username),
                ("firstname", u.str("firstname")?),
                ("lastname", u.str("lastname")?),
                ("email", email),
                ("idnumber", u.str("idnumber")?),
                ("auth", auth),
                ("city", text("city")?),
                ("institution", text("institution")?),
                ("department", text("department")?),
                ("address", text("address")?),
                ("phone1", text("phone1")?),
                ("phone2", text("phone2")?),
            ],
        )?;
        let mut row = UserRow::new(0, username, email);
        row.firstname = u.str("firstname")?.into();
        row.lastname = u.str("lastname")?.into();
        row.idnumber = u.str("idnumber")?.into();
        row.auth = auth.into();
        row.lang = lang.into();
        row.theme = text("theme")?.into();
        row.department = text("department")?.into();
        if let Some(tz) = u.opt_str("timezone")? {
            row.timezone = tz.into();
        }
        if let Some(mf) = u.opt_int("mailformat")? {
            row.mailformat = mf;
        }
        planned.push(row);
    }
    Ok(planned)
}

/// Inserts planned users. Only the username has a unique index, so only it is re-checked:
/// an email or idnumber inserted meanwhile by another request is not noticed.
pub(super) fn commit_create_users(site: &mut Site, planned: Vec<UserRow>) -> Result<Value, Exc> {
    if let Some(dup) = planned
        .iter()
        .find(|row| site.db.users.values().any(|u| u.username == row.username))
    {
        return Err(Exc::dml_write(&format!(
            "ERROR:  duplicate key value violates unique constraint \"mdl_user_mneuse_uix\"\n\
             DETAIL:  Key (mnethostid, username)=(1, {}) already exists.",
            dup.username
        )));
    }
    let mut created = Vec::new();
    for mut row in planned {
        row.id = site.db.next_user_id()?;
        created.push(json!({"id": row.id, "username": row.username}));
        site.db.users.insert(row.id, row);
    }
    Ok(Value::Array(created))
}

/// `user_get_user_details` for the token user looking at `u` (no course: the system
/// profile). `None` when the profile is not visible at all.
pub(super) fn user_details(site: &Site, u: &UserRow) -> Option<Map<String, Value>> {
    let me = u.id == TOKEN_USER;
    if !me && !site.can("moodle/user:viewdetails") {
        return None;
    }
    let all = me || site.can("moodle/user:viewalldetails");
    let identity = me || site.can("moodle/site:viewuseridentity");
    let mut m = Map::new();
    m.insert("id".into(), json!(u.id));
    if all {
        m.insert("username".into(), json!(u.username));
    }
    m.insert("fullname".into(), json!(u.fullname()));
    if identity {
        m.insert("email".into(), json!(u.email));
    }
    if all {
        m.insert("department".into(), json!(u.department));
        if !u.idnumber.is_empty() {
            m.insert("idnumber".into(), json!(u.idnumber));
        }
    }
    m.insert("firstaccess".into(), json!(0));
    m.insert("lastaccess".into(), json!(0));
    if all {
        m.insert("auth".into(), json!(u.auth));
    }
    m.insert("suspended".into(), json!(u.suspended));
    if all {
        m.insert("confirmed".into(), json!(true));
        m.insert("lang".into(), json!(u.lang));
        m.insert("theme".into(), json!(u.theme));
        m.insert("timezone".into(), json!(u.timezone));
        m.insert("mailformat".into(), json!(u.mailformat));
        m.insert("trackforums".into(), json!(0));
    }
    m.insert(
        "profileimageurlsmall".into(),
        json!(picture_url(site, "f2")),
    );
    m.insert("profileimageurl".into(), json!(picture_url(site, "f1")));
    Some(m)
}

fn picture_url(site: &Site, size: &str) -> String {
    format!("{}/theme/image.php/boost/core/1/u/{size}", site.url)
}

/// Moodle returns a matched user only when the searched field is in the visible details.
fn field_visible(details: &Map<String, Value>, field: &str) -> bool {
    match details.get(field) {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) => !php_empty(s),
        Some(Value::Number(n)) => n.as_i64() != Some(0),
        Some(_) => true,
    }
}

pub(super) fn users_by_field_params() -> Desc {
    single(vec![
        req("field", val(T::Alpha)),
        req("values", multi(val(T::Raw))),
    ])
}

/// `core_user_external::get_users_by_field`: exact (case-sensitive) matches, by id.
pub(super) fn users_by_field(site: &mut Site, p: &V) -> Result<Value, Exc> {
    let field = p.str("field")?;
    let t = match field {
        "id" => T::Int,
        "idnumber" => T::Raw,
        "username" => T::Username,
        "email" => T::RawTrimmed,
        _ => {
            return Err(Exc::coding(
                "invalid field parameter",
                Some(&format!(
                    "The search field '{field}' is not supported, look at the web service documentation"
                )),
            ));
        }
    };
    let mut values = Vec::new();
    for v in p.list("values") {
        let value = v.as_str()?;
        let cleaned = clean(t, value);
        // PHP's loose `!=`: "06" equals the integer 6, "abc" does not equal 0.
        let same = if t == T::Int {
            value
                .trim()
                .parse::<f64>()
                .is_ok_and(|f| f == php_intval(value) as f64)
        } else {
            value == cleaned
        };
        if !same {
            return Err(Exc::invalid_parameter(format!(
                "The field '{field}' value is invalid: {value}(cleaned value: {cleaned})"
            )));
        }
        values.push(cleaned);
    }
    let column = |u: &UserRow| match field {
        "id" => u.id.to_string(),
        "idnumber" => u.idnumber.clone(),
        "username" => u.username.clone(),
        _ => u.email.clone(),
    };
    let users: Vec<Value> = site
        .db
        .users
        .values()
        .filter(|u| values.contains(&column(u)))
        .filter_map(|u| user_details(site, u))
        .filter(|d| field_visible(d, field))
        .map(Value::Object)
        .collect();
    Ok(Value::Array(users))
}

pub(super) fn get_users_params() -> Desc {
    single(vec![req(
        "criteria",
        multi(single(vec![
            req("key", val(T::Alpha)),
            req("value", val(T::Raw)),
        ])),
    )])
}

/// `core_user_external::get_users`: criteria ANDed; email and names match with `LIKE`.
pub(super) fn get_users(site: &mut Site, p: &V) -> Result<Value, Exc> {
    let mut criteria: Vec<(&str, String)> = Vec::new();
    let mut warnings = Vec::new();
    for c in p.list("criteria") {
        let key = c.str("key")?;
        if criteria.iter().any(|(k, _)| *k == key) {
            return Err(Exc::moodle("keyalreadyset", "error/keyalreadyset")
                .debug(format!("The key {key} can only be sent once")));
        }
        let t = match key {
            "id" => T::Int,
            "idnumber" => T::Raw,
            "username" => T::Username,
            "email" => T::RawTrimmed,
            "auth" => T::Auth,
            "firstname" | "lastname" => T::NoTags,
            _ => {
                warnings.push(json!({
                    "item": key,
                    "warningcode": "invalidfieldparameter",
                    "message": format!("The search key '{key}' is not supported, look at the web service documentation"),
                }));
                continue;
            }
        };
        criteria.push((key, clean(t, c.str("value")?)));
    }
    let matches = |u: &UserRow| {
        criteria.iter().all(|(key, value)| match *key {
            "id" => u.id.to_string() == *value,
            "idnumber" => u.idnumber == *value,
            "username" => u.username == *value,
            "auth" => u.auth == *value,
            "email" => like_match(value, &u.email),
            "firstname" => like_match(value, &u.firstname),
            _ => like_match(value, &u.lastname),
        })
    };
    let users: Vec<Value> = site
        .db
        .users
        .values()
        .filter(|u| matches(u))
        .filter_map(|u| user_details(site, u))
        .filter(|d| criteria.iter().all(|(key, _)| field_visible(d, key)))
        .map(Value::Object)
        .collect();
    Ok(json!({"users": users, "warnings": warnings}))
}
