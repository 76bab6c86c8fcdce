//! `aiops receiver …`: the Alertmanager receivers whose bearer tokens may post to
//! `POST /api/alertmanager/webhook`.

use std::process::ExitCode;

use aiops_engine::{ApprovalMode, Caller};
use clap::Subcommand;

use crate::cli::DbArgs;
use crate::sources::engine_with_keys;

#[derive(Subcommand, Debug)]
pub enum ReceiverCommand {
    /// Add a receiver and print its token, once (only its SHA-256 is stored). Put
    /// the token in Alertmanager's webhook_configs[].http_config.authorization.credentials.
    Add {
        #[command(flatten)]
        db: DbArgs,
        /// Unique name: letters, digits, '-', '_' or '.'.
        name: String,
        /// What approvals of the runs its notifications start do: `wait` for a
        /// person until they expire, or `reject` at once (the run goes on without
        /// the action).
        #[arg(long, default_value = "wait", value_parser = parse_approval_mode)]
        approval_mode: ApprovalMode,
    },
    /// List receivers (token prefixes only, never the tokens).
    List {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Remove a receiver; its token stops working at once.
    Remove {
        #[command(flatten)]
        db: DbArgs,
        /// The receiver to remove.
        name: String,
    },
}

fn parse_approval_mode(s: &str) -> Result<ApprovalMode, String> {
    match s.to_ascii_lowercase().as_str() {
        "wait" => Ok(ApprovalMode::Wait),
        "reject" => Ok(ApprovalMode::Reject),
        _ => Err(format!(
            "unknown approval mode {s:?}: expected wait or reject"
        )),
    }
}

pub async fn receiver_command(command: ReceiverCommand) -> anyhow::Result<ExitCode> {
    match command {
        ReceiverCommand::Add {
            db,
            name,
            approval_mode,
        } => {
            let engine = engine_with_keys(&db, None, "aiops receiver add").await?;
            let (receiver, token) = engine
                .create_alertmanager_receiver(Caller::Local, &name, approval_mode)
                .await?;
            eprintln!(
                "receiver \"{}\" added (id {}, approval mode {}); its token, shown only now:",
                receiver.name, receiver.id, receiver.approval_mode
            );
            println!("{token}");
        }
        ReceiverCommand::List { db } => {
            let engine = engine_with_keys(&db, None, "aiops receiver list").await?;
            for r in engine.alertmanager_receivers().await? {
                let line = serde_json::json!({
                    "id": r.id.to_string(),
                    "name": r.name,
                    "token_prefix": r.token_prefix,
                    "approval_mode": r.approval_mode,
                    "created_at": r.created_at,
                    "last_used_at": r.last_used_at,
                });
                println!("{line}");
            }
        }
        ReceiverCommand::Remove { db, name } => {
            let engine = engine_with_keys(&db, None, "aiops receiver remove").await?;
            engine
                .delete_alertmanager_receiver(Caller::Local, &name)
                .await?;
            println!("receiver \"{name}\" removed");
        }
    }
    Ok(ExitCode::SUCCESS)
}
