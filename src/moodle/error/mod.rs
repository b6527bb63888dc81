//! Typed Moodle errors and their one classification (transient, configuration, data…).
//!
//! Everything the service knows about a Moodle failure lives in [`CASES`]: which class
//! it is, what happened in plain words, and (for configuration problems) what the Moodle
//! administrator must change. Classification is on `errorcode` and on protocol signals,
//! never on Moodle's (translated, version-dependent) message; the message is only quoted
//! and mined for names to show (a capability, a role id, a category id).
//! Retry policy is not here: the worker decides from [`MoodleError::class`].
//!
//! This file is the type, its texts and its class; `cases.rs` is the table.

mod cases;
#[cfg(test)]
mod tests;

use std::fmt;
use std::time::Duration;

use super::sanitize;
use super::wsfunction::ENROL;
use cases::{CASES, Case, On, Signal, UNKNOWN_CODE};

pub use cases::{fix_add_functions, fix_grant_capabilities};

/// What kind of problem an error is, which decides what the worker does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Network, timeout, HTTP 5xx/429, database hiccup: retry with backoff.
    Transient,
    /// The Moodle administrator must change something: retry slowly, report the fix.
    Configuration,
    /// This record is wrong; retrying will not help: fail the job.
    Data,
    /// Someone got there first (shortname/idnumber taken, user exists): look up and link.
    Conflict,
    /// Moodle misbehaved (no errorcode, invalid response): retry slowly.
    Defect,
}

impl ErrorClass {
    /// The snake_case name used in logs and stored outcomes.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Transient => "transient",
            ErrorClass::Configuration => "configuration",
            ErrorClass::Data => "data",
            ErrorClass::Conflict => "conflict",
            ErrorClass::Defect => "defect",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed Moodle call. `Display` is the operator-facing line (never a secret):
/// the function, what happened, Moodle's own words, and the fix when there is one.
///
/// Texts inside are already cleaned: one line, no server paths, no token.
/// `errorcode` is always a Moodle identifier (`[A-Za-z0-9_]`); anything else Moodle
/// put there (e.g. HTML from the password policy) is treated as "no errorcode".
#[derive(Clone)]
pub enum MoodleError {
    /// Moodle could not be reached, the connection broke, or no answer in time.
    Transport {
        /// The `wsfunction` called.
        function: String,
        /// What went wrong on the wire, e.g. "connection refused".
        detail: String,
        /// Whether the call ran out of time (the request may have been processed).
        timeout: bool,
    },
    /// The web server answered with a status other than 200.
    Status {
        /// The `wsfunction` called.
        function: String,
        /// The HTTP status code.
        status: u16,
        /// `Retry-After` on 503/429, as the server sent it (the worker bounds it).
        retry_after: Option<Duration>,
    },
    /// HTTP 200 but not JSON (an HTML page, XML, a login page).
    NotJson {
        /// The `wsfunction` called.
        function: String,
        /// The `Content-Type` of the answer (empty when there was none).
        content_type: String,
    },
    /// Moodle's error envelope `{exception, errorcode, message}`.
    Exception {
        /// The `wsfunction` called.
        function: String,
        /// The PHP class thrown, e.g. `core\exception\moodle_exception`, `TypeError`.
        exception: String,
        /// The stable code to classify on; missing for plain PHP errors.
        errorcode: Option<String>,
        /// Moodle's message, cleaned (quoted to operators, never matched on).
        message: String,
        /// Only from sites with debugging on; cleaned, and logged at debug level only.
        debuginfo: Option<String>,
    },
    /// A `warnings` entry in an otherwise successful answer.
    Warning {
        /// The `wsfunction` called.
        function: String,
        /// The code of the exception Moodle turned into a warning.
        warningcode: String,
        /// Moodle's message, cleaned.
        message: String,
        /// The item (e.g. course id) the warning is about.
        itemid: Option<i64>,
    },
    /// JSON that does not have the declared shape.
    Unexpected {
        /// The `wsfunction` called.
        function: String,
        /// What did not match.
        detail: String,
    },
}

impl std::error::Error for MoodleError {}

impl MoodleError {
    /// The class this error belongs to (one place for the whole service).
    pub fn class(&self) -> ErrorClass {
        self.case().class
    }

    /// The Moodle errorcode (or warningcode), when there is one.
    pub fn errorcode(&self) -> Option<&str> {
        match self {
            MoodleError::Exception { errorcode, .. } => errorcode.as_deref(),
            MoodleError::Warning { warningcode, .. } => Some(warningcode),
            _ => None,
        }
    }

    /// The web-service function that failed.
    pub fn function(&self) -> &str {
        match self {
            MoodleError::Transport { function, .. }
            | MoodleError::Status { function, .. }
            | MoodleError::NotJson { function, .. }
            | MoodleError::Exception { function, .. }
            | MoodleError::Warning { function, .. }
            | MoodleError::Unexpected { function, .. } => function,
        }
    }

    /// Whether the connection failed in the TLS handshake: a certificate the client does
    /// not trust or issued for another name, or no TLS at that address. The client words
    /// such transport failures with [`TLS_FAILED`]; their class stays transient.
    pub fn is_tls_failure(&self) -> bool {
        matches!(self, MoodleError::Transport { detail, .. } if detail.starts_with(TLS_FAILED))
    }

    /// A server-requested delay (HTTP `Retry-After`), when given.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            MoodleError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// What the Moodle administrator must change, in their words, when that is the
    /// problem (configuration errors only).
    pub fn fix(&self) -> Option<String> {
        self.case().fix.map(|template| cases::fill(template, self))
    }

    /// The short outcome recorded for a call: the errorcode, `http 503`, `timeout`…
    pub fn outcome(&self) -> String {
        match self {
            MoodleError::Transport { timeout: true, .. } => "timeout".into(),
            MoodleError::Transport { .. } => "connection error".into(),
            MoodleError::Status { status, .. } => format!("http {status}"),
            MoodleError::NotJson { .. } => "not json".into(),
            MoodleError::Exception {
                errorcode: Some(code),
                ..
            } => code.clone(),
            MoodleError::Exception { exception, .. } => {
                format!("no errorcode ({})", short_class(exception))
            }
            MoodleError::Warning { warningcode, .. } => format!("warning {warningcode}"),
            MoodleError::Unexpected { .. } => "unexpected answer".into(),
        }
    }

    /// The same error with every occurrence of `secret` replaced (defence in depth:
    /// a site that echoes the request must not put the token into logs).
    pub(crate) fn redacted(mut self, secret: &str) -> Self {
        let r = |s: &mut String| *s = sanitize::redact(s, secret);
        match &mut self {
            MoodleError::Transport { detail, .. } | MoodleError::Unexpected { detail, .. } => {
                r(detail)
            }
            MoodleError::NotJson { content_type, .. } => r(content_type),
            MoodleError::Exception {
                exception,
                errorcode,
                message,
                debuginfo,
                ..
            } => {
                r(exception);
                r(message);
                errorcode.iter_mut().chain(debuginfo.iter_mut()).for_each(r);
            }
            MoodleError::Warning {
                warningcode,
                message,
                ..
            } => {
                r(warningcode);
                r(message);
            }
            // Numbers only, and the function is the service's own constant.
            MoodleError::Status { .. } => {}
        }
        self
    }

    /// The case of [`CASES`] this error is, preferring a function-specific entry.
    fn case(&self) -> &'static Case {
        let on = self.on();
        let function = self.function();
        CASES
            .iter()
            .find(|c| c.on == on && c.only == Some(function))
            .or_else(|| CASES.iter().find(|c| c.on == on && c.only.is_none()))
            .unwrap_or(&UNKNOWN_CODE)
    }

    /// Moodle's own words, when it sent any.
    fn message(&self) -> Option<&str> {
        match self {
            MoodleError::Exception { message, .. } | MoodleError::Warning { message, .. } => {
                Some(message)
            }
            _ => None,
        }
    }

    /// The errorcode or protocol signal this error is classified on.
    fn on(&self) -> On<'_> {
        use Signal::*;
        let signal = match self {
            MoodleError::Transport { timeout: true, .. } => Timeout,
            MoodleError::Transport { .. } => Unreachable,
            MoodleError::Status { status, .. } => match status {
                300..=399 => Redirect,
                403 => Forbidden,
                404 => NotFound,
                408 | 429 => SlowDown,
                503 => Unavailable,
                500..=599 => ServerError,
                400..=499 => Refused,
                _ => OddStatus,
            },
            MoodleError::NotJson { content_type, .. } => {
                let content_type = content_type.to_ascii_lowercase();
                if content_type.contains("html") {
                    Html
                } else if content_type.contains("xml") {
                    Xml
                } else {
                    OtherBody
                }
            }
            MoodleError::Exception {
                function,
                exception,
                errorcode,
                message,
                debuginfo,
            } => match errorcode.as_deref() {
                // The function lookup and a missing course share `invalidrecord`; only
                // the table name tells them apart (see moodle-ws.md 1.4).
                Some("invalidrecord")
                    if exception.ends_with("dml_missing_record_exception")
                        && (message.contains("external_functions")
                            || debuginfo
                                .as_deref()
                                .is_some_and(|d| d.contains("external_functions"))) =>
                {
                    FunctionMissing
                }
                Some(code) => return On::Code(code),
                // Moodle 4.5 answers an unknown userid with a PHP TypeError (fixture
                // enrol_manual_enrol_users/unknown_user.json).
                None if exception == "TypeError" && function == ENROL => EnrolUserMissing,
                None => NoErrorcode,
            },
            MoodleError::Warning { warningcode, .. } => return On::Code(warningcode),
            MoodleError::Unexpected { .. } => BadShape,
        };
        On::Signal(signal)
    }
}

impl fmt::Display for MoodleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut line = self.what();
        if let Some(fix) = self.fix() {
            line.push_str(". Fix: ");
            line.push_str(&fix);
        }
        // One line whatever a caller put into the fields.
        f.write_str(&line.split_whitespace().collect::<Vec<_>>().join(" "))
    }
}

impl MoodleError {
    /// What happened, with Moodle's own words, on one line: the `Display` text without
    /// its fix, for reports that show the fix apart (the preflight table).
    pub fn what(&self) -> String {
        let case = self.case();
        let mut line = format!("{}: {}", self.function(), cases::fill(case.what, self));
        match self {
            MoodleError::Transport { detail, .. } | MoodleError::Unexpected { detail, .. } => {
                line.push_str(&format!(" ({detail})"));
            }
            MoodleError::Status {
                status,
                retry_after,
                ..
            } => {
                line.push_str(&format!(" (HTTP {status}"));
                if let Some(after) = retry_after {
                    line.push_str(&format!(", retry after {} s", after.as_secs()));
                }
                line.push(')');
            }
            MoodleError::NotJson { content_type, .. } => {
                let content_type = if content_type.is_empty() {
                    "no content type"
                } else {
                    content_type
                };
                line.push_str(&format!(" ({content_type})"));
            }
            MoodleError::Exception {
                exception,
                errorcode,
                message,
                ..
            } => {
                let code = errorcode
                    .as_deref()
                    .unwrap_or_else(|| short_class(exception));
                line.push_str(&format!(" (Moodle {code}"));
                push_message(&mut line, message);
            }
            MoodleError::Warning {
                warningcode,
                message,
                itemid,
                ..
            } => {
                line.push_str(&format!(" (Moodle warning {warningcode}"));
                if let Some(id) = itemid {
                    line.push_str(&format!(" for item {id}"));
                }
                push_message(&mut line, message);
            }
        }
        line.split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

fn push_message(line: &mut String, message: &str) {
    let message = message.trim().trim_end_matches('.');
    if !message.is_empty() {
        line.push_str(": ");
        line.push_str(message);
    }
    line.push(')');
}

/// Like the derived `Debug`, but `debuginfo` (SQL, personal data) is only counted:
/// the client logs it at debug level when it arrives.
impl fmt::Debug for MoodleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MoodleError::Transport {
                function,
                detail,
                timeout,
            } => f
                .debug_struct("Transport")
                .field("function", function)
                .field("detail", detail)
                .field("timeout", timeout)
                .finish(),
            MoodleError::Status {
                function,
                status,
                retry_after,
            } => f
                .debug_struct("Status")
                .field("function", function)
                .field("status", status)
                .field("retry_after", retry_after)
                .finish(),
            MoodleError::NotJson {
                function,
                content_type,
            } => f
                .debug_struct("NotJson")
                .field("function", function)
                .field("content_type", content_type)
                .finish(),
            MoodleError::Exception {
                function,
                exception,
                errorcode,
                message,
                debuginfo,
            } => f
                .debug_struct("Exception")
                .field("function", function)
                .field("exception", exception)
                .field("errorcode", errorcode)
                .field("message", message)
                .field(
                    "debuginfo",
                    &debuginfo
                        .as_ref()
                        .map(|d| format!("<{} chars, logged at debug level>", d.chars().count())),
                )
                .finish(),
            MoodleError::Warning {
                function,
                warningcode,
                message,
                itemid,
            } => f
                .debug_struct("Warning")
                .field("function", function)
                .field("warningcode", warningcode)
                .field("message", message)
                .field("itemid", itemid)
                .finish(),
            MoodleError::Unexpected { function, detail } => f
                .debug_struct("Unexpected")
                .field("function", function)
                .field("detail", detail)
                .finish(),
        }
    }
}

/// `core\exception\moodle_exception` → `moodle_exception`.
fn short_class(exception: &str) -> &str {
    exception.rsplit('\\').next().unwrap_or(exception)
}

/// Whether `code` is shaped like a Moodle errorcode or warningcode.
pub(crate) fn is_code(code: &str) -> bool {
    !code.is_empty()
        && code.len() <= 100
        && code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// How the client begins the detail of a transport failure in the TLS handshake.
pub(crate) const TLS_FAILED: &str = "TLS handshake failed";
