//! Fixture replay: each recorded call is sent to a fresh fake site, seeded with the state the
//! recording had, and the fake's answer must match the recorded one:
//!
//! * same HTTP status and content-type family (JSON, XML, HTML, empty);
//! * JSON errors: same `exception`, same `errorcode` (or its absence), same `message`, and
//!   `debuginfo` present exactly when it was recorded (and equal, unless marked free);
//! * JSON successes: the same shape (same keys in objects, recursively; list items checked
//!   against the union and intersection of the recorded items' keys), plus the values at the
//!   JSON pointers a case lists with `same`;
//! * XML: recorded error envelopes byte for byte; success documents by their key names.
//!
//! Seeded ids are the recorded ids, so the recorded request is sent unchanged except for the
//! token and the course category (the recording's category 2 is the fake's [`CATEGORY`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Deserialize;
use serde::de::{MapAccess, Visitor};
use serde_json::Value;

use crate::fake_moodle::*;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/moodle");
/// A well-formed token the fake does not know.
const UNKNOWN_TOKEN: &str = "0123456789abcdef0123456789abcdef";

// ----- the recordings -----

#[derive(Deserialize)]
struct Fixture {
    request: Request,
    response: Recorded,
}

#[derive(Deserialize)]
struct Request {
    method: String,
    path: String,
    form: OrderedForm,
    #[serde(default)]
    raw_body: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct Recorded {
    status: u16,
    content_type: String,
    body: Value,
}

/// The recorded form in file order (serde_json's `Map` would sort it, and list order matters).
struct OrderedForm(Vec<(String, String)>);

impl<'de> Deserialize<'de> for OrderedForm {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Pairs;
        impl<'de> Visitor<'de> for Pairs {
            type Value = OrderedForm;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of form fields")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OrderedForm, A::Error> {
                let mut pairs = Vec::new();
                while let Some(pair) = map.next_entry::<String, String>()? {
                    pairs.push(pair);
                }
                Ok(OrderedForm(pairs))
            }
        }
        d.deserialize_map(Pairs)
    }
}

fn load(file: &str) -> Fixture {
    let path = format!("{DIR}/{file}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

// ----- the case table -----

type Hook = Box<dyn Fn(&FakeMoodle)>;

struct Case {
    file: &'static str,
    setup: Vec<Hook>,
    /// Recorded calls sent first (they must succeed), e.g. the create before a read-back.
    prelude: Vec<&'static str>,
    invalid_token: bool,
    /// The recorded debuginfo holds timestamps or server details: compare presence only.
    free_debuginfo: bool,
    /// Why list lengths may differ from the recording (`None`: they may not).
    loose_lengths: Option<&'static str>,
    /// JSON pointers whose values must equal the recording's ("" is the whole body).
    same: Vec<&'static str>,
    /// State checks after the call.
    after: Vec<Hook>,
}

fn case(file: &'static str) -> Case {
    Case {
        file,
        setup: Vec::new(),
        prelude: Vec::new(),
        invalid_token: false,
        free_debuginfo: false,
        loose_lengths: None,
        same: Vec::new(),
        after: Vec::new(),
    }
}

impl Case {
    fn setup(mut self, f: impl Fn(&FakeMoodle) + 'static) -> Self {
        self.setup.push(Box::new(f));
        self
    }
    fn prelude(mut self, files: &[&'static str]) -> Self {
        self.prelude.extend_from_slice(files);
        self
    }
    fn invalid_token(mut self) -> Self {
        self.invalid_token = true;
        self
    }
    fn free_debuginfo(mut self) -> Self {
        self.free_debuginfo = true;
        self
    }
    fn loose_lengths(mut self, why: &'static str) -> Self {
        self.loose_lengths = Some(why);
        self
    }
    fn same(mut self, pointers: &[&'static str]) -> Self {
        self.same.extend_from_slice(pointers);
        self
    }
    fn after(mut self, f: impl Fn(&FakeMoodle) + 'static) -> Self {
        self.after.push(Box::new(f));
        self
    }
}

// Seeds with the recorded ids and values.

fn course(m: &FakeMoodle, id: i64, shortname: &str, idnumber: &str) {
    m.add_course(CourseSeed {
        id: Some(id),
        idnumber: idnumber.into(),
        ..CourseSeed::new(shortname)
    });
}

/// Course 2 after its date update, as most recordings saw it.
fn c1(m: &FakeMoodle) {
    m.add_course(CourseSeed {
        id: Some(2),
        fullname: "APIT Fire Safety Level 2".into(),
        idnumber: "apit-ev-1-52c2f4".into(),
        summary: "<p>Classroom course <strong>delegates</strong> &amp; trainers</p>".into(),
        startdate: 1807002000,
        enddate: 1807174800,
        ..CourseSeed::new("APIT-C1-52c2f4")
    });
}

fn c2(m: &FakeMoodle) {
    course(m, 6, "APIT-C2-52c2f4", "apit-ev-2-52c2f4");
}

fn c3(m: &FakeMoodle) {
    course(m, 7, "APIT-C3-52c2f4", "apit-ev-3-52c2f4");
}

fn user(m: &FakeMoodle, id: i64, username: &str, email: &str, idnumber: &str) {
    let mut lastname = username.to_owned();
    lastname[..1].make_ascii_uppercase();
    m.add_user(UserSeed {
        id: Some(id),
        lastname,
        idnumber: idnumber.into(),
        ..UserSeed::new(username, email)
    });
}

fn del1(m: &FakeMoodle) {
    user(
        m,
        6,
        "apit.del1.52c2f4",
        "del1.52c2f4@example.invalid",
        "apit-p-1-52c2f4",
    );
}

fn del2(m: &FakeMoodle) {
    user(
        m,
        7,
        "apit.del2.52c2f4",
        "apit.del2.52c2f4@example.invalid",
        "apit-p-2-52c2f4",
    );
}

/// Another user with del1's idnumber (user idnumbers may repeat).
fn dupid(m: &FakeMoodle) {
    user(
        m,
        10,
        "apit.dupid.52c2f4",
        "apit.dupid.52c2f4@example.invalid",
        "apit-p-1-52c2f4",
    );
}

/// Another account with del1's email (made while allowaccountssameemail was on).
fn sameemail(m: &FakeMoodle) {
    user(
        m,
        8,
        "apit.sameemail.52c2f4",
        "del1.52c2f4@example.invalid",
        "",
    );
}

/// Users 4 and 5 exist on the recorded site, so the next user created gets id 6.
fn users_4_and_5(m: &FakeMoodle) {
    user(m, 4, "rig.four", "four@example.invalid", "");
    user(m, 5, "rig.five", "five@example.invalid", "");
}

/// Course 2 with del1 and del2 enrolled as students.
fn c1_with_students(m: &FakeMoodle) {
    c1(m);
    del1(m);
    del2(m);
    m.add_enrolment(2, 6, ROLE_STUDENT, false);
    m.add_enrolment(2, 7, ROLE_STUDENT, false);
}

fn enrolment(m: &FakeMoodle, courseid: i64, userid: i64) -> Option<EnrolmentRecord> {
    m.enrolments()
        .into_iter()
        .find(|e| e.courseid == courseid && e.userid == userid)
}

fn cases() -> Vec<Case> {
    const GRADE_ITEMS: &str =
        "the recording has a manual grade item; the fake models only the course total";
    vec![
        // --- core_completion_get_course_completion_status ---
        case("core_completion_get_course_completion_status/completion_disabled.json").setup(|m| {
            m.add_course(CourseSeed {
                id: Some(9),
                enablecompletion: false,
                ..CourseSeed::new("APIT-NOCOMP-52c2f4")
            });
            del1(m);
            m.add_enrolment(9, 6, ROLE_STUDENT, false);
        }),
        case("core_completion_get_course_completion_status/enabled_no_criteria.json").setup(|m| {
            course(m, 10, "APIT-COMP-52c2f4", "");
            del1(m);
            m.add_enrolment(10, 6, ROLE_STUDENT, false);
        }),
        case("core_completion_get_course_completion_status/enabled_with_criteria.json")
            .setup(|m| {
                course(m, 10, "APIT-COMP-52c2f4", "");
                m.set_completion_criteria(10, true);
                del1(m);
                m.add_enrolment(10, 6, ROLE_STUDENT, false);
            })
            .same(&[
                "/completionstatus/completed",
                "/completionstatus/aggregation",
                "/warnings",
            ]),
        case("core_completion_get_course_completion_status/unknown_course.json").setup(del1),
        case("core_completion_get_course_completion_status/user_not_enrolled.json").setup(|m| {
            course(m, 10, "APIT-COMP-52c2f4", "");
            m.set_completion_criteria(10, true);
            del1(m);
            del2(m);
            m.add_enrolment(10, 6, ROLE_STUDENT, false);
        }),
        // --- core_course_create_courses ---
        case("core_course_create_courses/batch_second_fails.json")
            .setup(c1)
            .after(|m| assert_eq!(m.courses().len(), 1, "the batch is rolled back")),
        case("core_course_create_courses/batch_two_success.json").after(|m| {
            let idnumbers: Vec<String> = m.courses().into_iter().map(|c| c.idnumber).collect();
            assert_eq!(idnumbers, ["apit-ev-2-52c2f4", "apit-ev-3-52c2f4"]);
        }),
        case("core_course_create_courses/blank_shortname.json")
            .after(|m| assert!(m.courses().is_empty())),
        case("core_course_create_courses/duplicate_idnumber.json").setup(c1),
        case("core_course_create_courses/duplicate_shortname.json")
            .setup(c1)
            .after(|m| assert_eq!(m.courses().len(), 1)),
        case("core_course_create_courses/duplicate_shortname__debug.json")
            .setup(|m| course(m, 2, "dbg-52c302", "")),
        case("core_course_create_courses/enddate_before_startdate.json")
            .after(|m| assert!(m.courses().is_empty())),
        case("core_course_create_courses/overlong_fullname.json")
            .after(|m| assert!(m.courses().is_empty())),
        case("core_course_create_courses/overlong_idnumber.json"),
        case("core_course_create_courses/overlong_shortname.json"),
        case("core_course_create_courses/overlong_shortname__debug.json").free_debuginfo(),
        case("core_course_create_courses/shortname_differs_only_in_case.json")
            .setup(c1)
            .after(|m| assert_eq!(m.courses().len(), 2, "PostgreSQL compares case-sensitively")),
        case("core_course_create_courses/success.json")
            .same(&[""])
            .after(|m| {
                let c = &m.courses()[0];
                assert_eq!(
                    (c.startdate, c.enddate, c.category),
                    (1803978000, 1804150800, CATEGORY)
                );
                assert!(c.summary.contains("<strong>delegates</strong>"));
            }),
        case("core_course_create_courses/success_minimal.json").same(&["/0/shortname"]),
        case("core_course_create_courses/success_minimal_readback.json")
            .setup(c1)
            .prelude(&["core_course_create_courses/success_minimal.json"])
            .same(&[
                "/courses/0/id",
                "/courses/0/shortname",
                "/courses/0/idnumber",
                "/courses/0/summary",
                "/courses/0/startdate",
                "/courses/0/enddate",
                "/courses/0/visible",
                "/courses/0/format",
                "/courses/0/enablecompletion",
                "/courses/0/enrollmentmethods",
            ]),
        case("core_course_create_courses/success_readback.json")
            .prelude(&["core_course_create_courses/success.json"])
            .same(&[
                "/courses/0/id",
                "/courses/0/fullname",
                "/courses/0/idnumber",
                "/courses/0/summary",
                "/courses/0/summaryformat",
                "/courses/0/startdate",
                "/courses/0/enddate",
                "/courses/0/visible",
            ]),
        case("core_course_create_courses/unknown_categoryid.json"),
        // --- core_course_get_courses ---
        case("core_course_get_courses/by_ids.json")
            .setup(|m| {
                c1(m);
                c2(m);
            })
            .same(&[
                "/0/id",
                "/0/idnumber",
                "/0/startdate",
                "/1/id",
                "/1/shortname",
            ]),
        case("core_course_get_courses/unknown_id.json").same(&[""]),
        // --- core_course_get_courses_by_field ---
        case("core_course_get_courses_by_field/by_category.json")
            .setup(|m| {
                c1(m);
                course(m, 3, "APIT-MIN-52c2f4", "");
                course(m, 4, "apit-c1-52c2f4", "");
                c2(m);
                c3(m);
            })
            .same(&[
                "/courses/0/id",
                "/courses/2/shortname",
                "/courses/4/idnumber",
            ]),
        case("core_course_get_courses_by_field/by_id.json")
            .setup(c2)
            .same(&["/courses/0/id", "/courses/0/idnumber"]),
        case("core_course_get_courses_by_field/by_id_not_found.json").same(&[""]),
        case("core_course_get_courses_by_field/by_idnumber_found.json")
            .setup(|m| {
                c1(m);
                c2(m);
            })
            .same(&[
                "/courses/0/id",
                "/courses/0/shortname",
                "/courses/0/startdate",
            ]),
        case("core_course_get_courses_by_field/by_idnumber_not_found.json")
            .setup(c1)
            .same(&[""]),
        case("core_course_get_courses_by_field/by_ids.json")
            .setup(|m| {
                c1(m);
                c2(m);
                c3(m);
            })
            .same(&["/courses/0/id", "/courses/1/id"]),
        case("core_course_get_courses_by_field/by_ids_with_unknown_id.json").setup(|m| {
            c1(m);
            c2(m);
        }),
        case("core_course_get_courses_by_field/by_shortname.json")
            .setup(|m| {
                c1(m);
                course(m, 4, "apit-c1-52c2f4", "");
            })
            .same(&["/courses/0/id"]),
        case("core_course_get_courses_by_field/by_shortname_other_case.json")
            .setup(|m| {
                c1(m);
                course(m, 4, "apit-c1-52c2f4", "");
            })
            .same(&[""]),
        case("core_course_get_courses_by_field/invalid_field.json"),
        // --- core_course_update_courses ---
        case("core_course_update_courses/batch_one_bad.json")
            .setup(|m| {
                c1(m);
                c2(m);
                c3(m);
            })
            .same(&[""])
            .after(|m| {
                let courses = m.courses();
                assert_eq!(
                    courses[2].fullname, "Renamed C3 52c2f4",
                    "the good item is kept"
                );
                assert_eq!(
                    courses[1].shortname, "APIT-C2-52c2f4",
                    "the bad item is not"
                );
            }),
        case("core_course_update_courses/duplicate_idnumber.json")
            .setup(|m| {
                c1(m);
                c2(m);
            })
            .same(&[""]),
        case("core_course_update_courses/duplicate_shortname.json")
            .setup(|m| {
                c1(m);
                c2(m);
            })
            .same(&[""]),
        case("core_course_update_courses/enddate_before_startdate.json")
            .setup(c2)
            .same(&[""])
            .after(|m| assert_eq!(m.courses()[0].startdate, 0, "not updated")),
        case("core_course_update_courses/success_dates.json")
            .setup(|m| course(m, 2, "APIT-C1-52c2f4", "apit-ev-1-52c2f4"))
            .same(&[""])
            .after(|m| {
                let c = &m.courses()[0];
                assert_eq!((c.startdate, c.enddate), (1807002000, 1807174800));
            }),
        case("core_course_update_courses/success_dates_readback.json")
            .setup(|m| course(m, 2, "APIT-C1-52c2f4", "apit-ev-1-52c2f4"))
            .prelude(&["core_course_update_courses/success_dates.json"])
            .same(&["/courses/0/startdate", "/courses/0/enddate"]),
        case("core_course_update_courses/unknown_categoryid.json")
            .setup(|m| course(m, 8, "APIT-CATMOVE-52c2f4", ""))
            .same(&[""])
            .after(|m| {
                let c = &m.courses()[0];
                assert_eq!(
                    (c.category, c.visible),
                    (999999, false),
                    "saved despite the warning"
                );
            }),
        case("core_course_update_courses/unknown_categoryid_readback.json")
            .setup(|m| course(m, 8, "APIT-CATMOVE-52c2f4", ""))
            .prelude(&["core_course_update_courses/unknown_categoryid.json"])
            .same(&[
                "/courses/0/categoryid",
                "/courses/0/categoryname",
                "/courses/0/visible",
            ]),
        case("core_course_update_courses/unknown_course_id.json").same(&[""]),
        // --- core_enrol_get_enrolled_users ---
        case("core_enrol_get_enrolled_users/course.json")
            .setup(|m| {
                c1_with_students(m);
                dupid(m);
            })
            // User 10 is enrolled from a future date: listed, but without enrolledcourses.
            .prelude(&["enrol_manual_enrol_users/timestart_timeend.json"])
            .same(&[
                "/0/id",
                "/1/idnumber",
                "/2/id",
                "/2/roles",
                "/0/enrolledcourses",
            ]),
        case("core_enrol_get_enrolled_users/course_userfields.json")
            .setup(|m| {
                c1_with_students(m);
                dupid(m);
            })
            .prelude(&["enrol_manual_enrol_users/timestart_timeend.json"])
            .same(&[""]),
        case("core_enrol_get_enrolled_users/empty_course.json")
            .setup(|m| course(m, 3, "APIT-MIN-52c2f4", ""))
            .same(&[""]),
        case("core_enrol_get_enrolled_users/unknown_course.json"),
        // --- core_role_assign_roles ---
        case("core_role_assign_roles/course_context.json")
            .setup(|m| {
                c1(m);
                del1(m);
                m.add_enrolment(2, 6, ROLE_STUDENT, false);
            })
            .after(|m| {
                assert_eq!(
                    enrolment(m, 2, 6).unwrap().roleids,
                    [ROLE_STUDENT, ROLE_TEACHER]
                )
            }),
        case("core_role_assign_roles/role_not_assignable.json").setup(|m| {
            c1(m);
            del1(m);
        }),
        // --- core_user_create_users ---
        case("core_user_create_users/batch_50.json")
            .same(&["/0/username", "/49/username"])
            .after(|m| assert_eq!(m.users().len(), 50)),
        case("core_user_create_users/batch_one_bad.json")
            .after(|m| assert!(m.users().is_empty(), "the batch is rolled back")),
        case("core_user_create_users/blank_firstname.json"),
        case("core_user_create_users/duplicate_idnumber.json")
            .setup(del1)
            .after(|m| assert_eq!(m.users().len(), 2)),
        case("core_user_create_users/email_taken.json")
            .setup(del1)
            .after(|m| assert_eq!(m.users().len(), 1)),
        case("core_user_create_users/email_taken_allowed.json").setup(|m| {
            del1(m);
            m.allow_accounts_same_email(true);
        }),
        case("core_user_create_users/email_taken_other_case.json").setup(del1),
        case("core_user_create_users/empty_email.json"),
        case("core_user_create_users/invalid_email.json"),
        case("core_user_create_users/invalid_username__debug.json"),
        case("core_user_create_users/invalid_username_apostrophe.json"),
        case("core_user_create_users/invalid_username_plus.json"),
        case("core_user_create_users/invalid_username_space.json"),
        case("core_user_create_users/invalid_username_uppercase.json"),
        case("core_user_create_users/no_password_no_createpassword.json"),
        case("core_user_create_users/success_createpassword.json")
            .setup(users_4_and_5)
            .same(&[""]),
        case("core_user_create_users/success_readback.json")
            .setup(users_4_and_5)
            .prelude(&["core_user_create_users/success_createpassword.json"])
            .same(&[
                "/0/id",
                "/0/username",
                "/0/fullname",
                "/0/email",
                "/0/idnumber",
                "/0/auth",
                "/0/suspended",
                "/0/confirmed",
            ]),
        case("core_user_create_users/success_with_password.json").same(&["/0/username"]),
        case("core_user_create_users/unknown_auth.json"),
        case("core_user_create_users/username_taken.json").setup(del1),
        case("core_user_create_users/username_with_at_and_dash.json").same(&["/0/username"]),
        case("core_user_create_users/weak_password.json").after(|m| assert!(m.users().is_empty())),
        // --- core_user_get_users ---
        case("core_user_get_users/by_email.json")
            .setup(|m| {
                del1(m);
                sameemail(m);
            })
            .same(&[
                "/users/0/id",
                "/users/1/id",
                "/users/0/idnumber",
                "/warnings",
            ]),
        case("core_user_get_users/by_email_without_viewuseridentity.json")
            .setup(|m| {
                del1(m);
                m.lack_capability("moodle/site:viewuseridentity");
            })
            .same(&[""]),
        case("core_user_get_users/by_idnumber.json")
            .setup(|m| {
                del1(m);
                dupid(m);
            })
            .same(&["/users/0/id", "/users/1/id"]),
        // --- core_user_get_users_by_field ---
        case("core_user_get_users_by_field/email_0_matches.json")
            .setup(del1)
            .same(&[""]),
        case("core_user_get_users_by_field/email_1_match.json")
            .setup(|m| {
                del1(m);
                dupid(m);
            })
            .same(&["/0/id", "/0/username", "/0/email", "/0/idnumber"]),
        case("core_user_get_users_by_field/email_2_matches.json")
            .setup(|m| {
                del1(m);
                sameemail(m);
            })
            .same(&["/0/id", "/1/id"]),
        case("core_user_get_users_by_field/email_other_case.json")
            .setup(dupid)
            .same(&[""]),
        case("core_user_get_users_by_field/email_without_viewuseridentity.json")
            .setup(|m| {
                del1(m);
                m.lack_capability("moodle/site:viewuseridentity");
            })
            .same(&[""]),
        case("core_user_get_users_by_field/id.json")
            .setup(del1)
            .same(&["/0/id"]),
        case("core_user_get_users_by_field/idnumber.json")
            .setup(|m| {
                del1(m);
                del2(m);
                dupid(m);
            })
            .same(&["/0/id", "/1/id"]),
        case("core_user_get_users_by_field/invalid_field.json"),
        case("core_user_get_users_by_field/username.json")
            .setup(|m| {
                del1(m);
                del2(m);
            })
            .same(&["/0/id", "/1/username"]),
        case("core_user_get_users_by_field/username_other_case.json").setup(del1),
        // --- core_webservice_get_site_info ---
        case("core_webservice_get_site_info/success.json").same(&[
            "/functions",
            "/userid",
            "/username",
            "/siteid",
            "/release",
            "/version",
        ]),
        // --- enrol_manual_enrol_users ---
        case("enrol_manual_enrol_users/batch_50.json")
            .setup(|m| {
                course(m, 11, "APIT-B50-52c2f4", "");
                for id in 11..=60 {
                    user(
                        m,
                        id,
                        &format!("b50.{id}"),
                        &format!("b50.{id}@example.invalid"),
                        "",
                    );
                }
            })
            .after(|m| assert_eq!(m.enrolments().len(), 50)),
        case("enrol_manual_enrol_users/batch_one_bad.json")
            .setup(|m| {
                c2(m);
                del1(m);
                dupid(m);
            })
            .after(|m| assert!(m.enrolments().is_empty(), "the batch is rolled back")),
        case("enrol_manual_enrol_users/enrol_again.json")
            .setup(|m| {
                c1(m);
                del1(m);
                m.add_enrolment(2, 6, ROLE_STUDENT, false);
            })
            .after(|m| assert_eq!(enrolment(m, 2, 6).unwrap().roleids, [ROLE_STUDENT])),
        case("enrol_manual_enrol_users/reenrol_without_suspend_reactivates.json")
            .setup(|m| {
                c1(m);
                del2(m);
                m.add_enrolment(2, 7, ROLE_STUDENT, true);
            })
            .after(|m| assert!(!enrolment(m, 2, 7).unwrap().suspended)),
        case("enrol_manual_enrol_users/role_not_assignable.json").setup(|m| {
            c1(m);
            del1(m);
        }),
        case("enrol_manual_enrol_users/role_unknown.json").setup(|m| {
            c1(m);
            del1(m);
        }),
        case("enrol_manual_enrol_users/success.json")
            .setup(|m| {
                c1(m);
                del1(m);
            })
            .after(|m| assert!(enrolment(m, 2, 6).is_some())),
        case("enrol_manual_enrol_users/success_teacher_role.json")
            .setup(|m| {
                c2(m);
                del2(m);
            })
            .after(|m| assert_eq!(enrolment(m, 6, 7).unwrap().roleids, [ROLE_TEACHER])),
        case("enrol_manual_enrol_users/suspend_enrolled.json")
            .setup(c1_with_students)
            .after(|m| assert!(enrolment(m, 2, 7).unwrap().suspended)),
        case("enrol_manual_enrol_users/suspend_enrolled_readback_default.json")
            .setup(c1_with_students)
            .prelude(&["enrol_manual_enrol_users/suspend_enrolled.json"])
            .same(&["/0/id", "/1/id", "/1/roles"]),
        case("enrol_manual_enrol_users/suspend_enrolled_readback_onlyactive.json")
            .setup(c1_with_students)
            .prelude(&["enrol_manual_enrol_users/suspend_enrolled.json"])
            .same(&["/0/id"]),
        case("enrol_manual_enrol_users/timestart_timeend.json")
            .setup(|m| {
                c1(m);
                dupid(m);
            })
            .after(|m| {
                let e = enrolment(m, 2, 10).unwrap();
                assert_eq!((e.timestart, e.timeend), (1803891600, 1806483600));
            }),
        case("enrol_manual_enrol_users/timestart_timeend_readback_onlyactive.json")
            .setup(|m| {
                c1_with_students(m);
                dupid(m);
            })
            .prelude(&["enrol_manual_enrol_users/timestart_timeend.json"])
            .same(&["/0/id", "/1/id"]),
        case("enrol_manual_enrol_users/unknown_course.json").setup(del1),
        case("enrol_manual_enrol_users/unknown_course__debug.json"),
        case("enrol_manual_enrol_users/unknown_user.json")
            .setup(c1)
            .after(|m| assert!(m.enrolments().is_empty(), "rolled back")),
        // --- enrol_manual_unenrol_users ---
        case("enrol_manual_unenrol_users/not_enrolled.json").setup(|m| {
            c2(m);
            del2(m);
        }),
        case("enrol_manual_unenrol_users/success.json")
            .setup(|m| {
                c2(m);
                del2(m);
                m.add_enrolment(6, 7, ROLE_STUDENT, false);
                m.set_grade(6, 7, Some(50.0));
            })
            .after(|m| {
                assert!(m.enrolments().is_empty());
                assert_eq!(m.grade(6, 7), None, "unenrolling deletes the grades");
            }),
        case("enrol_manual_unenrol_users/unknown_course.json").setup(del1),
        case("enrol_manual_unenrol_users/unknown_user.json").setup(c2),
        // --- gradereport_overview_get_course_grades ---
        case("gradereport_overview_get_course_grades/no_userid.json")
            .setup(c1_with_students)
            .same(&[""]),
        case("gradereport_overview_get_course_grades/unknown_user.json"),
        case("gradereport_overview_get_course_grades/user.json")
            .setup(|m| {
                c1_with_students(m);
                m.set_grade(2, 6, Some(72.5));
            })
            .same(&[""]),
        // --- gradereport_user_get_grade_items ---
        case("gradereport_user_get_grade_items/all_users.json")
            .setup(|m| {
                c1_with_students(m);
                m.set_grade(2, 6, Some(72.5));
            })
            .loose_lengths(GRADE_ITEMS)
            .same(&[
                "/usergrades/0/userid",
                "/usergrades/1/useridnumber",
                "/usergrades/1/courseidnumber",
            ]),
        case("gradereport_user_get_grade_items/course_total_only.json")
            .setup(|m| {
                c1_with_students(m);
                m.set_grademax(2, 0.0);
            })
            .same(&[
                "/usergrades/0/useridnumber",
                "/usergrades/0/gradeitems/0/itemtype",
                "/usergrades/0/gradeitems/0/graderaw",
                "/usergrades/0/gradeitems/0/gradeformatted",
                "/usergrades/0/gradeitems/0/grademax",
                "/usergrades/0/gradeitems/0/rangeformatted",
                "/usergrades/0/gradeitems/0/percentageformatted",
            ]),
        case("gradereport_user_get_grade_items/unknown_course.json").setup(del1),
        case("gradereport_user_get_grade_items/user_not_enrolled.json")
            .setup(|m| {
                course(m, 3, "APIT-MIN-52c2f4", "");
                del1(m);
                m.set_grademax(3, 0.0);
            })
            .same(&[
                "/usergrades/0/courseidnumber",
                "/usergrades/0/userid",
                "/usergrades/0/gradeitems/0/graderaw",
            ]),
        case("gradereport_user_get_grade_items/user_without_grade.json")
            .setup(c1_with_students)
            .loose_lengths(GRADE_ITEMS)
            .same(&[
                "/usergrades/0/userid",
                "/usergrades/0/gradeitems/0/graderaw",
            ]),
        case("gradereport_user_get_grade_items/with_grade.json")
            .setup(|m| {
                c1_with_students(m);
                m.set_grade(2, 6, Some(72.5));
            })
            .loose_lengths(GRADE_ITEMS)
            .same(&["/usergrades/0/useridnumber"]),
        // --- rest_envelope: the protocol ---
        case("rest_envelope/error_default_format_xml.json").invalid_token(),
        case("rest_envelope/function_not_in_service.json")
            .setup(|m| m.remove_function("enrol_manual_enrol_users")),
        case("rest_envelope/get_request.json").same(&["/functions", "/userid"]),
        case("rest_envelope/invalid_format.json"),
        case("rest_envelope/invalid_token.json").invalid_token(),
        case("rest_envelope/invalid_token__debug.json").invalid_token(),
        case("rest_envelope/missing_capability.json")
            .setup(|m| m.lack_capability("moodle/course:create")),
        case("rest_envelope/missing_required_parameter.json"),
        case("rest_envelope/missing_required_parameter__debug.json"),
        case("rest_envelope/missing_rest_use_capability.json")
            .setup(|m| m.lack_capability("webservice/rest:use")),
        case("rest_envelope/missing_token.json"),
        case("rest_envelope/post_json_body.json"),
        case("rest_envelope/post_request.json").same(&["/functions"]),
        case("rest_envelope/success_default_format_xml.json"),
        case("rest_envelope/success_json.json").same(&["/functions", "/userissiteadmin"]),
        case("rest_envelope/unknown_wsfunction.json"),
        case("rest_envelope/unknown_wsfunction__debug.json"),
        case("rest_envelope/webservices_disabled.json").setup(|m| m.set_rest_disabled(true)),
        case("rest_envelope/wrong_path_simpleserver.json"),
        case("rest_envelope/wrong_path_site_root.json"),
        case("rest_envelope/wrong_type_parameter.json")
            .setup(c1)
            .same(&[""]),
    ]
}

/// Files in the fixture directory that are not a single replayable call.
const NOT_CALLS: &[&str] = &["README.md", "_timing.json"];

// ----- sending and comparing -----

struct Answer {
    status: u16,
    content_type: String,
    body: String,
}

/// Sends a recorded request with the fake's token (or an unknown one) and category 5.
async fn send(m: &FakeMoodle, req: &Request, invalid_token: bool) -> Answer {
    let is_category_lookup = req
        .form
        .0
        .iter()
        .any(|(k, v)| k == "field" && v == "category");
    let form: Vec<(String, String)> = req
        .form
        .0
        .iter()
        .map(|(k, v)| {
            let v = if k == "wstoken" {
                if invalid_token {
                    UNKNOWN_TOKEN.into()
                } else {
                    m.token()
                }
            } else if v == "2"
                && (k.ends_with("[categoryid]") || (k == "value" && is_category_lookup))
            {
                CATEGORY.to_string()
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect();
    let url = format!("{}{}", m.url(), req.path);
    let client = reqwest::Client::new();
    let request = match (req.method.as_str(), &req.raw_body) {
        ("GET", _) => client.get(url).query(&form),
        (_, Some(raw)) => {
            let mut r = client.post(url).body(raw.clone());
            for (k, v) in &req.headers {
                r = r.header(k, v);
            }
            r
        }
        _ => client.post(url).form(&form),
    };
    let response = request.send().await.expect("fake Moodle answers");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = response.text().await.expect("body");
    Answer {
        status,
        content_type,
        body,
    }
}

fn family(content_type: &str, body_is_empty: bool) -> &'static str {
    if body_is_empty {
        "empty"
    } else if content_type.starts_with("application/json") {
        "json"
    } else if content_type.contains("xml") {
        "xml"
    } else if content_type.starts_with("text/html") {
        "html"
    } else {
        "other"
    }
}

/// Replays one case; the error lists every difference found.
async fn replay(c: &Case) -> Result<(), String> {
    let fixture = load(c.file);
    let m = FakeMoodle::start().await;
    if c.file.contains("__debug") {
        m.set_debug(true);
    }
    for f in &c.setup {
        f(&m);
    }
    for file in &c.prelude {
        let answer = send(&m, &load(file).request, false).await;
        if answer.status != 200 || answer.body.contains("\"exception\"") {
            return Err(format!(
                "prelude {file} failed: {} {}",
                answer.status, answer.body
            ));
        }
    }
    let answer = send(&m, &fixture.request, c.invalid_token).await;
    let expected = &fixture.response;
    let mut problems = Vec::new();
    if answer.status != expected.status {
        problems.push(format!(
            "status {} instead of {}",
            answer.status, expected.status
        ));
    }
    let expected_text = match &expected.body {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let (want, got) = (
        family(&expected.content_type, expected_text.is_empty()),
        family(&answer.content_type, answer.body.is_empty()),
    );
    if want != got {
        problems.push(format!("a {got} answer instead of {want}: {}", answer.body));
    } else if want == "json" {
        match serde_json::from_str::<Value>(&answer.body) {
            Ok(actual) => compare_json(c, &expected.body, &actual, &mut problems),
            Err(e) => problems.push(format!("invalid JSON ({e}): {}", answer.body)),
        }
    } else if want == "xml" {
        compare_xml(&expected_text, &answer.body, &mut problems);
    }
    for f in &c.after {
        if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&m))) {
            let text = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            problems.push(format!("state check failed: {text}"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n    "))
    }
}

fn compare_json(c: &Case, expected: &Value, actual: &Value, problems: &mut Vec<String>) {
    if expected.get("exception").is_some() {
        // Paths in PHP messages were replaced by <moodle-dir> when recording.
        let normalise =
            |v: Option<&Value>| v.map(|v| v.to_string().replace(MOODLE_DIR, "<moodle-dir>"));
        for key in ["exception", "errorcode", "message"] {
            let (want, got) = (normalise(expected.get(key)), normalise(actual.get(key)));
            if want != got {
                problems.push(format!("{key}: {got:?} instead of {want:?}"));
            }
        }
        let (want, got) = (expected.get("debuginfo"), actual.get("debuginfo"));
        if want.is_some() != got.is_some() {
            problems.push(format!(
                "debuginfo {got:?} where the recording has {want:?}"
            ));
        } else if want != got && !c.free_debuginfo {
            problems.push(format!("debuginfo {got:?} instead of {want:?}"));
        }
    } else {
        if actual.get("exception").is_some() {
            problems.push(format!("an error instead of a success: {actual}"));
            return;
        }
        if let Err(e) = same_shape(expected, actual, "", c.loose_lengths.is_some()) {
            problems.push(e);
        }
    }
    for pointer in &c.same {
        let (want, got) = (expected.pointer(pointer), actual.pointer(pointer));
        if want.is_none() || want != got {
            problems.push(format!("at {pointer:?}: {got:?} instead of {want:?}"));
        }
    }
}

/// Same keys in every object; list items within the union of the recorded items' keys and
/// with at least their intersection; scalars of the same JSON type (null fits anything).
fn same_shape(
    expected: &Value,
    actual: &Value,
    path: &str,
    loose_lengths: bool,
) -> Result<(), String> {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            let (ek, ak): (BTreeSet<&String>, BTreeSet<&String>) =
                (e.keys().collect(), a.keys().collect());
            if ek != ak {
                return Err(format!(
                    "{path}: keys differ; missing {:?}, extra {:?}",
                    ek.difference(&ak).collect::<Vec<_>>(),
                    ak.difference(&ek).collect::<Vec<_>>()
                ));
            }
            for (k, v) in e {
                same_shape(v, &a[k], &format!("{path}/{k}"), loose_lengths)?;
            }
            Ok(())
        }
        (Value::Array(e), Value::Array(a)) => {
            if e.is_empty() != a.is_empty() || (!loose_lengths && e.len() != a.len()) {
                return Err(format!("{path}: {} items instead of {}", a.len(), e.len()));
            }
            if e.iter().all(Value::is_object) && !e.is_empty() {
                let union: BTreeSet<String> = e.iter().flat_map(keys).collect();
                let common = e
                    .iter()
                    .map(keys)
                    .reduce(|x, y| &x & &y)
                    .unwrap_or_default();
                for (i, item) in a.iter().enumerate() {
                    let item_keys = keys(item);
                    if !item_keys.is_subset(&union) || !common.is_subset(&item_keys) {
                        return Err(format!(
                            "{path}/{i}: keys {item_keys:?} are not between {common:?} and {union:?}"
                        ));
                    }
                    for k in &item_keys {
                        // The recorded item at the same index if it has the key (mixed-type
                        // lists such as courseformatoptions), else the first that has it.
                        let model = e
                            .get(i)
                            .and_then(|v| v.get(k))
                            .or_else(|| e.iter().find_map(|v| v.get(k)))
                            .expect("key from the union");
                        same_shape(model, &item[k], &format!("{path}/{i}/{k}"), loose_lengths)?;
                    }
                }
            } else if let Some(model) = e.first() {
                for (i, item) in a.iter().enumerate() {
                    same_shape(model, item, &format!("{path}/{i}"), loose_lengths)?;
                }
            }
            Ok(())
        }
        (Value::Null, _) | (_, Value::Null) => Ok(()),
        (Value::Bool(_), Value::Bool(_))
        | (Value::Number(_), Value::Number(_))
        | (Value::String(_), Value::String(_)) => Ok(()),
        _ => Err(format!(
            "{path}: {actual} where the recording has {expected}"
        )),
    }
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

/// Error envelopes must be identical; success documents must have the same key names.
fn compare_xml(expected: &str, actual: &str, problems: &mut Vec<String>) {
    if expected.contains("<EXCEPTION") {
        if expected != actual {
            problems.push(format!("XML error {actual:?} instead of {expected:?}"));
        }
        return;
    }
    let keys = |xml: &str| -> BTreeSet<String> {
        xml.split("<KEY name=\"")
            .skip(1)
            .filter_map(|s| s.split('"').next())
            .map(String::from)
            .collect()
    };
    if !actual.starts_with("<?xml")
        || !actual.contains("<RESPONSE>")
        || keys(expected) != keys(actual)
    {
        let (want, got) = (keys(expected), keys(actual));
        problems.push(format!(
            "XML document differs: missing keys {:?}, extra {:?}",
            want.difference(&got).collect::<Vec<_>>(),
            got.difference(&want).collect::<Vec<_>>()
        ));
    }
}

#[tokio::test]
async fn every_recorded_call_is_reproduced() {
    let cases = cases();
    let mut failures = Vec::new();
    for c in &cases {
        if let Err(e) = replay(c).await {
            failures.push(format!("{}:\n    {e}", c.file));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} fixtures differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn every_fixture_file_has_a_case() {
    let listed: BTreeSet<&str> = cases().iter().map(|c| c.file).collect();
    assert_eq!(listed.len(), cases().len(), "a fixture is listed twice");
    let mut on_disk = BTreeSet::new();
    for dir in std::fs::read_dir(DIR).expect("fixture dir") {
        let dir = dir.expect("entry").path();
        if dir.is_dir() {
            for file in std::fs::read_dir(&dir).expect("fixture subdir") {
                let path = file.expect("entry").path();
                let rel = path
                    .strip_prefix(DIR)
                    .expect("under DIR")
                    .to_string_lossy()
                    .into_owned();
                on_disk.insert(rel);
            }
        } else {
            let name = dir
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            assert!(NOT_CALLS.contains(&name.as_str()), "unexpected file {name}");
        }
    }
    let listed: BTreeSet<String> = listed.into_iter().map(String::from).collect();
    assert_eq!(
        on_disk.difference(&listed).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "fixtures without a replay case"
    );
    assert_eq!(
        listed.difference(&on_disk).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "replay cases without a fixture"
    );
}
