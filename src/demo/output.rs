//! How the demo prints: colours only for a person at a terminal, `curl` lines that
//! replay a request exactly, and a job's outcome as a few aligned lines.

use std::io::IsTerminal as _;

use serde_json::Value;

/// Colours on or off for stdout: on at a terminal unless `NO_COLOR` is set.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    colour: bool,
}

impl Style {
    /// Looks at stdout and `NO_COLOR` (<https://no-color.org>).
    pub fn detect() -> Style {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Style {
            colour: std::io::stdout().is_terminal() && !no_color,
        }
    }

    #[cfg(test)]
    pub fn plain() -> Style {
        Style { colour: false }
    }

    fn paint(self, code: &str, text: &str) -> String {
        if self.colour {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    pub fn bold(self, text: &str) -> String {
        self.paint("1", text)
    }

    pub fn dim(self, text: &str) -> String {
        self.paint("2", text)
    }

    pub fn green(self, text: &str) -> String {
        self.paint("32", text)
    }

    pub fn yellow(self, text: &str) -> String {
        self.paint("33", text)
    }

    pub fn cyan(self, text: &str) -> String {
        self.paint("36", text)
    }

    /// A job status: green when it went as planned, yellow otherwise.
    pub fn status(self, status: &str) -> String {
        match status {
            "succeeded" => self.green(status),
            _ => self.yellow(status),
        }
    }
}

/// `text` as one POSIX shell word.
pub fn sh_quote(text: &str) -> String {
    if !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@,+".contains(&b))
    {
        return text.to_string();
    }
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The `curl` line that sends `body` to `url` as accessplanit does (bearer secret, JSON).
pub fn curl_post_json(url: &str, bearer: &str, body: &str) -> String {
    format!(
        "curl -sS -H {} -H 'Content-Type: application/json' {} -d {}",
        sh_quote(&format!("Authorization: Bearer {bearer}")),
        sh_quote(url),
        sh_quote(body)
    )
}

/// The `curl` line of an admin `POST` without a body.
pub fn curl_post(url: &str, bearer: &str) -> String {
    format!(
        "curl -sS -X POST -H {} {}",
        sh_quote(&format!("Authorization: Bearer {bearer}")),
        sh_quote(url)
    )
}

/// The `curl` line of an admin `GET`.
pub fn curl_get(url: &str, bearer: &str) -> String {
    format!(
        "curl -sS -H {} {}",
        sh_quote(&format!("Authorization: Bearer {bearer}")),
        sh_quote(url)
    )
}

/// Width of the labels in front of a step's lines.
const LABEL: usize = 13;
/// Indentation of a step's lines under its title.
pub const INDENT: &str = "     ";

/// One labelled line of a step, e.g. `     Moodle       course created: 2`; the label
/// is only on the first of `values`.
pub fn labelled(style: Style, label: &str, values: &[String]) -> String {
    let mut out = String::new();
    for (i, value) in values.iter().enumerate() {
        let label = if i == 0 { label } else { "" };
        let padded = format!("{label:<LABEL$}");
        out.push_str(&format!("{INDENT}{} {value}\n", style.dim(&padded)));
    }
    out
}

/// The Moodle calls of an outcome, one `function outcome N ms` per call.
pub fn calls(outcome: &Value) -> Vec<String> {
    let calls = outcome["calls"].as_array().cloned().unwrap_or_default();
    let width = calls
        .iter()
        .filter_map(|c| c["function"].as_str())
        .map(str::len)
        .max()
        .unwrap_or(0);
    calls
        .iter()
        .map(|c| {
            let function = c["function"].as_str().unwrap_or("?");
            let result = c["outcome"].as_str().unwrap_or("?");
            let ms = c["ms"].as_u64().unwrap_or(0);
            format!("{function:<width$}  {result}  {ms} ms")
        })
        .collect()
}

/// The outcome's steps as written by the handler (`"course created: 2"`, …).
pub fn steps(outcome: &Value) -> Vec<String> {
    let mut lines: Vec<String> = outcome["steps"]
        .as_array()
        .map(|s| {
            s.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    if let Some(reason) = outcome["skip_reason"].as_str() {
        lines.push(format!("skipped: {reason}"));
    }
    if let Some(error) = outcome["error"].as_str() {
        lines.push(format!("error: {error}"));
    }
    if lines.is_empty() {
        lines.push("nothing to do".into());
    }
    lines
}

/// The Moodle IDs the outcome resolved, e.g. `course 2 · user 4 · role 5`.
pub fn moodle_ids(outcome: &Value) -> Option<String> {
    let ids = outcome["moodle"].as_object()?;
    let parts: Vec<String> = [
        ("course_id", "course"),
        ("user_id", "user"),
        ("role_id", "role"),
    ]
    .iter()
    .filter_map(|(key, name)| ids.get(*key).map(|v| format!("{name} {v}")))
    .collect();
    (!parts.is_empty()).then(|| parts.join(" · "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_curl_line_survives_the_shell() {
        assert_eq!(
            sh_quote("http://127.0.0.1:8080/v1/jobs"),
            "http://127.0.0.1:8080/v1/jobs"
        );
        assert_eq!(sh_quote("a?wait=10"), "'a?wait=10'");
        assert_eq!(sh_quote(r#"{"a": "O'Neil"}"#), r#"'{"a": "O'\''Neil"}'"#);
        assert_eq!(sh_quote(""), "''");
        assert_eq!(
            curl_post_json("http://h/x?wait=10", "s3", r#"{"k":1}"#),
            "curl -sS -H 'Authorization: Bearer s3' -H 'Content-Type: application/json' \
             'http://h/x?wait=10' -d '{\"k\":1}'"
        );
    }

    #[test]
    fn an_outcome_reads_as_lines() {
        let outcome = json!({
            "moodle": {"course_id": 2, "user_id": 4},
            "steps": ["course created: 2"],
            "calls": [{"function": "core_course_create_courses", "outcome": "ok", "ms": 3},
                      {"function": "x", "outcome": "ok", "ms": 0}],
        });
        assert_eq!(moodle_ids(&outcome).unwrap(), "course 2 · user 4");
        assert_eq!(steps(&outcome), ["course created: 2"]);
        assert_eq!(
            calls(&outcome),
            [
                "core_course_create_courses  ok  3 ms",
                "x                           ok  0 ms"
            ]
        );
        assert_eq!(
            labelled(Style::plain(), "Moodle", &["a".into(), "b".into()]),
            "     Moodle        a\n                   b\n"
        );
        assert_eq!(steps(&json!({"skip_reason": "why"})), ["skipped: why"]);
    }
}
