//! Cron schedules (§8): the claim of due fire times with an injected clock (catch-up
//! after downtime, overlap, a start lost between commit and run, concurrent
//! claimers) on Postgres and SQLite; three real `aiops serve` replicas on one
//! Postgres with an every-second schedule, one SIGKILLed midway; GraphQL (CRUD,
//! roles, validation, next fire times) and the CLI.

#[macro_use]
mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use aiops_engine::model::{
    CatchUpPolicy, FireOutcome, OverlapPolicy, Run, RunFilter, Schedule, ScheduleFire,
};
use aiops_engine::triggers::{FireStart, start_fire, tick};
use aiops_engine::{
    Caller, Engine, EngineConfig, NewSchedule, PageRequest, ScheduleUpdate, Trigger,
};
use chrono::{DateTime, Utc};
use common::serve::ServeProcess;
use common::{Api, Backend, Harness, TestDb, fast_config, serve_api, token_for};
use serde_json::{Value, json};

const TEAM: &str = include_str!("fixtures/teams/valid.yaml");
const TEAM_NAME: &str = "checkout-oncall";

/// Test timings; schedules may have a seconds field.
fn config() -> EngineConfig {
    EngineConfig {
        schedule_seconds: true,
        ..fast_config()
    }
}

/// An engine that can start team runs (no worker: runs stay QUEUED, i.e. active).
async fn harness(backend: Backend) -> Option<Harness> {
    harness_with(backend, config()).await
}

async fn harness_with(backend: Backend, config: EngineConfig) -> Option<Harness> {
    let h = Harness::with_workflows(backend, config, aiops_engine::agents::register).await?;
    h.engine.apply_team(TEAM).await.expect("apply team");
    Some(h)
}

async fn create(
    engine: &Engine,
    name: &str,
    cron: &str,
    f: impl FnOnce(&mut NewSchedule),
) -> Schedule {
    let mut new = NewSchedule::new(name, TEAM_NAME, cron);
    new.input = json!({ "alerts": [] });
    f(&mut new);
    engine
        .create_schedule(Caller::Local, new)
        .await
        .expect("create schedule")
}

async fn fires(engine: &Engine, s: &Schedule) -> Vec<ScheduleFire> {
    let mut page = engine
        .schedule_fires(s.id, &PageRequest::first(10_000))
        .await
        .expect("fires");
    page.items.reverse();
    page.items
}

async fn runs_of(engine: &Engine, s: &Schedule) -> Vec<Run> {
    let filter = RunFilter {
        trigger: Some(Trigger::Schedule),
        trigger_id: Some(s.id.to_string()),
        ..RunFilter::default()
    };
    engine
        .list_runs(&filter, &PageRequest::first(10_000))
        .await
        .expect("runs")
        .items
}

fn secs(n: i64) -> chrono::Duration {
    chrono::Duration::seconds(n)
}

fn key(s: &Schedule, t: DateTime<Utc>) -> String {
    format!(
        "schedule:{}:{}",
        s.id,
        t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )
}

async fn catch_up_after_downtime(backend: Backend) {
    let Some(h) = harness(backend).await else {
        return;
    };
    let e = &h.engine;
    let skip = create(e, "hourly-skip", "0 * * * *", |_| {}).await;
    let once = create(e, "hourly-once", "0 * * * *", |n| {
        n.catch_up = CatchUpPolicy::RunOnce;
    })
    .await;
    let first = skip.next_fire_at.unwrap();
    assert_eq!(once.next_fire_at, Some(first));
    // Nobody ticked for five and a half hours: six fire times passed.
    let now = first + secs(5 * 3600 + 1800);
    let report = tick(e, now).await.unwrap();
    assert_eq!((report.started, report.missed), (1, 6 + 5));

    let f = fires(e, &skip).await;
    assert_eq!(f.len(), 1, "one record for all the missed times: {f:?}");
    assert_eq!(
        (f[0].outcome, f[0].missed_count, f[0].fire_time),
        (FireOutcome::Missed, 6, first)
    );
    assert!(runs_of(e, &skip).await.is_empty());

    let f = fires(e, &once).await;
    let latest = first + secs(5 * 3600);
    assert_eq!(f.len(), 2, "{f:?}");
    assert_eq!((f[0].outcome, f[0].missed_count), (FireOutcome::Missed, 5));
    assert_eq!(
        (f[1].outcome, f[1].fire_time),
        (FireOutcome::Started, latest)
    );
    let runs = runs_of(e, &once).await;
    assert_eq!(runs.len(), 1);
    assert_eq!(f[1].run_id, Some(runs[0].id));
    assert_eq!(
        runs[0].idempotency_key.as_deref(),
        Some(key(&once, latest).as_str())
    );
    assert_eq!(runs[0].input, json!({ "alerts": [] }));

    // Both continue at the first fire time after the downtime.
    for s in [&skip, &once] {
        let s = e.schedule(s.id).await.unwrap();
        assert_eq!(s.next_fire_at, Some(first + secs(6 * 3600)));
    }
    assert_eq!(tick(e, now + secs(1)).await.unwrap(), Default::default());
}
both_backends!(
    catch_up_skips_or_runs_once_after_downtime,
    catch_up_after_downtime
);

async fn overlap(backend: Backend) {
    let Some(h) = harness(backend).await else {
        return;
    };
    let e = &h.engine;
    let skip = create(e, "skip", "* * * * *", |_| {}).await;
    let allow = create(e, "allow", "* * * * *", |n| {
        n.overlap = OverlapPolicy::Allow
    })
    .await;
    let t0 = skip.next_fire_at.unwrap();
    assert_eq!(tick(e, t0 + secs(1)).await.unwrap().started, 2);
    // A minute later the first runs are still QUEUED (no worker): active.
    let report = tick(e, t0 + secs(61)).await.unwrap();
    assert_eq!((report.started, report.skipped_overlap), (1, 1));
    assert_eq!(runs_of(e, &allow).await.len(), 2);
    let skipped = fires(e, &skip).await;
    assert_eq!(
        skipped.iter().map(|f| f.outcome).collect::<Vec<_>>(),
        [FireOutcome::Started, FireOutcome::SkippedOverlap]
    );
    // Once the run ends, the next fire time starts one again.
    let runs = runs_of(e, &skip).await;
    assert_eq!(runs.len(), 1);
    e.cancel_run(runs[0].id).await.unwrap();
    assert_eq!(tick(e, t0 + secs(121)).await.unwrap().started, 2);
    assert_eq!(runs_of(e, &skip).await.len(), 2);

    e.cancel_run(runs_of(e, &skip).await[0].id).await.unwrap();
    // A tick that dies between its commit and the start: the fire stays PENDING and
    // a later tick (after `schedule_start_retry`) starts it, with its own key.
    let lost = e.claim_due_fires(t0 + secs(181)).await.unwrap();
    assert_eq!(lost.due.len(), 2, "{lost:?}");
    let pending = fires(e, &allow).await;
    assert_eq!(pending.last().unwrap().outcome, FireOutcome::Pending);
    assert_eq!(
        tick(e, t0 + secs(182)).await.unwrap().started,
        0,
        "not before the retry delay"
    );
    let report = tick(e, t0 + secs(181 + 11)).await.unwrap();
    assert_eq!(report.started, 2, "{report:?}");
    let f = fires(e, &allow).await;
    assert!(f.iter().all(|f| f.outcome == FireOutcome::Started), "{f:?}");
    let runs = runs_of(e, &allow).await;
    assert_eq!(runs.len(), 4);
    // Starting a fire again (two ticks racing on a retry) finds the same run.
    let again = start_fire(e, &lost.due[0]).await;
    let FireStart::Started(id) = again else {
        panic!("{again:?}")
    };
    assert!(
        runs_of(e, &skip)
            .await
            .iter()
            .chain(&runs)
            .any(|r| r.id == id)
    );
    assert_eq!(runs_of(e, &allow).await.len(), 4, "no second run");
    assert_eq!(runs_of(e, &skip).await.len(), 3);
}
both_backends!(
    overlap_skip_waits_for_the_active_run_allow_does_not,
    overlap
);

async fn concurrent(backend: Backend) {
    let Some(h) = harness(backend).await else {
        return;
    };
    // Two more engines on the database, as other replicas have (pool, writer, bus).
    let replica = || {
        common::engine_on(
            &h.db.url,
            config(),
            aiops_engine::agents::register(aiops_engine::Workflows::default()),
        )
    };
    let engines = [h.engine.clone(), replica().await, replica().await];
    let s = create(&h.engine, "every-minute", "* * * * *", |n| {
        n.overlap = OverlapPolicy::Allow;
    })
    .await;
    let t0 = s.next_fire_at.unwrap();
    const TICKS: i64 = 8;
    for k in 0..TICKS {
        let now = t0 + secs(60 * k) + chrono::Duration::milliseconds(300);
        let ticks = engines.iter().map(|e| tick(e, now));
        let reports = futures::future::try_join_all(ticks).await.unwrap();
        let started: u64 = reports.iter().map(|r| r.started).sum();
        assert_eq!(started, 1, "tick {k}: {reports:?}");
    }
    let f = fires(&h.engine, &s).await;
    let expected: Vec<DateTime<Utc>> = (0..TICKS).map(|k| t0 + secs(60 * k)).collect();
    assert_eq!(f.iter().map(|f| f.fire_time).collect::<Vec<_>>(), expected);
    assert!(f.iter().all(|f| f.outcome == FireOutcome::Started));
    let runs = runs_of(&h.engine, &s).await;
    let keys: BTreeSet<String> = runs
        .iter()
        .filter_map(|r| r.idempotency_key.clone())
        .collect();
    assert_eq!(runs.len(), TICKS as usize);
    assert_eq!(keys, expected.iter().map(|t| key(&s, *t)).collect());
}
both_backends!(concurrent_claimers_fire_each_time_once, concurrent);

/// Three `aiops serve` replicas tick an every-second schedule; one is SIGKILLed
/// midway. Every second fires exactly once: no gap, no double.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_fire_each_second_once_across_a_kill() {
    let Some(db) = TestDb::migrated(Backend::Postgres).await else {
        return;
    };
    let engine = common::engine_on(
        &db.url,
        config(),
        aiops_engine::agents::register(aiops_engine::Workflows::default()),
    )
    .await;
    engine.apply_team(TEAM).await.unwrap();
    let env = [
        ("AIOPS_SCHEDULE_ALLOW_SECONDS", "1"),
        ("AIOPS_LOG", "error"),
    ];
    let (a, b, c) = tokio::join!(
        ServeProcess::start(&db.url, &env),
        ServeProcess::start(&db.url, &env),
        ServeProcess::start(&db.url, &env),
    );
    let mut replicas = [a, b, c];
    let s = create(&engine, "every-second", "* * * * * *", |n| {
        n.overlap = OverlapPolicy::Allow;
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    replicas[0].child.kill().unwrap();
    replicas[0].child.wait().unwrap();
    tokio::time::sleep(Duration::from_secs(7)).await;
    engine
        .update_schedule(
            Caller::Local,
            s.id,
            ScheduleUpdate {
                enabled: Some(false),
                ..ScheduleUpdate::default()
            },
        )
        .await
        .unwrap();
    // A fire claimed by the killed replica may wait for its retry (10 s).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(25);
    let f = loop {
        let f = fires(&engine, &s).await;
        if f.iter().all(|f| f.outcome != FireOutcome::Pending) {
            break f;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "fires still pending: {f:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for r in &mut replicas[1..] {
        r.assert_alive();
    }
    assert!(f.len() >= 10, "about 12 ticks expected: {f:?}");
    for pair in f.windows(2) {
        assert_eq!(
            pair[1].fire_time - pair[0].fire_time,
            secs(1),
            "a gap or a double: {f:?}"
        );
    }
    assert!(
        f.iter()
            .all(|f| f.outcome == FireOutcome::Started && f.run_id.is_some()),
        "{f:?}"
    );
    let runs = runs_of(&engine, &s).await;
    assert_eq!(runs.len(), f.len(), "one run per fire time");
    let keys: BTreeSet<String> = runs
        .iter()
        .filter_map(|r| r.idempotency_key.clone())
        .collect();
    let expected: BTreeSet<String> = f.iter().map(|f| key(&s, f.fire_time)).collect();
    assert_eq!(keys, expected);
    let fired: BTreeSet<_> = f.iter().filter_map(|f| f.run_id).collect();
    assert_eq!(fired, runs.iter().map(|r| r.id).collect());
}

const SCHEDULE_FIELDS: &str =
    "id name team cron timezone overlapPolicy catchUpPolicy enabled nextFireAt input";
const CREATE: &str = "mutation($input: CreateScheduleInput!) { createSchedule(input: $input) { id name nextFireAt } }";

async fn graphql(backend: Backend) {
    // As in production: exactly 5 fields.
    let Some(h) = harness_with(backend, fast_config()).await else {
        return;
    };
    let addr = serve_api(&h.engine, h.shutdown.child_token()).await;
    let viewer = Api::new(
        &addr,
        Some(&token_for(&h.engine, "viewer", aiops_engine::Role::Viewer).await),
    );
    let operator = Api::new(
        &addr,
        Some(&token_for(&h.engine, "operator", aiops_engine::Role::Operator).await),
    );
    let admin = Api::new(
        &addr,
        Some(&token_for(&h.engine, "admin", aiops_engine::Role::Admin).await),
    );
    let input = |cron: &str, tz: &str, team: &str| {
        json!({ "input": { "name": "nightly", "team": team, "cron": cron, "timezone": tz,
                           "task": "nightly health check", "catchUpPolicy": "RUN_ONCE" } })
    };

    let (code, _) = viewer
        .error_code(CREATE, input("30 2 * * *", "America/New_York", TEAM_NAME))
        .await;
    assert_eq!(code, "FORBIDDEN");
    for (vars, field) in [
        (input("30 2 * *", "America/New_York", TEAM_NAME), "cron: "),
        (
            input("30 2 * * * *", "America/New_York", TEAM_NAME),
            "cron: ",
        ),
        (
            input("30 2 * * *", "America/Gotham", TEAM_NAME),
            "timezone: ",
        ),
        (input("30 2 * * *", "UTC", "nobody"), "team: "),
    ] {
        let (code, err) = admin.error_code(CREATE, vars).await;
        assert_eq!(code, "VALIDATION_FAILED", "{err}");
        assert!(err["message"].as_str().unwrap().starts_with(field), "{err}");
    }
    let created = admin
        .data(CREATE, input("30 2 * * *", "America/New_York", TEAM_NAME))
        .await;
    let id = created["createSchedule"]["id"].as_str().unwrap().to_owned();
    let (code, _) = admin
        .error_code(CREATE, input("0 * * * *", "UTC", TEAM_NAME))
        .await;
    assert_eq!(code, "CONFLICT", "names are unique");

    let q = format!(
        "query($id: UUID!) {{ schedule(id: $id) {{ {SCHEDULE_FIELDS} nextFireTimes(n: 3) {{ at local }} lastFire {{ outcome }} runs {{ edges {{ node {{ id trigger triggerId }} }} }} }} }}"
    );
    let s = viewer.data(&q, json!({ "id": id })).await["schedule"].clone();
    assert_eq!(s["catchUpPolicy"], "RUN_ONCE");
    assert_eq!(s["overlapPolicy"], "SKIP");
    assert_eq!(s["input"], json!({ "task": "nightly health check" }));
    let times = s["nextFireTimes"].as_array().unwrap();
    assert_eq!(times.len(), 3);
    assert_eq!(times[0]["at"], s["nextFireAt"]);
    for t in times {
        let local = t["local"].as_str().unwrap();
        assert!(
            local.contains("T02:30:00-0") || local.contains("T03:00:00-04:00"),
            "{local}"
        );
        let at = DateTime::parse_from_rfc3339(t["at"].as_str().unwrap()).unwrap();
        assert_eq!(at, DateTime::parse_from_rfc3339(local).unwrap());
    }
    let (code, _) = viewer
        .error_code(&q.replace("n: 3", "n: 101"), json!({ "id": id }))
        .await;
    assert_eq!(code, "BAD_REQUEST", "at most 100 fire times");
    let list = viewer
        .data(
            "{ schedules { totalCount edges { node { name team } } } }",
            json!({}),
        )
        .await;
    assert_eq!(list["schedules"]["totalCount"], 1);

    let update = "mutation($id: UUID!, $input: UpdateScheduleInput!) { updateSchedule(id: $id, input: $input) { enabled nextFireAt cron input } }";
    let (code, _) = operator
        .error_code(update, json!({ "id": id, "input": { "enabled": false } }))
        .await;
    assert_eq!(code, "FORBIDDEN");
    let off = admin
        .data(
            update,
            json!({ "id": id, "input": { "enabled": false, "alerts": [] } }),
        )
        .await;
    assert_eq!(off["updateSchedule"]["enabled"], false);
    assert!(off["updateSchedule"]["nextFireAt"].is_null());
    assert_eq!(
        off["updateSchedule"]["input"],
        json!({ "task": "nightly health check", "alerts": [] })
    );
    let (code, err) = admin
        .error_code(
            update,
            json!({ "id": id, "input": { "timezone": "Nowhere/Else" } }),
        )
        .await;
    assert_eq!(code, "VALIDATION_FAILED", "{err}");

    // Operators trigger a (disabled) schedule now.
    let trigger =
        "mutation($id: UUID!) { triggerSchedule(id: $id) { id trigger triggerId status } }";
    let (code, _) = viewer.error_code(trigger, json!({ "id": id })).await;
    assert_eq!(code, "FORBIDDEN");
    let run = operator.data(trigger, json!({ "id": id })).await["triggerSchedule"].clone();
    assert_eq!(
        (run["trigger"].as_str(), run["triggerId"].as_str()),
        (Some("SCHEDULE"), Some(id.as_str()))
    );
    let s = viewer.data(&q, json!({ "id": id })).await["schedule"].clone();
    assert_eq!(s["runs"]["edges"][0]["node"]["id"], run["id"]);
    let by_trigger = viewer
        .data(
            "query($id: String!) { runs(filter: { trigger: SCHEDULE, triggerId: $id }) { edges { node { id } } } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(by_trigger["runs"]["edges"].as_array().unwrap().len(), 1);

    let delete = "mutation($id: UUID!) { deleteSchedule(id: $id) }";
    let (code, _) = operator.error_code(delete, json!({ "id": id })).await;
    assert_eq!(code, "FORBIDDEN");
    assert_eq!(
        admin.data(delete, json!({ "id": id })).await["deleteSchedule"],
        true
    );
    assert!(viewer.data(&q, json!({ "id": id })).await["schedule"].is_null());
    let (code, _) = admin.error_code(delete, json!({ "id": id })).await;
    assert_eq!(code, "NOT_FOUND");
}
both_backends!(schedules_over_graphql, graphql);

fn aiops(db: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_aiops"))
        .args(args)
        .env("DATABASE_URL", db)
        .env("AIOPS_LOG", "error")
        .output()
        .unwrap()
}

#[test]
fn schedule_commands() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("aiops.db").display());
    let ok = |args: &[&str]| {
        let out = aiops(&db, args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    ok(&["team", "apply", "-f", "tests/fixtures/teams/valid.yaml"]);
    let added = ok(&[
        "schedule",
        "add",
        "nightly",
        "--team",
        TEAM_NAME,
        "--cron",
        "30 2 * * *",
        "--timezone",
        "America/New_York",
        "--catch-up",
        "run_once",
        "--task",
        "check",
    ]);
    assert!(added.contains("schedule \"nightly\" added"), "{added}");
    let next = ok(&["schedule", "next", "nightly", "-n", "2"]);
    assert_eq!(next.lines().count(), 2, "{next}");
    assert!(
        next.lines()
            .all(|l| l.contains("T02:30:00-0") || l.contains("T03:00:00-04:00")),
        "{next}"
    );
    for (args, field) in [
        (vec!["--cron", "* * * * * *"], "cron: "),
        (
            vec!["--cron", "0 9 * * *", "--timezone", "Moon/Base"],
            "timezone: ",
        ),
        (
            vec!["--cron", "0 9 * * *", "--overlap", "sometimes"],
            "--overlap",
        ),
    ] {
        let mut all = vec!["schedule", "add", "other", "--team", TEAM_NAME];
        all.extend(args);
        let out = aiops(&db, &all);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(field), "{field}: {err}");
    }
    assert!(ok(&["schedule", "disable", "nightly"]).contains("disabled"));
    let list = ok(&["schedule", "list"]);
    let line: Value = serde_json::from_str(list.trim()).unwrap();
    assert_eq!(
        (line["name"].as_str(), line["enabled"].as_bool()),
        (Some("nightly"), Some(false))
    );
    assert_eq!(line["catch_up"], "run_once");
    let run = ok(&["schedule", "trigger", "nightly"]);
    assert!(run.trim().parse::<uuid::Uuid>().is_ok(), "{run}");
    assert!(ok(&["schedule", "enable", "nightly"]).contains("next fire time"));
    ok(&["schedule", "remove", "nightly"]);
    assert_eq!(ok(&["schedule", "list"]), "");
}
