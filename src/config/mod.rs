//! Typed configuration (SPEC §5): TOML file, `APIT_…` environment overrides
//! with `__` between levels, `<key>_file` secrets, one validation pass that
//! names every bad key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::Deserialize;

mod console;
mod retention;
mod tenant;

pub use console::{ConsoleConfig, OperatorConfig};
pub use retention::RetentionConfig;
pub use tenant::{CallbackConfig, CallbackKind, GradesConfig, OnCancel, TenantConfig};

use crate::secret::{self, Secret};

/// A configuration problem; the text names the key.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  {}", .0.join("\n  "))]
pub struct ConfigError(pub Vec<String>);

impl ConfigError {
    fn one(msg: impl Into<String>) -> Self {
        ConfigError(vec![msg.into()])
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

impl WorkerConfig {
    fn validate(&self, problems: &mut Vec<String>) {
        if self.lease < Duration::from_secs(1) {
            problems.push("worker.lease: must be at least 1s".into());
        }
        if self.concurrency == 0 {
            problems.push("worker.concurrency: must be at least 1".into());
        }
    }
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            lease: Duration::from_secs(60),
            poll_interval: Duration::from_millis(500),
            concurrency: 1024,
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

impl RetryConfig {
    fn validate(&self, problems: &mut Vec<String>) {
        if self.initial_backoff.is_zero() || self.max_backoff < self.initial_backoff {
            problems.push(
                "retry: initial_backoff must be > 0 and max_backoff >= initial_backoff".into(),
            );
        }
    }
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

/// `[server]`: the limits at the HTTP edge (README "Edge limits").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// A connection must deliver a complete request head within this time of
    /// opening, or of its first byte after an idle keep-alive pause.
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// A keep-alive connection with no request for this long is closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// A request not answered within this time (body included) gets 408.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// How long an event or grades request waits for the store before it is
    /// answered 503 with `Retry-After`.
    #[serde(with = "humantime_serde")]
    pub store_timeout: Duration,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
}

impl ServerConfig {
    fn validate(&self, problems: &mut Vec<String>) {
        for (key, value) in [
            ("header_timeout", self.header_timeout),
            ("idle_timeout", self.idle_timeout),
            ("request_timeout", self.request_timeout),
            ("store_timeout", self.store_timeout),
        ] {
            if value < Duration::from_millis(10) {
                problems.push(format!("server.{key}: must be at least 10ms"));
            }
        }
        if self.max_connections == 0 {
            problems.push("server.max_connections: must be at least 1".into());
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            header_timeout: Duration::from_secs(10),
            // Longer than the common 60 s idle timeout of load balancers, so
            // the balancer, not this service, closes a pooled connection.
            idle_timeout: Duration::from_secs(75),
            // Longer than the longest `?wait` (30 s).
            request_timeout: Duration::from_secs(40),
            store_timeout: Duration::from_secs(5),
            // Leaves room under the common soft limit of 1024 open files for
            // the store's and the Moodle clients' own connections.
            max_connections: 512,
        }
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
    /// A file holding `database_url` (it carries the PostgreSQL password); wins over `database_url`.
    database_url_file: Option<PathBuf>,
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
    pub server: ServerConfig,
    #[serde(default)]
    pub retention: RetentionConfig,
    #[serde(default)]
    pub tenants: BTreeMap<String, TenantConfig>,
    /// `[console]`: the operator console in the browser.
    #[serde(default)]
    pub console: ConsoleConfig,
    /// `[operators.<name>]`: tokens that see only some tenants.
    #[serde(default)]
    pub operators: BTreeMap<String, OperatorConfig>,
}

mod defaults {
    use super::*;

    pub fn listen() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 8080))
    }
    pub fn database_url() -> String {
        "sqlite://apit-moodle-sync.db".into()
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

    /// One pass over every section, collecting every problem before failing.
    fn resolve_and_validate(&mut self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        secret::resolve(
            "admin_token",
            &mut self.admin_token,
            &self.admin_token_file,
            &mut problems,
        );
        if self.database_url_file.is_some() {
            let mut url = None;
            secret::resolve(
                "database_url",
                &mut url,
                &self.database_url_file,
                &mut problems,
            );
            if let Some(url) = url {
                self.database_url = url.expose().to_owned();
            }
        }
        if !self.database_url.starts_with("sqlite:")
            && !self.database_url.starts_with("postgres:")
            && !self.database_url.starts_with("postgresql:")
        {
            problems.push("database_url: must start with sqlite:// or postgres://".into());
        }
        self.worker.validate(&mut problems);
        self.retry.validate(&mut problems);
        self.server.validate(&mut problems);
        self.retention.validate(&mut problems);
        for (name, t) in &mut self.tenants {
            t.resolve_and_validate(name, &mut problems);
        }
        self.console.resolve_and_validate(&mut problems);
        console::validate_operators(
            &mut self.operators,
            &self.tenants,
            self.admin_token.as_ref(),
            &mut problems,
        );
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError(problems))
        }
    }

    /// Risky but legal settings, to log at start-up.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.admin_token.is_none() && self.operators.is_empty() {
            out.push(
                "admin_token is not set: the admin API (/v1/jobs, grades/sync) refuses every call"
                    .into(),
            );
        }
        out.extend(self.console.warnings(&self.database_url));
        if self.server.request_timeout <= crate::http::MAX_WAIT {
            out.push(format!(
                "server.request_timeout ({}) is not longer than the longest ?wait (30s): waiting requests may be cut off with 408",
                humantime::format_duration(self.server.request_timeout)
            ));
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
        assert_eq!(c.server.header_timeout, Duration::from_secs(10));
        assert_eq!(c.server.idle_timeout, Duration::from_secs(75));
        assert_eq!(c.server.request_timeout, Duration::from_secs(40));
        assert_eq!(c.server.store_timeout, Duration::from_secs(5));
        assert_eq!(c.server.max_connections, 512);
        assert!(c.warnings().iter().all(|w| !w.contains("request_timeout")));
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

    /// The file the README's first command runs with: it must load, and say
    /// what the README promises.
    #[test]
    fn the_example_configuration_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/apit-moodle-sync.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let c = Config::from_toml(&text).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert!(c.database_url.starts_with("sqlite:"));
        let acme = &c.tenants["acme"];
        assert_eq!(acme.callback.kind, CallbackKind::None);
        assert_eq!(acme.on_cancel, OnCancel::Suspend);
        assert!(!acme.webhook_secret().is_empty() && !acme.moodle_token().is_empty());
    }

    #[test]
    fn server_limits_are_validated_and_a_short_request_timeout_is_warned_about() {
        let err = Config::from_toml(&format!(
            "{MINIMAL}\n[server]\nmax_connections = 0\nheader_timeout = \"0s\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("server.max_connections"), "{err}");
        assert!(err.contains("server.header_timeout"), "{err}");
        let c = Config::from_toml(&format!("{MINIMAL}\n[server]\nrequest_timeout = \"20s\"\n"))
            .unwrap();
        assert!(
            c.warnings()
                .iter()
                .any(|w| w.contains("server.request_timeout")),
            "{:?}",
            c.warnings()
        );
    }

    #[test]
    fn required_secrets_are_reported_when_missing() {
        let err = Config::from_toml(&MINIMAL.replace("webhook_secret = \"hook-secret\"", ""))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("tenants.acme.webhook_secret: is required"),
            "{err}"
        );
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
    fn the_database_url_can_come_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("database_url");
        std::fs::write(&file, "postgres://apit:pw@db/apit\n").unwrap();
        let toml = format!(
            "database_url_file = {:?}\n{MINIMAL}",
            file.display().to_string()
        );
        let c = Config::from_toml(&toml).unwrap();
        assert_eq!(c.database_url, "postgres://apit:pw@db/apit");
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
}
