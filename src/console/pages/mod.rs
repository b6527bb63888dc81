//! The console's pages, one module each, and what they share: reading a form,
//! refusing a form without its CSRF token, "not found".

pub mod bulk;
pub mod check;
pub mod job;
pub mod jobs;
pub mod overview;
pub mod signin;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::html;
use serde::de::DeserializeOwned;

use super::layout::{Frame, Nav, alert, answer};
use super::session::{self, Session};
use crate::http::AppState;

/// `GET <path>`: the overview is at `<path>/`.
pub async fn to_overview(State(state): State<AppState>) -> Response {
    session::see_other(&format!("{}/", state.console.config.path))
}

/// Any other path under the console: 404, as a page.
pub async fn not_found(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let now = chrono::Utc::now().timestamp();
    let signed_in = session::cookie(&headers, session::COOKIE)
        .and_then(|v| state.console.keys.open(&state.access, v, now));
    missing(&state, signed_in.as_ref(), "There is no such page.")
}

/// A 404 page: what the caller may not see looks exactly like what does not exist.
pub fn missing(state: &AppState, session: Option<&Session>, text: &str) -> Response {
    let frame = Frame {
        console: &state.console,
        session,
        nav: Nav::None,
        refresh: None,
    };
    let base = frame.base().to_owned();
    answer(
        StatusCode::NOT_FOUND,
        frame.page(
            "Not found",
            html! {
                p { (text) }
                p { a href={ (base) "/" } { "Back to the overview" } }
            },
        ),
    )
}

/// A request a page refuses: the answer to send instead (boxed: it is large).
pub type Refused = Box<Response>;

/// A form body as `T`, or a 400 page.
pub fn form<T: DeserializeOwned>(
    state: &AppState,
    session: Option<&Session>,
    body: &[u8],
) -> Result<T, Refused> {
    serde_urlencoded::from_bytes(body).map_err(|_| {
        Box::new(refusal(
            state,
            session,
            StatusCode::BAD_REQUEST,
            "The form could not be read. Go back, reload the page and try again.",
        ))
    })
}

/// Checks a form's CSRF token; a form without the right one is refused (403) and changes nothing.
pub fn require_csrf(
    state: &AppState,
    session: &Session,
    presented: Option<&str>,
) -> Result<(), Refused> {
    if presented.is_some_and(|t| session.csrf_ok(t)) {
        return Ok(());
    }
    tracing::warn!(
        by = session.caller.name(),
        "console form refused: missing or wrong CSRF token"
    );
    Err(Box::new(refusal(
        state,
        Some(session),
        StatusCode::FORBIDDEN,
        "This form was refused: it did not carry this session's security token \
         (it may come from another site, or from a page older than your sign-in). \
         Nothing was changed. Go back, reload the page and try again.",
    )))
}

/// A page that says why a request was refused.
pub fn refusal(
    state: &AppState,
    session: Option<&Session>,
    status: StatusCode,
    text: &str,
) -> Response {
    let frame = Frame {
        console: &state.console,
        session,
        nav: Nav::None,
        refresh: None,
    };
    let base = frame.base().to_owned();
    answer(
        status,
        frame.page(
            "Refused",
            html! {
                (alert(text))
                p { a href={ (base) "/" } { "Back to the overview" } }
            },
        ),
    )
}
