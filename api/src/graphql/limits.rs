//! Per-key rate limiting of mutations (and of login attempts per username).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use async_graphql::ErrorExtensions;

use super::error::BAD_REQUEST;

/// A token bucket per key: `per_minute` tokens, refilled continuously.
pub struct RateLimiter {
    per_minute: u32,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute: per_minute.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `key`, or says how long until one is available.
    pub fn check(&self, key: &str) -> async_graphql::Result<()> {
        let capacity = f64::from(self.per_minute);
        let per_second = capacity / 60.0;
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        // Forget idle keys now and then so the map stays small.
        if buckets.len() > 10_000 {
            buckets.retain(|_, (_, at)| now.duration_since(*at).as_secs() < 120);
        }
        let (tokens, at) = buckets.entry(key.to_owned()).or_insert((capacity, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * per_second).min(capacity);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            return Ok(());
        }
        let wait = ((1.0 - *tokens) / per_second).ceil() as u64;
        let per_minute = self.per_minute;
        Err(async_graphql::Error::new(format!(
            "rate limit exceeded: {per_minute} mutations per minute per key; retry in {wait} s"
        ))
        .extend_with(|_, e| {
            e.set("code", BAD_REQUEST);
            e.set("retryAfterSeconds", wait);
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_the_budget_then_refuses_with_a_retry_hint() {
        let limiter = RateLimiter::new(3);
        for _ in 0..3 {
            limiter.check("key-a").unwrap();
        }
        let err = limiter.check("key-a").unwrap_err();
        assert!(
            err.message.contains("3 mutations per minute"),
            "{}",
            err.message
        );
        limiter.check("key-b").expect("keys have separate budgets");
    }
}
