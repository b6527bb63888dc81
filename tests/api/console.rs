//! The operator console over HTTP, as a browser without JavaScript sees it:
//! sign-in and its cookie, the security headers, CSRF on every form, the
//! pages' content, Run now, bulk retry, the Check page, and the scope of an
//! operator. (The same in a real browser: `browser.rs`.)

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use crate::support::*;

pub const OTHER_TENANT: &str = "beta";
pub const OTHER_SECRET: &str = "test-webhook-secret-beta-22c1";
pub const OPERATOR: &str = "acme-support";
pub const OPERATOR_TOKEN: &str = "test-operator-token-acme-51d0";
/// A Moodle course id the simulator does not have (until a test seeds it).
pub const MISSING_COURSE: i64 = 4242;

/// The test configuration plus a second tenant (on the same simulator, with
/// its own idnumber prefix) and an operator who sees only `acme`.
pub fn two_tenants_and_an_operator(toml: String, moodle_url: &str, moodle_token: &str) -> String {
    format!(
        r#"{toml}
[tenants.{OTHER_TENANT}]
webhook_secret = "{OTHER_SECRET}"
moodle_url = "{moodle_url}"
moodle_token = "{moodle_token}"
category_id = 5
idnumber_prefix = "beta-"
moodle_timeout = "2s"

[operators.{OPERATOR}]
token = "{OPERATOR_TOKEN}"
tenants = ["{TENANT}"]
"#
    )
}

/// The service with two tenants and a scoped operator.
pub async fn spawn_console_app() -> TestApp {
    let moodle = FakeMoodle::start().await;
    let (url, token) = (moodle.url(), moodle.token());
    start(
        TestDb::sqlite(),
        moodle,
        CallbackReceiver::start().await,
        move |toml| two_tenants_and_an_operator(toml, &url, &token),
    )
    .await
}

/// A booking whose course names a Moodle course that does not exist: the job fails
/// with a data error (until the course is seeded).
pub fn booking_on_missing_course(booking_id: &str) -> Value {
    let mut body = booking(booking_id, "C77", "U1", "ada@example.com");
    body["course"]["moodle_id"] = json!(MISSING_COURSE);
    body
}

/// Posts an event for the second tenant.
pub async fn post_other(app: &TestApp, kind: &str, body: &Value) -> Answer {
    let r = app
        .http
        .post(format!(
            "{}/v1/tenants/{OTHER_TENANT}/events/{kind}?wait=10",
            app.base
        ))
        .bearer_auth(OTHER_SECRET)
        .json(body)
        .send()
        .await
        .unwrap();
    Answer::from_response(r).await
}

/// A console page as the client got it.
#[derive(Debug)]
pub struct Page {
    pub url: String,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub html: String,
}

impl Page {
    /// Where a redirect points.
    pub fn location(&self) -> &str {
        self.headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The first CSRF field of the page's forms.
    pub fn csrf(&self) -> String {
        let at = self
            .html
            .find(r#"name="csrf" value=""#)
            .unwrap_or_else(|| panic!("no CSRF field in:\n{}", self.html));
        let rest = &self.html[at + r#"name="csrf" value=""#.len()..];
        rest[..rest.find('"').unwrap()].to_string()
    }

    /// The page's text without tags (what a reader sees, roughly).
    pub fn text(&self) -> String {
        let mut out = String::new();
        let mut in_tag = false;
        for c in self.html.chars() {
            match c {
                '<' => in_tag = true,
                '>' => {
                    in_tag = false;
                    out.push(' ');
                }
                c if !in_tag => out.push(c),
                _ => {}
            }
        }
        out.replace("&amp;", "&")
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A browser without JavaScript: keeps cookies, does not follow redirects.
pub struct Client {
    http: reqwest::Client,
    base: String,
    pub cookies: BTreeMap<String, String>,
    /// Every `Set-Cookie` seen, as sent.
    pub set_cookies: Vec<String>,
}

impl Client {
    pub fn new(app: &TestApp) -> Client {
        Client {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: app.base.clone(),
            cookies: BTreeMap::new(),
            set_cookies: Vec::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn read(&mut self, r: reqwest::Response) -> Page {
        let url = r.url().path().to_string();
        let status = r.status();
        let headers = r.headers().clone();
        for value in headers.get_all("set-cookie") {
            let value = value.to_str().unwrap().to_string();
            let pair = value.split(';').next().unwrap();
            let (name, v) = pair.split_once('=').unwrap();
            if value.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_string(), v.to_string());
            }
            self.set_cookies.push(value);
        }
        Page {
            url,
            status,
            headers,
            html: r.text().await.unwrap(),
        }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        self.read(r).await
    }

    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(form).unwrap())
            .send()
            .await
            .unwrap();
        self.read(r).await
    }

    /// Opens the sign-in page and submits `token`; returns the answer to the submit.
    pub async fn sign_in(&mut self, token: &str) -> Page {
        let form = self.get("/console/sign-in").await;
        assert_eq!(form.status, StatusCode::OK);
        let csrf = form.csrf();
        self.post("/console/sign-in", &[("token", token), ("csrf", &csrf)])
            .await
    }
}

#[tokio::test]
async fn signing_in_exchanges_the_token_for_a_cookie_that_does_not_hold_it() {
    let app = spawn_console_app().await;
    let mut c = Client::new(&app);
    let first = c.get("/console/").await;
    assert_eq!(first.status, StatusCode::SEE_OTHER);
    assert_eq!(first.location(), "/console/sign-in");

    let wrong = c.sign_in("not-the-token").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(
        wrong.text().contains("That token is not valid"),
        "{}",
        wrong.text()
    );
    assert!(!c.cookies.contains_key("apit_console"));

    let ok = c.sign_in(ADMIN_TOKEN).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.text());
    assert_eq!(ok.location(), "/console/");
    let session = c
        .set_cookies
        .iter()
        .find(|s| s.starts_with("apit_console="))
        .expect("a session cookie")
        .clone();
    for flag in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/console/",
        "Max-Age=28800",
    ] {
        assert!(session.contains(flag), "{flag} missing: {session}");
    }
    assert!(!session.contains("Secure"), "plain HTTP: {session}");
    assert!(!session.contains(ADMIN_TOKEN));
    let overview = c.get("/console/").await;
    assert_eq!(overview.status, StatusCode::OK);
    assert!(
        overview.text().contains("Signed in as admin (all tenants)"),
        "{}",
        overview.text()
    );
    assert!(overview.text().contains(&format!("Tenant {TENANT}")));
    assert!(overview.text().contains(&format!("Tenant {OTHER_TENANT}")));

    // The signed cookie, tampered, opens nothing.
    let value = c.cookies["apit_console"].clone();
    c.cookies.insert(
        "apit_console".into(),
        value.replacen("admin", "acme-support", 1),
    );
    assert_eq!(c.get("/console/").await.status, StatusCode::SEE_OTHER);
    c.cookies.insert("apit_console".into(), value);

    // Signing out ends the session on the server, not only in the browser.
    let stolen = c.cookies["apit_console"].clone();
    let page = c.get("/console/").await;
    let out = c.post("/console/sign-out", &[("csrf", &page.csrf())]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(out.location(), "/console/sign-in?signed_out=1");
    assert!(
        !c.cookies.contains_key("apit_console"),
        "the cookie is cleared"
    );
    c.cookies.insert("apit_console".into(), stolen);
    let after = c.get("/console/jobs").await;
    assert_eq!(after.status, StatusCode::SEE_OTHER);
    assert_eq!(after.location(), "/console/sign-in?next=%2Fconsole%2Fjobs");
}

#[tokio::test]
async fn the_cookie_is_secure_when_a_trusted_proxy_says_https() {
    let app = spawn_app_with(|t| format!("{t}\n[console]\ntrust_forwarded_proto = true\n")).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for (proto, secure) in [("https", true), ("http", false)] {
        let r = http
            .get(format!("{}/console/sign-in", app.base))
            .header("x-forwarded-proto", proto)
            .send()
            .await
            .unwrap();
        let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
        assert_eq!(cookie.contains("; Secure"), secure, "{proto}: {cookie}");
    }
    // Untrusted (the default), the header is ignored.
    let app = spawn_app().await;
    let r = http
        .get(format!("{}/console/sign-in", app.base))
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert!(
        !r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Secure")
    );
}

#[tokio::test]
async fn every_console_answer_carries_a_strict_policy_and_no_inline_code() {
    let app = spawn_console_app().await;
    let a = app
        .post_event(
            "booking-created",
            &booking_on_missing_course("D1"),
            "?wait=10",
        )
        .await;
    let mut c = Client::new(&app);
    let signin = c.get("/console/sign-in").await;
    c.sign_in(ADMIN_TOKEN).await;
    let mut pages = vec![signin];
    for path in [
        "/console/".to_string(),
        "/console/jobs".into(),
        format!("/console/jobs/{}", a.job_id()),
        format!("/console/tenants/{TENANT}/bulk-retry"),
        format!("/console/tenants/{TENANT}/check"),
        "/console/assets/console.css".into(),
        "/console/no-such-page".into(),
    ] {
        pages.push(c.get(&path).await);
    }
    for p in pages {
        let path = p.url.clone();
        let h = |name: &str| {
            p.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let csp = h("content-security-policy");
        for part in [
            "default-src 'none'",
            "style-src 'self'",
            "frame-ancestors 'none'",
            "form-action 'self'",
        ] {
            assert!(csp.contains(part), "{path}: CSP {csp}");
        }
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(h("x-frame-options"), "DENY", "{path}");
        assert_eq!(h("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(h("referrer-policy"), "no-referrer", "{path}");
        if path.ends_with(".css") {
            assert_eq!(p.status, StatusCode::OK);
            assert!(h("content-type").starts_with("text/css"));
            continue;
        }
        assert!(h("content-type").starts_with("text/html"), "{path}");
        for inline in ["<script", " style=", "<style", "javascript:", " onclick="] {
            assert!(!p.html.contains(inline), "{path} has inline code {inline}");
        }
        assert!(p.html.contains(r#"<html lang="en">"#), "{path}");
        for secret in [
            ADMIN_TOKEN,
            OPERATOR_TOKEN,
            WEBHOOK_SECRET,
            app.moodle.token().as_str(),
        ] {
            assert!(!p.html.contains(secret), "{path} shows a secret");
        }
    }
    assert_eq!(
        c.get("/console/no-such-page").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_form_without_its_csrf_token_is_refused_and_changes_nothing() {
    let app = spawn_console_app().await;
    let a = app
        .post_event(
            "booking-created",
            &booking_on_missing_course("D1"),
            "?wait=10",
        )
        .await;
    assert_eq!(a.body["status"], "failed", "{:?}", a.body);
    let id = a.job_id();
    let mut c = Client::new(&app);
    c.sign_in(ADMIN_TOKEN).await;
    let retry = format!("/console/jobs/{id}/retry");
    let none = c.post(&retry, &[]).await;
    assert_eq!(none.status, StatusCode::FORBIDDEN);
    assert!(
        none.text().contains("Nothing was changed"),
        "{}",
        none.text()
    );
    let wrong = c.post(&retry, &[("csrf", "forged")]).await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    // Another session's token does not do either.
    let mut other = Client::new(&app);
    other.sign_in(ADMIN_TOKEN).await;
    let theirs = other.get("/console/").await.csrf();
    assert_eq!(
        c.post(&retry, &[("csrf", &theirs)]).await.status,
        StatusCode::FORBIDDEN
    );
    let bulk = format!("/console/tenants/{TENANT}/bulk-retry");
    assert_eq!(c.post(&bulk, &[]).await.status, StatusCode::FORBIDDEN);
    assert_eq!(
        c.post("/console/sign-out", &[]).await.status,
        StatusCode::FORBIDDEN
    );
    // Sign-in too: its form token is bound to the form's cookie.
    let mut fresh = Client::new(&app);
    let no_token = fresh
        .post("/console/sign-in", &[("token", ADMIN_TOKEN)])
        .await;
    assert_eq!(no_token.status, StatusCode::FORBIDDEN);
    assert!(!fresh.cookies.contains_key("apit_console"));

    app.settle(Duration::from_secs(5)).await;
    let job = app.job(&id).await;
    assert_eq!(
        (job["status"].as_str(), job["attempts"].as_u64()),
        (Some("failed"), Some(1))
    );
    // With the token, the same form works.
    let page = c.get(&format!("/console/jobs/{id}")).await;
    let done = c.post(&retry, &[("csrf", &page.csrf())]).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    assert_eq!(done.location(), format!("/console/jobs/{id}?done=retried"));
}

#[tokio::test]
async fn a_failed_job_shows_its_fix_and_turns_succeeded_after_retry() {
    let app = spawn_console_app().await;
    let a = app
        .post_event(
            "booking-created",
            &booking_on_missing_course("D1"),
            "?wait=10",
        )
        .await;
    let id = a.job_id();
    let mut c = Client::new(&app);
    c.sign_in(OPERATOR_TOKEN).await;
    let list = c.get("/console/jobs?status=failed").await;
    let text = list.text();
    assert!(text.contains("booking-created"), "{text}");
    assert!(text.contains("booking D1 · course C77 · user U1"), "{text}");
    assert!(
        text.contains(&format!("Moodle course {MISSING_COURSE}")),
        "{text}"
    );

    let page = c.get(&format!("/console/jobs/{id}")).await;
    let text = page.text();
    assert!(text.contains("Failed: retrying cannot fix this"), "{text}");
    assert!(
        text.contains("Fix: Correct the Moodle ID in accessplanit"),
        "{text}"
    );
    assert!(text.contains("Attempt 1 · ✗ failed"), "{text}");
    assert!(text.contains("core_course_get_courses_by_field"), "{text}");
    assert!(
        text.contains(r#""moodle_id": 4242"#),
        "the event as received: {text}"
    );
    assert!(
        !page.html.contains("http-equiv=\"refresh\""),
        "a final job does not reload"
    );

    let mut seed = CourseSeed::new("FA-1");
    seed.id = Some(MISSING_COURSE);
    app.moodle.add_course(seed);
    c.post(
        &format!("/console/jobs/{id}/retry"),
        &[("csrf", &page.csrf())],
    )
    .await;
    let job = app.wait_final(&id, Duration::from_secs(10)).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    app.settle(Duration::from_secs(10)).await;
    let page = c.get(&format!("/console/jobs/{id}")).await;
    let text = page.text();
    assert!(text.contains("Status ✓ succeeded"), "{text}");
    assert!(text.contains("Attempt 2 · ✓ succeeded"), "{text}");
    assert!(
        text.contains("✓ delivered"),
        "write-backs with their delivery: {text}"
    );
}

#[tokio::test]
async fn run_now_starts_a_job_waiting_in_back_off() {
    let app = spawn_app_with(|t| {
        t.replace("initial_backoff = \"50ms\"", "initial_backoff = \"1h\"")
            .replace("max_backoff = \"400ms\"", "max_backoff = \"2h\"")
    })
    .await;
    app.moodle.fail_next(1, Fault::Http503);
    let a = app
        .post_event("course-saved", &course_saved("C1", "First Aid"), "")
        .await;
    let id = a.job_id();
    app.settle(Duration::from_secs(10)).await;
    let job = app.job(&id).await;
    assert_eq!(
        (job["status"].as_str(), job["attempts"].as_u64()),
        (Some("queued"), Some(1)),
        "{job}"
    );

    let mut c = Client::new(&app);
    c.sign_in(ADMIN_TOKEN).await;
    let page = c.get(&format!("/console/jobs/{id}")).await;
    let text = page.text();
    assert!(
        text.contains("The last attempt failed; it will be retried"),
        "{text}"
    );
    assert!(text.contains("Run now"), "{text}");
    assert!(
        !page.html.contains("/retry\""),
        "no Retry for a queued job: {text}"
    );
    let r = c
        .post(
            &format!("/console/jobs/{id}/run-now"),
            &[("csrf", &page.csrf())],
        )
        .await;
    assert_eq!(r.location(), format!("/console/jobs/{id}?done=run-now"));
    let job = app.wait_final(&id, Duration::from_secs(10)).await;
    assert_eq!(
        (job["status"].as_str(), job["attempts"].as_u64()),
        (Some("succeeded"), Some(2))
    );
    // Not queued any more: nothing to run now.
    let again = c
        .post(
            &format!("/console/jobs/{id}/run-now"),
            &[("csrf", &page.csrf())],
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn bulk_retry_lists_what_it_takes_and_retries_only_on_confirmation() {
    let app = spawn_console_app().await;
    let mut ids = Vec::new();
    for n in 0..3 {
        let a = app
            .post_event(
                "booking-created",
                &booking_on_missing_course(&format!("D{n}")),
                "?wait=10",
            )
            .await;
        ids.push(a.job_id());
    }
    let mut unknown_template = course_saved("C9", "E-learning");
    unknown_template["course"]["type"] = json!("elearning");
    unknown_template["course"]["template"]["moodle_id"] = json!(9999);
    let other = app
        .post_event("course-saved", &unknown_template, "?wait=10")
        .await;
    assert_eq!(other.body["status"], "failed", "{:?}", other.body);
    let beta = post_other(&app, "booking-created", &booking_on_missing_course("D9")).await;
    assert_eq!(beta.body["status"], "failed");

    let mut c = Client::new(&app);
    c.sign_in(ADMIN_TOKEN).await;
    let all = c
        .get(&format!("/console/tenants/{TENANT}/bulk-retry"))
        .await;
    assert!(
        all.text().contains("4 jobs will be queued again"),
        "{}",
        all.text()
    );
    let narrowed = c
        .get(&format!(
            "/console/tenants/{TENANT}/bulk-retry?kind=booking-created&error="
        ))
        .await;
    let text = narrowed.text();
    assert!(text.contains("3 jobs will be queued again"), "{text}");
    assert!(
        text.contains("3 × Moodle course 4242"),
        "errors offered to narrow by: {text}"
    );
    app.settle(Duration::from_secs(5)).await;
    assert_eq!(
        app.jobs()
            .await
            .iter()
            .filter(|j| j["status"] == "failed")
            .count(),
        5,
        "reviewing retries nothing"
    );

    let mut seed = CourseSeed::new("FA-1");
    seed.id = Some(MISSING_COURSE);
    app.moodle.add_course(seed);
    let done = c
        .post(
            &format!("/console/tenants/{TENANT}/bulk-retry"),
            &[
                ("csrf", &narrowed.csrf()),
                ("kind", "booking-created"),
                ("error", ""),
            ],
        )
        .await;
    assert_eq!(
        done.location(),
        format!("/console/jobs?tenant={TENANT}&requeued=3")
    );
    for id in &ids {
        assert_eq!(
            app.wait_final(id, Duration::from_secs(10)).await["status"],
            "succeeded"
        );
    }
    app.settle(Duration::from_secs(10)).await;
    assert_eq!(
        app.job(&other.job_id()).await["status"],
        "failed",
        "another kind"
    );
    assert_eq!(
        app.job(&beta.job_id()).await["status"],
        "failed",
        "another tenant"
    );
    let list = c.get(done.location()).await;
    assert!(
        list.text().contains("3 jobs queued again."),
        "{}",
        list.text()
    );
}

#[tokio::test]
async fn the_overview_counts_the_queue_charts_the_day_and_shows_the_last_check() {
    let app = spawn_console_app().await;
    app.post_event(
        "booking-created",
        &booking_on_missing_course("D1"),
        "?wait=10",
    )
    .await;
    app.post_event("course-saved", &course_saved("C1", "First Aid"), "?wait=10")
        .await;
    app.settle(Duration::from_secs(10)).await;
    let calls = app.moodle.calls().len();
    let mut c = Client::new(&app);
    c.sign_in(ADMIN_TOKEN).await;
    let page = c.get("/console/").await;
    let text = page.text();
    assert!(
        page.html
            .contains(r#"<meta http-equiv="refresh" content="30">"#)
    );
    assert!(
        text.contains("This page reloads itself every 30 s"),
        "{text}"
    );
    let acme = &text[text.find("Tenant acme").unwrap()..text.find("Tenant beta").unwrap()];
    for needle in [
        "0 ◷ queued",
        "0 ▶ running",
        "1 ✗ failed",
        "0 ☠ dead",
        "none oldest queued",
        "Events received: 2 in 24 h",
        &format!("Moodle calls: {calls} in 24 h"),
        "Not checked since the service started.",
    ] {
        assert!(acme.contains(needle), "{needle:?} missing in: {acme}");
    }
    assert!(
        page.html
            .contains("Events received: 2 events in the last 24 hours")
    );

    app.moodle.remove_function("core_user_get_users");
    let check = c.get(&format!("/console/tenants/{TENANT}/check")).await;
    let text = check.text();
    assert!(text.contains("✗"), "{text}");
    assert!(text.contains("Fix: "), "{text}");
    assert!(text.contains("core_user_get_users"), "{text}");
    let page = c.get("/console/?refresh=off").await;
    assert!(!page.html.contains("http-equiv"), "paused");
    let text = page.text();
    assert!(text.contains("checks failed"), "{text}");
    assert!(
        text.contains("Not checked since the service started."),
        "beta was not checked"
    );
}

#[tokio::test]
async fn a_scoped_operator_sees_only_its_tenant_in_the_console() {
    let app = spawn_console_app().await;
    let ours = app
        .post_event(
            "booking-created",
            &booking_on_missing_course("D1"),
            "?wait=10",
        )
        .await;
    let theirs = post_other(&app, "booking-created", &booking_on_missing_course("D2")).await;
    let mut c = Client::new(&app);
    c.sign_in(OPERATOR_TOKEN).await;
    let overview = c.get("/console/").await.text();
    assert!(
        overview.contains("Signed in as acme-support (tenants: acme)"),
        "{overview}"
    );
    assert!(
        overview.contains("Tenant acme") && !overview.contains("Tenant beta"),
        "{overview}"
    );
    let list = c.get("/console/jobs").await.text();
    assert!(
        list.contains("booking D1") && !list.contains("booking D2"),
        "{list}"
    );
    assert!(
        c.get("/console/jobs?tenant=beta")
            .await
            .text()
            .contains("No job matches.")
    );

    let id = theirs.job_id();
    let unknown = "00000000-0000-7000-8000-000000000000";
    for path in [
        format!("/console/jobs/{id}"),
        format!("/console/jobs/{unknown}"),
        format!("/console/tenants/{OTHER_TENANT}/check"),
        format!("/console/tenants/{OTHER_TENANT}/bulk-retry"),
    ] {
        let p = c.get(&path).await;
        assert_eq!(p.status, StatusCode::NOT_FOUND, "{path}");
        assert!(!p.text().contains("beta-"), "{path}");
    }
    let csrf = c.get("/console/").await.csrf();
    let r = c
        .post(&format!("/console/jobs/{id}/retry"), &[("csrf", &csrf)])
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let own = c.get(&format!("/console/jobs/{}", ours.job_id())).await;
    assert_eq!(own.status, StatusCode::OK);
    app.settle(Duration::from_secs(5)).await;
    assert_eq!(
        app.job(&id).await["attempts"],
        1,
        "the other tenant's job was not retried"
    );
}

#[tokio::test]
async fn the_console_moves_with_its_path_and_can_be_switched_off() {
    let app = spawn_app_with(|t| format!("{t}\n[console]\npath = \"/ops/console/\"\n")).await;
    let mut c = Client::new(&app);
    assert_eq!(
        c.get("/ops/console/").await.location(),
        "/ops/console/sign-in"
    );
    assert_eq!(c.get("/ops/console").await.location(), "/ops/console/");
    assert_eq!(c.get("/console/").await.status, StatusCode::NOT_FOUND);

    let off = spawn_app_with(|t| format!("{t}\n[console]\nenabled = false\n")).await;
    let mut c = Client::new(&off);
    let p = c.get("/console/sign-in").await;
    assert_eq!(p.status, StatusCode::NOT_FOUND);
    assert_eq!(p.headers["content-type"], "application/problem+json");
}
