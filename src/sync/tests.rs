//! The handler layer against a scripted Moodle and an in-memory store: the
//! order of the user look-ups (payload → link → idnumber → unique email, exact →
//! create), what an `invalidparameter` answer to a create leads to (a look-up
//! by username, then by email ignoring case), and the username clash suffix —
//! without HTTP.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::*;
use crate::config::Config;
use crate::events::{Booking, BookingEvent, CourseInfo, UserInfo};
use crate::moodle::{
    Completion, Course, CourseTotal, CourseUpdate, Enrolment, NewCourse, NewUser, SiteInfo,
    Unenrolment, User, UserField,
};
use crate::store::{
    EnrolmentRecord, Link, LinkKind, Links, NewWriteback, Outbox, StoreResult, Writeback,
    WritebackFinish,
};

/// One expected Moodle call, as the handler makes it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    UsersBy(UserField, String),
    UsersByEmailLike(String),
    CreateUser(String),
    Enrol(i64, i64),
}

/// What the scripted Moodle answers.
enum Answer {
    Users(Vec<User>),
    Created(i64),
    /// Moodle's `invalidparameter` envelope.
    InvalidParameter,
    Null,
}

/// A Moodle that expects exactly the scripted calls, in order.
struct ScriptedMoodle {
    script: Mutex<VecDeque<(Call, Answer)>>,
}

impl ScriptedMoodle {
    fn new(script: Vec<(Call, Answer)>) -> Self {
        ScriptedMoodle {
            script: Mutex::new(script.into()),
        }
    }

    fn answer(&self, call: Call) -> Result<Answer, MoodleError> {
        let (expected, answer) = self
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| panic!("unexpected call {call:?}: the script is done"));
        assert_eq!(call, expected, "calls out of order");
        match answer {
            Answer::InvalidParameter => Err(MoodleError::Exception {
                function: "core_user_create_users".into(),
                exception: "invalid_parameter_exception".into(),
                errorcode: Some("invalidparameter".into()),
                message: "Invalid parameter value detected".into(),
                debuginfo: None,
            }),
            other => Ok(other),
        }
    }

    fn assert_done(&self) {
        let left: Vec<Call> = self
            .script
            .lock()
            .unwrap()
            .iter()
            .map(|(c, _)| c.clone())
            .collect();
        assert!(left.is_empty(), "calls never made: {left:?}");
    }
}

fn users(answer: Answer) -> Vec<User> {
    match answer {
        Answer::Users(u) => u,
        _ => panic!("the script answers a look-up with users"),
    }
}

#[async_trait]
impl Moodle for ScriptedMoodle {
    async fn site_info(&self) -> Result<SiteInfo, MoodleError> {
        unimplemented!("not scripted")
    }
    async fn course_by_idnumber(&self, _: &str) -> Result<Option<Course>, MoodleError> {
        unimplemented!("not scripted")
    }
    async fn course_by_id(&self, _: i64) -> Result<Option<Course>, MoodleError> {
        unimplemented!("not scripted")
    }
    async fn course_by_shortname(&self, _: &str) -> Result<Option<Course>, MoodleError> {
        unimplemented!("not scripted")
    }
    async fn create_course(&self, _: &NewCourse) -> Result<i64, MoodleError> {
        unimplemented!("not scripted")
    }
    async fn update_course(&self, _: &CourseUpdate) -> Result<(), MoodleError> {
        unimplemented!("not scripted")
    }
    async fn users_by_field(
        &self,
        field: UserField,
        value: &str,
    ) -> Result<Vec<User>, MoodleError> {
        self.answer(Call::UsersBy(field, value.into())).map(users)
    }
    async fn users_by_email_like(&self, email: &str) -> Result<Vec<User>, MoodleError> {
        self.answer(Call::UsersByEmailLike(email.into())).map(users)
    }
    async fn create_user(&self, user: &NewUser) -> Result<i64, MoodleError> {
        match self.answer(Call::CreateUser(user.username.clone()))? {
            Answer::Created(id) => Ok(id),
            _ => panic!("the script answers a create with an id"),
        }
    }
    async fn enrol(&self, e: &Enrolment) -> Result<(), MoodleError> {
        self.answer(Call::Enrol(e.userid, e.courseid)).map(|_| ())
    }
    async fn unenrol(&self, _: &Unenrolment) -> Result<(), MoodleError> {
        unimplemented!("not scripted")
    }
    async fn course_totals(&self, _: i64) -> Result<Vec<CourseTotal>, MoodleError> {
        unimplemented!("not scripted")
    }
    async fn completion(&self, _: i64, _: i64) -> Result<Option<Completion>, MoodleError> {
        unimplemented!("not scripted")
    }
}

/// Links and write-backs in memory.
#[derive(Default)]
struct MemoryStore {
    links: Mutex<HashMap<(LinkKind, String), Link>>,
    writebacks: Mutex<Vec<NewWriteback>>,
}

#[async_trait]
impl Links for MemoryStore {
    async fn link(&self, _: &str, kind: LinkKind, apit_id: &str) -> StoreResult<Option<Link>> {
        Ok(self
            .links
            .lock()
            .unwrap()
            .get(&(kind, apit_id.into()))
            .cloned())
    }
    async fn put_link(
        &self,
        _: &str,
        kind: LinkKind,
        apit_id: &str,
        link: &Link,
    ) -> StoreResult<()> {
        self.links
            .lock()
            .unwrap()
            .insert((kind, apit_id.into()), link.clone());
        Ok(())
    }
    async fn put_enrolment(&self, _: &EnrolmentRecord) -> StoreResult<()> {
        Ok(())
    }
    async fn enrolments(&self, _: &str, _: bool) -> StoreResult<Vec<EnrolmentRecord>> {
        Ok(Vec::new())
    }
    async fn set_last_score(&self, _: &str, _: &str, _: &Value) -> StoreResult<()> {
        Ok(())
    }
}

#[async_trait]
impl Outbox for MemoryStore {
    async fn enqueue_writeback(&self, wb: NewWriteback, _: DateTime<Utc>) -> StoreResult<bool> {
        self.writebacks.lock().unwrap().push(wb);
        Ok(true)
    }
    async fn claim_writebacks(
        &self,
        _: DateTime<Utc>,
        _: Duration,
        _: u32,
    ) -> StoreResult<Vec<Writeback>> {
        Ok(Vec::new())
    }
    async fn finish_writeback(
        &self,
        _: Uuid,
        _: u32,
        _: DateTime<Utc>,
        _: WritebackFinish,
    ) -> StoreResult<bool> {
        Ok(false)
    }
    async fn writebacks_for_job(&self, _: Uuid) -> StoreResult<Vec<Writeback>> {
        Ok(Vec::new())
    }
    async fn pending_writebacks(&self) -> StoreResult<u64> {
        Ok(0)
    }
}

/// A tenant whose course C1 is linked to Moodle course 42.
fn tenant(match_by_email: bool) -> crate::config::TenantConfig {
    let toml = format!(
        r#"
        [tenants.acme]
        webhook_secret = "s"
        moodle_url = "https://moodle.example.org"
        moodle_token = "t"
        category_id = 5
        match_users_by_email = {match_by_email}
        [tenants.acme.callback]
        kind = "webhook"
        url = "https://example.org/ids"
        "#
    );
    Config::from_toml(&toml).unwrap().tenants["acme"].clone()
}

fn user(id: i64, username: &str, email: &str, idnumber: &str) -> User {
    User {
        id,
        username: Some(username.into()),
        email: Some(email.into()),
        idnumber: (!idnumber.is_empty()).then(|| idnumber.into()),
        firstname: Some("Ada".into()),
        lastname: Some("Lovelace".into()),
        suspended: Some(false),
    }
}

fn booking(moodle_id: Option<i64>) -> BookingEvent {
    BookingEvent {
        event_id: None,
        booking: Booking { id: "D1".into() },
        course: CourseInfo {
            id: "C1".into(),
            ..CourseInfo::default()
        },
        user: UserInfo {
            id: "U9".into(),
            moodle_id,
            first_name: Some("Ada".into()),
            last_name: Some("Lovelace".into()),
            email: Some("Ada@Example.com".into()),
        },
        role_id: None,
    }
}

/// Runs booking-created for `event` against `script`; returns the outcome, the
/// result and the store.
async fn book(
    event: BookingEvent,
    match_by_email: bool,
    linked_user: Option<i64>,
    script: Vec<(Call, Answer)>,
) -> (Outcome, Result<Disposition, SyncError>, MemoryStore) {
    let moodle = ScriptedMoodle::new(script);
    let store = MemoryStore::default();
    let course = Link {
        moodle_id: 42,
        last_sent: None,
    };
    store
        .put_link("acme", LinkKind::Course, "C1", &course)
        .await
        .unwrap();
    if let Some(id) = linked_user {
        let link = Link {
            moodle_id: id,
            last_sent: None,
        };
        store
            .put_link("acme", LinkKind::User, "U9", &link)
            .await
            .unwrap();
    }
    let config = tenant(match_by_email);
    let ctx = Context {
        tenant: "acme",
        config: &config,
        moodle: &moodle,
        links: &store,
        outbox: &store,
        job_id: None,
        now: Utc::now(),
    };
    let (outcome, result) = handle(&ctx, &Event::BookingCreated(event)).await;
    moodle.assert_done();
    (outcome, result, store)
}

const IDNUMBER: &str = "apit-user-U9";
const EMAIL: &str = "Ada@Example.com";
const LOWER_EMAIL: &str = "ada@example.com";

fn by(field: UserField, value: &str) -> Call {
    Call::UsersBy(field, value.into())
}

fn user_link(store: &MemoryStore) -> Option<i64> {
    let links = store.links.lock().unwrap();
    links
        .get(&(LinkKind::User, "U9".into()))
        .map(|l| l.moodle_id)
}

#[tokio::test]
async fn a_linked_user_costs_no_look_up() {
    let (outcome, result, _) = book(
        booking(None),
        true,
        Some(17),
        vec![(Call::Enrol(17, 42), Answer::Null)],
    )
    .await;
    assert_eq!(result, Ok(Disposition::Succeeded));
    assert_eq!(outcome.moodle.user_id, Some(17));
}

#[tokio::test]
async fn a_payload_moodle_id_is_verified_once_then_linked() {
    let (_, result, store) = book(
        booking(Some(17)),
        true,
        None,
        vec![
            (
                by(UserField::Id, "17"),
                Answer::Users(vec![user(17, "ada", EMAIL, "")]),
            ),
            (Call::Enrol(17, 42), Answer::Null),
        ],
    )
    .await;
    assert_eq!(result, Ok(Disposition::Succeeded));
    assert_eq!(user_link(&store), Some(17));
}

#[tokio::test]
async fn a_stale_payload_moodle_id_fails_with_a_message_naming_it() {
    let (_, result, _) = book(
        booking(Some(999)),
        true,
        None,
        vec![(by(UserField::Id, "999"), Answer::Users(vec![]))],
    )
    .await;
    let error = result.unwrap_err();
    assert_eq!(error.class, ErrorClass::Data);
    assert!(
        error.message.contains("Moodle user 999"),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn the_idnumber_comes_before_the_email_and_the_oldest_account_wins() {
    let (_, result, store) = book(
        booking(None),
        true,
        None,
        vec![
            (
                by(UserField::Idnumber, IDNUMBER),
                Answer::Users(vec![
                    user(30, "b", EMAIL, IDNUMBER),
                    user(21, "a", EMAIL, IDNUMBER),
                ]),
            ),
            (Call::Enrol(21, 42), Answer::Null),
        ],
    )
    .await;
    assert_eq!(result, Ok(Disposition::Succeeded));
    assert_eq!(user_link(&store), Some(21));
    // The adopted user's Moodle ID goes back to accessplanit.
    assert_eq!(store.writebacks.lock().unwrap()[0].apit_id, "U9");
}

#[tokio::test]
async fn a_unique_email_is_matched_but_two_accounts_are_not() {
    let (_, result, store) = book(
        booking(None),
        true,
        None,
        vec![
            (by(UserField::Idnumber, IDNUMBER), Answer::Users(vec![])),
            (by(UserField::Email, EMAIL), Answer::Users(vec![])),
            (
                by(UserField::Email, LOWER_EMAIL),
                Answer::Users(vec![user(8, "ada", "ada@example.com", "")]),
            ),
            (Call::Enrol(8, 42), Answer::Null),
        ],
    )
    .await;
    assert_eq!(result, Ok(Disposition::Succeeded));
    assert_eq!(user_link(&store), Some(8));

    let (outcome, result, store) = book(
        booking(None),
        true,
        None,
        vec![
            (by(UserField::Idnumber, IDNUMBER), Answer::Users(vec![])),
            (by(UserField::Email, EMAIL), Answer::Users(vec![])),
            (
                by(UserField::Email, LOWER_EMAIL),
                Answer::Users(vec![user(8, "a", EMAIL, ""), user(9, "b", EMAIL, "")]),
            ),
            (
                Call::CreateUser("ada@example.com".into()),
                Answer::Created(50),
            ),
            (Call::Enrol(50, 42), Answer::Null),
        ],
    )
    .await;
    assert_eq!(result, Ok(Disposition::Succeeded));
    assert_eq!(user_link(&store), Some(50));
    assert!(
        outcome
            .steps
            .iter()
            .any(|s| s.contains("2 Moodle accounts share the email"))
    );
}

#[tokio::test]
async fn without_email_matching_the_email_is_not_looked_up() {
    let (_, result, _) = book(
        booking(None),
        false,
        None,
        vec![
            (by(UserField::Idnumber, IDNUMBER), Answer::Users(vec![])),
            (
                Call::CreateUser("ada@example.com".into()),
                Answer::Created(50),
            ),
            (Call::Enrol(50, 42), Answer::Null),
        ],
    )
    .await;
    assert_eq!(result, Ok(Disposition::Succeeded));
}

#[tokio::test]
async fn a_username_held_by_another_person_gets_a_suffix() {
    let (_, result, store) = book(
        booking(None),
        true,
        None,
        vec![
            (by(UserField::Idnumber, IDNUMBER), Answer::Users(vec![])),
            (by(UserField::Email, EMAIL), Answer::Users(vec![])),
            (by(UserField::Email, LOWER_EMAIL), Answer::Users(vec![])),
            (
                Call::CreateUser("ada@example.com".into()),
                Answer::InvalidParameter,
            ),
            (
                by(UserField::Username, "ada@example.com"),
                Answer::Users(vec![user(5, "ada@example.com", "other@example.com", "")]),
            ),
            (
                Call::CreateUser("ada@example.com-2".into()),
                Answer::Created(51),
            ),
            (Call::Enrol(51, 42), Answer::Null),
        ],
    )
    .await;
    assert_eq!(result, Ok(Disposition::Succeeded));
    assert_eq!(user_link(&store), Some(51));
}

#[tokio::test]
async fn a_refused_create_finds_our_own_racing_create_by_username() {
    let (_, result, store) = book(
        booking(None),
        true,
        None,
        vec![
            (by(UserField::Idnumber, IDNUMBER), Answer::Users(vec![])),
            (by(UserField::Email, EMAIL), Answer::Users(vec![])),
            (by(UserField::Email, LOWER_EMAIL), Answer::Users(vec![])),
            (
                Call::CreateUser("ada@example.com".into()),
                Answer::InvalidParameter,
            ),
            (
                by(UserField::Username, "ada@example.com"),
                Answer::Users(vec![user(60, "ada@example.com", EMAIL, IDNUMBER)]),
            ),
            (Call::Enrol(60, 42), Answer::Null),
        ],
    )
    .await;
    assert_eq!(result, Ok(Disposition::Succeeded));
    assert_eq!(user_link(&store), Some(60));
}

#[tokio::test]
async fn a_refused_create_without_a_username_holder_looks_at_the_email_again() {
    // Moodle's duplicate-email check ignores case; a look-up may still see
    // the other account after the create was refused.
    let (_, result, store) = book(
        booking(None),
        true,
        None,
        vec![
            (by(UserField::Idnumber, IDNUMBER), Answer::Users(vec![])),
            (by(UserField::Email, EMAIL), Answer::Users(vec![])),
            (by(UserField::Email, LOWER_EMAIL), Answer::Users(vec![])),
            (
                Call::CreateUser("ada@example.com".into()),
                Answer::InvalidParameter,
            ),
            (
                by(UserField::Username, "ada@example.com"),
                Answer::Users(vec![]),
            ),
            (
                Call::UsersByEmailLike(EMAIL.into()),
                Answer::Users(vec![user(70, "ada.l", "ADA@example.com", "")]),
            ),
            (Call::Enrol(70, 42), Answer::Null),
        ],
    )
    .await;
    assert_eq!(result, Ok(Disposition::Succeeded));
    assert_eq!(user_link(&store), Some(70));

    // Nobody with that email either: Moodle found the data itself invalid.
    let (_, result, _) = book(
        booking(None),
        true,
        None,
        vec![
            (by(UserField::Idnumber, IDNUMBER), Answer::Users(vec![])),
            (by(UserField::Email, EMAIL), Answer::Users(vec![])),
            (by(UserField::Email, LOWER_EMAIL), Answer::Users(vec![])),
            (
                Call::CreateUser("ada@example.com".into()),
                Answer::InvalidParameter,
            ),
            (
                by(UserField::Username, "ada@example.com"),
                Answer::Users(vec![]),
            ),
            (Call::UsersByEmailLike(EMAIL.into()), Answer::Users(vec![])),
        ],
    )
    .await;
    let error = result.unwrap_err();
    assert_eq!(error.class, ErrorClass::Data);
    assert!(
        error.message.contains("Moodle refused to create user"),
        "{}",
        error.message
    );
}
