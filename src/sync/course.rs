//! Courses: create-or-link by idnumber, template courses for eLearning, updates and dates.

use serde::{Deserialize, Serialize};

use chrono::{DateTime, Utc};

use super::{Run, Step, SyncError, skip};
use crate::events::{
    Course, CourseDateChanged, CourseInfo, CourseSaved, CourseType, Maybe, SavedCourse,
};
use crate::moodle::{Course as MoodleCourse, CourseUpdate, NewCourse};
use crate::store::{Entity, Link, LinkKind};

/// Moodle's limits (moodle-ws.md §3).
const SHORTNAME_MAX: usize = 255;

/// The course fields this service sends, as remembered in `links.last_sent`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SentCourse {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fullname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub startdate: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enddate: Option<i64>,
}

impl SentCourse {
    /// What the event says the course should look like (absent fields stay absent).
    fn from_event<L: Maybe<String>, D: Maybe<DateTime<Utc>>>(course: &Course<L, D>) -> Self {
        SentCourse {
            fullname: course.label().map(str::to_string),
            summary: course.template.as_ref().and_then(|t| t.aims.clone()),
            startdate: course.start().map(|t| t.timestamp()),
            enddate: course.end().map(|t| t.timestamp()),
        }
    }

    /// What Moodle holds now.
    fn from_moodle(c: &MoodleCourse) -> Self {
        SentCourse {
            fullname: Some(c.fullname.clone()),
            summary: c.summary.clone(),
            startdate: c.startdate,
            enddate: c.enddate,
        }
    }

    fn from_link(link: &Link) -> Option<Self> {
        link.last_sent
            .as_ref()
            .and_then(|v| serde_json::from_value(v.clone()).ok())
    }

    fn to_json(&self) -> serde_json::Value {
        // Plain strings and integers: serialising cannot fail.
        serde_json::to_value(self).unwrap_or_default()
    }

    /// Fields of `self` (desired) that differ from `before`; dates travel together.
    fn changes_from(&self, before: &SentCourse) -> SentCourse {
        let pick = |want: &Option<String>, had: &Option<String>| match want {
            Some(w) if Some(w) != had.as_ref() => Some(w.clone()),
            _ => None,
        };
        let dates_changed = (self.startdate.is_some() && self.startdate != before.startdate)
            || (self.enddate.is_some() && self.enddate != before.enddate);
        let (startdate, enddate) = if dates_changed {
            // Moodle validates only the dates it is sent: an enddate alone is
            // refused and a startdate alone can end before it starts.
            (
                self.startdate.or(before.startdate),
                self.enddate.or(before.enddate),
            )
        } else {
            (None, None)
        };
        SentCourse {
            fullname: pick(&self.fullname, &before.fullname),
            summary: pick(&self.summary, &before.summary),
            startdate,
            enddate,
        }
    }

    fn is_empty(&self) -> bool {
        *self == SentCourse::default()
    }

    /// `self` with `newer`'s present fields on top.
    fn merged(&self, newer: &SentCourse) -> SentCourse {
        SentCourse {
            fullname: newer.fullname.clone().or_else(|| self.fullname.clone()),
            summary: newer.summary.clone().or_else(|| self.summary.clone()),
            startdate: newer.startdate.or(self.startdate),
            enddate: newer.enddate.or(self.enddate),
        }
    }
}

/// Where a course found without creating it came from.
enum Known {
    /// The link table (a course this service saw before); with what was last sent.
    Linked(Option<SentCourse>),
    /// Looked up in Moodle (by id or idnumber), with what Moodle holds.
    InMoodle(SentCourse),
}

impl Known {
    /// What Moodle is believed to hold now.
    fn before(self) -> SentCourse {
        match self {
            Known::Linked(before) => before.unwrap_or_default(),
            Known::InMoodle(before) => before,
        }
    }
}

/// `<label> (<course id>)`, the label cut so the whole fits Moodle's 255 characters.
fn shortname_for(course_id: &str, label: &str) -> String {
    let suffix = format!(" ({course_id})");
    let room = SHORTNAME_MAX.saturating_sub(suffix.chars().count());
    let label: String = label.chars().take(room).collect();
    format!("{}{suffix}", label.trim_end())
}

impl Run<'_, '_> {
    /// course-saved (SPEC §3).
    pub(crate) async fn course_saved(&mut self, event: &CourseSaved) -> Step<()> {
        let course = &event.course;
        if course.kind() == CourseType::Elearning {
            return self.link_template(course).await;
        }
        match self.find_course(course).await? {
            Some((id, known)) => self.update_if_changed(id, course, known.before()).await,
            None => self.create_course(course).await.map(|_| ()),
        }
    }

    /// course-date-changed (SPEC §3): both dates, only when they changed.
    pub(crate) async fn course_date_changed(&mut self, event: &CourseDateChanged) -> Step<()> {
        let course = &event.course;
        if course.kind() == CourseType::Elearning {
            return skip("eLearning courses take their dates from the template's Moodle course");
        }
        let Some((id, known)) = self.find_course(course).await? else {
            return skip("the course is not in Moodle");
        };
        let before = known.before();
        let wanted = SentCourse {
            startdate: Some(course.start.timestamp()),
            enddate: Some(course.end.timestamp()),
            ..SentCourse::default()
        };
        let changes = wanted.changes_from(&before);
        if changes.is_empty() {
            self.outcome.step("dates unchanged: nothing sent");
            return Ok(());
        }
        self.send_update(id, &course.id, &before, &changes).await
    }

    /// The Moodle course of a classroom/webinar course, without creating one:
    /// payload → link → idnumber. Skips the job when the course is not synced.
    async fn find_course<L: Maybe<String>, D: Maybe<DateTime<Utc>>>(
        &mut self,
        course: &Course<L, D>,
    ) -> Step<Option<(i64, Known)>> {
        if course.sync_to_moodle == Some(false) {
            return skip("the course is not marked \"Sync to Moodle\"");
        }
        let ctx = self.ctx;
        let link = ctx
            .links
            .link(ctx.tenant, LinkKind::Course, &course.id)
            .await?;

        if let Some(given) = course.moodle_id {
            let known = match &link {
                // Verified when it was linked.
                Some(l) if l.moodle_id == given => Known::Linked(SentCourse::from_link(l)),
                _ => {
                    let Some(c) = ctx.moodle.course_by_id(given).await? else {
                        return Err(SyncError::data(format!(
                            "Moodle course {given} (course.moodle_id of accessplanit course {}) does not exist: correct the Moodle ID in accessplanit",
                            course.id
                        ))
                        .into());
                    };
                    // Link without touching the course: later edits are sent as changes.
                    let baseline =
                        SentCourse::from_moodle(&c).merged(&SentCourse::from_event(course));
                    self.remember_course(&course.id, given, &baseline).await?;
                    self.outcome
                        .step(format!("course linked to the given Moodle course {given}"));
                    Known::InMoodle(baseline)
                }
            };
            self.outcome.moodle.course_id = Some(given);
            self.write_back(Entity::Course, &course.id, given).await?;
            return Ok(Some((given, known)));
        }

        if let Some(l) = link {
            self.outcome.moodle.course_id = Some(l.moodle_id);
            return Ok(Some((
                l.moodle_id,
                Known::Linked(SentCourse::from_link(&l)),
            )));
        }

        let idnumber = ctx.config.course_idnumber(&course.id);
        let Some(c) = ctx.moodle.course_by_idnumber(&idnumber).await? else {
            return Ok(None);
        };
        let before = SentCourse::from_moodle(&c);
        self.remember_course(&course.id, c.id, &before).await?;
        self.outcome
            .step(format!("course found by idnumber {idnumber}: {}", c.id));
        self.outcome.moodle.course_id = Some(c.id);
        self.write_back(Entity::Course, &course.id, c.id).await?;
        Ok(Some((c.id, Known::InMoodle(before))))
    }

    /// A new Moodle course (written back), or ours made by a racing create.
    async fn create_course<L: Maybe<String>, D: Maybe<DateTime<Utc>>>(
        &mut self,
        course: &Course<L, D>,
    ) -> Step<i64> {
        let ctx = self.ctx;
        let idnumber = ctx.config.course_idnumber(&course.id);
        let Some(label) = course.label() else {
            return Err(SyncError::data(format!(
                "accessplanit course {} is not in Moodle yet and the event has no course.label to create it with",
                course.id
            ))
            .into());
        };
        let sent = SentCourse::from_event(course);
        let new = NewCourse {
            fullname: label.to_string(),
            shortname: shortname_for(&course.id, label),
            categoryid: ctx.config.category_id,
            idnumber: idnumber.to_string(),
            summary: sent.summary.clone(),
            startdate: sent.startdate,
            enddate: sent.enddate,
            visible: Some(true),
        };
        let id = match ctx.moodle.create_course(&new).await {
            Ok(id) => {
                self.remember_course(&course.id, id, &sent).await?;
                self.outcome.step(format!("course created: {id}"));
                id
            }
            Err(e)
                if matches!(
                    e.errorcode(),
                    Some("shortnametaken" | "courseidnumbertaken")
                ) =>
            {
                self.adopt_after_clash(&course.id, &idnumber, &new.shortname, e.errorcode())
                    .await?
            }
            Err(e) => return Err(e.into()),
        };
        self.outcome.moodle.course_id = Some(id);
        self.write_back(Entity::Course, &course.id, id).await?;
        Ok(id)
    }

    /// A create answered "already taken": a racing create of ours, or a clash.
    async fn adopt_after_clash(
        &mut self,
        course_id: &str,
        idnumber: &str,
        shortname: &str,
        code: Option<&str>,
    ) -> Step<i64> {
        let ctx = self.ctx;
        let ours = match ctx.moodle.course_by_idnumber(idnumber).await? {
            Some(c) => Some(c),
            None => ctx
                .moodle
                .course_by_shortname(shortname)
                .await?
                .filter(|c| c.idnumber.as_deref() == Some(idnumber)),
        };
        if let Some(c) = ours {
            self.remember_course(course_id, c.id, &SentCourse::from_moodle(&c))
                .await?;
            self.outcome.step(format!(
                "course already existed with idnumber {idnumber}: {}",
                c.id
            ));
            return Ok(c.id);
        }
        let error = if code == Some("courseidnumbertaken") {
            // Taken, yet invisible to the token: a hidden course or a missing capability.
            SyncError::configuration(format!(
                "a Moodle course with idnumber {idnumber} exists but the token cannot see it: give the integration role moodle/course:viewhiddencourses and moodle/course:update in category {}",
                ctx.config.category_id
            ))
        } else {
            SyncError::data(format!(
                "the Moodle shortname \"{shortname}\" is already used by another course: rename that course in Moodle, or link this course by entering its Moodle ID in accessplanit"
            ))
        };
        Err(error.into())
    }

    /// Re-save of a linked course: update what changed since it was last sent.
    async fn update_if_changed(
        &mut self,
        id: i64,
        course: &SavedCourse,
        before: SentCourse,
    ) -> Step<()> {
        if !self.ctx.config.update_on_save {
            self.outcome
                .step("update_on_save is off: course not updated");
            return Ok(());
        }
        let changes = SentCourse::from_event(course).changes_from(&before);
        if changes.is_empty() {
            self.outcome.step("course unchanged: nothing sent");
            return Ok(());
        }
        self.send_update(id, &course.id, &before, &changes).await
    }

    async fn send_update(
        &mut self,
        id: i64,
        course_id: &str,
        before: &SentCourse,
        changes: &SentCourse,
    ) -> Step<()> {
        let update = CourseUpdate {
            id,
            fullname: changes.fullname.clone(),
            summary: changes.summary.clone(),
            startdate: changes.startdate,
            enddate: changes.enddate,
        };
        self.ctx.moodle.update_course(&update).await?;
        let mut fields = Vec::new();
        for (name, present) in [
            ("fullname", changes.fullname.is_some()),
            ("summary", changes.summary.is_some()),
            ("startdate", changes.startdate.is_some()),
            ("enddate", changes.enddate.is_some()),
        ] {
            if present {
                fields.push(name);
            }
        }
        self.outcome
            .step(format!("course {id} updated: {}", fields.join(", ")));
        self.remember_course(course_id, id, &before.merged(changes))
            .await?;
        Ok(())
    }

    async fn remember_course(&self, apit_id: &str, moodle_id: i64, sent: &SentCourse) -> Step<()> {
        let link = Link {
            moodle_id,
            last_sent: Some(sent.to_json()),
        };
        self.ctx
            .links
            .put_link(self.ctx.tenant, LinkKind::Course, apit_id, &link)
            .await?;
        Ok(())
    }

    /// course-saved for eLearning: record the template's Moodle course, never create one.
    async fn link_template(&mut self, course: &SavedCourse) -> Step<()> {
        let template = course.template.clone().unwrap_or_default();
        let Some(moodle_id) = template.moodle_id else {
            return skip("template has no Moodle ID");
        };
        let ctx = self.ctx;
        if ctx.moodle.course_by_id(moodle_id).await?.is_none() {
            return Err(SyncError::data(format!(
                "Moodle course {moodle_id} (template.moodle_id of accessplanit course {}) does not exist: correct the template's Moodle ID in accessplanit",
                course.id
            ))
            .into());
        }
        if let Some(template_id) = &template.id {
            let link = Link {
                moodle_id,
                last_sent: None,
            };
            ctx.links
                .put_link(ctx.tenant, LinkKind::Template, template_id, &link)
                .await?;
        }
        self.outcome.moodle.course_id = Some(moodle_id);
        self.outcome
            .step(format!("template course {moodle_id} verified and linked"));
        Ok(())
    }

    /// The Moodle course a booking enrols on: classroom/webinar courses are
    /// created on the fly; eLearning uses the template's Moodle course.
    pub(crate) async fn course_for_booking(&mut self, course: &CourseInfo) -> Step<i64> {
        if course.kind() == CourseType::Elearning {
            return self.template_course(course).await;
        }
        match self.find_course(course).await? {
            Some((id, _)) => Ok(id),
            None => self.create_course(course).await,
        }
    }

    /// The Moodle course a cancelled booking was enrolled on; never creates one.
    pub(crate) async fn existing_course_for_booking(&mut self, course: &CourseInfo) -> Step<i64> {
        if course.kind() == CourseType::Elearning {
            return self.template_course(course).await;
        }
        match self.find_course(course).await? {
            Some((id, _)) => Ok(id),
            None => skip("the course is not in Moodle"),
        }
    }

    /// An eLearning course's Moodle course: the template's, given or linked.
    async fn template_course(&mut self, course: &CourseInfo) -> Step<i64> {
        let template = course.template.clone().unwrap_or_default();
        let id = match (template.moodle_id, &template.id) {
            (Some(id), _) => id,
            (None, Some(tid)) => {
                let ctx = self.ctx;
                match ctx.links.link(ctx.tenant, LinkKind::Template, tid).await? {
                    Some(l) => l.moodle_id,
                    None => return skip("template has no Moodle ID"),
                }
            }
            (None, None) => return skip("template has no Moodle ID"),
        };
        self.outcome.moodle.course_id = Some(id);
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortname_is_label_and_id_cut_to_moodle_limit() {
        assert_eq!(shortname_for("C1001", "First Aid"), "First Aid (C1001)");
        let long = "x".repeat(300);
        let s = shortname_for("C9", &long);
        assert_eq!(s.chars().count(), 255);
        assert!(s.ends_with(" (C9)"));
    }

    #[test]
    fn changes_send_both_dates_and_only_changed_text() {
        let before = SentCourse {
            fullname: Some("A".into()),
            summary: Some("S".into()),
            startdate: Some(100),
            enddate: Some(200),
        };
        let wanted = SentCourse {
            fullname: Some("A".into()),
            summary: None,
            startdate: None,
            enddate: Some(300),
        };
        let c = wanted.changes_from(&before);
        assert_eq!(
            c,
            SentCourse {
                fullname: None,
                summary: None,
                startdate: Some(100),
                enddate: Some(300)
            }
        );
        assert!(before.changes_from(&before).is_empty());
    }
}
