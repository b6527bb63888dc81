//! The grades poller: starts a grades pass for each tenant every
//! `[tenants.X.grades] poll_interval`, through the same admission as
//! `POST …/grades/sync`, so a pass still queued or running is never doubled.
//!
//! Time is cut into windows of one interval (aligned to the Unix epoch); a tick
//! starts a pass only when none was started in the current window. So several
//! replicas polling the same store start one pass per interval between them, and a
//! pass requested by hand counts for its window.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

use crate::config::CallbackKind;
use crate::store::{Admission, JobFilter, JobKind, JobQueue, StoreResult};
use crate::sync::grades::{self, Trigger};
use crate::tenant::Tenants;

/// Starts grades passes until shut down.
pub struct GradesPoller {
    pub store: Arc<dyn JobQueue>,
    pub tenants: Tenants,
    /// Signalled when a pass is admitted, so the worker starts it at once.
    pub wake: Arc<Notify>,
}

impl GradesPoller {
    /// One task per tenant with polling on, until `shutdown` turns true.
    /// With no tenant polling, it only waits for shutdown, so it never looks
    /// like a part that stopped on its own.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut tasks = JoinSet::new();
        for tenant in self.tenants.iter() {
            let interval = tenant.config.grades.poll_interval;
            // Without a callback a pass has nowhere to write (the config warns).
            if interval.is_zero() || tenant.config.callback.kind == CallbackKind::None {
                continue;
            }
            tracing::info!(tenant = %tenant.name, interval = %humantime::format_duration(interval), "polling grades");
            tasks.spawn(poll(
                self.store.clone(),
                self.wake.clone(),
                tenant.name.clone(),
                interval,
                shutdown.clone(),
            ));
        }
        while let Some(done) = tasks.join_next().await {
            if let Err(e) = done {
                tracing::error!(error = %e, "a grades poller stopped abnormally");
            }
        }
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                return;
            }
        }
    }
}

async fn poll(
    store: Arc<dyn JobQueue>,
    wake: Arc<Notify>,
    tenant: String,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval(interval);
    // After a stall, one pass, not a burst of the ticks missed.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            changed = shutdown.changed() => if changed.is_err() { return },
        }
        if *shutdown.borrow() {
            return;
        }
        match tick(&*store, &tenant, interval, Utc::now()).await {
            Ok(Some(Admission::Created(job) | Admission::Requeued(job))) => {
                wake.notify_one();
                tracing::debug!(%tenant, job_id = %job.id, "grades pass started");
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(%tenant, error = %e, "could not start a grades pass; will try at the next tick")
            }
        }
    }
}

/// Admits a pass for `tenant` unless one was started in the window `now` falls in;
/// `None` when none was due.
pub async fn tick(
    store: &dyn JobQueue,
    tenant: &str,
    interval: Duration,
    now: DateTime<Utc>,
) -> StoreResult<Option<Admission>> {
    let newest = store
        .jobs(&JobFilter {
            tenant: Some(tenant.to_string()),
            kind: Some(JobKind::GradesSync),
            limit: 1,
            ..JobFilter::default()
        })
        .await?;
    if !due(newest.first().map(|j| j.created_at), now, interval) {
        return Ok(None);
    }
    let job = grades::job(tenant, Trigger::Schedule);
    store.admit(job, true, now).await.map(Some)
}

/// True when the newest pass (its creation time) began before the current window.
fn due(newest: Option<DateTime<Utc>>, now: DateTime<Utc>, interval: Duration) -> bool {
    newest.is_none_or(|created| created < window_start(now, interval))
}

/// The start of the interval-long window, aligned to the Unix epoch, holding `now`.
fn window_start(now: DateTime<Utc>, interval: Duration) -> DateTime<Utc> {
    let step = i64::try_from(interval.as_millis())
        .unwrap_or(i64::MAX)
        .max(1);
    let ms = now.timestamp_millis();
    DateTime::from_timestamp_millis(ms - ms.rem_euclid(step)).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn windows_are_aligned_to_the_interval() {
        assert_eq!(
            window_start(at("2027-01-12T10:59:59Z"), HOUR),
            at("2027-01-12T10:00:00Z")
        );
        assert_eq!(
            window_start(at("2027-01-12T11:00:00Z"), HOUR),
            at("2027-01-12T11:00:00Z")
        );
        assert_eq!(
            window_start(at("2027-01-12T11:00:00.250Z"), Duration::from_millis(200)),
            at("2027-01-12T11:00:00.200Z")
        );
    }

    #[test]
    fn a_pass_is_due_once_per_window() {
        let now = at("2027-01-12T11:30:00Z");
        assert!(due(None, now, HOUR), "never ran");
        assert!(due(Some(at("2027-01-12T10:59:59Z")), now, HOUR));
        // Started this window (by a tick of another replica, or by hand): not again.
        assert!(!due(Some(at("2027-01-12T11:00:00Z")), now, HOUR));
        assert!(!due(Some(at("2027-01-12T11:29:00Z")), now, HOUR));
    }

    /// The clock is injected: a day of ticks runs in milliseconds.
    #[tokio::test]
    async fn a_tick_starts_one_pass_per_window_and_never_doubles_one_under_way() {
        use crate::store::{Finish, JobStatus};
        let store = crate::store::connect("sqlite::memory:").await.unwrap();
        let t0 = at("2027-01-12T10:00:10Z");
        let tick_at = |tenant: &'static str, t: DateTime<Utc>| {
            let store = store.clone();
            async move { tick(&*store, tenant, HOUR, t).await.unwrap() }
        };
        let Some(Admission::Created(first)) = tick_at("acme", t0).await else {
            panic!("the first tick starts a pass");
        };
        assert_eq!(first.event["trigger"], "schedule");
        let half_hour = chrono::Duration::minutes(30);
        assert!(
            tick_at("acme", t0 + half_hour).await.is_none(),
            "same window"
        );
        // The next window, while the pass is still queued: that pass, not another.
        let hour = chrono::Duration::hours(1);
        let Some(Admission::Existing(same)) = tick_at("acme", t0 + hour).await else {
            panic!("a queued pass is returned");
        };
        assert_eq!(same.id, first.id);
        let claimed = store
            .claim("acme", t0 + hour, Duration::from_secs(60), 1)
            .await
            .unwrap();
        assert_eq!(claimed[0].id, first.id);
        let done = Finish {
            status: JobStatus::Succeeded,
            next_attempt_at: None,
            error: None,
            outcome: None,
            calls: Vec::new(),
        };
        assert!(store.finish(first.id, 1, t0 + hour, done).await.unwrap());
        let Some(Admission::Created(next)) = tick_at("acme", t0 + hour * 2).await else {
            panic!("a finished pass is followed by a new one in the next window");
        };
        assert_ne!(next.id, first.id);
        // Tenants are polled independently.
        assert!(matches!(
            tick_at("globex", t0 + hour * 2).await,
            Some(Admission::Created(_))
        ));
    }

    #[test]
    fn ticks_one_interval_apart_each_start_a_pass() {
        // A poller that started at 10:59:59.9 ticks then and at 11:59:59.9: both due,
        // though less than one interval separates the second tick from the first pass.
        let first = at("2027-01-12T10:59:59.900Z");
        assert!(due(None, first, HOUR));
        assert!(due(Some(first), first + HOUR, HOUR));
    }
}
