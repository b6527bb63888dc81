//! Retention: removing finished history in small steps, so the store stops
//! growing with time while every promise SPEC §2 makes still holds.
//!
//! One call to [`Retention::prune`] looks at one window of rows (a few hundred)
//! and deletes what may go in ONE short write transaction; the caller (the
//! pruner loop in `run/retention.rs`) pauses between calls, so intake and
//! claiming (on SQLite: the same single writer connection) never wait long.
//!
//! Never pruned:
//! - queued and running jobs;
//! - the newest job of each entity (`entity_heads`): a re-send with the same
//!   body is answered by it (SPEC §2);
//! - a job an idempotency key points at, until `idempotency_before`; the key
//!   is deleted in the same transaction as its job, never before, so a key
//!   answers exactly as long as its job exists;
//! - the newest write-back of each (tenant, entity, accessplanit id): the
//!   outbox compares a new write-back with it, so a re-run job never sends
//!   the same one twice; and pending write-backs;
//! - links and enrolments (the cache of what Moodle knows).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{JobStatus, StoreResult};

/// The cut-off times of one pruning pass: rows that last changed before them may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cutoffs {
    /// Succeeded and skipped jobs (with their attempts and event bodies).
    pub succeeded_before: DateTime<Utc>,
    /// Failed and dead jobs, and dead write-backs.
    pub failed_before: DateTime<Utc>,
    /// A job an idempotency key points at is also kept until this.
    pub idempotency_before: DateTime<Utc>,
    /// Delivered and superseded write-backs.
    pub writebacks_before: DateTime<Utc>,
}

impl Cutoffs {
    /// The cut-offs for a pass at `now` that keeps each kind of row for the given time.
    pub fn at(now: DateTime<Utc>, config: &crate::config::RetentionConfig) -> Cutoffs {
        let before = |keep: std::time::Duration| {
            chrono::TimeDelta::from_std(keep)
                .ok()
                .and_then(|d| now.checked_sub_signed(d))
                // Kept "forever": nothing finished before 1970.
                .map_or(DateTime::UNIX_EPOCH, |t| t.max(DateTime::UNIX_EPOCH))
        };
        Cutoffs {
            succeeded_before: before(config.succeeded),
            failed_before: before(config.failed),
            idempotency_before: before(config.idempotency),
            writebacks_before: before(config.writebacks),
        }
    }
}

/// Where a pass has got to. Start with [`PruneCursor::default`]; a pass is over
/// when [`PruneStep::next`] is `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneCursor {
    /// Which of [`PRUNED_JOB_STATUSES`] is being walked; past them, write-backs.
    pub(super) stage: usize,
    /// The last job id looked at in this stage.
    pub(super) after_job: Option<Uuid>,
    /// The last write-back `seq` looked at.
    pub(super) after_seq: i64,
}

/// The job statuses a pass walks, in order (each through its own index range).
pub(super) const PRUNED_JOB_STATUSES: [JobStatus; 4] = [
    JobStatus::Succeeded,
    JobStatus::Skipped,
    JobStatus::Failed,
    JobStatus::Dead,
];

/// Rows deleted, per table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub jobs: u64,
    pub attempts: u64,
    pub idempotency: u64,
    pub job_keys: u64,
    pub writebacks: u64,
}

impl Pruned {
    /// Every count with its table name (for the `apit_pruned_rows_total` metric).
    pub fn by_table(&self) -> [(&'static str, u64); 5] {
        [
            ("jobs", self.jobs),
            ("attempts", self.attempts),
            ("idempotency", self.idempotency),
            ("job_keys", self.job_keys),
            ("writebacks", self.writebacks),
        ]
    }

    /// All rows.
    pub fn total(&self) -> u64 {
        self.by_table().iter().map(|(_, n)| n).sum()
    }

    /// Adds `other`'s counts.
    pub fn add(&mut self, other: &Pruned) {
        self.jobs += other.jobs;
        self.attempts += other.attempts;
        self.idempotency += other.idempotency;
        self.job_keys += other.job_keys;
        self.writebacks += other.writebacks;
    }
}

/// What one [`Retention::prune`] call did.
#[derive(Debug, Clone, Default)]
pub struct PruneStep {
    pub pruned: Pruned,
    /// Where the next call goes on; `None` when the pass is over.
    pub next: Option<PruneCursor>,
}

/// The state of the store's free space after [`Retention::release_space`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Space {
    /// Nothing to do on this back-end (PostgreSQL: autovacuum reuses the space).
    Managed,
    /// SQLite with incremental auto-vacuum: `released` pages went back to the
    /// file system; `free` pages are still free inside the file.
    Released { released: u64, free: u64 },
    /// A SQLite file created without incremental auto-vacuum: its `free` pages
    /// are reused by new rows, but the file does not shrink (see README).
    NotShrinkable { free: u64 },
}

/// Pruning finished history, on every back-end.
#[async_trait]
pub trait Retention: Send + Sync + 'static {
    /// Looks at the next window of at most `batch` rows from `cursor` and deletes
    /// those the cut-offs allow and none of what is never pruned (see the module
    /// documentation), in one short write transaction.
    async fn prune(
        &self,
        cutoffs: &Cutoffs,
        cursor: PruneCursor,
        batch: u32,
    ) -> StoreResult<PruneStep>;

    /// Gives up to `pages` free pages back to the file system (SQLite with
    /// incremental auto-vacuum), in one short write.
    async fn release_space(&self, pages: u32) -> StoreResult<Space>;
}
