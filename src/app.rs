//! Wiring: store, tenants, HTTP server, worker, outbox and grades poller side by side, with
//! graceful shutdown (readiness 503 → no new claims → in-flight jobs finish → exit).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

use crate::callback::Outbox;
use crate::config::{Config, LogFormat};
use crate::http::{self, AppState};
use crate::metrics::Metrics;
use crate::poller::GradesPoller;
use crate::retry::Policy;
use crate::store::{self, Store};
use crate::tenant::Tenants;
use crate::worker::Worker;

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

/// Runs the service on `listener` until `shutdown` completes.
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
        metrics: metrics.clone(),
    });
    let worker_task = tokio::spawn(worker.run(stop_rx.clone()));
    let outbox = Outbox {
        store: store.clone(),
        tenants: tenants.clone(),
        policy,
        lease: config.worker.lease,
        poll_interval: config.worker.poll_interval,
        metrics: metrics.clone(),
    };
    let outbox_task = tokio::spawn(outbox.run(stop_rx.clone()));
    let poller = GradesPoller {
        store: store.clone(),
        tenants: tenants.clone(),
        wake: wake.clone(),
    };
    let poller_task = tokio::spawn(poller.run(stop_rx.clone()));

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
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = http_stop_rx.await;
            })
            .await
    });

    shutdown.await;
    tracing::info!("shutdown requested: readiness is 503, no new jobs are claimed");
    draining.store(true, Ordering::SeqCst);
    let _ = stop_tx.send(true);
    if let Err(e) = worker_task.await {
        tracing::error!(error = %e, "the worker stopped abnormally");
    }
    if let Err(e) = outbox_task.await {
        tracing::error!(error = %e, "the outbox stopped abnormally");
    }
    if let Err(e) = poller_task.await {
        tracing::error!(error = %e, "the grades poller stopped abnormally");
    }
    let _ = http_stop_tx.send(());
    server
        .await
        .context("the HTTP server task failed")?
        .context("the HTTP server failed")?;
    tracing::info!("stopped");
    Ok(())
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
