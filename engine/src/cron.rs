//! Cron expressions read in an IANA time zone, and what a tick does with the fire
//! times that came due (pure: no clock, no database).
//!
//! Fire times come from `croner` on `chrono-tz` zones, which get daylight saving
//! right: a local time that does not exist (the spring-forward gap) fires at the next
//! valid instant, and one that happens twice (fall-back) fires once, at its first
//! occurrence. (The `cron` crate skips the first and fires the second twice.)

use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

use crate::model::CatchUpPolicy;
use crate::{Error, Result};

/// Longest cron expression accepted.
const MAX_EXPRESSION: usize = 200;
/// Late fire times a tick walks one by one; beyond this (a long downtime of a
/// frequent schedule) it counts no further and jumps to the latest.
pub const MAX_LATE_WALKED: u64 = 10_000;
/// On-time fire times one tick handles for a schedule (a grace of 60 s holds at
/// most 61 of an every-second schedule).
const MAX_ON_TIME: usize = 1_000;

/// Which expressions a schedule may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fields {
    /// Exactly 5 fields (minute hour day-of-month month day-of-week), or a nickname
    /// such as `@daily`.
    Five,
    /// Also 6 fields, seconds first (`AIOPS_SCHEDULE_ALLOW_SECONDS`, for tests and
    /// demos).
    FiveOrSixWithSeconds,
}

/// A parsed cron expression and the time zone it is read in.
#[derive(Clone, Debug)]
pub struct CronSchedule {
    cron: Cron,
    zone: Tz,
}

/// Reads an IANA time zone name; the error names the field `timezone`.
pub fn parse_zone(name: &str) -> Result<Tz> {
    name.trim().parse::<Tz>().map_err(|_| {
        Error::Invalid(format!(
            "timezone: unknown IANA time zone \"{}\" (e.g. UTC, Europe/Berlin, America/New_York)",
            name.trim()
        ))
    })
}

impl CronSchedule {
    /// Parses `expression` in the zone `timezone`. Errors name the field (`cron` or
    /// `timezone`); an expression that never fires (`0 0 30 2 *`) is refused too.
    pub fn parse(expression: &str, timezone: &str, fields: Fields) -> Result<Self> {
        let zone = parse_zone(timezone)?;
        let expression = expression.trim();
        let invalid = |why: String| Error::Invalid(format!("cron: {why}"));
        if expression.is_empty() || expression.len() > MAX_EXPRESSION {
            return Err(invalid(format!("1 to {MAX_EXPRESSION} characters")));
        }
        let count = expression.split_whitespace().count();
        let seconds = match (count, fields) {
            _ if expression.starts_with('@') => Seconds::Disallowed,
            (5, _) => Seconds::Disallowed,
            (6, Fields::FiveOrSixWithSeconds) => Seconds::Required,
            (_, Fields::Five) => {
                return Err(invalid(format!(
                    "5 fields (minute hour day-of-month month day-of-week), got {count}"
                )));
            }
            (_, Fields::FiveOrSixWithSeconds) => {
                return Err(invalid(format!(
                    "5 fields (minute hour day-of-month month day-of-week), or 6 with seconds first, got {count}"
                )));
            }
        };
        let cron = CronParser::builder()
            .seconds(seconds)
            .year(Year::Disallowed)
            .build()
            .parse(expression)
            .map_err(|e| invalid(e.to_string()))?;
        let schedule = CronSchedule { cron, zone };
        if schedule.next_after(Utc::now()).is_none() {
            return Err(invalid(format!(
                "\"{expression}\" never fires (no such date)"
            )));
        }
        Ok(schedule)
    }

    /// A stored expression, as a tick reads it: 5 fields or 6 with seconds, whatever
    /// this process allows for new ones (the database is the source of truth).
    pub fn stored(expression: &str, timezone: &str) -> Result<Self> {
        Self::parse(expression, timezone, Fields::FiveOrSixWithSeconds)
    }

    pub fn zone(&self) -> Tz {
        self.zone
    }

    /// The first fire time strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&t.with_timezone(&self.zone), false)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }

    /// The first fire time at or after `t`.
    fn at_or_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&t.with_timezone(&self.zone), true)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }

    /// The last fire time strictly before `t`.
    fn before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_previous_occurrence(&t.with_timezone(&self.zone), false)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }

    /// The next `n` fire times after `after`, in the schedule's zone.
    pub fn upcoming(&self, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Tz>> {
        self.cron
            .iter_after(after.with_timezone(&self.zone))
            .take(n)
            .collect()
    }

    /// What a tick at `now` does with a schedule whose next fire time is
    /// `next_fire_at`. Fire times within `grace` of `now` are on time and all fire
    /// (a tick that came a few seconds late misses nothing); older ones passed while
    /// nobody ticked and follow `catch_up`: `Skip` runs none of them, `RunOnce` runs
    /// the latest of them unless an on-time fire already gives a fresh run. The next
    /// fire time is the first after `now`.
    pub fn plan(
        &self,
        next_fire_at: DateTime<Utc>,
        now: DateTime<Utc>,
        grace: Duration,
        catch_up: CatchUpPolicy,
    ) -> Plan {
        let cutoff = crate::storable::before(now, grace);
        let mut late = Late::default();
        let mut t = Some(next_fire_at);
        while let Some(x) = t.filter(|x| *x < cutoff) {
            if late.count == MAX_LATE_WALKED {
                late.more = true;
                late.last = self.before(cutoff).max(late.last);
                t = self.at_or_after(cutoff);
                break;
            }
            late.first.get_or_insert(x);
            late.last = Some(x);
            late.count += 1;
            t = self.next_after(x);
        }
        let mut fire = Vec::new();
        while let Some(x) = t.filter(|x| *x <= now) {
            if fire.len() == MAX_ON_TIME {
                break;
            }
            fire.push(x);
            t = self.next_after(x);
        }
        let next = self.next_after(now);
        let (Some(first), Some(last)) = (late.first, late.last) else {
            return Plan {
                fire,
                missed: None,
                next,
            };
        };
        let missed = |first, count| {
            (count > 0).then_some(Missed {
                first,
                count,
                more: late.more,
            })
        };
        match catch_up {
            CatchUpPolicy::RunOnce if fire.is_empty() => Plan {
                fire: vec![last],
                // The latest runs; the ones before it are missed.
                missed: missed(first, late.count - 1).filter(|_| first != last),
                next,
            },
            _ => Plan {
                fire,
                missed: missed(first, late.count),
                next,
            },
        }
    }
}

/// The late fire times met while walking.
#[derive(Default)]
struct Late {
    first: Option<DateTime<Utc>>,
    last: Option<DateTime<Utc>>,
    count: u64,
    more: bool,
}

/// What a tick does with one due schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Fire times to fire (each subject to the overlap policy), oldest first.
    pub fire: Vec<DateTime<Utc>>,
    /// Fire times recorded as missed, not run.
    pub missed: Option<Missed>,
    /// The schedule's next fire time; `None` when it never fires again.
    pub next: Option<DateTime<Utc>>,
}

/// A run of fire times that passed during downtime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Missed {
    pub first: DateTime<Utc>,
    pub count: u64,
    /// More than `count` passed: counting stopped at [`MAX_LATE_WALKED`].
    pub more: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn times(expr: &str, zone: &str, after: &str, n: usize) -> Vec<String> {
        CronSchedule::parse(expr, zone, Fields::Five)
            .unwrap()
            .upcoming(utc(after), n)
            .into_iter()
            .map(|t| t.to_rfc3339())
            .collect()
    }

    #[test]
    fn next_fire_times_in_a_few_zones() {
        assert_eq!(
            times("0 9 * * 1-5", "Europe/Berlin", "2027-01-08T12:00:00Z", 2),
            ["2027-01-11T09:00:00+01:00", "2027-01-12T09:00:00+01:00"],
            "weekdays only, in winter time"
        );
        assert_eq!(
            times("0 9 * * *", "Asia/Kolkata", "2027-03-13T00:00:00Z", 2),
            ["2027-03-13T09:00:00+05:30", "2027-03-14T09:00:00+05:30"],
            "no daylight saving, a half-hour offset"
        );
        assert_eq!(
            times("*/20 * * * *", "UTC", "2027-06-01T10:05:00Z", 3),
            [
                "2027-06-01T10:20:00+00:00",
                "2027-06-01T10:40:00+00:00",
                "2027-06-01T11:00:00+00:00"
            ]
        );
        assert_eq!(
            times("@daily", "UTC", "2027-06-01T10:05:00Z", 1),
            ["2027-06-02T00:00:00+00:00"]
        );
    }

    #[test]
    fn a_local_time_that_does_not_exist_fires_once_at_the_next_valid_instant() {
        // 2027-03-14: New York skips 02:00–03:00 (EST → EDT).
        assert_eq!(
            times("30 2 * * *", "America/New_York", "2027-03-13T12:00:00Z", 3),
            [
                "2027-03-14T03:00:00-04:00",
                "2027-03-15T02:30:00-04:00",
                "2027-03-16T02:30:00-04:00"
            ]
        );
        let s = CronSchedule::parse("30 2 * * *", "America/New_York", Fields::Five).unwrap();
        assert_eq!(
            s.next_after(utc("2027-03-13T12:00:00Z")),
            Some(utc("2027-03-14T07:00:00Z"))
        );
        // 2027-03-28: Berlin skips 02:00–03:00 (CET → CEST).
        assert_eq!(
            times("30 2 * * *", "Europe/Berlin", "2027-03-27T12:00:00Z", 2),
            ["2027-03-28T03:00:00+02:00", "2027-03-29T02:30:00+02:00"]
        );
    }

    #[test]
    fn a_local_time_that_happens_twice_fires_once_the_first_time() {
        // 2027-11-07: New York repeats 01:00–02:00 (EDT → EST).
        assert_eq!(
            times("30 1 * * *", "America/New_York", "2027-11-06T12:00:00Z", 3),
            [
                "2027-11-07T01:30:00-04:00",
                "2027-11-08T01:30:00-05:00",
                "2027-11-09T01:30:00-05:00"
            ]
        );
    }

    #[test]
    fn lord_howe_shifts_by_half_an_hour() {
        // 2027-04-04 02:00 LHDT (+11) becomes 01:30 LHST (+10:30): 01:30–02:00 twice.
        assert_eq!(
            times(
                "45 1 * * *",
                "Australia/Lord_Howe",
                "2027-04-03T00:00:00Z",
                2
            ),
            ["2027-04-04T01:45:00+11:00", "2027-04-05T01:45:00+10:30"]
        );
        // 2027-10-03 02:00 LHST becomes 02:30 LHDT: 02:15 does not exist.
        assert_eq!(
            times(
                "15 2 * * *",
                "Australia/Lord_Howe",
                "2027-10-02T00:00:00Z",
                2
            ),
            ["2027-10-03T02:30:00+11:00", "2027-10-04T02:15:00+11:00"]
        );
    }

    #[test]
    fn errors_name_the_field() {
        let err = |expr: &str, zone: &str, fields| match CronSchedule::parse(expr, zone, fields) {
            Err(Error::Invalid(m)) => m,
            other => panic!("{expr} in {zone}: {other:?}"),
        };
        assert!(err("* * * *", "UTC", Fields::Five).starts_with("cron: 5 fields"));
        assert!(err("0 * * * * *", "UTC", Fields::Five).contains("got 6"));
        assert!(err("61 * * * *", "UTC", Fields::Five).starts_with("cron: "));
        assert!(err("0 0 30 2 *", "UTC", Fields::Five).contains("never fires"));
        assert!(err("0 * * * *", "Mars/Olympus", Fields::Five).starts_with("timezone: "));
        assert!(err("* * * * * * *", "UTC", Fields::FiveOrSixWithSeconds).contains("got 7"));
        let every_second =
            CronSchedule::parse("* * * * * *", "UTC", Fields::FiveOrSixWithSeconds).unwrap();
        let t = utc("2027-01-01T00:00:00.250Z");
        assert_eq!(
            every_second.next_after(t),
            Some(utc("2027-01-01T00:00:01Z"))
        );
    }

    #[test]
    fn a_late_tick_fires_what_is_within_grace_and_catches_up_by_policy() {
        let hourly = CronSchedule::parse("0 * * * *", "UTC", Fields::Five).unwrap();
        let grace = Duration::from_secs(60);
        let next = utc("2027-05-01T10:00:00Z");
        // On time (30 s late): fires, nothing missed.
        let plan = hourly.plan(
            next,
            utc("2027-05-01T10:00:30Z"),
            grace,
            CatchUpPolicy::Skip,
        );
        assert_eq!(plan.fire, [next]);
        assert_eq!(plan.missed, None);
        assert_eq!(plan.next, Some(utc("2027-05-01T11:00:00Z")));
        // Down from 09:30 to 15:30: 10:00 … 15:00 passed (6 fire times).
        let now = utc("2027-05-01T15:30:00Z");
        let skip = hourly.plan(next, now, grace, CatchUpPolicy::Skip);
        assert!(skip.fire.is_empty());
        assert_eq!(
            skip.missed,
            Some(Missed {
                first: next,
                count: 6,
                more: false
            })
        );
        assert_eq!(skip.next, Some(utc("2027-05-01T16:00:00Z")));
        let once = hourly.plan(next, now, grace, CatchUpPolicy::RunOnce);
        assert_eq!(once.fire, [utc("2027-05-01T15:00:00Z")], "the latest");
        assert_eq!(
            once.missed.as_ref().map(|m| (m.first, m.count)),
            Some((next, 5))
        );
        assert_eq!(once.next, skip.next);
        // A single passed fire time with run_once: it runs, nothing is missed.
        let one = hourly.plan(
            next,
            utc("2027-05-01T10:30:00Z"),
            grace,
            CatchUpPolicy::RunOnce,
        );
        assert_eq!((one.fire, one.missed), (vec![next], None));
    }

    #[test]
    fn a_week_of_downtime_of_an_every_second_schedule_is_bounded() {
        let every_second =
            CronSchedule::parse("* * * * * *", "UTC", Fields::FiveOrSixWithSeconds).unwrap();
        let next = utc("2027-05-01T00:00:00Z");
        let now = next + chrono::Duration::days(7);
        let plan = every_second.plan(next, now, Duration::from_secs(60), CatchUpPolicy::RunOnce);
        let missed = plan.missed.unwrap();
        assert_eq!((missed.count, missed.more), (MAX_LATE_WALKED, true));
        // The on-time ones (the last 60 s and now itself) fire; no catch-up run.
        assert_eq!(plan.fire.len(), 61);
        assert_eq!(
            plan.fire.first(),
            Some(&(now - chrono::Duration::seconds(60)))
        );
        assert_eq!(plan.next, Some(now + chrono::Duration::seconds(1)));
        let skip = every_second.plan(next, now, Duration::from_secs(0), CatchUpPolicy::RunOnce);
        assert_eq!(skip.fire, [now], "no grace: only now is on time");
    }
}
