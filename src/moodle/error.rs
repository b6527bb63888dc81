//! Typed Moodle errors and their one classification (transient, configuration, data…).

use std::time::Duration;

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

/// A failed Moodle call. `Display` is the operator-facing text (never a secret).
#[derive(Debug, Clone, thiserror::Error)]
pub enum MoodleError {
    /// Moodle could not be reached, the connection broke, or no answer in time.
    #[error("{function}: Moodle could not be reached ({detail})")]
    Transport {
        function: String,
        detail: String,
        timeout: bool,
    },
    /// The web server answered with a status other than 200.
    #[error("{function}: Moodle answered HTTP {status}")]
    Status {
        function: String,
        status: u16,
        retry_after: Option<Duration>,
    },
    /// HTTP 200 but not JSON (an HTML page, XML, a login page).
    #[error("{function}: the answer is not Moodle's JSON ({content_type})")]
    NotJson {
        function: String,
        content_type: String,
    },
    /// Moodle's error envelope `{exception, errorcode, message}`.
    #[error("{function}: Moodle error {}: {message}", errorcode.as_deref().unwrap_or(exception))]
    Exception {
        function: String,
        exception: String,
        errorcode: Option<String>,
        message: String,
        debuginfo: Option<String>,
    },
    /// A `warnings` entry in an otherwise successful answer.
    #[error("{function}: Moodle warning {warningcode}: {message}")]
    Warning {
        function: String,
        warningcode: String,
        message: String,
        itemid: Option<i64>,
    },
    /// JSON that does not have the declared shape.
    #[error("{function}: unexpected answer from Moodle ({detail})")]
    Unexpected { function: String, detail: String },
}

impl MoodleError {
    /// The class this error belongs to (one place for the whole service).
    pub fn class(&self) -> ErrorClass {
        match self {
            MoodleError::Transport { .. } => ErrorClass::Transient,
            MoodleError::Status { status, .. } if *status >= 500 || *status == 429 => {
                ErrorClass::Transient
            }
            MoodleError::Status { .. } | MoodleError::NotJson { .. } => ErrorClass::Configuration,
            MoodleError::Exception { .. } | MoodleError::Warning { .. } => ErrorClass::Defect,
            MoodleError::Unexpected { .. } => ErrorClass::Defect,
        }
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

    /// A server-requested delay (HTTP `Retry-After`), when given.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            MoodleError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// What the Moodle administrator must change, in their words, when that is the problem.
    pub fn fix(&self) -> Option<String> {
        None
    }
}
