//! Grades and completion (moodle-ws.md §2.12–§2.14).

use serde_json::{Value, json};

use super::envelope::Exc;
use super::functions::num;
use super::params::{Desc, T, V, def, req, single, val};
use super::site::{CourseRow, Db, GradeRow, Site};
use super::{ROLE_STUDENT, TOKEN_USER, now};

pub(super) fn grade_items_params() -> Desc {
    single(vec![
        req("courseid", val(T::Int)),
        def("userid", val(T::Int), "0"),
        def("groupid", val(T::Int), "0"),
    ])
}

/// Users the grader report lists for `userid=0`: active enrolments with the student role.
fn graded_users(db: &Db, courseid: i64, at: i64) -> Vec<i64> {
    db.enrolments
        .keys()
        .filter(|(c, u)| *c == courseid && db.is_active(*c, *u, at))
        .filter(|(c, u)| db.roles_of(*c, *u).contains(&ROLE_STUDENT))
        .map(|(_, u)| *u)
        .collect()
}

/// `gradereport_user\external\user::get_grade_items`, with only the course total item.
pub(super) fn grade_items(site: &mut Site, p: &V) -> Result<Value, Exc> {
    let (courseid, userid) = (p.int("courseid")?, p.int("userid")?);
    let Some(course) = site.db.courses.get(&courseid) else {
        return Err(Exc::missing_course(courseid));
    };
    site.require("gradereport/user:view")?;
    let userids = if userid == 0 {
        site.require("moodle/grade:viewall")?;
        graded_users(&site.db, courseid, now())
    } else {
        if !site.db.users.contains_key(&userid) {
            return Err(Exc::invalid_user(userid));
        }
        // A user who is not enrolled still gets an entry (fixture user_not_enrolled).
        vec![userid]
    };
    if !site.can("moodle/grade:viewall") && userid != TOKEN_USER {
        return Err(Exc::moodle(
            "nopermissiontoviewgrades",
            "Can not view grades.",
        ));
    }
    let usergrades: Vec<Value> = userids
        .iter()
        .filter_map(|id| site.db.users.get(id).map(|u| (id, u)))
        .map(|(id, u)| {
            let grade = site.db.grades.get(&(courseid, *id));
            json!({
                "courseid": courseid,
                "courseidnumber": course.idnumber,
                "userid": id,
                "userfullname": u.fullname(),
                "useridnumber": u.idnumber,
                "maxdepth": 2,
                "gradeitems": [course_total_item(course, grade)],
            })
        })
        .collect();
    Ok(json!({"usergrades": usergrades, "warnings": []}))
}

fn course_total_item(course: &CourseRow, grade: Option<&GradeRow>) -> Value {
    let (min, max) = (0.0, course.grademax);
    let percentage = grade.filter(|_| max > min).map_or("-".to_string(), |g| {
        format!("{:.2} %", (g.value - min) / (max - min) * 100.0)
    });
    json!({
        "id": course.id,
        "itemname": null,
        "itemtype": "course",
        "itemmodule": null,
        "iteminstance": course.id,
        "itemnumber": null,
        "idnumber": null,
        "categoryid": null,
        "outcomeid": null,
        "scaleid": null,
        "locked": false,
        "graderaw": grade.map(|g| num(g.value)),
        "gradedatesubmitted": null,
        "gradedategraded": grade.map(|g| g.time),
        "gradehiddenbydate": false,
        "gradeneedsupdate": false,
        "gradeishidden": false,
        "gradeislocked": false,
        "gradeisoverridden": false,
        "gradeformatted": grade.map_or("-".to_string(), |g| format!("{:.2}", g.value)),
        "grademin": num(min),
        "grademax": num(max),
        "rangeformatted": format!("{}&ndash;{}", min.round(), max.round()),
        "percentageformatted": percentage,
        "feedback": "",
        "feedbackformat": if grade.is_some() { 2 } else { 0 },
    })
}

pub(super) fn course_grades_params() -> Desc {
    single(vec![def("userid", val(T::Int), "0")])
}

/// `gradereport_overview_external::get_course_grades`: one user's course totals.
pub(super) fn course_grades(site: &mut Site, p: &V) -> Result<Value, Exc> {
    let userid = match p.int("userid")? {
        0 => TOKEN_USER,
        id => id,
    };
    if userid != TOKEN_USER {
        if !site.db.users.contains_key(&userid) {
            return Err(Exc::invalid_user(userid));
        }
        site.require("moodle/grade:viewall")?;
    }
    let can_see_hidden =
        site.can("moodle/course:update") || site.can("moodle/course:viewhiddencourses");
    // Active or suspended enrolments count; the course must show grades to students.
    let grades: Vec<Value> = site
        .db
        .enrolments
        .keys()
        .filter(|(_, u)| *u == userid)
        .filter_map(|(c, _)| site.db.courses.get(c))
        .filter(|c| c.showgrades != 0 && (c.visible != 0 || can_see_hidden))
        .filter(|c| site.db.roles_of(c.id, userid).contains(&ROLE_STUDENT))
        .map(|c| {
            let grade = site.db.grades.get(&(c.id, userid));
            json!({
                "courseid": c.id,
                "grade": grade.map_or("-".to_string(), |g| format!("{:.2}", g.value)),
                "rawgrade": grade.map(|g| format!("{:.5}", g.value)),
            })
        })
        .collect();
    Ok(json!({"grades": grades, "warnings": []}))
}

pub(super) fn completion_params() -> Desc {
    single(vec![
        req("courseid", val(T::Int)),
        req("userid", val(T::Int)),
    ])
}

/// `core_completion_external::get_course_completion_status`, with one self-completion
/// criterion standing for "the course's criteria".
pub(super) fn completion_status(site: &mut Site, p: &V) -> Result<Value, Exc> {
    let (courseid, userid) = (p.int("courseid")?, p.int("userid")?);
    let Some(course) = site.db.courses.get(&courseid) else {
        return Err(Exc::missing_course(courseid));
    };
    if !site.db.users.contains_key(&userid) {
        return Err(Exc::invalid_user(userid));
    }
    // Completion off in the course and a missing capability give the same code.
    if course.enablecompletion == 0 || !site.can("report/completion:view") {
        return Err(Exc::moodle(
            "cannotviewreport",
            "You cannot view this report",
        ));
    }
    // Tracked: an active enrolment (suspended ones do not count) with a role that is in
    // completion reports (student).
    let tracked = site.db.is_active(courseid, userid, now())
        && site.db.roles_of(courseid, userid).contains(&ROLE_STUDENT);
    if !tracked {
        return Err(Exc::moodle(
            "usernotenroled",
            "User is not enrolled in this course",
        ));
    }
    if !course.completion_criteria {
        return Err(Exc::moodle(
            "nocriteriaset",
            "No completion criteria set for this course",
        ));
    }
    let state = site.db.completions.get(&(courseid, userid));
    let completed = state.is_some_and(|s| s.completed);
    let time = state.and_then(|s| s.time).filter(|_| completed);
    Ok(json!({
        "completionstatus": {
            "completed": completed,
            "aggregation": 1,
            "completions": [{
                "type": 1,
                "title": "Self completion",
                "status": if completed { "Yes" } else { "No" },
                "complete": completed,
                "timecompleted": time,
                "details": {
                    "type": "Self completion",
                    "criteria": "Self completion",
                    "requirement": "Marking yourself complete",
                    "status": "",
                },
            }],
        },
        "warnings": [],
    }))
}
