//! Write-back of Moodle IDs (and scores) to accessplanit: the callback clients
//! (a generic webhook, the accessplanit API). The outbox runner (`run::outbox`)
//! delivers queued write-backs through them.

mod accessplanit;
mod webhook;

pub use accessplanit::AccessplanitCallback;
pub use webhook::WebhookCallback;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::config::{CallbackConfig, CallbackKind};
use crate::retry::Pace;
use crate::store::Writeback;

/// A failed delivery, classified for the retry schedule.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallbackError {
    /// Not reached, connection broken, timeout, or 5xx/408/429: retry.
    #[error("{0}")]
    Transient(String, Option<Duration>),
    /// Our credentials or settings are wrong (401/403, missing field name): retry slowly.
    #[error("{0}")]
    Configuration(String),
    /// The target refused this write-back (other 4xx): retrying will not help.
    #[error("{0}")]
    Rejected(String),
}

impl CallbackError {
    /// Classifies an HTTP status that is not 2xx.
    pub(crate) fn from_status(
        target: &str,
        status: reqwest::StatusCode,
        retry_after: Option<Duration>,
    ) -> Self {
        let text = format!("{target} answered HTTP {}", status.as_u16());
        match status.as_u16() {
            408 | 429 | 500..=599 => CallbackError::Transient(text, retry_after),
            401 | 403 => {
                CallbackError::Configuration(format!("{text}: check the callback credentials"))
            }
            _ => CallbackError::Rejected(text),
        }
    }

    /// A transport failure (never includes the URL's credentials or tokens).
    pub(crate) fn transport(target: &str, e: &reqwest::Error) -> Self {
        let what = if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "could not be reached"
        } else {
            "failed"
        };
        CallbackError::Transient(format!("{target} {what}"), None)
    }

    /// A transport failure seen by the preflight, with its innermost cause ("Connection
    /// refused", a certificate problem…), which an operator can act on; never the URL.
    pub(crate) fn probe_transport(target: &str, e: reqwest::Error) -> Self {
        let e = e.without_url();
        let what = if e.is_timeout() {
            "did not answer in time".to_string()
        } else {
            let mut cause: &(dyn std::error::Error + 'static) = &e;
            while let Some(next) = cause.source() {
                cause = next;
            }
            format!("could not be reached: {cause}")
        };
        CallbackError::Transient(format!("{target} {what}"), None)
    }

    /// The retry pace, or `None` when the write-back should not be retried.
    pub fn pace(&self) -> Option<Pace> {
        match self {
            CallbackError::Transient(..) => Some(Pace::Normal),
            CallbackError::Configuration(_) => Some(Pace::Slow),
            CallbackError::Rejected(_) => None,
        }
    }

    /// A server-requested delay.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            CallbackError::Transient(_, d) => *d,
            _ => None,
        }
    }
}

/// Delivers one write-back to a tenant's accessplanit side.
#[async_trait]
pub trait Callback: Send + Sync {
    /// Sends the write-back; `Ok` once the target confirmed it (2xx).
    async fn deliver(&self, writeback: &Writeback) -> Result<(), CallbackError>;
}

/// The callback client a tenant's configuration asks for (`None` for `kind = "none"`).
pub fn from_config(config: &CallbackConfig) -> Option<Arc<dyn Callback>> {
    match config.kind {
        CallbackKind::None => None,
        CallbackKind::Webhook => Some(Arc::new(WebhookCallback::new(config))),
        CallbackKind::Accessplanit => Some(Arc::new(AccessplanitCallback::new(config))),
    }
}

/// Reads a `Retry-After` header given in seconds.
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// A reqwest client for callbacks: rustls, no redirects (they would drop the body).
pub(crate) fn http_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("apit-moodle-sync/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("a TLS backend is compiled in")
}
