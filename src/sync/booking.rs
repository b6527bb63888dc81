//! Bookings: enrol with the tenant's (or the event's) role; cancel by suspend,
//! unenrol or nothing.

use super::{Run, Step, SyncError, skip};
use crate::config::OnCancel;
use crate::events::{Booking, BookingEvent};
use crate::moodle::{Enrolment, MoodleError, Unenrolment};
use crate::store::{EnrolmentRecord, EnrolmentState};

impl Run<'_, '_> {
    /// booking-created: course (created on the fly) → user → enrolment.
    pub(crate) async fn booking_created(&mut self, event: &BookingEvent) -> Step<()> {
        let course_id = self.course_for_booking(&event.course).await?;
        let user_id = self.find_or_create_user(&event.user).await?;
        let role_id = event.role_id.unwrap_or(self.ctx.config.role_id);
        self.enrol(
            &event.booking,
            course_id,
            user_id,
            role_id,
            EnrolmentState::Active,
        )
        .await
    }

    /// booking-cancelled: the tenant's `on_cancel`; never deletes the user.
    pub(crate) async fn booking_cancelled(&mut self, event: &BookingEvent) -> Step<()> {
        let booking = &event.booking;
        let unenrol = match self.ctx.config.on_cancel {
            OnCancel::Ignore => return skip("on_cancel is ignore"),
            OnCancel::Suspend => false,
            OnCancel::Unenrol => true,
        };
        let course_id = self.existing_course_for_booking(&event.course).await?;
        let Some(user_id) = self.find_user(&event.user).await? else {
            return skip("the user is not in Moodle");
        };
        if !unenrol {
            let role_id = event.role_id.unwrap_or(self.ctx.config.role_id);
            return self
                .enrol(
                    booking,
                    course_id,
                    user_id,
                    role_id,
                    EnrolmentState::Suspended,
                )
                .await;
        }
        let item = Unenrolment {
            userid: user_id,
            courseid: course_id,
        };
        self.ctx
            .moodle
            .unenrol(&item)
            .await
            .map_err(|e| enrol_error(e, true, course_id, user_id))?;
        self.outcome
            .step(format!("user {user_id} unenrolled from course {course_id}"));
        self.record_enrolment(booking, course_id, user_id, EnrolmentState::Unenrolled)
            .await
    }

    async fn enrol(
        &mut self,
        booking: &Booking,
        course_id: i64,
        user_id: i64,
        role_id: i64,
        state: EnrolmentState,
    ) -> Step<()> {
        let suspend = state == EnrolmentState::Suspended;
        let item = Enrolment {
            roleid: role_id,
            userid: user_id,
            courseid: course_id,
            // Always sent: enrolling again without it would re-activate a suspension.
            suspend,
        };
        self.ctx
            .moodle
            .enrol(&item)
            .await
            .map_err(|e| enrol_error(e, false, course_id, user_id))?;
        self.outcome.moodle.role_id = Some(role_id);
        self.outcome.step(if suspend {
            format!("enrolment of user {user_id} in course {course_id} suspended")
        } else {
            format!("user {user_id} enrolled in course {course_id} with role {role_id}")
        });
        self.record_enrolment(booking, course_id, user_id, state)
            .await
    }

    async fn record_enrolment(
        &mut self,
        booking: &Booking,
        course_id: i64,
        user_id: i64,
        state: EnrolmentState,
    ) -> Step<()> {
        let ctx = self.ctx;
        let record = EnrolmentRecord {
            tenant: ctx.tenant.to_string(),
            booking_id: booking.id.clone(),
            moodle_course_id: course_id,
            moodle_user_id: user_id,
            state,
            last_score: None,
        };
        ctx.links.put_enrolment(&record).await?;
        Ok(())
    }
}

/// Enrol and unenrol errors that mean "no such course" or "no such user",
/// told apart as Moodle does (fixtures `unknown_course`, `unknown_user`).
fn enrol_error(e: MoodleError, unenrol: bool, course_id: i64, user_id: i64) -> SyncError {
    let no_errorcode = matches!(
        e,
        MoodleError::Exception {
            errorcode: None,
            ..
        }
    );
    let missing = match (unenrol, e.errorcode()) {
        (false, Some("invalidparameter")) => Some(format!("course {course_id}")),
        (false, None) if no_errorcode => Some(format!("user {user_id}")),
        (true, Some("invalidrecord" | "invalidrecordunknown")) => {
            Some(format!("course {course_id}"))
        }
        (true, Some("invalidparameter")) => Some(format!("user {user_id}")),
        _ => None,
    };
    match missing {
        Some(what) => SyncError::data(format!(
            "Moodle {what} does not exist (deleted in Moodle?): clear the stale Moodle ID in accessplanit and send the event again ({e})"
        )),
        None => e.into(),
    }
}
