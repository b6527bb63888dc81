//! The client against a tiny in-test HTTP server (axum on port 0): what goes on the
//! wire for each trait method (insta snapshots), and what each kind of answer becomes.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use secrecy::SecretString;

use super::wsfunction as ws;
use super::*;

const TOKEN: &str = "0123456789abcdef0123456789abcdef";
const ENDPOINT: &str = "/webservice/rest/server.php";

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path: String,
    query: Option<String>,
    content_type: Option<String>,
    raw_body: String,
    form: Vec<(String, String)>,
}

impl Seen {
    fn function(&self) -> &str {
        self.get("wsfunction").unwrap_or("")
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The decoded form, token replaced, as `key=value` lines (the snapshot format).
    fn lines(&self) -> Vec<String> {
        self.form
            .iter()
            .map(|(k, v)| {
                let v = if k == "wstoken" { "<token>" } else { v };
                format!("{k}={v}")
            })
            .collect()
    }
}

/// What the server answers.
#[derive(Debug, Clone)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    delay: Duration,
}

impl Reply {
    fn json(body: impl Into<String>) -> Self {
        Reply::new(200, "application/json", body)
    }

    fn new(status: u16, content_type: &str, body: impl Into<String>) -> Self {
        Reply {
            status,
            headers: vec![("content-type", content_type.to_owned())],
            body: body.into(),
            delay: Duration::ZERO,
        }
    }

    fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }

    fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

type Responder = Box<dyn Fn(&Seen) -> Reply + Send + Sync>;

struct ServerState {
    responder: Responder,
    seen: Mutex<Vec<Seen>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

struct FakeMoodle {
    url: String,
    state: Arc<ServerState>,
}

impl FakeMoodle {
    async fn start(responder: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Self {
        let state = Arc::new(ServerState {
            responder: Box::new(responder),
            seen: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new().fallback(answer).with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeMoodle { url, state }
    }

    /// Answers the given replies in order (the last one repeats).
    async fn replying(replies: Vec<Reply>) -> Self {
        let queue = Mutex::new(VecDeque::from(replies));
        FakeMoodle::start(move |_| {
            let mut queue = queue.lock().unwrap();
            if queue.len() > 1 {
                queue.pop_front().unwrap()
            } else {
                queue.front().cloned().expect("a reply")
            }
        })
        .await
    }

    fn client(&self) -> MoodleClient {
        client_for(&self.url, Duration::from_secs(5), 4)
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }
}

fn client_for(url: &str, timeout: Duration, max_concurrency: usize) -> MoodleClient {
    MoodleClient::new(
        url,
        SecretString::from(TOKEN.to_owned()),
        timeout,
        max_concurrency,
    )
    .unwrap()
}

async fn answer(
    State(state): State<Arc<ServerState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let raw_body = String::from_utf8_lossy(&body).into_owned();
    let form = reqwest::Url::parse(&format!("http://form/?{raw_body}"))
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    let seen = Seen {
        method,
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        content_type: headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        raw_body,
        form,
    };
    state.seen.lock().unwrap().push(seen.clone());
    let reply = (state.responder)(&seen);
    let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_in_flight.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(reply.delay).await;
    state.in_flight.fetch_sub(1, Ordering::SeqCst);
    let mut response = Response::builder().status(reply.status);
    for (name, value) in reply.headers {
        response = response.header(name, value);
    }
    response.body(Body::from(reply.body)).unwrap()
}

/// Recorded success bodies (moodle-fixtures, trimmed), by function.
fn success(seen: &Seen) -> Reply {
    Reply::json(match seen.function() {
        ws::SITE_INFO => {
            r#"{"sitename":"APIT Moodle Rig","username":"apit_integration","userid":3,"siteurl":"http:\/\/127.0.0.1:8090","functions":[{"name":"core_webservice_get_site_info","version":"2024100700.09"}],"release":"4.5+ (Build: 20241205)","version":"2024100700.09"}"#
        }
        ws::COURSES_BY_FIELD => {
            r#"{"courses":[{"id":2,"fullname":"APIT Fire Safety Level 2","displayname":"APIT Fire Safety Level 2","shortname":"APIT-C1-52c2f4","categoryid":2,"summary":"","summaryformat":1,"idnumber":"apit-ev-1-52c2f4","startdate":1807002000,"enddate":1807174800,"visible":1}],"warnings":[]}"#
        }
        ws::CREATE_COURSES => r#"[{"id":2,"shortname":"APIT-C1-52c2f4"}]"#,
        ws::UPDATE_COURSES => r#"{"warnings":[]}"#,
        ws::USERS_BY_FIELD => {
            r#"[{"id":6,"username":"apit.del1.52c2f4","fullname":"Del Apit","email":"del1.52c2f4@example.invalid","idnumber":"apit-p-1-52c2f4","suspended":false}]"#
        }
        ws::GET_USERS => {
            r#"{"users":[{"id":6,"username":"apit.del1.52c2f4","fullname":"Del Apit","email":"del1.52c2f4@example.invalid","suspended":false}],"warnings":[]}"#
        }
        ws::CREATE_USERS => r#"[{"id":6,"username":"apit.del1.52c2f4"}]"#,
        ws::ENROL | ws::UNENROL => "null",
        ws::GRADE_ITEMS => {
            r#"{"usergrades":[{"courseid":2,"userid":6,"useridnumber":"apit-p-1-52c2f4","gradeitems":[{"id":1,"itemtype":"course","graderaw":72.5,"grademin":0,"grademax":100}]}],"warnings":[]}"#
        }
        ws::COMPLETION => {
            r#"{"completionstatus":{"completed":false,"aggregation":1,"completions":[{"type":2,"complete":false,"timecompleted":null}]},"warnings":[]}"#
        }
        other => panic!("no canned answer for {other}"),
    })
}

fn only_request(server: &FakeMoodle) -> Seen {
    let seen = server.seen();
    assert_eq!(seen.len(), 1, "{seen:#?}");
    seen.into_iter().next().unwrap()
}

/// Every trait method, as sent on the wire: POST, form-encoded, token/function/format
/// first and in the body, then exactly the function's fields.
#[tokio::test]
async fn every_method_sends_the_expected_form() {
    let server = FakeMoodle::start(success).await;
    let client = server.client();

    // Each case: snapshot name, the call (checked for its parsed result).
    let session = client.session();
    let mut names = Vec::new();
    macro_rules! case {
        ($name:literal, $call:expr, $expected:expr) => {{
            assert_eq!($call.await.unwrap(), $expected, $name);
            names.push($name);
        }};
    }
    case!("site_info", session.site_info(), {
        SiteInfo {
            sitename: "APIT Moodle Rig".into(),
            siteurl: "http://127.0.0.1:8090".into(),
            username: "apit_integration".into(),
            userid: 3,
            release: Some("4.5+ (Build: 20241205)".into()),
            version: Some("2024100700.09".into()),
            functions: vec!["core_webservice_get_site_info".into()],
            siteid: None,
        }
    });
    let found = Some(Course {
        id: 2,
        shortname: "APIT-C1-52c2f4".into(),
        fullname: "APIT Fire Safety Level 2".into(),
        idnumber: Some("apit-ev-1-52c2f4".into()),
        summary: Some(String::new()),
        startdate: Some(1_807_002_000),
        enddate: Some(1_807_174_800),
    });
    case!(
        "course_by_idnumber",
        session.course_by_idnumber("apit-course-42"),
        found.clone()
    );
    case!("course_by_id", session.course_by_id(2), found.clone());
    case!(
        "course_by_shortname",
        session.course_by_shortname("Fire Safety & First Aid (42)"),
        found
    );
    case!(
        "create_course",
        session.create_course(&NewCourse {
            fullname: "Fire Safety & First Aid".into(),
            shortname: "Fire Safety & First Aid (42)".into(),
            categoryid: 7,
            idnumber: "apit-course-42".into(),
            summary: Some("<p>Aims: <strong>safe</strong> &amp; sound</p>".into()),
            startdate: Some(1_803_978_000),
            enddate: Some(1_804_150_800),
            visible: Some(true),
        }),
        2
    );
    case!(
        "create_course_minimal",
        session.create_course(&NewCourse {
            fullname: "Webinar".into(),
            shortname: "Webinar (43)".into(),
            categoryid: 7,
            idnumber: "apit-course-43".into(),
            summary: None,
            startdate: None,
            enddate: None,
            visible: None,
        }),
        2
    );
    case!(
        "update_course",
        session.update_course(&CourseUpdate {
            id: 2,
            fullname: Some("Fire Safety Level 3".into()),
            summary: Some(String::new()),
            startdate: Some(1_807_002_000),
            enddate: Some(1_807_174_800),
        }),
        ()
    );
    case!(
        "update_course_dates",
        session.update_course(&CourseUpdate {
            id: 2,
            startdate: Some(1_807_002_000),
            enddate: Some(0),
            ..CourseUpdate::default()
        }),
        ()
    );
    let user = User {
        id: 6,
        username: Some("apit.del1.52c2f4".into()),
        email: Some("del1.52c2f4@example.invalid".into()),
        idnumber: Some("apit-p-1-52c2f4".into()),
        firstname: None,
        lastname: None,
        suspended: Some(false),
    };
    case!(
        "users_by_field_idnumber",
        session.users_by_field(UserField::Idnumber, "apit-user-9"),
        vec![user.clone()]
    );
    case!(
        "users_by_field_email",
        session.users_by_field(UserField::Email, "ada.lovelace+mdl@example.com"),
        vec![user.clone()]
    );
    case!(
        "users_by_email_like",
        session.users_by_email_like("Ada.Lovelace@Example.com"),
        vec![User {
            idnumber: None,
            ..user
        }]
    );
    case!(
        "create_user",
        session.create_user(&NewUser {
            username: "ada.lovelacemdl@example.com".into(),
            firstname: "Ada".into(),
            lastname: "O'Lovelace".into(),
            email: "Ada.Lovelace+mdl@Example.com".into(),
            idnumber: "apit-user-9".into(),
        }),
        6
    );
    // Two jobs' enrolments, asked at once of a batching client: one call.
    let batching = server.client().with_pacing(Pacing {
        batch_window: Duration::from_millis(50),
        max_calls_per_second: None,
    });
    let (a, b) = (batching.session(), batching.session());
    let ada = Enrolment {
        roleid: 5,
        userid: 6,
        courseid: 2,
        suspend: false,
    };
    let bob = Enrolment {
        roleid: 5,
        userid: 7,
        courseid: 2,
        suspend: true,
    };
    let (ada, bob) = tokio::join!(a.enrol(&ada), b.enrol(&bob));
    assert_eq!((ada.unwrap(), bob.unwrap()), ((), ()), "enrol");
    assert_eq!(a.calls()[0].batch, Some(2), "the job rode in a batch of 2");
    names.push("enrol");
    case!(
        "unenrol",
        session.unenrol(&Unenrolment {
            userid: 7,
            courseid: 2
        }),
        ()
    );
    case!(
        "course_totals",
        session.course_totals(2),
        vec![CourseTotal {
            userid: 6,
            useridnumber: Some("apit-p-1-52c2f4".into()),
            graderaw: Some(72.5),
            grademin: Some(0.0),
            grademax: Some(100.0),
        }]
    );
    case!(
        "completion",
        session.completion(10, 6),
        Some(Completion {
            completed: false,
            completed_at: None,
        })
    );

    let seen = server.seen();
    assert_eq!(seen.len(), names.len());
    for (name, request) in names.iter().zip(&seen) {
        assert_eq!(request.method, Method::POST, "{name}");
        assert_eq!(request.path, ENDPOINT, "{name}");
        assert_eq!(request.query, None, "{name}: nothing in the URL");
        assert_eq!(
            request.content_type.as_deref(),
            Some("application/x-www-form-urlencoded"),
            "{name}"
        );
        assert_eq!(request.form[0], ("wstoken".into(), TOKEN.into()), "{name}");
        assert_eq!(
            request.form[2],
            ("moodlewsrestformat".into(), "json".into())
        );
        insta::assert_yaml_snapshot!(*name, request.lines());
    }

    // One record per call, all "ok", named by function (the enrolment was
    // recorded by the two batched sessions).
    let calls = session.calls();
    assert_eq!(calls.len() + 1, names.len());
    assert!(calls.iter().all(|c| c.outcome == "ok"), "{calls:#?}");
    let functions: Vec<&str> = seen
        .iter()
        .map(Seen::function)
        .filter(|f| *f != ws::ENROL)
        .collect();
    let recorded: Vec<&str> = calls.iter().map(|c| c.function.as_str()).collect();
    assert_eq!(functions, recorded);
}

/// Inputs whose answer is known without asking Moodle make no call at all.
#[tokio::test]
async fn known_answers_make_no_call() {
    let server = FakeMoodle::start(success).await;
    let session = server.client().session();
    assert_eq!(session.course_by_idnumber("").await.unwrap(), None);
    assert_eq!(session.course_by_shortname("  ").await.unwrap(), None);
    assert_eq!(
        session
            .users_by_field(UserField::Idnumber, "")
            .await
            .unwrap(),
        []
    );
    assert_eq!(session.users_by_email_like("").await.unwrap(), []);
    session
        .update_course(&CourseUpdate {
            id: 2,
            ..CourseUpdate::default()
        })
        .await
        .unwrap();
    assert!(server.seen().is_empty());
    assert!(session.calls().is_empty());
}

#[tokio::test]
async fn timeout_is_transient() {
    let server =
        FakeMoodle::replying(vec![Reply::json("null").after(Duration::from_secs(3))]).await;
    let session = client_for(&server.url, Duration::from_millis(300), 2).session();
    let error = session.enrol(&enrolment()).await.unwrap_err();
    assert!(
        matches!(error, MoodleError::Transport { timeout: true, .. }),
        "{error:?}"
    );
    assert_eq!(error.class(), ErrorClass::Transient);
    assert_eq!(
        error.to_string(),
        "enrol_manual_enrol_users: Moodle did not answer in time (no answer within 300ms)"
    );
    let calls = session.calls();
    assert_eq!(calls[0].outcome, "timeout");
    assert!(calls[0].ms >= 300, "{calls:?}");
}

#[tokio::test]
async fn connection_refused_is_transient() {
    let session = client_for(&closed_port_url(), Duration::from_secs(2), 1).session();
    let error = session.site_info().await.unwrap_err();
    assert!(
        matches!(error, MoodleError::Transport { timeout: false, .. }),
        "{error:?}"
    );
    assert_eq!(error.class(), ErrorClass::Transient);
    let text = error.to_string();
    assert!(
        text.starts_with(
            "core_webservice_get_site_info: Moodle could not be reached (could not connect: "
        ),
        "{text}"
    );
    assert!(text.to_lowercase().contains("refused"), "{text}");
    assert!(!error.is_tls_failure());
    assert_eq!(session.calls()[0].outcome, "connection error");
}

/// https:// to a server that speaks plain HTTP: the handshake fails, and says so.
#[tokio::test]
async fn a_failed_tls_handshake_is_named() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Ok((mut socket, _)) = listener.accept().await {
            let _ = socket.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        }
    });
    let session = client_for(&format!("https://{addr}"), Duration::from_secs(2), 1).session();
    let error = session.site_info().await.unwrap_err();
    assert!(error.is_tls_failure(), "{error:?}");
    assert_eq!(error.class(), ErrorClass::Transient);
    assert!(
        error.to_string().starts_with(
            "core_webservice_get_site_info: Moodle could not be reached (TLS handshake failed: "
        ),
        "{error}"
    );
}

/// CLI maintenance (upgrade): 503, `Retry-After: 300`, an HTML page.
#[tokio::test]
async fn maintenance_503_carries_retry_after() {
    let server = FakeMoodle::replying(vec![
        Reply::new(
            503,
            "text/html",
            "<html><body>Upgrade in progress</body></html>",
        )
        .header("retry-after", "300"),
    ])
    .await;
    let session = server.client().session();
    let error = session.create_course(&course()).await.unwrap_err();
    assert!(matches!(error, MoodleError::Status { status: 503, .. }));
    assert_eq!(error.retry_after(), Some(Duration::from_secs(300)));
    assert_eq!(error.class(), ErrorClass::Transient);
    assert_eq!(session.calls()[0].outcome, "http 503");
}

/// fixture rest_envelope/wrong_path_site_root.json: the site's home page.
#[tokio::test]
async fn html_answer_is_configuration() {
    let server = FakeMoodle::replying(vec![Reply::new(
        200,
        "text/html; charset=utf-8",
        "<!DOCTYPE html>\n<html dir=\"ltr\" lang=\"en\"><head><title>Home | apitrig</title>",
    )])
    .await;
    let session = server.client().session();
    let error = session.site_info().await.unwrap_err();
    assert!(matches!(error, MoodleError::NotJson { .. }), "{error:?}");
    assert_eq!(error.class(), ErrorClass::Configuration);
    assert_eq!(
        error.to_string(),
        "core_webservice_get_site_info: Moodle answered with a web page instead of web-service \
         JSON (text/html; charset=utf-8). Fix: moodle_url is not the site's wwwroot (it answered \
         with a web page): set it to the site address exactly as in Moodle's config.php \
         ($CFG->wwwroot), scheme and sub-directory included"
    );
    assert_eq!(session.calls()[0].outcome, "not json");
}

/// A redirect (http→https, a login page) would drop the POST body: report, don't follow.
#[tokio::test]
async fn redirect_is_reported_not_followed() {
    let server = FakeMoodle::replying(vec![
        Reply::new(303, "text/html", "").header("location", "/login/index.php"),
        Reply::json(r#"{"exception":"x","errorcode":"invalidtoken","message":"followed"}"#),
    ])
    .await;
    let session = server.client().session();
    let error = session.site_info().await.unwrap_err();
    assert!(matches!(error, MoodleError::Status { status: 303, .. }));
    assert_eq!(error.class(), ErrorClass::Configuration);
    assert!(
        error
            .fix()
            .unwrap()
            .starts_with("moodle_url is not the site's wwwroot")
    );
    assert_eq!(only_request(&server).path, ENDPOINT);
}

/// fixture rest_envelope/webservices_disabled.json: 403 with an empty body.
#[tokio::test]
async fn webservices_disabled_is_configuration() {
    let server = FakeMoodle::replying(vec![Reply::new(403, "text/html; charset=utf-8", "")]).await;
    let error = server.client().session().site_info().await.unwrap_err();
    assert_eq!(error.class(), ErrorClass::Configuration);
    assert_eq!(
        error.to_string(),
        "core_webservice_get_site_info: Moodle refuses web-service calls (HTTP 403). Fix: enable \
         web services (Site administration › Advanced features › Enable web services) and the \
         REST protocol (Site administration › Server › Web services › Manage protocols)"
    );
}

/// Moodle's own error envelopes, through the whole client (recorded fixtures).
#[tokio::test]
async fn moodle_errors_are_typed_and_recorded() {
    let server = FakeMoodle::replying(vec![
        // rest_envelope/function_not_in_service.json
        Reply::json(
            r#"{"exception":"webservice_access_exception","errorcode":"accessexception","message":"Access control exception"}"#,
        ),
        // enrol_manual_enrol_users/unknown_user.json, with the path a real server sends
        Reply::json(
            r#"{"exception":"TypeError","message":"core\\user::get_name_placeholders(): Argument #1 ($user) must be of type stdClass, bool given, called in \/var\/www\/html\/moodle\/lib\/enrollib.php on line 3677"}"#,
        ),
        // core_course_create_courses/duplicate_shortname.json
        Reply::json(
            r#"{"exception":"core\\exception\\moodle_exception","errorcode":"shortnametaken","message":"Short name is already used for another course (APIT-C1-52c2f4)"}"#,
        ),
        // core_course_update_courses/enddate_before_startdate.json (warning form)
        Reply::json(
            r#"{"warnings":[{"item":"course","itemid":2,"warningcode":"enddatebeforestartdate","message":"The course end date must be after the start date."}]}"#,
        ),
        // core_completion_get_course_completion_status/user_not_enrolled.json
        Reply::json(
            r#"{"exception":"core\\exception\\moodle_exception","errorcode":"usernotenroled","message":"User is not enrolled in this course"}"#,
        ),
        // rest_envelope/missing_capability.json
        Reply::json(
            r#"{"exception":"core\\exception\\required_capability_exception","errorcode":"nopermissions","message":"Sorry, but you do not currently have permissions to do that (Create courses)."}"#,
        ),
    ])
    .await;
    let session = server.client().session();

    let access = session.enrol(&enrolment()).await.unwrap_err();
    assert_eq!(access.class(), ErrorClass::Configuration);
    assert_eq!(
        access.to_string(),
        "enrol_manual_enrol_users: Moodle denied the token access to enrol_manual_enrol_users \
         (Moodle accessexception: Access control exception). Fix: add the function \
         enrol_manual_enrol_users to the External Service used by this token (Site \
         administration › Server › Web services › External services › Functions), and check \
         the token user has webservice/rest:use; an expired or IP-restricted token, or a \
         suspended integration user, gives the same error"
    );

    let no_user = session.enrol(&enrolment()).await.unwrap_err();
    assert_eq!(no_user.class(), ErrorClass::Data);
    assert_eq!(
        no_user.to_string(),
        "enrol_manual_enrol_users: the Moodle user does not exist or is deleted (Moodle \
         TypeError: core\\user::get_name_placeholders(): Argument #1 ($user) must be of type \
         stdClass, bool given, called in [path] on line 3677)"
    );

    let taken = session.create_course(&course()).await.unwrap_err();
    assert_eq!(taken.class(), ErrorClass::Conflict);
    assert_eq!(taken.errorcode(), Some("shortnametaken"));

    let dates = session
        .update_course(&CourseUpdate {
            id: 2,
            startdate: Some(1_807_174_800),
            enddate: Some(1_807_002_000),
            ..CourseUpdate::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(
        dates,
        MoodleError::Warning {
            itemid: Some(2),
            ..
        }
    ));
    assert_eq!(dates.class(), ErrorClass::Data);

    assert_eq!(session.completion(10, 7).await.unwrap(), None);

    let nocap = session.create_course(&course()).await.unwrap_err();
    assert!(
        nocap
            .fix()
            .unwrap()
            .contains("'Create courses' (moodle/course:create)")
    );

    let outcomes: Vec<String> = session.calls().into_iter().map(|c| c.outcome).collect();
    assert_eq!(
        outcomes,
        [
            "accessexception",
            "no errorcode (TypeError)",
            "shortnametaken",
            "warning enddatebeforestartdate",
            "usernotenroled",
            "nopermissions",
        ]
    );
}

/// The semaphore caps calls in flight per client, across all its sessions.
#[tokio::test]
async fn concurrency_is_capped_per_client() {
    // Six calls of 300 ms through two permits: three waves.
    let server = FakeMoodle::start(|seen| success(seen).after(Duration::from_millis(300))).await;
    let client = client_for(&server.url, Duration::from_secs(5), 2);
    let (a, b) = (client.session(), client.session());
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..6 {
        let session = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.spawn(async move { session.site_info().await.map(|_| ()) });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap().unwrap();
    }
    assert_eq!(server.state.max_in_flight.load(Ordering::SeqCst), 2);
    assert_eq!(server.seen().len(), 6);
    assert_eq!((a.calls().len(), b.calls().len()), (3, 3));
    // The latency recorded is the HTTP exchange (≈300 ms), not the wait for a permit
    // (the last wave would show ≥ 900 ms).
    let calls = [a.calls(), b.calls()].concat();
    assert!(
        calls.iter().all(|c| (300..800).contains(&c.ms)),
        "{calls:?}"
    );
}

/// A log sink for the token test.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A site that echoes the request back (token included) in every place an answer
/// can carry text: no error text, Debug output, call record or log line shows it.
#[tokio::test]
async fn the_token_never_leaks() {
    let logs = Logs::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || sink.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let echo = |seen: &Seen| serde_json::to_string(&seen.raw_body).unwrap();
    let server = FakeMoodle::start(move |seen| {
        let body = echo(seen);
        match seen.get("field").or(seen.get("courseid")) {
            // An exception quoting the request in message and debuginfo.
            Some("idnumber") => Reply::json(format!(
                r#"{{"exception":"invalid_parameter_exception","errorcode":"invalidparameter","message":{body},"debuginfo":{body}}}"#
            )),
            // The token where the errorcode goes (it is shaped like a code).
            Some("shortname") => Reply::json(format!(
                r#"{{"exception":"{TOKEN}","errorcode":"{TOKEN}","message":"x"}}"#
            )),
            // A warning quoting it.
            Some("id") => Reply::json(format!(
                r#"{{"courses":[],"warnings":[{{"itemid":1,"warningcode":"x","message":{body}}}]}}"#
            )),
            // A value of the wrong type holding it (serde quotes it).
            Some("2") => Reply::json(format!(r#"{{"usergrades":"{TOKEN}"}}"#)),
            // An HTML page and a content type quoting it.
            _ => Reply::new(200, &format!("text/html; x={TOKEN}"), seen.raw_body.clone()),
        }
    })
    .await;
    let client = server.client();
    let session = client.session();

    let errors = vec![
        session
            .course_by_idnumber("apit-course-1")
            .await
            .unwrap_err(),
        session.course_by_shortname("s").await.unwrap_err(),
        session.course_by_id(1).await.unwrap_err(),
        session.course_totals(2).await.unwrap_err(),
        session.site_info().await.unwrap_err(),
        // Status and Transport: a 503 and a refused connection.
        MoodleError::Status {
            function: "f".into(),
            status: 503,
            retry_after: None,
        },
        client_for(&closed_port_url(), Duration::from_secs(1), 1)
            .session()
            .site_info()
            .await
            .unwrap_err(),
    ];
    let kinds: Vec<&str> = errors
        .iter()
        .map(|e| match e {
            MoodleError::Transport { .. } => "transport",
            MoodleError::Status { .. } => "status",
            MoodleError::NotJson { .. } => "not json",
            MoodleError::Exception { .. } => "exception",
            MoodleError::Warning { .. } => "warning",
            MoodleError::Unexpected { .. } => "unexpected",
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "exception",
            "exception",
            "warning",
            "unexpected",
            "not json",
            "status",
            "transport"
        ]
    );
    for error in &errors {
        for text in [
            error.to_string(),
            format!("{error:?}"),
            error.fix().unwrap_or_default(),
            error.outcome(),
        ] {
            assert!(!text.contains(TOKEN), "{text}");
        }
    }
    // The echo did reach the client: the redaction is what removed it.
    let quoted = errors[0].to_string();
    assert!(quoted.contains("wstoken=[redacted]"), "{quoted}");
    assert_eq!(errors[1].errorcode(), Some("[redacted]"));

    for text in [
        format!("{client:?}"),
        format!("{session:?}"),
        format!("{:?}", session.calls()),
    ] {
        assert!(!text.contains(TOKEN), "{text}");
    }
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("moodle call"), "{logs}");
    assert!(logs.contains("moodle debuginfo"), "{logs}");
    assert!(!logs.contains(TOKEN), "{logs}");

    // And the token was sent, in the body only.
    for seen in server.seen() {
        assert_eq!(seen.query, None);
        assert_eq!(seen.get("wstoken"), Some(TOKEN));
    }
}

#[test]
fn settings_are_checked_when_the_client_is_built() {
    let token = || SecretString::from(TOKEN.to_owned());
    let build = |url: &str, concurrency| {
        MoodleClient::new(url, token(), Duration::from_secs(30), concurrency)
    };
    let client = build("https://moodle.example.org/lms/", 4).unwrap();
    assert_eq!(
        client.endpoint(),
        "https://moodle.example.org/lms/webservice/rest/server.php"
    );
    for bad in [
        "moodle.example.org",
        "ftp://moodle.example.org",
        "https://admin:pw@moodle.example.org",
        "https://moodle.example.org/?lang=en",
    ] {
        let error = build(bad, 4).unwrap_err();
        assert!(!error.to_string().contains("pw@"), "{error}");
    }
    assert!(build("https://moodle.example.org", 0).is_err());
    assert!(MoodleClient::new("https://m.example.org", token(), Duration::ZERO, 1).is_err());
}

/// A URL where nothing listens (a port just released).
fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", listener.local_addr().unwrap())
}

fn enrolment() -> Enrolment {
    Enrolment {
        roleid: 5,
        userid: 999_999,
        courseid: 2,
        suspend: false,
    }
}

fn course() -> NewCourse {
    NewCourse {
        fullname: "F".into(),
        shortname: "S".into(),
        categoryid: 2,
        idnumber: "apit-course-1".into(),
        summary: None,
        startdate: Some(1_803_978_000),
        enddate: Some(1_804_150_800),
        visible: Some(true),
    }
}
