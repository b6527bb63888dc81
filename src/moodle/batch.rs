//! Moodle calls shared between jobs.
//!
//! Jobs stay the unit of retry, history and outcome; the batcher is the unit
//! of calls. Concurrent jobs ask for "users with idnumber X" or "enrol U in C";
//! one collector per kind of call gathers the requests for a short window (or
//! until the batch is full) and, while every call slot of the tenant is busy,
//! keeps gathering; then one call answers them all, each job getting its own
//! answer or its own error. So a lone booking pays the window once per call,
//! and a burst fills its batches while Moodle works.
//!
//! A batch that Moodle refuses as a whole, for what may be one item's fault, is
//! split in halves until the bad item is alone: enrolments are atomic and the
//! error does not say which item failed (moodle-ws.md §1.10); a look-up fails
//! whole when one value does not survive Moodle's cleaning (§2.7), so values
//! that would not are never put in a batch. User creates are never batched
//! (Moodle mails the login before it commits), nor is anything else here that
//! writes more than an enrolment.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::client::Inner;
use super::functions::{self as f, Request};
use super::*;

/// Values per look-up call: one SQL `IN` for Moodle, 104 form fields.
const LOOKUPS_PER_CALL: usize = 100;
/// Enrolments per call (4 fields each: 203 form fields, well under PHP's
/// default `max_input_vars` of 1,000; and Moodle's own batch of 50 in the fixtures).
const ENROLMENTS_PER_CALL: usize = 50;

/// A job's answer from a shared call, and every call it rode in to get it (the
/// whole batch, then the halves a refused batch was split into).
pub(crate) struct Reply<A> {
    pub result: Result<A, MoodleError>,
    pub calls: Vec<CallRecord>,
}

/// A kind of call that several jobs' requests can share.
trait Batchable: Send + Sync + 'static {
    /// One job's request: a value to look up, an enrolment.
    type Item: Clone + Eq + Hash + Send + Sync + 'static;
    /// One job's answer.
    type Answer: Clone + Send + 'static;
    /// Items per call at most.
    fn max_items(&self) -> usize;
    /// The call for these items.
    fn request(&self, items: &[Self::Item]) -> Request;
    /// Each item's answer, in the items' order, from a successful call.
    fn answers(
        &self,
        function: &str,
        value: Value,
        items: &[Self::Item],
    ) -> Result<Vec<Self::Answer>, MoodleError>;
    /// Whether a refused call may be down to one of its items (then it is split).
    fn splits(&self, error: &MoodleError) -> bool;
}

/// `core_user_get_users_by_field` for one field, many values.
struct UsersBy(UserField);

impl Batchable for UsersBy {
    type Item = String;
    type Answer = Vec<User>;

    fn max_items(&self) -> usize {
        LOOKUPS_PER_CALL
    }

    fn request(&self, items: &[String]) -> Request {
        let values: Vec<&str> = items.iter().map(String::as_str).collect();
        f::users_by_field(self.0, &values)
    }

    /// Each user goes to the values it has exactly; a user no value names
    /// exactly goes to the values it matches ignoring case (a MySQL site matches
    /// emails that way), as each value's call alone would have answered.
    fn answers(
        &self,
        function: &str,
        value: Value,
        items: &[String],
    ) -> Result<Vec<Vec<User>>, MoodleError> {
        let users = f::parse_user_list(function, value)?;
        let mut answers = vec![Vec::new(); items.len()];
        for user in users {
            let Some(column) = user_column(&user, self.0) else {
                continue;
            };
            let exact: Vec<usize> = (0..items.len()).filter(|&i| items[i] == column).collect();
            let matched = if exact.is_empty() {
                (0..items.len())
                    .filter(|&i| items[i].eq_ignore_ascii_case(&column))
                    .collect()
            } else {
                exact
            };
            for i in matched {
                answers[i].push(user.clone());
            }
        }
        Ok(answers)
    }

    fn splits(&self, error: &MoodleError) -> bool {
        error.errorcode() == Some("invalidparameter")
    }
}

/// The searched field of a user as Moodle returned it.
fn user_column(user: &User, field: UserField) -> Option<String> {
    match field {
        UserField::Id => Some(user.id.to_string()),
        UserField::Idnumber => user.idnumber.clone(),
        UserField::Username => user.username.clone(),
        UserField::Email => user.email.clone(),
    }
}

/// Whether Moodle's cleaning of `field` leaves `value` as it is (moodle-ws.md
/// §1.3, §2.7): otherwise the whole call would fail, so it goes alone.
fn survives_cleaning(field: UserField, value: &str) -> bool {
    // fix_utf8 drops NUL bytes from every value.
    if value.contains('\0') {
        return false;
    }
    let php_trimmed = value.trim_matches([' ', '\t', '\n', '\r', '\0', '\x0B']);
    match field {
        UserField::Id => value.parse::<i64>().is_ok_and(|n| n.to_string() == value),
        UserField::Idnumber => true,
        UserField::Email => php_trimmed == value,
        UserField::Username => value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-._@".contains(c)),
    }
}

/// `core_course_get_courses_by_field` for one field: one value per call, but
/// jobs asking for the same course at once share it.
struct CourseBy(&'static str);

impl Batchable for CourseBy {
    type Item = String;
    type Answer = Option<Course>;

    fn max_items(&self) -> usize {
        1
    }

    fn request(&self, items: &[String]) -> Request {
        f::course_by_field(self.0, items.first().map_or("", String::as_str))
    }

    fn answers(
        &self,
        function: &str,
        value: Value,
        _: &[String],
    ) -> Result<Vec<Option<Course>>, MoodleError> {
        Ok(vec![f::parse_one_course(function, value)?])
    }

    fn splits(&self, _: &MoodleError) -> bool {
        false
    }
}

/// `enrol_manual_enrol_users`.
struct Enrol;

impl Batchable for Enrol {
    type Item = Enrolment;
    type Answer = ();

    fn max_items(&self) -> usize {
        ENROLMENTS_PER_CALL
    }

    fn request(&self, items: &[Enrolment]) -> Request {
        f::enrol(items)
    }

    fn answers(
        &self,
        function: &str,
        value: Value,
        items: &[Enrolment],
    ) -> Result<Vec<()>, MoodleError> {
        f::parse_null(function, value)?;
        Ok(vec![(); items.len()])
    }

    fn splits(&self, error: &MoodleError) -> bool {
        about_an_item(error)
    }
}

/// `enrol_manual_unenrol_users`.
struct Unenrol;

impl Batchable for Unenrol {
    type Item = Unenrolment;
    type Answer = ();

    fn max_items(&self) -> usize {
        ENROLMENTS_PER_CALL
    }

    fn request(&self, items: &[Unenrolment]) -> Request {
        f::unenrol(items)
    }

    fn answers(
        &self,
        function: &str,
        value: Value,
        items: &[Unenrolment],
    ) -> Result<Vec<()>, MoodleError> {
        f::parse_null(function, value)?;
        Ok(vec![(); items.len()])
    }

    fn splits(&self, error: &MoodleError) -> bool {
        about_an_item(error)
    }
}

/// Errors that are about the token, the service or the site: the same for
/// every item, so splitting a batch would only repeat them.
const SITE_WIDE: &[&str] = &[
    "invalidtoken",
    "accessexception",
    "sitemaintenance",
    "wsaccessuserunconfirmed",
    "sitepolicynotagreed",
    "usernotfullysetup",
    "forcepasswordchangenotice",
    "nopasswordchangeforced",
];

/// Whether a refused enrolment batch may be one enrolment's fault: a Moodle
/// exception (an unknown course or user, a role that cannot be assigned, a
/// course without a manual instance…) that is neither transient nor site-wide.
fn about_an_item(error: &MoodleError) -> bool {
    matches!(error, MoodleError::Exception { .. })
        && error.class() != ErrorClass::Transient
        && !error
            .errorcode()
            .is_some_and(|code| SITE_WIDE.contains(&code))
}

/// One job's request, waiting for its answer.
struct Ask<B: Batchable> {
    item: B::Item,
    reply: oneshot::Sender<Reply<B::Answer>>,
}

/// One kind of call: its collector task, started on first use.
struct Lane<B: Batchable> {
    kind: Arc<B>,
    inner: Arc<Inner>,
    window: Duration,
    asks: OnceLock<mpsc::UnboundedSender<Ask<B>>>,
}

impl<B: Batchable> Lane<B> {
    fn new(kind: B, inner: Arc<Inner>, window: Duration) -> Self {
        Lane {
            kind: Arc::new(kind),
            inner,
            window,
            asks: OnceLock::new(),
        }
    }

    /// Queues `item` for the next batch and waits for its answer.
    async fn ask(&self, item: B::Item) -> Reply<B::Answer> {
        let asks = self.asks.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(collect(
                self.kind.clone(),
                self.inner.clone(),
                self.window,
                rx,
            ));
            tx
        });
        let (reply, answer) = oneshot::channel();
        let function = self.kind.request(std::slice::from_ref(&item)).function;
        let gone = || Reply {
            result: Err(MoodleError::Transport {
                function: function.into(),
                detail: "the call was dropped (the service is stopping)".into(),
                timeout: false,
            }),
            calls: Vec::new(),
        };
        if asks.send(Ask { item, reply }).is_err() {
            return gone();
        }
        answer.await.unwrap_or_else(|_| gone())
    }
}

/// Gathers asks into batches and sends each off once a call slot is free.
async fn collect<B: Batchable>(
    kind: Arc<B>,
    inner: Arc<Inner>,
    window: Duration,
    mut asks: mpsc::UnboundedReceiver<Ask<B>>,
) {
    let max = kind.max_items();
    let mut open = true;
    while open {
        let Some(first) = asks.recv().await else {
            return;
        };
        let mut batch = Batch::new(first);
        let deadline = tokio::time::Instant::now() + window;
        while batch.len() < max {
            match tokio::time::timeout_at(deadline, asks.recv()).await {
                Ok(Some(ask)) => batch.push(ask),
                Ok(None) => {
                    open = false;
                    break;
                }
                Err(_) => break,
            }
        }
        // While every call slot is busy, later asks still join this batch. The
        // acquire is made once and kept, so it never loses its place in line.
        let acquire = inner.permits().acquire_owned();
        tokio::pin!(acquire);
        let permit = loop {
            tokio::select! {
                biased;
                permit = &mut acquire => break permit.ok(),
                ask = asks.recv(), if open && batch.len() < max => match ask {
                    Some(ask) => batch.push(ask),
                    None => open = false,
                },
            }
        };
        let (kind, inner) = (kind.clone(), inner.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let items = batch.items();
            let answers = answer(&*kind, &inner, &items).await;
            batch.reply(answers);
        });
    }
}

/// Calls Moodle for `items` (the caller holds a call slot), splitting a
/// refused batch in halves while the refusal may be one item's fault.
fn answer<'a, B: Batchable>(
    kind: &'a B,
    inner: &'a Inner,
    items: &'a [B::Item],
) -> BoxFuture<'a, Vec<Reply<B::Answer>>> {
    Box::pin(async move {
        let request = kind.request(items);
        let called = inner.call_holding(&request).await;
        let size = u32::try_from(items.len()).ok();
        let (result, call) = inner.finish(request.function, called, size, |f, a| {
            kind.answers(f, a?, items)
        });
        match result {
            Ok(answers) => answers
                .into_iter()
                .map(|a| Reply {
                    result: Ok(a),
                    calls: vec![call.clone()],
                })
                .collect(),
            Err(e) if items.len() > 1 && kind.splits(&e) => {
                let (left, right) = items.split_at(items.len() / 2);
                let mut replies = answer(kind, inner, left).await;
                replies.extend(answer(kind, inner, right).await);
                for reply in &mut replies {
                    reply.calls.insert(0, call.clone());
                }
                replies
            }
            Err(e) => items
                .iter()
                .map(|_| Reply {
                    result: Err(e.clone()),
                    calls: vec![call.clone()],
                })
                .collect(),
        }
    })
}

/// Where the jobs asking for one item wait for its answer.
type Waiting<B> = Vec<oneshot::Sender<Reply<<B as Batchable>::Answer>>>;

/// The asks of one call: each distinct item once, with everyone waiting for it.
struct Batch<B: Batchable> {
    items: Vec<(B::Item, Waiting<B>)>,
    index: HashMap<B::Item, usize>,
}

impl<B: Batchable> Batch<B> {
    fn new(first: Ask<B>) -> Self {
        let mut batch = Batch {
            items: Vec::new(),
            index: HashMap::new(),
        };
        batch.push(first);
        batch
    }

    /// Distinct items (the call's size).
    fn len(&self) -> usize {
        self.items.len()
    }

    fn push(&mut self, ask: Ask<B>) {
        match self.index.get(&ask.item) {
            Some(&i) => self.items[i].1.push(ask.reply),
            None => {
                self.index.insert(ask.item.clone(), self.items.len());
                self.items.push((ask.item, vec![ask.reply]));
            }
        }
    }

    fn items(&self) -> Vec<B::Item> {
        self.items.iter().map(|(item, _)| item.clone()).collect()
    }

    /// Hands each waiting job its item's answer.
    fn reply(self, replies: Vec<Reply<B::Answer>>) {
        for ((_, waiting), reply) in self.items.into_iter().zip(replies) {
            for sender in waiting {
                // A job that stopped waiting (aborted at shutdown) needs no answer.
                let _ = sender.send(Reply {
                    result: reply.result.clone(),
                    calls: reply.calls.clone(),
                });
            }
        }
    }
}

/// The batcher of one tenant's client: a lane per kind of shared call.
pub(crate) struct Batches {
    users_by_id: Lane<UsersBy>,
    users_by_idnumber: Lane<UsersBy>,
    users_by_username: Lane<UsersBy>,
    users_by_email: Lane<UsersBy>,
    courses_by_id: Lane<CourseBy>,
    courses_by_idnumber: Lane<CourseBy>,
    courses_by_shortname: Lane<CourseBy>,
    enrol: Lane<Enrol>,
    unenrol: Lane<Unenrol>,
}

impl Batches {
    /// Lanes gathering for `window` before each call.
    pub(super) fn new(inner: Arc<Inner>, window: Duration) -> Self {
        let users = |field| Lane::new(UsersBy(field), inner.clone(), window);
        let courses = |field| Lane::new(CourseBy(field), inner.clone(), window);
        Batches {
            users_by_id: users(UserField::Id),
            users_by_idnumber: users(UserField::Idnumber),
            users_by_username: users(UserField::Username),
            users_by_email: users(UserField::Email),
            courses_by_id: courses("id"),
            courses_by_idnumber: courses("idnumber"),
            courses_by_shortname: courses("shortname"),
            enrol: Lane::new(Enrol, inner.clone(), window),
            unenrol: Lane::new(Unenrol, inner, window),
        }
    }

    /// The users whose `field` is `value`; a value Moodle's cleaning would
    /// change goes alone, so it cannot fail anyone else's look-up.
    pub(super) async fn users(&self, field: UserField, value: &str) -> Reply<Vec<User>> {
        let lane = match field {
            UserField::Id => &self.users_by_id,
            UserField::Idnumber => &self.users_by_idnumber,
            UserField::Username => &self.users_by_username,
            UserField::Email => &self.users_by_email,
        };
        if !survives_cleaning(field, value) {
            let request = f::users_by_field(field, &[value]);
            let called = lane.inner.call(&request).await;
            let (result, call) = lane.inner.finish(request.function, called, None, |f, a| {
                f::parse_user_list(f, a?)
            });
            return Reply {
                result,
                calls: vec![call],
            };
        }
        lane.ask(value.to_string()).await
    }

    /// The course whose `field` is `value`.
    pub(super) async fn course(&self, field: &'static str, value: &str) -> Reply<Option<Course>> {
        let lane = match field {
            "id" => &self.courses_by_id,
            "idnumber" => &self.courses_by_idnumber,
            _ => &self.courses_by_shortname,
        };
        lane.ask(value.to_string()).await
    }

    /// Enrols (or suspends, with `suspend`).
    pub(super) async fn enrol(&self, enrolment: Enrolment) -> Reply<()> {
        self.enrol.ask(enrolment).await
    }

    /// Unenrols.
    pub(super) async fn unenrol(&self, unenrolment: Unenrolment) -> Reply<()> {
        self.unenrol.ask(unenrolment).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: i64, email: &str) -> User {
        User {
            id,
            username: None,
            email: Some(email.into()),
            idnumber: None,
            firstname: None,
            lastname: None,
            suspended: None,
        }
    }

    #[test]
    fn each_value_gets_the_users_its_own_call_would_have_found() {
        let items = vec![
            "ada@example.com".to_string(),
            "Grace@Example.com".to_string(),
            "nobody@example.com".to_string(),
        ];
        let answer = serde_json::to_value(vec![
            user(7, "ada@example.com"),
            user(8, "grace@example.com"),
        ])
        .unwrap();
        let got = UsersBy(UserField::Email)
            .answers("core_user_get_users_by_field", answer, &items)
            .unwrap();
        let ids: Vec<Vec<i64>> = got
            .iter()
            .map(|u| u.iter().map(|u| u.id).collect())
            .collect();
        // An exact match; a match ignoring case (a MySQL site's answer); none.
        assert_eq!(ids, vec![vec![7], vec![8], vec![]]);
    }

    #[test]
    fn values_moodle_would_clean_differently_are_not_batched() {
        assert!(survives_cleaning(UserField::Id, "42"));
        assert!(!survives_cleaning(UserField::Id, "042"));
        assert!(!survives_cleaning(UserField::Id, "x"));
        assert!(survives_cleaning(UserField::Email, "ada@example.com"));
        assert!(!survives_cleaning(UserField::Email, " ada@example.com"));
        assert!(survives_cleaning(UserField::Username, "ada.l@x-y_z"));
        assert!(!survives_cleaning(UserField::Username, "Ada"));
        assert!(survives_cleaning(UserField::Idnumber, "apit-user-U9"));
        assert!(!survives_cleaning(UserField::Idnumber, "apit-user-\0"));
    }

    #[test]
    fn only_item_errors_split_a_batch() {
        let exception = |code: Option<&str>| MoodleError::Exception {
            function: "enrol_manual_enrol_users".into(),
            exception: "x".into(),
            errorcode: code.map(str::to_string),
            message: "m".into(),
            debuginfo: None,
        };
        assert!(about_an_item(&exception(Some("invalidparameter"))));
        assert!(about_an_item(&exception(Some("wsusercannotassign"))));
        assert!(about_an_item(&exception(None)));
        assert!(!about_an_item(&exception(Some("invalidtoken"))));
        assert!(!about_an_item(&exception(Some("dmlwriteexception"))));
        let transport = MoodleError::Transport {
            function: "enrol_manual_enrol_users".into(),
            detail: "reset".into(),
            timeout: false,
        };
        assert!(!about_an_item(&transport));
    }
}
