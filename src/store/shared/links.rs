//! Links and enrolments: the same queries on both back-ends.

use chrono::Utc;
use serde_json::Value;

use super::{Dialect, SqlStore, for_every_dialect};
use crate::store::{EnrolmentRecord, Link, LinkKind, Links, StoreResult};

for_every_dialect! { Links for Dialect {
    async fn link(&self, tenant: &str, kind: LinkKind, apit_id: &str) -> StoreResult<Option<Link>> {
        let row = sqlx::query(
            "SELECT moodle_id, last_sent FROM links \
             WHERE tenant = $1 AND kind = $2 AND apit_id = $3",
        )
        .bind(tenant.to_owned())
        .bind(kind.as_str())
        .bind(apit_id.to_owned())
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(D::link).transpose()
    }

    async fn put_link(
        &self,
        tenant: &str,
        kind: LinkKind,
        apit_id: &str,
        link: &Link,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO links (tenant, kind, apit_id, moodle_id, last_sent, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (tenant, kind, apit_id) DO UPDATE SET moodle_id = excluded.moodle_id, \
             last_sent = excluded.last_sent, updated_at = excluded.updated_at",
        )
        .bind(tenant.to_owned())
        .bind(kind.as_str())
        .bind(apit_id.to_owned())
        .bind(link.moodle_id)
        .bind(link.last_sent.as_ref().map(D::json))
        .bind(D::time(Utc::now()))
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn put_enrolment(&self, record: &EnrolmentRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO enrolments (tenant, booking_id, moodle_course_id, moodle_user_id, \
             state, last_score, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (tenant, booking_id) DO UPDATE SET \
             last_score = CASE WHEN enrolments.moodle_course_id = excluded.moodle_course_id \
               AND enrolments.moodle_user_id = excluded.moodle_user_id \
               THEN enrolments.last_score ELSE excluded.last_score END, \
             moodle_course_id = excluded.moodle_course_id, \
             moodle_user_id = excluded.moodle_user_id, \
             state = excluded.state, updated_at = excluded.updated_at",
        )
        .bind(record.tenant.clone())
        .bind(record.booking_id.clone())
        .bind(record.moodle_course_id)
        .bind(record.moodle_user_id)
        .bind(record.state.as_str())
        .bind(record.last_score.as_ref().map(D::json))
        .bind(D::time(Utc::now()))
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn enrolments(&self, tenant: &str, active_only: bool) -> StoreResult<Vec<EnrolmentRecord>> {
        let rows = sqlx::query(
            "SELECT tenant, booking_id, moodle_course_id, moodle_user_id, state, last_score \
             FROM enrolments WHERE tenant = $1 AND (NOT $2 OR state = 'active') \
             ORDER BY booking_id",
        )
        .bind(tenant.to_owned())
        .bind(active_only)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(D::enrolment).collect()
    }

    async fn set_last_score(&self, tenant: &str, booking_id: &str, score: &Value) -> StoreResult<()> {
        sqlx::query(
            "UPDATE enrolments SET last_score = $1, updated_at = $2 \
             WHERE tenant = $3 AND booking_id = $4",
        )
        .bind(D::json(score))
        .bind(D::time(Utc::now()))
        .bind(tenant.to_owned())
        .bind(booking_id.to_owned())
        .execute(&self.writer)
        .await?;
        Ok(())
    }
} }
