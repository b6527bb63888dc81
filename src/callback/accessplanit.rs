//! The accessplanit API v2 callback (accessplanit.md §3 and §8.4): the user's
//! `MoodleID` is a standard property; the course, template and score property
//! names are configuration until accessplanit publishes them.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::sync::Mutex;

use super::{Callback, CallbackError, http_client, retry_after};
use crate::config::CallbackConfig;
use crate::secret::Secret;
use crate::store::{Entity, Writeback};

const TARGET: &str = "the accessplanit API";

/// Writes Moodle IDs and scores with `PUT {base}/api/v2/<Module>/<id>`.
pub struct AccessplanitCallback {
    http: reqwest::Client,
    base: String,
    api_key: Option<Secret>,
    username: Option<String>,
    password: Option<Secret>,
    course_field: Option<String>,
    template_field: Option<String>,
    score_field: Option<String>,
    /// Password-grant token and when to renew it.
    token: Mutex<Option<(Secret, Instant)>>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl AccessplanitCallback {
    /// A client for `[tenants.X.callback]` with `kind = "accessplanit"`.
    pub fn new(config: &CallbackConfig) -> Self {
        AccessplanitCallback {
            http: http_client(config.timeout),
            base: config
                .url
                .clone()
                .unwrap_or_default()
                .trim_end_matches('/')
                .to_string(),
            api_key: config.bearer_token.clone(),
            username: config.username.clone(),
            password: config.password.clone(),
            course_field: config.course_field.clone(),
            template_field: config.template_field.clone(),
            score_field: config.score_field.clone(),
            token: Mutex::new(None),
        }
    }

    /// The module, record id and body of a write-back.
    fn request_for(&self, wb: &Writeback) -> Result<(&'static str, String, Value), CallbackError> {
        let missing = |key: &str| {
            CallbackError::Configuration(format!(
                "callback.{key} is not set: name the accessplanit property that holds the Moodle value"
            ))
        };
        let moodle_id = wb.payload.get("moodle_id").cloned().unwrap_or(Value::Null);
        match wb.entity {
            Entity::User => Ok(("User", wb.apit_id.clone(), json!({ "MoodleID": moodle_id }))),
            Entity::Course => {
                let field = self
                    .course_field
                    .as_deref()
                    .ok_or_else(|| missing("course_field"))?;
                Ok((
                    "CourseDate",
                    wb.apit_id.clone(),
                    json!({ field: moodle_id }),
                ))
            }
            Entity::Template => {
                let field = self
                    .template_field
                    .as_deref()
                    .ok_or_else(|| missing("template_field"))?;
                Ok((
                    "CourseTemplate",
                    wb.apit_id.clone(),
                    json!({ field: moodle_id }),
                ))
            }
            Entity::Delegate => {
                let field = self
                    .score_field
                    .as_deref()
                    .ok_or_else(|| missing("score_field"))?;
                let mut body = Map::new();
                body.insert(
                    field.to_string(),
                    wb.payload.get("score").cloned().unwrap_or(Value::Null),
                );
                Ok(("UserCourseDate", wb.apit_id.clone(), Value::Object(body)))
            }
        }
    }

    /// The preflight's look at the API, writing nothing: with a username and password, a
    /// token request (the grant itself is the proof); with an API key, a read of one
    /// `User` id, since a key is only ever checked by using it.
    pub async fn probe(&self) -> Result<String, CallbackError> {
        if self.api_key.is_none() {
            self.bearer().await?;
            return Ok(format!(
                "a token was issued for {}",
                self.username.as_deref().unwrap_or_default()
            ));
        }
        let key = self.bearer().await?;
        let response = self
            .http
            .get(format!("{}/api/v2/User", self.base))
            .query(&[("$select", "ID"), ("$top", "1")])
            .bearer_auth(key.expose())
            .send()
            .await
            .map_err(|e| CallbackError::probe_transport(TARGET, e))?;
        let status = response.status();
        match status.as_u16() {
            200..=299 => Ok(format!(
                "the API key read a User (HTTP {})",
                status.as_u16()
            )),
            401 | 403 => Err(CallbackError::Configuration(format!(
                "{TARGET} refused the API key (HTTP {})",
                status.as_u16()
            ))),
            404 => Err(CallbackError::Configuration(format!(
                "{TARGET} has no /api/v2/User at callback.url (HTTP 404)"
            ))),
            _ => Err(CallbackError::from_status(
                TARGET,
                status,
                retry_after(response.headers()),
            )),
        }
    }

    /// An API key, or a password-grant token renewed a minute before it expires.
    async fn bearer(&self) -> Result<Secret, CallbackError> {
        if let Some(key) = &self.api_key {
            return Ok(key.clone());
        }
        let mut cached = self.token.lock().await;
        if let Some((token, renew_at)) = cached.as_ref() {
            if Instant::now() < *renew_at {
                return Ok(token.clone());
            }
        }
        let (Some(username), Some(password)) = (&self.username, &self.password) else {
            return Err(CallbackError::Configuration(
                "callback needs bearer_token (API key) or username and password".into(),
            ));
        };
        let response = self
            .http
            .post(format!("{}/api/v2/token", self.base))
            .form(&[
                ("grant_type", "password"),
                ("username", username.as_str()),
                ("password", password.expose()),
            ])
            .send()
            .await
            .map_err(|e| CallbackError::transport(TARGET, &e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(match status.as_u16() {
                400 | 401 | 403 => CallbackError::Configuration(format!(
                    "{TARGET} refused the callback username/password (HTTP {})",
                    status.as_u16()
                )),
                _ => CallbackError::from_status(TARGET, status, retry_after(response.headers())),
            });
        }
        let answer: TokenAnswer = response.json().await.map_err(|_| {
            CallbackError::Transient(format!("{TARGET} sent an unreadable token answer"), None)
        })?;
        // v1 tokens last 60 minutes; renew early so a request never carries a stale one.
        let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(3600).saturating_sub(60));
        let token = Secret::new(answer.access_token);
        *cached = Some((token.clone(), Instant::now() + lifetime));
        Ok(token)
    }
}

#[async_trait]
impl Callback for AccessplanitCallback {
    async fn deliver(&self, wb: &Writeback) -> Result<(), CallbackError> {
        let (module, id, body) = self.request_for(wb)?;
        let token = self.bearer().await?;
        let response = self
            .http
            .put(format!("{}/api/v2/{module}/{id}", self.base))
            .bearer_auth(token.expose())
            .json(&body)
            .send()
            .await
            .map_err(|e| CallbackError::transport(TARGET, &e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        if status.as_u16() == 401 {
            // The token may have been revoked early: fetch a new one next time.
            *self.token.lock().await = None;
        }
        Err(CallbackError::from_status(
            TARGET,
            status,
            retry_after(response.headers()),
        ))
    }
}
