//! The outbox runner: delivers queued write-backs, each with its own retries,
//! so a callback outage never repeats Moodle work.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use tokio::sync::{Notify, watch};
use tracing::Instrument;

use super::{Claimer, LoopSettings, claim_loop};
use crate::metrics::Metrics;
use crate::retry::{Next, Policy};
use crate::store::{Outbox, Store, StoreResult, Writeback, WritebackFinish, WritebackStatus};
use crate::tenant::Tenants;

/// Write-backs delivered at once.
const SLOTS: usize = 16;

/// Delivers write-backs until shut down.
pub struct OutboxRunner {
    pub store: Arc<dyn Store>,
    pub tenants: Tenants,
    pub policy: Policy,
    pub lease: Duration,
    pub poll_interval: Duration,
    /// How long shutdown waits for deliveries in flight.
    pub drain_timeout: Duration,
    /// Signalled when a job finished (it may have queued write-backs).
    pub wake: Arc<Notify>,
    pub metrics: Arc<Metrics>,
}

impl OutboxRunner {
    /// Runs until `shutdown` turns true; deliveries in flight are finished first.
    pub async fn run(self: Arc<Self>, shutdown: watch::Receiver<bool>) {
        let settings = LoopSettings {
            name: "outbox",
            slots: SLOTS,
            poll_interval: self.poll_interval,
            drain_timeout: self.drain_timeout,
        };
        let wake = self.wake.clone();
        claim_loop(self, settings, wake, shutdown).await;
    }
}

#[async_trait]
impl Claimer for OutboxRunner {
    type Item = Writeback;

    async fn claim(&self, limit: u32) -> StoreResult<Vec<Writeback>> {
        self.store
            .claim_writebacks(Utc::now(), self.lease, limit)
            .await
    }

    async fn run(self: Arc<Self>, wb: Writeback) {
        let span = tracing::info_span!(
            "writeback",
            tenant = %wb.tenant,
            entity = wb.entity.as_str(),
            apit_id = %wb.apit_id,
            attempt = wb.attempts
        );
        deliver(&*self.store, &self.tenants, &self.policy, &self.metrics, wb)
            .instrument(span)
            .await;
    }
}

async fn deliver(
    store: &dyn Outbox,
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
    metrics.callback(wb.entity.as_str(), outcome, started.elapsed().as_secs_f64());
    if let Err(e) = store
        .finish_writeback(wb.id, wb.attempts, now, finish)
        .await
    {
        tracing::warn!(error = %e, "could not record the write-back result; it will be delivered again");
    }
}
