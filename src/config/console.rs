//! `[console]` (the operator console in the browser) and `[operators.<name>]`
//! (tokens that see only some tenants), and the checks of those sections.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::TenantConfig;
use crate::secret::{self, Secret};

/// `[console]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// Serve the console at all.
    pub enabled: bool,
    /// Where it is mounted, e.g. `/console` (then `/console/` is the overview).
    pub path: String,
    /// How long a sign-in lasts.
    #[serde(with = "humantime_serde")]
    pub session_ttl: Duration,
    /// Key that signs session cookies. Unset: a random key per process start
    /// (sessions then end on restart and hold on one replica only).
    pub session_key: Option<Secret>,
    session_key_file: Option<PathBuf>,
    /// Believe `X-Forwarded-Proto` / `Forwarded: proto=` (set this only behind a
    /// TLS-terminating proxy you run, which overwrites those headers): an `https`
    /// there makes the cookies `Secure`.
    pub trust_forwarded_proto: bool,
    /// How often the overview reloads itself (`0s` = never).
    #[serde(with = "humantime_serde")]
    pub refresh: Duration,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            enabled: true,
            path: "/console".into(),
            session_ttl: Duration::from_secs(8 * 3600),
            session_key: None,
            session_key_file: None,
            trust_forwarded_proto: false,
            refresh: Duration::from_secs(30),
        }
    }
}

/// Paths the console may not take: the API's own.
const TAKEN: [&str; 4] = ["/v1", "/healthz", "/readyz", "/metrics"];

impl ConsoleConfig {
    pub(super) fn resolve_and_validate(&mut self, problems: &mut Vec<String>) {
        secret::resolve(
            "console.session_key",
            &mut self.session_key,
            &self.session_key_file,
            problems,
        );
        if self
            .session_key
            .as_ref()
            .is_some_and(|k| k.expose().len() < 32)
        {
            problems.push("console.session_key: must be at least 32 characters".into());
        }
        let path = self.path.trim().trim_end_matches('/').to_string();
        let segment_ok = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        let taken = TAKEN
            .iter()
            .any(|t| path == *t || path.starts_with(&format!("{t}/")));
        if !path.starts_with('/') || !path[1..].split('/').all(segment_ok) || taken {
            problems.push(format!(
                "console.path: must be a path like \"/console\" (letters, digits, - _ .), \
                 not \"/\" and not under /v1, /healthz, /readyz or /metrics (got {:?})",
                self.path
            ));
        }
        self.path = path;
        if self.session_ttl < Duration::from_secs(60) || self.session_ttl > MAX_SESSION {
            problems.push("console.session_ttl: must be 1m to 30days".into());
        }
        if !self.refresh.is_zero() && self.refresh < Duration::from_secs(5) {
            problems.push("console.refresh: must be 0s (off) or at least 5s".into());
        }
    }
}

impl ConsoleConfig {
    /// Risky settings of the console, for the start-up log.
    pub(super) fn warnings(&self, database_url: &str) -> Vec<String> {
        let several_replicas = !database_url.starts_with("sqlite:");
        if self.enabled && self.session_key.is_none() && several_replicas {
            vec![
                "console.session_key is not set: a console sign-in holds only on the replica \
                 that made it and ends when it restarts (give every replica the same key)"
                    .into(),
            ]
        } else {
            Vec::new()
        }
    }
}

/// The longest sign-in.
const MAX_SESSION: Duration = Duration::from_secs(30 * 24 * 3600);

/// `[operators.<name>]`: a token that sees and retries only `tenants`' jobs, in
/// the admin API and in the console.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorConfig {
    #[serde(default)]
    pub token: Secret,
    token_file: Option<PathBuf>,
    /// The tenants it sees (names of `[tenants.*]`).
    #[serde(default)]
    pub tenants: BTreeSet<String>,
}

/// Checks every operator against the tenants and the admin token.
pub(super) fn validate_operators(
    operators: &mut BTreeMap<String, OperatorConfig>,
    tenants: &BTreeMap<String, TenantConfig>,
    admin_token: Option<&Secret>,
    problems: &mut Vec<String>,
) {
    for (name, op) in operators.iter_mut() {
        let key = format!("operators.{name}");
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        {
            problems.push(format!(
                "{key}: operator names may hold only a-z, 0-9, '-' and '_'"
            ));
        }
        if name == "admin" {
            problems.push(format!(
                "{key}: \"admin\" names the admin token in the logs; choose another name"
            ));
        }
        secret::resolve_required(
            &format!("{key}.token"),
            &mut op.token,
            &op.token_file,
            problems,
        );
        if op.tenants.is_empty() {
            problems.push(format!(
                "{key}.tenants: name at least one tenant (the admin token sees them all)"
            ));
        }
        for t in &op.tenants {
            if !tenants.contains_key(t) {
                problems.push(format!("{key}.tenants: no [tenants.{t}] is configured"));
            }
        }
        if !op.token.is_empty()
            && admin_token.is_some_and(|a| a.matches(op.token.expose().as_bytes()))
        {
            problems.push(format!("{key}.token: must differ from admin_token"));
        }
    }
    let names: Vec<&String> = operators.keys().collect();
    for (i, a) in names.iter().enumerate() {
        for b in &names[i + 1..] {
            let (ta, tb) = (&operators[*a].token, &operators[*b].token);
            if !ta.is_empty() && ta.matches(tb.expose().as_bytes()) {
                problems.push(format!(
                    "operators.{a}.token and operators.{b}.token: every operator needs its own token"
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    const TENANT: &str = r#"
        admin_token = "the-admin-token"
        [tenants.acme]
        webhook_secret = "s"
        moodle_url = "https://m.acme.example"
        moodle_token = "t"
        category_id = 1
    "#;

    #[test]
    fn the_console_is_on_at_console_by_default() {
        let c = Config::from_toml(TENANT).unwrap();
        assert!(c.console.enabled);
        assert_eq!(c.console.path, "/console");
        assert_eq!(c.console.session_ttl.as_secs(), 8 * 3600);
        assert_eq!(c.console.refresh.as_secs(), 30);
        assert!(!c.console.trust_forwarded_proto && c.console.session_key.is_none());
        assert!(c.operators.is_empty());
    }

    #[test]
    fn operators_are_checked_against_tenants_and_tokens() {
        let err = Config::from_toml(&format!(
            r#"{TENANT}
            [console]
            path = "/v1/console"
            session_key = "short"
            [operators.admin]
            token = "x1-token"
            tenants = ["acme"]
            [operators.nowhere]
            token = "the-admin-token"
            tenants = ["zeta"]
            [operators.none]
            tenants = []
            [operators.twin]
            token = "x1-token"
            tenants = ["acme"]
            "#
        ))
        .unwrap_err()
        .to_string();
        for needle in [
            "console.path:",
            "console.session_key: must be at least 32",
            "operators.admin: \"admin\" names the admin token",
            "operators.nowhere.tenants: no [tenants.zeta]",
            "operators.nowhere.token: must differ from admin_token",
            "operators.none.token: is required",
            "operators.none.tenants: name at least one tenant",
            "operators.admin.token and operators.twin.token",
        ] {
            assert!(err.contains(needle), "{needle} missing in {err}");
        }
    }

    #[test]
    fn an_operator_token_may_come_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("op");
        std::fs::write(&file, "file-operator-token\n").unwrap();
        let c = Config::from_toml(&format!(
            "{TENANT}\n[operators.support]\ntoken_file = {:?}\ntenants = [\"acme\"]\n",
            file.display().to_string()
        ))
        .unwrap();
        let op = &c.operators["support"];
        assert_eq!(op.token.expose(), "file-operator-token");
        assert!(!format!("{c:?}").contains("file-operator-token"));
    }

    #[test]
    fn without_a_session_key_postgres_replicas_are_warned_about() {
        let c =
            Config::from_toml(&format!("database_url = \"postgres://db/x\"\n{TENANT}")).unwrap();
        assert!(
            c.warnings()
                .iter()
                .any(|w| w.contains("console.session_key"))
        );
        let sqlite = Config::from_toml(TENANT).unwrap();
        assert!(
            !sqlite
                .warnings()
                .iter()
                .any(|w| w.contains("console.session_key"))
        );
    }
}
