//! State rules, switches and faults of the fake Moodle that the fixtures alone cannot show.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::fake_moodle::*;
use crate::{errorcode, ws};

fn endpoint(m: &FakeMoodle) -> String {
    format!("{}/webservice/rest/server.php", m.url())
}

/// Sends a raw form body (brackets and bytes exactly as given).
async fn raw_post(m: &FakeMoodle, body: String) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(endpoint(m))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("answer");
    (
        response.status().as_u16(),
        response.text().await.expect("body"),
    )
}

async fn create_course(m: &FakeMoodle, shortname: &str, idnumber: &str) -> Value {
    ws(
        m,
        "core_course_create_courses",
        &[
            ("courses[0][fullname]", "A course"),
            ("courses[0][shortname]", shortname),
            ("courses[0][categoryid]", "5"),
            ("courses[0][idnumber]", idnumber),
        ],
    )
    .await
}

async fn create_user(m: &FakeMoodle, username: &str, email: &str, idnumber: &str) -> Value {
    ws(
        m,
        "core_user_create_users",
        &[
            ("users[0][username]", username),
            ("users[0][firstname]", "Ada"),
            ("users[0][lastname]", "Lovelace"),
            ("users[0][email]", email),
            ("users[0][idnumber]", idnumber),
            ("users[0][createpassword]", "1"),
        ],
    )
    .await
}

async fn update_course(m: &FakeMoodle, id: i64, fields: &[(&str, &str)]) -> Value {
    let id = id.to_string();
    let mut params = vec![("courses[0][id]".to_string(), id)];
    params.extend(
        fields
            .iter()
            .map(|(k, v)| (format!("courses[0][{k}]"), v.to_string())),
    );
    let params: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    ws(m, "core_course_update_courses", &params).await
}

async fn enrol(m: &FakeMoodle, items: &[(i64, i64, i64)], extra: &[(&str, &str)]) -> Value {
    let mut params = Vec::new();
    for (i, (roleid, userid, courseid)) in items.iter().enumerate() {
        params.push((format!("enrolments[{i}][roleid]"), roleid.to_string()));
        params.push((format!("enrolments[{i}][userid]"), userid.to_string()));
        params.push((format!("enrolments[{i}][courseid]"), courseid.to_string()));
    }
    params.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let params: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    ws(m, "enrol_manual_enrol_users", &params).await
}

fn seed_user(m: &FakeMoodle, username: &str) -> i64 {
    m.add_user(UserSeed::new(
        username,
        &format!("{username}@example.invalid"),
    ))
}

fn ids(answer: &Value) -> Vec<i64> {
    let list = answer
        .get("courses")
        .or(answer.get("users"))
        .unwrap_or(answer);
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {answer}"))
        .iter()
        .map(|v| v["id"].as_i64().expect("id"))
        .collect()
}

fn warning_codes(answer: &Value) -> Vec<&str> {
    answer["warnings"]
        .as_array()
        .unwrap_or_else(|| panic!("no warnings: {answer}"))
        .iter()
        .map(|w| w["warningcode"].as_str().expect("warningcode"))
        .collect()
}

// ----- protocol -----

#[tokio::test]
async fn only_server_php_speaks_the_protocol() {
    let m = FakeMoodle::start().await;
    let client = reqwest::Client::new();
    let missing = client
        .post(format!("{}/webservice/rest/nope.php", m.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert!(
        missing.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let root = client
        .post(m.url())
        .form(&[("wstoken", m.token())])
        .send()
        .await
        .unwrap();
    assert_eq!(root.status(), 200);
    assert!(root.text().await.unwrap().contains("<html"));
    assert!(m.calls().is_empty(), "only server.php calls are recorded");
}

#[tokio::test]
async fn token_is_32_hex_and_urls_have_no_trailing_slash() {
    let m = FakeMoodle::start().await;
    let token = m.token();
    assert_eq!(token.len(), 32);
    assert!(
        token
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
    assert!(!m.url().ends_with('/'));
    assert_ne!(
        FakeMoodle::start().await.token(),
        token,
        "each site has its own token"
    );
}

/// What `simulate-moodle` uses: a chosen address and token, and switches set at start.
#[tokio::test]
async fn start_on_sets_the_site_up_as_asked() {
    let token = "0123456789abcdef0123456789abcdef";
    let options = SimulatorOptions {
        token: Some(token.into()),
        latency: Duration::from_millis(30),
        faults: vec!["core_webservice_get_site_info=503x1".parse().unwrap()],
        drop_functions: vec!["enrol_manual_enrol_users".into()],
        lack_capabilities: vec!["moodle/course:create".into()],
        max_input_vars: 5000,
        record_calls: false,
    };
    let anywhere = "0.0.0.0:0".parse().unwrap();
    let m = FakeMoodle::start_on(anywhere, options).await.unwrap();
    assert_eq!(m.token(), token);
    assert!(m.url().starts_with("http://127.0.0.1:"), "{}", m.url());

    let body =
        format!("wstoken={token}&wsfunction=core_webservice_get_site_info&moodlewsrestformat=json");
    let started = Instant::now();
    assert_eq!(
        raw_post(&m, body.clone()).await.0,
        503,
        "the fault comes first"
    );
    assert!(started.elapsed() >= Duration::from_millis(30));
    let (status, text) = raw_post(&m, body).await;
    assert_eq!(status, 200);
    let info: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        info["functions"].as_array().map(Vec::len),
        Some(14),
        "{info}"
    );
    let enrol = enrol(&m, &[(5, 2, 1)], &[]).await;
    assert_eq!(errorcode(&enrol), Some("accessexception"));
    let create = create_course(&m, "C1", "").await;
    assert_eq!(errorcode(&create), Some("nopermissions"));
    assert!(m.calls().is_empty(), "calls are not recorded");

    // Names are checked, so a typo is an error rather than an option silently ignored.
    let plain = SimulatorOptions::default;
    let cases = [
        (
            SimulatorOptions {
                token: Some("ABC".into()),
                ..plain()
            },
            "32 lowercase hexadecimal",
        ),
        (
            SimulatorOptions {
                drop_functions: vec!["core_nothing".into()],
                ..plain()
            },
            "no function core_nothing",
        ),
        (
            SimulatorOptions {
                lack_capabilities: vec!["moodle/nothing".into()],
                ..plain()
            },
            "does not model",
        ),
    ];
    let loopback = "127.0.0.1:0".parse().unwrap();
    for (options, expected) in cases {
        let message = match FakeMoodle::start_on(loopback, options).await {
            Err(e) => e.to_string(),
            Ok(_) => panic!("started despite {expected}"),
        };
        assert!(message.contains(expected), "{message}");
    }
    let taken = m.url().trim_start_matches("http://").parse().unwrap();
    let message = match FakeMoodle::start_on(taken, SimulatorOptions::default()).await {
        Err(e) => e.to_string(),
        Ok(_) => panic!("two sites on one port"),
    };
    assert!(
        message.starts_with("cannot listen on 127.0.0.1:"),
        "{message}"
    );
}

#[tokio::test]
async fn calls_record_the_exact_encoding_without_the_token() {
    let m = FakeMoodle::start().await;
    create_course(&m, "C1", "ev-1").await;
    ws(&m, "core_webservice_get_site_info", &[]).await;
    let calls = m.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].function, "core_course_create_courses");
    assert_eq!(calls[0].method, "POST");
    assert!(!calls[0].token_in_query);
    let form: Vec<(&str, &str)> = calls[0]
        .form
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        form,
        [
            ("wsfunction", "core_course_create_courses"),
            ("moodlewsrestformat", "json"),
            ("courses[0][fullname]", "A course"),
            ("courses[0][shortname]", "C1"),
            ("courses[0][categoryid]", "5"),
            ("courses[0][idnumber]", "ev-1"),
        ]
    );
    assert_eq!(m.call_count("core_course_create_courses"), 1);
    m.reset_calls();
    assert_eq!(m.call_count("core_course_create_courses"), 0);
}

#[tokio::test]
async fn get_is_accepted_and_a_token_in_the_url_is_recorded() {
    let m = FakeMoodle::start().await;
    let answer: Value = reqwest::Client::new()
        .get(endpoint(&m))
        .query(&[
            ("wstoken", m.token().as_str()),
            ("wsfunction", "core_webservice_get_site_info"),
            ("moodlewsrestformat", "json"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["siteurl"], json!(m.url()));
    let call = &m.calls()[0];
    assert_eq!((call.method.as_str(), call.token_in_query), ("GET", true));
}

#[tokio::test]
async fn raw_brackets_and_append_syntax_decode_like_php() {
    let m = FakeMoodle::start().await;
    seed_user(&m, "ada");
    seed_user(&m, "bob");
    let body = format!(
        "wstoken={}&wsfunction=core_user_get_users_by_field&moodlewsrestformat=json\
         &field=username&values[]=ada&values%5B%5D=bob",
        m.token()
    );
    let (status, text) = raw_post(&m, body).await;
    assert_eq!(status, 200);
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer.as_array().map(Vec::len), Some(2), "{answer}");
}

/// PHP's `max_input_vars` (1000 unless the site raised it) drops the variables past it
/// without a word, so a big call fails later and vaguely (moodle-ws.md §1.2).
#[tokio::test]
async fn fields_past_max_input_vars_are_dropped_as_php_drops_them() {
    let m = FakeMoodle::start().await;
    m.set_debug(true);
    // 3 protocol fields and 333 courses of 3 fields: 1002 variables.
    let mut fields = Vec::new();
    for i in 0..333 {
        fields.push((format!("courses[{i}][fullname]"), format!("Course {i}")));
        fields.push((format!("courses[{i}][shortname]"), format!("C{i}")));
        fields.push((format!("courses[{i}][categoryid]"), "5".to_string()));
    }
    let fields: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let answer = ws(&m, "core_course_create_courses", &fields).await;
    // The body keeps variable 1001 (PHP checks the count after registering one), so the
    // last course keeps its names and loses only its category.
    assert_eq!(errorcode(&answer), Some("invalidparameter"), "{answer}");
    assert_eq!(
        answer["debuginfo"],
        "courses => Invalid parameter value detected: Missing required key in single \
         structure: categoryid"
    );
    assert!(m.courses().is_empty());
    // The client did send every field: the record keeps them.
    assert_eq!(m.calls()[0].form.len(), 2 + 999);

    m.set_max_input_vars(5000);
    let answer = ws(&m, "core_course_create_courses", &fields).await;
    assert_eq!(ids(&answer).len(), 333, "{answer}");

    // The query string keeps exactly max_input_vars variables, the body one more.
    m.set_max_input_vars(4);
    seed_user(&m, "ada");
    let form = [
        ("wstoken", m.token()),
        ("wsfunction", "core_user_get_users_by_field".into()),
        ("moodlewsrestformat", "json".into()),
        ("field", "username".into()),
        ("values[0]", "ada".into()),
    ];
    let http = reqwest::Client::new();
    let by_query = http.get(endpoint(&m)).query(&form).send().await.unwrap();
    let by_query: Value = by_query.json().await.unwrap();
    assert_eq!(
        by_query["debuginfo"],
        "Missing required key in single structure: values"
    );
    let by_body = http.post(endpoint(&m)).form(&form).send().await.unwrap();
    let by_body: Value = by_body.json().await.unwrap();
    assert_eq!(by_body.as_array().map(Vec::len), Some(1), "{by_body}");
}

/// Requests no client should send still get the answers PHP and Moodle give, never a
/// crash: over-deep nesting, an append past the largest index, a pathological `LIKE`
/// pattern, a body past `post_max_size`.
#[tokio::test]
async fn malformed_requests_get_the_answers_php_and_moodle_give() {
    let m = FakeMoodle::start().await;
    m.set_debug(true);
    let ada = seed_user(&m, "ada");
    seed_user(&m, "bob");
    let by_username = |rest: &str| {
        format!(
            "wstoken={}&wsfunction=core_user_get_users_by_field&moodlewsrestformat=json\
             &field=username&values[0]=ada{rest}",
            m.token()
        )
    };
    let answer = |text: &str| -> Value { serde_json::from_str(text).unwrap() };

    // max_input_nesting_level 64: a 64th level is still read, a 65th drops the variable,
    // including the values sent before it.
    let deep = |levels: usize| format!("&values[1]{}=x", "[a]".repeat(levels - 1));
    let (_, text) = raw_post(&m, by_username(&deep(64))).await;
    assert_eq!(
        answer(&text)["debuginfo"],
        "values => Invalid parameter value detected: Scalar type expected, array or object received.",
        "{text}"
    );
    let (_, text) = raw_post(&m, by_username(&deep(65))).await;
    assert_eq!(
        answer(&text)["debuginfo"],
        "Missing required key in single structure: values",
        "{text}"
    );

    // `[]` after the largest integer index has no next index: PHP drops that value.
    let (_, text) = raw_post(
        &m,
        by_username("&values[9223372036854775807]=x&values[]=bob"),
    )
    .await;
    assert_eq!(ids(&answer(&text)), vec![ada], "{text}");

    // A LIKE pattern that would take exponential time (or stack) to match naively.
    let pattern = "%".repeat(100_000) + "d%a@%";
    let criteria = [
        ("criteria[0][key]", "email"),
        ("criteria[0][value]", &pattern),
    ];
    let found = ws(&m, "core_user_get_users", &criteria).await;
    assert_eq!(ids(&found), vec![ada], "{found}");

    // Past post_max_size (8M) PHP reads no parameter at all: no token, no format, so the
    // answer is invalidtoken in XML.
    let huge = format!("{}&padding={}", by_username(""), "a".repeat(9 << 20));
    let (status, text) = raw_post(&m, huge).await;
    assert_eq!(status, 200);
    assert!(
        text.contains("<ERRORCODE>invalidtoken</ERRORCODE>"),
        "{text}"
    );
    let (_, text) = raw_post(&m, by_username("")).await;
    assert_eq!(
        ids(&answer(&text)),
        vec![ada],
        "the site still answers: {text}"
    );
}

#[tokio::test]
async fn the_order_of_checks_decides_the_error() {
    let m = FakeMoodle::start().await;
    m.lack_capability("moodle/course:create");
    let bad_params = [("courses[0][fullname]", "x")];
    // An unknown function with a bad token: the token is checked first.
    m.set_token_valid(false);
    assert_eq!(
        errorcode(&ws(&m, "core_nope", &bad_params).await),
        Some("invalidtoken")
    );
    m.set_token_valid(true);
    assert_eq!(
        errorcode(&ws(&m, "core_nope", &bad_params).await),
        Some("invalidrecord")
    );
    // A real Moodle function outside the service.
    assert_eq!(
        errorcode(&ws(&m, "core_user_update_users", &[]).await),
        Some("accessexception")
    );
    m.remove_function("core_course_create_courses");
    let answer = ws(&m, "core_course_create_courses", &bad_params).await;
    assert_eq!(errorcode(&answer), Some("accessexception"));
    m.restore_function("core_course_create_courses");
    // Parameters are validated before the function's capability check.
    let answer = ws(&m, "core_course_create_courses", &bad_params).await;
    assert_eq!(errorcode(&answer), Some("invalidparameter"));
    let answer = create_course(&m, "C1", "").await;
    assert_eq!(errorcode(&answer), Some("nopermissions"));
    m.restore_capability("moodle/course:create");
    assert_eq!(ids(&create_course(&m, "C1", "").await).len(), 1);
}

#[tokio::test]
async fn values_must_already_be_clean() {
    let m = FakeMoodle::start().await;
    let c = m.add_course(CourseSeed::new("C1"));
    let u = seed_user(&m, "ada");
    let (c, u) = (c.to_string(), u.to_string());
    let enrol_with = |field: &'static str, value: &'static str| {
        let (c, u) = (c.clone(), u.clone());
        let m = &m;
        async move {
            let mut p = vec![
                ("enrolments[0][roleid]", "5".to_string()),
                ("enrolments[0][userid]", u),
                ("enrolments[0][courseid]", c),
            ];
            p.retain(|(k, _)| *k != field);
            p.push((field, value.to_string()));
            let p: Vec<(&str, &str)> = p.iter().map(|(k, v)| (*k, v.as_str())).collect();
            ws(m, "enrol_manual_enrol_users", &p).await
        }
    };
    for bad in [
        "05",
        "+5",
        "",
        "5.0",
        " 5",
        "1e3",
        "true",
        "99999999999999999999",
    ] {
        let answer = enrol_with("enrolments[0][roleid]", bad).await;
        assert_eq!(
            errorcode(&answer),
            Some("invalidparameter"),
            "roleid {bad:?}"
        );
    }
    let answer = enrol_with("enrolments[0][suspnd]", "1").await;
    assert_eq!(errorcode(&answer), Some("invalidparameter"), "unknown key");
    assert!(m.enrolments().is_empty());
    assert_eq!(enrol_with("enrolments[0][suspend]", "0").await, Value::Null);

    let created = |fullname: &'static str| {
        let m = &m;
        async move {
            let shortname = format!("S-{fullname}");
            let p = [
                ("courses[0][fullname]", fullname),
                ("courses[0][shortname]", shortname.as_str()),
                ("courses[0][categoryid]", "5"),
            ];
            ws(m, "core_course_create_courses", &p).await
        }
    };
    for bad in ["Fire <b>Safety</b>", "a<b", "x <br/>"] {
        assert_eq!(
            errorcode(&created(bad).await),
            Some("invalidparameter"),
            "{bad:?}"
        );
    }
    for good in [
        "Fish & Chips",
        "a < b",
        "5 > 4",
        "<span lang=\"en\" class=\"multilang\">Fire</span>",
    ] {
        assert!(
            created(good).await.is_array(),
            "{good:?} is valid PARAM_TEXT"
        );
    }

    // createpassword is PARAM_BOOL: only 0 and 1.
    let p = [
        ("users[0][username]", "ada2"),
        ("users[0][firstname]", "Ada"),
        ("users[0][lastname]", "L"),
        ("users[0][email]", "ada2@example.invalid"),
        ("users[0][createpassword]", "true"),
    ];
    assert_eq!(
        errorcode(&ws(&m, "core_user_create_users", &p).await),
        Some("invalidparameter")
    );
    // firstname is PARAM_NOTAGS.
    let p = [
        ("users[0][username]", "ada3"),
        ("users[0][firstname]", "<b>Ada</b>"),
        ("users[0][lastname]", "L"),
        ("users[0][email]", "ada3@example.invalid"),
        ("users[0][createpassword]", "1"),
    ];
    let answer = ws(&m, "core_user_create_users", &p).await;
    assert_eq!(errorcode(&answer), Some("invalidparameter"));
    assert!(m.users().len() == 1, "only the seeded user");
    // A stray top-level key breaks the call.
    let answer = ws(&m, "core_webservice_get_site_info", &[("format", "json")]).await;
    assert_eq!(errorcode(&answer), Some("invalidparameter"));
}

#[tokio::test]
async fn invalid_utf8_fails_validation_even_for_raw_text() {
    let m = FakeMoodle::start().await;
    let body = format!(
        "wstoken={}&wsfunction=core_course_get_courses_by_field&moodlewsrestformat=json\
         &field=idnumber&value=ab%FFcd",
        m.token()
    );
    let (_, text) = raw_post(&m, body).await;
    assert!(text.contains("invalidparameter"), "{text}");
}

#[tokio::test]
async fn debuginfo_only_in_debug_mode() {
    let m = FakeMoodle::start().await;
    let answer = ws(&m, "core_webservice_get_site_info", &[("token", "x")]).await;
    assert_eq!(answer.get("debuginfo"), None);
    m.set_debug(true);
    let answer = ws(&m, "core_webservice_get_site_info", &[("token", "x")]).await;
    assert_eq!(
        answer["debuginfo"],
        "Unexpected keys (token) detected in parameter array."
    );
    assert_eq!(answer["message"], "Invalid parameter value detected");
}

#[tokio::test]
async fn a_missing_format_means_xml_for_success_and_error() {
    let m = FakeMoodle::start().await;
    let client = reqwest::Client::new();
    for token in [m.token(), "f".repeat(32)] {
        let response = client
            .post(endpoint(&m))
            .form(&[
                ("wstoken", token.as_str()),
                ("wsfunction", "core_webservice_get_site_info"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "application/xml; charset=utf-8"
        );
        let body = response.text().await.unwrap();
        assert!(body.starts_with("<?xml"));
        assert!(
            body.contains("<RESPONSE>") || body.contains("<ERRORCODE>invalidtoken</ERRORCODE>")
        );
    }
    let json_body = client
        .post(endpoint(&m))
        .json(&json!({"wstoken": m.token(), "wsfunction": "core_webservice_get_site_info", "moodlewsrestformat": "json"}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        json_body.contains("<ERRORCODE>invalidtoken</ERRORCODE>"),
        "a JSON body is not read"
    );
}

// ----- site switches -----

#[tokio::test]
async fn site_switches() {
    let m = FakeMoodle::start().await;
    let client = reqwest::Client::new();
    let info = || ws(&m, "core_webservice_get_site_info", &[]);

    m.set_site_maintenance(true);
    assert_eq!(errorcode(&info().await), Some("sitemaintenance"));
    m.set_site_maintenance(false);

    m.lack_capability("webservice/rest:use");
    assert_eq!(errorcode(&info().await), Some("accessexception"));
    m.restore_capability("webservice/rest:use");

    m.remove_function("enrol_manual_enrol_users");
    let names: Vec<String> = info().await["functions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names.len(), 14);
    assert!(!names.contains(&"enrol_manual_enrol_users".to_owned()));

    m.set_rest_disabled(true);
    let response = client
        .post(endpoint(&m))
        .form(&[("wstoken", m.token())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(response.text().await.unwrap(), "");
    m.set_rest_disabled(false);

    m.set_cli_maintenance(true);
    for url in [endpoint(&m), m.url()] {
        let response = client
            .post(url)
            .form(&[("wstoken", m.token())])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["retry-after"], "300");
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
    }
    m.set_cli_maintenance(false);
    assert!(info().await.get("exception").is_none());
}

#[test]
#[should_panic(expected = "does not model")]
fn an_unknown_capability_name_is_a_test_bug() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let m = rt.block_on(FakeMoodle::start());
    m.lack_capability("moodle/course:creat");
}

// ----- courses -----

#[tokio::test]
async fn shortnames_and_course_idnumbers_are_unique() {
    let m = FakeMoodle::start().await;
    assert_eq!(ids(&create_course(&m, "C1", "").await).len(), 1);
    assert_eq!(
        ids(&create_course(&m, "C2", "").await).len(),
        1,
        "empty idnumbers may repeat"
    );
    assert_eq!(
        errorcode(&create_course(&m, "C1", "x").await),
        Some("shortnametaken")
    );
    assert_eq!(
        ids(&create_course(&m, "c1", "ev-1").await).len(),
        1,
        "case-sensitive"
    );
    assert_eq!(
        errorcode(&create_course(&m, "C3", "ev-1").await),
        Some("courseidnumbertaken")
    );
    assert_eq!(m.courses().len(), 3);
}

#[tokio::test]
async fn a_create_batch_is_one_transaction() {
    let m = FakeMoodle::start().await;
    let p = [
        ("courses[0][fullname]", "One"),
        ("courses[0][shortname]", "SAME"),
        ("courses[0][categoryid]", "5"),
        ("courses[1][fullname]", "Two"),
        ("courses[1][shortname]", "SAME"),
        ("courses[1][categoryid]", "5"),
    ];
    let answer = ws(&m, "core_course_create_courses", &p).await;
    assert_eq!(
        errorcode(&answer),
        Some("shortnametaken"),
        "item 0 counts for item 1"
    );
    assert!(m.courses().is_empty());
}

#[tokio::test]
async fn create_course_errors() {
    let m = FakeMoodle::start().await;
    let create = |extra: Vec<(&'static str, String)>| {
        let m = &m;
        async move {
            let mut p = vec![
                ("courses[0][fullname]", "F".to_string()),
                ("courses[0][shortname]", "S".to_string()),
                ("courses[0][categoryid]", "5".to_string()),
            ];
            for (k, v) in extra {
                p.retain(|(pk, _)| *pk != k);
                p.push((k, v));
            }
            let p: Vec<(&str, &str)> = p.iter().map(|(k, v)| (*k, v.as_str())).collect();
            ws(m, "core_course_create_courses", &p).await
        }
    };
    let code = |v: Value| errorcode(&v).map(String::from);
    let cat = |v: &str| vec![("courses[0][categoryid]", v.to_string())];
    assert_eq!(
        code(create(cat("999")).await).as_deref(),
        Some("errorcatcontextnotvalid")
    );
    let misc = vec![
        ("courses[0][categoryid]", "1".into()),
        ("courses[0][shortname]", "MISC".into()),
    ];
    assert_eq!(
        code(create(misc).await),
        None,
        "category 1 (Miscellaneous) exists"
    );
    let dates = |s: &str, e: &str| {
        vec![
            ("courses[0][startdate]", s.into()),
            ("courses[0][enddate]", e.into()),
        ]
    };
    assert_eq!(
        code(create(dates("200", "100")).await).as_deref(),
        Some("enddatebeforestartdate")
    );
    assert_eq!(
        code(create(dates("0", "100")).await).as_deref(),
        Some("nostartdatenoenddate")
    );
    let long = |k: &'static str, n: usize| {
        vec![
            (k, "x".repeat(n)),
            ("courses[0][shortname]", format!("S{k}{n}")),
        ]
    };
    assert_eq!(code(create(long("courses[0][fullname]", 254)).await), None);
    assert_eq!(
        code(create(long("courses[0][fullname]", 255)).await).as_deref(),
        Some("dmlwriteexception")
    );
    assert_eq!(code(create(long("courses[0][idnumber]", 100)).await), None);
    assert_eq!(
        code(create(long("courses[0][idnumber]", 101)).await).as_deref(),
        Some("dmlwriteexception")
    );
    let shortname = |n: usize| vec![("courses[0][shortname]", "s".repeat(n))];
    assert_eq!(code(create(shortname(255)).await), None);
    assert_eq!(
        code(create(shortname(256)).await).as_deref(),
        Some("dmlwriteexception")
    );
    let blank = vec![("courses[0][fullname]", "  ".to_string())];
    assert_eq!(
        code(create(blank).await).as_deref(),
        Some("errorinvalidparam")
    );
    assert_eq!(m.courses().len(), 4);
    assert_eq!(m.courses()[0].category, 1);
}

#[tokio::test]
async fn update_warns_per_course_and_checks_only_the_dates_sent() {
    let m = FakeMoodle::start().await;
    let c = m.add_course(CourseSeed {
        startdate: 1000,
        enddate: 2000,
        ..CourseSeed::new("C1")
    });
    let answer = update_course(&m, c, &[("enddate", "3000")]).await;
    assert_eq!(
        warning_codes(&answer),
        ["nostartdatenoenddate"],
        "the stored startdate is ignored"
    );
    let answer = update_course(&m, c, &[("startdate", "5000")]).await;
    assert_eq!(
        warning_codes(&answer),
        Vec::<&str>::new(),
        "start after the stored end is accepted"
    );
    assert_eq!(
        (m.courses()[0].startdate, m.courses()[0].enddate),
        (5000, 2000)
    );
    let answer = update_course(&m, c, &[("startdate", "5000"), ("enddate", "4000")]).await;
    assert_eq!(warning_codes(&answer), ["enddatebeforestartdate"]);
    let answer = update_course(&m, c, &[("startdate", "5000"), ("enddate", "5000")]).await;
    assert_eq!(
        warning_codes(&answer),
        Vec::<&str>::new(),
        "equal dates are fine"
    );
    assert_eq!(answer, json!({"warnings": []}));
    let answer = update_course(&m, FRONT_PAGE, &[("fullname", "Home")]).await;
    assert_eq!(warning_codes(&answer), ["invalidcourse"]);
    let answer = update_course(&m, c, &[("fullname", &"x".repeat(255))]).await;
    assert_eq!(warning_codes(&answer), ["dmlwriteexception"]);
    // Whole-call errors are only shape/type errors.
    let answer = update_course(&m, c, &[("visible", "true")]).await;
    assert_eq!(errorcode(&answer), Some("invalidparameter"));
}

#[tokio::test]
async fn update_needs_a_change_capability_only_for_a_real_change() {
    let m = FakeMoodle::start().await;
    let c = m.add_course(CourseSeed::new("C1"));
    m.lack_capability("moodle/course:changefullname");
    let answer = update_course(
        &m,
        c,
        &[("fullname", "Course C1"), ("summary", "<p>new</p>")],
    )
    .await;
    assert_eq!(warning_codes(&answer), Vec::<&str>::new());
    assert_eq!(m.courses()[0].summary, "<p>new</p>");
    let answer = update_course(&m, c, &[("fullname", "Renamed")]).await;
    assert_eq!(warning_codes(&answer), ["nopermissions"]);
    assert_eq!(m.courses()[0].fullname, "Course C1");
}

#[tokio::test]
async fn course_lookups() {
    let m = FakeMoodle::start().await;
    let with_id = m.add_course(CourseSeed {
        idnumber: "ev-1".into(),
        ..CourseSeed::new("C1")
    });
    let without = m.add_course(CourseSeed::new("C2"));
    let hidden = m.add_course(CourseSeed {
        visible: false,
        ..CourseSeed::new("C3")
    });
    let by = |field: &'static str, value: String| {
        let m = &m;
        async move {
            let p = [("field", field), ("value", value.as_str())];
            ws(m, "core_course_get_courses_by_field", &p).await
        }
    };
    assert_eq!(ids(&by("idnumber", "ev-1".into()).await), [with_id]);
    // An empty idnumber matches every course without one, the front page included.
    assert_eq!(
        ids(&by("idnumber", String::new()).await),
        [FRONT_PAGE, without, hidden]
    );
    assert_eq!(
        ids(&by("", String::new()).await),
        [FRONT_PAGE, with_id, without, hidden]
    );
    assert_eq!(
        ids(&by("id", format!("{without}abc")).await),
        [without],
        "PHP (int) cast"
    );
    assert_eq!(
        ids(&by("ids", format!("{hidden},{with_id}")).await),
        [with_id, hidden]
    );
    assert_eq!(
        ids(&by("category", "5".into()).await),
        [with_id, without, hidden]
    );
    // Without moodle/course:update: no idnumber in the answer, hidden courses only with
    // moodle/course:viewhiddencourses.
    m.lack_capability("moodle/course:update");
    let answer = by("id", with_id.to_string()).await;
    assert!(answer["courses"][0].get("idnumber").is_none());
    assert_eq!(ids(&by("id", hidden.to_string()).await), [hidden]);
    m.lack_capability("moodle/course:viewhiddencourses");
    assert_eq!(ids(&by("id", hidden.to_string()).await), Vec::<i64>::new());
    let all = ws(&m, "core_course_get_courses", &[]).await;
    assert_eq!(ids(&all), [FRONT_PAGE, with_id, without]);
    m.lack_capability("moodle/course:view");
    assert_eq!(
        errorcode(&ws(&m, "core_course_get_courses", &[]).await),
        Some("nopermissions")
    );
}

#[tokio::test]
async fn visibility_is_forced_without_the_capability() {
    let m = FakeMoodle::start().await;
    m.lack_capability("moodle/course:visibility");
    let p = [
        ("courses[0][fullname]", "F"),
        ("courses[0][shortname]", "S"),
        ("courses[0][categoryid]", "5"),
        ("courses[0][visible]", "0"),
    ];
    ws(&m, "core_course_create_courses", &p).await;
    assert!(
        m.courses()[0].visible,
        "the category's visibility wins silently"
    );
}

// ----- users -----

#[tokio::test]
async fn usernames_must_be_clean_and_unique() {
    let m = FakeMoodle::start().await;
    for (i, bad) in [
        "Ada",
        "ada lovelace",
        "ada+x@example.com",
        "o'brien",
        "zoë",
        " ada",
        "",
    ]
    .iter()
    .enumerate()
    {
        let answer = create_user(&m, bad, &format!("u{i}@example.invalid"), "").await;
        assert_eq!(errorcode(&answer), Some("invalidparameter"), "{bad:?}");
    }
    let good = "ada.l-1_x@example.invalid";
    assert_eq!(
        create_user(&m, good, "a@example.invalid", "").await[0]["username"],
        good
    );
    let answer = create_user(&m, good, "b@example.invalid", "").await;
    assert_eq!(errorcode(&answer), Some("invalidparameter"));
    let long = "a".repeat(101);
    assert_eq!(
        errorcode(&create_user(&m, &long, "c@example.invalid", "").await),
        Some("dmlwriteexception")
    );
    let long_email = format!("{}@example.invalid", "e".repeat(90));
    assert_eq!(
        errorcode(&create_user(&m, "eve", &long_email, "").await),
        Some("dmlwriteexception")
    );
    assert_eq!(m.users().len(), 1);
}

#[tokio::test]
async fn emails_are_unique_ignoring_case_unless_allowed_and_idnumbers_may_repeat() {
    let m = FakeMoodle::start().await;
    create_user(&m, "ada", "Ada@Example.com", "p-1").await;
    let answer = create_user(&m, "ada2", "ada@example.COM", "p-2").await;
    assert_eq!(errorcode(&answer), Some("invalidparameter"));
    assert!(
        create_user(&m, "bob", "bob@example.com", "p-1")
            .await
            .is_array(),
        "idnumber repeats"
    );
    m.allow_accounts_same_email(true);
    assert!(
        create_user(&m, "ada3", "ada@example.com", "p-3")
            .await
            .is_array()
    );
    let users = m.users();
    assert_eq!(users.len(), 3);
    assert_eq!(users[0].email, "Ada@Example.com", "stored as sent");
    assert_eq!(
        (users[0].auth.as_str(), users[0].idnumber.as_str()),
        ("manual", "p-1")
    );
}

#[tokio::test]
async fn create_user_batch_is_atomic_and_sees_its_own_items() {
    let m = FakeMoodle::start().await;
    let p = [
        ("users[0][username]", "ada"),
        ("users[0][firstname]", "Ada"),
        ("users[0][lastname]", "L"),
        ("users[0][email]", "same@example.invalid"),
        ("users[0][createpassword]", "1"),
        ("users[1][username]", "bob"),
        ("users[1][firstname]", "Bob"),
        ("users[1][lastname]", "B"),
        ("users[1][email]", "SAME@example.invalid"),
        ("users[1][createpassword]", "1"),
    ];
    assert_eq!(
        errorcode(&ws(&m, "core_user_create_users", &p).await),
        Some("invalidparameter")
    );
    assert!(m.users().is_empty());
}

#[tokio::test]
async fn passwords_follow_the_default_policy() {
    let m = FakeMoodle::start().await;
    let with_password = |password: &'static str| {
        let m = &m;
        async move {
            let p = [
                ("users[0][username]", "ada"),
                ("users[0][firstname]", "Ada"),
                ("users[0][lastname]", "L"),
                ("users[0][email]", "ada@example.invalid"),
                ("users[0][password]", password),
            ];
            ws(m, "core_user_create_users", &p).await
        }
    };
    let weak = with_password("abcdefgh").await;
    let code = errorcode(&weak).unwrap();
    assert!(
        code.starts_with("<div>Passwords must have at least 1 digit(s).</div>"),
        "{code}"
    );
    assert!(with_password("Str0ng#pass").await.is_array());
}

#[tokio::test]
async fn user_lookups_are_exact_and_filtered_by_visibility() {
    let m = FakeMoodle::start().await;
    let ada = m.add_user(UserSeed {
        idnumber: "p-1".into(),
        ..UserSeed::new("ada", "Ada@Example.com")
    });
    let by = |field: &'static str, value: &'static str| {
        let m = &m;
        async move {
            ws(
                m,
                "core_user_get_users_by_field",
                &[("field", field), ("values[0]", value)],
            )
            .await
        }
    };
    assert_eq!(ids(&by("email", "Ada@Example.com").await), [ada]);
    assert_eq!(
        ids(&by("email", "ada@example.com").await),
        Vec::<i64>::new(),
        "case-sensitive"
    );
    assert_eq!(
        errorcode(&by("email", " Ada@Example.com").await),
        Some("invalidparameter")
    );
    assert_eq!(
        errorcode(&by("username", "ADA").await),
        Some("invalidparameter")
    );
    assert_eq!(errorcode(&by("phone", "1").await), Some("codingerror"));
    assert_eq!(ids(&by("idnumber", "p-1").await), [ada]);
    assert_eq!(
        ids(&by("idnumber", "").await),
        Vec::<i64>::new(),
        "an empty idnumber is never visible"
    );

    m.lack_capability("moodle/user:viewalldetails");
    assert_eq!(ids(&by("idnumber", "p-1").await), Vec::<i64>::new());
    assert_eq!(ids(&by("username", "ada").await), Vec::<i64>::new());
    let by_id = by("id", "4").await;
    assert_eq!(ids(&by_id), [ada]);
    assert!(by_id[0].get("username").is_none() && by_id[0].get("idnumber").is_none());
    m.restore_capability("moodle/user:viewalldetails");

    m.lack_capability("moodle/site:viewuseridentity");
    assert_eq!(
        ids(&by("email", "Ada@Example.com").await),
        Vec::<i64>::new()
    );
    let like = ws(
        &m,
        "core_user_get_users",
        &[
            ("criteria[0][key]", "email"),
            ("criteria[0][value]", "ada%"),
        ],
    )
    .await;
    assert_eq!(ids(&like), Vec::<i64>::new());
}

#[tokio::test]
async fn get_users_matches_email_with_like() {
    let m = FakeMoodle::start().await;
    let ada = m.add_user(UserSeed::new("ada", "ada_l@example.com"));
    let adax = m.add_user(UserSeed::new("adax", "adaxl@example.com"));
    let search = |criteria: &[(&'static str, &'static str)]| {
        let mut p = Vec::new();
        for (i, (k, v)) in criteria.iter().enumerate() {
            p.push((format!("criteria[{i}][key]"), k.to_string()));
            p.push((format!("criteria[{i}][value]"), v.to_string()));
        }
        let m = &m;
        async move {
            let p: Vec<(&str, &str)> = p.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            ws(m, "core_user_get_users", &p).await
        }
    };
    // `_` is a wildcard and the match ignores case: the client must check equality itself.
    assert_eq!(
        ids(&search(&[("email", "ADA_L@example.com")]).await),
        [ada, adax]
    );
    assert_eq!(
        ids(&search(&[("email", "ada\\_l@example.com")]).await),
        [ada]
    );
    assert_eq!(
        ids(&search(&[("email", "%@example.com"), ("username", "adax")]).await),
        [adax]
    );
    let answer = search(&[("email", "nobody@x"), ("phone", "1")]).await;
    assert_eq!(warning_codes(&answer), ["invalidfieldparameter"]);
    let answer = search(&[("email", "a"), ("email", "b")]).await;
    assert_eq!(errorcode(&answer), Some("keyalreadyset"));
}

/// Moodle checks emails and idnumbers, then inserts: two racing creates both pass. Only the
/// username has a unique index, so a racing duplicate username fails at the insert.
#[tokio::test]
async fn racing_creates_duplicate_people_unless_the_client_serialises() {
    let m = FakeMoodle::start().await;
    m.set_create_delay(Duration::from_millis(150));
    let (a, b) = tokio::join!(
        create_user(&m, "ada1", "ada@example.invalid", "apit-user-1"),
        create_user(&m, "ada2", "ada@example.invalid", "apit-user-1"),
    );
    assert!(a.is_array() && b.is_array(), "{a} {b}");
    let users = m.users();
    assert_eq!(users.len(), 2, "two accounts for one person");
    assert_eq!(users[0].email, users[1].email);

    let (a, b) = tokio::join!(
        create_user(&m, "bob", "bob1@example.invalid", ""),
        create_user(&m, "bob", "bob2@example.invalid", ""),
    );
    let mut codes = [errorcode(&a), errorcode(&b)];
    codes.sort();
    assert_eq!(codes, [None, Some("dmlwriteexception")]);

    // Serialised, the second create sees the first.
    create_user(&m, "cy1", "cy@example.invalid", "").await;
    let answer = create_user(&m, "cy2", "cy@example.invalid", "").await;
    assert_eq!(errorcode(&answer), Some("invalidparameter"));
}

// ----- enrolments -----

#[tokio::test]
async fn enrolling_again_overwrites_status_and_dates_and_adds_roles() {
    let m = FakeMoodle::start().await;
    let c = m.add_course(CourseSeed::new("C1"));
    let u = seed_user(&m, "ada");
    let extra = [
        ("enrolments[0][timestart]", "100"),
        ("enrolments[0][timeend]", "200"),
        ("enrolments[0][suspend]", "1"),
    ];
    assert_eq!(
        enrol(&m, &[(ROLE_STUDENT, u, c)], &extra).await,
        Value::Null
    );
    let e = &m.enrolments()[0];
    assert_eq!((e.suspended, e.timestart, e.timeend), (true, 100, 200));
    enrol(&m, &[(ROLE_TEACHER, u, c)], &[]).await;
    let e = &m.enrolments()[0];
    assert_eq!(
        (e.suspended, e.timestart, e.timeend),
        (false, 0, 0),
        "reset to what was sent"
    );
    assert_eq!(
        e.roleids,
        [ROLE_STUDENT, ROLE_TEACHER],
        "a second role, not a replacement"
    );
}

#[tokio::test]
async fn enrol_errors_and_atomicity() {
    let m = FakeMoodle::start().await;
    let c = m.add_course(CourseSeed::new("C1"));
    let u = seed_user(&m, "ada");
    let answer = enrol(&m, &[(ROLE_STUDENT, u, c), (ROLE_STUDENT, 999, c)], &[]).await;
    assert_eq!(answer["exception"], "TypeError");
    assert!(answer.get("errorcode").is_none(), "{answer}");
    assert!(m.enrolments().is_empty(), "the first item is rolled back");
    let code = |v: Value| errorcode(&v).map(String::from);
    assert_eq!(
        code(enrol(&m, &[(ROLE_STUDENT, u, 999)], &[]).await).as_deref(),
        Some("invalidparameter")
    );
    assert_eq!(
        code(enrol(&m, &[(ROLE_MANAGER, u, c)], &[]).await).as_deref(),
        Some("wsusercannotassign")
    );
    assert_eq!(
        code(enrol(&m, &[(77, u, c)], &[]).await).as_deref(),
        Some("wsusercannotassign")
    );
    assert_eq!(
        code(enrol(&m, &[(ROLE_EDITINGTEACHER, u, c)], &[]).await),
        None
    );
    m.lack_capability("moodle/role:assign");
    assert_eq!(
        code(enrol(&m, &[(ROLE_STUDENT, u, c)], &[]).await).as_deref(),
        Some("wsusercannotassign")
    );
    m.lack_capability("enrol/manual:enrol");
    assert_eq!(
        code(enrol(&m, &[(ROLE_STUDENT, u, c)], &[]).await).as_deref(),
        Some("nopermissions")
    );
}

#[tokio::test]
async fn manual_instance_switch() {
    let m = FakeMoodle::start().await;
    let c = m.add_course(CourseSeed::new("C1"));
    let u = seed_user(&m, "ada");
    m.add_enrolment(c, u, ROLE_STUDENT, false);
    let unenrol = || {
        let (c, u) = (c.to_string(), u.to_string());
        let m = &m;
        async move {
            let p = [
                ("enrolments[0][userid]", u.as_str()),
                ("enrolments[0][courseid]", c.as_str()),
            ];
            ws(m, "enrol_manual_unenrol_users", &p).await
        }
    };
    m.set_manual_instance(c, ManualInstance::Disabled);
    assert_eq!(
        errorcode(&enrol(&m, &[(ROLE_STUDENT, u, c)], &[]).await),
        Some("wsnoinstance")
    );
    m.set_manual_instance(c, ManualInstance::Missing);
    assert_eq!(errorcode(&unenrol().await), Some("wsnoinstance"));
    m.set_manual_instance(c, ManualInstance::Disabled);
    assert_eq!(
        unenrol().await,
        Value::Null,
        "a disabled instance still unenrols"
    );
    assert!(m.enrolments().is_empty());
}

#[tokio::test]
async fn suspending_keeps_grades_and_unenrolling_deletes_them() {
    let m = FakeMoodle::start().await;
    let c = m.add_course(CourseSeed::new("C1"));
    let u = seed_user(&m, "ada");
    enrol(&m, &[(ROLE_STUDENT, u, c)], &[]).await;
    m.set_grade(c, u, Some(80.0));
    enrol(
        &m,
        &[(ROLE_STUDENT, u, c)],
        &[("enrolments[0][suspend]", "1")],
    )
    .await;
    assert_eq!(m.grade(c, u), Some(80.0));
    let p = [
        ("enrolments[0][userid]", u.to_string()),
        ("enrolments[0][courseid]", c.to_string()),
    ];
    let p: Vec<(&str, &str)> = p.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(ws(&m, "enrol_manual_unenrol_users", &p).await, Value::Null);
    assert_eq!(m.grade(c, u), None);
    assert!(m.enrolments().is_empty());
    // Enrolling again does not bring the grade back (recovergradesdefault is off).
    enrol(&m, &[(ROLE_STUDENT, u, c)], &[]).await;
    assert_eq!(m.grade(c, u), None);
    assert_eq!(
        m.enrolments()[0].roleids,
        [ROLE_STUDENT],
        "old roles were removed"
    );
}

#[tokio::test]
async fn enrolled_users_options() {
    let m = FakeMoodle::start().await;
    let c = m.add_course(CourseSeed::new("C1"));
    let (a, b) = (seed_user(&m, "ada"), seed_user(&m, "bob"));
    m.add_enrolment(c, a, ROLE_STUDENT, false);
    m.add_enrolment(c, b, ROLE_STUDENT, true);
    let list = |option: Option<&'static str>| {
        let c = c.to_string();
        let m = &m;
        async move {
            let mut p = vec![("courseid", c.clone())];
            if let Some(name) = option {
                p.push(("options[0][name]", name.to_string()));
                p.push(("options[0][value]", "1".to_string()));
            }
            let p: Vec<(&str, &str)> = p.iter().map(|(k, v)| (*k, v.as_str())).collect();
            ws(m, "core_enrol_get_enrolled_users", &p).await
        }
    };
    assert_eq!(
        ids(&list(None).await),
        [a, b],
        "suspended users are listed by default"
    );
    assert_eq!(ids(&list(Some("onlyactive")).await), [a]);
    assert_eq!(ids(&list(Some("onlysuspended")).await), [b]);
    m.lack_capability("moodle/course:enrolreview");
    assert_eq!(
        errorcode(&list(Some("onlyactive")).await),
        Some("nopermissions")
    );
}

// ----- grades and completion -----

#[tokio::test]
async fn grade_items_give_the_course_total() {
    let m = FakeMoodle::start().await;
    let c = m.add_course(CourseSeed {
        idnumber: "ev-1".into(),
        ..CourseSeed::new("C1")
    });
    let (a, b, t, s) = (
        seed_user(&m, "ada"),
        seed_user(&m, "bob"),
        seed_user(&m, "tim"),
        seed_user(&m, "sue"),
    );
    m.add_enrolment(c, a, ROLE_STUDENT, false);
    m.add_enrolment(c, b, ROLE_STUDENT, false);
    m.add_enrolment(c, t, ROLE_TEACHER, false);
    m.add_enrolment(c, s, ROLE_STUDENT, true);
    m.set_grade(c, a, Some(72.5));
    let all = ws(
        &m,
        "gradereport_user_get_grade_items",
        &[("courseid", &c.to_string())],
    )
    .await;
    let users: Vec<i64> = all["usergrades"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["userid"].as_i64().unwrap())
        .collect();
    assert_eq!(users, [a, b], "active students only");
    let total = &all["usergrades"][0]["gradeitems"][0];
    assert_eq!(total["itemtype"], "course");
    assert_eq!(
        (
            total["graderaw"].as_f64(),
            total["grademin"].as_f64(),
            total["grademax"].as_f64()
        ),
        (Some(72.5), Some(0.0), Some(100.0))
    );
    assert_eq!(total["percentageformatted"], "72.50 %");
    assert_eq!(
        all["usergrades"][1]["gradeitems"][0]["graderaw"],
        Value::Null
    );
    assert_eq!(all["usergrades"][0]["courseidnumber"], "ev-1");

    let one = ws(
        &m,
        "gradereport_user_get_grade_items",
        &[("courseid", &c.to_string()), ("userid", "999")],
    )
    .await;
    assert_eq!(errorcode(&one), Some("invaliduser"));
    m.lack_capability("moodle/grade:viewall");
    let all = ws(
        &m,
        "gradereport_user_get_grade_items",
        &[("courseid", &c.to_string())],
    )
    .await;
    assert_eq!(errorcode(&all), Some("nopermissions"));
}

#[tokio::test]
async fn overview_lists_every_course_of_a_student_suspended_too() {
    let m = FakeMoodle::start().await;
    let (c1, c2, c3) = (
        m.add_course(CourseSeed::new("C1")),
        m.add_course(CourseSeed::new("C2")),
        m.add_course(CourseSeed::new("C3")),
    );
    let u = seed_user(&m, "ada");
    m.add_enrolment(c1, u, ROLE_STUDENT, false);
    m.add_enrolment(c2, u, ROLE_STUDENT, true);
    m.add_enrolment(c3, u, ROLE_TEACHER, false);
    m.set_grade(c1, u, Some(85.0));
    let answer = ws(
        &m,
        "gradereport_overview_get_course_grades",
        &[("userid", &u.to_string())],
    )
    .await;
    assert_eq!(
        answer["grades"],
        json!([
            {"courseid": c1, "grade": "85.00", "rawgrade": "85.00000"},
            {"courseid": c2, "grade": "-", "rawgrade": null},
        ])
    );
}

#[tokio::test]
async fn completion_rules() {
    let m = FakeMoodle::start().await;
    let c = m.add_course(CourseSeed::new("C1"));
    let (a, s, t) = (
        seed_user(&m, "ada"),
        seed_user(&m, "sue"),
        seed_user(&m, "tim"),
    );
    m.add_enrolment(c, a, ROLE_STUDENT, false);
    m.add_enrolment(c, s, ROLE_STUDENT, true);
    m.add_enrolment(c, t, ROLE_TEACHER, false);
    let status = |userid: i64| {
        let m = &m;
        async move {
            let p = [("courseid", c.to_string()), ("userid", userid.to_string())];
            let p: Vec<(&str, &str)> = p.iter().map(|(k, v)| (*k, v.as_str())).collect();
            ws(m, "core_completion_get_course_completion_status", &p).await
        }
    };
    assert_eq!(errorcode(&status(a).await), Some("nocriteriaset"));
    m.set_completion_criteria(c, true);
    assert_eq!(
        errorcode(&status(s).await),
        Some("usernotenroled"),
        "suspended counts as not enrolled"
    );
    assert_eq!(
        errorcode(&status(t).await),
        Some("usernotenroled"),
        "teachers are not tracked"
    );
    assert_eq!(errorcode(&status(999).await), Some("invaliduser"));
    let answer = status(a).await;
    assert_eq!(answer["completionstatus"]["completed"], false);
    m.set_completion(c, a, true, Some(1_800_000_000));
    let answer = status(a).await;
    assert_eq!(answer["completionstatus"]["completed"], true);
    assert_eq!(
        answer["completionstatus"]["completions"][0]["timecompleted"],
        1_800_000_000
    );
    m.lack_capability("report/completion:view");
    assert_eq!(errorcode(&status(a).await), Some("cannotviewreport"));
    m.restore_capability("report/completion:view");
    m.set_completion_enabled(c, false);
    assert_eq!(errorcode(&status(a).await), Some("cannotviewreport"));
}

// ----- faults -----

#[tokio::test]
async fn a_503_fault_changes_nothing_and_is_consumed() {
    let m = FakeMoodle::start().await;
    m.fail_next(1, Fault::Http503);
    let client = reqwest::Client::new();
    let form = [
        ("wstoken", m.token()),
        ("wsfunction", "core_course_create_courses".into()),
        ("moodlewsrestformat", "json".into()),
        ("courses[0][fullname]", "F".into()),
        ("courses[0][shortname]", "S".into()),
        ("courses[0][categoryid]", "5".into()),
    ];
    let first = client.post(endpoint(&m)).form(&form).send().await.unwrap();
    assert_eq!(first.status(), 503);
    assert!(m.courses().is_empty());
    let second = client.post(endpoint(&m)).form(&form).send().await.unwrap();
    assert_eq!(second.status(), 200);
    assert_eq!(m.courses().len(), 1);
    assert_eq!(
        m.call_count("core_course_create_courses"),
        2,
        "faulted calls are recorded"
    );
}

#[tokio::test]
async fn faults_can_target_one_function() {
    let m = FakeMoodle::start().await;
    m.fail_next_for("core_course_create_courses", 2, Fault::DmlWrite);
    assert!(
        ws(&m, "core_webservice_get_site_info", &[])
            .await
            .get("exception")
            .is_none()
    );
    assert_eq!(
        errorcode(&create_course(&m, "C1", "").await),
        Some("dmlwriteexception")
    );
    assert_eq!(
        errorcode(&create_course(&m, "C1", "").await),
        Some("dmlwriteexception")
    );
    assert!(m.courses().is_empty(), "the fault comes before any write");
    assert!(create_course(&m, "C1", "").await.is_array());
}

#[tokio::test]
async fn after_commit_503_applies_the_call() {
    let m = FakeMoodle::start().await;
    m.fail_next(1, Fault::AfterCommit503);
    let response = reqwest::Client::new()
        .post(endpoint(&m))
        .form(&[
            ("wstoken", m.token().as_str()),
            ("wsfunction", "core_course_create_courses"),
            ("moodlewsrestformat", "json"),
            ("courses[0][fullname]", "F"),
            ("courses[0][shortname]", "S"),
            ("courses[0][categoryid]", "5"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(
        m.courses().len(),
        1,
        "it worked, but the client never heard"
    );
    assert_eq!(
        errorcode(&create_course(&m, "S", "").await),
        Some("shortnametaken")
    );
}

#[tokio::test]
async fn a_hang_makes_the_client_time_out() {
    let m = FakeMoodle::start().await;
    m.fail_next(1, Fault::Hang);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let form = [
        ("wstoken", m.token()),
        ("wsfunction", "core_webservice_get_site_info".into()),
    ];
    let err = client
        .post(endpoint(&m))
        .form(&form)
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert!(
        client.post(endpoint(&m)).form(&form).send().await.is_ok(),
        "only one call hangs"
    );
}

#[tokio::test]
async fn a_reset_is_a_connection_error_for_reqwest() {
    let m = FakeMoodle::start().await;
    let client = reqwest::Client::new();
    let form = [
        ("wstoken", m.token()),
        ("wsfunction", "core_course_create_courses".into()),
        ("moodlewsrestformat", "json".into()),
        ("courses[0][fullname]", "F".into()),
        ("courses[0][shortname]", "S".into()),
        ("courses[0][categoryid]", "5".into()),
    ];
    // Warm the connection pool so the reset hits a reused keep-alive connection: hyper
    // retries a request only when the pooled connection closed before it was sent.
    let info = [
        ("wstoken", m.token()),
        ("wsfunction", "core_webservice_get_site_info".into()),
    ];
    let warm = client.post(endpoint(&m)).form(&info).send().await.unwrap();
    warm.text().await.unwrap();
    m.fail_next(1, Fault::Reset);
    let err = client
        .post(endpoint(&m))
        .form(&form)
        .send()
        .await
        .unwrap_err();
    assert!(!err.is_timeout() && err.status().is_none(), "{err:?}");
    // A real RST (SO_LINGER 0), not a polite close: the cause is an io ConnectionReset.
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    let mut reset = false;
    while let Some(e) = source {
        reset |= e
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionReset);
        source = e.source();
    }
    assert!(reset, "{err:?}");
    assert!(m.courses().is_empty());
    let ok = client.post(endpoint(&m)).form(&form).send().await.unwrap();
    assert_eq!(ok.status(), 200, "the client recovers on a new connection");
    assert_eq!(m.courses().len(), 1);
}

#[tokio::test]
async fn latency_delays_every_call() {
    let m = FakeMoodle::start().await;
    m.set_latency(Duration::from_millis(120));
    let start = Instant::now();
    ws(&m, "core_webservice_get_site_info", &[]).await;
    assert!(start.elapsed() >= Duration::from_millis(120));
}
