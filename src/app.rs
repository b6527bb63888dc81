//! Wiring: store, tenants, HTTP server, worker, outbox runner and grades poller side
//! by side, watched: graceful shutdown on a signal (readiness 503 → no new claims →
//! in-flight jobs finish → exit), and a non-zero exit when any part stops on its own.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use crate::config::{Config, LogFormat};
use crate::http::{self, AppState};
use crate::metrics::Metrics;
use crate::retry::Policy;
use crate::run::grades::GradesPoller;
use crate::run::outbox::OutboxRunner;
use crate::run::worker::Worker;
use crate::store::{self, Store};
use crate::tenant::Tenants;

/// Installs the global `tracing` subscriber (`RUST_LOG` wins over the default level).
pub fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,hyper=warn"));
    // Colours only for a person at a terminal, not for files and log shippers.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi);
    // A second call (tests) keeps the first subscriber.
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}

/// Opens the configured store and serves on the configured address until
/// SIGTERM or Ctrl-C.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let store = store::connect(&config.database_url)
        .await
        .context("cannot open the store (database_url)")?;
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {} (listen)", config.listen))?;
    run(config, store, listener, shutdown_signal()).await
}

/// Runs the service on `listener` until `shutdown` completes, or until one of
/// its parts (HTTP server, worker, outbox runner, grades poller) stops on its
/// own: then the others are stopped too and the error names the part, so the
/// process exits non-zero and systemd or Kubernetes restarts it.
pub async fn run(
    config: Config,
    store: Arc<dyn Store>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    let tenants = Tenants::from_config(&config).context("invalid tenant settings")?;
    let wake = Arc::new(Notify::new());
    let writebacks = Arc::new(Notify::new());
    let draining = Arc::new(AtomicBool::new(false));
    let (stop_tx, stop_rx) = watch::channel(false);
    let policy = Policy::new(config.retry.clone());
    let metrics = Arc::new(Metrics::new());

    let worker = Arc::new(Worker {
        store: store.clone(),
        tenants: tenants.clone(),
        policy: policy.clone(),
        config: config.worker.clone(),
        wake: wake.clone(),
        writebacks: writebacks.clone(),
        metrics: metrics.clone(),
    });
    let outbox = Arc::new(OutboxRunner {
        store: store.clone(),
        tenants: tenants.clone(),
        policy,
        lease: config.worker.lease,
        poll_interval: config.worker.poll_interval,
        drain_timeout: config.worker.shutdown_timeout,
        wake: writebacks,
        metrics: metrics.clone(),
    });
    let poller = GradesPoller {
        store: store.clone(),
        tenants: tenants.clone(),
        wake: wake.clone(),
    };
    let state = AppState {
        store,
        tenants,
        admin_token: config.admin_token.clone(),
        draining: draining.clone(),
        wake,
        metrics,
    };
    let app = http::router(state);
    let addr = listener.local_addr()?;
    tracing::info!(%addr, tenants = config.tenants.len(), "apit-moodle-sync listening");

    // The HTTP server keeps answering while jobs drain, so load balancers see 503 on /readyz.
    let (http_stop_tx, http_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut parts = JoinSet::new();
    parts.spawn(part("worker", worker.run(stop_rx.clone())));
    parts.spawn(part("outbox", outbox.run(stop_rx.clone())));
    parts.spawn(part("grades poller", poller.run(stop_rx)));
    let mut server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = http_stop_rx.await;
            })
            .await
    });

    // Whichever comes first: the shutdown signal, or a part that stopped by itself.
    let mut server_done = false;
    let failure = tokio::select! {
        _ = shutdown => None,
        Some(done) = parts.join_next() => Some(stopped(done)),
        done = &mut server => {
            server_done = true;
            Some(match done {
                Ok(Ok(())) => "the HTTP server stopped".to_string(),
                Ok(Err(e)) => format!("the HTTP server failed: {e}"),
                Err(e) => format!("the HTTP server task failed: {e}"),
            })
        }
    };
    match &failure {
        None => tracing::info!("shutdown requested: readiness is 503, no new jobs are claimed"),
        Some(why) => {
            tracing::error!(%why, "a part of the service stopped unexpectedly: stopping the rest")
        }
    }
    draining.store(true, Ordering::SeqCst);
    let _ = stop_tx.send(true);
    while let Some(done) = parts.join_next().await {
        if let Err(e) = done {
            tracing::error!(error = %e, "a part stopped abnormally during shutdown");
        }
    }
    let _ = http_stop_tx.send(());
    if !server_done {
        server
            .await
            .context("the HTTP server task failed")?
            .context("the HTTP server failed")?;
    }
    match failure {
        None => {
            tracing::info!("stopped");
            Ok(())
        }
        Some(why) => Err(anyhow::anyhow!(why)),
    }
}

/// A long-running part that names itself when it ends.
async fn part(name: &'static str, run: impl Future<Output = ()>) -> &'static str {
    run.await;
    name
}

/// Why a part's task ended before shutdown.
fn stopped(done: Result<&'static str, tokio::task::JoinError>) -> String {
    match done {
        Ok(name) => format!("the {name} stopped"),
        Err(e) if e.is_panic() => format!("a part panicked: {e}"),
        Err(e) => format!("a part was cancelled: {e}"),
    }
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
