//! The HTTP API (SPEC §2): axum routes, authentication, problem+json errors.

mod auth;
mod check;
mod events;
mod extract;
mod grades;
mod health;
mod jobs;
mod problem;
mod server;
mod wait;

pub use auth::sign;
pub use extract::params::MAX_WAIT;
pub use problem::Problem;
pub use server::serve;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{MatchedPath, Request};
use axum::handler::Handler;
use axum::http::{HeaderName, Method, Response, StatusCode};
use axum::routing::{MethodFilter, on};
use tokio::sync::Notify;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use tracing::Span;

use crate::access::Access;
use crate::config::ServerConfig;
use crate::console::Console;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::tenant::Tenants;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub tenants: Tenants,
    /// The admin token and the operators' scoped tokens.
    pub access: Access,
    /// True once shutdown began: readiness answers 503.
    pub draining: Arc<AtomicBool>,
    /// Wakes the worker when a job is admitted.
    pub wake: Arc<Notify>,
    pub metrics: Arc<Metrics>,
    /// The operator console's settings, sessions and last preflight reports.
    pub console: Arc<Console>,
    /// The edge limits (`[server]`): request and store timeouts.
    pub edge: ServerConfig,
}

/// Every route the service serves, as `(METHOD, path)`: the router is built
/// from the same list, so the OpenAPI test compares the document with this.
pub fn route_table() -> Vec<(Method, &'static str)> {
    routes().table
}

/// The routes and the table of what they are.
struct Routes {
    router: Router<AppState>,
    table: Vec<(Method, &'static str)>,
}

impl Routes {
    fn add<H, T>(mut self, method: Method, path: &'static str, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let filter = match method {
            Method::POST => MethodFilter::POST,
            Method::PUT => MethodFilter::PUT,
            Method::DELETE => MethodFilter::DELETE,
            Method::PATCH => MethodFilter::PATCH,
            _ => MethodFilter::GET,
        };
        self.table.push((method, path));
        self.router = self.router.route(path, on(filter, handler));
        self
    }
}

fn routes() -> Routes {
    Routes {
        router: Router::new(),
        table: Vec::new(),
    }
    .add(
        Method::POST,
        "/v1/tenants/{tenant}/events/{kind}",
        events::receive,
    )
    .add(
        Method::POST,
        "/v1/tenants/{tenant}/grades/sync",
        grades::sync,
    )
    .add(Method::GET, "/v1/jobs", jobs::list)
    .add(Method::GET, "/v1/jobs/{id}", jobs::show)
    .add(Method::POST, "/v1/jobs/{id}/retry", jobs::retry)
    .add(Method::GET, "/v1/tenants/{tenant}/check", check::tenant)
    .add(Method::GET, "/healthz", health::live)
    .add(Method::GET, "/readyz", health::ready)
    .add(Method::GET, "/metrics", health::metrics)
}

/// The router with its middleware: request ids, one span per request, a
/// timeout and a panic guard that both answer problem+json like every error.
/// The console's pages are merged in beside the API's table (not in it).
pub fn router(state: AppState) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    let request_timeout = state.edge.request_timeout;
    routes()
        .router
        .merge(crate::console::router(&state.console.config))
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
                // The only error the timeout produces is "elapsed".
                .layer(HandleErrorLayer::new(
                    move |_: tower::BoxError| async move { Problem::timeout(request_timeout) },
                ))
                .timeout(request_timeout)
                .layer(CatchPanicLayer::custom(
                    |_: Box<dyn std::any::Any + Send>| {
                        axum::response::IntoResponse::into_response(Problem::panicked())
                    },
                )),
        )
}
