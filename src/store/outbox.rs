//! The write-back outbox: Moodle IDs and scores waiting to be delivered to
//! accessplanit, each with its own retries.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::StoreResult;

/// What a write-back is about (the `entity` of the callback body; a contract).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Entity {
    /// A course date's Moodle course.
    Course,
    /// A course template's Moodle course.
    Template,
    /// A contact's Moodle user.
    User,
    /// A delegate's score (and completion).
    Delegate,
}

impl Entity {
    /// Every entity.
    pub const ALL: [Entity; 4] = [
        Entity::Course,
        Entity::Template,
        Entity::User,
        Entity::Delegate,
    ];

    /// The stored and sent name.
    pub fn as_str(self) -> &'static str {
        match self {
            Entity::Course => "course",
            Entity::Template => "template",
            Entity::User => "user",
            Entity::Delegate => "delegate",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Entity> {
        Entity::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

/// Delivery state of a write-back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WritebackStatus {
    Pending,
    Delivered,
    /// A newer write-back for the same entity replaced it before delivery.
    Superseded,
    Dead,
}

impl WritebackStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            WritebackStatus::Pending => "pending",
            WritebackStatus::Delivered => "delivered",
            WritebackStatus::Superseded => "superseded",
            WritebackStatus::Dead => "dead",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<WritebackStatus> {
        [
            WritebackStatus::Pending,
            WritebackStatus::Delivered,
            WritebackStatus::Superseded,
            WritebackStatus::Dead,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

/// A write-back to queue in the outbox.
#[derive(Debug, Clone)]
pub struct NewWriteback {
    pub job_id: Option<Uuid>,
    pub tenant: String,
    pub entity: Entity,
    pub apit_id: String,
    /// The full JSON body to deliver.
    pub payload: Value,
}

/// A queued or delivered write-back.
#[derive(Debug, Clone, Serialize)]
pub struct Writeback {
    pub id: Uuid,
    pub job_id: Option<Uuid>,
    pub tenant: String,
    pub entity: Entity,
    pub apit_id: String,
    pub payload: Value,
    pub status: WritebackStatus,
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
    pub retry_since: DateTime<Utc>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

/// How a write-back delivery attempt ended.
#[derive(Debug, Clone)]
pub struct WritebackFinish {
    /// `Pending` to retry at `next_attempt_at`, `Delivered` or `Dead`.
    pub status: WritebackStatus,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
}

/// The outbox, as the handler layer (enqueue) and the outbox runner use it.
#[async_trait]
pub trait Outbox: Send + Sync + 'static {
    /// Queues a write-back unless the newest one for the same (tenant, entity,
    /// apit_id) carries the same payload. A newer write-back supersedes older
    /// pending ones. Returns whether it was queued.
    async fn enqueue_writeback(&self, wb: NewWriteback, now: DateTime<Utc>) -> StoreResult<bool>;

    /// Claims up to `limit` due pending write-backs (lease as for jobs; `attempts += 1`).
    async fn claim_writebacks(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: u32,
    ) -> StoreResult<Vec<Writeback>>;

    /// Ends a delivery attempt; false when the claim was lost.
    async fn finish_writeback(
        &self,
        id: Uuid,
        attempt: u32,
        now: DateTime<Utc>,
        finish: WritebackFinish,
    ) -> StoreResult<bool>;

    /// The write-backs a job queued, oldest first.
    async fn writebacks_for_job(&self, job_id: Uuid) -> StoreResult<Vec<Writeback>>;

    /// How many write-backs wait to be delivered (metrics, tests).
    async fn pending_writebacks(&self) -> StoreResult<u64>;
}
