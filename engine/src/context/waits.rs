//! Waiting: for a time (retries, durable sleeps) or for a person (approvals,
//! questions), releasing the worker when the wait is long.

use std::fmt::Display;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::event::{EventKind, NewEvent};
use crate::ids::{ApprovalId, QuestionId};
use crate::status::{ApprovalMode, ApprovalStatus, QuestionStatus, StepStatus};
use crate::store::checkpoint::{ApprovalDecision, NewApproval, NewQuestion, StepRecord};

/// Who decided an approval that no person decided (`decided_by`).
pub const SYSTEM: &str = "system";

use super::{
    ApprovalOutcome, ApprovalRequest, InFlight, InputOutcome, Park, StepContext, StepError, lock,
    suspend,
};

impl StepContext {
    /// Waits until `at`: in process when short, otherwise by parking the run so the
    /// worker is free (it is claimed again when `at` comes).
    pub(super) async fn wait_until(
        &self,
        at: DateTime<Utc>,
        park: impl FnOnce(DateTime<Utc>) -> Park,
    ) {
        let remaining = (at - Utc::now()).to_std().unwrap_or_default();
        if remaining.is_zero() {
            return;
        }
        if remaining <= self.shared.config.long_wait_threshold {
            let _in_flight = InFlight::new(&self.shared);
            tokio::time::sleep(remaining).await;
        } else {
            self.shared.parked(park(at));
            suspend::<()>().await;
        }
    }

    /// A durable sleep: long sleeps release the worker and survive restarts.
    pub async fn sleep(&self, key: impl Display, duration: Duration) -> Result<(), StepError> {
        let key = self.claim_key(key)?;
        let recorded = lock(&self.shared.memo).get(&key).cloned();
        if recorded.is_some() {
            // What this context emitted before went out with the sleep's record.
            self.discard_emitted();
        }
        let mut announced = true;
        let mut emitted = Vec::new();
        let until = match recorded {
            Some(step) if step.status == StepStatus::Succeeded => return Ok(()),
            Some(step) => step.next_attempt_at.unwrap_or_else(Utc::now),
            None => {
                self.boundary().await;
                emitted = self.take_emitted();
                let now = Utc::now();
                let until = crate::storable::after(now, duration);
                announced = duration > self.shared.config.long_wait_threshold;
                if announced {
                    let mut cp = self.checkpoint();
                    cp.steps.push(sleeping_record(&key, now, until));
                    cp.events.append(&mut emitted);
                    cp.events.push(NewEvent::new(
                        EventKind::StepStarted,
                        json!({ "step_key": key, "attempt": 1, "sleep_until": until }),
                    ));
                    self.commit(cp).await;
                }
                until
            }
        };
        self.wait_until(until, |wake_at| Park::Sleep { wake_at })
            .await;
        let now = Utc::now();
        let mut cp = self.checkpoint();
        let mut record = sleeping_record(&key, now, until);
        record.status = StepStatus::Succeeded;
        record.finished_at = Some(now);
        record.next_attempt_at = None;
        cp.steps.push(record);
        cp.events.append(&mut emitted);
        if !announced {
            cp.events.push(NewEvent::new(
                EventKind::StepStarted,
                json!({ "step_key": key, "attempt": 1, "sleep_until": until }),
            ));
        }
        cp.events.push(NewEvent::new(
            EventKind::StepSucceeded,
            json!({ "step_key": key, "attempts": 1, "slept_until": until }),
        ));
        self.commit(cp).await;
        Ok(())
    }

    /// Asks a person to approve a risky action. The run goes to WAITING_APPROVAL and
    /// frees its worker until someone decides or the approval expires; a rejection or
    /// an expiry is returned as an outcome, not an error.
    pub async fn wait_approval(
        &self,
        key: impl Display,
        request: ApprovalRequest,
    ) -> Result<ApprovalOutcome, StepError> {
        let key = self.claim_key(key)?;
        let storable = crate::storable::check_text(&request.tool, "tool")
            .and_then(|()| crate::storable::check_json(&request.args, "args"))
            .and_then(|()| {
                request
                    .risk_note
                    .as_deref()
                    .map_or(Ok(()), |r| crate::storable::check_text(r, "risk_note"))
            });
        if let Err(message) = storable {
            return Err(StepError::Unstorable { key, message });
        }
        let existing = lock(&self.shared.approvals).get(&key).cloned();
        if existing.is_some() {
            // What this context emitted before went out when the approval was asked.
            self.discard_emitted();
        }
        let approval = match existing {
            Some(a) if a.status == ApprovalStatus::Pending && a.expires_at <= Utc::now() => {
                match self
                    .shared
                    .expirer
                    .expire_approval(&self.shared.fence, &a)
                    .await
                {
                    Ok(a) => a,
                    Err(e) => {
                        self.halt_on(e);
                        return suspend().await;
                    }
                }
            }
            Some(a) if a.status == ApprovalStatus::Pending => {
                lock(&self.shared.park).waiting_approvals.push(a.id);
                self.shared.parked(Park::Approval {
                    wake_at: a.expires_at,
                });
                return suspend().await;
            }
            Some(a) => a,
            None => {
                self.boundary().await;
                if let Some(reason) = self.rejection_without_asking() {
                    return Ok(self.reject_at_once(key, request, reason).await);
                }
                let ttl = request
                    .expires_in
                    .unwrap_or(self.shared.config.approval_ttl);
                let expires_at = crate::storable::after(Utc::now(), ttl);
                let id = ApprovalId::new();
                {
                    let emitted = self.take_emitted();
                    let mut park = lock(&self.shared.park);
                    park.events.extend(emitted);
                    park.events.push(NewEvent::new(
                    EventKind::ApprovalRequested,
                    json!({
                        "approval_id": id, "step_key": key, "tool": request.tool, "args": request.args,
                        "risk_note": request.risk_note, "expires_at": expires_at,
                    }),
                ));
                    park.approvals.push(NewApproval {
                        id,
                        step_key: key,
                        tool: request.tool,
                        args: request.args,
                        risk_note: request.risk_note,
                        expires_at,
                        decided: None,
                    });
                }
                self.shared.parked(Park::Approval {
                    wake_at: expires_at,
                });
                return suspend().await;
            }
        };
        Ok(ApprovalOutcome {
            approval_id: approval.id,
            status: approval.status,
            decided_by: approval.decided_by,
            comment: approval.comment,
        })
    }

    /// Why this run's approvals are rejected without asking anyone (its approval
    /// mode is REJECT), naming the trigger that chose it; `None` when they wait for a
    /// person. The mode is stored with the run and never changes.
    fn rejection_without_asking(&self) -> Option<String> {
        let info = &self.shared.info;
        (info.approval_mode == ApprovalMode::Reject).then(|| {
            let trigger = match &info.trigger_id {
                Some(id) => format!("{} {id}", info.trigger),
                None => info.trigger.to_string(),
            };
            format!(
                "rejected automatically: the run was started by {trigger} with approval \
                 mode REJECT, so nobody is asked"
            )
        })
    }

    /// Records an approval that is rejected as it is asked (requested and decided in
    /// one commit, decided by `system`), and returns the rejection: the run goes on
    /// without the action and never waits.
    async fn reject_at_once(
        &self,
        key: String,
        request: ApprovalRequest,
        reason: String,
    ) -> ApprovalOutcome {
        let id = ApprovalId::new();
        let now = Utc::now();
        let mut cp = self.checkpoint();
        cp.events.append(&mut self.take_emitted());
        cp.events.push(NewEvent::new(
            EventKind::ApprovalRequested,
            json!({
                "approval_id": id, "step_key": key, "tool": request.tool, "args": request.args,
                "risk_note": request.risk_note, "expires_at": now,
            }),
        ));
        cp.events.push(NewEvent::new(
            EventKind::ApprovalDecided,
            json!({
                "approval_id": id, "step_key": key, "status": ApprovalStatus::Rejected,
                "decided_by": SYSTEM, "comment": reason,
            }),
        ));
        cp.approvals.push(NewApproval {
            id,
            step_key: key,
            tool: request.tool,
            args: request.args,
            risk_note: request.risk_note,
            expires_at: now,
            decided: Some(ApprovalDecision {
                status: ApprovalStatus::Rejected,
                by: SYSTEM.to_owned(),
                comment: reason.clone(),
            }),
        });
        self.commit(cp).await;
        ApprovalOutcome {
            approval_id: id,
            status: ApprovalStatus::Rejected,
            decided_by: Some(SYSTEM.to_owned()),
            comment: Some(reason),
        }
    }

    /// Asks a person a question; the run waits in WAITING_INPUT for the answer. An
    /// unanswered question expires with `answer: None`.
    pub async fn wait_input(
        &self,
        key: impl Display,
        question: impl Into<String>,
    ) -> Result<InputOutcome, StepError> {
        let key = self.claim_key(key)?;
        let question = question.into();
        if let Err(message) = crate::storable::check_text(&question, "question") {
            return Err(StepError::Unstorable { key, message });
        }
        let existing = lock(&self.shared.questions).get(&key).cloned();
        if existing.is_some() {
            self.discard_emitted();
        }
        let q = match existing {
            Some(q) if q.status == QuestionStatus::Pending && q.expires_at <= Utc::now() => {
                match self
                    .shared
                    .expirer
                    .expire_question(&self.shared.fence, &q)
                    .await
                {
                    Ok(q) => q,
                    Err(e) => {
                        self.halt_on(e);
                        return suspend().await;
                    }
                }
            }
            Some(q) if q.status == QuestionStatus::Pending => {
                lock(&self.shared.park).waiting_questions.push(q.id);
                self.shared.parked(Park::Input {
                    wake_at: q.expires_at,
                });
                return suspend().await;
            }
            Some(q) => q,
            None => {
                self.boundary().await;
                let expires_at =
                    crate::storable::after(Utc::now(), self.shared.config.question_ttl);
                let id = QuestionId::new();
                {
                    let emitted = self.take_emitted();
                    let mut park = lock(&self.shared.park);
                    park.events.extend(emitted);
                    park.events.push(NewEvent::new(
                    EventKind::InputRequested,
                    json!({ "question_id": id, "step_key": key, "question": question, "expires_at": expires_at }),
                ));
                    park.questions.push(NewQuestion {
                        id,
                        step_key: key,
                        question,
                        expires_at,
                    });
                }
                self.shared.parked(Park::Input {
                    wake_at: expires_at,
                });
                return suspend().await;
            }
        };
        Ok(InputOutcome {
            question_id: q.id,
            answer: q.answer,
            answered_by: q.answered_by,
        })
    }
}

fn sleeping_record(key: &str, started: DateTime<Utc>, until: DateTime<Utc>) -> StepRecord {
    StepRecord {
        key: key.to_owned(),
        status: StepStatus::Sleeping,
        input: Some(json!({ "sleep_until": until })),
        output: None,
        usage: None,
        error: None,
        attempts: 1,
        started_at: Some(started),
        finished_at: None,
        next_attempt_at: Some(until),
    }
}
