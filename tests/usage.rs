//! Usage and cost per step, agent, node and run (SPEC §5), recorded by a real workflow
//! at the keys an agent team uses, read from the engine and over GraphQL — where a
//! list of runs costs one usage query, not one per run. On Postgres and SQLite.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use aiops_engine::auth::Role;
use aiops_engine::{
    RetryPolicy, RunId, RunStatus, StartRun, StepContext, StepFailure, StepOptions, Usage, Worker,
    Workflow, key_segment,
};
use common::{Api, Backend, Harness, serve_api, token_for};
use futures::FutureExt;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const LIMIT: Duration = Duration::from_secs(30);

/// A step the test workflow records: where (branches, then key), how many attempts
/// (all but the last fail, each charged), what one attempt uses at scale 1, and the
/// node and agent it belongs to.
struct Row {
    branches: &'static [&'static str],
    key: &'static str,
    attempts: u32,
    input_tokens: u64,
    output_tokens: u64,
    cost_usd: f64,
    node: Option<&'static str>,
    agent: Option<&'static str>,
}

const ITER: &[&str] = &["node", "db", "agent", "metrics", "round", "0", "iter", "0"];

/// Costs are decimals that binary floats cannot hold exactly, so sums are compared
/// to 1e-9.
const ROWS: &[Row] = &[
    Row {
        branches: &["supervisor", "decide"],
        key: "llm",
        attempts: 1,
        input_tokens: 100,
        output_tokens: 10,
        cost_usd: 0.1,
        node: Some("supervisor"),
        agent: None,
    },
    Row {
        branches: &["node", "db", "supervisor", "round", "0"],
        key: "llm",
        attempts: 1,
        input_tokens: 200,
        output_tokens: 20,
        cost_usd: 0.2,
        node: Some("db"),
        agent: Some("supervisor"),
    },
    // Fails once, then succeeds: both attempts are charged.
    Row {
        branches: ITER,
        key: "llm",
        attempts: 2,
        input_tokens: 300,
        output_tokens: 30,
        cost_usd: 0.3,
        node: Some("db"),
        agent: Some("metrics"),
    },
    // A tool call (its id escaped) that used nothing: stored without usage.
    Row {
        branches: ITER,
        key: "call/q%2F1",
        attempts: 1,
        input_tokens: 0,
        output_tokens: 0,
        cost_usd: 0.0,
        node: Some("db"),
        agent: Some("metrics"),
    },
    // A node id with a `/`: escaped in the key, decoded in the breakdown.
    Row {
        branches: &[
            "node", "web/edge", "agent", "logs", "round", "1", "iter", "0",
        ],
        key: "llm",
        attempts: 1,
        input_tokens: 50,
        output_tokens: 5,
        cost_usd: 0.05,
        node: Some("web/edge"),
        agent: Some("logs"),
    },
    // A node's own step: the node's, no agent's.
    Row {
        branches: &["node", "db"],
        key: "finding",
        attempts: 1,
        input_tokens: 7,
        output_tokens: 1,
        cost_usd: 0.07,
        node: Some("db"),
        agent: None,
    },
    Row {
        branches: &["supervisor", "report", "repair", "1"],
        key: "llm",
        attempts: 1,
        input_tokens: 13,
        output_tokens: 3,
        cost_usd: 0.13,
        node: Some("supervisor"),
        agent: None,
    },
    // Of no shape: in the run's total only.
    Row {
        branches: &[],
        key: "plan",
        attempts: 1,
        input_tokens: 11,
        output_tokens: 1,
        cost_usd: 0.11,
        node: None,
        agent: None,
    },
];

impl Row {
    fn full_key(&self) -> String {
        let mut key: String = self
            .branches
            .iter()
            .map(|b| format!("{}/", key_segment(b)))
            .collect();
        key.push_str(self.key);
        key
    }

    /// What one attempt uses in a run of `scale`.
    fn per_attempt(&self, scale: u64) -> Usage {
        Usage {
            input_tokens: self.input_tokens * scale,
            output_tokens: self.output_tokens * scale,
            cost_usd: self.cost_usd * scale as f64,
        }
    }

    /// What the step uses over all its attempts in a run of `scale`.
    fn charged(&self, scale: u64) -> Usage {
        (0..self.attempts).map(|_| self.per_attempt(scale)).sum()
    }
}

/// Records `ROWS`, each usage times the input's `scale`.
struct Charged;

impl Workflow for Charged {
    fn run(&self, ctx: StepContext) -> aiops_engine::workflow::WorkflowFuture {
        async move {
            let scale = ctx.input()["scale"].as_u64().unwrap_or(1);
            for row in ROWS {
                let mut branch: Option<StepContext> = None;
                for name in row.branches {
                    branch = Some(branch.as_ref().unwrap_or(&ctx).branch(name));
                }
                let opts = StepOptions {
                    retry: Some(RetryPolicy {
                        initial: Duration::from_millis(10),
                        jitter: 0.0,
                        ..RetryPolicy::default()
                    }),
                    ..Default::default()
                };
                let (usage, attempts) = (row.per_attempt(scale), row.attempts);
                branch
                    .as_ref()
                    .unwrap_or(&ctx)
                    .step_with(row.key, opts, |a| async move {
                        a.record_usage(usage);
                        if a.number < attempts {
                            return Err(StepFailure::retryable("overloaded"));
                        }
                        Ok(())
                    })
                    .await?;
            }
            Ok(json!({}))
        }
        .boxed()
    }
}

/// What a run of `scale` must add up to: in total, per node, per (node, agent).
struct Expected {
    total: Usage,
    by_node: BTreeMap<String, Usage>,
    by_agent: BTreeMap<(String, String), Usage>,
}

fn expected(scale: u64) -> Expected {
    let mut e = Expected {
        total: Usage::default(),
        by_node: BTreeMap::new(),
        by_agent: BTreeMap::new(),
    };
    for row in ROWS {
        let used = row.charged(scale);
        if used.is_zero() {
            continue;
        }
        e.total += used;
        if let Some(node) = row.node {
            *e.by_node.entry(node.to_owned()).or_default() += used;
            if let Some(agent) = row.agent {
                *e.by_agent
                    .entry((node.to_owned(), agent.to_owned()))
                    .or_default() += used;
            }
        }
    }
    e
}

#[track_caller]
fn assert_usage(got: Usage, want: Usage, what: &str) {
    assert_eq!(
        (got.input_tokens, got.output_tokens),
        (want.input_tokens, want.output_tokens),
        "{what}: tokens"
    );
    assert!(
        (got.cost_usd - want.cost_usd).abs() < 1e-9,
        "{what}: cost {} != {}",
        got.cost_usd,
        want.cost_usd
    );
}

/// A GraphQL `Usage` object.
fn gql_usage(v: &Value) -> Usage {
    Usage {
        input_tokens: v["inputTokens"].as_u64().unwrap_or_else(|| panic!("{v}")),
        output_tokens: v["outputTokens"].as_u64().unwrap_or_else(|| panic!("{v}")),
        cost_usd: v["costUsd"].as_f64().unwrap_or_else(|| panic!("{v}")),
    }
}

const USAGE: &str = "{ inputTokens outputTokens costUsd }";

/// Runs of scales 1, 2, 3 and 0 (uses nothing), finished; the worker stopped, so the
/// engine's statement counter sees only what the API does.
async fn finished_runs(h: &Harness) -> Vec<(RunId, u64)> {
    let stop = CancellationToken::new();
    let worker = tokio::spawn(Worker::new(h.engine.clone()).run(stop.clone()));
    let mut runs = Vec::new();
    for scale in [1, 2, 3, 0] {
        let run = h
            .engine
            .start_run(StartRun::new("charged", json!({ "scale": scale })))
            .await
            .unwrap();
        runs.push((run.id, scale));
    }
    for (id, _) in &runs {
        h.wait_for_status(*id, &[RunStatus::Succeeded], LIMIT).await;
    }
    stop.cancel();
    worker.await.unwrap().unwrap();
    runs
}

async fn harness(backend: Backend) -> Option<Harness> {
    Harness::with_workflows(backend, common::fast_config(), |w| {
        w.with("charged", Charged)
    })
    .await
}

/// Per step (every attempt charged), per agent, per node and per run, from the
/// engine: each level adds up to the next, exactly in tokens and to 1e-9 in cost.
async fn engine_totals(backend: Backend) {
    let Some(h) = harness(backend).await else {
        return;
    };
    let runs = finished_runs(&h).await;
    for &(id, scale) in &runs {
        let want = expected(scale);
        // Per step.
        let steps = h.engine.steps(id).await.unwrap();
        assert_eq!(steps.len(), ROWS.len());
        for row in ROWS {
            let key = row.full_key();
            let step = steps
                .iter()
                .find(|s| s.key == key)
                .unwrap_or_else(|| panic!("no step {key}"));
            assert_eq!(step.attempts, row.attempts as i32, "{key}");
            assert_usage(step.usage, row.charged(scale), &key);
        }
        let of_steps: Usage = steps.iter().map(|s| s.usage).sum();
        assert_usage(of_steps, want.total, "steps sum to the run");
        // Per run.
        assert_usage(h.engine.usage(id).await.unwrap(), want.total, "run");
        // Per node and agent.
        let b = h.engine.usage_breakdown(id).await.unwrap();
        assert_usage(b.total, want.total, "breakdown total");
        assert_eq!(
            b.by_node.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
            want.by_node.keys().cloned().collect::<Vec<_>>(),
            "nodes, sorted (scale {scale})"
        );
        for ((node, got), want) in b.by_node.iter().zip(want.by_node.values()) {
            assert_usage(*got, *want, node);
        }
        assert_eq!(
            b.by_agent
                .iter()
                .map(|(n, a, _)| (n.clone(), a.clone()))
                .collect::<Vec<_>>(),
            want.by_agent.keys().cloned().collect::<Vec<_>>(),
            "agents, sorted (scale {scale})"
        );
        for ((node, agent, got), want) in b.by_agent.iter().zip(want.by_agent.values()) {
            assert_usage(*got, *want, &format!("{node}/{agent}"));
        }
    }
    // The numbers themselves, for scale 1: db = its supervisor + metrics (two
    // attempts) + its own finding; the unattributed `plan` is in the total only.
    let b = h.engine.usage_breakdown(runs[0].0).await.unwrap();
    let node = |n: &str| b.by_node.iter().find(|e| e.0 == n).unwrap().1;
    assert_eq!(node("db").input_tokens, 200 + 2 * 300 + 7);
    assert_eq!(node("supervisor").input_tokens, 100 + 13);
    assert_eq!(node("web/edge").input_tokens, 50);
    assert_eq!(b.total.input_tokens, 807 + 113 + 50 + 11);
    assert!(
        h.engine
            .steps(runs[0].0)
            .await
            .unwrap()
            .iter()
            .any(|s| s.key == "node/web%2Fedge/agent/logs/round/1/iter/0/llm"),
        "the key holds the escaped segment"
    );
    // Many runs in one call; a run that used nothing is absent, and reads as zero.
    let ids: Vec<RunId> = runs.iter().map(|r| r.0).collect();
    let all = h.engine.usage_of_runs(&ids).await.unwrap();
    assert_eq!(all.len(), 3, "{all:?}");
    for &(id, scale) in &runs[..3] {
        assert_usage(all[&id], expected(scale).total, "usage_of_runs");
    }
    let (idle, _) = runs[3];
    assert_eq!(h.engine.usage(idle).await.unwrap(), Usage::default());
    assert_eq!(
        h.engine.usage_breakdown(idle).await.unwrap(),
        aiops_engine::UsageBreakdown::default()
    );
}
both_backends!(usage_adds_up_per_step_agent_node_and_run, engine_totals);

/// Over GraphQL: a `runs` list gives each run its own usage and breakdown, and costs
/// one usage query (and one breakdown query) for the whole page.
async fn graphql_totals(backend: Backend) {
    let Some(h) = harness(backend).await else {
        return;
    };
    let runs = finished_runs(&h).await;
    let admin = token_for(&h.engine, "admin", Role::Admin).await;
    let api = Api::new(
        &serve_api(&h.engine, h.shutdown.child_token()).await,
        Some(&admin),
    );
    let list = format!(
        "{{ runs(first: 10) {{ edges {{ node {{ id usage {USAGE}
            usageBreakdown {{ total {USAGE} byNode {{ node usage {USAGE} }}
                byAgent {{ node agent usage {USAGE} }} }} }} }} }} }}"
    );
    let data = api.data(&list, json!({})).await;
    let nodes: Vec<&Value> = data["runs"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["node"])
        .collect();
    assert_eq!(nodes.len(), runs.len());
    for &(id, scale) in &runs {
        let run = nodes
            .iter()
            .find(|n| n["id"] == id.0.to_string())
            .unwrap_or_else(|| panic!("run {id:?} listed"));
        let want = expected(scale);
        let what = format!("run of scale {scale}");
        assert_usage(gql_usage(&run["usage"]), want.total, &what);
        let b = &run["usageBreakdown"];
        assert_usage(gql_usage(&b["total"]), want.total, &what);
        let by_node: Vec<(String, Usage)> = b["byNode"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                (
                    n["node"].as_str().unwrap().to_owned(),
                    gql_usage(&n["usage"]),
                )
            })
            .collect();
        assert_eq!(by_node.len(), want.by_node.len(), "{what}: {b}");
        for ((node, got), (want_node, want)) in by_node.iter().zip(&want.by_node) {
            assert_eq!(node, want_node, "{what}");
            assert_usage(*got, *want, &format!("{what}, node {node}"));
        }
        let by_agent: Vec<((String, String), Usage)> = b["byAgent"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                let name = |f: &str| a[f].as_str().unwrap().to_owned();
                ((name("node"), name("agent")), gql_usage(&a["usage"]))
            })
            .collect();
        assert_eq!(by_agent.len(), want.by_agent.len(), "{what}: {b}");
        for ((key, got), (want_key, want)) in by_agent.iter().zip(&want.by_agent) {
            assert_eq!(key, want_key, "{what}");
            assert_usage(*got, *want, &format!("{what}, agent {key:?}"));
        }
    }

    // Per step over GraphQL, summing to the run's usage.
    let (id, scale) = runs[1];
    let steps = api
        .data(
            &format!(
                "query($id: UUID!) {{ run(id: $id) {{ usage {USAGE}
                    steps(first: 50) {{ edges {{ node {{ key attempts usage {USAGE} }} }} }} }} }}"
            ),
            json!({ "id": id.0 }),
        )
        .await;
    let edges = steps["run"]["steps"]["edges"].as_array().unwrap();
    assert_eq!(edges.len(), ROWS.len());
    for row in ROWS {
        let key = row.full_key();
        let step = &edges
            .iter()
            .find(|e| e["node"]["key"] == key.as_str())
            .unwrap_or_else(|| panic!("no step {key}"))["node"];
        assert_eq!(step["attempts"], row.attempts, "{key}");
        assert_usage(gql_usage(&step["usage"]), row.charged(scale), &key);
    }
    let of_steps: Usage = edges.iter().map(|e| gql_usage(&e["node"]["usage"])).sum();
    assert_usage(
        of_steps,
        gql_usage(&steps["run"]["usage"]),
        "steps sum to run",
    );

    // Batching: selecting `usage` (or `usageBreakdown`) on a page of 4 runs adds one
    // statement, not one per run. Background work only ever adds statements, so the
    // cheapest of a few tries is the query's own cost.
    let page =
        |fields: &str| format!("{{ runs(first: 10) {{ edges {{ node {{ id {fields} }} }} }} }}");
    let cost = |query: String| {
        let (api, engine) = (&api, &h.engine);
        async move {
            let mut cheapest = i64::MAX;
            for _ in 0..3 {
                let before = engine.stats().statements;
                let data = api.data(&query, json!({})).await;
                let spent = engine.stats().statements - before;
                cheapest = cheapest.min(i64::try_from(spent).unwrap());
                assert_eq!(data["runs"]["edges"].as_array().unwrap().len(), 4);
            }
            cheapest
        }
    };
    api.data(&page(""), json!({})).await; // warm: authentication's once-a-minute write
    let bare = cost(page("")).await;
    let with_usage = cost(page(&format!("usage {USAGE}"))).await;
    let with_breakdown = cost(page("usageBreakdown { total { inputTokens } }")).await;
    let with_both = cost(page(&format!(
        "usage {USAGE} usageBreakdown {{ byNode {{ node }} }}"
    )))
    .await;
    assert_eq!(
        (with_usage - bare, with_breakdown - bare, with_both - bare),
        (1, 1, 2),
        "statements for 4 runs: bare {bare}, usage {with_usage}, breakdown \
         {with_breakdown}, both {with_both}"
    );
}
both_backends!(usage_over_graphql_is_per_run_and_batched, graphql_totals);
