//! The claim loops, side by side: the job [`worker`], the write-back
//! [`outbox`] runner and the [`grades`] poller; beside them the [`retention`]
//! pruner.
//!
//! The worker and the outbox runner share one loop, [`claim_loop`]: claim what
//! is due into the free slots, run each item in its own task, sleep until woken,
//! the poll interval passes or shutdown begins, and on shutdown let the running
//! items finish (bounded). The poller only admits jobs on a timer; it shares the
//! shutdown signal.

pub mod grades;
pub mod outbox;
pub mod retention;
pub mod worker;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;

use crate::store::StoreResult;

/// Something [`claim_loop`] claims and runs.
#[async_trait]
pub(crate) trait Claimer: Send + Sync + 'static {
    /// One claimed item.
    type Item: Send + 'static;
    /// Claims up to `limit` items that are due now.
    async fn claim(&self, limit: u32) -> StoreResult<Vec<Self::Item>>;
    /// Runs one claimed item to its end and records the result.
    async fn run(self: Arc<Self>, item: Self::Item);
}

/// How one claim loop behaves.
#[derive(Debug, Clone)]
pub(crate) struct LoopSettings {
    /// For logs: "worker", "outbox".
    pub name: &'static str,
    /// Items running at once.
    pub slots: usize,
    /// How often to look for due items when nothing wakes the loop.
    pub poll_interval: Duration,
    /// How long shutdown waits for running items.
    pub drain_timeout: Duration,
}

/// The longest pause after store errors, in poll intervals.
const MAX_ERROR_BACKOFF: u32 = 16;

/// Claims and runs items until `shutdown` turns true, then lets running items
/// finish (up to `drain_timeout`); items abandoned then run again when their
/// lease expires. Store errors are logged and retried with a growing pause,
/// so a database that went away is not hammered.
pub(crate) async fn claim_loop<C: Claimer>(
    claimer: Arc<C>,
    settings: LoopSettings,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    let name = settings.name;
    let slots = Arc::new(Semaphore::new(settings.slots.max(1)));
    let mut running = JoinSet::new();
    let mut errors: u32 = 0;
    while !*shutdown.borrow() {
        let free = slots.available_permits();
        let mut more_waiting = false;
        if free > 0 {
            match claimer.claim(u32::try_from(free).unwrap_or(u32::MAX)).await {
                Ok(items) => {
                    errors = 0;
                    more_waiting = items.len() == free;
                    for item in items {
                        // Never more items than free slots were claimed; should a
                        // permit be missing anyway, the item still runs.
                        let permit = slots.clone().try_acquire_owned().ok();
                        let claimer = claimer.clone();
                        running.spawn(async move {
                            claimer.run(item).await;
                            drop(permit);
                        });
                    }
                }
                Err(e) => {
                    errors = (errors + 1).min(MAX_ERROR_BACKOFF);
                    tracing::warn!(loop_name = name, error = %e, "could not claim; will try again");
                }
            }
        }
        while let Some(done) = running.try_join_next() {
            report_panic(name, done);
        }
        if more_waiting && slots.available_permits() > 0 {
            continue;
        }
        let pause = settings.poll_interval * errors.max(1);
        tokio::select! {
            _ = wake.notified(), if errors == 0 => {}
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.changed() => {}
            Some(done) = running.join_next(), if !running.is_empty() => report_panic(name, done),
        }
    }
    let in_flight = running.len();
    if in_flight > 0 {
        tracing::info!(
            loop_name = name,
            in_flight,
            "shutting down: waiting for running work"
        );
    }
    let drain = async {
        while let Some(done) = running.join_next().await {
            report_panic(name, done);
        }
    };
    if tokio::time::timeout(settings.drain_timeout, drain)
        .await
        .is_err()
    {
        tracing::warn!(
            loop_name = name,
            abandoned = running.len(),
            "shutdown timeout: abandoning running work; it runs again when its lease expires"
        );
        running.abort_all();
    }
}

fn report_panic(name: &str, done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        if e.is_panic() {
            tracing::error!(loop_name = name, error = %e, "a task panicked; its item runs again when its lease expires");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

    /// A store that fails until told otherwise, counting the claims it saw.
    #[derive(Default)]
    struct Flaky {
        down: AtomicBool,
        claims: AtomicU32,
        served: AtomicU32,
    }

    #[async_trait]
    impl Claimer for Flaky {
        type Item = ();
        async fn claim(&self, _: u32) -> StoreResult<Vec<()>> {
            self.claims.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                return Err(crate::store::StoreError::Unavailable("gone".into()));
            }
            // One item, once, to show work resumes.
            Ok(if self.served.fetch_add(1, Ordering::SeqCst) == 0 {
                vec![()]
            } else {
                Vec::new()
            })
        }
        async fn run(self: Arc<Self>, _: ()) {}
    }

    /// A store that went away is retried with a growing pause (up to
    /// MAX_ERROR_BACKOFF poll intervals), not hammered, and new work (wake-ups)
    /// does not cut the pause short; when it returns, claiming resumes by itself.
    #[tokio::test(start_paused = true)]
    async fn a_store_that_is_gone_is_retried_with_a_growing_pause() {
        let claimer = Arc::new(Flaky::default());
        claimer.down.store(true, Ordering::SeqCst);
        let wake = Arc::new(Notify::new());
        let (stop, shutdown) = watch::channel(false);
        let settings = LoopSettings {
            name: "test",
            slots: 4,
            poll_interval: Duration::from_millis(100),
            drain_timeout: Duration::from_secs(1),
        };
        let task = tokio::spawn(claim_loop(
            claimer.clone(),
            settings,
            wake.clone(),
            shutdown,
        ));
        // A minute of outage, with events arriving all the time.
        for _ in 0..600 {
            wake.notify_one();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let claims = claimer.claims.load(Ordering::SeqCst);
        // Pauses of 0.1 s, 0.2 s … 1.6 s (13.6 s), then 1.6 s each: about 45
        // claims in 60 s; a loop that spun or woke on each event would make hundreds.
        assert!((40..=50).contains(&claims), "{claims} claims in a minute");

        claimer.down.store(false, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(1700)).await;
        assert!(
            claimer.served.load(Ordering::SeqCst) >= 1,
            "claiming resumed"
        );
        // Healthy again: woken by new work at once, not after the error pause.
        let before = claimer.claims.load(Ordering::SeqCst);
        wake.notify_one();
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(claimer.claims.load(Ordering::SeqCst) > before);
        stop.send(true).unwrap();
        task.await.unwrap();
    }
}
