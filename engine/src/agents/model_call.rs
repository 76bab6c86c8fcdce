//! One model call as a durable step: the team's fallback list tried in order behind
//! each endpoint's circuit breaker, streamed tokens sent live (`LLM_TOKEN`), usage and
//! cost recorded with the step, the run's budget checked before anything is spent.
//!
//! `builtin:rules` ends every list: when no model can answer, the caller does the
//! unit's work with the rule-based analyst. While every model's breaker is open the
//! step waits in `RETRY_WAIT` without spending attempts, up to [`MAX_PARKED`].

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::context::{ApprovalRequest, StepContext, StepError, StepOptions};
use crate::llm::chat::{ChatReply, ChatRequest};
use crate::llm::client::{CallError, LlmClient};
use crate::retry::StepFailure;
use crate::status::ApprovalStatus;
use crate::topology::{Limits, ModelRef};
use crate::usage::Usage;

use super::rules::RULES_ANALYST;

/// The name of the model every team may use; a stored model of that name, or the
/// rule-based analyst when none is configured.
pub const DEFAULT_MODEL: &str = "default";
/// Longest a call waits for an open breaker before the rule-based analyst takes over.
pub const MAX_PARKED: Duration = Duration::from_secs(120);
/// A model that failed this often in a row (retryable failures) is left for the next.
const RETRIES_BEFORE_FAILOVER: u32 = 2;

/// The step-duration metric's `kind` of model calls.
const LLM_STEP: &str = "llm";

/// What a call produced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Answer {
    Reply(ChatReply),
    /// No model could answer: do this part with the rule-based analyst.
    Rules {
        reason: String,
    },
    /// The run's budget is spent; nothing was called.
    OverBudget {
        used: Usage,
    },
}

/// The fallback list with `builtin:rules` at its end, keeping only the models that
/// were stored when the run started (`stored`, a recorded step): an unconfigured
/// `default` means the rule-based analyst, with no model step at all.
pub fn fallback_list(model: &ModelRef, stored: &BTreeSet<String>) -> Vec<String> {
    let mut names: Vec<String> = model.names().into_iter().map(str::to_owned).collect();
    if let Some(i) = names.iter().position(|n| n == RULES_ANALYST) {
        names.truncate(i);
    }
    names.retain(|n| stored.contains(n));
    names.push(RULES_ANALYST.to_owned());
    names
}

/// Whether the list has a model to call before the rule-based analyst (a stored
/// `default` counts; that is decided when calling).
pub fn wants_llm(models: &[String]) -> bool {
    models.first().is_some_and(|m| m != RULES_ANALYST)
}

/// The run's token and cost budget, extended by approvals.
#[derive(Clone, Debug)]
pub struct Budget(Arc<Mutex<BudgetState>>);

#[derive(Debug)]
struct BudgetState {
    original: Limits,
    max_tokens: u64,
    max_cost_usd: f64,
    exhausted: Option<String>,
}

impl Budget {
    pub fn new(limits: &Limits) -> Self {
        Self(Arc::new(Mutex::new(BudgetState {
            original: limits.clone(),
            max_tokens: limits.max_tokens,
            max_cost_usd: limits.max_cost_usd,
            exhausted: None,
        })))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BudgetState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Why the budget is spent for good (an extension was refused), if it is.
    pub fn exhausted(&self) -> Option<String> {
        self.lock().exhausted.clone()
    }

    fn over(&self, used: Usage) -> bool {
        let s = self.lock();
        s.exhausted.is_some()
            || used.input_tokens + used.output_tokens >= s.max_tokens
            || used.cost_usd >= s.max_cost_usd
    }

    /// Applies an extension decision: `max_tokens=N` / `max_cost_usd=X` in the
    /// approver's comment set the new limits; without them the original budget is
    /// granted again on top of what was used.
    fn extend(&self, used: Usage, comment: Option<&str>) {
        let mut s = self.lock();
        let asked = |name: &str| -> Option<f64> {
            let comment = comment?;
            let at = comment.find(name)? + name.len();
            let rest = comment[at..].trim_start_matches([' ', '=', ':']);
            let end = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(rest.len());
            rest[..end].parse().ok()
        };
        let tokens = asked("max_tokens")
            .map(|t| t as u64)
            .unwrap_or(used.input_tokens + used.output_tokens + s.original.max_tokens);
        let cost = asked("max_cost_usd").unwrap_or(used.cost_usd + s.original.max_cost_usd);
        s.max_tokens = s.max_tokens.max(tokens);
        s.max_cost_usd = s.max_cost_usd.max(cost);
    }

    fn refuse(&self, why: String) {
        self.lock().exhausted.get_or_insert(why);
    }

    fn limits(&self) -> (u64, f64) {
        let s = self.lock();
        (s.max_tokens, s.max_cost_usd)
    }
}

/// Calls a model for one unit of work.
#[derive(Clone)]
pub struct Caller {
    pub client: LlmClient,
    pub budget: Budget,
    /// The team's models that were configured when the run started.
    pub stored: Arc<BTreeSet<String>>,
}

impl Caller {
    /// [`fallback_list`] of `model`.
    pub fn models(&self, model: &ModelRef) -> Vec<String> {
        fallback_list(model, &self.stored)
    }

    /// Asks the first model of `models` that answers, as the step `key` of `ctx`; a
    /// spent budget first asks a person to extend it (`{key}/budget`).
    pub async fn ask(
        &self,
        ctx: &StepContext,
        key: &str,
        models: &[String],
        prompt: &str,
        request: &ChatRequest,
    ) -> Result<Answer, StepError> {
        let mut answer = self.ask_once(ctx, key, models, prompt, request).await?;
        // Each extension that still leaves the budget spent asks again.
        for n in 1.. {
            let Answer::OverBudget { used } = answer else {
                return Ok(answer);
            };
            let (max_tokens, max_cost_usd) = self.limits_now();
            let decision = ctx
                .wait_approval(
                    format!("{key}/budget/{n}"),
                    ApprovalRequest {
                        tool: "extend_budget".to_owned(),
                        args: json!({
                            "used_tokens": used.input_tokens + used.output_tokens,
                            "used_cost_usd": used.cost_usd,
                            "max_tokens": max_tokens,
                            "max_cost_usd": max_cost_usd,
                        }),
                        risk_note: Some(
                            "The run reached its token or cost budget. Approve to continue \
                             (write max_tokens=N or max_cost_usd=X in the comment to set the new \
                             limit; default: the original budget again); reject to finish with \
                             what it has."
                                .to_owned(),
                        ),
                        expires_in: None,
                    },
                )
                .await?;
            if decision.status != ApprovalStatus::Approved {
                let why = format!(
                    "the run's budget ran out ({} tokens, ${:.4}) and the extension was {}",
                    used.input_tokens + used.output_tokens,
                    used.cost_usd,
                    decision.status.as_str().to_ascii_lowercase()
                );
                self.budget.refuse(why.clone());
                return Ok(Answer::Rules { reason: why });
            }
            self.budget.extend(used, decision.comment.as_deref());
            answer = self
                .ask_once(ctx, &format!("{key}/extended/{n}"), models, prompt, request)
                .await?;
        }
        unreachable!("the loop returns")
    }

    fn limits_now(&self) -> (u64, f64) {
        self.budget.limits()
    }

    async fn ask_once(
        &self,
        ctx: &StepContext,
        key: &str,
        models: &[String],
        prompt: &str,
        request: &ChatRequest,
    ) -> Result<Answer, StepError> {
        let opts = StepOptions {
            input: Some(
                json!({ "models": models, "prompt": prompt, "messages": request.messages.len() }),
            ),
            kind: Some(LLM_STEP),
            ..StepOptions::default()
        };
        let live = ctx.clone();
        ctx.step_with(key, opts, |attempt| {
            let live = live.clone();
            async move {
                if let Some(reason) = self.budget.exhausted() {
                    return Ok(Answer::Rules { reason });
                }
                let used = live.usage();
                if self.budget.over(used) {
                    return Ok(Answer::OverBudget { used });
                }
                let mut failures: Vec<String> = Vec::new();
                let mut parked: Option<Duration> = None;
                for name in models {
                    if name == RULES_ANALYST {
                        break;
                    }
                    let conn = match live.engine().model_connection(name).await {
                        Ok(Some(conn)) => conn,
                        Ok(None) if name == DEFAULT_MODEL => continue,
                        Ok(None) => {
                            failures.push(format!("model {name:?} is not configured"));
                            continue;
                        }
                        Err(e) => return Err(StepFailure::retryable(e.to_string())),
                    };
                    let stream_ctx = live.clone();
                    let model_name = name.clone();
                    let on_text = move |text: &str| {
                        stream_ctx.stream(json!({ "model": model_name, "text": text }));
                    };
                    match self.client.complete(&conn, request, &on_text).await {
                        Ok(reply) => {
                            attempt.record_model_usage(
                                &conn.provider.name,
                                &conn.model.name,
                                Usage {
                                    input_tokens: reply.input_tokens,
                                    output_tokens: reply.output_tokens,
                                    cost_usd: conn
                                        .model
                                        .cost_usd(reply.input_tokens, reply.output_tokens),
                                },
                            );
                            return Ok(Answer::Reply(reply));
                        }
                        Err(CallError::Retry { message, after })
                            if attempt.number <= RETRIES_BEFORE_FAILOVER =>
                        {
                            tracing::warn!(model = %name, error = %message, "model call failed; retrying");
                            return Err(StepFailure::RateLimited {
                                message,
                                retry_after: after,
                            });
                        }
                        Err(CallError::Unavailable {
                            message,
                            retry_after,
                        }) => {
                            tracing::warn!(model = %name, error = %message, "model unavailable");
                            parked = Some(parked.map_or(retry_after, |p| p.min(retry_after)));
                            failures.push(message);
                        }
                        Err(e) => {
                            tracing::warn!(model = %name, error = %e, "model call failed; trying the next model");
                            failures.push(e.to_string());
                        }
                    }
                }
                let waited = (Utc::now() - attempt.first_started_at)
                    .to_std()
                    .unwrap_or_default();
                if let Some(wait) = parked
                    && waited < MAX_PARKED
                {
                    return Err(StepFailure::Unavailable {
                        message: failures.join("; "),
                        retry_after: wait.max(Duration::from_millis(100)),
                    });
                }
                Ok(Answer::Rules {
                    reason: if failures.is_empty() {
                        "no language model is configured".to_owned()
                    } else {
                        failures.join("; ")
                    },
                })
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_list_ends_with_the_rules() {
        let stored: BTreeSet<String> = ["a".to_owned(), "b".to_owned()].into();
        let list = fallback_list(&ModelRef::Fallback(vec!["a".into(), "b".into()]), &stored);
        assert_eq!(list, ["a", "b", RULES_ANALYST]);
        let list = fallback_list(
            &ModelRef::Fallback(vec!["a".into(), RULES_ANALYST.into(), "ignored".into()]),
            &stored,
        );
        assert_eq!(list, ["a", RULES_ANALYST]);
        // Unconfigured names (an unstored `default`, a deleted model) are left out.
        let list = fallback_list(
            &ModelRef::Fallback(vec![DEFAULT_MODEL.into(), "b".into()]),
            &stored,
        );
        assert_eq!(list, ["b", RULES_ANALYST]);
        assert!(!wants_llm(&fallback_list(
            &ModelRef::Name(DEFAULT_MODEL.into()),
            &stored
        )));
        assert!(!wants_llm(&fallback_list(
            &ModelRef::Name(RULES_ANALYST.into()),
            &stored
        )));
    }

    #[test]
    fn extensions_take_the_comment_or_grant_the_budget_again() {
        let budget = Budget::new(&Limits {
            max_tokens: 100,
            max_cost_usd: 1.0,
            ..Limits::default()
        });
        let used = Usage {
            input_tokens: 90,
            output_tokens: 20,
            cost_usd: 0.5,
        };
        assert!(budget.over(used));
        budget.extend(used, None);
        assert_eq!(budget.limits(), (210, 1.5));
        assert!(!budget.over(used));
        budget.extend(used, Some("ok, max_tokens=5000 max_cost_usd: 3.5"));
        assert_eq!(budget.limits(), (5000, 3.5));
        budget.refuse("no".into());
        assert!(budget.over(Usage::default()));
    }
}
