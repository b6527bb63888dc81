//! The retry schedule, in one place: exponential backoff with jitter, slow
//! retries for configuration problems, `Retry-After` within bounds, and the
//! `max_age` after which a job is dead.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;

use crate::config::RetryConfig;

/// Slow retries (configuration problems) wait at least this long, capped by `max_backoff`.
const SLOW_FLOOR: Duration = Duration::from_secs(5 * 60);

/// How urgently a failure should be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Transient trouble: back off exponentially from `initial_backoff`.
    Normal,
    /// Someone must change a setting: do not hammer the site.
    Slow,
}

/// What to do after a retryable failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    RetryAt(DateTime<Utc>),
    /// Retrying went on past `max_age`.
    GiveUp,
}

/// The retry schedule of the whole service.
#[derive(Debug, Clone)]
pub struct Policy {
    config: RetryConfig,
    /// Jitter spreads retries of many jobs that failed together; tests switch it off.
    jitter: bool,
}

impl Policy {
    /// The schedule from `[retry]`, with jitter.
    pub fn new(config: RetryConfig) -> Self {
        Policy {
            config,
            jitter: true,
        }
    }

    /// The same schedule without jitter (deterministic, for tests).
    pub fn without_jitter(config: RetryConfig) -> Self {
        Policy {
            config,
            jitter: false,
        }
    }

    /// The delay before attempt `attempts + 1`, after `attempts` failures (1-based).
    pub fn delay(&self, attempts: u32, pace: Pace, retry_after: Option<Duration>) -> Duration {
        let RetryConfig {
            initial_backoff,
            max_backoff,
            ..
        } = self.config;
        let exp = attempts.saturating_sub(1).min(30);
        let mut delay = initial_backoff.saturating_mul(1u32 << exp).min(max_backoff);
        if pace == Pace::Slow {
            delay = delay.max(SLOW_FLOOR.min(max_backoff));
        }
        if self.jitter {
            // "Equal jitter": keep at least half the delay so backoff still grows.
            let factor = rand::rng().random_range(0.5..=1.0);
            delay = delay.mul_f64(factor);
        }
        if let Some(asked) = retry_after {
            // Honour the server's request, but never beyond our own ceiling.
            delay = delay.max(asked.min(max_backoff));
        }
        delay
    }

    /// When to try again, or give up because the retry window (`max_age`
    /// counted from `since`) is over.
    pub fn next(
        &self,
        attempts: u32,
        pace: Pace,
        retry_after: Option<Duration>,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Next {
        let max_age =
            chrono::Duration::from_std(self.config.max_age).unwrap_or(chrono::Duration::MAX);
        if now.signed_duration_since(since) >= max_age {
            return Next::GiveUp;
        }
        let delay = self.delay(attempts, pace, retry_after);
        let delay = chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
        Next::RetryAt(now + delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy::without_jitter(RetryConfig {
            initial_backoff: Duration::from_secs(10),
            max_backoff: Duration::from_secs(3600),
            max_age: Duration::from_secs(24 * 3600),
        })
    }

    #[test]
    fn backoff_doubles_up_to_the_ceiling() {
        let p = policy();
        let secs: Vec<u64> = (1..=11)
            .map(|n| p.delay(n, Pace::Normal, None).as_secs())
            .collect();
        assert_eq!(
            secs,
            [10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600]
        );
        assert_eq!(p.delay(400, Pace::Normal, None).as_secs(), 3600);
    }

    #[test]
    fn configuration_problems_are_retried_slowly() {
        let p = policy();
        assert_eq!(p.delay(1, Pace::Slow, None).as_secs(), 300);
        assert_eq!(p.delay(8, Pace::Slow, None).as_secs(), 1280);
    }

    #[test]
    fn retry_after_is_honoured_within_bounds() {
        let p = policy();
        assert_eq!(
            p.delay(1, Pace::Normal, Some(Duration::from_secs(300)))
                .as_secs(),
            300
        );
        assert_eq!(
            p.delay(1, Pace::Normal, Some(Duration::from_secs(99_999)))
                .as_secs(),
            3600
        );
        assert_eq!(
            p.delay(5, Pace::Normal, Some(Duration::from_secs(1)))
                .as_secs(),
            160
        );
    }

    #[test]
    fn jitter_keeps_between_half_and_all_of_the_delay() {
        let p = Policy::new(policy().config);
        for _ in 0..200 {
            let d = p.delay(3, Pace::Normal, None).as_secs_f64();
            assert!((20.0..=40.0).contains(&d), "{d}");
        }
    }

    #[test]
    fn gives_up_after_max_age() {
        let p = policy();
        let since = Utc::now();
        let now = since + chrono::Duration::hours(23);
        assert_eq!(
            p.next(3, Pace::Normal, None, since, now),
            Next::RetryAt(now + chrono::Duration::seconds(40))
        );
        let later = since + chrono::Duration::hours(24);
        assert_eq!(p.next(3, Pace::Normal, None, since, later), Next::GiveUp);
    }
}
