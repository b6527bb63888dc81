//! The "moodle" test area: proves the Moodle simulator (`src/simulator/`) behaves like the
//! recorded Moodle 4.5 site.
//!
//! * `replay`: every recorded call in `tests/fixtures/moodle/` is sent to the simulator (after
//!   seeding the state it needs) and the answer is compared with the recording.
//! * `rules`: the state rules, switches and faults the fixtures cannot show on their own.

/// The simulator under the name these tests have always used.
mod fake_moodle {
    pub use apit_moodle_sync::simulator::MoodleSimulator as FakeMoodle;
    pub use apit_moodle_sync::simulator::*;
}

mod replay;
mod rules;

use fake_moodle::FakeMoodle;
use serde_json::Value;

/// POSTs one web-service call the way a correct client does and returns the parsed JSON.
pub async fn ws(moodle: &FakeMoodle, function: &str, params: &[(&str, &str)]) -> Value {
    let mut form = vec![
        ("wstoken", moodle.token()),
        ("wsfunction", function.to_owned()),
        ("moodlewsrestformat", "json".to_owned()),
    ];
    form.extend(params.iter().map(|(k, v)| (*k, (*v).to_owned())));
    let response = reqwest::Client::new()
        .post(format!("{}/webservice/rest/server.php", moodle.url()))
        .form(&form)
        .send()
        .await
        .expect("fake Moodle answers");
    assert_eq!(response.status(), 200, "{function}");
    let body = response.text().await.expect("body");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{function}: not JSON ({e}): {body}"))
}

/// The errorcode of an error envelope (`None` for a success or an error without one).
pub fn errorcode(answer: &Value) -> Option<&str> {
    answer.get("errorcode").and_then(Value::as_str)
}
