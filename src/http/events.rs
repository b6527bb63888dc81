//! `POST /v1/tenants/{tenant}/events/{kind}`: authenticate, validate, store
//! durably in one transaction, answer `202` (or the outcome with `?wait=N`).

use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::AppState;
use super::auth::{SIGNATURE_TOLERANCE_SECS, Signed, require_bearer, verify_signature};
use super::extract::{ValidPath, ValidQuery, params};
use super::problem::{Problem, within};
use super::wait;
use crate::events::{Event, EventKind, Rejection};
use crate::intake::{self, Delivered, Delivery};
use crate::store::Admission;
use crate::tenant::Tenant;

/// Bodies above this are refused with 413.
pub const BODY_LIMIT: usize = 256 * 1024;
const IDEMPOTENCY_KEY_MAX: usize = 255;

/// The query of an event request.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventQuery {
    #[serde(default, deserialize_with = "params::wait")]
    wait: Duration,
    #[serde(default, deserialize_with = "params::flag")]
    force: bool,
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
    Ok(from_header.or_else(|| event.event_id().map(str::to_string)))
}

/// The handler: the work, then one count per request in the metrics.
pub async fn receive(
    State(state): State<AppState>,
    ValidPath((tenant_name, kind)): ValidPath<(String, String)>,
    query: Result<ValidQuery<EventQuery>, Problem>,
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
        (Some(tenant), Some(kind)) => accept(&state, &tenant, kind, query, &headers, body).await,
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
/// Credentials are checked before anything else, so a caller without them
/// learns nothing about the query or the body.
async fn accept(
    state: &AppState,
    tenant: &Tenant,
    kind: EventKind,
    query: Result<ValidQuery<EventQuery>, Problem>,
    headers: &HeaderMap,
    body: Body,
) -> Result<(&'static str, Response), Problem> {
    require_bearer(headers, tenant.config.webhook_secret(), "webhook secret")?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    if !is_json(content_type) {
        return Err(Problem::unsupported_media_type(content_type));
    }
    let ValidQuery(query) = query?;
    let bytes = read_body(headers, body).await?;
    let delivery = match &tenant.config.signing_secret {
        Some(secret) => Some(delivery(verify_signature(
            headers,
            &bytes,
            secret,
            Utc::now(),
        )?)),
        None => None,
    };
    let event = Event::parse(kind, &bytes, tenant.config.timezone).map_err(|r| match r {
        Rejection::Malformed(detail) => Problem::malformed(detail),
        Rejection::Invalid(errors) => Problem::invalid(errors),
    })?;
    let key = idempotency_key(headers, &event)?;
    let job = within(
        state.edge.store_timeout,
        intake::event_job(&*state.store, &tenant.name, &event, key),
    )
    .await?;
    let delivered = within(
        state.edge.store_timeout,
        intake::admit_delivery(
            &*state.store,
            &state.wake,
            job,
            query.force,
            delivery.as_ref(),
        ),
    )
    .await?;
    let outcome = match &delivered {
        Delivered::Replayed(_) => "replayed",
        Delivered::Admitted(Admission::Created(_)) => "accepted",
        Delivered::Admitted(Admission::Requeued(_)) => "requeued",
        Delivered::Admitted(Admission::Existing(_)) => "duplicate",
    };
    let job = delivered.into_admission().into_job();
    Ok((outcome, wait::answer(state, job, query.wait).await?))
}

/// The delivery a valid signature vouches for. A replay is refused by the
/// timestamp check once `webhook-timestamp` is more than the tolerance away,
/// so the id is remembered until then, plus a minute for replicas' clocks.
fn delivery(signed: Signed) -> Delivery {
    let until = signed
        .timestamp
        .saturating_add(SIGNATURE_TOLERANCE_SECS + 60);
    Delivery {
        webhook_id: signed.id,
        replayable_until: DateTime::from_timestamp(until, 0).unwrap_or_else(|| {
            Utc::now() + chrono::Duration::seconds(2 * SIGNATURE_TOLERANCE_SECS)
        }),
    }
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
