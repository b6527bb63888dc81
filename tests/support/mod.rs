//! Test support: the service started in-process on port 0 with a fresh
//! database, the Moodle simulator (as `FakeMoodle`), and a recording callback receiver.
#![allow(dead_code)]

pub mod browser;
pub mod callback_receiver;
pub mod db;

use std::net::SocketAddr;
use std::time::Duration;

use apit_moodle_sync::config::Config;
use apit_moodle_sync::store::{self, Store};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;

pub use apit_moodle_sync::simulator::{CourseSeed, Fault, MoodleSimulator as FakeMoodle, UserSeed};
pub use callback_receiver::CallbackReceiver;
pub use db::TestDb;

pub const TENANT: &str = "acme";
pub const WEBHOOK_SECRET: &str = "test-webhook-secret-4f1c";
pub const ADMIN_TOKEN: &str = "test-admin-token-9b2e";
pub const CALLBACK_TOKEN: &str = "test-callback-token-77aa";

/// The configuration tests start from, pointed at `moodle` and `receiver`.
pub fn test_config(database_url: &str, moodle: &FakeMoodle, receiver: &CallbackReceiver) -> String {
    format!(
        r#"
listen = "127.0.0.1:0"
database_url = "{database_url}"
admin_token = "{ADMIN_TOKEN}"

[worker]
lease = "5s"
poll_interval = "50ms"

[retry]
initial_backoff = "50ms"
max_backoff = "400ms"
max_age = "1h"

[tenants.{TENANT}]
webhook_secret = "{WEBHOOK_SECRET}"
moodle_url = "{moodle_url}"
moodle_token = "{token}"
category_id = 5
role_id = 5
moodle_timeout = "2s"

[tenants.{TENANT}.callback]
kind = "webhook"
url = "{callback}"
bearer_token = "{CALLBACK_TOKEN}"
"#,
        moodle_url = moodle.url(),
        token = moodle.token(),
        callback = receiver.url,
    )
}

/// The service running in-process.
pub struct TestApp {
    pub base: String,
    pub addr: SocketAddr,
    pub moodle: FakeMoodle,
    pub callbacks: CallbackReceiver,
    pub store: Arc<dyn Store>,
    pub http: reqwest::Client,
    pub db: TestDb,
    /// The configuration it runs with (a restart uses it again).
    pub toml: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// Starts the service with the default test configuration on SQLite.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|toml| toml).await
}

/// Starts the service with an edited configuration.
pub async fn spawn_app_with(edit: impl FnOnce(String) -> String) -> TestApp {
    let moodle = FakeMoodle::start().await;
    let callbacks = CallbackReceiver::start().await;
    start(TestDb::sqlite(), moodle, callbacks, edit).await
}

/// Starts the service on a given database, Moodle and receiver.
pub async fn start(
    db: TestDb,
    moodle: FakeMoodle,
    callbacks: CallbackReceiver,
    edit: impl FnOnce(String) -> String,
) -> TestApp {
    let toml = edit(test_config(&db.url, &moodle, &callbacks));
    let config = Config::from_toml(&toml).expect("test configuration is valid");
    let store = store::connect(&config.database_url)
        .await
        .expect("store opens");
    start_on(db, moodle, callbacks, toml, store).await
}

/// Starts the service with configuration `toml` on an opened `store` (of `db`).
pub async fn start_on(
    db: TestDb,
    moodle: FakeMoodle,
    callbacks: CallbackReceiver,
    toml: String,
    store: Arc<dyn Store>,
) -> TestApp {
    let config = Config::from_toml(&toml).expect("test configuration is valid");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(apit_moodle_sync::app::run(
        config,
        store.clone(),
        listener,
        async move {
            let _ = rx.await;
        },
    ));
    TestApp {
        base: format!("http://{addr}"),
        addr,
        moodle,
        callbacks,
        store,
        http: reqwest::Client::new(),
        db,
        toml,
        shutdown: Some(tx),
        handle: Some(handle),
    }
}

/// A response as tests look at it.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub content_type: String,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    /// Reads a response.
    pub async fn from_response(r: reqwest::Response) -> Self {
        let status = r.status();
        let headers = r.headers().clone();
        let content_type = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let text = r.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Answer {
            status,
            content_type,
            headers,
            body,
        }
    }

    /// The job id of an event answer.
    pub fn job_id(&self) -> String {
        self.body["job_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no job_id in {}", self.body))
            .to_string()
    }
}

impl TestApp {
    /// POSTs an event with the tenant's secret; `query` like `"?wait=10"`.
    pub async fn post_event(&self, kind: &str, body: &Value, query: &str) -> Answer {
        self.post_raw(kind, query, |r| r.json(body)).await
    }

    /// POSTs with a custom request builder (headers, raw bodies).
    pub async fn post_raw(
        &self,
        kind: &str,
        query: &str,
        build: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Answer {
        let url = format!("{}/v1/tenants/{TENANT}/events/{kind}{query}", self.base);
        let request = build(self.http.post(url).bearer_auth(WEBHOOK_SECRET));
        Answer::from_response(request.send().await.unwrap()).await
    }

    /// An admin GET.
    pub async fn admin_get(&self, path: &str) -> Answer {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        Answer::from_response(r).await
    }

    /// An admin POST without body.
    pub async fn admin_post(&self, path: &str) -> Answer {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        Answer::from_response(r).await
    }

    /// A GET without credentials.
    pub async fn get(&self, path: &str) -> Answer {
        Answer::from_response(
            self.http
                .get(format!("{}{path}", self.base))
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// The job's detail view.
    pub async fn job(&self, id: &str) -> Value {
        let a = self.admin_get(&format!("/v1/jobs/{id}")).await;
        assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
        a.body
    }

    /// Waits until the job reaches a final status (or `timeout`), and returns it.
    pub async fn wait_final(&self, id: &str, timeout: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let job = self.job(id).await;
            let status = job["status"].as_str().unwrap().to_string();
            if !matches!(status.as_str(), "queued" | "running") {
                return job;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("job {id} still {status} after {timeout:?}: {job}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits until no job is queued or running.
    pub async fn drain(&self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let mut busy = 0;
            for status in ["queued", "running"] {
                let page = self.admin_get(&format!("/v1/jobs?status={status}")).await;
                assert_eq!(page.status, StatusCode::OK, "{:?}", page.body);
                busy += page.body["jobs"].as_array().map_or(0, Vec::len);
            }
            if busy == 0 {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("{busy} jobs still queued or running after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits until nothing is left to do now: no job running or due (a job
    /// waiting for a retry minutes away counts as done for now) and no
    /// write-back waiting for delivery — zero2prod's "dispatch all pending".
    /// Tests assert that something did NOT happen only after this.
    pub async fn settle(&self, timeout: Duration) {
        use apit_moodle_sync::store::{JobFilter, JobStatus};
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let soon = chrono::Utc::now() + chrono::Duration::seconds(1);
            let active = self
                .store
                .jobs(&JobFilter::default())
                .await
                .unwrap()
                .into_iter()
                .filter(|j| match j.status {
                    JobStatus::Running => true,
                    JobStatus::Queued => j.next_attempt_at.is_none_or(|at| at <= soon),
                    _ => false,
                })
                .count();
            let pending = self.store.pending_writebacks().await.unwrap();
            if active == 0 && pending == 0 {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("{active} jobs busy and {pending} write-backs pending after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every job, newest first.
    pub async fn jobs(&self) -> Vec<Value> {
        let page = self.admin_get("/v1/jobs?limit=500").await;
        assert_eq!(page.status, StatusCode::OK, "{:?}", page.body);
        page.body["jobs"].as_array().cloned().unwrap_or_default()
    }

    /// Waits until `n` write-backs have arrived.
    pub async fn wait_writebacks(&self, n: usize, timeout: Duration) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let got = self.callbacks.bodies();
            if got.len() >= n {
                return got;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "only {} of {n} write-backs after {timeout:?}: {got:?}",
                    got.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Stops the service as SIGTERM would, and waits for it.
    pub async fn stop(mut self) {
        self.halt().await;
    }

    async fn halt(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.unwrap().unwrap();
        }
    }

    /// Stops the service and starts it again on the same database, Moodle,
    /// receiver and configuration.
    pub async fn restart(mut self) -> TestApp {
        self.halt().await;
        let store = store::connect(&self.db.url).await.expect("store reopens");
        let TestApp {
            db,
            moodle,
            callbacks,
            toml,
            ..
        } = self;
        start_on(db, moodle, callbacks, toml, store).await
    }
}

/// A course-saved body.
pub fn course_saved(course_id: &str, label: &str) -> Value {
    json!({
        "course": {
            "id": course_id,
            "label": label,
            "type": "classroom",
            "sync_to_moodle": "yes",
            "start": "2027-01-12 09:00",
            "end": "2027-01-14 17:00",
            "template": {"id": "T77", "name": "First Aid", "aims": "<p>Aims &amp; goals</p>"}
        }
    })
}

/// A booking body for a classroom course.
pub fn booking(booking_id: &str, course_id: &str, user_id: &str, email: &str) -> Value {
    json!({
        "booking": {"id": booking_id},
        "course": {
            "id": course_id,
            "label": format!("Course {course_id}"),
            "type": "classroom",
            "sync_to_moodle": true,
            "start": "2027-01-12T09:00:00Z",
            "end": "2027-01-14T17:00:00Z"
        },
        "user": {
            "id": user_id,
            "first_name": "Ada",
            "last_name": "Lovelace",
            "email": email
        }
    })
}

/// Seeds a course in Moodle; returns its id.
pub fn seed_course(
    moodle: &FakeMoodle,
    fullname: &str,
    shortname: &str,
    idnumber: Option<&str>,
) -> i64 {
    let mut seed = CourseSeed::new(shortname);
    seed.fullname = fullname.into();
    seed.idnumber = idnumber.unwrap_or_default().into();
    moodle.add_course(seed)
}

/// Seeds a user in Moodle; returns its id.
pub fn seed_user(moodle: &FakeMoodle, username: &str, email: &str) -> i64 {
    moodle.add_user(UserSeed::new(username, email))
}
