//! The Alertmanager webhook intake's records (§8): receivers (admins create them;
//! the token is shown once and stored as its SHA-256), and
//! [`Engine::record_notification`], the one place where what a notification means
//! is decided and written: a run started, alerts recorded on the group's active run,
//! or nothing new (de-duplicated) — or unrouted when no team matched.
//!
//! De-duplication: an alert instance is `(groupKey, fingerprint, startsAt)`, stored
//! once per team that routes its group (`alert_instances`, unique). Alertmanager
//! re-sends the whole group every `group_interval` (when it changed) and every
//! `repeat_interval`, so per team a notification
//! - whose firing alerts were all seen before starts nothing (DEDUPLICATED);
//! - with new firing alerts, while a run of the group is still active, records them
//!   on that run (`ALERT_FIRING`, RECORDED) instead of starting a second
//!   investigation of the same incident;
//! - with new firing alerts and no active run, starts a run (STARTED) with the
//!   notification's alerts as its input;
//! - with alerts resolved for the first time marks them resolved, and records them
//!   on the group's active run if there is one (`ALERT_RESOLVED`, RECORDED).
//!
//! Decisions about one group are serialised (the store's group lock), and the run,
//! the instances, the events and the notification's record are written in one
//! transaction: a repeat racing its original, or an Alertmanager pair sending the
//! same notification twice, starts one run.

use crate::metrics::WebhookOutcome;
use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde_json::{Value as Json, json};

use super::Engine;
use super::alert_sources::require_admin;
use crate::auth::Caller;
use crate::event::{Event, EventKind, NewEvent};
use crate::ids::{NotificationId, ReceiverId, RunId, TeamId};
use crate::model::{
    AlertNotification, AlertmanagerReceiver, NotificationFilter, NotificationOutcome,
    NotificationRoute, NotificationStatus, RunAlert,
};
use crate::page::{KeyOf, Page, PageRequest};
use crate::status::ApprovalMode;
use crate::store;
use crate::store::alert_instances::{self, Known, NewInstance};
use crate::store::runs::{NewRun, RunPatch};
use crate::{Error, Result};

use super::StartRun;

/// Receiver names: what alert sources and webhooks accept.
const MAX_NAME_LEN: usize = 100;
/// How often a receiver's `last_used_at` is written at most.
const LAST_USED_RESOLUTION: chrono::Duration = chrono::Duration::minutes(1);

/// A notification the domain has read and routed, for [`Engine::record_notification`].
#[derive(Clone, Debug)]
pub struct NotificationIntake {
    pub id: NotificationId,
    pub receiver: AlertmanagerReceiver,
    pub group_key: String,
    /// The group's labels and the labels common to its alerts (what routing matched).
    pub group_labels: BTreeMap<String, String>,
    pub status: NotificationStatus,
    pub alerts: Vec<IncomingAlert>,
    /// The teams whose matchers the group matched, each with the run to start for it.
    pub routes: Vec<TeamRoute>,
    pub received_at: DateTime<Utc>,
}

/// One alert of a notification.
#[derive(Clone, Debug, PartialEq)]
pub struct IncomingAlert {
    pub fingerprint: String,
    /// At microsecond precision (what both databases store).
    pub starts_at: DateTime<Utc>,
    /// Firing, or resolved (at `ends_at`).
    pub firing: bool,
    pub ends_at: Option<DateTime<Utc>>,
    pub labels: BTreeMap<String, String>,
}

impl IncomingAlert {
    fn is(&self, known: &Known) -> bool {
        known.fingerprint == self.fingerprint && known.starts_at == self.starts_at
    }

    fn name(&self) -> &str {
        self.labels
            .get("alertname")
            .map_or("(unnamed)", String::as_str)
    }

    fn summary(&self) -> Json {
        json!({
            "fingerprint": self.fingerprint, "alertname": self.name(), "labels": self.labels,
            "starts_at": self.starts_at, "ends_at": self.ends_at,
        })
    }
}

/// A team whose matchers a notification matched.
#[derive(Clone, Debug)]
pub struct TeamRoute {
    pub team_id: TeamId,
    pub team: String,
    /// The run to start if the notification brings new firing alerts and the group
    /// has no active run of this team.
    pub start: StartRun,
}

/// What a notification means for one team, decided from what is known of its group.
#[derive(Debug, PartialEq)]
struct Decision<'a> {
    /// Firing alerts seen for the first time.
    new: Vec<&'a IncomingAlert>,
    /// Known instances seen resolved for the first time, with the resolving alert.
    resolved: Vec<(&'a Known, &'a IncomingAlert)>,
    /// Start a run for the new alerts (no run of the group is active).
    start: bool,
    /// The run these alerts already belong to, when nothing is new.
    seen_by: Option<RunId>,
}

/// The pure part of a team's decision: `active` is the group's run that has not
/// ended (checked under its row lock).
fn decide<'a>(
    alerts: &'a [IncomingAlert],
    known: &'a [Known],
    active: Option<RunId>,
) -> Decision<'a> {
    let find = |a: &IncomingAlert| known.iter().find(|k| a.is(k));
    let new: Vec<&IncomingAlert> = alerts
        .iter()
        .filter(|a| a.firing && find(a).is_none())
        .collect();
    let resolved = alerts
        .iter()
        .filter(|a| !a.firing)
        .filter_map(|a| find(a).filter(|k| k.resolved_at.is_none()).map(|k| (k, a)))
        .collect();
    let seen_by = active.or_else(|| alerts.iter().filter_map(find).map(|k| k.run_id).max());
    Decision {
        start: !new.is_empty() && active.is_none(),
        new,
        resolved,
        seen_by,
    }
}

/// "3 firing alerts" / "1 firing alert".
fn count(n: usize, what: &str) -> String {
    format!("{n} {what} alert{}", if n == 1 { "" } else { "s" })
}

impl Engine {
    /// Creates an Alertmanager receiver (admins) and returns it with its bearer
    /// token, which is not stored (only its SHA-256) and cannot be shown again.
    pub async fn create_alertmanager_receiver(
        &self,
        caller: Caller<'_>,
        name: &str,
        approval_mode: ApprovalMode,
    ) -> Result<(AlertmanagerReceiver, String)> {
        require_admin(caller)?;
        let ok = !name.is_empty()
            && name.len() <= MAX_NAME_LEN
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !ok {
            return Err(Error::Invalid(format!(
                "name: 1 to {MAX_NAME_LEN} letters, digits, '-', '_' or '.'"
            )));
        }
        let (token, prefix) = crate::auth::generate_token(crate::auth::RECEIVER_TOKEN_MARKER);
        let now = Utc::now();
        let receiver = AlertmanagerReceiver {
            id: ReceiverId::new(),
            name: name.to_owned(),
            token_prefix: prefix,
            approval_mode,
            created_at: now,
            updated_at: now,
            last_used_at: None,
        };
        store::alertmanager_receivers::insert(
            &self.inner.db,
            &receiver,
            &crate::auth::hash_api_key(&token),
        )
        .await?;
        Ok((receiver, token))
    }

    /// Every receiver, by name, without tokens (viewers may list them).
    pub async fn alertmanager_receivers(&self) -> Result<Vec<AlertmanagerReceiver>> {
        store::alertmanager_receivers::list(&self.inner.db).await
    }

    /// Deletes a receiver (admins); its token stops working at once. Notifications
    /// it posted stay listed under its name.
    pub async fn delete_alertmanager_receiver(&self, caller: Caller<'_>, name: &str) -> Result<()> {
        require_admin(caller)?;
        if store::alertmanager_receivers::delete(&self.inner.db, name).await? {
            Ok(())
        } else {
            Err(Error::not_found("Alertmanager receiver", name))
        }
    }

    /// The receiver a bearer token belongs to. A malformed, unknown or deleted token
    /// is [`Error::Unauthenticated`], whatever the cause.
    pub async fn authenticate_receiver(&self, token: &str) -> Result<AlertmanagerReceiver> {
        let token = token.trim();
        if crate::auth::token_prefix(crate::auth::RECEIVER_TOKEN_MARKER, token).is_none() {
            return Err(Error::Unauthenticated);
        }
        let db = &self.inner.db;
        let receiver =
            store::alertmanager_receivers::find_by_hash(db, &crate::auth::hash_api_key(token))
                .await?
                .ok_or(Error::Unauthenticated)?;
        let now = Utc::now();
        if receiver
            .last_used_at
            .is_none_or(|t| now - t >= LAST_USED_RESOLUTION)
            && let Err(e) = store::alertmanager_receivers::touch(
                db,
                receiver.id,
                now,
                now - LAST_USED_RESOLUTION,
            )
            .await
        {
            // Bookkeeping only: the token is valid, so the notification goes on.
            tracing::warn!(receiver = %receiver.name, error = %e, "cannot record receiver use");
        }
        Ok(receiver)
    }

    /// A page of the accepted notifications matching `filter`, newest first.
    pub async fn alert_notifications(
        &self,
        filter: &NotificationFilter,
        page: &PageRequest<KeyOf<AlertNotification>>,
    ) -> Result<Page<AlertNotification>> {
        store::alert_notifications::page(&self.inner.db, filter, page).await
    }

    pub async fn alert_notification(&self, id: NotificationId) -> Result<AlertNotification> {
        store::alert_notifications::get(&self.inner.db, id)
            .await?
            .ok_or_else(|| Error::not_found("alert notification", id))
    }

    /// The alerts of the Alertmanager group `run` investigates, as the intake knows
    /// them now (which resolved, which joined after it started); empty for runs the
    /// intake did not start. What a workflow reads here decides its report, so it
    /// reads it in a step.
    pub async fn run_alerts(&self, run: RunId) -> Result<Vec<RunAlert>> {
        alert_instances::of_run(&self.inner.db, run).await
    }

    /// Decides and records what `intake` means (see the module documentation), in
    /// one transaction: runs started, events on active runs, alert instances, and
    /// the notification's record with its outcome. Invalid run requests (too large
    /// an input, a value the database cannot store) are refused before anything is
    /// written.
    #[tracing::instrument(skip_all, fields(notification.id = %intake.id, receiver = %intake.receiver.name))]
    pub async fn record_notification(
        &self,
        intake: NotificationIntake,
    ) -> Result<AlertNotification> {
        let labels: Vec<&BTreeMap<String, String>> = std::iter::once(&intake.group_labels)
            .chain(intake.alerts.iter().map(|a| &a.labels))
            .collect();
        crate::storable::check_json(&json!(labels), "labels").map_err(Error::Invalid)?;
        crate::storable::check_text(&intake.group_key, "groupKey").map_err(Error::Invalid)?;
        for (i, a) in intake.alerts.iter().enumerate() {
            crate::storable::check_text(&a.fingerprint, &format!("alerts[{i}].fingerprint"))
                .map_err(Error::Invalid)?;
            crate::storable::check_time(a.starts_at, &format!("alerts[{i}].startsAt"))
                .map_err(Error::Invalid)?;
            if let Some(t) = a.ends_at {
                crate::storable::check_time(t, &format!("alerts[{i}].endsAt"))
                    .map_err(Error::Invalid)?;
            }
        }
        let runs: Vec<NewRun> = intake
            .routes
            .iter()
            .map(|r| {
                self.checked_run(r.start.clone()).map_err(|e| match e {
                    Error::Invalid(m) => Error::Invalid(format!("run of team {}: {m}", r.team)),
                    other => other,
                })
            })
            .collect::<Result<_>>()?;
        let mut tries = 0;
        loop {
            tries += 1;
            match self.decide_notification(&intake, &runs).await {
                Err(e) if e.is_transient() && tries < 5 => continue,
                Err(e) => return Err(e),
                Ok((notification, written, started)) => {
                    for events in &written {
                        self.inner.bus.publish_events(events);
                    }
                    if started {
                        self.runnable();
                    }
                    log_outcome(&notification);
                    self.metrics()
                        .webhook_notification(match notification.outcome {
                            NotificationOutcome::Started | NotificationOutcome::Recorded => {
                                WebhookOutcome::Routed
                            }
                            NotificationOutcome::Deduplicated => WebhookOutcome::Deduplicated,
                            NotificationOutcome::Unrouted => WebhookOutcome::Unrouted,
                        });
                    return Ok(notification);
                }
            }
        }
    }

    /// One attempt of [`Engine::record_notification`]'s transaction: the
    /// notification, the events written (per run) and whether a run started.
    async fn decide_notification(
        &self,
        intake: &NotificationIntake,
        runs: &[NewRun],
    ) -> Result<(AlertNotification, Vec<Vec<Event>>, bool)> {
        let now = Utc::now();
        let group_hash = alert_instances::group_hash(&intake.group_key);
        let fingerprints: Vec<&str> = intake
            .alerts
            .iter()
            .map(|a| a.fingerprint.as_str())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let txn = store::begin_write(&self.inner.db).await?;
        alert_instances::lock_group(&txn, &group_hash).await?;
        // What is known of the group, per team; then the active runs locked in id
        // order (as every statement that locks several runs does) before deciding.
        let mut known = Vec::with_capacity(intake.routes.len());
        let mut actives = Vec::with_capacity(intake.routes.len());
        for route in &intake.routes {
            known.push(
                alert_instances::known(&txn, route.team_id, &group_hash, &fingerprints).await?,
            );
            actives.push(alert_instances::active_run(&txn, route.team_id, &group_hash).await?);
        }
        let mut locked = BTreeMap::new();
        for run in actives.iter().flatten().collect::<BTreeSet<_>>() {
            // Ended since it was read: not active after all.
            if let Some(status) = store::runs::lock_row(&txn, *run)
                .await?
                .filter(|s| !s.is_terminal())
            {
                locked.insert(*run, status);
            }
        }
        let mut routes = Vec::with_capacity(intake.routes.len());
        let mut reasons = Vec::with_capacity(intake.routes.len());
        let mut written = Vec::new();
        let mut started = false;
        for (((route, new_run), known), active) in
            intake.routes.iter().zip(runs).zip(&known).zip(actives)
        {
            let active_run = active.filter(|r| locked.contains_key(r));
            let d = decide(&intake.alerts, known, active_run);
            let resolved: Vec<(uuid::Uuid, DateTime<Utc>)> = d
                .resolved
                .iter()
                .map(|(k, a)| (k.id, a.ends_at.unwrap_or(intake.received_at)))
                .collect();
            alert_instances::resolve(&txn, &resolved, now).await?;
            let new: Vec<NewInstance> = d
                .new
                .iter()
                .map(|a| NewInstance {
                    fingerprint: a.fingerprint.clone(),
                    starts_at: a.starts_at,
                    labels: a.labels.clone(),
                })
                .collect();
            let event = |kind, alerts: Vec<Json>| {
                NewEvent::new(
                    kind,
                    json!({
                        "notification_id": intake.id, "receiver": intake.receiver.name,
                        "group_key": intake.group_key, "alerts": alerts,
                    }),
                )
            };
            let (outcome, run_id, reason) = if d.start {
                let (run, queued, _) = store::runs::insert(&txn, new_run.clone(), now).await?;
                alert_instances::insert(
                    &txn,
                    route.team_id,
                    &group_hash,
                    run.id,
                    intake.id,
                    false,
                    &new,
                    now,
                )
                .await?;
                written.push(queued);
                started = true;
                (
                    NotificationOutcome::Started,
                    Some(run.id),
                    format!(
                        "{}: started run {} for {}",
                        route.team,
                        run.id,
                        count(d.new.len(), "new firing")
                    ),
                )
            } else if let Some(active) = active_run {
                let mut news = Vec::new();
                let mut said = Vec::new();
                if !d.new.is_empty() {
                    alert_instances::insert(
                        &txn,
                        route.team_id,
                        &group_hash,
                        active,
                        intake.id,
                        true,
                        &new,
                        now,
                    )
                    .await?;
                    news.push(event(
                        EventKind::AlertFiring,
                        d.new.iter().map(|a| a.summary()).collect(),
                    ));
                    said.push(count(d.new.len(), "new firing"));
                }
                if !d.resolved.is_empty() {
                    news.push(event(
                        EventKind::AlertResolved,
                        d.resolved.iter().map(|(_, a)| a.summary()).collect(),
                    ));
                    said.push(count(d.resolved.len(), "resolved"));
                }
                if news.is_empty() {
                    (
                        NotificationOutcome::Deduplicated,
                        Some(active),
                        format!(
                            "{}: nothing new: every alert was seen before (run {active} is active)",
                            route.team
                        ),
                    )
                } else {
                    let status = locked
                        .get(&active)
                        .copied()
                        .ok_or_else(|| Error::Corrupt(format!("run {active} is not locked")))?;
                    let events = store::runs::apply_patch(
                        &txn,
                        active,
                        status,
                        &RunPatch::default(),
                        &news,
                        now,
                    )
                    .await?
                    .ok_or_else(|| {
                        Error::Conflict(format!("run {active} changed concurrently; try again"))
                    })?;
                    written.push(events);
                    (
                        NotificationOutcome::Recorded,
                        Some(active),
                        format!(
                            "{}: {} recorded on active run {active}",
                            route.team,
                            said.join(" and ")
                        ),
                    )
                }
            } else {
                let why = if d.resolved.is_empty() {
                    format!(
                        "every firing alert was seen before{}",
                        d.seen_by
                            .map(|r| format!(" (run {r}, which has ended)"))
                            .unwrap_or_default()
                    )
                } else {
                    format!(
                        "{} marked; their run {} has ended",
                        count(d.resolved.len(), "resolved"),
                        d.seen_by.map_or_else(String::new, |r| r.to_string())
                    )
                };
                (
                    NotificationOutcome::Deduplicated,
                    d.seen_by,
                    format!("{}: nothing new: {why}", route.team),
                )
            };
            routes.push(NotificationRoute {
                team_id: route.team_id,
                team: route.team.clone(),
                outcome,
                run_id,
                new_alerts: d.new.len() as u32,
                resolved_alerts: d.resolved.len() as u32,
            });
            reasons.push(reason);
        }
        let outcome = routes
            .iter()
            .map(|r| r.outcome)
            .min_by_key(|o| NotificationOutcome::ALL.iter().position(|x| x == o))
            .unwrap_or(NotificationOutcome::Unrouted);
        let reason = if routes.is_empty() {
            format!(
                "no team's alertmanager matchers match the group's labels {}",
                json!(intake.group_labels)
            )
        } else {
            reasons.join("; ")
        };
        let notification = AlertNotification {
            id: intake.id,
            receiver_id: intake.receiver.id,
            receiver: intake.receiver.name.clone(),
            group_key: intake.group_key.clone(),
            group_labels: intake.group_labels.clone(),
            status: intake.status,
            alerts: i32::try_from(intake.alerts.len()).unwrap_or(i32::MAX),
            outcome,
            reason,
            routes,
            received_at: intake.received_at,
        };
        store::alert_notifications::insert(&txn, &notification).await?;
        txn.commit().await?;
        Ok((notification, written, started))
    }
}

/// The log line of a notification: unrouted ones and runs started or told are
/// worth a line; repeats are routine.
fn log_outcome(n: &AlertNotification) {
    let runs: Vec<String> = n
        .routes
        .iter()
        .filter_map(|r| r.run_id.map(|id| format!("{}={id}", r.team)))
        .collect();
    match n.outcome {
        NotificationOutcome::Deduplicated => tracing::debug!(
            notification.id = %n.id, receiver = %n.receiver, group_key = %n.group_key,
            outcome = %n.outcome, reason = %n.reason, "alertmanager notification"
        ),
        _ => tracing::info!(
            notification.id = %n.id, receiver = %n.receiver, group_key = %n.group_key,
            outcome = %n.outcome, runs = %runs.join(","), reason = %n.reason,
            "alertmanager notification"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: u32) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + i64::from(s), 0).unwrap()
    }

    fn alert(fp: &str, starts: u32, firing: bool) -> IncomingAlert {
        IncomingAlert {
            fingerprint: fp.into(),
            starts_at: at(starts),
            firing,
            ends_at: (!firing).then(|| at(starts + 60)),
            labels: BTreeMap::from([("alertname".to_owned(), fp.to_uppercase())]),
        }
    }

    fn known(fp: &str, starts: u32, run: RunId, resolved: bool) -> Known {
        Known {
            id: uuid::Uuid::now_v7(),
            fingerprint: fp.into(),
            starts_at: at(starts),
            run_id: run,
            resolved_at: resolved.then(|| at(starts + 60)),
        }
    }

    #[test]
    fn a_new_group_starts_a_run_and_a_repeat_starts_nothing() {
        let alerts = [alert("a", 0, true), alert("b", 5, true)];
        let d = decide(&alerts, &[], None);
        assert!(d.start);
        assert_eq!(d.new.len(), 2);

        let run = RunId::new();
        let seen = [known("a", 0, run, false), known("b", 5, run, false)];
        let d = decide(&alerts, &seen, None);
        assert!(!d.start && d.new.is_empty() && d.resolved.is_empty());
        assert_eq!(d.seen_by, Some(run), "names the run that saw them");
    }

    #[test]
    fn new_alerts_join_an_active_run_and_a_restart_is_a_new_instance() {
        let run = RunId::new();
        let seen = [known("a", 0, run, false)];
        let alerts = [alert("a", 0, true), alert("b", 5, true)];
        let d = decide(&alerts, &seen, Some(run));
        assert!(!d.start, "the active run is told, no second run");
        assert_eq!(d.new, vec![&alerts[1]]);

        // The same alert firing again later has another startsAt: a new instance.
        let again = [alert("a", 900, true)];
        let d = decide(&again, &seen, None);
        assert!(d.start);
    }

    #[test]
    fn resolutions_count_once() {
        let run = RunId::new();
        let alerts = [alert("a", 0, false), alert("b", 5, true)];
        let seen = [known("a", 0, run, false), known("b", 5, run, false)];
        let d = decide(&alerts, &seen, Some(run));
        assert_eq!(d.resolved.len(), 1);
        assert_eq!(d.resolved[0].1.fingerprint, "a");
        assert!(d.new.is_empty() && !d.start);

        let marked = [known("a", 0, run, true), known("b", 5, run, false)];
        assert!(decide(&alerts, &marked, Some(run)).resolved.is_empty());
        // Resolved alerts never seen firing are nobody's news.
        assert!(
            decide(&[alert("z", 0, false)], &[], None)
                .resolved
                .is_empty()
        );
    }
}
