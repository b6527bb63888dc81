//! Tests of the fake Moodle itself: fixture replay and state rules.

#[path = "../support/fake_moodle.rs"]
mod fake_moodle;

#[tokio::test]
async fn starts() {
    let m = fake_moodle::FakeMoodle::start().await;
    assert!(m.url().starts_with("http://127.0.0.1:"));
}
