//! Checks on values that were read fine but that Moodle would refuse or mangle
//! (SPEC §2 "Rules checked at the door", `moodle-ws.md` §1.3 and §3).
//!
//! Each check answers `Err(message)` with a short sentence for the field.

/// Moodle's `course.fullname` column.
pub(super) const LABEL_MAX: usize = 254;
/// Moodle's `user.firstname` and `user.lastname` columns.
pub(super) const NAME_MAX: usize = 100;
/// Moodle's `user.email` column.
pub(super) const EMAIL_MAX: usize = 100;
/// accessplanit IDs end up in Moodle idnumbers (`course.idnumber` holds 100
/// characters) and in the derived course shortname.
pub(super) const ID_MAX: usize = 100;
/// `event_id` becomes an indexed idempotency key; a generous bound keeps the
/// index entry small whatever the database.
pub(super) const EVENT_ID_MAX: usize = 255;

/// At most `max` characters (Moodle's columns count characters, not bytes).
pub(super) fn max_chars(s: &str, max: usize) -> Result<(), String> {
    if s.chars().count() > max {
        Err(format!("must be at most {max} characters"))
    } else {
        Ok(())
    }
}

/// No HTML tags, as Moodle's PARAM_TEXT / PARAM_NOTAGS demand.
///
/// Moodle strips tags with PHP's `strip_tags` and refuses the value when
/// anything was stripped. `strip_tags` treats a `<` as the start of a tag
/// unless whitespace follows it, so `a < b` is fine but `a<b` and `Fire
/// <b>Safety</b>` are not. (Moodle's multilang `<span lang>` markup is refused
/// here too: simpler, and workflow labels do not carry it.)
pub(super) fn no_html_tags(s: &str) -> Result<(), String> {
    let mut rest = s;
    while let Some(at) = rest.find('<') {
        rest = &rest[at + 1..];
        if !rest.starts_with(char::is_whitespace) {
            return Err("must not contain HTML tags".into());
        }
    }
    Ok(())
}

/// A practical email syntax check, about what Moodle's `validate_email`
/// accepts: one `@`; a local part without spaces, quotes or the characters
/// that would need quoting, and with no leading, trailing or doubled dot; a
/// domain of at least two dot-separated labels made of ASCII letters, digits
/// and inner hyphens; at most 100 characters.
pub(super) fn email(s: &str) -> Result<(), String> {
    max_chars(s, EMAIL_MAX)?;
    let valid = match s.split_once('@') {
        Some((local, domain)) => valid_local_part(local) && valid_domain(domain),
        None => false,
    };
    if valid {
        Ok(())
    } else {
        Err("must be an email address like ada@example.com".into())
    }
}

fn valid_local_part(local: &str) -> bool {
    let plain = |c: char| !c.is_whitespace() && !c.is_control() && !"@<>()[]\\,;:\"".contains(c);
    !local.is_empty() && local.chars().all(plain) && local.split('.').all(|atom| !atom.is_empty())
}

fn valid_domain(domain: &str) -> bool {
    let valid_label = |label: &str| {
        !label.is_empty()
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    domain.contains('.') && domain.split('.').all(valid_label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_count_characters_not_bytes() {
        let accents = "é".repeat(NAME_MAX);
        assert!(accents.len() > NAME_MAX);
        assert_eq!(max_chars(&accents, NAME_MAX), Ok(()));
        assert_eq!(
            max_chars(&format!("{accents}e"), NAME_MAX),
            Err("must be at most 100 characters".into())
        );
    }

    #[test]
    fn html_tags_are_refused_but_a_lone_angle_is_not() {
        for fine in ["First Aid", "Q&A > basics", "a < b", "\"quoted\"", "x <\ty"] {
            assert_eq!(no_html_tags(fine), Ok(()), "{fine}");
        }
        for tagged in [
            "Fire <b>Safety</b>",
            "a<b",
            "<script>",
            "ends with <",
            "<!-- -->",
        ] {
            assert_eq!(
                no_html_tags(tagged),
                Err("must not contain HTML tags".into()),
                "{tagged}"
            );
        }
    }

    #[test]
    fn emails() {
        for good in [
            "ada@example.com",
            "Ada.Lovelace+moodle@mail.example.co.uk",
            "o'brien@example-mail.ie",
            "x@a1.io",
            "ada@EXAMPLE.COM",
        ] {
            assert_eq!(email(good), Ok(()), "{good}");
        }
        let long = format!("{}@example.com", "a".repeat(EMAIL_MAX));
        for bad in [
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "ada@@example.com",
            "ada@b@example.com",
            "ada lovelace@example.com",
            "ada@exa mple.com",
            "ada@example..com",
            "ada@.example.com",
            "ada@example.com.",
            "ada@-example.com",
            "ada@example-.com",
            "ada@exam_ple.com",
            "ada@bücher.de",
            ".ada@example.com",
            "ada.@example.com",
            "a..da@example.com",
            "<ada>@example.com",
            "\"ada\"@example.com",
            "Ada <ada@example.com>",
        ] {
            assert_eq!(
                email(bad),
                Err("must be an email address like ada@example.com".into()),
                "{bad}"
            );
        }
        assert_eq!(email(&long), Err("must be at most 100 characters".into()));
    }
}
