//! Request extractors that answer their own rejections as problem+json: the
//! caller (admin or scoped operator token), typed query strings and path parameters.

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::AppState;
use super::auth::bearer;
use super::problem::Problem;
pub use crate::access::Caller;

/// The caller of an admin route, from `Authorization: Bearer <admin or operator
/// token>` (401 otherwise). Handlers filter by its scope: what an operator may
/// not see answers 404, as if it did not exist.
impl FromRequestParts<AppState> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        if !state.access.is_open() {
            return Err(Problem::unauthorized(
                "the admin API is disabled: set admin_token (or [operators.<name>]) in the configuration",
            ));
        }
        let token = bearer(&parts.headers).ok_or_else(|| {
            Problem::unauthorized("send Authorization: Bearer <admin token or operator token>")
        })?;
        state
            .access
            .identify(token)
            .ok_or_else(|| Problem::unauthorized("the token is not valid"))
    }
}

/// The query string as `T`; unknown or bad parameters are a 400 problem naming them.
#[derive(Debug, Clone)]
pub struct ValidQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ValidQuery<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        let query = parts.uri.query().unwrap_or_default();
        serde_urlencoded::from_str(query)
            .map(ValidQuery)
            .map_err(|e| Problem::bad_query(query_error(&e.to_string())))
    }
}

/// serde's wording made an operator's: "unknown field `x`, expected …" names the
/// parameter; the texts of the field readers below are already meant for people.
fn query_error(serde: &str) -> String {
    if let Some(rest) = serde.strip_prefix("unknown field `") {
        let name = rest.split('`').next().unwrap_or_default();
        return format!("unknown query parameter {name}");
    }
    if let Some(rest) = serde.strip_prefix("duplicate field `") {
        let name = rest.split('`').next().unwrap_or_default();
        return format!("query parameter {name} is given twice");
    }
    serde.to_string()
}

/// Path parameters as `T`; a path that cannot be read (e.g. `%ff`, not UTF-8)
/// names nothing that exists: 404.
#[derive(Debug, Clone)]
pub struct ValidPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ValidPath<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(ValidPath(value)),
            Err(_) => Err(Problem::not_found(
                "no such resource (the path cannot be read)",
            )),
        }
    }
}

/// Readers for query parameters: trimmed, blank means absent, and refusals
/// worded for the person who typed the URL.
pub mod params {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, de::Error};

    /// The longest `?wait`.
    pub const MAX_WAIT: Duration = Duration::from_secs(30);

    fn text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        let raw = Option::<String>::deserialize(d)?;
        Ok(raw.map(|s| s.trim().to_string()).filter(|s| !s.is_empty()))
    }

    /// Optional text; blank is absent.
    pub fn opt_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        text(d)
    }

    /// `?wait=N`: seconds, fractions allowed, clamped to 30; absent is 0.
    pub fn wait<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let Some(value) = text(d)? else {
            return Ok(Duration::ZERO);
        };
        let secs = value
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .ok_or_else(|| D::Error::custom("wait must be a number of seconds (at most 30)"))?;
        // Clamp before converting: huge values do not fit a Duration.
        Ok(Duration::from_secs_f64(secs.min(MAX_WAIT.as_secs_f64())))
    }

    /// A flag: `true/1/yes` (or given without a value), `false/0/no`.
    pub fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        let raw = Option::<String>::deserialize(d)?;
        match raw
            .as_deref()
            .map(|s| s.trim().to_ascii_lowercase())
            .as_deref()
        {
            None => Ok(false),
            Some("" | "true" | "1" | "yes") => Ok(true),
            Some("false" | "0" | "no") => Ok(false),
            Some(_) => Err(D::Error::custom("force must be true or false")),
        }
    }

    /// An optional value read with `parse`, refused with `message`.
    pub fn opt_parsed<'de, D, T>(
        d: D,
        parse: impl FnOnce(&str) -> Option<T>,
        message: impl FnOnce(&str) -> String,
    ) -> Result<Option<T>, D::Error>
    where
        D: Deserializer<'de>,
    {
        match text(d)? {
            None => Ok(None),
            Some(value) => parse(&value)
                .map(Some)
                .ok_or_else(|| D::Error::custom(message(&value))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_errors_name_the_parameter() {
        assert_eq!(
            query_error("unknown field `retries`, expected `wait` or `force`"),
            "unknown query parameter retries"
        );
        assert_eq!(
            query_error("duplicate field `wait`"),
            "query parameter wait is given twice"
        );
        assert_eq!(
            query_error("limit must be 1 to 500"),
            "limit must be 1 to 500"
        );
    }
}
