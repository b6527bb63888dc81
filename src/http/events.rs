//! `POST /v1/tenants/{tenant}/events/{kind}`: authenticate, validate, store
//! durably in one transaction, answer `202` (or the outcome with `?wait=N`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use uuid::Uuid;

use super::AppState;
use super::auth::{require_bearer, verify_signature};
use super::problem::Problem;
use super::wait;
use crate::events::{Event, EventKind, Rejection};
use crate::store::{Admission, NewJob};
use crate::tenant::Tenant;

/// Bodies above this are refused with 413.
pub const BODY_LIMIT: usize = 256 * 1024;
const IDEMPOTENCY_KEY_MAX: usize = 255;

/// The query of an event request.
struct EventQuery {
    wait: Duration,
    force: bool,
}

impl EventQuery {
    fn parse(query: &HashMap<String, String>) -> Result<Self, Problem> {
        let mut q = EventQuery {
            wait: Duration::ZERO,
            force: false,
        };
        for (key, value) in query {
            match key.as_str() {
                "wait" => q.wait = wait::parse(value)?,
                "force" => {
                    q.force = match value.trim().to_ascii_lowercase().as_str() {
                        "" | "true" | "1" | "yes" => true,
                        "false" | "0" | "no" => false,
                        _ => return Err(Problem::bad_query("force must be true or false")),
                    }
                }
                other => {
                    return Err(Problem::bad_query(format!(
                        "unknown query parameter {other}"
                    )));
                }
            }
        }
        Ok(q)
    }
}

fn is_json(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else { return false };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Reads the body up to [`BODY_LIMIT`], refusing larger ones before reading them.
async fn read_body(headers: &HeaderMap, body: Body) -> Result<axum::body::Bytes, Problem> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > BODY_LIMIT) {
        return Err(Problem::too_large(BODY_LIMIT));
    }
    axum::body::to_bytes(body, BODY_LIMIT)
        .await
        .map_err(|_| Problem::too_large(BODY_LIMIT))
}

/// The idempotency key: the `Idempotency-Key` header, else the body's `event_id`.
fn idempotency_key(headers: &HeaderMap, event: &Event) -> Result<Option<String>, Problem> {
    let from_header = match headers.get("idempotency-key") {
        Some(v) => {
            let key = v
                .to_str()
                .map_err(|_| Problem::bad_header("Idempotency-Key must be visible ASCII"))?
                .trim();
            if key.is_empty() || key.len() > IDEMPOTENCY_KEY_MAX {
                return Err(Problem::bad_header(format!(
                    "Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_MAX} characters"
                )));
            }
            Some(key.to_string())
        }
        None => None,
    };
    Ok(from_header.or_else(|| event.event_id.clone()))
}

/// The handler: the work, then one count per request in the metrics.
pub async fn receive(
    State(state): State<AppState>,
    Path((tenant_name, kind)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let tenant = state.tenants.get(&tenant_name).cloned();
    let event_kind = EventKind::parse(&kind);
    // Label values only from what is configured or known, never as sent.
    let tenant_label = tenant
        .as_ref()
        .map_or_else(|| "unknown".to_string(), |t| t.name.clone());
    let kind_label = event_kind.map_or("unknown", EventKind::as_str);
    let metrics = state.metrics.clone();
    let result = match (tenant, event_kind) {
        (None, _) => Err(Problem::not_found(format!("unknown tenant {tenant_name}"))),
        (Some(_), None) => Err(Problem::not_found(format!(
            "unknown event {kind}: use course-saved, course-date-changed, booking-created or booking-cancelled"
        ))),
        (Some(tenant), Some(kind)) => accept(state, tenant, kind, query, headers, body).await,
    };
    let (outcome, response) = match result {
        Ok((outcome, response)) => (outcome, response),
        Err(problem) => ("rejected", problem.into_response()),
    };
    metrics.event(
        &tenant_label,
        kind_label,
        outcome,
        response.status().as_u16(),
    );
    response
}

/// Authenticates, validates and admits one event; the outcome names what happened.
async fn accept(
    state: AppState,
    tenant: Arc<Tenant>,
    kind: EventKind,
    query: HashMap<String, String>,
    headers: HeaderMap,
    body: Body,
) -> Result<(&'static str, Response), Problem> {
    let tenant_name = &tenant.name;
    require_bearer(&headers, tenant.config.webhook_secret(), "webhook secret")?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    if !is_json(content_type) {
        return Err(Problem::unsupported_media_type(content_type));
    }
    let query = EventQuery::parse(&query)?;
    let bytes = read_body(&headers, body).await?;
    if let Some(secret) = &tenant.config.signing_secret {
        verify_signature(&headers, &bytes, secret, Utc::now())?;
    }
    let event = Event::parse(kind, &bytes, tenant.config.timezone).map_err(|r| match r {
        Rejection::Malformed(detail) => Problem::malformed(detail),
        Rejection::Invalid(errors) => Problem::invalid(errors),
    })?;
    let idempotency_key = idempotency_key(&headers, &event)?;

    let job = NewJob {
        id: Uuid::now_v7(),
        tenant: tenant_name.clone(),
        kind: kind.as_str().to_string(),
        event: serde_json::to_value(&event).map_err(|e| Problem::internal(&e))?,
        // Keys are per tenant: two customers' "C1" are different courses.
        keys: event
            .ordering_keys()
            .into_iter()
            .map(|k| format!("{tenant_name}:{k}"))
            .collect(),
        idempotency_key,
        entity: event.entity(),
        body_hash: event.body_hash(),
    };
    let admission = state.store.admit(job, query.force, Utc::now()).await?;
    let outcome = match &admission {
        Admission::Created(_) => "accepted",
        Admission::Requeued(_) => "requeued",
        Admission::Existing(_) => "duplicate",
    };
    let job = match admission {
        Admission::Created(job) | Admission::Requeued(job) => {
            state.wake.notify_one();
            tracing::info!(tenant = %tenant_name, kind = kind.as_str(), job_id = %job.id, "event accepted");
            job
        }
        Admission::Existing(job) => {
            tracing::info!(tenant = %tenant_name, kind = kind.as_str(), job_id = %job.id, status = job.status.as_str(), "event already known");
            job
        }
    };
    Ok((outcome, wait::answer(&state, job, query.wait).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        assert!(is_json(Some("application/json")));
        assert!(is_json(Some("Application/JSON; charset=utf-8")));
        assert!(is_json(Some("application/vnd.apit+json")));
        assert!(!is_json(Some("text/plain")));
        assert!(!is_json(Some("application/x-www-form-urlencoded")));
        assert!(!is_json(None));
    }
}
