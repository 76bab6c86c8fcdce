//! `aiops bench --history`: reading a large history, and pruning it under load
//! (Postgres only).
//!
//! 1. **History.** `--history-runs` team runs (default 1 M) of eight teams (made
//!    through the engine, skewed: the largest has about a third of the runs) spread
//!    over 30 days, with `--history-events-per-run` events each on average (default
//!    10: 7, 9 or 11 by turns, and every 1000th run 600–1600), their steps (LLM
//!    steps with usage) and, for runs waiting on one, their approval. 85 % succeeded,
//!    10 % failed, 3 % cancelled, 2 % timed out; among the newest 2000 runs, a
//!    quarter are RUNNING, WAITING_APPROVAL or PAUSED, held or parked far into the
//!    future so that the bench's own worker never claims them (no run is QUEUED for
//!    the same reason). Rows are written by set-based SQL (`generate_series`), 100 k
//!    runs per statement, not through the engine; a database that already holds the
//!    history is not written again (`VACUUM ANALYZE` follows a population).
//! 2. **Reads over the real GraphQL API** (`aiops_api::serve` on loopback, a viewer's
//!    API key, POST /graphql, one request at a time, no worker running): the
//!    console's runs list (`runs(first: 50, filter)`, the fields `web/src/views/runs.js`
//!    selects) unfiltered, by one state, by two (live: recent), by three rare ones
//!    (about 50 runs, less than a page), by team, by a one-day window, combined, and
//!    the second page (`after`: the first page is read untimed before it); the console's
//!    run query (`web/src/views/run.js`) with the first 100 events, then its steps
//!    page, then the events up to 500 in pages of 100 (the complexity limit of 1000
//!    admits no 200-event page with the run), all in sequence and timed together,
//!    for typical runs and for runs with 600+ events. `--history-samples` each (200),
//!    after a tenth as many untimed; filters vary per sample (team, day).
//! 3. **Pruning under load.** `--history-prune-runs` finished runs (100 k, of a ninth
//!    team, a year old; made again by every bench) and a retention of 180 days, so
//!    that [`aiops_engine::Engine::prune`] deletes exactly those (1000 runs per
//!    transaction, resting after each batch as long as it took). One in-process
//!    worker executes 64 runs of 100 `noop` steps at all times (64 clients, each
//!    starting its next run when its last has succeeded), 10 s before pruning and
//!    then while `prune` runs. A step's latency is the time between its
//!    STEP_SUCCEEDED and the run's previous STEP_SUCCEEDED, read from the events'
//!    `created_at` (taken just before each checkpoint's commit, so every commit's own
//!    duration lands in the next gap). A run's first step is timed from RUN_STARTED
//!    and reported apart: that gap also holds the run's start (with eager start,
//!    RUN_STARTED's time is taken before the transaction that creates the run).
//!    Steps/s counts both. The bench's runs are deleted afterwards.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use aiops_engine::{Engine, EngineConfig, StartRun};
use anyhow::Context;
use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// `aiops bench --history` and its sizes.
#[derive(clap::Args, Debug)]
pub struct HistoryArgs {
    /// Instead of the engine phases (Postgres only): runs list and run detail latency
    /// over the GraphQL API with a large history in the database (written once, kept),
    /// and step latency of a loaded worker while retention prunes old runs.
    #[arg(long)]
    pub history: bool,
    /// With --history: runs in the history.
    #[arg(long, default_value_t = 1_000_000)]
    history_runs: u64,
    /// With --history: events per run, on average.
    #[arg(long, default_value_t = 10)]
    history_events_per_run: u64,
    /// With --history: finished runs past the retention period that are pruned under load.
    #[arg(long, default_value_t = 100_000)]
    history_prune_runs: u64,
    /// With --history: timed requests of each kind (after a tenth as many untimed).
    #[arg(long, default_value_t = 200)]
    history_samples: usize,
}

/// Teams the history's runs belong to; `history-old` holds the runs to prune.
const TEAMS: usize = 8;
const OLD_TEAM: &str = "history-old";
/// Runs written per statement.
const CHUNK: u64 = 100_000;
/// The newest runs, among which some are still live.
const LIVE_WINDOW: u64 = 2000;
const HISTORY_DAYS: i64 = 30;
/// Runs to prune are this old; the retention is shorter, the history younger.
const PRUNE_AGE_DAYS: i64 = 365;
const RETENTION_DAYS: u64 = 180;
/// Runs in flight, and `noop` steps per run, while pruning.
const LOAD_RUNS: usize = 64;
const LOAD_STEPS: usize = 100;
const BASELINE: Duration = Duration::from_secs(10);

/// A chain of five services (svc-4 depends on svc-3 … on svc-0).
fn team_spec(name: &str) -> String {
    let nodes: String = (0..5)
        .map(|i| {
            let depends = if i == 0 {
                String::new()
            } else {
                format!("depends_on: [svc-{}], ", i - 1)
            };
            format!(
                "  - {{ id: svc-{i}, kind: service, {depends}match: {{ service: svc-{i} }}, \
                 agents: [{{ id: metrics, tools: [prometheus_query] }}] }}\n"
            )
        })
        .collect();
    format!("name: {name}\nsupervisor: {{ model: builtin:rules }}\nnodes:\n{nodes}")
}

/// A team's id and the version its runs pin.
struct TeamRef {
    id: uuid::Uuid,
    version_id: uuid::Uuid,
}

pub async fn run(
    database_url: &str,
    args: HistoryArgs,
    catalog: aiops_engine::topology::Catalog,
) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        database_url.starts_with("postgres"),
        "--history measures Postgres only (a million runs are not SQLite's use); \
         give a postgres:// database URL"
    );
    anyhow::ensure!(
        args.history_runs >= LIVE_WINDOW
            && args.history_events_per_run >= 3
            && args.history_samples > 0,
        "bad sizes: --history-runs ≥ {LIVE_WINDOW}, --history-events-per-run ≥ 3"
    );
    let options = aiops_engine::EngineOptions {
        config: EngineConfig {
            max_concurrent_runs: LOAD_RUNS,
            retention: Duration::from_secs(RETENTION_DAYS * 24 * 3600),
            ..EngineConfig::default()
        },
        workflows: aiops_engine::Workflows::default().with(
            aiops_engine::script::NAME,
            aiops_engine::script::ScriptWorkflow::new(None),
        ),
        catalog,
        ..aiops_engine::EngineOptions::default()
    };
    let opened = crate::open::open_engine(
        database_url,
        options,
        crate::open::Access::Exclusive("aiops bench"),
    )
    .await?;
    let engine = opened.engine.clone();
    // The bench's own connection for writing and reading back; its statements (some
    // of them many lines of SQL, running for seconds) are not logged.
    let mut connect = sea_orm::ConnectOptions::new(database_url);
    connect.sqlx_logging(false);
    let db = sea_orm::Database::connect(connect).await?;
    let mut teams = Vec::with_capacity(TEAMS);
    for i in 0..TEAMS {
        teams.push(team(&engine, &format!("history-{i}")).await?);
    }
    let old = team(&engine, OLD_TEAM).await?;

    let populated = populate(&db, &teams, args.history_runs, args.history_events_per_run).await?;
    // The previous bench's load left dead versions of its runs at the newest end of
    // every runs index; the reads start from the table as autovacuum leaves it.
    db.execute_unprepared("VACUUM ANALYZE runs").await?;
    let sizes = Sizes::read(&db).await?;
    let history = History::read(&db, &teams).await?;

    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    tokio::spawn(engine.clone().listen(shutdown.clone()));
    let api = Api::start(&engine, shutdown.child_token()).await?;
    let reads = measure_reads(&api, &history, args.history_samples).await?;
    let load_reads = load_average();

    let prepared = prepare_prune(
        &db,
        &old,
        args.history_prune_runs,
        args.history_events_per_run,
    )
    .await?;
    let prune = prune_under_load(&engine, &db).await?;
    let load_prune = load_average();

    print_results(&sizes, populated, &reads, &load_reads);
    print_prune(&prune, prepared, &load_prune);
    Ok(ExitCode::SUCCESS)
}

/// Applies the team `name` (unchanged when it exists) and returns it.
async fn team(engine: &Engine, name: &str) -> anyhow::Result<TeamRef> {
    let (team, _) = engine.apply_team(&team_spec(name)).await?;
    Ok(TeamRef {
        id: team.id.0,
        version_id: team.version_id,
    })
}

async fn query_i64(db: &DatabaseConnection, sql: &str) -> anyhow::Result<i64> {
    let row = db
        .query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await?
        .with_context(|| format!("no row: {sql}"))?;
    Ok(row.try_get_by_index(0)?)
}

fn uuid_list(ids: impl IntoIterator<Item = uuid::Uuid>) -> String {
    let ids: Vec<String> = ids.into_iter().map(|id| format!("'{id}'")).collect();
    format!("ARRAY[{}]::uuid[]", ids.join(","))
}

/// Runs of `teams` (the history's, or the old one) already written.
async fn count_runs(db: &DatabaseConnection, teams: &[TeamRef]) -> anyhow::Result<u64> {
    let sql = format!(
        "SELECT count(*) FROM runs WHERE team_id = ANY({})",
        uuid_list(teams.iter().map(|t| t.id))
    );
    Ok(query_i64(db, &sql).await? as u64)
}

/// Writes the history's runs that are missing (all of them, or the rest after an
/// interrupted population); `None` when nothing was missing, else how long it took.
async fn populate(
    db: &DatabaseConnection,
    teams: &[TeamRef],
    runs: u64,
    events_per_run: u64,
) -> anyhow::Result<Option<Duration>> {
    let have = count_runs(db, teams).await?;
    if have >= runs {
        eprintln!("history: {have} runs already written, not populating");
        return Ok(None);
    }
    let started = Instant::now();
    let generator = Generator {
        total: runs,
        start: Utc::now() - chrono::Duration::days(HISTORY_DAYS),
        span_s: (HISTORY_DAYS * 24 * 3600) as f64,
        live_window: LIVE_WINDOW,
        teams,
        events_per_run,
    };
    generator.write(db, have, "history").await?;
    eprintln!("history: VACUUM ANALYZE");
    db.execute_unprepared("VACUUM ANALYZE runs, events, steps, approvals")
        .await?;
    Ok(Some(started.elapsed()))
}

/// Writes the runs to prune that are missing; how long it took.
async fn prepare_prune(
    db: &DatabaseConnection,
    old: &TeamRef,
    runs: u64,
    events_per_run: u64,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let teams = std::slice::from_ref(old);
    let have = count_runs(db, teams).await?;
    let generator = Generator {
        total: runs,
        start: Utc::now() - chrono::Duration::days(PRUNE_AGE_DAYS),
        span_s: 24.0 * 3600.0,
        live_window: 0,
        teams,
        events_per_run,
    };
    generator.write(db, have.min(runs), "to prune").await?;
    db.execute_unprepared("ANALYZE runs").await?;
    Ok(started.elapsed())
}

/// Set-based SQL writing runs `n` in `0..total`, spread evenly from `start` over
/// `span_s` seconds, each with its events, steps and (if waiting) approval.
struct Generator<'a> {
    total: u64,
    start: DateTime<Utc>,
    span_s: f64,
    live_window: u64,
    teams: &'a [TeamRef],
    events_per_run: u64,
}

/// A time-ordered UUID (v7 layout: milliseconds first) for a row written at `ts`, as
/// the engine's ids are.
fn uuid7(ts: &str) -> String {
    format!(
        "encode(overlay(uuid_send(gen_random_uuid()) placing \
         substring(int8send((extract(epoch FROM {ts}) * 1000)::bigint) FROM 3) FROM 1 FOR 6), 'hex')::uuid"
    )
}

/// The key of step `k` of an investigation: the alerts, the supervisor's decision,
/// then the nodes' agents' model calls.
fn step_key(k: &str) -> String {
    format!(
        "CASE WHEN {k} = 0 THEN 'supervisor/call/alerts' WHEN {k} = 1 THEN 'supervisor/decide/llm' \
         ELSE 'node/svc-' || (({k} - 2) % 5) || '/agent/metrics/iter/' || (({k} - 2) / 5) || '/llm' END"
    )
}

const REPORT: &str = "## Active alerts\n\n- **HighErrorRate** (critical) on checkout: 7.2 % of \
requests failed over 10 m\n- **HighLatency** (warning) on checkout: p99 1.8 s\n\n## Root cause \
analysis\n\n1. **payments-db** (confidence 0.82): connection pool saturated since 09:58; checkout \
and payments wait on it. Evidence: `pg_stat_activity_count{state=\"active\"}` at its limit, \
`up` of the exporter 1.\n\n## Remediation\n\n- Restore payments-db: raise the pool or shed \
load.\n- Silence the symptom alerts of checkout while the root is fixed (approval needed).\n\n\
## Conclusion\n\nThe checkout errors follow from payments-db's saturated pool.";

impl Generator<'_> {
    async fn write(&self, db: &DatabaseConnection, from: u64, what: &str) -> anyhow::Result<()> {
        let started = Instant::now();
        let mut n = from;
        while n < self.total {
            let to = (n + CHUNK).min(self.total);
            db.execute_unprepared(&self.sql(n, to)).await?;
            n = to;
            eprintln!(
                "{what}: {n} of {} runs written ({:.0} s)",
                self.total,
                started.elapsed().as_secs_f64()
            );
        }
        Ok(())
    }

    /// One statement writing runs `from..to`: the runs (`r`), their events, steps and
    /// approvals. Event `s` of a run with `last_seq` events: RUN_QUEUED, RUN_STARTED,
    /// then STEP_STARTED/STEP_SUCCEEDED pairs (STEP_FAILED last in a failed run), and
    /// the final event of its state (none while RUNNING); a start left without its
    /// end before a final event is a FINDING instead.
    fn sql(&self, from: u64, to: u64) -> String {
        let Generator {
            total,
            start,
            span_s,
            live_window,
            events_per_run: epr,
            ..
        } = self;
        let teams = uuid_list(self.teams.iter().map(|t| t.id));
        let versions = uuid_list(self.teams.iter().map(|t| t.version_id));
        let nteams = self.teams.len();
        let run_id = uuid7("created_at");
        let event_id = uuid7("at");
        let step_id = uuid7("done");
        let event_key = step_key("((s - 3) / 2)");
        let key = step_key("k");
        let start = start.to_rfc3339();
        format!(
            r#"
WITH g AS MATERIALIZED (
  SELECT n, timestamptz '{start}' + ((n + random()) * {span_s} / {total}) * interval '1 second' AS created_at,
         random() AS u_status, random() AS u_team, random() AS u_trigger,
         300 + floor(random() * 2700)::int AS tick_ms
  FROM generate_series({from}::bigint, {to} - 1) AS n
), r AS MATERIALIZED (
  SELECT {run_id} AS id, n, created_at, tick_ms, interval '1 millisecond' * tick_ms AS tick,
    CASE
      WHEN n >= {total} - {live_window} AND u_status < 0.10 THEN 'RUNNING'
      WHEN n >= {total} - {live_window} AND u_status < 0.25 THEN 'WAITING_APPROVAL'
      WHEN n >= {total} - {live_window} AND u_status < 0.275 THEN 'PAUSED'
      WHEN u_status < 0.85 THEN 'SUCCEEDED'
      WHEN u_status < 0.95 THEN 'FAILED'
      WHEN u_status < 0.98 THEN 'CANCELLED'
      ELSE 'TIMED_OUT'
    END AS status,
    1 + floor({nteams} * u_team * u_team)::int AS team,
    CASE WHEN u_trigger < 0.7 THEN 'ALERTMANAGER' WHEN u_trigger < 0.9 THEN 'SCHEDULE' ELSE 'MANUAL' END AS trigger,
    CASE WHEN n % 1000 = 999 THEN 600 + (n * 7919) % 1001
         ELSE greatest(3, {epr} - 3 + 2 * (n % 3)) END AS last_seq
  FROM g
), f AS MATERIALIZED (
  SELECT r.*, ({teams})[team] AS team_id, ({versions})[team] AS team_version_id,
    created_at + tick * (last_seq - 1) AS ended_at,
    CASE status WHEN 'SUCCEEDED' THEN 'RUN_SUCCEEDED' WHEN 'FAILED' THEN 'RUN_FAILED'
      WHEN 'CANCELLED' THEN 'RUN_CANCELLED' WHEN 'TIMED_OUT' THEN 'RUN_TIMED_OUT'
      WHEN 'WAITING_APPROVAL' THEN 'APPROVAL_REQUESTED' WHEN 'PAUSED' THEN 'RUN_PAUSED' END AS final_kind,
    CASE status WHEN 'FAILED' THEN 'step node/svc-1/agent/metrics/iter/0/llm failed: model endpoint unavailable'
      WHEN 'TIMED_OUT' THEN 'run deadline passed' END AS error,
    md5(id::text)::uuid AS approval_id
  FROM r
), runs_in AS (
  INSERT INTO runs (id, team_id, team_version_id, workflow, trigger, trigger_id, idempotency_key,
    approval_mode, input, status, output, error, attempt, lease_owner, lease_expires_at, wake_at,
    deadline_at, timeout_ms, remaining_ms, pause_requested, last_seq, created_at, updated_at,
    started_at, finished_at)
  SELECT id, team_id, team_version_id, 'investigation', trigger,
    CASE trigger WHEN 'ALERTMANAGER' THEN gen_random_uuid()::text
      WHEN 'SCHEDULE' THEN md5(team_id::text)::uuid::text END,
    NULL, 'WAIT',
    jsonb_build_object('alerts', jsonb_build_array(jsonb_build_object('status', 'firing',
      'labels', jsonb_build_object('alertname', 'HighErrorRate', 'service', 'svc-' || (n % 5), 'severity', 'critical'),
      'startsAt', created_at))),
    status,
    CASE WHEN status = 'SUCCEEDED' THEN jsonb_build_object('report', $report${REPORT}$report$,
      'result', jsonb_build_object('summary', 'payments-db pool saturated', 'severity', 'critical',
        'root_causes', jsonb_build_array(jsonb_build_object('node', 'svc-1', 'confidence', 0.82)),
        'actions', jsonb_build_array('restore svc-1'))) END,
    CASE WHEN status = 'CANCELLED' THEN 'cancelled by admin' ELSE error END,
    1,
    CASE WHEN status = 'RUNNING' THEN 'aiops bench --history' END,
    CASE WHEN status = 'RUNNING' THEN now() + interval '10 years' END,
    CASE WHEN status = 'WAITING_APPROVAL' THEN now() + interval '10 years' END,
    CASE WHEN status IN ('WAITING_APPROVAL', 'PAUSED') THEN NULL ELSE created_at + interval '300 seconds' END,
    300000,
    CASE WHEN status IN ('WAITING_APPROVAL', 'PAUSED') THEN 240000 END,
    false, last_seq, created_at, ended_at, created_at + tick,
    CASE WHEN status IN ('SUCCEEDED', 'FAILED', 'CANCELLED', 'TIMED_OUT') THEN ended_at END
  FROM f
), e AS (
  SELECT f.*, s, created_at + tick * (s - 1) AS at, {event_key} AS key,
    CASE WHEN s = 1 THEN 'RUN_QUEUED' WHEN s = 2 THEN 'RUN_STARTED'
      WHEN s = last_seq AND final_kind IS NOT NULL THEN final_kind
      WHEN (s - 3) % 2 = 1 THEN
        CASE WHEN status = 'FAILED' AND s = last_seq - 1 THEN 'STEP_FAILED' ELSE 'STEP_SUCCEEDED' END
      WHEN s = last_seq - 1 AND final_kind IS NOT NULL THEN 'FINDING'
      ELSE 'STEP_STARTED' END AS kind
  FROM f CROSS JOIN LATERAL generate_series(1, f.last_seq) AS s
), events_in AS (
  INSERT INTO events (id, run_id, seq, kind, payload, created_at)
  SELECT {event_id}, id, s, kind,
    CASE kind
      WHEN 'RUN_QUEUED' THEN jsonb_build_object('workflow', 'investigation', 'trigger', trigger)
      WHEN 'RUN_STARTED' THEN jsonb_build_object('from', 'QUEUED', 'attempt', 1, 'worker', 'worker-' || (n % 4))
      WHEN 'STEP_STARTED' THEN jsonb_build_object('step_key', key, 'attempt', 1)
      WHEN 'STEP_SUCCEEDED' THEN jsonb_build_object('step_key', key, 'attempts', 1, 'duration_ms', tick_ms)
      WHEN 'STEP_FAILED' THEN jsonb_build_object('step_key', key, 'attempts', 3, 'error', 'model endpoint unavailable')
      WHEN 'FINDING' THEN jsonb_build_object('node', 'svc-1', 'status', 'failing', 'summary', 'connection pool saturated')
      WHEN 'APPROVAL_REQUESTED' THEN jsonb_build_object('approval_id', approval_id,
        'step_key', 'node/svc-0/agent/metrics/iter/9/call/silence', 'tool', 'alertmanager_silence',
        'args', jsonb_build_object('matchers', jsonb_build_array('service="svc-0"'), 'duration', '2h'),
        'risk_note', NULL, 'expires_at', now() + interval '10 years')
      WHEN 'RUN_CANCELLED' THEN jsonb_build_object('from', 'RUNNING')
      WHEN 'RUN_PAUSED' THEN '{{}}'::jsonb
      ELSE jsonb_build_object('status', status, 'error', error)
    END, at
  FROM e
), st AS (
  SELECT f.*, k, {key} AS key, created_at + tick * (2 * k + 2) AS begun, created_at + tick * (2 * k + 3) AS done,
    CASE WHEN status = 'FAILED' AND 2 * k + 4 = last_seq - 1 THEN 'FAILED' ELSE 'SUCCEEDED' END AS step_status
  FROM f CROSS JOIN LATERAL generate_series(0,
    ((CASE WHEN final_kind IS NULL THEN last_seq ELSE last_seq - 1 END) - 2) / 2 - 1) AS k
), steps_in AS (
  INSERT INTO steps (id, run_id, step_key, status, input, output, usage, error, attempts,
    started_at, finished_at, next_attempt_at, created_at, updated_at)
  SELECT {step_id}, id, key, step_status, NULL,
    CASE WHEN step_status = 'SUCCEEDED' THEN jsonb_build_object('text', 'error rate 7.2 %, p99 1.8 s; pool saturated') END,
    CASE WHEN key LIKE '%/llm' THEN '{{"input_tokens": 1800, "output_tokens": 220, "cost_usd": 0.0061}}'::jsonb END,
    CASE WHEN step_status = 'FAILED' THEN 'model endpoint unavailable' END,
    CASE WHEN step_status = 'FAILED' THEN 3 ELSE 1 END,
    begun, done, NULL, done, done
  FROM st
)
INSERT INTO approvals (id, run_id, step_key, tool, args, risk_note, status, requested_at,
  expires_at, decided_by, decided_at, comment, created_at, updated_at)
SELECT approval_id, id, 'node/svc-0/agent/metrics/iter/9/call/silence', 'alertmanager_silence',
  jsonb_build_object('matchers', jsonb_build_array('service="svc-0"'), 'duration', '2h'), NULL,
  'PENDING', ended_at, now() + interval '10 years', NULL, NULL, NULL, ended_at, ended_at
FROM f WHERE status = 'WAITING_APPROVAL'
"#
        )
    }
}

/// What the database holds, counted.
struct Sizes {
    runs: i64,
    events: i64,
    steps: i64,
}

impl Sizes {
    async fn read(db: &DatabaseConnection) -> anyhow::Result<Self> {
        Ok(Sizes {
            runs: query_i64(db, "SELECT count(*) FROM runs").await?,
            events: query_i64(db, "SELECT count(*) FROM events").await?,
            steps: query_i64(db, "SELECT count(*) FROM steps").await?,
        })
    }
}

/// What the read phase picks its filters and runs from.
struct History {
    teams: Vec<uuid::Uuid>,
    first: DateTime<Utc>,
    days: i64,
    /// Random runs of 7–11 events, and random runs of 600 or more.
    typical: Vec<uuid::Uuid>,
    long: Vec<uuid::Uuid>,
}

impl History {
    async fn read(db: &DatabaseConnection, teams: &[TeamRef]) -> anyhow::Result<Self> {
        let ids = uuid_list(teams.iter().map(|t| t.id));
        let bounds = db
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                format!(
                    "SELECT min(created_at), max(created_at) FROM runs WHERE team_id = ANY({ids})"
                ),
            ))
            .await?
            .context("no history")?;
        let first: DateTime<Utc> = bounds.try_get_by_index(0)?;
        let last: DateTime<Utc> = bounds.try_get_by_index(1)?;
        let sample = |condition: &str| {
            format!(
                "SELECT id FROM runs WHERE team_id = ANY({ids}) AND {condition} ORDER BY random() LIMIT 1000"
            )
        };
        Ok(History {
            teams: teams.iter().map(|t| t.id).collect(),
            first,
            days: (last - first).num_days().max(1),
            typical: ids_of(db, &sample("last_seq < 20")).await?,
            long: ids_of(db, &sample("last_seq >= 600")).await?,
        })
    }
}

async fn ids_of(db: &DatabaseConnection, sql: &str) -> anyhow::Result<Vec<uuid::Uuid>> {
    let rows = db
        .query_all_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await?;
    let ids: Vec<uuid::Uuid> = rows
        .iter()
        .map(|r| r.try_get_by_index(0))
        .collect::<Result<_, _>>()?;
    anyhow::ensure!(!ids.is_empty(), "no runs for {sql}");
    Ok(ids)
}

/// The real HTTP API on loopback and a viewer's API key.
struct Api {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl Api {
    async fn start(engine: &Engine, stop: CancellationToken) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/graphql", listener.local_addr()?);
        let served = engine.clone();
        tokio::spawn(async move {
            aiops_api::serve(listener, served, async move { stop.cancelled().await }).await
        });
        let token = crate::bench::bench_api_key(engine, aiops_engine::auth::Role::Viewer).await?;
        Ok(Api {
            http: reqwest::Client::new(),
            url,
            token,
        })
    }

    /// POSTs `query`; its `data`, or the errors.
    async fn post(&self, query: &str, variables: Value) -> anyhow::Result<Value> {
        let mut answer: Value = self
            .http
            .post(&self.url)
            .bearer_auth(&self.token)
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        anyhow::ensure!(answer.get("errors").is_none(), "GraphQL errors: {answer}");
        Ok(answer["data"].take())
    }
}

/// `web/src/views/runs.js`: its fields and its page.
const RUNS_QUERY: &str = "query Runs($first: Int!, $after: String, $filter: RunFilterInput) { \
  runs(first: $first, after: $after, filter: $filter) { edges { node { id workflow status trigger \
  triggerId createdAt startedAt finishedAt teamId teamVersion team { name } usage { costUsd } error } } \
  pageInfo { hasNextPage endCursor } } }";
const PAGE: usize = 50;
/// `web/src/views/run.js`'s run query, with the first page of events.
const RUN_QUERY: &str = "query Run($id: UUID!) { run(id: $id) { \
  id workflow status trigger triggerId error attempt lastSeq pauseRequested \
  createdAt startedAt finishedAt deadlineAt teamVersion team { name spec } \
  report result usage { inputTokens outputTokens costUsd } \
  usageBreakdown { byNode { node usage { inputTokens outputTokens costUsd } } \
    byAgent { node agent usage { inputTokens outputTokens costUsd } } } \
  approvals { id runId stepKey tool args riskNote status requestedAt expiresAt decidedBy decidedAt comment } \
  events(first: 100) { nodes { seq kind payload createdAt } pageInfo { hasNextPage endCursor } } } }";
/// `web/src/views/run.js`'s steps page.
const STEPS_QUERY: &str = "query Steps($id: UUID!, $after: String) { run(id: $id) { \
  steps(first: 80, after: $after) { totalCount edges { node { key status attempts error startedAt finishedAt } } \
  pageInfo { hasNextPage endCursor } } } }";
const EVENTS_QUERY: &str = "query Events($id: UUID!, $after: String) { run(id: $id) { \
  events(first: 100, after: $after) { nodes { seq kind payload createdAt } pageInfo { hasNextPage endCursor } } } }";
const EVENTS_WANTED: usize = 500;

/// A runs-list filter, varied per sample where it names a team or a time.
#[derive(Clone, Copy)]
enum Filter {
    None,
    Failed,
    Live,
    Rare,
    Team,
    Day,
    TeamFailedWeek,
}

impl Filter {
    fn label(self) -> &'static str {
        match self {
            Filter::None => "no filter",
            Filter::Failed => "status FAILED",
            Filter::Live => "status RUNNING or WAITING_APPROVAL",
            Filter::Rare => "status PAUSED, RETRY_WAIT or WAITING_INPUT",
            Filter::Team => "team (each of 8 in turn)",
            Filter::Day => "created in one day (varied)",
            Filter::TeamFailedWeek => "team + FAILED + one week",
        }
    }

    fn value(self, i: usize, h: &History) -> Value {
        let team = h.teams[i % h.teams.len()].to_string();
        let days = |from: i64, len: i64| {
            let start = h.first + chrono::Duration::days(from);
            (start, start + chrono::Duration::days(len))
        };
        match self {
            Filter::None => json!({}),
            Filter::Failed => json!({ "statuses": ["FAILED"] }),
            Filter::Live => json!({ "statuses": ["RUNNING", "WAITING_APPROVAL"] }),
            Filter::Rare => json!({ "statuses": ["PAUSED", "RETRY_WAIT", "WAITING_INPUT"] }),
            Filter::Team => json!({ "teamId": team }),
            Filter::Day => {
                let (after, before) = days((i as i64 * 7) % h.days, 1);
                json!({ "createdAfter": after, "createdBefore": before })
            }
            Filter::TeamFailedWeek => {
                let (after, before) = days((i as i64 * 3) % (h.days - 7).max(1), 7);
                json!({ "teamId": team, "statuses": ["FAILED"], "createdAfter": after, "createdBefore": before })
            }
        }
    }
}

/// Latencies of one kind of request, and how many rows (runs or events) each read.
struct Timed {
    label: String,
    ms: Vec<f64>,
    rows: Vec<usize>,
}

impl Timed {
    fn new(label: impl Into<String>) -> Self {
        Timed {
            label: label.into(),
            ms: Vec::new(),
            rows: Vec::new(),
        }
    }

    fn push(&mut self, ms: f64, rows: usize) {
        self.ms.push(ms);
        self.rows.push(rows);
    }
}

async fn measure_reads(api: &Api, history: &History, samples: usize) -> anyhow::Result<Vec<Timed>> {
    let lists = [
        (Filter::None, false),
        (Filter::Failed, false),
        (Filter::Failed, true),
        (Filter::Live, false),
        (Filter::Rare, false),
        (Filter::Team, false),
        (Filter::Team, true),
        (Filter::Day, false),
        (Filter::TeamFailedWeek, false),
    ];
    let warmup = (samples / 10).max(5);
    let mut out = Vec::new();
    for (filter, second_page) in lists {
        let page = if second_page { "page 2" } else { "page 1" };
        let mut timed = Timed::new(format!("runs(first: 50), {}, {page}", filter.label()));
        for i in 0..warmup + samples {
            let (ms, rows) = list_page(api, filter.value(i, history), second_page).await?;
            if i >= warmup {
                timed.push(ms, rows);
            }
        }
        out.push(timed);
    }
    for (label, ids) in [
        ("run detail + steps + events, typical run", &history.typical),
        (
            "run detail + steps + events 1–500, run of 600+",
            &history.long,
        ),
    ] {
        let mut total = Timed::new(label);
        let mut run = Timed::new("· of which the run query with events 1–100");
        let mut steps = Timed::new("· of which the steps page (80)");
        let mut pages = Timed::new("· of which one more events page (100)");
        for i in 0..warmup + samples {
            let detail = run_detail(api, ids[i % ids.len()]).await?;
            if i >= warmup {
                total.push(detail.total, detail.events);
                run.push(detail.run, detail.events.min(100));
                steps.push(detail.steps, detail.steps_read);
                for ms in detail.pages {
                    pages.push(ms, 100);
                }
            }
        }
        out.push(total);
        if !pages.ms.is_empty() {
            out.extend([run, steps, pages]);
        }
    }
    Ok(out)
}

/// One runs page (the second one: the first is read untimed for its cursor); ms and
/// runs read.
async fn list_page(api: &Api, filter: Value, second_page: bool) -> anyhow::Result<(f64, usize)> {
    let mut after = Value::Null;
    if second_page {
        let first = api
            .post(RUNS_QUERY, json!({ "first": PAGE, "filter": filter }))
            .await?;
        after = first["runs"]["pageInfo"]["endCursor"].clone();
    }
    let started = Instant::now();
    let data = api
        .post(
            RUNS_QUERY,
            json!({ "first": PAGE, "after": after, "filter": filter }),
        )
        .await?;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let rows = data["runs"]["edges"].as_array().map_or(0, Vec::len);
    Ok((ms, rows))
}

/// What reading one run's detail took, in ms: in all, and per request.
struct Detail {
    total: f64,
    run: f64,
    steps: f64,
    pages: Vec<f64>,
    events: usize,
    steps_read: usize,
}

/// The console's run query with the first 100 events, its steps page, then events
/// pages until 500 are read or none are left.
async fn run_detail(api: &Api, id: uuid::Uuid) -> anyhow::Result<Detail> {
    let ms = |t: Instant| t.elapsed().as_secs_f64() * 1000.0;
    let started = Instant::now();
    let run = api.post(RUN_QUERY, json!({ "id": id })).await?;
    let run_ms = ms(started);
    let steps_started = Instant::now();
    let steps = api.post(STEPS_QUERY, json!({ "id": id })).await?;
    let steps_ms = ms(steps_started);
    let mut events = run["run"]["events"].clone();
    let mut read = events["nodes"].as_array().map_or(0, Vec::len);
    let mut pages = Vec::new();
    while read < EVENTS_WANTED && events["pageInfo"]["hasNextPage"] == json!(true) {
        let after = events["pageInfo"]["endCursor"].clone();
        let page_started = Instant::now();
        let page = api
            .post(EVENTS_QUERY, json!({ "id": id, "after": after }))
            .await?;
        pages.push(ms(page_started));
        events = page["run"]["events"].clone();
        read += events["nodes"].as_array().map_or(0, Vec::len);
    }
    Ok(Detail {
        total: ms(started),
        run: run_ms,
        steps: steps_ms,
        pages,
        events: read,
        steps_read: steps["run"]["steps"]["edges"]
            .as_array()
            .map_or(0, Vec::len),
    })
}

/// Latencies of steps in one window.
#[derive(Default)]
struct Gaps {
    n: i64,
    p50: f64,
    p99: f64,
    max: f64,
}

/// Step throughput and latency over one window: steps after a run's first, and
/// first steps (timed from RUN_STARTED) apart.
struct Window {
    seconds: f64,
    later: Gaps,
    first: Gaps,
}

struct PruneReport {
    pruned: u64,
    took: Duration,
    before: Window,
    during: Window,
}

/// The load (64 clients keeping 64 runs in flight, one worker), 10 s of it measured,
/// then `prune` under it; the bench's runs are deleted afterwards.
async fn prune_under_load(engine: &Engine, db: &DatabaseConnection) -> anyhow::Result<PruneReport> {
    let began = Utc::now();
    let stop = CancellationToken::new();
    let worker = tokio::spawn(aiops_engine::Worker::new(engine.clone()).run(stop.child_token()));
    let feeding = stop.child_token();
    let clients: Vec<_> = (0..LOAD_RUNS)
        .map(|_| tokio::spawn(feed(engine.clone(), feeding.clone())))
        .collect();
    // Connections, prepared statements and the first runs' claims settle first.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let base_from = Utc::now();
    tokio::time::sleep(BASELINE).await;
    let base_to = Utc::now();
    let started = Instant::now();
    let pruned = engine.prune().await?;
    let took = started.elapsed();
    let prune_to = Utc::now();
    feeding.cancel();
    for client in clients {
        client.await??;
    }
    stop.cancel();
    worker.await??;
    let report = PruneReport {
        pruned,
        took,
        before: window(db, began, base_from, base_to).await?,
        during: window(db, began, base_to, prune_to).await?,
    };
    let deleted = db
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "DELETE FROM runs WHERE workflow = 'script' AND created_at >= $1",
            [began.into()],
        ))
        .await?;
    eprintln!(
        "prune: deleted the bench's {} runs",
        deleted.rows_affected()
    );
    Ok(report)
}

/// One client of the load: a run of 100 `noop` steps, and when it has succeeded the
/// next, until `stop` (the run then in flight is deleted with the others).
async fn feed(engine: Engine, stop: CancellationToken) -> anyhow::Result<()> {
    let script = crate::bench::noop_script(LOAD_STEPS);
    while !stop.is_cancelled() {
        let run = engine
            .start_run(StartRun::new("script", script.clone()))
            .await?;
        tokio::select! {
            done = crate::bench::wait_done(&engine, run.id) => done?,
            _ = stop.cancelled() => {}
        }
    }
    Ok(())
}

/// Steps of the bench's runs (created since `began`) that committed in `from..to`.
async fn window(
    db: &DatabaseConnection,
    began: DateTime<Utc>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> anyhow::Result<Window> {
    let sql = "
WITH s AS (
  SELECT kind, created_at, lag(kind) OVER w = 'RUN_STARTED' AS first,
    extract(epoch FROM created_at - lag(created_at) OVER w) * 1000 AS gap
  FROM events
  WHERE run_id IN (SELECT id FROM runs WHERE workflow = 'script' AND created_at >= $1)
    AND kind IN ('RUN_STARTED', 'STEP_SUCCEEDED')
  WINDOW w AS (PARTITION BY run_id ORDER BY seq)
)
SELECT first, count(*),
  percentile_cont(0.5) WITHIN GROUP (ORDER BY gap)::float8,
  percentile_cont(0.99) WITHIN GROUP (ORDER BY gap)::float8,
  max(gap)::float8
FROM s WHERE kind = 'STEP_SUCCEEDED' AND created_at >= $2 AND created_at < $3
GROUP BY first";
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            [began.into(), from.into(), to.into()],
        ))
        .await?;
    let mut window = Window {
        seconds: (to - from).num_milliseconds() as f64 / 1000.0,
        later: Gaps::default(),
        first: Gaps::default(),
    };
    for row in rows {
        let gaps = Gaps {
            n: row.try_get_by_index(1)?,
            p50: row.try_get_by_index(2)?,
            p99: row.try_get_by_index(3)?,
            max: row.try_get_by_index(4)?,
        };
        if row.try_get_by_index::<bool>(0)? {
            window.first = gaps;
        } else {
            window.later = gaps;
        }
    }
    Ok(window)
}

/// The 1-, 5- and 15-minute load averages (Linux), for the record.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

fn print_results(sizes: &Sizes, populated: Option<Duration>, reads: &[Timed], load: &str) {
    let populated = match populated {
        Some(t) => format!("populated in {:.0} s", t.as_secs_f64()),
        None => "already populated".to_owned(),
    };
    println!(
        "History: {} runs, {} events, {} steps in the database ({populated}); \
         load average after the reads: {load}",
        sizes.runs, sizes.events, sizes.steps
    );
    println!();
    println!(
        "| GraphQL request (POST /graphql, one at a time) | samples | rows read (mean) | p50 | p99 | max |"
    );
    println!("|---|---|---|---|---|---|");
    for t in reads {
        let max = t.ms.iter().copied().fold(0.0, f64::max);
        let rows = t.rows.iter().sum::<usize>() as f64 / t.rows.len().max(1) as f64;
        let (p50, p99) = crate::bench::summary(t.ms.clone());
        println!(
            "| {} | {} | {rows:.0} | {p50:.1} ms | {p99:.1} ms | {max:.1} ms |",
            t.label,
            t.ms.len()
        );
    }
}

fn print_prune(r: &PruneReport, prepared: Duration, load: &str) {
    println!();
    println!(
        "Pruning: {} finished runs deleted by `Engine::prune` in {:.1} s (written beforehand in \
         {:.0} s); load average after: {load}",
        r.pruned,
        r.took.as_secs_f64(),
        prepared.as_secs_f64()
    );
    println!();
    println!(
        "| {LOAD_RUNS} runs × {LOAD_STEPS} noop steps, one worker | window | steps/s | \
         step p50 | step p99 | max | first steps | first p50 | first p99 | first max |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (label, w) in [("before pruning", &r.before), ("while pruning", &r.during)] {
        let (l, f) = (&w.later, &w.first);
        println!(
            "| {label} | {:.1} s | {:.0} | {:.1} ms | {:.1} ms | {:.1} ms | {} | {:.1} ms | {:.1} ms | {:.1} ms |",
            w.seconds,
            (l.n + f.n) as f64 / w.seconds.max(0.001),
            l.p50,
            l.p99,
            l.max,
            f.n,
            f.p50,
            f.p99,
            f.max
        );
    }
}
