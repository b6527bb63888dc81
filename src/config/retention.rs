//! `[retention]`: how long finished history is kept before the background
//! pruner removes it (extension; SPEC is silent on retention).
//!
//! What is never pruned, whatever these say: queued and running jobs, the
//! newest job of each entity (SPEC §2's body-hash rule answers from it), a job
//! an idempotency key still points at while `idempotency` has not passed (the
//! key is deleted together with its job, never before), the newest write-back
//! of each target (the outbox's de-duplication reads it), pending write-backs,
//! links and enrolments.

use std::time::Duration;

use serde::Deserialize;

const DAY: Duration = Duration::from_secs(24 * 3600);

/// The shortest retention accepted: a finished job must outlive any `?wait`
/// and any operator looking at what just happened.
const MIN_KEEP: Duration = Duration::from_secs(3600);

/// `[retention]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Succeeded and skipped jobs, with their attempts and event bodies, are
    /// kept this long after they finished.
    #[serde(with = "humantime_serde")]
    pub succeeded: Duration,
    /// Failed and dead jobs (someone may still fix the data and retry them),
    /// and dead write-backs.
    #[serde(with = "humantime_serde")]
    pub failed: Duration,
    /// Delivered and superseded write-backs.
    #[serde(with = "humantime_serde")]
    pub writebacks: Duration,
    /// A job an `Idempotency-Key` (or `event_id`) points at is kept at least
    /// this long after it finished, so a re-send with that key is answered by
    /// it. At least `succeeded`: a key answers as long as its job is kept.
    #[serde(with = "humantime_serde")]
    pub idempotency: Duration,
    /// How often a pruning pass starts; `0s` switches pruning off.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Jobs (or write-backs) looked at per delete transaction: each
    /// transaction stays short, so intake and claiming never wait long.
    pub batch: u32,
    /// The pause between two delete transactions of a pass.
    #[serde(with = "humantime_serde")]
    pub pause: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            succeeded: 30 * DAY,
            failed: 90 * DAY,
            writebacks: 30 * DAY,
            idempotency: 30 * DAY,
            interval: Duration::from_secs(600),
            batch: 200,
            pause: Duration::from_millis(20),
        }
    }
}

impl RetentionConfig {
    /// True when the pruner runs at all.
    pub fn enabled(&self) -> bool {
        !self.interval.is_zero()
    }

    pub(super) fn validate(&self, problems: &mut Vec<String>) {
        for (key, value) in [
            ("succeeded", self.succeeded),
            ("failed", self.failed),
            ("writebacks", self.writebacks),
            ("idempotency", self.idempotency),
        ] {
            if value < MIN_KEEP {
                problems.push(format!("retention.{key}: must be at least 1h"));
            }
        }
        if self.idempotency < self.succeeded {
            problems.push(
                "retention.idempotency: must be at least retention.succeeded (an idempotency \
                 key is kept as long as its job, so a shorter value would change nothing)"
                    .into(),
            );
        }
        if !(1..=1000).contains(&self.batch) {
            problems.push("retention.batch: must be between 1 and 1000".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;

    const TENANTLESS: &str = "admin_token = \"a\"\n";

    #[test]
    fn defaults_keep_a_month_of_history_and_a_quarter_of_failures() {
        let c = Config::from_toml(TENANTLESS).unwrap();
        let r = &c.retention;
        assert_eq!(r.succeeded.as_secs(), 30 * 86400);
        assert_eq!(r.failed.as_secs(), 90 * 86400);
        assert_eq!(r.writebacks.as_secs(), 30 * 86400);
        assert_eq!(r.idempotency, r.succeeded);
        assert!(r.enabled());
        assert_eq!(r.batch, 200);
    }

    #[test]
    fn bad_values_are_named() {
        let err = Config::from_toml(&format!(
            "{TENANTLESS}[retention]\nsucceeded = \"10m\"\nidempotency = \"5m\"\nbatch = 0\n"
        ))
        .unwrap_err()
        .to_string();
        for needle in [
            "retention.succeeded: must be at least 1h",
            "retention.idempotency: must be at least 1h",
            "retention.idempotency: must be at least retention.succeeded",
            "retention.batch:",
        ] {
            assert!(err.contains(needle), "{needle} missing in {err}");
        }
    }

    #[test]
    fn zero_interval_switches_pruning_off() {
        let c =
            Config::from_toml(&format!("{TENANTLESS}[retention]\ninterval = \"0s\"\n")).unwrap();
        assert!(!c.retention.enabled());
    }
}
