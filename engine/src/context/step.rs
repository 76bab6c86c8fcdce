//! Durable steps: run once, record the result, replay it afterwards.

use std::fmt::Display;
use std::future::Future;
use std::panic::AssertUnwindSafe;

use chrono::Utc;
use futures::FutureExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value as Json, json};
use tracing::Instrument;

use crate::event::{EventKind, NewEvent};
use crate::retry::StepFailure;
use crate::status::StepStatus;
use crate::store::checkpoint::StepRecord;

use super::{
    Attempt, Halt, InFlight, Park, StepContext, StepError, StepOptions, UsageMeter, lock,
    panic_message, suspend,
};
use crate::usage::Usage;

impl StepContext {
    /// Runs `f` once as a durable step with the default options.
    pub async fn step<T, F, Fut>(&self, key: impl Display, f: F) -> Result<T, StepError>
    where
        T: Serialize + DeserializeOwned,
        F: FnMut(Attempt) -> Fut,
        Fut: Future<Output = Result<T, StepFailure>>,
    {
        self.step_with(key, StepOptions::default(), f).await
    }

    /// Runs `f` as a durable step: a recorded result is returned without running;
    /// otherwise attempts are made until success, a permanent failure, or the retry
    /// budget is spent. A panic inside `f` is a permanent failure of the step.
    pub async fn step_with<T, F, Fut>(
        &self,
        key: impl Display,
        opts: StepOptions,
        mut f: F,
    ) -> Result<T, StepError>
    where
        T: Serialize + DeserializeOwned,
        F: FnMut(Attempt) -> Fut,
        Fut: Future<Output = Result<T, StepFailure>>,
    {
        let key = self.claim_key(key)?;
        if let Some(input) = &opts.input {
            crate::storable::check_json(input, "input").map_err(|message| {
                StepError::Unstorable {
                    key: key.clone(),
                    message,
                }
            })?;
        }
        let recorded = lock(&self.shared.memo).get(&key).cloned();
        let mut attempts = 0u32;
        let mut first_started = None;
        // What the step used so far, over all its attempts (recorded ones included).
        let mut usage = Usage::default();
        if let Some(step) = recorded {
            // Whatever this context emitted before the step went out with its first
            // record: replaying it must not emit it twice.
            self.discard_emitted();
            match step.status {
                StepStatus::Succeeded => {
                    let output = step.output.unwrap_or(Json::Null);
                    return serde_json::from_value(output).map_err(|e| StepError::OutputMismatch {
                        key,
                        message: e.to_string(),
                    });
                }
                StepStatus::Failed => {
                    return Err(StepError::Failed {
                        key,
                        message: step.error.unwrap_or_default(),
                    });
                }
                StepStatus::RetryWait | StepStatus::Running | StepStatus::Sleeping => {
                    // An attempt interrupted by a crash counts as an attempt.
                    attempts = step.attempts.max(0) as u32;
                    first_started = step.started_at;
                    usage = step.usage;
                    if let Some(next) = step.next_attempt_at {
                        self.wait_until(next, |wake_at| Park::Retry { wake_at })
                            .await;
                    }
                }
            }
        }
        self.boundary().await;
        let policy = opts
            .retry
            .clone()
            .unwrap_or_else(|| self.shared.config.retry.clone());
        let idempotency_key = format!("{}/{}", self.shared.fence.run_id, key);
        // Events this context emitted before the step ride on its first commit.
        let mut emitted = self.take_emitted();
        // Log lines of the step's code (and of its end, below) carry its key; the
        // run's span (run_id, workflow, attempt) is the parent.
        let span = tracing::info_span!("step", step_key = %key);
        let kind = opts.kind.unwrap_or(crate::metrics::DEFAULT_STEP_KIND);
        // Observed once the attempt's outcome is committed.
        let ended = |status: StepStatus, started: std::time::Instant, attempts: u32| {
            let elapsed = started.elapsed();
            self.shared.engine.metrics().observe_step(
                &self.shared.info.workflow,
                kind,
                status,
                elapsed,
            );
            span.in_scope(|| {
                tracing::debug!(
                    %status,
                    attempts,
                    elapsed_ms = elapsed.as_millis() as u64,
                    "step attempt ended"
                )
            });
        };
        loop {
            // What earlier steps returned is durable before this attempt runs.
            self.flush_held().await;
            // In flight only while an attempt runs: a parked retry wait must not count.
            let in_flight = InFlight::new(&self.shared);
            attempts += 1;
            let started_at = Utc::now();
            let started = std::time::Instant::now();
            let first_started_at = *first_started.get_or_insert(started_at);
            let meter = UsageMeter::default();
            let attempt = Attempt {
                number: attempts,
                idempotency_key: idempotency_key.clone(),
                first_started_at,
                usage: meter.clone(),
                metrics: self.shared.engine.metrics().clone(),
            };
            let record = |status,
                          output,
                          error,
                          usage: Usage,
                          finished_at,
                          next_attempt_at,
                          attempts: u32| {
                StepRecord {
                    key: key.clone(),
                    status,
                    input: opts.input.clone(),
                    output,
                    usage: usage.to_json(),
                    error,
                    attempts: attempts as i32,
                    started_at: Some(first_started_at),
                    finished_at,
                    next_attempt_at,
                }
            };
            let started_event = NewEvent::new(
                EventKind::StepStarted,
                json!({ "step_key": key, "attempt": attempts }),
            );
            let body = super::STEP_BODY.scope(key.clone(), f(attempt));
            let running = AssertUnwindSafe(body.instrument(span.clone())).catch_unwind();
            let timed = async {
                match opts.timeout {
                    Some(limit) => match tokio::time::timeout(limit, running).await {
                        Ok(r) => r,
                        Err(_) => Ok(Err(StepFailure::retryable(format!(
                            "attempt timed out after {} ms",
                            limit.as_millis()
                        )))),
                    },
                    None => running.await,
                }
            };
            tokio::pin!(timed);
            // Fast steps record STEP_STARTED together with their result (one commit per
            // step); slow ones announce themselves while still running.
            let mut started_written = None;
            let result = match tokio::time::timeout(
                self.shared.config.started_event_delay,
                &mut timed,
            )
            .await
            {
                Ok(r) => r,
                Err(_) => {
                    let mut cp = self.checkpoint();
                    cp.steps.push(record(
                        StepStatus::Running,
                        None,
                        None,
                        usage,
                        None,
                        None,
                        attempts,
                    ));
                    cp.events.append(&mut emitted);
                    cp.events.push(started_event.clone());
                    started_written = Some(self.shared.submit(cp).await);
                    timed.await
                }
            };
            let started_recorded = started_written.is_some();
            if let Some(rx) = started_written {
                match rx.await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        self.halt_on(e);
                        return suspend().await;
                    }
                    // The writer dropped the reply: it is gone, so is our footing.
                    Err(_) => {
                        self.shared.halt(Halt::LeaseLost);
                        return suspend().await;
                    }
                }
            }
            // The attempt's usage counts whatever its outcome; what the attempt
            // emitted rides on the commit that records it.
            let spent = meter.take();
            usage += spent;
            self.shared.add_usage(spent);
            emitted.append(&mut self.take_emitted());
            let failure = match result {
                Ok(Ok(value)) => match serde_json::to_value(&value)
                    .map_err(|e| format!("output is not representable as JSON: {e}"))
                    .and_then(|output| {
                        crate::storable::check_json(&output, "output")
                            .map(|()| output)
                            .map_err(|e| format!("step result cannot be stored: {e}"))
                    }) {
                    Ok(output) => {
                        let finished_at = Utc::now();
                        let mut cp = self.checkpoint();
                        if !started_recorded {
                            cp.events.push(started_event.clone());
                        }
                        cp.events.extend(emitted.iter().cloned());
                        cp.steps.push(record(
                            StepStatus::Succeeded,
                            Some(output),
                            None,
                            usage,
                            Some(finished_at),
                            None,
                            attempts,
                        ));
                        cp.events.push(NewEvent::new(
                            EventKind::StepSucceeded,
                            json!({
                                "step_key": key,
                                "attempts": attempts,
                                "duration_ms": (finished_at - started_at).num_milliseconds(),
                            }),
                        ));
                        // Checked as the writer would: a value it refuses fails this
                        // step, nothing else.
                        match cp.validate() {
                            Ok(()) => {
                                self.shared.hold(cp);
                                ended(StepStatus::Succeeded, started, attempts);
                                return Ok(value);
                            }
                            Err(e) => {
                                StepFailure::permanent(format!("step result cannot be stored: {e}"))
                            }
                        }
                    }
                    Err(e) => StepFailure::permanent(e),
                },
                Ok(Err(failure)) => failure,
                Err(panic) => {
                    StepFailure::permanent(format!("step panicked: {}", panic_message(&panic)))
                }
            };
            let mut cp = self.checkpoint();
            if !started_recorded {
                cp.events.push(started_event);
            }
            cp.events.append(&mut emitted);
            // A dependency known to be down (an open circuit breaker) is waited out
            // without spending the step's attempts.
            let counted = !failure.is_unavailable();
            if !counted {
                attempts -= 1;
            }
            let retry = failure.is_retryable() && (!counted || attempts <= policy.max_retries);
            let message = crate::storable::scrub(&failure.to_string());
            if !retry {
                cp.steps.push(record(
                    StepStatus::Failed,
                    None,
                    Some(message.clone()),
                    usage,
                    Some(Utc::now()),
                    None,
                    attempts,
                ));
                cp.events.push(NewEvent::new(
                    EventKind::StepFailed,
                    json!({ "step_key": key, "attempts": attempts, "error": message, "retryable": failure.is_retryable() }),
                ));
                self.commit(cp).await;
                ended(StepStatus::Failed, started, attempts);
                return Err(StepError::Failed { key, message });
            }
            let delay = match failure.retry_after() {
                Some(wait) if !counted => wait,
                after => policy.delay(attempts, after),
            };
            let next_attempt_at = crate::storable::after(Utc::now(), delay);
            cp.steps.push(record(
                StepStatus::RetryWait,
                None,
                Some(message.clone()),
                usage,
                None,
                Some(next_attempt_at),
                attempts,
            ));
            cp.events.push(NewEvent::new(
                EventKind::StepRetryScheduled,
                json!({
                    "step_key": key,
                    "attempt": attempts,
                    "counted": counted,
                    "error": message,
                    "delay_ms": delay.as_millis() as u64,
                    "next_attempt_at": next_attempt_at,
                }),
            ));
            self.commit(cp).await;
            ended(StepStatus::RetryWait, started, attempts);
            drop(in_flight);
            self.wait_until(next_attempt_at, |wake_at| Park::Retry { wake_at })
                .await;
        }
    }
}
