//! Console sessions and CSRF tokens.
//!
//! At sign-in the token is exchanged for a cookie that never holds it: the
//! value is `<session id>.<expiry>.<caller name>.<token fingerprint>.<MAC>`,
//! signed with HMAC-SHA256 under the console's key (`console.session_key`, or a
//! random key per process). Any replica with the same key accepts it; the
//! caller's scope is read from the configuration on every request, and the
//! fingerprint (an HMAC of the token, not the token) ends the sessions of a
//! token that was changed or removed. Sign-out clears the cookie and revokes
//! its session id in this process until it would have expired.
//!
//! Every state-changing form carries `csrf = HMAC(key, "csrf:" + session id)`;
//! the sign-in form, before any session, a token bound to a one-use cookie.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chrono::Utc;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::Console;
use crate::access::{Access, Caller};
use crate::http::AppState;

/// The session cookie's name.
pub const COOKIE: &str = "apit_console";
/// The sign-in form's cookie (binds the sign-in CSRF token to this browser).
pub const SIGNIN_COOKIE: &str = "apit_console_signin";

/// The signing key and the sessions signed out in this process.
pub struct Keys {
    key: Vec<u8>,
    /// Signed-out session ids and their expiry (Unix seconds).
    revoked: Mutex<HashMap<String, i64>>,
}

impl Keys {
    /// Keys from the configured secret, or random ones.
    pub fn new(secret: Option<&[u8]>) -> Self {
        let key = match secret {
            Some(s) => s.to_vec(),
            None => rand::random::<[u8; 32]>().to_vec(),
        };
        Keys {
            key,
            revoked: Mutex::new(HashMap::new()),
        }
    }

    fn mac(&self, purpose: &str, data: &[u8]) -> Vec<u8> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(purpose.as_bytes());
        mac.update(b":");
        mac.update(data);
        mac.finalize().into_bytes().to_vec()
    }

    fn verify(&self, purpose: &str, data: &[u8], tag: &[u8]) -> bool {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(purpose.as_bytes());
        mac.update(b":");
        mac.update(data);
        mac.verify_slice(tag).is_ok()
    }

    /// A short keyed fingerprint of a token (not reversible without the key).
    fn fingerprint(&self, token: &str) -> String {
        hex::encode(&self.mac("token", token.as_bytes())[..8])
    }

    /// A new session cookie value for `caller`, valid until `expires` (Unix seconds).
    pub fn issue(&self, access: &Access, caller: &Caller, expires: i64) -> String {
        let sid = hex::encode(rand::random::<[u8; 16]>());
        let fp = access
            .token_of(caller)
            .map(|t| self.fingerprint(t.expose()))
            .unwrap_or_default();
        let body = format!("{sid}.{expires}.{}.{fp}", caller.name());
        let tag = B64.encode(self.mac("session", body.as_bytes()));
        format!("{body}.{tag}")
    }

    /// The session a cookie value stands for, if it is genuine, unexpired, not
    /// signed out, and its caller still has the token it signed in with.
    pub fn open(&self, access: &Access, value: &str, now: i64) -> Option<Session> {
        let (body, tag) = value.rsplit_once('.')?;
        let tag = B64.decode(tag).ok()?;
        if !self.verify("session", body.as_bytes(), &tag) {
            return None;
        }
        let mut parts = body.split('.');
        let (sid, expires, name, fp) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let expires: i64 = expires.parse().ok()?;
        if expires <= now || self.is_revoked(sid) {
            return None;
        }
        let caller = access.by_name(name)?;
        let token = access.token_of(&caller)?;
        if self.fingerprint(token.expose()) != fp {
            return None;
        }
        Some(Session {
            csrf: B64.encode(self.mac("csrf", sid.as_bytes())),
            sid: sid.to_owned(),
            expires,
            caller,
        })
    }

    /// Ends a session in this process (its cookie is cleared by the answer).
    pub fn revoke(&self, session: &Session, now: i64) {
        let mut revoked = self.revoked.lock().unwrap_or_else(|e| e.into_inner());
        revoked.retain(|_, expiry| *expiry > now);
        revoked.insert(session.sid.clone(), session.expires);
    }

    fn is_revoked(&self, sid: &str) -> bool {
        self.revoked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(sid)
    }

    /// The sign-in form's CSRF token for the nonce in its cookie.
    pub fn signin_token(&self, nonce: &str) -> String {
        B64.encode(self.mac("signin", nonce.as_bytes()))
    }

    /// Checks a sign-in form's token against the nonce of its cookie.
    pub fn signin_ok(&self, nonce: &str, token: &str) -> bool {
        B64.decode(token)
            .is_ok_and(|tag| !nonce.is_empty() && self.verify("signin", nonce.as_bytes(), &tag))
    }
}

/// A signed-in console user.
#[derive(Debug, Clone)]
pub struct Session {
    sid: String,
    /// Unix seconds.
    pub expires: i64,
    pub caller: Caller,
    /// The CSRF token of this session's forms.
    pub csrf: String,
}

impl Session {
    /// True when a form's token is this session's (constant time).
    pub fn csrf_ok(&self, presented: &str) -> bool {
        use subtle::ConstantTimeEq;
        self.csrf.as_bytes().ct_eq(presented.as_bytes()).into()
    }
}

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// True when the request reached the service over TLS as far as it can tell:
/// only a trusted proxy's `X-Forwarded-Proto` / `Forwarded` can say so (the
/// service itself listens on plain HTTP).
pub fn over_tls(headers: &HeaderMap, console: &Console) -> bool {
    if !console.config.trust_forwarded_proto {
        return false;
    }
    let first = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(|v| v.trim().to_ascii_lowercase())
    };
    first("x-forwarded-proto").as_deref() == Some("https")
        || first("forwarded").is_some_and(|f| {
            f.split(';')
                .any(|p| p.trim().eq_ignore_ascii_case("proto=https"))
        })
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, limited to the console's
/// path, `Secure` over TLS; `max_age` 0 deletes it.
pub fn set_cookie(
    console: &Console,
    secure: bool,
    name: &str,
    value: &str,
    max_age: i64,
) -> HeaderValue {
    let mut c = format!(
        "{name}={value}; Path={}/; Max-Age={max_age}; HttpOnly; SameSite=Strict",
        console.config.path
    );
    if secure {
        c.push_str("; Secure");
    }
    HeaderValue::from_str(&c).expect("cookie values are ASCII")
}

/// The signed-in user of a console page; without one, the browser is sent to
/// the sign-in page (and back here after it, for a page that was asked for).
impl FromRequestParts<AppState> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let console = &state.console;
        let now = Utc::now().timestamp();
        if let Some(session) =
            cookie(&parts.headers, COOKIE).and_then(|v| console.keys.open(&state.access, v, now))
        {
            return Ok(session);
        }
        let base = &console.config.path;
        let mut to = format!("{base}/sign-in");
        if parts.method == axum::http::Method::GET {
            let wanted = parts
                .uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or_default();
            if wanted != format!("{base}/") {
                to.push('?');
                to.push_str(&serde_urlencoded::to_string([("next", wanted)]).unwrap_or_default());
            }
        }
        Err(see_other(&to))
    }
}

/// `303 See Other` to `to`.
pub fn see_other(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// A `next` target after sign-in: only a console page, never another site.
pub fn safe_next(console: &Console, next: Option<&str>) -> String {
    let base = &console.config.path;
    match next {
        Some(n)
            if n.starts_with(&format!("{base}/"))
                && !n.contains("//")
                && !n.contains('\\')
                && !n.contains("/sign-") =>
        {
            n.to_owned()
        }
        _ => format!("{base}/"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn access() -> Access {
        let config = Config::from_toml(
            r#"
            admin_token = "the-admin-token"
            [tenants.acme]
            webhook_secret = "s1"
            moodle_url = "https://m.acme.example"
            moodle_token = "t1"
            category_id = 1
            [operators.support]
            token = "support-token"
            tenants = ["acme"]
            "#,
        )
        .unwrap();
        Access::from_config(&config)
    }

    #[test]
    fn a_session_cookie_opens_only_as_it_was_issued() {
        let keys = Keys::new(None);
        let access = access();
        let caller = access.by_name("support").unwrap();
        let value = keys.issue(&access, &caller, 2_000);
        assert!(!value.contains("support-token"));
        let s = keys.open(&access, &value, 1_000).expect("valid");
        assert_eq!(s.caller.name(), "support");
        assert!(s.csrf_ok(&s.csrf) && !s.csrf_ok("") && !s.csrf_ok("x"));
        // Expired, tampered, or signed by another key.
        assert!(keys.open(&access, &value, 2_000).is_none());
        let forged = value.replacen("support", "admin", 1);
        assert!(keys.open(&access, &forged, 1_000).is_none());
        assert!(Keys::new(None).open(&access, &value, 1_000).is_none());
        assert!(keys.open(&access, "garbage", 1_000).is_none());
        // Signed out.
        keys.revoke(&s, 1_000);
        assert!(keys.open(&access, &value, 1_000).is_none());
    }

    #[test]
    fn a_changed_token_ends_its_sessions_and_a_shared_key_works_across_replicas() {
        let key = b"0123456789abcdef0123456789abcdef";
        let (a, b) = (Keys::new(Some(key)), Keys::new(Some(key)));
        let access = access();
        let value = a.issue(&access, &Caller::Admin, 2_000);
        assert!(
            b.open(&access, &value, 1_000).is_some(),
            "same key, other replica"
        );
        let rotated = Access::from_config(
            &Config::from_toml(r#"admin_token = "a-new-admin-token""#).unwrap(),
        );
        assert!(b.open(&rotated, &value, 1_000).is_none());
    }

    #[test]
    fn sign_in_tokens_are_bound_to_their_nonce() {
        let keys = Keys::new(None);
        let t = keys.signin_token("nonce-1");
        assert!(keys.signin_ok("nonce-1", &t));
        assert!(!keys.signin_ok("nonce-2", &t));
        assert!(!keys.signin_ok("", &keys.signin_token("")));
        assert!(!keys.signin_ok("nonce-1", "not base64 !"));
    }

    #[test]
    fn cookies_are_read_from_every_header() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; apit_console=v.1"),
        );
        h.append(header::COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(cookie(&h, COOKIE), Some("v.1"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "c"), None);
    }
}
