//! A job's error as the console shows it: what happened, and apart from it the
//! fix in the administrator's words when the message carries one.
//!
//! Configuration errors carry it after `. Fix: ` (the Moodle failure table);
//! data errors name it after a colon, as an instruction ("…does not exist:
//! correct the Moodle ID in accessplanit").

/// Verbs a data error's fix starts with.
const IMPERATIVES: [&str; 12] = [
    "correct", "clear", "enter", "rename", "give", "create", "add", "turn", "set", "check",
    "remove", "change",
];

/// `(what happened, the fix)` of an error message.
pub fn split(error: &str) -> (String, Option<String>) {
    if let Some((what, fix)) = error.split_once(". Fix: ") {
        return (what.trim().to_owned(), Some(fix.trim().to_owned()));
    }
    for (at, _) in error.match_indices(": ") {
        let rest = &error[at + 2..];
        let word = rest.split_whitespace().next().unwrap_or_default();
        if IMPERATIVES.contains(&word) {
            let fix = rest.trim();
            let mut fix = fix.chars();
            let first = fix.next().map(|c| c.to_uppercase().collect::<String>());
            return (
                error[..at].trim().to_owned(),
                first.map(|f| f + fix.as_str()),
            );
        }
    }
    (error.to_owned(), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_errors_carry_their_fix() {
        let (what, fix) = split(
            "enrol_manual_enrol_users: Access control exception. Fix: Add the function \
             enrol_manual_enrol_users to the External Service used by this token",
        );
        assert_eq!(what, "enrol_manual_enrol_users: Access control exception");
        assert!(fix.unwrap().starts_with("Add the function"));
    }

    #[test]
    fn data_errors_name_the_fix_after_a_colon() {
        let (what, fix) = split(
            "Moodle course 42 (course.moodle_id of accessplanit course C1) does not exist: \
             correct the Moodle ID in accessplanit",
        );
        assert_eq!(
            what,
            "Moodle course 42 (course.moodle_id of accessplanit course C1) does not exist"
        );
        assert_eq!(
            fix.as_deref(),
            Some("Correct the Moodle ID in accessplanit")
        );
    }

    #[test]
    fn other_errors_have_no_fix() {
        for e in [
            "core_course_get_courses_by_field: Moodle could not be reached (connection refused)",
            "accessplanit user U1 is not in Moodle and the event lacks first_name, last_name or email to create it",
        ] {
            assert_eq!(split(e), (e.to_owned(), None));
        }
    }
}
