//! The preflight (`apit-moodle-sync check`, `GET /v1/tenants/{tenant}/check`): asks each
//! tenant's Moodle and write-back target whether the service can work there, without
//! changing anything, and reports one row per check with the fix for each failure.
//!
//! `report` is the report and its table; `moodle` probes the site (its doc says how
//! each probe proves what Moodle offers no read for), `callback` the write-back target.

mod callback;
mod moodle;
mod report;

pub use report::{CheckReport, CheckRow, CheckSummary, Status};

use crate::config::{Config, TenantConfig};
use crate::moodle::Moodle;
use crate::tenant::Tenants;
use report::fail;

/// Why the CLI could not check at all.
#[derive(Debug, thiserror::Error)]
pub enum CheckSetupError {
    /// `--tenant` names no configured tenant.
    #[error("no tenant {0} in the configuration (configured: {1})")]
    UnknownTenant(String, String),
    /// The configuration has no `[tenants.*]`.
    #[error("no [tenants.*] configured: nothing to check")]
    NoTenants,
    /// A tenant's Moodle client cannot be built.
    #[error(transparent)]
    Client(#[from] crate::moodle::ClientBuildError),
}

/// Checks every tenant of `config` (or only `only`), all at once.
pub async fn check_config(
    config: &Config,
    only: Option<&str>,
) -> Result<CheckSummary, CheckSetupError> {
    if config.tenants.is_empty() {
        return Err(CheckSetupError::NoTenants);
    }
    if let Some(name) = only {
        if !config.tenants.contains_key(name) {
            let known: Vec<&str> = config.tenants.keys().map(String::as_str).collect();
            return Err(CheckSetupError::UnknownTenant(
                name.to_owned(),
                known.join(", "),
            ));
        }
    }
    let tenants = Tenants::from_config(config)?;
    // One task per tenant, so slow or unreachable sites are waited for side by side.
    let handles: Vec<_> = tenants
        .iter()
        .filter(|t| only.is_none_or(|name| t.name == name))
        .cloned()
        .map(|tenant| {
            let name = tenant.name.clone();
            let moodle_url = tenant.config.moodle_url.clone();
            let handle = tokio::spawn(async move {
                let session = tenant.moodle.session();
                check_tenant(&tenant.name, &tenant.config, &session).await
            });
            (name, moodle_url, handle)
        })
        .collect();
    let mut reports = Vec::new();
    for (name, moodle_url, handle) in handles {
        let report = handle.await.unwrap_or_else(|e| {
            // A bug, not a finding: reported as a failed row rather than a crash.
            let row = fail(
                "site",
                moodle::SITE,
                format!("the check itself failed: {e}"),
                "report this to the maintainers of apit-moodle-sync".into(),
            );
            CheckReport {
                tenant: name,
                moodle_url,
                ok: false,
                rows: vec![row],
            }
        });
        reports.push(report);
    }
    Ok(CheckSummary {
        ok: reports.iter().all(|r| r.ok),
        tenants: reports,
    })
}

/// Runs every check of one tenant against its Moodle and its write-back target.
pub async fn check_tenant(name: &str, config: &TenantConfig, moodle: &dyn Moodle) -> CheckReport {
    // The write-back does not depend on Moodle: both run at once.
    let (mut rows, callback) = tokio::join!(moodle::rows(config, moodle), callback::rows(config));
    rows.extend(callback);
    CheckReport {
        tenant: name.to_owned(),
        moodle_url: config.moodle_url.clone(),
        ok: rows.iter().all(|r| r.status != Status::Fail),
        rows,
    }
}
