//! The console in a real browser (headless Chromium through chromedriver; see
//! `support/browser.rs`), against the service and the Moodle simulator. Run
//! with `BROWSER_TESTS=1`; without it each test prints a note and passes.
//! `CONSOLE_SCREENSHOTS=1` also rewrites the README's screenshots in docs/.

use std::time::Duration;

use crate::console::{
    MISSING_COURSE, OPERATOR_TOKEN, booking_on_missing_course, post_other, spawn_console_app,
};
use crate::support::browser::Browser;
use crate::support::*;

const WAIT: Duration = Duration::from_secs(15);

/// Saves a screenshot for the README when asked to (`CONSOLE_SCREENSHOTS=1`),
/// made small with `pngquant` when it is installed.
async fn screenshot(browser: &Browser, name: &str) {
    if std::env::var("CONSOLE_SCREENSHOTS").as_deref() != Ok("1") {
        return;
    }
    let png = browser.screenshot().await;
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let path = format!("{}/docs/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::write(&path, &png).unwrap();
    let quantized = std::process::Command::new("pngquant")
        .args(["--force", "--quality=70-90", "--output", &path, &path])
        .status()
        .is_ok_and(|s| s.success());
    let size = std::fs::metadata(&path).unwrap().len() / 1024;
    eprintln!(
        "wrote {path} ({size} KiB{})",
        if quantized {
            ", pngquant"
        } else {
            "; install pngquant to make it smaller"
        }
    );
}

/// Signs in on the sign-in page with `token`.
async fn sign_in(browser: &Browser, token: &str) {
    let field = browser.get("input#token").await;
    browser.type_into(&field, token).await;
    browser
        .click(&browser.get("form.signin button[type=submit]").await)
        .await;
}

/// At 200 % zoom (half the CSS width) the page reflows: nothing but a
/// table's own scroll box is wider than the window.
async fn reflows_at_200_percent(browser: &Browser, what: &str) {
    browser.resize(550, 900).await;
    let fits = browser
        .execute(
            "return document.documentElement.scrollWidth <= document.documentElement.clientWidth",
        )
        .await;
    assert_eq!(fits, true, "{what} is wider than the window at 200 % zoom");
    browser.resize(1100, 900).await;
}

#[tokio::test]
async fn in_chromium_sign_in_see_the_fix_retry_until_succeeded_and_sign_out() {
    let Some(browser) =
        Browser::start("in_chromium_sign_in_see_the_fix_retry_until_succeeded_and_sign_out").await
    else {
        return;
    };
    let app = spawn_console_app().await;
    app.post_event(
        "course-saved",
        &course_saved("C1", "First Aid at Work"),
        "?wait=10",
    )
    .await;
    let failed = app
        .post_event(
            "booking-created",
            &booking_on_missing_course("D555"),
            "?wait=10",
        )
        .await;
    assert_eq!(failed.body["status"], "failed", "{:?}", failed.body);
    let id = failed.job_id();
    let console = format!("{}/console", app.base);

    // Not signed in: the sign-in page. A wrong token is refused.
    browser.goto(&format!("{console}/")).await;
    assert!(
        browser.url().await.ends_with("/console/sign-in"),
        "{}",
        browser.url().await
    );
    sign_in(&browser, "a-wrong-token").await;
    browser.wait_for_text("That token is not valid", WAIT).await;
    assert!(
        browser.cookie("apit_console").await.is_none(),
        "no session for a wrong token"
    );

    // Signed in (from the keyboard: Enter in the field submits): the overview, per tenant.
    let field = browser.get("input#token").await;
    browser
        .type_into(&field, &format!("{ADMIN_TOKEN}\u{E007}"))
        .await;
    let text = browser.wait_for_text("Signed in as admin", WAIT).await;
    assert!(
        text.contains("Tenant acme") && text.contains("Tenant beta"),
        "{text}"
    );
    let acme = browser
        .text_of(&browser.get("section[aria-labelledby='tenant-acme']").await)
        .await;
    assert!(
        acme.contains("1\n✗ failed") || acme.contains("1 ✗ failed"),
        "{acme}"
    );
    assert!(acme.contains("Events received: 2 in 24 h"), "{acme}");
    let cookie = browser
        .cookie("apit_console")
        .await
        .expect("a session cookie");
    assert_eq!(cookie["httpOnly"], true, "{cookie}");
    assert_eq!(cookie["sameSite"], "Strict", "{cookie}");
    assert!(!cookie["value"].as_str().unwrap().contains(ADMIN_TOKEN));
    screenshot(&browser, "console-overview.png").await;
    reflows_at_200_percent(&browser, "the overview").await;

    // From the failed count to the job: the error and its fix.
    browser
        .click(
            &browser
                .get("section[aria-labelledby='tenant-acme'] a[href*='status=failed']")
                .await,
        )
        .await;
    browser.wait_for_text("booking D555", WAIT).await;
    reflows_at_200_percent(&browser, "the jobs list").await;
    browser
        .click(&browser.get(&format!("a[href$='/console/jobs/{id}']")).await)
        .await;
    let text = browser
        .wait_for_text("Fix: Correct the Moodle ID in accessplanit", WAIT)
        .await;
    assert!(
        text.contains(&format!("Moodle course {MISSING_COURSE}")),
        "{text}"
    );
    assert!(text.contains("✗ failed"), "{text}");
    screenshot(&browser, "console-job.png").await;
    reflows_at_200_percent(&browser, "the job page").await;

    // A POST without its CSRF token is refused, and the job stays as it was.
    browser
        .execute("document.querySelector(\"form[action$='/retry'] input[name=csrf]\").remove()")
        .await;
    browser
        .click(&browser.get("form[action$='/retry'] button").await)
        .await;
    let text = browser.wait_for_text("This form was refused", WAIT).await;
    assert!(text.contains("Nothing was changed"), "{text}");
    app.settle(WAIT).await;
    assert_eq!(app.job(&id).await["attempts"], 1);

    // Fix the data in Moodle, click Retry, and watch the page turn succeeded.
    let mut seed = CourseSeed::new("FAW-1");
    seed.id = Some(MISSING_COURSE);
    app.moodle.add_course(seed);
    browser.goto(&format!("{console}/jobs/{id}")).await;
    browser
        .click(&browser.get("form[action$='/retry'] button").await)
        .await;
    browser
        .wait_for_text("The job is queued again.", WAIT)
        .await;
    let text = browser.wait_for_text("Attempt 2 · ✓ succeeded", WAIT).await;
    assert!(!text.contains("Fix: Correct"), "the error is gone: {text}");

    // Sign out ends the session: the console asks for a token again.
    browser
        .click(&browser.get("form[action$='/sign-out'] button").await)
        .await;
    browser.wait_for_text("You are signed out.", WAIT).await;
    assert!(browser.cookie("apit_console").await.is_none());
    browser.goto(&format!("{console}/jobs/{id}")).await;
    assert!(
        browser.url().await.contains("/console/sign-in"),
        "{}",
        browser.url().await
    );
    browser.close().await;
}

#[tokio::test]
async fn in_chromium_a_scoped_operator_never_sees_the_other_tenant() {
    let Some(browser) =
        Browser::start("in_chromium_a_scoped_operator_never_sees_the_other_tenant").await
    else {
        return;
    };
    let app = spawn_console_app().await;
    app.post_event(
        "booking-created",
        &booking_on_missing_course("D1"),
        "?wait=10",
    )
    .await;
    let theirs = post_other(&app, "booking-created", &booking_on_missing_course("D2")).await;
    let console = format!("{}/console", app.base);

    // Asked for the other tenant's job before signing in: after it, "not found".
    browser
        .goto(&format!("{console}/jobs/{}", theirs.job_id()))
        .await;
    sign_in(&browser, OPERATOR_TOKEN).await;
    let text = browser.wait_for_text("There is no such job.", WAIT).await;
    assert!(
        text.contains("Signed in as acme-support (tenants: acme)"),
        "{text}"
    );

    browser.goto(&format!("{console}/")).await;
    let text = browser.wait_for_text("Tenant acme", WAIT).await;
    assert!(!text.contains("Tenant beta"), "{text}");
    browser.goto(&format!("{console}/jobs")).await;
    let text = browser.wait_for_text("booking D1", WAIT).await;
    assert!(!text.contains("booking D2"), "{text}");
    let tenants = browser.text_of(&browser.get("select#tenant").await).await;
    assert!(!tenants.contains("beta"), "{tenants}");
    browser.goto(&format!("{console}/tenants/beta/check")).await;
    browser
        .wait_for_text("There is no such tenant.", WAIT)
        .await;
    browser.close().await;
}
