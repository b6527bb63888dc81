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

use crate::access::Access;
use crate::config::{Config, LogFormat};
use crate::console::Console;
use crate::http::{self, AppState};
use crate::metrics::Metrics;
use crate::retry::Policy;
use crate::run::grades::GradesPoller;
use crate::run::outbox::OutboxRunner;
use crate::run::retention::Pruner;
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
    let metrics = Arc::new(Metrics::for_tenants(config.tenants.keys().cloned()));

    let worker = Arc::new(Worker {
        store: store.clone(),
        tenants: tenants.clone(),
        policy: policy.clone(),
        config: config.worker.clone(),
        wake: wake.clone(),
        writebacks: writebacks.clone(),
        metrics: metrics.clone(),
        shares: Default::default(),
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
    let pruner = Pruner {
        store: store.clone(),
        config: config.retention.clone(),
        metrics: metrics.clone(),
    };
    let state = AppState {
        store,
        tenants,
        access: Access::from_config(&config),
        draining: draining.clone(),
        wake,
        metrics,
        console: Arc::new(Console::new(&config.console)),
        edge: config.server.clone(),
    };
    let app = http::router(state);
    let edge = config.server.clone();
    let addr = listener.local_addr()?;
    tracing::info!(%addr, tenants = config.tenants.len(), "apit-moodle-sync listening");

    // The HTTP server keeps answering while jobs drain, so load balancers see 503 on /readyz.
    let (http_stop_tx, http_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut parts = JoinSet::new();
    parts.spawn(part("worker", worker.run(stop_rx.clone())));
    parts.spawn(part("outbox", outbox.run(stop_rx.clone())));
    parts.spawn(part("pruner", pruner.run(stop_rx.clone())));
    parts.spawn(part("grades poller", poller.run(stop_rx)));
    let mut server = tokio::spawn(async move {
        http::serve(listener, app, edge, async {
            let _ = http_stop_rx.await;
        })
        .await
    });

    // Whichever comes first: the shutdown signal, or a part that stopped by itself.
    let stop = first_stop(shutdown, &mut parts, &mut server).await;
    let server_done = matches!(stop, Stop::Server(_));
    let failure = match stop {
        Stop::Requested => None,
        Stop::Part(why) | Stop::Server(why) => Some(why),
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

/// Why the service began to stop.
#[derive(Debug, PartialEq, Eq)]
enum Stop {
    /// The shutdown signal.
    Requested,
    /// A worker, outbox or poller task ended on its own (its text says how).
    Part(String),
    /// The HTTP server ended on its own.
    Server(String),
}

/// Waits for the shutdown signal or for the first part to end, whichever comes first.
async fn first_stop(
    shutdown: impl Future<Output = ()>,
    parts: &mut JoinSet<&'static str>,
    server: &mut tokio::task::JoinHandle<std::io::Result<()>>,
) -> Stop {
    tokio::select! {
        _ = shutdown => Stop::Requested,
        Some(done) = parts.join_next() => Stop::Part(match done {
            Ok(name) => format!("the {name} stopped"),
            Err(e) if e.is_panic() => format!("a part panicked: {e}"),
            Err(e) => format!("a part was cancelled: {e}"),
        }),
        done = server => Stop::Server(match done {
            Ok(Ok(())) => "the HTTP server stopped".to_string(),
            Ok(Err(e)) => format!("the HTTP server failed: {e}"),
            Err(e) => format!("the HTTP server task failed: {e}"),
        }),
    }
}

/// A long-running part that names itself when it ends.
async fn part(name: &'static str, run: impl Future<Output = ()>) -> &'static str {
    run.await;
    name
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::pending;

    fn idle_server() -> tokio::task::JoinHandle<std::io::Result<()>> {
        tokio::spawn(pending())
    }

    #[tokio::test]
    async fn a_part_that_ends_on_its_own_is_named() {
        let mut parts = JoinSet::new();
        parts.spawn(part("worker", pending()));
        parts.spawn(part("outbox", async {}));
        let stop = first_stop(pending(), &mut parts, &mut idle_server()).await;
        assert_eq!(stop, Stop::Part("the outbox stopped".into()));
    }

    #[tokio::test]
    async fn a_part_that_panics_is_noticed() {
        let mut parts = JoinSet::new();
        parts.spawn(part("worker", pending()));
        parts.spawn(part("grades poller", async { panic!("boom") }));
        let Stop::Part(why) = first_stop(pending(), &mut parts, &mut idle_server()).await else {
            panic!("the panic was not noticed");
        };
        assert!(why.contains("panicked"), "{why}");
    }

    #[tokio::test]
    async fn a_server_that_fails_is_noticed() {
        let mut parts = JoinSet::new();
        parts.spawn(part("worker", pending()));
        let mut server = tokio::spawn(async { Err(std::io::Error::other("accept failed")) });
        let stop = first_stop(pending(), &mut parts, &mut server).await;
        assert_eq!(
            stop,
            Stop::Server("the HTTP server failed: accept failed".into())
        );
    }

    #[tokio::test]
    async fn the_signal_is_a_requested_stop() {
        let mut parts = JoinSet::new();
        parts.spawn(part("worker", pending()));
        let stop = first_stop(async {}, &mut parts, &mut idle_server()).await;
        assert_eq!(stop, Stop::Requested);
    }
}
