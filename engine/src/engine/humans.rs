//! People in the loop: approvals and questions, and their decisions.

use chrono::Utc;
use serde_json::json;

use super::Engine;
use crate::event::{EventKind, NewEvent};
use crate::ids::{ApprovalId, QuestionId, RunId};
use crate::page::{KeyOf, Page, PageRequest};
use crate::status::{ApprovalStatus, QuestionStatus, RunStatus};
use crate::store;
use crate::store::approvals::Approval;
use crate::store::questions::Question;
use crate::store::runs::RunPatch;
use crate::{Error, Result};

enum HumanDecision<'a> {
    Approval {
        id: ApprovalId,
        status: ApprovalStatus,
        by: &'a str,
        comment: Option<&'a str>,
    },
    Answer {
        id: QuestionId,
        answer: &'a str,
        by: &'a str,
    },
}

/// A person's decision on an approval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Reject,
}

impl Engine {
    pub async fn approval(&self, id: ApprovalId) -> Result<Approval> {
        store::approvals::get(&self.inner.db, id)
            .await?
            .ok_or_else(|| Error::not_found("approval", id))
    }

    /// A page of the approvals waiting for a decision, oldest first.
    pub async fn pending_approvals(
        &self,
        page: &PageRequest<KeyOf<Approval>>,
    ) -> Result<Page<Approval>> {
        store::approvals::list_pending(&self.inner.db, page).await
    }

    pub async fn approvals_of_run(&self, run_id: RunId) -> Result<Vec<Approval>> {
        store::approvals::list_for_run(&self.inner.db, run_id).await
    }

    pub async fn question(&self, id: QuestionId) -> Result<Question> {
        store::questions::get(&self.inner.db, id)
            .await?
            .ok_or_else(|| Error::not_found("question", id))
    }

    /// A page of the questions waiting for an answer, oldest first.
    pub async fn pending_questions(
        &self,
        page: &PageRequest<KeyOf<Question>>,
    ) -> Result<Page<Question>> {
        store::questions::list_pending(&self.inner.db, page).await
    }

    /// Approves or rejects a pending approval; the run continues with the decision.
    /// Deciding one that is not pending (or has expired) fails and changes nothing.
    pub async fn decide_approval(
        &self,
        id: ApprovalId,
        decision: Decision,
        by: &str,
        comment: Option<&str>,
    ) -> Result<Approval> {
        crate::storable::check_text(by, "decided_by").map_err(Error::Invalid)?;
        if let Some(c) = comment {
            crate::storable::check_text(c, "comment").map_err(Error::Invalid)?;
        }
        let approval = self.approval(id).await?;
        let status = match decision {
            Decision::Approve => ApprovalStatus::Approved,
            Decision::Reject => ApprovalStatus::Rejected,
        };
        let event = NewEvent::new(
            EventKind::ApprovalDecided,
            json!({ "approval_id": id, "step_key": approval.step_key, "status": status, "decided_by": by, "comment": comment }),
        );
        let won = self
            .record_human_decision(
                approval.run_id,
                RunStatus::WaitingApproval,
                event,
                HumanDecision::Approval {
                    id,
                    status,
                    by,
                    comment,
                },
            )
            .await?;
        let decided = self.approval(id).await?;
        if !won || decided.status != status {
            // Still PENDING here means it is past its expiry, not yet closed by the worker.
            let current = match decided.status {
                ApprovalStatus::Pending => ApprovalStatus::Expired,
                other => other,
            };
            return Err(Error::NotPending {
                what: "approval",
                id: id.to_string(),
                status: current.to_string(),
            });
        }
        Ok(decided)
    }

    /// Answers a pending question; the run continues with the answer.
    pub async fn answer_question(
        &self,
        id: QuestionId,
        answer: &str,
        by: &str,
    ) -> Result<Question> {
        if answer.trim().is_empty() {
            return Err(Error::Invalid("answer: must not be empty".into()));
        }
        crate::storable::check_text(answer, "answer").map_err(Error::Invalid)?;
        crate::storable::check_text(by, "answered_by").map_err(Error::Invalid)?;
        let question = self.question(id).await?;
        let event = NewEvent::new(
            EventKind::InputReceived,
            json!({ "question_id": id, "step_key": question.step_key, "status": QuestionStatus::Answered, "answered_by": by }),
        );
        let won = self
            .record_human_decision(
                question.run_id,
                RunStatus::WaitingInput,
                event,
                HumanDecision::Answer { id, answer, by },
            )
            .await?;
        let current = self.question(id).await?;
        if !won {
            // Still PENDING here means it is past its expiry, not yet closed by the worker.
            let status = match current.status {
                QuestionStatus::Pending => QuestionStatus::Expired,
                other => other,
            };
            return Err(Error::NotPending {
                what: "question",
                id: id.to_string(),
                status: status.to_string(),
            });
        }
        Ok(current)
    }

    /// Hands a run the result of one of its pending tool calls that a person
    /// answers (`ask_human`): the call is named by its id, the last segment of the
    /// waiting step's key. A result that answers no pending call of the run (an
    /// unknown id, a call already answered) is refused, and the refusal is
    /// recorded in the run's log as a TOOL_RESULT event marked `refused`.
    pub async fn submit_tool_result(
        &self,
        run_id: RunId,
        call_id: &str,
        result: &str,
        by: &str,
    ) -> Result<Question> {
        crate::storable::check_text(call_id, "tool_call_id").map_err(Error::Invalid)?;
        crate::storable::check_text(by, "submitted_by").map_err(Error::Invalid)?;
        let questions = store::questions::list_for_run(&self.inner.db, run_id).await?;
        if questions.is_empty() {
            // Unknown runs are NOT_FOUND; known ones get the audited refusal.
            self.run(run_id).await?;
        }
        let call_of = |q: &Question| {
            q.step_key
                .rsplit('/')
                .next()
                .map(crate::context::decode_key_segment)
        };
        let pending: Vec<&Question> = questions
            .iter()
            .filter(|q| q.status == QuestionStatus::Pending)
            .collect();
        if let Some(q) = pending
            .iter()
            .find(|q| call_of(q).as_deref() == Some(call_id))
        {
            return self.answer_question(q.id, result, by).await;
        }
        let mut ids: Vec<String> = pending.iter().filter_map(|q| call_of(q)).collect();
        ids.sort();
        let error = format!(
            "run {run_id} has no pending tool call with id {call_id:?} (pending: {}); the result is refused",
            if ids.is_empty() {
                "none".to_owned()
            } else {
                ids.join(", ")
            }
        );
        let event = NewEvent::new(
            EventKind::ToolResult,
            json!({ "call_id": call_id, "ok": false, "refused": true, "submitted_by": by, "error": error }),
        );
        // The run's state stays as it is; only the audit record is added.
        self.change_run(run_id, |_| {
            Ok(Some((RunPatch::default(), vec![event.clone()], None)))
        })
        .await?;
        Err(Error::Conflict(error))
    }

    /// Locks the run row, applies `decide` (which must return whether it won), and
    /// moves a run waiting for exactly this kind of decision back to RUNNING — all
    /// in one transaction, so a worker parking the run at the same moment either sees
    /// the decision or is seen by it. Returns `false`, having written nothing, when the
    /// approval or question was no longer pending (decided or expired).
    async fn record_human_decision(
        &self,
        run_id: RunId,
        waiting: RunStatus,
        event: NewEvent,
        decision: HumanDecision<'_>,
    ) -> Result<bool> {
        let now = Utc::now();
        let txn = store::begin_write(&self.inner.db).await?;
        let status = store::runs::lock_row(&txn, run_id)
            .await?
            .ok_or_else(|| Error::not_found("run", run_id))?;
        let remaining = store::runs::get(&txn, run_id)
            .await?
            .ok_or_else(|| Error::not_found("run", run_id))?
            .remaining_ms;
        let won = match decision {
            HumanDecision::Approval {
                id,
                status,
                by,
                comment,
            } => store::approvals::decide(&txn, id, status, Some(by), comment, now).await?,
            HumanDecision::Answer { id, answer, by } => {
                store::questions::close(&txn, id, Some(answer), Some(by), now).await?
            }
        };
        if !won {
            txn.rollback().await?;
            return Ok(false);
        }
        let patch = if status == waiting {
            RunPatch {
                status: Some(RunStatus::Running),
                deadline_at: Some(remaining.map(|r| now + chrono::Duration::milliseconds(r))),
                remaining_ms: Some(None),
                wake_at: Some(None),
                ..RunPatch::default()
            }
        } else {
            RunPatch::default()
        };
        let written = store::runs::apply_patch(&txn, run_id, status, &patch, &[event], now)
            .await?
            .ok_or_else(|| {
                Error::Conflict(format!("run {run_id} changed concurrently; try again"))
            })?;
        let runnable = patch.status.is_some();
        txn.commit().await?;
        self.inner.bus.publish_events(&written);
        if runnable {
            self.runnable();
        }
        Ok(true)
    }

    /// Approvals still pending that were requested at or after `since`.
    pub async fn approvals_pending_since(
        &self,
        since: chrono::DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<Approval>> {
        store::approvals::pending_requested_since(&self.inner.db, since, limit).await
    }
}
