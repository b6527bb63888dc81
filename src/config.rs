//! Typed configuration (SPEC §5): TOML file, `APIT_…` environment overrides
//! with `__` between levels, `<key>_file` secrets, one validation pass that
//! names every bad key.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono_tz::Tz;
use figment::Figment;
use figment::providers::{Env, Format, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// A configuration problem; the text names the key.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  {}", .0.join("\n  "))]
pub struct ConfigError(pub Vec<String>);

impl ConfigError {
    fn one(msg: impl Into<String>) -> Self {
        ConfigError(vec![msg.into()])
    }
}

/// A secret value: never printed by `Debug`, compared in constant time.
#[derive(Clone)]
pub struct Secret(SecretString);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(SecretString::from(value.into()))
    }

    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// Constant-time comparison with a presented credential.
    pub fn matches(&self, presented: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        self.expose().as_bytes().ct_eq(presented).into()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Environment overrides arrive typed: an all-digit secret is a number.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Int(i64),
            Uint(u64),
        }
        Ok(match Raw::deserialize(d)? {
            Raw::Text(s) => Secret::new(s),
            Raw::Int(n) => Secret::new(n.to_string()),
            Raw::Uint(n) => Secret::new(n.to_string()),
        })
    }
}

/// `log_format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}

/// `[worker]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerConfig {
    /// A claimed job not finished by then runs again.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// How often the worker looks for due jobs when idle.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Jobs run at once across all tenants (extension; each tenant's Moodle is
    /// further limited by its `max_concurrency`).
    pub concurrency: usize,
    /// How long SIGTERM waits for in-flight jobs (extension).
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            lease: Duration::from_secs(60),
            poll_interval: Duration::from_millis(500),
            concurrency: 16,
            shutdown_timeout: Duration::from_secs(30),
        }
    }
}

/// `[retry]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Retryable errors past this age make the job `dead`.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial_backoff: Duration::from_secs(10),
            max_backoff: Duration::from_secs(3600),
            max_age: Duration::from_secs(24 * 3600),
        }
    }
}

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
    webhook_secret: Option<Secret>,
    webhook_secret_file: Option<PathBuf>,
    /// Optional Standard Webhooks HMAC secret (`whsec_…` base64, or raw text).
    pub signing_secret: Option<Secret>,
    signing_secret_file: Option<PathBuf>,
    /// The site's `wwwroot`.
    pub moodle_url: String,
    moodle_token: Option<Secret>,
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
    #[serde(default = "defaults::moodle_timeout", with = "humantime_serde")]
    pub moodle_timeout: Duration,
    #[serde(default)]
    pub callback: CallbackConfig,
    #[serde(default)]
    pub grades: GradesConfig,
}

impl TenantConfig {
    /// The bearer secret accessplanit's workflow sends.
    pub fn webhook_secret(&self) -> &Secret {
        self.webhook_secret.as_ref().expect("validated at load")
    }

    /// The Moodle web-service token.
    pub fn moodle_token(&self) -> &Secret {
        self.moodle_token.as_ref().expect("validated at load")
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

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "defaults::listen")]
    pub listen: SocketAddr,
    #[serde(default = "defaults::database_url")]
    pub database_url: String,
    /// For `/v1/jobs*` and `grades/sync`; without it the admin API refuses every call.
    pub admin_token: Option<Secret>,
    admin_token_file: Option<PathBuf>,
    #[serde(default)]
    pub log_format: LogFormat,
    #[serde(default)]
    pub worker: WorkerConfig,
    #[serde(default)]
    pub retry: RetryConfig,
    #[serde(default)]
    pub tenants: BTreeMap<String, TenantConfig>,
}

mod defaults {
    use super::*;

    pub fn listen() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 8080))
    }
    pub fn database_url() -> String {
        "sqlite://apit-moodle-sync.db".into()
    }
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
    pub fn callback_timeout() -> Duration {
        Duration::from_secs(10)
    }
}

/// The file used when neither `--config` nor `APIT_CONFIG` names one.
pub const DEFAULT_CONFIG_FILE: &str = "apit-moodle-sync.toml";

impl Config {
    /// Loads `path` (else `APIT_CONFIG`, else `apit-moodle-sync.toml`), applies
    /// `APIT_…` environment overrides, reads `*_file` secrets and validates.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let env_path = std::env::var_os("APIT_CONFIG").map(PathBuf::from);
        let path = path
            .map(Path::to_path_buf)
            .or(env_path)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_FILE));
        if !path.exists() {
            return Err(ConfigError::one(format!(
                "config file {} not found (give --config PATH or set APIT_CONFIG)",
                path.display()
            )));
        }
        Self::from_figment(
            Figment::new()
                .merge(Toml::file_exact(&path))
                .merge(Env::prefixed("APIT_").split("__").ignore(&["config"])),
        )
    }

    /// Parses a TOML document (no environment), for tests and tools.
    pub fn from_toml(toml: &str) -> Result<Config, ConfigError> {
        Self::from_figment(Figment::new().merge(Toml::string(toml)))
    }

    fn from_figment(figment: Figment) -> Result<Config, ConfigError> {
        let mut config: Config = figment.extract().map_err(|e| {
            ConfigError(e.into_iter().map(|e| describe_figment_error(&e)).collect())
        })?;
        config.resolve_and_validate()?;
        Ok(config)
    }

    fn resolve_and_validate(&mut self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        resolve_secret(
            "admin_token",
            &mut self.admin_token,
            &self.admin_token_file,
            &mut problems,
        );
        if !self.database_url.starts_with("sqlite:")
            && !self.database_url.starts_with("postgres:")
            && !self.database_url.starts_with("postgresql:")
        {
            problems.push("database_url: must start with sqlite:// or postgres://".into());
        }
        if self.worker.lease < Duration::from_secs(1) {
            problems.push("worker.lease: must be at least 1s".into());
        }
        if self.worker.concurrency == 0 {
            problems.push("worker.concurrency: must be at least 1".into());
        }
        if self.retry.initial_backoff.is_zero()
            || self.retry.max_backoff < self.retry.initial_backoff
        {
            problems.push(
                "retry: initial_backoff must be > 0 and max_backoff >= initial_backoff".into(),
            );
        }
        for (name, t) in &mut self.tenants {
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
            resolve_secret(
                &key("webhook_secret"),
                &mut t.webhook_secret,
                &t.webhook_secret_file,
                &mut problems,
            );
            if t.webhook_secret.is_none() {
                problems.push(format!("{}: is required", key("webhook_secret")));
            }
            resolve_secret(
                &key("signing_secret"),
                &mut t.signing_secret,
                &t.signing_secret_file,
                &mut problems,
            );
            resolve_secret(
                &key("moodle_token"),
                &mut t.moodle_token,
                &t.moodle_token_file,
                &mut problems,
            );
            if t.moodle_token.is_none() {
                problems.push(format!("{}: is required", key("moodle_token")));
            }
            match reqwest::Url::parse(&t.moodle_url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                    t.moodle_url = t.moodle_url.trim_end_matches('/').to_string();
                }
                _ => problems.push(format!(
                    "{}: must be the site's http(s) address, e.g. https://moodle.example.org",
                    key("moodle_url")
                )),
            }
            for (k, v) in [("category_id", t.category_id), ("role_id", t.role_id)] {
                if v <= 0 {
                    problems.push(format!("{}: must be a positive Moodle id", key(k)));
                }
            }
            if t.max_concurrency == 0 {
                problems.push(format!("{}: must be at least 1", key("max_concurrency")));
            }
            if t.moodle_timeout.is_zero() {
                problems.push(format!("{}: must be more than 0s", key("moodle_timeout")));
            }
            let prefix_ok =
                t.idnumber_prefix.len() <= 40 && !t.idnumber_prefix.contains(char::is_whitespace);
            if !prefix_ok {
                problems.push(format!(
                    "{}: at most 40 characters, no spaces",
                    key("idnumber_prefix")
                ));
            }
            let cb = &mut t.callback;
            resolve_secret(
                &key("callback.bearer_token"),
                &mut cb.bearer_token,
                &cb.bearer_token_file,
                &mut problems,
            );
            resolve_secret(
                &key("callback.password"),
                &mut cb.password,
                &cb.password_file,
                &mut problems,
            );
            match cb.kind {
                CallbackKind::None => {}
                CallbackKind::Webhook | CallbackKind::Accessplanit => {
                    let url_ok = cb
                        .url
                        .as_deref()
                        .and_then(|u| reqwest::Url::parse(u).ok())
                        .is_some_and(|u| matches!(u.scheme(), "http" | "https"));
                    if !url_ok {
                        problems.push(format!(
                            "{}: an http(s) URL is required for this callback kind",
                            key("callback.url")
                        ));
                    }
                }
            }
            if cb.kind == CallbackKind::Accessplanit
                && cb.bearer_token.is_none()
                && (cb.username.is_none() || cb.password.is_none())
            {
                problems.push(format!(
                    "{}: accessplanit needs bearer_token (an API key) or username and password",
                    key("callback")
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError(problems))
        }
    }

    /// Risky but legal settings, to log at start-up.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.admin_token.is_none() {
            out.push(
                "admin_token is not set: the admin API (/v1/jobs, grades/sync) refuses every call"
                    .into(),
            );
        }
        if self.tenants.is_empty() {
            out.push("no [tenants.*] configured: every event will be answered 404".into());
        }
        for (name, t) in &self.tenants {
            if t.callback.kind == CallbackKind::None {
                out.push(format!(
                    "tenants.{name}.callback.kind is none: Moodle IDs are not written back to accessplanit"
                ));
            }
            if t.moodle_url.starts_with("http://") {
                out.push(format!(
                    "tenants.{name}.moodle_url is plain http: the Moodle token crosses the network unencrypted"
                ));
            }
            if t.on_cancel == OnCancel::Unenrol {
                out.push(format!(
                    "tenants.{name}.on_cancel = unenrol: Moodle deletes a cancelled delegate's grades in that course"
                ));
            }
            if !t.grades.poll_interval.is_zero() && t.callback.kind == CallbackKind::None {
                out.push(format!(
                    "tenants.{name}.grades.poll_interval is set but callback.kind is none: scores are not polled (there is nowhere to write them back)"
                ));
            }
        }
        out
    }
}

fn resolve_secret(
    key: &str,
    value: &mut Option<Secret>,
    file: &Option<PathBuf>,
    problems: &mut Vec<String>,
) {
    let Some(path) = file else { return };
    if value.is_some() {
        problems.push(format!("{key}: give either {key} or {key}_file, not both"));
        return;
    }
    match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => *value = Some(Secret::new(text.trim())),
        Ok(_) => problems.push(format!("{key}_file: {} is empty", path.display())),
        Err(e) => problems.push(format!("{key}_file: cannot read {}: {e}", path.display())),
    }
}

fn describe_figment_error(e: &figment::Error) -> String {
    let key = e.path.join(".");
    // figment's own text already names the field for missing/unknown keys.
    if key.is_empty() {
        e.kind.to_string()
    } else {
        format!("{key}: {}", e.kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        admin_token = "admin-secret"
        [tenants.acme]
        webhook_secret = "hook-secret"
        moodle_url = "https://moodle.acme.example/"
        moodle_token = "0123456789abcdef0123456789abcdef"
        category_id = 5
    "#;

    #[test]
    fn defaults_follow_the_spec() {
        let c = Config::from_toml(MINIMAL).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.database_url, "sqlite://apit-moodle-sync.db");
        assert_eq!(c.worker.lease, Duration::from_secs(60));
        assert_eq!(c.retry.max_age, Duration::from_secs(86400));
        let t = &c.tenants["acme"];
        assert_eq!(t.moodle_url, "https://moodle.acme.example");
        assert_eq!(t.role_id, 5);
        assert_eq!(t.timezone, chrono_tz::Europe::London);
        assert!(t.match_users_by_email && t.update_on_save);
        assert_eq!(t.on_cancel, OnCancel::Suspend);
        assert_eq!(t.course_idnumber("C1"), "apit-course-C1");
        assert_eq!(t.callback.kind, CallbackKind::None);
        assert!(t.grades.poll_interval.is_zero());
    }

    #[test]
    fn every_problem_is_named_by_its_key() {
        let err = Config::from_toml(
            r#"
            database_url = "mysql://x"
            [tenants.acme]
            webhook_secret = "s"
            moodle_url = "moodle.acme"
            moodle_token = "t"
            category_id = 0
            [tenants.acme.callback]
            kind = "webhook"
        "#,
        )
        .unwrap_err()
        .to_string();
        for needle in [
            "database_url:",
            "tenants.acme.moodle_url:",
            "tenants.acme.category_id:",
            "tenants.acme.callback.url:",
        ] {
            assert!(err.contains(needle), "{needle} missing in {err}");
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = Config::from_toml(&format!("{MINIMAL}\nmoodle_tokn = \"x\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("moodle_tokn"), "{err}");
    }

    #[test]
    fn secrets_can_come_from_files_and_never_print() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "  file-token-value\n").unwrap();
        let toml = MINIMAL.replace(
            "moodle_token = \"0123456789abcdef0123456789abcdef\"",
            &format!("moodle_token_file = {:?}", file.display().to_string()),
        );
        let c = Config::from_toml(&toml).unwrap();
        let t = &c.tenants["acme"];
        assert_eq!(t.moodle_token().expose(), "file-token-value");
        let debug = format!("{c:?}");
        for secret in ["file-token-value", "admin-secret", "hook-secret"] {
            assert!(!debug.contains(secret), "{secret} leaked in Debug");
        }
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail's own error type
    fn environment_overrides_use_double_underscores() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("c.toml", MINIMAL)?;
            jail.set_env("APIT_TENANTS__ACME__MOODLE_TOKEN", "1234");
            jail.set_env("APIT_TENANTS__ACME__ROLE_ID", "3");
            jail.set_env("APIT_WORKER__LEASE", "90s");
            let c = Config::load(Some(Path::new("c.toml"))).map_err(|e| e.to_string())?;
            let t = &c.tenants["acme"];
            assert_eq!(t.moodle_token().expose(), "1234");
            assert_eq!(t.role_id, 3);
            assert_eq!(c.worker.lease, Duration::from_secs(90));
            Ok(())
        });
    }

    #[test]
    fn secret_comparison() {
        let s = Secret::new("abc");
        assert!(s.matches(b"abc"));
        assert!(!s.matches(b"abd"));
        assert!(!s.matches(b"ab"));
    }
}
