//! The HTTP API (SPEC §2): axum routes, authentication, problem+json errors.

mod auth;
mod check;
mod events;
mod extract;
mod grades;
mod health;
mod jobs;
mod problem;
mod wait;

pub use auth::sign;
pub use problem::Problem;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, Response, StatusCode};
use axum::routing::{get, post};
use tokio::sync::Notify;
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use tracing::Span;

use crate::config::Secret;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::tenant::Tenants;

/// Longer than the longest `?wait` (30 s), so a waiting request is never cut off.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(40);

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub tenants: Tenants,
    pub admin_token: Option<Secret>,
    /// True once shutdown began: readiness answers 503.
    pub draining: Arc<AtomicBool>,
    /// Wakes the worker when a job is admitted.
    pub wake: Arc<Notify>,
    pub metrics: Arc<Metrics>,
}

/// The router with its middleware: request ids, one span per request, timeout.
pub fn router(state: AppState) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    Router::new()
        .route("/v1/tenants/{tenant}/events/{kind}", post(events::receive))
        .route("/v1/tenants/{tenant}/grades/sync", post(grades::sync))
        .route("/v1/jobs", get(jobs::list))
        .route("/v1/jobs/{id}", get(jobs::show))
        .route("/v1/jobs/{id}/retry", post(jobs::retry))
        .route("/v1/tenants/{tenant}/check", get(check::tenant))
        .route("/healthz", get(health::live))
        .route("/readyz", get(health::ready))
        .route("/metrics", get(health::metrics))
        .fallback(|| async { Problem::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            Problem::new_status(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this route",
            )
        })
        .with_state(state)
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(|req: &Request| {
                            // Never the headers: they carry the secrets.
                            let route = req
                                .extensions()
                                .get::<MatchedPath>()
                                .map(|p| p.as_str().to_string())
                                .unwrap_or_else(|| "unmatched".into());
                            let request_id = req
                                .headers()
                                .get("x-request-id")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("");
                            tracing::info_span!(
                                "request",
                                method = %req.method(),
                                route = %route,
                                request_id = %request_id,
                            )
                        })
                        .on_request(())
                        .on_response(|res: &Response<_>, latency: Duration, _: &Span| {
                            tracing::info!(
                                status = res.status().as_u16(),
                                latency_ms = latency.as_millis() as u64,
                                "request finished"
                            );
                        })
                        .on_failure(()),
                )
                .layer(PropagateRequestIdLayer::new(request_id))
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::REQUEST_TIMEOUT,
                    REQUEST_TIMEOUT,
                )),
        )
}
