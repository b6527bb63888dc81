//! `[tenants.<name>]`: one accessplanit customer, its Moodle and its write-back
//! target, and the checks of that section.

use std::path::PathBuf;
use std::time::Duration;

use chrono_tz::Tz;
use serde::Deserialize;

use crate::secret::{self, Secret};

/// `on_cancel`: what a cancelled booking does in Moodle.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnCancel {
    /// Enrol again with `suspend = 1`: keeps grades and attempts.
    #[default]
    Suspend,
    /// `enrol_manual_unenrol_users`: Moodle deletes the delegate's grades in the course.
    Unenrol,
    Ignore,
}

/// `[tenants.X.callback] kind`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallbackKind {
    /// A generic HTTP POST of `{tenant, entity, accessplanit_id, moodle_id}`.
    #[default]
    Webhook,
    /// accessplanit API v2 (`PUT …/api/v2/<Module>/<id>`).
    Accessplanit,
    /// Nothing is written back.
    None,
}

/// `[tenants.X.callback]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallbackConfig {
    #[serde(default)]
    pub kind: CallbackKind,
    /// Webhook: the URL to POST to. accessplanit: the API base, e.g.
    /// `https://acme.accessplanit.com/accessplan`.
    pub url: Option<String>,
    /// Webhook bearer token, or the accessplanit API key.
    pub bearer_token: Option<Secret>,
    bearer_token_file: Option<PathBuf>,
    /// accessplanit: user name for the password grant (instead of an API key).
    pub username: Option<String>,
    pub password: Option<Secret>,
    password_file: Option<PathBuf>,
    /// accessplanit: the property holding a course date's Moodle ID (not published by accessplanit).
    pub course_field: Option<String>,
    /// accessplanit: the property holding a course template's Moodle ID.
    pub template_field: Option<String>,
    /// accessplanit: the delegate property receiving the score.
    pub score_field: Option<String>,
    /// Per-request timeout.
    #[serde(default = "defaults::callback_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for CallbackConfig {
    fn default() -> Self {
        CallbackConfig {
            kind: CallbackKind::None,
            url: None,
            bearer_token: None,
            bearer_token_file: None,
            username: None,
            password: None,
            password_file: None,
            course_field: None,
            template_field: None,
            score_field: None,
            timeout: defaults::callback_timeout(),
        }
    }
}

/// `[tenants.X.grades]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GradesConfig {
    /// `0s` = off.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    pub completion: bool,
}

/// `[tenants.X]`: one accessplanit customer and its Moodle.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    #[serde(default)]
    webhook_secret: Secret,
    webhook_secret_file: Option<PathBuf>,
    /// Optional Standard Webhooks HMAC secret (`whsec_…` base64, or raw text).
    pub signing_secret: Option<Secret>,
    signing_secret_file: Option<PathBuf>,
    /// The site's `wwwroot`.
    pub moodle_url: String,
    #[serde(default)]
    moodle_token: Secret,
    moodle_token_file: Option<PathBuf>,
    pub category_id: i64,
    #[serde(default = "defaults::role_id")]
    pub role_id: i64,
    #[serde(default = "defaults::timezone")]
    pub timezone: Tz,
    #[serde(default = "defaults::yes")]
    pub match_users_by_email: bool,
    #[serde(default)]
    pub on_cancel: OnCancel,
    #[serde(default = "defaults::idnumber_prefix")]
    pub idnumber_prefix: String,
    #[serde(default = "defaults::yes")]
    pub update_on_save: bool,
    #[serde(default = "defaults::max_concurrency")]
    pub max_concurrency: usize,
    /// Calls per second at most (extension; absent or 0: no cap beyond
    /// `max_concurrency`).
    #[serde(default)]
    pub max_calls_per_second: u32,
    /// How long a shared call waits for other jobs' requests (extension;
    /// `0s` turns batching off: every call goes alone).
    #[serde(default = "defaults::batch_window", with = "humantime_serde")]
    pub batch_window: Duration,
    #[serde(default = "defaults::moodle_timeout", with = "humantime_serde")]
    pub moodle_timeout: Duration,
    #[serde(default)]
    pub callback: CallbackConfig,
    #[serde(default)]
    pub grades: GradesConfig,
}

impl TenantConfig {
    /// The bearer secret accessplanit's workflow sends (never empty once loaded).
    pub fn webhook_secret(&self) -> &Secret {
        &self.webhook_secret
    }

    /// The Moodle web-service token (never empty once loaded).
    pub fn moodle_token(&self) -> &Secret {
        &self.moodle_token
    }

    /// Moodle course idnumber for an accessplanit course.
    pub fn course_idnumber(&self, course_id: &str) -> String {
        format!("{}course-{course_id}", self.idnumber_prefix)
    }

    /// Moodle user idnumber for an accessplanit user.
    pub fn user_idnumber(&self, user_id: &str) -> String {
        format!("{}user-{user_id}", self.idnumber_prefix)
    }
}

impl TenantConfig {
    /// Reads `*_file` secrets and checks this section, naming each bad key.
    pub(super) fn resolve_and_validate(&mut self, name: &str, problems: &mut Vec<String>) {
        let key = |k: &str| format!("tenants.{name}.{k}");
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        {
            problems.push(format!(
                "tenants.{name}: tenant names may hold only a-z, 0-9, '-' and '_' (they appear in URLs and environment variables)"
            ));
        }
        secret::resolve_required(
            &key("webhook_secret"),
            &mut self.webhook_secret,
            &self.webhook_secret_file,
            problems,
        );
        secret::resolve(
            &key("signing_secret"),
            &mut self.signing_secret,
            &self.signing_secret_file,
            problems,
        );
        secret::resolve_required(
            &key("moodle_token"),
            &mut self.moodle_token,
            &self.moodle_token_file,
            problems,
        );
        match reqwest::Url::parse(&self.moodle_url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                self.moodle_url = self.moodle_url.trim_end_matches('/').to_string();
            }
            _ => problems.push(format!(
                "{}: must be the site's http(s) address, e.g. https://moodle.example.org",
                key("moodle_url")
            )),
        }
        for (k, v) in [("category_id", self.category_id), ("role_id", self.role_id)] {
            if v <= 0 {
                problems.push(format!("{}: must be a positive Moodle id", key(k)));
            }
        }
        if self.max_concurrency == 0 {
            problems.push(format!("{}: must be at least 1", key("max_concurrency")));
        }
        if self.batch_window > Duration::from_secs(1) {
            problems.push(format!(
                "{}: at most 1s (it delays every shared call by up to that long)",
                key("batch_window")
            ));
        }
        if self.moodle_timeout.is_zero() {
            problems.push(format!("{}: must be more than 0s", key("moodle_timeout")));
        }
        let prefix_ok =
            self.idnumber_prefix.len() <= 40 && !self.idnumber_prefix.contains(char::is_whitespace);
        if !prefix_ok {
            problems.push(format!(
                "{}: at most 40 characters, no spaces",
                key("idnumber_prefix")
            ));
        }
        self.callback
            .resolve_and_validate(&key("callback"), problems);
    }
}

impl CallbackConfig {
    /// Reads `*_file` secrets and checks `[…callback]` (`key` names the section).
    fn resolve_and_validate(&mut self, key: &str, problems: &mut Vec<String>) {
        secret::resolve(
            &format!("{key}.bearer_token"),
            &mut self.bearer_token,
            &self.bearer_token_file,
            problems,
        );
        secret::resolve(
            &format!("{key}.password"),
            &mut self.password,
            &self.password_file,
            problems,
        );
        match self.kind {
            CallbackKind::None => {}
            CallbackKind::Webhook | CallbackKind::Accessplanit => {
                let url_ok = self
                    .url
                    .as_deref()
                    .and_then(|u| reqwest::Url::parse(u).ok())
                    .is_some_and(|u| matches!(u.scheme(), "http" | "https"));
                if !url_ok {
                    problems.push(format!(
                        "{key}.url: an http(s) URL is required for this callback kind"
                    ));
                }
            }
        }
        if self.kind == CallbackKind::Accessplanit
            && self.bearer_token.is_none()
            && (self.username.is_none() || self.password.is_none())
        {
            problems.push(format!(
                "{key}: accessplanit needs bearer_token (an API key) or username and password"
            ));
        }
    }
}

/// Defaults of a tenant's keys (SPEC §5).
mod defaults {
    use super::*;

    pub fn role_id() -> i64 {
        5
    }
    pub fn timezone() -> Tz {
        chrono_tz::Europe::London
    }
    pub fn yes() -> bool {
        true
    }
    pub fn idnumber_prefix() -> String {
        "apit-".into()
    }
    pub fn max_concurrency() -> usize {
        4
    }
    pub fn moodle_timeout() -> Duration {
        Duration::from_secs(30)
    }
    pub fn batch_window() -> Duration {
        Duration::from_millis(5)
    }
    pub fn callback_timeout() -> Duration {
        Duration::from_secs(10)
    }
}
