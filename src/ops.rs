//! What an operator does, for the admin API and the console alike: reads limited
//! to the caller's tenants (anything else is "not found"), and the state changes
//! (retry, run now, bulk retry), each logged with who did it, never a token.

use chrono::Utc;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::access::Caller;
use crate::store::{Job, JobFilter, JobStatus, RetryResult, Store, StoreResult};

/// The job, if it exists and the caller sees its tenant.
pub async fn job(store: &dyn Store, caller: &Caller, id: Uuid) -> StoreResult<Option<Job>> {
    Ok(store.job(id).await?.filter(|j| caller.sees(&j.tenant)))
}

/// Jobs matching `filter` among those the caller sees, newest first. An
/// operator without a tenant filter gets its tenants' jobs merged by id (each
/// tenant read through the `(tenant, id)` index); a tenant it does not see
/// has no jobs.
pub async fn jobs(store: &dyn Store, caller: &Caller, filter: &JobFilter) -> StoreResult<Vec<Job>> {
    let Some(scope) = caller.scope() else {
        return store.jobs(filter).await;
    };
    if let Some(tenant) = &filter.tenant {
        if !scope.contains(tenant) {
            return Ok(Vec::new());
        }
        return store.jobs(filter).await;
    }
    let mut all = Vec::new();
    for tenant in scope {
        let one = JobFilter {
            tenant: Some(tenant.clone()),
            ..filter.clone()
        };
        all.extend(store.jobs(&one).await?);
    }
    all.sort_by_key(|j| std::cmp::Reverse(j.id));
    if filter.limit > 0 {
        all.truncate(filter.limit as usize);
    }
    Ok(all)
}

/// What [`retry`] did.
#[derive(Debug)]
pub enum Retried {
    /// Queued again.
    Requeued(Job),
    /// Not failed or dead: unchanged.
    NotRetryable(Job),
    /// No such job for this caller.
    NotFound,
}

/// Re-queues a failed or dead job the caller sees, wakes the worker, and logs who did it.
pub async fn retry(
    store: &dyn Store,
    wake: &Notify,
    caller: &Caller,
    id: Uuid,
) -> StoreResult<Retried> {
    if job(store, caller, id).await?.is_none() {
        return Ok(Retried::NotFound);
    }
    Ok(match store.retry(id, Utc::now()).await? {
        RetryResult::Requeued(job) => {
            tracing::info!(job_id = %id, tenant = %job.tenant, by = caller.name(), "job re-queued by an operator");
            wake.notify_one();
            Retried::Requeued(job)
        }
        RetryResult::NotRetryable(job) => Retried::NotRetryable(job),
        RetryResult::NotFound => Retried::NotFound,
    })
}

/// What [`run_now`] did.
#[derive(Debug)]
pub enum RunNow {
    /// Due now; the worker was woken.
    Due(Job),
    /// Not queued: unchanged.
    NotQueued(Job),
    /// No such job for this caller.
    NotFound,
}

/// Makes a queued job (e.g. one in back-off) due now, and logs who did it.
pub async fn run_now(
    store: &dyn Store,
    wake: &Notify,
    caller: &Caller,
    id: Uuid,
) -> StoreResult<RunNow> {
    let Some(found) = job(store, caller, id).await? else {
        return Ok(RunNow::NotFound);
    };
    if !store.run_now(id, Utc::now()).await? {
        return Ok(RunNow::NotQueued(store.job(id).await?.unwrap_or(found)));
    }
    tracing::info!(job_id = %id, tenant = %found.tenant, by = caller.name(), "queued job made due now by an operator");
    wake.notify_one();
    Ok(match store.job(id).await? {
        Some(job) => RunNow::Due(job),
        None => RunNow::NotFound,
    })
}

/// The jobs a bulk retry takes: every failed or dead job of a tenant,
/// optionally only of one kind and only with one exact error text.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub tenant: String,
    pub kind: Option<crate::store::JobKind>,
    pub error: Option<String>,
}

/// At most this many jobs are taken by one bulk retry (the page says so when
/// there are more; the next bulk retry takes the rest).
pub const BULK_MAX: usize = 1000;

/// The failed and dead jobs of a selection the caller sees, newest first, up to [`BULK_MAX`].
pub async fn selected(
    store: &dyn Store,
    caller: &Caller,
    selection: &Selection,
) -> StoreResult<Vec<Job>> {
    if !caller.sees(&selection.tenant) {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for status in [JobStatus::Failed, JobStatus::Dead] {
        let mut before = None;
        loop {
            let page = store
                .jobs(&JobFilter {
                    tenant: Some(selection.tenant.clone()),
                    status: Some(status),
                    kind: selection.kind,
                    reference: None,
                    before,
                    limit: 500,
                })
                .await?;
            let last = page.last().map(|j| j.id);
            let full = page.len() == 500;
            out.extend(page.into_iter().filter(|j| {
                selection
                    .error
                    .as_ref()
                    .is_none_or(|e| j.last_error.as_deref() == Some(e.as_str()))
            }));
            if !full || out.len() >= BULK_MAX {
                break;
            }
            before = last;
        }
    }
    out.sort_by_key(|j| std::cmp::Reverse(j.id));
    out.truncate(BULK_MAX);
    Ok(out)
}

/// The distinct errors of a tenant's failed and dead jobs, with how many jobs
/// have each, most frequent first (what a bulk retry can be narrowed to).
pub async fn error_groups(
    store: &dyn Store,
    caller: &Caller,
    tenant: &str,
) -> StoreResult<Vec<(String, usize)>> {
    let jobs = selected(
        store,
        caller,
        &Selection {
            tenant: tenant.to_owned(),
            ..Selection::default()
        },
    )
    .await?;
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    for job in &jobs {
        *counts
            .entry(job.last_error.clone().unwrap_or_default())
            .or_default() += 1;
    }
    let mut groups: Vec<(String, usize)> = counts.into_iter().collect();
    groups.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(groups)
}

/// Retries every job of a selection; logs one line with who did it and how many.
pub async fn bulk_retry(
    store: &dyn Store,
    wake: &Notify,
    caller: &Caller,
    selection: &Selection,
) -> StoreResult<usize> {
    let jobs = selected(store, caller, selection).await?;
    let now = Utc::now();
    let mut requeued = 0;
    for job in &jobs {
        if let RetryResult::Requeued(_) = store.retry(job.id, now).await? {
            requeued += 1;
        }
    }
    if requeued > 0 {
        wake.notify_one();
    }
    tracing::info!(
        tenant = %selection.tenant,
        kind = selection.kind.map(|k| k.as_str()).unwrap_or("any"),
        error_filter = selection.error.is_some(),
        requeued,
        by = caller.name(),
        "bulk retry by an operator"
    );
    Ok(requeued)
}
