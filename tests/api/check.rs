//! `apit-moodle-sync check` as a process against the fake Moodle, and
//! `GET /v1/tenants/{tenant}/check` on the running service.

use std::process::Command;

use axum::http::{StatusCode as AxumStatus, header};
use reqwest::StatusCode;
use serde_json::Value;

use crate::support::*;

const BIN: &str = env!("CARGO_BIN_EXE_apit-moodle-sync");

/// What the CLI printed and how it exited.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Whether a table line is the row of `name`: a mark, a space, then the name.
fn names(line: &str, name: &str) -> bool {
    let mut chars = line.chars();
    chars.next();
    chars
        .as_str()
        .strip_prefix(' ')
        .and_then(|rest| rest.strip_prefix(name))
        .is_some_and(|rest| rest.starts_with("  "))
}

impl Run {
    /// The table row of `name` (its mark and detail), e.g. `"✗ token  …"`.
    fn row(&self, name: &str) -> &str {
        self.stdout
            .lines()
            .map(str::trim_start)
            .find(|l| names(l, name))
            .unwrap_or_else(|| panic!("no row {name} in:\n{}", self.stdout))
    }

    /// The fix printed under the row of `name`.
    fn fix(&self, name: &str) -> &str {
        let mut lines = self.stdout.lines().map(str::trim_start);
        lines
            .find(|l| names(l, name))
            .unwrap_or_else(|| panic!("no row {name} in:\n{}", self.stdout));
        lines
            .next()
            .and_then(|l| l.strip_prefix("fix: "))
            .unwrap_or_else(|| panic!("no fix under {name} in:\n{}", self.stdout))
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", self.stdout))
    }
}

/// A configuration for `moodle` and `receiver`, edited, written to a temp dir.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new(
        moodle: &FakeMoodle,
        receiver: &CallbackReceiver,
        edit: impl FnOnce(String) -> String,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", dir.path().join("unused.db").display());
        let toml = edit(test_config(&db, moodle, receiver));
        std::fs::write(dir.path().join("config.toml"), toml).unwrap();
        Setup { dir }
    }

    /// Runs `apit-moodle-sync --config <file> check <args>` off the runtime's thread,
    /// so the in-test fake Moodle keeps answering.
    async fn check(&self, args: &[&str]) -> Run {
        let config = self.dir.path().join("config.toml");
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let output = tokio::task::spawn_blocking(move || {
            Command::new(BIN)
                .arg("--config")
                .arg(config)
                .arg("check")
                .args(args)
                .env_remove("APIT_CONFIG")
                .env("RUST_BACKTRACE", "1")
                .output()
                .expect("the binary runs")
        })
        .await
        .unwrap();
        let run = Run {
            code: output.status.code().expect("exited"),
            stdout: String::from_utf8(output.stdout).unwrap(),
            stderr: String::from_utf8(output.stderr).unwrap(),
        };
        // Whatever happened, never a panic or a backtrace, and never the token.
        for text in [&run.stdout, &run.stderr] {
            assert!(!text.contains("panicked"), "{run:?}");
            assert!(!text.contains("stack backtrace"), "{run:?}");
        }
        run
    }
}

async fn fixtures() -> (FakeMoodle, CallbackReceiver) {
    (FakeMoodle::start().await, CallbackReceiver::start().await)
}

/// A web server that answers every request with `status`, `content_type` and `body`
/// (an SSO login page in front of Moodle, a receiver refusing credentials…); its URL.
async fn fixed_answer(status: u16, content_type: &'static str, body: &'static str) -> String {
    let app = axum::Router::new().fallback(move || async move {
        (
            AxumStatus::from_u16(status).unwrap(),
            [(header::CONTENT_TYPE, content_type)],
            body,
        )
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// A loopback address nothing listens on.
fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    url
}

fn with_moodle_url(toml: String, moodle: &FakeMoodle, url: &str) -> String {
    toml.replace(
        &format!("moodle_url = \"{}\"", moodle.url()),
        &format!("moodle_url = \"{url}\""),
    )
}

#[tokio::test]
async fn all_good_passes_every_check_and_changes_nothing() {
    let (moodle, receiver) = fixtures().await;
    let setup = Setup::new(&moodle, &receiver, |t| t);
    let run = setup.check(&[]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(!run.stdout.contains('✗'), "{}", run.stdout);
    assert!(run.stdout.contains("all checks passed"), "{}", run.stdout);
    for name in [
        "Moodle site",
        "token",
        "site address",
        "web-service functions",
        "course category 5",
        "enrolment role 5",
        "users by idnumber",
        "users by email",
        "write-back",
    ] {
        assert!(run.row(name).starts_with('✓'), "{name}: {}", run.stdout);
    }
    assert!(
        run.row("users by idnumber").contains("user 2"),
        "{}",
        run.stdout
    );

    let json = setup.check(&["--json"]).await;
    assert_eq!(json.code, 0, "{json:?}");
    let body = json.json();
    assert_eq!(body["ok"], true);
    let report = &body["tenants"][0];
    assert_eq!(report["tenant"], TENANT);
    assert_eq!(report["ok"], true);
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 9, "{report}");
    assert!(
        rows.iter()
            .all(|r| r["status"] == "pass" && r.get("fix").is_none()),
        "{report}"
    );

    // The probes are refused by Moodle: no course, no enrolment, no write-back.
    assert!(moodle.courses().is_empty(), "{:?}", moodle.courses());
    assert!(moodle.enrolments().is_empty(), "{:?}", moodle.enrolments());
    assert!(receiver.received().is_empty());
    assert!(moodle.calls().iter().all(|c| !c.token_in_query));
}

#[tokio::test]
async fn an_invalid_token_fails_once_and_the_rest_is_not_run() {
    let (moodle, receiver) = fixtures().await;
    moodle.set_token_valid(false);
    let run = Setup::new(&moodle, &receiver, |t| t).check(&[]).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.row("Moodle site").starts_with('✓'), "{}", run.stdout);
    let token = run.row("token");
    assert!(token.starts_with('✗'), "{token}");
    assert!(
        token.contains("Moodle does not accept the token"),
        "{token}"
    );
    assert!(
        run.fix("token").starts_with(
            "the token is not valid: create a new token for the integration user and update \
             moodle_token"
        ),
        "{}",
        run.stdout
    );
    for name in [
        "site address",
        "web-service functions",
        "course category 5",
        "users by email",
    ] {
        assert_eq!(
            run.row(name).split_whitespace().next(),
            Some("-"),
            "{}",
            run.stdout
        );
        assert!(
            run.row(name).ends_with("not run: the token was refused"),
            "{}",
            run.stdout
        );
    }
    assert_eq!(run.stdout.matches('✗').count(), 1, "{}", run.stdout);
    assert!(!run.stdout.contains(&moodle.token()));
    // The write-back does not depend on Moodle.
    assert!(run.row("write-back").starts_with('✓'), "{}", run.stdout);
}

#[tokio::test]
async fn a_function_missing_from_the_service_names_it_and_the_fix() {
    let (moodle, receiver) = fixtures().await;
    moodle.remove_function("enrol_manual_enrol_users");
    let run = Setup::new(&moodle, &receiver, |t| t).check(&[]).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.row("web-service functions")
            .ends_with("missing from the token's service: enrol_manual_enrol_users"),
        "{}",
        run.stdout
    );
    assert_eq!(
        run.fix("web-service functions"),
        "add the function enrol_manual_enrol_users to the External Service used by this token \
         (Site administration › Server › Web services › External services › Functions)"
    );
    // The role is checked with that function: not run, not a second failure.
    assert!(
        run.row("enrolment role 5")
            .ends_with("not run: enrol_manual_enrol_users is not in the token's service (see web-service functions)"),
        "{}",
        run.stdout
    );
    assert!(
        run.row("course category 5").starts_with('✓'),
        "{}",
        run.stdout
    );
    assert_eq!(run.stdout.matches('✗').count(), 1, "{}", run.stdout);
    assert_eq!(moodle.call_count("enrol_manual_enrol_users"), 0);
}

#[tokio::test]
async fn grade_functions_are_required_only_when_grades_are_polled() {
    let (moodle, receiver) = fixtures().await;
    moodle.remove_function("core_completion_get_course_completion_status");
    let run = Setup::new(&moodle, &receiver, |t| t).check(&[]).await;
    assert_eq!(run.code, 0, "{run:?}");

    let polled = |t: String| {
        format!("{t}\n[tenants.{TENANT}.grades]\npoll_interval = \"10m\"\ncompletion = true\n")
    };
    let run = Setup::new(&moodle, &receiver, polled).check(&[]).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.row("web-service functions").ends_with(
            "missing from the token's service: core_completion_get_course_completion_status"
        ),
        "{}",
        run.stdout
    );
}

#[tokio::test]
async fn an_unknown_category_fails_with_the_category_fix() {
    let (moodle, receiver) = fixtures().await;
    let setup = Setup::new(&moodle, &receiver, |t| {
        t.replace("category_id = 5", "category_id = 99")
    });
    let run = setup.check(&[]).await;
    assert_eq!(run.code, 1, "{run:?}");
    let row = run.row("course category 99");
    assert!(row.starts_with('✗'), "{row}");
    assert!(
        row.contains("category 99 cannot be used to create courses"),
        "{row}"
    );
    assert!(
        run.fix("course category 99").starts_with(
            "category_id does not exist on this Moodle (use the id from the category's edit URL)"
        ),
        "{}",
        run.stdout
    );
    assert_eq!(run.stdout.matches('✗').count(), 1, "{}", run.stdout);

    // A category added in Moodle passes (and still nothing is created).
    let added = moodle.add_category("Training");
    let run = Setup::new(&moodle, &receiver, |t| {
        t.replace("category_id = 5", &format!("category_id = {added}"))
    })
    .check(&[])
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(moodle.courses().is_empty());
}

#[tokio::test]
async fn a_role_that_cannot_be_assigned_fails_with_the_role_fix() {
    let (moodle, receiver) = fixtures().await;
    for role in ["99", "1"] {
        // 99 does not exist; 1 (manager) exists but the integration role may not assign it.
        let run = Setup::new(&moodle, &receiver, |t| {
            t.replace("role_id = 5", &format!("role_id = {role}"))
        })
        .check(&[])
        .await;
        assert_eq!(run.code, 1, "{run:?}");
        let name = format!("enrolment role {role}");
        assert!(run.row(&name).starts_with('✗'), "{}", run.stdout);
        assert!(
            run.row(&name)
                .contains(&format!("the integration user may not assign role {role}")),
            "{}",
            run.stdout
        );
        assert!(
            run.fix(&name).starts_with(&format!(
                "allow the integration user's role to assign role {role} (Site administration › \
                 Users › Permissions › Define roles › Allow role assignments), and check that \
                 role {role} exists"
            )),
            "{}",
            run.stdout
        );
    }
    assert!(moodle.enrolments().is_empty());
}

#[tokio::test]
async fn the_probes_also_catch_missing_capabilities() {
    let (moodle, receiver) = fixtures().await;
    moodle.lack_capability("moodle/course:create");
    moodle.lack_capability("enrol/manual:enrol");
    let run = Setup::new(&moodle, &receiver, |t| t).check(&[]).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.row("course category 5")
            .contains("the integration user lacks a capability"),
        "{}",
        run.stdout
    );
    assert!(
        run.fix("course category 5")
            .contains("(moodle/course:create) at system level"),
        "{}",
        run.stdout
    );
    assert!(
        run.fix("enrolment role 5")
            .contains("enrol/manual:enrol, moodle/role:assign"),
        "{}",
        run.stdout
    );

    moodle.set_site_maintenance(true);
    let run = Setup::new(&moodle, &receiver, |t| t).check(&[]).await;
    assert!(
        run.row("token").contains("maintenance mode"),
        "{}",
        run.stdout
    );
    assert!(
        run.fix("token").contains("leaves maintenance mode"),
        "{}",
        run.stdout
    );
}

#[tokio::test]
async fn hidden_user_details_fail_with_the_capability_to_grant() {
    let (moodle, receiver) = fixtures().await;
    moodle.lack_capability("moodle/user:viewalldetails");
    moodle.lack_capability("moodle/site:viewuseridentity");
    let run = Setup::new(&moodle, &receiver, |t| t).check(&[]).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.row("users by idnumber")
            .contains("without its username"),
        "{}",
        run.stdout
    );
    assert_eq!(
        run.fix("users by idnumber"),
        "give the integration user's role moodle/user:viewalldetails at system level (Site \
         administration › Users › Permissions › Define roles)"
    );
    assert!(
        run.row("users by email").contains("without its email"),
        "{}",
        run.stdout
    );
    assert!(
        run.fix("users by email")
            .contains("moodle/site:viewuseridentity"),
        "{}",
        run.stdout
    );

    moodle.lack_capability("moodle/user:viewdetails");
    let run = Setup::new(&moodle, &receiver, |t| t).check(&[]).await;
    assert!(
        run.row("users by idnumber")
            .contains("Moodle returns no other user (asked for user 2 and 1)"),
        "{}",
        run.stdout
    );
    assert!(
        run.fix("users by idnumber")
            .contains("moodle/user:viewdetails")
    );
}

#[tokio::test]
async fn moodle_down_is_one_clear_line() {
    let (moodle, receiver) = fixtures().await;
    let down = closed_port_url();
    let run = Setup::new(&moodle, &receiver, |t| with_moodle_url(t, &moodle, &down))
        .check(&[])
        .await;
    assert_eq!(run.code, 1, "{run:?}");
    let site = run.row("Moodle site");
    assert!(
        site.contains(&format!(
            "Moodle is unreachable at {down}: could not connect"
        )),
        "{site}"
    );
    assert!(
        run.fix("Moodle site")
            .starts_with("check the host name and port in moodle_url"),
        "{}",
        run.stdout
    );
    assert!(
        run.row("token")
            .ends_with("not run: the Moodle site check failed")
    );
    assert_eq!(run.stdout.matches('✗').count(), 1, "{}", run.stdout);
}

#[tokio::test]
async fn a_tls_failure_is_named_as_such() {
    let (moodle, receiver) = fixtures().await;
    // The fake speaks plain HTTP: a TLS handshake with it fails.
    let https = moodle.url().replace("http://", "https://");
    let run = Setup::new(&moodle, &receiver, |t| with_moodle_url(t, &moodle, &https))
        .check(&[])
        .await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.row("Moodle site")
            .contains(&format!("the TLS handshake with {https} failed: ")),
        "{}",
        run.stdout
    );
    assert!(
        run.fix("Moodle site").contains("certificate"),
        "{}",
        run.stdout
    );
}

#[tokio::test]
async fn a_url_answering_html_is_reported_as_the_wrong_address() {
    let (moodle, receiver) = fixtures().await;
    let login = fixed_answer(
        200,
        "text/html; charset=utf-8",
        "<!DOCTYPE html><html><head><title>Log in to the site</title></head><body>Log in</body></html>",
    )
    .await;
    let run = Setup::new(&moodle, &receiver, |t| with_moodle_url(t, &moodle, &login))
        .check(&[])
        .await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.row("Moodle site")
            .contains("Moodle answered with a web page instead of web-service JSON"),
        "{}",
        run.stdout
    );
    assert!(
        run.fix("Moodle site").starts_with(
            "moodle_url is not the site's wwwroot (it answered with a web page): set it to the \
             site address exactly as in Moodle's config.php"
        ),
        "{}",
        run.stdout
    );
    assert!(
        run.row("token")
            .ends_with("not run: the Moodle site check failed")
    );

    // A path under the site that is not Moodle's root: the fake's own 404 page.
    let sub = format!("{}/moodle", moodle.url());
    let run = Setup::new(&moodle, &receiver, |t| with_moodle_url(t, &moodle, &sub))
        .check(&[])
        .await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.row("Moodle site")
            .contains("there is no Moodle web-service endpoint at this address"),
        "{}",
        run.stdout
    );
}

#[tokio::test]
async fn a_token_of_another_site_is_caught_by_the_site_address() {
    let (moodle, receiver) = fixtures().await;
    // Same server, other name: Moodle says its wwwroot is the 127.0.0.1 one.
    let alias = moodle.url().replace("127.0.0.1", "localhost");
    let run = Setup::new(&moodle, &receiver, |t| with_moodle_url(t, &moodle, &alias))
        .check(&[])
        .await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.row("site address").contains(&format!(
            "the site calls itself {} but moodle_url is {alias}",
            moodle.url()
        )),
        "{}",
        run.stdout
    );
    assert!(
        run.fix("site address")
            .starts_with(&format!("set moodle_url to {} exactly", moodle.url())),
        "{}",
        run.stdout
    );
    assert!(
        run.row("course category 5")
            .ends_with("not run: moodle_url is not the token's site"),
        "{}",
        run.stdout
    );
}

#[tokio::test]
async fn rest_switched_off_gets_the_web_services_fix() {
    let (moodle, receiver) = fixtures().await;
    moodle.set_rest_disabled(true);
    let run = Setup::new(&moodle, &receiver, |t| t).check(&[]).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.row("Moodle site").contains("(HTTP 403)"),
        "{}",
        run.stdout
    );
    assert!(run.fix("Moodle site").contains("enable web services"));
}

#[tokio::test]
async fn write_back_targets_are_probed_without_writing() {
    let (moodle, receiver) = fixtures().await;
    let down = format!("{}/moodle-ids", closed_port_url());
    let run = Setup::new(&moodle, &receiver, |t| t.replace(&receiver.url, &down))
        .check(&[])
        .await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.row("write-back")
            .contains("the callback URL could not be reached"),
        "{}",
        run.stdout
    );
    assert!(run.fix("write-back").starts_with("check callback.url"));

    let refusing = fixed_answer(401, "application/json", "{}").await;
    let run = Setup::new(&moodle, &receiver, |t| t.replace(&receiver.url, &refusing))
        .check(&[])
        .await;
    assert!(
        run.row("write-back")
            .contains("refused the bearer token (HEAD answered HTTP 401)"),
        "{}",
        run.stdout
    );
    assert_eq!(
        run.fix("write-back"),
        "set callback.bearer_token to the token the receiver expects"
    );

    let none = |t: String| {
        let cut = t.find(&format!("[tenants.{TENANT}.callback]")).unwrap();
        t[..cut].to_string()
    };
    let run = Setup::new(&moodle, &receiver, none).check(&[]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.row("write-back").starts_with("i "), "{}", run.stdout);
    assert!(receiver.received().is_empty());
}

#[tokio::test]
async fn tenants_are_chosen_by_name() {
    let (moodle, receiver) = fixtures().await;
    let other = FakeMoodle::start().await;
    other.set_token_valid(false);
    let two = |t: String| {
        format!(
            "{t}\n[tenants.beta]\nwebhook_secret = \"s\"\nmoodle_url = \"{}\"\nmoodle_token = \"{}\"\ncategory_id = 5\n",
            other.url(),
            other.token()
        )
    };
    let setup = Setup::new(&moodle, &receiver, two);
    let all = setup.check(&[]).await;
    assert_eq!(all.code, 1, "{all:?}");
    assert!(all.stdout.contains("tenant acme ("), "{}", all.stdout);
    assert!(all.stdout.contains("tenant beta ("), "{}", all.stdout);

    let acme = setup.check(&["--tenant", TENANT, "--json"]).await;
    assert_eq!(acme.code, 0, "{acme:?}");
    let body = acme.json();
    assert_eq!(body["tenants"].as_array().unwrap().len(), 1);
    assert_eq!(body["tenants"][0]["tenant"], TENANT);

    let unknown = setup.check(&["--tenant", "gamma"]).await;
    assert_eq!(unknown.code, 2, "{unknown:?}");
    assert!(
        unknown
            .stderr
            .contains("no tenant gamma in the configuration (configured: acme, beta)"),
        "{unknown:?}"
    );
    assert!(unknown.stdout.is_empty());
}

#[tokio::test]
async fn the_admin_endpoint_answers_the_report() {
    let app = spawn_app().await;
    let path = format!("/v1/tenants/{TENANT}/check");
    let good = app.admin_get(&path).await;
    assert_eq!(good.status, StatusCode::OK, "{:?}", good.body);
    assert_eq!(good.body["ok"], true, "{}", good.body);
    assert_eq!(good.body["tenant"], TENANT);
    assert_eq!(good.body["rows"][0]["id"], "site");

    app.moodle.remove_function("enrol_manual_enrol_users");
    let bad = app.admin_get(&path).await;
    assert_eq!(bad.status, StatusCode::OK, "a failed check is still a 200");
    assert_eq!(bad.body["ok"], false);
    let functions = bad.body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "functions")
        .unwrap();
    assert_eq!(functions["status"], "fail");
    assert!(
        functions["fix"]
            .as_str()
            .unwrap()
            .starts_with("add the function enrol_manual_enrol_users"),
        "{functions}"
    );

    assert_eq!(app.get(&path).await.status, StatusCode::UNAUTHORIZED);
    let unknown = app.admin_get("/v1/tenants/nobody/check").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.content_type, "application/problem+json");
    // Readiness stays about the store.
    assert_eq!(app.get("/readyz").await.status, StatusCode::OK);
}

#[tokio::test]
async fn the_accessplanit_api_is_asked_for_a_token_or_read_with_the_key() {
    let (moodle, receiver) = fixtures().await;
    let accessplanit = |url: String, credentials: &'static str, fields: &'static str| {
        move |t: String| {
            let cut = t.find(&format!("[tenants.{TENANT}.callback]")).unwrap();
            format!(
                "{}[tenants.{TENANT}.callback]\nkind = \"accessplanit\"\nurl = \"{url}/accessplan\"\n{credentials}\n{fields}\n",
                &t[..cut]
            )
        }
    };
    let password = "username = \"apit\"\npassword = \"pw\"";
    let fields = "course_field = \"MoodleCourseID\"\ntemplate_field = \"MoodleTemplateID\"";

    let issuing = fixed_answer(
        200,
        "application/json",
        r#"{"access_token":"t","expires_in":3600}"#,
    )
    .await;
    let run = Setup::new(
        &moodle,
        &receiver,
        accessplanit(issuing.clone(), password, fields),
    )
    .check(&[])
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.row("write-back")
            .contains("a token was issued for apit"),
        "{}",
        run.stdout
    );
    assert!(
        run.row("write-back fields")
            .contains("course_field = MoodleCourseID, template_field = MoodleTemplateID"),
        "{}",
        run.stdout
    );

    let refusing = fixed_answer(401, "application/json", "{}").await;
    let run = Setup::new(
        &moodle,
        &receiver,
        accessplanit(refusing.clone(), password, ""),
    )
    .check(&[])
    .await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.row("write-back")
            .contains("the accessplanit API refused the callback username/password (HTTP 401)"),
        "{}",
        run.stdout
    );
    assert!(
        run.fix("write-back")
            .starts_with("set callback.username and callback.password")
    );
    assert!(
        run.row("write-back fields")
            .contains("callback.course_field, callback.template_field not set"),
        "{}",
        run.stdout
    );

    let key = "bearer_token = \"key\"";
    let run = Setup::new(&moodle, &receiver, accessplanit(issuing, key, fields))
        .check(&[])
        .await;
    assert!(
        run.row("write-back")
            .contains("the API key read a User (HTTP 200)"),
        "{}",
        run.stdout
    );
    let run = Setup::new(&moodle, &receiver, accessplanit(refusing, key, fields))
        .check(&[])
        .await;
    assert!(
        run.row("write-back")
            .contains("the accessplanit API refused the API key (HTTP 401)"),
        "{}",
        run.stdout
    );
    assert!(run.fix("write-back").starts_with("create an API key"));
}
