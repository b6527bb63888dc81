//! A strict, stateful simulator of a Moodle 4.5 site's REST web services.
//!
//! The tests, the benchmarks and the `simulate-moodle` command talk to this instead of a
//! real Moodle, so it behaves like the recorded site in `tests/fixtures/moodle/` (the
//! protocol is described in `moodle-ws.md`): the same order of checks, the same error
//! envelopes (HTTP 200 with `exception`, `errorcode`, `message`), the same parameter
//! strictness, the same state rules (unique shortnames, atomic batches, warnings instead of
//! exceptions in `core_course_update_courses`, …).
//!
//! ```ignore
//! let moodle = MoodleSimulator::start().await;
//! let client = MoodleClient::new(&moodle.url(), moodle.token().into(), …);
//! moodle.fail_next(1, Fault::Http503);          // the next call gets a proxy 503
//! assert_eq!(moodle.call_count("core_course_create_courses"), 2);
//! ```
//!
//! A new site has: course categories 1 (Miscellaneous) and [`CATEGORY`] 5; the front page
//! (course 1); users 1 guest, 2 admin and [`TOKEN_USER`] 3 (who owns the token); the standard
//! roles, of which student 5, teacher 4 and editingteacher 3 are assignable and manager 1 is
//! not; all 15 functions in the token's service; every modelled capability granted; debugging
//! off. Tests change that with the seeding methods and switches of [`MoodleSimulator`].
//!
//! The module is compiled into the service but costs it nothing unless started: only the
//! tests, the benchmarks and the `simulate-moodle` command start it. It depends on nothing
//! else in the crate. Its parts:
//! * this file and `control`: the API ([`MoodleSimulator`]: inspection; seeds, switches,
//!   faults); `records` and `faults`: the types they take and give;
//! * `site`: the state (one `Mutex<Site>`; `Db` is cloned to give batch calls a transaction);
//! * `server`: routes, the request pipeline, a listener that can reset connections;
//! * `form`: PHP's form decoding into nested arrays; `envelope`: Moodle errors and the
//!   JSON/XML encodings; `params` and `php`: `validate_parameters` and `clean_param`;
//! * `functions`: the function table and `core_webservice_get_site_info`; then one file per
//!   area: `courses` and `course_reads`, `users`, `enrolments` (and roles), `grades` (and
//!   completion).

mod control;
mod course_reads;
mod courses;
mod enrolments;
mod envelope;
mod faults;
mod form;
mod functions;
mod grades;
mod params;
mod php;
mod records;
mod server;
mod site;
mod users;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::net::TcpListener;

pub use faults::Fault;
pub use records::{
    CourseRecord, CourseSeed, EnrolmentRecord, ManualInstance, RecordedCall, UserRecord, UserSeed,
};

use server::{Conn, ResettableListener, router};
use site::Site;

/// The front-page course id (Moodle's `SITEID`).
pub const FRONT_PAGE: i64 = 1;
/// The id of the user that owns the token (as in the fixtures).
pub const TOKEN_USER: i64 = 3;
/// The seeded course category new courses go to (`accessplanit`).
pub const CATEGORY: i64 = 5;
/// Role ids of a standard Moodle install.
pub const ROLE_MANAGER: i64 = 1;
pub const ROLE_EDITINGTEACHER: i64 = 3;
pub const ROLE_TEACHER: i64 = 4;
pub const ROLE_STUDENT: i64 = 5;

/// PHP's default `max_input_vars`, as on a site that never raised it (Moodle's environment
/// check asks for 5000): request variables past it are dropped.
pub const DEFAULT_MAX_INPUT_VARS: usize = 1000;

/// Where PHP says the Moodle code lives; it shows up in PHP engine error messages.
pub const MOODLE_DIR: &str = "/var/www/moodle";

/// The running fake site. Dropping it stops accepting connections.
pub struct MoodleSimulator {
    url: String,
    token: String,
    shared: Arc<Mutex<Site>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for MoodleSimulator {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl MoodleSimulator {
    /// Starts a freshly seeded site on `127.0.0.1:<random port>`.
    pub async fn start() -> MoodleSimulator {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake Moodle");
        let addr = listener.local_addr().expect("local addr");
        let url = format!("http://{addr}");
        let token = random_hex32();
        let shared = Arc::new(Mutex::new(Site::new(url.clone(), token.clone())));
        let app = router(shared.clone());
        let server = tokio::spawn(async move {
            let listener = ResettableListener(listener);
            let service = app.into_make_service_with_connect_info::<Conn>();
            let _ = axum::serve(listener, service).await;
        });
        MoodleSimulator {
            url,
            token,
            shared,
            server,
        }
    }

    /// The site's `wwwroot`: `http://127.0.0.1:<port>`, no trailing slash.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The valid web-service token (32 lowercase hex characters).
    pub fn token(&self) -> String {
        self.token.clone()
    }

    fn site(&self) -> MutexGuard<'_, Site> {
        lock(&self.shared)
    }

    // ----- inspection -----

    /// Every call that reached `server.php`, in order (including failed and faulted ones).
    pub fn calls(&self) -> Vec<RecordedCall> {
        self.site().calls.clone()
    }

    /// How many calls of `function` reached `server.php`.
    pub fn call_count(&self, function: &str) -> usize {
        self.site()
            .calls
            .iter()
            .filter(|c| c.function == function)
            .count()
    }

    /// Forgets the recorded calls.
    pub fn reset_calls(&self) {
        self.site().calls.clear();
    }

    /// All courses except the front page, by id.
    pub fn courses(&self) -> Vec<CourseRecord> {
        let site = self.site();
        site.db
            .courses
            .values()
            .filter(|c| c.id != FRONT_PAGE)
            .map(|c| CourseRecord {
                id: c.id,
                shortname: c.shortname.clone(),
                fullname: c.fullname.clone(),
                idnumber: c.idnumber.clone(),
                category: c.category,
                summary: c.summary.clone(),
                startdate: c.startdate,
                enddate: c.enddate,
                visible: c.visible != 0,
            })
            .collect()
    }

    /// All users except the seeded guest, admin and token user, by id.
    pub fn users(&self) -> Vec<UserRecord> {
        let site = self.site();
        site.db
            .users
            .values()
            .filter(|u| u.id > TOKEN_USER)
            .map(|u| UserRecord {
                id: u.id,
                username: u.username.clone(),
                email: u.email.clone(),
                idnumber: u.idnumber.clone(),
                firstname: u.firstname.clone(),
                lastname: u.lastname.clone(),
                auth: u.auth.clone(),
                suspended: u.suspended,
            })
            .collect()
    }

    /// All manual enrolments, by course then user.
    pub fn enrolments(&self) -> Vec<EnrolmentRecord> {
        let site = self.site();
        site.db
            .enrolments
            .iter()
            .map(|(&(courseid, userid), e)| EnrolmentRecord {
                courseid,
                userid,
                roleids: site.db.roles_of(courseid, userid),
                suspended: e.suspended,
                timestart: e.timestart,
                timeend: e.timeend,
            })
            .collect()
    }

    /// The user's course total in the gradebook, if any.
    pub fn grade(&self, courseid: i64, userid: i64) -> Option<f64> {
        self.site()
            .db
            .grades
            .get(&(courseid, userid))
            .map(|g| g.value)
    }
}

fn lock(shared: &Mutex<Site>) -> MutexGuard<'_, Site> {
    // A test that panicked while holding the lock must not hide the real failure elsewhere.
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

fn random_hex32() -> String {
    (0..16)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
