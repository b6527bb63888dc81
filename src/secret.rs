//! Secrets (tokens, passwords): never printed by `Debug`, compared in constant
//! time, read from the configuration or from a `<key>_file`.

use std::fmt;
use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// A secret value: never printed by `Debug`, compared in constant time.
#[derive(Clone, Default)]
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

    /// True when no value was given (the default).
    pub fn is_empty(&self) -> bool {
        self.expose().is_empty()
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

/// Reads `<key>_file` into `value` when given (a file and a value together are
/// a problem, as is an empty or unreadable file).
pub(crate) fn resolve(
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

/// [`resolve`] for a secret that must be given one way or the other; an absent
/// one stays empty and is reported.
pub(crate) fn resolve_required(
    key: &str,
    value: &mut Secret,
    file: &Option<PathBuf>,
    problems: &mut Vec<String>,
) {
    let mut given = (!value.is_empty()).then(|| value.clone());
    resolve(key, &mut given, file, problems);
    match given {
        Some(secret) => *value = secret,
        None => problems.push(format!("{key}: is required")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_comparison() {
        let s = Secret::new("abc");
        assert!(s.matches(b"abc"));
        assert!(!s.matches(b"abd"));
        assert!(!s.matches(b"ab"));
        assert!(Secret::default().is_empty());
        assert_eq!(format!("{s:?}"), "[redacted]");
    }
}
