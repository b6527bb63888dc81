//! `apit-moodle-sync jobs …`: the admin API from the command line, so an
//! operator can diagnose "one delegate is not sending" on a remote deployment.

use std::fmt::Write as _;

use serde_json::Value;

use crate::secret::Secret;

/// Talks to a running service's admin API.
pub struct AdminClient {
    http: reqwest::Client,
    base: String,
    token: Secret,
}

/// A failed admin call, printed as one line.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("cannot reach {0}: is the service running? (--url)")]
    Unreachable(String),
    #[error("{status}: {detail}")]
    Refused { status: u16, detail: String },
    #[error("unexpected answer from the service: {0}")]
    Unexpected(String),
}

/// Filters of `jobs list` and bulk `jobs retry`.
#[derive(Debug, Default, Clone)]
pub struct ListFilter {
    pub tenant: Option<String>,
    pub status: Option<String>,
    pub kind: Option<String>,
    /// An accessplanit booking, user or course ID.
    pub reference: Option<String>,
    pub limit: Option<u32>,
}

impl AdminClient {
    /// A client for the service at `base` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base: &str, token: Secret) -> Self {
        AdminClient {
            http: reqwest::Client::new(),
            base: base.trim_end_matches('/').to_string(),
            token,
        }
    }

    async fn call(&self, request: reqwest::RequestBuilder) -> Result<Value, AdminError> {
        let response = request
            .bearer_auth(self.token.expose())
            .send()
            .await
            .map_err(|_| AdminError::Unreachable(self.base.clone()))?;
        let status = response.status().as_u16();
        let body: Value = response
            .json()
            .await
            .map_err(|e| AdminError::Unexpected(e.to_string()))?;
        if (200..300).contains(&status) {
            Ok(body)
        } else {
            let detail = body["detail"]
                .as_str()
                .unwrap_or("request refused")
                .to_string();
            Err(AdminError::Refused { status, detail })
        }
    }

    /// One page of jobs (newest first) and the cursor of the next page.
    async fn page(
        &self,
        filter: &ListFilter,
        cursor: Option<&str>,
    ) -> Result<(Vec<Value>, Option<String>), AdminError> {
        let mut query: Vec<(&str, String)> = Vec::new();
        let fields = [
            ("tenant", &filter.tenant),
            ("status", &filter.status),
            ("kind", &filter.kind),
            ("ref", &filter.reference),
        ];
        for (key, value) in fields {
            if let Some(v) = value {
                query.push((key, v.clone()));
            }
        }
        query.push(("limit", filter.limit.unwrap_or(500).to_string()));
        if let Some(c) = cursor {
            query.push(("cursor", c.to_string()));
        }
        let body = self
            .call(
                self.http
                    .get(format!("{}/v1/jobs", self.base))
                    .query(&query),
            )
            .await?;
        let jobs = body["jobs"].as_array().cloned().unwrap_or_default();
        let next = body["next_cursor"].as_str().map(str::to_string);
        Ok((jobs, next))
    }

    /// Jobs matching `filter`: one page of `limit`, or every page without a limit.
    pub async fn list(&self, filter: &ListFilter) -> Result<Vec<Value>, AdminError> {
        let (mut jobs, mut next) = self.page(filter, None).await?;
        while filter.limit.is_none() {
            let Some(cursor) = next else { break };
            let (more, after) = self.page(filter, Some(&cursor)).await?;
            jobs.extend(more);
            next = after;
        }
        Ok(jobs)
    }

    /// One job with its event, attempts and write-backs.
    pub async fn show(&self, id: &str) -> Result<Value, AdminError> {
        self.call(self.http.get(format!("{}/v1/jobs/{id}", self.base)))
            .await
    }

    /// Re-queues one failed or dead job.
    pub async fn retry(&self, id: &str) -> Result<Value, AdminError> {
        self.call(self.http.post(format!("{}/v1/jobs/{id}/retry", self.base)))
            .await
    }
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}

/// One line, at most `max` characters.
fn short(s: &str, max: usize) -> String {
    let line = s.lines().next().unwrap_or("");
    if line.chars().count() <= max {
        line.to_string()
    } else {
        let cut: String = line.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

/// The `jobs list` table.
pub fn render_list(jobs: &[Value]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<36}  {:<10}  {:<19}  {:<9}  {:>3}  {:<20}  LAST ERROR / SKIP REASON",
        "JOB ID", "TENANT", "KIND", "STATUS", "TRY", "UPDATED"
    );
    for j in jobs {
        let note = j["last_error"]
            .as_str()
            .or(j["skip_reason"].as_str())
            .unwrap_or("");
        let _ = writeln!(
            out,
            "{:<36}  {:<10}  {:<19}  {:<9}  {:>3}  {:<20}  {}",
            text(j, "job_id"),
            text(j, "tenant"),
            text(j, "kind"),
            text(j, "status"),
            j["attempts"].as_u64().unwrap_or(0),
            short(text(j, "updated_at"), 20),
            short(note, 80)
        );
    }
    let _ = writeln!(out, "{} job(s)", jobs.len());
    out
}

/// The `jobs show` report: what happened, every attempt and its Moodle calls.
pub fn render_show(job: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "job {}  {}  tenant {}",
        text(job, "job_id"),
        text(job, "kind"),
        text(job, "tenant")
    );
    let _ = writeln!(
        out,
        "status: {}  attempts: {}  created: {}  updated: {}",
        text(job, "status"),
        job["attempts"].as_u64().unwrap_or(0),
        text(job, "created_at"),
        text(job, "updated_at")
    );
    if let Some(at) = job["next_attempt_at"].as_str() {
        let _ = writeln!(out, "next attempt: {at}");
    }
    if let Some(reason) = job["skip_reason"].as_str() {
        let _ = writeln!(out, "skipped: {reason}");
    }
    if let Some(error) = job["last_error"].as_str() {
        let _ = writeln!(out, "error: {error}");
    }
    if let Some(ids) = job["moodle"].as_object().filter(|m| !m.is_empty()) {
        let ids: Vec<String> = ids.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(out, "moodle: {}", ids.join(" "));
    }
    if let Some(steps) = job["steps"].as_array().filter(|s| !s.is_empty()) {
        let _ = writeln!(out, "steps:");
        for s in steps {
            let _ = writeln!(out, "  - {}", s.as_str().unwrap_or(""));
        }
    }
    for a in job["history"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "attempt {}  {} → {}{}",
            a["number"],
            text(a, "started_at"),
            a["finished_at"].as_str().unwrap_or("(unfinished)"),
            a["result"]
                .as_str()
                .map(|r| format!("  → {r}"))
                .unwrap_or_default()
        );
        for c in a["calls"].as_array().into_iter().flatten() {
            let _ = writeln!(
                out,
                "    {:<45} {:<24} {} ms",
                text(c, "function"),
                text(c, "outcome"),
                c["ms"]
            );
        }
        if let Some(e) = a["error"].as_str() {
            let _ = writeln!(out, "    error: {e}");
        }
    }
    for w in job["writebacks"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "write-back {} {} → {}: {}{}",
            text(w, "entity"),
            text(w, "accessplanit_id"),
            w["moodle_id"],
            text(w, "status"),
            w["last_error"]
                .as_str()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        );
    }
    let _ = writeln!(
        out,
        "event: {}",
        serde_json::to_string(&job["event"]).unwrap_or_default()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_list_shows_the_reason_of_each_job() {
        let jobs = vec![json!({
            "job_id": "019ab3f0-0000-7000-8000-000000000001", "tenant": "acme",
            "kind": "booking-created", "status": "failed", "attempts": 1,
            "updated_at": "2026-11-23T10:00:00.000Z",
            "last_error": "Moodle course 99999 does not exist\nsecond line"
        })];
        let out = render_list(&jobs);
        let row: Vec<&str> = out.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(
            &row[1..5],
            ["acme", "booking-created", "failed", "1"],
            "{out}"
        );
        assert!(out.contains("Moodle course 99999 does not exist"));
        assert!(!out.contains("second line"));
        assert!(out.ends_with("1 job(s)\n"));
    }

    #[test]
    fn short_cuts_long_lines() {
        assert_eq!(short("abcdef", 4), "abc…");
        assert_eq!(short("abc", 4), "abc");
    }
}
