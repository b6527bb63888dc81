//! The outbox loop: delivers queued write-backs, each with its own retries, so
//! a callback outage never repeats Moodle work.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::metrics::Metrics;
use crate::retry::{Next, Policy};
use crate::store::{Store, Writeback, WritebackFinish, WritebackStatus};
use crate::tenant::Tenants;

/// Write-backs claimed per round.
const BATCH: u32 = 16;

/// Delivers write-backs until shut down.
pub struct Outbox {
    pub store: Arc<dyn Store>,
    pub tenants: Tenants,
    pub policy: Policy,
    pub lease: Duration,
    pub poll_interval: Duration,
    pub metrics: Arc<Metrics>,
}

impl Outbox {
    /// Runs until `shutdown` turns true; deliveries in flight are finished first.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            let claimed = match self
                .store
                .claim_writebacks(Utc::now(), self.lease, BATCH)
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "could not claim write-backs; will try again");
                    Vec::new()
                }
            };
            let full = claimed.len() as u32 == BATCH;
            let mut deliveries = JoinSet::new();
            for wb in claimed {
                let store = self.store.clone();
                let tenants = self.tenants.clone();
                let policy = self.policy.clone();
                let metrics = self.metrics.clone();
                let span = tracing::info_span!("writeback", tenant = %wb.tenant, entity = %wb.entity, apit_id = %wb.apit_id, attempt = wb.attempts);
                deliveries.spawn(
                    async move { deliver(&*store, &tenants, &policy, &metrics, wb).await }
                        .instrument(span),
                );
            }
            while deliveries.join_next().await.is_some() {}
            if full {
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(self.poll_interval) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}

async fn deliver(
    store: &dyn Store,
    tenants: &Tenants,
    policy: &Policy,
    metrics: &Metrics,
    wb: Writeback,
) {
    let started = std::time::Instant::now();
    let result = match tenants.get(&wb.tenant).and_then(|t| t.callback.clone()) {
        Some(callback) => callback
            .deliver(&wb)
            .await
            .map_err(|e| (e.pace(), e.retry_after(), e.to_string())),
        None => Err((
            Some(crate::retry::Pace::Slow),
            None,
            format!("tenant {} has no callback configured any more", wb.tenant),
        )),
    };
    let now = Utc::now();
    let finish = match result {
        Ok(()) => {
            tracing::info!("write-back delivered");
            WritebackFinish {
                status: WritebackStatus::Delivered,
                next_attempt_at: None,
                error: None,
            }
        }
        Err((pace, retry_after, error)) => {
            let next = pace.map(|p| policy.next(wb.attempts, p, retry_after, wb.retry_since, now));
            match next {
                Some(Next::RetryAt(at)) => {
                    tracing::warn!(%error, retry_at = %at, "write-back failed; will retry");
                    WritebackFinish {
                        status: WritebackStatus::Pending,
                        next_attempt_at: Some(at),
                        error: Some(error),
                    }
                }
                _ => {
                    tracing::error!(%error, "write-back failed for good (dead)");
                    WritebackFinish {
                        status: WritebackStatus::Dead,
                        next_attempt_at: None,
                        error: Some(error),
                    }
                }
            }
        }
    };
    let outcome = match finish.status {
        WritebackStatus::Delivered => "delivered",
        WritebackStatus::Pending => "retry",
        _ => "dead",
    };
    metrics.callback(&wb.entity, outcome, started.elapsed().as_secs_f64());
    if let Err(e) = store
        .finish_writeback(wb.id, wb.attempts, now, finish)
        .await
    {
        tracing::warn!(error = %e, "could not record the write-back result; it will be delivered again");
    }
}
