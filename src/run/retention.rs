//! The pruner: every `retention.interval`, one pass over the finished history
//! in small steps (see `store/retention.rs` for what may go and what never
//! does), then free pages back to the file system where the store can.
//!
//! Each step is one short write transaction of at most `retention.batch` rows,
//! followed by `retention.pause`, so on SQLite's single writer connection an
//! admission or a claim waits at most one step. Several replicas may prune the
//! same PostgreSQL store at once: they skip each other's locked rows.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;

use crate::config::RetentionConfig;
use crate::metrics::Metrics;
use crate::store::{Cutoffs, PruneCursor, Pruned, Retention, Space, StoreResult};

/// The first pass starts this soon after start-up at the latest (a service
/// restarted more often than `interval` still prunes).
const FIRST_PASS_AFTER: Duration = Duration::from_secs(30);

/// SQLite pages given back per step (1 MiB at the default page size).
const RELEASE_PAGES: u32 = 256;

/// Prunes until shut down.
pub struct Pruner {
    pub store: Arc<dyn Retention>,
    pub config: RetentionConfig,
    pub metrics: Arc<Metrics>,
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassReport {
    pub pruned: Pruned,
    /// SQLite pages given back to the file system.
    pub released_pages: u64,
    /// Set when the SQLite file cannot shrink (created before incremental
    /// auto-vacuum): its free pages, reused by new rows.
    pub not_shrinkable_free_pages: Option<u64>,
}

impl Pruner {
    /// Runs a pass every `retention.interval` until `shutdown` turns true (a
    /// pass under way stops between two steps). With pruning off it only waits
    /// for shutdown, so it never looks like a part that stopped on its own.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        if !self.config.enabled() {
            tracing::info!("retention.interval is 0s: finished history is kept forever");
            wait_for(&mut shutdown).await;
            return;
        }
        // Every table shows in /metrics from the start, at 0.
        for (table, _) in Pruned::default().by_table() {
            self.metrics.pruned(table, 0);
        }
        let mut delay = self.config.interval.min(FIRST_PASS_AFTER);
        let mut warned = false;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = wait_for(&mut shutdown) => return,
            }
            delay = self.config.interval;
            match self.pass(&mut shutdown).await {
                Ok(report) => {
                    if report.pruned.total() > 0 || report.released_pages > 0 {
                        let p = report.pruned;
                        tracing::info!(
                            jobs = p.jobs,
                            attempts = p.attempts,
                            idempotency = p.idempotency,
                            writebacks = p.writebacks,
                            released_pages = report.released_pages,
                            "retention: pruned finished history"
                        );
                    }
                    if let (Some(free), false) = (report.not_shrinkable_free_pages, warned) {
                        warned = true;
                        tracing::info!(
                            free_pages = free,
                            "retention: this SQLite file was created without incremental \
                             auto-vacuum: freed pages are reused, but the file does not shrink \
                             (README, Retention, says how to convert it once)"
                        );
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "retention pass failed; the next pass tries again")
                }
            }
        }
    }

    /// One pass: every step until the history is walked (or shutdown begins),
    /// then free space back.
    pub async fn pass(&self, shutdown: &mut watch::Receiver<bool>) -> StoreResult<PassReport> {
        let cutoffs = Cutoffs::at(Utc::now(), &self.config);
        let mut report = PassReport::default();
        let mut cursor = PruneCursor::default();
        loop {
            if *shutdown.borrow() {
                return Ok(report);
            }
            let step = self
                .store
                .prune(&cutoffs, cursor, self.config.batch)
                .await?;
            for (table, rows) in step.pruned.by_table() {
                if rows > 0 {
                    self.metrics.pruned(table, rows);
                }
            }
            report.pruned.add(&step.pruned);
            let Some(next) = step.next else { break };
            cursor = next;
            if step.pruned.total() > 0 {
                // Leave the writer to intake and claiming for a moment.
                self.pause(shutdown).await;
            } else {
                tokio::task::yield_now().await;
            }
        }
        loop {
            if *shutdown.borrow() {
                break;
            }
            match self.store.release_space(RELEASE_PAGES).await? {
                Space::Released { released, free } => {
                    report.released_pages += released;
                    if released == 0 || free == 0 {
                        break;
                    }
                    self.pause(shutdown).await;
                }
                Space::NotShrinkable { free } => {
                    report.not_shrinkable_free_pages = Some(free);
                    break;
                }
                Space::Managed => break,
            }
        }
        Ok(report)
    }

    async fn pause(&self, shutdown: &mut watch::Receiver<bool>) {
        tokio::select! {
            _ = tokio::time::sleep(self.config.pause) => {}
            _ = wait_for(shutdown) => {}
        }
    }
}

/// Completes once `shutdown` is true (or its sender is gone).
async fn wait_for(shutdown: &mut watch::Receiver<bool>) {
    while !*shutdown.borrow() {
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Admission, Finish, JobKind, JobStatus, NewJob};
    use serde_json::json;
    use uuid::Uuid;

    fn course_saved(course: &str, label: &str) -> NewJob {
        NewJob {
            id: Uuid::now_v7(),
            tenant: "acme".into(),
            kind: JobKind::parse("course-saved").unwrap(),
            event: json!({"course": {"id": course, "label": label}}),
            keys: vec![format!("acme:course:{course}")],
            idempotency_key: None,
            entity: format!("course-saved:{course}"),
            body_hash: label.into(),
        }
    }

    /// A pass removes what the defaults allow and counts it in `/metrics`.
    #[tokio::test]
    async fn a_pass_prunes_and_counts_rows_by_table() {
        let store = crate::store::connect("sqlite::memory:").await.unwrap();
        let long_ago = Utc::now() - chrono::TimeDelta::days(40);
        for label in ["A", "B"] {
            let Admission::Created(job) = store
                .admit(course_saved("C1", label), false, long_ago)
                .await
                .unwrap()
            else {
                panic!("new job");
            };
            let claimed = store
                .claim("acme", long_ago, Duration::from_secs(60), 1)
                .await
                .unwrap();
            assert_eq!(claimed[0].id, job.id);
            let done = Finish {
                status: JobStatus::Succeeded,
                next_attempt_at: None,
                error: None,
                outcome: None,
                calls: Vec::new(),
            };
            assert!(store.finish(job.id, 1, long_ago, done).await.unwrap());
        }
        let metrics = Arc::new(Metrics::new());
        let pruner = Pruner {
            store: store.clone(),
            config: RetentionConfig::default(),
            metrics: metrics.clone(),
        };
        let (_stop, mut shutdown) = watch::channel(false);
        let report = pruner.pass(&mut shutdown).await.unwrap();
        assert_eq!((report.pruned.jobs, report.pruned.attempts), (1, 1));
        let text = metrics.render(&[], Utc::now());
        assert!(
            text.contains("apit_pruned_rows_total{table=\"jobs\"} 1"),
            "{text}"
        );
        assert!(text.contains("apit_pruned_rows_total{table=\"attempts\"} 1"));
        // Only the newest event of C1 is left.
        let left = store.jobs(&Default::default()).await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].event["course"]["label"], "B");
    }
}
