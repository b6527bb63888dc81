//! PHP and Moodle string functions the validation and the look-ups need.

/// PARAM_TEXT: tags are stripped, except well-formed multilang `<lang>`/`<span lang>` markup.
pub(super) fn clean_text(s: &str) -> String {
    for (tag, open_ok) in [
        ("lang", is_lang_open as fn(&str) -> bool),
        ("span", is_multilang_span_open as fn(&str) -> bool),
    ] {
        if s.contains(&format!("</{tag}>")) {
            let kept = strip_tags(s, &[tag]);
            if multilang_balanced(&kept, tag, open_ok) {
                return kept;
            }
            break;
        }
    }
    strip_tags(s, &[])
}

fn is_lang_open(t: &str) -> bool {
    t.strip_prefix("<lang lang=\"")
        .and_then(|r| r.split_once('"'))
        .is_some_and(|(code, rest)| is_lang_code(code) && rest.trim_start() == ">")
}

fn is_multilang_span_open(t: &str) -> bool {
    t.strip_prefix("<span lang=\"")
        .and_then(|r| r.split_once('"'))
        .is_some_and(|(code, rest)| is_lang_code(code) && rest.trim() == "class=\"multilang\">")
}

fn is_lang_code(code: &str) -> bool {
    !code.is_empty()
        && code
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Every remaining tag is an opening multilang tag or its close, never nested.
fn multilang_balanced(s: &str, tag: &str, open_ok: fn(&str) -> bool) -> bool {
    let close = format!("</{tag}>");
    let mut open = false;
    let mut rest = s;
    while let Some(start) = rest.find('<') {
        let Some(end) = rest[start..].find('>') else {
            return false;
        };
        let t = &rest[start..start + end + 1];
        if t == close {
            if !open {
                return false;
            }
            open = false;
        } else if open_ok(t) && !open {
            open = true;
        } else {
            return false;
        }
        rest = &rest[start + end + 1..];
    }
    !open
}

/// PHP's `strip_tags`: a `<` followed by a non-space starts a tag that runs to the next `>`
/// (or to the end); tags named in `allowed` are kept.
pub(super) fn strip_tags(s: &str, allowed: &[&str]) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find('<') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        if after.starts_with(char::is_whitespace) {
            out.push('<');
            rest = after;
            continue;
        }
        let Some(end) = after.find('>') else {
            return out;
        };
        let tag = &rest[start..start + 1 + end + 1];
        let name: String = tag
            .trim_start_matches(['<', '/'])
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        if allowed.contains(&name.as_str()) {
            out.push_str(tag);
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// PHP's `trim` (space, tab, newlines, NUL, vertical tab).
pub(super) fn php_trim(s: &str) -> &str {
    s.trim_matches([' ', '\t', '\n', '\r', '\0', '\x0B'])
}

/// PHP's `empty` for a string: `""` and `"0"`.
pub(super) fn php_empty(s: &str) -> bool {
    s.is_empty() || s == "0"
}

/// PHP's `(int)` of a string: leading whitespace, sign and digits; anything else is 0.
pub(super) fn php_intval(s: &str) -> i64 {
    let s = s.trim_start_matches([' ', '\t', '\n', '\r', '\x0B', '\x0C']);
    let (negative, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let mut value: i64 = 0;
    for c in digits.chars().take_while(char::is_ascii_digit) {
        let d = c.to_digit(10).unwrap_or(0) as i64;
        value = value.saturating_mul(10).saturating_add(d);
    }
    if negative { -value } else { value }
}

/// Moodle's `validate_email` (PHPMailer's html5 pattern, and no `<` or `>`).
pub(super) fn validate_email(email: &str) -> bool {
    let Some((local, domain)) = email.rsplit_once('@') else {
        return false;
    };
    let local_ok = !local.is_empty()
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".!#$%&'*+/=?^_`{|}~-".contains(c));
    let domain_ok = !domain.is_empty()
        && domain.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    local_ok && domain_ok
}

/// SQL `LIKE` without case (Moodle's `sql_like(…, false)`): `%` any run, `_` one character,
/// `\` escapes.
pub(super) fn like_match(pattern: &str, text: &str) -> bool {
    #[derive(PartialEq)]
    enum Token {
        Any,
        One,
        Char(char),
    }
    let mut chars = pattern
        .to_lowercase()
        .chars()
        .collect::<Vec<_>>()
        .into_iter();
    let mut p = Vec::new();
    while let Some(c) = chars.next() {
        p.push(match c {
            '%' => Token::Any,
            '_' => Token::One,
            // A trailing backslash escapes nothing and stands for itself.
            '\\' => Token::Char(chars.next().unwrap_or('\\')),
            c => Token::Char(c),
        });
    }
    let t: Vec<char> = text.to_lowercase().chars().collect();
    // Greedy matching that backtracks to the last `%` only: linear memory and no recursion,
    // whatever pattern a request sends.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some(Token::One) => (pi, ti) = (pi + 1, ti + 1),
            Some(Token::Char(c)) if *c == t[ti] => (pi, ti) = (pi + 1, ti + 1),
            Some(Token::Any) => {
                star = Some((pi, ti));
                pi += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    star = Some((sp, st + 1));
                    (pi, ti) = (sp + 1, st + 1);
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|token| *token == Token::Any)
}

#[cfg(test)]
mod tests {
    use super::like_match;

    /// The definition, written as recursion (exponential, so only for short inputs).
    fn reference(pattern: &str, text: &str) -> bool {
        fn go(p: &[char], t: &[char]) -> bool {
            match p.first() {
                None => t.is_empty(),
                Some('%') => (0..=t.len()).any(|i| go(&p[1..], &t[i..])),
                Some('_') => !t.is_empty() && go(&p[1..], &t[1..]),
                Some('\\') if p.len() > 1 => t.first() == Some(&p[1]) && go(&p[2..], &t[1..]),
                Some(c) => t.first() == Some(c) && go(&p[1..], &t[1..]),
            }
        }
        let p: Vec<char> = pattern.to_lowercase().chars().collect();
        let t: Vec<char> = text.to_lowercase().chars().collect();
        go(&p, &t)
    }

    #[test]
    fn like_agrees_with_its_definition() {
        let patterns = [
            "",
            "%",
            "%%",
            "_",
            "a",
            "A%",
            "%@example.com",
            "ada%@%.com",
            "a_a",
            "%a%a%",
            "\\%",
            "\\_",
            "a\\",
            "\\",
            "%\\%%",
            "_%_",
            "ad%a",
            "%b%",
            "ADA@EXAMPLE.COM",
        ];
        let texts = [
            "",
            "a",
            "aa",
            "ada",
            "Ada@Example.com",
            "ada.l@x.com",
            "%",
            "_",
            "a\\",
            "\\",
            "%a",
            "aba",
            "abba",
            "b",
        ];
        for p in patterns {
            for t in texts {
                assert_eq!(like_match(p, t), reference(p, t), "{p:?} against {t:?}");
            }
        }
    }

    #[test]
    fn a_long_pattern_neither_recurses_nor_backtracks_forever() {
        let pattern = "%_".repeat(100_000) + "x";
        let text = "a".repeat(1_000);
        assert!(!like_match(&pattern, &text));
        assert!(like_match(&"_".repeat(1_000), &text));
    }
}
