//! The preflight's report: one row per check, as the ✓/✗ table the CLI prints and as
//! the JSON of `check --json` and `GET /v1/tenants/{tenant}/check`; and how a URL is
//! printed in it.

use std::fmt::{self, Write as _};

use serde::Serialize;

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The check passed.
    Pass,
    /// The check failed; the row carries the fix.
    Fail,
    /// Not tried, because a check it depends on failed.
    NotRun,
    /// Nothing to check (e.g. write-back switched off).
    Info,
}

impl Status {
    /// The table's mark.
    pub fn mark(self) -> &'static str {
        match self {
            Status::Pass => "✓",
            Status::Fail => "✗",
            Status::NotRun => "-",
            Status::Info => "i",
        }
    }
}

/// One row of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckRow {
    /// A stable key: `site`, `token`, `site_url`, `functions`, `category`, `role`,
    /// `users_idnumber`, `users_email`, `callback`, `callback_fields`.
    pub id: &'static str,
    /// The row's label in the table.
    pub name: String,
    /// Whether it passed.
    pub status: Status,
    /// What was found, in one line.
    pub detail: String,
    /// For a failure: what to change, in the Moodle (or receiver) administrator's words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// Every check of one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    /// The tenant's name.
    pub tenant: String,
    /// Its `moodle_url`.
    pub moodle_url: String,
    /// True when no row failed.
    pub ok: bool,
    /// In order: Moodle site, token, site address, functions, category, role, users,
    /// then the write-back.
    pub rows: Vec<CheckRow>,
}

/// The reports of every tenant checked (the CLI's `--json` answer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckSummary {
    /// True when every tenant's report is ok.
    pub ok: bool,
    /// One report per tenant, by name.
    pub tenants: Vec<CheckReport>,
}

/// A row without a fix.
pub(super) fn row(
    id: &'static str,
    name: impl Into<String>,
    status: Status,
    detail: String,
) -> CheckRow {
    CheckRow {
        id,
        name: name.into(),
        status,
        detail,
        fix: None,
    }
}

/// A passed check.
pub(super) fn pass(id: &'static str, name: impl Into<String>, detail: String) -> CheckRow {
    row(id, name, Status::Pass, detail)
}

/// A failed check, with what to change.
pub(super) fn fail(
    id: &'static str,
    name: impl Into<String>,
    detail: String,
    fix: String,
) -> CheckRow {
    CheckRow {
        fix: Some(fix),
        ..row(id, name, Status::Fail, detail)
    }
}

impl fmt::Display for CheckReport {
    /// The plain-text table: a heading, one row per check (mark, name, detail) and the
    /// fix under each failure, then a one-line verdict.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "tenant {} ({})", self.tenant, self.moodle_url)?;
        let width = self
            .rows
            .iter()
            .map(|r| r.name.chars().count())
            .max()
            .unwrap_or(0);
        for r in &self.rows {
            let pad = width - r.name.chars().count();
            writeln!(
                f,
                "  {} {}{}  {}",
                r.status.mark(),
                r.name,
                " ".repeat(pad),
                r.detail
            )?;
            if let Some(fix) = &r.fix {
                writeln!(f, "    {}  fix: {fix}", " ".repeat(width))?;
            }
        }
        let failed = self
            .rows
            .iter()
            .filter(|r| r.status == Status::Fail)
            .count();
        let mut verdict = String::new();
        if failed == 0 {
            write!(verdict, "all checks passed")?;
        } else {
            let checks = if failed == 1 { "check" } else { "checks" };
            write!(verdict, "{failed} {checks} failed")?;
        }
        writeln!(f, "  {verdict}")
    }
}

impl fmt::Display for CheckSummary {
    /// Every tenant's table, separated by a blank line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, report) in self.tenants.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{report}")?;
        }
        Ok(())
    }
}

/// `scheme://host[:port]` of a URL: what can be printed without its path and query,
/// which may carry secrets.
pub(super) fn origin(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => u.origin().ascii_serialization(),
        Err(_) => "the configured URL".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_urls_lose_path_and_query() {
        assert_eq!(
            origin("https://hooks.example.org:8443/in?token=secret"),
            "https://hooks.example.org:8443"
        );
        assert_eq!(origin("not a url"), "the configured URL");
    }

    #[test]
    fn the_table_shows_every_fix_under_its_row() {
        let report = CheckReport {
            tenant: "acme".into(),
            moodle_url: "https://m.example.org".into(),
            ok: false,
            rows: vec![
                pass("site", "Moodle site", "answers".into()),
                fail("token", "token", "refused".into(), "make a new one".into()),
                row(
                    "site_url",
                    "site address",
                    Status::NotRun,
                    "not run: x".into(),
                ),
            ],
        };
        assert_eq!(
            report.to_string(),
            "tenant acme (https://m.example.org)\n  \
             ✓ Moodle site   answers\n  \
             ✗ token         refused\n                  fix: make a new one\n  \
             - site address  not run: x\n  \
             1 check failed\n"
        );
    }
}
