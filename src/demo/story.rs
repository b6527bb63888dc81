//! The scripted story, sent over HTTP exactly as accessplanit sends it (the tenant's
//! bearer secret, README's bodies), each step printed with what it did in Moodle, what
//! was written back, and the `curl` line that replays it.

use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::Value;

use super::output::{self, INDENT, Style, labelled};
use super::receiver::Receiver;
use super::{ADMIN_TOKEN, TENANT, WEBHOOK_SECRET};
use crate::simulator::{MoodleSimulator, UserSeed};

/// How long a request waits for its job (`?wait=`), and the story for write-backs.
const WAIT_SECS: u64 = 10;
/// How many steps the story has.
const STEPS: usize = 7;

/// The course of the story as bookings carry it (README's booking example).
const COURSE: &str = r#"{"id": "C1001", "label": "First Aid at Work", "type": "classroom", "start": "2027-01-12T09:00:00Z", "end": "2027-01-14T17:00:00Z"}"#;

/// README's course-saved example.
const COURSE_SAVED: &str = r#"{"event_id": "wf-1001-7", "course": {"id": "C1001", "label": "First Aid at Work", "type": "classroom", "sync_to_moodle": "Yes", "moodle_id": "", "start": "12/01/2027 09:00", "end": "2027-01-14 17:00", "template": {"id": "T77", "name": "First Aid", "aims": "<p>Aims…</p>"}}}"#;

/// README's course-date-changed example.
const DATE_CHANGED: &str =
    r#"{"course": {"id": "C1001", "start": "2027-07-01 09:00", "end": "2027-07-02 17:00"}}"#;

/// README's booking-cancelled example.
const CANCELLED: &str =
    r#"{"booking": {"id": "D555"}, "course": {"id": "C1001"}, "user": {"id": "U9"}}"#;

/// A booking-created body like README's, for one delegate.
fn booking(booking_id: &str, user: &str) -> String {
    format!(
        r#"{{"booking": {{"id": "{booking_id}"}}, "course": {COURSE}, "user": {user}, "role_id": null}}"#
    )
}

/// README's delegate: a new person.
const ADA: &str = r#"{"id": "U9", "moodle_id": null, "first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com"}"#;
/// Already in Moodle, unknown to the service: found by email.
const GRACE: &str = r#"{"id": "U10", "moodle_id": null, "first_name": "Grace", "last_name": "Hopper", "email": "grace@example.com"}"#;

/// Linked: accessplanit already holds this person's Moodle ID.
fn alan(moodle_id: i64) -> String {
    format!(
        r#"{{"id": "U11", "moodle_id": {moodle_id}, "first_name": "Alan", "last_name": "Turing", "email": "alan@example.com"}}"#
    )
}

/// What the story sends and prints through.
pub struct Stage<'a> {
    pub http: reqwest::Client,
    /// The service, e.g. `http://127.0.0.1:8080`.
    pub base: String,
    pub moodle: &'a MoodleSimulator,
    pub receiver: &'a Receiver,
    pub style: Style,
}

/// One step told: for the summary.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Told {
    pub step: usize,
    pub kind: String,
    pub job_id: String,
    pub status: String,
}

/// The scores the story sets in Moodle.
const GRACE_SCORE: f64 = 72.5;
const ALAN_SCORE: f64 = 91.0;

/// Seeds the two people already in Moodle, then tells the story; every job must succeed.
pub async fn tell(stage: &Stage<'_>) -> anyhow::Result<Vec<Told>> {
    let s = stage.style;
    let grace = stage.moodle.add_user(UserSeed {
        firstname: "Grace".into(),
        lastname: "Hopper".into(),
        ..UserSeed::new("ghopper", "grace@example.com")
    });
    let alan_id = stage.moodle.add_user(UserSeed {
        firstname: "Alan".into(),
        lastname: "Turing".into(),
        ..UserSeed::new("aturing", "alan@example.com")
    });
    println!(
        "{}",
        s.bold("Already in the simulated Moodle before the story:")
    );
    println!(
        "  user {grace}  Grace Hopper <grace@example.com>  an account the service has never seen"
    );
    println!(
        "  user {alan_id}  Alan Turing <alan@example.com>    accessplanit already holds his Moodle ID ({alan_id})"
    );
    println!();

    let mut told = Vec::new();
    let saved = stage
        .event(
            1,
            "A classroom course is saved in accessplanit",
            "course-saved",
            COURSE_SAVED,
        )
        .await?;
    told.push(saved.told);
    let course = saved.outcome["moodle"]["course_id"]
        .as_i64()
        .context("course-saved did not say which Moodle course it made")?;

    let bookings = [
        (
            2,
            "Ada Lovelace is booked: a new person",
            booking("D555", ADA),
        ),
        (
            3,
            "Grace Hopper is booked: already in Moodle, matched by email",
            booking("D556", GRACE),
        ),
        (
            4,
            "Alan Turing is booked: linked, his Moodle ID comes with the booking",
            booking("D557", &alan(alan_id)),
        ),
    ];
    for (n, title, body) in &bookings {
        let step = stage.event(*n, title, "booking-created", body).await?;
        told.push(step.told);
    }

    let step = stage
        .event(
            5,
            "The course moves to July: its dates change",
            "course-date-changed",
            DATE_CHANGED,
        )
        .await?;
    told.push(step.told);

    let step = stage
        .event(
            6,
            "Ada's booking is cancelled (on_cancel = suspend)",
            "booking-cancelled",
            CANCELLED,
        )
        .await?;
    told.push(step.told);

    stage.set_score(course, grace, GRACE_SCORE)?;
    stage.set_score(course, alan_id, ALAN_SCORE)?;
    let step = stage
        .grades(
            7,
            &format!(
                "Scores are read back: Grace {GRACE_SCORE} and Alan {ALAN_SCORE} were graded in Moodle"
            ),
        )
        .await?;
    told.push(step.told);
    Ok(told)
}

/// A step's job answer, and its entry for the summary.
struct Step {
    outcome: Value,
    told: Told,
}

impl Stage<'_> {
    /// Sends one event as accessplanit does, with `?wait=` so the answer is the outcome.
    async fn event(&self, n: usize, title: &str, kind: &str, body: &str) -> anyhow::Result<Step> {
        let url = format!(
            "{}/v1/tenants/{TENANT}/events/{kind}?wait={WAIT_SECS}",
            self.base
        );
        self.heading(n, title, kind);
        let request = self
            .http
            .post(&url)
            .bearer_auth(WEBHOOK_SECRET)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        let replay = output::curl_post_json(&url, WEBHOOK_SECRET, body);
        self.run(n, kind, request, replay).await
    }

    /// Sets a delegate's course total in the simulated Moodle, as a trainer's grading would.
    fn set_score(&self, course: i64, user: i64, score: f64) -> anyhow::Result<()> {
        let known_course = self.moodle.courses().iter().any(|c| c.id == course);
        let known_user = self.moodle.users().iter().any(|u| u.id == user);
        if !known_course || !known_user {
            bail!("the simulated Moodle has no course {course} with user {user} to grade");
        }
        self.moodle.set_grade(course, user, Some(score));
        Ok(())
    }

    /// A grades pass now, as an operator (or the poller) runs it.
    async fn grades(&self, n: usize, title: &str) -> anyhow::Result<Step> {
        let url = format!(
            "{}/v1/tenants/{TENANT}/grades/sync?wait={WAIT_SECS}",
            self.base
        );
        self.heading(n, title, "grades/sync");
        println!(
            "{INDENT}{}",
            self.style
                .dim("(the scores were set in the simulator; Ada's cancelled booking is not read)")
        );
        let request = self.http.post(&url).bearer_auth(ADMIN_TOKEN);
        let replay = output::curl_post(&url, ADMIN_TOKEN);
        self.run(n, "grades-sync", request, replay).await
    }

    fn heading(&self, n: usize, title: &str, what: &str) {
        let s = self.style;
        println!(
            "{} {}  {}",
            s.bold(&format!("[{n}/{STEPS}]")),
            s.bold(title),
            s.dim(what)
        );
    }

    /// Sends the request, waits for the job's write-backs, prints the step.
    async fn run(
        &self,
        n: usize,
        kind: &str,
        request: reqwest::RequestBuilder,
        replay: String,
    ) -> anyhow::Result<Step> {
        let s = self.style;
        let before = self.receiver.count();
        let response = request
            .send()
            .await
            .with_context(|| format!("step {n} ({kind}): the service did not answer"))?;
        let http = response.status();
        let text = response.text().await.unwrap_or_default();
        let outcome: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if http != reqwest::StatusCode::OK {
            bail!("step {n} ({kind}): the service answered HTTP {http}: {text}");
        }
        let job_id = outcome["job_id"].as_str().unwrap_or_default().to_string();
        let status = outcome["status"].as_str().unwrap_or("?").to_string();
        let calls = output::calls(&outcome);
        let answer = format!(
            "HTTP {} · {} · job {job_id} · {} Moodle call{}",
            http.as_u16(),
            s.status(&status),
            calls.len(),
            if calls.len() == 1 { "" } else { "s" }
        );
        print!("{}", labelled(s, "answer", &[answer]));
        print!("{}", labelled(s, "in Moodle", &output::steps(&outcome)));
        if let Some(ids) = output::moodle_ids(&outcome) {
            print!("{}", labelled(s, "Moodle IDs", &[ids]));
        }
        if !calls.is_empty() {
            print!("{}", labelled(s, "calls", &calls));
        }
        if status == "succeeded" {
            self.writebacks_done(&job_id).await?;
        }
        let written = self.receiver.since(before);
        let written = if written.is_empty() {
            vec![s.dim("nothing (no new Moodle ID or score)")]
        } else {
            written
        };
        print!("{}", labelled(s, "written back", &written));
        print!("{}", labelled(s, "replay", &[replay]));
        println!();
        if status != "succeeded" {
            bail!("step {n} ({kind}) ended {status}, not succeeded: {outcome}");
        }
        Ok(Step {
            told: Told {
                step: n,
                kind: kind.to_string(),
                job_id,
                status,
            },
            outcome,
        })
    }

    /// Waits until every write-back the job queued has been delivered (or given up on).
    async fn writebacks_done(&self, job_id: &str) -> anyhow::Result<()> {
        let url = format!("{}/v1/jobs/{job_id}", self.base);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(WAIT_SECS);
        loop {
            let job: Value = self
                .http
                .get(&url)
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .with_context(|| format!("cannot read job {job_id}"))?
                .json()
                .await
                .with_context(|| format!("cannot read job {job_id}"))?;
            let writebacks = job["writebacks"].as_array().cloned().unwrap_or_default();
            let pending: Vec<&Value> = writebacks
                .iter()
                .filter(|w| w["status"] == "pending")
                .collect();
            if pending.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                let errors: Vec<&str> = pending
                    .iter()
                    .filter_map(|w| w["last_error"].as_str())
                    .collect();
                bail!(
                    "job {job_id}: {} write-back(s) not delivered within {WAIT_SECS}s: {}",
                    pending.len(),
                    errors.join("; ")
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_body_is_json_like_the_readme() {
        for body in [
            COURSE_SAVED.to_string(),
            DATE_CHANGED.to_string(),
            CANCELLED.to_string(),
            booking("D555", ADA),
            booking("D556", GRACE),
            booking("D557", &alan(5)),
        ] {
            let parsed: Value =
                serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
            assert!(parsed.is_object());
        }
        let readme = include_str!("../../README.md");
        // The bodies are README's own: course, delegate and dates as documented there.
        for fragment in [
            r#""event_id": "wf-1001-7""#,
            r#""start": "12/01/2027 09:00", "end": "2027-01-14 17:00""#,
            r#""start": "2027-07-01 09:00", "end": "2027-07-02 17:00""#,
            r#""booking": {"id": "D555"}, "course": {"id": "C1001"}, "user": {"id": "U9"}"#,
            r#""email": "ada@example.com""#,
        ] {
            assert!(readme.contains(fragment), "README lacks {fragment}");
        }
    }
}
