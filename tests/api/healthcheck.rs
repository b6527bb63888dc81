//! `apit-moodle-sync healthcheck`, the container image's HEALTHCHECK.

use std::process::Command;

use crate::support::*;

const BIN: &str = env!("CARGO_BIN_EXE_apit-moodle-sync");

fn healthcheck(url: &str) -> std::process::Output {
    Command::new(BIN)
        .args(["healthcheck", "--url", url])
        .output()
        .unwrap()
}

#[tokio::test]
async fn healthcheck_exits_zero_while_the_service_answers_and_one_when_it_does_not() {
    let app = spawn_app().await;
    let url = format!("{}/healthz", app.base);
    let ok = tokio::task::spawn_blocking(move || healthcheck(&url))
        .await
        .unwrap();
    assert!(ok.status.success(), "{ok:?}");

    // A path the service answers 404 to, and a port nobody listens on.
    let url = format!("{}/nothing-here", app.base);
    let not_found = tokio::task::spawn_blocking(move || healthcheck(&url))
        .await
        .unwrap();
    assert_eq!(not_found.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&not_found.stderr).contains("404"));
    app.stop().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/healthz", closed.local_addr().unwrap());
    drop(closed);
    let down = tokio::task::spawn_blocking(move || healthcheck(&url))
        .await
        .unwrap();
    assert_eq!(down.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&down.stderr).contains("did not answer"));
}
