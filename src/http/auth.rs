//! Request authentication: tenant bearer secrets and optional Standard Webhooks
//! signatures (admin and operator tokens: `extract::Caller`). Every comparison
//! is constant-time.

use axum::http::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::problem::Problem;
use crate::secret::Secret;

/// Signatures older or newer than this are refused (replay protection).
pub const SIGNATURE_TOLERANCE_SECS: i64 = 5 * 60;

/// The longest `webhook-id` remembered for replay protection.
const WEBHOOK_ID_MAX: usize = 255;

/// What a valid Standard Webhooks signature vouches for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// `webhook-id`: the same on every retry of one delivery.
    pub id: String,
    /// `webhook-timestamp`, Unix seconds.
    pub timestamp: i64,
}

/// The token of `Authorization: Bearer <token>`.
pub(super) fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(axum::http::header::AUTHORIZATION)?.as_bytes();
    let (scheme, token) = value.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| token.trim_ascii())
}

/// Checks `Authorization: Bearer` against `secret`.
pub fn require_bearer(headers: &HeaderMap, secret: &Secret, what: &str) -> Result<(), Problem> {
    match bearer(headers) {
        None => Err(Problem::unauthorized(format!(
            "send Authorization: Bearer <{what}>"
        ))),
        Some(token) if secret.matches(token) => Ok(()),
        Some(_) => Err(Problem::unauthorized(format!("the {what} is not valid"))),
    }
}

/// Verifies Standard Webhooks headers (`webhook-id`, `webhook-timestamp`,
/// `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`).
pub fn verify_signature(
    headers: &HeaderMap,
    body: &[u8],
    secret: &Secret,
    now: DateTime<Utc>,
) -> Result<Signed, Problem> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                Problem::unauthorized(format!(
                    "the {name} header is required (Standard Webhooks signature)"
                ))
            })
    };
    let id = header("webhook-id")?;
    let timestamp = header("webhook-timestamp")?;
    let signatures = header("webhook-signature")?;
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| Problem::unauthorized("webhook-timestamp must be Unix seconds"))?;
    // Saturating: a timestamp near i64::MIN must not overflow.
    if now.timestamp().saturating_sub(ts).saturating_abs() > SIGNATURE_TOLERANCE_SECS {
        return Err(Problem::unauthorized(
            "webhook-timestamp is more than 5 minutes away from now",
        ));
    }
    let mut mac = hmac(secret);
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    let expected = mac.finalize().into_bytes();
    // Several space-separated signatures may be sent during a key rotation.
    let valid = signatures.split_whitespace().any(|sig| {
        sig.strip_prefix("v1,")
            .and_then(|b64| B64.decode(b64).ok())
            .is_some_and(|raw| {
                use subtle::ConstantTimeEq;
                raw.ct_eq(expected.as_slice()).into()
            })
    });
    if !valid {
        return Err(Problem::unauthorized(
            "webhook-signature does not match the body",
        ));
    }
    // Checked after the signature, so an unauthenticated caller learns nothing.
    if id.len() > WEBHOOK_ID_MAX {
        return Err(Problem::bad_header(format!(
            "webhook-id must be at most {WEBHOOK_ID_MAX} characters"
        )));
    }
    Ok(Signed {
        id: id.to_string(),
        timestamp: ts,
    })
}

/// The HMAC of a signing secret. HMAC takes keys of any length, so the
/// fallible constructor cannot fail; the fallback key only satisfies the type.
fn hmac(secret: &Secret) -> Hmac<Sha256> {
    Hmac::<Sha256>::new_from_slice(&signing_key(secret))
        .unwrap_or_else(|_| <Hmac<Sha256> as hmac::digest::KeyInit>::new(&Default::default()))
}

/// Standard Webhooks secrets are `whsec_<base64>`; anything else is used as raw bytes.
fn signing_key(secret: &Secret) -> Vec<u8> {
    let text = secret.expose();
    text.strip_prefix("whsec_")
        .and_then(|b64| B64.decode(b64).ok())
        .unwrap_or_else(|| text.as_bytes().to_vec())
}

/// Signs a body the way a Standard Webhooks sender does (for tests and tools).
pub fn sign(secret: &Secret, id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = hmac(secret);
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn bearer_tokens_are_checked() {
        let secret = Secret::new("s3cret");
        let ok = headers(&[("authorization", "Bearer s3cret".into())]);
        assert!(require_bearer(&ok, &secret, "webhook secret").is_ok());
        let lower = headers(&[("authorization", "bearer s3cret".into())]);
        assert!(require_bearer(&lower, &secret, "webhook secret").is_ok());
        let wrong = headers(&[("authorization", "Bearer s3creT".into())]);
        assert_eq!(
            require_bearer(&wrong, &secret, "x").unwrap_err().status,
            401
        );
        let basic = headers(&[("authorization", "Basic s3cret".into())]);
        assert_eq!(
            require_bearer(&basic, &secret, "x").unwrap_err().status,
            401
        );
        assert_eq!(
            require_bearer(&HeaderMap::new(), &secret, "x")
                .unwrap_err()
                .status,
            401
        );
    }

    #[test]
    fn standard_webhooks_signatures() {
        // The example of the Standard Webhooks specification.
        let secret = Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let body = br#"{"test": 2432232314}"#;
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let ts = 1614265330;
        assert_eq!(
            sign(&secret, id, ts, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        let now = DateTime::from_timestamp(ts + 10, 0).unwrap();
        let good = headers(&[
            ("webhook-id", id.into()),
            ("webhook-timestamp", ts.to_string()),
            (
                "webhook-signature",
                format!("v1,bogus {}", sign(&secret, id, ts, body)),
            ),
        ]);
        assert!(verify_signature(&good, body, &secret, now).is_ok());
        assert!(verify_signature(&good, b"{}", &secret, now).is_err());
        let late = DateTime::from_timestamp(ts + 301, 0).unwrap();
        assert!(verify_signature(&good, body, &secret, late).is_err());
        let unsigned = headers(&[("webhook-id", id.into())]);
        assert!(verify_signature(&unsigned, body, &secret, now).is_err());
    }
}

/// Fuzzing the Standard Webhooks verifier (issue 10): any header values, body
/// and secret; no panic, and what `sign` signs verifies (and only that body).
#[cfg(test)]
mod proptests {
    use super::*;
    use axum::http::HeaderValue;
    use proptest::prelude::*;

    fn timestamp() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            Just(i64::MIN.to_string()),
            Just(i64::MAX.to_string()),
            Just("99999999999999999999999".into()),
            Just(String::new()),
            Just(" 1700000000 ".into()),
            "[0-9 +-]{0,24}",
            ".{0,24}",
        ]
    }

    fn signature() -> impl Strategy<Value = String> {
        prop_oneof![
            "v1,[A-Za-z0-9+/=]{0,64}",
            "(v1,[A-Za-z0-9+/=]{0,48} ?){0,4}",
            "v[0-9],.{0,40}",
            ".{0,80}",
        ]
    }

    fn secret() -> impl Strategy<Value = String> {
        prop_oneof!["whsec_[A-Za-z0-9+/=]{0,48}", ".{0,48}"]
    }

    fn headers(id: &[u8], ts: &[u8], sig: &[u8]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in [
            ("webhook-id", id),
            ("webhook-timestamp", ts),
            ("webhook-signature", sig),
        ] {
            if let Ok(v) = HeaderValue::from_bytes(value) {
                h.insert(name, v);
            }
        }
        h
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn any_headers_never_panic(
            id in prop::collection::vec(any::<u8>(), 0..300),
            ts in timestamp(),
            sig in signature(),
            body in prop::collection::vec(any::<u8>(), 0..128),
            secret in secret(),
            now in any::<i64>(),
        ) {
            let now = DateTime::from_timestamp(now % 100_000_000_000, 0).unwrap_or_default();
            let h = headers(&id, ts.as_bytes(), sig.as_bytes());
            let _ = verify_signature(&h, &body, &Secret::new(secret), now);
        }

        #[test]
        fn what_is_signed_verifies_and_nothing_else(
            id in "[!-~]{1,255}",
            offset in -300i64..=300,
            body in prop::collection::vec(any::<u8>(), 0..128),
            secret in secret(),
            flip in any::<usize>(),
        ) {
            let secret = Secret::new(secret);
            let ts = 1_700_000_000;
            let now = DateTime::from_timestamp(ts + offset, 0).unwrap();
            let sig = sign(&secret, &id, ts, &body);
            let h = headers(id.as_bytes(), ts.to_string().as_bytes(), sig.as_bytes());
            let signed = verify_signature(&h, &body, &secret, now).unwrap();
            prop_assert_eq!(signed, Signed { id: id.clone(), timestamp: ts });
            let mut tampered = body.clone();
            if tampered.is_empty() {
                tampered.push(0);
            } else {
                let i = flip % tampered.len();
                tampered[i] ^= 1;
            }
            prop_assert!(verify_signature(&h, &tampered, &secret, now).is_err());
        }
    }
}
