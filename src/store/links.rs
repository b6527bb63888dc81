//! Links and enrolments: the cache of what Moodle and accessplanit already know.
//!
//! Never the only copy (Moodle's idnumbers are the durable key), so losing a
//! row costs a look-up, never a duplicate.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::StoreResult;

/// What a link points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkKind {
    Course,
    Template,
    User,
}

impl LinkKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkKind::Course => "course",
            LinkKind::Template => "template",
            LinkKind::User => "user",
        }
    }
}

/// A cached accessplanit → Moodle mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    pub moodle_id: i64,
    /// What was last sent to Moodle for this entity (to skip unchanged updates).
    pub last_sent: Option<Value>,
}

/// The state of an enrolment this service made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnrolmentState {
    Active,
    Suspended,
    Unenrolled,
}

impl EnrolmentState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            EnrolmentState::Active => "active",
            EnrolmentState::Suspended => "suspended",
            EnrolmentState::Unenrolled => "unenrolled",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<EnrolmentState> {
        [
            EnrolmentState::Active,
            EnrolmentState::Suspended,
            EnrolmentState::Unenrolled,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

/// An enrolment this service made, keyed by (tenant, booking id).
#[derive(Debug, Clone, PartialEq)]
pub struct EnrolmentRecord {
    pub tenant: String,
    pub booking_id: String,
    pub moodle_course_id: i64,
    pub moodle_user_id: i64,
    pub state: EnrolmentState,
    /// The last score written back (for "changed since" checks).
    pub last_score: Option<Value>,
}

/// Links and enrolments, as the handler layer and the grades pass use them.
#[async_trait]
pub trait Links: Send + Sync + 'static {
    /// The cached link of an accessplanit entity.
    async fn link(&self, tenant: &str, kind: LinkKind, apit_id: &str) -> StoreResult<Option<Link>>;

    /// Inserts or replaces a link.
    async fn put_link(
        &self,
        tenant: &str,
        kind: LinkKind,
        apit_id: &str,
        link: &Link,
    ) -> StoreResult<()>;

    /// Inserts or replaces the enrolment of a booking (keeps `last_score` when the
    /// course and user are unchanged).
    async fn put_enrolment(&self, record: &EnrolmentRecord) -> StoreResult<()>;

    /// The enrolments of a tenant (only `Active` ones when `active_only`).
    async fn enrolments(
        &self,
        tenant: &str,
        active_only: bool,
    ) -> StoreResult<Vec<EnrolmentRecord>>;

    /// Records the last score written back for a booking.
    async fn set_last_score(
        &self,
        tenant: &str,
        booking_id: &str,
        score: &Value,
    ) -> StoreResult<()>;
}
