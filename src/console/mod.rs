//! The operator console: server-rendered HTML pages (maud) served by the
//! service itself under `console.path`, with its stylesheet embedded in the
//! binary. No JavaScript: every action is a plain form, so it works with
//! scripts off and under a Content-Security-Policy that allows none.
//!
//! Its routes are outside `http::route_table()` (the API's, which openapi.yaml
//! describes): [`router`] is merged into `http::router`.

mod chart;
mod fix;
mod layout;
mod pages;
mod session;

use std::collections::BTreeMap;
use std::sync::Mutex;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{any, get, post};
use chrono::{DateTime, Utc};

use crate::check::CheckReport;
use crate::config::ConsoleConfig;
use crate::http::AppState;

pub use session::Session;

/// The console's run-time state: its settings, session keys and the last
/// preflight of each tenant (from the console or `GET …/check`).
pub struct Console {
    pub config: ConsoleConfig,
    keys: session::Keys,
    checks: Mutex<BTreeMap<String, (DateTime<Utc>, CheckReport)>>,
}

impl Console {
    /// The console of a configuration (a random session key unless one is set).
    pub fn new(config: &ConsoleConfig) -> Self {
        Console {
            keys: session::Keys::new(config.session_key.as_ref().map(|k| k.expose().as_bytes())),
            config: config.clone(),
            checks: Mutex::new(BTreeMap::new()),
        }
    }

    /// Keeps a tenant's latest preflight report for the overview.
    pub fn remember_check(&self, report: &CheckReport) {
        self.checks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(report.tenant.clone(), (Utc::now(), report.clone()));
    }

    /// A tenant's latest preflight report, with when it ran.
    pub fn last_check(&self, tenant: &str) -> Option<(DateTime<Utc>, CheckReport)> {
        self.checks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(tenant)
            .cloned()
    }
}

/// The console's routes under its path (none when it is switched off), with
/// the browser-security headers on every answer.
pub fn router(config: &ConsoleConfig) -> Router<AppState> {
    if !config.enabled {
        return Router::new();
    }
    let p = &config.path;
    Router::new()
        .route(p, get(pages::to_overview))
        .route(&format!("{p}/"), get(pages::overview::page))
        .route(
            &format!("{p}/sign-in"),
            get(pages::signin::show).post(pages::signin::submit),
        )
        .route(&format!("{p}/sign-out"), post(pages::signin::sign_out))
        .route(&format!("{p}/jobs"), get(pages::jobs::list))
        .route(&format!("{p}/jobs/{{id}}"), get(pages::job::page))
        .route(&format!("{p}/jobs/{{id}}/retry"), post(pages::job::retry))
        .route(
            &format!("{p}/jobs/{{id}}/run-now"),
            post(pages::job::run_now),
        )
        .route(
            &format!("{p}/tenants/{{tenant}}/bulk-retry"),
            get(pages::bulk::review).post(pages::bulk::submit),
        )
        .route(
            &format!("{p}/tenants/{{tenant}}/check"),
            get(pages::check::page),
        )
        .route(&format!("{p}/assets/console.css"), get(stylesheet))
        .route(&format!("{p}/{{*rest}}"), any(pages::not_found))
        .layer(middleware::from_fn(security_headers))
}

/// The stylesheet, compiled into the binary.
const CSS: &str = include_str!("assets/console.css");

async fn stylesheet() -> Response {
    let mut r = Response::new(axum::body::Body::from(CSS));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    r
}

/// The policy: nothing but this origin's stylesheet and forms; no script at
/// all, no inline style, no framing.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

async fn security_headers(request: Request, next: Next) -> Response {
    let mut r = next.run(request).await;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r
}
