//! Retry classification and exponential backoff with jitter (§4).

use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

/// How a failing step is retried. Defaults: initial 1 s, factor 2, max 60 s, 3 retries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    pub initial: Duration,
    pub factor: f64,
    pub max_delay: Duration,
    /// Retries after the first attempt; 0 disables retrying.
    pub max_retries: u32,
    /// Fraction of the delay that is randomised (±), so retrying runs spread out.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            factor: 2.0,
            max_delay: Duration::from_secs(60),
            max_retries: 3,
            jitter: 0.2,
        }
    }
}

impl RetryPolicy {
    /// Delay before the attempt that follows failed attempt number `attempt` (1-based).
    /// A server's `Retry-After` wins when it asks for longer.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self.factor.powi(attempt.saturating_sub(1).min(64) as i32);
        let base = (self.initial.as_secs_f64() * exp).min(self.max_delay.as_secs_f64());
        let jitter = if self.jitter > 0.0 {
            rand::rng().random_range(-self.jitter..=self.jitter)
        } else {
            0.0
        };
        let delay = Duration::from_secs_f64((base * (1.0 + jitter)).max(0.0)).min(self.max_delay);
        match retry_after {
            Some(after) if after > delay => after,
            _ => delay,
        }
    }
}

/// Why a step attempt failed, classified where the failure happens.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum StepFailure {
    /// Timeouts, connection errors, 5xx: worth another attempt.
    #[error("{0}")]
    Retryable(String),
    /// 429 and friends: retry, but not before `retry_after`.
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after: Option<Duration>,
    },
    /// Other 4xx, validation errors: retrying cannot help.
    #[error("{0}")]
    Permanent(String),
    /// What the step needs is known to be down (an open circuit breaker): wait
    /// `retry_after`, then try again, without spending one of the step's attempts.
    #[error("{message}")]
    Unavailable {
        message: String,
        retry_after: Duration,
    },
}

impl StepFailure {
    pub fn retryable(message: impl Into<String>) -> Self {
        Self::Retryable(message.into())
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        Self::Permanent(message.into())
    }

    pub fn is_retryable(&self) -> bool {
        !matches!(self, Self::Permanent(_))
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } => *retry_after,
            Self::Unavailable { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// Waits without counting as an attempt.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_jitter() -> RetryPolicy {
        RetryPolicy {
            jitter: 0.0,
            ..RetryPolicy::default()
        }
    }

    #[test]
    fn backoff_doubles_from_one_second_up_to_the_cap() {
        let p = no_jitter();
        let delays: Vec<u64> = (1..=8).map(|a| p.delay(a, None).as_secs()).collect();
        assert_eq!(delays, vec![1, 2, 4, 8, 16, 32, 60, 60]);
    }

    #[test]
    fn jitter_stays_within_its_band() {
        let p = RetryPolicy::default();
        for _ in 0..200 {
            let d = p.delay(3, None).as_secs_f64();
            assert!((3.2..=4.8).contains(&d), "{d}");
        }
    }

    #[test]
    fn retry_after_is_honoured_when_longer() {
        let p = no_jitter();
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert_eq!(
            p.delay(3, Some(Duration::from_millis(10))),
            Duration::from_secs(4)
        );
    }

    #[test]
    fn classification() {
        assert!(StepFailure::retryable("timeout").is_retryable());
        assert!(!StepFailure::permanent("400 bad request").is_retryable());
        let limited = StepFailure::RateLimited {
            message: "429".into(),
            retry_after: Some(Duration::from_secs(3)),
        };
        assert!(limited.is_retryable());
        assert_eq!(limited.retry_after(), Some(Duration::from_secs(3)));
    }
}
