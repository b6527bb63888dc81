//! RFC 9457 problem details: every error the API answers, from one enum-like
//! constructor set, so the client always sees a stable, documented body.

use std::future::Future;
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::events::FieldError;
use crate::store::StoreResult;

/// What a 503 tells the sender to wait before sending again, in seconds.
const RETRY_AFTER_SECS: &str = "5";

/// An `application/problem+json` answer.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// A stable identifier of the problem kind: `urn:apit-moodle-sync:problem:<slug>`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    /// Every bad field (validation problems only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
}

impl Problem {
    fn new(status: StatusCode, slug: &str, title: &'static str, detail: impl Into<String>) -> Self {
        Problem {
            kind: format!("urn:apit-moodle-sync:problem:{slug}"),
            title,
            status: status.as_u16(),
            detail: detail.into(),
            errors: None,
        }
    }

    /// Any other status, with a generic slug.
    pub fn new_status(status: StatusCode, detail: impl Into<String>) -> Self {
        let title = status.canonical_reason().unwrap_or("Error");
        let slug = title.to_ascii_lowercase().replace(' ', "-");
        Self::new(status, &slug, title, detail)
    }

    /// 400: the body is not JSON (or not an object).
    pub fn malformed(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "malformed-body",
            "Malformed request body",
            detail,
        )
    }

    /// 400: a bad request header.
    pub fn bad_header(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "bad-header",
            "Invalid request header",
            detail,
        )
    }

    /// 400: a bad query parameter.
    pub fn bad_query(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "bad-query",
            "Invalid query parameter",
            detail,
        )
    }

    /// 401: missing or wrong credentials.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Unauthorized",
            detail,
        )
    }

    /// 404.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    /// 409: the request conflicts with the resource's state.
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", "Conflict", detail)
    }

    /// 413: body over the limit.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            "Request body too large",
            format!("the body must be at most {} KiB", limit / 1024),
        )
    }

    /// 415: not JSON.
    pub fn unsupported_media_type(got: Option<&str>) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            format!(
                "send Content-Type: application/json (got {})",
                got.unwrap_or("none")
            ),
        )
    }

    /// 422: every field that breaks a rule.
    pub fn invalid(errors: Vec<FieldError>) -> Self {
        let detail = match errors.len() {
            1 => "1 field is invalid".to_string(),
            n => format!("{n} fields are invalid"),
        };
        let mut p = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            "Invalid event",
            detail,
        );
        p.errors = Some(errors);
        p
    }

    /// 500: the detail is logged, never sent.
    pub fn internal(error: &dyn std::fmt::Display) -> Self {
        tracing::error!(%error, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "the service could not complete the request; it is logged",
        )
    }

    /// 408: the request was not complete (body included) within `limit`.
    pub fn timeout(limit: Duration) -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "request-timeout",
            "Request timeout",
            format!(
                "the request was not completed within {}",
                humantime::format_duration(limit)
            ),
        )
    }

    /// 500 for a handler that panicked (a bug): logged, and the connection
    /// still gets an answer.
    pub fn panicked() -> Self {
        tracing::error!("a request handler panicked");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "the service could not complete the request; it is logged",
        )
    }

    /// 503: the store is unavailable.
    pub fn unavailable(error: &dyn std::fmt::Display) -> Self {
        tracing::error!(%error, "store unavailable");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service unavailable",
            "the job store is not answering; send the request again later",
        )
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, axum::Json(&self)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECS),
            );
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<crate::store::StoreError> for Problem {
    fn from(e: crate::store::StoreError) -> Self {
        Problem::unavailable(&e)
    }
}

/// Runs a store call on the request path: a store that fails, or does not
/// answer within `limit`, is a 503 (with `Retry-After`), never a 500. A call cut
/// off by the limit may still commit; the sender's re-send then finds it
/// (SPEC §2 idempotency), so nothing answered 202 is ever missing.
pub(super) async fn within<T>(
    limit: Duration,
    call: impl Future<Output = StoreResult<T>>,
) -> Result<T, Problem> {
    match tokio::time::timeout(limit, call).await {
        Ok(result) => result.map_err(Problem::from),
        Err(_) => Err(Problem::unavailable(&format_args!(
            "the store did not answer within {}",
            humantime::format_duration(limit)
        ))),
    }
}
