//! The job worker: claims due jobs (leases, per-key order), runs them through
//! the handler layer, records each attempt and schedules retries.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use serde::Serialize;
use tokio::sync::{Notify, watch};
use tracing::Instrument;

use super::{Claimer, LoopSettings, claim_loop};

use crate::config::WorkerConfig;
use crate::events::Event;
use crate::metrics::Metrics;
use crate::moodle::{CallRecord, ErrorClass};
use crate::retry::{Next, Pace, Policy};
use crate::store::{Finish, Job, JobKind, JobStatus, Store, StoreResult};
use crate::sync::{self, Context, Disposition, Outcome, SyncError, grades};
use crate::tenant::Tenants;

/// What a job's `outcome` holds: the handler's outcome, the calls, the error.
#[derive(Debug, Serialize)]
struct JobOutcome {
    #[serde(flatten)]
    outcome: Outcome,
    calls: Vec<CallRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Jobs of one tenant that may run at once, per Moodle call it may have in
/// flight: enough waiting jobs for batches of 50 to fill (a job slot is a
/// cheap task; `max_concurrency` bounds the calls, not the jobs).
const JOBS_PER_CALL: usize = 128;

/// Runs jobs until shut down.
pub struct Worker {
    pub store: Arc<dyn Store>,
    pub tenants: Tenants,
    pub policy: Policy,
    pub config: WorkerConfig,
    /// Signalled when a job is admitted, so it starts without waiting for the poll.
    pub wake: Arc<Notify>,
    /// Signalled when a job finished, so its write-backs go out without waiting.
    pub writebacks: Arc<Notify>,
    pub metrics: Arc<Metrics>,
    /// Each tenant's jobs in flight, and whose turn it is to claim first.
    pub shares: Shares,
}

/// The worker's slots, shared fairly: each tenant may have at most its own
/// share of jobs in flight, and tenants take turns to claim first, so one
/// tenant's backlog never queues ahead of another tenant's job.
#[derive(Default)]
pub struct Shares {
    in_flight: Mutex<BTreeMap<String, usize>>,
    turn: AtomicUsize,
}

impl Shares {
    fn running(&self, tenant: &str) -> usize {
        let map = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.get(tenant).copied().unwrap_or(0)
    }

    fn add(&self, tenant: &str, n: usize) {
        let mut map = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *map.entry(tenant.to_string()).or_default() += n;
    }

    fn done(&self, tenant: &str) {
        let mut map = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = map.get_mut(tenant) {
            *n = n.saturating_sub(1);
        }
    }
}

impl Worker {
    /// Claims and runs jobs until `shutdown` turns true, then lets running jobs
    /// finish (up to `worker.shutdown_timeout`).
    pub async fn run(self: Arc<Self>, shutdown: watch::Receiver<bool>) {
        let settings = LoopSettings {
            name: "worker",
            slots: self.config.concurrency,
            poll_interval: self.config.poll_interval,
            drain_timeout: self.config.shutdown_timeout,
        };
        let wake = self.wake.clone();
        claim_loop(self, settings, wake, shutdown).await;
    }

    async fn run_job(&self, job: Job) {
        let span = tracing::info_span!(
            "job",
            tenant = %job.tenant,
            job_id = %job.id,
            kind = %job.kind,
            attempt = job.attempts
        );
        async {
            let heartbeat = self.keep_lease(&job);
            let started = std::time::Instant::now();
            let (outcome, result) = self.execute(&job).await;
            heartbeat.abort();
            let finish = self.decide(&job, outcome, result);
            let status = finish.status;
            self.metrics.job_attempt(job.kind.as_str(), status, started.elapsed().as_secs_f64(), &finish.calls);
            let finished = self.store.finish(job.id, job.attempts, Utc::now(), finish).await;
            // A finished job may have queued write-backs: deliver them now.
            self.writebacks.notify_one();
            match finished {
                Ok(true) => tracing::debug!(status = status.as_str(), ms = started.elapsed().as_millis() as u64, "job attempt finished"),
                Ok(false) => tracing::warn!("the job's lease was lost while it ran; another worker took it over"),
                Err(e) => tracing::warn!(error = %e, "could not record the attempt; the job runs again after its lease expires"),
            }
        }
        .instrument(span)
        .await
    }

    /// Extends the lease while the job runs, so a slow Moodle does not hand
    /// the job to a second worker.
    fn keep_lease(&self, job: &Job) -> tokio::task::JoinHandle<()> {
        let store = self.store.clone();
        let lease = self.config.lease;
        let (id, attempt) = (job.id, job.attempts);
        tokio::spawn(async move {
            let every = (lease / 3).max(Duration::from_millis(200));
            loop {
                tokio::time::sleep(every).await;
                let until = Utc::now() + chrono::Duration::from_std(lease).unwrap_or_default();
                if let Ok(false) = store.extend_lease(id, attempt, until).await {
                    return;
                }
            }
        })
    }

    /// Runs the handler for one job.
    async fn execute(&self, job: &Job) -> (JobOutcome, Result<Disposition, SyncError>) {
        let empty = |error: SyncError| {
            (
                JobOutcome {
                    outcome: Outcome::default(),
                    calls: Vec::new(),
                    error: None,
                },
                Err(error),
            )
        };
        let Some(tenant) = self.tenants.get(&job.tenant) else {
            return empty(SyncError::configuration(format!(
                "tenant {} is not configured (any more): add [tenants.{}] back to the configuration",
                job.tenant, job.tenant
            )));
        };
        // A grades pass has no event to read; everything else is a webhook event.
        let event = match job.kind {
            JobKind::GradesSync => None,
            JobKind::Event(_) => match serde_json::from_value::<Event>(job.event.clone()) {
                Ok(e) => Some(e),
                Err(e) => {
                    return empty(SyncError {
                        class: ErrorClass::Defect,
                        message: format!("the stored event cannot be read: {e}"),
                        retry_after: None,
                    });
                }
            },
        };
        let session = tenant.moodle.session();
        let ctx = Context {
            tenant: &job.tenant,
            config: &tenant.config,
            moodle: &session,
            links: &*self.store,
            outbox: &*self.store,
            job_id: Some(job.id),
            now: Utc::now(),
        };
        let (outcome, result) = match &event {
            Some(event) => sync::handle(&ctx, event).await,
            None => grades::sync(&ctx).await,
        };
        let job_outcome = JobOutcome {
            outcome,
            calls: session.calls(),
            error: result.as_ref().err().map(|e| e.message.clone()),
        };
        (job_outcome, result)
    }

    /// The job's next status from the attempt's result and the retry schedule.
    fn decide(
        &self,
        job: &Job,
        outcome: JobOutcome,
        result: Result<Disposition, SyncError>,
    ) -> Finish {
        let now = Utc::now();
        let calls = outcome.calls.clone();
        let outcome_json = serde_json::to_value(&outcome).ok();
        let (status, next_attempt_at, error) = match result {
            Ok(Disposition::Succeeded) => (JobStatus::Succeeded, None, None),
            Ok(Disposition::Skipped) => (JobStatus::Skipped, None, None),
            Err(e) => {
                let pace = match e.class {
                    ErrorClass::Data | ErrorClass::Conflict => None,
                    ErrorClass::Transient => Some(Pace::Normal),
                    ErrorClass::Configuration | ErrorClass::Defect => Some(Pace::Slow),
                };
                let next = pace.map(|p| {
                    self.policy
                        .next(job.attempts, p, e.retry_after, job.retry_since, now)
                });
                match next {
                    None => {
                        tracing::error!(error = %e.message, "job failed: fix the data, then POST /v1/jobs/{}/retry", job.id);
                        (JobStatus::Failed, None, Some(e.message))
                    }
                    Some(Next::RetryAt(at)) => {
                        tracing::warn!(error = %e.message, retry_at = %at, "job attempt failed; will retry");
                        (JobStatus::Queued, Some(at), Some(e.message))
                    }
                    Some(Next::GiveUp) => {
                        tracing::error!(error = %e.message, "job is dead: retries went on past retry.max_age");
                        (JobStatus::Dead, None, Some(e.message))
                    }
                }
            }
        };
        Finish {
            status,
            next_attempt_at,
            error,
            outcome: outcome_json,
            calls,
        }
    }
}

#[async_trait]
impl Claimer for Worker {
    type Item = Job;

    /// One round over the tenants, starting with the next one in turn: each
    /// claims up to its free share. A tenant with a few free slots among many
    /// busy ones waits for more to free up (fewer, fuller claims), unless it
    /// has nothing running at all.
    async fn claim(&self, limit: u32) -> StoreResult<Vec<Job>> {
        let tenants: Vec<_> = self.tenants.iter().collect();
        if tenants.is_empty() {
            return Ok(Vec::new());
        }
        let first = self.shares.turn.fetch_add(1, Ordering::Relaxed) % tenants.len();
        let mut left = limit as usize;
        let mut claimed = Vec::new();
        for tenant in tenants.iter().cycle().skip(first).take(tenants.len()) {
            if left == 0 {
                break;
            }
            let share =
                (tenant.config.max_concurrency * JOBS_PER_CALL).min(self.config.concurrency);
            let running = self.shares.running(&tenant.name);
            let free = share.saturating_sub(running);
            let refill = (share / 16).max(1);
            if free == 0 || (free < refill && running > 0) {
                continue;
            }
            let take = free.min(left);
            let jobs = self
                .store
                .claim(&tenant.name, Utc::now(), self.config.lease, take as u32)
                .await?;
            self.shares.add(&tenant.name, jobs.len());
            left -= jobs.len();
            claimed.extend(jobs);
        }
        Ok(claimed)
    }

    async fn run(self: Arc<Self>, job: Job) {
        let tenant = job.tenant.clone();
        self.run_job(job).await;
        self.shares.done(&tenant);
    }
}
