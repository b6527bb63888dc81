//! Typed Moodle errors and their one classification (transient, configuration, data…).
//!
//! Everything the service knows about a Moodle failure lives in [`CASES`]: which class
//! it is, what happened in plain words, and (for configuration problems) what the Moodle
//! administrator must change. Classification is on `errorcode` and on protocol signals,
//! never on Moodle's (translated, version-dependent) message; the message is only quoted
//! and mined for names to show (a capability, a role id, a category id).
//! Retry policy is not here: the worker decides from [`MoodleError::class`].

use std::fmt;
use std::time::Duration;

use super::sanitize;

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
        self.case().fix.map(|template| self.render(template))
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
    pub(crate) fn redacted(self, secret: &str) -> Self {
        let r = |s: String| sanitize::redact(&s, secret);
        match self {
            MoodleError::Transport {
                function,
                detail,
                timeout,
            } => MoodleError::Transport {
                function,
                detail: r(detail),
                timeout,
            },
            MoodleError::NotJson {
                function,
                content_type,
            } => MoodleError::NotJson {
                function,
                content_type: r(content_type),
            },
            MoodleError::Exception {
                function,
                exception,
                errorcode,
                message,
                debuginfo,
            } => MoodleError::Exception {
                function,
                exception: r(exception),
                errorcode: errorcode.map(r),
                message: r(message),
                debuginfo: debuginfo.map(r),
            },
            MoodleError::Warning {
                function,
                warningcode,
                message,
                itemid,
            } => MoodleError::Warning {
                function,
                warningcode: r(warningcode),
                message: r(message),
                itemid,
            },
            MoodleError::Unexpected { function, detail } => MoodleError::Unexpected {
                function,
                detail: r(detail),
            },
            status @ MoodleError::Status { .. } => status,
        }
    }

    /// The case of [`CASES`] this error is, preferring a function-specific entry.
    fn case(&self) -> &'static Case {
        let on = self.on();
        let function = self.function();
        CASES
            .iter()
            .find(|c| c.on == on && c.only == Some(function))
            .or_else(|| CASES.iter().find(|c| c.on == on && c.only.is_none()))
            .or_else(|| {
                let unknown = On::Signal(Signal::UnknownCode);
                CASES.iter().find(|c| c.on == unknown)
            })
            .expect("CASES has an UnknownCode entry")
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

    /// Fills the placeholders of a [`Case`] text for this error.
    fn render(&self, template: &str) -> String {
        let mut text = template.replace("{function}", self.function());
        if text.contains("{capability}") {
            text = text.replace("{capability}", &self.capability());
        }
        if text.contains("{role}") {
            let role = self
                .message()
                .and_then(|m| number_after(m, "role ("))
                .map_or_else(
                    || "the enrolment role".to_owned(),
                    |id| format!("role {id}"),
                );
            text = text.replace("{role}", &role);
        }
        if text.contains("{category}") {
            let category = self
                .message()
                .and_then(|m| number_after(m, "category id:"))
                .map_or_else(|| "the category".to_owned(), |id| format!("category {id}"));
            text = text.replace("{category}", &category);
        }
        text
    }

    fn message(&self) -> Option<&str> {
        match self {
            MoodleError::Exception { message, .. } | MoodleError::Warning { message, .. } => {
                Some(message)
            }
            _ => None,
        }
    }

    /// The capability to grant: Moodle's human name from the message's last
    /// parentheses ("… (Create courses)") and the usual capability of the function.
    fn capability(&self) -> String {
        let named = self.message().and_then(last_parenthesised).filter(|n| {
            // "(1)" style ids are not capability names.
            !n.chars().all(|c| c.is_ascii_digit())
        });
        let usual = CAPABILITIES
            .iter()
            .find(|(f, _)| *f == self.function())
            .map(|(_, caps)| *caps);
        match (named, usual) {
            (Some(named), Some(usual)) => format!("'{named}' ({usual})"),
            (Some(named), None) => format!("'{named}'"),
            (None, Some(usual)) => usual.to_owned(),
            (None, None) => "the capability Moodle names".to_owned(),
        }
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
        let mut line = format!("{}: {}", self.function(), self.render(case.what));
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

fn last_parenthesised(message: &str) -> Option<&str> {
    let close = message.rfind(')')?;
    let open = message[..close].rfind('(')?;
    let inner = message[open + 1..close].trim();
    (!inner.is_empty()).then_some(inner)
}

fn number_after<'a>(message: &'a str, marker: &str) -> Option<&'a str> {
    let start = message.find(marker)? + marker.len();
    let rest = message[start..].trim_start();
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    (end > 0).then(|| &rest[..end])
}

const ENROL: &str = "enrol_manual_enrol_users";

/// How the client begins the detail of a transport failure in the TLS handshake.
pub(crate) const TLS_FAILED: &str = "TLS handshake failed";

/// The capabilities each function usually needs (moodle-ws.md §2 and §7), named in the
/// fix for `nopermissions`.
const CAPABILITIES: &[(&str, &str)] = &[
    ("core_course_create_courses", "moodle/course:create"),
    (
        "core_course_update_courses",
        "moodle/course:update, moodle/course:changefullname, moodle/course:changesummary",
    ),
    (
        "core_course_get_courses_by_field",
        "moodle/course:viewhiddencourses",
    ),
    ("core_user_create_users", "moodle/user:create"),
    (
        "core_user_get_users_by_field",
        "moodle/user:viewdetails, moodle/user:viewalldetails",
    ),
    (
        "core_user_get_users",
        "moodle/user:viewdetails, moodle/user:viewalldetails",
    ),
    (ENROL, "enrol/manual:enrol, moodle/role:assign"),
    ("enrol_manual_unenrol_users", "enrol/manual:unenrol"),
    (
        "gradereport_user_get_grade_items",
        "gradereport/user:view, moodle/grade:viewall",
    ),
    (
        "core_completion_get_course_completion_status",
        "report/completion:view",
    ),
];

/// Protocol-level facts that are not an errorcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    Timeout,
    Unreachable,
    Redirect,
    Forbidden,
    NotFound,
    SlowDown,
    Unavailable,
    ServerError,
    Refused,
    OddStatus,
    Html,
    Xml,
    OtherBody,
    FunctionMissing,
    EnrolUserMissing,
    NoErrorcode,
    UnknownCode,
    BadShape,
}

/// What a [`Case`] matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum On<'a> {
    Code(&'a str),
    Signal(Signal),
}

/// One row of the classification: class, plain-words text and fix, next to each other.
///
/// Placeholders: `{function}`, `{capability}` (from the message and [`CAPABILITIES`]),
/// `{role}` ("role 5"), `{category}` ("category 99").
struct Case {
    on: On<'static>,
    /// Only for this function; a function-specific row wins over a general one.
    only: Option<&'static str>,
    class: ErrorClass,
    /// What happened, in plain words (no trailing period).
    what: &'static str,
    /// What the Moodle administrator must change (configuration rows only).
    fix: Option<&'static str>,
}

use ErrorClass::{Configuration, Conflict, Data, Defect, Transient};

const fn code(code: &'static str, class: ErrorClass, what: &'static str) -> Case {
    Case {
        on: On::Code(code),
        only: None,
        class,
        what,
        fix: None,
    }
}

const fn code_in(
    code: &'static str,
    function: &'static str,
    class: ErrorClass,
    what: &'static str,
) -> Case {
    Case {
        on: On::Code(code),
        only: Some(function),
        class,
        what,
        fix: None,
    }
}

const fn signal(signal: Signal, class: ErrorClass, what: &'static str) -> Case {
    Case {
        on: On::Signal(signal),
        only: None,
        class,
        what,
        fix: None,
    }
}

const fn config(on: On<'static>, what: &'static str, fix: &'static str) -> Case {
    Case {
        on,
        only: None,
        class: Configuration,
        what,
        fix: Some(fix),
    }
}

const fn config_code(code: &'static str, what: &'static str, fix: &'static str) -> Case {
    config(On::Code(code), what, fix)
}

/// How a function gets into the token's External Service, in the administrator's words.
/// A macro so that the `accessexception` row can extend the same literal with `concat!`.
macro_rules! add_function_fix {
    () => {
        "add the function {function} to the External Service used by this token (Site \
         administration › Server › Web services › External services › Functions)"
    };
}

/// The fix for functions missing from the token's External Service (the preflight reads
/// them from `core_webservice_get_site_info`, so no call has failed): the wording of the
/// `accessexception` row without its list of other causes.
pub fn fix_add_functions(functions: &[&str]) -> String {
    let text = add_function_fix!();
    match functions {
        [one] => text.replace("{function}", one),
        many => text.replace(
            "the function {function}",
            &format!("the functions {}", many.join(", ")),
        ),
    }
}

/// The fix for a capability the integration user's role lacks, worded as for
/// `nopermissions`; `capabilities` names them, e.g. `moodle/user:viewalldetails`.
pub fn fix_grant_capabilities(capabilities: &str) -> String {
    CASES
        .iter()
        .find(|c| c.on == On::Code("nopermissions") && c.only.is_none())
        .and_then(|c| c.fix)
        .expect("CASES has a nopermissions row with a fix")
        .replace("{capability}", capabilities)
}

const WWWROOT_FIX: &str = "moodle_url is not the site's wwwroot (it answered with a web page): set it \
     to the site address exactly as in Moodle's config.php ($CFG->wwwroot), scheme and \
     sub-directory included";

/// THE classification (moodle-ws.md §6), with every text the operator sees.
const CASES: &[Case] = &[
    // ---- transient: retry with backoff --------------------------------------------
    signal(Signal::Timeout, Transient, "Moodle did not answer in time"),
    signal(
        Signal::Unreachable,
        Transient,
        "Moodle could not be reached",
    ),
    signal(
        Signal::SlowDown,
        Transient,
        "Moodle (or a proxy in front of it) asked to slow down",
    ),
    signal(
        Signal::Unavailable,
        Transient,
        "Moodle is unavailable (upgrade, maintenance or overload)",
    ),
    signal(
        Signal::ServerError,
        Transient,
        "Moodle's web server failed (PHP error, timeout or proxy trouble)",
    ),
    code(
        "dmlreadexception",
        Transient,
        "Moodle could not read its database",
    ),
    code(
        "dmlwriteexception",
        Transient,
        "Moodle could not write to its database (a lock, a concurrent write, or a value too long)",
    ),
    code(
        "dmltransactionexception",
        Transient,
        "a Moodle database transaction failed",
    ),
    code(
        "sitemaintenance",
        Transient,
        "Moodle is in maintenance mode",
    ),
    // ---- configuration: the Moodle administrator must act ---------------------------
    config(
        On::Signal(Signal::Redirect),
        "Moodle answered with a redirect",
        "moodle_url is not the site's wwwroot (it answered with a redirect): set it to the \
         site address exactly as in Moodle's config.php ($CFG->wwwroot), scheme and \
         sub-directory included",
    ),
    config(
        On::Signal(Signal::Forbidden),
        "Moodle refuses web-service calls",
        "enable web services (Site administration › Advanced features › Enable web services) \
         and the REST protocol (Site administration › Server › Web services › Manage protocols)",
    ),
    config(
        On::Signal(Signal::NotFound),
        "there is no Moodle web-service endpoint at this address",
        "moodle_url must be the site's wwwroot, so that <moodle_url>/webservice/rest/server.php \
         exists: check its scheme, host and sub-directory",
    ),
    config(
        On::Signal(Signal::Refused),
        "a web server or proxy in front of Moodle refused the request",
        "let POST requests to <moodle_url>/webservice/rest/server.php through whatever sits in \
         front of Moodle (authentication, firewall, request size limits)",
    ),
    config(
        On::Signal(Signal::Html),
        "Moodle answered with a web page instead of web-service JSON",
        WWWROOT_FIX,
    ),
    config(
        On::Signal(Signal::OtherBody),
        "the answer is not Moodle's web-service JSON",
        WWWROOT_FIX,
    ),
    config(
        On::Signal(Signal::Xml),
        "Moodle answered in XML instead of JSON, so it did not receive the request's form body",
        "make moodle_url the site's exact wwwroot so that no redirect or proxy rewrites the \
         POST to <moodle_url>/webservice/rest/server.php",
    ),
    config(
        On::Signal(Signal::FunctionMissing),
        "the web-service function {function} does not exist on this Moodle",
        "upgrade Moodle, or enable the plugin that provides {function}; check that moodle_url \
         points at the right site",
    ),
    config_code(
        "invalidtoken",
        "Moodle does not accept the token",
        "the token is not valid: create a new token for the integration user and update \
         moodle_token (Site administration › Server › Web services › Manage tokens)",
    ),
    config_code(
        "accessexception",
        "Moodle denied the token access to {function}",
        concat!(
            add_function_fix!(),
            ", and check the token user has webservice/rest:use; an expired or IP-restricted \
             token, or a suspended integration user, gives the same error"
        ),
    ),
    config_code(
        "nopermissions",
        "the integration user lacks a capability",
        "give the integration user's role {capability} at system level (Site administration › \
         Users › Permissions › Define roles)",
    ),
    config_code(
        "wsusercannotassign",
        "the integration user may not assign {role} in this course",
        "allow the integration user's role to assign {role} (Site administration › Users › \
         Permissions › Define roles › Allow role assignments), and check that {role} exists \
         and can be assigned in course context",
    ),
    config_code(
        "wsnoinstance",
        "the course has no enabled manual enrolment method",
        "add or enable the Manual enrolments method in the course (Course › Participants › \
         Enrolment methods), and keep the Manual enrolments plugin enabled (Site administration \
         › Plugins › Enrolments › Manage enrol plugins)",
    ),
    config_code(
        "wscannotenrol",
        "the course's manual enrolment method refuses to enrol",
        "enable the Manual enrolments method of the course (Course › Participants › Enrolment \
         methods)",
    ),
    config_code(
        "wscannotunenrol",
        "the course's manual enrolment method refuses to unenrol",
        "enable the Manual enrolments method of the course (Course › Participants › Enrolment \
         methods)",
    ),
    config_code(
        "manualpluginnotinstalled",
        "the Manual enrolments plugin is not enabled",
        "enable the Manual enrolments plugin (Site administration › Plugins › Enrolments › \
         Manage enrol plugins)",
    ),
    config_code(
        "errorcatcontextnotvalid",
        "{category} cannot be used to create courses",
        "category_id does not exist on this Moodle (use the id from the category's edit URL); \
         if it does, give the integration user's role moodle/category:viewhiddencategories",
    ),
    config_code(
        "errorcoursecontextnotvalid",
        "the integration user cannot work in this course",
        "give the integration user's role moodle/course:view and moodle/course:viewhiddencourses \
         at system level (Site administration › Users › Permissions › Define roles)",
    ),
    config_code(
        "restrictedcontextexception",
        "the token is restricted to another part of the site",
        "create the token at system level, without a context restriction (Site administration \
         › Server › Web services › Manage tokens)",
    ),
    config_code(
        "requireloginerror",
        "the integration user cannot access this course",
        "give the integration user's role moodle/course:view and moodle/course:viewhiddencourses \
         at system level, so it can access every course, hidden ones included",
    ),
    config_code(
        "sitepolicynotagreed",
        "the integration user has not accepted the site policy",
        "set the integration user's authentication to 'Web services authentication' (exempt \
         from the site policy), or log in once as that user and accept the policy",
    ),
    config_code(
        "usernotfullysetup",
        "the integration user's profile is incomplete",
        "fill in the required profile fields of the integration user (Site administration › \
         Users › Browse list of users)",
    ),
    config_code(
        "forcepasswordchangenotice",
        "the integration user is forced to change its password",
        "clear 'Force password change' on the integration user (Site administration › Users › \
         Browse list of users › Edit)",
    ),
    config_code(
        "nopasswordchangeforced",
        "the integration user is forced to change a password its authentication cannot change",
        "clear 'Force password change' on the integration user, or switch it to 'Web services \
         authentication' (Site administration › Users › Browse list of users › Edit)",
    ),
    config_code(
        "wsaccessuserunconfirmed",
        "the integration user's account is not confirmed",
        "confirm the integration user's account (Site administration › Users › Browse list of \
         users)",
    ),
    config_code(
        "cannotviewreport",
        "Moodle will not show the course's completion",
        "enable completion tracking on the site (Site administration › Advanced features) and \
         in the course (Course settings › Completion tracking), and give the integration user's \
         role report/completion:view",
    ),
    config_code(
        "nopermissiontoviewgrades",
        "Moodle will not show the course's grades",
        "give the integration user's role gradereport/user:view, moodle/grade:viewall and \
         moodle/grade:viewhidden at system level",
    ),
    config_code(
        "accessdenied",
        "the course uses separate groups and the integration user is in none of them",
        "give the integration user's role moodle/site:accessallgroups at system level",
    ),
    config_code(
        "notingroup",
        "the course uses separate groups and the integration user is in none of them",
        "give the integration user's role moodle/site:accessallgroups at system level",
    ),
    // ---- data: this record is wrong; retrying will not help -------------------------
    code(
        "invalidparameter",
        Data,
        "Moodle refused a value of this record",
    ),
    code_in(
        "invalidparameter",
        "core_user_create_users",
        Data,
        "Moodle refused the new user: its username or email is taken, or a value is invalid \
         (Moodle says which only with debugging on; look the user up by username and email)",
    ),
    code_in(
        "invalidparameter",
        ENROL,
        Data,
        "Moodle refused the enrolment: the course does not exist, or a value is invalid",
    ),
    code_in(
        "invalidparameter",
        "enrol_manual_unenrol_users",
        Data,
        "Moodle refused the unenrolment: the user does not exist, or a value is invalid",
    ),
    code_in(
        "invalidparameter",
        "core_user_get_users_by_field",
        Data,
        "Moodle refused the lookup value (a username must be lower case)",
    ),
    code(
        "errorinvalidparam",
        Data,
        "Moodle refused a course value (a blank name, or a language or theme that is not installed)",
    ),
    code(
        "enddatebeforestartdate",
        Data,
        "the course end date is before its start date",
    ),
    code(
        "nostartdatenoenddate",
        Data,
        "a course end date was sent without a start date",
    ),
    code(
        "invalidrecord",
        Data,
        "a Moodle record this call names does not exist",
    ),
    code(
        "invalidrecordunknown",
        Data,
        "a Moodle record this call names does not exist",
    ),
    code_in(
        "invalidrecord",
        "core_course_update_courses",
        Data,
        "the Moodle course does not exist",
    ),
    code_in(
        "invalidrecordunknown",
        "core_course_update_courses",
        Data,
        "the Moodle course does not exist",
    ),
    code_in(
        "invalidrecord",
        "enrol_manual_unenrol_users",
        Data,
        "the Moodle course does not exist",
    ),
    code_in(
        "invalidrecord",
        "gradereport_user_get_grade_items",
        Data,
        "the Moodle course does not exist",
    ),
    code_in(
        "invalidrecord",
        "core_completion_get_course_completion_status",
        Data,
        "the Moodle course does not exist",
    ),
    code("invaliduser", Data, "the Moodle user does not exist"),
    code("invalidcourseid", Data, "the Moodle course does not exist"),
    code(
        "invalidcourse",
        Data,
        "the course is Moodle's front page, which this service must not change",
    ),
    code(
        "codingerror",
        Data,
        "Moodle rejected a value of this record (coding error)",
    ),
    code_in(
        "codingerror",
        ENROL,
        Data,
        "the Moodle user does not exist or is deleted",
    ),
    code_in(
        "codingerror",
        "core_user_get_users_by_field",
        Data,
        "Moodle does not support this user lookup field",
    ),
    signal(
        Signal::EnrolUserMissing,
        Data,
        "the Moodle user does not exist or is deleted",
    ),
    code(
        "usernotenroled",
        Data,
        "the user has no active enrolment in the course",
    ),
    code(
        "nocriteriaset",
        Data,
        "the course has no completion criteria",
    ),
    code("userdeleted", Data, "the Moodle user is deleted"),
    code("usernotconfirmed", Data, "the Moodle user is not confirmed"),
    // ---- conflict: someone got there first; look up and link -------------------------
    code(
        "shortnametaken",
        Conflict,
        "another Moodle course already uses this shortname",
    ),
    code(
        "courseidnumbertaken",
        Conflict,
        "another Moodle course already uses this idnumber",
    ),
    // ---- defect: Moodle (or this service) misbehaved ---------------------------------
    code(
        "invalidresponse",
        Defect,
        "Moodle's answer broke its own declaration (a Moodle bug or a broken plugin)",
    ),
    code(
        "keyalreadyset",
        Defect,
        "the request repeated a search key (a bug in this service)",
    ),
    signal(
        Signal::NoErrorcode,
        Defect,
        "Moodle failed with an internal error",
    ),
    signal(
        Signal::UnknownCode,
        Defect,
        "Moodle reported an error this service does not know",
    ),
    signal(
        Signal::BadShape,
        Defect,
        "Moodle's answer does not have the expected shape",
    ),
    signal(
        Signal::OddStatus,
        Defect,
        "Moodle answered with an unexpected HTTP status",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn exception(
        function: &str,
        exception: &str,
        code: Option<&str>,
        message: &str,
    ) -> MoodleError {
        MoodleError::Exception {
            function: function.into(),
            exception: exception.into(),
            errorcode: code.map(Into::into),
            message: message.into(),
            debuginfo: None,
        }
    }

    fn ex(function: &str, code: &str) -> MoodleError {
        exception(
            function,
            "core\\exception\\moodle_exception",
            Some(code),
            "",
        )
    }

    fn status(status: u16) -> MoodleError {
        MoodleError::Status {
            function: "f".into(),
            status,
            retry_after: None,
        }
    }

    fn not_json(content_type: &str) -> MoodleError {
        MoodleError::NotJson {
            function: "f".into(),
            content_type: content_type.into(),
        }
    }

    const CC: &str = "core_course_create_courses";

    /// The classification of moodle-ws.md §6 and the brief, one row per signal/code.
    #[test]
    fn classification_table() {
        let transport = |timeout| MoodleError::Transport {
            function: "f".into(),
            detail: "x".into(),
            timeout,
        };
        let rows: Vec<(MoodleError, ErrorClass)> = vec![
            // transient
            (transport(true), Transient),
            (transport(false), Transient),
            (status(500), Transient),
            (status(502), Transient),
            (status(503), Transient),
            (status(504), Transient),
            (status(429), Transient),
            (status(408), Transient),
            (ex(CC, "dmlreadexception"), Transient),
            (ex(CC, "dmlwriteexception"), Transient),
            (ex(CC, "dmltransactionexception"), Transient),
            (ex(CC, "sitemaintenance"), Transient),
            // configuration
            (status(301), Configuration),
            (status(302), Configuration),
            (status(307), Configuration),
            (status(403), Configuration),
            (status(404), Configuration),
            (status(401), Configuration),
            (not_json("text/html; charset=utf-8"), Configuration),
            (not_json("application/xml; charset=utf-8"), Configuration),
            (not_json(""), Configuration),
            (ex(CC, "invalidtoken"), Configuration),
            (ex(CC, "accessexception"), Configuration),
            (ex(CC, "nopermissions"), Configuration),
            (ex(ENROL, "wsusercannotassign"), Configuration),
            (ex(ENROL, "wsnoinstance"), Configuration),
            (ex(CC, "errorcatcontextnotvalid"), Configuration),
            (ex(CC, "restrictedcontextexception"), Configuration),
            (ex(CC, "requireloginerror"), Configuration),
            (ex(CC, "sitepolicynotagreed"), Configuration),
            (ex(CC, "usernotfullysetup"), Configuration),
            (ex(CC, "forcepasswordchangenotice"), Configuration),
            (ex(CC, "nopasswordchangeforced"), Configuration),
            (ex(CC, "wsaccessuserunconfirmed"), Configuration),
            (
                ex(
                    "core_completion_get_course_completion_status",
                    "cannotviewreport",
                ),
                Configuration,
            ),
            (
                ex(
                    "gradereport_user_get_grade_items",
                    "nopermissiontoviewgrades",
                ),
                Configuration,
            ),
            (
                exception(
                    "core_does_not_exist",
                    "dml_missing_record_exception",
                    Some("invalidrecord"),
                    "Can't find data record in database table external_functions.",
                ),
                Configuration,
            ),
            (
                MoodleError::Exception {
                    function: "core_does_not_exist".into(),
                    exception: "dml_missing_record_exception".into(),
                    errorcode: Some("invalidrecord".into()),
                    message: "Datensatz nicht gefunden".into(),
                    debuginfo: Some("SELECT * FROM {external_functions} WHERE name = ?".into()),
                },
                Configuration,
            ),
            // data
            (ex(CC, "invalidparameter"), Data),
            (ex("core_user_create_users", "invalidparameter"), Data),
            (ex(CC, "errorinvalidparam"), Data),
            (ex(CC, "enddatebeforestartdate"), Data),
            (ex(CC, "nostartdatenoenddate"), Data),
            (
                exception(
                    "enrol_manual_unenrol_users",
                    "dml_missing_record_exception",
                    Some("invalidrecord"),
                    "Can't find data record in database table course.",
                ),
                Data,
            ),
            (
                ex("gradereport_user_get_grade_items", "invalidrecordunknown"),
                Data,
            ),
            (
                ex("gradereport_overview_get_course_grades", "invaliduser"),
                Data,
            ),
            (ex("core_course_update_courses", "invalidcourse"), Data),
            (ex(ENROL, "codingerror"), Data),
            (ex("core_user_get_users_by_field", "codingerror"), Data),
            (
                ex(
                    "core_completion_get_course_completion_status",
                    "usernotenroled",
                ),
                Data,
            ),
            (
                ex(
                    "core_completion_get_course_completion_status",
                    "nocriteriaset",
                ),
                Data,
            ),
            (ex("gradereport_user_get_grade_items", "userdeleted"), Data),
            (
                ex("gradereport_user_get_grade_items", "usernotconfirmed"),
                Data,
            ),
            (
                exception(
                    ENROL,
                    "TypeError",
                    None,
                    "Argument #1 ($user) must be of type stdClass",
                ),
                Data,
            ),
            // conflict
            (ex(CC, "shortnametaken"), Conflict),
            (ex(CC, "courseidnumbertaken"), Conflict),
            // defect
            (ex(CC, "invalidresponse"), Defect),
            (exception(CC, "TypeError", None, "x"), Defect),
            (
                exception(
                    "core_course_get_courses_by_field",
                    "Error",
                    None,
                    "Attempt to assign property \"contextvalidated\" on null",
                ),
                Defect,
            ),
            (ex(CC, "somethingnew"), Defect),
            (status(204), Defect),
            (
                MoodleError::Unexpected {
                    function: "f".into(),
                    detail: "missing field `id`".into(),
                },
                Defect,
            ),
        ];
        for (error, class) in rows {
            assert_eq!(error.class(), class, "{error:?}");
        }
    }

    #[test]
    fn warnings_are_classified_like_their_exception() {
        let warning = |code: &str| MoodleError::Warning {
            function: "core_course_update_courses".into(),
            warningcode: code.into(),
            message: "m".into(),
            itemid: Some(6),
        };
        assert_eq!(warning("shortnametaken").class(), Conflict);
        assert_eq!(warning("courseidnumbertaken").class(), Conflict);
        assert_eq!(warning("invalidrecord").class(), Data);
        assert_eq!(warning("enddatebeforestartdate").class(), Data);
        assert_eq!(warning("nopermissions").class(), Configuration);
        assert_eq!(warning("dmlwriteexception").class(), Transient);
        assert_eq!(warning("1").class(), Defect);
        assert_eq!(
            warning("shortnametaken").errorcode(),
            Some("shortnametaken")
        );
    }

    /// Every configuration row says what to change; no other row pretends to.
    #[test]
    fn fixes_exist_exactly_for_configuration_rows() {
        for case in CASES {
            assert_eq!(
                case.fix.is_some(),
                case.class == Configuration,
                "{:?}: {}",
                case.on,
                case.what
            );
            assert!(!case.what.ends_with('.'), "{}", case.what);
        }
        // No (code, function) pair appears twice: the first row would hide the second.
        for (i, a) in CASES.iter().enumerate() {
            for b in &CASES[i + 1..] {
                assert!(
                    !(a.on == b.on && a.only == b.only),
                    "duplicate row {:?}",
                    a.on
                );
            }
        }
    }

    #[test]
    fn fix_texts_name_the_exact_thing() {
        let access = ex(ENROL, "accessexception");
        assert_eq!(
            access.fix().unwrap(),
            "add the function enrol_manual_enrol_users to the External Service used by this \
             token (Site administration › Server › Web services › External services › \
             Functions), and check the token user has webservice/rest:use; an expired or \
             IP-restricted token, or a suspended integration user, gives the same error"
        );

        let nocap = exception(
            CC,
            "core\\exception\\required_capability_exception",
            Some("nopermissions"),
            "Sorry, but you do not currently have permissions to do that (Create courses).",
        );
        let fix = nocap.fix().unwrap();
        assert!(
            fix.contains("'Create courses' (moodle/course:create)"),
            "{fix}"
        );

        let enrol_cap = ex(ENROL, "nopermissions");
        assert!(enrol_cap.fix().unwrap().contains("enrol/manual:enrol"));
        assert!(
            ex("core_user_create_users", "nopermissions")
                .fix()
                .unwrap()
                .contains("moodle/user:create")
        );

        let role = exception(
            ENROL,
            "core\\exception\\moodle_exception",
            Some("wsusercannotassign"),
            "You don't have the permission to assign this role (1) to this user (6) in this course (2).",
        );
        assert!(role.fix().unwrap().starts_with("allow the integration user's role to assign role 1 (Site administration › Users › Permissions › Define roles › Allow role assignments)"));

        let category = exception(
            CC,
            "core\\exception\\moodle_exception",
            Some("errorcatcontextnotvalid"),
            "You cannot execute functions in the category context (category id:999999). The context error message was: Invalid parameter value detected",
        );
        assert!(category.fix().unwrap().starts_with(
            "category_id does not exist on this Moodle (use the id from the category's edit URL)"
        ));
        assert!(
            category
                .to_string()
                .contains("category 999999 cannot be used")
        );

        assert!(ex(CC, "invalidtoken").fix().unwrap().starts_with(
            "the token is not valid: create a new token for the integration user and update moodle_token"
        ));
        assert!(status(403).fix().unwrap().contains("enable web services"));
        assert!(status(403).fix().unwrap().contains("REST protocol"));
        assert!(
            status(302)
                .fix()
                .unwrap()
                .starts_with("moodle_url is not the site's wwwroot")
        );
        assert!(
            not_json("text/html")
                .fix()
                .unwrap()
                .starts_with("moodle_url is not the site's wwwroot (it answered with a web page)")
        );
        assert_eq!(ex(CC, "shortnametaken").fix(), None);
        assert_eq!(status(503).fix(), None);
    }

    #[test]
    fn preflight_fixes_reuse_the_table_wording() {
        assert_eq!(
            fix_add_functions(&[ENROL]),
            "add the function enrol_manual_enrol_users to the External Service used by this \
             token (Site administration › Server › Web services › External services › Functions)"
        );
        assert!(
            ex(ENROL, "accessexception")
                .fix()
                .unwrap()
                .starts_with(&fix_add_functions(&[ENROL]))
        );
        assert!(
            fix_add_functions(&["a_b", "c_d"])
                .starts_with("add the functions a_b, c_d to the External Service")
        );
        assert_eq!(
            fix_grant_capabilities("moodle/user:viewalldetails"),
            "give the integration user's role moodle/user:viewalldetails at system level (Site \
             administration › Users › Permissions › Define roles)"
        );
    }

    #[test]
    fn display_is_one_actionable_line() {
        let nocap = exception(
            CC,
            "core\\exception\\required_capability_exception",
            Some("nopermissions"),
            "Sorry, but you do not currently have permissions to do that (Create courses).",
        );
        assert_eq!(
            nocap.to_string(),
            "core_course_create_courses: the integration user lacks a capability (Moodle \
             nopermissions: Sorry, but you do not currently have permissions to do that (Create \
             courses)). Fix: give the integration user's role 'Create courses' \
             (moodle/course:create) at system level (Site administration › Users › Permissions › \
             Define roles)"
        );

        let typeerror = exception(
            ENROL,
            "TypeError",
            None,
            "core\\user::get_name_placeholders(): Argument #1 ($user) must be of type stdClass, bool given, called in [path] on line 3677",
        );
        assert!(typeerror
            .to_string()
            .starts_with("enrol_manual_enrol_users: the Moodle user does not exist or is deleted (Moodle TypeError: "));

        let busy = MoodleError::Status {
            function: "core_user_create_users".into(),
            status: 503,
            retry_after: Some(Duration::from_secs(300)),
        };
        assert_eq!(
            busy.to_string(),
            "core_user_create_users: Moodle is unavailable (upgrade, maintenance or overload) \
             (HTTP 503, retry after 300 s)"
        );

        let warning = MoodleError::Warning {
            function: "core_course_update_courses".into(),
            warningcode: "shortnametaken".into(),
            message: "Short name is already used for another course (APIT-C1-52c2f4)".into(),
            itemid: Some(6),
        };
        assert_eq!(
            warning.to_string(),
            "core_course_update_courses: another Moodle course already uses this shortname \
             (Moodle warning shortnametaken for item 6: Short name is already used for another \
             course (APIT-C1-52c2f4))"
        );

        let multiline = MoodleError::Transport {
            function: "f".into(),
            detail: "line one\nline two".into(),
            timeout: false,
        };
        assert_eq!(
            multiline.to_string(),
            "f: Moodle could not be reached (line one line two)"
        );
    }

    #[test]
    fn outcomes_are_short_and_stable() {
        assert_eq!(ex(CC, "shortnametaken").outcome(), "shortnametaken");
        assert_eq!(status(503).outcome(), "http 503");
        assert_eq!(
            exception(ENROL, "TypeError", None, "m").outcome(),
            "no errorcode (TypeError)"
        );
        assert_eq!(
            MoodleError::Transport {
                function: "f".into(),
                detail: "d".into(),
                timeout: true
            }
            .outcome(),
            "timeout"
        );
        assert_eq!(not_json("text/html").outcome(), "not json");
    }

    #[test]
    fn debug_hides_debuginfo_and_redaction_reaches_every_text() {
        let error = MoodleError::Exception {
            function: CC.into(),
            exception: "dml_write_exception".into(),
            errorcode: Some("dmlwriteexception".into()),
            message: "Error writing to database s3cret".into(),
            debuginfo: Some("INSERT INTO mdl_course ... 'Ada Lovelace' s3cret".into()),
        }
        .redacted("s3cret");
        let debug = format!("{error:?}");
        assert!(!debug.contains("Ada Lovelace"), "{debug}");
        assert!(debug.contains("chars, logged at debug level"), "{debug}");
        assert!(!debug.contains("s3cret") && !error.to_string().contains("s3cret"));
        match &error {
            MoodleError::Exception { debuginfo, .. } => {
                assert!(debuginfo.as_deref().unwrap().contains("[redacted]"))
            }
            _ => unreachable!(),
        }
    }

    #[test]
    fn recognises_code_shapes() {
        assert!(is_code("invalidparameter"));
        assert!(is_code("1"));
        assert!(!is_code(
            "<div>Passwords must be at least 8 characters long.</div>"
        ));
        assert!(!is_code(""));
    }
}
