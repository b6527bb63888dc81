//! PostgreSQL links and enrolments: every query is shared (`store/shared/links.rs`).

use async_trait::async_trait;
use serde_json::Value;

use super::PgStore;
use crate::store::{EnrolmentRecord, Link, LinkKind, Links, StoreResult};

#[async_trait]
impl Links for PgStore {
    async fn link(&self, tenant: &str, kind: LinkKind, apit_id: &str) -> StoreResult<Option<Link>> {
        self.shared.link(tenant, kind, apit_id).await
    }

    async fn put_link(
        &self,
        tenant: &str,
        kind: LinkKind,
        apit_id: &str,
        link: &Link,
    ) -> StoreResult<()> {
        self.shared.put_link(tenant, kind, apit_id, link).await
    }

    async fn put_enrolment(&self, record: &EnrolmentRecord) -> StoreResult<()> {
        self.shared.put_enrolment(record).await
    }

    async fn enrolments(
        &self,
        tenant: &str,
        active_only: bool,
    ) -> StoreResult<Vec<EnrolmentRecord>> {
        self.shared.enrolments(tenant, active_only).await
    }

    async fn set_last_score(
        &self,
        tenant: &str,
        booking_id: &str,
        score: &Value,
    ) -> StoreResult<()> {
        self.shared.set_last_score(tenant, booking_id, score).await
    }
}
