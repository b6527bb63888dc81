//! A recording stand-in for accessplanit's write-back endpoint, whose answers
//! can be switched at run time.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::Value;

/// One write-back received.
#[derive(Debug, Clone)]
pub struct Received {
    pub body: Value,
    pub authorization: Option<String>,
    pub idempotency_key: Option<String>,
}

#[derive(Default)]
struct Inner {
    received: Vec<Received>,
    /// Answer this many requests with 503 before accepting.
    fail_next: usize,
    failed: usize,
}

/// The receiver, serving `POST /moodle-ids` on 127.0.0.1.
#[derive(Clone)]
pub struct CallbackReceiver {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
}

impl CallbackReceiver {
    /// Starts the receiver on a free port.
    pub async fn start() -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = axum::Router::new()
            .route("/moodle-ids", post(receive))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/moodle-ids", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        CallbackReceiver { url, inner }
    }

    /// Write-backs accepted (2xx) so far, in order.
    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().unwrap().received.clone()
    }

    /// Only the bodies.
    pub fn bodies(&self) -> Vec<Value> {
        self.received().into_iter().map(|r| r.body).collect()
    }

    /// Answers the next `n` requests with 503.
    pub fn fail_next(&self, n: usize) {
        self.inner.lock().unwrap().fail_next = n;
    }

    /// Requests refused with 503 so far.
    pub fn failed(&self) -> usize {
        self.inner.lock().unwrap().failed
    }
}

async fn receive(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> StatusCode {
    let mut inner = inner.lock().unwrap();
    if inner.fail_next > 0 {
        inner.fail_next -= 1;
        inner.failed += 1;
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    inner.received.push(Received {
        body,
        authorization: header("authorization"),
        idempotency_key: header("idempotency-key"),
    });
    StatusCode::NO_CONTENT
}
