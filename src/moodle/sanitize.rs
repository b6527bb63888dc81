//! Cleaning of text that Moodle sends back before it is stored, shown or logged.
//!
//! Moodle messages can carry server filesystem paths (PHP errors name the file and
//! line), HTML (the password policy), newlines (debuginfo holds SQL) and, in theory,
//! whatever was sent, the token included. Everything an error keeps goes through here.

/// Longest message kept in an error (characters): enough for any Moodle message,
/// short enough that a runaway HTML page cannot flood a log line.
pub(crate) const MAX_MESSAGE: usize = 400;
/// Longest `debuginfo` kept (characters); it is only logged at debug level.
pub(crate) const MAX_DEBUGINFO: usize = 2000;

/// What a scrubbed filesystem path is replaced with (not `<…>`, which reads as a tag).
const PATH: &str = "[path]";
/// What a scrubbed secret is replaced with.
pub(crate) const REDACTED: &str = "[redacted]";

/// One clean line: paths replaced, tags removed, a few entities decoded, whitespace
/// collapsed, cut to `max` characters.
pub(crate) fn clean_line(text: &str, max: usize) -> String {
    // Tags go first so that `<b>/var/www/x.php</b>` leaves a bare path behind; the
    // `<moodle-dir>` placeholder (recorded fixtures) would read as a tag, so it is
    // turned into the path it stands for before.
    let text = strip_tags(&text.replace("<moodle-dir>", "/moodle-dir"));
    let text = scrub_paths(&decode_entities(&text));
    let text = redact_token_params(&text);
    truncate(&collapse_whitespace(&text), max)
}

/// Replaces every occurrence of `secret` (when non-empty) with `[redacted]`.
pub(crate) fn redact(text: &str, secret: &str) -> String {
    if secret.is_empty() || !text.contains(secret) {
        return text.to_owned();
    }
    text.replace(secret, REDACTED)
}

/// `wstoken=…` anywhere (an echoed request body or URL) loses its value.
fn redact_token_params(text: &str) -> String {
    const KEY: &str = "wstoken=";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(KEY) {
        out.push_str(&rest[..at + KEY.len()]);
        out.push_str(REDACTED);
        rest = &rest[at + KEY.len()..];
        let end = rest
            .find(|c: char| c == '&' || c.is_whitespace() || c == '"' || c == '\'')
            .unwrap_or(rest.len());
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Replaces words that look like filesystem paths with `[path]`, keeping the
/// punctuation around them (`(… in /var/www/lib/x.php:12)` keeps its parentheses).
fn scrub_paths(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    for c in text.chars() {
        if c.is_whitespace() {
            out.push_str(&scrub_word(&word));
            word.clear();
            out.push(c);
        } else {
            word.push(c);
        }
    }
    out.push_str(&scrub_word(&word));
    out
}

fn scrub_word(word: &str) -> String {
    const LEAD: &[char] = &['(', '[', '{', '"', '\'', '`'];
    const TRAIL: &[char] = &[')', ']', '}', '"', '\'', '`', ',', ';', ':', '.', '!', '?'];
    let core = word.trim_start_matches(LEAD).trim_end_matches(TRAIL);
    if core.is_empty() || !looks_like_path(core) {
        return word.to_owned();
    }
    let start = word.len() - word.trim_start_matches(LEAD).len();
    let end = start + core.len();
    format!("{}{PATH}{}", &word[..start], &word[end..])
}

fn looks_like_path(word: &str) -> bool {
    // URLs name a page, not a server file; keep them (file:// excepted).
    if word.contains("://") {
        return word.starts_with("file://");
    }
    let bytes = word.as_bytes();
    let windows_drive = bytes.len() > 2
        && bytes[0].is_ascii_alphabetic()
        && bytes[1] == b':'
        && (bytes[2] == b'\\' || bytes[2] == b'/');
    let absolute = word.len() > 1 && word.starts_with('/') && !word.starts_with("//");
    let relative_source = word.contains('/')
        && [
            ".php", ".inc", ".phtml", ".js", ".sql", ".log", ".ini", ".json", ".xml",
        ]
        .iter()
        .any(|ext| {
            // `lib/enrollib.php` or `lib/enrollib.php:3677`
            let stem = word.split(':').next().unwrap_or(word);
            stem.ends_with(ext)
        });
    windows_drive
        || absolute
        || relative_source
        || word.starts_with("~/")
        || word.starts_with("./")
        || word.starts_with("../")
        || word.starts_with("\\\\")
}

/// Removes HTML tags (`<div>`, `</b>`, `<br/>`), leaving a space where each was.
fn strip_tags(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let next = text[i + c.len_utf8()..].chars().next();
        let opens_tag =
            c == '<' && matches!(next, Some(n) if n.is_ascii_alphabetic() || n == '/' || n == '!');
        match (opens_tag, text[i..].find('>')) {
            (true, Some(close)) => {
                out.push(' ');
                let end = i + close;
                while let Some(&(j, _)) = chars.peek() {
                    if j > end {
                        break;
                    }
                    chars.next();
                }
            }
            _ => out.push(c),
        }
    }
    out
}

fn decode_entities(text: &str) -> String {
    if !text.contains('&') {
        return text.to_owned();
    }
    [
        ("&lt;", "<"),
        ("&gt;", ">"),
        ("&quot;", "\""),
        ("&#39;", "'"),
        ("&#039;", "'"),
        ("&nbsp;", " "),
        ("&ndash;", "–"),
        ("&amp;", "&"),
    ]
    .iter()
    .fold(text.to_owned(), |acc, (from, to)| acc.replace(from, to))
}

fn collapse_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Cuts to `max` characters (not bytes), marking the cut with `…`.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_owned(),
        Some((at, _)) => format!("{}…", &text[..at]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubs_the_typeerror_path_from_the_enrol_fixture() {
        let message = "core\\user::get_name_placeholders(): Argument #1 ($user) must be of type \
                       stdClass, bool given, called in <moodle-dir>/lib/enrollib.php on line 3677";
        assert_eq!(
            clean_line(message, MAX_MESSAGE),
            "core\\user::get_name_placeholders(): Argument #1 ($user) must be of type \
             stdClass, bool given, called in [path] on line 3677"
        );
    }

    #[test]
    fn scrubs_real_server_paths_in_every_form() {
        let cases = [
            (
                "called in /var/www/moodle/lib/enrollib.php on line 3",
                "called in [path] on line 3",
            ),
            ("(/srv/moodle/lib/dml/moodle_database.php:1234)", "([path])"),
            (
                "at C:\\xampp\\htdocs\\moodle\\lib\\setup.php.",
                "at [path].",
            ),
            (
                "line 12 of lib/enrollib.php: call",
                "line 12 of [path]: call",
            ),
            ("see /opt/moodledata/temp", "see [path]"),
        ];
        for (raw, clean) in cases {
            assert_eq!(clean_line(raw, MAX_MESSAGE), clean, "{raw}");
        }
    }

    #[test]
    fn keeps_text_that_only_contains_slashes() {
        let cases = [
            "Date 12/05/2024 and/or text/html",
            "see https://moodle.example.org/admin/settings.php?section=webservice",
            "error/ Passwords must be at least 8 characters long.",
            "You cannot execute functions in the category context (category id:999999).",
        ];
        for raw in cases {
            assert_eq!(clean_line(raw, MAX_MESSAGE), raw);
        }
    }

    #[test]
    fn strips_tags_and_newlines_into_one_line() {
        let raw = "error/<div>Passwords must be at least 8 characters long.</div><div>Passwords \
                   must have at least 1 digit(s).</div>\nnext &amp; last";
        assert_eq!(
            clean_line(raw, MAX_MESSAGE),
            "error/ Passwords must be at least 8 characters long. Passwords must have at least 1 \
             digit(s). next & last"
        );
        assert_eq!(clean_line("a < b and c>d", MAX_MESSAGE), "a < b and c>d");
    }

    #[test]
    fn redacts_token_parameters_and_secrets() {
        let raw = "GET /webservice/rest/server.php?wstoken=0123abcd&wsfunction=x";
        assert_eq!(
            clean_line(raw, MAX_MESSAGE),
            "GET [path]".to_owned(),
            "the whole request path is a path"
        );
        assert_eq!(
            clean_line("body wstoken=0123abcd&wsfunction=x", MAX_MESSAGE),
            "body wstoken=[redacted]&wsfunction=x"
        );
        assert_eq!(redact("a s3cret b", "s3cret"), "a [redacted] b");
        assert_eq!(redact("a b", ""), "a b");
    }

    #[test]
    fn truncates_on_characters() {
        assert_eq!(truncate("ééééé", 3), "ééé…");
        assert_eq!(truncate("abc", 3), "abc");
    }
}
