//! `openapi.yaml` and the router agree: every served route is described, and
//! every described operation is served.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_yaml::Value;

use crate::support::*;

fn spec() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml"))
        .expect("openapi.yaml exists");
    serde_yaml::from_str(&text).expect("openapi.yaml is YAML")
}

/// `(METHOD, /path/{param})` of every operation in openapi.yaml.
fn described() -> BTreeSet<(String, String)> {
    let spec = spec();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3.1"));
    let mut out = BTreeSet::new();
    for (path, item) in spec["paths"].as_mapping().expect("paths") {
        for (method, _) in item.as_mapping().unwrap() {
            let method = method.as_str().unwrap();
            if ["get", "post", "put", "delete", "patch"].contains(&method) {
                out.insert((method.to_uppercase(), path.as_str().unwrap().to_string()));
            }
        }
    }
    out
}

/// The service serves the four event kinds on one route,
/// `/v1/tenants/{tenant}/events/{kind}` (one handler, and an unknown kind is a
/// 404 naming the kinds), while the document describes each kind as its own
/// operation so that each has its own body schema. This maps a described
/// kind path to that route; the test below checks that all four are there.
fn as_route(path: &str) -> String {
    match path.rsplit_once('/') {
        Some((base, kind))
            if base == "/v1/tenants/{tenant}/events"
                && apit_moodle_sync::events::EventKind::parse(kind).is_some() =>
        {
            format!("{base}/{{kind}}")
        }
        _ => path.to_string(),
    }
}

/// `(METHOD, /path/{param})` of every route, from the router's own table.
fn served() -> BTreeSet<(String, String)> {
    apit_moodle_sync::http::route_table()
        .into_iter()
        .map(|(method, path)| (method.to_string(), path.to_string()))
        .collect()
}

#[test]
fn every_event_kind_is_its_own_operation() {
    let described = described();
    for kind in apit_moodle_sync::events::EventKind::ALL {
        let path = format!("/v1/tenants/{{tenant}}/events/{}", kind.as_str());
        assert!(
            described.contains(&("POST".to_string(), path.clone())),
            "{path} is not described"
        );
    }
    assert!(
        !described.iter().any(|(_, p)| p.ends_with("/events/{kind}")),
        "the union operation is still described"
    );
}

#[test]
fn every_route_is_described_and_every_description_is_a_route() {
    let described: BTreeSet<_> = described()
        .into_iter()
        .map(|(method, path)| (method, as_route(&path)))
        .collect();
    let served = served();
    let missing: Vec<_> = served.difference(&described).collect();
    assert!(
        missing.is_empty(),
        "served but not in openapi.yaml: {missing:?}"
    );
    let extra: Vec<_> = described.difference(&served).collect();
    assert!(
        extra.is_empty(),
        "in openapi.yaml but not served: {extra:?}"
    );
}

#[tokio::test]
async fn every_described_operation_answers_on_the_running_service() {
    let app = spawn_app().await;
    for (method, path) in described() {
        let concrete = path
            .replace("{tenant}", TENANT)
            .replace("{kind}", "course-saved")
            .replace("{id}", "00000000-0000-7000-8000-000000000000");
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let r = app
            .http
            .request(method.clone(), format!("{}{concrete}", app.base))
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body = r.text().await.unwrap();
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert!(
            !body.contains("no such route"),
            "{method} {path} is not routed"
        );
    }
}
