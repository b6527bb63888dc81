//! The worker: claims due jobs (leases, per-key order), runs them through the
//! handler layer, records each attempt, schedules retries, drains on shutdown.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde::Serialize;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::config::WorkerConfig;
use crate::events::Event;
use crate::metrics::Metrics;
use crate::moodle::{CallRecord, ErrorClass};
use crate::retry::{Next, Pace, Policy};
use crate::store::{Finish, Job, JobStatus, Store};
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

/// Runs jobs until shut down.
pub struct Worker {
    pub store: Arc<dyn Store>,
    pub tenants: Tenants,
    pub policy: Policy,
    pub config: WorkerConfig,
    /// Signalled when a job is admitted, so it starts without waiting for the poll.
    pub wake: Arc<Notify>,
    pub metrics: Arc<Metrics>,
}

impl Worker {
    /// Claims and runs jobs until `shutdown` turns true, then lets running jobs
    /// finish (up to `worker.shutdown_timeout`).
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let slots = Arc::new(Semaphore::new(self.config.concurrency));
        let mut running = JoinSet::new();
        while !*shutdown.borrow() {
            let free = slots.available_permits() as u32;
            let mut more_waiting = false;
            if free > 0 {
                match self.store.claim(Utc::now(), self.config.lease, free).await {
                    Ok(jobs) => {
                        more_waiting = jobs.len() as u32 == free;
                        for job in jobs {
                            let permit = slots
                                .clone()
                                .try_acquire_owned()
                                .expect("claimed no more jobs than free slots");
                            let me = self.clone();
                            running.spawn(async move {
                                me.run_job(job).await;
                                drop(permit);
                            });
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "could not claim jobs; will try again"),
                }
            }
            while let Some(done) = running.try_join_next() {
                report_panic(done);
            }
            if more_waiting && slots.available_permits() > 0 {
                continue;
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.config.poll_interval) => {}
                _ = shutdown.changed() => {}
                Some(done) = running.join_next(), if !running.is_empty() => report_panic(done),
            }
        }
        let in_flight = running.len();
        if in_flight > 0 {
            tracing::info!(in_flight, "shutting down: waiting for running jobs");
        }
        let drain = async {
            while let Some(done) = running.join_next().await {
                report_panic(done);
            }
        };
        if tokio::time::timeout(self.config.shutdown_timeout, drain)
            .await
            .is_err()
        {
            tracing::warn!(
                abandoned = running.len(),
                "shutdown timeout: abandoning running jobs; they run again when their lease expires"
            );
            running.abort_all();
        }
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
            self.metrics.job_attempt(&job.kind, status, started.elapsed().as_secs_f64(), &finish.calls);
            match self.store.finish(job.id, job.attempts, Utc::now(), finish).await {
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
        let event = if job.kind == grades::KIND {
            None
        } else {
            match serde_json::from_value::<Event>(job.event.clone()) {
                Ok(e) => Some(e),
                Err(e) => {
                    return empty(SyncError {
                        class: ErrorClass::Defect,
                        message: format!("the stored event cannot be read: {e}"),
                        retry_after: None,
                    });
                }
            }
        };
        let session = tenant.moodle.session();
        let ctx = Context {
            tenant: &job.tenant,
            config: &tenant.config,
            moodle: &session,
            store: &*self.store,
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

fn report_panic(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        if e.is_panic() {
            tracing::error!(error = %e, "a job task panicked; the job runs again when its lease expires");
        }
    }
}
