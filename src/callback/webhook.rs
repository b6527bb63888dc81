//! The generic webhook callback: POST the write-back's JSON with a bearer token.

use async_trait::async_trait;

use super::{Callback, CallbackError, http_client, retry_after};
use crate::config::CallbackConfig;
use crate::secret::Secret;
use crate::store::Writeback;

/// POSTs `{"tenant", "entity", "accessplanit_id", "moodle_id", …}`; any 2xx is done.
pub struct WebhookCallback {
    http: reqwest::Client,
    url: String,
    token: Option<Secret>,
}

impl WebhookCallback {
    /// A client for `[tenants.X.callback]` with `kind = "webhook"`.
    pub fn new(config: &CallbackConfig) -> Self {
        WebhookCallback {
            http: http_client(config.timeout),
            url: config.url.clone().unwrap_or_default(),
            token: config.bearer_token.clone(),
        }
    }
}

impl WebhookCallback {
    /// The preflight's look at the URL: a `HEAD` with the bearer token, which a receiver
    /// does not take for a write-back (those are POSTs). Any answer proves the URL
    /// reachable (`Ok` names the status) except 401/403, the token refused
    /// (`Configuration`), and 5xx, a failing receiver (`Transient`).
    pub async fn probe(&self) -> Result<String, CallbackError> {
        let mut request = self.http.head(&self.url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.expose());
        }
        let response = request
            .send()
            .await
            .map_err(|e| CallbackError::probe_transport("the callback URL", e))?;
        let status = response.status().as_u16();
        match status {
            401 | 403 => Err(CallbackError::Configuration(format!(
                "the callback URL refused the bearer token (HEAD answered HTTP {status})"
            ))),
            500..=599 => Err(CallbackError::Transient(
                format!("the callback URL is failing (HEAD answered HTTP {status})"),
                None,
            )),
            _ => Ok(format!("HEAD answered HTTP {status}")),
        }
    }
}

#[async_trait]
impl Callback for WebhookCallback {
    async fn deliver(&self, wb: &Writeback) -> Result<(), CallbackError> {
        let mut request = self
            .http
            .post(&self.url)
            // Lets the receiver drop a re-delivery of the same write-back.
            .header("Idempotency-Key", wb.id.to_string())
            .json(&wb.payload);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.expose());
        }
        let response = request
            .send()
            .await
            .map_err(|e| CallbackError::transport("the callback URL", &e))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(CallbackError::from_status(
                "the callback URL",
                status,
                retry_after(response.headers()),
            ))
        }
    }
}
