//! A strict, stateful simulator of a Moodle 4.5 site's REST web services.
//!
//! The tests, the benchmarks and the `simulate-moodle` command talk to this instead of a
//! real Moodle, so it behaves like the recorded site in `tests/fixtures/moodle/` (the
//! protocol is described in `moodle-ws.md`): the same order of checks, the same error
//! envelopes (HTTP 200 with `exception`, `errorcode`, `message`), the same parameter
//! strictness, the same state rules (unique shortnames, atomic batches, warnings instead of
//! exceptions in `core_course_update_courses`, …).
//!
//! ```text
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
//! It is product code reachable over HTTP, so no request can make it panic: a malformed one
//! gets the answer Moodle (or PHP, for the request limits) gives. Only the seeding methods
//! panic, on a caller's mistake (an unknown id).
//!
//! The module is compiled into the service but costs it nothing unless started: only the
//! tests, the benchmarks and the `simulate-moodle` command start it. It depends on nothing
//! else in the crate. Its parts:
//! * this file, `options` and `standalone`: starting ([`MoodleSimulator::start_on`],
//!   [`SimulatorOptions`], [`run_standalone`] for the command) and inspection; `control`:
//!   seeds, switches, faults; `records` and `faults`: the types they take and give;
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
mod options;
mod params;
mod php;
mod records;
mod server;
mod site;
mod standalone;
mod users;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::net::TcpListener;

pub use faults::{Fault, FaultSpec};
pub use options::{
    SimulatorError, SimulatorOptions, capability_value, function_value, token_value,
};
pub use records::{
    CourseRecord, CourseSeed, EnrolmentRecord, ManualInstance, RecordedCall, UserRecord, UserSeed,
};
pub use standalone::run_standalone;

use server::{Conn, ResettableListener, router};
use site::Site;

/// The front-page course id (Moodle's `SITEID`).
pub const FRONT_PAGE: i64 = 1;
/// The id of the user that owns the token (as in the fixtures).
pub const TOKEN_USER: i64 = 3;
/// The seeded course category new courses go to (`accessplanit`).
pub const CATEGORY: i64 = 5;
/// The manager role of a standard install (the integration role may not assign it).
pub const ROLE_MANAGER: i64 = 1;
/// The editing teacher role of a standard install.
pub const ROLE_EDITINGTEACHER: i64 = 3;
/// The non-editing teacher role of a standard install.
pub const ROLE_TEACHER: i64 = 4;
/// The student role of a standard install (what `role_id` usually is).
pub const ROLE_STUDENT: i64 = 5;

/// PHP's default `max_input_vars`, as on a site that never raised it (Moodle's environment
/// check asks for 5000): request variables past it are dropped.
pub const DEFAULT_MAX_INPUT_VARS: usize = 1000;

/// Where PHP says the Moodle code lives; it shows up in PHP engine error messages.
pub const MOODLE_DIR: &str = "/var/www/moodle";

/// A running simulated site. Dropping it stops accepting connections.
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
    /// Starts a freshly seeded site on `127.0.0.1:<random port>` with the default options;
    /// for tests, so it panics if loopback cannot be listened on.
    pub async fn start() -> MoodleSimulator {
        let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        MoodleSimulator::start_on(loopback, SimulatorOptions::default())
            .await
            .unwrap_or_else(|e| panic!("cannot start the simulator: {e}"))
    }

    /// Starts a freshly seeded site on `addr` (port 0: any free one), set up by `options`.
    pub async fn start_on(
        addr: SocketAddr,
        options: SimulatorOptions,
    ) -> Result<MoodleSimulator, SimulatorError> {
        options.check()?;
        let bind_error = |source| SimulatorError::Bind { addr, source };
        let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
        let bound = listener.local_addr().map_err(bind_error)?;
        let url = format!("http://{}", reachable(bound));
        let token = options.token.clone().unwrap_or_else(random_hex32);
        let mut site = Site::new(url.clone(), token.clone());
        options.apply(&mut site);
        let shared = Arc::new(Mutex::new(site));
        let app = router(shared.clone());
        let server = tokio::spawn(async move {
            let listener = ResettableListener(listener);
            let service = app.into_make_service_with_connect_info::<Conn>();
            let _ = axum::serve(listener, service).await;
        });
        Ok(MoodleSimulator {
            url,
            token,
            shared,
            server,
        })
    }

    /// The site's `wwwroot`, e.g. `http://127.0.0.1:<port>`, no trailing slash.
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

    /// The most calls that were being answered at the same time.
    pub fn max_calls_in_flight(&self) -> usize {
        self.site().max_in_flight
    }

    /// Forgets the recorded calls (and the most in flight).
    pub fn reset_calls(&self) {
        let mut site = self.site();
        site.calls.clear();
        site.max_in_flight = site.in_flight;
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

/// The address to put in a URL: a wildcard address is reached through loopback.
fn reachable(bound: SocketAddr) -> SocketAddr {
    match bound.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, bound.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, bound.port()).into(),
        _ => bound,
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
