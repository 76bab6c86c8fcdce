//! `aiops schedule …`: cron schedules that start team runs (a running `aiops serve`
//! ticks them and executes the runs).

use std::path::PathBuf;
use std::process::ExitCode;

use aiops_engine::model::{CatchUpPolicy, OverlapPolicy, Schedule};
use aiops_engine::{Caller, EngineOptions, NewSchedule, ScheduleUpdate};
use anyhow::Context;
use clap::Subcommand;

use crate::cli::DbArgs;
use crate::open::{Access, Opened, open_engine};

#[derive(Subcommand, Debug)]
pub enum ScheduleCommand {
    /// Add a schedule that starts runs of a team.
    Add {
        #[command(flatten)]
        db: DbArgs,
        /// Unique name: letters, digits, '-', '_' or '.'.
        name: String,
        /// The team whose runs it starts (at the team's latest version).
        #[arg(long)]
        team: String,
        /// 5 fields: minute hour day-of-month month day-of-week, e.g. "0 9 * * 1-5".
        #[arg(long)]
        cron: String,
        /// IANA time zone the expression is read in, e.g. Europe/Berlin.
        #[arg(long, default_value = "UTC")]
        timezone: String,
        /// While a run of the schedule is active: skip the fire time, or allow another run.
        #[arg(long, default_value = "skip", value_parser = parse_overlap)]
        overlap: OverlapPolicy,
        /// Fire times missed while no server ran: skip them, or run_once for the latest.
        #[arg(long, default_value = "skip", value_parser = parse_catch_up)]
        catch_up: CatchUpPolicy,
        /// A free-text task each run gets.
        #[arg(long)]
        task: Option<String>,
        /// A JSON file of alerts each run investigates (Alertmanager webhook shape or a
        /// list); default: the alert source's firing alerts at the time.
        #[arg(long)]
        alerts: Option<PathBuf>,
        /// Add it disabled (enable it later with `aiops schedule enable`).
        #[arg(long)]
        disabled: bool,
    },
    /// List schedules (one JSON object per line).
    List {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Remove a schedule and its fire records (its runs stay).
    Remove {
        #[command(flatten)]
        db: DbArgs,
        /// The schedule to remove.
        name: String,
    },
    /// Enable a schedule: it fires from its next fire time after now.
    Enable {
        #[command(flatten)]
        db: DbArgs,
        /// The schedule to enable.
        name: String,
    },
    /// Disable a schedule: it fires no more until enabled.
    Disable {
        #[command(flatten)]
        db: DbArgs,
        /// The schedule to disable.
        name: String,
    },
    /// Start a run of a schedule now and print its id.
    Trigger {
        #[command(flatten)]
        db: DbArgs,
        /// The schedule to trigger.
        name: String,
    },
    /// Print a schedule's next fire times, in UTC and in its zone.
    Next {
        #[command(flatten)]
        db: DbArgs,
        /// The schedule.
        name: String,
        /// How many fire times (at most 100).
        #[arg(short = 'n', long = "count", default_value_t = 5,
              value_parser = clap::value_parser!(u16).range(1..=100))]
        count: u16,
    },
}

fn parse_overlap(s: &str) -> Result<OverlapPolicy, String> {
    s.parse()
        .map_err(|_| format!("unknown overlap policy {s:?}: expected skip or allow"))
}

fn parse_catch_up(s: &str) -> Result<CatchUpPolicy, String> {
    s.parse()
        .map_err(|_| format!("unknown catch-up policy {s:?}: expected skip or run_once"))
}

fn line(s: &Schedule) -> serde_json::Value {
    serde_json::json!({
        "id": s.id.to_string(),
        "name": s.name,
        "team": s.team,
        "cron": s.cron,
        "timezone": s.timezone,
        "overlap": s.overlap.as_str(),
        "catch_up": s.catch_up.as_str(),
        "enabled": s.enabled,
        "next_fire_at": s.next_fire_at,
        "last_fire_at": s.last_fire_at,
    })
}

async fn open(
    db: &DbArgs,
    options: &EngineOptions,
    holder: &'static str,
) -> anyhow::Result<Opened> {
    open_engine(&db.url, options.clone(), Access::Shared(holder)).await
}

/// Runs a schedule command on an engine made from `options` (the process's
/// workflows, for `trigger`).
pub async fn schedule_command(
    command: ScheduleCommand,
    options: EngineOptions,
) -> anyhow::Result<ExitCode> {
    match command {
        ScheduleCommand::Add {
            db,
            name,
            team,
            cron,
            timezone,
            overlap,
            catch_up,
            task,
            alerts,
            disabled,
        } => {
            let mut input = serde_json::Map::new();
            if let Some(task) = task {
                input.insert("task".into(), task.into());
            }
            if let Some(path) = alerts {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?;
                let alerts: serde_json::Value = serde_json::from_str(&text)
                    .with_context(|| format!("{}: not JSON", path.display()))?;
                input.insert("alerts".into(), alerts);
            }
            let engine = open(&db, &options, "aiops schedule add").await?;
            let s = engine
                .create_schedule(
                    Caller::Local,
                    NewSchedule {
                        name,
                        team,
                        input: serde_json::Value::Object(input),
                        cron,
                        timezone: Some(timezone),
                        overlap,
                        catch_up,
                        enabled: !disabled,
                    },
                )
                .await?;
            match s.next_fire_at {
                Some(next) => println!(
                    "schedule \"{}\" added (id {}); next fire time {}",
                    s.name,
                    s.id,
                    next.to_rfc3339()
                ),
                None => println!("schedule \"{}\" added (id {}), disabled", s.name, s.id),
            }
        }
        ScheduleCommand::List { db } => {
            let engine = open(&db, &options, "aiops schedule list").await?;
            let mut after = None;
            loop {
                let page = engine
                    .schedules(&aiops_engine::PageRequest::first(200).after(after.clone()))
                    .await?;
                for s in &page.items {
                    println!("{}", line(s));
                }
                match page.items.last() {
                    Some(last) if page.has_next => after = Some(last.name.clone()),
                    _ => break,
                }
            }
        }
        ScheduleCommand::Remove { db, name } => {
            let engine = open(&db, &options, "aiops schedule remove").await?;
            let s = engine.schedule_named(&name).await?;
            engine.delete_schedule(Caller::Local, s.id).await?;
            println!("schedule \"{name}\" removed");
        }
        ScheduleCommand::Enable { db, name } => set_enabled(&db, &name, true, &options).await?,
        ScheduleCommand::Disable { db, name } => set_enabled(&db, &name, false, &options).await?,
        ScheduleCommand::Trigger { db, name } => {
            let engine = open(&db, &options, "aiops schedule trigger").await?;
            let s = engine.schedule_named(&name).await?;
            let run =
                aiops_engine::triggers::trigger_schedule(&engine, Caller::Local, s.id).await?;
            println!("{}", run.id);
        }
        ScheduleCommand::Next { db, name, count } => {
            let engine = open(&db, &options, "aiops schedule next").await?;
            let s = engine.schedule_named(&name).await?;
            for t in aiops_engine::next_fire_times(&s, chrono::Utc::now(), count.into())? {
                println!(
                    "{}  {}",
                    t.with_timezone(&chrono::Utc).to_rfc3339(),
                    t.to_rfc3339()
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn set_enabled(
    db: &DbArgs,
    name: &str,
    enabled: bool,
    options: &EngineOptions,
) -> anyhow::Result<()> {
    let engine = open(db, options, "aiops schedule enable/disable").await?;
    let s = engine.schedule_named(name).await?;
    let s = engine
        .update_schedule(
            Caller::Local,
            s.id,
            ScheduleUpdate {
                enabled: Some(enabled),
                ..ScheduleUpdate::default()
            },
        )
        .await?;
    match s.next_fire_at {
        Some(next) => println!(
            "schedule \"{name}\" enabled; next fire time {}",
            next.to_rfc3339()
        ),
        None => println!("schedule \"{name}\" disabled"),
    }
    Ok(())
}
