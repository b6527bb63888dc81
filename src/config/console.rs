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
