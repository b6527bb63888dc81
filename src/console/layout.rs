//! The frame every console page shares (skip link, navigation, who is signed
//! in, sign-out), and the small pieces pages repeat: status badges, times,
//! pagers. Semantic HTML throughout; a status is always a word and a symbol,
//! never a colour alone.

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::Console;
use super::session::Session;
use crate::check::Status as CheckStatus;
use crate::store::{JobStatus, WritebackStatus};

/// Which navigation entry a page belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Overview,
    Jobs,
    None,
}

/// What a page needs to draw its frame.
pub struct Frame<'a> {
    pub console: &'a Console,
    pub session: Option<&'a Session>,
    pub nav: Nav,
    /// Reload the page by itself after this long.
    pub refresh: Option<Duration>,
}

impl<'a> Frame<'a> {
    /// The frame of a signed-in page.
    pub fn new(console: &'a Console, session: &'a Session, nav: Nav) -> Self {
        Frame {
            console,
            session: Some(session),
            nav,
            refresh: None,
        }
    }

    /// The console's base path (no trailing slash).
    pub fn base(&self) -> &str {
        &self.console.config.path
    }

    /// A whole page: `title` is the document title and the page's `h1`.
    pub fn page(&self, title: &str, body: Markup) -> Markup {
        let base = self.base();
        let item = |nav: Nav, href: String, label: &str| {
            html! {
                li {
                    @if nav == self.nav {
                        a href=(href) aria-current="page" { (label) }
                    } @else {
                        a href=(href) { (label) }
                    }
                }
            }
        };
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    @if let Some(every) = self.refresh {
                        meta http-equiv="refresh" content=(every.as_secs().max(1));
                    }
                    title { (title) " · apit-moodle-sync console" }
                    link rel="stylesheet" href={ (base) "/assets/console.css" };
                }
                body {
                    a class="skip" href="#main" { "Skip to content" }
                    header class="top" {
                        p class="brand" { a href={ (base) "/" } { "apit-moodle-sync" } " console" }
                        @if let Some(session) = self.session {
                            nav aria-label="Main" {
                                ul {
                                    (item(Nav::Overview, format!("{base}/"), "Overview"))
                                    (item(Nav::Jobs, format!("{base}/jobs"), "Jobs"))
                                }
                            }
                            div class="who" {
                                span {
                                    "Signed in as " strong { (session.caller.name()) }
                                    @if let Some(scope) = session.caller.scope() {
                                        " (tenants: " (scope.iter().cloned().collect::<Vec<_>>().join(", ")) ")"
                                    } @else {
                                        " (all tenants)"
                                    }
                                }
                                form method="post" action={ (base) "/sign-out" } class="inline" {
                                    (csrf(session))
                                    button type="submit" class="secondary" { "Sign out" }
                                }
                            }
                        }
                    }
                    main id="main" tabindex="-1" {
                        h1 { (title) }
                        (body)
                    }
                }
            }
        }
    }
}

/// The hidden CSRF field of a form.
pub fn csrf(session: &Session) -> Markup {
    html! { input type="hidden" name="csrf" value=(session.csrf); }
}

/// An HTML answer with a status.
pub fn answer(status: StatusCode, markup: Markup) -> Response {
    (status, markup).into_response()
}

/// A job status as a badge: symbol, word, and a class for colour.
pub fn job_status(status: JobStatus) -> Markup {
    let symbol = match status {
        JobStatus::Queued => "◷",
        JobStatus::Running => "▶",
        JobStatus::Succeeded => "✓",
        JobStatus::Skipped => "↷",
        JobStatus::Failed => "✗",
        JobStatus::Dead => "☠",
    };
    badge(symbol, status.as_str(), status.as_str())
}

/// A write-back status as a badge.
pub fn writeback_status(status: WritebackStatus) -> Markup {
    let (symbol, class) = match status {
        WritebackStatus::Pending => ("◷", "queued"),
        WritebackStatus::Delivered => ("✓", "succeeded"),
        WritebackStatus::Superseded => ("↷", "skipped"),
        WritebackStatus::Dead => ("☠", "dead"),
    };
    badge(symbol, status.as_str(), class)
}

/// A preflight row's mark as a badge.
pub fn check_status(status: CheckStatus) -> Markup {
    let (word, class) = match status {
        CheckStatus::Pass => ("pass", "succeeded"),
        CheckStatus::Fail => ("fail", "failed"),
        CheckStatus::NotRun => ("not run", "skipped"),
        CheckStatus::Info => ("info", "queued"),
    };
    badge(status.mark(), word, class)
}

fn badge(symbol: &str, word: &str, class: &str) -> Markup {
    html! {
        span class={ "status status-" (class) } {
            span aria-hidden="true" { (symbol) } " " (word)
        }
    }
}

/// A time as `2026-11-23 11:29:57 UTC`, machine-readable too.
pub fn time(t: DateTime<Utc>) -> Markup {
    html! { time datetime=(t.to_rfc3339()) { (t.format("%Y-%m-%d %H:%M:%S UTC")) } }
}

/// A time with how long ago (or from now) it is.
pub fn time_ago(t: DateTime<Utc>, now: DateTime<Utc>) -> Markup {
    let d = now - t;
    let words = if d.num_seconds() >= 0 {
        format!("{} ago", span(d.num_seconds()))
    } else {
        format!("in {}", span(-d.num_seconds()))
    };
    html! { (time(t)) " " span class="muted" { "(" (words) ")" } }
}

/// A number of seconds in the largest fitting unit: `45 s`, `3 min`, `2 h 5 min`, `3 d`.
pub fn span(secs: i64) -> String {
    match secs {
        s if s < 60 => format!("{s} s"),
        s if s < 3600 => format!("{} min", s / 60),
        s if s < 86_400 => match (s / 3600, (s % 3600) / 60) {
            (h, 0) => format!("{h} h"),
            (h, m) => format!("{h} h {m} min"),
        },
        s => format!("{} d", s / 86_400),
    }
}

/// A notice shown at the top of a page (after an action).
pub fn notice(text: &str) -> Markup {
    html! { p class="notice" role="status" { (text) } }
}

/// An error box read out by screen readers.
pub fn alert(text: &str) -> Markup {
    html! { p class="alert" role="alert" { (text) } }
}

/// Text cut to `max` characters on one line, with the whole text as a tooltip.
pub fn one_line(text: &str, max: usize) -> Markup {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        return html! { (flat) };
    }
    let cut: String = flat.chars().take(max).collect();
    html! { span title=(flat) { (cut) "…" } }
}

/// A dash, for empty cells.
pub fn dash() -> Markup {
    PreEscaped("&ndash;".to_string())
}
