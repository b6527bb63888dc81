//! The test-facing controls of [`MoodleSimulator`]: seeding, site switches, faults and timing.
//!
//! These are for the code that owns the simulator, never reachable by a request, so they
//! panic on misuse (an unknown course or user id, a function or capability the simulator
//! does not model): that is a bug in the caller's set-up, best reported where it is made.

use std::time::Duration;

use super::faults::FaultRule;
use super::functions::FUNCTIONS;
use super::options::capability_value;
use super::site::{CategoryRow, CompletionRow, CourseRow, Db, EnrolRow, GradeRow, UserRow};
use super::{CourseSeed, Fault, ManualInstance, MoodleSimulator, UserSeed, now};

impl MoodleSimulator {
    // ----- seeding (direct database writes: no checks, no recorded calls) -----

    /// Adds a visible course category and returns its id.
    pub fn add_category(&self, name: &str) -> i64 {
        let mut site = self.site();
        let id = site.db.categories.keys().max().copied().unwrap_or(0) + 1;
        site.db.categories.insert(
            id,
            CategoryRow {
                name: name.into(),
                visible: true,
            },
        );
        id
    }

    /// Adds a course (with an enabled manual enrolment instance) and returns its id.
    pub fn add_course(&self, seed: CourseSeed) -> i64 {
        let mut site = self.site();
        let id = seed
            .id
            .unwrap_or_else(|| site.db.next_course_id().expect("a free course id"));
        assert!(
            !site.db.courses.contains_key(&id),
            "course id {id} already exists"
        );
        let mut row = CourseRow::new(id, seed.category, &seed.fullname, &seed.shortname);
        row.idnumber = seed.idnumber;
        row.summary = seed.summary;
        row.startdate = seed.startdate;
        row.enddate = seed.enddate;
        row.visible = seed.visible as i64;
        row.enablecompletion = seed.enablecompletion as i64;
        site.db.courses.insert(id, row);
        id
    }

    /// Adds a confirmed user and returns its id.
    pub fn add_user(&self, seed: UserSeed) -> i64 {
        let mut site = self.site();
        let id = seed
            .id
            .unwrap_or_else(|| site.db.next_user_id().expect("a free user id"));
        assert!(
            !site.db.users.contains_key(&id),
            "user id {id} already exists"
        );
        let mut row = UserRow::new(id, &seed.username, &seed.email);
        row.firstname = seed.firstname;
        row.lastname = seed.lastname;
        row.idnumber = seed.idnumber;
        row.auth = seed.auth;
        row.suspended = seed.suspended;
        site.db.users.insert(id, row);
        id
    }

    /// Enrols a user manually with a role, as `enrol_manual_enrol_users` would (no checks
    /// beyond the course and user existing).
    pub fn add_enrolment(&self, courseid: i64, userid: i64, roleid: i64, suspended: bool) {
        let mut site = self.site();
        site.db.course_mut(courseid);
        site.db.user(userid);
        site.db.enrolments.insert(
            (courseid, userid),
            EnrolRow {
                suspended,
                timestart: 0,
                timeend: 0,
            },
        );
        site.db.assign_role(courseid, userid, roleid);
    }

    /// Sets (or with `None` removes) the user's course total.
    pub fn set_grade(&self, courseid: i64, userid: i64, grade: Option<f64>) {
        let mut site = self.site();
        site.db.course_mut(courseid);
        site.db.user(userid);
        match grade {
            Some(value) => {
                site.db
                    .grades
                    .insert((courseid, userid), GradeRow { value, time: now() });
            }
            None => {
                site.db.grades.remove(&(courseid, userid));
            }
        }
    }

    /// Sets the course total's maximum (100 by default; 0 when a course has no grade items).
    pub fn set_grademax(&self, courseid: i64, grademax: f64) {
        self.site().db.course_mut(courseid).grademax = grademax;
    }

    /// Records the user's course completion (`time` is the criterion's `timecompleted`).
    pub fn set_completion(&self, courseid: i64, userid: i64, completed: bool, time: Option<i64>) {
        let mut site = self.site();
        site.db.course_mut(courseid);
        site.db.user(userid);
        site.db
            .completions
            .insert((courseid, userid), CompletionRow { completed, time });
    }

    /// Turns the course's completion criteria on or off (off: `nocriteriaset`).
    pub fn set_completion_criteria(&self, courseid: i64, on: bool) {
        self.site().db.course_mut(courseid).completion_criteria = on;
    }

    /// Turns completion tracking of the course on or off (off: `cannotviewreport`).
    pub fn set_completion_enabled(&self, courseid: i64, on: bool) {
        self.site().db.course_mut(courseid).enablecompletion = on as i64;
    }

    /// Changes the course's manual enrolment instance.
    pub fn set_manual_instance(&self, courseid: i64, instance: ManualInstance) {
        self.site().db.course_mut(courseid).manual = instance;
    }

    // ----- site switches -----

    /// Takes a function out of the token's service (calls get `accessexception`).
    pub fn remove_function(&self, name: &str) {
        self.site().cfg.service.retain(|f| *f != name);
    }

    /// Puts a function removed with [`remove_function`](Self::remove_function) back.
    pub fn restore_function(&self, name: &str) {
        let mut site = self.site();
        let f = FUNCTIONS
            .iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("the simulator does not implement {name}"));
        if !site.cfg.service.contains(&f.name) {
            site.cfg.service.push(f.name);
        }
    }

    /// `false`: the token is unknown to the site (every call gets `invalidtoken`).
    pub fn set_token_valid(&self, valid: bool) {
        self.site().cfg.token_valid = valid;
    }

    /// Removes a capability from the token user's role; panics for one the simulator does not model.
    pub fn lack_capability(&self, capability: &str) {
        if let Err(e) = capability_value(capability) {
            panic!("{e}");
        }
        self.site().cfg.lacking.insert(capability.into());
    }

    /// Gives a capability removed with [`lack_capability`](Self::lack_capability) back.
    pub fn restore_capability(&self, capability: &str) {
        self.site().cfg.lacking.remove(capability);
    }

    /// Site debugging at DEVELOPER level: error envelopes gain `debuginfo`.
    pub fn set_debug(&self, on: bool) {
        self.site().cfg.debug = on;
    }

    /// Web services or the REST protocol switched off: HTTP 403 with an empty body.
    pub fn set_rest_disabled(&self, on: bool) {
        self.site().cfg.rest_disabled = on;
    }

    /// CLI maintenance (an upgrade): every page is HTTP 503 with `Retry-After: 300`.
    pub fn set_cli_maintenance(&self, on: bool) {
        self.site().cfg.cli_maintenance = on;
    }

    /// Maintenance mode switched on in the admin UI: calls get `sitemaintenance`.
    pub fn set_site_maintenance(&self, on: bool) {
        self.site().cfg.site_maintenance = on;
    }

    /// PHP's `max_input_vars` (at the start 1000, [`DEFAULT_MAX_INPUT_VARS`]): a request's
    /// variables past it are silently dropped, as PHP drops them, so a call with too many
    /// fields fails later with `Missing required key` (or loses list items).
    ///
    /// [`DEFAULT_MAX_INPUT_VARS`]: super::DEFAULT_MAX_INPUT_VARS
    pub fn set_max_input_vars(&self, max: usize) {
        self.site().cfg.max_input_vars = max;
    }

    /// The site setting `allowaccountssameemail` (off by default).
    pub fn allow_accounts_same_email(&self, on: bool) {
        self.site().cfg.allow_same_email = on;
    }

    // ----- faults and timing -----

    /// The next `n` calls (of any function) fail with `fault`.
    pub fn fail_next(&self, n: usize, fault: Fault) {
        self.site().faults.push(FaultRule {
            function: None,
            remaining: n,
            fault,
        });
    }

    /// The next `n` calls of `function` fail with `fault`.
    pub fn fail_next_for(&self, function: &str, n: usize, fault: Fault) {
        self.site().faults.push(FaultRule {
            function: Some(function.into()),
            remaining: n,
            fault,
        });
    }

    /// Every call to `server.php` waits this long before it is handled.
    pub fn set_latency(&self, latency: Duration) {
        self.site().cfg.latency = latency;
    }

    /// `core_user_create_users` waits this long between its checks and its insert, without
    /// holding the site lock: like Moodle, two racing creates both pass the email check.
    pub fn set_create_delay(&self, delay: Duration) {
        self.site().cfg.create_delay = delay;
    }
}

impl Db {
    /// For seeding: a missing course is a bug in the caller.
    fn course_mut(&mut self, id: i64) -> &mut CourseRow {
        self.courses
            .get_mut(&id)
            .unwrap_or_else(|| panic!("no course {id} in the simulator"))
    }

    /// For seeding: a missing user is a bug in the caller.
    fn user(&self, id: i64) -> &UserRow {
        self.users
            .get(&id)
            .unwrap_or_else(|| panic!("no user {id} in the simulator"))
    }
}
