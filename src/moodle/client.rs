//! The HTTP client for `{moodle_url}/webservice/rest/server.php`.
//!
//! One [`MoodleClient`] per tenant protects that tenant's Moodle from this
//! service: one connection pool and the token; a semaphore that caps the calls
//! in flight (`max_concurrency`); a token bucket that caps calls per second
//! (`max_calls_per_second`); and a pause after Moodle asks to slow down (HTTP
//! 429/503 with `Retry-After`, maintenance mode), honoured within bounds. Its
//! batcher (`batch.rs`) shares calls between jobs; each job's
//! [`MoodleSession`](super::MoodleSession) records the calls it made or rode in.
//! No retries here: the worker decides from [`MoodleError::class`].

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::header::{ACCEPT, CONTENT_TYPE, RETRY_AFTER};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use std::num::NonZeroU32;
use tokio::sync::{Semaphore, SemaphorePermit};

use super::batch::Batches;
use super::envelope::{self, Answer};
use super::functions::Request;
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

/// A tenant's Moodle site: one HTTP client, its token, its limits and its batcher.
#[derive(Clone)]
pub struct MoodleClient {
    inner: Arc<Inner>,
    /// `None` when batching is off.
    batches: Option<Arc<Batches>>,
}

/// The HTTP side of a client, shared by its sessions and its batcher's tasks.
pub(super) struct Inner {
    http: reqwest::Client,
    /// `{wwwroot}/webservice/rest/server.php`; never carries the token.
    endpoint: String,
    token: SecretString,
    timeout: Duration,
    max_concurrency: usize,
    /// Held around each HTTP call: protects the tenant's Moodle from this service.
    permits: Arc<Semaphore>,
    /// At most this many calls per second, when set.
    rate: Option<DefaultDirectRateLimiter>,
    /// Until when Moodle asked not to be called (429/503 `Retry-After`, maintenance).
    paused_until: Mutex<Option<Instant>>,
}

/// How the client paces and shares calls (per tenant).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacing {
    /// How long a batch waits for more jobs' requests (0: no batching, one call each).
    pub batch_window: Duration,
    /// Calls per second at most (`None`: no limit beyond `max_concurrency`).
    pub max_calls_per_second: Option<NonZeroU32>,
}

impl Default for Pacing {
    fn default() -> Self {
        Pacing {
            batch_window: Duration::from_millis(5),
            max_calls_per_second: None,
        }
    }
}

/// The longest pause a `Retry-After` (or maintenance mode) makes the client take.
const MAX_PAUSE: Duration = Duration::from_secs(60);
/// The pause when Moodle asks to slow down without saying for how long.
const DEFAULT_PAUSE: Duration = Duration::from_secs(5);

/// One HTTP exchange, its answer already cleaned of the token.
pub(super) struct Called {
    pub answer: Result<Value, MoodleError>,
    /// Latency of the exchange itself (not the wait for a permit or the rate).
    pub ms: u64,
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
                permits: Arc::new(Semaphore::new(max_concurrency)),
                rate: None,
                paused_until: Mutex::new(None),
            }),
            batches: None,
        })
    }

    /// The client with `pacing`: batching across jobs and a calls-per-second
    /// cap. Without it (as built by [`MoodleClient::new`]) every call goes alone.
    pub fn with_pacing(self, pacing: Pacing) -> Self {
        let mut inner = match Arc::try_unwrap(self.inner) {
            Ok(inner) => inner,
            Err(shared) => {
                return MoodleClient {
                    inner: shared,
                    batches: self.batches,
                };
            }
        };
        inner.rate = pacing
            .max_calls_per_second
            // No burst: at most `n` calls in any second, evenly spaced.
            .map(|n| RateLimiter::direct(Quota::per_second(n).allow_burst(NonZeroU32::MIN)));
        let inner = Arc::new(inner);
        let batches = (!pacing.batch_window.is_zero())
            .then(|| Arc::new(Batches::new(inner.clone(), pacing.batch_window)));
        MoodleClient { inner, batches }
    }

    /// A session for one job: shares the client and records every call it makes.
    pub fn session(&self) -> MoodleSession {
        MoodleSession::new(self.clone())
    }

    /// The batcher, when batching is on.
    pub(super) fn batches(&self) -> Option<&Batches> {
        self.batches.as_deref()
    }

    /// The HTTP side.
    pub(super) fn inner(&self) -> &Arc<Inner> {
        &self.inner
    }

    /// The web-service endpoint called (no secret in it).
    pub fn endpoint(&self) -> &str {
        &self.inner.endpoint
    }
}

impl Inner {
    /// The call slots: the tenant's calls in flight are capped by these.
    pub(super) fn permits(&self) -> Arc<Semaphore> {
        self.permits.clone()
    }

    /// A call slot.
    async fn permit(&self) -> Option<SemaphorePermit<'_>> {
        self.permits.acquire().await.ok()
    }

    /// One call, taking a call slot for it (see [`Inner::call_holding`]).
    pub(super) async fn call(&self, request: &Request) -> Called {
        // Nothing closes the semaphore today; if something ever does, the call fails
        // like an unreachable site (transient) rather than taking the worker down.
        let Some(_permit) = self.permit().await else {
            let closed = MoodleError::Transport {
                function: request.function.into(),
                detail: "the client no longer takes calls (its concurrency limit was closed)"
                    .into(),
                timeout: false,
            };
            return Called {
                answer: Err(closed),
                ms: 0,
            };
        };
        self.call_holding(request).await
    }

    /// One call by a caller that holds a call slot: waits out a pause Moodle
    /// asked for and the calls-per-second cap, POSTs, and notes a new pause
    /// when Moodle asks to slow down.
    pub(super) async fn call_holding(&self, request: &Request) -> Called {
        let paused = *self
            .paused_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(until) = paused {
            tokio::time::sleep_until(until.into()).await;
        }
        if let Some(rate) = &self.rate {
            rate.until_ready().await;
        }
        let started = Instant::now();
        let answer = self
            .post(request)
            .await
            .map_err(|e| e.redacted(self.token.expose_secret()));
        let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        if let Err(e) = &answer {
            self.slow_down_if_asked(e);
        }
        Called { answer, ms }
    }

    /// Parses a call's answer and describes the call: what Moodle answered
    /// decides the outcome, even when `parse` turns an error into a value
    /// (completion's `usernotenroled` is recorded as such). A parse error may
    /// quote the answer, so it is cleaned of the token too.
    pub(super) fn finish<T>(
        &self,
        function: &'static str,
        called: Called,
        batch: Option<u32>,
        parse: impl FnOnce(&str, Result<Value, MoodleError>) -> Result<T, MoodleError>,
    ) -> (Result<T, MoodleError>, CallRecord) {
        let Called { answer, ms } = called;
        let answered = answer.as_ref().err().map(MoodleError::outcome);
        if let Err(MoodleError::Exception {
            debuginfo: Some(debuginfo),
            ..
        }) = &answer
        {
            tracing::debug!(function, %debuginfo, "moodle debuginfo");
        }
        let result = parse(function, answer).map_err(|e| e.redacted(self.token.expose_secret()));
        let outcome = answered.unwrap_or_else(|| match &result {
            Ok(_) => "ok".to_owned(),
            Err(e) => e.outcome(),
        });
        match &result {
            Ok(_) => tracing::debug!(function, %outcome, ms, ?batch, "moodle call"),
            Err(e) => {
                tracing::debug!(function, %outcome, ms, ?batch, class = %e.class(), "moodle call")
            }
        }
        let call = CallRecord {
            function: function.to_owned(),
            outcome,
            ms,
            batch,
        };
        (result, call)
    }

    /// After a 429/503 or maintenance answer, no call for a while (bounded).
    fn slow_down_if_asked(&self, e: &MoodleError) {
        let pause = match e {
            MoodleError::Status {
                status: 429 | 503,
                retry_after,
                ..
            } => retry_after.unwrap_or(DEFAULT_PAUSE),
            _ if e.errorcode() == Some("sitemaintenance") => DEFAULT_PAUSE,
            _ => return,
        };
        let until = Instant::now() + pause.min(MAX_PAUSE);
        let mut paused = self
            .paused_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if paused.is_none_or(|p| p < until) {
            *paused = Some(until);
        }
        tracing::info!(
            function = e.function(),
            pause_ms = pause.min(MAX_PAUSE).as_millis() as u64,
            "Moodle asked to slow down: pausing this tenant's calls"
        );
    }

    async fn post(&self, request: &Request) -> Result<Value, MoodleError> {
        let function = request.function;
        // Token, function and format go in the body, never in the URL (moodle-ws.md 1.11).
        let mut form: Vec<(&str, &str)> = Vec::with_capacity(request.params.pairs().len() + 3);
        form.push(("wstoken", self.token.expose_secret()));
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
            .http
            .post(&self.endpoint)
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
                    humantime::format_duration(self.timeout)
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
        client.inner().permits.close();
        let session = client.session();
        let error = session.site_info().await.unwrap_err();
        assert_eq!(error.class(), ErrorClass::Transient, "{error}");
        assert_eq!(session.calls()[0].outcome, "connection error");
    }
}
