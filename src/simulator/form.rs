//! Request parsing: PHP's `$_GET`/`$_POST`, the form decoded into nested arrays.

use axum::http::{HeaderMap, Method, Uri, header};

use super::RecordedCall;
use super::envelope::Format;

/// A decoded PHP request variable: a string (raw bytes: invalid UTF-8 must fail validation
/// the way Moodle's `fix_utf8` makes it fail) or an ordered array.
#[derive(Clone, Debug)]
pub(super) enum Node {
    Leaf(Vec<u8>),
    Map(Vec<(String, Node)>),
}

impl Node {
    pub(super) fn text(&self) -> Option<String> {
        match self {
            Node::Leaf(b) => Some(String::from_utf8_lossy(b).into_owned()),
            Node::Map(_) => None,
        }
    }
}

/// The parsed request: what `webservice_rest_server::parse_request` extracts.
pub(super) struct RestRequest {
    pub(super) format: Format,
    pub(super) token: Option<String>,
    pub(super) function: String,
    /// The function's parameters (reserved keys removed).
    pub(super) params: Vec<(String, Node)>,
    pub(super) record_form: Vec<(String, String)>,
    pub(super) method: String,
    pub(super) token_in_query: bool,
}

impl RestRequest {
    pub(super) fn parse(
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
        max_input_vars: usize,
    ) -> RestRequest {
        let query = uri.query().unwrap_or("").as_bytes();
        // PHP fills $_POST only from form bodies; a JSON body is simply not seen.
        let is_form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.to_ascii_lowercase()
                    .starts_with("application/x-www-form-urlencoded")
            });
        let body: &[u8] = if *method == Method::POST && is_form {
            body
        } else {
            b""
        };
        // The record is what the client sent, so it keeps what PHP drops.
        let query_pairs = decode_pairs(query, usize::MAX);
        let body_pairs = decode_pairs(body, usize::MAX);
        let token_in_query = query_pairs.iter().any(|(k, _)| k == b"wstoken");
        let record_form = query_pairs
            .iter()
            .chain(body_pairs.iter())
            .filter(|(k, _)| k != b"wstoken")
            .map(|(k, v)| {
                let k = String::from_utf8_lossy(k).into_owned();
                (k, String::from_utf8_lossy(v).into_owned())
            })
            .collect();
        // array_merge($_GET, $_POST): the body wins for a key sent both ways.
        let mut params = php_array(query, body, max_input_vars);
        let format = Format::of(&params);
        let mut take = |key: &str| {
            let pos = params.iter().position(|(k, _)| k == key)?;
            params.remove(pos).1.text()
        };
        take("moodlewsrestformat");
        let token = take("wstoken");
        let function = take("wsfunction").unwrap_or_default();
        for setting in ["raw", "fileurl", "filter", "lang", "timezone"] {
            take(&format!("moodlewssetting{setting}"));
        }
        RestRequest {
            format,
            token,
            function,
            params,
            record_form,
            method: method.as_str().to_owned(),
            token_in_query,
        }
    }

    pub(super) fn record(&self) -> RecordedCall {
        RecordedCall {
            function: self.function.clone(),
            form: self.record_form.clone(),
            method: self.method.clone(),
            token_in_query: self.token_in_query,
            at: std::time::Instant::now(),
        }
    }
}

/// Splits `a=1&b=2` into its non-empty pieces, decoded into (key, value) byte pairs, at
/// most `max` of them.
fn decode_pairs(raw: &[u8], max: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    raw.split(|b| *b == b'&')
        .filter(|part| !part.is_empty())
        .take(max)
        .map(decode_pair)
        .collect()
}

fn decode_pair(part: &[u8]) -> (Vec<u8>, Vec<u8>) {
    match part.iter().position(|b| *b == b'=') {
        Some(i) => (url_decode(&part[..i]), url_decode(&part[i + 1..])),
        None => (url_decode(part), Vec::new()),
    }
}

/// The variables PHP registers from a request body, `max_input_vars` applied the way
/// `add_post_vars` applies it: every piece between `&`s counts (an empty one too), and the
/// count is checked after the piece is registered, so one more than the limit is kept. The
/// rest is dropped without a word to the script.
fn post_vars(body: &[u8], max_input_vars: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut pieces: Vec<&[u8]> = body.split(|b| *b == b'&').collect();
    // Nothing after a final `&` (or in an empty body) is a piece.
    if pieces.last().is_some_and(|p| p.is_empty()) {
        pieces.pop();
    }
    pieces
        .into_iter()
        .take(max_input_vars.saturating_add(1))
        .filter(|part| !part.is_empty())
        .map(decode_pair)
        .collect()
}

/// PHP's `urldecode`: `+` is a space, `%XX` a byte, a broken `%` stays as it is.
fn url_decode(s: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < s.len() => match (hex(s[i + 1]), hex(s[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// Builds PHP's nested request array: `$_GET` from the query string (`php_default_treat_data`
/// skips empty pieces and stops at `max_input_vars`), `$_POST` from the body, then
/// `array_merge($_GET, $_POST)`, where the body wins per top-level key.
pub(super) fn php_array(query: &[u8], body: &[u8], max_input_vars: usize) -> Vec<(String, Node)> {
    let mut merged: Vec<(String, Node)> = Vec::new();
    for vars in [
        decode_pairs(query, max_input_vars),
        post_vars(body, max_input_vars),
    ] {
        let mut one: Vec<(String, Node)> = Vec::new();
        for (key, value) in vars {
            php_insert(&mut one, &String::from_utf8_lossy(&key), value);
        }
        for (k, v) in one {
            match merged.iter_mut().find(|(mk, _)| *mk == k) {
                Some(slot) => slot.1 = v,
                None => merged.push((k, v)),
            }
        }
    }
    merged
}

/// PHP's `max_input_nesting_level` (its default, which Moodle does not ask to change).
const MAX_INPUT_NESTING_LEVEL: usize = 64;

/// `php_register_variable_ex`: `users[0][email]` nests; `[]` appends; in the base name
/// spaces and dots become underscores.
fn php_insert(root: &mut Vec<(String, Node)>, key: &str, value: Vec<u8>) {
    let key = key.trim_start_matches(' ');
    let (base, mut rest) = match key.find('[') {
        Some(i) if key[i..].contains(']') => (&key[..i], &key[i..]),
        _ => (key, ""),
    };
    let base: String = base
        .chars()
        .map(|c| if c == ' ' || c == '.' { '_' } else { c })
        .collect();
    if base.is_empty() {
        return;
    }
    let mut indexes = Vec::new();
    while let Some(stripped) = rest.strip_prefix('[') {
        // Too deep: PHP drops the whole variable, values sent before included. The limit
        // also bounds the recursion below.
        if indexes.len() == MAX_INPUT_NESTING_LEVEL {
            root.retain(|(k, _)| *k != base);
            return;
        }
        let Some(end) = stripped.find(']') else { break };
        let index = &stripped[..end];
        indexes.push((!index.is_empty()).then(|| index.to_owned()));
        rest = &stripped[end + 1..];
    }
    insert_path(root, Some(base), &indexes, value);
}

/// Stores `value` under `key` (`None`: PHP's append) and then the nested `indexes`.
fn insert_path(
    map: &mut Vec<(String, Node)>,
    key: Option<String>,
    indexes: &[Option<String>],
    value: Vec<u8>,
) {
    let key = match key {
        Some(k) => k,
        None => {
            // `[]`: the next integer key. Past the largest key there is none, and PHP
            // drops the value.
            let next = map
                .iter()
                .filter_map(|(k, _)| k.parse::<i64>().ok())
                .max()
                .map_or(Some(0), |m| m.checked_add(1));
            match next {
                Some(next) => next.to_string(),
                None => return,
            }
        }
    };
    let i = match map.iter().position(|(k, _)| *k == key) {
        Some(i) => i,
        None => {
            map.push((key, Node::Map(Vec::new())));
            map.len() - 1
        }
    };
    let slot = &mut map[i].1;
    let Some((next, deeper)) = indexes.split_first() else {
        *slot = Node::Leaf(value);
        return;
    };
    if matches!(slot, Node::Leaf(_)) {
        *slot = Node::Map(Vec::new());
    }
    if let Node::Map(inner) = slot {
        insert_path(inner, next.clone(), deeper, value);
    }
}
