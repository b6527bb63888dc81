//! Sign-in (a token exchanged for a session cookie) and sign-out.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use chrono::Utc;
use maud::html;
use serde::Deserialize;

use super::{form, refusal};
use crate::console::layout::{Frame, Nav, alert, answer, notice};
use crate::console::session::{
    self, COOKIE, SIGNIN_COOKIE, Session, over_tls, safe_next, see_other, set_cookie,
};
use crate::http::AppState;

/// How long a sign-in form stays usable.
const SIGNIN_FORM_SECS: i64 = 3600;

/// The query of the sign-in page.
#[derive(Debug, Default, Deserialize)]
pub struct SignInQuery {
    next: Option<String>,
    signed_out: Option<String>,
}

/// The sign-in page, with a fresh form token and its cookie.
fn form_page(
    state: &AppState,
    headers: &HeaderMap,
    next: Option<&str>,
    status: StatusCode,
    message: Option<&str>,
    signed_out: bool,
) -> Response {
    let console = &state.console;
    let nonce = hex::encode(rand::random::<[u8; 16]>());
    let frame = Frame {
        console,
        session: None,
        nav: Nav::None,
        refresh: None,
    };
    let base = frame.base().to_owned();
    let markup = frame.page(
        "Sign in",
        html! {
            @if signed_out { (notice("You are signed out.")) }
            @if let Some(message) = message { (alert(message)) }
            @if !state.access.is_open() {
                (alert("No token can sign in: set admin_token or an [operators.<name>] token in the configuration."))
            }
            form method="post" action={ (base) "/sign-in" } class="signin" {
                input type="hidden" name="csrf" value=(console.keys.signin_token(&nonce));
                @if let Some(next) = next {
                    input type="hidden" name="next" value=(next);
                }
                p {
                    label for="token" { "Token" }
                    span class="hint" id="token-hint" {
                        "The admin token, or your operator token. It is exchanged for a session cookie and not kept in the browser."
                    }
                    input type="password" id="token" name="token" required autocomplete="off"
                        aria-describedby="token-hint" autofocus;
                }
                p { button type="submit" { "Sign in" } }
            }
        },
    );
    let mut r = answer(status, markup);
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(
            console,
            over_tls(headers, console),
            SIGNIN_COOKIE,
            &nonce,
            SIGNIN_FORM_SECS,
        ),
    );
    r
}

/// `GET <path>/sign-in`: the form (or the page asked for, when already signed in).
pub async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let query: SignInQuery =
        serde_urlencoded::from_str(query.as_deref().unwrap_or_default()).unwrap_or_default();
    let now = Utc::now().timestamp();
    if session::cookie(&headers, COOKIE)
        .and_then(|v| state.console.keys.open(&state.access, v, now))
        .is_some()
    {
        return see_other(&safe_next(&state.console, query.next.as_deref()));
    }
    form_page(
        &state,
        &headers,
        query.next.as_deref(),
        StatusCode::OK,
        None,
        query.signed_out.is_some(),
    )
}

/// The sign-in form.
#[derive(Debug, Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    token: String,
    csrf: Option<String>,
    next: Option<String>,
}

/// `POST <path>/sign-in`: a valid token gets a session cookie; anything else the
/// form again with why (401), and a log line without the token.
pub async fn submit(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let console = &state.console;
    let input: SignInForm = match form(&state, None, &body) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let nonce = session::cookie(&headers, SIGNIN_COOKIE).unwrap_or_default();
    if !input
        .csrf
        .as_deref()
        .is_some_and(|t| console.keys.signin_ok(nonce, t))
    {
        tracing::warn!("console sign-in refused: missing or wrong CSRF token");
        return refusal(
            &state,
            None,
            StatusCode::FORBIDDEN,
            "This sign-in form was refused: it did not carry its security token (it may be \
             older than an hour, or come from another site). Reload the sign-in page and try again.",
        );
    }
    let Some(caller) = state.access.identify(input.token.trim().as_bytes()) else {
        tracing::warn!("console sign-in refused: the token is not valid");
        return form_page(
            &state,
            &headers,
            input.next.as_deref(),
            StatusCode::UNAUTHORIZED,
            Some("That token is not valid. Check it and try again."),
            false,
        );
    };
    let ttl = console.config.session_ttl.as_secs() as i64;
    let value = console
        .keys
        .issue(&state.access, &caller, Utc::now().timestamp() + ttl);
    tracing::info!(by = caller.name(), "console sign-in");
    let secure = over_tls(&headers, console);
    let mut r = see_other(&safe_next(console, input.next.as_deref()));
    let h = r.headers_mut();
    h.append(
        header::SET_COOKIE,
        set_cookie(console, secure, COOKIE, &value, ttl),
    );
    h.append(
        header::SET_COOKIE,
        set_cookie(console, secure, SIGNIN_COOKIE, "", 0),
    );
    r
}

/// The sign-out form.
#[derive(Debug, Deserialize)]
pub struct SignOutForm {
    csrf: Option<String>,
}

/// `POST <path>/sign-out`: ends the session here and clears its cookie.
pub async fn sign_out(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let input: SignOutForm = match form(&state, Some(&session), &body) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    if let Err(r) = super::require_csrf(&state, &session, input.csrf.as_deref()) {
        return *r;
    }
    let console = &state.console;
    console.keys.revoke(&session, Utc::now().timestamp());
    tracing::info!(by = session.caller.name(), "console sign-out");
    let mut r = see_other(&format!("{}/sign-in?signed_out=1", console.config.path));
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(console, over_tls(&headers, console), COOKIE, "", 0),
    );
    r
}
