//! The write-back probes, which write nothing: a webhook gets a `HEAD`, which no
//! receiver takes for a write-back; accessplanit gets a token request or, with an API
//! key, a read of one user id.

use super::report::{CheckRow, Status, fail, origin, pass, row};
use crate::callback::{AccessplanitCallback, CallbackError, WebhookCallback};
use crate::config::{CallbackKind, TenantConfig};

const CALLBACK: &str = "write-back";

/// The write-back rows: off, the webhook, or accessplanit and its property names.
pub(super) async fn rows(config: &TenantConfig) -> Vec<CheckRow> {
    let cb = &config.callback;
    let target = cb.url.as_deref().map(origin).unwrap_or_default();
    match cb.kind {
        CallbackKind::None => vec![row(
            "callback",
            CALLBACK,
            Status::Info,
            "switched off (callback.kind = none): Moodle ids are not sent back".into(),
        )],
        CallbackKind::Webhook => {
            let row = match WebhookCallback::new(cb).probe().await {
                Ok(answer) => pass(
                    "callback",
                    CALLBACK,
                    format!(
                        "{target} is reachable ({answer}); a HEAD writes nothing, so the bearer \
                         token is only proven by the first write-back"
                    ),
                ),
                Err(e) => callback_failure(
                    &e,
                    "set callback.bearer_token to the token the receiver expects",
                ),
            };
            vec![row]
        }
        CallbackKind::Accessplanit => {
            let probe = match AccessplanitCallback::new(cb).probe().await {
                Ok(answer) => pass("callback", CALLBACK, format!("{target}: {answer}")),
                Err(e) => {
                    let fix = if cb.bearer_token.is_some() {
                        "create an API key for the accessplanit API user and set it as \
                         callback.bearer_token; callback.url is the API base, e.g. \
                         https://acme.accessplanit.com/accessplan"
                    } else {
                        "set callback.username and callback.password to an accessplanit API \
                         user; callback.url is the API base, e.g. \
                         https://acme.accessplanit.com/accessplan"
                    };
                    callback_failure(&e, fix)
                }
            };
            vec![probe, accessplanit_fields(config)]
        }
    }
}

fn callback_failure(e: &CallbackError, credentials_fix: &str) -> CheckRow {
    let fix = match e {
        CallbackError::Configuration(_) => credentials_fix.to_owned(),
        CallbackError::Transient(..) | CallbackError::Rejected(_) => "check callback.url, and \
             that its receiver is running and reachable from this host (DNS, firewall, proxy)"
            .to_owned(),
    };
    fail("callback", CALLBACK, e.to_string(), fix)
}

/// accessplanit publishes no property names for the course and template Moodle ids
/// (nor the score): without them those write-backs cannot be sent.
fn accessplanit_fields(config: &TenantConfig) -> CheckRow {
    let cb = &config.callback;
    let mut needed = vec![
        ("course_field", cb.course_field.as_deref()),
        ("template_field", cb.template_field.as_deref()),
    ];
    if !config.grades.poll_interval.is_zero() {
        needed.push(("score_field", cb.score_field.as_deref()));
    }
    let missing: Vec<&str> = needed
        .iter()
        .filter(|(_, v)| v.is_none_or(|v| v.trim().is_empty()))
        .map(|(k, _)| *k)
        .collect();
    if missing.is_empty() {
        let set: Vec<String> = needed
            .iter()
            .map(|(k, v)| format!("{k} = {}", v.unwrap_or_default()))
            .collect();
        pass("callback_fields", "write-back fields", set.join(", "))
    } else {
        let keys: Vec<String> = missing.iter().map(|k| format!("callback.{k}")).collect();
        fail(
            "callback_fields",
            "write-back fields",
            format!(
                "{} not set: those write-backs would wait forever",
                keys.join(", ")
            ),
            format!(
                "set {} to the accessplanit property names that hold the Moodle ids (and \
                 score), as listed on your accessplanit site's /apihelp/v2/modules/<module> \
                 pages",
                keys.join(" and ")
            ),
        )
    }
}
