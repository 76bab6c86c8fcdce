//! Circuit breakers per provider endpoint (kind, base URL, model), shared by every run
//! of the process (SPEC §4): after [`BreakerConfig::threshold`] consecutive failures
//! the endpoint is open and calls go elsewhere; after `open_for` it is half-open and
//! admits up to `probes` calls at once; a probe's success closes it, a failure opens
//! it again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};

#[derive(Clone, Debug)]
pub struct BreakerConfig {
    pub threshold: u32,
    pub open_for: Duration,
    pub probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            threshold: 5,
            open_for: Duration::from_secs(30),
            probes: 3,
        }
    }
}

/// A breaker's state as the API shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

/// One endpoint's breaker, for listings.
#[derive(Clone, Debug, PartialEq)]
pub struct BreakerStatus {
    pub endpoint: String,
    pub state: BreakerState,
    pub consecutive_failures: u32,
    /// When an open breaker lets probes through.
    pub retry_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Default)]
struct Entry {
    failures: u32,
    open_until: Option<DateTime<Utc>>,
    probes_in_flight: u32,
}

/// Permission to call an endpoint; hand it back with the outcome.
#[derive(Debug)]
#[must_use = "report the call's outcome with Breakers::record"]
pub struct Permit {
    key: String,
    probe: bool,
}

/// The process's breakers.
#[derive(Debug, Default)]
pub struct Breakers {
    config: BreakerConfig,
    entries: Mutex<HashMap<String, Entry>>,
}

impl Breakers {
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            entries: Mutex::default(),
        }
    }

    /// A call may go out now, or not before the returned wait.
    pub fn admit(&self, key: &str) -> Result<Permit, Duration> {
        let now = Utc::now();
        let mut entries = self.lock();
        let entry = entries.entry(key.to_owned()).or_default();
        let Some(until) = entry.open_until else {
            return Ok(Permit {
                key: key.to_owned(),
                probe: false,
            });
        };
        if now < until {
            return Err((until - now).to_std().unwrap_or_default());
        }
        if entry.probes_in_flight >= self.config.probes {
            // Half-open and every probe slot taken: check again shortly.
            return Err(Duration::from_secs(1));
        }
        entry.probes_in_flight += 1;
        Ok(Permit {
            key: key.to_owned(),
            probe: true,
        })
    }

    /// Records how an admitted call went: `failed` only for failures that say the
    /// endpoint is unwell (server errors, timeouts, dropped streams), not for a
    /// request the server rightly refused.
    pub fn record(&self, permit: Permit, failed: bool) {
        let mut entries = self.lock();
        let entry = entries.entry(permit.key).or_default();
        if permit.probe {
            entry.probes_in_flight = entry.probes_in_flight.saturating_sub(1);
        }
        if !failed {
            *entry = Entry::default();
            return;
        }
        entry.failures = entry.failures.saturating_add(1);
        let reopen = permit.probe || entry.failures >= self.config.threshold;
        if reopen {
            entry.open_until = Some(crate::storable::after(Utc::now(), self.config.open_for));
        }
    }

    /// An abandoned call (cancelled, or its run stopped): frees a probe slot without
    /// judging the endpoint.
    pub fn release(&self, permit: Permit) {
        if permit.probe {
            let mut entries = self.lock();
            if let Some(entry) = entries.get_mut(&permit.key) {
                entry.probes_in_flight = entry.probes_in_flight.saturating_sub(1);
            }
        }
    }

    pub fn statuses(&self) -> Vec<BreakerStatus> {
        let now = Utc::now();
        let mut out: Vec<BreakerStatus> = self
            .lock()
            .iter()
            .map(|(key, e)| BreakerStatus {
                endpoint: key.clone(),
                state: match e.open_until {
                    None => BreakerState::Closed,
                    Some(until) if now < until => BreakerState::Open,
                    Some(_) => BreakerState::HalfOpen,
                },
                consecutive_failures: e.failures,
                retry_at: e.open_until,
            })
            .collect();
        out.sort_by(|a, b| a.endpoint.cmp(&b.endpoint));
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast() -> Breakers {
        Breakers::new(BreakerConfig {
            threshold: 5,
            open_for: Duration::from_millis(50),
            probes: 3,
        })
    }

    fn state(b: &Breakers) -> BreakerState {
        b.statuses()[0].state
    }

    #[test]
    fn opens_after_five_consecutive_failures_only() {
        let b = fast();
        for _ in 0..4 {
            b.record(b.admit("e").unwrap(), true);
        }
        // A success resets the count.
        b.record(b.admit("e").unwrap(), false);
        for _ in 0..4 {
            b.record(b.admit("e").unwrap(), true);
        }
        assert_eq!(state(&b), BreakerState::Closed);
        b.record(b.admit("e").unwrap(), true);
        assert_eq!(state(&b), BreakerState::Open);
        let wait = b.admit("e").unwrap_err();
        assert!(wait <= Duration::from_millis(50));
        // Other endpoints are unaffected.
        assert!(b.admit("other").is_ok());
    }

    #[test]
    fn half_open_admits_three_probes_and_a_success_closes() {
        let b = fast();
        for _ in 0..5 {
            b.record(b.admit("e").unwrap(), true);
        }
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(state(&b), BreakerState::HalfOpen);
        let probes: Vec<Permit> = (0..3).map(|_| b.admit("e").unwrap()).collect();
        assert!(b.admit("e").is_err(), "a fourth probe is refused");
        let mut probes = probes.into_iter();
        b.record(probes.next().unwrap(), false);
        assert_eq!(state(&b), BreakerState::Closed);
        for p in probes {
            b.release(p);
        }
        assert!(b.admit("e").is_ok());
    }

    #[test]
    fn a_failed_probe_opens_again() {
        let b = fast();
        for _ in 0..5 {
            b.record(b.admit("e").unwrap(), true);
        }
        std::thread::sleep(Duration::from_millis(60));
        b.record(b.admit("e").unwrap(), true);
        assert_eq!(state(&b), BreakerState::Open);
    }
}
