//! `apit-moodle-sync healthcheck`: asks the running service for `/healthz`
//! (or any URL given) and exits 0 on 200, 1 otherwise. For container health
//! checks: the runtime image has no shell and no curl.

use std::time::Duration;

/// How long the probe waits for an answer.
const TIMEOUT: Duration = Duration::from_secs(3);

/// GETs `url`; `Ok` on HTTP 200, else the reason.
pub async fn probe(url: &str) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
    let answer = client
        .get(url)
        .send()
        .await
        .map_err(|e| format!("{url} did not answer: {e}"))?;
    match answer.status() {
        reqwest::StatusCode::OK => Ok(()),
        status => Err(format!("{url} answered {status}")),
    }
}
