//! `apit-moodle-sync demo` as a process: the story it prints step by step (with replayable
//! curl lines), the simulated Moodle it leaves (its `--summary-json`), and the service it
//! keeps running for README's own curl examples until Ctrl-C.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_apit-moodle-sync");
/// README's tenant secrets, which the demo uses.
const SECRET: &str = "change-me-webhook-secret";
const ADMIN: &str = "change-me-admin-token";

/// The demo on free loopback ports, with `args`; logs at their default level.
fn demo(args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(["demo", "--listen", "127.0.0.1:0"])
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Waits for the child to exit, killing it after `limit`.
fn wait(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the demo did not stop within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The lines of a pipe, read on a thread.
fn lines(pipe: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (send, lines) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if send.send(line).is_err() {
                break;
            }
        }
    });
    lines
}

/// Reads lines until one satisfies `done`; returns everything read.
fn read_until(lines: &Receiver<String>, done: impl Fn(&str) -> bool) -> Vec<String> {
    let mut read = Vec::new();
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("the demo printed no more ({e}):\n{}", read.join("\n")));
        let stop = done(&line);
        read.push(line);
        if stop {
            return read;
        }
    }
}

/// The body of a printed `curl … -d '<body>'` line, unquoted.
fn curl_body(line: &str) -> Value {
    let quoted = line
        .split_once(" -d '")
        .map(|(_, rest)| rest)
        .and_then(|rest| rest.strip_suffix('\''))
        .unwrap_or_else(|| panic!("no -d '…' in {line}"));
    let body = quoted.replace(r"'\''", "'");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn find<'a>(items: &'a [Value], key: &str, value: &str) -> &'a Value {
    items
        .iter()
        .find(|v| v[key] == value)
        .unwrap_or_else(|| panic!("no {key} = {value} in {items:?}"))
}

#[test]
fn the_demo_tells_the_whole_story_and_leaves_moodle_as_told() {
    let dir = tempfile::tempdir().unwrap();
    let summary_path = dir.path().join("summary.json");
    let mut child = demo(&["--exit-after-story", "--summary-json"])
        .arg(&summary_path)
        .spawn()
        .expect("the binary runs");
    let stdout = lines(child.stdout.take().unwrap());
    let stderr = lines(child.stderr.take().unwrap());
    let status = wait(&mut child, Duration::from_secs(60));
    let out: Vec<String> = stdout.iter().collect();
    let err: Vec<String> = stderr.iter().collect();
    let text = out.join("\n");
    assert!(status.success(), "{status}\n{text}\n{}", err.join("\n"));
    // No log noise, no colours when not on a terminal.
    assert!(err.is_empty(), "stderr: {err:?}");
    assert!(!text.contains('\x1b'), "{text}");

    // Every step, in order, with its answer and its replay line.
    let steps = [
        ("[1/7]", "course-saved"),
        ("[2/7]", "booking-created"),
        ("[3/7]", "booking-created"),
        ("[4/7]", "booking-created"),
        ("[5/7]", "course-date-changed"),
        ("[6/7]", "booking-cancelled"),
        ("[7/7]", "grades/sync"),
    ];
    let mut at = 0;
    for (n, kind) in steps {
        let found = out[at..]
            .iter()
            .position(|l| l.starts_with(n) && l.ends_with(kind))
            .unwrap_or_else(|| panic!("no step {n} {kind} after line {at}:\n{text}"));
        at += found + 1;
        // The answer comes next (after a line of explanation at most).
        assert!(
            out[at..at + 2]
                .iter()
                .any(|l| l.contains("answer") && l.contains("HTTP 200 · succeeded · job ")),
            "{n}: {:?}",
            &out[at..at + 2]
        );
    }
    let replays: Vec<&str> = out
        .iter()
        .filter_map(|l| l.trim_start().strip_prefix("replay"))
        .map(str::trim_start)
        .collect();
    assert_eq!(replays.len(), 7, "{text}");
    for (line, (_, kind)) in replays.iter().zip(&steps[..6]) {
        assert!(line.starts_with("curl -sS "), "{line}");
        assert!(
            line.contains(&format!("'Authorization: Bearer {SECRET}'")),
            "{line}"
        );
        assert!(
            line.contains(&format!("/v1/tenants/acme/events/{kind}?wait=10'")),
            "{line}"
        );
        assert!(curl_body(line).is_object());
    }
    assert_eq!(curl_body(replays[0])["event_id"], "wf-1001-7");
    assert_eq!(curl_body(replays[3])["user"]["moodle_id"], 5);
    assert!(replays[6].contains(&format!("'Authorization: Bearer {ADMIN}'")));
    assert!(replays[6].ends_with("/v1/tenants/acme/grades/sync?wait=10'"));
    for said in [
        "course created: 2",
        "user created: 6 (username ada@example.com)",
        "user matched by email: 4",
        "user linked to the given Moodle user 5",
        "course 2 updated: startdate, enddate",
        "enrolment of user 6 in course 2 suspended",
        "course 2: 2 delegates, 2 scores written",
    ] {
        assert!(text.contains(said), "no {said:?} in:\n{text}");
    }

    // The simulated Moodle at the end, and what accessplanit was sent.
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(&summary_path).unwrap()).unwrap();
    let courses = summary["courses"].as_array().unwrap();
    assert_eq!(courses.len(), 1, "{courses:?}");
    let course = &courses[0];
    assert_eq!(course["idnumber"], "apit-course-C1001");
    assert_eq!(course["fullname"], "First Aid at Work");
    // The date change: 2027-07-01 09:00 and 2027-07-02 17:00 in London (BST).
    assert_eq!(course["startdate"], 1814428800);
    assert_eq!(course["enddate"], 1814544000);
    let course_id = course["id"].as_i64().unwrap();

    let users = summary["users"].as_array().unwrap();
    assert_eq!(users.len(), 3, "{users:?}");
    let ada = find(users, "email", "ada@example.com");
    assert_eq!(ada["idnumber"], "apit-user-U9");
    let grace = find(users, "email", "grace@example.com");
    assert_eq!(
        grace["username"], "ghopper",
        "the existing account, not a new one"
    );
    let alan = find(users, "email", "alan@example.com");
    let id = |u: &Value| u["id"].as_i64().unwrap();

    let enrolments = summary["enrolments"].as_array().unwrap();
    assert_eq!(enrolments.len(), 3, "{enrolments:?}");
    for (user, suspended) in [(ada, true), (grace, false), (alan, false)] {
        let e = enrolments
            .iter()
            .find(|e| e["userid"] == id(user))
            .unwrap_or_else(|| panic!("{user} is not enrolled: {enrolments:?}"));
        assert_eq!(e["courseid"], course_id);
        assert_eq!(e["roleids"], json!([5]));
        assert_eq!(e["suspended"], suspended, "{e}");
    }

    let writebacks = summary["writebacks"].as_array().unwrap();
    let of = |entity: &str, apit: &str| {
        writebacks
            .iter()
            .find(|w| w["entity"] == entity && w["accessplanit_id"] == apit)
            .unwrap_or_else(|| panic!("no {entity} {apit} write-back in {writebacks:?}"))
            .clone()
    };
    assert_eq!(of("course", "C1001")["moodle_id"], course_id);
    assert_eq!(of("user", "U9")["moodle_id"], id(ada));
    assert_eq!(of("user", "U10")["moodle_id"], id(grace));
    assert_eq!(of("delegate", "D556")["score"], 72.5);
    assert_eq!(of("delegate", "D557")["score"], 91.0);
    assert!(
        !writebacks.iter().any(|w| w["accessplanit_id"] == "D555"),
        "the cancelled booking's score was read: {writebacks:?}"
    );
    assert_eq!(writebacks.len(), 5, "{writebacks:?}");
    let jobs = summary["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 7);
    assert!(jobs.iter().all(|j| j["status"] == "succeeded"), "{jobs:?}");
}

#[tokio::test]
async fn the_demo_runs_on_for_readme_curl_examples_until_ctrl_c() {
    let mut child = demo(&[]).spawn().expect("the binary runs");
    let stdout = lines(child.stdout.take().unwrap());
    let _stderr = lines(child.stderr.take().unwrap());
    let printed = read_until(&stdout, |l| l.contains("Ctrl-C stops everything"));
    let events = printed
        .iter()
        .find_map(|l| l.split_once(" U=").map(|(_, rest)| rest))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no U= line:\n{}", printed.join("\n")))
        .to_string();
    assert!(events.ends_with("/v1/tenants/acme/events"), "{events}");

    // README's booking example, for a person of one's own.
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let answer: Value = http
        .post(format!("{events}/booking-created?wait=10"))
        .bearer_auth(SECRET)
        .json(&json!({
            "booking": {"id": "D900"},
            "course": {"id": "C1001", "label": "First Aid at Work", "type": "classroom",
                       "start": "2027-01-12T09:00:00Z", "end": "2027-01-14T17:00:00Z"},
            "user": {"id": "U99", "moodle_id": null, "first_name": "Mary",
                     "last_name": "Somerville", "email": "mary@example.com"},
            "role_id": null}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["status"], "succeeded", "{answer}");
    let user = answer["moodle"]["user_id"].as_i64().unwrap();
    // Its write-back is printed as it arrives.
    let live = read_until(&stdout, |l| l.starts_with("← written back"));
    let body: Value = serde_json::from_str(
        live.last()
            .unwrap()
            .trim_start_matches("← written back")
            .trim(),
    )
    .unwrap();
    assert_eq!(body["accessplanit_id"], "U99");
    assert_eq!(body["moodle_id"], user);
    let base = events.trim_end_matches("/v1/tenants/acme/events");
    let jobs = http
        .get(format!("{base}/v1/jobs?ref=D900"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(jobs.status(), reqwest::StatusCode::OK);
    let metrics = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), reqwest::StatusCode::OK);

    // Ctrl-C stops everything, with status 0.
    let pid = child.id().to_string();
    let sent = Command::new("kill").args(["-INT", &pid]).status().unwrap();
    assert!(sent.success());
    let status = wait(&mut child, Duration::from_secs(20));
    assert!(status.success(), "{status}");
    let rest: Vec<String> = stdout.iter().collect();
    assert!(rest.iter().any(|l| l.starts_with("stopped: ")), "{rest:?}");
}
