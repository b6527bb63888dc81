//! The demo's write-back target: what accessplanit's side of `callback.kind = "webhook"`
//! would be. It accepts `POST /moodle-ids` with the demo's bearer token, keeps every body,
//! and once the story is told prints each one as it arrives.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::Context as _;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::post;
use serde_json::Value;
use tokio::net::TcpListener;

use super::output::Style;

/// The path write-backs are sent to.
pub const PATH: &str = "/moodle-ids";

struct Shared {
    bearer: String,
    /// Each body as parsed, and as received.
    received: Mutex<Vec<(Value, String)>>,
    /// Print each write-back as it arrives (after the story; during it the story prints them).
    live: AtomicBool,
    style: Style,
}

impl Shared {
    fn received(&self) -> MutexGuard<'_, Vec<(Value, String)>> {
        // Nothing panics while holding it; a poisoned lock still holds good data.
        self.received.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running receiver; dropping it stops it.
pub struct Receiver {
    url: String,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Receiver {
    /// Listens on `addr` for write-backs carrying `bearer`.
    pub async fn start(addr: SocketAddr, bearer: &str, style: Style) -> anyhow::Result<Receiver> {
        let listener = TcpListener::bind(addr).await.with_context(|| {
            format!("cannot listen on {addr} for write-backs (--receiver-listen)")
        })?;
        let bound = listener.local_addr()?;
        let shared = Arc::new(Shared {
            bearer: format!("Bearer {bearer}"),
            received: Mutex::new(Vec::new()),
            live: AtomicBool::new(false),
            style,
        });
        let app = axum::Router::new()
            .route(PATH, post(receive))
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "the demo's write-back receiver stopped");
            }
        });
        Ok(Receiver {
            url: format!("http://{bound}{PATH}"),
            shared,
            server,
        })
    }

    /// Where write-backs go (`callback.url`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Every write-back accepted so far, in arrival order.
    pub fn received(&self) -> Vec<Value> {
        self.shared
            .received()
            .iter()
            .map(|(v, _)| v.clone())
            .collect()
    }

    /// How many have been accepted so far.
    pub fn count(&self) -> usize {
        self.shared.received().len()
    }

    /// The bodies accepted after the first `from`, as they were received.
    pub fn since(&self, from: usize) -> Vec<String> {
        let received = self.shared.received();
        received
            .iter()
            .skip(from)
            .map(|(_, raw)| raw.clone())
            .collect()
    }

    /// From now on, print each write-back as it arrives.
    pub fn go_live(&self) {
        self.shared.live.store(true, Ordering::SeqCst);
    }
}

async fn receive(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let authorized = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == shared.bearer);
    if !authorized {
        return StatusCode::UNAUTHORIZED;
    }
    let Ok(value) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let raw = String::from_utf8_lossy(&body).into_owned();
    if shared.live.load(Ordering::SeqCst) {
        println!("{} {raw}", shared.style.cyan("← written back"));
    }
    shared.received().push((value, raw));
    StatusCode::NO_CONTENT
}
