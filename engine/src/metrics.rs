//! What this process measures as it works: step and run durations, model tokens and
//! cost, and the trigger counters (webhook notifications, schedule fires). Each
//! `Engine` owns one [`Metrics`] (no global registry, so engines in one test process
//! do not share counters); workers observe into it, and code outside the core
//! (model calls, triggers, the webhook endpoint) increments it through
//! [`crate::Engine::metrics`].
//!
//! Nothing here knows HTTP or the exposition format: [`Metrics::register`] adds the
//! families to a `prometheus_client` registry, and the API encodes it. Values that
//! describe the whole cluster (runs per state, queue depth, approvals pending) are not
//! here: they come from the database (`Engine::cluster_stats`), so every replica
//! reports the same numbers.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::status::{RunStatus, StepStatus};
use crate::usage::Usage;

/// How a step's attempts are labelled when its code gives no kind.
pub const DEFAULT_STEP_KIND: &str = "step";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabels {
    workflow: String,
    kind: String,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    workflow: String,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    provider: String,
    model: String,
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    provider: String,
    model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// 5 ms … about 5.5 min: a step is a tool call, a model call or a decision.
fn step_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 17))
}

/// 100 ms … about 55 min: runs last up to their deadline (≤ 30 min) plus waits.
fn run_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.1, 2.0, 16))
}

/// What became of one Alertmanager notification (each counts under exactly one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WebhookOutcome {
    /// Matched a team: a run was started, or it was recorded on the group's active run.
    Routed,
    /// Everything in it had been seen before (`groupKey` + fingerprint + `startsAt`).
    Deduplicated,
    /// No team's matchers matched it.
    Unrouted,
}

impl WebhookOutcome {
    pub const ALL: [WebhookOutcome; 3] = [Self::Routed, Self::Deduplicated, Self::Unrouted];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Routed => "routed",
            Self::Deduplicated => "deduplicated",
            Self::Unrouted => "unrouted",
        }
    }
}

/// What became of one due tick of a schedule (each counts under exactly one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScheduleOutcome {
    /// A run was started for the tick.
    Fired,
    /// Not started: a run of the schedule was still active (overlap policy `skip`).
    Skipped,
    /// Passed while no scheduler was running and not caught up (catch-up `skip`).
    Missed,
    /// Its run was refused for good (recorded on the fire).
    Failed,
}

impl ScheduleOutcome {
    pub const ALL: [ScheduleOutcome; 4] = [Self::Fired, Self::Skipped, Self::Missed, Self::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fired => "fired",
            Self::Skipped => "skipped",
            Self::Missed => "missed",
            Self::Failed => "failed",
        }
    }
}

/// This process's metrics. Cheap to clone (the families are shared).
#[derive(Clone)]
pub struct Metrics {
    steps: HistogramFamily<StepLabels>,
    runs: HistogramFamily<RunLabels>,
    llm_tokens: Family<TokenLabels, Counter>,
    llm_cost: Family<ModelLabels, Counter<f64, AtomicU64>>,
    webhook_notifications: Family<OutcomeLabels, Counter>,
    schedule_fires: Family<OutcomeLabels, Counter>,
    stats: Arc<crate::stats::Stats>,
}

impl Metrics {
    pub(crate) fn new(stats: Arc<crate::stats::Stats>) -> Self {
        let metrics = Self {
            steps: Family::new_with_constructor(step_histogram),
            runs: Family::new_with_constructor(run_histogram),
            llm_tokens: Family::default(),
            llm_cost: Family::default(),
            webhook_notifications: Family::default(),
            schedule_fires: Family::default(),
            stats,
        };
        // Every outcome is exported from the start (at zero), so a dashboard's
        // `rate()` has a series before the first notification or tick.
        for outcome in WebhookOutcome::ALL {
            metrics
                .webhook_notifications
                .get_or_create_owned(&OutcomeLabels {
                    outcome: outcome.as_str(),
                });
        }
        for outcome in ScheduleOutcome::ALL {
            metrics.schedule_fires.get_or_create_owned(&OutcomeLabels {
                outcome: outcome.as_str(),
            });
        }
        metrics
    }

    /// One attempt of a step of `workflow` ended with `status` (SUCCEEDED, FAILED or
    /// RETRY_WAIT) after `elapsed`, its checkpoint committed. `kind` comes from
    /// [`crate::StepOptions::kind`]: a small fixed set (never an id), or the
    /// series would multiply.
    pub(crate) fn observe_step(
        &self,
        workflow: &str,
        kind: &str,
        status: StepStatus,
        elapsed: Duration,
    ) {
        self.steps
            .get_or_create(&StepLabels {
                workflow: workflow.to_owned(),
                kind: kind.to_owned(),
                status: status.as_str(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// A run of `workflow` reached the terminal `status` in this process, `elapsed`
    /// after it was created (queueing and waits for people included).
    pub(crate) fn observe_run(&self, workflow: &str, status: RunStatus, elapsed: Duration) {
        self.runs
            .get_or_create(&RunLabels {
                workflow: workflow.to_owned(),
                status: status.as_str(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Tokens and cost of one model call by this process. `provider` is the
    /// configured provider's name (empty when unknown: the model alone labels it).
    pub fn llm_usage(&self, provider: &str, model: &str, usage: Usage) {
        let token = |direction| TokenLabels {
            provider: provider.to_owned(),
            model: model.to_owned(),
            direction,
        };
        self.llm_tokens
            .get_or_create(&token("input"))
            .inc_by(usage.input_tokens);
        self.llm_tokens
            .get_or_create(&token("output"))
            .inc_by(usage.output_tokens);
        if usage.cost_usd.is_finite() && usage.cost_usd > 0.0 {
            self.llm_cost
                .get_or_create(&ModelLabels {
                    provider: provider.to_owned(),
                    model: model.to_owned(),
                })
                .inc_by(usage.cost_usd);
        }
    }

    /// Counts one Alertmanager notification under its outcome.
    pub fn webhook_notification(&self, outcome: WebhookOutcome) {
        self.webhook_notifications
            .get_or_create(&OutcomeLabels {
                outcome: outcome.as_str(),
            })
            .inc();
    }

    /// Counts one due schedule tick under its outcome.
    pub fn schedule_fire(&self, outcome: ScheduleOutcome) {
        self.schedule_fires(outcome, 1);
    }

    /// Counts `n` due schedule ticks under one outcome (a tick's report).
    pub fn schedule_fires(&self, outcome: ScheduleOutcome, n: u64) {
        self.schedule_fires
            .get_or_create(&OutcomeLabels {
                outcome: outcome.as_str(),
            })
            .inc_by(n);
    }

    /// Adds this process's families to `registry` (whose prefix, e.g. `aiops`,
    /// comes first in every name): the histograms and counters above and the
    /// engine's counters of rare events.
    pub fn register(&self, registry: &mut Registry) {
        registry.register_with_unit(
            "step_duration",
            "Duration of step attempts in this process, from start to committed result, \
             by workflow, step kind and how the attempt ended",
            Unit::Seconds,
            self.steps.clone(),
        );
        registry.register_with_unit(
            "run_duration",
            "Time from a run's creation to its terminal state, for runs that ended in \
             this process, by workflow and final status",
            Unit::Seconds,
            self.runs.clone(),
        );
        registry.register(
            "llm_tokens",
            "Tokens of model calls made by this process, by provider, model and \
             direction (input or output)",
            self.llm_tokens.clone(),
        );
        registry.register_with_unit(
            "llm_cost",
            "Cost of model calls made by this process at the configured prices, by \
             provider and model",
            Unit::Other("usd".to_owned()),
            self.llm_cost.clone(),
        );
        registry.register(
            "webhook_notifications",
            "Alertmanager notifications received by this process, by outcome (routed, \
             deduplicated, unrouted)",
            self.webhook_notifications.clone(),
        );
        registry.register(
            "schedule_fires",
            "Due schedule ticks handled by this process, by outcome (fired, skipped \
             because a run was still active, missed during downtime, failed)",
            self.schedule_fires.clone(),
        );
        registry.register_collector(Box::new(RareEvents(self.stats.clone())));
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the series: an `Attempt`'s Debug would print every one of them.
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// The engine's counters of rare events (`Engine::stats`), read at each scrape.
#[derive(Debug)]
struct RareEvents(Arc<crate::stats::Stats>);

impl Collector for RareEvents {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self.0.snapshot();
        let counters = [
            (
                "checkpoint_retries",
                "Checkpoint batches that lost a race with another transaction and were committed again.",
                s.checkpoint_retries,
            ),
            (
                "checkpoint_batches_isolated",
                "Checkpoint batches split because the database refused one checkpoint's data.",
                s.checkpoint_batches_isolated,
            ),
            (
                "checkpoints_refused",
                "Checkpoints the database refused for their data (each failed only its own step or run).",
                s.checkpoints_refused,
            ),
            (
                "heartbeat_failures",
                "Lease heartbeats of this process's worker that failed.",
                s.heartbeat_failures,
            ),
            (
                "leases_lost",
                "Run executions this process abandoned because their lease was gone.",
                s.leases_lost,
            ),
            (
                "database_statements",
                "Statements this process sent to the database.",
                s.statements,
            ),
            (
                "database_notifications",
                "Notifications (NOTIFY) this process sent to other processes: event hints, wake-ups, live events, control signals.",
                s.notifications,
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value);
            let metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(metrics: &Metrics) -> String {
        let mut registry = Registry::with_prefix("aiops");
        metrics.register(&mut registry);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).expect("encode");
        out
    }

    #[test]
    fn families_are_named_by_convention_and_zero_outcomes_are_present() {
        let metrics = Metrics::new(Arc::default());
        metrics.observe_step(
            "script",
            "work",
            StepStatus::Succeeded,
            Duration::from_millis(20),
        );
        metrics.observe_run("script", RunStatus::Succeeded, Duration::from_secs(2));
        metrics.llm_usage(
            "openai",
            "gpt-x",
            Usage {
                input_tokens: 10,
                output_tokens: 3,
                cost_usd: 0.25,
            },
        );
        metrics.schedule_fire(ScheduleOutcome::Fired);
        let out = text(&metrics);
        for line in [
            "aiops_step_duration_seconds_count{workflow=\"script\",kind=\"work\",status=\"SUCCEEDED\"} 1",
            "aiops_run_duration_seconds_count{workflow=\"script\",status=\"SUCCEEDED\"} 1",
            "aiops_llm_tokens_total{provider=\"openai\",model=\"gpt-x\",direction=\"input\"} 10",
            "aiops_llm_tokens_total{provider=\"openai\",model=\"gpt-x\",direction=\"output\"} 3",
            "aiops_llm_cost_usd_total{provider=\"openai\",model=\"gpt-x\"} 0.25",
            "aiops_webhook_notifications_total{outcome=\"unrouted\"} 0",
            "aiops_schedule_fires_total{outcome=\"fired\"} 1",
            "aiops_schedule_fires_total{outcome=\"missed\"} 0",
            "aiops_leases_lost_total 0",
        ] {
            assert!(
                out.lines().any(|l| l == line),
                "missing {line:?} in:\n{out}"
            );
        }
    }
}
