//! The HTTP client for `{moodle_url}/webservice/rest/server.php`.
//!
//! One [`MoodleClient`] per tenant: one connection pool, the token, and a semaphore
//! that caps the calls in flight against that tenant's Moodle. One [`MoodleSession`]
//! per job records every call it makes. No retries here: the worker decides from
//! [`MoodleError::class`].

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::header::{ACCEPT, CONTENT_TYPE, RETRY_AFTER};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tokio::sync::Semaphore;

use super::envelope::{self, Answer};
use super::functions::{self as f, Request};
use super::sanitize;
use super::*;

/// The longest wait for a TCP/TLS connection, whatever the call timeout.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle pooled connections are dropped after this. It is below Apache's default
/// `KeepAliveTimeout` (5 s) on purpose: a POST (a create) is not idempotent, so a new
/// handshake is cheaper than sending it into a connection the server is closing.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(4);

/// Settings that cannot make a working client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid Moodle client settings: {0}")]
pub struct ClientBuildError(String);

/// A tenant's Moodle site: one HTTP client, its token, and its concurrency limit.
#[derive(Clone)]
pub struct MoodleClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    /// `{wwwroot}/webservice/rest/server.php`; never carries the token.
    endpoint: String,
    token: SecretString,
    timeout: Duration,
    max_concurrency: usize,
    /// Held around each HTTP call: protects the tenant's Moodle from this service.
    permits: Semaphore,
}

impl MoodleClient {
    /// A client for the site at `base_url` (its `wwwroot`), with a per-call timeout
    /// and at most `max_concurrency` calls in flight.
    ///
    /// Fails when `base_url` is not an absolute http(s) URL without credentials, query
    /// or fragment, when `timeout` or `max_concurrency` is zero, or when the TLS
    /// backend cannot be initialised.
    pub fn new(
        base_url: &str,
        token: SecretString,
        timeout: Duration,
        max_concurrency: usize,
    ) -> Result<Self, ClientBuildError> {
        let base = base_url.trim().trim_end_matches('/');
        let url = reqwest::Url::parse(base)
            .map_err(|e| ClientBuildError(format!("moodle_url is not a URL ({e})")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(ClientBuildError(
                "moodle_url must be an http(s) URL with a host".into(),
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            // They would end up in logs and error texts with the URL.
            return Err(ClientBuildError(
                "moodle_url must not contain a user name or password".into(),
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(ClientBuildError(
                "moodle_url must be the site's wwwroot, without ?query or #fragment".into(),
            ));
        }
        if timeout.is_zero() {
            return Err(ClientBuildError("moodle_timeout must be above zero".into()));
        }
        if max_concurrency == 0 {
            return Err(ClientBuildError(
                "the Moodle concurrency limit must be at least 1".into(),
            ));
        }
        if url.scheme() == "http" && !is_loopback(&url) {
            tracing::warn!(
                moodle_url = base,
                "moodle_url uses plain http: the token travels unencrypted"
            );
        }
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(timeout)
            .connect_timeout(timeout.min(MAX_CONNECT_TIMEOUT))
            // A redirect drops the POST body; a 3xx is reported, not followed.
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(max_concurrency)
            .user_agent(concat!(
                env!("CARGO_PKG_NAME"),
                "/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .map_err(|e| ClientBuildError(format!("cannot build the HTTP client ({e})")))?;
        Ok(MoodleClient {
            inner: Arc::new(Inner {
                http,
                endpoint: format!("{base}/webservice/rest/server.php"),
                token,
                timeout,
                max_concurrency,
                permits: Semaphore::new(max_concurrency),
            }),
        })
    }

    /// A session for one job: shares the client and records every call it makes.
    pub fn session(&self) -> MoodleSession {
        MoodleSession {
            client: self.clone(),
            calls: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// The web-service endpoint called (no secret in it).
    pub fn endpoint(&self) -> &str {
        &self.inner.endpoint
    }

    /// One POST to the endpoint, holding a permit: the JSON answer or its error, and
    /// the latency of the HTTP exchange itself (not the wait for a permit).
    async fn exchange(&self, request: &Request) -> (Result<Value, MoodleError>, u64) {
        // Nothing closes the semaphore today; if something ever does, the call fails
        // like an unreachable site (transient) rather than taking the worker down.
        let Ok(_permit) = self.inner.permits.acquire().await else {
            let closed = MoodleError::Transport {
                function: request.function.into(),
                detail: "the client no longer takes calls (its concurrency limit was closed)"
                    .into(),
                timeout: false,
            };
            return (Err(closed), 0);
        };
        let started = Instant::now();
        let answer = self.post(request).await;
        let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        (answer, ms)
    }

    async fn post(&self, request: &Request) -> Result<Value, MoodleError> {
        let function = request.function;
        // Token, function and format go in the body, never in the URL (moodle-ws.md 1.11).
        let mut form: Vec<(&str, &str)> = Vec::with_capacity(request.params.pairs().len() + 3);
        form.push(("wstoken", self.inner.token.expose_secret()));
        form.push(("wsfunction", function));
        form.push(("moodlewsrestformat", "json"));
        form.extend(
            request
                .params
                .pairs()
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        let response = self
            .inner
            .http
            .post(&self.inner.endpoint)
            .header(ACCEPT, "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|e| self.transport_error(function, e))?;
        let status = response.status().as_u16();
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
                .map(str::to_owned)
        };
        let content_type = header(CONTENT_TYPE);
        let retry_after = header(RETRY_AFTER);
        // Only a 200 body can be Moodle's answer; others are not read.
        let body = if status == 200 {
            response
                .bytes()
                .await
                .map_err(|e| self.transport_error(function, e))?
        } else {
            Default::default()
        };
        envelope::read(
            function,
            Answer {
                status,
                content_type: content_type.as_deref(),
                retry_after: retry_after.as_deref(),
                body: &body,
            },
        )
    }

    fn transport_error(&self, function: &str, error: reqwest::Error) -> MoodleError {
        let error = error.without_url();
        let (detail, timeout) = if error.is_timeout() {
            (
                format!(
                    "no answer within {}",
                    humantime::format_duration(self.inner.timeout)
                ),
                true,
            )
        } else if error.is_connect() && in_tls_handshake(&error) {
            (
                format!("{}: {}", super::error::TLS_FAILED, root_cause(&error)),
                false,
            )
        } else if error.is_connect() {
            (format!("could not connect: {}", root_cause(&error)), false)
        } else {
            (
                format!("the connection failed: {}", root_cause(&error)),
                false,
            )
        };
        MoodleError::Transport {
            function: function.into(),
            detail: sanitize::clean_line(&detail, 300),
            timeout,
        }
    }
}

impl fmt::Debug for MoodleClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MoodleClient")
            .field("endpoint", &self.inner.endpoint)
            .field("token", &"[redacted]")
            .field("timeout", &self.inner.timeout)
            .field("max_concurrency", &self.inner.max_concurrency)
            .finish()
    }
}

fn is_loopback(url: &reqwest::Url) -> bool {
    let host = url.host_str().unwrap_or_default();
    host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether a connect error came from the TLS handshake: rustls reports its failures (an
/// untrusted or mismatched certificate, a peer that does not speak TLS) through
/// tokio-rustls as `io::ErrorKind::InvalidData`, which the connector wraps in another
/// `io::Error`; TCP failures (refused, unreachable, DNS) are other kinds.
fn in_tls_handshake(error: &(dyn std::error::Error + 'static)) -> bool {
    // `io::Error::source` skips a wrapped error, so wrapped io errors are opened by hand.
    fn invalid_data(io: &std::io::Error) -> bool {
        io.kind() == std::io::ErrorKind::InvalidData
            || io
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<std::io::Error>())
                .is_some_and(invalid_data)
    }
    let mut cause = Some(error);
    while let Some(e) = cause {
        if e.downcast_ref::<std::io::Error>().is_some_and(invalid_data) {
            return true;
        }
        cause = e.source();
    }
    false
}

/// The innermost cause ("Connection refused (os error 111)"), which is what an
/// operator can act on; reqwest's outer texts only say "error sending request".
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// The calls of one job against one site.
#[derive(Clone)]
pub struct MoodleSession {
    client: MoodleClient,
    calls: Arc<Mutex<Vec<CallRecord>>>,
}

impl MoodleSession {
    /// Every call made so far, in order.
    pub fn calls(&self) -> Vec<CallRecord> {
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Makes the call, parses the answer with `parse`, records the outcome.
    async fn run<T>(
        &self,
        request: Request,
        parse: impl FnOnce(&str, Result<Value, MoodleError>) -> Result<T, MoodleError>,
    ) -> Result<T, MoodleError> {
        let function = request.function;
        let (answer, ms) = self.client.exchange(&request).await;
        // Before anything is derived from it: the outcome, the log, the caller's error.
        let answer = answer.map_err(|e| e.redacted(self.token()));
        // What Moodle answered decides the outcome, even when `parse` turns an error
        // into a value (completion's `usernotenroled` is recorded as such).
        let answered = answer.as_ref().err().map(MoodleError::outcome);
        if let Err(MoodleError::Exception {
            debuginfo: Some(debuginfo),
            ..
        }) = &answer
        {
            tracing::debug!(function, %debuginfo, "moodle debuginfo");
        }
        let result = parse(function, answer).map_err(|e| e.redacted(self.token()));
        let outcome = answered.unwrap_or_else(|| match &result {
            Ok(_) => "ok".to_owned(),
            Err(e) => e.outcome(),
        });
        match &result {
            Ok(_) => tracing::debug!(function, %outcome, ms, "moodle call"),
            Err(e) => tracing::debug!(function, %outcome, ms, class = %e.class(), "moodle call"),
        }
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(CallRecord {
                function: function.to_owned(),
                outcome,
                ms,
            });
        result
    }

    /// [`run`](Self::run) for answers that are only parsed when the call succeeded.
    async fn call<T>(
        &self,
        request: Request,
        parse: fn(&str, Value) -> Result<T, MoodleError>,
    ) -> Result<T, MoodleError> {
        self.run(request, |function, answer| parse(function, answer?))
            .await
    }

    fn token(&self) -> &str {
        self.client.inner.token.expose_secret()
    }
}

impl fmt::Debug for MoodleSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MoodleSession")
            .field("client", &self.client)
            .field("calls", &self.calls())
            .finish()
    }
}

/// Every method makes one HTTP call, except where the answer is known without one:
/// an empty lookup value (it names nothing, and Moodle would match every record with
/// an empty field), an update that changes nothing, and an empty (un)enrolment list
/// (an empty list cannot be encoded). Those return at once and record no call.
#[async_trait]
impl Moodle for MoodleSession {
    async fn site_info(&self) -> Result<SiteInfo, MoodleError> {
        self.call(f::site_info(), f::parse_site_info).await
    }

    async fn course_by_idnumber(&self, idnumber: &str) -> Result<Option<Course>, MoodleError> {
        if idnumber.trim().is_empty() {
            return Ok(None);
        }
        self.call(
            f::course_by_field("idnumber", idnumber),
            f::parse_one_course,
        )
        .await
    }

    async fn course_by_id(&self, id: i64) -> Result<Option<Course>, MoodleError> {
        self.call(
            f::course_by_field("id", &id.to_string()),
            f::parse_one_course,
        )
        .await
    }

    async fn course_by_shortname(&self, shortname: &str) -> Result<Option<Course>, MoodleError> {
        if shortname.trim().is_empty() {
            return Ok(None);
        }
        self.call(
            f::course_by_field("shortname", shortname),
            f::parse_one_course,
        )
        .await
    }

    async fn create_course(&self, course: &NewCourse) -> Result<i64, MoodleError> {
        self.call(f::create_course(course), f::parse_created_id)
            .await
    }

    async fn update_course(&self, update: &CourseUpdate) -> Result<(), MoodleError> {
        if !f::update_changes_something(update) {
            return Ok(());
        }
        self.call(f::update_course(update), f::parse_warnings_only)
            .await
    }

    async fn users_by_field(
        &self,
        field: UserField,
        value: &str,
    ) -> Result<Vec<User>, MoodleError> {
        if value.trim().is_empty() {
            return Ok(Vec::new());
        }
        self.call(f::users_by_field(field, value), f::parse_user_list)
            .await
    }

    async fn users_by_email_like(&self, email: &str) -> Result<Vec<User>, MoodleError> {
        if email.trim().is_empty() {
            return Ok(Vec::new());
        }
        self.call(f::users_by_email_like(email), f::parse_users)
            .await
    }

    async fn create_user(&self, user: &NewUser) -> Result<i64, MoodleError> {
        self.call(f::create_user(user), f::parse_created_id).await
    }

    async fn enrol(&self, enrolments: &[Enrolment]) -> Result<(), MoodleError> {
        if enrolments.is_empty() {
            return Ok(());
        }
        self.call(f::enrol(enrolments), f::parse_null).await
    }

    async fn unenrol(&self, unenrolments: &[Unenrolment]) -> Result<(), MoodleError> {
        if unenrolments.is_empty() {
            return Ok(());
        }
        self.call(f::unenrol(unenrolments), f::parse_null).await
    }

    async fn course_totals(&self, courseid: i64) -> Result<Vec<CourseTotal>, MoodleError> {
        self.call(f::grade_items(courseid), f::parse_course_totals)
            .await
    }

    async fn completion(
        &self,
        courseid: i64,
        userid: i64,
    ) -> Result<Option<Completion>, MoodleError> {
        self.run(f::completion(courseid, userid), f::parse_completion)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_closed_concurrency_limit_fails_the_call_instead_of_panicking() {
        let client = MoodleClient::new(
            "http://127.0.0.1:9",
            SecretString::from("token"),
            Duration::from_secs(1),
            1,
        )
        .unwrap();
        client.inner.permits.close();
        let session = client.session();
        let error = session.site_info().await.unwrap_err();
        assert_eq!(error.class(), ErrorClass::Transient, "{error}");
        assert_eq!(session.calls()[0].outcome, "connection error");
    }
}
