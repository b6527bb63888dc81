//! Moodle's exceptions as the error envelope shows them, and the JSON/XML encodings of
//! answers (moodle-ws.md §1.5, §1.6).

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::MOODLE_DIR;
use super::form::Node;
use super::site::CAPABILITIES;

/// A thrown exception, as the error envelope shows it.
#[derive(Debug, Clone)]
pub(super) struct Exc {
    pub(super) exception: String,
    /// `None` for PHP engine errors (`TypeError`, `Error`): the key is then missing.
    pub(super) errorcode: Option<String>,
    pub(super) message: String,
    /// Shown only when site debugging is on.
    pub(super) debuginfo: Option<String>,
}

impl Exc {
    pub(super) fn new(exception: &str, errorcode: Option<&str>, message: &str) -> Exc {
        Exc {
            exception: exception.into(),
            errorcode: errorcode.map(Into::into),
            message: message.into(),
            debuginfo: None,
        }
    }

    pub(super) fn debug(mut self, debuginfo: impl Into<String>) -> Exc {
        self.debuginfo = Some(debuginfo.into());
        self
    }

    /// A `moodle_exception` (namespaced since 4.4).
    pub(super) fn moodle(errorcode: &str, message: &str) -> Exc {
        Exc::new(
            "core\\exception\\moodle_exception",
            Some(errorcode),
            message,
        )
    }

    /// `invalid_parameter_exception`: the reason is only in `debuginfo`.
    pub(super) fn invalid_parameter(debuginfo: String) -> Exc {
        Exc::new(
            "core\\exception\\invalid_parameter_exception",
            Some("invalidparameter"),
            "Invalid parameter value detected",
        )
        .debug(debuginfo)
    }

    pub(super) fn access(debuginfo: &str) -> Exc {
        Exc::new(
            "webservice_access_exception",
            Some("accessexception"),
            "Access control exception",
        )
        .debug(debuginfo)
    }

    pub(super) fn nopermissions(capability: &str) -> Exc {
        let name = CAPABILITIES
            .iter()
            .find(|(c, _)| *c == capability)
            .map_or(capability, |(_, n)| n);
        Exc::new(
            "core\\exception\\required_capability_exception",
            Some("nopermissions"),
            &format!("Sorry, but you do not currently have permissions to do that ({name})."),
        )
        .debug(capability)
    }

    /// `dml_missing_record_exception` for a required record of `table`.
    pub(super) fn missing_record(table: &str, debuginfo: String) -> Exc {
        Exc::new(
            "dml_missing_record_exception",
            Some("invalidrecord"),
            &format!("Can't find data record in database table {table}."),
        )
        .debug(debuginfo)
    }

    pub(super) fn missing_course(id: i64) -> Exc {
        Exc::missing_record(
            "course",
            format!("SELECT * FROM {{course}} WHERE id = ?\n[array (\n  0 => {id},\n)]"),
        )
    }

    /// The `user` table gets its own errorcode in `dml_missing_record_exception`.
    pub(super) fn invalid_user(id: i64) -> Exc {
        Exc::new(
            "dml_missing_record_exception",
            Some("invaliduser"),
            "Invalid user",
        )
        .debug(format!(
            "SELECT * FROM {{user}} WHERE id = ?\n[array (\n  0 => {id},\n)]"
        ))
    }

    pub(super) fn dml_write(debuginfo: &str) -> Exc {
        Exc::new(
            "dml_write_exception",
            Some("dmlwriteexception"),
            "Error writing to database",
        )
        .debug(debuginfo)
    }

    pub(super) fn coding(message: &str, debuginfo: Option<&str>) -> Exc {
        let mut exc = Exc::new(
            "core\\exception\\coding_exception",
            Some("codingerror"),
            &format!("Coding error detected, it must be fixed by a programmer: {message}"),
        );
        exc.debuginfo = debuginfo.map(Into::into);
        exc
    }

    /// A PHP engine error (`TypeError`, `Error`): no errorcode at all.
    pub(super) fn php(class: &str, message: &str) -> Exc {
        Exc::new(class, None, message).debug(format!(
            "{class}: {message}\n* line ? of {MOODLE_DIR}/webservice/rest/server.php"
        ))
    }
}

/// The answer format, fixed while the request is parsed (so even token errors follow it).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    Json,
    Xml,
}

impl Format {
    pub(super) fn of(params: &[(String, Node)]) -> Format {
        let json = params
            .iter()
            .any(|(k, v)| k == "moodlewsrestformat" && v.text().as_deref() == Some("json"));
        if json { Format::Json } else { Format::Xml }
    }

    /// `absent_optional`: declared optional keys of the top-level object that the function
    /// left out. JSON omits them; Moodle's XML encoder prints them as null values.
    pub(super) fn success(self, value: &Value, absent_optional: &[&str]) -> Response {
        match self {
            Format::Json => moodle_response("application/json", value.to_string()),
            Format::Xml => {
                let mut xml =
                    String::from("<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<RESPONSE>\n");
                let mut value = value.clone();
                if let Value::Object(map) = &mut value {
                    for key in absent_optional {
                        map.entry(*key).or_insert(Value::Null);
                    }
                }
                if !value.is_null() {
                    xml_value(&value, &mut xml);
                }
                xml.push_str("</RESPONSE>\n");
                moodle_response("application/xml; charset=utf-8", xml)
            }
        }
    }

    pub(super) fn error(self, exc: &Exc, debug: bool) -> Response {
        let debuginfo = exc.debuginfo.as_ref().filter(|_| debug);
        match self {
            Format::Json => {
                let mut body = Map::new();
                body.insert("exception".into(), json!(exc.exception));
                if let Some(code) = &exc.errorcode {
                    body.insert("errorcode".into(), json!(code));
                }
                body.insert("message".into(), json!(exc.message));
                if let Some(info) = debuginfo {
                    body.insert("debuginfo".into(), json!(info));
                }
                moodle_response("application/json", Value::Object(body).to_string())
            }
            Format::Xml => {
                let mut xml = format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<EXCEPTION class=\"{}\">\n",
                    exc.exception
                );
                if let Some(code) = &exc.errorcode {
                    xml.push_str(&format!("<ERRORCODE>{}</ERRORCODE>\n", xml_escape(code)));
                }
                xml.push_str(&format!(
                    "<MESSAGE>{}</MESSAGE>\n",
                    xml_escape(&exc.message)
                ));
                if let Some(info) = debuginfo {
                    xml.push_str(&format!("<DEBUGINFO>{}</DEBUGINFO>\n", xml_escape(info)));
                }
                xml.push_str("</EXCEPTION>\n");
                moodle_response("application/xml; charset=utf-8", xml)
            }
        }
    }
}

/// HTTP 200 with the headers of `webservice_rest_server::send_headers`.
fn moodle_response(content_type: &'static str, body: String) -> Response {
    let cache = "private, must-revalidate, pre-check=0, post-check=0, max-age=0";
    let headers = [
        (header::CONTENT_TYPE, content_type),
        (header::CACHE_CONTROL, cache),
        (header::EXPIRES, "Thu, 01 Jan 1970 00:00:00 GMT"),
        (header::PRAGMA, "no-cache"),
        (header::ACCEPT_RANGES, "none"),
        (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
    ];
    response(StatusCode::OK, &headers, body)
}

/// A response with fixed headers (static values cannot be invalid, so nothing can fail).
pub(super) fn response(
    status: StatusCode,
    headers: &[(HeaderName, &'static str)],
    body: String,
) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    for (name, value) in headers {
        response
            .headers_mut()
            .insert(name.clone(), HeaderValue::from_static(value));
    }
    response
}

/// Moodle's REST XML: `<SINGLE>` objects, `<MULTIPLE>` lists, `<VALUE>` scalars.
fn xml_value(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            out.push_str("<SINGLE>\n");
            for (k, v) in map {
                out.push_str(&format!("<KEY name=\"{}\">", xml_escape(k)));
                xml_value(v, out);
                out.push_str("</KEY>\n");
            }
            out.push_str("</SINGLE>\n");
        }
        Value::Array(items) => {
            out.push_str("<MULTIPLE>\n");
            for v in items {
                xml_value(v, out);
            }
            out.push_str("</MULTIPLE>\n");
        }
        Value::Null => out.push_str("<VALUE null=\"null\"/>\n"),
        Value::Bool(b) => out.push_str(&format!("<VALUE>{}</VALUE>\n", *b as u8)),
        Value::Number(n) => out.push_str(&format!("<VALUE>{n}</VALUE>\n")),
        Value::String(s) => out.push_str(&format!("<VALUE>{}</VALUE>\n", xml_escape(s))),
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#039;")
}
