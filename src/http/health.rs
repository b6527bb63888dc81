//! Liveness and readiness for load balancers.

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::AppState;

/// `GET /healthz`: 200 while the process runs.
pub async fn live() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: 200 when the store answers and the service is not draining.
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    if state.draining.load(Ordering::SeqCst) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "draining"})),
        );
    }
    match tokio::time::timeout(Duration::from_secs(2), state.store.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, Json(json!({"status": "ready"}))),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: store error");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "store unavailable"})),
            )
        }
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "store not answering"})),
        ),
    }
}

/// `GET /metrics`: Prometheus text format; queue gauges are read from the store now.
pub async fn metrics(State(state): State<AppState>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let stats = match state.store.queue_stats().await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "metrics: queue figures unavailable");
            Vec::new()
        }
    };
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(&stats, chrono::Utc::now()),
    )
        .into_response()
}
