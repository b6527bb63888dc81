//! Site state: one `Mutex<Site>` holds the switches, the database, the recorded calls and
//! the pending faults. `Db` is `Clone`, which gives batch calls their transaction.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::envelope::Exc;
use super::faults::FaultRule;
use super::functions::FUNCTIONS;
use super::{
    CATEGORY, DEFAULT_MAX_INPUT_VARS, FRONT_PAGE, Fault, ManualInstance, RecordedCall, TOKEN_USER,
    now,
};

pub(super) struct Site {
    pub(super) url: String,
    pub(super) token: String,
    pub(super) cfg: Config,
    pub(super) db: Db,
    pub(super) calls: Vec<RecordedCall>,
    pub(super) faults: Vec<FaultRule>,
    /// Calls being answered now, and the most there have been at once.
    pub(super) in_flight: usize,
    pub(super) max_in_flight: usize,
}

pub(super) struct Config {
    pub(super) token_valid: bool,
    /// The functions of the token's external service, in the order site info lists them.
    pub(super) service: Vec<&'static str>,
    /// Capabilities the token user's role lacks.
    pub(super) lacking: BTreeSet<String>,
    pub(super) debug: bool,
    pub(super) rest_disabled: bool,
    pub(super) cli_maintenance: bool,
    pub(super) site_maintenance: bool,
    pub(super) allow_same_email: bool,
    pub(super) latency: Duration,
    pub(super) create_delay: Duration,
    /// PHP's `max_input_vars`: request variables past it are dropped.
    pub(super) max_input_vars: usize,
    /// Whether calls are kept for inspection.
    pub(super) record_calls: bool,
}

/// The database. It is `Clone` so that a batch call can work on a copy and keep it only
/// when every item succeeded: that is Moodle's delegated transaction.
#[derive(Clone)]
pub(super) struct Db {
    pub(super) categories: BTreeMap<i64, CategoryRow>,
    pub(super) courses: BTreeMap<i64, CourseRow>,
    pub(super) users: BTreeMap<i64, UserRow>,
    /// Manual enrolments by (courseid, userid).
    pub(super) enrolments: BTreeMap<(i64, i64), EnrolRow>,
    /// Role assignments in course contexts: (courseid, userid, roleid), in assignment order.
    pub(super) role_assignments: Vec<(i64, i64, i64)>,
    /// Course totals by (courseid, userid).
    pub(super) grades: BTreeMap<(i64, i64), GradeRow>,
    pub(super) completions: BTreeMap<(i64, i64), CompletionRow>,
}

#[derive(Clone)]
pub(super) struct CategoryRow {
    pub(super) name: String,
    pub(super) visible: bool,
}

#[derive(Clone)]
pub(super) struct CourseRow {
    pub(super) id: i64,
    pub(super) category: i64,
    pub(super) fullname: String,
    pub(super) shortname: String,
    pub(super) idnumber: String,
    pub(super) summary: String,
    pub(super) summaryformat: i64,
    pub(super) format: String,
    pub(super) startdate: i64,
    pub(super) enddate: i64,
    pub(super) visible: i64,
    pub(super) enablecompletion: i64,
    pub(super) showgrades: i64,
    pub(super) newsitems: i64,
    pub(super) lang: String,
    pub(super) timecreated: i64,
    pub(super) timemodified: i64,
    pub(super) completion_criteria: bool,
    pub(super) manual: ManualInstance,
    pub(super) grademax: f64,
}

impl CourseRow {
    pub(super) fn new(id: i64, category: i64, fullname: &str, shortname: &str) -> Self {
        let t = now();
        CourseRow {
            id,
            category,
            fullname: fullname.into(),
            shortname: shortname.into(),
            idnumber: String::new(),
            summary: String::new(),
            summaryformat: 1,
            format: "topics".into(),
            startdate: 0,
            enddate: 0,
            visible: 1,
            enablecompletion: 1,
            showgrades: 1,
            newsitems: 5,
            lang: String::new(),
            timecreated: t,
            timemodified: t,
            completion_criteria: false,
            manual: ManualInstance::Enabled,
            grademax: 100.0,
        }
    }
}

#[derive(Clone)]
pub(super) struct UserRow {
    pub(super) id: i64,
    pub(super) username: String,
    pub(super) firstname: String,
    pub(super) lastname: String,
    pub(super) email: String,
    pub(super) idnumber: String,
    pub(super) auth: String,
    pub(super) suspended: bool,
    pub(super) lang: String,
    pub(super) theme: String,
    pub(super) timezone: String,
    pub(super) mailformat: i64,
    pub(super) department: String,
}

impl UserRow {
    pub(super) fn new(id: i64, username: &str, email: &str) -> Self {
        UserRow {
            id,
            username: username.into(),
            firstname: String::new(),
            lastname: String::new(),
            email: email.into(),
            idnumber: String::new(),
            auth: "manual".into(),
            suspended: false,
            lang: "en".into(),
            theme: String::new(),
            timezone: "99".into(),
            mailformat: 1,
            department: String::new(),
        }
    }

    pub(super) fn fullname(&self) -> String {
        format!("{} {}", self.firstname, self.lastname)
    }
}

#[derive(Clone)]
pub(super) struct EnrolRow {
    pub(super) suspended: bool,
    pub(super) timestart: i64,
    pub(super) timeend: i64,
}

#[derive(Clone)]
pub(super) struct GradeRow {
    pub(super) value: f64,
    pub(super) time: i64,
}

#[derive(Clone)]
pub(super) struct CompletionRow {
    pub(super) completed: bool,
    pub(super) time: Option<i64>,
}

/// The roles of a standard install: (id, shortname, assignable by the integration role).
pub(super) const ROLES: &[(i64, &str, bool)] = &[
    (1, "manager", false),
    (2, "coursecreator", false),
    (3, "editingteacher", true),
    (4, "teacher", true),
    (5, "student", true),
    (6, "guest", false),
    (7, "user", false),
    (8, "frontpage", false),
];

/// The capabilities the simulator models, with their English names (used in `nopermissions`).
pub(super) const CAPABILITIES: &[(&str, &str)] = &[
    ("webservice/rest:use", "Use REST protocol"),
    ("moodle/course:create", "Create courses"),
    ("moodle/course:update", "Update course settings"),
    ("moodle/course:view", "View courses without participation"),
    ("moodle/course:viewhiddencourses", "View hidden courses"),
    ("moodle/course:visibility", "Hide/show courses"),
    ("moodle/course:changefullname", "Change course full name"),
    ("moodle/course:changeshortname", "Change course short name"),
    ("moodle/course:changeidnumber", "Change course ID number"),
    ("moodle/course:changesummary", "Change course summary"),
    ("moodle/course:changecategory", "Change course category"),
    ("moodle/user:create", "Create users"),
    ("moodle/user:viewdetails", "View user profiles"),
    ("moodle/user:viewalldetails", "View user full information"),
    (
        "moodle/site:viewuseridentity",
        "See full user identity in lists",
    ),
    ("enrol/manual:enrol", "Enrol users"),
    ("enrol/manual:unenrol", "Unenrol users from the course"),
    ("moodle/role:assign", "Assign roles to users"),
    ("moodle/course:viewparticipants", "View participants"),
    ("moodle/course:enrolreview", "Review course enrolments"),
    (
        "gradereport/user:view",
        "View your own complete grade report",
    ),
    ("moodle/grade:viewall", "View grades of other users"),
    ("report/completion:view", "View course completion report"),
];

impl Site {
    pub(super) fn new(url: String, token: String) -> Site {
        let mut db = Db {
            categories: BTreeMap::new(),
            courses: BTreeMap::new(),
            users: BTreeMap::new(),
            enrolments: BTreeMap::new(),
            role_assignments: Vec::new(),
            grades: BTreeMap::new(),
            completions: BTreeMap::new(),
        };
        for (id, name) in [(1, "Miscellaneous"), (CATEGORY, "accessplanit")] {
            let row = CategoryRow {
                name: name.into(),
                visible: true,
            };
            db.categories.insert(id, row);
        }
        let mut front = CourseRow::new(FRONT_PAGE, 0, "Fake Moodle", "fakemoodle");
        front.format = "site".into();
        // The front page has no enrolment instances.
        front.manual = ManualInstance::Missing;
        front.enablecompletion = 0;
        front.showgrades = 0;
        db.courses.insert(FRONT_PAGE, front);
        for (id, username, first, last, auth) in [
            (1, "guest", "Guest user", " ", "manual"),
            (2, "admin", "Admin", "User", "manual"),
            (
                TOKEN_USER,
                "apit_integration",
                "APIT",
                "Integration",
                "webservice",
            ),
        ] {
            let mut row = UserRow::new(id, username, &format!("{username}@example.invalid"));
            row.firstname = first.into();
            row.lastname = last.into();
            row.auth = auth.into();
            db.users.insert(id, row);
        }
        Site {
            url,
            token,
            cfg: Config {
                token_valid: true,
                service: FUNCTIONS.iter().map(|f| f.name).collect(),
                lacking: BTreeSet::new(),
                debug: false,
                rest_disabled: false,
                cli_maintenance: false,
                site_maintenance: false,
                allow_same_email: false,
                latency: Duration::ZERO,
                create_delay: Duration::ZERO,
                max_input_vars: DEFAULT_MAX_INPUT_VARS,
                record_calls: true,
            },
            db,
            calls: Vec::new(),
            in_flight: 0,
            max_in_flight: 0,
            faults: Vec::new(),
        }
    }

    /// Whether the token user's role has `capability` (a test proves that every capability
    /// the functions ask for is one the simulator models).
    pub(super) fn can(&self, capability: &str) -> bool {
        !self.cfg.lacking.contains(capability)
    }

    /// `require_capability`: the `nopermissions` exception when the role lacks it.
    pub(super) fn require(&self, capability: &str) -> Result<(), Exc> {
        if self.can(capability) {
            Ok(())
        } else {
            Err(Exc::nopermissions(capability))
        }
    }

    /// Consumes one matching fault, if any is pending for this function.
    pub(super) fn take_fault(&mut self, function: &str) -> Option<Fault> {
        let rule = self
            .faults
            .iter_mut()
            .find(|r| r.remaining > 0 && r.function.as_deref().is_none_or(|f| f == function))?;
        rule.remaining -= 1;
        let fault = rule.fault;
        self.faults.retain(|r| r.remaining > 0);
        Some(fault)
    }
}

impl Db {
    pub(super) fn next_course_id(&self) -> Result<i64, Exc> {
        next_id(self.courses.keys().next_back(), "mdl_course_id_seq")
    }

    pub(super) fn next_user_id(&self) -> Result<i64, Exc> {
        next_id(self.users.keys().next_back(), "mdl_user_id_seq")
    }

    pub(super) fn roles_of(&self, courseid: i64, userid: i64) -> Vec<i64> {
        self.role_assignments
            .iter()
            .filter(|(c, u, _)| *c == courseid && *u == userid)
            .map(|(_, _, r)| *r)
            .collect()
    }

    pub(super) fn assign_role(&mut self, courseid: i64, userid: i64, roleid: i64) {
        if !self.roles_of(courseid, userid).contains(&roleid) {
            self.role_assignments.push((courseid, userid, roleid));
        }
    }

    /// Moodle's "active enrolment": status active, instance enabled, inside its dates.
    pub(super) fn is_active(&self, courseid: i64, userid: i64, at: i64) -> bool {
        let Some(e) = self.enrolments.get(&(courseid, userid)) else {
            return false;
        };
        let enabled = self
            .courses
            .get(&courseid)
            .is_some_and(|c| c.manual == ManualInstance::Enabled);
        enabled
            && !e.suspended
            && (e.timestart == 0 || e.timestart <= at)
            && (e.timeend == 0 || e.timeend > at)
    }
}

/// PostgreSQL refuses a value longer than its column.
pub(super) fn check_widths(
    statement: &str,
    columns: &[(&str, usize)],
    values: &[(&str, &str)],
) -> Result<(), Exc> {
    for (column, value) in values {
        let max = columns
            .iter()
            .find(|(c, _)| c == column)
            .map_or(usize::MAX, |(_, m)| *m);
        if value.chars().count() > max {
            return Err(Exc::dml_write(&format!(
                "ERROR:  value too long for type character varying({max})\n{statement} ({column})"
            )));
        }
    }
    Ok(())
}

/// The id after the largest one; past `i64::MAX` PostgreSQL's sequence refuses, and so do we.
fn next_id(largest: Option<&i64>, sequence: &str) -> Result<i64, Exc> {
    largest
        .map_or(Some(1), |id| id.checked_add(1))
        .ok_or_else(|| {
            Exc::dml_write(&format!(
                "ERROR:  nextval: reached maximum value of sequence \"{sequence}\" ({})",
                i64::MAX
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::CAPABILITIES;

    /// The functions ask for capabilities by name; each must be one the simulator models, or
    /// no switch could ever take it away.
    #[test]
    fn every_capability_asked_for_is_modelled() {
        let sources = [
            include_str!("server.rs"),
            include_str!("courses.rs"),
            include_str!("course_reads.rs"),
            include_str!("users.rs"),
            include_str!("enrolments.rs"),
            include_str!("grades.rs"),
        ];
        let mut asked = 0;
        for source in sources {
            for call in ["can(\"", "require(\""] {
                for rest in source.split(call).skip(1) {
                    let name = rest.split('"').next().unwrap_or_default();
                    assert!(
                        CAPABILITIES.iter().any(|(c, _)| *c == name),
                        "{name} is asked for but not modelled"
                    );
                    asked += 1;
                }
            }
        }
        assert!(asked > 20, "only {asked} capability checks found");
    }
}
