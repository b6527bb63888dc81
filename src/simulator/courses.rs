//! `core_course_create_courses` and `core_course_update_courses` (moodle-ws.md §2.2, §2.3).

use serde_json::{Value, json};

use super::envelope::Exc;
use super::params::{Desc, Key, LANGS, T, V, def, multi, opt, req, single, val};
use super::php::{php_empty, php_trim};
use super::site::{CourseRow, Site, check_widths};
use super::{FRONT_PAGE, now};

/// Column widths of `mdl_course` (moodle-ws.md §3): longer values fail the insert.
const COURSE_COLUMNS: &[(&str, usize)] =
    &[("fullname", 254), ("shortname", 255), ("idnumber", 100)];

fn course_keys(all_optional: bool) -> Vec<Key> {
    let r = |name, desc| {
        if all_optional {
            opt(name, desc)
        } else {
            req(name, desc)
        }
    };
    let d = |name, desc, default| {
        if all_optional {
            opt(name, desc)
        } else {
            def(name, desc, default)
        }
    };
    vec![
        r("fullname", val(T::Text)),
        r("shortname", val(T::Text)),
        r("categoryid", val(T::Int)),
        opt("idnumber", val(T::Raw)),
        opt("summary", val(T::Raw)),
        d("summaryformat", val(T::Int), "1"),
        d("format", val(T::Plugin), "topics"),
        d("showgrades", val(T::Int), "1"),
        d("newsitems", val(T::Int), "5"),
        opt("startdate", val(T::Int)),
        opt("enddate", val(T::Int)),
        opt("numsections", val(T::Int)),
        d("maxbytes", val(T::Int), "0"),
        d("showreports", val(T::Int), "0"),
        opt("visible", val(T::Int)),
        opt("hiddensections", val(T::Int)),
        d("groupmode", val(T::Int), "0"),
        d("groupmodeforce", val(T::Int), "0"),
        d("defaultgroupingid", val(T::Int), "0"),
        opt("enablecompletion", val(T::Int)),
        opt("completionnotify", val(T::Int)),
        opt("lang", val(T::SafeDir)),
        opt("forcetheme", val(T::Plugin)),
        opt(
            "courseformatoptions",
            multi(single(vec![
                req("name", val(T::AlphaNumExt)),
                req("value", val(T::Raw)),
            ])),
        ),
        opt(
            "customfields",
            multi(single(vec![
                req("shortname", val(T::AlphaNumExt)),
                req("value", val(T::Raw)),
            ])),
        ),
    ]
}

pub(super) fn create_courses_params() -> Desc {
    single(vec![req("courses", multi(single(course_keys(false))))])
}

pub(super) fn update_courses_params() -> Desc {
    let mut keys = vec![req("id", val(T::Int))];
    keys.extend(course_keys(true));
    single(vec![req("courses", multi(single(keys)))])
}

fn invalid_course_param(name: &str) -> Exc {
    Exc::moodle(
        "errorinvalidparam",
        &format!("The param \"{name}\" is invalid."),
    )
}

/// `course_validate_dates`, on the keys that were sent (a missing key counts as 0).
fn check_course_dates(startdate: Option<i64>, enddate: Option<i64>) -> Result<(), Exc> {
    let (start, end) = (startdate.unwrap_or(0), enddate.unwrap_or(0));
    if start != 0 && end != 0 && end < start {
        return Err(Exc::moodle(
            "enddatebeforestartdate",
            "The course end date must be after the start date.",
        ));
    }
    if start == 0 && end != 0 {
        return Err(Exc::moodle(
            "nostartdatenoenddate",
            "A course end date can only be set if a start date is also set.",
        ));
    }
    Ok(())
}

/// `core_course_external::create_courses`: one transaction for the whole list.
pub(super) fn create_courses(site: &mut Site, p: &V) -> Result<Value, Exc> {
    let mut db = site.db.clone();
    let mut created = Vec::new();
    for c in p.list("courses") {
        let categoryid = c.int("categoryid")?;
        let Some(category) = db.categories.get(&categoryid).cloned() else {
            return Err(Exc::moodle(
                "errorcatcontextnotvalid",
                &format!(
                    "You cannot execute functions in the category context (category id:{categoryid}). \
                     The context error message was: Invalid parameter value detected"
                ),
            )
            .debug("Context does not exist"));
        };
        site.require("moodle/course:create")?;
        let (fullname, shortname) = (c.str("fullname")?, c.str("shortname")?);
        if php_trim(fullname).is_empty() {
            return Err(invalid_course_param("fullname"));
        }
        if php_trim(shortname).is_empty() {
            return Err(invalid_course_param("shortname"));
        }
        if c.opt_str("lang")?.is_some_and(|l| !LANGS.contains(&l)) {
            return Err(invalid_course_param("lang"));
        }
        // forcetheme is ignored: course themes are off on a default site.
        // Without moodle/course:visibility the category's visibility silently wins.
        let category_visible = category.visible as i64;
        let visible = match c.opt_int("visible")? {
            Some(v) if site.can("moodle/course:visibility") => v,
            _ => category_visible,
        };
        // create_course(): uniqueness is checked in code, against this transaction too.
        if !php_empty(shortname) && db.courses.values().any(|x| x.shortname == shortname) {
            return Err(Exc::moodle(
                "shortnametaken",
                &format!("Short name is already used for another course ({shortname})"),
            ));
        }
        let idnumber = c.opt_str("idnumber")?.unwrap_or("");
        if !php_empty(idnumber) && db.courses.values().any(|x| x.idnumber == idnumber) {
            return Err(Exc::moodle(
                "courseidnumbertaken",
                &format!("ID number is already used for another course ({idnumber})"),
            ));
        }
        check_course_dates(c.opt_int("startdate")?, c.opt_int("enddate")?)?;
        check_widths(
            "INSERT INTO mdl_course",
            COURSE_COLUMNS,
            &[
                ("fullname", fullname),
                ("shortname", shortname),
                ("idnumber", idnumber),
            ],
        )?;
        let id = db.next_course_id()?;
        let mut row = CourseRow::new(id, categoryid, fullname, shortname);
        row.idnumber = idnumber.into();
        row.summary = c.opt_str("summary")?.unwrap_or("").into();
        row.summaryformat = c.int("summaryformat")?;
        row.format = c.str("format")?.into();
        row.showgrades = c.int("showgrades")?;
        row.newsitems = c.int("newsitems")?;
        row.startdate = c.opt_int("startdate")?.unwrap_or(0);
        row.enddate = c.opt_int("enddate")?.unwrap_or(0);
        row.visible = visible;
        row.enablecompletion = c.opt_int("enablecompletion")?.unwrap_or(1);
        row.lang = c.opt_str("lang")?.unwrap_or("").into();
        db.courses.insert(id, row);
        created.push(json!({"id": id, "shortname": shortname}));
    }
    site.db = db;
    Ok(Value::Array(created))
}

/// `core_course_external::update_courses`: no transaction; each failure is a warning.
pub(super) fn update_courses(site: &mut Site, p: &V) -> Result<Value, Exc> {
    let mut warnings = Vec::new();
    for c in p.list("courses") {
        if let Err(e) = update_course(site, c) {
            warnings.push(json!({
                "item": "course",
                "itemid": c.int("id")?,
                "warningcode": e.errorcode.unwrap_or_else(|| "0".into()),
                "message": e.message,
            }));
        }
    }
    Ok(json!({"warnings": warnings}))
}

fn update_course(site: &mut Site, c: &V) -> Result<(), Exc> {
    let id = c.int("id")?;
    let Some(old) = site.db.courses.get(&id).cloned() else {
        return Err(Exc::missing_course(id));
    };
    site.require("moodle/course:update")?;
    let mut new = old.clone();
    // A further capability is needed only for a value that actually changes.
    let mut moved = false;
    if let Some(category) = c.opt_int("categoryid")?.filter(|v| *v != old.category) {
        site.require("moodle/course:changecategory")?;
        if category != 0 {
            new.category = category;
            moved = true;
        }
    }
    if let Some(v) = c.opt_str("fullname")?.filter(|v| *v != old.fullname) {
        site.require("moodle/course:changefullname")?;
        if php_trim(v).is_empty() {
            return Err(invalid_course_param("fullname"));
        }
        new.fullname = v.into();
    }
    if let Some(v) = c.opt_str("shortname")?.filter(|v| *v != old.shortname) {
        site.require("moodle/course:changeshortname")?;
        if php_trim(v).is_empty() {
            return Err(invalid_course_param("shortname"));
        }
        new.shortname = v.into();
    }
    if let Some(v) = c.opt_str("idnumber")?.filter(|v| *v != old.idnumber) {
        site.require("moodle/course:changeidnumber")?;
        new.idnumber = v.into();
    }
    if let Some(v) = c.opt_str("summary")?.filter(|v| *v != old.summary) {
        site.require("moodle/course:changesummary")?;
        new.summary = v.into();
    }
    if let Some(v) = c
        .opt_int("summaryformat")?
        .filter(|v| *v != old.summaryformat)
    {
        site.require("moodle/course:changesummary")?;
        new.summaryformat = v;
    }
    if let Some(v) = c.opt_int("visible")?.filter(|v| *v != old.visible) {
        site.require("moodle/course:visibility")?;
        new.visible = v;
    }
    if let Some(lang) = c.opt_str("lang")? {
        if !lang.is_empty() && !LANGS.contains(&lang) {
            return Err(invalid_course_param("lang"));
        }
        new.lang = lang.into();
    }
    // update_course() from here on.
    if id == FRONT_PAGE {
        return Err(Exc::moodle("invalidcourse", "Invalid course"));
    }
    if new.visible == old.visible && moved {
        // Moving into a hidden (or, by a PHP quirk, a missing) category hides the course.
        let target_visible = site
            .db
            .categories
            .get(&new.category)
            .is_some_and(|c| c.visible);
        if !target_visible {
            new.visible = 0;
        }
    }
    if !php_empty(&new.shortname) && new.shortname != old.shortname {
        let taken = site
            .db
            .courses
            .values()
            .any(|x| x.id != id && x.shortname == new.shortname);
        if taken {
            return Err(Exc::moodle(
                "shortnametaken",
                &format!(
                    "Short name is already used for another course ({})",
                    new.shortname
                ),
            ));
        }
    }
    if !php_empty(&new.idnumber) && new.idnumber != old.idnumber {
        let taken = site
            .db
            .courses
            .values()
            .any(|x| x.id != id && x.idnumber == new.idnumber);
        if taken {
            return Err(Exc::moodle(
                "courseidnumbertaken",
                &format!(
                    "ID number is already used for another course ({})",
                    new.idnumber
                ),
            ));
        }
    }
    // Only the dates that were sent are compared (moodle-ws.md §2.3).
    check_course_dates(c.opt_int("startdate")?, c.opt_int("enddate")?)?;
    if let Some(v) = c.opt_int("startdate")? {
        new.startdate = v;
    }
    if let Some(v) = c.opt_int("enddate")? {
        new.enddate = v;
    }
    if let Some(v) = c.opt_str("format")? {
        new.format = v.into();
    }
    if let Some(v) = c.opt_int("showgrades")? {
        new.showgrades = v;
    }
    if let Some(v) = c.opt_int("newsitems")? {
        new.newsitems = v;
    }
    if let Some(v) = c.opt_int("enablecompletion")? {
        new.enablecompletion = v;
    }
    check_widths(
        "UPDATE mdl_course SET",
        COURSE_COLUMNS,
        &[
            ("fullname", &new.fullname),
            ("shortname", &new.shortname),
            ("idnumber", &new.idnumber),
        ],
    )?;
    new.timemodified = now();
    let category = new.category;
    site.db.courses.insert(id, new);
    // The row is written before the new category's context is looked up: a move to a
    // missing category is saved *and* reported (fixture update_courses/unknown_categoryid).
    if moved && !site.db.categories.contains_key(&category) {
        return Err(Exc::missing_record(
            "course_categories",
            format!(
                "SELECT * FROM {{course_categories}} WHERE id = ?\n[array (\n  0 => {category},\n)]"
            ),
        ));
    }
    Ok(())
}
