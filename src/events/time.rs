//! Event times: RFC 3339, or a local time read in the tenant's time zone.
//!
//! accessplanit merge fields render dates the UK way and without an offset, so
//! besides RFC 3339 (`2027-01-12T09:00:00Z`, `2027-07-01T09:00:00+01:00`) these
//! local forms are read in the tenant's IANA zone, daylight saving included:
//! - `2027-01-12 09:00`, `2027-01-12 09:00:00`, and the same with a `T`;
//! - `12/01/2027 09:00`, `12/01/2027 09:00:00` (day first: UK order);
//! - a date alone, `2027-01-12` or `12/01/2027`, meaning 00:00 local.

use chrono::offset::LocalResult;
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use serde_json::Value;

use super::lenient::{self, Read};

const NOT_A_TIME: &str =
    "must be RFC 3339 or a local time like 2027-01-12 09:00 or 12/01/2027 09:00";

/// Local date-and-time layouts, tried in order (chrono's `%d`/`%m` also take
/// one digit, so `1/2/2027 9:00` works too).
const LOCAL_DATE_TIMES: [&str; 6] = [
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%dT%H:%M",
    "%d/%m/%Y %H:%M:%S",
    "%d/%m/%Y %H:%M",
];

/// Local dates without a time: midnight local.
const LOCAL_DATES: [&str; 2] = ["%Y-%m-%d", "%d/%m/%Y"];

/// Reads a time field (see the module doc for the accepted forms).
pub(super) fn read(value: &Value, tz: Tz) -> Read<DateTime<Utc>> {
    let Some(text) = lenient::text(value).map_err(|_| NOT_A_TIME)? else {
        return Ok(None);
    };
    match parse(&text, tz) {
        Some(instant) => Ok(Some(instant)),
        None => Err(NOT_A_TIME.into()),
    }
}

/// Parses one trimmed time; `None` when it is in none of the accepted forms.
///
/// Sub-second digits are dropped: Moodle keeps Unix seconds, so two times
/// that differ by a fraction of a second are the same time to it (and must
/// hash the same, see [`super::Event::canonical_json`]).
fn parse(text: &str, tz: Tz) -> Option<DateTime<Utc>> {
    let instant = match DateTime::parse_from_rfc3339(text) {
        Ok(with_offset) => with_offset.to_utc(),
        Err(_) => local_to_utc(parse_local(text)?, tz)?,
    };
    DateTime::from_timestamp(instant.timestamp(), 0)
}

fn parse_local(text: &str) -> Option<NaiveDateTime> {
    let date_time = LOCAL_DATE_TIMES
        .iter()
        .find_map(|layout| NaiveDateTime::parse_from_str(text, layout).ok());
    date_time.or_else(|| {
        LOCAL_DATES
            .iter()
            .find_map(|layout| NaiveDate::parse_from_str(text, layout).ok())
            .map(|date| date.and_time(NaiveTime::MIN))
    })
}

/// The instant a wall-clock time in `tz` stands for.
///
/// Daylight-saving edges, where the wall clock does not name exactly one
/// instant:
/// - fall-back (autumn), the hour happens twice: take the EARLIER instant,
///   i.e. the first time the clock shows it (01:30 on 31 Oct 2027 in London
///   is 00:30Z, still BST). A course rarely starts in that hour; the earlier
///   reading at least never ends a course later than asked.
/// - spring-forward, the hour does not exist: move the time forward by the
///   gap, i.e. read it with the offset in force just before the change
///   (01:30 on 28 Mar 2027 in London is read as GMT: 01:30Z, shown as 02:30
///   BST). That is where a clock that was not put forward would have been,
///   and it keeps the order of times around the gap.
fn local_to_utc(local: NaiveDateTime, tz: Tz) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(instant) => Some(instant.to_utc()),
        LocalResult::Ambiguous(earlier, _later) => Some(earlier.to_utc()),
        LocalResult::None => {
            // A day earlier is safely before the change (zones change their
            // offset at most a few times a year), so its offset is the one
            // the gap jumped away from.
            let day_before = local.checked_sub_signed(TimeDelta::days(1))?;
            let before = tz.offset_from_utc_datetime(&day_before).fix();
            Some(local.checked_sub_offset(before)?.and_utc())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::America::New_York;
    use chrono_tz::Europe::London;
    use serde_json::json;

    fn utc(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339).unwrap().to_utc()
    }

    /// Each `(input, expected UTC)` row, read in `tz`.
    fn table(tz: Tz, rows: &[(&str, &str)]) {
        for (input, expected) in rows {
            assert_eq!(
                read(&json!(input), tz),
                Ok(Some(utc(expected))),
                "{input} in {tz}"
            );
        }
    }

    #[test]
    fn rfc3339_keeps_its_offset_whatever_the_zone() {
        let rows = [
            ("2027-01-12T09:00:00Z", "2027-01-12T09:00:00Z"),
            ("2027-07-01T09:00:00+01:00", "2027-07-01T08:00:00Z"),
            ("2027-07-01T09:00:00-04:00", "2027-07-01T13:00:00Z"),
            ("2027-01-12 09:00:00Z", "2027-01-12T09:00:00Z"),
            ("2027-01-12t09:00:00z", "2027-01-12T09:00:00Z"),
            (" 2027-01-12T09:00:00Z ", "2027-01-12T09:00:00Z"),
            // Fractions are dropped (Moodle keeps seconds).
            ("2027-01-12T09:00:00.999Z", "2027-01-12T09:00:00Z"),
        ];
        table(London, &rows);
        table(New_York, &rows);
    }

    #[test]
    fn local_forms_in_london() {
        table(
            London,
            &[
                // Winter: GMT.
                ("2027-01-12 09:00", "2027-01-12T09:00:00Z"),
                ("2027-01-12 09:00:30", "2027-01-12T09:00:30Z"),
                ("2027-01-12T09:00", "2027-01-12T09:00:00Z"),
                ("2027-01-12T09:00:30", "2027-01-12T09:00:30Z"),
                ("12/01/2027 09:00", "2027-01-12T09:00:00Z"),
                ("12/01/2027 09:00:30", "2027-01-12T09:00:30Z"),
                ("2/1/2027 9:05", "2027-01-02T09:05:00Z"),
                ("2027-01-12", "2027-01-12T00:00:00Z"),
                ("12/01/2027", "2027-01-12T00:00:00Z"),
                // Summer: BST, one hour ahead of UTC.
                ("2027-07-01 09:00", "2027-07-01T08:00:00Z"),
                ("01/07/2027 09:00", "2027-07-01T08:00:00Z"),
                ("2027-07-01", "2027-06-30T23:00:00Z"),
            ],
        );
    }

    #[test]
    fn local_forms_in_new_york() {
        table(
            New_York,
            &[
                ("2027-01-12 09:00", "2027-01-12T14:00:00Z"),
                ("12/01/2027 09:00", "2027-01-12T14:00:00Z"),
                ("2027-07-01 09:00", "2027-07-01T13:00:00Z"),
                ("2027-07-01", "2027-07-01T04:00:00Z"),
            ],
        );
    }

    #[test]
    fn daylight_saving_edges_in_london() {
        table(
            London,
            &[
                // Spring forward 28 Mar 2027, 01:00 GMT → 02:00 BST: 01:30 does
                // not exist and moves forward by the gap to 02:30 BST.
                ("2027-03-28 00:59", "2027-03-28T00:59:00Z"),
                ("2027-03-28 01:00", "2027-03-28T01:00:00Z"),
                ("2027-03-28 01:30", "2027-03-28T01:30:00Z"),
                ("2027-03-28 02:00", "2027-03-28T01:00:00Z"),
                ("2027-03-28 02:30", "2027-03-28T01:30:00Z"),
                // Fall back 31 Oct 2027, 02:00 BST → 01:00 GMT: 01:30 happens
                // twice; the earlier (BST) one is taken.
                ("2027-10-31 00:30", "2027-10-30T23:30:00Z"),
                ("2027-10-31 01:30", "2027-10-31T00:30:00Z"),
                ("2027-10-31 02:00", "2027-10-31T02:00:00Z"),
            ],
        );
    }

    #[test]
    fn daylight_saving_edges_in_new_york() {
        table(
            New_York,
            &[
                // Spring forward 14 Mar 2027 at 02:00 EST → 03:00 EDT.
                ("2027-03-14 02:30", "2027-03-14T07:30:00Z"),
                ("2027-03-14 03:30", "2027-03-14T07:30:00Z"),
                // Fall back 7 Nov 2027 at 02:00 EDT → 01:00 EST.
                ("2027-11-07 01:30", "2027-11-07T05:30:00Z"),
                ("2027-11-07 02:30", "2027-11-07T07:30:00Z"),
            ],
        );
    }

    #[test]
    fn blank_is_absent() {
        assert_eq!(read(&json!(""), London), Ok(None));
        assert_eq!(read(&json!("  "), London), Ok(None));
        assert_eq!(read(&json!(null), London), Ok(None));
    }

    #[test]
    fn anything_else_names_the_accepted_forms() {
        for wrong in [
            json!("next Tuesday"),
            json!("2027-13-01 09:00"),
            json!("31/02/2027 09:00"),
            json!("2027-01-12 25:00"),
            json!("12/01/2027 09:00 AM"),
            json!("2027-01-12T09:00:00+25:00"),
            json!("01-12-2027"),
            json!(1_800_000_000),
            json!(true),
        ] {
            assert_eq!(
                read(&wrong, London),
                Err(NOT_A_TIME.to_string()),
                "input {wrong}"
            );
        }
    }
}
