//! Token-bucket rate limits (per API key, per username, per client address).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use async_graphql::ErrorExtensions;

use super::error::BAD_REQUEST;

/// A token bucket per key: `per_minute` tokens, refilled continuously.
pub struct RateLimiter {
    per_minute: u32,
    /// What one token buys, for the error message ("mutations per minute per API key").
    what: &'static str,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    pub fn new(per_minute: u32, what: &'static str) -> Self {
        Self {
            per_minute: per_minute.max(1),
            what,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes `n` tokens for `key`, or takes none and says how long until there are
    /// enough. Asking for more than the whole budget is refused outright.
    pub fn check(&self, key: &str, n: u32) -> async_graphql::Result<()> {
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
        let need = f64::from(n.max(1));
        if *tokens >= need {
            *tokens -= need;
            return Ok(());
        }
        let (per_minute, what) = (self.per_minute, self.what);
        if need > capacity {
            return Err(async_graphql::Error::new(format!(
                "rate limit: this request needs {n} tokens, more than the whole budget of {per_minute} {what}"
            ))
            .extend_with(|_, e| e.set("code", BAD_REQUEST)));
        }
        let wait = ((need - *tokens) / per_second).ceil() as u64;
        Err(async_graphql::Error::new(format!(
            "rate limit exceeded: {per_minute} {what}; retry in {wait} s"
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
        let limiter = RateLimiter::new(3, "mutations per minute per API key");
        for _ in 0..3 {
            limiter.check("key-a", 1).unwrap();
        }
        let err = limiter.check("key-a", 1).unwrap_err();
        assert!(
            err.message.contains("3 mutations per minute"),
            "{}",
            err.message
        );
        limiter
            .check("key-b", 1)
            .expect("keys have separate budgets");
        let err = limiter.check("key-c", 4).unwrap_err();
        assert!(err.message.contains("whole budget"), "{}", err.message);
        limiter
            .check("key-c", 3)
            .expect("exactly the budget at once");
    }
}
